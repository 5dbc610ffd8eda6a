//! HTTP formatting tests against an in-test [`TaskService`] that replays scripted events.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use brainmesh_actors::task::{
    BoxFuture, Finish, ModelInfo, Prompt, TaskError, TaskEvent, TaskService, TaskSpec, Usage,
};

use super::*;

/// What the fake mesh does with the next submitted task.
#[derive(Clone)]
enum Plan {
    /// Send these events, then drop the sender.
    Events(Vec<TaskEvent>),
    /// `submit` itself fails.
    Reject(TaskError),
    /// Send these events and hand the sender to the test (through `Fake::held`).
    Hold(Vec<TaskEvent>),
}

struct Fake {
    plan: Mutex<Plan>,
    specs: Mutex<Vec<TaskSpec>>,
    held: mpsc::UnboundedSender<mpsc::Sender<TaskEvent>>,
}

impl TaskService for Fake {
    fn submit(&self, spec: TaskSpec) -> BoxFuture<'_, Result<mpsc::Receiver<TaskEvent>, TaskError>> {
        Box::pin(async move {
            self.specs.lock().unwrap().push(spec);
            let plan = self.plan.lock().unwrap().clone();
            let (tx, rx) = mpsc::channel(64);
            match plan {
                Plan::Reject(e) => return Err(e),
                Plan::Events(evs) => {
                    for e in evs {
                        tx.send(e).await.unwrap();
                    }
                }
                Plan::Hold(evs) => {
                    for e in evs {
                        tx.send(e).await.unwrap();
                    }
                    self.held.send(tx).unwrap();
                }
            }
            Ok(rx)
        })
    }

    fn models(&self) -> BoxFuture<'_, Vec<ModelInfo>> {
        Box::pin(async {
            let m = |id: &str| ModelInfo { id: id.into(), hash: "00".into(), context_length: 2048, miners: 1 };
            vec![m("tiny"), m("org/smol"), m("tiny")]
        })
    }
}

struct Harness {
    fake: Arc<Fake>,
    held: mpsc::UnboundedReceiver<mpsc::Sender<TaskEvent>>,
    state: GatewayState,
}

fn config() -> GatewayConfig {
    GatewayConfig { api_keys: vec!["sk-dev:dev".into(), "sk-other:other".into()], ..GatewayConfig::default() }
}

fn harness_with(plan: Plan, cfg: GatewayConfig) -> Harness {
    let (held_tx, held) = mpsc::unbounded_channel();
    let fake = Arc::new(Fake { plan: Mutex::new(plan), specs: Mutex::new(vec![]), held: held_tx });
    let state = GatewayState::new(fake.clone(), &cfg).unwrap();
    Harness { fake, held, state }
}

fn harness(plan: Plan) -> Harness {
    harness_with(plan, config())
}

fn started() -> TaskEvent {
    TaskEvent::Started { task_id: "t1".into(), miner: "12D3miner".into(), prompt_tokens: 5, prompt_logprobs: vec![] }
}

fn tok(s: &str) -> TaskEvent {
    TaskEvent::Token { text: s.into(), logprobs: vec![] }
}

fn done(finish: Finish) -> TaskEvent {
    TaskEvent::Done {
        finish,
        usage: Usage { prompt_tokens: 5, completion_tokens: 2 },
        receipt_id: "r1".into(),
        attempts: 1,
    }
}

fn hello() -> Plan {
    Plan::Events(vec![started(), tok("Hello"), tok(" world"), done(Finish::Stop)])
}

fn chat_body(extra: Value) -> Value {
    let mut b = json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    b
}

fn post(path: &str, body: &Value) -> TestRequest {
    TestRequest::post().uri(path).insert_header(("authorization", "Bearer sk-dev")).set_json(body)
}

async fn call(state: &GatewayState, req: TestRequest) -> ServiceResponse {
    let st = state.clone();
    let app = test::init_service(App::new().configure(move |c| configure(c, st))).await;
    test::call_service(&app, req.to_request()).await
}

async fn json_of(resp: ServiceResponse) -> (StatusCode, Value) {
    let status = resp.status();
    let body = test::read_body(resp).await;
    let v =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, v)
}

/// The `data:` payloads of an SSE body, checking the framing on the way.
fn sse_events(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {e:?}")).to_string())
        .collect()
}

fn assert_openai_error(v: &Value, kind: &str, code: Option<&str>) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(e["type"], kind, "{v}");
    assert_eq!(e["code"].as_str(), code, "{v}");
    assert!(e.as_object().unwrap().contains_key("param"), "{v}");
}

#[actix_web::test]
async fn non_streamed_chat_completion_has_openais_exact_shape() {
    let h = harness(hello());
    let resp = call(
        &h.state,
        post("/v1/chat/completions", &chat_body(json!({"temperature": 0, "user": "u", "store": false}))),
    )
    .await;
    assert_eq!(resp.headers().get("x-brainmesh-task-id").unwrap(), "t1");
    assert_eq!(resp.headers().get("x-brainmesh-miner").unwrap(), "12D3miner");
    assert_eq!(resp.headers().get("x-brainmesh-receipt-id").unwrap(), "r1");
    assert_eq!(resp.headers().get("x-brainmesh-attempts").unwrap(), "1");
    let (status, v) = json_of(resp).await;
    assert_eq!(status, 200);
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let mut v = v;
    v["created"] = json!(0);
    assert_eq!(
        v,
        json!({
            "id": "chatcmpl-t1", "object": "chat.completion", "created": 0, "model": "tiny",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world", "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        })
    );
    let specs = h.fake.specs.lock().unwrap();
    assert_eq!(specs[0].account, "dev");
    assert_eq!(specs[0].sampling.temperature, 0.0);
    assert_eq!(specs[0].sampling.max_tokens, 256);
}

#[actix_web::test]
async fn non_streamed_text_completion_has_openais_exact_shape() {
    let h = harness(Plan::Events(vec![started(), tok("to be"), done(Finish::Length)]));
    let (status, mut v) = json_of(
        call(&h.state, post("/v1/completions", &json!({"model": "tiny", "prompt": ["To be or not"], "max_tokens": 2})))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    v["created"] = json!(0);
    assert_eq!(
        v,
        json!({
            "id": "cmpl-t1", "object": "text_completion", "created": 0, "model": "tiny",
            "choices": [{"text": "to be", "index": 0, "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        })
    );
    assert_eq!(h.fake.specs.lock().unwrap()[0].prompt, Prompt::Text("To be or not".into()));
}

#[actix_web::test]
async fn streamed_chat_sends_role_then_deltas_then_finish_then_done() {
    let h = harness(hello());
    let resp = call(&h.state, post("/v1/chat/completions", &chat_body(json!({"stream": true})))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    assert_eq!(resp.headers().get("x-brainmesh-task-id").unwrap(), "t1");
    let events = sse_events(&test::read_body(resp).await);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks.len(), 4, "{chunks:#?}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], "chatcmpl-t1");
        assert_eq!(c["model"], "tiny");
        assert_eq!(c["created"], chunks[0]["created"]);
        assert!(c.get("usage").is_none(), "usage only with include_usage: {c}");
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])
    );
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "Hello"}));
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": " world"}));
    assert_eq!(chunks[3]["choices"], json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]));
}

#[actix_web::test]
async fn streamed_chat_with_include_usage_ends_with_a_usage_chunk_without_choices() {
    let h = harness(hello());
    let body = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let events = sse_events(&test::read_body(call(&h.state, post("/v1/chat/completions", &body)).await).await);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let (last, rest) = chunks.split_last().unwrap();
    for c in rest {
        assert_eq!(c["usage"], Value::Null);
        assert!(c.as_object().unwrap().contains_key("usage"));
    }
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}));
}

#[actix_web::test]
async fn streamed_completion_sends_text_chunks_then_finish_then_done() {
    let h = harness(Plan::Events(vec![started(), tok("a"), tok(""), tok("b"), done(Finish::Length)]));
    let body = json!({"model": "tiny", "prompt": "x", "stream": true});
    let events = sse_events(&test::read_body(call(&h.state, post("/v1/completions", &body)).await).await);
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let texts: Vec<&str> = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["a", "b", ""]);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion" && c["id"] == "cmpl-t1"));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
}

#[actix_web::test]
async fn task_errors_before_start_map_to_openai_statuses() {
    let too_long = TaskError::PromptTooLong { prompt_tokens: 3000, context: 2048 };
    // (plan, path, status, error type, error code, error param)
    type Case<'a> = (Plan, &'a str, u16, &'a str, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            Plan::Reject(TaskError::UnknownModel("nope".into())),
            "/v1/chat/completions",
            404,
            "invalid_request_error",
            Some("model_not_found"),
            Some("model"),
        ),
        (
            Plan::Events(vec![TaskEvent::Failed(too_long.clone())]),
            "/v1/chat/completions",
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            Some("messages"),
        ),
        (
            Plan::Reject(too_long),
            "/v1/completions",
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            Some("prompt"),
        ),
        (
            Plan::Events(vec![TaskEvent::Failed(TaskError::InvalidRequest("bad stop".into()))]),
            "/v1/chat/completions",
            400,
            "invalid_request_error",
            None,
            None,
        ),
        (
            Plan::Reject(TaskError::NoMiner("tiny".into())),
            "/v1/chat/completions",
            503,
            "server_error",
            Some("no_miner_available"),
            None,
        ),
        (
            Plan::Events(vec![TaskEvent::Failed(TaskError::Exhausted("all dead".into()))]),
            "/v1/completions",
            503,
            "server_error",
            Some("task_failed"),
            None,
        ),
        // The mesh dropped the task without a word.
        (Plan::Events(vec![]), "/v1/chat/completions", 503, "server_error", Some("task_failed"), None),
    ];
    for (plan, path, status, kind, code, param) in cases {
        for stream in [false, true] {
            let h = harness(plan.clone());
            let body = if path.ends_with("chat/completions") {
                chat_body(json!({"stream": stream}))
            } else {
                json!({"model": "tiny", "prompt": "p", "stream": stream})
            };
            let (s, v) = json_of(call(&h.state, post(path, &body)).await).await;
            assert_eq!(s.as_u16(), status, "{path} stream={stream}: {v}");
            assert_openai_error(&v, kind, code);
            assert_eq!(v["error"]["param"].as_str(), param, "{v}");
        }
    }
}

#[actix_web::test]
async fn a_failure_after_start_is_an_error_event_when_streaming_and_503_otherwise() {
    let plan = Plan::Events(vec![started(), tok("Hel"), TaskEvent::Failed(TaskError::Exhausted("miner died".into()))]);
    let h = harness(plan.clone());
    let events = sse_events(
        &test::read_body(call(&h.state, post("/v1/chat/completions", &chat_body(json!({"stream": true})))).await).await,
    );
    assert_ne!(events.last().unwrap(), "[DONE]", "a failed stream must not look complete");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_openai_error(&last, "server_error", Some("task_failed"));
    assert_eq!(serde_json::from_str::<Value>(&events[1]).unwrap()["choices"][0]["delta"]["content"], "Hel");

    let h = harness(plan);
    let (s, v) = json_of(call(&h.state, post("/v1/chat/completions", &chat_body(json!({})))).await).await;
    assert_eq!(s, 503);
    assert_openai_error(&v, "server_error", Some("task_failed"));
}

#[actix_web::test]
async fn a_stream_whose_task_vanishes_ends_with_an_error_event_not_done() {
    let h = harness(Plan::Events(vec![started(), tok("x")]));
    let events = sse_events(
        &test::read_body(call(&h.state, post("/v1/chat/completions", &chat_body(json!({"stream": true})))).await).await,
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_openai_error(&last, "server_error", Some("task_failed"));
}

#[actix_web::test]
async fn missing_or_wrong_api_key_is_401_on_every_endpoint() {
    let h = harness(hello());
    let body = chat_body(json!({}));
    let reqs = [
        TestRequest::post().uri("/v1/chat/completions").set_json(&body),
        TestRequest::post()
            .uri("/v1/chat/completions")
            .insert_header(("authorization", "Bearer sk-wrong"))
            .set_json(&body),
        TestRequest::post()
            .uri("/v1/completions")
            .insert_header(("authorization", "Basic sk-dev"))
            .set_json(json!({"model": "tiny", "prompt": "x"})),
        TestRequest::get().uri("/v1/models"),
        TestRequest::get().uri("/v1/models/tiny").insert_header(("authorization", "Bearer nope")),
    ];
    for req in reqs {
        let (s, v) = json_of(call(&h.state, req).await).await;
        assert_eq!(s, 401, "{v}");
        assert_openai_error(&v, "invalid_request_error", Some("invalid_api_key"));
    }
    assert!(h.fake.specs.lock().unwrap().is_empty(), "nothing may be submitted without a valid key");
}

#[actix_web::test]
async fn no_configured_keys_means_every_request_is_refused() {
    let h = harness_with(hello(), GatewayConfig::default());
    let (s, _) = json_of(call(&h.state, post("/v1/chat/completions", &chat_body(json!({})))).await).await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn requests_over_the_per_account_rate_are_429_with_retry_after() {
    let h = harness_with(hello(), GatewayConfig { rate_limit_per_minute: 2, ..config() });
    let st = h.state.clone();
    let app = test::init_service(App::new().configure(move |c| configure(c, st))).await;
    for _ in 0..2 {
        let r = test::call_service(&app, post("/v1/chat/completions", &chat_body(json!({}))).to_request()).await;
        assert_eq!(r.status(), 200);
    }
    let r = test::call_service(&app, post("/v1/chat/completions", &chat_body(json!({}))).to_request()).await;
    let retry: u64 = r.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let (s, v) = json_of(r).await;
    assert_eq!(s, 429);
    assert_openai_error(&v, "requests", Some("rate_limit_exceeded"));
    // The other account has its own bucket.
    let other = TestRequest::post()
        .uri("/v1/chat/completions")
        .insert_header(("authorization", "Bearer sk-other"))
        .set_json(chat_body(json!({})));
    assert_eq!(test::call_service(&app, other.to_request()).await.status(), 200);
    assert_eq!(h.fake.specs.lock().unwrap().len(), 3);
}

#[actix_web::test]
async fn a_body_over_the_limit_is_413_in_openai_shape() {
    let h = harness_with(hello(), GatewayConfig { max_body_bytes: 1024, ..config() });
    let big = chat_body(json!({"messages": [{"role": "user", "content": "x".repeat(2000)}]}));
    let (s, v) = json_of(call(&h.state, post("/v1/chat/completions", &big)).await).await;
    assert_eq!(s, 413);
    assert_openai_error(&v, "invalid_request_error", Some("request_too_large"));
    // Just under the limit passes.
    let (s, _) =
        json_of(call(&h.state, post("/v1/chat/completions", &chat_body(json!({"user": "y".repeat(900)})))).await).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn malformed_or_mistyped_json_is_an_openai_shaped_400() {
    let h = harness(hello());
    let raw = |body: &'static str| {
        TestRequest::post()
            .uri("/v1/chat/completions")
            .insert_header(("authorization", "Bearer sk-dev"))
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
    };
    for body in [
        "{\"model\": \"tiny\", \"messages\": [",
        "",
        "not json",
        "[]",
        "{\"model\": 3, \"messages\": []}",
        "{\"messages\": []}",
        "{\"model\":\"tiny\",\"messages\":\"hi\"}",
    ] {
        let (s, v) = json_of(call(&h.state, raw(body)).await).await;
        assert_eq!(s, 400, "{body:?}: {v}");
        assert_openai_error(&v, "invalid_request_error", Some("invalid_json"));
    }
    assert!(h.fake.specs.lock().unwrap().is_empty());
}

#[actix_web::test]
async fn n_choices_are_one_task_each_with_their_index_and_the_summed_usage() {
    let h = harness(hello());
    let body = chat_body(json!({"n": 3, "seed": 7, "temperature": 0.5}));
    let resp = call(&h.state, post("/v1/chat/completions", &body)).await;
    assert_eq!(resp.headers().get("x-brainmesh-receipt-id").unwrap(), "r1,r1,r1");
    let (s, v) = json_of(resp).await;
    assert_eq!(s, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.iter().map(|c| c["index"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(choices.iter().all(|c| c["message"]["content"] == "Hello world"));
    assert_eq!(v["usage"], json!({"prompt_tokens": 15, "completion_tokens": 6, "total_tokens": 21}));
    let seeds: Vec<Option<u64>> = h.fake.specs.lock().unwrap().iter().map(|s| s.sampling.seed).collect();
    assert_eq!(seeds, vec![Some(7), Some(8), Some(9)]);

    // Streamed: each choice opens, streams and finishes under its index; one [DONE] at the end.
    let body = chat_body(json!({"n": 2, "stream": true, "stream_options": {"include_usage": true}}));
    let events = sse_events(&test::read_body(call(&h.state, post("/v1/chat/completions", &body)).await).await);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    for i in 0..2 {
        let mine: Vec<&Value> = chunks.iter().filter(|c| c["choices"][0]["index"] == i).collect();
        let text: String = mine.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "Hello world", "choice {i}");
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);

    // Too many choices is a clear 400.
    let (s, v) = json_of(call(&h.state, post("/v1/chat/completions", &chat_body(json!({"n": 17})))).await).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "n");
}

#[actix_web::test]
async fn a_tool_call_answer_comes_back_as_tool_calls_plain_and_streamed() {
    let answer = Plan::Events(vec![
        started(),
        tok(r#"{"name": "get_weather", "#),
        tok(r#""arguments": {"city": "Oslo"}}"#),
        done(Finish::Stop),
    ]);
    let h = harness(answer);
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let body = chat_body(json!({"tools": tools}));
    let (s, v) = json_of(call(&h.state, post("/v1/chat/completions", &body)).await).await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}])
    );
    let body = chat_body(json!({"tools": tools, "stream": true}));
    let events = sse_events(&test::read_body(call(&h.state, post("/v1/chat/completions", &body)).await).await);
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let calls: Vec<&Value> = chunks.iter().filter(|c| !c["choices"][0]["delta"]["tool_calls"].is_null()).collect();
    assert_eq!(calls.len(), 1, "{chunks:?}");
    assert_eq!(calls[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");

    // A plain answer in tool mode is the `response` text.
    let h = harness(Plan::Events(vec![started(), tok(r#"{"response": "No tool needed."}"#), done(Finish::Stop)]));
    let (_, v) = json_of(call(&h.state, post("/v1/chat/completions", &chat_body(json!({"tools": tools})))).await).await;
    assert_eq!(v["choices"][0]["message"]["content"], "No tool needed.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
}

#[actix_web::test]
async fn embeddings_come_back_in_openais_shape_as_floats_or_base64() {
    let h = harness(Plan::Events(vec![
        started(),
        TaskEvent::Embeddings { vectors: vec![vec![0.5, -0.25], vec![1.0, 0.0]] },
        TaskEvent::Done {
            finish: Finish::Stop,
            usage: Usage { prompt_tokens: 9, completion_tokens: 0 },
            receipt_id: "r9".into(),
            attempts: 1,
        },
    ]));
    let body = json!({"model": "mini", "input": ["a", "b"]});
    let resp = call(&h.state, post("/v1/embeddings", &body)).await;
    assert_eq!(resp.headers().get("x-brainmesh-receipt-id").unwrap(), "r9");
    let (s, v) = json_of(resp).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"object": "list", "model": "mini", "usage": {"prompt_tokens": 9, "total_tokens": 9}, "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}]})
    );
    match &h.fake.specs.lock().unwrap()[0].prompt {
        Prompt::Embed { inputs, dimensions } => assert_eq!((inputs.len(), *dimensions), (2, None)),
        other => panic!("{other:?}"),
    }
    let body = json!({"model": "mini", "input": "a", "encoding_format": "base64"});
    let (_, v) = json_of(call(&h.state, post("/v1/embeddings", &body)).await).await;
    // 0.5f32, -0.25f32 little-endian: 00 00 00 3f 00 00 80 be.
    assert_eq!(v["data"][0]["embedding"], "AAAAPwAAgL4=");
    for (body, param) in [
        (json!({"model": "mini", "input": [[1, 2]]}), "input"),
        (json!({"model": "mini", "input": []}), "input"),
        (json!({"model": "mini", "input": ["ok", ""]}), "input"),
        (json!({"model": "mini", "input": "a", "encoding_format": "int8"}), "encoding_format"),
        (json!({"model": "mini", "input": "a", "dimensions": 0}), "dimensions"),
    ] {
        let (s, v) = json_of(call(&h.state, post("/v1/embeddings", &body)).await).await;
        assert_eq!((s.as_u16(), v["error"]["param"].as_str()), (400, Some(param)), "{body}: {v}");
    }
}

fn lp(token: &str, logprob: f32, top: &[(&str, f32)]) -> brainmesh_actors::task::TokenLogprob {
    brainmesh_actors::task::TokenLogprob {
        token: token.into(),
        logprob,
        bytes: token.as_bytes().to_vec(),
        top_logprobs: top
            .iter()
            .map(|&(t, l)| brainmesh_actors::task::TopLogprob {
                token: t.into(),
                logprob: l,
                bytes: t.as_bytes().to_vec(),
            })
            .collect(),
    }
}

fn with_logprobs() -> Plan {
    Plan::Events(vec![
        started(),
        TaskEvent::Token { text: "Hello".into(), logprobs: vec![lp("Hello", -0.5, &[("Hello", -0.5), ("Hi", -1.5)])] },
        TaskEvent::Token {
            text: " world".into(),
            logprobs: vec![lp(" world", -0.25, &[(" world", -0.25), ("!", -2.0)])],
        },
        done(Finish::Stop),
    ])
}

#[actix_web::test]
async fn logprobs_come_back_in_openais_chat_and_completion_shapes() {
    let h = harness(with_logprobs());
    let body = chat_body(json!({"logprobs": true, "top_logprobs": 2}));
    let (s, v) = json_of(call(&h.state, post("/v1/chat/completions", &body)).await).await;
    assert_eq!(s, 200, "{v}");
    let content = &v["choices"][0]["logprobs"]["content"];
    assert_eq!(content[0]["token"], "Hello");
    assert_eq!(content[1]["logprob"], -0.25);
    assert_eq!(content[1]["top_logprobs"][1], json!({"token": "!", "logprob": -2.0, "bytes": [33]}));
    assert_eq!(h.fake.specs.lock().unwrap()[0].sampling.logprobs, Some(2));
    // Without logprobs the field is null.
    let (_, v) = json_of(call(&h.state, post("/v1/chat/completions", &chat_body(json!({})))).await).await;
    assert!(v["choices"][0]["logprobs"].is_null());

    let body = json!({"model": "tiny", "prompt": "Say", "logprobs": 2});
    let (s, v) = json_of(call(&h.state, post("/v1/completions", &body)).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["choices"][0]["logprobs"],
        json!({"tokens": ["Hello", " world"], "token_logprobs": [-0.5, -0.25],
               "top_logprobs": [{"Hello": -0.5, "Hi": -1.5}, {" world": -0.25, "!": -2.0}], "text_offset": [0, 5]})
    );
    // Echo with logprobs: the prompt's tokens lead, the first with null.
    let h2 = harness(Plan::Events(vec![
        TaskEvent::Started {
            task_id: "t1".into(),
            miner: "m".into(),
            prompt_tokens: 1,
            prompt_logprobs: vec![lp("Say", f32::NAN, &[])],
        },
        TaskEvent::Token { text: "Hello".into(), logprobs: vec![lp("Hello", -0.5, &[("Hello", -0.5)])] },
        done(Finish::Stop),
    ]));
    let body = json!({"model": "tiny", "prompt": "Say", "echo": true, "logprobs": 1});
    let (_, v) = json_of(call(&h2.state, post("/v1/completions", &body)).await).await;
    assert_eq!(v["choices"][0]["text"], "SayHello");
    assert_eq!(
        v["choices"][0]["logprobs"],
        json!({"tokens": ["Say", "Hello"], "token_logprobs": [null, -0.5], "top_logprobs": [null, {"Hello": -0.5}],
               "text_offset": [0, 3]})
    );
    assert!(h2.fake.specs.lock().unwrap()[0].sampling.prompt_logprobs);
    // Echo puts the prompt first; streamed logprobs ride on the chunks that carry the tokens.
    let body = json!({"model": "tiny", "prompt": "Say", "echo": true});
    let (_, v) = json_of(call(&h.state, post("/v1/completions", &body)).await).await;
    assert_eq!(v["choices"][0]["text"], "SayHello world");
    let body = json!({"model": "tiny", "prompt": "Say", "logprobs": 1, "stream": true});
    let events = sse_events(&test::read_body(call(&h.state, post("/v1/completions", &body)).await).await);
    let chunks: Vec<Value> =
        events.iter().filter(|e| *e != "[DONE]").map(|e| serde_json::from_str(e).unwrap()).collect();
    let offsets: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["text_offset"].as_array().cloned())
        .flatten()
        .collect();
    assert_eq!(offsets, vec![json!(0), json!(5)]);
}

#[actix_web::test]
async fn models_are_listed_once_each_and_retrievable_by_id() {
    let h = harness(hello());
    let get = |uri: &str| TestRequest::get().uri(uri).insert_header(("authorization", "Bearer sk-dev"));
    let (s, v) = json_of(call(&h.state, get("/v1/models")).await).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"object": "list", "data": [
            {"id": "org/smol", "object": "model", "created": 0, "owned_by": "brainmesh"},
            {"id": "tiny", "object": "model", "created": 0, "owned_by": "brainmesh"}
        ]})
    );
    let (s, v) = json_of(call(&h.state, get("/v1/models/org/smol")).await).await;
    assert_eq!((s.as_u16(), v["id"].as_str()), (200, Some("org/smol")));
    let (s, v) = json_of(call(&h.state, get("/v1/models/nope")).await).await;
    assert_eq!(s, 404);
    assert_openai_error(&v, "invalid_request_error", Some("model_not_found"));
}

#[actix_web::test]
async fn unknown_paths_and_wrong_methods_answer_in_openai_shape() {
    let h = harness(hello());
    let (s, v) = json_of(call(&h.state, TestRequest::get().uri("/v1/embeddings")).await).await;
    assert_eq!(s, 404);
    assert_openai_error(&v, "invalid_request_error", Some("unknown_url"));
    let (s, v) = json_of(call(&h.state, TestRequest::get().uri("/v1/chat/completions")).await).await;
    assert_eq!(s, 405);
    assert_openai_error(&v, "invalid_request_error", Some("method_not_allowed"));
}

/// Polls one chunk of a response body.
async fn next_chunk<B: MessageBody + Unpin>(body: &mut B) -> Option<Bytes> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx)).await.map(|r| r.map_err(|_| ()).unwrap())
}

#[actix_web::test]
async fn dropping_the_streamed_body_drops_the_receiver_and_cancels_the_task() {
    let mut h = harness(Plan::Hold(vec![started()]));
    let resp = call(&h.state, post("/v1/chat/completions", &chat_body(json!({"stream": true})))).await;
    let tx = h.held.recv().await.unwrap();
    let mut body = resp.into_body();
    let first = next_chunk(&mut body).await.unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("\"role\":\"assistant\""));
    tx.send(tok("one")).await.unwrap();
    assert!(std::str::from_utf8(&next_chunk(&mut body).await.unwrap()).unwrap().contains("one"));
    assert!(!tx.is_closed());
    drop(body);
    tokio::time::timeout(Duration::from_secs(5), tx.closed())
        .await
        .expect("receiver still alive after the body was dropped");
}

/// Starts the gateway on a real socket.
fn serve_on_loopback(state: GatewayState) -> (SocketAddr, ServerHandle) {
    serve(state, "127.0.0.1:0").unwrap()
}

fn raw_request(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-dev\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads from `s` until `needle` has been seen.
async fn read_until(s: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before {needle:?}: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[actix_web::test]
async fn a_client_disconnecting_mid_stream_cancels_the_task() {
    let mut h = harness(Plan::Hold(vec![started(), tok("first")]));
    let (addr, handle) = serve_on_loopback(h.state.clone());
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = chat_body(json!({"stream": true})).to_string();
    sock.write_all(raw_request("/v1/chat/completions", &body).as_bytes()).await.unwrap();
    let tx = h.held.recv().await.unwrap();
    read_until(&mut sock, "first").await;
    drop(sock);
    // Tokens keep coming from the miner until the gateway notices; it must drop the receiver.
    let cancelled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = tokio::time::sleep(Duration::from_millis(20)) => { let _ = tx.send(tok("more")).await; }
            }
        }
    })
    .await;
    assert!(cancelled.is_ok(), "the task's receiver outlived the client connection");
    handle.stop(false).await;
}

#[actix_web::test]
async fn a_client_disconnecting_while_waiting_for_a_non_streamed_answer_cancels_the_task() {
    let mut h = harness(Plan::Hold(vec![started(), tok("partial")]));
    let (addr, handle) = serve_on_loopback(h.state.clone());
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(raw_request("/v1/chat/completions", &chat_body(json!({})).to_string()).as_bytes()).await.unwrap();
    let tx = h.held.recv().await.unwrap();
    drop(sock);
    tokio::time::timeout(Duration::from_secs(10), tx.closed())
        .await
        .expect("the task's receiver outlived the client connection");
    handle.stop(false).await;
}

#[actix_web::test]
async fn a_chunked_body_over_the_limit_is_413_without_reading_it_all() {
    let h = harness_with(hello(), GatewayConfig { max_body_bytes: 1024, ..config() });
    let (addr, handle) = serve_on_loopback(h.state.clone());
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-dev\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = "x".repeat(600);
    for _ in 0..3 {
        sock.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await.unwrap();
    }
    let resp = read_until(&mut sock, "request_too_large").await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    handle.stop(false).await;
}

#[test]
fn gateway_config_parses_from_toml_with_defaults_and_refuses_unknown_fields() {
    let c: GatewayConfig = toml::from_str("api_keys = [\"sk-local-dev:dev\"]\nrate_limit_per_minute = 60\n").unwrap();
    assert_eq!(c.api_keys, vec!["sk-local-dev:dev".to_string()]);
    assert_eq!(c.rate_limit_per_minute, 60);
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.max_body_bytes, 1 << 20);
    c.validate().unwrap();
    assert!(toml::from_str::<GatewayConfig>("api_key = []").is_err());
    let bad = GatewayConfig { api_keys: vec!["no-account".into()], ..GatewayConfig::default() };
    assert!(matches!(bad.validate(), Err(GatewayConfigError::Keys(KeyError::NoSeparator { index: 0 }))));
    let round: GatewayConfig = toml::from_str(&toml::to_string(&config()).unwrap()).unwrap();
    assert_eq!(round, config());
}
