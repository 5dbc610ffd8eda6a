//! Cerberus Squeezing on SmolLM2-135M-Instruct: pruned and quantized exports load through the
//! same engine and compute what the original computes with those heads masked.

mod common;

use brainmesh_models::squeeze::{self, ExportOptions, Quant};
use brainmesh_models::{LoadOptions, Model, Network};
use common::*;
use tch::{Kind, Tensor};

const TEXT: &str = "Now is the winter of our discontent made glorious summer by this sun of York; and all the clouds that lour'd upon our house in the deep bosom of the ocean buried.";

fn llama(m: &Model) -> &brainmesh_models::llama::Llama {
    match &m.net {
        Network::Llama(l) => l,
        _ => panic!("SmolLM2 is a llama"),
    }
}

fn load(dir: &std::path::Path) -> Model {
    Model::load(dir, &LoadOptions { threads: Some(threads()), ..Default::default() }, &mut |_| {})
        .expect("load the squeezed model")
}

/// Logits of the full pass, and of the same ids one at a time through the KV cache.
fn full_and_stepwise(m: &Model, ids: &[u32]) -> (Tensor, Tensor) {
    let _g = tch::no_grad_guard();
    let full = m.logits(ids).expect("logits");
    let mut cache = m.net.new_cache(vec![0], ids.len()).expect("cache");
    let mut steps = Vec::new();
    for &t in ids {
        let x = Tensor::from_slice(&[t as i64]).view([1, 1]);
        steps.push(m.net.forward(&x, Some(&mut cache), true).expect("step").view([-1]));
    }
    (full, Tensor::stack(&steps, 0))
}

/// Keeps every head except a few, dropping a whole key/value group in layer 1.
fn keep_mask(layers: usize, heads: usize) -> squeeze::Keep {
    let mut keep = vec![vec![true; heads]; layers];
    keep[0][4] = false;
    keep[1][3] = false;
    keep[1][4] = false;
    keep[1][5] = false;
    keep[7][0] = false;
    keep[7][8] = false;
    keep
}

#[test]
fn exporting_with_every_head_kept_leaves_logits_unchanged() {
    let m = smollm();
    let l = llama(&m);
    let ids = m.tokenizer.encode(TEXT).expect("encode");
    let keep = vec![vec![true; l.cfg.num_attention_heads]; l.cfg.num_hidden_layers];
    let maps: Vec<Vec<usize>> = (0..l.cfg.num_hidden_layers).map(|i| l.cfg.kv_map(i)).collect();
    let dir = tempfile::tempdir().unwrap();
    let report = squeeze::export(
        &m,
        &squeeze::plan(&keep, &maps),
        &ExportOptions { quant: Quant::None, act_squeeze: None },
        dir.path(),
    )
    .expect("export");
    assert_eq!(report.params_after, report.params_before);
    let back = load(dir.path());
    let diff = max_abs_diff(&m.logits(&ids).unwrap(), &back.logits(&ids).unwrap());
    assert!(diff < 1e-5, "logits moved by {diff}");
}

#[test]
fn a_pruned_model_computes_what_the_original_computes_with_those_heads_masked() {
    let m = smollm();
    let l = llama(&m);
    let (layers, heads) = (l.cfg.num_hidden_layers, l.cfg.num_attention_heads);
    let ids = m.tokenizer.encode(TEXT).expect("encode");
    let keep = keep_mask(layers, heads);
    let maps: Vec<Vec<usize>> = (0..layers).map(|i| l.cfg.kv_map(i)).collect();
    let plans = squeeze::plan(&keep, &maps);
    assert_eq!(plans[1].kv, vec![0, 2], "layer 1 lost its middle key/value group");
    let dir = tempfile::tempdir().unwrap();
    let report = squeeze::export(&m, &plans, &ExportOptions { quant: Quant::None, act_squeeze: None }, dir.path())
        .expect("export");
    let hd = l.cfg.head_dim() as u64;
    let d = l.cfg.hidden_size as u64;
    // 6 query heads (q rows + o columns) and one key/value head (k + v rows) are gone.
    assert_eq!(report.params_before - report.params_after, 6 * 2 * d * hd + 2 * d * hd);
    assert_eq!((report.heads_before, report.heads_after), (layers * heads, layers * heads - 6));

    let mask: Vec<f32> = keep.iter().flatten().map(|&k| if k { 1.0 } else { 0.0 }).collect();
    let mask = Tensor::from_slice(&mask).view([layers as i64, heads as i64]);
    let masked = {
        let _g = tch::no_grad_guard();
        let x = Tensor::from_slice(&ids.iter().map(|&t| t as i64).collect::<Vec<_>>()).unsqueeze(0);
        l.forward_masked(&x, None, false, Some(&mask)).unwrap().squeeze_dim(0)
    };
    let pruned = load(dir.path());
    let (full, steps) = full_and_stepwise(&pruned, &ids);
    let diff = max_abs_diff(&full, &masked);
    println!(
        "pruned vs masked: {diff:.2e}; unmasked vs masked: {:.2e}",
        max_abs_diff(&m.logits(&ids).unwrap(), &masked)
    );
    assert!(diff < 1e-3, "pruned model differs from the masked original by {diff}");
    // the per-layer KV cache (layer 1 holds 2 key/value heads) gives the same logits stepwise
    let sdiff = max_abs_diff(&steps, &full);
    assert!(sdiff < 1e-3, "decode through the cache differs by {sdiff}");
    // and masking did change something (the test can fail)
    assert!(max_abs_diff(&m.logits(&ids).unwrap(), &masked) > 1e-3);
}

#[test]
fn int4_and_int8_exports_are_smaller_and_decode_on_their_quantized_weights() {
    let m = smollm();
    let l = llama(&m);
    let ids = m.tokenizer.encode(TEXT).expect("encode");
    let keep = vec![vec![true; l.cfg.num_attention_heads]; l.cfg.num_hidden_layers];
    let maps: Vec<Vec<usize>> = (0..l.cfg.num_hidden_layers).map(|i| l.cfg.kv_map(i)).collect();
    let plans = squeeze::plan(&keep, &maps);
    let reference = m.logits(&ids).unwrap();
    let f32_bytes = 4.0 * squeeze::export::dense_params(l) as f64;
    for (quant, max_ratio) in [(Quant::Int4, 0.25), (Quant::Int8, 0.27)] {
        let dir = tempfile::tempdir().unwrap();
        let r = squeeze::export(&m, &plans, &ExportOptions { quant, act_squeeze: None }, dir.path()).expect("export");
        let ratio = r.file_bytes as f64 / f32_bytes;
        println!(
            "{quant:?}: file {} B ({ratio:.3} of f32), worst weight error {:.2e}",
            r.file_bytes, r.quant_max_abs_error
        );
        assert!(ratio < max_ratio, "{quant:?} file is {ratio} of f32");
        let q = load(dir.path());
        assert!(q.net.uses_quantized_kernels(), "{quant:?} decode runs on the groups");
        let (full, steps) = full_and_stepwise(&q, &ids);
        let diff = max_abs_diff(&full, &reference);
        let sdiff = max_abs_diff(&steps, &full);
        println!("{quant:?}: |logits − original| {diff:.3e}, |decode − full| {sdiff:.2e}");
        let top = |t: &Tensor| t.argmax(-1, false);
        let same =
            |a: &Tensor, b: &Tensor| top(a).eq_tensor(&top(b)).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        if quant == Quant::Int4 {
            // f32 activations: decode on the groups is the dense pass up to summation order
            assert!(sdiff < 1e-3, "{quant:?}: decode on groups differs from the dense pass by {sdiff}");
        } else {
            // per-token int8 activations round every linear layer's input: looser, but the
            // greedy token mostly survives
            let a = same(&steps, &full);
            println!("{quant:?}: decode (int8 activations) keeps the dense pass's greedy token on {a:.2} of positions");
            assert!(a > 0.8, "{quant:?}: int8-activation decode agrees on {a}");
        }
        let agree = same(&full, &reference);
        assert!(agree > 0.9, "{quant:?}: argmax agrees on {agree} of positions");
    }
}

#[test]
fn head_importance_is_a_per_layer_unit_vector_of_finite_nonnegative_scores() {
    let m = smollm();
    let l = llama(&m);
    let ids = m.tokenizer.encode(&TEXT.repeat(3)).expect("encode");
    let windows = squeeze::windows(&ids, 32, 2);
    let imp = squeeze::head_importance(l, &windows, &mut |_, _| {}).expect("importance");
    assert_eq!(imp.windows, 2);
    assert_eq!(imp.normalized.len(), l.cfg.num_hidden_layers);
    for (li, layer) in imp.normalized.iter().enumerate() {
        assert_eq!(layer.len(), l.cfg.num_attention_heads);
        assert!(layer.iter().all(|s| s.is_finite() && *s >= 0.0), "layer {li}: {layer:?}");
        let norm: f64 = layer.iter().map(|s| s * s).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "layer {li} norm {norm}");
    }
    assert!(imp.raw.iter().flatten().any(|&s| s > 0.0), "gradients reached the mask");
    assert!(imp.loss > 0.5 && imp.loss < 10.0, "plausible LM loss: {}", imp.loss);
}
