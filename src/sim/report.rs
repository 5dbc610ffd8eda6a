//! `brainmesh sim report DIR`: a run's `summary.json` as a table.

use std::path::Path;

use super::record::Summary;

/// Reads `DIR/summary.json`.
pub fn load(dir: &Path) -> Result<Summary, String> {
    let p = dir.join("summary.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not a simulator summary: {e}", p.display()))
}

/// The table, one figure per line.
pub fn table(s: &Summary) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    let rows: Vec<(&str, String)> = vec![
        ("scenario", format!("{} (sha256 {}…)", s.scenario, &s.scenario_sha256.get(..12).unwrap_or(""))),
        ("seed / commit", format!("{} / {}", s.seed, s.commit)),
        (
            "peers",
            format!(
                "{} ({} validators, {} miners of which {} adversarial, {} gateways)",
                s.peers, s.validators, s.miners, s.adversarial_miners, s.gateways
            ),
        ),
        ("chain", format!("{} blocks of {} ms at {}x", s.blocks, s.block_time_ms, s.speedup)),
        (
            "wall time (mesh forming) / peak RSS",
            format!("{:.1} s ({:.1} s) / {:.0} MiB", s.wall_s, s.formation_s, s.peak_rss_mib),
        ),
        ("messages between peers", format!("{} ({:.0} per wall second)", s.messages, s.messages_per_s)),
        ("  by kind", s.messages_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")),
        ("requests ok / failed", format!("{} / {}", s.requests_ok, s.requests_failed)),
        ("latency p50 / p95 (wall)", format!("{:.0} / {:.0} ms", s.latency_p50_ms, s.latency_p95_ms)),
        ("time to first token p50", format!("{:.0} ms", s.ttft_p50_ms)),
        ("receipts countersigned", s.receipts_countersigned.to_string()),
        (
            "receipts final / lost / double / pending at end",
            format!(
                "{} / {} / {} / {}",
                s.receipts_finalised, s.receipts_lost, s.receipts_double_counted, s.receipts_pending_at_end
            ),
        ),
        (
            "last final block / worst stall",
            format!(
                "{} / {} blocks",
                s.last_final_height.map(|h| h.to_string()).unwrap_or_else(|| "-".into()),
                s.max_finality_stall_blocks
            ),
        ),
        ("settlements", s.settlements.to_string()),
        ("issuance / minted / not minted", format!("{} / {} / {}", s.issuance, s.minted, s.not_minted)),
        ("emission paid = issuance", s.emission_equals_issuance.to_string()),
        ("adversarial share of miner emission", format!("{:.2}%", s.adversarial_emission_share * 100.0)),
        ("cheaters banned", format!("{} of {}", s.cheaters_banned, s.cheaters)),
        ("honest miners banned", s.honest_banned.to_string()),
        (
            "sybils admitted / tasks served by them",
            format!("{} of {} / {}", s.sybils_admitted, s.sybils, s.tasks_to_sybils),
        ),
        ("mean detection (blocks)", opt(s.mean_detection_blocks)),
        ("faults", s.faults.to_string()),
        ("validators agree", s.validators_agree.to_string()),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<w$}  {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_the_headline_figures_and_a_missing_summary_is_explained() {
        let s = Summary { scenario: "ci".into(), cheaters: 4, cheaters_banned: 4, ..Default::default() };
        let t = table(&s);
        assert!(t.contains("cheaters banned") && t.contains("4 of 4"), "{t}");
        let e = load(Path::new("/nonexistent-dir")).unwrap_err();
        assert!(e.contains("summary.json"), "{e}");
    }
}
