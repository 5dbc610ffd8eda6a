//! The economics-only fast mode of the simulator: emission, halving and Yuma consensus over long
//! horizons (years of blocks) without a network, a model or actors.
//!
//! # What it simulates
//!
//! One Brain with a fixed set of validators (stake drawn from the seed) and miners (a true
//! quality each, drawn from the seed). The chain is cut into epochs of `epoch_blocks` blocks;
//! for every epoch `[from, to)` it runs the same pure functions of `brainmesh_ledger::economics`
//! that ledger settlement runs (`settlement::settle` and `period::brain_periods`):
//!
//! 1. every validator sets a weight vector, by behaviour:
//!    * **honest**: each miner's true quality plus seeded noise, clamped to `[0, 1]` and
//!      quantised to the `u16` scale validators publish;
//!    * **copier**: the stake-weighted consensus vector W̄ of `copy_lag_epochs` epochs ago (the
//!      newest one it could have read), uniform before there is one;
//!    * **colluder**: all weight, equally, on the adversarial miners;
//! 2. `consensus::epoch` with the stake, the previous epoch's bonds (carried from epoch to epoch)
//!    and β(t) = `tft_beta(to)`;
//! 3. `issuance_between(from, to)` (the halving schedule);
//! 4. `brain_reward_shares` with the Brain's standing (its stake; performance = share of its
//!    miners in consensus, as `brain_periods` computes it);
//! 5. `split_brain_emission` with the Brain record's `miner_share` and owner eligibility: owner
//!    25%, miners by incentive, validators by dividends (with the ledger's fallbacks).
//!
//! Every amount is an integer number of base units ([`Amount`] = `u128`, 10⁹ per token) and is
//! credited to a per-peer balance. **Invariant, checked every epoch**: owner + Σ miners +
//! Σ validators + withheld + unallocated == the epoch's issuance, exactly. There is no dust:
//! every split is the ledger's largest-remainder split, which is exact. The only issuance that
//! is not paid is what the ledger itself does not mint: `unallocated` (no miner in consensus, so
//! the Brain's performance is 0) and `withheld` (a stake-method owner's share during the lock);
//! both are reported as `not_minted`, and `minted + not_minted == issuance` is checked per
//! epoch and in total, as are `Σ issuance == cumulative_issuance(end)` and
//! `Σ balances == minted`.
//!
//! # What it does not simulate
//!
//! Task fees, receipts and their settlement; registration, deregistration and slot limits over
//! time (the peer sets are fixed); several Brains competing for the block reward (with one
//! Brain, `brain_reward_shares` gives it everything whenever any miner is in consensus); the
//! commit-reveal timing itself (only its effect on copiers, through `copy_lag_epochs`); miners
//! whose quality changes over time (qualities are static, which favours copiers); a trained TFT
//! enforcer (`tft = "none"` is what the ledger runs today; `"true_quality"` is an oracle that
//! reports each miner's true quality as its accuracy, to study β(t)); Pepecoin, burning and
//! staking markets; the stake that validators hold at genesis is not part of the emitted supply.
//!
//! Cadence: the ledger today runs one consensus epoch per *settlement period* (8,640 blocks, a
//! day) and mints then; set `epoch_blocks = 8640` to reproduce that cadence (bonds then move
//! once a day), or keep the weights epoch (360 blocks) to study per-hour consensus.
//!
//! Determinism: every draw comes from [`SimRng`] streams of the seed; the per-weight noise uses
//! only integer and basic IEEE arithmetic (an Irwin–Hall sum), so the run is bit-identical
//! everywhere. Stake draws (Pareto, lognormal) use `powf`/`exp`/`ln` once per validator at
//! setup and are rounded to whole tokens.
//!
//! Outputs (in the `out` directory): `epochs.csv` (one row per epoch, or per `row_epochs`
//! epochs), `peers.csv` (every peer's behaviour, stake and earnings), `spec.json` (the resolved
//! spec; its SHA-256 is the summary's `spec_hash`) and `economics_summary.json`
//! ([`EconomicsSummary`]).
//!
//! `epochs.csv` columns (amounts in base units; a row covers blocks `[from_height, to_height)`):
//! `epoch` (first epoch of the row), `epochs` (epochs summed), `from_height`, `to_height`, `year`
//! (years elapsed at `to_height`), `halving_index` and `block_reward` (at `from_height`),
//! `beta_ppb` (β at `to_height`), `issuance`, `minted`, `not_minted`, `cumulative_issuance`,
//! `cumulative_minted`, `owner`, `miners`, `validators`, `validators_honest|copier|colluder` and
//! `share_honest|copier|colluder` (of `validators`), `miners_adversarial` and
//! `share_adversarial_miners` (of `miners`), `miners_in_consensus` (last epoch of the row),
//! `balanced` (1 when every epoch of the row passed the invariant).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::Path;

use brainmesh_ledger::economics::emission::{halving_index, max_supply};
use brainmesh_ledger::economics::{
    block_reward, brain_reward_shares, cumulative_issuance, epoch, issuance_between, split_brain_emission,
    split_by_weights, tft_beta, AccuracyOracle, Amount, BrainRegistry, BrainStanding, EconomicsParams, EpochInput,
    NoTft, Ppb, ONE, UNITS_PER_TOKEN,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::load::SimRng;

/// Account id of the Brain owner in the simulated registry.
const OWNER: &str = "owner";

// ---- spec -----------------------------------------------------------------------------------

/// An economics study, read from TOML (`configs/sim/economics.toml`). Every field has a default;
/// unknown fields are rejected at every level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EconomicsSpec {
    /// A name for the outputs.
    pub name: String,
    /// Seeds every draw (stakes, qualities, behaviours, noise).
    pub seed: u64,
    /// Horizon in years of `params.blocks_per_year` blocks (10 when neither this nor `blocks`
    /// is given; giving both is an error).
    pub years: Option<f64>,
    /// Horizon in blocks (instead of `years`).
    pub blocks: Option<u64>,
    /// Blocks per consensus epoch; default `params.weights_epoch_blocks` (360).
    pub epoch_blocks: Option<u64>,
    /// The peers and their qualities.
    pub peers: PeersSpec,
    /// How validator stake is drawn.
    pub stake: StakeSpec,
    /// How validators set weights.
    pub weights: WeightsSpec,
    /// The Brain (how it was acquired, its miner share, the TFT term).
    pub brain: BrainSpec,
    /// Output options.
    pub output: OutputSpec,
    /// Overrides of the ledger's economic parameters (whitepaper defaults); any field of
    /// `brainmesh_ledger::economics::EconomicsParams`.
    pub params: EconomicsParams,
}

impl Default for EconomicsSpec {
    fn default() -> Self {
        Self {
            name: "economics".into(),
            seed: 1,
            years: None,
            blocks: None,
            epoch_blocks: None,
            peers: PeersSpec::default(),
            stake: StakeSpec::default(),
            weights: WeightsSpec::default(),
            brain: BrainSpec::default(),
            output: OutputSpec::default(),
            params: EconomicsParams::default(),
        }
    }
}

/// The peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersSpec {
    /// Number of validators (≤ `params.max_validators_per_brain`).
    pub validators: usize,
    /// Number of miners, adversarial ones included (≤ `params.max_miners_per_brain`).
    pub miners: usize,
    /// How many of the miners are adversarial (the ones colluders vote for).
    pub adversarial_miners: usize,
    /// Honest miners' true quality is uniform in `[quality_min, quality_max]` (within [0, 1]).
    pub quality_min: f64,
    /// See `quality_min`.
    pub quality_max: f64,
    /// True quality of every adversarial miner (what honest validators see, plus noise).
    pub adversarial_quality: f64,
}

impl Default for PeersSpec {
    fn default() -> Self {
        Self {
            validators: 16,
            miners: 64,
            adversarial_miners: 4,
            quality_min: 0.2,
            quality_max: 1.0,
            adversarial_quality: 0.0,
        }
    }
}

/// Shape of the validator stake distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StakeDistribution {
    /// Every validator holds the same stake.
    Equal,
    /// Weights `(1 − u)^(−1/α)`: a few large holders.
    Pareto,
    /// Weights `exp(σ·z)`, z standard normal.
    Lognormal,
}

/// Validator stake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StakeSpec {
    /// The distribution's shape.
    pub distribution: StakeDistribution,
    /// Pareto tail index α (> 0; smaller = more unequal).
    pub pareto_alpha: f64,
    /// Lognormal σ (≥ 0).
    pub lognormal_sigma: f64,
    /// Total validator stake in whole tokens, split by the drawn weights (exactly, in whole
    /// tokens).
    pub total_tokens: u64,
    /// Add each validator's emission to its stake every epoch (compounding), instead of leaving
    /// stake fixed.
    pub restake_dividends: bool,
}

impl Default for StakeSpec {
    fn default() -> Self {
        Self {
            distribution: StakeDistribution::Pareto,
            pareto_alpha: 1.5,
            lognormal_sigma: 1.0,
            total_tokens: 1_000_000,
            restake_dividends: false,
        }
    }
}

/// The weight model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightsSpec {
    /// Standard deviation of the noise honest validators add to the true quality (quality
    /// units; an Irwin–Hall approximation of a normal).
    pub honest_noise: f64,
    /// Fraction of validators (rounded to a count) that copy the consensus vector.
    pub copier_fraction: f64,
    /// Copiers copy the consensus W̄ of this many epochs ago (≥ 1; 1 = the previous epoch's,
    /// the newest that commit-reveal lets them read).
    pub copy_lag_epochs: u32,
    /// Fraction of validators (rounded to a count) that put all weight on the adversarial
    /// miners.
    pub colluder_fraction: f64,
}

impl Default for WeightsSpec {
    fn default() -> Self {
        Self { honest_noise: 0.1, copier_fraction: 0.25, copy_lag_epochs: 1, colluder_fraction: 0.125 }
    }
}

/// How the Brain was acquired (decides when the owner's 25% starts being paid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrainAcquired {
    /// Burned: the owner is paid from genesis.
    Burned,
    /// Staked: the owner's share is withheld (not minted) during `stake_method_lock_blocks`.
    Staked,
}

/// The TFT accuracy term of I = R·C + β(t)·Accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TftModel {
    /// No TFT model (what the ledger runs today): accuracy 0, β has no effect.
    None,
    /// An oracle reporting each miner's true quality as its accuracy.
    TrueQuality,
}

/// The Brain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrainSpec {
    /// How the Brain was acquired.
    pub acquired: BrainAcquired,
    /// Miners' share of the nodes' part, ppb (10⁹ = 100%); default `params.default_miner_share`.
    pub miner_share: Option<Ppb>,
    /// The TFT term.
    pub tft: TftModel,
}

impl Default for BrainSpec {
    fn default() -> Self {
        Self { acquired: BrainAcquired::Burned, miner_share: None, tft: TftModel::None }
    }
}

/// Output options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSpec {
    /// Epochs summed into one `epochs.csv` row (1 = one row per epoch).
    pub row_epochs: u64,
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self { row_epochs: 1 }
    }
}

impl EconomicsSpec {
    /// Parses and validates a spec from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        let spec: Self = toml::from_str(text).map_err(|e| format!("economics spec: {e}"))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates a spec file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::from_toml_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The horizon in blocks.
    pub fn horizon_blocks(&self) -> Result<u64, String> {
        match (self.years, self.blocks) {
            (Some(_), Some(_)) => Err("give `years` or `blocks`, not both".into()),
            (None, Some(b)) => Ok(b),
            (y, None) => {
                let y = y.unwrap_or(10.0);
                if !(y.is_finite() && y > 0.0) {
                    return Err("`years` must be a positive number".into());
                }
                let b = (y * self.params.blocks_per_year as f64).round();
                if b < 1.0 || b > u64::MAX as f64 / 2.0 {
                    return Err("`years` gives an empty or too long horizon".into());
                }
                Ok(b as u64)
            }
        }
    }

    /// Blocks per consensus epoch.
    pub fn epoch_len(&self) -> u64 {
        self.epoch_blocks.unwrap_or(self.params.weights_epoch_blocks)
    }

    /// Validator counts by behaviour: (honest, copiers, colluders).
    pub fn behaviour_counts(&self) -> (usize, usize, usize) {
        let n = self.peers.validators;
        let count = |f: f64| ((f * n as f64).round().max(0.0) as usize).min(n);
        let copiers = count(self.weights.copier_fraction);
        let colluders = count(self.weights.colluder_fraction);
        (n.saturating_sub(copiers + colluders), copiers, colluders)
    }

    /// Checks the spec (and the parameters, with `EconomicsParams::validate`).
    pub fn validate(&self) -> Result<(), String> {
        self.params.validate().map_err(|e| format!("params: {e}"))?;
        let blocks = self.horizon_blocks()?;
        if blocks == 0 {
            return Err("the horizon is empty".into());
        }
        if self.epoch_len() == 0 {
            return Err("`epoch_blocks` must be at least 1".into());
        }
        let pe = &self.peers;
        if pe.validators == 0 || pe.miners == 0 {
            return Err("need at least one validator and one miner".into());
        }
        if pe.validators > self.params.max_validators_per_brain as usize {
            return Err(format!(
                "{} validators exceed the Brain's {} slots",
                pe.validators, self.params.max_validators_per_brain
            ));
        }
        if pe.miners > self.params.max_miners_per_brain as usize {
            return Err(format!("{} miners exceed the Brain's {} slots", pe.miners, self.params.max_miners_per_brain));
        }
        if pe.adversarial_miners > pe.miners {
            return Err("`adversarial_miners` exceeds `miners`".into());
        }
        let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !(unit(pe.quality_min) && unit(pe.quality_max) && pe.quality_min <= pe.quality_max) {
            return Err("need 0 ≤ quality_min ≤ quality_max ≤ 1".into());
        }
        if !unit(pe.adversarial_quality) {
            return Err("`adversarial_quality` must be in [0, 1]".into());
        }
        let st = &self.stake;
        if st.total_tokens == 0 {
            return Err("`stake.total_tokens` must be positive".into());
        }
        if !(st.pareto_alpha.is_finite() && st.pareto_alpha > 0.0) {
            return Err("`stake.pareto_alpha` must be positive".into());
        }
        if !(st.lognormal_sigma.is_finite() && st.lognormal_sigma >= 0.0) {
            return Err("`stake.lognormal_sigma` must be ≥ 0".into());
        }
        let w = &self.weights;
        if !(w.honest_noise.is_finite() && w.honest_noise >= 0.0) {
            return Err("`weights.honest_noise` must be ≥ 0".into());
        }
        if !unit(w.copier_fraction) || !unit(w.colluder_fraction) {
            return Err("`copier_fraction` and `colluder_fraction` must be in [0, 1]".into());
        }
        let n = pe.validators as f64;
        if (w.copier_fraction * n).round() + (w.colluder_fraction * n).round() > n {
            return Err("copiers and colluders together exceed the validators".into());
        }
        if w.copy_lag_epochs == 0 {
            return Err("`copy_lag_epochs` must be at least 1".into());
        }
        let (_, _, colluders) = self.behaviour_counts();
        if colluders > 0 && pe.adversarial_miners == 0 {
            return Err("colluders need at least one adversarial miner to vote for".into());
        }
        if self.brain.miner_share.is_some_and(|s| s > ONE) {
            return Err("`brain.miner_share` must be ≤ 10⁹ (100%)".into());
        }
        if self.output.row_epochs == 0 {
            return Err("`output.row_epochs` must be at least 1".into());
        }
        Ok(())
    }

    /// The resolved spec as canonical JSON (what `spec_hash` hashes).
    fn canonical_json(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec_pretty(self).map_err(|e| format!("serialising the spec: {e}"))
    }
}

// ---- summary --------------------------------------------------------------------------------

/// What `run_economics` returns and writes to `economics_summary.json`. Deterministic: the same
/// spec gives the same summary, bit for bit. Amounts in base units (10⁹ per token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EconomicsSummary {
    /// The spec's name.
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// SHA-256 (hex) of the resolved spec as written to `spec.json`.
    pub spec_hash: String,
    /// Horizon in blocks.
    pub blocks: u64,
    /// Horizon in years of `blocks_per_year`.
    pub years: f64,
    /// Blocks per epoch.
    pub epoch_blocks: u64,
    /// Epochs run (the last may be shorter).
    pub epochs: u64,
    /// Validators.
    pub validators: usize,
    /// Miners (adversarial included).
    pub miners: usize,
    /// Σ of every epoch's `issuance_between`.
    pub issuance: Amount,
    /// `cumulative_issuance(blocks)`: what the halving schedule issues over the horizon.
    pub scheduled_issuance: Amount,
    /// Credited to peers (owner, miners, validators).
    pub minted: Amount,
    /// Issued but not minted: `withheld + unallocated`.
    pub not_minted: Amount,
    /// Owner's share withheld during a stake-method lock.
    pub withheld: Amount,
    /// Not allocated to the Brain (performance 0: no miner in consensus).
    pub unallocated: Amount,
    /// Paid to the Brain owner.
    pub owner_paid: Amount,
    /// Paid to miners (by incentive).
    pub miners_paid: Amount,
    /// Paid to validators (by dividends).
    pub validators_paid: Amount,
    /// The supply limit `max_supply` of the halving schedule.
    pub max_supply: Amount,
    /// Supply emitted by the end of the horizon (= `minted`; genesis stake not counted).
    pub final_supply: Amount,
    /// `final_supply / max_supply`.
    pub supply_fraction_of_max: f64,
    /// `scheduled_issuance / max_supply`.
    pub issued_fraction_of_max: f64,
    /// Block reward at the last block of the horizon.
    pub final_block_reward: Amount,
    /// Halvings before the last block of the horizon.
    pub final_halving_index: u64,
    /// The accounting checks.
    pub checks: EconomicsChecks,
    /// Validators by behaviour.
    pub honest: BehaviourSummary,
    /// See `honest`.
    pub copiers: BehaviourSummary,
    /// See `honest`.
    pub colluders: BehaviourSummary,
    /// Copiers' dividends per staked token over honest validators' (None without both).
    pub copier_vs_honest_per_stake: Option<f64>,
    /// Colluders' dividends per staked token over honest validators' (None without both).
    pub colluder_vs_honest_per_stake: Option<f64>,
    /// Miners.
    pub miner_stats: MinerSummary,
    /// One entry per (started) year of the horizon; an epoch counts in the year it starts in.
    pub per_year: Vec<YearSummary>,
}

/// The accounting checks, every one exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconomicsChecks {
    /// Epochs checked (all of them).
    pub epochs_checked: u64,
    /// Epochs where owner + miners + validators + withheld + unallocated ≠ issuance.
    pub epochs_unbalanced: u64,
    /// The first such epoch.
    pub first_unbalanced_epoch: Option<u64>,
    /// `minted + not_minted == issuance` over the horizon.
    pub paid_plus_not_minted_equals_issuance: bool,
    /// `minted == issuance` (true unless the ledger's own rules withheld or left something
    /// unallocated; see `not_minted`).
    pub paid_equals_issuance: bool,
    /// `issuance == cumulative_issuance(blocks)`.
    pub issuance_matches_schedule: bool,
    /// Σ of every peer's balance == minted.
    pub balances_equal_minted: bool,
    /// Base units lost to rounding: always 0 (every split is exact).
    pub dust: Amount,
    /// Every check above passed.
    pub ok: bool,
}

/// Validators of one behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehaviourSummary {
    /// How many.
    pub validators: usize,
    /// How many were active (top `active_validator_fraction` by stake) in the last epoch.
    pub active_at_end: usize,
    /// Their stake at genesis.
    pub initial_stake: Amount,
    /// Their stake at the end (differs only with `restake_dividends`).
    pub final_stake: Amount,
    /// `initial_stake` over all validators' initial stake.
    pub stake_share: f64,
    /// Emission paid to them.
    pub dividends: Amount,
    /// `dividends` over all validators' emission.
    pub dividend_share: f64,
    /// `dividends / initial_stake` (tokens earned per token staked at genesis).
    pub dividends_per_staked_token: f64,
    /// Initial stake of the members that were active in the last epoch (inactive validators
    /// earn nothing; with fixed stake the active set never changes).
    pub active_initial_stake: Amount,
    /// `dividends / active_initial_stake`: the return of the stake that counted.
    pub dividends_per_active_staked_token: f64,
    /// Mean validator trust Tᵛ (share of their weight that survived clipping) over epochs and
    /// validators.
    pub mean_validator_trust: f64,
}

/// Miners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerSummary {
    /// Honest miners.
    pub honest: usize,
    /// Adversarial miners.
    pub adversarial: usize,
    /// Paid to honest miners.
    pub honest_paid: Amount,
    /// Paid to adversarial miners.
    pub adversarial_paid: Amount,
    /// `adversarial_paid` over all miners' emission.
    pub adversarial_share: f64,
    /// Mean fraction of miners in consensus, over epochs.
    pub mean_in_consensus: f64,
    /// Pearson correlation of honest miners' earnings with their true quality (None with
    /// fewer than two honest miners or no spread).
    pub quality_earnings_correlation: Option<f64>,
}

/// One year of the horizon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YearSummary {
    /// 1-based.
    pub year: u64,
    /// Halvings before the year's first block.
    pub halving_index: u64,
    /// Block reward at the year's first block.
    pub block_reward: Amount,
    /// Issued.
    pub issuance: Amount,
    /// Minted.
    pub minted: Amount,
    /// To the owner.
    pub owner: Amount,
    /// To miners.
    pub miners: Amount,
    /// To adversarial miners (part of `miners`).
    pub adversarial_miners: Amount,
    /// To validators.
    pub validators: Amount,
    /// To honest validators (part of `validators`).
    pub honest: Amount,
    /// To copiers.
    pub copiers: Amount,
    /// To colluders.
    pub colluders: Amount,
}

impl EconomicsSummary {
    /// A few lines for a terminal.
    pub fn headline(&self) -> String {
        let tok = |a: Amount| a as f64 / UNITS_PER_TOKEN as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {:.2} years, {} blocks, {} epochs of {} blocks, {} validators × {} miners (seed {})",
            self.name, self.years, self.blocks, self.epochs, self.epoch_blocks, self.validators, self.miners, self.seed
        );
        let _ = writeln!(
            s,
            "issued {:.4} tokens ({:.4}% of max supply {:.4}); minted {:.4}, not minted {:.4}; checks {}",
            tok(self.issuance),
            100.0 * self.issued_fraction_of_max,
            tok(self.max_supply),
            tok(self.minted),
            tok(self.not_minted),
            if self.checks.ok { "ok" } else { "FAILED" }
        );
        let _ = writeln!(
            s,
            "owner {:.4}, miners {:.4} (adversarial {:.3}%), validators {:.4}",
            tok(self.owner_paid),
            tok(self.miners_paid),
            100.0 * self.miner_stats.adversarial_share,
            tok(self.validators_paid)
        );
        for (label, b) in [("honest", &self.honest), ("copiers", &self.copiers), ("colluders", &self.colluders)] {
            let _ = writeln!(
                s,
                "  {label:<9} {:>3} validators ({} active), stake {:.2}%, dividends {:.2}%, {:.4} tokens per staked \
                 token ({:.4} per active one), trust {:.3}",
                b.validators,
                b.active_at_end,
                100.0 * b.stake_share,
                100.0 * b.dividend_share,
                b.dividends_per_staked_token,
                b.dividends_per_active_staked_token,
                b.mean_validator_trust
            );
        }
        s
    }
}

// ---- the run --------------------------------------------------------------------------------

/// A validator's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    Copier,
    Colluder,
}

impl Behaviour {
    fn index(self) -> usize {
        match self {
            Self::Honest => 0,
            Self::Copier => 1,
            Self::Colluder => 2,
        }
    }
    fn label(self) -> &'static str {
        match self {
            Self::Honest => "honest",
            Self::Copier => "copier",
            Self::Colluder => "colluder",
        }
    }
}

/// The fixed population of a run.
struct Population {
    behaviour: Vec<Behaviour>,
    stake: Vec<Amount>,
    quality: Vec<f64>,
    adversarial: Vec<bool>,
}

/// Amounts of one epoch or of an aggregate (a CSV row, a year).
#[derive(Debug, Clone, Default)]
struct Tally {
    issuance: Amount,
    owner: Amount,
    miners: Amount,
    adversarial_miners: Amount,
    validators: Amount,
    by_behaviour: [Amount; 3],
    withheld: Amount,
    unallocated: Amount,
}

impl Tally {
    fn minted(&self) -> Amount {
        self.owner + self.miners + self.validators
    }
    fn not_minted(&self) -> Amount {
        self.withheld + self.unallocated
    }
    fn add(&mut self, o: &Tally) {
        self.issuance += o.issuance;
        self.owner += o.owner;
        self.miners += o.miners;
        self.adversarial_miners += o.adversarial_miners;
        self.validators += o.validators;
        for (a, b) in self.by_behaviour.iter_mut().zip(&o.by_behaviour) {
            *a += b;
        }
        self.withheld += o.withheld;
        self.unallocated += o.unallocated;
    }
}

const CSV_HEADER: &str = "epoch,epochs,from_height,to_height,year,halving_index,block_reward,beta_ppb,issuance,\
minted,not_minted,cumulative_issuance,cumulative_minted,owner,miners,validators,validators_honest,\
validators_copier,validators_colluder,share_honest,share_copier,share_colluder,miners_adversarial,\
share_adversarial_miners,miners_in_consensus,balanced";

fn frac(a: Amount, total: Amount) -> f64 {
    if total == 0 {
        0.0
    } else {
        a as f64 / total as f64
    }
}

/// A standard-normal approximation from one draw: the Irwin–Hall sum of four 16-bit uniforms,
/// centred and scaled to unit variance (integer and basic IEEE arithmetic only).
fn noise(rng: &mut SimRng) -> f64 {
    let x = rng.next_u64();
    let s = (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48);
    // Σ of four U{0..65535}: mean 2·65535, variance 4·(65536² − 1)/12.
    let centred = s as f64 - 2.0 * 65_535.0;
    centred / (((65_536.0f64 * 65_536.0 - 1.0) / 3.0).sqrt())
}

fn draw_population(spec: &EconomicsSpec) -> Result<Population, String> {
    let nv = spec.peers.validators;
    let nm = spec.peers.miners;
    // stake
    let mut rng = SimRng::stream(spec.seed, "economics/stake");
    let raw: Vec<u128> = (0..nv)
        .map(|_| {
            let x = match spec.stake.distribution {
                StakeDistribution::Equal => 1.0,
                StakeDistribution::Pareto => (1.0 - rng.unit()).powf(-1.0 / spec.stake.pareto_alpha),
                StakeDistribution::Lognormal => {
                    let (u1, u2) = (rng.unit().max(1e-300), rng.unit());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    (spec.stake.lognormal_sigma * z).exp()
                }
            };
            // relative weights with 12 significant digits; every validator weighs something
            ((x.min(1e12) * 1e6).round() as u128).max(1)
        })
        .collect();
    let whole = split_by_weights(spec.stake.total_tokens as u128, &raw).map_err(|e| format!("stake split: {e}"))?;
    let stake: Vec<Amount> = whole.iter().map(|t| t * UNITS_PER_TOKEN).collect();

    // behaviours: a seeded shuffle of the validator indices
    let (_, copiers, colluders) = spec.behaviour_counts();
    let mut order: Vec<usize> = (0..nv).collect();
    let mut rng = SimRng::stream(spec.seed, "economics/behaviour");
    for i in (1..nv).rev() {
        let j = rng.range(0, i as u64) as usize;
        order.swap(i, j);
    }
    let mut behaviour = vec![Behaviour::Honest; nv];
    for (k, i) in order.iter().enumerate() {
        if k < copiers {
            behaviour[*i] = Behaviour::Copier;
        } else if k < copiers + colluders {
            behaviour[*i] = Behaviour::Colluder;
        }
    }

    // miners: the last `adversarial_miners` are adversarial
    let mut rng = SimRng::stream(spec.seed, "economics/quality");
    let first_adv = nm - spec.peers.adversarial_miners;
    let (lo, hi) = (spec.peers.quality_min, spec.peers.quality_max);
    let quality: Vec<f64> = (0..nm)
        .map(|j| if j >= first_adv { spec.peers.adversarial_quality } else { lo + (hi - lo) * rng.unit() })
        .collect();
    let adversarial = (0..nm).map(|j| j >= first_adv).collect();
    Ok(Population { behaviour, stake, quality, adversarial })
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        None
    } else {
        Some(sxy / (sxx.sqrt() * syy.sqrt()))
    }
}

fn progress_bar(blocks: u64, show: bool) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(blocks);
    b.set_style(
        indicatif::ProgressStyle::with_template("economics: year {msg} [{bar:40}] {percent}% (eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if !show || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    b
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("writing {}: {e}", path.display())
}

/// Runs the economics-only simulation of `spec`, writes `epochs.csv`, `peers.csv`, `spec.json`
/// and `economics_summary.json` into `out` (created if missing), and returns the summary.
/// `progress` draws an indicatif bar with the simulated year on a terminal.
///
/// Errors on an invalid spec, an I/O failure or an error from the ledger's economics (which
/// would be a bug there). A failed accounting check is not an error: it is reported in
/// `EconomicsSummary::checks`.
pub fn run_economics(spec: &EconomicsSpec, out: &Path, progress: bool) -> Result<EconomicsSummary, String> {
    spec.validate()?;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let spec_json = spec.canonical_json()?;
    let spec_path = out.join("spec.json");
    std::fs::write(&spec_path, &spec_json).map_err(io_err(&spec_path))?;
    let spec_hash = hex::encode(Sha256::digest(&spec_json));

    let csv_path = out.join("epochs.csv");
    let file = std::fs::File::create(&csv_path).map_err(io_err(&csv_path))?;
    let mut csv = BufWriter::new(file);
    let Outcome { summary, pop, earned, stake_end } = simulate(spec, spec_hash, &mut csv, progress)?;
    csv.flush().map_err(io_err(&csv_path))?;

    let peers_path = out.join("peers.csv");
    let mut peers = String::from("peer,role,behaviour,quality,adversarial,initial_stake,final_stake,earned\n");
    for (i, b) in pop.behaviour.iter().enumerate() {
        let _ = writeln!(
            peers,
            "v{i},validator,{},,,{},{},{}",
            b.label(),
            pop.stake[i],
            stake_end[i],
            earned.validators[i]
        );
    }
    for (j, q) in pop.quality.iter().enumerate() {
        let _ = writeln!(peers, "m{j},miner,,{q:.6},{},,,{}", pop.adversarial[j], earned.miners[j]);
    }
    let _ = writeln!(peers, "{OWNER},owner,,,,,,{}", earned.owner);
    std::fs::write(&peers_path, peers).map_err(io_err(&peers_path))?;

    let summary_path = out.join("economics_summary.json");
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| format!("serialising the summary: {e}"))?;
    std::fs::write(&summary_path, json).map_err(io_err(&summary_path))?;
    Ok(summary)
}

/// Per-peer emission balances.
struct Earned {
    validators: Vec<Amount>,
    miners: Vec<Amount>,
    owner: Amount,
}

/// What a run produced besides `epochs.csv`.
struct Outcome {
    summary: EconomicsSummary,
    pop: Population,
    earned: Earned,
    /// Validator stake after the last epoch.
    stake_end: Vec<Amount>,
}

fn simulate(spec: &EconomicsSpec, spec_hash: String, csv: &mut dyn Write, progress: bool) -> Result<Outcome, String> {
    let p = &spec.params;
    let blocks = spec.horizon_blocks()?;
    let elen = spec.epoch_len();
    let epochs = blocks.div_ceil(elen);
    let nv = spec.peers.validators;
    let nm = spec.peers.miners;
    let pop = draw_population(spec)?;
    let csv_err = |e: std::io::Error| format!("writing epochs.csv: {e}");

    // The Brain, through the ledger's registry (so owner eligibility and miner share follow the
    // same rules as settlement).
    let mut registry = BrainRegistry::default();
    let (brain_id, _) = match spec.brain.acquired {
        BrainAcquired::Burned => registry.create_by_burn(OWNER, None, p.burn_base_price, 0, p),
        BrainAcquired::Staked => registry.create_by_stake(OWNER, None, p.stake_method_amount, 0, p),
    }
    .map_err(|e| format!("creating the Brain: {e}"))?;
    if let Some(share) = spec.brain.miner_share {
        registry
            .get_mut(brain_id)
            .and_then(|b| b.set_miner_share(OWNER, share))
            .map_err(|e| format!("miner share: {e}"))?;
    }
    let record = registry.get(brain_id).map_err(|e| e.to_string())?;

    let accuracy: Vec<Ppb> = pop.quality.iter().map(|q| (q * ONE as f64).round() as Ppb).collect();
    let oracle: &dyn AccuracyOracle = match spec.brain.tft {
        TftModel::None => &NoTft,
        TftModel::TrueQuality => &accuracy,
    };

    let mut stake = pop.stake.clone();
    let mut earned = Earned { validators: vec![0; nv], miners: vec![0; nm], owner: 0 };
    let adv_cols: Vec<usize> = (0..nm).filter(|j| pop.adversarial[*j]).collect();
    let lag = spec.weights.copy_lag_epochs as usize;
    let mut history: VecDeque<Vec<Ppb>> = VecDeque::with_capacity(lag + 1);
    let mut noise_rng = SimRng::stream(spec.seed, "economics/noise");
    let sigma = spec.weights.honest_noise;

    let mut weights: Vec<Vec<u64>> = vec![vec![0; nm]; nv];
    let mut prev_bonds: Vec<Vec<Ppb>> = Vec::new();
    let mut total = Tally::default();
    let mut row = Tally::default();
    let mut row_first = 0u64;
    let mut year = Tally::default();
    let mut per_year: Vec<YearSummary> = Vec::new();
    let mut cum_issuance: Amount = 0;
    let mut cum_minted: Amount = 0;
    let mut unbalanced = 0u64;
    let mut first_unbalanced: Option<u64> = None;
    let mut row_balanced = true;
    let mut trust_sum = [0u128; 3];
    let mut in_consensus_sum: u128 = 0;
    let mut active_end = vec![false; nv];

    csv.write_all(CSV_HEADER.as_bytes()).and_then(|_| csv.write_all(b"\n")).map_err(csv_err)?;
    let bar = progress_bar(blocks, progress);
    let total_years = blocks as f64 / p.blocks_per_year as f64;
    let year_of = |h: u64| h / p.blocks_per_year + 1;

    for e in 0..epochs {
        let from = e * elen;
        let to = from.saturating_add(elen).min(blocks);

        // 1. weights
        let copied: Option<&Vec<Ppb>> =
            history.len().checked_sub(lag).and_then(|k| history.get(k)).filter(|c| c.iter().any(|x| *x > 0));
        for (i, row_w) in weights.iter_mut().enumerate() {
            match pop.behaviour[i] {
                Behaviour::Honest => {
                    for (w, q) in row_w.iter_mut().zip(&pop.quality) {
                        let v = if sigma > 0.0 { q + sigma * noise(&mut noise_rng) } else { *q };
                        *w = (v.clamp(0.0, 1.0) * 65_535.0).round() as u64;
                    }
                }
                Behaviour::Copier => match copied {
                    Some(c) => row_w.iter_mut().zip(c).for_each(|(w, x)| *w = *x),
                    None => row_w.iter_mut().for_each(|w| *w = 1),
                },
                Behaviour::Colluder => {
                    row_w.iter_mut().for_each(|w| *w = 0);
                    for j in &adv_cols {
                        row_w[*j] = 65_535;
                    }
                }
            }
        }

        // 2. consensus
        let input = EpochInput {
            weights: std::mem::take(&mut weights),
            stake: stake.clone(),
            prev_bonds: std::mem::take(&mut prev_bonds),
            beta: tft_beta(to, p),
        };
        let o = epoch(&input, oracle, p).map_err(|err| format!("epoch {e}: consensus: {err}"))?;
        weights = input.weights;

        // 3.–5. issuance, the Brain's share, the split
        let mut t = Tally { issuance: issuance_between(from, to, p), ..Tally::default() };
        let in_cons = o.in_consensus.iter().filter(|c| **c).count() as u64;
        let performance = (in_cons * ONE / nm as u64).min(ONE);
        let brain_stake: Amount = stake.iter().sum();
        let shares = brain_reward_shares(t.issuance, &[BrainStanding { stake: brain_stake, performance }], p)
            .map_err(|err| format!("epoch {e}: brain shares: {err}"))?;
        t.unallocated = shares.unallocated;
        let amount = shares.per_brain.first().copied().unwrap_or(0);
        if amount > 0 {
            let split = split_brain_emission(
                amount,
                record.miner_share,
                record.owner_rewards_active(to),
                &o.incentive,
                &o.dividends,
                &o.active_stake,
                p,
            )
            .map_err(|err| format!("epoch {e}: emission split: {err}"))?;
            t.owner = split.owner;
            t.withheld = split.withheld;
            earned.owner += split.owner;
            for (j, a) in split.miners.iter().enumerate() {
                earned.miners[j] += a;
                t.miners += a;
                if pop.adversarial[j] {
                    t.adversarial_miners += a;
                }
            }
            for (i, a) in split.validators.iter().enumerate() {
                earned.validators[i] += a;
                t.validators += a;
                t.by_behaviour[pop.behaviour[i].index()] += a;
                if spec.stake.restake_dividends {
                    stake[i] += a;
                }
            }
        }
        let balanced = t.minted() + t.not_minted() == t.issuance;
        if !balanced {
            unbalanced += 1;
            first_unbalanced.get_or_insert(e);
            row_balanced = false;
        }
        cum_issuance += t.issuance;
        cum_minted += t.minted();
        for (i, vt) in o.validator_trust.iter().enumerate() {
            trust_sum[pop.behaviour[i].index()] += *vt as u128;
        }
        in_consensus_sum += in_cons as u128;
        if e + 1 == epochs {
            active_end.clone_from(&o.active);
        }

        // bonds and the consensus history for the next epoch
        prev_bonds = o.bonds;
        history.push_back(o.consensus);
        if history.len() > lag {
            history.pop_front();
        }

        // per year (an epoch counts in the year it starts in)
        let y = year_of(from);
        if per_year.last().map(|s| s.year) != Some(y) {
            if let Some(last) = per_year.last_mut() {
                fill_year(last, &year);
            }
            year = Tally::default();
            let start = (y - 1) * p.blocks_per_year;
            per_year.push(YearSummary {
                year: y,
                halving_index: halving_index(start, p),
                block_reward: block_reward(start, p),
                issuance: 0,
                minted: 0,
                owner: 0,
                miners: 0,
                adversarial_miners: 0,
                validators: 0,
                honest: 0,
                copiers: 0,
                colluders: 0,
            });
        }
        year.add(&t);
        total.add(&t);

        // CSV row
        row.add(&t);
        if (e + 1 - row_first) == spec.output.row_epochs || e + 1 == epochs {
            let rf = row_first * elen;
            let v = row.validators;
            let line = format!(
                "{row_first},{},{rf},{to},{:.6},{},{},{},{},{},{},{cum_issuance},{cum_minted},{},{},{v},{},{},{},{:.6},{:.6},{:.6},{},{:.6},{in_cons},{}\n",
                e + 1 - row_first,
                to as f64 / p.blocks_per_year as f64,
                halving_index(rf, p),
                block_reward(rf, p),
                tft_beta(to, p),
                row.issuance,
                row.minted(),
                row.not_minted(),
                row.owner,
                row.miners,
                row.by_behaviour[0],
                row.by_behaviour[1],
                row.by_behaviour[2],
                frac(row.by_behaviour[0], v),
                frac(row.by_behaviour[1], v),
                frac(row.by_behaviour[2], v),
                row.adversarial_miners,
                frac(row.adversarial_miners, row.miners),
                u8::from(row_balanced),
            );
            csv.write_all(line.as_bytes()).map_err(csv_err)?;
            row = Tally::default();
            row_first = e + 1;
            row_balanced = true;
        }

        if progress && (e % 64 == 0 || e + 1 == epochs) {
            bar.set_position(to);
            bar.set_message(format!("{:.2}/{total_years:.2}", to as f64 / p.blocks_per_year as f64));
        }
    }
    bar.finish_and_clear();
    if let Some(last) = per_year.last_mut() {
        fill_year(last, &year);
    }

    // summary
    let scheduled = cumulative_issuance(blocks, p);
    let max = max_supply(p);
    let balances: Amount =
        earned.owner + earned.miners.iter().sum::<Amount>() + earned.validators.iter().sum::<Amount>();
    let minted = total.minted();
    let mut checks = EconomicsChecks {
        epochs_checked: epochs,
        epochs_unbalanced: unbalanced,
        first_unbalanced_epoch: first_unbalanced,
        paid_plus_not_minted_equals_issuance: minted + total.not_minted() == total.issuance,
        paid_equals_issuance: minted == total.issuance,
        issuance_matches_schedule: total.issuance == scheduled,
        balances_equal_minted: balances == minted,
        dust: 0,
        ok: false,
    };
    checks.ok = checks.epochs_unbalanced == 0
        && checks.paid_plus_not_minted_equals_issuance
        && checks.issuance_matches_schedule
        && checks.balances_equal_minted;

    let initial_total: Amount = pop.stake.iter().sum();
    let behaviour_summary = |b: Behaviour| -> BehaviourSummary {
        let members: Vec<usize> = (0..nv).filter(|i| pop.behaviour[*i] == b).collect();
        let initial: Amount = members.iter().map(|i| pop.stake[*i]).sum();
        let dividends: Amount = members.iter().map(|i| earned.validators[*i]).sum();
        let active_initial: Amount = members.iter().filter(|i| active_end[**i]).map(|i| pop.stake[*i]).sum();
        let trust_n = members.len() as f64 * epochs as f64;
        BehaviourSummary {
            validators: members.len(),
            active_at_end: members.iter().filter(|i| active_end[**i]).count(),
            initial_stake: initial,
            final_stake: members.iter().map(|i| stake[*i]).sum(),
            stake_share: frac(initial, initial_total),
            dividends,
            dividend_share: frac(dividends, total.validators),
            dividends_per_staked_token: frac(dividends, initial),
            active_initial_stake: active_initial,
            dividends_per_active_staked_token: frac(dividends, active_initial),
            mean_validator_trust: if trust_n > 0.0 { trust_sum[b.index()] as f64 / ONE as f64 / trust_n } else { 0.0 },
        }
    };
    let honest = behaviour_summary(Behaviour::Honest);
    let copiers = behaviour_summary(Behaviour::Copier);
    let colluders = behaviour_summary(Behaviour::Colluder);
    let ratio = |b: &BehaviourSummary| {
        (b.validators > 0 && honest.validators > 0 && honest.dividends_per_staked_token > 0.0)
            .then(|| b.dividends_per_staked_token / honest.dividends_per_staked_token)
    };
    let (hq, he): (Vec<f64>, Vec<f64>) =
        (0..nm).filter(|j| !pop.adversarial[*j]).map(|j| (pop.quality[j], earned.miners[j] as f64)).unzip();
    let miner_stats = MinerSummary {
        honest: nm - adv_cols.len(),
        adversarial: adv_cols.len(),
        honest_paid: total.miners - total.adversarial_miners,
        adversarial_paid: total.adversarial_miners,
        adversarial_share: frac(total.adversarial_miners, total.miners),
        mean_in_consensus: in_consensus_sum as f64 / (epochs as f64 * nm as f64),
        quality_earnings_correlation: pearson(&hq, &he),
    };
    let last = blocks - 1;
    let summary = EconomicsSummary {
        name: spec.name.clone(),
        seed: spec.seed,
        spec_hash,
        blocks,
        years: total_years,
        epoch_blocks: elen,
        epochs,
        validators: nv,
        miners: nm,
        issuance: total.issuance,
        scheduled_issuance: scheduled,
        minted,
        not_minted: total.not_minted(),
        withheld: total.withheld,
        unallocated: total.unallocated,
        owner_paid: total.owner,
        miners_paid: total.miners,
        validators_paid: total.validators,
        max_supply: max,
        final_supply: minted,
        supply_fraction_of_max: frac(minted, max),
        issued_fraction_of_max: frac(scheduled, max),
        final_block_reward: block_reward(last, p),
        final_halving_index: halving_index(last, p),
        checks,
        copier_vs_honest_per_stake: ratio(&copiers),
        colluder_vs_honest_per_stake: ratio(&colluders),
        honest,
        copiers,
        colluders,
        miner_stats,
        per_year,
    };
    Ok(Outcome { summary, pop, earned, stake_end: stake })
}

fn fill_year(y: &mut YearSummary, t: &Tally) {
    y.issuance = t.issuance;
    y.minted = t.minted();
    y.owner = t.owner;
    y.miners = t.miners;
    y.adversarial_miners = t.adversarial_miners;
    y.validators = t.validators;
    y.honest = t.by_behaviour[0];
    y.copiers = t.by_behaviour[1];
    y.colluders = t.by_behaviour[2];
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainmesh_ledger::economics::tokens;

    /// A short study: 2.5 "years" of 1,000 blocks, halving every year, epochs of 50 blocks.
    fn short_spec() -> EconomicsSpec {
        let mut s = EconomicsSpec { years: Some(2.5), epoch_blocks: Some(50), ..EconomicsSpec::default() };
        s.params.blocks_per_year = 1_000;
        s.params.halving_interval_blocks = 1_000;
        s.params.stake_method_lock_blocks = 300;
        s
    }

    fn read_csv(dir: &Path) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(dir.join("epochs.csv")).expect("epochs.csv");
        text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
    }

    #[test]
    fn paid_equals_issuance_over_a_horizon_crossing_a_halving() {
        let spec = short_spec();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = run_economics(&spec, dir.path(), false).expect("run");
        let p = &spec.params;
        assert_eq!(s.blocks, 2_500);
        assert_eq!(s.epochs, 50);
        assert!(s.checks.ok, "{:?}", s.checks);
        assert_eq!(s.checks.epochs_unbalanced, 0);
        // a burned Brain with miners in consensus mints everything: paid == issuance exactly
        assert_eq!(s.not_minted, 0);
        assert!(s.checks.paid_equals_issuance);
        assert_eq!(s.minted, s.issuance);
        assert_eq!(s.issuance, cumulative_issuance(2_500, p));
        assert_eq!(s.issuance, 1_000 * tokens(10) + 1_000 * tokens(5) + 500 * (tokens(10) / 4));
        assert_eq!(s.owner_paid + s.miners_paid + s.validators_paid, s.issuance);
        assert_eq!(s.final_halving_index, 2);
        // every row balances, rows cover the horizon, and the halvings appear
        let rows = read_csv(dir.path());
        assert_eq!(rows.len(), 50);
        let issued: Amount = rows.iter().map(|r| r[8].parse::<Amount>().expect("issuance")).sum();
        assert_eq!(issued, s.issuance);
        assert!(rows.iter().all(|r| r[25] == "1"));
        let halvings: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[5].as_str()).collect();
        assert_eq!(halvings.into_iter().collect::<Vec<_>>(), vec!["0", "1", "2"]);
        assert_eq!(s.per_year.len(), 3);
        assert_eq!(s.per_year.iter().map(|y| y.issuance).sum::<Amount>(), s.issuance);
        assert_eq!(s.per_year[1].block_reward, tokens(5));

        // a staked Brain withholds the owner's share during the lock: still balanced, exactly
        let staked =
            EconomicsSpec { brain: BrainSpec { acquired: BrainAcquired::Staked, ..BrainSpec::default() }, ..spec };
        let dir = tempfile::tempdir().expect("tempdir");
        let s = run_economics(&staked, dir.path(), false).expect("run");
        assert!(s.checks.ok, "{:?}", s.checks);
        assert!(s.withheld > 0 && !s.checks.paid_equals_issuance);
        assert_eq!(s.minted + s.not_minted, s.issuance);
        // the owner is paid from the settlement whose end reaches the lock's end (block 300), so
        // the first 5 epochs withhold the owner's 25% of 250 blocks × 10 tokens
        assert_eq!(s.withheld, tokens(625));
        assert_eq!(s.owner_paid + s.withheld, s.issuance / 4);
    }

    #[test]
    fn same_seed_gives_identical_summary_and_files() {
        let spec = short_spec();
        let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let sa = run_economics(&spec, a.path(), false).expect("run a");
        let sb = run_economics(&spec, b.path(), false).expect("run b");
        assert_eq!(sa, sb);
        for f in ["epochs.csv", "peers.csv", "spec.json", "economics_summary.json"] {
            assert_eq!(std::fs::read(a.path().join(f)).expect(f), std::fs::read(b.path().join(f)).expect(f), "{f}");
        }
        let other = EconomicsSpec { seed: spec.seed + 1, ..spec };
        let c = tempfile::tempdir().expect("tempdir");
        let sc = run_economics(&other, c.path(), false).expect("run c");
        assert_ne!(sc.spec_hash, sa.spec_hash);
        assert_ne!(sc.honest.dividends, sa.honest.dividends);
        assert_eq!(sc.issuance, sa.issuance);
    }

    /// Measured, not assumed. With equal stake (so every validator is active) and static miner
    /// qualities, copying the previous epoch's consensus vector pays *more* per staked token than
    /// honest scoring: the honest validators' noise is clipped away, the copiers' vector is the
    /// consensus (about +6% over seeds 1–6 with the default noise 0.1). Without noise there is
    /// nothing to gain. Colluders on a minority of stake earn almost nothing, and so do their
    /// adversarial miners.
    #[test]
    fn copiers_out_earn_honest_validators_per_stake_and_colluders_earn_almost_nothing() {
        for seed in 1..=3 {
            let mut spec = EconomicsSpec { seed, years: Some(0.05), ..EconomicsSpec::default() };
            spec.stake.distribution = StakeDistribution::Equal;
            let dir = tempfile::tempdir().expect("tempdir");
            let s = run_economics(&spec, dir.path(), false).expect("run");
            assert!(s.checks.ok, "{:?}", s.checks);
            let copier = s.copier_vs_honest_per_stake.expect("copiers and honest validators");
            assert!(copier > 1.02 && copier < 1.2, "seed {seed}: copier/honest = {copier}");
            assert!(s.copiers.mean_validator_trust > s.honest.mean_validator_trust);
            let colluder = s.colluder_vs_honest_per_stake.expect("colluders and honest validators");
            assert!(colluder < 0.05, "seed {seed}: colluder/honest = {colluder}");
            // 4 of 64 miners (6.25%) are adversarial; they get a fraction of a percent
            assert!(s.miner_stats.adversarial_share < 0.02, "seed {seed}: {}", s.miner_stats.adversarial_share);
            assert!(s.miner_stats.quality_earnings_correlation.is_some_and(|c| c > 0.9));

            spec.weights.honest_noise = 0.0;
            let dir = tempfile::tempdir().expect("tempdir");
            let s = run_economics(&spec, dir.path(), false).expect("run");
            let copier = s.copier_vs_honest_per_stake.expect("copiers and honest validators");
            assert!((copier - 1.0).abs() < 0.01, "seed {seed}, no noise: copier/honest = {copier}");
        }
    }

    #[test]
    fn spec_with_unknown_field_is_rejected() {
        assert!(EconomicsSpec::from_toml_str("seed = 3\nyears = 1.0\n").is_ok());
        for bad in [
            "seeed = 3\n",
            "[peers]\nvalidatorz = 3\n",
            "[weights]\ncopy_fraction = 0.5\n",
            "[stake]\ndistribution = \"zipf\"\n",
            "[params]\nhalving_interval = 10\n",
        ] {
            assert!(EconomicsSpec::from_toml_str(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn inconsistent_specs_are_rejected() {
        for bad in [
            "years = 1.0\nblocks = 100\n",
            "[weights]\ncopier_fraction = 0.75\ncolluder_fraction = 0.5\n",
            "[peers]\nadversarial_miners = 0\n",
            "epoch_blocks = 0\n",
            "[peers]\nquality_min = 0.9\nquality_max = 0.1\n",
            "[params]\nkappa = 2000000000\n",
        ] {
            assert!(EconomicsSpec::from_toml_str(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn default_config_file_parses_and_matches_the_code_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sim/economics.toml");
        let spec = EconomicsSpec::load(&path).expect("configs/sim/economics.toml");
        let d = EconomicsSpec::default();
        assert_eq!(spec.horizon_blocks().expect("horizon"), 10 * d.params.blocks_per_year);
        assert_eq!(spec.epoch_len(), 360);
        assert_eq!((spec.peers.validators, spec.peers.miners), (16, 64));
        assert_eq!(spec.params, d.params);
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// The default ten-year study, timed: `cargo test -p brainmesh --lib
    /// sim::economics::timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "the ten-year default study takes tens of seconds"]
    fn ten_year_default_study() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sim/economics.toml");
        let spec = EconomicsSpec::load(&path).expect("configs/sim/economics.toml");
        let out = std::env::var_os("ECONOMICS_OUT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("brainmesh-economics-default"));
        let t0 = std::time::Instant::now();
        let s = run_economics(&spec, &out, false).expect("run");
        let dt = t0.elapsed();
        eprintln!("{}", s.headline());
        eprintln!("wall time {:.2} s ({} epochs, outputs in {})", dt.as_secs_f64(), s.epochs, out.display());
        assert!(s.checks.ok);
    }
}
