//! Held-out perplexity of a model on a text: the first `--tokens` tokens cut into windows of
//! `--window`, each scored on its own (no context carried over). Prints one JSON object.
//! Used by benches/squeeze_table.sh.
//!
//! perplexity --model PATH --text FILE [--tokens 2048] [--window 128] [--threads 2]

use brainmesh_models::{LoadOptions, Model};
use tch::Kind;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = arg(&args, "--model").ok_or_else(|| anyhow::anyhow!("--model PATH"))?;
    let text_path = arg(&args, "--text").ok_or_else(|| anyhow::anyhow!("--text FILE"))?;
    let tokens: usize = arg(&args, "--tokens").map(|s| s.parse()).transpose()?.unwrap_or(2048);
    let window: usize = arg(&args, "--window").map(|s| s.parse()).transpose()?.unwrap_or(128);
    let threads: usize = arg(&args, "--threads").map(|s| s.parse()).transpose()?.unwrap_or(2);
    let model = Model::load(&model_path, &LoadOptions { threads: Some(threads), ..Default::default() }, &mut |_| {})?;
    let ids = model.tokenizer.encode(&std::fs::read_to_string(&text_path)?)?;
    let ids = &ids[..tokens.min(ids.len())];
    let (mut nll, mut n) = (0f64, 0usize);
    for w in ids.chunks_exact(window) {
        let logits = model.logits(w)?; // [T, V]
        let t = w.len() as i64;
        let target: Vec<i64> = w[1..].iter().map(|&x| x as i64).collect();
        let lp = logits.narrow(0, 0, t - 1).log_softmax(-1, Kind::Float);
        let picked = lp.gather(1, &tch::Tensor::from_slice(&target).unsqueeze(1), false);
        nll -= picked.sum(Kind::Double).double_value(&[]);
        n += (t - 1) as usize;
    }
    anyhow::ensure!(n > 0, "text too short for one window of {window}");
    println!(
        "{}",
        serde_json::json!({ "ppl": (nll / n as f64).exp(), "tokens": n, "window": window, "model": model_path })
    );
    Ok(())
}
