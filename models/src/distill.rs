//! Knowledge distillation (DistilBERT's recipe, Eternl's "distilled lightweight models"): a
//! student initialised from a subset of the teacher's layers learns from the teacher's
//! temperature-softened distribution (KL divergence, scaled by T²) and from the text itself
//! (cross-entropy), with Adam, on windows of token ids. Pure tch autograd on the model's own
//! forward pass; CUDA when the model is there.

use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::Llama;
use crate::model::{Model, Network};

/// Training settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DistillConfig {
    /// Softmax temperature of the distillation term.
    pub temperature: f64,
    /// Weight of the distillation term; `1 - alpha` weighs the cross-entropy on the text.
    /// 0: the student learns from the text alone (the baseline to compare with).
    pub alpha: f64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self { temperature: 2.0, alpha: 0.5, lr: 1e-4, beta1: 0.9, beta2: 0.999, weight_decay: 0.0 }
    }
}

/// Writes a student for `teacher` as a Hugging Face directory: the teacher's layers `keep` (in
/// order), its embeddings, final norm and head.
pub fn student_from_teacher(teacher: &Model, keep: &[usize], out: &Path) -> Result<()> {
    let Network::Llama(m) = &teacher.net else {
        return Err(ModelError::UnknownArchitecture("distillation supports llama models".into()));
    };
    let n = m.cfg.num_hidden_layers;
    if keep.is_empty() || keep.iter().any(|&l| l >= n) || keep.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ModelError::InvalidArgument(format!("layers to keep must be increasing and below {n}: {keep:?}")));
    }
    let mut state = Vec::new();
    for (name, t) in m.state_dict()? {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            ["model", "layers", i, rest @ ..] => {
                let i: usize = i.parse().map_err(|_| ModelError::MissingTensor(name.clone()))?;
                if let Some(new) = keep.iter().position(|&k| k == i) {
                    state.push((format!("model.layers.{new}.{}", rest.join(".")), t));
                }
            }
            _ => state.push((name, t)),
        }
    }
    let mut cfg = m.cfg.clone();
    cfg.num_hidden_layers = keep.len();
    crate::squeeze::export::write_hf_dir(teacher, &cfg, &state, out)
}

/// Every second layer of `n` (DistilBERT's initialisation): 0, 2, 4, …
pub fn every_second_layer(n: usize) -> Vec<usize> {
    (0..n).step_by(2).collect()
}

/// A student being trained: its parameters and Adam's moments.
pub struct Trainer {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
    pub cfg: DistillConfig,
}

/// One step's losses.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepLoss {
    pub total: f64,
    pub kl: f64,
    pub ce: f64,
}

fn llama_mut(m: &mut Model) -> Result<&mut Llama> {
    match &mut m.net {
        Network::Llama(l) => Ok(l),
        _ => Err(ModelError::UnknownArchitecture("distillation supports llama models".into())),
    }
}

fn llama(m: &Model) -> Result<&Llama> {
    match &m.net {
        Network::Llama(l) => Ok(l),
        _ => Err(ModelError::UnknownArchitecture("distillation supports llama models".into())),
    }
}

impl Trainer {
    /// Makes `student`'s weights trainable (fresh Adam moments).
    pub fn new(student: &mut Model, cfg: DistillConfig) -> Result<Self> {
        let params = llama_mut(student)?.trainable_parameters();
        let zeros = |p: &Tensor| p.f_zeros_like().map_err(ModelError::from);
        let m = params.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        let v = params.iter().map(zeros).collect::<Result<Vec<_>>>()?;
        Ok(Trainer { params, m, v, step: 0, cfg })
    }

    /// One step on a batch of equally long windows (`[B, T]` token ids): the teacher's
    /// logits without gradients, the student's with, the loss, its gradients, one Adam update.
    pub fn step(&mut self, teacher: &Model, student: &Model, batch: &[Vec<u32>]) -> Result<StepLoss> {
        let t = batch.first().map(Vec::len).unwrap_or(0);
        if t < 2 || batch.iter().any(|w| w.len() != t) {
            return Err(ModelError::InvalidArgument("a batch of equally long windows of at least 2 tokens".into()));
        }
        let (tl, sl) = (llama(teacher)?, llama(student)?);
        let ids: Vec<i64> = batch.iter().flatten().map(|&x| x as i64).collect();
        let ids = Tensor::f_from_slice(&ids)?.f_view([batch.len() as i64, t as i64])?.f_to_device(sl.device())?;
        let temp = self.cfg.temperature;
        let logits = sl.forward(&ids, None, false)?.f_narrow(1, 0, t as i64 - 1)?;
        let v = logits.size()[2];
        // KL(teacher ‖ student) per position, averaged; × T² keeps its gradient scale. Without
        // a distillation term (alpha = 0, the text-only baseline) the teacher is not run.
        let kl = if self.cfg.alpha > 0.0 {
            let soft_teacher = {
                let _g = tch::no_grad_guard();
                let logits = tl.forward(&ids.f_to_device(tl.device())?, None, false)?.f_to_device(sl.device())?;
                logits.f_narrow(1, 0, t as i64 - 1)?.f_div_scalar(temp)?.f_log_softmax(-1, Kind::Float)?
            };
            let student_soft = logits.f_div_scalar(temp)?.f_log_softmax(-1, Kind::Float)?;
            soft_teacher
                .f_exp()?
                .f_mul(&soft_teacher.f_sub(&student_soft)?)?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?
                .f_mean(Kind::Float)?
                .f_mul_scalar(temp * temp)?
        } else {
            Tensor::f_zeros([], (Kind::Float, sl.device()))?
        };
        let targets = ids.f_narrow(1, 1, t as i64 - 1)?.f_reshape([-1])?;
        let ce = logits.f_reshape([-1, v])?.f_cross_entropy_loss::<Tensor>(
            &targets,
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        )?;
        let loss = kl.f_mul_scalar(self.cfg.alpha)?.f_add(&ce.f_mul_scalar(1.0 - self.cfg.alpha)?)?;
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        loss.f_backward()?;
        self.adam()?;
        Ok(StepLoss { total: loss.double_value(&[]), kl: kl.double_value(&[]), ce: ce.double_value(&[]) })
    }

    fn adam(&mut self) -> Result<()> {
        let _g = tch::no_grad_guard();
        self.step += 1;
        let c = &self.cfg;
        let (b1, b2) = (c.beta1, c.beta2);
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.f_mul_scalar_(b1)?.f_add_(&g.f_mul_scalar(1.0 - b1)?)?;
            let _ = v.f_mul_scalar_(b2)?.f_add_(&g.f_mul(&g)?.f_mul_scalar(1.0 - b2)?)?;
            let update = m.f_div_scalar(bc1)?.f_div(&v.f_div_scalar(bc2)?.f_sqrt()?.f_add_scalar(1e-8)?)?;
            let mut update = update.f_mul_scalar(c.lr)?;
            if c.weight_decay > 0.0 {
                update = update.f_add(&p.f_mul_scalar(c.lr * c.weight_decay)?)?;
            }
            let _ = p.f_sub_(&update)?;
        }
        Ok(())
    }

    /// Adam's moments and the step, to resume from (`optimizer.safetensors` in `dir`).
    pub fn save_optimizer(&self, dir: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            named.push((format!("m.{i}"), m.shallow_clone()));
            named.push((format!("v.{i}"), v.shallow_clone()));
        }
        named.push(("step".into(), Tensor::f_from_slice(&[self.step as i64])?));
        Tensor::write_safetensors(&named, dir.join("optimizer.safetensors"))?;
        Ok(())
    }

    /// Restores what [`Self::save_optimizer`] wrote (the student's weights come with the model).
    pub fn load_optimizer(&mut self, dir: &Path) -> Result<()> {
        let t: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.join("optimizer.safetensors"))?.into_iter().collect();
        let get = |k: &str| t.get(k).ok_or_else(|| ModelError::MissingTensor(format!("optimizer {k}")));
        let _g = tch::no_grad_guard();
        for i in 0..self.m.len() {
            self.m[i].f_copy_(get(&format!("m.{i}"))?)?;
            self.v[i].f_copy_(get(&format!("v.{i}"))?)?;
        }
        self.step = get("step")?.int64_value(&[0]).max(0) as u64;
        Ok(())
    }
}

/// The share of positions where student and teacher put the same token first, and the
/// student's perplexity, over windows of held-out text.
pub fn evaluate(teacher: &Model, student: &Model, windows: &[Vec<u32>]) -> Result<(f64, f64)> {
    let _g = tch::no_grad_guard();
    let (mut agree, mut total, mut nll) = (0i64, 0i64, 0f64);
    for w in windows.iter().filter(|w| w.len() >= 2) {
        let t = teacher.logits(w)?;
        let s = student.logits(w)?;
        let n = w.len() as i64 - 1;
        let (ta, sa) = (t.f_narrow(0, 0, n)?.f_argmax(-1, false)?, s.f_narrow(0, 0, n)?.f_argmax(-1, false)?);
        agree += ta.f_eq_tensor(&sa)?.f_sum(Kind::Int64)?.int64_value(&[]);
        total += n;
        let target: Vec<i64> = w[1..].iter().map(|&x| x as i64).collect();
        let target = Tensor::f_from_slice(&target)?;
        let lp = s.f_narrow(0, 0, n)?.f_log_softmax(-1, Kind::Float)?;
        nll -= lp.f_gather(1, &target.f_unsqueeze(1)?, false)?.f_sum(Kind::Float)?.double_value(&[]);
    }
    if total == 0 {
        return Err(ModelError::InvalidArgument("no evaluation windows".into()));
    }
    Ok((agree as f64 / total as f64, (nll / total as f64).exp()))
}

/// Writes the student's current weights as a Hugging Face directory.
pub fn save_student(student: &Model, out: &Path) -> Result<()> {
    let m = llama(student)?;
    let state: Vec<(String, Tensor)> =
        m.state_dict()?.into_iter().map(|(n, t)| Ok((n, t.f_detach()?))).collect::<Result<_>>()?;
    crate::squeeze::export::write_hf_dir(student, &m.cfg, &state, out)
}
