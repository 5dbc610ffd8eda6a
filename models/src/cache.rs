//! The preallocated key/value cache and the per-step attention plumbing shared by the
//! architectures (positions, masks for left-padded batches).

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// Keys and values of every layer for a batch, preallocated to `capacity` positions:
/// `[batch, kv_heads, capacity, head_dim]` per layer, written in place each step.
pub struct KvCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    /// Positions already filled.
    len: usize,
    capacity: usize,
    /// Left padding of each row (prompts of different lengths in one batch).
    pad: Vec<usize>,
    /// `[batch, capacity]` bool, true where a key is a real token; only when some row is padded.
    key_valid: Option<Tensor>,
    device: Device,
}

impl KvCache {
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        pad: Vec<usize>,
        capacity: usize,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        Self::with_heads(&vec![kv_heads; layers], head_dim, pad, capacity, device, kind)
    }

    /// A cache whose layers hold different numbers of key/value heads (pruned models).
    pub fn with_heads(
        kv_heads: &[usize],
        head_dim: usize,
        pad: Vec<usize>,
        capacity: usize,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        let b = pad.len() as i64;
        let layers = kv_heads.len();
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        for &h in kv_heads {
            let shape = [b, h as i64, capacity as i64, head_dim as i64];
            k.push(Tensor::f_zeros(shape, (kind, device))?);
            v.push(Tensor::f_zeros(shape, (kind, device))?);
        }
        let key_valid = if pad.iter().any(|&p| p > 0) {
            let cols = Tensor::f_arange(capacity as i64, (Kind::Int64, device))?.unsqueeze(0);
            let pads: Vec<i64> = pad.iter().map(|&p| p as i64).collect();
            let pads = Tensor::f_from_slice(&pads)?.to_device(device).unsqueeze(1);
            Some(cols.f_ge_tensor(&pads)?)
        } else {
            None
        };
        Ok(KvCache { k, v, len: 0, capacity, pad, key_valid, device })
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn batch(&self) -> usize {
        self.pad.len()
    }

    /// Plans a forward step of `t` new positions for every row: positions and attention mask.
    pub(crate) fn step(&self, t: usize) -> Result<Step> {
        if self.len + t > self.capacity {
            return Err(ModelError::InvalidArgument(format!(
                "KV cache holds {} positions; {} are used and {t} more were asked for",
                self.capacity, self.len
            )));
        }
        let start = self.len as i64;
        let t64 = t as i64;
        let total = start + t64;
        let rows: Vec<i64> =
            self.pad.iter().flat_map(|&p| (0..t64).map(move |i| (start + i - p as i64).max(0))).collect();
        let positions = Tensor::f_from_slice(&rows)?.view([self.pad.len() as i64, t64]).to_device(self.device);
        let mask = match &self.key_valid {
            None if t == 1 => AttnMask::None,
            None if start == 0 => AttnMask::Causal,
            _ => {
                // query i (absolute start+i) sees key j when j <= start+i and key j is real;
                // a padded query always sees itself so its softmax row is never empty.
                let q = Tensor::f_arange_start(start, total, (Kind::Int64, self.device))?.view([t64, 1]);
                let k = Tensor::f_arange(total, (Kind::Int64, self.device))?.view([1, total]);
                let causal = k.le_tensor(&q).view([1, 1, t64, total]);
                let diag = k.eq_tensor(&q).view([1, 1, t64, total]);
                let m = match &self.key_valid {
                    Some(valid) => {
                        let valid = valid.narrow(1, 0, total).view([self.pad.len() as i64, 1, 1, total]);
                        causal.logical_and(&valid).logical_or(&diag)
                    }
                    None => causal,
                };
                AttnMask::Explicit(m)
            }
        };
        Ok(Step { start: self.len, t, positions, mask })
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}

/// How queries may attend in one step.
pub(crate) enum AttnMask {
    /// Single new token, no padding: it sees every cached key.
    None,
    /// Fresh cache, no padding: plain causal.
    Causal,
    /// `[B or 1, 1, T, L]` bool.
    Explicit(Tensor),
}

pub(crate) struct Step {
    pub start: usize,
    pub t: usize,
    /// `[B, T]` int64 absolute positions (padding excluded).
    pub positions: Tensor,
    pub mask: AttnMask,
}

/// Writes this step's keys/values (`[B, KV, T, hd]`) into layer `layer` of the cache (when
/// there is one) and runs scaled-dot-product attention; returns `[B, T, H*hd]`.
#[allow(clippy::too_many_arguments)] // the attention call's tensors and shape, as the callers hold them
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cache: Option<&mut KvCache>,
    layer: usize,
    step: &Step,
    kv_index: Option<&Tensor>,
    head_mask: Option<&Tensor>,
) -> Tensor {
    let (b, h, t, hd) = q.size4().unwrap_or((0, 0, 0, 0));
    // Unequal groups (a pruned layer): give every query head its own copy of its key/value head.
    let expand = |x: Tensor| match kv_index {
        Some(i) => x.index_select(1, i),
        None => x,
    };
    let gqa = kv_index.is_none() && k.size()[1] != h;
    let out = match cache {
        Some(c) => {
            let total = (step.start + step.t) as i64;
            c.k[layer].narrow(2, step.start as i64, step.t as i64).copy_(k);
            c.v[layer].narrow(2, step.start as i64, step.t as i64).copy_(v);
            let keys = expand(c.k[layer].narrow(2, 0, total));
            let vals = expand(c.v[layer].narrow(2, 0, total));
            sdpa(q, &keys, &vals, &step.mask, gqa)
        }
        None => sdpa(q, &expand(k.shallow_clone()), &expand(v.shallow_clone()), &step.mask, gqa),
    };
    let out = match head_mask {
        Some(m) => out * m.view([1, h, 1, 1]),
        None => out,
    };
    out.transpose(1, 2).reshape([b, t, h * hd])
}

fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, gqa: bool) -> Tensor {
    match mask {
        AttnMask::None => Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, false, None, gqa),
        AttnMask::Causal => Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, true, None, gqa),
        AttnMask::Explicit(m) => Tensor::scaled_dot_product_attention(q, k, v, Some(m), 0.0, false, None, gqa),
    }
}

impl Step {
    /// A cache-less causal pass over `t` positions starting at 0 (training, scoring).
    pub(crate) fn causal(batch: usize, t: usize, device: Device) -> Result<Step> {
        let positions =
            Tensor::f_arange(t as i64, (Kind::Int64, device))?.unsqueeze(0).expand([batch as i64, t as i64], false);
        Ok(Step { start: 0, t, positions, mask: AttnMask::Causal })
    }
}
