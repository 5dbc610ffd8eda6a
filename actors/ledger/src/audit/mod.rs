//! Validator audit logic, pure (no network, no actors, no models): how often to spot-check a
//! miner ([`spot_check`]), per-miner scores and the weight vector they yield ([`scores`]),
//! commit-reveal of signed weight vectors ([`weights`]) and bans from verified evidence
//! ([`banlist`]).

pub mod banlist;
pub mod scores;
pub mod spot_check;
pub mod weights;

pub use banlist::{BanEntry, BanError, BanList, BanParams};
pub use scores::{MinerScore, ScoreParams, Scoreboard};
pub use spot_check::{should_audit, spot_check_rate, SpotCheckParams};
pub use weights::{Commit, CommitRevealBook, Reveal, WeightVector, WeightsError, WeightsParams, PPB};
