//! Verification of miners' responses, in two modes that share the structural checks.
//!
//! Every response first passes [`check_structure`]: token ids present (`token_id:<id>`),
//! inside the vocabulary and decoding to the streamed text; a `finish_reason`; a `usage`
//! that agrees with what was streamed and with the prompt; length within bounds; and no
//! pre-generated burst (`BAD_STREAM`, v4's rule). Then one mode judges the tokens:
//! - [`logprob`]: teacher-forced through the validator's model ([`VerifyMode::Logprob`]);
//! - [`ground_truth`]: compared with a same-seed regeneration ([`VerifyMode::GroundTruth`]).
//!
//! [`verify_round`] verifies all responses to one request together: identical completions
//! are scored once, and all distinct ones go to the reference in one call so the prompt is
//! run once. A failure of the validator's own model is not held against anyone: those
//! responses come back [`Outcome::Unverifiable`].

pub mod ground_truth;
pub mod logprob;
pub mod stats;

use std::collections::HashMap;

use ganglion_engine::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cause::{Cause, Failure};
use crate::jaro::ChunkRule;
use crate::openai::InferenceRequest;
use crate::reference::{Reference, end_tokens};
use crate::stream::Streamed;

pub use logprob::LogprobConfig;

/// Which verifier judges the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Teacher-forced logprob checks (default).
    Logprob,
    /// Same-seed regeneration and Jaro-Winkler comparison.
    GroundTruth,
}

impl std::str::FromStr for VerifyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "logprob" => Ok(VerifyMode::Logprob),
            "ground-truth" | "ground_truth" | "groundtruth" => Ok(VerifyMode::GroundTruth),
            other => Err(format!("unknown verification mode `{other}`; use logprob or ground-truth")),
        }
    }
}

impl VerifyMode {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            VerifyMode::Logprob => "logprob",
            VerifyMode::GroundTruth => "ground-truth",
        }
    }
}

/// Settings shared by both modes.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyConfig {
    /// The mode.
    pub mode: VerifyMode,
    /// Refuse responses without `token_id:<id>` tokens (`MISSING_TOKEN_IDS`). When false,
    /// text-only responses are re-tokenized with the validator's tokenizer (what Targon v5
    /// did) and judged leniently — as samples at temperature ≥ 1 without nucleus, since the
    /// re-tokenization need not be the token path the miner's model took; token counts
    /// then come from the re-tokenization.
    pub require_token_ids: bool,
    /// Refuse responses without a `usage` chunk (`MISSING_USAGE`). Servers that do not
    /// implement `stream_options.include_usage` (llama.cpp's, for one) need this off.
    pub require_usage: bool,
    /// Fewer tokens than this is `TOO_SHORT` (the original's 3).
    pub min_tokens: usize,
    /// `usage.completion_tokens` may differ from the streamed count by this much.
    pub usage_tolerance: u64,
    /// `BAD_STREAM` applies to responses of at least this many tokens (the original: 60).
    pub bad_stream_min_tokens: usize,
    /// Logprob mode thresholds.
    pub logprob: LogprobConfig,
    /// Ground-truth pass rule.
    pub chunks: ChunkRule,
    /// Two responses in a round sharing a prefix less likely than `e^this` under fair
    /// sampling are [`Cause::Duplicate`] (−20: one in 485 million per pair).
    pub duplicate_log_probability: f64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            mode: VerifyMode::Logprob,
            require_token_ids: true,
            require_usage: true,
            min_tokens: 3,
            usage_tolerance: 1,
            bad_stream_min_tokens: 60,
            logprob: LogprobConfig::default(),
            chunks: ChunkRule::default(),
            duplicate_log_probability: -20.0,
        }
    }
}

/// The result of verifying one response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It passed.
    Verified,
    /// It failed, with the cause.
    Failed(Failure),
    /// The validator could not judge it (its own model failed); not held against the miner.
    Unverifiable(String),
}

/// A verdict with what was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Pass, fail or unverifiable.
    pub outcome: Outcome,
    /// Completion tokens counted (for tokens per second).
    pub tokens: u32,
    /// Ground truth: the similarity; logprob mode: None.
    pub similarity: Option<f64>,
    /// Measurements for the record (`detail` column).
    pub stats: Value,
    /// Logprob mode: the statistics' evidence, for accumulation per miner.
    #[serde(skip)]
    pub evidence: Option<ResponseEvidence>,
}

/// What a logprob verdict contributes beyond pass/fail (see [`logprob`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResponseEvidence {
    /// Per sampler family ([`ganglion_engine::distribution::Family::ALL`] order).
    pub families: Vec<stats::Evidence>,
    /// The token ids judged.
    pub ids: Vec<u32>,
    /// Cumulative clipped log-probability of the first `i + 1` tokens, the most lenient
    /// family's at each position (an upper bound on the sequence's probability).
    pub prefix_loglik: Vec<f64>,
    /// Sampled at temperature > 0 (duplicates are only meaningful then).
    pub stochastic: bool,
}

impl Verdict {
    /// A failure verdict.
    pub fn failed(failure: Failure, tokens: u32, stats: Value) -> Verdict {
        Verdict { outcome: Outcome::Failed(failure), tokens, similarity: None, stats, evidence: None }
    }

    /// Whether it passed.
    pub fn verified(&self) -> bool {
        self.outcome == Outcome::Verified
    }

    /// The failure, if it failed.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// The miner's completion as token ids, after the structural checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Completion token ids (an end token included if the miner sent one).
    pub ids: Vec<u32>,
    /// Reported logprob per token.
    pub reported: Vec<Option<f64>>,
    /// Whether the ids come from re-tokenizing the text.
    pub retokenized: bool,
    /// Whether the response ended with `finish_reason: stop`.
    pub stopped: bool,
}

fn normalise(text: &str) -> String {
    text.replace('\u{FFFD}', "").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The structural checks of the module doc. `prompt_tokens` is the prompt's length under
/// the validator's tokenizer.
pub fn check_structure(
    streamed: &Streamed,
    request: &InferenceRequest,
    prompt_tokens: usize,
    tokenizer: &Tokenizer,
    config: &VerifyConfig,
) -> Result<Checked, Failure> {
    let ends = end_tokens(tokenizer);
    let vocab = tokenizer.vocab_size();
    if streamed.tokens.is_empty() && streamed.text.is_empty() {
        return Err(Failure::new(Cause::TooShort, "the answer is empty"));
    }
    let all_ids = !streamed.tokens.is_empty() && streamed.tokens.iter().all(|t| t.id.is_some());
    // Servers that stream each token's text but not its id (llama.cpp's completions): the
    // path is recovered when every piece is exactly one token's text and the pieces spell
    // the streamed text; otherwise the text is re-tokenized below.
    let recovered: Option<Vec<u32>> = (!all_ids && !streamed.tokens.is_empty())
        .then(|| streamed.tokens.iter().map(|t| tokenizer.token_for_piece(&t.raw)).collect::<Option<Vec<u32>>>())
        .flatten()
        .filter(|ids| normalise(&tokenizer.decode(ids, false)) == normalise(&streamed.text));
    let mut checked = if all_ids || recovered.is_some() {
        let ids: Vec<u32> = match recovered {
            Some(ids) => ids,
            None => streamed.tokens.iter().filter_map(|t| t.id).collect(),
        };
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Failure::new(Cause::WrongTokenIds, format!("token id {bad} is outside the vocabulary of {vocab}")));
        }
        let plain: Vec<u32> = ids.iter().copied().filter(|id| !ends.contains(id)).collect();
        let decoded = normalise(&tokenizer.decode(&plain, false));
        let text = normalise(&streamed.text);
        if decoded != text && normalise(&tokenizer.decode(&plain, true)) != text {
            let preview = |s: &str| s.chars().take(60).collect::<String>();
            return Err(Failure::new(
                Cause::WrongTokenIds,
                format!("the token ids decode to {:?}… but the text was {:?}…", preview(&decoded), preview(&text)),
            ));
        }
        if let Some(t) = streamed.tokens.iter().find(|t| t.logprob.is_none()) {
            return Err(Failure::new(Cause::MissingLogprobs, format!("token {} came without its logprob (logprobs were asked for)", t.raw)));
        }
        Checked { ids, reported: streamed.tokens.iter().map(|t| t.logprob).collect(), retokenized: false, stopped: false }
    } else if config.require_token_ids {
        let detail = match streamed.tokens.iter().find(|t| t.id.is_none()) {
            Some(t) => format!("token {:?} is not in the form token_id:<id> (return_tokens_as_token_ids)", t.raw),
            None => "text arrived without logprobs tokens (logprobs + return_tokens_as_token_ids were asked for)".into(),
        };
        return Err(Failure::new(Cause::MissingTokenIds, detail));
    } else {
        let ids = tokenizer.encode_plain(&streamed.text);
        Checked { reported: vec![None; ids.len()], ids, retokenized: true, stopped: false }
    };
    let n = checked.ids.len();
    let max_tokens = request.sampling.max_tokens as usize;
    // Re-tokenized text may count a token or two more than the miner generated.
    let slack = if checked.retokenized { (max_tokens / 20).max(2) } else { 0 };
    if n > max_tokens + slack {
        return Err(Failure::new(Cause::TooLong, format!("{n} tokens, more than max_tokens {max_tokens}")));
    }
    let Some(finish) = streamed.finish_reason.as_deref() else {
        return Err(Failure::new(Cause::MissingFinish, "no chunk carried a finish_reason"));
    };
    checked.stopped = finish == "stop";
    // A short answer that says it stopped is left to the verifier, which asks the model
    // whether it would have stopped there too; anything else that short is refused.
    if n < config.min_tokens && !checked.stopped {
        return Err(Failure::new(Cause::TooShort, format!("{n} tokens, fewer than {}", config.min_tokens)));
    }
    match finish {
        "stop" => {}
        "length" if n + slack >= max_tokens => {}
        // Re-tokenized text can be far shorter than what the model generated (a sampler
        // at high temperature often spells words in more tokens than the canonical
        // tokenization), so its count says nothing about where generation stopped.
        "length" if checked.retokenized => {}
        "length" => {
            return Err(Failure::new(Cause::EarlyEnd, format!("finish_reason length after {n} of max_tokens {max_tokens}")));
        }
        other => return Err(Failure::new(Cause::EarlyEnd, format!("finish_reason {other:?}; expected stop or length"))),
    }
    match streamed.usage {
        None if config.require_usage => {
            return Err(Failure::new(Cause::MissingUsage, "no usage chunk (stream_options.include_usage was asked for)"));
        }
        None => {}
        Some(usage) => {
            match usage.completion_tokens {
                None => return Err(Failure::new(Cause::MissingUsage, "usage has no completion_tokens")),
                Some(claimed) => {
                    let fits = if checked.retokenized {
                        (claimed as f64) >= 0.5 * n as f64 && (claimed as f64) <= 2.0 * n as f64
                    } else {
                        claimed.abs_diff(n as u64) <= config.usage_tolerance
                    };
                    if !fits {
                        return Err(Failure::new(Cause::UsageMismatch, format!("usage claims {claimed} completion tokens, {n} were streamed")));
                    }
                }
            }
            if let Some(claimed) = usage.prompt_tokens {
                let ratio = claimed as f64 / prompt_tokens.max(1) as f64;
                if !(0.5..=2.0).contains(&ratio) {
                    return Err(Failure::new(Cause::UsageMismatch, format!("usage claims {claimed} prompt tokens, the prompt has {prompt_tokens}")));
                }
            }
        }
    }
    if n >= config.bad_stream_min_tokens {
        let times: Vec<std::time::Duration> =
            if checked.retokenized { streamed.content_times.clone() } else { streamed.tokens.iter().map(|t| t.at).collect() };
        let index = ((times.len() as f64 * 0.05).ceil() as usize).clamp(1, times.len().max(1)) - 1;
        if let Some(at) = times.get(index)
            && at.as_secs_f64() >= 0.85 * streamed.total.as_secs_f64()
        {
            return Err(Failure::new(
                Cause::BadStream,
                format!("token {} of {} arrived at {:.2}s of {:.2}s: the answer was sent in a burst", index + 1, times.len(), at.as_secs_f64(), streamed.total.as_secs_f64()),
            ));
        }
    }
    Ok(checked)
}

/// Verifies every response to `request` (see the module doc). `responses[i]` is `None`
/// when response `i` already failed in transport (its verdict is made by the caller).
pub async fn verify_round(
    reference: &dyn Reference,
    request: &InferenceRequest,
    responses: &[Option<&Streamed>],
    config: &VerifyConfig,
) -> Vec<Option<Verdict>> {
    let requests = vec![request; responses.len()];
    verify_each(reference, &requests, responses, config).await
}

/// [`verify_round`] where each response answers its own request (validators give every
/// miner its own prompt and seed). Responses to equal requests are verified together; then
/// completions shared by several miners where fair draws would differ are
/// [`Cause::Duplicate`].
pub async fn verify_each(
    reference: &dyn Reference,
    requests: &[&InferenceRequest],
    responses: &[Option<&Streamed>],
    config: &VerifyConfig,
) -> Vec<Option<Verdict>> {
    let mut verdicts: Vec<Option<Verdict>> = vec![None; responses.len()];
    let mut groups: Vec<(&InferenceRequest, Vec<usize>)> = Vec::new();
    for (i, (request, response)) in requests.iter().zip(responses).enumerate() {
        if response.is_none() {
            continue;
        }
        match groups.iter_mut().find(|(r, _)| *r == *request) {
            Some((_, members)) => members.push(i),
            None => groups.push((request, vec![i])),
        }
    }
    for (request, members) in groups {
        let group: Vec<Option<&Streamed>> = members.iter().map(|&i| responses[i]).collect();
        let judged = verify_one_request(reference, request, &group, config).await;
        for (i, verdict) in members.into_iter().zip(judged) {
            verdicts[i] = verdict;
        }
    }
    flag_duplicates(&mut verdicts, requests, config.duplicate_log_probability);
    verdicts
}

/// Marks [`Cause::Duplicate`] every pair of verified stochastic responses to *different*
/// requests (another prompt or seed: the same request may legitimately get the same answer
/// from two deterministic same-seed engines) that share a prefix whose probability (bounded
/// above through the most lenient family) is below `e^log_probability`: two independent
/// fair draws agree that far with at most that probability.
fn flag_duplicates(verdicts: &mut [Option<Verdict>], requests: &[&InferenceRequest], log_probability: f64) {
    let mut flagged: Vec<(usize, usize, usize)> = Vec::new();
    let live: Vec<(usize, &ResponseEvidence)> = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v = v.as_ref()?;
            let e = v.evidence.as_ref()?;
            (v.verified() && e.stochastic).then_some((i, e))
        })
        .collect();
    for (x, &(i, a)) in live.iter().enumerate() {
        for &(j, b) in &live[x + 1..] {
            if requests.get(i) == requests.get(j) {
                continue;
            }
            let common = a.ids.iter().zip(&b.ids).take_while(|(p, q)| p == q).count();
            if common == 0 {
                continue;
            }
            let bound = |e: &ResponseEvidence| e.prefix_loglik.get(common - 1).copied().unwrap_or(0.0);
            if bound(a).max(bound(b)) < log_probability {
                flagged.push((i, j, common));
            }
        }
    }
    for (i, j, common) in flagged {
        for (me, other) in [(i, j), (j, i)] {
            if let Some(v) = verdicts[me].as_mut()
                && v.verified()
            {
                v.outcome = Outcome::Failed(Failure::new(
                    Cause::Duplicate,
                    format!("the first {common} tokens equal response {other}'s in this round; fair independent draws agree that far with probability < e^{log_probability:.0}"),
                ));
            }
        }
    }
}

async fn verify_one_request(
    reference: &dyn Reference,
    request: &InferenceRequest,
    responses: &[Option<&Streamed>],
    config: &VerifyConfig,
) -> Vec<Option<Verdict>> {
    let tokenizer = reference.tokenizer();
    let prompt = match request.prompt_tokens(tokenizer) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("cannot tokenize the prompt: {e}");
            return responses.iter().map(|r| r.map(|_| unverifiable(&reason))).collect();
        }
    };
    let checked: Vec<Option<Result<Checked, Failure>>> =
        responses.iter().map(|r| r.map(|s| check_structure(s, request, prompt.len(), tokenizer, config))).collect();
    match config.mode {
        VerifyMode::Logprob => logprob_round(reference, request, &prompt, &checked, config).await,
        VerifyMode::GroundTruth => ground_truth_round(reference, request, &prompt, responses, &checked, config).await,
    }
}

/// The seed of the validator's uniform draws for one response: from the request's seed (the
/// validator's secret until it asks) and the tokens, so a verdict can be reproduced.
fn noise_seed(request: &InferenceRequest, ids: &[u32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request.sampling.seed.hash(&mut h);
    ids.hash(&mut h);
    h.finish()
}

fn unverifiable(reason: &str) -> Verdict {
    Verdict { outcome: Outcome::Unverifiable(reason.to_string()), tokens: 0, similarity: None, stats: Value::Null, evidence: None }
}

fn structural_failure(failure: &Failure) -> Verdict {
    Verdict::failed(failure.clone(), 0, json!({"stage": "structure"}))
}

async fn logprob_round(
    reference: &dyn Reference,
    request: &InferenceRequest,
    prompt: &[u32],
    checked: &[Option<Result<Checked, Failure>>],
    config: &VerifyConfig,
) -> Vec<Option<Verdict>> {
    let tokenizer = reference.tokenizer();
    let ends = end_tokens(tokenizer);
    let room = reference.context_length().saturating_sub(prompt.len());
    // The sequence to score per response: its tokens, plus an end token when it stopped
    // without one (to ask the model whether stopping there was plausible).
    let mut unique: Vec<Vec<u32>> = Vec::new();
    let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut plan: Vec<Option<Result<(usize, bool), String>>> = Vec::with_capacity(checked.len());
    for c in checked {
        let Some(Ok(c)) = c else {
            plan.push(None);
            continue;
        };
        let append = c.stopped && !ends.is_empty() && c.ids.last().is_none_or(|last| !ends.contains(last));
        let mut seq = c.ids.clone();
        if append {
            seq.push(ends[0]);
        }
        if seq.len() > room {
            plan.push(Some(Err(format!("{} tokens do not fit the reference's context after a {}-token prompt", seq.len(), prompt.len()))));
            continue;
        }
        let at = *index.entry(seq.clone()).or_insert_with(|| {
            unique.push(seq);
            unique.len() - 1
        });
        plan.push(Some(Ok((at, append))));
    }
    // Re-tokenized text need not follow the token path the miner's model took (a word can be
    // spelled by several token sequences, and the model's probabilities depend on which),
    // so exact-choice rules (greedy argmax, nucleus) cannot apply: it is placed as a sample
    // at temperature ≥ 1 without truncation and judged leniently.
    let retokenized = checked.iter().any(|c| matches!(c, Some(Ok(c)) if c.retokenized));
    let mut sampling = request.sampling;
    if retokenized {
        sampling.temperature = sampling.temperature.max(1.0);
        sampling.top_p = 1.0;
        sampling.top_k = 0;
    }
    let placed = if unique.is_empty() {
        Ok(crate::reference::Placed { scores: Vec::new(), placements: Vec::new(), exact: true })
    } else {
        reference.place(prompt.to_vec(), unique.clone(), config.logprob.top_k, sampling, config.logprob.margin).await
    };
    let placed = match placed {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("the reference model failed: {e}");
            return checked
                .iter()
                .map(|c| c.as_ref().map(|c| match c {
                    Ok(_) => unverifiable(&reason),
                    Err(f) => structural_failure(f),
                }))
                .collect();
        }
    };
    checked
        .iter()
        .zip(&plan)
        .map(|(c, plan)| {
            let c = c.as_ref()?;
            let c = match c {
                Ok(c) => c,
                Err(f) => return Some(structural_failure(f)),
            };
            let (at, appended) = match plan.as_ref()? {
                Ok(p) => *p,
                Err(reason) => return Some(unverifiable(reason)),
            };
            let (Some(seq_scores), Some(seq_placed)) = (placed.scores.get(at), placed.placements.get(at)) else {
                return Some(unverifiable("the reference returned fewer results than asked"));
            };
            let input = logprob::LogprobInput {
                tokens: &c.ids,
                reported: &c.reported,
                scores: seq_scores,
                placements: seq_placed,
                appended_end: appended,
                sampling: &sampling,
                end_tokens: &ends,
                lenient: c.retokenized,
                noise_seed: noise_seed(request, &c.ids),
            };
            let (judged, result) = logprob::judge(&input, &config.logprob);
            let evidence = ResponseEvidence {
                // Re-tokenized text is judged as a T ≥ 1 sample it was not drawn as: its
                // statistics say nothing about the miner and are not accumulated.
                families: if c.retokenized { Vec::new() } else { judged.evidence() },
                ids: c.ids.clone(),
                prefix_loglik: seq_placed
                    .iter()
                    .take(c.ids.len())
                    .scan(0.0, |sum, families| {
                        *sum += families.iter().map(|p| p.loglik).fold(f64::NEG_INFINITY, f64::max).min(0.0);
                        Some(*sum)
                    })
                    .collect(),
                stochastic: sampling.temperature > 0.0 && !c.retokenized,
            };
            let mut stats = serde_json::to_value(&judged).unwrap_or(Value::Null);
            stats["retokenized"] = json!(c.retokenized);
            stats["exact_reference"] = json!(placed.exact);
            let tokens = c.ids.len() as u32;
            Some(match result {
                Ok(()) => Verdict { outcome: Outcome::Verified, tokens, similarity: None, stats, evidence: Some(evidence) },
                Err(f) => Verdict { evidence: Some(evidence), ..Verdict::failed(f, tokens, stats) },
            })
        })
        .collect()
}

async fn ground_truth_round(
    reference: &dyn Reference,
    request: &InferenceRequest,
    prompt: &[u32],
    responses: &[Option<&Streamed>],
    checked: &[Option<Result<Checked, Failure>>],
    config: &VerifyConfig,
) -> Vec<Option<Verdict>> {
    let needs_truth = checked.iter().any(|c| matches!(c, Some(Ok(_))));
    let truth = if needs_truth { Some(reference.generate(prompt.to_vec(), request.sampling).await) } else { None };
    checked
        .iter()
        .zip(responses)
        .map(|(c, streamed)| {
            let c = c.as_ref()?;
            let c = match c {
                Ok(c) => c,
                Err(f) => return Some(structural_failure(f)),
            };
            let truth = match &truth {
                Some(Ok(t)) => t,
                Some(Err(e)) => return Some(unverifiable(&format!("the reference model failed: {e}"))),
                None => return Some(unverifiable("no regeneration")),
            };
            let text = streamed.map_or("", |s| s.text.as_str());
            let (stats, similarity, result) = ground_truth::judge(&c.ids, text, truth, &config.chunks);
            let mut stats = serde_json::to_value(&stats).unwrap_or(Value::Null);
            stats["retokenized"] = json!(c.retokenized);
            stats["truth_tokens"] = json!(truth.tokens.len());
            let tokens = c.ids.len() as u32;
            Some(Verdict {
                outcome: match result {
                    Ok(()) => Outcome::Verified,
                    Err(f) => Outcome::Failed(f),
                },
                tokens,
                similarity: Some(similarity),
                stats,
                evidence: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{Endpoint, Prompt, Sampling};

    fn request(seed: u64) -> InferenceRequest {
        InferenceRequest {
            model: "m".into(),
            endpoint: Endpoint::Completion,
            prompt: Prompt::Text(format!("prompt {seed}")),
            sampling: Sampling { temperature: 0.8, seed: Some(seed), ..Sampling::default() },
        }
    }

    fn verified(ids: Vec<u32>, per_token: f64) -> Option<Verdict> {
        let prefix_loglik = (1..=ids.len()).map(|k| per_token * k as f64).collect();
        let evidence = ResponseEvidence { families: Vec::new(), ids, prefix_loglik, stochastic: true };
        Some(Verdict { outcome: Outcome::Verified, tokens: 0, similarity: None, stats: Value::Null, evidence: Some(evidence) })
    }

    fn causes(v: &[Option<Verdict>]) -> Vec<Option<Cause>> {
        v.iter().map(|v| v.as_ref().and_then(|v| v.failure().map(|f| f.cause))).collect()
    }

    #[test]
    fn improbable_shared_prefixes_across_requests_are_duplicates() {
        let (a, b, c) = (request(1), request(2), request(3));
        let ids: Vec<u32> = (0..30).collect();
        // 30 shared tokens at −1 nat each: e^−30 < e^−20 → both flagged; the third differs.
        let mut v = vec![verified(ids.clone(), -1.0), verified(ids.clone(), -1.0), verified((100..130).collect(), -1.0)];
        flag_duplicates(&mut v, &[&a, &b, &c], -20.0);
        assert_eq!(causes(&v), vec![Some(Cause::Duplicate), Some(Cause::Duplicate), None]);
        // A likely shared prefix (a near-deterministic answer) is no evidence.
        let mut v = vec![verified(ids.clone(), -0.1), verified(ids.clone(), -0.1)];
        flag_duplicates(&mut v, &[&a, &b], -20.0);
        assert_eq!(causes(&v), vec![None, None]);
        // The same request may get the same answer from two same-seed deterministic engines.
        let mut v = vec![verified(ids.clone(), -1.0), verified(ids, -1.0)];
        flag_duplicates(&mut v, &[&a, &a], -20.0);
        assert_eq!(causes(&v), vec![None, None]);
    }
}
