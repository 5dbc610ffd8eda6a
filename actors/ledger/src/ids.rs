//! Typed identifiers. On the wire and in storage each is exactly what it wraps (serde
//! `transparent`), so adopting them changes no byte format.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::economics::BrainId;

/// A peer's id: the base58 text form of a libp2p peer id. brainmesh peers use ed25519 keys,
/// whose peer id inlines the public key (an identity multihash), so the key that signs for a
/// peer can be read back from its id ([`PeerId::ed25519_public_key`]) without any lookup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct PeerId(String);

/// Identity multihash (code 0x00, length 36) of the protobuf `PublicKey { Type: Ed25519, Data }`.
const ED25519_PEER_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

impl PeerId {
    /// Wraps a peer id's text form (not checked; see [`PeerId::ed25519_public_key`]).
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The ed25519 public key this id inlines, or `None` for text that is not an ed25519
    /// peer id (malformed base58, another key type, a hashed id).
    pub fn ed25519_public_key(&self) -> Option<[u8; 32]> {
        ed25519_key_of(&self.0)
    }
}

/// The ed25519 public key inlined in the text form of an ed25519 peer id (see [`PeerId`]).
pub fn ed25519_key_of(peer: &str) -> Option<[u8; 32]> {
    let b = bs58::decode(peer).into_vec().ok()?;
    if b.len() != 38 || b[..6] != ED25519_PEER_PREFIX {
        return None;
    }
    b[6..].try_into().ok()
}

/// The text-form traits every id shares: `Display`, `From<String>`, `From<&str>`, `AsRef<str>`,
/// `Borrow<str>` (so a map keyed by id can be looked up with a `&str`), `Deref<Target = str>`,
/// comparison with strings, `as_str`, and back `into()` a `String`.
macro_rules! text_id {
    ($t:ident) => {
        impl $t {
            /// The text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $t {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $t {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$t> for String {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }
    };
}

text_id!(PeerId);

/// A ledger account: the hex of an ed25519 public key, or a named system account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct AccountId(pub String);

text_id!(AccountId);

/// An inference task's id (the distributor's, carried in receipts and transcripts).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct TaskId(pub String);

text_id!(TaskId);

#[cfg(test)]
mod tests {
    use super::*;

    /// The peer id of an ed25519 public key (what libp2p derives from the same key).
    fn from_ed25519(pubkey: &[u8; 32]) -> PeerId {
        let mut b = Vec::with_capacity(38);
        b.extend_from_slice(&ED25519_PEER_PREFIX);
        b.extend_from_slice(pubkey);
        PeerId(bs58::encode(b).into_string())
    }

    #[test]
    fn an_ed25519_peer_id_round_trips_its_public_key() {
        let pk = [7u8; 32];
        let id = from_ed25519(&pk);
        assert!(id.as_str().starts_with("12D3KooW"), "libp2p's ed25519 prefix: {id}");
        assert_eq!(id.ed25519_public_key(), Some(pk));
    }

    #[test]
    fn text_that_is_not_an_ed25519_peer_id_has_no_key() {
        for bad in ["", "not base58 0OIl", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"] {
            assert_eq!(PeerId::new(bad).ed25519_public_key(), None, "{bad}");
        }
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = PeerId::new("12D3KooWabc");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"12D3KooWabc\"");
        let t: TaskId = serde_json::from_str("\"t-1\"").unwrap();
        assert_eq!(t.as_str(), "t-1");
    }
}
