//! Gossipsub: one set of topics per Brain ([`TopicKind`]); membership and heartbeat messages
//! are signed [`Envelope`]s around a [`Payload`]. Handled by the membership actor
//! (`crate::membership`); receipts, audit and rollup topics by their actors.

mod message;

pub use message::*;
