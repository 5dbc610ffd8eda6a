//! Per-block batches of receipts and transactions, validator votes on a batch root, finality.
//!
//! * A [`Batch`] lists receipt ids and transaction ids, each sorted and without duplicates; its
//!   root is the [`super::merkle`] root over the receipt leaves (`'R' ‖ id`) followed by
//!   the transaction leaves (`'T' ‖ id`). The root does not commit to the height; votes do.
//! * [`build_batch`] is pure: it skips every item `already_included` in a final earlier batch
//!   (never counted twice); what is not in this batch stays in the caller's pool for a later
//!   block (never lost). [`PendingPool`] is such a pool: an item stamped at height `h` is eligible
//!   from block `h + 1` on (one block for gossip to spread it), so a receipt that arrives late
//!   simply lands in the next batch built after it arrives.
//! * Validators sign ([`BatchVote`]) `(height, root)` under a domain tag. [`Finality`] declares a
//!   batch final when votes for the **same** root come from distinct active validators holding
//!   strictly more than 2/3 of active validator stake: `3·signed > 2·total`, exact in integers.
//!   A second, different vote by one validator for one height is refused and reported as
//!   equivocation (the first vote stands).
//! * A validator whose own root differs from the one gathering votes asks a voter for that
//!   batch ([`Batch::validate`] checks it) and fetches the receipts it lacks by id
//!   ([`Batch::missing`]) before it signs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::merkle::{self, InclusionProof};
use super::{verify_sig, Enc, Hash, Sig};
use crate::economics::{mul_div_floor, Amount, Height};

/// Domain tag of batch votes.
pub const VOTE_TAG: &str = "brainmesh/ledger/batch-vote/v1";
/// Leaf prefix of a receipt id.
pub const RECEIPT_LEAF: u8 = b'R';
/// Leaf prefix of a transaction id.
pub const TX_LEAF: u8 = b'T';

/// A block's batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Block height this batch is for.
    pub height: Height,
    /// Receipt ids, sorted, no duplicates.
    pub receipts: Vec<String>,
    /// Transaction ids, sorted, no duplicates.
    pub txs: Vec<String>,
    /// Merkle root over the receipt leaves then the transaction leaves (see [`Batch::root_of`]).
    #[serde(with = "super::hex_array")]
    pub root: Hash,
}

/// Why a batch received from a peer was refused by [`Batch::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Receipt or transaction ids are not strictly sorted (unsorted or duplicated).
    #[error("batch ids are not sorted and unique")]
    NotCanonical,
    /// The root does not match the root recomputed from the ids.
    #[error("batch root does not match its contents")]
    BadRoot,
}

fn leaf(prefix: u8, id: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(id.len() + 1);
    v.push(prefix);
    v.extend_from_slice(id.as_bytes());
    v
}

fn strictly_sorted(v: &[String]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

impl Batch {
    /// Sorts and deduplicates the ids and computes the root.
    pub fn new(
        height: Height,
        receipts: impl IntoIterator<Item = String>,
        txs: impl IntoIterator<Item = String>,
    ) -> Self {
        let receipts: Vec<String> = receipts.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let txs: Vec<String> = txs.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let root = Self::root_of(&receipts, &txs);
        Self { height, receipts, txs, root }
    }

    fn leaves_of(receipts: &[String], txs: &[String]) -> Vec<Vec<u8>> {
        receipts.iter().map(|r| leaf(RECEIPT_LEAF, r)).chain(txs.iter().map(|t| leaf(TX_LEAF, t))).collect()
    }

    /// The root over `receipts` then `txs` (given in canonical order).
    pub fn root_of(receipts: &[String], txs: &[String]) -> Hash {
        merkle::root(&Self::leaves_of(receipts, txs))
    }

    /// Checks a batch received from a peer: canonical order and a matching root.
    pub fn validate(&self) -> Result<(), BatchError> {
        if !strictly_sorted(&self.receipts) || !strictly_sorted(&self.txs) {
            return Err(BatchError::NotCanonical);
        }
        if Self::root_of(&self.receipts, &self.txs) != self.root {
            return Err(BatchError::BadRoot);
        }
        Ok(())
    }

    /// Whether the batch holds no receipts and no transactions.
    pub fn is_empty(&self) -> bool {
        self.receipts.is_empty() && self.txs.is_empty()
    }

    /// Receipt and transaction ids in this batch that `have` says we lack (to fetch by id).
    pub fn missing(&self, have: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.receipts.iter().chain(&self.txs).filter(|id| !have(id)).cloned().collect()
    }

    /// Proof that receipt `id` is in this batch (leaf `'R' ‖ id`).
    pub fn receipt_proof(&self, id: &str) -> Option<InclusionProof> {
        let i = self.receipts.binary_search_by(|r| r.as_str().cmp(id)).ok()?;
        merkle::proof(&Self::leaves_of(&self.receipts, &self.txs), i)
    }

    /// Checks a [`receipt_proof`](Self::receipt_proof) against a batch root.
    pub fn verify_receipt(id: &str, proof: &InclusionProof, root: &Hash) -> bool {
        merkle::verify(&leaf(RECEIPT_LEAF, id), proof, root)
    }
}

/// The batch for block `height`: every pending id not `already_included` in a final earlier
/// batch, sorted and deduplicated. Pure; the pool is the caller's.
pub fn build_batch(
    height: Height,
    pending_receipts: &[String],
    pending_txs: &[String],
    already_included: &dyn Fn(&str) -> bool,
) -> Batch {
    let r = pending_receipts.iter().filter(|id| !already_included(id)).cloned();
    let t = pending_txs.iter().filter(|id| !already_included(id)).cloned();
    Batch::new(height, r, t)
}

/// Receipts and transactions seen but not yet in a final batch, with the height each was
/// stamped with (a receipt's block height; a transaction's arrival height).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPool {
    /// Pending receipt ids and the height each was stamped with (its block height).
    pub receipts: BTreeMap<String, Height>,
    /// Pending transaction ids and the height each was stamped with (its arrival height).
    pub txs: BTreeMap<String, Height>,
}

impl PendingPool {
    /// Adds a receipt stamped at `stamped`; a receipt already pending keeps its first stamp.
    pub fn add_receipt(&mut self, id: &str, stamped: Height) {
        self.receipts.entry(id.to_string()).or_insert(stamped);
    }

    /// Adds a transaction stamped at `stamped`; one already pending keeps its first stamp.
    pub fn add_tx(&mut self, id: &str, stamped: Height) {
        self.txs.entry(id.to_string()).or_insert(stamped);
    }

    /// The batch for block `height`: items stamped before `height`, not already included, at
    /// most `max_items` of each kind (the smallest ids first; the rest wait for later blocks).
    pub fn batch_for(&self, height: Height, max_items: usize, already_included: &dyn Fn(&str) -> bool) -> Batch {
        let pick = |m: &BTreeMap<String, Height>| -> Vec<String> {
            m.iter()
                .filter(|(id, h)| **h < height && !already_included(id))
                .map(|(id, _)| id.clone())
                .take(max_items)
                .collect()
        };
        build_batch(height, &pick(&self.receipts), &pick(&self.txs), already_included)
    }

    /// Drops what a final batch included; everything else stays pending.
    pub fn on_final(&mut self, batch: &Batch) {
        for id in &batch.receipts {
            self.receipts.remove(id);
        }
        for id in &batch.txs {
            self.txs.remove(id);
        }
    }

    /// Number of pending receipts plus pending transactions.
    pub fn len(&self) -> usize {
        self.receipts.len() + self.txs.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A validator's signature on `(height, root)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchVote {
    /// Block height voted on.
    pub height: Height,
    /// Batch root voted for.
    #[serde(with = "super::hex_array")]
    pub root: Hash,
    /// The voting validator's peer id.
    pub validator: String,
    /// Ed25519 signature over [`BatchVote::signing_bytes`].
    #[serde(with = "super::hex_array")]
    pub sig: Sig,
}

impl BatchVote {
    /// Canonical bytes a validator signs: [`VOTE_TAG`], then `height`, `root` and `validator`.
    pub fn signing_bytes_of(height: Height, root: &Hash, validator: &str) -> Vec<u8> {
        let mut e = Enc::new(VOTE_TAG);
        e.u64(height).raw(root).str(validator);
        e.into_bytes()
    }

    /// The bytes this vote's signature covers (see [`BatchVote::signing_bytes_of`]).
    pub fn signing_bytes(&self) -> Vec<u8> {
        Self::signing_bytes_of(self.height, &self.root, &self.validator)
    }

    /// A vote on `(height, root)` by `validator`, signed with `sign` (its ed25519 key).
    pub fn new_signed(height: Height, root: Hash, validator: &str, sign: &dyn Fn(&[u8]) -> Sig) -> Self {
        let sig = sign(&Self::signing_bytes_of(height, &root, validator));
        Self { height, root, validator: validator.to_string(), sig }
    }

    /// Whether the signature verifies under `pubkey` (the validator's ed25519 key).
    pub fn verify_with(&self, pubkey: &[u8; 32]) -> bool {
        verify_sig(pubkey, &self.signing_bytes(), &self.sig)
    }
}

/// `3·signed > 2·total` (strictly more than two thirds), exact for any u128.
pub fn is_supermajority(signed: Amount, total: Amount) -> bool {
    // 3s > 2t  ⇔  s > floor(2t/3) for integers; floor(2t/3) always fits u128.
    total > 0 && mul_div_floor(total, 2, 3).is_ok_and(|bar| signed > bar)
}

/// Proof of finality: the root of `height` with the signatures that made it final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalBatch {
    /// Block height that became final.
    pub height: Height,
    /// The final batch root.
    #[serde(with = "super::hex_array")]
    pub root: Hash,
    /// (validator, signature), sorted by validator.
    pub signatures: Vec<(String, String)>,
    /// Sum of the signers' stake; strictly more than 2/3 of `total_stake`.
    pub signed_stake: Amount,
    /// Total stake of the active validator set the votes were counted against.
    pub total_stake: Amount,
}

impl FinalBatch {
    /// Re-checks the certificate against a validator set (`stakes`: active validators and their
    /// stake): distinct known validators, valid signatures, more than 2/3 of the set's stake.
    pub fn verify(&self, stakes: &BTreeMap<String, Amount>, pubkey_of: &dyn Fn(&str) -> Option<[u8; 32]>) -> bool {
        let total: Option<Amount> = stakes.values().try_fold(0u128, |a, s| a.checked_add(*s));
        let Some(total) = total else { return false };
        let mut seen = BTreeSet::new();
        let mut signed: Amount = 0;
        for (v, sig_hex) in &self.signatures {
            if !seen.insert(v.as_str()) {
                return false;
            }
            let Some(stake) = stakes.get(v) else {
                return false;
            };
            let Some(pk) = pubkey_of(v) else { return false };
            let Some(sig) = hex::decode(sig_hex).ok().and_then(|b| <Sig>::try_from(b).ok()) else {
                return false;
            };
            if !verify_sig(&pk, &BatchVote::signing_bytes_of(self.height, &self.root, v), &sig) {
                return false;
            }
            signed = signed.saturating_add(*stake);
        }
        is_supermajority(signed, total)
    }
}

/// Why a vote was not counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    /// The voter is not in the active validator set (or its public key is unknown).
    #[error("{0} is not an active validator")]
    UnknownValidator(String),
    /// The vote's signature does not verify under the validator's key.
    #[error("vote signature does not verify")]
    BadSignature,
    /// Two different roots signed by one validator for one height: both votes are evidence.
    #[error("validator {} signed two roots at height {}", first.validator, first.height)]
    Equivocation {
        /// The validator's first vote for the height (the one that stands).
        first: Box<BatchVote>,
        /// The conflicting later vote.
        second: Box<BatchVote>,
    },
}

#[derive(Debug, Clone, Default)]
struct HeightVotes {
    by_validator: BTreeMap<String, BatchVote>,
    final_root: Option<Hash>,
}

/// Collects votes per height for one active validator set.
#[derive(Debug, Clone)]
pub struct Finality {
    stakes: BTreeMap<String, Amount>,
    total: Amount,
    heights: BTreeMap<Height, HeightVotes>,
}

impl Finality {
    /// `stakes`: the active validators and their stake (validators with zero stake are ignored).
    pub fn new(stakes: BTreeMap<String, Amount>) -> Self {
        let stakes: BTreeMap<String, Amount> = stakes.into_iter().filter(|(_, s)| *s > 0).collect();
        let total = stakes.values().fold(0u128, |a, s| a.saturating_add(*s));
        Self { stakes, total, heights: BTreeMap::new() }
    }

    /// Total stake of the active validators (those with non-zero stake).
    pub fn total_stake(&self) -> Amount {
        self.total
    }

    /// Counts a vote. Returns the [`FinalBatch`] exactly once per height: on the vote that takes
    /// a root past 2/3 of stake. Repeating a vote is harmless (`Ok(None)`).
    pub fn add_vote(
        &mut self,
        vote: &BatchVote,
        pubkey_of: &dyn Fn(&str) -> Option<[u8; 32]>,
    ) -> Result<Option<FinalBatch>, VoteError> {
        if !self.stakes.contains_key(&vote.validator) {
            return Err(VoteError::UnknownValidator(vote.validator.clone()));
        }
        let pk = pubkey_of(&vote.validator).ok_or_else(|| VoteError::UnknownValidator(vote.validator.clone()))?;
        if !vote.verify_with(&pk) {
            return Err(VoteError::BadSignature);
        }
        let hv = self.heights.entry(vote.height).or_default();
        if let Some(first) = hv.by_validator.get(&vote.validator) {
            if first.root == vote.root {
                return Ok(None);
            }
            return Err(VoteError::Equivocation { first: Box::new(first.clone()), second: Box::new(vote.clone()) });
        }
        hv.by_validator.insert(vote.validator.clone(), vote.clone());
        if hv.final_root.is_some() {
            return Ok(None);
        }
        let for_root: Vec<&BatchVote> = hv.by_validator.values().filter(|v| v.root == vote.root).collect();
        let signed =
            for_root.iter().fold(0u128, |a, v| a.saturating_add(self.stakes.get(&v.validator).copied().unwrap_or(0)));
        if !is_supermajority(signed, self.total) {
            return Ok(None);
        }
        hv.final_root = Some(vote.root);
        Ok(Some(FinalBatch {
            height: vote.height,
            root: vote.root,
            signatures: for_root.iter().map(|v| (v.validator.clone(), hex::encode(v.sig))).collect(),
            signed_stake: signed,
            total_stake: self.total,
        }))
    }

    /// The final root of `height`, if any.
    pub fn final_root(&self, height: Height) -> Option<Hash> {
        self.heights.get(&height).and_then(|h| h.final_root)
    }

    /// Forgets votes below `height`.
    pub fn prune_below(&mut self, height: Height) {
        self.heights = self.heights.split_off(&height);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{pubkey_of, signer};
    use proptest::prelude::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn vote(h: Height, root: Hash, v: &str) -> BatchVote {
        BatchVote::new_signed(h, root, v, &signer(v))
    }

    fn set(v: &[(&str, Amount)]) -> BTreeMap<String, Amount> {
        v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    #[test]
    fn batch_is_sorted_deduplicated_and_root_checked() {
        let b = Batch::new(3, ids(&["c", "a", "c", "b"]), ids(&["y", "x"]));
        assert_eq!(b.receipts, ids(&["a", "b", "c"]));
        assert_eq!(b.txs, ids(&["x", "y"]));
        b.validate().unwrap();
        // the same ids in any order give the same root
        assert_eq!(Batch::new(3, ids(&["b", "c", "a"]), ids(&["x", "y"])).root, b.root);
        // a receipt id is not a tx id
        assert_ne!(Batch::new(3, ids(&["x"]), vec![]).root, Batch::new(3, vec![], ids(&["x"])).root);
        let mut bad = b.clone();
        bad.receipts.swap(0, 1);
        assert_eq!(bad.validate(), Err(BatchError::NotCanonical));
        let mut bad = b.clone();
        bad.txs.push("z".into());
        assert_eq!(bad.validate(), Err(BatchError::BadRoot));
        let p = b.receipt_proof("b").unwrap();
        assert!(Batch::verify_receipt("b", &p, &b.root));
        assert!(!Batch::verify_receipt("a", &p, &b.root));
        assert!(b.receipt_proof("zz").is_none());
        assert_eq!(b.missing(&|id| id != "b" && id != "y"), ids(&["b", "y"]));
        assert_eq!(Batch::new(0, vec![], vec![]).root, merkle::empty_root());
    }

    #[test]
    fn items_in_a_final_batch_are_never_counted_twice_and_late_ones_are_never_lost() {
        let mut pool = PendingPool::default();
        let mut included: BTreeSet<String> = BTreeSet::new();
        pool.add_receipt("r1", 1);
        pool.add_receipt("r2", 1);
        pool.add_tx("t1", 1);
        // block 1: nothing stamped before height 1
        assert!(pool.batch_for(1, 100, &|id| included.contains(id)).is_empty());
        let b2 = pool.batch_for(2, 100, &|id| included.contains(id));
        assert_eq!((b2.receipts.clone(), b2.txs.clone()), (ids(&["r1", "r2"]), ids(&["t1"])));
        included.extend(b2.receipts.iter().chain(&b2.txs).cloned());
        pool.on_final(&b2);
        // r1 gossiped again, and a late receipt stamped at height 1 arrives after block 2
        pool.add_receipt("r1", 1);
        pool.add_receipt("late", 1);
        let b3 = pool.batch_for(3, 100, &|id| included.contains(id));
        assert_eq!(b3.receipts, ids(&["late"]), "r1 is not counted twice, late lands in block 3");
        // the cap leaves the rest pending
        for i in 0..5 {
            pool.add_receipt(&format!("x{i}"), 2);
        }
        let b = pool.batch_for(3, 2, &|id| included.contains(id));
        assert_eq!(b.receipts, ids(&["late", "x0"]));
        pool.on_final(&b);
        assert_eq!(pool.receipts.len(), 5);
    }

    #[test]
    fn supermajority_is_strictly_more_than_two_thirds() {
        assert!(!is_supermajority(2, 3));
        assert!(is_supermajority(3, 3));
        assert!(!is_supermajority(66, 100));
        assert!(is_supermajority(67, 100));
        assert!(!is_supermajority(200, 300));
        assert!(is_supermajority(201, 300));
        assert!(!is_supermajority(0, 0));
        assert!(is_supermajority(u128::MAX, u128::MAX));
        assert!(!is_supermajority(u128::MAX / 3 * 2, u128::MAX));
    }

    #[test]
    fn batch_is_final_only_with_more_than_two_thirds_of_stake_on_one_root() {
        let stakes = set(&[("v1", 30), ("v2", 30), ("v3", 30), ("v4", 10)]);
        let mut f = Finality::new(stakes.clone());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(f.add_vote(&vote(5, a, "v1"), &pubkey_of), Ok(None));
        assert_eq!(f.add_vote(&vote(5, b, "v2"), &pubkey_of), Ok(None));
        // v1 + v3 = 60 on a: not enough; v4 makes 70 > 66.67
        assert_eq!(f.add_vote(&vote(5, a, "v3"), &pubkey_of), Ok(None));
        assert_eq!(f.add_vote(&vote(5, a, "v3"), &pubkey_of), Ok(None), "a repeated vote counts once");
        let fin = f.add_vote(&vote(5, a, "v4"), &pubkey_of).unwrap().unwrap();
        assert_eq!((fin.height, fin.root, fin.signed_stake, fin.total_stake), (5, a, 70, 100));
        assert_eq!(fin.signatures.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(), ["v1", "v3", "v4"]);
        assert!(fin.verify(&stakes, &pubkey_of));
        assert_eq!(f.final_root(5), Some(a));
        // after finality v3 switching roots is still equivocation
        let mut g = f.clone();
        assert!(g.add_vote(&vote(5, b, "v3"), &pubkey_of).is_err());
        // a certificate without enough stake, or with a forged or duplicated signer, fails
        let mut weak = fin.clone();
        weak.signatures.pop();
        assert!(!weak.verify(&stakes, &pubkey_of));
        let mut dup = fin.clone();
        dup.signatures[2] = dup.signatures[0].clone();
        assert!(!dup.verify(&stakes, &pubkey_of));
        let mut forged = fin.clone();
        forged.signatures[2].1 = hex::encode(vote(5, b, "v4").sig);
        assert!(!forged.verify(&stakes, &pubkey_of));
        f.prune_below(6);
        assert_eq!(f.final_root(5), None);
    }

    #[test]
    fn equivocation_keeps_the_first_vote_and_reports_both() {
        let mut f = Finality::new(set(&[("v1", 50), ("v2", 50)]));
        let (a, b) = ([1u8; 32], [2u8; 32]);
        f.add_vote(&vote(9, a, "v1"), &pubkey_of).unwrap();
        match f.add_vote(&vote(9, b, "v1"), &pubkey_of) {
            Err(VoteError::Equivocation { first, second }) => {
                assert_eq!((first.root, second.root), (a, b));
            }
            other => panic!("{other:?}"),
        }
        // v1's first vote still counts: v2 on a makes 100%
        assert!(f.add_vote(&vote(9, a, "v2"), &pubkey_of).unwrap().is_some());
    }

    #[test]
    fn forged_and_unknown_votes_are_refused() {
        let mut f = Finality::new(set(&[("v1", 50), ("v2", 50), ("zero", 0)]));
        let a = [1u8; 32];
        let forged = BatchVote::new_signed(1, a, "v1", &signer("v2"));
        assert_eq!(f.add_vote(&forged, &pubkey_of), Err(VoteError::BadSignature));
        let mut moved = vote(1, a, "v1");
        moved.height = 2;
        assert_eq!(f.add_vote(&moved, &pubkey_of), Err(VoteError::BadSignature));
        assert_eq!(f.add_vote(&vote(1, a, "x"), &pubkey_of), Err(VoteError::UnknownValidator("x".into())));
        assert_eq!(f.add_vote(&vote(1, a, "zero"), &pubkey_of), Err(VoteError::UnknownValidator("zero".into())));
        assert_eq!(f.total_stake(), 100);
        let v = vote(1, a, "v1");
        let back: BatchVote = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Whatever the order of votes, a height becomes final iff the stake on one root exceeds
        /// 2/3, at most one root is final, and the certificate verifies.
        #[test]
        fn finality_matches_the_stake_count(
            stakes in prop::collection::vec(1u128..1000, 1..7),
            choice in prop::collection::vec(0u8..3, 7),
        ) {
            let names: Vec<String> = (0..stakes.len()).map(|i| format!("v{i}")).collect();
            let set: BTreeMap<String, Amount> = names.iter().cloned().zip(stakes.iter().copied()).collect();
            let total: u128 = stakes.iter().sum();
            let mut f = Finality::new(set.clone());
            let mut finals = Vec::new();
            for (i, n) in names.iter().enumerate() {
                if choice[i] == 2 { continue; } // abstains
                let root = [choice[i]; 32];
                if let Some(fb) = f.add_vote(&vote(1, root, n), &pubkey_of).unwrap() {
                    prop_assert!(fb.verify(&set, &pubkey_of));
                    finals.push(fb.root);
                }
            }
            let on = |r: u8| -> u128 { (0..names.len()).filter(|i| choice[*i] == r).map(|i| stakes[i]).sum() };
            let expect: Vec<Hash> = [0u8, 1].iter().filter(|r| 3 * on(**r) > 2 * total).map(|r| [*r; 32]).collect();
            prop_assert_eq!(finals, expect);
        }
    }
}
