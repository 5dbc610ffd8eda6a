//! File-format checks: dequantization against llama.cpp's `gguf` Python package, and clear
//! errors for unknown architectures, corrupt or truncated files.

mod common;

use std::io::Write;

use brainmesh_models::gguf::GgufFile;
use brainmesh_models::{LoadOptions, Model, ModelError};
use common::*;
use serde_json::json;
use tch::{Device, Kind};

fn load(path: &std::path::Path) -> Result<Model, ModelError> {
    Model::load(path, &LoadOptions { threads: Some(threads()), ..Default::default() }, &mut |_| {})
}

/// A GGUF written by the `gguf` package (arch "mamba") and that package's dequantized values.
fn fixture() -> (tempfile::TempDir, std::path::PathBuf, std::collections::HashMap<String, tch::Tensor>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fixture.gguf");
    let refs = run_reference("make_gguf_fixture.py", &json!({"gguf_out": path, "arch": "mamba", "seed": 3}));
    (dir, path, refs)
}

#[test]
fn dequantization_matches_the_gguf_package_for_every_supported_type() {
    let (_dir, path, refs) = fixture();
    let g = GgufFile::open(&path).expect("open fixture");
    for ty in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"] {
        let ours = g.tensor(&format!("t.{ty}"), Device::Cpu, Kind::Float).expect(ty);
        let theirs = &refs[&format!("ref_{ty}")];
        assert_eq!(ours.size(), theirs.size(), "{ty}");
        assert!(theirs.abs().max().double_value(&[]) > 0.1, "{ty}: degenerate reference");
        let diff = max_abs_diff(&ours, theirs);
        assert_eq!(diff, 0.0, "{ty}: max diff {diff}");
    }
}

#[test]
fn an_unknown_gguf_architecture_is_named_in_the_error() {
    let (_dir, path, _) = fixture();
    match load(&path) {
        Err(ModelError::UnknownArchitecture(a)) => assert_eq!(a, "mamba"),
        other => panic!("expected UnknownArchitecture, got {:?}", other.err()),
    }
}

#[test]
fn an_unknown_hugging_face_model_type_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert", "hidden_size": 8}"#).expect("write");
    match load(dir.path()) {
        Err(ModelError::UnknownArchitecture(a)) => assert_eq!(a, "bert"),
        other => panic!("expected UnknownArchitecture, got {:?}", other.err()),
    }
}

fn truncated_copy(src: &std::path::Path, len: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dst = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(src).expect("read");
    std::fs::write(&dst, &bytes[..len.min(bytes.len())]).expect("write");
    (dir, dst)
}

#[test]
fn a_gguf_truncated_in_its_tensor_data_is_reported_as_corrupt() {
    let src = smollm_gguf();
    let full = std::fs::metadata(&src).expect("stat").len() as usize;
    let (_d, path) = truncated_copy(&src, full - 1000);
    match load(&path) {
        Err(ModelError::Corrupt { reason, .. }) => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}

#[test]
fn a_gguf_truncated_in_its_header_is_reported_as_corrupt() {
    for len in [3, 20, 5000] {
        let (_d, path) = truncated_copy(&smollm_gguf(), len);
        assert!(matches!(GgufFile::open(&path), Err(ModelError::Corrupt { .. })), "cut at {len}");
    }
}

#[test]
fn a_file_that_is_not_gguf_is_reported_as_corrupt() {
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    f.write_all(b"this is not a model, just some text that is long enough").expect("write");
    match load(f.path()) {
        Err(ModelError::Corrupt { reason, .. }) => assert!(reason.contains("magic"), "{reason}"),
        other => panic!("expected Corrupt, got {:?}", other.err()),
    }
}

#[test]
fn a_missing_model_file_is_an_io_error_naming_the_path() {
    let err = load(std::path::Path::new("/nonexistent/model.gguf")).err().expect("error");
    assert!(matches!(err, ModelError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.gguf"));
}

#[test]
fn a_truncated_safetensors_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny_gpt2_dir().join(f), dir.path().join(f)).expect("copy");
    }
    let weights = std::fs::read(tiny_gpt2_dir().join("model.safetensors")).expect("read");
    std::fs::write(dir.path().join("model.safetensors"), &weights[..weights.len() / 2]).expect("write");
    assert!(matches!(load(dir.path()), Err(ModelError::Corrupt { .. })));
}
