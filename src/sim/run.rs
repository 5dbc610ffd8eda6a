//! One simulated run: build the peers, start them, release the clock, drive the load and the
//! faults block by block, sample the ledgers, drain, and write the outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brainmesh_actors::models::tiny::{write_tiny_llama, TinyVariant};
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{Prompt, Sampling, TaskEvent, TaskService, TaskSpec};
use brainmesh_actors::Identity;
use brainmesh_ledger::{ChainClock, VirtualClock};

use super::load::{arrivals, Arrival};
use super::mesh::SimPeer;
use super::record::{self, BlockRow, EventRow, PeerRow, RequestRow, Summary};
use super::scenario::{FaultKind, Scenario};
use crate::config::{loopback, PriceEntry};

/// Genesis of every simulated chain (2026-01-01T00:00:00Z): runs are comparable and
/// reproducible whatever the date.
pub const SIM_GENESIS_MS: u64 = 1_767_225_600_000;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] super::scenario::ScenarioError),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model: {0}")]
    Model(String),
    #[error("peer {0}")]
    Peer(String),
    #[error("the mesh did not form within {secs} s: {detail}")]
    NoMesh { secs: u64, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io { path: path.to_path_buf(), source }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub scenario: PathBuf,
    pub out: PathBuf,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Per-request bookkeeping shared with the load tasks.
#[derive(Default)]
struct Tally {
    requests: Vec<RequestRow>,
    served_by: BTreeMap<String, u64>,
    first_served_block: BTreeMap<String, u64>,
}

/// Runs a scenario and writes its outputs into `opts.out`; returns the summary.
pub async fn run(opts: &SimOptions) -> Result<Summary, SimError> {
    let (mut sc, sha) = Scenario::load(&opts.scenario)?;
    if let Some(s) = opts.seed {
        sc.seed = s;
    }
    run_scenario(&sc, &sha, &opts.out, opts.progress).await
}

/// Runs an already loaded scenario (`sha`: its text's sha256, for the summary).
pub async fn run_scenario(sc: &Scenario, sha: &str, out: &Path, progress: bool) -> Result<Summary, SimError> {
    let wall0 = Instant::now();
    std::fs::create_dir_all(out).map_err(io(out))?;
    let peers_dir = out.join("peers");
    if peers_dir.exists() {
        std::fs::remove_dir_all(&peers_dir).map_err(io(&peers_dir))?;
    }
    std::fs::write(out.join("scenario.toml"), toml::to_string(sc).unwrap_or_default()).map_err(io(out))?;

    // The models: the tiny Llama from the seed, and its squeezed copy if a cheater serves it.
    let model_dir = out.join("model").join("tiny");
    write_tiny_llama(&model_dir, &sc.model.tiny, sc.seed, TinyVariant::Original)
        .map_err(|e| SimError::Model(e.to_string()))?;
    let model_hash = crate::node::hash_model(&model_dir).map_err(io(&model_dir))?;
    let squeezed_dir = out.join("model").join("tiny-squeezed");
    if sc.peers.miners.iter().any(|g| g.is_squeezed()) {
        write_tiny_llama(&squeezed_dir, &sc.model.tiny, sc.seed, TinyVariant::Squeezed)
            .map_err(|e| SimError::Model(e.to_string()))?;
    }

    let clock_src = VirtualClock::held(SIM_GENESIS_MS, sc.chain.speedup);
    let clock = ChainClock::new(SIM_GENESIS_MS, sc.chain.block_time_ms, Arc::new(clock_src.clone()));
    let mut peers = build_peers(sc, &peers_dir, &model_dir, &model_hash, &squeezed_dir)?;
    let by_id: BTreeMap<String, usize> = peers.iter().enumerate().map(|(i, p)| (p.peer_id.clone(), i)).collect();

    // Start: validator-0 first, everyone else bootstraps from it.
    peers[0].start(&clock, vec![]).await.map_err(SimError::Peer)?;
    let boot = peers[0].live.as_ref().map(|l| l.listen.clone()).unwrap_or_default();
    // Peers that `join` later are not started now.
    let late: BTreeSet<&str> = sc
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::Join)
        .flat_map(|f| f.peers.iter().map(|p| p.as_str()))
        .collect();
    for p in peers.iter_mut().skip(1) {
        if late.contains(p.name.as_str()) {
            continue;
        }
        p.start(&clock, boot.clone()).await.map_err(SimError::Peer)?;
    }
    // Forming the mesh costs more than the square of its size (every newcomer changes every
    // roster's digest, and each heartbeat with another digest starts a sync of the whole
    // roster): 25 s at 50 peers and 137 s at 100 on 2 cores.
    let n = peers.len() as u64;
    wait_for_mesh(&peers, &sc.model.id, Duration::from_secs(60 + n * n / 20)).await?;
    let formation_s = wall0.elapsed().as_secs_f64();
    tracing::info!(peers = peers.len(), secs = formation_s, "mesh formed; chain clock released");
    clock_src.release();
    let run0 = Instant::now();

    let block_ms = sc.chain.block_time_ms;
    let load = arrivals(&sc.load, sc.seed, sc.chain.blocks, block_ms, sc.peers.gateways);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let gateways: Vec<usize> =
        peers.iter().enumerate().filter(|(_, p)| p.role == Role::Gateway).map(|(i, _)| i).collect();
    let names: Arc<BTreeMap<String, String>> =
        Arc::new(peers.iter().map(|p| (p.peer_id.clone(), p.name.clone())).collect());
    let in_flight = Arc::new(tokio::sync::Semaphore::new(sc.load.max_in_flight));
    let mut pending_load = load.into_iter().peekable();
    let mut request_tasks = vec![];

    let total = sc.chain.blocks + sc.chain.drain_blocks;
    let bar = progress_bar(total, progress);
    let mut blocks: Vec<BlockRow> = vec![];
    let mut peer_rows: Vec<PeerRow> = vec![];
    let mut events: Vec<EventRow> = vec![];
    let mut banned_at: BTreeMap<String, u64> = BTreeMap::new();
    let mut faults: Vec<_> = sc.faults.clone();
    faults.sort_by_key(|f| f.at);
    let mut faults = faults.into_iter().peekable();
    let mut floods: Vec<super::scenario::FaultSpec> = vec![];
    let mut flood_seq = 0u64;
    let mut last_final: Option<u64> = None;
    let mut last_final_change = 0u64;
    let mut max_stall = 0u64;

    for h in 0..total {
        // Faults scheduled for this block happen at its start.
        while faults.peek().is_some_and(|f| f.at <= h) {
            let Some(f) = faults.next() else { break };
            if f.kind == FaultKind::Flood {
                floods.push(f.clone());
            }
            apply_fault(&mut peers, &f, &clock, h, run0, &mut events).await;
        }
        floods.retain(|f| h < f.at + f.blocks);
        for f in &floods {
            flood(&peers, f, h, &mut flood_seq);
        }
        // Requests arriving during this block.
        let end_ms = (h + 1) * block_ms;
        while pending_load.peek().is_some_and(|a| a.at_ms < end_ms) {
            let Some(a) = pending_load.next() else { break };
            let gi = gateways[a.gateway % gateways.len()];
            let g = &peers[gi];
            let job = Job {
                a,
                gateway: g.name.clone(),
                tasks: g.live.as_ref().and_then(|l| l.tasks.clone()),
                model: sc.model.id.clone(),
                account: account_name(0),
                clock: clock.clone(),
                block_ms,
                names: names.clone(),
                tally: tally.clone(),
                permits: in_flight.clone(),
            };
            let job = Job { account: account_name(job.a.account), ..job };
            request_tasks.push(tokio::spawn(job.run()));
        }
        wait_until_height(&clock, h + 1).await;

        // Sample.
        let sample = h % sc.output.sample_every_blocks.max(1) == 0 || h + 1 == total;
        let epoch_end = (h + 1) % sc.chain.epoch_blocks == 0 || h + 1 == total;
        observe_bans(&peers, &clock, h, run0, &by_id, &tally, &mut banned_at, &mut events);
        if sample || epoch_end {
            let row = block_row(&peers, h, run0, &tally).await;
            if row.final_height != last_final {
                if let Some(f) = row.final_height {
                    max_stall = max_stall.max(h.saturating_sub(last_final_change));
                    last_final_change = h;
                    let _ = f;
                }
                last_final = row.final_height;
            }
            if sample {
                blocks.push(row);
            }
        }
        if epoch_end {
            peer_rows.extend(peer_rows_at(&peers, h / sc.chain.epoch_blocks, h, &tally, &banned_at).await);
        }
        bar.set_position(h + 1);
        bar.set_message(format!("block {} of {total}", h + 1));
        if bar.is_hidden() && (h + 1) % (total / 10).max(1) == 0 {
            // Without a terminal: a line every tenth of the run, with how far the loop lags the
            // chain clock (a mesh too large for the machine shows here first).
            tracing::info!(
                block = h + 1,
                of = total,
                wall_s = run0.elapsed().as_secs(),
                chain_height = clock.height(),
                "progress"
            );
        }
    }
    bar.finish_and_clear();
    max_stall = max_stall.max(total.saturating_sub(last_final_change));
    // Requests still in flight get one shared deadline (not one each: a mesh that fell behind
    // can hold dozens).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for t in request_tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            tracing::warn!("requests still in flight 30 s after the last block are left out of requests.csv");
            break;
        }
    }

    let summary =
        finish(sc, sha, out, &peers, &tally, blocks, peer_rows, events, &banned_at, (wall0, formation_s), max_stall)
            .await?;
    for p in peers.iter_mut() {
        p.kill().await;
    }
    Ok(summary)
}

fn account_name(i: usize) -> String {
    format!("sim-account-{i}")
}

fn progress_bar(total: u64, show: bool) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("sim [{bar:40}] {pos}/{len} blocks {msg} · {elapsed} · ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !show || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// The node configurations of every peer (identities created now, so the genesis can name the
/// validators' stakes).
fn build_peers(
    sc: &Scenario,
    dir: &Path,
    model: &Path,
    model_hash: &str,
    squeezed: &Path,
) -> Result<Vec<SimPeer>, SimError> {
    let n_peers = sc.peer_names().len();
    let mut specs: Vec<(String, Role, String)> = vec![];
    for i in 0..sc.peers.validators {
        specs.push((format!("validator-{i}"), Role::Validator, sc.validator_behaviour(i).into()));
    }
    for i in 0..sc.peers.gateways {
        specs.push((format!("gateway-{i}"), Role::Gateway, "honest".into()));
    }
    for (name, g) in sc.miners() {
        specs.push((name, Role::Miner, g.behaviour.clone()));
    }
    let mut ids = vec![];
    for (name, _, _) in &specs {
        let d = dir.join(name);
        let id = Identity::load_or_create(&d).map_err(|e| SimError::Peer(format!("{name}: {e}")))?;
        ids.push(id.peer_id().to_string());
    }
    let stakes: BTreeMap<String, u64> = specs
        .iter()
        .zip(&ids)
        .filter(|((_, r, _), _)| *r == Role::Validator)
        .map(|(_, id)| (id.clone(), sc.peers.validator_stake))
        .collect();
    let balances: BTreeMap<String, u64> =
        (0..sc.load.accounts).map(|i| (account_name(i), sc.load.account_balance)).collect();
    // Under paid admission every miner but the Sybils has paid its registration at genesis.
    let paid_miners: Vec<String> = specs
        .iter()
        .zip(&ids)
        .filter(|((_, r, b), _)| *r == Role::Miner && b != "sybil")
        .map(|(_, id)| id.clone())
        .collect();
    let speed = sc.chain.speedup;
    // Colluders favour the adversarial miners (or the last miner when all are honest).
    let mut favour: Vec<String> = specs
        .iter()
        .zip(&ids)
        .filter(|((_, r, b), _)| *r == Role::Miner && b != "honest" && b != "sybil")
        .map(|(_, id)| id.clone())
        .collect();
    if favour.is_empty() {
        favour.extend(ids.last().cloned());
    }
    let mut out = vec![];
    for ((name, role, behaviour), id) in specs.into_iter().zip(ids) {
        let d = dir.join(&name);
        let mut c = loopback(role, &d, vec![]).map_err(|e| SimError::Peer(e.to_string()))?;
        c.network.listen = vec!["/memory/0".into()];
        c.network.max_peers = n_peers + 16;
        // Protocol intervals are chain time (the clock divides them by the speed-up); libp2p's
        // own timers run on the wall clock.
        c.network.heartbeat_interval_ms = sc.chain.block_time_ms * sc.peers.heartbeat_blocks;
        c.network.offline_after_heartbeats = 6;
        c.network.gossip_heartbeat_ms = sc.peers.gossip_heartbeat_ms;
        // The links run in wall time, like the miners' compute (which the clock does not speed
        // up either): request latencies are a real network's; consensus, on the accelerated
        // chain clock, sees links `speedup` times slower than described.
        c.network.emulate_latency_us = sc.network.latency_ms * 1000;
        c.network.emulate_jitter_us = sc.network.jitter_ms * 1000;
        c.network.emulate_loss = sc.network.loss;
        c.network.emulate_bandwidth_kbps = sc.network.bandwidth_kbps;
        c.http.listen = String::new();
        c.gateway.listen = String::new();
        c.log.filter = "warn".into();
        c.chain.genesis_ms = SIM_GENESIS_MS;
        c.chain.block_time_ms = sc.chain.block_time_ms;
        c.models = vec![sc.model.id.clone()];
        // Gateways' timeouts are chain time too: give a real 20 s of inference, scaled.
        c.tasks.first_chunk_timeout_ms = 20_000 * speed;
        c.tasks.chunk_timeout_ms = 20_000 * speed;
        c.ledger.enabled = true;
        c.ledger.min_validators = sc.peers.validators;
        c.ledger.settlement_interval_blocks = sc.chain.settlement_interval_blocks;
        c.ledger.validator_stakes = stakes.clone();
        c.ledger.balances = balances.clone();
        c.ledger.genesis_miners = if sc.peers.paid_admission { paid_miners.clone() } else { Vec::new() };
        c.brain_policy.paid_admission = sc.peers.paid_admission;
        c.ledger.prices = vec![PriceEntry {
            model: sc.model.id.clone(),
            prompt_per_1k: 100_000,
            completion_per_1k: 200_000,
            context: sc.model.tiny.context as u64,
        }];
        c.audit.epoch_blocks = sc.chain.epoch_blocks;
        c.audit.reveal_delay_blocks = sc.chain.reveal_delay_blocks;
        c.audit.rate = sc.audit.rate;
        c.audit.threads = sc.model.threads;
        if role == Role::Validator {
            c.audit.model = model.to_path_buf();
            c.audit.behaviour = match behaviour.as_str() {
                "copier" => "copier".into(),
                "colluder" => format!("collude:{}", favour.join(",")),
                _ => "honest".into(),
            };
        }
        c.miner.model_id = sc.model.id.clone();
        c.miner.threads = sc.model.threads;
        c.miner.device = "cpu".into();
        c.miner.transcript_blocks = sc.chain.blocks + sc.chain.drain_blocks + 10;
        if behaviour == "squeezed" {
            c.miner.model = squeezed.to_path_buf();
            c.miner.model_hash = model_hash.to_string();
            c.miner.behaviour = "honest".into();
        } else if role == Role::Miner {
            c.miner.model = model.to_path_buf();
            c.miner.model_hash = model_hash.to_string();
            // A Sybil serves honestly: what it lacks is a paid registration, not honesty.
            c.miner.behaviour = if behaviour == "sybil" { "honest".into() } else { behaviour.clone() };
        }
        c.validate().map_err(|e| SimError::Peer(format!("{name}: {e}")))?;
        out.push(SimPeer::new(name, role, behaviour, id, c));
    }
    Ok(out)
}

/// Waits until every validator and gateway has admitted every peer, and every gateway knows an
/// online miner of `model` (one heartbeat seen), so that the first request can be routed.
async fn wait_for_mesh(peers: &[SimPeer], model: &str, limit: Duration) -> Result<(), SimError> {
    let t0 = Instant::now();
    // Sybils are not waited for: under paid admission nobody admits them.
    let want: BTreeSet<&str> =
        peers.iter().filter(|p| p.is_up() && !p.is_sybil()).map(|p| p.peer_id.as_str()).collect();
    loop {
        let mut missing = 0usize;
        for p in peers.iter().filter(|p| p.role == Role::Validator || p.role == Role::Gateway) {
            let Some(l) = &p.live else { continue };
            let seen: BTreeSet<String> = l
                .membership
                .roster()
                .await
                .map(|s| {
                    s.brains
                        .iter()
                        .flat_map(|b| b.members.iter())
                        .filter(|m| m.admitted)
                        .map(|m| m.peer_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            missing += want.iter().filter(|w| !seen.contains(**w)).count();
        }
        let mut unrouted = 0usize;
        for p in peers.iter().filter(|p| p.role == Role::Gateway) {
            let Some(t) = p.live.as_ref().and_then(|l| l.tasks.as_ref()) else { continue };
            if !t.models().await.iter().any(|m| m.id == model && m.miners > 0) {
                unrouted += 1;
            }
        }
        if missing == 0 && unrouted == 0 {
            return Ok(());
        }
        if t0.elapsed() > limit {
            return Err(SimError::NoMesh {
                secs: limit.as_secs(),
                detail: format!(
                    "{missing} (validator or gateway, peer) pairs still unknown, {unrouted} gateways without an online miner"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until_height(clock: &ChainClock, h: u64) {
    while clock.height() < h {
        let wait = clock.wall_wait(clock.until_next_block());
        tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
    }
}

/// One request of the load, from its arrival to its last event.
struct Job {
    a: Arrival,
    gateway: String,
    tasks: Option<brainmesh_actors::DistributorHandle>,
    model: String,
    account: String,
    clock: ChainClock,
    block_ms: u64,
    names: Arc<BTreeMap<String, String>>,
    tally: Arc<Mutex<Tally>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Job {
    async fn run(self) {
        let target = SIM_GENESIS_MS + self.a.at_ms;
        let now = self.clock.now_ms();
        if target > now {
            tokio::time::sleep(self.clock.wall_wait(Duration::from_millis(target - now))).await;
        }
        let _permit = self.permits.acquire().await;
        let mut row = RequestRow {
            seq: self.a.seq,
            arrival_ms: self.a.at_ms,
            arrival_block: self.a.at_ms / self.block_ms,
            gateway: self.gateway.clone(),
            ..Default::default()
        };
        let t0 = Instant::now();
        row.outcome = match &self.tasks {
            None => "gateway_down".into(),
            Some(t) => self.serve(t, &mut row, t0).await,
        };
        row.latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
        if let Ok(mut tally) = self.tally.lock() {
            if row.outcome == "ok" {
                *tally.served_by.entry(row.miner.clone()).or_default() += 1;
                tally.first_served_block.entry(row.miner.clone()).or_insert(row.arrival_block);
            }
            tally.requests.push(row);
        }
    }

    async fn serve(&self, tasks: &brainmesh_actors::DistributorHandle, row: &mut RequestRow, t0: Instant) -> String {
        let sampled = self.a.seq % 2 == 1;
        let spec = TaskSpec {
            model: self.model.clone(),
            account: self.account.clone(),
            prompt: Prompt::Text(self.a.prompt.clone()),
            sampling: Sampling {
                max_tokens: self.a.max_tokens,
                temperature: if sampled { 0.8 } else { 0.0 },
                top_p: sampled.then_some(0.95),
                seed: Some(self.a.seed),
                ..Default::default()
            },
        };
        let mut rx = match tasks.submit(spec).await {
            Ok(rx) => rx,
            Err(brainmesh_actors::task::TaskError::NoMiner(_)) => return "no_miner".into(),
            Err(brainmesh_actors::task::TaskError::UnknownModel(_)) => return "unknown_model".into(),
            Err(_) => return "failed".into(),
        };
        let limit = Duration::from_secs(120);
        loop {
            match tokio::time::timeout(limit, rx.recv()).await {
                Err(_) => return "timeout".into(),
                Ok(None) => return "failed".into(),
                Ok(Some(TaskEvent::Started { miner, prompt_tokens, .. })) => {
                    row.miner = self.names.get(&miner).cloned().unwrap_or(miner);
                    row.prompt_tokens = prompt_tokens;
                }
                Ok(Some(TaskEvent::Token { .. } | TaskEvent::Embeddings { .. })) => {
                    if row.ttft_ms == 0.0 {
                        row.ttft_ms = t0.elapsed().as_secs_f64() * 1000.0;
                    }
                }
                Ok(Some(TaskEvent::Done { usage, receipt_id, attempts, .. })) => {
                    row.completion_tokens = usage.completion_tokens;
                    row.prompt_tokens = usage.prompt_tokens;
                    row.receipt = receipt_id;
                    row.attempts = attempts;
                    return "ok".into();
                }
                Ok(Some(TaskEvent::Failed(_))) => return "failed".into(),
            }
        }
    }
}

/// One block of a flood: each flooding peer that is up publishes `per_block` bad messages on
/// every gossip topic of the Brain through its real network service — malformed bytes and
/// envelopes whose signature does not match their claimed signer, alternately (each unique, so
/// gossipsub's duplicate filter does not drop them before the honest peers judge them).
fn flood(peers: &[SimPeer], f: &super::scenario::FaultSpec, h: u64, seq: &mut u64) {
    use brainmesh_actors::protocols::gossip::{Envelope, TopicKind};
    let victim = peers.iter().find(|p| p.role == Role::Validator).map(|p| p.peer_id.clone()).unwrap_or_default();
    for name in &f.peers {
        let Some(p) = peers.iter().find(|p| &p.name == name) else { continue };
        let Some(l) = p.live.as_ref() else { continue };
        for kind in TopicKind::ALL {
            for _ in 0..f.per_block {
                *seq += 1;
                let data = if seq.is_multiple_of(2) {
                    format!("flood {seq} at block {h}: not a message").into_bytes()
                } else {
                    let forged = Envelope {
                        v: 1,
                        signer: victim.clone(),
                        public_key: String::new(),
                        body: format!("{{\"flood\":{seq}}}"),
                        sig: "00".repeat(64),
                    };
                    serde_json::to_vec(&forged).unwrap_or_default()
                };
                l.net.publish(kind.topic(p.cfg.brain), data);
            }
        }
    }
}

async fn apply_fault(
    peers: &mut [SimPeer],
    f: &super::scenario::FaultSpec,
    clock: &ChainClock,
    h: u64,
    run0: Instant,
    events: &mut Vec<EventRow>,
) {
    fn idx(peers: &[SimPeer], name: &str) -> Option<usize> {
        peers.iter().position(|p| p.name == name)
    }
    let mut ev = |kind: &str, peer: &str, detail: String| {
        events.push(EventRow {
            height: h,
            wall_s: run0.elapsed().as_secs_f64(),
            kind: kind.into(),
            peer: peer.into(),
            behaviour: String::new(),
            detection_blocks: None,
            detail,
        })
    };
    match f.kind {
        FaultKind::Flood => {
            // The run loop publishes the messages block by block (see `flood`).
            ev("flood", &f.peers.join(" "), format!("{} per topic per block for {} blocks", f.per_block, f.blocks));
        }
        FaultKind::Kill => {
            for name in &f.peers {
                if let Some(i) = idx(peers, name) {
                    peers[i].kill().await;
                    ev("kill", name, String::new());
                }
            }
        }
        FaultKind::Leave => {
            // No deregistration exists: the peer stops, and the others mark it offline once its
            // heartbeats stop (a leave is a kill with no restart planned).
            for name in &f.peers {
                if let Some(i) = idx(peers, name) {
                    peers[i].kill().await;
                    ev("leave", name, String::new());
                }
            }
        }
        FaultKind::Restart | FaultKind::Join => {
            let what = if f.kind == FaultKind::Join { "join" } else { "restart" };
            for name in &f.peers {
                let Some(i) = idx(peers, name) else { continue };
                let boot: Vec<String> = peers
                    .iter()
                    .filter(|p| p.name != *name)
                    .filter_map(|p| p.live.as_ref())
                    .flat_map(|l| l.listen.iter().cloned())
                    .take(3)
                    .collect();
                let r = peers[i].start(clock, boot).await;
                ev(what, name, r.err().unwrap_or_default());
            }
        }
        FaultKind::Partition => {
            let group_of = |name: &str| f.groups.iter().position(|g| g.iter().any(|n| n == name)).unwrap_or(0);
            let assign: Vec<(usize, String)> = peers.iter().map(|p| (group_of(&p.name), p.peer_id.clone())).collect();
            for (i, p) in peers.iter().enumerate() {
                let Some(l) = &p.live else { continue };
                for (g, id) in &assign {
                    if *g != assign[i].0 {
                        l.net.block(id.clone(), true);
                    }
                }
            }
            ev("partition", "", f.groups.iter().map(|g| g.join(" ")).collect::<Vec<_>>().join(" | "));
        }
        FaultKind::Heal => {
            let all: Vec<(String, Vec<String>)> = peers
                .iter()
                .map(|p| (p.peer_id.clone(), p.live.as_ref().map(|l| l.listen.clone()).unwrap_or_default()))
                .collect();
            for p in peers.iter() {
                let Some(l) = &p.live else { continue };
                for (id, _) in &all {
                    l.net.block(id.clone(), false);
                }
            }
            // Reconnect across the healed cut: every peer dials the validators.
            for p in peers.iter() {
                let Some(l) = &p.live else { continue };
                for (q, (_, addrs)) in peers.iter().zip(&all) {
                    if q.role == Role::Validator && q.peer_id != p.peer_id {
                        for a in addrs {
                            let _ = l.net.dial(a.clone()).await;
                        }
                    }
                }
            }
            ev("heal", "", String::new());
        }
    }
}

/// Notes every miner newly banned by a live validator's ban list.
#[allow(clippy::too_many_arguments)]
fn observe_bans(
    peers: &[SimPeer],
    clock: &ChainClock,
    h: u64,
    run0: Instant,
    by_id: &BTreeMap<String, usize>,
    tally: &Arc<Mutex<Tally>>,
    banned_at: &mut BTreeMap<String, u64>,
    events: &mut Vec<EventRow>,
) {
    let height = clock.height();
    for p in peers.iter().filter(|p| p.role != Role::Miner) {
        let Some(l) = &p.live else { continue };
        let now_banned = l.audit.bans.lock().map(|b| b.banned(height)).unwrap_or_default();
        for id in now_banned {
            let Some(&i) = by_id.get(&id) else { continue };
            let m = &peers[i];
            if banned_at.contains_key(&m.name) {
                continue;
            }
            banned_at.insert(m.name.clone(), h);
            let first = tally.lock().ok().and_then(|t| t.first_served_block.get(&m.name).copied());
            events.push(EventRow {
                height: h,
                wall_s: run0.elapsed().as_secs_f64(),
                kind: "ban".into(),
                peer: m.name.clone(),
                behaviour: m.behaviour.clone(),
                detection_blocks: first.map(|f| h.saturating_sub(f)),
                detail: format!("seen in {}'s ban list", p.name),
            });
        }
    }
}

/// The first live validator with a ledger.
fn reader(peers: &[SimPeer]) -> Option<&brainmesh_actors::rollup::LedgerHandle> {
    peers.iter().filter(|p| p.role == Role::Validator).find_map(|p| p.live.as_ref().and_then(|l| l.ledger.as_ref()))
}

/// Ids of the receipts the gateways countersigned (read at every sample: ids only).
fn countersigned(peers: &[SimPeer]) -> BTreeSet<String> {
    peers
        .iter()
        .filter(|p| p.role == Role::Gateway)
        .filter_map(|p| p.live.as_ref())
        .flat_map(|l| l.receipts.all().into_iter().map(|r| r.id()))
        .collect()
}

/// Receipts the gateways countersigned, by id, with the block they name (read once, at the
/// end: it parses every receipt).
fn countersigned_at(peers: &[SimPeer]) -> BTreeMap<String, u64> {
    peers
        .iter()
        .filter(|p| p.role == Role::Gateway)
        .filter_map(|p| p.live.as_ref())
        .flat_map(|l| l.receipts.all())
        .map(|r| {
            let height = serde_json::from_str::<brainmesh_actors::receipt::Receipt>(&r.body)
                .map(|b| b.block_height)
                .unwrap_or(0);
            (r.id(), height)
        })
        .collect()
}

/// A receipt countersigned this close to the last final block may simply not be final yet when
/// the run stops: it is counted as pending at the end, not lost.
const FINALITY_GRACE_BLOCKS: u64 = 5;

/// Emission per role and the adversarial miners' part, from the settlements.
fn emission_split(
    peers: &[SimPeer],
    report: &brainmesh_actors::rollup::LedgerReport,
) -> (u128, u128, u128, u128, u128) {
    let role: BTreeMap<&str, (&Role, bool)> =
        peers.iter().map(|p| (p.peer_id.as_str(), (&p.role, p.is_cheater()))).collect();
    let (mut issuance, mut miners, mut validators, mut owners, mut adv) = (0, 0, 0, 0, 0);
    for s in &report.settlements {
        issuance += s.issuance;
        for (acct, amount) in &s.emission_credits {
            match role.get(acct.as_str()) {
                Some((Role::Miner, bad)) => {
                    miners += amount;
                    if *bad {
                        adv += amount;
                    }
                }
                Some((Role::Validator, _)) => validators += amount,
                _ => owners += amount,
            }
        }
    }
    (issuance, miners, validators, owners, adv)
}

async fn block_row(peers: &[SimPeer], h: u64, run0: Instant, tally: &Arc<Mutex<Tally>>) -> BlockRow {
    let cs = countersigned(peers);
    let mut row = BlockRow {
        height: h,
        wall_s: run0.elapsed().as_secs_f64(),
        countersigned: cs.len() as u64,
        peers_up: peers.iter().filter(|p| p.is_up()).count() as u64,
        ..Default::default()
    };
    if let Ok(t) = tally.lock() {
        row.requests_done = t.requests.iter().filter(|r| r.outcome == "ok").count() as u64;
        row.requests_failed = t.requests.len() as u64 - row.requests_done;
    }
    if let Some(report) = match reader(peers) {
        Some(l) => l.report().await,
        None => None,
    } {
        let final_ids: BTreeSet<&str> = report.receipts.iter().map(|(_, l)| l.receipt_id.as_str()).collect();
        row.final_height = report.last_final_height;
        row.finalised = cs.iter().filter(|id| final_ids.contains(id.as_str())).count() as u64;
        row.pending = row.countersigned - row.finalised;
        let (i, m, v, o, a) = emission_split(peers, &report);
        (row.issuance, row.emission_miners, row.emission_validators, row.emission_owners, row.emission_adversarial) =
            (i, m, v, o, a);
    }
    row
}

async fn peer_rows_at(
    peers: &[SimPeer],
    epoch: u64,
    h: u64,
    tally: &Arc<Mutex<Tally>>,
    banned_at: &BTreeMap<String, u64>,
) -> Vec<PeerRow> {
    let Some(ledger) = reader(peers) else { return vec![] };
    let Some(report) = ledger.report().await else { return vec![] };
    let weights = peers
        .iter()
        .filter(|p| p.role == Role::Validator)
        .find_map(|p| p.live.as_ref())
        .and_then(|l| l.audit.weights.lock().ok().map(|w| w.clone()))
        .unwrap_or_default();
    let last = report.settlements.last();
    let served = tally.lock().map(|t| t.served_by.clone()).unwrap_or_default();
    // Yuma over the latest epoch revealed, with the validators' active stakes of the last
    // settlement (before the first one: equal stakes, as every scenario gives them).
    let latest_epoch = weights.iter().map(|w| w.epoch).max().unwrap_or(0);
    let latest: Vec<brainmesh_ledger::audit::WeightVector> =
        weights.iter().filter(|w| w.epoch == latest_epoch).cloned().collect();
    let stakes: BTreeMap<String, u128> = peers
        .iter()
        .filter(|p| p.role == Role::Validator)
        .map(|p| {
            let settled = last.and_then(|s| {
                s.consensus.iter().find_map(|b| {
                    let i = b.validators.iter().position(|v| *v == p.peer_id)?;
                    b.validator_stake.get(i).copied()
                })
            });
            (p.peer_id.clone(), settled.unwrap_or(if last.is_none() { 1 } else { 0 }))
        })
        .collect();
    let miner_ids: Vec<String> = peers.iter().filter(|p| p.role == Role::Miner).map(|p| p.peer_id.clone()).collect();
    let yuma = super::yuma::yuma_columns(&latest, &stakes, &miner_ids);
    let mut emission: BTreeMap<&str, u128> = BTreeMap::new();
    for s in &report.settlements {
        for (a, v) in &s.emission_credits {
            *emission.entry(a.as_str()).or_default() += v;
        }
    }
    peers
        .iter()
        .map(|p| {
            let id = p.peer_id.as_str();
            let mut row = PeerRow {
                epoch,
                height: h,
                peer: p.name.clone(),
                role: format!("{:?}", p.role).to_lowercase(),
                behaviour: p.behaviour.clone(),
                emission: emission.get(id).copied().unwrap_or(0),
                balance: report.balances.get(id).copied().unwrap_or(0),
                tasks_served: served.get(&p.name).copied().unwrap_or(0),
                banned: banned_at.contains_key(&p.name),
                up: p.is_up(),
                ..Default::default()
            };
            if let Some(s) = last {
                for b in &s.consensus {
                    if let Some(i) = b.miners.iter().position(|m| m == id) {
                        row.incentive_ppb = b.incentive.get(i).copied().unwrap_or(0);
                    }
                    if let Some(i) = b.validators.iter().position(|v| v == id) {
                        row.dividends_ppb = b.dividends.get(i).copied().unwrap_or(0);
                        row.stake = b.validator_stake.get(i).copied().unwrap_or(0);
                    }
                }
            }
            if let Some((t, c)) = yuma.miners.get(id) {
                (row.trust_ppb, row.consensus_ppb) = (*t, *c);
            }
            if let Some(t) = yuma.validators.get(id) {
                row.trust_ppb = *t;
            }
            if p.role == Role::Miner && !weights.is_empty() {
                let latest = weights.iter().map(|w| w.epoch).max().unwrap_or(0);
                let vs: Vec<_> = weights.iter().filter(|w| w.epoch == latest).collect();
                let sum: u64 =
                    vs.iter().map(|w| w.weights.iter().find(|(m, _)| m == id).map(|(_, x)| *x).unwrap_or(0)).sum();
                row.weight = sum as f64 / vs.len().max(1) as f64 / 1e9;
            }
            row
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    sc: &Scenario,
    sha: &str,
    out: &Path,
    peers: &[SimPeer],
    tally: &Arc<Mutex<Tally>>,
    mut blocks: Vec<BlockRow>,
    peer_rows: Vec<PeerRow>,
    mut events: Vec<EventRow>,
    banned_at: &BTreeMap<String, u64>,
    (wall0, formation_s): (Instant, f64),
    max_stall: u64,
) -> Result<Summary, SimError> {
    let requests = tally.lock().map(|t| t.requests.clone()).unwrap_or_default();
    let cs_at = countersigned_at(peers);
    let cs: BTreeSet<String> = cs_at.keys().cloned().collect();
    // Every live validator's final report: they must agree; the first one is read.
    let mut reports = vec![];
    for p in peers.iter().filter(|p| p.role == Role::Validator) {
        if let Some(l) = p.live.as_ref().and_then(|l| l.ledger.as_ref()) {
            if let Some(r) = l.report().await {
                reports.push(r);
            }
        }
    }
    let report = reports.first().cloned();
    let validators_agree = reports
        .windows(2)
        .all(|w| w[0].last_final_height != w[1].last_final_height || w[0].state_digest == w[1].state_digest)
        && !reports.is_empty();
    let mut s = Summary {
        scenario: sc.name.clone(),
        scenario_sha256: sha.to_string(),
        seed: sc.seed,
        commit: commit(),
        peers: peers.len(),
        validators: sc.peers.validators,
        miners: peers.iter().filter(|p| p.role == Role::Miner).count(),
        adversarial_miners: peers.iter().filter(|p| p.is_cheater()).count(),
        gateways: sc.peers.gateways,
        blocks: sc.chain.blocks,
        block_time_ms: sc.chain.block_time_ms,
        speedup: sc.chain.speedup,
        requests: requests.len() as u64,
        requests_ok: requests.iter().filter(|r| r.outcome == "ok").count() as u64,
        receipts_countersigned: cs.len() as u64,
        max_finality_stall_blocks: max_stall,
        faults: sc.faults.len(),
        validators_agree,
        ..Default::default()
    };
    s.requests_failed = s.requests - s.requests_ok;
    let ok: Vec<&RequestRow> = requests.iter().filter(|r| r.outcome == "ok").collect();
    let lat: Vec<f64> = ok.iter().map(|r| r.latency_ms).collect();
    let ttft: Vec<f64> = ok.iter().map(|r| r.ttft_ms).collect();
    s.latency_p50_ms = record::quantile(&lat, 0.5);
    s.latency_p95_ms = record::quantile(&lat, 0.95);
    s.ttft_p50_ms = record::quantile(&ttft, 0.5);
    if let Some(r) = &report {
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, l) in &r.receipts {
            *seen.entry(l.receipt_id.as_str()).or_default() += 1;
        }
        s.receipts_double_counted = seen.values().filter(|n| **n > 1).count() as u64;
        s.receipts_finalised = cs.iter().filter(|id| seen.contains_key(id.as_str())).count() as u64;
        s.last_final_height = r.last_final_height;
        let last = r.last_final_height.unwrap_or(0);
        for (id, at) in &cs_at {
            let at = *at;
            if seen.contains_key(id.as_str()) {
                continue;
            }
            if at + FINALITY_GRACE_BLOCKS > last {
                s.receipts_pending_at_end += 1;
            } else {
                s.receipts_lost += 1;
                events.push(EventRow {
                    height: at,
                    kind: "lost".into(),
                    detail: format!("receipt {id} of block {at} in no final block (last final {last})"),
                    ..Default::default()
                });
            }
        }
        s.settlements = r.settlements.len() as u64;
        s.minted = r.settlements.iter().map(|x| x.minted).sum();
        s.not_minted = r.settlements.iter().map(|x| x.not_minted).sum();
        s.emission_equals_issuance = r
            .settlements
            .iter()
            .all(|x| x.emission_credits.values().sum::<u128>() == x.minted && x.minted + x.not_minted == x.issuance);
        let mut per: BTreeMap<String, (u128, u64)> = BTreeMap::new();
        for p in peers.iter().filter(|p| p.role != Role::Gateway) {
            let e: u128 = r.settlements.iter().filter_map(|x| x.emission_credits.get(&p.peer_id)).sum();
            let k = per.entry(format!("{}/{}", format!("{:?}", p.role).to_lowercase(), p.behaviour)).or_default();
            k.0 += e;
            k.1 += 1;
        }
        s.emission_per_peer = per.into_iter().map(|(k, (e, n))| (k, e as f64 / n.max(1) as f64)).collect();
        let (i, m, _, _, a) = emission_split(peers, r);
        s.issuance = i;
        s.emission_miners = m;
        s.emission_adversarial_miners = a;
        s.adversarial_emission_share = if m > 0 { a as f64 / m as f64 } else { 0.0 };
    }
    if let Some(last) = blocks.last_mut() {
        last.lost = s.receipts_lost;
    }
    let sybils: BTreeSet<&str> = peers.iter().filter(|p| p.is_sybil()).map(|p| p.peer_id.as_str()).collect();
    s.sybils = sybils.len();
    if let Some(l) = peers.iter().filter(|p| p.role == Role::Gateway).find_map(|p| p.live.as_ref()) {
        if let Some(snap) = l.membership.roster().await {
            s.sybils_admitted = snap
                .brains
                .iter()
                .flat_map(|b| b.members.iter())
                .filter(|m| m.admitted && sybils.contains(m.peer_id.as_str()))
                .count();
        }
    }
    let served = tally.lock().map(|t| t.served_by.clone()).unwrap_or_default();
    s.tasks_to_sybils = peers.iter().filter(|p| p.is_sybil()).map(|p| served.get(&p.name).copied().unwrap_or(0)).sum();
    let cheaters: Vec<&SimPeer> = peers.iter().filter(|p| p.is_cheater()).collect();
    s.cheaters = cheaters.len();
    s.cheaters_banned = cheaters.iter().filter(|p| banned_at.contains_key(&p.name)).count();
    s.honest_banned = peers
        .iter()
        .filter(|p| p.role == Role::Miner && p.behaviour == "honest" && banned_at.contains_key(&p.name))
        .count();
    let det: Vec<f64> = events.iter().filter_map(|e| e.detection_blocks).map(|d| d as f64).collect();
    s.mean_detection_blocks = (!det.is_empty()).then(|| det.iter().sum::<f64>() / det.len() as f64);
    s.wall_s = wall0.elapsed().as_secs_f64();
    s.formation_s = formation_s;
    s.peak_rss_mib = record::peak_rss_mib();
    s.messages = peers.iter().map(|p| p.messages_received()).sum();
    s.messages_per_s = s.messages as f64 / s.wall_s.max(1e-9);
    for p in peers {
        for (k, n) in p.messages_by_kind() {
            *s.messages_by_kind.entry(k).or_default() += n;
        }
    }

    let w = |name: &str| out.join(name);
    record::write_csv(&w("blocks.csv"), &blocks, &BlockRow::default()).map_err(io(out))?;
    record::write_csv(&w("peers.csv"), &peer_rows, &PeerRow::default()).map_err(io(out))?;
    let mut requests = requests;
    requests.sort_by_key(|r| r.seq);
    record::write_csv(&w("requests.csv"), &requests, &RequestRow::default()).map_err(io(out))?;
    record::write_csv(&w("events.csv"), &events, &EventRow::default()).map_err(io(out))?;
    let json = serde_json::to_string_pretty(&s).unwrap_or_default();
    std::fs::write(w("summary.json"), json).map_err(io(out))?;
    if sc.output.plots {
        super::plot::draw_all(out, &blocks, &peer_rows, &requests)
            .map_err(|e| SimError::Io { path: out.to_path_buf(), source: std::io::Error::other(e) })?;
    }
    Ok(s)
}

/// The source revision, where the binary runs inside its checkout.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
