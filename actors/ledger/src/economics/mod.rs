//! Economics (whitepaper §3, DESIGN.md §5): pure functions over fixed-point integers.
//!
//! Nothing here touches the network, actors or storage, and nothing that touches a balance uses
//! floating point. Two fixed-point types are used throughout:
//!
//! * [`Amount`] (`u128`): token amounts in **base units**, [`UNITS_PER_TOKEN`] = 10⁹ base units per
//!   token (like Bittensor's "rao"). Every number in the whitepaper's Table 2 (down to
//!   0.01953125 per block) and Table 3 (down to 0.00018 per 1k units) is exact at this scale.
//!   The same scale is used for Pepecoin amounts (burn / stake-method prices) inside this module.
//! * [`Ppb`] (`u64`): a fraction in **parts per billion**, [`ONE`] = 10⁹ = 1.0. Used for weights,
//!   ratios, κ, α, β(t), incentive, trust, bonds and dividends. A row of weights, an incentive
//!   vector or a bond column that is "normalised" sums to exactly [`ONE`] (largest remainder, see
//!   [`distribution`]), so no part of an emission is ever lost to rounding.
//!
//! Products such as stake × weight are carried in `u128` (stake ≤ 10²⁶ base units would still fit
//! after multiplying by [`ONE`]); where a product could overflow `u128` (amount × stake-weight) the
//! code uses the exact 256-bit [`mul_div`].
//!
//! Modules: [`params`] (whitepaper defaults), [`emission`] (halving, Table 2, TFT β(t)),
//! [`brains`] (cap, reserved ids, burn/stake creation, registration fees, per-Brain splits,
//! Brains sharing the block reward, active validators, GigaBrains), [`consensus`] (one Yuma
//! epoch), [`pricing`] (compute units, Table 3), [`distribution`] (exact integer splits,
//! checked balance arithmetic).
//!
//! How a ledger settles a period `[from, to)` with these functions (all pure; the ledger owns
//! balances and storage):
//!
//! 1. `minted = emission::issuance_between(from, to, &p)` (halving schedule).
//! 2. `brains::brain_reward_shares(minted, &standings, &p)` → each Brain's amount; the
//!    `unallocated` remainder is simply not minted.
//! 3. Per Brain: `consensus::epoch(&EpochInput { weights, stake, prev_bonds, beta:
//!    emission::tft_beta(to, &p) }, &NoTft, &p)` → incentive, dividends, bonds (store the bonds
//!    for the next epoch), credits.
//! 4. `brains::split_brain_emission(amount, record.miner_share, record.owner_rewards_active(to),
//!    &out.incentive, &out.dividends, &out.active_stake, &p)` → owner / miners / validators /
//!    withheld, summing exactly to `amount`.
//! 5. Task fees: `pricing::PriceList::cost(model, prompt_units, completion_units)`, debited with
//!    `pricing::charge` / `distribution::checked_debit` (never below zero); a fee can be divided
//!    with the same `split_brain_emission` using a one-hot incentive for the serving miner.

pub mod brains;
pub mod consensus;
pub mod distribution;
pub mod emission;
pub mod params;
pub mod pricing;

pub use brains::{
    active_validators, brain_reward_shares, burn_price, gigabrains, is_gigabrain, split_brain_emission,
    BrainEmissionSplit, BrainKind, BrainRecord, BrainRegistry, BrainShares, BrainStanding, PeerRole, Registration,
};
pub use consensus::{epoch, EpochInput, EpochOutput};
pub use distribution::{checked_credit, checked_debit, split_by_weights, transfer};
pub use emission::{
    block_reward, combined_incentive, cumulative_issuance, issuance_between, tft_beta, year_issuance, AccuracyOracle,
    NoTft,
};
pub use params::EconomicsParams;
pub use pricing::{charge, ModelPrice, PriceList};

/// Token amount in base units (10⁻⁹ token).
pub type Amount = u128;
/// Fraction in parts per billion: [`ONE`] = 1.0.
pub type Ppb = u64;
/// Block height since genesis.
pub type Height = u64;
/// Brain number, 0 ..= cap − 1.
pub type BrainId = u16;

/// 1.0 as a [`Ppb`].
pub const ONE: Ppb = 1_000_000_000;
/// Base units per whole token.
pub const UNITS_PER_TOKEN: Amount = 1_000_000_000;

/// `n` whole tokens in base units.
pub const fn tokens(n: u128) -> Amount {
    n * UNITS_PER_TOKEN
}

/// Errors of the economics rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EconomicsError {
    /// Every Brain id below the cap is taken (reserved Brains included).
    #[error("the Brain cap ({cap}) is reached")]
    BrainCapReached {
        /// The Brain cap (maximum number of issued Brains).
        cap: u16,
    },
    /// The requested id is one of the reserved Based Labs ids.
    #[error("Brain id {0} is reserved for Based Labs")]
    ReservedId(BrainId),
    /// The id is not one of the reserved Based Labs ids (where a reserved id is required).
    #[error("Brain id {0} is not reserved")]
    NotReserved(BrainId),
    /// The requested id is not below the Brain cap.
    #[error("Brain id {0} is out of range")]
    IdOutOfRange(BrainId),
    /// The requested id is already issued.
    #[error("Brain {0} already exists")]
    BrainExists(BrainId),
    /// No Brain with this id is issued.
    #[error("Brain {0} does not exist")]
    UnknownBrain(BrainId),
    /// A balance is smaller than the amount the operation needs.
    #[error("insufficient balance: need {needed}, have {available}")]
    InsufficientBalance {
        /// Amount required, in base units.
        needed: Amount,
        /// Balance available, in base units.
        available: Amount,
    },
    /// Stake-method Brains cannot change owner.
    #[error("Brain {0} was acquired by staking and cannot be transferred")]
    NotTransferable(BrainId),
    /// Burned (and reserved) Brains cannot be deactivated; only stake-method Brains can.
    #[error("Brain {0} was acquired by burning and cannot be deactivated")]
    NotDeactivatable(BrainId),
    /// A stake-method Brain cannot be deactivated before its lock ends.
    #[error("Brain {id} is locked until block {until}")]
    StakeLocked {
        /// The Brain.
        id: BrainId,
        /// Block at which the lock ends.
        until: Height,
    },
    /// The caller is not the Brain's owner.
    #[error("only the Brain owner may do this")]
    NotOwner,
    /// The peer already holds a registration with this Brain.
    #[error("peer is already registered with this Brain")]
    AlreadyRegistered,
    /// The peer holds no registration with this Brain.
    #[error("peer is not registered with this Brain")]
    NotRegistered,
    /// The Brain already has its maximum number of peers in this role.
    #[error("no free {0:?} slot in this Brain")]
    BrainFull(PeerRole),
    /// A split has no recipient: every weight is zero (or the list is empty).
    #[error("nothing to split among: every weight is zero")]
    NoRecipients,
    /// Vectors or matrices that must agree in length do not; names what differs.
    #[error("dimension mismatch: {0}")]
    Dimension(&'static str),
    /// A parameter is out of its valid range; names the parameter.
    #[error("invalid parameter: {0}")]
    InvalidParam(&'static str),
    /// A task is larger than the model's context window.
    #[error("task of {units} compute units exceeds the model's context of {context}")]
    ContextExceeded {
        /// Compute units the task needs.
        units: u64,
        /// The model's context, in compute units.
        context: u64,
    },
    /// The model is not in the price list.
    #[error("unknown model {0:?} in the price list")]
    UnknownModel(String),
    /// An arithmetic result does not fit its integer type.
    #[error("arithmetic overflow")]
    Overflow,
}

/// Result of the economics rules.
pub type Result<T> = std::result::Result<T, EconomicsError>;

/// `floor(a · b / c)` and the remainder, exact over a 256-bit intermediate.
///
/// Panics if `c == 0`; returns [`EconomicsError::Overflow`] if the quotient does not fit `u128`.
pub fn mul_div(a: u128, b: u128, c: u128) -> Result<(u128, u128)> {
    assert!(c != 0, "mul_div by zero");
    if let Some(p) = a.checked_mul(b) {
        return Ok((p / c, p % c));
    }
    // 256-bit product as (hi, lo).
    let (hi, lo) = mul_wide(a, b);
    if hi >= c {
        return Err(EconomicsError::Overflow);
    }
    // Long division of (hi, lo) by c, one bit at a time; hi < c keeps the quotient in u128.
    let mut rem = hi;
    let mut q: u128 = 0;
    for i in (0..128).rev() {
        let bit = (lo >> i) & 1;
        let carry = rem >> 127;
        rem = (rem << 1) | bit;
        q <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            q |= 1;
        }
    }
    Ok((q, rem))
}

/// `floor(a · b / c)`; see [`mul_div`].
pub fn mul_div_floor(a: u128, b: u128, c: u128) -> Result<u128> {
    mul_div(a, b, c).map(|(q, _)| q)
}

/// `ceil(a · b / c)`; see [`mul_div`].
pub fn mul_div_ceil(a: u128, b: u128, c: u128) -> Result<u128> {
    let (q, r) = mul_div(a, b, c)?;
    if r == 0 {
        Ok(q)
    } else {
        q.checked_add(1).ok_or(EconomicsError::Overflow)
    }
}

/// `amount · frac / ONE`, rounded down.
pub fn mul_ppb(amount: Amount, frac: Ppb) -> Amount {
    mul_div_floor(amount, frac as u128, ONE as u128).expect("frac ≤ u64::MAX cannot overflow")
}

/// Serde for [`Amount`] fields in configs: written as an integer when it fits `u64` (TOML has no
/// 128-bit integers), as a decimal string otherwise; read from either.
pub mod amount_serde {
    use serde::{de, Deserializer, Serializer};

    /// Writes `v` as an integer if it fits `u64`, else as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(*v) {
            Ok(x) => s.serialize_u64(x),
            Err(_) => s.serialize_str(&v.to_string()),
        }
    }

    /// Reads an amount from an unsigned or non-negative integer, or from a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = u128;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a non-negative integer amount in base units")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u128, E> {
                Ok(v as u128)
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<u128, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u128, E> {
                u128::try_from(v).map_err(|_| E::custom("negative amount"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
                v.parse().map_err(|_| E::custom("bad amount string"))
            }
        }
        d.deserialize_any(V)
    }
}

fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & MASK);
    let (b1, b0) = (b >> 64, b & MASK);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    let lo = (p00 & MASK) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mul_div_wide_cases() {
        assert_eq!(mul_div(u128::MAX, u128::MAX, u128::MAX).unwrap(), (u128::MAX, 0));
        assert_eq!(mul_div(u128::MAX, 2, 4).unwrap(), (u128::MAX / 2, 2));
        assert_eq!(mul_div(1 << 100, 1 << 100, 1 << 90).unwrap(), (1 << 110, 0));
        assert!(mul_div(u128::MAX, u128::MAX, 1).is_err());
        assert_eq!(mul_div_ceil(7, 3, 2).unwrap(), 11);
        assert_eq!(mul_ppb(tokens(10), ONE / 4), tokens(10) / 4);
    }

    proptest! {
        #[test]
        fn mul_div_matches_reconstruction(a in any::<u128>(), b in any::<u128>(), c in 1u128..) {
            if let Ok((q, r)) = mul_div(a, b, c) {
                prop_assert!(r < c);
                // q·c + r == a·b, checked in 256 bits.
                let (qh, ql) = mul_wide(q, c);
                let (sum_lo, carry) = ql.overflowing_add(r);
                let (ph, pl) = mul_wide(a, b);
                prop_assert_eq!((qh + carry as u128, sum_lo), (ph, pl));
            } else {
                prop_assert!(mul_wide(a, b).0 >= c);
            }
        }
    }
}
