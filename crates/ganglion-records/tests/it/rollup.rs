//! The rollups against the raw rows: every window aggregate and series the hub reads from the
//! rollup tables must equal the same aggregate computed by a plain `GROUP BY` over the raw
//! `inference` and `challenge` rows from the start of the minute containing `since`. The
//! data arrives out of order (newest first, shuffled, late rows into old buckets, retried
//! batches, duplicated ids) and includes rows on and next to minute, hour and day
//! boundaries; the windows start on, just before and just after those boundaries.
//! Counts, token sums, uids and times must match exactly; float sums to 1e-9 (relative),
//! since the two sides add the same numbers in a different order.

use crate::common;

use common::TestStore;
use ganglion_records::synthetic::SyntheticSubnet;
use ganglion_records::{Bucket, ChallengeRecord, InferenceRecord, InferenceStats};
use sqlx::Row;
use sqlx::any::AnyRow;

const NETUID: u16 = 9;
/// Not aligned to any bucket.
const NOW: i64 = 1_750_000_123_457;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn floor(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

/// A deterministic permutation of `0..n` (an LCG-driven Fisher–Yates).
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = seed;
    for i in (1..n).rev() {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let j = (x >> 33) as usize % (i + 1);
        order.swap(i, j);
    }
    order
}

/// The three boundaries the windows and the edge rows are placed around.
fn boundaries() -> [i64; 3] {
    [floor(NOW - DAY, DAY), floor(NOW - 5 * HOUR, HOUR), floor(NOW - 37 * MINUTE, MINUTE)]
}

/// ~2.3 days of rows 2 min 7 s apart, plus rows at each boundary and 1 ms either side, a
/// miner whose uid changes, rows without TTFT or similarity, and failures without a cause.
fn inference_rows() -> (SyntheticSubnet, Vec<InferenceRecord>) {
    let s = SyntheticSubnet::ending_at(NETUID, 3, 6, 1600, NOW, 127_000);
    let mut rows: Vec<InferenceRecord> = (0..1600).map(|i| s.inference(i)).collect();
    let mut k = 0;
    for b in boundaries() {
        for at in [b - 1, b, b + 1] {
            let mut r = s.inference(5000 + k);
            r.created_at_ms = at;
            rows.push(r);
            k += 1;
        }
    }
    for (i, r) in rows.iter_mut().enumerate() {
        if i % 17 == 0 {
            r.ttft_ms = None;
        }
        if i % 23 == 0 {
            r.similarity = None;
        }
        if !r.verified && i % 5 == 0 {
            r.cause = None;
        }
        // Miner uid 5 re-registers as uid 40 for a while: the aggregates report the largest.
        if r.miner_uid == 5 && i % 3 == 0 {
            r.miner_uid = 40;
        }
    }
    (s, rows)
}

fn challenge_rows(s: &SyntheticSubnet) -> Vec<ChallengeRecord> {
    let mut rows: Vec<ChallengeRecord> = (0..900)
        .map(|i| {
            let mut c = s.challenge(i);
            // Spread over the same ~2.3 days (the synthetic subnet's step is 127 s).
            c.created_at_ms = NOW - 2 * DAY - 7 * HOUR + i64::try_from(i).unwrap_or(0) * 211_000;
            c
        })
        .collect();
    let mut k = 0;
    for b in boundaries() {
        for at in [b - 1, b, b + 1] {
            let mut c = s.challenge(5000 + k);
            c.created_at_ms = at;
            rows.push(c);
            k += 1;
        }
    }
    rows
}

/// Inserts `rows` out of order: the newest third first, then the rest shuffled (late rows
/// landing in old buckets), in uneven batches, with one batch retried and one id repeated.
async fn insert_out_of_order<T: Clone>(rows: &[T], insert: impl AsyncFn(&[T])) {
    let newest_first = rows.len() * 2 / 3;
    let mut order: Vec<usize> = (newest_first..rows.len()).rev().collect();
    order.extend(shuffled(newest_first, 0x5EED));
    let ordered: Vec<T> = order.into_iter().map(|i| rows[i].clone()).collect();
    let mut start = 0;
    let mut size = 13;
    while start < ordered.len() {
        let end = (start + size).min(ordered.len());
        let mut batch = ordered[start..end].to_vec();
        batch.push(ordered[start].clone());
        insert(&batch).await;
        if size == 41 {
            insert(&batch).await;
        }
        start = end;
        size = size % 50 + 14;
    }
}

fn windows() -> Vec<i64> {
    let mut since = vec![0, NOW - HOUR, NOW - DAY + 12_345, NOW - 7 * DAY, NOW + MINUTE];
    for b in boundaries() {
        since.extend([b - 1, b, b + 1]);
    }
    since
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[track_caller]
fn assert_stats(rollup: &InferenceStats, raw: &InferenceStats, what: &str) {
    assert_eq!(
        (rollup.n, rollup.verified, rollup.organic, rollup.tokens, rollup.last_ms),
        (raw.n, raw.verified, raw.organic, raw.tokens, raw.last_ms),
        "{what}: counts"
    );
    assert!(close(rollup.verified_rate, raw.verified_rate), "{what}: verified rate {rollup:?} vs {raw:?}");
    assert!(close_opt(rollup.avg_ttft_ms, raw.avg_ttft_ms), "{what}: ttft {rollup:?} vs {raw:?}");
    assert!(close_opt(rollup.avg_total_ms, raw.avg_total_ms), "{what}: total {rollup:?} vs {raw:?}");
    assert!(close_opt(rollup.avg_tps, raw.avg_tps), "{what}: tps {rollup:?} vs {raw:?}");
    assert!(close_opt(rollup.avg_similarity, raw.avg_similarity), "{what}: similarity {rollup:?} vs {raw:?}");
}

fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

fn rate(part: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { part as f64 / n as f64 }
}

fn u64_col(row: &AnyRow, column: &str) -> u64 {
    u64::try_from(row.try_get::<i64, _>(column).expect(column)).expect("non-negative")
}

/// One group of a raw aggregate: its key, the largest uid and the aggregates.
#[derive(Debug)]
struct RawGroup {
    key: String,
    uid: i64,
    stats: InferenceStats,
}

/// `GROUP BY key` over the raw inference rows of the window, with the rollup's formulas.
async fn raw_inference(pool: &sqlx::AnyPool, key: &str, from: i64, extra: &str, extra_arg: Option<&str>) -> Vec<RawGroup> {
    let sql = format!(
        "SELECT CAST({key} AS TEXT) AS k, CAST(MAX(miner_uid) AS BIGINT) AS uid, CAST(COUNT(*) AS BIGINT) AS n, \
         CAST(SUM(verified) AS BIGINT) AS n_verified, CAST(SUM(organic) AS BIGINT) AS n_organic, \
         CAST(COUNT(ttft_ms) AS BIGINT) AS n_ttft, CAST(COALESCE(SUM(ttft_ms), 0) AS DOUBLE PRECISION) AS sum_ttft, \
         CAST(SUM(total_ms) AS DOUBLE PRECISION) AS sum_total, CAST(SUM(tps) AS DOUBLE PRECISION) AS sum_tps, \
         CAST(SUM(tokens) AS BIGINT) AS tokens, CAST(COUNT(similarity) AS BIGINT) AS n_similarity, \
         CAST(COALESCE(SUM(similarity), 0) AS DOUBLE PRECISION) AS sum_similarity, CAST(MAX(created_at_ms) AS BIGINT) AS last_ms \
         FROM inference WHERE netuid = $1 AND created_at_ms >= $2{extra} GROUP BY {key} ORDER BY {key}"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i64::from(NETUID)).bind(from);
    if let Some(arg) = extra_arg {
        query = query.bind(arg.to_string());
    }
    let rows = query.fetch_all(pool).await.expect("raw inference aggregate");
    rows.iter()
        .map(|row| {
            let n = u64_col(row, "n");
            let verified = u64_col(row, "n_verified");
            let f = |c: &str| row.try_get::<f64, _>(c).expect(c);
            RawGroup {
                key: row.try_get("k").expect("key"),
                uid: row.try_get("uid").expect("uid"),
                stats: InferenceStats {
                    n,
                    verified,
                    organic: u64_col(row, "n_organic"),
                    verified_rate: rate(verified, n),
                    avg_ttft_ms: mean(f("sum_ttft"), u64_col(row, "n_ttft")),
                    avg_total_ms: mean(f("sum_total"), n),
                    avg_tps: mean(f("sum_tps"), n),
                    tokens: u64_col(row, "tokens"),
                    avg_similarity: mean(f("sum_similarity"), u64_col(row, "n_similarity")),
                    last_ms: row.try_get("last_ms").expect("last_ms"),
                },
            }
        })
        .collect()
}

/// Failure causes of the raw rows in the window, most frequent first (per `key` group).
async fn raw_causes(pool: &sqlx::AnyPool, from: i64, miner: Option<&str>) -> Vec<(String, u64)> {
    let sql = format!(
        "SELECT COALESCE(cause, 'unverified') AS cause, CAST(COUNT(*) AS BIGINT) AS n FROM inference \
         WHERE netuid = $1 AND created_at_ms >= $2 AND verified = 0{} GROUP BY COALESCE(cause, 'unverified')",
        if miner.is_some() { " AND miner_hotkey = $3" } else { "" }
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i64::from(NETUID)).bind(from);
    if let Some(m) = miner {
        query = query.bind(m.to_string());
    }
    let mut causes: Vec<(String, u64)> = query
        .fetch_all(pool)
        .await
        .expect("raw causes")
        .iter()
        .map(|row| (row.try_get("cause").expect("cause"), u64_col(row, "n")))
        .collect();
    causes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    causes
}

fn bucket_key(width_ms: i64) -> String {
    format!("created_at_ms - (((created_at_ms % {width_ms}) + {width_ms}) % {width_ms})")
}

async fn inference_rollups_equal_the_raw_rows(store: &TestStore) {
    let (s, rows) = inference_rows();
    insert_out_of_order(&rows, async |batch: &[InferenceRecord]| store.records.insert_inference(batch).await.expect("insert")).await;
    let pool = common::raw_pool(&store.url);
    let miners: Vec<String> = s.miner_uids().map(|uid| s.hotkey(uid)).collect();
    let subnets = store.records.subnets().await.expect("subnets");
    assert_eq!(subnets[0].inference_n, rows.len() as u64);
    assert_eq!(subnets[0].last_inference_ms, rows.iter().map(|r| r.created_at_ms).max().expect("rows"));

    for since in windows() {
        let from = floor(since, MINUTE);
        let what = |page: &str| format!("{page}, since {since} (now {NOW})");

        let rollup = store.records.miner_stats(NETUID, since).await.expect("miner stats");
        let raw = raw_inference(&pool, "miner_hotkey", from, "", None).await;
        assert_eq!(rollup.len(), raw.len(), "{}", what("miners"));
        for (m, r) in rollup.iter().zip(&raw) {
            assert_eq!((&m.hotkey, i64::from(m.uid)), (&r.key, r.uid), "{}", what("miner key"));
            assert_stats(&m.stats, &r.stats, &what(&format!("miner {}", m.hotkey)));
            let causes: Vec<(String, u64)> = m.causes.iter().map(|c| (c.cause.clone(), c.n)).collect();
            assert_eq!(causes, raw_causes(&pool, from, Some(&m.hotkey)).await, "{}", what("miner causes"));
        }

        for miner in [None, Some(miners[0].as_str()), Some(miners[3].as_str())] {
            let models = store.records.model_stats(NETUID, miner, since).await.expect("models");
            let raw = match miner {
                Some(m) => raw_inference(&pool, "model", from, " AND miner_hotkey = $3", Some(m)).await,
                None => raw_inference(&pool, "model", from, "", None).await,
            };
            assert_eq!(models.iter().map(|m| &m.model).collect::<Vec<_>>(), raw.iter().map(|r| &r.key).collect::<Vec<_>>());
            for (m, r) in models.iter().zip(&raw) {
                assert_stats(&m.stats, &r.stats, &what(&format!("model {} of {miner:?}", m.model)));
            }
            let causes: Vec<(String, u64)> =
                store.records.cause_counts(NETUID, miner, since).await.expect("causes").into_iter().map(|c| (c.cause, c.n)).collect();
            assert_eq!(causes, raw_causes(&pool, from, miner).await, "{}", what("causes"));
            if let Some(one) = miner {
                let stats = store.records.miner_stats_one(NETUID, one, since).await.expect("one miner");
                let raw = raw_inference(&pool, "miner_hotkey", from, " AND miner_hotkey = $3", Some(one)).await;
                match (stats, raw.first()) {
                    (Some(stats), Some(raw)) => assert_stats(&stats.stats, &raw.stats, &what("one miner")),
                    (None, None) => {}
                    (stats, raw) => panic!("{}: {stats:?} vs {raw:?}", what("one miner")),
                }
            }
        }

        let validators = store.records.validator_stats(NETUID, since).await.expect("validators");
        let raw = raw_inference(&pool, "validator_hotkey", from, "", None).await;
        assert_eq!(validators.len(), raw.len(), "{}", what("validators"));
        for (v, r) in validators.iter().zip(&raw) {
            assert_eq!(
                (&v.hotkey, v.n, v.verified, v.organic, v.last_ms),
                (&r.key, r.stats.n, r.stats.verified, r.stats.organic, r.stats.last_ms),
                "{}",
                what("validator")
            );
        }

        for bucket in [Bucket::Minute, Bucket::Hour] {
            let width = bucket.seconds() * 1000;
            let key = bucket_key(width);
            let start = bucket.floor(since);
            for miner in [None, Some(miners[1].as_str())] {
                let series = store.records.inference_series(NETUID, miner, since, bucket).await.expect("series");
                let raw = match miner {
                    Some(m) => raw_inference(&pool, &key, start, " AND miner_hotkey = $3", Some(m)).await,
                    None => raw_inference(&pool, &key, start, "", None).await,
                };
                assert_eq!(series.len(), raw.len(), "{}", what(&format!("{bucket:?} series of {miner:?}")));
                for (p, r) in series.iter().zip(&raw) {
                    assert_eq!(p.t_ms.to_string(), r.key, "{}", what("series bucket"));
                    assert_stats(&p.stats, &r.stats, &what(&format!("{bucket:?} point {}", p.t_ms)));
                }
            }
            let validator = s.hotkey(1);
            let series = store.records.validator_series(NETUID, &validator, since, bucket).await.expect("validator series");
            let raw = raw_inference(&pool, &key, start, " AND validator_hotkey = $3", Some(&validator)).await;
            let got: Vec<(String, u64, u64, u64, i64)> =
                series.iter().map(|p| (p.t_ms.to_string(), p.stats.n, p.stats.verified, p.stats.organic, p.stats.last_ms)).collect();
            let want: Vec<(String, u64, u64, u64, i64)> =
                raw.iter().map(|r| (r.key.clone(), r.stats.n, r.stats.verified, r.stats.organic, r.stats.last_ms)).collect();
            assert_eq!(got, want, "{}", what(&format!("{bucket:?} validator series")));
        }
    }
    pool.close().await;
}

/// Per-miner challenge aggregates of the raw rows from `from`.
async fn raw_challenge_stats(pool: &sqlx::AnyPool, from: i64) -> Vec<(String, i64, u64, u64, Option<f64>, i64, i64)> {
    let rows = sqlx::query(
        "SELECT miner_hotkey, CAST(MAX(miner_uid) AS BIGINT) AS uid, CAST(COUNT(*) AS BIGINT) AS n, \
         CAST(SUM(success) AS BIGINT) AS n_success, \
         CAST(SUM(CASE WHEN success = 1 THEN elapsed_ms ELSE 0.0 END) AS DOUBLE PRECISION) AS sum_elapsed, \
         CAST(MAX(difficulty) AS BIGINT) AS max_difficulty, CAST(MAX(created_at_ms) AS BIGINT) AS last_ms \
         FROM challenge WHERE netuid = $1 AND created_at_ms >= $2 GROUP BY miner_hotkey ORDER BY miner_hotkey",
    )
    .bind(i64::from(NETUID))
    .bind(from)
    .fetch_all(pool)
    .await
    .expect("raw challenge aggregate");
    rows.iter()
        .map(|row| {
            let success = u64_col(row, "n_success");
            (
                row.try_get("miner_hotkey").expect("hotkey"),
                row.try_get("uid").expect("uid"),
                u64_col(row, "n"),
                success,
                mean(row.try_get("sum_elapsed").expect("sum"), success),
                row.try_get("max_difficulty").expect("difficulty"),
                row.try_get("last_ms").expect("last"),
            )
        })
        .collect()
}

async fn assert_challenge_stats_equal_raw(records: &ganglion_records::Records, pool: &sqlx::AnyPool) {
    for since in windows() {
        let from = floor(since, MINUTE);
        let rollup = records.challenge_stats(NETUID, since).await.expect("challenge stats");
        let raw = raw_challenge_stats(pool, from).await;
        assert_eq!(rollup.len(), raw.len(), "since {since}");
        for (c, r) in rollup.iter().zip(&raw) {
            assert_eq!(
                (&c.hotkey, i64::from(c.uid), c.n, c.success, i64::from(c.max_difficulty), c.last_ms),
                (&r.0, r.1, r.2, r.3, r.5, r.6),
                "since {since}"
            );
            assert!(close_opt(c.avg_elapsed_ms, r.4), "since {since}: {:?} vs {:?}", c.avg_elapsed_ms, r.4);
            assert!(close(c.success_rate, rate(r.3, r.2)), "since {since}");
        }
    }
}

async fn challenge_rollup_equals_the_raw_rows(store: &TestStore) {
    let (s, _) = inference_rows();
    let mut rows = challenge_rows(&s);
    for (i, c) in rows.iter_mut().enumerate() {
        if c.miner_uid == 5 && i % 4 == 0 {
            c.miner_uid = 41;
        }
    }
    insert_out_of_order(&rows, async |batch: &[ChallengeRecord]| store.records.insert_challenges(batch).await.expect("insert")).await;
    let pool = common::raw_pool(&store.url);
    assert_eq!(store.records.subnets().await.expect("subnets")[0].challenge_n, rows.len() as u64);
    assert_challenge_stats_equal_raw(&store.records, &pool).await;
    pool.close().await;
}

/// A database at schema version 1 with challenges already stored: opening it with this build
/// runs migration 2, whose backfill must give the same answers as the raw rows; writes after
/// the migration add to the backfilled rollup.
async fn migration_backfills_the_challenge_rollup(store: &TestStore) {
    let (s, _) = inference_rows();
    let rows = challenge_rows(&s);
    let (old, new) = rows.split_at(rows.len() / 2);
    store.records.insert_challenges(old).await.expect("insert");
    store.records.insert_inference(&[s.inference(1)]).await.expect("insert");
    store.records.close().await;
    // Turn the store back into what version 1 left: no challenge rollup, no model index.
    let pool = common::raw_pool(&store.url);
    for statement in [
        "DROP TABLE challenge_rollup",
        "DROP INDEX inference_by_model",
        "DELETE FROM ganglion_records_schema WHERE version >= 2",
    ] {
        sqlx::query(statement).execute(&pool).await.expect(statement);
    }
    let version: i64 = sqlx::query("SELECT CAST(MAX(version) AS BIGINT) AS v FROM ganglion_records_schema")
        .fetch_one(&pool)
        .await
        .expect("version")
        .try_get("v")
        .expect("v");
    assert_eq!(version, 1);

    let reopened = ganglion_records::Records::open(&store.url).await.expect("reopen and migrate");
    assert_eq!(reopened.schema_version().await.expect("version"), ganglion_records::SCHEMA_VERSION);
    assert_challenge_stats_equal_raw(&reopened, &pool).await;
    reopened.insert_challenges(new).await.expect("insert after the migration");
    assert_challenge_stats_equal_raw(&reopened, &pool).await;
    let all = reopened.challenge_stats(NETUID, 0).await.expect("stats");
    assert_eq!(all.iter().map(|c| c.n).sum::<u64>(), rows.len() as u64);
    reopened.close().await;
    pool.close().await;
}

both_backends!(
    inference_rollups_equal_the_raw_rows,
    challenge_rollup_equals_the_raw_rows,
    migration_backfills_the_challenge_rollup,
);
