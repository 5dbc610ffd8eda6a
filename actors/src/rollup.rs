//! The rollup actor (issue 7, DESIGN.md §5): runs on validators, turns the receipts and signed
//! transactions of each block into a batch that more than 2/3 of validator stake signs, applies
//! final batches to the sled ledger ([`brainmesh_ledger::store`]) and settles receipts every
//! `settlement_interval_blocks`.
//!
//! Per block `h` (height = (now − genesis) / block time), when block `h` ends:
//!
//! 1. **Propose.** Each validator publishes on the Brain's rollup topic the ids of the pending
//!    receipts and transactions it holds that arrived up to block `h` and are in no final block,
//!    with `parent`, the height of the last block it applied.
//! 2. **Vote** (after `vote_delay_ms`). It takes the union of the proposals it received from
//!    validators, fetches by id the receipts and transactions it lacks from the peer that proposed
//!    them (request-response, `ledger_items`), first catching up on final blocks it has not
//!    applied when a proposer's `parent` is ahead of its own (`ledger_blocks`), and signs the
//!    root of that union ([`BatchVote`]: `(height, root)`), publishing the vote with the batch's
//!    ids. It votes at most once per height, and remembers the height on disk before publishing,
//!    so a restarted validator never signs two roots for one height.
//! 3. **Finality.** Votes for one root from validators holding strictly more than 2/3 of the
//!    validator stake make the batch final ([`Finality`]); every validator applies final blocks in
//!    height order, each in one atomic sled write. An item of a batch that does not finalise
//!    stays pending and lands in a later block: never lost; an id already in a final block is
//!    never counted again.
//! 4. **Settlement.** After applying a block with `height + 1 ≥ k·I` (I =
//!    `settlement_interval_blocks`) the period up to the largest such `k·I` is settled
//!    ([`LedgerStore::settle`]): deterministic, so every validator that applied the same blocks
//!    writes the same record.
//!
//! Validator stake: the configured genesis table when there is one, else the ledger's active
//! validator stakes (validators registered and staked by transactions), else one equal share per
//! admitted validator of the Brain's roster. No batch is final while fewer than `min_validators`
//! validators are known (so a peer that has not yet synced its roster cannot finalise alone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::messages::GossipIn;
use crate::metrics::Metrics;
use crate::network_message::NetworkSender;
use crate::protocols::gossip::{Role, TopicKind};
use crate::protocols::sync::MAX_SYNC_RESPONSE_BYTES;
use crate::protocols::sync::{BlockBundle, LedgerRequest, LedgerResponse, MAX_STATUS_IDS};
use crate::protocols::{Reject, MAX_MESSAGE_BYTES};
use crate::receipt::{public_key_of, SignedReceipt};
use crate::MembershipHandle;
use brainmesh_ledger::batch::{Batch, BatchVote, FinalBatch, Finality, PendingPool, VoteError};
use brainmesh_ledger::clock::ChainClock;
use brainmesh_ledger::economics::{Amount, EconomicsParams, Height, PriceList};
use brainmesh_ledger::reconcile;
use brainmesh_ledger::settlement::{FeeSplit, ReceiptLine, SettlementRecord};
use brainmesh_ledger::state::LedgerState;
use brainmesh_ledger::store::{Applied, LedgerStore, StoreError};
use brainmesh_ledger::tx::Tx;
use brainmesh_ledger::BrainId;
use brainmesh_ledger::PeerId;

/// Blocks a catch-up response carries at most.
const MAX_BLOCKS_PER_RESPONSE: usize = 64;
/// Heights of proposals and votes kept in memory behind the current one.
const KEEP_HEIGHTS: u64 = 64;
/// A validator reconciles its pending receipts with another validator every this many blocks.
const RECONCILE_BLOCKS: u64 = 4;
/// Receipts an offer may carry at most (the request's size limit binds first).
const MAX_OFFERED: usize = 256;

/// What the rollup needs from the node's configuration.
#[derive(Debug, Clone)]
pub struct RollupConfig {
    pub brain: BrainId,
    /// The chain clock (genesis, block time, height; wall or virtual time).
    pub clock: ChainClock,
    /// Wait between proposing and voting (0: 2/5 of the block time).
    pub vote_delay_ms: u64,
    /// No batch is final while fewer validators are known.
    pub min_validators: usize,
    /// Receipts (and, separately, transactions) per batch at most; the rest wait.
    pub max_batch_items: usize,
    /// `settlement_interval_blocks` is the settlement period.
    pub params: EconomicsParams,
    pub prices: PriceList,
    pub fee_split: FeeSplit,
    /// Genesis balances (written once, when the ledger is created).
    pub balances: BTreeMap<String, Amount>,
    /// Owner of the reserved Brains (#0–#6, #47) at genesis.
    pub based_labs: String,
    /// Validator stake for finality; empty: from the ledger, else equal shares.
    pub validator_stakes: BTreeMap<String, Amount>,
    /// Miners registered with the Brain at genesis (paid admission admits them from block 0).
    pub genesis_miners: Vec<String>,
}

impl RollupConfig {
    /// The ledger state a new ledger starts from.
    pub fn genesis(&self) -> LedgerState {
        LedgerState::genesis_with_validators(
            self.balances.clone(),
            &self.based_labs,
            self.brain,
            &self.validator_stakes,
            &self.params,
        )
        .and_then(|mut s| s.register_genesis_miners(self.brain, &self.genesis_miners).map(|_| s))
        .unwrap_or_else(|e| {
            tracing::error!("ledger genesis refused ({e}); starting from an empty ledger");
            LedgerState::default()
        })
    }
}

// ---- wire ----------------------------------------------------------------------------------

/// Messages on the Brain's rollup topic. Externally tagged (`{"vote": {…}}`): serde's
/// internally tagged enums buffer their content and cannot carry the u128 amounts inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupMsg {
    /// The ids a validator holds for block `height` (unsigned: the gossipsub author must be
    /// `validator`).
    Proposal { validator: String, height: Height, parent: Option<Height>, receipts: Vec<String>, txs: Vec<String> },
    /// A signed vote with the batch it is for.
    Vote { vote: BatchVote, parent: Option<Height>, receipts: Vec<String>, txs: Vec<String> },
    /// A signed transaction (`sent_ms` only tells resubmissions apart at the gossip layer).
    Tx { tx: Tx, sent_ms: u64 },
}

impl RollupMsg {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The settlement view of a receipt.
pub fn receipt_line(sr: &SignedReceipt) -> Option<ReceiptLine> {
    let r = sr.verify().ok()?;
    Some(ReceiptLine {
        receipt_id: sr.id(),
        account: r.account,
        miner: r.miner,
        brain: r.brain,
        prompt_units: u64::from(r.prompt_tokens),
        completion_units: u64::from(r.completion_tokens),
        model: r.model,
        gateway: r.gateway,
    })
}

// ---- what tests, /status and the CLI read ----------------------------------------------------

/// A cheap summary, refreshed after every applied block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerSummary {
    pub last_final_height: Option<Height>,
    pub last_settled: Option<Height>,
    /// Hex sha256 of the canonical ledger state.
    pub state_digest: String,
    pub pending: usize,
    pub validators: usize,
    pub blocks_applied: u64,
    pub settlements: u64,
}

/// Everything in a ledger, computed on demand (tests compare peers with it; `brainmesh ledger`
/// prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerReport {
    pub last_final_height: Option<Height>,
    pub last_settled: Option<Height>,
    pub state_digest: String,
    pub supply_conserved: bool,
    pub balances: BTreeMap<String, Amount>,
    pub nonces: BTreeMap<String, u64>,
    /// (height of the block that included it, line), by height then id.
    pub receipts: Vec<(Height, ReceiptLine)>,
    pub settlements: Vec<SettlementRecord>,
}

impl LedgerReport {
    pub fn from_store(store: &LedgerStore) -> Result<Self, StoreError> {
        let st = store.state();
        let mut receipts = Vec::new();
        for l in store.receipts_between(0, Height::MAX)? {
            let h = store.included_at(&l.receipt_id)?.unwrap_or(0);
            receipts.push((h, l));
        }
        Ok(Self {
            last_final_height: store.last_height(),
            last_settled: store.last_settled(),
            state_digest: hex::encode(st.digest()),
            supply_conserved: st.supply_is_conserved(),
            balances: st.balances.clone(),
            nonces: st.nonces.clone(),
            receipts,
            settlements: store.settlements()?,
        })
    }
}

/// The node's handle on its rollup actor.
#[derive(Clone)]
pub struct LedgerHandle {
    addr: Addr<Rollup>,
    summary: Arc<Mutex<LedgerSummary>>,
}

impl LedgerHandle {
    pub fn summary(&self) -> LedgerSummary {
        self.summary.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn recipient_gossip(&self) -> Recipient<GossipIn> {
        self.addr.clone().recipient()
    }

    pub(crate) fn recipient_receipts(&self) -> Recipient<ReceiptSeen> {
        self.addr.clone().recipient()
    }

    pub(crate) fn recipient_sync(&self) -> Recipient<LedgerSyncIn> {
        self.addr.clone().recipient()
    }

    pub async fn report(&self) -> Option<LedgerReport> {
        self.addr.send(GetReport).await.ok().flatten()
    }

    /// Asks this node's own rollup what a peer would ask over `/brainmesh/sync/1` (the gateway
    /// outbox of a node that is also a validator).
    pub async fn ask(&self, req: LedgerRequest) -> Option<LedgerResponse> {
        self.addr.send(Ask { req }).await.ok()
    }

    /// Signs a transaction with this node's key (next nonce, counting pending ones) and
    /// publishes it on the rollup topic; returns it.
    pub async fn submit(&self, kind: brainmesh_ledger::tx::TxKind) -> Option<Tx> {
        self.addr.send(Submit { kind }).await.ok()
    }

    /// Takes a transaction another key signed (HTTP `POST /ledger/tx`): checked on arrival like
    /// one from gossip (form, signature, replay), kept for the next batch and published.
    pub async fn submit_signed(&self, tx: Tx) -> Result<String, SubmitError> {
        match self.addr.send(SubmitSigned { tx }).await {
            Ok(r) => r.map_err(SubmitError::Refused),
            Err(_) => Err(SubmitError::Unavailable),
        }
    }

    /// A Brain as the ledger holds it, with its owner's income (`GET /ledger/brains/{id}`);
    /// None if the Brain does not exist or the actor stopped.
    pub async fn brain(&self, id: BrainId) -> Option<BrainInfo> {
        self.addr.send(GetBrain { id }).await.ok().flatten()
    }

    /// An account's balance, last applied nonce and the nonce its next transaction needs
    /// (after the ones this validator holds pending).
    pub async fn account(&self, account: String) -> Option<AccountView> {
        self.addr.send(GetAccount { account }).await.ok()
    }
}

/// Why [`LedgerHandle::submit_signed`] did not take a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("transaction refused: {0}")]
    Refused(Reject),
    #[error("the ledger is not running")]
    Unavailable,
}

/// `GET /ledger/accounts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub account: String,
    /// Base units, as a decimal string (u128).
    pub balance: String,
    pub nonce: u64,
    pub next_nonce: u64,
    pub last_final_height: Option<Height>,
    /// Gateways this account authorised: (gateway, cap, spent, expires_at); amounts in base
    /// units as decimal strings.
    #[serde(default)]
    pub allowances: Vec<(String, String, String, Height)>,
}

#[derive(Message)]
#[rtype(result = "Result<String, Reject>")]
struct SubmitSigned {
    tx: Tx,
}

#[derive(Message)]
#[rtype(result = "AccountView")]
struct GetAccount {
    account: String,
}

#[derive(Message)]
#[rtype(result = "Option<LedgerReport>")]
struct GetReport;

#[derive(Message)]
#[rtype(result = "Option<BrainInfo>")]
struct GetBrain {
    id: BrainId,
}

/// `GET /ledger/brains/{id}`: the Brain's record and what its owner earned from it. Amounts are
/// decimal strings of base units (u128).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrainInfo {
    pub id: BrainId,
    pub owner: String,
    /// `reserved`, `burned` or `staked`.
    pub acquired_by: String,
    pub created_at: Height,
    pub registration_fee: String,
    /// Miners' share of the nodes' emission (ppb); validators get the rest.
    pub miner_share_ppb: u64,
    /// The declared model (name, hash), if any.
    pub model: Option<(String, String)>,
    /// The owner's share of the Brain's emission (ppb), fixed by the whitepaper.
    pub owner_share_ppb: u64,
    pub miners: u32,
    pub validators: u32,
    /// Registered peers: (peer id, role, fee paid, height).
    pub registrations: Vec<(String, String, String, Height)>,
    pub income: BrainIncome,
    pub last_final_height: Option<Height>,
}

/// What a Brain's owner earned. Registration fees are this Brain's; settlement credits are the
/// owner account's over every settled period (across all the Brains it owns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrainIncome {
    pub registration_fees: String,
    pub settlement_fee_credits: String,
    pub settlement_emission_credits: String,
    pub owner_balance: String,
    pub settlements: usize,
}

#[derive(Message)]
#[rtype(result = "LedgerResponse")]
struct Ask {
    req: LedgerRequest,
}

#[derive(Message)]
#[rtype(result = "Tx")]
struct Submit {
    kind: brainmesh_ledger::tx::TxKind,
}

/// A receipt accepted on the Brain's receipts topic (forwarded by `Inbox`).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ReceiptSeen {
    pub data: Vec<u8>,
}

// ---- the actor -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    parent: Option<Height>,
    receipts: Vec<String>,
    txs: Vec<String>,
}

#[derive(Debug, Clone)]
struct FinalInfo {
    cert: FinalBatch,
    batch: Batch,
    /// Voters and the parent each reported.
    voters: Vec<(String, Option<Height>)>,
    attempts: u32,
}

#[derive(Serialize, Deserialize)]
struct ReceiptBody {
    stamped: Height,
    receipt: SignedReceipt,
}

#[derive(Serialize, Deserialize)]
struct TxBody {
    stamped: Height,
    tx: Tx,
}

pub struct Rollup {
    id: Arc<Identity>,
    me: String,
    cfg: RollupConfig,
    store: LedgerStore,
    /// Bodies of every receipt (`r/<id>`) and transaction (`t/<id>`) seen, and `v/last` (the
    /// last height this validator voted for).
    bodies: sled::Tree,
    node_receipts: crate::receipt::ReceiptStore,
    pending: PendingPool,
    net: NetworkSender,
    membership: MembershipHandle,
    metrics: Metrics,
    summary: Arc<Mutex<LedgerSummary>>,
    /// Validators and their stake for finality (refreshed every block).
    stakes: BTreeMap<String, Amount>,
    voted: Option<Height>,
    proposals: BTreeMap<Height, BTreeMap<String, Seen>>,
    votes: BTreeMap<Height, (Finality, BTreeMap<String, Seen>)>,
    finals: BTreeMap<Height, FinalInfo>,
    applying: bool,
    blocks_applied: u64,
    /// Next nonce for this node's own transactions.
    own_nonce: u64,
    /// Round-robin position among the other validators for reconciliation.
    reconcile_turn: usize,
    reconciling: bool,
}

const K_VOTED: &[u8] = b"v/last";

fn tagged(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl Rollup {
    /// Opens the ledger in the node's database (creating it from the configured genesis).
    pub fn new(
        id: Arc<Identity>,
        cfg: RollupConfig,
        db: &sled::Db,
        node_receipts: crate::receipt::ReceiptStore,
        net: NetworkSender,
        membership: MembershipHandle,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let store = LedgerStore::with_db(db.clone(), || cfg.genesis())?;
        let bodies = db.open_tree("rollup")?;
        let voted = bodies.get(K_VOTED)?.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map(u64::from_be_bytes);
        let me = id.peer_id().to_string();
        let own_nonce = store.state().nonce(&me) + 1;
        Ok(Self {
            id,
            me,
            cfg,
            store,
            bodies,
            node_receipts,
            pending: PendingPool::default(),
            net,
            membership,
            metrics,
            summary: Arc::new(Mutex::new(LedgerSummary::default())),
            stakes: BTreeMap::new(),
            voted,
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            finals: BTreeMap::new(),
            applying: false,
            blocks_applied: 0,
            own_nonce,
            reconcile_turn: 0,
            reconciling: false,
        })
    }

    pub fn start_with_handle(self) -> LedgerHandle {
        let summary = self.summary.clone();
        let addr = self.start();
        LedgerHandle { addr, summary }
    }

    fn topic(&self) -> String {
        TopicKind::Rollup.topic(self.cfg.brain)
    }

    fn height_now(&self) -> Height {
        self.cfg.clock.height()
    }

    fn vote_delay(&self) -> Duration {
        let ms =
            if self.cfg.vote_delay_ms > 0 { self.cfg.vote_delay_ms } else { self.cfg.clock.block_time_ms() * 2 / 5 };
        self.cfg.clock.wall_wait(Duration::from_millis(ms.max(1)))
    }

    fn included(&self, id: &str) -> bool {
        self.store.is_included(id).unwrap_or(false)
    }

    fn is_validator(&self) -> bool {
        self.stakes.contains_key(&self.me)
    }

    // ---- bodies ----------------------------------------------------------------------------

    fn receipt_body(&self, id: &str) -> Option<SignedReceipt> {
        let v = self.bodies.get(tagged(b"r/", id)).ok()??;
        serde_json::from_slice::<ReceiptBody>(&v).ok().map(|b| b.receipt)
    }

    fn tx_body(&self, id: &str) -> Option<Tx> {
        let v = self.bodies.get(tagged(b"t/", id)).ok()??;
        serde_json::from_slice::<TxBody>(&v).ok().map(|b| b.tx)
    }

    fn has_body(&self, id: &str) -> bool {
        self.bodies.contains_key(tagged(b"r/", id)).unwrap_or(false)
            || self.bodies.contains_key(tagged(b"t/", id)).unwrap_or(false)
    }

    /// Verifies and keeps a receipt; pending unless already in a final block. True if it is valid.
    fn add_receipt(&mut self, sr: SignedReceipt) -> bool {
        let Ok(r) = sr.verify() else { return false };
        if r.brain != self.cfg.brain {
            return false;
        }
        let id = sr.id();
        if self.has_body(&id) {
            return true;
        }
        let stamped = self.height_now();
        let body = ReceiptBody { stamped, receipt: sr };
        if self.bodies.insert(tagged(b"r/", &id), serde_json::to_vec(&body).unwrap_or_default()).is_err() {
            return false;
        }
        let _ = self.bodies.flush();
        if !self.included(&id) {
            self.pending.add_receipt(&id, stamped);
        }
        true
    }

    /// Keeps a transaction that verifies (pending unless already in a final block).
    fn add_tx(&mut self, tx: Tx) -> bool {
        if !tx.well_formed() || !tx.verify(&public_key_of) {
            return false;
        }
        let id = tx.id();
        if self.has_body(&id) {
            return true;
        }
        let stamped = self.height_now();
        let body = TxBody { stamped, tx };
        if self.bodies.insert(tagged(b"t/", &id), serde_json::to_vec(&body).unwrap_or_default()).is_err() {
            return false;
        }
        let _ = self.bodies.flush();
        if !self.included(&id) {
            self.pending.add_tx(&id, stamped);
        }
        true
    }

    /// Rebuilds the pending pool from the stored bodies and picks up receipts the node stored
    /// while the rollup was not running.
    fn reload(&mut self) {
        for kv in self.bodies.scan_prefix(b"r/").flatten() {
            if let Ok(b) = serde_json::from_slice::<ReceiptBody>(&kv.1) {
                let id = String::from_utf8_lossy(&kv.0[2..]).to_string();
                if !self.included(&id) {
                    self.pending.add_receipt(&id, b.stamped);
                }
            }
        }
        for kv in self.bodies.scan_prefix(b"t/").flatten() {
            if let Ok(b) = serde_json::from_slice::<TxBody>(&kv.1) {
                let id = String::from_utf8_lossy(&kv.0[2..]).to_string();
                if !self.included(&id) {
                    self.pending.add_tx(&id, b.stamped);
                }
            }
        }
        for sr in self.node_receipts.all() {
            self.add_receipt(sr);
        }
    }

    // ---- validators ------------------------------------------------------------------------

    fn set_validators(&mut self, snap: &crate::RosterSnapshot) {
        let roster: BTreeSet<String> = snap
            .brains
            .iter()
            .filter(|b| b.brain == self.cfg.brain)
            .flat_map(|b| b.members.iter())
            .filter(|m| m.admitted && m.roles.contains(&Role::Validator))
            .map(|m| m.peer_id.clone())
            .collect();
        let stakes: BTreeMap<String, Amount> = if !self.cfg.validator_stakes.is_empty() {
            self.cfg
                .validator_stakes
                .iter()
                .filter(|(v, s)| roster.contains(*v) && **s > 0)
                .map(|(v, s)| (v.clone(), *s))
                .collect()
        } else {
            let from_ledger: BTreeMap<String, Amount> = self
                .store
                .state()
                .active_validator_stakes(&self.cfg.params)
                .into_iter()
                .filter(|(v, s)| roster.contains(v) && *s > 0)
                .collect();
            if from_ledger.is_empty() {
                roster.into_iter().map(|v| (v, 1)).collect()
            } else {
                from_ledger
            }
        };
        self.stakes = stakes;
    }

    fn quorum_possible(&self) -> bool {
        self.stakes.len() >= self.cfg.min_validators.max(1)
    }

    // ---- the block cycle -------------------------------------------------------------------

    fn schedule_tick(&self, ctx: &mut Context<Self>) {
        let bt = self.cfg.clock.block_time_ms();
        let wait = self.cfg.clock.until_next_block() + Duration::from_millis(20.min(bt / 10));
        ctx.run_later(self.cfg.clock.wall_wait(wait), |act, ctx| {
            act.tick(ctx);
            act.schedule_tick(ctx);
        });
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = self.height_now();
        if now == 0 {
            return;
        }
        let h = now - 1;
        let m = self.membership.clone();
        ctx.spawn(async move { m.roster().await }.into_actor(self).map(move |snap, act, ctx| {
            if let Some(s) = snap {
                act.set_validators(&s);
            }
            act.prune(h);
            act.propose(h, ctx);
            if h.is_multiple_of(RECONCILE_BLOCKS) {
                act.reconcile(ctx);
            }
            act.publish_summary();
        }));
    }

    /// Anti-entropy between validators: sends the digests of this validator's pending receipts
    /// to the next other validator (round robin) and fetches the bodies of the ids it answers
    /// with that this one lacks. Bounded by [`reconcile::MAX_IDS_PER_ANSWER`] ids per round.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.reconciling || !self.is_validator() {
            return;
        }
        let others: Vec<String> = self.stakes.keys().filter(|v| **v != self.me).cloned().collect();
        if others.is_empty() {
            return;
        }
        let peer = others[self.reconcile_turn % others.len()].clone();
        self.reconcile_turn = self.reconcile_turn.wrapping_add(1);
        let store = &self.store;
        let digests =
            reconcile::digests(self.pending.receipts.keys().filter(|id| !store.is_included(id).unwrap_or(false)));
        let net = self.net.clone();
        self.reconciling = true;
        ctx.spawn(
            async move {
                let req = serde_json::to_vec(&LedgerRequest::PendingDigest { digests }).unwrap_or_default();
                match net.request(peer.clone(), req).await.map(|b| serde_json::from_slice::<LedgerResponse>(&b)) {
                    Ok(Ok(LedgerResponse::PendingIds { ids })) => (peer, ids),
                    _ => (peer, Vec::new()),
                }
            }
            .into_actor(self)
            .then(|(peer, ids), act, _ctx| {
                let missing: Vec<String> =
                    ids.into_iter().filter(|id| !act.has_body(id) && !act.included(id)).collect();
                let net = act.net.clone();
                async move {
                    let mut got = Vec::new();
                    for chunk in missing.chunks(512) {
                        got.push(fetch_items(&net, &peer, chunk.to_vec()).await);
                    }
                    (peer, got)
                }
                .into_actor(act)
            })
            .map(|(peer, got), act, _ctx| {
                act.reconciling = false;
                let mut n = 0u64;
                for (receipts, _) in got {
                    for sr in receipts {
                        if act.add_receipt(sr) {
                            n += 1;
                        }
                    }
                }
                if n > 0 {
                    act.metrics.receipts_reoffered.inc_by(n);
                    tracing::info!(%peer, receipts = n, "pending receipts reconciled from another validator");
                }
            }),
        );
    }

    fn prune(&mut self, h: Height) {
        let keep = h.saturating_sub(KEEP_HEIGHTS);
        self.proposals = self.proposals.split_off(&keep);
        self.votes = self.votes.split_off(&keep);
    }

    fn propose(&mut self, h: Height, ctx: &mut Context<Self>) {
        if !self.is_validator() || self.voted.is_some_and(|v| v >= h) {
            return;
        }
        let store = &self.store;
        let batch =
            self.pending.batch_for(h + 1, self.cfg.max_batch_items, &|id| store.is_included(id).unwrap_or(false));
        let parent = self.store.last_height();
        let msg = RollupMsg::Proposal {
            validator: self.me.clone(),
            height: h,
            parent,
            receipts: batch.receipts.clone(),
            txs: batch.txs.clone(),
        };
        self.net.publish(self.topic(), msg.to_bytes());
        self.proposals
            .entry(h)
            .or_default()
            .insert(self.me.clone(), Seen { parent, receipts: batch.receipts, txs: batch.txs });
        ctx.run_later(self.vote_delay(), move |act, ctx| act.vote_phase(h, ctx));
    }

    fn vote_phase(&mut self, h: Height, ctx: &mut Context<Self>) {
        if self.voted.is_some_and(|v| v >= h) || !self.is_validator() {
            return;
        }
        let props: Vec<(String, Seen)> = self
            .proposals
            .get(&h)
            .map(|m| {
                m.iter().filter(|(v, _)| self.stakes.contains_key(*v)).map(|(v, s)| (v.clone(), s.clone())).collect()
            })
            .unwrap_or_default();
        let last = self.store.last_height();
        let ahead = props
            .iter()
            .filter_map(|(v, s)| s.parent.filter(|p| last.is_none_or(|l| *p > l)).map(|p| (p, v.clone())))
            .max();
        let mut receipts: BTreeSet<String> = BTreeSet::new();
        let mut txs: BTreeSet<String> = BTreeSet::new();
        let mut fetch: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (v, s) in &props {
            for id in &s.receipts {
                if receipts.insert(id.clone()) && !self.has_body(id) {
                    fetch.entry(v.clone()).or_default().push(id.clone());
                }
            }
            for id in &s.txs {
                if txs.insert(id.clone()) && !self.has_body(id) {
                    fetch.entry(v.clone()).or_default().push(id.clone());
                }
            }
        }
        let catch_up = ahead.map(|(_, v)| (v, last));
        let net = self.net.clone();
        ctx.spawn(
            async move {
                let blocks = match catch_up {
                    Some((peer, after)) => fetch_blocks(&net, &peer, after).await,
                    None => Vec::new(),
                };
                let mut items = Vec::new();
                for (peer, ids) in fetch {
                    items.push(fetch_items(&net, &peer, ids).await);
                }
                (blocks, items)
            }
            .into_actor(self)
            .map(move |(blocks, items), act, ctx| {
                act.apply_bundles(blocks);
                act.keep_items(items);
                act.cast_vote(h, receipts, txs);
                act.drive_apply(ctx);
            }),
        );
    }

    fn cast_vote(&mut self, h: Height, receipts: BTreeSet<String>, txs: BTreeSet<String>) {
        if self.voted.is_some_and(|v| v >= h) || !self.is_validator() {
            return;
        }
        let keep = |id: &String, act: &Self| act.has_body(id) && !act.included(id);
        let r: Vec<String> = receipts.into_iter().filter(|id| keep(id, self)).take(self.cfg.max_batch_items).collect();
        let t: Vec<String> = txs.into_iter().filter(|id| keep(id, self)).take(self.cfg.max_batch_items).collect();
        let batch = Batch::new(h, r, t);
        // Remember the vote before anyone can see it.
        if self.bodies.insert(K_VOTED, h.to_be_bytes().to_vec()).is_err() || self.bodies.flush().is_err() {
            tracing::error!(height = h, "cannot record the vote; not voting");
            return;
        }
        self.voted = Some(h);
        let id = self.id.clone();
        let vote = BatchVote::new_signed(h, batch.root, &self.me, &|m| id.sign(m));
        let parent = self.store.last_height();
        let msg =
            RollupMsg::Vote { vote: vote.clone(), parent, receipts: batch.receipts.clone(), txs: batch.txs.clone() };
        self.net.publish(self.topic(), msg.to_bytes());
        self.metrics.task_event("ledger_vote");
        if let Err(e) = self.count_vote(&vote, Seen { parent, receipts: batch.receipts, txs: batch.txs }) {
            tracing::warn!("own vote not counted: {e}");
        }
    }

    /// Counts a verified-shape vote; queues the block when it becomes final.
    fn count_vote(&mut self, vote: &BatchVote, seen: Seen) -> Result<(), VoteError> {
        if self.store.last_height().is_some_and(|l| vote.height <= l) || !self.quorum_possible() {
            return Ok(());
        }
        let stakes = self.stakes.clone();
        let (fin, voters) = self.votes.entry(vote.height).or_insert_with(|| (Finality::new(stakes), BTreeMap::new()));
        let res = fin.add_vote(vote, &public_key_of)?;
        voters.insert(vote.validator.clone(), seen.clone());
        if let Some(cert) = res {
            let batch = Batch { height: vote.height, receipts: seen.receipts, txs: seen.txs, root: vote.root };
            let voters =
                cert.signatures.iter().map(|(v, _)| (v.clone(), voters.get(v).and_then(|s| s.parent))).collect();
            tracing::debug!(
                height = vote.height,
                receipts = batch.receipts.len(),
                txs = batch.txs.len(),
                "batch final"
            );
            self.finals.insert(vote.height, FinalInfo { cert, batch, voters, attempts: 0 });
        }
        Ok(())
    }

    /// Applies queued final blocks in height order, fetching what is missing first.
    fn drive_apply(&mut self, ctx: &mut Context<Self>) {
        if self.applying {
            return;
        }
        while let Some((h, info)) = self.finals.iter().next().map(|(h, i)| (*h, i.clone())) {
            let last = self.store.last_height();
            if last.is_some_and(|l| h <= l) {
                self.finals.remove(&h);
                continue;
            }
            let behind = info
                .voters
                .iter()
                .filter_map(|(v, p)| p.filter(|p| last.is_none_or(|l| *p > l)).map(|p| (p, v.clone())))
                .max();
            let missing = info.batch.missing(&|id| self.has_body(id));
            if behind.is_none() && missing.is_empty() {
                self.finals.remove(&h);
                self.apply_final(&info.cert, &info.batch);
                continue;
            }
            if info.attempts >= 20 {
                tracing::error!(height = h, "cannot get what final block {h} needs; giving up on it");
                self.metrics.task_event("ledger_block_unavailable");
                self.finals.remove(&h);
                continue;
            }
            let voters: Vec<String> = info.voters.iter().map(|(v, _)| v.clone()).filter(|v| *v != self.me).collect();
            if let Some(i) = self.finals.get_mut(&h) {
                i.attempts += 1;
            }
            self.applying = true;
            let net = self.net.clone();
            let delay = if info.attempts > 0 { Duration::from_millis(300) } else { Duration::ZERO };
            ctx.spawn(
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let blocks = match behind {
                        Some((_, peer)) => fetch_blocks(&net, &peer, last).await,
                        None => Vec::new(),
                    };
                    let mut items = Vec::new();
                    if !missing.is_empty() {
                        for v in voters {
                            let got = fetch_items(&net, &v, missing.clone()).await;
                            let enough = got.0.len() + got.1.len() >= missing.len();
                            items.push(got);
                            if enough {
                                break;
                            }
                        }
                    }
                    (blocks, items)
                }
                .into_actor(self)
                .map(|(blocks, items), act, ctx| {
                    act.applying = false;
                    act.apply_bundles(blocks);
                    act.keep_items(items);
                    act.drive_apply(ctx);
                }),
            );
            return;
        }
    }

    fn keep_items(&mut self, items: Vec<(Vec<SignedReceipt>, Vec<Tx>)>) {
        for (rs, ts) in items {
            for r in rs {
                if !self.add_receipt(r) {
                    self.metrics.reject(Reject::BadSignature);
                }
            }
            for t in ts {
                if !self.add_tx(t) {
                    self.metrics.reject(Reject::BadSignature);
                }
            }
        }
    }

    /// Applies fetched final blocks (catch-up) whose certificates verify.
    fn apply_bundles(&mut self, blocks: Vec<BlockBundle>) {
        for b in blocks {
            let h = b.record.certificate.height;
            if self.store.last_height().is_some_and(|l| h <= l) {
                continue;
            }
            if !b.record.certificate.verify(&self.stakes, &public_key_of) {
                tracing::warn!(height = h, "fetched block's certificate does not verify against our validators");
                self.metrics.reject(Reject::BadSignature);
                break;
            }
            for r in b.receipts {
                self.add_receipt(r);
            }
            for t in b.txs {
                self.add_tx(t);
            }
            if !self.apply_final(&b.record.certificate, &b.record.batch) {
                break;
            }
            self.metrics.task_event("ledger_catchup_block");
        }
    }

    /// Applies one final block from the stored bodies; true if it is now applied.
    fn apply_final(&mut self, cert: &FinalBatch, batch: &Batch) -> bool {
        let mut lines = Vec::with_capacity(batch.receipts.len());
        for id in &batch.receipts {
            match self.receipt_body(id).as_ref().and_then(receipt_line) {
                Some(l) => lines.push(l),
                None => {
                    tracing::warn!(height = cert.height, receipt = %id, "final block names a receipt we cannot read");
                    return false;
                }
            }
        }
        let mut txs = Vec::with_capacity(batch.txs.len());
        for id in &batch.txs {
            match self.tx_body(id) {
                Some(t) => txs.push(t),
                None => return false,
            }
        }
        match self.store.apply_block(cert, batch, &txs, &lines, &public_key_of, &self.cfg.params) {
            Ok(Applied::New(outcomes)) => {
                self.pending.on_final(batch);
                self.blocks_applied += 1;
                self.metrics.task_event("ledger_block_final");
                let mut own_refused = false;
                for (id, why) in &outcomes {
                    match why {
                        None => self.metrics.task_event("ledger_tx_applied"),
                        Some(reason) => {
                            tracing::info!(tx = %id, %reason, "transaction refused");
                            self.metrics.task_event("ledger_tx_refused");
                            own_refused |= txs.iter().any(|t| t.from == self.me && t.id() == *id);
                        }
                    }
                }
                // A refused transaction does not use its nonce: after one of ours was refused
                // the next one must reuse it (later ones already sent will be refused too).
                let next = self.store.state().nonce(&self.me) + 1;
                self.own_nonce = if own_refused { next } else { self.own_nonce.max(next) };
                self.maybe_settle();
                self.publish_summary();
                true
            }
            Ok(Applied::AlreadyApplied) => true,
            Err(e) => {
                tracing::error!(height = cert.height, "final block not applied: {e}");
                self.metrics.task_event("ledger_apply_error");
                false
            }
        }
    }

    /// Settles every whole period the applied blocks cover.
    fn maybe_settle(&mut self) {
        let interval = self.cfg.params.settlement_interval_blocks.max(1);
        let Some(last) = self.store.last_height() else { return };
        let to = (last + 1) / interval * interval;
        if to == 0 || self.store.last_settled().is_some_and(|s| s >= to) {
            return;
        }
        match self.store.settle(to, &self.cfg.prices, self.cfg.fee_split, &self.cfg.params) {
            Ok(rec) => {
                self.metrics.task_event("ledger_settlement");
                for r in &rec.rejected {
                    // Unauthorised gateway, over the cap, unknown model or Brain: not charged.
                    self.metrics.task_event("receipt_refused_at_settlement");
                    tracing::warn!(receipt = %r.receipt_id, reason = %r.reason, "receipt not charged");
                }
                tracing::info!(
                    from = rec.from_height,
                    to = rec.to_height,
                    receipts = rec.receipt_count,
                    debits = %rec.total_debits(),
                    root = %hex::encode(rec.receipts_root),
                    "settled"
                );
            }
            Err(e) => tracing::error!(to, "settlement failed: {e}"),
        }
    }

    fn publish_summary(&self) {
        let s = LedgerSummary {
            last_final_height: self.store.last_height(),
            last_settled: self.store.last_settled(),
            state_digest: hex::encode(self.store.state().digest()),
            pending: self.pending.len(),
            validators: self.stakes.len(),
            blocks_applied: self.blocks_applied,
            settlements: self.store.settlements().map(|v| v.len() as u64).unwrap_or(0),
        };
        if let Ok(mut g) = self.summary.lock() {
            *g = s;
        }
    }

    // ---- gossip --------------------------------------------------------------------------------

    fn on_gossip(&mut self, msg: &GossipIn) -> Result<(), Reject> {
        if msg.data.len() > MAX_MESSAGE_BYTES {
            return Err(Reject::Oversized);
        }
        if TopicKind::parse(&msg.topic) != Some((TopicKind::Rollup, self.cfg.brain)) {
            return Err(Reject::WrongTopic);
        }
        let m: RollupMsg = serde_json::from_slice(&msg.data).map_err(|_| Reject::Malformed)?;
        let source = msg.source.as_deref().unwrap_or_default();
        match m {
            RollupMsg::Tx { tx, .. } => self.on_tx(tx),
            RollupMsg::Proposal { validator, height, parent, receipts, txs } => {
                if source != validator {
                    return Err(Reject::IdentityMismatch);
                }
                self.check_height(height)?;
                if !self.stakes.contains_key(&validator) {
                    // Not (yet) a validator in our roster: relay, do not count.
                    tracing::debug!(%validator, "proposal from a peer that is not a known validator ignored");
                    return Ok(());
                }
                if receipts.len() > self.cfg.max_batch_items || txs.len() > self.cfg.max_batch_items {
                    return Err(Reject::InvalidRecord);
                }
                self.proposals.entry(height).or_default().entry(validator).or_insert(Seen { parent, receipts, txs });
                Ok(())
            }
            RollupMsg::Vote { vote, parent, receipts, txs } => {
                if source != vote.validator {
                    return Err(Reject::IdentityMismatch);
                }
                self.check_height(vote.height)?;
                let b = Batch { height: vote.height, receipts, txs, root: vote.root };
                b.validate().map_err(|_| Reject::InvalidRecord)?;
                if self.stakes.is_empty() {
                    return Ok(()); // roster not known yet: nothing to count against
                }
                match self.count_vote(&vote, Seen { parent, receipts: b.receipts, txs: b.txs }) {
                    Ok(()) => Ok(()),
                    Err(VoteError::BadSignature) => Err(Reject::BadSignature),
                    Err(VoteError::UnknownValidator(v)) => {
                        tracing::debug!(validator = %v, "vote from a peer that is not a known validator ignored");
                        Ok(())
                    }
                    Err(VoteError::Equivocation { .. }) => {
                        tracing::warn!(validator = %vote.validator, height = vote.height, "equivocation: two roots signed for one height");
                        self.metrics.task_event("ledger_equivocation");
                        Err(Reject::InvalidRecord)
                    }
                }
            }
        }
    }

    fn check_height(&self, h: Height) -> Result<(), Reject> {
        if h > self.height_now() + 1 {
            return Err(Reject::FutureTimestamp);
        }
        Ok(())
    }

    /// A signed transaction from gossip: forged ones (bad signature, unknown key) and replayed
    /// ones (nonce already used, or already in a final block) are refused and counted.
    fn on_tx(&mut self, tx: Tx) -> Result<(), Reject> {
        if !tx.well_formed() {
            return Err(Reject::Malformed);
        }
        if !tx.verify(&public_key_of) {
            self.metrics.task_event("ledger_tx_forged");
            return Err(Reject::BadSignature);
        }
        let id = tx.id();
        if self.included(&id) || tx.nonce <= self.store.state().nonce(&tx.from) {
            self.metrics.task_event("ledger_tx_replayed");
            return Err(Reject::Replay);
        }
        if self.add_tx(tx) {
            self.metrics.accept("ledger_tx");
            Ok(())
        } else {
            Err(Reject::InvalidRecord)
        }
    }

    // ---- serving peers -----------------------------------------------------------------------------

    fn serve(&mut self, req: LedgerRequest) -> LedgerResponse {
        match req {
            LedgerRequest::ReceiptStatus { ids } => {
                let (mut included, mut pending) = (Vec::new(), Vec::new());
                for id in ids.into_iter().take(MAX_STATUS_IDS) {
                    match self.store.included_at(&id) {
                        Ok(Some(h)) => included.push((id, h)),
                        _ if self.bodies.contains_key(tagged(b"r/", &id)).unwrap_or(false) => pending.push(id),
                        _ => {}
                    }
                }
                LedgerResponse::ReceiptStatus { included, pending }
            }
            LedgerRequest::OfferReceipts { receipts } => {
                let (mut accepted, mut refused) = (0u32, 0u32);
                for sr in receipts.into_iter().take(MAX_OFFERED) {
                    if self.add_receipt(sr) {
                        accepted += 1;
                        self.metrics.accept("receipt_offered");
                    } else {
                        refused += 1;
                        self.metrics.reject(Reject::BadSignature);
                    }
                }
                LedgerResponse::Offered { accepted, refused }
            }
            LedgerRequest::Allowance { account, gateway } => {
                let st = self.store.state();
                let now = self.store.last_height().unwrap_or(0);
                let per = st.allowances.get(&account);
                let a = per.and_then(|m| m.get(&gateway)).filter(|a| a.expires_at >= now);
                LedgerResponse::Allowance {
                    strict: self.cfg.params.require_authorization || per.is_some(),
                    remaining: a.map(|a| a.cap.saturating_sub(a.spent).to_string()),
                    expires_at: a.map(|a| a.expires_at),
                }
            }
            LedgerRequest::Registrations { brain } => {
                use brainmesh_ledger::economics::brains::PeerRole;
                let (miners, model) = match self.store.state().brains.get(brain) {
                    Ok(b) => (
                        b.registrations
                            .iter()
                            .filter(|(_, r)| r.role == PeerRole::Miner)
                            .map(|(p, r)| (p.clone(), r.registered_at))
                            .collect(),
                        b.model.as_ref().map(|m| (m.name.clone(), m.hash.clone())),
                    ),
                    Err(_) => (Vec::new(), None),
                };
                LedgerResponse::Registrations { brain, last_final_height: self.store.last_height(), miners, model }
            }
            LedgerRequest::PendingDigest { digests } => {
                let store = &self.store;
                let mine = self.pending.receipts.keys().filter(|id| !store.is_included(id).unwrap_or(false));
                LedgerResponse::PendingIds { ids: reconcile::ids_to_offer(mine, &digests) }
            }
            LedgerRequest::LedgerItems { ids } => {
                let (mut receipts, mut txs, mut size) = (Vec::new(), Vec::new(), 0usize);
                for id in ids.iter().take(4096) {
                    if let Some(r) = self.receipt_body(id) {
                        size += r.body.len() + 300;
                        receipts.push(r);
                    } else if let Some(t) = self.tx_body(id) {
                        size += 600;
                        txs.push(t);
                    }
                    if size > MAX_SYNC_RESPONSE_BYTES / 2 {
                        break;
                    }
                }
                LedgerResponse::LedgerItems { receipts, txs }
            }
            LedgerRequest::LedgerBlocks { after, max } => {
                let max = (max as usize).clamp(1, MAX_BLOCKS_PER_RESPONSE);
                let records = match self.store.blocks_after(after, max) {
                    Ok(r) => r,
                    Err(e) => return LedgerResponse::LedgerError { message: e.to_string() },
                };
                let mut blocks = Vec::new();
                let mut size = 0usize;
                for record in records {
                    let receipts: Vec<SignedReceipt> =
                        record.batch.receipts.iter().filter_map(|id| self.receipt_body(id)).collect();
                    let txs: Vec<Tx> = record.batch.txs.iter().filter_map(|id| self.tx_body(id)).collect();
                    size += receipts.iter().map(|r| r.body.len() + 300).sum::<usize>() + txs.len() * 600 + 2000;
                    if size > MAX_SYNC_RESPONSE_BYTES / 2 && !blocks.is_empty() {
                        break;
                    }
                    blocks.push(BlockBundle { record, receipts, txs });
                }
                LedgerResponse::LedgerBlocks { blocks }
            }
        }
    }
}

async fn fetch_items(net: &NetworkSender, peer: &str, ids: Vec<String>) -> (Vec<SignedReceipt>, Vec<Tx>) {
    let req = serde_json::to_vec(&LedgerRequest::LedgerItems { ids }).unwrap_or_default();
    match net.request(peer.to_string(), req).await.map(|b| serde_json::from_slice::<LedgerResponse>(&b)) {
        Ok(Ok(LedgerResponse::LedgerItems { receipts, txs })) => (receipts, txs),
        other => {
            tracing::debug!(%peer, "ledger item fetch failed: {:?}", other.map(|r| r.map(|_| ())));
            (Vec::new(), Vec::new())
        }
    }
}

/// Final blocks above `after` from `peer` (following up while full pages come back).
async fn fetch_blocks(net: &NetworkSender, peer: &str, mut after: Option<Height>) -> Vec<BlockBundle> {
    let mut out = Vec::new();
    for _ in 0..64 {
        let req = serde_json::to_vec(&LedgerRequest::LedgerBlocks { after, max: MAX_BLOCKS_PER_RESPONSE as u32 })
            .unwrap_or_default();
        let page = match net.request(peer.to_string(), req).await.map(|b| serde_json::from_slice::<LedgerResponse>(&b))
        {
            Ok(Ok(LedgerResponse::LedgerBlocks { blocks })) => blocks,
            _ => break,
        };
        let n = page.len();
        if let Some(b) = page.last() {
            after = Some(b.record.certificate.height);
        }
        out.extend(page);
        if n == 0 || n < MAX_BLOCKS_PER_RESPONSE / 2 {
            break;
        }
    }
    out
}

impl Actor for Rollup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.reload();
        self.publish_summary();
        let net = self.net.clone();
        let topic = self.topic();
        ctx.spawn(
            async move {
                let _ = net.subscribe(topic).await;
            }
            .into_actor(self),
        );
        self.schedule_tick(ctx);
        tracing::info!(
            last_final = ?self.store.last_height(),
            pending = self.pending.len(),
            digest = %hex::encode(self.store.state().digest()),
            "rollup started"
        );
    }
}

impl Handler<GossipIn> for Rollup {
    type Result = Result<(), Reject>;

    fn handle(&mut self, msg: GossipIn, ctx: &mut Self::Context) -> Self::Result {
        let res = self.on_gossip(&msg);
        match res {
            Ok(()) => self.metrics.accept("rollup"),
            Err(r) => self.metrics.reject(r),
        }
        self.drive_apply(ctx);
        res
    }
}

impl Handler<ReceiptSeen> for Rollup {
    type Result = ();

    fn handle(&mut self, msg: ReceiptSeen, _ctx: &mut Self::Context) {
        if let Ok(sr) = serde_json::from_slice::<SignedReceipt>(&msg.data) {
            self.add_receipt(sr);
        }
    }
}

/// A ledger catch-up request from `peer` (decoded by the router), answered by the rollup actor.
#[derive(Message, Debug, Clone)]
#[rtype(result = "LedgerResponse")]
pub struct LedgerSyncIn {
    pub peer: PeerId,
    pub req: LedgerRequest,
}

impl Handler<LedgerSyncIn> for Rollup {
    type Result = MessageResult<LedgerSyncIn>;

    fn handle(&mut self, msg: LedgerSyncIn, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.serve(msg.req))
    }
}

impl Handler<Ask> for Rollup {
    type Result = MessageResult<Ask>;

    fn handle(&mut self, msg: Ask, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.serve(msg.req))
    }
}

impl Handler<GetReport> for Rollup {
    type Result = Option<LedgerReport>;

    fn handle(&mut self, _: GetReport, _ctx: &mut Self::Context) -> Self::Result {
        LedgerReport::from_store(&self.store).ok()
    }
}

impl Handler<SubmitSigned> for Rollup {
    type Result = Result<String, Reject>;

    fn handle(&mut self, msg: SubmitSigned, _ctx: &mut Self::Context) -> Self::Result {
        let id = msg.tx.id();
        let tx = msg.tx.clone();
        self.on_tx(msg.tx).inspect_err(|&r| {
            self.metrics.reject(r);
        })?;
        self.net.publish(self.topic(), RollupMsg::Tx { tx, sent_ms: self.cfg.clock.now_ms() }.to_bytes());
        Ok(id)
    }
}

impl Handler<GetBrain> for Rollup {
    type Result = Option<BrainInfo>;

    fn handle(&mut self, msg: GetBrain, _ctx: &mut Self::Context) -> Self::Result {
        use brainmesh_ledger::economics::brains::{BrainKind, PeerRole};
        let st = self.store.state();
        let b = st.brains.get(msg.id).ok()?;
        let role = |r: PeerRole| if r == PeerRole::Miner { "miner" } else { "validator" };
        let (mut fees, mut emission, mut n) = (0u128, 0u128, 0usize);
        for rec in self.store.settlements().unwrap_or_default() {
            fees = fees.saturating_add(rec.fee_credits.get(&b.owner).copied().unwrap_or(0));
            emission = emission.saturating_add(rec.emission_credits.get(&b.owner).copied().unwrap_or(0));
            n += 1;
        }
        Some(BrainInfo {
            id: b.id,
            owner: b.owner.clone(),
            acquired_by: match b.kind {
                BrainKind::Reserved => "reserved",
                BrainKind::Burned { .. } => "burned",
                BrainKind::Staked { .. } => "staked",
            }
            .into(),
            created_at: b.created_at,
            registration_fee: b.registration_fee.to_string(),
            miner_share_ppb: b.miner_share,
            model: b.model.as_ref().map(|m| (m.name.clone(), m.hash.clone())),
            owner_share_ppb: self.cfg.params.owner_share,
            miners: b.count(PeerRole::Miner),
            validators: b.count(PeerRole::Validator),
            registrations: b
                .registrations
                .iter()
                .map(|(p, r)| (p.clone(), role(r.role).into(), r.fee_paid.to_string(), r.registered_at))
                .collect(),
            income: BrainIncome {
                registration_fees: b.registrations.values().map(|r| r.fee_paid).sum::<u128>().to_string(),
                settlement_fee_credits: fees.to_string(),
                settlement_emission_credits: emission.to_string(),
                owner_balance: st.balance(&b.owner).to_string(),
                settlements: n,
            },
            last_final_height: self.store.last_height(),
        })
    }
}

impl Handler<GetAccount> for Rollup {
    type Result = MessageResult<GetAccount>;

    fn handle(&mut self, msg: GetAccount, _ctx: &mut Self::Context) -> Self::Result {
        let st = self.store.state();
        let nonce = st.nonce(&msg.account);
        let mut next = nonce + 1;
        // Transactions waiting for a block count too (only the pending pool, not every body).
        for id in self.pending.txs.keys() {
            if let Some(t) = self.tx_body(id) {
                if t.from == msg.account && t.nonce >= next {
                    next = t.nonce + 1;
                }
            }
        }
        if msg.account == self.me {
            next = next.max(self.own_nonce);
        }
        let allowances = st
            .allowances
            .get(&msg.account)
            .map(|m| m.iter().map(|(g, a)| (g.clone(), a.cap.to_string(), a.spent.to_string(), a.expires_at)).collect())
            .unwrap_or_default();
        MessageResult(AccountView {
            balance: st.balance(&msg.account).to_string(),
            account: msg.account,
            nonce,
            next_nonce: next,
            last_final_height: self.store.last_height(),
            allowances,
        })
    }
}

impl Handler<Submit> for Rollup {
    type Result = MessageResult<Submit>;

    fn handle(&mut self, msg: Submit, _ctx: &mut Self::Context) -> Self::Result {
        let id = self.id.clone();
        let nonce = self.own_nonce.max(self.store.state().nonce(&self.me) + 1);
        self.own_nonce = nonce + 1;
        let tx = Tx::new_signed(&self.me, nonce, msg.kind, &|m| id.sign(m));
        self.add_tx(tx.clone());
        self.net.publish(self.topic(), RollupMsg::Tx { tx: tx.clone(), sent_ms: self.cfg.clock.now_ms() }.to_bytes());
        MessageResult(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainmesh_ledger::economics::tokens;
    use brainmesh_ledger::store::BlockRecord;
    use brainmesh_ledger::tx::TxKind;

    fn signed_tx(id: &Identity, nonce: u64) -> Tx {
        let from = id.peer_id().to_string();
        Tx::new_signed(&from, nonce, TxKind::Transfer { to: "carol".into(), amount: tokens(3) }, &|m| id.sign(m))
    }

    #[test]
    fn wire_messages_with_u128_amounts_round_trip() {
        let id = Identity::generate();
        let tx = signed_tx(&id, 1);
        assert!(tx.verify(&public_key_of), "a peer id's inlined key verifies its transactions");
        let m = RollupMsg::Tx { tx: tx.clone(), sent_ms: 7 };
        assert_eq!(serde_json::from_slice::<RollupMsg>(&m.to_bytes()).unwrap(), m);
        let batch = Batch::new(4, vec!["r1".to_string()], vec![tx.id()]);
        let vote = BatchVote::new_signed(4, batch.root, &id.peer_id().to_string(), &|m| id.sign(m));
        let cert = FinalBatch {
            height: 4,
            root: batch.root,
            signatures: vec![(vote.validator.clone(), hex::encode(vote.sig))],
            signed_stake: u128::MAX / 3,
            total_stake: u128::MAX / 2,
        };
        let record = BlockRecord { certificate: cert, batch, outcomes: vec![], skipped_receipts: vec![] };
        let resp = LedgerResponse::LedgerBlocks {
            blocks: vec![BlockBundle { record: record.clone(), receipts: vec![], txs: vec![tx] }],
        };
        let back: LedgerResponse = serde_json::from_slice(&serde_json::to_vec(&resp).unwrap()).unwrap();
        assert!(matches!(back, LedgerResponse::LedgerBlocks { blocks } if blocks[0].record == record));
        // Requests keep a `type` tag: Inbox routes `ledger_*` requests on the sync protocol.
        let req = serde_json::to_string(&LedgerRequest::LedgerItems { ids: vec!["a".into()] }).unwrap();
        assert!(req.contains("\"type\":\"ledger_items\""), "{req}");
    }

    #[test]
    fn vote_needs_more_than_two_thirds_of_equal_stake() {
        let ids: Vec<Identity> = (0..3).map(|_| Identity::generate()).collect();
        let stakes: BTreeMap<String, Amount> = ids.iter().map(|i| (i.peer_id().to_string(), 1)).collect();
        let mut f = Finality::new(stakes);
        let root = Batch::new(9, Vec::<String>::new(), Vec::<String>::new()).root;
        let vote = |i: &Identity| BatchVote::new_signed(9, root, &i.peer_id().to_string(), &|m| i.sign(m));
        assert!(f.add_vote(&vote(&ids[0]), &public_key_of).unwrap().is_none());
        assert!(f.add_vote(&vote(&ids[1]), &public_key_of).unwrap().is_none(), "2 of 3 is exactly 2/3: not final");
        let cert = f.add_vote(&vote(&ids[2]), &public_key_of).unwrap().expect("3 of 3 is final");
        assert_eq!((cert.signed_stake, cert.total_stake), (3, 3));
    }
}
