//! The encrypted-mode service of a miner: a thin actor in front of a dedicated thread that owns
//! the Brain's encrypted head ([`brainmesh_models::fhe::Miner`]) and the key uploads in flight.
//! Evaluating the head takes seconds of CPU, so it never runs on the actor's arbiter.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use brainmesh_ledger::clock::ChainClock;

use actix::prelude::*;
use brainmesh_models::fhe::{self, FheError, QuantizedHead, WireRequest};
use tokio::sync::oneshot;

use crate::messages::FheIn;
use crate::metrics::Metrics;
use crate::protocols::fhe::{Chunk, FheFail, FheMsg, FheReply, KeyUploads};
use crate::protocols::Reject;

/// Jobs waiting for the head beyond this are refused with `Busy`.
const MAX_QUEUE: usize = 8;

type Job = (String, Vec<u8>, oneshot::Sender<Vec<u8>>);

pub struct FheService {
    jobs: std_mpsc::SyncSender<Job>,
    metrics: Metrics,
}

impl FheService {
    /// Starts the head's thread. The head's keys cache holds 8 client keys (≈ 1 GB decompressed
    /// for the 2_3 set), uploads in flight at most 2, each dropped after 5 minutes of silence.
    pub fn new(head: QuantizedHead, metrics: Metrics, clock: ChainClock) -> Result<Self, FheError> {
        let head_id = head.head_id();
        let spec_json = serde_json::to_string(&head.spec).map_err(|e| FheError::Wire(e.to_string()))?;
        let miner = fhe::Miner::new(head)?;
        let (jobs, rx) = std_mpsc::sync_channel::<Job>(MAX_QUEUE);
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("brainmesh-fhe".into())
            .spawn(move || {
                let mut w = Worker {
                    miner,
                    uploads: KeyUploads::new(2, Duration::from_secs(300)),
                    head_id,
                    spec_json,
                    metrics: m,
                    clock,
                };
                while let Ok((peer, data, reply)) = rx.recv() {
                    let _ = reply.send(w.handle(&peer, &data).to_bytes());
                }
            })
            .map_err(|e| FheError::Wire(format!("cannot start the encrypted-mode thread: {e}")))?;
        Ok(FheService { jobs, metrics })
    }
}

impl Actor for FheService {
    type Context = Context<Self>;
}

impl Handler<FheIn> for FheService {
    type Result = ResponseFuture<Vec<u8>>;

    fn handle(&mut self, msg: FheIn, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.jobs.try_send((msg.peer.into(), msg.data, tx)) {
            let busy = matches!(e, std_mpsc::TrySendError::Full(_));
            self.metrics.task_event(if busy { "fhe_busy" } else { "fhe_stopped" });
            let r = FheReply::error(
                FheFail::Busy,
                if busy { "encrypted-mode queue full" } else { "encrypted-mode thread stopped" },
            );
            return Box::pin(async move { r.to_bytes() });
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| FheReply::error(FheFail::Busy, "encrypted-mode thread stopped").to_bytes())
        })
    }
}

struct Worker {
    miner: fhe::Miner,
    uploads: KeyUploads,
    head_id: String,
    spec_json: String,
    metrics: Metrics,
    clock: ChainClock,
}

impl Worker {
    fn handle(&mut self, peer: &str, data: &[u8]) -> FheReply {
        let msg = match FheMsg::from_bytes(data) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.reject(Reject::Malformed);
                return FheReply::error(FheFail::Malformed, e.to_string());
            }
        };
        match msg {
            FheMsg::Describe => FheReply::Head { head_id: self.head_id.clone(), spec_json: self.spec_json.clone() },
            FheMsg::KeyChunk { key_id, offset, total, bytes } => {
                match self.uploads.chunk(peer, key_id, offset, total, &bytes, self.clock.instant()) {
                    Ok(Chunk::Partial { have }) => FheReply::Key { have, installed: false },
                    Ok(Chunk::Complete(key)) => match self.miner.install_key(&key) {
                        Ok(_) => {
                            self.metrics.task_event("fhe_key_installed");
                            tracing::info!(%peer, key = %hex::encode(&key_id[..8]), bytes = key.len(), "client server key installed");
                            FheReply::Key { have: key.len() as u64, installed: true }
                        }
                        Err(e) => {
                            self.metrics.task_event("fhe_key_refused");
                            FheReply::error(FheFail::Upload, format!("key refused: {e}"))
                        }
                    },
                    Err(e) => {
                        self.metrics.task_event("fhe_upload_refused");
                        FheReply::Error { kind: FheFail::Upload, have: e.resume_at(), message: e.to_string() }
                    }
                }
            }
            FheMsg::Classify { request } => {
                let req = match WireRequest::from_bytes(&request) {
                    Ok(r) => r,
                    Err(e) => {
                        self.metrics.reject(Reject::Malformed);
                        return FheReply::error(FheFail::Malformed, e.to_string());
                    }
                };
                // Real CPU work: timed on the machine's clock whatever the chain clock is.
                #[allow(clippy::disallowed_methods)]
                let (t, cpu) = (Instant::now(), fhe::head::process_cpu_seconds());
                match self.miner.serve(&req).and_then(|(resp, _)| resp.to_bytes()) {
                    Ok(response) => {
                        self.metrics.task_event("fhe_classified");
                        FheReply::Logits {
                            response,
                            miner_cpu_s: fhe::head::process_cpu_seconds() - cpu,
                            miner_wall_s: t.elapsed().as_secs_f64(),
                        }
                    }
                    Err(FheError::UnknownKey(k)) => {
                        FheReply::error(FheFail::UnknownKey, format!("no server key {k}: upload it first"))
                    }
                    Err(e) => {
                        self.metrics.task_event("fhe_refused");
                        FheReply::error(FheFail::BadRequest, e.to_string())
                    }
                }
            }
        }
    }
}
