//! One round: requests to many miners at once, each answer read under its limits, then all
//! of them verified together. Knows nothing about the chain or scores, so tests and
//! benchmarks drive it directly against miners on loopback.
//!
//! Two shapes: [`run_round_each`] sends each miner one request, and [`run_loaded_round`]
//! keeps `concurrency` requests in flight at every miner for a fixed window, sending a new
//! one as each answer comes back — the validator's synthetic rounds, which score the
//! verified tokens a miner delivered within the window (see [`Load`]).

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

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
    judge(reference, config, requests, targets, responses).await
}

/// Verifies the answers (`responses[i]` to `requests[i]` from `targets[i]`) together.
async fn judge(
    reference: Option<&dyn Reference>,
    config: &VerifyConfig,
    requests: Vec<InferenceRequest>,
    targets: &[Target],
    responses: Vec<Result<Streamed, StreamError>>,
) -> (Vec<RoundResult>, Option<Duration>) {
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

/// The load of a synthetic round: every miner gets `concurrency` requests at once, a new
/// one whenever an answer comes back, none started after `window`; answers still streaming
/// when the window closes are dropped unscored. A miner's work is then the verified tokens
/// it delivered within the window — a fixed time, measured work, as the compute subnet's
/// challenges under one deadline.
///
/// Why not the original's mean tokens/s of single requests (fixed work, measured time): one
/// machine behind N hotkeys that serves its hotkeys' requests one after another, instead of
/// side by side, gives the first hotkey's answer full speed and the last one 1/N, and the
/// hotkeys' speeds sum to `1 + 1/2 + … + 1/N` times the machine's (1.83× for three); with
/// several requests per miner the same ordering pays a single miner too (four requests
/// served one after another average 2.08× the speed of four served side by side). Within a
/// fixed window no schedule can deliver more tokens than the machine makes, so the
/// hotkeys' work together is at most one honest miner's of the same machine, which keeps
/// `concurrency` requests in flight so that its engine does not idle between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Requests in flight per miner.
    pub concurrency: usize,
    /// How long new requests are sent.
    pub window: Duration,
    /// At most this many requests per miner and round.
    pub max_requests: usize,
}

/// What [`run_loaded_round`] found.
#[derive(Debug)]
pub struct LoadedRound {
    /// Every answer that ended within the window (streams that failed included), in the
    /// order they ended per miner.
    pub results: Vec<RoundResult>,
    /// Per target (index into `targets`): requests dropped when the window closed.
    pub dropped: Vec<usize>,
    /// How long the verification took (`None` when nothing was verified against a reference).
    pub verification: Option<Duration>,
}

/// Runs one loaded round (see [`Load`]): `queues[i]` are the requests for `targets[i]`, in
/// the order they are sent (at most `load.max_requests` of them are). A miner whose answer
/// fails is sent nothing more in this round (its failure counts, and a dead axon would
/// otherwise spin through its whole queue).
pub async fn run_loaded_round(
    dendrite: &Dendrite,
    reference: Option<&dyn Reference>,
    config: &VerifyConfig,
    queues: Vec<Vec<InferenceRequest>>,
    targets: &[Target],
    limits: StreamLimits,
    load: Load,
) -> LoadedRound {
    let deadline = tokio::time::Instant::now() + load.window;
    let per_miner = futures::future::join_all(
        targets.iter().zip(queues).map(|(target, queue)| drive_miner(dendrite, target, queue, limits, load, deadline)),
    )
    .await;
    let mut dropped = Vec::with_capacity(targets.len());
    let mut flat_targets = Vec::new();
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for (target, (answers, in_flight)) in targets.iter().zip(per_miner) {
        dropped.push(in_flight);
        for (request, response) in answers {
            flat_targets.push(target.clone());
            requests.push(request);
            responses.push(response);
        }
    }
    let (results, verification) = judge(reference, config, requests, &flat_targets, responses).await;
    LoadedRound { results, dropped, verification }
}

/// One miner's part of a loaded round: its answers, and how many were still in flight
/// when the window closed.
async fn drive_miner(
    dendrite: &Dendrite,
    target: &Target,
    queue: Vec<InferenceRequest>,
    limits: StreamLimits,
    load: Load,
    deadline: tokio::time::Instant,
) -> (Vec<(InferenceRequest, Result<Streamed, StreamError>)>, usize) {
    let mut queue = queue.into_iter().take(load.max_requests.max(1));
    let mut in_flight = FuturesUnordered::new();
    let send = |request: InferenceRequest| async move {
        let response = dendrite.complete(target, &request, limits).await;
        (request, response)
    };
    for request in queue.by_ref().take(load.concurrency.max(1)) {
        in_flight.push(send(request));
    }
    let mut answers = Vec::new();
    let mut failed = false;
    let window = tokio::time::sleep_until(deadline);
    tokio::pin!(window);
    loop {
        tokio::select! {
            next = in_flight.next() => match next {
                Some((request, response)) => {
                    failed |= response.is_err();
                    answers.push((request, response));
                    if !failed && tokio::time::Instant::now() < deadline && let Some(request) = queue.next() {
                        in_flight.push(send(request));
                    }
                }
                None => break,
            },
            () = &mut window => break,
        }
    }
    (answers, in_flight.len())
}
