//! Node configuration, layered like Forest's: TOML file → `BRAINMESH_*` environment → flags.
//!
//! Every field can be overridden by an environment variable named `BRAINMESH_` + the field's
//! path in upper case joined by `_`, e.g. `BRAINMESH_HTTP_LISTEN=127.0.0.1:9000`,
//! `BRAINMESH_NETWORK_BOOTSTRAP=/ip4/1.2.3.4/tcp/4001/p2p/12D3…,/ip4/…` (comma-separated for
//! lists), `BRAINMESH_BRAIN_POLICY_MAX_MINERS=8`.

use brainmesh_ledger::BrainId;
use std::path::{Path, PathBuf};

use brainmesh_actors::protocols::gossip::Role;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var} is not valid for this field: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory holding the identity keys, the sled database and node.json.
    pub data_dir: PathBuf,
    /// Roles this peer plays.
    pub roles: Vec<Role>,
    /// The Brain this peer registers with.
    pub brain: BrainId,
    /// Models this peer serves (miners) or audits (validators).
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub brain_policy: BrainPolicyConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub miner: MinerSection,
    /// Validator role: re-checking miners' work (proof of inference).
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub tasks: TasksConfig,
    #[serde(default)]
    pub chain: ChainConfig,
    /// Gateway role: the OpenAI-compatible HTTP API.
    #[serde(default)]
    pub gateway: crate::gateway::GatewayConfig,
    /// Validator role: the rollup ledger (docs/ledger.md).
    #[serde(default)]
    pub ledger: LedgerSection,
}

/// The rollup ledger kept by validators: genesis, prices, batching and settlement (docs/ledger.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// Validators keep the ledger (batch, vote, settle); other roles never do.
    pub enabled: bool,
    /// No batch is final while fewer validators of the Brain are known.
    pub min_validators: usize,
    /// Wait between proposing a block's batch and voting on it (0: 2/5 of the block time).
    pub vote_delay_ms: u64,
    /// Receipts (and transactions) per batch at most; the rest wait for the next block.
    pub max_batch_items: usize,
    /// Blocks per settlement period (8640 = one day of 10 s blocks).
    pub settlement_interval_blocks: u64,
    /// How collected fees are divided: "like_emission" (25% owner, the rest by the Brain's
    /// miner share) or "miner_only" (each miner gets what its receipts collected).
    pub fee_split: String,
    /// Account owning the reserved Brains (#0-#6, #47) at genesis.
    pub based_labs: String,
    /// Genesis balances in base units (10^9 per token), written once when the ledger is created.
    pub balances: std::collections::BTreeMap<String, u64>,
    /// Validator stake for finality, by peer id; empty: stake from the ledger, else equal shares.
    pub validator_stakes: std::collections::BTreeMap<String, u64>,
    /// Prices in base units per 1,000 prompt / completion tokens.
    pub prices: Vec<PriceEntry>,
    /// Every account is debited only through gateways it authorised (`brainmesh account
    /// authorize`); false: only accounts that signed an allowance are. A consensus rule: every
    /// validator of the Brain must set it alike.
    pub require_authorization: bool,
    /// Miners (peer ids) registered with the Brain at genesis, their fee paid outside the ledger
    /// like the genesis balances (paid admission admits them from block 0).
    pub genesis_miners: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub model: String,
    pub prompt_per_1k: u64,
    pub completion_per_1k: u64,
    pub context: u64,
}

impl Default for LedgerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            min_validators: 1,
            vote_delay_ms: 0,
            max_batch_items: 800,
            settlement_interval_blocks: 8_640,
            fee_split: "like_emission".into(),
            based_labs: "based-labs".into(),
            balances: Default::default(),
            validator_stakes: Default::default(),
            prices: vec![PriceEntry {
                model: "smollm2-135m-instruct".into(),
                prompt_per_1k: 100_000,
                completion_per_1k: 200_000,
                context: 8_192,
            }],
            require_authorization: false,
            genesis_miners: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerSection {
    /// The model this miner serves: a GGUF file or a Hugging Face directory.
    pub model: PathBuf,
    /// The id it is advertised and requested under (`model` in API requests).
    pub model_id: String,
    /// "auto" (CUDA when present, else CPU), "cpu", "cuda" or "cuda:N".
    pub device: String,
    /// LibTorch CPU threads (0: LibTorch's default, one per core).
    pub threads: usize,
    /// Tasks waiting beyond this are refused; the gateway tries another miner.
    pub max_queue: u32,
    /// Prompt positions the prefix KV cache keeps (about 46 KB each for SmolLM2-135M in fp32);
    /// 0 turns it off.
    pub prefix_cache_tokens: usize,
    /// Encrypted mode: a head directory (`head.json` + `head.safetensors`, for example
    /// `models/assets/fhe-head`) this miner evaluates on clients' TFHE ciphertexts; empty: none.
    pub fhe_head: PathBuf,
    /// The hash this miner declares for its model; empty: the sha256 of `model`. Set it when
    /// serving a converted copy (another file format) of a published model: validators check
    /// the outputs against the declared model, so a copy that is not numerically that model
    /// fails their audits.
    pub model_hash: String,
    /// Blocks a task's transcript is kept for validators to fetch (default 8640: one day).
    pub transcript_blocks: u64,
    /// Research and testing only: "honest" (default), or a cheat of the audit matrix that
    /// validators must catch: "edited", "replayed", "random", "intermittent:<honest share>".
    pub behaviour: String,
    /// An embedding model served beside the language model for `/v1/embeddings`: a sentence-
    /// transformers MiniLM directory (`config.json`, `model.safetensors`, `tokenizer.json`; `make
    /// setup` installs all-MiniLM-L6-v2 in `.cache/models/all-MiniLM-L6-v2`); empty: none.
    pub embedding_model: PathBuf,
    /// The id the embedding model is advertised and requested under.
    pub embedding_model_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The validator's copy of the model it audits (CPU-only is fine: one forward pass per
    /// check); empty: this validator does not audit (it still keeps the ban list).
    pub model: PathBuf,
    /// LibTorch CPU threads for re-checks (0: LibTorch's default).
    pub threads: usize,
    /// Audit this fraction of receipts whatever the spot-check inequality says (tests, demos);
    /// 0: max(gain / (slash + fee), 1%), at least 5% for miners with < 50 audited tasks.
    pub rate: f64,
    /// Stake at risk, in compute units' worth, in the spot-check inequality.
    pub slash_units: f64,
    /// Fingerprint tolerances (calibrated for SmolLM2-135M Q4_1 on CPU; docs/proof-of-inference.md).
    pub max_exp_mismatches: u32,
    pub max_mant_err_mean: f64,
    pub max_mant_err_median: f64,
    /// Blocks per weight epoch, and the delay between a weight commit and its reveal.
    pub epoch_blocks: u64,
    pub reveal_delay_blocks: u64,
    /// How long to wait for a miner's transcript.
    pub fetch_timeout_ms: u64,
    /// A known-answer (greedy) task through the mesh every this many blocks, at a random phase
    /// (0: none).
    pub quality_every_blocks: u64,
    /// Tokens a known-answer task asks for.
    pub quality_max_tokens: u32,
    /// Research and testing only: "honest" (default), "copier" (audits nothing, commits the
    /// mean of the weights others revealed last) or "collude:<miner peer id>,…" (audits
    /// nothing, gives all its weight to those miners).
    pub behaviour: String,
}

impl Default for AuditSection {
    fn default() -> Self {
        let tol = brainmesh_actors::models::proof::Tolerance::default();
        Self {
            model: PathBuf::new(),
            threads: 0,
            rate: 0.0,
            slash_units: 100_000.0,
            max_exp_mismatches: tol.max_exp_mismatches,
            max_mant_err_mean: tol.max_mant_err_mean,
            max_mant_err_median: tol.max_mant_err_median,
            epoch_blocks: 360,
            reveal_delay_blocks: 10,
            fetch_timeout_ms: 20_000,
            quality_every_blocks: 30,
            quality_max_tokens: 16,
            behaviour: "honest".into(),
        }
    }
}

impl Default for MinerSection {
    fn default() -> Self {
        Self {
            model: PathBuf::from(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            model_id: "smollm2-135m-instruct".into(),
            device: "auto".into(),
            threads: 0,
            max_queue: 64,
            prefix_cache_tokens: 4096,
            fhe_head: PathBuf::new(),
            model_hash: String::new(),
            transcript_blocks: 8640,
            behaviour: "honest".into(),
            embedding_model: PathBuf::new(),
            embedding_model_id: "all-minilm-l6-v2".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// Gateway: longest silence between result chunks before the task moves to another miner.
    pub chunk_timeout_ms: u64,
    /// Gateway: longest wait for the first chunk (queueing + prefill).
    pub first_chunk_timeout_ms: u64,
    /// Gateway: miners tried per task at most.
    pub max_attempts: u32,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self { chunk_timeout_ms: 10_000, first_chunk_timeout_ms: 120_000, max_attempts: 3 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// Genesis time (Unix ms); block height = (now - genesis) / block time.
    pub genesis_ms: u64,
    /// Block time in ms (whitepaper: 10 s).
    pub block_time_ms: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        // 2026-01-01T00:00:00Z
        Self { genesis_ms: 1_767_225_600_000, block_time_ms: 10_000 }
    }
}

impl ChainConfig {
    /// The node's chain clock on the wall clock (a simulator builds its own over a virtual one).
    pub fn clock(&self) -> brainmesh_ledger::ChainClock {
        brainmesh_ledger::ChainClock::wall(self.genesis_ms, self.block_time_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Multiaddrs to listen on (port 0 picks a free port).
    pub listen: Vec<String>,
    /// Multiaddrs of bootstrap peers, ideally with a `/p2p/<peer id>` suffix.
    pub bootstrap: Vec<String>,
    /// Membership heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// A peer silent for this many heartbeats is marked offline.
    pub offline_after_heartbeats: u32,
    /// gossipsub's own mesh-maintenance heartbeat.
    pub gossip_heartbeat_ms: u64,
    /// Stop dialling discovered peers once this many are connected.
    pub max_peers: usize,
    /// Emulated inbound link, like `tc netem` (all 0: off): one-way latency and uniform jitter
    /// per message (µs), gossip loss (0..1), bandwidth (kbit/s).
    pub emulate_latency_us: u64,
    pub emulate_jitter_us: u64,
    pub emulate_loss: f64,
    pub emulate_bandwidth_kbps: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/4001".into()],
            bootstrap: vec![],
            heartbeat_interval_ms: 5_000,
            offline_after_heartbeats: 3,
            gossip_heartbeat_ms: 1_000,
            max_peers: 48,
            emulate_latency_us: 0,
            emulate_jitter_us: 0,
            emulate_loss: 0.0,
            emulate_bandwidth_kbps: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the status/metrics HTTP server (port 0 picks a free port; empty: no server,
    /// as for the simulator's in-process peers).
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9090".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainPolicyConfig {
    pub max_validators: usize,
    pub max_miners: usize,
    /// Registration fee in base units; peers already registered keep their place if it rises.
    pub registration_fee: u64,
    /// Paid admission: a miner is admitted only once its `Register` transaction (paying the
    /// Brain's fee on the ledger, `brainmesh register`) is final; false: the fee declared in the
    /// signed registration record is trusted (a local mesh).
    pub paid_admission: bool,
}

impl Default for BrainPolicyConfig {
    fn default() -> Self {
        let p = brainmesh_actors::roster::BrainPolicy::default();
        Self {
            max_validators: p.max_validators,
            max_miners: p.max_miners,
            registration_fee: p.registration_fee,
            paid_admission: p.paid_admission,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "brainmesh=debug,libp2p=info".
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".into() }
    }
}

impl NodeConfig {
    /// Reads a TOML file and applies `BRAINMESH_*` environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut value: toml::Value =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        apply_env(&mut value, std::env::vars())?;
        let cfg: NodeConfig = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.roles.is_empty() {
            return Err(ConfigError::Invalid("`roles` must name at least one of miner, validator, gateway".into()));
        }
        if self.network.heartbeat_interval_ms == 0 || self.network.gossip_heartbeat_ms == 0 {
            return Err(ConfigError::Invalid("heartbeat intervals must be > 0".into()));
        }
        for a in self.network.listen.iter().chain(&self.network.bootstrap) {
            a.parse::<libp2p::Multiaddr>()
                .map_err(|e| ConfigError::Invalid(format!("`{a}` is not a multiaddr: {e}")))?;
        }
        self.miner.device.parse::<brainmesh_actors::models::DevicePref>().map_err(ConfigError::Invalid)?;
        self.miner.behaviour.parse::<brainmesh_actors::adversary::MinerBehaviour>().map_err(ConfigError::Invalid)?;
        self.audit
            .behaviour
            .parse::<brainmesh_actors::adversary::ValidatorBehaviour>()
            .map_err(ConfigError::Invalid)?;
        if !["like_emission", "miner_only"].contains(&self.ledger.fee_split.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "ledger.fee_split `{}`: expected like_emission or miner_only",
                self.ledger.fee_split
            )));
        }
        if self.ledger.settlement_interval_blocks == 0 {
            return Err(ConfigError::Invalid("ledger.settlement_interval_blocks must be > 0".into()));
        }
        if self.chain.block_time_ms == 0 {
            return Err(ConfigError::Invalid("chain.block_time_ms must be > 0".into()));
        }
        if !self.http.listen.is_empty() {
            self.http
                .listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| ConfigError::Invalid(format!("http.listen `{}`: {e}", self.http.listen)))?;
        }
        if self.roles.contains(&Role::Gateway) {
            self.gateway.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if !self.gateway.listen.is_empty() {
                self.gateway
                    .listen
                    .parse::<std::net::SocketAddr>()
                    .map_err(|e| ConfigError::Invalid(format!("gateway.listen `{}`: {e}", self.gateway.listen)))?;
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Applies `BRAINMESH_<PATH>` variables to the matching leaf of `value` (only known fields:
/// a variable that names no field is ignored, so unrelated BRAINMESH_* variables are safe).
pub fn apply_env(value: &mut toml::Value, vars: impl Iterator<Item = (String, String)>) -> Result<(), ConfigError> {
    // Fill in defaults for absent sections so their fields can be overridden too.
    let defaults = toml::Value::try_from(NodeConfig {
        data_dir: PathBuf::new(),
        roles: vec![],
        brain: 0,
        models: vec![],
        network: NetworkConfig::default(),
        http: HttpConfig::default(),
        brain_policy: BrainPolicyConfig::default(),
        log: LogConfig::default(),
        miner: MinerSection::default(),
        audit: AuditSection::default(),
        tasks: TasksConfig::default(),
        chain: ChainConfig::default(),
        gateway: crate::gateway::GatewayConfig::default(),
        ledger: LedgerSection::default(),
    })
    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut paths = Vec::new();
    leaf_paths(&defaults, &mut Vec::new(), &mut paths);
    for (var, raw) in vars {
        let Some(name) = var.strip_prefix("BRAINMESH_") else { continue };
        let name = name.to_ascii_lowercase();
        let Some(path) = paths.iter().find(|p| p.join("_") == name) else { continue };
        let template = get_path(&defaults, path);
        let new = parse_env_value(&raw, template).map_err(|message| ConfigError::Env { var: var.clone(), message })?;
        set_path(value, path, new);
    }
    Ok(())
}

fn leaf_paths(v: &toml::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                prefix.push(k.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn get_path<'a>(v: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn set_path(v: &mut toml::Value, path: &[String], new: toml::Value) {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        let Some(table) = cur.as_table_mut() else { return };
        if i + 1 == path.len() {
            table.insert(k.clone(), new);
            return;
        }
        cur = table.entry(k.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
}

fn parse_env_value(raw: &str, template: Option<&toml::Value>) -> Result<toml::Value, String> {
    use toml::Value;
    Ok(match template {
        Some(Value::Integer(_)) => Value::Integer(raw.trim().parse().map_err(|e| format!("expected an integer: {e}"))?),
        Some(Value::Boolean(_)) => Value::Boolean(raw.trim().parse().map_err(|e| format!("expected true/false: {e}"))?),
        Some(Value::Float(_)) => Value::Float(raw.trim().parse().map_err(|e| format!("expected a number: {e}"))?),
        Some(Value::Array(_)) => Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        ),
        _ => Value::String(raw.to_string()),
    })
}

/// Documented config templates, one per role (the files in `configs/`).
pub fn template(role: Role) -> &'static str {
    match role {
        Role::Miner => include_str!("../configs/miner.toml"),
        Role::Validator => include_str!("../configs/validator.toml"),
        Role::Gateway => include_str!("../configs/gateway.toml"),
    }
}

/// A role's template with its `data_dir` line pointing at `data_dir`.
pub fn template_for(role: Role, data_dir: &Path) -> String {
    let dir = data_dir.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    template(role)
        .lines()
        .map(|l| if l.starts_with("data_dir") { format!("data_dir = \"{dir}\"") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A role's template for a peer on 127.0.0.1 with ephemeral ports everywhere (libp2p, status
/// HTTP, gateway API) joining through `bootstrap`: what in-process tests, benches and
/// simulations start from.
pub fn loopback(role: Role, data_dir: &Path, bootstrap: Vec<String>) -> Result<NodeConfig, ConfigError> {
    let mut cfg: NodeConfig = toml::from_str(&template_for(role, data_dir))
        .map_err(|e| ConfigError::Invalid(format!("the {role:?} template: {e}")))?;
    cfg.network.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.network.bootstrap = bootstrap;
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.gateway.listen = "127.0.0.1:0".into();
    // In-process meshes opt into auditing (loading a model per validator) explicitly.
    cfg.audit.model = PathBuf::new();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_template_parses_and_validates() {
        for role in [Role::Miner, Role::Validator, Role::Gateway] {
            let text = template_for(role, Path::new("/tmp/x"));
            let cfg: NodeConfig = toml::from_str(&text).unwrap();
            cfg.validate().unwrap();
            assert_eq!(cfg.roles, vec![role]);
            assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        }
    }

    #[test]
    fn env_overrides_nested_fields_lists_and_numbers() {
        let mut v: toml::Value = toml::from_str(template(Role::Miner)).unwrap();
        let vars = vec![
            ("BRAINMESH_HTTP_LISTEN".to_string(), "127.0.0.1:1234".to_string()),
            ("BRAINMESH_NETWORK_BOOTSTRAP".into(), "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2".into()),
            ("BRAINMESH_BRAIN_POLICY_MAX_MINERS".into(), "7".into()),
            ("BRAINMESH_BRAIN".into(), "3".into()),
            ("BRAINMESH_UNRELATED_THING".into(), "x".into()),
        ];
        apply_env(&mut v, vars.into_iter()).unwrap();
        let cfg: NodeConfig = v.try_into().unwrap();
        assert_eq!(cfg.http.listen, "127.0.0.1:1234");
        assert_eq!(cfg.network.bootstrap, vec!["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]);
        assert_eq!(cfg.brain_policy.max_miners, 7);
        assert_eq!(cfg.brain, 3);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let mut v: toml::Value = toml::from_str(template(Role::Miner)).unwrap();
        let err = apply_env(&mut v, vec![("BRAINMESH_BRAIN".to_string(), "many".to_string())].into_iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("BRAINMESH_BRAIN"), "{err}");
    }
}
