//! Paid admission (issue 17): under [`crate::roster::BrainPolicy::paid_admission`] a miner is
//! admitted only once its `Register` transaction — which pays the Brain's registration fee to
//! the Brain's owner — is final on the ledger. Only validators keep the ledger, so every
//! [`EVERY_BLOCKS`] blocks this actor asks one of the Brain's validators (a different one each
//! round; this node's own ledger when it is one) for the miners registered there
//! ([`LedgerRequest::Registrations`]) and hands the set to membership, which re-runs admission.
//! A node that can reach no validator says so in its log; its roster then admits no miner.

use std::time::Duration;

use actix::prelude::*;
use brainmesh_ledger::clock::ChainClock;
use brainmesh_ledger::BrainId;

use crate::ledger_client::{ask, pick_target};
use crate::messages::LedgerRegistrations;
use crate::network_message::NetworkSender;
use crate::protocols::sync::{LedgerRequest, LedgerResponse};
use crate::rollup::LedgerHandle;
use crate::MembershipHandle;

/// A round every this many blocks.
pub const EVERY_BLOCKS: u64 = 2;

pub struct PaidAdmission {
    me: String,
    brain: BrainId,
    net: NetworkSender,
    membership: MembershipHandle,
    to: Recipient<LedgerRegistrations>,
    ledger: Option<LedgerHandle>,
    clock: ChainClock,
    turn: usize,
    warned: bool,
}

impl PaidAdmission {
    pub fn new(
        me: String,
        brain: BrainId,
        net: NetworkSender,
        membership: MembershipHandle,
        to: Recipient<LedgerRegistrations>,
        ledger: Option<LedgerHandle>,
        clock: ChainClock,
    ) -> Self {
        Self { me, brain, net, membership, to, ledger, clock, turn: 0, warned: false }
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
                    Some(LedgerResponse::Registrations { brain: b, miners, .. }) if b == brain => Some(miners),
                    _ => None,
                }
            }
            .into_actor(self)
            .map(|miners, act, _ctx| match miners {
                Some(m) => {
                    act.warned = false;
                    act.to.do_send(LedgerRegistrations { brain: act.brain, miners: m.into_iter().collect() });
                }
                None if !act.warned => {
                    act.warned = true;
                    tracing::warn!(
                        brain = act.brain,
                        "paid admission: no validator of this Brain answered; miners are admitted only once \
                         their paid registrations are known"
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

impl Actor for PaidAdmission {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.round(ctx);
        self.schedule(ctx);
    }
}
