//! Llama (GQA, RoPE, RMSNorm, SwiGLU) on tch, with fused QKV and gate/up projections.

use std::sync::Arc;

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::cache::{attention, KvCache, Step};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::qmatmul::{KernelPool, QMatrix};

/// Decode steps with at most this many rows (batch × new tokens) use the quantized kernels.
const QKERNEL_MAX_ROWS: i64 = 4;

/// Which positions the output head runs on.
#[derive(Debug, Clone, Copy)]
enum Logits {
    All,
    Last,
    From(i64),
}

/// A projection: dense weights `[out, in]` for prefill (and for every step on GPU), plus the
/// original quantized blocks when the model came from a quantized GGUF, used for CPU decode.
pub struct Linear {
    w: Tensor,
    q: Option<QMatrix>,
}

impl Linear {
    fn forward(&self, x: &Tensor, pool: Option<&KernelPool>) -> Result<Tensor> {
        if let (Some(q), Some(pool)) = (&self.q, pool) {
            let mut shape = x.size();
            let n = x.numel() as i64 / q.cols as i64;
            if n <= QKERNEL_MAX_ROWS {
                let xs = Vec::<f32>::try_from(&x.f_contiguous()?.f_view([-1])?)?;
                let mut y = vec![0f32; n as usize * q.rows];
                q.matmul(&xs, n as usize, &mut y, pool);
                if let Some(last) = shape.last_mut() {
                    *last = q.rows as i64;
                }
                return Ok(Tensor::f_from_slice(&y)?.f_view(shape.as_slice())?);
            }
        }
        Ok(x.f_linear(&self.w, None::<Tensor>)?)
    }
}

/// A weight as the loader hands it over: dense f32 in HF layout, and its quantized blocks if any.
pub struct Weight {
    pub dense: Tensor,
    pub quant: Option<QMatrix>,
}

impl Weight {
    /// A weight known only by its groups: rows and columns are fixed later against the shape
    /// the model expects ([`Llama::load`] reshapes it), so it is kept as one long row here.
    pub fn grouped(
        name: &str,
        kind: crate::ggml::GgmlType,
        quants: Vec<u8>,
        scale: Vec<f32>,
        offset: Vec<f32>,
    ) -> Result<Self> {
        let cols = scale.len() * 32;
        let q = QMatrix::from_parts(kind, 1, cols, quants, scale, offset).ok_or_else(|| ModelError::ShapeMismatch {
            name: name.into(),
            actual: vec![],
            expected: vec![],
        })?;
        let dense = Tensor::f_from_slice(&q.dequantize())?;
        Ok(Weight { dense, quant: Some(q) })
    }
}

impl From<Tensor> for Weight {
    fn from(dense: Tensor) -> Self {
        Weight { dense, quant: None }
    }
}

/// Sets LibTorch's intra-op thread count and restores the previous one when dropped.
struct TorchThreads(i32);

impl TorchThreads {
    fn set(n: i32) -> Self {
        let prev = tch::get_num_threads();
        tch::set_num_threads(n);
        TorchThreads(prev)
    }
}

impl Drop for TorchThreads {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// Hyper-parameters, named as in a Hugging Face `config.json`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_ctx")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// brainmesh extension, written by `brainmesh squeeze` after head pruning: per layer, for
    /// each query head kept, the index of the (kept) key/value head it reads. Absent: every
    /// layer has `num_attention_heads` query and `num_key_value_heads` key/value heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brainmesh_heads: Option<Vec<Vec<usize>>>,
    /// brainmesh extension: the whitepaper's §5.1 activation squeezing applied to the input
    /// of every linear layer (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brainmesh_act_squeeze: Option<crate::act_squeeze::ActSqueeze>,
}

fn default_theta() -> f64 {
    10000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ctx() -> usize {
    2048
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Query heads and key/value heads of layer `i`.
    pub fn layer_heads(&self, i: usize) -> (usize, usize) {
        match self.brainmesh_heads.as_ref().and_then(|h| h.get(i)) {
            Some(map) => (map.len(), map.iter().max().map(|m| m + 1).unwrap_or(0)),
            None => (self.num_attention_heads, self.kv_heads()),
        }
    }

    /// The key/value head each query head of layer `i` reads (GQA groups when unpruned).
    pub fn kv_map(&self, i: usize) -> Vec<usize> {
        match self.brainmesh_heads.as_ref().and_then(|h| h.get(i)) {
            Some(map) => map.clone(),
            None => {
                let group = self.num_attention_heads / self.kv_heads().max(1);
                (0..self.num_attention_heads).map(|h| h / group.max(1)).collect()
            }
        }
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Reads `llama.*` metadata from a GGUF file.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let u = |k: &str| g.get_u64(&format!("llama.{k}")).map(|v| v as usize);
        let heads = u("attention.head_count")?;
        let hidden = u("embedding_length")?;
        let vocab = match u("vocab_size") {
            Ok(v) => v,
            Err(_) => g
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(|a| a.len())
                .ok_or_else(|| ModelError::Metadata("llama.vocab_size".into()))?,
        };
        let cfg = LlamaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_hidden_layers: u("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: u("attention.head_count_kv").ok(),
            head_dim: u("rope.dimension_count").ok().or(Some(hidden / heads.max(1))),
            rope_theta: g.get_f64("llama.rope.freq_base").unwrap_or(10000.0),
            rms_norm_eps: g.get_f64("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            max_position_embeddings: u("context_length").unwrap_or(2048),
            tie_word_embeddings: g.tensor_info("output.weight").is_none(),
            bos_token_id: None,
            eos_token_id: None,
            brainmesh_heads: None,
            brainmesh_act_squeeze: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a Hugging Face `config.json` (transformers 4 or 5 layout: `rope_theta` at the
    /// top or inside `rope_parameters`; `eos_token_id` a number or a list).
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self> {
        let mut v = v.clone();
        let obj = v.as_object_mut().ok_or_else(|| ModelError::Metadata("config.json: not an object".into()))?;
        let rope = obj.get("rope_parameters").or_else(|| obj.get("rope_scaling")).cloned();
        if let Some(rope) = rope.filter(|r| r.is_object()) {
            let ty = rope.get("rope_type").or_else(|| rope.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
            if ty != "default" {
                return Err(ModelError::Metadata(format!("config.json: rope type {ty:?} is not supported")));
            }
            if !obj.contains_key("rope_theta") {
                if let Some(t) = rope.get("rope_theta") {
                    obj.insert("rope_theta".into(), t.clone());
                }
            }
        }
        if let Some(act) = obj.get("hidden_act").and_then(|a| a.as_str()) {
            if act != "silu" {
                return Err(ModelError::Metadata(format!("config.json: hidden_act {act:?} is not supported (silu)")));
            }
        }
        for key in ["attention_bias", "mlp_bias"] {
            if obj.get(key).and_then(|b| b.as_bool()) == Some(true) {
                return Err(ModelError::Metadata(format!("config.json: {key} = true is not supported")));
            }
        }
        for key in ["eos_token_id", "bos_token_id"] {
            if let Some(serde_json::Value::Array(a)) = obj.get(key) {
                let first = a.first().cloned().unwrap_or(serde_json::Value::Null);
                obj.insert(key.into(), first);
            }
        }
        let cfg: LlamaConfig =
            serde_json::from_value(v).map_err(|e| ModelError::Metadata(format!("config.json: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ModelError::Metadata(m.to_string()));
        if self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.hidden_size == 0 {
            return bad("llama: zero heads, layers or hidden size");
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads().max(1)) || self.kv_heads() == 0 {
            return bad("llama: attention heads not a multiple of key/value heads");
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("llama: odd head_dim");
        }
        if let Some(h) = &self.brainmesh_heads {
            if h.len() != self.num_hidden_layers {
                return bad("llama: brainmesh_heads must list every layer");
            }
            for (i, map) in h.iter().enumerate() {
                let nkv = map.iter().max().map(|m| m + 1).unwrap_or(0);
                if map.is_empty() || map.len() > self.num_attention_heads || nkv > self.kv_heads() {
                    return bad(&format!(
                        "llama: layer {i} of brainmesh_heads has {} query heads reading {nkv} key/value heads",
                        map.len()
                    ));
                }
                if (0..nkv).any(|k| !map.contains(&k)) {
                    return bad(&format!("llama: layer {i} of brainmesh_heads leaves a key/value head unread"));
                }
            }
        }
        Ok(())
    }
}

struct Layer {
    /// Query and key/value heads of this layer (fewer after pruning).
    nq: i64,
    nkv: i64,
    /// Pruned layers whose groups are no longer equal: the key/value head of each query head.
    kv_index: Option<Tensor>,
    attn_norm: Tensor,
    wqkv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate_up: Linear,
    w_down: Linear,
}

/// A Llama model ready to run.
pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    /// Threads for the quantized decode kernels (CPU, f32, quantized weights only).
    qpool: Option<Arc<KernelPool>>,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    kind: Kind,
}

/// Undoes llama.cpp's q/k row permutation (its RoPE pairs adjacent elements; HF's
/// `rotate_half` pairs element i with i + head_dim/2).
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols, n) = qk_shape(w, n_head)?;
    Ok(w.f_reshape([n, rows / n / 2, 2, cols])?.f_transpose(1, 2)?.f_reshape([rows, cols])?)
}

/// Rows, columns and head count of a q/k projection whose heads split into RoPE pairs.
fn qk_shape(w: &Tensor, n_head: usize) -> Result<(i64, i64, i64)> {
    let (rows, cols) = w.size2()?;
    let n = n_head as i64;
    if n == 0 || rows % (2 * n) != 0 {
        return Err(ModelError::ShapeMismatch {
            name: "q/k projection".into(),
            actual: vec![rows, cols],
            expected: vec![],
        });
    }
    Ok((rows, cols, n))
}

/// Hugging Face's q/k row order back to llama.cpp's (the inverse of [`unpermute_qk`]), for
/// writing GGUF files.
pub fn permute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols, n) = qk_shape(w, n_head)?;
    Ok(w.f_reshape([n, 2, rows / n / 2, cols])?.f_transpose(1, 2)?.f_reshape([rows, cols])?)
}

/// The GGUF name of a Hugging Face tensor name, and the head count its rows must be permuted
/// with for llama.cpp's RoPE layout (q and k projections).
pub fn hf_to_gguf(hf: &str, cfg: &LlamaConfig) -> Option<(String, Option<usize>)> {
    gguf_name(hf).map(|(n, qk)| {
        let heads = match qk {
            Some(Qk::Q) => Some(cfg.num_attention_heads),
            Some(Qk::K) => Some(cfg.kv_heads()),
            None => None,
        };
        (n, heads)
    })
}

/// The row order [`unpermute_qk`] produces, for permuting quantized rows the same way.
fn unpermute_rows(rows: usize, n_head: usize) -> Result<Vec<usize>> {
    let idx = Tensor::f_arange(rows as i64, (Kind::Int64, Device::Cpu))?.f_view([rows as i64, 1])?;
    let p = unpermute_qk(&idx, n_head)?;
    Ok(Vec::<i64>::try_from(&p.f_view([-1])?)?.into_iter().map(|v| v as usize).collect())
}

fn check(name: &str, t: &Tensor, expected: &[i64]) -> Result<()> {
    let actual = t.size();
    if actual != expected {
        return Err(ModelError::ShapeMismatch { name: name.into(), actual, expected: expected.to_vec() });
    }
    Ok(())
}

impl Llama {
    /// Builds the model from a getter of Hugging Face-named f32 tensors (`model.layers.0.
    /// self_attn.q_proj.weight`, ...) in HF layout ([out, in]); casts to `kind` on `device`.
    pub fn load(
        cfg: LlamaConfig,
        get: &mut dyn FnMut(&str) -> Result<Weight>,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.hidden_size as i64;
        let hd = cfg.head_dim() as i64;
        let f = cfg.intermediate_size as i64;
        let v = cfg.vocab_size as i64;
        // Quantized kernels only where they apply: CPU, f32.
        let use_q = device == Device::Cpu && kind == Kind::Float;
        let mut fetch = |name: &str, shape: &[i64]| -> Result<Weight> {
            let mut w = get(name)?;
            // Grouped weights arrive flat (see `Weight::grouped`): give them their shape.
            if let ([r, c], Some(q)) = (shape, &w.quant) {
                if w.dense.dim() == 1 && w.dense.numel() as i64 == r * c {
                    let q = q.reshape(*r as usize, *c as usize);
                    w = Weight { dense: w.dense.f_view([*r, *c])?, quant: q };
                }
            }
            check(name, &w.dense, shape)?;
            Ok(Weight { quant: if use_q { w.quant } else { None }, ..w })
        };
        let put = |t: Tensor| -> Result<Tensor> { Ok(t.f_to_device(device)?.f_to_kind(kind)?.f_contiguous()?) };
        let fuse = |parts: Vec<Weight>| -> Result<Linear> {
            let q = if parts.iter().all(|p| p.quant.is_some()) {
                let qs: Vec<&QMatrix> = parts.iter().filter_map(|p| p.quant.as_ref()).collect();
                QMatrix::concat_rows(&qs)
            } else {
                None
            };
            let dense: Vec<Tensor> = parts.into_iter().map(|p| p.dense).collect();
            let w = if dense.len() == 1 {
                dense.into_iter().next().ok_or_else(|| ModelError::MissingTensor("weight".into()))?
            } else {
                Tensor::f_cat(&dense, 0)?
            };
            Ok(Linear { w: put(w)?, q })
        };
        let embed_w = fetch("model.embed_tokens.weight", &[v, d])?;
        let embed = put(embed_w.dense.shallow_clone())?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let (nh, nkv) = cfg.layer_heads(i);
            let (nh, nkv) = (nh as i64, nkv as i64);
            let map = cfg.kv_map(i);
            let group = (nh / nkv.max(1)) as usize;
            let uniform = nh % nkv.max(1) == 0 && map.iter().enumerate().all(|(h, &k)| k == h / group.max(1));
            let kv_index = if uniform {
                None
            } else {
                let idx: Vec<i64> = map.iter().map(|&k| k as i64).collect();
                Some(Tensor::f_from_slice(&idx)?.f_to_device(device)?)
            };
            let q = fetch(&format!("{p}.self_attn.q_proj.weight"), &[nh * hd, d])?;
            let k = fetch(&format!("{p}.self_attn.k_proj.weight"), &[nkv * hd, d])?;
            let vv = fetch(&format!("{p}.self_attn.v_proj.weight"), &[nkv * hd, d])?;
            let wqkv = fuse(vec![q, k, vv])?;
            let wo = fuse(vec![fetch(&format!("{p}.self_attn.o_proj.weight"), &[d, nh * hd])?])?;
            let g = fetch(&format!("{p}.mlp.gate_proj.weight"), &[f, d])?;
            let u = fetch(&format!("{p}.mlp.up_proj.weight"), &[f, d])?;
            let w_gate_up = fuse(vec![g, u])?;
            let w_down = fuse(vec![fetch(&format!("{p}.mlp.down_proj.weight"), &[d, f])?])?;
            let attn_norm = put(fetch(&format!("{p}.input_layernorm.weight"), &[d])?.dense)?;
            let ffn_norm = put(fetch(&format!("{p}.post_attention_layernorm.weight"), &[d])?.dense)?;
            layers.push(Layer { nq: nh, nkv, kv_index, attn_norm, wqkv, wo, ffn_norm, w_gate_up, w_down });
        }
        let norm = put(fetch("model.norm.weight", &[d])?.dense)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear { w: embed.shallow_clone(), q: embed_w.quant }
        } else {
            fuse(vec![fetch("lm_head.weight", &[v, d])?])?
        };
        let any_q = lm_head.q.is_some() || layers.iter().any(|l| l.wqkv.q.is_some());
        let qpool = if any_q {
            let threads = tch::get_num_threads().max(1) as usize;
            let pool =
                KernelPool::new(threads).map_err(|e| ModelError::InvalidArgument(format!("kernel threads: {e}")))?;
            Some(Arc::new(pool))
        } else {
            None
        };
        // RoPE tables computed exactly as transformers does (f32), then cast.
        let max_pos = cfg.max_position_embeddings.clamp(1, 1 << 17) as i64;
        let inv = Tensor::f_arange_start_step(0, hd, 2, (Kind::Int64, Device::Cpu))?.to_kind(Kind::Float) / (hd as f64);
        let inv_freq = Tensor::from(cfg.rope_theta as f32).pow(&inv).reciprocal();
        let pos = Tensor::f_arange(max_pos, (Kind::Float, Device::Cpu))?;
        let freqs = pos.unsqueeze(1).matmul(&inv_freq.unsqueeze(0));
        let emb = Tensor::f_cat(&[&freqs, &freqs], 1)?;
        let cos = put(emb.cos())?;
        let sin = put(emb.sin())?;
        Ok(Llama { cfg, embed, layers, norm, lm_head, qpool, cos, sin, device, kind })
    }

    /// Loads the llama tensors of a GGUF file (dequantized, q/k rows un-permuted).
    pub fn from_gguf(g: &GgufFile, device: Device, kind: Kind, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let total = g.tensors().len();
        let mut done = 0usize;
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let mut get = |hf: &str| -> Result<Weight> {
            let (name, permute) = gguf_name(hf).ok_or_else(|| ModelError::MissingTensor(hf.into()))?;
            let t = g.tensor(&name, Device::Cpu, Kind::Float)?;
            let q = g.qmatrix(&name)?;
            done += 1;
            progress(done, total);
            let heads = match permute {
                Some(Qk::Q) => Some(nh),
                Some(Qk::K) => Some(nkv),
                None => None,
            };
            Ok(match heads {
                Some(h) => {
                    let rows = t.size().first().copied().unwrap_or(0) as usize;
                    let perm = unpermute_rows(rows, h)?;
                    Weight { dense: unpermute_qk(&t, h)?, quant: q.and_then(|q| q.permute_rows(&perm)) }
                }
                None => Weight { dense: t, quant: q },
            })
        };
        let m = Self::load(cfg, &mut get, device, kind)?;
        progress(total, total);
        Ok(m)
    }

    pub fn device(&self) -> Device {
        self.device
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn new_cache(&self, pad: Vec<usize>, capacity: usize) -> Result<KvCache> {
        KvCache::with_heads(
            &self.layers.iter().map(|l| l.nkv as usize).collect::<Vec<_>>(),
            self.cfg.head_dim(),
            pad,
            capacity,
            self.device,
            self.kind,
        )
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let half = self.cfg.head_dim() as i64 / 2;
        let x1 = x.narrow(-1, 0, half);
        let x2 = x.narrow(-1, half, half);
        let rotated = Tensor::cat(&[x2.neg(), x1], -1);
        x * cos + rotated * sin
    }

    /// Runs `ids` (`[B, T]` int64) through the model, appending to `cache` when given.
    /// Returns logits `[B, T, V]`, or `[B, 1, V]` for the last position when `last_only`.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>, last_only: bool) -> Result<Tensor> {
        self.forward_masked(ids, cache, last_only, None)
    }

    /// [`Self::forward`] with every attention head's output multiplied by `head_mask[layer, head]`
    /// (`[layers, num_attention_heads]`; Michel et al.'s ξ, differentiable for head importance).
    pub fn forward_masked(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        last_only: bool,
        head_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        Ok(self.forward_inner(ids, cache, if last_only { Logits::Last } else { Logits::All }, head_mask, false)?.0)
    }

    /// [`Self::forward`] that also returns the last hidden state (after the final norm) of
    /// every position `[B, T, H]`: what a proof of inference commits to.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (logits, hidden) =
            self.forward_inner(ids, cache, if last_only { Logits::Last } else { Logits::All }, None, true)?;
        let hidden = hidden.ok_or_else(|| crate::error::ModelError::InvalidArgument("no hidden state".into()))?;
        Ok((logits, hidden))
    }

    /// No cache: hidden states of every position and logits only from position `from` on (a
    /// validator needs the output head on the output positions, not on the prompt).
    pub fn forward_hidden_from(&self, ids: &Tensor, from: i64) -> Result<(Tensor, Tensor)> {
        let (logits, hidden) = self.forward_inner(ids, None, Logits::From(from), None, true)?;
        let hidden = hidden.ok_or_else(|| crate::error::ModelError::InvalidArgument("no hidden state".into()))?;
        Ok((logits, hidden))
    }

    fn forward_inner(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        logits_at: Logits,
        head_mask: Option<&Tensor>,
        want_hidden: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t) = ids.size2()?;
        // A decode step runs its matmuls on the quantized kernels' own threads; LibTorch's
        // remaining ops are tiny then, and an OpenMP team left spinning after one of them would
        // take a core from the kernels (measured: 43% of a 2-thread decode spent in libgomp's
        // spin-wait). LibTorch runs single-threaded for the step and gets its count back after.
        let _torch_threads = match &self.qpool {
            Some(pool) if b * t <= QKERNEL_MAX_ROWS && pool.threads() > 1 => Some(TorchThreads::set(1)),
            _ => None,
        };
        let step = match cache.as_deref() {
            Some(c) => c.step(t as usize)?,
            None => Step::causal(b as usize, t as usize, self.device)?,
        };
        let hd = self.cfg.head_dim() as i64;
        let eps = self.cfg.rms_norm_eps;
        let cos = self.cos.index_select(0, &step.positions.reshape([-1])).view([b, 1, t, hd]);
        let sin = self.sin.index_select(0, &step.positions.reshape([-1])).view([b, 1, t, hd]);
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        for (li, l) in self.layers.iter().enumerate() {
            let h = x.rms_norm([x.size()[2]], Some(&l.attn_norm), eps);
            let pool = self.qpool.as_deref();
            let (nh, nkv) = (l.nq, l.nkv);
            let sq = |x: Tensor| match &self.cfg.brainmesh_act_squeeze {
                Some(s) => s.apply(&x),
                None => x,
            };
            let h = sq(h);
            let qkv = l.wqkv.forward(&h, pool)?;
            let q = qkv.narrow(-1, 0, nh * hd).view([b, t, nh, hd]).transpose(1, 2);
            let k = qkv.narrow(-1, nh * hd, nkv * hd).view([b, t, nkv, hd]).transpose(1, 2);
            let v = qkv.narrow(-1, (nh + nkv) * hd, nkv * hd).view([b, t, nkv, hd]).transpose(1, 2);
            let q = self.rope(&q, &cos, &sin);
            let k = self.rope(&k, &cos, &sin);
            let mask = head_mask.map(|m| m.get(li as i64).narrow(0, 0, nh));
            let a = attention(&q, &k, &v, cache.as_deref_mut(), li, &step, l.kv_index.as_ref(), mask.as_ref());
            // Not `+=`: on a tch Tensor that is an in-place add_, which breaks autograd through
            // the residual stream (head-importance gradients in squeeze).
            #[allow(clippy::assign_op_pattern)]
            {
                x = x + l.wo.forward(&sq(a), pool)?;
            }
            let h = x.rms_norm([x.size()[2]], Some(&l.ffn_norm), eps);
            let gu = l.w_gate_up.forward(&sq(h), pool)?;
            let f = self.cfg.intermediate_size as i64;
            let act = gu.narrow(-1, 0, f).silu() * gu.narrow(-1, f, f);
            #[allow(clippy::assign_op_pattern)] // not `+=` (in-place add_), see above
            {
                x = x + l.w_down.forward(&sq(act), pool)?;
            }
        }
        if let Some(c) = cache {
            c.advance(t as usize);
        }
        let from = match logits_at {
            Logits::All => 0,
            Logits::Last => t - 1,
            Logits::From(f) => f.clamp(0, t - 1),
        };
        if want_hidden {
            // The norm is per position: norming all positions, then narrowing, is the same.
            let h = x.rms_norm([x.size()[2]], Some(&self.norm), eps);
            let part = if from > 0 { h.narrow(1, from, t - from) } else { h.shallow_clone() };
            return Ok((self.lm_head.forward(&part, self.qpool.as_deref())?, Some(h)));
        }
        let x = if from > 0 { x.narrow(1, from, t - from) } else { x };
        let x = x.rms_norm([x.size()[2]], Some(&self.norm), eps);
        Ok((self.lm_head.forward(&x, self.qpool.as_deref())?, None))
    }

    /// Parameters of the model as it stands (pruned layers count their own heads), without
    /// copying any weight: the element count of [`Self::state_dict`].
    pub fn param_count(&self) -> u64 {
        let n = |t: &Tensor| t.numel() as u64;
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| n(&l.wqkv.w) + n(&l.wo.w) + n(&l.w_gate_up.w) + n(&l.w_down.w) + n(&l.attn_norm) + n(&l.ffn_norm))
            .sum();
        let head = if self.cfg.tie_word_embeddings { 0 } else { n(&self.lm_head.w) };
        n(&self.embed) + layers + n(&self.norm) + head
    }

    /// The weights under their Hugging Face names and layout (dense f32 copies on the CPU;
    /// fused projections split back): what `squeeze` prunes and writes.
    pub fn state_dict(&self) -> Result<Vec<(String, Tensor)>> {
        let hd = self.cfg.head_dim() as i64;
        let f = self.cfg.intermediate_size as i64;
        let cpu =
            |t: &Tensor| -> Result<Tensor> { Ok(t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?) };
        let mut out = vec![("model.embed_tokens.weight".to_string(), cpu(&self.embed)?)];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let w = &l.wqkv.w;
            out.push((format!("{p}.self_attn.q_proj.weight"), cpu(&w.narrow(0, 0, l.nq * hd))?));
            out.push((format!("{p}.self_attn.k_proj.weight"), cpu(&w.narrow(0, l.nq * hd, l.nkv * hd))?));
            out.push((format!("{p}.self_attn.v_proj.weight"), cpu(&w.narrow(0, (l.nq + l.nkv) * hd, l.nkv * hd))?));
            out.push((format!("{p}.self_attn.o_proj.weight"), cpu(&l.wo.w)?));
            out.push((format!("{p}.mlp.gate_proj.weight"), cpu(&l.w_gate_up.w.narrow(0, 0, f))?));
            out.push((format!("{p}.mlp.up_proj.weight"), cpu(&l.w_gate_up.w.narrow(0, f, f))?));
            out.push((format!("{p}.mlp.down_proj.weight"), cpu(&l.w_down.w)?));
            out.push((format!("{p}.input_layernorm.weight"), cpu(&l.attn_norm)?));
            out.push((format!("{p}.post_attention_layernorm.weight"), cpu(&l.ffn_norm)?));
        }
        out.push(("model.norm.weight".to_string(), cpu(&self.norm)?));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), cpu(&self.lm_head.w)?));
        }
        Ok(out)
    }

    /// Every weight as a trainable tensor (gradients on). The handles share storage with the
    /// model, so updating them in place (under `no_grad`) updates it; a tied output head is the
    /// embeddings' own tensor. The quantized decode copies are dropped (they would go stale).
    pub fn trainable_parameters(&mut self) -> Vec<Tensor> {
        self.qpool = None;
        let mut out = vec![self.embed.set_requires_grad(true), self.norm.set_requires_grad(true)];
        for l in &mut self.layers {
            for lin in [&mut l.wqkv, &mut l.wo, &mut l.w_gate_up, &mut l.w_down] {
                lin.q = None;
                out.push(lin.w.set_requires_grad(true));
            }
            out.push(l.attn_norm.set_requires_grad(true));
            out.push(l.ffn_norm.set_requires_grad(true));
        }
        self.lm_head.q = None;
        if !self.cfg.tie_word_embeddings {
            out.push(self.lm_head.w.set_requires_grad(true));
        }
        out
    }

    /// Turns the quantized CPU decode kernels off (every step then uses the dense f32
    /// weights); for comparisons.
    pub fn disable_quantized_kernels(&mut self) {
        self.qpool = None;
    }

    /// Whether decode steps run on the quantized weights.
    pub fn uses_quantized_kernels(&self) -> bool {
        self.qpool.is_some()
    }
}

enum Qk {
    Q,
    K,
}

/// Maps a Hugging Face Llama tensor name to its GGUF name (and whether rows are permuted).
fn gguf_name(hf: &str) -> Option<(String, Option<Qk>)> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some((f.to_string(), None));
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (idx, part) = rest.split_once('.')?;
    let (g, perm) = match part {
        "self_attn.q_proj.weight" => ("attn_q.weight", Some(Qk::Q)),
        "self_attn.k_proj.weight" => ("attn_k.weight", Some(Qk::K)),
        "self_attn.v_proj.weight" => ("attn_v.weight", None),
        "self_attn.o_proj.weight" => ("attn_output.weight", None),
        "mlp.gate_proj.weight" => ("ffn_gate.weight", None),
        "mlp.up_proj.weight" => ("ffn_up.weight", None),
        "mlp.down_proj.weight" => ("ffn_down.weight", None),
        "input_layernorm.weight" => ("attn_norm.weight", None),
        "post_attention_layernorm.weight" => ("ffn_norm.weight", None),
        _ => return None,
    };
    Some((format!("blk.{idx}.{g}"), perm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_undoes_the_llama_cpp_permutation() {
        // llama.cpp's convert script: w.reshape(n_head, 2, rows/n_head/2, in).swapaxes(1, 2)
        let (n_head, rows, cols) = (3i64, 12i64, 5i64);
        let w = Tensor::arange(rows * cols, (Kind::Float, Device::Cpu)).view([rows, cols]);
        let permuted = w.reshape([n_head, 2, rows / n_head / 2, cols]).transpose(1, 2).reshape([rows, cols]);
        let back = unpermute_qk(&permuted, n_head as usize).unwrap();
        assert!(back.equal(&w));
    }

    #[test]
    fn gguf_names_map_to_hf_names() {
        assert_eq!(
            gguf_name("model.layers.7.self_attn.k_proj.weight").map(|x| x.0),
            Some("blk.7.attn_k.weight".into())
        );
        assert_eq!(gguf_name("model.embed_tokens.weight").map(|x| x.0), Some("token_embd.weight".into()));
        assert!(gguf_name("model.layers.0.bogus").is_none());
    }
}
