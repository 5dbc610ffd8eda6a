//! What a run writes: the rows of `blocks.csv`, `peers.csv`, `requests.csv`, `events.csv` and
//! the headline figures of `summary.json`. Plain CSV with a header row; fields never contain
//! commas or quotes (peer names, labels and numbers only).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One row of `blocks.csv` (cumulative figures up to `height`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlockRow {
    pub height: u64,
    pub wall_s: f64,
    /// Last final block of the reading validator (empty while none).
    pub final_height: Option<u64>,
    /// Receipts countersigned by the gateways so far.
    pub countersigned: u64,
    /// Of those, in a final block.
    pub finalised: u64,
    /// Countersigned and not yet final.
    pub pending: u64,
    /// Receipts given up on (only known at the end: the last row carries it).
    pub lost: u64,
    /// Scheduled issuance of the settled periods.
    pub issuance: u128,
    /// Emission credited to miners, validators and Brain owners (settled periods).
    pub emission_miners: u128,
    pub emission_validators: u128,
    pub emission_owners: u128,
    /// Of the miners' emission, the share of adversarial miners.
    pub emission_adversarial: u128,
    pub requests_done: u64,
    pub requests_failed: u64,
    pub peers_up: u64,
}

/// One row of `peers.csv`: a peer at the end of an epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerRow {
    pub epoch: u64,
    pub height: u64,
    pub peer: String,
    pub role: String,
    pub behaviour: String,
    /// Validators: stake (base units).
    pub stake: u128,
    /// Miners: the mean weight the validators' latest revealed vectors give it (0..1).
    pub weight: f64,
    /// Yuma over the latest revealed vectors (the ledger's epoch function; ppb): miners'
    /// trust (the share of their weight that survives clipping) and consensus weight;
    /// validators' trust (how much of their weight agrees with the consensus).
    pub trust_ppb: u64,
    pub consensus_ppb: u64,
    /// Latest settled period: miner incentive / validator dividends (ppb).
    pub incentive_ppb: u64,
    pub dividends_ppb: u64,
    /// Emission credited so far.
    pub emission: u128,
    pub balance: u128,
    pub tasks_served: u64,
    pub banned: bool,
    pub up: bool,
}

/// One row of `requests.csv`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestRow {
    pub seq: u64,
    /// Arrival, chain time (ms from genesis) and block.
    pub arrival_ms: u64,
    pub arrival_block: u64,
    pub gateway: String,
    pub miner: String,
    /// Wall-clock latency and time to first token (ms).
    pub latency_ms: f64,
    pub ttft_ms: f64,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// ok, no_miner, unknown_model, failed, gateway_down, timeout.
    pub outcome: String,
    pub attempts: u32,
    pub receipt: String,
}

/// One row of `events.csv`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EventRow {
    pub height: u64,
    pub wall_s: f64,
    /// ban, kill, restart, partition, heal, lost (a receipt in no final block).
    pub kind: String,
    pub peer: String,
    pub behaviour: String,
    /// Bans: blocks from the miner's first served task to its ban.
    pub detection_blocks: Option<u64>,
    pub detail: String,
}

/// Writes rows as CSV (header from the struct's field names, via serde_json's object order).
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T], header_of: &T) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let names: Vec<String> = match serde_json::to_value(header_of) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => vec![],
    };
    writeln!(f, "{}", names.join(","))?;
    for r in rows {
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(r) {
            let cells: Vec<String> = names.iter().map(|n| cell(m.get(n))).collect();
            writeln!(f, "{}", cells.join(","))?;
        }
    }
    f.flush()
}

fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.replace([',', '"', '\n'], " "),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// Reads a CSV written by [`write_csv`] back as header + rows of cells.
pub fn read_csv(path: &Path) -> std::io::Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap_or_default().split(',').map(String::from).collect();
    let mut rows = vec![];
    for (i, l) in lines.enumerate() {
        let cells: Vec<String> = l.split(',').map(String::from).collect();
        if cells.len() != header.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} line {}: {} cells, header has {}", path.display(), i + 2, cells.len(), header.len()),
            ));
        }
        rows.push(cells);
    }
    Ok((header, rows))
}

/// The headline figures (`summary.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub scenario: String,
    /// sha256 of the scenario file's text.
    pub scenario_sha256: String,
    pub seed: u64,
    /// `git describe` of the source the binary was built from, where known.
    pub commit: String,
    pub peers: usize,
    pub validators: usize,
    pub miners: usize,
    pub adversarial_miners: usize,
    pub gateways: usize,
    pub blocks: u64,
    pub block_time_ms: u64,
    pub speedup: u64,
    pub wall_s: f64,
    /// Of the wall time, forming the mesh (every validator and gateway knows every peer)
    /// before the chain clock starts.
    pub formation_s: f64,
    pub peak_rss_mib: f64,
    /// Messages from peers received by all peers (accepted or refused), over the run, and per
    /// wall-clock second.
    pub messages: u64,
    pub messages_per_s: f64,
    /// Of those, by kind (accepted: `heartbeat`, `receipt`, `rollup`, …; refused:
    /// `refused:<reason>`).
    pub messages_by_kind: std::collections::BTreeMap<String, u64>,
    pub requests: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub ttft_p50_ms: f64,
    pub receipts_countersigned: u64,
    pub receipts_finalised: u64,
    /// Countersigned at least `FINALITY_GRACE_BLOCKS` (5) blocks before the last final block
    /// and in no final block.
    pub receipts_lost: u64,
    /// Countersigned in the last blocks of the run, not final yet when it stopped.
    pub receipts_pending_at_end: u64,
    /// Receipt ids counted in more than one final block (must be 0).
    pub receipts_double_counted: u64,
    pub last_final_height: Option<u64>,
    /// Largest gap between consecutive final heights seen while sampling (blocks).
    pub max_finality_stall_blocks: u64,
    pub settlements: u64,
    pub issuance: u128,
    pub minted: u128,
    pub not_minted: u128,
    /// Every settlement credited exactly its minted emission, and minted + not minted =
    /// issuance.
    pub emission_equals_issuance: bool,
    pub emission_miners: u128,
    pub emission_adversarial_miners: u128,
    /// Share of miners' emission taken by adversarial miners (0..1).
    pub adversarial_emission_share: f64,
    pub cheaters_banned: usize,
    pub cheaters: usize,
    /// Sybil registrants (miners that never paid), how many the first gateway admitted at the
    /// end, and the requests they served.
    #[serde(default)]
    pub sybils: usize,
    #[serde(default)]
    pub sybils_admitted: usize,
    #[serde(default)]
    pub tasks_to_sybils: u64,
    pub honest_banned: usize,
    /// Mean blocks from a cheater's first served task to its ban.
    pub mean_detection_blocks: Option<f64>,
    /// Mean emission per peer (base units) by role and behaviour, e.g. `validator/copier`,
    /// `miner/honest`.
    pub emission_per_peer: std::collections::BTreeMap<String, f64>,
    pub faults: usize,
    /// Every ledger that finished the run agrees (same state digest at the same height).
    pub validators_agree: bool,
}

/// Peak resident memory of this process (VmHWM, MiB), where /proc tells it.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()).map(|kb| kb / 1024.0))
        })
        .unwrap_or(0.0)
}

/// The `q` quantile (0..1) of `v` (nearest rank; 0 for an empty slice).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_with_a_header_from_the_field_names() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("r.csv");
        let rows = vec![
            RequestRow {
                seq: 1,
                gateway: "gateway-0".into(),
                latency_ms: 12.5,
                outcome: "ok".into(),
                ..Default::default()
            },
            RequestRow { seq: 2, outcome: "no, miner".into(), ..Default::default() },
        ];
        write_csv(&p, &rows, &RequestRow::default()).unwrap();
        let (h, r) = read_csv(&p).unwrap();
        assert!(h.windows(2).all(|w| w[0] < w[1]), "columns in name order: {h:?}");
        assert!(h.iter().any(|c| c == "seq"));
        assert_eq!(r.len(), 2);
        let i = h.iter().position(|c| c == "latency_ms").unwrap();
        assert_eq!(r[0][i], "12.500");
        let o = h.iter().position(|c| c == "outcome").unwrap();
        assert_eq!(r[1][o], "no  miner", "commas never split a cell");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.95), 95.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
