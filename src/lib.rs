//! brainmesh: one peer = one libp2p swarm + a set of actix actors.
//!
//! `src/` holds the CLI, configuration, node wiring, the libp2p network and the HTTP server;
//! the actors live in the `brainmesh-actors` crate and the models in `brainmesh-models`.

pub mod config;
pub mod gateway;
pub mod http;
pub mod network;
pub mod node;
pub mod sim;

pub use config::NodeConfig;
pub use node::Node;
