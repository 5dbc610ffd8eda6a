//! The stock `tfhe` parameter sets encrypted mode may use, and the facts the head needs about
//! them (LWE dimension, polynomial size, measured noise).
//!
//! Only Zama's published `shortint` parameter sets are used, unchanged: the security of the
//! keys and of every ciphertext is that of the named set. What this crate adds is an *encoding*
//! (how integers are placed on the torus) and a check of the correctness margin (noise in σ)
//! for that encoding; it never changes a dimension, a noise distribution or a decomposition.

use serde::{Deserialize, Serialize};
use tfhe::shortint::parameters::v1_5::{
    V1_5_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128, V1_5_PARAM_MESSAGE_2_CARRY_3_KS_PBS_GAUSSIAN_2M128,
    V1_5_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128,
};
use tfhe::shortint::parameters::ClassicPBSParameters;

use super::FheError;

/// A stock `tfhe` 1.5 shortint parameter set (KS-PBS, p-fail ≤ 2^-128), by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FheParams {
    /// `V1_5_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128`: N = 2048, fastest PBS (≈15 ms CPU),
    /// but a PBS output carries ≈2^49 of noise, too much for a wide classifier layer.
    M2C2TUniform,
    /// `V1_5_PARAM_MESSAGE_2_CARRY_3_KS_PBS_GAUSSIAN_2M128`: N = 4096, 2-level bootstrapping key.
    /// The head's default: about 4× the PBS cost of 2_2, with ≈2^6 less output noise.
    M2C3Gaussian,
    /// `V1_5_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128`: N = 8192; the research note's
    /// recommendation, ≈2× the cost of 2_3 and a 875 MiB server key.
    M3C3TUniform,
}

impl FheParams {
    pub const ALL: [FheParams; 3] = [FheParams::M2C2TUniform, FheParams::M2C3Gaussian, FheParams::M3C3TUniform];

    /// The stock parameter set.
    pub fn shortint(self) -> ClassicPBSParameters {
        match self {
            FheParams::M2C2TUniform => V1_5_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
            FheParams::M2C3Gaussian => V1_5_PARAM_MESSAGE_2_CARRY_3_KS_PBS_GAUSSIAN_2M128,
            FheParams::M3C3TUniform => V1_5_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128,
        }
    }

    /// The name Zama gives the set (what goes on the wire and in the head's JSON).
    pub fn name(self) -> &'static str {
        match self {
            FheParams::M2C2TUniform => "V1_5_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128",
            FheParams::M2C3Gaussian => "V1_5_PARAM_MESSAGE_2_CARRY_3_KS_PBS_GAUSSIAN_2M128",
            FheParams::M3C3TUniform => "V1_5_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128",
        }
    }

    /// Short form used on the command line: `2_2`, `2_3`, `3_3`.
    pub fn short(self) -> &'static str {
        match self {
            FheParams::M2C2TUniform => "2_2",
            FheParams::M2C3Gaussian => "2_3",
            FheParams::M3C3TUniform => "3_3",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, FheError> {
        FheParams::ALL
            .into_iter()
            .find(|p| p.name() == name || p.short() == name)
            .ok_or_else(|| FheError::UnknownParams(name.to_string()))
    }

    /// Polynomial size N of the bootstrapping accumulator.
    pub fn polynomial_size(self) -> usize {
        self.shortint().polynomial_size.0
    }

    pub fn log2_polynomial_size(self) -> u32 {
        self.polynomial_size().trailing_zeros()
    }

    /// Dimension of the ciphertexts the client encrypts and the miner's linear layers work on
    /// (the "big" key: glwe_dimension × N).
    pub fn big_lwe_dimension(self) -> usize {
        let p = self.shortint();
        p.glwe_dimension.0 * p.polynomial_size.0
    }

    /// Number of u64 words of one (uncompressed) big-key LWE ciphertext.
    pub fn big_lwe_size(self) -> usize {
        self.big_lwe_dimension() + 1
    }

    /// Standard deviation (on the 2^64 torus) of the noise a KS-PBS output carries, as measured
    /// on this machine with `fhe::head::measure_pbs_noise` (see docs/encrypted-mode.md). It sets
    /// the output encoding of the hidden layer; the head re-checks it at load time against the
    /// margin it was exported with, and tests re-measure it.
    pub fn pbs_output_noise_log2_std(self) -> f64 {
        match self {
            FheParams::M2C2TUniform => 49.2,
            FheParams::M2C3Gaussian => 42.9,
            FheParams::M3C3TUniform => 43.4,
        }
    }

    /// Standard deviation of the noise of the modulus switch that precedes the blind rotation,
    /// in units of accumulator positions (the torus cut into 2N positions). Measured like
    /// [`Self::pbs_output_noise_log2_std`]; it decides how often an activation lands one box off.
    pub fn input_noise_std_positions(self) -> f64 {
        match self {
            FheParams::M2C2TUniform => 4.7,
            FheParams::M2C3Gaussian => 4.7,
            FheParams::M3C3TUniform => 4.7,
        }
    }
}

impl std::fmt::Display for FheParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
