//! Losses on the engine.
//!
//! **Chat loss** (finetuning, spec A5.4–6): the prompt is rendered with the competition's
//! chat template as `[user]` with `add_generation_prompt`, the full sequence as
//! `[user, assistant]`, both truncated to the sequence length; the loss is the mean
//! teacher-forced cross-entropy (natural log) over the positions at and after the prompt's
//! length — the response tokens, end-of-turn tokens included — as Hugging Face's causal LM
//! loss with the prompt's labels set to −100.
//!
//! **Text loss** (pretraining, spec A6): documents packed with one EOS each into rows of the
//! sequence length; per row the mean cross-entropy over every shifted position; the score
//! is the mean over rows. With the **degeneracy check**: greedy continuations of two prompts
//! that agree at too many positions, or both repeat one token too often, fail the model.

use ganglion_engine::engine::GenerateRequest;
use ganglion_engine::sampling::SamplingParams;
use ganglion_engine::tokenizer::{ChatMessage, Tokenizer};
use ganglion_engine::{Engine, EngineError};

/// One evaluation sample: a user prompt and the reference response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// The user's message.
    pub prompt: String,
    /// The response the model is scored on.
    pub response: String,
}

/// Why a loss could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// The engine failed (template, context, model).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// After truncation nothing of the response is left to score.
    #[error("no response tokens within {0} tokens")]
    NoResponseTokens(usize),
    /// The model produced a NaN or infinite loss.
    #[error("the loss is not finite")]
    NotFinite,
}

/// A tokenized sample: the full sequence and how many leading tokens are prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedSample {
    /// `chat_template([user, assistant])`, truncated.
    pub ids: Vec<u32>,
    /// `len(chat_template([user], add_generation_prompt=True))`, truncated.
    pub prompt_len: usize,
}

/// Tokenizes a sample as the original did (both sequences truncated to `max_len`).
pub fn tokenize_sample(tokenizer: &Tokenizer, sample: &Sample, max_len: usize) -> Result<TokenizedSample, LossError> {
    let user = ChatMessage { role: "user".into(), content: sample.prompt.clone() };
    let assistant = ChatMessage { role: "assistant".into(), content: sample.response.clone() };
    let mut prompt = tokenizer.encode_chat(std::slice::from_ref(&user), true)?;
    let mut ids = tokenizer.encode_chat(&[user, assistant], false)?;
    prompt.truncate(max_len);
    ids.truncate(max_len);
    Ok(TokenizedSample { ids, prompt_len: prompt.len() })
}

/// Mean cross-entropy of `ids[p]` given `ids[..p]` over `p ≥ max(first, 1)`, in one
/// teacher-forced forward pass.
pub fn mean_loss_from(engine: &Engine, ids: &[u32], first: usize) -> Result<f64, LossError> {
    let first = first.max(1);
    if ids.len() <= first {
        return Err(LossError::NoResponseTokens(ids.len()));
    }
    let scores = engine.score_sequence(ids, 0)?;
    // scores[i] is position i + 1.
    mean_over(first, ids.len(), |p| scores[p - 1].logprob)
}

/// The chat loss of one sample (response tokens only), truncated to `min(max_len, context)`.
pub fn chat_loss(engine: &Engine, sample: &Sample, max_len: usize) -> Result<f64, LossError> {
    let max_len = max_len.min(engine.context_length());
    let t = tokenize_sample(engine.tokenizer(), sample, max_len)?;
    mean_loss_from(engine, &t.ids, t.prompt_len)
}

/// Fewest shared leading tokens worth running once for a batch of samples.
const MIN_SHARED_PREFIX: usize = 4;

/// The mean loss of positions `first..` of a sequence whose position `p ≥ 1` has the score
/// `score(p)`.
fn mean_over(first: usize, len: usize, score: impl Fn(usize) -> f32) -> Result<f64, LossError> {
    let first = first.max(1);
    if len <= first {
        return Err(LossError::NoResponseTokens(len));
    }
    let total: f64 = (first..len).map(|p| -f64::from(score(p))).sum();
    let loss = total / (len - first) as f64;
    if !loss.is_finite() {
        return Err(LossError::NotFinite);
    }
    Ok(loss)
}

/// [`chat_loss`] of every sample, with the tokens all samples begin with (the chat
/// template's system preamble and the user turn's header: ~25 of SmolLM2's tokens) run once
/// instead of once per sample. The samples' remaining tokens run after that prefix's KV
/// cache, several samples to a pass and logits only for response rows
/// ([`Engine::score_tail`]), so every position's score is the one a whole-sequence pass
/// computes, up to float rounding (a test holds the two to 1e-4).
///
/// `tokenizer` renders and tokenizes the samples: the model's own, or a competition's.
pub fn chat_losses(engine: &Engine, tokenizer: &Tokenizer, samples: &[Sample], max_len: usize) -> Vec<Result<f64, LossError>> {
    let max_len = max_len.min(engine.context_length());
    let tokenized: Vec<Result<TokenizedSample, LossError>> = samples.iter().map(|s| tokenize_sample(tokenizer, s, max_len)).collect();
    let ok: Vec<&TokenizedSample> = tokenized.iter().filter_map(|t| t.as_ref().ok()).collect();
    // The longest prefix every sample shares, leaving each at least one token of its own.
    let shared = match ok.split_first() {
        Some((head, rest)) if !rest.is_empty() => {
            let mut n = ok.iter().map(|t| t.ids.len().saturating_sub(1)).min().unwrap_or(0);
            for t in rest {
                n = n.min(head.ids.iter().zip(&t.ids).take_while(|(a, b)| a == b).count());
            }
            n
        }
        _ => 0,
    };
    let batched = (shared >= MIN_SHARED_PREFIX).then(|| {
        let prefix = &ok[0].ids[..shared];
        let rests: Vec<Vec<u32>> = ok.iter().map(|t| t.ids[shared..].to_vec()).collect();
        // Only the response positions get logits; the prompt's rows are context.
        let from: Vec<usize> = ok.iter().map(|t| t.prompt_len.max(1).saturating_sub(shared)).collect();
        engine.score_tail(prefix, &rests, &from, 0).map(|report| (report, from))
    });
    match batched {
        Some(Ok((report, from))) => {
            let mut completions = report.completions.iter().zip(from);
            tokenized
                .into_iter()
                .map(|t| {
                    let t = t?;
                    let Some((own, from)) = completions.next() else {
                        return Err(LossError::Engine(EngineError::InvalidInput("a scored completion is missing".into())));
                    };
                    // Position p < shared is prompt score p - 1; p ≥ shared is the own tokens'
                    // p - shared - from (only positions shared + from.. were scored).
                    mean_over(t.prompt_len, t.ids.len(), |p| if p < shared { report.prompt[p - 1].logprob } else { own.tokens[p - shared - from].logprob })
                })
                .collect()
        }
        // Nothing shared worth reusing, or the batch failed as a whole: one pass per sample,
        // so each failure is its own sample's.
        _ => tokenized.into_iter().map(|t| t.and_then(|t| mean_loss_from(engine, &t.ids, t.prompt_len))).collect(),
    }
}

/// Packs documents into rows of `seq_len` tokens, one EOS after each document (no BOS, as
/// the pretraining loader did); the last partial row is dropped unless it is the only one.
pub fn pack_documents(tokenizer: &Tokenizer, documents: &[String], seq_len: usize) -> Vec<Vec<u32>> {
    let seq_len = seq_len.max(2);
    let mut stream = Vec::new();
    for doc in documents {
        stream.extend(tokenizer.encode_plain(doc));
        if let Some(eos) = tokenizer.eos_token() {
            stream.push(eos);
        }
    }
    let mut rows: Vec<Vec<u32>> = stream.chunks(seq_len).map(<[u32]>::to_vec).collect();
    if rows.len() > 1 && rows.last().is_some_and(|r| r.len() < seq_len) {
        rows.pop();
    }
    rows.retain(|r| r.len() >= 2);
    rows
}

/// The text loss: mean over rows of the mean shifted cross-entropy over every position.
pub fn text_loss(engine: &Engine, rows: &[Vec<u32>]) -> Result<f64, LossError> {
    if rows.is_empty() {
        return Err(LossError::NoResponseTokens(0));
    }
    let mut sum = 0.0;
    for row in rows {
        sum += mean_loss_from(engine, row, 1)?;
    }
    Ok(sum / rows.len() as f64)
}

/// The degeneracy check's settings (pretraining: 20 greedy tokens from two 100-token prompts,
/// ≥ 10 agreeing positions or both repeating one token > 10 times fail).
#[derive(Debug, Clone, Copy)]
pub struct DegeneracyCheck {
    /// Tokens generated per prompt.
    pub new_tokens: usize,
    /// Agreeing positions that fail the model.
    pub max_agreeing: usize,
    /// Repeats of one token (in both outputs) that fail the model.
    pub max_repeats: usize,
}

impl Default for DegeneracyCheck {
    fn default() -> Self {
        DegeneracyCheck { new_tokens: 20, max_agreeing: 10, max_repeats: 10 }
    }
}

fn greedy(engine: &Engine, prompt: &[u32], n: usize) -> Result<Vec<u32>, LossError> {
    let req = GenerateRequest {
        ignore_eos: false,
        prompt: prompt.to_vec(),
        max_tokens: n,
        sampling: SamplingParams { temperature: 0.0, ..SamplingParams::default() },
        stop: Vec::new(),
        top_logprobs: 0,
        prompt_logprobs: None,
    };
    let mut out = Vec::with_capacity(n);
    engine.generate(req, |step| {
        out.extend(step.tokens.iter().map(|t| t.score.token));
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Whether two greedy outputs are degenerate by the rule above.
pub fn is_degenerate(a: &[u32], b: &[u32], check: &DegeneracyCheck) -> bool {
    let agreeing = a.iter().zip(b).filter(|(x, y)| x == y).count();
    let max_count = |v: &[u32]| {
        let mut counts = std::collections::HashMap::new();
        for t in v {
            *counts.entry(*t).or_insert(0usize) += 1;
        }
        counts.into_values().max().unwrap_or(0)
    };
    agreeing >= check.max_agreeing || (max_count(a) > check.max_repeats && max_count(b) > check.max_repeats)
}

/// Runs the degeneracy check on two prompts (token ids). `true` means the model fails.
pub fn degenerate(engine: &Engine, prompt_a: &[u32], prompt_b: &[u32], check: &DegeneracyCheck) -> Result<bool, LossError> {
    let a = greedy(engine, prompt_a, check.new_tokens)?;
    let b = greedy(engine, prompt_b, check.new_tokens)?;
    Ok(is_degenerate(&a, &b, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degeneracy_rule() {
        let c = DegeneracyCheck::default();
        let a: Vec<u32> = (0..20).collect();
        let b: Vec<u32> = (100..120).collect();
        assert!(!is_degenerate(&a, &b, &c));
        // Ten agreeing positions fail.
        let mut b2 = b.clone();
        b2[..10].copy_from_slice(&a[..10]);
        assert!(is_degenerate(&a, &b2, &c));
        // One output repeating 11 times is not enough; both are.
        let rep_a: Vec<u32> = (0..20).map(|i| if i % 2 == 0 || i < 2 { 77 } else { i }).collect();
        assert_eq!(rep_a.iter().filter(|&&t| t == 77).count(), 11);
        assert!(!is_degenerate(&rep_a, &b, &c));
        let rep_b: Vec<u32> = (0..20).map(|i| if i % 2 == 1 || i < 2 { 99 } else { 50 + i }).collect();
        assert!(is_degenerate(&rep_a, &rep_b, &c));
    }
}
