//! Matrix–vector products straight on block-quantized weights (GGUF Q4_0, Q4_1, Q8_0, and the
//! squeezer's own int4/int8 groups), for CPU decode.
//!
//! Decoding one token at a time is bound by memory bandwidth: with f32 weights every step reads
//! the whole model (540 MB for SmolLM2-135M). Reading 4-bit blocks instead and expanding them in
//! registers reads ~4.5× less. The arithmetic stays f32 (weights dequantized exactly as
//! [`crate::gguf`] does, products accumulated in f32), so results differ from a dense f32
//! matmul of the dequantized weights only by summation order.
//!
//! Layout: at load the ggml blocks are split into three row-major arrays — the quants (16 bytes
//! of nibbles or 32 signed bytes per block of 32), one f32 scale `d` and one f32 offset `m` per
//! block — so that a weight is `d·q + m` for every type (Q4_0: `m = −8d`; Q8_0: `m = 0`). The
//! kernel walks four rows at a time, sharing each load of the input among them, and
//! `Σ m·x` is one separate dot product with the per-block sums of the input.

use crate::ggml::GgmlType;
pub use crate::kernel_pool::KernelPool;

/// A pointer shared by the chunks of one product, each writing its own rows.
struct SyncPtr(*mut f32);
// SAFETY: used only for disjoint writes while the owning Vec is alive (see `matmul`).
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Rows computed together by the kernel (they share the input loads).
const ROW_TILE: usize = 4;

/// A `[rows, cols]` matrix kept in 32-wide quantized blocks, row-major.
#[derive(Clone)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    pub kind: GgmlType,
    /// `rows × cols/2` nibbles (low nibble = element j, high = j + 16 of each block) or
    /// `rows × cols` signed bytes for Q8_0.
    quants: Vec<u8>,
    /// Per block: scale `d` and offset `m`, `rows × cols/32` each.
    scale: Vec<f32>,
    offset: Vec<f32>,
    /// Per-channel int8 ([`Self::quantize_per_channel_i8`]): every group of a row has the
    /// row's scale, and products quantize each input row to int8 (per token) and accumulate
    /// integer dot products.
    int8_activations: bool,
}

fn block_bytes(kind: GgmlType) -> Option<usize> {
    match kind {
        GgmlType::Q4_0 => Some(18),
        GgmlType::Q4_1 => Some(20),
        GgmlType::Q8_0 => Some(34),
        _ => None,
    }
}

fn quant_bytes(kind: GgmlType) -> usize {
    if kind == GgmlType::Q8_0 {
        32
    } else {
        16
    }
}

#[inline]
fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

impl QMatrix {
    /// Unpacks raw ggml blocks; None when the type has no kernel or sizes do not match.
    pub fn new(kind: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Option<Self> {
        let bb = block_bytes(kind)?;
        if !cols.is_multiple_of(32) || data.len() != rows * cols / 32 * bb {
            return None;
        }
        let nblocks = rows * cols / 32;
        let qb = quant_bytes(kind);
        let mut quants = Vec::with_capacity(nblocks * qb);
        let mut scale = Vec::with_capacity(nblocks);
        let mut offset = Vec::with_capacity(nblocks);
        for b in data.chunks_exact(bb) {
            let d = f16_at(&b[0..2]);
            let (m, q) = match kind {
                GgmlType::Q4_1 => (f16_at(&b[2..4]), &b[4..]),
                GgmlType::Q4_0 => (-8.0 * d, &b[2..]),
                _ => (0.0, &b[2..]),
            };
            scale.push(d);
            offset.push(m);
            quants.extend_from_slice(q);
        }
        Some(QMatrix { rows, cols, kind, quants, scale, offset, int8_activations: false })
    }

    /// Quantizes dense row-major f32 weights `[rows, cols]` (cols a multiple of 32): `Q4_1`
    /// (4-bit, per-32 scale and minimum, weight-only) or `Q8_0` (8-bit, per-32 absmax scale).
    /// Scales are kept in f32 (ggml rounds them to f16), so the error bounds are exact:
    /// |w − ŵ| ≤ (max − min)/30 per block for Q4_1, ≤ absmax/254 for Q8_0.
    pub fn quantize(kind: GgmlType, rows: usize, cols: usize, w: &[f32]) -> Option<Self> {
        if !cols.is_multiple_of(32) || w.len() != rows * cols || !matches!(kind, GgmlType::Q4_1 | GgmlType::Q8_0) {
            return None;
        }
        let nblocks = rows * cols / 32;
        let mut quants = Vec::with_capacity(nblocks * quant_bytes(kind));
        let mut scale = Vec::with_capacity(nblocks);
        let mut offset = Vec::with_capacity(nblocks);
        for blk in w.chunks_exact(32) {
            if kind == GgmlType::Q4_1 {
                let lo = blk.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let d = (hi - lo) / 15.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                let q = |v: f32| ((v - lo) * inv).round().clamp(0.0, 15.0) as u8;
                for j in 0..16 {
                    quants.push(q(blk[j]) | (q(blk[j + 16]) << 4));
                }
                scale.push(d);
                offset.push(lo);
            } else {
                let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                quants.extend(blk.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8));
                scale.push(d);
                offset.push(0.0);
            }
        }
        Some(QMatrix { rows, cols, kind, quants, scale, offset, int8_activations: false })
    }

    /// Per-channel int8 with per-token int8 activations (LLM.int8-style without the outlier
    /// split): each row r gets one scale s_r = max|w_r|/127 (|w − ŵ| ≤ s_r/2), and a product
    /// quantizes each input row x to int8 with its own scale max|x|/127, takes the integer dot
    /// product and rescales: y_r = s_x · s_r · Σ q_x q_w.
    pub fn quantize_per_channel_i8(rows: usize, cols: usize, w: &[f32]) -> Option<Self> {
        if !cols.is_multiple_of(32) || w.len() != rows * cols {
            return None;
        }
        let nb = cols / 32;
        let mut quants = Vec::with_capacity(rows * cols);
        let mut scale = Vec::with_capacity(rows * nb);
        for row in w.chunks_exact(cols) {
            let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            quants.extend(row.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8));
            scale.extend(std::iter::repeat_n(d, nb));
        }
        let offset = vec![0f32; rows * nb];
        Some(QMatrix { rows, cols, kind: GgmlType::Q8_0, quants, scale, offset, int8_activations: true })
    }

    /// The per-channel form from stored parts (`rows × cols` signed bytes, one scale per row).
    pub fn from_channel_parts(rows: usize, cols: usize, quants: Vec<u8>, channel_scale: &[f32]) -> Option<Self> {
        if !cols.is_multiple_of(32) || quants.len() != rows * cols || channel_scale.len() != rows {
            return None;
        }
        let nb = cols / 32;
        let scale = channel_scale.iter().flat_map(|&d| std::iter::repeat_n(d, nb)).collect();
        Some(QMatrix {
            rows,
            cols,
            kind: GgmlType::Q8_0,
            quants,
            scale,
            offset: vec![0f32; rows * nb],
            int8_activations: true,
        })
    }

    /// One scale per row, when the matrix is per-channel int8.
    pub fn channel_scales(&self) -> Option<Vec<f32>> {
        let nb = self.cols / 32;
        self.int8_activations.then(|| (0..self.rows).map(|r| self.scale[r * nb]).collect())
    }

    pub fn int8_activations(&self) -> bool {
        self.int8_activations
    }

    /// The three arrays (quants, per-group scales, per-group offsets), for storing.
    pub fn parts(&self) -> (&[u8], &[f32], &[f32]) {
        (&self.quants, &self.scale, &self.offset)
    }

    /// Rebuilds a matrix from [`Self::parts`]; None when the sizes do not fit `rows × cols`.
    pub fn from_parts(
        kind: GgmlType,
        rows: usize,
        cols: usize,
        quants: Vec<u8>,
        scale: Vec<f32>,
        offset: Vec<f32>,
    ) -> Option<Self> {
        block_bytes(kind)?;
        let nb = rows * cols / 32;
        let ok = cols.is_multiple_of(32)
            && quants.len() == nb * quant_bytes(kind)
            && scale.len() == nb
            && offset.len() == nb;
        ok.then_some(QMatrix { rows, cols, kind, quants, scale, offset, int8_activations: false })
    }

    /// The same groups seen as `rows × cols` (groups run along rows, so any split with
    /// `cols` a multiple of 32 and the same element count is the same matrix in row-major order).
    pub fn reshape(&self, rows: usize, cols: usize) -> Option<Self> {
        (cols.is_multiple_of(32) && rows * cols == self.rows * self.cols).then(|| QMatrix {
            rows,
            cols,
            ..self.clone()
        })
    }

    /// The dense f32 values `d·q + m`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        let qb = quant_bytes(self.kind);
        for (bi, q) in self.quants.chunks_exact(qb).enumerate() {
            let (d, m) = (self.scale[bi], self.offset[bi]);
            if self.kind == GgmlType::Q8_0 {
                out.extend(q.iter().map(|&v| d * (v as i8) as f32));
            } else {
                out.extend(q.iter().map(|&v| d * (v & 15) as f32 + m));
                out.extend(q.iter().map(|&v| d * (v >> 4) as f32 + m));
            }
        }
        out
    }

    /// Bytes the kernel reads per product (quants + scales + offsets).
    pub fn nbytes(&self) -> usize {
        self.quants.len() + 4 * (self.scale.len() + self.offset.len())
    }

    fn row_quant_bytes(&self) -> usize {
        self.cols / 32 * quant_bytes(self.kind)
    }

    fn take_rows(&self, order: &[usize]) -> Self {
        let (qr, nb) = (self.row_quant_bytes(), self.cols / 32);
        let mut out = QMatrix {
            rows: order.len(),
            quants: Vec::with_capacity(order.len() * qr),
            scale: Vec::with_capacity(order.len() * nb),
            offset: Vec::with_capacity(order.len() * nb),
            ..*self
        };
        for &p in order {
            out.quants.extend_from_slice(&self.quants[p * qr..(p + 1) * qr]);
            out.scale.extend_from_slice(&self.scale[p * nb..(p + 1) * nb]);
            out.offset.extend_from_slice(&self.offset[p * nb..(p + 1) * nb]);
        }
        out
    }

    /// Reorders rows: row `i` of the result is row `perm[i]` of `self`.
    pub fn permute_rows(&self, perm: &[usize]) -> Option<Self> {
        if perm.len() != self.rows || perm.iter().any(|&p| p >= self.rows) {
            return None;
        }
        Some(self.take_rows(perm))
    }

    /// Keeps the listed rows (in that order); None if one is out of range.
    pub fn select_rows(&self, rows: &[usize]) -> Option<Self> {
        rows.iter().all(|&p| p < self.rows).then(|| self.take_rows(rows))
    }

    /// Stacks matrices with the same column count and type (fused QKV, gate/up).
    pub fn concat_rows(parts: &[&QMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.cols != first.cols || p.kind != first.kind || p.int8_activations != first.int8_activations)
        {
            return None;
        }
        let mut out = QMatrix {
            rows: parts.iter().map(|p| p.rows).sum(),
            quants: Vec::new(),
            scale: Vec::new(),
            offset: Vec::new(),
            ..**first
        };
        for p in parts {
            out.quants.extend_from_slice(&p.quants);
            out.scale.extend_from_slice(&p.scale);
            out.offset.extend_from_slice(&p.offset);
        }
        Some(out)
    }

    /// `y[n, rows] = x[n, cols] · selfᵀ`, rows split evenly over `pool`'s threads.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32], pool: &KernelPool) {
        assert_eq!(x.len(), n * self.cols);
        assert_eq!(y.len(), n * self.rows);
        let nb = self.cols / 32;
        // Per-block sums of x: the offset m contributes m · Σx over each block.
        let xsum: Vec<f32> = x.chunks_exact(32).map(|c| c.iter().sum()).collect();
        let rows = self.rows;
        // Per-token int8 activations: each input row quantized with its own scale.
        let xq: Vec<(f32, Vec<i8>)> = if self.int8_activations {
            x.chunks_exact(self.cols)
                .map(|row| {
                    let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let sx = amax / 127.0;
                    let inv = if sx > 0.0 { 1.0 / sx } else { 0.0 };
                    (sx, row.iter().map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8).collect())
                })
                .collect()
        } else {
            Vec::new()
        };
        let threads = if rows <= ROW_TILE { 1 } else { pool.threads() };
        let per = rows.div_ceil(threads).div_ceil(ROW_TILE) * ROW_TILE;
        // out is [rows, n]; transposed into y [n, rows] at the end (a copy only when n > 1).
        let mut out = vec![0f32; n * rows];
        let base = SyncPtr(out.as_mut_ptr());
        let run = |ci: usize| {
            let r0 = (ci * per).min(rows);
            let nr = per.min(rows - r0);
            // SAFETY: chunk ci owns rows r0 .. r0 + nr of out, disjoint from every other chunk;
            // out outlives the run (pool.run returns only when all chunks are done).
            let o = unsafe { std::slice::from_raw_parts_mut(base.get().add(r0 * n), nr * n) };
            if self.int8_activations {
                let nb = self.cols / 32;
                for r in 0..nr {
                    let g = r0 + r;
                    // SAFETY: the quants of Q8_0 rows are i8 stored as u8; same size and align.
                    let w = unsafe {
                        std::slice::from_raw_parts(self.quants[g * self.cols..].as_ptr() as *const i8, self.cols)
                    };
                    for (i, (sx, xi)) in xq.iter().enumerate() {
                        o[r * n + i] = sx * self.scale[g * nb] * dot_i8(w, xi) as f32;
                    }
                }
                return;
            }
            for i in 0..n {
                let xi = &x[i * self.cols..(i + 1) * self.cols];
                let xs = &xsum[i * nb..(i + 1) * nb];
                self.rows_dot(r0, nr, xi, xs, &mut |r, v| o[r * n + i] = v);
            }
        };
        if threads == 1 {
            run(0);
        } else {
            pool.run(&run);
        }
        if n == 1 {
            y.copy_from_slice(&out);
        } else {
            for r in 0..rows {
                for i in 0..n {
                    y[i * rows + r] = out[r * n + i];
                }
            }
        }
    }

    /// Rows `r0 .. r0 + nr` dotted with one input row; `put(local_row, value)`.
    fn rows_dot(&self, r0: usize, nr: usize, x: &[f32], xsum: &[f32], put: &mut dyn FnMut(usize, f32)) {
        let nb = self.cols / 32;
        let qr = self.row_quant_bytes();
        let mut r = 0;
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                while r + ROW_TILE <= nr {
                    let g = r0 + r;
                    let q = &self.quants[g * qr..(g + ROW_TILE) * qr];
                    let d = &self.scale[g * nb..(g + ROW_TILE) * nb];
                    // SAFETY: the features were just detected; slices hold ROW_TILE rows.
                    let v = unsafe {
                        if self.kind == GgmlType::Q8_0 {
                            avx2::tile_q8(q, d, x)
                        } else {
                            avx2::tile_q4(q, d, x)
                        }
                    };
                    for (k, v) in v.into_iter().enumerate() {
                        put(r + k, v + dot_f32(&self.offset[(g + k) * nb..(g + k + 1) * nb], xsum));
                    }
                    r += ROW_TILE;
                }
            }
        }
        for r in r..nr {
            let g = r0 + r;
            let v = row_scalar(self.kind, &self.quants[g * qr..(g + 1) * qr], &self.scale[g * nb..(g + 1) * nb], x);
            put(r, v + dot_f32(&self.offset[g * nb..(g + 1) * nb], xsum));
        }
    }
}

/// Σ a·b over signed bytes, in i32 (exact: |a·b| ≤ 127², at most 2^17 terms).
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was just detected.
            return unsafe { dot_i8_avx2(a, b) };
        }
    }
    dot_i8_portable(a, b)
}

#[inline(always)]
fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    // i16 products summed in blocks of 32 widen well into pmaddwd-style code.
    let mut acc = 0i32;
    for (x, y) in a.chunks(32).zip(b.chunks(32)) {
        let mut s = 0i32;
        for k in 0..x.len().min(y.len()) {
            s += (x[k] as i16 * y[k] as i16) as i32;
        }
        acc += s;
    }
    acc
}

/// 32 products a step: |b| (unsigned) × a·sign(b) with `maddubs` into i16 pairs (at most
/// 2·127² = 32,258: no saturation, since quantization clamps to ±127), then pairs into i32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 32 <= n {
        let w = _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i);
        let x = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(w, x));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
        i += 32;
    }
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc);
    lanes.iter().sum::<i32>() + dot_i8_portable(&a[i..n], &b[i..n])
}

#[inline]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorize without reassociating.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// Portable kernel: Σ over blocks of d · Σ q·x (the offset term is added by the caller).
fn row_scalar(kind: GgmlType, q: &[u8], d: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (bi, &db) in d.iter().enumerate() {
        let xb = &x[bi * 32..bi * 32 + 32];
        let mut s = 0f32;
        if kind == GgmlType::Q8_0 {
            for (j, &v) in q[bi * 32..bi * 32 + 32].iter().enumerate() {
                s += (v as i8) as f32 * xb[j];
            }
        } else {
            for (j, &v) in q[bi * 16..bi * 16 + 16].iter().enumerate() {
                s += (v & 15) as f32 * xb[j] + (v >> 4) as f32 * xb[j + 16];
            }
        }
        acc += db * s;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::ROW_TILE;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn u8x8(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn i8x8(v: __m128i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
    }

    /// ROW_TILE rows of 4-bit quants (`q`: the rows one after the other; `d`: their scales)
    /// dotted with `x`: Σ_blocks d · Σ nibble·x.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_q4(q: &[u8], d: &[f32], x: &[f32]) -> [f32; ROW_TILE] {
        let nb = x.len() / 32;
        debug_assert!(q.len() >= ROW_TILE * nb * 16 && d.len() >= ROW_TILE * nb);
        let mask = _mm_set1_epi8(0x0f);
        let mut acc = [_mm256_setzero_ps(); ROW_TILE];
        let (qp, dp, xp) = (q.as_ptr(), d.as_ptr(), x.as_ptr());
        for bi in 0..nb {
            let x0 = _mm256_loadu_ps(xp.add(bi * 32));
            let x1 = _mm256_loadu_ps(xp.add(bi * 32 + 8));
            let x2 = _mm256_loadu_ps(xp.add(bi * 32 + 16));
            let x3 = _mm256_loadu_ps(xp.add(bi * 32 + 24));
            for (r, a) in acc.iter_mut().enumerate() {
                let qs = _mm_loadu_si128(qp.add((r * nb + bi) * 16) as *const __m128i);
                let lo = _mm_and_si128(qs, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
                let mut s = _mm256_mul_ps(u8x8(lo), x0);
                s = _mm256_fmadd_ps(u8x8(_mm_unpackhi_epi64(lo, lo)), x1, s);
                s = _mm256_fmadd_ps(u8x8(hi), x2, s);
                s = _mm256_fmadd_ps(u8x8(_mm_unpackhi_epi64(hi, hi)), x3, s);
                *a = _mm256_fmadd_ps(_mm256_set1_ps(*dp.add(r * nb + bi)), s, *a);
            }
        }
        let mut out = [0f32; ROW_TILE];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum(a);
        }
        out
    }

    /// As [`tile_q4`] for signed 8-bit quants (32 bytes a block).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_q8(q: &[u8], d: &[f32], x: &[f32]) -> [f32; ROW_TILE] {
        let nb = x.len() / 32;
        debug_assert!(q.len() >= ROW_TILE * nb * 32 && d.len() >= ROW_TILE * nb);
        let mut acc = [_mm256_setzero_ps(); ROW_TILE];
        let (qp, dp, xp) = (q.as_ptr(), d.as_ptr(), x.as_ptr());
        for bi in 0..nb {
            let x0 = _mm256_loadu_ps(xp.add(bi * 32));
            let x1 = _mm256_loadu_ps(xp.add(bi * 32 + 8));
            let x2 = _mm256_loadu_ps(xp.add(bi * 32 + 16));
            let x3 = _mm256_loadu_ps(xp.add(bi * 32 + 24));
            for (r, a) in acc.iter_mut().enumerate() {
                let b = qp.add((r * nb + bi) * 32);
                let q0 = _mm_loadu_si128(b as *const __m128i);
                let q1 = _mm_loadu_si128(b.add(16) as *const __m128i);
                let mut s = _mm256_mul_ps(i8x8(q0), x0);
                s = _mm256_fmadd_ps(i8x8(_mm_unpackhi_epi64(q0, q0)), x1, s);
                s = _mm256_fmadd_ps(i8x8(q1), x2, s);
                s = _mm256_fmadd_ps(i8x8(_mm_unpackhi_epi64(q1, q1)), x3, s);
                *a = _mm256_fmadd_ps(_mm256_set1_ps(*dp.add(r * nb + bi)), s, *a);
            }
        }
        let mut out = [0f32; ROW_TILE];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum(a);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize_into;

    fn random_blocks(kind: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let bb = block_bytes(kind).unwrap();
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let mut v = Vec::new();
        for _ in 0..rows * cols / 32 {
            let d = half::f16::from_f32((next() % 1000) as f32 / 20000.0 + 0.001).to_le_bytes();
            v.extend_from_slice(&d);
            if kind == GgmlType::Q4_1 {
                let m = half::f16::from_f32(-((next() % 1000) as f32) / 5000.0).to_le_bytes();
                v.extend_from_slice(&m);
            }
            while v.len() % bb != 0 {
                v.push(next() as u8);
            }
        }
        v
    }

    fn input(n: usize, cols: usize) -> Vec<f32> {
        (0..n * cols).map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0).collect()
    }

    fn check_against_dense(q: &QMatrix, dense: &[f32], n: usize, threads: usize) {
        let pool = KernelPool::new(threads).unwrap();
        let (rows, cols) = (q.rows, q.cols);
        let x = input(n, cols);
        let mut y = vec![0f32; n * rows];
        q.matmul(&x, n, &mut y, &pool);
        for i in 0..n {
            for r in 0..rows {
                let want: f64 = (0..cols).map(|c| dense[r * cols + c] as f64 * x[i * cols + c] as f64).sum();
                let got = y[i * rows + r] as f64;
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{}: row {r} input {i}: {got} vs {want}",
                    q.kind
                );
            }
        }
    }

    #[test]
    fn quantized_matmul_matches_dequantize_then_multiply() {
        // 37 rows: full 4-row tiles, a ragged tail, and thread chunks of different sizes.
        for kind in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
            for (n, threads) in [(1, 1), (3, 2), (2, 3)] {
                let (rows, cols) = (37, 96);
                let data = random_blocks(kind, rows, cols, 5);
                let mut dense = vec![0f32; rows * cols];
                dequantize_into(kind, &data, &mut dense).unwrap();
                let q = QMatrix::new(kind, rows, cols, data).unwrap();
                check_against_dense(&q, &dense, n, threads);
                // The unpacked layout dequantizes to what the GGUF reader gives.
                let back = q.dequantize();
                let worst = back.iter().zip(&dense).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-6, "{kind}: dequantize differs by {worst}");
            }
        }
    }

    #[test]
    fn the_simd_tiles_equal_the_portable_kernel() {
        let (rows, cols) = (8, 256);
        let x = input(1, cols);
        let xsum: Vec<f32> = x.chunks_exact(32).map(|c| c.iter().sum()).collect();
        for kind in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let q = QMatrix::new(kind, rows, cols, random_blocks(kind, rows, cols, 9)).unwrap();
            let mut fast = vec![0f32; rows];
            q.rows_dot(0, rows, &x, &xsum, &mut |r, v| fast[r] = v);
            let nb = cols / 32;
            let qr = q.row_quant_bytes();
            for (r, f) in fast.iter().enumerate() {
                let slow = row_scalar(kind, &q.quants[r * qr..(r + 1) * qr], &q.scale[r * nb..(r + 1) * nb], &x)
                    + dot_f32(&q.offset[r * nb..(r + 1) * nb], &xsum);
                assert!((f - slow).abs() < 1e-4 * (1.0 + slow.abs()), "{kind} row {r}: {f} vs {slow}");
            }
        }
    }

    #[test]
    fn quantizing_dense_weights_stays_within_the_stated_bounds() {
        let (rows, cols) = (6, 128);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 2654435761usize) % 1000) as f32 / 250.0 - 2.0).collect();
        for kind in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let q = QMatrix::quantize(kind, rows, cols, &w).unwrap();
            let back = q.dequantize();
            for (b, (blk, got)) in w.chunks_exact(32).zip(back.chunks_exact(32)).enumerate() {
                let lo = blk.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = blk.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let bound = if kind == GgmlType::Q8_0 { lo.abs().max(hi.abs()) / 254.0 } else { (hi - lo) / 30.0 };
                for (a, g) in blk.iter().zip(got) {
                    assert!((a - g).abs() <= bound * 1.0001 + 1e-7, "{kind} block {b}: {a} vs {g}, bound {bound}");
                }
            }
            check_against_dense(&q, &back, 2, 2);
        }
        assert!(QMatrix::quantize(GgmlType::Q4_1, 2, 30, &[0.0; 60]).is_none(), "cols must be a multiple of 32");
    }

    #[test]
    fn per_channel_int8_with_per_token_activations_stays_within_its_rounding_bound() {
        let (rows, cols, n) = (13, 96, 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 2654435761usize) % 1000) as f32 / 250.0 - 2.0).collect();
        let q = QMatrix::quantize_per_channel_i8(rows, cols, &w).unwrap();
        let back = q.dequantize();
        for (r, (row, got)) in w.chunks_exact(cols).zip(back.chunks_exact(cols)).enumerate() {
            let s = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            for (a, g) in row.iter().zip(got) {
                assert!((a - g).abs() <= s / 2.0 * 1.0001, "row {r}: {a} vs {g}");
            }
        }
        let x = input(n, cols);
        let pool = KernelPool::new(2).unwrap();
        let mut y = vec![0f32; n * rows];
        q.matmul(&x, n, &mut y, &pool);
        for i in 0..n {
            let xi = &x[i * cols..(i + 1) * cols];
            let sx = xi.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            for r in 0..rows {
                let wr = &w[r * cols..(r + 1) * cols];
                let sw = wr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                let exact: f64 = wr.iter().zip(xi).map(|(a, b)| *a as f64 * *b as f64).sum();
                // |Δ| ≤ Σ (|w|·sx/2 + |x|·sw/2 + sw·sx/4)
                let bound: f64 = wr
                    .iter()
                    .zip(xi)
                    .map(|(a, b)| (a.abs() * sx / 2.0 + b.abs() * sw / 2.0 + sw * sx / 4.0) as f64)
                    .sum();
                let got = y[i * rows + r] as f64;
                assert!(
                    (got - exact).abs() <= bound * 1.001 + 1e-5,
                    "row {r} input {i}: {got} vs {exact} (bound {bound})"
                );
            }
        }
        assert_eq!(q.channel_scales().unwrap().len(), rows);
        let again =
            QMatrix::from_channel_parts(rows, cols, q.parts().0.to_vec(), &q.channel_scales().unwrap()).unwrap();
        let mut y2 = vec![0f32; n * rows];
        again.matmul(&x, n, &mut y2, &pool);
        assert_eq!(y, y2);
        assert_eq!(dot_i8(&[1, -2, 3], &[4, 5, -6]), 4 - 10 - 18);
        // the SIMD path (70 = two 32-steps and a tail) against the plain sum, extremes included
        let a: Vec<i8> =
            (0..70).map(|i| if i % 7 == 0 { -127 } else { ((i * 37) % 255) as i8 }).map(|v: i8| v.max(-127)).collect();
        let b: Vec<i8> =
            (0..70).map(|i| if i % 5 == 0 { 127 } else { ((i * 91) % 255) as i8 }).map(|v: i8| v.max(-127)).collect();
        let want: i32 = a.iter().zip(&b).map(|(&x, &y)| x as i32 * y as i32).sum();
        assert_eq!(dot_i8(&a, &b), want);
    }

    #[test]
    fn permuted_selected_and_concatenated_rows_keep_their_values() {
        let pool = KernelPool::new(1).unwrap();
        let a = QMatrix::new(GgmlType::Q4_1, 4, 64, random_blocks(GgmlType::Q4_1, 4, 64, 1)).unwrap();
        let b = QMatrix::new(GgmlType::Q4_1, 2, 64, random_blocks(GgmlType::Q4_1, 2, 64, 2)).unwrap();
        let x: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
        let run = |m: &QMatrix| {
            let mut y = vec![0f32; m.rows];
            m.matmul(&x, 1, &mut y, &pool);
            y
        };
        let (ya, yb) = (run(&a), run(&b));
        let close = |got: Vec<f32>, want: Vec<f32>| {
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5 * (1.0 + w.abs()), "{got:?} vs {want:?}");
            }
        };
        let p = a.permute_rows(&[2, 0, 3, 1]).unwrap();
        close(run(&p), vec![ya[2], ya[0], ya[3], ya[1]]);
        close(run(&a.select_rows(&[3, 1]).unwrap()), vec![ya[3], ya[1]]);
        assert!(a.select_rows(&[4]).is_none());
        let c = QMatrix::concat_rows(&[&a, &b]).unwrap();
        close(run(&c), [ya.clone(), yb].concat());
    }
}
