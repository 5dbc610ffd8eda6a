//! `brainmesh account`: an account holder decides which gateways may spend for it (issue 17).
//! `authorize` signs an allowance (a cap and a last block) for one gateway; `revoke` withdraws
//! it. Once an account has signed one, settlement charges it only for receipts countersigned by
//! a gateway it authorised, within the cap, until the allowance expires (every account, where
//! the validators set `ledger.require_authorization`). `show` reads the account from a validator.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use brainmesh_ledger::economics::Height;
use brainmesh_ledger::tx::TxKind;

use crate::cmd_ledger::{http_json, submit, SubmitArgs};

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Let a gateway spend up to --cap base units for this account until block --expires-at.
    Authorize(AuthorizeArgs),
    /// Withdraw the allowance of a gateway.
    Revoke(RevokeArgs),
    /// Balance, nonce and allowances of an account, from a validator.
    Show(ShowArgs),
}

#[derive(Args)]
pub struct AuthorizeArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// The gateway's peer id.
    #[arg(long)]
    pub gateway: String,
    /// Most the gateway may spend, in base units (10^9 per token).
    #[arg(long)]
    pub cap: u128,
    /// Last block height at which the allowance holds.
    #[arg(long)]
    pub expires_at: Height,
}

#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// The gateway's peer id.
    #[arg(long)]
    pub gateway: String,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The account (a peer id, or a gateway account name).
    pub account: String,
    /// HTTP address of a validator.
    #[arg(long)]
    pub node: String,
}

pub fn run(cmd: &AccountCmd) -> Result<()> {
    match cmd {
        AccountCmd::Authorize(a) => {
            submit(&a.submit, TxKind::Authorize { gateway: a.gateway.clone(), cap: a.cap, expires_at: a.expires_at })
        }
        AccountCmd::Revoke(a) => submit(&a.submit, TxKind::Revoke { gateway: a.gateway.clone() }),
        AccountCmd::Show(a) => {
            let url = format!("http://{}/ledger/accounts/{}", a.node, a.account);
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let (status, v) = http_json(agent.get(&url).call(), &url)?;
            if status != 200 {
                bail!("{url}: {status}: {}", v["error"].as_str().unwrap_or("?"));
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
    }
}
