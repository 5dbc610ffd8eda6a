//! `brainmesh ledger …`: read a validator's ledger from its data directory, and sign and submit
//! transactions.
//!
//! The readers (`balance`, `receipts`, `settlement`, `verify`, `report`) open the node's sled
//! database (`<data_dir>/db`), and sled allows one process at a time: stop the node first (a
//! running node shows its last final height and state digest in `GET /status`).
//!
//! The writers (`transfer`, `stake`, `unstake`) sign with the identity in `--data-dir` (the
//! account is its peer id) and post the transaction to a running node's `POST /ledger/tx`,
//! which checks it and publishes it on the Brain's rollup topic; validators batch it into the
//! next block. The nonce comes from `--nonce`, else from the node's
//! `GET /ledger/accounts/{id}` (a validator's). Everything is printed as JSON.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use brainmesh_actors::receipt::public_key_of;
use brainmesh_actors::rollup::LedgerReport;
use brainmesh_actors::Identity;
use brainmesh_ledger::batch::{is_supermajority, Batch, BatchVote};
use brainmesh_ledger::settlement;
use brainmesh_ledger::store::LedgerStore;
use brainmesh_ledger::tx::{Tx, TxKind};
use brainmesh_ledger::BrainId;

#[derive(Subcommand)]
pub enum LedgerCmd {
    /// Balances: every account, or one.
    Balance(BalanceArgs),
    /// Receipts in final blocks, with the height of the block that included each.
    Receipts(DirArgs),
    /// Settlement records: the last one, or all with --all.
    Settlement(SettlementArgs),
    /// Checks a receipt's inclusion proofs: against its block's signed batch root, and against
    /// its settlement period's receipts root once settled. Exits 1 if a proof fails.
    Verify(VerifyArgs),
    /// The whole ledger: heights, state digest, balances, nonces, receipts, settlements.
    Report(DirArgs),
    /// Signs and submits a transfer of base units (10^9 per token) to another account.
    Transfer(TransferArgs),
    /// Signs and submits a stake to a Brain, or to one of its validators.
    Stake(StakeArgs),
    /// Signs and submits the withdrawal of stake placed with the same (Brain, validator).
    Unstake(StakeArgs),
}

#[derive(Args)]
pub struct SubmitArgs {
    /// Data directory holding the signing identity (the account is its peer id).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// HTTP address of a running node to submit through, e.g. 127.0.0.1:9091 (default: the node
    /// running in --data-dir).
    #[arg(long)]
    pub node: Option<String>,
    /// The transaction's nonce (default: the next one, asked from the node, which must then be a
    /// validator).
    #[arg(long)]
    pub nonce: Option<u64>,
}

#[derive(Args)]
pub struct TransferArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// Receiving account (a peer id, or a gateway account name).
    #[arg(long)]
    pub to: String,
    /// Amount in base units (10^9 per token).
    #[arg(long)]
    pub amount: u128,
}

#[derive(Args)]
pub struct StakeArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    #[arg(long)]
    pub brain: BrainId,
    /// A validator of the Brain (its peer id); the Brain itself when absent.
    #[arg(long)]
    pub validator: Option<String>,
    /// Amount in base units (10^9 per token).
    #[arg(long)]
    pub amount: u128,
}

/// `brainmesh register`: pay a Brain's registration fee on the ledger.
#[derive(Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub submit: SubmitArgs,
    /// The Brain to register with.
    #[arg(long)]
    pub brain: BrainId,
    /// miner or validator.
    #[arg(long, default_value = "miner")]
    pub role: String,
    /// Highest fee you accept, in base units (10^9 per token). The Brain's current fee is
    /// charged and credited to its owner; the transaction is refused if the fee is higher (a new
    /// Brain's fee is 100 tokens: 100000000000).
    #[arg(long)]
    pub max_fee: u128,
}

/// Signs and submits a `Register` transaction for the identity in `--data-dir`.
pub fn register(a: &RegisterArgs) -> Result<()> {
    use brainmesh_ledger::economics::brains::PeerRole;
    let role = match a.role.as_str() {
        "miner" => PeerRole::Miner,
        "validator" => PeerRole::Validator,
        other => bail!("--role must be miner or validator, not {other:?}"),
    };
    submit(&a.submit, TxKind::Register { brain: a.brain, role, fee: a.max_fee })
}

#[derive(Args)]
pub struct DirArgs {
    /// Data directory of a (stopped) validator.
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(Args)]
pub struct BalanceArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// One account (a peer id, or a gateway account name); all when absent.
    pub account: Option<String>,
}

#[derive(Args)]
pub struct SettlementArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Every settlement record, oldest first.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Receipt id (as returned by the gateway and listed by `ledger receipts`).
    pub receipt: String,
}

fn open(dir: &std::path::Path) -> Result<LedgerStore> {
    let db = dir.join("db");
    match LedgerStore::open_existing(&db) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => bail!("{} holds no ledger (only validators keep one)", db.display()),
        Err(e) => Err(anyhow::anyhow!(e)).with_context(|| {
            format!(
                "cannot open the ledger in {} (is the node still running? sled allows one process: stop it first)",
                db.display()
            )
        }),
    }
}

fn print(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run(cmd: &LedgerCmd) -> Result<()> {
    match cmd {
        LedgerCmd::Balance(a) => {
            let s = open(&a.data_dir)?;
            match &a.account {
                Some(acc) => print(
                    &json!({ "account": acc, "balance": s.state().balance(acc).to_string(), "nonce": s.state().nonce(acc) }),
                ),
                None => {
                    let b: serde_json::Map<String, serde_json::Value> =
                        s.state().balances.iter().map(|(k, v)| (k.clone(), json!(v.to_string()))).collect();
                    print(&json!({ "last_final_height": s.last_height(), "balances": b }))
                }
            }
        }
        LedgerCmd::Receipts(a) => {
            let s = open(&a.data_dir)?;
            let r = LedgerReport::from_store(&s)?;
            let rows: Vec<_> = r.receipts.iter().map(|(h, l)| json!({ "height": h, "line": l })).collect();
            print(&json!({ "count": rows.len(), "receipts": rows }))
        }
        LedgerCmd::Settlement(a) => {
            let s = open(&a.data_dir)?;
            let all = s.settlements()?;
            if a.all {
                print(&serde_json::to_value(&all)?)
            } else {
                match all.last() {
                    Some(rec) => print(&serde_json::to_value(rec)?),
                    None => bail!("no settlement yet (last final height {:?})", s.last_height()),
                }
            }
        }
        LedgerCmd::Report(a) => {
            let s = open(&a.data_dir)?;
            print(&serde_json::to_value(LedgerReport::from_store(&s)?)?)
        }
        LedgerCmd::Verify(a) => verify(a),
        LedgerCmd::Transfer(a) => submit(&a.submit, TxKind::Transfer { to: a.to.clone(), amount: a.amount }),
        LedgerCmd::Stake(a) => {
            submit(&a.submit, TxKind::Stake { brain: a.brain, validator: a.validator.clone(), amount: a.amount })
        }
        LedgerCmd::Unstake(a) => {
            submit(&a.submit, TxKind::Unstake { brain: a.brain, validator: a.validator.clone(), amount: a.amount })
        }
    }
}

/// The body of an HTTP answer, error statuses included (ureq reports them as errors).
pub(crate) fn http_json(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<(u16, serde_json::Value)> {
    let mut resp = r.with_context(|| format!("cannot reach the node at {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "error": text }));
    Ok((status, v))
}

pub(crate) fn submit(a: &SubmitArgs, kind: TxKind) -> Result<()> {
    if !Identity::exists(&a.data_dir) {
        bail!("{} holds no identity (run `brainmesh init` first)", a.data_dir.display());
    }
    let id = Identity::load_or_create(&a.data_dir).context("reading the identity")?;
    let me = id.peer_id().to_string();
    let node = match &a.node {
        Some(n) => n.clone(),
        None => crate::node_file(&a.data_dir)?.http,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let nonce = match a.nonce {
        Some(n) => n,
        None => {
            let url = format!("http://{node}/ledger/accounts/{me}");
            let (status, v) = http_json(agent.get(&url).call(), &url)?;
            if status != 200 {
                bail!(
                    "cannot get the next nonce from {node} ({status}: {}); pass --nonce or --node of a validator",
                    v["error"].as_str().unwrap_or("?")
                );
            }
            v["next_nonce"].as_u64().context("the node's account answer has no next_nonce")?
        }
    };
    let tx = Tx::new_signed(&me, nonce, kind, &|m| id.sign(m));
    let url = format!("http://{node}/ledger/tx");
    let (status, v) =
        http_json(agent.post(&url).header("content-type", "application/json").send(serde_json::to_vec(&tx)?), &url)?;
    if status != 202 {
        bail!("the node refused the transaction ({status}): {}", v["error"].as_str().unwrap_or("?"));
    }
    let kind = serde_json::to_value(&tx.kind).unwrap_or_else(|_| json!(format!("{:?}", tx.kind)));
    print(&json!({ "id": tx.id(), "from": me, "nonce": nonce, "kind": kind, "submitted_to": node }))
}

fn verify(a: &VerifyArgs) -> Result<()> {
    let s = open(&a.data_dir)?;
    let id = a.receipt.trim();
    let Some(h) = s.included_at(id)? else { bail!("receipt {id} is in no final block of this ledger") };
    let Some(block) = s.block(h)? else { bail!("block {h} is missing from the ledger") };
    let batch = &block.batch;
    let proof = batch.receipt_proof(id).context("the block's batch does not list the receipt")?;
    let block_ok = Batch::verify_receipt(id, &proof, &block.certificate.root) && batch.root == block.certificate.root;
    // Each signature against the signer's key (inlined in its peer id), and the stake claim.
    let cert = &block.certificate;
    let sigs_ok = cert.signatures.iter().all(|(v, sig)| {
        let (Some(pk), Some(sig)) =
            (public_key_of(v), hex::decode(sig).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()))
        else {
            return false;
        };
        brainmesh_ledger::verify_sig(&pk, &BatchVote::signing_bytes_of(cert.height, &cert.root, v), &sig)
    });
    let stake_ok = is_supermajority(cert.signed_stake, cert.total_stake);
    let mut verified = block_ok && sigs_ok && stake_ok;
    let settled = s.settlements()?.into_iter().find(|r| r.from_height <= h && h < r.to_height);
    let settlement_json = match settled {
        Some(rec) => {
            let lines = s.receipts_between(rec.from_height, rec.to_height)?;
            let (line, sproof) =
                settlement::receipt_proof(&lines, id).context("receipt missing from its settlement period")?;
            let ok = rec.verify_receipt(&line, &sproof);
            verified &= ok;
            json!({
                "from_height": rec.from_height,
                "to_height": rec.to_height,
                "receipts_root": hex::encode(rec.receipts_root),
                "receipt_count": rec.receipt_count,
                "line": line,
                "proof": sproof,
                "ok": ok,
            })
        }
        None => serde_json::Value::Null,
    };
    print(&json!({
        "receipt": id,
        "block": {
            "height": h,
            "root": hex::encode(cert.root),
            "proof": proof,
            "ok": block_ok,
            "signers": cert.signatures.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
            "signatures_ok": sigs_ok,
            "signed_stake": cert.signed_stake.to_string(),
            "total_stake": cert.total_stake.to_string(),
            "supermajority": stake_ok,
        },
        "settlement": settlement_json,
        "verified": verified,
    }))?;
    if !verified {
        std::process::exit(1);
    }
    Ok(())
}
