//! The load: every request of a run, drawn up front from the seed (so the same scenario and
//! seed send the same requests at the same chain times, whatever the machine).

use super::scenario::LoadSpec;

/// A deterministic generator (splitmix64). Small, and stable across crate versions, which a
/// scenario's reproducibility depends on.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    /// A generator for one purpose, independent of the others drawn from the same seed.
    pub fn stream(seed: u64, purpose: &str) -> Self {
        let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
        for b in purpose.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Self(h)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo) + 1)
    }
    /// A Poisson draw with mean `lambda` (Knuth; the means here are small).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            // Normal approximation for large means.
            let (u1, u2) = (self.unit().max(1e-12), self.unit());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            return (lambda + z * lambda.sqrt()).round().max(0.0) as u32;
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u32, 1.0);
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// One request of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Sequence number (the request's id in requests.csv).
    pub seq: u64,
    /// Chain time offset from genesis (ms).
    pub at_ms: u64,
    pub gateway: usize,
    pub account: usize,
    pub prompt: String,
    pub max_tokens: u32,
    /// Sampling seed; even requests are greedy, odd ones sampled at T = 0.8.
    pub seed: u64,
}

const WORDS: &[&str] = &[
    "the", "king", "of", "night", "rose", "love", "sword", "crown", "storm", "sea", "fair", "death", "honour", "ghost",
    "dream", "queen", "truth", "fool", "fire", "blood", "heaven", "time", "word", "heart", "light", "grave", "friend",
    "state", "war", "peace", "summer", "winter",
];

/// Every request of a run of `blocks` blocks of `block_ms`, in arrival order.
pub fn arrivals(spec: &LoadSpec, seed: u64, blocks: u64, block_ms: u64, gateways: usize) -> Vec<Arrival> {
    let mut rng = SimRng::stream(seed, "load");
    let mut out = vec![];
    for h in 0..blocks {
        let n = rng.poisson(spec.per_block);
        let mut offsets: Vec<u64> = (0..n).map(|_| rng.range(0, block_ms.saturating_sub(1))).collect();
        offsets.sort_unstable();
        for off in offsets {
            let words = rng.range(u64::from(spec.prompt_words[0]), u64::from(spec.prompt_words[1]));
            let prompt: Vec<&str> = (0..words).map(|_| WORDS[rng.range(0, WORDS.len() as u64 - 1) as usize]).collect();
            out.push(Arrival {
                seq: out.len() as u64,
                at_ms: h * block_ms + off,
                gateway: rng.range(0, gateways.max(1) as u64 - 1) as usize,
                account: rng.range(0, spec.accounts.max(1) as u64 - 1) as usize,
                prompt: prompt.join(" "),
                max_tokens: rng.range(u64::from(spec.max_tokens[0]), u64::from(spec.max_tokens[1])) as u32,
                seed: rng.next_u64(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_load_and_another_seed_another() {
        let spec = LoadSpec { per_block: 2.0, ..Default::default() };
        let a = arrivals(&spec, 7, 100, 10_000, 2);
        assert_eq!(a, arrivals(&spec, 7, 100, 10_000, 2));
        assert_ne!(a, arrivals(&spec, 8, 100, 10_000, 2));
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.iter().all(|r| r.gateway < 2 && r.account < spec.accounts));
    }

    #[test]
    fn poisson_arrivals_have_the_configured_mean() {
        let spec = LoadSpec { per_block: 3.0, ..Default::default() };
        let n = arrivals(&spec, 1, 2_000, 10_000, 1).len() as f64 / 2_000.0;
        assert!((n - 3.0).abs() < 0.15, "mean {n}");
        let mut r = SimRng::new(5);
        let big = (0..2_000).map(|_| f64::from(r.poisson(100.0))).sum::<f64>() / 2_000.0;
        assert!((big - 100.0).abs() < 2.0, "mean {big}");
    }
}
