//! The whitepaper's example (§4.1–4.2): r = (a + b) + (c × d) + (e × f), evaluated three ways
//! so that the bootstraps each way costs can be counted with tfhe's `pbs-stats` counter.
//!
//! * **one op at a time** (the whitepaper's "11 actions": 6 encryptions + 5 operations): every
//!   operation returns a clean ciphertext, so each of the 5 costs one programmable bootstrap
//!   (an addition is a linear add followed by an identity lookup table; a product is one
//!   bivariate lookup table) — **5 PBS**;
//! * **fused** ("Cerberus Squeezing" made concrete): additions are linear and need no bootstrap,
//!   only the two products do — **2 PBS**;
//! * **radix integers** (`FheUint8`-style, 4 blocks of 2 bits, default carry-propagating ops):
//!   the baseline a naive port gets — ≈80 PBS on tfhe 1.8.2, and version-dependent.
//!
//! Domain: a..f ∈ {0, 1, 2}, so r ≤ 12 fits one 2_2 block (message + carry = 4 bits).
//! "Encrypted action" in the whitepaper's sense = an encryption or a bootstrap; linear
//! operations on ciphertexts (additions, multiplication by a clear constant) cost nanoseconds.

use tfhe::shortint::{Ciphertext, ClientKey, ServerKey};

/// The six inputs.
pub type Inputs = [u64; 6];

/// Clear evaluation.
pub fn expected(x: &Inputs) -> u64 {
    (x[0] + x[1]) + (x[2] * x[3]) + (x[4] * x[5])
}

/// Shortint 2_2 keys for the example (the research note's parameter set).
pub fn keys() -> (ClientKey, ServerKey) {
    tfhe::shortint::gen_keys(super::params::FheParams::M2C2TUniform.shortint())
}

pub fn encrypt(cks: &ClientKey, x: &Inputs) -> [Ciphertext; 6] {
    x.map(|v| cks.encrypt(v))
}

/// One operation at a time, each returning a clean ciphertext: 5 bootstraps.
pub fn one_op_at_a_time(sks: &ServerKey, ct: &[Ciphertext; 6]) -> Ciphertext {
    let identity = sks.generate_lookup_table(|x| x);
    let mul = sks.generate_lookup_table_bivariate(|x, y| x * y);
    let add = |x: &Ciphertext, y: &Ciphertext| sks.apply_lookup_table(&sks.unchecked_add(x, y), &identity);
    let ab = add(&ct[0], &ct[1]); // PBS 1
    let cd = sks.unchecked_apply_lookup_table_bivariate(&ct[2], &ct[3], &mul); // PBS 2
    let ef = sks.unchecked_apply_lookup_table_bivariate(&ct[4], &ct[5], &mul); // PBS 3
    let s = add(&ab, &cd); // PBS 4
    add(&s, &ef) // PBS 5
}

/// Fused: the additions are linear (no bootstrap); only the two products bootstrap.
pub fn fused(sks: &ServerKey, ct: &[Ciphertext; 6]) -> Ciphertext {
    let mul = sks.generate_lookup_table_bivariate(|x, y| x * y);
    let cd = sks.unchecked_apply_lookup_table_bivariate(&ct[2], &ct[3], &mul); // PBS 1
    let ef = sks.unchecked_apply_lookup_table_bivariate(&ct[4], &ct[5], &mul); // PBS 2
    let ab = sks.unchecked_add(&ct[0], &ct[1]);
    let s = sks.unchecked_add(&ab, &cd);
    sks.unchecked_add(&s, &ef)
}

/// Decrypts a result of either shortint path (message and carry: r can exceed the 2-bit
/// message space).
pub fn decrypt(cks: &ClientKey, ct: &Ciphertext) -> u64 {
    cks.decrypt_message_and_carry(ct)
}

/// The radix-integer baseline: 8-bit integers (4 blocks of 2_2), default operations that
/// propagate carries after each op. Returns the decrypted result.
pub fn radix_baseline(cks: &ClientKey, sks: &ServerKey, x: &Inputs) -> u64 {
    let icks = tfhe::integer::ClientKey::from(cks.clone());
    let isks = tfhe::integer::ServerKey::new_radix_server_key_from_shortint(sks.clone());
    let enc = |v: u64| icks.encrypt_radix(v, 4);
    let ct: Vec<_> = x.iter().map(|&v| enc(v)).collect();
    let ab = isks.add_parallelized(&ct[0], &ct[1]);
    let cd = isks.mul_parallelized(&ct[2], &ct[3]);
    let ef = isks.mul_parallelized(&ct[4], &ct[5]);
    let s = isks.add_parallelized(&ab, &cd);
    let r = isks.add_parallelized(&s, &ef);
    icks.decrypt_radix::<u64>(&r)
}

/// Deterministic sample of inputs in {0,1,2}^6 (splitmix64 from `seed`); `count` ≥ 729 gives
/// all of them.
pub fn sample_inputs(seed: u64, count: usize) -> Vec<Inputs> {
    let all: Vec<Inputs> = (0..729u64)
        .map(|mut i| {
            let mut x = [0u64; 6];
            for v in x.iter_mut() {
                *v = i % 3;
                i /= 3;
            }
            x
        })
        .collect();
    if count >= all.len() {
        return all;
    }
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut idx: Vec<usize> = (0..all.len()).collect();
    for i in (1..idx.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx.into_iter().take(count).map(|i| all[i]).collect()
}
