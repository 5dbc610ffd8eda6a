//! Brains (whitepaper §2.4, §3.1.1, §3.2, §3.3.2, §3.5.2, §3.6): the 1024 cap and reserved ids,
//! creation by burning or staking Pepecoin, registration ("permanent memory") fees with
//! grandfathering, the per-Brain emission split, Brains sharing the block reward, active
//! validators and GigaBrains.
//!
//! Burn prices (§2.4.1: "1,000 Pepecoin … increases by 200 Pepecoin per Brain issued via the Burn
//! method"): the n-th burned Brain (n = 0, 1, 2, …) costs 1,000 + 200·n, so 1,000, 1,200, 1,400,
//! …; the 1,016th (all non-reserved ids) costs 204,000 and the 1,024th 205,600. Burning all 1,024
//! costs Σ = 1,000·1024 + 200·(1023·1024/2) = 105,779,200 Pepecoin. The whitepaper's note says
//! "107,563,530 Pepecoin" for that case; that number is not reachable with integer steps of 200
//! from 1,000 (it is not even a multiple of 10), so we follow the rule, not the note (tested).
//!
//! Choices where the whitepaper is silent or loose:
//! * The cap counts every issued and active Brain, the 8 reserved ones included, so at most
//!   1,016 Brains can be created by the public. A deactivated (staked) Brain frees its id.
//! * "Top 70th percentile" of validator stake (§3.2.3) is read as "the top 70% of a Brain's
//!   validators by stake": the first ⌈0.7·n⌉ by stake, plus anyone tied with the last of them;
//!   zero stake is never active.
//! * Brains share a block reward by score = (stake counted up to the §3.3.2 cap of 0.5% of all
//!   stake) × performance (ppb, supplied by the caller, e.g. the share of its miners in
//!   consensus); a bonus pool (`top_brain_bonus`, 10% — the size is ours) goes to the top 30% of
//!   Brains by performance, split by the same score.
//! * A stake-method owner's 25% accrues only after the 90-day lock ("After the 90 days: the Based
//!   wallet associated to the Brain begins accumulating $BASED rewards"); before that it is
//!   withheld (not minted).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::distribution::{split_by_weights, split_by_weights_u64};
use super::params::EconomicsParams;
use super::{mul_div_ceil, mul_div_floor, mul_ppb, Amount, BrainId, EconomicsError, Height, Ppb, Result, ONE};

/// How a Brain was acquired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrainKind {
    /// One of the Based Labs Brains (#0–#6, #47), created at genesis.
    Reserved,
    /// Pepecoin burned; the Brain is transferable and cannot be deactivated.
    Burned {
        /// Pepecoin burned, in base units.
        price: Amount,
    },
    /// Pepecoin locked; not transferable; deactivating returns the stake after the lock.
    Staked {
        /// Pepecoin locked, in base units.
        locked: Amount,
        /// Block height from which the Brain may be deactivated and the stake returned.
        unlock_at: Height,
    },
}

/// A peer's role in a Brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PeerRole {
    /// Serves tasks and earns by incentive.
    Miner,
    /// Audits miners, sets weights and earns dividends.
    Validator,
}

/// A peer memorised by a Brain, with the fee it paid (grandfathered: later fee changes do not
/// touch it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Role the peer registered in.
    pub role: PeerRole,
    /// Registration fee the peer paid, in base units.
    pub fee_paid: Amount,
    /// Block height at which the peer registered.
    pub registered_at: Height,
}

/// One Brain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrainRecord {
    /// The Brain's number.
    pub id: BrainId,
    /// Account id of the owner, who sets fees and shares and receives the owner's part.
    pub owner: String,
    /// How the Brain was acquired.
    pub kind: BrainKind,
    /// Block height at which the Brain was issued.
    pub created_at: Height,
    /// Fee a *new* peer pays to register (set by the owner).
    #[serde(with = "super::amount_serde")]
    pub registration_fee: Amount,
    /// Share of the nodes' 75% that goes to miners (the rest to validators), set by the owner.
    pub miner_share: Ppb,
    /// Registered peers by peer id.
    pub registrations: BTreeMap<String, Registration>,
    /// The model the owner declared this Brain serves (gateways route only to miners serving
    /// it under that name); None: each miner's own.
    #[serde(default)]
    pub model: Option<BrainModel>,
}

/// A Brain's declared model: the name clients ask for and the content hash miners must serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrainModel {
    /// Model id, as in `/v1/models`.
    pub name: String,
    /// Hex sha256 of the model's files (what a miner advertises).
    pub hash: String,
}

impl BrainRecord {
    fn new(id: BrainId, owner: &str, kind: BrainKind, height: Height, p: &EconomicsParams) -> Self {
        Self {
            id,
            owner: owner.to_string(),
            kind,
            created_at: height,
            registration_fee: p.default_registration_fee,
            miner_share: p.default_miner_share,
            registrations: BTreeMap::new(),
            model: None,
        }
    }

    fn check_owner(&self, caller: &str) -> Result<()> {
        if caller == self.owner {
            Ok(())
        } else {
            Err(EconomicsError::NotOwner)
        }
    }

    /// The owner changes the fee for peers registering from now on; peers already registered
    /// keep their registration (grandfathering, §3.5.2).
    pub fn set_registration_fee(&mut self, caller: &str, fee: Amount) -> Result<()> {
        self.check_owner(caller)?;
        self.registration_fee = fee;
        Ok(())
    }

    /// The owner declares the Brain's model (or clears it with `None`).
    pub fn set_model(&mut self, caller: &str, model: Option<BrainModel>) -> Result<()> {
        self.check_owner(caller)?;
        self.model = model;
        Ok(())
    }

    /// The owner sets the miners' share of the nodes' emission (§2.4.3).
    pub fn set_miner_share(&mut self, caller: &str, share: Ppb) -> Result<()> {
        self.check_owner(caller)?;
        if share > ONE {
            return Err(EconomicsError::InvalidParam("miner_share"));
        }
        self.miner_share = share;
        Ok(())
    }

    /// Number of registered peers with `role`.
    pub fn count(&self, role: PeerRole) -> u32 {
        self.registrations.values().filter(|r| r.role == role).count() as u32
    }

    /// Registers `peer` as `role`, charging the current fee. Returns the fee, which the caller
    /// debits from the peer and credits to the owner. `available` is the peer's balance.
    pub fn register(
        &mut self,
        peer: &str,
        role: PeerRole,
        available: Amount,
        height: Height,
        p: &EconomicsParams,
    ) -> Result<Amount> {
        if self.registrations.contains_key(peer) {
            return Err(EconomicsError::AlreadyRegistered);
        }
        let cap = match role {
            PeerRole::Miner => p.max_miners_per_brain,
            PeerRole::Validator => p.max_validators_per_brain,
        };
        if self.count(role) >= cap {
            return Err(EconomicsError::BrainFull(role));
        }
        let fee = self.registration_fee;
        if available < fee {
            return Err(EconomicsError::InsufficientBalance { needed: fee, available });
        }
        self.registrations.insert(peer.to_string(), Registration { role, fee_paid: fee, registered_at: height });
        Ok(fee)
    }

    /// Removes a peer (it leaves, or is evicted). Re-registering later pays the then-current fee.
    pub fn deregister(&mut self, peer: &str) -> Result<Registration> {
        self.registrations.remove(peer).ok_or(EconomicsError::NotRegistered)
    }

    /// Whether `peer` holds a registration with this Brain.
    pub fn is_registered(&self, peer: &str) -> bool {
        self.registrations.contains_key(peer)
    }

    /// Whether the owner's share is paid at `height` (stake-method Brains: after the lock).
    pub fn owner_rewards_active(&self, height: Height) -> bool {
        match self.kind {
            BrainKind::Staked { unlock_at, .. } => height >= unlock_at,
            _ => true,
        }
    }
}

/// The set of issued Brains (the ERC-721 contract and BasedAI portal of §2.4.1, as plain data).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrainRegistry {
    /// Issued, active Brains by id (reserved ones included).
    pub brains: BTreeMap<BrainId, BrainRecord>,
    /// Brains ever issued by burning (drives the burn price; burned Brains never go away).
    pub burned_count: u64,
}

/// Price of the next Brain after `burned_so_far` burns: base + step·burned_so_far.
pub fn burn_price(burned_so_far: u64, p: &EconomicsParams) -> Amount {
    p.burn_base_price + p.burn_price_step * burned_so_far as u128
}

/// Total burned if the first `n` Brains are all acquired by burning.
pub fn total_burn_cost(n: u64, p: &EconomicsParams) -> Amount {
    let n128 = n as u128;
    p.burn_base_price * n128 + p.burn_price_step * (n128 * n128.saturating_sub(1) / 2)
}

impl BrainRegistry {
    /// A registry with the reserved Brains owned by `based_labs` (genesis).
    pub fn genesis(based_labs: &str, p: &EconomicsParams) -> Self {
        let mut r = Self::default();
        for id in &p.reserved_brain_ids {
            r.brains.insert(*id, BrainRecord::new(*id, based_labs, BrainKind::Reserved, 0, p));
        }
        r
    }

    /// The Brain `id`, or [`EconomicsError::UnknownBrain`].
    pub fn get(&self, id: BrainId) -> Result<&BrainRecord> {
        self.brains.get(&id).ok_or(EconomicsError::UnknownBrain(id))
    }

    /// The Brain `id`, mutably, or [`EconomicsError::UnknownBrain`].
    pub fn get_mut(&mut self, id: BrainId) -> Result<&mut BrainRecord> {
        self.brains.get_mut(&id).ok_or(EconomicsError::UnknownBrain(id))
    }

    /// Number of issued, active Brains (reserved included).
    pub fn active_count(&self) -> usize {
        self.brains.len()
    }

    /// Price of the next burn.
    pub fn next_burn_price(&self, p: &EconomicsParams) -> Amount {
        burn_price(self.burned_count, p)
    }

    /// Checks `wanted` (or finds the lowest free public id).
    fn pick_id(&self, wanted: Option<BrainId>, p: &EconomicsParams) -> Result<BrainId> {
        if self.brains.len() >= p.brain_cap as usize {
            return Err(EconomicsError::BrainCapReached { cap: p.brain_cap });
        }
        match wanted {
            Some(id) => {
                if id >= p.brain_cap {
                    Err(EconomicsError::IdOutOfRange(id))
                } else if p.reserved_brain_ids.contains(&id) {
                    Err(EconomicsError::ReservedId(id))
                } else if self.brains.contains_key(&id) {
                    Err(EconomicsError::BrainExists(id))
                } else {
                    Ok(id)
                }
            }
            None => (0..p.brain_cap)
                .find(|id| !p.reserved_brain_ids.contains(id) && !self.brains.contains_key(id))
                .ok_or(EconomicsError::BrainCapReached { cap: p.brain_cap }),
        }
    }

    /// Burn method: `available` is the buyer's Pepecoin. Returns the new id and the price the
    /// caller must burn from the buyer.
    pub fn create_by_burn(
        &mut self,
        owner: &str,
        wanted: Option<BrainId>,
        available: Amount,
        height: Height,
        p: &EconomicsParams,
    ) -> Result<(BrainId, Amount)> {
        let id = self.pick_id(wanted, p)?;
        let price = self.next_burn_price(p);
        if available < price {
            return Err(EconomicsError::InsufficientBalance { needed: price, available });
        }
        self.brains.insert(id, BrainRecord::new(id, owner, BrainKind::Burned { price }, height, p));
        self.burned_count += 1;
        Ok((id, price))
    }

    /// Stake method: locks `stake_method_amount` for `stake_method_lock_blocks`. Returns the id
    /// and the amount the caller must lock.
    pub fn create_by_stake(
        &mut self,
        owner: &str,
        wanted: Option<BrainId>,
        available: Amount,
        height: Height,
        p: &EconomicsParams,
    ) -> Result<(BrainId, Amount)> {
        let id = self.pick_id(wanted, p)?;
        let locked = p.stake_method_amount;
        if available < locked {
            return Err(EconomicsError::InsufficientBalance { needed: locked, available });
        }
        let unlock_at = height.saturating_add(p.stake_method_lock_blocks);
        self.brains.insert(id, BrainRecord::new(id, owner, BrainKind::Staked { locked, unlock_at }, height, p));
        Ok((id, locked))
    }

    /// Hands a burned Brain to a new owner. Staked Brains are not transferable.
    pub fn transfer(&mut self, id: BrainId, caller: &str, to: &str) -> Result<()> {
        let b = self.get_mut(id)?;
        b.check_owner(caller)?;
        match b.kind {
            BrainKind::Staked { .. } => Err(EconomicsError::NotTransferable(id)),
            _ => {
                b.owner = to.to_string();
                Ok(())
            }
        }
    }

    /// Deactivates a staked Brain after its lock (§2.4.2), freeing its id. Returns the Pepecoin
    /// to unlock for the owner.
    pub fn deactivate(&mut self, id: BrainId, caller: &str, height: Height) -> Result<Amount> {
        let b = self.get(id)?;
        b.check_owner(caller)?;
        match b.kind {
            BrainKind::Staked { locked, unlock_at } => {
                if height < unlock_at {
                    return Err(EconomicsError::StakeLocked { id, until: unlock_at });
                }
                self.brains.remove(&id);
                Ok(locked)
            }
            _ => Err(EconomicsError::NotDeactivatable(id)),
        }
    }
}

/// How one Brain's emission is divided.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrainEmissionSplit {
    /// Owner's part, in base units (0 when withheld).
    pub owner: Amount,
    /// Per miner, in the order of the incentive vector.
    pub miners: Vec<Amount>,
    /// Per validator, in the order of the dividends vector.
    pub validators: Vec<Amount>,
    /// Not paid to anyone (owner still locked with nobody else to pay, or no participants).
    pub withheld: Amount,
}

impl BrainEmissionSplit {
    /// Sum of every part; equals the split amount.
    pub fn total(&self) -> Amount {
        self.owner + self.miners.iter().sum::<Amount>() + self.validators.iter().sum::<Amount>() + self.withheld
    }
}

/// Splits a Brain's emission (§3.2): `owner_share` (25%) to the owner, the rest to the nodes —
/// `miner_share` of it to miners by `incentive`, the remainder to validators by `dividends`.
/// Exact: `owner + Σ miners + Σ validators + withheld == amount`.
///
/// Fallbacks (so nothing is lost): if no miner has incentive, the miners' part goes to the
/// validators; if no validator has dividends, the validators' part goes by `validator_stake`;
/// if no validator has stake either, it goes to the owner; an owner that is not yet eligible
/// (stake-method lock) has its part withheld.
pub fn split_brain_emission(
    amount: Amount,
    miner_share: Ppb,
    owner_eligible: bool,
    incentive: &[Ppb],
    dividends: &[Ppb],
    validator_stake: &[Amount],
    p: &EconomicsParams,
) -> Result<BrainEmissionSplit> {
    if dividends.len() != validator_stake.len() {
        return Err(EconomicsError::Dimension("dividends and validator_stake lengths differ"));
    }
    if miner_share > ONE {
        return Err(EconomicsError::InvalidParam("miner_share"));
    }
    let owner_part = mul_ppb(amount, p.owner_share);
    let nodes = amount - owner_part;
    let miners_part = mul_ppb(nodes, miner_share);
    let mut validators_part = nodes - miners_part;
    let mut out = BrainEmissionSplit::default();

    if incentive.iter().any(|x| *x > 0) {
        out.miners = split_by_weights_u64(miners_part, incentive)?;
    } else {
        out.miners = vec![0; incentive.len()];
        validators_part += miners_part;
    }

    let mut owner_total = owner_part;
    if dividends.iter().any(|x| *x > 0) {
        out.validators = split_by_weights_u64(validators_part, dividends)?;
    } else if validator_stake.iter().any(|x| *x > 0) {
        out.validators = split_by_weights(validators_part, validator_stake)?;
    } else {
        out.validators = vec![0; dividends.len()];
        owner_total += validators_part;
    }

    if owner_eligible {
        out.owner = owner_total;
    } else {
        out.withheld = owner_total;
    }
    debug_assert_eq!(out.total(), amount);
    Ok(out)
}

/// A Brain's standing when the block reward is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrainStanding {
    /// $BASED staked to the Brain (its validators' stake plus delegations).
    pub stake: Amount,
    /// Operational performance, ppb (e.g. uptime × share of miners in consensus); caller's
    /// choice, 0 = earns nothing.
    pub performance: Ppb,
}

/// The block reward shared among Brains.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BrainShares {
    /// Each Brain's amount, in base units, in the order of the standings given.
    pub per_brain: Vec<Amount>,
    /// Brains that earned the top-30% bonus.
    pub top: Vec<bool>,
    /// Not allocated (no Brain with stake and performance): not minted.
    pub unallocated: Amount,
}

/// Shares `amount` (one block's reward, or a period's) among Brains by stake and performance
/// with the top-30% bonus (§3.1.1) and the 0.5% stake cap (§3.3.2). Exact:
/// `Σ per_brain + unallocated == amount`.
pub fn brain_reward_shares(amount: Amount, brains: &[BrainStanding], p: &EconomicsParams) -> Result<BrainShares> {
    let n = brains.len();
    let total_stake: u128 = brains.iter().map(|b| b.stake).sum();
    let cap = match p.brain_reward_stake_cap {
        Some(c) => mul_div_floor(total_stake, c as u128, ONE as u128)?.max(1),
        None => u128::MAX,
    };
    let scores: Vec<u128> = brains
        .iter()
        .map(|b| b.stake.min(cap).checked_mul(b.performance as u128).ok_or(EconomicsError::Overflow))
        .collect::<Result<_>>()?;
    if scores.iter().all(|s| *s == 0) {
        return Ok(BrainShares { per_brain: vec![0; n], top: vec![false; n], unallocated: amount });
    }
    // top fraction by performance among Brains that score (ties at the boundary included)
    let mut perf: Vec<Ppb> = (0..n).filter(|i| scores[*i] > 0).map(|i| brains[i].performance).collect();
    perf.sort_unstable_by(|a, b| b.cmp(a));
    let k = ceil_frac(perf.len(), p.top_brain_fraction);
    let top: Vec<bool> = if k == 0 {
        vec![false; n]
    } else {
        let bar = perf[k - 1];
        (0..n).map(|i| scores[i] > 0 && brains[i].performance >= bar).collect()
    };
    let bonus_pool = if top.iter().any(|t| *t) { mul_ppb(amount, p.top_brain_bonus) } else { 0 };
    let base = split_by_weights(amount - bonus_pool, &scores)?;
    let top_scores: Vec<u128> = scores.iter().zip(&top).map(|(s, t)| if *t { *s } else { 0 }).collect();
    let bonus = split_by_weights(bonus_pool, &top_scores)?;
    let per_brain = base.iter().zip(&bonus).map(|(a, b)| a + b).collect();
    Ok(BrainShares { per_brain, top, unallocated: 0 })
}

/// `ceil(n · frac)` for a ppb fraction.
fn ceil_frac(n: usize, frac: Ppb) -> usize {
    ((n as u128 * frac as u128).div_ceil(ONE as u128)) as usize
}

/// Validators counted as active (§3.2.3): the top `fraction` (70%) of a Brain's validators by
/// stake — the first ⌈fraction·n⌉ when sorted by stake, plus any tied with the last of them.
/// Zero stake is never active.
pub fn active_validators(stake: &[Amount], fraction: Ppb) -> Vec<bool> {
    let k = ceil_frac(stake.len(), fraction);
    if k == 0 {
        return vec![false; stake.len()];
    }
    let mut sorted: Vec<Amount> = stake.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let bar = sorted[k - 1];
    stake.iter().map(|s| *s > 0 && *s >= bar).collect()
}

/// §3.6: a Brain holding at least `gigabrain_threshold` (0.5%) of the total network stake is a
/// GigaBrain with exactly one vote.
pub fn is_gigabrain(brain_stake: Amount, total_stake: Amount, p: &EconomicsParams) -> bool {
    // brain·ONE ≥ threshold·total  ⇔  brain ≥ ceil(threshold·total / ONE)
    total_stake > 0
        && brain_stake > 0
        && mul_div_ceil(total_stake, p.gigabrain_threshold as u128, ONE as u128).is_ok_and(|bar| brain_stake >= bar)
}

/// GigaBrain flags for every Brain (one vote each, however large).
pub fn gigabrains(stakes: &[Amount], p: &EconomicsParams) -> Vec<bool> {
    let total: Amount = stakes.iter().sum();
    stakes.iter().map(|s| is_gigabrain(*s, total, p)).collect()
}

#[cfg(test)]
mod tests;
