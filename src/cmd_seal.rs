//! `brainmesh seal`: a model (file or directory) encrypted to one miner's X25519 seal key, for
//! that miner to serve without keeping the weights in clear on disk (docs/model-protection.md).

use std::path::PathBuf;

use anyhow::{bail, Context};
use brainmesh_actors::sealed_model::seal_model;
use serde_json::Value;

#[derive(Debug, Clone, clap::Args)]
pub struct SealArgs {
    /// The model to seal: a GGUF file or a Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// The sealed file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The miner's X25519 seal key (hex; its registration carries it).
    #[arg(long, conflicts_with = "to_peer")]
    pub to_key: Option<String>,
    /// The miner's peer id: its seal key is read from the roster of the node at `--http`.
    #[arg(long, requires = "http")]
    pub to_peer: Option<String>,
    /// A node's HTTP address (host:port) whose `/status` roster lists the miner.
    #[arg(long)]
    pub http: Option<String>,
}

/// The seal key of `peer` in the roster of the node at `http`.
fn roster_key(http: &str, peer: &str) -> anyhow::Result<String> {
    let url = format!("http://{http}/status");
    let body = ureq::get(&url).call().with_context(|| format!("GET {url}"))?.body_mut().read_to_string()?;
    let status: Value = serde_json::from_str(&body).context("the node's /status is not JSON")?;
    let members =
        status["roster"].as_array().into_iter().flatten().flat_map(|b| b["members"].as_array().into_iter().flatten());
    for m in members {
        if m["peer_id"].as_str() == Some(peer) {
            if let Some(k) = m["seal_key"].as_str() {
                return Ok(k.to_string());
            }
        }
    }
    bail!("{peer} is not in the roster of {http}")
}

pub fn run(a: &SealArgs) -> anyhow::Result<()> {
    let key_hex = match (&a.to_key, &a.to_peer, &a.http) {
        (Some(k), _, _) => k.clone(),
        (None, Some(p), Some(h)) => roster_key(h, p)?,
        _ => bail!("give --to-key HEX, or --to-peer PEER_ID --http HOST:PORT"),
    };
    let key = brainmesh_actors::seal::key_from_hex(&key_hex)
        .map_err(|e| anyhow::anyhow!("--to-key: {e} (64 hex characters, the miner's X25519 seal key)"))?;
    let header = seal_model(&a.model, &key, &a.out).with_context(|| format!("sealing {}", a.model.display()))?;
    println!(
        "{}",
        serde_json::json!({"sealed": a.out, "kind": header.kind, "name": header.name, "recipient": header.recipient})
    );
    eprintln!(
        "sealed {} to seal key {}: only that miner can load {} ([miner] model = that file)",
        a.model.display(),
        header.recipient,
        a.out.display()
    );
    Ok(())
}
