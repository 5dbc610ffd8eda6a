//! Writing GGUF files (v3): metadata as key/value pairs, then f32 tensors, 32-byte aligned —
//! enough for llama.cpp and brainmesh to load a model brainmesh produced (an obfuscated copy).

use std::io::Write;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::gguf::Value;

const ALIGN: u64 = 32;

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            out.extend_from_slice(&items.first().map_or(0, type_id).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn pad(out: &mut Vec<u8>) {
    while !(out.len() as u64).is_multiple_of(ALIGN) {
        out.push(0);
    }
}

/// Writes `metadata` and the f32 `tensors` (GGUF names; shapes as PyTorch writes them, rows
/// first) to `path`.
pub fn write_gguf(path: &Path, metadata: &[(String, Value)], tensors: &[(String, Tensor)]) -> Result<()> {
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut head, k);
        head.extend_from_slice(&type_id(v).to_le_bytes());
        put_value(&mut head, v);
    }
    let mut offset = 0u64;
    let mut data: Vec<Tensor> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.f_to_kind(Kind::Float)?.f_contiguous()?;
        put_str(&mut head, name);
        let dims: Vec<i64> = t.size();
        head.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        // GGUF lists dimensions innermost first.
        for d in dims.iter().rev() {
            head.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        head.extend_from_slice(&0u32.to_le_bytes()); // GGML_TYPE_F32
        head.extend_from_slice(&offset.to_le_bytes());
        let bytes = t.numel() as u64 * 4;
        offset += bytes.div_ceil(ALIGN) * ALIGN;
        data.push(t);
    }
    pad(&mut head);
    let file = std::fs::File::create(path).map_err(|e| ModelError::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(&head).map_err(|e| ModelError::io(path, e))?;
    for t in &data {
        let v = Vec::<f32>::try_from(&t.f_view([-1])?)?;
        let mut bytes: Vec<u8> = Vec::with_capacity(v.len() * 4 + ALIGN as usize);
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        pad(&mut bytes);
        w.write_all(&bytes).map_err(|e| ModelError::io(path, e))?;
    }
    w.flush().map_err(|e| ModelError::io(path, e))?;
    Ok(())
}
