//! `brainmesh generate` as a user runs it: the real binary, the real SmolLM2 GGUF.

mod common;

use std::process::Command;

use common::BIN;

fn smollm_gguf() -> std::path::PathBuf {
    let cache = std::env::var_os("BRAINMESH_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache"));
    let p = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make setup`", p.display());
    p
}

#[test]
fn generate_answers_a_chat_question_and_prints_its_statistics() {
    let out = Command::new(BIN)
        .args([
            "generate",
            "--chat",
            "--max-tokens",
            "12",
            "--threads",
            "2",
            "--prompt",
            "What is the capital of France?",
            "--model",
        ])
        .arg(smollm_gguf())
        .output()
        .expect("run brainmesh generate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Paris"), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("prompt tokens") && stderr.contains("tok/s"), "{stderr}");
}

#[test]
fn generate_refuses_a_missing_model_and_a_prompt_over_the_context_clearly() {
    let out =
        Command::new(BIN).args(["generate", "--model", "/no/such/model.gguf", "--prompt", "hi"]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/model.gguf"), "{err}");
    let long = " hello".repeat(9000);
    let out = Command::new(BIN)
        .args(["generate", "--max-tokens", "2", "--threads", "2", "--prompt", &long, "--model"])
        .arg(smollm_gguf())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("8192"), "the error names the context length: {err}");
}
