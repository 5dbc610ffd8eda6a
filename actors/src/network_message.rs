//! Actors → network: the commands the swarm task accepts (Lighthouse's `NetworkMessage`).
//!
//! The actors never touch the swarm; they hold a [`NetworkSender`] and the one task that owns
//! the swarm executes these commands. Replies travel back on oneshot channels.

use brainmesh_ledger::PeerId;
use tokio::sync::{mpsc, oneshot};

/// What the network reports about itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NetworkInfo {
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<String>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NetworkError {
    #[error("network task has stopped")]
    Stopped,
    #[error("request to {peer} failed: {reason}")]
    RequestFailed { peer: String, reason: String },
    #[error("bad peer id `{0}`")]
    BadPeerId(String),
}

pub use crate::protocols::Proto;

#[derive(Debug)]
pub enum NetworkMessage {
    /// Publish bytes on a gossipsub topic (subscribing first if needed).
    Publish { topic: String, data: Vec<u8> },
    /// Subscribe to a gossipsub topic.
    Subscribe { topic: String },
    /// Send a request to a peer over request-response and await its answer.
    Request { proto: Proto, peer: String, data: Vec<u8>, reply: oneshot::Sender<Result<Vec<u8>, NetworkError>> },
    /// Ask for the network's own state.
    Info { reply: oneshot::Sender<NetworkInfo> },
    /// Dial an address (bootstrap, tests).
    Dial { addr: String, reply: oneshot::Sender<Result<(), NetworkError>> },
    /// Block (`blocked: true`: close every connection, refuse new ones) or unblock a peer.
    Block { peer: String, blocked: bool },
}

/// A cloneable handle for sending commands to the swarm task.
#[derive(Debug, Clone)]
pub struct NetworkSender {
    tx: mpsc::Sender<NetworkMessage>,
}

impl NetworkSender {
    pub fn new(tx: mpsc::Sender<NetworkMessage>) -> Self {
        Self { tx }
    }

    /// A sender whose commands are collected by the returned receiver (tests, simulations).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<NetworkMessage>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Fire-and-forget publish; if the queue is full the message is dropped and logged
    /// (gossip is best effort and heartbeats repeat).
    pub fn publish(&self, topic: String, data: Vec<u8>) {
        if let Err(e) = self.tx.try_send(NetworkMessage::Publish { topic, data }) {
            tracing::warn!("network queue full or closed, publish dropped: {e}");
        }
    }

    pub async fn subscribe(&self, topic: String) -> Result<(), NetworkError> {
        self.tx.send(NetworkMessage::Subscribe { topic }).await.map_err(|_| NetworkError::Stopped)
    }

    /// Blocks or unblocks a peer (a partition, an operator's block list); fire and forget.
    pub fn block(&self, peer: String, blocked: bool) {
        if let Err(e) = self.tx.try_send(NetworkMessage::Block { peer, blocked }) {
            tracing::warn!("network queue full or closed, block dropped: {e}");
        }
    }

    /// A roster-sync request.
    pub async fn request(&self, peer: String, data: Vec<u8>) -> Result<Vec<u8>, NetworkError> {
        self.request_on(Proto::Sync, peer, data).await
    }

    /// A request on the task protocol.
    pub async fn task_request(&self, peer: String, data: Vec<u8>) -> Result<Vec<u8>, NetworkError> {
        self.request_on(Proto::Task, peer, data).await
    }

    /// A request on the encrypted-mode protocol.
    pub async fn fhe_request(&self, peer: String, data: Vec<u8>) -> Result<Vec<u8>, NetworkError> {
        self.request_on(Proto::Fhe, peer, data).await
    }

    pub async fn request_on(&self, proto: Proto, peer: String, data: Vec<u8>) -> Result<Vec<u8>, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(NetworkMessage::Request { proto, peer, data, reply }).await.map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    pub async fn info(&self) -> Result<NetworkInfo, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(NetworkMessage::Info { reply }).await.map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }

    pub async fn dial(&self, addr: String) -> Result<(), NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(NetworkMessage::Dial { addr, reply }).await.map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }
}

/// Network → node: where the network service hands what arrives. The service knows nothing
/// else about the node, so it starts alone with any implementation: the node's [`crate::Inbox`]
/// (which routes to actors), a channel in tests, a simulator's probe.
pub trait NetworkEvents: Send + Sync + 'static {
    /// A gossipsub message on a subscribed topic; `Ok` accepts it (gossipsub forwards it),
    /// `Err` rejects it (dropped, counted, the sender's score falls).
    fn gossip(
        &self,
        topic: String,
        source: Option<PeerId>,
        propagation_source: PeerId,
        data: Vec<u8>,
    ) -> crate::task::BoxFuture<'static, Result<(), crate::protocols::Reject>>;
    /// An inbound request on `proto` from `peer`; the future's bytes are the response.
    fn request(&self, proto: Proto, peer: PeerId, data: Vec<u8>) -> crate::task::BoxFuture<'static, Vec<u8>>;
    /// The first connection to `peer` opened.
    fn peer_connected(&self, peer: PeerId);
    /// The last connection to `peer` closed.
    fn peer_disconnected(&self, peer: PeerId);
    /// A ping round trip to `peer`.
    fn ping(&self, peer: PeerId, rtt_us: u64);
}
