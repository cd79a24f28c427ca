//! The validator's own model ("reference"): what miners' outputs are judged against.
//!
//! Two implementations of [`Reference`]:
//! - [`LocalReference`]: the built-in [`ganglion_engine::Engine`] in-process. Work runs on a
//!   blocking thread, one job at a time; [`Reference::score`] takes all miners' completions
//!   of one prompt in one call so the engine runs the shared prompt once
//!   ([`Engine::score`]).
//! - [`UpstreamReference`]: any OpenAI-compatible server with vLLM's `prompt_logprobs`
//!   (vLLM itself, or `ganglion engine serve`). Prompts are sent as token ids, so the
//!   validator needs the model's tokenizer locally — read from the GGUF's header (no weights
//!   are loaded) — which keeps the chat template and tokenization identical to what
//!   verification assumes.
//!
//! Both return [`TokenScore`]s: the token's logprob under the raw distribution, its exact
//! rank, and the top-k alternatives.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ganglion_engine::Engine;
use ganglion_engine::distribution::{self, Family, Placement};
use ganglion_engine::engine::{FinishReason, GenerateRequest, TokenScore};
use ganglion_engine::sampling::SamplingParams;
use ganglion_engine::tokenizer::Tokenizer;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::error::{InferenceError, Result};
use crate::openai::{Sampling, join_url};

/// A regenerated completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated token ids (an end-of-sequence token, if generated, included).
    pub tokens: Vec<u32>,
    /// The text.
    pub text: String,
    /// `stop` or `length`.
    pub finish: &'static str,
}

/// The validator's model; see the module doc.
#[async_trait]
pub trait Reference: Send + Sync + std::fmt::Debug {
    /// The model name miners serve it under.
    fn model(&self) -> &str;
    /// The model's tokenizer (prompts are tokenized locally in both implementations).
    fn tokenizer(&self) -> &Tokenizer;
    /// Maximum prompt plus completion length.
    fn context_length(&self) -> usize;
    /// Whether [`Reference::place`] works from the full logits (repetition penalties can
    /// then be verified; validators draw them only for such references).
    fn exact(&self) -> bool {
        false
    }
    /// Teacher-forced scores of each completion after `prompt`, one [`TokenScore`] per
    /// completion token, with `top_k` alternatives.
    async fn score(&self, prompt: Vec<u32>, completions: Vec<Vec<u32>>, top_k: usize) -> Result<Vec<Vec<TokenScore>>>;
    /// Generates from `prompt` with `sampling` (same seed, same tokens on the same backend).
    async fn generate(&self, prompt: Vec<u32>, sampling: Sampling) -> Result<Generated>;

    /// [`Reference::score`], plus every completion token placed in the processed sampling
    /// distribution of each sampler [`Family`] under `sampling`, with a logit `margin` (see
    /// [`ganglion_engine::distribution`]). The default builds the distributions from the
    /// top-k alternatives alone, the rest of the mass spread evenly over the other tokens
    /// ([`Placed::exact`] false); references with the full logits override it.
    async fn place(&self, prompt: Vec<u32>, completions: Vec<Vec<u32>>, top_k: usize, sampling: Sampling, margin: f32) -> Result<Placed> {
        let scores = self.score(prompt.clone(), completions.clone(), top_k).await?;
        let ends = end_tokens(self.tokenizer());
        let vocab = self.tokenizer().vocab_size();
        let processing = sampling.processing();
        let placements = completions
            .iter()
            .zip(&scores)
            .map(|(completion, scores)| {
                scores
                    .iter()
                    .enumerate()
                    .map(|(at, score)| {
                        let row = pseudo_row(score, vocab);
                        Family::ALL
                            .iter()
                            .map(|family| {
                                let penalized = family.penalized(&prompt, &completion[..at]);
                                distribution::evaluate(&row, &penalized, score.token, &processing, *family, margin, &ends)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Ok(Placed { scores, placements, exact: false })
    }
}

/// What [`Reference::place`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// Per completion, per token: its raw score with the top-k alternatives.
    pub scores: Vec<Vec<TokenScore>>,
    /// Per completion, per token, per [`Family::ALL`] entry: its placement.
    pub placements: Vec<Vec<Vec<Placement>>>,
    /// Whether the placements come from the full logits (or from top-k alternatives only).
    pub exact: bool,
}

/// A logprob row rebuilt from a score's top-k alternatives and the token's own logprob, the
/// remaining mass spread evenly over the other tokens. Repetition penalties act on raw
/// logits, which such a row does not have: validators with a top-k reference do not draw
/// them (see [`Reference::exact`]).
fn pseudo_row(score: &TokenScore, vocab: usize) -> Vec<f32> {
    let known: f64 = score.top.iter().map(|&(_, lp)| f64::from(lp).exp()).sum::<f64>()
        + if score.top.iter().any(|&(id, _)| id == score.token) { 0.0 } else { f64::from(score.logprob).exp() };
    let others = vocab.saturating_sub(score.top.len() + 1).max(1) as f64;
    let tail = ((1.0 - known).max(1e-12) / others).ln() as f32;
    let mut row = vec![tail; vocab];
    for &(id, lp) in &score.top {
        if let Some(v) = row.get_mut(id as usize) {
            *v = lp;
        }
    }
    if let Some(v) = row.get_mut(score.token as usize) {
        *v = score.logprob;
    }
    row
}

/// Ids that end a generation: the tokenizer's EOS and the end-of-turn tokens
/// ([`Tokenizer::end_of_generation`]).
pub fn end_tokens(tokenizer: &Tokenizer) -> Vec<u32> {
    tokenizer.end_of_generation()
}

fn engine_sampling(sampling: &Sampling) -> SamplingParams {
    SamplingParams {
        temperature: sampling.temperature as f32,
        top_p: sampling.top_p as f32,
        top_k: sampling.top_k as usize,
        repetition_penalty: sampling.repetition_penalty as f32,
        seed: sampling.seed.unwrap_or_else(rand::random),
    }
}

/// The built-in engine, in-process.
#[derive(Debug, Clone)]
pub struct LocalReference {
    engine: Arc<Engine>,
    model: String,
    // One job at a time: the engine already uses every core for one forward pass.
    busy: Arc<Semaphore>,
}

impl LocalReference {
    /// Verifies model `model` with `engine`.
    pub fn new(engine: Arc<Engine>, model: impl Into<String>) -> LocalReference {
        LocalReference { engine, model: model.into(), busy: Arc::new(Semaphore::new(1)) }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    async fn blocking<T: Send + 'static>(&self, job: impl FnOnce(&Engine) -> Result<T> + Send + 'static) -> Result<T> {
        let _permit = self.busy.acquire().await.map_err(|_| InferenceError::Reference("reference closed".into()))?;
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || job(&engine))
            .await
            .map_err(|e| InferenceError::Reference(format!("engine task failed: {e}")))?
    }
}

#[async_trait]
impl Reference for LocalReference {
    fn model(&self) -> &str {
        &self.model
    }

    fn tokenizer(&self) -> &Tokenizer {
        self.engine.tokenizer()
    }

    fn context_length(&self) -> usize {
        self.engine.context_length()
    }

    fn exact(&self) -> bool {
        true
    }

    async fn score(&self, prompt: Vec<u32>, completions: Vec<Vec<u32>>, top_k: usize) -> Result<Vec<Vec<TokenScore>>> {
        self.blocking(move |engine| {
            let report = engine.score(&prompt, &completions, top_k)?;
            Ok(report.completions.into_iter().map(|c| c.tokens).collect())
        })
        .await
    }

    async fn place(&self, prompt: Vec<u32>, completions: Vec<Vec<u32>>, top_k: usize, sampling: Sampling, margin: f32) -> Result<Placed> {
        let ends = end_tokens(self.tokenizer());
        self.blocking(move |engine| {
            let (report, placements) = engine.score_placed(&prompt, &completions, top_k, Some((sampling.processing(), margin, &ends)))?;
            Ok(Placed { scores: report.completions.into_iter().map(|c| c.tokens).collect(), placements, exact: true })
        })
        .await
    }

    async fn generate(&self, prompt: Vec<u32>, sampling: Sampling) -> Result<Generated> {
        let request = GenerateRequest {
            ignore_eos: false,
            prompt,
            max_tokens: sampling.max_tokens.max(1) as usize,
            sampling: engine_sampling(&sampling),
            stop: Vec::new(),
            top_logprobs: 0,
            prompt_logprobs: None,
        };
        self.blocking(move |engine| {
            let mut tokens = Vec::new();
            let (text, finish, _) = engine.generate(request, |step| {
                tokens.extend(step.tokens.iter().map(|t| t.score.token));
                std::ops::ControlFlow::Continue(())
            })?;
            let finish = if finish == FinishReason::Length { "length" } else { "stop" };
            Ok(Generated { tokens, text, finish })
        })
        .await
    }
}

/// An OpenAI-compatible upstream with vLLM's `prompt_logprobs`, plus a local tokenizer.
#[derive(Debug, Clone)]
pub struct UpstreamReference {
    base_url: String,
    api_key: Option<String>,
    model: String,
    tokenizer: Arc<Tokenizer>,
    context_length: usize,
    http: reqwest::Client,
    parallel: Arc<Semaphore>,
    timeout: Duration,
}

/// Largest upstream answer read (bytes).
const MAX_UPSTREAM_BODY: usize = 64 << 20;

impl UpstreamReference {
    /// Verifies `model` through the server at `base_url`, whose tokenizer is `tokenizer` and
    /// context `context_length` tokens (see [`Tokenizer::from_gguf_with_context`]: no weights).
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: impl Into<String>,
        tokenizer: Arc<Tokenizer>,
        context_length: usize,
        timeout: Duration,
    ) -> Result<UpstreamReference> {
        UpstreamReference::with_tls(base_url, api_key, model, tokenizer, context_length, timeout, &ganglion_tls::ClientTls::system())
    }

    /// As [`UpstreamReference::new`], verifying an `https://` server with `tls`'s roots.
    pub fn with_tls(
        base_url: &str,
        api_key: Option<String>,
        model: impl Into<String>,
        tokenizer: Arc<Tokenizer>,
        context_length: usize,
        timeout: Duration,
        tls: &ganglion_tls::ClientTls,
    ) -> Result<UpstreamReference> {
        let http = tls.http_builder().connect_timeout(Duration::from_secs(5)).build().map_err(|e| InferenceError::Http(e.to_string()))?;
        Ok(UpstreamReference {
            base_url: base_url.to_string(),
            api_key,
            model: model.into(),
            tokenizer,
            context_length,
            http,
            parallel: Arc::new(Semaphore::new(4)),
            timeout,
        })
    }

    async fn post(&self, body: Value) -> Result<Value> {
        let _permit = self.parallel.acquire().await.map_err(|_| InferenceError::Reference("reference closed".into()))?;
        let url = join_url(&self.base_url, "/v1/completions");
        let mut request = self.http.post(&url).json(&body).timeout(self.timeout);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let fail = |what: String| InferenceError::Reference(format!("{url}: {what}"));
        let response = request.send().await.map_err(|e| fail(ganglion_tls::describe_http_error(&e)))?;
        let status = response.status();
        let bytes = read_limited(response, MAX_UPSTREAM_BODY).await.map_err(fail)?;
        if !status.is_success() {
            return Err(fail(format!("status {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)]))));
        }
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("answer is not JSON: {e}")))
    }
}

/// Reads a response body of at most `limit` bytes.
pub(crate) async fn read_limited(response: reqwest::Response, limit: usize) -> std::result::Result<Vec<u8>, String> {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Parses vLLM `prompt_logprobs` (`[null, {id: {logprob, rank, decoded_token}}, …]`) into
/// scores of positions `from..` of `ids`.
pub fn parse_prompt_logprobs(value: &Value, ids: &[u32], from: usize, top_k: usize) -> std::result::Result<Vec<TokenScore>, String> {
    let positions = value.as_array().ok_or("prompt_logprobs is not a list")?;
    if positions.len() != ids.len() {
        return Err(format!("prompt_logprobs has {} positions for {} prompt tokens", positions.len(), ids.len()));
    }
    let mut out = Vec::with_capacity(ids.len().saturating_sub(from));
    for (pos, &id) in ids.iter().enumerate().skip(from.max(1)) {
        let map = positions[pos].as_object().ok_or_else(|| format!("position {pos} is not an object"))?;
        let entry = |key: &str| -> Option<(f32, u32)> {
            let e = map.get(key)?;
            Some((e.get("logprob")?.as_f64()? as f32, u32::try_from(e.get("rank")?.as_u64()?).ok()?))
        };
        let (logprob, rank) = entry(&id.to_string()).ok_or_else(|| format!("position {pos} lacks the actual token {id}"))?;
        let mut top: Vec<(u32, f32, u32)> = map
            .keys()
            .filter_map(|k| {
                let tid = k.parse::<u32>().ok()?;
                let (lp, r) = entry(k)?;
                Some((tid, lp, r))
            })
            .filter(|&(_, _, r)| r as usize <= top_k)
            .collect();
        top.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        out.push(TokenScore { token: id, logprob, rank, top: top.into_iter().map(|(t, lp, _)| (t, lp)).collect() });
    }
    Ok(out)
}

#[async_trait]
impl Reference for UpstreamReference {
    fn model(&self) -> &str {
        &self.model
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn context_length(&self) -> usize {
        self.context_length
    }

    async fn score(&self, prompt: Vec<u32>, completions: Vec<Vec<u32>>, top_k: usize) -> Result<Vec<Vec<TokenScore>>> {
        let jobs = completions.into_iter().map(|completion| {
            let prompt = &prompt;
            async move {
                if completion.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<u32> = prompt.iter().chain(&completion).copied().collect();
                let answer = self
                    .post(json!({
                        "model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0,
                        "prompt_logprobs": top_k,
                    }))
                    .await?;
                let logprobs = answer
                    .pointer("/choices/0/prompt_logprobs")
                    .filter(|v| !v.is_null())
                    .or_else(|| answer.get("prompt_logprobs"))
                    .ok_or_else(|| InferenceError::Reference("the upstream answered without prompt_logprobs; it must support vLLM's prompt_logprobs".into()))?;
                parse_prompt_logprobs(logprobs, &ids, prompt.len(), top_k).map_err(InferenceError::Reference)
            }
        });
        futures::future::try_join_all(jobs).await
    }

    async fn generate(&self, prompt: Vec<u32>, sampling: Sampling) -> Result<Generated> {
        let mut body = json!({
            "model": self.model, "prompt": prompt, "logprobs": 0, "return_tokens_as_token_ids": true,
        });
        sampling.write_into(&mut body);
        let answer = self.post(body).await?;
        let bad = |what: &str| InferenceError::Reference(format!("upstream generation: {what}"));
        let choice = answer.pointer("/choices/0").ok_or_else(|| bad("no choices"))?;
        let text = choice.get("text").and_then(Value::as_str).ok_or_else(|| bad("no text"))?.to_string();
        let tokens = choice
            .pointer("/logprobs/tokens")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no logprobs.tokens (return_tokens_as_token_ids unsupported?)"))?
            .iter()
            .map(|t| t.as_str().and_then(|s| s.strip_prefix("token_id:")).and_then(|d| d.parse::<u32>().ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| bad("tokens are not token_id:<id>"))?;
        let finish = if choice.get("finish_reason").and_then(Value::as_str) == Some("length") { "length" } else { "stop" };
        Ok(Generated { tokens, text, finish })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_logprobs_parse_with_ranks() {
        let value = json!([
            null,
            {"5": {"logprob": -0.5, "rank": 2, "decoded_token": "a"}, "9": {"logprob": -0.2, "rank": 1, "decoded_token": "b"}},
            {"7": {"logprob": -3.0, "rank": 40, "decoded_token": "c"}, "1": {"logprob": -0.1, "rank": 1, "decoded_token": "d"}},
        ]);
        let scores = parse_prompt_logprobs(&value, &[3, 5, 7], 1, 2).unwrap();
        assert_eq!(scores.len(), 2);
        assert_eq!((scores[0].token, scores[0].rank), (5, 2));
        assert_eq!(scores[0].top, vec![(9, -0.2), (5, -0.5)]);
        assert_eq!(scores[1].top, vec![(1, -0.1)], "rank 40 is outside the top 2");
        assert!(parse_prompt_logprobs(&value, &[3, 5], 1, 2).is_err(), "length mismatch");
        assert!(parse_prompt_logprobs(&value, &[3, 6, 7], 1, 2).is_err(), "missing actual token");
    }
}
