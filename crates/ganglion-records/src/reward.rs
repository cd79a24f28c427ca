//! The reward-pipeline validator's event log (`ganglion-reward`): one row per step of a
//! forward — the prompt, the base prompt the masks compared with, every uid's completion and
//! time, the combined rewards and each reward function's raw and normalised values — where the
//! original sent wandb events. Read back in `seq` order, page by page, for
//! `ganglion export events`. Self-contained: its own table (migration V3), its own
//! statements.

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
            bind_all(sqlx::query(sql), args)
                .execute(&mut *tx)
                .await
                .map_err(RecordsError::db("inserting reward events"))?;
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
