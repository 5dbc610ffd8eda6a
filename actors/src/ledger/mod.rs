//! Ledger core (issue 7, DESIGN.md §5): signed transactions, per-block batches finalised by
//! more than 2/3 of active validator stake, periodic settlement of receipts, crash-safe storage.
//!
//! Pure logic except [`store`]. Amounts are [`crate::economics::Amount`] base units; nothing
//! here uses floating point, and every map is a `BTreeMap` so every peer computes the same bytes.
//!
//! * [`merkle`]: RFC 6962-shaped sha256 Merkle tree (0x00 leaf / 0x01 node prefixes, a lone
//!   node at the end of a level is promoted unchanged), inclusion proofs.
//! * [`tx`]: transactions (transfer, stake, unstake, create Brain, register) with a canonical,
//!   domain-tagged byte encoding that is what gets signed and hashed.
//! * [`state`]: [`state::LedgerState`] and `apply_tx` (signature, nonce, balance checks; a
//!   refused transaction changes nothing) and the state digest peers compare.
//! * [`batch`]: building a block's batch from the pending pool, validator votes, finality.
//! * [`settlement`]: debiting accounts for their receipts and crediting fees and emissions.
//! * [`weights`]: validators' weights by commit-reveal transactions, and the consensus epoch
//!   that settlement mints emission by.
//! * [`store`]: sled storage; a block or a settlement is applied in one atomic sled batch.
//!
//! Signed bytes are never serde_json: see [`Enc`]. serde_json is used only for storage values
//! and the wire shape of structs whose signature covers the canonical encoding.

pub mod batch;
pub mod merkle;
pub mod settlement;
pub mod state;
pub mod store;
pub mod tx;
pub mod weights;

/// A sha256 digest.
pub type Hash = [u8; 32];
/// An ed25519 signature.
pub type Sig = [u8; 64];

/// sha256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

/// Verifies an ed25519 signature with `verify_strict` (no malleable or small-order keys).
pub fn verify_sig(pubkey: &[u8; 32], msg: &[u8], sig: &Sig) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(pubkey) else {
        return false;
    };
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

/// Canonical byte encoder for signed and hashed data: a length-prefixed domain tag, then
/// fixed-width big-endian integers and u32-length-prefixed byte strings. Two values encode to the
/// same bytes only if they are equal (every variable-length field carries its length).
#[derive(Debug, Clone)]
pub struct Enc(Vec<u8>);

impl Enc {
    /// Starts an encoding under a domain tag such as `"brainmesh/ledger/tx/v1"`.
    pub fn new(tag: &str) -> Self {
        let mut e = Enc(Vec::with_capacity(128));
        e.bytes(tag.as_bytes());
        e
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u128(&mut self, v: u128) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A u32 length then the bytes. Panics only for inputs over 4 GiB, which nothing here
    /// accepts (transactions bound their strings, see [`tx::MAX_ID_BYTES`]).
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let n = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&n.to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// 0 for `None`, 1 then the string for `Some`.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(s) => self.u8(1).str(s),
        }
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    pub fn finish(&self) -> Vec<u8> {
        self.0.clone()
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    pub fn digest(&self) -> Hash {
        sha256(&self.0)
    }
}

/// Serde for fixed-size byte arrays as lowercase hex strings (`[u8; 32]`, `[u8; 64]`).
pub mod hex_array {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(de::Error::custom)?;
        <[u8; N]>::try_from(v).map_err(|_| de::Error::custom(format!("expected {N} bytes")))
    }
}

/// Serde for `Vec<[u8; 32]>` as a list of hex strings.
pub mod hex_vec32 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| {
                let b = hex::decode(s).map_err(de::Error::custom)?;
                <[u8; 32]>::try_from(b).map_err(|_| de::Error::custom("expected 32 bytes"))
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Deterministic keys for tests: account `name` has the key derived from sha256(name).
    use ed25519_dalek::{Signer, SigningKey};

    pub fn key(name: &str) -> SigningKey {
        SigningKey::from_bytes(&super::sha256(name.as_bytes()))
    }
    pub fn pubkey(name: &str) -> [u8; 32] {
        key(name).verifying_key().to_bytes()
    }
    /// Every account name has a key (tests use names as account ids).
    pub fn pubkey_of(name: &str) -> Option<[u8; 32]> {
        Some(pubkey(name))
    }
    pub fn signer(name: &str) -> impl Fn(&[u8]) -> [u8; 64] {
        let k = key(name);
        move |m: &[u8]| k.sign(m).to_bytes()
    }
}
