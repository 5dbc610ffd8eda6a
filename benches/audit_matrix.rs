//! The adversarial matrix of proof of inference: detection and false-alarm rates, validator cost
//! against miner cost, and proof bytes per token.
//!
//! `cargo bench --bench audit_matrix` (or `make bench-audit`). Everything is real: SmolLM2-135M
//! (GGUF Q4_1) as the declared model, generation with hidden-state capture, TOPLOC proofs, and
//! the validator's re-check (`brainmesh_actors::recheck::recheck` on a signed receipt and a
//! signed transcript, exactly what the auditor runs). Rows, each over BENCH_AUDIT_N tasks
//! (default 200; prompts are Shakespeare lines, half greedy, half sampled at T = 0.8, top-p
//! 0.95, a seed per task):
//!
//! - honest: the declared model; every failure is a false alarm;
//! - squeezed: a miner serving a squeezed copy (one query head pruned in every layer, int8
//!   weights) and declaring the original's hash — proofs built from its own activations;
//! - edited: the honest output with one token changed (at a random position), honest proofs;
//! - replayed: the previous task's output and proofs presented for this task's prompt;
//! - random: uniformly random output tokens with the honest proofs.
//!
//! A cheating miner must still produce a receipt whose digests the gateway accepted, so every
//! transcript here is consistent with its receipt (the digest checks themselves are unit tests
//! in actors/src/transcript.rs): what is measured is what the re-check catches on top.
//!
//! Knobs: BENCH_AUDIT_N (tasks per row), BENCH_AUDIT_TOKENS (max new tokens, default 32),
//! BENCH_AUDIT_THREADS (LibTorch threads, default 2).

use std::path::PathBuf;
use std::time::Instant;

use brainmesh_actors::identity::Identity;
use brainmesh_actors::models::generate::Rng;
use brainmesh_actors::models::proof::{self, ProofConfig, Tolerance};
use brainmesh_actors::models::squeeze::{self, ExportOptions, Quant};
use brainmesh_actors::models::{GenerateConfig, LoadOptions, Model, PrefixCache};
use brainmesh_actors::receipt::{Receipt, SignedReceipt};
use brainmesh_actors::recheck::{recheck, render_prompt};
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling};
use brainmesh_actors::transcript::{io_digest, RunSampling, Transcript};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cache() -> PathBuf {
    std::env::var_os("BRAINMESH_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".cache"))
}

/// One miner's claim about a task: the receipt (signed by miner and gateway) and transcript.
struct Claim {
    receipt: Receipt,
    signed: SignedReceipt,
    transcript: brainmesh_actors::transcript::SignedTranscript,
}

#[allow(clippy::too_many_arguments)]
fn claim(
    miner: &Identity,
    gateway: &Identity,
    hash: &str,
    task: usize,
    prompt: &Prompt,
    prompt_tokens: usize,
    sampling: &Sampling,
    output: &[u32],
    proofs: &[proof::ProofPoly],
) -> Claim {
    let nonce = format!("{:032x}", task as u128 * 0x9E37_79B9 + 17);
    let nb = hex::decode(&nonce).unwrap_or_default();
    let t = Transcript {
        task_id: format!("task-{task}"),
        attempt: 1,
        brain: 1,
        model: "smollm2-135m-instruct".into(),
        model_hash: hash.into(),
        miner: miner.peer_id().to_string(),
        nonce: nonce.clone(),
        prompt: prompt.clone(),
        resume_tokens: vec![],
        output: output.to_vec(),
        sampling: RunSampling::from_request(sampling),
        proof_topk: 128,
        proof_decode_batch: 32,
        proofs: hex::encode(proof::encode_proofs(proofs)),
        block_height: 1,
    };
    let receipt = Receipt {
        task_id: t.task_id.clone(),
        brain: 1,
        model: t.model.clone(),
        model_hash: hash.into(),
        miner: t.miner.clone(),
        gateway: gateway.peer_id().to_string(),
        account: "bench".into(),
        prompt_tokens: prompt_tokens as u32,
        completion_tokens: output.len() as u32,
        compute_units: (prompt_tokens + output.len()) as u64,
        block_height: 1,
        proof_digest: hex::encode(proof::proof_digest(&nb, hash, proofs)),
        io_digest: io_digest(&nonce, prompt, &[], output),
        started_ms: 0,
        finished_ms: 0,
    };
    let (body, sig) = receipt.sign_as_miner(miner);
    let (signed, receipt) = SignedReceipt::countersign(body, sig, gateway).expect("countersign");
    Claim { receipt, signed, transcript: t.sign(miner) }
}

#[derive(Default, Debug)]
pub struct Row {
    pub tasks: usize,
    pub failed: usize,
    pub check_secs: f64,
    pub reasons: std::collections::BTreeMap<String, usize>,
    /// Largest exponent mismatch count of any chunk, and output tokens the sampler replay
    /// refused, over the row (the honest row's values calibrate the tolerances).
    pub worst_exp_mismatches: u32,
    pub implausible_tokens: u64,
}

pub const ROWS: [&str; 5] = ["honest", "squeezed", "edited", "replayed", "random"];

/// What one run of the matrix measured.
pub struct Report {
    pub rows: Vec<Row>,
    pub gen_secs: f64,
    pub gen_tokens: usize,
    pub proof_bytes: usize,
    pub secs: f64,
}

#[allow(dead_code)]
fn main() {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` runs bench targets without it:
    // build only, then (tests/audit_matrix.rs runs a few tasks of the same matrix as a test).
    if !std::env::args().any(|a| a == "--bench") {
        println!("audit_matrix: built; run it with `cargo bench --bench audit_matrix`");
        return;
    }
    let n = env("BENCH_AUDIT_N", 200);
    let max_tokens = env("BENCH_AUDIT_TOKENS", 32);
    let threads = env("BENCH_AUDIT_THREADS", 2);
    let r = run(n, max_tokens, threads);
    print_report(&r, n, max_tokens, threads);
}

/// Runs `n` tasks per row.
pub fn run(n: usize, max_tokens: usize, threads: usize) -> Report {
    let gguf = cache().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let opts = LoadOptions { threads: Some(threads), ..Default::default() };
    let model = Model::load(&gguf, &opts, &mut |_| {}).expect("load SmolLM2 (run `make setup`)");
    let hash = "declared-smollm2-135m-q4_1";

    // The squeezed substitute: one query head pruned in every layer, int8 weights.
    let tmp = tempfile::tempdir().expect("tmp");
    let squeezed_dir = tmp.path().join("squeezed");
    {
        let brainmesh_actors::models::Network::Llama(l) = &model.net else { panic!("SmolLM2 is a llama") };
        let layers = l.cfg.num_hidden_layers;
        let heads = l.cfg.num_attention_heads;
        let keep: squeeze::Keep = (0..layers).map(|_| (0..heads).map(|h| h != heads - 1).collect()).collect();
        let maps: Vec<Vec<usize>> = (0..layers).map(|i| l.cfg.kv_map(i)).collect();
        let plans = squeeze::plan(&keep, &maps);
        squeeze::export(&model, &plans, &ExportOptions { quant: Quant::Int8, act_squeeze: None }, &squeezed_dir)
            .expect("export");
    }
    let squeezed = Model::load(&squeezed_dir, &opts, &mut |_| {}).expect("load squeezed");

    // Prompts: Shakespeare lines (public domain, from `make setup`).
    let mut lines: Vec<String> = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(cache().join("shakespeare/texts")).expect("texts").flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        lines.extend(text.lines().map(str::trim).filter(|l| l.len() > 40 && l.len() < 90).map(String::from).take(40));
        if lines.len() >= 4 * n {
            break;
        }
    }
    let mut pick = Rng::new(2026);
    let (miner, gateway) = (Identity::generate(), Identity::generate());
    let tol = Tolerance::default();
    let pc = ProofConfig::default();
    let mut rows: Vec<Row> = ROWS.iter().map(|_| Row::default()).collect();
    let (mut gen_secs, mut gen_tokens, mut proof_bytes) = (0f64, 0usize, 0usize);
    let mut previous: Option<(Vec<u32>, Vec<proof::ProofPoly>)> = None;
    let vocab = model.net.vocab_size() as u64;
    let bar = indicatif::ProgressBar::new(n as u64);
    let t_all = Instant::now();
    for task in 0..n {
        let line = &lines[(pick.next_u64() % lines.len() as u64) as usize];
        let prompt = Prompt::Chat(vec![ChatMessage {
            role: "user".into(),
            content: format!("Continue this line of verse: {line}"),
        }]);
        let sampling = if task % 2 == 0 {
            Sampling { max_tokens: max_tokens as u32, ..Default::default() }
        } else {
            Sampling {
                max_tokens: max_tokens as u32,
                temperature: 0.8,
                top_p: Some(0.95),
                seed: Some(pick.next_u64()),
                ..Default::default()
            }
        };
        let rs = RunSampling::from_request(&sampling);
        let cfg = GenerateConfig { stop: vec![], ..rs.generate_config(max_tokens, 0).expect("sampling") };
        let ids = model.tokenizer.encode(&render_prompt(&model, &prompt).expect("chat template")).expect("encode");
        let run = |m: &Model| {
            let t0 = Instant::now();
            let (g, _, acts) = m
                .generate_with_activations(&ids, &cfg, &mut PrefixCache::new(0, 0, 16), &mut |_| true)
                .expect("generate");
            let proofs = proof::build_proofs(&acts, &pc).expect("proofs");
            (g.tokens, proofs, t0.elapsed().as_secs_f64())
        };
        let (honest, honest_proofs, secs) = run(&model);
        gen_secs += secs;
        gen_tokens += honest.len();
        proof_bytes += honest_proofs.iter().map(|p| p.to_bytes().len()).sum::<usize>();
        let (sq, sq_proofs, _) = run(&squeezed);
        let mut edited = honest.clone();
        if !edited.is_empty() {
            let at = (pick.next_u64() % edited.len() as u64) as usize;
            edited[at] = ((edited[at] as u64 + 1 + pick.next_u64() % (vocab - 1)) % vocab) as u32;
        }
        let random: Vec<u32> = (0..honest.len().max(1)).map(|_| (pick.next_u64() % vocab) as u32).collect();
        let (replay_out, replay_proofs) = previous.clone().unwrap_or_else(|| (random.clone(), honest_proofs.clone()));
        let cases: [(&[u32], &[proof::ProofPoly]); 5] = [
            (&honest, &honest_proofs),
            (&sq, &sq_proofs),
            (&edited, &honest_proofs),
            (&replay_out, &replay_proofs),
            (&random, &honest_proofs),
        ];
        for (row, (out, proofs)) in rows.iter_mut().zip(cases) {
            let c = claim(&miner, &gateway, hash, task, &prompt, ids.len(), &sampling, out, proofs);
            let t0 = Instant::now();
            let v = recheck(&model, hash, &c.receipt, &c.transcript, &tol).expect("recheck runs");
            row.check_secs += t0.elapsed().as_secs_f64();
            let _ = &c.signed;
            row.tasks += 1;
            if let Some(rep) = &v.report {
                row.worst_exp_mismatches =
                    row.worst_exp_mismatches.max(rep.chunks.iter().map(|c| c.exp_mismatches).max().unwrap_or(0));
                row.implausible_tokens += rep.implausible_tokens as u64;
            }
            if !v.passed {
                row.failed += 1;
                let key = if v.reason.contains("fingerprint") && v.reason.contains("sampler") {
                    "fingerprints+sampler"
                } else if v.reason.contains("fingerprint") {
                    "fingerprints"
                } else if v.reason.contains("sampler") {
                    "sampler"
                } else {
                    "other"
                };
                *row.reasons.entry(key.to_string()).or_default() += 1;
            }
        }
        previous = Some((honest, honest_proofs));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Report { rows, gen_secs, gen_tokens, proof_bytes, secs: t_all.elapsed().as_secs_f64() }
}

#[allow(dead_code)]
fn print_report(r: &Report, n: usize, max_tokens: usize, threads: usize) {
    let Report { rows, gen_secs, gen_tokens, proof_bytes, secs } = r;
    let (gen_secs, gen_tokens, proof_bytes) = (*gen_secs, *gen_tokens, *proof_bytes);
    println!("# proof-of-inference adversarial matrix ({n} tasks per row, ≤ {max_tokens} new tokens, {threads} LibTorch threads, {secs:.0} s)");
    println!("| row | tasks | flagged | rate | caught by | worst chunk (exp mismatches of 128) | tokens refused by the sampler replay |");
    println!("|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for (name, r) in ROWS.iter().zip(rows) {
        let rate = r.failed as f64 / r.tasks.max(1) as f64;
        let label = if *name == "honest" { "false alarms" } else { "detected" };
        println!(
            "| {name} | {} | {} | {:.1}% {label} | {:?} | {} | {} |",
            r.tasks,
            r.failed,
            100.0 * rate,
            r.reasons,
            r.worst_exp_mismatches,
            r.implausible_tokens
        );
        json_rows.push(
            serde_json::json!({"row": name, "tasks": r.tasks, "flagged": r.failed, "rate": rate, "reasons": r.reasons,
            "worst_exp_mismatches": r.worst_exp_mismatches, "implausible_tokens": r.implausible_tokens}),
        );
    }
    let honest_check = rows[0].check_secs / rows[0].tasks.max(1) as f64;
    let gen_per_task = gen_secs / n.max(1) as f64;
    println!();
    println!(
        "validator re-check {:.1} ms/task vs miner generation + proofs {:.1} ms/task: ratio {:.3} (target ≤ 0.10)",
        honest_check * 1e3,
        gen_per_task * 1e3,
        honest_check / gen_per_task
    );
    println!(
        "proof bytes: {proof_bytes} for {gen_tokens} generated tokens = {:.2} B/token (target ≤ 16)",
        proof_bytes as f64 / gen_tokens.max(1) as f64
    );
    let out = serde_json::json!({
        "tasks_per_row": n, "max_tokens": max_tokens, "threads": threads,
        "rows": json_rows,
        "check_ms_per_task": honest_check * 1e3, "generate_ms_per_task": gen_per_task * 1e3,
        "cost_ratio": honest_check / gen_per_task,
        "proof_bytes_per_token": proof_bytes as f64 / gen_tokens.max(1) as f64,
    });
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write("target/audit_matrix.json", serde_json::to_vec_pretty(&out).unwrap_or_default());
}
