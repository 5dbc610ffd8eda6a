//! Comparing runs: `--check-determinism` (the same scenario and seed twice: the first figure
//! that differs) and `--seeds N` (N seeds: the mean of every figure with its 95% interval).
//!
//! Figures are the numeric and boolean fields of [`Summary`], by name. What describes the
//! machine rather than the mesh (wall time, peak memory, the commit) is never compared.

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::Summary;

/// Summary fields that measure the machine, not the mesh: never compared.
pub const MACHINE_FIGURES: &[&str] = &["wall_s", "formation_s", "peak_rss_mib", "messages_per_s", "commit"];

/// The summary's figures by name (numbers as f64, booleans as 0/1, a missing optional as
/// NaN); nested maps flatten to `name.key`. Text fields are left out.
pub fn figures(s: &Summary) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(s) {
        for (k, v) in m {
            flatten(&k, &v, &mut out);
        }
    }
    out
}

fn flatten(name: &str, v: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Number(n) => {
            out.insert(name.to_string(), n.as_f64().unwrap_or(f64::NAN));
        }
        serde_json::Value::Bool(b) => {
            out.insert(name.to_string(), if *b { 1.0 } else { 0.0 });
        }
        serde_json::Value::Null => {
            out.insert(name.to_string(), f64::NAN);
        }
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{name}.{k}"), v, out);
            }
        }
        _ => {}
    }
}

/// One figure that differs between two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub figure: String,
    pub first: f64,
    pub second: f64,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rel = if self.first != 0.0 {
            format!(" ({:+.1}%)", (self.second / self.first - 1.0) * 100.0)
        } else {
            String::new()
        };
        write!(f, "{}: {} then {}{rel}", self.figure, self.first, self.second)
    }
}

/// Every figure that differs between two summaries (name order), machine figures excluded.
/// Two NaNs (a figure missing in both) are equal.
pub fn differences(a: &Summary, b: &Summary) -> Vec<Difference> {
    let (fa, fb) = (figures(a), figures(b));
    let mut names: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| !MACHINE_FIGURES.contains(&n.as_str()))
        .filter_map(|n| {
            let (x, y) = (fa.get(n).copied().unwrap_or(f64::NAN), fb.get(n).copied().unwrap_or(f64::NAN));
            let same = x == y || (x.is_nan() && y.is_nan());
            (!same).then(|| Difference { figure: n.clone(), first: x, second: y })
        })
        .collect()
}

/// The columns of `requests.csv` a seed fixes (arrival, gateway, prompt length).
pub const SCHEDULE_COLUMNS: &[&str] = &["seq", "arrival_ms", "arrival_block", "gateway", "prompt_tokens"];

/// The inputs a seed fixes, from two runs' `requests.csv` (header, rows): must be equal in two
/// runs of the same scenario and seed. Returns the first request that differs.
pub fn first_schedule_difference(
    a: &(Vec<String>, Vec<Vec<String>>),
    b: &(Vec<String>, Vec<Vec<String>>),
) -> Option<String> {
    let keys = |(h, rows): &(Vec<String>, Vec<Vec<String>>)| -> Vec<Vec<String>> {
        let idx: Vec<Option<usize>> = SCHEDULE_COLUMNS.iter().map(|c| h.iter().position(|x| x == c)).collect();
        rows.iter()
            .map(|r| idx.iter().map(|i| i.and_then(|i| r.get(i)).cloned().unwrap_or_default()).collect())
            .collect()
    };
    let (ka, kb) = (keys(a), keys(b));
    if ka.len() != kb.len() {
        return Some(format!("{} requests then {}", ka.len(), kb.len()));
    }
    ka.iter().zip(&kb).find_map(|(x, y)| {
        (x != y)
            .then(|| format!("request {}: {} then {} ({})", x[0], x.join(" "), y.join(" "), SCHEDULE_COLUMNS.join(" ")))
    })
}

/// Mean and 95% confidence half-width (Student's t, n − 1 degrees of freedom) of a sample.
/// NaNs are left out; the half-width is NaN with fewer than two values.
pub fn mean_ci95(v: &[f64]) -> (f64, f64) {
    let x: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = x.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t975(n - 1) * (var / n as f64).sqrt())
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (table to 30, then the
/// normal's 1.96).
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// One line per figure over several runs: `name  mean ± half-width  [min, max]`.
pub fn seeds_table(runs: &[Summary]) -> String {
    let all: Vec<BTreeMap<String, f64>> = runs.iter().map(figures).collect();
    let mut names: Vec<&String> = all.iter().flat_map(|m| m.keys()).collect();
    names.sort();
    names.dedup();
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut out = format!("{} runs (seeds {}): mean ± 95% interval [min, max]\n", runs.len(), seeds_of(runs));
    for n in names {
        let v: Vec<f64> = all.iter().map(|m| m.get(n).copied().unwrap_or(f64::NAN)).collect();
        let (mean, hw) = mean_ci95(&v);
        let finite: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.push_str(&format!("{n:<w$}  {}  [{}, {}]\n", pm(mean, hw), short(lo), short(hi)));
    }
    out
}

/// Mean and 95% half-width of every figure over several runs, for `seeds.json`.
pub fn seeds_json(runs: &[Summary]) -> serde_json::Value {
    let all: Vec<BTreeMap<String, f64>> = runs.iter().map(figures).collect();
    let mut m = serde_json::Map::new();
    let names: std::collections::BTreeSet<&String> = all.iter().flat_map(|m| m.keys()).collect();
    for n in names {
        let v: Vec<f64> = all.iter().map(|m| m.get(n).copied().unwrap_or(f64::NAN)).collect();
        let (mean, hw) = mean_ci95(&v);
        m.insert(n.clone(), serde_json::json!({ "mean": finite(mean), "ci95": finite(hw), "values": v.iter().map(|x| finite(*x)).collect::<Vec<_>>() }));
    }
    serde_json::json!({ "seeds": runs.iter().map(|s| s.seed).collect::<Vec<_>>(), "figures": m })
}

fn finite(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else {
        serde_json::Value::Null
    }
}

fn seeds_of(runs: &[Summary]) -> String {
    runs.iter().map(|s| s.seed.to_string()).collect::<Vec<_>>().join(", ")
}

fn short(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1e6 {
        format!("{x:.3e}")
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

fn pm(mean: f64, hw: f64) -> String {
    if hw.is_finite() {
        format!("{} ± {}", short(mean), short(hw))
    } else {
        short(mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::record::RequestRow;

    #[test]
    fn identical_runs_differ_in_nothing_but_the_machine() {
        let a = Summary { seed: 7, receipts_finalised: 10, wall_s: 1.0, ..Default::default() };
        let b = Summary { wall_s: 2.0, peak_rss_mib: 300.0, ..a.clone() };
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn the_first_differing_figure_is_named_with_both_values() {
        let a = Summary { receipts_finalised: 10, latency_p50_ms: 20.0, ..Default::default() };
        let b = Summary { receipts_finalised: 11, ..a.clone() };
        let d = differences(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].figure, "receipts_finalised");
        assert!(d[0].to_string().contains("10 then 11"), "{}", d[0]);
        let mut c = b.clone();
        c.emission_per_peer.insert("miner/honest".into(), 5.0);
        assert_eq!(differences(&b, &c)[0].figure, "emission_per_peer.miner/honest");
    }

    #[test]
    fn a_changed_arrival_is_a_schedule_difference() {
        let t = tempfile::tempdir().unwrap();
        let csv = |name: &str, rows: &[(u64, u64)]| {
            let rows: Vec<RequestRow> = rows
                .iter()
                .map(|(seq, ms)| RequestRow {
                    seq: *seq,
                    arrival_ms: *ms,
                    gateway: "gateway-0".into(),
                    latency_ms: *ms as f64,
                    ..Default::default()
                })
                .collect();
            let p = t.path().join(name);
            crate::sim::record::write_csv(&p, &rows, &RequestRow::default()).unwrap();
            crate::sim::record::read_csv(&p).unwrap()
        };
        let (a, b) = (csv("a", &[(1, 5), (2, 9)]), csv("b", &[(1, 5), (2, 9)]));
        assert_eq!(first_schedule_difference(&a, &b), None);
        let c = csv("c", &[(1, 5), (2, 10)]);
        let d = first_schedule_difference(&a, &c).unwrap();
        assert!(d.starts_with("request 2"), "{d}");
        assert!(first_schedule_difference(&a, &csv("d", &[(1, 5)])).is_some());
    }

    #[test]
    fn the_interval_uses_students_t_and_needs_two_values() {
        let (m, hw) = mean_ci95(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        // s = 1, n = 3: 4.303 / sqrt(3)
        assert!((hw - 4.303 / 3f64.sqrt()).abs() < 1e-9, "{hw}");
        assert!(mean_ci95(&[5.0]).1.is_nan());
        assert_eq!(mean_ci95(&[f64::NAN, 4.0, 6.0]).0, 5.0);
    }

    #[test]
    fn the_seeds_table_lists_every_figure_with_its_range() {
        let runs = vec![
            Summary { seed: 1, receipts_finalised: 10, ..Default::default() },
            Summary { seed: 2, receipts_finalised: 14, ..Default::default() },
        ];
        let t = seeds_table(&runs);
        assert!(t.contains("seeds 1, 2"), "{t}");
        let line = t.lines().find(|l| l.starts_with("receipts_finalised")).unwrap();
        assert!(line.contains("12 ±") && line.contains("[10, 14]"), "{line}");
        let j = seeds_json(&runs);
        assert_eq!(j["figures"]["receipts_finalised"]["mean"], 12.0);
    }
}
