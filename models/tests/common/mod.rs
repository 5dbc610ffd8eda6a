//! Shared helpers for the integration tests: where `make setup` put things, and a runner for
//! the Python reference scripts.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use brainmesh_models::{LoadOptions, Model};
use tch::Tensor;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("BRAINMESH_CACHE").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache"))
}

pub fn python() -> PathBuf {
    std::env::var_os("BRAINMESH_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

pub fn smollm_gguf() -> PathBuf {
    let p = cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `make setup`", p.display());
    p
}

pub fn tiny_gpt2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-gpt2")
}

pub fn py_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(name)
}

pub fn threads() -> usize {
    2
}

/// Runs `tests/py/<script> REQUEST.json OUT.safetensors` and returns the tensors it wrote.
pub fn run_reference(script: &str, request: &serde_json::Value) -> HashMap<String, Tensor> {
    let dir = tempfile::tempdir().expect("temp dir");
    let req = dir.path().join("request.json");
    let out = dir.path().join("out.safetensors");
    std::fs::write(&req, serde_json::to_vec(request).expect("json")).expect("write request");
    let py = python();
    let res = Command::new(&py)
        .arg(py_script(script))
        .arg(&req)
        .arg(&out)
        .env("TOKENIZERS_PARALLELISM", "false")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (run `make setup`): {e}", py.display()));
    assert!(
        res.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    Tensor::read_safetensors(&out).expect("reference output").into_iter().collect()
}

/// SmolLM2 loaded once per test binary (tch tensors are not Sync, hence the mutex).
pub fn smollm() -> MutexGuard<'static, Model> {
    static M: OnceLock<Mutex<Model>> = OnceLock::new();
    let m = M.get_or_init(|| {
        let opts = LoadOptions { threads: Some(threads()), ..Default::default() };
        Mutex::new(Model::load(smollm_gguf(), &opts, &mut |_| {}).expect("load SmolLM2 GGUF"))
    });
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

pub fn to_u32(t: &Tensor) -> Vec<u32> {
    Vec::<i64>::try_from(&t.to_kind(tch::Kind::Int64).view([-1])).expect("ids").into_iter().map(|v| v as u32).collect()
}
