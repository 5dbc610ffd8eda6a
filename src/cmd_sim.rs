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
    /// Run the scenario twice with the same seed (into OUT/run-1, OUT/run-2) and report the
    /// first figure that differs; fails if what the seed fixes (the load's schedule) differs.
    #[arg(long, conflicts_with = "seeds")]
    pub check_determinism: bool,
    /// Run N seeds (the scenario's or --seed, then the next N − 1; into OUT/seed-S) and report
    /// every figure's mean with its 95% interval (OUT/seeds.json).
    #[arg(long, value_name = "N")]
    pub seeds: Option<u64>,
}

#[derive(Subcommand)]
pub enum SimCmd {
    /// Print a finished run's summary.json as a table.
    Report {
        /// The run's output directory.
        dir: PathBuf,
    },
    /// The economics-only fast mode: the ledger's emission, Yuma consensus and Brain split
    /// alone, with synthetic weights, over years of blocks (no network, no model).
    Economics {
        /// The study (TOML; see configs/sim/economics.toml).
        #[arg(long)]
        spec: PathBuf,
        /// Where epochs.csv, peers.csv and economics_summary.json go.
        #[arg(long, default_value = "sim-out/economics")]
        out: PathBuf,
        /// Overrides the study's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
}

pub fn run(a: &SimArgs) -> Result<()> {
    if let Some(SimCmd::Report { dir }) = &a.cmd {
        let s = sim::report::load(dir).map_err(anyhow::Error::msg)?;
        print!("{}", sim::report::table(&s));
        return Ok(());
    }
    if let Some(SimCmd::Economics { spec, out, seed }) = &a.cmd {
        let mut study = sim::economics::EconomicsSpec::load(spec).map_err(anyhow::Error::msg)?;
        if let Some(s) = seed {
            study.seed = *s;
        }
        let summary = sim::economics::run_economics(&study, out, true)
            .map_err(|e| anyhow::anyhow!("economics run failed: {e} (spec {}, seed {})", spec.display(), study.seed))?;
        print!("{}", summary.headline());
        println!("outputs in {}", out.display());
        return Ok(());
    }
    let Some(scenario) = a.scenario.clone() else {
        bail!("give a scenario: brainmesh sim --scenario configs/sim/ci.toml")
    };
    // Under faults and adversaries the peers warn all the time (failed audits, silent peers,
    // gossip that cannot be queued to a killed peer): the run records those as events, so
    // only errors show unless RUST_LOG says otherwise.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "error,brainmesh::sim=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let (loaded, sha) = sim::Scenario::load(&scenario).map_err(anyhow::Error::msg)?;
    let base_seed = a.seed.unwrap_or(loaded.seed);
    // Every run: (label, seed, out dir).
    let runs: Vec<(String, u64, PathBuf)> = if a.check_determinism {
        (1..=2).map(|i| (format!("run {i} of 2"), base_seed, a.out.join(format!("run-{i}")))).collect()
    } else if let Some(n) = a.seeds {
        if n == 0 {
            bail!("--seeds needs at least 1");
        }
        (0..n)
            .map(|i| {
                let s = base_seed.wrapping_add(i);
                (format!("seed {s} ({} of {n})", i + 1), s, a.out.join(format!("seed-{s}")))
            })
            .collect()
    } else {
        vec![(String::new(), base_seed, a.out.clone())]
    };
    let rt = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let system =
        actix_rt::System::with_tokio_rt(move || rt().unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}")));
    let mut summaries = Vec::new();
    for (label, seed, out) in &runs {
        if !label.is_empty() {
            eprintln!("== {label}");
        }
        let opts = SimOptions { scenario: scenario.clone(), out: out.clone(), seed: Some(*seed), progress: true };
        match system.block_on(async move { sim::run(&opts).await }) {
            Ok(s) => summaries.push(s),
            Err(e) => bail!(
                "simulation failed: {e}\n  reproduce: brainmesh sim --scenario {} --seed {seed} (scenario sha256 {sha}, \
                 commit {})",
                scenario.display(),
                sim::run::commit()
            ),
        }
    }
    if a.check_determinism {
        return determinism(&summaries, &runs);
    }
    if a.seeds.is_some() {
        print!("{}", sim::compare::seeds_table(&summaries));
        let p = a.out.join("seeds.json");
        let text = serde_json::to_string_pretty(&sim::compare::seeds_json(&summaries))?;
        std::fs::write(&p, text)?;
        println!("per-seed outputs in {}/seed-*, the table in {}", a.out.display(), p.display());
        return Ok(());
    }
    if let Some(s) = summaries.first() {
        print!("{}", sim::report::table(s));
    }
    println!("outputs in {}", a.out.display());
    Ok(())
}

/// Two runs of one scenario and seed: what the seed fixes must match; the outcomes may differ
/// (real-time networking), and every difference is listed, first one first.
fn determinism(s: &[sim::record::Summary], runs: &[(String, u64, PathBuf)]) -> Result<()> {
    let (Some(a), Some(b)) = (s.first(), s.get(1)) else { bail!("two runs expected") };
    let requests = |i: usize| sim::record::read_csv(&runs[i].2.join("requests.csv"));
    if let Some(d) = sim::compare::first_schedule_difference(&requests(0)?, &requests(1)?) {
        bail!("not deterministic: the seed's load schedule differs: {d}");
    }
    println!("the seed's inputs (peers, behaviours, load schedule, faults) are identical in both runs");
    let diffs = sim::compare::differences(a, b);
    if diffs.is_empty() {
        println!("every figure of summary.json is identical (wall time and memory aside)");
    } else {
        println!("first figure that differs: {}", diffs[0]);
        println!("all {} differing figures (real-time networking; see docs/simulator.md):", diffs.len());
        for d in &diffs {
            println!("  {d}");
        }
    }
    Ok(())
}
