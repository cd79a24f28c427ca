//! The event log: each forward's step events into the records store (the original's wandb
//! events), and their export for dataset building (`ganglion export events`).
//!
//! Formats: `jsonl`, one step event per line (every field, each function's raw and normalised
//! lists); `csv`, one row per completion (RFC 4180 quoting) — step, uid, prompt, completion,
//! time, combined reward, whether it was the step's best, and each function's
//! `{name: [raw, normalised]}` as a JSON cell; `parquet`, the CSV's rows with typed columns
//! (a UTC millisecond timestamp, integers, doubles with nulls, a boolean, UTF-8 strings and
//! the functions as a JSON string), Snappy-compressed, in row groups of at most
//! [`PARQUET_GROUP_ROWS`] rows or about [`PARQUET_GROUP_BYTES`] of text, so memory stays
//! bounded whatever the table's size. Files are written atomically
//! ([`export_events_to_file`]: a temporary file in the same directory, synced, renamed).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
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
    /// One row per completion, typed columns (a file only).
    Parquet,
}

impl std::str::FromStr for ExportFormat {
    type Err = RewardError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            "parquet" => Ok(ExportFormat::Parquet),
            other => Err(RewardError::Config(format!(
                "unknown export format {other:?}: jsonl, csv or parquet"
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
    if format == ExportFormat::Parquet {
        return Err(RewardError::Config(
            "parquet is written to a file: use export_events_to_file (`--output`)".into(),
        ));
    }
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
                ExportFormat::Parquet => unreachable!("refused above"),
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(written)
}

/// One completion of a reward event, as the exports flatten it (one row each).
struct CompletionRow<'a> {
    uid: &'a Value,
    completion: &'a str,
    time: Option<&'a Value>,
    reward: Option<&'a Value>,
    /// Whether this completion was the step's best.
    best: bool,
    /// `{"function": [raw, normalized], …}` as JSON text.
    per_function: String,
}

/// The completions of `event`, in uid order, with each reward function's values for them.
fn completion_rows(event: &RewardEventRecord) -> impl Iterator<Item = CompletionRow<'_>> {
    fn field(value: &Value) -> &[Value] {
        value.as_array().map(Vec::as_slice).unwrap_or_default()
    }
    let (uids, completions, times, rewards, functions) = (
        field(&event.uids),
        field(&event.completions),
        field(&event.completion_times),
        field(&event.rewards),
        field(&event.functions),
    );
    uids.iter().enumerate().map(move |(i, uid)| {
        let completion = completions.get(i).and_then(Value::as_str).unwrap_or_default();
        let per_function: serde_json::Map<String, Value> = functions
            .iter()
            .filter_map(|f| {
                let name = f.get("name")?.as_str()?.to_owned();
                Some((name, json!([f.get("raw")?.get(i), f.get("normalized")?.get(i)])))
            })
            .collect();
        CompletionRow {
            uid,
            completion,
            time: times.get(i),
            reward: rewards.get(i),
            best: !completion.is_empty() && completion.trim() == event.best,
            per_function: Value::Object(per_function).to_string(),
        }
    })
}

/// One CSV row per completion of `event`.
pub fn csv_rows(seq: i64, event: &RewardEventRecord) -> Vec<String> {
    completion_rows(event)
        .map(|row| {
            [
                seq.to_string(),
                event.created_at_ms.to_string(),
                event.netuid.to_string(),
                event.block.to_string(),
                quote(&event.validator_hotkey),
                event.forward_index.to_string(),
                quote(&event.step),
                row.uid.to_string(),
                quote(&event.prompt),
                quote(row.completion),
                row.time.map(Value::to_string).unwrap_or_default(),
                row.reward.map(Value::to_string).unwrap_or_default(),
                u8::from(row.best).to_string(),
                quote(&row.per_function),
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

/// Writes the export to `path` atomically: into a temporary file next to it, synced, then
/// renamed over `path`, so a reader never sees a partial file (and a failed export leaves
/// what was there). Returns the lines or rows written.
pub async fn export_events_to_file(
    records: &Records,
    netuid: Option<u16>,
    format: ExportFormat,
    path: &Path,
) -> Result<u64> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| RewardError::Io {
            what,
            path: p,
            reason: e.to_string(),
        }
    };
    let name = path.file_name().ok_or_else(|| {
        RewardError::Config(format!("{} is not a file path", path.display()))
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = async {
        let file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut out = std::io::BufWriter::new(file);
        let written = match format {
            ExportFormat::Parquet => {
                let (n, back) = export_events_parquet(records, netuid, out).await?;
                out = back;
                n
            }
            _ => export_events(records, netuid, format, &mut out).await?,
        };
        let file = out
            .into_inner()
            .map_err(|e| io("writing", &tmp)(e.into_error()))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
        Ok(written)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Rows of a parquet row group, at most.
pub const PARQUET_GROUP_ROWS: usize = 8192;
/// Text (prompts, completions, functions) a parquet row group buffers before it is written.
pub const PARQUET_GROUP_BYTES: usize = 32 << 20;

/// The parquet export's schema: the CSV's row per completion, typed.
pub const PARQUET_SCHEMA: &str = "message reward_completion {
    required int64 seq;
    required int64 created_at (TIMESTAMP(MILLIS,true));
    required int32 netuid (INTEGER(16,false));
    required int64 block;
    required binary validator_hotkey (STRING);
    required int64 forward_index;
    required binary step (STRING);
    required int32 uid (INTEGER(16,false));
    required binary prompt (STRING);
    required binary base_prompt (STRING);
    required binary completion (STRING);
    optional double completion_time;
    optional double reward;
    required boolean best;
    required double step_length_s;
    required double scoring_s;
    required binary functions (JSON);
}";

/// One row group's columns (optional columns: the present values and every row's
/// definition level).
#[derive(Default)]
struct ParquetColumns {
    seq: Vec<i64>,
    created_at: Vec<i64>,
    netuid: Vec<i32>,
    block: Vec<i64>,
    validator_hotkey: Vec<ByteArray>,
    forward_index: Vec<i64>,
    step: Vec<ByteArray>,
    uid: Vec<i32>,
    prompt: Vec<ByteArray>,
    base_prompt: Vec<ByteArray>,
    completion: Vec<ByteArray>,
    completion_time: (Vec<f64>, Vec<i16>),
    reward: (Vec<f64>, Vec<i16>),
    best: Vec<bool>,
    step_length_s: Vec<f64>,
    scoring_s: Vec<f64>,
    functions: Vec<ByteArray>,
    rows: usize,
    bytes: usize,
}


fn text(value: &str) -> ByteArray {
    ByteArray::from(value.as_bytes().to_vec())
}

fn optional(column: &mut (Vec<f64>, Vec<i16>), value: Option<f64>) {
    match value.filter(|v| v.is_finite()) {
        Some(v) => {
            column.0.push(v);
            column.1.push(1);
        }
        None => column.1.push(0),
    }
}

impl ParquetColumns {
    fn push_event(&mut self, seq: i64, event: &RewardEventRecord) {
        for CompletionRow { uid, completion, time, reward, best, per_function } in completion_rows(event) {
            self.bytes += event.prompt.len()
                + event.base_prompt.len()
                + completion.len()
                + per_function.len()
                + event.validator_hotkey.len()
                + event.step.len();
            self.seq.push(seq);
            self.created_at.push(event.created_at_ms);
            self.netuid.push(i32::from(event.netuid));
            self.block.push(i64::try_from(event.block).unwrap_or(i64::MAX));
            self.validator_hotkey.push(text(&event.validator_hotkey));
            self.forward_index
                .push(i64::try_from(event.forward_index).unwrap_or(i64::MAX));
            self.step.push(text(&event.step));
            self.uid.push(
                uid.as_u64()
                    .and_then(|u| i32::try_from(u).ok())
                    .unwrap_or(-1),
            );
            self.prompt.push(text(&event.prompt));
            self.base_prompt.push(text(&event.base_prompt));
            self.completion.push(text(completion));
            optional(&mut self.completion_time, time.and_then(Value::as_f64));
            optional(&mut self.reward, reward.and_then(Value::as_f64));
            self.best.push(best);
            self.step_length_s.push(event.step_length_s);
            self.scoring_s.push(event.scoring_s);
            self.functions.push(ByteArray::from(per_function.into_bytes()));
            self.rows += 1;
        }
    }

    fn full(&self) -> bool {
        self.rows >= PARQUET_GROUP_ROWS || self.bytes >= PARQUET_GROUP_BYTES
    }

    /// Writes the buffered rows as one row group and empties the buffers.
    fn flush<W: Write + Send>(
        &mut self,
        writer: &mut parquet::file::writer::SerializedFileWriter<W>,
    ) -> parquet::errors::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let c = std::mem::take(self);
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => column.typed::<Int64Type>().write_batch(&c.seq, None, None)?,
                1 => column.typed::<Int64Type>().write_batch(&c.created_at, None, None)?,
                2 => column.typed::<Int32Type>().write_batch(&c.netuid, None, None)?,
                3 => column.typed::<Int64Type>().write_batch(&c.block, None, None)?,
                4 => column.typed::<ByteArrayType>().write_batch(&c.validator_hotkey, None, None)?,
                5 => column.typed::<Int64Type>().write_batch(&c.forward_index, None, None)?,
                6 => column.typed::<ByteArrayType>().write_batch(&c.step, None, None)?,
                7 => column.typed::<Int32Type>().write_batch(&c.uid, None, None)?,
                8 => column.typed::<ByteArrayType>().write_batch(&c.prompt, None, None)?,
                9 => column.typed::<ByteArrayType>().write_batch(&c.base_prompt, None, None)?,
                10 => column.typed::<ByteArrayType>().write_batch(&c.completion, None, None)?,
                11 => column.typed::<DoubleType>().write_batch(
                    &c.completion_time.0,
                    Some(&c.completion_time.1),
                    None,
                )?,
                12 => column.typed::<DoubleType>().write_batch(&c.reward.0, Some(&c.reward.1), None)?,
                13 => column.typed::<BoolType>().write_batch(&c.best, None, None)?,
                14 => column.typed::<DoubleType>().write_batch(&c.step_length_s, None, None)?,
                15 => column.typed::<DoubleType>().write_batch(&c.scoring_s, None, None)?,
                16 => column.typed::<ByteArrayType>().write_batch(&c.functions, None, None)?,
                _ => {
                    return Err(parquet::errors::ParquetError::General(
                        "the schema has more columns than the writer".into(),
                    ));
                }
            };
            column.close()?;
            index += 1;
        }
        group.close()?;
        Ok(())
    }
}

/// Writes every stored event (of `netuid`, if given) to `out` as parquet, one row per
/// completion, page by page and row group by row group; returns the rows written and `out`
/// (footer written, not yet synced).
///
/// The `parquet` crate's own column writers, not its arrow writer: the rows are built
/// straight into typed column buffers, and leaving out the `arrow` feature keeps
/// arrow-array/-select/-ipc and their dependencies out of the build.
pub async fn export_events_parquet<W: Write + Send>(
    records: &Records,
    netuid: Option<u16>,
    out: W,
) -> Result<(u64, W)> {
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let fail = |e: parquet::errors::ParquetError| RewardError::Io {
        what: "writing parquet",
        path: "the export".into(),
        reason: e.to_string(),
    };
    let schema = Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA).map_err(fail)?);
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("ganglion {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut writer = SerializedFileWriter::new(out, schema, properties).map_err(fail)?;
    let mut columns = ParquetColumns::default();
    let mut after = 0i64;
    let mut written = 0u64;
    loop {
        let page = records
            .reward_events(netuid, after, 500)
            .await
            .map_err(|e| RewardError::Config(format!("reading events: {e}")))?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (seq, event) in &page {
            let before = columns.rows;
            columns.push_event(*seq, event);
            written += (columns.rows - before) as u64;
            if columns.full() {
                columns.flush(&mut writer).map_err(fail)?;
            }
        }
    }
    columns.flush(&mut writer).map_err(fail)?;
    let out = writer.into_inner().map_err(fail)?;
    Ok((written, out))
}
