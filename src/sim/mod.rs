//! `brainmesh sim`: a whole mesh in one process, for researchers.
//!
//! Every peer is the real node stack (the same actors, protocols, codecs, signatures and sled
//! ledger as `brainmesh node`); only three things differ from a deployment: the chain clock
//! (one [`brainmesh_ledger::VirtualClock`] shared by all peers and running `speedup` times
//! faster than the wall), the transport (libp2p's in-memory transport instead of TCP) and the
//! model (a tiny Llama generated from the seed, [`brainmesh_actors::models::tiny`]). Cheating
//! miners run the cheats of [`brainmesh_actors::adversary`] inside the real miner.
//!
//! - [`scenario`]: the TOML a run is described by (`configs/sim/`).
//! - [`load`]: the requests of a run, drawn from the seed.
//! - [`mesh`]: the peers, each on a thread of its own (brainmesh_actors::peer_thread); kill, restart.
//! - [`run`]: one run, block by block: faults, load, sampling, outputs.
//! - [`economics`]: the economics-only fast mode: emission, halving and Yuma consensus over
//!   years of blocks, with no network, model or actors.
//! - [`record`]: the CSV rows and `summary.json`; [`plot`]: the PNG plots; [`report`]: the
//!   summary as a table.
//! - [`yuma`]: miner trust and consensus, validator trust per epoch (the ledger's epoch).
//! - [`compare`]: runs side by side (`--check-determinism`, `--seeds N`).
//!
//! See `docs/simulator.md` for what each mode guarantees.

pub mod compare;
pub mod economics;
pub mod load;
pub mod mesh;
pub mod plot;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod yuma;

pub use run::{run, run_scenario, SimError, SimOptions};
pub use scenario::Scenario;
