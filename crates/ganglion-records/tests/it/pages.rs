//! The hub's reward and model-evaluation page queries (migration V5) on both backends:
//! per-uid reward splits kept with the events (idempotently), distributions over a window,
//! a uid's history, recent events, the latest evaluation round and a uid's evaluations.

use crate::common;

use common::TestStore;
use ganglion_records::{ModelEvaluationRecord, RewardEventRecord};
use serde_json::json;

const T0: i64 = 1_750_000_000_000;

fn event(i: i64, netuid: u16) -> RewardEventRecord {
    RewardEventRecord {
        id: format!("ev-{netuid}-{i}"),
        created_at_ms: T0 + i * 1000,
        netuid,
        block: 10 + i as u64,
        validator_hotkey: "5Validator".into(),
        forward_index: i as u64,
        step: if i % 2 == 0 { "augment".into() } else { "answer0".into() },
        prompt: "p".repeat(300),
        base_prompt: "b".into(),
        best: "best".into(),
        step_length_s: 1.5,
        scoring_s: 0.25,
        uids: json!([1, 2, 3]),
        completions: json!(["a", "", "c"]),
        completion_times: json!([0.1, 0.2, 0.3]),
        // uid 1: i/10, uid 2: 0, uid 3: 1.
        rewards: json!([i as f64 / 10.0, 0.0, 1.0]),
        functions: json!([
            {"name": "rlhf", "raw": [1.0, null, 2.0], "normalized": [0.5, 0.0, 1.0]},
            {"name": "dpo", "raw": [0.1, null, 0.3], "normalized": [0.25, 0.0, 0.75]},
        ]),
    }
}

async fn reward_pages(store: &TestStore) {
    let r = &store.records;
    let events: Vec<RewardEventRecord> = (0..10).map(|i| event(i, 5)).collect();
    r.insert_reward_events(&events).await.expect("records");
    // A retried insert adds no per-uid rows.
    r.insert_reward_events(&events[..3]).await.expect("records");
    r.insert_reward_events(&[event(0, 6)]).await.expect("records");

    let d = r.reward_distribution(5, T0, 10).await.expect("records");
    assert_eq!(d.samples, 30);
    assert!(!d.truncated);
    assert_eq!((d.first_ms, d.last_ms), (Some(T0), Some(T0 + 9000)));
    let names: Vec<&str> = d.histograms.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["total", "dpo", "rlhf"]);
    let total = &d.histograms[0];
    assert_eq!(total.n, 30);
    assert_eq!((total.min, total.max), (0.0, 1.0));
    assert_eq!(total.bins.len(), 10);
    assert_eq!(total.bins.iter().map(|b| b.n).sum::<u64>(), 30);
    // 0.0 ×11 (uid 2 ten times, uid 1 once); the last bin [0.9, 1] holds 0.9 and uid 3's ten 1.0s.
    assert_eq!(total.bins[0].n, 11);
    assert_eq!(total.bins[9].n, 11);
    let rlhf = &d.histograms[2];
    assert_eq!((rlhf.n, rlhf.min, rlhf.max), (30, 0.0, 1.0));
    assert_eq!(d.uids.iter().map(|u| (u.uid, u.n)).collect::<Vec<_>>(), [(1, 10), (2, 10), (3, 10)]);
    assert!((d.uids[0].mean_reward.expect("mean") - 0.45).abs() < 1e-12);

    // The window bounds the samples.
    let late = r.reward_distribution(5, T0 + 5000, 10).await.expect("records");
    assert_eq!(late.samples, 15);
    assert!(r.reward_distribution(7, 0, 10).await.expect("records").histograms[0].bins.is_empty());

    let h = r.reward_uid_history(5, 1, 0, 4).await.expect("records");
    assert_eq!(h.iter().map(|s| s.t_ms).collect::<Vec<_>>(), [T0 + 6000, T0 + 7000, T0 + 8000, T0 + 9000]);
    assert_eq!(h[3].reward, Some(0.9));
    assert_eq!(h[3].functions.get("dpo"), Some(&0.25));
    assert_eq!(h[3].step, "answer0");
    assert!(r.reward_uid_history(5, 9, 0, 10).await.expect("records").is_empty());
    assert!(r.reward_uid_history(5, 1, 0, 0).await.is_err());

    let recent = r.recent_reward_events(5, 3).await.expect("records");
    assert_eq!(recent.iter().map(|e| e.forward_index).collect::<Vec<_>>(), [9, 8, 7]);
    assert_eq!(recent[0].prompt.len(), 200);
    assert_eq!(r.reward_netuids().await.expect("records"), [5, 6]);

    // Migration V5 backfills the per-uid rows of events stored before it: fake a V4
    // database (no per-uid rows, version 4) and reopen.
    let raw = common::raw_pool(&store.url);
    sqlx::query("DELETE FROM reward_score").execute(&raw).await.expect("raw");
    sqlx::query("DELETE FROM ganglion_records_schema WHERE version = 5").execute(&raw).await.expect("raw");
    raw.close().await;
    assert_eq!(r.reward_distribution(5, T0, 10).await.expect("records").samples, 0);
    let again = ganglion_records::Records::open(&store.url).await.expect("reopen");
    assert_eq!(again.schema_version().await.expect("version"), ganglion_records::SCHEMA_VERSION);
    assert_eq!(again.reward_distribution(5, T0, 10).await.expect("records"), d);
    again.close().await;
}

fn evaluation(i: u64, step: u64, uid: u16, validator: &str) -> ModelEvaluationRecord {
    ModelEvaluationRecord {
        id: format!("e-{validator}-{i}"),
        created_at_ms: T0 + i as i64 * 1000,
        netuid: 9,
        block: 100 + step,
        validator_hotkey: validator.into(),
        step,
        competition: "g1".into(),
        uid,
        miner_hotkey: format!("5Miner{uid}"),
        commitment: "c".into(),
        commit_block: 1,
        model_hash: None,
        status: if uid == 2 { "rejected".into() } else { "evaluated".into() },
        reason: (uid == 2).then(|| "bad hash".into()),
        mean_loss: (uid != 2).then_some(2.0 - step as f64 / 10.0),
        win_rate: (uid != 2).then_some(if uid == 0 { 1.0 } else { 0.0 }),
        wins: 0,
        matches: 1,
        weight: if uid == 0 { 1.0 } else { 0.0 },
        samples: 4,
    }
}

async fn evaluation_pages(store: &TestStore) {
    let r = &store.records;
    assert!(r.latest_evaluation_round(9).await.expect("records").is_empty());
    let mut rows = Vec::new();
    let mut i = 0;
    for step in 0..4 {
        for uid in 0..3 {
            rows.push(evaluation(i, step, uid, "5ValA"));
            i += 1;
        }
    }
    // Another validator's older round.
    rows.insert(0, evaluation(100, 50, 0, "5ValB"));
    r.insert_model_evaluations(&rows).await.expect("records");
    let round = r.latest_evaluation_round(9).await.expect("records");
    assert_eq!(round.len(), 3);
    assert!(round.iter().all(|(_, e)| e.step == 3 && e.validator_hotkey == "5ValA"));
    assert_eq!(round.iter().map(|(_, e)| e.uid).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(round[2].1.reason.as_deref(), Some("bad hash"));

    let history = r.evaluation_history(9, 0, 0, 1000).await.expect("records");
    assert_eq!(history.len(), 5);
    assert!(history.windows(2).all(|w| w[0].1.created_at_ms <= w[1].1.created_at_ms));
    let windowed = r.evaluation_history(9, 0, T0 + 3000, 2).await.expect("records");
    assert_eq!(windowed.iter().map(|(_, e)| e.step).collect::<Vec<_>>(), [3, 50]);
    assert_eq!(r.evaluation_netuids().await.expect("records"), [9]);
}

both_backends!(reward_pages, evaluation_pages);
