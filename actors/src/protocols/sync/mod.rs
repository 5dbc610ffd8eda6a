//! `/brainmesh/sync/1`: roster sync (served by the membership actor) and ledger catch-up (served
//! by the rollup actor on validators). The router (`crate::inbox`) decodes a [`SyncWire`] once
//! and hands the typed request to its actor.

mod message;

pub use message::*;

/// The libp2p protocol id.
pub const PROTOCOL: &str = "/brainmesh/sync/1";
