//! The Auditor actor (validator role): samples receipts, fetches the miner's transcript over
//! `/brainmesh/audit/1`, re-checks it on its own inference thread ([`crate::recheck`]), keeps
//! scores, and on a failed check stores evidence, signs a ban entry and gossips it. A ban notice
//! from another validator is not taken on trust: the evidence is fetched from that validator
//! and re-checked here before this validator signs a ban of its own. Weight vectors are
//! committed and revealed once per epoch ([`brainmesh_ledger::audit::weights`]).

use brainmesh_ledger::BrainId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use brainmesh_models::proof::Tolerance;
use brainmesh_models::Model;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::Identity;
use crate::messages::GossipIn;
use crate::metrics::Metrics;
use crate::network_message::{NetworkSender, Proto};
use crate::protocols::audit::{AuditReply, AuditRequest};
use crate::protocols::gossip::TopicKind;
use crate::protocols::{Reject, MAX_MESSAGE_BYTES};
use crate::receipt::{public_key_of, NewReceipt, Receipt, SignedReceipt};
use crate::recheck::{recheck, Evidence, EvidenceStore, Verdict};
use crate::task::{ChatMessage, Prompt, Sampling, TaskEvent, TaskSpec};
use crate::transcript::SignedTranscript;
use brainmesh_ledger::audit::{
    should_audit, spot_check_rate, BanEntry, BanList, Commit, CommitRevealBook, Reveal, Scoreboard, SpotCheckParams,
    WeightVector, WeightsParams,
};
use brainmesh_ledger::clock::ChainClock;

/// Messages on a Brain's audit topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditGossip {
    Ban { entry: BanEntry },
    Commit { commit: Commit },
    Reveal { reveal: Reveal },
}

#[derive(Debug, Clone)]
pub struct AuditorConfig {
    pub brain: BrainId,
    /// The declared model this validator holds (receipts for other hashes are not audited).
    pub model_hash: String,
    pub spot_check: SpotCheckParams,
    /// Stake at risk, in compute units' worth, for the spot-check inequality.
    pub slash_units: f64,
    pub tolerance: Tolerance,
    pub weights: WeightsParams,
    /// The chain clock (genesis, block time, height; wall or virtual time).
    pub clock: ChainClock,
    pub fetch_timeout: Duration,
    /// A known-answer task every this many blocks (0: none).
    pub quality_every_blocks: u64,
    /// Tokens a quality check asks for.
    pub quality_max_tokens: u32,
    /// Honest, or a weight copier or colluder (research knob: [`crate::adversary`]).
    pub behaviour: crate::adversary::ValidatorBehaviour,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Fetched {
    signed: SignedReceipt,
    receipt: Receipt,
    transcript: Option<SignedTranscript>,
    latency_ms: u64,
}

/// Why a check ran: an own sample, or another validator's ban notice to verify.
#[derive(Debug, Clone)]
enum Origin {
    Sample,
    Notice,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Checked {
    origin: Origin,
    evidence: Evidence,
    verdict: Result<Verdict, String>,
    latency_ms: u64,
}

struct CheckJob {
    origin: Origin,
    evidence: Evidence,
    latency_ms: u64,
}

/// Work for the audit thread: a re-check, or the known answer of a quality check.
enum Job {
    Check(CheckJob),
    Expect(TaskSpec),
}

/// The answer the validator's own model gives to a quality-check prompt (greedy).
#[derive(Message)]
#[rtype(result = "()")]
struct Expected {
    spec: TaskSpec,
    text: Result<String, String>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct QualityDone {
    miner: Option<String>,
    passed: bool,
    latency_ms: u64,
}

/// Ordinary-looking prompts for known-answer tasks (a miner cannot tell them from users' tasks
/// by content; see the docs for what it can tell by the sender).
const QUALITY_PROMPTS: [&str; 12] = [
    "What is the capital of {}?",
    "Give me one interesting fact about {}.",
    "Write a one-sentence description of {}.",
    "Explain {} to a ten-year-old in one sentence.",
    "List two things people often get wrong about {}.",
    "What is {} known for?",
    "Summarize the history of {} in one sentence.",
    "Suggest a short title for an essay about {}.",
    "Name a book or film related to {}.",
    "What would a tourist enjoy about {}?",
    "Describe the weather in {} in one sentence.",
    "Write a haiku about {}.",
];
const QUALITY_TOPICS: [&str; 16] = [
    "France",
    "Japan",
    "the ocean",
    "volcanoes",
    "Brazil",
    "the moon",
    "honeybees",
    "Canada",
    "chess",
    "the Nile",
    "rainforests",
    "Norway",
    "coffee",
    "Mars",
    "Kenya",
    "bicycles",
];

/// Counters a test or the status page can read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditStats {
    pub sampled: u64,
    pub passed: u64,
    pub failed: u64,
    pub unavailable: u64,
    pub skipped_other_model: u64,
    pub bans_signed: u64,
    pub notices_rejected: u64,
    pub commits: u64,
    pub reveals: u64,
    pub quality_passed: u64,
    pub quality_failed: u64,
}

/// State shared with the node (status, tests): the ban list every role keeps, and the
/// auditor's stats and the weight vectors revealed lately.
#[derive(Clone)]
pub struct AuditShared {
    pub bans: Arc<Mutex<BanList>>,
    pub stats: Arc<Mutex<AuditStats>>,
    pub weights: Arc<Mutex<Vec<WeightVector>>>,
    /// Where the ban list is kept across restarts (None: memory only).
    store: Option<crate::recheck::BanStore>,
}

impl AuditShared {
    /// A ban list in memory only.
    pub fn new(brain: BrainId) -> Self {
        Self {
            bans: Arc::new(Mutex::new(BanList::new(brain, Default::default()))),
            stats: Default::default(),
            weights: Default::default(),
            store: None,
        }
    }

    /// A ban list loaded from `store` and saved there on every change.
    pub fn persisted(brain: BrainId, store: crate::recheck::BanStore) -> Self {
        let list = store.load(brain).unwrap_or_else(|| BanList::new(brain, Default::default()));
        Self { bans: Arc::new(Mutex::new(list)), store: Some(store), ..Self::new(brain) }
    }

    /// Inserts a ban entry signed by the key `pk` (see [`BanList::insert`]; every entry weighs
    /// the same here) and saves the list if it changed. `Ok(true)`: this entry banned the miner. `Err(None)`:
    /// the list's lock is poisoned.
    pub fn insert_ban(
        &self,
        entry: BanEntry,
        pk: &[u8; 32],
    ) -> Result<bool, Option<brainmesh_ledger::audit::BanError>> {
        let mut b = self.bans.lock().map_err(|_| None)?;
        let before = self.store.as_ref().map(|_| b.clone());
        let banned = b.insert(entry, pk, 1, 1).map_err(Some)?;
        // Saved (and flushed) only when the entry changed the list: repeated gossip of a known
        // entry costs no disk write.
        if let (Some(store), Some(before)) = (&self.store, before) {
            if *b == before {
                return Ok(banned);
            }
            if let Err(e) = store.save(&b) {
                tracing::error!("cannot save the ban list: {e}");
            }
        }
        Ok(banned)
    }

    pub fn stats(&self) -> AuditStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

pub struct Auditor {
    id: Arc<Identity>,
    cfg: AuditorConfig,
    net: NetworkSender,
    metrics: Metrics,
    shared: AuditShared,
    evidence: EvidenceStore,
    scores: Scoreboard,
    audited: HashMap<String, u64>,
    seed: [u8; 32],
    jobs: std::sync::mpsc::Sender<Job>,
    model_rx: Option<(Model, std::sync::mpsc::Receiver<Job>)>,
    tasks: Option<crate::DistributorHandle>,
    next_quality: u64,
    book: CommitRevealBook,
    /// Epochs committed, with the vector and salt to reveal.
    pending_reveals: Vec<(u64, u64, WeightVector, [u8; 32])>,
    checking: BTreeSet<String>,
    last_commit_epoch: Option<u64>,
    /// The node's ledger: commits and reveals also go there as signed transactions, which is
    /// what settlement's consensus reads (None: gossip only).
    ledger: Option<crate::rollup::LedgerHandle>,
}

impl Auditor {
    pub fn new(
        id: Arc<Identity>,
        cfg: AuditorConfig,
        model: Model,
        net: NetworkSender,
        metrics: Metrics,
        shared: AuditShared,
        evidence: EvidenceStore,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"brainmesh/audit-seed/v1");
        h.update(id.ed25519_secret());
        let seed: [u8; 32] = h.finalize().into();
        let (jobs, rx) = std::sync::mpsc::channel();
        let book = CommitRevealBook::new(cfg.brain, cfg.weights.clone());
        Self {
            id,
            cfg,
            net,
            metrics,
            shared,
            evidence,
            scores: Scoreboard::new(Default::default()),
            audited: HashMap::new(),
            seed,
            jobs,
            model_rx: Some((model, rx)),
            book,
            pending_reveals: Vec::new(),
            checking: BTreeSet::new(),
            last_commit_epoch: None,
            tasks: None,
            next_quality: 0,
            ledger: None,
        }
    }

    /// Weight commits and reveals also become ledger transactions through this handle.
    pub fn with_ledger(mut self, ledger: Option<crate::rollup::LedgerHandle>) -> Self {
        self.ledger = ledger;
        self
    }

    fn submit(&self, kind: brainmesh_ledger::tx::TxKind) {
        if let Some(l) = self.ledger.clone() {
            actix::spawn(async move {
                if l.submit(kind).await.is_none() {
                    tracing::warn!("the ledger did not take a weights transaction");
                }
            });
        }
    }

    /// Known-answer tasks go out through this distributor (None: no quality checks).
    pub fn with_quality_checks(mut self, tasks: Option<crate::DistributorHandle>) -> Self {
        self.tasks = tasks;
        self
    }

    fn quality_tick(&mut self, height: u64) {
        let every = self.cfg.quality_every_blocks;
        if every == 0 || self.tasks.is_none() {
            return;
        }
        if self.next_quality == 0 {
            // A random phase, so quality checks do not line up with block boundaries.
            self.next_quality = height + 1 + rand::random_range(0..every);
            return;
        }
        if height < self.next_quality {
            return;
        }
        self.next_quality = height + every;
        let p = QUALITY_PROMPTS[rand::random_range(0..QUALITY_PROMPTS.len())];
        let t = QUALITY_TOPICS[rand::random_range(0..QUALITY_TOPICS.len())];
        let spec = TaskSpec {
            model: String::new(),
            account: format!("quality-check/{}", self.id.peer_id()),
            prompt: Prompt::Chat(vec![ChatMessage { role: "user".into(), content: p.replace("{}", t) }]),
            sampling: Sampling { max_tokens: self.cfg.quality_max_tokens, ..Default::default() },
        };
        let _ = self.jobs.send(Job::Expect(spec));
    }

    fn on_expected(&mut self, e: Expected, ctx: &mut Context<Self>) {
        let (Some(tasks), Ok(expected)) = (self.tasks.clone(), e.text) else { return };
        let mut spec = e.spec;
        let hash = self.cfg.model_hash.clone();
        let clock = self.cfg.clock.clone();
        ctx.spawn(
            async move {
                let t0 = clock.instant();
                // The model id the Brain's miners advertise for the hash this validator holds.
                let models = crate::task::TaskService::models(&tasks).await;
                let Some(m) = models.into_iter().find(|m| m.hash == hash) else {
                    return QualityDone { miner: None, passed: false, latency_ms: 0 };
                };
                spec.model = m.id;
                let Ok(mut rx) = crate::task::TaskService::submit(&tasks, spec).await else {
                    return QualityDone { miner: None, passed: false, latency_ms: 0 };
                };
                let (mut miner, mut text) = (None, String::new());
                while let Some(ev) = rx.recv().await {
                    match ev {
                        TaskEvent::Started { miner: m, .. } => miner = Some(m),
                        TaskEvent::Token { text: t, .. } => text.push_str(&t),
                        TaskEvent::Embeddings { .. } => break,
                        TaskEvent::Done { .. } => {
                            return QualityDone {
                                miner,
                                passed: text == expected,
                                latency_ms: clock.elapsed(t0).as_millis() as u64,
                            }
                        }
                        TaskEvent::Failed(_) => break,
                    }
                }
                QualityDone { miner, passed: false, latency_ms: clock.elapsed(t0).as_millis() as u64 }
            }
            .into_actor(self)
            .map(|q, act, _| act.on_quality(q)),
        );
    }

    fn on_quality(&mut self, q: QualityDone) {
        let Some(miner) = q.miner else { return };
        // A wrong known answer lowers the miner's score; it is not ban evidence on its own
        // (the sampled re-check of the same receipt is what can yield evidence).
        self.scores.record_check(&miner, q.passed, q.latency_ms);
        self.stats(|s| if q.passed { s.quality_passed += 1 } else { s.quality_failed += 1 });
        self.metrics.task_event(if q.passed { "quality_passed" } else { "quality_failed" });
        if !q.passed {
            tracing::warn!(%miner, "known-answer task answered wrongly");
        }
    }

    fn height(&self) -> u64 {
        self.cfg.clock.height()
    }

    fn topic(&self) -> String {
        TopicKind::Audit.topic(self.cfg.brain)
    }

    fn stats(&self, f: impl FnOnce(&mut AuditStats)) {
        if let Ok(mut s) = self.shared.stats.lock() {
            f(&mut s);
        }
    }

    fn on_receipt(&mut self, msg: NewReceipt, ctx: &mut Context<Self>) {
        if !self.cfg.behaviour.audits() {
            return; // a lazy (copying or colluding) validator does no work
        }
        let r = &msg.receipt;
        if r.model_hash != self.cfg.model_hash {
            self.stats(|s| s.skipped_other_model += 1);
            return;
        }
        let done = *self.audited.get(&r.miner).unwrap_or(&0);
        let units = r.compute_units as f64;
        let rate = spot_check_rate(units, self.cfg.slash_units, units, done, &self.cfg.spot_check);
        if !should_audit(rate, &self.seed, &r.task_id) {
            return;
        }
        *self.audited.entry(r.miner.clone()).or_default() += 1;
        self.stats(|s| s.sampled += 1);
        let (net, timeout) = (self.net.clone(), self.cfg.fetch_timeout);
        let req = serde_json::to_vec(&AuditRequest::Transcript { task_id: r.task_id.clone() }).unwrap_or_default();
        let miner = r.miner.clone();
        let clock = self.cfg.clock.clone();
        ctx.spawn(
            async move {
                let t0 = clock.instant();
                let mut transcript = None;
                // One retry: the receipt can outrun the miner's write of its transcript.
                for attempt in 0..2 {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    let reply =
                        tokio::time::timeout(timeout, net.request_on(Proto::Audit, miner.clone(), req.clone())).await;
                    if let Ok(Ok(b)) = reply {
                        if let Ok(AuditReply::Transcript { transcript: t }) = serde_json::from_slice::<AuditReply>(&b) {
                            transcript = Some(t);
                            break;
                        }
                    }
                }
                Fetched {
                    signed: msg.signed,
                    receipt: msg.receipt,
                    transcript,
                    latency_ms: clock.elapsed(t0).as_millis() as u64,
                }
            }
            .into_actor(self)
            .map(|f, act, _ctx| act.on_fetched(f)),
        );
    }

    fn on_fetched(&mut self, f: Fetched) {
        let miner = f.receipt.miner.clone();
        let Some(transcript) = f.transcript else {
            // Not answering is not evidence (the miner may be down); it costs availability.
            self.scores.record_fetch(&miner, false);
            self.stats(|s| s.unavailable += 1);
            self.metrics.task_event("audit_unavailable");
            return;
        };
        self.scores.record_fetch(&miner, true);
        let evidence = Evidence {
            receipt: f.signed,
            transcript,
            verdict: Verdict { passed: false, reason: String::new(), report: None },
            validator: self.id.peer_id().to_string(),
        };
        let _ = self.jobs.send(Job::Check(CheckJob { origin: Origin::Sample, evidence, latency_ms: f.latency_ms }));
    }

    fn on_checked(&mut self, c: Checked) {
        let Checked { origin, mut evidence, verdict, latency_ms } = c;
        let digest = evidence.digest();
        self.checking.remove(&digest);
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("re-check could not run: {e}");
                return;
            }
        };
        let Ok(receipt) = evidence.receipt.verify() else { return };
        let miner = receipt.miner.clone();
        if matches!(origin, Origin::Sample) {
            self.scores.record_check(&miner, verdict.passed, latency_ms);
            self.stats(|s| if verdict.passed { s.passed += 1 } else { s.failed += 1 });
            self.metrics.task_event(if verdict.passed { "audit_passed" } else { "audit_failed" });
        }
        if verdict.passed {
            if matches!(origin, Origin::Notice) {
                self.stats(|s| s.notices_rejected += 1);
                tracing::warn!(%miner, "a ban notice's evidence re-checks clean here; not co-signed");
            }
            return;
        }
        tracing::warn!(%miner, task = %receipt.task_id, reason = %verdict.reason, "check failed");
        let me = self.id.peer_id().to_string();
        let height = self.height();
        let already = self
            .shared
            .bans
            .lock()
            .map(|b| b.is_banned(&miner, height) && b.entries(&miner).iter().any(|e| e.validator == me))
            .unwrap_or(false);
        evidence.verdict = verdict.clone();
        evidence.validator = self.id.peer_id().to_string();
        if let Err(e) = self.evidence.insert(&evidence) {
            tracing::error!("cannot store evidence: {e}");
            return;
        }
        if already {
            return; // banned by us already: the new evidence is kept, no second entry
        }
        let entry = BanEntry::new(
            self.cfg.brain,
            &miner,
            &evidence.judged_bytes(),
            &verdict.reason,
            &self.id.peer_id().to_string(),
            self.height(),
            &|m| self.id.sign(m),
        );
        self.apply_ban(entry.clone());
        self.stats(|s| s.bans_signed += 1);
        self.net.publish(self.topic(), serde_json::to_vec(&AuditGossip::Ban { entry }).unwrap_or_default());
    }

    fn apply_ban(&self, entry: BanEntry) {
        let Some(pk) = public_key_of(&entry.validator) else { return };
        if let Ok(true) = self.shared.insert_ban(entry, &pk) {
            self.metrics.task_event("ban_applied");
        }
    }

    /// Another validator's ban: fetch its evidence and re-check before co-signing.
    fn on_notice(&mut self, entry: BanEntry, ctx: &mut Context<Self>) {
        let me = self.id.peer_id().to_string();
        // Judged already (this evidence is in our store, or we signed a ban of this miner).
        let ours =
            self.shared.bans.lock().map(|b| b.entries(&entry.miner).iter().any(|e| e.validator == me)).unwrap_or(false);
        if entry.validator == me || ours || self.evidence.get(&entry.evidence_digest).is_some() {
            return;
        }
        if !self.checking.insert(entry.evidence_digest.clone()) {
            return;
        }
        let (net, timeout) = (self.net.clone(), self.cfg.fetch_timeout);
        let req =
            serde_json::to_vec(&AuditRequest::Evidence { digest: entry.evidence_digest.clone() }).unwrap_or_default();
        let jobs = self.jobs.clone();
        let digest = entry.evidence_digest.clone();
        let my_hash = self.cfg.model_hash.clone();
        ctx.spawn(
            async move {
                let reply =
                    tokio::time::timeout(timeout, net.request_on(Proto::Audit, entry.validator.clone(), req)).await;
                match reply {
                    Ok(Ok(b)) => match serde_json::from_slice::<AuditReply>(&b) {
                        Ok(AuditReply::Evidence { evidence }) if evidence.digest() == digest => {
                            // Evidence about another model's receipt cannot be re-checked with
                            // ours: no judgement, so no co-signature (a validator that held
                            // another model once co-signed whatever it was shown, since "the
                            // receipt names another model" reads as a failed check).
                            if evidence.receipt.verify().map(|r| r.model_hash != my_hash).unwrap_or(true) {
                                return Some((digest, true));
                            }
                            let _ = jobs.send(Job::Check(CheckJob {
                                origin: Origin::Notice,
                                evidence: *evidence,
                                latency_ms: 0,
                            }));
                            None
                        }
                        _ => Some((digest, false)),
                    },
                    _ => Some((digest, false)),
                }
            }
            .into_actor(self)
            .map(|failed, act, _| {
                if let Some((d, other_model)) = failed {
                    act.checking.remove(&d);
                    act.stats(|s| if other_model { s.skipped_other_model += 1 } else { s.notices_rejected += 1 });
                }
            }),
        );
    }

    /// Once per epoch: commit to this epoch's weights; reveal earlier commits when due.
    fn tick(&mut self) {
        let height = self.height();
        self.quality_tick(height);
        let epoch = height / self.cfg.weights.epoch_blocks.max(1);
        if self.last_commit_epoch != Some(epoch) {
            self.last_commit_epoch = Some(epoch);
            // Banned miners get no weight (their scores are dropped).
            let banned = self.shared.bans.lock().map(|b| b.banned(height)).unwrap_or_default();
            for m in banned {
                self.scores.remove(&m);
            }
            let weights = match &self.cfg.behaviour {
                crate::adversary::ValidatorBehaviour::Honest => self.scores.weights(),
                crate::adversary::ValidatorBehaviour::Copier => {
                    // The latest epoch whose weights others have revealed.
                    let me = self.id.peer_id().to_string();
                    let vectors = (epoch.saturating_sub(4)..epoch)
                        .rev()
                        .map(|e| self.book.revealed(e))
                        .map(|vs| vs.into_iter().filter(|v| v.validator != me).map(|v| v.weights).collect::<Vec<_>>())
                        .find(|vs| !vs.is_empty())
                        .unwrap_or_default();
                    crate::adversary::copied_weights(&vectors)
                }
                crate::adversary::ValidatorBehaviour::Colluder { favour } => {
                    crate::adversary::colluding_weights(favour)
                }
            };
            let vector =
                WeightVector { brain: self.cfg.brain, epoch, validator: self.id.peer_id().to_string(), weights };
            let salt = brainmesh_ledger::audit::weights::fresh_salt();
            let Ok(commit) = Commit::new(&vector, &salt, &|m| self.id.sign(m)) else { return };
            let pk = self.id.public_key_bytes();
            if self.book.accept_commit(commit.clone(), &pk, height).is_ok() {
                self.submit(brainmesh_ledger::tx::TxKind::CommitWeights {
                    brain: self.cfg.brain,
                    epoch,
                    commitment: vector.commitment(&salt),
                });
                self.pending_reveals.push((epoch, height, vector, salt));
                self.stats(|s| s.commits += 1);
                self.scores.reset_epoch();
                self.net.publish(self.topic(), serde_json::to_vec(&AuditGossip::Commit { commit }).unwrap_or_default());
            }
        }
        // A reveal opens `reveal_delay` blocks after its commit and not before the epoch ends.
        let (delay, eb) = (self.cfg.weights.reveal_delay_blocks, self.cfg.weights.epoch_blocks.max(1));
        let opens = |e: u64, at: u64| (at + delay).max((e + 1) * eb);
        let due: Vec<_> =
            self.pending_reveals.iter().filter(|(e, at, _, _)| height >= opens(*e, *at)).cloned().collect();
        self.pending_reveals.retain(|(e, at, _, _)| height < opens(*e, *at));
        for (_, _, vector, salt) in due {
            let Ok(reveal) = Reveal::new(&vector, &salt, &|m| self.id.sign(m)) else { continue };
            let pk = self.id.public_key_bytes();
            if self.book.accept_reveal(reveal.clone(), &pk, height).is_ok() {
                self.submit(brainmesh_ledger::tx::TxKind::RevealWeights {
                    brain: self.cfg.brain,
                    epoch: vector.epoch,
                    salt,
                    weights: vector.weights.clone(),
                });
                self.stats(|s| s.reveals += 1);
                self.publish_revealed();
                self.net.publish(self.topic(), serde_json::to_vec(&AuditGossip::Reveal { reveal }).unwrap_or_default());
            }
        }
    }

    fn publish_revealed(&self) {
        let epoch = self.height() / self.cfg.weights.epoch_blocks.max(1);
        let mut all = Vec::new();
        for e in epoch.saturating_sub(2)..=epoch {
            all.extend(self.book.revealed(e));
        }
        if let Ok(mut w) = self.shared.weights.lock() {
            *w = all;
        }
    }

    fn on_gossip(&mut self, msg: GossipIn, ctx: &mut Context<Self>) -> Result<(), Reject> {
        let g = parse_gossip(&msg, self.cfg.brain)?;
        let height = self.height();
        match g {
            AuditGossip::Ban { entry } => {
                let pk = public_key_of(&entry.validator).ok_or(Reject::BadSignature)?;
                entry.verify(&pk).map_err(|_| Reject::BadSignature)?;
                if entry.brain != self.cfg.brain {
                    return Err(Reject::WrongTopic);
                }
                self.on_notice(entry, ctx);
            }
            AuditGossip::Commit { commit } => {
                let pk = public_key_of(&commit.validator).ok_or(Reject::BadSignature)?;
                self.book.accept_commit(commit, &pk, height).map_err(|_| Reject::BadSignature)?;
            }
            AuditGossip::Reveal { reveal } => {
                let pk = public_key_of(&reveal.vector.validator).ok_or(Reject::BadSignature)?;
                self.book.accept_reveal(reveal, &pk, height).map_err(|_| Reject::BadSignature)?;
                self.publish_revealed();
            }
        }
        Ok(())
    }
}

/// Size, topic, author and shape checks shared by every peer's audit-topic handler.
pub fn parse_gossip(msg: &GossipIn, brain: BrainId) -> Result<AuditGossip, Reject> {
    if msg.data.len() > MAX_MESSAGE_BYTES {
        return Err(Reject::Oversized);
    }
    if TopicKind::parse(&msg.topic) != Some((TopicKind::Audit, brain)) {
        return Err(Reject::WrongTopic);
    }
    let g: AuditGossip = serde_json::from_slice(&msg.data).map_err(|_| Reject::Malformed)?;
    let author = match &g {
        AuditGossip::Ban { entry } => &entry.validator,
        AuditGossip::Commit { commit } => &commit.validator,
        AuditGossip::Reveal { reveal } => &reveal.vector.validator,
    };
    if msg.source.as_deref() != Some(author.as_str()) {
        return Err(Reject::IdentityMismatch);
    }
    Ok(g)
}

impl Actor for Auditor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if let Some((model, rx)) = self.model_rx.take() {
            let me = ctx.address();
            let (hash, tol) = (self.cfg.model_hash.clone(), self.cfg.tolerance);
            let spawned = std::thread::Builder::new().name("brainmesh-audit".into()).spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Check(job) => {
                            let verdict = match job.evidence.receipt.verify() {
                                Ok(r) => recheck(&model, &hash, &r, &job.evidence.transcript, &tol)
                                    .map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            };
                            me.do_send(Checked {
                                origin: job.origin,
                                evidence: job.evidence,
                                verdict,
                                latency_ms: job.latency_ms,
                            });
                        }
                        Job::Expect(spec) => {
                            let cfg = brainmesh_models::GenerateConfig::greedy(spec.sampling.max_tokens as usize);
                            let text = crate::recheck::render_prompt(&model, &spec.prompt)
                                .and_then(|p| model.tokenizer.encode(&p))
                                .map_err(|e| e.to_string())
                                .and_then(|ids| model.generate(&[ids], &cfg, &mut |_| true).map_err(|e| e.to_string()))
                                .and_then(|mut g| g.pop().map(|g| g.text).ok_or_else(|| "no generation".to_string()));
                            me.do_send(Expected { spec, text });
                        }
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!("cannot start the audit thread: {e}");
            }
        }
        let every = self.cfg.clock.wall_wait(Duration::from_millis(self.cfg.clock.block_time_ms().max(10)));
        ctx.run_interval(every, |act, _| act.tick());
        tracing::info!(hash = %self.cfg.model_hash, "auditor ready");
    }
}

impl Handler<NewReceipt> for Auditor {
    type Result = ();
    fn handle(&mut self, msg: NewReceipt, ctx: &mut Self::Context) {
        self.on_receipt(msg, ctx);
    }
}

impl Handler<Expected> for Auditor {
    type Result = ();
    fn handle(&mut self, msg: Expected, ctx: &mut Self::Context) {
        self.on_expected(msg, ctx);
    }
}

impl Handler<Checked> for Auditor {
    type Result = ();
    fn handle(&mut self, msg: Checked, _ctx: &mut Self::Context) {
        self.on_checked(msg);
    }
}

impl Handler<GossipIn> for Auditor {
    type Result = Result<(), Reject>;
    fn handle(&mut self, msg: GossipIn, ctx: &mut Self::Context) -> Self::Result {
        let res = self.on_gossip(msg, ctx);
        match &res {
            Ok(()) => self.metrics.accept("audit"),
            Err(r) => self.metrics.reject(*r),
        }
        res
    }
}

/// Every other peer's audit-topic handler: keeps the ban list (gateways route around banned
/// miners), ignores weights.
pub struct BanBook {
    brain: BrainId,
    shared: AuditShared,
    metrics: Metrics,
}

impl BanBook {
    pub fn new(brain: BrainId, shared: AuditShared, metrics: Metrics) -> Self {
        Self { brain, shared, metrics }
    }
}

impl Actor for BanBook {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<GossipIn> for BanBook {
    type Result = Result<(), Reject>;
    fn handle(&mut self, msg: GossipIn, _ctx: &mut Self::Context) -> Self::Result {
        let res = (|| {
            if let AuditGossip::Ban { entry } = parse_gossip(&msg, self.brain)? {
                let pk = public_key_of(&entry.validator).ok_or(Reject::BadSignature)?;
                let banned = self.shared.insert_ban(entry, &pk).map_err(|e| match e {
                    None => Reject::Malformed,
                    Some(_) => Reject::BadSignature,
                })?;
                if banned {
                    self.metrics.task_event("ban_applied");
                }
            }
            Ok(())
        })();
        match &res {
            Ok(()) => self.metrics.accept("audit"),
            Err(r) => self.metrics.reject(*r),
        }
        res
    }
}
