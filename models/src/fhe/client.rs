//! Client side: keys, quantization, encryption of the query, decryption of the logits.
//!
//! The client holds the only secret key. It sends the miner a *compressed* server key (which
//! lets the miner bootstrap but not decrypt) once, then per query the seeded LWE encryption of
//! its quantized embedding, and decrypts the logits that come back.

use tfhe::core_crypto::commons::math::random::CompressionSeed;
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::{ClientKey, CompressedServerKey};

use super::embed::MiniLm;
use super::head::{HeadSpec, QuantizedHead};
use super::params::FheParams;
use super::quantize::{DynamicQuantizer, QuantizedSample};
use super::wire::{self, WireRequest, WireResponse, WIRE_VERSION};
use super::FheError;

/// A client's keys: the secret key and the compressed server key it gives to miners.
pub struct ClientKeys {
    pub params: FheParams,
    pub client_key: ClientKey,
    /// the serialized compressed server key (what goes on the wire)
    pub server_key_bytes: Vec<u8>,
    pub key_id: [u8; 32],
}

impl ClientKeys {
    /// Generates a fresh key pair for a stock parameter set (2_3: a few seconds; 3_3: tens).
    pub fn generate(params: FheParams) -> Result<Self, FheError> {
        let client_key = ClientKey::new(params.shortint());
        let compressed = CompressedServerKey::new(&client_key);
        let server_key_bytes = wire::encode_server_key(&compressed)?;
        let key_id = wire::key_id(&server_key_bytes);
        Ok(ClientKeys { params, client_key, server_key_bytes, key_id })
    }

    /// Stores the keys in `dir`: `fhe-client-key.bin` (the secret key; file mode 0600 on
    /// Unix) and `fhe-server-key.bin` (the compressed server key as sent on the wire), so a
    /// client keeps one key id across runs and miners' caches stay warm.
    pub fn save(&self, dir: &std::path::Path) -> Result<(), FheError> {
        use bincode::Options;
        std::fs::create_dir_all(dir).map_err(|e| FheError::io(dir, e))?;
        let secret = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .serialize(&(self.params.name(), &self.client_key))
            .map_err(|e| FheError::Wire(e.to_string()))?;
        let sk = dir.join("fhe-client-key.bin");
        write_private(&sk, &secret)?;
        let pk = dir.join("fhe-server-key.bin");
        std::fs::write(&pk, &self.server_key_bytes).map_err(|e| FheError::io(&pk, e))?;
        Ok(())
    }

    /// Loads keys written by [`Self::save`] (checks that the server key belongs to the same
    /// parameter set).
    pub fn load(dir: &std::path::Path) -> Result<Self, FheError> {
        use bincode::Options;
        let sk = dir.join("fhe-client-key.bin");
        let secret = std::fs::read(&sk).map_err(|e| FheError::io(&sk, e))?;
        let (name, client_key): (String, ClientKey) = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(64 << 20)
            .deserialize(&secret)
            .map_err(|e| FheError::KeyMismatch(format!("{}: {e}", sk.display())))?;
        let params = FheParams::from_name(&name)?;
        let pk = dir.join("fhe-server-key.bin");
        let server_key_bytes = std::fs::read(&pk).map_err(|e| FheError::io(&pk, e))?;
        wire::decode_server_key(&server_key_bytes, params)?;
        let key_id = wire::key_id(&server_key_bytes);
        Ok(ClientKeys { params, client_key, server_key_bytes, key_id })
    }

    /// Encrypts codes as one seeded LWE list under the big key: code·Δin, with the stock
    /// parameter set's own key and noise distribution.
    pub fn encrypt_codes(&self, codes: &[u8], delta_in: u64) -> ([u8; 16], Vec<u64>) {
        let (key, noise) = self.client_key.encryption_key_and_noise();
        let mut seeder = new_seeder();
        let seed = seeder.seed();
        let plaintexts =
            PlaintextList::from_container(codes.iter().map(|&c| (c as u64).wrapping_mul(delta_in)).collect::<Vec<_>>());
        let mut list = SeededLweCiphertextList::new(
            0u64,
            LweSize(self.params.big_lwe_size()),
            LweCiphertextCount(codes.len()),
            CompressionSeed { seed },
            CiphertextModulus::new_native(),
        );
        encrypt_seeded_lwe_ciphertext_list(&key, &mut list, &plaintexts, noise, seeder.as_mut());
        (seed.0.to_le_bytes(), list.into_container())
    }

    /// Decrypts one LWE ciphertext to a signed integer with encoding Δ = 2^delta_log2, and
    /// reports how far the raw value sat from the nearest multiple of Δ (the noise, in units of
    /// Δ/2: 0 = dead centre, 1 = on the decision boundary).
    pub fn decrypt_signed(&self, ct: &LweCiphertextOwned<u64>, delta_log2: u32) -> (i64, f64) {
        let key = self.client_key.encryption_key();
        let raw = decrypt_lwe_ciphertext(&key, ct).0;
        let half = 1u64 << (delta_log2 - 1);
        let value = (raw.wrapping_add(half) as i64) >> delta_log2; // arithmetic shift: signed
        let err = raw.wrapping_sub((value as u64) << delta_log2) as i64;
        (value, (err as f64).abs() / half as f64)
    }
}

/// What the client keeps between sending a request and reading the answer.
#[derive(Clone, Debug)]
pub struct ClientState {
    pub head_id: String,
    pub key_id: [u8; 32],
    /// the quantized query (codes and the per-sample scale, min, step that never leave)
    pub quantized: QuantizedSample,
}

/// The decrypted answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    pub logits: Vec<i64>,
    pub class: usize,
    pub label: String,
    /// worst distance of a logit from its decision boundary, as a fraction of Δ/2 (noise)
    pub worst_noise_fraction: f64,
}

/// The library call behind `brainmesh private classify`: embed → quantize → encrypt; and
/// decrypt → argmax.
pub struct PrivateClassifier {
    pub spec: HeadSpec,
    pub head_id: String,
    pub keys: ClientKeys,
    embedder: Option<MiniLm>,
}

impl PrivateClassifier {
    /// `head` is the head's public description (the client needs its spec and id, not its
    /// weights; the id is published with the spec). `embedder` may be None for callers that
    /// bring their own embeddings ([`Self::prepare_from_embedding`]).
    pub fn new(spec: HeadSpec, head_id: String, keys: ClientKeys, embedder: Option<MiniLm>) -> Result<Self, FheError> {
        let params = FheParams::from_name(&spec.params)?;
        if params != keys.params {
            return Err(FheError::KeyMismatch(format!("keys are for {}, head wants {}", keys.params, params)));
        }
        if let Some(e) = &embedder {
            if e.dim() != spec.input_dim {
                return Err(FheError::Dimension { what: "embedding", expected: spec.input_dim, got: e.dim() });
            }
        }
        Ok(PrivateClassifier { spec, head_id, keys, embedder })
    }

    /// Convenience: takes spec and id from a loaded head.
    pub fn for_head(head: &QuantizedHead, keys: ClientKeys, embedder: Option<MiniLm>) -> Result<Self, FheError> {
        Self::new(head.spec.clone(), head.head_id(), keys, embedder)
    }

    pub fn quantizer(&self) -> DynamicQuantizer {
        self.spec.quantizer
    }

    fn delta_in(&self) -> u64 {
        1u64 << (63 - self.spec.window_log2)
    }

    /// Embeds, quantizes and encrypts `text`; the request carries the compressed server key.
    pub fn prepare_request(&self, text: &str) -> Result<(ClientState, WireRequest), FheError> {
        let embedder = self.embedder.as_ref().ok_or_else(|| FheError::Embedder("no embedder loaded".into()))?;
        let emb = embedder.embed(&[text])?;
        let first = emb.into_iter().next().ok_or_else(|| FheError::Embedder("empty embedding".into()))?;
        self.prepare_from_embedding(&first, true)
    }

    /// Same, without the server key (for a miner that already has it by key id).
    pub fn prepare_request_cached(&self, text: &str) -> Result<(ClientState, WireRequest), FheError> {
        let (state, mut req) = self.prepare_request(text)?;
        req.server_key = None;
        Ok((state, req))
    }

    /// Quantizes and encrypts an embedding the caller computed.
    pub fn prepare_from_embedding(
        &self,
        embedding: &[f32],
        with_key: bool,
    ) -> Result<(ClientState, WireRequest), FheError> {
        if embedding.len() != self.spec.input_dim {
            return Err(FheError::Dimension { what: "embedding", expected: self.spec.input_dim, got: embedding.len() });
        }
        let quantized = self.spec.quantizer.quantize(embedding);
        self.prepare_from_codes(quantized, with_key)
    }

    /// Encrypts already-quantized codes.
    pub fn prepare_from_codes(
        &self,
        quantized: QuantizedSample,
        with_key: bool,
    ) -> Result<(ClientState, WireRequest), FheError> {
        if quantized.codes.len() != self.spec.input_dim {
            return Err(FheError::Dimension {
                what: "codes",
                expected: self.spec.input_dim,
                got: quantized.codes.len(),
            });
        }
        if quantized.codes.iter().any(|&c| c as u32 >= self.spec.quantizer.levels) {
            return Err(FheError::Wire("code outside the quantizer's levels".into()));
        }
        let (seed, bodies) = self.keys.encrypt_codes(&quantized.codes, self.delta_in());
        let req = WireRequest {
            version: WIRE_VERSION,
            params: self.keys.params.name().to_string(),
            head_id: self.head_id.clone(),
            key_id: self.keys.key_id,
            server_key: with_key.then(|| self.keys.server_key_bytes.clone()),
            seed,
            bodies,
        };
        Ok((ClientState { head_id: self.head_id.clone(), key_id: self.keys.key_id, quantized }, req))
    }

    /// Decrypts the logits of a response to the request `state` came from.
    pub fn decrypt(&self, state: &ClientState, resp: &WireResponse) -> Result<Classification, FheError> {
        if resp.head_id != state.head_id {
            return Err(FheError::WrongHead { expected: state.head_id.clone(), got: resp.head_id.clone() });
        }
        if resp.key_id != state.key_id {
            return Err(FheError::KeyMismatch("response is for another key".into()));
        }
        if resp.logit_delta_log2 != self.spec.logit_delta_log2 {
            return Err(FheError::Wire(format!(
                "logit encoding 2^{} (head says 2^{})",
                resp.logit_delta_log2, self.spec.logit_delta_log2
            )));
        }
        let cts = wire::decode_logits(resp, self.keys.params, self.spec.classes.len())?;
        let mut logits = Vec::with_capacity(cts.len());
        let mut worst = 0f64;
        for ct in &cts {
            let (v, noise) = self.keys.decrypt_signed(ct, self.spec.logit_delta_log2);
            logits.push(v);
            worst = worst.max(noise);
        }
        let class = argmax(&logits);
        let label = self.spec.classes.get(class).cloned().unwrap_or_default();
        Ok(Classification { logits, class, label, worst_noise_fraction: worst })
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[i64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), FheError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| FheError::io(path, e))?;
    f.write_all(bytes).map_err(|e| FheError::io(path, e))
}
