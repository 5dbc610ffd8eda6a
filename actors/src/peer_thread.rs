//! A thread of its own for one peer's actors (an actix arbiter): what a simulator needs to run
//! many nodes in one process and to kill one of them like `kill -9` — stopping the thread takes
//! every actor, socket and task started on it along.
//!
//! Kept here so that actix stays inside this crate.

use std::future::Future;

use actix::Arbiter;

/// A running peer thread. Dropping it leaves the thread running; [`PeerThread::stop`] ends it.
pub struct PeerThread {
    arbiter: Arbiter,
}

impl PeerThread {
    /// Starts a thread with its own event loop and runs `start` on it; whatever `start` spawns
    /// (actors, network tasks) lives until [`PeerThread::stop`].
    pub fn spawn<F, Fut>(start: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let arbiter = Arbiter::new();
        arbiter.spawn_fn(move || {
            actix::spawn(start());
        });
        Self { arbiter }
    }

    /// Stops the thread's event loop (its actors and tasks are dropped, not shut down
    /// gracefully) and waits until the thread has ended.
    pub async fn stop(self) {
        let a = self.arbiter;
        a.stop();
        let _ = tokio::task::spawn_blocking(move || a.join()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn a_stopped_thread_drops_what_it_was_running() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let t = PeerThread::spawn(move || async move {
            let _keep = tx; // dropped only when the thread's loop ends
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        });
        started_rx.await.unwrap();
        t.stop().await;
        assert!(rx.await.is_err(), "the sender was dropped with the thread");
    }
}
