//! The whitepaper's squeezing module for activations (§5.1), as an optional inference stage:
//! every input row of a linear layer (one token's activations) is scaled by S = α when its
//! standard deviation σ exceeds T (else 1/α), cut into L levels between its own minimum and
//! maximum (Q = (max − min)/L, code = min(L − 1, ⌊(S·x − min)/Q⌋)), and replaced by what its
//! codes stand for, (code·Q + min)/S. Defaults from the whitepaper's pseudocode: L = 256,
//! T = 0.1, α = 0.5. The slice version is [`crate::fhe::DynamicQuantizer`] (the same formulas,
//! used by encrypted mode's client); this is the tensor version, checked against it.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActSqueeze {
    pub levels: u32,
    pub threshold: f32,
    pub alpha: f32,
}

impl Default for ActSqueeze {
    fn default() -> Self {
        ActSqueeze { levels: 256, threshold: 0.1, alpha: 0.5 }
    }
}

impl ActSqueeze {
    /// Quantize-dequantize `x` row by row over its last dimension (f32 arithmetic).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let levels = self.levels.clamp(2, 256) as f64;
        // σ with 1/M (population), as §5.1.1 writes it.
        let std = xf.std_dim(-1, false, true);
        let big = std.gt(self.threshold as f64);
        let scale = big.to_kind(Kind::Float) * (self.alpha as f64 - 1.0 / self.alpha as f64) + 1.0 / self.alpha as f64;
        let scaled = &xf * &scale;
        let min = scaled.amin(-1, true);
        let max = scaled.amax(-1, true);
        let step = (&max - &min) / levels;
        let safe = step.clamp_min(f32::MIN_POSITIVE as f64);
        let codes = ((&scaled - &min) / &safe).floor().clamp(0.0, levels - 1.0);
        let codes = codes * step.gt(0.0).to_kind(Kind::Float);
        ((codes * &step + &min) / &scale).to_kind(kind)
    }

    fn quantizer(&self) -> crate::fhe::DynamicQuantizer {
        crate::fhe::DynamicQuantizer { levels: self.levels, threshold: self.threshold, alpha: self.alpha }
    }

    /// Reference on one row: the slice implementation.
    pub fn apply_row(&self, x: &[f32]) -> Vec<f32> {
        self.quantizer().quantize(x).dequantize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_computed_row_with_small_sigma_is_scaled_by_one_over_alpha() {
        // x = [0, 0.1, 0.2, 0.3]: μ = 0.15, σ = sqrt(0.0125) ≈ 0.1118 > T = 0.1 → S = α = 0.5.
        // Scaled: [0, 0.05, 0.1, 0.15]; min 0, max 0.15; with L = 4, Q = 0.0375;
        // codes ⌊s/Q⌋ = [0, 1, 2, 4→3]; x̂ = code·Q / S = [0, 0.075, 0.15, 0.225].
        let p = ActSqueeze { levels: 4, threshold: 0.1, alpha: 0.5 };
        let x = Tensor::from_slice(&[0.0f32, 0.1, 0.2, 0.3]).view([1, 4]);
        let got = Vec::<f32>::try_from(p.apply(&x).view([-1])).unwrap();
        let want = [0.0f32, 0.075, 0.15, 0.225];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        // σ below T: S = 1/α = 2. x = [0, 0.01, 0.02, 0.03] → scaled [0, .02, .04, .06], Q = .015,
        // codes [0, 1, 2, 3] (4 → clamped), x̂ = code·Q/2 = [0, .0075, .015, .0225].
        let x = Tensor::from_slice(&[0.0f32, 0.01, 0.02, 0.03]).view([1, 4]);
        let got = Vec::<f32>::try_from(p.apply(&x).view([-1])).unwrap();
        for (g, w) in got.iter().zip([0.0f32, 0.0075, 0.015, 0.0225]) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
    }

    #[test]
    fn the_tensor_version_equals_the_slice_version_row_by_row_and_stays_within_one_step() {
        let p = ActSqueeze::default();
        let x = Tensor::randn([6, 576], (Kind::Float, tch::Device::Cpu))
            * Tensor::from_slice(&[0.01f32, 0.05, 0.2, 1.0, 3.0, 0.0]).view([6, 1]);
        let got = p.apply(&x);
        for r in 0..6 {
            let row = Vec::<f32>::try_from(x.get(r)).unwrap();
            let want = p.apply_row(&row);
            let g = Vec::<f32>::try_from(got.get(r)).unwrap();
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let min = row.iter().fold(f32::INFINITY, |a, &b| a.min(b));
            let step = (max - min) / 256.0;
            for j in 0..row.len() {
                assert!(
                    (g[j] - want[j]).abs() <= 1e-5 * (1.0 + want[j].abs()),
                    "row {r} col {j}: {} vs {}",
                    g[j],
                    want[j]
                );
                assert!(
                    row[j] - g[j] >= -1e-6 && row[j] - g[j] <= step * 1.0001 + 1e-7,
                    "row {r}: within one level below"
                );
            }
        }
    }
}
