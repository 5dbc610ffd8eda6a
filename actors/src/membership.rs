//! The Membership actor: the Brain roster, persisted, gossiped, kept alive by heartbeats.

use brainmesh_ledger::BrainId;
use brainmesh_ledger::PeerId;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::load::LoadReport;
use crate::messages::{GetRoster, GossipIn, PeerEvent, RosterSnapshot, Stop, Tick};
use crate::metrics::{Metrics, RosterLabel};
use crate::network_message::NetworkSender;
use crate::protocols::gossip::{Envelope, Heartbeat, Payload, Registration, Role, TopicKind};
use crate::protocols::sync::{record_tag, SyncRequest, SyncResponse, MAX_HAVE, MAX_SYNC_RESPONSE_BYTES};
use crate::protocols::{Reject, MAX_MESSAGE_BYTES};
use crate::roster::{Beat, BrainPolicy, Inserted, Liveness, Roster};
use crate::store::RosterStore;
use brainmesh_ledger::clock::{ChainClock, ClockInstant};

/// What the membership actor needs to know about this peer and its Brain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipConfig {
    pub brain: BrainId,
    pub roles: Vec<Role>,
    pub models: Vec<String>,
    pub policy: BrainPolicy,
    pub heartbeat_interval: Duration,
    /// A peer silent for this many heartbeat intervals is marked offline.
    pub offline_after_heartbeats: u32,
}

impl MembershipConfig {
    pub fn offline_after_ms(&self) -> u64 {
        self.heartbeat_interval.as_millis() as u64 * u64::from(self.offline_after_heartbeats.max(1))
    }
}

pub struct Membership {
    id: Arc<Identity>,
    self_id: String,
    cfg: MembershipConfig,
    roster: Roster,
    store: Box<dyn RosterStore>,
    net: NetworkSender,
    metrics: Metrics,
    seq: u64,
    rtts: HashMap<String, u64>,
    connected: BTreeSet<String>,
    last_sync: HashMap<String, ClockInstant>,
    was_online: BTreeSet<String>,
    load: Option<Arc<LoadReport>>,
    clock: ChainClock,
}

impl Membership {
    pub fn new(
        id: Arc<Identity>,
        cfg: MembershipConfig,
        store: Box<dyn RosterStore>,
        net: NetworkSender,
        metrics: Metrics,
        load: Option<Arc<LoadReport>>,
        clock: ChainClock,
    ) -> Self {
        let self_id = id.peer_id().to_string();
        Self {
            id,
            self_id,
            cfg,
            roster: Roster::new(),
            store,
            net,
            metrics,
            seq: 0,
            rtts: HashMap::new(),
            connected: BTreeSet::new(),
            last_sync: HashMap::new(),
            was_online: BTreeSet::new(),
            load,
            clock,
        }
    }

    fn topic(&self, kind: TopicKind) -> String {
        kind.topic(self.cfg.brain)
    }

    /// Reloads the persisted roster; bad records on disk are dropped and counted.
    fn reload(&mut self) {
        let stored = match self.store.load_all() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot read the roster store: {e}");
                return;
            }
        };
        let mut n = 0usize;
        for (_brain, bytes) in stored {
            match Envelope::open(&bytes) {
                Ok((env, Payload::Registration(reg))) => {
                    // Grandfathered: whatever fee was accepted when it was stored stands.
                    let policy = BrainPolicy { registration_fee: 0, ..self.cfg.policy.clone() };
                    if self.roster.insert(env, reg, &policy, u64::MAX / 2).is_ok() {
                        n += 1;
                    }
                }
                _ => tracing::warn!("dropping an unreadable registration from the store"),
            }
        }
        self.roster.admit(self.cfg.brain, &self.cfg.policy);
        tracing::info!(records = n, "roster reloaded from disk");
    }

    /// Creates (or keeps) this peer's own registration and announces it.
    fn register_self(&mut self) {
        if self.cfg.roles.is_empty() {
            // An observer (a client such as `brainmesh private classify`): it reads the roster
            // and never registers or heartbeats.
            return;
        }
        let existing = self.roster.get(self.cfg.brain, &self.self_id).map(|m| m.registration.clone());
        let wanted_seal = hex::encode(self.id.seal_public());
        let keep = existing.as_ref().is_some_and(|r| {
            let (mut a, mut b) = (r.roles.clone(), self.cfg.roles.clone());
            a.sort();
            b.sort();
            a == b && r.models == self.cfg.models && r.seal_key == wanted_seal
        });
        if !keep {
            let reg = Registration {
                peer_id: self.self_id.clone(),
                brain: self.cfg.brain,
                roles: self.cfg.roles.clone(),
                seal_key: wanted_seal,
                models: self.cfg.models.clone(),
                fee: self.cfg.policy.registration_fee,
                time_ms: self.clock.now_ms().max(existing.map(|r| r.time_ms + 1).unwrap_or(0)),
            };
            let env = Envelope::seal(&self.id, &Payload::Registration(reg.clone()));
            match self.roster.insert(env.clone(), reg, &self.cfg.policy, self.clock.now_ms()) {
                Ok(_) => self.persist(&env),
                Err(e) => tracing::error!("own registration invalid: {e}"),
            }
        }
        match self.roster.get(self.cfg.brain, &self.self_id) {
            Some(m) if m.admitted => {
                tracing::info!(brain = self.cfg.brain, roles = ?self.cfg.roles, "registered with the Brain");
            }
            Some(m) if m.refused.as_deref() == Some(crate::roster::AWAITING_LEDGER) => {
                tracing::info!("registration waits for the ledger: {}", crate::roster::AWAITING_LEDGER)
            }
            Some(m) => tracing::error!(
                "registration refused: {}",
                m.refused.clone().unwrap_or_else(|| "unknown reason".into())
            ),
            None => {}
        }
        if let Some(m) = self.roster.get(self.cfg.brain, &self.self_id) {
            self.net.publish(self.topic(TopicKind::Membership), m.envelope.to_bytes());
        }
    }

    fn persist(&self, env: &Envelope) {
        if let Err(e) = self.store.put(self.cfg.brain, &env.signer, &env.to_bytes()) {
            tracing::error!("cannot persist registration of {}: {e}", env.signer);
        }
    }

    /// Verifies and applies one envelope. `author` is who delivered it on gossip (must be
    /// the signer); `None` for records fetched by sync, which are self-signed.
    fn apply(&mut self, kind: Option<TopicKind>, author: Option<&str>, bytes: &[u8]) -> Result<Option<Beat>, Reject> {
        let (env, payload) = Envelope::open(bytes)?;
        if let Some(a) = author {
            if a != env.signer {
                return Err(Reject::IdentityMismatch);
            }
        }
        if payload.brain() != self.cfg.brain {
            return Err(Reject::WrongTopic);
        }
        let now = self.clock.now_ms();
        match payload {
            Payload::Registration(reg) => {
                if kind.is_some_and(|k| k != TopicKind::Membership) {
                    return Err(Reject::WrongTopic);
                }
                let pid = reg.peer_id.clone();
                match self.roster.insert(env.clone(), reg, &self.cfg.policy, now)? {
                    Inserted::New | Inserted::Updated => {
                        self.persist(&env);
                        match self.roster.get(self.cfg.brain, &pid) {
                            Some(m) if m.admitted => {
                                tracing::info!(peer = %pid, roles = ?m.registration.roles, "peer registered")
                            }
                            Some(m) => {
                                tracing::warn!(peer = %pid, "registration refused: {}", m.refused.clone().unwrap_or_default())
                            }
                            None => {}
                        }
                    }
                    Inserted::Duplicate => {}
                }
                self.metrics.accept("registration");
                Ok(None)
            }
            Payload::Heartbeat(hb) => {
                if kind.is_some_and(|k| k != TopicKind::Heartbeat) {
                    return Err(Reject::WrongTopic);
                }
                let beat = self.roster.heartbeat(&hb, now)?;
                if beat == Beat::Stale {
                    self.metrics.accept("heartbeat_stale");
                    return Ok(None);
                }
                self.metrics.accept("heartbeat");
                if beat == Beat::Recorded && hb.roster_digest != self.roster.digest(self.cfg.brain) {
                    return Ok(Some(Beat::UnknownPeer));
                }
                Ok(Some(beat))
            }
        }
    }

    /// Asks `peer` for its roster (at most once per heartbeat interval per peer, failed
    /// attempts aside).
    fn sync_with(&mut self, peer: String, ctx: &mut Context<Self>) {
        if peer == self.self_id {
            return;
        }
        let now = self.clock.instant();
        if let Some(t) = self.last_sync.get(&peer) {
            if self.clock.elapsed(*t) < self.cfg.heartbeat_interval {
                return;
            }
        }
        self.last_sync.insert(peer.clone(), now);
        // Only what we lack comes back: forming a mesh of n peers costs n² syncs, and full
        // rosters in each made that n³ records.
        let have = self.roster.envelopes(self.cfg.brain).iter().take(MAX_HAVE).map(record_tag).collect();
        let req = serde_json::to_vec(&SyncRequest::Roster { brain: self.cfg.brain, have }).unwrap_or_default();
        let net = self.net.clone();
        let fut = async move { net.request(peer.clone(), req).await.map_err(|e| (peer, e)) };
        ctx.spawn(fut.into_actor(self).map(|res, act, _ctx| match res {
            Ok(bytes) => act.apply_sync_response(&bytes),
            Err((peer, e)) => {
                tracing::debug!(%peer, "roster sync failed: {e}");
                // A failed sync (no connection yet, a timeout) may be retried at the next
                // occasion rather than a heartbeat interval later.
                act.last_sync.remove(&peer);
            }
        }));
    }

    fn apply_sync_response(&mut self, bytes: &[u8]) {
        if bytes.len() > MAX_SYNC_RESPONSE_BYTES {
            self.metrics.reject(Reject::Oversized);
            return;
        }
        match serde_json::from_slice::<SyncResponse>(bytes) {
            Ok(SyncResponse::Roster { brain, records }) if brain == self.cfg.brain => {
                for env in records {
                    // A record we already hold byte for byte was verified when it arrived:
                    // skip the signature check (a full roster comes back on every sync).
                    if self.roster.get(self.cfg.brain, &env.signer).is_some_and(|m| m.envelope == env) {
                        self.metrics.accept("registration_known");
                        continue;
                    }
                    match self.apply(Some(TopicKind::Membership), None, &env.to_bytes()) {
                        Ok(_) | Err(Reject::Replay) => {}
                        Err(r) => self.metrics.reject(r),
                    }
                }
            }
            Ok(SyncResponse::Roster { .. }) => self.metrics.reject(Reject::WrongTopic),
            Ok(SyncResponse::Error { message }) => tracing::debug!("peer refused roster sync: {message}"),
            Err(_) => self.metrics.reject(Reject::Malformed),
        }
    }

    fn heartbeat(&mut self) {
        if self.cfg.roles.is_empty() {
            return;
        }
        self.seq = (self.seq + 1).max(self.clock.now_ms());
        let latency_us =
            if self.rtts.is_empty() { 0 } else { self.rtts.values().sum::<u64>() / self.rtts.len() as u64 };
        let hb = Heartbeat {
            peer_id: self.self_id.clone(),
            brain: self.cfg.brain,
            seq: self.seq,
            time_ms: self.clock.now_ms(),
            load_permille: host_load_permille(),
            queue_depth: self.load.as_ref().map(|l| l.queue_depth()).unwrap_or(0),
            latency_us,
            roster_digest: self.roster.digest(self.cfg.brain),
            serving: self.load.as_ref().map(|l| l.serving()).unwrap_or_default(),
            tokens_per_s_milli: self.load.as_ref().map(|l| l.tokens_per_s_milli()).unwrap_or(0),
            ttft_ms: self.load.as_ref().map(|l| l.ttft_ms()).unwrap_or(0),
        };
        let env = Envelope::seal(&self.id, &Payload::Heartbeat(hb));
        self.net.publish(self.topic(TopicKind::Heartbeat), env.to_bytes());
    }

    fn update_liveness(&mut self) {
        let now = self.clock.now_ms();
        let off = self.cfg.offline_after_ms();
        let mut online = BTreeSet::new();
        self.metrics.roster.clear();
        for m in self.roster.members(self.cfg.brain) {
            let live = Roster::liveness(m, &self.self_id, now, off);
            let pid = &m.registration.peer_id;
            if live == Liveness::Online {
                online.insert(pid.clone());
            } else if self.was_online.contains(pid) {
                tracing::warn!(peer = %pid, "peer silent for {} heartbeats: marked offline", self.cfg.offline_after_heartbeats);
            }
            for r in &m.registration.roles {
                let label = RosterLabel {
                    brain: self.cfg.brain.to_string(),
                    role: r.as_str().into(),
                    status: if !m.admitted {
                        "refused".into()
                    } else if live == Liveness::Online {
                        "online".into()
                    } else {
                        "offline".into()
                    },
                };
                self.metrics.roster.get_or_create(&label).inc();
            }
        }
        self.was_online = online;
    }
}

/// 1-minute load average per mille of the machine's cores (0 where unknown).
fn host_load_permille() -> u32 {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map(|l| (l / cores * 1000.0) as u32)
        .unwrap_or(0)
}

impl Actor for Membership {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.reload();
        self.register_self();
        let net = self.net.clone();
        let topics: Vec<String> = TopicKind::ALL.iter().map(|k| self.topic(*k)).collect();
        ctx.spawn(
            async move {
                for t in topics {
                    let _ = net.subscribe(t).await;
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(self.clock.wall_wait(self.cfg.heartbeat_interval), |act, _ctx| {
            act.heartbeat();
            act.update_liveness();
        });
    }
}

impl Handler<GossipIn> for Membership {
    type Result = Result<(), Reject>;

    fn handle(&mut self, msg: GossipIn, ctx: &mut Self::Context) -> Self::Result {
        let res = (|| {
            if msg.data.len() > MAX_MESSAGE_BYTES {
                return Err(Reject::Oversized);
            }
            let (kind, brain) = TopicKind::parse(&msg.topic).ok_or(Reject::WrongTopic)?;
            if brain != self.cfg.brain {
                return Err(Reject::WrongTopic);
            }
            let author = msg.source.as_deref().ok_or(Reject::Unsigned)?;
            self.apply(Some(kind), Some(author), &msg.data)
        })();
        match res {
            Ok(Some(Beat::UnknownPeer)) => {
                // The sender knows records we lack (or we know ones it lacks): sync both ways.
                if let Some(author) = msg.source {
                    self.sync_with(author.into(), ctx);
                }
                self.sync_with(msg.propagation_source.into(), ctx);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(r) => {
                self.metrics.reject(r);
                tracing::debug!(topic = %msg.topic, from = %msg.propagation_source, "gossip rejected: {r}");
                Err(r)
            }
        }
    }
}

/// A roster-sync request from `peer` (decoded by the router), answered by the membership actor.
#[derive(Message, Debug, Clone)]
#[rtype(result = "SyncResponse")]
pub struct SyncIn {
    pub peer: PeerId,
    pub req: SyncRequest,
}

impl Handler<SyncIn> for Membership {
    type Result = MessageResult<SyncIn>;

    fn handle(&mut self, msg: SyncIn, _ctx: &mut Self::Context) -> Self::Result {
        match msg.req {
            SyncRequest::Roster { brain, have } => {
                self.metrics.sync_requests.inc();
                let have: std::collections::HashSet<String> = have.into_iter().collect();
                let records =
                    self.roster.envelopes(brain).into_iter().filter(|e| !have.contains(&record_tag(e))).collect();
                MessageResult(SyncResponse::Roster { brain, records })
            }
        }
    }
}

impl Handler<PeerEvent> for Membership {
    type Result = ();

    fn handle(&mut self, msg: PeerEvent, ctx: &mut Self::Context) {
        match msg {
            PeerEvent::Connected { peer } => {
                self.connected.insert(peer.to_string());
                self.sync_with(peer.into(), ctx);
                // Let the newcomer see us alive without waiting a whole interval.
                ctx.run_later(Duration::from_millis(200), |act, _| act.heartbeat());
            }
            PeerEvent::Disconnected { peer } => {
                self.connected.remove(peer.as_str());
                self.rtts.remove(peer.as_str());
            }
            PeerEvent::PingRtt { peer, rtt_us } => {
                self.rtts.insert(peer.into(), rtt_us);
            }
        }
    }
}

impl Handler<GetRoster> for Membership {
    type Result = MessageResult<GetRoster>;

    fn handle(&mut self, _msg: GetRoster, _ctx: &mut Self::Context) -> Self::Result {
        let registration = match self.roster.get(self.cfg.brain, &self.self_id) {
            Some(m) if m.admitted => "admitted".to_string(),
            Some(m) => format!("refused: {}", m.refused.clone().unwrap_or_default()),
            None => "not registered".to_string(),
        };
        MessageResult(RosterSnapshot {
            brain: self.cfg.brain,
            registration,
            brains: self.roster.view(&self.self_id, self.clock.now_ms(), self.cfg.offline_after_ms()),
        })
    }
}

impl Handler<crate::messages::LedgerRegistrations> for Membership {
    type Result = ();

    fn handle(&mut self, msg: crate::messages::LedgerRegistrations, _ctx: &mut Self::Context) {
        if msg.brain != self.cfg.brain || !self.roster.set_paid(msg.brain, msg.miners) {
            return;
        }
        let before: BTreeSet<String> =
            self.roster.members(msg.brain).filter(|m| m.admitted).map(|m| m.registration.peer_id.clone()).collect();
        self.roster.admit(msg.brain, &self.cfg.policy);
        let after: BTreeSet<String> =
            self.roster.members(msg.brain).filter(|m| m.admitted).map(|m| m.registration.peer_id.clone()).collect();
        for p in after.difference(&before) {
            tracing::info!(peer = %p, "admitted: its registration is paid on the ledger");
        }
        if after.contains(&self.self_id) && !before.contains(&self.self_id) {
            tracing::info!(brain = self.cfg.brain, "this peer's paid registration is final: admitted");
        }
    }
}

impl Handler<Tick> for Membership {
    type Result = ();

    fn handle(&mut self, _msg: Tick, _ctx: &mut Self::Context) {
        self.heartbeat();
        self.update_liveness();
    }
}

impl Handler<Stop> for Membership {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
