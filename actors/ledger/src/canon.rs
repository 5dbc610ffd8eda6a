//! One canonical encoding of signed and hashed bytes, and one signature check.
//!
//! Every claim a peer signs (ledger transactions, batch votes, weight commits, receipts, bans,
//! transcripts) is encoded with [`Enc`]: a length-prefixed domain tag, then fixed-width
//! **big-endian** integers and u32-length-prefixed byte strings. Two values encode to the same
//! bytes only if they are equal. Signatures are ed25519, checked with [`verify_sig`]
//! (`verify_strict`: no malleable or small-order keys). serde_json is never what gets signed.

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
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig)).is_ok()
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
    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    /// Appends a u16, big endian.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a u64, big endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a u128, big endian.
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
    /// Appends a string's UTF-8 bytes as [`Enc::bytes`] does (u32 length, then the bytes).
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
    /// Appends bytes as they are, with no length prefix (for fixed-width fields such as hashes).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// The bytes encoded so far (a copy; the encoder stays usable).
    pub fn finish(&self) -> Vec<u8> {
        self.0.clone()
    }
    /// The encoded bytes, consuming the encoder.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    /// sha256 of the bytes encoded so far.
    pub fn digest(&self) -> Hash {
        sha256(&self.0)
    }
}

/// Serde for fixed-size byte arrays as lowercase hex strings (`[u8; 32]`, `[u8; 64]`).
pub mod hex_array {
    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Serializes `v` as a lowercase hex string.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserializes a hex string of exactly `N` bytes.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(de::Error::custom)?;
        <[u8; N]>::try_from(v).map_err(|_| de::Error::custom(format!("expected {N} bytes")))
    }
}

/// Serde for `Vec<[u8; 32]>` as a list of hex strings.
pub mod hex_vec32 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    /// Serializes each hash as a lowercase hex string.
    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    /// Deserializes a list of hex strings, each exactly 32 bytes.
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

/// Verifies a hex-encoded ed25519 signature (`verify_strict`); malformed hex is a failed check.
pub fn verify_sig_hex(pubkey: &[u8; 32], msg: &[u8], sig_hex: &str) -> bool {
    decode_hex::<64>(sig_hex).is_some_and(|sig| verify_sig(pubkey, msg, &sig))
}

/// Verifies a hex-encoded ed25519 signature by the key a peer id inlines (see
/// [`crate::ids::PeerId::ed25519_public_key`]); an id without an ed25519 key fails the check.
pub fn verify_by_peer(peer: &str, msg: &[u8], sig_hex: &str) -> bool {
    crate::ids::ed25519_key_of(peer).is_some_and(|pk| verify_sig_hex(&pk, msg, sig_hex))
}

/// Decodes exactly `N` bytes of hex.
pub fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode(s).ok().and_then(|v| <[u8; N]>::try_from(v).ok())
}
