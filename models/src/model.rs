//! The loaded model: an architecture plus its tokenizer, from a GGUF file or an HF directory.

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::cache::KvCache;
use crate::device::{default_kind, select_device, set_threads, DevicePref};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::gpt2::{Gpt2, Gpt2Config};
use crate::hf::{HfDir, SafeTensorFiles};
use crate::llama::{Llama, LlamaConfig};
use crate::tokenizer::Tokenizer;

/// The network of a loaded model.
pub enum Network {
    Llama(Llama),
    Gpt2(Gpt2),
}

impl Network {
    /// `"llama"` or `"gpt2"`.
    pub fn arch(&self) -> &'static str {
        match self {
            Network::Llama(_) => "llama",
            Network::Gpt2(_) => "gpt2",
        }
    }
    pub fn context_length(&self) -> usize {
        match self {
            Network::Llama(m) => m.cfg.max_position_embeddings,
            Network::Gpt2(m) => m.cfg.n_positions,
        }
    }
    pub fn vocab_size(&self) -> usize {
        match self {
            Network::Llama(m) => m.cfg.vocab_size,
            Network::Gpt2(m) => m.cfg.vocab_size,
        }
    }
    pub fn device(&self) -> Device {
        match self {
            Network::Llama(m) => m.device(),
            Network::Gpt2(m) => m.device(),
        }
    }
    pub fn kind(&self) -> Kind {
        match self {
            Network::Llama(m) => m.kind(),
            Network::Gpt2(m) => m.kind(),
        }
    }
    /// The compute precision: "f32", "bf16", "f16".
    pub fn dtype_name(&self) -> &'static str {
        match self.kind() {
            Kind::Float => "f32",
            Kind::BFloat16 => "bf16",
            Kind::Half => "f16",
            _ => "other",
        }
    }
    /// "cpu" or "cuda:N".
    pub fn device_name(&self) -> String {
        match self.device() {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        }
    }
    /// Whether CPU decode steps run directly on quantized GGUF weights.
    pub fn uses_quantized_kernels(&self) -> bool {
        match self {
            Network::Llama(m) => m.uses_quantized_kernels(),
            Network::Gpt2(_) => false,
        }
    }
    /// A KV cache for rows left-padded by `pad`, holding `capacity` positions.
    pub fn new_cache(&self, pad: Vec<usize>, capacity: usize) -> Result<KvCache> {
        match self {
            Network::Llama(m) => m.new_cache(pad, capacity),
            Network::Gpt2(m) => m.new_cache(pad, capacity),
        }
    }
    /// Logits for `ids` `[B, T]` (see [`Llama::forward`]).
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>, last_only: bool) -> Result<Tensor> {
        match self {
            Network::Llama(m) => m.forward(ids, cache, last_only),
            Network::Gpt2(m) => m.forward(ids, cache, last_only),
        }
    }
}

impl Network {
    /// No cache: the last hidden state of every position `[B, T, H]` and the logits of the
    /// positions from `from` on `[B, T - from, V]`.
    pub fn forward_hidden_from(&self, ids: &Tensor, from: i64) -> Result<(Tensor, Tensor)> {
        match self {
            Network::Llama(m) => m.forward_hidden_from(ids, from),
            Network::Gpt2(m) => {
                let (l, h) = m.forward_hidden(ids, None, false)?;
                let t = l.size()[1];
                Ok((l.f_narrow(1, from, t - from)?, h))
            }
        }
    }

    /// Logits and the last hidden state of every position (see [`Llama::forward_hidden`]).
    pub fn forward_hidden(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        last_only: bool,
    ) -> Result<(Tensor, Tensor)> {
        match self {
            Network::Llama(m) => m.forward_hidden(ids, cache, last_only),
            Network::Gpt2(m) => m.forward_hidden(ids, cache, last_only),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub device: DevicePref,
    /// LibTorch CPU threads (None: LibTorch's default).
    pub threads: Option<usize>,
    /// Compute precision (None: f32 on CPU, bf16/f16 on CUDA).
    pub kind: Option<Kind>,
}

/// Loading progress: tensors done out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    pub done: usize,
    pub total: usize,
}

/// A model ready to generate.
pub struct Model {
    pub net: Network,
    pub tokenizer: Tokenizer,
    pub source: PathBuf,
}

impl Model {
    /// Loads a `.gguf` file or a Hugging Face directory (with `config.json`).
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Model> {
        let path = path.as_ref();
        set_threads(opts.threads);
        let device = select_device(opts.device);
        let kind = opts.kind.unwrap_or_else(|| default_kind(device));
        let _guard = tch::no_grad_guard();
        let (net, tokenizer) = if path.is_dir() {
            load_hf(path, device, kind, progress)?
        } else {
            load_gguf(path, device, kind, progress)?
        };
        Ok(Model { net, tokenizer, source: path.to_path_buf() })
    }

    /// Logits `[T, V]` (f32, CPU) for every position of one sequence, no cache.
    pub fn logits(&self, ids: &[u32]) -> Result<Tensor> {
        self.check_prompt(ids.len())?;
        let _guard = tch::no_grad_guard();
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let x = Tensor::f_from_slice(&ids)?.f_to_device(self.net.device())?.unsqueeze(0);
        let l = self.net.forward(&x, None, false)?;
        Ok(l.f_squeeze_dim(0)?.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?)
    }

    pub(crate) fn check_prompt(&self, n: usize) -> Result<()> {
        let context = self.net.context_length();
        if n == 0 {
            return Err(ModelError::InvalidArgument("empty prompt".into()));
        }
        if n >= context {
            return Err(ModelError::PromptTooLong { prompt_tokens: n, context });
        }
        Ok(())
    }
}

/// A matrix stored as groups by `brainmesh squeeze`: its dense f32 values and its groups.
fn load_groups(files: &SafeTensorFiles, name: &str) -> Result<crate::llama::Weight> {
    let q = files.tensor(&format!("{name}.bm_q"), Device::Cpu, Kind::Uint8)?;
    let channel = format!("{name}.bm_channel_scale");
    if files.contains(&channel) {
        let scale = Vec::<f32>::try_from(&files.tensor(&channel, Device::Cpu, Kind::Float)?)?;
        let rows = scale.len();
        let cols = q.numel().checked_div(rows).unwrap_or(0);
        let quants = Vec::<u8>::try_from(&q)?;
        let m = crate::qmatmul::QMatrix::from_channel_parts(rows, cols, quants, &scale).ok_or_else(|| {
            ModelError::ShapeMismatch {
                name: name.into(),
                actual: vec![q.numel() as i64],
                expected: vec![rows as i64, cols as i64],
            }
        })?;
        let dense = Tensor::f_from_slice(&m.dequantize())?.f_view([rows as i64, cols as i64])?;
        return Ok(crate::llama::Weight { dense, quant: Some(m) });
    }
    let scale = files.tensor(&format!("{name}.bm_scale"), Device::Cpu, Kind::Float)?;
    let offset = files.tensor(&format!("{name}.bm_offset"), Device::Cpu, Kind::Float)?;
    let groups = scale.numel();
    // 32 bytes a group: signed 8-bit; 16: nibbles (the matrix's own size says which).
    let (kind, per) =
        if q.numel() == groups * 32 { (crate::ggml::GgmlType::Q8_0, 32) } else { (crate::ggml::GgmlType::Q4_1, 16) };
    // Rows × cols from the group count and the quant bytes: cols comes from the config shapes,
    // which Llama::load checks; here only the total matters, so store as [groups·32] and let the
    // caller's shape check catch a mismatch.
    let bad = || ModelError::ShapeMismatch {
        name: name.into(),
        actual: vec![q.numel() as i64],
        expected: vec![(groups * per) as i64],
    };
    if q.numel() != groups * per || offset.numel() != groups {
        return Err(bad());
    }
    let quants = Vec::<u8>::try_from(&q)?;
    let scale = Vec::<f32>::try_from(&scale)?;
    let offset = Vec::<f32>::try_from(&offset)?;
    crate::llama::Weight::grouped(name, kind, quants, scale, offset)
}

fn load_gguf(
    path: &Path,
    device: Device,
    kind: Kind,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<(Network, Tokenizer)> {
    let g = GgufFile::open(path)?;
    let arch = g.get_str("general.architecture")?.to_string();
    let mut p = |done, total| progress(LoadProgress { done, total });
    let net = match arch.as_str() {
        "llama" => Network::Llama(Llama::from_gguf(&g, device, kind, &mut p)?),
        "gpt2" => Network::Gpt2(Gpt2::from_gguf(&g, device, kind, &mut p)?),
        other => return Err(ModelError::UnknownArchitecture(other.to_string())),
    };
    let tokenizer = Tokenizer::from_gguf(&g)?;
    Ok((net, tokenizer))
}

fn load_hf(
    dir: &Path,
    device: Device,
    kind: Kind,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<(Network, Tokenizer)> {
    let hf = HfDir::open(dir)?;
    let arch = match hf.model_type.as_str() {
        "llama" | "LlamaForCausalLM" => "llama",
        "gpt2" | "GPT2LMHeadModel" => "gpt2",
        other => return Err(ModelError::UnknownArchitecture(other.to_string())),
    };
    let files = SafeTensorFiles::open_dir(dir)?;
    let total = files.names().count();
    let mut done = 0usize;
    let (net, bos, eos) = match arch {
        "llama" => {
            let cfg = LlamaConfig::from_hf_json(&hf.config)?;
            let (bos, eos) = (cfg.bos_token_id, cfg.eos_token_id);
            // `brainmesh squeeze --quant int8|int4` stores 32-wide groups instead of f32.
            let quant: Option<crate::quant::Quant> = hf
                .config
                .get("brainmesh_quant")
                .and_then(|q| q.get("kind"))
                .map(|k| serde_json::from_value(k.clone()))
                .transpose()
                .map_err(|e| ModelError::Metadata(format!("config.json: brainmesh_quant: {e}")))?;
            let mut get = |name: &str| {
                done += 1;
                progress(LoadProgress { done, total });
                match quant {
                    Some(_) if files.contains(&format!("{name}.bm_q")) => load_groups(&files, name),
                    _ => files.tensor(name, Device::Cpu, Kind::Float).map(crate::llama::Weight::from),
                }
            };
            (Network::Llama(Llama::load(cfg, &mut get, device, kind)?), bos, eos)
        }
        _ => {
            let cfg: Gpt2Config = hf.parse_config()?;
            let (bos, eos) = (cfg.bos_token_id, cfg.eos_token_id);
            let mut get = |name: &str| {
                done += 1;
                progress(LoadProgress { done, total });
                // Original GPT-2 checkpoints have no `transformer.` prefix.
                match files.contains(name) {
                    true => files.tensor(name, Device::Cpu, Kind::Float),
                    false => files.tensor(name.trim_start_matches("transformer."), Device::Cpu, Kind::Float),
                }
            };
            (Network::Gpt2(Gpt2::load(cfg, &mut get, device, kind)?), bos, eos)
        }
    };
    progress(LoadProgress { done: total, total });
    let tokenizer = Tokenizer::from_hf_file(&dir.join("tokenizer.json"), bos, eos, hf.chat_template().as_deref())?;
    Ok((net, tokenizer))
}
