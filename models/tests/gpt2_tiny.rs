//! The GPT-2 path on the committed tiny checkpoint (trained by `examples/train_tiny_gpt2.rs`)
//! against transformers' `GPT2LMHeadModel` on the same directory.

mod common;

use brainmesh_models::{GenerateConfig, LoadOptions, Model, ModelError};
use common::*;
use serde_json::json;

fn load() -> Model {
    let opts = LoadOptions { threads: Some(threads()), ..Default::default() };
    Model::load(tiny_gpt2_dir(), &opts, &mut |_| {}).expect("load tiny GPT-2")
}

#[test]
fn tiny_gpt2_logits_tokens_and_greedy_tokens_match_transformers() {
    let m = load();
    assert_eq!(m.net.arch(), "gpt2");
    let texts = ["ROMEO:\nBut soft, what light", "To be, or not to be: that is the question:", "KING HENRY. Once more"];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| m.tokenizer.encode(t).expect("encode")).collect();
    let request = json!({
        "dir": tiny_gpt2_dir(),
        "threads": threads(),
        "prompts": ids.iter().map(|x| json!({"ids": x, "greedy_new_tokens": 32})).collect::<Vec<_>>(),
        "texts": texts,
    });
    let reference = run_reference("ref_gpt2.py", &request);
    let cfg = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(32) };
    for (i, x) in ids.iter().enumerate() {
        assert_eq!(x, &to_u32(&reference[&format!("tok_{i}")]), "token ids of text {i}");
        let ours = m.logits(x).expect("logits");
        let diff = max_abs_diff(&ours, &reference[&format!("logits_{i}")]);
        println!("text {i}: {} tokens, max |logit diff| = {diff:.2e}", x.len());
        assert!(ours.std(true).double_value(&[]) > 0.5, "degenerate logits");
        assert!(diff < 1e-3, "text {i}: logits differ by {diff}");
        let g = m.generate(std::slice::from_ref(x), &cfg, &mut |_| true).expect("generate").remove(0);
        assert_eq!(g.tokens, to_u32(&reference[&format!("greedy_{i}")]), "greedy tokens of text {i}: {:?}", g.text);
    }
}

#[test]
fn tiny_gpt2_has_learned_more_than_unigram_statistics() {
    // Held-out-style check: the trained model predicts Shakespeare far better than uniform.
    let m = load();
    let text = "HAMLET. To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer";
    let ids = m.tokenizer.encode(text).expect("encode");
    let logits = m.logits(&ids).expect("logits");
    let n = ids.len() as i64 - 1;
    let targets = tch::Tensor::from_slice(&ids[1..].iter().map(|&i| i as i64).collect::<Vec<_>>());
    let nll = logits.narrow(0, 0, n).cross_entropy_for_logits(&targets).double_value(&[]);
    let uniform = (m.net.vocab_size() as f64).ln();
    println!("nll {nll:.3} nats/token vs uniform {uniform:.3}");
    assert!(nll < uniform - 2.0, "nll {nll} is not much better than uniform {uniform}");
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_with_a_clear_error() {
    let m = load();
    let ctx = m.net.context_length();
    let ids = vec![1u32; ctx + 5];
    match m.generate(std::slice::from_ref(&ids), &GenerateConfig::greedy(4), &mut |_| true) {
        Err(ModelError::PromptTooLong { prompt_tokens, context }) => {
            assert_eq!((prompt_tokens, context), (ctx + 5, ctx));
        }
        other => panic!("expected PromptTooLong, got {:?}", other.map(|g| g.len())),
    }
    assert!(matches!(m.logits(&ids), Err(ModelError::PromptTooLong { .. })));
    let msg = m.logits(&ids).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("context"), "{msg}");
}

#[test]
fn generation_stops_when_the_context_is_full() {
    let m = load();
    let ctx = m.net.context_length();
    let ids = vec![5u32; ctx - 3];
    let cfg = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(50) };
    let g = m.generate(&[ids], &cfg, &mut |_| true).expect("generate").remove(0);
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(g.finish, brainmesh_models::FinishReason::ContextFull);
}
