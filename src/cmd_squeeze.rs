//! `brainmesh squeeze`: Cerberus Squeezing of a Llama model into a new model directory —
//! head importance on calibration text, pruning by θ or by budget, optional int8/int4 weights
//! and §5.1 activation squeezing — with a JSON report next to the model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use brainmesh_actors::models::squeeze::{self, ActSqueeze, ExportOptions, Quant};
use brainmesh_actors::models::{DevicePref, LoadOptions, LoadProgress, Model, Network};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, clap::Args)]
pub struct SqueezeArgs {
    /// The model to squeeze: a Llama GGUF file or Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The directory to write (safetensors + config.json + tokenizer + squeeze-report.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Prune heads whose per-layer-normalised importance S(h) is at most θ.
    #[arg(long, conflicts_with = "budget")]
    pub theta: Option<f64>,
    /// Keep the most important heads within this fraction (0–1] of the heads' parameters.
    #[arg(long)]
    pub budget: Option<f64>,
    /// Weight quantization: none, int8 (8-bit, 32-wide groups) or int4 (4-bit with minimum).
    #[arg(long, default_value = "none")]
    pub quant: Quant,
    /// Calibration text (importance is measured on it; keep evaluation text separate).
    #[arg(long)]
    pub calib: PathBuf,
    /// Calibration tokens used (from the start of the file).
    #[arg(long, default_value_t = 2048)]
    pub calib_tokens: usize,
    /// Tokens per calibration window.
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Turn on the whitepaper's §5.1 activation squeezing (L = 256, T = 0.1, α = 0.5).
    #[arg(long)]
    pub act_squeeze: bool,
    #[arg(long)]
    pub threads: Option<usize>,
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    b
}

pub fn run(a: &SqueezeArgs) -> anyhow::Result<()> {
    if a.theta.is_none() && a.budget.is_none() {
        bail!("give --theta X (prune heads with S(h) <= X) or --budget Y (keep Y of the heads' parameters)");
    }
    if let Some(b) = a.budget {
        if !(b > 0.0 && b <= 1.0) {
            bail!("--budget must be in (0, 1], got {b}");
        }
    }
    let t0 = Instant::now();
    let opts = LoadOptions { device: DevicePref::Cpu, threads: a.threads, kind: None };
    let lb = bar(0, "loading {msg} [{bar:30}] {pos}/{len} tensors");
    lb.set_message(a.model.display().to_string());
    let model = Model::load(&a.model, &opts, &mut |p: LoadProgress| {
        lb.set_length(p.total as u64);
        lb.set_position(p.done as u64);
    })
    .with_context(|| format!("loading {}", a.model.display()))?;
    lb.finish_and_clear();
    let Network::Llama(llama) = &model.net else {
        bail!("squeeze supports Llama models; {} is {}", a.model.display(), model.net.arch())
    };
    let text = std::fs::read_to_string(&a.calib).with_context(|| format!("reading {}", a.calib.display()))?;
    let ids = model.tokenizer.encode(&text)?;
    let take = a.calib_tokens.min(ids.len());
    let windows = squeeze::windows(&ids[..take], a.window, usize::MAX);
    if windows.is_empty() {
        bail!("{} has fewer than {} tokens", a.calib.display(), a.window);
    }
    let ib = bar(windows.len() as u64, "head importance [{bar:30}] {pos}/{len} windows {elapsed}");
    let imp = squeeze::head_importance(llama, &windows, &mut |done, _| ib.set_position(done as u64))?;
    ib.finish_and_clear();
    let cfg = &llama.cfg;
    let keep = match (a.theta, a.budget) {
        (Some(t), _) => squeeze::by_threshold(&imp.normalized, t),
        (None, Some(b)) => {
            // every query head costs its q rows and o columns: 2 · d · head_dim
            let c = 2.0 * cfg.hidden_size as f64 * cfg.head_dim() as f64;
            let cost: Vec<Vec<f64>> = imp.normalized.iter().map(|l| vec![c; l.len()]).collect();
            squeeze::by_budget(&imp.normalized, &cost, b)
        }
        _ => unreachable!("checked above"),
    };
    let maps: Vec<Vec<usize>> = (0..cfg.num_hidden_layers).map(|i| cfg.kv_map(i)).collect();
    let plans = squeeze::plan(&keep, &maps);
    let eb = bar(1, "writing {msg} {spinner}");
    eb.set_message(a.out.display().to_string());
    eb.enable_steady_tick(std::time::Duration::from_millis(200));
    let opts = ExportOptions { quant: a.quant, act_squeeze: a.act_squeeze.then(ActSqueeze::default) };
    let report = squeeze::export(&model, &plans, &opts, &a.out)?;
    eb.finish_and_clear();
    let json = serde_json::json!({
        "source": a.model,
        "calibration": { "file": a.calib, "tokens": imp.tokens, "windows": imp.windows, "mean_loss": imp.loss },
        "selection": { "theta": a.theta, "budget": a.budget },
        "quant": a.quant,
        "act_squeeze": opts.act_squeeze,
        "importance": { "raw": imp.raw, "normalized": imp.normalized },
        "kept_heads": plans.iter().map(|p| &p.q).collect::<Vec<_>>(),
        "kept_kv_heads": plans.iter().map(|p| &p.kv).collect::<Vec<_>>(),
        "export": report,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    let path = a.out.join("squeeze-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{}: heads {} → {}, key/value heads {} → {}, parameters {} → {}, model.safetensors {:.1} MB ({:?}); report {}",
        a.out.display(),
        report.heads_before,
        report.heads_after,
        report.kv_heads_before,
        report.kv_heads_after,
        report.params_before,
        report.params_after,
        report.file_bytes as f64 / 1e6,
        a.quant,
        path.display()
    );
    Ok(())
}
