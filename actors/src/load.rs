//! What a miner reports about its own load, read by the membership actor for heartbeats.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::protocols::gossip::ModelAd;

#[derive(Debug, Default)]
pub struct LoadReport {
    serving: Mutex<Vec<ModelAd>>,
    queue_depth: AtomicU32,
    tokens_per_s_milli: AtomicU32,
    ttft_ms: AtomicU32,
}

impl LoadReport {
    pub fn set_serving(&self, models: Vec<ModelAd>) {
        if let Ok(mut s) = self.serving.lock() {
            *s = models;
        }
    }
    pub fn serving(&self) -> Vec<ModelAd> {
        self.serving.lock().map(|s| s.clone()).unwrap_or_default()
    }
    pub fn set_queue_depth(&self, n: u32) {
        self.queue_depth.store(n, Ordering::Relaxed);
    }
    pub fn queue_depth(&self) -> u32 {
        self.queue_depth.load(Ordering::Relaxed)
    }
    /// Exponentially smoothed (α = 0.2) decode speed and time to first token.
    pub fn record_task(&self, tokens_per_s: f64, ttft_ms: f64) {
        let smooth = |a: &AtomicU32, x: f64| {
            let old = a.load(Ordering::Relaxed) as f64;
            let new = if old == 0.0 { x } else { 0.8 * old + 0.2 * x };
            a.store(new.clamp(0.0, u32::MAX as f64) as u32, Ordering::Relaxed);
        };
        smooth(&self.tokens_per_s_milli, tokens_per_s * 1000.0);
        smooth(&self.ttft_ms, ttft_ms);
    }
    pub fn tokens_per_s_milli(&self) -> u32 {
        self.tokens_per_s_milli.load(Ordering::Relaxed)
    }
    pub fn ttft_ms(&self) -> u32 {
        self.ttft_ms.load(Ordering::Relaxed)
    }
}
