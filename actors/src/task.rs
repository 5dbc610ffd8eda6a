//! Inference tasks as the gateway sees them: what it submits and the events it gets back.
//!
//! The HTTP layer (src/gateway.rs) talks only to [`TaskService`]; the distributor actor
//! implements it over the mesh. Nothing here names actix or libp2p.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One chat message (OpenAI roles: system, user, assistant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Prompt {
    /// Rendered with the model's chat template by the miner.
    Chat(Vec<ChatMessage>),
    /// Used as is (`/v1/completions`).
    Text(String),
    /// Texts to embed (`/v1/embeddings`), and the vector size asked for (the model's own
    /// when `None`).
    Embed { inputs: Vec<String>, dimensions: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub max_tokens: u32,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub repetition_penalty: Option<f32>,
    /// OpenAI's `frequency_penalty` (-2..2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// OpenAI's `presence_penalty` (-2..2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// OpenAI's `logit_bias`: (token id, bias -100..100), sorted by token id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logit_bias: Vec<(u32, f32)>,
    /// Log-probabilities: `Some(n)` reports each output token's and the `n` most likely ones'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    /// With `logprobs`: also report the prompt tokens' log-probabilities (`/v1/completions`
    /// `echo`), for prompts of at most [`MAX_PROMPT_LOGPROBS_TOKENS`] tokens.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompt_logprobs: bool,
    /// Structured outputs: the answer is constrained to this format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<brainmesh_models::grammar::ResponseFormat>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_tokens: 64,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: None,
            stop: vec![],
            repetition_penalty: None,
            frequency_penalty: None,
            presence_penalty: None,
            logit_bias: vec![],
            logprobs: None,
            prompt_logprobs: false,
            response_format: None,
        }
    }
}

/// Longest prompt whose log-probabilities a miner computes (one extra forward pass holding a
/// logits row per prompt token).
pub const MAX_PROMPT_LOGPROBS_TOKENS: usize = 1024;

/// A float that JSON carries as `null` when it is not a number (serde_json writes NaN so).
fn f32_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
}

/// One alternative at a step: OpenAI's `top_logprobs` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text (lossy where the token is part of a UTF-8 character).
    pub token: String,
    pub logprob: f32,
    /// The token's raw bytes.
    pub bytes: Vec<u8>,
}

/// An output token's log-probability and the most likely alternatives at its step: OpenAI's
/// `logprobs.content` entry. Computed by the miner from the logits it sampled from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    /// NaN for a prompt's first token (nothing precedes it): `null` in JSON.
    #[serde(deserialize_with = "f32_or_nan")]
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// What the gateway asks the mesh to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Model id as advertised by miners (`GET /v1/models`).
    pub model: String,
    /// The paying account (from the API key).
    pub account: String,
    pub prompt: Prompt,
    pub sampling: Sampling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// End of sequence or a stop sequence.
    Stop,
    /// max_tokens or the context window reached.
    Length,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Events of one task, in order: `Started`, any number of `Token`, then `Done` or `Failed`.
/// A failover to another miner is invisible here except in `Done::attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskEvent {
    Started {
        task_id: String,
        miner: String,
        prompt_tokens: u32,
        /// With [`Sampling::prompt_logprobs`]: one entry per prompt token (the first one's
        /// log-probability is NaN: nothing precedes it).
        prompt_logprobs: Vec<TokenLogprob>,
    },
    /// New text, and the log-probabilities of the tokens it came with (when asked for; a
    /// token whose text is held back reports its log-probability with the next text).
    Token {
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// The vectors of an embedding task, one per input in order.
    Embeddings {
        vectors: Vec<Vec<f32>>,
    },
    Done {
        finish: Finish,
        usage: Usage,
        receipt_id: String,
        attempts: u32,
    },
    Failed(TaskError),
}

/// Why a task could not be served. The gateway maps these to OpenAI error statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskError {
    /// 404
    #[error("The model `{0}` does not exist or no miner serves it")]
    UnknownModel(String),
    /// 400
    #[error("This model's maximum context length is {context} tokens; your prompt has {prompt_tokens} tokens")]
    PromptTooLong { prompt_tokens: u32, context: u32 },
    /// 400
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// 503
    #[error("no miner is available for `{0}` right now")]
    NoMiner(String),
    /// 503 (all attempts failed)
    #[error("the task failed on every miner tried: {0}")]
    Exhausted(String),
    /// 402: the account pays only through gateways it authorised, and not this one (or the
    /// allowance is spent or expired).
    #[error("{0}")]
    NotAuthorized(String),
}

/// Model as listed by `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    /// sha256 of the model file the miners declare.
    pub hash: String,
    pub context_length: u32,
    /// Online miners serving it.
    pub miners: u32,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the HTTP gateway needs from the mesh.
pub trait TaskService: Send + Sync {
    /// Starts a task. Events arrive on the receiver; dropping it cancels the task (the miner
    /// stops generating).
    fn submit(&self, spec: TaskSpec) -> BoxFuture<'_, Result<mpsc::Receiver<TaskEvent>, TaskError>>;
    /// Models currently served by online miners of this Brain.
    fn models(&self) -> BoxFuture<'_, Vec<ModelInfo>>;
}
