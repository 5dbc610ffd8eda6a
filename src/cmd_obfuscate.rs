//! `brainmesh obfuscate`: a function-preserving obfuscated copy of a Llama model (residual
//! rotation, head and MLP permutations, query/key scaling, value/output mixing), written as a
//! Hugging Face directory that miners serve and validators re-check like any model. What it hides
//! and what it does not: `docs/model-protection.md`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use brainmesh_actors::models::obfuscate::{obfuscate, obfuscate_gguf, ObfuscateOptions};
use brainmesh_actors::models::{LoadOptions, Model};

#[derive(Debug, Clone, clap::Args)]
pub struct ObfuscateArgs {
    /// The model to obfuscate: a Llama GGUF file or Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write: a directory (`--format hf`: model.safetensors, config.json, tokenizer,
    /// chat template) or a file (`--format gguf`).
    #[arg(long)]
    pub out: PathBuf,
    /// Output format: `hf` (a Hugging Face directory) or `gguf` (f32, from a GGUF source: its
    /// metadata, tokenizer and chat template are copied).
    #[arg(long, default_value = "hf")]
    pub format: String,
    /// The transform's seed (keep it secret; it is not written into the output).
    #[arg(long)]
    pub seed: u64,
    /// Skip the residual-stream rotation.
    #[arg(long)]
    pub no_rotate: bool,
    /// Skip the attention head permutation.
    #[arg(long)]
    pub no_permute_heads: bool,
    /// Skip the query/key scaling.
    #[arg(long)]
    pub no_scale_qk: bool,
    /// Skip the value/output mixing.
    #[arg(long)]
    pub no_mix_vo: bool,
    /// Skip the MLP hidden-unit permutation.
    #[arg(long)]
    pub no_permute_mlp: bool,
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: &ObfuscateArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let model = Model::load(&a.model, &LoadOptions { threads: a.threads, ..Default::default() }, &mut |_| {})
        .with_context(|| format!("loading {}", a.model.display()))?;
    let o = ObfuscateOptions {
        rotate: !a.no_rotate,
        permute_heads: !a.no_permute_heads,
        scale_qk: !a.no_scale_qk,
        mix_vo: !a.no_mix_vo,
        permute_mlp: !a.no_permute_mlp,
    };
    match a.format.as_str() {
        "hf" => obfuscate(&model, a.seed, &o, &a.out),
        "gguf" => obfuscate_gguf(&model, a.seed, &o, &a.out),
        other => anyhow::bail!("--format must be hf or gguf, not {other:?}"),
    }
    .with_context(|| format!("obfuscating into {}", a.out.display()))?;
    let hash = brainmesh::node::hash_model(&a.out).context("hashing the output")?;
    let report = serde_json::json!({
        "source": a.model, "out": a.out, "transforms": o, "content_hash": hash,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "wrote {} (content hash {hash}); serve it with [miner] model = \"{}\" and declare that hash",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
