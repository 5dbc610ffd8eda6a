//! What constrained decoding costs: decode tokens/s of the same greedy generation with and
//! without a grammar mask (structured outputs), side by side in one run. Prints one JSON object.
//!
//! bench_grammar --model M.gguf [--threads 2] [--new-tokens 96] [--reps 3]

use std::sync::Arc;
use std::time::Instant;

use brainmesh_models::grammar::{Grammar, ResponseFormat};
use brainmesh_models::{GenerateConfig, LoadOptions, Model};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Median seconds per generated token over `reps` runs, and the last run's text.
fn per_token(model: &Model, prompt: &[u32], cfg: &GenerateConfig, reps: usize) -> anyhow::Result<(f64, usize, String)> {
    let mut times = Vec::new();
    let mut last = (0, String::new());
    for _ in 0..reps {
        let t0 = Instant::now();
        let g = model.generate(&[prompt.to_vec()], cfg, &mut |_| true)?.remove(0);
        times.push(t0.elapsed().as_secs_f64() / g.tokens.len().max(1) as f64);
        last = (g.tokens.len(), g.text);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], last.0, last.1))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = arg(&args, "--model").ok_or_else(|| anyhow::anyhow!("--model PATH"))?;
    let threads: usize = arg(&args, "--threads").map(|s| s.parse()).transpose()?.unwrap_or(2);
    let n_new: usize = arg(&args, "--new-tokens").map(|s| s.parse()).transpose()?.unwrap_or(96);
    let reps: usize = arg(&args, "--reps").map(|s| s.parse()).transpose()?.unwrap_or(3);
    let opts = LoadOptions { threads: Some(threads), ..Default::default() };
    let model = Model::load(&model_path, &opts, &mut |_| {})?;
    let prompt = model.tokenizer.encode(&model.tokenizer.chat_prompt(
        "Describe three fantasy game characters as JSON, with names, classes, levels and a long backstory for each.",
    )?)?;
    let schema = serde_json::json!({"type": "object", "properties": {"characters": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}, "class": {"enum": ["warrior", "mage", "rogue"]},
        "level": {"type": "integer"}, "backstory": {"type": "string"}}}}}});
    // The token table is built once per tokenizer; build it before timing.
    let _ = model.tokenizer.token_table();
    let plain = GenerateConfig { ignore_eos: true, ..GenerateConfig::greedy(n_new) };
    let (t_plain, n_plain, _) = per_token(&model, &prompt, &plain, reps)?;
    let mut out = serde_json::json!({"model": model_path, "threads": threads, "new_tokens": n_new,
        "plain_ms_per_token": t_plain * 1e3, "plain_tokens": n_plain});
    for (name, grammar) in
        [("json_schema", ResponseFormat::JsonSchema { schema }.compile()?), ("json_object", Grammar::json_object())]
    {
        let cfg = GenerateConfig { grammar: Some(Arc::new(grammar)), ..GenerateConfig::greedy(n_new) };
        let (t, n, text) = per_token(&model, &prompt, &cfg, reps)?;
        out[format!("{name}_ms_per_token")] = (t * 1e3).into();
        out[format!("{name}_tokens")] = n.into();
        out[format!("{name}_over_plain")] = (t / t_plain).into();
        out[format!("{name}_parses")] = serde_json::from_str::<serde_json::Value>(&text).is_ok().into();
    }
    println!("{out}");
    Ok(())
}
