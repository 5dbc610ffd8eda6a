//! The whitepaper's dynamic quantization (§5.1), done by the client before encryption.
//!
//! For one sample x (an embedding of M values):
//! 1. σ = sqrt(1/M Σ (x_j − μ)²)                                   (§5.1.1)
//! 2. S = α if σ > T else 1/α; the sample is scaled by S            (§5.1.2)
//! 3. the scaled values are cut into L levels between the sample's own minimum and maximum:
//!    Q = (max − min) / L and code_j = min(L − 1, ⌊(S·x_j − min) / Q⌋), so that
//!    x̂_j = code_j·Q + min is the whitepaper's q_ij                   (§5.1.3)
//!
//! Only the integer codes are encrypted and sent. The per-sample numbers (σ, S, min, Q) stay
//! with the client: the head is trained on the codes themselves, so the miner never needs them.
//! Note what this implies: because min and Q are taken per sample *after* scaling, the codes do
//! not depend on S at all — the adaptive scale only changes the client-side dequantization
//! (x̂/S). We keep S because it is the whitepaper's algorithm and because it is what a client
//! would need to map codes back to the embedding's scale; the docs say so.

use serde::{Deserialize, Serialize};

/// §5.1's parameters: L levels, threshold T on the per-sample standard deviation, factor α.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicQuantizer {
    pub levels: u32,
    pub threshold: f32,
    pub alpha: f32,
}

/// One quantized sample: the codes that get encrypted, and what stays with the client.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedSample {
    /// codes in `0..levels`
    pub codes: Vec<u8>,
    /// σ_i of the raw sample
    pub std: f32,
    /// S_i (α or 1/α)
    pub scale: f32,
    /// min_i of the scaled sample
    pub min: f32,
    /// Q_i, the step between levels (0 for a constant sample)
    pub step: f32,
}

impl QuantizedSample {
    /// x̂_j / S: the value a code stands for, back on the embedding's own scale.
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes.iter().map(|&c| (c as f32 * self.step + self.min) / self.scale).collect()
    }
}

impl Default for DynamicQuantizer {
    /// 16 levels (4-bit codes); T = 1/sqrt(384) ≈ the σ of a unit-norm 384-d embedding;
    /// α = 0.5 as in the whitepaper's pseudocode (`scale_factor: 0.5`).
    fn default() -> Self {
        DynamicQuantizer { levels: 16, threshold: 0.051, alpha: 0.5 }
    }
}

impl DynamicQuantizer {
    /// Quantizes one sample. Non-finite inputs are treated as 0 so that a malformed embedding
    /// cannot produce codes outside `0..levels`.
    pub fn quantize(&self, x: &[f32]) -> QuantizedSample {
        let levels = self.levels.clamp(2, 256);
        let clean: Vec<f32> = x.iter().map(|&v| if v.is_finite() { v } else { 0.0 }).collect();
        let m = clean.len().max(1) as f64;
        let mean = clean.iter().map(|&v| v as f64).sum::<f64>() / m;
        let var = clean.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m;
        let std = var.sqrt() as f32;
        let scale = if std > self.threshold { self.alpha } else { 1.0 / self.alpha };
        let scaled: Vec<f32> = clean.iter().map(|&v| v * scale).collect();
        let min = scaled.iter().copied().fold(f32::INFINITY, f32::min);
        let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (min, max) = if min.is_finite() && max.is_finite() { (min, max) } else { (0.0, 0.0) };
        let step = (max - min) / levels as f32;
        let codes = scaled
            .iter()
            .map(
                |&v| {
                    if step > 0.0 {
                        (((v - min) / step).floor() as i64).clamp(0, levels as i64 - 1) as u8
                    } else {
                        0
                    }
                },
            )
            .collect();
        QuantizedSample { codes, std, scale, min, step }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_cover_all_levels_and_stay_in_range() {
        let q = DynamicQuantizer::default();
        let x: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() * 0.1).collect();
        let s = q.quantize(&x);
        assert_eq!(s.codes.len(), 384);
        assert!(s.codes.iter().all(|&c| c < 16));
        assert!(s.codes.contains(&0) && s.codes.contains(&15));
    }

    #[test]
    fn adaptive_scale_follows_the_threshold_and_dequantization_is_within_one_step() {
        let q = DynamicQuantizer { levels: 16, threshold: 0.05, alpha: 0.5 };
        let wide: Vec<f32> = (0..100).map(|i| (i as f32 - 50.0) / 100.0).collect();
        let narrow: Vec<f32> = wide.iter().map(|v| v * 0.01).collect();
        let sw = q.quantize(&wide);
        let sn = q.quantize(&narrow);
        assert_eq!(sw.scale, 0.5);
        assert_eq!(sn.scale, 2.0);
        for (s, x) in [(&sw, &wide), (&sn, &narrow)] {
            let back = s.dequantize();
            for (a, b) in back.iter().zip(x.iter()) {
                assert!((a - b).abs() <= s.step / s.scale + 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn non_finite_and_constant_inputs_give_valid_codes() {
        let q = DynamicQuantizer::default();
        let s = q.quantize(&[f32::NAN, f32::INFINITY, 1.0, -1.0]);
        assert!(s.codes.iter().all(|&c| c < 16));
        let c = q.quantize(&[0.3; 10]);
        assert!(c.codes.iter().all(|&v| v == 0));
    }
}
