//! brainmesh actors: the Brain membership actor, protocol types, signing, storage and metrics.

pub mod economics;
