//! The consensus epoch that settlement mints emission by: per Brain, the validators' revealed
//! weights ([`crate::weights`]) and their stake in the Brain go through
//! `economics::consensus::epoch`; the result ([`BrainPeriod`]) is what `settlement::settle`
//! divides emission by, and the new bonds travel in the settlement record.
//!
//! Pure: no network, no storage; every map is a `BTreeMap` (same bytes on every peer).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::economics::emission::{tft_beta, NoTft};
use crate::economics::{
    epoch, Amount, BrainId, BrainStanding, EconomicsParams, EpochInput, EpochOutput, Height, Ppb, ONE,
};
use crate::state::{LedgerState, TxError};
use crate::weights::{epoch_of, Bonds, RevealedWeights};

/// One Brain's consensus result for the period (from `economics::consensus::epoch`), with the
/// peer ids behind the vector positions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrainPeriod {
    /// The Brain.
    pub brain: BrainId,
    /// Its stake and performance, for sharing the block reward among Brains.
    pub standing: BrainStanding,
    /// Miner peer ids, one per `incentive` entry (the epoch's columns).
    pub miners: Vec<String>,
    /// Each miner's incentive, ppb.
    pub incentive: Vec<Ppb>,
    /// Validator peer ids, one per `dividends` and `validator_stake` entry (the epoch's rows).
    pub validators: Vec<String>,
    /// Each validator's dividends, ppb.
    pub dividends: Vec<Ppb>,
    /// Each validator's active stake, in base units.
    pub validator_stake: Vec<Amount>,
}

impl BrainPeriod {
    /// From an epoch's output; `miners` and `validators` name its columns and rows.
    pub fn from_epoch(
        brain: BrainId,
        standing: BrainStanding,
        miners: Vec<String>,
        validators: Vec<String>,
        out: &EpochOutput,
    ) -> Self {
        Self {
            brain,
            standing,
            miners,
            incentive: out.incentive.clone(),
            validators,
            dividends: out.dividends.clone(),
            validator_stake: out.active_stake.clone(),
        }
    }
}

/// One Brain's consensus over the settlement period `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodConsensus {
    /// The Brain's consensus result and standing, as settlement consumes it.
    pub period: BrainPeriod,
    /// The Brain's bonds after this epoch, to replace the state's when the record is applied.
    pub bonds: Bonds,
}

/// Runs the consensus epoch of every Brain that has weights counting for the period `[from,
/// to)`: vectors revealed for an epoch `e` with `e + 1 ≥ epoch_of(from) - 1` by validators that
/// still hold stake in the Brain. Brains without any such vector are left out (they earn no
/// emission this period).
///
/// Each Brain's standing for the block-reward share is its total stake and, as performance, the
/// share of its miners that are in consensus.
pub fn brain_periods(
    state: &LedgerState,
    from: Height,
    to: Height,
    p: &EconomicsParams,
) -> Result<Vec<PeriodConsensus>, TxError> {
    let oldest = epoch_of(from, p).saturating_sub(2);
    let mut out = Vec::new();
    for (brain, per) in &state.weights.revealed {
        if state.brains.get(*brain).is_err() {
            continue;
        }
        let rows: Vec<(&String, &RevealedWeights, u128)> = per
            .iter()
            .filter(|(_, r)| r.epoch >= oldest && !r.weights.is_empty())
            .map(|(v, r)| (v, r, state.validator_stake(*brain, v)))
            .filter(|(_, _, s)| *s > 0)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut miners: Vec<String> =
            rows.iter().flat_map(|(_, r, _)| r.weights.iter().map(|(m, _)| m.clone())).collect();
        miners.sort();
        miners.dedup();
        let col: BTreeMap<&str, usize> = miners.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
        let validators: Vec<String> = rows.iter().map(|(v, _, _)| (*v).clone()).collect();
        let mut w = vec![vec![0u64; miners.len()]; rows.len()];
        for (i, (_, r, _)) in rows.iter().enumerate() {
            for (m, x) in &r.weights {
                if let Some(j) = col.get(m.as_str()) {
                    w[i][*j] = *x;
                }
            }
        }
        let prev = state.weights.bonds.get(brain);
        let prev_bonds: Vec<Vec<Ppb>> = match prev {
            Some(b) if !b.is_empty() => validators
                .iter()
                .map(|v| miners.iter().map(|m| b.get(v).and_then(|row| row.get(m)).copied().unwrap_or(0)).collect())
                .collect(),
            _ => Vec::new(),
        };
        let input = EpochInput {
            weights: w,
            stake: rows.iter().map(|(_, _, s)| *s).collect(),
            prev_bonds,
            beta: tft_beta(to, p),
        };
        let o = epoch(&input, &NoTft, p)?;
        let in_cons = o.in_consensus.iter().filter(|c| **c).count() as u64;
        let performance = if miners.is_empty() { 0 } else { (in_cons * ONE / miners.len() as u64).min(ONE) };
        let standing = BrainStanding { stake: state.brain_stake(*brain), performance };
        let mut bonds = Bonds::new();
        for (i, v) in validators.iter().enumerate() {
            let row: BTreeMap<String, Ppb> = miners
                .iter()
                .cloned()
                .zip(o.bonds.get(i).cloned().unwrap_or_default())
                .filter(|(_, x)| *x > 0)
                .collect();
            if !row.is_empty() {
                bonds.insert(v.clone(), row);
            }
        }
        out.push(PeriodConsensus { period: BrainPeriod::from_epoch(*brain, standing, miners, validators, &o), bonds });
    }
    Ok(out)
}
