//! Deterministic keys for tests: account `name` has the key derived from sha256(name).
use ed25519_dalek::{Signer, SigningKey};

pub fn key(name: &str) -> SigningKey {
    SigningKey::from_bytes(&crate::canon::sha256(name.as_bytes()))
}
pub fn pubkey(name: &str) -> [u8; 32] {
    key(name).verifying_key().to_bytes()
}
/// Every account name has a key (tests use names as account ids).
pub fn pubkey_of(name: &str) -> Option<[u8; 32]> {
    Some(pubkey(name))
}
pub fn signer(name: &str) -> impl Fn(&[u8]) -> [u8; 64] {
    let k = key(name);
    move |m: &[u8]| k.sign(m).to_bytes()
}
