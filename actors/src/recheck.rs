//! A validator's re-check of one task, and the evidence a failed one yields.
//!
//! [`recheck`] takes the countersigned receipt (from gossip) and the miner's signed transcript
//! (fetched over `/brainmesh/audit/1`): the transcript must be the one the receipt commits to,
//! its prompt must tokenize to the receipt's prompt tokens under the validator's copy of the
//! declared model, and `brainmesh_models::proof::check` must pass. Anything else is a failure
//! with a reason. [`Evidence`] bundles receipt, transcript and the report; any validator holding
//! the model re-runs [`recheck`] on it and reaches the same verdict without trusting the first.

use serde::{Deserialize, Serialize};

use brainmesh_models::proof::{self, CheckReport, ProofConfig, Tolerance};
use brainmesh_models::Model;

use crate::receipt::{Receipt, SignedReceipt};
use crate::task::Prompt;
use crate::transcript::SignedTranscript;

/// The prompt as the miner renders it before tokenizing: the model's chat template (an error
/// when the template refuses the conversation) or the raw text.
pub fn render_prompt(model: &Model, prompt: &Prompt) -> Result<String, brainmesh_models::ModelError> {
    match prompt {
        Prompt::Chat(msgs) => {
            let msgs: Vec<brainmesh_models::ChatMessage> =
                msgs.iter().map(|m| brainmesh_models::ChatMessage::new(m.role.clone(), m.content.clone())).collect();
            model.tokenizer.chat_template.render(&msgs)
        }
        Prompt::Text(t) => Ok(t.clone()),
        Prompt::Embed { .. } => Err(brainmesh_models::ModelError::InvalidArgument(
            "an embedding task has no prompt to generate from".into(),
        )),
    }
}

/// The verdict on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    pub reason: String,
    /// The fingerprint and sampler report, when the transcript got that far.
    pub report: Option<CheckReport>,
}

impl Verdict {
    fn fail(reason: impl Into<String>) -> Self {
        Verdict { passed: false, reason: reason.into(), report: None }
    }
}

/// Re-checks a task. `Err` only when the validator itself cannot (its model cannot run the
/// input); every fault of the miner's making is a failed [`Verdict`].
pub fn recheck(
    model: &Model,
    model_hash: &str,
    receipt: &Receipt,
    transcript: &SignedTranscript,
    tol: &Tolerance,
) -> Result<Verdict, brainmesh_models::ModelError> {
    if receipt.model_hash != model_hash {
        return Ok(Verdict::fail("the receipt names another model"));
    }
    let t = match transcript.matching(receipt) {
        Ok(t) => t,
        Err(e) => return Ok(Verdict::fail(e.to_string())),
    };
    let pc = ProofConfig::default();
    if t.proof_topk as usize != pc.topk || t.proof_decode_batch as usize != pc.decode_batch {
        return Ok(Verdict::fail("proofs cut with other parameters than the network's"));
    }
    let Ok(proofs) = t.proofs() else { return Ok(Verdict::fail("malformed proofs")) };
    let text = match render_prompt(model, &t.prompt) {
        Ok(text) => text,
        Err(e) => return Ok(Verdict::fail(format!("prompt does not render: {e}"))),
    };
    let mut ids = match model.tokenizer.encode(&text) {
        Ok(ids) => ids,
        Err(e) => return Ok(Verdict::fail(format!("prompt does not tokenize: {e}"))),
    };
    ids.extend_from_slice(&t.resume_tokens);
    if ids.is_empty() {
        return Ok(Verdict::fail("empty prompt"));
    }
    if ids.len() as u32 != receipt.prompt_tokens {
        return Ok(Verdict::fail(format!(
            "prompt is {} tokens, the receipt claims {}",
            ids.len(),
            receipt.prompt_tokens
        )));
    }
    if t.output.is_empty() {
        return Ok(Verdict { passed: true, reason: "nothing generated".into(), report: None });
    }
    if ids.len() + t.output.len() > model.net.context_length() {
        return Ok(Verdict::fail("prompt and output exceed the model's context"));
    }
    if t.output.iter().any(|&x| x as usize >= model.net.vocab_size()) {
        return Ok(Verdict::fail("output token outside the vocabulary"));
    }
    let cfg = match t.sampling.generate_config(t.output.len(), t.resume_tokens.len()) {
        Ok(cfg) => cfg,
        Err(e) => return Ok(Verdict::fail(format!("response format: {e}"))),
    };
    let report = proof::check(model, &ids, &t.output, &proofs, &cfg, &pc, tol)?;
    Ok(Verdict { passed: report.passed, reason: report.reason.clone(), report: Some(report) })
}

/// What a failed check leaves behind: verifiable by anyone with the declared model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub receipt: SignedReceipt,
    pub transcript: SignedTranscript,
    /// The accusing validator's verdict (others recompute their own).
    pub verdict: Verdict,
    pub validator: String,
}

impl Evidence {
    /// Hex sha256 of [`Self::judged_bytes`]: what a ban entry names.
    pub fn digest(&self) -> String {
        brainmesh_ledger::audit::banlist::evidence_digest(&self.judged_bytes())
    }

    /// The signed receipt and transcript, length-prefixed (what is judged, not the judgement).
    pub fn judged_bytes(&self) -> Vec<u8> {
        let mut e = brainmesh_ledger::canon::Enc::new("brainmesh/evidence/v2");
        for part in [
            &self.receipt.body,
            &self.receipt.miner_sig,
            &self.receipt.gateway_sig,
            &self.transcript.body,
            &self.transcript.miner_sig,
        ] {
            e.str(part);
        }
        e.into_bytes()
    }
}

/// Validators keep the evidence they produced or verified (sled tree `evidence`, by digest), to
/// serve it to other validators over `/brainmesh/audit/1`.
#[derive(Clone)]
pub struct EvidenceStore {
    tree: sled::Tree,
}

/// A Brain's ban list on disk (sled tree `bans`, one JSON value per Brain), so that a peer
/// restarted after a crash still refuses the miners it had banned.
#[derive(Clone)]
pub struct BanStore {
    tree: sled::Tree,
}

impl BanStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self { tree: db.open_tree("bans")? })
    }

    /// The list saved for `brain` (None: none saved, or unreadable).
    pub fn load(&self, brain: brainmesh_ledger::BrainId) -> Option<brainmesh_ledger::audit::BanList> {
        let bytes = self.tree.get(brain.to_be_bytes()).ok()??;
        serde_json::from_slice::<brainmesh_ledger::audit::BanList>(&bytes).ok().filter(|l| l.brain == brain)
    }

    pub fn save(&self, list: &brainmesh_ledger::audit::BanList) -> Result<(), sled::Error> {
        self.tree.insert(list.brain.to_be_bytes(), serde_json::to_vec(list).unwrap_or_default())?;
        self.tree.flush()?;
        Ok(())
    }
}

impl EvidenceStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self { tree: db.open_tree("evidence")? })
    }

    pub fn insert(&self, e: &Evidence) -> Result<String, sled::Error> {
        let d = e.digest();
        self.tree.insert(d.as_bytes(), serde_json::to_vec(e).unwrap_or_default())?;
        self.tree.flush()?;
        Ok(d)
    }

    pub fn get(&self, digest: &str) -> Option<Evidence> {
        serde_json::from_slice(&self.tree.get(digest.as_bytes()).ok()??).ok()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auditor::AuditShared;
    use crate::identity::Identity;
    use brainmesh_ledger::audit::BanEntry;

    #[test]
    fn a_ban_survives_a_restart_of_the_peer_that_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let validator = Identity::generate();
        let entry =
            BanEntry::new(1, "miner-x", b"evidence", "edited output", &validator.peer_id().to_string(), 10, &|m| {
                validator.sign(m)
            });
        {
            let db = sled::open(dir.path()).unwrap();
            let shared = AuditShared::persisted(1, BanStore::open(&db).unwrap());
            assert_eq!(shared.insert_ban(entry.clone(), &validator.public_key_bytes()), Ok(true));
            let forged = BanEntry { miner: "miner-y".into(), ..entry.clone() };
            assert!(shared.insert_ban(forged, &validator.public_key_bytes()).is_err(), "a bad signature is refused");
        }
        // The process is gone; a new one opens the same data directory.
        let db = sled::open(dir.path()).unwrap();
        let shared = AuditShared::persisted(1, BanStore::open(&db).unwrap());
        let bans = shared.bans.lock().unwrap();
        assert!(bans.is_banned("miner-x", 11));
        assert!(!bans.is_banned("miner-y", 11));
        // Another Brain's list is not this one's.
        assert!(BanStore::open(&db).unwrap().load(2).is_none());
    }
}
