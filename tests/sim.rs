//! The simulator end to end: `brainmesh sim` on the CI scenario (configs/sim/ci.toml: 3
//! validators, 11 miners of which 5 cheat — one of each kind — 1 gateway, one simulated hour with
//! two settlements, a validator killed and restarted, then a partition that heals), driven as
//! the real binary; every outcome is read back from the CSVs and summary.json it wrote.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use brainmesh::sim::record::read_csv;

fn column<'a>(header: &[String], rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    rows.iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn a_simulated_hour_bans_every_cheater_and_no_honest_miner_loses_no_receipt_and_survives_a_kill_and_a_partition() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path();
    let run = Command::new(common::BIN)
        .args(["sim", "--scenario", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/sim/ci.toml"), "--out"])
        .arg(dir)
        .output()
        .expect("run brainmesh sim");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "sim failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    println!("{stdout}");

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["cheaters"], 5, "{s}");
    assert_eq!(s["cheaters_banned"], 5, "every cheater is banned: {s}");
    assert_eq!(s["honest_banned"], 0, "no honest miner is banned: {s}");
    assert_eq!(s["receipts_lost"], 0, "no receipt is lost: {s}");
    // Only receipts of the run's last blocks may still be waiting for finality.
    assert!(s["receipts_pending_at_end"].as_u64().unwrap() <= 5, "{s}");
    assert_eq!(
        s["receipts_countersigned"].as_u64(),
        Some(s["receipts_finalised"].as_u64().unwrap() + s["receipts_pending_at_end"].as_u64().unwrap()),
        "{s}"
    );
    assert_eq!(s["receipts_double_counted"], 0, "{s}");
    assert!(s["receipts_countersigned"].as_u64().unwrap() > 100, "{s}");
    assert!(s["settlements"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["emission_equals_issuance"], true, "{s}");
    assert_eq!(s["validators_agree"], true, "{s}");
    assert!(s["seed"].is_u64() && s["scenario_sha256"].as_str().unwrap().len() == 64);

    // The CSVs parse, and the faults and bans are in them.
    let (h, events) = read_csv(&dir.join("events.csv")).unwrap();
    let kinds = column(&h, &events, "kind");
    for k in ["kill", "restart", "partition", "heal"] {
        assert!(kinds.contains(&k), "{k} missing from events.csv: {kinds:?}");
    }
    let behaviours: Vec<&str> =
        kinds.iter().zip(column(&h, &events, "behaviour")).filter(|(k, _)| **k == "ban").map(|(_, b)| b).collect();
    for b in ["edited", "replayed", "random", "squeezed", "intermittent:0.5"] {
        assert!(behaviours.contains(&b), "no ban of the {b} miner: {behaviours:?}");
    }
    let (h, blocks) = read_csv(&dir.join("blocks.csv")).unwrap();
    let heights: Vec<u64> = column(&h, &blocks, "height").iter().map(|v| v.parse().unwrap()).collect();
    assert!(heights.windows(2).all(|w| w[0] < w[1]));
    // Two of three equal validators hold exactly 2/3 of the stake, not more: finality stops
    // while one is killed or cut off, and resumes once it is back; the final height ends up
    // past the heal, and the receipts held meanwhile land (none lost, above).
    let finals: Vec<u64> = column(&h, &blocks, "final_height").iter().filter_map(|v| v.parse().ok()).collect();
    assert!(finals.last().copied().unwrap_or(0) > 300, "finality stalled: {finals:?}");
    let peers_up: Vec<u64> = column(&h, &blocks, "peers_up").iter().map(|v| v.parse().unwrap()).collect();
    assert!(peers_up.contains(&14) && peers_up.contains(&15), "the kill shows: {peers_up:?}");
    let (h, requests) = read_csv(&dir.join("requests.csv")).unwrap();
    let outcomes = column(&h, &requests, "outcome");
    let ok = outcomes.iter().filter(|o| **o == "ok").count();
    assert!(ok * 10 >= outcomes.len() * 9, "most requests are served: {ok} of {}", outcomes.len());
    let (h, peers) = read_csv(&dir.join("peers.csv")).unwrap();
    let mut served: BTreeMap<&str, u64> = BTreeMap::new();
    for (p, n) in column(&h, &peers, "peer").into_iter().zip(column(&h, &peers, "tasks_served")) {
        served.insert(p, n.parse().unwrap());
    }
    assert!(served.get("miner-0").copied().unwrap_or(0) > 0, "{served:?}");
    // Banned cheaters get no weight from any validator once banned — also from validator-2
    // after its restart at block 140 (its ban list is on disk).
    let name = column(&h, &peers, "peer");
    let (role, beh, height, weight) = (
        column(&h, &peers, "role"),
        column(&h, &peers, "behaviour"),
        column(&h, &peers, "height"),
        column(&h, &peers, "weight"),
    );
    for i in 0..peers.len() {
        if role[i] == "miner" && beh[i] != "honest" && height[i].parse::<u64>().unwrap() >= 180 {
            assert_eq!(
                weight[i].parse::<f64>().unwrap(),
                0.0,
                "{} ({}) weighted at block {}",
                name[i],
                beh[i],
                height[i]
            );
        }
    }
    for png in ["emission_share.png", "trust_by_behaviour.png", "latency_cdf.png", "receipts_pending.png"] {
        let b = std::fs::read(dir.join(png)).unwrap_or_default();
        assert!(b.starts_with(b"\x89PNG"), "{png} is not a PNG");
    }

    // `sim report` prints the same run.
    let rep = Command::new(common::BIN).args(["sim", "report"]).arg(dir).output().unwrap();
    assert!(rep.status.success());
    assert!(String::from_utf8_lossy(&rep.stdout).contains("5 of 5"));
    let _ = Path::new(dir);
}
