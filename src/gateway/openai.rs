//! OpenAI request and response JSON, and the translation of a request into a [`TaskSpec`].
//!
//! Requests accept (and ignore) the fields the official clients may send that do not change
//! the answer (`user`, `store`, `metadata`, …); fields that would change it and cannot be
//! honoured (`tools`, `suffix`, token-id prompts, …) are refused with a 400 naming the parameter.
//!
//! One request becomes one task per choice: `n` samples of each prompt of the list, in OpenAI's
//! order (prompt 0's samples first). Each task is served, proven and metered on its own — one
//! receipt per sequence — because each may run on a different miner and a validator re-checks
//! one sequence against one transcript. A miner serving several of them reuses the shared
//! prompt's keys and values through its prefix cache.
//!
//! Seeds: choice `i` of a request with `seed: s` samples with seed `s + i` (so `n: 1` and
//! choice 0 agree); without a seed each sampled choice gets a fresh random one, which the miner
//! records in its transcript so a validator replays the same draws.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use brainmesh_actors::models::grammar::ResponseFormat;
use brainmesh_actors::task::{ChatMessage, Finish, Prompt, Sampling, TaskSpec, TokenLogprob, Usage};

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
    /// An assistant turn that called tools.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    /// A tool's answer names the call it answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
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
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, Value>>,
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
    pub tool_choice: Option<Value>,
    /// Accepted; at most one call is made per choice.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
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
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub logit_bias: Option<BTreeMap<String, Value>>,
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

/// Which `logprobs` object the answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogprobsShape {
    /// `{"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}`.
    Chat,
    /// `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`.
    Completion,
}

/// A request turned into tasks: `specs[i]` is choice `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub specs: Vec<TaskSpec>,
    pub delivery: Delivery,
    pub logprobs: Option<LogprobsShape>,
    /// `/v1/completions` `echo`: each choice's text starts with its prompt.
    pub echo: bool,
    /// The answer is a tool-call object ([`read_tool_answer`]) to turn into `tool_calls`.
    pub tools: bool,
}

/// At most this many choices (prompts × n) per request.
pub const MAX_CHOICES: u32 = 16;

/// The sampling fields both endpoints share.
struct CommonSampling<'a> {
    max_tokens: u32,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<i64>,
    stop: &'a Option<Stop>,
    top_k: Option<u32>,
    repetition_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: &'a Option<BTreeMap<String, Value>>,
    logprobs: Option<u32>,
}

/// OpenAI's default temperature.
const DEFAULT_TEMPERATURE: f32 = 1.0;

/// `n` (1 by default), at most [`MAX_CHOICES`] together with the number of prompts.
fn choices(n: Option<u32>, prompts: usize) -> Result<u32, ApiError> {
    let n = n.unwrap_or(1);
    if n == 0 {
        return Err(ApiError::invalid("n must be at least 1.").with_param("n"));
    }
    if u64::from(n) * prompts as u64 > u64::from(MAX_CHOICES) {
        return Err(ApiError::invalid(format!(
            "At most {MAX_CHOICES} choices per request: n={n} for {prompts} prompt(s) asks for {}.",
            u64::from(n) * prompts as u64
        ))
        .with_param("n"));
    }
    Ok(n)
}

fn logit_bias(m: &Option<BTreeMap<String, Value>>) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(m) = m else { return Ok(vec![]) };
    if m.len() > 300 {
        return Err(ApiError::invalid(format!("logit_bias may name at most 300 tokens; got {}.", m.len()))
            .with_param("logit_bias"));
    }
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        let Ok(token) = k.trim().parse::<u32>() else {
            return Err(ApiError::invalid(format!("logit_bias keys must be token ids; `{k}` is not one."))
                .with_param("logit_bias"));
        };
        match v.as_f64() {
            Some(b) if (-100.0..=100.0).contains(&b) => out.push((token, b as f32)),
            _ => {
                return Err(ApiError::invalid(format!(
                    "logit_bias for token {token} must be a number between -100 and 100; got {v}."
                ))
                .with_param("logit_bias"))
            }
        }
    }
    Ok(out)
}

/// The seed of choice `i`: `seed + i`, or a fresh random seed when the request set none and
/// samples (greedy decoding draws nothing).
fn choice_seed(seed: Option<u64>, temperature: f32, i: u32) -> Option<u64> {
    match seed {
        Some(s) => Some(s.wrapping_add(u64::from(i))),
        None if temperature > 0.0 => Some(rand::random::<u64>()),
        None => None,
    }
}

/// `count` copies of `spec`, choice `i` with its own seed.
fn per_choice(spec: TaskSpec, count: u32) -> Vec<TaskSpec> {
    (0..count)
        .map(|i| {
            let mut s = spec.clone();
            s.sampling.seed = choice_seed(spec.sampling.seed, spec.sampling.temperature, i);
            s
        })
        .collect()
}

fn sampling(c: CommonSampling<'_>, max_tokens_param: &str) -> Result<Sampling, ApiError> {
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
    for (name, v) in [("frequency_penalty", c.frequency_penalty), ("presence_penalty", c.presence_penalty)] {
        if let Some(v) = v {
            if !v.is_finite() || !(-2.0..=2.0).contains(&v) {
                return Err(ApiError::invalid(format!("{v} is not a valid {name}: it must be between -2 and 2."))
                    .with_param(name));
            }
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
        frequency_penalty: c.frequency_penalty.filter(|&v| v != 0.0),
        presence_penalty: c.presence_penalty.filter(|&v| v != 0.0),
        logit_bias: logit_bias(c.logit_bias)?,
        logprobs: c.logprobs,
        prompt_logprobs: false,
        response_format: None,
    })
}

/// `response_format`: text (no constraint), `json_object` or `json_schema`; a schema the
/// grammar cannot enforce is refused here, naming what it lacks.
fn response_format(rf: &Option<Value>) -> Result<Option<ResponseFormat>, ApiError> {
    let Some(rf) = rf else { return Ok(None) };
    let bad = |m: String| ApiError::invalid(m).with_param("response_format");
    let f = match rf.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => {
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| bad("response_format json_schema needs json_schema.schema.".into()))?;
            ResponseFormat::JsonSchema { schema: schema.clone() }
        }
        other => {
            return Err(ApiError::unsupported(
                "response_format",
                format!("response_format type {other:?} is not supported: use text, json_object or json_schema."),
            ))
        }
    };
    f.compile().map_err(|e| bad(format!("response_format: {e}")))?;
    Ok(Some(f))
}

/// One function of `tools`.
struct Tool {
    name: String,
    description: String,
    parameters: Value,
}

fn tools(list: &[Value]) -> Result<Vec<Tool>, ApiError> {
    let mut out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let param = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::unsupported(&param, "Only tools of type `function` are supported."));
        }
        let f = t.get("function").ok_or_else(|| ApiError::invalid("A tool needs a function.").with_param(&param))?;
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if name.is_empty() || out.iter().any(|o| o.name == name) {
            return Err(ApiError::invalid(format!("Tool names must be present and unique; `{name}` is not."))
                .with_param(&format!("{param}.function.name")));
        }
        let parameters =
            f.get("parameters").cloned().unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        let description = f.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
        out.push(Tool { name, description, parameters });
    }
    Ok(out)
}

/// The system text that tells the model which functions it may call and how to answer.
fn tools_prompt(tools: &[Tool], allow_response: bool) -> String {
    let mut s = String::from("You can call the following functions (their parameters are JSON Schemas):\n");
    for t in tools {
        let spec = serde_json::json!({"name": t.name, "description": t.description, "parameters": t.parameters});
        s.push_str(&spec.to_string());
        s.push('\n');
    }
    s.push_str(
        "To call a function, answer only with JSON: {\"name\": <function name>, \"arguments\": <its arguments>}.",
    );
    if allow_response {
        s.push_str(" If no function is needed, answer only with JSON: {\"response\": <your answer>}.");
    }
    s
}

/// What a tool-mode answer turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolAnswer {
    /// A call: the function's name and its arguments (a JSON string, as OpenAI returns them).
    Call { name: String, arguments: String },
    /// `{"response": text}`: a plain answer.
    Text(String),
    /// Not a complete object (the answer ran out of tokens): returned as it is.
    Raw(String),
}

/// Reads the answer of a request made with tools.
pub fn read_tool_answer(text: &str) -> ToolAnswer {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return ToolAnswer::Raw(text.to_string()) };
    if let (Some(name), Some(args)) = (v.get("name").and_then(Value::as_str), v.get("arguments")) {
        return ToolAnswer::Call { name: name.to_string(), arguments: args.to_string() };
    }
    match v.get("response").and_then(Value::as_str) {
        Some(t) => ToolAnswer::Text(t.to_string()),
        None => ToolAnswer::Raw(text.to_string()),
    }
}

/// OpenAI's `tool_calls` entry for a call.
pub fn tool_call_json(id: &str, name: &str, arguments: &str, index: Option<u32>) -> Value {
    let mut v = serde_json::json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}});
    if let (Some(i), Some(o)) = (index, v.as_object_mut()) {
        o.insert("index".into(), Value::from(i));
    }
    v
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
        "tool" => "tool",
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid role `{other}` in messages[{i}]: brainmesh accepts system, developer, user, assistant and tool messages."
            ))
            .with_param(&format!("{param}.role")))
        }
    };
    // An assistant turn that called tools is shown to the model as the JSON it wrote.
    if let Some(calls) = m.tool_calls.as_ref().filter(|c| !c.is_empty()) {
        let text: Vec<String> = calls
            .iter()
            .map(|c| {
                let f = c.get("function").cloned().unwrap_or_default();
                let args = f
                    .get("arguments")
                    .and_then(Value::as_str)
                    .and_then(|a| serde_json::from_str::<Value>(a).ok())
                    .unwrap_or_default();
                serde_json::json!({"name": f.get("name").cloned().unwrap_or_default(), "arguments": args}).to_string()
            })
            .collect();
        return Ok(ChatMessage { role: role.to_string(), content: text.join("\n") });
    }
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
    /// The tasks to submit for `account` (one per choice), and how to deliver the answer.
    pub fn into_plan(self, account: &str, default_max_tokens: u32) -> Result<Plan, ApiError> {
        check_model(&self.model)?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages must hold at least one message.").with_param("messages"));
        }
        let logprobs = self.logprobs.unwrap_or(false);
        if let Some(k) = self.top_logprobs {
            if k as usize > brainmesh_actors::models::MAX_TOP_LOGPROBS {
                return Err(ApiError::invalid(format!(
                    "top_logprobs must be between 0 and {}; got {k}.",
                    brainmesh_actors::models::MAX_TOP_LOGPROBS
                ))
                .with_param("top_logprobs"));
            }
            if !logprobs && k > 0 {
                return Err(ApiError::invalid("top_logprobs requires logprobs to be true.").with_param("top_logprobs"));
            }
        }
        let n = choices(self.n, 1)?;
        if self.functions.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::unsupported(
                "functions",
                "The legacy `functions` parameter is not supported: send `tools` instead.",
            ));
        }
        let mut format = response_format(&self.response_format)?;
        let mut messages =
            self.messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<Vec<_>, _>>()?;
        let tools = tools(self.tools.as_deref().unwrap_or_default())?;
        let mut tool_mode = false;
        if !tools.is_empty() {
            // tool_choice: "none", "auto" (the default), "required" or one named function.
            let (chosen, allow_response): (Vec<&Tool>, bool) = match &self.tool_choice {
                None => (tools.iter().collect(), true),
                Some(Value::String(c)) if c == "auto" => (tools.iter().collect(), true),
                Some(Value::String(c)) if c == "required" => (tools.iter().collect(), false),
                Some(Value::String(c)) if c == "none" => (vec![], true),
                Some(v) => {
                    let name =
                        v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
                    match tools.iter().find(|t| t.name == name) {
                        Some(t) => (vec![t], false),
                        None => {
                            return Err(ApiError::invalid(format!(
                                "tool_choice names `{name}`, which is not one of the tools."
                            ))
                            .with_param("tool_choice"))
                        }
                    }
                }
            };
            if !chosen.is_empty() {
                if format.is_some() {
                    return Err(ApiError::invalid("response_format cannot be combined with tool calls.")
                        .with_param("response_format"));
                }
                let owned: Vec<Tool> = chosen
                    .iter()
                    .map(|t| Tool {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters: t.parameters.clone(),
                    })
                    .collect();
                format = Some(ResponseFormat::ToolCall {
                    tools: owned.iter().map(|t| (t.name.clone(), t.parameters.clone())).collect(),
                    allow_response,
                });
                if let Some(Err(e)) = format.as_ref().map(ResponseFormat::compile) {
                    return Err(ApiError::invalid(format!("tools: {e}")).with_param("tools"));
                }
                let text = tools_prompt(&owned, allow_response);
                match messages.first_mut() {
                    Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
                    _ => messages.insert(0, ChatMessage { role: "system".into(), content: text }),
                }
                tool_mode = true;
            }
        }
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
                frequency_penalty: self.frequency_penalty,
                presence_penalty: self.presence_penalty,
                logit_bias: &self.logit_bias,
                logprobs: logprobs.then_some(self.top_logprobs.unwrap_or(0)),
            },
            param,
        )?;
        let sampling = Sampling { response_format: format, ..sampling };
        let spec =
            TaskSpec { model: self.model, account: account.to_string(), prompt: Prompt::Chat(messages), sampling };
        Ok(Plan {
            specs: per_choice(spec, n),
            delivery: delivery(self.stream, &self.stream_options),
            logprobs: logprobs.then_some(LogprobsShape::Chat),
            echo: false,
            tools: tool_mode,
        })
    }
}

/// OpenAI's default `max_tokens` for `/v1/completions`.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

impl CompletionRequest {
    pub fn into_plan(self, account: &str) -> Result<Plan, ApiError> {
        check_model(&self.model)?;
        let prompts: Vec<String> = match self.prompt {
            PromptInput::One(s) => vec![s],
            PromptInput::Many(v) => {
                if v.is_empty() {
                    return Err(ApiError::invalid("prompt must not be an empty array.").with_param("prompt"));
                }
                v.into_iter()
                    .map(|p| match p {
                        Value::String(s) => Ok(s),
                        _ => Err(ApiError::unsupported(
                            "prompt",
                            "Token-id prompts are not supported: send the prompt as a string or a list of strings.",
                        )),
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let n = choices(self.n, prompts.len())?;
        if let Some(b) = self.best_of {
            if b > 1 && b != n {
                return Err(ApiError::unsupported(
                    "best_of",
                    "best_of other than n is not supported: brainmesh returns every sample it draws.",
                ));
            }
        }
        let echo = self.echo == Some(true);
        if let Some(k) = self.logprobs {
            if k as usize > brainmesh_actors::models::MAX_TOP_LOGPROBS {
                return Err(ApiError::invalid(format!(
                    "logprobs must be between 0 and {}; got {k}.",
                    brainmesh_actors::models::MAX_TOP_LOGPROBS
                ))
                .with_param("logprobs"));
            }
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
                frequency_penalty: self.frequency_penalty,
                presence_penalty: self.presence_penalty,
                logit_bias: &self.logit_bias,
                logprobs: self.logprobs,
            },
            "max_tokens",
        )?;
        // echo with logprobs: the prompt's log-probabilities too.
        let sampling = Sampling { prompt_logprobs: echo && self.logprobs.is_some(), ..sampling };
        let mut specs = Vec::with_capacity(prompts.len() * n as usize);
        for prompt in prompts {
            let spec = TaskSpec {
                model: self.model.clone(),
                account: account.to_string(),
                prompt: Prompt::Text(prompt),
                sampling: sampling.clone(),
            };
            specs.extend(per_choice(spec, n));
        }
        Ok(Plan {
            specs,
            delivery: delivery(self.stream, &self.stream_options),
            logprobs: self.logprobs.is_some().then_some(LogprobsShape::Completion),
            echo,
            tools: false,
        })
    }
}

/// `input` of `/v1/embeddings`: a string or a list of strings (token-id inputs are refused).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<Value>),
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
}

/// At most this many inputs per embeddings request.
pub const MAX_EMBEDDING_INPUTS: usize = 128;

impl EmbeddingRequest {
    /// The task (all inputs in one) and whether vectors are returned as base64.
    pub fn into_task(self, account: &str) -> Result<(TaskSpec, bool), ApiError> {
        check_model(&self.model)?;
        let inputs: Vec<String> = match self.input {
            EmbeddingInput::One(s) => vec![s],
            EmbeddingInput::Many(v) => v
                .into_iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::unsupported(
                        "input",
                        "Token-id inputs are not supported: send strings (a string or a list of strings).",
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
            return Err(ApiError::invalid(format!(
                "input must hold 1 to {MAX_EMBEDDING_INPUTS} strings; got {}.",
                inputs.len()
            ))
            .with_param("input"));
        }
        if let Some(i) = inputs.iter().position(String::is_empty) {
            return Err(ApiError::invalid(format!("input[{i}] is empty.")).with_param("input"));
        }
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!("encoding_format must be `float` or `base64`; got `{other}`."))
                    .with_param("encoding_format"))
            }
        };
        if self.dimensions == Some(0) {
            return Err(ApiError::invalid("dimensions must be at least 1.").with_param("dimensions"));
        }
        let spec = TaskSpec {
            model: self.model,
            account: account.to_string(),
            prompt: Prompt::Embed { inputs, dimensions: self.dimensions },
            sampling: Sampling { temperature: 0.0, ..Sampling::default() },
        };
        Ok((spec, base64))
    }
}

/// One vector of an embeddings answer: floats, or their little-endian f32 bytes in base64.
pub fn embedding_json(v: &[f32], base64: bool) -> Value {
    if base64 {
        use base64::Engine;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Value::from(v.iter().map(|&x| Value::from(x)).collect::<Vec<_>>())
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Chat's `logprobs` object for these tokens.
pub fn chat_logprobs(entries: &[TokenLogprob]) -> Value {
    serde_json::json!({ "content": entries, "refusal": Value::Null })
}

/// `/v1/completions`' legacy `logprobs` object for these tokens; `offset` is the character
/// offset of the first one in the choice's text and is moved past them.
pub fn completion_logprobs(entries: &[TokenLogprob], offset: &mut usize) -> Value {
    let mut text_offset = Vec::with_capacity(entries.len());
    for e in entries {
        text_offset.push(*offset);
        *offset += e.token.chars().count();
    }
    // A prompt's first token (echo) has neither a log-probability nor alternatives: null.
    let top: Vec<Value> = entries
        .iter()
        .map(|e| match e.logprob.is_nan() {
            true => Value::Null,
            false => Value::Object(e.top_logprobs.iter().map(|t| (t.token.clone(), Value::from(t.logprob))).collect()),
        })
        .collect();
    serde_json::json!({
        "tokens": entries.iter().map(|e| e.token.as_str()).collect::<Vec<_>>(),
        "token_logprobs": entries.iter().map(|e| Value::from(e.logprob)).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": text_offset,
    })
}

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
    /// Null when the answer is a tool call.
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
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

    fn chat_plan(v: Value) -> Result<Plan, ApiError> {
        serde_json::from_value::<ChatCompletionRequest>(v)
            .map_err(|e| ApiError::malformed(e.to_string()))?
            .into_plan("acct", 100)
    }

    fn completion_plan(v: Value) -> Result<Plan, ApiError> {
        serde_json::from_value::<CompletionRequest>(v)
            .map_err(|e| ApiError::malformed(e.to_string()))?
            .into_plan("acct")
    }

    /// The single choice's task and the delivery.
    fn chat(v: Value) -> Result<(TaskSpec, Delivery), ApiError> {
        let p = chat_plan(v)?;
        assert_eq!(p.specs.len(), 1);
        Ok((p.specs[0].clone(), p.delivery))
    }

    fn completion(v: Value) -> Result<(TaskSpec, Delivery), ApiError> {
        let p = completion_plan(v)?;
        assert_eq!(p.specs.len(), 1);
        Ok((p.specs[0].clone(), p.delivery))
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
            "frequency_penalty": 0.5, "presence_penalty": -0.25, "logit_bias": {"42": -100, " 7": 2.5},
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
                repetition_penalty: Some(1.1),
                frequency_penalty: Some(0.5),
                presence_penalty: Some(-0.25),
                logit_bias: vec![(7, 2.5), (42, -100.0)],
                logprobs: None,
                prompt_logprobs: false,
                response_format: None,
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
    fn n_choices_and_prompt_lists_become_one_task_per_choice_in_openais_order() {
        let p = completion_plan(
            serde_json::json!({"model": "m", "prompt": ["a", "b"], "n": 3, "seed": 10, "temperature": 0.7}),
        )
        .unwrap();
        let got: Vec<(Prompt, Option<u64>)> = p.specs.iter().map(|s| (s.prompt.clone(), s.sampling.seed)).collect();
        let want: Vec<(Prompt, Option<u64>)> =
            ["a", "b"].iter().flat_map(|t| (0..3).map(move |i| (Prompt::Text(t.to_string()), Some(10 + i)))).collect();
        assert_eq!(got, want);
        // Sampled choices without a seed each get their own random one, recorded for replay.
        let p = chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 4}))
            .unwrap();
        let seeds: std::collections::BTreeSet<u64> = p.specs.iter().filter_map(|s| s.sampling.seed).collect();
        assert_eq!(seeds.len(), 4, "{seeds:?}");
        // Greedy choices draw nothing: no seed needed.
        let p = chat_plan(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2, "temperature": 0}),
        )
        .unwrap();
        assert!(p.specs.iter().all(|s| s.sampling.seed.is_none()));
    }

    #[test]
    fn logprobs_requests_map_onto_the_sampling_and_the_answer_shape() {
        let p = chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "logprobs": true, "top_logprobs": 5}))
        .unwrap();
        assert_eq!((p.specs[0].sampling.logprobs, p.logprobs), (Some(5), Some(LogprobsShape::Chat)));
        let p = chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "logprobs": true}))
        .unwrap();
        assert_eq!(p.specs[0].sampling.logprobs, Some(0));
        let p = completion_plan(serde_json::json!({"model": "m", "prompt": "x", "logprobs": 2})).unwrap();
        assert_eq!((p.specs[0].sampling.logprobs, p.logprobs), (Some(2), Some(LogprobsShape::Completion)));
        let p = completion_plan(serde_json::json!({"model": "m", "prompt": "x", "echo": true})).unwrap();
        assert!(p.echo && p.logprobs.is_none());
    }

    #[test]
    fn completion_logprobs_have_openais_legacy_shape_with_offsets() {
        let lp = |t: &str, l: f32| TokenLogprob {
            token: t.into(),
            logprob: l,
            bytes: t.as_bytes().to_vec(),
            top_logprobs: vec![brainmesh_actors::task::TopLogprob { token: t.into(), logprob: l, bytes: vec![] }],
        };
        let mut offset = 3;
        let v = completion_logprobs(&[lp(" hé", -0.5), lp("llo", -1.0)], &mut offset);
        assert_eq!(v["tokens"], serde_json::json!([" hé", "llo"]));
        assert_eq!(v["token_logprobs"], serde_json::json!([-0.5, -1.0]));
        assert_eq!(v["top_logprobs"], serde_json::json!([{" hé": -0.5}, {"llo": -1.0}]));
        assert_eq!(v["text_offset"], serde_json::json!([3, 6]));
        assert_eq!(offset, 9);
        let c = chat_logprobs(&[lp("a", -0.25)]);
        assert_eq!(c["content"][0]["token"], "a");
        assert_eq!(c["content"][0]["top_logprobs"][0]["logprob"], -0.25);
        assert_eq!(c["content"][0]["bytes"], serde_json::json!([97]));
        assert!(c["refusal"].is_null());
    }

    #[test]
    fn response_formats_and_tools_become_the_tasks_constraint() {
        let p = chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}}))
        .unwrap();
        assert!(matches!(p.specs[0].sampling.response_format, Some(ResponseFormat::JsonSchema { .. })));
        assert!(!p.tools);
        let tools = serde_json::json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
        let p =
            chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "Weather in Oslo?"}],
            "tools": tools}))
            .unwrap();
        assert!(p.tools);
        match &p.specs[0].sampling.response_format {
            Some(ResponseFormat::ToolCall { tools, allow_response }) => {
                assert_eq!((tools.len(), *allow_response), (1, true));
            }
            other => panic!("{other:?}"),
        }
        // The model is told about the tools in a system message.
        let Prompt::Chat(msgs) = &p.specs[0].prompt else { panic!("chat") };
        assert_eq!(msgs[0].role, "system");
        assert!(msgs[0].content.contains("get_weather") && msgs[0].content.contains("\"response\""));
        // "required" and a named function forbid the plain answer; "none" leaves the request alone.
        for choice in [
            serde_json::json!("required"),
            serde_json::json!({"type": "function", "function": {"name": "get_weather"}}),
        ] {
            let p = chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": tools, "tool_choice": choice}))
            .unwrap();
            assert!(matches!(
                p.specs[0].sampling.response_format,
                Some(ResponseFormat::ToolCall { allow_response: false, .. })
            ));
        }
        let p = chat_plan(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": tools, "tool_choice": "none"}))
        .unwrap();
        assert!(!p.tools && p.specs[0].sampling.response_format.is_none());
        // A conversation that carries an earlier call and its result.
        let p = chat_plan(serde_json::json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12 C, rain"}]}))
        .unwrap();
        let Prompt::Chat(msgs) = &p.specs[0].prompt else { panic!("chat") };
        assert_eq!(msgs[2].content, r#"{"arguments":{"city":"Oslo"},"name":"get_weather"}"#);
        assert_eq!((msgs[3].role.as_str(), msgs[3].content.as_str()), ("tool", "12 C, rain"));
    }

    #[test]
    fn tool_answers_are_read_as_calls_text_or_raw() {
        assert_eq!(
            read_tool_answer(r#"{"name": "f", "arguments": {"x": 1}}"#),
            ToolAnswer::Call { name: "f".into(), arguments: r#"{"x":1}"#.into() }
        );
        assert_eq!(read_tool_answer(r#"{"response": "hi"}"#), ToolAnswer::Text("hi".into()));
        assert_eq!(read_tool_answer(r#"{"name": "f", "argu"#), ToolAnswer::Raw(r#"{"name": "f", "argu"#.into()));
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
            (serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}), "n"),
            (serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 17}), "n"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}),
                "top_logprobs",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "frequency_penalty": 2.5}),
                "frequency_penalty",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "presence_penalty": -3}),
                "presence_penalty",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}),
                "logit_bias",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": 101}}),
                "logit_bias",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}),
                "tools[0]",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
                    {"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
                "tool_choice",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "string", "format": "date"}}}]}),
                "tools",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [
                    {"type": "function", "function": {"name": "f"}}], "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "string", "pattern": "a+"}}}}),
                "response_format",
            ),
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
            (serde_json::json!({"model": "m", "messages": [{"role": "function", "content": "x"}]}), "messages[0].role"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0]",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}),
                "response_format",
            ),
        ];
        for (body, param) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
        }
        for (body, param) in [
            (serde_json::json!({"model": "m", "prompt": []}), "prompt"),
            (serde_json::json!({"model": "m", "prompt": [1, 2]}), "prompt"),
            (serde_json::json!({"model": "m", "prompt": [[1, 2]]}), "prompt"),
            (serde_json::json!({"model": "m", "prompt": "x", "best_of": 2}), "best_of"),
            (serde_json::json!({"model": "m", "prompt": "x", "logprobs": 21}), "logprobs"),
            (serde_json::json!({"model": "m", "prompt": ["a", "b", "c", "d", "e"], "n": 4}), "n"),
        ] {
            let e = completion(body.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
        }
    }
}
