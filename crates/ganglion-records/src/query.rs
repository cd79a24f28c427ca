//! The hub's queries: subnet lists, per-miner aggregates, time series, breakdowns, recent
//! rows and the live-feed cursor. Every query is backed by an index or reads the rollups,
//! so pages stay fast with millions of raw rows (see `ganglion bench hub`).
//!
//! Window aggregates (`miner_stats`, `model_stats`, `cause_counts`, `validator_stats`,
//! `challenge_stats`) are exact to the minute (they equal the raw rows' aggregate from the
//! start of the minute containing `since_ms`; a test compares them with the raw queries)
//! and cheap for any window: they add the day buckets fully inside the
//! window, the hour buckets of its first partial day and the minute buckets of its first
//! partial hour. Time series use one bucket width ([`Bucket::for_window`]), so their first
//! point may start up to one bucket before the window.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::error::RecordsResult;
use crate::read::{CHALLENGE_SELECT, check_limit, challenge_from_row, score_from_row, snapshot_from_row};
use crate::store::{Cols, Records};
use crate::types::{ChallengeRecord, NeuronSnapshot, ScoreRecord};
use crate::write::{ALL_MINERS, Arg};

/// Rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One-minute buckets.
    Minute,
    /// One-hour buckets.
    Hour,
}

impl Bucket {
    /// Width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::Minute => 60,
            Bucket::Hour => 3600,
        }
    }

    /// Minute buckets for windows up to 6 hours (at most 360 points), hours beyond.
    pub fn for_window(window_ms: i64) -> Bucket {
        if window_ms <= 6 * 3600 * 1000 { Bucket::Minute } else { Bucket::Hour }
    }

    /// Start of the bucket containing `since_ms`.
    pub fn floor(self, since_ms: i64) -> i64 {
        let width = self.seconds() * 1000;
        since_ms.div_euclid(width) * width
    }
}

/// Which records a netuid has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetRecords {
    /// Subnet.
    pub netuid: u16,
    /// Inference records stored.
    pub inference_n: u64,
    /// Challenge records stored.
    pub challenge_n: u64,
    /// Newest inference record (0 if none).
    pub last_inference_ms: i64,
    /// Newest challenge record (0 if none).
    pub last_challenge_ms: i64,
    /// Miners with specs.
    pub specs_n: u64,
    /// Allocations stored.
    pub allocation_n: u64,
}

/// Aggregates of inference records (for one miner, model, validator or bucket).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceStats {
    /// Requests.
    pub n: u64,
    /// Verified requests.
    pub verified: u64,
    /// Organic requests.
    pub organic: u64,
    /// verified / n (0 when n = 0).
    pub verified_rate: f64,
    /// Mean time to first token over requests that had one.
    pub avg_ttft_ms: Option<f64>,
    /// Mean total time.
    pub avg_total_ms: Option<f64>,
    /// Mean tokens per second.
    pub avg_tps: Option<f64>,
    /// Tokens received.
    pub tokens: u64,
    /// Mean similarity over requests where it was computed.
    pub avg_similarity: Option<f64>,
    /// Newest request.
    pub last_ms: i64,
}

/// One miner's aggregates over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerStats {
    /// Hotkey.
    pub hotkey: String,
    /// Latest uid seen.
    pub uid: u16,
    /// The aggregates.
    #[serde(flatten)]
    pub stats: InferenceStats,
    /// Failure causes, most frequent first.
    pub causes: Vec<CauseCount>,
}

/// A failure cause and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseCount {
    /// Cause code.
    pub cause: String,
    /// Occurrences.
    pub n: u64,
}

/// Aggregates of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStats {
    /// Model.
    pub model: String,
    /// The aggregates.
    #[serde(flatten)]
    pub stats: InferenceStats,
}

/// One bucket of a time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Bucket start.
    pub t_ms: i64,
    /// The aggregates.
    #[serde(flatten)]
    pub stats: InferenceStats,
}

/// One validator's aggregates over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorStats {
    /// Hotkey.
    pub hotkey: String,
    /// Requests sent.
    pub n: u64,
    /// Verified responses.
    pub verified: u64,
    /// Organic requests.
    pub organic: u64,
    /// verified / n.
    pub verified_rate: f64,
    /// Newest request.
    pub last_ms: i64,
}

/// An inference record without its large fields (prompt, response, detail): what lists show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceSummary {
    /// Arrival order in this store (the live-feed cursor).
    pub seq: i64,
    /// Id.
    pub id: String,
    /// When.
    pub created_at_ms: i64,
    /// Subnet.
    pub netuid: u16,
    /// Block.
    pub block: u64,
    /// Validator.
    pub validator_hotkey: String,
    /// Miner uid.
    pub miner_uid: u16,
    /// Miner hotkey.
    pub miner_hotkey: String,
    /// Model.
    pub model: String,
    /// `chat` or `completion`.
    pub endpoint: String,
    /// Organic.
    pub organic: bool,
    /// Time to first token.
    pub ttft_ms: Option<f64>,
    /// Total time.
    pub total_ms: f64,
    /// Tokens.
    pub tokens: u32,
    /// Tokens per second.
    pub tps: f64,
    /// Verified.
    pub verified: bool,
    /// Failure cause.
    pub cause: Option<String>,
    /// Similarity.
    pub similarity: Option<f64>,
}

/// Filter for [`Records::recent_inference`]. `netuid` is required: every index starts with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceFilter {
    /// Subnet.
    pub netuid: u16,
    /// Only this miner.
    pub miner_hotkey: Option<String>,
    /// Only this validator.
    pub validator_hotkey: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only verified (true) or failed (false) rows.
    pub verified: Option<bool>,
    /// Only rows at or after this time.
    pub since_ms: Option<i64>,
    /// Only rows strictly before this time (pagination: pass the last row's `created_at_ms`).
    pub before_ms: Option<i64>,
    /// At most this many rows (1 to [`crate::read::MAX_LIMIT`]).
    pub limit: u32,
}

/// A challenge with its arrival order, for the live feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeSummary {
    /// Arrival order in this store.
    pub seq: i64,
    /// The challenge.
    #[serde(flatten)]
    pub record: ChallengeRecord,
}

/// Per-miner challenge aggregates over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeStats {
    /// Miner hotkey.
    pub hotkey: String,
    /// Latest uid.
    pub uid: u16,
    /// Challenges.
    pub n: u64,
    /// Successful challenges.
    pub success: u64,
    /// success / n.
    pub success_rate: f64,
    /// Mean elapsed time of successful challenges.
    pub avg_elapsed_ms: Option<f64>,
    /// Highest difficulty seen.
    pub max_difficulty: u8,
    /// Newest challenge.
    pub last_ms: i64,
}

/// The newest arrival positions: where a live feed starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Last inference `seq` (0 if none).
    pub inference: i64,
    /// Last challenge `seq` (0 if none).
    pub challenge: i64,
}

const STATS_COLUMNS: &str = "CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(n_verified) AS BIGINT) AS n_verified, \
    CAST(SUM(n_organic) AS BIGINT) AS n_organic, CAST(SUM(n_ttft) AS BIGINT) AS n_ttft, \
    CAST(SUM(sum_ttft_ms) AS DOUBLE PRECISION) AS sum_ttft_ms, CAST(SUM(sum_total_ms) AS DOUBLE PRECISION) AS sum_total_ms, \
    CAST(SUM(sum_tps) AS DOUBLE PRECISION) AS sum_tps, CAST(SUM(sum_tokens) AS BIGINT) AS sum_tokens, \
    CAST(SUM(n_similarity) AS BIGINT) AS n_similarity, CAST(SUM(sum_similarity) AS DOUBLE PRECISION) AS sum_similarity, \
    CAST(MAX(last_ms) AS BIGINT) AS last_ms";

fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

fn rate(part: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { part as f64 / n as f64 }
}

fn stats_from_row(c: &Cols<'_>) -> RecordsResult<InferenceStats> {
    let n = c.u64("n")?;
    let verified = c.u64("n_verified")?;
    let n_ttft = c.u64("n_ttft")?;
    let n_similarity = c.u64("n_similarity")?;
    Ok(InferenceStats {
        n,
        verified,
        organic: c.u64("n_organic")?,
        verified_rate: rate(verified, n),
        avg_ttft_ms: mean(c.f64("sum_ttft_ms")?, n_ttft),
        avg_total_ms: mean(c.f64("sum_total_ms")?, n),
        avg_tps: mean(c.f64("sum_tps")?, n),
        tokens: c.u64("sum_tokens")?,
        avg_similarity: mean(c.f64("sum_similarity")?, n_similarity),
        last_ms: c.i64("last_ms")?,
    })
}

fn summary_from_row(row: &AnyRow) -> RecordsResult<InferenceSummary> {
    let c = Cols { row, table: "inference" };
    Ok(InferenceSummary {
        seq: c.i64("seq")?,
        id: c.text("id")?,
        created_at_ms: c.i64("created_at_ms")?,
        netuid: c.u16("netuid")?,
        block: c.u64("block")?,
        validator_hotkey: c.text("validator_hotkey")?,
        miner_uid: c.u16("miner_uid")?,
        miner_hotkey: c.text("miner_hotkey")?,
        model: c.text("model")?,
        endpoint: c.text("endpoint")?,
        organic: c.bool("organic")?,
        ttft_ms: c.opt_f64("ttft_ms")?,
        total_ms: c.f64("total_ms")?,
        tokens: c.u32("tokens")?,
        tps: c.f64("tps")?,
        verified: c.bool("verified")?,
        cause: c.opt_text("cause")?,
        similarity: c.opt_f64("similarity")?,
    })
}

const SUMMARY_SELECT: &str = "SELECT seq, id, created_at_ms, netuid, block, validator_hotkey, miner_uid, miner_hotkey, \
    model, endpoint, organic, ttft_ms, total_ms, tokens, tps, verified, cause, similarity FROM inference";

impl Records {
    /// Every netuid with records, and which kinds it has.
    pub async fn subnets(&self) -> RecordsResult<Vec<SubnetRecords>> {
        let sql = "SELECT s.netuid AS netuid, CAST(COALESCE(MAX(i.inference_n), 0) AS BIGINT) AS inference_n, \
            CAST(COALESCE(MAX(i.challenge_n), 0) AS BIGINT) AS challenge_n, \
            CAST(COALESCE(MAX(i.last_inference_ms), 0) AS BIGINT) AS last_inference_ms, \
            CAST(COALESCE(MAX(i.last_challenge_ms), 0) AS BIGINT) AS last_challenge_ms, \
            CAST(COALESCE(MAX(sp.n), 0) AS BIGINT) AS specs_n, CAST(COALESCE(MAX(al.n), 0) AS BIGINT) AS allocation_n \
            FROM (SELECT netuid FROM netuid_stats UNION SELECT netuid FROM specs UNION SELECT netuid FROM allocation) AS s \
            LEFT JOIN netuid_stats AS i ON i.netuid = s.netuid \
            LEFT JOIN (SELECT netuid, COUNT(*) AS n FROM specs GROUP BY netuid) AS sp ON sp.netuid = s.netuid \
            LEFT JOIN (SELECT netuid, COUNT(*) AS n FROM allocation GROUP BY netuid) AS al ON al.netuid = s.netuid \
            GROUP BY s.netuid ORDER BY s.netuid";
        self.fetch(sql.to_string(), vec![], "listing subnets with records", |row| {
            let c = Cols { row, table: "netuid_stats" };
            Ok(SubnetRecords {
                netuid: c.u16("netuid")?,
                inference_n: c.u64("inference_n")?,
                challenge_n: c.u64("challenge_n")?,
                last_inference_ms: c.i64("last_inference_ms")?,
                last_challenge_ms: c.i64("last_challenge_ms")?,
                specs_n: c.u64("specs_n")?,
                allocation_n: c.u64("allocation_n")?,
            })
        })
        .await
    }

    /// Per-miner aggregates since `since_ms` (exact to the minute), with each miner's failure causes.
    pub async fn miner_stats(&self, netuid: u16, since_ms: i64) -> RecordsResult<Vec<MinerStats>> {
        self.miner_stats_filtered(netuid, Miners::EachMiner, since_ms).await
    }

    /// One miner's aggregates since `since_ms` (None if it has no records in the window).
    pub async fn miner_stats_one(&self, netuid: u16, miner_hotkey: &str, since_ms: i64) -> RecordsResult<Option<MinerStats>> {
        Ok(self.miner_stats_filtered(netuid, Miners::One(miner_hotkey), since_ms).await?.pop())
    }

    async fn miner_stats_filtered(&self, netuid: u16, miners: Miners<'_>, since_ms: i64) -> RecordsResult<Vec<MinerStats>> {
        let (args, clause) = window_args(netuid, miners, since_ms);
        let source = window_source("inference_rollup", ROLLUP_COLUMNS, clause);
        let mut stats = self
            .fetch(
                format!(
                    "SELECT miner_hotkey, CAST(MAX(miner_uid) AS BIGINT) AS miner_uid, {STATS_COLUMNS} FROM {source} \
                     GROUP BY miner_hotkey ORDER BY miner_hotkey"
                ),
                args.clone(),
                "aggregating miners",
                |row| {
                    let c = Cols { row, table: "inference_rollup" };
                    Ok(MinerStats {
                        hotkey: c.text("miner_hotkey")?,
                        uid: c.u16("miner_uid")?,
                        stats: stats_from_row(&c)?,
                        causes: Vec::new(),
                    })
                },
            )
            .await?;
        let source = window_source("cause_rollup", "miner_hotkey, cause, n", clause);
        let causes = self
            .fetch(
                format!("SELECT miner_hotkey, cause, CAST(SUM(n) AS BIGINT) AS n FROM {source} GROUP BY miner_hotkey, cause"),
                args,
                "aggregating failure causes",
                |row| {
                    let c = Cols { row, table: "cause_rollup" };
                    Ok((c.text("miner_hotkey")?, CauseCount { cause: c.text("cause")?, n: c.u64("n")? }))
                },
            )
            .await?;
        let index: std::collections::HashMap<String, usize> =
            stats.iter().enumerate().map(|(i, m)| (m.hotkey.clone(), i)).collect();
        for (hotkey, count) in causes {
            if let Some(&i) = index.get(&hotkey) {
                stats[i].causes.push(count);
            }
        }
        for miner in &mut stats {
            sort_causes(&mut miner.causes);
        }
        Ok(stats)
    }

    /// One miner's (or, with `None`, the whole subnet's) time series since `since_ms`.
    pub async fn inference_series(
        &self,
        netuid: u16,
        miner_hotkey: Option<&str>,
        since_ms: i64,
        bucket: Bucket,
    ) -> RecordsResult<Vec<SeriesPoint>> {
        let hotkey = miner_hotkey.unwrap_or(ALL_MINERS);
        self.fetch(
            format!(
                "SELECT bucket_ms, {STATS_COLUMNS} FROM inference_rollup WHERE netuid = $1 AND bucket_s = $2 AND miner_hotkey = $3 \
                 AND bucket_ms >= $4 GROUP BY bucket_ms ORDER BY bucket_ms"
            ),
            vec![netuid.into(), bucket.seconds().into(), hotkey.into(), bucket.floor(since_ms).into()],
            "reading a time series",
            |row| {
                let c = Cols { row, table: "inference_rollup" };
                Ok(SeriesPoint { t_ms: c.i64("bucket_ms")?, stats: stats_from_row(&c)? })
            },
        )
        .await
    }

    /// Per-model aggregates since `since_ms`, for one miner or the whole subnet.
    pub async fn model_stats(&self, netuid: u16, miner_hotkey: Option<&str>, since_ms: i64) -> RecordsResult<Vec<ModelStats>> {
        let (args, clause) = window_args(netuid, Miners::one_or_subnet(miner_hotkey), since_ms);
        let source = window_source("inference_rollup", ROLLUP_COLUMNS, clause);
        self.fetch(
            format!("SELECT model, {STATS_COLUMNS} FROM {source} GROUP BY model ORDER BY model"),
            args,
            "aggregating models",
            |row| {
                let c = Cols { row, table: "inference_rollup" };
                Ok(ModelStats { model: c.text("model")?, stats: stats_from_row(&c)? })
            },
        )
        .await
    }

    /// Failure causes since `since_ms`, most frequent first, for one miner or the whole subnet.
    pub async fn cause_counts(&self, netuid: u16, miner_hotkey: Option<&str>, since_ms: i64) -> RecordsResult<Vec<CauseCount>> {
        let (args, clause) = window_args(netuid, Miners::one_or_subnet(miner_hotkey), since_ms);
        let source = window_source("cause_rollup", "miner_hotkey, cause, n", clause);
        let mut counts = self
            .fetch(
                format!("SELECT cause, CAST(SUM(n) AS BIGINT) AS n FROM {source} GROUP BY cause"),
                args,
                "aggregating failure causes",
                |row| {
                    let c = Cols { row, table: "cause_rollup" };
                    Ok(CauseCount { cause: c.text("cause")?, n: c.u64("n")? })
                },
            )
            .await?;
        sort_causes(&mut counts);
        Ok(counts)
    }

    /// Per-validator aggregates since `since_ms` (exact to the minute).
    pub async fn validator_stats(&self, netuid: u16, since_ms: i64) -> RecordsResult<Vec<ValidatorStats>> {
        let (args, _) = window_args(netuid, Miners::EachMiner, since_ms);
        let source = window_source("validator_rollup", "validator_hotkey, n, n_verified, n_organic, last_ms", "");
        self.fetch(
            format!(
                "SELECT validator_hotkey, CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(n_verified) AS BIGINT) AS n_verified, \
                 CAST(SUM(n_organic) AS BIGINT) AS n_organic, CAST(MAX(last_ms) AS BIGINT) AS last_ms FROM {source} \
                 GROUP BY validator_hotkey ORDER BY validator_hotkey"
            ),
            args,
            "aggregating validators",
            |row| {
                let c = Cols { row, table: "validator_rollup" };
                let n = c.u64("n")?;
                let verified = c.u64("n_verified")?;
                Ok(ValidatorStats {
                    hotkey: c.text("validator_hotkey")?,
                    n,
                    verified,
                    organic: c.u64("n_organic")?,
                    verified_rate: rate(verified, n),
                    last_ms: c.i64("last_ms")?,
                })
            },
        )
        .await
    }

    /// A validator's request counts per bucket since `since_ms` (`n`, `verified`, `organic`).
    pub async fn validator_series(
        &self,
        netuid: u16,
        validator_hotkey: &str,
        since_ms: i64,
        bucket: Bucket,
    ) -> RecordsResult<Vec<SeriesPoint>> {
        self.fetch(
            "SELECT bucket_ms, n, n_verified, n_organic, last_ms FROM validator_rollup WHERE netuid = $1 AND bucket_s = $2 \
             AND validator_hotkey = $3 AND bucket_ms >= $4 ORDER BY bucket_ms"
                .to_string(),
            vec![netuid.into(), bucket.seconds().into(), validator_hotkey.into(), bucket.floor(since_ms).into()],
            "reading a validator time series",
            |row| {
                let c = Cols { row, table: "validator_rollup" };
                let n = c.u64("n")?;
                let verified = c.u64("n_verified")?;
                Ok(SeriesPoint {
                    t_ms: c.i64("bucket_ms")?,
                    stats: InferenceStats {
                        n,
                        verified,
                        organic: c.u64("n_organic")?,
                        verified_rate: rate(verified, n),
                        last_ms: c.i64("last_ms")?,
                        ..InferenceStats::default()
                    },
                })
            },
        )
        .await
    }

    /// Recent inference rows matching `filter`, newest first.
    pub async fn recent_inference(&self, filter: &InferenceFilter) -> RecordsResult<Vec<InferenceSummary>> {
        let limit = check_limit(filter.limit)?;
        let mut args: Vec<Arg> = vec![filter.netuid.into()];
        let mut sql = format!("{SUMMARY_SELECT} WHERE netuid = $1");
        let mut push = |clause: &str, arg: Arg, args: &mut Vec<Arg>| {
            args.push(arg);
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
        };
        if let Some(hotkey) = &filter.miner_hotkey {
            push("miner_hotkey =", hotkey.as_str().into(), &mut args);
        }
        if let Some(hotkey) = &filter.validator_hotkey {
            push("validator_hotkey =", hotkey.as_str().into(), &mut args);
        }
        if let Some(model) = &filter.model {
            push("model =", model.as_str().into(), &mut args);
        }
        if let Some(verified) = filter.verified {
            push("verified =", verified.into(), &mut args);
        }
        if let Some(since) = filter.since_ms {
            push("created_at_ms >=", since.into(), &mut args);
        }
        if let Some(before) = filter.before_ms {
            push("created_at_ms <", before.into(), &mut args);
        }
        args.push(limit.into());
        sql.push_str(&format!(" ORDER BY created_at_ms DESC, seq DESC LIMIT ${}", args.len()));
        self.fetch(sql, args, "reading recent inference records", summary_from_row).await
    }

    /// Inference rows that arrived after `after_seq`, oldest first (the live feed). `seq` order
    /// is commit order on both backends (see [`crate::write`]), so a reader that moves its
    /// cursor to the last row it got sees every row exactly once, even with concurrent writers.
    pub async fn inference_since(&self, after_seq: i64, limit: u32) -> RecordsResult<Vec<InferenceSummary>> {
        let limit = check_limit(limit)?;
        self.fetch(
            format!("{SUMMARY_SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2"),
            vec![after_seq.into(), limit.into()],
            "reading new inference records",
            summary_from_row,
        )
        .await
    }

    /// Challenges that arrived after `after_seq`, oldest first (the live feed; exactly-once like
    /// [`Records::inference_since`]).
    pub async fn challenges_since(&self, after_seq: i64, limit: u32) -> RecordsResult<Vec<ChallengeSummary>> {
        let limit = check_limit(limit)?;
        self.fetch(
            format!("{CHALLENGE_SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2"),
            vec![after_seq.into(), limit.into()],
            "reading new challenges",
            |row| Ok(ChallengeSummary { seq: Cols { row, table: "challenge" }.i64("seq")?, record: challenge_from_row(row)? }),
        )
        .await
    }

    /// The newest arrival positions.
    pub async fn cursor(&self) -> RecordsResult<Cursor> {
        let rows = self
            .fetch(
                "SELECT CAST(COALESCE((SELECT MAX(seq) FROM inference), 0) AS BIGINT) AS i, \
                 CAST(COALESCE((SELECT MAX(seq) FROM challenge), 0) AS BIGINT) AS c"
                    .to_string(),
                vec![],
                "reading the live-feed cursor",
                |row| {
                    let c = Cols { row, table: "inference" };
                    Ok(Cursor { inference: c.i64("i")?, challenge: c.i64("c")? })
                },
            )
            .await?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    /// A subnet's recent challenges (optionally one miner's), newest first.
    pub async fn challenges(&self, netuid: u16, miner_hotkey: Option<&str>, limit: u32) -> RecordsResult<Vec<ChallengeRecord>> {
        match miner_hotkey {
            Some(hotkey) => self.recent_challenges(netuid, hotkey, limit).await,
            None => {
                let limit = check_limit(limit)?;
                self.fetch(
                    format!("{CHALLENGE_SELECT} WHERE netuid = $1 ORDER BY created_at_ms DESC, seq DESC LIMIT $2"),
                    vec![netuid.into(), limit.into()],
                    "reading recent challenges",
                    challenge_from_row,
                )
                .await
            }
        }
    }

    /// Per-miner challenge aggregates since `since_ms` (exact to the minute, like the
    /// inference windows: read from the challenge rollup).
    pub async fn challenge_stats(&self, netuid: u16, since_ms: i64) -> RecordsResult<Vec<ChallengeStats>> {
        let (args, clause) = window_args(netuid, Miners::EachMiner, since_ms);
        let source = window_source(
            "challenge_rollup",
            "miner_hotkey, miner_uid, n, n_success, sum_success_elapsed_ms, max_difficulty, last_ms",
            clause,
        );
        self.fetch(
            format!(
                "SELECT miner_hotkey, CAST(MAX(miner_uid) AS BIGINT) AS miner_uid, CAST(SUM(n) AS BIGINT) AS n, \
                 CAST(SUM(n_success) AS BIGINT) AS n_success, \
                 CAST(SUM(sum_success_elapsed_ms) AS DOUBLE PRECISION) AS sum_elapsed, \
                 CAST(MAX(max_difficulty) AS BIGINT) AS max_difficulty, CAST(MAX(last_ms) AS BIGINT) AS last_ms \
                 FROM {source} GROUP BY miner_hotkey ORDER BY miner_hotkey"
            ),
            args,
            "aggregating challenges",
            |row| {
                let c = Cols { row, table: "challenge_rollup" };
                let n = c.u64("n")?;
                let success = c.u64("n_success")?;
                Ok(ChallengeStats {
                    hotkey: c.text("miner_hotkey")?,
                    uid: c.u16("miner_uid")?,
                    n,
                    success,
                    success_rate: rate(success, n),
                    avg_elapsed_ms: mean(c.f64("sum_elapsed")?, success),
                    max_difficulty: c.u8("max_difficulty")?,
                    last_ms: c.i64("last_ms")?,
                })
            },
        )
        .await
    }

    /// A hotkey's scores (from every validator), newest first.
    pub async fn scores_for(&self, netuid: u16, hotkey: &str, limit: u32) -> RecordsResult<Vec<ScoreRecord>> {
        let limit = check_limit(limit)?;
        self.fetch(
            "SELECT created_at_ms, netuid, block, validator_hotkey, uid, hotkey, score, components FROM score \
             WHERE netuid = $1 AND hotkey = $2 ORDER BY block DESC, validator_hotkey LIMIT $3"
                .to_string(),
            vec![netuid.into(), hotkey.into(), limit.into()],
            "reading scores",
            score_from_row,
        )
        .await
    }

    /// The scores a validator gave at its latest scored block, by uid.
    pub async fn latest_scores_by(&self, netuid: u16, validator_hotkey: &str) -> RecordsResult<Vec<ScoreRecord>> {
        self.fetch(
            "SELECT created_at_ms, netuid, block, validator_hotkey, uid, hotkey, score, components FROM score \
             WHERE netuid = $1 AND validator_hotkey = $2 AND block = \
             (SELECT MAX(block) FROM score WHERE netuid = $1 AND validator_hotkey = $2) ORDER BY uid"
                .to_string(),
            vec![netuid.into(), validator_hotkey.into()],
            "reading a validator's scores",
            score_from_row,
        )
        .await
    }

    /// A hotkey's metagraph snapshots, newest first.
    pub async fn neuron_history(&self, netuid: u16, hotkey: &str, limit: u32) -> RecordsResult<Vec<NeuronSnapshot>> {
        let limit = check_limit(limit)?;
        self.fetch(
            "SELECT netuid, block, uid, created_at_ms, hotkey, coldkey, stake, incentive, emission, consensus, dividends, \
             validator_trust, validator_permit FROM neuron_snapshot WHERE netuid = $1 AND hotkey = $2 ORDER BY block DESC LIMIT $3"
                .to_string(),
            vec![netuid.into(), hotkey.into(), limit.into()],
            "reading neuron history",
            snapshot_from_row,
        )
        .await
    }

    /// The newest recorded metagraph of a subnet (what the hub shows when the chain is unreachable).
    pub async fn latest_snapshot(&self, netuid: u16) -> RecordsResult<Vec<NeuronSnapshot>> {
        self.fetch(
            "SELECT netuid, block, uid, created_at_ms, hotkey, coldkey, stake, incentive, emission, consensus, dividends, \
             validator_trust, validator_permit FROM neuron_snapshot WHERE netuid = $1 AND block = \
             (SELECT MAX(block) FROM neuron_snapshot WHERE netuid = $1) ORDER BY uid"
                .to_string(),
            vec![netuid.into()],
            "reading the latest metagraph snapshot",
            snapshot_from_row,
        )
        .await
    }
}

/// Which miners' rollup rows a window aggregate reads.
#[derive(Debug, Clone, Copy)]
enum Miners<'a> {
    /// Every miner's own rows (grouped per miner).
    EachMiner,
    /// One miner's rows.
    One(&'a str),
    /// The subnet-wide rows ([`ALL_MINERS`]).
    Subnet,
}

impl<'a> Miners<'a> {
    fn one_or_subnet(hotkey: Option<&'a str>) -> Miners<'a> {
        hotkey.map_or(Miners::Subnet, Miners::One)
    }
}

/// Arguments of a window aggregate: `$1` netuid, `$2..$4` the starts of its minute, hour and
/// day parts, `$5` the miner when filtering on one; and the miner clause.
fn window_args(netuid: u16, miners: Miners<'_>, since_ms: i64) -> (Vec<Arg>, &'static str) {
    let ceil = |t: i64, width_s: i64| {
        let w = width_s * 1000;
        (t + w - 1).div_euclid(w) * w
    };
    let minutes_from = Bucket::Minute.floor(since_ms);
    let hours_from = ceil(since_ms, 3600);
    let days_from = ceil(since_ms, 86_400);
    let mut args: Vec<Arg> = vec![netuid.into(), minutes_from.into(), hours_from.into(), days_from.into()];
    let clause = match miners {
        Miners::EachMiner => " AND miner_hotkey <> ''",
        Miners::Subnet => " AND miner_hotkey = ''",
        Miners::One(hotkey) => {
            args.push(hotkey.into());
            " AND miner_hotkey = $5"
        }
    };
    (args, clause)
}

/// The rollup rows covering a window exactly (see the module doc), as a subquery.
fn window_source(table: &str, columns: &str, clause: &str) -> String {
    format!(
        "(SELECT {columns} FROM {table} WHERE netuid = $1 AND bucket_s = 60 AND bucket_ms >= $2 AND bucket_ms < $3{clause} \
         UNION ALL SELECT {columns} FROM {table} WHERE netuid = $1 AND bucket_s = 3600 AND bucket_ms >= $3 AND bucket_ms < $4{clause} \
         UNION ALL SELECT {columns} FROM {table} WHERE netuid = $1 AND bucket_s = 86400 AND bucket_ms >= $4{clause}) AS w"
    )
}

const ROLLUP_COLUMNS: &str = "miner_hotkey, miner_uid, model, n, n_verified, n_organic, n_ttft, sum_ttft_ms, sum_total_ms, \
    sum_tps, sum_tokens, n_similarity, sum_similarity, last_ms";

fn sort_causes(causes: &mut [CauseCount]) {
    causes.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.cause.cmp(&b.cause)));
}
