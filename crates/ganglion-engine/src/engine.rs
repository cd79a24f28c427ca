//! The engine API validators and the server use: load a GGUF, generate (streamed, seeded)
//! and score (teacher-forced logprobs with top-k alternatives and ranks, shared-prefix reuse).
//!
//! Generation is a step machine ([`Generation`]) so one worker thread can interleave many
//! requests fairly; [`Engine::generate`] is the simple loop over it. Nothing here knows HTTP.

use std::ops::ControlFlow;
use std::path::Path;

use crate::distribution::{self, Family, Placement, Processing};
use crate::error::{EngineError, EngineResult};
use crate::model::{self, with_rows, KvCache, Llama, Logits};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Most top-k alternatives a caller may ask for per position.
pub const MAX_TOP_K: usize = 20;
/// Prompt tokens processed per step, so a long prompt cannot starve other requests.
pub const PREFILL_CHUNK: usize = 256;

/// A loaded model and its tokenizer.
#[derive(Debug)]
pub struct Engine {
    model: Llama,
    tokenizer: Tokenizer,
    /// [`Tokenizer::end_of_generation`], looked up once.
    end_of_generation: Vec<u32>,
    name: String,
}

/// The log-probability of one token at one position, with alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenScore {
    /// The token actually at this position.
    pub token: u32,
    /// Its natural-log probability under the model (raw logits, no sampling transforms).
    pub logprob: f32,
    /// 1-based rank of the token among the vocabulary (1 = most likely).
    pub rank: u32,
    /// The `top_k` most likely tokens with their logprobs, best first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

/// Scores of one completion.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredCompletion {
    /// One entry per completion token.
    pub tokens: Vec<TokenScore>,
}

impl ScoredCompletion {
    /// Sum of the token logprobs.
    pub fn total_logprob(&self) -> f64 {
        self.tokens.iter().map(|t| f64::from(t.logprob)).sum()
    }
}

/// Result of [`Engine::score`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreReport {
    /// Scores of prompt positions 1.. (position 0 has no context and no score).
    pub prompt: Vec<TokenScore>,
    /// One entry per completion, in input order.
    pub completions: Vec<ScoredCompletion>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller stopped it (client went away).
    Cancelled,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt tokens (at least one).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (at least one).
    pub max_tokens: usize,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// How many alternatives to report per generated token (0..=[`MAX_TOP_K`]).
    pub top_logprobs: usize,
    /// If set, score the prompt too with this many alternatives per position.
    pub prompt_logprobs: Option<usize>,
    /// Keep generating through EOS and end-of-turn tokens, to `max_tokens` (vLLM's and
    /// llama.cpp's `ignore_eos`: throughput benchmarks of a fixed length).
    pub ignore_eos: bool,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    /// The token with its logprob, rank and alternatives.
    pub score: TokenScore,
}

/// What one [`Generation::step`] produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutput {
    /// Tokens sampled this step (zero while the prompt is being processed).
    pub tokens: Vec<GeneratedToken>,
    /// Text that became final this step (held back while it could still be a stop string).
    pub text: String,
    /// Set when the generation is over.
    pub finish: Option<FinishReason>,
}

/// An in-progress generation; drive it with [`Generation::step`].
#[derive(Debug)]
pub struct Generation {
    req: GenerateRequest,
    cache: KvCache,
    sampler: Sampler,
    decoder: StreamDecoder,
    /// Prompt tokens not yet run through the model.
    prefilled: usize,
    /// Prompt plus generated tokens.
    history: Vec<u32>,
    generated: usize,
    /// Logits row that predicts the next token (after the prompt has been processed).
    next_logits: Option<Vec<f32>>,
    prompt_scores: Vec<TokenScore>,
    /// Generated text, and how much of it has been handed out.
    text: String,
    emitted: usize,
    finish: Option<FinishReason>,
}

impl Generation {
    /// Prompt scores (filled once the prompt has been processed, if requested).
    pub fn prompt_scores(&self) -> &[TokenScore] {
        &self.prompt_scores
    }

    /// Number of prompt tokens.
    pub fn prompt_tokens(&self) -> usize {
        self.req.prompt.len()
    }

    /// Number of tokens generated so far.
    pub fn completion_tokens(&self) -> usize {
        self.generated
    }

    /// Whether the whole prompt has been run through the model.
    pub fn prompt_processed(&self) -> bool {
        self.prefilled == self.req.prompt.len()
    }

    /// The request this generation serves.
    pub fn request(&self) -> &GenerateRequest {
        &self.req
    }

    /// Whether the generation is over.
    pub fn is_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Ends the generation early; the next step reports [`FinishReason::Cancelled`].
    pub fn cancel(&mut self) {
        if self.finish.is_none() {
            self.finish = Some(FinishReason::Cancelled);
        }
    }

    /// Advances by one prompt chunk or one generated token.
    pub fn step(&mut self, engine: &Engine) -> EngineResult<StepOutput> {
        let (out, pending) = self.sample_step(engine)?;
        if let Some(id) = pending {
            let row = engine.model.forward(&[id], &mut self.cache, Logits::Last)?;
            self.next_logits = Some(first_row(&row)?);
        }
        Ok(out)
    }

    /// Whether the next [`Generation::step`] samples a token (rather than running a prompt
    /// chunk or reporting the end).
    pub fn decoding(&self) -> bool {
        self.finish.is_none() && self.prompt_processed()
    }

    /// Everything of a step but the forward pass of the sampled token: returns the step's
    /// output and, unless the generation ended, the token whose logits the next step needs
    /// (the caller runs it, alone or batched, and hands the row to `next_logits`).
    fn sample_step(&mut self, engine: &Engine) -> EngineResult<(StepOutput, Option<u32>)> {
        if let Some(f) = self.finish {
            return Ok((StepOutput { finish: Some(f), ..Default::default() }, None));
        }
        if self.prefilled < self.req.prompt.len() {
            self.prefill_chunk(engine)?;
            return Ok((StepOutput::default(), None));
        }
        let Some(logits) = self.next_logits.take() else {
            return Err(EngineError::InvalidInput("generation has no logits to sample from".into()));
        };
        let id = self.sampler.sample(&logits, &self.history);
        let score = score_row(&logits_to_logprobs(&logits), id, self.req.top_logprobs);
        self.history.push(id);
        self.generated += 1;
        let mut out = StepOutput { tokens: vec![GeneratedToken { score }], ..Default::default() };
        let tok = engine.tokenizer();
        // EOS or an end-of-turn token (`<|im_end|>`, Gemma's `<end_of_turn>`…), as llama.cpp
        // and vLLM stop.
        if engine.end_of_generation.contains(&id) && !self.req.ignore_eos {
            self.text.push_str(&self.decoder.finish());
            return Ok((self.finish_with(FinishReason::Stop, out), None));
        }
        self.text.push_str(&self.decoder.push(tok, id));
        if let Some(cut) = find_stop(&self.text, self.emitted, &self.req.stop) {
            self.text.truncate(cut);
            return Ok((self.finish_with(FinishReason::Stop, out), None));
        }
        if self.generated >= self.req.max_tokens {
            self.text.push_str(&self.decoder.finish());
            if let Some(cut) = find_stop(&self.text, self.emitted, &self.req.stop) {
                self.text.truncate(cut);
                return Ok((self.finish_with(FinishReason::Stop, out), None));
            }
            return Ok((self.finish_with(FinishReason::Length, out), None));
        }
        if self.history.len() >= engine.context_length() {
            self.text.push_str(&self.decoder.finish());
            return Ok((self.finish_with(FinishReason::Length, out), None));
        }
        let safe = safe_emit_end(&self.text, self.emitted, &self.req.stop);
        out.text = self.text[self.emitted..safe].to_string();
        self.emitted = safe;
        Ok((out, Some(id)))
    }

    fn finish_with(&mut self, reason: FinishReason, mut out: StepOutput) -> StepOutput {
        out.text = self.text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = self.text.len();
        self.finish = Some(reason);
        out.finish = Some(reason);
        out
    }

    fn prefill_chunk(&mut self, engine: &Engine) -> EngineResult<()> {
        let end = (self.prefilled + PREFILL_CHUNK).min(self.req.prompt.len());
        let chunk = &self.req.prompt[self.prefilled..end];
        let last_chunk = end == self.req.prompt.len();
        match self.req.prompt_logprobs {
            Some(k) => {
                let logits = engine.model.forward(chunk, &mut self.cache, Logits::All)?;
                // Row i predicts prompt[prefilled + i + 1].
                let scores = score_chunk(&logits, &self.req.prompt[self.prefilled + 1..], k)?;
                self.prompt_scores.extend(scores);
                if last_chunk {
                    let raw = logits.narrow(0, chunk.len() - 1, 1)?;
                    self.next_logits = Some(first_row(&raw)?);
                }
            }
            None => {
                let logits = engine.model.forward(chunk, &mut self.cache, Logits::Last)?;
                if last_chunk {
                    self.next_logits = Some(first_row(&logits)?);
                }
            }
        }
        self.prefilled = end;
        Ok(())
    }
}

fn first_row(t: &candle_core::Tensor) -> EngineResult<Vec<f32>> {
    Ok(t.get(0)?.to_vec1::<f32>()?)
}

/// Earliest stop-string match that ends after `emitted` (earlier text was already final).
fn find_stop(text: &str, emitted: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let from = emitted.saturating_sub(s.len() - 1);
            let from = (0..=from).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text[from..].find(s.as_str()).map(|p| from + p)
        })
        .min()
}

/// End of the text that can be emitted: holds back a suffix that may begin a stop string.
fn safe_emit_end(text: &str, emitted: usize, stops: &[String]) -> usize {
    let mut end = text.len();
    for s in stops.iter().filter(|s| !s.is_empty()) {
        for (i, _) in text.char_indices().rev().take(s.chars().count()) {
            if i >= emitted && s.starts_with(&text[i..]) {
                end = end.min(i);
            }
        }
    }
    end.max(emitted)
}

/// Log-softmax of one row of raw logits, computed sequentially (deterministic).
pub fn logits_to_logprobs(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    logits.iter().map(|&l| l - lse).collect()
}

/// Score of `token` in a row of logprobs: logprob, 1-based rank, top-k alternatives.
pub fn score_row(logprobs: &[f32], token: u32, k: usize) -> TokenScore {
    let lp = logprobs.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    let mut rank = 1u32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in logprobs.iter().enumerate() {
        if v > lp || (v == lp && (i as u32) < token) {
            rank += 1;
        }
        if k > 0 && (top.len() < k || top.last().is_some_and(|&(_, w)| v > w)) {
            let at = top.partition_point(|&(_, w)| w >= v);
            top.insert(at, (i as u32, v));
            top.truncate(k);
        }
    }
    TokenScore { token, logprob: lp, rank, top }
}

/// Lanes of candle's f32 sum ([`score_logits`] adds in its order): four 8-float vectors.
const SUM_LANES: usize = 32;

/// `Σ row` in the order candle's AVX `vec_sum` adds (what its `sum_keepdim` over a contiguous
/// last dimension runs): 32 running lane sums over 32-float steps, folded as
/// `((v0+v1)+(v2+v3))` per 8-lane vector, the halves of that vector, two horizontal adds,
/// then the remainder one at a time. Plain f32 additions in a fixed order, so the same bits.
fn candle_sum(row: impl ExactSizeIterator<Item = f32>) -> f32 {
    let len = row.len();
    let full = len - len % SUM_LANES;
    let mut lanes = [0.0f32; SUM_LANES];
    let mut row = row;
    for _ in (0..full).step_by(SUM_LANES) {
        for lane in &mut lanes {
            *lane += row.next().unwrap_or(0.0);
        }
    }
    let v: [f32; 8] = std::array::from_fn(|l| (lanes[l] + lanes[8 + l]) + (lanes[16 + l] + lanes[24 + l]));
    let t0: [f32; 4] = std::array::from_fn(|l| v[l] + v[l + 4]);
    let mut sum = (t0[0] + t0[1]) + (t0[2] + t0[3]);
    for x in row {
        sum += x;
    }
    sum
}

/// [`score_row`] of the log-softmax of a row of raw logits, without materializing the
/// logprobs: the same numbers as `score_row` over candle's `log_softmax` (max, `l − max`,
/// `exp`, candle's summation order, `ln`, `(l − max) − ln Σ`), each logprob recomputed where
/// it is compared. Teacher-forced scoring runs this on every position; the tensor route
/// allocated and swept each chunk of logits five times.
pub fn score_logits(logits: &[f32], token: u32, k: usize) -> TokenScore {
    let Some(&first) = logits.first() else {
        return TokenScore { token, logprob: f32::NEG_INFINITY, rank: 1, top: Vec::new() };
    };
    let max = logits[1..].iter().fold(first, |m, &l| m.max(l));
    let lse = candle_sum(logits.iter().map(|&l| (l - max).exp())).ln();
    let lp_of = |l: f32| (l - max) - lse;
    let lp = logits.get(token as usize).map_or(f32::NEG_INFINITY, |&l| lp_of(l));
    let mut rank = 1u32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        let v = lp_of(l);
        if v > lp || (v == lp && (i as u32) < token) {
            rank += 1;
        }
        if k > 0 && (top.len() < k || top.last().is_some_and(|&(_, w)| v > w)) {
            let at = top.partition_point(|&(_, w)| w >= v);
            top.insert(at, (i as u32, v));
            top.truncate(k);
        }
    }
    TokenScore { token, logprob: lp, rank, top }
}

/// [`score_logits`] of each `(rows, vocab)` row of `logits` against the token it predicts,
/// rows split across the engine's threads (each row is scored alone, so the split changes
/// nothing but the time).
fn score_chunk(logits: &candle_core::Tensor, targets: &[u32], top_k: usize) -> EngineResult<Vec<TokenScore>> {
    model::with_rows(logits, |rows, vocab| {
        let rows: Vec<&[f32]> = rows.chunks_exact(vocab).zip(targets).map(|(r, _)| r).collect();
        let targets = &targets[..rows.len()];
        let threads = candle_core::utils::get_num_threads().clamp(1, rows.len().max(1));
        let per = rows.len().div_ceil(threads).max(1);
        if threads == 1 {
            return rows.iter().zip(targets).map(|(r, &t)| score_logits(r, t, top_k)).collect();
        }
        std::thread::scope(|scope| {
            let parts: Vec<_> = rows
                .chunks(per)
                .zip(targets.chunks(per))
                .map(|(rows, targets)| scope.spawn(move || rows.iter().zip(targets).map(|(r, &t)| score_logits(r, t, top_k)).collect::<Vec<_>>()))
                .collect();
            parts.into_iter().flat_map(|p| p.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    })
}

impl Engine {
    /// Loads a model and its tokenizer: a GGUF file (weights in
    /// [`model::WeightFormat::Fast`]), a directory holding one, or a Hugging Face llama
    /// directory ([`crate::hf_model`]).
    pub fn load(path: &Path) -> EngineResult<Self> {
        Self::load_as(path, model::WeightFormat::Fast)
    }

    /// [`Engine::load`] with a choice of in-memory weight format (GGUF only; safetensors
    /// weights are held as f32 either way).
    pub fn load_as(path: &Path, format: model::WeightFormat) -> EngineResult<Self> {
        let path = match crate::hf_model::locate(path)? {
            crate::hf_model::ModelFiles::Gguf(file) => file,
            crate::hf_model::ModelFiles::Safetensors(dir) => {
                let loaded = crate::hf_model::load_dir(&dir, format)?;
                let end_of_generation = loaded.tokenizer.end_of_generation();
                return Ok(Self { model: loaded.model, tokenizer: loaded.tokenizer, end_of_generation, name: loaded.name });
            }
        };
        let path = path.as_path();
        let loaded = model::load_gguf_as(path, format)?;
        let tokenizer = Tokenizer::from_spec(loaded.vocab)?;
        if tokenizer.vocab_size() != loaded.model.config().vocab_size {
            return Err(EngineError::Unsupported(format!(
                "tokenizer has {} tokens but the model outputs {}",
                tokenizer.vocab_size(),
                loaded.model.config().vocab_size
            )));
        }
        let name = loaded.name.unwrap_or_else(|| {
            path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
        });
        let end_of_generation = tokenizer.end_of_generation();
        Ok(Self { model: loaded.model, tokenizer, end_of_generation, name })
    }

    /// The tokenizer (encode, decode, chat template).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The underlying model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// `general.name` from the GGUF (or the file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Maximum prompt plus completion length in tokens.
    pub fn context_length(&self) -> usize {
        self.model.config().context_length
    }

    /// Checks a request and sets up its generation (no model work happens yet).
    pub fn start(&self, req: GenerateRequest) -> EngineResult<Generation> {
        req.sampling.validate()?;
        if req.prompt.is_empty() {
            return Err(EngineError::InvalidInput("the prompt is empty; give at least one token".into()));
        }
        if req.max_tokens == 0 {
            return Err(EngineError::InvalidInput("max_tokens must be at least 1".into()));
        }
        if req.top_logprobs > MAX_TOP_K || req.prompt_logprobs.is_some_and(|k| k > MAX_TOP_K) {
            return Err(EngineError::InvalidInput(format!("at most {MAX_TOP_K} logprobs per position")));
        }
        let vocab = self.tokenizer.vocab_size();
        if let Some(bad) = req.prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(EngineError::InvalidInput(format!("prompt token {bad} is outside the vocabulary of {vocab}")));
        }
        let limit = self.context_length();
        let requested = req.prompt.len().saturating_add(req.max_tokens);
        if requested > limit {
            return Err(EngineError::ContextOverflow { limit, requested, prompt: req.prompt.len() });
        }
        Ok(Generation {
            cache: self.model.new_cache(),
            sampler: Sampler::new(req.sampling.clone()),
            decoder: StreamDecoder::default(),
            prefilled: 0,
            history: req.prompt.clone(),
            generated: 0,
            next_logits: None,
            prompt_scores: Vec::new(),
            text: String::new(),
            emitted: 0,
            finish: None,
            req,
        })
    }

    /// One step of each generation, the generated tokens of all that are decoding run
    /// through the model together ([`Llama::decode_batch`]): continuous batching's decode
    /// step. Results are in input order and each is exactly what [`Generation::step`] would
    /// have returned for that generation alone (same tokens, logprobs and text for the same
    /// seed). Generations still in their prompt process one prompt chunk each.
    pub fn step_batch(&self, generations: &mut [&mut Generation]) -> Vec<EngineResult<StepOutput>> {
        let mut results = Vec::with_capacity(generations.len());
        let mut pending = Vec::new();
        for (i, generation) in generations.iter_mut().enumerate() {
            match generation.sample_step(self) {
                Ok((out, next)) => {
                    if let Some(id) = next {
                        pending.push((i, id));
                    }
                    results.push(Ok(out));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        if pending.is_empty() {
            return results;
        }
        let tokens: Vec<u32> = pending.iter().map(|&(_, id)| id).collect();
        let mut decoding: Vec<&mut Generation> = Vec::with_capacity(pending.len());
        let mut wanted = pending.iter().map(|&(i, _)| i).peekable();
        for (i, generation) in generations.iter_mut().enumerate() {
            if wanted.next_if_eq(&i).is_some() {
                decoding.push(&mut **generation);
            }
        }
        let mut caches: Vec<&mut KvCache> = decoding.iter_mut().map(|g| &mut g.cache).collect();
        match self.model.decode_batch(&tokens, &mut caches) {
            Ok(rows) => {
                for (generation, row) in decoding.into_iter().zip(rows) {
                    generation.next_logits = Some(row);
                }
            }
            Err(err) => {
                let message = err.to_string();
                let mut err = Some(err);
                for &(i, _) in &pending {
                    results[i] = Err(err.take().unwrap_or_else(|| EngineError::BatchStep(message.clone())));
                }
            }
        }
        results
    }

    /// Generates to completion, calling `on_token` for each step that produced tokens or
    /// text; returning `ControlFlow::Break` from it cancels. Returns the final text.
    pub fn generate(
        &self,
        req: GenerateRequest,
        mut on_step: impl FnMut(&StepOutput) -> ControlFlow<()>,
    ) -> EngineResult<(String, FinishReason, Generation)> {
        let mut generation = self.start(req)?;
        let mut text = String::new();
        loop {
            let out = generation.step(self)?;
            text.push_str(&out.text);
            let flow = if out.tokens.is_empty() && out.text.is_empty() && out.finish.is_none() {
                ControlFlow::Continue(())
            } else {
                on_step(&out)
            };
            if let Some(reason) = out.finish {
                return Ok((text, reason, generation));
            }
            if flow.is_break() {
                generation.cancel();
                return Ok((text, FinishReason::Cancelled, generation));
            }
        }
    }

    /// Teacher-forced scores of every position of `tokens` after the first, in one forward pass.
    pub fn score_sequence(&self, tokens: &[u32], top_k: usize) -> EngineResult<Vec<TokenScore>> {
        if tokens.len() < 2 {
            return Err(EngineError::InvalidInput("scoring needs at least two tokens".into()));
        }
        check_top_k(top_k)?;
        let mut cache = self.model.new_cache();
        let mut scores = Vec::with_capacity(tokens.len() - 1);
        // Chunks of rows, so a large vocabulary's logits are never all in memory at once.
        self.model.forward_chunked(&tokens[..tokens.len() - 1], &mut cache, |first, logits| {
            scores.extend(score_chunk(logits, &tokens[first + 1..], top_k)?);
            Ok(())
        })?;
        Ok(scores)
    }

    /// Scores many completions of one prompt. The prompt is run once; the completions then
    /// run after its KV cache, packed several to a forward pass ([`Llama::forward_packed`])
    /// where the architecture allows, else one pass each on a clone of the cache.
    pub fn score(&self, prompt: &[u32], completions: &[Vec<u32>], top_k: usize) -> EngineResult<ScoreReport> {
        Ok(self.score_placed(prompt, completions, top_k, None)?.0)
    }

    /// [`Engine::score`], and with `placing = Some((processing, margin, ends))` also each
    /// completion token's [`Placement`] in the processed distribution of every
    /// [`Family`] (`placements[completion][position][family]`, families in
    /// [`Family::ALL`] order), computed from the raw logits of the same forward pass.
    pub fn score_placed(
        &self,
        prompt: &[u32],
        completions: &[Vec<u32>],
        top_k: usize,
        placing: Option<(Processing, f32, &[u32])>,
    ) -> EngineResult<(ScoreReport, Vec<Vec<Vec<Placement>>>)> {
        let (prefix, prompt_scores, last_raw) = self.run_prompt(prompt, completions, top_k)?;
        if placing.is_none() && self.model.packs() {
            let from = vec![0; completions.len()];
            let completions = self.score_packed(&prefix, &last_raw, completions, &from, top_k)?;
            let completions = completions.into_iter().map(|tokens| ScoredCompletion { tokens }).collect();
            return Ok((ScoreReport { prompt: prompt_scores, completions }, Vec::new()));
        }
        let place = |raw: &[f32], completion: &[u32], at: usize| -> Vec<Placement> {
            let Some((processing, margin, ends)) = placing else { return Vec::new() };
            Family::ALL
                .iter()
                .map(|family| {
                    let penalized = family.penalized(prompt, &completion[..at]);
                    distribution::evaluate(raw, &penalized, completion[at], &processing, *family, margin, ends)
                })
                .collect()
        };
        let mut out = Vec::with_capacity(completions.len());
        let mut placed = Vec::with_capacity(completions.len());
        for completion in completions {
            let mut tokens = Vec::with_capacity(completion.len());
            let mut places = Vec::new();
            let Some((&first, _)) = completion.split_first() else {
                out.push(ScoredCompletion { tokens });
                placed.push(places);
                continue;
            };
            tokens.push(score_logits(&last_raw, first, top_k));
            if placing.is_some() {
                places.push(place(&last_raw, completion, 0));
            }
            if completion.len() > 1 {
                let mut cache = prefix.clone();
                // The last completion token predicts nothing we score, so it is not run.
                self.model.forward_chunked(&completion[..completion.len() - 1], &mut cache, |first, logits| {
                    tokens.extend(score_chunk(logits, &completion[first + 1..], top_k)?);
                    if placing.is_some() {
                        for (i, raw) in model::logit_rows(logits)?.iter().enumerate() {
                            places.push(place(raw, completion, first + i + 1));
                        }
                    }
                    Ok(())
                })?;
            }
            out.push(ScoredCompletion { tokens });
            placed.push(places);
        }
        Ok((ScoreReport { prompt: prompt_scores, completions: out }, placed))
    }
}

/// Rows [`Engine::score_packed`] puts in one pass: enough that every weight tile is used
/// for many rows, few enough that a pass's activations stay a few MB.
const PACK_ROWS: usize = 1024;

impl Engine {
    /// Scores many completions of one prompt, only completion `i`'s positions `from[i]..`
    /// (the others are run, as context, but get no logits): for losses over a response that
    /// follows a per-sample prompt. `completions[i].tokens` holds the scores of positions
    /// `from[i]..completions[i].len()` in order; `prompt` as in [`Engine::score`].
    /// Completions run packed several to a pass ([`Llama::forward_packed`]) where the
    /// architecture allows, else one pass each.
    pub fn score_tail(&self, prompt: &[u32], completions: &[Vec<u32>], from: &[usize], top_k: usize) -> EngineResult<ScoreReport> {
        if from.len() != completions.len() {
            return Err(EngineError::InvalidInput(format!("{} start positions for {} completions", from.len(), completions.len())));
        }
        let (prefix, prompt_scores, last_raw) = self.run_prompt(prompt, completions, top_k)?;
        let completions = if self.model.packs() {
            self.score_packed(&prefix, &last_raw, completions, from, top_k)?
        } else {
            let mut out = Vec::with_capacity(completions.len());
            for (completion, &from) in completions.iter().zip(from) {
                let mut tokens = Vec::with_capacity(completion.len());
                if let Some(&first) = completion.first() {
                    tokens.push(score_logits(&last_raw, first, top_k));
                }
                if completion.len() > 1 {
                    let mut cache = prefix.clone();
                    self.model.forward_chunked(&completion[..completion.len() - 1], &mut cache, |first, logits| {
                        tokens.extend(score_chunk(logits, &completion[first + 1..], top_k)?);
                        Ok(())
                    })?;
                }
                out.push(tokens.split_off(from.min(tokens.len())));
            }
            out
        };
        let completions = completions.into_iter().map(|tokens| ScoredCompletion { tokens }).collect();
        Ok(ScoreReport { prompt: prompt_scores, completions })
    }

    /// Checks a scoring request and runs its prompt: the prompt's KV cache, the scores of its
    /// positions after the first, and its last row of raw logits (which scores each
    /// completion's first token).
    fn run_prompt(&self, prompt: &[u32], completions: &[Vec<u32>], top_k: usize) -> EngineResult<(KvCache, Vec<TokenScore>, Vec<f32>)> {
        if prompt.is_empty() {
            return Err(EngineError::InvalidInput("scoring needs a non-empty prompt".into()));
        }
        check_top_k(top_k)?;
        let limit = self.context_length();
        if let Some(c) = completions.iter().find(|c| prompt.len() + c.len() > limit) {
            return Err(EngineError::ContextOverflow { limit, requested: prompt.len() + c.len(), prompt: prompt.len() });
        }
        let mut prefix = self.model.new_cache();
        let (mut prompt_scores, mut last_raw) = (Vec::with_capacity(prompt.len()), None);
        // Chunks of rows, so a large vocabulary's logits are never all in memory at once.
        self.model.forward_chunked(prompt, &mut prefix, |first, logits| {
            let rows = logits.dim(0)?;
            prompt_scores.extend(score_chunk(logits, &prompt[first + 1..], top_k)?);
            if first + rows == prompt.len() {
                last_raw = Some(logits.get(rows - 1)?.to_vec1::<f32>()?);
            }
            Ok(())
        })?;
        let Some(last_raw) = last_raw else {
            return Err(EngineError::InvalidInput("scoring needs a non-empty prompt".into()));
        };
        Ok((prefix, prompt_scores, last_raw))
    }

    /// Runs each of `seqs` after the cache `prefix` (left as it was) and hands every wanted
    /// row's raw logits to `each(sequence, k, row)`, `k` counting from the sequence's
    /// `logits_from`, rows of one sequence in order: for callers that transform logits before
    /// scoring them (the reward pipeline's repetition penalty). Sequences run packed up to
    /// [`PACK_ROWS`] rows per pass ([`Llama::forward_packed`]) where the architecture allows,
    /// else one pass each; each row is what a pass of that sequence alone computes, up to
    /// float rounding.
    pub fn packed_logits(
        &self,
        prefix: &KvCache,
        seqs: &[model::Packed<'_>],
        mut each: impl FnMut(usize, usize, &[f32]) -> EngineResult<()>,
    ) -> EngineResult<()> {
        if let Some(bad) = seqs.iter().find(|s| s.logits_from > s.tokens.len()) {
            return Err(EngineError::InvalidInput(format!("logits from row {} of a {}-token sequence", bad.logits_from, bad.tokens.len())));
        }
        let limit = self.context_length();
        if let Some(long) = seqs.iter().find(|s| prefix.len() + s.tokens.len() > limit) {
            return Err(EngineError::ContextOverflow { limit, requested: prefix.len() + long.tokens.len(), prompt: prefix.len() });
        }
        if !self.model.packs() {
            for (i, s) in seqs.iter().enumerate() {
                let mut cache = prefix.clone();
                self.model.forward_chunked(s.tokens, &mut cache, |first, logits| {
                    with_rows(logits, |values, vocab| {
                        for (r, row) in values.chunks_exact(vocab).enumerate() {
                            if first + r >= s.logits_from {
                                each(i, first + r - s.logits_from, row)?;
                            }
                        }
                        Ok(())
                    })?
                })?;
            }
            return Ok(());
        }
        let mut next = 0;
        while next < seqs.len() {
            let start = next;
            let mut rows = 0;
            while next < seqs.len() && (next == start || rows + seqs[next].tokens.len() <= PACK_ROWS) {
                rows += seqs[next].tokens.len();
                next += 1;
            }
            let group = &seqs[start..next];
            // Per wanted row, in the pass's order: its sequence and its index there.
            let owner: Vec<(usize, usize)> =
                group.iter().enumerate().flat_map(|(j, s)| (0..s.tokens.len() - s.logits_from).map(move |k| (start + j, k))).collect();
            self.model.forward_packed(prefix, group, |first, logits| {
                with_rows(logits, |values, vocab| {
                    for (r, row) in values.chunks_exact(vocab).enumerate() {
                        let (i, k) = owner[first + r];
                        each(i, k, row)?;
                    }
                    Ok(())
                })?
            })?;
        }
        Ok(())
    }

    /// The scores of positions `from[i]..` of each completion after `prefix` (whose last
    /// logits row is `last_raw`), completions packed up to [`PACK_ROWS`] rows per pass.
    fn score_packed(&self, prefix: &KvCache, last_raw: &[f32], completions: &[Vec<u32>], from: &[usize], top_k: usize) -> EngineResult<Vec<Vec<TokenScore>>> {
        let mut out: Vec<Vec<TokenScore>> = completions.iter().zip(from).map(|(c, &f)| Vec::with_capacity(c.len().saturating_sub(f))).collect();
        // Position 0 is predicted by the prompt's last row; position j ≥ 1 by the
        // completion's row j − 1, so a completion runs all but its last token.
        for ((completion, &from), scores) in completions.iter().zip(from).zip(out.iter_mut()) {
            if let (Some(&first), 0) = (completion.first(), from) {
                scores.push(score_logits(last_raw, first, top_k));
            }
        }
        let mut next = 0;
        while next < completions.len() {
            let mut group = Vec::new();
            let mut rows = 0;
            while next < completions.len() && (group.is_empty() || rows + completions[next].len() <= PACK_ROWS) {
                rows += completions[next].len();
                group.push(next);
                next += 1;
            }
            // Per wanted row, in the pass's order: the token it predicts and its completion.
            let mut targets: Vec<u32> = Vec::new();
            let mut owner: Vec<usize> = Vec::new();
            let mut seqs = Vec::with_capacity(group.len());
            for &i in &group {
                let c = &completions[i];
                if c.len() < 2 {
                    continue;
                }
                let logits_from = (from[i].max(1) - 1).min(c.len() - 1);
                seqs.push(model::Packed { tokens: &c[..c.len() - 1], logits_from });
                targets.extend(&c[logits_from + 1..]);
                owner.extend(std::iter::repeat_n(i, c.len() - 1 - logits_from));
            }
            self.model.forward_packed(prefix, &seqs, |first, logits| {
                let rows = logits.dim(0)?;
                for (k, score) in score_chunk(logits, &targets[first..first + rows], top_k)?.into_iter().enumerate() {
                    out[owner[first + k]].push(score);
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

fn check_top_k(k: usize) -> EngineResult<()> {
    if k > MAX_TOP_K {
        return Err(EngineError::InvalidInput(format!("top_k must be at most {MAX_TOP_K}, got {k}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::tiny_model;

    fn req(prompt: Vec<u32>, seed: u64, temperature: f32) -> GenerateRequest {
        GenerateRequest {
            ignore_eos: false,
            prompt,
            max_tokens: 12,
            sampling: SamplingParams { temperature, seed, ..Default::default() },
            stop: Vec::new(),
            top_logprobs: 3,
            prompt_logprobs: None,
        }
    }

    #[test]
    fn score_row_ranks_and_top_k() {
        let lp = logits_to_logprobs(&[0.0, 2.0, 1.0, 2.0]);
        let s = score_row(&lp, 2, 2);
        assert_eq!(s.rank, 3);
        assert_eq!(s.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(score_row(&lp, 3, 0).rank, 2, "ties rank the lower id first");
        let total: f64 = lp.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }

    #[test]
    fn fused_scores_are_bit_identical_to_candles_log_softmax() {
        // Odd widths exercise the remainder after candle's 32-float steps.
        for (width, seed) in [(49_157usize, 1u64), (31, 2), (64, 3), (1, 4)] {
            let mut state = seed;
            let rows: Vec<f32> = (0..3 * width)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 40.0
                })
                .collect();
            let logits = candle_core::Tensor::from_vec(rows.clone(), (3, width), &candle_core::Device::Cpu).unwrap();
            let lp = model::log_softmax_rows(&logits).unwrap();
            for (i, (raw, lp)) in rows.chunks_exact(width).zip(&lp).enumerate() {
                for token in [0, (width / 2) as u32, (width - 1) as u32] {
                    let want = score_row(lp, token, 5);
                    let got = score_logits(raw, token, 5);
                    assert_eq!(got.logprob.to_bits(), want.logprob.to_bits(), "row {i} token {token} width {width}");
                    assert_eq!(got, want, "row {i} token {token} width {width}");
                }
            }
            let targets: Vec<u32> = vec![0, 1 % width as u32, (width - 1) as u32];
            let chunk = score_chunk(&logits, &targets, 3).unwrap();
            let single: Vec<TokenScore> = lp.iter().zip(&targets).map(|(lp, &t)| score_row(lp, t, 3)).collect();
            assert_eq!(chunk, single);
        }
    }

    #[test]
    fn stop_strings_hold_back_and_cut() {
        let stops = vec!["END".to_string()];
        assert_eq!(safe_emit_end("abcEN", 0, &stops), 3);
        assert_eq!(safe_emit_end("abcx", 0, &stops), 4);
        assert_eq!(find_stop("abcENDxyz", 0, &stops), Some(3));
        assert_eq!(find_stop("abc", 0, &stops), None);
    }

    #[test]
    fn same_seed_gives_identical_tokens_and_greedy_ignores_seed() {
        let (_dir, path) = tiny_model();
        let engine = Engine::load(&path).unwrap();
        let prompt = engine.tokenizer().encode("hello world");
        let run = |seed, t| {
            let mut ids = Vec::new();
            engine
                .generate(req(prompt.clone(), seed, t), |s| {
                    ids.extend(s.tokens.iter().map(|t| t.score.token));
                    ControlFlow::Continue(())
                })
                .unwrap();
            ids
        };
        let a = run(42, 1.0);
        assert!(!a.is_empty());
        assert_eq!(a, run(42, 1.0));
        assert_ne!(a, run(43, 1.0), "a different seed should change a 12-token random sample");
        assert_eq!(run(1, 0.0), run(2, 0.0));
    }

    #[test]
    fn generated_logprobs_match_teacher_forced_scores() {
        let (_dir, path) = tiny_model();
        let engine = Engine::load(&path).unwrap();
        let prompt = engine.tokenizer().encode("hello");
        let (_, _, generation) = engine.generate(req(prompt.clone(), 5, 1.0), |_| ControlFlow::Continue(())).unwrap();
        let generated: Vec<u32> = generation.history[prompt.len()..].to_vec();
        let mut streamed = Vec::new();
        engine
            .generate(req(prompt.clone(), 5, 1.0), |s| {
                streamed.extend(s.tokens.iter().map(|t| t.score.clone()));
                ControlFlow::Continue(())
            })
            .unwrap();
        let report = engine.score(&prompt, std::slice::from_ref(&generated), 3).unwrap();
        let scored = &report.completions[0].tokens;
        assert_eq!(scored.len(), streamed.len());
        for (a, b) in scored.iter().zip(&streamed) {
            assert_eq!(a.token, b.token);
            assert!((a.logprob - b.logprob).abs() < 1e-3, "{a:?} vs {b:?}");
            assert_eq!(a.top.first().map(|t| t.0), b.top.first().map(|t| t.0));
        }
    }

    #[test]
    fn prefix_reuse_matches_full_sequence_scoring() {
        let (_dir, path) = tiny_model();
        let engine = Engine::load(&path).unwrap();
        let prompt: Vec<u32> = vec![1, 100, 101, 102, 103];
        let completions = vec![vec![50, 51, 52, 53], vec![60], vec![], vec![70, 71]];
        let report = engine.score(&prompt, &completions, 5).unwrap();
        assert_eq!(report.prompt.len(), prompt.len() - 1);
        for (c, scored) in completions.iter().zip(&report.completions) {
            assert_eq!(c.len(), scored.tokens.len());
            if c.is_empty() {
                continue;
            }
            let full: Vec<u32> = prompt.iter().chain(c).copied().collect();
            let direct = engine.score_sequence(&full, 5).unwrap();
            for (a, b) in scored.tokens.iter().zip(&direct[prompt.len() - 1..]) {
                assert_eq!(a.token, b.token);
                assert!((a.logprob - b.logprob).abs() < 1e-3, "{a:?} vs {b:?}");
                assert_eq!(a.rank, b.rank);
                assert!(a.rank >= 1 && a.top.len() == 5);
            }
        }
        // The same call twice is bit-identical.
        assert_eq!(report, engine.score(&prompt, &completions, 5).unwrap());
    }

    #[test]
    fn tail_scores_of_packed_completions_match_one_pass_each() {
        let (_dir, path) = tiny_model();
        let engine = Engine::load(&path).unwrap();
        assert!(engine.model().packs());
        let prompt: Vec<u32> = vec![1, 100, 101];
        // Enough rows to fill more than one pass, with every kind of start position.
        let mut completions: Vec<Vec<u32>> = (0..40u32).map(|i| (0..(30 + i % 7)).map(|j| 40 + (i * 7 + j) % 200).collect()).collect();
        completions.extend([vec![9], vec![], vec![5, 6]]);
        let from: Vec<usize> = (0..completions.len()).map(|i| [0, 1, 2, 17, 40][i % 5]).collect();
        let report = engine.score_tail(&prompt, &completions, &from, 3).unwrap();
        assert_eq!(report.prompt.len(), prompt.len() - 1);
        for ((c, &f), scored) in completions.iter().zip(&from).zip(&report.completions) {
            assert_eq!(scored.tokens.len(), c.len().saturating_sub(f), "{f} of {}", c.len());
            if scored.tokens.is_empty() {
                continue;
            }
            let full: Vec<u32> = prompt.iter().chain(c).copied().collect();
            let direct = engine.score_sequence(&full, 3).unwrap();
            for (a, b) in scored.tokens.iter().zip(&direct[prompt.len() - 1 + f..]) {
                assert_eq!(a.token, b.token);
                assert!((a.logprob - b.logprob).abs() < 1e-4, "{a:?} vs {b:?}");
                assert_eq!(a.top.len(), 3);
            }
        }
        assert!(engine.score_tail(&prompt, &completions, &from[1..], 3).is_err(), "one start per completion");
    }

    #[test]
    fn start_rejects_bad_requests() {
        let (_dir, path) = tiny_model();
        let engine = Engine::load(&path).unwrap();
        let mut r = req(vec![5], 0, 1.0);
        r.max_tokens = 0;
        assert!(matches!(engine.start(r).unwrap_err(), EngineError::InvalidInput(_)));
        let mut r = req(vec![5], 0, 1.0);
        r.max_tokens = 1_000_000;
        assert!(matches!(engine.start(r).unwrap_err(), EngineError::ContextOverflow { .. }));
        assert!(matches!(engine.start(req(vec![], 0, 1.0)).unwrap_err(), EngineError::InvalidInput(_)));
        assert!(matches!(engine.start(req(vec![5], 0, 3.0)).unwrap_err(), EngineError::InvalidInput(_)));
        assert!(engine.score(&[1], &[vec![2]], 21).is_err());
    }

    #[test]
    fn prompt_logprobs_and_chunked_prefill_agree_with_scoring() {
        let (_dir, path) = tiny_model();
        let engine = Engine::load(&path).unwrap();
        let prompt: Vec<u32> = (0..(PREFILL_CHUNK as u32 + 40)).map(|i| 3 + (i * 7) % 250).collect();
        let mut r = req(prompt.clone(), 0, 0.0);
        r.prompt_logprobs = Some(2);
        r.max_tokens = 2;
        let (_, _, generation) = engine.generate(r, |_| ControlFlow::Continue(())).unwrap();
        let direct = engine.score_sequence(&prompt, 2).unwrap();
        assert_eq!(generation.prompt_scores().len(), direct.len());
        for (a, b) in generation.prompt_scores().iter().zip(&direct) {
            assert!((a.logprob - b.logprob).abs() < 1e-3);
        }
    }
}
