//! A Brain's declared model (issue 17, `brainmesh brain set-model`): once the owner declares a
//! model name with a content hash on the ledger, gateways route requests for that name only to
//! miners serving exactly those weights. Declaring other weights leaves the Brain's miner
//! unrouted (503 no miner); declaring the miner's own file (hashed by the CLI) routes it again.

mod common;

use brainmesh::config::LedgerSection;
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskError, TaskService, TaskSpec};
use brainmesh_actors::Identity;
use common::wait_until;

const MODEL: &str = "smollm2-135m-instruct";

fn spec() -> TaskSpec {
    TaskSpec {
        model: MODEL.into(),
        account: "dev".into(),
        prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: "Hi.".into() }]),
        sampling: Sampling { max_tokens: 2, ..Default::default() },
    }
}

#[actix_rt::test]
async fn gateways_route_a_declared_model_only_to_miners_serving_its_exact_weights() {
    let root = tempfile::tempdir().unwrap();
    let now = brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock);
    let genesis_ms = now - now % 1000;
    let owner_dir = root.path().join("owner");
    let owner = Identity::load_or_create(&owner_dir).unwrap().peer_id().to_string();
    // The owner holds the reserved Brains, Brain 1 (the mesh's) included.
    let section =
        LedgerSection { min_validators: 1, vote_delay_ms: 120, based_labs: owner.clone(), ..LedgerSection::default() };
    let cfg = |name: &str, role: Role, boot: Vec<String>| {
        common::ledger_node_config(&root.path().join(name), role, boot, genesis_ms, 400, &section)
    };
    let gw = Node::start(cfg("gw", Role::Gateway, vec![])).await.unwrap();
    let boot = vec![gw.listen_addrs[0].clone()];
    let val = Node::start(cfg("v", Role::Validator, boot.clone())).await.unwrap();
    let _miner = Node::start(cfg("m", Role::Miner, boot.clone())).await.unwrap();
    let tasks = gw.tasks.clone().unwrap();
    let ledger = val.ledger.clone().unwrap();
    let node = val.http_addr.unwrap().to_string();
    let brain = gw.membership.roster().await.unwrap().brain;
    wait_until("the gateway sees the miner", 120, || async {
        tasks.models().await.first().is_some_and(|m| m.miners == 1)
    })
    .await;
    assert!(common::serving_miner(&tasks, spec()).await.is_some(), "served before any declaration");

    // Other weights declared under the model's name: the miner no longer qualifies.
    let b = brain.to_string();
    let zeros = "0".repeat(64);
    let set = ["brain", "set-model", "--brain", &b, "--name", MODEL];
    common::cli_signed(&[&set[..], &["--hash", &zeros]].concat(), &owner_dir, &node).await;
    let t = tasks.clone();
    wait_until("the gateway routes nothing to weights the Brain did not declare", 30, || {
        let t = t.clone();
        async move { matches!(t.submit(spec()).await, Err(TaskError::NoMiner(_))) }
    })
    .await;

    // The miner's own file declared (the CLI hashes it): routed again.
    let file = common::smollm().to_string_lossy().to_string();
    common::cli_signed(&[&set[..], &["--file", &file]].concat(), &owner_dir, &node).await;
    let t = tasks.clone();
    wait_until("the gateway routes to the miner serving the declared weights", 30, || {
        let t = t.clone();
        async move { common::serving_miner(&t, spec()).await.is_some() }
    })
    .await;
    let b = ledger.brain(brain).await.unwrap();
    let (name, hash) = b.model.expect("declared");
    assert_eq!(name, MODEL);
    assert_eq!(hash, brainmesh::node::hash_model(&common::smollm()).unwrap());
}
