//! `/brainmesh/audit/1`: a validator fetches a miner's signed transcript of a task, or another
//! validator's evidence behind a ban, to re-check it on its own. Served by [`serve`] (a store
//! read, no actor).

mod handler;
mod message;

pub use handler::serve;
pub use message::*;

/// The libp2p protocol id.
pub const PROTOCOL: &str = "/brainmesh/audit/1";
