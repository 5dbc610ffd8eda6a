//! How a miner behaves: honest, or one of the cheats of the audit matrix
//! (`benches/audit_matrix.rs`). A research and testing knob (`[miner] behaviour`), used by the
//! simulator (`brainmesh sim`) and by multi-process tests to put real cheating miners on a real
//! mesh: the cheat runs inside the real miner, signs real receipts and transcripts, and is
//! caught (or not) by the real validators.
//!
//! What each cheat does to a task's output (the receipt and transcript stay consistent with
//! what the gateway received, as a cheater's must, or the gateway would refuse them):
//!
//! - `edited`: the honest output with one token changed; honest proofs.
//! - `replayed`: the previous task's output and proofs, presented for this task.
//! - `random`: uniformly random tokens with the honest proofs.
//! - `intermittent`: honest on a share of tasks (chosen by the task id), `edited` on the rest.
//!
//! The fifth cheat of the matrix, a miner serving a cheaper model than it declares, needs no
//! code: it is configuration (`[miner] model` a squeezed copy, `model_hash` the original's).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A miner's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MinerBehaviour {
    /// Runs every task as asked.
    #[default]
    Honest,
    /// Changes one output token.
    Edited,
    /// Presents the previous task's output and proofs.
    Replayed,
    /// Random output tokens with honest proofs.
    Random,
    /// Honest on `honest_share` of its tasks (by task id), edited on the others.
    Intermittent { honest_share: f64 },
}

impl MinerBehaviour {
    /// A short label (`honest`, `edited`, …) for logs and the simulator's tables.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Honest => "honest",
            Self::Edited => "edited",
            Self::Replayed => "replayed",
            Self::Random => "random",
            Self::Intermittent { .. } => "intermittent",
        }
    }

    /// The cheat applied to task `task_id`, if any (an intermittent cheater decides by a hash of
    /// the task id, so the same task gets the same treatment on a retry).
    pub fn cheat_for(&self, task_id: &str) -> Option<Cheat> {
        match *self {
            Self::Honest => None,
            Self::Edited => Some(Cheat::Edit),
            Self::Replayed => Some(Cheat::Replay),
            Self::Random => Some(Cheat::Random),
            Self::Intermittent { honest_share } => {
                let h = Sha256::digest(task_id.as_bytes());
                let u = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) as f64 / u64::MAX as f64;
                (u >= honest_share).then_some(Cheat::Edit)
            }
        }
    }
}

impl std::str::FromStr for MinerBehaviour {
    type Err = String;
    /// `honest`, `edited`, `replayed`, `random`, or `intermittent:<honest share 0..1>`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "honest" => Ok(Self::Honest),
            "edited" => Ok(Self::Edited),
            "replayed" => Ok(Self::Replayed),
            "random" => Ok(Self::Random),
            other => match other.strip_prefix("intermittent:") {
                Some(p) => match p.parse::<f64>() {
                    Ok(share) if (0.0..=1.0).contains(&share) => Ok(Self::Intermittent { honest_share: share }),
                    _ => Err(format!("intermittent: the honest share must be a number in 0..1, not `{p}`")),
                },
                None => Err(format!(
                    "unknown miner behaviour `{other}` (honest, edited, replayed, random, intermittent:<share>)"
                )),
            },
        }
    }
}

/// How a validator behaves (research knob, `[audit] behaviour`). Weight copying and
/// collusion are the known attacks on Yuma-style consensus: the copier earns dividends without
/// the cost of auditing; colluders steer emission to miners of their choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ValidatorBehaviour {
    /// Audits and weights miners by what it measured.
    #[default]
    Honest,
    /// Audits nothing; commits the mean of the weights the other validators revealed last
    /// (under commit-reveal, one epoch late at best).
    Copier,
    /// Audits nothing; gives all its weight, in equal parts, to the miners it colludes with.
    Colluder { favour: Vec<String> },
}

impl ValidatorBehaviour {
    /// `honest`, `copier` or `colluder`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Honest => "honest",
            Self::Copier => "copier",
            Self::Colluder { .. } => "colluder",
        }
    }

    /// Whether it re-checks receipts at all.
    pub fn audits(&self) -> bool {
        matches!(self, Self::Honest)
    }
}

impl std::str::FromStr for ValidatorBehaviour {
    type Err = String;
    /// `honest`, `copier`, or `collude:<peer id>,<peer id>,…`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "honest" => Ok(Self::Honest),
            "copier" => Ok(Self::Copier),
            other => match other.strip_prefix("collude:") {
                Some(list) => {
                    let favour: Vec<String> =
                        list.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
                    if favour.is_empty() {
                        return Err("collude: name at least one miner peer id".into());
                    }
                    Ok(Self::Colluder { favour })
                }
                None => Err(format!("unknown validator behaviour `{other}` (honest, copier, collude:<peer ids>)")),
            },
        }
    }
}

/// A copier's weights: the mean of `vectors` (each `(miner, ppb)` summing to 1e9), rounded back
/// to an exact split of 1e9 sorted by miner; empty when there is nothing to copy.
pub fn copied_weights(vectors: &[Vec<(String, u64)>]) -> Vec<(String, u64)> {
    let mut sum: std::collections::BTreeMap<&str, u128> = Default::default();
    for v in vectors {
        for (m, w) in v {
            *sum.entry(m.as_str()).or_default() += u128::from(*w);
        }
    }
    exact_split(sum.into_iter().map(|(m, w)| (m.to_string(), w)).collect())
}

/// A colluder's weights: equal parts for `favour` (deduplicated, sorted).
pub fn colluding_weights(favour: &[String]) -> Vec<(String, u64)> {
    let set: std::collections::BTreeSet<&String> = favour.iter().collect();
    exact_split(set.into_iter().map(|m| (m.clone(), 1u128)).collect())
}

fn exact_split(raw: Vec<(String, u128)>) -> Vec<(String, u64)> {
    let q: Vec<u128> = raw.iter().map(|(_, w)| *w).collect();
    if q.iter().all(|w| *w == 0) {
        return vec![];
    }
    match brainmesh_ledger::economics::split_by_weights(1_000_000_000, &q) {
        Ok(parts) => raw.into_iter().map(|(m, _)| m).zip(parts.into_iter().map(|p| p as u64)).collect(),
        Err(_) => vec![],
    }
}

/// What a cheating miner does to one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    Edit,
    Replay,
    Random,
}

/// The previous task's output and proofs (hex), kept by a replaying miner.
#[derive(Debug, Clone, Default)]
pub struct LastOutput {
    pub output: Vec<u32>,
    pub proofs: String,
}

/// A small deterministic generator (splitmix64) for the cheats' choices, seeded by the task.
fn mix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed_of(task_id: &str) -> u64 {
    let h = Sha256::digest(task_id.as_bytes());
    u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]])
}

/// Applies `cheat` to an honest `(output, proofs)`; returns what the miner presents.
/// `last` is the previous task's presented output (for a replay; the honest output when there
/// is none yet).
pub fn apply(
    cheat: Cheat,
    task_id: &str,
    vocab: usize,
    output: Vec<u32>,
    proofs: String,
    last: Option<&LastOutput>,
) -> (Vec<u32>, String) {
    let mut seed = seed_of(task_id);
    let vocab = vocab.max(2) as u64;
    match cheat {
        Cheat::Edit => {
            let mut out = output;
            if !out.is_empty() {
                let i = (mix(&mut seed) % out.len() as u64) as usize;
                let delta = 1 + mix(&mut seed) % (vocab - 1);
                out[i] = ((u64::from(out[i]) + delta) % vocab) as u32;
            }
            (out, proofs)
        }
        Cheat::Replay => match last {
            Some(l) => (l.output.clone(), l.proofs.clone()),
            None => (output, proofs),
        },
        Cheat::Random => {
            let out = output.iter().map(|_| (mix(&mut seed) % vocab) as u32).collect();
            (out, proofs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_parse_from_config_strings_and_bad_ones_are_explained() {
        assert_eq!("honest".parse::<MinerBehaviour>(), Ok(MinerBehaviour::Honest));
        assert_eq!("random".parse::<MinerBehaviour>(), Ok(MinerBehaviour::Random));
        assert_eq!(
            "intermittent:0.7".parse::<MinerBehaviour>(),
            Ok(MinerBehaviour::Intermittent { honest_share: 0.7 })
        );
        assert!("intermittent:2".parse::<MinerBehaviour>().unwrap_err().contains("0..1"));
        assert!("sneaky".parse::<MinerBehaviour>().unwrap_err().contains("unknown miner behaviour"));
    }

    #[test]
    fn validator_behaviours_parse_and_their_weights_sum_to_one_billion() {
        assert_eq!("copier".parse::<ValidatorBehaviour>(), Ok(ValidatorBehaviour::Copier));
        let c: ValidatorBehaviour = "collude:b, a".parse().unwrap();
        assert_eq!(c, ValidatorBehaviour::Colluder { favour: vec!["b".into(), "a".into()] });
        assert!("collude:".parse::<ValidatorBehaviour>().is_err());
        assert!(!c.audits() && ValidatorBehaviour::Honest.audits());
        let w = colluding_weights(&["b".into(), "a".into(), "b".into()]);
        assert_eq!(w, vec![("a".to_string(), 500_000_000), ("b".to_string(), 500_000_000)]);
        let v1 = vec![("a".to_string(), 1_000_000_000)];
        let v2 = vec![("a".to_string(), 500_000_000), ("c".to_string(), 500_000_000)];
        let m = copied_weights(&[v1, v2]);
        assert_eq!(m, vec![("a".to_string(), 750_000_000), ("c".to_string(), 250_000_000)]);
        assert!(copied_weights(&[]).is_empty());
    }

    #[test]
    fn an_edit_changes_exactly_one_token_and_keeps_the_proofs() {
        let out = vec![5, 6, 7, 8];
        let (e, p) = apply(Cheat::Edit, "t1", 100, out.clone(), "ab".into(), None);
        assert_eq!(p, "ab");
        assert_eq!(e.iter().zip(&out).filter(|(a, b)| a != b).count(), 1);
        assert!(e.iter().all(|t| *t < 100));
    }

    #[test]
    fn a_replay_presents_the_previous_output_and_random_stays_in_the_vocabulary() {
        let last = LastOutput { output: vec![1, 2], proofs: "old".into() };
        assert_eq!(apply(Cheat::Replay, "t", 10, vec![3], "new".into(), Some(&last)), (vec![1, 2], "old".into()));
        let (r, _) = apply(Cheat::Random, "t", 10, vec![0; 50], String::new(), None);
        assert!(r.iter().all(|t| *t < 10) && r.iter().any(|t| *t != r[0]));
    }

    #[test]
    fn an_intermittent_cheater_is_honest_on_about_its_share_of_tasks_and_stable_per_task() {
        let b = MinerBehaviour::Intermittent { honest_share: 0.75 };
        let honest = (0..1000).filter(|i| b.cheat_for(&format!("task-{i}")).is_none()).count();
        assert!((700..800).contains(&honest), "{honest}");
        assert_eq!(b.cheat_for("task-3"), b.cheat_for("task-3"));
        assert_eq!(MinerBehaviour::Honest.cheat_for("x"), None);
    }
}
