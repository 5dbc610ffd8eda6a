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
        }
    }
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
    Started { task_id: String, miner: String, prompt_tokens: u32 },
    Token { text: String },
    Done { finish: Finish, usage: Usage, receipt_id: String, attempts: u32 },
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
