//! sled storage of the ledger.
//!
//! One sled tree, `ledger`. A final block (its batch, the transactions' bodies, the receipt
//! lines, the changed state entries, the included-id markers and the last-applied-height
//! marker) is written as **one** `sled::Batch`, then flushed, so a `kill -9` at any point leaves
//! either the state before the block or the state after it (tested with a child process killed
//! while writing). A settlement is written the same way with its own marker.
//!
//! Keys: `m/height`, `m/settled` (u64 BE), `m/scalars`, `m/brains` (JSON), `b/<account>`
//! (u128 BE), `n/<account>` (u64 BE), `s/<stake key JSON>` (u128 BE), `k/<height BE>` (block
//! record), `i/<id>` (height BE: the id is in a final block), `r/<height BE><id>` (receipt line),
//! `t/<id>` (transaction), `x/<to_height BE>` (settlement record).
//!
//! Re-applying a block at or below the last applied height is a no-op when its root is the one
//! stored, and an error otherwise. An id of a batch that is already in an earlier final block is
//! skipped (recorded, never counted twice). Heights must increase but may skip (a block with no final
//! batch). Known cost: each block clones the in-memory state once to stay all-or-nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::batch::{Batch, BatchError, FinalBatch};
use super::settlement::{self, BrainPeriod, FeeSplit, ReceiptLine, SettleError, SettlementInput, SettlementRecord};
use super::state::{LedgerState, StakeKey, TxError};
use super::tx::Tx;
use crate::economics::{Amount, BrainRegistry, EconomicsParams, Height, PriceList};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database failed (I/O, lock held by another process, …).
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// Stored bytes do not decode (bad JSON, wrong integer width, non-UTF-8 key, missing scalars).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A different block or settlement is already stored at this height.
    #[error("block {height} conflicts with what is stored")]
    Conflict {
        /// The block height, or a settlement's `to_height`.
        height: Height,
    },
    /// The certificate, batch, transaction bodies or receipt lines given for a block do not agree.
    #[error("block does not match its batch: {0}")]
    Mismatch(&'static str),
    /// The block's batch is not canonical or its root does not match.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Settling the period, or applying its record to the state, failed.
    #[error(transparent)]
    Settle(#[from] SettleError),
    /// A settlement does not follow the last one, or covers blocks not yet applied.
    #[error("settlement out of order: {0}")]
    SettlementOrder(&'static str),
}

/// What applying a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Written; per transaction id, `None` if applied or the refusal reason (already-included
    /// ids first, with [`ALREADY_INCLUDED`], then the rest in application order).
    New(Vec<(String, Option<String>)>),
    /// The same block was already applied: nothing changed.
    AlreadyApplied,
}

/// A stored block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// The finality certificate the block was applied under.
    pub certificate: FinalBatch,
    /// The block's batch of receipt and transaction ids.
    pub batch: Batch,
    /// Transaction ids in application order with `None` (applied) or the refusal reason.
    pub outcomes: Vec<(String, Option<String>)>,
    /// Receipt ids of the batch that were already in a final block (not stored or counted again).
    pub skipped_receipts: Vec<String>,
}

/// Outcome recorded for a transaction id that was already in a final block.
pub const ALREADY_INCLUDED: &str = "already in a final block";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Scalars {
    genesis_supply: Amount,
    minted: Amount,
    burned: Amount,
}

/// The ledger on disk plus its in-memory copy.
pub struct LedgerStore {
    db: sled::Db,
    tree: sled::Tree,
    state: LedgerState,
    last_height: Option<Height>,
    last_settled: Option<Height>,
}

const K_HEIGHT: &[u8] = b"m/height";
const K_SETTLED: &[u8] = b"m/settled";
const K_SCALARS: &[u8] = b"m/scalars";
const K_BRAINS: &[u8] = b"m/brains";
const K_WEIGHTS: &[u8] = b"m/weights";
const K_ALLOWANCES: &[u8] = b"m/allowances";

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn unjson<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(b).map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt("u64".into()))
}

fn be_u128(b: &[u8]) -> Result<u128, StoreError> {
    <[u8; 16]>::try_from(b).map(u128::from_be_bytes).map_err(|_| StoreError::Corrupt("u128".into()))
}

fn utf8(b: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(b.to_vec()).map_err(|_| StoreError::Corrupt("utf8 key".into()))
}

/// Writes into `w` the entries of `new` that differ from `old` and removes those gone.
fn diff_map<K: Ord, V: PartialEq>(
    w: &mut sled::Batch,
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    k: impl Fn(&K) -> Result<Vec<u8>, StoreError>,
    v: impl Fn(&V) -> Vec<u8>,
) -> Result<(), StoreError> {
    for (key, val) in new {
        if old.get(key) != Some(val) {
            w.insert(k(key)?, v(val));
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            w.remove(k(key)?);
        }
    }
    Ok(())
}

fn stake_key(s: &StakeKey) -> Result<Vec<u8>, StoreError> {
    Ok(key(b"s/", &json(s)?))
}

/// Adds to `w` everything that changed from `old` to `new`.
fn diff_state(w: &mut sled::Batch, old: &LedgerState, new: &LedgerState) -> Result<(), StoreError> {
    diff_map(w, &old.balances, &new.balances, |a| Ok(key(b"b/", a.as_bytes())), |v| v.to_be_bytes().to_vec())?;
    diff_map(w, &old.nonces, &new.nonces, |a| Ok(key(b"n/", a.as_bytes())), |v| v.to_be_bytes().to_vec())?;
    diff_map(w, &old.stakes, &new.stakes, stake_key, |v| v.to_be_bytes().to_vec())?;
    if old.brains != new.brains {
        w.insert(K_BRAINS, json(&new.brains)?);
    }
    if old.weights != new.weights {
        w.insert(K_WEIGHTS, json(&new.weights)?);
    }
    if old.allowances != new.allowances {
        w.insert(K_ALLOWANCES, json(&new.allowances)?);
    }
    let sc = Scalars { genesis_supply: new.genesis_supply, minted: new.minted, burned: new.burned };
    w.insert(K_SCALARS, json(&sc)?);
    Ok(())
}

impl LedgerStore {
    /// Opens (or creates, writing `genesis()`) the ledger at `dir`.
    pub fn open(dir: &Path, genesis: impl FnOnce() -> LedgerState) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        Self::from_db(db, genesis)
    }

    /// A temporary store (tests).
    pub fn temporary(genesis: impl FnOnce() -> LedgerState) -> Result<Self, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?, genesis)
    }

    /// The ledger inside an already open sled database (the node's own `db`).
    pub fn with_db(db: sled::Db, genesis: impl FnOnce() -> LedgerState) -> Result<Self, StoreError> {
        Self::from_db(db, genesis)
    }

    /// Opens the ledger at `dir` without creating one (command-line readers): `Ok(None)` when the
    /// database holds no ledger.
    pub fn open_existing(dir: &Path) -> Result<Option<Self>, StoreError> {
        if !dir.exists() {
            return Ok(None);
        }
        let db = sled::Config::new().path(dir).open()?;
        if !db.tree_names().iter().any(|n| n.as_ref() == b"ledger") {
            return Ok(None);
        }
        if db.open_tree("ledger")?.get(K_SCALARS)?.is_none() {
            return Ok(None);
        }
        Self::from_db(db, LedgerState::default).map(Some)
    }

    /// Height of the final block that included a receipt or transaction id.
    pub fn included_at(&self, id: &str) -> Result<Option<Height>, StoreError> {
        self.tree.get(key(b"i/", id.as_bytes()))?.map(|v| be_u64(&v)).transpose()
    }

    /// Up to `max` stored blocks with a height above `after` (all from the first when `None`),
    /// in height order.
    pub fn blocks_after(&self, after: Option<Height>, max: usize) -> Result<Vec<BlockRecord>, StoreError> {
        let lo = match after {
            Some(h) => match h.checked_add(1) {
                Some(n) => key(b"k/", &n.to_be_bytes()),
                None => return Ok(Vec::new()),
            },
            None => b"k/".to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.tree.range(lo..).take(max) {
            let (k, v) = kv?;
            if !k.starts_with(b"k/") {
                break;
            }
            out.push(unjson(&v)?);
        }
        Ok(out)
    }

    /// Every settlement record, oldest first.
    pub fn settlements(&self) -> Result<Vec<SettlementRecord>, StoreError> {
        self.tree.scan_prefix(b"x/").values().map(|v| unjson(&v?)).collect()
    }

    fn from_db(db: sled::Db, genesis: impl FnOnce() -> LedgerState) -> Result<Self, StoreError> {
        let tree = db.open_tree("ledger")?;
        if tree.get(K_SCALARS)?.is_none() {
            let g = genesis();
            let mut w = sled::Batch::default();
            diff_state(&mut w, &LedgerState::default(), &g)?;
            w.insert(K_BRAINS, json(&g.brains)?);
            tree.apply_batch(w)?;
            db.flush()?;
        }
        let mut s = Self { db, tree, state: LedgerState::default(), last_height: None, last_settled: None };
        s.load()?;
        Ok(s)
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let t = &self.tree;
        let sc: Scalars = unjson(&t.get(K_SCALARS)?.ok_or_else(|| StoreError::Corrupt("no scalars".into()))?)?;
        let brains: BrainRegistry = match t.get(K_BRAINS)? {
            Some(b) => unjson(&b)?,
            None => BrainRegistry::default(),
        };
        let weights = match t.get(K_WEIGHTS)? {
            Some(b) => unjson(&b)?,
            None => Default::default(),
        };
        let allowances = match t.get(K_ALLOWANCES)? {
            Some(b) => unjson(&b)?,
            None => Default::default(),
        };
        let mut st = LedgerState {
            genesis_supply: sc.genesis_supply,
            minted: sc.minted,
            burned: sc.burned,
            brains,
            weights,
            allowances,
            ..LedgerState::default()
        };
        for kv in t.scan_prefix(b"b/") {
            let (k, v) = kv?;
            st.balances.insert(utf8(&k[2..])?, be_u128(&v)?);
        }
        for kv in t.scan_prefix(b"n/") {
            let (k, v) = kv?;
            st.nonces.insert(utf8(&k[2..])?, be_u64(&v)?);
        }
        for kv in t.scan_prefix(b"s/") {
            let (k, v) = kv?;
            st.stakes.insert(unjson(&k[2..])?, be_u128(&v)?);
        }
        self.last_height = t.get(K_HEIGHT)?.map(|v| be_u64(&v)).transpose()?;
        self.last_settled = t.get(K_SETTLED)?.map(|v| be_u64(&v)).transpose()?;
        self.state = st;
        Ok(())
    }

    /// The in-memory ledger state as of the last applied block and settlement.
    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    /// Height of the last applied block.
    pub fn last_height(&self) -> Option<Height> {
        self.last_height
    }

    /// `to_height` (exclusive) of the last applied settlement.
    pub fn last_settled(&self) -> Option<Height> {
        self.last_settled
    }

    /// Whether a receipt or transaction id is in a final block (for `build_batch`).
    pub fn is_included(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key(b"i/", id.as_bytes()))?)
    }

    /// The stored record of the block at `height`, if one was applied.
    pub fn block(&self, height: Height) -> Result<Option<BlockRecord>, StoreError> {
        self.tree.get(key(b"k/", &height.to_be_bytes()))?.map(|v| unjson(&v)).transpose()
    }

    /// The stored body of transaction `id`, if it is in a final block.
    pub fn tx(&self, id: &str) -> Result<Option<Tx>, StoreError> {
        self.tree.get(key(b"t/", id.as_bytes()))?.map(|v| unjson(&v)).transpose()
    }

    /// The stored settlement record whose period ends at `to_height` (exclusive), if any.
    pub fn settlement(&self, to_height: Height) -> Result<Option<SettlementRecord>, StoreError> {
        self.tree.get(key(b"x/", &to_height.to_be_bytes()))?.map(|v| unjson(&v)).transpose()
    }

    /// Receipt lines of the blocks in `[from, to)`.
    pub fn receipts_between(&self, from: Height, to: Height) -> Result<Vec<ReceiptLine>, StoreError> {
        let mut out = Vec::new();
        if to <= from {
            return Ok(out);
        }
        let lo = key(b"r/", &from.to_be_bytes());
        let hi = key(b"r/", &to.to_be_bytes());
        for kv in self.tree.range(lo..hi) {
            out.push(unjson(&kv?.1)?);
        }
        Ok(out)
    }

    /// Applies a final block: its certificate, batch, the bodies of its transactions and the
    /// lines of its receipts. Transactions run in (sender, nonce, id) order; a refused one is
    /// recorded with its reason and changes nothing. All of it lands in one atomic write.
    pub fn apply_block(
        &mut self,
        certificate: &FinalBatch,
        batch: &Batch,
        txs: &[Tx],
        receipts: &[ReceiptLine],
        pubkey_of: &dyn Fn(&str) -> Option<[u8; 32]>,
        p: &EconomicsParams,
    ) -> Result<Applied, StoreError> {
        let h = certificate.height;
        if self.last_height.is_some_and(|last| h <= last) {
            return match self.block(h)? {
                Some(b) if b.batch.root == certificate.root => Ok(Applied::AlreadyApplied),
                _ => Err(StoreError::Conflict { height: h }),
            };
        }
        batch.validate()?;
        if batch.height != h || batch.root != certificate.root {
            return Err(StoreError::Mismatch("certificate and batch differ"));
        }
        let mut tx_ids: Vec<(String, &Tx)> = txs.iter().map(|t| (t.id(), t)).collect();
        tx_ids.sort_by(|a, b| a.0.cmp(&b.0));
        if tx_ids.iter().map(|(id, _)| id).ne(batch.txs.iter()) {
            return Err(StoreError::Mismatch("transaction bodies do not match the batch"));
        }
        let mut lines: Vec<&ReceiptLine> = receipts.iter().collect();
        lines.sort_by(|a, b| a.receipt_id.cmp(&b.receipt_id));
        if lines.iter().map(|l| &l.receipt_id).ne(batch.receipts.iter()) {
            return Err(StoreError::Mismatch("receipt lines do not match the batch"));
        }
        // Honest validators never put an included id in a batch (build_batch skips them); if a
        // final batch does anyway, the item is skipped, never counted twice, and the block
        // still applies so the ledger does not stall.
        let mut skipped_receipts = Vec::new();
        let mut fresh_lines = Vec::with_capacity(lines.len());
        for l in lines {
            if self.is_included(&l.receipt_id)? {
                skipped_receipts.push(l.receipt_id.clone());
            } else {
                fresh_lines.push(l);
            }
        }
        let lines = fresh_lines;
        let mut outcomes = Vec::new();
        let mut fresh_txs = Vec::with_capacity(tx_ids.len());
        for (id, tx) in tx_ids {
            if self.is_included(&id)? {
                outcomes.push((id, Some(ALREADY_INCLUDED.to_string())));
            } else {
                fresh_txs.push((id, tx));
            }
        }
        let tx_ids = fresh_txs;

        let mut next = self.state.clone();
        let mut order: Vec<&(String, &Tx)> = tx_ids.iter().collect();
        order.sort_by(|a, b| (&a.1.from, a.1.nonce, &a.0).cmp(&(&b.1.from, b.1.nonce, &b.0)));
        for (id, tx) in order {
            let r: Result<(), TxError> = next.apply_tx(tx, pubkey_of, p, h);
            outcomes.push((id.clone(), r.err().map(|e| e.to_string())));
        }

        let mut w = sled::Batch::default();
        diff_state(&mut w, &self.state, &next)?;
        let hb = h.to_be_bytes();
        for (id, tx) in &tx_ids {
            w.insert(key(b"t/", id.as_bytes()), json(tx)?);
            w.insert(key(b"i/", id.as_bytes()), hb.to_vec());
        }
        for l in &lines {
            let mut k = key(b"r/", &hb);
            k.extend_from_slice(l.receipt_id.as_bytes());
            w.insert(k, json(l)?);
            w.insert(key(b"i/", l.receipt_id.as_bytes()), hb.to_vec());
        }
        let rec = BlockRecord {
            certificate: certificate.clone(),
            batch: batch.clone(),
            outcomes: outcomes.clone(),
            skipped_receipts,
        };
        w.insert(key(b"k/", &hb), json(&rec)?);
        w.insert(K_HEIGHT, hb.to_vec());
        self.tree.apply_batch(w)?;
        self.db.flush()?;
        self.state = next;
        self.last_height = Some(h);
        Ok(Applied::New(outcomes))
    }

    /// Settles `[last_settled or 0, to_height)` from the stored receipt lines and applies it;
    /// emission is split by the consensus of the weights on the ledger
    /// ([`crate::period::brain_periods`]). Every block of the period must be applied
    /// (`to_height ≤ last_height + 1`).
    pub fn settle(
        &mut self,
        to_height: Height,
        prices: &PriceList,
        fee_split: FeeSplit,
        p: &EconomicsParams,
    ) -> Result<SettlementRecord, StoreError> {
        let from = self.last_settled.unwrap_or(0);
        if to_height <= from {
            return Err(StoreError::SettlementOrder("period already settled"));
        }
        if self.last_height.map_or(0, |h| h.saturating_add(1)) < to_height {
            return Err(StoreError::SettlementOrder("blocks of the period are not all applied"));
        }
        let receipts = self.receipts_between(from, to_height)?;
        let consensus = crate::period::brain_periods(&self.state, from, to_height, p).map_err(SettleError::from)?;
        let brains: Vec<BrainPeriod> = consensus.iter().map(|c| c.period.clone()).collect();
        let input =
            SettlementInput { from_height: from, to_height, receipts: &receipts, prices, brains: &brains, fee_split };
        let mut rec = settlement::settle(&input, &self.state, p)?;
        rec.bonds = consensus.into_iter().map(|c| (c.period.brain, c.bonds)).collect();
        self.apply_settlement(&rec)?;
        Ok(rec)
    }

    /// Applies a settlement record atomically; a record already applied (same `to_height`, same
    /// content) is a no-op.
    pub fn apply_settlement(&mut self, rec: &SettlementRecord) -> Result<Applied, StoreError> {
        if self.last_settled.is_some_and(|s| rec.to_height <= s) {
            return match self.settlement(rec.to_height)? {
                Some(r) if &r == rec => Ok(Applied::AlreadyApplied),
                _ => Err(StoreError::Conflict { height: rec.to_height }),
            };
        }
        if rec.from_height != self.last_settled.unwrap_or(0) {
            return Err(StoreError::SettlementOrder("period does not start where the last ended"));
        }
        let mut next = self.state.clone();
        next.apply_settlement(rec)?;
        let mut w = sled::Batch::default();
        diff_state(&mut w, &self.state, &next)?;
        w.insert(key(b"x/", &rec.to_height.to_be_bytes()), json(rec)?);
        w.insert(K_SETTLED, rec.to_height.to_be_bytes().to_vec());
        self.tree.apply_batch(w)?;
        self.db.flush()?;
        self.state = next;
        self.last_settled = Some(rec.to_height);
        Ok(Applied::New(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchVote;
    use crate::economics::{tokens, ModelPrice};
    use crate::testkit::{pubkey_of, signer};
    use crate::tx::TxKind;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    fn params() -> EconomicsParams {
        EconomicsParams::default()
    }

    fn genesis() -> LedgerState {
        let b =
            [("alice", tokens(1_000_000)), ("bob", tokens(10))].into_iter().map(|(a, v)| (a.to_string(), v)).collect();
        LedgerState::genesis(b, "labs", &params()).unwrap()
    }

    /// Block `h`: alice pays bob h base units, bob pays carol 1, one receipt.
    fn block(h: Height) -> (FinalBatch, Batch, Vec<Tx>, Vec<ReceiptLine>) {
        let txs = vec![
            Tx::new_signed("alice", h, TxKind::Transfer { to: "bob".into(), amount: h as u128 }, &signer("alice")),
            Tx::new_signed("bob", h, TxKind::Transfer { to: "carol".into(), amount: 1 }, &signer("bob")),
        ];
        let lines = vec![ReceiptLine {
            receipt_id: format!("receipt-{h:08}"),
            account: "alice".into(),
            miner: "miner".into(),
            brain: 1,
            prompt_units: h % 100,
            completion_units: 7,
            model: "m".into(),
            gateway: "gw".into(),
        }];
        let batch = Batch::new(h, lines.iter().map(|l| l.receipt_id.clone()), txs.iter().map(|t| t.id()));
        let vote = BatchVote::new_signed(h, batch.root, "v1", &signer("v1"));
        let fin = FinalBatch {
            height: h,
            root: batch.root,
            signatures: vec![("v1".into(), hex::encode(vote.sig))],
            signed_stake: 1,
            total_stake: 1,
        };
        (fin, batch, txs, lines)
    }

    fn apply(s: &mut LedgerStore, h: Height) -> Applied {
        let (f, b, t, r) = block(h);
        s.apply_block(&f, &b, &t, &r, &pubkey_of, &params()).unwrap()
    }

    /// The state after blocks `1..=n`, computed in memory.
    fn reference(n: Height) -> LedgerState {
        let mut st = genesis();
        for h in 1..=n {
            let (_, _, txs, _) = block(h);
            for t in txs {
                st.apply_tx(&t, &pubkey_of, &params(), h).unwrap();
            }
        }
        st
    }

    #[test]
    fn block_is_applied_and_reapplying_it_is_a_no_op() {
        let mut s = LedgerStore::temporary(genesis).unwrap();
        assert_eq!(s.last_height(), None);
        assert!(matches!(apply(&mut s, 1), Applied::New(o) if o.iter().all(|(_, e)| e.is_none())));
        let d = s.state().digest();
        assert_eq!(apply(&mut s, 1), Applied::AlreadyApplied);
        assert_eq!(s.state().digest(), d);
        assert_eq!(s.last_height(), Some(1));
        assert!(s.is_included("receipt-00000001").unwrap());
        // a different batch for an applied height is a conflict
        let (f, b, t, r) = block(2);
        let mut f1 = f.clone();
        f1.height = 1;
        let mut b1 = b.clone();
        b1.height = 1;
        assert!(matches!(
            s.apply_block(&f1, &b1, &t, &r, &pubkey_of, &params()),
            Err(StoreError::Conflict { height: 1 })
        ));
        // heights may skip; bodies must match the batch
        assert!(matches!(s.apply_block(&f, &b, &t[..1], &r, &pubkey_of, &params()), Err(StoreError::Mismatch(_))));
        assert!(matches!(s.apply_block(&f, &b, &t, &[], &pubkey_of, &params()), Err(StoreError::Mismatch(_))));
        assert_eq!(s.state().digest(), d);
        apply(&mut s, 2);
        assert_eq!(s.state().digest(), reference(2).digest());
    }

    #[test]
    fn an_item_in_a_final_block_is_skipped_in_a_later_one() {
        let mut s = LedgerStore::temporary(genesis).unwrap();
        apply(&mut s, 1);
        let (_, _, _, r1) = block(1);
        let b = Batch::new(2, r1.iter().map(|l| l.receipt_id.clone()), Vec::<String>::new());
        let f = FinalBatch { height: 2, root: b.root, signatures: vec![], signed_stake: 1, total_stake: 1 };
        let (_, _, t1, _) = block(1);
        let b = Batch::new(2, r1.iter().map(|l| l.receipt_id.clone()), t1.iter().map(|t| t.id()));
        let f = FinalBatch { root: b.root, ..f };
        let d = s.state().digest();
        let out = s.apply_block(&f, &b, &t1, &r1, &pubkey_of, &params()).unwrap();
        assert_eq!(
            out,
            Applied::New(
                t1.iter()
                    .map(|t| (t.id(), Some(ALREADY_INCLUDED.into())))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect()
            )
        );
        assert_eq!(s.state().digest(), d, "nothing counted twice");
        assert!(s.receipts_between(2, 3).unwrap().is_empty());
        assert_eq!(s.block(2).unwrap().unwrap().skipped_receipts, vec![r1[0].receipt_id.clone()]);
        assert_eq!(s.last_height(), Some(2));
    }

    #[test]
    fn refused_transaction_in_a_final_block_is_recorded_and_changes_nothing() {
        let mut s = LedgerStore::temporary(genesis).unwrap();
        let tx = Tx::new_signed("bob", 1, TxKind::Transfer { to: "x".into(), amount: tokens(11) }, &signer("bob"));
        let b = Batch::new(1, Vec::<String>::new(), [tx.id()]);
        let f = FinalBatch { height: 1, root: b.root, signatures: vec![], signed_stake: 1, total_stake: 1 };
        let d = s.state().digest();
        match s.apply_block(&f, &b, std::slice::from_ref(&tx), &[], &pubkey_of, &params()).unwrap() {
            Applied::New(o) => assert!(o[0].1.as_deref().unwrap().contains("insufficient balance")),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.state().digest(), d);
        assert_eq!(s.tx(&tx.id()).unwrap(), Some(tx));
        assert_eq!(s.block(1).unwrap().unwrap().batch, b);
    }

    /// Reopens a store dropped in this process: sled's flusher thread may hold the file lock
    /// a moment after the drop (a killed process releases it at once).
    fn reopen(dir: &Path, genesis: impl Fn() -> LedgerState) -> LedgerStore {
        for _ in 0..200 {
            match LedgerStore::open(dir, &genesis) {
                Ok(s) => return s,
                Err(StoreError::Sled(sled::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::Other && e.to_string().contains("lock") =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(25))
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
        panic!("the sled lock was not released");
    }

    #[test]
    fn reopen_after_drop_midway_continues_with_the_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LedgerStore::open(dir.path(), genesis).unwrap();
            for h in 1..=5 {
                apply(&mut s, h);
            }
        } // dropped without any shutdown step
        let mut s = reopen(dir.path(), || panic!("genesis must not be rewritten"));
        assert_eq!(s.last_height(), Some(5));
        assert_eq!(s.state().digest(), reference(5).digest());
        assert_eq!(apply(&mut s, 5), Applied::AlreadyApplied);
        for h in 6..=10 {
            apply(&mut s, h);
        }
        drop(s);
        let s = reopen(dir.path(), genesis);
        assert_eq!(s.state().digest(), reference(10).digest());
        assert_eq!(s.receipts_between(3, 6).unwrap().len(), 3);
    }

    #[test]
    fn settlement_is_stored_atomically_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let prices = PriceList { models: vec![ModelPrice::new("m", 1000, 1000, 1000)] };
        let p = params();
        let rec = {
            let mut s = LedgerStore::open(dir.path(), genesis).unwrap();
            for h in 1..=4 {
                apply(&mut s, h);
            }
            assert!(matches!(s.settle(6, &prices, FeeSplit::MinerOnly, &p), Err(StoreError::SettlementOrder(_))));
            let rec = s.settle(5, &prices, FeeSplit::MinerOnly, &p).unwrap();
            // receipts of blocks 1..=4 (heights 1..4 → prompt units 1..4, 7 completion units each)
            assert_eq!(rec.receipt_count, 4);
            assert_eq!(rec.total_debits(), (1 + 2 + 3 + 4) + 4 * 7);
            assert_eq!(rec.fee_credits["miner"], rec.total_debits());
            assert_eq!(s.apply_settlement(&rec).unwrap(), Applied::AlreadyApplied);
            assert!(matches!(s.settle(5, &prices, FeeSplit::MinerOnly, &p), Err(StoreError::SettlementOrder(_))));
            rec
        };
        let s = reopen(dir.path(), genesis);
        assert_eq!(s.last_settled(), Some(5));
        assert_eq!(s.settlement(5).unwrap(), Some(rec.clone()));
        let mut expect = reference(4);
        expect.apply_settlement(&rec).unwrap();
        assert_eq!(s.state().digest(), expect.digest());
        assert!(s.state().supply_is_conserved());
        // `ledger verify RECEIPT`: the stored lines prove inclusion against the record's root
        let lines = s.receipts_between(0, 5).unwrap();
        let (line, proof) = settlement::receipt_proof(&lines, "receipt-00000003").unwrap();
        assert!(rec.verify_receipt(&line, &proof));
    }

    /// Emission at settlement follows the consensus of the weights on the ledger: a miner backed
    /// by validators with more than half the stake earns, one backed by a 40% minority does not;
    /// everything issued is either credited or recorded as not minted; bonds persist.
    #[test]
    fn settlement_mints_emission_by_the_consensus_of_revealed_weights() {
        use crate::weights::RevealedWeights;
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let with_weights = || {
            let b = [("alice", tokens(1_000_000)), ("bob", tokens(10))]
                .into_iter()
                .map(|(a, v)| (a.to_string(), v))
                .collect();
            let vs = [("v1".to_string(), tokens(30)), ("v2".to_string(), tokens(20))].into_iter().collect();
            let mut st = LedgerState::genesis_with_validators(b, "labs", 1, &vs, &params()).unwrap();
            let rw = |w: &[(&str, u64)]| RevealedWeights {
                epoch: 0,
                weights: w.iter().map(|(m, x)| (m.to_string(), *x)).collect(),
            };
            let per = st.weights.revealed.entry(1).or_default();
            per.insert("v1".into(), rw(&[("miner", 1_000_000_000)]));
            per.insert("v2".into(), rw(&[("miner", 500_000_000), ("sybil", 500_000_000)]));
            st
        };
        let prices = PriceList { models: vec![ModelPrice::new("m", 1000, 1000, 1000)] };
        let rec = {
            let mut s = LedgerStore::open(dir.path(), with_weights).unwrap();
            for h in 1..=4 {
                apply(&mut s, h);
            }
            let rec = s.settle(5, &prices, FeeSplit::MinerOnly, &p).unwrap();
            assert_eq!(rec.issuance, crate::economics::issuance_between(0, 5, &p));
            assert!(rec.minted > 0);
            assert_eq!(rec.minted + rec.not_minted, rec.issuance);
            assert_eq!(rec.total_emission_credits(), rec.minted);
            assert!(rec.emission_credits.get("miner").copied().unwrap_or(0) > 0);
            assert!(!rec.emission_credits.contains_key("sybil"), "40% of stake cannot make a miner earn");
            assert!(
                rec.emission_credits.get("v1").copied().unwrap_or(0)
                    > rec.emission_credits.get("v2").copied().unwrap_or(0)
            );
            assert!(rec.emission_credits.get("labs").copied().unwrap_or(0) > 0, "the Brain owner's 25%");
            assert_eq!(rec.consensus.len(), 1);
            assert_eq!(rec.consensus[0].miners, vec!["miner", "sybil"]);
            assert_eq!(rec.consensus[0].incentive[1], 0);
            assert!(!rec.bonds[&1].is_empty());
            assert!(s.state().supply_is_conserved());
            rec
        };
        let mut s = reopen(dir.path(), || panic!("genesis must not be rewritten"));
        assert_eq!(s.state().weights.bonds[&1], rec.bonds[&1], "bonds survive a reopen");
        assert_eq!(s.state().minted, rec.minted);
        for h in 5..=9 {
            apply(&mut s, h);
        }
        let rec2 = s.settle(10, &prices, FeeSplit::MinerOnly, &p).unwrap();
        assert_eq!(rec2.total_emission_credits(), rec2.minted);
        assert_eq!(s.state().minted, rec.minted + rec2.minted);
        assert!(s.state().supply_is_conserved());
    }

    const CHILD_ENV: &str = "BRAINMESH_LEDGER_CRASH_CHILD_DIR";

    /// Not a test on its own: when started by `kill_9_while_writing_leaves_a_consistent_ledger`
    /// with the env var set, applies blocks forever, printing each height once it is durable.
    #[test]
    fn crash_child_writer() {
        let Ok(dir) = std::env::var(CHILD_ENV) else {
            return;
        };
        let mut s = LedgerStore::open(Path::new(&dir), genesis).unwrap();
        let mut h = s.last_height().unwrap_or(0);
        loop {
            h += 1;
            apply(&mut s, h);
            println!("applied {h}");
        }
    }

    #[test]
    fn kill_9_while_writing_leaves_a_consistent_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let module = module_path!().split_once("::").map(|(_, m)| m).unwrap_or(module_path!());
        let name = format!("{module}::crash_child_writer");
        let mut durable = 0;
        // (blocks to see durable, then microseconds more before SIGKILL): the kill lands at
        // varying points of a later block's write or flush.
        let rounds = [(3usize, 0u64), (11, 300), (7, 1_500), (20, 50), (5, 3_000), (9, 700)];
        for (round, (wait_for, extra_us)) in rounds.into_iter().enumerate() {
            let mut child = Command::new(&exe)
                .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = BufReader::new(child.stdout.take().unwrap());
            let mut seen = 0;
            for line in out.lines() {
                let line = line.unwrap();
                // libtest may print "test … ... " on the same line before the first one
                if let Some(h) = line.split("applied ").nth(1) {
                    durable = h.trim().parse().unwrap();
                    seen += 1;
                    if seen == wait_for {
                        break;
                    }
                }
            }
            assert_eq!(seen, wait_for, "round {round}: child stopped early");
            std::thread::sleep(std::time::Duration::from_micros(extra_us));
            child.kill().unwrap(); // SIGKILL while the child keeps writing blocks
            child.wait().unwrap();
            let s = LedgerStore::open(dir.path(), genesis).unwrap();
            let h = s.last_height().unwrap();
            eprintln!("round {round}: last durable line {durable}, reopened at {h}");
            assert!(h >= durable, "round {round}: lost a flushed block ({h} < {durable})");
            assert_eq!(s.state().digest(), reference(h).digest(), "round {round}: state at {h}");
            assert!(s.block(h).unwrap().is_some());
            assert!(s.block(h + 1).unwrap().is_none());
            assert_eq!(s.receipts_between(0, h + 1).unwrap().len() as u64, h);
            assert!(s.state().supply_is_conserved());
        }
    }
}
