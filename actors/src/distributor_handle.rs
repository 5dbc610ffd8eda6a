//! The gateway's way into the mesh: [`DistributorHandle`] implements [`task::TaskService`] over
//! the distributor actor: it takes the candidates from a [`CandidateSource`] (the roster, less
//! banned miners) and starts the task.

use actix::Addr;

use crate::candidates::CandidateSource;
use crate::{distributor, roster, task};

/// The gateway's way into the mesh: implements [`task::TaskService`].
#[derive(Clone)]
pub struct DistributorHandle {
    pub(crate) addr: Addr<distributor::Distributor>,
    pub(crate) source: CandidateSource,
    /// May this gateway spend for the request's account (its allowances on the ledger)?
    pub(crate) spend: Option<crate::spend_check::SpendCheck>,
}

impl task::TaskService for DistributorHandle {
    fn submit(
        &self,
        spec: task::TaskSpec,
    ) -> task::BoxFuture<'_, Result<tokio::sync::mpsc::Receiver<task::TaskEvent>, task::TaskError>> {
        Box::pin(async move {
            if let Some(check) = &self.spend {
                check.check(&spec.account).await.map_err(task::TaskError::NotAuthorized)?;
            }
            let (candidates, known) = self
                .source
                .candidates(&spec.model)
                .await
                .ok_or_else(|| task::TaskError::NoMiner(spec.model.clone()))?;
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
            if let Some(snap) = self.source.membership.roster().await {
                for b in snap.brains.iter().filter(|b| b.brain == self.source.brain) {
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
