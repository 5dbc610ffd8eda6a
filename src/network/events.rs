//! A [`NetworkEvents`] sink that turns what the network delivers into [`NetEvent`]s on a
//! channel: the network service then runs with no actors at all (network-only tests, probes,
//! a simulator's observer). Requests and gossip carry a reply channel; whoever reads the
//! events decides the response and whether a gossip message is accepted.

use brainmesh_actors::task::BoxFuture;
use brainmesh_actors::{NetworkEvents, Proto, Reject};
use brainmesh_ledger::PeerId;
use tokio::sync::{mpsc, oneshot};

/// One thing the network delivered.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message; answer `Ok(())` to accept (forward) it, `Err` to reject it.
    Gossip { topic: String, source: Option<PeerId>, data: Vec<u8>, verdict: oneshot::Sender<Result<(), Reject>> },
    /// An inbound request; send the response bytes on `reply`.
    Request { proto: Proto, peer: PeerId, data: Vec<u8>, reply: oneshot::Sender<Vec<u8>> },
    /// The first connection to a peer opened.
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
    /// A ping round trip.
    Ping { peer: PeerId, rtt_us: u64 },
}

/// The channel sink. Unanswered gossip is rejected and unanswered requests get an empty
/// response, so a reader that drops an event never stalls the network.
#[derive(Debug, Clone)]
pub struct ChannelEvents {
    tx: mpsc::UnboundedSender<NetEvent>,
}

impl ChannelEvents {
    /// A sink and the receiver its events arrive on.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<NetEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

impl NetworkEvents for ChannelEvents {
    fn gossip(
        &self,
        topic: String,
        source: Option<PeerId>,
        _propagation_source: PeerId,
        data: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), Reject>> {
        let (verdict, rx) = oneshot::channel();
        let sent = self.tx.send(NetEvent::Gossip { topic, source, data, verdict }).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(Reject::Malformed);
            }
            rx.await.unwrap_or(Err(Reject::Malformed))
        })
    }

    fn request(&self, proto: Proto, peer: PeerId, data: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(NetEvent::Request { proto, peer, data, reply }).is_ok();
        Box::pin(async move {
            if !sent {
                return Vec::new();
            }
            rx.await.unwrap_or_default()
        })
    }

    fn peer_connected(&self, peer: PeerId) {
        let _ = self.tx.send(NetEvent::Connected(peer));
    }

    fn peer_disconnected(&self, peer: PeerId) {
        let _ = self.tx.send(NetEvent::Disconnected(peer));
    }

    fn ping(&self, peer: PeerId, rtt_us: u64) {
        let _ = self.tx.send(NetEvent::Ping { peer, rtt_us });
    }
}
