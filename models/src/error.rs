//! The crate's error type: what a caller (CLI, miner actor) can match on.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or generating text.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid model file (bad magic, truncated, offsets out of range, ...).
    #[error("corrupt model file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The model's architecture is not one this crate implements.
    #[error("unknown model architecture {0:?} (supported: llama, gpt2)")]
    UnknownArchitecture(String),
    /// A tensor type (quantization) this crate cannot dequantize.
    #[error("tensor {name}: unsupported tensor type {kind}")]
    UnsupportedTensorType { name: String, kind: String },
    /// A required metadata key or config field is missing or has the wrong type.
    #[error("missing or invalid metadata {0}")]
    Metadata(String),
    /// A tensor the architecture needs is not in the file.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// A tensor has a shape the architecture does not expect.
    #[error("tensor {name} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch { name: String, actual: Vec<i64>, expected: Vec<i64> },
    /// The tokenizer could not be built or failed on the input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt does not fit in the model's context window.
    #[error("prompt is {prompt_tokens} tokens but the model's context is {context} tokens")]
    PromptTooLong { prompt_tokens: usize, context: usize },
    /// A generation parameter is out of range (temperature < 0, top_p outside (0, 1], ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An error raised by LibTorch.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::Corrupt { path: path.into(), reason: reason.into() }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }
}
