//! OpenAI request and response JSON, and the translation of a request into a [`TaskSpec`].
//!
//! Requests accept (and ignore) the fields the official clients may send that do not change
//! the answer (`user`, `store`, `metadata`, `n: 1`, `logprobs: false`, …); fields that would
//! change it and cannot be honoured (`n > 1`, `logprobs`, `tools`, `echo`, …) are refused with a
//! 400 naming the parameter.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use brainmesh_actors::task::{ChatMessage, Finish, Prompt, Sampling, TaskSpec, Usage};

use super::error::ApiError;

/// At most this many stop sequences (OpenAI allows 4; we are a little more lenient).
pub const MAX_STOP_SEQUENCES: usize = 16;

/// `stop`: a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// A chat message's `content`: a string, an array of content parts, or null.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<RequestMessage>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Extension.
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Extension.
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub functions: Option<Vec<Value>>,
    #[serde(default)]
    pub response_format: Option<Value>,
}

/// `prompt` of `/v1/completions`: a string or an array holding one string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    One(String),
    Many(Vec<Value>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptInput,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Extension.
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Extension.
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub best_of: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// An integer for this endpoint.
    #[serde(default)]
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: Option<bool>,
    #[serde(default)]
    pub suffix: Option<String>,
}

/// How the gateway will answer, taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub stream: bool,
    pub include_usage: bool,
}

/// The sampling fields both endpoints share.
struct CommonSampling<'a> {
    max_tokens: u32,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: &'a Option<Stop>,
    top_k: Option<u32>,
    repetition_penalty: Option<f32>,
    n: Option<u32>,
}

/// OpenAI's default temperature.
const DEFAULT_TEMPERATURE: f32 = 1.0;

fn sampling(c: CommonSampling<'_>, max_tokens_param: &str) -> Result<Sampling, ApiError> {
    if let Some(n) = c.n {
        if n != 1 {
            return Err(ApiError::unsupported(
                "n",
                format!("n={n} is not supported: brainmesh returns exactly one choice per request (n must be 1)."),
            ));
        }
    }
    if c.max_tokens == 0 {
        return Err(ApiError::invalid("max_tokens must be at least 1.").with_param(max_tokens_param));
    }
    let temperature = c.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if !temperature.is_finite() || !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(format!(
            "{temperature} is not a valid temperature: it must be between 0 and 2."
        ))
        .with_param("temperature"));
    }
    if let Some(p) = c.top_p {
        if !p.is_finite() || p <= 0.0 || p > 1.0 {
            return Err(ApiError::invalid(format!(
                "{p} is not a valid top_p: it must be greater than 0 and at most 1."
            ))
            .with_param("top_p"));
        }
    }
    if let Some(r) = c.repetition_penalty {
        if !r.is_finite() || r <= 0.0 {
            return Err(ApiError::invalid(format!(
                "{r} is not a valid repetition_penalty: it must be greater than 0."
            ))
            .with_param("repetition_penalty"));
        }
    }
    let stop: Vec<String> = match c.stop {
        None => vec![],
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid(format!(
            "At most {MAX_STOP_SEQUENCES} stop sequences are accepted; got {}.",
            stop.len()
        ))
        .with_param("stop"));
    }
    Ok(Sampling {
        max_tokens: c.max_tokens,
        temperature,
        top_p: c.top_p,
        // top_k = 0 means "no top-k" in most engines.
        top_k: c.top_k.filter(|&k| k > 0),
        // Seeds are int64 in OpenAI's schema; keep all 64 bits.
        seed: c.seed.map(|s| s as u64),
        stop,
        repetition_penalty: c.repetition_penalty,
    })
}

fn delivery(stream: Option<bool>, opts: &Option<StreamOptions>) -> Delivery {
    let stream = stream.unwrap_or(false);
    Delivery { stream, include_usage: stream && opts.as_ref().and_then(|o| o.include_usage).unwrap_or(false) }
}

fn check_model(model: &str) -> Result<(), ApiError> {
    if model.trim().is_empty() {
        return Err(ApiError::invalid("You must provide a model parameter.").with_param("model"));
    }
    Ok(())
}

fn message(i: usize, m: &RequestMessage) -> Result<ChatMessage, ApiError> {
    let param = format!("messages[{i}]");
    let role = match m.role.as_str() {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid role `{other}` in messages[{i}]: brainmesh accepts system, developer, user and assistant messages."
            ))
            .with_param(&format!("{param}.role")))
        }
    };
    let content = match &m.content {
        None => String::new(),
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => out.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::unsupported(
                            &format!("{param}.content[{j}]"),
                            format!("Content parts of type `{kind}` are not supported: only text parts are."),
                        ))
                    }
                }
            }
            out
        }
    };
    Ok(ChatMessage { role: role.to_string(), content })
}

impl ChatCompletionRequest {
    /// The task to submit for `account`, and how to deliver the answer.
    pub fn into_task(self, account: &str, default_max_tokens: u32) -> Result<(TaskSpec, Delivery), ApiError> {
        check_model(&self.model)?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages must hold at least one message.").with_param("messages"));
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(ApiError::unsupported("logprobs", "logprobs are not supported by brainmesh."));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::unsupported("tools", "Tool calls are not supported by brainmesh."));
        }
        if self.functions.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::unsupported("functions", "Function calls are not supported by brainmesh."));
        }
        if let Some(rf) = &self.response_format {
            let kind = rf.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "text" {
                return Err(ApiError::unsupported(
                    "response_format",
                    format!("response_format `{kind}` is not supported: only `text` is."),
                ));
            }
        }
        let messages = self.messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>, _>>()?;
        let (max_tokens, param) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => (m, "max_completion_tokens"),
            (None, Some(m)) => (m, "max_tokens"),
            (None, None) => (default_max_tokens, "max_tokens"),
        };
        let sampling = sampling(
            CommonSampling {
                max_tokens,
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
                stop: &self.stop,
                top_k: self.top_k,
                repetition_penalty: self.repetition_penalty,
                n: self.n,
            },
            param,
        )?;
        let d = delivery(self.stream, &self.stream_options);
        Ok((TaskSpec { model: self.model, account: account.to_string(), prompt: Prompt::Chat(messages), sampling }, d))
    }
}

/// OpenAI's default `max_tokens` for `/v1/completions`.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

impl CompletionRequest {
    pub fn into_task(self, account: &str) -> Result<(TaskSpec, Delivery), ApiError> {
        check_model(&self.model)?;
        let prompt = match self.prompt {
            PromptInput::One(s) => s,
            PromptInput::Many(v) => match v.as_slice() {
                [Value::String(s)] => s.clone(),
                [] => return Err(ApiError::invalid("prompt must not be an empty array.").with_param("prompt")),
                [_] => {
                    return Err(ApiError::unsupported(
                        "prompt",
                        "Token-id prompts are not supported: send the prompt as a string.",
                    ))
                }
                many => {
                    return Err(ApiError::unsupported(
                        "prompt",
                        format!("Batched prompts are not supported: send one prompt per request (got {}).", many.len()),
                    ))
                }
            },
        };
        if self.best_of.is_some_and(|b| b > 1) {
            return Err(ApiError::unsupported("best_of", "best_of > 1 is not supported by brainmesh."));
        }
        if self.logprobs.is_some_and(|n| n > 0) {
            return Err(ApiError::unsupported("logprobs", "logprobs are not supported by brainmesh."));
        }
        if self.echo == Some(true) {
            return Err(ApiError::unsupported("echo", "echo is not supported by brainmesh."));
        }
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::unsupported("suffix", "suffix is not supported by brainmesh."));
        }
        let sampling = sampling(
            CommonSampling {
                max_tokens: self.max_tokens.unwrap_or(COMPLETIONS_DEFAULT_MAX_TOKENS),
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
                stop: &self.stop,
                top_k: self.top_k,
                repetition_penalty: self.repetition_penalty,
                n: self.n,
            },
            "max_tokens",
        )?;
        let d = delivery(self.stream, &self.stream_options);
        Ok((TaskSpec { model: self.model, account: account.to_string(), prompt: Prompt::Text(prompt), sampling }, d))
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageJson {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: String,
    pub content: String,
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: Option<Value>,
    pub finish_reason: String,
}

/// `object: "chat.completion"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: UsageJson,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<String>,
}

/// `object: "text_completion"` (also the object of its stream chunks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<String>,
}

/// `object: "chat.completion.chunk"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Present (null, then the totals on the last chunk) only with
    /// `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<UsageJson>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelObject>,
}

impl ModelObject {
    pub fn new(id: String) -> Self {
        // Models on the mesh have no creation date; 0 keeps the listing stable.
        Self { id, object: "model".into(), created: 0, owned_by: "brainmesh".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(v: Value) -> Result<(TaskSpec, Delivery), ApiError> {
        serde_json::from_value::<ChatCompletionRequest>(v)
            .map_err(|e| ApiError::malformed(e.to_string()))?
            .into_task("acct", 100)
    }

    fn completion(v: Value) -> Result<(TaskSpec, Delivery), ApiError> {
        serde_json::from_value::<CompletionRequest>(v)
            .map_err(|e| ApiError::malformed(e.to_string()))?
            .into_task("acct")
    }

    #[test]
    fn chat_request_with_every_supported_field_maps_onto_the_task_spec() {
        let (spec, d) = chat(serde_json::json!({
            "model": "m", "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": null}
            ],
            "max_completion_tokens": 7, "max_tokens": 9, "temperature": 0, "top_p": 0.5, "seed": -1,
            "stop": "\n", "top_k": 4, "repetition_penalty": 1.1, "n": 1, "user": "u", "logprobs": false,
            "store": false, "metadata": {"a": "b"}, "stream": true, "stream_options": {"include_usage": true}
        }))
        .unwrap();
        assert_eq!(spec.account, "acct");
        assert_eq!(
            spec.prompt,
            Prompt::Chat(vec![
                ChatMessage { role: "system".into(), content: "be brief".into() },
                ChatMessage { role: "user".into(), content: "hi there".into() },
                ChatMessage { role: "assistant".into(), content: "".into() },
            ])
        );
        assert_eq!(
            spec.sampling,
            Sampling {
                max_tokens: 7,
                temperature: 0.0,
                top_p: Some(0.5),
                top_k: Some(4),
                seed: Some(u64::MAX),
                stop: vec!["\n".into()],
                repetition_penalty: Some(1.1)
            }
        );
        assert_eq!(d, Delivery { stream: true, include_usage: true });
    }

    #[test]
    fn chat_defaults_are_openais_temperature_and_the_configured_max_tokens() {
        let (spec, d) =
            chat(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).unwrap();
        assert_eq!(spec.sampling.max_tokens, 100);
        assert_eq!(spec.sampling.temperature, 1.0);
        assert_eq!(d, Delivery { stream: false, include_usage: false });
    }

    #[test]
    fn completion_prompt_may_be_a_string_or_an_array_of_one_string() {
        let (a, _) = completion(serde_json::json!({"model": "m", "prompt": "once"})).unwrap();
        let (b, _) = completion(
            serde_json::json!({"model": "m", "prompt": ["once"], "stop": ["a", "b"], "echo": false, "best_of": 1}),
        )
        .unwrap();
        assert_eq!(a.prompt, Prompt::Text("once".into()));
        assert_eq!(b.prompt, a.prompt);
        assert_eq!(a.sampling.max_tokens, COMPLETIONS_DEFAULT_MAX_TOKENS);
        assert_eq!(b.sampling.stop, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn unservable_fields_are_refused_naming_the_parameter() {
        let cases = [
            (serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}), "n"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true}),
                "logprobs",
            ),
            (serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}), "tools"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 0}), "top_p"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
                "max_tokens",
            ),
            (serde_json::json!({"model": "m", "messages": []}), "messages"),
            (serde_json::json!({"model": "", "messages": [{"role": "user", "content": "x"}]}), "model"),
            (serde_json::json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}), "messages[0].role"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0]",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
                "response_format",
            ),
        ];
        for (body, param) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
        }
        for (body, param) in [
            (serde_json::json!({"model": "m", "prompt": ["a", "b"]}), "prompt"),
            (serde_json::json!({"model": "m", "prompt": [1, 2]}), "prompt"),
            (serde_json::json!({"model": "m", "prompt": [[1, 2]]}), "prompt"),
            (serde_json::json!({"model": "m", "prompt": "x", "best_of": 2}), "best_of"),
            (serde_json::json!({"model": "m", "prompt": "x", "echo": true}), "echo"),
            (serde_json::json!({"model": "m", "prompt": "x", "logprobs": 3}), "logprobs"),
            (serde_json::json!({"model": "m", "prompt": "x", "n": 3}), "n"),
        ] {
            let e = completion(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
        }
    }
}
