//! Sybil registrants in the simulator (issue 19, building on issue 17's paid admission):
//! `configs/sim/sybil.toml` runs 4 honest miners, paid at genesis, beside 12 identities of one
//! operator that serve honestly but never pay. Under paid admission no Sybil is admitted, none
//! gets a task or any emission, and every request is still served. The same scenario with paid
//! admission off admits all 12 (they take most of the tasks): the contrast is in
//! docs/simulator.md; here only the protected case runs, as the real binary.

mod common;

use std::process::Command;

#[test]
fn under_paid_admission_no_unpaid_sybil_identity_is_admitted_served_or_paid() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(common::BIN)
        .args(["sim", "--scenario", concat!(env!("CARGO_MANIFEST_DIR"), "/configs/sim/sybil.toml"), "--out"])
        .arg(out.path())
        .output()
        .expect("run brainmesh sim");
    assert!(
        run.status.success(),
        "sim failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["sybils"], 12, "{s}");
    assert_eq!(s["sybils_admitted"], 0, "no unpaid identity is admitted: {s}");
    assert_eq!(s["tasks_to_sybils"], 0, "no task reaches one: {s}");
    assert_eq!(s["emission_per_peer"]["miner/sybil"].as_f64(), Some(0.0), "{s}");
    assert!(s["emission_per_peer"]["miner/honest"].as_f64().unwrap() > 0.0, "{s}");
    assert_eq!(s["requests_ok"], s["requests"], "every request is served by the paid miners: {s}");
    assert!(s["requests"].as_u64().unwrap() > 50, "{s}");
    assert_eq!(s["receipts_lost"], 0, "{s}");
}
