//! `ganglion bench verify`: how often the verifier fails a server's answers, measured.
//!
//! Sends the validator's own synthetic requests — drawn exactly as its step draws them, over
//! its whole sampling range — straight to an OpenAI-compatible server, reads each stream
//! with the validator's reader and verifies it with the validator's verifier against a
//! reference. For an honest server every failure is a false positive, so the report's
//! failure rate, with its one-sided 95% Clopper–Pearson upper bound, is the verifier's
//! false-positive rate on that server's kernels, batch shapes and sampler order. Pointed at
//! a dishonest server (the red team's), the same figure is the verifier's power per
//! response; [`SoundnessReport::condemned_after`] adds the power of the per-miner
//! accumulated test (the response at which the accumulated evidence first failed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ganglion_core::keys::Keypair;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::error::{InferenceError, Result};
use crate::openai::{InferenceRequest, join_url};
use crate::prompts::PromptBank;
use crate::reference::Reference;
use crate::scoring::Scoreboard;
use crate::stream::{StreamLimits, read_stream};
use crate::validator::synthetic_request;
use crate::verify::{Outcome, VerifyConfig, verify_each};

/// Settings of [`measure`].
#[derive(Debug, Clone)]
pub struct SoundnessOptions {
    /// The server's base URL (`http://host:port` or `…/v1`).
    pub upstream: String,
    /// Bearer key for it.
    pub api_key: Option<String>,
    /// The model name to ask for (the reference's).
    pub model: String,
    /// Responses to collect.
    pub responses: usize,
    /// Requests in flight at once (exercises the server's batching).
    pub concurrency: usize,
    /// Smallest and largest `max_tokens` drawn.
    pub tokens: (u32, u32),
    /// Seed of the request draws (so two runs send the same requests).
    pub seed: u64,
    /// Verification settings (text-only mode for servers without token ids).
    pub verify: VerifyConfig,
    /// Per-miner accumulated test budget.
    pub miner_alpha: f64,
}

/// What [`measure`] found.
#[derive(Debug, Clone, Serialize)]
pub struct SoundnessReport {
    /// The server.
    pub upstream: String,
    /// `token ids` or `text only`.
    pub mode: &'static str,
    /// Responses asked for.
    pub requested: usize,
    /// Responses the verifier judged (verified + failed).
    pub judged: usize,
    /// Passed.
    pub verified: usize,
    /// Failed verification.
    pub failed: usize,
    /// Failed in transport (not judged; a server problem, not the verifier's).
    pub transport_errors: usize,
    /// Could not be judged (the reference failed).
    pub unverifiable: usize,
    /// Judged responses whose exact token path was known (ids streamed or recovered from
    /// per-token pieces) — the rest were re-tokenized text, judged leniently.
    pub exact_paths: usize,
    /// The largest gap (nats) below the argmax of a greedy token in a verified response, in
    /// the family that passed with the smallest one: how much of the margin the server used.
    pub largest_greedy_gap: f64,
    /// Failures by cause.
    pub causes: BTreeMap<String, usize>,
    /// `failed / judged`.
    pub failure_rate: f64,
    /// One-sided 95% Clopper–Pearson upper bound of the failure rate.
    pub failure_rate_upper95: f64,
    /// Failures by sampling setting: `greedy`, `T<0.6`, `T≥0.6`, with/without top_k and penalty.
    pub by_setting: BTreeMap<String, (usize, usize)>,
    /// The response (1-based, among judged) at which the per-miner accumulated evidence first
    /// failed, if it did.
    pub condemned_after: Option<usize>,
    /// Up to five failure details.
    pub examples: Vec<String>,
    /// Wall time.
    pub seconds: f64,
    /// Stopped (by a signal) before all responses were judged.
    pub stopped_early: bool,
}

/// One-sided upper `1 − alpha` Clopper–Pearson bound for `k` events in `n` trials.
pub fn clopper_pearson_upper(k: usize, n: usize, alpha: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if k >= n {
        return 1.0;
    }
    // P(X ≤ k; n, p) decreases in p: bisect for the p where it equals alpha.
    let cdf = |p: f64| -> f64 {
        let (n, k) = (n as f64, k as f64);
        let mut term = (n * (1.0 - p).ln()).exp();
        let mut sum = term;
        let mut i = 0.0;
        while i < k {
            term *= (n - i) / (i + 1.0) * p / (1.0 - p);
            sum += term;
            i += 1.0;
        }
        sum
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > alpha { lo = mid } else { hi = mid }
    }
    hi
}

fn setting(request: &InferenceRequest) -> String {
    let s = &request.sampling;
    let t = if s.temperature <= 0.0 {
        "greedy"
    } else if s.temperature < 0.6 {
        "T<0.6"
    } else {
        "T>=0.6"
    };
    let k = if s.top_k > 0 { "+top_k" } else { "" };
    let r = if s.repetition_penalty != 1.0 { "+penalty" } else { "" };
    format!("{t}{k}{r}")
}

/// Sends `options.responses` synthetic requests to the server and verifies every answer
/// with `reference`; `progress(done, failed)` is called after each. When `stop` resolves
/// first, the report covers what was judged so far ([`SoundnessReport::stopped_early`]).
pub async fn measure(
    reference: Arc<dyn Reference>,
    options: &SoundnessOptions,
    mut progress: impl FnMut(usize, usize),
    stop: impl std::future::Future<Output = ()>,
) -> Result<SoundnessReport> {
    tokio::pin!(stop);
    let started = Instant::now();
    let bank = PromptBank::locate();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let exact = reference.exact();
    let requests: Vec<InferenceRequest> = (0..options.responses)
        .map(|_| synthetic_request(&bank, &mut rng, &options.model, Some(reference.tokenizer()), options.tokens, exact))
        .collect();
    let http = ganglion_tls::ClientTls::system().http_builder().connect_timeout(Duration::from_secs(5)).build().map_err(|e| InferenceError::Http(e.to_string()))?;
    let limits = StreamLimits::for_tokens(options.tokens.1, Duration::from_secs(120), Duration::from_secs(600));
    let fetch = |request: InferenceRequest| {
        let http = http.clone();
        let url = join_url(&options.upstream, request.endpoint.path());
        let key = options.api_key.clone();
        async move {
            let t0 = Instant::now();
            let mut builder = http.post(&url).json(&request.body());
            if let Some(key) = key {
                builder = builder.bearer_auth(key);
            }
            let answer = match builder.send().await {
                Ok(r) if r.status().is_success() => Some(read_stream(r.bytes_stream(), request.endpoint, limits, t0).await),
                Ok(r) => {
                    tracing::warn!(target: "ganglion::bench", status = %r.status(), "the server refused a request");
                    None
                }
                Err(e) => {
                    tracing::warn!(target: "ganglion::bench", "request failed: {e}");
                    None
                }
            };
            (request, answer)
        }
    };
    let mut answers = futures::stream::iter(requests.into_iter().map(fetch)).buffer_unordered(options.concurrency.max(1));
    let mut board = Scoreboard::new(0, 30);
    let miner = Keypair::from_uri("//SoundnessProbe").map_err(|e| InferenceError::Config(e.to_string()))?.public();
    let mut report = SoundnessReport {
        upstream: options.upstream.clone(),
        mode: if options.verify.require_token_ids { "token ids" } else { "text only" },
        requested: options.responses,
        judged: 0,
        verified: 0,
        failed: 0,
        transport_errors: 0,
        unverifiable: 0,
        exact_paths: 0,
        largest_greedy_gap: 0.0,
        causes: BTreeMap::new(),
        failure_rate: 0.0,
        failure_rate_upper95: 1.0,
        by_setting: BTreeMap::new(),
        condemned_after: None,
        examples: Vec::new(),
        seconds: 0.0,
        stopped_early: false,
    };
    loop {
        let next = tokio::select! {
            next = answers.next() => next,
            () = &mut stop => {
                report.stopped_early = true;
                None
            }
        };
        let Some((request, answer)) = next else { break };
        let streamed = match answer {
            Some(Ok(s)) => s,
            _ => {
                report.transport_errors += 1;
                progress(report.judged, report.failed);
                continue;
            }
        };
        let verdict = verify_each(reference.as_ref(), &[&request], &[Some(&streamed)], &options.verify).await.pop().flatten();
        let Some(verdict) = verdict else {
            report.unverifiable += 1;
            continue;
        };
        if verdict.stats.get("retokenized") == Some(&serde_json::Value::Bool(false)) {
            report.exact_paths += 1;
        }
        let slot = report.by_setting.entry(setting(&request)).or_insert((0, 0));
        match &verdict.outcome {
            Outcome::Verified => {
                let gaps = verdict.stats.get("families").and_then(serde_json::Value::as_array).map(|families| {
                    families
                        .iter()
                        .filter(|f| f.get("passed") == Some(&serde_json::Value::Bool(true)))
                        .filter_map(|f| f.get("max_greedy_gap").and_then(serde_json::Value::as_f64))
                        .fold(f64::INFINITY, f64::min)
                });
                if let Some(gap) = gaps.filter(|g| g.is_finite()) {
                    report.largest_greedy_gap = report.largest_greedy_gap.max(gap);
                }
                report.judged += 1;
                report.verified += 1;
                slot.0 += 1;
                if let Some(evidence) = &verdict.evidence
                    && board.accumulate(&miner, &options.model, &evidence.families, options.miner_alpha).is_some()
                    && report.condemned_after.is_none()
                {
                    report.condemned_after = Some(report.judged);
                }
            }
            Outcome::Failed(f) => {
                report.judged += 1;
                report.failed += 1;
                slot.0 += 1;
                slot.1 += 1;
                *report.causes.entry(f.cause.name().to_string()).or_default() += 1;
                if report.examples.len() < 5 {
                    report.examples.push(format!("{} [{}, T {}, top_p {}, top_k {}, penalty {}]", f, request.endpoint.name(), request.sampling.temperature, request.sampling.top_p, request.sampling.top_k, request.sampling.repetition_penalty));
                }
            }
            Outcome::Unverifiable(_) => report.unverifiable += 1,
        }
        progress(report.judged, report.failed);
    }
    report.failure_rate = if report.judged > 0 { report.failed as f64 / report.judged as f64 } else { 0.0 };
    report.failure_rate_upper95 = clopper_pearson_upper(report.failed, report.judged, 0.05);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_known_values() {
        // 0 of 3000: 1 − 0.05^(1/3000) = 0.000998…
        let u = clopper_pearson_upper(0, 3000, 0.05);
        assert!((u - (1.0 - 0.05f64.powf(1.0 / 3000.0))).abs() < 1e-9, "{u}");
        // 1 of 100, one-sided 95%: 0.0466 (standard tables).
        let u = clopper_pearson_upper(1, 100, 0.05);
        assert!((u - 0.0466).abs() < 5e-4, "{u}");
        assert_eq!(clopper_pearson_upper(5, 5, 0.05), 1.0);
    }
}
