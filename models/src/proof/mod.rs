//! Proof of inference (TOPLOC, arXiv 2501.16007; DESIGN.md §4).
//!
//! While generating, a miner keeps the last hidden state (after the final norm, bf16) of the
//! prefill and of every decode step. The prefill is one chunk; decode steps are grouped by
//! [`ProofConfig::decode_batch`] (32). Each chunk is committed to by its top-k (128) entries
//! by magnitude, encoded as a polynomial ([`toploc`]: 258 bytes, the byte format of the
//! reference `toploc` 0.1.6 package). A validator re-runs ONE forward pass over prompt +
//! output, recomputes the chunks' top-k, evaluates each committed polynomial at the recomputed
//! indices and compares the bf16 exponents and mantissas within a [`Tolerance`]. It also
//! replays the sampler on the recomputed logits ([`crate::generate::plausible_token`]).
//!
//! What this proves, and what it does not: that the hidden states the miner committed to are,
//! within tolerance, those the declared weights produce on this prompt and output, and that each
//! output token is what the declared sampler (temperature, top-k/top-p, seed) would pick from
//! them. It does not prove anything about tasks that are not re-checked (validators sample a
//! fraction), it is not a zero-knowledge or cryptographic proof of computation (a miner holding
//! the right weights could compute the proof afterwards — that costs it the full computation
//! anyway), and the tolerances admit numerically close models (a near-identical fine-tune or a
//! very light quantization of the same weights may pass).

pub mod toploc;

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::generate::{constrain, plausible_token, GenerateConfig, History, Rng};
use crate::grammar::Matcher;
use crate::model::Model;
pub use toploc::{PolyError, ProofPoly};

/// How proofs are cut: TOPLOC's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProofConfig {
    /// Entries of each chunk committed to.
    pub topk: usize,
    /// Decode steps per chunk after the prefill chunk.
    pub decode_batch: usize,
}

impl Default for ProofConfig {
    fn default() -> Self {
        ProofConfig { topk: 128, decode_batch: 32 }
    }
}

/// One chunk's comparison, in toploc's terms: how many of the top-k exponents differ, and the
/// mean and median |mantissa difference| (in bf16 ulps) over those whose exponents agree.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerificationResult {
    pub exp_mismatches: u32,
    pub mant_err_mean: f64,
    pub mant_err_median: f64,
}

/// Acceptance thresholds per chunk (errors are bad: a chunk passes when each is at most its
/// limit). Calibrated per model and precision; see `docs/proof-of-inference.md`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tolerance {
    pub max_exp_mismatches: u32,
    pub max_mant_err_mean: f64,
    pub max_mant_err_median: f64,
    /// Greedy: the chosen token's logit may trail the largest by this much.
    pub greedy_logit_slack: f64,
    /// Sampling: the replayed draw may miss the token's interval by this probability mass.
    pub sample_slack: f64,
    /// Output tokens that may fail the sampler replay before the task fails (0: near-ties are
    /// already absorbed by the slacks above; 1 would let an edit of the last token through).
    pub max_implausible_tokens: u32,
}

impl Default for Tolerance {
    /// TOPLOC's published thresholds (≥ 90 of 128 exponents match, mantissa error mean ≤ 10,
    /// median ≤ 8) and the sampler replay's slacks for numerical near-ties.
    fn default() -> Self {
        Tolerance {
            max_exp_mismatches: 38,
            max_mant_err_mean: 10.0,
            max_mant_err_median: 8.0,
            greedy_logit_slack: 0.05,
            sample_slack: 1e-3,
            max_implausible_tokens: 0,
        }
    }
}

impl Tolerance {
    pub fn accepts(&self, r: &VerificationResult) -> bool {
        r.exp_mismatches <= self.max_exp_mismatches
            && r.mant_err_mean <= self.max_mant_err_mean
            && r.mant_err_median <= self.max_mant_err_median
    }
}

/// The flattened chunks of `acts` (prefill `[P, H]`, then `[1, H]` per decode step): the
/// prefill alone, then `decode_batch` steps at a time (toploc's `batch_activations`).
pub fn chunks(acts: &[Tensor], decode_batch: usize) -> Result<Vec<Tensor>> {
    let Some((first, rest)) = acts.split_first() else { return Ok(Vec::new()) };
    let mut out = vec![first.f_reshape([-1])?];
    for group in rest.chunks(decode_batch.max(1)) {
        let flat: Vec<Tensor> = group.iter().map(|t| t.f_reshape([-1])).collect::<std::result::Result<_, _>>()?;
        out.push(Tensor::f_cat(&flat, 0)?);
    }
    Ok(out)
}

/// Flat indices and bf16 bit patterns of the `k` largest-magnitude entries (LibTorch's `topk`,
/// the same call toploc makes, so ties break the same way).
fn top_k(chunk: &Tensor, k: usize) -> Result<(Vec<u64>, Vec<u16>)> {
    let chunk = chunk.f_to_kind(Kind::BFloat16)?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let n = chunk.numel();
    if k == 0 || k > n {
        return Err(ModelError::InvalidArgument(format!("top-{k} of a chunk of {n} values")));
    }
    let (_, idx) = chunk.f_abs()?.f_topk(k as i64, 0, true, true)?;
    let values = chunk.f_index_select(0, &idx)?.f_view_dtype(Kind::Int16)?;
    let idx = Vec::<i64>::try_from(&idx)?;
    let bits = Vec::<i16>::try_from(&values)?;
    Ok((idx.into_iter().map(|i| i as u64).collect(), bits.into_iter().map(|b| b as u16).collect()))
}

/// The proofs of one generation's activations (toploc's `build_proofs`).
pub fn build_proofs(acts: &[Tensor], cfg: &ProofConfig) -> Result<Vec<ProofPoly>> {
    let _guard = tch::no_grad_guard();
    chunks(acts, cfg.decode_batch)?
        .iter()
        .map(|c| {
            let (idx, bits) = top_k(c, cfg.topk)?;
            ProofPoly::from_points(&idx, &bits).map_err(|e| ModelError::InvalidArgument(e.to_string()))
        })
        .collect()
}

/// Compares recomputed activations with committed proofs, chunk by chunk (toploc's C verifier:
/// indices reduced by each proof's modulus, median = the upper middle element).
pub fn verify_proofs(acts: &[Tensor], proofs: &[ProofPoly], cfg: &ProofConfig) -> Result<Vec<VerificationResult>> {
    let _guard = tch::no_grad_guard();
    let chunks = chunks(acts, cfg.decode_batch)?;
    if chunks.len() != proofs.len() {
        return Err(ModelError::InvalidArgument(format!("{} proofs for {} chunks", proofs.len(), chunks.len())));
    }
    chunks
        .iter()
        .zip(proofs)
        .map(|(c, p)| {
            let (idx, bits) = top_k(c, cfg.topk)?;
            Ok(compare(p, &idx, &bits))
        })
        .collect()
}

fn compare(p: &ProofPoly, idx: &[u64], bits: &[u16]) -> VerificationResult {
    let mut exp_mismatches = 0u32;
    let mut errs: Vec<f64> = Vec::with_capacity(idx.len());
    for (&i, &b) in idx.iter().zip(bits) {
        let (pe, pm) = toploc::bf16_parts(p.eval_index(i));
        let (e, m) = toploc::bf16_parts(b);
        if pe != e {
            exp_mismatches += 1;
        } else {
            errs.push((pm - m).abs() as f64);
        }
    }
    if errs.is_empty() {
        let worst = 2f64.powi(64);
        return VerificationResult { exp_mismatches, mant_err_mean: worst, mant_err_median: worst };
    }
    let mean = errs.iter().sum::<f64>() / errs.len() as f64;
    errs.sort_by(f64::total_cmp);
    VerificationResult { exp_mismatches, mant_err_mean: mean, mant_err_median: errs[errs.len() / 2] }
}

/// Proofs in toploc's wire format, concatenated with a u16 length before each.
pub fn encode_proofs(proofs: &[ProofPoly]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in proofs {
        let b = p.to_bytes();
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    out
}

pub fn decode_proofs(mut b: &[u8]) -> std::result::Result<Vec<ProofPoly>, PolyError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 2 {
            return Err(PolyError::Malformed("truncated length"));
        }
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        let body = b.get(2..2 + n).ok_or(PolyError::Malformed("truncated proof"))?;
        out.push(ProofPoly::from_bytes(body)?);
        b = &b[2 + n..];
    }
    Ok(out)
}

/// The digest a receipt signs: binds the proofs to the task's nonce and the model's hash, so a
/// proof cannot be replayed for another task or claimed for another model.
pub fn proof_digest(nonce: &[u8], model_hash: &str, proofs: &[ProofPoly]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"brainmesh/proof-of-inference/v1");
    for part in [nonce, model_hash.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(encode_proofs(proofs));
    h.finalize().into()
}

/// What a validator found when re-checking one task.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    pub chunks: Vec<VerificationResult>,
    /// Chunks outside the tolerance.
    pub failed_chunks: u32,
    pub tokens_checked: u32,
    /// Output tokens the sampler replay would not pick.
    pub implausible_tokens: u32,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reason: String,
}

/// Re-checks a generation: one forward pass over `prompt` + `output` (all but the last output
/// token, which was never fed back), fingerprints against `proofs`, and the sampler replay of
/// every output token under `sampling`. Errors only on bad input (an empty or over-long
/// transcript); a transcript that does not match gives a failed report.
pub fn check(
    model: &Model,
    prompt: &[u32],
    output: &[u32],
    proofs: &[ProofPoly],
    sampling: &GenerateConfig,
    cfg: &ProofConfig,
    tol: &Tolerance,
) -> Result<CheckReport> {
    let fail = |chunks: Vec<VerificationResult>, reason: String| CheckReport {
        failed_chunks: chunks.len() as u32,
        chunks,
        tokens_checked: 0,
        implausible_tokens: 0,
        passed: false,
        reason,
    };
    if output.is_empty() {
        return Ok(fail(Vec::new(), "no output tokens".into()));
    }
    let expected = 1 + (output.len() - 1).div_ceil(cfg.decode_batch.max(1));
    if proofs.len() != expected {
        return Ok(fail(
            Vec::new(),
            format!("{} proofs for {} output tokens (expected {expected})", proofs.len(), output.len()),
        ));
    }
    let mut ids = prompt.to_vec();
    ids.extend_from_slice(&output[..output.len() - 1]);
    let (hidden, logits) = model.hidden_and_logits(&ids, prompt.len() - 1)?;
    let p = prompt.len() as i64;
    let mut acts = vec![hidden.f_narrow(0, 0, p)?];
    for i in 0..(output.len() as i64 - 1) {
        acts.push(hidden.f_narrow(0, p + i, 1)?);
    }
    let chunks = verify_proofs(&acts, proofs, cfg)?;
    let failed_chunks = chunks.iter().filter(|r| !tol.accepts(r)).count() as u32;

    // Sampler replay: logits row i (position P-1+i) predicts output token i.
    let vocab = model.net.vocab_size() as i64;
    let mut rng = Rng::new(sampling.seed);
    let mut history: Vec<u32> = prompt.to_vec();
    let mut implausible = 0u32;
    // Structured outputs: the same grammar mask the miner applied, step by step.
    let table = if sampling.grammar.is_some() { model.tokenizer.token_table() } else { Default::default() };
    let mut matcher = sampling.grammar.as_deref().map(Matcher::new);
    let stop_ids = &model.tokenizer.stop_ids;
    for (i, &tok) in output.iter().enumerate() {
        let row = logits.f_get(i as i64)?.f_narrow(0, 0, vocab.min(logits.size()[1]))?;
        let mut row = Vec::<f32>::try_from(&row.f_contiguous()?)?;
        if let Some(m) = &matcher {
            constrain(m, &table, stop_ids, &mut row);
        }
        let slack = if sampling.temperature == 0.0 { tol.greedy_logit_slack } else { tol.sample_slack };
        let hist = History::new(&history, prompt.len().saturating_sub(sampling.prior_output));
        if !plausible_token(&mut row, hist, sampling, &mut rng, tok, slack) {
            implausible += 1;
        }
        if let Some(m) = matcher.as_mut() {
            if !stop_ids.contains(&tok) {
                m.feed_all(table.bytes(tok));
            }
        }
        history.push(tok);
    }
    let mut reasons = Vec::new();
    if failed_chunks > 0 {
        reasons.push(format!("{failed_chunks} of {} fingerprint chunks outside tolerance", chunks.len()));
    }
    if implausible > tol.max_implausible_tokens {
        reasons.push(format!("{implausible} of {} output tokens are not what the sampler would pick", output.len()));
    }
    Ok(CheckReport {
        passed: reasons.is_empty(),
        reason: reasons.join("; "),
        chunks,
        failed_chunks,
        tokens_checked: output.len() as u32,
        implausible_tokens: implausible,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts(seed: i64, prefill: i64, steps: usize) -> Vec<Tensor> {
        tch::manual_seed(seed);
        let mut v = vec![Tensor::randn([prefill, 256], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16)];
        for _ in 0..steps {
            v.push(Tensor::randn([1, 256], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16));
        }
        v
    }

    #[test]
    fn chunks_are_the_prefill_then_groups_of_decode_steps() {
        let a = acts(1, 5, 70);
        let c = chunks(&a, 32).unwrap();
        assert_eq!(c.iter().map(|t| t.numel()).collect::<Vec<_>>(), vec![5 * 256, 32 * 256, 32 * 256, 6 * 256]);
    }

    #[test]
    fn proofs_of_the_same_activations_verify_exactly() {
        let a = acts(2, 7, 40);
        let cfg = ProofConfig { topk: 16, decode_batch: 32 };
        let p = build_proofs(&a, &cfg).unwrap();
        assert_eq!(p.len(), 3);
        for r in verify_proofs(&a, &p, &cfg).unwrap() {
            assert_eq!(r, VerificationResult { exp_mismatches: 0, mant_err_mean: 0.0, mant_err_median: 0.0 });
        }
    }

    #[test]
    fn other_activations_fail_the_tolerance() {
        let cfg = ProofConfig::default();
        let p = build_proofs(&acts(3, 7, 40), &cfg).unwrap();
        let r = verify_proofs(&acts(4, 7, 40), &p, &cfg).unwrap();
        assert!(r.iter().all(|r| !Tolerance::default().accepts(r)), "{r:?}");
    }

    #[test]
    fn small_noise_stays_within_the_tolerance() {
        let cfg = ProofConfig::default();
        let a = acts(5, 7, 40);
        let p = build_proofs(&a, &cfg).unwrap();
        let noisy: Vec<Tensor> = a.iter().map(|t| (t.to_kind(Kind::Float) * 1.001).to_kind(Kind::BFloat16)).collect();
        let r = verify_proofs(&noisy, &p, &cfg).unwrap();
        assert!(r.iter().all(|r| Tolerance::default().accepts(r)), "{r:?}");
    }

    #[test]
    fn a_wrong_proof_count_is_an_error() {
        let cfg = ProofConfig { topk: 16, decode_batch: 32 };
        let a = acts(6, 7, 40);
        let p = build_proofs(&a, &cfg).unwrap();
        assert!(verify_proofs(&a, &p[..2], &cfg).is_err());
    }

    #[test]
    fn encoded_proofs_round_trip_and_truncation_is_refused() {
        let cfg = ProofConfig::default();
        let p = build_proofs(&acts(7, 4, 32), &cfg).unwrap();
        let b = encode_proofs(&p);
        assert_eq!(b.len(), p.len() * 260);
        assert_eq!(p.len(), 2);
        assert_eq!(decode_proofs(&b).unwrap(), p);
        assert!(decode_proofs(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn the_digest_binds_nonce_model_and_proofs() {
        let cfg = ProofConfig { topk: 16, decode_batch: 32 };
        let p = build_proofs(&acts(8, 4, 3), &cfg).unwrap();
        let d = proof_digest(b"nonce-1", "abc", &p);
        assert_ne!(d, proof_digest(b"nonce-2", "abc", &p));
        assert_ne!(d, proof_digest(b"nonce-1", "abd", &p));
        assert_ne!(d, proof_digest(b"nonce-1", "abc", &p[..1]));
        assert_eq!(d, proof_digest(b"nonce-1", "abc", &p));
    }
}
