//! The records store: what validators observed (inference requests, compute challenges,
//! hardware specs, allocations, scores) and the metagraph snapshots the hub takes, in SQLite
//! by default or PostgreSQL by URL, through one code path with versioned migrations.
//! Writers are the subnet validators; the reader is the hub.
//!
//! **Architecture invariant:** this crate knows no subnet logic, no HTTP and no chain; it
//! stores and queries plain records.
//!
//! # Map
//! - [`Records`] ([`store`]): `open(url)`, pool, SQLite pragmas (WAL), typed conversions.
//! - [`types`]: the records.
//! - [`write`]: batched idempotent inserts/upserts; inference and challenge inserts maintain
//!   rollups, and draw their `seq`s in commit order (the live feed is exactly-once).
//! - [`read`]: whole-record reads.
//! - [`query`]: the hub's index- and rollup-backed aggregates, series and feeds; the window
//!   aggregates equal the raw rows' (tests/it/rollup.rs compares them).
//! - [`reward`]: the reward-pipeline validator's step events (its own table, V3) and their
//!   per-uid split for the hub's distribution and history pages (V5).
//! - [`evaluation`]: the model-evaluation validator's per-uid evaluations (its own table, V4);
//!   a uid's history and the latest round (indexes V5).
//! - [`synthetic`]: deterministic pretend-subnet records for tests, demos and benchmarks.
//! - `migrations`: the versioned schema ([`SCHEMA_VERSION`]).
//!
//! # One code path (sqlx `Any`)
//! Statements use `$1..$N` placeholders and only the column types `Any` decodes: BIGINT,
//! DOUBLE PRECISION and TEXT. Booleans are BIGINT 0/1 (the `Any` driver cannot decode SQLite
//! BOOLEAN). u64 fields are range-checked into BIGINT ([`RecordsError::OutOfRange`]) except
//! seeds, which use the full u64 range and are stored as decimal TEXT. JSON is TEXT.
//! Aggregates are CAST explicitly because PostgreSQL's SUM of BIGINT is NUMERIC.
//!
//! # Durability
//! SQLite runs in WAL mode with `synchronous=NORMAL`: a committed write survives the writer
//! being killed (kill -9); each insert call is one transaction, so a batch is all or nothing.

pub mod error;
pub mod evaluation;
mod migrations;
pub mod query;
pub mod read;
pub mod reward;
pub mod store;
pub mod synthetic;
pub mod types;
pub mod write;

pub use error::{RecordsError, RecordsResult, redact_url};
pub use migrations::SCHEMA_VERSION;
pub use query::{
    Bucket, CauseCount, ChallengeStats, ChallengeSummary, Cursor, InferenceFilter, InferenceStats, InferenceSummary, MinerStats,
    ModelStats, SeriesPoint, SubnetRecords, ValidatorStats,
};
pub use store::{Backend, Records, create_postgres_schema, drop_postgres_schema, now_ms};
pub use evaluation::ModelEvaluationRecord;
pub use reward::{Histogram, HistogramBin, RewardDistribution, RewardEventRecord, RewardEventSummary, RewardSample, RewardUidSummary};
pub use types::{AllocationRecord, ChallengeRecord, InferenceRecord, NeuronSnapshot, ScoreRecord, SpecsRecord};
