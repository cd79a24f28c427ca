//! Versioned schema migrations, applied in order at [`crate::Records::open`].
//!
//! The DDL is shared by both backends; the only per-backend piece is the `{seq}` column
//! (SQLite's rowid alias vs a PostgreSQL identity), which the types force. All integers are
//! BIGINT and booleans are BIGINT 0/1: the sqlx `Any` driver cannot decode SQLite BOOLEAN
//! columns, and one width everywhere keeps decoding uniform.
//!
//! Migrations run in one transaction that first takes the write lock, so two processes
//! opening a fresh database at once apply them exactly once.

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::error::{RecordsError, RecordsResult};
use crate::store::Backend;

/// One schema step. Never edit a released migration: add a new one.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) statements: &'static [&'static str],
}

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 5;

pub(crate) const MIGRATIONS: &[Migration] = &[V1, V2, V3, V4, V5];

const V1: Migration = Migration {
    version: 1,
    name: "initial schema",
    statements: &[
        // Raw inference records. `seq` orders rows by arrival (what the live feed polls on);
        // `id` is the writer's UUID and makes retried inserts idempotent.
        "CREATE TABLE IF NOT EXISTS inference (
            seq {seq},
            id TEXT NOT NULL UNIQUE,
            created_at_ms BIGINT NOT NULL,
            netuid BIGINT NOT NULL,
            block BIGINT NOT NULL,
            validator_hotkey TEXT NOT NULL,
            miner_uid BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            miner_coldkey TEXT NOT NULL,
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            organic BIGINT NOT NULL,
            sampling TEXT NOT NULL,
            seed TEXT,
            prompt TEXT NOT NULL,
            response TEXT NOT NULL,
            ttft_ms DOUBLE PRECISION,
            total_ms DOUBLE PRECISION NOT NULL,
            tokens BIGINT NOT NULL,
            tps DOUBLE PRECISION NOT NULL,
            verified BIGINT NOT NULL,
            cause TEXT,
            similarity DOUBLE PRECISION,
            detail TEXT NOT NULL
        )",
        // A miner's recent requests and its failure causes in a time window.
        "CREATE INDEX IF NOT EXISTS inference_by_miner ON inference (netuid, miner_hotkey, created_at_ms)",
        // A validator's recent requests.
        "CREATE INDEX IF NOT EXISTS inference_by_validator ON inference (netuid, validator_hotkey, created_at_ms)",
        // A subnet's recent requests.
        "CREATE INDEX IF NOT EXISTS inference_by_time ON inference (netuid, created_at_ms)",
        // Per-miner, per-model aggregates in minute (60) and hour (3600) buckets, maintained in
        // the insert transaction: the overview and the miner plots read these, never a scan
        // of the raw table.
        "CREATE TABLE IF NOT EXISTS inference_rollup (
            netuid BIGINT NOT NULL,
            bucket_s BIGINT NOT NULL,
            bucket_ms BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            model TEXT NOT NULL,
            miner_uid BIGINT NOT NULL,
            n BIGINT NOT NULL,
            n_verified BIGINT NOT NULL,
            n_organic BIGINT NOT NULL,
            n_ttft BIGINT NOT NULL,
            sum_ttft_ms DOUBLE PRECISION NOT NULL,
            sum_total_ms DOUBLE PRECISION NOT NULL,
            sum_tps DOUBLE PRECISION NOT NULL,
            sum_tokens BIGINT NOT NULL,
            n_similarity BIGINT NOT NULL,
            sum_similarity DOUBLE PRECISION NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (netuid, bucket_s, miner_hotkey, bucket_ms, model)
        )",
        "CREATE INDEX IF NOT EXISTS inference_rollup_by_time ON inference_rollup (netuid, bucket_s, bucket_ms)",
        // Failure causes per miner and bucket (unverified rows only).
        "CREATE TABLE IF NOT EXISTS cause_rollup (
            netuid BIGINT NOT NULL,
            bucket_s BIGINT NOT NULL,
            bucket_ms BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            cause TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (netuid, bucket_s, miner_hotkey, bucket_ms, cause)
        )",
        "CREATE INDEX IF NOT EXISTS cause_rollup_by_time ON cause_rollup (netuid, bucket_s, bucket_ms)",
        // Per-validator aggregates.
        "CREATE TABLE IF NOT EXISTS validator_rollup (
            netuid BIGINT NOT NULL,
            bucket_s BIGINT NOT NULL,
            bucket_ms BIGINT NOT NULL,
            validator_hotkey TEXT NOT NULL,
            n BIGINT NOT NULL,
            n_verified BIGINT NOT NULL,
            n_organic BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (netuid, bucket_s, validator_hotkey, bucket_ms)
        )",
        "CREATE INDEX IF NOT EXISTS validator_rollup_by_time ON validator_rollup (netuid, bucket_s, bucket_ms)",
        // Which netuids have which records (the hub's subnet list), kept current by the writers.
        "CREATE TABLE IF NOT EXISTS netuid_stats (
            netuid BIGINT NOT NULL PRIMARY KEY,
            inference_n BIGINT NOT NULL,
            challenge_n BIGINT NOT NULL,
            last_inference_ms BIGINT NOT NULL,
            last_challenge_ms BIGINT NOT NULL
        )",
        "CREATE TABLE IF NOT EXISTS challenge (
            seq {seq},
            id TEXT NOT NULL UNIQUE,
            created_at_ms BIGINT NOT NULL,
            netuid BIGINT NOT NULL,
            validator_hotkey TEXT NOT NULL,
            miner_uid BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            success BIGINT NOT NULL,
            elapsed_ms DOUBLE PRECISION NOT NULL,
            difficulty BIGINT NOT NULL,
            cause TEXT
        )",
        "CREATE INDEX IF NOT EXISTS challenge_by_miner ON challenge (netuid, miner_hotkey, created_at_ms)",
        "CREATE INDEX IF NOT EXISTS challenge_by_time ON challenge (netuid, created_at_ms)",
        "CREATE TABLE IF NOT EXISTS specs (
            netuid BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            miner_uid BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL,
            specs TEXT NOT NULL,
            PRIMARY KEY (netuid, miner_hotkey)
        )",
        "CREATE TABLE IF NOT EXISTS allocation (
            id TEXT NOT NULL PRIMARY KEY,
            netuid BIGINT NOT NULL,
            miner_uid BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            renter TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            ended_at_ms BIGINT,
            status TEXT NOT NULL,
            resources TEXT NOT NULL,
            access TEXT NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS allocation_by_netuid ON allocation (netuid, created_at_ms)",
        // Unique per (validator, block, uid): a validator scores a uid at most once a block,
        // and a retried insert is a no-op.
        "CREATE TABLE IF NOT EXISTS score (
            seq {seq},
            created_at_ms BIGINT NOT NULL,
            netuid BIGINT NOT NULL,
            block BIGINT NOT NULL,
            validator_hotkey TEXT NOT NULL,
            uid BIGINT NOT NULL,
            hotkey TEXT NOT NULL,
            score DOUBLE PRECISION NOT NULL,
            components TEXT NOT NULL,
            UNIQUE (netuid, validator_hotkey, block, uid)
        )",
        "CREATE INDEX IF NOT EXISTS score_by_hotkey ON score (netuid, hotkey, block)",
        "CREATE TABLE IF NOT EXISTS neuron_snapshot (
            netuid BIGINT NOT NULL,
            block BIGINT NOT NULL,
            uid BIGINT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            hotkey TEXT NOT NULL,
            coldkey TEXT NOT NULL,
            stake BIGINT NOT NULL,
            incentive DOUBLE PRECISION NOT NULL,
            emission BIGINT NOT NULL,
            consensus DOUBLE PRECISION NOT NULL,
            dividends DOUBLE PRECISION NOT NULL,
            validator_trust DOUBLE PRECISION NOT NULL,
            validator_permit BIGINT NOT NULL,
            PRIMARY KEY (netuid, block, uid)
        )",
        "CREATE INDEX IF NOT EXISTS neuron_snapshot_by_hotkey ON neuron_snapshot (netuid, hotkey, block)",
    ],
};

/// Challenge rollups (the compute page's per-miner window aggregates read these instead of
/// scanning the raw table), backfilled from the challenges already stored; and an index for
/// the request list's model filter (without it, a model with few or no rows made the list
/// scan the whole subnet). Backfilling runs in the migration's transaction, so writers of this
/// version wait for it; writers of an older version refuse the database (schema too new).
const V2: Migration = Migration {
    version: 2,
    name: "challenge rollup, model index",
    statements: &[
        "CREATE TABLE IF NOT EXISTS challenge_rollup (
            netuid BIGINT NOT NULL,
            bucket_s BIGINT NOT NULL,
            bucket_ms BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            miner_uid BIGINT NOT NULL,
            n BIGINT NOT NULL,
            n_success BIGINT NOT NULL,
            sum_success_elapsed_ms DOUBLE PRECISION NOT NULL,
            max_difficulty BIGINT NOT NULL,
            last_ms BIGINT NOT NULL,
            PRIMARY KEY (netuid, bucket_s, miner_hotkey, bucket_ms)
        )",
        "CREATE INDEX IF NOT EXISTS challenge_rollup_by_time ON challenge_rollup (netuid, bucket_s, bucket_ms)",
        BACKFILL_CHALLENGE_60,
        BACKFILL_CHALLENGE_3600,
        BACKFILL_CHALLENGE_86400,
        "CREATE INDEX IF NOT EXISTS inference_by_model ON inference (netuid, model, created_at_ms)",
    ],
};

/// Version 3: the reward-pipeline validator's event log (`crate::reward`), one row per step
/// of a forward; JSON arrays as TEXT.
const V3: Migration = Migration {
    version: 3,
    name: "reward events",
    statements: &[
        "CREATE TABLE IF NOT EXISTS reward_event (
            seq {seq},
            id TEXT NOT NULL UNIQUE,
            created_at_ms BIGINT NOT NULL,
            netuid BIGINT NOT NULL,
            block BIGINT NOT NULL,
            validator_hotkey TEXT NOT NULL,
            forward_index BIGINT NOT NULL,
            step TEXT NOT NULL,
            prompt TEXT NOT NULL,
            base_prompt TEXT NOT NULL,
            best TEXT NOT NULL,
            step_length_s DOUBLE PRECISION NOT NULL,
            scoring_s DOUBLE PRECISION NOT NULL,
            uids TEXT NOT NULL,
            completions TEXT NOT NULL,
            completion_times TEXT NOT NULL,
            rewards TEXT NOT NULL,
            functions TEXT NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS reward_event_by_netuid ON reward_event (netuid, seq)",
    ],
};

/// Version 4: the model-evaluation validator's evaluations (`crate::evaluation`), one row per
/// uid per step: evaluated (loss, win rate, weight), a duplicate, or rejected with its cause.
const V4: Migration = Migration {
    version: 4,
    name: "model evaluations",
    statements: &[
        "CREATE TABLE IF NOT EXISTS model_evaluation (
            seq {seq},
            id TEXT NOT NULL UNIQUE,
            created_at_ms BIGINT NOT NULL,
            netuid BIGINT NOT NULL,
            block BIGINT NOT NULL,
            validator_hotkey TEXT NOT NULL,
            step BIGINT NOT NULL,
            competition TEXT NOT NULL,
            uid BIGINT NOT NULL,
            miner_hotkey TEXT NOT NULL,
            commitment TEXT NOT NULL,
            commit_block BIGINT NOT NULL,
            model_hash TEXT,
            status TEXT NOT NULL,
            reason TEXT,
            mean_loss DOUBLE PRECISION,
            win_rate DOUBLE PRECISION,
            wins BIGINT NOT NULL,
            matches BIGINT NOT NULL,
            weight DOUBLE PRECISION NOT NULL,
            samples BIGINT NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS model_evaluation_by_netuid ON model_evaluation (netuid, seq)",
        "CREATE INDEX IF NOT EXISTS model_evaluation_by_uid ON model_evaluation (netuid, uid, seq)",
    ],
};

/// Version 5: the hub's reward and evaluation pages. `reward_score` splits each reward
/// event into one row per uid (combined reward, each function's normalised value) so the
/// distribution over a window and a uid's history are index ranges (`crate::reward`); its
/// rows for the events already stored are backfilled in Rust after these statements
/// ([`migrate`]), since the JSON arrays cannot be split by SQL both backends share. The
/// evaluation indexes serve a uid's history over a window and the latest round's rows.
const V5: Migration = Migration {
    version: 5,
    name: "reward scores, evaluation page indexes",
    statements: &[
        "CREATE TABLE IF NOT EXISTS reward_score (
            event_id TEXT NOT NULL,
            pos BIGINT NOT NULL,
            netuid BIGINT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            uid BIGINT NOT NULL,
            step TEXT NOT NULL,
            reward DOUBLE PRECISION,
            functions TEXT NOT NULL,
            PRIMARY KEY (event_id, pos)
        )",
        "CREATE INDEX IF NOT EXISTS reward_score_by_time ON reward_score (netuid, created_at_ms)",
        "CREATE INDEX IF NOT EXISTS reward_score_by_uid ON reward_score (netuid, uid, created_at_ms)",
        "CREATE INDEX IF NOT EXISTS model_evaluation_by_uid_time ON model_evaluation (netuid, uid, created_at_ms)",
        "CREATE INDEX IF NOT EXISTS model_evaluation_by_round ON model_evaluation (netuid, validator_hotkey, step, block)",
    ],
};

/// The challenge rollup of one bucket width from the raw rows: what `insert_challenges`
/// maintains incrementally. The bucket start is a floor division that is also right for
/// negative times (`%` truncates towards zero in both SQLite and PostgreSQL).
macro_rules! backfill_challenges {
    ($width_s:literal, $width_ms:literal) => {
        concat!(
            "INSERT INTO challenge_rollup (netuid, bucket_s, bucket_ms, miner_hotkey, miner_uid, n, n_success, \
             sum_success_elapsed_ms, max_difficulty, last_ms) \
             SELECT netuid, ", $width_s, ", bucket_ms, miner_hotkey, MAX(miner_uid), COUNT(*), SUM(success), \
             SUM(CASE WHEN success = 1 THEN elapsed_ms ELSE 0.0 END), MAX(difficulty), MAX(created_at_ms) \
             FROM (SELECT netuid, miner_hotkey, miner_uid, success, elapsed_ms, difficulty, created_at_ms, \
             created_at_ms - (((created_at_ms % ", $width_ms, ") + ", $width_ms, ") % ", $width_ms, ") AS bucket_ms \
             FROM challenge) AS c GROUP BY netuid, bucket_ms, miner_hotkey"
        )
    };
}
const BACKFILL_CHALLENGE_60: &str = backfill_challenges!("60", "60000");
const BACKFILL_CHALLENGE_3600: &str = backfill_challenges!("3600", "3600000");
const BACKFILL_CHALLENGE_86400: &str = backfill_challenges!("86400", "86400000");

const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS ganglion_records_schema (
    version BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL
)";

fn render(statement: &str, backend: Backend) -> String {
    let seq = match backend {
        Backend::Sqlite => "INTEGER PRIMARY KEY",
        Backend::Postgres => "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    };
    statement.replace("{seq}", seq)
}

/// Brings the database to [`SCHEMA_VERSION`]; returns the version it found.
pub(crate) async fn migrate(conn: &mut AnyConnection, backend: Backend) -> RecordsResult<i64> {
    use sqlx::Connection;

    sqlx::query(SCHEMA_TABLE).execute(&mut *conn).await.map_err(RecordsError::db("creating the schema table"))?;
    let mut tx = conn.begin().await.map_err(RecordsError::db("starting the migration transaction"))?;
    // Take the write lock before reading the version, so a concurrent opener waits for us
    // and then sees the migrated schema.
    let lock = match backend {
        Backend::Sqlite => "UPDATE ganglion_records_schema SET name = name WHERE version = -1",
        Backend::Postgres => "LOCK TABLE ganglion_records_schema IN EXCLUSIVE MODE",
    };
    sqlx::query(lock).execute(&mut *tx).await.map_err(RecordsError::db("locking the schema table"))?;
    let found: i64 = sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS v FROM ganglion_records_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(RecordsError::db("reading the schema version"))?
        .try_get("v")
        .map_err(RecordsError::db("reading the schema version"))?;
    if found > SCHEMA_VERSION {
        return Err(RecordsError::SchemaTooNew { found, supported: SCHEMA_VERSION });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let fail = |err: sqlx::Error| RecordsError::Migration {
            version: migration.version,
            name: migration.name,
            reason: err.to_string(),
        };
        for statement in migration.statements {
            sqlx::query(AssertSqlSafe(render(statement, backend))).execute(&mut *tx).await.map_err(fail)?;
        }
        if migration.version == 5 {
            crate::reward::backfill_scores(&mut tx).await.map_err(fail)?;
        }
        sqlx::query("INSERT INTO ganglion_records_schema (version, name, applied_at_ms) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(crate::store::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tracing::info!(version = migration.version, name = migration.name, "records store migrated");
    }
    tx.commit().await.map_err(RecordsError::db("committing the migration"))?;
    Ok(found)
}
