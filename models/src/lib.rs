//! brainmesh models: loading and running LLMs with tch (LibTorch).
//!
//! - [`gguf`]: GGUF reader with dequantization (F32, F16, BF16, Q8_0, Q4_0, Q4_1); [`ggml`]: the
//!   ggml tensor type table it shares with the quantized kernels ([`qmatmul`]).
//! - [`hf`]: Hugging Face directories (config.json, memory-mapped safetensors, tokenizer.json).
//! - [`llama`], [`gpt2`]: the architectures; [`cache`]: the preallocated KV cache.
//! - [`generate`]: greedy and sampled generation with streaming, stop sequences and batches.
//! - [`Model`]: one entry point that loads either format.
//!
//! This crate knows nothing of the network.

pub mod act_squeeze;
pub mod cache;
pub mod chat_template;
pub mod device;
pub mod distill;
pub mod error;
/// Sentence embeddings served over the mesh (`/v1/embeddings`): the MiniLM encoder.
pub mod embed {
    pub use crate::fhe::embed::{default_minilm_dir, MiniLm};
}
pub mod fhe;
pub mod generate;
pub mod ggml;
pub mod gguf;
pub mod gguf_write;
pub mod gpt2;
pub mod grammar;
pub mod hf;
pub mod kernel_pool;
pub mod llama;
pub mod model;
pub mod obfuscate;
pub mod prefix;
pub mod proof;
pub mod qmatmul;
pub mod quant;
pub mod squeeze;
pub mod tiny;
pub mod tokenizer;

pub use device::DevicePref;
pub use error::{ModelError, Result};
pub use generate::{FinishReason, GenerateConfig, Generation, TokenEvent, TokenLogprobs, MAX_TOP_LOGPROBS};
pub use model::{LoadOptions, LoadProgress, Model, Network};
pub use prefix::{PrefixCache, PrefixStats};
pub use tokenizer::{ChatMessage, ChatTemplate, JinjaTemplate, Tokenizer};
