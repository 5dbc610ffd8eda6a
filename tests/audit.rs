//! Proof of inference on a real loopback mesh (in-process peers, real libp2p sockets, real
//! SmolLM2 weights): a validator audits every receipt, fetching the miner's transcript over
//! `/brainmesh/audit/1` and re-checking it with one forward pass. The honest miner passes; a
//! miner serving a squeezed copy (one query head pruned per layer, int8) while declaring the
//! original's hash fails, its ban reaches the gateway by gossip and the gateway stops routing to
//! it. A second validator that samples nothing itself verifies the evidence on its own before
//! co-signing the ban. Weight vectors are committed and revealed over gossip, and the validator's
//! known-answer tasks travel the mesh like users' tasks.

mod common;

use std::path::Path;

use common::{smollm, wait_until};
use std::time::Duration;

use brainmesh::config::{loopback, NodeConfig};
use brainmesh::Node;
use brainmesh_actors::models::squeeze::{self, ExportOptions, Quant};
use brainmesh_actors::models::{LoadOptions, Model, Network};
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskService, TaskSpec};
use brainmesh_ledger::{TimeSource, WallClock};

const BLOCK_MS: u64 = 500;

fn config(dir: &Path, role: Role, bootstrap: Vec<String>) -> NodeConfig {
    let mut cfg = loopback(role, dir, bootstrap).unwrap();
    cfg.network.heartbeat_interval_ms = 200;
    cfg.network.gossip_heartbeat_ms = 100;
    cfg.miner.model = smollm();
    cfg.miner.threads = 1;
    cfg.chain.block_time_ms = BLOCK_MS;
    cfg.audit.threads = 1;
    cfg.audit.epoch_blocks = 16;
    cfg.audit.reveal_delay_blocks = 2;
    cfg
}

fn validator(dir: &Path, bootstrap: Vec<String>, rate: f64) -> NodeConfig {
    let mut cfg = config(dir, Role::Validator, bootstrap);
    cfg.audit.model = smollm();
    cfg.audit.rate = rate;
    // Known-answer tasks from the sampling validator only, every 4 blocks (2 s).
    cfg.audit.quality_every_blocks = if rate > 0.5 { 4 } else { 0 };
    cfg
}

fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// A squeezed copy of SmolLM2: the last query head of every layer pruned, int8 weights.
fn squeezed_copy(out: &Path) {
    let m = Model::load(smollm(), &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {}).unwrap();
    let Network::Llama(l) = &m.net else { panic!("llama") };
    let (layers, heads) = (l.cfg.num_hidden_layers, l.cfg.num_attention_heads);
    let keep: squeeze::Keep = (0..layers).map(|_| (0..heads).map(|h| h != heads - 1).collect()).collect();
    let maps: Vec<Vec<usize>> = (0..layers).map(|i| l.cfg.kv_map(i)).collect();
    squeeze::export(&m, &squeeze::plan(&keep, &maps), &ExportOptions { quant: Quant::Int8, act_squeeze: None }, out)
        .unwrap();
}

/// Runs one task; returns the miner that served it (None if it failed).
async fn ask(tasks: &impl TaskService, i: usize) -> Option<String> {
    let spec = TaskSpec {
        model: "smollm2-135m-instruct".into(),
        account: "dev".into(),
        prompt: Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: format!("Give me fact number {i} about the sea."),
        }]),
        sampling: if i.is_multiple_of(2) {
            Sampling { max_tokens: 12, ..Default::default() }
        } else {
            Sampling { max_tokens: 12, temperature: 0.8, top_p: Some(0.95), seed: Some(i as u64), ..Default::default() }
        },
    };
    common::serving_miner(tasks, spec).await
}

#[actix_rt::test]
async fn a_validator_catches_a_substituted_model_bans_it_and_the_gateway_routes_around_it() {
    let root = tempfile::tempdir().unwrap();
    let squeezed = root.path().join("squeezed");
    squeezed_copy(&squeezed);

    let v1 = Node::start(validator(&root.path().join("v1"), vec![], 1.0)).await.unwrap();
    let boot = v1.listen_addrs[0].clone();
    // v2 samples (practically) nothing itself: it bans only on evidence it re-checked.
    let v2 = Node::start(validator(&root.path().join("v2"), vec![boot.clone()], 1e-12)).await.unwrap();
    let gw = Node::start(config(&root.path().join("gw"), Role::Gateway, vec![boot.clone()])).await.unwrap();
    let honest = Node::start(config(&root.path().join("honest"), Role::Miner, vec![boot.clone()])).await.unwrap();
    let mut cheat_cfg = config(&root.path().join("cheat"), Role::Miner, vec![boot.clone()]);
    cheat_cfg.miner.model = squeezed.clone();
    cheat_cfg.miner.model_hash = sha256_file(&smollm());
    let cheat = Node::start(cheat_cfg).await.unwrap();
    let tasks = gw.tasks.clone().unwrap();
    wait_until("both miners advertised", 60, || async { tasks.models().await.first().is_some_and(|m| m.miners == 2) })
        .await;

    // Tasks until the cheat has served some and the validator has judged them.
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    let mut i = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(240);
    while !(served.get(&cheat.peer_id).copied().unwrap_or(0) >= 1
        && served.get(&honest.peer_id).copied().unwrap_or(0) >= 2)
    {
        assert!(tokio::time::Instant::now() < end, "tasks did not reach both miners: {served:?}");
        if let Some(m) = ask(&tasks, i).await {
            *served.entry(m).or_default() += 1;
        }
        i += 1;
    }
    wait_until("v1 judged the sampled tasks", 120, || async {
        let s = v1.audit.stats();
        s.passed >= 2 && s.failed >= 1
    })
    .await;
    let s1 = v1.audit.stats();
    println!("v1 audit stats: {s1:?}; served {served:?}");
    assert_eq!(s1.unavailable, 0, "every transcript was fetched");

    let height = || WallClock.now_ms().saturating_sub(v1_genesis()) / BLOCK_MS;
    let banned = |n: &Node| n.audit.bans.lock().unwrap().banned(height());
    wait_until("the gateway holds the ban", 60, || async { banned(&gw).contains(&cheat.peer_id) }).await;
    // Vectors committed before the ban may still weigh the cheat; those of later epochs may not.
    let ban_epoch = height() / 16;
    assert!(!banned(&gw).contains(&honest.peer_id), "the honest miner is not banned");
    assert!(banned(&v1).contains(&cheat.peer_id));
    // v2 fetched the evidence from v1, re-checked it and signed a ban of its own.
    wait_until("v2 co-signed after its own re-check", 120, || async { v2.audit.stats().bans_signed >= 1 }).await;
    let entries: Vec<String> =
        gw.audit.bans.lock().unwrap().entries(&cheat.peer_id).iter().map(|e| e.validator.clone()).collect();
    wait_until("the gateway holds both validators' entries", 30, || async {
        gw.audit.bans.lock().unwrap().entries(&cheat.peer_id).len() >= 2
    })
    .await;
    println!("ban entries at the gateway (first look): {entries:?}");
    assert_eq!(v2.audit.stats().sampled, 0, "v2 judged only the evidence");

    // Known-answer tasks went through the mesh and the honest miner answered them right.
    wait_until("a quality check passed", 120, || async { v1.audit.stats().quality_passed >= 1 }).await;
    println!("v1 after quality checks: {:?}", v1.audit.stats());

    // From now on every task goes to the honest miner.
    for j in 0..4 {
        assert_eq!(
            ask(&tasks, 1000 + j).await.as_deref(),
            Some(honest.peer_id.as_str()),
            "task {j} routed to a banned miner"
        );
    }

    // Commit-reveal: v1's revealed weights reach v2 over gossip; the cheat has no weight.
    wait_until(
        "a revealed weight vector from v1, committed after the ban, with the honest miner in it",
        90,
        || async {
            v2.audit.weights.lock().unwrap().iter().any(|w| {
                w.validator == v1.peer_id
                    && w.epoch > ban_epoch
                    && w.weights.iter().any(|(m, x)| m == &honest.peer_id && *x > 0)
            })
        },
    )
    .await;
    for w in v2.audit.weights.lock().unwrap().iter().filter(|w| w.epoch > ban_epoch) {
        assert!(!w.weights.iter().any(|(m, x)| m == &cheat.peer_id && *x > 0), "a banned miner got weight: {w:?}");
    }

    // One entry per validator: a validator does not re-sign what it judged already.
    assert_eq!((v1.audit.stats().bans_signed, v2.audit.stats().bans_signed), (1, 1));

    for n in [cheat, honest, gw, v2, v1] {
        n.shutdown().await;
    }
}

/// A Brain whose declared model is an obfuscated copy of SmolLM2 (`brainmesh obfuscate`): the
/// miner serving that copy from weights sealed to its key (`brainmesh seal`) passes every
/// re-check (the validator audits with the same copy), another miner cannot load them; a
/// miner serving the original weights while declaring the copy's hash is caught, and so is one
/// serving the copy under the original's hash (a validator holding the original audits it) —
/// the proofs commit to hidden states, which the rotation changes.
#[actix_rt::test]
async fn an_obfuscated_model_is_served_and_audited_and_the_original_in_its_place_is_caught() {
    let root = tempfile::tempdir().unwrap();
    let obf = root.path().join("obfuscated");
    let m = Model::load(smollm(), &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {}).unwrap();
    brainmesh_actors::models::obfuscate::obfuscate(&m, 99, &Default::default(), &obf).unwrap();
    drop(m);
    let obf_hash = brainmesh::node::hash_model(&obf).unwrap();

    let mut vcfg = validator(&root.path().join("v1"), vec![], 1.0);
    vcfg.audit.model = obf.clone();
    vcfg.audit.quality_every_blocks = 0;
    let v1 = Node::start(vcfg).await.unwrap();
    let boot = v1.listen_addrs[0].clone();
    let gw = Node::start(config(&root.path().join("gw"), Role::Gateway, vec![boot.clone()])).await.unwrap();
    // The honest miner gets the copy sealed to its own key and decrypts it only into memory.
    let honest_dir = root.path().join("honest");
    let honest_id = brainmesh_actors::identity::Identity::load_or_create(&honest_dir).unwrap();
    let sealed = root.path().join("obfuscated.sealed");
    brainmesh_actors::sealed_model::seal_model(&obf, &honest_id.seal_public(), &sealed).unwrap();
    let mut honest_cfg = config(&honest_dir, Role::Miner, vec![boot.clone()]);
    honest_cfg.miner.model = sealed.clone();
    let honest = Node::start(honest_cfg).await.unwrap();
    let leftovers: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    let mine = format!("brainmesh-model-{}-", std::process::id());
    assert!(!leftovers.iter().any(|n| n.starts_with(&mine)), "decrypted weights left in /dev/shm: {leftovers:?}");
    // Sealed to the honest miner, the file is useless to another one.
    let mut thief_cfg = config(&root.path().join("thief"), Role::Miner, vec![boot.clone()]);
    thief_cfg.miner.model = sealed.clone();
    let e = Node::start(thief_cfg).await.err().expect("another miner cannot load the sealed model").to_string();
    assert!(e.contains("sealed model is for the miner with seal key"), "{e}");
    let mut cheat_cfg = config(&root.path().join("cheat"), Role::Miner, vec![boot.clone()]);
    cheat_cfg.miner.model_hash = obf_hash.clone();
    let cheat = Node::start(cheat_cfg).await.unwrap();
    // The reverse: the obfuscated copy served under the original's hash, audited by a validator
    // holding the original.
    let mut v2cfg = validator(&root.path().join("v2"), vec![boot.clone()], 1.0);
    v2cfg.audit.quality_every_blocks = 0;
    let v2 = Node::start(v2cfg).await.unwrap();
    let mut reverse_cfg = config(&root.path().join("reverse"), Role::Miner, vec![boot.clone()]);
    reverse_cfg.miner.model = obf.clone();
    reverse_cfg.miner.model_hash = sha256_file(&smollm());
    let reverse = Node::start(reverse_cfg).await.unwrap();
    let tasks = gw.tasks.clone().unwrap();
    wait_until("three miners advertised", 60, || async { tasks.models().await.first().is_some_and(|m| m.miners == 3) })
        .await;

    let mut served = std::collections::BTreeMap::<String, usize>::new();
    let mut i = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(240);
    while !(served.get(&cheat.peer_id).copied().unwrap_or(0) >= 1
        && served.get(&reverse.peer_id).copied().unwrap_or(0) >= 1
        && served.get(&honest.peer_id).copied().unwrap_or(0) >= 3)
    {
        assert!(tokio::time::Instant::now() < end, "tasks did not reach both miners: {served:?}");
        if let Some(m) = ask(&tasks, i).await {
            *served.entry(m).or_default() += 1;
        }
        i += 1;
    }
    let height = || WallClock.now_ms().saturating_sub(v1_genesis()) / BLOCK_MS;
    let banned = |n: &Node| n.audit.bans.lock().unwrap().banned(height());
    wait_until("v1 banned the miner serving the original", 120, || async { banned(&v1).contains(&cheat.peer_id) })
        .await;
    wait_until("v1 judged the honest miner's tasks", 120, || async { v1.audit.stats().passed >= 3 }).await;
    let s = v1.audit.stats();
    println!("obfuscated Brain: v1 audit stats {s:?}; served {served:?}");
    assert!(!banned(&v1).contains(&honest.peer_id), "no false alarm on the obfuscated model");
    assert_eq!(s.unavailable, 0);
    wait_until("v2 banned the copy served under the original's hash", 120, || async {
        banned(&v2).contains(&reverse.peer_id)
    })
    .await;
    assert!(!banned(&v2).contains(&honest.peer_id));
    println!("original's validator: {:?}", v2.audit.stats());
    // Each validator judged only its own model's receipts: neither co-signed the other's ban
    // (it could not re-check that evidence with the model it holds).
    let entries = |n: &Node, miner: &str| -> Vec<String> {
        n.audit.bans.lock().unwrap().entries(miner).iter().map(|e| e.validator.clone()).collect()
    };
    assert_eq!(entries(&v1, &cheat.peer_id), vec![v1.peer_id.clone()]);
    assert_eq!(entries(&v2, &reverse.peer_id), vec![v2.peer_id.clone()]);
    assert_eq!((v1.audit.stats().bans_signed, v2.audit.stats().bans_signed), (1, 1));
    for n in [reverse, cheat, honest, gw, v2, v1] {
        n.shutdown().await;
    }
}

fn v1_genesis() -> u64 {
    brainmesh::config::ChainConfig::default().genesis_ms
}
