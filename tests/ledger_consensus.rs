//! Weights to emission, and catch-up, on a real loopback mesh (issue 7). Three validators with
//! ledger stake 40/40/20 (two in-process that audit every receipt with the real SmolLM2 weights,
//! one the real binary so it can be SIGKILLed), two miners, a gateway; tasks run all along.
//!
//! - The auditing validators' weight vectors reach the ledger as CommitWeights / RevealWeights
//!   transactions; settlement runs the consensus epoch over them and mints the period's emission
//!   by it: miners that served get incentive, validators dividends, and minted equals what was
//!   credited.
//! - With the 20% validator SIGKILLed, 80% of stake still finalises blocks (more than 2/3); a
//!   transfer submitted with `brainmesh ledger transfer` lands while it is down. Restarted, it
//!   fetches the blocks it missed (certificates checked) and reaches the same state digest at the
//!   same height as the others.
//! - `POST /ledger/tx` answers 202 / 400 / 409 / 413 for valid, forged or malformed, replayed and
//!   oversized transactions.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use brainmesh::config::{LedgerSection, NodeConfig};
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskService, TaskSpec};
use brainmesh_actors::Identity;
use brainmesh_ledger::economics::tokens;
use brainmesh_ledger::tx::{Tx, TxKind};
use common::{blocking, cli, smollm, taken, wait_until};

const BLOCK_MS: u64 = 400;
/// Three weight epochs per settlement period.
const EPOCH_BLOCKS: u64 = 8;
const SETTLE_BLOCKS: u64 = 24;

fn config(dir: &Path, role: Role, bootstrap: Vec<String>, genesis_ms: u64, ledger: &LedgerSection) -> NodeConfig {
    let mut cfg = common::ledger_node_config(dir, role, bootstrap, genesis_ms, BLOCK_MS, ledger);
    cfg.audit.epoch_blocks = EPOCH_BLOCKS;
    cfg.audit.reveal_delay_blocks = 2;
    cfg.audit.threads = 1;
    cfg.audit.quality_every_blocks = 0;
    cfg
}

/// One task; Some(miner) when it completed.
async fn ask(tasks: &brainmesh_actors::DistributorHandle, i: usize) -> Option<String> {
    let spec = TaskSpec {
        model: "smollm2-135m-instruct".into(),
        account: "dev".into(),
        prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: format!("Name colour number {i}.") }]),
        sampling: Sampling { max_tokens: 6, ..Default::default() },
    };
    common::serving_miner(tasks, spec).await
}

fn step(what: &str) {
    eprintln!("[ledger_consensus {}] {what}", brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock));
}

/// (last final height, state digest) from a binary node's /status.
fn binary_ledger(http: &str) -> Option<(u64, String)> {
    let l = common::get_json(&format!("http://{http}/status"))?["ledger"].clone();
    Some((l["last_final_height"].as_u64()?, l["state_digest"].as_str()?.to_string()))
}

/// `POST /ledger/tx` from a blocking thread (the node answers on this test's actix thread).
async fn post_tx(http: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let url = format!("http://{http}/ledger/tx");
    blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut resp = agent.post(&url).header("content-type", "application/json").send(body).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    })
    .await
}

#[actix_rt::test]
async fn revealed_weights_drive_emission_and_a_killed_validator_catches_up_on_the_blocks_it_missed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let dir = |n: &str| root.path().join(n);

    // Identities first: the genesis names the validators' stakes and the payer's balance.
    let v0_id = Identity::load_or_create(&dir("v0")).unwrap().peer_id().to_string();
    let v1_id = Identity::load_or_create(&dir("v1")).unwrap().peer_id().to_string();
    common::init(&dir("v2"), "validator");
    let v2_id = Identity::load_or_create(&dir("v2")).unwrap().peer_id().to_string();
    let payer_dir = dir("payer");
    let payer = Identity::load_or_create(&payer_dir).unwrap();
    let payer_id = payer.peer_id().to_string();
    let stakes = [(v0_id.clone(), tokens(40)), (v1_id.clone(), tokens(40)), (v2_id.clone(), tokens(20))];
    let ledger = LedgerSection {
        min_validators: 2,
        vote_delay_ms: 150,
        settlement_interval_blocks: SETTLE_BLOCKS,
        fee_split: "miner_only".into(),
        balances: [("dev".to_string(), tokens(10) as u64), (payer_id.clone(), tokens(5) as u64)].into_iter().collect(),
        validator_stakes: stakes.iter().map(|(k, v)| (k.clone(), *v as u64)).collect(),
        ..LedgerSection::default()
    };

    let gw = Node::start(config(&dir("gw"), Role::Gateway, vec![], genesis_ms, &ledger)).await.unwrap();
    let boot = gw.listen_addrs[0].clone();
    let mut vals = Vec::new();
    for n in ["v0", "v1"] {
        let mut cfg = config(&dir(n), Role::Validator, vec![boot.clone()], genesis_ms, &ledger);
        cfg.audit.model = smollm();
        cfg.audit.rate = 1.0;
        vals.push(Node::start(cfg).await.unwrap());
    }
    assert_eq!((vals[0].peer_id.as_str(), vals[1].peer_id.as_str()), (v0_id.as_str(), v1_id.as_str()));
    // The binary validator audits nothing (no model): 20% of stake, no weights of its own.
    let v2_dir = dir("v2");
    common::write_ledger_config(&v2_dir, genesis_ms, BLOCK_MS, &ledger);
    common::patch_config(
        &v2_dir,
        "audit",
        &[
            ("epoch_blocks", toml::Value::Integer(EPOCH_BLOCKS as i64)),
            ("reveal_delay_blocks", toml::Value::Integer(2)),
        ],
    );
    let start_v2 = {
        let (dir, boot) = (v2_dir.clone(), boot.clone());
        move || {
            common::start(
                &dir,
                Some(&boot),
                &[("BRAINMESH_AUDIT_MODEL", ""), ("RUST_LOG", "warn,brainmesh_actors::rollup=info")],
            )
        }
    };
    let mut v2 = blocking(start_v2.clone()).await;
    assert_eq!(v2.peer_id, v2_id);
    let mut miners = Vec::new();
    for n in ["m0", "m1"] {
        miners.push(Node::start(config(&dir(n), Role::Miner, vec![boot.clone()], genesis_ms, &ledger)).await.unwrap());
    }
    let miner_ids: Vec<String> = miners.iter().map(|m| m.peer_id.clone()).collect();
    let tasks = gw.tasks.clone().unwrap();
    step("all peers started");
    wait_until("two miners advertised", 120, || async { tasks.models().await.first().is_some_and(|m| m.miners == 2) })
        .await;
    let (l0, l1) = (vals[0].ledger.clone().unwrap(), vals[1].ledger.clone().unwrap());
    wait_until("blocks finalise with three validators", 60, || {
        let s = l0.summary();
        async move { s.validators == 3 && s.last_final_height.is_some() }
    })
    .await;

    // Tasks all along, from a background loop.
    step("blocks finalise");
    let served = Rc::new(Cell::new(0usize));
    let stop = Rc::new(Cell::new(false));
    let worker = {
        let (tasks, served, stop) = (tasks.clone(), served.clone(), stop.clone());
        actix_rt::spawn(async move {
            let mut i = 0;
            while !stop.get() {
                if ask(&tasks, i).await.is_some() {
                    served.set(served.get() + 1);
                }
                i += 1;
            }
        })
    };
    wait_until("tasks served", 120, || {
        let n = served.get();
        async move { n >= 2 }
    })
    .await;

    // SIGKILL the 20% validator while batches are being built; 80% keeps finalising.
    step("tasks served");
    blocking({
        let mut p = std::mem::replace(&mut v2, taken(&v2_dir));
        move || p.kill9()
    })
    .await;
    let at_kill = l0.summary().last_final_height.unwrap_or(0);
    wait_until("blocks finalise without the killed validator", 60, || {
        let s = l0.summary();
        async move { s.last_final_height.unwrap_or(0) >= at_kill + 6 }
    })
    .await;

    // A transfer through the CLI while it is down; then the HTTP refusals.
    step("finalising without v2");
    let v0_http = vals[0].http_addr.expect("v0 serves HTTP").to_string();
    let payer_s = payer_dir.to_string_lossy().to_string();
    // The CLI talks to this process's node: off the actix thread, or the node cannot answer.
    let sent = blocking({
        let (d, h) = (payer_s.clone(), v0_http.clone());
        move || {
            cli(&[
                "ledger",
                "transfer",
                "--data-dir",
                &d,
                "--node",
                &h,
                "--to",
                "carol",
                "--amount",
                &tokens(1).to_string(),
            ])
        }
    })
    .await;
    assert_eq!(sent["nonce"], 1, "{sent}");
    wait_until("the CLI's transfer is applied", 60, || {
        let l0 = l0.clone();
        async move { l0.report().await.is_some_and(|r| r.balances.get("carol") == Some(&tokens(1))) }
    })
    .await;
    let replay =
        Tx::new_signed(&payer_id, 1, TxKind::Transfer { to: "mallory".into(), amount: tokens(2) }, &|m| payer.sign(m));
    let (code, body) = post_tx(&v0_http, serde_json::to_vec(&replay).unwrap()).await;
    assert_eq!(code, 409, "a used nonce is a replay: {body}");
    let forger = Identity::generate();
    let forged =
        Tx::new_signed(&payer_id, 2, TxKind::Transfer { to: "mallory".into(), amount: tokens(2) }, &|m| forger.sign(m));
    let (code, body) = post_tx(&v0_http, serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(code, 400, "a forged signature is refused: {body}");
    let (code, _) = post_tx(&v0_http, b"{\"from\": 3}".to_vec()).await;
    assert_eq!(code, 400, "malformed JSON is refused");
    let (code, _) = post_tx(&v0_http, vec![b' '; brainmesh_actors::protocols::MAX_MESSAGE_BYTES + 1]).await;
    assert_eq!(code, 413, "an oversized body is refused");
    // The payer's next transaction (nonce 2) from the CLI, nonce asked from the node.
    let brain = vals[0].status().await.brain.to_string();
    let sent = blocking({
        let (d, h, v) = (payer_s.clone(), v0_http.clone(), v0_id.clone());
        move || {
            cli(&[
                "ledger",
                "stake",
                "--data-dir",
                &d,
                "--node",
                &h,
                "--brain",
                &brain,
                "--validator",
                &v,
                "--amount",
                &tokens(1).to_string(),
            ])
        }
    })
    .await;
    assert_eq!(sent["nonce"], 2, "{sent}");

    // Restart: the validator fetches the blocks it missed and reaches the others' state.
    step("transactions checked");
    let missed_to = l0.summary().last_final_height.unwrap_or(0);
    v2 = blocking(start_v2.clone()).await;
    let caught_up = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            assert!(tokio::time::Instant::now() < deadline, "the restarted validator did not catch up");
            let s0 = l0.summary();
            let s2 = blocking({
                let http = v2.http.clone();
                move || binary_ledger(&http)
            })
            .await;
            if let (Some(h0), Some((h2, d2))) = (s0.last_final_height, s2) {
                if h2 > missed_to && h0 == h2 && l0.summary().last_final_height == Some(h0) {
                    assert_eq!(d2, s0.state_digest, "same height, same state digest on the restarted validator");
                    break h2;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let metrics = blocking({
        let http = v2.http.clone();
        move || common::get_text(&format!("http://{http}/metrics")).unwrap_or_default()
    })
    .await;
    let catchup: u64 = metrics
        .lines()
        .find(|l| l.contains("kind=\"ledger_catchup_block\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(catchup >= 1, "the restarted validator applied fetched blocks: {catchup}\n{metrics}");
    println!(
        "restarted validator caught up at height {caught_up} (missed up to {missed_to}; {catchup} blocks fetched)"
    );

    // Emission by the consensus of the revealed weights.
    step("caught up");
    wait_until("a settlement minted emission by consensus", 240, || {
        let l0 = l0.clone();
        async move {
            l0.report().await.is_some_and(|r| r.settlements.iter().any(|s| s.minted > 0 && !s.consensus.is_empty()))
        }
    })
    .await;
    stop.set(true);
    let r0 = l0.report().await.unwrap();
    assert!(r0.supply_conserved);
    let s = r0.settlements.iter().find(|s| s.minted > 0 && !s.consensus.is_empty()).unwrap();
    println!(
        "settlement {}..{}: minted {} of {}; consensus {:?}",
        s.from_height, s.to_height, s.minted, s.issuance, s.consensus
    );
    let credited: u128 = s.emission_credits.values().sum();
    assert_eq!(credited, s.minted, "minted equals what was credited");
    let period = &s.consensus[0];
    let paid_miners: Vec<&String> =
        period.miners.iter().zip(&period.incentive).filter(|(_, i)| **i > 0).map(|(m, _)| m).collect();
    assert!(
        !paid_miners.is_empty() && paid_miners.iter().all(|m| miner_ids.contains(m)),
        "incentive goes to the miners that served: {period:?}"
    );
    for m in &paid_miners {
        assert!(s.emission_credits.get(*m).copied().unwrap_or(0) > 0, "miner {m} credited emission");
    }
    let dividends = |v: &str| period.validators.iter().position(|x| x == v).map(|i| period.dividends[i]).unwrap_or(0);
    assert!(dividends(&v0_id) > 0 || dividends(&v1_id) > 0, "the auditing validators earn dividends: {period:?}");
    assert_eq!(dividends(&v2_id), 0, "a validator that revealed no weights earns no dividends: {period:?}");
    assert!(
        [&v0_id, &v1_id].iter().any(|v| r0.nonces.get(*v).copied().unwrap_or(0) >= 2),
        "the auditing validators' commit and reveal transactions were applied: {:?}",
        r0.nonces
    );

    // The in-process validators agree, and the restarted one kept up.
    step("emission checked");
    let (a, b) = loop {
        let (a, b) = (l0.report().await.unwrap(), l1.report().await.unwrap());
        if a.last_final_height == b.last_final_height {
            break (a, b);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(a.state_digest, b.state_digest);
    assert_eq!(a.settlements, b.settlements);
    let _ = worker.await;
    blocking({
        let mut p = std::mem::replace(&mut v2, taken(&v2_dir));
        move || p.kill9()
    })
    .await;
    for m in miners {
        m.shutdown().await;
    }
    for v in vals {
        v.shutdown().await;
    }
    gw.shutdown().await;
}
