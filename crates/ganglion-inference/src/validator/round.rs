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
/// one whenever an answer comes back, none started after `window`; every stream is cut
/// when the window closes, and what a cut stream delivered by then is judged as an answer
/// of that many tokens ([`LoadedRound::cut`]). A miner's work is the verified tokens it
/// delivered within the window — a fixed time, measured work, as the compute subnet's
/// challenges under one deadline — whatever order it serves its streams in (dropping the
/// cut streams instead would pay a miner that serves one stream at a time for the
/// unfinished work of one stream, and one that serves them side by side for none of it).
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
    /// Every answer: the whole ones (streams that failed included), then the streams cut at
    /// the window's end, judged as answers of the tokens they delivered.
    pub results: Vec<RoundResult>,
    /// Per target (index into `targets`): streams cut when the window closed with nothing
    /// to judge (fewer tokens than the verifier's minimum).
    pub dropped: Vec<usize>,
    /// Per result (parallel to `results`): whether it is a stream cut at the window's end,
    /// judged as an answer of the tokens it had delivered.
    pub cut: Vec<bool>,
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
    let mut dropped = vec![0usize; targets.len()];
    // Whole answers and cut streams are judged apart: a cut stream has no finish and no
    // usage, and is judged as an answer of `max_tokens` = the tokens it delivered.
    let (mut whole, mut cut) = (Batch::default(), Batch::default());
    for (i, (target, answers)) in targets.iter().zip(per_miner).enumerate() {
        for (request, response, was_cut) in answers {
            match response {
                Err(e) if was_cut => {
                    let n = e.partial.tokens.len();
                    if n < config.min_tokens.max(1) {
                        dropped[i] += 1;
                        continue;
                    }
                    let mut request = request;
                    request.sampling.max_tokens = n as u32;
                    let mut streamed = *e.partial;
                    streamed.finish_reason = Some("length".into());
                    streamed.usage = None;
                    cut.push(target, request, Ok(streamed));
                }
                response => whole.push(target, request, response),
            }
        }
    }
    let cut_config = VerifyConfig { require_usage: false, ..config.clone() };
    let (mut results, first) = judge(reference, config, whole.requests, &whole.targets, whole.responses).await;
    let (cut_results, second) = judge(reference, &cut_config, cut.requests, &cut.targets, cut.responses).await;
    let mut flags = vec![false; results.len()];
    flags.extend(std::iter::repeat_n(true, cut_results.len()));
    results.extend(cut_results);
    let verification = match (first, second) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    LoadedRound { results, dropped, cut: flags, verification }
}

/// Answers to judge together.
#[derive(Default)]
struct Batch {
    targets: Vec<Target>,
    requests: Vec<InferenceRequest>,
    responses: Vec<Result<Streamed, StreamError>>,
}

impl Batch {
    fn push(&mut self, target: &Target, request: InferenceRequest, response: Result<Streamed, StreamError>) {
        self.targets.push(target.clone());
        self.requests.push(request);
        self.responses.push(response);
    }
}

/// One miner's part of a loaded round: its answers, each with whether it is a stream cut
/// at `deadline` (each stream's deadlines end with the window).
async fn drive_miner(
    dendrite: &Dendrite,
    target: &Target,
    queue: Vec<InferenceRequest>,
    limits: StreamLimits,
    load: Load,
    deadline: tokio::time::Instant,
) -> Vec<(InferenceRequest, Result<Streamed, StreamError>, bool)> {
    let mut queue = queue.into_iter().take(load.max_requests.max(1));
    let mut in_flight = FuturesUnordered::new();
    let send = |request: InferenceRequest| {
        let mut limits = limits;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        limits.total_timeout = limits.total_timeout.min(left);
        limits.first_token_timeout = limits.first_token_timeout.min(left);
        limits.idle_timeout = limits.idle_timeout.min(left);
        async move {
            let response = dendrite.complete(target, &request, limits).await;
            (request, response)
        }
    };
    for request in queue.by_ref().take(load.concurrency.max(1)) {
        in_flight.push(send(request));
    }
    let mut answers = Vec::new();
    let mut failed = false;
    // Every stream ends by the deadline on its own; the margin only bounds a stuck read.
    let hard_stop = tokio::time::sleep_until(deadline + HARD_STOP_MARGIN);
    tokio::pin!(hard_stop);
    loop {
        tokio::select! {
            next = in_flight.next() => match next {
                Some((request, response)) => {
                    let now = tokio::time::Instant::now();
                    let cut = now + CUT_SLACK >= deadline && matches!(&response, Err(e) if e.failure.cause == crate::cause::Cause::Timeout && e.partial.finish_reason.is_none());
                    failed |= response.is_err() && !cut;
                    answers.push((request, response, cut));
                    if !failed && tokio::time::Instant::now() < deadline && let Some(request) = queue.next() {
                        in_flight.push(send(request));
                    }
                }
                None => break,
            },
            () = &mut hard_stop => break,
        }
    }
    answers
}

/// How long after a round's window a stream that did not stop by its own deadline is
/// abandoned.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(2);

/// A stream that timed out this close to the window's end was cut by it.
const CUT_SLACK: Duration = Duration::from_millis(50);
