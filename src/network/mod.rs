//! The libp2p side of a peer: one behaviour, one codec, one task that owns the swarm.

pub mod behaviour;
pub mod codec;
pub mod service;

pub use service::{command_channel, NetError, NetworkService, NetworkSettings};
