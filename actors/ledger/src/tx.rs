//! Signed ledger transactions.
//!
//! What is signed is [`Tx::signing_bytes`]: the canonical [`Enc`] encoding under the domain tag
//! [`TX_TAG`] of `from`, `nonce` and the kind, never JSON. The transaction id is the hex sha256
//! of the signing bytes followed by the signature ([`Tx::id`]). Accounts are libp2p ed25519 peer
//! ids in the real network; the caller maps an account to its 32-byte public key
//! (`pubkey_of`), so this module does not depend on libp2p.

use serde::{Deserialize, Serialize};

use super::{verify_sig, Enc, Hash, Sig};
use crate::economics::{Amount, BrainId, Height, PeerRole};

/// Domain tag of transaction signing bytes.
pub const TX_TAG: &str = "brainmesh/ledger/tx/v1";
/// Longest account id or validator id accepted (a base58 ed25519 peer id is 52 bytes).
pub const MAX_ID_BYTES: usize = 128;

/// How a Brain is acquired (whitepaper §2.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreateMethod {
    /// The burn price is destroyed; the Brain is transferable.
    Burn,
    /// `stake_method_amount` is locked for `stake_method_lock_blocks`.
    Stake,
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// Moves `amount` from the sender's balance to `to`.
    Transfer {
        /// Receiving account.
        to: String,
        /// Amount in base units; must be nonzero.
        amount: Amount,
    },
    /// Stake to a Brain (`validator: None`) or to one of its registered validators.
    Stake {
        /// Brain to stake in.
        brain: BrainId,
        /// Registered validator of the Brain to stake to, or `None` for the Brain itself.
        validator: Option<String>,
        /// Amount moved from balance to stake, in base units; must be nonzero.
        amount: Amount,
    },
    /// Withdraws stake placed by this account with the same (brain, validator).
    Unstake {
        /// Brain the stake is in.
        brain: BrainId,
        /// Validator the stake was placed with, or `None` for the Brain itself.
        validator: Option<String>,
        /// Amount moved from stake back to balance, in base units; must be nonzero.
        amount: Amount,
    },
    /// Creates a Brain owned by the sender. `wanted`: a specific free id, else the lowest free.
    /// `max_price`: refuse if the burn price or stake amount is higher (the burn price rises
    /// with every burn, so a signed offer must not be replayable at a higher price).
    CreateBrain {
        /// Burn or stake method.
        method: CreateMethod,
        /// Specific free id to take, or `None` for the lowest free public id.
        wanted: Option<BrainId>,
        /// Highest burn price or stake amount the sender accepts, in base units.
        max_price: Amount,
    },
    /// Registers the sender with a Brain as `role`, paying at most `fee` (the Brain's current
    /// registration fee is charged and credited to the Brain owner).
    Register {
        /// Brain to register with.
        brain: BrainId,
        /// Role to register as.
        role: PeerRole,
        /// Highest registration fee the sender accepts, in base units.
        fee: Amount,
    },
    /// A validator's commitment to its weights on a Brain's miners for `epoch`
    /// (`audit::weights::WeightVector::commitment` with a secret salt; [`super::weights`]).
    CommitWeights {
        /// Brain whose miners are weighted; the sender must be one of its validators.
        brain: BrainId,
        /// Weights epoch committed for; must be the current one.
        epoch: u64,
        /// sha256 of the canonical weight vector followed by the salt.
        #[serde(with = "super::hex_array")]
        commitment: Hash,
    },
    /// Opens the commitment of `epoch` in the epoch after it (`weights`: `(miner, ppb)` sorted
    /// by miner, summing to 10^9).
    RevealWeights {
        /// Brain the weights are for.
        brain: BrainId,
        /// Epoch of the commitment being opened.
        epoch: u64,
        /// The secret 32-byte salt of the commitment.
        #[serde(with = "super::hex_array")]
        salt: Hash,
        /// `(miner peer id, ppb)` pairs, strictly sorted by miner, summing to 10⁹.
        weights: Vec<(String, u64)>,
    },
    /// The Brain's owner declares the model the Brain serves (`name` empty: no declared model).
    SetBrainModel {
        /// Brain; the sender must own it.
        brain: BrainId,
        /// Model id clients ask for.
        name: String,
        /// Hex sha256 of the model's files (64 hex digits; empty with an empty name).
        hash: String,
    },
    /// The sender (an account) lets `gateway` spend up to `cap` base units for it until block
    /// `expires_at` (replacing any earlier allowance for that gateway, spent reset to 0).
    Authorize {
        /// The gateway's peer id.
        gateway: String,
        /// Most the gateway's receipts may debit, in base units.
        cap: Amount,
        /// Last block height at which the allowance holds.
        expires_at: Height,
    },
    /// The sender withdraws its allowance for `gateway`.
    Revoke {
        /// The gateway's peer id.
        gateway: String,
    },
    /// The Brain's owner sets the fee new peers pay to register (peers already registered keep
    /// their place: grandfathering, §3.5.2).
    SetBrainFee {
        /// Brain whose fee is set; the sender must own it.
        brain: BrainId,
        /// Registration fee in base units.
        fee: Amount,
    },
    /// The Brain's owner sets the miners' share of the nodes' emission (the rest goes to
    /// validators; the owner's own 25% is fixed by the whitepaper, §2.4.3).
    SetBrainSplit {
        /// Brain whose split is set; the sender must own it.
        brain: BrainId,
        /// Miners' share of the nodes' part, parts per 10^9 (at most 10^9).
        miner_share: u64,
    },
}

/// Most miners one weight vector names (a Brain has at most 1,792 miner slots).
pub const MAX_WEIGHTS: usize = 1792;

/// A signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    /// Sending account (peer id).
    pub from: String,
    /// 1 for an account's first transaction, then +1 each.
    pub nonce: u64,
    /// What the transaction does.
    pub kind: TxKind,
    /// Sender's ed25519 signature over [`Tx::signing_bytes`].
    #[serde(with = "super::hex_array")]
    pub sig: Sig,
}

fn role_byte(r: PeerRole) -> u8 {
    match r {
        PeerRole::Miner => 0,
        PeerRole::Validator => 1,
    }
}

impl TxKind {
    fn encode(&self, e: &mut Enc) {
        match self {
            TxKind::Transfer { to, amount } => {
                e.u8(0).str(to).u128(*amount);
            }
            TxKind::Stake { brain, validator, amount } => {
                e.u8(1).u16(*brain).opt_str(validator.as_deref()).u128(*amount);
            }
            TxKind::Unstake { brain, validator, amount } => {
                e.u8(2).u16(*brain).opt_str(validator.as_deref()).u128(*amount);
            }
            TxKind::CreateBrain { method, wanted, max_price } => {
                e.u8(3).u8(match method {
                    CreateMethod::Burn => 0,
                    CreateMethod::Stake => 1,
                });
                match wanted {
                    None => e.u8(0),
                    Some(id) => e.u8(1).u16(*id),
                };
                e.u128(*max_price);
            }
            TxKind::Register { brain, role, fee } => {
                e.u8(4).u16(*brain).u8(role_byte(*role)).u128(*fee);
            }
            TxKind::CommitWeights { brain, epoch, commitment } => {
                e.u8(5).u16(*brain).u64(*epoch).raw(commitment);
            }
            TxKind::RevealWeights { brain, epoch, salt, weights } => {
                e.u8(6).u16(*brain).u64(*epoch).raw(salt).u64(weights.len() as u64);
                for (m, w) in weights {
                    e.str(m).u64(*w);
                }
            }
            TxKind::SetBrainFee { brain, fee } => {
                e.u8(7).u16(*brain).u128(*fee);
            }
            TxKind::SetBrainSplit { brain, miner_share } => {
                e.u8(8).u16(*brain).u64(*miner_share);
            }
            TxKind::SetBrainModel { brain, name, hash } => {
                e.u8(11).u16(*brain).str(name).str(hash);
            }
            TxKind::Authorize { gateway, cap, expires_at } => {
                e.u8(9).str(gateway).u128(*cap).u64(*expires_at);
            }
            TxKind::Revoke { gateway } => {
                e.u8(10).str(gateway);
            }
        }
    }
}

impl Tx {
    /// Canonical bytes covered by the signature.
    pub fn signing_bytes_of(from: &str, nonce: u64, kind: &TxKind) -> Vec<u8> {
        let mut e = Enc::new(TX_TAG);
        e.str(from).u64(nonce);
        kind.encode(&mut e);
        e.into_bytes()
    }

    /// Bytes covered by this transaction's signature (see [`Tx::signing_bytes_of`]).
    pub fn signing_bytes(&self) -> Vec<u8> {
        Self::signing_bytes_of(&self.from, self.nonce, &self.kind)
    }

    /// Builds and signs a transaction; `sign` is the sender's ed25519 signer.
    pub fn new_signed(from: &str, nonce: u64, kind: TxKind, sign: &dyn Fn(&[u8]) -> Sig) -> Self {
        let sig = sign(&Self::signing_bytes_of(from, nonce, &kind));
        Self { from: from.to_string(), nonce, kind, sig }
    }

    /// Hex sha256 of the signing bytes followed by the signature.
    pub fn id(&self) -> String {
        let mut b = self.signing_bytes();
        b.extend_from_slice(&self.sig);
        hex::encode(super::sha256(&b))
    }

    /// Bounds on the fields (lengths), independent of ledger state.
    pub fn well_formed(&self) -> bool {
        let ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID_BYTES;
        let ok_opt = |v: &Option<String>| v.as_deref().is_none_or(ok);
        ok(&self.from)
            && match &self.kind {
                TxKind::Transfer { to, .. } => ok(to),
                TxKind::Authorize { gateway, .. } | TxKind::Revoke { gateway } => ok(gateway),
                TxKind::SetBrainModel { name, hash, .. } => {
                    (name.is_empty() && hash.is_empty())
                        || (ok(name) && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
                }
                TxKind::Stake { validator, .. } | TxKind::Unstake { validator, .. } => ok_opt(validator),
                TxKind::CreateBrain { .. }
                | TxKind::Register { .. }
                | TxKind::CommitWeights { .. }
                | TxKind::SetBrainFee { .. }
                | TxKind::SetBrainSplit { .. } => true,
                TxKind::RevealWeights { weights, .. } => {
                    weights.len() <= MAX_WEIGHTS && weights.iter().all(|(m, _)| ok(m))
                }
            }
    }

    /// True if the signature verifies against `pubkey` (`verify_strict`).
    pub fn verify_with(&self, pubkey: &[u8; 32]) -> bool {
        verify_sig(pubkey, &self.signing_bytes(), &self.sig)
    }

    /// True if `pubkey_of(from)` is known and the signature verifies.
    pub fn verify(&self, pubkey_of: &dyn Fn(&str) -> Option<[u8; 32]>) -> bool {
        pubkey_of(&self.from).is_some_and(|pk| self.verify_with(&pk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{pubkey, pubkey_of, signer};

    fn transfer(amount: Amount) -> TxKind {
        TxKind::Transfer { to: "bob".into(), amount }
    }

    #[test]
    fn signed_tx_verifies_and_any_field_change_breaks_it() {
        let tx = Tx::new_signed("alice", 1, transfer(5), &signer("alice"));
        assert!(tx.verify(&pubkey_of));
        assert!(tx.well_formed());
        let mut t = tx.clone();
        t.nonce = 2;
        assert!(!t.verify(&pubkey_of));
        let mut t = tx.clone();
        t.kind = transfer(6);
        assert!(!t.verify(&pubkey_of));
        let mut t = tx.clone();
        t.from = "mallory".into();
        assert!(!t.verify(&pubkey_of), "forged sender");
        let mut t = tx.clone();
        t.sig[10] ^= 1;
        assert!(!t.verify(&pubkey_of));
        assert!(!tx.verify_with(&pubkey("bob")));
        assert!(!tx.verify(&|_| None), "unknown key");
    }

    #[test]
    fn signing_bytes_are_domain_tagged_and_distinct_per_kind() {
        let kinds = [
            transfer(1),
            TxKind::Stake { brain: 7, validator: None, amount: 1 },
            TxKind::Stake { brain: 7, validator: Some("v".into()), amount: 1 },
            TxKind::Unstake { brain: 7, validator: None, amount: 1 },
            TxKind::CreateBrain { method: CreateMethod::Burn, wanted: None, max_price: 1 },
            TxKind::CreateBrain { method: CreateMethod::Stake, wanted: None, max_price: 1 },
            TxKind::CreateBrain { method: CreateMethod::Burn, wanted: Some(0), max_price: 1 },
            TxKind::Register { brain: 7, role: PeerRole::Miner, fee: 1 },
            TxKind::Register { brain: 7, role: PeerRole::Validator, fee: 1 },
            TxKind::CommitWeights { brain: 7, epoch: 1, commitment: [0; 32] },
            TxKind::RevealWeights { brain: 7, epoch: 1, salt: [0; 32], weights: vec![] },
            TxKind::RevealWeights { brain: 7, epoch: 1, salt: [0; 32], weights: vec![("m".into(), 1)] },
            TxKind::SetBrainFee { brain: 7, fee: 1 },
            TxKind::SetBrainSplit { brain: 7, miner_share: 1 },
            TxKind::Authorize { gateway: "g".into(), cap: 1, expires_at: 1 },
            TxKind::Revoke { gateway: "g".into() },
            TxKind::SetBrainModel { brain: 7, name: "m".into(), hash: "0".repeat(64) },
        ];
        let mut seen = std::collections::BTreeSet::new();
        for k in &kinds {
            let b = Tx::signing_bytes_of("alice", 1, k);
            assert!(b[4..].starts_with(TX_TAG.as_bytes()));
            assert!(seen.insert(b), "{k:?} collides");
        }
        // length prefixes: ("ab", to "c") and ("a", to "bc") differ
        assert_ne!(
            Tx::signing_bytes_of("ab", 1, &TxKind::Transfer { to: "c".into(), amount: 1 }),
            Tx::signing_bytes_of("a", 1, &TxKind::Transfer { to: "bc".into(), amount: 1 })
        );
    }

    #[test]
    fn id_covers_signature_and_json_round_trip_keeps_it() {
        let tx = Tx::new_signed("alice", 1, transfer(5), &signer("alice"));
        assert_eq!(tx.id().len(), 64);
        let mut t = tx.clone();
        t.sig[0] ^= 1;
        assert_ne!(t.id(), tx.id());
        let json = serde_json::to_string(&tx).unwrap();
        let back: Tx = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.id(), tx.id());
        assert!(back.verify(&pubkey_of));
    }

    #[test]
    fn oversized_ids_are_not_well_formed() {
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(!Tx::new_signed(&long, 1, transfer(1), &signer("a")).well_formed());
        let k = TxKind::Transfer { to: long.clone(), amount: 1 };
        assert!(!Tx::new_signed("a", 1, k, &signer("a")).well_formed());
        let k = TxKind::Stake { brain: 1, validator: Some(String::new()), amount: 1 };
        assert!(!Tx::new_signed("a", 1, k, &signer("a")).well_formed());
    }
}
