//! Llama (GQA, RoPE, RMSNorm, SwiGLU) on tch, with fused QKV and gate/up projections.

use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::cache::{attention, KvCache, Step};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

/// Hyper-parameters, named as in a Hugging Face `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ModelError::Metadata(m.to_string()));
        if self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.hidden_size == 0 {
            return bad("llama: zero heads, layers or hidden size");
        }
        if self.num_attention_heads % self.kv_heads().max(1) != 0 || self.kv_heads() == 0 {
            return bad("llama: attention heads not a multiple of key/value heads");
        }
        if self.head_dim() % 2 != 0 {
            return bad("llama: odd head_dim");
        }
        Ok(())
    }
}

struct Layer {
    attn_norm: Tensor,
    wqkv: Tensor,
    wo: Tensor,
    ffn_norm: Tensor,
    w_gate_up: Tensor,
    w_down: Tensor,
}

/// A Llama model ready to run.
pub struct Llama {
    pub cfg: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    kind: Kind,
}

/// Undoes llama.cpp's q/k row permutation (its RoPE pairs adjacent elements; HF's
/// `rotate_half` pairs element i with i + head_dim/2).
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols) = w.size2()?;
    let n = n_head as i64;
    if rows % (2 * n) != 0 {
        return Err(ModelError::ShapeMismatch { name: "q/k projection".into(), actual: vec![rows, cols], expected: vec![] });
    }
    Ok(w.f_reshape([n, rows / n / 2, 2, cols])?.f_transpose(1, 2)?.f_reshape([rows, cols])?)
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
        get: &mut dyn FnMut(&str) -> Result<Tensor>,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.hidden_size as i64;
        let hd = cfg.head_dim() as i64;
        let nh = cfg.num_attention_heads as i64;
        let nkv = cfg.kv_heads() as i64;
        let f = cfg.intermediate_size as i64;
        let v = cfg.vocab_size as i64;
        let mut fetch = |name: &str, shape: &[i64]| -> Result<Tensor> {
            let t = get(name)?;
            check(name, &t, shape)?;
            Ok(t)
        };
        let put = |t: Tensor| -> Result<Tensor> { Ok(t.f_to_device(device)?.f_to_kind(kind)?.f_contiguous()?) };
        let embed = put(fetch("model.embed_tokens.weight", &[v, d])?)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let q = fetch(&format!("{p}.self_attn.q_proj.weight"), &[nh * hd, d])?;
            let k = fetch(&format!("{p}.self_attn.k_proj.weight"), &[nkv * hd, d])?;
            let vv = fetch(&format!("{p}.self_attn.v_proj.weight"), &[nkv * hd, d])?;
            let wqkv = put(Tensor::f_cat(&[q, k, vv], 0)?)?;
            let wo = put(fetch(&format!("{p}.self_attn.o_proj.weight"), &[d, nh * hd])?)?;
            let g = fetch(&format!("{p}.mlp.gate_proj.weight"), &[f, d])?;
            let u = fetch(&format!("{p}.mlp.up_proj.weight"), &[f, d])?;
            let w_gate_up = put(Tensor::f_cat(&[g, u], 0)?)?;
            let w_down = put(fetch(&format!("{p}.mlp.down_proj.weight"), &[d, f])?)?;
            let attn_norm = put(fetch(&format!("{p}.input_layernorm.weight"), &[d])?)?;
            let ffn_norm = put(fetch(&format!("{p}.post_attention_layernorm.weight"), &[d])?)?;
            layers.push(Layer { attn_norm, wqkv, wo, ffn_norm, w_gate_up, w_down });
        }
        let norm = put(fetch("model.norm.weight", &[d])?)?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.shallow_clone()
        } else {
            put(fetch("lm_head.weight", &[v, d])?)?
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
        Ok(Llama { cfg, embed, layers, norm, lm_head, cos, sin, device, kind })
    }

    /// Loads the llama tensors of a GGUF file (dequantized, q/k rows un-permuted).
    pub fn from_gguf(
        g: &GgufFile,
        device: Device,
        kind: Kind,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let total = g.tensors().len();
        let mut done = 0usize;
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let mut get = |hf: &str| -> Result<Tensor> {
            let (name, permute) = gguf_name(hf).ok_or_else(|| ModelError::MissingTensor(hf.into()))?;
            let t = g.tensor(&name, Device::Cpu, Kind::Float)?;
            done += 1;
            progress(done, total);
            match permute {
                Some(Qk::Q) => unpermute_qk(&t, nh),
                Some(Qk::K) => unpermute_qk(&t, nkv),
                None => Ok(t),
            }
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
        KvCache::new(
            self.cfg.num_hidden_layers,
            self.cfg.kv_heads(),
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
    pub fn forward(&self, ids: &Tensor, mut cache: Option<&mut KvCache>, last_only: bool) -> Result<Tensor> {
        let (b, t) = ids.size2()?;
        let step = match cache.as_deref() {
            Some(c) => c.step(t as usize)?,
            None => Step::causal(b as usize, t as usize, self.device)?,
        };
        let hd = self.cfg.head_dim() as i64;
        let nh = self.cfg.num_attention_heads as i64;
        let nkv = self.cfg.kv_heads() as i64;
        let eps = self.cfg.rms_norm_eps;
        let cos = self.cos.index_select(0, &step.positions.view([-1])).view([b, 1, t, hd]);
        let sin = self.sin.index_select(0, &step.positions.view([-1])).view([b, 1, t, hd]);
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false);
        for (li, l) in self.layers.iter().enumerate() {
            let h = x.rms_norm([x.size()[2]], Some(&l.attn_norm), eps);
            let qkv = h.linear(&l.wqkv, None::<Tensor>);
            let q = qkv.narrow(-1, 0, nh * hd).view([b, t, nh, hd]).transpose(1, 2);
            let k = qkv.narrow(-1, nh * hd, nkv * hd).view([b, t, nkv, hd]).transpose(1, 2);
            let v = qkv.narrow(-1, (nh + nkv) * hd, nkv * hd).view([b, t, nkv, hd]).transpose(1, 2);
            let q = self.rope(&q, &cos, &sin);
            let k = self.rope(&k, &cos, &sin);
            let a = attention(&q, &k, &v, cache.as_deref_mut(), li, &step);
            x = x + a.linear(&l.wo, None::<Tensor>);
            let h = x.rms_norm([x.size()[2]], Some(&l.ffn_norm), eps);
            let gu = h.linear(&l.w_gate_up, None::<Tensor>);
            let f = self.cfg.intermediate_size as i64;
            let act = gu.narrow(-1, 0, f).silu() * gu.narrow(-1, f, f);
            x = x + act.linear(&l.w_down, None::<Tensor>);
        }
        if let Some(c) = cache {
            c.advance(t as usize);
        }
        let x = if last_only { x.narrow(1, t - 1, 1) } else { x };
        let x = x.rms_norm([x.size()[2]], Some(&self.norm), eps);
        Ok(x.linear(&self.lm_head, None::<Tensor>))
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
        assert_eq!(gguf_name("model.layers.7.self_attn.k_proj.weight").map(|x| x.0), Some("blk.7.attn_k.weight".into()));
        assert_eq!(gguf_name("model.embed_tokens.weight").map(|x| x.0), Some("token_embd.weight".into()));
        assert!(gguf_name("model.layers.0.bogus").is_none());
    }
}
