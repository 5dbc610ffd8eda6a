//! Actix message types (network → actors, and queries), kept apart from the actors
//! themselves as in actix's chat-broker example.

use actix::Message;
use brainmesh_ledger::BrainId;
use brainmesh_ledger::PeerId;

use crate::protocols::Reject;
use crate::roster::BrainView;

/// A gossipsub message that arrived on one of our topics. `source` is the gossipsub author
/// (verified by gossipsub's own signature), `None` if the message carried none.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), Reject>")]
pub struct GossipIn {
    pub topic: String,
    pub source: Option<PeerId>,
    pub propagation_source: PeerId,
    pub data: Vec<u8>,
}

/// A request on the encrypted-mode protocol from `peer`; the result is the response bytes.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Vec<u8>")]
pub struct FheIn {
    pub peer: PeerId,
    pub data: Vec<u8>,
}

/// Connection and liveness events from the swarm.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum PeerEvent {
    Connected { peer: PeerId },
    Disconnected { peer: PeerId },
    PingRtt { peer: PeerId, rtt_us: u64 },
}

/// The roster and this peer's own registration state.
#[derive(Message, Debug, Clone)]
#[rtype(result = "RosterSnapshot")]
pub struct GetRoster;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RosterSnapshot {
    pub brain: BrainId,
    /// `admitted`, or the reason this peer's registration was refused.
    pub registration: String,
    pub brains: Vec<BrainView>,
}

/// Publish a heartbeat now and update liveness (sent by the actor's own timer; tests may
/// send it to avoid waiting).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Tick;

/// Stop the actor (in-process node shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Stop;

/// The miners of a Brain whose registration is final on the ledger (peer id → height paid at),
/// as a validator reported them; membership admits miners by it under paid admission.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LedgerRegistrations {
    pub brain: BrainId,
    pub miners: std::collections::BTreeMap<String, u64>,
}
