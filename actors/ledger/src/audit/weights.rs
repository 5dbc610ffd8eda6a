//! Commit-reveal of signed weight vectors, so one validator cannot copy another's weights.
//!
//! In an epoch's commit phase (its blocks) a validator publishes a [`Commit`]: a signed
//! `sha256(canonical(vector) || salt)`. From `reveal_delay_blocks` after the book accepted the
//! commit, and for `reveal_window_blocks` blocks, it publishes the signed [`Reveal`] (vector and
//! salt). Without the salt a commitment says nothing about the weights, and the validator's id
//! is inside the hashed bytes, so a reveal cannot be re-used under another id.
//!
//! Everything hashed or signed uses the crate's one canonical encoding ([`crate::canon::Enc`]),
//! never serde: a length-prefixed domain tag, then fields in a fixed order, integers big
//! endian, strings prefixed by their length as a `u32`, lists by their count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canon::Enc;
use crate::economics::BrainId;

/// 1.0 in parts per billion.
pub const PPB: u64 = 1_000_000_000;

// v2: the canonical encoding of `crate::canon::Enc` (big-endian, u32 length prefixes, the tag
// length-prefixed too); v1 was little-endian with u64 length prefixes.
const VECTOR_TAG: &str = "brainmesh/weights/v2";
const COMMIT_SIG_TAG: &str = "brainmesh/weights/commit-sig/v2";
const REVEAL_SIG_TAG: &str = "brainmesh/weights/reveal-sig/v2";

pub(super) use crate::canon::{decode_hex, verify_sig_hex as verify_sig};

/// 32 random bytes for a commitment salt.
pub fn fresh_salt() -> [u8; 32] {
    rand::random::<[u8; 32]>()
}

/// Why a weight vector, [`Commit`] or [`Reveal`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// A hex field (commitment, salt) does not decode to the expected length.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The ed25519 signature does not verify under the validator's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The message names a different Brain than the book it was offered to.
    #[error("wrong brain: this book is for brain {expected}, got {got}")]
    WrongBrain {
        /// The book's Brain.
        expected: u16,
        /// The message's Brain.
        got: u16,
    },
    /// The commit is for an epoch later than the current one.
    #[error("epoch {epoch} is not open yet (current epoch {current_epoch})")]
    EpochNotOpen {
        /// The commit's epoch.
        epoch: u64,
        /// Epoch of the current block.
        current_epoch: u64,
    },
    /// The commit is for an epoch that has already ended.
    #[error("commit phase of epoch {epoch} is closed (current epoch {current_epoch})")]
    CommitPhaseClosed {
        /// The commit's epoch.
        epoch: u64,
        /// Epoch of the current block.
        current_epoch: u64,
    },
    /// The validator already committed a different commitment for this epoch.
    #[error("validator {validator} already committed something else for epoch {epoch}")]
    ConflictingCommit {
        /// The committing validator's peer id.
        validator: String,
        /// The epoch committed for.
        epoch: u64,
    },
    /// A reveal arrived for which the book holds no commit.
    #[error("no commit from validator {validator} for epoch {epoch}")]
    NoCommit {
        /// The revealing validator's peer id.
        validator: String,
        /// The revealed vector's epoch.
        epoch: u64,
    },
    /// The reveal verifies under a different key than the one its commit verified under.
    #[error("reveal is signed by a different key than its commit")]
    KeyMismatch,
    /// The revealed vector and salt do not hash to the committed commitment.
    #[error("reveal does not match the commitment")]
    CommitmentMismatch,
    /// The reveal arrived before its reveal window opened.
    #[error("reveal too early: opens at block {opens_at}, now {current_block}")]
    RevealTooEarly {
        /// First block at which the reveal is accepted.
        opens_at: u64,
        /// The block the reveal was offered at.
        current_block: u64,
    },
    /// The reveal arrived after its reveal window closed.
    #[error("reveal window closed at block {closed_at}, now {current_block}")]
    RevealWindowClosed {
        /// First block at which the reveal is no longer accepted.
        closed_at: u64,
        /// The block the reveal was offered at.
        current_block: u64,
    },
    /// A non-empty vector's weights do not sum to exactly [`PPB`].
    #[error("weights sum to {sum}, not {PPB}")]
    BadSum {
        /// The actual sum of the weights, in ppb.
        sum: u128,
    },
    /// The vector's miners are not in strictly ascending peer-id order.
    #[error("miners are not sorted by peer id")]
    UnsortedMiners,
    /// The vector lists the same miner (peer id) twice.
    #[error("miner {0} appears twice")]
    DuplicateMiner(String),
}

/// Result of commit-reveal operations.
pub type Result<T> = std::result::Result<T, WeightsError>;

/// Timing of commit-reveal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeightsParams {
    /// Blocks per epoch (default 360); epoch of a block = `block / epoch_blocks`.
    pub epoch_blocks: u64,
    /// Blocks after the commit was accepted before its reveal is accepted (default 10).
    pub reveal_delay_blocks: u64,
    /// Blocks the reveal stays acceptable once open (default 100).
    pub reveal_window_blocks: u64,
    /// Reveals open no earlier than the end of their epoch (default true): a reveal seen while
    /// commits are still accepted could be committed again under another validator's id.
    pub reveal_after_epoch: bool,
}

impl Default for WeightsParams {
    fn default() -> Self {
        Self { epoch_blocks: 360, reveal_delay_blocks: 10, reveal_window_blocks: 100, reveal_after_epoch: true }
    }
}

impl WeightsParams {
    /// `block / epoch_blocks` (an `epoch_blocks` of 0 counts as 1).
    pub fn epoch_of(&self, block: u64) -> u64 {
        block / self.epoch_blocks.max(1)
    }
}

/// One validator's weights on a Brain's miners for one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightVector {
    /// Brain whose miners are weighted.
    pub brain: BrainId,
    /// Epoch the weights are for (see [`WeightsParams::epoch_of`]).
    pub epoch: u64,
    /// The validator's peer id.
    pub validator: String,
    /// `(miner peer id, ppb)`, strictly sorted by peer id; sums to [`PPB`] or is empty.
    pub weights: Vec<(String, u64)>,
}

impl WeightVector {
    /// Refuses unsorted or duplicate miners and a non-empty vector not summing to [`PPB`].
    pub fn validate(&self) -> Result<()> {
        for pair in self.weights.windows(2) {
            match pair[0].0.cmp(&pair[1].0) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(WeightsError::DuplicateMiner(pair[0].0.clone())),
                std::cmp::Ordering::Greater => return Err(WeightsError::UnsortedMiners),
            }
        }
        let sum: u128 = self.weights.iter().map(|(_, w)| *w as u128).sum();
        if !self.weights.is_empty() && sum != PPB as u128 {
            return Err(WeightsError::BadSum { sum });
        }
        Ok(())
    }

    /// Canonical bytes ([`Enc`]): `tag || brain u16 || epoch u64 || str(validator) || count u64 ||
    /// (str(miner) || ppb u64)*`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(VECTOR_TAG);
        e.u16(self.brain).u64(self.epoch).str(&self.validator).u64(self.weights.len() as u64);
        for (miner, w) in &self.weights {
            e.str(miner).u64(*w);
        }
        e.into_bytes()
    }

    /// `sha256(canonical_bytes || salt)`.
    pub fn commitment(&self, salt: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.canonical_bytes());
        h.update(salt);
        h.finalize().into()
    }
}

/// A signed commitment to a [`WeightVector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Brain of the committed vector.
    pub brain: BrainId,
    /// Epoch of the committed vector.
    pub epoch: u64,
    /// The committing validator's peer id.
    pub validator: String,
    /// Hex of [`WeightVector::commitment`].
    pub commitment: String,
    /// Hex ed25519 signature over [`Commit::signed_bytes`].
    pub sig: String,
}

impl Commit {
    /// Commits to a valid `vector` with `salt`, signed by `sign` (the validator's key).
    pub fn new(vector: &WeightVector, salt: &[u8; 32], sign: &dyn Fn(&[u8]) -> [u8; 64]) -> Result<Self> {
        vector.validate()?;
        let commitment = vector.commitment(salt);
        let msg = Self::message(vector.brain, vector.epoch, &vector.validator, &commitment);
        Ok(Self {
            brain: vector.brain,
            epoch: vector.epoch,
            validator: vector.validator.clone(),
            commitment: hex::encode(commitment),
            sig: hex::encode(sign(&msg)),
        })
    }

    fn message(brain: BrainId, epoch: u64, validator: &str, commitment: &[u8; 32]) -> Vec<u8> {
        let mut e = Enc::new(COMMIT_SIG_TAG);
        e.u16(brain).u64(epoch).str(validator).raw(commitment);
        e.into_bytes()
    }

    /// The commitment bytes.
    pub fn commitment_bytes(&self) -> Result<[u8; 32]> {
        decode_hex::<32>(&self.commitment).ok_or(WeightsError::Malformed("commitment is not 32 bytes of hex"))
    }

    /// `tag || brain u16 || epoch u64 || str(validator) || commitment[32]`.
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        Ok(Self::message(self.brain, self.epoch, &self.validator, &self.commitment_bytes()?))
    }

    /// Checks the signature against the validator's ed25519 public key.
    pub fn verify(&self, pubkey: &[u8; 32]) -> Result<()> {
        if verify_sig(pubkey, &self.signed_bytes()?, &self.sig) {
            Ok(())
        } else {
            Err(WeightsError::BadSignature)
        }
    }
}

/// The opening of a [`Commit`]: the vector and its salt, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    /// The revealed weights.
    pub vector: WeightVector,
    /// Hex of the 32-byte salt.
    pub salt: String,
    /// Hex ed25519 signature over [`Reveal::signed_bytes`].
    pub sig: String,
}

impl Reveal {
    /// Opens a commitment to a valid `vector` with `salt`, signed by `sign` (the validator's key).
    pub fn new(vector: &WeightVector, salt: &[u8; 32], sign: &dyn Fn(&[u8]) -> [u8; 64]) -> Result<Self> {
        vector.validate()?;
        let msg = Self::message(vector, salt);
        Ok(Self { vector: vector.clone(), salt: hex::encode(salt), sig: hex::encode(sign(&msg)) })
    }

    fn message(vector: &WeightVector, salt: &[u8; 32]) -> Vec<u8> {
        let mut e = Enc::new(REVEAL_SIG_TAG);
        e.bytes(&vector.canonical_bytes()).raw(salt);
        e.into_bytes()
    }

    /// The salt bytes; [`WeightsError::Malformed`] if `salt` is not 32 bytes of hex.
    pub fn salt_bytes(&self) -> Result<[u8; 32]> {
        decode_hex::<32>(&self.salt).ok_or(WeightsError::Malformed("salt is not 32 bytes of hex"))
    }

    /// `tag || vector.canonical_bytes() || salt[32]`.
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        Ok(Self::message(&self.vector, &self.salt_bytes()?))
    }

    /// Checks the signature against the validator's ed25519 public key.
    pub fn verify(&self, pubkey: &[u8; 32]) -> Result<()> {
        if verify_sig(pubkey, &self.signed_bytes()?, &self.sig) {
            Ok(())
        } else {
            Err(WeightsError::BadSignature)
        }
    }

    /// What this reveal opens to.
    pub fn commitment(&self) -> Result<[u8; 32]> {
        Ok(self.vector.commitment(&self.salt_bytes()?))
    }
}

/// One validator's commit for one epoch, and its reveal once accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSlot {
    /// The accepted commit.
    pub commit: Commit,
    /// Hex of the key the commit verified under; the reveal must verify under the same key.
    pub pubkey: String,
    /// Block at which the book accepted the commit; the reveal delay counts from here.
    pub commit_block: u64,
    /// The vector of the accepted reveal; `None` until the validator reveals.
    pub revealed: Option<WeightVector>,
}

/// Commits and reveals of one Brain, as a pure state machine.
///
/// The caller supplies the public key that belongs to the validator named in a message (e.g.
/// the key inlined in its peer id) and the current block; the book checks everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRevealBook {
    /// Brain whose commits and reveals this book takes; others are refused.
    pub brain: BrainId,
    /// Epoch length and reveal timing.
    pub params: WeightsParams,
    /// epoch → validator peer id → slot.
    epochs: BTreeMap<u64, BTreeMap<String, CommitSlot>>,
}

impl CommitRevealBook {
    /// An empty book for `brain`.
    pub fn new(brain: BrainId, params: WeightsParams) -> Self {
        Self { brain, params, epochs: BTreeMap::new() }
    }

    /// Accepts a commit made during its epoch. Re-sending the same commit is a no-op.
    pub fn accept_commit(&mut self, commit: Commit, pubkey: &[u8; 32], current_block: u64) -> Result<()> {
        if commit.brain != self.brain {
            return Err(WeightsError::WrongBrain { expected: self.brain, got: commit.brain });
        }
        commit.verify(pubkey)?;
        let current_epoch = self.params.epoch_of(current_block);
        if commit.epoch > current_epoch {
            return Err(WeightsError::EpochNotOpen { epoch: commit.epoch, current_epoch });
        }
        if commit.epoch < current_epoch {
            return Err(WeightsError::CommitPhaseClosed { epoch: commit.epoch, current_epoch });
        }
        let slots = self.epochs.entry(commit.epoch).or_default();
        if let Some(slot) = slots.get(&commit.validator) {
            // Same commitment again (a gossip duplicate, perhaps re-signed): nothing changes.
            return if slot.commit.commitment_bytes()? == commit.commitment_bytes()? {
                Ok(())
            } else {
                Err(WeightsError::ConflictingCommit { validator: commit.validator, epoch: commit.epoch })
            };
        }
        slots.insert(
            commit.validator.clone(),
            CommitSlot { commit, pubkey: hex::encode(pubkey), commit_block: current_block, revealed: None },
        );
        Ok(())
    }

    /// Accepts the reveal of an accepted commit inside its reveal window
    /// `[commit_block + reveal_delay, commit_block + reveal_delay + reveal_window)`.
    /// Re-sending an accepted reveal inside the window is a no-op.
    pub fn accept_reveal(&mut self, reveal: Reveal, pubkey: &[u8; 32], current_block: u64) -> Result<()> {
        let v = &reveal.vector;
        if v.brain != self.brain {
            return Err(WeightsError::WrongBrain { expected: self.brain, got: v.brain });
        }
        reveal.verify(pubkey)?;
        v.validate()?;
        let no_commit = || WeightsError::NoCommit { validator: v.validator.clone(), epoch: v.epoch };
        let slot = self.epochs.get_mut(&v.epoch).and_then(|s| s.get_mut(&v.validator)).ok_or_else(no_commit)?;
        if slot.pubkey != hex::encode(pubkey) {
            return Err(WeightsError::KeyMismatch);
        }
        // Not before the epoch's commit phase has closed: a reveal seen earlier could be
        // committed again under another validator's id while commits are still accepted.
        let epoch_end = match self.params.reveal_after_epoch {
            true => reveal.vector.epoch.saturating_add(1).saturating_mul(self.params.epoch_blocks.max(1)),
            false => 0,
        };
        let opens_at = slot.commit_block.saturating_add(self.params.reveal_delay_blocks).max(epoch_end);
        let closed_at = opens_at.saturating_add(self.params.reveal_window_blocks);
        if current_block < opens_at {
            return Err(WeightsError::RevealTooEarly { opens_at, current_block });
        }
        if current_block >= closed_at {
            return Err(WeightsError::RevealWindowClosed { closed_at, current_block });
        }
        if reveal.commitment()? != slot.commit.commitment_bytes()? {
            return Err(WeightsError::CommitmentMismatch);
        }
        slot.revealed = Some(reveal.vector);
        Ok(())
    }

    /// The vectors properly revealed for `epoch`, sorted by validator peer id.
    pub fn revealed(&self, epoch: u64) -> Vec<WeightVector> {
        self.epochs
            .get(&epoch)
            .map(|slots| slots.values().filter_map(|s| s.revealed.clone()).collect())
            .unwrap_or_default()
    }

    /// The slot of `validator` in `epoch`, if it committed.
    pub fn slot(&self, epoch: u64, validator: &str) -> Option<&CommitSlot> {
        self.epochs.get(&epoch).and_then(|s| s.get(validator))
    }

    /// Forgets every epoch before `epoch`.
    pub fn prune_before(&mut self, epoch: u64) {
        self.epochs = self.epochs.split_off(&epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    struct Val {
        id: String,
        key: SigningKey,
    }

    impl Val {
        fn new(id: &str, seed: u8) -> Self {
            Self { id: id.to_string(), key: SigningKey::from_bytes(&[seed; 32]) }
        }
        fn pk(&self) -> [u8; 32] {
            self.key.verifying_key().to_bytes()
        }
        fn sign(&self) -> impl Fn(&[u8]) -> [u8; 64] + '_ {
            move |m: &[u8]| self.key.sign(m).to_bytes()
        }
        fn vector(&self, epoch: u64, weights: &[(&str, u64)]) -> WeightVector {
            WeightVector {
                brain: 3,
                epoch,
                validator: self.id.clone(),
                weights: weights.iter().map(|(m, w)| (m.to_string(), *w)).collect(),
            }
        }
        fn commit_reveal(&self, v: &WeightVector, salt: [u8; 32]) -> (Commit, Reveal) {
            (Commit::new(v, &salt, &self.sign()).unwrap(), Reveal::new(v, &salt, &self.sign()).unwrap())
        }
    }

    /// Reveals inside the epoch (the timing rules other than the epoch end are tested here).
    fn book() -> CommitRevealBook {
        CommitRevealBook::new(3, WeightsParams { reveal_after_epoch: false, ..WeightsParams::default() })
    }

    #[test]
    fn a_reveal_waits_for_the_end_of_its_epoch_so_it_cannot_be_copied_in_time() {
        let a = Val::new("valA", 1);
        let (c, r) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let mut b = CommitRevealBook::new(3, WeightsParams::default());
        b.accept_commit(c, &a.pk(), 100).unwrap();
        assert_eq!(
            b.accept_reveal(r.clone(), &a.pk(), 200),
            Err(WeightsError::RevealTooEarly { opens_at: 360, current_block: 200 })
        );
        b.accept_reveal(r, &a.pk(), 360).unwrap();
        assert_eq!(b.revealed(0).len(), 1);
    }

    const W: &[(&str, u64)] = &[("m1", 600_000_000), ("m2", 400_000_000)];

    #[test]
    fn commit_then_reveal_is_accepted() {
        let a = Val::new("valA", 1);
        let v = a.vector(0, W);
        let (c, r) = a.commit_reveal(&v, [9; 32]);
        let mut b = book();
        b.accept_commit(c, &a.pk(), 5).unwrap();
        assert!(b.revealed(0).is_empty());
        b.accept_reveal(r.clone(), &a.pk(), 15).unwrap();
        assert_eq!(b.revealed(0), vec![v]);
        // a duplicate reveal changes nothing
        b.accept_reveal(r, &a.pk(), 16).unwrap();
        assert_eq!(b.revealed(0).len(), 1);
    }

    #[test]
    fn empty_vector_is_valid() {
        let a = Val::new("valA", 1);
        let v = a.vector(0, &[]);
        let (c, r) = a.commit_reveal(&v, [9; 32]);
        let mut b = book();
        b.accept_commit(c, &a.pk(), 0).unwrap();
        b.accept_reveal(r, &a.pk(), 10).unwrap();
        assert_eq!(b.revealed(0), vec![v]);
    }

    #[test]
    fn epoch_of_block() {
        let p = WeightsParams::default();
        assert_eq!((p.epoch_of(0), p.epoch_of(359), p.epoch_of(360), p.epoch_of(7200)), (0, 0, 1, 20));
    }

    #[test]
    fn commit_with_bad_signature_is_refused() {
        let (a, m) = (Val::new("valA", 1), Val::new("mallory", 2));
        let (mut c, _) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let mut b = book();
        assert_eq!(b.accept_commit(c.clone(), &m.pk(), 0), Err(WeightsError::BadSignature));
        c.epoch = 1; // tampered after signing
        assert_eq!(b.accept_commit(c, &a.pk(), 400), Err(WeightsError::BadSignature));
    }

    #[test]
    fn commit_outside_its_epoch_is_refused() {
        let a = Val::new("valA", 1);
        let (c, _) = a.commit_reveal(&a.vector(1, W), [9; 32]);
        let mut b = book();
        assert_eq!(
            b.accept_commit(c.clone(), &a.pk(), 359),
            Err(WeightsError::EpochNotOpen { epoch: 1, current_epoch: 0 })
        );
        assert_eq!(
            b.accept_commit(c.clone(), &a.pk(), 720),
            Err(WeightsError::CommitPhaseClosed { epoch: 1, current_epoch: 2 })
        );
        b.accept_commit(c, &a.pk(), 719).unwrap();
    }

    #[test]
    fn commit_for_another_brain_is_refused() {
        let a = Val::new("valA", 1);
        let mut v = a.vector(0, W);
        v.brain = 4;
        let (c, _) = a.commit_reveal(&v, [9; 32]);
        assert_eq!(book().accept_commit(c, &a.pk(), 0), Err(WeightsError::WrongBrain { expected: 3, got: 4 }));
    }

    #[test]
    fn second_different_commit_for_same_epoch_is_refused() {
        let a = Val::new("valA", 1);
        let (c1, _) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let (c2, _) = a.commit_reveal(&a.vector(0, &[("m1", PPB)]), [9; 32]);
        let mut b = book();
        b.accept_commit(c1.clone(), &a.pk(), 0).unwrap();
        b.accept_commit(c1, &a.pk(), 3).unwrap(); // duplicate: fine, and keeps block 0
        assert_eq!(b.slot(0, "valA").unwrap().commit_block, 0);
        assert_eq!(
            b.accept_commit(c2, &a.pk(), 4),
            Err(WeightsError::ConflictingCommit { validator: "valA".into(), epoch: 0 })
        );
    }

    #[test]
    fn reveal_without_commit_is_refused() {
        let a = Val::new("valA", 1);
        let (_, r) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        assert_eq!(
            book().accept_reveal(r, &a.pk(), 20),
            Err(WeightsError::NoCommit { validator: "valA".into(), epoch: 0 })
        );
    }

    #[test]
    fn reveal_only_inside_its_window() {
        let a = Val::new("valA", 1);
        let (c, r) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let mut b = book();
        b.accept_commit(c, &a.pk(), 100).unwrap();
        assert_eq!(
            b.accept_reveal(r.clone(), &a.pk(), 109),
            Err(WeightsError::RevealTooEarly { opens_at: 110, current_block: 109 })
        );
        assert_eq!(
            b.accept_reveal(r.clone(), &a.pk(), 210),
            Err(WeightsError::RevealWindowClosed { closed_at: 210, current_block: 210 })
        );
        assert!(b.revealed(0).is_empty());
        b.accept_reveal(r, &a.pk(), 209).unwrap();
        assert_eq!(b.revealed(0).len(), 1);
    }

    #[test]
    fn reveal_that_does_not_open_the_commitment_is_refused() {
        let a = Val::new("valA", 1);
        let (c, _) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        // same validator, other weights, properly signed
        let (_, other) = a.commit_reveal(&a.vector(0, &[("m1", PPB)]), [9; 32]);
        // right weights, wrong salt
        let (_, wrong_salt) = a.commit_reveal(&a.vector(0, W), [8; 32]);
        let mut b = book();
        b.accept_commit(c, &a.pk(), 0).unwrap();
        assert_eq!(b.accept_reveal(other, &a.pk(), 10), Err(WeightsError::CommitmentMismatch));
        assert_eq!(b.accept_reveal(wrong_salt, &a.pk(), 10), Err(WeightsError::CommitmentMismatch));
        assert!(b.revealed(0).is_empty());
    }

    #[test]
    fn reveal_with_bad_signature_is_refused() {
        let (a, m) = (Val::new("valA", 1), Val::new("mallory", 2));
        let v = a.vector(0, W);
        let (c, mut r) = a.commit_reveal(&v, [9; 32]);
        let mut b = book();
        b.accept_commit(c, &a.pk(), 0).unwrap();
        assert_eq!(b.accept_reveal(r.clone(), &m.pk(), 10), Err(WeightsError::BadSignature));
        r.sig = hex::encode(m.sign()(&r.signed_bytes().unwrap()));
        assert_eq!(b.accept_reveal(r.clone(), &a.pk(), 10), Err(WeightsError::BadSignature));
        // signed by another key than the commit's: refused even though that signature is good
        assert_eq!(b.accept_reveal(r, &m.pk(), 10), Err(WeightsError::KeyMismatch));
    }

    #[test]
    fn malformed_hex_is_refused() {
        let a = Val::new("valA", 1);
        let (mut c, mut r) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let mut b = book();
        c.commitment = "zz".into();
        assert!(matches!(b.accept_commit(c, &a.pk(), 0), Err(WeightsError::Malformed(_))));
        r.salt = "00".into();
        assert!(matches!(b.accept_reveal(r, &a.pk(), 0), Err(WeightsError::Malformed(_))));
    }

    /// Signs an invalid vector directly (Commit::new/Reveal::new refuse to).
    fn forge_pair(a: &Val, v: &WeightVector, salt: [u8; 32]) -> (Commit, Reveal) {
        let commitment = v.commitment(&salt);
        let msg = Commit::message(v.brain, v.epoch, &v.validator, &commitment);
        let c = Commit {
            brain: v.brain,
            epoch: v.epoch,
            validator: v.validator.clone(),
            commitment: hex::encode(commitment),
            sig: hex::encode(a.sign()(&msg)),
        };
        let r = Reveal {
            vector: v.clone(),
            salt: hex::encode(salt),
            sig: hex::encode(a.sign()(&Reveal::message(v, &salt))),
        };
        (c, r)
    }

    #[test]
    fn reveal_of_invalid_vector_is_refused() {
        let a = Val::new("valA", 1);
        let cases: Vec<(Vec<(&str, u64)>, WeightsError)> = vec![
            (vec![("m1", 1), ("m2", 2)], WeightsError::BadSum { sum: 3 }),
            (vec![("m1", u64::MAX), ("m2", u64::MAX)], WeightsError::BadSum { sum: 2 * u64::MAX as u128 }),
            (vec![("m2", 500_000_000), ("m1", 500_000_000)], WeightsError::UnsortedMiners),
            (vec![("m1", 500_000_000), ("m1", 500_000_000)], WeightsError::DuplicateMiner("m1".into())),
        ];
        for (weights, err) in cases {
            let v = a.vector(0, &weights);
            assert_eq!(Commit::new(&v, &[1; 32], &a.sign()), Err(err.clone()));
            let (c, r) = forge_pair(&a, &v, [1; 32]);
            let mut b = book();
            b.accept_commit(c, &a.pk(), 0).unwrap(); // the commit cannot tell
            assert_eq!(b.accept_reveal(r, &a.pk(), 10), Err(err));
        }
    }

    #[test]
    fn copier_who_sees_only_the_commitment_cannot_reveal() {
        let (a, copier) = (Val::new("valA", 1), Val::new("copier", 2));
        let va = a.vector(0, W);
        let (ca, ra) = a.commit_reveal(&va, fresh_salt());
        let mut b = book();
        b.accept_commit(ca.clone(), &a.pk(), 0).unwrap();
        // The copier re-publishes A's commitment under its own id and key.
        let msg = Commit::message(3, 0, "copier", &ca.commitment_bytes().unwrap());
        let cc = Commit { validator: "copier".into(), sig: hex::encode(copier.sign()(&msg)), ..ca.clone() };
        b.accept_commit(cc, &copier.pk(), 1).unwrap();
        // Even knowing A's exact weights, without the salt it cannot open that commitment.
        let guess = copier.vector(0, W);
        for salt in [[0u8; 32], fresh_salt()] {
            let r = Reveal::new(&guess, &salt, &copier.sign()).unwrap();
            assert_eq!(b.accept_reveal(r, &copier.pk(), 11), Err(WeightsError::CommitmentMismatch));
        }
        // Once A reveals, the salt is public — but A's id is inside the hashed bytes, so the
        // copier still cannot open its commit under its own id.
        b.accept_reveal(ra.clone(), &a.pk(), 10).unwrap();
        let late = Reveal::new(&guess, &ra.salt_bytes().unwrap(), &copier.sign()).unwrap();
        assert_eq!(b.accept_reveal(late, &copier.pk(), 12), Err(WeightsError::CommitmentMismatch));
        assert_eq!(b.revealed(0), vec![va]);
    }

    #[test]
    fn replaying_a_reveal_under_another_validator_fails() {
        let (a, c) = (Val::new("valA", 1), Val::new("valC", 2));
        let (ca, ra) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let mut b = book();
        b.accept_commit(ca, &a.pk(), 0).unwrap();
        // C commits to something of its own.
        let (cc, _) = c.commit_reveal(&c.vector(0, &[("m1", PPB)]), [5; 32]);
        b.accept_commit(cc, &c.pk(), 0).unwrap();
        // A's reveal as is, presented with C's key: the signature is A's.
        assert_eq!(b.accept_reveal(ra.clone(), &c.pk(), 10), Err(WeightsError::BadSignature));
        // A's reveal relabelled as C's and re-signed by C: does not open C's commit.
        let mut relabelled = ra.vector.clone();
        relabelled.validator = "valC".into();
        let r = Reveal::new(&relabelled, &ra.salt_bytes().unwrap(), &c.sign()).unwrap();
        assert_eq!(b.accept_reveal(r, &c.pk(), 10), Err(WeightsError::CommitmentMismatch));
        // relabelled without re-signing: bad signature
        let r2 = Reveal { vector: relabelled, ..ra };
        assert_eq!(b.accept_reveal(r2, &c.pk(), 10), Err(WeightsError::BadSignature));
        assert!(b.revealed(0).is_empty());
    }

    #[test]
    fn revealed_lists_only_revealed_vectors_of_that_epoch_sorted_by_validator() {
        let vals: Vec<Val> = ["v3", "v1", "v2"].iter().enumerate().map(|(i, n)| Val::new(n, i as u8 + 1)).collect();
        let mut b = book();
        for v in &vals {
            let (c, r) = v.commit_reveal(&v.vector(0, W), [7; 32]);
            b.accept_commit(c, &v.pk(), 0).unwrap();
            if v.id != "v2" {
                b.accept_reveal(r, &v.pk(), 10).unwrap();
            }
        }
        let ids: Vec<String> = b.revealed(0).into_iter().map(|v| v.validator).collect();
        assert_eq!(ids, vec!["v1", "v3"]);
        assert!(b.revealed(1).is_empty());
        b.prune_before(1);
        assert!(b.revealed(0).is_empty());
    }

    #[test]
    fn canonical_encoding_is_explicit() {
        let v = WeightVector { brain: 0x0102, epoch: 5, validator: "ab".into(), weights: vec![("m".into(), 7)] };
        let tag = b"brainmesh/weights/v2";
        let mut want = (tag.len() as u32).to_be_bytes().to_vec();
        want.extend(tag);
        want.extend([0x01, 0x02]);
        want.extend(5u64.to_be_bytes());
        want.extend(2u32.to_be_bytes());
        want.extend(b"ab");
        want.extend(1u64.to_be_bytes());
        want.extend(1u32.to_be_bytes());
        want.extend(b"m");
        want.extend(7u64.to_be_bytes());
        assert_eq!(v.canonical_bytes(), want);
        // length prefixes keep field boundaries: moving a byte between strings changes the bytes
        let w = WeightVector { validator: "a".into(), weights: vec![("bm".into(), 7)], ..v.clone() };
        assert_ne!(v.canonical_bytes(), w.canonical_bytes());
    }

    #[test]
    fn messages_serde_round_trip_as_json() {
        let a = Val::new("valA", 1);
        let (c, r) = a.commit_reveal(&a.vector(0, W), [9; 32]);
        let cj = serde_json::to_string(&c).unwrap();
        let rj = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Commit>(&cj).unwrap(), c);
        assert_eq!(serde_json::from_str::<Reveal>(&rj).unwrap(), r);
        let mut b = book();
        b.accept_commit(c, &a.pk(), 0).unwrap();
        b.accept_reveal(r, &a.pk(), 10).unwrap();
        let bj = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<CommitRevealBook>(&bj).unwrap(), b);
    }

    proptest! {
        /// Any valid vector commits and reveals; changing any weight breaks the opening.
        #[test]
        fn any_valid_vector_round_trips(raw in prop::collection::btree_map("[a-z0-9]{1,12}", 1u64..1000, 1..20),
                                        salt in any::<[u8; 32]>(), bump in any::<prop::sample::Index>()) {
            let a = Val::new("valA", 1);
            let total: u64 = raw.values().sum();
            let mut weights: Vec<(String, u64)> = raw.iter()
                .map(|(k, w)| (k.clone(), (*w as u128 * PPB as u128 / total as u128) as u64)).collect();
            let short = PPB - weights.iter().map(|x| x.1).sum::<u64>();
            weights[0].1 += short;
            let v = WeightVector { brain: 3, epoch: 2, validator: "valA".into(), weights };
            let (c, r) = a.commit_reveal(&v, salt);
            let mut b = book();
            b.accept_commit(c, &a.pk(), 720).unwrap();
            let mut bad = v.clone();
            let i = bump.index(bad.weights.len());
            bad.weights[i].1 = bad.weights[i].1.wrapping_add(1);
            if bad.weights.len() > 1 {
                let j = (i + 1) % bad.weights.len();
                bad.weights[j].1 = bad.weights[j].1.wrapping_sub(1);
                if bad.validate().is_ok() {
                    let rb = Reveal::new(&bad, &salt, &a.sign()).unwrap();
                    prop_assert_eq!(b.accept_reveal(rb, &a.pk(), 730), Err(WeightsError::CommitmentMismatch));
                }
            }
            b.accept_reveal(r, &a.pk(), 730).unwrap();
            prop_assert_eq!(b.revealed(2), vec![v]);
        }
    }
}
