//! The `brainmesh generate` command, runnable from this crate alone:
//! cargo run --release -p brainmesh-models --example generate -- --model M.gguf --prompt "..." [--chat]
#[path = "../../src/cmd_generate.rs"]
mod cmd_generate;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: cmd_generate::GenerateArgs,
}

fn main() -> anyhow::Result<()> {
    cmd_generate::run(&Cli::parse().args)
}
