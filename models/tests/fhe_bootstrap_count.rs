//! The whitepaper's (a+b)+(c×d)+(e×f) example as counted bootstraps (tfhe `pbs-stats`).
//!
//! The PBS counter is global to the process, so every test here takes `COUNTER` first; keys are
//! made once for the binary. Default run: a seeded sample of 24 input tuples; with
//! `BRAINMESH_SLOW_TESTS=1`, all 729 tuples of {0,1,2}^6.

use std::sync::{Mutex, OnceLock};

use brainmesh_models::fhe::bootstrap_count::{self, Inputs};
use tfhe::shortint::{ClientKey, ServerKey};

static COUNTER: Mutex<()> = Mutex::new(());
static KEYS: OnceLock<(ClientKey, ServerKey)> = OnceLock::new();

fn keys() -> &'static (ClientKey, ServerKey) {
    KEYS.get_or_init(bootstrap_count::keys)
}

fn sample() -> Vec<Inputs> {
    let slow = std::env::var("BRAINMESH_SLOW_TESTS").is_ok_and(|v| v == "1");
    bootstrap_count::sample_inputs(0x5eed, if slow { 729 } else { 24 })
}

#[test]
fn one_op_at_a_time_costs_five_bootstraps_and_fused_costs_two_with_correct_results() {
    let _guard = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let (cks, sks) = keys();
    for x in sample() {
        let ct = bootstrap_count::encrypt(cks, &x);
        let want = bootstrap_count::expected(&x);

        tfhe::reset_pbs_count();
        let naive = bootstrap_count::one_op_at_a_time(sks, &ct);
        assert_eq!(tfhe::get_pbs_count(), 5, "one-op-at-a-time bootstraps for {x:?}");
        assert_eq!(bootstrap_count::decrypt(cks, &naive), want, "one-op-at-a-time result for {x:?}");

        tfhe::reset_pbs_count();
        let fused = bootstrap_count::fused(sks, &ct);
        assert_eq!(tfhe::get_pbs_count(), 2, "fused bootstraps for {x:?}");
        assert_eq!(bootstrap_count::decrypt(cks, &fused), want, "fused result for {x:?}");
    }
}

#[test]
fn radix_integer_baseline_costs_at_least_eleven_bootstraps() {
    let _guard = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
    let (cks, sks) = keys();
    let x: Inputs = [2, 1, 2, 2, 1, 2];
    tfhe::reset_pbs_count();
    let r = bootstrap_count::radix_baseline(cks, sks, &x);
    let pbs = tfhe::get_pbs_count();
    eprintln!("radix baseline: {pbs} bootstraps");
    assert_eq!(r, bootstrap_count::expected(&x));
    assert!(pbs >= 11, "radix baseline took only {pbs} bootstraps");
}

#[test]
fn the_input_sample_is_seeded_and_covers_the_whole_domain_when_asked() {
    assert_eq!(bootstrap_count::sample_inputs(1, 24), bootstrap_count::sample_inputs(1, 24));
    let all = bootstrap_count::sample_inputs(1, 1000);
    assert_eq!(all.len(), 729);
    assert!(all.iter().all(|x| x.iter().all(|&v| v <= 2)));
    assert_eq!(all.iter().map(bootstrap_count::expected).max(), Some(12));
}
