//! Cerberus Squeezing (whitepaper §4.2, §5, §7.1): head-importance pruning and quantization of
//! a Llama model into a new, physically smaller model directory that loads and runs through the
//! same engine.
//!
//! - [`importance`]: S(h) by autograd on a per-head mask over calibration text;
//! - [`select`]: heads kept by threshold θ or by a compute budget (§7.1.3);
//! - [`export`]: the pruned weights (q/k/v/o slices gone) as safetensors + `config.json` with
//!   per-layer head maps, optionally with int8 or int4 weights (32-wide groups, dequantized in
//!   the decode matmul), optionally with the §5.1 activation-squeezing stage switched on;
//! - [`activation`]: that stage (it lives in [`crate::act_squeeze`], which the Llama forward
//!   pass uses; the weight quantization tag is [`crate::quant::Quant`], which the loader reads).

pub mod export;
pub mod importance;
pub mod select;

/// The activation-squeezing stage, under its former path.
pub use crate::act_squeeze as activation;

pub use crate::act_squeeze::ActSqueeze;
pub use export::{export, ExportOptions, ExportReport, Quant};
pub use importance::{head_importance, Importance};
pub use select::{by_budget, by_threshold, plan, Keep, LayerPlan};

/// Token windows of `len` tokens cut from `ids`, at most `max` of them.
pub fn windows(ids: &[u32], len: usize, max: usize) -> Vec<Vec<u32>> {
    ids.chunks_exact(len.max(2)).take(max).map(|c| c.to_vec()).collect()
}
