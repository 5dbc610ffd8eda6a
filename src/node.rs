//! Wiring of one peer: identity, storage, actors, the swarm task and the HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use brainmesh_actors::auditor::{AuditShared, AuditorConfig};
use brainmesh_actors::distributor::DistributorConfig;
use brainmesh_actors::miner::MinerConfig;
use brainmesh_actors::models::{LoadOptions, Model};
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::receipt::ReceiptStore;
use brainmesh_actors::rollup::{LedgerHandle, RollupConfig};
use brainmesh_actors::roster::BrainPolicy;
use brainmesh_actors::store::SledStore;
use brainmesh_actors::{
    ActorsConfig, DistributorHandle, Identity, MembershipConfig, MembershipHandle, Metrics, NetworkSender, NodeActors,
};
use brainmesh_ledger::settlement::FeeSplit;
use brainmesh_ledger::ChainClock;

use crate::config::NodeConfig;
use crate::gateway::{self, GatewayState};
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
    #[error("gateway configuration: {0}")]
    Gateway(String),
    #[error("cannot load the miner's model {path}: {message}")]
    Model { path: PathBuf, message: String },
}

/// The rollup actor's settings from the `[ledger]` and `[chain]` sections.
pub fn rollup_config(cfg: &NodeConfig, clock: &ChainClock) -> RollupConfig {
    let l = &cfg.ledger;
    let params = brainmesh_ledger::economics::EconomicsParams {
        settlement_interval_blocks: l.settlement_interval_blocks.max(1),
        weights_epoch_blocks: cfg.audit.epoch_blocks.max(1),
        block_time_secs: (cfg.chain.block_time_ms / 1000).max(1),
        require_authorization: l.require_authorization,
        ..Default::default()
    };
    let prices = brainmesh_ledger::economics::PriceList {
        models: l
            .prices
            .iter()
            .map(|p| {
                brainmesh_ledger::economics::ModelPrice::new(
                    &p.model,
                    u128::from(p.prompt_per_1k),
                    u128::from(p.completion_per_1k),
                    p.context,
                )
            })
            .collect(),
    };
    RollupConfig {
        brain: cfg.brain,
        clock: clock.clone(),
        vote_delay_ms: l.vote_delay_ms,
        min_validators: l.min_validators,
        max_batch_items: l.max_batch_items.max(1),
        params,
        prices,
        fee_split: if l.fee_split == "miner_only" { FeeSplit::MinerOnly } else { FeeSplit::LikeEmission },
        balances: l.balances.iter().map(|(k, v)| (k.clone(), u128::from(*v))).collect(),
        based_labs: l.based_labs.clone(),
        validator_stakes: l.validator_stakes.iter().map(|(k, v)| (k.clone(), u128::from(*v))).collect(),
        genesis_miners: l.genesis_miners.clone(),
    }
}

/// Loads the miner's model and its declared hash (the file's sha256 unless configured).
///
/// A model sealed to this miner (`brainmesh seal`) is decrypted into a private RAM-backed
/// directory, loaded, and the directory removed at once: the plaintext never touches the disk.
fn load_miner_model(cfg: &NodeConfig, clock: &ChainClock, id: &Identity) -> Result<(MinerConfig, Model), NodeError> {
    let device =
        cfg.miner.device.parse().map_err(|message| NodeError::Model { path: cfg.miner.model.clone(), message })?;
    let (model, file_hash) = if brainmesh_actors::sealed_model::is_sealed(&cfg.miner.model) {
        let err = |e: brainmesh_actors::sealed_model::SealedModelError| NodeError::Model {
            path: cfg.miner.model.clone(),
            message: e.to_string(),
        };
        let ram = brainmesh_actors::sealed_model::RamDir::new().map_err(err)?;
        let plain = brainmesh_actors::sealed_model::unseal_model(&cfg.miner.model, &id.seal_secret(), ram.path())
            .map_err(err)?;
        tracing::info!(sealed = %cfg.miner.model.display(), "decrypted the sealed model into memory");
        let loaded = load_model(&plain, &cfg.miner.model_id, device, cfg.miner.threads)?;
        drop(ram);
        loaded
    } else {
        load_model(&cfg.miner.model, &cfg.miner.model_id, device, cfg.miner.threads)?
    };
    let hash = if cfg.miner.model_hash.is_empty() { file_hash } else { cfg.miner.model_hash.clone() };
    let mcfg = MinerConfig {
        brain: cfg.brain,
        model_id: cfg.miner.model_id.clone(),
        model_hash: hash,
        max_queue: cfg.miner.max_queue,
        clock: clock.clone(),
        prefix_cache_tokens: cfg.miner.prefix_cache_tokens,
        transcript_blocks: cfg.miner.transcript_blocks,
        behaviour: cfg
            .miner
            .behaviour
            .parse()
            .map_err(|message| NodeError::Model { path: cfg.miner.model.clone(), message })?,
    };
    Ok((mcfg, model))
}

/// The validator's copy of the audited model (CPU) and the auditor's settings.
fn load_auditor(cfg: &NodeConfig, clock: &ChainClock) -> Result<(AuditorConfig, Model), NodeError> {
    let a = &cfg.audit;
    let (model, hash) = load_model(&a.model, "audit model", brainmesh_actors::models::DevicePref::Cpu, a.threads)?;
    let tolerance = brainmesh_actors::models::proof::Tolerance {
        max_exp_mismatches: a.max_exp_mismatches,
        max_mant_err_mean: a.max_mant_err_mean,
        max_mant_err_median: a.max_mant_err_median,
        ..Default::default()
    };
    let acfg = AuditorConfig {
        brain: cfg.brain,
        model_hash: hash,
        spot_check: brainmesh_ledger::audit::SpotCheckParams {
            override_rate: (a.rate > 0.0).then_some(a.rate),
            ..Default::default()
        },
        slash_units: a.slash_units,
        tolerance,
        weights: brainmesh_ledger::audit::WeightsParams {
            epoch_blocks: a.epoch_blocks.max(1),
            reveal_delay_blocks: a.reveal_delay_blocks,
            ..Default::default()
        },
        clock: clock.clone(),
        fetch_timeout: Duration::from_millis(a.fetch_timeout_ms),
        quality_every_blocks: a.quality_every_blocks,
        quality_max_tokens: a.quality_max_tokens,
        behaviour: a.behaviour.parse().map_err(|message| NodeError::Model { path: a.model.clone(), message })?,
    };
    Ok((acfg, model))
}

/// Loads a model (progress bar on a terminal) and hashes its file.
fn load_model(
    path: &std::path::Path,
    label: &str,
    device: brainmesh_actors::models::DevicePref,
    threads: usize,
) -> Result<(Model, String), NodeError> {
    let path = path.to_path_buf();
    let err = |message: String| NodeError::Model { path: path.clone(), message };
    let opts = LoadOptions { device, threads: (threads > 0).then_some(threads), kind: None };
    let hash = hash_model(&path).map_err(|e| err(e.to_string()))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg} [{bar:40}] {pos}/{len} tensors")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let t0 = Instant::now();
    let model = Model::load(&path, &opts, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    })
    .map_err(|e| err(e.to_string()))?;
    bar.finish_and_clear();
    tracing::info!(model = %label, %hash, secs = t0.elapsed().as_secs_f32(), "model loaded");
    Ok((model, hash))
}

/// sha256 of a model file, or of every file of a model directory in name order.
pub fn hash_model(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut files = vec![];
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            let p = e?.path();
            if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut r = std::fs::File::open(&f)?;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// What a running node writes to `<data_dir>/node.json` so `brainmesh status` can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    pub peer_id: String,
    pub http: String,
    pub listen_addrs: Vec<String>,
    pub pid: u32,
    /// Gateway role: where the OpenAI-compatible API listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

pub const NODE_FILE: &str = "node.json";

/// A running peer.
pub struct Node {
    pub peer_id: String,
    /// The status/metrics server (none when `http.listen` is empty).
    pub http_addr: Option<SocketAddr>,
    pub listen_addrs: Vec<String>,
    pub net: NetworkSender,
    pub membership: MembershipHandle,
    pub metrics: Metrics,
    /// Gateway role: the way into the mesh for tasks.
    pub tasks: Option<DistributorHandle>,
    pub receipts: ReceiptStore,
    /// The ban list; on validators also audit stats and revealed weights.
    pub audit: AuditShared,
    /// Validators: the rollup ledger (summary, full report, transaction submission).
    pub ledger: Option<LedgerHandle>,
    /// Gateway role: the OpenAI-compatible API's address.
    pub gateway_addr: Option<SocketAddr>,
    gateway_http: Option<actix_web::dev::ServerHandle>,
    state: HttpState,
    swarm_task: tokio::task::JoinHandle<()>,
    http: Option<actix_web::dev::ServerHandle>,
}

impl Node {
    /// Starts a peer. Must run inside an actix system (`actix_rt::System`).
    pub async fn start(cfg: NodeConfig) -> Result<Node, NodeError> {
        let clock = cfg.chain.clock();
        Self::start_with_clock(cfg, clock).await
    }

    /// Starts a peer on a given chain clock (a simulator hands every peer one shared virtual
    /// clock; `start` uses the wall clock from `[chain]`).
    pub async fn start_with_clock(cfg: NodeConfig, clock: ChainClock) -> Result<Node, NodeError> {
        let id = Arc::new(Identity::load_or_create(&cfg.data_dir)?);
        let peer_id = id.peer_id().to_string();
        let db_path = cfg.data_dir.join("db");
        let store = SledStore::open(&db_path).map_err(|source| NodeError::Store { path: db_path, source })?;
        let metrics = Metrics::new();
        let (net, commands) = command_channel();

        let is = |r: Role| cfg.roles.contains(&r);
        let mut models = cfg.models.clone();
        let miner = if is(Role::Miner) {
            if !models.contains(&cfg.miner.model_id) {
                models.push(cfg.miner.model_id.clone());
            }
            Some(load_miner_model(&cfg, &clock, &id)?)
        } else {
            None
        };
        let embedder = if is(Role::Miner) && !cfg.miner.embedding_model.as_os_str().is_empty() {
            let dir = &cfg.miner.embedding_model;
            let err = |message: String| NodeError::Model { path: dir.clone(), message };
            let hash = hash_model(dir).map_err(|e| err(e.to_string()))?;
            let model = brainmesh_actors::models::embed::MiniLm::load(dir).map_err(|e| err(e.to_string()))?;
            let id = cfg.miner.embedding_model_id.clone();
            if !models.contains(&id) {
                models.push(id.clone());
            }
            tracing::info!(%id, dim = model.dim(), dir = %dir.display(), "serving an embedding model");
            Some(brainmesh_actors::miner::Embedder { id, hash, model })
        } else {
            None
        };
        let fhe = if is(Role::Miner) && !cfg.miner.fhe_head.as_os_str().is_empty() {
            let dir = &cfg.miner.fhe_head;
            let head = brainmesh_actors::models::fhe::QuantizedHead::load(dir)
                .map_err(|e| NodeError::Model { path: dir.clone(), message: e.to_string() })?;
            models.push(brainmesh_actors::fhe_client::head_model_entry(&head.head_id()));
            tracing::info!(head = %head.head_id(), dir = %dir.display(), "serving an encrypted head");
            Some(head)
        } else {
            None
        };
        let auditor = if is(Role::Validator) && !cfg.audit.model.as_os_str().is_empty() {
            Some(load_auditor(&cfg, &clock)?)
        } else {
            None
        };
        // Gateways route users' tasks; auditing validators send known-answer tasks the same way.
        let distributor = (is(Role::Gateway) || auditor.is_some()).then(|| DistributorConfig {
            brain: cfg.brain,
            chunk_timeout: Duration::from_millis(cfg.tasks.chunk_timeout_ms),
            first_chunk_timeout: Duration::from_millis(cfg.tasks.first_chunk_timeout_ms),
            max_attempts: cfg.tasks.max_attempts.max(1),
        });
        let mcfg = MembershipConfig {
            brain: cfg.brain,
            roles: cfg.roles.clone(),
            models,
            policy: BrainPolicy {
                max_validators: cfg.brain_policy.max_validators,
                max_miners: cfg.brain_policy.max_miners,
                registration_fee: cfg.brain_policy.registration_fee,
                paid_admission: cfg.brain_policy.paid_admission,
            },
            heartbeat_interval: Duration::from_millis(cfg.network.heartbeat_interval_ms),
            offline_after_heartbeats: cfg.network.offline_after_heartbeats,
        };
        let actors = brainmesh_actors::start_actors(
            id.clone(),
            ActorsConfig {
                membership: mcfg,
                miner,
                embedder,
                distributor,
                fhe,
                auditor,
                clock: clock.clone(),
                ledger: (is(Role::Validator) && cfg.ledger.enabled).then(|| rollup_config(&cfg, &clock)),
            },
            store,
            net.clone(),
            metrics.clone(),
        )
        .map_err(|source| NodeError::Store { path: cfg.data_dir.join("db"), source })?;
        let NodeActors { inbox, membership, tasks, receipts, audit, ledger } = actors;

        let mut secret = id.ed25519_secret();
        let key = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
            .map_err(|e| crate::network::NetError::Transport(e.to_string()))?;
        let settings = NetworkSettings {
            listen: cfg.network.listen.clone(),
            bootstrap: cfg.network.bootstrap.clone(),
            gossip_heartbeat: Duration::from_millis(cfg.network.gossip_heartbeat_ms),
            max_peers: cfg.network.max_peers,
            link: crate::network::link::LinkModel::new(
                Duration::from_micros(cfg.network.emulate_latency_us),
                Duration::from_micros(cfg.network.emulate_jitter_us),
                cfg.network.emulate_loss,
                cfg.network.emulate_bandwidth_kbps * 1000 / 8,
            ),
        };
        let (service, addrs) =
            NetworkService::new(key, settings, commands, std::sync::Arc::new(inbox), metrics.clone()).await?;
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
            receipts: receipts.clone(),
            ledger: ledger.clone(),
        };
        let (http_addr, http) = if cfg.http.listen.is_empty() {
            (None, None)
        } else {
            let (a, h) = http::serve(state.clone(), &cfg.http.listen)
                .map_err(|source| NodeError::Http { addr: cfg.http.listen.clone(), source })?;
            (Some(a), Some(h))
        };
        let (gateway_addr, gateway_http) = match tasks
            .as_ref()
            .filter(|_| is(Role::Gateway) && !cfg.gateway.listen.is_empty())
        {
            Some(t) => {
                let gstate = GatewayState::new(Arc::new(t.clone()), &cfg.gateway)
                    .map_err(|e| NodeError::Gateway(e.to_string()))?;
                let (addr, handle) = gateway::serve(gstate, &cfg.gateway.listen)
                    .map_err(|source| NodeError::Http { addr: cfg.gateway.listen.clone(), source })?;
                tracing::info!(api = %format!("http://{addr}/v1"), keys = cfg.gateway.api_keys.len(), "OpenAI-compatible gateway listening");
                (Some(addr), Some(handle))
            }
            None => (None, None),
        };

        let file = NodeFile {
            peer_id: peer_id.clone(),
            http: http_addr.map(|a| a.to_string()).unwrap_or_default(),
            listen_addrs: listen_addrs.clone(),
            pid: std::process::id(),
            gateway: gateway_addr.map(|a| a.to_string()),
        };
        let path = cfg.data_dir.join(NODE_FILE);
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|source| NodeError::Io { path: cfg.data_dir.clone(), source })?;
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap_or_default())
            .map_err(|source| NodeError::Io { path, source })?;
        tracing::info!(%peer_id, http = ?http_addr, listen = ?listen_addrs, roles = ?cfg.roles, brain = cfg.brain, "node started");
        Ok(Node {
            peer_id,
            http_addr,
            listen_addrs,
            net,
            membership,
            metrics,
            state,
            tasks,
            receipts,
            audit,
            ledger,
            gateway_addr,
            gateway_http,
            swarm_task,
            http,
        })
    }

    /// The node's `/status` document, without going through HTTP.
    pub async fn status(&self) -> http::Status {
        http::status(&self.state).await
    }

    /// Stops the HTTP server, the actors and the swarm (connections close at once).
    pub async fn shutdown(self) {
        if let Some(g) = &self.gateway_http {
            g.stop(false).await;
        }
        if let Some(h) = &self.http {
            h.stop(false).await;
        }
        self.membership.stop();
        self.swarm_task.abort();
        let _ = self.swarm_task.await;
    }
}
