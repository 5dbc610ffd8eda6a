//! brainmesh actors: the Brain membership actor, protocol types, signing, storage and metrics.
//!
//! actix is confined to this crate. The node (in `src/`) starts the actors through
//! [`start_membership`] and talks to them only through [`Inbox`] (network events in) and
//! [`MembershipHandle`] (queries), so the actor framework could be swapped.

pub mod economics;
pub mod identity;
pub mod membership;
pub mod messages;
pub mod metrics;
pub mod network_message;
pub mod protocol;
pub mod roster;
pub mod store;
pub mod task;

use std::sync::Arc;

use actix::{Actor, Addr, Recipient};

pub use identity::Identity;
pub use membership::MembershipConfig;
pub use messages::RosterSnapshot;
pub use metrics::Metrics;
pub use network_message::{NetworkError, NetworkInfo, NetworkMessage, NetworkSender};
pub use protocol::Reject;

/// Where the swarm task delivers events. Holds actix `Recipient`s but exposes plain async
/// methods, so the network code never names an actor type.
#[derive(Clone)]
pub struct Inbox {
    gossip: Recipient<messages::GossipIn>,
    sync: Recipient<messages::SyncIn>,
    peers: Recipient<messages::PeerEvent>,
    metrics: Metrics,
}

impl Inbox {
    /// Hands a gossip message to its actor; `Ok` means accept (forward), `Err` reject.
    pub async fn gossip(
        &self,
        topic: String,
        source: Option<String>,
        propagation_source: String,
        data: Vec<u8>,
    ) -> Result<(), Reject> {
        self.gossip
            .send(messages::GossipIn { topic, source, propagation_source, data })
            .await
            .unwrap_or(Err(Reject::Malformed))
    }

    /// Hands an inbound request to its actor and returns the response bytes.
    pub async fn request(&self, peer: String, data: Vec<u8>) -> Vec<u8> {
        self.sync.send(messages::SyncIn { peer, data }).await.unwrap_or_default()
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
        if self.peers.try_send(ev).is_err() {
            tracing::debug!("membership mailbox full: peer event dropped");
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

/// Starts the membership actor on the current actix arbiter. Must be called from within an
/// actix system (`actix_rt::System`).
pub fn start_membership(
    id: Arc<Identity>,
    cfg: MembershipConfig,
    store: Box<dyn store::RosterStore>,
    net: NetworkSender,
    metrics: Metrics,
) -> (Inbox, MembershipHandle) {
    let addr = membership::Membership::new(id, cfg, store, net, metrics.clone()).start();
    let inbox = Inbox {
        gossip: addr.clone().recipient(),
        sync: addr.clone().recipient(),
        peers: addr.clone().recipient(),
        metrics,
    };
    (inbox, MembershipHandle { addr })
}
