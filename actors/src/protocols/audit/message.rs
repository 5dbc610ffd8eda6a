//! `/brainmesh/audit/1` messages.

use serde::{Deserialize, Serialize};

use crate::recheck::Evidence;
use crate::transcript::SignedTranscript;

/// Largest audit request or reply (a transcript of a full 8k context is ~100 KB of JSON).
pub const MAX_AUDIT_BYTES: usize = 4 << 20;

/// `/brainmesh/audit/1` requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditRequest {
    Transcript {
        task_id: String,
    },
    /// Evidence a validator holds, by digest (to verify a ban notice on one's own).
    Evidence {
        digest: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditReply {
    Transcript { transcript: SignedTranscript },
    Evidence { evidence: Box<Evidence> },
    NotFound,
    Error { message: String },
}

impl AuditReply {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
