//! The task protocol (`/brainmesh/task/1`, request-response):
//! - gateway → miner: `Assign` (the task, sealed to the miner) → `Ack`;
//! - miner → gateway: `Chunk` (tokens as they come, sealed to the gateway) → `Ack`, whose
//!   `cont: false` tells the miner to stop (client gone, task moved elsewhere).
//!
//! Streaming is a sequence of chunk requests; cancellation rides on the acks.

use brainmesh_ledger::BrainId;
use serde::{Deserialize, Serialize};

use crate::task::{Finish, Prompt, Sampling, TaskError, TokenLogprob};

/// Largest message on the task protocol.
pub const MAX_TASK_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskWire {
    Assign(SealedAssign),
    Chunk(SealedChunk),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedAssign {
    pub task_id: String,
    /// Which attempt of the task this is (failover increments it).
    pub attempt: u32,
    /// Gateway's ephemeral X25519 public key (hex).
    pub eph: String,
    pub nonce: String,
    pub ct: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedChunk {
    pub task_id: String,
    pub attempt: u32,
    pub seq: u64,
    pub ct: String,
}

/// The plaintext of an assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignBody {
    pub task_id: String,
    pub brain: BrainId,
    pub model: String,
    pub account: String,
    pub prompt: Prompt,
    pub sampling: Sampling,
    /// Tokens already produced by an earlier attempt: the miner continues after them.
    pub resume_tokens: Vec<u32>,
    /// Hex, fresh per attempt: the receipt's digests bind the proofs and the output to it.
    #[serde(default)]
    pub nonce: String,
}

/// The plaintext of a result chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkBody {
    /// Set on the first chunk.
    pub prompt_tokens: Option<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub done: Option<DoneBody>,
    pub error: Option<TaskError>,
    /// One entry per token of `tokens`, when the task asked for log-probabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<TokenLogprob>,
    /// Set on the first chunk of a task that asked for the prompt's log-probabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_logprobs: Vec<TokenLogprob>,
    /// An embedding task's vectors, one per input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embeddings: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneBody {
    pub finish: Finish,
    /// Tokens this attempt generated.
    pub completion_tokens: u32,
    /// The receipt body (JSON) and the miner's signature over it.
    pub receipt: String,
    pub miner_sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Assign: accepted. Chunk: keep going.
    pub cont: bool,
    pub error: Option<String>,
}

impl Ack {
    pub fn ok() -> Self {
        Self { cont: true, error: None }
    }
    pub fn stop(reason: impl Into<String>) -> Self {
        Self { cont: false, error: Some(reason.into()) }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompts_first_token_without_a_logprob_survives_the_wire_as_null() {
        let first =
            TokenLogprob { token: "Once".into(), logprob: f32::NAN, bytes: b"Once".to_vec(), top_logprobs: vec![] };
        let next =
            TokenLogprob { token: " upon".into(), logprob: -1.5, bytes: b" upon".to_vec(), top_logprobs: vec![] };
        let body = ChunkBody { prompt_logprobs: vec![first, next], ..ChunkBody::default() };
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains(r#""logprob":null"#), "{json}");
        let back: ChunkBody = serde_json::from_str(&json).unwrap();
        assert!(back.prompt_logprobs[0].logprob.is_nan());
        assert_eq!(back.prompt_logprobs[1].logprob, -1.5);
    }
}
