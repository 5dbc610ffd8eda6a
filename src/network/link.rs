//! An emulated link (like `tc netem`, inside the process): every message a peer receives is
//! delayed by a one-way latency (`latency` plus a uniform `jitter`) and its size over the
//! bandwidth, and a gossip message is dropped with probability `loss`. The simulator uses it to
//! give the in-memory mesh a network (its values scaled by the chain clock's speed-up); a node
//! may use it on loopback too (`[network] emulate_*`).
//!
//! What it models and what it does not: latency, jitter and serialisation delay per message and
//! per hop (a gossip message is delayed before it is validated, hence before it is forwarded);
//! loss of gossip messages only (a lost request would only turn into a timeout); bandwidth per
//! message, not a shared queue (two large messages at once do not slow each other down).

use std::time::Duration;

/// One peer's inbound link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    pub latency: Duration,
    pub jitter: Duration,
    /// Probability in [0, 1] that a gossip message is lost.
    pub loss: f64,
    /// Bytes per second; 0: unlimited.
    pub bytes_per_s: u64,
}

impl LinkModel {
    /// None when every parameter is zero (no emulation).
    pub fn new(latency: Duration, jitter: Duration, loss: f64, bytes_per_s: u64) -> Option<Self> {
        let loss = if loss.is_finite() { loss.clamp(0.0, 1.0) } else { 0.0 };
        (latency > Duration::ZERO || jitter > Duration::ZERO || loss > 0.0 || bytes_per_s > 0).then_some(Self {
            latency,
            jitter,
            loss,
            bytes_per_s,
        })
    }

    /// The delay of a message of `bytes`, given a uniform draw `u` in [0, 1).
    pub fn delay(&self, bytes: usize, u: f64) -> Duration {
        let serialise = if self.bytes_per_s == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64)
        };
        self.latency + self.jitter.mul_f64(u.clamp(0.0, 1.0)) + serialise
    }

    /// Whether a gossip message is lost, given a uniform draw `u` in [0, 1).
    pub fn lost(&self, u: f64) -> bool {
        u < self.loss
    }

    /// A delay with a fresh random draw.
    pub fn sample_delay(&self, bytes: usize) -> Duration {
        self.delay(bytes, rand::random::<f64>())
    }

    /// A loss decision with a fresh random draw.
    pub fn sample_lost(&self) -> bool {
        self.lost(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_is_latency_plus_jitter_plus_size_over_bandwidth_and_loss_follows_the_rate() {
        let ms = Duration::from_millis;
        let l = LinkModel::new(ms(20), ms(10), 0.25, 1_000_000).unwrap();
        assert_eq!(l.delay(0, 0.0), ms(20));
        assert_eq!(l.delay(0, 0.5), ms(25));
        assert_eq!(l.delay(500_000, 0.0), ms(520), "half a second of bytes at 1 MB/s");
        assert!(l.lost(0.1) && !l.lost(0.3));
        assert_eq!(LinkModel::new(Duration::ZERO, Duration::ZERO, 0.0, 0), None, "all zero: no emulation");
        assert_eq!(LinkModel::new(Duration::ZERO, Duration::ZERO, 7.0, 0).unwrap().loss, 1.0);
        let lost = (0..10_000).filter(|_| l.sample_lost()).count();
        assert!((2_000..3_000).contains(&lost), "{lost} of 10000 at 25%");
    }
}
