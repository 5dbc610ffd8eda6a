//! Function-preserving obfuscation of a Llama model (Eternl's "obfuscated models"; the
//! computational invariance of SliceGPT / QuaRot plus the structural permutations of
//! ModelObfuscator): every transform changes the weights and leaves the function as it is, up to
//! floating-point rounding.
//!
//! - **Rotation** of the residual stream by a random orthogonal `Q` (after the RMSNorm gains are
//!   folded into the linear layers that read the norms): embeddings `E·Q`; every matrix reading
//!   the stream (q, k, v, gate, up, the output head) `W·Q`; every matrix writing it (o, down)
//!   `Qᵀ·W`. RMSNorm commutes with `Q` (it only divides by the norm), so the network computes the
//!   same logits; no matrix keeps a row of the original. A tied output head becomes untied.
//! - **Head permutation** per layer: key/value heads permuted, and query heads within their GQA
//!   group (q, k, v rows and o columns move together; RoPE works inside each head, so whole heads
//!   can move).
//! - **Query/key scaling**: query head rows × s, its key/value head's key rows × 1/s (RoPE is
//!   linear, so scores are unchanged).
//! - **Value/output mixing**: each value head's rows mixed by a random orthogonal `M`, the output
//!   columns of the query heads reading it by `Mᵀ`.
//! - **MLP permutation**: gate and up rows and down columns permuted together.
//!
//! The seed is never written into the artefact. What an attacker can undo: see
//! `docs/model-protection.md` (with the original in hand, a rotation is recovered by an
//! orthogonal Procrustes fit and permutations by matching rows; the transforms keep the weights
//! from being copied or recognised as-is, they are no cryptographic guarantee).

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::Llama;
use crate::model::{Model, Network};

/// Which transforms to apply (all on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObfuscateOptions {
    pub rotate: bool,
    pub permute_heads: bool,
    pub scale_qk: bool,
    pub mix_vo: bool,
    pub permute_mlp: bool,
}

impl Default for ObfuscateOptions {
    fn default() -> Self {
        Self { rotate: true, permute_heads: true, scale_qk: true, mix_vo: true, permute_mlp: true }
    }
}

/// The transform's randomness: the sampler's splitmix64 ([`crate::generate::Rng`]) with
/// Box–Muller normals, so the same seed gives the same transform everywhere.
struct Rng(crate::generate::Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in (0, 1): never 0, so its logarithm is finite.
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
        p
    }
    /// A random orthogonal n×n matrix (QR of a Gaussian matrix, signs fixed: Haar-distributed).
    fn orthogonal(&mut self, n: usize) -> Result<Tensor> {
        let g: Vec<f64> = (0..n * n).map(|_| self.normal()).collect();
        let a = Tensor::f_from_slice(&g)?.f_view([n as i64, n as i64])?;
        let (q, r) = Tensor::f_linalg_qr(&a, "reduced")?;
        let signs = r.f_diagonal(0, 0, 1)?.f_sign()?;
        Ok(q.f_mul(&signs.f_unsqueeze(0)?)?.f_to_kind(Kind::Float)?)
    }
}

fn idx(v: &[usize]) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>())?)
}

/// Block indices: for each block `b` of `order`, its `width` rows.
fn blocks(order: &[usize], width: usize) -> Vec<usize> {
    order.iter().flat_map(|&b| (b * width)..((b + 1) * width)).collect()
}

/// The obfuscated state dict (HF names and layout, dense f32) and its config.
pub fn obfuscate_state(m: &Llama, seed: u64, o: &ObfuscateOptions) -> Result<Vec<(String, Tensor)>> {
    let cfg = &m.cfg;
    if cfg.brainmesh_heads.is_some() || cfg.brainmesh_act_squeeze.is_some() {
        return Err(ModelError::InvalidArgument(
            "obfuscate a model before squeezing it (head-pruned or activation-squeezed models are not supported)"
                .into(),
        ));
    }
    let _g = tch::no_grad_guard();
    let mut state: std::collections::HashMap<String, Tensor> = m.state_dict()?.into_iter().collect();
    let mut get = |name: &str| -> Result<Tensor> {
        state.remove(name).ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    };
    let mut rng = Rng(crate::generate::Rng::new(seed ^ 0x6F62_6675_7363_6174));
    let (h, hd) = (cfg.hidden_size, cfg.head_dim());
    let (nq, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
    let group = nq / nkv.max(1);
    let rot = if o.rotate { Some(rng.orthogonal(h)?) } else { None };
    // W (reads the stream after a norm with gain g) → W·diag(g)·Q; W (writes it) → Qᵀ·W.
    let read = |w: &Tensor, g: &Tensor| -> Result<Tensor> {
        match &rot {
            Some(q) => Ok(w.f_mul(&g.f_unsqueeze(0)?)?.f_matmul(q)?),
            None => Ok(w.shallow_clone()),
        }
    };
    let write = |w: &Tensor| -> Result<Tensor> {
        match &rot {
            Some(q) => Ok(q.f_tr()?.f_matmul(w)?),
            None => Ok(w.shallow_clone()),
        }
    };
    let embed = get("model.embed_tokens.weight")?;
    let mut out: Vec<(String, Tensor)> = Vec::new();
    out.push((
        "model.embed_tokens.weight".into(),
        match &rot {
            Some(q) => embed.f_matmul(q)?,
            None => embed.shallow_clone(),
        },
    ));
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let g_attn = get(&format!("{p}.input_layernorm.weight"))?;
        let g_ffn = get(&format!("{p}.post_attention_layernorm.weight"))?;
        let mut wq = read(&get(&format!("{p}.self_attn.q_proj.weight"))?, &g_attn)?;
        let mut wk = read(&get(&format!("{p}.self_attn.k_proj.weight"))?, &g_attn)?;
        let mut wv = read(&get(&format!("{p}.self_attn.v_proj.weight"))?, &g_attn)?;
        let mut wo = write(&get(&format!("{p}.self_attn.o_proj.weight"))?)?;
        let mut gate = read(&get(&format!("{p}.mlp.gate_proj.weight"))?, &g_ffn)?;
        let mut up = read(&get(&format!("{p}.mlp.up_proj.weight"))?, &g_ffn)?;
        let mut down = write(&get(&format!("{p}.mlp.down_proj.weight"))?)?;
        if o.permute_heads {
            // New kv head j is old kv head kv_perm[j]; its query heads follow it, reordered.
            let kv_perm = rng.permutation(nkv);
            let q_order: Vec<usize> = kv_perm
                .iter()
                .flat_map(|&g| {
                    let inner = rng.permutation(group);
                    inner.into_iter().map(move |k| g * group + k).collect::<Vec<_>>()
                })
                .collect();
            let (qi, kvi) = (idx(&blocks(&q_order, hd))?, idx(&blocks(&kv_perm, hd))?);
            wq = wq.f_index_select(0, &qi)?;
            wk = wk.f_index_select(0, &kvi)?;
            wv = wv.f_index_select(0, &kvi)?;
            wo = wo.f_index_select(1, &qi)?;
        }
        if o.scale_qk || o.mix_vo {
            let mut q_rows = Vec::with_capacity(nq);
            let mut k_rows = Vec::with_capacity(nkv);
            let mut v_rows = Vec::with_capacity(nkv);
            let mut o_cols = Vec::with_capacity(nq);
            for g in 0..nkv {
                // log-uniform scale in [1/4, 4]
                let s = if o.scale_qk { (4f64).powf(2.0 * rng.uniform() - 1.0) } else { 1.0 };
                let mix = if o.mix_vo { Some(rng.orthogonal(hd)?) } else { None };
                let k = wk.f_narrow(0, (g * hd) as i64, hd as i64)?;
                k_rows.push(k.f_div_scalar(s)?);
                let v = wv.f_narrow(0, (g * hd) as i64, hd as i64)?;
                v_rows.push(match &mix {
                    Some(m) => m.f_matmul(&v)?,
                    None => v,
                });
                for hq in (g * group)..((g + 1) * group) {
                    let q = wq.f_narrow(0, (hq * hd) as i64, hd as i64)?;
                    q_rows.push(q.f_mul_scalar(s)?);
                    let oc = wo.f_narrow(1, (hq * hd) as i64, hd as i64)?;
                    o_cols.push(match &mix {
                        Some(m) => oc.f_matmul(&m.f_tr()?)?,
                        None => oc,
                    });
                }
            }
            wq = Tensor::f_cat(&q_rows, 0)?;
            wk = Tensor::f_cat(&k_rows, 0)?;
            wv = Tensor::f_cat(&v_rows, 0)?;
            wo = Tensor::f_cat(&o_cols, 1)?;
        }
        if o.permute_mlp {
            let perm = idx(&rng.permutation(cfg.intermediate_size))?;
            gate = gate.f_index_select(0, &perm)?;
            up = up.f_index_select(0, &perm)?;
            down = down.f_index_select(1, &perm)?;
        }
        let ones =
            |g: &Tensor| -> Result<Tensor> { Ok(if rot.is_some() { g.f_ones_like()? } else { g.shallow_clone() }) };
        out.push((format!("{p}.self_attn.q_proj.weight"), wq));
        out.push((format!("{p}.self_attn.k_proj.weight"), wk));
        out.push((format!("{p}.self_attn.v_proj.weight"), wv));
        out.push((format!("{p}.self_attn.o_proj.weight"), wo));
        out.push((format!("{p}.mlp.gate_proj.weight"), gate));
        out.push((format!("{p}.mlp.up_proj.weight"), up));
        out.push((format!("{p}.mlp.down_proj.weight"), down));
        out.push((format!("{p}.input_layernorm.weight"), ones(&g_attn)?));
        out.push((format!("{p}.post_attention_layernorm.weight"), ones(&g_ffn)?));
    }
    let g_final = get("model.norm.weight")?;
    let head = if cfg.tie_word_embeddings { embed } else { get("lm_head.weight")? };
    let head = read(&head, &g_final)?;
    out.push(("model.norm.weight".into(), if rot.is_some() { g_final.f_ones_like()? } else { g_final }));
    // Tied heads stay tied only without a rotation (the head then equals the embeddings).
    if rot.is_some() || !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".into(), head));
    }
    out.into_iter().map(|(n, t)| Ok((n, t.f_contiguous()?))).collect()
}

/// Writes the obfuscated model to `out` as a Hugging Face directory (f32 safetensors, config,
/// tokenizer and chat template) that brainmesh and transformers load like any Llama.
pub fn obfuscate(model: &Model, seed: u64, o: &ObfuscateOptions, out: &std::path::Path) -> Result<()> {
    let Network::Llama(m) = &model.net else {
        return Err(ModelError::UnknownArchitecture("obfuscate supports llama models".into()));
    };
    let state = obfuscate_state(m, seed, o)?;
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let mut cfg = m.cfg.clone();
    cfg.tie_word_embeddings = cfg.tie_word_embeddings && !o.rotate;
    crate::squeeze::export::write_hf_dir(model, &cfg, &state, out)
}

/// Writes the obfuscated model to the file `out` as GGUF (f32 tensors, llama.cpp's q/k row
/// layout), with the source GGUF's metadata (tokenizer, chat template, hyper-parameters). The
/// source must be a GGUF file.
pub fn obfuscate_gguf(model: &Model, seed: u64, o: &ObfuscateOptions, out: &std::path::Path) -> Result<()> {
    let Network::Llama(m) = &model.net else {
        return Err(ModelError::UnknownArchitecture("obfuscate supports llama models".into()));
    };
    if model.source.is_dir() {
        return Err(ModelError::InvalidArgument(
            "GGUF output needs a GGUF source (its metadata is copied); write a Hugging Face directory instead".into(),
        ));
    }
    let src = crate::gguf::GgufFile::open(&model.source)?;
    let mut meta: Vec<(String, crate::gguf::Value)> =
        src.metadata().iter().filter(|(k, _)| k != "general.alignment" && k != "general.file_type").cloned().collect();
    meta.push(("general.alignment".into(), crate::gguf::Value::U32(32)));
    meta.push(("general.file_type".into(), crate::gguf::Value::U32(0)));
    let state = obfuscate_state(m, seed, o)?;
    let mut tensors = Vec::with_capacity(state.len());
    for (name, t) in state {
        let (g, heads) =
            crate::llama::hf_to_gguf(&name, &m.cfg).ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
        let t = match heads {
            Some(h) => crate::llama::permute_qk(&t, h)?,
            None => t,
        };
        tensors.push((g, t));
    }
    crate::gguf_write::write_gguf(out, &meta, &tensors)
}

/// Per 2-D weight: the largest |cosine| between a (sampled) row of `b` and any row of `a` —
/// near 1 when a row survived the transform (up to scale), near the random-vector level when
/// none did.
pub fn best_row_cosine(a: &Tensor, b: &Tensor, sample: i64) -> Result<f64> {
    let _g = tch::no_grad_guard();
    if a.dim() != 2 || b.dim() != 2 || a.size()[1] != b.size()[1] {
        return Ok(f64::NAN);
    }
    let unit = |t: &Tensor| -> Result<Tensor> {
        let n = t.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
        Ok(t.f_div(&n)?)
    };
    let rows = b.size()[0];
    let step = (rows / sample.max(1)).max(1);
    let pick = Tensor::f_arange_start_step(0, rows, step, (Kind::Int64, tch::Device::Cpu))?;
    let bs = unit(&b.f_index_select(0, &pick)?)?;
    let cos = unit(a)?.f_matmul(&bs.f_tr()?)?.f_abs()?;
    Ok(cos.f_max()?.double_value(&[]))
}
