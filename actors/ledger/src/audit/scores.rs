//! Per-miner running scores from audit outcomes, and the weight vector they yield.
//!
//! Score of a miner in the current epoch:
//! `pass_rate × availability × latency_factor`, where
//! * `pass_rate = (passed + 1) / (passed + failed + 2)` (Laplace-smoothed, so a miner not yet
//!   checked this epoch scores ½ rather than 0 or 1);
//! * `availability = answered / (answered + missed)` over this epoch's audit fetches, 1 when no
//!   fetch was attempted;
//! * `latency_factor = 1 / (1 + latency / ref_latency)` on the latency EMA, which spans epochs;
//!   a miner never timed is taken to be at `ref_latency` (factor ½).
//!
//! One failed check in the epoch zeroes the miner's weight, whatever the rest says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::weights::PPB;

/// Parameters of the scoreboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreParams {
    /// Latency at which the latency factor is ½ (default 2000 ms).
    pub ref_latency_ms: f64,
    /// Weight of a new latency sample in the EMA, in `(0, 1]` (default 0.2).
    pub latency_ema_alpha: f64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self { ref_latency_ms: 2000.0, latency_ema_alpha: 0.2 }
    }
}

/// What one validator has seen of one miner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinerScore {
    /// Checks passed this epoch.
    pub passed: u64,
    /// Checks failed this epoch.
    pub failed: u64,
    /// Audit fetches answered this epoch.
    pub answered: u64,
    /// Audit fetches not answered this epoch.
    pub missed: u64,
    /// EMA of check latency in ms (kept across epochs); `None` until the first check.
    pub latency_ema_ms: Option<f64>,
    /// Checks (passed or failed) over the miner's whole history with this validator, for
    /// [`super::spot_check::spot_check_rate`]'s new-miner rule.
    pub audited_total: u64,
}

impl MinerScore {
    /// Laplace-smoothed pass rate of this epoch.
    pub fn pass_rate(&self) -> f64 {
        (self.passed as f64 + 1.0) / ((self.passed + self.failed) as f64 + 2.0)
    }

    /// Fraction of this epoch's audit fetches answered; 1 when none was attempted.
    pub fn availability(&self) -> f64 {
        let total = self.answered + self.missed;
        if total == 0 {
            1.0
        } else {
            self.answered as f64 / total as f64
        }
    }

    /// `1 / (1 + latency / ref)`; a miner never timed counts as `ref` (½).
    pub fn latency_factor(&self, params: &ScoreParams) -> f64 {
        let reference = if params.ref_latency_ms.is_finite() && params.ref_latency_ms > 0.0 {
            params.ref_latency_ms
        } else {
            ScoreParams::default().ref_latency_ms
        };
        let latency = self.latency_ema_ms.unwrap_or(reference).max(0.0);
        1.0 / (1.0 + latency / reference)
    }

    /// The score in `[0, 1]`; exactly 0 after any failed check this epoch.
    pub fn score(&self, params: &ScoreParams) -> f64 {
        if self.failed > 0 {
            return 0.0;
        }
        let s = self.pass_rate() * self.availability() * self.latency_factor(params);
        if s.is_finite() {
            s.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Scores of every miner a validator audits, keyed by peer id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scoreboard {
    /// Scoring parameters (latency reference, EMA weight).
    pub params: ScoreParams,
    /// Per-miner counters, keyed by peer id.
    pub miners: BTreeMap<String, MinerScore>,
}

impl Scoreboard {
    /// An empty scoreboard using `params`.
    pub fn new(params: ScoreParams) -> Self {
        Self { params, miners: BTreeMap::new() }
    }

    /// Records one check of `peer`'s output and how long it took.
    pub fn record_check(&mut self, peer: &str, passed: bool, latency_ms: u64) {
        let alpha = {
            let a = self.params.latency_ema_alpha;
            if a.is_finite() && a > 0.0 && a <= 1.0 {
                a
            } else {
                ScoreParams::default().latency_ema_alpha
            }
        };
        let m = self.miners.entry(peer.to_string()).or_default();
        if passed {
            m.passed = m.passed.saturating_add(1);
        } else {
            m.failed = m.failed.saturating_add(1);
        }
        m.audited_total = m.audited_total.saturating_add(1);
        let sample = latency_ms as f64;
        m.latency_ema_ms = Some(match m.latency_ema_ms {
            None => sample,
            Some(ema) => ema + alpha * (sample - ema),
        });
    }

    /// Records whether `peer` answered one audit fetch.
    pub fn record_fetch(&mut self, peer: &str, answered: bool) {
        let m = self.miners.entry(peer.to_string()).or_default();
        if answered {
            m.answered = m.answered.saturating_add(1);
        } else {
            m.missed = m.missed.saturating_add(1);
        }
    }

    /// The counters held for `peer`, if it was ever recorded.
    pub fn get(&self, peer: &str) -> Option<&MinerScore> {
        self.miners.get(peer)
    }

    /// Forgets a miner (e.g. one that left the roster).
    pub fn remove(&mut self, peer: &str) -> Option<MinerScore> {
        self.miners.remove(peer)
    }

    /// Starts a new epoch: clears the per-epoch counters, keeps the latency EMA and history.
    pub fn reset_epoch(&mut self) {
        for m in self.miners.values_mut() {
            m.passed = 0;
            m.failed = 0;
            m.answered = 0;
            m.missed = 0;
        }
    }

    /// One weight per miner, in parts per billion, sorted by peer id (the order a
    /// [`super::weights::WeightVector`] wants).
    ///
    /// The weights sum to exactly [`PPB`] (largest-remainder rounding of the scores; equal
    /// remainders go to the lower peer id), and a miner with a failed check this epoch gets 0.
    /// Empty when no miner has a positive score (a vector of zeros would not sum to [`PPB`]).
    pub fn weights(&self) -> Vec<(String, u64)> {
        let scores: Vec<f64> = self.miners.values().map(|m| m.score(&self.params)).collect();
        let max = scores.iter().copied().fold(0.0f64, f64::max);
        if max <= 0.0 {
            return Vec::new();
        }
        // Scores to integers relative to the best one (2⁵² steps), then an exact integer split.
        const SCALE: f64 = (1u64 << 52) as f64;
        let q: Vec<u128> = scores.iter().map(|s| ((s / max) * SCALE).floor() as u128).collect();
        // Largest-remainder split of PPB (the economics module's one divider); q's best is 2⁵² > 0.
        let parts: Vec<u64> = match crate::economics::split_by_weights(PPB as u128, &q) {
            Ok(p) => p.into_iter().map(|x| x as u64).collect(),
            Err(_) => return Vec::new(),
        };
        self.miners.keys().cloned().zip(parts).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(w: &[(String, u64)]) -> u64 {
        w.iter().map(|(_, x)| x).sum()
    }

    #[test]
    fn empty_scoreboard_has_no_weights() {
        assert!(Scoreboard::default().weights().is_empty());
    }

    #[test]
    fn equal_miners_split_evenly_and_sum_exactly() {
        let mut sb = Scoreboard::default();
        for p in ["a", "b", "c"] {
            sb.record_check(p, true, 1000);
            sb.record_fetch(p, true);
        }
        let w = sb.weights();
        assert_eq!(w, vec![("a".into(), 333_333_334), ("b".into(), 333_333_333), ("c".into(), 333_333_333)]);
        assert_eq!(sum(&w), PPB);
    }

    #[test]
    fn one_failed_check_zeroes_the_weight() {
        let mut sb = Scoreboard::default();
        for _ in 0..100 {
            sb.record_check("a", true, 100);
        }
        sb.record_check("a", false, 100);
        sb.record_check("b", true, 5000);
        let w = sb.weights();
        assert_eq!(w, vec![("a".into(), 0), ("b".into(), PPB)]);
    }

    #[test]
    fn all_failed_gives_empty_vector() {
        let mut sb = Scoreboard::default();
        sb.record_check("a", false, 100);
        sb.record_check("b", false, 100);
        assert!(sb.weights().is_empty());
    }

    #[test]
    fn pass_rate_is_laplace_smoothed() {
        let mut m = MinerScore::default();
        assert_eq!(m.pass_rate(), 0.5);
        m.passed = 8;
        assert_eq!(m.pass_rate(), 0.9);
        m.failed = 2;
        assert_eq!(m.pass_rate(), 0.75);
    }

    #[test]
    fn availability_is_fraction_of_fetches_answered() {
        let mut sb = Scoreboard::default();
        sb.record_fetch("a", true);
        sb.record_fetch("a", true);
        sb.record_fetch("a", true);
        sb.record_fetch("a", false);
        assert_eq!(sb.get("a").unwrap().availability(), 0.75);
        assert_eq!(MinerScore::default().availability(), 1.0);
        // fewer fetches answered, less weight
        sb.record_fetch("b", true);
        for p in ["a", "b"] {
            sb.record_check(p, true, 1000);
        }
        let w = sb.weights();
        assert!(w[0].1 < w[1].1, "{w:?}");
        assert_eq!(sum(&w), PPB);
    }

    #[test]
    fn latency_factor_follows_reference() {
        let params = ScoreParams::default();
        let mut m = MinerScore::default();
        assert_eq!(m.latency_factor(&params), 0.5); // never timed
        m.latency_ema_ms = Some(0.0);
        assert_eq!(m.latency_factor(&params), 1.0);
        m.latency_ema_ms = Some(2000.0);
        assert_eq!(m.latency_factor(&params), 0.5);
        m.latency_ema_ms = Some(6000.0);
        assert_eq!(m.latency_factor(&params), 0.25);
    }

    #[test]
    fn faster_miner_gets_more_weight() {
        let mut sb = Scoreboard::default();
        sb.record_check("fast", true, 0);
        sb.record_check("slow", true, 2000);
        let w = sb.weights();
        // factors 1 and ½, same pass rate: 2:1
        assert_eq!(w, vec![("fast".into(), 666_666_667), ("slow".into(), 333_333_333)]);
    }

    #[test]
    fn latency_is_an_ema() {
        let mut sb = Scoreboard::default();
        sb.record_check("a", true, 1000);
        assert_eq!(sb.get("a").unwrap().latency_ema_ms, Some(1000.0));
        sb.record_check("a", true, 2000);
        let ema = sb.get("a").unwrap().latency_ema_ms.unwrap();
        assert!((ema - 1200.0).abs() < 1e-9);
    }

    #[test]
    fn reset_epoch_keeps_latency_and_clears_counters() {
        let mut sb = Scoreboard::default();
        sb.record_check("a", false, 1500);
        sb.record_fetch("a", false);
        sb.record_check("b", true, 1500);
        assert_eq!(sb.weights()[0].1, 0);
        sb.reset_epoch();
        let a = sb.get("a").unwrap();
        assert_eq!((a.passed, a.failed, a.answered, a.missed), (0, 0, 0, 0));
        assert_eq!(a.latency_ema_ms, Some(1500.0));
        assert_eq!(a.audited_total, 1);
        // last epoch's failure no longer zeroes the weight
        assert_eq!(sb.weights(), vec![("a".into(), 500_000_000), ("b".into(), 500_000_000)]);
    }

    #[test]
    fn weights_are_sorted_by_peer_id() {
        let mut sb = Scoreboard::default();
        for p in ["zed", "alpha", "mid"] {
            sb.record_check(p, true, 10);
        }
        let ids: Vec<String> = sb.weights().into_iter().map(|(p, _)| p).collect();
        assert_eq!(ids, vec!["alpha", "mid", "zed"]);
    }

    #[test]
    fn scoreboard_serde_round_trip() {
        let mut sb = Scoreboard::default();
        sb.record_check("a", true, 123);
        sb.record_fetch("b", false);
        let json = serde_json::to_string(&sb).unwrap();
        assert_eq!(serde_json::from_str::<Scoreboard>(&json).unwrap(), sb);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Check(u8, bool, u64),
        Fetch(u8, bool),
        Reset,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            8 => (0u8..12, prop::bool::weighted(0.9), 0u64..100_000).prop_map(|(p, ok, l)| Event::Check(p, ok, l)),
            4 => (0u8..12, any::<bool>()).prop_map(|(p, ok)| Event::Fetch(p, ok)),
            1 => Just(Event::Reset),
        ]
    }

    proptest! {
        /// Whatever happened, the weights sum to exactly 1e9 or are empty, failed miners get 0,
        /// and the list is sorted by peer id with every miner present.
        #[test]
        fn weights_sum_exactly_and_failures_get_zero(events in prop::collection::vec(event(), 0..200)) {
            let mut sb = Scoreboard::default();
            for e in &events {
                match e {
                    Event::Check(p, ok, l) => sb.record_check(&format!("peer{p}"), *ok, *l),
                    Event::Fetch(p, ok) => sb.record_fetch(&format!("peer{p}"), *ok),
                    Event::Reset => sb.reset_epoch(),
                }
            }
            let w = sb.weights();
            if w.is_empty() {
                prop_assert!(sb.miners.values().all(|m| m.score(&sb.params) == 0.0));
            } else {
                prop_assert_eq!(sum(&w), PPB);
                prop_assert_eq!(w.len(), sb.miners.len());
                prop_assert!(w.windows(2).all(|x| x[0].0 < x[1].0));
                for (p, x) in &w {
                    if sb.get(p).unwrap().failed > 0 { prop_assert_eq!(*x, 0); }
                }
            }
        }
    }
}
