//! `brainmesh private classify`: encrypted-mode classification through the mesh.
//!
//! Starts a short-lived observer peer (no role: it reads the Brain's roster and never
//! registers), finds a miner of the Brain that serves an encrypted head, and runs
//! [`brainmesh_actors::fhe_client::classify`]: the text is embedded and quantized here, only
//! TFHE ciphertexts leave this process, and only this process can decrypt the logits.

use brainmesh_ledger::BrainId;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use brainmesh::config::{self, NodeConfig};
use brainmesh::node::Node;
use brainmesh_actors::fhe_client::{self, HeadOffer};
use brainmesh_actors::models::fhe::{embed::MiniLm, ClientKeys, FheParams, PrivateClassifier};
use brainmesh_actors::protocols::gossip::Role;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PrivateCmd {
    /// Classify a text with a Brain's encrypted head (which play a line is from, for the demo head).
    Classify(ClassifyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    /// The Brain whose miners serve the head.
    #[arg(long)]
    pub brain: BrainId,
    /// The text to classify (embedded and encrypted locally).
    #[arg(long)]
    pub text: String,
    /// Peers to join through (repeatable); default: the `network.bootstrap` of --config.
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// A node config whose bootstrap list to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the client's TFHE keys live (made on first use: a few seconds; the secret key
    /// never leaves this directory). Default: ~/.brainmesh/fhe-keys.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// all-MiniLM-L6-v2 directory (default: the one `make setup` fetched).
    #[arg(long)]
    pub embedder: Option<PathBuf>,
    /// Seconds to wait for a miner serving a head to show up in the roster.
    #[arg(long, default_value_t = 30)]
    pub timeout_s: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &PrivateCmd) -> Result<()> {
    match cmd {
        PrivateCmd::Classify(a) => classify(a),
    }
}

fn keys_dir(a: &ClassifyArgs) -> PathBuf {
    a.keys.clone().unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".brainmesh/fhe-keys")
    })
}

/// The client's keys for `params`: loaded, or made and saved.
fn client_keys(dir: &Path, params: FheParams, quiet: bool) -> Result<ClientKeys> {
    if let Ok(k) = ClientKeys::load(dir) {
        if k.params == params {
            return Ok(k);
        }
    }
    if !quiet {
        eprintln!("making TFHE keys for {} in {} (once) …", params.name(), dir.display());
    }
    let k = ClientKeys::generate(params)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    k.save(dir)?;
    Ok(k)
}

fn classify(a: &ClassifyArgs) -> Result<()> {
    let bootstrap = if a.bootstrap.is_empty() {
        match &a.config {
            Some(p) => NodeConfig::load(p)?.network.bootstrap,
            None => vec![],
        }
    } else {
        a.bootstrap.clone()
    };
    if bootstrap.is_empty() {
        bail!("give --bootstrap ADDR (a peer's multiaddr, with /p2p/<id>) or --config FILE with a bootstrap list");
    }
    let embedder = match &a.embedder {
        Some(d) => MiniLm::load(d),
        None => MiniLm::load_default(),
    }
    .context("loading the embedder (run `make setup`)")?;
    let data_dir =
        std::env::temp_dir().join(format!("brainmesh-private-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&data_dir)?;
    let mut cfg = config::loopback(Role::Miner, &data_dir, bootstrap)?;
    cfg.roles = vec![];
    cfg.brain = a.brain;
    cfg.network.listen = vec!["/ip4/0.0.0.0/tcp/0".into()];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let system = actix_rt::System::with_tokio_rt(move || rt);
    let a = a.clone();
    let result = system.block_on(async move {
        let node = Node::start(cfg).await?;
        let r = classify_on(&node, &a, embedder).await;
        node.shutdown().await;
        r
    });
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn classify_on(node: &Node, a: &ClassifyArgs, embedder: MiniLm) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
    let offer: HeadOffer = loop {
        if let Some(snap) = node.membership.roster().await {
            if let Some(o) = fhe_client::heads_in(&snap, a.brain).into_iter().next() {
                break o;
            }
        }
        if Instant::now() > deadline {
            bail!("no online miner of Brain {} serves an encrypted head (waited {} s)", a.brain, a.timeout_s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The roster can name the miner before Kademlia has its address: retry dialling until the
    // deadline.
    let spec = loop {
        match fhe_client::describe(&node.net, &offer).await {
            Ok(s) => break s,
            Err(fhe_client::PrivateError::Network(e)) if Instant::now() < deadline => {
                tracing::debug!("miner {} not reachable yet: {e}", offer.peer);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let params = FheParams::from_name(&spec.params)?;
    let keys = client_keys(&keys_dir(a), params, a.json)?;
    let classifier = PrivateClassifier::new(spec, offer.head_id.clone(), keys, Some(embedder))?;
    let bar = ProgressBar::new(classifier.keys.server_key_bytes.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("uploading the server key [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if a.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let out =
        fhe_client::classify(&node.net, &offer, &classifier, &a.text, &mut |sent, _| bar.set_position(sent)).await;
    bar.finish_and_clear();
    let out = out?;
    let c = &out.classification;
    if a.json {
        let v = serde_json::json!({
            "label": c.label,
            "class": c.class,
            "logits": c.logits,
            "classes": classifier.spec.classes,
            "worst_noise_fraction": c.worst_noise_fraction,
            "codes": out.codes,
            "peer": out.peer,
            "head_id": offer.head_id,
            "key_id": hex::encode(classifier.keys.key_id),
            "key_uploaded": out.key_uploaded,
            "upload_bytes": out.upload_bytes,
            "download_bytes": out.download_bytes,
            "miner_cpu_s": out.miner_cpu_s,
            "miner_wall_s": out.miner_wall_s,
            "total_s": out.total_s,
        });
        println!("{v}");
    } else {
        println!("{} (class {} of {:?})", c.label, c.class, classifier.spec.classes);
        println!("logits (decrypted here): {:?}", c.logits);
        println!(
            "miner {} | key {} | up {} B, down {} B | miner {:.1} s CPU, {:.1} s wall | total {:.1} s",
            out.peer,
            if out.key_uploaded { "uploaded" } else { "cached by the miner" },
            out.upload_bytes,
            out.download_bytes,
            out.miner_cpu_s,
            out.miner_wall_s,
            out.total_s
        );
    }
    Ok(())
}
