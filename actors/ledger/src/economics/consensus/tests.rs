use super::*;
use crate::economics::emission::NoTft;
use crate::economics::tokens;
use proptest::prelude::*;

const M: Ppb = 1_000_000; // 0.001 in ppb, for writing 0.300 as 300 * M

fn params_all_active() -> EconomicsParams {
    EconomicsParams { active_validator_fraction: ONE, ..EconomicsParams::default() }
}

fn run(weights: Vec<Vec<u64>>, stake: Vec<Amount>, prev: Vec<Vec<Ppb>>, p: &EconomicsParams) -> EpochOutput {
    epoch(&EpochInput { weights, stake, prev_bonds: prev, beta: 0 }, &NoTft, p).unwrap()
}

/// Hand-computed example: 3 validators, 4 miners, κ = 0.5, α = 0.1, β = 0.
///
/// ```text
/// stake S = (40, 35, 25) tokens, total 100. Top 70% of 3 validators = ceil(2.1) = 3: all active.
///
/// raw W        normalised W           (rows sum to 1)
/// V0 [4,3,3,0] [.4 .3 .3 0 ]
/// V1 [3,4,3,0] [.3 .4 .3 0 ]
/// V2 [1,1,2,6] [.1 .1 .2 .6]          V2 pushes miner 3, whom nobody else rates
///
/// consensus W̄ⱼ = largest w backed by ≥ 50 of stake (walk each column from the top):
///   m0: .4 (V0, cum 40) → .3 (V1, cum 75 ≥ 50)  ⇒ .3
///   m1: .4 (V1, cum 35) → .3 (V0, cum 75)       ⇒ .3
///   m2: .3 (V0, 40) → .3 (V1, 75)               ⇒ .3
///   m3: .6 (V2, 25) → 0 (V0, 65)                ⇒ 0
/// clipped W̃ = min(W, W̄):
///   V0 [.3 .3 .3 0]  validator trust .9
///   V1 [.3 .3 .3 0]  validator trust .9
///   V2 [.1 .1 .2 0]  validator trust .4
/// prerank P = S·W:  m0 16+10.5+2.5 = 29,  m1 12+14+2.5 = 28.5,  m2 12+10.5+5 = 27.5,  m3 15
/// rank    R = S·W̃:  m0 12+10.5+2.5 = 25,  m1 25,  m2 12+10.5+5 = 27.5,  m3 0;  ΣR = 77.5
/// incentive R/ΣR = 10/31, 10/31, 11/31, 0 = .32258064516, .32258064516, .35483870967, 0
///   in ppb: floors 322,580,645 ×2 and 354,838,709 (sum 999,999,999); the spare unit goes to
///   the largest remainder (.677, miner 2) ⇒ 322,580,645 / 322,580,645 / 354,838,710 / 0
/// trust R/P: 25/29 = .862068965, 25/28.5 = .877192982, 1, 0
/// in consensus (edges from > 50 of stake): m0..m2 yes (100), m3 no (25)
/// credits ΔC = W̃·S: 25, 25, 27.5, 0 tokens
/// bonds (first epoch, B_prev = 0, so B = ΔB): ΔBᵢⱼ = Sᵢ·W̃ᵢⱼ / Rⱼ
///   m0, m1: 12/25, 10.5/25, 2.5/25 = .48, .42, .10
///   m2: 12/27.5, 10.5/27.5, 5/27.5 = .436363.., .381818.., .181818..
///       ppb floors 436,363,636 / 381,818,181 / 181,818,181 (+2 to the two .818 remainders)
///   m3: 0 (no rank)
/// dividends D = B·I = .48·20/31 + (24/55)·(11/31) = 14.4/31 = .464516129
///                     .42·20/31 + (21/55)·(11/31) = 12.6/31 = .406451613
///                     .10·20/31 + (2/11)·(11/31)  =  4.0/31 = .129032258
///   V2 holds 25% of the stake but earns 12.9% of dividends: its outlier vote was clipped.
/// ```
#[test]
fn hand_computed_three_validators_four_miners() {
    let p = EconomicsParams::default();
    let w = vec![vec![4, 3, 3, 0], vec![3, 4, 3, 0], vec![1, 1, 2, 6]];
    let s = vec![tokens(40), tokens(35), tokens(25)];
    let o = run(w, s.clone(), vec![], &p);

    assert_eq!(o.active, vec![true, true, true]);
    assert_eq!(o.active_stake, s);
    assert_eq!(
        o.weights,
        vec![
            vec![400 * M, 300 * M, 300 * M, 0],
            vec![300 * M, 400 * M, 300 * M, 0],
            vec![100 * M, 100 * M, 200 * M, 600 * M]
        ]
    );
    assert_eq!(o.consensus, vec![300 * M, 300 * M, 300 * M, 0]);
    assert_eq!(
        o.clipped,
        vec![
            vec![300 * M, 300 * M, 300 * M, 0],
            vec![300 * M, 300 * M, 300 * M, 0],
            vec![100 * M, 100 * M, 200 * M, 0]
        ]
    );
    assert_eq!(o.validator_trust, vec![900 * M, 900 * M, 400 * M]);
    // P and R are in (token base units × ppb): 1 token × 1.0 = 10¹⁸.
    let e18 = 1_000_000_000_000_000_000u128;
    assert_eq!(o.prerank, vec![29 * e18, 285 * e18 / 10, 275 * e18 / 10, 15 * e18]);
    assert_eq!(o.rank, vec![25 * e18, 25 * e18, 275 * e18 / 10, 0]);
    assert_eq!(o.rank_share, vec![322_580_645, 322_580_645, 354_838_710, 0]);
    assert_eq!(o.incentive, vec![322_580_645, 322_580_645, 354_838_710, 0]);
    assert_eq!(o.trust, vec![862_068_965, 877_192_982, ONE, 0]);
    assert_eq!(o.in_consensus, vec![true, true, true, false]);
    assert_eq!(o.credits, vec![tokens(25), tokens(25), tokens(55) / 2, 0]);
    assert_eq!(
        o.bonds,
        vec![
            vec![480 * M, 480 * M, 436_363_636, 0],
            vec![420 * M, 420 * M, 381_818_182, 0],
            vec![100 * M, 100 * M, 181_818_182, 0]
        ]
    );
    assert_eq!(o.dividends, vec![464_516_129, 406_451_613, 129_032_258]);
    // and within one ppb of the exact rationals 14.4/31, 12.6/31, 4/31
    for (d, num10) in o.dividends.iter().zip([144u128, 126, 40]) {
        let exact = num10 * ONE as u128 / 310;
        assert!((*d as i128 - exact as i128).abs() <= 1, "{d} vs {exact}");
    }
    assert_eq!(o.incentive.iter().sum::<Ppb>(), ONE);
    assert_eq!(o.dividends.iter().sum::<Ppb>(), ONE);
}

/// Second and third epochs of the example: unchanged weights leave the bonds where they are
/// (the EMA's fixed point); when V2 then joins the majority ([3,4,3,0] like V1), miner 0's bond
/// column moves 10% of the way to the new ΔB:
///
/// ```text
/// new column m0: W = (.4, .3, .3), W̄ = .3, W̃ = (.3, .3, .3) ⇒ ΔB = (12, 10.5, 7.5)/30
///                                                               = (.40, .35, .25)
/// B = .1·(.40, .35, .25) + .9·(.48, .42, .10) = (.472, .413, .115)
/// ```
#[test]
fn hand_computed_bond_ema() {
    let p = EconomicsParams::default();
    let w = vec![vec![4, 3, 3, 0], vec![3, 4, 3, 0], vec![1, 1, 2, 6]];
    let s = vec![tokens(40), tokens(35), tokens(25)];
    let e1 = run(w.clone(), s.clone(), vec![], &p);
    let e2 = run(w, s.clone(), e1.bonds.clone(), &p);
    assert_eq!(e2.bonds, e1.bonds);
    let w3 = vec![vec![4, 3, 3, 0], vec![3, 4, 3, 0], vec![3, 4, 3, 0]];
    let e3 = run(w3, s, e2.bonds.clone(), &p);
    let col0: Vec<Ppb> = e3.bonds.iter().map(|r| r[0]).collect();
    assert_eq!(col0, vec![472 * M, 413 * M, 115 * M]);
    // miner 3 lost all rank: its old bonds (none) stay none
    assert!(e3.bonds.iter().all(|r| r[3] == 0));
}

/// A 40%-stake coalition puts all its weight on miner 0, which the honest 60% rate at 0.1.
///
/// ```text
/// honest H1..H3 stake 30, 20, 10 (60%), all W = (.1, .2, .3, .4)
/// coalition C1, C2 stake 25, 15 (40%), W = (1, 0, 0, 0)
/// m0 column from the top: 1 (C1, 25), 1 (C2, 40) — still < 50 — then .1 (H1, 70) ⇒ W̄₀ = .1
/// the coalition's 1.0 is clipped to .1: R₀ = 100·.1 = 10, exactly the all-honest rank.
/// others: W̄ = .2/.3/.4 (honest), but the coalition gives them 0: R = 60·(.2, .3, .4)
/// ΣR = 10 + 54 = 64 ⇒ I = (.15625, .1875, .28125, .375)
/// ```
/// The chosen miner's consensus weight and rank stay at the honest level, and its incentive
/// relative to every other miner is not raised relative to what the honest validators alone
/// assign (I₀/Iₖ = 10/(60·hₖ) vs .1/hₖ: the whole normalised vector rescales because the
/// coalition withdrew its support from everyone else, which costs the coalition its
/// dividends: 6.25% instead of 40%).
#[test]
fn coalition_of_40_percent_cannot_lift_its_miner() {
    let p = params_all_active();
    let honest = vec![1u64, 2, 3, 4];
    let stake = vec![tokens(30), tokens(20), tokens(10), tokens(25), tokens(15)];
    let all_honest = run(vec![honest.clone(); 5], stake.clone(), vec![], &p);
    let mut w = vec![honest.clone(); 3];
    w.push(vec![1, 0, 0, 0]);
    w.push(vec![1, 0, 0, 0]);
    let attacked = run(w, stake, vec![], &p);

    assert_eq!(all_honest.consensus, vec![100 * M, 200 * M, 300 * M, 400 * M]);
    assert_eq!(attacked.consensus, all_honest.consensus);
    assert_eq!(attacked.clipped[3], vec![100 * M, 0, 0, 0]);
    assert_eq!(attacked.clipped[4], vec![100 * M, 0, 0, 0]);
    assert_eq!(attacked.rank[0], all_honest.rank[0]);
    assert_eq!(attacked.credits[0], tokens(10));
    for j in 1..4 {
        assert!(attacked.rank[j] < all_honest.rank[j]);
    }
    assert_eq!(attacked.incentive, vec![156_250_000, 187_500_000, 281_250_000, 375_000_000]);
    // coalition dividends: 40% of miner 0's bonds × 0.15625 = 6.25%
    assert_eq!(attacked.dividends[3] + attacked.dividends[4], 62_500_000);
    assert_eq!(all_honest.dividends[3] + all_honest.dividends[4], 400_000_000);
    // without clipping the coalition would have given miner 0 a prerank of 46 instead of 10
    let e18 = 1_000_000_000_000_000_000u128;
    assert_eq!(attacked.prerank[0], 46 * e18);
}

/// The same attack under the default active-validator rule (top 70% by stake), where the
/// smallest honest validator is inactive: the coalition still holds < 50% of *active* stake.
#[test]
fn coalition_attack_with_default_active_set() {
    let p = EconomicsParams::default();
    // 10 validators: 6 honest × 10 tokens, 4 attackers × 10 tokens; ceil(7) = 7 active, and
    // ties at the boundary stake are all kept active, so all 10 count.
    let mut w = vec![vec![1u64, 2, 3, 4]; 6];
    w.extend(vec![vec![1u64, 0, 0, 0]; 4]);
    let o = run(w, vec![tokens(10); 10], vec![], &p);
    assert!(o.active.iter().all(|a| *a));
    assert_eq!(o.consensus[0], 100 * M);
    assert_eq!(o.rank[0], 100 * 100 * M as u128 * 1_000_000_000);
}

#[test]
fn inactive_validators_do_not_vote() {
    let p = EconomicsParams::default();
    // 4 validators: top ceil(2.8) = 3 by stake active; the 1-token one is not.
    let w = vec![vec![1, 0], vec![1, 0], vec![1, 0], vec![0, 1]];
    let o = run(w, vec![tokens(10), tokens(9), tokens(8), tokens(1)], vec![], &p);
    assert_eq!(o.active, vec![true, true, true, false]);
    assert_eq!(o.incentive, vec![ONE, 0]);
    assert_eq!(o.dividends[3], 0);
    assert!(!o.in_consensus[1]);
}

#[test]
fn degenerate_inputs() {
    let p = EconomicsParams::default();
    // nobody set weights
    let o = run(vec![vec![0, 0], vec![0, 0]], vec![tokens(1), tokens(1)], vec![], &p);
    assert_eq!(o.incentive, vec![0, 0]);
    assert_eq!(o.dividends, vec![0, 0]);
    // no stake
    let o = run(vec![vec![1, 1]], vec![0], vec![], &p);
    assert_eq!(o.incentive, vec![0, 0]);
    assert_eq!(o.active, vec![false]);
    // no validators, no miners
    let o = run(vec![], vec![], vec![], &p);
    assert!(o.incentive.is_empty());
    // shape errors
    let bad = EpochInput { weights: vec![vec![1, 2], vec![1]], stake: vec![1, 1], ..Default::default() };
    assert!(epoch(&bad, &NoTft, &p).is_err());
    let bad = EpochInput { weights: vec![vec![1]], stake: vec![1, 1], ..Default::default() };
    assert!(epoch(&bad, &NoTft, &p).is_err());
    let bad = EpochInput { weights: vec![vec![1]], stake: vec![1], prev_bonds: vec![vec![1, 2]], beta: 0 };
    assert!(epoch(&bad, &NoTft, &p).is_err());
}

#[test]
fn tft_accuracy_enters_after_beta() {
    let p = params_all_active();
    let input = EpochInput { weights: vec![vec![1, 1]; 2], stake: vec![tokens(1); 2], prev_bonds: vec![], beta: ONE };
    let acc: Vec<Ppb> = vec![0, ONE];
    // R = (.5, .5), β·acc = (0, 1) ⇒ (.5, 1.5)/2
    let o = epoch(&input, &acc, &p).unwrap();
    assert_eq!(o.incentive, vec![250_000_000, 750_000_000]);
    let o = epoch(&EpochInput { beta: 0, ..input }, &acc, &p).unwrap();
    assert_eq!(o.incentive, vec![500_000_000, 500_000_000]);
}

fn matrix(nv: usize, nm: usize) -> impl Strategy<Value = Vec<Vec<u64>>> {
    prop::collection::vec(prop::collection::vec(0u64..1000, nm), nv)
}

proptest! {
    /// Structural invariants of every epoch: normalised vectors sum to exactly ONE (or are all
    /// zero), clipping never raises a weight, consensus never exceeds the largest weight.
    #[test]
    fn epoch_invariants(nv in 1usize..7, nm in 1usize..9,
                        seed_w in matrix(6, 8),
                        stake in prop::collection::vec(0u128..1u128 << 60, 6),
                        prev in prop::collection::vec(prop::collection::vec(0u64..ONE, 8), 6)) {
        let p = EconomicsParams::default();
        let w: Vec<Vec<u64>> = seed_w[..nv].iter().map(|r| r[..nm].to_vec()).collect();
        let prev: Vec<Vec<Ppb>> = prev[..nv].iter().map(|r| r[..nm].to_vec()).collect();
        let input = EpochInput { weights: w, stake: stake[..nv].to_vec(), prev_bonds: prev, beta: 0 };
        let o = epoch(&input, &NoTft, &p).unwrap();
        let sum_or_zero = |v: &[Ppb]| { let s: Ppb = v.iter().sum(); s == ONE || s == 0 };
        prop_assert!(sum_or_zero(&o.incentive));
        prop_assert!(sum_or_zero(&o.dividends));
        for row in &o.weights { prop_assert!(sum_or_zero(row)); }
        for j in 0..nm {
            let col: Vec<Ppb> = o.bonds.iter().map(|r| r[j]).collect();
            prop_assert!(sum_or_zero(&col));
            let max = (0..nv).filter(|i| o.active_stake[*i] > 0).map(|i| o.weights[i][j]).max().unwrap_or(0);
            prop_assert!(o.consensus[j] <= max);
            prop_assert!(o.rank[j] <= o.prerank[j]);
            prop_assert!(o.trust[j] <= ONE);
            for i in 0..nv { prop_assert!(o.clipped[i][j] <= o.weights[i][j]); }
        }
        // deterministic
        prop_assert_eq!(epoch(&input, &NoTft, &p).unwrap(), o);
    }

    /// Honest validators (≥ 60% of stake) agree on a weight row h; a coalition with ≤ 40% of
    /// stake sets any rows it likes (e.g. everything on one miner). No miner's consensus weight
    /// or rank rises above its all-honest value, and the coalition's weights are clipped to h.
    #[test]
    fn minority_coalition_cannot_raise_any_miner(
        honest_row in prop::collection::vec(0u64..100, 2..8)
            .prop_filter("someone rated", |r| r.iter().any(|x| *x > 0)),
        honest_stake in prop::collection::vec(1u128..1_000_000, 1..6),
        coalition_parts in prop::collection::vec(1u128..1000, 1..4),
        coalition_pct in 0u128..=40,
        target in 0usize..8,
        coalition_rows in prop::collection::vec(prop::collection::vec(0u64..100, 8), 4),
        all_on_target in any::<bool>()) {
        let p = params_all_active();
        let nm = honest_row.len();
        let target = target % nm;
        let sh: u128 = honest_stake.iter().sum::<u128>() * 1000;
        // coalition total = pct/(100 − pct) of honest ⇒ coalition share = pct% ≤ 40%
        let sc = sh * coalition_pct / (100 - coalition_pct);
        let parts_sum: u128 = coalition_parts.iter().sum();
        let mut stake: Vec<u128> = honest_stake.iter().map(|x| x * 1000).collect();
        let mut weights = vec![honest_row.clone(); honest_stake.len()];
        for (k, part) in coalition_parts.iter().enumerate() {
            stake.push(sc * part / parts_sum);
            let row = if all_on_target {
                (0..nm).map(|j| if j == target { 1 } else { 0 }).collect()
            } else {
                coalition_rows[k][..nm].to_vec()
            };
            weights.push(row);
        }
        let total: u128 = stake.iter().sum();
        let honest = EpochInput {
            weights: vec![honest_row.clone(); stake.len()], stake: stake.clone(),
            prev_bonds: vec![], beta: 0,
        };
        let attacked = EpochInput { weights, stake, prev_bonds: vec![], beta: 0 };
        let h = epoch(&honest, &NoTft, &p).unwrap();
        let a = epoch(&attacked, &NoTft, &p).unwrap();
        let nh = honest_stake.len();
        for j in 0..nm {
            prop_assert_eq!(a.consensus[j], h.consensus[j]);
            prop_assert!(a.rank[j] <= h.rank[j]);
            for i in nh..a.clipped.len() {
                prop_assert!(a.clipped[i][j] <= h.weights[0][j]);
            }
        }
        // the target's rank is at most the honest rank; with all weight on it, exactly that
        if all_on_target && honest_row[target] > 0 {
            prop_assert_eq!(a.rank[target], h.rank[target]);
            prop_assert_eq!(a.rank[target], total * h.weights[0][target] as u128);
        }
    }
}

/// A full Brain (256 validators × 1,792 miners) with the whole eventual supply staked: no
/// overflow, exact normalisations.
#[test]
fn full_size_brain_epoch() {
    let p = EconomicsParams::default();
    let (nv, nm) = (256usize, 1792usize);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let weights: Vec<Vec<u64>> = (0..nv).map(|_| (0..nm).map(|_| next() % 65_536).collect()).collect();
    let mut stake: Vec<Amount> = (0..nv).map(|_| (next() % 1_000_000) as u128 * 1_000_000).collect();
    let total: u128 = stake.iter().sum();
    stake[0] += tokens(63_100_000) - total; // ≈ max supply in one Brain
    let o = run(weights, stake, vec![], &p);
    assert_eq!(o.incentive.iter().sum::<Ppb>(), ONE);
    assert_eq!(o.dividends.iter().sum::<Ppb>(), ONE);
    assert_eq!(o.active.iter().filter(|a| **a).count(), 180); // ⌈0.7 · 256⌉
    let o2 = run(o.weights.clone(), o.active_stake.clone(), o.bonds.clone(), &p);
    assert_eq!(o2.incentive.iter().sum::<Ppb>(), ONE);
}
