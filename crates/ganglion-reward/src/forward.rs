//! One forward of openvalidators 1.2.0 (`forward.py`, `prompts.py`), chain-free: a context
//! from the shared corpus, cut to 15–30 sentences; the *augment* step (summarise in 4–8
//! sentences), whose best summary becomes the base text; then four rounds of a *followup*
//! step (ask a question) and an *answer* step (answer it step by step), each round's best
//! question and answer appended to the base text. Every step queries `sample_size` uids
//! ([`select_uids`]) through a [`Querier`] and scores the answers with the [`Pipeline`].
//!
//! ```text
//! context ─► augment ─best─► base_text ─► followup0 ─best q─► answer0 ─best a─► base_text += q, a
//!                                          … followup3 ─► answer3
//! masks compare with: the augment prompt │ the best summary │ the best question
//! ```

use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pipeline::{FunctionRewards, Pipeline};

/// Follow-up/answer rounds per forward (`num_followup_steps`).
pub const FOLLOWUP_ROUNDS: usize = 4;
/// Uids per step (`followup_sample_size`).
pub const SAMPLE_SIZE: usize = 50;
/// Per-query deadline (`followup_timeout`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `prompts.augment_prompt`: the context, then "summarise in n sentences" (n in 4..=8).
pub fn augment_prompt(context: &str, sentences: u32) -> String {
    format!(
        "{context}\n\nSummarize the preceding context in {sentences} sentences. Do not try to create questions or answers for your summarization.\n\n"
    )
}

/// `prompts.followup_prompt` for round `round`.
pub fn followup_prompt(base_text: &str, round: usize) -> String {
    if round == 0 {
        format!(
            "{base_text}\n\nAsk a single relevant and insightful question about the preceding context. Do not try to return an answer or a summary:"
        )
    } else {
        format!(
            "{base_text}\n\nAsk a single relevant and insightful question about the preceding context and previous questions. Do not try to return an answer or a summary:\n\n"
        )
    }
}

/// `prompts.answer_prompt`: the chain-of-thought answer prompt.
pub fn answer_prompt(base_text: &str, question: &str) -> String {
    format!(
        "{base_text}\n\nQuestion:{question}\nAnswer the question step by step and explain your thoughts. Do not include questions or summaries in your answer."
    )
}

/// The base text after a round: `\nQuestion:q\nAnswer:a` appended (with a "Previous
/// Question" header in round 0).
pub fn extend_base_text(base_text: &str, round: usize, question: &str, answer: &str) -> String {
    if round == 0 {
        format!("{base_text}\nPrevious Question \nQuestion:{question}\nAnswer:{answer}")
    } else {
        format!("{base_text}\nQuestion:{question}\nAnswer:{answer}")
    }
}

/// The original's cut of a text to its first `cutoff` sentences:
/// `".".join(text.split(".", maxsplit=cutoff)[:-1])`.
pub fn cut_sentences(text: &str, cutoff: usize) -> String {
    let parts: Vec<&str> = text.splitn(cutoff + 1, '.').collect();
    parts[..parts.len().saturating_sub(1)].join(".")
}

/// A context of 15–30 sentences from the corpus: passages of random senses, cut as the
/// original cuts its documents.
pub fn draw_context(corpus: &ganglion_corpus::Corpus, rng: &mut impl Rng) -> String {
    let cutoff = rng.gen_range(15..=30);
    let mut text = String::new();
    // Enough passages for the cut (each has at least one full stop), at most 200.
    for _ in 0..200 {
        if text.matches('.').count() > cutoff {
            break;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&corpus.draw(rng).passage());
    }
    cut_sentences(&text, cutoff)
}

/// The shared corpus (`scripts/install-corpus`), found where it is installed.
pub fn locate_corpus() -> Result<std::sync::Arc<ganglion_corpus::Corpus>> {
    ganglion_corpus::Corpus::locate()
        .map(std::sync::Arc::new)
        .map_err(|e| crate::error::RewardError::Config(format!("corpus: {e}")))
}

/// A uid as `check_uid_availability` sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Uid.
    pub uid: u16,
    /// Serving an axon.
    pub serving: bool,
    /// Holds a validator permit.
    pub validator_permit: bool,
    /// Stake (TAO).
    pub stake: f64,
}

/// The original's `vpermit_tao_limit`.
pub const VPERMIT_TAO_LIMIT: f64 = 4096.0;

/// `get_random_uids`: the available uids (serving, and not a permitted validator with more
/// than `vpermit_tao_limit` stake) not in `exclude`, topped up at random from the excluded
/// available ones when short, then `k` of them at random (all of them if fewer).
pub fn select_uids(
    candidates: &[Candidate],
    k: usize,
    exclude: &[u16],
    vpermit_tao_limit: f64,
    rng: &mut impl Rng,
) -> Vec<u16> {
    let available: Vec<u16> = candidates
        .iter()
        .filter(|c| c.serving && !(c.validator_permit && c.stake > vpermit_tao_limit))
        .map(|c| c.uid)
        .collect();
    let mut pool: Vec<u16> = available
        .iter()
        .copied()
        .filter(|u| !exclude.contains(u))
        .collect();
    if pool.len() < k {
        let mut rest: Vec<u16> = available
            .iter()
            .copied()
            .filter(|u| !pool.contains(u))
            .collect();
        rest.shuffle(rng);
        let need = k - pool.len();
        pool.extend(rest.into_iter().take(need));
    }
    pool.shuffle(rng);
    pool.truncate(k);
    pool
}

/// One miner's answer to one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The uid asked.
    pub uid: u16,
    /// The completion, `None` when the query failed.
    pub completion: Option<String>,
    /// Seconds until the answer (or the failure).
    pub seconds: f64,
    /// Why it failed.
    pub failure: Option<String>,
}

/// Sends one prompt to many miners (bounded, with a deadline each).
#[async_trait]
pub trait Querier: Send + Sync {
    /// Asks every uid; one [`Answer`] per uid, in order.
    async fn query(&self, uids: &[u16], prompt: &str, timeout: Duration) -> Vec<Answer>;
}

/// Judge ratings for a step, when a judge is configured.
#[async_trait]
pub trait Rater: Send + Sync {
    /// Ratings in [0, 1] per completion (`None`: failed or no rating).
    async fn rate(&self, prompt: &str, completions: &[Option<String>]) -> Vec<Option<f64>>;
}

#[async_trait]
impl Rater for crate::judge::Judge {
    async fn rate(&self, prompt: &str, completions: &[Option<String>]) -> Vec<Option<f64>> {
        self.rate_all(prompt, completions).await
    }
}

/// One step's event (the original's wandb event, here for the records store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// `augment`, `followup{k}`, `answer{k}`.
    pub name: String,
    /// The prompt sent.
    pub prompt: String,
    /// The prompt the masks compared with.
    pub base_prompt: String,
    /// Uids asked.
    pub uids: Vec<u16>,
    /// Completions (empty string for failures, as the original logs them).
    pub completions: Vec<String>,
    /// Seconds per answer.
    pub completion_times: Vec<f64>,
    /// Failure per answer.
    pub failures: Vec<Option<String>>,
    /// Combined reward per answer.
    pub rewards: Vec<f64>,
    /// Each function's raw and normalised values.
    pub functions: Vec<FunctionRewards>,
    /// The best completion (stripped).
    pub best: String,
    /// Seconds of the whole step (query and scoring).
    pub step_length: f64,
    /// Seconds spent scoring.
    pub scoring_seconds: f64,
}

/// What one forward needs.
pub struct Forward<'a> {
    /// Queries miners.
    pub querier: &'a dyn Querier,
    /// The judge, if any.
    pub rater: Option<&'a dyn Rater>,
    /// The reward pipeline.
    pub pipeline: &'a mut Pipeline,
    /// Uids per step.
    pub sample_size: usize,
    /// Deadline per query.
    pub timeout: Duration,
    /// Follow-up/answer rounds.
    pub rounds: usize,
}

impl std::fmt::Debug for Forward<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("sample_size", &self.sample_size)
            .field("rounds", &self.rounds)
            .finish()
    }
}

impl Forward<'_> {
    /// Runs one forward over `context`; returns the steps' events (1 + 2·rounds of them).
    pub async fn run(
        &mut self,
        context: &str,
        candidates: &[Candidate],
        rng: &mut (impl Rng + Send),
    ) -> Result<Vec<StepEvent>> {
        let mut events = Vec::with_capacity(1 + 2 * self.rounds);
        let augment = augment_prompt(context, rng.gen_range(4..=8));
        let mut exclude: Vec<u16> = Vec::new();
        let event = self
            .step("augment", &augment, &augment, candidates, &exclude, rng)
            .await?;
        let mut base_text = event.best.clone();
        let base_prompt = event.best.clone();
        exclude.extend(&event.uids);
        events.push(event);
        for round in 0..self.rounds {
            let prompt = followup_prompt(&base_text, round);
            let followup = self
                .step(
                    &format!("followup{round}"),
                    &prompt,
                    &base_prompt,
                    candidates,
                    &exclude,
                    rng,
                )
                .await?;
            exclude.extend(&followup.uids);
            let prompt = answer_prompt(&base_text, &followup.best);
            let answer = self
                .step(
                    &format!("answer{round}"),
                    &prompt,
                    &followup.best,
                    candidates,
                    &exclude,
                    rng,
                )
                .await?;
            exclude.extend(&answer.uids);
            base_text = extend_base_text(&base_text, round, &followup.best, &answer.best);
            events.push(followup);
            events.push(answer);
        }
        Ok(events)
    }

    async fn step(
        &mut self,
        name: &str,
        prompt: &str,
        base_prompt: &str,
        candidates: &[Candidate],
        exclude: &[u16],
        rng: &mut (impl Rng + Send),
    ) -> Result<StepEvent> {
        let started = Instant::now();
        let uids = select_uids(
            candidates,
            self.sample_size,
            exclude,
            VPERMIT_TAO_LIMIT,
            rng,
        );
        let answers = self.querier.query(&uids, prompt, self.timeout).await;
        let responses: Vec<Option<String>> = answers.iter().map(|a| a.completion.clone()).collect();
        let judged = match self.rater {
            Some(rater) => Some(rater.rate(prompt, &responses).await),
            None => None,
        };
        let scoring = Instant::now();
        // Scoring is CPU work (embeddings, the reference model): off the async workers'
        // backs when the runtime has several.
        let pipeline = &mut *self.pipeline;
        let mut score = || pipeline.score(name, prompt, base_prompt, &responses, judged.as_deref());
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let scored = if multi_thread {
            tokio::task::block_in_place(score)?
        } else {
            score()?
        };
        let scoring_seconds = scoring.elapsed().as_secs_f64();
        tracing::info!(
            target: "reward::forward",
            step = name,
            asked = answers.len(),
            answered = responses.iter().filter(|r| r.is_some()).count(),
            query_seconds = (scoring - started).as_secs_f64(),
            scoring_seconds,
            "step scored"
        );
        let best = responses
            .get(scored.best)
            .cloned()
            .flatten()
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(StepEvent {
            name: name.to_owned(),
            prompt: prompt.to_owned(),
            base_prompt: base_prompt.to_owned(),
            uids: answers.iter().map(|a| a.uid).collect(),
            completions: answers
                .iter()
                .map(|a| a.completion.clone().unwrap_or_default())
                .collect(),
            completion_times: answers.iter().map(|a| a.seconds).collect(),
            failures: answers.iter().map(|a| a.failure.clone()).collect(),
            rewards: scored.rewards,
            functions: scored.functions,
            best,
            step_length: started.elapsed().as_secs_f64(),
            scoring_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sentences_are_cut_as_the_original() {
        // ".".join("a. b. c. d".split(".", maxsplit=2)[:-1]) == "a. b"
        assert_eq!(cut_sentences("a. b. c. d", 2), "a. b");
        assert_eq!(cut_sentences("no stop", 3), "");
        assert_eq!(cut_sentences("one. two.", 5), "one. two");
    }

    #[test]
    fn uid_selection_excludes_then_tops_up() {
        let candidates: Vec<Candidate> = (0..10)
            .map(|uid| Candidate {
                uid,
                serving: uid != 3,
                validator_permit: uid == 5,
                stake: if uid == 5 { 5000.0 } else { 10.0 },
            })
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let picked = select_uids(&candidates, 4, &[0, 1], VPERMIT_TAO_LIMIT, &mut rng);
        assert_eq!(picked.len(), 4);
        assert!(
            picked.iter().all(|u| ![0, 1, 3, 5].contains(u)),
            "{picked:?}"
        );
        // Short of fresh uids: excluded available ones fill the gap, never unavailable ones.
        let picked = select_uids(&candidates, 8, &[0, 1, 2, 4], VPERMIT_TAO_LIMIT, &mut rng);
        assert_eq!(picked.len(), 8);
        assert!(!picked.contains(&3) && !picked.contains(&5));
        for u in [6, 7, 8, 9] {
            assert!(picked.contains(&u));
        }
        // More asked than available: all available.
        assert_eq!(
            select_uids(&candidates, 50, &[], VPERMIT_TAO_LIMIT, &mut rng).len(),
            8
        );
    }
}
