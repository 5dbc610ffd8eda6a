//! Encrypted mode ("ZK-LLM" in the whitepaper), honestly scoped: a *head* — not the LLM —
//! evaluated by a miner on the client's TFHE ciphertexts. See docs/encrypted-mode.md.
//!
//! Flow: the client embeds its text locally ([`embed`], all-MiniLM-L6-v2), quantizes the
//! embedding to 4-bit codes with the whitepaper's dynamic scaling ([`quantize`], §5.1), encrypts
//! each code as an LWE ciphertext under its own key ([`client`]), and sends them with its
//! compressed server key ([`wire`]). The miner runs the Brain's squeezed head ([`head`]): an
//! int8 plaintext-weight linear layer with no bootstrapping, one programmable bootstrap per
//! neuron (requantize + ReLU in one lookup table), a small classifier layer; it returns
//! encrypted logits only the client can decrypt. The head is trained in plaintext with
//! quantization-aware training ([`train`]). [`bootstrap_count`] is the whitepaper's
//! `(a+b)+(c×d)+(e×f)` example with counted bootstraps.
//!
//! Stock `tfhe` parameter sets only ([`params`]). What this does not do: run the LLM under
//! encryption, or prove that the miner evaluated the right head.

pub mod bootstrap_count;
pub mod client;
pub mod data;
pub mod embed;
pub mod head;
pub mod params;
pub mod quantize;
pub mod train;
pub mod wire;

use std::path::PathBuf;

pub use client::{Classification, ClientKeys, ClientState, PrivateClassifier};
pub use head::{EncryptedHead, HeadSpec, Miner, QuantizedHead};
pub use params::FheParams;
pub use quantize::DynamicQuantizer;
pub use wire::{WireRequest, WireResponse};

/// Errors of encrypted mode. Everything arriving from a peer is checked and reported through
/// these; nothing in this module panics on peer data.
#[derive(Debug, thiserror::Error)]
pub enum FheError {
    #[error("unknown or unsupported tfhe parameter set {0:?}")]
    UnknownParams(String),
    #[error("{what}: expected {expected}, got {got}")]
    Dimension { what: &'static str, expected: usize, got: usize },
    #[error("request is for head {got}, this miner serves {expected}")]
    WrongHead { expected: String, got: String },
    #[error("no server key cached for key id {0}; resend the request with the key")]
    UnknownKey(String),
    #[error("key mismatch: {0}")]
    KeyMismatch(String),
    #[error("malformed message: {0}")]
    Wire(String),
    #[error("invalid head: {0}")]
    InvalidHead(String),
    #[error("embedder: {0}")]
    Embedder(String),
    #[error("training: {0}")]
    Training(String),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] crate::error::ModelError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

impl FheError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FheError::Io { path: path.into(), source }
    }
}

/// The setup cache: `$BRAINMESH_CACHE`, else `./.cache` if present, else the workspace's
/// `.cache` (so tests, which run in `models/`, find it too).
pub fn cache_dir() -> PathBuf {
    if let Some(c) = std::env::var_os("BRAINMESH_CACHE") {
        return PathBuf::from(c);
    }
    let local = PathBuf::from(".cache");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(".cache")
}

/// Where the committed demo head lives: `models/assets/fhe-head`.
pub fn default_head_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets").join("fhe-head")
}
