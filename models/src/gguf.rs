//! GGUF reader (v2 and v3): header, metadata, tensor infos, alignment, and dequantization of
//! F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors to f32.
//!
//! The file is memory-mapped; every offset and length read from it is checked against the file
//! size, so a truncated or corrupt file gives [`ModelError::Corrupt`], never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
pub use crate::ggml::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Upper bound on any count read from the header, so a corrupt count cannot make us allocate
/// terabytes before we notice the file is too short.
const MAX_COUNT: u64 = 1 << 24;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's description in the GGUF header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub kind: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// The PyTorch shape (outermost first): the reverse of the ggml dims.
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    pub version: u32,
    pub alignment: u64,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_start: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> ModelError {
        ModelError::corrupt(self.path, format!("truncated or invalid header at byte {} while reading {what}", self.pos))
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.err(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn count(&mut self, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        if n > MAX_COUNT {
            return Err(ModelError::corrupt(self.path, format!("{what} = {n} is implausibly large")));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > self.buf.len() as u64 {
            return Err(self.err(what));
        }
        let bytes = self.take(n as usize, what)?;
        // Token strings are not always valid UTF-8 in the wild; keep them lossy rather than fail.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        let w = "metadata value";
        Ok(match ty {
            0 => Value::U8(self.array::<1>(w)?[0]),
            1 => Value::I8(self.array::<1>(w)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(w)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(w)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(w)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(w)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(w)?)),
            7 => Value::Bool(self.array::<1>(w)?[0] != 0),
            8 => Value::String(self.string(w)?),
            9 => {
                if depth > 4 {
                    return Err(ModelError::corrupt(self.path, "metadata arrays nested too deeply"));
                }
                let ity = self.u32("array item type")?;
                let n = self.count("array length")?;
                // Every item takes at least one byte: a cheap sanity check before allocating.
                if n > self.buf.len() - self.pos {
                    return Err(self.err("array"));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(ity, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array(w)?)),
            11 => Value::I64(i64::from_le_bytes(self.array(w)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(w)?)),
            other => return Err(ModelError::corrupt(self.path, format!("unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file (the tensor data stays memory-mapped).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
        // SAFETY: the map is read-only; a file changed underneath us could give wrong weights
        // but every access is bounds-checked against the length taken at map time.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
        Self::parse(path, mmap)
    }

    fn parse(path: PathBuf, mmap: Mmap) -> Result<Self> {
        let (version, alignment, metadata, tensors, data_start) = {
            let mut c = Cursor { buf: &mmap[..], pos: 0, path: &path };
            let magic = c.take(4, "magic")?;
            if magic != MAGIC {
                return Err(ModelError::corrupt(&path, "not a GGUF file (bad magic)"));
            }
            let version = c.u32("version")?;
            if !(2..=3).contains(&version) {
                return Err(ModelError::corrupt(&path, format!("unsupported GGUF version {version}")));
            }
            let n_tensors = c.count("tensor count")?;
            let n_kv = c.count("metadata count")?;
            let mut metadata = Vec::with_capacity(n_kv.min(4096));
            for _ in 0..n_kv {
                let key = c.string("metadata key")?;
                let ty = c.u32("metadata type")?;
                let v = c.value(ty, 0)?;
                metadata.push((key, v));
            }
            let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16));
            for _ in 0..n_tensors {
                let name = c.string("tensor name")?;
                let n_dims = c.u32("tensor rank")?;
                if n_dims > 4 {
                    return Err(ModelError::corrupt(&path, format!("tensor {name} has rank {n_dims}")));
                }
                let mut dims = Vec::with_capacity(n_dims as usize);
                for _ in 0..n_dims {
                    dims.push(c.u64("tensor dim")?);
                }
                let kind = GgmlType::from_id(c.u32("tensor type")?);
                let offset = c.u64("tensor offset")?;
                tensors.push(TensorInfo { name, dims, kind, offset });
            }
            let alignment = metadata
                .iter()
                .find(|(k, _)| k == "general.alignment")
                .and_then(|(_, v)| v.as_u64())
                .unwrap_or(DEFAULT_ALIGNMENT);
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(ModelError::corrupt(&path, format!("bad alignment {alignment}")));
            }
            let pos = c.pos as u64;
            let data_start = pos.div_ceil(alignment) * alignment;
            (version, alignment, metadata, tensors, data_start)
        };
        let index = metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        let tensor_index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let file = GgufFile { path, mmap, version, alignment, metadata, index, tensors, tensor_index, data_start };
        // Check every tensor's extent up front: a truncated file fails at open, not mid-load.
        for t in &file.tensors {
            file.tensor_bytes(t)?;
        }
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key).and_then(Value::as_str).ok_or_else(|| ModelError::Metadata(key.into()))
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(Value::as_u64).ok_or_else(|| ModelError::Metadata(key.into()))
    }
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key).and_then(Value::as_f64).ok_or_else(|| ModelError::Metadata(key.into()))
    }
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor, bounds-checked against the file.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8]> {
        let corrupt = |r: String| ModelError::corrupt(&self.path, format!("tensor {}: {r}", t.name));
        let (per_block, block_bytes) = match t.kind.block_layout() {
            Some(l) => l,
            // Unknown types: we cannot size them; they fail when dequantized.
            None => return Ok(&[]),
        };
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| corrupt("element count overflows".into()))?;
        if t.dims.first().is_some_and(|&d0| d0 % per_block as u64 != 0) {
            return Err(corrupt(format!("row length not a multiple of the block size {per_block}")));
        }
        let nbytes = (n / per_block as u64)
            .checked_mul(block_bytes as u64)
            .ok_or_else(|| corrupt("byte size overflows".into()))?;
        let start = self.data_start.checked_add(t.offset).ok_or_else(|| corrupt("offset overflows".into()))?;
        let end = start.checked_add(nbytes).ok_or_else(|| corrupt("offset overflows".into()))?;
        if end > self.mmap.len() as u64 {
            return Err(corrupt(format!(
                "data [{start}, {end}) lies beyond the end of the file ({} bytes): truncated?",
                self.mmap.len()
            )));
        }
        Ok(&self.mmap[start as usize..end as usize])
    }

    /// Dequantizes a tensor to f32 (ggml element order).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor_info(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let bytes = self.tensor_bytes(t)?;
        let n = t.n_elements() as usize;
        let mut out = vec![0f32; n];
        dequantize_into(t.kind, bytes, &mut out)
            .map_err(|kind| ModelError::UnsupportedTensorType { name: name.into(), kind: kind.to_string() })?;
        Ok(out)
    }

    /// A 2-D quantized tensor kept in its blocks, for the CPU decode kernels
    /// (None for other types or ranks).
    pub fn qmatrix(&self, name: &str) -> Result<Option<crate::qmatmul::QMatrix>> {
        let t = self.tensor_info(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        if t.dims.len() != 2 {
            return Ok(None);
        }
        let bytes = self.tensor_bytes(t)?;
        Ok(crate::qmatmul::QMatrix::new(t.kind, t.dims[1] as usize, t.dims[0] as usize, bytes.to_vec()))
    }

    /// A tensor as a tch tensor of `kind` on `device`, PyTorch shape (reverse of ggml dims).
    pub fn tensor(&self, name: &str, device: Device, kind: Kind) -> Result<Tensor> {
        let t = self.tensor_info(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let shape = t.shape();
        let data = self.dequantize(name)?;
        let x = Tensor::f_from_slice(&data)?.f_reshape(&shape)?;
        Ok(x.f_to_device(device)?.f_to_kind(kind)?)
    }
}

/// Dequantizes `src` (blocks of `kind`) into `dst`; splits the work over the available cores.
/// Returns `Err(kind)` for a type it cannot dequantize.
pub fn dequantize_into(kind: GgmlType, src: &[u8], dst: &mut [f32]) -> std::result::Result<(), GgmlType> {
    let (per_block, block_bytes) = kind.block_layout().ok_or(kind)?;
    let n_blocks = dst.len() / per_block;
    debug_assert_eq!(src.len(), n_blocks * block_bytes);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let blocks_per_chunk = n_blocks.div_ceil(threads).max(4096);
    if n_blocks <= blocks_per_chunk {
        dequant_blocks(kind, src, dst);
        return Ok(());
    }
    std::thread::scope(|s| {
        for (sc, dc) in src.chunks(blocks_per_chunk * block_bytes).zip(dst.chunks_mut(blocks_per_chunk * per_block)) {
            s.spawn(move || dequant_blocks(kind, sc, dc));
        }
    });
    Ok(())
}

#[inline]
fn f16_at(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

fn dequant_blocks(kind: GgmlType, src: &[u8], dst: &mut [f32]) {
    match kind {
        GgmlType::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16_at(b);
            }
        }
        GgmlType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let d = f16_at(&b[0..2]);
                for (x, &q) in o.iter_mut().zip(&b[2..34]) {
                    *x = d * (q as i8) as f32;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
                let d = f16_at(&b[0..2]);
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    let q = b[2 + j];
                    lo[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    hi[j] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in dst.chunks_exact_mut(32).zip(src.chunks_exact(20)) {
                let d = f16_at(&b[0..2]);
                let m = f16_at(&b[2..4]);
                let (lo, hi) = o.split_at_mut(16);
                for j in 0..16 {
                    let q = b[4 + j];
                    lo[j] = d * (q & 0x0f) as f32 + m;
                    hi[j] = d * (q >> 4) as f32 + m;
                }
            }
        }
        GgmlType::Other(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_1_block_puts_low_nibbles_first_and_adds_the_minimum() {
        let mut b = Vec::new();
        b.extend_from_slice(&h(0.5));
        b.extend_from_slice(&h(-1.0));
        // byte j holds element j (low nibble) and element j+16 (high nibble)
        for j in 0..16u8 {
            b.push(j | ((15 - j) << 4));
        }
        let mut out = vec![0f32; 32];
        dequantize_into(GgmlType::Q4_1, &b, &mut out).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * j as f32 - 1.0);
            assert_eq!(out[j + 16], 0.5 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q4_0_block_is_centered_on_eight() {
        let mut b = Vec::new();
        b.extend_from_slice(&h(2.0));
        for j in 0..16u8 {
            b.push(j | (j << 4));
        }
        let mut out = vec![0f32; 32];
        dequantize_into(GgmlType::Q4_0, &b, &mut out).unwrap();
        for j in 0..16 {
            assert_eq!(out[j], 2.0 * (j as f32 - 8.0));
            assert_eq!(out[j + 16], out[j]);
        }
    }

    #[test]
    fn q8_0_block_scales_signed_bytes() {
        let mut b = Vec::new();
        b.extend_from_slice(&h(0.25));
        for j in 0..32i8 {
            b.push((j - 16) as u8);
        }
        let mut out = vec![0f32; 32];
        dequantize_into(GgmlType::Q8_0, &b, &mut out).unwrap();
        for (j, v) in out.iter().enumerate() {
            assert_eq!(*v, 0.25 * (j as f32 - 16.0));
        }
    }

    #[test]
    fn large_tensors_dequantize_the_same_when_split_across_threads() {
        let n_blocks = 20_000;
        let mut src = Vec::with_capacity(n_blocks * 20);
        for i in 0..n_blocks {
            src.extend_from_slice(&h((i % 7) as f32 * 0.125));
            src.extend_from_slice(&h(-((i % 3) as f32)));
            for j in 0..16 {
                src.push(((i + j) % 256) as u8);
            }
        }
        let mut par = vec![0f32; n_blocks * 32];
        dequantize_into(GgmlType::Q4_1, &src, &mut par).unwrap();
        let mut seq = vec![0f32; n_blocks * 32];
        dequant_blocks(GgmlType::Q4_1, &src, &mut seq);
        assert_eq!(par, seq);
    }

    #[test]
    fn unsupported_types_are_reported_not_zero_filled() {
        let mut out = vec![0f32; 256];
        assert_eq!(dequantize_into(GgmlType::Other(12), &[], &mut out), Err(GgmlType::Other(12)));
    }
}
