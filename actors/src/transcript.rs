//! Transcripts: what a miner keeps of each task so a validator can re-check it, the digests a
//! receipt signs to bind them, the sled store (recent blocks only).
//! The `/brainmesh/audit/1` wire messages live in `crate::protocols::audit`.
//!
//! A receipt carries two digests: `io_digest` over the task's nonce, prompt (as the gateway
//! sealed it), resumed tokens and this attempt's output tokens — the gateway recomputes it from
//! what it sent and received before countersigning, so the miner cannot later show a validator
//! another prompt or output — and `proof_digest` over the nonce, the declared model hash and the
//! TOPLOC proofs. A transcript that matches both is the miner's signed claim about the task.

use brainmesh_ledger::canon::Enc;
use brainmesh_ledger::BrainId;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::receipt::{verify_sig, Receipt};
use crate::task::{Prompt, Sampling};

/// Sampling as the miner actually ran it (seed filled in), so the sampler can be replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSampling {
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub seed: u64,
    pub repetition_penalty: f32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency_penalty: f32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub presence_penalty: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logit_bias: Vec<(u32, f32)>,
    /// Structured outputs: the grammar the output was constrained to (replayed as a mask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<brainmesh_models::grammar::ResponseFormat>,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl RunSampling {
    pub fn from_request(s: &Sampling) -> Self {
        RunSampling {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            seed: s.seed.unwrap_or(0),
            repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
            frequency_penalty: s.frequency_penalty.unwrap_or(0.0),
            presence_penalty: s.presence_penalty.unwrap_or(0.0),
            logit_bias: s.logit_bias.clone(),
            response_format: s.response_format.clone(),
        }
    }

    /// The sampler to replay for `max_new_tokens` output tokens after `resumed` tokens of an
    /// earlier attempt (stop sequences need not be replayed: the output is given). Fails only on
    /// a response format whose schema does not compile.
    pub fn generate_config(
        &self,
        max_new_tokens: usize,
        resumed: usize,
    ) -> Result<brainmesh_models::GenerateConfig, brainmesh_models::grammar::GrammarError> {
        let grammar = self.response_format.as_ref().map(|f| f.compile()).transpose()?.map(std::sync::Arc::new);
        Ok(brainmesh_models::GenerateConfig {
            max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k.map(|k| k as usize),
            top_p: self.top_p,
            seed: self.seed,
            repetition_penalty: self.repetition_penalty,
            stop: Vec::new(),
            ignore_eos: false,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            logit_bias: self.logit_bias.clone(),
            prior_output: resumed,
            logprobs: None,
            grammar,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub task_id: String,
    pub attempt: u32,
    pub brain: BrainId,
    pub model: String,
    pub model_hash: String,
    pub miner: String,
    /// Hex; chosen by the gateway for this attempt.
    pub nonce: String,
    pub prompt: Prompt,
    pub resume_tokens: Vec<u32>,
    /// Output tokens of this attempt.
    pub output: Vec<u32>,
    pub sampling: RunSampling,
    pub proof_topk: u32,
    pub proof_decode_batch: u32,
    /// Hex of the proofs (`brainmesh_models::proof::encode_proofs`).
    pub proofs: String,
    pub block_height: u64,
}

/// `miner_sig` is the miner's signature over `body` (the transcript's JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTranscript {
    pub body: String,
    pub miner_sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    #[error("transcript is not well formed")]
    Malformed,
    #[error("the miner's signature over the transcript does not verify")]
    BadSignature,
    #[error("transcript does not match the receipt: {0}")]
    Mismatch(&'static str),
}

fn tokens_bytes(t: &[u32]) -> Vec<u8> {
    t.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// Hex sha256 binding the nonce, the prompt as sealed, the resumed tokens and the output, in
/// the one canonical encoding ([`Enc`]; v2: v1 hashed little-endian u64 length prefixes).
pub fn io_digest(nonce: &str, prompt: &Prompt, resume: &[u32], output: &[u32]) -> String {
    let mut e = Enc::new("brainmesh/task-io/v2");
    e.str(nonce)
        .bytes(&serde_json::to_vec(prompt).unwrap_or_default())
        .bytes(&tokens_bytes(resume))
        .bytes(&tokens_bytes(output));
    hex::encode(e.digest())
}

impl Transcript {
    pub fn sign(&self, miner: &Identity) -> SignedTranscript {
        let body = serde_json::to_string(self).unwrap_or_default();
        let miner_sig = hex::encode(miner.sign(body.as_bytes()));
        SignedTranscript { body, miner_sig }
    }

    pub fn proofs(&self) -> Result<Vec<brainmesh_models::proof::ProofPoly>, TranscriptError> {
        let b = hex::decode(&self.proofs).map_err(|_| TranscriptError::Malformed)?;
        brainmesh_models::proof::decode_proofs(&b).map_err(|_| TranscriptError::Malformed)
    }
}

impl SignedTranscript {
    /// The transcript, if the miner it names signed it.
    pub fn open(&self) -> Result<Transcript, TranscriptError> {
        let t: Transcript = serde_json::from_str(&self.body).map_err(|_| TranscriptError::Malformed)?;
        if !verify_sig(&t.miner, self.body.as_bytes(), &self.miner_sig) {
            return Err(TranscriptError::BadSignature);
        }
        Ok(t)
    }

    /// Opens the transcript and checks that it is the one `receipt` commits to.
    pub fn matching(&self, receipt: &Receipt) -> Result<Transcript, TranscriptError> {
        let t = self.open()?;
        let m = TranscriptError::Mismatch;
        if t.task_id != receipt.task_id || t.miner != receipt.miner || t.brain != receipt.brain {
            return Err(m("task, miner or Brain"));
        }
        if t.model != receipt.model || t.model_hash != receipt.model_hash {
            return Err(m("model"));
        }
        if t.output.len() as u32 != receipt.completion_tokens {
            return Err(m("completion tokens"));
        }
        if io_digest(&t.nonce, &t.prompt, &t.resume_tokens, &t.output) != receipt.io_digest {
            return Err(m("prompt or output (io digest)"));
        }
        let nonce = hex::decode(&t.nonce).map_err(|_| TranscriptError::Malformed)?;
        let proofs = t.proofs()?;
        if hex::encode(brainmesh_models::proof::proof_digest(&nonce, &t.model_hash, &proofs)) != receipt.proof_digest {
            return Err(m("proofs (proof digest)"));
        }
        Ok(t)
    }
}

/// The miner's recent transcripts, in sled: `transcripts` keyed by task id, and an index
/// keyed by (block height, task id) so old ones are dropped after `keep_blocks`.
#[derive(Clone)]
pub struct TranscriptStore {
    by_task: sled::Tree,
    by_height: sled::Tree,
    keep_blocks: u64,
}

impl TranscriptStore {
    pub fn open(db: &sled::Db, keep_blocks: u64) -> Result<Self, sled::Error> {
        Ok(Self {
            by_task: db.open_tree("transcripts")?,
            by_height: db.open_tree("transcripts_by_height")?,
            keep_blocks,
        })
    }

    pub fn insert(&self, task_id: &str, height: u64, t: &SignedTranscript) -> Result<(), sled::Error> {
        let bytes = serde_json::to_vec(t).unwrap_or_default();
        let mut k = height.to_be_bytes().to_vec();
        k.extend_from_slice(task_id.as_bytes());
        self.by_task.insert(task_id.as_bytes(), bytes)?;
        self.by_height.insert(k, task_id.as_bytes())?;
        self.prune(height)?;
        self.by_task.flush()?;
        Ok(())
    }

    /// Drops transcripts older than `keep_blocks` before `height`.
    pub fn prune(&self, height: u64) -> Result<usize, sled::Error> {
        let cutoff = height.saturating_sub(self.keep_blocks);
        let mut n = 0;
        for kv in self.by_height.range(..cutoff.to_be_bytes().to_vec()) {
            let (k, task) = kv?;
            self.by_task.remove(&task)?;
            self.by_height.remove(k)?;
            n += 1;
        }
        Ok(n)
    }

    pub fn get(&self, task_id: &str) -> Option<SignedTranscript> {
        let v = self.by_task.get(task_id.as_bytes()).ok()??;
        serde_json::from_slice(&v).ok()
    }

    pub fn len(&self) -> usize {
        self.by_task.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_task.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::audit::{serve, AuditReply, AuditRequest};
    use crate::receipt::Receipt;

    fn transcript(miner: &Identity) -> Transcript {
        Transcript {
            task_id: "t1".into(),
            attempt: 1,
            brain: 1,
            model: "m".into(),
            model_hash: "ab".into(),
            miner: miner.peer_id().to_string(),
            nonce: hex::encode([7u8; 16]),
            prompt: Prompt::Text("hello".into()),
            resume_tokens: vec![],
            output: vec![1, 2, 3],
            sampling: RunSampling::from_request(&Sampling::default()),
            proof_topk: 128,
            proof_decode_batch: 32,
            proofs: String::new(),
            block_height: 10,
        }
    }

    fn receipt_for(t: &Transcript) -> Receipt {
        Receipt {
            task_id: t.task_id.clone(),
            brain: t.brain,
            model: t.model.clone(),
            model_hash: t.model_hash.clone(),
            miner: t.miner.clone(),
            gateway: String::new(),
            account: String::new(),
            prompt_tokens: 1,
            completion_tokens: t.output.len() as u32,
            compute_units: 4,
            block_height: t.block_height,
            proof_digest: hex::encode(brainmesh_models::proof::proof_digest(&[7u8; 16], &t.model_hash, &[])),
            io_digest: io_digest(&t.nonce, &t.prompt, &t.resume_tokens, &t.output),
            started_ms: 0,
            finished_ms: 0,
        }
    }

    #[test]
    fn a_signed_transcript_matches_its_receipt() {
        let id = Identity::generate();
        let t = transcript(&id);
        let r = receipt_for(&t);
        assert_eq!(t.sign(&id).matching(&r).unwrap(), t);
    }

    #[test]
    fn edited_output_another_nonce_or_a_forged_signature_do_not_match() {
        let id = Identity::generate();
        let t = transcript(&id);
        let r = receipt_for(&t);
        let mut edited = t.clone();
        edited.output[1] = 9;
        assert_eq!(edited.sign(&id).matching(&r), Err(TranscriptError::Mismatch("prompt or output (io digest)")));
        let mut replay = t.clone();
        replay.nonce = hex::encode([8u8; 16]);
        assert!(replay.sign(&id).matching(&r).is_err());
        let other = Identity::generate();
        let mut forged = t.sign(&other);
        forged.body = serde_json::to_string(&t).unwrap();
        assert_eq!(forged.open(), Err(TranscriptError::BadSignature));
    }

    #[test]
    fn the_store_serves_recent_transcripts_and_drops_old_ones() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let s = TranscriptStore::open(&db, 100).unwrap();
        let id = Identity::generate();
        let st = transcript(&id).sign(&id);
        s.insert("old", 5, &st).unwrap();
        s.insert("new", 150, &st).unwrap();
        assert!(s.get("old").is_none(), "older than 100 blocks");
        assert!(s.get("new").is_some());
        let req = serde_json::to_vec(&AuditRequest::Transcript { task_id: "new".into() }).unwrap();
        assert!(matches!(serve(Some(&s), None, &req), AuditReply::Transcript { .. }));
        let req = serde_json::to_vec(&AuditRequest::Transcript { task_id: "nope".into() }).unwrap();
        assert_eq!(serve(Some(&s), None, &req), AuditReply::NotFound);
        assert!(matches!(serve(Some(&s), None, b"{garbage"), AuditReply::Error { .. }));
        assert_eq!(serve(None, None, &req), AuditReply::NotFound);
    }
}
