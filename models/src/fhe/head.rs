//! Miner side: the Brain's squeezed head evaluated on the client's LWE ciphertexts.
//!
//! ```text
//!  codes k (D values in 0..16, encrypted as k·Δin under the client's big LWE key)
//!   │  layer 1: z = W1·k, W1 int8 — plaintext-weight linear layer, no bootstrapping
//!   │           (+ a per-neuron offset so that the neuron's range sits in the middle of the window)
//!   │  one KS-PBS per neuron: the accumulator holds h_j(p) = requantize∘ReLU at every position p
//!   ▼
//!  h (H values in 0..16, encoded as h·Δh)
//!   │  layer 2: logits = W2·h + b2, W2 in [−w2_max, w2_max] — leveled again
//!   ▼
//!  C encrypted logits (only the client can decrypt them)
//! ```
//!
//! Encoding. The input window is 2^B integers wide: Δin = 2^(63−B) and a pre-activation u = z + o
//! sits at torus value u·Δin + 2^62 ∈ [0, 2^63) (the padding bit stays 0). The blind rotation
//! reads position p = round(u/g) + N/2 with g = 2^(B − log2 N) (N = polynomial size); the
//! accumulator's coefficient p holds the neuron's activation for that position, so the
//! bootstrap computes "requantize + ReLU + clamp to 4 bits" exactly, up to the modulus-switch
//! noise (a few positions), which occasionally moves an activation by one step.
//! [`QuantizedHead::reference`] computes exactly what a noise-free evaluation returns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::atomic_pattern::AtomicPattern;
use tfhe::shortint::ciphertext::{Degree, NoiseLevel};
use tfhe::shortint::server_key::LookupTableOwned;
use tfhe::shortint::{Ciphertext, CompressedServerKey, ServerKey};

use super::params::FheParams;
use super::quantize::DynamicQuantizer;
use super::wire::{self, WireRequest, WireResponse, WIRE_VERSION};
use super::FheError;

/// The public description of a head: everything a client needs to build a request for it and
/// to decode the answer (no weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadSpec {
    pub format_version: u32,
    /// stock tfhe parameter set, by Zama's name
    pub params: String,
    pub input_dim: usize,
    pub hidden: usize,
    pub classes: Vec<String>,
    /// the client's §5.1 quantizer (input codes in 0..levels)
    pub quantizer: DynamicQuantizer,
    /// activation levels (h in 0..act_levels)
    pub act_levels: u32,
    /// log2 of the input window (B)
    pub window_log2: u32,
    /// log2 of Δh, the encoding of hidden activations and logits
    pub logit_delta_log2: u32,
    /// largest |W2| entry
    pub w2_max: i32,
    /// free-form: how the head was made, accuracies, calibration figures
    #[serde(default)]
    pub notes: serde_json::Value,
}

/// The integer head (weights plus the spec). Held by miners; public to whoever the Brain
/// publishes it to. Nothing in it is secret from the miner.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedHead {
    pub spec: HeadSpec,
    /// [hidden × input_dim] int8
    pub w1: Vec<i8>,
    /// [hidden] window offsets o_j (u = z + o)
    pub offset: Vec<i64>,
    /// [hidden × (act_levels − 1)] positions at which the activation steps up by one
    pub thresholds: Vec<i32>,
    /// [classes × hidden]
    pub w2: Vec<i8>,
    /// [classes], in logit units
    pub b2: Vec<i64>,
}

/// What a noise-free evaluation of the head gives for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// pre-activations z = W1·k
    pub z: Vec<i64>,
    /// accumulator positions read by each bootstrap (None: outside the window, the result
    /// would wrap)
    pub positions: Vec<Option<usize>>,
    pub hidden: Vec<u8>,
    pub logits: Vec<i64>,
}

impl QuantizedHead {
    pub fn params(&self) -> Result<FheParams, FheError> {
        FheParams::from_name(&self.spec.params)
    }

    pub fn classes(&self) -> usize {
        self.spec.classes.len()
    }

    /// Checks every size and range, so that a head read from disk cannot make the evaluator
    /// index out of bounds or overflow.
    pub fn validate(&self) -> Result<(), FheError> {
        let s = &self.spec;
        let bad = |m: String| Err(FheError::InvalidHead(m));
        let params = FheParams::from_name(&s.params)?;
        let log_n = params.log2_polynomial_size();
        if s.format_version != 1 {
            return bad(format!("format_version {} (expected 1)", s.format_version));
        }
        if s.input_dim == 0 || s.input_dim > 4096 || s.hidden == 0 || s.hidden > 4096 {
            return bad(format!("dimensions {}→{}", s.input_dim, s.hidden));
        }
        if s.classes.is_empty() || s.classes.len() > 64 {
            return bad(format!("{} classes", s.classes.len()));
        }
        if !(2..=64).contains(&s.act_levels) || !(2..=16).contains(&s.quantizer.levels) {
            return bad("levels out of range".into());
        }
        if s.window_log2 < log_n || s.window_log2 > 40 {
            return bad(format!("window 2^{} (needs log2 N = {log_n} ≤ B ≤ 40)", s.window_log2));
        }
        if !(20..=62).contains(&s.logit_delta_log2) {
            return bad(format!("logit Δ 2^{}", s.logit_delta_log2));
        }
        let (h, d, c, l) = (s.hidden, s.input_dim, s.classes.len(), s.act_levels as usize);
        if self.w1.len() != h * d
            || self.offset.len() != h
            || self.thresholds.len() != h * (l - 1)
            || self.w2.len() != c * h
            || self.b2.len() != c
        {
            return bad("tensor sizes do not match the spec".into());
        }
        if self.w2.iter().any(|&w| (w as i32).abs() > s.w2_max) {
            return bad("W2 entry above w2_max".into());
        }
        if self.offset.iter().any(|o| o.abs() > 1 << 40) || self.b2.iter().any(|b| b.abs() > 1 << 40) {
            return bad("offset or bias out of range".into());
        }
        Ok(())
    }

    /// Whether every possible logit fits the logit encoding (otherwise only the calibrated
    /// range, with headroom, does; a logit outside it would wrap modulo 2^64).
    pub fn logit_range_guaranteed(&self) -> bool {
        let (lo, hi) = self.logit_bounds();
        let limit = 1i128 << (63 - self.spec.logit_delta_log2);
        lo >= -limit && hi < limit
    }

    /// Exact worst-case bounds of any logit over all possible activations.
    pub fn logit_bounds(&self) -> (i128, i128) {
        let top = (self.spec.act_levels - 1) as i128;
        let h = self.spec.hidden;
        let mut lo = i128::MAX;
        let mut hi = i128::MIN;
        for c in 0..self.classes() {
            let row = &self.w2[c * h..(c + 1) * h];
            let pos: i128 = row.iter().filter(|&&w| w > 0).map(|&w| w as i128).sum();
            let neg: i128 = row.iter().filter(|&&w| w < 0).map(|&w| w as i128).sum();
            lo = lo.min(self.b2[c] as i128 + top * neg);
            hi = hi.max(self.b2[c] as i128 + top * pos);
        }
        (lo, hi)
    }

    /// Largest ‖W2_c‖₂ over the classes: the factor by which a bootstrap's output noise grows
    /// in a logit.
    pub fn max_w2_norm(&self) -> f64 {
        let h = self.spec.hidden;
        (0..self.classes())
            .map(|c| self.w2[c * h..(c + 1) * h].iter().map(|&w| (w as f64).powi(2)).sum::<f64>().sqrt())
            .fold(0.0, f64::max)
    }

    /// g = 2^(B − log2 N): integers of u per accumulator position.
    fn log2_g(&self) -> Result<u32, FheError> {
        Ok(self.spec.window_log2 - self.params()?.log2_polynomial_size())
    }

    /// Activation of neuron j at accumulator position p.
    pub fn activation_at(&self, j: usize, p: usize) -> u8 {
        let l = self.spec.act_levels as usize - 1;
        let t = &self.thresholds[j * l..(j + 1) * l];
        t.iter().filter(|&&thr| (p as i64) >= thr as i64).count() as u8
    }

    /// Position the bootstrap of neuron j reads for pre-activation z, if inside the window.
    pub fn position(&self, j: usize, z: i64) -> Result<Option<usize>, FheError> {
        let params = self.params()?;
        let n = params.polynomial_size() as i64;
        let lg = self.log2_g()?;
        let u = z + self.offset[j];
        // round half up: floor((u + g/2) / g)
        let half = if lg == 0 { 0 } else { 1i64 << (lg - 1) };
        let p = ((u + half) >> lg) + n / 2;
        Ok(if (0..n).contains(&p) { Some(p as usize) } else { None })
    }

    /// Noise-free evaluation on integer codes.
    pub fn reference(&self, codes: &[u8]) -> Result<Reference, FheError> {
        let d = self.spec.input_dim;
        if codes.len() != d {
            return Err(FheError::Dimension { what: "input codes", expected: d, got: codes.len() });
        }
        let mut z = Vec::with_capacity(self.spec.hidden);
        let mut positions = Vec::with_capacity(self.spec.hidden);
        let mut hidden = Vec::with_capacity(self.spec.hidden);
        for j in 0..self.spec.hidden {
            let row = &self.w1[j * d..(j + 1) * d];
            let zj: i64 = row.iter().zip(codes).map(|(&w, &k)| w as i64 * k as i64).sum();
            let p = self.position(j, zj)?;
            z.push(zj);
            positions.push(p);
            hidden.push(p.map(|p| self.activation_at(j, p)).unwrap_or(0));
        }
        let logits = self.logits_from_hidden(&hidden);
        Ok(Reference { z, positions, hidden, logits })
    }

    /// Layer 2 in the clear.
    pub fn logits_from_hidden(&self, hidden: &[u8]) -> Vec<i64> {
        let h = self.spec.hidden;
        (0..self.classes())
            .map(|c| {
                self.b2[c]
                    + self.w2[c * h..(c + 1) * h].iter().zip(hidden).map(|(&w, &x)| w as i64 * x as i64).sum::<i64>()
            })
            .collect()
    }

    /// sha256 (hex) over the weights and the spec: the head id clients and miners agree on.
    pub fn head_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&spec_without_notes(&self.spec)).unwrap_or_default());
        h.update(self.w1.iter().map(|&v| v as u8).collect::<Vec<u8>>());
        for v in &self.offset {
            h.update(v.to_le_bytes());
        }
        for v in &self.thresholds {
            h.update(v.to_le_bytes());
        }
        h.update(self.w2.iter().map(|&v| v as u8).collect::<Vec<u8>>());
        for v in &self.b2 {
            h.update(v.to_le_bytes());
        }
        hex(&h.finalize())
    }

    /// Writes `head.json` (spec) and `head.safetensors` (integer tensors) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), FheError> {
        std::fs::create_dir_all(dir).map_err(|e| FheError::io(dir, e))?;
        let (h, d, c) = (self.spec.hidden as i64, self.spec.input_dim as i64, self.classes() as i64);
        let l = self.spec.act_levels as i64 - 1;
        let tensors = vec![
            ("w1", tch::Tensor::from_slice(&self.w1).view([h, d])),
            ("offset", tch::Tensor::from_slice(&self.offset)),
            ("thresholds", tch::Tensor::from_slice(&self.thresholds).view([h, l])),
            ("w2", tch::Tensor::from_slice(&self.w2).view([c, h])),
            ("b2", tch::Tensor::from_slice(&self.b2)),
        ];
        let st = dir.join("head.safetensors");
        tch::Tensor::write_safetensors(&tensors, &st)?;
        let mut spec = self.spec.clone();
        if let serde_json::Value::Object(m) = &mut spec.notes {
            m.insert("head_id".into(), serde_json::Value::String(self.head_id()));
        }
        let json = serde_json::to_string_pretty(&spec).map_err(|e| FheError::InvalidHead(e.to_string()))?;
        std::fs::write(dir.join("head.json"), json + "\n").map_err(|e| FheError::io(dir.join("head.json"), e))?;
        Ok(())
    }

    /// Reads a head written by [`Self::save`] and validates it.
    pub fn load(dir: &Path) -> Result<Self, FheError> {
        let jp = dir.join("head.json");
        let text = std::fs::read_to_string(&jp).map_err(|e| FheError::io(&jp, e))?;
        let spec: HeadSpec =
            serde_json::from_str(&text).map_err(|e| FheError::InvalidHead(format!("{}: {e}", jp.display())))?;
        let st = dir.join("head.safetensors");
        let tensors: HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&st)?.into_iter().collect();
        let get = |name: &str| {
            tensors.get(name).ok_or_else(|| FheError::InvalidHead(format!("{}: no tensor {name}", st.display())))
        };
        let to_vec_i8 = |t: &tch::Tensor| -> Result<Vec<i8>, FheError> {
            Vec::<i8>::try_from(t.to_kind(tch::Kind::Int8).reshape([-1])).map_err(FheError::from)
        };
        let to_vec_i64 = |t: &tch::Tensor| -> Result<Vec<i64>, FheError> {
            Vec::<i64>::try_from(t.to_kind(tch::Kind::Int64).reshape([-1])).map_err(FheError::from)
        };
        let to_vec_i32 = |t: &tch::Tensor| -> Result<Vec<i32>, FheError> {
            Vec::<i32>::try_from(t.to_kind(tch::Kind::Int).reshape([-1])).map_err(FheError::from)
        };
        let head = QuantizedHead {
            spec,
            w1: to_vec_i8(get("w1")?)?,
            offset: to_vec_i64(get("offset")?)?,
            thresholds: to_vec_i32(get("thresholds")?)?,
            w2: to_vec_i8(get("w2")?)?,
            b2: to_vec_i64(get("b2")?)?,
        };
        head.validate()?;
        Ok(head)
    }
}

fn spec_without_notes(spec: &HeadSpec) -> HeadSpec {
    HeadSpec { notes: serde_json::Value::Null, ..spec.clone() }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Timings of one evaluation (miner side).
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalTimings {
    pub decompress_inputs_s: f64,
    pub layer1_s: f64,
    pub bootstraps_s: f64,
    pub layer2_s: f64,
    pub bootstraps: usize,
    /// CPU seconds the whole process spent during the bootstraps (all threads; Linux only):
    /// less sensitive than wall time to other jobs sharing the machine
    pub bootstraps_cpu_s: f64,
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`; 0 elsewhere).
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The result of an evaluation: encrypted logits (and, for tests and the bench, the encrypted
/// hidden activations, which a real miner never sends).
pub struct EncryptedOutput {
    pub logits: Vec<LweCiphertextOwned<u64>>,
    pub hidden: Vec<LweCiphertextOwned<u64>>,
    pub timings: EvalTimings,
}

/// A head ready to evaluate: the integer head plus its lookup tables.
pub struct EncryptedHead {
    pub head: QuantizedHead,
    pub params: FheParams,
    head_id: String,
}

impl EncryptedHead {
    pub fn new(head: QuantizedHead) -> Result<Self, FheError> {
        head.validate()?;
        let params = head.params()?;
        let head_id = head.head_id();
        Ok(EncryptedHead { head, params, head_id })
    }

    pub fn head_id(&self) -> &str {
        &self.head_id
    }

    /// Δin = 2^(63 − B): the encoding of input codes.
    pub fn input_delta(&self) -> u64 {
        1u64 << (63 - self.head.spec.window_log2)
    }

    /// Δh: the encoding of activations and logits.
    pub fn hidden_delta(&self) -> u64 {
        1u64 << self.head.spec.logit_delta_log2
    }

    fn lookup_table(&self, sks: &ServerKey, j: usize) -> LookupTableOwned {
        let mut lut = sks.generate_lookup_table(|x| x);
        let delta = self.hidden_delta();
        for (p, coef) in lut.acc.get_mut_body().as_mut().iter_mut().enumerate() {
            *coef = (self.head.activation_at(j, p) as u64).wrapping_mul(delta);
        }
        lut.degree = Degree::new(self.head.spec.act_levels as u64 - 1);
        lut
    }

    /// Evaluates the head on D input ciphertexts (big-key LWE, codes encoded with Δin).
    pub fn eval(&self, sks: &ServerKey, inputs: &LweCiphertextListOwned<u64>) -> Result<EncryptedOutput, FheError> {
        let spec = &self.head.spec;
        let lwe_size = self.params.big_lwe_size();
        if inputs.lwe_size().0 != lwe_size {
            return Err(FheError::Dimension { what: "input LWE size", expected: lwe_size, got: inputs.lwe_size().0 });
        }
        if inputs.lwe_ciphertext_count().0 != spec.input_dim {
            return Err(FheError::Dimension {
                what: "input ciphertexts",
                expected: spec.input_dim,
                got: inputs.lwe_ciphertext_count().0,
            });
        }
        if sks.ciphertext_lwe_dimension().0 + 1 != lwe_size || sks.message_modulus.0 * sks.carry_modulus.0 == 0 {
            return Err(FheError::KeyMismatch("server key dimension does not match the head's parameters".into()));
        }
        let mut timings = EvalTimings::default();
        let d = spec.input_dim;
        let data = inputs.as_ref();
        let modulus = inputs.ciphertext_modulus();
        let delta_in = self.input_delta();

        // layer 1, leveled: acc_j = Σ_i W1[j,i]·ct_i + (o_j·Δin + 2^62)
        let t = std::time::Instant::now();
        let pre: Vec<Vec<u64>> = (0..spec.hidden)
            .into_par_iter()
            .map(|j| {
                let row = &self.head.w1[j * d..(j + 1) * d];
                let mut acc = vec![0u64; lwe_size];
                for (i, &w) in row.iter().enumerate() {
                    if w == 0 {
                        continue;
                    }
                    let w = w as i64 as u64;
                    let ct = &data[i * lwe_size..(i + 1) * lwe_size];
                    for (a, &c) in acc.iter_mut().zip(ct) {
                        *a = a.wrapping_add(w.wrapping_mul(c));
                    }
                }
                let shift = (self.head.offset[j] as u64).wrapping_mul(delta_in).wrapping_add(1u64 << 62);
                if let Some(body) = acc.last_mut() {
                    *body = body.wrapping_add(shift);
                }
                acc
            })
            .collect();
        timings.layer1_s = t.elapsed().as_secs_f64();

        // one KS-PBS per neuron: requantize + ReLU + clamp, read from the neuron's own table
        let t = std::time::Instant::now();
        let cpu0 = process_cpu_seconds();
        let kind = sks.atomic_pattern.kind();
        let hidden: Vec<LweCiphertextOwned<u64>> = pre
            .into_par_iter()
            .enumerate()
            .map(|(j, acc)| {
                let ct = Ciphertext::new(
                    LweCiphertextOwned::from_container(acc, modulus),
                    Degree::new(sks.message_modulus.0 * sks.carry_modulus.0 - 1),
                    NoiseLevel::NOMINAL,
                    sks.message_modulus,
                    sks.carry_modulus,
                    kind,
                );
                let lut = self.lookup_table(sks, j);
                sks.apply_lookup_table(&ct, &lut).ct
            })
            .collect();
        timings.bootstraps_s = t.elapsed().as_secs_f64();
        timings.bootstraps_cpu_s = process_cpu_seconds() - cpu0;
        timings.bootstraps = hidden.len();

        // layer 2, leveled: logit_c = Σ_j W2[c,j]·h_j + b2_c·Δh
        let t = std::time::Instant::now();
        let h = spec.hidden;
        let delta_h = self.hidden_delta();
        let logits = (0..self.head.classes())
            .map(|c| {
                let mut acc = vec![0u64; lwe_size];
                for (j, &w) in self.head.w2[c * h..(c + 1) * h].iter().enumerate() {
                    let w = w as i64 as u64;
                    for (a, &x) in acc.iter_mut().zip(hidden[j].as_ref()) {
                        *a = a.wrapping_add(w.wrapping_mul(x));
                    }
                }
                if let Some(body) = acc.last_mut() {
                    *body = body.wrapping_add((self.head.b2[c] as u64).wrapping_mul(delta_h));
                }
                LweCiphertextOwned::from_container(acc, modulus)
            })
            .collect();
        timings.layer2_s = t.elapsed().as_secs_f64();
        Ok(EncryptedOutput { logits, hidden, timings })
    }
}

/// Server keys a miner has seen, by key id (sha256 of the compressed key's bytes). Bounded:
/// the oldest entry goes when a new one would exceed `capacity`.
pub struct KeyCache {
    keys: HashMap<[u8; 32], Arc<ServerKey>>,
    order: Vec<[u8; 32]>,
    capacity: usize,
}

impl KeyCache {
    pub fn new(capacity: usize) -> Self {
        KeyCache { keys: HashMap::new(), order: Vec::new(), capacity: capacity.max(1) }
    }

    pub fn get(&self, id: &[u8; 32]) -> Option<Arc<ServerKey>> {
        self.keys.get(id).cloned()
    }

    pub fn insert(&mut self, id: [u8; 32], key: Arc<ServerKey>) {
        if self.keys.insert(id, key).is_none() {
            self.order.push(id);
        }
        while self.order.len() > self.capacity {
            let old = self.order.remove(0);
            self.keys.remove(&old);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A miner's encrypted-mode service: one head, a cache of client server keys.
pub struct Miner {
    pub head: EncryptedHead,
    pub keys: KeyCache,
}

impl Miner {
    pub fn new(head: QuantizedHead) -> Result<Self, FheError> {
        Ok(Miner { head: EncryptedHead::new(head)?, keys: KeyCache::new(8) })
    }

    /// Decodes a client's compressed server key (checked against the stock parameter set),
    /// decompresses it and caches it under its id (sha256 of the bytes). Returns the id.
    pub fn install_key(&mut self, bytes: &[u8]) -> Result<([u8; 32], Arc<ServerKey>), FheError> {
        let id = wire::key_id(bytes);
        if let Some(k) = self.keys.get(&id) {
            return Ok((id, k));
        }
        let compressed: CompressedServerKey = wire::decode_server_key(bytes, self.head.params)?;
        let key = Arc::new(wire::no_panic("server key", || Ok(compressed.decompress()))?);
        self.keys.insert(id, key.clone());
        Ok((id, key))
    }

    /// Checks a request and installs its server key (if it carries one). Returns the key.
    fn key_for(&mut self, req: &WireRequest) -> Result<Arc<ServerKey>, FheError> {
        match &req.server_key {
            Some(bytes) => {
                if wire::key_id(bytes) != req.key_id {
                    return Err(FheError::KeyMismatch("key id is not the sha256 of the key".into()));
                }
                Ok(self.install_key(bytes)?.1)
            }
            None => self.keys.get(&req.key_id).ok_or(FheError::UnknownKey(hex(&req.key_id))),
        }
    }

    /// Serves one request: validates it, evaluates the head, returns the encrypted logits.
    pub fn serve(&mut self, req: &WireRequest) -> Result<(WireResponse, EvalTimings), FheError> {
        let (resp, out) = self.serve_with_output(req)?;
        Ok((resp, out.timings))
    }

    /// [`Self::serve`], also returning the full evaluation (the encrypted hidden activations,
    /// which tests and the bench decrypt with the client key to check every bootstrap; a miner
    /// never sends them, and cannot read them).
    pub fn serve_with_output(&mut self, req: &WireRequest) -> Result<(WireResponse, EncryptedOutput), FheError> {
        if req.version != WIRE_VERSION {
            return Err(FheError::Wire(format!("version {} (expected {WIRE_VERSION})", req.version)));
        }
        if req.params != self.head.params.name() {
            return Err(FheError::UnknownParams(req.params.clone()));
        }
        if req.head_id != self.head.head_id() {
            return Err(FheError::WrongHead { expected: self.head.head_id().to_string(), got: req.head_id.clone() });
        }
        let t = std::time::Instant::now();
        let inputs = wire::decode_inputs(req, self.head.params, self.head.head.spec.input_dim)?;
        let sks = self.key_for(req)?;
        let decompress = t.elapsed().as_secs_f64();
        let mut out = self.head.eval(&sks, &inputs)?;
        out.timings.decompress_inputs_s = decompress;
        let resp = wire::encode_logits(&out.logits, req, self.head.head.spec.logit_delta_log2, self.head.params)?;
        Ok((resp, out))
    }

    /// The byte-level entry point the transport calls.
    pub fn serve_bytes(&mut self, request: &[u8]) -> Result<Vec<u8>, FheError> {
        let req = WireRequest::from_bytes(request)?;
        let (resp, _) = self.serve(&req)?;
        resp.to_bytes()
    }
}

/// Measured noise of the stock parameter set on this machine (for the docs and the margin
/// checks): standard deviation of a KS-PBS output (log2, on the 2^64 torus) and of the
/// position read by the blind rotation (in positions).
#[derive(Clone, Debug, Serialize)]
pub struct NoiseMeasurement {
    pub params: String,
    pub samples: usize,
    pub pbs_output_log2_std: f64,
    pub position_std: f64,
    pub position_errors_max: i64,
    pub seconds_per_pbs_wall: f64,
}

/// Measures PBS output noise and modulus-switch position noise with `samples` bootstraps.
pub fn measure_pbs_noise(
    cks: &tfhe::shortint::ClientKey,
    sks: &ServerKey,
    params: FheParams,
    samples: usize,
) -> Result<NoiseMeasurement, FheError> {
    let n = params.polynomial_size();
    let log_n = params.log2_polynomial_size();
    let (key, noise) = cks.encryption_key_and_noise();
    let modulus = CiphertextModulus::new_native();
    let mut lut = sks.generate_lookup_table(|x| x);
    // acc[p] = p · 2^(63 − log2 N): the output tells which position was read
    let unit = 1u64 << (63 - log_n);
    for (p, c) in lut.acc.get_mut_body().as_mut().iter_mut().enumerate() {
        *c = (p as u64).wrapping_mul(unit);
    }
    let mut seeder = new_seeder();
    let mut gen = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder.as_mut());
    let inputs: Vec<(usize, LweCiphertextOwned<u64>)> = (0..samples)
        .map(|s| {
            // a position centre in the middle half of the window
            let p = n / 4 + (s * 7919) % (n / 2);
            let pt = Plaintext((p as u64).wrapping_mul(unit));
            (p, allocate_and_encrypt_new_lwe_ciphertext(&key, pt, noise, modulus, &mut gen))
        })
        .collect();
    let kind = sks.atomic_pattern.kind();
    let t = std::time::Instant::now();
    let outs: Vec<(usize, LweCiphertextOwned<u64>)> = inputs
        .into_par_iter()
        .map(|(p, ct)| {
            let c = Ciphertext::new(
                ct,
                Degree::new(sks.message_modulus.0 * sks.carry_modulus.0 - 1),
                NoiseLevel::NOMINAL,
                sks.message_modulus,
                sks.carry_modulus,
                kind,
            );
            (p, sks.apply_lookup_table(&c, &lut).ct)
        })
        .collect();
    let wall = t.elapsed().as_secs_f64() / samples.max(1) as f64;
    let mut out_sq = 0f64;
    let mut pos_sq = 0f64;
    let mut pos_max = 0i64;
    for (p, ct) in &outs {
        let dec = decrypt_lwe_ciphertext(&key, ct).0;
        let read = ((dec.wrapping_add(unit / 2)) / unit) as i64; // nearest position
        let err = dec.wrapping_sub((read as u64).wrapping_mul(unit)) as i64;
        out_sq += (err as f64).powi(2);
        let dp = read - *p as i64;
        pos_sq += (dp as f64).powi(2);
        pos_max = pos_max.max(dp.abs());
    }
    let k = outs.len().max(1) as f64;
    Ok(NoiseMeasurement {
        params: params.name().to_string(),
        samples,
        pbs_output_log2_std: (out_sq / k).sqrt().log2(),
        position_std: (pos_sq / k).sqrt(),
        position_errors_max: pos_max,
        seconds_per_pbs_wall: wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_head() -> QuantizedHead {
        let params = FheParams::M2C2TUniform; // N = 2048
        let (d, h) = (3usize, 2usize);
        QuantizedHead {
            spec: HeadSpec {
                format_version: 1,
                params: params.name().into(),
                input_dim: d,
                hidden: h,
                classes: vec!["a".into(), "b".into()],
                quantizer: DynamicQuantizer::default(),
                act_levels: 4,
                window_log2: 13, // g = 2^(13 − 11) = 4
                logit_delta_log2: 50,
                w2_max: 7,
                notes: serde_json::Value::Null,
            },
            w1: vec![1, 2, 3, -1, 0, 1],
            offset: vec![0, 100],
            // neuron 0 steps up at positions 1024, 1030, 1040; neuron 1 never
            thresholds: vec![1024, 1030, 1040, 5000, 5000, 5000],
            w2: vec![1, -1, 7, 0],
            b2: vec![0, -3],
        }
    }

    #[test]
    fn positions_follow_the_window_encoding_and_overflow_is_flagged() {
        let head = tiny_head();
        // p = round((z + o) / 4) + 1024
        assert_eq!(head.position(0, 0).expect("params"), Some(1024));
        assert_eq!(head.position(0, 1).expect("params"), Some(1024));
        assert_eq!(head.position(0, 2).expect("params"), Some(1025)); // half rounds up
        assert_eq!(head.position(0, -4096).expect("params"), Some(0));
        assert_eq!(head.position(0, 4094).expect("params"), None); // would wrap
        assert_eq!(head.position(1, -100).expect("params"), Some(1024));
    }

    #[test]
    fn reference_applies_both_layers_in_integers() {
        let head = tiny_head();
        let r = head.reference(&[10, 5, 2]).expect("reference");
        assert_eq!(r.z, vec![26, -8]);
        // neuron 0: p = round(26/4) + 1024 = 1031 → two thresholds passed; neuron 1: p = 1047 → 0
        assert_eq!(r.hidden, vec![2, 0]);
        assert_eq!(r.logits, vec![2, 14 - 3]);
        assert!(head.reference(&[1, 2]).is_err());
    }

    #[test]
    fn save_and_load_round_trip_keeps_weights_and_id() {
        let head = tiny_head();
        let dir = std::env::temp_dir().join(format!("bm-fhe-head-{}", std::process::id()));
        head.save(&dir).expect("save");
        let back = QuantizedHead::load(&dir).expect("load");
        assert_eq!(back.w1, head.w1);
        assert_eq!(back.thresholds, head.thresholds);
        assert_eq!(back.head_id(), head.head_id());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_rejects_inconsistent_heads() {
        let mut head = tiny_head();
        head.w1.pop();
        assert!(matches!(head.validate(), Err(FheError::InvalidHead(_))));
        let mut head = tiny_head();
        head.spec.params = "homemade".into();
        assert!(matches!(head.validate(), Err(FheError::UnknownParams(_))));
        let mut head = tiny_head();
        head.spec.window_log2 = 5; // narrower than N
        assert!(head.validate().is_err());
        let mut head = tiny_head();
        head.w2[0] = 9;
        assert!(head.validate().is_err());
    }
}
