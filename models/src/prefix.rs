//! A prefix KV cache: the keys and values of recent prompts, kept so that a later prompt that
//! starts with the same tokens (a shared system prompt, a growing chat) skips their prefill.
//!
//! The gateway's prefix affinity sends prompts with a shared prefix to the same miner; this
//! cache is what makes that pay. Entries are whole prompts (token ids plus `[1, kv_heads, len,
//! head_dim]` keys/values per layer, deep copies), evicted least-recently-used under an entry
//! and a token budget. A lookup returns the longest common prefix with any entry, capped one
//! token short of the prompt (the last prompt token must still run to produce logits).

use tch::Tensor;

use crate::cache::KvCache;
use crate::error::Result;

/// Hit statistics since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Prompts looked up.
    pub lookups: u64,
    /// Lookups that reused at least `min_match` tokens.
    pub hits: u64,
    /// Prompt tokens whose prefill was skipped.
    pub reused_tokens: u64,
    /// Prompt tokens looked up in all.
    pub prompt_tokens: u64,
}

struct Entry {
    tokens: Vec<u32>,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// The prompt's last hidden states `[len, H]` (bf16), when it was run with activations
    /// recorded (proof of inference): a later prompt reusing this prefix needs them too.
    hidden: Option<Tensor>,
    last_used: u64,
}

pub struct PrefixCache {
    entries: Vec<Entry>,
    max_entries: usize,
    max_tokens: usize,
    min_match: usize,
    tick: u64,
    stats: PrefixStats,
}

/// Length of the common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// `max_entries` prompts and `max_tokens` cached positions at most; a match shorter than
    /// `min_match` tokens is not worth a copy and counts as a miss.
    pub fn new(max_entries: usize, max_tokens: usize, min_match: usize) -> Self {
        Self {
            entries: Vec::new(),
            max_entries,
            max_tokens,
            min_match: min_match.max(1),
            tick: 0,
            stats: PrefixStats::default(),
        }
    }

    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tokens held in all entries.
    pub fn cached_tokens(&self) -> usize {
        self.entries.iter().map(|e| e.tokens.len()).sum()
    }

    /// The entry and the number of tokens of `prompt` it can supply (at most `prompt.len() - 1`).
    fn best(&self, prompt: &[u32]) -> Option<(usize, usize)> {
        let cap = prompt.len().saturating_sub(1);
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(cap)))
            .filter(|&(_, m)| m >= self.min_match)
            .max_by_key(|&(i, m)| (m, self.entries[i].last_used))
    }

    /// Fills the start of the fresh `cache` (batch 1) with the longest cached prefix of
    /// `prompt`; returns how many positions it filled (0 on a miss) and, with `need_hidden`,
    /// their hidden states (an entry stored without them is then a miss).
    pub(crate) fn restore(
        &mut self,
        prompt: &[u32],
        cache: &mut KvCache,
        need_hidden: bool,
    ) -> Result<(usize, Option<Tensor>)> {
        self.stats.lookups += 1;
        self.stats.prompt_tokens += prompt.len() as u64;
        if cache.batch() != 1 || !cache.is_empty() {
            return Ok((0, None));
        }
        let Some((i, m)) = self.best(prompt) else { return Ok((0, None)) };
        if m > cache.capacity() {
            return Ok((0, None));
        }
        self.tick += 1;
        let e = &mut self.entries[i];
        if e.k.len() != cache.k.len() {
            return Ok((0, None));
        }
        let hidden = match (&e.hidden, need_hidden) {
            (Some(h), true) => Some(h.f_narrow(0, 0, m as i64)?.copy()),
            (None, true) => return Ok((0, None)),
            (_, false) => None,
        };
        e.last_used = self.tick;
        for l in 0..cache.k.len() {
            cache.k[l].narrow(2, 0, m as i64).f_copy_(&e.k[l].narrow(2, 0, m as i64))?;
            cache.v[l].narrow(2, 0, m as i64).f_copy_(&e.v[l].narrow(2, 0, m as i64))?;
        }
        cache.advance(m);
        self.stats.hits += 1;
        self.stats.reused_tokens += m as u64;
        Ok((m, hidden))
    }

    /// Keeps the keys/values of `prompt` (the first `prompt.len()` positions of `cache`, which
    /// has just been prefilled). An entry that is a prefix of `prompt` is replaced by it.
    pub(crate) fn store(&mut self, prompt: &[u32], cache: &KvCache, hidden: Option<&Tensor>) -> Result<()> {
        let n = prompt.len();
        if cache.batch() != 1 || cache.len() < n || n < self.min_match || n > self.max_tokens || self.max_entries == 0 {
            return Ok(());
        }
        self.tick += 1;
        let hidden = match hidden {
            Some(h) if h.size().first() == Some(&(n as i64)) => Some(h.copy()),
            _ => None,
        };
        if let Some(e) = self.entries.iter_mut().find(|e| e.tokens.len() >= n && e.tokens[..n] == *prompt) {
            e.last_used = self.tick; // already held (as itself or inside a longer prompt)
            if e.hidden.is_none() && e.tokens.len() == n {
                e.hidden = hidden;
            }
            return Ok(());
        }
        self.entries.retain(|e| !(e.tokens.len() < n && prompt[..e.tokens.len()] == *e.tokens));
        let mut k = Vec::with_capacity(cache.k.len());
        let mut v = Vec::with_capacity(cache.v.len());
        for l in 0..cache.k.len() {
            k.push(cache.k[l].narrow(2, 0, n as i64).copy());
            v.push(cache.v[l].narrow(2, 0, n as i64).copy());
        }
        self.entries.push(Entry { tokens: prompt.to_vec(), k, v, hidden, last_used: self.tick });
        while self.entries.len() > self.max_entries || self.cached_tokens() > self.max_tokens {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i) else {
                break;
            };
            self.entries.swap_remove(oldest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_leading_equal_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[5], &[1]), 0);
    }

    fn filled(tokens: &[u32], layers: usize) -> KvCache {
        let mut c = KvCache::new(layers, 2, 4, vec![0], 64, tch::Device::Cpu, tch::Kind::Float).unwrap();
        for l in 0..layers {
            // Position p of layer l holds the value 1000*l + token id, so copies are checkable.
            for (p, &t) in tokens.iter().enumerate() {
                let _ = c.k[l].narrow(2, p as i64, 1).fill_((1000 * l) as f64 + t as f64);
                let _ = c.v[l].narrow(2, p as i64, 1).fill_(-((1000 * l) as f64 + t as f64));
            }
        }
        c.advance(tokens.len());
        c
    }

    #[test]
    fn a_shared_prefix_is_restored_into_a_fresh_cache_and_counted() {
        let mut pc = PrefixCache::new(4, 1000, 2);
        let a = [7u32, 8, 9, 10, 11];
        pc.store(&a, &filled(&a, 3), None).unwrap();
        let b = [7u32, 8, 9, 42, 43, 44];
        let mut fresh = KvCache::new(3, 2, 4, vec![0], 64, tch::Device::Cpu, tch::Kind::Float).unwrap();
        assert_eq!(pc.restore(&b, &mut fresh, false).unwrap().0, 3);
        assert_eq!(fresh.len(), 3);
        for l in 0..3 {
            let got = Vec::<f32>::try_from(fresh.k[l].narrow(2, 0, 3).select(3, 0).select(1, 0).reshape([-1])).unwrap();
            let want: Vec<f32> = [7, 8, 9].iter().map(|&t| (1000 * l + t) as f32).collect();
            assert_eq!(got, want);
            let beyond = f64::try_from(fresh.k[l].narrow(2, 3, 1).abs().sum(tch::Kind::Float)).unwrap();
            assert_eq!(beyond, 0.0, "nothing past the shared prefix is copied");
        }
        // The same prompt again: everything but its last token comes from the cache.
        let mut again = KvCache::new(3, 2, 4, vec![0], 64, tch::Device::Cpu, tch::Kind::Float).unwrap();
        assert_eq!(pc.restore(&a, &mut again, false).unwrap().0, 4);
        // Too short a match is a miss.
        let mut other = KvCache::new(3, 2, 4, vec![0], 64, tch::Device::Cpu, tch::Kind::Float).unwrap();
        assert_eq!(pc.restore(&[7, 1, 2], &mut other, false).unwrap().0, 0);
        assert_eq!(pc.stats(), PrefixStats { lookups: 3, hits: 2, reused_tokens: 7, prompt_tokens: 14 });
    }

    #[test]
    fn stored_entries_are_copies_not_views_of_the_live_cache() {
        let mut pc = PrefixCache::new(4, 1000, 2);
        let a = [1u32, 2, 3, 4];
        let mut live = filled(&a, 1);
        pc.store(&a, &live, None).unwrap();
        let _ = live.k[0].fill_(99.0);
        let mut fresh = KvCache::new(1, 2, 4, vec![0], 64, tch::Device::Cpu, tch::Kind::Float).unwrap();
        assert_eq!(pc.restore(&[1, 2, 3, 4, 5], &mut fresh, false).unwrap().0, 4);
        let first = f64::try_from(fresh.k[0].narrow(2, 0, 1).mean(tch::Kind::Float)).unwrap();
        assert_eq!(first, 1.0);
    }

    #[test]
    fn longer_prompts_replace_their_prefixes_and_old_entries_are_evicted() {
        let mut pc = PrefixCache::new(2, 1000, 1);
        pc.store(&[1, 2], &filled(&[1, 2], 1), None).unwrap();
        pc.store(&[1, 2, 3], &filled(&[1, 2, 3], 1), None).unwrap();
        assert_eq!((pc.len(), pc.cached_tokens()), (1, 3), "[1,2] was folded into [1,2,3]");
        pc.store(&[1, 2], &filled(&[1, 2], 1), None).unwrap();
        assert_eq!(pc.len(), 1, "a prefix of a held prompt is not stored twice");
        pc.store(&[5, 6], &filled(&[5, 6], 1), None).unwrap();
        pc.store(&[8, 9], &filled(&[8, 9], 1), None).unwrap();
        assert_eq!(pc.len(), 2);
        let mut fresh = KvCache::new(1, 2, 4, vec![0], 64, tch::Device::Cpu, tch::Kind::Float).unwrap();
        assert_eq!(pc.restore(&[5, 6, 7], &mut fresh, false).unwrap().0, 2, "the newer entries stay");
        // A token budget evicts too.
        let mut small = PrefixCache::new(10, 4, 1);
        small.store(&[1, 2, 3], &filled(&[1, 2, 3], 1), None).unwrap();
        small.store(&[4, 5, 6], &filled(&[4, 5, 6], 1), None).unwrap();
        assert_eq!((small.len(), small.cached_tokens()), (1, 3));
    }
}
