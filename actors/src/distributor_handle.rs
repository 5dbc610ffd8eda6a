//! The gateway's way into the mesh: [`DistributorHandle`] implements [`task::TaskService`] over
//! the distributor actor: it reads the roster, leaves out banned miners, picks the candidates
//! ([`routing::candidates`]) and starts the task.

use brainmesh_ledger::BrainId;
use std::sync::Arc;

use actix::Addr;
use brainmesh_ledger::clock::ChainClock;

use crate::membership_handle::MembershipHandle;
use crate::messages::RosterSnapshot;
use crate::protocols::gossip::Role;
use crate::{distributor, roster, routing, task};

/// The gateway's way into the mesh: implements [`task::TaskService`].
#[derive(Clone)]
pub struct DistributorHandle {
    pub(crate) addr: Addr<distributor::Distributor>,
    pub(crate) membership: MembershipHandle,
    pub(crate) brain: BrainId,
    pub(crate) bans: Arc<std::sync::Mutex<brainmesh_ledger::audit::BanList>>,
    pub(crate) clock: ChainClock,
}

impl DistributorHandle {
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

impl task::TaskService for DistributorHandle {
    fn submit(
        &self,
        spec: task::TaskSpec,
    ) -> task::BoxFuture<'_, Result<tokio::sync::mpsc::Receiver<task::TaskEvent>, task::TaskError>> {
        Box::pin(async move {
            let snap = self.membership.roster().await.ok_or_else(|| task::TaskError::NoMiner(spec.model.clone()))?;
            let banned = self.banned(&snap);
            let (candidates, known) = routing::candidates(&snap, self.brain, &spec.model, &banned);
            if candidates.is_empty() {
                return Err(if known {
                    task::TaskError::NoMiner(spec.model.clone())
                } else {
                    task::TaskError::UnknownModel(spec.model.clone())
                });
            }
            let (events, rx) = tokio::sync::mpsc::channel(4096);
            let task_id = hex::encode(rand::random::<[u8; 12]>());
            self.addr
                .send(distributor::StartTask { task_id, spec: spec.clone(), candidates, events })
                .await
                .map_err(|_| task::TaskError::NoMiner(spec.model.clone()))?;
            Ok(rx)
        })
    }

    fn models(&self) -> task::BoxFuture<'_, Vec<task::ModelInfo>> {
        Box::pin(async move {
            let mut out: std::collections::BTreeMap<String, task::ModelInfo> = Default::default();
            if let Some(snap) = self.membership.roster().await {
                for b in snap.brains.iter().filter(|b| b.brain == self.brain) {
                    for m in b.members.iter().filter(|m| m.admitted && m.status == roster::Liveness::Online) {
                        for s in &m.serving {
                            let e = out.entry(s.id.clone()).or_insert_with(|| task::ModelInfo {
                                id: s.id.clone(),
                                hash: s.hash.clone(),
                                context_length: s.context,
                                miners: 0,
                            });
                            e.miners += 1;
                        }
                    }
                }
            }
            out.into_values().collect()
        })
    }
}
