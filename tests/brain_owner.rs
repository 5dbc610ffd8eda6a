//! A Brain's owner against a running validator (issue 17): `brainmesh brain create` burns the
//! burn price for a new Brain, `set-fee` and `set-split` change it, a peer that is not the owner
//! cannot, `brainmesh register` pays the new fee to the owner, and `show` / `income` read it all
//! back over HTTP. Every write is a signed transaction through the validator's `POST /ledger/tx`.

mod common;

use std::process::Command;

use brainmesh::config::LedgerSection;
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::rollup::LedgerHandle;
use brainmesh_actors::Identity;
use brainmesh_ledger::economics::tokens;
use common::{blocking, wait_until};

/// Waits until the account has no transaction pending at the validator (its last one is in a
/// final block, applied or refused).
async fn settled(ledger: &LedgerHandle, account: &str) {
    let acc = account.to_string();
    wait_until("the account's transactions are in final blocks", 30, || {
        let (l, a) = (ledger.clone(), acc.clone());
        async move { l.account(a).await.is_some_and(|v| v.next_nonce == v.nonce + 1) }
    })
    .await;
}

#[actix_rt::test]
async fn an_owner_creates_a_brain_sets_fee_and_split_and_earns_the_fee_a_new_miner_pays() {
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let (owner_dir, peer_dir) = (root.path().join("owner"), root.path().join("peer"));
    let owner = Identity::load_or_create(&owner_dir).unwrap().peer_id().to_string();
    let peer = Identity::load_or_create(&peer_dir).unwrap().peer_id().to_string();
    let section = LedgerSection {
        min_validators: 1,
        vote_delay_ms: 120,
        settlement_interval_blocks: 1000,
        balances: [(owner.clone(), tokens(5_000) as u64), (peer.clone(), tokens(50) as u64)].into_iter().collect(),
        ..LedgerSection::default()
    };
    let cfg = common::ledger_node_config(&root.path().join("v"), Role::Validator, vec![], genesis_ms, 400, &section);
    let val = Node::start(cfg).await.unwrap();
    let ledger = val.ledger.clone().unwrap();
    let node = val.http_addr.unwrap().to_string();

    // Create: the lowest free public id (7; 0–6 and 47 are reserved), 1,000 tokens burned.
    let price = tokens(1_000).to_string();
    let out =
        common::cli_signed(&["brain", "create", "--method", "burn", "--max-price", &price], &owner_dir, &node).await;
    assert_eq!(out["from"].as_str(), Some(owner.as_str()), "{out}");
    wait_until("Brain 7 exists", 30, || {
        let l = ledger.clone();
        async move { l.brain(7).await.is_some() }
    })
    .await;
    let b = ledger.brain(7).await.unwrap();
    assert_eq!((b.owner.as_str(), b.acquired_by.as_str()), (owner.as_str(), "burned"));
    assert_eq!(b.income.owner_balance, tokens(4_000).to_string(), "the burn price left the owner's account");
    assert_eq!((b.miner_share_ppb, b.owner_share_ppb), (500_000_000, 250_000_000));

    // The owner sets a fee of 3 tokens and a 70/30 miners/validators split.
    common::cli_signed(&["brain", "set-fee", "--brain", "7", "--fee", &tokens(3).to_string()], &owner_dir, &node).await;
    common::cli_signed(&["brain", "set-split", "--brain", "7", "--miners-percent", "70"], &owner_dir, &node).await;
    wait_until("the fee and split are applied", 30, || {
        let l = ledger.clone();
        async move {
            l.brain(7)
                .await
                .is_some_and(|b| b.registration_fee == tokens(3).to_string() && b.miner_share_ppb == 700_000_000)
        }
    })
    .await;

    // Someone else cannot: the transaction is final but refused, and changes nothing.
    common::cli_signed(&["brain", "set-fee", "--brain", "7", "--fee", "1"], &peer_dir, &node).await;
    settled(&ledger, &peer).await;
    assert_eq!(ledger.brain(7).await.unwrap().registration_fee, tokens(3).to_string(), "only the owner sets the fee");

    // A miner registers at the new fee; the owner earns it.
    common::cli_signed(
        &["register", "--brain", "7", "--role", "miner", "--max-fee", &tokens(3).to_string()],
        &peer_dir,
        &node,
    )
    .await;
    wait_until("the registration is final", 30, || {
        let l = ledger.clone();
        async move { l.brain(7).await.is_some_and(|b| b.miners == 1) }
    })
    .await;
    let income = common::cli_async(vec![
        "brain".into(),
        "income".into(),
        "--brain".into(),
        "7".into(),
        "--node".into(),
        node.clone(),
    ])
    .await;
    assert_eq!(income["income"]["registration_fees"].as_str(), Some(tokens(3).to_string().as_str()), "{income}");
    assert_eq!(income["income"]["owner_balance"].as_str(), Some(tokens(4_003).to_string().as_str()), "{income}");
    let show = common::cli_async(vec![
        "brain".into(),
        "show".into(),
        "--brain".into(),
        "7".into(),
        "--node".into(),
        node.clone(),
    ])
    .await;
    assert_eq!(show["registrations"][0][0].as_str(), Some(peer.as_str()), "{show}");
    assert_eq!(show["registrations"][0][1].as_str(), Some("miner"));

    // A Brain that does not exist is a clear error.
    let node2 = node.clone();
    let out = blocking(move || {
        Command::new(common::BIN).args(["brain", "show", "--brain", "99", "--node", &node2]).output().unwrap()
    })
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Brain 99 does not exist"), "{out:?}");
}
