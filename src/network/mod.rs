//! The libp2p side of a peer: one behaviour, one codec, one task that owns the swarm. The
//! service hands what arrives to any [`brainmesh_actors::NetworkEvents`] sink: the node's
//! router, or a [`ChannelEvents`] when it runs alone.

pub mod behaviour;
pub mod codec;
pub mod events;
pub mod link;
pub mod service;

pub use events::{ChannelEvents, NetEvent};
pub use service::{command_channel, NetError, NetworkService, NetworkSettings};
