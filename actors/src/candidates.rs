//! Where a task's candidate miners come from ([`CandidateSource`]): the roster now, less the
//! miners banned by the Brain's validators, through [`routing::candidates`].

use std::sync::Arc;

use brainmesh_ledger::clock::ChainClock;
use brainmesh_ledger::BrainId;

use crate::membership_handle::MembershipHandle;
use crate::messages::RosterSnapshot;
use crate::protocols::gossip::Role;
use crate::routing;

/// The roster-backed candidate list. The gateway's handle reads it when a task starts; the
/// distributor again when every candidate a task had has failed (a miner that came back since
/// the task started is then found).
#[derive(Clone)]
pub struct CandidateSource {
    pub(crate) membership: MembershipHandle,
    pub(crate) brain: BrainId,
    pub(crate) bans: Arc<std::sync::Mutex<brainmesh_ledger::audit::BanList>>,
    pub(crate) clock: ChainClock,
    /// The Brain's declared model (name, hash) from the ledger, kept fresh by `BrainWatch`.
    pub(crate) declared: DeclaredModel,
}

/// The Brain's declared model, shared between `BrainWatch` (writer) and the candidate source.
pub type DeclaredModel = Arc<std::sync::RwLock<Option<(String, String)>>>;

impl CandidateSource {
    /// The candidates for `model` and whether any member knows the model; None if the roster
    /// cannot be read.
    pub async fn candidates(&self, model: &str) -> Option<(Vec<routing::Candidate>, bool)> {
        let snap = self.membership.roster().await?;
        let banned = self.banned(&snap);
        let declared = self.declared.read().ok().and_then(|d| d.clone());
        let hash = declared.as_ref().filter(|(name, _)| name == model).map(|(_, h)| h.as_str());
        Some(routing::candidates(&snap, self.brain, model, hash, &banned))
    }

    /// Miners banned by at least one admitted validator of the Brain (entries signed by peers
    /// that are not validators of this Brain are ignored).
    fn banned(&self, snap: &RosterSnapshot) -> std::collections::BTreeSet<String> {
        let height = self.clock.height();
        let validators: std::collections::BTreeSet<&str> = snap
            .brains
            .iter()
            .filter(|b| b.brain == self.brain)
            .flat_map(|b| b.members.iter())
            .filter(|m| m.admitted && m.roles.contains(&Role::Validator))
            .map(|m| m.peer_id.as_str())
            .collect();
        match self.bans.lock() {
            Ok(b) => b
                .banned(height)
                .into_iter()
                .filter(|m| b.entries(m).iter().any(|e| validators.contains(e.validator.as_str())))
                .collect(),
            Err(_) => Default::default(),
        }
    }
}
