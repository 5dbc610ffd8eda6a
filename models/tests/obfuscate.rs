//! Obfuscation preserves the function and changes every weight: a tiny Llama (each transform
//! alone and all together) and SmolLM2-135M-Instruct (greedy tokens on 20 prompts, logits, and the
//! best cosine between any obfuscated row and any original row, per tensor).

mod common;

use brainmesh_models::llama::Llama;
use brainmesh_models::obfuscate::{best_row_cosine, obfuscate, ObfuscateOptions};
use brainmesh_models::tiny::{write_tiny_llama, TinySpec, TinyVariant};
use brainmesh_models::{GenerateConfig, LoadOptions, Model, Network};
use common::*;

fn load(p: &std::path::Path) -> Model {
    Model::load(p, &LoadOptions { threads: Some(threads()), ..Default::default() }, &mut |_| {}).expect("load")
}

fn llama(m: &Model) -> &Llama {
    match &m.net {
        Network::Llama(l) => l,
        _ => panic!("llama"),
    }
}

fn greedy(m: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let cfg = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(n) };
    m.generate(&[prompt.to_vec()], &cfg, &mut |_| true).expect("generate").remove(0).tokens
}

#[test]
fn each_transform_alone_and_all_together_keep_a_tiny_llamas_logits_and_change_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tiny");
    write_tiny_llama(&src, &TinySpec::default(), 7, TinyVariant::Original).unwrap();
    let orig = load(&src);
    let prompt: Vec<u32> = b"Hello, obfuscated world".iter().map(|&b| b as u32).collect();
    let base = orig.logits(&prompt).unwrap();
    let none =
        ObfuscateOptions { rotate: false, permute_heads: false, scale_qk: false, mix_vo: false, permute_mlp: false };
    let variants = [
        ("rotate", ObfuscateOptions { rotate: true, ..none }),
        ("permute_heads", ObfuscateOptions { permute_heads: true, ..none }),
        ("scale_qk", ObfuscateOptions { scale_qk: true, ..none }),
        ("mix_vo", ObfuscateOptions { mix_vo: true, ..none }),
        ("permute_mlp", ObfuscateOptions { permute_mlp: true, ..none }),
        ("all", ObfuscateOptions::default()),
    ];
    let before = llama(&orig).state_dict().unwrap();
    for (name, o) in variants {
        let out = dir.path().join(name);
        obfuscate(&orig, 42, &o, &out).unwrap();
        let ob = load(&out);
        let diff = max_abs_diff(&base, &ob.logits(&prompt).unwrap());
        println!("{name}: max |Δlogit| = {diff:.2e}");
        assert!(diff < 1e-4, "{name}: logits moved by {diff}");
        assert_eq!(greedy(&orig, &prompt, 24), greedy(&ob, &prompt, 24), "{name}: greedy tokens");
        // The transform changed what it touches: some matrix is not the original's.
        let after: std::collections::HashMap<String, tch::Tensor> =
            llama(&ob).state_dict().unwrap().into_iter().collect();
        let changed = before
            .iter()
            .filter(|(n, t)| {
                t.dim() == 2 && after.get(n).is_some_and(|a| a.size() == t.size() && max_abs_diff(a, t) > 1e-3)
            })
            .count();
        assert!(changed > 0, "{name} changed no matrix");
        if name == "all" {
            // Every matrix moved, and none keeps a row of the original (up to scale).
            for (n, t) in before.iter().filter(|(_, t)| t.dim() == 2) {
                let a = &after[n];
                let cos = best_row_cosine(t, a, 64).unwrap();
                assert!(cos < 0.9, "{n}: a row survived (cosine {cos})");
            }
            // The seed is not in the artefact.
            let cfg = std::fs::read_to_string(out.join("config.json")).unwrap();
            assert!(!cfg.to_lowercase().contains("seed"), "{cfg}");
        }
    }
    // Another seed, another artefact; the same seed, the same artefact.
    let (a, b, c) = (dir.path().join("s1"), dir.path().join("s1b"), dir.path().join("s2"));
    for (p, seed) in [(&a, 1), (&b, 1), (&c, 2)] {
        obfuscate(&orig, seed, &ObfuscateOptions::default(), p).unwrap();
    }
    let read = |p: &std::path::Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert_eq!(read(&a), read(&b));
    assert_ne!(read(&a), read(&c));
}

#[test]
fn obfuscated_smollm2_generates_the_same_greedy_tokens_on_20_prompts_with_no_original_row_left() {
    let orig = smollm();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("obf");
    obfuscate(&orig, 2026, &ObfuscateOptions::default(), &out).unwrap();
    let ob = load(&out);
    let prompts = [
        "Once upon a time, there was a little girl who",
        "The capital of France is",
        "def fibonacci(n):",
        "The three primary colours are",
        "In 1969, the first man on the moon",
        "A recipe for pancakes: first,",
        "The quick brown fox",
        "Water boils at",
        "My favourite video game is",
        "The knight drew his sword and",
        "Photosynthesis is the process",
        "To be or not to be,",
        "The stock market today",
        "Dear diary, today I",
        "The best way to learn programming is",
        "In the middle of the forest stood",
        "Rain fell on the city as",
        "The spaceship landed on",
        "Ten reasons to visit Italy: 1.",
        "She opened the old box and found",
    ];
    // The obfuscated copy is dense f32; compare with the original decoding on its dense f32
    // weights too (the Q4_1 kernels round differently), and report against them as well.
    let mut dense = load(&smollm_gguf());
    if let Network::Llama(l) = &mut dense.net {
        l.disable_quantized_kernels();
    }
    let (mut same, mut same_q, mut worst) = (0, 0, 0f64);
    for p in prompts {
        let ids = orig.tokenizer.encode(p).unwrap();
        let ours = greedy(&ob, &ids, 16);
        same += usize::from(greedy(&dense, &ids, 16) == ours);
        same_q += usize::from(greedy(&orig, &ids, 16) == ours);
        worst = worst.max(max_abs_diff(&dense.logits(&ids).unwrap(), &ob.logits(&ids).unwrap()));
    }
    println!("greedy tokens identical on {same}/20 prompts (dense original), {same_q}/20 (Q4_1 original); max |Δlogit| {worst:.2e}");
    assert_eq!(same, 20, "greedy tokens differ from the dense original");
    assert!(worst < 1e-2, "logits moved by {worst}");
    println!("tensor | best |cosine| of an obfuscated row to any original row");
    let before: std::collections::HashMap<String, tch::Tensor> =
        llama(&dense).state_dict().unwrap().into_iter().collect();
    let mut worst_cos = 0f64;
    for (n, a) in llama(&ob).state_dict().unwrap() {
        let key = if n == "lm_head.weight" && !before.contains_key(&n) {
            "model.embed_tokens.weight".to_string()
        } else {
            n.clone()
        };
        let Some(b) = before.get(&key) else { continue };
        if a.dim() != 2 || !(n.contains("layers.0.") || n.contains("layers.29.") || !n.contains("layers.")) {
            continue;
        }
        let cos = best_row_cosine(b, &a, 64).unwrap();
        println!("{n} | {cos:.3}");
        worst_cos = worst_cos.max(cos);
    }
    assert!(worst_cos < 0.9, "a row of the original survived (cosine {worst_cos})");
}

#[test]
fn an_obfuscated_gguf_keeps_the_metadata_loads_and_answers_as_the_original() {
    let orig = smollm();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("obf.gguf");
    brainmesh_models::obfuscate::obfuscate_gguf(&orig, 77, &ObfuscateOptions::default(), &out).unwrap();
    let g = brainmesh_models::gguf::GgufFile::open(&out).unwrap();
    assert!(g.get_str("tokenizer.chat_template").is_ok(), "the chat template travels");
    assert!(g.tensor_info("output.weight").is_some(), "the rotated head is untied");
    let ob = load(&out);
    let mut dense = load(&smollm_gguf());
    if let Network::Llama(l) = &mut dense.net {
        l.disable_quantized_kernels();
    }
    for p in ["Once upon a time, there was a little girl who", "The capital of France is", "def add(a, b):"] {
        let ids = orig.tokenizer.encode(p).unwrap();
        assert_eq!(ob.tokenizer.encode(p).unwrap(), ids, "the tokenizer travels");
        assert_eq!(greedy(&ob, &ids, 16), greedy(&dense, &ids, 16), "{p}");
    }
}
