//! One Yuma-style consensus epoch (whitepaper §3.4; anchor: Bittensor's Yuma consensus, see
//! `research/network-anchors.md` §1.1), in deterministic integer arithmetic.
//!
//! Inputs: a weight matrix W (validators × miners, raw non-negative integers such as the u16
//! scores validators publish), validator stake S ([`Amount`]), the previous bonds B (ppb) and
//! β(t). Steps:
//!
//! 1. **Active validators**: only the top `active_validator_fraction` (70%) by stake count
//!    (§3.2.3, [`super::brains::active_validators`]); the others' stake is treated as 0.
//! 2. **Row-normalise** W (each nonzero row sums to exactly [`ONE`]).
//! 3. **Prerank** Pⱼ = Σᵢ Sᵢ·Wᵢⱼ.
//! 4. **Consensus** W̄ⱼ = the largest w such that validators holding ≥ κ of active stake gave
//!    miner j a weight ≥ w (stake-weighted κ-quantile, κ = 0.5: the stake-weighted median from
//!    the top; identical to subtensor's `weighted_median_col` with `minority = 1 − κ`).
//! 5. **Clip** W̃ᵢⱼ = min(Wᵢⱼ, W̄ⱼ); validator trust Tᵛᵢ = Σⱼ W̃ᵢⱼ.
//! 6. **Rank** Rⱼ = Σᵢ Sᵢ·W̃ᵢⱼ; miner trust Tⱼ = Rⱼ / Pⱼ.
//! 7. **In consensus** (§3.4.1): miner j has nonzero edges Wᵢⱼ > 0 from more than 50% of stake.
//! 8. **Incentive** I = R·C + β(t)·Accuracy(TFT), normalised; C = 1 in consensus, else
//!    `out_of_consensus_factor` (default 0). With β = 0 and every miner in consensus this is
//!    exactly Yuma's Iⱼ = Rⱼ / ΣR.
//! 9. **Bonds**: ΔBᵢⱼ = Sᵢ·W̃ᵢⱼ / Rⱼ; Bᵢⱼ ← α·ΔBᵢⱼ + (1 − α)·B_prevᵢⱼ, column-normalised
//!    (α = 0.1; bonds penalty 1, i.e. bonds follow the clipped weights, as subtensor's default).
//! 10. **Dividends** Dᵢ = Σⱼ Bᵢⱼ·Iⱼ, normalised.
//! 11. **Credits** ΔCⱼ = (W̃·S)ⱼ = Rⱼ, over the *clipped* weights so a minority cannot inflate
//!     them (§3.4.3), in stake base units.
//!
//! All normalisations use largest remainder, so every normalised vector sums to exactly ONE
//! (or is all zero), and the result is bit-identical on every peer.

use serde::{Deserialize, Serialize};

use super::brains::active_validators;
use super::distribution::split_by_weights;
use super::emission::{combined_incentive, AccuracyOracle};
use super::params::EconomicsParams;
use super::{mul_div_floor, Amount, EconomicsError, Ppb, Result, ONE};

/// What one epoch needs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EpochInput {
    /// W: one row per validator, one column per miner; raw non-negative weights (any scale).
    pub weights: Vec<Vec<u64>>,
    /// S: each validator's stake in base units.
    pub stake: Vec<Amount>,
    /// Bonds from the previous epoch (validators × miners, ppb). Empty for the first epoch.
    /// The caller zeroes the column of a miner slot that was re-registered since.
    pub prev_bonds: Vec<Vec<Ppb>>,
    /// β(t) for this epoch ([`super::emission::tft_beta`]).
    pub beta: Ppb,
}

/// Everything an epoch computes. Vectors indexed by validator are `v`-long, by miner `m`-long.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EpochOutput {
    /// Validator counted as active (top 70% by stake, nonzero stake).
    pub active: Vec<bool>,
    /// Stake used in the epoch (0 for inactive validators).
    pub active_stake: Vec<Amount>,
    /// Row-normalised weights W (ppb; nonzero rows sum to ONE).
    pub weights: Vec<Vec<Ppb>>,
    /// Pⱼ = Σᵢ Sᵢ·Wᵢⱼ in stake-base-units × ppb.
    pub prerank: Vec<u128>,
    /// W̄ⱼ, the stake-weighted κ-quantile of column j (ppb).
    pub consensus: Vec<Ppb>,
    /// W̃ = min(W, W̄) (ppb).
    pub clipped: Vec<Vec<Ppb>>,
    /// Rⱼ = Σᵢ Sᵢ·W̃ᵢⱼ in stake-base-units × ppb.
    pub rank: Vec<u128>,
    /// R normalised to sum to ONE (ppb).
    pub rank_share: Vec<Ppb>,
    /// Miner trust Tⱼ = Rⱼ / Pⱼ (ppb; 0 when Pⱼ = 0).
    pub trust: Vec<Ppb>,
    /// Validator trust Tᵛᵢ = Σⱼ W̃ᵢⱼ (ppb).
    pub validator_trust: Vec<Ppb>,
    /// Miner has nonzero edges from more than `consensus_stake_threshold` of active stake.
    pub in_consensus: Vec<bool>,
    /// Iⱼ (ppb; sums to ONE, or all zero when nobody earned anything).
    pub incentive: Vec<Ppb>,
    /// Bonds after the EMA, column-normalised (ppb).
    pub bonds: Vec<Vec<Ppb>>,
    /// Dᵢ (ppb; sums to ONE, or all zero).
    pub dividends: Vec<Ppb>,
    /// ΔCⱼ = (W̃·S)ⱼ in stake base units (rounded down).
    pub credits: Vec<Amount>,
}

/// Runs one epoch. Errors on ragged matrices or mismatched lengths.
pub fn epoch(input: &EpochInput, accuracy: &dyn AccuracyOracle, p: &EconomicsParams) -> Result<EpochOutput> {
    let nv = input.weights.len();
    if input.stake.len() != nv {
        return Err(EconomicsError::Dimension("stake length != number of weight rows"));
    }
    let nm = input.weights.first().map(|r| r.len()).unwrap_or(0);
    if input.weights.iter().any(|r| r.len() != nm) {
        return Err(EconomicsError::Dimension("ragged weight matrix"));
    }
    let have_prev = !input.prev_bonds.is_empty();
    if have_prev && (input.prev_bonds.len() != nv || input.prev_bonds.iter().any(|r| r.len() != nm)) {
        return Err(EconomicsError::Dimension("prev_bonds shape != weights shape"));
    }
    let one = ONE as u128;

    // 1. active validators
    let active = active_validators(&input.stake, p.active_validator_fraction);
    let s: Vec<Amount> = input.stake.iter().zip(&active).map(|(st, a)| if *a { *st } else { 0 }).collect();
    let total: u128 = s.iter().try_fold(0u128, |acc, x| acc.checked_add(*x)).ok_or(EconomicsError::Overflow)?;
    // stake × ONE must fit u128 in the sums below
    total.checked_mul(one).ok_or(EconomicsError::Overflow)?;

    // 2. row-normalise
    let mut w: Vec<Vec<Ppb>> = Vec::with_capacity(nv);
    for row in &input.weights {
        let raw: Vec<u128> = row.iter().map(|x| *x as u128).collect();
        let norm = if raw.iter().all(|x| *x == 0) {
            vec![0; nm]
        } else {
            split_by_weights(one, &raw)?.into_iter().map(|x| x as Ppb).collect()
        };
        w.push(norm);
    }

    // 3. prerank
    let col_dot = |m: &Vec<Vec<Ppb>>, j: usize| -> u128 { (0..nv).map(|i| s[i] * m[i][j] as u128).sum() };
    let prerank: Vec<u128> = (0..nm).map(|j| col_dot(&w, j)).collect();

    // 4. consensus: stake-weighted κ-quantile from the top
    let threshold = total * p.kappa as u128; // compared against cumulative stake × ONE
    let mut consensus = vec![0 as Ppb; nm];
    let mut col: Vec<(Ppb, u128)> = Vec::with_capacity(nv);
    for (j, c) in consensus.iter_mut().enumerate() {
        col.clear();
        col.extend((0..nv).filter(|i| s[*i] > 0).map(|i| (w[i][j], s[i])));
        col.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
        let mut cum: u128 = 0;
        for (wij, si) in &col {
            cum += si;
            if cum * one >= threshold {
                *c = *wij;
                break;
            }
        }
    }

    // 5. clip
    let clipped: Vec<Vec<Ppb>> =
        w.iter().map(|row| row.iter().zip(&consensus).map(|(x, c)| *x.min(c)).collect()).collect();
    let validator_trust: Vec<Ppb> = clipped.iter().map(|row| row.iter().sum()).collect();

    // 6. rank, trust
    let rank: Vec<u128> = (0..nm).map(|j| col_dot(&clipped, j)).collect();
    let rank_share = normalise(&rank)?;
    let trust: Vec<Ppb> = rank
        .iter()
        .zip(&prerank)
        .map(|(r, pr)| if *pr == 0 { Ok(0) } else { mul_div_floor(*r, one, *pr).map(|t| t as Ppb) })
        .collect::<Result<_>>()?;

    // 7. in consensus: nonzero edges from > threshold of stake
    let in_consensus: Vec<bool> = (0..nm)
        .map(|j| {
            // an edge is any nonzero raw weight (even one that rounds to 0 ppb)
            let edge_stake: u128 = (0..nv).filter(|i| input.weights[*i][j] > 0).map(|i| s[i]).sum();
            total > 0 && edge_stake * one > total * p.consensus_stake_threshold as u128
        })
        .collect();

    // 8. incentive
    let c_factor: Vec<Ppb> = in_consensus.iter().map(|b| if *b { ONE } else { p.out_of_consensus_factor }).collect();
    let incentive = combined_incentive(&rank_share, &c_factor, input.beta, accuracy)?;

    // 9. bonds: ΔB = column-normalised Sᵢ·W̃ᵢⱼ; B = α·ΔB + (1−α)·B_prev, column-normalised.
    // (When Rⱼ = 0 there is no new bond information: the previous bonds only decay, and the
    // normalisation restores them unchanged.)
    let alpha = p.bond_alpha as u128;
    let mut bonds = vec![vec![0 as Ppb; nm]; nv];
    for j in 0..nm {
        let delta: Vec<u128> = if rank[j] > 0 {
            split_by_weights(one, &(0..nv).map(|i| s[i] * clipped[i][j] as u128).collect::<Vec<_>>())?
        } else {
            vec![0; nv]
        };
        let ema: Vec<u128> = (0..nv)
            .map(|i| {
                let prev = if have_prev { input.prev_bonds[i][j] as u128 } else { 0 };
                alpha * delta[i] + (one - alpha) * prev // ≤ ONE² + ONE·u64::MAX
            })
            .collect();
        if ema.iter().any(|x| *x > 0) {
            let col = split_by_weights(one, &ema)?;
            for i in 0..nv {
                bonds[i][j] = col[i] as Ppb;
            }
        }
    }

    // 10. dividends
    let div_raw: Vec<u128> =
        (0..nv).map(|i| (0..nm).map(|j| bonds[i][j] as u128 * incentive[j] as u128).sum()).collect();
    let dividends = normalise(&div_raw)?;

    // 11. credits
    let credits: Vec<Amount> = rank.iter().map(|r| r / one).collect();

    Ok(EpochOutput {
        active,
        active_stake: s,
        weights: w,
        prerank,
        consensus,
        clipped,
        rank,
        rank_share,
        trust,
        validator_trust,
        in_consensus,
        incentive,
        bonds,
        dividends,
        credits,
    })
}

fn normalise(v: &[u128]) -> Result<Vec<Ppb>> {
    if v.iter().all(|x| *x == 0) {
        return Ok(vec![0; v.len()]);
    }
    Ok(split_by_weights(ONE as u128, v)?.into_iter().map(|x| x as Ppb).collect())
}

#[cfg(test)]
mod tests;
