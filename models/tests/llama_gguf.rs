//! SmolLM2-135M-Instruct (GGUF, Q4_1) in brainmesh against Hugging Face transformers loading the
//! same file (`gguf_file=`), plus chat, batching and streaming behaviour.

mod common;

use brainmesh_models::{FinishReason, GenerateConfig, TokenEvent};
use common::*;
use serde_json::json;

const PROMPTS: [&str; 3] = [
    "Once upon a time, there was a little girl who",
    "The 3 largest planets are 12345 and",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
];
const GREEDY: usize = 32;
const QUESTION: &str = "What is the capital of France?";

#[test]
fn gguf_logits_tokens_and_32_greedy_tokens_match_transformers() {
    let m = smollm();
    let ids: Vec<Vec<u32>> = PROMPTS.iter().map(|p| m.tokenizer.encode(p).expect("encode")).collect();
    let request = json!({
        "gguf": smollm_gguf(),
        "threads": threads(),
        "prompts": ids.iter().enumerate().map(|(i, x)| json!({
            "ids": x, "greedy_new_tokens": if i < 2 { GREEDY } else { 0 }
        })).collect::<Vec<_>>(),
        "texts": PROMPTS,
        "chats": [QUESTION],
    });
    let reference = run_reference("ref_llama_gguf.py", &request);

    for (i, x) in ids.iter().enumerate() {
        // The tokenizer built from GGUF metadata agrees with transformers' GGUF tokenizer.
        assert_eq!(x, &to_u32(&reference[&format!("tok_{i}")]), "token ids of prompt {i}");
        let ours = m.logits(x).expect("logits");
        let theirs = &reference[&format!("logits_{i}")];
        let diff = max_abs_diff(&ours, theirs);
        println!(
            "prompt {i}: {} tokens, max |logit diff| = {diff:.2e}; last-position argmax ours {} theirs {}, logit[0] ours {:.6} theirs {:.6}",
            x.len(),
            ours.get(-1).argmax(0, false).int64_value(&[]),
            theirs.get(-1).argmax(0, false).int64_value(&[]),
            ours.double_value(&[-1, 0]),
            theirs.double_value(&[-1, 0]),
        );
        assert_eq!(ours.size(), vec![x.len() as i64, 49152]);
        assert!(ours.std(true).double_value(&[]) > 0.5, "degenerate logits");
        assert!(diff < 1e-3, "prompt {i}: logits differ by {diff}");
    }
    // Our ChatML rendering (default system prompt included) is what transformers renders.
    let chat = m.tokenizer.encode(&m.tokenizer.chat_prompt(QUESTION).expect("chat template")).expect("encode chat");
    assert_eq!(chat, to_u32(&reference["chat_0"]), "chat template");
    let cfg = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(GREEDY) };
    for i in 0..2 {
        let g = m.generate(&ids[i..=i], &cfg, &mut |_| true).expect("generate").remove(0);
        let theirs = to_u32(&reference[&format!("greedy_{i}")]);
        assert_eq!(g.tokens.len(), GREEDY);
        assert_eq!(g.tokens, theirs, "greedy tokens of prompt {i}: ours {:?}", g.text);
    }
}

#[test]
fn chat_mode_answers_the_capital_of_france_with_paris() {
    let m = smollm();
    let cfg = GenerateConfig::greedy(24);
    let g = m.generate_text(QUESTION, true, &cfg, &mut |_| true).expect("generate");
    println!("answer: {:?} ({:?})", g.text, g.finish);
    assert!(g.text.contains("Paris"), "answer was {:?}", g.text);
}

#[test]
fn a_batch_of_prompts_of_different_lengths_generates_what_each_prompt_generates_alone() {
    let m = smollm();
    let prompts: Vec<Vec<u32>> = ["The sky is", "My favourite recipe for a quick dinner is"]
        .iter()
        .map(|p| m.tokenizer.encode(p).expect("encode"))
        .collect();
    assert_ne!(prompts[0].len(), prompts[1].len());
    let cfg = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(8) };
    let batch = m.generate(&prompts, &cfg, &mut |_| true).expect("batch");
    for (i, p) in prompts.iter().enumerate() {
        let alone = m.generate(std::slice::from_ref(p), &cfg, &mut |_| true).expect("single").remove(0);
        assert_eq!(batch[i].tokens, alone.tokens, "prompt {i}");
    }
}

#[test]
fn streamed_pieces_add_up_to_the_text_and_stop_sequences_cut_it() {
    let m = smollm();
    let prompt = m.tokenizer.encode("Count: 1, 2, 3, 4,").expect("encode");
    let free =
        m.generate(std::slice::from_ref(&prompt), &GenerateConfig::greedy(12), &mut |_| true).expect("free").remove(0);
    // stop at a piece of text the unconstrained run produced
    let cut_at = free.text.find("6").expect("the model keeps counting");
    let mut streamed = String::new();
    let mut events = 0;
    let cfg = GenerateConfig { stop: vec!["6".into()], ..GenerateConfig::greedy(12) };
    let g = m
        .generate(std::slice::from_ref(&prompt), &cfg, &mut |e: &TokenEvent| {
            events += 1;
            streamed.push_str(e.text);
            true
        })
        .expect("stopped")
        .remove(0);
    assert_eq!(g.finish, FinishReason::StopSequence);
    assert_eq!(g.text, free.text[..cut_at]);
    assert_eq!(streamed, g.text);
    assert_eq!(events, g.tokens.len());
}

#[test]
fn the_callback_can_cancel_a_generation() {
    let m = smollm();
    let prompt = m.tokenizer.encode("Hello").expect("encode");
    let mut n = 0;
    let g = m
        .generate(&[prompt], &GenerateConfig::greedy(20), &mut |_| {
            n += 1;
            n < 3
        })
        .expect("generate")
        .remove(0);
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(g.finish, FinishReason::Cancelled);
}

#[test]
fn decode_steps_on_quantized_weights_agree_with_a_dense_full_forward_within_1e_3() {
    let m = smollm();
    let ids = m.tokenizer.encode("The quick brown fox jumps over the lazy dog because it").expect("encode");
    // Full pass over every position: dense f32 weights (many rows per matmul).
    let full = m.logits(&ids).expect("logits");
    // One token at a time through the KV cache: on CPU this runs the quantized kernels.
    let _guard = tch::no_grad_guard();
    let mut cache = m.net.new_cache(vec![0], ids.len()).expect("cache");
    let mut worst = 0f64;
    for (i, &t) in ids.iter().enumerate() {
        let x = tch::Tensor::from_slice(&[t as i64]).view([1, 1]);
        let step = m.net.forward(&x, Some(&mut cache), true).expect("step").view([-1]);
        worst = worst.max(max_abs_diff(&step, &full.get(i as i64)));
    }
    println!("quantized kernels: {}, worst |decode - full| = {worst:.2e}", m.net.uses_quantized_kernels());
    assert!(worst < 1e-3, "decode logits differ from the full pass by {worst}");
}

#[test]
fn a_hugging_face_llama_directory_saved_by_transformers_loads_and_matches() {
    let ids = smollm().tokenizer.encode("Paris is the capital of").expect("encode");
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = run_reference("export_hf_llama.py", &json!({"gguf": smollm_gguf(), "dir": dir.path(), "ids": ids}));
    let opts = brainmesh_models::LoadOptions { threads: Some(threads()), ..Default::default() };
    let hf = brainmesh_models::Model::load(dir.path(), &opts, &mut |_| {}).expect("load HF directory");
    assert_eq!(hf.net.arch(), "llama");
    // The tokenizer.json transformers wrote tokenizes like the GGUF tokenizer.
    assert_eq!(hf.tokenizer.encode("Paris is the capital of").expect("encode"), ids);
    let ours = hf.logits(&ids).expect("logits");
    let diff = max_abs_diff(&ours, &reference["logits"]);
    println!("HF directory: max |logit diff| vs transformers = {diff:.2e}");
    assert!(diff < 1e-3, "{diff}");
    let g = hf
        .generate_text("What is the capital of France?", true, &GenerateConfig::greedy(16), &mut |_| true)
        .expect("chat");
    assert!(g.text.contains("Paris"), "{:?}", g.text);
}

#[test]
fn a_prefix_cache_hit_skips_the_shared_prefill_and_yields_the_same_greedy_tokens() {
    use brainmesh_models::PrefixCache;
    let m = smollm();
    let system = "You are a helpful assistant who answers questions about geography briefly and precisely. ".repeat(3);
    let chat = |q: &str| {
        m.tokenizer
            .chat_template
            .render(&[
                brainmesh_models::ChatMessage::new("system", system.clone()),
                brainmesh_models::ChatMessage::new("user", q.to_string()),
            ])
            .expect("chat template")
    };
    let first = m.tokenizer.encode(&chat("What is the capital of France?")).expect("encode");
    let second = m.tokenizer.encode(&chat("What is the capital of Italy?")).expect("encode");
    let shared = brainmesh_models::prefix::common_prefix(&first, &second);
    assert!(shared > 40, "the prompts share their system prompt ({shared} tokens)");
    let cfg = GenerateConfig::greedy(12);
    let mut pc = PrefixCache::new(8, 8192, 16);
    let (_, reused) = m.generate_with_prefix_cache(&first, &cfg, &mut pc, &mut |_| true).expect("first");
    assert_eq!(reused, 0, "cold cache");
    let (hot, reused) = m.generate_with_prefix_cache(&second, &cfg, &mut pc, &mut |_| true).expect("second");
    assert_eq!(reused, shared, "the whole shared prefix comes from the cache");
    let cold = m.generate(std::slice::from_ref(&second), &cfg, &mut |_| true).expect("uncached").remove(0);
    assert_eq!(hot.tokens, cold.tokens, "cached: {:?} uncached: {:?}", hot.text, cold.text);
    let s = pc.stats();
    assert_eq!((s.lookups, s.hits, s.reused_tokens), (2, 1, shared as u64));
}

/// Log-softmax of one row after OpenAI's logit processing (bias, frequency and presence
/// penalties over `output`) at temperature `t` (0: unscaled) — written out independently of the
/// engine, on transformers' logits.
fn reference_logprobs(row: &[f32], output: &[u32], bias: &[(u32, f32)], freq: f32, pres: f32, t: f32) -> Vec<f64> {
    let mut l: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
    for &(tok, b) in bias {
        l[tok as usize] += f64::from(b);
    }
    let mut counts = std::collections::HashMap::<u32, usize>::new();
    for &o in output {
        *counts.entry(o).or_default() += 1;
    }
    for (&tok, &c) in &counts {
        l[tok as usize] -= f64::from(freq) * c as f64 + f64::from(pres);
    }
    let scale = if t > 0.0 { 1.0 / f64::from(t) } else { 1.0 };
    let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max * scale + l.iter().map(|x| ((x - max) * scale).exp()).sum::<f64>().ln();
    l.iter().map(|x| x * scale - lse).collect()
}

#[test]
fn reported_logprobs_are_transformers_log_softmax_after_penalties_bias_and_temperature() {
    let m = smollm();
    let prompt = m.tokenizer.encode(PROMPTS[0]).expect("encode");
    let runs = [
        GenerateConfig { logprobs: Some(5), ignore_eos: true, ..GenerateConfig::greedy(12) },
        GenerateConfig {
            temperature: 0.8,
            seed: 5,
            frequency_penalty: 0.4,
            presence_penalty: 0.3,
            logit_bias: vec![(264, -3.0), (1848, 2.0)],
            logprobs: Some(5),
            ignore_eos: true,
            ..GenerateConfig::greedy(12)
        },
    ];
    let mut outputs = Vec::new();
    for cfg in &runs {
        let mut reported = Vec::new();
        let g = m
            .generate(std::slice::from_ref(&prompt), cfg, &mut |e: &TokenEvent| {
                reported.push(e.logprob.clone().expect("logprobs asked for"));
                true
            })
            .expect("generate")
            .remove(0);
        assert_eq!(reported.len(), g.tokens.len());
        // The tokens' bytes spell the text.
        let bytes: Vec<u8> = g.tokens.iter().flat_map(|&t| m.tokenizer.token_bytes(t)).collect();
        assert_eq!(String::from_utf8_lossy(&bytes), g.text);
        outputs.push((g.tokens, reported));
    }
    let request = json!({
        "gguf": smollm_gguf(),
        "threads": threads(),
        "prompts": outputs.iter().map(|(out, _)| {
            let mut ids = prompt.clone();
            ids.extend_from_slice(&out[..out.len() - 1]);
            json!({"ids": ids})
        }).collect::<Vec<_>>(),
    });
    let reference = run_reference("ref_llama_gguf.py", &request);
    let mut worst = 0f64;
    for (r, ((out, reported), cfg)) in outputs.iter().zip(&runs).enumerate() {
        let logits = &reference[&format!("logits_{r}")];
        for (k, (&tok, lp)) in out.iter().zip(reported).enumerate() {
            let row = Vec::<f32>::try_from(logits.get((prompt.len() - 1 + k) as i64)).expect("row");
            let want = reference_logprobs(
                &row,
                &out[..k],
                &cfg.logit_bias,
                cfg.frequency_penalty,
                cfg.presence_penalty,
                cfg.temperature,
            );
            worst = worst.max((f64::from(lp.logprob) - want[tok as usize]).abs());
            assert_eq!(lp.top.len(), 5);
            let mut best: Vec<f64> = want.clone();
            best.sort_by(|a, b| b.total_cmp(a));
            for (j, &(id, v)) in lp.top.iter().enumerate() {
                worst = worst.max((f64::from(v) - want[id as usize]).abs());
                worst = worst.max((f64::from(v) - best[j]).abs());
            }
        }
    }
    println!(
        "largest |logprob - transformers'| over {} tokens: {worst:.2e}",
        outputs.iter().map(|o| o.0.len()).sum::<usize>()
    );
    assert!(worst < 1e-3, "logprobs differ from transformers' by {worst}");
}
