//! The Brain roster as pure logic: admission under capacity, fees, liveness, digests.
//!
//! Admission is deterministic so that every peer converges on the same roster whatever order
//! records arrive in: within a Brain, registrations are ordered by (time, peer id) and a record
//! is admitted when each capped role it holds still has room among the records before it.
//!
//! With [`BrainPolicy::paid_admission`] a miner is admitted only if its `Register` transaction is
//! final on the ledger ([`Roster::set_paid`], from a validator): the self-declared fee of the
//! signed record no longer counts, and miners are ordered by the height their registration was
//! paid at, then peer id (a record's own timestamp cannot buy a place).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocols::gossip::{Envelope, Heartbeat, ModelAd, Registration, Role, MAX_FUTURE_SKEW_MS};

use crate::protocols::Reject;
use brainmesh_ledger::BrainId;

/// The refusal of a miner while the ledger's registrations are not known yet (paid admission):
/// a wait, not a verdict.
pub const AWAITING_LEDGER: &str = "the ledger's registrations are not known yet (no validator of this Brain \
                                   answered); a miner is admitted once its paid registration is seen";

/// Heartbeat sequence numbers are the sender's clock in ms (strictly increasing). One that is
/// older than the newest seen by at most this much is a late gossip delivery, not a replay.
pub const STALE_HEARTBEAT_WINDOW_MS: u64 = 30_000;

/// Per-Brain rules (whitepaper defaults: 256 validators, 1792 miners, fee 100).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrainPolicy {
    pub max_validators: usize,
    pub max_miners: usize,
    pub registration_fee: u64,
    /// Miners must have paid the Brain's fee on the ledger (a final `Register` transaction).
    #[serde(default)]
    pub paid_admission: bool,
}

impl Default for BrainPolicy {
    fn default() -> Self {
        Self { max_validators: 256, max_miners: 1792, registration_fee: 100, paid_admission: false }
    }
}

impl BrainPolicy {
    pub fn capacity(&self, role: Role) -> Option<usize> {
        match role {
            Role::Miner => Some(self.max_miners),
            Role::Validator => Some(self.max_validators),
            Role::Gateway => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub registration: Registration,
    pub envelope: Envelope,
    pub admitted: bool,
    pub refused: Option<String>,
    pub last_seen_ms: Option<u64>,
    pub last_seq: u64,
    pub load_permille: u32,
    pub queue_depth: u32,
    pub latency_us: u64,
    pub serving: Vec<ModelAd>,
    pub tokens_per_s_milli: u32,
    pub ttft_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    Online,
    Offline,
}

/// What inserting a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Updated,
    Duplicate,
}

/// What a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Recorded,
    /// Older than the newest heartbeat seen from that peer, but only by a gossip delay (the
    /// sequence numbers are millisecond clocks, at most [`STALE_HEARTBEAT_WINDOW_MS`] apart):
    /// gossip delivered it late. Ignored, not counted as an attack.
    Stale,
    /// From a peer we hold no registration for: worth a roster sync.
    UnknownPeer,
}

/// One member as shown in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub peer_id: String,
    pub roles: Vec<Role>,
    pub models: Vec<String>,
    pub seal_key: String,
    pub fee: u64,
    pub registered_ms: u64,
    pub admitted: bool,
    pub refused: Option<String>,
    pub status: Liveness,
    pub last_seen_ms: Option<u64>,
    pub load_permille: u32,
    pub queue_depth: u32,
    pub latency_us: u64,
    pub serving: Vec<ModelAd>,
    pub tokens_per_s_milli: u32,
    pub ttft_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrainView {
    pub brain: BrainId,
    pub digest: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Default)]
pub struct Roster {
    brains: BTreeMap<u16, BTreeMap<String, Member>>,
    /// Per Brain: miners whose registration is final on the ledger, and the height it was paid
    /// at (None: not known yet).
    paid: BTreeMap<u16, BTreeMap<String, u64>>,
}

impl Roster {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks and inserts a verified registration.
    pub fn insert(
        &mut self,
        env: Envelope,
        reg: Registration,
        policy: &BrainPolicy,
        now_ms: u64,
    ) -> Result<Inserted, Reject> {
        if reg.roles.is_empty() || !valid_seal_key(&reg.seal_key) {
            return Err(Reject::InvalidRecord);
        }
        if reg.time_ms > now_ms + MAX_FUTURE_SKEW_MS {
            return Err(Reject::FutureTimestamp);
        }
        let brain = self.brains.entry(reg.brain).or_default();
        let outcome = match brain.get(&reg.peer_id) {
            Some(old) if old.envelope == env => return Ok(Inserted::Duplicate),
            Some(old) if old.registration.time_ms >= reg.time_ms => return Err(Reject::Replay),
            Some(_) => Inserted::Updated,
            // A peer already registered keeps its place when the fee rises (grandfathering);
            // a new one must pay the Brain's current fee.
            None if reg.fee < policy.registration_fee => return Err(Reject::FeeTooLow),
            None => Inserted::New,
        };
        let (last_seen_ms, last_seq, load, queue, lat, serving, tps, ttft) = match brain.get(&reg.peer_id) {
            Some(m) => (
                m.last_seen_ms,
                m.last_seq,
                m.load_permille,
                m.queue_depth,
                m.latency_us,
                m.serving.clone(),
                m.tokens_per_s_milli,
                m.ttft_ms,
            ),
            None => (None, 0, 0, 0, 0, vec![], 0, 0),
        };
        brain.insert(
            reg.peer_id.clone(),
            Member {
                registration: reg.clone(),
                envelope: env,
                admitted: false,
                refused: None,
                last_seen_ms,
                last_seq,
                load_permille: load,
                queue_depth: queue,
                latency_us: lat,
                serving,
                tokens_per_s_milli: tps,
                ttft_ms: ttft,
            },
        );
        self.admit(reg.brain, policy);
        Ok(outcome)
    }

    /// The miners of `brain` registered on the ledger (peer id → height paid at), as a validator
    /// reported them. Returns true if the set changed.
    pub fn set_paid(&mut self, brain: BrainId, paid: BTreeMap<String, u64>) -> bool {
        if self.paid.get(&brain) == Some(&paid) {
            return false;
        }
        self.paid.insert(brain, paid);
        true
    }

    /// Whether the ledger's registrations of `brain` are known.
    pub fn paid_known(&self, brain: BrainId) -> bool {
        self.paid.contains_key(&brain)
    }

    /// Recomputes who is admitted in `brain` under `policy`.
    pub fn admit(&mut self, brain: BrainId, policy: &BrainPolicy) {
        let Some(members) = self.brains.get_mut(&brain) else { return };
        let paid = self.paid.get(&brain);
        let gated = |m: &Member| policy.paid_admission && m.registration.roles.contains(&Role::Miner);
        // Paid miners by the height they paid at; everyone else at 0 (ungated roles are counted
        // separately, so this only orders miners among miners).
        let mut order: Vec<(u64, u64, String)> = members
            .values()
            .map(|m| {
                let h = if gated(m) {
                    paid.and_then(|p| p.get(&m.registration.peer_id)).copied().unwrap_or(u64::MAX)
                } else {
                    0
                };
                (h, m.registration.time_ms, m.registration.peer_id.clone())
            })
            .collect();
        order.sort();
        let mut counts: BTreeMap<Role, usize> = BTreeMap::new();
        for (_, _, pid) in order {
            let Some(m) = members.get_mut(&pid) else { continue };
            if gated(m) {
                let unpaid = match paid {
                    None => Some(AWAITING_LEDGER.to_string()),
                    Some(p) if !p.contains_key(&pid) => Some(format!(
                        "not registered on the ledger: a miner of Brain {brain} must pay the Brain's registration \
                         fee first (`brainmesh register --brain {brain} --role miner --data-dir DIR`)"
                    )),
                    Some(_) => None,
                };
                if let Some(reason) = unpaid {
                    m.admitted = false;
                    m.refused = Some(reason);
                    continue;
                }
            }
            let full = m.registration.roles.iter().find_map(|r| {
                let cap = policy.capacity(*r)?;
                let n = counts.get(r).copied().unwrap_or(0);
                (n >= cap).then(|| format!("Brain {brain} is full: {n} {}s registered (capacity {cap})", r.as_str()))
            });
            match full {
                Some(reason) => {
                    m.admitted = false;
                    m.refused = Some(reason);
                }
                None => {
                    for r in &m.registration.roles {
                        *counts.entry(*r).or_default() += 1;
                    }
                    m.admitted = true;
                    m.refused = None;
                }
            }
        }
    }

    /// Records a verified heartbeat.
    pub fn heartbeat(&mut self, hb: &Heartbeat, now_ms: u64) -> Result<Beat, Reject> {
        if hb.time_ms > now_ms + MAX_FUTURE_SKEW_MS {
            return Err(Reject::FutureTimestamp);
        }
        let Some(m) = self.brains.get_mut(&hb.brain).and_then(|b| b.get_mut(&hb.peer_id)) else {
            return Ok(Beat::UnknownPeer);
        };
        if hb.seq < m.last_seq && m.last_seq - hb.seq <= STALE_HEARTBEAT_WINDOW_MS {
            return Ok(Beat::Stale);
        }
        if hb.seq <= m.last_seq {
            return Err(Reject::Replay);
        }
        m.last_seq = hb.seq;
        m.last_seen_ms = Some(now_ms);
        m.load_permille = hb.load_permille;
        m.queue_depth = hb.queue_depth;
        m.latency_us = hb.latency_us;
        m.serving = hb.serving.clone();
        m.tokens_per_s_milli = hb.tokens_per_s_milli;
        m.ttft_ms = hb.ttft_ms;
        Ok(Beat::Recorded)
    }

    pub fn get(&self, brain: BrainId, peer_id: &str) -> Option<&Member> {
        self.brains.get(&brain)?.get(peer_id)
    }

    pub fn envelopes(&self, brain: BrainId) -> Vec<Envelope> {
        self.brains.get(&brain).map(|b| b.values().map(|m| m.envelope.clone()).collect()).unwrap_or_default()
    }

    /// Digest of the registrations held for a Brain: equal digests, equal rosters.
    pub fn digest(&self, brain: BrainId) -> String {
        let mut h = Sha256::new();
        if let Some(b) = self.brains.get(&brain) {
            for (pid, m) in b {
                h.update(pid.as_bytes());
                h.update(m.envelope.sig.as_bytes());
            }
        }
        hex::encode(&h.finalize()[..16])
    }

    pub fn liveness(m: &Member, self_id: &str, now_ms: u64, offline_after_ms: u64) -> Liveness {
        if m.registration.peer_id == self_id {
            return Liveness::Online;
        }
        match m.last_seen_ms {
            Some(t) if now_ms.saturating_sub(t) <= offline_after_ms => Liveness::Online,
            _ => Liveness::Offline,
        }
    }

    pub fn view(&self, self_id: &str, now_ms: u64, offline_after_ms: u64) -> Vec<BrainView> {
        self.brains
            .iter()
            .map(|(brain, members)| BrainView {
                brain: *brain,
                digest: self.digest(*brain),
                members: members
                    .values()
                    .map(|m| MemberView {
                        peer_id: m.registration.peer_id.clone(),
                        roles: m.registration.roles.clone(),
                        models: m.registration.models.clone(),
                        seal_key: m.registration.seal_key.clone(),
                        fee: m.registration.fee,
                        registered_ms: m.registration.time_ms,
                        admitted: m.admitted,
                        refused: m.refused.clone(),
                        status: Self::liveness(m, self_id, now_ms, offline_after_ms),
                        last_seen_ms: m.last_seen_ms,
                        load_permille: m.load_permille,
                        queue_depth: m.queue_depth,
                        latency_us: m.latency_us,
                        serving: m.serving.clone(),
                        tokens_per_s_milli: m.tokens_per_s_milli,
                        ttft_ms: m.ttft_ms,
                    })
                    .collect(),
            })
            .collect()
    }

    pub fn members(&self, brain: BrainId) -> impl Iterator<Item = &Member> {
        self.brains.get(&brain).into_iter().flat_map(|b| b.values())
    }
}

fn valid_seal_key(hex_key: &str) -> bool {
    hex::decode(hex_key).map(|k| k.len() == 32).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::protocols::gossip::Payload;
    use std::collections::BTreeSet;

    fn record(id: &Identity, roles: Vec<Role>, fee: u64, time_ms: u64) -> (Envelope, Registration) {
        let reg = Registration {
            peer_id: id.peer_id().to_string(),
            brain: 1,
            roles,
            seal_key: hex::encode(id.seal_public()),
            models: vec![],
            fee,
            time_ms,
        };
        (Envelope::seal(id, &Payload::Registration(reg.clone())), reg)
    }

    #[test]
    fn capacity_refuses_the_latest_registrations_whatever_the_arrival_order() {
        let policy = BrainPolicy { max_miners: 2, ..Default::default() };
        let ids: Vec<Identity> = (0..4).map(|_| Identity::generate()).collect();
        let recs: Vec<_> =
            ids.iter().enumerate().map(|(i, id)| record(id, vec![Role::Miner], 100, 1000 + i as u64)).collect();
        let mut forward = Roster::new();
        let mut backward = Roster::new();
        for (e, r) in recs.iter().cloned() {
            forward.insert(e, r, &policy, 10_000).unwrap();
        }
        for (e, r) in recs.iter().rev().cloned() {
            backward.insert(e, r, &policy, 10_000).unwrap();
        }
        for roster in [&forward, &backward] {
            let admitted: Vec<bool> = recs.iter().map(|(_, r)| roster.get(1, &r.peer_id).unwrap().admitted).collect();
            assert_eq!(admitted, vec![true, true, false, false]);
            let reason = roster.get(1, &recs[3].1.peer_id).unwrap().refused.clone().unwrap();
            assert!(reason.contains("full") && reason.contains("capacity 2"), "{reason}");
        }
        assert_eq!(forward.digest(1), backward.digest(1));
    }

    #[test]
    fn gateways_are_not_capped_and_validators_have_their_own_cap() {
        let policy = BrainPolicy { max_miners: 1, max_validators: 1, registration_fee: 100, paid_admission: false };
        let mut roster = Roster::new();
        let a = Identity::generate();
        let b = Identity::generate();
        let c = Identity::generate();
        let (e, r) = record(&a, vec![Role::Miner], 100, 1);
        roster.insert(e, r, &policy, 10).unwrap();
        let (e, r) = record(&b, vec![Role::Validator, Role::Gateway], 100, 2);
        roster.insert(e, r, &policy, 10).unwrap();
        let (e, r) = record(&c, vec![Role::Gateway], 100, 3);
        roster.insert(e, r, &policy, 10).unwrap();
        assert!(roster.members(1).all(|m| m.admitted));
    }

    #[test]
    fn with_paid_admission_unpaid_sybils_are_refused_clearly_and_paid_miners_admitted_by_paid_height() {
        let mut roster = Roster::new();
        let policy = BrainPolicy { max_miners: 3, paid_admission: true, ..BrainPolicy::default() };
        let mut ids = Vec::new();
        for i in 0..53u64 {
            let id = Identity::generate();
            let (e, r) = record(&id, vec![Role::Miner], 100, 1_000 + i);
            roster.insert(e, r, &policy, 10_000).unwrap();
            ids.push(id.peer_id().to_string());
        }
        let val = Identity::generate();
        let (e, r) = record(&val, vec![Role::Validator], 100, 5);
        roster.insert(e, r, &policy, 10_000).unwrap();
        // Before any validator answered, no miner is admitted, and each says why; validators are
        // not gated.
        assert!(roster.members(1).filter(|m| m.registration.roles == vec![Role::Miner]).all(|m| !m.admitted));
        assert!(roster.get(1, &val.peer_id().to_string()).unwrap().admitted);
        let why = roster.get(1, &ids[0]).unwrap().refused.clone().unwrap();
        assert!(why.contains("not known yet"), "{why}");
        // 4 of the 53 paid, at heights 9, 4, 4, 7; capacity 3: the three paid first are admitted,
        // ties by peer id; the record's own timestamp does not matter.
        let paid: BTreeMap<String, u64> =
            [(ids[50].clone(), 9), (ids[51].clone(), 4), (ids[52].clone(), 4), (ids[10].clone(), 7)].into();
        assert!(roster.set_paid(1, paid.clone()));
        assert!(!roster.set_paid(1, paid), "the same set changes nothing");
        roster.admit(1, &policy);
        let admitted: BTreeSet<String> =
            roster.members(1).filter(|m| m.admitted).map(|m| m.registration.peer_id.clone()).collect();
        let expect: BTreeSet<String> =
            [ids[51].clone(), ids[52].clone(), ids[10].clone(), val.peer_id().to_string()].into();
        assert_eq!(admitted, expect);
        assert!(roster.get(1, &ids[50]).unwrap().refused.clone().unwrap().contains("is full"));
        let unpaid: Vec<&Member> = roster.members(1).filter(|m| !m.admitted).collect();
        assert_eq!(unpaid.len(), 50, "49 Sybils that paid nothing and the fourth paid miner");
        for m in unpaid.iter().filter(|m| m.registration.peer_id != ids[50]) {
            let why = m.refused.as_deref().unwrap_or_default();
            assert!(why.contains("not registered on the ledger") && why.contains("brainmesh register"), "{why}");
        }
    }

    #[test]
    fn fee_below_brain_fee_is_refused_but_existing_members_are_grandfathered() {
        let mut policy = BrainPolicy::default();
        let mut roster = Roster::new();
        let a = Identity::generate();
        let (e, r) = record(&a, vec![Role::Miner], 100, 1);
        roster.insert(e, r, &policy, 10).unwrap();
        policy.registration_fee = 500;
        // Same peer re-registers later (new models, say) at its old fee: kept.
        let (e, r) = record(&a, vec![Role::Miner], 100, 2);
        assert_eq!(roster.insert(e, r, &policy, 10), Ok(Inserted::Updated));
        let newcomer = Identity::generate();
        let (e, r) = record(&newcomer, vec![Role::Miner], 100, 3);
        assert_eq!(roster.insert(e, r, &policy, 10), Err(Reject::FeeTooLow));
    }

    #[test]
    fn older_registration_is_a_replay_and_same_one_is_a_duplicate() {
        let policy = BrainPolicy::default();
        let mut roster = Roster::new();
        let a = Identity::generate();
        let old = record(&a, vec![Role::Miner], 100, 5);
        let new = record(&a, vec![Role::Miner], 100, 6);
        roster.insert(new.0.clone(), new.1.clone(), &policy, 10).unwrap();
        assert_eq!(roster.insert(new.0, new.1, &policy, 10), Ok(Inserted::Duplicate));
        assert_eq!(roster.insert(old.0, old.1, &policy, 10), Err(Reject::Replay));
    }

    #[test]
    fn silent_peer_goes_offline_and_replayed_heartbeat_is_refused() {
        let policy = BrainPolicy::default();
        let mut roster = Roster::new();
        let a = Identity::generate();
        let (e, r) = record(&a, vec![Role::Miner], 100, 1);
        let pid = r.peer_id.clone();
        roster.insert(e, r, &policy, 10).unwrap();
        let hb = Heartbeat {
            peer_id: pid.clone(),
            brain: 1,
            seq: 1,
            time_ms: 1000,
            load_permille: 10,
            queue_depth: 0,
            latency_us: 0,
            roster_digest: String::new(),
            serving: vec![],
            tokens_per_s_milli: 0,
            ttft_ms: 0,
        };
        assert_eq!(roster.heartbeat(&hb, 1000), Ok(Beat::Recorded));
        assert_eq!(roster.heartbeat(&hb, 1100), Err(Reject::Replay));
        let m = roster.get(1, &pid).unwrap();
        assert_eq!(Roster::liveness(m, "me", 1500, 1000), Liveness::Online);
        assert_eq!(Roster::liveness(m, "me", 2001, 1000), Liveness::Offline);
    }

    #[test]
    fn a_heartbeat_delivered_late_by_gossip_is_stale_but_an_old_one_is_a_replay() {
        let policy = BrainPolicy::default();
        let mut roster = Roster::new();
        let a = Identity::generate();
        let (e, r) = record(&a, vec![Role::Miner], 100, 1);
        let pid = r.peer_id.clone();
        roster.insert(e, r, &policy, 10).unwrap();
        let t = 1_800_000_000_000u64;
        let hb = |seq: u64| Heartbeat { peer_id: pid.clone(), brain: 1, seq, time_ms: seq, ..Default::default() };
        assert_eq!(roster.heartbeat(&hb(t), t), Ok(Beat::Recorded));
        assert_eq!(roster.heartbeat(&hb(t - 300), t), Ok(Beat::Stale), "300 ms late: gossip");
        assert_eq!(roster.get(1, &pid).unwrap().last_seq, t, "a stale beat changes nothing");
        assert_eq!(roster.heartbeat(&hb(t), t), Err(Reject::Replay), "the same beat again");
        assert_eq!(roster.heartbeat(&hb(5), t), Err(Reject::Replay), "a made-up old sequence number");
        assert_eq!(roster.heartbeat(&hb(t - STALE_HEARTBEAT_WINDOW_MS - 1), t), Err(Reject::Replay));
    }
}
