//! Which heads to keep (pure functions over importance scores; whitepaper §7.1.3).
//!
//! Costs are per query head: its slice of q_proj and o_proj (2·d·head_dim parameters, and the
//! same in multiply-adds per token); a key/value head goes when no kept query head reads it,
//! which the exporter accounts for. At least one head is kept in every layer.

use serde::Serialize;

/// Per layer, for each query head, keep or not.
pub type Keep = Vec<Vec<bool>>;

/// Keeps heads with S(h) > θ (and each layer's most important head).
pub fn by_threshold(scores: &[Vec<f64>], theta: f64) -> Keep {
    scores
        .iter()
        .map(|layer| {
            let best = argmax(layer);
            layer.iter().enumerate().map(|(h, &s)| s > theta || h == best).collect()
        })
        .collect()
}

/// Keeps the heads with the most importance whose total cost stays within `budget` (a fraction
/// of all heads' cost, 0–1): greedy by S(h)/C(h), which is exact for equal costs. Each layer's
/// most important head is kept first (and counted against the budget).
pub fn by_budget(scores: &[Vec<f64>], cost: &[Vec<f64>], budget: f64) -> Keep {
    let total: f64 = cost.iter().flatten().sum();
    let cap = budget.clamp(0.0, 1.0) * total;
    let mut keep: Keep = scores.iter().map(|l| vec![false; l.len()]).collect();
    let mut used = 0.0;
    for (l, layer) in scores.iter().enumerate() {
        let b = argmax(layer);
        if !layer.is_empty() {
            keep[l][b] = true;
            used += cost[l][b];
        }
    }
    let mut rest: Vec<(f64, usize, usize)> = Vec::new();
    for (l, layer) in scores.iter().enumerate() {
        for (h, &s) in layer.iter().enumerate() {
            if !keep[l][h] {
                rest.push((s / cost[l][h].max(f64::MIN_POSITIVE), l, h));
            }
        }
    }
    rest.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, l, h) in rest {
        if used + cost[l][h] <= cap + 1e-9 {
            keep[l][h] = true;
            used += cost[l][h];
        }
    }
    keep
}

fn argmax(v: &[f64]) -> usize {
    let mut b = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[b] {
            b = i;
        }
    }
    b
}

/// A layer after pruning: the kept query heads (indices into the layer's current heads), the
/// kept key/value heads, and for each kept query head the position of its key/value head
/// among the kept ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerPlan {
    pub q: Vec<usize>,
    pub kv: Vec<usize>,
    pub q_to_kv: Vec<usize>,
}

/// Turns a keep mask into per-layer plans, given each current query head's key/value head.
pub fn plan(keep: &Keep, kv_maps: &[Vec<usize>]) -> Vec<LayerPlan> {
    keep.iter()
        .zip(kv_maps)
        .map(|(k, map)| {
            let q: Vec<usize> = k.iter().enumerate().filter(|(_, &on)| on).map(|(h, _)| h).collect();
            let mut kv: Vec<usize> = q.iter().map(|&h| map[h]).collect();
            kv.sort_unstable();
            kv.dedup();
            let q_to_kv = q.iter().map(|&h| kv.iter().position(|&g| g == map[h]).unwrap_or(0)).collect();
            LayerPlan { q, kv, q_to_kv }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_heads_above_theta_and_always_the_best_of_a_layer() {
        let s = vec![vec![0.1, 0.5, 0.2], vec![0.01, 0.02, 0.03]];
        assert_eq!(by_threshold(&s, 0.15), vec![vec![false, true, true], vec![false, false, true]]);
        assert_eq!(by_threshold(&s, -1.0), vec![vec![true; 3], vec![true; 3]], "θ below every score keeps all");
    }

    #[test]
    fn budget_keeps_the_most_important_heads_that_fit() {
        let s = vec![vec![0.9, 0.1, 0.5], vec![0.3, 0.8, 0.05]];
        let c = vec![vec![1.0; 3], vec![1.0; 3]];
        // 4 of 6 heads: the two layer-bests (0.9, 0.8), then 0.5 and 0.3.
        assert_eq!(by_budget(&s, &c, 4.0 / 6.0), vec![vec![true, false, true], vec![true, true, false]]);
        assert_eq!(by_budget(&s, &c, 1.0), vec![vec![true; 3], vec![true; 3]]);
        // a budget below one head per layer still keeps one per layer
        assert_eq!(by_budget(&s, &c, 0.0), vec![vec![true, false, false], vec![false, true, false]]);
        let kept_cost = |k: &Keep| k.iter().flatten().filter(|&&b| b).count();
        for b in [0.3, 0.5, 0.7] {
            assert!(kept_cost(&by_budget(&s, &c, b)) as f64 <= (b * 6.0).max(2.0) + 1e-9);
        }
    }

    #[test]
    fn plans_drop_key_value_heads_no_kept_query_head_reads() {
        // 6 query heads in 3 groups of 2.
        let map = vec![vec![0, 0, 1, 1, 2, 2]];
        let p = plan(&vec![vec![true, false, false, false, true, true]], &map);
        assert_eq!(p[0], LayerPlan { q: vec![0, 4, 5], kv: vec![0, 2], q_to_kv: vec![0, 1, 1] });
        let all = plan(&vec![vec![true; 6]], &map);
        assert_eq!(all[0].kv, vec![0, 1, 2]);
        assert_eq!(all[0].q_to_kv, map[0]);
    }
}
