//! The OpenAI-compatible HTTP gateway: `POST /v1/chat/completions`, `POST /v1/completions`
//! (streamed as server-sent events or not), `POST /v1/embeddings`, `GET /v1/models` and
//! `GET /v1/models/{id}`.
//!
//! It speaks HTTP only; the work is done by a [`TaskService`] (the distributor over the mesh).
//! Each request is authenticated (`Authorization: Bearer <key>` → account), rate limited per
//! account, parsed with a body cap, turned into one [`brainmesh_actors::task::TaskSpec`] per choice and submitted. The gateway
//! waits for the task's first event before answering, so a task that fails before it starts
//! gets a proper error status; once started, the answer is streamed (or collected). Dropping
//! the event receiver cancels the task: the streamed body owns it, so a client that
//! disconnects cancels its task.
//!
//! Mounting:
//! ```ignore
//! let state = GatewayState::new(service, &config.gateway)?;
//! let (addr, handle) = gateway::serve(state, &config.gateway.listen)?; // own server
//! // or, inside another actix App:
//! App::new().configure(|c| gateway::configure(c, state.clone()))
//! ```
//!
//! Responses carry `x-brainmesh-task-id` and `x-brainmesh-miner` headers (both modes), and
//! non-streamed ones also `x-brainmesh-receipt-id` and `x-brainmesh-attempts`.

pub mod auth;
pub mod error;
pub mod openai;
pub mod ratelimit;
pub mod sse;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use brainmesh_actors::task::{Finish, Prompt, TaskError, TaskEvent, TaskService, TokenLogprob, Usage};

pub use auth::{ApiKeys, KeyError};
pub use error::{ApiError, ErrorBody};
pub use ratelimit::RateLimiter;

use openai::{
    finish_reason, read_tool_answer, tool_call_json, AssistantMessage, ChatChoice, ChatCompletion,
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelList, ModelObject, Plan, TextChoice,
    TextCompletion, ToolAnswer,
};
use sse::{Chunker, Endpoint};

/// The `[gateway]` section of the node config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the OpenAI-compatible HTTP API listens on (port 0 picks a free port; empty: no
    /// API server, as for the simulator's in-process gateways, which take tasks directly).
    pub listen: String,
    /// API keys as `"key:account"`: a request with `Authorization: Bearer key` is billed to
    /// `account`. The account is what follows the last `:`. With no keys every request is
    /// refused with 401.
    pub api_keys: Vec<String>,
    /// Requests a minute allowed per account (a token bucket refilled continuously); 0 turns
    /// rate limiting off. Over the limit a request gets 429 with `Retry-After`.
    pub rate_limit_per_minute: u32,
    /// Requests an account may make at once before the per-minute rate applies; 0 means
    /// `rate_limit_per_minute`.
    pub rate_limit_burst: u32,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// `max_tokens` for a chat completion that sets neither `max_tokens` nor
    /// `max_completion_tokens` (`/v1/completions` uses OpenAI's default, 16).
    pub default_max_tokens: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            api_keys: vec![],
            rate_limit_per_minute: 600,
            rate_limit_burst: 0,
            max_body_bytes: 1 << 20,
            default_max_tokens: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    #[error("gateway.api_keys: {0}")]
    Keys(#[from] KeyError),
    #[error("gateway.{field} must be greater than 0")]
    Zero { field: &'static str },
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), GatewayConfigError> {
        ApiKeys::parse(&self.api_keys)?;
        if self.max_body_bytes == 0 {
            return Err(GatewayConfigError::Zero { field: "max_body_bytes" });
        }
        if self.default_max_tokens == 0 {
            return Err(GatewayConfigError::Zero { field: "default_max_tokens" });
        }
        Ok(())
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    pub service: Arc<dyn TaskService>,
    pub keys: Arc<ApiKeys>,
    pub limiter: Arc<RateLimiter>,
    pub max_body_bytes: usize,
    pub default_max_tokens: u32,
}

impl GatewayState {
    pub fn new(service: Arc<dyn TaskService>, config: &GatewayConfig) -> Result<Self, GatewayConfigError> {
        config.validate()?;
        Ok(Self {
            service,
            keys: Arc::new(ApiKeys::parse(&config.api_keys)?),
            limiter: Arc::new(RateLimiter::new(config.rate_limit_per_minute, config.rate_limit_burst)),
            max_body_bytes: config.max_body_bytes,
            default_max_tokens: config.default_max_tokens,
        })
    }

    /// Authentication then rate limiting; the account on success.
    fn admit(&self, req: &HttpRequest) -> Result<String, ApiError> {
        let account = self.keys.authenticate(req)?;
        self.limiter.check(&account).map_err(|wait| {
            ApiError::rate_limited(&account, self.limiter.per_minute(), wait.as_secs_f64().ceil().max(1.0) as u64)
        })?;
        Ok(account)
    }
}

/// Mounts the `/v1` routes on an actix app or scope.
pub fn configure(cfg: &mut web::ServiceConfig, state: GatewayState) {
    cfg.app_data(web::Data::new(state)).service(
        web::scope("/v1")
            // A resource answers a wrong method itself (it does not inherit the scope's
            // default), so each gets the OpenAI-shaped 405.
            .service(
                web::resource("/chat/completions")
                    .route(web::post().to(chat_completions))
                    .default_service(web::to(unknown_route)),
            )
            .service(
                web::resource("/completions")
                    .route(web::post().to(completions))
                    .default_service(web::to(unknown_route)),
            )
            .service(
                web::resource("/embeddings").route(web::post().to(embeddings)).default_service(web::to(unknown_route)),
            )
            .service(web::resource("/models").route(web::get().to(list_models)).default_service(web::to(unknown_route)))
            .service(
                web::resource("/models/{id:.*}")
                    .route(web::get().to(get_model))
                    .default_service(web::to(unknown_route)),
            )
            .default_service(web::to(unknown_route)),
    );
}

/// Binds `addr` and serves the gateway on its own actix server (one worker; no signal
/// handlers: the node stops it with the returned handle). Must be called inside an actix
/// system (as `http::serve` is).
pub fn serve(state: GatewayState, addr: &str) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server = HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |c| configure(c, state)).default_service(web::to(unknown_route))
    })
    .workers(1)
    .disable_signals()
    // A client that closes its side has gone: end the connection (which drops the handler and
    // with it the task's receiver, cancelling the task) instead of waiting for the answer.
    .h1_allow_half_closed(false)
    .bind(addr)?;
    let bound = server.addrs().first().copied().ok_or_else(|| std::io::Error::other("no address bound"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((bound, handle))
}

async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let known = ["/v1/chat/completions", "/v1/completions", "/v1/models"];
    Err(if known.contains(&req.path()) || req.path().starts_with("/v1/models/") {
        ApiError::method_not_allowed(format!("{} is not allowed on {}.", req.method(), req.path()))
    } else {
        ApiError::not_found("unknown_url", format!("Unknown request URL: {} {}.", req.method(), req.path()))
    })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A locally unique id for answers whose task reported none.
fn fallback_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    format!("{nanos:x}{:04x}", N.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// Reads a JSON body of at most `limit` bytes; OpenAI-shaped 413 / 400 otherwise.
async fn read_json<T: DeserializeOwned>(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<T, ApiError> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    let bytes: Bytes = match payload.to_bytes_limited(limit).await {
        Err(_) => return Err(ApiError::body_too_large(limit)),
        Ok(Err(e)) => return Err(ApiError::malformed(format!("Could not read the request body: {e}"))),
        Ok(Ok(b)) => b,
    };
    if bytes.is_empty() {
        return Err(ApiError::malformed("The request body is empty: send a JSON object."));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = if e.is_data() { "does not match the expected request" } else { "is not valid JSON" };
        ApiError::malformed(format!("The request body {what}: {e}"))
    })
}

/// What the task reported when it started.
struct Begun {
    task_id: String,
    miner: String,
    /// The prompt's log-probabilities (completions with `echo` and `logprobs`).
    prompt_logprobs: Vec<TokenLogprob>,
    /// Events already received after `Started` (or the first event if it was not `Started`).
    pending: Vec<TaskEvent>,
}

/// Waits for the task's first event: a failure before `Started` is an error answer.
async fn first_event(rx: &mut mpsc::Receiver<TaskEvent>) -> Result<Begun, ApiError> {
    match rx.recv().await {
        None => Err(TaskError::Exhausted("the task ended before it started".into()).into()),
        Some(TaskEvent::Failed(e)) => Err(e.into()),
        Some(TaskEvent::Started { task_id, miner, prompt_logprobs, .. }) => {
            Ok(Begun { task_id, miner, prompt_logprobs, pending: vec![] })
        }
        Some(other) => {
            Ok(Begun { task_id: fallback_id(), miner: String::new(), prompt_logprobs: vec![], pending: vec![other] })
        }
    }
}

/// The whole answer of one choice of a non-streamed request.
struct Collected {
    text: String,
    logprobs: Vec<TokenLogprob>,
    finish: Finish,
    usage: Usage,
    receipt_id: String,
    attempts: u32,
}

async fn collect(pending: Vec<TaskEvent>, mut rx: mpsc::Receiver<TaskEvent>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut pending = pending.into_iter();
    loop {
        let ev = match pending.next() {
            Some(ev) => Some(ev),
            None => rx.recv().await,
        };
        match ev {
            None => return Err(TaskError::Exhausted("the task ended without a result".into()).into()),
            Some(TaskEvent::Started { .. } | TaskEvent::Embeddings { .. }) => {}
            Some(TaskEvent::Token { text: t, logprobs: l }) => {
                text.push_str(&t);
                logprobs.extend(l);
            }
            Some(TaskEvent::Failed(e)) => return Err(e.into()),
            Some(TaskEvent::Done { finish, usage, receipt_id, attempts }) => {
                return Ok(Collected { text, logprobs, finish, usage, receipt_id, attempts })
            }
        }
    }
}

/// One receiver for all the choices' events, tagged with the choice index. Dropping it (the
/// client went away) ends the forwarders, which drop their receivers: every task is cancelled.
fn merge(choices: Vec<(Vec<TaskEvent>, mpsc::Receiver<TaskEvent>)>) -> mpsc::Receiver<(u32, TaskEvent)> {
    let (tx, merged) = mpsc::channel(64);
    for (i, (pending, mut rx)) in choices.into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            for ev in pending {
                if tx.send((i as u32, ev)).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => if tx.send((i as u32, ev)).await.is_err() { return },
                        None => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
    }
    merged
}

fn header_safe(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).collect()
}

fn joined<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    header_safe(&parts.collect::<Vec<_>>().join(","))
}

/// Submits the request's tasks (one per choice), waits for all to start, and answers streamed
/// or collected.
async fn run_task(state: &GatewayState, endpoint: Endpoint, plan: Plan) -> Result<HttpResponse, ApiError> {
    let Plan { specs, delivery, logprobs, echo, tools } = plan;
    let Some(model) = specs.first().map(|s| s.model.clone()) else {
        return Err(ApiError::invalid("The request asks for no choices.").with_param("n"));
    };
    let prompt_param = match endpoint {
        Endpoint::Chat => "messages",
        Endpoint::Completion => "prompt",
    };
    let fix_param = |mut e: ApiError| {
        if e.code == Some("context_length_exceeded") {
            e.param = Some(prompt_param.to_string());
        }
        e
    };
    let echoes: Vec<String> = specs
        .iter()
        .map(|s| match (&s.prompt, echo) {
            (Prompt::Text(t), true) => t.clone(),
            _ => String::new(),
        })
        .collect();
    // All tasks are submitted before any is awaited; a failure drops the others (cancelled).
    let submitted = futures::future::join_all(specs.into_iter().map(|s| state.service.submit(s))).await;
    let mut rxs = submitted.into_iter().collect::<Result<Vec<_>, _>>().map_err(|e| fix_param(e.into()))?;
    let begun = futures::future::join_all(rxs.iter_mut().map(first_event)).await;
    let mut begun = begun.into_iter().collect::<Result<Vec<_>, _>>().map_err(fix_param)?;
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl-",
        Endpoint::Completion => "cmpl-",
    };
    let id = format!("{prefix}{}", begun[0].task_id);
    let call_ids: Vec<String> = begun.iter().map(|b| format!("call_{}", b.task_id)).collect();
    let created = unix_now();
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("x-brainmesh-task-id", joined(begun.iter().map(|b| b.task_id.as_str()))));
    resp.insert_header(("x-brainmesh-miner", joined(begun.iter().map(|b| b.miner.as_str()))));

    if delivery.stream {
        let tools = tools.then_some(call_ids);
        let chunker = Chunker { endpoint, id, created, model, include_usage: delivery.include_usage, logprobs, tools };
        let echoes: Vec<(String, Vec<TokenLogprob>)> = echoes
            .into_iter()
            .zip(begun.iter_mut())
            .map(|(e, b)| (e, std::mem::take(&mut b.prompt_logprobs)))
            .collect();
        let choices = begun.into_iter().zip(rxs).map(|(b, rx)| (b.pending, rx)).collect();
        return Ok(resp
            .content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header(("x-accel-buffering", "no"))
            .streaming(sse::body(chunker, echoes, merge(choices))));
    }

    let prompt_lps: Vec<Vec<TokenLogprob>> = begun.iter_mut().map(|b| std::mem::take(&mut b.prompt_logprobs)).collect();
    let collected = futures::future::join_all(begun.into_iter().zip(rxs).map(|(b, rx)| collect(b.pending, rx))).await;
    let collected = collected.into_iter().collect::<Result<Vec<_>, _>>().map_err(fix_param)?;
    resp.insert_header(("x-brainmesh-receipt-id", joined(collected.iter().map(|c| c.receipt_id.as_str()))));
    let attempts: Vec<String> = collected.iter().map(|c| c.attempts.to_string()).collect();
    resp.insert_header(("x-brainmesh-attempts", joined(attempts.iter().map(String::as_str))));
    let usage = collected.iter().fold(Usage::default(), |u, c| Usage {
        prompt_tokens: u.prompt_tokens.saturating_add(c.usage.prompt_tokens),
        completion_tokens: u.completion_tokens.saturating_add(c.usage.completion_tokens),
    });
    Ok(match endpoint {
        Endpoint::Chat => resp.json(ChatCompletion {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: collected
                .into_iter()
                .zip(call_ids)
                .enumerate()
                .map(|(i, (c, call_id))| {
                    let reason = finish_reason(c.finish).to_string();
                    let (content, tool_calls, finish_reason) = match tools.then(|| read_tool_answer(&c.text)) {
                        Some(ToolAnswer::Call { name, arguments }) => {
                            (None, Some(vec![tool_call_json(&call_id, &name, &arguments, None)]), "tool_calls".into())
                        }
                        Some(ToolAnswer::Text(t) | ToolAnswer::Raw(t)) => (Some(t), None, reason),
                        None => (Some(c.text), None, reason),
                    };
                    ChatChoice {
                        index: i as u32,
                        logprobs: logprobs.map(|_| openai::chat_logprobs(&c.logprobs)),
                        message: AssistantMessage { role: "assistant".into(), content, refusal: None, tool_calls },
                        finish_reason,
                    }
                })
                .collect(),
            usage: usage.into(),
        }),
        Endpoint::Completion => resp.json(TextCompletion {
            id,
            object: "text_completion".into(),
            created,
            model,
            choices: collected
                .into_iter()
                .zip(echoes.into_iter().zip(prompt_lps))
                .enumerate()
                .map(|(i, (c, (echo, mut lps)))| {
                    // With echo, the prompt's tokens (when computed) lead the logprobs.
                    let mut offset = if lps.is_empty() { echo.chars().count() } else { 0 };
                    lps.extend(c.logprobs);
                    TextChoice {
                        index: i as u32,
                        logprobs: logprobs.map(|_| openai::completion_logprobs(&lps, &mut offset)),
                        text: echo + &c.text,
                        finish_reason: Some(finish_reason(c.finish).to_string()),
                    }
                })
                .collect(),
            usage: Some(usage.into()),
        }),
    })
}

async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, ApiError> {
    let account = state.admit(&req)?;
    let body: ChatCompletionRequest = read_json(&req, payload, state.max_body_bytes).await?;
    let plan = body.into_plan(&account, state.default_max_tokens)?;
    run_task(&state, Endpoint::Chat, plan).await
}

async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, ApiError> {
    let account = state.admit(&req)?;
    let body: CompletionRequest = read_json(&req, payload, state.max_body_bytes).await?;
    let plan = body.into_plan(&account)?;
    run_task(&state, Endpoint::Completion, plan).await
}

async fn embeddings(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, ApiError> {
    let account = state.admit(&req)?;
    let body: EmbeddingRequest = read_json(&req, payload, state.max_body_bytes).await?;
    let (spec, base64) = body.into_task(&account)?;
    let model = spec.model.clone();
    let fix_param = |mut e: ApiError| {
        if e.code == Some("context_length_exceeded") {
            e.param = Some("input".into());
        }
        e
    };
    let mut rx = state.service.submit(spec).await.map_err(|e| fix_param(e.into()))?;
    let begun = first_event(&mut rx).await.map_err(fix_param)?;
    let mut vectors = None;
    let mut pending = begun.pending.into_iter();
    let (usage, receipt_id) = loop {
        let ev = match pending.next() {
            Some(ev) => Some(ev),
            None => rx.recv().await,
        };
        match ev {
            None => return Err(TaskError::Exhausted("the task ended without a result".into()).into()),
            Some(TaskEvent::Embeddings { vectors: v }) => vectors = Some(v),
            Some(TaskEvent::Done { usage, receipt_id, .. }) => break (usage, receipt_id),
            Some(TaskEvent::Failed(e)) => return Err(fix_param(e.into())),
            Some(TaskEvent::Started { .. } | TaskEvent::Token { .. }) => {}
        }
    };
    let vectors = vectors.ok_or_else(|| ApiError::from(TaskError::Exhausted("no embeddings came back".into())))?;
    let data: Vec<serde_json::Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"object": "embedding", "index": i, "embedding": openai::embedding_json(v, base64)}))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("x-brainmesh-task-id", header_safe(&begun.task_id)))
        .insert_header(("x-brainmesh-miner", header_safe(&begun.miner)))
        .insert_header(("x-brainmesh-receipt-id", header_safe(&receipt_id)))
        .json(serde_json::json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        })))
}

async fn list_models(req: HttpRequest, state: web::Data<GatewayState>) -> Result<HttpResponse, ApiError> {
    state.admit(&req)?;
    let mut ids: Vec<String> = state.service.models().await.into_iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    Ok(HttpResponse::Ok()
        .json(ModelList { object: "list".into(), data: ids.into_iter().map(ModelObject::new).collect() }))
}

async fn get_model(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<GatewayState>,
) -> Result<HttpResponse, ApiError> {
    state.admit(&req)?;
    let id = path.into_inner();
    if state.service.models().await.iter().any(|m| m.id == id) {
        Ok(HttpResponse::Ok().json(ModelObject::new(id)))
    } else {
        Err(ApiError::from(TaskError::UnknownModel(id)))
    }
}

#[cfg(test)]
mod tests;
