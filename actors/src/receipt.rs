//! Receipts: what a completed task cost, signed by the miner that did it and countersigned by
//! the gateway that paid for it. Stored in sled keyed by task id (one receipt per task, never
//! two) and published on the Brain's receipts topic.

use actix::prelude::*;
use brainmesh_ledger::BrainId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::Identity;
use crate::messages::GossipIn;
use crate::metrics::Metrics;
use crate::protocols::gossip::TopicKind;
use crate::protocols::{Reject, MAX_MESSAGE_BYTES};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub task_id: String,
    pub brain: BrainId,
    pub model: String,
    pub model_hash: String,
    pub miner: String,
    pub gateway: String,
    pub account: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// One unit per prompt or completion token; priced per 1k by the ledger.
    pub compute_units: u64,
    pub block_height: u64,
    /// Hex sha256 binding the TOPLOC proofs to the task's nonce and the model hash
    /// (`brainmesh_models::proof::proof_digest`).
    pub proof_digest: String,
    /// Hex sha256 of the nonce, prompt, resumed tokens and output (`transcript::io_digest`);
    /// the gateway recomputes it before countersigning.
    #[serde(default)]
    pub io_digest: String,
    pub started_ms: u64,
    pub finished_ms: u64,
}

/// `miner_sig` is over `body`; `gateway_sig` over `body || miner_sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub body: String,
    pub miner_sig: String,
    pub gateway_sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt is not well formed")]
    Malformed,
    #[error("miner signature does not verify")]
    BadMinerSignature,
    #[error("gateway signature does not verify")]
    BadGatewaySignature,
}

/// An ed25519 signature (hex) by the peer id's key over `msg` (the one verify, in `canon`).
pub use brainmesh_ledger::canon::verify_by_peer as verify_sig;
/// The ed25519 public key inlined in an ed25519 peer id (the one implementation, in the ledger
/// crate's typed ids).
pub use brainmesh_ledger::ids::ed25519_key_of as public_key_of;

/// A new receipt this peer stored (sent by the receipt book).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct NewReceipt {
    pub signed: SignedReceipt,
    pub receipt: Receipt,
}

impl Receipt {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Miner side: sign the body.
    pub fn sign_as_miner(&self, miner: &Identity) -> (String, String) {
        let body = self.body();
        let sig = hex::encode(miner.sign(body.as_bytes()));
        (body, sig)
    }
}

impl SignedReceipt {
    /// Gateway side: check the miner's signature, then countersign.
    pub fn countersign(body: String, miner_sig: String, gateway: &Identity) -> Result<(Self, Receipt), ReceiptError> {
        let r: Receipt = serde_json::from_str(&body).map_err(|_| ReceiptError::Malformed)?;
        if !verify_sig(&r.miner, body.as_bytes(), &miner_sig) {
            return Err(ReceiptError::BadMinerSignature);
        }
        let mut msg = body.clone().into_bytes();
        msg.extend_from_slice(miner_sig.as_bytes());
        let gateway_sig = hex::encode(gateway.sign(&msg));
        Ok((Self { body, miner_sig, gateway_sig }, r))
    }

    /// Anyone: both signatures against the peer ids named in the receipt.
    pub fn verify(&self) -> Result<Receipt, ReceiptError> {
        let r: Receipt = serde_json::from_str(&self.body).map_err(|_| ReceiptError::Malformed)?;
        if !verify_sig(&r.miner, self.body.as_bytes(), &self.miner_sig) {
            return Err(ReceiptError::BadMinerSignature);
        }
        let mut msg = self.body.clone().into_bytes();
        msg.extend_from_slice(self.miner_sig.as_bytes());
        if !verify_sig(&r.gateway, &msg, &self.gateway_sig) {
            return Err(ReceiptError::BadGatewaySignature);
        }
        Ok(r)
    }

    /// Content id: hex sha256 of body and both signatures (first 16 bytes).
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.body.as_bytes());
        h.update(self.miner_sig.as_bytes());
        h.update(self.gateway_sig.as_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

/// sled tree of receipts keyed by task id, and (on gateways) the outbox: every receipt this
/// node countersigned that no validator has yet reported in a final block, keyed by the height
/// it was countersigned at and its id (oldest first).
#[derive(Clone)]
pub struct ReceiptStore {
    tree: sled::Tree,
    outbox: sled::Tree,
}

fn outbox_key(height: u64, id: &str) -> Vec<u8> {
    let mut k = height.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// One receipt waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub key: Vec<u8>,
    pub height: u64,
    pub id: String,
    pub receipt: SignedReceipt,
}

impl ReceiptStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self { tree: db.open_tree("receipts")?, outbox: db.open_tree("receipts_outbox")? })
    }

    /// Stores the receipt unless one for the same task exists. Returns true if it was new.
    pub fn insert(&self, task_id: &str, r: &SignedReceipt) -> Result<bool, sled::Error> {
        let bytes = serde_json::to_vec(r).unwrap_or_default();
        let res = self.tree.compare_and_swap(task_id.as_bytes(), None as Option<&[u8]>, Some(bytes))?;
        self.tree.flush()?;
        Ok(res.is_ok())
    }

    /// Gateway side: stores a receipt this node countersigned at chain height `height` and puts
    /// it in the outbox, in one atomic write (a crash leaves both or neither). Returns true if it
    /// was new; a second receipt for the same task is refused and changes nothing.
    pub fn insert_countersigned(&self, task_id: &str, r: &SignedReceipt, height: u64) -> Result<bool, sled::Error> {
        use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
        let bytes = serde_json::to_vec(r).unwrap_or_default();
        let key = outbox_key(height, &r.id());
        let res = (&self.tree, &self.outbox).transaction(|(t, o)| {
            if t.get(task_id.as_bytes())?.is_some() {
                return Ok(false);
            }
            t.insert(task_id.as_bytes(), bytes.clone())?;
            o.insert(key.clone(), bytes.clone())?;
            Ok::<bool, ConflictableTransactionError<()>>(true)
        });
        let new = match res {
            Ok(n) => n,
            Err(TransactionError::Storage(e)) => return Err(e),
            Err(TransactionError::Abort(())) => false,
        };
        self.tree.flush()?;
        Ok(new)
    }

    /// The oldest outbox entries countersigned at or before `up_to` (at most `max`).
    pub fn outbox_due(&self, up_to: u64, max: usize) -> Vec<OutboxEntry> {
        self.outbox
            .range(..outbox_key(up_to.saturating_add(1), ""))
            .filter_map(|kv| kv.ok())
            .filter_map(|(k, v)| {
                let height = u64::from_be_bytes(<[u8; 8]>::try_from(k.get(..8)?).ok()?);
                let id = String::from_utf8(k.get(8..)?.to_vec()).ok()?;
                let receipt = serde_json::from_slice(&v).ok()?;
                Some(OutboxEntry { key: k.to_vec(), height, id, receipt })
            })
            .take(max)
            .collect()
    }

    /// Drops entries a validator reported final.
    pub fn outbox_remove<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<(), sled::Error> {
        let mut b = sled::Batch::default();
        for k in keys {
            b.remove(k);
        }
        self.outbox.apply_batch(b)?;
        self.outbox.flush()?;
        Ok(())
    }

    /// Receipts countersigned here and not yet seen in a final block.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    pub fn all(&self) -> Vec<SignedReceipt> {
        self.tree.iter().values().filter_map(|v| v.ok()).filter_map(|v| serde_json::from_slice(&v).ok()).collect()
    }
}

/// Keeps every valid receipt seen on the Brain's receipts topic.
pub struct ReceiptBook {
    brain: BrainId,
    store: ReceiptStore,
    metrics: Metrics,
    /// Told of every receipt stored for the first time (the validator's auditor).
    watcher: Option<Recipient<NewReceipt>>,
}

impl ReceiptBook {
    pub fn new(brain: BrainId, store: ReceiptStore, metrics: Metrics, watcher: Option<Recipient<NewReceipt>>) -> Self {
        Self { brain, store, metrics, watcher }
    }
}

impl Actor for ReceiptBook {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<GossipIn> for ReceiptBook {
    type Result = Result<(), Reject>;

    fn handle(&mut self, msg: GossipIn, _ctx: &mut Self::Context) -> Self::Result {
        let res = (|| {
            if msg.data.len() > MAX_MESSAGE_BYTES {
                return Err(Reject::Oversized);
            }
            if TopicKind::parse(&msg.topic) != Some((TopicKind::Receipts, self.brain)) {
                return Err(Reject::WrongTopic);
            }
            let sr: SignedReceipt = serde_json::from_slice(&msg.data).map_err(|_| Reject::Malformed)?;
            let r = sr.verify().map_err(|e| match e {
                ReceiptError::Malformed => Reject::Malformed,
                _ => Reject::BadSignature,
            })?;
            // Only the gateway that countersigned may publish it.
            if msg.source.as_deref() != Some(r.gateway.as_str()) {
                return Err(Reject::IdentityMismatch);
            }
            if r.brain != self.brain {
                return Err(Reject::WrongTopic);
            }
            if let (Ok(true), Some(w)) = (self.store.insert(&r.task_id, &sr), &self.watcher) {
                w.do_send(NewReceipt { signed: sr, receipt: r });
            }
            self.metrics.accept("receipt");
            Ok(())
        })();
        if let Err(r) = res {
            self.metrics.reject(r);
        }
        res
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A receipt for task `t1` between these two peers (unit-test fixture).
    pub(crate) fn receipt(miner: &Identity, gateway: &Identity) -> Receipt {
        Receipt {
            task_id: "t1".into(),
            brain: 1,
            model: "m".into(),
            model_hash: "h".into(),
            miner: miner.peer_id().to_string(),
            gateway: gateway.peer_id().to_string(),
            account: "dev".into(),
            prompt_tokens: 10,
            completion_tokens: 5,
            compute_units: 15,
            block_height: 3,
            proof_digest: String::new(),
            io_digest: String::new(),
            started_ms: 1,
            finished_ms: 2,
        }
    }

    #[test]
    fn countersigned_receipt_verifies_and_tampering_is_caught() {
        let (m, g) = (Identity::generate(), Identity::generate());
        assert_eq!(public_key_of(&m.peer_id().to_string()), Some(m.public_key_bytes()));
        let (body, msig) = receipt(&m, &g).sign_as_miner(&m);
        let (sr, r) = SignedReceipt::countersign(body, msig, &g).unwrap();
        assert_eq!(r.completion_tokens, 5);
        assert_eq!(sr.verify().unwrap(), r);
        let mut bad = sr.clone();
        bad.body = bad.body.replace("\"completion_tokens\":5", "\"completion_tokens\":500");
        assert_eq!(bad.verify(), Err(ReceiptError::BadMinerSignature));
        // A gateway cannot countersign a receipt the miner did not sign.
        let forged = receipt(&m, &g).body();
        assert!(SignedReceipt::countersign(forged, hex::encode([0u8; 64]), &g).is_err());
    }

    #[test]
    fn store_keeps_one_receipt_per_task() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let s = ReceiptStore::open(&db).unwrap();
        let (m, g) = (Identity::generate(), Identity::generate());
        let (body, msig) = receipt(&m, &g).sign_as_miner(&m);
        let (sr, _) = SignedReceipt::countersign(body, msig, &g).unwrap();
        assert!(s.insert("t1", &sr).unwrap());
        assert!(!s.insert("t1", &sr).unwrap());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_countersigned_receipt_waits_in_the_outbox_oldest_first_until_removed() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let s = ReceiptStore::open(&db).unwrap();
        let (m, g) = (Identity::generate(), Identity::generate());
        let mut signed = Vec::new();
        for (i, h) in [(0, 9u64), (1, 3), (2, 5)] {
            let mut r = receipt(&m, &g);
            r.task_id = format!("t{i}");
            let (body, msig) = r.sign_as_miner(&m);
            let (sr, _) = SignedReceipt::countersign(body, msig, &g).unwrap();
            assert!(s.insert_countersigned(&r.task_id, &sr, h).unwrap());
            signed.push(sr);
        }
        // One receipt per task: a second one for t0 is refused and not queued.
        let mut again = receipt(&m, &g);
        again.task_id = "t0".into();
        again.completion_tokens = 99;
        let (body, msig) = again.sign_as_miner(&m);
        let (sr2, _) = SignedReceipt::countersign(body, msig, &g).unwrap();
        assert!(!s.insert_countersigned("t0", &sr2, 1).unwrap());
        assert_eq!((s.len(), s.outbox_len()), (3, 3));
        let due = s.outbox_due(5, 10);
        assert_eq!(due.iter().map(|e| e.height).collect::<Vec<_>>(), vec![3, 5], "oldest first, none after 5");
        assert_eq!(due[0].receipt, signed[1]);
        assert_eq!(due[0].id, signed[1].id());
        s.outbox_remove(due.iter().map(|e| e.key.as_slice())).unwrap();
        assert_eq!(s.outbox_len(), 1);
        assert_eq!(s.outbox_due(100, 10)[0].receipt, signed[0]);
    }
}
