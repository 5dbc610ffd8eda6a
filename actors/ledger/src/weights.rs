//! Validator weights on the ledger, and the consensus epoch that turns them into emission.
//!
//! Weights reach the ledger through the audit's commit-reveal ([`crate::audit::weights`]) as two
//! signed transactions, so every validator applies the same weights at the same height:
//!
//! * `CommitWeights { brain, epoch, commitment }` is accepted only in a block of `epoch`
//!   (`height / weights_epoch_blocks == epoch`) from an account with validator stake in the
//!   Brain. `commitment` is [`WeightVector::commitment`] of the vector with a secret salt.
//! * `RevealWeights { brain, epoch, salt, weights }` is accepted only in a block of epoch
//!   `epoch + 1`, and only if `WeightVector { brain, epoch, validator: sender, weights }` with
//!   `salt` hashes to the commitment. A copier who reads a reveal can no longer commit for that
//!   epoch (its blocks are over), so copied weights are always one epoch stale.
//!
//! At settlement, [`crate::period::brain_periods`] runs `economics::consensus::epoch` once per Brain over the
//! vectors revealed for epochs that ended in the period or the epoch before it (older vectors no
//! longer count), with each validator's stake in the Brain (`LedgerState::validator_stake`) and
//! the bonds the previous settlement left. The result ([`crate::period::BrainPeriod`]s) is what
//! `settlement::settle` mints emission by; the new bonds travel in the settlement record.
//!
//! This module holds the weight part of the state; the commit and reveal transitions are in
//! [`crate::state`], the period's consensus in [`crate::period`].
//!
//! Pure: no network, no storage; every map is a `BTreeMap` (same bytes on every peer).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Enc, Hash};
use crate::economics::{BrainId, EconomicsParams, Height, Ppb};

/// Bonds of one Brain: validator → miner → ppb (column-normalised, as the epoch returns them).
pub type Bonds = BTreeMap<String, BTreeMap<String, Ppb>>;

/// A validator's commitment for one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightCommit {
    /// Weights epoch the commitment is for.
    pub epoch: u64,
    /// sha256 of the canonical weight vector followed by the secret salt.
    #[serde(with = "super::hex_array")]
    pub commitment: Hash,
}

/// A validator's last revealed weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedWeights {
    /// Weights epoch the vector was committed and revealed for.
    pub epoch: u64,
    /// `(miner, ppb)`, sorted by miner, summing to 10⁹ (or empty).
    pub weights: Vec<(String, u64)>,
}

/// The weight part of the ledger state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WeightsState {
    /// Brain → validator → its open commitments, oldest first: at most this epoch's and the
    /// previous one's (a validator commits to epoch e+1 in the block where it reveals e).
    pub commits: BTreeMap<BrainId, BTreeMap<String, Vec<WeightCommit>>>,
    /// Brain → validator → its last reveal.
    pub revealed: BTreeMap<BrainId, BTreeMap<String, RevealedWeights>>,
    /// Brain → the bonds after the last settlement that ran its consensus.
    pub bonds: BTreeMap<BrainId, Bonds>,
}

impl WeightsState {
    /// Whether no commitment, reveal or bonds are held.
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty() && self.revealed.is_empty() && self.bonds.is_empty()
    }

    /// Appends the canonical encoding (part of the state digest).
    pub fn encode(&self, e: &mut Enc) {
        e.u64(self.commits.len() as u64);
        for (b, per) in &self.commits {
            e.u16(*b).u64(per.len() as u64);
            for (v, cs) in per {
                e.str(v).u64(cs.len() as u64);
                for c in cs {
                    e.u64(c.epoch).raw(&c.commitment);
                }
            }
        }
        e.u64(self.revealed.len() as u64);
        for (b, per) in &self.revealed {
            e.u16(*b).u64(per.len() as u64);
            for (v, r) in per {
                e.str(v).u64(r.epoch).u64(r.weights.len() as u64);
                for (m, w) in &r.weights {
                    e.str(m).u64(*w);
                }
            }
        }
        e.u64(self.bonds.len() as u64);
        for (b, rows) in &self.bonds {
            e.u16(*b).u64(rows.len() as u64);
            for (v, row) in rows {
                e.str(v).u64(row.len() as u64);
                for (m, x) in row {
                    e.str(m).u64(*x);
                }
            }
        }
    }
}

/// Epoch of a block height (`weights_epoch_blocks` of 0 counts as 1).
pub fn epoch_of(height: Height, p: &EconomicsParams) -> u64 {
    height / p.weights_epoch_blocks.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::weights::WeightVector;
    use crate::economics::emission::NoTft;
    use crate::economics::tokens;
    use crate::economics::{epoch, BrainStanding, EpochInput, ONE};
    use crate::period::brain_periods;
    use crate::state::StakeKey;
    use crate::state::{LedgerState, TxError};

    fn params() -> EconomicsParams {
        EconomicsParams { weights_epoch_blocks: 10, brain_reward_stake_cap: None, ..EconomicsParams::default() }
    }

    /// Brain 0 (reserved, owner "labs") with validators staked `stakes`.
    fn state(stakes: &[(&str, u128)]) -> LedgerState {
        let p = params();
        let vs: BTreeMap<String, u128> = stakes.iter().map(|(v, s)| (v.to_string(), *s)).collect();
        LedgerState::genesis_with_validators(BTreeMap::new(), "labs", 0, &vs, &p).unwrap()
    }

    fn vector(ws: &[(&str, u64)]) -> Vec<(String, u64)> {
        ws.iter().map(|(m, w)| (m.to_string(), *w)).collect()
    }

    fn commitment(v: &str, ep: u64, ws: &[(String, u64)], salt: &Hash) -> Hash {
        WeightVector { brain: 0, epoch: ep, validator: v.into(), weights: ws.to_vec() }.commitment(salt)
    }

    #[test]
    fn genesis_validators_are_registered_and_staked() {
        let s = state(&[("a", tokens(3)), ("b", tokens(1))]);
        assert_eq!(s.validator_stake(0, "a"), tokens(3));
        assert_eq!(s.brain_validators(0), vec![("a".into(), tokens(3)), ("b".into(), tokens(1))]);
        assert_eq!(s.genesis_supply, tokens(4));
        assert!(s.supply_is_conserved());
        assert_eq!(s.stake_of(&StakeKey { brain: 0, validator: Some("a".into()), staker: "a".into() }), tokens(3));
    }

    #[test]
    fn reveal_must_open_the_commit_in_the_next_epoch() {
        let p = params();
        let mut s = state(&[("a", tokens(1))]);
        let ws = vector(&[("m1", 600_000_000), ("m2", 400_000_000)]);
        let salt = [7u8; 32];
        let c = commitment("a", 2, &ws, &salt);
        // epoch 2 is heights 20..=29
        assert_eq!(s.commit_weights("a", 0, 2, c, 19, &p), Err(TxError::WrongEpoch { epoch: 2, current: 1 }));
        assert_eq!(s.commit_weights("a", 0, 2, c, 30, &p), Err(TxError::WrongEpoch { epoch: 2, current: 3 }));
        assert!(
            matches!(s.commit_weights("x", 0, 2, c, 21, &p), Err(TxError::NotAValidator { .. })),
            "no stake, no weights"
        );
        let before = s.clone();
        assert_eq!(s.commit_weights("a", 0, 2, c, 21, &p), Ok(()));
        assert_eq!(s.commit_weights("a", 0, 2, c, 22, &p), Err(TxError::AlreadyCommitted { epoch: 2 }));
        assert_ne!(s.digest(), before.digest(), "the commitment is part of the state");
        // too early (still epoch 2), too late (epoch 4), wrong salt, other weights
        assert_eq!(s.reveal_weights("a", 0, 2, &salt, &ws, 29, &p), Err(TxError::WrongEpoch { epoch: 2, current: 2 }));
        assert_eq!(s.reveal_weights("a", 0, 2, &salt, &ws, 40, &p), Err(TxError::WrongEpoch { epoch: 2, current: 4 }));
        assert_eq!(s.reveal_weights("a", 0, 2, &[8u8; 32], &ws, 31, &p), Err(TxError::CommitmentMismatch));
        let other = vector(&[("m1", 1_000_000_000)]);
        assert_eq!(s.reveal_weights("a", 0, 2, &salt, &other, 31, &p), Err(TxError::CommitmentMismatch));
        assert_eq!(s.reveal_weights("a", 0, 1, &salt, &ws, 31, &p), Err(TxError::WrongEpoch { epoch: 1, current: 3 }));
        let unsorted = vector(&[("m2", 400_000_000), ("m1", 600_000_000)]);
        assert!(matches!(s.reveal_weights("a", 0, 2, &salt, &unsorted, 31, &p), Err(TxError::BadWeights(_))));
        let short = vector(&[("m1", 600_000_000)]);
        assert!(matches!(s.reveal_weights("a", 0, 2, &salt, &short, 31, &p), Err(TxError::BadWeights(_))));
        assert_eq!(s.reveal_weights("a", 0, 2, &salt, &ws, 31, &p), Ok(()));
        assert_eq!(s.weights.revealed[&0]["a"], RevealedWeights { epoch: 2, weights: ws.clone() });
        assert!(s.weights.commits.is_empty(), "a reveal closes its commit");
        assert_eq!(
            s.reveal_weights("a", 0, 2, &salt, &ws, 32, &p),
            Err(TxError::NoCommit { epoch: 2 }),
            "no second reveal"
        );
    }

    #[test]
    fn committing_to_the_next_epoch_keeps_the_previous_commit_open_for_its_reveal() {
        // The auditor commits to epoch e+1 and reveals e in the same tick: the two transactions
        // land in one block, the commit first.
        let p = params();
        let mut s = state(&[("a", tokens(1))]);
        let (ws2, ws3) = (vector(&[("m1", 1_000_000_000)]), vector(&[("m2", 1_000_000_000)]));
        let (salt2, salt3) = ([2u8; 32], [3u8; 32]);
        s.commit_weights("a", 0, 2, commitment("a", 2, &ws2, &salt2), 20, &p).unwrap();
        s.commit_weights("a", 0, 3, commitment("a", 3, &ws3, &salt3), 30, &p).unwrap();
        assert_eq!(s.reveal_weights("a", 0, 2, &salt2, &ws2, 30, &p), Ok(()));
        assert_eq!(s.weights.commits[&0]["a"].len(), 1, "epoch 3's commit stays open");
        assert_eq!(s.reveal_weights("a", 0, 3, &salt3, &ws3, 40, &p), Ok(()));
        assert!(s.weights.commits.is_empty());
        // An unrevealed commit is dropped once it can no longer be revealed.
        s.commit_weights("a", 0, 5, commitment("a", 5, &ws2, &salt2), 50, &p).unwrap();
        s.commit_weights("a", 0, 7, commitment("a", 7, &ws2, &salt2), 70, &p).unwrap();
        assert_eq!(s.weights.commits[&0]["a"].iter().map(|c| c.epoch).collect::<Vec<_>>(), vec![7]);
    }

    fn reveal(s: &mut LedgerState, v: &str, ep: u64, ws: &[(&str, u64)], p: &EconomicsParams) {
        let ws = vector(ws);
        let salt = crate::canon::sha256(v.as_bytes());
        let c = commitment(v, ep, &ws, &salt);
        let eb = p.weights_epoch_blocks;
        s.commit_weights(v, 0, ep, c, ep * eb, p).unwrap();
        s.reveal_weights(v, 0, ep, &salt, &ws, (ep + 1) * eb, p).unwrap();
    }

    /// The consensus the ledger runs is `economics::epoch` over the revealed vectors and the
    /// ledger's stakes: the 3-validator, 4-miner hand example of the consensus tests.
    #[test]
    fn periods_run_the_epoch_over_revealed_weights_and_ledger_stake() {
        let mut p = params();
        p.active_validator_fraction = ONE;
        let mut s = state(&[("v1", tokens(30)), ("v2", tokens(20)), ("v3", tokens(10))]);
        let honest = [("m1", 100_000_000), ("m2", 200_000_000), ("m3", 300_000_000), ("m4", 400_000_000)];
        reveal(&mut s, "v1", 3, &honest, &p);
        reveal(&mut s, "v2", 3, &honest, &p);
        reveal(&mut s, "v3", 3, &[("m1", 1_000_000_000)], &p);
        let got = brain_periods(&s, 40, 50, &p).unwrap();
        assert_eq!(got.len(), 1);
        let bp = &got[0].period;
        assert_eq!(bp.miners, vec!["m1", "m2", "m3", "m4"]);
        assert_eq!(bp.validators, vec!["v1", "v2", "v3"]);
        let direct = epoch(
            &EpochInput {
                weights: vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4], vec![1, 0, 0, 0]],
                stake: vec![tokens(30), tokens(20), tokens(10)],
                prev_bonds: vec![],
                beta: 0,
            },
            &NoTft,
            &p,
        )
        .unwrap();
        assert_eq!(bp.incentive, direct.incentive);
        assert_eq!(bp.dividends, direct.dividends);
        assert_eq!(bp.validator_stake, vec![tokens(30), tokens(20), tokens(10)]);
        assert_eq!(bp.standing, BrainStanding { stake: tokens(60), performance: ONE });
        // v3 supports only m1: clipped to consensus, m1 stays at its honest share
        assert_eq!(direct.consensus[0], 100_000_000);
        // the next period starts from these bonds
        let mut s2 = s.clone();
        s2.weights.bonds.insert(0, got[0].bonds.clone());
        let again = brain_periods(&s2, 40, 50, &p).unwrap();
        let direct2 = epoch(
            &EpochInput {
                weights: vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4], vec![1, 0, 0, 0]],
                stake: vec![tokens(30), tokens(20), tokens(10)],
                prev_bonds: direct.bonds.clone(),
                beta: 0,
            },
            &NoTft,
            &p,
        )
        .unwrap();
        assert_eq!(again[0].period.dividends, direct2.dividends);
    }

    #[test]
    fn stale_weights_and_unstaked_validators_do_not_count() {
        let p = params();
        let mut s = state(&[("v1", tokens(30)), ("v2", tokens(20))]);
        reveal(&mut s, "v1", 1, &[("m1", 1_000_000_000)], &p);
        reveal(&mut s, "v2", 5, &[("m2", 1_000_000_000)], &p);
        // period [60, 70): epoch 6; epochs 4 and later count
        let got = brain_periods(&s, 60, 70, &p).unwrap();
        assert_eq!(got[0].period.validators, vec!["v2"]);
        assert_eq!(got[0].period.miners, vec!["m2"]);
        // much later: nothing counts, the Brain earns nothing
        assert!(brain_periods(&s, 200, 210, &p).unwrap().is_empty());
        // a validator that unstaked is dropped
        s.stakes.retain(|k, _| k.validator.as_deref() != Some("v2"));
        assert!(brain_periods(&s, 60, 70, &p).unwrap().is_empty());
    }
}
