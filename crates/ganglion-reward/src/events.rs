//! The event log: each forward's step events into the records store (the original's wandb
//! events), and their export for dataset building (`ganglion export events`).
//!
//! Formats: `jsonl`, one step event per line (every field, each function's raw and normalised
//! lists); `csv`, one row per completion (RFC 4180 quoting) — step, uid, prompt, completion,
//! time, combined reward, whether it was the step's best, and each function's
//! `{name: [raw, normalised]}` as a JSON cell. Parquet is not offered: the arrow/parquet crates
//! are not in the build.

use std::io::Write;

use async_trait::async_trait;
use ganglion_records::{Records, RewardEventRecord};
use serde_json::{Value, json};

use crate::error::{Result, RewardError};
use crate::forward::StepEvent;
use crate::validator::EventSink;

/// Writes a validator's events into the records store.
#[derive(Debug, Clone)]
pub struct RecordsSink {
    /// The store.
    pub records: Records,
    /// Subnet.
    pub netuid: u16,
    /// The validator's hotkey (SS58).
    pub validator_hotkey: String,
}

/// The record of one step event.
pub fn event_record(
    netuid: u16,
    validator_hotkey: &str,
    block: u64,
    forward: u64,
    event: &StepEvent,
) -> RewardEventRecord {
    RewardEventRecord {
        id: uuid::Uuid::new_v4().to_string(),
        created_at_ms: ganglion_records::now_ms(),
        netuid,
        block,
        validator_hotkey: validator_hotkey.to_owned(),
        forward_index: forward,
        step: event.name.clone(),
        prompt: event.prompt.clone(),
        base_prompt: event.base_prompt.clone(),
        best: event.best.clone(),
        step_length_s: finite(event.step_length),
        scoring_s: finite(event.scoring_seconds),
        uids: json!(event.uids),
        completions: json!(event.completions),
        completion_times: json!(event.completion_times),
        rewards: json!(event.rewards.iter().map(|r| finite(*r)).collect::<Vec<_>>()),
        functions: serde_json::to_value(&event.functions).unwrap_or(Value::Null),
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

#[async_trait]
impl EventSink for RecordsSink {
    async fn record(&self, block: u64, forward: u64, events: &[StepEvent]) {
        let rows: Vec<RewardEventRecord> = events
            .iter()
            .map(|e| event_record(self.netuid, &self.validator_hotkey, block, forward, e))
            .collect();
        if let Err(e) = self.records.insert_reward_events(&rows).await {
            tracing::warn!(target: "reward::events", "cannot record a forward's events: {e}");
        }
    }
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per step event and line.
    Jsonl,
    /// One row per completion.
    Csv,
}

impl std::str::FromStr for ExportFormat {
    type Err = RewardError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            "parquet" => Err(RewardError::Config(
                "parquet export is not built (no arrow/parquet in this build); use jsonl or csv"
                    .into(),
            )),
            other => Err(RewardError::Config(format!(
                "unknown export format {other:?}: jsonl or csv"
            ))),
        }
    }
}

const CSV_HEADER: &str = "seq,created_at_ms,netuid,block,validator_hotkey,forward_index,step,uid,prompt,completion,completion_time,reward,best,functions";

/// Writes every stored event (of `netuid`, if given) to `out`, page by page; returns the
/// lines or rows written (the header excluded).
pub async fn export_events(
    records: &Records,
    netuid: Option<u16>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64> {
    let io = |e: std::io::Error| RewardError::Io {
        what: "writing",
        path: "the export".into(),
        reason: e.to_string(),
    };
    let mut after = 0i64;
    let mut written = 0u64;
    if format == ExportFormat::Csv {
        writeln!(out, "{CSV_HEADER}").map_err(io)?;
    }
    loop {
        let page = records
            .reward_events(netuid, after, 500)
            .await
            .map_err(|e| RewardError::Config(format!("reading events: {e}")))?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (seq, event) in &page {
            match format {
                ExportFormat::Jsonl => {
                    let mut line = serde_json::to_value(event).unwrap_or(Value::Null);
                    if let Value::Object(map) = &mut line {
                        map.insert("seq".into(), json!(seq));
                    }
                    writeln!(out, "{line}").map_err(io)?;
                    written += 1;
                }
                ExportFormat::Csv => {
                    for row in csv_rows(*seq, event) {
                        writeln!(out, "{row}").map_err(io)?;
                        written += 1;
                    }
                }
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(written)
}

/// One CSV row per completion of `event`.
pub fn csv_rows(seq: i64, event: &RewardEventRecord) -> Vec<String> {
    let empty = Vec::new();
    let uids = event.uids.as_array().unwrap_or(&empty);
    let completions = event.completions.as_array().unwrap_or(&empty);
    let times = event.completion_times.as_array().unwrap_or(&empty);
    let rewards = event.rewards.as_array().unwrap_or(&empty);
    let functions = event.functions.as_array().unwrap_or(&empty);
    uids.iter()
        .enumerate()
        .map(|(i, uid)| {
            let completion = completions
                .get(i)
                .and_then(Value::as_str)
                .unwrap_or_default();
            let per_function: serde_json::Map<String, Value> = functions
                .iter()
                .filter_map(|f| {
                    let name = f.get("name")?.as_str()?.to_owned();
                    Some((
                        name,
                        json!([f.get("raw")?.get(i), f.get("normalized")?.get(i)]),
                    ))
                })
                .collect();
            [
                seq.to_string(),
                event.created_at_ms.to_string(),
                event.netuid.to_string(),
                event.block.to_string(),
                quote(&event.validator_hotkey),
                event.forward_index.to_string(),
                quote(&event.step),
                uid.to_string(),
                quote(&event.prompt),
                quote(completion),
                times.get(i).map(Value::to_string).unwrap_or_default(),
                rewards.get(i).map(Value::to_string).unwrap_or_default(),
                u8::from(!completion.is_empty() && completion.trim() == event.best).to_string(),
                quote(&Value::Object(per_function).to_string()),
            ]
            .join(",")
        })
        .collect()
}

/// RFC 4180: quoted when it holds a comma, quote, CR or LF; quotes doubled.
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}
