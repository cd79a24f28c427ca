//! The records store's suite. Every test in `both_backends!` runs against a fresh SQLite
//! file and against a fresh schema on a real PostgreSQL server.

use crate::common;

use common::TestStore;
use ganglion_records::synthetic::SyntheticSubnet;
use ganglion_records::{
    AllocationRecord, Bucket, ChallengeRecord, InferenceFilter, InferenceRecord, RecordsError, SpecsRecord,
};

const NOW: i64 = 1_750_000_000_000;

fn subnet() -> SyntheticSubnet {
    // 2 validators, 5 miners, 200 rows 3 s apart ending at NOW.
    SyntheticSubnet::ending_at(7, 2, 5, 200, NOW, 3000)
}

fn rows(n: u64) -> Vec<InferenceRecord> {
    let s = subnet();
    (0..n).map(|i| s.inference(i)).collect()
}

async fn inference_round_trips(store: &TestStore) {
    let mut batch = rows(3);
    batch[0].seed = Some(u64::MAX);
    batch[1].seed = None;
    batch[1].ttft_ms = None;
    batch[1].similarity = None;
    batch[1].cause = Some("timeout".into());
    batch[1].verified = false;
    batch[2].prompt = serde_json::json!("a completion prompt with 'quotes' and ünïcode");
    batch[2].block = i64::MAX as u64;
    store.records.insert_inference(&batch).await.expect("insert");
    for row in &batch {
        let back = store.records.inference(&row.id).await.expect("read").expect("present");
        assert_eq!(&back, row);
    }
    assert_eq!(store.records.inference("missing").await.expect("read"), None);
}

async fn inference_insert_is_idempotent_and_rolls_up(store: &TestStore) {
    let batch = rows(200);
    store.records.insert_inference(&batch).await.expect("insert");
    // Retrying the same batch, and a batch repeating an id, change nothing.
    store.records.insert_inference(&batch[..50]).await.expect("retry");
    store.records.insert_inference(&[batch[3].clone(), batch[3].clone()]).await.expect("duplicate");

    let subnets = store.records.subnets().await.expect("subnets");
    assert_eq!(subnets.len(), 1);
    assert_eq!((subnets[0].netuid, subnets[0].inference_n, subnets[0].challenge_n), (7, 200, 0));
    assert_eq!(subnets[0].last_inference_ms, batch.iter().map(|r| r.created_at_ms).max().expect("rows"));

    let miners = store.records.miner_stats(7, 0).await.expect("miner stats");
    assert_eq!(miners.len(), 5);
    for miner in &miners {
        let mine: Vec<_> = batch.iter().filter(|r| r.miner_hotkey == miner.hotkey).collect();
        assert_eq!(miner.stats.n, mine.len() as u64);
        assert_eq!(miner.stats.verified, mine.iter().filter(|r| r.verified).count() as u64);
        let tps = mine.iter().map(|r| r.tps).sum::<f64>() / mine.len() as f64;
        assert!((miner.stats.avg_tps.expect("tps") - tps).abs() < 1e-6);
        let failed = mine.iter().filter(|r| !r.verified).count() as u64;
        assert_eq!(miner.causes.iter().map(|c| c.n).sum::<u64>(), failed);
        assert!(miner.causes.windows(2).all(|w| w[0].n >= w[1].n));
    }
    // Series buckets add up to the total, in time order.
    let hotkey = subnet().hotkey(2);
    let series = store.records.inference_series(7, Some(&hotkey), 0, Bucket::Minute).await.expect("series");
    assert!(series.len() > 5);
    assert!(series.windows(2).all(|w| w[0].t_ms < w[1].t_ms));
    assert_eq!(series.iter().map(|p| p.stats.n).sum::<u64>(), batch.iter().filter(|r| r.miner_hotkey == hotkey).count() as u64);
    let whole = store.records.inference_series(7, None, 0, Bucket::Hour).await.expect("series");
    assert_eq!(whole.iter().map(|p| p.stats.n).sum::<u64>(), 200);

    let models = store.records.model_stats(7, None, 0).await.expect("models");
    assert_eq!(models.iter().map(|m| m.stats.n).sum::<u64>(), 200);
    let causes = store.records.cause_counts(7, Some(&hotkey), 0).await.expect("causes");
    let failed = batch.iter().filter(|r| r.miner_hotkey == hotkey && !r.verified).count() as u64;
    assert_eq!(causes.iter().map(|c| c.n).sum::<u64>(), failed);

    let validators = store.records.validator_stats(7, 0).await.expect("validators");
    assert_eq!(validators.iter().map(|v| v.n).sum::<u64>(), 200);
    let vseries = store.records.validator_series(7, &validators[0].hotkey, 0, Bucket::Minute).await.expect("vseries");
    assert_eq!(vseries.iter().map(|p| p.stats.n).sum::<u64>(), validators[0].n);
}

async fn window_aggregates_are_exact_to_the_minute(store: &TestStore) {
    // Rows every 7 minutes over 3 days, so windows cross minute, hour and day boundaries.
    let s = SyntheticSubnet::ending_at(7, 2, 5, 620, NOW, 7 * 60_000 + 13);
    let batch: Vec<_> = (0..620).map(|i| s.inference(i)).collect();
    store.records.insert_inference(&batch).await.expect("insert");
    for since in [0, NOW - 3_600_000 - 1, NOW - 6 * 3_600_000 + 12_345, NOW - 26 * 3_600_000 - 61_001, NOW - 50 * 3_600_000] {
        // Windows start at the minute containing `since`.
        let from = since.div_euclid(60_000) * 60_000;
        let inside: Vec<_> = batch.iter().filter(|r| r.created_at_ms >= from).collect();
        let miners = store.records.miner_stats(7, since).await.expect("miners");
        assert_eq!(miners.iter().map(|m| m.stats.n).sum::<u64>(), inside.len() as u64, "since {since}");
        for m in &miners {
            let mine = inside.iter().filter(|r| r.miner_hotkey == m.hotkey);
            assert_eq!(m.stats.verified, mine.filter(|r| r.verified).count() as u64, "since {since}");
        }
        let one = store.records.miner_stats_one(7, &s.hotkey(3), since).await.expect("one");
        assert_eq!(one.map(|m| m.stats.n).unwrap_or(0), inside.iter().filter(|r| r.miner_hotkey == s.hotkey(3)).count() as u64);
        let failed = inside.iter().filter(|r| !r.verified).count() as u64;
        let causes = store.records.cause_counts(7, None, since).await.expect("causes");
        assert_eq!(causes.iter().map(|c| c.n).sum::<u64>(), failed, "since {since}");
        let models = store.records.model_stats(7, None, since).await.expect("models");
        assert_eq!(models.iter().map(|m| m.stats.n).sum::<u64>(), inside.len() as u64);
        let validators = store.records.validator_stats(7, since).await.expect("validators");
        assert_eq!(validators.iter().map(|v| v.n).sum::<u64>(), inside.len() as u64);
    }
}

/// The same multi-row statement (same row count, so the same cached prepared statement) run
/// with a NULL float at a position, then a value there, alternately (twelve times, so that
/// the pool hands the same connection out twice whichever it picks).
async fn null_floats_bind_as_double_in_reused_statements(store: &TestStore) {
    let all = rows(36);
    for (k, chunk) in all.chunks(3).enumerate() {
        let mut batch = chunk.to_vec();
        if k % 2 == 0 {
            batch[1].ttft_ms = None;
            batch[1].similarity = None;
        }
        store.records.insert_inference(&batch).await.expect("insert");
        for row in &batch {
            assert_eq!(store.records.inference(&row.id).await.expect("read").as_ref(), Some(row));
        }
    }
}

async fn recent_inference_filters_and_pages(store: &TestStore) {
    let batch = rows(200);
    store.records.insert_inference(&batch).await.expect("insert");
    let hotkey = subnet().hotkey(4); // the bad miner
    let base = InferenceFilter { netuid: 7, miner_hotkey: Some(hotkey.clone()), limit: 10, ..InferenceFilter::default() };
    let first = store.records.recent_inference(&base).await.expect("page 1");
    assert_eq!(first.len(), 10);
    assert!(first.iter().all(|r| r.miner_hotkey == hotkey));
    assert!(first.windows(2).all(|w| w[0].created_at_ms >= w[1].created_at_ms));
    assert_eq!(first[0].created_at_ms, batch.iter().filter(|r| r.miner_hotkey == hotkey).map(|r| r.created_at_ms).max().expect("rows"));
    let second = store
        .records
        .recent_inference(&InferenceFilter { before_ms: Some(first[9].created_at_ms), ..base.clone() })
        .await
        .expect("page 2");
    assert!(second.iter().all(|r| r.created_at_ms < first[9].created_at_ms));
    let failed = store.records.recent_inference(&InferenceFilter { verified: Some(false), limit: 1000, ..base.clone() }).await.expect("failed");
    assert_eq!(failed.len(), batch.iter().filter(|r| r.miner_hotkey == hotkey && !r.verified).count());
    assert!(failed.iter().all(|r| !r.verified && r.cause.is_some()));
    let other_net = store.records.recent_inference(&InferenceFilter { netuid: 8, limit: 5, ..InferenceFilter::default() }).await.expect("empty");
    assert!(other_net.is_empty());
    for limit in [0, 1001] {
        let err = store.records.recent_inference(&InferenceFilter { limit, ..base.clone() }).await;
        assert!(matches!(err, Err(RecordsError::InvalidInput { field: "limit", .. })), "{limit}");
    }
}

async fn live_feed_cursor_advances(store: &TestStore) {
    let start = store.records.cursor().await.expect("cursor");
    assert_eq!((start.inference, start.challenge), (0, 0));
    let batch = rows(30);
    store.records.insert_inference(&batch[..20]).await.expect("insert");
    let mid = store.records.cursor().await.expect("cursor");
    let first = store.records.inference_since(start.inference, 1000).await.expect("since");
    assert_eq!(first.len(), 20);
    assert_eq!(first.last().map(|r| r.seq), Some(mid.inference));
    store.records.insert_inference(&batch[20..]).await.expect("insert");
    let next = store.records.inference_since(mid.inference, 1000).await.expect("since");
    assert_eq!(next.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), batch[20..].iter().map(|r| r.id.clone()).collect::<Vec<_>>());
    let s = subnet();
    store.records.insert_challenges(&[s.challenge(0), s.challenge(1)]).await.expect("challenges");
    let challenges = store.records.challenges_since(0, 10).await.expect("since");
    assert_eq!(challenges.len(), 2);
    assert!(challenges[0].seq < challenges[1].seq);
}

async fn challenges_window_is_newest_first(store: &TestStore) {
    let s = subnet();
    let all: Vec<ChallengeRecord> = (0..50).map(|i| s.challenge(i)).collect();
    store.records.insert_challenges(&all).await.expect("insert");
    store.records.insert_challenges(&all[..10]).await.expect("retry");
    let hotkey = s.hotkey(3);
    let window = store.records.recent_challenges(7, &hotkey, 4).await.expect("window");
    let mut expected: Vec<_> = all.iter().filter(|c| c.miner_hotkey == hotkey).cloned().collect();
    expected.sort_by_key(|c| std::cmp::Reverse(c.created_at_ms));
    assert_eq!(window, expected[..4].to_vec());
    // Rounds: a validator's challenges sharing a round start, of any count per round.
    let validator = "5Validator";
    let round = |start: i64, n: usize| -> Vec<ChallengeRecord> {
        (0..n)
            .map(|j| ChallengeRecord { id: format!("round-{start}-{j}"), created_at_ms: start, validator_hotkey: validator.into(), miner_hotkey: hotkey.clone(), ..all[0].clone() })
            .collect()
    };
    let (old, mid, new) = (round(1_000, 3), round(2_000, 20), round(3_000, 1));
    let other = ChallengeRecord { id: "other-validator".into(), created_at_ms: 4_000, validator_hotkey: "5Other".into(), miner_hotkey: hotkey.clone(), ..all[0].clone() };
    store.records.insert_challenges(&[old.clone(), mid.clone(), new.clone(), vec![other]].concat()).await.expect("rounds");
    let two = store.records.recent_challenge_rounds(7, validator, &hotkey, 2).await.expect("rounds");
    assert_eq!(two.len(), 21, "the two newest rounds of this validator, whole: {two:?}");
    assert!(two.iter().all(|c| c.validator_hotkey == validator && c.created_at_ms >= 2_000));
    assert_eq!(two[0].created_at_ms, 3_000, "newest first");
    assert_eq!(store.records.recent_challenge_rounds(7, validator, &hotkey, 10).await.expect("rounds").len(), 24);
    assert!(store.records.recent_challenge_rounds(7, validator, &hotkey, 0).await.is_err());
    assert_eq!(store.records.challenges(7, None, 1000).await.expect("all").len(), 75);
    let stats = store.records.challenge_stats(7, 0).await.expect("stats");
    assert_eq!(stats.iter().map(|c| c.n).sum::<u64>(), 75);
    let successes = all.iter().filter(|c| c.success).count() as u64 + if all[0].success { 25 } else { 0 };
    assert_eq!(stats.iter().map(|c| c.success).sum::<u64>(), successes);
    let subnets = store.records.subnets().await.expect("subnets");
    assert_eq!((subnets[0].inference_n, subnets[0].challenge_n), (0, 75));
}

async fn specs_and_allocations_upsert(store: &TestStore) {
    let s = subnet();
    store.records.upsert_specs(&s.specs(3, 1)).await.expect("specs");
    store.records.upsert_specs(&s.specs(2, 1)).await.expect("specs");
    let newer = SpecsRecord { updated_at_ms: 2, specs: serde_json::json!({"cpu": {"count": 64}}), ..s.specs(3, 1) };
    store.records.upsert_specs(&newer).await.expect("specs");
    assert_eq!(store.records.specs(7).await.expect("read"), vec![s.specs(2, 1), newer]);
    assert!(store.records.specs(8).await.expect("read").is_empty());

    let mut allocation = AllocationRecord {
        id: "alloc-1".into(),
        netuid: 7,
        miner_uid: 3,
        miner_hotkey: s.hotkey(3),
        renter: "renter-a".into(),
        created_at_ms: 10,
        expires_at_ms: 1000,
        ended_at_ms: None,
        status: "active".into(),
        resources: serde_json::json!({"gpu": 1}),
        access: serde_json::json!({"host": "127.0.0.1", "port": 2222, "user": "ganglion"}),
    };
    store.records.upsert_allocation(&allocation).await.expect("alloc");
    let second = AllocationRecord { id: "alloc-2".into(), created_at_ms: 20, ..allocation.clone() };
    store.records.upsert_allocation(&second).await.expect("alloc");
    allocation.status = "ended".into();
    allocation.ended_at_ms = Some(500);
    store.records.upsert_allocation(&allocation).await.expect("alloc");
    assert_eq!(store.records.allocations(7).await.expect("read"), vec![second, allocation]);
    let subnets = store.records.subnets().await.expect("subnets");
    assert_eq!((subnets[0].specs_n, subnets[0].allocation_n), (2, 2));
}

async fn scores_and_snapshots_round_trip(store: &TestStore) {
    let s = subnet();
    let scores = s.scores(100, NOW);
    store.records.insert_scores(&scores).await.expect("scores");
    store.records.insert_scores(&scores).await.expect("retry");
    store.records.insert_scores(&s.scores(110, NOW + 1)).await.expect("scores");
    let hotkey = s.hotkey(3);
    let mine = store.records.scores_for(7, &hotkey, 100).await.expect("read");
    assert_eq!(mine.len(), 4); // 2 validators × 2 blocks
    assert_eq!(mine[0].block, 110);
    let latest = store.records.latest_scores_by(7, &s.hotkey(0)).await.expect("read");
    assert_eq!(latest, s.scores(110, NOW + 1).into_iter().filter(|r| r.validator_hotkey == s.hotkey(0)).collect::<Vec<_>>());

    let mut snapshot = s.snapshot(100, NOW);
    snapshot[0].stake = i64::MAX as u64;
    store.records.insert_neuron_snapshots(&snapshot).await.expect("snapshots");
    store.records.insert_neuron_snapshots(&snapshot).await.expect("retry");
    store.records.insert_neuron_snapshots(&s.snapshot(105, NOW + 1)).await.expect("snapshots");
    let history = store.records.neuron_history(7, &s.hotkey(0), 10).await.expect("history");
    assert_eq!(history.iter().map(|n| n.block).collect::<Vec<_>>(), vec![105, 100]);
    assert_eq!(history[1], snapshot[0]);
    assert_eq!(store.records.latest_snapshot(7).await.expect("latest"), s.snapshot(105, NOW + 1));
}

async fn out_of_range_values_are_rejected_whole(store: &TestStore) {
    let mut batch = rows(3);
    batch[2].block = u64::MAX;
    let err = store.records.insert_inference(&batch).await;
    assert!(matches!(err, Err(RecordsError::OutOfRange { field: "block", .. })), "{err:?}");
    let mut batch = rows(3);
    batch[1].tps = f64::NAN;
    let err = store.records.insert_inference(&batch).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("tps") && err.contains("finite"), "{err}");
    let mut snapshot = subnet().snapshot(1, 0);
    snapshot[0].stake = u64::MAX;
    assert!(matches!(
        store.records.insert_neuron_snapshots(&snapshot).await,
        Err(RecordsError::OutOfRange { field: "stake", .. })
    ));
    let mut bad_id = rows(1);
    bad_id[0].id.clear();
    assert!(matches!(store.records.insert_inference(&bad_id).await, Err(RecordsError::InvalidInput { field: "id", .. })));
    // Nothing of the rejected batches was stored.
    assert_eq!(store.records.cursor().await.expect("cursor").inference, 0);
    assert!(store.records.subnets().await.expect("subnets").is_empty());
}

async fn reopening_keeps_data_and_schema(store: &TestStore) {
    store.records.insert_inference(&rows(5)).await.expect("insert");
    let again = ganglion_records::Records::open(&store.url).await.expect("reopen");
    assert_eq!(again.schema_version().await.expect("version"), ganglion_records::SCHEMA_VERSION);
    assert_eq!(again.subnets().await.expect("subnets")[0].inference_n, 5);
    again.close().await;
}

async fn newer_schema_is_refused(store: &TestStore) {
    sqlx::query("INSERT INTO ganglion_records_schema (version, name, applied_at_ms) VALUES (99, 'from the future', 0)")
        .execute(&store.records_pool())
        .await
        .expect("insert future version");
    let err = ganglion_records::Records::open(&store.url).await.expect_err("refused");
    assert!(matches!(err, RecordsError::SchemaTooNew { found: 99, .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade ganglion"));
}

async fn concurrent_opens_migrate_once(store: &TestStore) {
    // The store is already migrated; open it from several tasks at once and write from each.
    let mut tasks = Vec::new();
    for k in 0..4u64 {
        let url = store.url.clone();
        tasks.push(tokio::spawn(async move {
            let records = ganglion_records::Records::open(&url).await.expect("open");
            let s = subnet();
            let batch: Vec<_> = (k * 25..k * 25 + 25).map(|i| s.inference(i)).collect();
            records.insert_inference(&batch).await.expect("insert");
            records.close().await;
        }));
    }
    for task in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(60), task).await.expect("in time").expect("task");
    }
    assert_eq!(store.records.subnets().await.expect("subnets")[0].inference_n, 100);
    let miners = store.records.miner_stats(7, 0).await.expect("stats");
    assert_eq!(miners.iter().map(|m| m.stats.n).sum::<u64>(), 100);
}

impl TestStore {
    fn records_pool(&self) -> sqlx::AnyPool {
        // Tests reach under the API only to fake a newer schema.
        common::raw_pool(&self.url)
    }
}

both_backends!(
    inference_round_trips,
    inference_insert_is_idempotent_and_rolls_up,
    window_aggregates_are_exact_to_the_minute,
    null_floats_bind_as_double_in_reused_statements,
    recent_inference_filters_and_pages,
    live_feed_cursor_advances,
    challenges_window_is_newest_first,
    specs_and_allocations_upsert,
    scores_and_snapshots_round_trip,
    out_of_range_values_are_rejected_whole,
    reopening_keeps_data_and_schema,
    newer_schema_is_refused,
    concurrent_opens_migrate_once,
);
