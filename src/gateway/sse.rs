//! Server-sent events as OpenAI sends them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` last.
//!
//! The body stream owns the task's event receiver, so when actix drops the body (the client
//! went away) the receiver is dropped and the task is cancelled.

use std::collections::VecDeque;
use std::convert::Infallible;

use actix_web::web::Bytes;
use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use brainmesh_actors::task::{Finish, TaskError, TaskEvent, Usage};

use super::error::ApiError;
use super::openai::{finish_reason, ChatCompletionChunk, ChunkChoice, Delta, TextChoice, TextCompletion, UsageJson};

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One `data:` event.
pub fn event(v: &impl Serialize) -> Bytes {
    // Serialising our own plain structs cannot fail; fall back to an error event if it ever did.
    let json = serde_json::to_string(v).unwrap_or_else(|e| {
        format!("{{\"error\":{{\"message\":\"{e}\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}")
    });
    Bytes::from(format!("data: {json}\n\n"))
}

/// Which endpoint's chunk shape to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// What every chunk of one answer shares.
#[derive(Debug, Clone)]
pub struct Chunker {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
}

impl Chunker {
    fn usage_field(&self) -> Option<Option<UsageJson>> {
        self.include_usage.then_some(None)
    }

    fn chat(&self, delta: Delta, finish: Option<Finish>) -> Bytes {
        event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish.map(|f| finish_reason(f).to_string()),
            }],
            usage: self.usage_field(),
        })
    }

    fn text(&self, text: String, finish: Option<Finish>) -> Bytes {
        event(&TextCompletion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![TextChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: finish.map(|f| finish_reason(f).to_string()),
            }],
            usage: None,
        })
    }

    /// The chunks sent before any token: the assistant role for chat, nothing for completions.
    pub fn opening(&self) -> Option<Bytes> {
        match self.endpoint {
            Endpoint::Chat => {
                Some(self.chat(Delta { role: Some("assistant".into()), content: Some(String::new()) }, None))
            }
            Endpoint::Completion => None,
        }
    }

    pub fn content(&self, text: String) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => self.chat(Delta { role: None, content: Some(text) }, None),
            Endpoint::Completion => self.text(text, None),
        }
    }

    pub fn finish(&self, finish: Finish) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => self.chat(Delta::default(), Some(finish)),
            Endpoint::Completion => self.text(String::new(), Some(finish)),
        }
    }

    /// The extra last chunk of `stream_options.include_usage`: no choices, the totals.
    pub fn usage(&self, usage: Usage) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => event(&ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk".into(),
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage: Some(Some(usage.into())),
            }),
            Endpoint::Completion => event(&TextCompletion {
                id: self.id.clone(),
                object: "text_completion".into(),
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage: Some(usage.into()),
            }),
        }
    }
}

/// The error event sent when a task fails after streaming began (the official clients raise
/// an `APIError` on it).
pub fn error_event(e: &ApiError) -> Bytes {
    event(&e.body())
}

struct SseState {
    rx: Option<mpsc::Receiver<TaskEvent>>,
    queue: VecDeque<Bytes>,
    chunker: Chunker,
}

/// The SSE body for a task that has started. `pending` are events already taken off `rx`
/// (after `Started`) that must be sent first.
pub fn body(
    chunker: Chunker,
    pending: Vec<TaskEvent>,
    rx: mpsc::Receiver<TaskEvent>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let mut state = SseState { rx: Some(rx), queue: VecDeque::new(), chunker };
    state.queue.extend(state.chunker.opening());
    for ev in pending {
        state.push(ev);
    }
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.queue.pop_front() {
                return Some((Ok(b), s));
            }
            let rx = s.rx.as_mut()?;
            let ev = rx.recv().await;
            match ev {
                Some(ev) => s.push(ev),
                None => {
                    let e = ApiError::from(TaskError::Exhausted("the task ended without a result".into()));
                    s.queue.push_back(error_event(&e));
                    s.rx = None;
                }
            }
        }
    })
}

impl SseState {
    fn push(&mut self, ev: TaskEvent) {
        match ev {
            TaskEvent::Started { .. } => {}
            TaskEvent::Token { text } => {
                if !text.is_empty() {
                    self.queue.push_back(self.chunker.content(text));
                }
            }
            TaskEvent::Done { finish, usage, .. } => {
                self.queue.push_back(self.chunker.finish(finish));
                if self.chunker.include_usage {
                    self.queue.push_back(self.chunker.usage(usage));
                }
                self.queue.push_back(Bytes::from_static(DONE));
                self.rx = None;
            }
            TaskEvent::Failed(e) => {
                self.queue.push_back(error_event(&ApiError::from(e)));
                self.rx = None;
            }
        }
    }
}
