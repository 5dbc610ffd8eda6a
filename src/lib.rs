//! brainmesh: one peer = one libp2p swarm + a set of actix actors.
