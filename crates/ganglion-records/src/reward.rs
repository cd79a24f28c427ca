//! The reward-pipeline validator's event log (`ganglion-reward`): one row per step of a
//! forward — the prompt, the base prompt the masks compared with, every uid's completion and
//! time, the combined rewards and each reward function's raw and normalised values — where the
//! original sent wandb events. Read back in `seq` order, page by page, for
//! `ganglion export events`. Self-contained: its own table (migration V3), its own
//! statements.
//!
//! For the hub, each event is also split into one `reward_score` row per uid (migration V5,
//! kept in the event's insert transaction and backfilled by the migration): the combined
//! reward and each function's normalised value, indexed by time and by uid, so the reward
//! distribution and a uid's history read a bounded index range instead of parsing the
//! JSON arrays of a whole table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::error::{RecordsError, RecordsResult};
use crate::read::check_limit;
use crate::store::{Cols, Records, finite, json_text, u64_to_i64};
use crate::write::{Arg, bind_all};

/// One step of a reward-pipeline forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardEventRecord {
    /// The writer's unique id (retried inserts are idempotent).
    pub id: String,
    /// When the step ended.
    pub created_at_ms: i64,
    /// Subnet.
    pub netuid: u16,
    /// Block of the forward.
    pub block: u64,
    /// Validator hotkey (SS58).
    pub validator_hotkey: String,
    /// The validator's forward counter.
    pub forward_index: u64,
    /// Step name: `augment`, `followup{k}`, `answer{k}`.
    pub step: String,
    /// The prompt sent.
    pub prompt: String,
    /// The prompt the masks compared with.
    pub base_prompt: String,
    /// The best completion.
    pub best: String,
    /// Seconds of the step.
    pub step_length_s: f64,
    /// Seconds spent scoring.
    pub scoring_s: f64,
    /// Uids asked (JSON array).
    pub uids: serde_json::Value,
    /// Completions, "" for failures (JSON array).
    pub completions: serde_json::Value,
    /// Seconds per answer (JSON array).
    pub completion_times: serde_json::Value,
    /// Combined reward per answer (JSON array).
    pub rewards: serde_json::Value,
    /// Each function's `{name, raw, normalized}` (JSON array).
    pub functions: serde_json::Value,
}

const SELECT: &str = "SELECT seq, id, created_at_ms, netuid, block, validator_hotkey, forward_index, step, prompt, \
    base_prompt, best, step_length_s, scoring_s, uids, completions, completion_times, rewards, functions FROM reward_event";

fn from_row(row: &AnyRow) -> RecordsResult<(i64, RewardEventRecord)> {
    let c = Cols {
        row,
        table: "reward_event",
    };
    Ok((
        c.i64("seq")?,
        RewardEventRecord {
            id: c.text("id")?,
            created_at_ms: c.i64("created_at_ms")?,
            netuid: c.u16("netuid")?,
            block: c.u64("block")?,
            validator_hotkey: c.text("validator_hotkey")?,
            forward_index: c.u64("forward_index")?,
            step: c.text("step")?,
            prompt: c.text("prompt")?,
            base_prompt: c.text("base_prompt")?,
            best: c.text("best")?,
            step_length_s: c.f64("step_length_s")?,
            scoring_s: c.f64("scoring_s")?,
            uids: c.json("uids")?,
            completions: c.json("completions")?,
            completion_times: c.json("completion_times")?,
            rewards: c.json("rewards")?,
            functions: c.json("functions")?,
        },
    ))
}

impl Records {
    /// Inserts a forward's step events in one transaction; an id already stored is skipped.
    pub async fn insert_reward_events(&self, rows: &[RewardEventRecord]) -> RecordsResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(RecordsError::db("starting a reward event insert"))?;
        for r in rows {
            if r.id.is_empty() || r.id.len() > 128 {
                return Err(RecordsError::InvalidInput {
                    field: "id",
                    reason: "must be 1 to 128 bytes".into(),
                });
            }
            let args: Vec<Arg> = vec![
                r.id.as_str().into(),
                r.created_at_ms.into(),
                r.netuid.into(),
                u64_to_i64("block", r.block)?.into(),
                r.validator_hotkey.as_str().into(),
                u64_to_i64("forward_index", r.forward_index)?.into(),
                r.step.as_str().into(),
                r.prompt.as_str().into(),
                r.base_prompt.as_str().into(),
                r.best.as_str().into(),
                finite("step_length_s", r.step_length_s)?.into(),
                finite("scoring_s", r.scoring_s)?.into(),
                json_text(&r.uids).into(),
                json_text(&r.completions).into(),
                json_text(&r.completion_times).into(),
                json_text(&r.rewards).into(),
                json_text(&r.functions).into(),
            ];
            let sql = "INSERT INTO reward_event (id, created_at_ms, netuid, block, validator_hotkey, forward_index, step, prompt, \
                base_prompt, best, step_length_s, scoring_s, uids, completions, completion_times, rewards, functions) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) ON CONFLICT (id) DO NOTHING";
            let inserted = bind_all(sqlx::query(sql), args)
                .execute(&mut *tx)
                .await
                .map_err(RecordsError::db("inserting reward events"))?
                .rows_affected();
            if inserted > 0 {
                insert_scores(&mut tx, r.netuid, &r.id, r.created_at_ms, &r.step, &r.uids, &r.rewards, &r.functions).await?;
            }
        }
        tx.commit()
            .await
            .map_err(RecordsError::db("committing reward events"))
    }

    /// Reward events after `after_seq` in arrival order (at most `limit`, ≤ 1000), with their
    /// `seq`s for the next page; `netuid` filters when given.
    pub async fn reward_events(
        &self,
        netuid: Option<u16>,
        after_seq: i64,
        limit: u32,
    ) -> RecordsResult<Vec<(i64, RewardEventRecord)>> {
        let limit = check_limit(limit)?;
        let (sql, args): (String, Vec<Arg>) = match netuid {
            Some(n) => (
                format!("{SELECT} WHERE netuid = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
                vec![n.into(), after_seq.into(), limit.into()],
            ),
            None => (
                format!("{SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2"),
                vec![after_seq.into(), limit.into()],
            ),
        };
        self.fetch(sql, args, "reading reward events", from_row)
            .await
    }
}

/// The most per-uid samples a distribution reads (the newest in the window); a window with
/// more is reported as `truncated`.
pub const MAX_DISTRIBUTION_SAMPLES: u32 = 10_000;
/// The most bins of a histogram.
pub const MAX_BINS: u32 = 100;

/// One uid's reward in one step (a `reward_score` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardSample {
    /// When the step ended.
    pub t_ms: i64,
    /// Uid.
    pub uid: u16,
    /// Step name.
    pub step: String,
    /// The combined reward (None when the stored value was not a number).
    pub reward: Option<f64>,
    /// Each reward function's normalised value for this uid.
    pub functions: BTreeMap<String, f64>,
}

/// One histogram bin: `lo <= value < hi` (the last bin includes `hi`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramBin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Values in the bin.
    pub n: u64,
}

/// The distribution of one series (`total` for the combined reward, else a function's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// `total` or the reward function's name.
    pub name: String,
    /// Values.
    pub n: u64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Equal-width bins from `min` to `max`.
    pub bins: Vec<HistogramBin>,
}

/// One uid's figures in a distribution's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardUidSummary {
    /// Uid.
    pub uid: u16,
    /// Samples.
    pub n: u64,
    /// Mean combined reward.
    pub mean_reward: Option<f64>,
    /// Latest sample.
    pub last_ms: i64,
}

/// Reward distributions over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardDistribution {
    /// Samples read (one per uid per step).
    pub samples: u64,
    /// The window held more than [`MAX_DISTRIBUTION_SAMPLES`]: these are the newest.
    pub truncated: bool,
    /// Oldest sample read.
    pub first_ms: Option<i64>,
    /// Newest sample read.
    pub last_ms: Option<i64>,
    /// `total` first, then each function by name.
    pub histograms: Vec<Histogram>,
    /// Per-uid figures, by uid.
    pub uids: Vec<RewardUidSummary>,
}

/// A step event without its long texts: the hub's recent-steps list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardEventSummary {
    /// Arrival order.
    pub seq: i64,
    /// When the step ended.
    pub created_at_ms: i64,
    /// Block.
    pub block: u64,
    /// Validator hotkey.
    pub validator_hotkey: String,
    /// Forward counter.
    pub forward_index: u64,
    /// Step name.
    pub step: String,
    /// The prompt's first 200 characters.
    pub prompt: String,
    /// The best completion's first 200 characters.
    pub best: String,
    /// Seconds of the step.
    pub step_length_s: f64,
    /// Seconds spent scoring.
    pub scoring_s: f64,
}

/// The `reward_score` rows of one event: per position, the uid, the combined reward and each
/// function's normalised value. Entries that are not numbers (or uids out of range) are
/// skipped: the event row keeps everything as written.
fn score_rows(uids: &serde_json::Value, rewards: &serde_json::Value, functions: &serde_json::Value) -> Vec<(i64, u16, Option<f64>, String)> {
    let Some(uids) = uids.as_array() else { return Vec::new() };
    let functions = functions.as_array().map(Vec::as_slice).unwrap_or_default();
    uids.iter()
        .enumerate()
        .filter_map(|(i, uid)| {
            let uid = u16::try_from(uid.as_u64()?).ok()?;
            let reward = rewards.get(i).and_then(serde_json::Value::as_f64).filter(|r| r.is_finite());
            let per_function: serde_json::Map<String, serde_json::Value> = functions
                .iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?;
                    let v = f.get("normalized")?.get(i)?.as_f64().filter(|v| v.is_finite())?;
                    Some((name.to_owned(), serde_json::json!(v)))
                })
                .collect();
            Some((i as i64, uid, reward, serde_json::Value::Object(per_function).to_string()))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn insert_scores(
    conn: &mut sqlx::AnyConnection,
    netuid: u16,
    id: &str,
    created_at_ms: i64,
    step: &str,
    uids: &serde_json::Value,
    rewards: &serde_json::Value,
    functions: &serde_json::Value,
) -> RecordsResult<()> {
    for (pos, uid, reward, per_function) in score_rows(uids, rewards, functions) {
        let args: Vec<Arg> = vec![
            id.into(),
            pos.into(),
            netuid.into(),
            created_at_ms.into(),
            uid.into(),
            step.into(),
            reward.into(),
            per_function.into(),
        ];
        let sql = "INSERT INTO reward_score (event_id, pos, netuid, created_at_ms, uid, step, reward, functions) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id, pos) DO NOTHING";
        bind_all(sqlx::query(sql), args)
            .execute(&mut *conn)
            .await
            .map_err(RecordsError::db("inserting reward scores"))?;
    }
    Ok(())
}

/// Migration V5's backfill: the `reward_score` rows of the events already stored, page by
/// page, in the migration's transaction.
pub(crate) async fn backfill_scores(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT seq, id, netuid, created_at_ms, step, uids, rewards, functions FROM reward_event WHERE seq > $1 ORDER BY seq LIMIT 500",
        )
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.try_get("seq")?;
        for row in &rows {
            let json = |c: &str| -> Result<serde_json::Value, sqlx::Error> {
                let text: String = row.try_get(c)?;
                Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
            };
            let netuid: i64 = row.try_get("netuid")?;
            let id: String = row.try_get("id")?;
            let step: String = row.try_get("step")?;
            insert_scores(
                conn,
                u16::try_from(netuid).unwrap_or_default(),
                &id,
                row.try_get("created_at_ms")?,
                &step,
                &json("uids")?,
                &json("rewards")?,
                &json("functions")?,
            )
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        }
    }
}

fn sample_from_row(row: &AnyRow) -> RecordsResult<RewardSample> {
    let c = Cols { row, table: "reward_score" };
    let functions: BTreeMap<String, f64> = serde_json::from_value(c.json("functions")?).map_err(|e| RecordsError::Corrupt {
        table: "reward_score",
        column: "functions",
        reason: e.to_string(),
    })?;
    Ok(RewardSample { t_ms: c.i64("created_at_ms")?, uid: c.u16("uid")?, step: c.text("step")?, reward: c.opt_f64("reward")?, functions })
}

const SAMPLE_SELECT: &str = "SELECT created_at_ms, uid, step, reward, functions FROM reward_score";

/// Equal-width bins over the values' range (a single value gets one bin around it).
pub fn histogram(name: &str, values: &[f64], bins: u32) -> Histogram {
    let bins = bins.clamp(1, MAX_BINS) as usize;
    let n = values.len() as u64;
    if values.is_empty() {
        return Histogram { name: name.to_owned(), n, min: 0.0, max: 0.0, mean: 0.0, bins: Vec::new() };
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (lo, hi, bins) = if max > min { (min, max, bins) } else { (min - 0.5, min + 0.5, 1) };
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in values {
        let i = (((v - lo) / width).floor() as usize).min(bins - 1);
        counts[i] += 1;
    }
    let bins = counts
        .into_iter()
        .enumerate()
        .map(|(i, n)| HistogramBin { lo: lo + width * i as f64, hi: if i + 1 == bins { hi } else { lo + width * (i + 1) as f64 }, n })
        .collect();
    Histogram { name: name.to_owned(), n, min, max, mean, bins }
}

impl Records {
    /// The distribution of the combined reward and of each function's normalised value over
    /// the newest samples (at most [`MAX_DISTRIBUTION_SAMPLES`]) since `since_ms`, in `bins`
    /// equal-width bins (≤ [`MAX_BINS`]), with per-uid figures. Reads the `reward_score`
    /// time index only.
    pub async fn reward_distribution(&self, netuid: u16, since_ms: i64, bins: u32) -> RecordsResult<RewardDistribution> {
        let limit = i64::from(MAX_DISTRIBUTION_SAMPLES) + 1;
        let mut samples = self
            .fetch(
                format!("{SAMPLE_SELECT} WHERE netuid = $1 AND created_at_ms >= $2 ORDER BY created_at_ms DESC LIMIT $3"),
                vec![netuid.into(), since_ms.into(), limit.into()],
                "reading reward samples",
                sample_from_row,
            )
            .await?;
        let truncated = samples.len() > MAX_DISTRIBUTION_SAMPLES as usize;
        samples.truncate(MAX_DISTRIBUTION_SAMPLES as usize);
        let mut totals = Vec::with_capacity(samples.len());
        let mut per_function: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut per_uid: BTreeMap<u16, (u64, u64, f64, i64)> = BTreeMap::new();
        for s in &samples {
            let entry = per_uid.entry(s.uid).or_insert((0, 0, 0.0, s.t_ms));
            entry.0 += 1;
            entry.3 = entry.3.max(s.t_ms);
            if let Some(r) = s.reward {
                totals.push(r);
                entry.1 += 1;
                entry.2 += r;
            }
            for (name, v) in &s.functions {
                per_function.entry(name.as_str()).or_default().push(*v);
            }
        }
        let mut histograms = vec![histogram("total", &totals, bins)];
        histograms.extend(per_function.iter().map(|(name, values)| histogram(name, values, bins)));
        Ok(RewardDistribution {
            samples: samples.len() as u64,
            truncated,
            first_ms: samples.last().map(|s| s.t_ms),
            last_ms: samples.first().map(|s| s.t_ms),
            histograms,
            uids: per_uid
                .into_iter()
                .map(|(uid, (n, n_reward, sum, last_ms))| RewardUidSummary {
                    uid,
                    n,
                    mean_reward: (n_reward > 0).then(|| sum / n_reward as f64),
                    last_ms,
                })
                .collect(),
        })
    }

    /// One uid's rewards since `since_ms`, oldest first: the newest `limit` (≤ 1000).
    pub async fn reward_uid_history(&self, netuid: u16, uid: u16, since_ms: i64, limit: u32) -> RecordsResult<Vec<RewardSample>> {
        let limit = check_limit(limit)?;
        let mut rows = self
            .fetch(
                format!("{SAMPLE_SELECT} WHERE netuid = $1 AND uid = $2 AND created_at_ms >= $3 ORDER BY created_at_ms DESC LIMIT $4"),
                vec![netuid.into(), uid.into(), since_ms.into(), limit.into()],
                "reading a uid's rewards",
                sample_from_row,
            )
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// The newest `limit` (≤ 1000) step events of `netuid`, newest first, without their long
    /// texts.
    pub async fn recent_reward_events(&self, netuid: u16, limit: u32) -> RecordsResult<Vec<RewardEventSummary>> {
        let limit = check_limit(limit)?;
        self.fetch(
            "SELECT seq, created_at_ms, block, validator_hotkey, forward_index, step, SUBSTR(prompt, 1, 200) AS prompt, \
             SUBSTR(best, 1, 200) AS best, step_length_s, scoring_s FROM reward_event WHERE netuid = $1 ORDER BY seq DESC LIMIT $2"
                .to_string(),
            vec![netuid.into(), limit.into()],
            "reading recent reward events",
            |row| {
                let c = Cols { row, table: "reward_event" };
                Ok(RewardEventSummary {
                    seq: c.i64("seq")?,
                    created_at_ms: c.i64("created_at_ms")?,
                    block: c.u64("block")?,
                    validator_hotkey: c.text("validator_hotkey")?,
                    forward_index: c.u64("forward_index")?,
                    step: c.text("step")?,
                    prompt: c.text("prompt")?,
                    best: c.text("best")?,
                    step_length_s: c.f64("step_length_s")?,
                    scoring_s: c.f64("scoring_s")?,
                })
            },
        )
        .await
    }

    /// Netuids with reward events (a loose index scan: one index probe per netuid).
    pub async fn reward_netuids(&self) -> RecordsResult<Vec<u16>> {
        self.distinct_netuids("reward_event").await
    }

    pub(crate) async fn distinct_netuids(&self, table: &'static str) -> RecordsResult<Vec<u16>> {
        let sql = format!(
            "WITH RECURSIVE n(v) AS (SELECT MIN(netuid) FROM {table} \
             UNION ALL SELECT (SELECT MIN(netuid) FROM {table} WHERE netuid > n.v) FROM n WHERE n.v IS NOT NULL) \
             SELECT CAST(v AS BIGINT) AS netuid FROM n WHERE v IS NOT NULL"
        );
        self.fetch(sql, vec![], "listing netuids", |row| Cols { row, table }.u16("netuid")).await
    }
}
