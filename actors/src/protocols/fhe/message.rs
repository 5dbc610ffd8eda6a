//! The encrypted-mode protocol (`/brainmesh/fhe/1`, request-response, bincode frames), and the
//! miner's assembly of chunked key uploads.
//!
//! client → miner:
//! - `Describe` → `Head`: the head's public spec and id (what the client needs to encrypt for it);
//! - `KeyChunk` → `Key`: one piece of the client's compressed server key (≈ 116 MB for the stock
//!   2_3 set, far above one frame), in order; `have` tells the client where to resume;
//! - `Classify` → `Logits`: a [`brainmesh_models::fhe::WireRequest`] without the key (the miner
//!   looks it up by key id) → the encrypted logits, or `Error { kind: UnknownKey }` when the
//!   miner does not hold that key (never uploaded, or evicted from its cache).
//!
//! Everything a peer sends is checked here before any tfhe code sees it: frame size, chunk
//! order and bounds, total size, the number of uploads in flight, and that the assembled key
//! hashes to the id the client named.

use std::collections::HashMap;
use std::time::Duration;

use brainmesh_ledger::clock::ClockInstant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest key chunk a client sends.
pub const KEY_CHUNK_BYTES: usize = 2 << 20;
/// Largest frame on the protocol (a chunk plus its envelope; a classify request is ≈ 3 KB).
pub const MAX_FHE_REQUEST_BYTES: usize = KEY_CHUNK_BYTES + 64 * 1024;
/// Largest answer (encrypted logits: classes × (n + 1) × 4 bytes ≈ 66 KB for 4 classes).
pub const MAX_FHE_RESPONSE_BYTES: usize = 8 << 20;
/// Largest server key a miner assembles (a compressed 2_3 key is ≈ 116 MB; 3_3 ≈ 300 MB).
pub const MAX_KEY_BYTES: u64 = 384 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FheMsg {
    Describe,
    KeyChunk { key_id: [u8; 32], offset: u64, total: u64, bytes: Vec<u8> },
    Classify { request: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FheFail {
    /// The frame did not decode.
    Malformed,
    /// This peer serves no encrypted head.
    NotServed,
    /// The miner does not hold the key the request names: upload it, then retry.
    UnknownKey,
    /// The upload was refused (order, size, hash); `Key.have` of the error says where to resume.
    Upload,
    /// The request was refused by the head (version, parameter set, head id, dimensions, key).
    BadRequest,
    /// Too much queued: retry later or elsewhere.
    Busy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FheReply {
    Head { head_id: String, spec_json: String },
    Key { have: u64, installed: bool },
    Logits { response: Vec<u8>, miner_cpu_s: f64, miner_wall_s: f64 },
    Error { kind: FheFail, message: String, have: u64 },
}

impl FheReply {
    pub fn error(kind: FheFail, message: impl Into<String>) -> Self {
        FheReply::Error { kind, message: message.into(), have: 0 }
    }
}

fn options(limit: usize) -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().with_limit(limit as u64)
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("malformed encrypted-mode frame: {0}")]
pub struct FrameError(pub String);

impl FheMsg {
    pub fn to_bytes(&self) -> Vec<u8> {
        use bincode::Options;
        options(MAX_FHE_REQUEST_BYTES).serialize(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, FrameError> {
        use bincode::Options;
        options(MAX_FHE_REQUEST_BYTES).deserialize(b).map_err(|e| FrameError(e.to_string()))
    }
}

impl FheReply {
    pub fn to_bytes(&self) -> Vec<u8> {
        use bincode::Options;
        options(MAX_FHE_RESPONSE_BYTES).serialize(self).unwrap_or_default()
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, FrameError> {
        use bincode::Options;
        options(MAX_FHE_RESPONSE_BYTES).deserialize(b).map_err(|e| FrameError(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UploadError {
    #[error("key of {0} bytes is empty or over the {MAX_KEY_BYTES}-byte limit")]
    Size(u64),
    #[error("chunk at offset {offset}, expected {have}")]
    OutOfOrder { offset: u64, have: u64 },
    #[error("chunk runs past the announced {total} bytes")]
    Overrun { total: u64 },
    #[error("total changed from {was} to {now} mid-upload")]
    TotalChanged { was: u64, now: u64 },
    #[error("{0} uploads already in flight")]
    Busy(usize),
    #[error("chunk larger than {KEY_CHUNK_BYTES} bytes")]
    ChunkTooLarge,
    #[error("assembled key hashes to {got}, not to the key id {want}")]
    HashMismatch { want: String, got: String },
}

impl UploadError {
    /// Where the client should resume after this error.
    pub fn resume_at(&self) -> u64 {
        match self {
            UploadError::OutOfOrder { have, .. } => *have,
            _ => 0,
        }
    }
}

/// Result of one accepted chunk.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Partial {
        have: u64,
    },
    /// The whole key, its sha256 checked against the id.
    Complete(Vec<u8>),
}

struct Upload {
    total: u64,
    buf: Vec<u8>,
    touched: ClockInstant,
}

/// Uploads in flight, one per (peer, key id): a peer cannot write into another's upload.
pub struct KeyUploads {
    max_pending: usize,
    ttl: Duration,
    map: HashMap<(String, [u8; 32]), Upload>,
}

impl KeyUploads {
    pub fn new(max_pending: usize, ttl: Duration) -> Self {
        KeyUploads { max_pending, ttl, map: HashMap::new() }
    }

    pub fn in_flight(&self) -> usize {
        self.map.len()
    }

    pub fn chunk(
        &mut self,
        peer: &str,
        key_id: [u8; 32],
        offset: u64,
        total: u64,
        bytes: &[u8],
        now: ClockInstant,
    ) -> Result<Chunk, UploadError> {
        if total == 0 || total > MAX_KEY_BYTES {
            return Err(UploadError::Size(total));
        }
        if bytes.len() > KEY_CHUNK_BYTES {
            return Err(UploadError::ChunkTooLarge);
        }
        let ttl = self.ttl;
        self.map.retain(|_, u| now.saturating_duration_since(u.touched) < ttl);
        let slot = (peer.to_string(), key_id);
        if offset == 0 {
            // (Re)start: drops whatever this peer had for this key.
            self.map.remove(&slot);
            if self.map.len() >= self.max_pending {
                return Err(UploadError::Busy(self.map.len()));
            }
            // Grow as chunks arrive: the announced total is not trusted for an allocation.
            self.map.insert(slot.clone(), Upload { total, buf: Vec::new(), touched: now });
        }
        let Some(up) = self.map.get_mut(&slot) else {
            return Err(UploadError::OutOfOrder { offset, have: 0 });
        };
        if up.total != total {
            let was = up.total;
            self.map.remove(&slot);
            return Err(UploadError::TotalChanged { was, now: total });
        }
        let have = up.buf.len() as u64;
        if offset != have {
            return Err(UploadError::OutOfOrder { offset, have });
        }
        if have + bytes.len() as u64 > total {
            self.map.remove(&slot);
            return Err(UploadError::Overrun { total });
        }
        up.buf.extend_from_slice(bytes);
        up.touched = now;
        if (up.buf.len() as u64) < total {
            return Ok(Chunk::Partial { have: up.buf.len() as u64 });
        }
        let done = self.map.remove(&slot).map(|u| u.buf).unwrap_or_default();
        let got: [u8; 32] = Sha256::digest(&done).into();
        if got != key_id {
            return Err(UploadError::HashMismatch { want: hex::encode(key_id), got: hex::encode(got) });
        }
        Ok(Chunk::Complete(done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    #[test]
    fn chunks_in_order_assemble_the_key_and_check_its_hash() {
        let key: Vec<u8> = (0..5000u32).map(|i| (i * 31) as u8).collect();
        let mut u = KeyUploads::new(2, Duration::from_secs(60));
        let t = ClockInstant::from_micros(1_000_000);
        let mut off = 0;
        let mut last = None;
        for c in key.chunks(1500) {
            last = Some(u.chunk("p", id(&key), off, key.len() as u64, c, t).unwrap());
            off += c.len() as u64;
        }
        assert_eq!(last, Some(Chunk::Complete(key.clone())));
        assert_eq!(u.in_flight(), 0);
    }

    #[test]
    fn a_key_that_does_not_hash_to_its_id_is_refused() {
        let key = vec![7u8; 100];
        let mut u = KeyUploads::new(2, Duration::from_secs(60));
        let err = u.chunk("p", id(b"other"), 0, 100, &key, ClockInstant::from_micros(1_000_000)).unwrap_err();
        assert!(matches!(err, UploadError::HashMismatch { .. }), "{err}");
    }

    #[test]
    fn out_of_order_overrun_and_oversized_chunks_are_refused_with_where_to_resume() {
        let key = vec![1u8; 300];
        let k = id(&key);
        let mut u = KeyUploads::new(2, Duration::from_secs(60));
        let t = ClockInstant::from_micros(1_000_000);
        u.chunk("p", k, 0, 300, &key[..100], t).unwrap();
        let e = u.chunk("p", k, 200, 300, &key[200..], t).unwrap_err();
        assert_eq!(e, UploadError::OutOfOrder { offset: 200, have: 100 });
        assert_eq!(e.resume_at(), 100);
        // resuming where told works
        assert_eq!(u.chunk("p", k, 100, 300, &key[100..200], t).unwrap(), Chunk::Partial { have: 200 });
        assert_eq!(u.chunk("p", k, 200, 300, &[0u8; 150], t).unwrap_err(), UploadError::Overrun { total: 300 });
        assert!(matches!(u.chunk("p", k, 0, MAX_KEY_BYTES + 1, &[1], t), Err(UploadError::Size(_))));
        assert!(matches!(u.chunk("p", k, 0, 0, &[], t), Err(UploadError::Size(0))));
        assert_eq!(u.chunk("p", k, 0, 300, &vec![0u8; KEY_CHUNK_BYTES + 1], t), Err(UploadError::ChunkTooLarge));
        // a chunk for an upload never started
        assert_eq!(u.chunk("q", k, 100, 300, &key[..10], t), Err(UploadError::OutOfOrder { offset: 100, have: 0 }));
    }

    #[test]
    fn peers_cannot_write_into_each_others_uploads_and_in_flight_uploads_are_bounded() {
        let key = vec![3u8; 200];
        let k = id(&key);
        let mut u = KeyUploads::new(2, Duration::from_secs(60));
        let t = ClockInstant::from_micros(1_000_000);
        u.chunk("alice", k, 0, 200, &key[..100], t).unwrap();
        // mallory's chunks go to mallory's own slot
        u.chunk("mallory", k, 0, 200, &[9u8; 100], t).unwrap();
        assert_eq!(u.chunk("eve", k, 0, 200, &key[..100], t), Err(UploadError::Busy(2)));
        assert_eq!(u.chunk("alice", k, 100, 200, &key[100..], t).unwrap(), Chunk::Complete(key.clone()));
        // stale uploads expire and free their slot
        let later = t + Duration::from_secs(61);
        assert!(u.chunk("eve", k, 0, 200, &key[..100], later).is_ok());
        assert_eq!(u.in_flight(), 1);
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error_not_a_panic() {
        let m = FheMsg::KeyChunk { key_id: [5; 32], offset: 9, total: 10, bytes: vec![1, 2, 3] };
        assert_eq!(FheMsg::from_bytes(&m.to_bytes()).unwrap(), m);
        let r = FheReply::Logits { response: vec![4; 10], miner_cpu_s: 1.5, miner_wall_s: 2.0 };
        assert_eq!(FheReply::from_bytes(&r.to_bytes()).unwrap(), r);
        assert!(FheMsg::from_bytes(b"\xff\xff\xff\xff junk").is_err());
        // a length field claiming more than the frame limit is refused before allocating
        let mut huge = vec![2u8, 0, 0, 0]; // Classify, then a u64 length of 2^64 - 1
        huge.extend_from_slice(&[0xff; 8]);
        assert!(FheMsg::from_bytes(&huge).is_err());
    }
}
