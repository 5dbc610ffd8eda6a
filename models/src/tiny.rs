//! Tiny Llama models generated from a seed: a few layers, a small width and a byte-level
//! tokenizer, written as an ordinary Hugging Face directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`) that [`crate::Model::load`] reads like any other.
//!
//! The simulator (`brainmesh sim`) gives hundreds of in-process miners such a model so that
//! generation, TOPLOC proofs and the validators' re-checks are the real code paths at a
//! fraction of SmolLM2's cost. The weights are random (a deterministic function of the seed,
//! the same on every machine), so the text is gibberish: what matters is that honest work and
//! each cheat are told apart exactly as they are on a real model.
//!
//! [`TinyVariant::Squeezed`] writes the cheaper copy a cheating miner would serve under the
//! original's hash: one query head removed in every layer (its output projection zeroed) and
//! every matrix rounded to 8 bits per row, like the audit matrix's "squeezed" row.

use std::path::Path;

use tch::Tensor;

use crate::error::{ModelError, Result};

/// The shape of a tiny Llama.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TinySpec {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub context: usize,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self { layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, context: 512 }
    }
}

/// Which copy to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyVariant {
    /// The model as generated from the seed.
    Original,
    /// One query head pruned per layer and 8-bit weights (a cheater's cheaper copy).
    Squeezed,
}

/// Byte-level tokens (ids 0–255), then the three special tokens.
const IM_START: u32 = 256;
const IM_END: u32 = 257;
const EOS: u32 = 258;
/// Vocabulary size of every tiny model.
pub const TINY_VOCAB: usize = 259;

/// A deterministic generator (splitmix64): the same weights from the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-a, a).
    fn uniform(&mut self, a: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * a
    }
}

fn matrix(rng: &mut Rng, rows: usize, cols: usize, scale: f32) -> Vec<f32> {
    (0..rows * cols).map(|_| rng.uniform(scale)).collect()
}

/// Rounds every row to 8 bits (symmetric, one scale per row).
fn int8_rows(w: &mut [f32], cols: usize) {
    for row in w.chunks_mut(cols) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            let s = max / 127.0;
            for v in row.iter_mut() {
                *v = (*v / s).round() * s;
            }
        }
    }
}

/// GPT-2's byte-to-character table: the byte-level pre-tokenizer's alphabet.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        out[*b as usize] = char::from_u32(c).unwrap_or(' ');
    }
    out
}

fn tokenizer_json() -> serde_json::Value {
    let chars = byte_chars();
    let vocab: serde_json::Map<String, serde_json::Value> =
        chars.iter().enumerate().map(|(i, c)| (c.to_string(), serde_json::json!(i))).collect();
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(IM_START, "<|im_start|>"), special(IM_END, "<|im_end|>"), special(EOS, "<|endoftext|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []}
    })
}

const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Writes a tiny Llama generated from `seed` into `dir` (created if needed).
pub fn write_tiny_llama(dir: &Path, spec: &TinySpec, seed: u64, variant: TinyVariant) -> Result<()> {
    let bad = |m: &str| ModelError::InvalidArgument(format!("tiny model: {m}"));
    if spec.heads == 0
        || spec.kv_heads == 0
        || !spec.heads.is_multiple_of(spec.kv_heads)
        || !spec.hidden.is_multiple_of(spec.heads)
    {
        return Err(bad("heads must divide the width and be a multiple of the key/value heads"));
    }
    if spec.layers == 0 || spec.intermediate == 0 || spec.context < 8 {
        return Err(bad("at least one layer, a feed-forward width and a context of 8"));
    }
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let (d, f, v) = (spec.hidden, spec.intermediate, TINY_VOCAB);
    let hd = d / spec.heads;
    let kvd = spec.kv_heads * hd;
    let mut rng = Rng(seed ^ 0x7461_6e79_6c6c_616d);
    let squeezed = variant == TinyVariant::Squeezed;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut push = |name: String, mut w: Vec<f32>, shape: &[usize]| -> Result<()> {
        if squeezed && shape.len() == 2 {
            int8_rows(&mut w, shape[1]);
        }
        let dims: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
        tensors.push((name, Tensor::f_from_slice(&w)?.f_view(dims.as_slice())?));
        Ok(())
    };
    push("model.embed_tokens.weight".into(), matrix(&mut rng, v, d, 1.0), &[v, d])?;
    let s_in = 1.0 / (d as f32).sqrt();
    let s_ff = 1.0 / (f as f32).sqrt();
    for i in 0..spec.layers {
        let p = format!("model.layers.{i}");
        push(format!("{p}.self_attn.q_proj.weight"), matrix(&mut rng, d, d, s_in), &[d, d])?;
        push(format!("{p}.self_attn.k_proj.weight"), matrix(&mut rng, kvd, d, s_in), &[kvd, d])?;
        push(format!("{p}.self_attn.v_proj.weight"), matrix(&mut rng, kvd, d, s_in), &[kvd, d])?;
        let mut o = matrix(&mut rng, d, d, s_in);
        if squeezed {
            // Query head 0 pruned: its columns of the output projection contribute nothing.
            for row in o.chunks_mut(d) {
                row[..hd].iter_mut().for_each(|x| *x = 0.0);
            }
        }
        push(format!("{p}.self_attn.o_proj.weight"), o, &[d, d])?;
        push(format!("{p}.mlp.gate_proj.weight"), matrix(&mut rng, f, d, s_in), &[f, d])?;
        push(format!("{p}.mlp.up_proj.weight"), matrix(&mut rng, f, d, s_in), &[f, d])?;
        push(format!("{p}.mlp.down_proj.weight"), matrix(&mut rng, d, f, s_ff), &[d, f])?;
        push(format!("{p}.input_layernorm.weight"), vec![1.0; d], &[d])?;
        push(format!("{p}.post_attention_layernorm.weight"), vec![1.0; d], &[d])?;
    }
    push("model.norm.weight".into(), vec![1.0; d], &[d])?;
    let st = dir.join("model.safetensors");
    Tensor::write_safetensors(&tensors, &st)?;
    let config = serde_json::json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "vocab_size": v,
        "hidden_size": d,
        "intermediate_size": f,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": spec.context,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": true,
        "bos_token_id": IM_START,
        "eos_token_id": EOS,
        "brainmesh_tiny": {"seed": seed, "variant": format!("{variant:?}").to_lowercase()},
    });
    let write = |file: &str, text: String| -> Result<()> {
        let p = dir.join(file);
        std::fs::write(&p, text).map_err(|e| ModelError::io(&p, e))
    };
    write("config.json", serde_json::to_string_pretty(&config).unwrap_or_default())?;
    write("tokenizer.json", tokenizer_json().to_string())?;
    write(
        "tokenizer_config.json",
        serde_json::to_string_pretty(&serde_json::json!({ "chat_template": CHAT_TEMPLATE })).unwrap_or_default(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GenerateConfig, LoadOptions, Model};

    fn load(dir: &Path) -> Model {
        Model::load(dir, &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {}).unwrap()
    }

    #[test]
    fn the_same_seed_writes_the_same_files_and_another_seed_other_weights() {
        let t = tempfile::tempdir().unwrap();
        let spec = TinySpec::default();
        for (name, seed) in [("a", 7), ("b", 7), ("c", 8)] {
            write_tiny_llama(&t.path().join(name), &spec, seed, TinyVariant::Original).unwrap();
        }
        let read = |n: &str| std::fs::read(t.path().join(n).join("model.safetensors")).unwrap();
        assert_eq!(read("a"), read("b"));
        assert_ne!(read("a"), read("c"));
    }

    #[test]
    fn a_tiny_model_loads_tokenizes_bytes_and_generates() {
        let t = tempfile::tempdir().unwrap();
        write_tiny_llama(t.path(), &TinySpec::default(), 1, TinyVariant::Original).unwrap();
        let m = load(t.path());
        assert_eq!(m.net.vocab_size(), TINY_VOCAB);
        let ids = m.tokenizer.encode("To be, or not").unwrap();
        assert_eq!(ids.len(), "To be, or not".len(), "one token per byte: {ids:?}");
        assert_eq!(m.tokenizer.decode(&ids, true).unwrap(), "To be, or not");
        let cfg = GenerateConfig { max_new_tokens: 8, ignore_eos: true, ..Default::default() };
        let g = m.generate(&[ids], &cfg, &mut |_| true).unwrap();
        assert_eq!(g[0].tokens.len(), 8);
    }

    #[test]
    fn the_squeezed_copy_differs_in_its_outputs() {
        let t = tempfile::tempdir().unwrap();
        write_tiny_llama(&t.path().join("o"), &TinySpec::default(), 3, TinyVariant::Original).unwrap();
        write_tiny_llama(&t.path().join("s"), &TinySpec::default(), 3, TinyVariant::Squeezed).unwrap();
        let ids = load(&t.path().join("o")).tokenizer.encode("hello world").unwrap();
        let a = load(&t.path().join("o")).logits(&ids).unwrap();
        let b = load(&t.path().join("s")).logits(&ids).unwrap();
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff > 1e-3, "the squeezed copy must not be numerically the original: {diff}");
    }
}
