//! The `brainmesh` binary: one process per peer, roles from config.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod cmd_account;
mod cmd_brain;
mod cmd_distill;
mod cmd_generate;
mod cmd_ledger;
mod cmd_obfuscate;
mod cmd_private;
mod cmd_seal;
mod cmd_sim;
mod cmd_squeeze;

use brainmesh::config::{self, NodeConfig};
use brainmesh::node::{Node, NodeFile, NODE_FILE};
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::Identity;

#[derive(Parser)]
#[command(name = "brainmesh", version, about = "A peer-to-peer mesh for LLM inference")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a data directory: an ed25519 identity key (mode 0600) and a documented config.
    Init(InitArgs),
    /// Start a peer.
    Node(NodeArgs),
    /// Ask a running peer for its state.
    Status(StatusArgs),
    /// Run a model locally (GGUF file or Hugging Face directory) and print tokens as they come.
    Generate(cmd_generate::GenerateArgs),
    /// Encrypted mode: queries only this process can read, evaluated by a Brain's miner on
    /// TFHE ciphertexts.
    #[command(subcommand)]
    Private(cmd_private::PrivateCmd),
    /// Cerberus Squeezing: prune attention heads by importance and quantize a Llama model
    /// into a new model directory.
    Squeeze(cmd_squeeze::SqueezeArgs),
    /// A function-preserving obfuscated copy of a Llama model (rotation, permutations, scalings)
    /// that miners serve like any model.
    Obfuscate(cmd_obfuscate::ObfuscateArgs),
    /// Encrypt a model to one miner's seal key: the miner decrypts it only into memory.
    Seal(cmd_seal::SealArgs),
    /// Knowledge distillation: a smaller student of a Llama teacher, trained on text with the
    /// teacher's softened distribution; checkpoints resume.
    Distill(cmd_distill::DistillArgs),
    /// The rollup ledger of a (stopped) validator: balances, receipts, settlements, proofs.
    #[command(subcommand)]
    Ledger(cmd_ledger::LedgerCmd),
    /// Simulate a whole mesh in one process (researchers): real peers on an accelerated chain
    /// clock, cheaters and faults; CSVs, summary.json and plots. `sim report DIR` prints a run.
    Sim(cmd_sim::SimArgs),
    /// Pay a Brain's registration fee on the ledger (a signed `Register` transaction, submitted
    /// through a node's `POST /ledger/tx`). Under `brain_policy.paid_admission` a miner is
    /// admitted only once this is final.
    Register(cmd_ledger::RegisterArgs),
    /// A Brain's owner: create a Brain (burn or stake), set its fee and split, show it and its
    /// income (signed ledger transactions; reads from a validator).
    #[command(subcommand)]
    Brain(cmd_brain::BrainCmd),
    /// An account holder: authorise a gateway to spend for it (a cap and an expiry on the
    /// ledger), revoke it, show the account.
    #[command(subcommand)]
    Account(cmd_account::AccountCmd),
}

#[derive(Args)]
struct InitArgs {
    /// miner, validator or gateway.
    #[arg(long)]
    role: Role,
    #[arg(long)]
    data_dir: PathBuf,
    /// The Brain to register with.
    #[arg(long)]
    brain: Option<u16>,
    /// Bootstrap multiaddrs (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Overwrite an existing config.toml (the identity key is never overwritten).
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct NodeArgs {
    /// TOML config (see configs/); BRAINMESH_* variables and the flags below override it.
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen multiaddrs (repeatable; replaces the config's list).
    #[arg(long)]
    listen: Vec<String>,
    /// Bootstrap multiaddrs (repeatable; replaces the config's list).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// HTTP status/metrics address.
    #[arg(long)]
    http: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    dump_config: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// Data directory of a running node (reads its node.json).
    #[arg(long, conflicts_with = "http")]
    data_dir: Option<PathBuf>,
    /// HTTP address of a running node, e.g. 127.0.0.1:9091.
    #[arg(long)]
    http: Option<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Init(a) => init(a),
        Cmd::Node(a) => node(a),
        Cmd::Status(a) => status(a),
        Cmd::Generate(a) => cmd_generate::run(&a),
        Cmd::Private(c) => cmd_private::run(&c),
        Cmd::Squeeze(a) => cmd_squeeze::run(&a),
        Cmd::Obfuscate(a) => cmd_obfuscate::run(&a),
        Cmd::Seal(a) => cmd_seal::run(&a),
        Cmd::Distill(a) => cmd_distill::run(&a),
        Cmd::Ledger(c) => cmd_ledger::run(&c),
        Cmd::Sim(a) => cmd_sim::run(&a),
        Cmd::Register(a) => cmd_ledger::register(&a),
        Cmd::Brain(c) => cmd_brain::run(&c),
        Cmd::Account(c) => cmd_account::run(&c),
    }
}

fn init(a: InitArgs) -> Result<()> {
    let fresh = !Identity::exists(&a.data_dir);
    let id = Identity::load_or_create(&a.data_dir).context("creating the identity")?;
    let cfg_path = a.data_dir.join("config.toml");
    if cfg_path.exists() && !a.force {
        bail!("{} already exists (use --force to overwrite it; the key is kept)", cfg_path.display());
    }
    let data_dir = std::fs::canonicalize(&a.data_dir).unwrap_or(a.data_dir.clone());
    let mut text = config::template_for(a.role, &data_dir);
    if let Some(b) = a.brain {
        text = text
            .lines()
            .map(|l| if l.starts_with("brain =") { format!("brain = {b}") } else { l.into() })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    if !a.bootstrap.is_empty() {
        let list = a.bootstrap.iter().map(|b| format!("{b:?}")).collect::<Vec<_>>().join(", ");
        text = text
            .lines()
            .map(|l| if l.starts_with("bootstrap =") { format!("bootstrap = [{list}]") } else { l.into() })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
    }
    // Check before writing: the file we write must load.
    let parsed: NodeConfig = toml::from_str(&text).context("generated config does not parse")?;
    parsed.validate()?;
    std::fs::write(&cfg_path, text).with_context(|| format!("writing {}", cfg_path.display()))?;
    println!("peer id:  {}{}", id.peer_id(), if fresh { " (new identity)" } else { " (existing identity kept)" });
    println!("config:   {}", cfg_path.display());
    println!("start it: brainmesh node --config {}", cfg_path.display());
    if a.role == Role::Miner || a.role == Role::Validator {
        let brain = parsed.brain;
        println!(
            "admission: Brain {brain} charges a registration fee (base units, paid to the Brain's owner). Where the \
             Brain requires paid admission (brain_policy.paid_admission), fund the account {} and, once the node \
             runs, pay it with: brainmesh register --data-dir {} --brain {brain} --role {} --max-fee <base units; a new \
             Brain charges 100 tokens = 100000000000> --node <a validator's HTTP address>",
            id.peer_id(),
            data_dir.display(),
            if a.role == Role::Miner { "miner" } else { "validator" },
        );
    }
    Ok(())
}

fn load_node_config(a: &NodeArgs) -> Result<NodeConfig> {
    let mut cfg = NodeConfig::load(&a.config)?;
    if let Some(d) = &a.data_dir {
        cfg.data_dir = d.clone();
    }
    if !a.listen.is_empty() {
        cfg.network.listen = a.listen.clone();
    }
    if !a.bootstrap.is_empty() {
        cfg.network.bootstrap = a.bootstrap.clone();
    }
    if let Some(h) = &a.http {
        cfg.http.listen = h.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn node(a: NodeArgs) -> Result<()> {
    let cfg = load_node_config(&a)?;
    if a.dump_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cfg.log.filter.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let system =
        actix_rt::System::with_tokio_rt(move || rt().unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}")));
    system.block_on(async move {
        let node = Node::start(cfg).await?;
        println!(
            "peer id {} | http {} | listening on {}",
            node.peer_id,
            node.http_addr.map(|a| format!("http://{a}/status")).unwrap_or_else(|| "off".into()),
            node.listen_addrs.join(", ")
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn node_file(dir: &Path) -> Result<NodeFile> {
    let p = dir.join(NODE_FILE);
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("no running node found: cannot read {}", p.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn status(a: StatusArgs) -> Result<()> {
    let addr = match (a.http, a.data_dir) {
        (Some(h), _) => h,
        (None, Some(d)) => node_file(&d)?.http,
        (None, None) => bail!("give --data-dir DIR or --http ADDR"),
    };
    let url = format!("http://{addr}/status");
    let body = ureq::get(&url)
        .call()
        .with_context(|| format!("cannot reach the node at {url}"))?
        .body_mut()
        .read_to_string()?;
    let v: serde_json::Value = serde_json::from_str(&body).context("node answered with invalid JSON")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
