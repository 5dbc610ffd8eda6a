//! Paid admission (issue 17): under `brain_policy.paid_admission` a miner that has not paid the
//! Brain's registration fee on the ledger is refused, with a message that says what to do, and
//! gets no task; once its `Register` transaction is final (the fee moves from its account to the
//! Brain's owner), every peer admits it and the gateway routes to it. The 50-Sybil case and the
//! deterministic order are the roster's unit test
//! (`with_paid_admission_unpaid_sybils_are_refused_clearly_and_paid_miners_admitted_by_paid_height`).

mod common;

use common::wait_until;

use brainmesh::config::LedgerSection;
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskError, TaskService, TaskSpec};
use brainmesh_actors::Identity;
use brainmesh_ledger::economics::tokens;

const BLOCK_MS: u64 = 400;

fn spec() -> TaskSpec {
    TaskSpec {
        model: "smollm2-135m-instruct".into(),
        account: "dev".into(),
        prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: "Say hi.".into() }]),
        sampling: Sampling { max_tokens: 3, ..Default::default() },
    }
}

/// The roster entry `peer` has at `node`: (admitted, refusal).
async fn entry(node: &Node, peer: &str) -> Option<(bool, Option<String>)> {
    let snap = node.membership.roster().await?;
    snap.brains
        .iter()
        .flat_map(|b| b.members.iter())
        .find(|m| m.peer_id == peer)
        .map(|m| (m.admitted, m.refused.clone()))
}

#[actix_rt::test]
async fn an_unpaid_miner_is_refused_clearly_and_admitted_everywhere_once_its_paid_registration_is_final() {
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let miner_dir = root.path().join("m");
    let miner_id = Identity::load_or_create(&miner_dir).unwrap();
    let miner_peer = miner_id.peer_id().to_string();
    let funds = tokens(150);
    let section = LedgerSection {
        min_validators: 1,
        vote_delay_ms: 120,
        settlement_interval_blocks: 1000,
        balances: [(miner_peer.clone(), funds as u64), ("dev".to_string(), tokens(5) as u64)].into_iter().collect(),
        ..LedgerSection::default()
    };
    let cfg = |dir: std::path::PathBuf, role: Role, boot: Vec<String>| {
        let mut c = common::ledger_node_config(&dir, role, boot, genesis_ms, BLOCK_MS, &section);
        c.brain_policy.paid_admission = true;
        c
    };
    let gw = Node::start(cfg(root.path().join("gw"), Role::Gateway, vec![])).await.unwrap();
    let boot = vec![gw.listen_addrs[0].clone()];
    let val = Node::start(cfg(root.path().join("v"), Role::Validator, boot.clone())).await.unwrap();
    let miner = Node::start(cfg(miner_dir.clone(), Role::Miner, boot.clone())).await.unwrap();
    let ledger = val.ledger.clone().unwrap();
    let tasks = gw.tasks.clone().unwrap();

    // Unpaid: refused at the gateway and the validator, with the command to run; no task for it.
    for (name, node) in [("gateway", &gw), ("validator", &val)] {
        wait_until(&format!("the {name} refuses the unpaid miner"), 60, || async {
            entry(node, &miner_peer).await.is_some_and(|(admitted, why)| {
                !admitted && why.is_some_and(|w| w.contains("not registered on the ledger"))
            })
        })
        .await;
    }
    let (_, why) = entry(&gw, &miner_peer).await.unwrap();
    assert!(why.as_deref().unwrap_or_default().contains("brainmesh register --brain"), "{why:?}");
    assert!(matches!(tasks.submit(spec()).await, Err(TaskError::NoMiner(_))), "no task reaches an unpaid miner");
    let own = miner.membership.roster().await.unwrap().registration;
    assert!(own.starts_with("refused:") && own.contains("not registered on the ledger"), "{own}");

    // The miner pays with `brainmesh register` (its own key, through the validator's HTTP API).
    let brain = gw.membership.roster().await.unwrap().brain;
    let val_http = val.http_addr.expect("validator HTTP").to_string();
    let args: Vec<String> = vec![
        "register".into(),
        "--data-dir".into(),
        miner_dir.to_string_lossy().into(),
        "--brain".into(),
        brain.to_string(),
        "--role".into(),
        "miner".into(),
        "--max-fee".into(),
        tokens(100).to_string(),
        "--node".into(),
        val_http,
    ];
    let out = common::cli_async(args).await;
    assert_eq!(out["from"].as_str(), Some(miner_peer.as_str()), "{out}");
    assert!(out["kind"]["Register"].is_object(), "{out}");
    wait_until("every peer admits the paid miner and the gateway lists it", 60, || async {
        let on_gw = entry(&gw, &miner_peer).await.is_some_and(|(a, _)| a);
        let on_val = entry(&val, &miner_peer).await.is_some_and(|(a, _)| a);
        on_gw && on_val && tasks.models().await.first().is_some_and(|m| m.miners == 1)
    })
    .await;
    assert_eq!(common::serving_miner(&tasks, spec()).await.as_deref(), Some(miner_peer.as_str()));
    assert_eq!(miner.membership.roster().await.unwrap().registration, "admitted");

    // The fee left the miner's account for the Brain owner's; nothing else moved.
    let report = ledger.report().await.unwrap();
    let paid = funds - report.balances.get(&miner_peer).copied().unwrap_or(0);
    assert_eq!(paid, tokens(100), "the Brain's registration fee (the whitepaper's default, 100 tokens) was charged");
    assert!(report.supply_conserved);
}
