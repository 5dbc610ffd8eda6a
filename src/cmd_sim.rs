//! `brainmesh sim`: run a simulation scenario, or print a finished run's summary.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use brainmesh::sim::{self, SimOptions};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    #[command(subcommand)]
    pub cmd: Option<SimCmd>,
    /// The scenario (TOML; see configs/sim/).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Where the CSVs, summary.json, plots and the peers' data directories go.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Overrides the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Subcommand)]
pub enum SimCmd {
    /// Print a finished run's summary.json as a table.
    Report {
        /// The run's output directory.
        dir: PathBuf,
    },
}

pub fn run(a: &SimArgs) -> Result<()> {
    if let Some(SimCmd::Report { dir }) = &a.cmd {
        let s = sim::report::load(dir).map_err(anyhow::Error::msg)?;
        print!("{}", sim::report::table(&s));
        return Ok(());
    }
    let Some(scenario) = a.scenario.clone() else {
        bail!("give a scenario: brainmesh sim --scenario configs/sim/ci.toml")
    };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,brainmesh::sim=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let opts = SimOptions { scenario, out: a.out.clone(), seed: a.seed, progress: true };
    let rt = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let system =
        actix_rt::System::with_tokio_rt(move || rt().unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}")));
    let summary = system.block_on(async move { sim::run(&opts).await });
    match summary {
        Ok(s) => {
            print!("{}", sim::report::table(&s));
            println!("outputs in {}", a.out.display());
            Ok(())
        }
        Err(e) => {
            let seed = a.seed.map(|s| s.to_string()).unwrap_or_else(|| "the scenario's".into());
            bail!(
                "simulation failed: {e} (scenario {}, seed {seed})",
                a.scenario.as_deref().unwrap_or_else(|| std::path::Path::new("?")).display()
            )
        }
    }
}
