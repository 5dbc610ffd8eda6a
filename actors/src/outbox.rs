//! The gateway's receipt outbox (issue 17): anti-entropy so that no receipt is lost.
//!
//! Every receipt a gateway countersigns is stored with an outbox entry in the same sled write
//! ([`ReceiptStore::insert_countersigned`]), so it survives restarts. Every
//! [`OutboxConfig::every_blocks`] blocks the outbox takes its oldest entries (at most
//! [`OutboxConfig::max_per_round`], each at least [`OutboxConfig::min_age_blocks`] old, so that
//! gossip and the next batch get their chance first) and asks one validator of the Brain — a
//! different one each round — which of them it has in a final block and which it holds pending
//! ([`LedgerRequest::ReceiptStatus`]). Final ones leave the outbox; the ones the validator does
//! not know are sent to it directly ([`LedgerRequest::OfferReceipts`], size-bounded chunks), and
//! the validator batches them like receipts from gossip. An id already in a final block is never
//! batched again, so a receipt offered twice is still counted once.
//!
//! Bounds: one status request (≤ [`MAX_STATUS_IDS`] ids, ~36 KB) and at most
//! `max_per_round` receipts offered per round; memory holds one round's entries.
//!
//! Trust: the gateway believes the validator it asks that an id is final. A validator that lies
//! makes the gateway stop re-offering the receipts it names, nothing more (it cannot forge or
//! duplicate them); asking a different validator each round is what limits this.

use std::time::Duration;

use actix::prelude::*;
use brainmesh_ledger::clock::ChainClock;

use crate::ledger_client::{LedgerClient, Target};
use crate::metrics::Metrics;
use crate::protocols::sync::{LedgerRequest, LedgerResponse, MAX_STATUS_IDS};
use crate::protocols::MAX_MESSAGE_BYTES;
use crate::receipt::{OutboxEntry, ReceiptStore, SignedReceipt};

/// When and how much the outbox re-checks.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// A round every this many blocks.
    pub every_blocks: u64,
    /// Entries younger than this many blocks wait (gossip and batching come first).
    pub min_age_blocks: u64,
    /// Entries looked at per round at most.
    pub max_per_round: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self { every_blocks: 2, min_age_blocks: 2, max_per_round: 512 }
    }
}

/// What one round decided from a validator's status answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Outbox keys of receipts in a final block: removed.
    pub settled: Vec<Vec<u8>>,
    /// Receipts the validator did not know: offered.
    pub offer: Vec<SignedReceipt>,
    /// Receipts the validator holds pending: left for its next proposal.
    pub pending: usize,
}

/// Sorts a round's entries by the validator's answer.
pub fn plan(entries: &[OutboxEntry], included: &[(String, u64)], pending: &[String]) -> Plan {
    use std::collections::HashSet;
    let inc: HashSet<&str> = included.iter().map(|(id, _)| id.as_str()).collect();
    let pen: HashSet<&str> = pending.iter().map(String::as_str).collect();
    let mut p = Plan::default();
    for e in entries {
        if inc.contains(e.id.as_str()) {
            p.settled.push(e.key.clone());
        } else if pen.contains(e.id.as_str()) {
            p.pending += 1;
        } else {
            p.offer.push(e.receipt.clone());
        }
    }
    p
}

/// Splits receipts into offers whose JSON stays under `limit` bytes (a receipt alone over the
/// limit travels alone, and the validator's codec refuses it: such a receipt could not have been
/// gossiped either).
pub fn chunk_offers(receipts: Vec<SignedReceipt>, limit: usize) -> Vec<Vec<SignedReceipt>> {
    let mut out: Vec<Vec<SignedReceipt>> = Vec::new();
    let mut size = 64usize;
    for r in receipts {
        let n = r.body.len() + r.miner_sig.len() + r.gateway_sig.len() + 96;
        match out.last_mut() {
            Some(cur) if size + n <= limit => {
                size += n;
                cur.push(r);
            }
            _ => {
                size = 64 + n;
                out.push(vec![r]);
            }
        }
    }
    out
}

/// The gateway's outbox actor.
pub struct ReceiptOutbox {
    client: LedgerClient,
    store: ReceiptStore,
    clock: ChainClock,
    metrics: Metrics,
    cfg: OutboxConfig,
    running: bool,
    warned: bool,
}

impl ReceiptOutbox {
    pub fn new(
        client: LedgerClient,
        store: ReceiptStore,
        clock: ChainClock,
        metrics: Metrics,
        cfg: OutboxConfig,
    ) -> Self {
        Self { client, store, clock, metrics, cfg, running: false, warned: false }
    }

    fn schedule(&self, ctx: &mut Context<Self>) {
        let wait = Duration::from_millis(self.clock.block_time_ms().saturating_mul(self.cfg.every_blocks.max(1)));
        ctx.run_later(self.clock.wall_wait(wait), |act, ctx| {
            act.round(ctx);
            act.schedule(ctx);
        });
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        self.metrics.receipts_pending.set(self.store.outbox_len() as i64);
        if self.running {
            return;
        }
        let due = self.clock.height().saturating_sub(self.cfg.min_age_blocks);
        let entries = self.store.outbox_due(due, self.cfg.max_per_round.min(MAX_STATUS_IDS));
        if entries.is_empty() {
            return;
        }
        self.running = true;
        let client = self.client.clone();
        ctx.spawn(async move { client.next_target().await }.into_actor(self).map(
            move |target, act, ctx| match target {
                Some(t) => {
                    act.warned = false;
                    act.check(t, entries, ctx)
                }
                None => {
                    if !act.warned {
                        tracing::warn!(
                            waiting = act.store.outbox_len(),
                            "no validator of this Brain is reachable: countersigned receipts wait in the outbox"
                        );
                        act.warned = true;
                    }
                    act.running = false;
                }
            },
        ));
    }

    fn check(&mut self, target: Target, entries: Vec<OutboxEntry>, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        ctx.spawn(
            async move {
                let status = client.ask(&target, LedgerRequest::ReceiptStatus { ids }).await;
                let Some(LedgerResponse::ReceiptStatus { included, pending }) = status else {
                    tracing::debug!(?target, "receipt status not answered: {status:?}");
                    return None;
                };
                let p = plan(&entries, &included, &pending);
                let mut offered = 0u64;
                for chunk in chunk_offers(p.offer.clone(), MAX_MESSAGE_BYTES - 1024) {
                    let n = chunk.len() as u64;
                    match client.ask(&target, LedgerRequest::OfferReceipts { receipts: chunk }).await {
                        Some(LedgerResponse::Offered { refused, .. }) => {
                            offered += n;
                            if refused > 0 {
                                tracing::warn!(
                                    ?target,
                                    refused,
                                    "a validator refused receipts this gateway countersigned"
                                );
                            }
                        }
                        other => {
                            tracing::debug!(?target, "offer not answered: {other:?}");
                            break;
                        }
                    }
                }
                Some((p, offered, target))
            }
            .into_actor(self)
            .map(|res, act, _ctx| {
                act.running = false;
                let Some((p, offered, target)) = res else { return };
                if let Err(e) = act.store.outbox_remove(p.settled.iter().map(Vec::as_slice)) {
                    tracing::error!("cannot update the receipt outbox: {e}");
                }
                act.metrics.receipts_reoffered.inc_by(offered);
                act.metrics.receipts_pending.set(act.store.outbox_len() as i64);
                if offered > 0 || !p.settled.is_empty() {
                    tracing::info!(
                        ?target,
                        settled = p.settled.len(),
                        pending_there = p.pending,
                        reoffered = offered,
                        waiting = act.store.outbox_len(),
                        "receipt outbox round"
                    );
                }
            }),
        );
    }
}

impl Actor for ReceiptOutbox {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.metrics.receipts_pending.set(self.store.outbox_len() as i64);
        self.schedule(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::receipt::Receipt;

    fn entries(n: usize) -> Vec<OutboxEntry> {
        let (m, g) = (Identity::generate(), Identity::generate());
        (0..n)
            .map(|i| {
                let r = Receipt {
                    task_id: format!("t{i}"),
                    block_height: i as u64,
                    proof_digest: "p".repeat(64),
                    io_digest: "i".repeat(64),
                    ..crate::receipt::tests::receipt(&m, &g)
                };
                let (body, sig) = r.sign_as_miner(&m);
                let (sr, _) = SignedReceipt::countersign(body, sig, &g).unwrap();
                OutboxEntry { key: vec![i as u8], height: i as u64, id: sr.id(), receipt: sr }
            })
            .collect()
    }

    #[test]
    fn final_receipts_leave_unknown_ones_are_offered_and_pending_ones_wait() {
        let e = entries(4);
        let p = plan(&e, &[(e[0].id.clone(), 7)], &[e[2].id.clone()]);
        assert_eq!(p.settled, vec![e[0].key.clone()]);
        assert_eq!(p.pending, 1);
        assert_eq!(p.offer, vec![e[1].receipt.clone(), e[3].receipt.clone()]);
        // A validator that knows nothing gets everything offered; ids it was not asked are ignored.
        let p = plan(&e, &[("other".into(), 1)], &[]);
        assert_eq!((p.settled.len(), p.offer.len()), (0, 4));
    }

    #[test]
    fn offers_are_chunked_under_the_request_limit_and_keep_every_receipt() {
        let e = entries(120);
        let all: Vec<SignedReceipt> = e.iter().map(|x| x.receipt.clone()).collect();
        let chunks = chunk_offers(all.clone(), MAX_MESSAGE_BYTES - 1024);
        assert!(chunks.len() > 1, "120 receipts do not fit one request");
        for c in &chunks {
            let bytes = serde_json::to_vec(&LedgerRequest::OfferReceipts { receipts: c.clone() }).unwrap();
            assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
        }
        assert_eq!(chunks.concat(), all);
    }
}
