//! Server-sent events as OpenAI sends them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` last.
//!
//! The body stream owns the task's event receiver, so when actix drops the body (the client
//! went away) the receiver is dropped and the task is cancelled.

use std::collections::VecDeque;
use std::convert::Infallible;

use actix_web::web::Bytes;
use futures::Stream;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use brainmesh_actors::task::{Finish, TaskError, TaskEvent, TokenLogprob, Usage};

use super::error::ApiError;
use super::openai::{
    chat_logprobs, completion_logprobs, finish_reason, read_tool_answer, tool_call_json, ChatCompletionChunk,
    ChunkChoice, Delta, LogprobsShape, TextChoice, TextCompletion, ToolAnswer, UsageJson,
};

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
    /// Whether chunks carry log-probabilities, and in which shape.
    pub logprobs: Option<LogprobsShape>,
    /// Tool mode: each choice's answer is held until it is complete, then sent as a tool call
    /// (with this call id per choice) or as text.
    pub tools: Option<Vec<String>>,
}

impl Chunker {
    fn usage_field(&self) -> Option<Option<UsageJson>> {
        self.include_usage.then_some(None)
    }

    fn chat(&self, index: u32, delta: Delta, logprobs: Option<Value>, finish: Option<Finish>) -> Bytes {
        self.chat_with(index, delta, logprobs, finish.map(|f| finish_reason(f).to_string()))
    }

    fn chat_with(&self, index: u32, delta: Delta, logprobs: Option<Value>, finish: Option<String>) -> Bytes {
        event(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index, delta, logprobs, finish_reason: finish }],
            usage: self.usage_field(),
        })
    }

    /// The end of a tool-mode choice: the held answer as one tool call (finish reason
    /// `tool_calls`) or as text.
    fn tool_answer(&self, index: u32, text: &str, finish: Finish) -> Vec<Bytes> {
        let call_id = self.tools.as_ref().and_then(|ids| ids.get(index as usize)).cloned().unwrap_or_default();
        match read_tool_answer(text) {
            ToolAnswer::Call { name, arguments } => {
                let call = tool_call_json(&call_id, &name, &arguments, Some(0));
                vec![
                    self.chat(index, Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None, None),
                    self.chat_with(index, Delta::default(), None, Some("tool_calls".into())),
                ]
            }
            ToolAnswer::Text(t) | ToolAnswer::Raw(t) => vec![
                self.chat(index, Delta { content: Some(t), ..Delta::default() }, None, None),
                self.chat(index, Delta::default(), None, Some(finish)),
            ],
        }
    }

    fn text(&self, index: u32, text: String, logprobs: Option<Value>, finish: Option<Finish>) -> Bytes {
        event(&TextCompletion {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![TextChoice {
                text,
                index,
                logprobs,
                finish_reason: finish.map(|f| finish_reason(f).to_string()),
            }],
            usage: None,
        })
    }

    /// The chunk sent before any token of choice `index`: the assistant role for chat, the
    /// echoed prompt (if any, with its tokens' log-probabilities when computed) for completions.
    pub fn opening(&self, index: u32, echo: &str, prompt_logprobs: &[TokenLogprob]) -> Option<Bytes> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chat(
                index,
                Delta { role: Some("assistant".into()), content: Some(String::new()), tool_calls: None },
                None,
                None,
            )),
            Endpoint::Completion if !echo.is_empty() => {
                let lp = (self.logprobs.is_some() && !prompt_logprobs.is_empty())
                    .then(|| completion_logprobs(prompt_logprobs, &mut 0));
                Some(self.text(index, echo.to_string(), lp, None))
            }
            Endpoint::Completion => None,
        }
    }

    /// New text of choice `index`, with its tokens' log-probabilities (`offset`: the character
    /// offset of the first token in the choice's text, moved past them).
    pub fn content(&self, index: u32, text: String, logprobs: &[TokenLogprob], offset: &mut usize) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => {
                let lp = self.logprobs.map(|_| chat_logprobs(logprobs));
                self.chat(index, Delta { content: Some(text), ..Delta::default() }, lp, None)
            }
            Endpoint::Completion => {
                let lp = self.logprobs.map(|_| completion_logprobs(logprobs, offset));
                self.text(index, text, lp, None)
            }
        }
    }

    pub fn finish(&self, index: u32, finish: Finish) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => self.chat(index, Delta::default(), None, Some(finish)),
            Endpoint::Completion => self.text(index, String::new(), None, Some(finish)),
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
    rx: Option<mpsc::Receiver<(u32, TaskEvent)>>,
    queue: VecDeque<Bytes>,
    chunker: Chunker,
    /// Per choice: finished, the character offset of its next token, and (tool mode) the
    /// answer held so far.
    done: Vec<bool>,
    offsets: Vec<usize>,
    held: Vec<String>,
    usage: Usage,
}

/// The SSE body for tasks that have all started: `echoes[i]` opens choice `i` (completions'
/// `echo` and the prompt's log-probabilities; empty otherwise), `rx` carries every choice's events tagged with its index. Usage
/// and `[DONE]` follow the last choice's end; any choice failing ends the stream with an error.
pub fn body(
    chunker: Chunker,
    echoes: Vec<(String, Vec<TokenLogprob>)>,
    rx: mpsc::Receiver<(u32, TaskEvent)>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let n = echoes.len();
    let mut state = SseState {
        rx: Some(rx),
        queue: VecDeque::new(),
        chunker,
        done: vec![false; n],
        offsets: echoes.iter().map(|(e, _)| e.chars().count()).collect(),
        held: vec![String::new(); n],
        usage: Usage::default(),
    };
    for (i, (echo, lps)) in echoes.iter().enumerate() {
        let opening = state.chunker.opening(i as u32, echo, lps);
        state.queue.extend(opening);
    }
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(b) = s.queue.pop_front() {
                return Some((Ok(b), s));
            }
            let rx = s.rx.as_mut()?;
            let ev = rx.recv().await;
            match ev {
                Some((i, ev)) => s.push(i, ev),
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
    fn push(&mut self, index: u32, ev: TaskEvent) {
        let i = index as usize;
        if self.done.get(i).is_none_or(|&d| d) {
            return;
        }
        match ev {
            TaskEvent::Started { .. } | TaskEvent::Embeddings { .. } => {}
            TaskEvent::Token { text, .. } if self.chunker.tools.is_some() => self.held[i].push_str(&text),
            TaskEvent::Token { text, logprobs } => {
                if !text.is_empty() || !logprobs.is_empty() {
                    let chunk = self.chunker.content(index, text, &logprobs, &mut self.offsets[i]);
                    self.queue.push_back(chunk);
                }
            }
            TaskEvent::Done { finish, usage, .. } => {
                self.done[i] = true;
                self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(usage.prompt_tokens);
                self.usage.completion_tokens = self.usage.completion_tokens.saturating_add(usage.completion_tokens);
                if self.chunker.tools.is_some() {
                    let end = self.chunker.tool_answer(index, &self.held[i], finish);
                    self.queue.extend(end);
                } else {
                    self.queue.push_back(self.chunker.finish(index, finish));
                }
                if self.done.iter().all(|&d| d) {
                    if self.chunker.include_usage {
                        self.queue.push_back(self.chunker.usage(self.usage));
                    }
                    self.queue.push_back(Bytes::from_static(DONE));
                    self.rx = None;
                }
            }
            TaskEvent::Failed(e) => {
                self.queue.push_back(error_event(&ApiError::from(e)));
                self.rx = None;
            }
        }
    }
}
