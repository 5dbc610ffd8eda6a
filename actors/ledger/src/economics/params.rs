//! Economic parameters with the whitepaper's numbers as defaults (§2.4, §3; DESIGN.md §5).
//!
//! Amounts are [`Amount`] base units (10⁹ per token), fractions are [`Ppb`] (10⁹ = 1.0).

use serde::{Deserialize, Serialize};

use super::{tokens, Amount, BrainId, EconomicsError, Height, Ppb, Result, ONE};

/// Every tunable of the economics. `Default` is the whitepaper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EconomicsParams {
    // ---- time -------------------------------------------------------------------------------
    /// Seconds per block (§3.1.1: "10 $BASED every 10 seconds").
    pub block_time_secs: u64,
    /// Blocks per year (§3.4.2: "3,155,760 blocks per year" = 365.25 days of 10 s blocks).
    /// Halvings and β(t) count years in these blocks. NB: Table 2's emission column uses 365-day
    /// years (3,153,600 blocks); see `emission::year_issuance`.
    pub blocks_per_year: Height,
    /// Receipts are settled every this many blocks (Eternl `001`: "roughly 24 hours").
    pub settlement_interval_blocks: Height,
    /// Blocks per weight epoch: validators commit their weights in an epoch and reveal them in
    /// the next (`ledger::weights`; the audit's `epoch_blocks`, 360 = one hour of 10 s blocks).
    pub weights_epoch_blocks: Height,

    // ---- emission ---------------------------------------------------------------------------
    /// Block reward in year 1 (§3.1.2 Table 2: 10 per block).
    #[serde(with = "super::amount_serde")]
    pub initial_block_reward: Amount,
    /// Blocks between halvings (§3.1.2: yearly).
    pub halving_interval_blocks: Height,

    // ---- TFT enforcer β(t) (§3.4.2) -------------------------------------------------------------
    /// β = 0 while t ≤ this many years.
    pub tft_zero_years: u64,
    /// β rises linearly to `tft_ramp_max` at this many years.
    pub tft_ramp_end_years: u64,
    /// β at the end of the ramp (0.9).
    pub tft_ramp_max: Ppb,
    /// β after the ramp (1.0).
    pub tft_final: Ppb,

    // ---- Brains (§2.4) ------------------------------------------------------------------------
    /// Maximum number of Brains issued and active (1024).
    pub brain_cap: u16,
    /// Brains operated by Based Labs (#0–#6 and #47); never handed out by allocation.
    pub reserved_brain_ids: Vec<BrainId>,
    /// Burn method: price of the first burned Brain (1,000 Pepecoin).
    #[serde(with = "super::amount_serde")]
    pub burn_base_price: Amount,
    /// Burn method: increase per Brain already issued by burning (200 Pepecoin).
    #[serde(with = "super::amount_serde")]
    pub burn_price_step: Amount,
    /// Stake method: Pepecoin locked (100,000).
    #[serde(with = "super::amount_serde")]
    pub stake_method_amount: Amount,
    /// Stake method: lock in blocks (90 days = 777,600 blocks of 10 s). The owner's reward
    /// share starts accruing after it.
    pub stake_method_lock_blocks: Height,
    /// Registration ("permanent memory") fee a new Brain starts with (100 $BASED).
    #[serde(with = "super::amount_serde")]
    pub default_registration_fee: Amount,
    /// Validator slots per Brain (256).
    pub max_validators_per_brain: u32,
    /// Miner slots per Brain (1,792).
    pub max_miners_per_brain: u32,

    // ---- emission split (§3.2) ----------------------------------------------------------------
    /// Brain owner's share of a Brain's emission (25%); the nodes get the rest (75%).
    pub owner_share: Ppb,
    /// Default share of the nodes' part that goes to miners (the rest to validators); each
    /// Brain owner sets its own (§2.4.3). 50% mirrors Bittensor's 41/41 miner/validator split.
    pub default_miner_share: Ppb,

    // ---- sharing the block reward among Brains (§3.1.1, §3.3.2) --------------------------------
    /// Share of each block reward reserved as a bonus for the top-performing Brains. The
    /// whitepaper names the bonus but not its size; 10% is our choice.
    pub top_brain_bonus: Ppb,
    /// The top fraction of Brains (by performance) that earn the bonus (30%).
    pub top_brain_fraction: Ppb,
    /// §3.3.2: stake counted for a Brain's reward share is capped at this fraction of the total
    /// network stake (0.5%). `None` disables the cap (useful for small simulations).
    pub brain_reward_stake_cap: Option<Ppb>,
    /// §3.6: a Brain with at least this fraction of total stake is a GigaBrain (0.5%).
    pub gigabrain_threshold: Ppb,
    /// §3.2.3: validators count as active only in the top fraction of stake in their Brain
    /// ("top 70th percentile", read as the top 70% of validators by stake).
    pub active_validator_fraction: Ppb,

    // ---- Yuma consensus (anchor: Bittensor) ------------------------------------------------------
    /// Consensus quantile κ (0.5): a miner's consensus weight is the largest weight supported by
    /// at least κ of active stake.
    pub kappa: Ppb,
    /// Bond EMA α (0.1): B ← α·ΔB + (1 − α)·B.
    pub bond_alpha: Ppb,
    /// §3.4.1: a peer is "in consensus" when it has nonzero edges from more than this fraction of
    /// stake (50%).
    pub consensus_stake_threshold: Ppb,
    /// The factor C applied to the rank of a miner that is *not* in consensus in
    /// I = R·C + β·Accuracy (a hard step standing in for the whitepaper's sigmoid; 0 = strict).
    pub out_of_consensus_factor: Ppb,

    // ---- spending (issue 17) -------------------------------------------------------------------
    /// Every account is debited only through gateways it authorised (`Authorize`), within the
    /// cap; false: only accounts that ever signed an allowance are (the others trust any gateway
    /// that countersigns for them, as before).
    pub require_authorization: bool,
}

/// Blocks per day at 10 s blocks.
pub const BLOCKS_PER_DAY_10S: Height = 8_640;

impl Default for EconomicsParams {
    fn default() -> Self {
        Self {
            block_time_secs: 10,
            blocks_per_year: 3_155_760,
            settlement_interval_blocks: BLOCKS_PER_DAY_10S,
            weights_epoch_blocks: 360,
            initial_block_reward: tokens(10),
            halving_interval_blocks: 3_155_760,
            tft_zero_years: 2,
            tft_ramp_end_years: 4,
            tft_ramp_max: 900_000_000,
            tft_final: ONE,
            brain_cap: 1024,
            reserved_brain_ids: vec![0, 1, 2, 3, 4, 5, 6, 47],
            burn_base_price: tokens(1_000),
            burn_price_step: tokens(200),
            stake_method_amount: tokens(100_000),
            stake_method_lock_blocks: 90 * BLOCKS_PER_DAY_10S,
            default_registration_fee: tokens(100),
            max_validators_per_brain: 256,
            max_miners_per_brain: 1792,
            owner_share: 250_000_000,
            default_miner_share: 500_000_000,
            top_brain_bonus: 100_000_000,
            top_brain_fraction: 300_000_000,
            brain_reward_stake_cap: Some(5_000_000),
            gigabrain_threshold: 5_000_000,
            active_validator_fraction: 700_000_000,
            kappa: 500_000_000,
            bond_alpha: 100_000_000,
            consensus_stake_threshold: 500_000_000,
            out_of_consensus_factor: 0,
            require_authorization: false,
        }
    }
}

impl EconomicsParams {
    /// Checks internal consistency (fractions ≤ 1, nonzero periods, reserved ids below the cap).
    pub fn validate(&self) -> Result<()> {
        let fracs = [
            (self.tft_ramp_max, "tft_ramp_max"),
            (self.tft_final, "tft_final"),
            (self.owner_share, "owner_share"),
            (self.default_miner_share, "default_miner_share"),
            (self.top_brain_bonus, "top_brain_bonus"),
            (self.top_brain_fraction, "top_brain_fraction"),
            (self.gigabrain_threshold, "gigabrain_threshold"),
            (self.active_validator_fraction, "active_validator_fraction"),
            (self.kappa, "kappa"),
            (self.bond_alpha, "bond_alpha"),
            (self.consensus_stake_threshold, "consensus_stake_threshold"),
            (self.out_of_consensus_factor, "out_of_consensus_factor"),
        ];
        for (v, name) in fracs {
            if v > ONE {
                return Err(EconomicsError::InvalidParam(name));
            }
        }
        if let Some(c) = self.brain_reward_stake_cap {
            if c == 0 || c > ONE {
                return Err(EconomicsError::InvalidParam("brain_reward_stake_cap"));
            }
        }
        if self.block_time_secs == 0 {
            return Err(EconomicsError::InvalidParam("block_time_secs"));
        }
        if self.blocks_per_year == 0 || self.halving_interval_blocks == 0 {
            return Err(EconomicsError::InvalidParam("blocks_per_year/halving_interval_blocks"));
        }
        if self.settlement_interval_blocks == 0 {
            return Err(EconomicsError::InvalidParam("settlement_interval_blocks"));
        }
        if self.tft_ramp_end_years < self.tft_zero_years {
            return Err(EconomicsError::InvalidParam("tft_ramp_end_years"));
        }
        if self.reserved_brain_ids.iter().any(|id| *id >= self.brain_cap) {
            return Err(EconomicsError::InvalidParam("reserved_brain_ids"));
        }
        Ok(())
    }

    /// The settlement period a height falls in (period k covers [k·I, (k+1)·I)).
    pub fn settlement_period(&self, height: Height) -> u64 {
        height / self.settlement_interval_blocks
    }

    /// True on the last block of a settlement period (when the period is settled).
    #[allow(clippy::manual_is_multiple_of)] // workspace MSRV is 1.85; is_multiple_of is 1.87
    pub fn is_settlement_block(&self, height: Height) -> bool {
        (height + 1) % self.settlement_interval_blocks == 0
    }

    /// Block height at a wall-clock time (seconds since the Unix epoch), given the genesis time.
    /// Times before genesis are height 0.
    pub fn height_at(&self, genesis_unix_secs: u64, now_unix_secs: u64) -> Height {
        now_unix_secs.saturating_sub(genesis_unix_secs) / self.block_time_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_whitepaper() {
        let p = EconomicsParams::default();
        p.validate().unwrap();
        assert_eq!(p.block_time_secs, 10);
        assert_eq!(p.blocks_per_year, 3_155_760);
        // 365.25 days × 8,640 blocks per day
        assert_eq!(p.blocks_per_year * 4, 1461 * 8_640);
        assert_eq!(p.initial_block_reward, 10_000_000_000);
        assert_eq!(p.brain_cap, 1024);
        assert_eq!(p.reserved_brain_ids, vec![0, 1, 2, 3, 4, 5, 6, 47]);
        assert_eq!(p.stake_method_lock_blocks, 777_600);
        assert_eq!(p.settlement_interval_blocks, 8_640);
        assert_eq!(p.default_registration_fee, tokens(100));
        assert_eq!(p.owner_share, ONE / 4);
        assert_eq!(p.kappa, ONE / 2);
        assert_eq!(p.bond_alpha, ONE / 10);
        assert_eq!(p.height_at(1_000, 1_000 + 8_640 * 10 + 9), 8_640);
        assert!(p.is_settlement_block(8_639) && !p.is_settlement_block(8_640));
    }

    #[test]
    fn serde_round_trip_and_partial_config() {
        let p = EconomicsParams::default();
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<EconomicsParams>(&s).unwrap(), p);
        // a config that names only what it changes keeps the other defaults
        let q: EconomicsParams =
            serde_json::from_str(r#"{"block_time_secs": 1, "brain_reward_stake_cap": null}"#).unwrap();
        assert_eq!(q.block_time_secs, 1);
        assert_eq!(q.brain_reward_stake_cap, None);
        assert_eq!(q.brain_cap, 1024);
        let bad = EconomicsParams { kappa: ONE + 1, ..EconomicsParams::default() };
        assert!(bad.validate().is_err());
    }
}
