//! Prometheus metrics shared by the actors and the network loop.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::protocols::Reject;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RosterLabel {
    pub brain: String,
    pub role: String,
    pub status: String,
}

/// All counters of one peer. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub rejected: Family<ReasonLabel, Counter>,
    pub accepted: Family<KindLabel, Counter>,
    pub connected_peers: Gauge,
    pub roster: Family<RosterLabel, Gauge>,
    pub sync_requests: Counter,
    /// Task events by kind: routing choices, failovers, prefix-cache hits and misses.
    pub tasks: Family<KindLabel, Counter>,
    /// Prompt tokens whose prefill a miner skipped thanks to its prefix cache.
    pub prefix_reused_tokens: Counter,
    /// Messages from peers, accepted or refused (the simulator's events per second).
    pub received: Counter,
    /// Gateways: receipts countersigned here and not yet reported in a final block.
    pub receipts_pending: Gauge,
    /// Receipts offered again to a validator that did not know them (gateways' outbox and
    /// validators' reconciliation).
    pub receipts_reoffered: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("brainmesh");
        let rejected = Family::<ReasonLabel, Counter>::default();
        let accepted = Family::<KindLabel, Counter>::default();
        let connected_peers = Gauge::default();
        let roster = Family::<RosterLabel, Gauge>::default();
        let sync_requests = Counter::default();
        let tasks = Family::<KindLabel, Counter>::default();
        let prefix_reused_tokens = Counter::default();
        let received = Counter::default();
        let receipts_pending = Gauge::default();
        let receipts_reoffered = Counter::default();
        registry.register("messages_rejected", "Messages from peers refused, by reason", rejected.clone());
        registry.register("messages_accepted", "Messages from peers accepted, by kind", accepted.clone());
        registry.register("connected_peers", "Peers with an open connection", connected_peers.clone());
        registry.register("roster_members", "Brain roster members by role and status", roster.clone());
        registry.register("sync_requests", "Roster sync requests served", sync_requests.clone());
        registry.register("task_events", "Task events by kind (routing, failover, prefix cache)", tasks.clone());
        registry.register(
            "prefix_reused_tokens",
            "Prompt tokens whose prefill was skipped by the miner's prefix KV cache",
            prefix_reused_tokens.clone(),
        );
        registry.register("messages_received", "Messages from peers, accepted or refused", received.clone());
        registry.register(
            "receipts_pending",
            "Receipts this gateway countersigned that are not yet in a final block",
            receipts_pending.clone(),
        );
        registry.register(
            "receipts_reoffered",
            "Receipts offered again to a validator that did not hold them",
            receipts_reoffered.clone(),
        );
        // Pre-create every reason so a scrape shows zeros rather than nothing.
        for r in Reject::ALL {
            let _ = rejected.get_or_create(&ReasonLabel { reason: r.label().into() });
        }
        Self {
            registry: Arc::new(Mutex::new(registry)),
            rejected,
            accepted,
            connected_peers,
            roster,
            sync_requests,
            tasks,
            prefix_reused_tokens,
            received,
            receipts_pending,
            receipts_reoffered,
        }
    }

    pub fn task_event(&self, kind: &str) {
        self.tasks.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    pub fn task_events(&self, kind: &str) -> u64 {
        self.tasks.get_or_create(&KindLabel { kind: kind.into() }).get()
    }

    pub fn reject(&self, reason: Reject) {
        self.received.inc();
        self.rejected.get_or_create(&ReasonLabel { reason: reason.label().into() }).inc();
    }

    pub fn accept(&self, kind: &str) {
        self.received.inc();
        self.accepted.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    pub fn rejected_count(&self, reason: Reject) -> u64 {
        self.rejected.get_or_create(&ReasonLabel { reason: reason.label().into() }).get()
    }

    pub fn rejected_total(&self) -> u64 {
        Reject::ALL.iter().map(|r| self.rejected_count(*r)).sum()
    }

    /// Accepted messages by kind, and refused ones as `refused:<reason>` (from the exposition).
    pub fn received_by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for line in self.encode().lines() {
            let (name, label) = if let Some(r) = line.strip_prefix("brainmesh_messages_accepted_total{kind=\"") {
                ("", r)
            } else if let Some(r) = line.strip_prefix("brainmesh_messages_rejected_total{reason=\"") {
                ("refused:", r)
            } else {
                continue;
            };
            let Some((label, rest)) = label.split_once("\"}") else { continue };
            let n: u64 = rest.trim().parse().unwrap_or(0);
            if n > 0 {
                *out.entry(format!("{name}{label}")).or_default() += n;
            }
        }
        out
    }

    /// Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_messages_are_counted_by_kind_and_refusal_reason() {
        let m = Metrics::new();
        m.accept("heartbeat");
        m.accept("heartbeat");
        m.accept("receipt");
        m.reject(Reject::ALL[0]);
        assert_eq!(m.received.get(), 4);
        let k = m.received_by_kind();
        assert_eq!(k.get("heartbeat"), Some(&2));
        assert_eq!(k.get("receipt"), Some(&1));
        assert_eq!(k.get(&format!("refused:{}", Reject::ALL[0].label())), Some(&1));
        assert_eq!(k.values().sum::<u64>(), 4);
    }

    #[test]
    fn rejections_are_counted_by_reason_in_the_exposition() {
        let m = Metrics::new();
        m.reject(Reject::BadSignature);
        m.reject(Reject::BadSignature);
        m.reject(Reject::Oversized);
        assert_eq!(m.rejected_total(), 3);
        let text = m.encode();
        assert!(text.contains("brainmesh_messages_rejected_total{reason=\"bad_signature\"} 2"), "{text}");
        assert!(text.contains("brainmesh_messages_rejected_total{reason=\"replay\"} 0"), "{text}");
    }
}
