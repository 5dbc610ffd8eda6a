//! Serving `/brainmesh/audit/1`: no actor is needed, the answer is a read of the miner's
//! transcript store or the validator's evidence store.

use super::message::{AuditReply, AuditRequest};
use crate::recheck::EvidenceStore;
use crate::transcript::TranscriptStore;

/// Answers an audit request from the miner's transcripts or the validator's evidence.
pub fn serve(store: Option<&TranscriptStore>, evidence: Option<&EvidenceStore>, data: &[u8]) -> AuditReply {
    if data.len() > crate::protocols::MAX_MESSAGE_BYTES {
        return AuditReply::Error { message: "request too large".into() };
    }
    match serde_json::from_slice::<AuditRequest>(data) {
        Ok(AuditRequest::Transcript { task_id }) => match store.and_then(|s| s.get(&task_id)) {
            Some(t) => AuditReply::Transcript { transcript: t },
            None => AuditReply::NotFound,
        },
        Ok(AuditRequest::Evidence { digest }) => match evidence.and_then(|s| s.get(&digest)) {
            Some(e) => AuditReply::Evidence { evidence: Box::new(e) },
            None => AuditReply::NotFound,
        },
        Err(_) => AuditReply::Error { message: "malformed audit request".into() },
    }
}
