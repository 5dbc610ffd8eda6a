//! Asking a Brain's ledger from any role: a validator over `/brainmesh/sync/1`, or this node's
//! own rollup when it is a validator itself. Used by the gateway's receipt outbox and by paid
//! admission; each round asks the next validator in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use brainmesh_ledger::BrainId;

use crate::messages::RosterSnapshot;
use crate::network_message::NetworkSender;
use crate::protocols::gossip::Role;
use crate::protocols::sync::{LedgerRequest, LedgerResponse};
use crate::rollup::LedgerHandle;
use crate::roster::Liveness;
use crate::MembershipHandle;

/// Where a question goes: another validator over the network, or this node's own rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Remote(String),
    Local,
}

/// The `turn`-th of the Brain's online, admitted validators other than `me` (and this node's
/// own ledger when it has one); None when there is none.
pub fn pick_target(snap: Option<RosterSnapshot>, brain: BrainId, me: &str, local: bool, turn: usize) -> Option<Target> {
    let mut targets: Vec<Target> = snap
        .into_iter()
        .flat_map(|s| s.brains)
        .filter(|b| b.brain == brain)
        .flat_map(|b| b.members)
        .filter(|m| m.admitted && m.roles.contains(&Role::Validator) && m.status == Liveness::Online && m.peer_id != me)
        .map(|m| Target::Remote(m.peer_id))
        .collect();
    if local {
        targets.push(Target::Local);
    }
    if targets.is_empty() {
        return None;
    }
    let n = targets.len();
    Some(targets.swap_remove(turn % n))
}

/// A node's way to its Brain's ledger: who it is, which validators it may ask (from the
/// roster), the network, and its own rollup when it is a validator. Cheap to clone; the clones
/// share the round-robin position.
#[derive(Clone)]
pub struct LedgerClient {
    me: String,
    brain: BrainId,
    net: NetworkSender,
    membership: MembershipHandle,
    ledger: Option<LedgerHandle>,
    turn: Arc<AtomicUsize>,
}

impl LedgerClient {
    pub fn new(
        me: String,
        brain: BrainId,
        net: NetworkSender,
        membership: MembershipHandle,
        ledger: Option<LedgerHandle>,
    ) -> Self {
        Self { me, brain, net, membership, ledger, turn: Default::default() }
    }

    /// This node's peer id.
    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn brain(&self) -> BrainId {
        self.brain
    }

    /// The next validator in turn (see [`pick_target`]); None when there is none.
    pub async fn next_target(&self) -> Option<Target> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        pick_target(self.membership.roster().await, self.brain, &self.me, self.ledger.is_some(), turn)
    }

    /// Sends `req` to `target` (see [`ask`]).
    pub async fn ask(&self, target: &Target, req: LedgerRequest) -> Option<LedgerResponse> {
        ask(&self.net, self.ledger.as_ref(), target, req).await
    }

    /// Sends `req` to the next validator in turn; None when there is none or it did not answer.
    pub async fn ask_next(&self, req: LedgerRequest) -> Option<LedgerResponse> {
        let target = self.next_target().await?;
        self.ask(&target, req).await
    }
}

/// Sends `req` to `target`; None if it could not be asked or the answer did not parse.
async fn ask(
    net: &NetworkSender,
    ledger: Option<&LedgerHandle>,
    target: &Target,
    req: LedgerRequest,
) -> Option<LedgerResponse> {
    match target {
        Target::Local => ledger?.ask(req).await,
        Target::Remote(peer) => {
            let bytes = serde_json::to_vec(&req).ok()?;
            let resp = net.request(peer.clone(), bytes).await.ok()?;
            serde_json::from_slice(&resp).ok()
        }
    }
}
