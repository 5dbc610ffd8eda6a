//! Actors → network: the commands the swarm task accepts (Lighthouse's `NetworkMessage`).
//!
//! The actors never touch the swarm; they hold a [`NetworkSender`] and the one task that owns
//! the swarm executes these commands. Replies travel back on oneshot channels.

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

/// Which request-response protocol a request travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `/brainmesh/sync/1`: roster sync (small).
    Sync,
    /// `/brainmesh/task/1`: task assignment and result chunks.
    Task,
    /// `/brainmesh/fhe/1`: encrypted-mode head description, key upload, classification.
    Fhe,
    /// `/brainmesh/audit/1`: a validator fetches a miner's transcript.
    Audit,
}

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
