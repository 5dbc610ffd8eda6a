//! Encrypted-mode bench: key generation and sizes, client encrypt/decrypt time, upload and
//! download bytes, miner time (layer 1, bootstraps, layer 2), exactness against the plaintext
//! reference, and the measured bootstrap noise of the parameter set.
//!
//! ```text
//! cargo run -p brainmesh-models --example fhe_head_bench -- [--queries 3] [--noise-samples 64] [--head DIR]
//! ```
//! (dev profile: tfhe is built at opt-level 3 there too; see the root Cargo.toml.)

use std::path::PathBuf;
use std::time::Instant;

use brainmesh_models::fhe::{
    self, embed::MiniLm, head::measure_pbs_noise, ClientKeys, Miner, PrivateClassifier, QuantizedHead, WireRequest,
    WireResponse,
};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let queries: usize = arg(&args, "--queries").map(|s| s.parse()).transpose()?.unwrap_or(3);
    let noise_samples: usize = arg(&args, "--noise-samples").map(|s| s.parse()).transpose()?.unwrap_or(64);
    let dir = arg(&args, "--head").map(PathBuf::from).unwrap_or_else(fhe::default_head_dir);
    tch::set_num_threads(2);
    println!("loadavg at start: {}; threads: {}", loadavg(), rayon::current_num_threads());

    let head = QuantizedHead::load(&dir)?;
    let params = head.params()?;
    println!(
        "head {}: {}→{}→{} on {} (B = {}, Δh = 2^{})",
        &head.head_id()[..12],
        head.spec.input_dim,
        head.spec.hidden,
        head.classes(),
        params.name(),
        head.spec.window_log2,
        head.spec.logit_delta_log2
    );

    let t = Instant::now();
    let keys = ClientKeys::generate(params)?;
    let keygen = t.elapsed().as_secs_f64();
    println!("client keygen (client key + compressed server key + serialize): {keygen:.2} s");
    println!(
        "compressed server key on the wire: {} bytes ({:.1} MiB)",
        keys.server_key_bytes.len(),
        keys.server_key_bytes.len() as f64 / 1048576.0
    );

    let samples: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("samples.json"))?)?;
    let embedder = MiniLm::load_default()?;
    let client = PrivateClassifier::for_head(&head, keys, Some(embedder))?;
    let mut miner = Miner::new(head.clone())?;

    let mut rows = Vec::new();
    for (q, s) in samples.iter().take(queries).enumerate() {
        let text = s["text"].as_str().unwrap_or_default();
        let label = s["label"].as_u64().unwrap_or(0) as usize;
        let t = Instant::now();
        let (state, req) = if q == 0 { client.prepare_request(text)? } else { client.prepare_request_cached(text)? };
        let prepare = t.elapsed().as_secs_f64();
        let req_bytes = req.to_bytes()?;
        let t = Instant::now();
        let req2 = WireRequest::from_bytes(&req_bytes)?;
        let (resp, out) = miner.serve_with_output(&req2)?;
        let miner_total = t.elapsed().as_secs_f64();
        let resp_bytes = resp.to_bytes()?;
        let t = Instant::now();
        let resp2 = WireResponse::from_bytes(&resp_bytes)?;
        let class = client.decrypt(&state, &resp2)?;
        let decrypt = t.elapsed().as_secs_f64();

        // exactness: decrypt the hidden activations (bench only) and compare
        let reference = head.reference(&state.quantized.codes)?;
        let hidden: Vec<u8> = out
            .hidden
            .iter()
            .map(|ct| client.keys.decrypt_signed(ct, head.spec.logit_delta_log2).0.clamp(0, 255) as u8)
            .collect();
        let off = hidden.iter().zip(&reference.hidden).filter(|(a, b)| a != b).count();
        let far = hidden.iter().zip(&reference.hidden).filter(|(a, b)| (**a as i32 - **b as i32).abs() > 1).count();
        let from_hidden = head.logits_from_hidden(&hidden);
        println!(
            "query {q}: label {label} → {} ({}), logits {:?} (reference {:?}, from decrypted hidden {:?}); \
             activations off by one {off}/{} (more than one: {far}); worst logit noise {:.3} of Δ/2",
            class.class,
            class.label,
            class.logits,
            reference.logits,
            from_hidden,
            hidden.len(),
            class.worst_noise_fraction
        );
        println!(
            "  client prepare (embed+quantize+encrypt) {prepare:.3} s, upload {} B ({} B without key), \
             miner {miner_total:.2} s [inputs+key {:.2} s, layer1 {:.3} s, {} PBS {:.2} s wall / {:.2} s CPU, layer2 {:.4} s], \
             download {} B, decrypt {decrypt:.4} s",
            req_bytes.len(),
            req.ciphertext_bytes(),
            out.timings.decompress_inputs_s,
            out.timings.layer1_s,
            out.timings.bootstraps,
            out.timings.bootstraps_s,
            out.timings.bootstraps_cpu_s,
            out.timings.layer2_s,
            resp_bytes.len()
        );
        rows.push(serde_json::json!({
            "query": q, "label": label, "predicted": class.class, "logits": class.logits,
            "reference_logits": reference.logits, "logits_from_decrypted_hidden": from_hidden,
            "activations_off_by_one": off, "activations_off_by_more": far,
            "prepare_s": prepare, "upload_bytes": req_bytes.len(), "upload_ciphertext_bytes": req.ciphertext_bytes(),
            "miner_s": miner_total, "timings": out.timings, "download_bytes": resp_bytes.len(), "decrypt_s": decrypt,
        }));
    }

    if noise_samples > 0 {
        let sks = match miner.keys.get(&client.keys.key_id) {
            Some(k) => k,
            None => std::sync::Arc::new(tfhe::shortint::ServerKey::new(&client.keys.client_key)),
        };
        let m = measure_pbs_noise(&client.keys.client_key, &sks, params, noise_samples)?;
        println!(
            "noise ({} PBS): output σ = 2^{:.2}, position σ = {:.2} (max error {} positions), {:.1} ms per PBS wall",
            m.samples,
            m.pbs_output_log2_std,
            m.position_std,
            m.position_errors_max,
            m.seconds_per_pbs_wall * 1e3
        );
        let margin =
            2f64.powi(head.spec.logit_delta_log2 as i32 - 1) / (2f64.powf(m.pbs_output_log2_std) * head.max_w2_norm());
        println!("logit noise margin with the measured σ: {margin:.1} σ");
        rows.push(serde_json::json!({ "noise": m, "logit_margin_sigma": margin }));
    }
    println!("loadavg at end: {}", loadavg());
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
