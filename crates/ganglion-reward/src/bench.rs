//! The figures of `ganglion bench reward`: sentence-embedding throughput on corpus texts, and
//! the validator's time for one full forward (augment and four follow-up/answer rounds, 50
//! uids a step) with the miners replaced by an in-process [`CorpusQuerier`] that answers at
//! once from the corpus, so the time is the validator's own (scoring, uid selection, prompts).
//! Both run inside a pool of exactly the asked number of threads ([`in_pool`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::embed::SentenceEmbedder;
use crate::error::{Result, RewardError};
use crate::forward::{Answer, Candidate, Forward, Querier, draw_context};
use crate::pipeline::Pipeline;

/// `n` texts of corpus sentences (1 to 6 passages of random senses each, so lengths vary
/// from a sentence to about the 256-token cut), from `seed`.
pub fn corpus_texts(corpus: &ganglion_corpus::Corpus, n: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            (0..=(i % 6))
                .map(|_| corpus.draw(&mut rng).passage())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Embedding throughput over a set of texts.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedFigure {
    /// Texts embedded per run.
    pub texts: usize,
    /// Their model tokens (after the 256-token cut), `[CLS]`/`[SEP]` included.
    pub tokens: usize,
    /// Best of the runs, seconds.
    pub seconds: f64,
    /// `texts / seconds`.
    pub texts_per_s: f64,
}

/// Embeds `texts` `repeats` times (after one warm-up batch) and keeps the best run.
pub fn embed_throughput(
    embedder: &SentenceEmbedder,
    texts: &[String],
    repeats: usize,
) -> Result<EmbedFigure> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens = refs
        .iter()
        .map(|t| embedder.token_ids(t).map(|ids| ids.len()))
        .sum::<Result<usize>>()?;
    embedder.embed(&refs[..refs.len().min(8)])?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        let out = embedder.embed(&refs)?;
        best = best.min(started.elapsed().as_secs_f64());
        if out.len() != refs.len() {
            return Err(RewardError::Config(format!(
                "{} embeddings for {} texts",
                out.len(),
                refs.len()
            )));
        }
    }
    Ok(EmbedFigure {
        texts: refs.len(),
        tokens,
        seconds: best,
        texts_per_s: refs.len() as f64 / best,
    })
}

/// Miners that answer at once: each completion is corpus text (2 to 6 passages), different
/// for every uid and step.
pub struct CorpusQuerier {
    corpus: Arc<ganglion_corpus::Corpus>,
    rng: std::sync::Mutex<StdRng>,
}

impl std::fmt::Debug for CorpusQuerier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorpusQuerier").finish_non_exhaustive()
    }
}

impl CorpusQuerier {
    /// From `corpus`, seeded.
    pub fn new(corpus: Arc<ganglion_corpus::Corpus>, seed: u64) -> Self {
        CorpusQuerier {
            corpus,
            rng: std::sync::Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

#[async_trait]
impl Querier for CorpusQuerier {
    async fn query(&self, uids: &[u16], _prompt: &str, _timeout: Duration) -> Vec<Answer> {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        uids.iter()
            .map(|&uid| {
                let passages = 2 + usize::from(uid) % 5;
                let text = (0..passages)
                    .map(|_| self.corpus.draw(&mut *rng).passage())
                    .collect::<Vec<_>>()
                    .join(" ");
                Answer {
                    uid,
                    completion: Some(text),
                    seconds: 0.0,
                    failure: None,
                }
            })
            .collect()
    }
}

/// One forward's timing.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardFigure {
    /// Steps (1 + 2·rounds).
    pub steps: usize,
    /// Uids asked per step.
    pub uids: usize,
    /// Completions scored in all.
    pub completions: usize,
    /// The whole forward, seconds (the querier takes no time).
    pub seconds: f64,
    /// Of which scoring (the pipeline), seconds.
    pub scoring_seconds: f64,
    /// The functions of the pipeline.
    pub functions: Vec<&'static str>,
}

/// Runs one forward of `rounds` rounds over `uids` serving uids against a [`CorpusQuerier`].
pub async fn time_forward(
    pipeline: &mut Pipeline,
    corpus: Arc<ganglion_corpus::Corpus>,
    uids: usize,
    rounds: usize,
    seed: u64,
) -> Result<ForwardFigure> {
    let functions = pipeline.names();
    let querier = CorpusQuerier::new(corpus.clone(), seed);
    let candidates: Vec<Candidate> = (0..uids.min(usize::from(u16::MAX)) as u16)
        .map(|uid| Candidate {
            uid,
            serving: true,
            validator_permit: false,
            stake: 0.0,
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let context = draw_context(&corpus, &mut rng);
    let mut forward = Forward {
        querier: &querier,
        rater: None,
        pipeline,
        sample_size: uids,
        timeout: Duration::from_secs(10),
        rounds,
    };
    let started = Instant::now();
    let events = forward.run(&context, &candidates, &mut rng).await?;
    Ok(ForwardFigure {
        steps: events.len(),
        uids,
        completions: events.iter().map(|e| e.uids.len()).sum(),
        seconds: started.elapsed().as_secs_f64(),
        scoring_seconds: events.iter().map(|e| e.scoring_seconds).sum(),
        functions,
    })
}

/// Runs `f` on a pool of exactly `threads` threads (candle's matrix products run on the pool
/// they are called from).
pub fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| RewardError::Config(format!("a pool of {threads} threads: {e}")))?;
    Ok(pool.install(f))
}
