//! Choosing a miner for a task: prefix affinity (rendezvous hashing of the prompt's prefix, so
//! prompts sharing a prefix land on the same healthy miner and reuse its cache), else the power
//! of two random choices on load and latency. Pure functions, testable without a network.

use brainmesh_ledger::BrainId;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::messages::RosterSnapshot;
use crate::protocols::gossip::Role;
use crate::{roster, seal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub peer_id: String,
    pub seal_key: [u8; 32],
    /// Queue depth from the miner's last heartbeat.
    pub queue_depth: u32,
    /// Mean ping round trip the miner reported, microseconds.
    pub latency_us: u64,
    /// Smoothed decode speed, milli-tokens/s (0 = unknown).
    pub tokens_per_s_milli: u32,
}

/// How a miner was chosen (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Affinity,
    TwoChoices,
    Only,
}

/// Load above which affinity yields to balancing.
pub const AFFINITY_MAX_LOAD: u32 = 4;
/// Bytes of the prompt that define its prefix.
pub const PREFIX_BYTES: usize = 256;

fn score(key: &[u8], peer: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(peer.as_bytes());
    h.finalize().into()
}

fn load(c: &Candidate, inflight: &HashMap<String, u32>) -> u32 {
    c.queue_depth + inflight.get(&c.peer_id).copied().unwrap_or(0)
}

fn cost(c: &Candidate, inflight: &HashMap<String, u32>) -> u64 {
    u64::from(load(c, inflight)) * 1_000_000 + c.latency_us
}

/// Picks a candidate not in `exclude`. `coin` supplies randomness (two indices).
pub fn choose<'a>(
    candidates: &'a [Candidate],
    exclude: &[String],
    inflight: &HashMap<String, u32>,
    prefix: &[u8],
    mut coin: impl FnMut(usize) -> usize,
) -> Option<(&'a Candidate, Choice)> {
    let healthy: Vec<&Candidate> = candidates.iter().filter(|c| !exclude.contains(&c.peer_id)).collect();
    match healthy.len() {
        0 => return None,
        1 => return Some((healthy[0], Choice::Only)),
        _ => {}
    }
    let key = &prefix[..prefix.len().min(PREFIX_BYTES)];
    if let Some(best) = healthy.iter().max_by_key(|c| score(key, &c.peer_id)) {
        if load(best, inflight) <= AFFINITY_MAX_LOAD {
            return Some((best, Choice::Affinity));
        }
    }
    let i = coin(healthy.len());
    let mut j = coin(healthy.len() - 1);
    if j >= i {
        j += 1;
    }
    let (a, b) = (healthy[i], healthy[j]);
    Some((if cost(b, inflight) < cost(a, inflight) { b } else { a }, Choice::TwoChoices))
}

/// Online, admitted, unbanned miners of this Brain serving `model`.
pub fn candidates(
    snap: &RosterSnapshot,
    brain: BrainId,
    model: &str,
    required_hash: Option<&str>,
    banned: &std::collections::BTreeSet<String>,
) -> (Vec<Candidate>, bool) {
    let mut known = false;
    let mut out = Vec::new();
    for b in snap.brains.iter().filter(|b| b.brain == brain) {
        for m in &b.members {
            // Where the Brain declares this model, only miners serving its exact weights count.
            let serves = m.serving.iter().any(|s| s.id == model && required_hash.is_none_or(|h| s.hash == h));
            if serves || m.models.iter().any(|s| s == model) {
                known = true;
            }
            if !(serves && m.admitted && m.status == roster::Liveness::Online && m.roles.contains(&Role::Miner)) {
                continue;
            }
            if banned.contains(&m.peer_id) {
                continue;
            }
            let Ok(seal_key) = seal::key_from_hex(&m.seal_key) else { continue };
            out.push(Candidate {
                peer_id: m.peer_id.clone(),
                seal_key,
                queue_depth: m.queue_depth,
                latency_us: m.latency_us,
                tokens_per_s_milli: m.tokens_per_s_milli,
            });
        }
    }
    (out, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, q: u32) -> Candidate {
        Candidate { peer_id: id.into(), seal_key: [0; 32], queue_depth: q, latency_us: 100, tokens_per_s_milli: 0 }
    }

    #[test]
    fn shared_prefixes_go_to_the_same_miner_and_different_ones_spread() {
        let cs: Vec<_> = (0..8).map(|i| c(&format!("m{i}"), 0)).collect();
        let none = HashMap::new();
        let p = |s: &str| choose(&cs, &[], &none, s.as_bytes(), |_| 0).unwrap().0.peer_id.clone();
        let long = "You are a helpful assistant. ".repeat(20);
        assert_eq!(p(&format!("{long} question one")), p(&format!("{long} question two")));
        let distinct: std::collections::HashSet<String> = (0..40).map(|i| p(&format!("prompt {i}"))).collect();
        assert!(distinct.len() >= 5, "{distinct:?}");
    }

    #[test]
    fn busy_affinity_target_yields_to_the_less_loaded_of_two() {
        let none = HashMap::new();
        let cs = vec![c("a", 0), c("b", 0)];
        let (pref, _) = choose(&cs, &[], &none, b"x", |_| 0).unwrap();
        let busy = pref.peer_id.clone();
        let cs: Vec<_> = cs
            .into_iter()
            .map(|mut m| {
                if m.peer_id == busy {
                    m.queue_depth = 50;
                }
                m
            })
            .collect();
        let (got, how) = choose(&cs, &[], &none, b"x", |_| 0).unwrap();
        assert_ne!(got.peer_id, busy);
        assert_eq!(how, Choice::TwoChoices);
    }

    #[test]
    fn excluded_miners_are_never_chosen() {
        let cs = vec![c("a", 0), c("b", 9), c("c", 0)];
        let none = HashMap::new();
        for k in 0..20 {
            let (got, _) = choose(&cs, &["a".into(), "c".into()], &none, format!("{k}").as_bytes(), |n| k % n).unwrap();
            assert_eq!(got.peer_id, "b");
        }
        assert!(choose(&cs, &["a".into(), "b".into(), "c".into()], &none, b"", |_| 0).is_none());
    }
}
