//! Per-account token buckets: `per_minute` requests a minute, refilled continuously, holding at
//! most `burst` requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `per_minute = 0` disables the limit; `burst = 0` means a minute's worth.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let burst = if burst == 0 { per_minute } else { burst };
        Self { per_minute, burst: f64::from(burst), buckets: Mutex::new(HashMap::new()) }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one request from `account`'s bucket, or says how long until one is available.
    pub fn check(&self, account: &str) -> Result<(), Duration> {
        self.check_at(account, Instant::now())
    }

    pub fn check_at(&self, account: &str, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0; // tokens per second
                                                      // A poisoned lock only means another request panicked mid-update; the map is still sound.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(account.to_string()).or_insert(Bucket { tokens: self.burst, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(self.burst);
        b.last = now.max(b.last);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_refilled() {
        let rl = RateLimiter::new(60, 3); // one a second, three at once
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check_at("a", t0).unwrap();
        }
        let wait = rl.check_at("a", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // Another account has its own bucket.
        rl.check_at("b", t0).unwrap();
        // Half a second later still empty; a second later one more.
        assert!(rl.check_at("a", t0 + Duration::from_millis(500)).is_err());
        rl.check_at("a", t0 + Duration::from_millis(1000)).unwrap();
        assert!(rl.check_at("a", t0 + Duration::from_millis(1000)).is_err());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            rl.check_at("a", later).unwrap();
        }
        assert!(rl.check_at("a", later).is_err());
    }

    #[test]
    fn zero_per_minute_disables_the_limit() {
        let rl = RateLimiter::new(0, 0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            rl.check_at("a", t0).unwrap();
        }
    }

    #[test]
    fn burst_defaults_to_a_minutes_worth() {
        let rl = RateLimiter::new(5, 0);
        let t0 = Instant::now();
        for _ in 0..5 {
            rl.check_at("a", t0).unwrap();
        }
        assert!(rl.check_at("a", t0).is_err());
    }
}
