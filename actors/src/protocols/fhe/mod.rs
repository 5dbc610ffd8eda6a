//! `/brainmesh/fhe/1`: encrypted mode (key upload in chunks, encrypted classification).
//! Served by the FHE service actor (`crate::fhe_service`); clients in `crate::fhe_client`.

mod message;

pub use message::*;

/// The libp2p protocol id.
pub const PROTOCOL: &str = "/brainmesh/fhe/1";
