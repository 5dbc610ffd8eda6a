//! Inference over a real loopback mesh (in-process peers, real libp2p sockets, real SmolLM2
//! weights): sealed tasks, streaming, failover when a miner dies mid-stream, receipts.

mod common;

use std::path::Path;

use common::{smollm, wait_until};

use brainmesh::config::{loopback, NodeConfig};
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::receipt::SignedReceipt;
use brainmesh_actors::task::{ChatMessage, Finish, Prompt, Sampling, TaskError, TaskEvent, TaskService, TaskSpec};

fn config(dir: &Path, role: Role, bootstrap: Vec<String>) -> NodeConfig {
    let mut cfg = loopback(role, dir, bootstrap).unwrap();
    cfg.network.heartbeat_interval_ms = 200;
    cfg.network.gossip_heartbeat_ms = 100;
    cfg.miner.model = smollm();
    cfg.miner.threads = 1;
    cfg.tasks.chunk_timeout_ms = 5_000;
    cfg
}

struct Answer {
    text: String,
    started: Option<(String, u32)>,
    done: Option<(Finish, u32, u32, String, u32)>,
    error: Option<TaskError>,
}

async fn collect(mut rx: tokio::sync::mpsc::Receiver<TaskEvent>, mut on_token: impl FnMut(&str, &str)) -> Answer {
    let mut a = Answer { text: String::new(), started: None, done: None, error: None };
    while let Some(ev) = rx.recv().await {
        match ev {
            TaskEvent::Started { miner, prompt_tokens, .. } => a.started = Some((miner, prompt_tokens)),
            TaskEvent::Token { text, .. } => {
                a.text.push_str(&text);
                let miner = a.started.as_ref().map(|s| s.0.clone()).unwrap_or_default();
                on_token(&miner, &a.text);
            }
            TaskEvent::Done { finish, usage, receipt_id, attempts } => {
                a.done = Some((finish, usage.prompt_tokens, usage.completion_tokens, receipt_id, attempts));
                break;
            }
            TaskEvent::Embeddings { .. } => {}
            TaskEvent::Failed(e) => {
                a.error = Some(e);
                break;
            }
        }
    }
    a
}

fn chat(q: &str, max_tokens: u32) -> TaskSpec {
    TaskSpec {
        model: "smollm2-135m-instruct".into(),
        account: "dev".into(),
        prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: q.into() }]),
        sampling: Sampling { max_tokens, ..Default::default() },
    }
}

#[actix_rt::test]
async fn a_gateway_and_two_miners_answer_sealed_tasks_fail_over_and_issue_one_receipt_each() {
    let root = tempfile::tempdir().unwrap();
    let gw = Node::start(config(&root.path().join("gw"), Role::Gateway, vec![])).await.unwrap();
    let boot = gw.listen_addrs[0].clone();
    let mut miners = Vec::new();
    for i in 0..2 {
        miners.push(
            Node::start(config(&root.path().join(format!("m{i}")), Role::Miner, vec![boot.clone()])).await.unwrap(),
        );
    }
    let tasks = gw.tasks.clone().unwrap();
    wait_until("both miners advertised", 60, || async { tasks.models().await.first().is_some_and(|m| m.miners == 2) })
        .await;
    let models = tasks.models().await;
    assert_eq!(models[0].id, "smollm2-135m-instruct");
    assert_eq!(models[0].hash.len(), 64);
    assert_eq!(models[0].context_length, 8192);

    // A plain question, streamed through the mesh.
    let a = collect(tasks.submit(chat("What is the capital of France?", 12)).await.unwrap(), |_, _| {}).await;
    assert!(a.error.is_none(), "{:?}", a.error);
    assert!(a.text.contains("Paris"), "{}", a.text);
    let (finish, prompt_tokens, completion_tokens, receipt_id, attempts) = a.done.clone().unwrap();
    assert!(prompt_tokens > 10 && completion_tokens > 0 && attempts == 1);
    assert!(matches!(finish, Finish::Stop | Finish::Length));
    let receipts: Vec<SignedReceipt> = gw.receipts.all();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].id(), receipt_id);
    let r = receipts[0].verify().unwrap();
    assert_eq!((r.gateway.as_str(), r.account.as_str()), (gw.peer_id.as_str(), "dev"));
    assert_eq!(r.prompt_tokens, prompt_tokens);
    // The receipt reaches the miners over gossip.
    let m0 = miners[0].receipts.clone();
    wait_until("receipt gossiped", 20, || {
        let m0 = m0.clone();
        async move { m0.len() == 1 }
    })
    .await;

    // Errors come back typed: unknown model, prompt over the context.
    let mut bad = chat("hi", 4);
    bad.model = "gpt-17".into();
    assert!(matches!(tasks.submit(bad).await, Err(TaskError::UnknownModel(_))));
    let long = chat(&"hello ".repeat(9000), 4);
    let a = collect(tasks.submit(long).await.unwrap(), |_, _| {}).await;
    assert!(
        matches!(a.error, Some(TaskError::PromptTooLong { context: 8192, .. })),
        "{:?}",
        a.error.as_ref().map(|e| e.to_string())
    );

    // Kill the miner serving a long answer mid-stream: the answer still completes, once.
    let rx = tasks.submit(chat("Write a long story about a dragon who learns to bake bread.", 48)).await.unwrap();
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut sent = false;
    let collecting = tokio::spawn(collect(rx, move |miner, so_far| {
        if !sent && so_far.len() > 20 {
            sent = true;
            let _ = kill_tx.send(miner.to_string());
        }
    }));
    let serving = kill_rx.recv().await.unwrap();
    let before = gw.receipts.len();
    let victim = miners.iter().position(|m| m.peer_id == serving).expect("the serving miner is one of ours");
    miners.remove(victim).shutdown().await;
    let a = collecting.await.unwrap();
    assert!(a.error.is_none(), "{:?}", a.error);
    let (_, _, completion, receipt_id, attempts) = a.done.unwrap();
    assert_eq!(attempts, 2, "the task moved to the other miner");
    assert!(completion > 0 && a.text.len() > 20);
    assert_eq!(gw.receipts.len(), before + 1, "exactly one receipt for the task");
    let r = gw.receipts.all().into_iter().find(|r| r.id() == receipt_id).unwrap().verify().unwrap();
    assert_eq!(r.miner, miners[0].peer_id, "the receipt names the miner that finished it");

    // 50 concurrent requests, one receipt each.
    let survivors_before = gw.receipts.len();
    let mut handles = Vec::new();
    for i in 0..50 {
        let t = tasks.clone();
        handles.push(tokio::spawn(async move {
            let rx = t.submit(chat(&format!("Say the number {i}."), 3)).await.unwrap();
            collect(rx, |_, _| {}).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in handles {
        let a = h.await.unwrap();
        assert!(a.error.is_none(), "{:?}", a.error);
        ids.insert(a.done.unwrap().3);
    }
    assert_eq!(ids.len(), 50);
    assert_eq!(gw.receipts.len(), survivors_before + 50);

    for m in miners {
        m.shutdown().await;
    }
    gw.shutdown().await;
}
