//! A simulation scenario: the TOML file `brainmesh sim --scenario` reads (`configs/sim/`).
//! Every field has a default, so a scenario names only what it changes; unknown fields are
//! refused (a typo must not silently run the default).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use brainmesh_actors::adversary::MinerBehaviour;
use brainmesh_actors::models::tiny::TinySpec;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read the scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the scenario {path} is not valid TOML for a scenario: {message}")]
    Parse { path: String, message: String },
    #[error("scenario: {0}")]
    Invalid(String),
}

/// The whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// A name for the tables and plots.
    pub name: String,
    /// The seed of every random choice (peers' behaviours, load, model weights); `--seed`
    /// overrides it.
    pub seed: u64,
    pub chain: ChainSpec,
    pub model: ModelSpec,
    pub peers: PeersSpec,
    pub load: LoadSpec,
    pub audit: AuditSpec,
    /// The links between peers (off by default: as fast as the machine).
    pub network: NetworkSpec,
    /// Faults at given heights.
    pub faults: Vec<FaultSpec>,
    pub output: OutputSpec,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "unnamed".into(),
            seed: 1,
            chain: ChainSpec::default(),
            model: ModelSpec::default(),
            peers: PeersSpec::default(),
            load: LoadSpec::default(),
            audit: AuditSpec::default(),
            network: NetworkSpec::default(),
            faults: vec![],
            output: OutputSpec::default(),
        }
    }
}

/// The chain clock and the ledger's periods, in blocks of chain time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainSpec {
    /// Chain time per block (ms).
    pub block_time_ms: u64,
    /// How much faster than the wall clock chain time runs (100: a 10 s block every 100 ms).
    pub speedup: u64,
    /// Blocks of load and faults.
    pub blocks: u64,
    /// Blocks after the load stops, for the last receipts to finalise and settle.
    pub drain_blocks: u64,
    /// Settlement period.
    pub settlement_interval_blocks: u64,
    /// Weights epoch (commit-reveal) of the validators.
    pub epoch_blocks: u64,
    /// Blocks between a commit and its reveal.
    pub reveal_delay_blocks: u64,
}

impl Default for ChainSpec {
    fn default() -> Self {
        Self {
            block_time_ms: 10_000,
            speedup: 100,
            blocks: 360,
            drain_blocks: 30,
            settlement_interval_blocks: 180,
            epoch_blocks: 30,
            reveal_delay_blocks: 3,
        }
    }
}

/// The model every miner serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// The id requests name.
    pub id: String,
    /// The tiny Llama's shape (its weights come from the scenario's seed).
    pub tiny: TinySpec,
    /// LibTorch threads per peer (the simulator shares the machine's cores among all peers).
    pub threads: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self { id: "tiny-llama".into(), tiny: TinySpec::default(), threads: 1 }
    }
}

/// Who takes part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeersSpec {
    /// Validators; the last `copiers + colluders` of them are lazy adversaries.
    pub validators: usize,
    /// Validators that audit nothing and commit the mean of the weights the others revealed
    /// last (named after the honest ones).
    pub copiers: usize,
    /// Validators that audit nothing and give all their weight to the adversarial miners (or,
    /// with none, to the last miner).
    pub colluders: usize,
    /// Stake of each validator (base units, equal shares).
    pub validator_stake: u64,
    pub gateways: usize,
    /// Groups of miners by behaviour.
    pub miners: Vec<MinerGroup>,
    /// Blocks between two membership heartbeats of a peer (every peer's heartbeat reaches
    /// every other: the mesh's main message load grows with the square of its size).
    pub heartbeat_blocks: u64,
    /// gossipsub's own mesh-maintenance heartbeat (wall-clock ms: libp2p's timers do not
    /// follow the chain clock).
    pub gossip_heartbeat_ms: u64,
    /// Paid admission (`brain_policy.paid_admission`): miners are admitted only once their
    /// registration is paid on the ledger. The scenario's miners are registered at genesis,
    /// except `sybil` ones, which never pay.
    pub paid_admission: bool,
}

impl Default for PeersSpec {
    fn default() -> Self {
        Self {
            validators: 3,
            copiers: 0,
            colluders: 0,
            validator_stake: 1_000_000,
            gateways: 1,
            miners: vec![MinerGroup { count: 4, behaviour: "honest".into() }],
            heartbeat_blocks: 1,
            gossip_heartbeat_ms: 100,
            paid_admission: false,
        }
    }
}

/// `count` miners behaving as `behaviour`: "honest", "sybil" (serves honestly but is one of many
/// identities registered without paying: never registered on the ledger), "edited", "replayed", "random",
/// "intermittent:<honest share>", or "squeezed" (serves a pruned, 8-bit copy of the model under
/// the original's hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerGroup {
    pub count: usize,
    pub behaviour: String,
}

impl MinerGroup {
    /// True for the behaviour that is configuration (another model), not code.
    /// A Sybil registrant: the honest engine under an identity that never pays.
    pub fn is_sybil(&self) -> bool {
        self.behaviour == "sybil"
    }

    pub fn is_squeezed(&self) -> bool {
        self.behaviour == "squeezed"
    }
    /// The miner's `[miner] behaviour` setting.
    pub fn node_behaviour(&self) -> &str {
        if self.is_squeezed() || self.is_sybil() {
            "honest"
        } else {
            &self.behaviour
        }
    }
}

/// Requests: Poisson arrivals, spread over accounts and gateways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadSpec {
    /// Mean requests per block (Poisson).
    pub per_block: f64,
    /// Prompt length in words, uniform in [min, max].
    pub prompt_words: [u32; 2],
    /// max_tokens, uniform in [min, max].
    pub max_tokens: [u32; 2],
    /// Paying accounts (each funded at genesis).
    pub accounts: usize,
    /// Genesis balance of each account (base units).
    pub account_balance: u64,
    /// Requests in flight at most (arrivals beyond wait).
    pub max_in_flight: usize,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            per_block: 1.0,
            prompt_words: [3, 12],
            max_tokens: [4, 16],
            accounts: 4,
            account_balance: 1_000_000_000_000,
            max_in_flight: 32,
        }
    }
}

/// The validators' auditing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSpec {
    /// Share of receipts re-checked (0: the protocol's own spot-check rate).
    pub rate: f64,
}

impl Default for AuditSpec {
    fn default() -> Self {
        Self { rate: 1.0 }
    }
}

/// Every peer's inbound link (`src/network/link.rs`): one-way latency plus a uniform jitter per
/// message and per hop, loss of gossip messages, bandwidth per message. In wall time, like the
/// miners' compute: at speed-up S, consensus sees a link of L ms as S·L ms of chain time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Probability (0..1) that a gossip message is lost on a link.
    pub loss: f64,
    /// kbit/s; 0: unlimited.
    pub bandwidth_kbps: u64,
}

/// One fault at block `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Block height (chain time) it happens at.
    pub at: u64,
    /// "kill" (the peer's actors and sockets vanish at once, like kill -9), "restart" (the
    /// killed peer starts again from its data directory), "partition" (the peers in `groups`
    /// stop reaching each other across groups), "heal" (every partition ends), "flood" (the
    /// peers in `peers` publish bad gossip: `per_block` messages per topic for `blocks`),
    /// "join" (the peers start only now), "leave" (the peers stop for good).
    pub kind: FaultKind,
    /// kill / restart: peer names ("validator-0", "miner-3", "gateway-0").
    #[serde(default)]
    pub peers: Vec<String>,
    /// partition: groups of peer names; peers not named stay in the first group.
    #[serde(default)]
    pub groups: Vec<Vec<String>>,
    /// flood: messages each flooding peer publishes on each of the Brain's gossip topics per
    /// block (malformed bytes and envelopes with forged signatures, alternately)…
    #[serde(default)]
    pub per_block: u32,
    /// …for this many blocks.
    #[serde(default)]
    pub blocks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Kill,
    Restart,
    Partition,
    Heal,
    Flood,
    /// The peers start at this block (not at the beginning): newcomers joining a running mesh.
    Join,
    /// The peers stop for good (like kill; no deregistration message exists).
    Leave,
}

/// What is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSpec {
    /// A row of blocks.csv every this many blocks.
    pub sample_every_blocks: u64,
    /// Draw the PNG plots.
    pub plots: bool,
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self { sample_every_blocks: 1, plots: true }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<(Self, String), ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: p.clone(), source })?;
        let s = Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse { path: p.clone(), message },
            other => other,
        })?;
        Ok((s, hex::encode(Sha256::digest(text.as_bytes()))))
    }

    /// Parses and checks scenario text.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Parse { path: String::new(), message: e.to_string() })?;
        s.validate()?;
        Ok(s)
    }

    /// The miners' names and behaviours, in order (`miner-0`, `miner-1`, …).
    pub fn miners(&self) -> Vec<(String, MinerGroup)> {
        let mut out = vec![];
        for g in &self.peers.miners {
            for _ in 0..g.count {
                out.push((format!("miner-{}", out.len()), g.clone()));
            }
        }
        out
    }

    /// The behaviour of validator `i` (`honest`, `copier`, `colluder`).
    pub fn validator_behaviour(&self, i: usize) -> &'static str {
        let honest = self.peers.validators - self.peers.copiers - self.peers.colluders;
        if i < honest {
            "honest"
        } else if i < honest + self.peers.copiers {
            "copier"
        } else {
            "colluder"
        }
    }

    /// Every peer name.
    pub fn peer_names(&self) -> Vec<String> {
        let mut v: Vec<String> = (0..self.peers.validators).map(|i| format!("validator-{i}")).collect();
        v.extend((0..self.peers.gateways).map(|i| format!("gateway-{i}")));
        v.extend(self.miners().into_iter().map(|(n, _)| n));
        v
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        let c = &self.chain;
        if c.block_time_ms == 0 || c.speedup == 0 || c.blocks == 0 {
            return bad("chain.block_time_ms, chain.speedup and chain.blocks must be > 0".into());
        }
        if c.settlement_interval_blocks == 0 || c.epoch_blocks == 0 {
            return bad("chain.settlement_interval_blocks and chain.epoch_blocks must be > 0".into());
        }
        if self.peers.validators == 0 || self.peers.gateways == 0 {
            return bad("at least one validator and one gateway".into());
        }
        if self.peers.heartbeat_blocks == 0 || self.peers.gossip_heartbeat_ms == 0 {
            return bad("peers.heartbeat_blocks and peers.gossip_heartbeat_ms must be at least 1".into());
        }
        if self.peers.copiers + self.peers.colluders >= self.peers.validators {
            return bad("peers.copiers + peers.colluders must leave at least one honest validator".into());
        }
        if self.miners().is_empty() {
            return bad("at least one miner".into());
        }
        for g in &self.peers.miners {
            if !g.is_squeezed() && !g.is_sybil() {
                g.behaviour.parse::<MinerBehaviour>().map_err(ScenarioError::Invalid)?;
            }
        }
        let l = &self.load;
        if !(0.0..=1000.0).contains(&l.per_block) || l.accounts == 0 || l.max_in_flight == 0 {
            return bad("load.per_block in 0..1000, load.accounts and load.max_in_flight > 0".into());
        }
        if l.prompt_words[0] == 0
            || l.prompt_words[0] > l.prompt_words[1]
            || l.max_tokens[0] == 0
            || l.max_tokens[0] > l.max_tokens[1]
        {
            return bad("load.prompt_words and load.max_tokens are [min, max] with 0 < min <= max".into());
        }
        if !(0.0..=1.0).contains(&self.network.loss) {
            return bad("network.loss must be in 0..1".into());
        }
        if !(0.0..=1.0).contains(&self.audit.rate) {
            return bad("audit.rate must be in 0..1".into());
        }
        let names = self.peer_names();
        for f in &self.faults {
            for p in f.peers.iter().chain(f.groups.iter().flatten()) {
                if !names.contains(p) {
                    return bad(format!("fault at block {}: no peer named `{p}` (peers are {}…)", f.at, names[0]));
                }
            }
            match f.kind {
                FaultKind::Flood if f.peers.is_empty() || f.per_block == 0 || f.blocks == 0 => {
                    return bad(format!("fault at block {}: a flood needs `peers`, `per_block` and `blocks`", f.at))
                }
                FaultKind::Join if f.peers.iter().any(|p| p == "validator-0") => {
                    return bad(format!(
                        "fault at block {}: validator-0 is the bootstrap peer and cannot join late",
                        f.at
                    ))
                }
                FaultKind::Kill | FaultKind::Restart | FaultKind::Join | FaultKind::Leave if f.peers.is_empty() => {
                    return bad(format!("fault at block {}: {:?} needs `peers`", f.at, f.kind))
                }
                FaultKind::Partition if f.groups.len() < 2 => {
                    return bad(format!("fault at block {}: a partition needs at least two `groups`", f.at))
                }
                _ => {}
            }
            if f.at >= c.blocks {
                return bad(format!("fault at block {} is after the last block of load ({})", f.at, c.blocks));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_name_peers_and_the_bootstrap_peer_cannot_join_late() {
        let ok = "[[faults]]\nat = 5\nkind = \"join\"\npeers = [\"miner-1\"]\n[[faults]]\nat = 9\nkind = \"leave\"\npeers = [\"miner-0\"]\n";
        assert!(Scenario::parse(ok).is_ok());
        let e = Scenario::parse(&ok.replacen("miner-1", "validator-0", 1)).unwrap_err().to_string();
        assert!(e.contains("bootstrap"), "{e}");
        assert!(Scenario::parse("[[faults]]\nat = 5\nkind = \"leave\"\n").is_err(), "a leave needs peers");
    }

    #[test]
    fn a_flood_needs_its_peers_rate_and_length() {
        let ok = "[[faults]]\nat = 5\nkind = \"flood\"\npeers = [\"miner-0\"]\nper_block = 3\nblocks = 10\n";
        assert!(Scenario::parse(ok).is_ok());
        let e = Scenario::parse(&ok.replace("per_block = 3", "per_block = 0")).unwrap_err().to_string();
        assert!(e.contains("flood needs"), "{e}");
        assert!(Scenario::parse(&ok.replace("miner-0", "miner-99")).is_err());
    }

    #[test]
    fn an_empty_scenario_is_the_documented_default_and_valid() {
        let s = Scenario::parse("").unwrap();
        assert_eq!(s, Scenario::default());
        assert_eq!(s.peer_names()[..2], ["validator-0".to_string(), "validator-1".to_string()]);
    }

    #[test]
    fn every_committed_scenario_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sim");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            // economics*.toml are studies of the economics-only mode (sim::economics tests them).
            let economics = p.file_name().is_some_and(|f| f.to_string_lossy().starts_with("economics"));
            if p.extension().is_some_and(|x| x == "toml") && !economics {
                Scenario::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1);
    }

    #[test]
    fn typos_unknown_behaviours_and_faults_on_unknown_peers_are_refused_with_the_reason() {
        let e = Scenario::parse("[chain]\nblock_tme_ms = 5").unwrap_err().to_string();
        assert!(e.contains("block_tme_ms"), "{e}");
        let e = Scenario::parse("[[peers.miners]]\ncount = 1\nbehaviour = \"sneaky\"").unwrap_err().to_string();
        assert!(e.contains("unknown miner behaviour"), "{e}");
        let e =
            Scenario::parse("[[faults]]\nat = 5\nkind = \"kill\"\npeers = [\"validator-9\"]").unwrap_err().to_string();
        assert!(e.contains("validator-9"), "{e}");
        let e = Scenario::parse("[[faults]]\nat = 5\nkind = \"partition\"\ngroups = [[\"validator-0\"]]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("two"), "{e}");
    }
}
