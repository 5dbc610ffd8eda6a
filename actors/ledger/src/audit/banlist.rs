//! Bans from verified evidence.
//!
//! A validator that has verified evidence of a miner's misbehaviour signs a [`BanEntry`] naming
//! the sha256 of the evidence bytes. A [`BanList`] bans the miner once it holds entries from
//! distinct validators whose stake reaches `min_attest_ppb` of the active validator stake
//! (default 0: one verified entry suffices). The ban starts at the *first qualifying entry*:
//! going through the held entries in `(block, validator)` order, the block of the entry at which
//! the stake first reaches the threshold (so the result does not depend on arrival order), and
//! lasts `ban_blocks`.
//!
//! An entry stamped at or after the end of the miner's current ban starts a new episode: the
//! entries of the old one stop counting, and entries stamped before the old ban's end are
//! ignored from then on. The caller checks that an entry's block is close to its own height.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::weights::{decode_hex, verify_sig, PPB};
use crate::canon::Enc;
use crate::economics::BrainId;

// v2: the canonical encoding of `crate::canon::Enc` (v1 was little-endian, u64 length prefixes).
const BAN_TAG: &str = "brainmesh/ban/v2";

/// Why a [`BanEntry`] was refused by [`BanEntry::verify`] or [`BanList::insert`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    /// The entry is structurally invalid (bad hex digest, empty miner or validator id).
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The ed25519 signature does not verify under the validator's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The entry names a different Brain than the list it was offered to.
    #[error("wrong brain: this list is for brain {expected}, got {got}")]
    WrongBrain {
        /// The list's Brain.
        expected: u16,
        /// The entry's Brain.
        got: u16,
    },
    /// The validator's stake as given is larger than the total active validator stake.
    #[error("validator stake {stake} exceeds total active validator stake {total}")]
    StakeExceedsTotal {
        /// Stake given for the entry's validator.
        stake: u128,
        /// Total active validator stake given.
        total: u128,
    },
}

/// Parameters of a [`BanList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BanParams {
    /// Share of active validator stake (ppb) whose entries are needed to ban; 0 means one
    /// verified entry suffices; values above 1e9 count as 1e9 (all of it).
    pub min_attest_ppb: u64,
    /// How long a ban lasts, in blocks (default 8640·7, a week of 10 s blocks).
    pub ban_blocks: u64,
}

impl Default for BanParams {
    fn default() -> Self {
        Self { min_attest_ppb: 0, ban_blocks: 8640 * 7 }
    }
}

/// Hex sha256 of evidence bytes, as [`BanEntry::evidence_digest`] holds it.
pub fn evidence_digest(evidence: &[u8]) -> String {
    hex::encode(Sha256::digest(evidence))
}

/// One validator's signed statement that it verified evidence against a miner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// Brain the miner was misbehaving in.
    pub brain: BrainId,
    /// The miner's peer id.
    pub miner: String,
    /// Hex sha256 of the evidence bytes.
    pub evidence_digest: String,
    /// Short human-readable description of the misbehaviour (part of the signed bytes).
    pub reason: String,
    /// The signing validator's peer id.
    pub validator: String,
    /// Block at which the validator issued the entry.
    pub block: u64,
    /// Hex ed25519 signature over [`BanEntry::signed_bytes`].
    pub sig: String,
}

impl BanEntry {
    /// Builds an entry for `evidence` (stored as its sha256) and signs it with `sign`, the
    /// validator's ed25519 key.
    pub fn new(
        brain: BrainId,
        miner: &str,
        evidence: &[u8],
        reason: &str,
        validator: &str,
        block: u64,
        sign: &dyn Fn(&[u8]) -> [u8; 64],
    ) -> Self {
        let mut e = Self {
            brain,
            miner: miner.to_string(),
            evidence_digest: evidence_digest(evidence),
            reason: reason.to_string(),
            validator: validator.to_string(),
            block,
            sig: String::new(),
        };
        let digest: [u8; 32] = Sha256::digest(evidence).into();
        e.sig = hex::encode(sign(&e.message(&digest)));
        e
    }

    fn message(&self, digest: &[u8; 32]) -> Vec<u8> {
        let mut e = Enc::new(BAN_TAG);
        e.u16(self.brain).str(&self.miner).raw(digest).str(&self.reason).str(&self.validator).u64(self.block);
        e.into_bytes()
    }

    /// `tag || brain u16 || str(miner) || digest[32] || str(reason) || str(validator) ||
    /// block u64` in the canonical encoding ([`Enc`]: big-endian, u32 length prefixes).
    pub fn signed_bytes(&self) -> Result<Vec<u8>, BanError> {
        let digest = decode_hex::<32>(&self.evidence_digest)
            .ok_or(BanError::Malformed("evidence digest is not 32 bytes of hex"))?;
        Ok(self.message(&digest))
    }

    /// Checks the signature against the validator's ed25519 public key.
    pub fn verify(&self, pubkey: &[u8; 32]) -> Result<(), BanError> {
        if self.miner.is_empty() || self.validator.is_empty() {
            return Err(BanError::Malformed("empty miner or validator id"));
        }
        if verify_sig(pubkey, &self.signed_bytes()?, &self.sig) {
            Ok(())
        } else {
            Err(BanError::BadSignature)
        }
    }

    /// Whether `evidence` is what this entry names.
    pub fn matches_evidence(&self, evidence: &[u8]) -> bool {
        self.evidence_digest.eq_ignore_ascii_case(&evidence_digest(evidence))
    }
}

/// A held entry and the stake its validator had when it was inserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The validator's signed entry.
    pub entry: BanEntry,
    /// The validator's stake when the entry was inserted, counted toward the ban threshold.
    pub stake: u128,
}

/// What a list knows about one miner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerBans {
    /// Entries of the current episode, one per validator (the first one received).
    pub attestations: BTreeMap<String, Attestation>,
    /// Block the current ban started at, if the entries qualified.
    pub banned_from: Option<u64>,
    /// Entries stamped before this block are ignored (they belong to a closed episode).
    pub floor: u64,
}

/// The bans of one Brain. Persisted as a whole (serde).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanList {
    /// Brain whose miners this list bans; entries for another Brain are refused.
    pub brain: BrainId,
    /// Ban threshold and duration.
    pub params: BanParams,
    miners: BTreeMap<String, MinerBans>,
}

/// `ceil(total · ppb / 1e9)` without overflow, `ppb ≤ 1e9`.
fn ppb_of_ceil(total: u128, ppb: u64) -> u128 {
    let (whole, ppb) = (PPB as u128, ppb.min(PPB) as u128);
    let (q, r) = (total / whole, total % whole);
    q * ppb + (r * ppb).div_ceil(whole)
}

impl BanList {
    /// An empty list for `brain`.
    pub fn new(brain: BrainId, params: BanParams) -> Self {
        Self { brain, params, miners: BTreeMap::new() }
    }

    /// Inserts an entry verified against `validator_pubkey` (the key of `entry.validator`),
    /// weighing it by `validator_stake` out of `total_active_validator_stake`. Returns whether
    /// this entry made the miner banned. A second entry from the same validator in the same
    /// episode, or an entry from a closed episode, is held no further and returns `false`.
    pub fn insert(
        &mut self,
        entry: BanEntry,
        validator_pubkey: &[u8; 32],
        validator_stake: u128,
        total_active_validator_stake: u128,
    ) -> Result<bool, BanError> {
        if entry.brain != self.brain {
            return Err(BanError::WrongBrain { expected: self.brain, got: entry.brain });
        }
        entry.verify(validator_pubkey)?;
        if validator_stake > total_active_validator_stake {
            return Err(BanError::StakeExceedsTotal { stake: validator_stake, total: total_active_validator_stake });
        }
        let ban_blocks = self.params.ban_blocks;
        let rec = self.miners.entry(entry.miner.clone()).or_default();
        if entry.block < rec.floor {
            return Ok(false);
        }
        if let Some(start) = rec.banned_from {
            let end = start.saturating_add(ban_blocks);
            if entry.block >= end {
                close_episode(rec, end);
            }
        }
        if rec.attestations.contains_key(&entry.validator) {
            return Ok(false);
        }
        let was_banned = rec.banned_from.is_some();
        rec.attestations.insert(entry.validator.clone(), Attestation { entry, stake: validator_stake });
        let start = first_qualifying_block(rec, self.params.min_attest_ppb, total_active_validator_stake);
        rec.banned_from = match (rec.banned_from, start) {
            (Some(old), Some(new)) => Some(old.min(new)),
            (old, new) => old.or(new),
        };
        Ok(!was_banned && rec.banned_from.is_some())
    }

    /// Whether `miner` is banned at `current_block`.
    pub fn is_banned(&self, miner: &str, current_block: u64) -> bool {
        self.ban_ends_at(miner).is_some_and(|end| current_block < end)
    }

    /// First block after the miner's current (or last) ban, if it has one.
    pub fn ban_ends_at(&self, miner: &str) -> Option<u64> {
        let start = self.miners.get(miner)?.banned_from?;
        Some(start.saturating_add(self.params.ban_blocks))
    }

    /// Miners banned at `current_block`, sorted by peer id.
    pub fn banned(&self, current_block: u64) -> Vec<String> {
        self.miners.keys().filter(|m| self.is_banned(m, current_block)).cloned().collect()
    }

    /// The entries held against `miner` in its current episode (e.g. to pass on).
    pub fn entries(&self, miner: &str) -> Vec<&BanEntry> {
        self.miners.get(miner).map(|r| r.attestations.values().map(|a| &a.entry).collect()).unwrap_or_default()
    }

    /// What the list holds about `miner` (current episode's entries, ban start, floor), if any.
    pub fn miner(&self, miner: &str) -> Option<&MinerBans> {
        self.miners.get(miner)
    }

    /// Closes bans that have ended by `current_block` and drops entries too old to start a ban
    /// that would still be running; from then on such entries are ignored.
    pub fn prune(&mut self, current_block: u64) {
        let ban_blocks = self.params.ban_blocks;
        let stale_below = current_block.saturating_add(1).saturating_sub(ban_blocks);
        for rec in self.miners.values_mut() {
            if let Some(start) = rec.banned_from {
                let end = start.saturating_add(ban_blocks);
                if end <= current_block {
                    close_episode(rec, end);
                }
            }
            if rec.banned_from.is_none() && stale_below > rec.floor {
                rec.floor = stale_below;
                rec.attestations.retain(|_, a| a.entry.block >= stale_below);
            }
        }
    }
}

fn close_episode(rec: &mut MinerBans, end: u64) {
    rec.banned_from = None;
    rec.floor = rec.floor.max(end);
    rec.attestations.retain(|_, a| a.entry.block >= end);
}

/// The block of the first held entry, in `(block, validator)` order, at which the stake of the
/// entries so far reaches the threshold.
fn first_qualifying_block(rec: &MinerBans, min_attest_ppb: u64, total: u128) -> Option<u64> {
    let mut held: Vec<(u64, &str, u128)> =
        rec.attestations.iter().map(|(v, a)| (a.entry.block, v.as_str(), a.stake)).collect();
    held.sort_unstable();
    let need = ppb_of_ceil(total, min_attest_ppb);
    let mut sum: u128 = 0;
    for (block, _, stake) in held {
        sum = sum.saturating_add(stake);
        if min_attest_ppb == 0 || (sum > 0 && sum >= need) {
            return Some(block);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    struct Val {
        id: String,
        key: SigningKey,
    }

    impl Val {
        fn new(id: &str, seed: u8) -> Self {
            Self { id: id.to_string(), key: SigningKey::from_bytes(&[seed; 32]) }
        }
        fn pk(&self) -> [u8; 32] {
            self.key.verifying_key().to_bytes()
        }
        fn entry(&self, miner: &str, block: u64) -> BanEntry {
            let sign = |m: &[u8]| self.key.sign(m).to_bytes();
            BanEntry::new(1, miner, b"wrong logits for task t1", "proof mismatch", &self.id, block, &sign)
        }
    }

    const WEEK: u64 = 8640 * 7;

    #[test]
    fn one_verified_entry_bans_by_default() {
        let v = Val::new("val1", 1);
        let mut list = BanList::new(1, BanParams::default());
        assert!(!list.is_banned("m", 100));
        assert!(list.insert(v.entry("m", 100), &v.pk(), 0, 0).unwrap());
        assert!(list.is_banned("m", 100));
        assert!(list.is_banned("m", 100 + WEEK - 1));
        assert!(!list.is_banned("m", 100 + WEEK));
        assert!(!list.is_banned("other", 100));
        assert_eq!(list.banned(200), vec!["m".to_string()]);
        assert!(list.banned(100 + WEEK).is_empty());
    }

    #[test]
    fn entry_names_the_evidence_digest() {
        let e = Val::new("val1", 1).entry("m", 1);
        assert_eq!(e.evidence_digest, hex::encode(Sha256::digest(b"wrong logits for task t1")));
        assert!(e.matches_evidence(b"wrong logits for task t1"));
        assert!(!e.matches_evidence(b"something else"));
    }

    #[test]
    fn bad_signature_or_tampering_is_refused() {
        let (v, m) = (Val::new("val1", 1), Val::new("mallory", 2));
        let mut list = BanList::new(1, BanParams::default());
        assert_eq!(list.insert(v.entry("m", 1), &m.pk(), 0, 0), Err(BanError::BadSignature));
        let mut e = v.entry("m", 1);
        e.miner = "innocent".into();
        assert_eq!(list.insert(e, &v.pk(), 0, 0), Err(BanError::BadSignature));
        let mut e = v.entry("m", 1);
        e.reason = "other".into();
        assert_eq!(list.insert(e, &v.pk(), 0, 0), Err(BanError::BadSignature));
        let mut e = v.entry("m", 1);
        e.evidence_digest = evidence_digest(b"other evidence");
        assert_eq!(list.insert(e, &v.pk(), 0, 0), Err(BanError::BadSignature));
        let mut e = v.entry("m", 1);
        e.evidence_digest = "nothex".into();
        assert!(matches!(list.insert(e, &v.pk(), 0, 0), Err(BanError::Malformed(_))));
        assert!(list.banned(1).is_empty());
    }

    #[test]
    fn entry_for_another_brain_is_refused() {
        let v = Val::new("val1", 1);
        let mut list = BanList::new(2, BanParams::default());
        assert_eq!(list.insert(v.entry("m", 1), &v.pk(), 0, 0), Err(BanError::WrongBrain { expected: 2, got: 1 }));
    }

    #[test]
    fn stake_above_total_is_refused() {
        let v = Val::new("val1", 1);
        let mut list = BanList::new(1, BanParams::default());
        assert_eq!(
            list.insert(v.entry("m", 1), &v.pk(), 11, 10),
            Err(BanError::StakeExceedsTotal { stake: 11, total: 10 })
        );
    }

    #[test]
    fn threshold_needs_enough_stake_from_distinct_validators() {
        let vals: Vec<Val> = (1..=3).map(|i| Val::new(&format!("val{i}"), i)).collect();
        let params = BanParams { min_attest_ppb: 500_000_000, ..BanParams::default() };
        let mut list = BanList::new(1, params);
        // 30 of 100: not enough
        assert!(!list.insert(vals[0].entry("m", 10), &vals[0].pk(), 30, 100).unwrap());
        assert!(!list.is_banned("m", 10));
        // the same validator again counts once
        assert!(!list.insert(vals[0].entry("m", 11), &vals[0].pk(), 30, 100).unwrap());
        assert_eq!(list.entries("m").len(), 1);
        // 30 + 20 = 50 of 100: exactly half qualifies
        assert!(list.insert(vals[1].entry("m", 12), &vals[1].pk(), 20, 100).unwrap());
        assert!(list.is_banned("m", 12));
        assert_eq!(list.ban_ends_at("m"), Some(12 + WEEK));
        // more entries do not re-ban or extend
        assert!(!list.insert(vals[2].entry("m", 13), &vals[2].pk(), 50, 100).unwrap());
        assert_eq!(list.ban_ends_at("m"), Some(12 + WEEK));
    }

    #[test]
    fn zero_stake_validators_cannot_ban_when_a_threshold_is_set() {
        let v = Val::new("val1", 1);
        let mut list = BanList::new(1, BanParams { min_attest_ppb: 1, ..BanParams::default() });
        assert!(!list.insert(v.entry("m", 1), &v.pk(), 0, 0).unwrap());
        assert!(!list.insert(Val::new("val2", 2).entry("m", 1), &Val::new("val2", 2).pk(), 0, 100).unwrap());
        assert!(!list.is_banned("m", 1));
    }

    #[test]
    fn ban_start_does_not_depend_on_arrival_order() {
        let (a, b) = (Val::new("valA", 1), Val::new("valB", 2));
        let params = BanParams { min_attest_ppb: 600_000_000, ..BanParams::default() };
        let (ea, eb) = (a.entry("m", 100), b.entry("m", 150));
        let mut one = BanList::new(1, params.clone());
        one.insert(ea.clone(), &a.pk(), 40, 100).unwrap();
        one.insert(eb.clone(), &b.pk(), 40, 100).unwrap();
        let mut two = BanList::new(1, params);
        two.insert(eb, &b.pk(), 40, 100).unwrap();
        two.insert(ea, &a.pk(), 40, 100).unwrap();
        assert_eq!(one.ban_ends_at("m"), Some(150 + WEEK));
        assert_eq!(one, two);
    }

    #[test]
    fn entry_after_expiry_starts_a_new_ban() {
        let (a, b) = (Val::new("valA", 1), Val::new("valB", 2));
        let mut list = BanList::new(1, BanParams::default());
        assert!(list.insert(a.entry("m", 0), &a.pk(), 0, 0).unwrap());
        assert!(!list.is_banned("m", WEEK));
        // the same validator, new evidence after the ban ended: banned again
        assert!(list.insert(a.entry("m", WEEK + 5), &a.pk(), 0, 0).unwrap());
        assert!(list.is_banned("m", WEEK + 5));
        assert_eq!(list.ban_ends_at("m"), Some(2 * WEEK + 5));
        // a late entry from the first episode is ignored
        assert!(!list.insert(b.entry("m", 3), &b.pk(), 0, 0).unwrap());
        assert_eq!(list.entries("m").len(), 1);
        assert_eq!(list.ban_ends_at("m"), Some(2 * WEEK + 5));
    }

    #[test]
    fn old_entries_do_not_combine_with_new_ones_after_a_ban() {
        let vals: Vec<Val> = (1..=3).map(|i| Val::new(&format!("val{i}"), i)).collect();
        let params = BanParams { min_attest_ppb: 500_000_000, ban_blocks: 100 };
        let mut list = BanList::new(1, params);
        list.insert(vals[0].entry("m", 0), &vals[0].pk(), 30, 100).unwrap();
        assert!(list.insert(vals[1].entry("m", 1), &vals[1].pk(), 30, 100).unwrap());
        // ban ran [1, 101); a new entry of 30 alone does not ban again
        assert!(!list.insert(vals[2].entry("m", 200), &vals[2].pk(), 30, 100).unwrap());
        assert!(!list.is_banned("m", 200));
        // val1 again in the new episode counts afresh
        assert!(list.insert(vals[0].entry("m", 210), &vals[0].pk(), 30, 100).unwrap());
        assert_eq!(list.ban_ends_at("m"), Some(310));
    }

    #[test]
    fn prune_drops_stale_pending_entries_and_ended_bans() {
        let vals: Vec<Val> = (1..=2).map(|i| Val::new(&format!("val{i}"), i)).collect();
        let params = BanParams { min_attest_ppb: 500_000_000, ban_blocks: 100 };
        let mut list = BanList::new(1, params);
        list.insert(vals[0].entry("m", 0), &vals[0].pk(), 30, 100).unwrap();
        list.prune(100);
        assert!(list.entries("m").is_empty());
        // a fresh entry does not combine with the pruned one; the pruned one stays out
        assert!(!list.insert(vals[1].entry("m", 150), &vals[1].pk(), 30, 100).unwrap());
        assert!(!list.insert(vals[0].entry("m", 0), &vals[0].pk(), 30, 100).unwrap());
        assert_eq!(list.entries("m").len(), 1);

        let mut list = BanList::new(1, BanParams { min_attest_ppb: 0, ban_blocks: 100 });
        list.insert(vals[0].entry("x", 10), &vals[0].pk(), 0, 0).unwrap();
        list.prune(50);
        assert!(list.is_banned("x", 50));
        list.prune(110);
        assert!(!list.is_banned("x", 110));
        assert_eq!(list.miner("x").unwrap().banned_from, None);
        assert!(!list.insert(vals[1].entry("x", 20), &vals[1].pk(), 0, 0).unwrap());
    }

    #[test]
    fn huge_stakes_do_not_overflow() {
        let (a, b) = (Val::new("valA", 1), Val::new("valB", 2));
        let mut list = BanList::new(1, BanParams { min_attest_ppb: 2 * PPB, ..BanParams::default() });
        let total = u128::MAX;
        assert!(!list.insert(a.entry("m", 1), &a.pk(), u128::MAX - 1, total).unwrap());
        assert!(list.insert(b.entry("m", 2), &b.pk(), 1, total).unwrap());
        assert_eq!(ppb_of_ceil(u128::MAX, PPB), u128::MAX);
        assert_eq!(ppb_of_ceil(10, 500_000_000), 5);
        assert_eq!(ppb_of_ceil(11, 500_000_000), 6);
    }

    #[test]
    fn list_serde_round_trip() {
        let (a, b) = (Val::new("valA", 1), Val::new("valB", 2));
        let mut list = BanList::new(1, BanParams { min_attest_ppb: 400_000_000, ..BanParams::default() });
        list.insert(a.entry("m1", 5), &a.pk(), u128::MAX / 3, u128::MAX / 2).unwrap();
        list.insert(a.entry("m2", 6), &a.pk(), 10, 100).unwrap();
        list.insert(b.entry("m2", 7), &b.pk(), 40, 100).unwrap();
        let json = serde_json::to_string(&list).unwrap();
        let back: BanList = serde_json::from_str(&json).unwrap();
        assert_eq!(back, list);
        assert_eq!(back.banned(7), vec!["m1".to_string(), "m2".to_string()]);
    }

    proptest! {
        /// With the default threshold, every miner with an entry in the last `ban_blocks` is
        /// banned, whatever the arrival order within an episode.
        #[test]
        fn default_threshold_bans_from_earliest_entry(blocks in prop::collection::vec(0u64..1000, 1..8)) {
            let vals: Vec<Val> = (0..blocks.len()).map(|i| Val::new(&format!("v{i}"), i as u8 + 1)).collect();
            let mut list = BanList::new(1, BanParams { min_attest_ppb: 0, ban_blocks: 1_000_000 });
            for (v, b) in vals.iter().zip(&blocks) {
                list.insert(v.entry("m", *b), &v.pk(), 0, 0).unwrap();
            }
            let first = *blocks.iter().min().unwrap();
            prop_assert_eq!(list.ban_ends_at("m"), Some(first + 1_000_000));
        }
    }
}
