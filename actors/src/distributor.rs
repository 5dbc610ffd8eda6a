//! The Distributor actor (gateway role): picks a miner, seals the task to it, relays the token
//! stream to the HTTP client, fails over to another miner when one dies or stalls (resuming
//! after the tokens already produced), and countersigns, stores and publishes the receipt.

use brainmesh_ledger::BrainId;
use brainmesh_ledger::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use brainmesh_ledger::clock::{ChainClock, ClockInstant};

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::identity::Identity;
use crate::messages::PeerEvent;
use crate::metrics::Metrics;
use crate::network_message::NetworkSender;
use crate::protocols::gossip::TopicKind;
use crate::protocols::task::{Ack, AssignBody, ChunkBody, SealedAssign, SealedChunk, TaskWire};
use crate::receipt::{ReceiptStore, SignedReceipt};
use crate::routing::{choose, Candidate, Choice};
use crate::seal::TaskKeys;
use crate::task::{Prompt, TaskError, TaskEvent, TaskSpec, Usage};

#[derive(Debug, Clone)]
pub struct DistributorConfig {
    pub brain: BrainId,
    /// Longest silence between chunks once a task is streaming.
    pub chunk_timeout: Duration,
    /// Longest wait for the first chunk (queueing + prefill).
    pub first_chunk_timeout: Duration,
    /// Miners tried per task at most.
    pub max_attempts: u32,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StartTask {
    pub task_id: String,
    pub spec: TaskSpec,
    pub candidates: Vec<Candidate>,
    pub events: mpsc::Sender<TaskEvent>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct AssignDone {
    task_id: String,
    attempt: u32,
    result: Result<Ack, String>,
}

struct Current {
    miner: String,
    keys: Arc<TaskKeys>,
    next_seq: u64,
    /// This attempt's nonce (hex) and how many tokens it resumed after.
    nonce: String,
    resumed: usize,
}

struct TaskState {
    spec: TaskSpec,
    events: mpsc::Sender<TaskEvent>,
    candidates: Vec<Candidate>,
    tried: Vec<String>,
    attempt: u32,
    current: Option<Current>,
    tokens: Vec<u32>,
    prompt_tokens: Option<u32>,
    started: bool,
    got_chunk: bool,
    last_activity: ClockInstant,
    last_error: String,
    /// The candidates were read again from the roster after all had failed.
    refreshed: bool,
}

pub struct Distributor {
    id: Arc<Identity>,
    cfg: DistributorConfig,
    net: NetworkSender,
    tasks: HashMap<String, TaskState>,
    inflight: HashMap<String, u32>,
    receipts: ReceiptStore,
    metrics: Metrics,
    clock: ChainClock,
    /// Re-read when every candidate a task had has failed.
    source: Option<crate::candidates::CandidateSource>,
}

impl Distributor {
    /// Lets a task whose candidates have all failed look at the roster again once.
    pub fn with_candidates(mut self, source: crate::candidates::CandidateSource) -> Self {
        self.source = Some(source);
        self
    }

    pub fn new(
        id: Arc<Identity>,
        cfg: DistributorConfig,
        net: NetworkSender,
        receipts: ReceiptStore,
        metrics: Metrics,
        clock: ChainClock,
    ) -> Self {
        Self { id, cfg, net, tasks: HashMap::new(), inflight: HashMap::new(), receipts, metrics, clock, source: None }
    }

    fn prefix(spec: &TaskSpec) -> Vec<u8> {
        match &spec.prompt {
            Prompt::Chat(m) => serde_json::to_vec(m).unwrap_or_default(),
            Prompt::Text(t) => t.as_bytes().to_vec(),
            Prompt::Embed { inputs, .. } => serde_json::to_vec(inputs).unwrap_or_default(),
        }
    }

    /// Sends the task (or the rest of it) to the next miner.
    fn dispatch(&mut self, task_id: &str, ctx: &mut Context<Self>) {
        let Some(t) = self.tasks.get_mut(task_id) else { return };
        if t.attempt >= self.cfg.max_attempts {
            let err = TaskError::Exhausted(t.last_error.clone());
            return self.fail(task_id, err);
        }
        let prefix = Self::prefix(&t.spec);
        let chosen = choose(&t.candidates, &t.tried, &self.inflight, &prefix, |n| rand::random_range(0..n.max(1)));
        let Some((cand, how)) = chosen.map(|(c, h)| (c.clone(), h)) else {
            // Every candidate known when the task started has failed: a miner that came back or
            // joined since may be online now. Look once more before giving up.
            if t.attempt > 0 && !t.refreshed {
                if let Some(src) = self.source.clone() {
                    t.refreshed = true;
                    let (model, id) = (t.spec.model.clone(), task_id.to_string());
                    ctx.spawn(async move { src.candidates(&model).await }.into_actor(self).map(
                        move |fresh, act, ctx| {
                            let Some(t) = act.tasks.get_mut(&id) else { return };
                            for c in fresh.map(|(c, _)| c).unwrap_or_default() {
                                if !t.candidates.iter().any(|k| k.peer_id == c.peer_id) {
                                    t.candidates.push(c);
                                }
                            }
                            act.metrics.task_event("candidates_refreshed");
                            act.dispatch(&id, ctx);
                        },
                    ));
                    return;
                }
            }
            let err = if t.attempt == 0 {
                TaskError::NoMiner(t.spec.model.clone())
            } else {
                TaskError::Exhausted(t.last_error.clone())
            };
            return self.fail(task_id, err);
        };
        self.metrics.task_event(match how {
            Choice::Affinity => "route_affinity",
            Choice::TwoChoices => "route_two_choices",
            Choice::Only => "route_only",
        });
        t.attempt += 1;
        t.tried.push(cand.peer_id.clone());
        let (keys, eph) = TaskKeys::for_gateway(&cand.seal_key, task_id);
        let body = AssignBody {
            task_id: task_id.to_string(),
            brain: self.cfg.brain,
            model: t.spec.model.clone(),
            account: t.spec.account.clone(),
            prompt: t.spec.prompt.clone(),
            sampling: t.spec.sampling.clone(),
            resume_tokens: t.tokens.clone(),
            nonce: hex::encode(rand::random::<[u8; 16]>()),
        };
        let (nonce, ct) = keys.seal_request(&serde_json::to_vec(&body).unwrap_or_default());
        let wire = TaskWire::Assign(SealedAssign {
            task_id: task_id.to_string(),
            attempt: t.attempt,
            eph: hex::encode(eph),
            nonce: hex::encode(nonce),
            ct: hex::encode(ct),
        });
        t.current = Some(Current {
            miner: cand.peer_id.clone(),
            keys: Arc::new(keys),
            next_seq: 0,
            nonce: body.nonce.clone(),
            resumed: body.resume_tokens.len(),
        });
        t.got_chunk = false;
        t.last_activity = self.clock.instant();
        *self.inflight.entry(cand.peer_id.clone()).or_default() += 1;
        let (net, attempt, tid) = (self.net.clone(), t.attempt, task_id.to_string());
        let bytes = serde_json::to_vec(&wire).unwrap_or_default();
        tracing::debug!(task = %tid, miner = %cand.peer_id, attempt, "task assigned");
        ctx.spawn(
            async move {
                let result = match net.task_request(cand.peer_id, bytes).await {
                    Ok(b) => serde_json::from_slice::<Ack>(&b).map_err(|e| format!("bad ack: {e}")),
                    Err(e) => Err(e.to_string()),
                };
                AssignDone { task_id: tid, attempt, result }
            }
            .into_actor(self)
            .map(|msg, act, ctx| act.assign_done(msg, ctx)),
        );
    }

    fn assign_done(&mut self, msg: AssignDone, ctx: &mut Context<Self>) {
        let Some(t) = self.tasks.get_mut(&msg.task_id) else { return };
        if t.attempt != msg.attempt {
            return;
        }
        match msg.result {
            Ok(Ack { cont: true, .. }) => {}
            Ok(Ack { error, .. }) => {
                t.last_error = error.unwrap_or_else(|| "refused".into());
                self.failover(&msg.task_id, ctx);
            }
            Err(e) => {
                t.last_error = e;
                self.failover(&msg.task_id, ctx);
            }
        }
    }

    fn release(&mut self, miner: &str) {
        if let Some(n) = self.inflight.get_mut(miner) {
            *n = n.saturating_sub(1);
        }
    }

    fn failover(&mut self, task_id: &str, ctx: &mut Context<Self>) {
        let Some(t) = self.tasks.get_mut(task_id) else { return };
        if let Some(c) = t.current.take() {
            tracing::warn!(task = %task_id, miner = %c.miner, reason = %t.last_error, tokens_so_far = t.tokens.len(), "miner failed; moving the task");
            let m = c.miner;
            self.release(&m);
            self.metrics.task_event("failover");
        }
        self.dispatch(task_id, ctx);
    }

    fn fail(&mut self, task_id: &str, err: TaskError) {
        if let Some(t) = self.tasks.remove(task_id) {
            if let Some(c) = t.current {
                self.release(&c.miner);
            }
            let _ = t.events.try_send(TaskEvent::Failed(err));
        }
    }

    fn on_chunk(&mut self, peer: &str, c: SealedChunk, ctx: &mut Context<Self>) -> Ack {
        let Some(t) = self.tasks.get_mut(&c.task_id) else { return Ack::stop("unknown or finished task") };
        let Some(cur) = t.current.as_mut() else { return Ack::stop("task moved") };
        if cur.miner != peer || c.attempt != t.attempt || c.seq != cur.next_seq {
            return Ack::stop("stale chunk");
        }
        let Some(ct) = hex::decode(&c.ct).ok() else { return Ack::stop("malformed chunk") };
        let Ok(plain) = cur.keys.open_chunk(c.seq, &ct) else { return Ack::stop("chunk does not open") };
        let Ok(mut body) = serde_json::from_slice::<ChunkBody>(&plain) else { return Ack::stop("malformed chunk") };
        cur.next_seq += 1;
        let miner = cur.miner.clone();
        let (nonce, resumed) = (cur.nonce.clone(), cur.resumed);
        t.got_chunk = true;
        t.last_activity = self.clock.instant();
        if t.events.is_closed() {
            self.drop_task(&c.task_id);
            return Ack::stop("client went away");
        }
        if let Some(err) = body.error {
            match err {
                TaskError::PromptTooLong { .. } | TaskError::InvalidRequest(_) => self.fail(&c.task_id, err),
                other => {
                    t.last_error = other.to_string();
                    self.failover(&c.task_id, ctx);
                }
            }
            return Ack::stop("error noted");
        }
        if let Some(n) = body.prompt_tokens {
            if !t.started {
                t.started = true;
                t.prompt_tokens = Some(n);
                let _ = t.events.try_send(TaskEvent::Started {
                    task_id: c.task_id.clone(),
                    miner: miner.clone(),
                    prompt_tokens: n,
                    prompt_logprobs: std::mem::take(&mut body.prompt_logprobs),
                });
            }
        }
        t.tokens.extend_from_slice(&body.tokens);
        if !body.embeddings.is_empty()
            && t.events.try_send(TaskEvent::Embeddings { vectors: std::mem::take(&mut body.embeddings) }).is_err()
        {
            self.drop_task(&c.task_id);
            return Ack::stop("client too slow or gone");
        }
        if (!body.text.is_empty() || !body.logprobs.is_empty())
            && t.events.try_send(TaskEvent::Token { text: body.text, logprobs: body.logprobs }).is_err()
        {
            self.drop_task(&c.task_id);
            return Ack::stop("client too slow or gone");
        }
        let Some(done) = body.done else { return Ack::ok() };
        // The receipt must bind what this gateway sent and received in this attempt.
        let resume = &t.tokens[..resumed.min(t.tokens.len())];
        let output = &t.tokens[resumed.min(t.tokens.len())..];
        let io = crate::transcript::io_digest(&nonce, &t.spec.prompt, resume, output);
        match SignedReceipt::countersign(done.receipt, done.miner_sig, &self.id) {
            Ok((signed, r))
                if r.task_id == c.task_id
                    && r.miner == miner
                    && r.gateway == self.id.peer_id().to_string()
                    && r.io_digest == io
                    && r.completion_tokens as usize == output.len() =>
            {
                let receipt_id = signed.id();
                match self.receipts.insert_countersigned(&r.task_id, &signed, self.clock.height()) {
                    Ok(true) => {
                        self.net.publish(
                            TopicKind::Receipts.topic(self.cfg.brain),
                            serde_json::to_vec(&signed).unwrap_or_default(),
                        );
                    }
                    Ok(false) => {
                        tracing::warn!(task = %r.task_id, "a receipt for this task already exists; not counted twice")
                    }
                    Err(e) => tracing::error!("cannot store receipt: {e}"),
                }
                let Some(t) = self.tasks.remove(&c.task_id) else { return Ack::ok() };
                self.release(&miner);
                let usage = Usage {
                    prompt_tokens: t.prompt_tokens.unwrap_or(r.prompt_tokens),
                    completion_tokens: t.tokens.len() as u32,
                };
                let _ =
                    t.events.try_send(TaskEvent::Done { finish: done.finish, usage, receipt_id, attempts: t.attempt });
                Ack::ok()
            }
            _ => {
                t.last_error = "miner returned an invalid receipt".into();
                self.metrics.reject(crate::protocols::Reject::BadSignature);
                self.failover(&c.task_id, ctx);
                Ack::stop("invalid receipt")
            }
        }
    }

    fn drop_task(&mut self, task_id: &str) {
        if let Some(t) = self.tasks.remove(task_id) {
            if let Some(c) = t.current {
                self.release(&c.miner);
            }
            tracing::debug!(task = %task_id, "client went away; task cancelled");
        }
    }

    fn watchdog(&mut self, ctx: &mut Context<Self>) {
        let mut late = Vec::new();
        let mut gone = Vec::new();
        for (id, t) in &self.tasks {
            if t.events.is_closed() {
                gone.push(id.clone());
                continue;
            }
            let limit = if t.got_chunk { self.cfg.chunk_timeout } else { self.cfg.first_chunk_timeout };
            if t.current.is_some() && self.clock.elapsed(t.last_activity) > limit {
                late.push(id.clone());
            }
        }
        for id in gone {
            self.drop_task(&id);
        }
        for id in late {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.last_error = "miner timed out".into();
            }
            self.failover(&id, ctx);
        }
    }
}

impl Actor for Distributor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(Duration::from_millis(250), |act, ctx| act.watchdog(ctx));
    }
}

impl Handler<StartTask> for Distributor {
    type Result = ();
    fn handle(&mut self, msg: StartTask, ctx: &mut Self::Context) {
        let id = msg.task_id.clone();
        self.tasks.insert(
            id.clone(),
            TaskState {
                spec: msg.spec,
                events: msg.events,
                candidates: msg.candidates,
                tried: vec![],
                attempt: 0,
                current: None,
                tokens: vec![],
                prompt_tokens: None,
                started: false,
                got_chunk: false,
                last_activity: self.clock.instant(),
                last_error: String::new(),
                refreshed: false,
            },
        );
        self.dispatch(&id, ctx);
    }
}

/// A sealed result chunk from miner `peer`, for the distributor actor.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Ack")]
pub struct ChunkIn {
    pub peer: PeerId,
    pub chunk: SealedChunk,
}

impl Handler<ChunkIn> for Distributor {
    type Result = MessageResult<ChunkIn>;
    fn handle(&mut self, msg: ChunkIn, ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.on_chunk(&msg.peer, msg.chunk, ctx))
    }
}

impl Handler<PeerEvent> for Distributor {
    type Result = ();
    fn handle(&mut self, msg: PeerEvent, ctx: &mut Self::Context) {
        if let PeerEvent::Disconnected { peer } = msg {
            let hit: Vec<String> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.current.as_ref().is_some_and(|c| c.miner == peer))
                .map(|(id, _)| id.clone())
                .collect();
            for id in hit {
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.last_error = format!("lost the connection to {peer}");
                }
                self.failover(&id, ctx);
            }
        }
    }
}
