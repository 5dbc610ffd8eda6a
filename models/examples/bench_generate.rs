//! Measures brainmesh on one model: prefill tokens/s for an N-token prompt, decode tokens/s
//! for M new tokens (greedy, EOS ignored), load time, peak RSS. Prints one JSON object.
//! Used by benches/models_compare.sh; prompt ids are written so the other engines use the same.
//!
//! bench_generate --model M.gguf --text FILE [--threads 2] [--prompt-tokens 128] [--new-tokens 128] [--dense]

use std::time::Instant;

use brainmesh_models::{GenerateConfig, LoadOptions, Model};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = arg(&args, "--model").ok_or_else(|| anyhow::anyhow!("--model PATH"))?;
    let text_path = arg(&args, "--text").ok_or_else(|| anyhow::anyhow!("--text FILE"))?;
    let threads: usize = arg(&args, "--threads").map(|s| s.parse()).transpose()?.unwrap_or(2);
    let n_prompt: usize = arg(&args, "--prompt-tokens").map(|s| s.parse()).transpose()?.unwrap_or(128);
    let n_new: usize = arg(&args, "--new-tokens").map(|s| s.parse()).transpose()?.unwrap_or(128);
    let reps: usize = arg(&args, "--reps").map(|s| s.parse()).transpose()?.unwrap_or(3);

    let t0 = Instant::now();
    let opts = LoadOptions { threads: Some(threads), ..Default::default() };
    let mut model = Model::load(&model_path, &opts, &mut |_| {})?;
    // --dense: decode on the dense f32 weights too (no quantized kernels), for comparison.
    let dense = args.iter().any(|a| a == "--dense");
    if dense {
        if let brainmesh_models::Network::Llama(l) = &mut model.net {
            l.disable_quantized_kernels();
        }
    }
    let load_s = t0.elapsed().as_secs_f64();

    let text = std::fs::read_to_string(&text_path)?;
    let mut ids = model.tokenizer.encode(&text[..text.len().min(20_000)])?;
    anyhow::ensure!(ids.len() >= n_prompt, "text too short");
    ids.truncate(n_prompt);
    let prompt = vec![ids.clone()];

    // warm-up (first-call allocations, thread pool start)
    model.generate(&prompt, &GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(2) }, &mut |_| true)?;

    let mut prefill = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        model.generate(&prompt, &GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(1) }, &mut |_| true)?;
        prefill.push(t.elapsed().as_secs_f64());
    }
    prefill.sort_by(f64::total_cmp);
    let prefill_s = prefill[prefill.len() / 2];

    let mut decode = Vec::new();
    for _ in 0..reps {
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let cfg = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(n_new + 1) };
        let g = model.generate(&prompt, &cfg, &mut |_| {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            true
        })?;
        anyhow::ensure!(g[0].tokens.len() == n_new + 1, "short generation");
        let span = first.map(|f| last.duration_since(f).as_secs_f64()).unwrap_or(f64::NAN);
        decode.push(n_new as f64 / span);
    }
    decode.sort_by(f64::total_cmp);
    let decode_tps = decode[decode.len() / 2];

    let out = serde_json::json!({
        "engine": if dense { "brainmesh (dense f32 decode)" } else { "brainmesh" },
        "threads": threads,
        "load_s": load_s,
        "prompt_tokens": n_prompt,
        "new_tokens": n_new,
        "prefill_tok_s": n_prompt as f64 / prefill_s,
        "decode_tok_s": decode_tps,
        "peak_rss_mib": peak_rss_mib(),
        "prompt_ids": ids,
    });
    println!("{out}");
    Ok(())
}
