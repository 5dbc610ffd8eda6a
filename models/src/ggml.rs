//! The ggml tensor type table: type ids, block layouts and names, shared by the GGUF reader
//! ([`crate::gguf`]) and the quantized CPU kernels ([`crate::qmatmul`]).

/// ggml tensor types known by name (the GGUF reader can dequantize the first six).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    /// Any other ggml type id (K-quants, IQ quants, ...): readable header, not dequantizable.
    Other(u32),
}

impl GgmlType {
    /// The type for a ggml type id read from a file.
    pub(crate) fn from_id(id: u32) -> Self {
        match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }
    /// The ggml type id written in the file.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::BF16 => 30,
            GgmlType::Other(id) => id,
        }
    }
    /// (elements per block, bytes per block), or None for an unsupported type.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q8_0 => Some((32, 34)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Other(_) => None,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GgmlType::Other(id) => write!(f, "ggml type {id}"),
            t => write!(f, "{t:?}"),
        }
    }
}
