//! brainmesh actors: the Brain membership actor, protocol types, signing, storage and metrics.
//!
//! actix is confined to this crate. The node (in `src/`) starts the actors through
//! [`start_membership`] and talks to them only through [`Inbox`] (network events in) and
//! [`MembershipHandle`] (queries), so the actor framework could be swapped.

pub mod auditor;
pub mod distributor;
pub mod fhe_client;
pub mod fhe_service;
pub mod fhe_wire;
pub mod identity;
pub mod load;
pub mod membership;
pub mod messages;
pub mod metrics;
pub mod miner;
pub mod network_message;
pub mod protocol;
pub mod receipt;
pub mod recheck;
pub mod roster;
pub mod rollup;
pub mod routing;
pub mod seal;
pub mod store;
pub mod task;
pub mod task_wire;
pub mod transcript;

use std::sync::Arc;

use actix::{Actor, Addr, Recipient};

pub use brainmesh_ledger as ledger;
pub use brainmesh_models as models;
pub use identity::Identity;
pub use membership::MembershipConfig;
pub use messages::RosterSnapshot;
pub use metrics::Metrics;
pub use network_message::{NetworkError, NetworkInfo, NetworkMessage, NetworkSender, Proto};
pub use protocol::Reject;

/// Where the swarm task delivers events. Holds actix `Recipient`s but exposes plain async
/// methods, so the network code never names an actor type.
#[derive(Clone)]
pub struct Inbox {
    gossip: Recipient<messages::GossipIn>,
    receipts: Recipient<messages::GossipIn>,
    audit: Recipient<messages::GossipIn>,
    transcripts: Option<transcript::TranscriptStore>,
    evidence: Option<recheck::EvidenceStore>,
    sync: Recipient<messages::SyncIn>,
    peers: Vec<Recipient<messages::PeerEvent>>,
    assign: Option<Recipient<messages::TaskIn>>,
    chunks: Option<Recipient<messages::TaskIn>>,
    fhe: Option<Recipient<messages::FheIn>>,
    /// Validators: the rollup (ledger) actor.
    rollup: Option<RollupRecipients>,
    metrics: Metrics,
}

#[derive(Clone)]
struct RollupRecipients {
    gossip: Recipient<messages::GossipIn>,
    receipts: Recipient<rollup::ReceiptSeen>,
    sync: Recipient<messages::SyncIn>,
}

impl Inbox {
    /// Hands a gossip message to the actor of its topic; `Ok` means accept (forward), `Err` reject.
    pub async fn gossip(
        &self,
        topic: String,
        source: Option<String>,
        propagation_source: String,
        data: Vec<u8>,
    ) -> Result<(), Reject> {
        let to = match protocol::TopicKind::parse(&topic) {
            Some((protocol::TopicKind::Receipts, _)) => {
                let data2 = self.rollup.as_ref().map(|_| data.clone());
                let res = self.receipts.send(messages::GossipIn { topic, source, propagation_source, data }).await.unwrap_or(Err(Reject::Malformed));
                if let (Ok(()), Some(r), Some(data)) = (&res, &self.rollup, data2) {
                    if r.receipts.try_send(rollup::ReceiptSeen { data }).is_err() {
                        tracing::warn!("rollup mailbox full: receipt dropped (picked up again on restart)");
                    }
                }
                return res;
            }
            Some((protocol::TopicKind::Rollup, _)) => match &self.rollup {
                Some(r) => &r.gossip,
                // Peers that keep no ledger relay the validators' messages without reading them.
                None if data.len() <= protocol::MAX_MESSAGE_BYTES => return Ok(()),
                None => return Err(Reject::Oversized),
            },
            Some((protocol::TopicKind::Audit, _)) => &self.audit,
            _ => &self.gossip,
        };
        to.send(messages::GossipIn { topic, source, propagation_source, data }).await.unwrap_or(Err(Reject::Malformed))
    }

    /// Hands an inbound roster-sync request to its actor and returns the response bytes.
    pub async fn request(&self, peer: String, data: Vec<u8>) -> Vec<u8> {
        // Ledger requests (`"type":"ledger_…"`) share the protocol with roster sync.
        #[derive(serde::Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        if serde_json::from_slice::<Tag>(&data).is_ok_and(|t| t.kind.starts_with("ledger_")) {
            return match &self.rollup {
                Some(r) => r.sync.send(messages::SyncIn { peer, data }).await.unwrap_or_default(),
                None => serde_json::to_vec(&rollup::LedgerResponse::LedgerError { message: "this peer keeps no ledger".into() })
                    .unwrap_or_default(),
            };
        }
        self.sync.send(messages::SyncIn { peer, data }).await.unwrap_or_default()
    }

    /// Routes a task-protocol request (assignments to the miner, chunks to the distributor).
    pub async fn task_request(&self, peer: String, data: Vec<u8>) -> Vec<u8> {
        #[derive(serde::Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            kind: String,
        }
        let to = match serde_json::from_slice::<Tag>(&data).map(|t| t.kind) {
            Ok(k) if k == "assign" => self.assign.as_ref(),
            Ok(k) if k == "chunk" => self.chunks.as_ref(),
            _ => {
                self.metrics.reject(Reject::Malformed);
                return task_wire::Ack::stop("malformed task message").to_bytes();
            }
        };
        match to {
            Some(r) => r.send(messages::TaskIn { peer, data }).await.unwrap_or_default(),
            None => task_wire::Ack::stop("this peer does not play that role").to_bytes(),
        }
    }

    /// Hands an encrypted-mode request to the head's service (if this peer serves one).
    pub async fn fhe_request(&self, peer: String, data: Vec<u8>) -> Vec<u8> {
        use fhe_wire::{FheFail, FheReply};
        match &self.fhe {
            Some(r) => r
                .send(messages::FheIn { peer, data })
                .await
                .unwrap_or_else(|_| FheReply::error(FheFail::Busy, "encrypted-mode service stopped").to_bytes()),
            None => FheReply::error(FheFail::NotServed, "this peer serves no encrypted head").to_bytes(),
        }
    }

    /// Serves a validator's audit request: a miner's transcript, or a validator's evidence.
    pub async fn audit_request(&self, _peer: String, data: Vec<u8>) -> Vec<u8> {
        let (t, e) = (self.transcripts.clone(), self.evidence.clone());
        // sled reads are quick but blocking; keep them off the network task's thread.
        tokio::task::spawn_blocking(move || transcript::serve(t.as_ref(), e.as_ref(), &data).to_bytes())
            .await
            .unwrap_or_default()
    }

    pub fn peer_connected(&self, peer: String) {
        self.peer_event(messages::PeerEvent::Connected { peer });
    }

    pub fn peer_disconnected(&self, peer: String) {
        self.peer_event(messages::PeerEvent::Disconnected { peer });
    }

    pub fn ping(&self, peer: String, rtt_us: u64) {
        self.peer_event(messages::PeerEvent::PingRtt { peer, rtt_us });
    }

    fn peer_event(&self, ev: messages::PeerEvent) {
        for p in &self.peers {
            if p.try_send(ev.clone()).is_err() {
                tracing::debug!("mailbox full: peer event dropped");
            }
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Queries to the membership actor.
#[derive(Clone)]
pub struct MembershipHandle {
    addr: Addr<membership::Membership>,
}

impl MembershipHandle {
    pub async fn roster(&self) -> Option<RosterSnapshot> {
        self.addr.send(messages::GetRoster).await.ok()
    }

    /// Heartbeat and liveness update now (without waiting for the timer).
    pub async fn tick(&self) {
        let _ = self.addr.send(messages::Tick).await;
    }

    /// Stops the actor (used when a node shuts down in-process).
    pub fn stop(&self) {
        self.addr.do_send(messages::Stop);
    }
}

/// What to run on this node besides membership.
pub struct ActorsConfig {
    pub membership: MembershipConfig,
    /// Miner role: its configuration and the loaded model.
    pub miner: Option<(miner::MinerConfig, models::Model)>,
    /// Gateway role: the distributor.
    pub distributor: Option<distributor::DistributorConfig>,
    /// Miner role with `miner.fhe_head`: the encrypted head it serves.
    pub fhe: Option<models::fhe::QuantizedHead>,
    /// Validator role: the auditor and its copy of the declared model.
    pub auditor: Option<(auditor::AuditorConfig, models::Model)>,
    /// Chain timing (ban expiry, heights) for the peers that only keep the ban list.
    pub genesis_ms: u64,
    pub block_time_ms: u64,
    /// Validator role: the rollup (ledger) actor's settings; `None`: no ledger on this peer.
    pub ledger: Option<rollup::RollupConfig>,
}

/// The started actors of one node.
pub struct NodeActors {
    pub inbox: Inbox,
    pub membership: MembershipHandle,
    pub tasks: Option<DistributorHandle>,
    pub receipts: receipt::ReceiptStore,
    /// The ban list (every role) and, on validators, audit stats and revealed weights.
    pub audit: auditor::AuditShared,
    /// Validators: the ledger.
    pub ledger: Option<rollup::LedgerHandle>,
}

/// Starts the node's actors on the current actix arbiter. Must be called from within an actix
/// system (`actix_rt::System`).
pub fn start_actors(
    id: Arc<Identity>,
    cfg: ActorsConfig,
    store: store::SledStore,
    net: NetworkSender,
    metrics: Metrics,
) -> Result<NodeActors, store::StoreError> {
    let receipts = receipt::ReceiptStore::open(store.db())?;
    let db = store.db().clone();
    let brain = cfg.membership.brain;
    let load = cfg.miner.as_ref().map(|_| Arc::new(load::LoadReport::default()));
    let shared = auditor::AuditShared::new(brain);
    let transcripts = match &cfg.miner {
        Some((m, _)) => Some(transcript::TranscriptStore::open(store.db(), m.transcript_blocks)?),
        None => None,
    };
    let evidence = match &cfg.auditor {
        Some(_) => Some(recheck::EvidenceStore::open(store.db())?),
        None => None,
    };
    let membership_addr =
        membership::Membership::new(id.clone(), cfg.membership, Box::new(store), net.clone(), metrics.clone(), load.clone())
            .start();
    let mut peers: Vec<Recipient<messages::PeerEvent>> = vec![membership_addr.clone().recipient()];
    let assign = match (cfg.miner, load) {
        (Some((mcfg, model)), Some(load)) => {
            let ts = transcripts.clone().ok_or_else(|| store::StoreError::Sled(sled::Error::Unsupported("no transcript store".into())))?;
            Some(miner::Miner::new(id.clone(), mcfg, model, net.clone(), load, metrics.clone(), ts).start().recipient())
        }
        _ => None,
    };
    let membership = MembershipHandle { addr: membership_addr.clone() };
    let (rollup, ledger) = match cfg.ledger {
        Some(lcfg) => {
            let r = rollup::Rollup::new(id.clone(), lcfg, &db, receipts.clone(), net.clone(), membership.clone(), metrics.clone())
                .map_err(|e| store::StoreError::Sled(sled::Error::Unsupported(format!("ledger: {e}"))))?;
            let handle = r.start_with_handle();
            let recipients = RollupRecipients {
                gossip: handle.recipient_gossip(),
                receipts: handle.recipient_receipts(),
                sync: handle.recipient_sync(),
            };
            (Some(recipients), Some(handle))
        }
        None => (None, None),
    };
    // Gateways route tasks; validators that audit send their quality checks the same way.
    let (chunks, tasks) = match cfg.distributor {
        Some(dcfg) => {
            let addr = distributor::Distributor::new(id.clone(), dcfg, net.clone(), receipts.clone(), metrics.clone()).start();
            peers.push(addr.clone().recipient());
            let handle = DistributorHandle {
                addr,
                membership: membership.clone(),
                brain,
                bans: shared.bans.clone(),
                genesis_ms: cfg.genesis_ms,
                block_time_ms: cfg.block_time_ms,
            };
            (Some(handle.addr.clone().recipient()), Some(handle))
        }
        None => (None, None),
    };
    let auditor_addr = match (cfg.auditor, &evidence) {
        (Some((acfg, model)), Some(ev)) => Some(
            auditor::Auditor::new(id.clone(), acfg, model, net.clone(), metrics.clone(), shared.clone(), ev.clone())
                .with_quality_checks(tasks.clone())
                .with_ledger(ledger.clone())
                .start(),
        ),
        _ => None,
    };
    let audit_gossip: Recipient<messages::GossipIn> = match &auditor_addr {
        Some(a) => a.clone().recipient(),
        None => auditor::BanBook::new(brain, shared.clone(), metrics.clone(), cfg.genesis_ms, cfg.block_time_ms).start().recipient(),
    };
    let book =
        receipt::ReceiptBook::new(brain, receipts.clone(), metrics.clone(), auditor_addr.map(|a| a.recipient())).start();
    let fhe = match cfg.fhe {
        Some(head) => match fhe_service::FheService::new(head, metrics.clone()) {
            Ok(s) => Some(s.start().recipient()),
            Err(e) => {
                tracing::error!("encrypted head not served: {e}");
                None
            }
        },
        None => None,
    };
    let inbox = Inbox {
        gossip: membership_addr.clone().recipient(),
        receipts: book.recipient(),
        audit: audit_gossip,
        transcripts,
        evidence,
        sync: membership_addr.recipient(),
        peers,
        assign,
        chunks,
        fhe,
        rollup,
        metrics,
    };
    Ok(NodeActors { inbox, membership, tasks, receipts, audit: shared, ledger })
}

/// The gateway's way into the mesh: implements [`task::TaskService`].
#[derive(Clone)]
pub struct DistributorHandle {
    addr: Addr<distributor::Distributor>,
    membership: MembershipHandle,
    brain: u16,
    bans: Arc<std::sync::Mutex<brainmesh_ledger::audit::BanList>>,
    genesis_ms: u64,
    block_time_ms: u64,
}

impl DistributorHandle {
    /// Miners banned by at least one admitted validator of the Brain (entries signed by peers
    /// that are not validators of this Brain are ignored).
    fn banned(&self, snap: &RosterSnapshot) -> std::collections::BTreeSet<String> {
        let height = protocol::now_ms().saturating_sub(self.genesis_ms) / self.block_time_ms.max(1);
        let validators: std::collections::BTreeSet<&str> = snap
            .brains
            .iter()
            .filter(|b| b.brain == self.brain)
            .flat_map(|b| b.members.iter())
            .filter(|m| m.admitted && m.roles.contains(&protocol::Role::Validator))
            .map(|m| m.peer_id.as_str())
            .collect();
        match self.bans.lock() {
            Ok(b) => b
                .banned(height)
                .into_iter()
                .filter(|m| b.entries(m).iter().any(|e| validators.contains(e.validator.as_str())))
                .collect(),
            Err(_) => Default::default(),
        }
    }

    /// Online, admitted, unbanned miners of this Brain serving `model`.
    fn candidates(snap: &RosterSnapshot, brain: u16, model: &str, banned: &std::collections::BTreeSet<String>) -> (Vec<routing::Candidate>, bool) {
        let mut known = false;
        let mut out = Vec::new();
        for b in snap.brains.iter().filter(|b| b.brain == brain) {
            for m in &b.members {
                let serves = m.serving.iter().any(|s| s.id == model);
                if serves || m.models.iter().any(|s| s == model) {
                    known = true;
                }
                if !(serves && m.admitted && m.status == roster::Liveness::Online && m.roles.contains(&protocol::Role::Miner)) {
                    continue;
                }
                if banned.contains(&m.peer_id) {
                    continue;
                }
                let Ok(seal_key) = seal::key_from_hex(&m.seal_key) else { continue };
                out.push(routing::Candidate {
                    peer_id: m.peer_id.clone(),
                    seal_key,
                    queue_depth: m.queue_depth,
                    latency_us: m.latency_us,
                    tokens_per_s_milli: m.tokens_per_s_milli,
                });
            }
        }
        (out, known)
    }
}

impl task::TaskService for DistributorHandle {
    fn submit(
        &self,
        spec: task::TaskSpec,
    ) -> task::BoxFuture<'_, Result<tokio::sync::mpsc::Receiver<task::TaskEvent>, task::TaskError>> {
        Box::pin(async move {
            let snap = self.membership.roster().await.ok_or_else(|| task::TaskError::NoMiner(spec.model.clone()))?;
            let banned = self.banned(&snap);
            let (candidates, known) = Self::candidates(&snap, self.brain, &spec.model, &banned);
            if candidates.is_empty() {
                return Err(if known {
                    task::TaskError::NoMiner(spec.model.clone())
                } else {
                    task::TaskError::UnknownModel(spec.model.clone())
                });
            }
            let (events, rx) = tokio::sync::mpsc::channel(4096);
            let task_id = hex::encode(rand::random::<[u8; 12]>());
            self.addr
                .send(distributor::StartTask { task_id, spec: spec.clone(), candidates, events })
                .await
                .map_err(|_| task::TaskError::NoMiner(spec.model.clone()))?;
            Ok(rx)
        })
    }

    fn models(&self) -> task::BoxFuture<'_, Vec<task::ModelInfo>> {
        Box::pin(async move {
            let mut out: std::collections::BTreeMap<String, task::ModelInfo> = Default::default();
            if let Some(snap) = self.membership.roster().await {
                for b in snap.brains.iter().filter(|b| b.brain == self.brain) {
                    for m in b.members.iter().filter(|m| m.admitted && m.status == roster::Liveness::Online) {
                        for s in &m.serving {
                            let e = out.entry(s.id.clone()).or_insert_with(|| task::ModelInfo {
                                id: s.id.clone(),
                                hash: s.hash.clone(),
                                context_length: s.context,
                                miners: 0,
                            });
                            e.miners += 1;
                        }
                    }
                }
            }
            out.into_values().collect()
        })
    }
}
