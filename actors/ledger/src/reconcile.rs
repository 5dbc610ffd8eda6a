//! Set reconciliation of pending receipt ids between validators (issue 17): instead of resending
//! every pending id, a validator sends one 64-bit digest per bucket of its pending set
//! ([`BUCKETS`] buckets, chosen by the id's leading hex digits); the peer answers with its own ids
//! in the buckets whose digests differ, and the requester fetches only the bodies it lacks.
//!
//! Cost: a request is `BUCKETS` digests (about 1.3 KB of JSON) whatever the pool's size; an
//! answer carries at most [`MAX_IDS_PER_ANSWER`] ids. Two pools that agree exchange nothing but
//! the digests. Ids are hex (the receipts' content ids); anything else lands in bucket 0.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// Buckets of a digest vector.
pub const BUCKETS: usize = 64;
/// Ids an answer carries at most (the rest are found in a later round).
pub const MAX_IDS_PER_ANSWER: usize = 2048;

/// The bucket of an id: its first two hex digits, divided by four (0..64).
pub fn bucket_of(id: &str) -> usize {
    id.get(..2).and_then(|p| u8::from_str_radix(p, 16).ok()).map(|b| (b >> 2) as usize).unwrap_or(0)
}

/// One digest per bucket: the first 8 bytes of sha256 over the bucket's ids in order, each
/// followed by a newline; 0 for an empty bucket.
pub fn digests<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<u64> {
    let mut per: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); BUCKETS];
    for id in ids {
        per[bucket_of(id)].insert(id.as_str());
    }
    per.iter()
        .map(|set| {
            if set.is_empty() {
                return 0;
            }
            let mut h = Sha256::new();
            for id in set {
                h.update(id.as_bytes());
                h.update(b"\n");
            }
            let d = h.finalize();
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[..8]);
            u64::from_be_bytes(b)
        })
        .collect()
}

/// The answer to a peer's digests: this side's ids in every bucket whose digest differs (a
/// digest vector of the wrong length differs everywhere), smallest first, at most
/// [`MAX_IDS_PER_ANSWER`].
pub fn ids_to_offer<'a>(mine: impl IntoIterator<Item = &'a String>, theirs: &[u64]) -> Vec<String> {
    let mine: Vec<&String> = mine.into_iter().collect();
    let ours = digests(mine.iter().copied());
    let differs = |b: usize| theirs.len() != BUCKETS || theirs[b] != ours[b];
    let mut out: Vec<String> = mine.into_iter().filter(|id| differs(bucket_of(id))).cloned().collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_IDS_PER_ANSWER);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, salt: &str) -> Vec<String> {
        (0..n).map(|i| hex::encode(crate::sha256(format!("{salt}{i}").as_bytes()))[..32].to_string()).collect()
    }

    #[test]
    fn equal_pools_exchange_no_ids_and_a_missing_id_is_found_in_its_bucket_only() {
        let a = ids(500, "r");
        assert!(ids_to_offer(&a, &digests(&a)).is_empty(), "agreeing pools send nothing");
        let mut b = a.clone();
        let missing = b.remove(123);
        let offer = ids_to_offer(&a, &digests(&b));
        assert!(offer.contains(&missing));
        assert!(offer.iter().all(|id| bucket_of(id) == bucket_of(&missing)), "only the differing bucket");
        assert!(offer.len() < a.len() / 10, "{} ids offered of {}", offer.len(), a.len());
    }

    #[test]
    fn digests_ignore_order_and_a_malformed_vector_differs_everywhere() {
        let a = ids(50, "x");
        let mut rev = a.clone();
        rev.reverse();
        assert_eq!(digests(&a), digests(&rev));
        assert_eq!(digests(&Vec::<String>::new()), vec![0; BUCKETS]);
        assert_eq!(ids_to_offer(&a, &[1, 2, 3]).len(), 50);
        assert_eq!(bucket_of("zz"), 0);
        assert_eq!(bucket_of("ff00"), 63);
    }

    #[test]
    fn an_answer_is_bounded() {
        let a = ids(MAX_IDS_PER_ANSWER + 500, "big");
        assert_eq!(ids_to_offer(&a, &[]).len(), MAX_IDS_PER_ANSWER);
    }
}
