//! Sealed prompts: a task is encrypted to the chosen miner's X25519 key (from its signed
//! registration) and results are encrypted back, so no relay or third peer can read either.
//!
//! The gateway makes a fresh ephemeral X25519 key per task; both sides derive two
//! ChaCha20-Poly1305 keys from the shared secret (one per direction, bound to both public
//! keys and the task id). The request uses a random nonce; result chunks use their sequence
//! number as nonce, so a key/nonce pair is never reused and chunks cannot be reordered or
//! replayed undetected.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("bad public key")]
    BadKey,
    #[error("decryption failed (wrong key, tampered or replayed)")]
    Open,
}

/// Keys of one task, one per direction.
pub struct TaskKeys {
    to_miner: ChaCha20Poly1305,
    to_gateway: ChaCha20Poly1305,
}

fn derive(label: &[u8], shared: &[u8; 32], eph: &[u8; 32], miner: &[u8; 32], task_id: &str) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"brainmesh/seal/v1/");
    h.update(label);
    h.update(shared);
    h.update(eph);
    h.update(miner);
    h.update(task_id.as_bytes());
    let k: [u8; 32] = h.finalize().into();
    ChaCha20Poly1305::new(Key::from_slice(&k))
}

impl TaskKeys {
    /// Gateway side: a fresh ephemeral key. Returns the keys and the ephemeral public key to
    /// send along.
    pub fn for_gateway(miner_seal_key: &[u8; 32], task_id: &str) -> (Self, [u8; 32]) {
        let eph = StaticSecret::from(rand::random::<[u8; 32]>());
        let eph_pub = PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&PublicKey::from(*miner_seal_key)).to_bytes();
        (Self::from_shared(&shared, &eph_pub, miner_seal_key, task_id), eph_pub)
    }

    /// Miner side, from the gateway's ephemeral public key.
    pub fn for_miner(miner_secret: &StaticSecret, eph_pub: &[u8; 32], task_id: &str) -> Self {
        let miner_pub = PublicKey::from(miner_secret).to_bytes();
        let shared = miner_secret.diffie_hellman(&PublicKey::from(*eph_pub)).to_bytes();
        Self::from_shared(&shared, eph_pub, &miner_pub, task_id)
    }

    fn from_shared(shared: &[u8; 32], eph: &[u8; 32], miner: &[u8; 32], task_id: &str) -> Self {
        Self {
            to_miner: derive(b"to-miner", shared, eph, miner, task_id),
            to_gateway: derive(b"to-gateway", shared, eph, miner, task_id),
        }
    }

    /// Encrypts the task for the miner: (nonce, ciphertext).
    pub fn seal_request(&self, plaintext: &[u8]) -> ([u8; 12], Vec<u8>) {
        let nonce = rand::random::<[u8; 12]>();
        let ct = self.to_miner.encrypt(Nonce::from_slice(&nonce), plaintext).unwrap_or_default();
        (nonce, ct)
    }

    pub fn open_request(&self, nonce: &[u8; 12], ct: &[u8]) -> Result<Vec<u8>, SealError> {
        self.to_miner.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| SealError::Open)
    }

    /// Encrypts result chunk number `seq` for the gateway.
    pub fn seal_chunk(&self, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        self.to_gateway
            .encrypt(&chunk_nonce(seq), Payload { msg: plaintext, aad: &seq.to_be_bytes() })
            .unwrap_or_default()
    }

    pub fn open_chunk(&self, seq: u64, ct: &[u8]) -> Result<Vec<u8>, SealError> {
        self.to_gateway
            .decrypt(&chunk_nonce(seq), Payload { msg: ct, aad: &seq.to_be_bytes() })
            .map_err(|_| SealError::Open)
    }
}

fn chunk_nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    *Nonce::from_slice(&n)
}

pub fn key_from_hex(h: &str) -> Result<[u8; 32], SealError> {
    hex::decode(h).ok().and_then(|v| v.try_into().ok()).ok_or(SealError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn only_the_chosen_miner_can_open_the_prompt_and_results_come_back_sealed() {
        let miner = Identity::generate();
        let other = Identity::generate();
        let (gw, eph) = TaskKeys::for_gateway(&miner.seal_public(), "task-1");
        let (nonce, ct) = gw.seal_request(b"what is the capital of France?");
        assert!(!ct.windows(7).any(|w| w == b"capital"));
        let m = TaskKeys::for_miner(&miner.seal_secret(), &eph, "task-1");
        assert_eq!(m.open_request(&nonce, &ct).unwrap(), b"what is the capital of France?");
        // Another peer (a relay) cannot.
        let o = TaskKeys::for_miner(&other.seal_secret(), &eph, "task-1");
        assert_eq!(o.open_request(&nonce, &ct), Err(SealError::Open));
        // Keys are bound to the task id.
        let wrong_task = TaskKeys::for_miner(&miner.seal_secret(), &eph, "task-2");
        assert_eq!(wrong_task.open_request(&nonce, &ct), Err(SealError::Open));
        // Chunks: sequence-bound, so reordering or replay is detected.
        let c0 = m.seal_chunk(0, b"Paris");
        assert_eq!(gw.open_chunk(0, &c0).unwrap(), b"Paris");
        assert_eq!(gw.open_chunk(1, &c0), Err(SealError::Open));
        // The gateway cannot forge a chunk as if from the miner with the request key.
        assert_eq!(m.open_request(&[0; 12], &c0), Err(SealError::Open));
    }
}
