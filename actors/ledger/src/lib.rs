//! brainmesh-ledger: the pure core of brainmesh (DESIGN.md §5, §6).
//!
//! Everything here is deterministic logic over plain data: it links no actor framework, no
//! model engine, no FHE library, no libp2p and no async runtime, so a simulator, a light client
//! or an explorer can reuse it, and `cargo test -p brainmesh-ledger` builds in seconds.
//!
//! * [`economics`]: whitepaper §3 rules in fixed point (halving, Brains, consensus epoch, pricing).
//! * [`audit`]: validator judgement (spot-check rates, scores, commit-reveal weights, bans).
//! * Ledger core (issue 7): [`merkle`] (RFC 6962-shaped sha256 tree, inclusion proofs), [`tx`]
//!   (signed transactions), [`state`] (`apply_tx`: signature, nonce, balance checks; a refused
//!   transaction changes nothing), [`batch`] (a block's batch, validator votes, finality),
//!   [`settlement`] (receipts debited, fees and emissions credited), [`weights`] (weights on
//!   the ledger and the consensus epoch settlement mints by) and [`store`] (sled; a block or a
//!   settlement is applied in one atomic batch). Amounts are [`economics::Amount`] base units;
//!   nothing uses floating point, every map is a `BTreeMap`, so every peer computes the same bytes.
//! * [`reconcile`]: bucket digests for reconciling validators' pending receipts.
//! * [`clock`]: the one [`clock::ChainClock`] (genesis, block time, height, period) over a
//!   [`clock::TimeSource`] (the wall clock, or a virtual clock a simulator advances).
//! * [`canon`]: the one canonical encoding of signed bytes ([`canon::Enc`]) and the one
//!   signature check ([`canon::verify_sig`]).
//! * [`ids`]: typed identifiers ([`ids::PeerId`], [`ids::BrainId`], [`ids::TaskId`],
//!   [`ids::AccountId`]).
//!
//! Signed bytes are never serde_json: see [`canon::Enc`]. serde_json is used only for storage
//! values and the wire shape of structs whose signature covers the canonical encoding.

#![deny(missing_docs)]

pub mod audit;
pub mod batch;
pub mod canon;
pub mod clock;
pub mod economics;
pub mod ids;
pub mod merkle;
pub mod period;
pub mod reconcile;
pub mod settlement;
pub mod state;
pub mod store;
pub mod tx;
pub mod weights;

#[cfg(test)]
pub(crate) mod testkit;

pub use canon::{hex_array, hex_vec32, sha256, verify_sig, Enc, Hash, Sig};
pub use clock::{ChainClock, TimeSource, VirtualClock, WallClock};
pub use ids::{AccountId, BrainId, PeerId, TaskId};
