//! Shared by the hub's tests: a seeded store (an inference subnet and a compute subnet of
//! synthetic records ending now) and a `oneshot` JSON helper.

#![allow(dead_code, unreachable_pub)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ganglion_records::synthetic::SyntheticSubnet;
use ganglion_records::{AllocationRecord, ModelEvaluationRecord, Records, RewardEventRecord, now_ms};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Inference netuid of the seed.
pub const INFERENCE: u16 = 1;
/// Compute netuid of the seed.
pub const COMPUTE: u16 = 2;
/// Reward-subnet netuid of [`seed_pages`].
pub const REWARD: u16 = 3;
/// Model-evaluation netuid of [`seed_pages`].
pub const EVALUATION: u16 = 4;
/// Reward steps [`seed_pages`] writes (3 uids each), one a minute ending now.
pub const REWARD_STEPS: i64 = 40;
/// Evaluation rounds [`seed_pages`] writes (4 uids each), one every 5 minutes ending now.
pub const EVALUATION_ROUNDS: u64 = 12;

/// Inference rows seeded.
pub const ROWS: u64 = 600;

/// "Now" for the seed, fixed once per test binary so that every call describes the same rows.
pub fn seed_now() -> i64 {
    static NOW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *NOW.get_or_init(now_ms)
}

/// The inference subnet: 2 validators, 6 miners, rows every 5 s over the last 50 minutes.
pub fn inference_subnet() -> SyntheticSubnet {
    SyntheticSubnet::ending_at(INFERENCE, 2, 6, ROWS, seed_now(), 5000)
}

pub fn compute_subnet() -> SyntheticSubnet {
    SyntheticSubnet::ending_at(COMPUTE, 1, 4, 80, seed_now(), 30_000)
}

/// Seeds `records` with both subnets (metagraph snapshots and scores included).
pub async fn seed(records: &Records) {
    let s = inference_subnet();
    let rows: Vec<_> = (0..ROWS).map(|i| s.inference(i)).collect();
    for chunk in rows.chunks(200) {
        records.insert_inference(chunk).await.expect("seed inference");
    }
    let now = seed_now();
    for (k, block) in [10u64, 20, 30].into_iter().enumerate() {
        let at = now - 1_800_000 + k as i64 * 600_000;
        records.insert_neuron_snapshots(&s.snapshot(block, at)).await.expect("seed snapshot");
        records.insert_scores(&s.scores(block, at)).await.expect("seed scores");
    }
    let c = compute_subnet();
    let challenges: Vec<_> = (0..80).map(|i| c.challenge(i)).collect();
    records.insert_challenges(&challenges).await.expect("seed challenges");
    for uid in c.miner_uids() {
        records.upsert_specs(&c.specs(uid, now)).await.expect("seed specs");
    }
    records.insert_neuron_snapshots(&c.snapshot(5, now)).await.expect("seed snapshot");
    records
        .upsert_allocation(&AllocationRecord {
            id: "alloc-seed".into(),
            netuid: COMPUTE,
            miner_uid: 1,
            miner_hotkey: c.hotkey(1),
            renter: c.hotkey(0),
            created_at_ms: now - 60_000,
            expires_at_ms: now + 3_600_000,
            ended_at_ms: None,
            status: "active".into(),
            resources: serde_json::json!({"gpu": 1, "memory_gb": 16}),
            access: serde_json::json!({"host": "127.0.0.1", "port": 2222, "user": "renter"}),
        })
        .await
        .expect("seed allocation");
}

/// Seeds a reward subnet ([`REWARD`]: steps whose uid 1 improves over time, uid 2 fails,
/// uid 3 scores 1) and a model-evaluation subnet ([`EVALUATION`]: uid 0 wins with a falling
/// loss, uid 3 is rejected).
pub async fn seed_pages(records: &Records) {
    let now = seed_now();
    let events: Vec<RewardEventRecord> = (0..REWARD_STEPS)
        .map(|i| {
            let r1 = i as f64 / REWARD_STEPS as f64;
            RewardEventRecord {
                id: format!("reward-seed-{i}"),
                created_at_ms: now - (REWARD_STEPS - 1 - i) * 60_000,
                netuid: REWARD,
                block: 100 + i as u64,
                validator_hotkey: "5RewardValidator".into(),
                forward_index: i as u64 / 2,
                step: if i % 2 == 0 { "augment".into() } else { "answer0".into() },
                prompt: format!("Summarise item {i}"),
                base_prompt: "base".into(),
                best: format!("A summary of item {i}"),
                step_length_s: 2.0,
                scoring_s: 0.5,
                uids: serde_json::json!([1, 2, 3]),
                completions: serde_json::json!([format!("answer {i}"), "", "perfect"]),
                completion_times: serde_json::json!([0.5, 9.0, 0.25]),
                rewards: serde_json::json!([r1, 0.0, 1.0]),
                functions: serde_json::json!([
                    {"name": "rlhf_reward_model", "raw": [r1, null, 2.0], "normalized": [r1, 0.0, 1.0]},
                    {"name": "relevance_filter", "raw": [1.0, null, 1.0], "normalized": [1.0, 0.0, 1.0]},
                ]),
            }
        })
        .collect();
    records.insert_reward_events(&events).await.expect("seed reward events");
    let mut rows = Vec::new();
    for step in 0..EVALUATION_ROUNDS {
        for uid in 0..4u16 {
            let evaluated = uid != 3;
            rows.push(ModelEvaluationRecord {
                id: format!("evaluation-seed-{step}-{uid}"),
                created_at_ms: now - (EVALUATION_ROUNDS - 1 - step) as i64 * 300_000,
                netuid: EVALUATION,
                block: 1000 + step * 10,
                validator_hotkey: "5EvalValidator".into(),
                step,
                competition: "g1".into(),
                uid,
                miner_hotkey: format!("5EvalMiner{uid}"),
                commitment: format!("m{uid}:rev:hash"),
                commit_block: 900,
                model_hash: evaluated.then(|| format!("hash{uid}")),
                status: if evaluated { "evaluated".into() } else { "rejected".into() },
                reason: (!evaluated).then(|| "the files hash to x, which does not match the commitment".into()),
                mean_loss: evaluated.then_some(3.0 + f64::from(uid) - step as f64 * 0.05),
                win_rate: evaluated.then_some(if uid == 0 { 1.0 } else { 0.5 - f64::from(uid) * 0.2 }),
                wins: if uid == 0 { 2 } else { 0 },
                matches: 2,
                weight: match uid {
                    0 => 0.8,
                    1 => 0.2,
                    _ => 0.0,
                },
                samples: 16,
            });
        }
    }
    records.insert_model_evaluations(&rows).await.expect("seed evaluations");
}

/// A fresh SQLite store in `dir`, seeded.
pub async fn seeded_sqlite(dir: &std::path::Path) -> Records {
    let records = Records::open(&format!("sqlite:{}", dir.join("records.db").display())).await.expect("open store");
    seed(&records).await;
    records
}

/// GET `path` through the router; returns status and JSON body.
pub async fn get_json(app: &axum::Router, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, body) = get(app, path).await;
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// GET `path` through the router; returns status and body bytes.
pub async fn get(app: &axum::Router, path: &str) -> (StatusCode, Vec<u8>) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("router answers");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, body)
}
