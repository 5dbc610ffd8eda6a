//! `/brainmesh/task/1`: sealed assignments (gateway → miner) and sealed result chunks
//! (miner → gateway), each answered by an [`Ack`]. The router (`crate::inbox`) decodes a
//! [`TaskWire`] once: assignments go to the miner actor, chunks to the distributor.

mod message;

pub use message::*;

/// The libp2p protocol id.
pub const PROTOCOL: &str = "/brainmesh/task/1";
