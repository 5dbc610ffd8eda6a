//! Costs on the hot path of every gossip message: opening (verifying) a signed envelope, and
//! re-computing Brain admission for a full Brain (256 validators + 1792 miners).
//! Run: `make bench` (or `cargo bench --bench protocol`).

use criterion::{criterion_group, criterion_main, Criterion};

use brainmesh_ledger::{TimeSource, WallClock};

use brainmesh_actors::protocols::gossip::{Envelope, Heartbeat, Payload, Registration, Role};
use brainmesh_actors::roster::{BrainPolicy, Roster};
use brainmesh_actors::Identity;

fn envelope(c: &mut Criterion) {
    let id = Identity::generate();
    let hb = Payload::Heartbeat(Heartbeat {
        peer_id: id.peer_id().to_string(),
        brain: 1,
        seq: 1,
        time_ms: WallClock.now_ms(),
        load_permille: 100,
        queue_depth: 2,
        latency_us: 800,
        roster_digest: "00".repeat(16),
        ..Default::default()
    });
    let bytes = Envelope::seal(&id, &hb).to_bytes();
    c.bench_function("envelope_seal_heartbeat", |b| b.iter(|| Envelope::seal(&id, &hb)));
    c.bench_function("envelope_open_heartbeat", |b| b.iter(|| Envelope::open(&bytes)));
}

fn admission(c: &mut Criterion) {
    let policy = BrainPolicy::default();
    let mut roster = Roster::new();
    for i in 0..(policy.max_miners + policy.max_validators) {
        let id = Identity::generate();
        let role = if i < policy.max_validators { Role::Validator } else { Role::Miner };
        let reg = Registration {
            peer_id: id.peer_id().to_string(),
            brain: 1,
            roles: vec![role],
            seal_key: hex::encode(id.seal_public()),
            models: vec![],
            fee: 100,
            time_ms: 1_000 + i as u64,
        };
        let env = Envelope::seal(&id, &Payload::Registration(reg.clone()));
        let _ = roster.insert(env, reg, &policy, 10_000_000);
    }
    c.bench_function("admit_full_brain_2048", |b| b.iter(|| roster.admit(1, &policy)));
}

criterion_group!(benches, envelope, admission);
criterion_main!(benches);
