//! The node's HTTP server: `GET /status` (JSON), `GET /metrics` (Prometheus text), and the
//! ledger's `GET /ledger/accounts/{id}` and `GET /ledger/brains/{id}` (validators) and `POST /ledger/tx` (every role: a
//! transaction signed by its sender, checked and published on the Brain's rollup topic).

use brainmesh_ledger::BrainId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

use brainmesh_actors::protocols::Reject;

use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::receipt::ReceiptStore;
use brainmesh_actors::roster::BrainView;
use brainmesh_actors::{MembershipHandle, Metrics, NetworkSender};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub peer_id: String,
    pub roles: Vec<Role>,
    pub brain: BrainId,
    pub net: NetworkSender,
    pub membership: MembershipHandle,
    pub metrics: Metrics,
    pub started: Arc<Instant>,
    /// Receipts this node holds (its own as a gateway, and those gossiped on its Brain).
    pub receipts: ReceiptStore,
    /// Validators: the rollup ledger.
    pub ledger: Option<brainmesh_actors::rollup::LedgerHandle>,
}

/// The `/status` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub peer_id: String,
    pub version: String,
    pub roles: Vec<Role>,
    pub brain: BrainId,
    pub registration: String,
    pub listen_addrs: Vec<String>,
    pub connected_peers: Vec<String>,
    pub roster: Vec<BrainView>,
    pub counters: Counters,
    pub uptime_s: u64,
    /// Validators: last final block, last settlement, state digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<brainmesh_actors::rollup::LedgerSummary>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Messages refused, by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    pub rejected_total: u64,
    /// Signed receipts stored on this node.
    pub receipts: u64,
}

pub async fn status(state: &HttpState) -> Status {
    let info = state.net.info().await.unwrap_or_default();
    let roster = state.membership.roster().await;
    let mut counters = Counters::default();
    for r in Reject::ALL {
        counters.rejected.insert(r.label().to_string(), state.metrics.rejected_count(r));
    }
    counters.rejected_total = state.metrics.rejected_total();
    counters.receipts = state.receipts.len() as u64;
    Status {
        peer_id: state.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        roles: state.roles.clone(),
        brain: state.brain,
        registration: roster.as_ref().map(|r| r.registration.clone()).unwrap_or_else(|| "unknown".into()),
        listen_addrs: info.listen_addrs,
        connected_peers: info.connected_peers,
        roster: roster.map(|r| r.brains).unwrap_or_default(),
        counters,
        uptime_s: state.started.elapsed().as_secs(),
        ledger: state.ledger.as_ref().map(|l| l.summary()),
    }
}

async fn get_status(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok().json(status(&state).await)
}

fn error(status: actix_web::http::StatusCode, msg: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": msg.to_string() }))
}

async fn get_account(state: web::Data<HttpState>, path: web::Path<String>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(l) = &state.ledger else {
        return error(StatusCode::NOT_FOUND, "this node keeps no ledger (only validators do)");
    };
    match l.account(path.into_inner()).await {
        Some(a) => HttpResponse::Ok().json(a),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "the ledger is not running"),
    }
}

async fn get_brain(state: web::Data<HttpState>, path: web::Path<String>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(l) = &state.ledger else {
        return error(StatusCode::NOT_FOUND, "this node keeps no ledger (only validators do)");
    };
    let Ok(id) = path.into_inner().parse::<BrainId>() else {
        return error(StatusCode::BAD_REQUEST, "a Brain id is a number from 0 to 65535");
    };
    match l.brain(id).await {
        Some(b) => HttpResponse::Ok().json(b),
        None => error(StatusCode::NOT_FOUND, format!("Brain {id} does not exist on this ledger")),
    }
}

/// A signed transaction (JSON of `ledger::tx::Tx`): refused with 400 if malformed or forged,
/// 409 if replayed (validators only know), else published; 202 with its id.
async fn post_tx(state: web::Data<HttpState>, body: web::Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    use brainmesh_actors::rollup::{RollupMsg, SubmitError};
    use brainmesh_ledger::tx::Tx;
    if body.len() > brainmesh_actors::protocols::MAX_MESSAGE_BYTES {
        state.metrics.reject(Reject::Oversized);
        return error(StatusCode::PAYLOAD_TOO_LARGE, Reject::Oversized);
    }
    let tx: Tx = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            state.metrics.reject(Reject::Malformed);
            return error(StatusCode::BAD_REQUEST, format!("not a transaction: {e}"));
        }
    };
    if !tx.well_formed() {
        state.metrics.reject(Reject::Malformed);
        return error(StatusCode::BAD_REQUEST, "transaction is malformed (empty or oversized id)");
    }
    if !tx.verify(&brainmesh_actors::receipt::public_key_of) {
        state.metrics.reject(Reject::BadSignature);
        return error(StatusCode::BAD_REQUEST, format!("signature does not verify for account {}", tx.from));
    }
    let id = tx.id();
    match &state.ledger {
        Some(l) => match l.submit_signed(tx).await {
            Ok(id) => HttpResponse::Accepted().json(serde_json::json!({ "id": id })),
            Err(SubmitError::Refused(Reject::Replay)) => {
                error(StatusCode::CONFLICT, "replayed: the nonce is already used")
            }
            Err(e @ SubmitError::Refused(_)) => error(StatusCode::BAD_REQUEST, e),
            Err(e @ SubmitError::Unavailable) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        },
        None => {
            let topic = brainmesh_actors::protocols::gossip::TopicKind::Rollup.topic(state.brain);
            let msg = RollupMsg::Tx { tx, sent_ms: brainmesh_ledger::TimeSource::now_ms(&brainmesh_ledger::WallClock) };
            state.net.publish(topic, msg.to_bytes());
            HttpResponse::Accepted().json(serde_json::json!({ "id": id }))
        }
    }
}

async fn get_metrics(state: web::Data<HttpState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

/// Binds and starts the server; returns its address and a handle to stop it.
pub fn serve(state: HttpState, addr: &str) -> std::io::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/status", web::get().to(get_status))
            .route("/metrics", web::get().to(get_metrics))
            .route("/ledger/accounts/{id}", web::get().to(get_account))
            .route("/ledger/brains/{id}", web::get().to(get_brain))
            .route("/ledger/tx", web::post().to(post_tx))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    let bound = server.addrs().first().copied().ok_or_else(|| std::io::Error::other("no address bound"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((bound, handle))
}
