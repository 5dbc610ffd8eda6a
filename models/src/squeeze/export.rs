//! Writes a squeezed model directory: `model.safetensors` (pruned, optionally quantized
//! weights), `config.json` (a Llama config plus `brainmesh_heads`, `brainmesh_quant`,
//! `brainmesh_act_squeeze`), `tokenizer.json` and `tokenizer_config.json` (chat template).
//!
//! Quantized weights are stored without a dense copy. int4: three tensors per matrix —
//! `<name>.bm_q` (u8 nibbles), `<name>.bm_scale` and `<name>.bm_offset` (f32, one per 32-wide
//! group; the embeddings stay at 8 bits the same way). int8: `<name>.bm_q` (signed bytes) and
//! `<name>.bm_channel_scale` (f32, one per output channel); decode then quantizes activations
//! per token. Files are ~0.21× (int4) and ~0.25× (int8) of f32.
//! The loader rebuilds the dense f32 weights for prefill and keeps the groups for CPU decode.

use std::path::Path;

use serde::Serialize;
use tch::{Kind, Tensor};

use super::select::LayerPlan;
use crate::act_squeeze::ActSqueeze;
use crate::error::{ModelError, Result};
use crate::ggml::GgmlType;
use crate::hf::HfDir;
use crate::llama::Llama;
use crate::model::{Model, Network};
use crate::qmatmul::QMatrix;
pub use crate::quant::Quant;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub quant: Quant,
    pub act_squeeze: Option<ActSqueeze>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub heads_before: usize,
    pub heads_after: usize,
    pub kv_heads_before: usize,
    pub kv_heads_after: usize,
    pub params_before: u64,
    pub params_after: u64,
    pub file_bytes: u64,
    /// worst |w − ŵ| over all quantized matrices, and the bound it must respect
    pub quant_max_abs_error: f64,
}

/// Largest |w − ŵ| of one quantized matrix.
fn max_abs_error(w: &[f32], q: &QMatrix) -> f64 {
    w.iter().zip(q.dequantize()).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max)
}

/// The (name, tensor) pairs of the pruned model, dense f32, HF layout.
fn pruned_state(m: &Llama, plans: &[LayerPlan]) -> Result<Vec<(String, Tensor)>> {
    let hd = m.cfg.head_dim() as i64;
    let rows = |t: &Tensor, heads: &[usize]| -> Result<Tensor> {
        let idx: Vec<i64> = heads.iter().flat_map(|&h| (h as i64 * hd)..((h as i64 + 1) * hd)).collect();
        Ok(t.f_index_select(0, &Tensor::f_from_slice(&idx)?)?)
    };
    let cols = |t: &Tensor, heads: &[usize]| -> Result<Tensor> {
        let idx: Vec<i64> = heads.iter().flat_map(|&h| (h as i64 * hd)..((h as i64 + 1) * hd)).collect();
        Ok(t.f_index_select(1, &Tensor::f_from_slice(&idx)?)?)
    };
    let mut out = Vec::new();
    for (name, t) in m.state_dict()? {
        let pruned = match name.split('.').collect::<Vec<_>>().as_slice() {
            ["model", "layers", i, "self_attn", proj, "weight"] => {
                let l: usize = i.parse().map_err(|_| ModelError::MissingTensor(name.clone()))?;
                let p = plans.get(l).ok_or_else(|| ModelError::InvalidArgument(format!("no plan for layer {l}")))?;
                match *proj {
                    "q_proj" => rows(&t, &p.q)?,
                    "k_proj" | "v_proj" => rows(&t, &p.kv)?,
                    "o_proj" => cols(&t, &p.q)?,
                    _ => t,
                }
            }
            _ => t,
        };
        out.push((name, pruned.f_contiguous()?));
    }
    Ok(out)
}

fn chat_template(source: &Path) -> Option<String> {
    if source.is_dir() {
        HfDir::open(source).ok()?.chat_template()
    } else {
        crate::gguf::GgufFile::open(source).ok()?.get_str("tokenizer.chat_template").ok().map(String::from)
    }
}

/// Writes the squeezed model to `out` (created if missing).
pub fn export(model: &Model, plans: &[LayerPlan], opts: &ExportOptions, out: &Path) -> Result<ExportReport> {
    let Network::Llama(m) = &model.net else {
        return Err(ModelError::UnknownArchitecture("squeeze supports llama models".into()));
    };
    if plans.len() != m.cfg.num_hidden_layers {
        return Err(ModelError::InvalidArgument(format!(
            "{} layer plans for {} layers",
            plans.len(),
            m.cfg.num_hidden_layers
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let _g = tch::no_grad_guard();
    let params_before = m.param_count();
    let state = pruned_state(m, plans)?;
    let params_after: u64 = state.iter().map(|(_, t)| t.numel() as u64).sum();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut worst = 0f64;
    for (name, t) in state {
        // Under int4 the token embeddings (also the tied output head) stay at 8 bits, as
        // llama.cpp's mixed types keep the output matrix wider: 4 bits there moved the greedy
        // token on 22% of positions in our test, 4 bits in the layers on far fewer.
        let embed = name == "model.embed_tokens.weight" || name == "lm_head.weight";
        let kind = match opts.quant {
            Quant::Int4 if embed => Some(GgmlType::Q8_0),
            q => q.ggml(),
        }
        .filter(|_| t.dim() == 2 && t.size()[1] % 32 == 0);
        match kind {
            // int8: per-channel weights, per-token int8 activations at decode.
            Some(GgmlType::Q8_0) if opts.quant == Quant::Int8 => {
                let (r, c) = (t.size()[0] as usize, t.size()[1] as usize);
                let w = Vec::<f32>::try_from(&t.f_view([-1])?)?;
                let q = QMatrix::quantize_per_channel_i8(r, c, &w)
                    .ok_or_else(|| ModelError::InvalidArgument(format!("cannot quantize {name}")))?;
                worst = worst.max(max_abs_error(&w, &q));
                let scales = q.channel_scales().unwrap_or_default();
                tensors.push((format!("{name}.bm_q"), Tensor::f_from_slice(q.parts().0)?));
                tensors.push((format!("{name}.bm_channel_scale"), Tensor::f_from_slice(&scales)?));
            }
            Some(kind) => {
                let (r, c) = (t.size()[0] as usize, t.size()[1] as usize);
                let w = Vec::<f32>::try_from(&t.f_view([-1])?)?;
                let q = QMatrix::quantize(kind, r, c, &w)
                    .ok_or_else(|| ModelError::InvalidArgument(format!("cannot quantize {name}")))?;
                worst = worst.max(max_abs_error(&w, &q));
                let (quants, scale, offset) = q.parts();
                tensors.push((format!("{name}.bm_q"), Tensor::f_from_slice(quants)?));
                tensors.push((format!("{name}.bm_scale"), Tensor::f_from_slice(scale)?));
                tensors.push((format!("{name}.bm_offset"), Tensor::f_from_slice(offset)?));
            }
            None => tensors.push((name, t.f_to_kind(Kind::Float)?)),
        }
    }
    let st = out.join("model.safetensors");
    Tensor::write_safetensors(&tensors, &st)?;
    let mut cfg = m.cfg.clone();
    cfg.brainmesh_heads = Some(plans.iter().map(|p| p.q_to_kv.clone()).collect());
    cfg.brainmesh_act_squeeze = opts.act_squeeze;
    let quant = (opts.quant != Quant::None).then(|| serde_json::json!({ "kind": opts.quant, "group": 32 }));
    write_config_and_tokenizer(model, &cfg, quant, out)?;
    let file_bytes = std::fs::metadata(&st).map_err(|e| ModelError::io(&st, e))?.len();
    let heads_before: usize = (0..m.cfg.num_hidden_layers).map(|i| m.cfg.layer_heads(i).0).sum();
    let kv_before: usize = (0..m.cfg.num_hidden_layers).map(|i| m.cfg.layer_heads(i).1).sum();
    Ok(ExportReport {
        heads_before,
        heads_after: plans.iter().map(|p| p.q.len()).sum(),
        kv_heads_before: kv_before,
        kv_heads_after: plans.iter().map(|p| p.kv.len()).sum(),
        params_before,
        params_after,
        file_bytes,
        quant_max_abs_error: worst,
    })
}

/// `config.json` (the Llama config, HF's fixed fields, the tokenizer's special ids when the
/// config lacks them, and `brainmesh_quant` when given), `tokenizer.json` and
/// `tokenizer_config.json` (the source's chat template) in `out`.
fn write_config_and_tokenizer(
    model: &Model,
    cfg: &crate::llama::LlamaConfig,
    quant: Option<serde_json::Value>,
    out: &Path,
) -> Result<()> {
    let mut json = serde_json::to_value(cfg).map_err(|e| ModelError::Metadata(e.to_string()))?;
    if let Some(o) = json.as_object_mut() {
        o.insert("model_type".into(), "llama".into());
        o.insert("architectures".into(), serde_json::json!(["LlamaForCausalLM"]));
        o.insert("hidden_act".into(), "silu".into());
        o.insert("torch_dtype".into(), "float32".into());
        if let Some(q) = quant {
            o.insert("brainmesh_quant".into(), q);
        }
        if cfg.bos_token_id.is_none() {
            o.insert("bos_token_id".into(), serde_json::json!(model.tokenizer.bos_id));
        }
        if cfg.eos_token_id.is_none() {
            o.insert("eos_token_id".into(), serde_json::json!(model.tokenizer.eos_id));
        }
    }
    let write = |file: &str, text: String| -> Result<()> {
        let p = out.join(file);
        std::fs::write(&p, text).map_err(|e| ModelError::io(&p, e))
    };
    write("config.json", serde_json::to_string_pretty(&json).unwrap_or_default())?;
    write("tokenizer.json", model.tokenizer.to_json(false)?)?;
    let tc = serde_json::json!({ "chat_template": chat_template(&model.source) });
    write("tokenizer_config.json", serde_json::to_string_pretty(&tc).unwrap_or_default())
}

/// Writes dense f32 `state` (HF names) with `cfg` as a Hugging Face Llama directory: weights,
/// `config.json`, `tokenizer.json` and `tokenizer_config.json` (the source's chat template).
pub fn write_hf_dir(
    model: &Model,
    cfg: &crate::llama::LlamaConfig,
    state: &[(String, Tensor)],
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let tensors: Vec<(String, Tensor)> =
        state.iter().map(|(n, t)| Ok((n.clone(), t.f_to_kind(Kind::Float)?.f_contiguous()?))).collect::<Result<_>>()?;
    Tensor::write_safetensors(&tensors, out.join("model.safetensors"))?;
    write_config_and_tokenizer(model, cfg, None, out)?;
    Ok(())
}

/// Parameters of a Llama model (its state dict's element count).
pub fn dense_params(m: &Llama) -> u64 {
    m.param_count()
}
