//! The model-evaluation validator's evaluations (`ganglion-evaluation`): one row per uid per
//! step — the commitment it was judged on, its plain directory hash, whether it was
//! evaluated, skipped as a duplicate of an earlier commit or rejected (with the cause), its
//! mean loss, wins, matches, win rate and the weight it had after the step. Where the original
//! sent per-uid wandb maps. Self-contained: its own table (migration V4), its own statements.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::error::{RecordsError, RecordsResult};
use crate::read::check_limit;
use crate::store::{Cols, Records, finite, finite_opt, u64_to_i64};
use crate::write::{Arg, bind_all};

/// One uid's evaluation in one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEvaluationRecord {
    /// The writer's unique id (retried inserts are idempotent).
    pub id: String,
    /// When the step ended.
    pub created_at_ms: i64,
    /// Subnet.
    pub netuid: u16,
    /// Block of the step.
    pub block: u64,
    /// Validator hotkey (SS58).
    pub validator_hotkey: String,
    /// The validator's step counter.
    pub step: u64,
    /// Competition id.
    pub competition: String,
    /// Uid.
    pub uid: u16,
    /// Miner hotkey (SS58).
    pub miner_hotkey: String,
    /// The committed string (possibly unparsable: that is a rejection).
    pub commitment: String,
    /// Block of the commitment.
    pub commit_block: u64,
    /// Plain directory hash of the downloaded files, when they were downloaded.
    pub model_hash: Option<String>,
    /// `evaluated`, `duplicate` or `rejected`.
    pub status: String,
    /// Why it was rejected (or whose copy it is).
    pub reason: Option<String>,
    /// Mean loss over the finite per-sample losses.
    pub mean_loss: Option<f64>,
    /// Win rate.
    pub win_rate: Option<f64>,
    /// Wins.
    pub wins: u64,
    /// Matches.
    pub matches: u64,
    /// Weight after the step.
    pub weight: f64,
    /// Samples scored.
    pub samples: u64,
}

const SELECT: &str = "SELECT seq, id, created_at_ms, netuid, block, validator_hotkey, step, competition, uid, miner_hotkey, \
    commitment, commit_block, model_hash, status, reason, mean_loss, win_rate, wins, matches, weight, samples FROM model_evaluation";

fn from_row(row: &AnyRow) -> RecordsResult<(i64, ModelEvaluationRecord)> {
    let c = Cols { row, table: "model_evaluation" };
    Ok((
        c.i64("seq")?,
        ModelEvaluationRecord {
            id: c.text("id")?,
            created_at_ms: c.i64("created_at_ms")?,
            netuid: c.u16("netuid")?,
            block: c.u64("block")?,
            validator_hotkey: c.text("validator_hotkey")?,
            step: c.u64("step")?,
            competition: c.text("competition")?,
            uid: c.u16("uid")?,
            miner_hotkey: c.text("miner_hotkey")?,
            commitment: c.text("commitment")?,
            commit_block: c.u64("commit_block")?,
            model_hash: c.opt_text("model_hash")?,
            status: c.text("status")?,
            reason: c.opt_text("reason")?,
            mean_loss: c.opt_f64("mean_loss")?,
            win_rate: c.opt_f64("win_rate")?,
            wins: c.u64("wins")?,
            matches: c.u64("matches")?,
            weight: c.f64("weight")?,
            samples: c.u64("samples")?,
        },
    ))
}

fn bounded(field: &'static str, value: &str, max: usize) -> RecordsResult<()> {
    if value.len() > max {
        return Err(RecordsError::InvalidInput { field, reason: format!("at most {max} bytes") });
    }
    Ok(())
}

impl Records {
    /// Inserts a step's evaluations in one transaction; an id already stored is skipped.
    pub async fn insert_model_evaluations(&self, rows: &[ModelEvaluationRecord]) -> RecordsResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(RecordsError::db("starting a model evaluation insert"))?;
        for r in rows {
            if r.id.is_empty() || r.id.len() > 128 {
                return Err(RecordsError::InvalidInput { field: "id", reason: "must be 1 to 128 bytes".into() });
            }
            if !matches!(r.status.as_str(), "evaluated" | "duplicate" | "rejected") {
                return Err(RecordsError::InvalidInput { field: "status", reason: "evaluated, duplicate or rejected".into() });
            }
            bounded("commitment", &r.commitment, 1024)?;
            bounded("competition", &r.competition, 64)?;
            if let Some(reason) = &r.reason {
                bounded("reason", reason, 4096)?;
            }
            let args: Vec<Arg> = vec![
                r.id.as_str().into(),
                r.created_at_ms.into(),
                r.netuid.into(),
                u64_to_i64("block", r.block)?.into(),
                r.validator_hotkey.as_str().into(),
                u64_to_i64("step", r.step)?.into(),
                r.competition.as_str().into(),
                r.uid.into(),
                r.miner_hotkey.as_str().into(),
                r.commitment.as_str().into(),
                u64_to_i64("commit_block", r.commit_block)?.into(),
                r.model_hash.clone().into(),
                r.status.as_str().into(),
                r.reason.clone().into(),
                finite_opt("mean_loss", r.mean_loss)?.into(),
                finite_opt("win_rate", r.win_rate)?.into(),
                u64_to_i64("wins", r.wins)?.into(),
                u64_to_i64("matches", r.matches)?.into(),
                finite("weight", r.weight)?.into(),
                u64_to_i64("samples", r.samples)?.into(),
            ];
            let sql = "INSERT INTO model_evaluation (id, created_at_ms, netuid, block, validator_hotkey, step, competition, uid, \
                miner_hotkey, commitment, commit_block, model_hash, status, reason, mean_loss, win_rate, wins, matches, weight, samples) \
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (id) DO NOTHING";
            bind_all(sqlx::query(sql), args).execute(&mut *tx).await.map_err(RecordsError::db("inserting model evaluations"))?;
        }
        tx.commit().await.map_err(RecordsError::db("committing model evaluations"))
    }

    /// Evaluations after `after_seq` in arrival order (at most `limit`, ≤ 1000), with their
    /// `seq`s for the next page; `netuid` and `uid` filter when given.
    pub async fn model_evaluations(
        &self,
        netuid: Option<u16>,
        uid: Option<u16>,
        after_seq: i64,
        limit: u32,
    ) -> RecordsResult<Vec<(i64, ModelEvaluationRecord)>> {
        let limit = check_limit(limit)?;
        let mut clauses = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        if let Some(n) = netuid {
            args.push(n.into());
            clauses.push(format!("netuid = ${}", args.len()));
        }
        if let Some(u) = uid {
            args.push(u.into());
            clauses.push(format!("uid = ${}", args.len()));
        }
        args.push(after_seq.into());
        clauses.push(format!("seq > ${}", args.len()));
        args.push(limit.into());
        let sql = format!("{SELECT} WHERE {} ORDER BY seq LIMIT ${}", clauses.join(" AND "), args.len());
        self.fetch(sql, args, "reading model evaluations", from_row).await
    }
}

/// The most rows of one round [`Records::latest_evaluation_round`] returns.
pub const MAX_ROUND_ROWS: i64 = 4096;

impl Records {
    /// One uid's evaluations since `since_ms`, oldest first: the newest `limit` (≤ 1000), by
    /// every validator (each row names its validator).
    pub async fn evaluation_history(
        &self,
        netuid: u16,
        uid: u16,
        since_ms: i64,
        limit: u32,
    ) -> RecordsResult<Vec<(i64, ModelEvaluationRecord)>> {
        let limit = check_limit(limit)?;
        let mut rows = self
            .fetch(
                format!("{SELECT} WHERE netuid = $1 AND uid = $2 AND created_at_ms >= $3 ORDER BY created_at_ms DESC, seq DESC LIMIT $4"),
                vec![netuid.into(), uid.into(), since_ms.into(), limit.into()],
                "reading a uid's evaluations",
                from_row,
            )
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// The latest round: every uid's evaluation in the step of the newest evaluation of
    /// `netuid` (that row's validator, step and block), by uid. Empty when there are none.
    pub async fn latest_evaluation_round(&self, netuid: u16) -> RecordsResult<Vec<(i64, ModelEvaluationRecord)>> {
        let newest = self
            .fetch(
                format!("{SELECT} WHERE netuid = $1 ORDER BY seq DESC LIMIT 1"),
                vec![netuid.into()],
                "reading the newest evaluation",
                from_row,
            )
            .await?;
        let Some((_, newest)) = newest.into_iter().next() else { return Ok(Vec::new()) };
        // Sorted here, not by the statement: with `ORDER BY uid` SQLite's planner walks the
        // (netuid, uid, …) index for the order and filters a whole subnet's rows (measured:
        // 3 s at a million rows) instead of probing the round index for a few hundred.
        let mut rows = self.fetch(
            format!("{SELECT} WHERE netuid = $1 AND validator_hotkey = $2 AND step = $3 AND block = $4 LIMIT $5"),
            vec![
                netuid.into(),
                newest.validator_hotkey.as_str().into(),
                u64_to_i64("step", newest.step)?.into(),
                u64_to_i64("block", newest.block)?.into(),
                MAX_ROUND_ROWS.into(),
            ],
            "reading the latest evaluation round",
            from_row,
        )
        .await?;
        rows.sort_by_key(|(seq, e)| (e.uid, *seq));
        Ok(rows)
    }

    /// Netuids with model evaluations (a loose index scan: one index probe per netuid).
    pub async fn evaluation_netuids(&self) -> RecordsResult<Vec<u16>> {
        self.distinct_netuids("model_evaluation").await
    }
}
