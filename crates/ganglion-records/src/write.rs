//! The write API: batched, idempotent inserts and upserts, each call one transaction.
//!
//! Inference inserts also maintain the rollups (per-miner, per-validator and per-cause
//! aggregates in minute and hour buckets) in the same transaction, counting only rows that
//! were actually inserted (`RETURNING id`), so a retried batch changes nothing.
//! Rollup keys are upserted in sorted order so that concurrent PostgreSQL writers lock rows
//! in the same order and cannot deadlock. Challenge inserts maintain their own rollup
//! (per miner and bucket) the same way.
//!
//! # Arrival order is commit order
//! The live feed reads `seq > cursor` ([`crate::query`]), which is exactly-once only if no row
//! can become visible after a row with a larger `seq`. SQLite guarantees it: one writer at a
//! time holds the write lock from its first insert to its commit. PostgreSQL assigns identity
//! values at insert time, so two concurrent transactions could commit out of `seq` order; each
//! inference (and each challenge) insert transaction therefore first takes a transaction-level
//! advisory lock, per table and schema ([`lock_arrival_order`]), before it draws any `seq`.
//! Writers of one table are thus serialized as SQLite's are (they already were from their
//! first rollup upsert: every insert into a subnet updates its `netuid_stats` row), and the
//! lock is released only after the commit is visible, so the next writer's `seq`s are all
//! larger than every `seq` a reader can see.

use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::{RecordsError, RecordsResult};
use crate::store::{Backend, Records, finite, finite_opt, json_text, u64_to_i64};
use crate::types::{AllocationRecord, ChallengeRecord, InferenceRecord, NeuronSnapshot, ScoreRecord, SpecsRecord};

/// Rollup bucket widths in seconds: minutes, hours and days. Plots use minutes or hours;
/// window aggregates add up days, then hours, then minutes at the window's start, so they
/// are exact to the minute and read few rows whatever the window.
pub const BUCKETS_S: [i64; 3] = [60, 3600, 86_400];

/// The `miner_hotkey` of rollup rows that aggregate every miner of a subnet (what
/// subnet-wide plots read; hotkeys are never empty).
pub const ALL_MINERS: &str = "";

/// Cause recorded for an unverified row that names none.
pub const UNKNOWN_CAUSE: &str = "unverified";

/// A bound value of a dynamically built statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    F64(f64),
    Text(String),
    OptI64(Option<i64>),
    OptF64(Option<f64>),
    OptText(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::I64(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::F64(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::OptI64(v)
    }
}
impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Arg {
        Arg::OptF64(v)
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::OptText(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::I64(i64::from(v))
    }
}
impl From<u16> for Arg {
    fn from(v: u16) -> Arg {
        Arg::I64(i64::from(v))
    }
}

pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: impl IntoIterator<Item = Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::I64(v) => query.bind(v),
            Arg::F64(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::OptI64(v) => query.bind(v),
            Arg::OptF64(Some(v)) => query.bind(v),
            // sqlx 0.9.0's `Any` driver swaps the NULL types of its two float kinds: a NULL
            // `f64` reaches PostgreSQL as a FLOAT4 parameter, and once a statement has been
            // prepared that way (cached by its text), binding a real `f64` at that position
            // fails ("incorrect binary data format"). A NULL `f32` is sent as FLOAT8, the
            // column's type. `store::null_floats_bind_as_double_in_reused_statements` fails
            // if an upgrade changes this.
            Arg::OptF64(None) => query.bind(Option::<f32>::None),
            Arg::OptText(v) => query.bind(v),
        };
    }
    query
}

/// Parameters per multi-row statement. PostgreSQL takes up to 65535, and bigger statements
/// mean fewer round trips. SQLite allows 32766, but binding `$N` parameters looks each name
/// up with a linear scan (`sqlite3_bind_parameter_name`), so the cost per row grows with the
/// statement's width: small statements are much faster there (measured: 2 400 → 200
/// parameters made batched inserts about 8× faster).
fn max_params(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => SQLITE_MAX_PARAMS.load(std::sync::atomic::Ordering::Relaxed),
        Backend::Postgres => 2400,
    }
}
static SQLITE_MAX_PARAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(200);

/// Runs `head VALUES (…), (…) tail` over `rows` in chunks; returns the rows any
/// `RETURNING` in `tail` produced.
async fn insert_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    head: &str,
    rows: Vec<Vec<Arg>>,
    tail: &str,
    context: &'static str,
) -> RecordsResult<Vec<AnyRow>> {
    let Some(width) = rows.first().map(Vec::len) else { return Ok(Vec::new()) };
    let per_chunk = (max_params(backend) / width).max(1);
    let mut returned = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Arg>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = String::with_capacity(head.len() + tail.len() + chunk.len() * width * 5);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for j in 0..row.len() {
                n += 1;
                if j > 0 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(tail);
        let query = bind_all(sqlx::query(AssertSqlSafe(sql)), chunk.into_iter().flatten());
        if tail.contains("RETURNING") {
            returned.extend(query.fetch_all(&mut *conn).await.map_err(RecordsError::db(context))?);
        } else {
            query.execute(&mut *conn).await.map_err(RecordsError::db(context))?;
        }
    }
    Ok(returned)
}

/// Per-miner, per-model aggregate of one bucket.
#[derive(Debug, Default)]
struct InferenceAgg {
    miner_uid: i64,
    n: i64,
    n_verified: i64,
    n_organic: i64,
    n_ttft: i64,
    sum_ttft_ms: f64,
    sum_total_ms: f64,
    sum_tps: f64,
    sum_tokens: i64,
    n_similarity: i64,
    sum_similarity: f64,
    last_ms: i64,
}

impl InferenceAgg {
    fn add(&mut self, r: &InferenceRecord, miner_uid: i64) {
        // The largest uid seen, as `MAX(miner_uid)` over the raw rows gives.
        self.miner_uid = self.miner_uid.max(miner_uid);
        self.n += 1;
        self.n_verified += i64::from(r.verified);
        self.n_organic += i64::from(r.organic);
        if let Some(ttft) = r.ttft_ms {
            self.n_ttft += 1;
            self.sum_ttft_ms += ttft;
        }
        self.sum_total_ms += r.total_ms;
        self.sum_tps += r.tps;
        self.sum_tokens += i64::from(r.tokens);
        if let Some(similarity) = r.similarity {
            self.n_similarity += 1;
            self.sum_similarity += similarity;
        }
        self.last_ms = self.last_ms.max(r.created_at_ms);
    }
}

#[derive(Debug, Default)]
struct ValidatorAgg {
    n: i64,
    n_verified: i64,
    n_organic: i64,
    last_ms: i64,
}

/// Per-miner challenge aggregate of one bucket.
#[derive(Debug, Default)]
struct ChallengeAgg {
    miner_uid: i64,
    n: i64,
    n_success: i64,
    sum_success_elapsed_ms: f64,
    max_difficulty: i64,
    last_ms: i64,
}

impl ChallengeAgg {
    fn add(&mut self, r: &ChallengeRecord) {
        self.miner_uid = self.miner_uid.max(i64::from(r.miner_uid));
        self.n += 1;
        if r.success {
            self.n_success += 1;
            self.sum_success_elapsed_ms += r.elapsed_ms;
        }
        self.max_difficulty = self.max_difficulty.max(i64::from(r.difficulty));
        self.last_ms = self.last_ms.max(r.created_at_ms);
    }
}

#[derive(Debug, Default)]
struct NetuidAgg {
    inference_n: i64,
    challenge_n: i64,
    last_inference_ms: i64,
    last_challenge_ms: i64,
}

/// Takes the lock that makes `seq` order the commit order for `table` (PostgreSQL only; see
/// the module doc). Held until the transaction ends. The key is per table and per schema, so
/// stores in different schemas of one database do not wait for each other (a hash collision
/// only costs some waiting, never correctness).
async fn lock_arrival_order(conn: &mut AnyConnection, backend: Backend, table: ArrivalTable) -> RecordsResult<()> {
    if backend != Backend::Postgres {
        return Ok(());
    }
    let sql = match table {
        ArrivalTable::Inference => "SELECT pg_advisory_xact_lock(1734438503, hashtext(current_schema() || '.inference'))",
        ArrivalTable::Challenge => "SELECT pg_advisory_xact_lock(1734438503, hashtext(current_schema() || '.challenge'))",
    };
    sqlx::query(sql).execute(&mut *conn).await.map_err(RecordsError::db("taking the arrival-order lock"))?;
    Ok(())
}

/// Tables whose `seq` the live feed follows.
#[derive(Debug, Clone, Copy)]
enum ArrivalTable {
    Inference,
    Challenge,
}

/// Start of the `bucket_s` bucket containing `created_at_ms` (floor, also for negative times;
/// the migrations' backfills compute the same in SQL).
fn bucket_start(created_at_ms: i64, bucket_s: i64) -> i64 {
    let width = bucket_s * 1000;
    created_at_ms.div_euclid(width) * width
}

fn validate_id(id: &str) -> RecordsResult<()> {
    if id.is_empty() || id.len() > 200 {
        return Err(RecordsError::InvalidInput { field: "id", reason: "must be 1 to 200 characters (a UUID)".into() });
    }
    Ok(())
}

fn inference_args(r: &InferenceRecord) -> RecordsResult<Vec<Arg>> {
    validate_id(&r.id)?;
    if r.miner_hotkey.is_empty() {
        return Err(RecordsError::InvalidInput { field: "miner_hotkey", reason: "must not be empty".into() });
    }
    Ok(vec![
        r.id.as_str().into(),
        r.created_at_ms.into(),
        r.netuid.into(),
        u64_to_i64("block", r.block)?.into(),
        r.validator_hotkey.as_str().into(),
        r.miner_uid.into(),
        r.miner_hotkey.as_str().into(),
        r.miner_coldkey.as_str().into(),
        r.model.as_str().into(),
        r.endpoint.as_str().into(),
        r.organic.into(),
        json_text(&r.sampling).into(),
        // Seeds use the whole u64 range, so they are stored as decimal text.
        r.seed.map(|s| s.to_string()).into(),
        json_text(&r.prompt).into(),
        r.response.as_str().into(),
        finite_opt("ttft_ms", r.ttft_ms)?.into(),
        finite("total_ms", r.total_ms)?.into(),
        i64::from(r.tokens).into(),
        finite("tps", r.tps)?.into(),
        r.verified.into(),
        r.cause.clone().into(),
        finite_opt("similarity", r.similarity)?.into(),
        json_text(&r.detail).into(),
    ])
}

const INFERENCE_COLUMNS: &str = "INSERT INTO inference (id, created_at_ms, netuid, block, validator_hotkey, miner_uid, \
    miner_hotkey, miner_coldkey, model, endpoint, organic, sampling, seed, prompt, response, ttft_ms, total_ms, tokens, \
    tps, verified, cause, similarity, detail)";

impl Records {
    /// Inserts inference records in one transaction (all or none) and updates the rollups.
    /// Rows whose id is already stored are skipped, so retrying a batch is safe.
    pub async fn insert_inference(&self, rows: &[InferenceRecord]) -> RecordsResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let args = rows.iter().map(inference_args).collect::<RecordsResult<Vec<_>>>()?;
        let mut tx = self.pool.begin().await.map_err(RecordsError::db("starting an inference insert"))?;
        lock_arrival_order(&mut tx, self.backend(), ArrivalTable::Inference).await?;
        let returned =
            insert_rows(&mut tx, self.backend(), INFERENCE_COLUMNS, args, "ON CONFLICT (id) DO NOTHING RETURNING id", "inserting inference records")
                .await?;
        let mut inserted: HashMap<String, ()> = HashMap::with_capacity(returned.len());
        for row in &returned {
            let id: String = row.try_get("id").map_err(RecordsError::db("reading inserted ids"))?;
            inserted.insert(id, ());
        }

        let mut miners: BTreeMap<(i64, i64, String, i64, String), InferenceAgg> = BTreeMap::new();
        let mut causes: BTreeMap<(i64, i64, String, i64, String), i64> = BTreeMap::new();
        let mut validators: BTreeMap<(i64, i64, String, i64), ValidatorAgg> = BTreeMap::new();
        let mut netuids: BTreeMap<i64, NetuidAgg> = BTreeMap::new();
        // `remove` makes a duplicated id within the batch count once, like the insert did.
        for r in rows.iter().filter(|r| inserted.remove(&r.id).is_some()) {
            let netuid = i64::from(r.netuid);
            for bucket_s in BUCKETS_S {
                let bucket_ms = bucket_start(r.created_at_ms, bucket_s);
                for hotkey in [r.miner_hotkey.as_str(), ALL_MINERS] {
                    let agg = miners.entry((netuid, bucket_s, hotkey.to_string(), bucket_ms, r.model.clone())).or_default();
                    agg.add(r, if hotkey == ALL_MINERS { 0 } else { i64::from(r.miner_uid) });
                    if !r.verified {
                        let cause = r.cause.clone().unwrap_or_else(|| UNKNOWN_CAUSE.to_string());
                        *causes.entry((netuid, bucket_s, hotkey.to_string(), bucket_ms, cause)).or_default() += 1;
                    }
                }
                let v = validators.entry((netuid, bucket_s, r.validator_hotkey.clone(), bucket_ms)).or_default();
                v.n += 1;
                v.n_verified += i64::from(r.verified);
                v.n_organic += i64::from(r.organic);
                v.last_ms = v.last_ms.max(r.created_at_ms);
            }
            let stats = netuids.entry(netuid).or_default();
            stats.inference_n += 1;
            stats.last_inference_ms = stats.last_inference_ms.max(r.created_at_ms);
        }

        let miner_rows = miners
            .into_iter()
            .map(|((netuid, bucket_s, hotkey, bucket_ms, model), a)| {
                vec![
                    netuid.into(),
                    bucket_s.into(),
                    bucket_ms.into(),
                    hotkey.into(),
                    model.into(),
                    a.miner_uid.into(),
                    a.n.into(),
                    a.n_verified.into(),
                    a.n_organic.into(),
                    a.n_ttft.into(),
                    a.sum_ttft_ms.into(),
                    a.sum_total_ms.into(),
                    a.sum_tps.into(),
                    a.sum_tokens.into(),
                    a.n_similarity.into(),
                    a.sum_similarity.into(),
                    a.last_ms.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO inference_rollup (netuid, bucket_s, bucket_ms, miner_hotkey, model, miner_uid, n, n_verified, \
             n_organic, n_ttft, sum_ttft_ms, sum_total_ms, sum_tps, sum_tokens, n_similarity, sum_similarity, last_ms)",
            miner_rows,
            "ON CONFLICT (netuid, bucket_s, miner_hotkey, bucket_ms, model) DO UPDATE SET \
             miner_uid = CASE WHEN excluded.miner_uid > inference_rollup.miner_uid THEN excluded.miner_uid ELSE inference_rollup.miner_uid END, \
             n = inference_rollup.n + excluded.n, \
             n_verified = inference_rollup.n_verified + excluded.n_verified, \
             n_organic = inference_rollup.n_organic + excluded.n_organic, \
             n_ttft = inference_rollup.n_ttft + excluded.n_ttft, \
             sum_ttft_ms = inference_rollup.sum_ttft_ms + excluded.sum_ttft_ms, \
             sum_total_ms = inference_rollup.sum_total_ms + excluded.sum_total_ms, \
             sum_tps = inference_rollup.sum_tps + excluded.sum_tps, \
             sum_tokens = inference_rollup.sum_tokens + excluded.sum_tokens, \
             n_similarity = inference_rollup.n_similarity + excluded.n_similarity, \
             sum_similarity = inference_rollup.sum_similarity + excluded.sum_similarity, \
             last_ms = CASE WHEN excluded.last_ms > inference_rollup.last_ms THEN excluded.last_ms ELSE inference_rollup.last_ms END",
            "updating the inference rollup",
        )
        .await?;

        let cause_rows = causes
            .into_iter()
            .map(|((netuid, bucket_s, hotkey, bucket_ms, cause), n)| {
                vec![netuid.into(), bucket_s.into(), bucket_ms.into(), hotkey.into(), cause.into(), n.into()]
            })
            .collect();
        insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO cause_rollup (netuid, bucket_s, bucket_ms, miner_hotkey, cause, n)",
            cause_rows,
            "ON CONFLICT (netuid, bucket_s, miner_hotkey, bucket_ms, cause) DO UPDATE SET n = cause_rollup.n + excluded.n",
            "updating the cause rollup",
        )
        .await?;

        let validator_rows = validators
            .into_iter()
            .map(|((netuid, bucket_s, hotkey, bucket_ms), v)| {
                vec![
                    netuid.into(),
                    bucket_s.into(),
                    bucket_ms.into(),
                    hotkey.into(),
                    v.n.into(),
                    v.n_verified.into(),
                    v.n_organic.into(),
                    v.last_ms.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO validator_rollup (netuid, bucket_s, bucket_ms, validator_hotkey, n, n_verified, n_organic, last_ms)",
            validator_rows,
            "ON CONFLICT (netuid, bucket_s, validator_hotkey, bucket_ms) DO UPDATE SET \
             n = validator_rollup.n + excluded.n, n_verified = validator_rollup.n_verified + excluded.n_verified, \
             n_organic = validator_rollup.n_organic + excluded.n_organic, \
             last_ms = CASE WHEN excluded.last_ms > validator_rollup.last_ms THEN excluded.last_ms ELSE validator_rollup.last_ms END",
            "updating the validator rollup",
        )
        .await?;

        update_netuid_stats(&mut tx, self.backend(), netuids).await?;
        tx.commit().await.map_err(RecordsError::db("committing inference records"))
    }

    /// Inserts compute challenges in one transaction; ids already stored are skipped.
    pub async fn insert_challenges(&self, rows: &[ChallengeRecord]) -> RecordsResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(rows.len());
        for r in rows {
            validate_id(&r.id)?;
            args.push(vec![
                r.id.as_str().into(),
                r.created_at_ms.into(),
                r.netuid.into(),
                r.validator_hotkey.as_str().into(),
                r.miner_uid.into(),
                r.miner_hotkey.as_str().into(),
                r.success.into(),
                finite("elapsed_ms", r.elapsed_ms)?.into(),
                i64::from(r.difficulty).into(),
                r.cause.clone().into(),
            ]);
        }
        let mut tx = self.pool.begin().await.map_err(RecordsError::db("starting a challenge insert"))?;
        lock_arrival_order(&mut tx, self.backend(), ArrivalTable::Challenge).await?;
        let returned = insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO challenge (id, created_at_ms, netuid, validator_hotkey, miner_uid, miner_hotkey, success, \
             elapsed_ms, difficulty, cause)",
            args,
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            "inserting challenge records",
        )
        .await?;
        let mut inserted: HashMap<String, ()> = HashMap::with_capacity(returned.len());
        for row in &returned {
            let id: String = row.try_get("id").map_err(RecordsError::db("reading inserted ids"))?;
            inserted.insert(id, ());
        }
        let mut netuids: BTreeMap<i64, NetuidAgg> = BTreeMap::new();
        let mut miners: BTreeMap<(i64, i64, String, i64), ChallengeAgg> = BTreeMap::new();
        for r in rows.iter().filter(|r| inserted.remove(&r.id).is_some()) {
            let netuid = i64::from(r.netuid);
            for bucket_s in BUCKETS_S {
                let key = (netuid, bucket_s, r.miner_hotkey.clone(), bucket_start(r.created_at_ms, bucket_s));
                miners.entry(key).or_default().add(r);
            }
            let stats = netuids.entry(netuid).or_default();
            stats.challenge_n += 1;
            stats.last_challenge_ms = stats.last_challenge_ms.max(r.created_at_ms);
        }
        let miner_rows = miners
            .into_iter()
            .map(|((netuid, bucket_s, hotkey, bucket_ms), a)| {
                vec![
                    netuid.into(),
                    bucket_s.into(),
                    bucket_ms.into(),
                    hotkey.into(),
                    a.miner_uid.into(),
                    a.n.into(),
                    a.n_success.into(),
                    a.sum_success_elapsed_ms.into(),
                    a.max_difficulty.into(),
                    a.last_ms.into(),
                ]
            })
            .collect();
        insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO challenge_rollup (netuid, bucket_s, bucket_ms, miner_hotkey, miner_uid, n, n_success, \
             sum_success_elapsed_ms, max_difficulty, last_ms)",
            miner_rows,
            "ON CONFLICT (netuid, bucket_s, miner_hotkey, bucket_ms) DO UPDATE SET \
             miner_uid = CASE WHEN excluded.miner_uid > challenge_rollup.miner_uid THEN excluded.miner_uid ELSE challenge_rollup.miner_uid END, \
             n = challenge_rollup.n + excluded.n, n_success = challenge_rollup.n_success + excluded.n_success, \
             sum_success_elapsed_ms = challenge_rollup.sum_success_elapsed_ms + excluded.sum_success_elapsed_ms, \
             max_difficulty = CASE WHEN excluded.max_difficulty > challenge_rollup.max_difficulty \
                 THEN excluded.max_difficulty ELSE challenge_rollup.max_difficulty END, \
             last_ms = CASE WHEN excluded.last_ms > challenge_rollup.last_ms THEN excluded.last_ms ELSE challenge_rollup.last_ms END",
            "updating the challenge rollup",
        )
        .await?;
        update_netuid_stats(&mut tx, self.backend(), netuids).await?;
        tx.commit().await.map_err(RecordsError::db("committing challenge records"))
    }

    /// Stores a miner's specs, replacing the previous ones (key: netuid, miner_hotkey).
    pub async fn upsert_specs(&self, row: &SpecsRecord) -> RecordsResult<()> {
        let args: Vec<Arg> = vec![
            row.netuid.into(),
            row.miner_hotkey.as_str().into(),
            row.miner_uid.into(),
            row.updated_at_ms.into(),
            json_text(&row.specs).into(),
        ];
        let sql = "INSERT INTO specs (netuid, miner_hotkey, miner_uid, updated_at_ms, specs) VALUES ($1, $2, $3, $4, $5) \
                   ON CONFLICT (netuid, miner_hotkey) DO UPDATE SET miner_uid = excluded.miner_uid, \
                   updated_at_ms = excluded.updated_at_ms, specs = excluded.specs";
        bind_all(sqlx::query(sql), args).execute(&self.pool).await.map_err(RecordsError::db("storing specs"))?;
        Ok(())
    }

    /// Stores an allocation, replacing the row with the same id.
    pub async fn upsert_allocation(&self, row: &AllocationRecord) -> RecordsResult<()> {
        validate_id(&row.id)?;
        let args: Vec<Arg> = vec![
            row.id.as_str().into(),
            row.netuid.into(),
            row.miner_uid.into(),
            row.miner_hotkey.as_str().into(),
            row.renter.as_str().into(),
            row.created_at_ms.into(),
            row.expires_at_ms.into(),
            row.ended_at_ms.into(),
            row.status.as_str().into(),
            json_text(&row.resources).into(),
            json_text(&row.access).into(),
        ];
        let sql = "INSERT INTO allocation (id, netuid, miner_uid, miner_hotkey, renter, created_at_ms, expires_at_ms, \
                   ended_at_ms, status, resources, access) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                   ON CONFLICT (id) DO UPDATE SET netuid = excluded.netuid, miner_uid = excluded.miner_uid, \
                   miner_hotkey = excluded.miner_hotkey, renter = excluded.renter, created_at_ms = excluded.created_at_ms, \
                   expires_at_ms = excluded.expires_at_ms, ended_at_ms = excluded.ended_at_ms, status = excluded.status, \
                   resources = excluded.resources, access = excluded.access";
        bind_all(sqlx::query(sql), args).execute(&self.pool).await.map_err(RecordsError::db("storing an allocation"))?;
        Ok(())
    }

    /// Inserts scores in one transaction; a (netuid, validator, block, uid) already stored is skipped.
    pub async fn insert_scores(&self, rows: &[ScoreRecord]) -> RecordsResult<()> {
        let mut args = Vec::with_capacity(rows.len());
        for r in rows {
            args.push(vec![
                r.created_at_ms.into(),
                r.netuid.into(),
                u64_to_i64("block", r.block)?.into(),
                r.validator_hotkey.as_str().into(),
                r.uid.into(),
                r.hotkey.as_str().into(),
                finite("score", r.score)?.into(),
                json_text(&r.components).into(),
            ]);
        }
        if args.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(RecordsError::db("starting a score insert"))?;
        insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO score (created_at_ms, netuid, block, validator_hotkey, uid, hotkey, score, components)",
            args,
            "ON CONFLICT (netuid, validator_hotkey, block, uid) DO NOTHING",
            "inserting scores",
        )
        .await?;
        tx.commit().await.map_err(RecordsError::db("committing scores"))
    }

    /// Inserts metagraph snapshots in one transaction; a (netuid, block, uid) already stored is skipped.
    pub async fn insert_neuron_snapshots(&self, rows: &[NeuronSnapshot]) -> RecordsResult<()> {
        let mut args = Vec::with_capacity(rows.len());
        for r in rows {
            args.push(vec![
                r.netuid.into(),
                u64_to_i64("block", r.block)?.into(),
                r.uid.into(),
                r.created_at_ms.into(),
                r.hotkey.as_str().into(),
                r.coldkey.as_str().into(),
                u64_to_i64("stake", r.stake)?.into(),
                finite("incentive", r.incentive)?.into(),
                u64_to_i64("emission", r.emission)?.into(),
                finite("consensus", r.consensus)?.into(),
                finite("dividends", r.dividends)?.into(),
                finite("validator_trust", r.validator_trust)?.into(),
                r.validator_permit.into(),
            ]);
        }
        if args.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(RecordsError::db("starting a snapshot insert"))?;
        insert_rows(
            &mut tx,
            self.backend(),
            "INSERT INTO neuron_snapshot (netuid, block, uid, created_at_ms, hotkey, coldkey, stake, incentive, emission, \
             consensus, dividends, validator_trust, validator_permit)",
            args,
            "ON CONFLICT (netuid, block, uid) DO NOTHING",
            "inserting neuron snapshots",
        )
        .await?;
        tx.commit().await.map_err(RecordsError::db("committing neuron snapshots"))
    }
}

async fn update_netuid_stats(conn: &mut AnyConnection, backend: Backend, netuids: BTreeMap<i64, NetuidAgg>) -> RecordsResult<()> {
    let rows = netuids
        .into_iter()
        .map(|(netuid, s)| {
            vec![
                netuid.into(),
                s.inference_n.into(),
                s.challenge_n.into(),
                s.last_inference_ms.into(),
                s.last_challenge_ms.into(),
            ]
        })
        .collect();
    insert_rows(
        conn,
        backend,
        "INSERT INTO netuid_stats (netuid, inference_n, challenge_n, last_inference_ms, last_challenge_ms)",
        rows,
        "ON CONFLICT (netuid) DO UPDATE SET inference_n = netuid_stats.inference_n + excluded.inference_n, \
         challenge_n = netuid_stats.challenge_n + excluded.challenge_n, \
         last_inference_ms = CASE WHEN excluded.last_inference_ms > netuid_stats.last_inference_ms \
             THEN excluded.last_inference_ms ELSE netuid_stats.last_inference_ms END, \
         last_challenge_ms = CASE WHEN excluded.last_challenge_ms > netuid_stats.last_challenge_ms \
             THEN excluded.last_challenge_ms ELSE netuid_stats.last_challenge_ms END",
        "updating per-netuid counts",
    )
    .await?;
    Ok(())
}

/// Sets SQLite's parameters per statement (for measuring; the default is 200).
pub fn set_sqlite_max_params(n: usize) {
    SQLITE_MAX_PARAMS.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_their_width() {
        assert_eq!(bucket_start(61_500, 60), 60_000);
        assert_eq!(bucket_start(3_599_999, 3600), 0);
        assert_eq!(bucket_start(-1, 60), -60_000);
    }
}
