//! The Miner actor: holds the Brain's model on a dedicated inference thread, opens sealed
//! assignments, streams sealed tokens back to the gateway and signs a receipt at the end.

use brainmesh_ledger::BrainId;
use brainmesh_ledger::PeerId;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use brainmesh_models::{FinishReason, Model, PrefixCache};
use tokio::sync::mpsc;

use crate::identity::Identity;
use crate::load::LoadReport;
use crate::metrics::Metrics;
use crate::network_message::NetworkSender;
use crate::protocols::gossip::ModelAd;
use crate::protocols::task::{Ack, AssignBody, ChunkBody, DoneBody, SealedAssign, SealedChunk, TaskWire};
use crate::receipt::Receipt;
use crate::seal::{key_from_hex, TaskKeys};
use crate::task::{Finish, Prompt, TaskError, TokenLogprob, TopLogprob};
use crate::transcript::{io_digest, RunSampling, Transcript, TranscriptStore};
use brainmesh_ledger::clock::ChainClock;
use brainmesh_models::proof::{self, ProofConfig};

#[derive(Debug, Clone)]
pub struct MinerConfig {
    pub brain: BrainId,
    pub model_id: String,
    /// sha256 of the model file (hex).
    pub model_hash: String,
    /// Tasks waiting beyond this are refused (the gateway tries another miner).
    pub max_queue: u32,
    /// The chain clock (genesis, block time, height; wall or virtual time).
    pub clock: ChainClock,
    /// Prompt positions the prefix KV cache may hold (0 turns it off).
    pub prefix_cache_tokens: usize,
    /// Blocks a task's transcript is kept for validators to fetch.
    pub transcript_blocks: u64,
    /// Honest, or a cheat of the audit matrix (research and tests: [`crate::adversary`]).
    pub behaviour: crate::adversary::MinerBehaviour,
}

/// An embedding model a miner serves beside its language model (`/v1/embeddings`).
pub struct Embedder {
    /// The id it is advertised and requested under.
    pub id: String,
    /// sha256 of its weights file (hex).
    pub hash: String,
    pub model: brainmesh_models::embed::MiniLm,
}

/// What a miner serves: its language model and, optionally, an embedding model.
pub struct Served {
    pub model: Model,
    pub embedder: Option<Embedder>,
}

enum WorkerEvent {
    Prompt(u32),
    PromptLogprobs(Vec<TokenLogprob>),
    Embeddings(Vec<Vec<f32>>),
    Token { id: u32, text: String, logprob: Option<TokenLogprob> },
    Done { finish: Finish, completion_tokens: u32, proof_digest: String, transcript: Box<Transcript> },
    Error(TaskError),
}

struct Job {
    body: AssignBody,
    cancel: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<WorkerEvent>,
    miner: String,
    cfg: MinerConfig,
    attempt: u32,
}

pub struct Miner {
    id: Arc<Identity>,
    cfg: MinerConfig,
    transcripts: TranscriptStore,
    jobs: std::sync::mpsc::Sender<Job>,
    queued: Arc<AtomicU32>,
    net: NetworkSender,
    /// The embedding model's (id, hash), when one is served.
    embedder: Option<(String, String)>,
}

impl Miner {
    /// Moves `model` onto its own inference thread and returns the actor (not yet started).
    pub fn new(
        id: Arc<Identity>,
        cfg: MinerConfig,
        served: Served,
        net: NetworkSender,
        load: Arc<LoadReport>,
        metrics: Metrics,
        transcripts: TranscriptStore,
    ) -> Self {
        let Served { model, embedder } = served;
        let context = model.net.context_length() as u32;
        let mut serving = vec![ModelAd { id: cfg.model_id.clone(), hash: cfg.model_hash.clone(), context }];
        let embed_ad = embedder.as_ref().map(|e| (e.id.clone(), e.hash.clone()));
        if let Some(e) = &embedder {
            serving.push(ModelAd { id: e.id.clone(), hash: e.hash.clone(), context: e.model.max_tokens() as u32 });
        }
        load.set_serving(serving);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let queued = Arc::new(AtomicU32::new(0));
        let q = queued.clone();
        let prefix = PrefixCache::new(PREFIX_ENTRIES, cfg.prefix_cache_tokens, PREFIX_MIN_MATCH);
        let spawned = std::thread::Builder::new()
            .name("brainmesh-inference".into())
            .spawn(move || worker(model, embedder, rx, q, load, prefix, metrics));
        if let Err(e) = spawned {
            tracing::error!("cannot start the inference thread: {e}");
        }
        Self { id, cfg, transcripts, jobs: tx, queued, net, embedder: embed_ad }
    }

    fn assign(&mut self, gateway: String, sealed: SealedAssign) -> Ack {
        let SealedAssign { task_id, attempt, eph, nonce, ct } = sealed;
        let (Ok(eph), Some(nonce), Some(ct)) = (
            key_from_hex(&eph),
            hex::decode(&nonce).ok().and_then(|n| <[u8; 12]>::try_from(n).ok()),
            hex::decode(&ct).ok(),
        ) else {
            return Ack::stop("malformed assignment");
        };
        let keys = TaskKeys::for_miner(&self.id.seal_secret(), &eph, &task_id);
        let Ok(plain) = keys.open_request(&nonce, &ct) else { return Ack::stop("cannot open the sealed task") };
        let Ok(body) = serde_json::from_slice::<AssignBody>(&plain) else { return Ack::stop("malformed task") };
        if body.task_id != task_id {
            return Ack::stop("task id mismatch");
        }
        let embedding = matches!(body.prompt, Prompt::Embed { .. });
        let served = match (&self.embedder, embedding) {
            (Some((id, hash)), true) if *id == body.model => Some((id.clone(), hash.clone())),
            (_, false) if body.model == self.cfg.model_id => {
                Some((self.cfg.model_id.clone(), self.cfg.model_hash.clone()))
            }
            _ => None,
        };
        let Some(served) = served else {
            let kind = if embedding { "embedding model" } else { "model" };
            return Ack::stop(format!("this miner serves no {kind} `{}`", body.model));
        };
        if self.queued.load(Ordering::Relaxed) >= self.cfg.max_queue {
            return Ack::stop("queue full");
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (etx, erx) = mpsc::unbounded_channel();
        if hex::decode(&body.nonce).map(|n| n.len() < 8).unwrap_or(true) {
            return Ack::stop("task without a nonce");
        }
        let pump = Pump {
            transcripts: self.transcripts.clone(),
            net: self.net.clone(),
            id: self.id.clone(),
            cfg: self.cfg.clone(),
            gateway,
            task_id,
            attempt,
            keys: Arc::new(keys),
            cancel: cancel.clone(),
            account: body.account.clone(),
            started_ms: self.cfg.clock.now_ms(),
            served,
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        let job =
            Job { body, cancel, events: etx, miner: self.id.peer_id().to_string(), cfg: self.cfg.clone(), attempt };
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Ack::stop("inference thread stopped");
        }
        tokio::spawn(pump.run(erx));
        Ack::ok()
    }
}

impl Actor for Miner {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        tracing::info!(model = %self.cfg.model_id, hash = %self.cfg.model_hash, "miner ready");
    }
}

/// A sealed assignment from gateway `peer`, for the miner actor.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Ack")]
pub struct AssignIn {
    pub peer: PeerId,
    pub assign: SealedAssign,
}

impl Handler<AssignIn> for Miner {
    type Result = MessageResult<AssignIn>;
    fn handle(&mut self, msg: AssignIn, _ctx: &mut Self::Context) -> Self::Result {
        let ack = self.assign(msg.peer.into(), msg.assign);
        if let Some(e) = &ack.error {
            tracing::debug!("assignment refused: {e}");
        }
        MessageResult(ack)
    }
}

/// Sends one task's tokens to the gateway as sealed chunks, coalescing whatever accumulated
/// during the previous round trip; stops the generation when the gateway says so.
struct Pump {
    transcripts: TranscriptStore,
    net: NetworkSender,
    id: Arc<Identity>,
    cfg: MinerConfig,
    gateway: String,
    task_id: String,
    attempt: u32,
    keys: Arc<TaskKeys>,
    cancel: Arc<AtomicBool>,
    account: String,
    started_ms: u64,
    /// The (id, hash) of the model this task runs on (the language or the embedding model).
    served: (String, String),
}

impl Pump {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<WorkerEvent>) {
        let mut seq = 0u64;
        let mut prompt_tokens = 0u32;
        while let Some(first) = rx.recv().await {
            let mut chunk = ChunkBody::default();
            let mut finished = self.apply(first, &mut chunk, &mut prompt_tokens);
            while !finished {
                match rx.try_recv() {
                    Ok(ev) => finished = self.apply(ev, &mut chunk, &mut prompt_tokens),
                    Err(_) => break,
                }
            }
            let plain = serde_json::to_vec(&chunk).unwrap_or_default();
            let wire = TaskWire::Chunk(SealedChunk {
                task_id: self.task_id.clone(),
                attempt: self.attempt,
                seq,
                ct: hex::encode(self.keys.seal_chunk(seq, &plain)),
            });
            seq += 1;
            let ack = self.net.task_request(self.gateway.clone(), serde_json::to_vec(&wire).unwrap_or_default()).await;
            let go_on = matches!(ack.as_deref().map(serde_json::from_slice::<Ack>), Ok(Ok(Ack { cont: true, .. })));
            if !go_on {
                tracing::debug!(task = %self.task_id, "gateway stopped the task");
                self.cancel.store(true, Ordering::Relaxed);
                return;
            }
            if finished {
                return;
            }
        }
    }

    /// Folds one worker event into the chunk; true when the task is over.
    fn apply(&self, ev: WorkerEvent, chunk: &mut ChunkBody, prompt_tokens: &mut u32) -> bool {
        match ev {
            WorkerEvent::Prompt(n) => {
                *prompt_tokens = n;
                chunk.prompt_tokens = Some(n);
                false
            }
            WorkerEvent::Embeddings(v) => {
                chunk.embeddings = v;
                false
            }
            WorkerEvent::PromptLogprobs(v) => {
                chunk.prompt_logprobs = v;
                false
            }
            WorkerEvent::Token { id, text, logprob } => {
                chunk.tokens.push(id);
                chunk.text.push_str(&text);
                chunk.logprobs.extend(logprob);
                false
            }
            WorkerEvent::Done { finish, completion_tokens, proof_digest, transcript } => {
                let block_height = self.cfg.clock.height();
                let io_digest =
                    io_digest(&transcript.nonce, &transcript.prompt, &transcript.resume_tokens, &transcript.output);
                let transcript = Transcript { block_height, ..*transcript };
                // Stored off the async path (sled flushes to disk) while the last chunk travels.
                let (store, task, signed) = (self.transcripts.clone(), self.task_id.clone(), transcript.sign(&self.id));
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store.insert(&task, block_height, &signed) {
                        tracing::error!(%task, "cannot keep the transcript: {e}");
                    }
                });
                let receipt = Receipt {
                    task_id: self.task_id.clone(),
                    brain: self.cfg.brain,
                    model: self.served.0.clone(),
                    model_hash: self.served.1.clone(),
                    miner: self.id.peer_id().to_string(),
                    gateway: self.gateway.clone(),
                    account: self.account.clone(),
                    prompt_tokens: *prompt_tokens,
                    completion_tokens,
                    compute_units: u64::from(*prompt_tokens) + u64::from(completion_tokens),
                    block_height,
                    proof_digest,
                    io_digest,
                    started_ms: self.started_ms,
                    finished_ms: self.cfg.clock.now_ms(),
                };
                let (body, sig) = receipt.sign_as_miner(&self.id);
                chunk.done = Some(DoneBody { finish, completion_tokens, receipt: body, miner_sig: sig });
                true
            }
            WorkerEvent::Error(e) => {
                chunk.error = Some(e);
                true
            }
        }
    }
}

/// A token's log-probabilities as the gateway returns them (text and bytes of each token).
fn wire_logprob(tok: &brainmesh_models::Tokenizer, id: u32, lp: &brainmesh_models::TokenLogprobs) -> TokenLogprob {
    let entry = |id: u32| {
        let bytes = tok.token_bytes(id);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (token, bytes) = entry(id);
    let top_logprobs = lp
        .top
        .iter()
        .map(|&(i, logprob)| {
            let (token, bytes) = entry(i);
            TopLogprob { token, logprob, bytes }
        })
        .collect();
    TokenLogprob { token, logprob: lp.logprob, bytes, top_logprobs }
}

/// Each prompt token's log-probability given the tokens before it (the model's own
/// distribution: no sampling parameters apply to a prompt), with the `k` most likely
/// alternatives; the first token has none (NaN, `null` in JSON).
fn prompt_logprobs(model: &Model, ids: &[u32], k: usize) -> Result<Vec<TokenLogprob>, TaskError> {
    if ids.len() > crate::task::MAX_PROMPT_LOGPROBS_TOKENS {
        return Err(TaskError::InvalidRequest(format!(
            "the prompt's log-probabilities are computed for prompts of at most {} tokens; this one has {}",
            crate::task::MAX_PROMPT_LOGPROBS_TOKENS,
            ids.len()
        )));
    }
    let (_, logits) = model.hidden_and_logits(ids, 0).map_err(|e| TaskError::InvalidRequest(e.to_string()))?;
    let vocab = model.net.vocab_size() as i64;
    let mut out = Vec::with_capacity(ids.len());
    for (j, &id) in ids.iter().enumerate() {
        if j == 0 {
            let lp = brainmesh_models::TokenLogprobs { logprob: f32::NAN, top: vec![] };
            out.push(wire_logprob(&model.tokenizer, id, &lp));
            continue;
        }
        let row = logits
            .f_get(j as i64 - 1)
            .and_then(|r| r.f_narrow(0, 0, vocab.min(r.size()[0])))
            .and_then(|r| r.f_contiguous())
            .and_then(|r| Vec::<f32>::try_from(&r))
            .map_err(|e| TaskError::InvalidRequest(format!("prompt log-probabilities: {e}")))?;
        let lp = brainmesh_models::generate::token_logprobs(&row, 0.0, id, k);
        out.push(wire_logprob(&model.tokenizer, id, &lp));
    }
    Ok(out)
}

/// Prompts the prefix cache keeps at most.
const PREFIX_ENTRIES: usize = 32;
/// Shared prompt tokens below which a cached prefix is not worth the copy.
const PREFIX_MIN_MATCH: usize = 16;

/// The inference thread: one task at a time, in arrival order.
fn worker(
    model: Model,
    embedder: Option<Embedder>,
    rx: std::sync::mpsc::Receiver<Job>,
    queued: Arc<AtomicU32>,
    load: Arc<LoadReport>,
    mut prefix: PrefixCache,
    metrics: Metrics,
) {
    // A replaying cheater's previous output (research knob; unused by honest miners).
    let mut last: Option<crate::adversary::LastOutput> = None;
    while let Ok(job) = rx.recv() {
        let left = queued.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        load.set_queue_depth(left);
        if job.cancel.load(Ordering::Relaxed) {
            continue;
        }
        if let Prompt::Embed { .. } = job.body.prompt {
            run_embed(embedder.as_ref(), job);
        } else {
            run_job(&model, job, &load, &mut prefix, &metrics, &mut last);
        }
        load.set_queue_depth(queued.load(Ordering::Relaxed));
    }
}

/// An embedding task: every input within the model's length, the vectors in one chunk, a
/// receipt for the input tokens. Embeddings carry no proof of inference (validators do not
/// re-check them; see docs/openai.md).
fn run_embed(embedder: Option<&Embedder>, job: Job) {
    let Job { body, cancel, events, miner, cfg: mcfg, attempt } = job;
    let fail = |e: TaskError| {
        let _ = events.send(WorkerEvent::Error(e));
    };
    let (Some(e), Prompt::Embed { inputs, dimensions }) = (embedder, &body.prompt) else {
        return fail(TaskError::InvalidRequest("this miner serves no embedding model".into()));
    };
    let dim = e.model.dim();
    if let Some(d) = dimensions.filter(|&d| d as usize != dim) {
        return fail(TaskError::InvalidRequest(format!(
            "`{}` returns {dim}-dimensional embeddings and cannot shorten them to {d}",
            e.id
        )));
    }
    let mut total = 0u32;
    for (i, text) in inputs.iter().enumerate() {
        let n = match e.model.count_tokens(text) {
            Ok(n) => n,
            Err(err) => return fail(TaskError::InvalidRequest(format!("input[{i}]: {err}"))),
        };
        if n > e.model.max_tokens() {
            return fail(TaskError::PromptTooLong { prompt_tokens: n as u32, context: e.model.max_tokens() as u32 });
        }
        total = total.saturating_add(n as u32);
    }
    let _ = events.send(WorkerEvent::Prompt(total));
    let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let vectors = match e.model.embed(&texts) {
        Ok(v) => v,
        Err(err) => return fail(TaskError::InvalidRequest(err.to_string())),
    };
    if cancel.load(Ordering::Relaxed) {
        return;
    }
    let _ = events.send(WorkerEvent::Embeddings(vectors));
    let transcript = Transcript {
        task_id: body.task_id.clone(),
        attempt,
        brain: mcfg.brain,
        model: e.id.clone(),
        model_hash: e.hash.clone(),
        miner,
        nonce: body.nonce.clone(),
        prompt: body.prompt.clone(),
        resume_tokens: vec![],
        output: vec![],
        sampling: RunSampling::from_request(&body.sampling),
        proof_topk: 0,
        proof_decode_batch: 0,
        proofs: String::new(),
        block_height: 0,
    };
    let _ = events.send(WorkerEvent::Done {
        finish: Finish::Stop,
        completion_tokens: 0,
        proof_digest: String::new(),
        transcript: Box::new(transcript),
    });
}

fn run_job(
    model: &Model,
    job: Job,
    load: &LoadReport,
    prefix: &mut PrefixCache,
    metrics: &Metrics,
    last: &mut Option<crate::adversary::LastOutput>,
) {
    let Job { body, cancel, events, miner, cfg: mcfg, attempt } = job;
    // A cheating miner (research knob) streams nothing until it has made up its output.
    let cheat = mcfg.behaviour.cheat_for(&body.task_id);
    let text = match crate::recheck::render_prompt(model, &body.prompt) {
        Ok(text) => text,
        Err(e) => {
            let _ = events.send(WorkerEvent::Error(TaskError::InvalidRequest(e.to_string())));
            return;
        }
    };
    let mut ids = match model.tokenizer.encode(&text) {
        Ok(ids) => ids,
        Err(e) => {
            let _ = events.send(WorkerEvent::Error(TaskError::InvalidRequest(e.to_string())));
            return;
        }
    };
    ids.extend_from_slice(&body.resume_tokens);
    let context = model.net.context_length() as u32;
    let n = ids.len() as u32;
    if n == 0 || n >= context {
        let _ = events.send(WorkerEvent::Error(if n == 0 {
            TaskError::InvalidRequest("empty prompt".into())
        } else {
            TaskError::PromptTooLong { prompt_tokens: n, context }
        }));
        return;
    }
    let vocab = model.net.vocab_size();
    if let Some(&(t, _)) = body.sampling.logit_bias.iter().find(|&&(t, _)| t as usize >= vocab) {
        let _ = events.send(WorkerEvent::Error(TaskError::InvalidRequest(format!(
            "logit_bias names token {t}, outside this model's vocabulary of {vocab} tokens"
        ))));
        return;
    }
    // The prompt's log-probabilities go out with the first chunk (a resumed task's gateway has
    // them already).
    let prompt_lps = match (body.sampling.logprobs, body.sampling.prompt_logprobs && body.resume_tokens.is_empty()) {
        (Some(k), true) => match prompt_logprobs(model, &ids, k as usize) {
            Ok(v) => Some(v),
            Err(e) => {
                let _ = events.send(WorkerEvent::Error(e));
                return;
            }
        },
        _ => None,
    };
    let _ = events.send(WorkerEvent::Prompt(n));
    if let Some(v) = prompt_lps {
        let _ = events.send(WorkerEvent::PromptLogprobs(v));
    }
    let s = &body.sampling;
    let remaining = s.max_tokens.saturating_sub(body.resume_tokens.len() as u32);
    // The transcript's sampling (what a validator replays) plus what only generation needs.
    let cfg = match RunSampling::from_request(s).generate_config(remaining as usize, body.resume_tokens.len()) {
        Ok(cfg) => {
            brainmesh_models::GenerateConfig { stop: s.stop.clone(), logprobs: s.logprobs.map(|n| n as usize), ..cfg }
        }
        Err(e) => {
            let _ = events.send(WorkerEvent::Error(TaskError::InvalidRequest(format!("response_format: {e}"))));
            return;
        }
    };
    // Real compute: timed on the machine's clock whatever the chain clock is.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut first: Option<f64> = None;
    let mut on_token = |ev: &brainmesh_models::TokenEvent| {
        if first.is_none() {
            first = Some(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if cheat.is_none() {
            let logprob = ev.logprob.as_ref().map(|lp| wire_logprob(&model.tokenizer, ev.token_id, lp));
            let _ = events.send(WorkerEvent::Token { id: ev.token_id, text: ev.text.to_string(), logprob });
        }
        !cancel.load(Ordering::Relaxed)
    };
    match model.generate_with_activations(&ids, &cfg, prefix, &mut on_token) {
        Ok((g, reused, acts)) => {
            metrics.task_event(if reused > 0 { "prefix_hit" } else { "prefix_miss" });
            metrics.prefix_reused_tokens.inc_by(reused as u64);
            let finish = match g.finish {
                FinishReason::Cancelled => return,
                FinishReason::Eos | FinishReason::StopSequence => Finish::Stop,
                FinishReason::Length | FinishReason::ContextFull => Finish::Length,
            };
            let secs = t0.elapsed().as_secs_f64();
            let ttft = first.unwrap_or(secs * 1000.0);
            let decode_secs = (secs - ttft / 1000.0).max(1e-6);
            load.record_task(g.tokens.len().saturating_sub(1) as f64 / decode_secs, ttft);
            let pc = ProofConfig::default();
            let proofs = match proof::build_proofs(&acts, &pc) {
                Ok(p) => p,
                Err(e) => {
                    let _ =
                        events.send(WorkerEvent::Error(TaskError::InvalidRequest(format!("proof of inference: {e}"))));
                    return;
                }
            };
            let nonce = hex::decode(&body.nonce).unwrap_or_default();
            let mut proof_digest = hex::encode(proof::proof_digest(&nonce, &mcfg.model_hash, &proofs));
            let mut proofs_hex = hex::encode(proof::encode_proofs(&proofs));
            let mut output = g.tokens.clone();
            if let Some(c) = cheat {
                let vocab = model.net.vocab_size();
                (output, proofs_hex) =
                    crate::adversary::apply(c, &body.task_id, vocab, output, proofs_hex, last.as_ref());
                if let Ok(p) =
                    hex::decode(&proofs_hex).map_err(|_| ()).and_then(|b| proof::decode_proofs(&b).map_err(|_| ()))
                {
                    proof_digest = hex::encode(proof::proof_digest(&nonce, &mcfg.model_hash, &p));
                }
                for &id in &output {
                    let text = model.tokenizer.decode(&[id], true).unwrap_or_default();
                    let _ = events.send(WorkerEvent::Token { id, text, logprob: None });
                }
            }
            *last = Some(crate::adversary::LastOutput { output: output.clone(), proofs: proofs_hex.clone() });
            let transcript = Transcript {
                task_id: body.task_id.clone(),
                attempt,
                brain: mcfg.brain,
                model: mcfg.model_id.clone(),
                model_hash: mcfg.model_hash.clone(),
                miner,
                nonce: body.nonce.clone(),
                prompt: body.prompt.clone(),
                resume_tokens: body.resume_tokens.clone(),
                output: output.clone(),
                sampling: RunSampling::from_request(s),
                proof_topk: pc.topk as u32,
                proof_decode_batch: pc.decode_batch as u32,
                proofs: proofs_hex,
                block_height: 0,
            };
            let _ = events.send(WorkerEvent::Done {
                finish,
                completion_tokens: output.len() as u32,
                proof_digest,
                transcript: Box::new(transcript),
            });
        }
        Err(e) => {
            let _ = events.send(WorkerEvent::Error(TaskError::InvalidRequest(e.to_string())));
        }
    }
}
