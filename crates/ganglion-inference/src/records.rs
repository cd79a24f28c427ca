//! Record writing that never blocks or crashes the scoring loop: records go into a bounded
//! channel; one writer task batches them into the store. A full channel drops the record
//! (counted in `ganglion_inference_records_dropped_total`); a store failure is logged and
//! counted (`ganglion_inference_records_failed_total`) and writing goes on.
//! [`RecordWriter::close`] ends the channel for every clone, so that the writer task
//! stores what is queued and exits (the validator's flush at shutdown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ganglion_records::{InferenceRecord, Records, ScoreRecord};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use ganglion_neuron::Metrics;

/// What the writer stores.
#[derive(Debug, Clone)]
pub enum Record {
    /// One request/response.
    Inference(Box<InferenceRecord>),
    /// The scores of one weight-setting.
    Scores(Vec<ScoreRecord>),
}

/// The sending half; cheap to clone. A disabled (or closed) writer drops everything silently.
#[derive(Debug, Clone)]
pub struct RecordWriter {
    tx: Arc<Mutex<Option<mpsc::Sender<Record>>>>,
    metrics: Arc<Metrics>,
}

/// Rows per insert.
const BATCH: usize = 64;

impl RecordWriter {
    /// A writer into `records` with room for `capacity` queued records.
    pub fn spawn(records: Records, capacity: usize, metrics: Arc<Metrics>) -> (RecordWriter, JoinHandle<()>) {
        metrics.counter("ganglion_inference_records_written_total", "Records written to the store.");
        metrics.counter("ganglion_inference_records_dropped_total", "Records dropped because the writer fell behind.");
        metrics.counter("ganglion_inference_records_failed_total", "Records the store refused.");
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(write_loop(records, rx, metrics.clone()));
        (RecordWriter { tx: Arc::new(Mutex::new(Some(tx))), metrics }, task)
    }

    /// A writer that stores nothing.
    pub fn disabled(metrics: Arc<Metrics>) -> RecordWriter {
        RecordWriter { tx: Arc::new(Mutex::new(None)), metrics }
    }

    /// Closes the channel for every clone: the writer task stores what is queued, closes
    /// the store and ends. Later records are dropped.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Queues a record without waiting.
    pub fn send(&self, record: Record) {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else { return };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.inc("ganglion_inference_records_dropped_total", &[]);
                tracing::warn!(target: "ganglion::inference", "records writer is behind; a record was dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.inc("ganglion_inference_records_dropped_total", &[]);
            }
        }
    }
}

async fn write_loop(records: Records, mut rx: mpsc::Receiver<Record>, metrics: Arc<Metrics>) {
    let mut inference = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while pending.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => pending.push(r),
                Err(_) => break,
            }
        }
        for record in pending {
            match record {
                Record::Inference(r) => inference.push(*r),
                Record::Scores(rows) => store(&metrics, rows.len(), records.insert_scores(&rows)).await,
            }
        }
        if !inference.is_empty() {
            let rows = std::mem::take(&mut inference);
            store(&metrics, rows.len(), records.insert_inference(&rows)).await;
        }
    }
    records.close().await;
}

async fn store(metrics: &Metrics, rows: usize, write: impl std::future::Future<Output = ganglion_records::RecordsResult<()>>) {
    // A stuck database must not hold records forever either.
    match tokio::time::timeout(Duration::from_secs(30), write).await {
        Ok(Ok(())) => metrics.add("ganglion_inference_records_written_total", &[], rows as f64),
        Ok(Err(e)) => {
            metrics.add("ganglion_inference_records_failed_total", &[], rows as f64);
            tracing::warn!(target: "ganglion::inference", "records store refused {rows} record(s): {e}");
        }
        Err(_) => {
            metrics.add("ganglion_inference_records_failed_total", &[], rows as f64);
            tracing::warn!(target: "ganglion::inference", "records store did not answer in 30 s; {rows} record(s) lost");
        }
    }
}
