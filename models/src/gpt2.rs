//! GPT-2 on tch. Weights are kept in Hugging Face's Conv1D layout (`[in, out]`), so a
//! checkpoint saved by transformers (or by our trainer) loads without transposes.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::cache::{attention, KvCache, Step};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

/// Hyper-parameters, named as in a Hugging Face GPT-2 `config.json`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Reads `gpt2.*` metadata from a GGUF file.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let u = |k: &str| g.get_u64(&format!("gpt2.{k}")).map(|v| v as usize);
        let vocab = g
            .tensor_info("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))? as usize;
        let cfg = Gpt2Config {
            vocab_size: vocab,
            n_positions: u("context_length")?,
            n_embd: u("embedding_length")?,
            n_layer: u("block_count")?,
            n_head: u("attention.head_count")?,
            n_inner: u("feed_forward_length").ok(),
            layer_norm_epsilon: g.get_f64("gpt2.attention.layer_norm_epsilon").unwrap_or(1e-5),
            activation_function: "gelu_new".into(),
            bos_token_id: None,
            eos_token_id: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) || self.n_layer == 0 {
            return Err(ModelError::Metadata("gpt2: n_embd must be a non-zero multiple of n_head".into()));
        }
        match self.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu" | "relu" => Ok(()),
            other => Err(ModelError::Metadata(format!("gpt2: unsupported activation_function {other:?}"))),
        }
    }
}

struct Block {
    ln1_w: Tensor,
    ln1_b: Tensor,
    attn_w: Tensor,
    attn_b: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
    ln2_w: Tensor,
    ln2_b: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
    fc_proj_w: Tensor,
    fc_proj_b: Tensor,
}

/// A GPT-2 model (tied LM head).
pub struct Gpt2 {
    pub cfg: Gpt2Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    lnf_w: Tensor,
    lnf_b: Tensor,
    device: Device,
    kind: Kind,
}

fn check(name: &str, t: &Tensor, expected: &[i64]) -> Result<()> {
    let actual = t.size();
    if actual != expected {
        return Err(ModelError::ShapeMismatch { name: name.into(), actual, expected: expected.to_vec() });
    }
    Ok(())
}

/// The Hugging Face tensor names of a GPT-2 with `n_layer` blocks and their shapes.
pub fn hf_tensor_shapes(cfg: &Gpt2Config) -> Vec<(String, Vec<i64>)> {
    let d = cfg.n_embd as i64;
    let f = cfg.inner() as i64;
    let mut v = vec![
        ("transformer.wte.weight".to_string(), vec![cfg.vocab_size as i64, d]),
        ("transformer.wpe.weight".to_string(), vec![cfg.n_positions as i64, d]),
    ];
    for i in 0..cfg.n_layer {
        let p = format!("transformer.h.{i}");
        v.push((format!("{p}.ln_1.weight"), vec![d]));
        v.push((format!("{p}.ln_1.bias"), vec![d]));
        v.push((format!("{p}.attn.c_attn.weight"), vec![d, 3 * d]));
        v.push((format!("{p}.attn.c_attn.bias"), vec![3 * d]));
        v.push((format!("{p}.attn.c_proj.weight"), vec![d, d]));
        v.push((format!("{p}.attn.c_proj.bias"), vec![d]));
        v.push((format!("{p}.ln_2.weight"), vec![d]));
        v.push((format!("{p}.ln_2.bias"), vec![d]));
        v.push((format!("{p}.mlp.c_fc.weight"), vec![d, f]));
        v.push((format!("{p}.mlp.c_fc.bias"), vec![f]));
        v.push((format!("{p}.mlp.c_proj.weight"), vec![f, d]));
        v.push((format!("{p}.mlp.c_proj.bias"), vec![d]));
    }
    v.push(("transformer.ln_f.weight".to_string(), vec![d]));
    v.push(("transformer.ln_f.bias".to_string(), vec![d]));
    v
}

impl Gpt2 {
    /// Builds the model from a getter of HF-named tensors (`transformer.h.0.attn.c_attn.weight`,
    /// Conv1D layout). With `device`/`kind` equal to the tensors' own, the tensors are used as
    /// they are (so autograd variables stay trainable).
    pub fn load(
        cfg: Gpt2Config,
        get: &mut dyn FnMut(&str) -> Result<Tensor>,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut w = std::collections::HashMap::new();
        for (name, shape) in hf_tensor_shapes(&cfg) {
            let t = get(&name)?;
            check(&name, &t, &shape)?;
            w.insert(name, t.f_to_device(device)?.f_to_kind(kind)?);
        }
        let mut take = |n: &str| w.remove(n).ok_or_else(|| ModelError::MissingTensor(n.into()));
        let wte = take("transformer.wte.weight")?;
        let wpe = take("transformer.wpe.weight")?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("transformer.h.{i}");
            blocks.push(Block {
                ln1_w: take(&format!("{p}.ln_1.weight"))?,
                ln1_b: take(&format!("{p}.ln_1.bias"))?,
                attn_w: take(&format!("{p}.attn.c_attn.weight"))?,
                attn_b: take(&format!("{p}.attn.c_attn.bias"))?,
                proj_w: take(&format!("{p}.attn.c_proj.weight"))?,
                proj_b: take(&format!("{p}.attn.c_proj.bias"))?,
                ln2_w: take(&format!("{p}.ln_2.weight"))?,
                ln2_b: take(&format!("{p}.ln_2.bias"))?,
                fc_w: take(&format!("{p}.mlp.c_fc.weight"))?,
                fc_b: take(&format!("{p}.mlp.c_fc.bias"))?,
                fc_proj_w: take(&format!("{p}.mlp.c_proj.weight"))?,
                fc_proj_b: take(&format!("{p}.mlp.c_proj.bias"))?,
            });
        }
        let lnf_w = take("transformer.ln_f.weight")?;
        let lnf_b = take("transformer.ln_f.bias")?;
        Ok(Gpt2 { cfg, wte, wpe, blocks, lnf_w, lnf_b, device, kind })
    }

    /// Loads a GGUF `gpt2` model (llama.cpp layout: Linear `[out, in]` weights, transposed here).
    pub fn from_gguf(g: &GgufFile, device: Device, kind: Kind, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let cfg = Gpt2Config::from_gguf(g)?;
        let total = g.tensors().len();
        let mut done = 0;
        let mut get = |hf: &str| -> Result<Tensor> {
            let (name, transpose) = gguf_name(hf).ok_or_else(|| ModelError::MissingTensor(hf.into()))?;
            let t = g.tensor(&name, Device::Cpu, Kind::Float)?;
            done += 1;
            progress(done, total);
            Ok(if transpose { t.f_transpose(0, 1)?.f_contiguous()? } else { t })
        };
        Self::load(cfg, &mut get, device, kind)
    }

    pub fn device(&self) -> Device {
        self.device
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn new_cache(&self, pad: Vec<usize>, capacity: usize) -> Result<KvCache> {
        let hd = self.cfg.n_embd / self.cfg.n_head;
        KvCache::new(self.cfg.n_layer, self.cfg.n_head, hd, pad, capacity, self.device, self.kind)
    }

    fn act(&self, x: &Tensor) -> Tensor {
        match self.cfg.activation_function.as_str() {
            "gelu" => x.gelu("none"),
            "relu" => x.relu(),
            _ => x.gelu("tanh"),
        }
    }

    /// Runs `ids` (`[B, T]` int64), appending to `cache` when given. Returns logits `[B, T, V]`
    /// (`[B, 1, V]` when `last_only`).
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>, last_only: bool) -> Result<Tensor> {
        Ok(self.forward_inner(ids, cache, last_only, false)?.0)
    }

    /// [`Self::forward`] plus the last hidden state (after `ln_f`) of every position `[B, T, H]`.
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (logits, hidden) = self.forward_inner(ids, cache, last_only, true)?;
        Ok((logits, hidden.ok_or_else(|| ModelError::InvalidArgument("no hidden state".into()))?))
    }

    fn forward_inner(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        last_only: bool,
        want_hidden: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t) = ids.size2()?;
        let step = match cache.as_deref() {
            Some(c) => c.step(t as usize)?,
            None => Step::causal(b as usize, t as usize, self.device)?,
        };
        let max = self.cfg.n_positions;
        if step.start + t as usize > max {
            return Err(ModelError::PromptTooLong { prompt_tokens: step.start + t as usize, context: max });
        }
        let d = self.cfg.n_embd as i64;
        let nh = self.cfg.n_head as i64;
        let hd = d / nh;
        let eps = self.cfg.layer_norm_epsilon;
        let mut x = Tensor::embedding(&self.wte, ids, -1, false, false)
            + Tensor::embedding(&self.wpe, &step.positions, -1, false, false);
        for (li, blk) in self.blocks.iter().enumerate() {
            let h = x.layer_norm([d], Some(&blk.ln1_w), Some(&blk.ln1_b), eps, false);
            let qkv = h.matmul(&blk.attn_w) + &blk.attn_b;
            let heads = |i: i64| qkv.narrow(-1, i * d, d).view([b, t, nh, hd]).transpose(1, 2);
            let (q, k, v) = (heads(0), heads(1), heads(2));
            let a = attention(&q, &k, &v, cache.as_deref_mut(), li, &step, None, None);
            x = x + a.matmul(&blk.proj_w) + &blk.proj_b;
            let h = x.layer_norm([d], Some(&blk.ln2_w), Some(&blk.ln2_b), eps, false);
            let m = self.act(&(h.matmul(&blk.fc_w) + &blk.fc_b));
            x = x + m.matmul(&blk.fc_proj_w) + &blk.fc_proj_b;
        }
        if let Some(c) = cache {
            c.advance(t as usize);
        }
        if want_hidden {
            let h = x.layer_norm([d], Some(&self.lnf_w), Some(&self.lnf_b), eps, false);
            let last = if last_only { h.narrow(1, t - 1, 1) } else { h.shallow_clone() };
            return Ok((last.linear(&self.wte, None::<Tensor>), Some(h)));
        }
        let x = if last_only { x.narrow(1, t - 1, 1) } else { x };
        let x = x.layer_norm([d], Some(&self.lnf_w), Some(&self.lnf_b), eps, false);
        Ok((x.linear(&self.wte, None::<Tensor>), None))
    }
}

/// Maps a Hugging Face GPT-2 tensor name to its GGUF name, and whether it must be transposed.
fn gguf_name(hf: &str) -> Option<(String, bool)> {
    let fixed = match hf {
        "transformer.wte.weight" => Some("token_embd.weight"),
        "transformer.wpe.weight" => Some("position_embd.weight"),
        "transformer.ln_f.weight" => Some("output_norm.weight"),
        "transformer.ln_f.bias" => Some("output_norm.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some((f.into(), false));
    }
    let rest = hf.strip_prefix("transformer.h.")?;
    let (idx, part) = rest.split_once('.')?;
    let (g, tr) = match part {
        "ln_1.weight" => ("attn_norm.weight", false),
        "ln_1.bias" => ("attn_norm.bias", false),
        "attn.c_attn.weight" => ("attn_qkv.weight", true),
        "attn.c_attn.bias" => ("attn_qkv.bias", false),
        "attn.c_proj.weight" => ("attn_output.weight", true),
        "attn.c_proj.bias" => ("attn_output.bias", false),
        "ln_2.weight" => ("ffn_norm.weight", false),
        "ln_2.bias" => ("ffn_norm.bias", false),
        "mlp.c_fc.weight" => ("ffn_up.weight", true),
        "mlp.c_fc.bias" => ("ffn_up.bias", false),
        "mlp.c_proj.weight" => ("ffn_down.weight", true),
        "mlp.c_proj.bias" => ("ffn_down.bias", false),
        _ => return None,
    };
    Some((format!("blk.{idx}.{g}"), tr))
}
