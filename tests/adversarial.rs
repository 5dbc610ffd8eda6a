//! A rogue peer on a real loopback mesh sends 100 malformed, oversized, unsigned, badly signed,
//! forged and replayed messages. The honest peers reject and count every one by reason, never
//! crash, and keep serving.

use std::path::Path;
use std::time::Duration;

use brainmesh::config::{loopback, NodeConfig};
use brainmesh::Node;
use brainmesh_actors::protocols::gossip::{Envelope, Heartbeat, Payload, Registration, Role, TopicKind};
use brainmesh_actors::protocols::sync::SyncRequest;
use brainmesh_actors::{Identity, Reject};
use brainmesh_ledger::{TimeSource, WallClock};

fn config(dir: &Path, role: Role, bootstrap: Vec<String>) -> NodeConfig {
    let mut cfg = loopback(role, dir, bootstrap).unwrap();
    cfg.network.heartbeat_interval_ms = 200;
    cfg.network.gossip_heartbeat_ms = 100;
    cfg
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn registration(id: &Identity, peer_id: String) -> Payload {
    Payload::Registration(Registration {
        peer_id,
        brain: 1,
        roles: vec![Role::Miner],
        seal_key: hex::encode(id.seal_public()),
        models: vec![],
        fee: 100,
        time_ms: WallClock.now_ms(),
    })
}

#[actix_rt::test]
async fn one_hundred_bad_messages_are_all_rejected_and_counted_without_harm() {
    let root = tempfile::tempdir().unwrap();
    let first = Node::start(config(&root.path().join("v0"), Role::Miner, vec![])).await.unwrap();
    let boot = first.listen_addrs[0].clone();
    let mut victims = vec![first];
    for i in 1..3 {
        victims.push(
            Node::start(config(&root.path().join(format!("v{i}")), Role::Validator, vec![boot.clone()])).await.unwrap(),
        );
    }
    let rogue_dir = root.path().join("rogue");
    let rogue = Node::start(config(&rogue_dir, Role::Miner, vec![boot.clone()])).await.unwrap();
    // The rogue's own key, to sign things that are validly signed but still wrong.
    let rogue_id = Identity::load_or_create(&rogue_dir).unwrap();
    for v in &victims {
        rogue.net.dial(v.listen_addrs[0].clone()).await.unwrap();
    }
    // Every victim has accepted at least one honest heartbeat from the rogue (so the gossip
    // path is up and its heartbeat sequence is known).
    for v in &victims {
        let rid = rogue.peer_id.clone();
        wait_until("victims hear the rogue", || async {
            let s = v.status().await;
            s.roster.iter().flat_map(|b| &b.members).any(|m| m.peer_id == rid && m.last_seen_ms.is_some())
        })
        .await;
    }
    let before: Vec<u64> = victims.iter().map(|v| v.metrics.rejected_total()).collect();
    assert_eq!(before, vec![0, 0, 0]);

    let membership = TopicKind::Membership.topic(1);
    let heartbeat = TopicKind::Heartbeat.topic(1);
    let victim_id = victims[0].peer_id.clone();
    let stranger = Identity::generate();
    let mut sent: Vec<(String, Vec<u8>, Reject)> = Vec::new();
    for i in 0..15u64 {
        // Garbage bytes.
        sent.push((membership.clone(), format!("\u{0}garbage {i} {{").into_bytes(), Reject::Malformed));
        // Larger than the 64 KiB application limit (below gossipsub's transport limit).
        sent.push((membership.clone(), vec![b'x' + (i % 3) as u8; 70 * 1024 + i as usize], Reject::Oversized));
        // A well-formed envelope with the signature stripped.
        let mut e = Envelope::seal(&rogue_id, &registration(&rogue_id, rogue.peer_id.clone()));
        e.sig.clear();
        e.body.push_str(&" ".repeat(i as usize));
        sent.push((membership.clone(), e.to_bytes(), Reject::Unsigned));
        // Body altered after signing.
        let mut e = Envelope::seal(&rogue_id, &registration(&rogue_id, rogue.peer_id.clone()));
        e.body = e.body.replace("\"fee\":100", &format!("\"fee\":{}", 1000 + i));
        sent.push((membership.clone(), e.to_bytes(), Reject::BadSignature));
        // A registration for the victim, signed by the rogue.
        sent.push((
            membership.clone(),
            Envelope::seal(&rogue_id, &registration(&rogue_id, victim_id.to_string())).to_bytes(),
            Reject::IdentityMismatch,
        ));
        // A genuine registration of some other peer, published by the rogue as its own.
        let mut reg = registration(&stranger, stranger.peer_id().to_string());
        if let Payload::Registration(r) = &mut reg {
            r.time_ms += i;
        }
        sent.push((membership.clone(), Envelope::seal(&stranger, &reg).to_bytes(), Reject::IdentityMismatch));
    }
    for i in 0..10u64 {
        // A replayed (old sequence number) heartbeat, properly signed by the rogue.
        let hb = Payload::Heartbeat(Heartbeat {
            peer_id: rogue.peer_id.clone(),
            brain: 1,
            seq: 1 + i,
            time_ms: WallClock.now_ms(),
            load_permille: 0,
            queue_depth: 0,
            latency_us: 0,
            roster_digest: String::new(),
            ..Default::default()
        });
        sent.push((heartbeat.clone(), Envelope::seal(&rogue_id, &hb).to_bytes(), Reject::Replay));
    }
    assert_eq!(sent.len(), 100);
    let mut by_reason = std::collections::HashMap::new();
    for (topic, data, reason) in sent {
        *by_reason.entry(reason).or_insert(0u64) += 1;
        rogue.net.publish(topic, data);
    }
    // Request-response abuse on top: malformed sync requests to each victim.
    for v in &victims {
        for j in 0..3 {
            let _ = rogue.net.request(v.peer_id.clone(), format!("{{not json {j}").into_bytes()).await;
        }
    }
    for v in &victims {
        wait_until("every bad message counted", || async { v.metrics.rejected_total() >= 103 }).await;
        for (reason, n) in &by_reason {
            let extra = if *reason == Reject::Malformed { 3 } else { 0 };
            assert_eq!(v.metrics.rejected_count(*reason), n + extra, "{reason:?} on {}", v.peer_id);
        }
        assert_eq!(v.metrics.rejected_total(), 103);
    }

    // Nobody crashed or stalled: the victims still answer, still list the rogue (whose honest
    // heartbeats keep arriving) and were not tricked into a forged record.
    for v in &victims {
        let s = v.status().await;
        let members: Vec<_> = s.roster.iter().flat_map(|b| &b.members).collect();
        assert_eq!(members.len(), 4, "forged or stranger records got in");
        assert!(!members.iter().any(|m| m.peer_id == stranger.peer_id().to_string()));
    }
    let rid = rogue.peer_id.clone();
    let seen_before =
        victims[1].status().await.roster[0].members.iter().find(|m| m.peer_id == rid).and_then(|m| m.last_seen_ms);
    wait_until("honest heartbeats still accepted", || async {
        victims[1].status().await.roster[0].members.iter().find(|m| m.peer_id == rid).and_then(|m| m.last_seen_ms)
            > seen_before
    })
    .await;
    // A well-formed roster request is still served.
    let ok = rogue
        .net
        .request(
            victims[2].peer_id.clone(),
            serde_json::to_vec(&SyncRequest::Roster { brain: 1, have: vec![] }).unwrap(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&ok).contains("\"records\""));

    rogue.shutdown().await;
    for v in victims {
        v.shutdown().await;
    }
}
