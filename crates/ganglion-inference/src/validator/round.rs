//! One round: the same request to many miners at once, each answer read under its limits,
//! then all of them verified together. Knows nothing about the chain or scores, so tests
//! and benchmarks drive it directly against miners on loopback.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cause::Failure;
use crate::openai::InferenceRequest;
use crate::reference::Reference;
use crate::stream::{StreamError, StreamLimits, Streamed};
use crate::validator::query::{Dendrite, Target};
use crate::verify::{Outcome, Verdict, VerifyConfig, verify_each};

/// What happened with one miner in a round.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// The miner.
    pub target: Target,
    /// What it was asked.
    pub request: InferenceRequest,
    /// The stream (or how it failed, with what arrived).
    pub response: Result<Streamed, StreamError>,
    /// The verdict.
    pub verdict: Verdict,
}

impl RoundResult {
    /// What arrived, failed or not.
    pub fn streamed(&self) -> &Streamed {
        match &self.response {
            Ok(s) => s,
            Err(e) => e.partial.as_ref(),
        }
    }

    /// Verified tokens per second (`None` unless verified).
    pub fn tps(&self) -> Option<f64> {
        if !self.verdict.verified() {
            return None;
        }
        let secs = self.streamed().total.as_secs_f64();
        (secs > 0.0).then(|| f64::from(self.verdict.tokens) / secs)
    }

    /// Time to first token.
    pub fn ttft(&self) -> Option<Duration> {
        self.streamed().ttft
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.verdict.failure()
    }
}

/// Sends `request` to every target concurrently, then verifies the answers with
/// `reference` (`None`: the model cannot be verified here; answers come back unverifiable,
/// as v4 did for models without a verifier, so miners cannot tell which are checked).
pub async fn run_round(
    dendrite: &Dendrite,
    reference: Option<&dyn Reference>,
    config: &VerifyConfig,
    request: &InferenceRequest,
    targets: &[Target],
    limits: StreamLimits,
) -> Vec<RoundResult> {
    run_round_timed(dendrite, reference, config, request, targets, limits).await.0
}

/// [`run_round`], also returning how long the verification took (`None` when nothing was
/// verified against a reference).
pub async fn run_round_timed(
    dendrite: &Dendrite,
    reference: Option<&dyn Reference>,
    config: &VerifyConfig,
    request: &InferenceRequest,
    targets: &[Target],
    limits: StreamLimits,
) -> (Vec<RoundResult>, Option<Duration>) {
    run_round_each(dendrite, reference, config, vec![request.clone(); targets.len()], targets, limits).await
}

/// [`run_round_timed`] with one request per target (`requests[i]` goes to `targets[i]`).
pub async fn run_round_each(
    dendrite: &Dendrite,
    reference: Option<&dyn Reference>,
    config: &VerifyConfig,
    requests: Vec<InferenceRequest>,
    targets: &[Target],
    limits: StreamLimits,
) -> (Vec<RoundResult>, Option<Duration>) {
    let responses = futures::future::join_all(targets.iter().zip(&requests).map(|(t, r)| dendrite.complete(t, r, limits))).await;
    let ok: Vec<Option<&Streamed>> = responses.iter().map(|r| r.as_ref().ok()).collect();
    let asked: Vec<&InferenceRequest> = requests.iter().collect();
    let mut verification = None;
    let verdicts: Vec<Option<Verdict>> = match reference {
        Some(reference) if ok.iter().any(Option::is_some) => {
            let started = std::time::Instant::now();
            let verdicts = verify_each(reference, &asked, &ok, config).await;
            verification = Some(started.elapsed());
            verdicts
        }
        Some(reference) => verify_each(reference, &asked, &ok, config).await,
        None => ok
            .iter()
            .map(|r| r.map(|_| Verdict { outcome: Outcome::Unverifiable("no reference for this model".into()), tokens: 0, similarity: None, stats: Value::Null, evidence: None }))
            .collect(),
    };
    let results = targets
        .iter()
        .cloned()
        .zip(requests)
        .zip(responses)
        .zip(verdicts)
        .map(|(((target, request), response), verdict)| {
            let verdict = match (&response, verdict) {
                (_, Some(v)) => v,
                (Err(e), None) => Verdict::failed(e.failure.clone(), e.partial.tokens.len() as u32, json!({"stage": "stream", "bytes": e.partial.bytes})),
                (Ok(_), None) => Verdict { outcome: Outcome::Unverifiable("verification skipped".into()), tokens: 0, similarity: None, stats: Value::Null, evidence: None },
            };
            RoundResult { target, request, response, verdict }
        })
        .collect();
    (results, verification)
}
