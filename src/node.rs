//! Wiring of one peer: identity, storage, actors, the swarm task and the HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use brainmesh_actors::roster::BrainPolicy;
use brainmesh_actors::store::SledStore;
use brainmesh_actors::{Identity, MembershipConfig, MembershipHandle, Metrics, NetworkSender};

use crate::config::NodeConfig;
use crate::http::{self, HttpState};
use crate::network::{command_channel, NetworkService, NetworkSettings};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Identity(#[from] brainmesh_actors::identity::IdentityError),
    #[error("cannot open the database in {path}: {source}")]
    Store { path: PathBuf, source: brainmesh_actors::store::StoreError },
    #[error(transparent)]
    Network(#[from] crate::network::NetError),
    #[error("cannot start the HTTP server on {addr}: {source}")]
    Http { addr: String, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What a running node writes to `<data_dir>/node.json` so `brainmesh status` can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    pub peer_id: String,
    pub http: String,
    pub listen_addrs: Vec<String>,
    pub pid: u32,
}

pub const NODE_FILE: &str = "node.json";

/// A running peer.
pub struct Node {
    pub peer_id: String,
    pub http_addr: SocketAddr,
    pub listen_addrs: Vec<String>,
    pub net: NetworkSender,
    pub membership: MembershipHandle,
    pub metrics: Metrics,
    state: HttpState,
    swarm_task: tokio::task::JoinHandle<()>,
    http: actix_web::dev::ServerHandle,
}

impl Node {
    /// Starts a peer. Must run inside an actix system (`actix_rt::System`).
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let id = Arc::new(Identity::load_or_create(&cfg.data_dir)?);
        let peer_id = id.peer_id().to_string();
        let db_path = cfg.data_dir.join("db");
        let store = SledStore::open(&db_path).map_err(|source| NodeError::Store { path: db_path, source })?;
        let metrics = Metrics::new();
        let (net, commands) = command_channel();

        let mcfg = MembershipConfig {
            brain: cfg.brain,
            roles: cfg.roles.clone(),
            models: cfg.models.clone(),
            policy: BrainPolicy {
                max_validators: cfg.brain_policy.max_validators,
                max_miners: cfg.brain_policy.max_miners,
                registration_fee: cfg.brain_policy.registration_fee,
            },
            heartbeat_interval: Duration::from_millis(cfg.network.heartbeat_interval_ms),
            offline_after_heartbeats: cfg.network.offline_after_heartbeats,
        };
        let (inbox, membership) =
            brainmesh_actors::start_membership(id.clone(), mcfg, Box::new(store), net.clone(), metrics.clone());

        let mut secret = id.ed25519_secret();
        let key = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
            .map_err(|e| crate::network::NetError::Transport(e.to_string()))?;
        let settings = NetworkSettings {
            listen: cfg.network.listen.clone(),
            bootstrap: cfg.network.bootstrap.clone(),
            gossip_heartbeat: Duration::from_millis(cfg.network.gossip_heartbeat_ms),
            max_peers: cfg.network.max_peers,
        };
        let (service, addrs) = NetworkService::new(key, settings, commands, inbox, metrics.clone()).await?;
        let listen_addrs: Vec<String> = addrs.iter().map(|a| format!("{a}/p2p/{peer_id}")).collect();
        let swarm_task = tokio::spawn(service.run());

        let state = HttpState {
            peer_id: peer_id.clone(),
            roles: cfg.roles.clone(),
            brain: cfg.brain,
            net: net.clone(),
            membership: membership.clone(),
            metrics: metrics.clone(),
            started: Arc::new(Instant::now()),
        };
        let (http_addr, http) = http::serve(state.clone(), &cfg.http.listen)
            .map_err(|source| NodeError::Http { addr: cfg.http.listen.clone(), source })?;

        let file = NodeFile {
            peer_id: peer_id.clone(),
            http: http_addr.to_string(),
            listen_addrs: listen_addrs.clone(),
            pid: std::process::id(),
        };
        let path = cfg.data_dir.join(NODE_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap_or_default())
            .map_err(|source| NodeError::Io { path, source })?;
        tracing::info!(%peer_id, http = %http_addr, listen = ?listen_addrs, roles = ?cfg.roles, brain = cfg.brain, "node started");
        Ok(Node { peer_id, http_addr, listen_addrs, net, membership, metrics, state, swarm_task, http })
    }

    /// The node's `/status` document, without going through HTTP.
    pub async fn status(&self) -> http::Status {
        http::status(&self.state).await
    }

    /// Stops the HTTP server, the actors and the swarm (connections close at once).
    pub async fn shutdown(self) {
        self.http.stop(false).await;
        self.membership.stop();
        self.swarm_task.abort();
        let _ = self.swarm_task.await;
    }
}
