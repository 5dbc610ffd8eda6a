//! Helpers for tests that drive the real `brainmesh` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_brainmesh");

/// A `brainmesh node` child process with its own data dir; killed on drop.
pub struct Proc {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub http: String,
    pub peer_id: String,
    pub addr: String,
}

pub fn init(dir: &Path, role: &str) -> String {
    let out =
        Command::new(BIN).args(["init", "--role", role, "--data-dir"]).arg(dir).output().expect("run brainmesh init");
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Starts a node from `<dir>/config.toml` with fast heartbeats and ephemeral ports, and waits
/// until it has written its node.json.
pub fn start(dir: &Path, bootstrap: Option<&str>, env: &[(&str, &str)]) -> Proc {
    let _ = std::fs::remove_file(dir.join("node.json"));
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--config"])
        .arg(dir.join("config.toml"))
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"])
        .env("BRAINMESH_NETWORK_HEARTBEAT_INTERVAL_MS", "300")
        .env("BRAINMESH_NETWORK_OFFLINE_AFTER_HEARTBEATS", "4")
        .env("BRAINMESH_NETWORK_GOSSIP_HEARTBEAT_MS", "200")
        .env("BRAINMESH_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("node.log")).expect("log file")));
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn brainmesh node");
    let file = dir.join("node.json");
    let v = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&file).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok())
    })
    .unwrap_or_else(|| {
        panic!(
            "node in {} did not start: {}",
            dir.display(),
            std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
        )
    });
    Proc {
        child: Some(child),
        dir: dir.to_path_buf(),
        http: v["http"].as_str().unwrap_or_default().to_string(),
        peer_id: v["peer_id"].as_str().unwrap_or_default().to_string(),
        addr: v["listen_addrs"][0].as_str().unwrap_or_default().to_string(),
    }
}

impl Proc {
    pub fn status(&self) -> Option<Value> {
        get_json(&format!("http://{}/status", self.http))
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn get_json(url: &str) -> Option<Value> {
    let mut resp = ureq::get(url).call().ok()?;
    let body = resp.body_mut().read_to_string().ok()?;
    serde_json::from_str(&body).ok()
}

pub fn get_text(url: &str) -> Option<String> {
    let mut resp = ureq::get(url).call().ok()?;
    resp.body_mut().read_to_string().ok()
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (peer id → (status, admitted)) of a node's roster for Brain `brain`.
pub fn roster(status: &Value, brain: u64) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for b in status["roster"].as_array().into_iter().flatten() {
        if b["brain"].as_u64() != Some(brain) {
            continue;
        }
        for m in b["members"].as_array().into_iter().flatten() {
            out.push((
                m["peer_id"].as_str().unwrap_or_default().to_string(),
                m["status"].as_str().unwrap_or_default().to_string(),
                m["admitted"].as_bool().unwrap_or(false),
            ));
        }
    }
    out.sort();
    out
}

/// The SmolLM2 GGUF `make setup` puts in the cache.
pub fn smollm() -> PathBuf {
    let cache = std::env::var("BRAINMESH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"));
    cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Polls an async condition every 100 ms; panics naming `what` after `secs`.
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut f: impl FnMut() -> F) {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs blocking work (the child process helpers) off the actix thread.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking helper panicked")
}

/// Runs `brainmesh ARGS`, asserts success, parses its stdout as JSON.
pub fn cli(args: &[&str]) -> Value {
    let out = Command::new(BIN).args(args).output().expect("run brainmesh");
    assert!(
        out.status.success(),
        "brainmesh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A placeholder for a `Proc` moved out (to a blocking helper).
pub fn taken(dir: &Path) -> Proc {
    Proc { child: None, dir: dir.to_path_buf(), http: String::new(), peer_id: String::new(), addr: String::new() }
}

/// Sets `[section] key = value` entries in `<dir>/config.toml`.
pub fn patch_config(dir: &Path, section: &str, entries: &[(&str, toml::Value)]) {
    let path = dir.join("config.toml");
    let mut v: toml::Value = toml::from_str(&std::fs::read_to_string(&path).expect("config.toml")).expect("TOML");
    let t = v.as_table_mut().expect("table");
    let s = t.entry(section).or_insert_with(|| toml::Value::Table(Default::default()));
    for (k, val) in entries {
        s.as_table_mut().expect("section table").insert(k.to_string(), val.clone());
    }
    std::fs::write(&path, toml::to_string(&v).expect("TOML out")).expect("write config.toml");
}

/// Writes a binary validator's `[ledger]` section and `[chain]` timing into its config.toml.
pub fn write_ledger_config(dir: &Path, genesis_ms: u64, block_ms: u64, ledger: &brainmesh::config::LedgerSection) {
    let t = toml::Value::try_from(ledger).expect("ledger section as TOML");
    let entries: Vec<(String, toml::Value)> =
        t.as_table().expect("table").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let entries: Vec<(&str, toml::Value)> = entries.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    patch_config(dir, "ledger", &entries);
    patch_config(
        dir,
        "chain",
        &[
            ("genesis_ms", toml::Value::Integer(genesis_ms as i64)),
            ("block_time_ms", toml::Value::Integer(block_ms as i64)),
        ],
    );
}

/// An in-process peer's config for the ledger tests: fast heartbeats, SmolLM2 on one thread for
/// miners, the shared chain timing and `[ledger]` section.
pub fn ledger_node_config(
    dir: &Path,
    role: brainmesh_actors::protocols::gossip::Role,
    bootstrap: Vec<String>,
    genesis_ms: u64,
    block_ms: u64,
    ledger: &brainmesh::config::LedgerSection,
) -> brainmesh::config::NodeConfig {
    let mut cfg = brainmesh::config::loopback(role, dir, bootstrap).expect("loopback config");
    cfg.network.heartbeat_interval_ms = 200;
    cfg.network.gossip_heartbeat_ms = 100;
    cfg.miner.model = smollm();
    cfg.miner.threads = 1;
    cfg.tasks.chunk_timeout_ms = 10_000;
    cfg.chain.genesis_ms = genesis_ms;
    cfg.chain.block_time_ms = block_ms;
    cfg.ledger = ledger.clone();
    cfg
}

/// Runs one task; the miner that served it, None if it failed.
pub async fn serving_miner(
    tasks: &impl brainmesh_actors::task::TaskService,
    spec: brainmesh_actors::task::TaskSpec,
) -> Option<String> {
    use brainmesh_actors::task::TaskEvent;
    let mut rx = tasks.submit(spec).await.ok()?;
    let mut miner = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            TaskEvent::Started { miner: m, .. } => miner = Some(m),
            TaskEvent::Done { .. } => return miner,
            TaskEvent::Failed(_) => return None,
            TaskEvent::Token { .. } | TaskEvent::Embeddings { .. } => {}
        }
    }
    None
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// [`cli`] off the actix thread.
pub async fn cli_async(args: Vec<String>) -> Value {
    blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&a)
    })
    .await
}

/// `brainmesh ARGS --data-dir DIR --node NODE` off the actix thread: a ledger transaction signed
/// with the identity in DIR and submitted through NODE.
pub async fn cli_signed(args: &[&str], dir: &Path, node: &str) -> Value {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--data-dir".into(), dir.to_string_lossy().into(), "--node".into(), node.into()]);
    cli_async(v).await
}
