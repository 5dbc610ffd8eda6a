//! Yuma figures for `peers.csv`: the ledger's own consensus epoch
//! ([`brainmesh_ledger::economics::epoch`]) over the weight vectors the validators revealed for
//! one epoch, so that a researcher sees miner trust and consensus and validator trust per epoch,
//! not only at settlements.

use std::collections::BTreeMap;

use brainmesh_ledger::audit::WeightVector;
use brainmesh_ledger::economics::emission::NoTft;
use brainmesh_ledger::economics::params::EconomicsParams;
use brainmesh_ledger::economics::{epoch, Amount, EpochInput};

/// Per peer id: miners' (trust, consensus) and validators' trust, all in ppb.
#[derive(Debug, Default, PartialEq)]
pub struct YumaColumns {
    pub miners: BTreeMap<String, (u64, u64)>,
    pub validators: BTreeMap<String, u64>,
}

/// Runs one epoch over `vectors` (one per validator, weights in ppb), with the validators'
/// `stake` (missing: 0) and the columns `miners`. Empty when there is nothing to run.
pub fn yuma_columns(vectors: &[WeightVector], stake: &BTreeMap<String, Amount>, miners: &[String]) -> YumaColumns {
    if vectors.is_empty() || miners.is_empty() {
        return YumaColumns::default();
    }
    let weights: Vec<Vec<u64>> = vectors
        .iter()
        .map(|v| {
            let w: BTreeMap<&str, u64> = v.weights.iter().map(|(m, x)| (m.as_str(), *x)).collect();
            miners.iter().map(|m| w.get(m.as_str()).copied().unwrap_or(0)).collect()
        })
        .collect();
    let input = EpochInput {
        weights,
        stake: vectors.iter().map(|v| stake.get(&v.validator).copied().unwrap_or(0)).collect(),
        prev_bonds: vec![],
        beta: 0,
    };
    let Ok(out) = epoch(&input, &NoTft, &EconomicsParams::default()) else { return YumaColumns::default() };
    YumaColumns {
        miners: miners
            .iter()
            .enumerate()
            .map(|(j, m)| {
                let t = out.trust.get(j).copied().unwrap_or(0);
                let c = out.consensus.get(j).copied().unwrap_or(0);
                (m.clone(), (t, c))
            })
            .collect(),
        validators: vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.validator.clone(), out.validator_trust.get(i).copied().unwrap_or(0)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wv(validator: &str, weights: &[(&str, u64)]) -> WeightVector {
        WeightVector {
            brain: 1,
            epoch: 3,
            validator: validator.into(),
            weights: weights.iter().map(|(m, x)| (m.to_string(), *x)).collect(),
        }
    }

    #[test]
    fn a_lone_dissenter_is_clipped_and_loses_validator_trust() {
        let miners: Vec<String> = ["m1", "m2"].iter().map(|s| s.to_string()).collect();
        let stake: BTreeMap<String, Amount> = ["v1", "v2", "v3"].iter().map(|v| (v.to_string(), 100)).collect();
        let vs = vec![
            wv("v1", &[("m1", 1_000_000_000)]),
            wv("v2", &[("m1", 1_000_000_000)]),
            wv("v3", &[("m2", 1_000_000_000)]), // favours m2 alone
        ];
        let y = yuma_columns(&vs, &stake, &miners);
        assert_eq!(y.miners["m1"], (1_000_000_000, 1_000_000_000), "full trust and consensus");
        assert_eq!(y.miners["m2"].1, 0, "no consensus on m2");
        assert_eq!(y.miners["m2"].0, 0, "its weight is clipped away");
        assert_eq!(y.validators["v1"], 1_000_000_000);
        assert_eq!(y.validators["v3"], 0);
        assert_eq!(yuma_columns(&[], &stake, &miners), YumaColumns::default());
    }
}
