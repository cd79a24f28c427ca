//! The live feed (`inference_since` / `challenges_since` with a cursor at the last `seq`
//! read) under concurrent writers: every row is seen exactly once, in `seq` order.
//!
//! `feed_is_exactly_once_under_concurrent_writers` runs on both backends: writers and a
//! polling reader at once. `postgres_feed_waits_for_delayed_commits` forces the dangerous
//! interleaving on PostgreSQL, where a transaction can hold `seq`s while another commits:
//! writers are started one after the other and each is held inside its transaction (the
//! test holds its subnet's `netuid_stats` row lock, which every inference insert updates
//! before committing); the gates are then opened newest writer first, and the reader
//! drains the feed after each. Without commit-ordered `seq`s the newest writer commits
//! first, the reader's cursor passes the older writers' rows, and they are never seen.
//! (SQLite cannot interleave that way: a writer holds the write lock from its first insert
//! to its commit.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common;

use common::TestStore;
use ganglion_records::Records;
use ganglion_records::synthetic::SyntheticSubnet;
use sqlx::{Connection, Row};

const NOW: i64 = 1_750_000_000_000;

/// Follows the feed like the hub's poller, in small pages.
#[derive(Debug, Default)]
struct Reader {
    inference: i64,
    challenge: i64,
    inference_ids: Vec<String>,
    challenge_ids: Vec<String>,
}

impl Reader {
    /// Reads until the feed has nothing newer; checks that `seq`s only grow.
    async fn drain(&mut self, records: &Records) {
        for _ in 0..10_000 {
            let rows = records.inference_since(self.inference, 7).await.expect("inference feed");
            let challenges = records.challenges_since(self.challenge, 7).await.expect("challenge feed");
            if rows.is_empty() && challenges.is_empty() {
                return;
            }
            for row in rows {
                assert!(row.seq > self.inference, "inference seq {} after cursor {}", row.seq, self.inference);
                self.inference = row.seq;
                self.inference_ids.push(row.id);
            }
            for row in challenges {
                assert!(row.seq > self.challenge, "challenge seq {} after cursor {}", row.seq, self.challenge);
                self.challenge = row.seq;
                self.challenge_ids.push(row.record.id);
            }
        }
        panic!("the feed did not run dry within 10 000 pages");
    }
}

#[track_caller]
fn assert_exactly_once(seen: &[String], expected: &HashSet<String>, what: &str) {
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{what}: a row was delivered twice");
    let missing: Vec<&String> = expected.iter().filter(|id| !unique.contains(id)).collect();
    assert!(missing.is_empty(), "{what}: {} of {} rows never delivered, e.g. {:?}", missing.len(), expected.len(), missing.first());
    assert_eq!(seen.len(), expected.len(), "{what}: rows delivered that were never written");
}

async fn feed_is_exactly_once_under_concurrent_writers(store: &TestStore) {
    const WRITERS: u64 = 4;
    const BATCHES: u64 = 8;
    const ROWS: u64 = 15;
    const CHALLENGES: u64 = 3;
    let s = SyntheticSubnet::ending_at(3, 2, 5, WRITERS * BATCHES * ROWS, NOW, 1000);
    let mut expected = HashSet::new();
    let mut expected_challenges = HashSet::new();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let records = store.records.clone();
        let s = s.clone();
        let batches: Vec<u64> = (0..BATCHES).map(|b| (w * BATCHES + b) * ROWS).collect();
        for &first in &batches {
            expected.extend((first..first + ROWS).map(|i| s.inference(i).id));
            expected_challenges.extend((first..first + CHALLENGES).map(|i| s.challenge(i).id));
        }
        writers.push(tokio::spawn(async move {
            for first in batches {
                let rows: Vec<_> = (first..first + ROWS).map(|i| s.inference(i)).collect();
                records.insert_inference(&rows).await.expect("insert inference");
                let challenges: Vec<_> = (first..first + CHALLENGES).map(|i| s.challenge(i)).collect();
                records.insert_challenges(&challenges).await.expect("insert challenges");
            }
        }));
    }
    let mut reader = Reader::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !writers.iter().all(|w| w.is_finished()) {
        assert!(Instant::now() < deadline, "the writers did not finish within 120 s");
        reader.drain(&store.records).await;
        // The poll period (the hub polls every 500 ms by default).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    reader.drain(&store.records).await;
    assert_exactly_once(&reader.inference_ids, &expected, "inference");
    assert_exactly_once(&reader.challenge_ids, &expected_challenges, "challenges");
}

both_backends!(feed_is_exactly_once_under_concurrent_writers);

/// Sessions of `app` waiting for a lock; with `gates`, only those not waiting on a session
/// named `gates` (that is, waiting behind another writer).
async fn lock_waiters(monitor: &sqlx::AnyPool, app: &str, gates: Option<&str>) -> i64 {
    let query = match gates {
        None => sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM pg_stat_activity a \
             WHERE a.application_name = $1 AND a.wait_event_type = 'Lock'",
        )
        .bind(app.to_string()),
        Some(gates) => sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM pg_stat_activity a \
             WHERE a.application_name = $1 AND a.wait_event_type = 'Lock' AND NOT EXISTS \
             (SELECT 1 FROM pg_stat_activity g WHERE g.application_name = $2 AND g.pid = ANY(pg_blocking_pids(a.pid)))",
        )
        .bind(app.to_string())
        .bind(gates.to_string()),
    };
    query.fetch_one(monitor).await.expect("reading pg_stat_activity").try_get("n").expect("count")
}

type Writer = tokio::task::JoinHandle<Result<(), ganglion_records::RecordsError>>;

/// Waits (bounded) until writer `k` has finished or waits for a lock (any lock, or with
/// `gates` one held by another writer).
async fn until_finished_or_waiting(monitor: &sqlx::AnyPool, writer: &Writer, app: &str, gates: Option<&str>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !writer.is_finished() && lock_waiters(monitor, app, gates).await == 0 {
        assert!(Instant::now() < deadline, "{what}: neither finished nor waiting after 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn postgres_feed_waits_for_delayed_commits() {
    let Some(store) = common::postgres().await else { return };
    const WRITERS: u16 = 4;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let subnet = |k: u16| SyntheticSubnet::ending_at(20 + k, 1, 3, 100, NOW, 1000);
    // Each writer's subnet gets its netuid_stats row now, so that a gate can lock it.
    let mut expected = HashSet::new();
    for k in 0..WRITERS {
        let row = subnet(k).inference(0);
        expected.insert(row.id.clone());
        store.records.insert_inference(&[row]).await.expect("seed");
    }
    let mut reader = Reader::default();
    reader.drain(&store.records).await;

    let monitor = common::raw_pool(&store.url);
    let gate_app = format!("feed_gate_{tag}");
    let mut gates = Vec::new();
    let mut stores = Vec::new();
    for k in 0..WRITERS {
        stores.push(Records::open(&format!("{}&application_name=feed_w{k}_{tag}", store.url)).await.expect("writer store"));
        let mut gate = sqlx::AnyConnection::connect(&format!("{}&application_name={gate_app}", store.url)).await.expect("gate");
        sqlx::query("BEGIN").execute(&mut gate).await.expect("begin");
        sqlx::query("SELECT netuid FROM netuid_stats WHERE netuid = $1 FOR UPDATE")
            .bind(i64::from(20 + k))
            .fetch_one(&mut gate)
            .await
            .expect("hold the gate");
        gates.push(gate);
    }

    // Writers start one after the other, each held inside its transaction before the next.
    let mut writers: Vec<Writer> = Vec::new();
    for k in 0..WRITERS {
        let rows: Vec<_> = (1..21).map(|i| subnet(k).inference(i)).collect();
        expected.extend(rows.iter().map(|r| r.id.clone()));
        let records = stores[usize::from(k)].clone();
        writers.push(tokio::spawn(async move { records.insert_inference(&rows).await }));
        let app = format!("feed_w{k}_{tag}");
        until_finished_or_waiting(&monitor, &writers[usize::from(k)], &app, None, &format!("writer {k}")).await;
        assert!(!writers[usize::from(k)].is_finished(), "writer {k} committed through a held gate: the test cannot delay commits");
    }

    // Open the gates newest writer first; the reader drains after each commit.
    for k in (0..WRITERS).rev() {
        let gate = &mut gates[usize::from(k)];
        sqlx::query("COMMIT").execute(&mut *gate).await.expect("open the gate");
        let app = format!("feed_w{k}_{tag}");
        until_finished_or_waiting(&monitor, &writers[usize::from(k)], &app, Some(&gate_app), &format!("released writer {k}")).await;
        reader.drain(&store.records).await;
    }
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(60), writer).await.expect("writer in time").expect("writer task").expect("insert");
    }
    reader.drain(&store.records).await;
    assert_exactly_once(&reader.inference_ids, &expected, "inference");

    for gate in gates {
        let _ = gate.close().await;
    }
    for records in stores {
        records.close().await;
    }
    monitor.close().await;
    store.cleanup().await;
}
