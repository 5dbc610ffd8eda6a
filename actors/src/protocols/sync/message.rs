//! `/brainmesh/sync/1` messages: roster sync ([`SyncRequest`]) and ledger catch-up
//! ([`LedgerRequest`]), matched by the router as one typed [`SyncWire`].

use brainmesh_ledger::BrainId;
use serde::{Deserialize, Serialize};

use brainmesh_ledger::economics::Height;
use brainmesh_ledger::store::BlockRecord;
use brainmesh_ledger::tx::Tx;

use crate::protocols::gossip::Envelope;
use crate::receipt::SignedReceipt;

/// Largest roster-sync response (bytes): up to a full Brain of registrations.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Request-response messages between peers (`/brainmesh/sync/1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SyncRequest {
    /// Send me the registrations you hold for this Brain, except those in `have` (each a
    /// [`record_tag`]; empty, or left out by older peers: send them all).
    Roster {
        brain: BrainId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        have: Vec<String>,
    },
}

/// Names one signed record for a roster sync's `have` list: 64 bits of sha256 over its signer
/// and signature (a record the requester holds byte for byte is not sent again). 19 bytes of
/// JSON each, so [`MAX_HAVE`] of them fit a request.
pub fn record_tag(env: &Envelope) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::new()
        .chain_update(env.signer.as_bytes())
        .chain_update(b"|")
        .chain_update(env.sig.as_bytes())
        .finalize();
    hex::encode(&h[..8])
}

/// Most entries of a `have` list (the rest of a larger roster is simply sent again).
pub const MAX_HAVE: usize = 3_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SyncResponse {
    Roster { brain: BrainId, records: Vec<Envelope> },
    Error { message: String },
}

/// Ledger catch-up requests (served by the rollup actor on validators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LedgerRequest {
    /// Receipts and transactions by id (ids this peer does not hold are left out).
    LedgerItems { ids: Vec<String> },
    /// Final blocks above `after`, with the bodies of their receipts and transactions.
    LedgerBlocks { after: Option<Height>, max: u32 },
    /// Anti-entropy, gateway → validator: which of these receipt ids are in a final block, and
    /// which does the validator hold pending? (At most [`MAX_STATUS_IDS`].)
    ReceiptStatus { ids: Vec<String> },
    /// Anti-entropy: receipts the asker holds and the validator did not know (each verified like
    /// one from gossip; the request's size limit bounds how many travel at once).
    OfferReceipts { receipts: Vec<SignedReceipt> },
    /// Anti-entropy, validator → validator: the asker's pending receipt ids as bucket digests
    /// ([`brainmesh_ledger::reconcile`]); the answer lists the peer's ids in differing buckets.
    PendingDigest { digests: Vec<u64> },
    /// The miners whose `Register` transaction is final in `brain` (paid admission).
    Registrations { brain: BrainId },
    /// May `gateway` spend for `account` (a gateway checks before serving a request)?
    Allowance { account: String, gateway: String },
}

/// Ids a [`LedgerRequest::ReceiptStatus`] may ask about (about 36 KB of JSON).
pub const MAX_STATUS_IDS: usize = 1024;

/// Externally tagged, like [`RollupMsg`] (blocks carry u128 stakes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerResponse {
    LedgerItems {
        receipts: Vec<SignedReceipt>,
        txs: Vec<Tx>,
    },
    LedgerBlocks {
        blocks: Vec<BlockBundle>,
    },
    /// Receipts in a final block (with its height) and receipts held pending; an asked id in
    /// neither list is unknown to this validator.
    ReceiptStatus {
        included: Vec<(String, Height)>,
        pending: Vec<String>,
    },
    /// How many offered receipts verified and are now held (pending or already final), and how
    /// many were refused (bad signature, another Brain).
    Offered {
        accepted: u32,
        refused: u32,
    },
    /// The answer to [`LedgerRequest::PendingDigest`].
    PendingIds {
        ids: Vec<String>,
    },
    /// The answer to [`LedgerRequest::Allowance`]: `strict` when the account pays only through
    /// gateways it authorised; then `remaining` is what the gateway may still spend (base units,
    /// decimal; absent: not authorised or expired).
    Allowance {
        strict: bool,
        remaining: Option<String>,
        expires_at: Option<Height>,
    },
    /// Miners registered (fee paid) on the ledger, with the height each registered at.
    Registrations {
        brain: BrainId,
        last_final_height: Option<Height>,
        miners: Vec<(String, u64)>,
        /// The Brain's declared model (name, hash), if its owner set one.
        #[serde(default)]
        model: Option<(String, String)>,
    },
    LedgerError {
        message: String,
    },
}

/// A final block and the bodies needed to apply it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockBundle {
    pub record: BlockRecord,
    pub receipts: Vec<SignedReceipt>,
    pub txs: Vec<Tx>,
}

/// Any request on `/brainmesh/sync/1`, decoded once by the router. Both kinds are internally
/// tagged by `type` (`roster`, `ledger_items`, `ledger_blocks`), so the wire format is the one
/// each enum has on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SyncWire {
    /// Ledger catch-up, for the rollup actor.
    Ledger(LedgerRequest),
    /// Roster sync, for the membership actor.
    Roster(SyncRequest),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_have_list_fits_a_request_and_tags_tell_records_apart() {
        let tags: Vec<String> = (0..MAX_HAVE)
            .map(|i| {
                record_tag(&Envelope {
                    v: 1,
                    signer: format!("peer-{i}"),
                    public_key: String::new(),
                    body: String::new(),
                    sig: "s".into(),
                })
            })
            .collect();
        let req = serde_json::to_vec(&SyncRequest::Roster { brain: 1, have: tags.clone() }).unwrap();
        assert!(req.len() <= crate::protocols::MAX_MESSAGE_BYTES, "{} bytes", req.len());
        let distinct: std::collections::HashSet<&String> = tags.iter().collect();
        assert_eq!(distinct.len(), MAX_HAVE);
        let a = Envelope { v: 1, signer: "p".into(), public_key: String::new(), body: String::new(), sig: "x".into() };
        let b = Envelope { sig: "y".into(), ..a.clone() };
        assert_ne!(record_tag(&a), record_tag(&b), "another signature is another record");
    }

    #[test]
    fn the_router_tells_ledger_and_roster_requests_apart_by_their_tag() {
        let led = serde_json::to_vec(&LedgerRequest::LedgerBlocks { after: Some(3), max: 8 }).unwrap();
        assert!(matches!(
            serde_json::from_slice(&led),
            Ok(SyncWire::Ledger(LedgerRequest::LedgerBlocks { max: 8, .. }))
        ));
        let ros = serde_json::to_vec(&SyncRequest::Roster { brain: 2, have: vec![] }).unwrap();
        assert_eq!(std::str::from_utf8(&ros).unwrap(), r#"{"type":"roster","brain":2}"#, "older peers' form");
        assert_eq!(
            serde_json::from_slice::<SyncWire>(&ros).ok(),
            Some(SyncWire::Roster(SyncRequest::Roster { brain: 2, have: vec![] }))
        );
        assert!(serde_json::from_slice::<SyncWire>(br#"{"type":"ledger_nonsense"}"#).is_err());
        assert!(serde_json::from_slice::<SyncWire>(b"\xff").is_err());
    }
}
