//! The official `openai` Python package against a real local mesh: one gateway and two miners
//! serving SmolLM2-135M-Instruct (`make setup` fetches it), all real `brainmesh` processes on
//! 127.0.0.1. The Python side is `tests/py/openai_client.py`; it checks plain and streamed chat
//! completions, a text completion, 401 / 404 / 400 errors in OpenAI's shape and 50 concurrent
//! requests all answered.
//!
//! A second test runs the same script against the gateway in-process over a scripted
//! [`TaskService`], so the wire format is checked with the official client even without a mesh.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use brainmesh::gateway::{self, GatewayConfig, GatewayState};
use brainmesh_actors::task::{
    BoxFuture, Finish, ModelInfo, Prompt, TaskError, TaskEvent, TaskService, TaskSpec, Usage,
};
use common::*;
use serde_json::Value;
use tokio::sync::mpsc;

const MODEL: &str = "smollm2-135m-instruct";
const API_KEY: &str = "sk-openai-client-test";
const EMBED_MODEL: &str = "all-minilm-l6-v2";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    std::env::var_os("BRAINMESH_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"))
}

fn smollm_gguf() -> PathBuf {
    let cache = std::env::var_os("BRAINMESH_CACHE").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache"));
    let p = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make setup`", p.display());
    p
}

fn minilm_dir() -> PathBuf {
    let cache = std::env::var_os("BRAINMESH_CACHE").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache"));
    let p = cache.join("models/all-MiniLM-L6-v2");
    assert!(p.join("model.safetensors").exists(), "{} is missing: run `make setup`", p.display());
    p
}

/// `GET /v1/models` with the test key; the model ids listed.
fn listed_models(gateway: &str) -> Option<Vec<String>> {
    let mut resp = ureq::get(&format!("http://{gateway}/v1/models"))
        .header("authorization", &format!("Bearer {API_KEY}"))
        .call()
        .ok()?;
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
    Some(v["data"].as_array()?.iter().filter_map(|m| m["id"].as_str().map(str::to_string)).collect())
}

#[test]
fn official_openai_client_gets_plain_streamed_and_error_answers_from_a_gateway_and_two_miners() {
    let model = smollm_gguf();
    let root = tempfile::tempdir().unwrap();
    let gw_port = free_port();
    let gw_listen = format!("127.0.0.1:{gw_port}");
    let keys = format!("{API_KEY}:acct-openai-test");
    let model_path = model.to_string_lossy().to_string();
    let embed_dir = minilm_dir();
    let embed_path = embed_dir.to_string_lossy().to_string();
    let env: Vec<(&str, &str)> = vec![
        ("BRAINMESH_GATEWAY_LISTEN", &gw_listen),
        ("BRAINMESH_GATEWAY_API_KEYS", &keys),
        // 50 concurrent requests from one account must not trip the limiter.
        ("BRAINMESH_GATEWAY_RATE_LIMIT_PER_MINUTE", "0"),
        ("BRAINMESH_MINER_MODEL", &model_path),
        ("BRAINMESH_MINER_MODEL_ID", MODEL),
        ("BRAINMESH_MINER_DEVICE", "cpu"),
        // Two miners share the test machine's cores.
        ("BRAINMESH_MINER_THREADS", "1"),
        ("BRAINMESH_MINER_EMBEDDING_MODEL", &embed_path),
        ("BRAINMESH_MINER_EMBEDDING_MODEL_ID", EMBED_MODEL),
    ];

    let gw_dir = root.path().join("gateway");
    init(&gw_dir, "gateway");
    let gateway = start(&gw_dir, None, &env);
    let mut miners = Vec::new();
    for i in 0..2 {
        let dir = root.path().join(format!("miner{i}"));
        init(&dir, "miner");
        miners.push(start(&dir, Some(&gateway.addr), &env));
    }
    // The gateway may publish its own address in node.json; otherwise it is the one we chose.
    let gw_addr = std::fs::read_to_string(gw_dir.join("node.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["gateway"].as_str().map(str::to_string))
        .unwrap_or(gw_listen);

    // Ready when the gateway lists the model (the miners loaded it and announced themselves).
    let listed = wait_for(Duration::from_secs(180), || {
        listed_models(&gw_addr).filter(|m| m.iter().any(|id| id == MODEL) && m.iter().any(|id| id == EMBED_MODEL))
    });
    assert!(
        listed.is_some(),
        "gateway at {gw_addr} never listed {MODEL}: {:?}\ngateway log:\n{}",
        listed_models(&gw_addr),
        std::fs::read_to_string(gw_dir.join("node.log")).unwrap_or_default()
    );

    let out = Command::new(python())
        .arg(repo().join("tests/py/openai_client.py"))
        .arg(format!("http://{gw_addr}/v1"))
        .arg(API_KEY)
        .arg(MODEL)
        .args(["--concurrent", "50"])
        .arg("--reference-gguf")
        .arg(&model)
        .args(["--embedding-model", EMBED_MODEL, "--embedding-dir"])
        .arg(&embed_dir)
        .arg("--kill-miner-mid-stream")
        .arg(miners.iter().map(|m| m.dir.display().to_string()).collect::<Vec<_>>().join(","))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run `make setup`): {e}", python().display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{stderr}\n{stdout}\ngateway log:\n{}",
        std::fs::read_to_string(gw_dir.join("node.log")).unwrap_or_default()
    );
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script's JSON summary");
    assert_eq!(seen["unknown_model"]["status"], 404);
    assert_eq!(seen["over_context"]["code"], "context_length_exceeded");
    assert_eq!(seen["bad_key"]["status"], 401);
    let answers = seen["concurrent"].as_array().expect("concurrent answers");
    assert_eq!(answers.len(), 50);
    assert!(seen["chat"]["text"].as_str().is_some_and(|t| !t.trim().is_empty()), "{seen}");
    let receipt_ids: std::collections::HashSet<&str> = answers.iter().filter_map(|a| a["receipt"].as_str()).collect();
    assert_eq!(receipt_ids.len(), 50, "each concurrent answer names its own receipt");
    // The streamed answer whose miner was SIGKILLed mid-stream still finished.
    let killed = &seen["killed_mid_stream"];
    assert!(matches!(killed["finish_reason"].as_str(), Some("stop" | "length")), "{killed}");
    // Greedy logprobs through the mesh are transformers' log-softmax on the same GGUF.
    println!("largest logprob difference from transformers through the mesh: {}", seen["logprob_vs_transformers"]);
    println!("smallest embedding cosine to transformers through the mesh: {}", seen["embedding_min_cosine"]);
    assert!(seen["embedding_min_cosine"].as_f64().is_some_and(|c| c >= 0.999), "{seen}");
    assert!(seen["logprob_vs_transformers"].as_f64().is_some_and(|d| d < 1e-3), "{seen}");
    // Exactly one receipt per answered choice (chat, stream, completion, 50 concurrent, the
    // story that moved miners, the sampling features' choices and the transformers check),
    // none for refused ones.
    let extra = seen["extra_receipts"].as_u64().expect("the sampling features' receipt count");
    let status = get_json(&format!("http://{}/status", gateway.http)).expect("gateway status");
    assert_eq!(status["counters"]["receipts"], 54 + extra + 1, "receipts on the gateway: {}", status["counters"]);
    drop(miners);
}

/// Answers like a model would, by rule: `w0 w1 …` up to `max_tokens`; unknown models and
/// prompts over 10,000 characters are refused as the mesh refuses them.
struct ScriptedMesh;

impl TaskService for ScriptedMesh {
    fn submit(&self, spec: TaskSpec) -> BoxFuture<'_, Result<mpsc::Receiver<TaskEvent>, TaskError>> {
        Box::pin(async move {
            if spec.model != MODEL {
                return Err(TaskError::UnknownModel(spec.model));
            }
            let chars = match &spec.prompt {
                Prompt::Chat(m) => m.iter().map(|m| m.content.len()).sum(),
                Prompt::Text(t) => t.len(),
                Prompt::Embed { inputs, .. } => inputs.iter().map(String::len).sum(),
            };
            let prompt_tokens = (chars / 4 + 1) as u32;
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                if chars > 10_000 {
                    let _ = tx.send(TaskEvent::Failed(TaskError::PromptTooLong { prompt_tokens, context: 2048 })).await;
                    return;
                }
                let id = format!("{:016x}", rand_id());
                let _ = tx
                    .send(TaskEvent::Started {
                        task_id: id.clone(),
                        miner: "scripted".into(),
                        prompt_tokens,
                        prompt_logprobs: vec![],
                    })
                    .await;
                let n = spec.sampling.max_tokens;
                for i in 0..n {
                    let text = if i == 0 { format!("w{i}") } else { format!(" w{i}") };
                    if tx.send(TaskEvent::Token { text, logprobs: vec![] }).await.is_err() {
                        return;
                    }
                }
                let usage = Usage { prompt_tokens, completion_tokens: n };
                let _ = tx
                    .send(TaskEvent::Done {
                        finish: Finish::Length,
                        usage,
                        receipt_id: format!("receipt-{id}"),
                        attempts: 1,
                    })
                    .await;
            });
            Ok(rx)
        })
    }

    fn models(&self) -> BoxFuture<'_, Vec<ModelInfo>> {
        Box::pin(async { vec![ModelInfo { id: MODEL.into(), hash: "00".into(), context_length: 2048, miners: 1 }] })
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[actix_web::test]
async fn official_openai_client_reads_the_gateways_json_sse_and_errors_over_a_scripted_mesh() {
    let cfg = GatewayConfig {
        api_keys: vec![format!("{API_KEY}:acct")],
        listen: "127.0.0.1:0".into(),
        ..GatewayConfig::default()
    };
    let state = GatewayState::new(std::sync::Arc::new(ScriptedMesh), &cfg).unwrap();
    let (addr, handle) = gateway::serve(state, &cfg.listen).unwrap();
    let out = tokio::process::Command::new(python())
        .arg(repo().join("tests/py/openai_client.py"))
        .arg(format!("http://{addr}/v1"))
        .arg(API_KEY)
        .arg(MODEL)
        .args(["--concurrent", "50"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {} (run `make setup`): {e}", python().display()));
    handle.stop(false).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "openai_client.py failed:\n{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the script's JSON summary");
    assert_eq!(seen["chat"]["text"], "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11");
    assert_eq!(seen["stream"]["text"], seen["chat"]["text"]);
    let receipts: std::collections::HashSet<&str> =
        seen["concurrent"].as_array().unwrap().iter().filter_map(|a| a["receipt"].as_str()).collect();
    assert_eq!(receipts.len(), 50, "each concurrent answer carries its own receipt id");
}
