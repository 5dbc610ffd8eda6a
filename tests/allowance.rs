//! Spending the account holder authorised (issue 17): an account signs an allowance for one
//! gateway (`brainmesh account authorize`: a cap and an expiry, on the ledger). Settlement then
//! charges it only for receipts that gateway countersigned, within the cap — the rest are refused
//! and counted — and a gateway it did not authorise refuses its requests up front (402) instead
//! of serving them for free. `brainmesh account revoke` withdraws the allowance.

mod common;

use brainmesh::config::LedgerSection;
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskError, TaskEvent, TaskService, TaskSpec};
use brainmesh_actors::{DistributorHandle, Identity};
use brainmesh_ledger::economics::tokens;
use common::wait_until;

const BLOCK_MS: u64 = 400;

fn spec(account: &str) -> TaskSpec {
    TaskSpec {
        model: "smollm2-135m-instruct".into(),
        account: account.into(),
        prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: "Name a colour.".into() }]),
        sampling: Sampling { max_tokens: 3, ..Default::default() },
    }
}

/// Runs a task; its (prompt, completion) tokens, or the error.
async fn run(tasks: &DistributorHandle, account: &str) -> Result<(u32, u32), TaskError> {
    let mut rx = tasks.submit(spec(account)).await?;
    while let Some(ev) = rx.recv().await {
        match ev {
            TaskEvent::Done { usage, .. } => return Ok((usage.prompt_tokens, usage.completion_tokens)),
            TaskEvent::Failed(e) => return Err(e),
            _ => {}
        }
    }
    Err(TaskError::Exhausted("no result".into()))
}

#[actix_rt::test]
async fn an_account_pays_only_the_gateway_it_authorised_within_the_cap_and_others_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let alice_dir = root.path().join("alice");
    let alice = Identity::load_or_create(&alice_dir).unwrap().peer_id().to_string();
    let section = LedgerSection {
        min_validators: 1,
        vote_delay_ms: 120,
        settlement_interval_blocks: 10,
        fee_split: "miner_only".into(),
        balances: [(alice.clone(), tokens(10) as u64), ("probe".to_string(), tokens(10) as u64)].into_iter().collect(),
        ..LedgerSection::default()
    };
    let cfg = |name: &str, role: Role, boot: Vec<String>| {
        common::ledger_node_config(&root.path().join(name), role, boot, genesis_ms, BLOCK_MS, &section)
    };
    let gw = Node::start(cfg("gw", Role::Gateway, vec![])).await.unwrap();
    let boot = vec![gw.listen_addrs[0].clone()];
    let val = Node::start(cfg("v", Role::Validator, boot.clone())).await.unwrap();
    let _miner = Node::start(cfg("m", Role::Miner, boot.clone())).await.unwrap();
    let gw2 = Node::start(cfg("gw2", Role::Gateway, boot.clone())).await.unwrap();
    let (tasks, tasks2) = (gw.tasks.clone().unwrap(), gw2.tasks.clone().unwrap());
    let ledger = val.ledger.clone().unwrap();
    let node = val.http_addr.unwrap().to_string();
    wait_until("both gateways see the miner and the validator finalises", 120, || async {
        tasks.models().await.first().is_some_and(|m| m.miners == 1)
            && tasks2.models().await.first().is_some_and(|m| m.miners == 1)
            && ledger.summary().last_final_height.is_some()
    })
    .await;

    // One task's price, from an account that authorised nobody (it pays through any gateway).
    let (p, c) = run(&tasks, "probe").await.expect("an open account is served");
    let price = (u128::from(p) * 100_000 + u128::from(c) * 200_000) / 1000;
    assert!(price > 0);

    // Alice lets gateway 1 spend two and a half tasks' worth.
    let cap = price * 5 / 2;
    let out = common::cli_signed(
        &["account", "authorize", "--gateway", &gw.peer_id, "--cap", &cap.to_string(), "--expires-at", "1000000"],
        &alice_dir,
        &node,
    )
    .await;
    assert_eq!(out["from"].as_str(), Some(alice.as_str()), "{out}");
    let acc = alice.clone();
    wait_until("the allowance is on the ledger", 30, || {
        let (l, a) = (ledger.clone(), acc.clone());
        async move { l.account(a).await.is_some_and(|v| v.allowances.len() == 1) }
    })
    .await;

    // Gateway 2 was not authorised: it refuses alice's request with what to do.
    match run(&tasks2, &alice).await {
        Err(TaskError::NotAuthorized(why)) => {
            assert!(why.contains("has not authorised this gateway") && why.contains(&gw2.peer_id), "{why}")
        }
        other => panic!("an unauthorised gateway must refuse: {other:?}"),
    }

    // Gateway 1 serves four tasks (its check sees the settled spend, none yet); settlement
    // charges two and refuses the two over the cap.
    for _ in 0..4 {
        assert_eq!(run(&tasks, &alice).await.expect("authorised gateway serves"), (p, c));
    }
    let acc = alice.clone();
    wait_until("alice's four receipts are settled: two charged, two refused", 60, || {
        let (l, a) = (ledger.clone(), acc.clone());
        async move {
            l.account(a).await.is_some_and(|v| v.allowances.first().is_some_and(|x| x.2 == (price * 2).to_string()))
        }
    })
    .await;
    let report = ledger.report().await.unwrap();
    let debited: u128 = report.settlements.iter().filter_map(|s| s.debits.get(&alice)).sum();
    assert_eq!(debited, price * 2, "alice paid two tasks, no more than her cap");
    let over: Vec<&str> = report
        .settlements
        .iter()
        .flat_map(|s| s.rejected.iter())
        .filter(|r| r.reason.contains("over the cap") && r.reason.contains(&alice))
        .map(|r| r.receipt_id.as_str())
        .collect();
    assert_eq!(over.len(), 2, "the two receipts over the cap are refused: {:?}", report.settlements);
    assert!(val.metrics.task_events("receipt_refused_at_settlement") >= 2, "refusals are counted");
    assert_eq!(report.balances.get(&alice).copied(), Some(tokens(10) - price * 2));

    // Alice revokes: gateway 1 refuses her next request (once its cached answer is 2 blocks old).
    common::cli_signed(&["account", "revoke", "--gateway", &gw.peer_id], &alice_dir, &node).await;
    let t = tasks.clone();
    let a = alice.clone();
    wait_until("gateway 1 refuses alice after the revocation", 30, || {
        let (t, a) = (t.clone(), a.clone());
        async move { matches!(run(&t, &a).await, Err(TaskError::NotAuthorized(_))) }
    })
    .await;
}
