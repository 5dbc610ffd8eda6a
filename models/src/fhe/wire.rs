//! What travels between the client and a miner in encrypted mode, and the checks every field
//! gets on arrival. Nothing here is trusted: sizes, the key id, the parameter set and the
//! dimensions are all checked before any tfhe code touches the data.
//!
//! Request (client → miner): the stock parameter set's name, the head id, the key id
//! (sha256 of the compressed server key), optionally the compressed server key itself (tfhe's
//! bincode form, checked for conformance with the stock parameter set on arrival; miners cache it by key id, so it is sent once), and the
//! input ciphertexts as one *seeded* LWE list: a 128-bit seed from which the miner regenerates
//! every mask, plus one 64-bit body per input — 8 bytes per encrypted value.
//!
//! Response (miner → client): the encrypted logits. Each LWE coefficient is sent as its top
//! 32 bits (rounded); the rounding adds noise of about 2^36 after decryption, far below the
//! logits' own bootstrap noise (≈2^48), so it halves the download for free.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::ciphertext::MaxDegree;
use tfhe::shortint::parameters::{AtomicPatternParameters, PBSParameters};
use tfhe::shortint::CompressedServerKey;

use super::params::FheParams;
use super::FheError;

pub const WIRE_VERSION: u16 = 1;
/// Largest request accepted (a compressed 2_3 server key is ≈ 150 MB; 3_3 ≈ 300 MB).
pub const MAX_REQUEST_BYTES: u64 = 512 << 20;
/// Largest response accepted.
pub const MAX_RESPONSE_BYTES: u64 = 8 << 20;
/// Bits of each response coefficient kept.
pub const RESPONSE_BITS: u32 = 32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    pub version: u16,
    /// stock parameter set, by Zama's name
    pub params: String,
    /// which head the client built the request for (sha256 hex)
    pub head_id: String,
    /// sha256 of `server_key` bytes
    pub key_id: [u8; 32],
    /// bincode-serialized shortint `CompressedServerKey`; None when the miner has it cached
    pub server_key: Option<Vec<u8>>,
    /// compression seed of the seeded LWE list
    pub seed: [u8; 16],
    /// one body per input value
    pub bodies: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireResponse {
    pub version: u16,
    pub head_id: String,
    pub key_id: [u8; 32],
    /// LWE dimension of each logit ciphertext (n; each has n + 1 coefficients)
    pub lwe_dimension: u32,
    /// log2 Δ of the logits' encoding
    pub logit_delta_log2: u32,
    /// classes × (n + 1) coefficients, top `RESPONSE_BITS` bits each
    pub logits: Vec<u32>,
}

fn options(limit: u64) -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().with_limit(limit)
}

impl WireRequest {
    pub fn to_bytes(&self) -> Result<Vec<u8>, FheError> {
        use bincode::Options;
        options(MAX_REQUEST_BYTES).serialize(self).map_err(|e| FheError::Wire(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FheError> {
        use bincode::Options;
        if bytes.len() as u64 > MAX_REQUEST_BYTES {
            return Err(FheError::Wire(format!("request of {} bytes exceeds {MAX_REQUEST_BYTES}", bytes.len())));
        }
        options(MAX_REQUEST_BYTES).deserialize(bytes).map_err(|e| FheError::Wire(format!("request: {e}")))
    }

    /// Upload size without the server key (what every request after the first costs).
    pub fn ciphertext_bytes(&self) -> usize {
        16 + 8 * self.bodies.len()
    }
}

impl WireResponse {
    pub fn to_bytes(&self) -> Result<Vec<u8>, FheError> {
        use bincode::Options;
        options(MAX_RESPONSE_BYTES).serialize(self).map_err(|e| FheError::Wire(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FheError> {
        use bincode::Options;
        if bytes.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(FheError::Wire(format!("response of {} bytes exceeds {MAX_RESPONSE_BYTES}", bytes.len())));
        }
        options(MAX_RESPONSE_BYTES).deserialize(bytes).map_err(|e| FheError::Wire(format!("response: {e}")))
    }
}

/// sha256 of the serialized compressed server key.
pub fn key_id(server_key_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(server_key_bytes).into()
}

/// Serializes a compressed server key (bincode, fixed-width integers).
pub fn encode_server_key(key: &CompressedServerKey) -> Result<Vec<u8>, FheError> {
    use bincode::Options;
    options(MAX_REQUEST_BYTES).serialize(key).map_err(|e| FheError::Wire(format!("server key: {e}")))
}

/// Deserializes a client's compressed server key (size-limited) and checks it is a key *for
/// the stock parameter set*: tfhe's conformance check of every dimension, decomposition and
/// modulus of the bootstrapping and key-switching keys.
pub fn decode_server_key(bytes: &[u8], params: FheParams) -> Result<CompressedServerKey, FheError> {
    use bincode::Options;
    use tfhe::conformance::ParameterSetConformant;
    let p = params.shortint();
    let ap = AtomicPatternParameters::Standard(PBSParameters::PBS(p));
    let max_degree = MaxDegree::from_msg_carry_modulus(p.message_modulus, p.carry_modulus);
    // tfhe's entity constructors assert on their invariants; a crafted key must not be able
    // to take the miner down, so any panic while parsing or checking becomes an error
    no_panic("server key", || {
        let key: CompressedServerKey = options(MAX_REQUEST_BYTES)
            .deserialize(bytes)
            .map_err(|e| FheError::KeyMismatch(format!("server key does not parse: {e}")))?;
        if !key.is_conformant(&(ap, max_degree)) {
            return Err(FheError::KeyMismatch(format!("server key is not a key for {}", params.name())));
        }
        Ok(key)
    })
}

/// Runs `f`, turning a panic inside tfhe into an error (peer data must never crash a peer).
pub(crate) fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T, FheError>) -> Result<T, FheError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(FheError::Wire(format!("{what}: rejected (invariant violated)"))))
}

/// Rebuilds the input ciphertexts from a request (checked: count, seed).
pub fn decode_inputs(
    req: &WireRequest,
    params: FheParams,
    expected_inputs: usize,
) -> Result<LweCiphertextListOwned<u64>, FheError> {
    if req.bodies.len() != expected_inputs {
        return Err(FheError::Dimension {
            what: "input ciphertexts",
            expected: expected_inputs,
            got: req.bodies.len(),
        });
    }
    let seed = CompressionSeed { seed: Seed(u128::from_le_bytes(req.seed)) };
    no_panic("input ciphertexts", || {
        let list = SeededLweCiphertextList::from_container(
            req.bodies.clone(),
            LweSize(params.big_lwe_size()),
            seed,
            CiphertextModulus::new_native(),
        );
        Ok(list.decompress_into_lwe_ciphertext_list())
    })
}

/// Packs encrypted logits for the client (top 32 bits of each coefficient, rounded).
pub fn encode_logits(
    logits: &[LweCiphertextOwned<u64>],
    req: &WireRequest,
    logit_delta_log2: u32,
    params: FheParams,
) -> Result<WireResponse, FheError> {
    let size = params.big_lwe_size();
    let shift = 64 - RESPONSE_BITS;
    let mut out = Vec::with_capacity(logits.len() * size);
    for ct in logits {
        if ct.as_ref().len() != size {
            return Err(FheError::Dimension { what: "logit LWE size", expected: size, got: ct.as_ref().len() });
        }
        out.extend(ct.as_ref().iter().map(|&c| (c.wrapping_add(1u64 << (shift - 1)) >> shift) as u32));
    }
    Ok(WireResponse {
        version: WIRE_VERSION,
        head_id: req.head_id.clone(),
        key_id: req.key_id,
        lwe_dimension: (size - 1) as u32,
        logit_delta_log2,
        logits: out,
    })
}

/// Unpacks the logits of a response (checked: version, dimension, count).
pub fn decode_logits(
    resp: &WireResponse,
    params: FheParams,
    classes: usize,
) -> Result<Vec<LweCiphertextOwned<u64>>, FheError> {
    if resp.version != WIRE_VERSION {
        return Err(FheError::Wire(format!("response version {}", resp.version)));
    }
    let size = params.big_lwe_size();
    if resp.lwe_dimension as usize + 1 != size {
        return Err(FheError::Dimension {
            what: "logit LWE size",
            expected: size,
            got: resp.lwe_dimension as usize + 1,
        });
    }
    if resp.logits.len() != classes * size {
        return Err(FheError::Dimension {
            what: "logit coefficients",
            expected: classes * size,
            got: resp.logits.len(),
        });
    }
    let shift = 64 - RESPONSE_BITS;
    Ok(resp
        .logits
        .chunks(size)
        .map(|c| {
            LweCiphertextOwned::from_container(
                c.iter().map(|&v| (v as u64) << shift).collect(),
                CiphertextModulus::new_native(),
            )
        })
        .collect())
}
