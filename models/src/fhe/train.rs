//! Quantization-aware training (whitepaper §7.2.2) of the encrypted head, in plaintext with tch
//! autograd, and its export to the integer head the miner evaluates.
//!
//! The float model sees exactly what the miner will see: the client's 4-bit codes k (§5.1).
//!
//! ```text
//! a   = W1q·(k − 7.5) + b1          W1q = per-row int8 fake-quantized W1 (straight-through)
//! h   = clamp(round(a / s_h), 0, 15) 4-bit activation, learned step s_h (straight-through)
//! y   = W2q·h + round(b2)           W2q integer in [−w2_max, w2_max] (straight-through)
//! loss = cross-entropy(τ·y)          τ a learned temperature (does not change the argmax)
//! ```
//!
//! Export: z = W1_int·k is what layer 1 computes on ciphertexts. Each neuron's activation as a
//! function of z is monotone, so it is stored as the accumulator positions where it steps up;
//! the window (B) and the per-neuron offsets come from the training set's z range with
//! headroom. The logit encoding Δh is chosen from the logit range and the measured bootstrap
//! noise so that the margin is at least `min_margin_sigma`.

use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::head::{HeadSpec, QuantizedHead};
use super::params::FheParams;
use super::quantize::DynamicQuantizer;
use super::FheError;

#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub params: FheParams,
    pub hidden: usize,
    pub act_levels: u32,
    pub w2_max: i32,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// dropout on the centred input codes during training
    pub dropout: f64,
    pub seed: i64,
    /// window = calibrated z span × headroom
    pub window_headroom: f64,
    /// logit encoding: calibrated logit range × headroom (capped by the worst case)
    pub logit_headroom: f64,
    pub min_margin_sigma: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            params: FheParams::M2C3Gaussian,
            hidden: 128,
            act_levels: 16,
            w2_max: 7,
            epochs: 40,
            batch: 128,
            lr: 2e-3,
            weight_decay: 0.05,
            dropout: 0.3,
            seed: 7,
            window_headroom: 1.5,
            logit_headroom: 4.0,
            min_margin_sigma: 6.0,
        }
    }
}

/// What training and export measured.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub train_samples: usize,
    pub test_samples: usize,
    /// QAT float model (fake-quantized) accuracy
    pub qat_train_accuracy: f64,
    pub qat_test_accuracy: f64,
    /// exported integer head, noise-free reference (what a noise-free encrypted run gives)
    pub int_test_accuracy: f64,
    /// integer head with simulated modulus-switch noise at every bootstrap (what an encrypted
    /// run is expected to give), averaged over several draws
    pub simulated_encrypted_test_accuracy: f64,
    /// fraction of activations the simulated noise moved by one step
    pub simulated_activation_off_by_one: f64,
    pub window_log2: u32,
    pub logit_delta_log2: u32,
    pub test_out_of_window: usize,
    pub calibrated_logit_range: (i64, i64),
    pub worst_case_logit_range: (i64, i64),
    pub logit_range_guaranteed: bool,
    /// (Δh/2) / (σ_pbs·max‖W2_c‖), with σ_pbs the parameter set's measured bootstrap noise
    pub logit_margin_sigma: f64,
    pub seconds: f64,
}

fn ste_round(x: &Tensor) -> Tensor {
    x + (x.round() - x).detach()
}

struct Model {
    w1: Tensor,
    b1: Tensor,
    log_sh: Tensor,
    w2: Tensor,
    b2: Tensor,
    log_tau: Tensor,
    levels: f64,
    w2_max: f64,
}

impl Model {
    fn w1_scale(&self) -> Tensor {
        (self.w1.abs().amax([1i64].as_slice(), true) / 127.0).clamp_min(1e-8).detach()
    }
    fn w1q(&self) -> Tensor {
        let s = self.w1_scale();
        ste_round(&(&self.w1 / &s)).clamp(-127.0, 127.0) * s
    }
    fn w2_scale(&self) -> Tensor {
        (self.w2.abs().max() / self.w2_max).clamp_min(1e-8).detach()
    }
    fn w2_int(&self) -> Tensor {
        ste_round(&(&self.w2 / self.w2_scale())).clamp(-self.w2_max, self.w2_max)
    }
    fn pre(&self, x: &Tensor) -> Tensor {
        (x - 7.5).matmul(&self.w1q().tr()) + &self.b1
    }
    fn pre_train(&self, x: &Tensor, dropout: f64) -> Tensor {
        (x - 7.5).dropout(dropout, true).matmul(&self.w1q().tr()) + &self.b1
    }
    fn hidden_from_pre(&self, a: Tensor) -> Tensor {
        ste_round(&(a / self.log_sh.exp())).clamp(0.0, self.levels - 1.0)
    }
    fn logits_train(&self, x: &Tensor, dropout: f64) -> Tensor {
        self.hidden_from_pre(self.pre_train(x, dropout)).matmul(&self.w2_int().tr()) + ste_round(&self.b2)
    }
    fn hidden(&self, x: &Tensor) -> Tensor {
        let a = self.pre(x);
        ste_round(&(a / self.log_sh.exp())).clamp(0.0, self.levels - 1.0)
    }
    fn logits_int(&self, x: &Tensor) -> Tensor {
        self.hidden(x).matmul(&self.w2_int().tr()) + ste_round(&self.b2)
    }
}

fn to_tensor(codes: &[Vec<u8>], dim: usize) -> Result<Tensor, FheError> {
    let mut flat = Vec::with_capacity(codes.len() * dim);
    for c in codes {
        if c.len() != dim {
            return Err(FheError::Dimension { what: "training codes", expected: dim, got: c.len() });
        }
        flat.extend(c.iter().map(|&v| v as f32));
    }
    Ok(Tensor::from_slice(&flat).view([codes.len() as i64, dim as i64]))
}

fn accuracy(logits: &Tensor, y: &Tensor) -> f64 {
    logits.argmax(-1, false).eq_tensor(y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

/// Trains a head on quantized codes and exports it. `classes` names the labels 0..C.
#[allow(clippy::too_many_arguments)]
pub fn train_head(
    train_codes: &[Vec<u8>],
    train_labels: &[usize],
    test_codes: &[Vec<u8>],
    test_labels: &[usize],
    classes: &[String],
    quantizer: DynamicQuantizer,
    cfg: &TrainConfig,
    notes: serde_json::Value,
) -> Result<(QuantizedHead, TrainReport), FheError> {
    let started = std::time::Instant::now();
    let dim = train_codes.first().map(Vec::len).ok_or_else(|| FheError::Training("no training data".into()))?;
    if train_codes.len() != train_labels.len() || test_codes.len() != test_labels.len() {
        return Err(FheError::Training("codes and labels differ in length".into()));
    }
    if train_labels.iter().chain(test_labels).any(|&l| l >= classes.len()) {
        return Err(FheError::Training("label outside the classes".into()));
    }
    tch::manual_seed(cfg.seed);
    let x = to_tensor(train_codes, dim)?;
    let y = Tensor::from_slice(&train_labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let xt = to_tensor(test_codes, dim)?;
    let yt = Tensor::from_slice(&test_labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let (h, c) = (cfg.hidden as i64, classes.len() as i64);

    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let model = Model {
        w1: root.var("w1", &[h, dim as i64], nn::Init::Randn { mean: 0.0, stdev: (1.0 / (dim as f64 * 21.0)).sqrt() }),
        b1: root.var("b1", &[h], nn::Init::Const(0.0)),
        log_sh: root.var("log_sh", &[1], nn::Init::Const(0.0)),
        w2: root.var("w2", &[c, h], nn::Init::Randn { mean: 0.0, stdev: 1.0 }),
        b2: root.var("b2", &[c], nn::Init::Const(0.0)),
        log_tau: root.var("log_tau", &[1], nn::Init::Const((0.05f64).ln())),
        levels: cfg.act_levels as f64,
        w2_max: cfg.w2_max as f64,
    };
    // start the activation step so that 15 steps cover about 3σ of the pre-activations
    tch::no_grad(|| {
        let a = model.pre(&x);
        let sh = (a.std(true).double_value(&[]) * 3.0 / (cfg.act_levels as f64 - 1.0)).max(1e-6);
        let _ = model.log_sh.shallow_clone().fill_(sh.ln());
    });
    let mut opt = nn::AdamW::default().wd(cfg.weight_decay).build(&vs, cfg.lr)?;
    let n = x.size()[0];
    for epoch in 0..cfg.epochs {
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / cfg.epochs as f64).cos());
        opt.set_lr(lr);
        let mut start = 0;
        while start < n {
            let end = (start + cfg.batch as i64).min(n);
            let idx = perm.narrow(0, start, end - start);
            let xb = x.index_select(0, &idx);
            let yb = y.index_select(0, &idx);
            let logits = model.logits_train(&xb, cfg.dropout) * model.log_tau.exp();
            let loss = logits.cross_entropy_for_logits(&yb);
            opt.backward_step(&loss);
            start = end;
        }
    }
    let (qat_train_accuracy, qat_test_accuracy) =
        tch::no_grad(|| (accuracy(&model.logits_int(&x), &y), accuracy(&model.logits_int(&xt), &yt)));

    // ---- export ----
    let params = cfg.params;
    let log_n = params.log2_polynomial_size();
    let npos = params.polynomial_size() as i64;
    let (w1_int, w1_scale, b1, sh, w2_int, b2) = tch::no_grad(|| -> Result<_, FheError> {
        let s = model.w1_scale();
        let w1i = (&model.w1 / &s).round().clamp(-127.0, 127.0);
        Ok((
            Vec::<f32>::try_from(w1i.reshape([-1]))?.into_iter().map(|v| v as i8).collect::<Vec<i8>>(),
            Vec::<f32>::try_from(s.reshape([-1]))?.into_iter().map(f64::from).collect::<Vec<f64>>(),
            Vec::<f32>::try_from(model.b1.reshape([-1]))?.into_iter().map(f64::from).collect::<Vec<f64>>(),
            model.log_sh.exp().double_value(&[0]),
            Vec::<f32>::try_from(model.w2_int().reshape([-1]))?.into_iter().map(|v| v as i8).collect::<Vec<i8>>(),
            Vec::<f32>::try_from(model.b2.round().reshape([-1]))?.into_iter().map(|v| v as i64).collect::<Vec<i64>>(),
        ))
    })?;
    let hd = cfg.hidden;
    let z_of = |codes: &[u8], j: usize| -> i64 {
        w1_int[j * dim..(j + 1) * dim].iter().zip(codes).map(|(&w, &k)| w as i64 * k as i64).sum()
    };
    // window calibration on the training set
    let mut zmin = vec![i64::MAX; hd];
    let mut zmax = vec![i64::MIN; hd];
    for codes in train_codes {
        for j in 0..hd {
            let z = z_of(codes, j);
            zmin[j] = zmin[j].min(z);
            zmax[j] = zmax[j].max(z);
        }
    }
    let span = (0..hd).map(|j| (zmax[j] - zmin[j]).max(1)).max().unwrap_or(1) as f64 * cfg.window_headroom;
    let window_log2 = (span.log2().ceil() as u32).max(log_n);
    let offset: Vec<i64> = (0..hd).map(|j| -((zmin[j] + zmax[j]) / 2)).collect();
    let g = (1i64 << (window_log2 - log_n)) as f64;
    let levels = cfg.act_levels as usize;
    let mut thresholds = Vec::with_capacity(hd * (levels - 1));
    for j in 0..hd {
        let sum_w: i64 = w1_int[j * dim..(j + 1) * dim].iter().map(|&w| w as i64).sum();
        for t in 1..levels {
            // a(z) = s_w·(z − 7.5·Σw) + b1 ≥ (t − 0.5)·s_h  ⇔  z ≥ zt
            let thr = if w1_scale[j] > 0.0 {
                let zt = ((t as f64 - 0.5) * sh - b1[j]) / w1_scale[j] + 7.5 * sum_w as f64;
                // position whose centre z_c(p) = (p − N/2)·g − o_j reaches zt
                ((zt + offset[j] as f64) / g + (npos / 2) as f64).ceil()
            } else if b1[j] >= (t as f64 - 0.5) * sh {
                0.0
            } else {
                npos as f64
            };
            thresholds.push(thr.clamp(-1.0, npos as f64 + 1.0) as i32);
        }
    }

    // logit encoding
    let mut head = QuantizedHead {
        spec: HeadSpec {
            format_version: 1,
            params: params.name().to_string(),
            input_dim: dim,
            hidden: hd,
            classes: classes.to_vec(),
            quantizer,
            act_levels: cfg.act_levels,
            window_log2,
            logit_delta_log2: 40, // set below
            w2_max: cfg.w2_max,
            notes,
        },
        w1: w1_int,
        offset,
        thresholds,
        w2: w2_int,
        b2,
    };
    let (wlo, whi) = head.logit_bounds();
    let mut clo = i64::MAX;
    let mut chi = i64::MIN;
    for codes in train_codes {
        let r = head.reference(codes)?;
        for &l in &r.logits {
            clo = clo.min(l);
            chi = chi.max(l);
        }
    }
    let bits_for = |lo: f64, hi: f64| -> u32 { (lo.abs().max(hi.abs() + 1.0).log2().ceil() as u32) + 1 };
    let sigma_log2 = params.pbs_output_noise_log2_std();
    let norm = head.max_w2_norm().max(1.0);
    let margin_for = |delta_log2: u32| 2f64.powi(delta_log2 as i32 - 1) / (2f64.powf(sigma_log2) * norm);
    let worst_bits = bits_for(wlo as f64, whi as f64);
    let (bits, guaranteed) = if margin_for(64 - worst_bits) >= cfg.min_margin_sigma {
        (worst_bits, true)
    } else {
        let cal = bits_for(clo as f64 * cfg.logit_headroom, chi as f64 * cfg.logit_headroom).min(worst_bits);
        (cal, cal == worst_bits)
    };
    head.spec.logit_delta_log2 = 64 - bits;
    let logit_margin_sigma = margin_for(head.spec.logit_delta_log2);
    head.validate()?;

    // accuracy of the exported head: noise-free and with simulated bootstrap-input noise
    let mut correct = 0usize;
    let mut out_of_window = 0usize;
    let mut refs = Vec::with_capacity(test_codes.len());
    for (codes, &label) in test_codes.iter().zip(test_labels) {
        let r = head.reference(codes)?;
        out_of_window += r.positions.iter().filter(|p| p.is_none()).count();
        if super::client::argmax(&r.logits) == label {
            correct += 1;
        }
        refs.push(r);
    }
    let int_test_accuracy = correct as f64 / test_codes.len().max(1) as f64;
    let sigma_pos = params.input_noise_std_positions();
    let mut rng = SplitMix(cfg.seed as u64 ^ 0xfeed);
    let draws = 5;
    let mut sim_correct = 0usize;
    let mut moved = 0usize;
    let mut total = 0usize;
    for _ in 0..draws {
        for (r, &label) in refs.iter().zip(test_labels) {
            let hidden: Vec<u8> = (0..hd)
                .map(|j| match r.positions[j] {
                    Some(p) => {
                        let q = (p as f64 + sigma_pos * rng.gauss()).round().clamp(0.0, npos as f64 - 1.0) as usize;
                        let v = head.activation_at(j, q);
                        total += 1;
                        if v != r.hidden[j] {
                            moved += 1;
                        }
                        v
                    }
                    None => 0,
                })
                .collect();
            if super::client::argmax(&head.logits_from_hidden(&hidden)) == label {
                sim_correct += 1;
            }
        }
    }
    let report = TrainReport {
        train_samples: train_codes.len(),
        test_samples: test_codes.len(),
        qat_train_accuracy,
        qat_test_accuracy,
        int_test_accuracy,
        simulated_encrypted_test_accuracy: sim_correct as f64 / (draws * test_codes.len()).max(1) as f64,
        simulated_activation_off_by_one: moved as f64 / total.max(1) as f64,
        window_log2,
        logit_delta_log2: head.spec.logit_delta_log2,
        test_out_of_window: out_of_window,
        calibrated_logit_range: (clo, chi),
        worst_case_logit_range: (wlo as i64, whi as i64),
        logit_range_guaranteed: guaranteed,
        logit_margin_sigma,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((head, report))
}

/// Small deterministic generator for the noise simulation.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn gauss(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
