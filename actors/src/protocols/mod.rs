//! The wire protocols, one folder each (Forest's layout): its message types (`message.rs`),
//! its limits and protocol id (the codec's part: `src/network/codec.rs` frames every protocol the
//! same way with these limits) and, where the answer needs no actor, its handler.
//!
//! | folder | libp2p | what travels |
//! |---|---|---|
//! | [`gossip`] | gossipsub topics per Brain | signed envelopes: registrations, heartbeats (membership); receipts, audit, rollup messages ride their own topics |
//! | [`sync`] | `/brainmesh/sync/1` request-response | roster sync, ledger catch-up (items by id, final blocks) |
//! | [`task`] | `/brainmesh/task/1` request-response | sealed assignments (gateway → miner), sealed chunks (miner → gateway), acks |
//! | [`fhe`] | `/brainmesh/fhe/1` request-response | encrypted-mode key chunks and ciphertexts |
//! | [`audit`] | `/brainmesh/audit/1` request-response | transcripts (validator ← miner), evidence (validator ← validator) |
//!
//! Every message is versioned, size-limited and checked on arrival; a bad one is refused with a
//! [`Reject`] reason (counted by label) and never crashes a peer.

pub mod audit;
pub mod fhe;
pub mod gossip;
pub mod sync;
pub mod task;

use serde::{Deserialize, Serialize};

/// Version of the envelope format; anything else is rejected.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest envelope (bytes) a peer accepts on gossip or in a request.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Why a message was refused; each reason is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    #[error("message larger than the limit")]
    Oversized,
    #[error("message is not a well-formed envelope")]
    Malformed,
    #[error("unsupported protocol version")]
    BadVersion,
    #[error("message is not signed")]
    Unsigned,
    #[error("signature does not verify")]
    BadSignature,
    #[error("message claims another peer's identity")]
    IdentityMismatch,
    #[error("message is for another Brain or topic")]
    WrongTopic,
    #[error("timestamp too far in the future")]
    FutureTimestamp,
    #[error("replayed or stale message")]
    Replay,
    #[error("registration fee below the Brain's fee")]
    FeeTooLow,
    #[error("registration carries no role or a bad seal key")]
    InvalidRecord,
}

impl Reject {
    pub const ALL: [Reject; 11] = [
        Reject::Oversized,
        Reject::Malformed,
        Reject::BadVersion,
        Reject::Unsigned,
        Reject::BadSignature,
        Reject::IdentityMismatch,
        Reject::WrongTopic,
        Reject::FutureTimestamp,
        Reject::Replay,
        Reject::FeeTooLow,
        Reject::InvalidRecord,
    ];

    pub fn label(&self) -> &'static str {
        match self {
            Reject::Oversized => "oversized",
            Reject::Malformed => "malformed",
            Reject::BadVersion => "bad_version",
            Reject::Unsigned => "unsigned",
            Reject::BadSignature => "bad_signature",
            Reject::IdentityMismatch => "identity_mismatch",
            Reject::WrongTopic => "wrong_topic",
            Reject::FutureTimestamp => "future_timestamp",
            Reject::Replay => "replay",
            Reject::FeeTooLow => "fee_too_low",
            Reject::InvalidRecord => "invalid_record",
        }
    }
}

/// The request-response protocols, as the network service names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Proto {
    /// [`sync`]
    Sync,
    /// [`task`]
    Task,
    /// [`fhe`]
    Fhe,
    /// [`audit`]
    Audit,
}

impl Proto {
    /// Every request-response protocol.
    pub const ALL: [Proto; 4] = [Proto::Sync, Proto::Task, Proto::Fhe, Proto::Audit];

    /// The libp2p protocol id.
    pub fn id(self) -> &'static str {
        match self {
            Proto::Sync => sync::PROTOCOL,
            Proto::Task => task::PROTOCOL,
            Proto::Fhe => fhe::PROTOCOL,
            Proto::Audit => audit::PROTOCOL,
        }
    }

    /// Largest (request, response) in bytes; the codec refuses anything larger before reading it.
    pub fn limits(self) -> (usize, usize) {
        match self {
            Proto::Sync => (MAX_MESSAGE_BYTES, sync::MAX_SYNC_RESPONSE_BYTES),
            Proto::Task => (task::MAX_TASK_BYTES, MAX_MESSAGE_BYTES),
            Proto::Fhe => (fhe::MAX_FHE_REQUEST_BYTES, fhe::MAX_FHE_RESPONSE_BYTES),
            Proto::Audit => (MAX_MESSAGE_BYTES, audit::MAX_AUDIT_BYTES),
        }
    }
}
