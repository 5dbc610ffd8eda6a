//! What a peer needs to know of its Brain from the ledger (issue 17), fetched every
//! [`EVERY_BLOCKS`] blocks from one of the Brain's validators (a different one each round; this
//! node's own ledger when it is one — only validators keep the ledger):
//!
//! * **paid registrations** (under [`crate::roster::BrainPolicy::paid_admission`]): a miner is
//!   admitted only once its `Register` transaction, paying the Brain's fee to its owner, is
//!   final; the set goes to membership, which re-runs admission;
//! * **the Brain's declared model** (`brainmesh brain set-model`): a gateway routes a request for
//!   that model name only to miners serving exactly its weights (by content hash).
//!
//! A node that can reach no validator says so in its log; under paid admission its roster then
//! admits no miner, and a gateway keeps the last declared model it learnt.

use std::time::Duration;

use actix::prelude::*;
use brainmesh_ledger::clock::ChainClock;

use crate::candidates::DeclaredModel;
use crate::ledger_client::LedgerClient;
use crate::messages::LedgerRegistrations;
use crate::protocols::sync::{LedgerRequest, LedgerResponse};

/// A round every this many blocks.
pub const EVERY_BLOCKS: u64 = 2;

pub struct BrainWatch {
    client: LedgerClient,
    /// Membership, when paid admission is on.
    to: Option<Recipient<LedgerRegistrations>>,
    /// The gateway's candidate source, when this node routes tasks.
    declared: Option<DeclaredModel>,
    clock: ChainClock,
    warned: bool,
}

impl BrainWatch {
    pub fn new(
        client: LedgerClient,
        to: Option<Recipient<LedgerRegistrations>>,
        declared: Option<DeclaredModel>,
        clock: ChainClock,
    ) -> Self {
        Self { client, to, declared, clock, warned: false }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let brain = client.brain();
        ctx.spawn(
            async move {
                match client.ask_next(LedgerRequest::Registrations { brain }).await {
                    Some(LedgerResponse::Registrations { brain: b, miners, model, .. }) if b == brain => {
                        Some((miners, model))
                    }
                    _ => None,
                }
            }
            .into_actor(self)
            .map(move |answer, act, _ctx| match answer {
                Some((miners, model)) => {
                    act.warned = false;
                    if let Some(to) = &act.to {
                        to.do_send(LedgerRegistrations { brain, miners: miners.into_iter().collect() });
                    }
                    if let Some(d) = &act.declared {
                        if let Ok(mut d) = d.write() {
                            if *d != model {
                                tracing::info!(brain, ?model, "the Brain's declared model");
                                *d = model;
                            }
                        }
                    }
                }
                None if !act.warned => {
                    act.warned = true;
                    tracing::warn!(
                        brain,
                        "no validator of this Brain answered: paid registrations and the declared model are \
                         not known (under paid admission no miner is admitted until they are)"
                    );
                }
                None => {}
            }),
        );
    }

    fn schedule(&self, ctx: &mut Context<Self>) {
        let wait = Duration::from_millis(self.clock.block_time_ms().saturating_mul(EVERY_BLOCKS));
        ctx.run_later(self.clock.wall_wait(wait), |act, ctx| {
            act.round(ctx);
            act.schedule(ctx);
        });
    }
}

impl Actor for BrainWatch {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.round(ctx);
        self.schedule(ctx);
    }
}
