//! Proofs of inference on a real SmolLM2 generation: byte-identical to the reference `toploc`
//! 0.1.6 on the same activations, accepted by toploc's verifier against activations that Hugging
//! Face transformers recomputes on its own, and brainmesh's re-check (`proof::check`) passing an
//! honest transcript and failing tampered ones.

mod common;

use brainmesh_models::proof::{self, ProofConfig, Tolerance};
use brainmesh_models::{GenerateConfig, PrefixCache};
use common::*;
use serde_json::json;

const PROMPT: &str = "Write a short story about a lighthouse keeper.";

fn sampled(n: usize) -> GenerateConfig {
    GenerateConfig { temperature: 0.8, top_p: Some(0.95), seed: 11, ignore_eos: true, ..GenerateConfig::greedy(n) }
}

#[test]
fn proofs_are_byte_identical_to_toploc_and_its_verifier_accepts_them() {
    let m = smollm();
    let ids = m.tokenizer.encode(&m.tokenizer.chat_prompt(PROMPT).expect("chat template")).expect("encode");
    assert!(ids.len() * 576 < 65_497, "the prompt stays short enough for toploc's Python verifier path");
    let cfg = sampled(70);
    let mut off = PrefixCache::new(0, 0, 16);
    let (g, _, acts) = m.generate_with_activations(&ids, &cfg, &mut off, &mut |_| true).expect("generate");
    assert_eq!(g.tokens.len(), 70);
    assert_eq!(acts.len(), 70, "the prefill plus one entry per fed-back token");
    assert_eq!(acts[0].size(), vec![ids.len() as i64, 576]);
    let pc = ProofConfig::default();
    let proofs = proof::build_proofs(&acts, &pc).expect("proofs");
    assert_eq!(proofs.len(), 4, "prefill + ceil(69 / 32) decode chunks");
    let bytes: usize = proofs.iter().map(|p| p.to_bytes().len()).sum();
    println!(
        "proof bytes: {bytes} for {} generated tokens = {:.2} B/token",
        g.tokens.len(),
        bytes as f64 / g.tokens.len() as f64
    );
    assert!(bytes as f64 / g.tokens.len() as f64 <= 16.0);

    let dir = tempfile::tempdir().expect("tmp");
    let acts_path = dir.path().join("acts.safetensors");
    let named: Vec<(String, tch::Tensor)> =
        acts.iter().enumerate().map(|(i, t)| (format!("act_{i}"), t.shallow_clone())).collect();
    tch::Tensor::write_safetensors(&named, &acts_path).expect("write activations");
    let reference = run_reference(
        "ref_toploc.py",
        &json!({
            "gguf": smollm_gguf(),
            "threads": threads(),
            "acts": acts_path,
            "proofs": proofs.iter().map(|p| hex(&p.to_bytes())).collect::<Vec<_>>(),
            "prompt_ids": ids,
            "output_ids": g.tokens,
            "decode_batch": pc.decode_batch,
            "topk": pc.topk,
        }),
    );
    let rebuilt = Vec::<i64>::try_from(&reference["rebuilt"]).expect("rebuilt");
    assert_eq!(rebuilt, vec![1; proofs.len()], "toploc.build_proofs_bytes gives brainmesh's bytes for every chunk");
    let rows = |name: &str| -> Vec<Vec<f64>> {
        let t = &reference[name];
        (0..t.size()[0]).map(|i| Vec::<f64>::try_from(&t.get(i)).expect("row")).collect()
    };
    for r in rows("self_check") {
        assert_eq!(r, vec![0.0, 0.0, 0.0], "toploc verifies brainmesh's proofs on the same activations exactly");
    }
    let tol = Tolerance::default();
    for (i, r) in rows("hf_check").iter().enumerate() {
        println!("chunk {i}: toploc verifier vs transformers' recomputation: exp mismatches {} of 128, mantissa err mean {:.2} median {}", r[0], r[1], r[2]);
        assert!(
            r[0] <= tol.max_exp_mismatches as f64 && r[1] <= tol.max_mant_err_mean && r[2] <= tol.max_mant_err_median,
            "toploc's thresholds reject chunk {i}: {r:?}"
        );
    }

    // brainmesh's own re-check: one forward pass, fingerprints and the sampler replay.
    let report = proof::check(&m, &ids, &g.tokens, &proofs, &cfg, &pc, &tol).expect("check");
    println!("honest re-check: {report:?}");
    assert!(report.passed, "{report:?}");
    assert_eq!(report.tokens_checked, 70);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tampered_transcripts_fail_the_recheck_and_prefix_cache_hits_still_prove() {
    let m = smollm();
    let pc = ProofConfig::default();
    let tol = Tolerance::default();
    let ids = m
        .tokenizer
        .encode(
            &m.tokenizer
                .chat_prompt("Name three rivers in Europe and say one thing about each.")
                .expect("chat template"),
        )
        .expect("encode");
    let greedy = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(40) };
    let mut cache = PrefixCache::new(8, 4096, 16);
    let (g, reused, acts) = m.generate_with_activations(&ids, &greedy, &mut cache, &mut |_| true).expect("generate");
    assert_eq!(reused, 0);
    let proofs = proof::build_proofs(&acts, &pc).expect("proofs");
    assert!(proof::check(&m, &ids, &g.tokens, &proofs, &greedy, &pc, &tol).expect("check").passed);

    // The same prompt again: the prefill is restored from the prefix cache, hidden states too.
    let (g2, reused2, acts2) = m.generate_with_activations(&ids, &greedy, &mut cache, &mut |_| true).expect("generate");
    assert!(reused2 > 0, "prefix cache hit");
    assert_eq!(acts2[0].size(), acts[0].size());
    let proofs2 = proof::build_proofs(&acts2, &pc).expect("proofs");
    let r2 = proof::check(&m, &ids, &g2.tokens, &proofs2, &greedy, &pc, &tol).expect("check");
    assert!(r2.passed, "a prefix-cache hit still proves: {r2:?}");

    // Edited output: one token changed in the middle.
    let mut edited = g.tokens.clone();
    edited[20] = (edited[20] + 1) % 49_152;
    let r = proof::check(&m, &ids, &edited, &proofs, &greedy, &pc, &tol).expect("check");
    println!("edited: {r:?}");
    assert!(!r.passed);
    // Random tokens with proofs the miner made up from them.
    let random: Vec<u32> = (0..40u32).map(|i| (i * 7919 + 13) % 49_152).collect();
    let r = proof::check(&m, &ids, &random, &proofs, &greedy, &pc, &tol).expect("check");
    assert!(!r.passed && r.implausible_tokens > 30, "{r:?}");
    // The right answer under another prompt (a replay): fingerprints of the prefill differ.
    let other = m
        .tokenizer
        .encode(
            &m.tokenizer
                .chat_prompt("Name three mountains in Asia and say one thing about each.")
                .expect("chat template"),
        )
        .expect("encode");
    let r = proof::check(&m, &other, &g.tokens, &proofs, &greedy, &pc, &tol).expect("check");
    println!("replayed under another prompt: {r:?}");
    assert!(!r.passed && r.failed_chunks >= 1, "{r:?}");
    // Wrong proof count.
    let r = proof::check(&m, &ids, &g.tokens, &proofs[..1], &greedy, &pc, &tol).expect("check");
    assert!(!r.passed);
}
