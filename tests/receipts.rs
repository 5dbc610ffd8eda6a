//! No receipt is ever lost (issue 17): the gateway keeps every receipt it countersigned in its
//! outbox until a validator reports it in a final block, and re-offers the ones a validator does
//! not know; validators reconcile their pending receipts with each other.
//!
//! 1. Real `brainmesh` processes (a gateway, two miners, the only validator): 100 OpenAI requests
//!    from 8 concurrent clients while the validator and each miner are SIGKILLed and restarted.
//!    Every request is answered once, and every receipt the gateway countersigned ends in a final
//!    block exactly once — including those gossiped while the validator was dead.
//! 2. In-process peers with two validators: one is partitioned away while tasks run (no block can
//!    be final without it), then healed; every receipt ends in a final block once, on both.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brainmesh::config::LedgerSection;
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use common::*;

const MODEL: &str = "smollm2-135m-instruct";
const API_KEY: &str = "sk-receipts-test";
const ACCOUNT: &str = "acct-receipts";
const BLOCK_MS: u64 = 500;

fn ledger(min_validators: usize) -> LedgerSection {
    LedgerSection {
        min_validators,
        vote_delay_ms: 150,
        settlement_interval_blocks: 50,
        fee_split: "miner_only".into(),
        balances: [(ACCOUNT.to_string(), brainmesh_ledger::economics::tokens(1000) as u64)].into_iter().collect(),
        ..LedgerSection::default()
    }
}

/// A request's index and its receipt id (or why it failed).
type Answer = (usize, Result<String, String>);

/// One non-streamed chat completion; the receipt id the gateway returned, or the error.
fn ask(gateway: &str, i: usize) -> Result<String, String> {
    let body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": format!("Say the number {i}.")}],
        "max_tokens": 4,
    })
    .to_string();
    let mut resp = ureq::post(&format!("http://{gateway}/v1/chat/completions"))
        .config()
        .http_status_as_error(false)
        .build()
        .header("authorization", &format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .send(body.as_str())
        .map_err(|e| format!("request {i}: {e}"))?;
    if resp.status() != 200 {
        let status = resp.status();
        return Err(format!("request {i}: {status} {}", resp.body_mut().read_to_string().unwrap_or_default()));
    }
    resp.headers()
        .get("x-brainmesh-receipt-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| format!("request {i}: no receipt id header"))
}

fn metric(http: &str, name: &str) -> Option<f64> {
    let text = get_text(&format!("http://{http}/metrics"))?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn models_listed(gateway: &str) -> bool {
    let Ok(mut resp) =
        ureq::get(&format!("http://{gateway}/v1/models")).header("authorization", &format!("Bearer {API_KEY}")).call()
    else {
        return false;
    };
    resp.body_mut().read_to_string().ok().is_some_and(|t| t.contains(MODEL))
}

/// True when the gateway sees `peer` online and serving a model (restarted miners must be back
/// before the next one is killed, or requests rightly find no miner).
fn serving(gw: &Proc, peer: &str) -> bool {
    let Some(s) = gw.status() else { return false };
    s["roster"].as_array().into_iter().flatten().flat_map(|b| b["members"].as_array().into_iter().flatten()).any(|m| {
        m["peer_id"].as_str() == Some(peer)
            && m["status"].as_str() == Some("online")
            && m["serving"].as_array().is_some_and(|a| !a.is_empty())
    })
}

fn final_height(p: &Proc) -> Option<u64> {
    p.status()?["ledger"]["last_final_height"].as_u64()
}

/// Receipt id → how many times it is in a final block of the (stopped) validator in `dir`.
fn final_receipts(dir: &Path) -> BTreeMap<String, usize> {
    let v = cli(&["ledger", "receipts", "--data-dir", &dir.to_string_lossy()]);
    let mut out = BTreeMap::new();
    for r in v["receipts"].as_array().into_iter().flatten() {
        *out.entry(r["line"]["receipt_id"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    out
}

#[test]
fn every_countersigned_receipt_is_final_once_after_sigkills_of_both_miners_and_the_only_validator() {
    let model = smollm();
    assert!(model.exists(), "{} is missing: run `make setup`", model.display());
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let gw_listen = format!("127.0.0.1:{}", free_port());
    let keys = format!("{API_KEY}:{ACCOUNT}");
    let model_path = model.to_string_lossy().to_string();
    let env: Vec<(&str, &str)> = vec![
        ("BRAINMESH_GATEWAY_LISTEN", &gw_listen),
        ("BRAINMESH_GATEWAY_API_KEYS", &keys),
        ("BRAINMESH_GATEWAY_RATE_LIMIT_PER_MINUTE", "0"),
        ("BRAINMESH_MINER_MODEL", &model_path),
        ("BRAINMESH_MINER_MODEL_ID", MODEL),
        ("BRAINMESH_MINER_DEVICE", "cpu"),
        ("BRAINMESH_MINER_THREADS", "1"),
        ("BRAINMESH_AUDIT_MODEL", ""),
        ("RUST_LOG", "warn,brainmesh_actors::outbox=info,brainmesh_actors::rollup=info"),
    ];
    let section = ledger(1);
    let mut dirs = Vec::new();
    for (name, role) in [("gw", "gateway"), ("v", "validator"), ("m0", "miner"), ("m1", "miner")] {
        let dir = root.path().join(name);
        init(&dir, role);
        write_ledger_config(&dir, genesis_ms, BLOCK_MS, &section);
        dirs.push(dir);
    }
    let gw = start(&dirs[0], None, &env);
    let boot = gw.addr.clone();
    let mut val = start(&dirs[1], Some(&boot), &env);
    let mut miners = [start(&dirs[2], Some(&boot), &env), start(&dirs[3], Some(&boot), &env)];
    let log = |p: &Path| std::fs::read_to_string(p.join("node.log")).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(180), || models_listed(&gw_listen).then_some(())).is_some(),
        "the gateway never listed {MODEL}:\n{}",
        log(&dirs[0])
    );
    assert!(
        wait_for(Duration::from_secs(60), || final_height(&val)).is_some(),
        "the validator finalises no block:\n{}",
        log(&dirs[1])
    );

    // 100 requests, 8 clients.
    const N: usize = 100;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (next, done, results, gw) = (next.clone(), done.clone(), results.clone(), gw_listen.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= N {
                    return;
                }
                let r = ask(&gw, i);
                results.lock().unwrap().push((i, r));
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let reached = |n: usize| {
        let done = done.clone();
        assert!(
            wait_for(Duration::from_secs(300), || (done.load(Ordering::SeqCst) >= n).then_some(())).is_some(),
            "the load stalled before {n} answers"
        );
    };
    // The only validator dies: receipts countersigned meanwhile are gossiped to nobody who keeps
    // them. Then each miner in turn, while the load runs.
    reached(10);
    val.kill9();
    reached(30);
    val = start(&dirs[1], Some(&boot), &env);
    miners[0].kill9();
    reached(45);
    miners[0] = start(&dirs[2], Some(&boot), &env);
    let back = wait_for(Duration::from_secs(120), || serving(&gw, &miners[0].peer_id).then_some(()));
    assert!(back.is_some(), "the restarted miner never served again:\n{}", log(&dirs[2]));
    reached(60);
    miners[1].kill9();
    reached(75);
    miners[1] = start(&dirs[3], Some(&boot), &env);
    for c in clients {
        c.join().expect("client thread");
    }

    let results = results.lock().unwrap().clone();
    let failed: Vec<&Answer> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "every request is answered: {failed:?}\ngateway log:\n{}", log(&dirs[0]));
    let mut ids: Vec<String> = results.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "one receipt per request");

    // The outbox empties: every receipt is reported final by the validator.
    let pending =
        wait_for(Duration::from_secs(120), || metric(&gw.http, "brainmesh_receipts_pending").filter(|v| *v == 0.0));
    assert!(
        pending.is_some(),
        "receipts still pending at the gateway: {:?}\ngateway log:\n{}\nvalidator log:\n{}",
        metric(&gw.http, "brainmesh_receipts_pending"),
        log(&dirs[0]),
        log(&dirs[1])
    );
    val.kill9();
    let finals = final_receipts(&dirs[1]);
    let missing: Vec<&String> = ids.iter().filter(|id| !finals.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} receipts never final: {missing:?}", missing.len());
    let twice: Vec<(&String, &usize)> = finals.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "receipts counted twice: {twice:?}");
    let reoffered = metric(&gw.http, "brainmesh_receipts_reoffered_total").unwrap_or(0.0);
    assert!(reoffered > 0.0, "receipts gossiped while the validator was dead had to be offered again");
    eprintln!("{N} requests answered; {} receipts final once each; {reoffered} re-offered", ids.len());
}

// ---- two validators, one partitioned away and healed -------------------------------------------

fn block_between(a: &Node, b: &Node, blocked: bool) {
    a.net.block(b.peer_id.clone(), blocked);
    b.net.block(a.peer_id.clone(), blocked);
}

#[actix_rt::test]
async fn receipts_made_while_a_validator_is_partitioned_away_are_final_once_on_both_after_heal() {
    use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskService, TaskSpec};
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let section = ledger(2);
    let cfg = |name: &str, role: Role, boot: Vec<String>| {
        common::ledger_node_config(&root.path().join(name), role, boot, genesis_ms, BLOCK_MS, &section)
    };
    let gw = Node::start(cfg("gw", Role::Gateway, vec![])).await.unwrap();
    let boot = vec![gw.listen_addrs[0].clone()];
    let miner = Node::start(cfg("m", Role::Miner, boot.clone())).await.unwrap();
    let v0 = Node::start(cfg("v0", Role::Validator, boot.clone())).await.unwrap();
    let v1 = Node::start(cfg("v1", Role::Validator, boot.clone())).await.unwrap();
    let tasks = gw.tasks.clone().unwrap();
    let (l0, l1) = (v0.ledger.clone().unwrap(), v1.ledger.clone().unwrap());
    wait_until("both validators finalise blocks", 120, || {
        let (a, b) = (l0.summary(), l1.summary());
        let t = tasks.clone();
        async move {
            a.validators == 2
                && b.validators == 2
                && a.last_final_height.is_some()
                && b.last_final_height.is_some()
                && t.models().await.first().is_some_and(|m| m.miners == 1)
        }
    })
    .await;

    // v1 is cut off from everyone: with two equal validators nothing is final meanwhile.
    for p in [&gw, &miner, &v0] {
        block_between(p, &v1, true);
    }
    let mut ids = Vec::new();
    for i in 0..6 {
        let spec = TaskSpec {
            model: MODEL.into(),
            account: ACCOUNT.into(),
            prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: format!("Count to {i}.") }]),
            sampling: Sampling { max_tokens: 3, ..Default::default() },
        };
        let mut rx = tasks.submit(spec).await.expect("submitted");
        while let Some(ev) = rx.recv().await {
            match ev {
                brainmesh_actors::task::TaskEvent::Done { receipt_id, .. } => ids.push(receipt_id),
                brainmesh_actors::task::TaskEvent::Failed(e) => panic!("task {i} failed: {e}"),
                _ => {}
            }
        }
    }
    assert_eq!(ids.len(), 6);
    let during = l0.report().await.expect("v0 report");
    assert!(
        !during.receipts.iter().any(|(_, l)| ids.contains(&l.receipt_id)),
        "nothing is final while half the validator stake is cut off"
    );
    let stalled_at = l0.summary().last_final_height;
    for p in [&gw, &miner, &v0] {
        block_between(p, &v1, false);
    }
    let _ = v1.net.dial(gw.listen_addrs[0].clone()).await;
    let _ = v1.net.dial(v0.listen_addrs[0].clone()).await;

    let want = ids.clone();
    wait_until("every receipt final on both validators, and the gateway's outbox empty", 120, || {
        let (l0, l1, want, gwm) = (l0.clone(), l1.clone(), want.clone(), gw.metrics.clone());
        async move {
            let (Some(a), Some(b)) = (l0.report().await, l1.report().await) else { return false };
            let has = |r: &brainmesh_actors::rollup::LedgerReport| {
                want.iter().all(|id| r.receipts.iter().filter(|(_, l)| &l.receipt_id == id).count() == 1)
            };
            has(&a) && has(&b) && gwm.receipts_pending.get() == 0
        }
    })
    .await;
    let (a, b) = (l0.report().await.unwrap(), l1.report().await.unwrap());
    assert!(a.last_final_height > stalled_at, "finality resumed after the heal");
    let _ = l0.report().await;
    wait_until("both validators at the same height with the same ledger", 30, || {
        let (l0, l1) = (l0.clone(), l1.clone());
        async move {
            let (Some(a), Some(b)) = (l0.report().await, l1.report().await) else { return false };
            a.last_final_height == b.last_final_height && a.state_digest == b.state_digest
        }
    })
    .await;
    eprintln!(
        "partition: final height stalled at {stalled_at:?}; after heal {:?} / {:?}",
        a.last_final_height, b.last_final_height
    );
}
