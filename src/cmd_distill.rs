//! `brainmesh distill`: a smaller student of a Llama teacher, trained on text with the teacher's
//! softened distribution (knowledge distillation) — progress bar with loss and ETA, checkpoints
//! that resume, a JSON report with held-out top-1 agreement and perplexity.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use brainmesh_actors::models::distill::{self, DistillConfig, Trainer};
use brainmesh_actors::models::{DevicePref, LoadOptions, Model};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, clap::Args)]
pub struct DistillArgs {
    /// The teacher: a Llama GGUF file or Hugging Face directory.
    #[arg(long)]
    pub teacher: PathBuf,
    /// How to initialise the student: `every-2nd-layer` (DistilBERT's recipe).
    #[arg(long, default_value = "every-2nd-layer")]
    pub from_teacher: String,
    /// Keep this many of the teacher's layers instead (evenly spaced, first and last included).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Training text files (token windows are cut from them in order, round-robin).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Held-out text for the report (never trained on).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Also train on this many answers the teacher writes itself to varied prompts (sequence-
    /// level distillation, so the student does not learn only the data files' style).
    #[arg(long, default_value_t = 0)]
    pub teacher_corpus: usize,
    /// Tokens per teacher-written answer.
    #[arg(long, default_value_t = 128)]
    pub corpus_tokens: usize,
    /// Optimizer steps (in total: a resumed run continues to this count).
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// Weight of the distillation term (0: learn from the text alone, the baseline).
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Save a checkpoint every this many steps.
    #[arg(long, default_value_t = 25)]
    pub save_every: u64,
    /// The student's directory (resumed when it holds a checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// "auto" (CUDA when present), "cpu", "cuda".
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Prompts the teacher answers for its own corpus (varied topics and forms).
const CORPUS_PROMPTS: [&str; 16] = [
    "Explain how rain forms.",
    "Write a short story about a lost robot.",
    "List five tips for learning a language.",
    "Describe a medieval castle.",
    "What is a prime number? Give examples.",
    "Write a product description for a backpack.",
    "Summarise the rules of chess.",
    "Give a recipe for tomato soup.",
    "Describe the water cycle for a child.",
    "Write a dialogue between a knight and a dragon.",
    "Why is the sky blue?",
    "Write a poem about the sea.",
    "How does a computer store numbers?",
    "Describe a busy market in the morning.",
    "Give advice to a new video game player.",
    "Explain what a function is in programming.",
];

/// `n` answers of the teacher (sampled at temperature 0.8, one seed each) as token sequences.
fn teacher_corpus(teacher: &Model, n: usize, tokens: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("teacher corpus [{bar:30}] {pos}/{len}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let prompt = CORPUS_PROMPTS[i % CORPUS_PROMPTS.len()];
        let cfg = brainmesh_actors::models::GenerateConfig {
            temperature: 0.8,
            top_p: Some(0.95),
            seed: i as u64,
            ..brainmesh_actors::models::GenerateConfig::greedy(tokens)
        };
        let text = teacher.tokenizer.chat_prompt(prompt)?;
        let mut ids = teacher.tokenizer.encode(&text)?;
        let g = teacher.generate(std::slice::from_ref(&ids), &cfg, &mut |_| true)?.remove(0);
        ids.extend(g.tokens);
        out.push(ids);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn windows(model: &Model, files: &[PathBuf], seq: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let ids = model.tokenizer.encode(&text)?;
        out.extend(ids.chunks_exact(seq).map(<[u32]>::to_vec));
    }
    if out.is_empty() {
        bail!("no {seq}-token window in the data");
    }
    Ok(out)
}

pub fn run(a: &DistillArgs) -> anyhow::Result<()> {
    if a.from_teacher != "every-2nd-layer" && a.layers.is_none() {
        bail!("--from-teacher supports `every-2nd-layer`; or give --layers N");
    }
    let device: DevicePref = a.device.parse().map_err(|e: String| anyhow::anyhow!("--device: {e}"))?;
    let opts = LoadOptions { device, threads: a.threads, ..Default::default() };
    let teacher =
        Model::load(&a.teacher, &opts, &mut |_| {}).with_context(|| format!("loading {}", a.teacher.display()))?;
    let n = match &teacher.net {
        brainmesh_actors::models::Network::Llama(l) => l.cfg.num_hidden_layers,
        _ => bail!("the teacher must be a Llama model"),
    };
    let checkpoint = a.out.join("distill-state.json");
    let resumed = checkpoint.exists();
    if !resumed {
        let keep = match a.layers {
            Some(k) if k >= 1 && k <= n => {
                (0..k).map(|i| if k == 1 { 0 } else { i * (n - 1) / (k - 1) }).collect::<Vec<_>>()
            }
            Some(k) => bail!("--layers must be between 1 and {n}, got {k}"),
            None => distill::every_second_layer(n),
        };
        distill::student_from_teacher(&teacher, &keep, &a.out)?;
    }
    let mut student = Model::load(&a.out, &opts, &mut |_| {})?;
    let cfg = DistillConfig { temperature: a.temperature, alpha: a.alpha, lr: a.lr, ..Default::default() };
    let mut trainer = Trainer::new(&mut student, cfg.clone())?;
    if resumed {
        trainer.load_optimizer(&a.out)?;
        eprintln!("resuming at step {}", trainer.step);
    }
    let mut data = windows(&teacher, &a.data, a.seq)?;
    if a.teacher_corpus > 0 {
        // Cut the teacher's answers into windows too, interleaved with the files' windows.
        let own: Vec<Vec<u32>> = teacher_corpus(&teacher, a.teacher_corpus, a.corpus_tokens)?
            .into_iter()
            .flat_map(|ids| ids.chunks_exact(a.seq).map(<[u32]>::to_vec).collect::<Vec<_>>())
            .collect();
        eprintln!("teacher corpus: {} windows beside {} from the data files", own.len(), data.len());
        let files = std::mem::take(&mut data);
        let (mut f, mut o) = (files.into_iter(), own.into_iter());
        loop {
            match (f.next(), o.next()) {
                (None, None) => break,
                (x, y) => data.extend(x.into_iter().chain(y)),
            }
        }
    }
    let bar = ProgressBar::new(a.steps);
    bar.set_style(
        ProgressStyle::with_template("distill [{bar:30}] {pos}/{len} steps  {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_position(trainer.step);
    let t0 = Instant::now();
    let mut losses = Vec::new();
    while trainer.step < a.steps {
        let start = (trainer.step as usize * a.batch) % data.len();
        let batch: Vec<Vec<u32>> = (0..a.batch).map(|i| data[(start + i) % data.len()].clone()).collect();
        let l = trainer.step(&teacher, &student, &batch)?;
        losses.push(l);
        bar.set_position(trainer.step);
        bar.set_message(format!("loss {:.3} (kl {:.3}, ce {:.3})", l.total, l.kl, l.ce));
        if trainer.step % a.save_every == 0 || trainer.step == a.steps {
            distill::save_student(&student, &a.out)?;
            trainer.save_optimizer(&a.out)?;
            std::fs::write(
                &checkpoint,
                serde_json::to_string_pretty(&serde_json::json!({"step": trainer.step, "config": cfg}))?,
            )?;
        }
    }
    bar.finish_and_clear();
    let mut report = serde_json::json!({
        "teacher": a.teacher, "student": a.out, "steps": trainer.step, "seconds": t0.elapsed().as_secs_f64(),
        "first_loss": losses.first(), "last_loss": losses.last(), "config": cfg,
    });
    if let Some(eval) = &a.eval {
        let held = windows(&teacher, std::slice::from_ref(eval), a.seq)?;
        let held: Vec<Vec<u32>> = held.into_iter().take(16).collect();
        let (agree, ppl) = distill::evaluate(&teacher, &student, &held)?;
        let (_, teacher_ppl) = distill::evaluate(&teacher, &teacher, &held)?;
        report["eval"] = serde_json::json!({"windows": held.len(), "top1_agreement": agree, "student_ppl": ppl, "teacher_ppl": teacher_ppl});
    }
    std::fs::write(a.out.join("distill-report.json"), serde_json::to_string_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
