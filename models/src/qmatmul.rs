//! Matrix–vector products straight on GGUF-quantized weights (Q4_0, Q4_1, Q8_0), for CPU decode.
//!
//! Decoding one token at a time is bound by memory bandwidth: with f32 weights every step reads
//! the whole model (540 MB for SmolLM2-135M). Reading the 4/5-bit blocks instead and expanding
//! them in registers reads ~6× less. The arithmetic stays f32 (weights dequantized exactly as
//! [`crate::gguf`] does, products accumulated in f32), so results differ from a dense f32
//! matmul of the dequantized weights only by summation order.

use rayon::prelude::*;

use crate::gguf::GgmlType;

/// A `[rows, cols]` matrix kept in ggml blocks, row-major (each row is `cols / 32` blocks).
#[derive(Clone)]
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    pub kind: GgmlType,
    data: Vec<u8>,
}

fn block_bytes(kind: GgmlType) -> Option<usize> {
    match kind {
        GgmlType::Q4_0 => Some(18),
        GgmlType::Q4_1 => Some(20),
        GgmlType::Q8_0 => Some(34),
        _ => None,
    }
}

impl QMatrix {
    /// Wraps raw ggml blocks; None when the type has no kernel or sizes do not match.
    pub fn new(kind: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Option<Self> {
        let bb = block_bytes(kind)?;
        (cols % 32 == 0 && data.len() == rows * cols / 32 * bb).then_some(QMatrix { rows, cols, kind, data })
    }

    fn row_bytes(&self) -> usize {
        self.cols / 32 * block_bytes(self.kind).unwrap_or(0)
    }

    /// Reorders rows: row `i` of the result is row `perm[i]` of `self`.
    pub fn permute_rows(&self, perm: &[usize]) -> Option<Self> {
        let rb = self.row_bytes();
        if perm.len() != self.rows || perm.iter().any(|&p| p >= self.rows) {
            return None;
        }
        let mut data = Vec::with_capacity(self.data.len());
        for &p in perm {
            data.extend_from_slice(&self.data[p * rb..(p + 1) * rb]);
        }
        Some(QMatrix { data, ..*self })
    }

    /// Stacks matrices with the same column count and type (fused QKV, gate/up).
    pub fn concat_rows(parts: &[&QMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.cols != first.cols || p.kind != first.kind) {
            return None;
        }
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            data.extend_from_slice(&p.data);
        }
        Some(QMatrix { rows: parts.iter().map(|p| p.rows).sum(), cols: first.cols, kind: first.kind, data })
    }

    /// `y[n, rows] = x[n, cols] · selfᵀ` on `pool`'s threads.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32], pool: &rayon::ThreadPool) {
        assert_eq!(x.len(), n * self.cols);
        assert_eq!(y.len(), n * self.rows);
        let nb = self.cols / 32;
        // Per-block sums of x: the Q4_1 minimum contributes m · Σx over the block.
        let xsum: Vec<f32> = x.chunks_exact(32).map(|c| c.iter().sum()).collect();
        let rb = self.row_bytes();
        let rows = self.rows;
        let chunk = 16usize;
        // Work in chunks of rows; each chunk computes every input row.
        let mut out = vec![0f32; n * rows];
        pool.install(|| {
            out.par_chunks_mut(chunk * n).enumerate().for_each(|(ci, o)| {
                let r0 = ci * chunk;
                let nr = o.len() / n;
                for r in 0..nr {
                    let w = &self.data[(r0 + r) * rb..(r0 + r + 1) * rb];
                    for i in 0..n {
                        let xi = &x[i * self.cols..(i + 1) * self.cols];
                        let xs = &xsum[i * nb..(i + 1) * nb];
                        o[r * n + i] = dot(self.kind, w, xi, xs);
                    }
                }
            });
        });
        // out is [rows, n] (row-major by weight row); transpose into y [n, rows].
        for r in 0..rows {
            for i in 0..n {
                y[i * rows + r] = out[r * n + i];
            }
        }
    }
}

#[inline]
fn dot(kind: GgmlType, w: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected; slices are sized by the caller.
            return unsafe { avx2::dot(kind, w, x, xsum) };
        }
    }
    dot_scalar(kind, w, x, xsum)
}

#[inline]
fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Portable reference kernel.
pub fn dot_scalar(kind: GgmlType, w: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
    let mut acc = 0f32;
    match kind {
        GgmlType::Q4_1 => {
            for (bi, b) in w.chunks_exact(20).enumerate() {
                let (d, m) = (f16_at(&b[0..2]), f16_at(&b[2..4]));
                let xb = &x[bi * 32..bi * 32 + 32];
                let mut s = 0f32;
                for j in 0..16 {
                    s += (b[4 + j] & 15) as f32 * xb[j] + (b[4 + j] >> 4) as f32 * xb[j + 16];
                }
                acc += d * s + m * xsum[bi];
            }
        }
        GgmlType::Q4_0 => {
            for (bi, b) in w.chunks_exact(18).enumerate() {
                let d = f16_at(&b[0..2]);
                let xb = &x[bi * 32..bi * 32 + 32];
                let mut s = 0f32;
                for j in 0..16 {
                    s += (b[2 + j] & 15) as f32 * xb[j] + (b[2 + j] >> 4) as f32 * xb[j + 16];
                }
                acc += d * (s - 8.0 * xsum[bi]);
            }
        }
        GgmlType::Q8_0 => {
            for (bi, b) in w.chunks_exact(34).enumerate() {
                let d = f16_at(&b[0..2]);
                let xb = &x[bi * 32..bi * 32 + 32];
                let mut s = 0f32;
                for j in 0..32 {
                    s += (b[2 + j] as i8) as f32 * xb[j];
                }
                acc += d * s;
            }
        }
        _ => {}
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::f16_at;
    use crate::gguf::GgmlType;

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

    /// Σ over 32 elements of nibble value × x, for 16 packed bytes at `q`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn nibble_dot(q: *const u8, x: *const f32) -> __m256 {
        let qs = _mm_loadu_si128(q as *const __m128i);
        let mask = _mm_set1_epi8(0x0f);
        let lo = _mm_and_si128(qs, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
        let l0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
        let l1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
        let h0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
        let h1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
        let mut s = _mm256_mul_ps(l0, _mm256_loadu_ps(x));
        s = _mm256_fmadd_ps(l1, _mm256_loadu_ps(x.add(8)), s);
        s = _mm256_fmadd_ps(h0, _mm256_loadu_ps(x.add(16)), s);
        _mm256_fmadd_ps(h1, _mm256_loadu_ps(x.add(24)), s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(kind: GgmlType, w: &[u8], x: &[f32], xsum: &[f32]) -> f32 {
        let nb = x.len() / 32;
        let mut acc = _mm256_setzero_ps();
        let mut extra = 0f32;
        match kind {
            GgmlType::Q4_1 => {
                for bi in 0..nb {
                    let b = w.as_ptr().add(bi * 20);
                    let bs = std::slice::from_raw_parts(b, 4);
                    let (d, m) = (f16_at(&bs[0..2]), f16_at(&bs[2..4]));
                    let s = nibble_dot(b.add(4), x.as_ptr().add(bi * 32));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
                    extra += m * xsum[bi];
                }
            }
            GgmlType::Q4_0 => {
                for bi in 0..nb {
                    let b = w.as_ptr().add(bi * 18);
                    let d = f16_at(std::slice::from_raw_parts(b, 2));
                    let s = nibble_dot(b.add(2), x.as_ptr().add(bi * 32));
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
                    extra -= 8.0 * d * xsum[bi];
                }
            }
            GgmlType::Q8_0 => {
                for bi in 0..nb {
                    let b = w.as_ptr().add(bi * 34);
                    let d = f16_at(std::slice::from_raw_parts(b, 2));
                    let xp = x.as_ptr().add(bi * 32);
                    let mut s = _mm256_setzero_ps();
                    for k in 0..4 {
                        let q = _mm_loadl_epi64(b.add(2 + 8 * k) as *const __m128i);
                        let qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                        s = _mm256_fmadd_ps(qf, _mm256_loadu_ps(xp.add(8 * k)), s);
                    }
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
                }
            }
            _ => {}
        }
        hsum(acc) + extra
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

    #[test]
    fn quantized_matmul_matches_dequantize_then_multiply() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for kind in [GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q8_0] {
            let (rows, cols, n) = (37, 96, 3);
            let data = random_blocks(kind, rows, cols, 5);
            let mut dense = vec![0f32; rows * cols];
            dequantize_into(kind, &data, &mut dense).unwrap();
            let q = QMatrix::new(kind, rows, cols, data).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0).collect();
            let mut y = vec![0f32; n * rows];
            q.matmul(&x, n, &mut y, &pool);
            for i in 0..n {
                for r in 0..rows {
                    let want: f64 = (0..cols).map(|c| dense[r * cols + c] as f64 * x[i * cols + c] as f64).sum();
                    let got = y[i * rows + r] as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{kind}: row {r} input {i}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn permuted_and_concatenated_rows_keep_their_values() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let a = QMatrix::new(GgmlType::Q4_1, 4, 64, random_blocks(GgmlType::Q4_1, 4, 64, 1)).unwrap();
        let b = QMatrix::new(GgmlType::Q4_1, 2, 64, random_blocks(GgmlType::Q4_1, 2, 64, 2)).unwrap();
        let x: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
        let run = |m: &QMatrix| {
            let mut y = vec![0f32; m.rows];
            m.matmul(&x, 1, &mut y, &pool);
            y
        };
        let (ya, yb) = (run(&a), run(&b));
        let p = a.permute_rows(&[2, 0, 3, 1]).unwrap();
        assert_eq!(run(&p), vec![ya[2], ya[0], ya[3], ya[1]]);
        let c = QMatrix::concat_rows(&[&a, &b]).unwrap();
        assert_eq!(run(&c), [ya.clone(), yb].concat());
    }
}
