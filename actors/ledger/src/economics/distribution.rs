//! Exact integer splits and checked balance arithmetic.
//!
//! [`split_by_weights`] is the one place where an amount is divided: largest-remainder
//! (Hamilton) apportionment, so the parts always sum to the whole, no part is negative (all
//! types are unsigned), and a recipient with weight zero gets exactly zero. Ties among equal
//! remainders go to the lower index, so the result is deterministic on every peer.

use std::collections::BTreeMap;

use super::{mul_div, Amount, EconomicsError, Result};

/// Splits `total` among recipients in proportion to `weights`, exactly.
///
/// * `Σ parts == total` always;
/// * `parts[i] == 0` whenever `weights[i] == 0`;
/// * `floor(total·wᵢ/W) ≤ parts[i] ≤ floor(total·wᵢ/W) + 1`.
///
/// Errors with [`EconomicsError::NoRecipients`] if every weight is zero (including an empty list)
/// and `total > 0`; a zero total with zero weights yields zeros.
pub fn split_by_weights(total: Amount, weights: &[u128]) -> Result<Vec<Amount>> {
    let mut sum: u128 = 0;
    for w in weights {
        sum = sum.checked_add(*w).ok_or(EconomicsError::Overflow)?;
    }
    if sum == 0 {
        return if total == 0 { Ok(vec![0; weights.len()]) } else { Err(EconomicsError::NoRecipients) };
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (i, w) in weights.iter().enumerate() {
        let (q, r) = mul_div(total, *w, sum)?;
        given += q; // Σ q ≤ total, cannot overflow
        parts.push(q);
        if *w > 0 {
            rems.push((r, i));
        }
    }
    let mut left = total - given; // < number of nonzero weights
                                  // Largest remainder first; equal remainders: lower index first.
    rems.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in rems {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    debug_assert_eq!(left, 0);
    Ok(parts)
}

/// Same as [`split_by_weights`] with `u64` weights (e.g. [`super::Ppb`] vectors).
pub fn split_by_weights_u64(total: Amount, weights: &[u64]) -> Result<Vec<Amount>> {
    let w: Vec<u128> = weights.iter().map(|x| *x as u128).collect();
    split_by_weights(total, &w)
}

/// `balance − amount`, refusing to go below zero.
pub fn checked_debit(balance: Amount, amount: Amount) -> Result<Amount> {
    balance.checked_sub(amount).ok_or(EconomicsError::InsufficientBalance { needed: amount, available: balance })
}

/// `balance + amount`, refusing to overflow.
pub fn checked_credit(balance: Amount, amount: Amount) -> Result<Amount> {
    balance.checked_add(amount).ok_or(EconomicsError::Overflow)
}

/// Moves `amount` from `from` to `to` in a balance map. All-or-nothing: on error the map is
/// unchanged. A missing account has balance zero; an account that reaches zero is kept.
pub fn transfer<K: Ord + Clone>(balances: &mut BTreeMap<K, Amount>, from: &K, to: &K, amount: Amount) -> Result<()> {
    let src = balances.get(from).copied().unwrap_or(0);
    let new_src = checked_debit(src, amount)?;
    if from == to {
        return Ok(());
    }
    let dst = balances.get(to).copied().unwrap_or(0);
    let new_dst = checked_credit(dst, amount)?;
    balances.insert(from.clone(), new_src);
    balances.insert(to.clone(), new_dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_examples() {
        assert_eq!(split_by_weights(10, &[1, 1, 1]).unwrap(), vec![4, 3, 3]);
        assert_eq!(split_by_weights(10, &[0, 1, 1]).unwrap(), vec![0, 5, 5]);
        assert_eq!(split_by_weights(2, &[1, 1, 1]).unwrap(), vec![1, 1, 0]);
        assert_eq!(split_by_weights(100, &[3, 0, 7]).unwrap(), vec![30, 0, 70]);
        // 11·(3,3,4)/10 = 3.3, 3.3, 4.4: the largest remainder (.4) gets the spare unit
        assert_eq!(split_by_weights(11, &[3, 3, 4]).unwrap(), vec![3, 3, 5]);
        // 12·(3,3,4)/10 = 3.6, 3.6, 4.8: .8 first, then .6 at the lower index
        assert_eq!(split_by_weights(12, &[3, 3, 4]).unwrap(), vec![4, 3, 5]);
        assert_eq!(split_by_weights(0, &[0, 0]).unwrap(), vec![0, 0]);
        assert_eq!(split_by_weights(5, &[0, 0]), Err(EconomicsError::NoRecipients));
        assert_eq!(split_by_weights(5, &[]), Err(EconomicsError::NoRecipients));
        // huge values use the 256-bit path
        let big = split_by_weights(u128::MAX, &[u128::MAX / 2, u128::MAX / 2]).unwrap();
        assert_eq!(big.iter().sum::<u128>(), u128::MAX);
    }

    #[test]
    fn transfer_refuses_overdraft() {
        let mut b = BTreeMap::new();
        b.insert("a", 10u128);
        assert!(transfer(&mut b, &"a", &"b", 11).is_err());
        assert_eq!(b.get("a"), Some(&10));
        assert_eq!(b.get("b"), None);
        transfer(&mut b, &"a", &"b", 10).unwrap();
        assert_eq!((b["a"], b["b"]), (0, 10));
    }

    proptest! {
        /// Emitted equals distributed: every split sums exactly, parts are within one unit of the
        /// exact proportional share, zero weights get zero.
        #[test]
        fn split_is_exact(total in any::<u64>().prop_map(|x| x as u128 * 1_000_003),
                          weights in prop::collection::vec(0u128..1u128 << 90, 1..40)) {
            match split_by_weights(total, &weights) {
                Ok(parts) => {
                    prop_assert_eq!(parts.len(), weights.len());
                    prop_assert_eq!(parts.iter().sum::<u128>(), total);
                    let w: u128 = weights.iter().sum();
                    for (p, wi) in parts.iter().zip(&weights) {
                        let floor = mul_div(total, *wi, w).unwrap().0;
                        prop_assert!(*p == floor || *p == floor + 1);
                        if *wi == 0 { prop_assert_eq!(*p, 0); }
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, EconomicsError::NoRecipients);
                    prop_assert!(weights.iter().all(|w| *w == 0));
                }
            }
        }

        /// No balance below zero: a random sequence of transfers keeps every balance ≥ 0 (checked
        /// against a signed shadow ledger) and conserves the total.
        #[test]
        fn transfers_never_go_negative(
            init in prop::collection::vec(0u128..1_000_000, 4),
            ops in prop::collection::vec((0usize..4, 0usize..4, 0u128..600_000), 0..200)) {
            let mut b: BTreeMap<usize, Amount> = init.iter().cloned().enumerate().collect();
            let mut shadow: Vec<i128> = init.iter().map(|x| *x as i128).collect();
            let total: u128 = init.iter().sum();
            for (from, to, amt) in ops {
                let ok = transfer(&mut b, &from, &to, amt).is_ok();
                let would_be = shadow[from] - amt as i128;
                prop_assert_eq!(ok, would_be >= 0);
                if ok {
                    shadow[from] -= amt as i128;
                    shadow[to] += amt as i128;
                }
                for (k, v) in &b {
                    prop_assert_eq!(*v as i128, shadow[*k]);
                    prop_assert!(shadow[*k] >= 0);
                }
                prop_assert_eq!(b.values().sum::<u128>(), total);
            }
        }
    }
}
