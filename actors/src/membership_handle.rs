//! Queries to the membership actor from outside actix (the node, the HTTP server, the
//! distributor handle).

use actix::Addr;

use crate::membership::Membership;
use crate::messages::{self, RosterSnapshot};

/// Queries to the membership actor.
#[derive(Clone)]
pub struct MembershipHandle {
    pub(crate) addr: Addr<Membership>,
}

impl MembershipHandle {
    pub async fn roster(&self) -> Option<RosterSnapshot> {
        self.addr.send(messages::GetRoster).await.ok()
    }

    /// Heartbeat and liveness update now (without waiting for the timer).
    pub async fn tick(&self) {
        let _ = self.addr.send(messages::Tick).await;
    }

    /// Stops the actor (used when a node shuts down in-process).
    pub fn stop(&self) {
        self.addr.do_send(messages::Stop);
    }
}
