//! Encrypted mode through the mesh with the real binary: a `brainmesh node` miner serving the
//! committed encrypted head (`models/assets/fhe-head`), a validator as the bootstrap peer, and
//! `brainmesh private classify` joining through the validator as an observer peer over 127.0.0.1. The first query uploads the client's ≈116 MB
//! compressed server key in 2 MiB chunks over `/brainmesh/fhe/1`; the second finds it cached
//! and uploads only its ≈3 KB of ciphertexts. The decrypted logits are checked against the
//! plaintext reference computed here from the head's weights on the client's own codes.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use brainmesh_actors::models::fhe::QuantizedHead;
use common::*;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn smollm_gguf() -> PathBuf {
    let cache = std::env::var_os("BRAINMESH_CACHE").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache"));
    let p = cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make setup`", p.display());
    p
}

fn classify(args: &[&str]) -> (bool, String, String) {
    let out =
        Command::new(BIN).args(["private", "classify"]).args(args).output().expect("run brainmesh private classify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn private_classify_uploads_the_key_once_and_decrypts_logits_equal_to_the_plaintext_reference() {
    let root = tempfile::tempdir().unwrap();
    let head_dir = repo().join("models/assets/fhe-head");
    let head = QuantizedHead::load(&head_dir).expect("committed head");
    let model = smollm_gguf().to_string_lossy().to_string();
    let head_path = head_dir.to_string_lossy().to_string();
    // The client joins through a validator, not the miner: it must find the miner from the
    // Brain's roster and reach it over the mesh.
    let vdir = root.path().join("validator");
    init(&vdir, "validator");
    let validator = start(&vdir, None, &[]);
    let dir = root.path().join("miner");
    init(&dir, "miner");
    let env = [
        ("BRAINMESH_MINER_MODEL", model.as_str()),
        ("BRAINMESH_MINER_DEVICE", "cpu"),
        ("BRAINMESH_MINER_THREADS", "1"),
        ("BRAINMESH_MINER_FHE_HEAD", head_path.as_str()),
    ];
    let miner = start(&dir, Some(&validator.addr), &env);
    let brain = miner.status().and_then(|s| s["brain"].as_u64()).expect("miner status names its brain").to_string();
    let keys = root.path().join("keys");
    let keys_s = keys.to_string_lossy().to_string();

    let text = "Fellow, come from the throng; look upon Caesar.";
    let args = [
        "--brain",
        &brain,
        "--text",
        text,
        "--bootstrap",
        &validator.addr,
        "--keys",
        &keys_s,
        "--json",
        "--timeout-s",
        "60",
    ];
    let (ok, stdout, stderr) = classify(&args);
    assert!(
        ok,
        "private classify failed:\n{stderr}\nminer log:\n{}",
        std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
    );
    let first: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    eprintln!("first query: {first}");
    assert_eq!(first["key_uploaded"], true);
    assert_eq!(first["head_id"], head.head_id());
    assert_eq!(first["peer"], miner.peer_id);
    assert!(first["upload_bytes"].as_u64().unwrap() > 50_000_000, "the compressed server key went up");
    assert!(keys.join("fhe-client-key.bin").exists(), "the client keys were saved for the next query");

    // The client's codes → the noise-free plaintext head. Bootstrap noise may move an activation
    // by a step or two (docs/encrypted-mode.md), which moves a logit by at most |W2| per step.
    let codes: Vec<u8> = first["codes"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as u8).collect();
    let reference = head.reference(&codes).expect("reference").logits;
    let logits: Vec<i64> = first["logits"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let slack = 2 * 8 * head.spec.w2_max as i64; // up to 8 activations two steps off
    for (c, (got, want)) in logits.iter().zip(&reference).enumerate() {
        assert!((got - want).abs() <= slack, "logit {c}: decrypted {got}, reference {want} (slack {slack})");
    }
    let mut sorted = reference.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    if sorted[0] - sorted[1] > 2 * slack {
        let want = reference.iter().position(|&v| v == sorted[0]).unwrap();
        assert_eq!(first["class"].as_u64().unwrap() as usize, want, "clear reference margin, same answer");
    }
    assert_eq!(first["label"], head.spec.classes[first["class"].as_u64().unwrap() as usize]);

    // Second query: same keys, the miner has them cached by key id.
    let (ok, stdout, stderr) = classify(&args);
    assert!(ok, "second query failed:\n{stderr}");
    let second: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    eprintln!("second query: {second}");
    assert_eq!(second["key_uploaded"], false);
    assert_eq!(second["key_id"], first["key_id"]);
    assert!(second["upload_bytes"].as_u64().unwrap() < 10_000, "only the ciphertexts went up");
    assert_eq!(second["codes"], first["codes"], "same text, same codes");

    let metrics = get_text(&format!("http://{}/metrics", miner.http)).unwrap_or_default();
    assert!(metrics.contains(r#"kind="fhe_key_installed"} 1"#), "one key installed:\n{metrics}");
    assert!(metrics.contains(r#"kind="fhe_classified"} 2"#), "two classifications:\n{metrics}");
}

#[test]
fn private_classify_says_so_when_no_miner_of_the_brain_serves_a_head() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("miner");
    init(&dir, "miner");
    let model = smollm_gguf().to_string_lossy().to_string();
    let miner = start(&dir, None, &[("BRAINMESH_MINER_MODEL", model.as_str()), ("BRAINMESH_MINER_THREADS", "1")]);
    let brain = miner.status().and_then(|s| s["brain"].as_u64()).expect("brain").to_string();
    wait_for(Duration::from_secs(30), || miner.status().filter(|s| !roster(s, brain.parse().unwrap()).is_empty()));
    let keys = root.path().join("keys").to_string_lossy().to_string();
    let (ok, _, stderr) = classify(&[
        "--brain",
        &brain,
        "--text",
        "hello",
        "--bootstrap",
        &miner.addr,
        "--keys",
        &keys,
        "--timeout-s",
        "3",
    ]);
    assert!(!ok);
    assert!(stderr.contains("serves an encrypted head"), "{stderr}");
    let (ok, _, stderr) = classify(&["--brain", &brain, "--text", "hello"]);
    assert!(!ok);
    assert!(stderr.contains("--bootstrap"), "{stderr}");
}
