//! `brainmesh brain`: what a Brain's owner does (whitepaper §2.4, §3.5): acquire a Brain by
//! burning the burn price or locking stake for 90 days, set the registration fee and the
//! miners / validators split, and read the Brain and its income from a validator.
//!
//! Writes are signed ledger transactions submitted through a node's `POST /ledger/tx` (the
//! signing key is the identity in `--data-dir`; the owner account is its peer id); they take
//! effect when a block including them is final, and a transaction the ledger refuses (not the
//! owner, a split above 100%, a price above `--max-price`) changes nothing. Reads ask a
//! validator's `GET /ledger/brains/{id}`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use brainmesh_ledger::tx::{CreateMethod, TxKind};
use brainmesh_ledger::BrainId;

use crate::cmd_ledger::{http_json, submit, SubmitArgs};

#[derive(Subcommand)]
pub enum BrainCmd {
    /// Acquire a Brain: `--method burn` destroys the current burn price (it rises with every
    /// Brain burned); `--method stake` locks the stake amount for 90 days. At most 1,024 Brains;
    /// ids 0–6 and 47 are reserved.
    Create(CreateArgs),
    /// Set the fee new peers pay to register (peers already registered keep their place).
    SetFee(SetFeeArgs),
    /// Set the miners' share of the nodes' 75% of the Brain's emission (validators get the
    /// rest; the owner's 25% is fixed by the whitepaper).
    SetSplit(SetSplitArgs),
    /// Declare the model the Brain serves: gateways route requests for that name only to miners
    /// serving exactly these weights (by content hash). `--clear` removes the declaration.
    SetModel(SetModelArgs),
    /// The Brain as the ledger holds it: owner, how it was acquired, fee, split, model,
    /// registrations.
    Show(ReadArgs),
    /// What the owner earned: registration fees, settlement credits, balance.
    Income(ReadArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// burn or stake.
    #[arg(long, default_value = "burn")]
    pub method: String,
    /// A specific free Brain id (default: the lowest free one).
    #[arg(long)]
    pub id: Option<BrainId>,
    /// Highest burn price or stake you accept, in base units (10^9 per token); refused above it.
    #[arg(long)]
    pub max_price: u128,
}

#[derive(Args)]
pub struct SetFeeArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    #[arg(long)]
    pub brain: BrainId,
    /// Registration fee in base units (10^9 per token).
    #[arg(long)]
    pub fee: u128,
}

#[derive(Args)]
pub struct SetSplitArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    #[arg(long)]
    pub brain: BrainId,
    /// Miners' share of the nodes' emission in percent (0–100; validators get the rest).
    #[arg(long)]
    pub miners_percent: f64,
}

#[derive(Args)]
pub struct SetModelArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    #[arg(long)]
    pub brain: BrainId,
    /// The model id clients ask for (as in /v1/models).
    #[arg(long, required_unless_present = "clear")]
    pub name: Option<String>,
    /// The model file or Hugging Face directory: its content hash is what miners must serve.
    #[arg(long, conflicts_with = "hash")]
    pub file: Option<std::path::PathBuf>,
    /// The content hash (hex sha256, as miners advertise it) instead of --file.
    #[arg(long)]
    pub hash: Option<String>,
    /// Remove the declared model.
    #[arg(long, conflicts_with_all = ["name", "file", "hash"])]
    pub clear: bool,
}

#[derive(Args)]
pub struct ReadArgs {
    #[arg(long)]
    pub brain: BrainId,
    /// HTTP address of a validator, e.g. 127.0.0.1:9091.
    #[arg(long)]
    pub node: String,
}

/// Percent (0–100, up to 7 decimals) to parts per 10^9.
pub fn percent_to_ppb(p: f64) -> Result<u64> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        bail!("--miners-percent must be between 0 and 100, not {p}");
    }
    Ok((p * 10_000_000.0).round() as u64)
}

fn read(a: &ReadArgs) -> Result<serde_json::Value> {
    let url = format!("http://{}/ledger/brains/{}", a.node, a.brain);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let (status, v) = http_json(agent.get(&url).call(), &url)?;
    if status != 200 {
        bail!("{url}: {status}: {}", v["error"].as_str().unwrap_or("?"));
    }
    Ok(v)
}

pub fn run(cmd: &BrainCmd) -> Result<()> {
    match cmd {
        BrainCmd::Create(a) => {
            let method = match a.method.as_str() {
                "burn" => CreateMethod::Burn,
                "stake" => CreateMethod::Stake,
                other => bail!("--method must be burn or stake, not {other:?}"),
            };
            submit(&a.submit, TxKind::CreateBrain { method, wanted: a.id, max_price: a.max_price })
        }
        BrainCmd::SetFee(a) => submit(&a.submit, TxKind::SetBrainFee { brain: a.brain, fee: a.fee }),
        BrainCmd::SetSplit(a) => {
            let miner_share = percent_to_ppb(a.miners_percent)?;
            submit(&a.submit, TxKind::SetBrainSplit { brain: a.brain, miner_share })
        }
        BrainCmd::SetModel(a) => {
            let (name, hash) = if a.clear {
                (String::new(), String::new())
            } else {
                let hash = match (&a.file, &a.hash) {
                    (Some(f), _) => brainmesh::node::hash_model(f)
                        .map_err(|e| anyhow::anyhow!("cannot hash {}: {e}", f.display()))?,
                    (None, Some(h)) => h.to_lowercase(),
                    (None, None) => bail!("give --file (the model, hashed here) or --hash"),
                };
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("--hash must be 64 hex digits (a sha256), not {hash:?}");
                }
                (a.name.clone().unwrap_or_default(), hash)
            };
            submit(&a.submit, TxKind::SetBrainModel { brain: a.brain, name, hash })
        }
        BrainCmd::Show(a) => {
            let v = read(a)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        BrainCmd::Income(a) => {
            let v = read(a)?;
            let out = json!({ "brain": v["id"], "owner": v["owner"], "income": v["income"] });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_maps_to_ppb_and_out_of_range_is_refused() {
        assert_eq!(percent_to_ppb(70.0).unwrap(), 700_000_000);
        assert_eq!(percent_to_ppb(100.0).unwrap(), 1_000_000_000);
        assert_eq!(percent_to_ppb(0.0).unwrap(), 0);
        assert!(percent_to_ppb(100.5).is_err());
        assert!(percent_to_ppb(-1.0).is_err());
        assert!(percent_to_ppb(f64::NAN).is_err());
    }
}
