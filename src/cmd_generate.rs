//! `brainmesh generate`: run a model locally and print tokens as they come.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use brainmesh_actors::models::{DevicePref, GenerateConfig, LoadOptions, LoadProgress, Model, TokenEvent};
use indicatif::{ProgressBar, ProgressStyle};

/// Generate text with a local model (GGUF file or Hugging Face directory).
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// A .gguf file, or a Hugging Face directory (config.json + *.safetensors + tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (ChatML for SmolLM2).
    #[arg(long)]
    pub chat: bool,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Penalty (> 1) for tokens already present in the prompt or the output.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Stop when this text appears (may be repeated).
    #[arg(long)]
    pub stop: Vec<String>,
    /// CPU threads for LibTorch (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device: auto (CUDA if present, else CPU), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DevicePref,
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let opts = LoadOptions { device: args.device, threads: args.threads, kind: None };
    let bar = ProgressBar::new(0).with_message(format!("loading {}", args.model.display()));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors {elapsed}")
            .context("progress style")?
            .progress_chars("=> "),
    );
    let t_load = Instant::now();
    let model = Model::load(&args.model, &opts, &mut |p: LoadProgress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    })
    .with_context(|| format!("loading model {}", args.model.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "loaded {} ({}, {} on {}{}) in {:.1}s",
        args.model.display(),
        model.net.arch(),
        model.net.dtype_name(),
        model.net.device_name(),
        if model.net.uses_quantized_kernels() { ", decode on quantized weights" } else { "" },
        t_load.elapsed().as_secs_f64()
    );
    let cfg = GenerateConfig {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        repetition_penalty: args.repetition_penalty,
        stop: args.stop.clone(),
        ..GenerateConfig::default()
    };
    let mut out = std::io::stdout().lock();
    let t_gen = Instant::now();
    let mut first_token: Option<f64> = None;
    let mut write_err: Option<std::io::Error> = None;
    let g = model.generate_text(&args.prompt, args.chat, &cfg, &mut |e: &TokenEvent| {
        first_token.get_or_insert_with(|| t_gen.elapsed().as_secs_f64());
        if let Err(err) = out.write_all(e.text.as_bytes()).and_then(|_| out.flush()) {
            write_err = Some(err);
            return false;
        }
        true
    })?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    writeln!(out).ok();
    let total = t_gen.elapsed().as_secs_f64();
    let prefill = first_token.unwrap_or(total);
    let decode_tokens = g.tokens.len().saturating_sub(1);
    eprintln!(
        "[{} prompt tokens, {} new tokens, {:?}; first token {:.2}s, decode {:.1} tok/s]",
        g.prompt_tokens,
        g.tokens.len(),
        g.finish,
        prefill,
        if total > prefill { decode_tokens as f64 / (total - prefill) } else { 0.0 }
    );
    Ok(())
}
