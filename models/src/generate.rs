//! Generation with a KV cache: greedy and sampling (temperature, top-k, top-p, seed,
//! repetition, frequency and presence penalties, logit bias), stop tokens and stop sequences,
//! max tokens, log-probabilities, a per-token streaming callback, and several prompts in one
//! left-padded batch.
//!
//! The logits of each step go through one fixed pipeline, the same on the miner and in a
//! validator's replay ([`plausible_token`]): logit bias, then the repetition penalty (prompt and
//! output), then the frequency and presence penalties (output only), then temperature; top-k and
//! top-p cut the candidates last. Log-probabilities are the log-softmax of the processed logits
//! divided by the temperature (of the processed logits themselves when greedy): the distribution
//! the token was actually drawn from, before top-k/top-p truncation.

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::grammar::{apply_mask, Grammar, Matcher, TokenTable};
use crate::model::Model;
use crate::prefix::PrefixCache;

/// Generation parameters. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub temperature: f32,
    /// Keep only the k most likely tokens (None or 0: off).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p (None or 1.0: off).
    pub top_p: Option<f32>,
    pub seed: u64,
    /// > 1 discourages tokens already in the prompt or the output (1.0: off), as in
    /// > transformers' `RepetitionPenaltyLogitsProcessor`.
    pub repetition_penalty: f32,
    /// Strings that end a generation; the text is cut before them.
    pub stop: Vec<String>,
    /// Keep going past the end-of-sequence token (benchmarks, reference comparisons).
    pub ignore_eos: bool,
    /// OpenAI's `frequency_penalty`: subtracted from a token's logit once per time it already
    /// appears in the output (0: off).
    pub frequency_penalty: f32,
    /// OpenAI's `presence_penalty`: subtracted once from the logit of every token already in the
    /// output (0: off).
    pub presence_penalty: f32,
    /// OpenAI's `logit_bias`: added to these tokens' logits before anything else (-100 in effect
    /// bans a token, 100 in effect forces it).
    pub logit_bias: Vec<(u32, f32)>,
    /// The last `prior_output` prompt tokens are the output of an earlier attempt (a task resumed
    /// on another miner): they count as output for the frequency and presence penalties.
    pub prior_output: usize,
    /// Report the log-probability of each chosen token and of the `n` most likely ones
    /// ([`TokenEvent::logprob`]); `None`: off.
    pub logprobs: Option<usize>,
    /// Constrain the output to this grammar (structured outputs): tokens it refuses are masked
    /// out before anything else, and once the value is complete only end-of-sequence remains.
    pub grammar: Option<std::sync::Arc<Grammar>>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            repetition_penalty: 1.0,
            stop: Vec::new(),
            ignore_eos: false,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
            prior_output: 0,
            logprobs: None,
            grammar: None,
        }
    }
}

/// At most this many alternatives per token in [`TokenLogprobs::top`] (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

impl GenerateConfig {
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerateConfig { max_new_tokens, ..Default::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidArgument(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("top_p must be in (0, 1], got {p}"));
            }
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return bad(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        for (name, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !v.is_finite() || !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be between -2 and 2, got {v}"));
            }
        }
        if let Some(&(t, b)) = self.logit_bias.iter().find(|(_, b)| !b.is_finite() || !(-100.0..=100.0).contains(b)) {
            return bad(format!("logit_bias for token {t} must be between -100 and 100, got {b}"));
        }
        if self.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return bad(format!("at most {MAX_TOP_LOGPROBS} top log-probabilities per token"));
        }
        Ok(())
    }

    /// Whether any step needs the tokens seen so far (penalties).
    fn needs_history(&self) -> bool {
        self.repetition_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop sequence appeared.
    StopSequence,
    /// `max_new_tokens` reached.
    Length,
    /// The context window is full.
    ContextFull,
    /// The callback asked to stop.
    Cancelled,
}

/// The log-probability of a chosen token and of the most likely alternatives at its step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    pub logprob: f32,
    /// The `n` most likely tokens, most likely first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

/// One streamed token.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    /// Which prompt of the batch.
    pub row: usize,
    pub token_id: u32,
    /// New text that became final with this token (may be empty: a partial UTF-8 character,
    /// or text held back because it could start a stop sequence).
    pub text: &'a str,
    /// Set when [`GenerateConfig::logprobs`] asks for it.
    pub logprob: Option<TokenLogprobs>,
}

/// The result for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt_tokens: usize,
    /// Generated token ids (an end-of-sequence token that ended the generation included).
    pub tokens: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
}

/// splitmix64: small, seedable, good enough for sampling.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the sampler chooses from for one row of logits: the greedy token, or candidates with
/// their (unnormalised after top-p) probabilities in descending order.
enum Choice {
    Greedy(u32),
    Sample { idx: Vec<u32>, probs: Vec<f64> },
}

/// The tokens a step has seen: the prompt, then the output so far. `output_from` is where the
/// output starts (earlier for a resumed task: see [`GenerateConfig::prior_output`]).
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub tokens: &'a [u32],
    pub output_from: usize,
}

impl<'a> History<'a> {
    pub const EMPTY: History<'static> = History { tokens: &[], output_from: 0 };

    pub fn new(tokens: &'a [u32], output_from: usize) -> Self {
        History { tokens, output_from: output_from.min(tokens.len()) }
    }
}

/// Applies logit bias and the penalties in place (the first steps of the pipeline).
pub fn process_logits(logits: &mut [f32], history: History<'_>, cfg: &GenerateConfig) {
    for &(t, b) in &cfg.logit_bias {
        if let Some(l) = logits.get_mut(t as usize) {
            *l += b;
        }
    }
    if cfg.repetition_penalty != 1.0 {
        let mut seen = history.tokens.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &t in &seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / cfg.repetition_penalty } else { *l * cfg.repetition_penalty };
            }
        }
    }
    if cfg.frequency_penalty != 0.0 || cfg.presence_penalty != 0.0 {
        let mut out = history.tokens[history.output_from..].to_vec();
        out.sort_unstable();
        for run in out.chunk_by(|a, b| a == b) {
            if let Some(l) = logits.get_mut(run[0] as usize) {
                *l -= cfg.frequency_penalty * run.len() as f32 + cfg.presence_penalty;
            }
        }
    }
}

/// Log-probabilities of `token` and of the `n` most likely tokens under the processed `logits`
/// at `temperature` (0: the logits as they are).
pub fn token_logprobs(logits: &[f32], temperature: f32, token: u32, n: usize) -> TokenLogprobs {
    let scale = if temperature > 0.0 { 1.0 / f64::from(temperature) } else { 1.0 };
    let max = logits.iter().copied().max_by(f32::total_cmp).unwrap_or(0.0);
    let lse = f64::from(max) * scale
        + logits.iter().map(|&l| ((f64::from(l) - f64::from(max)) * scale).exp()).sum::<f64>().ln();
    let lp = |i: u32| logits.get(i as usize).map_or(f32::NEG_INFINITY, |&l| (f64::from(l) * scale - lse) as f32);
    let n = n.min(logits.len());
    let mut top = Vec::with_capacity(n);
    if n > 0 {
        let order = |&a: &u32, &b: &u32| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b));
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.select_nth_unstable_by(n - 1, order);
        idx.truncate(n);
        idx.sort_unstable_by(order);
        top = idx.into_iter().map(|i| (i, lp(i))).collect();
    }
    TokenLogprobs { logprob: lp(token), top }
}

fn choice(logits: &mut [f32], history: History<'_>, cfg: &GenerateConfig) -> Choice {
    process_logits(logits, history, cfg);
    if cfg.temperature == 0.0 || logits.is_empty() {
        return Choice::Greedy(argmax(logits));
    }
    let inv_t = 1.0 / cfg.temperature;
    let top_p = cfg.top_p.filter(|&p| p < 1.0).map(f64::from);
    match cfg.top_k.filter(|&k| k > 0 && k < logits.len()) {
        Some(k) => top_k_choice(logits, k, inv_t, top_p),
        None => nucleus_choice(logits, inv_t, top_p),
    }
}

fn desc(logits: &[f32]) -> impl Fn(&u32, &u32) -> std::cmp::Ordering + '_ {
    move |&a, &b| logits[b as usize].total_cmp(&logits[a as usize])
}

/// The smallest prefix whose cumulative probability reaches `p` (all of them when it never does).
fn cut_at(probs: &[f64], p: f64) -> Option<usize> {
    let mut acc = 0.0;
    for (i, &q) in probs.iter().enumerate() {
        acc += q;
        if acc >= p {
            return Some(i + 1);
        }
    }
    None
}

/// Top-k: the k largest logits sorted descending, softmax over them, then top-p on that.
fn top_k_choice(logits: &[f32], k: usize, inv_t: f32, top_p: Option<f64>) -> Choice {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.select_nth_unstable_by(k - 1, desc(logits));
    idx.truncate(k);
    idx.sort_unstable_by(desc(logits));
    let max = logits[idx[0] as usize];
    let mut probs: Vec<f64> = idx.iter().map(|&i| (((logits[i as usize] - max) * inv_t) as f64).exp()).collect();
    let sum: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= sum);
    if let Some(keep) = top_p.and_then(|p| cut_at(&probs, p)) {
        probs.truncate(keep);
        idx.truncate(keep);
    }
    Choice::Sample { idx, probs }
}

/// Softmax over the whole vocabulary. Without top-p every token is a candidate, in vocabulary
/// order (no sort: the order does not change the distribution, and the replay uses the same
/// one). With top-p the nucleus is found from a partial sort: the largest 256 logits sorted,
/// widened (×8) only when they hold less than `p` of the mass, instead of sorting all ~49k.
fn nucleus_choice(logits: &[f32], inv_t: f32, top_p: Option<f64>) -> Choice {
    let max = logits.iter().copied().max_by(f32::total_cmp).unwrap_or(0.0);
    let weight = |l: f32| (((l - max) * inv_t) as f64).exp();
    let sum: f64 = logits.iter().map(|&l| weight(l)).sum();
    let Some(p) = top_p else {
        return Choice::Sample {
            idx: (0..logits.len() as u32).collect(),
            probs: logits.iter().map(|&l| weight(l) / sum).collect(),
        };
    };
    let n = logits.len();
    let mut m = 256.min(n);
    loop {
        let mut idx: Vec<u32> = (0..n as u32).collect();
        if m < n {
            idx.select_nth_unstable_by(m - 1, desc(logits));
            idx.truncate(m);
        }
        idx.sort_unstable_by(desc(logits));
        let mut probs: Vec<f64> = idx.iter().map(|&i| weight(logits[i as usize]) / sum).collect();
        match cut_at(&probs, p) {
            Some(keep) => {
                idx.truncate(keep);
                probs.truncate(keep);
                return Choice::Sample { idx, probs };
            }
            None if m == n => return Choice::Sample { idx, probs },
            None => m = (m * 8).min(n),
        }
    }
}

/// Picks the next token from one row of logits (processed in place: [`process_logits`]).
pub fn pick_token(logits: &mut [f32], history: History<'_>, cfg: &GenerateConfig, rng: &mut Rng) -> u32 {
    match choice(logits, history, cfg) {
        Choice::Greedy(t) => t,
        Choice::Sample { idx, probs } => {
            let total: f64 = probs.iter().sum();
            let mut r = rng.next_f64() * total;
            for (i, &q) in probs.iter().enumerate() {
                r -= q;
                if r < 0.0 {
                    return idx[i];
                }
            }
            idx[probs.len() - 1]
        }
    }
}

/// Replays [`pick_token`] on recomputed logits (consuming `rng` exactly as it does) and says
/// whether `token` is what it would pick, up to numerical noise: for greedy decoding the token's
/// logit must be within `slack` of the largest (logits, after the repetition penalty); for
/// sampling, the draw must fall within `slack` (a probability) of the token's interval of the
/// cumulative distribution. A token outside top-k/top-p, or far from the draw, is implausible.
pub fn plausible_token(
    logits: &mut [f32],
    history: History<'_>,
    cfg: &GenerateConfig,
    rng: &mut Rng,
    token: u32,
    slack: f64,
) -> bool {
    match choice(logits, history, cfg) {
        Choice::Greedy(best) => {
            let (Some(&b), Some(&t)) = (logits.get(best as usize), logits.get(token as usize)) else { return false };
            (b - t) as f64 <= slack
        }
        Choice::Sample { idx, probs } => {
            let total: f64 = probs.iter().sum();
            let r = rng.next_f64() * total;
            let Some(pos) = idx.iter().position(|&i| i == token) else { return false };
            let lo: f64 = probs[..pos].iter().sum();
            let hi = lo + probs[pos];
            r >= lo - slack * total && r < hi + slack * total
        }
    }
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// Per-row state of a running generation.
struct Row<'a> {
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    /// Final text (stop sequences removed).
    text: String,
    /// Bytes of `text` already handed to the callback.
    emitted: usize,
    finish: Option<FinishReason>,
    rng: Rng,
    /// Where the output stands in the grammar (structured outputs).
    matcher: Option<Matcher<'a>>,
}

impl Model {
    /// Generates for one text prompt (`chat`: wrap it in the model's chat template).
    pub fn generate_text(
        &self,
        prompt: &str,
        chat: bool,
        cfg: &GenerateConfig,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Generation> {
        let text = if chat { self.tokenizer.chat_prompt(prompt)? } else { prompt.to_string() };
        let ids = self.tokenizer.encode(&text)?;
        let mut out = self.generate(&[ids], cfg, on_token)?;
        out.pop().ok_or_else(|| ModelError::InvalidArgument("no prompt".into()))
    }

    /// Generates for a batch of tokenized prompts at once. `on_token` sees every token as it is
    /// chosen; returning false stops the whole batch.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        cfg: &GenerateConfig,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<Vec<Generation>> {
        self.generate_inner(prompts, cfg, on_token, None, None).map(|(g, _)| g)
    }

    /// Generates for one prompt, reusing the keys/values of the longest prefix it shares with
    /// a prompt in `prefix` and storing its own afterwards. Returns the generation and the
    /// number of prompt tokens whose prefill was skipped.
    pub fn generate_with_prefix_cache(
        &self,
        prompt: &[u32],
        cfg: &GenerateConfig,
        prefix: &mut PrefixCache,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<(Generation, usize)> {
        let (mut g, reused) = self.generate_inner(&[prompt.to_vec()], cfg, on_token, Some(prefix), None)?;
        let g = g.pop().ok_or_else(|| ModelError::InvalidArgument("no prompt".into()))?;
        Ok((g, reused))
    }

    /// [`Self::generate_with_prefix_cache`] that also records what a proof of inference commits
    /// to: the last hidden state (after the final norm, bf16, CPU) of the prefill — every prompt
    /// position, `[P, H]` — and then of each decode step, `[1, H]` (the final generated token is
    /// never fed back, so `tokens.len() - 1` decode entries).
    pub fn generate_with_activations(
        &self,
        prompt: &[u32],
        cfg: &GenerateConfig,
        prefix: &mut PrefixCache,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
    ) -> Result<(Generation, usize, Vec<Tensor>)> {
        let mut acts = Vec::new();
        let (mut g, reused) = self.generate_inner(&[prompt.to_vec()], cfg, on_token, Some(prefix), Some(&mut acts))?;
        let g = g.pop().ok_or_else(|| ModelError::InvalidArgument("no prompt".into()))?;
        Ok((g, reused, acts))
    }

    /// One forward pass over `ids` without a cache (a validator's re-check): the last hidden
    /// state of every position `[T, H]` (bf16, CPU) and the logits `[T - from, V]` (f32, CPU) of
    /// the positions from `from` on (the output head runs only there).
    pub fn hidden_and_logits(&self, ids: &[u32], from: usize) -> Result<(Tensor, Tensor)> {
        self.check_prompt(ids.len())?;
        let _guard = tch::no_grad_guard();
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let x = Tensor::f_from_slice(&ids)?.f_to_device(self.net.device())?.unsqueeze(0);
        let (logits, hidden) = self.net.forward_hidden_from(&x, from.min(ids.len().saturating_sub(1)) as i64)?;
        Ok((
            hidden.f_squeeze_dim(0)?.f_to_kind(Kind::BFloat16)?.f_to_device(Device::Cpu)?,
            logits.f_squeeze_dim(0)?.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?,
        ))
    }

    fn generate_inner(
        &self,
        prompts: &[Vec<u32>],
        cfg: &GenerateConfig,
        on_token: &mut dyn FnMut(&TokenEvent) -> bool,
        mut prefix: Option<&mut PrefixCache>,
        mut capture: Option<&mut Vec<Tensor>>,
    ) -> Result<(Vec<Generation>, usize)> {
        cfg.validate()?;
        if capture.is_some() && prompts.len() != 1 {
            return Err(ModelError::InvalidArgument("activations are recorded for one prompt at a time".into()));
        }
        if prompts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        for p in prompts {
            self.check_prompt(p.len())?;
        }
        let _guard = tch::no_grad_guard();
        let device = self.net.device();
        let context = self.net.context_length();
        let max_prompt = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let capacity = (max_prompt + cfg.max_new_tokens).min(context);
        let pad_id = self.tokenizer.eos_id.unwrap_or(0) as i64;
        let pads: Vec<usize> = prompts.iter().map(|p| max_prompt - p.len()).collect();
        let mut rows: Vec<Row> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| Row {
                prompt: p.clone(),
                tokens: Vec::new(),
                text: String::new(),
                emitted: 0,
                finish: None,
                rng: Rng::new(cfg.seed.wrapping_add(i as u64)),
                matcher: cfg.grammar.as_deref().map(Matcher::new),
            })
            .collect();
        if cfg.max_new_tokens == 0 {
            return Ok((finish_all(rows, FinishReason::Length), 0));
        }
        let mut cache = self.net.new_cache(pads.clone(), capacity)?;
        let mut input: Vec<i64> = Vec::with_capacity(prompts.len() * max_prompt);
        for (p, &pad) in prompts.iter().zip(&pads) {
            input.extend(std::iter::repeat_n(pad_id, pad));
            input.extend(p.iter().map(|&t| t as i64));
        }
        let b = prompts.len() as i64;
        let mut ids = Tensor::f_from_slice(&input)?.f_view([b, max_prompt as i64])?.f_to_device(device)?;
        // Prefix cache (single prompt): skip the prefill of the positions it already holds.
        let mut prefix = if prompts.len() == 1 { prefix.take() } else { None };
        let mut reused = 0;
        let mut reused_hidden: Option<Tensor> = None;
        if let Some(pc) = prefix.as_deref_mut() {
            (reused, reused_hidden) = pc.restore(&prompts[0], &mut cache, capture.is_some())?;
            if reused > 0 {
                ids = ids.f_narrow(1, reused as i64, (max_prompt - reused) as i64)?;
            }
        }
        let mut prefilled = false;
        let vocab = self.net.vocab_size();
        let table = if cfg.grammar.is_some() { self.tokenizer.token_table() } else { Default::default() };
        let max_stop = cfg.stop.iter().map(String::len).max().unwrap_or(0);
        loop {
            let (logits, hidden) = match capture.as_deref_mut() {
                Some(acts) => {
                    let (l, h) = self.net.forward_hidden(&ids, Some(&mut cache), true)?;
                    let mut h = h.f_squeeze_dim(0)?.f_to_kind(Kind::BFloat16)?.f_to_device(Device::Cpu)?;
                    if let Some(r) = reused_hidden.take() {
                        h = Tensor::f_cat(&[r, h], 0)?;
                    }
                    acts.push(h.shallow_clone());
                    (l, Some(h))
                }
                None => (self.net.forward(&ids, Some(&mut cache), true)?, None),
            };
            if !prefilled {
                prefilled = true;
                if let Some(pc) = prefix.as_deref_mut() {
                    pc.store(&prompts[0], &cache, hidden.as_ref())?;
                }
            }
            let logits = logits.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_reshape([b, -1])?;
            let mut flat = Vec::<f32>::try_from(&logits.f_contiguous()?.f_view([-1])?)?;
            let width = flat.len() / prompts.len();
            let mut next = Vec::with_capacity(prompts.len());
            let mut cancelled = false;
            for (r, row) in rows.iter_mut().enumerate() {
                if row.finish.is_some() {
                    next.push(pad_id);
                    continue;
                }
                let slice = &mut flat[r * width..(r * width + width.min(vocab))];
                let seen: Vec<u32> = if cfg.needs_history() {
                    row.prompt.iter().chain(&row.tokens).copied().collect()
                } else {
                    Vec::new()
                };
                let history = History::new(&seen, row.prompt.len().saturating_sub(cfg.prior_output));
                if let Some(m) = &row.matcher {
                    constrain(m, &table, &self.tokenizer.stop_ids, slice);
                }
                let tok = pick_token(slice, history, cfg, &mut row.rng);
                if let Some(m) = row.matcher.as_mut() {
                    if !self.tokenizer.stop_ids.contains(&tok) {
                        m.feed_all(table.bytes(tok));
                    }
                }
                // The processed logits (pick_token left them so): what the token was drawn from.
                let logprob = cfg.logprobs.map(|n| token_logprobs(slice, cfg.temperature, tok, n));
                row.tokens.push(tok);
                next.push(tok as i64);
                let is_eos = !cfg.ignore_eos && self.tokenizer.stop_ids.contains(&tok);
                let mut delta_end = row.emitted;
                if is_eos {
                    row.finish = Some(FinishReason::Eos);
                    delta_end = row.text.len();
                } else {
                    let decoded = self.tokenizer.decode(&row.tokens, true)?;
                    if !decoded.ends_with('\u{FFFD}') {
                        row.text = decoded;
                        // Stop sequences: search only the region new text could complete.
                        let from = floor_char_boundary(&row.text, row.emitted.saturating_sub(max_stop));
                        if let Some(pos) = cfg
                            .stop
                            .iter()
                            .filter(|s| !s.is_empty())
                            .filter_map(|s| row.text[from..].find(s.as_str()).map(|i| from + i))
                            .min()
                        {
                            row.text.truncate(pos);
                            row.finish = Some(FinishReason::StopSequence);
                            delta_end = pos;
                        } else {
                            delta_end = row.text.len() - held_back(&row.text, &cfg.stop);
                        }
                    }
                }
                if row.finish.is_none() && row.tokens.len() >= cfg.max_new_tokens {
                    row.finish = Some(FinishReason::Length);
                }
                if row.finish.is_none() && row.prompt.len() + row.tokens.len() >= context {
                    row.finish = Some(FinishReason::ContextFull);
                }
                if row.finish.is_some() {
                    delta_end = row.text.len();
                }
                let delta_end = delta_end.max(row.emitted);
                let delta = row.text.get(row.emitted..delta_end).unwrap_or("");
                let ev = TokenEvent { row: r, token_id: tok, text: delta, logprob };
                if !on_token(&ev) {
                    cancelled = true;
                }
                row.emitted = delta_end;
            }
            if cancelled {
                for row in rows.iter_mut().filter(|r| r.finish.is_none()) {
                    row.finish = Some(FinishReason::Cancelled);
                }
            }
            if rows.iter().all(|r| r.finish.is_some()) || cache.len() >= cache.capacity() {
                break;
            }
            ids = Tensor::f_from_slice(&next)?.f_view([b, 1])?.f_to_device(device)?;
        }
        Ok((finish_all(rows, FinishReason::ContextFull), reused))
    }
}

/// Masks `logits` to what the grammar allows next; where it allows nothing the vocabulary can
/// spell, the generation may only end.
pub fn constrain(m: &Matcher<'_>, table: &TokenTable, stop_ids: &[u32], logits: &mut [f32]) {
    if apply_mask(m, table, stop_ids, logits) == 0 {
        for &s in stop_ids {
            if let Some(l) = logits.get_mut(s as usize) {
                *l = 0.0;
            }
        }
    }
}

fn finish_all(rows: Vec<Row<'_>>, default: FinishReason) -> Vec<Generation> {
    rows.into_iter()
        .map(|r| Generation {
            prompt_tokens: r.prompt.len(),
            tokens: r.tokens,
            text: r.text,
            finish: r.finish.unwrap_or(default),
        })
        .collect()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Bytes at the end of `text` that could be the start of a stop sequence (not yet emitted).
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut hold = 0;
    for s in stops {
        for n in (1..s.len()).rev() {
            if n <= text.len() && n > hold && s.is_char_boundary(n) && text.ends_with(&s[..n]) {
                hold = n;
                break;
            }
        }
    }
    hold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(t: f32) -> GenerateConfig {
        GenerateConfig { temperature: t, ..Default::default() }
    }

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut l = vec![0.1, 3.0, -2.0, 2.9];
        assert_eq!(pick_token(&mut l, History::EMPTY, &cfg(0.0), &mut Rng::new(0)), 1);
    }

    #[test]
    fn repetition_penalty_can_change_the_greedy_choice() {
        let c = GenerateConfig { repetition_penalty: 2.0, ..cfg(0.0) };
        let mut l = vec![0.1, 3.0, -2.0, 2.0];
        assert_eq!(pick_token(&mut l, History::new(&[1], 0), &c, &mut Rng::new(0)), 3);
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_seed() {
        let c = GenerateConfig { top_k: Some(1), ..cfg(1.5) };
        for seed in 0..50 {
            let mut l = vec![0.5, 1.0, 0.9, 0.2];
            assert_eq!(pick_token(&mut l, History::EMPTY, &c, &mut Rng::new(seed)), 1);
        }
    }

    #[test]
    fn top_p_excludes_the_unlikely_tail() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: p = 0.8 keeps the first two only
        let c = GenerateConfig { top_p: Some(0.8), ..cfg(1.0) };
        let base = [3.0f32, 2.0, 1.0, 0.0];
        let mut counts = [0usize; 4];
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let mut l = base.to_vec();
            counts[pick_token(&mut l, History::EMPTY, &c, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0);
        assert!(counts[0] > counts[1] && counts[1] > 0, "{counts:?}");
    }

    #[test]
    fn sampling_follows_the_softmax_distribution() {
        let base = [1.0f32, 0.0, -1.0];
        let z: f64 = base.iter().map(|&x| (x as f64).exp()).sum();
        let mut counts = [0f64; 3];
        let mut rng = Rng::new(42);
        let n = 20000;
        for _ in 0..n {
            let mut l = base.to_vec();
            counts[pick_token(&mut l, History::EMPTY, &cfg(1.0), &mut rng) as usize] += 1.0;
        }
        for i in 0..3 {
            let expected = (base[i] as f64).exp() / z;
            assert!((counts[i] / n as f64 - expected).abs() < 0.02, "{i}: {counts:?}");
        }
    }

    #[test]
    fn same_seed_same_samples_and_different_seed_different_samples() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..32)
                .map(|_| {
                    let mut l = vec![0.0f32; 50];
                    pick_token(&mut l, History::EMPTY, &cfg(1.0), &mut rng)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn the_partial_sort_nucleus_is_the_full_sort_nucleus() {
        // A vocabulary-sized row; the reference sorts all of it.
        let mut rng = Rng::new(3);
        for (t, p) in [(1.0f32, 0.95f32), (0.7, 0.5), (2.5, 0.999), (1.0, 0.01)] {
            // Distinct logits in [-6, 6), shuffled (ties would make any order a right answer).
            let mut l: Vec<f32> = (0..49_152).map(|i| i as f32 * (12.0 / 49_152.0) - 6.0).collect();
            for i in (1..l.len()).rev() {
                l.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let c = GenerateConfig { top_p: Some(p), ..cfg(t) };
            let Choice::Sample { idx, probs } = choice(&mut l.clone(), History::EMPTY, &c) else { panic!("sampling") };
            let mut all: Vec<u32> = (0..l.len() as u32).collect();
            all.sort_unstable_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]));
            let max = l[all[0] as usize];
            let w: Vec<f64> = all.iter().map(|&i| (((l[i as usize] - max) * (1.0 / t)) as f64).exp()).collect();
            let z: f64 = w.iter().sum();
            let mut acc = 0.0;
            let keep = w.iter().position(|q| {
                acc += q / z;
                acc >= p as f64
            });
            let keep = keep.map_or(all.len(), |k| k + 1);
            assert_eq!(idx.len(), keep, "t={t} p={p}");
            assert!(idx == all[..keep], "t={t} p={p}: the nucleus differs from the full sort's");
            assert!((probs.iter().sum::<f64>() - w[..keep].iter().sum::<f64>() / z).abs() < 1e-9);
        }
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(cfg(-1.0).validate().is_err());
        assert!(GenerateConfig { top_p: Some(0.0), ..cfg(1.0) }.validate().is_err());
        assert!(GenerateConfig { repetition_penalty: 0.0, ..cfg(1.0) }.validate().is_err());
        assert!(GenerateConfig { frequency_penalty: 2.5, ..cfg(1.0) }.validate().is_err());
        assert!(GenerateConfig { presence_penalty: f32::NAN, ..cfg(1.0) }.validate().is_err());
        assert!(GenerateConfig { logit_bias: vec![(3, 101.0)], ..cfg(1.0) }.validate().is_err());
        assert!(GenerateConfig { logprobs: Some(21), ..cfg(1.0) }.validate().is_err());
        assert!(GenerateConfig { logprobs: Some(20), logit_bias: vec![(3, -100.0)], ..cfg(1.0) }.validate().is_ok());
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let mut l = vec![0.1, 3.0, -2.0, 2.9];
        let ban = GenerateConfig { logit_bias: vec![(1, -100.0)], ..cfg(0.0) };
        assert_eq!(pick_token(&mut l, History::EMPTY, &ban, &mut Rng::new(0)), 3);
        let force = GenerateConfig { logit_bias: vec![(2, 100.0)], ..cfg(1.0) };
        for seed in 0..20 {
            let mut l = vec![0.1, 3.0, -2.0, 2.9];
            assert_eq!(pick_token(&mut l, History::EMPTY, &force, &mut Rng::new(seed)), 2);
        }
    }

    #[test]
    fn frequency_and_presence_penalties_count_output_tokens_only() {
        // Prompt [1, 1, 1], output [3, 3]: token 1 is not penalised, token 3 is, by
        // 2 × frequency + presence (OpenAI's formula).
        let c = GenerateConfig { frequency_penalty: 0.5, presence_penalty: 0.25, ..cfg(0.0) };
        let seen = [1, 1, 1, 3, 3];
        let mut l = vec![0.0, 1.0, 0.0, 2.0];
        process_logits(&mut l, History::new(&seen, 3), &c);
        assert_eq!(l, vec![0.0, 1.0, 0.0, 2.0 - 1.0 - 0.25]);
        // A resumed task: the earlier attempt's tokens (the prompt's tail) count as output.
        let mut l = vec![0.0, 1.0, 0.0, 2.0];
        process_logits(&mut l, History::new(&seen, 2), &c);
        assert_eq!(l, vec![0.0, 1.0 - 0.5 - 0.25, 0.0, 2.0 - 1.0 - 0.25]);
        // Negative penalties encourage repetition.
        let c = GenerateConfig { presence_penalty: -2.0, ..cfg(0.0) };
        let mut l = vec![0.0, 1.0, 0.0, 2.0];
        assert_eq!(pick_token(&mut l, History::new(&[0, 2], 1), &c, &mut Rng::new(0)), 2);
    }

    #[test]
    fn logprobs_are_the_log_softmax_at_the_sampling_temperature() {
        let l = [1.0f32, 3.0, -2.0, 2.9];
        for t in [0.0f32, 0.5, 1.0, 1.7] {
            let s = if t > 0.0 { 1.0 / t as f64 } else { 1.0 };
            let z: f64 = l.iter().map(|&x| (x as f64 * s).exp()).sum();
            let want = |i: usize| (l[i] as f64 * s - z.ln()) as f32;
            let lp = token_logprobs(&l, t, 0, 3);
            assert!((lp.logprob - want(0)).abs() < 1e-6, "t={t}");
            assert_eq!(lp.top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 3, 0], "t={t}");
            for &(i, v) in &lp.top {
                assert!((v - want(i as usize)).abs() < 1e-6);
            }
            let total: f64 = (0..4).map(|i| (want(i) as f64).exp()).sum();
            assert!((total - 1.0).abs() < 1e-6);
        }
        assert!(token_logprobs(&l, 1.0, 9, 0).logprob.is_infinite());
        assert!(token_logprobs(&l, 1.0, 0, 0).top.is_empty());
    }

    #[test]
    fn text_that_may_start_a_stop_sequence_is_held_back() {
        let stops = vec!["\nUser:".to_string()];
        assert_eq!(held_back("hello\nUs", &stops), 3);
        assert_eq!(held_back("hello", &stops), 0);
    }
}
