//! The client side of encrypted mode over the mesh: find a miner of a Brain that serves an
//! encrypted head, fetch the head's public spec, upload the client's compressed server key in
//! chunks (once: miners cache it by key id), send the encrypted query, decrypt the logits.
//! `brainmesh private classify` is this plus a peer to send from. No actix here.

use std::time::Instant;

use brainmesh_models::fhe::{Classification, FheError, HeadSpec, PrivateClassifier, WireResponse};

use crate::messages::RosterSnapshot;
use crate::protocols::fhe::{FheFail, FheMsg, FheReply, FrameError, KEY_CHUNK_BYTES};
use crate::roster::Liveness;
use crate::{NetworkError, NetworkSender};
use brainmesh_ledger::BrainId;

/// The `models` entry a miner registers for the encrypted head it serves.
pub fn head_model_entry(head_id: &str) -> String {
    format!("fhe:{head_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error("no online miner of Brain {0} serves an encrypted head")]
    NoHead(u16),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the miner refused ({kind:?}): {message}")]
    Refused { kind: FheFail, message: String },
    #[error("unexpected answer from the miner: {0}")]
    Unexpected(String),
    #[error("the miner's head {got} is not the one it advertises ({want})")]
    HeadMismatch { want: String, got: String },
    #[error(transparent)]
    Fhe(#[from] FheError),
}

/// A miner offering an encrypted head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOffer {
    pub peer: String,
    pub head_id: String,
}

/// Online, admitted miners of `brain` that advertise an encrypted head, fewest queued first.
pub fn heads_in(snap: &RosterSnapshot, brain: BrainId) -> Vec<HeadOffer> {
    let mut out: Vec<(u32, HeadOffer)> = Vec::new();
    for b in snap.brains.iter().filter(|b| b.brain == brain) {
        for m in b.members.iter().filter(|m| m.admitted && m.status == Liveness::Online) {
            for id in m.models.iter().filter_map(|s| s.strip_prefix("fhe:")) {
                out.push((m.queue_depth, HeadOffer { peer: m.peer_id.clone(), head_id: id.to_string() }));
            }
        }
    }
    out.sort_by_key(|(q, _)| *q);
    out.into_iter().map(|(_, o)| o).collect()
}

async fn call(net: &NetworkSender, peer: &str, msg: &FheMsg) -> Result<(FheReply, usize), PrivateError> {
    let bytes = net.fhe_request(peer.to_string(), msg.to_bytes()).await?;
    let n = bytes.len();
    Ok((FheReply::from_bytes(&bytes)?, n))
}

/// The head's public spec, checked to be the head the miner advertises.
pub async fn describe(net: &NetworkSender, offer: &HeadOffer) -> Result<HeadSpec, PrivateError> {
    match call(net, &offer.peer, &FheMsg::Describe).await?.0 {
        FheReply::Head { head_id, spec_json } => {
            if head_id != offer.head_id {
                return Err(PrivateError::HeadMismatch { want: offer.head_id.clone(), got: head_id });
            }
            serde_json::from_str(&spec_json).map_err(|e| PrivateError::Unexpected(format!("head spec: {e}")))
        }
        FheReply::Error { kind, message, .. } => Err(PrivateError::Refused { kind, message }),
        other => Err(PrivateError::Unexpected(format!("{other:?}"))),
    }
}

/// Uploads the compressed server key in [`KEY_CHUNK_BYTES`] pieces, resuming where the miner
/// says when a chunk is refused as out of order. `progress(sent, total)`.
pub async fn upload_key(
    net: &NetworkSender,
    peer: &str,
    key_id: [u8; 32],
    key: &[u8],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, PrivateError> {
    let total = key.len() as u64;
    let mut offset = 0u64;
    let mut sent = 0u64;
    let mut resumes = 0;
    loop {
        let end = (offset as usize + KEY_CHUNK_BYTES).min(key.len());
        let bytes = key[offset as usize..end].to_vec();
        sent += bytes.len() as u64;
        let msg = FheMsg::KeyChunk { key_id, offset, total, bytes };
        match call(net, peer, &msg).await?.0 {
            FheReply::Key { installed: true, .. } => {
                progress(total, total);
                return Ok(sent);
            }
            FheReply::Key { have, installed: false } if have > offset && have <= total => {
                offset = have;
                progress(offset, total);
            }
            FheReply::Error { kind: FheFail::Upload, have, message }
                if resumes < 3 && have <= total && message.contains("expected") =>
            {
                resumes += 1;
                offset = have;
            }
            FheReply::Error { kind, message, .. } => return Err(PrivateError::Refused { kind, message }),
            other => return Err(PrivateError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// What one private classification did.
#[derive(Debug, Clone)]
pub struct PrivateOutcome {
    pub peer: String,
    pub classification: Classification,
    /// The client's own quantized query (never sent in the clear).
    pub codes: Vec<u8>,
    pub key_uploaded: bool,
    pub upload_bytes: u64,
    pub download_bytes: u64,
    pub miner_cpu_s: f64,
    pub miner_wall_s: f64,
    pub total_s: f64,
}

/// Encrypts `text` for `offer`'s head, sends it (uploading the server key first if the miner
/// does not hold it) and decrypts the answer.
pub async fn classify(
    net: &NetworkSender,
    offer: &HeadOffer,
    classifier: &PrivateClassifier,
    text: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PrivateOutcome, PrivateError> {
    // Client-side wall time of a real round trip (reported to the user).
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    if classifier.head_id != offer.head_id {
        return Err(PrivateError::HeadMismatch { want: offer.head_id.clone(), got: classifier.head_id.clone() });
    }
    let (state, req) = classifier.prepare_request_cached(text)?;
    let request = FheMsg::Classify { request: req.to_bytes()? };
    let request_len = request.to_bytes().len() as u64;
    let mut upload = 0u64;
    let mut key_uploaded = false;
    let mut download = 0u64;
    for attempt in 0..2 {
        upload += request_len;
        let (reply, n) = call(net, &offer.peer, &request).await?;
        download += n as u64;
        match reply {
            FheReply::Logits { response, miner_cpu_s, miner_wall_s } => {
                let resp = WireResponse::from_bytes(&response)?;
                let classification = classifier.decrypt(&state, &resp)?;
                return Ok(PrivateOutcome {
                    peer: offer.peer.clone(),
                    classification,
                    codes: state.quantized.codes.clone(),
                    key_uploaded,
                    upload_bytes: upload,
                    download_bytes: download,
                    miner_cpu_s,
                    miner_wall_s,
                    total_s: t0.elapsed().as_secs_f64(),
                });
            }
            FheReply::Error { kind: FheFail::UnknownKey, .. } if attempt == 0 => {
                upload +=
                    upload_key(net, &offer.peer, classifier.keys.key_id, &classifier.keys.server_key_bytes, progress)
                        .await?;
                key_uploaded = true;
            }
            FheReply::Error { kind, message, .. } => return Err(PrivateError::Refused { kind, message }),
            other => return Err(PrivateError::Unexpected(format!("{other:?}"))),
        }
    }
    Err(PrivateError::Refused {
        kind: FheFail::UnknownKey,
        message: "the miner lost the key right after its upload".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::gossip::Role;
    use crate::roster::{BrainView, MemberView};

    fn member(peer: &str, models: &[&str], online: bool, queue: u32) -> MemberView {
        MemberView {
            peer_id: peer.into(),
            roles: vec![Role::Miner],
            models: models.iter().map(|s| s.to_string()).collect(),
            seal_key: String::new(),
            fee: 0,
            registered_ms: 0,
            admitted: true,
            refused: None,
            status: if online { Liveness::Online } else { Liveness::Offline },
            last_seen_ms: None,
            load_permille: 0,
            queue_depth: queue,
            latency_us: 0,
            serving: vec![],
            tokens_per_s_milli: 0,
            ttft_ms: 0,
        }
    }

    #[test]
    fn only_online_miners_of_the_brain_advertising_a_head_are_offered_least_queued_first() {
        let snap = RosterSnapshot {
            brain: 1,
            registration: "admitted".into(),
            brains: vec![
                BrainView {
                    brain: 1,
                    digest: String::new(),
                    members: vec![
                        member("a", &["smollm2", "fhe:h1"], true, 3),
                        member("b", &["smollm2"], true, 0),
                        member("c", &["fhe:h1"], false, 0),
                        member("d", &["fhe:h1"], true, 1),
                    ],
                },
                BrainView { brain: 2, digest: String::new(), members: vec![member("e", &["fhe:h2"], true, 0)] },
            ],
        };
        let got = heads_in(&snap, 1);
        assert_eq!(
            got,
            vec![
                HeadOffer { peer: "d".into(), head_id: "h1".into() },
                HeadOffer { peer: "a".into(), head_id: "h1".into() }
            ]
        );
        assert!(heads_in(&snap, 3).is_empty());
        assert_eq!(head_model_entry("h1"), "fhe:h1");
    }
}
