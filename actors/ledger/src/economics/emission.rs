//! Block rewards, yearly halving, cumulative issuance (whitepaper §3.1.2, Table 2), the TFT
//! enforcer weight β(t) (§3.4.2) and the incentive I = R·C + β(t)·Accuracy(TFT).
//!
//! Whitepaper Table 2 ("Emission Schedule & Currency Supply"), quoted:
//!
//! ```text
//! Year  Block Reward  $BASED Emission  TFT Enforcer Weight
//!  1    10            31,536,000.00    0
//!  2    5             15,768,000.00    0
//!  3    2.5            7,884,000.00    0.9
//!  4    1.25           3,942,000.00    0.9
//!  5    0.625          1,971,000.00    1
//!  6    0.3125           985,500.00    1
//!  7    0.15625          492,750.00    1
//!  8    0.078125         246,375.00    1
//!  9    0.0390625        123,187.50    1
//! 10    0.01953125        61,593.75    1
//! ```
//!
//! Two inconsistencies in the whitepaper, and what we do:
//!
//! * The emission column is `reward × 3,153,600`, i.e. 365-day years (8,640 blocks × 365),
//!   while §3.4.2 defines a year as 3,155,760 blocks (365.25 days). We keep 3,155,760 as the
//!   default (it is the number the text states and the halving/β clock needs a single year), so
//!   the default year-1 issuance is 31,557,600 (+0.068%); with `blocks_per_year =
//!   halving_interval_blocks = 3,153,600` [`year_issuance`] reproduces the table exactly (tested).
//! * The β column reads 0.9 already in year 3, but the text says β rises *linearly* over years
//!   2–4 to 0.9 and is 1 after year 4 (the table also shows 1 from year 5, consistent with
//!   that). We follow the text: β(t) = 0 for t ≤ 2, 0.9·(t − 2)/2 for 2 < t ≤ 4, 1 for t > 4,
//!   with t measured in blocks so it moves every block. At the end of year 3 β = 0.45.

use super::distribution::split_by_weights;
use super::params::EconomicsParams;
use super::{mul_div_floor, Amount, Height, Ppb, Result, ONE};

/// Number of halvings that happened before `height` (0 in year 1).
pub fn halving_index(height: Height, p: &EconomicsParams) -> u64 {
    height / p.halving_interval_blocks
}

/// The block reward at `height`: `initial >> halvings`, rounded down to the base unit (exact for
/// the first 10 years; after ~34 halvings it is 0). Monotone non-increasing in `height`.
pub fn block_reward(height: Height, p: &EconomicsParams) -> Amount {
    let h = halving_index(height, p);
    if h >= 128 {
        0
    } else {
        p.initial_block_reward >> h
    }
}

/// Total issued by the blocks in `[from, to)` (block `h` mints [`block_reward`]`(h)`).
pub fn issuance_between(from: Height, to: Height, p: &EconomicsParams) -> Amount {
    if to <= from {
        return 0;
    }
    let mut total: Amount = 0;
    let mut h = from;
    while h < to {
        let era = halving_index(h, p);
        let reward = block_reward(h, p);
        if reward == 0 {
            break;
        }
        let era_end = (era + 1).saturating_mul(p.halving_interval_blocks).min(to);
        total += reward * (era_end - h) as u128;
        h = era_end;
    }
    total
}

/// Total issued from genesis up to (not including) `height`.
pub fn cumulative_issuance(height: Height, p: &EconomicsParams) -> Amount {
    issuance_between(0, height, p)
}

/// Issuance of year `year` (1-based; year y covers blocks [(y−1)·Y, y·Y), Y = blocks_per_year).
pub fn year_issuance(year: u64, p: &EconomicsParams) -> Amount {
    assert!(year >= 1, "years are 1-based");
    issuance_between((year - 1) * p.blocks_per_year, year * p.blocks_per_year, p)
}

/// The limit of all issuance: `Σ_h initial·interval / 2^h` (< 2·initial·interval).
pub fn max_supply(p: &EconomicsParams) -> Amount {
    (0..128u32).map(|h| (p.initial_block_reward >> h) * p.halving_interval_blocks as u128).sum()
}

/// TFT enforcer weight β(t) at `height` (§3.4.2), in ppb: 0 while t ≤ `tft_zero_years`, then
/// linear in blocks up to `tft_ramp_max` at `tft_ramp_end_years`, then `tft_final`.
pub fn tft_beta(height: Height, p: &EconomicsParams) -> Ppb {
    let start = p.tft_zero_years * p.blocks_per_year;
    let end = p.tft_ramp_end_years * p.blocks_per_year;
    if height <= start {
        0
    } else if height <= end {
        // end > start here because height > start and height ≤ end
        mul_div_floor(p.tft_ramp_max as u128, (height - start) as u128, (end - start) as u128).expect("fits") as Ppb
    } else {
        p.tft_final
    }
}

/// The TFT accuracy term of I = R·C + β(t)·Accuracy(TFT), per miner, in ppb. Pluggable so that a
/// trained TFT enforcer (Brain #2) can be dropped in later; until then [`NoTft`] returns 0.
pub trait AccuracyOracle {
    /// Accuracy credited to miner `miner` (column index of the weight matrix) this epoch.
    fn accuracy(&self, miner: usize) -> Ppb;
}

/// No TFT model exists: the accuracy term is zero, so I = R·C.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTft;

impl AccuracyOracle for NoTft {
    fn accuracy(&self, _miner: usize) -> Ppb {
        0
    }
}

/// A fixed accuracy vector (tests, simulations, or a TFT run computed elsewhere).
impl AccuracyOracle for Vec<Ppb> {
    fn accuracy(&self, miner: usize) -> Ppb {
        self.get(miner).copied().unwrap_or(0).min(ONE)
    }
}

/// I = R·C + β·Accuracy, normalised to sum to [`ONE`] (all zeros if every score is zero).
///
/// `rank` is the normalised clipped rank R (ppb), `consensus` the factor C (ppb; 1.0 for a miner
/// in consensus, see `EconomicsParams::out_of_consensus_factor`), `beta` = β(t).
pub fn combined_incentive(
    rank: &[Ppb],
    consensus: &[Ppb],
    beta: Ppb,
    accuracy: &dyn AccuracyOracle,
) -> Result<Vec<Ppb>> {
    debug_assert_eq!(rank.len(), consensus.len());
    let scores: Vec<u128> = rank
        .iter()
        .zip(consensus)
        .enumerate()
        .map(|(j, (r, c))| *r as u128 * *c as u128 + beta as u128 * accuracy.accuracy(j).min(ONE) as u128)
        .collect();
    if scores.iter().all(|s| *s == 0) {
        return Ok(vec![0; rank.len()]);
    }
    Ok(split_by_weights(ONE as u128, &scores)?.into_iter().map(|x| x as Ppb).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::economics::tokens;
    use proptest::prelude::*;

    fn table2_params() -> EconomicsParams {
        // Table 2's emission column is reward × 365 days × 8,640 blocks.
        EconomicsParams { blocks_per_year: 3_153_600, halving_interval_blocks: 3_153_600, ..EconomicsParams::default() }
    }

    /// (year, block reward, emission) from Table 2, in base units (10⁻⁹ $BASED).
    const TABLE2: [(u64, Amount, Amount); 10] = [
        (1, 10_000_000_000, 31_536_000_000_000_000),
        (2, 5_000_000_000, 15_768_000_000_000_000),
        (3, 2_500_000_000, 7_884_000_000_000_000),
        (4, 1_250_000_000, 3_942_000_000_000_000),
        (5, 625_000_000, 1_971_000_000_000_000),
        (6, 312_500_000, 985_500_000_000_000),
        (7, 156_250_000, 492_750_000_000_000),
        (8, 78_125_000, 246_375_000_000_000),
        (9, 39_062_500, 123_187_500_000_000),
        (10, 19_531_250, 61_593_750_000_000),
    ];

    #[test]
    fn table2_block_rewards_match_each_year() {
        for p in [EconomicsParams::default(), table2_params()] {
            for (year, reward, _) in TABLE2 {
                let first = (year - 1) * p.blocks_per_year;
                let last = year * p.blocks_per_year - 1;
                assert_eq!(block_reward(first, &p), reward, "year {year} first block");
                assert_eq!(block_reward(last, &p), reward, "year {year} last block");
            }
        }
    }

    #[test]
    fn table2_emission_matches_each_year_at_365_day_years() {
        let p = table2_params();
        let mut cumulative = 0;
        for (year, _, emission) in TABLE2 {
            assert_eq!(year_issuance(year, &p), emission, "year {year}");
            cumulative += emission;
            assert_eq!(cumulative_issuance(year * p.blocks_per_year, &p), cumulative);
        }
        // Σ of the table: 63,010,406.25 $BASED after ten years.
        assert_eq!(cumulative, 63_010_406_250_000_000);
    }

    #[test]
    fn default_years_are_3155760_blocks() {
        let p = EconomicsParams::default();
        for (year, reward, emission) in TABLE2 {
            assert_eq!(year_issuance(year, &p), reward * 3_155_760);
            // the same schedule, 2,160 blocks (6 hours) longer per year than the table
            assert_eq!(year_issuance(year, &p) - emission, reward * 2_160);
        }
        assert_eq!(year_issuance(1, &p), tokens(31_557_600));
        assert!(max_supply(&p) < 2 * tokens(10) * 3_155_760);
        assert_eq!(cumulative_issuance(200 * p.blocks_per_year, &p), max_supply(&p));
    }

    #[test]
    fn beta_schedule() {
        let p = EconomicsParams::default();
        let y = p.blocks_per_year;
        assert_eq!(tft_beta(0, &p), 0);
        assert_eq!(tft_beta(2 * y, &p), 0); // t ≤ 2 → 0
        assert_eq!(tft_beta(2 * y + 1, &p), 142); // 0.9 / 6,311,520 per block
        assert_eq!(tft_beta(3 * y, &p), 450_000_000); // halfway: 0.45
        assert_eq!(tft_beta(4 * y, &p), 900_000_000); // t = 4 → 0.9
        assert_eq!(tft_beta(4 * y + 1, &p), ONE); // t > 4 → 1
        assert_eq!(tft_beta(40 * y, &p), ONE);
    }

    #[test]
    fn incentive_with_and_without_tft() {
        let rank = [600_000_000, 400_000_000, 0];
        let c = [ONE, ONE, ONE];
        assert_eq!(combined_incentive(&rank, &c, ONE, &NoTft).unwrap(), rank.to_vec());
        // β = 0: accuracy has no influence
        let acc: Vec<Ppb> = vec![0, 0, ONE];
        assert_eq!(combined_incentive(&rank, &c, 0, &acc).unwrap(), rank.to_vec());
        // β = 1: scores .6, .4, 1.0 → .3, .2, .5
        assert_eq!(combined_incentive(&rank, &c, ONE, &acc).unwrap(), vec![300_000_000, 200_000_000, 500_000_000]);
        // a miner out of consensus (C = 0) earns nothing from rank
        assert_eq!(combined_incentive(&rank, &[ONE, 0, ONE], 0, &NoTft).unwrap(), vec![ONE, 0, 0]);
        assert_eq!(combined_incentive(&[0, 0], &[ONE, ONE], ONE, &NoTft).unwrap(), vec![0, 0]);
    }

    proptest! {
        /// Monotone halving: the reward never rises, and halves exactly at each era boundary.
        #[test]
        fn halving_is_monotone(a in 0u64..200 * 3_155_760, b in 0u64..200 * 3_155_760) {
            let p = EconomicsParams::default();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(block_reward(lo, &p) >= block_reward(hi, &p));
            let era_start = halving_index(hi, &p) * p.halving_interval_blocks;
            if era_start > 0 {
                prop_assert_eq!(block_reward(era_start, &p), block_reward(era_start - 1, &p) / 2);
            }
        }

        /// Issuance is additive over intervals and bounded by the supply limit; β is monotone.
        #[test]
        fn issuance_additive(a in 0u64..50 * 3_155_760, b in 0u64..50 * 3_155_760,
                             c in 0u64..50 * 3_155_760) {
            let p = EconomicsParams::default();
            let mut v = [a, b, c];
            v.sort();
            prop_assert_eq!(issuance_between(v[0], v[2], &p),
                issuance_between(v[0], v[1], &p) + issuance_between(v[1], v[2], &p));
            prop_assert!(cumulative_issuance(v[2], &p) <= max_supply(&p));
            prop_assert!(tft_beta(v[0], &p) <= tft_beta(v[1], &p));
            prop_assert!(tft_beta(v[2], &p) <= ONE);
        }
    }
}
