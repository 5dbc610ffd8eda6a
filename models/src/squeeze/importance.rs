//! Head significance S(h) (Michel, Levy & Neubig 2019; whitepaper §4.2): the expected absolute
//! gradient of the language-model loss with respect to a mask ξ_h multiplying each head's
//! output, at ξ = 1, averaged over calibration windows and normalised per layer (l2), computed
//! with LibTorch autograd.

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::Llama;

#[derive(Debug, Clone, Serialize)]
pub struct Importance {
    /// Per layer, per current query head: E|∂L/∂ξ_h| over the windows.
    pub raw: Vec<Vec<f64>>,
    /// `raw` divided by its layer's l2 norm (each layer's vector has norm 1).
    pub normalized: Vec<Vec<f64>>,
    /// Mean next-token loss over the windows (nats).
    pub loss: f64,
    pub windows: usize,
    pub tokens: usize,
}

/// Runs `windows` (token ids, each ≥ 2 long) through `model` with a differentiable head mask.
pub fn head_importance(
    model: &Llama,
    windows: &[Vec<u32>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Importance> {
    let cfg = &model.cfg;
    let (layers, heads) = (cfg.num_hidden_layers as i64, cfg.num_attention_heads as i64);
    let device = model.device();
    let mask = Tensor::f_ones([layers, heads], (Kind::Float, device))?.set_requires_grad(true);
    let mut acc = Tensor::f_zeros([layers, heads], (Kind::Float, tch::Device::Cpu))?;
    let (mut loss_sum, mut tokens, mut used) = (0f64, 0usize, 0usize);
    for (i, w) in windows.iter().enumerate() {
        if w.len() < 2 {
            continue;
        }
        let ids: Vec<i64> = w.iter().map(|&t| t as i64).collect();
        let ids = Tensor::f_from_slice(&ids)?.f_to_device(device)?;
        let n = ids.size()[0];
        let input = ids.narrow(0, 0, n - 1).unsqueeze(0);
        let target = ids.narrow(0, 1, n - 1);
        let logits = model.forward_masked(&input, None, false, Some(&mask))?;
        let v = logits.size().last().copied().unwrap_or(0);
        let loss = logits.view([-1, v]).to_kind(Kind::Float).cross_entropy_for_logits(&target);
        let grads = Tensor::f_run_backward(&[&loss], &[&mask], false, false)?;
        let g = grads
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::InvalidArgument("no gradient for the head mask".into()))?;
        acc += g.abs().to_device(tch::Device::Cpu);
        loss_sum += loss.double_value(&[]);
        tokens += (n - 1) as usize;
        used += 1;
        progress(i + 1, windows.len());
    }
    if used == 0 {
        return Err(ModelError::InvalidArgument("no calibration window of at least 2 tokens".into()));
    }
    let acc = acc / used as f64;
    let mut raw = Vec::new();
    for l in 0..layers {
        let (nq, _) = cfg.layer_heads(l as usize);
        let row = Vec::<f32>::try_from(&acc.get(l).narrow(0, 0, nq as i64))?;
        raw.push(row.into_iter().map(|x| x as f64).collect::<Vec<f64>>());
    }
    let normalized = raw
        .iter()
        .map(|r| {
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(|x| if norm > 0.0 { x / norm } else { 0.0 }).collect()
        })
        .collect();
    Ok(Importance { raw, normalized, loss: loss_sum / used as f64, windows: used, tokens })
}
