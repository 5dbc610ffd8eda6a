//! brainmesh actors: one actix actor per job of a peer, the wire protocols they speak, and the
//! router between the network and them. actix is confined to this crate; the node (`src/`)
//! starts the actors with [`start_actors`] and talks to them through [`Inbox`] (network events
//! in, as a [`NetworkEvents`]) and the handles in [`NodeActors`]. Pure logic (economics, audit
//! judgement, ledger) lives in `brainmesh-ledger`; models in `brainmesh-models`.
//!
//! * Actors, each in its module with its messages: [`membership`], [`miner`], [`distributor`],
//!   [`auditor`], [`rollup`], [`receipt`] (the receipt book), [`fhe_service`].
//! * [`protocols`]: one folder per wire protocol (messages, limits, stateless handlers).
//! * [`inbox`]: the router; [`network_message`]: the command enum to the network service and
//!   the [`NetworkEvents`] trait back from it; [`messages`]: actix message types.
//! * [`start`]: which actors run for which roles.

pub mod adversary;
pub mod auditor;
pub mod brain_watch;
pub mod candidates;
pub mod distributor;
pub mod distributor_handle;
pub mod fhe_client;
pub mod fhe_service;
pub mod identity;
pub mod inbox;
pub mod ledger_client;
pub mod load;
pub mod membership;
pub mod membership_handle;
pub mod messages;
pub mod metrics;
pub mod miner;
pub mod network_message;
pub mod outbox;
pub mod peer_thread;
pub mod protocols;
pub mod receipt;
pub mod recheck;
pub mod rollup;
pub mod roster;
pub mod routing;
pub mod seal;
pub mod sealed_model;
pub mod spend_check;
pub mod start;
pub mod store;
pub mod task;
pub mod transcript;

pub use brainmesh_ledger as ledger;
pub use brainmesh_models as models;
pub use distributor_handle::DistributorHandle;
pub use identity::Identity;
pub use inbox::Inbox;
pub use membership::MembershipConfig;
pub use membership_handle::MembershipHandle;
pub use messages::RosterSnapshot;
pub use metrics::Metrics;
pub use network_message::{NetworkError, NetworkEvents, NetworkInfo, NetworkMessage, NetworkSender, Proto};
pub use protocols::Reject;
pub use start::{start_actors, ActorsConfig, NodeActors};
