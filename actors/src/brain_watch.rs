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
use brainmesh_ledger::BrainId;

use crate::candidates::DeclaredModel;
use crate::ledger_client::{ask, pick_target};
use crate::messages::LedgerRegistrations;
use crate::network_message::NetworkSender;
use crate::protocols::sync::{LedgerRequest, LedgerResponse};
use crate::rollup::LedgerHandle;
use crate::MembershipHandle;

/// A round every this many blocks.
pub const EVERY_BLOCKS: u64 = 2;

pub struct BrainWatch {
    me: String,
    brain: BrainId,
    net: NetworkSender,
    membership: MembershipHandle,
    /// Membership, when paid admission is on.
    to: Option<Recipient<LedgerRegistrations>>,
    /// The gateway's candidate source, when this node routes tasks.
    declared: Option<DeclaredModel>,
    ledger: Option<LedgerHandle>,
    clock: ChainClock,
    turn: usize,
    warned: bool,
}

impl BrainWatch {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: String,
        brain: BrainId,
        net: NetworkSender,
        membership: MembershipHandle,
        to: Option<Recipient<LedgerRegistrations>>,
        declared: Option<DeclaredModel>,
        ledger: Option<LedgerHandle>,
        clock: ChainClock,
    ) -> Self {
        Self { me, brain, net, membership, to, declared, ledger, clock, turn: 0, warned: false }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        let (net, membership, ledger, me, brain) =
            (self.net.clone(), self.membership.clone(), self.ledger.clone(), self.me.clone(), self.brain);
        let turn = self.turn;
        self.turn = self.turn.wrapping_add(1);
        ctx.spawn(
            async move {
                let target = pick_target(membership.roster().await, brain, &me, ledger.is_some(), turn)?;
                match ask(&net, ledger.as_ref(), &target, LedgerRequest::Registrations { brain }).await {
                    Some(LedgerResponse::Registrations { brain: b, miners, model, .. }) if b == brain => {
                        Some((miners, model))
                    }
                    _ => None,
                }
            }
            .into_actor(self)
            .map(|answer, act, _ctx| match answer {
                Some((miners, model)) => {
                    act.warned = false;
                    if let Some(to) = &act.to {
                        to.do_send(LedgerRegistrations { brain: act.brain, miners: miners.into_iter().collect() });
                    }
                    if let Some(d) = &act.declared {
                        if let Ok(mut d) = d.write() {
                            if *d != model {
                                tracing::info!(brain = act.brain, ?model, "the Brain's declared model");
                                *d = model;
                            }
                        }
                    }
                }
                None if !act.warned => {
                    act.warned = true;
                    tracing::warn!(
                        brain = act.brain,
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
