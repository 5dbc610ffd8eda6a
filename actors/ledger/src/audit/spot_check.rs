//! The validator's sampling rate and its per-task sampling decision.
//!
//! Inspection game: a miner that cheats on a task keeps `gain`; if the task is audited (with
//! probability `p`) it loses `slash + fee`. Cheating has non-positive expected value when
//! `gain − p·(slash + fee) ≤ 0`, i.e. `p ≥ gain / (slash + fee)`. (This assumes the cheater keeps
//! the gain even when caught, so it is at least the rate of the variant where a caught cheater
//! forfeits the gain too, `gain / (gain + slash + fee)`.)
//!
//! The decision for one task is a keyed hash of the task id, so a miner cannot tell which tasks
//! a validator will audit without that validator's secret seed, and a validator that restarts
//! with the same seed decides the same way.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Parameters of [`spot_check_rate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpotCheckParams {
    /// Floor on the rate for every miner (default 0.01).
    pub min_rate: f64,
    /// A miner with fewer audited tasks than this counts as new (default 50).
    pub new_miner_tasks: u64,
    /// Floor on the rate for new miners (default 0.05).
    pub new_miner_min_rate: f64,
    /// When set, the rate for every miner, whatever the game says (clamped to `[0, 1]`).
    pub override_rate: Option<f64>,
}

impl Default for SpotCheckParams {
    fn default() -> Self {
        Self { min_rate: 0.01, new_miner_tasks: 50, new_miner_min_rate: 0.05, override_rate: None }
    }
}

/// Clamps to `[0, 1]`; NaN becomes 1 (when in doubt, audit).
fn unit(x: f64) -> f64 {
    if x.is_nan() {
        1.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// The fraction of a miner's tasks to audit: `gain / (slash + fee)`, raised to `min_rate` (and to
/// `new_miner_min_rate` while `audited_tasks < new_miner_tasks`), capped at 1.
///
/// `gain`, `slash` and `fee` are in the same unit (any; only their ratio matters). A
/// non-positive or non-finite penalty `slash + fee` gives 1 (nothing deters a cheater, so audit
/// everything); a non-positive gain gives the floor. `override_rate`, when set, replaces all of
/// this, floors included.
pub fn spot_check_rate(gain: f64, slash: f64, fee: f64, audited_tasks: u64, params: &SpotCheckParams) -> f64 {
    if let Some(r) = params.override_rate {
        return unit(r);
    }
    let penalty = slash.max(0.0) + fee.max(0.0);
    let game = if gain.is_nan() || !penalty.is_finite() || penalty <= 0.0 {
        1.0
    } else if gain <= 0.0 {
        0.0
    } else {
        gain / penalty // +inf gain gives +inf, clamped below
    };
    let mut floor = unit(params.min_rate);
    if audited_tasks < params.new_miner_tasks {
        floor = floor.max(unit(params.new_miner_min_rate));
    }
    unit(game).max(floor)
}

/// Whether the validator with `validator_secret_seed` audits `task_id` at `rate`.
///
/// The first 8 bytes of `sha256(seed || task_id)`, read big-endian as a `u64` `h`, are compared
/// with `rate · 2⁶⁴`: audit iff `h < rate · 2⁶⁴`. So over many task ids the audited fraction is
/// `rate`, `rate ≥ 1` (or NaN) audits everything and `rate ≤ 0` nothing. The seed is fixed
/// length, so `seed || task_id` is unambiguous.
pub fn should_audit(rate: f64, validator_secret_seed: &[u8; 32], task_id: &str) -> bool {
    let rate = unit(rate);
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let mut hasher = Sha256::new();
    hasher.update(validator_secret_seed);
    hasher.update(task_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let h = u64::from_be_bytes(first) as u128;
    // rate ∈ (0, 1): rate·2⁶⁴ < 2⁶⁴, exact enough in f64 and in range of u128.
    let threshold = (rate * 18_446_744_073_709_551_616.0) as u128;
    h < threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> SpotCheckParams {
        SpotCheckParams::default()
    }

    #[test]
    fn rate_is_gain_over_slash_plus_fee() {
        let r = spot_check_rate(10.0, 80.0, 20.0, 1000, &p());
        assert!((r - 0.1).abs() < 1e-12);
    }

    #[test]
    fn rate_makes_cheating_unprofitable() {
        for (gain, slash, fee) in [(10.0, 80.0, 20.0), (1.0, 1000.0, 1.0), (3.0, 7.0, 0.5)] {
            let r = spot_check_rate(gain, slash, fee, 1000, &p());
            assert!(gain - r * (slash + fee) <= 1e-9, "{gain} {slash} {fee} -> {r}");
        }
    }

    #[test]
    fn rate_is_clamped_to_min_rate_and_one() {
        assert_eq!(spot_check_rate(1.0, 1e9, 0.0, 1000, &p()), 0.01);
        assert_eq!(spot_check_rate(0.0, 10.0, 1.0, 1000, &p()), 0.01);
        assert_eq!(spot_check_rate(-5.0, 10.0, 1.0, 1000, &p()), 0.01);
        assert_eq!(spot_check_rate(100.0, 10.0, 1.0, 1000, &p()), 1.0);
        assert_eq!(spot_check_rate(f64::INFINITY, 10.0, 1.0, 1000, &p()), 1.0);
    }

    #[test]
    fn no_penalty_means_audit_everything() {
        assert_eq!(spot_check_rate(1.0, 0.0, 0.0, 1000, &p()), 1.0);
        assert_eq!(spot_check_rate(1.0, -3.0, 0.0, 1000, &p()), 1.0);
        assert_eq!(spot_check_rate(1.0, f64::NAN, 0.0, 1000, &p()), 1.0);
        assert_eq!(spot_check_rate(f64::NAN, 10.0, 1.0, 1000, &p()), 1.0);
    }

    #[test]
    fn new_miners_get_at_least_the_new_miner_rate() {
        assert_eq!(spot_check_rate(1.0, 1e9, 0.0, 0, &p()), 0.05);
        assert_eq!(spot_check_rate(1.0, 1e9, 0.0, 49, &p()), 0.05);
        assert_eq!(spot_check_rate(1.0, 1e9, 0.0, 50, &p()), 0.01);
        // the game's rate still wins when higher
        assert!((spot_check_rate(1.0, 4.0, 1.0, 0, &p()) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn override_replaces_the_game_and_the_floors() {
        let mut params = p();
        params.override_rate = Some(0.5);
        assert_eq!(spot_check_rate(100.0, 1.0, 0.0, 0, &params), 0.5);
        params.override_rate = Some(0.0);
        assert_eq!(spot_check_rate(100.0, 1.0, 0.0, 0, &params), 0.0);
        params.override_rate = Some(7.0);
        assert_eq!(spot_check_rate(0.0, 1.0, 0.0, 1000, &params), 1.0);
    }

    #[test]
    fn params_serde_round_trip_and_defaults_fill_missing_fields() {
        let mut params = p();
        params.override_rate = Some(0.25);
        let json = serde_json::to_string(&params).unwrap();
        assert_eq!(serde_json::from_str::<SpotCheckParams>(&json).unwrap(), params);
        let partial: SpotCheckParams = serde_json::from_str(r#"{"min_rate":0.02}"#).unwrap();
        assert_eq!(partial, SpotCheckParams { min_rate: 0.02, ..p() });
    }

    #[test]
    fn sampling_is_deterministic_per_seed() {
        let seed = [7u8; 32];
        for i in 0..200 {
            let id = format!("task-{i}");
            assert_eq!(should_audit(0.3, &seed, &id), should_audit(0.3, &seed, &id));
        }
    }

    #[test]
    fn sampling_extremes_audit_all_or_none() {
        let seed = [1u8; 32];
        for i in 0..100 {
            let id = format!("t{i}");
            assert!(should_audit(1.0, &seed, &id));
            assert!(should_audit(f64::NAN, &seed, &id));
            assert!(!should_audit(0.0, &seed, &id));
            assert!(!should_audit(-1.0, &seed, &id));
        }
    }

    #[test]
    fn sampled_fraction_matches_rate() {
        let seed = [42u8; 32];
        let n = 20_000;
        for rate in [0.01, 0.05, 0.3, 0.9] {
            let hits = (0..n).filter(|i| should_audit(rate, &seed, &format!("task-{i}"))).count();
            let expected = rate * n as f64;
            let sd = (n as f64 * rate * (1.0 - rate)).sqrt();
            assert!((hits as f64 - expected).abs() < 5.0 * sd, "rate {rate}: {hits} of {n}");
        }
    }

    #[test]
    fn different_seeds_pick_different_tasks() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let ids: Vec<String> = (0..2000).map(|i| format!("task-{i}")).collect();
        let pick = |s: &[u8; 32]| ids.iter().map(|id| should_audit(0.5, s, id)).collect::<Vec<_>>();
        let (pa, pb) = (pick(&a), pick(&b));
        let agree = pa.iter().zip(&pb).filter(|(x, y)| x == y).count();
        // independent coins agree about half the time
        assert!((800..1200).contains(&agree), "{agree}");
    }

    proptest! {
        /// Lower rates audit a subset of the tasks higher rates audit (same seed).
        #[test]
        fn sampling_is_monotone_in_rate(seed in any::<[u8; 32]>(), id in ".{0,40}",
                                        a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if should_audit(lo, &seed, &id) {
                prop_assert!(should_audit(hi, &seed, &id));
            }
        }

        #[test]
        fn rate_is_always_within_bounds(gain in -1e6f64..1e6, slash in -1e6f64..1e6,
                                        fee in -1e6f64..1e6, tasks in 0u64..200) {
            let r = spot_check_rate(gain, slash, fee, tasks, &p());
            prop_assert!((0.01..=1.0).contains(&r));
            if tasks < 50 { prop_assert!(r >= 0.05); }
        }
    }
}
