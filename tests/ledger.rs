//! The rollup ledger on a real loopback mesh (issue 7): three validators (two in-process, one the
//! real binary so it can be SIGKILLed), three miners with the real SmolLM2 weights, a gateway.
//! Tasks run, batches finalise with all three validators' signatures (equal stake: two of three is
//! exactly 2/3, not more), the SIGKILLed validator comes back and ends with the same ledger,
//! settlement totals equal the receipts' prices exactly, forged and replayed transactions are
//! refused and counted, and `brainmesh ledger verify` checks a receipt's proofs.

mod common;

use common::{blocking, cli, taken, wait_until};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use brainmesh::config::{LedgerSection, NodeConfig};
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::{Role, TopicKind};
use brainmesh_actors::protocols::Reject;
use brainmesh_actors::rollup::{LedgerReport, RollupMsg};
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskEvent, TaskService, TaskSpec};
use brainmesh_actors::Identity;
use brainmesh_ledger::economics::{tokens, ModelPrice, PriceList};
use brainmesh_ledger::tx::{Tx, TxKind};

const BLOCK_MS: u64 = 400;
const SETTLE_BLOCKS: u64 = 25;

fn ledger_section(balances: &[(&str, u64)]) -> LedgerSection {
    LedgerSection {
        min_validators: 3,
        vote_delay_ms: 150,
        settlement_interval_blocks: SETTLE_BLOCKS,
        fee_split: "miner_only".into(),
        balances: balances.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ..LedgerSection::default()
    }
}

fn config(dir: &Path, role: Role, bootstrap: Vec<String>, genesis_ms: u64, ledger: &LedgerSection) -> NodeConfig {
    common::ledger_node_config(dir, role, bootstrap, genesis_ms, BLOCK_MS, ledger)
}

async fn run_task(tasks: &brainmesh_actors::DistributorHandle, i: usize) -> String {
    let spec = TaskSpec {
        model: "smollm2-135m-instruct".into(),
        account: "dev".into(),
        prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: format!("Say the number {i}.") }]),
        sampling: Sampling { max_tokens: 4, ..Default::default() },
    };
    let mut rx = tasks.submit(spec).await.unwrap();
    while let Some(ev) = rx.recv().await {
        match ev {
            TaskEvent::Done { receipt_id, .. } => return receipt_id,
            TaskEvent::Failed(e) => panic!("task {i} failed: {e}"),
            _ => {}
        }
    }
    panic!("task {i} ended without a result");
}

fn status_ledger(p: &common::Proc) -> Option<serde_json::Value> {
    p.status().map(|s| s["ledger"].clone())
}

#[actix_rt::test]
async fn validators_batch_finalise_survive_sigkill_settle_exactly_and_refuse_bad_transactions() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let payer = Identity::generate();
    let payer_id = payer.peer_id().to_string();
    let ledger = ledger_section(&[("dev", tokens(10) as u64), (payer_id.as_str(), tokens(5) as u64)]);

    let gw = Node::start(config(&root.path().join("gw"), Role::Gateway, vec![], genesis_ms, &ledger)).await.unwrap();
    let boot = gw.listen_addrs[0].clone();
    let mut vals = Vec::new();
    for i in 0..2 {
        let dir = root.path().join(format!("v{i}"));
        vals.push(Node::start(config(&dir, Role::Validator, vec![boot.clone()], genesis_ms, &ledger)).await.unwrap());
    }
    // The third validator is the real binary, so that it can be SIGKILLed.
    let v2_dir = root.path().join("v2");
    common::init(&v2_dir, "validator");
    common::write_ledger_config(&v2_dir, genesis_ms, BLOCK_MS, &ledger);
    let env: Vec<(String, String)> = vec![
        ("BRAINMESH_AUDIT_MODEL".into(), String::new()),
        ("RUST_LOG".into(), "warn,brainmesh_actors::rollup=info".into()),
    ];
    let start_v2 = {
        let (dir, boot, env) = (v2_dir.clone(), boot.clone(), env.clone());
        move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            common::start(&dir, Some(&boot), &env)
        }
    };
    let mut v2 = blocking(start_v2.clone()).await;
    let mut miners = Vec::new();
    for i in 0..3 {
        miners.push(
            Node::start(config(
                &root.path().join(format!("m{i}")),
                Role::Miner,
                vec![boot.clone()],
                genesis_ms,
                &ledger,
            ))
            .await
            .unwrap(),
        );
    }
    let tasks = gw.tasks.clone().unwrap();
    wait_until("three miners advertised", 120, || async {
        tasks.models().await.first().is_some_and(|m| m.miners == 3)
    })
    .await;
    let l0 = vals[0].ledger.clone().expect("validators keep a ledger");
    let l1 = vals[1].ledger.clone().unwrap();
    assert!(gw.ledger.is_none() && miners[0].ledger.is_none(), "only validators keep the ledger");
    wait_until("blocks finalise with three validators", 60, || {
        let (a, b) = (l0.summary(), l1.summary());
        async move {
            a.validators == 3 && b.validators == 3 && a.last_final_height.is_some() && b.last_final_height.is_some()
        }
    })
    .await;

    // Tasks, then SIGKILL the binary validator while their receipts are being batched.
    let mut receipt_ids = Vec::new();
    for i in 0..3 {
        receipt_ids.push(run_task(&tasks, i).await);
    }
    tokio::time::sleep(Duration::from_millis(BLOCK_MS / 2)).await;
    blocking({
        let mut p = std::mem::replace(&mut v2, taken(&v2_dir));
        move || {
            p.kill9();
        }
    })
    .await;
    // While it is down two of three validators are exactly 2/3 of stake: nothing finalises, and
    // receipts wait.
    for i in 3..5 {
        receipt_ids.push(run_task(&tasks, i).await);
    }
    let frozen = l0.summary().last_final_height;
    tokio::time::sleep(Duration::from_millis(BLOCK_MS * 4)).await;
    let later = l0.summary().last_final_height;
    assert!(
        later <= frozen.map(|h| h + 1),
        "no block may finalise without the third validator: {frozen:?} -> {later:?}"
    );

    v2 = blocking(start_v2.clone()).await;
    let receipt_set: std::collections::BTreeSet<String> = receipt_ids.iter().cloned().collect();
    wait_until("every receipt in a final block on both in-process validators", 120, || {
        let (l0, l1, want) = (l0.clone(), l1.clone(), receipt_set.clone());
        async move {
            let has = |r: Option<LedgerReport>| {
                r.is_some_and(|r| want.iter().all(|id| r.receipts.iter().any(|(_, l)| &l.receipt_id == id)))
            };
            has(l0.report().await) && has(l1.report().await)
        }
    })
    .await;

    // Transactions: one valid transfer, a forged one, and replays of the valid one.
    let topic = TopicKind::Rollup.topic(gw_brain(&gw).await);
    let transfer =
        Tx::new_signed(&payer_id, 1, TxKind::Transfer { to: "carol".into(), amount: tokens(1) }, &|m| payer.sign(m));
    gw.net.publish(topic.clone(), RollupMsg::Tx { tx: transfer.clone(), sent_ms: 1 }.to_bytes());
    let forger = Identity::generate();
    let forged =
        Tx::new_signed(&payer_id, 2, TxKind::Transfer { to: "mallory".into(), amount: tokens(4) }, &|m| forger.sign(m));
    gw.net.publish(topic.clone(), RollupMsg::Tx { tx: forged, sent_ms: 2 }.to_bytes());
    wait_until("the transfer is applied", 60, || {
        let l0 = l0.clone();
        async move { l0.report().await.is_some_and(|r| r.balances.get("carol") == Some(&tokens(1))) }
    })
    .await;
    gw.net.publish(topic.clone(), RollupMsg::Tx { tx: transfer.clone(), sent_ms: 3 }.to_bytes());
    let double =
        Tx::new_signed(&payer_id, 1, TxKind::Transfer { to: "mallory".into(), amount: tokens(2) }, &|m| payer.sign(m));
    gw.net.publish(topic.clone(), RollupMsg::Tx { tx: double, sent_ms: 4 }.to_bytes());
    let m0 = vals[0].metrics.clone();
    wait_until("forged and replayed transactions counted", 30, || {
        let m0 = m0.clone();
        async move { m0.task_events("ledger_tx_forged") >= 1 && m0.task_events("ledger_tx_replayed") >= 2 }
    })
    .await;
    assert!(vals[0].metrics.rejected_count(Reject::BadSignature) >= 1);
    assert!(vals[0].metrics.rejected_count(Reject::Replay) >= 2);

    // Settlement covering every receipt; totals equal the receipts' prices exactly.
    wait_until("a settlement covers every receipt", 120, || {
        let l0 = l0.clone();
        async move {
            l0.report().await.is_some_and(|r| {
                let settled = r.last_settled.unwrap_or(0);
                r.receipts.len() == 5 && r.receipts.iter().all(|(h, _)| *h < settled)
            })
        }
    })
    .await;
    let r0 = l0.report().await.unwrap();
    let prices = PriceList { models: vec![ModelPrice::new("smollm2-135m-instruct", 100_000, 200_000, 8_192)] };
    let expected: u128 =
        r0.receipts.iter().map(|(_, l)| prices.cost(&l.model, l.prompt_units, l.completion_units).unwrap()).sum();
    let debits: u128 = r0.settlements.iter().map(|s| s.total_debits()).sum();
    let credits: u128 = r0.settlements.iter().map(|s| s.total_fee_credits()).sum();
    let counted: u64 = r0.settlements.iter().map(|s| s.receipt_count).sum();
    assert_eq!(counted, 5, "each receipt settled exactly once");
    assert!(expected > 0);
    assert_eq!(debits, expected, "debits equal the receipts' prices");
    assert_eq!(credits, expected, "fees credited equal fees collected");
    assert_eq!(r0.balances.get("dev").copied().unwrap_or(0), tokens(10) - expected);
    assert_eq!(r0.balances.get(&payer_id).copied(), Some(tokens(4)));
    assert!(!r0.balances.contains_key("mallory"));
    assert!(r0.supply_conserved);
    let per_miner: u128 = miners.iter().map(|m| r0.balances.get(&m.peer_id).copied().unwrap_or(0)).sum();
    assert_eq!(per_miner, expected, "miner_only: the miners got exactly what the receipts paid");

    // Every validator ends with the same ledger, the SIGKILLed one included.
    let (ra, rb) = loop {
        let (a, b) = (l0.report().await.unwrap(), l1.report().await.unwrap());
        if a.last_final_height == b.last_final_height {
            break (a, b);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ra.state_digest, rb.state_digest);
    assert_eq!(ra.receipts, rb.receipts);
    assert_eq!(ra.settlements, rb.settlements);
    let want_settled = ra.last_settled.unwrap_or(0);
    let v2_settled = blocking({
        let v2 = std::mem::replace(&mut v2, taken(&v2_dir));
        move || {
            let settled = common::wait_for(Duration::from_secs(30), || {
                status_ledger(&v2).and_then(|l| l["last_settled"].as_u64()).filter(|s| *s >= want_settled)
            });
            if let Some(m) = common::get_text(&format!("http://{}/metrics", v2.http)) {
                for l in m.lines().filter(|l| l.contains("kind=\"ledger_")) {
                    eprintln!("restarted validator: {l}");
                }
            }
            let mut v2 = v2;
            v2.kill9();
            settled
        }
    })
    .await;
    assert!(v2_settled.is_some(), "the restarted validator settled too");
    let dir = v2_dir.to_string_lossy().to_string();
    let r2: LedgerReport = serde_json::from_value(cli(&["ledger", "report", "--data-dir", &dir])).unwrap();
    let r0 = l0.report().await.unwrap();
    assert_eq!(r2.state_digest, r0.state_digest, "the SIGKILLed validator's ledger matches");
    assert_eq!(r2.receipts, r0.receipts);
    assert_eq!(r2.balances, r0.balances);
    let n = r2.settlements.len().min(r0.settlements.len());
    assert_eq!(r2.settlements[..n], r0.settlements[..n]);
    assert!(r2.settlements[n..].iter().chain(&r0.settlements[n..]).all(|s| s.receipt_count == 0));

    // The CLI: balances, settlements, and a receipt's inclusion proofs.
    let b = cli(&["ledger", "balance", "--data-dir", &dir, "dev"]);
    assert_eq!(b["balance"].as_str().unwrap(), (tokens(10) - expected).to_string());
    let s = cli(&["ledger", "settlement", "--data-dir", &dir, "--all"]);
    assert!(s.as_array().is_some_and(|a| !a.is_empty()));
    let v = cli(&["ledger", "verify", "--data-dir", &dir, &receipt_ids[4]]);
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["block"]["signatures_ok"], true);
    assert_eq!(v["settlement"]["ok"], true);
    let bad = Command::new(common::BIN)
        .args(["ledger", "verify", "--data-dir", &dir, "00112233445566778899aabbccddeeff"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    for m in miners {
        m.shutdown().await;
    }
    for v in vals {
        v.shutdown().await;
    }
    gw.shutdown().await;
}

async fn gw_brain(gw: &Node) -> u16 {
    gw.status().await.brain
}
