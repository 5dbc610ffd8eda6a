use super::*;
use crate::economics::tokens;
use proptest::prelude::*;

const M: Ppb = 1_000_000;

/// §2.4.1 burn method: 1,000 Pepecoin, +200 per Brain already burned.
#[test]
fn burn_prices_match_the_whitepaper() {
    let p = EconomicsParams::default();
    // (Brains already burned, price of the next one)
    let rows: [(u64, u128); 8] = [
        (0, 1_000),
        (1, 1_200),
        (2, 1_400),
        (3, 1_600),
        (10, 3_000),
        (100, 21_000),
        (1_015, 204_000), // the last of the 1,016 public ids
        (1_023, 205_600), // the 1,024th Brain if every one were burned
    ];
    for (n, price) in rows {
        assert_eq!(burn_price(n, &p), tokens(price), "after {n} burns");
    }
    assert_eq!(total_burn_cost(0, &p), 0);
    assert_eq!(total_burn_cost(1, &p), tokens(1_000));
    assert_eq!(total_burn_cost(3, &p), tokens(3_600));
    assert_eq!(total_burn_cost(1_016, &p), tokens(104_140_000));
    assert_eq!(total_burn_cost(1_024, &p), tokens(105_779_200));
    // the whitepaper's "107,563,530 Pepecoin" is not a sum of this curve for any n
    assert!((0..=2_000).all(|n| total_burn_cost(n, &p) != tokens(107_563_530)));
    // the registry charges the curve
    let mut r = BrainRegistry::genesis("labs", &p);
    for n in 0..5u64 {
        let (_, price) = r.create_by_burn("alice", None, tokens(1_000_000), 1, &p).unwrap();
        assert_eq!(price, burn_price(n, &p));
    }
}

#[test]
fn ids_respect_cap_and_reserved() {
    let p = EconomicsParams::default();
    let mut r = BrainRegistry::genesis("labs", &p);
    assert_eq!(r.active_count(), 8);
    assert!(matches!(r.get(47).unwrap().kind, BrainKind::Reserved));
    let rich = tokens(1_000_000_000);
    // the first public ids are 7, 8, …, and 47 is skipped
    let mut ids = vec![];
    for _ in 0..45 {
        ids.push(r.create_by_burn("a", None, rich, 1, &p).unwrap().0);
    }
    assert_eq!(ids[0], 7);
    assert_eq!(ids[39], 46);
    assert_eq!(ids[40], 48);
    for reserved in [0u16, 3, 6, 47] {
        assert_eq!(r.create_by_burn("a", Some(reserved), rich, 1, &p), Err(EconomicsError::ReservedId(reserved)));
    }
    assert_eq!(r.create_by_burn("a", Some(7), rich, 1, &p), Err(EconomicsError::BrainExists(7)));
    assert_eq!(r.create_by_burn("a", Some(1024), rich, 1, &p), Err(EconomicsError::IdOutOfRange(1024)));
    assert_eq!(r.create_by_stake("b", Some(500), rich, 1, &p).unwrap().0, 500);
    // fill to the cap: 1,016 public + 8 reserved
    while r.active_count() < 1024 {
        r.create_by_stake("b", None, rich, 1, &p).unwrap();
    }
    assert_eq!(r.create_by_burn("a", None, rich, 1, &p), Err(EconomicsError::BrainCapReached { cap: 1024 }));
    // deactivating a staked Brain frees one id
    let staked = r.brains.values().find(|b| matches!(b.kind, BrainKind::Staked { .. })).unwrap().id;
    let unlock = 1 + p.stake_method_lock_blocks;
    assert_eq!(r.deactivate(staked, "b", unlock).unwrap(), tokens(100_000));
    assert_eq!(r.create_by_burn("a", None, rich, unlock, &p).unwrap().0, staked);
}

#[test]
fn stake_method_lock_and_transfer_rules() {
    let p = EconomicsParams::default();
    let mut r = BrainRegistry::genesis("labs", &p);
    assert_eq!(
        r.create_by_stake("s", None, tokens(99_999), 10, &p),
        Err(EconomicsError::InsufficientBalance { needed: tokens(100_000), available: tokens(99_999) })
    );
    assert_eq!(
        r.create_by_burn("s", None, tokens(999), 10, &p),
        Err(EconomicsError::InsufficientBalance { needed: tokens(1_000), available: tokens(999) })
    );
    let (sid, locked) = r.create_by_stake("s", None, tokens(100_000), 10, &p).unwrap();
    assert_eq!(locked, tokens(100_000));
    let (bid, _) = r.create_by_burn("b", None, tokens(1_000), 10, &p).unwrap();
    let unlock_at = 10 + 777_600;
    assert_eq!(r.get(sid).unwrap().kind, BrainKind::Staked { locked, unlock_at });
    // staked: not transferable, locked 90 days, owner rewards start after the lock
    assert_eq!(r.transfer(sid, "s", "x"), Err(EconomicsError::NotTransferable(sid)));
    assert_eq!(r.deactivate(sid, "s", unlock_at - 1), Err(EconomicsError::StakeLocked { id: sid, until: unlock_at }));
    assert_eq!(r.deactivate(sid, "x", unlock_at), Err(EconomicsError::NotOwner));
    assert!(!r.get(sid).unwrap().owner_rewards_active(unlock_at - 1));
    assert!(r.get(sid).unwrap().owner_rewards_active(unlock_at));
    // burned: transferable by its owner, never deactivated, owner rewards from the start
    assert_eq!(r.transfer(bid, "x", "y"), Err(EconomicsError::NotOwner));
    r.transfer(bid, "b", "y").unwrap();
    assert_eq!(r.get(bid).unwrap().owner, "y");
    assert_eq!(r.deactivate(bid, "y", unlock_at), Err(EconomicsError::NotDeactivatable(bid)));
    assert!(r.get(bid).unwrap().owner_rewards_active(10));
    assert_eq!(r.deactivate(sid, "s", unlock_at), Ok(locked));
    assert_eq!(r.get(sid), Err(EconomicsError::UnknownBrain(sid)));
}

/// §3.5.2: the fee defaults to 100 and may change at any time, "affecting all subsequent
/// contributors but grandfathering-in already registered contributors".
#[test]
fn registration_fee_grandfathering() {
    let p = EconomicsParams { max_validators_per_brain: 2, ..EconomicsParams::default() };
    let mut r = BrainRegistry::genesis("labs", &p);
    let (id, _) = r.create_by_burn("owner", None, tokens(1_000), 0, &p).unwrap();
    let b = r.get_mut(id).unwrap();
    assert_eq!(b.registration_fee, tokens(100));
    assert_eq!(
        b.register("m1", PeerRole::Miner, tokens(99), 1, &p),
        Err(EconomicsError::InsufficientBalance { needed: tokens(100), available: tokens(99) })
    );
    assert_eq!(b.register("m1", PeerRole::Miner, tokens(100), 1, &p), Ok(tokens(100)));
    assert_eq!(b.register("m1", PeerRole::Miner, tokens(100), 1, &p), Err(EconomicsError::AlreadyRegistered));
    assert_eq!(b.set_registration_fee("m1", tokens(1)), Err(EconomicsError::NotOwner));
    b.set_registration_fee("owner", tokens(500)).unwrap();
    // m1 keeps its registration at the old fee
    assert!(b.is_registered("m1"));
    assert_eq!(b.registrations["m1"].fee_paid, tokens(100));
    // newcomers pay the new fee
    assert!(b.register("m2", PeerRole::Miner, tokens(499), 2, &p).is_err());
    assert_eq!(b.register("m2", PeerRole::Miner, tokens(500), 2, &p), Ok(tokens(500)));
    // lowering the fee does not refund anyone either
    b.set_registration_fee("owner", 0).unwrap();
    assert_eq!(b.registrations["m2"].fee_paid, tokens(500));
    // slots per role
    b.register("v1", PeerRole::Validator, 0, 3, &p).unwrap();
    b.register("v2", PeerRole::Validator, 0, 3, &p).unwrap();
    assert_eq!(b.register("v3", PeerRole::Validator, 0, 3, &p), Err(EconomicsError::BrainFull(PeerRole::Validator)));
    assert_eq!((b.count(PeerRole::Miner), b.count(PeerRole::Validator)), (2, 2));
    // a peer that leaves and returns pays the current fee
    b.set_registration_fee("owner", tokens(7)).unwrap();
    b.deregister("m1").unwrap();
    assert_eq!(b.register("m1", PeerRole::Miner, tokens(7), 4, &p), Ok(tokens(7)));
    assert_eq!(b.deregister("zz"), Err(EconomicsError::NotRegistered));
    assert!(b.set_miner_share("owner", ONE + 1).is_err());
    b.set_miner_share("owner", 700 * M).unwrap();
}

/// 1,000 tokens into a Brain: 250 owner, 750 nodes; at a 60% miner share 450 to miners by
/// incentive (.5/.3/.2 → 225/135/90) and 300 to validators by dividends (.75/.25 → 225/75).
#[test]
fn brain_split_25_75() {
    let p = EconomicsParams::default();
    let inc = [500 * M, 300 * M, 200 * M];
    let div = [750 * M, 250 * M];
    let st = [tokens(1), tokens(1)];
    let s = split_brain_emission(tokens(1_000), 600 * M, true, &inc, &div, &st, &p).unwrap();
    assert_eq!(s.owner, tokens(250));
    assert_eq!(s.miners, vec![tokens(225), tokens(135), tokens(90)]);
    assert_eq!(s.validators, vec![tokens(225), tokens(75)]);
    assert_eq!(s.withheld, 0);
    // stake-method owner still locked: its 250 are withheld
    let s = split_brain_emission(tokens(1_000), 600 * M, false, &inc, &div, &st, &p).unwrap();
    assert_eq!((s.owner, s.withheld), (0, tokens(250)));
    // nobody earned incentive: the miners' part goes to validators
    let s = split_brain_emission(tokens(1_000), 600 * M, true, &[0, 0, 0], &div, &st, &p).unwrap();
    assert_eq!(s.validators, vec![tokens(5625) / 10, tokens(1875) / 10]);
    // no dividends: validators by stake
    let s = split_brain_emission(tokens(1_000), 600 * M, true, &inc, &[0, 0], &[tokens(3), tokens(1)], &p).unwrap();
    assert_eq!(s.validators, vec![tokens(225), tokens(75)]);
    // no validators at all: their part goes to the owner
    let s = split_brain_emission(tokens(1_000), 600 * M, true, &inc, &[], &[], &p).unwrap();
    assert_eq!(s.owner, tokens(550));
    assert_eq!(s.total(), tokens(1_000));
    assert!(split_brain_emission(1, 0, true, &[], &[1], &[], &p).is_err());
}

/// Four Brains share 1,000 tokens (cap off). Scores = stake × performance:
/// A 400×1.0 = 400, B 300×0.5 = 150, C 250×0.2 = 50, D 50×0 = 0 (Σ 600).
/// Top 30% of the 3 scoring Brains = ⌈0.9⌉ = 1 Brain: A. Bonus pool 10% = 100 → A.
/// Base 900 by score: A 600, B 225, C 75. Totals: A 700, B 225, C 75, D 0.
#[test]
fn brains_share_block_reward_with_top_bonus() {
    let p = EconomicsParams { brain_reward_stake_cap: None, ..EconomicsParams::default() };
    let b = [
        BrainStanding { stake: tokens(400), performance: ONE },
        BrainStanding { stake: tokens(300), performance: 500 * M },
        BrainStanding { stake: tokens(250), performance: 200 * M },
        BrainStanding { stake: tokens(50), performance: 0 },
    ];
    let s = brain_reward_shares(tokens(1_000), &b, &p).unwrap();
    assert_eq!(s.per_brain, vec![tokens(700), tokens(225), tokens(75), 0]);
    assert_eq!(s.top, vec![true, false, false, false]);
    assert_eq!(s.unallocated, 0);
    // with the whitepaper's 0.5% stake cap every Brain here counts 5 tokens of stake, so only
    // performance matters: scores 5, 2.5, 1 (Σ 8.5): base 900 → 529.41…, 264.70…, 105.88…
    let s = brain_reward_shares(tokens(1_000), &b, &EconomicsParams::default()).unwrap();
    assert_eq!(s.per_brain.iter().sum::<Amount>(), tokens(1_000));
    assert_eq!(s.per_brain[1], 264_705_882_353);
    // nobody qualifies: nothing is minted
    let none = [BrainStanding { stake: 0, performance: ONE }];
    let s = brain_reward_shares(tokens(10), &none, &p).unwrap();
    assert_eq!((s.per_brain.clone(), s.unallocated), (vec![0], tokens(10)));
    assert_eq!(brain_reward_shares(tokens(10), &[], &p).unwrap().unallocated, tokens(10));
}

#[test]
fn active_validator_percentile() {
    let f = 700 * M;
    assert_eq!(active_validators(&[10, 9, 8, 1], f), vec![true, true, true, false]);
    // ⌈0.7·10⌉ = 7
    let s: Vec<Amount> = (1..=10).rev().collect();
    assert_eq!(active_validators(&s, f).iter().filter(|a| **a).count(), 7);
    assert_eq!(active_validators(&s, f)[6..], [true, false, false, false]);
    // ties with the last active one are active too
    assert_eq!(active_validators(&[5, 5, 5, 5], f), vec![true; 4]);
    assert_eq!(active_validators(&[9, 5, 5, 1], f), vec![true, true, true, false]);
    // a single validator is active; zero stake never is
    assert_eq!(active_validators(&[3], f), vec![true]);
    assert_eq!(active_validators(&[3, 0, 0], f), vec![true, false, false]);
    assert_eq!(active_validators(&[], f), Vec::<bool>::new());
}

#[test]
fn gigabrain_threshold_is_half_a_percent() {
    let p = EconomicsParams::default();
    assert!(is_gigabrain(5, 1_000, &p));
    assert!(!is_gigabrain(4, 1_000, &p));
    assert!(is_gigabrain(tokens(5), tokens(1_000), &p));
    assert!(!is_gigabrain(tokens(5) - 1, tokens(1_000), &p));
    assert!(!is_gigabrain(0, 0, &p));
    // one vote each however large: 3 Brains over 0.5% of 1,000 → 3 votes
    let g = gigabrains(&[900, 50, 46, 4], &p);
    assert_eq!(g, vec![true, true, true, false]);
}

proptest! {
    /// Emitted equals distributed in a Brain: every part accounted for, exactly.
    #[test]
    fn brain_split_is_exact(amount in 0u128..1u128 << 80,
                            miner_share in 0u64..=ONE,
                            eligible in any::<bool>(),
                            inc in prop::collection::vec(0u64..ONE, 0..10),
                            divs in prop::collection::vec((0u64..ONE, 0u128..1u128 << 60), 0..10)) {
        let p = EconomicsParams::default();
        let (div, st): (Vec<Ppb>, Vec<Amount>) = divs.into_iter().unzip();
        let s = split_brain_emission(amount, miner_share, eligible, &inc, &div, &st, &p).unwrap();
        prop_assert_eq!(s.total(), amount);
        prop_assert_eq!(s.miners.len(), inc.len());
        prop_assert_eq!(s.validators.len(), div.len());
        if !eligible { prop_assert_eq!(s.owner, 0); }
    }

    /// Emitted equals distributed among Brains; the bonus never goes to a non-top Brain.
    #[test]
    fn brain_shares_are_exact(amount in 0u128..1u128 << 70,
                              b in prop::collection::vec((0u128..1u128 << 60, 0u64..=ONE), 0..30),
                              cap in any::<bool>()) {
        let mut p = EconomicsParams::default();
        if !cap { p.brain_reward_stake_cap = None; }
        let brains: Vec<BrainStanding> =
            b.iter().map(|(s, perf)| BrainStanding { stake: *s, performance: *perf }).collect();
        let s = brain_reward_shares(amount, &brains, &p).unwrap();
        prop_assert_eq!(s.per_brain.iter().sum::<Amount>() + s.unallocated, amount);
        for (i, x) in s.per_brain.iter().enumerate() {
            if brains[i].stake == 0 || brains[i].performance == 0 { prop_assert_eq!(*x, 0); }
        }
        let top_n = s.top.iter().filter(|t| **t).count();
        let scoring = brains.iter().filter(|b| b.stake > 0 && b.performance > 0).count();
        prop_assert!(top_n >= (scoring * 3).div_ceil(10));
    }
}
