//! `ganglion bench hub`: seed a store with a pretend subnet's records (1 million inference
//! rows and 1 million compute challenges by default, in batches, as validators write them;
//! and, on the next two netuids, 62 500 reward steps of 16 uids — a million per-uid rewards —
//! and a million model evaluations), then time every hub page through the router and report
//! the ingest rates.
//!
//! The metagraph comes from recorded snapshots (no chain), which is the slower path: with a
//! chain the overview reads it from memory.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ganglion_records::synthetic::SyntheticSubnet;
use ganglion_records::{Records, now_ms};
use http_body_util::BodyExt;
use serde::Serialize;
use tower::ServiceExt;

use crate::error::{HubError, HubResult};
use crate::state::{HubConfig, HubState};

/// What to seed and how often to time each page.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Inference rows to seed.
    pub rows: u64,
    /// Compute challenges to seed (same subnet, same span).
    pub challenges: u64,
    /// Reward-subnet step events to seed on `netuid + 1`, 16 uids each.
    pub reward_events: u64,
    /// Model evaluations to seed on `netuid + 2`, one per miner per round.
    pub evaluations: u64,
    /// Miners in the pretend subnet.
    pub miners: u16,
    /// Validators in the pretend subnet.
    pub validators: u16,
    /// Rows per insert call (one transaction each).
    pub batch: usize,
    /// Timed requests per page (after two warm-up requests).
    pub iterations: usize,
    /// Time the rows span, ending now.
    pub span: Duration,
    /// Netuid to seed.
    pub netuid: u16,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            rows: 1_000_000,
            challenges: 1_000_000,
            reward_events: 62_500,
            evaluations: 1_000_000,
            miners: 256,
            validators: 8,
            batch: 1000,
            iterations: 30,
            span: Duration::from_secs(7 * 24 * 3600),
            netuid: 1,
        }
    }
}

/// Timing of one page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageTiming {
    /// Short name.
    pub page: String,
    /// Request path.
    pub path: String,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Response size.
    pub bytes: usize,
}

/// One backend's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The store's URL (password removed).
    pub url: String,
    /// Inference rows seeded.
    pub rows: u64,
    /// Rows per insert call.
    pub batch: usize,
    /// Inference rows inserted per second (rollups included).
    pub ingest_rows_per_s: f64,
    /// Challenges seeded.
    pub challenges: u64,
    /// Challenges inserted per second (rollup included; 0 when none were seeded).
    pub challenge_rows_per_s: f64,
    /// Time to seed everything.
    pub seed_s: f64,
    /// Page timings.
    pub pages: Vec<PageTiming>,
}

/// What the seeding is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Inference rows, then challenges, inserted so far, of `total` (both kinds).
    Rows {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
    /// Timing pages.
    Timing,
}

/// Seeds `records` and times the pages.
pub async fn run(records: Records, config: &BenchConfig, progress: &(dyn Fn(Progress) + Sync)) -> HubResult<BenchReport> {
    let now = now_ms();
    let span_ms = i64::try_from(config.span.as_millis()).unwrap_or(i64::MAX);
    let step_ms = (span_ms / i64::try_from(config.rows.max(1)).unwrap_or(i64::MAX)).max(1);
    let subnet = SyntheticSubnet::ending_at(config.netuid, config.validators, config.miners, config.rows, now, step_ms);
    let started = Instant::now();
    let mut insert_time = Duration::ZERO;
    let batch = config.batch.max(1) as u64;
    let mut done = 0;
    while done < config.rows {
        let end = (done + batch).min(config.rows);
        let rows: Vec<_> = (done..end).map(|i| subnet.inference(i)).collect();
        let t = Instant::now();
        records.insert_inference(&rows).await?;
        insert_time += t.elapsed();
        done = end;
        progress(Progress::Rows { done, total: config.rows + config.challenges });
    }
    // Metagraph snapshots every epoch (360 blocks) and scores every 10 epochs, over the span.
    let last_block = subnet.start_block + u64::try_from(span_ms / 12_000).unwrap_or(0);
    let mut block = subnet.start_block;
    while block <= last_block {
        let at = subnet.start_ms + i64::try_from((block - subnet.start_block) * 12_000).unwrap_or(0);
        records.insert_neuron_snapshots(&subnet.snapshot(block, at)).await?;
        if (block - subnet.start_block).is_multiple_of(3600) {
            records.insert_scores(&subnet.scores(block, at)).await?;
        }
        block += 360;
    }
    let ingest_rows_per_s = config.rows as f64 / insert_time.as_secs_f64().max(1e-9);
    let challenge_time = seed_challenges(&records, &subnet, config, progress).await?;
    let challenge_rows_per_s =
        if config.challenges == 0 { 0.0 } else { config.challenges as f64 / challenge_time.as_secs_f64().max(1e-9) };
    for uid in subnet.miner_uids() {
        records.upsert_specs(&subnet.specs(uid, now)).await?;
    }
    seed_reward_events(&records, config, now, span_ms).await?;
    seed_evaluations(&records, config, now, span_ms).await?;
    let seed_s = started.elapsed().as_secs_f64();

    progress(Progress::Timing);
    let state = HubState::new(HubConfig::new(records.clone(), None, "none"));
    let app = crate::router(state);
    let miner = subnet.hotkey(subnet.validators + 3);
    let validator = subnet.hotkey(0);
    let last = subnet.inference(config.rows.saturating_sub(1));
    let (last_id, model) = (last.id, last.model);
    // Three days back: a second page of the request list.
    let before = now - 3 * 24 * 3_600_000;
    let n = config.netuid;
    let pages = [
        ("status", "/api/status".to_string()),
        ("subnets", "/api/subnets".to_string()),
        ("overview 1h", format!("/api/subnets/{n}/overview?window=1h")),
        ("overview 24h", format!("/api/subnets/{n}/overview?window=24h")),
        ("overview 7d", format!("/api/subnets/{n}/overview?window=7d")),
        ("overview 30d", format!("/api/subnets/{n}/overview?window=30d")),
        ("miner 1h", format!("/api/subnets/{n}/miners/{miner}?window=1h")),
        ("miner 24h", format!("/api/subnets/{n}/miners/{miner}?window=24h")),
        ("miner 7d", format!("/api/subnets/{n}/miners/{miner}?window=7d")),
        ("validator 24h", format!("/api/subnets/{n}/validators/{validator}?window=24h")),
        ("validator 7d", format!("/api/subnets/{n}/validators/{validator}?window=7d")),
        ("requests", format!("/api/subnets/{n}/requests")),
        ("requests older", format!("/api/subnets/{n}/requests?before={before}&limit=500")),
        ("miner failures", format!("/api/subnets/{n}/requests?miner={miner}&verified=false&limit=100")),
        ("vali. failures", format!("/api/subnets/{n}/requests?validator={validator}&verified=false&limit=100")),
        ("by model", format!("/api/subnets/{n}/requests?model={model}&limit=100")),
        ("unknown model", format!("/api/subnets/{n}/requests?model=no-such-model&limit=100")),
        ("request", format!("/api/requests/{last_id}")),
        ("compute 24h", format!("/api/subnets/{n}/compute?window=24h")),
        ("compute 7d", format!("/api/subnets/{n}/compute?window=7d")),
        ("compute miner", format!("/api/subnets/{n}/compute/miners/{miner}")),
    ];
    let (rn, en) = (n.wrapping_add(1), n.wrapping_add(2));
    let mut pages = pages.to_vec();
    if config.reward_events > 0 {
        pages.extend([
            ("rewards 1h", format!("/api/subnets/{rn}/reward?window=1h")),
            ("rewards 24h", format!("/api/subnets/{rn}/reward?window=24h")),
            ("rewards 7d", format!("/api/subnets/{rn}/reward?window=7d")),
            ("reward uid 7d", format!("/api/subnets/{rn}/reward/uids/3?window=7d")),
        ]);
    }
    if config.evaluations > 0 {
        pages.extend([
            ("models", format!("/api/subnets/{en}/evaluation")),
            ("model uid 7d", format!("/api/subnets/{en}/evaluation/uids/3?window=7d")),
            ("model uid 30d", format!("/api/subnets/{en}/evaluation/uids/3?window=30d&limit=1000")),
        ]);
    }
    let mut timings = Vec::new();
    for (page, path) in pages {
        timings.push(time_page(&app, page, &path, config.iterations.max(1)).await?);
    }
    Ok(BenchReport {
        backend: format!("{:?}", records.backend()).to_lowercase(),
        url: records.display_url().to_string(),
        rows: config.rows,
        batch: config.batch,
        ingest_rows_per_s,
        challenges: config.challenges,
        challenge_rows_per_s,
        seed_s,
        pages: timings,
    })
}

/// Seeds the challenges in batches; returns the time spent inserting.
async fn seed_challenges(
    records: &Records,
    subnet: &SyntheticSubnet,
    config: &BenchConfig,
    progress: &(dyn Fn(Progress) + Sync),
) -> HubResult<Duration> {
    // The same span as the inference rows, whatever the count.
    let span_ms = i64::try_from(config.span.as_millis()).unwrap_or(i64::MAX);
    let step_ms = (span_ms / i64::try_from(config.challenges.max(1)).unwrap_or(i64::MAX)).max(1);
    let compute = SyntheticSubnet::ending_at(subnet.netuid, subnet.validators, subnet.miners, config.challenges, now_ms(), step_ms);
    let batch = config.batch.max(1) as u64;
    let mut insert_time = Duration::ZERO;
    let mut done = 0;
    while done < config.challenges {
        let end = (done + batch).min(config.challenges);
        let rows: Vec<_> = (done..end).map(|i| compute.challenge(i)).collect();
        let t = Instant::now();
        records.insert_challenges(&rows).await?;
        insert_time += t.elapsed();
        done = end;
        progress(Progress::Rows { done: config.rows + done, total: config.rows + config.challenges });
    }
    Ok(insert_time)
}

/// Reward steps on `netuid + 1` over the span: 16 uids each (of `miners`), four functions.
async fn seed_reward_events(records: &Records, config: &BenchConfig, now: i64, span_ms: i64) -> HubResult<()> {
    let total = config.reward_events;
    let step_ms = (span_ms / i64::try_from(total.max(1)).unwrap_or(i64::MAX)).max(1);
    let miners = u64::from(config.miners.max(1));
    let batch = (config.batch.max(1) as u64 / 16).max(1);
    let mut done = 0;
    while done < total {
        let end = (done + batch).min(total);
        let rows: Vec<ganglion_records::RewardEventRecord> = (done..end)
            .map(|i| {
                let uids: Vec<u64> = (0..16).map(|k| (i * 16 + k) % miners).collect();
                let value = |k: u64, f: u64| ((i.wrapping_mul(2_654_435_761) ^ (k * 97 + f * 31)) % 1000) as f64 / 1000.0;
                let functions: Vec<serde_json::Value> = ["rlhf_reward_model", "reciprocate", "relevance_filter", "dpo"]
                    .iter()
                    .enumerate()
                    .map(|(f, name)| {
                        let values: Vec<f64> = (0..16).map(|k| value(k, f as u64)).collect();
                        serde_json::json!({"name": name, "raw": values, "normalized": values})
                    })
                    .collect();
                ganglion_records::RewardEventRecord {
                    id: format!("bench-reward-{i}"),
                    created_at_ms: now - span_ms + i64::try_from(i).unwrap_or(0) * step_ms,
                    netuid: config.netuid.wrapping_add(1),
                    block: i,
                    validator_hotkey: "5BenchRewardValidator".into(),
                    forward_index: i / 4,
                    step: ["augment", "followup0", "answer0", "followup1"][(i % 4) as usize].into(),
                    prompt: format!("Bench prompt {i}: summarise the following passage in two sentences."),
                    base_prompt: "Bench base prompt".into(),
                    best: format!("Bench answer {i}"),
                    step_length_s: 3.0,
                    scoring_s: 0.5,
                    completions: serde_json::json!((0..16).map(|k| format!("answer {k} to {i}")).collect::<Vec<_>>()),
                    completion_times: serde_json::json!(vec![1.5; 16]),
                    rewards: serde_json::json!((0..16).map(|k| value(k, 9)).collect::<Vec<_>>()),
                    uids: serde_json::json!(uids),
                    functions: serde_json::Value::Array(functions),
                }
            })
            .collect();
        records.insert_reward_events(&rows).await?;
        done = end;
    }
    Ok(())
}

/// Model evaluations on `netuid + 2` over the span: rounds of one row per miner.
async fn seed_evaluations(records: &Records, config: &BenchConfig, now: i64, span_ms: i64) -> HubResult<()> {
    let miners = u64::from(config.miners.max(1));
    let rounds = config.evaluations.div_ceil(miners);
    let step_ms = (span_ms / i64::try_from(rounds.max(1)).unwrap_or(i64::MAX)).max(1);
    let batch = config.batch.max(1) as u64;
    let mut done = 0;
    while done < config.evaluations {
        let end = (done + batch).min(config.evaluations);
        let rows: Vec<ganglion_records::ModelEvaluationRecord> = (done..end)
            .map(|i| {
                let (round, uid) = (i / miners, (i % miners) as u16);
                let rejected = uid % 7 == 6;
                ganglion_records::ModelEvaluationRecord {
                    id: format!("bench-eval-{i}"),
                    created_at_ms: now - span_ms + i64::try_from(round).unwrap_or(0) * step_ms,
                    netuid: config.netuid.wrapping_add(2),
                    block: round * 10,
                    validator_hotkey: "5BenchEvalValidator".into(),
                    step: round,
                    competition: "g1".into(),
                    uid,
                    miner_hotkey: format!("5BenchMiner{uid}"),
                    commitment: format!("org/model-{uid}:rev:hash"),
                    commit_block: 1,
                    model_hash: (!rejected).then(|| format!("hash-{uid}")),
                    status: if rejected { "rejected".into() } else { "evaluated".into() },
                    reason: rejected.then(|| "the files hash to x, which does not match the commitment".into()),
                    mean_loss: (!rejected).then(|| 3.0 + f64::from(uid) / 100.0),
                    win_rate: (!rejected).then(|| 1.0 - f64::from(uid) / f64::from(config.miners.max(1))),
                    wins: 0,
                    matches: miners - 1,
                    weight: if uid == 0 { 1.0 } else { 0.0 },
                    samples: 64,
                }
            })
            .collect();
        records.insert_model_evaluations(&rows).await?;
        done = end;
    }
    Ok(())
}

async fn time_page(app: &axum::Router, page: &str, path: &str, iterations: usize) -> HubResult<PageTiming> {
    let mut samples = Vec::with_capacity(iterations);
    let mut bytes = 0;
    for i in 0..iterations + 2 {
        let request = Request::get(path).body(Body::empty()).map_err(|e| bench_error(path, e.to_string()))?;
        let t = Instant::now();
        let response = app.clone().oneshot(request).await.map_err(|e| bench_error(path, e.to_string()))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| bench_error(path, e.to_string()))?.to_bytes();
        let elapsed = t.elapsed();
        if status != StatusCode::OK {
            return Err(bench_error(path, format!("status {status}: {}", String::from_utf8_lossy(&body))));
        }
        bytes = body.len();
        if i >= 2 {
            samples.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Ok(PageTiming {
        page: page.to_string(),
        path: path.to_string(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: samples.last().copied().unwrap_or(0.0),
        bytes,
    })
}

fn bench_error(path: &str, reason: String) -> HubError {
    HubError::Bench(format!("{path}: {reason}"))
}
