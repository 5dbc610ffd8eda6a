//! Starting a node's actors: which ones run follows the roles in [`ActorsConfig`]; what comes
//! back ([`NodeActors`]) is what the node and its HTTP server hold.

use std::sync::Arc;

use actix::{Actor, Recipient};
use brainmesh_ledger::clock::ChainClock;

use crate::candidates::CandidateSource;
use crate::distributor_handle::DistributorHandle;
use crate::identity::Identity;
use crate::inbox::{Inbox, RollupRecipients};
use crate::membership::MembershipConfig;
use crate::membership_handle::MembershipHandle;
use crate::metrics::Metrics;
use crate::network_message::NetworkSender;
use crate::{
    auditor, brain_watch, distributor, fhe_service, ledger_client, load, membership, messages, miner, models, outbox,
    receipt, recheck, rollup, spend_check, store, transcript,
};

/// What to run on this node besides membership.
pub struct ActorsConfig {
    pub membership: MembershipConfig,
    /// Miner role: its configuration and the loaded model.
    pub miner: Option<(miner::MinerConfig, models::Model)>,
    /// Miner role with `miner.embedding_model`: the embedding model served beside it.
    pub embedder: Option<miner::Embedder>,
    /// Gateway role: the distributor.
    pub distributor: Option<distributor::DistributorConfig>,
    /// Miner role with `miner.fhe_head`: the encrypted head it serves.
    pub fhe: Option<models::fhe::QuantizedHead>,
    /// Validator role: the auditor and its copy of the declared model.
    pub auditor: Option<(auditor::AuditorConfig, models::Model)>,
    /// The chain clock every actor reads time from (wall clock in a node, virtual in a simulator).
    pub clock: ChainClock,
    /// Validator role: the rollup (ledger) actor's settings; `None`: no ledger on this peer.
    pub ledger: Option<rollup::RollupConfig>,
}

/// The started actors of one node.
pub struct NodeActors {
    pub inbox: Inbox,
    pub membership: MembershipHandle,
    pub tasks: Option<DistributorHandle>,
    pub receipts: receipt::ReceiptStore,
    /// The ban list (every role) and, on validators, audit stats and revealed weights.
    pub audit: auditor::AuditShared,
    /// Validators: the ledger.
    pub ledger: Option<rollup::LedgerHandle>,
}

/// Starts the node's actors on the current actix arbiter. Must be called from within an actix
/// system (`actix_rt::System`).
pub fn start_actors(
    id: Arc<Identity>,
    cfg: ActorsConfig,
    store: store::SledStore,
    net: NetworkSender,
    metrics: Metrics,
) -> Result<NodeActors, store::StoreError> {
    let receipts = receipt::ReceiptStore::open(store.db())?;
    let db = store.db().clone();
    let brain = cfg.membership.brain;
    let paid_admission = cfg.membership.policy.paid_admission;
    let load = cfg.miner.as_ref().map(|_| Arc::new(load::LoadReport::default()));
    // Every role keeps the ban list (gateways route around banned miners), on disk.
    let shared = auditor::AuditShared::persisted(brain, recheck::BanStore::open(store.db())?);
    let transcripts = match &cfg.miner {
        Some((m, _)) => Some(transcript::TranscriptStore::open(store.db(), m.transcript_blocks)?),
        None => None,
    };
    let evidence = match &cfg.auditor {
        Some(_) => Some(recheck::EvidenceStore::open(store.db())?),
        None => None,
    };
    let membership_addr = membership::Membership::new(
        id.clone(),
        cfg.membership,
        Box::new(store),
        net.clone(),
        metrics.clone(),
        load.clone(),
        cfg.clock.clone(),
    )
    .start();
    let mut peers: Vec<Recipient<messages::PeerEvent>> = vec![membership_addr.clone().recipient()];
    let assign = match (cfg.miner, load) {
        (Some((mcfg, model)), Some(load)) => {
            let ts = transcripts
                .clone()
                .ok_or_else(|| store::StoreError::Sled(sled::Error::Unsupported("no transcript store".into())))?;
            let served = miner::Served { model, embedder: cfg.embedder };
            Some(
                miner::Miner::new(id.clone(), mcfg, served, net.clone(), load, metrics.clone(), ts).start().recipient(),
            )
        }
        _ => None,
    };
    let membership = MembershipHandle { addr: membership_addr.clone() };
    let (rollup, ledger) = match cfg.ledger {
        Some(lcfg) => {
            let r = rollup::Rollup::new(
                id.clone(),
                lcfg,
                &db,
                receipts.clone(),
                net.clone(),
                membership.clone(),
                metrics.clone(),
            )
            .map_err(|e| store::StoreError::Sled(sled::Error::Unsupported(format!("ledger: {e}"))))?;
            let handle = r.start_with_handle();
            let recipients = RollupRecipients {
                gossip: handle.recipient_gossip(),
                receipts: handle.recipient_receipts(),
                sync: handle.recipient_sync(),
            };
            (Some(recipients), Some(handle))
        }
        None => (None, None),
    };
    // One way to the Brain's ledger (a validator in turn, or this node's own rollup) for the
    // watch, the outbox and the spend check.
    let ledger_client = ledger_client::LedgerClient::new(
        id.peer_id().to_string(),
        brain,
        net.clone(),
        membership.clone(),
        ledger.clone(),
    );
    // The Brain as the ledger holds it: paid registrations (membership, under paid admission)
    // and the declared model (the gateway's routing).
    let declared: Option<crate::candidates::DeclaredModel> = cfg.distributor.as_ref().map(|_| Default::default());
    if paid_admission || declared.is_some() {
        brain_watch::BrainWatch::new(
            ledger_client.clone(),
            paid_admission.then(|| membership_addr.clone().recipient()),
            declared.clone(),
            cfg.clock.clone(),
        )
        .start();
    }
    // Gateways route tasks; validators that audit send their quality checks the same way.
    let (chunks, tasks) = match cfg.distributor {
        Some(dcfg) => {
            let source = CandidateSource {
                membership: membership.clone(),
                brain,
                bans: shared.bans.clone(),
                clock: cfg.clock.clone(),
                declared: declared.clone().unwrap_or_default(),
            };
            let addr = distributor::Distributor::new(
                id.clone(),
                dcfg,
                net.clone(),
                receipts.clone(),
                metrics.clone(),
                cfg.clock.clone(),
            )
            .with_candidates(source.clone())
            .start();
            peers.push(addr.clone().recipient());
            let spend = spend_check::SpendCheck::new(ledger_client.clone(), cfg.clock.clone());
            let handle = DistributorHandle { addr, source, spend: Some(spend) };
            // No countersigned receipt is lost: the outbox re-offers what no validator finalised.
            outbox::ReceiptOutbox::new(
                ledger_client.clone(),
                receipts.clone(),
                cfg.clock.clone(),
                metrics.clone(),
                outbox::OutboxConfig::default(),
            )
            .start();
            (Some(handle.addr.clone().recipient()), Some(handle))
        }
        None => (None, None),
    };
    let auditor_addr = match (cfg.auditor, &evidence) {
        (Some((acfg, model)), Some(ev)) => Some(
            auditor::Auditor::new(id.clone(), acfg, model, net.clone(), metrics.clone(), shared.clone(), ev.clone())
                .with_quality_checks(tasks.clone())
                .with_ledger(ledger.clone())
                .start(),
        ),
        _ => None,
    };
    let audit_gossip: Recipient<messages::GossipIn> = match &auditor_addr {
        Some(a) => a.clone().recipient(),
        None => auditor::BanBook::new(brain, shared.clone(), metrics.clone()).start().recipient(),
    };
    let book = receipt::ReceiptBook::new(brain, receipts.clone(), metrics.clone(), auditor_addr.map(|a| a.recipient()))
        .start();
    let fhe = match cfg.fhe {
        Some(head) => match fhe_service::FheService::new(head, metrics.clone(), cfg.clock.clone()) {
            Ok(s) => Some(s.start().recipient()),
            Err(e) => {
                tracing::error!("encrypted head not served: {e}");
                None
            }
        },
        None => None,
    };
    let inbox = Inbox {
        gossip: membership_addr.clone().recipient(),
        receipts: book.recipient(),
        audit: audit_gossip,
        transcripts,
        evidence,
        sync: membership_addr.recipient(),
        peers,
        assign,
        chunks,
        fhe,
        rollup,
        metrics,
    };
    Ok(NodeActors { inbox, membership, tasks, receipts, audit: shared, ledger })
}
