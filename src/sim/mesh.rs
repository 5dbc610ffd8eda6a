//! The simulated mesh: every peer is a real [`Node`] (the same actors, protocols, codecs,
//! signatures and sled ledger as `brainmesh node`) running on a thread of its own
//! ([`PeerThread`]: its own event loop, the in-process stand-in for a process) over libp2p's
//! in-memory transport, on the one shared chain clock.
//!
//! A kill stops the peer's thread: every actor, timer, socket and in-flight task of the peer
//! vanishes at once, with no shutdown code run (the sled files keep what was flushed, as after
//! a kill -9). A restart starts a new node on the same data directory.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;

use brainmesh_actors::auditor::AuditShared;
use brainmesh_actors::metrics::Metrics;
use brainmesh_actors::peer_thread::PeerThread;
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::receipt::ReceiptStore;
use brainmesh_actors::rollup::LedgerHandle;
use brainmesh_actors::{DistributorHandle, MembershipHandle, NetworkSender};
use brainmesh_ledger::ChainClock;

use crate::config::NodeConfig;
use crate::node::Node;

/// What the simulator reads from and sends to a running peer (all cheap clones, usable from
/// any thread).
#[derive(Clone)]
pub struct Live {
    pub listen: Vec<String>,
    pub net: NetworkSender,
    pub membership: MembershipHandle,
    pub tasks: Option<DistributorHandle>,
    pub receipts: ReceiptStore,
    pub audit: AuditShared,
    pub ledger: Option<LedgerHandle>,
    pub metrics: Metrics,
}

/// One peer of the simulation.
pub struct SimPeer {
    /// `validator-0`, `miner-3`, …
    pub name: String,
    pub role: Role,
    /// `honest`, `edited`, `squeezed`, … (validators and gateways: `honest`).
    pub behaviour: String,
    pub peer_id: String,
    pub cfg: NodeConfig,
    thread: Option<PeerThread>,
    pub live: Option<Live>,
    /// Messages received by earlier lives of this peer (before kills), by kind.
    kinds_before: std::collections::BTreeMap<String, u64>,
}

impl SimPeer {
    pub fn new(name: String, role: Role, behaviour: String, peer_id: String, cfg: NodeConfig) -> Self {
        Self { name, role, behaviour, peer_id, cfg, thread: None, live: None, kinds_before: Default::default() }
    }

    /// A miner that cheats (any behaviour but `honest` and `sybil`: a Sybil serves honestly).
    pub fn is_cheater(&self) -> bool {
        self.role == Role::Miner && self.behaviour != "honest" && self.behaviour != "sybil"
    }

    pub fn is_sybil(&self) -> bool {
        self.role == Role::Miner && self.behaviour == "sybil"
    }

    pub fn data_dir(&self) -> PathBuf {
        self.cfg.data_dir.clone()
    }

    pub fn is_up(&self) -> bool {
        self.live.is_some()
    }

    /// Starts the node on a thread of its own. After a kill, the sled files may still be locked for a
    /// moment by the stopping thread: the start is retried for up to 10 s.
    pub async fn start(&mut self, clock: &ChainClock, bootstrap: Vec<String>) -> Result<(), String> {
        let mut cfg = self.cfg.clone();
        cfg.network.bootstrap = bootstrap;
        let mut last = String::new();
        for attempt in 0..20 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let (tx, rx) = oneshot::channel::<Result<Live, String>>();
            let (cfg, clock) = (cfg.clone(), clock.clone());
            let thread = PeerThread::spawn(move || async move {
                match Node::start_with_clock(cfg, clock).await {
                    Ok(node) => {
                        let live = Live {
                            listen: node.listen_addrs.clone(),
                            net: node.net.clone(),
                            membership: node.membership.clone(),
                            tasks: node.tasks.clone(),
                            receipts: node.receipts.clone(),
                            audit: node.audit.clone(),
                            ledger: node.ledger.clone(),
                            metrics: node.metrics.clone(),
                        };
                        let _ = tx.send(Ok(live));
                        // The node lives as long as its thread.
                        std::future::pending::<()>().await;
                        drop(node);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
            match rx.await {
                Ok(Ok(live)) => {
                    self.thread = Some(thread);
                    self.live = Some(live);
                    return Ok(());
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = "the peer's thread stopped while starting".into(),
            }
            thread.stop().await;
            if !last.contains("lock") && !last.contains("WouldBlock") && !last.contains("temporarily") {
                break;
            }
        }
        Err(format!("{}: {last}", self.name))
    }

    /// Messages received by kind over all its lives (see [`Metrics::received_by_kind`]).
    pub fn messages_by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = self.kinds_before.clone();
        if let Some(l) = &self.live {
            for (k, n) in l.metrics.received_by_kind() {
                *m.entry(k).or_default() += n;
            }
        }
        m
    }

    /// Messages from peers this peer has received over all its lives.
    pub fn messages_received(&self) -> u64 {
        self.kinds_before.values().sum::<u64>() + self.live.as_ref().map(|l| l.metrics.received.get()).unwrap_or(0)
    }

    /// Kills the peer: its thread stops and takes every actor, socket and task with it.
    pub async fn kill(&mut self) {
        self.kinds_before = self.messages_by_kind();
        self.live = None;
        if let Some(t) = self.thread.take() {
            t.stop().await;
        }
    }
}
