//! sha256 Merkle tree with the shape of RFC 6962 / RFC 9162 §2.1.1.
//!
//! * leaf hash = sha256(0x00 ‖ leaf bytes), node hash = sha256(0x01 ‖ left ‖ right), so a leaf
//!   can never be passed off as an inner node (second-preimage safe);
//! * a level with an odd number of nodes **promotes** its last node unchanged to the next level
//!   (no duplication, so `[a, b, c]` and `[a, b, c, c]` have different roots). Built level by
//!   level this gives exactly RFC 6962's MTH (tested against a recursive MTH);
//! * the root of the empty tree is sha256 of the empty string (as RFC 6962).
//!
//! An [`InclusionProof`] carries the leaf index and the tree size, since with promotion the
//! levels at which a leaf has no sibling depend on the size. The size is not authenticated by
//! the root on its own (sizes with the same path shape verify alike); records that need it
//! (settlement) store the count next to the root.

use serde::{Deserialize, Serialize};

use super::{sha256, Hash};

/// sha256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(0x00);
    v.extend_from_slice(data);
    sha256(&v)
}

/// sha256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut v = [0u8; 65];
    v[0] = 0x01;
    v[1..33].copy_from_slice(left);
    v[33..].copy_from_slice(right);
    sha256(&v)
}

/// Root of the empty tree: sha256("").
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// Proof that the leaf at `index` is in a tree of `leaf_count` leaves: the sibling hashes from
/// the leaf level upwards (levels where the node is promoted contribute none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Zero-based position of the leaf in the tree.
    pub index: u64,
    /// Number of leaves in the tree (fixes the levels where the node is promoted).
    pub leaf_count: u64,
    /// Sibling hashes from the leaf level upwards, one per level where the node has a sibling.
    #[serde(with = "super::hex_vec32")]
    pub siblings: Vec<Hash>,
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level.chunks(2).map(|c| if c.len() == 2 { node_hash(&c[0], &c[1]) } else { c[0] }).collect()
}

/// Root over already-hashed leaves ([`leaf_hash`] applied by the caller).
pub fn root_of_hashes(leaf_hashes: &[Hash]) -> Hash {
    if leaf_hashes.is_empty() {
        return empty_root();
    }
    let mut level = leaf_hashes.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// Root over leaf byte strings (each hashed with [`leaf_hash`]), in the given order.
pub fn root<T: AsRef<[u8]>>(leaves: &[T]) -> Hash {
    let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    root_of_hashes(&hashes)
}

/// Inclusion proof for `leaves[index]`; `None` if `index` is out of range.
pub fn proof<T: AsRef<[u8]>>(leaves: &[T], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut level: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    let mut idx = index;
    let mut siblings = Vec::new();
    while level.len() > 1 {
        if idx % 2 == 1 {
            siblings.push(level[idx - 1]);
        } else if idx + 1 < level.len() {
            siblings.push(level[idx + 1]);
        }
        level = next_level(&level);
        idx /= 2;
    }
    Some(InclusionProof { index: index as u64, leaf_count: leaves.len() as u64, siblings })
}

/// True if `leaf` (unhashed bytes) is at `proof.index` of a tree of `proof.leaf_count` leaves
/// with root `root`. Any change to the leaf, index, size, a sibling or the root fails.
pub fn verify(leaf: &[u8], proof: &InclusionProof, root: &Hash) -> bool {
    verify_hash(&leaf_hash(leaf), proof, root)
}

/// [`verify`] for an already-hashed leaf.
pub fn verify_hash(leaf_hash: &Hash, proof: &InclusionProof, root: &Hash) -> bool {
    if proof.index >= proof.leaf_count {
        return false;
    }
    let (mut idx, mut len) = (proof.index, proof.leaf_count);
    let mut h = *leaf_hash;
    let mut sibs = proof.siblings.iter();
    while len > 1 {
        if idx % 2 == 1 {
            let Some(s) = sibs.next() else { return false };
            h = node_hash(s, &h);
        } else if idx + 1 < len {
            let Some(s) = sibs.next() else { return false };
            h = node_hash(&h, s);
        }
        idx /= 2;
        len = len.div_ceil(2);
    }
    sibs.next().is_none() && h == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962 §2.1 MTH, recursive: split at the largest power of two below n.
    fn rfc6962_mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => sha256(&[]),
            1 => leaf_hash(&leaves[0]),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&rfc6962_mth(&leaves[..k]), &rfc6962_mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf-{i}").into_bytes()).collect()
    }

    #[test]
    fn empty_and_single_leaf_roots_are_defined() {
        assert_eq!(root::<Vec<u8>>(&[]), sha256(b""));
        assert_eq!(root(&[b"a"]), leaf_hash(b"a"));
        assert_ne!(leaf_hash(b"a"), sha256(b"a"), "leaves are domain separated");
        let p = proof(&[b"a"], 0).unwrap();
        assert!(p.siblings.is_empty());
        assert!(verify(b"a", &p, &root(&[b"a"])));
        assert!(proof::<Vec<u8>>(&[], 0).is_none());
    }

    #[test]
    fn odd_node_is_promoted_not_duplicated() {
        let three = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let four = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"c".to_vec()];
        assert_ne!(root(&three), root(&four));
        let ab = node_hash(&leaf_hash(b"a"), &leaf_hash(b"b"));
        assert_eq!(root(&three), node_hash(&ab, &leaf_hash(b"c")));
    }

    #[test]
    fn root_matches_rfc6962_recursive_definition() {
        for n in 0..40 {
            assert_eq!(root(&leaves(n)), rfc6962_mth(&leaves(n)), "n = {n}");
        }
    }

    #[test]
    fn every_proof_verifies_for_sizes_up_to_33() {
        for n in 1..=33 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = proof(&l, i).unwrap();
                assert!(verify(&l[i], &p, &r), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn tampered_proofs_fail() {
        let l = leaves(11);
        let r = root(&l);
        let p = proof(&l, 6).unwrap();
        assert!(verify(&l[6], &p, &r));
        // wrong leaf
        assert!(!verify(&l[5], &p, &r));
        assert!(!verify(b"leaf-6 ", &p, &r));
        // wrong index, or an index outside the size. (The size itself is not authenticated:
        // sizes whose path has the same shape, here 10 and 12, verify alike.)
        for (index, leaf_count) in [(5, 11), (7, 11), (11, 11), (6, 6), (6, 7), (6, 3)] {
            let q = InclusionProof { index, leaf_count, ..p.clone() };
            assert!(!verify(&l[6], &q, &r), "index {index} size {leaf_count}");
        }
        // a flipped bit in each sibling
        for k in 0..p.siblings.len() {
            let mut q = p.clone();
            q.siblings[k][0] ^= 1;
            assert!(!verify(&l[6], &q, &r));
        }
        // missing, extra sibling
        let mut q = p.clone();
        q.siblings.pop();
        assert!(!verify(&l[6], &q, &r));
        let mut q = p.clone();
        q.siblings.push([0; 32]);
        assert!(!verify(&l[6], &q, &r));
        // wrong root
        let mut r2 = r;
        r2[31] ^= 0x80;
        assert!(!verify(&l[6], &p, &r2));
        // an inner node cannot be passed off as a leaf
        let inner = node_hash(&leaf_hash(&l[0]), &leaf_hash(&l[1]));
        let small = [l[0].clone(), l[1].clone(), l[2].clone()];
        let ps = InclusionProof { index: 0, leaf_count: 2, siblings: vec![leaf_hash(&l[2])] };
        assert!(!verify(&inner, &ps, &root(&small)));
    }

    #[test]
    fn proof_serde_round_trip_uses_hex() {
        let l = leaves(5);
        let p = proof(&l, 4).unwrap();
        let s = serde_json::to_string(&p).unwrap();
        assert!(s.contains(&hex::encode(p.siblings[0])));
        assert_eq!(serde_json::from_str::<InclusionProof>(&s).unwrap(), p);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_trees_prove_every_leaf_and_reject_others(n in 1usize..70, pick in 0usize..70, other in 0usize..70) {
            let l = leaves(n);
            let r = root(&l);
            let i = pick % n;
            let p = proof(&l, i).unwrap();
            prop_assert!(verify(&l[i], &p, &r));
            let j = other % n;
            if j != i {
                prop_assert!(!verify(&l[j], &p, &r));
            }
        }
    }
}
