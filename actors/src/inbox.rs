//! The router (Lighthouse's `router.rs`): what the network delivers is decoded once into the
//! protocol's typed message and handed to the actor that owns it. Implements
//! [`NetworkEvents`], so the network service never names an actor type.
//!
//! | arrives on | decoded as | goes to |
//! |---|---|---|
//! | gossip topic `membership`, `heartbeat` | signed envelope (by the actor) | membership |
//! | gossip topic `receipts` | receipt | receipt book (+ rollup on validators) |
//! | gossip topic `audit` | ban / weights | auditor, or the ban book |
//! | gossip topic `rollup` | proposals, votes, txs | rollup (validators); relayed unread elsewhere |
//! | `/brainmesh/sync/1` | [`SyncWire`] | membership (`Roster`) or rollup (`Ledger…`) |
//! | `/brainmesh/task/1` | [`TaskWire`] | miner (`Assign`) or distributor (`Chunk`) |
//! | `/brainmesh/fhe/1` | (framed by the service) | FHE service |
//! | `/brainmesh/audit/1` | [`AuditRequest`](crate::protocols::audit::AuditRequest) | transcript / evidence stores |

use actix::Recipient;
use brainmesh_ledger::PeerId;

use crate::distributor::ChunkIn;
use crate::membership::SyncIn;
use crate::messages;
use crate::metrics::Metrics;
use crate::miner::AssignIn;
use crate::network_message::{NetworkEvents, Proto};
use crate::protocols::fhe::{FheFail, FheReply};
use crate::protocols::gossip::TopicKind;
use crate::protocols::sync::{LedgerResponse, SyncResponse, SyncWire};
use crate::protocols::task::{Ack, TaskWire};
use crate::protocols::{Reject, MAX_MESSAGE_BYTES};
use crate::recheck::EvidenceStore;
use crate::rollup::LedgerSyncIn;
use crate::rollup::ReceiptSeen;
use crate::task::BoxFuture;
use crate::transcript::TranscriptStore;

/// Where the swarm task delivers events. Holds actix `Recipient`s but exposes plain async
/// methods, so the network code never names an actor type.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) gossip: Recipient<messages::GossipIn>,
    pub(crate) receipts: Recipient<messages::GossipIn>,
    pub(crate) audit: Recipient<messages::GossipIn>,
    pub(crate) transcripts: Option<TranscriptStore>,
    pub(crate) evidence: Option<EvidenceStore>,
    pub(crate) sync: Recipient<SyncIn>,
    pub(crate) peers: Vec<Recipient<messages::PeerEvent>>,
    pub(crate) assign: Option<Recipient<AssignIn>>,
    pub(crate) chunks: Option<Recipient<ChunkIn>>,
    pub(crate) fhe: Option<Recipient<messages::FheIn>>,
    /// Validators: the rollup (ledger) actor.
    pub(crate) rollup: Option<RollupRecipients>,
    pub(crate) metrics: Metrics,
}

#[derive(Clone)]
pub(crate) struct RollupRecipients {
    pub(crate) gossip: Recipient<messages::GossipIn>,
    pub(crate) receipts: Recipient<ReceiptSeen>,
    pub(crate) sync: Recipient<LedgerSyncIn>,
}

impl Inbox {
    /// Hands a gossip message to the actor of its topic; `Ok` means accept (forward), `Err` reject.
    async fn route_gossip(
        &self,
        topic: String,
        source: Option<PeerId>,
        propagation_source: PeerId,
        data: Vec<u8>,
    ) -> Result<(), Reject> {
        let to = match TopicKind::parse(&topic) {
            Some((TopicKind::Receipts, _)) => {
                let data2 = self.rollup.as_ref().map(|_| data.clone());
                let res = self
                    .receipts
                    .send(messages::GossipIn { topic, source, propagation_source, data })
                    .await
                    .unwrap_or(Err(Reject::Malformed));
                if let (Ok(()), Some(r), Some(data)) = (&res, &self.rollup, data2) {
                    if r.receipts.try_send(ReceiptSeen { data }).is_err() {
                        tracing::warn!("rollup mailbox full: receipt dropped (picked up again on restart)");
                    }
                }
                return res;
            }
            Some((TopicKind::Rollup, _)) => match &self.rollup {
                Some(r) => &r.gossip,
                // Peers that keep no ledger relay the validators' messages without reading them.
                None if data.len() <= MAX_MESSAGE_BYTES => return Ok(()),
                None => return Err(Reject::Oversized),
            },
            Some((TopicKind::Audit, _)) => &self.audit,
            _ => &self.gossip,
        };
        to.send(messages::GossipIn { topic, source, propagation_source, data }).await.unwrap_or(Err(Reject::Malformed))
    }

    /// Routes a `/brainmesh/sync/1` request: decoded once as a [`SyncWire`], then roster sync to
    /// membership and ledger catch-up to the rollup actor. Returns the response bytes.
    async fn sync_request(&self, peer: PeerId, data: Vec<u8>) -> Vec<u8> {
        if data.len() > MAX_MESSAGE_BYTES {
            self.metrics.reject(Reject::Oversized);
            return to_json(&SyncResponse::Error { message: "request too large".into() });
        }
        match serde_json::from_slice::<SyncWire>(&data) {
            Ok(SyncWire::Roster(req)) => match self.sync.send(SyncIn { peer, req }).await {
                Ok(resp) => to_json(&resp),
                Err(_) => to_json(&SyncResponse::Error { message: "membership actor stopped".into() }),
            },
            Ok(SyncWire::Ledger(req)) => {
                let resp = match &self.rollup {
                    Some(r) => r
                        .sync
                        .send(LedgerSyncIn { peer, req })
                        .await
                        .unwrap_or_else(|_| LedgerResponse::LedgerError { message: "ledger actor stopped".into() }),
                    None => LedgerResponse::LedgerError { message: "this peer keeps no ledger".into() },
                };
                to_json(&resp)
            }
            Err(e) => {
                self.metrics.reject(Reject::Malformed);
                tracing::debug!(%peer, "malformed sync request: {e}");
                to_json(&SyncResponse::Error { message: format!("malformed request: {e}") })
            }
        }
    }

    /// Routes a `/brainmesh/task/1` request: decoded once as a [`TaskWire`], assignments to the
    /// miner and chunks to the distributor. Returns the [`Ack`]'s bytes.
    async fn task_request(&self, peer: PeerId, data: Vec<u8>) -> Vec<u8> {
        let ack = match serde_json::from_slice::<TaskWire>(&data) {
            Ok(TaskWire::Assign(assign)) => match &self.assign {
                Some(r) => r.send(AssignIn { peer, assign }).await.unwrap_or_else(|_| Ack::stop("miner stopped")),
                None => Ack::stop("this peer does not play that role"),
            },
            Ok(TaskWire::Chunk(chunk)) => match &self.chunks {
                Some(r) => r.send(ChunkIn { peer, chunk }).await.unwrap_or_else(|_| Ack::stop("distributor stopped")),
                None => Ack::stop("this peer does not play that role"),
            },
            Err(_) => {
                self.metrics.reject(Reject::Malformed);
                Ack::stop("malformed task message")
            }
        };
        ack.to_bytes()
    }

    /// Hands an encrypted-mode request to the head's service (if this peer serves one).
    async fn fhe_request(&self, peer: PeerId, data: Vec<u8>) -> Vec<u8> {
        match &self.fhe {
            Some(r) => r
                .send(messages::FheIn { peer, data })
                .await
                .unwrap_or_else(|_| FheReply::error(FheFail::Busy, "encrypted-mode service stopped").to_bytes()),
            None => FheReply::error(FheFail::NotServed, "this peer serves no encrypted head").to_bytes(),
        }
    }

    /// Serves a validator's audit request: a miner's transcript, or a validator's evidence.
    async fn audit_request(&self, _peer: PeerId, data: Vec<u8>) -> Vec<u8> {
        let (t, e) = (self.transcripts.clone(), self.evidence.clone());
        // sled reads are quick but blocking; keep them off the network task's thread.
        tokio::task::spawn_blocking(move || crate::protocols::audit::serve(t.as_ref(), e.as_ref(), &data).to_bytes())
            .await
            .unwrap_or_default()
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

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl NetworkEvents for Inbox {
    fn gossip(
        &self,
        topic: String,
        source: Option<PeerId>,
        propagation_source: PeerId,
        data: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), Reject>> {
        let me = self.clone();
        Box::pin(async move { me.route_gossip(topic, source, propagation_source, data).await })
    }

    fn request(&self, proto: Proto, peer: PeerId, data: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let me = self.clone();
        Box::pin(async move {
            match proto {
                Proto::Sync => me.sync_request(peer, data).await,
                Proto::Task => me.task_request(peer, data).await,
                Proto::Fhe => me.fhe_request(peer, data).await,
                Proto::Audit => me.audit_request(peer, data).await,
            }
        })
    }

    fn peer_connected(&self, peer: PeerId) {
        self.peer_event(messages::PeerEvent::Connected { peer });
    }

    fn peer_disconnected(&self, peer: PeerId) {
        self.peer_event(messages::PeerEvent::Disconnected { peer });
    }

    fn ping(&self, peer: PeerId, rtt_us: u64) {
        self.peer_event(messages::PeerEvent::PingRtt { peer, rtt_us });
    }
}
