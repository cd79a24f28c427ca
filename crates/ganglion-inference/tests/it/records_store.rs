//! What the validator records, through its non-blocking writer, into SQLite and (when
//! `GANGLION_TEST_POSTGRES_URL` names a server, see `scripts/install-postgres`) PostgreSQL:
//! the same code path, read back field by field; and a writer that falls behind drops and
//! counts instead of blocking the loop.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::{MODEL, fake, key, sse, target};
use ganglion_neuron::Metrics;
use ganglion_inference::openai::{Endpoint, InferenceRequest, Message, Prompt, Sampling};
use ganglion_inference::records::{Record, RecordWriter};
use ganglion_inference::validator::{Dendrite, ValidatorConfig, inference_record, run_round};
use ganglion_inference::verify::VerifyConfig;
use ganglion_records::{InferenceFilter, Records};

async fn check_backend(url: &str) {
    let garbage = fake(|| sse(futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\n\ndata: nope\n\n"))])))
    .await;
    let request = InferenceRequest {
        model: MODEL.into(),
        endpoint: Endpoint::Chat,
        prompt: Prompt::Chat(vec![Message { role: "user".into(), content: "hi".into() }]),
        sampling: Sampling { temperature: 0.5, top_p: 0.9, max_tokens: 8, seed: Some(u64::MAX - 1), ..Sampling::default() },
    };
    let dendrite = Dendrite::new(key("//RecVal"), Duration::from_secs(1)).unwrap();
    let limits = common::limits(8, Duration::from_secs(5), Duration::from_secs(5));
    let miner = target(4, "RecMiner", garbage);
    let results = run_round(&dendrite, None, &VerifyConfig::default(), &request, std::slice::from_ref(&miner), limits).await;
    let config = ValidatorConfig::new(9, key("//RecVal"), std::env::temp_dir());
    let record = inference_record(&config, &request, &results[0], 1234, false);

    let store = Records::open(url).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (writer, task) = RecordWriter::spawn(store, 16, metrics.clone());
    writer.send(Record::Inference(Box::new(record.clone())));
    drop(writer);
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
    assert_eq!(metrics.get("ganglion_inference_records_written_total", &[]), 1.0);

    let store = Records::open(url).await.unwrap();
    let back = store.inference(&record.id).await.unwrap().unwrap();
    assert_eq!(back, record, "stored and read back unchanged");
    assert_eq!(back.cause.as_deref(), Some("MALFORMED"));
    assert_eq!(back.response, "hel", "what arrived before the failure is kept");
    assert_eq!(back.seed, Some(u64::MAX - 1));
    let rows = store.recent_inference(&InferenceFilter { netuid: 9, miner_hotkey: Some(miner.hotkey.to_ss58()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn records_round_trip_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check_backend(&format!("sqlite:{}", dir.path().join("records.db").display())).await;
}

#[tokio::test]
async fn records_round_trip_in_postgres() {
    let Some(base) = std::env::var("GANGLION_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "GANGLION_TEST_POSTGRES_URL is required: run scripts/install-postgres");
        println!("skipped: GANGLION_TEST_POSTGRES_URL is not set (scripts/install-postgres prints one)");
        return;
    };
    let schema = format!("inference_{}", uuid::Uuid::new_v4().simple());
    let url = ganglion_records::create_postgres_schema(&base, &schema).await.unwrap();
    check_backend(&url).await;
    ganglion_records::drop_postgres_schema(&base, &schema).await.unwrap();
}

#[tokio::test]
async fn a_writer_that_falls_behind_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Records::open(&format!("sqlite:{}", dir.path().join("r.db").display())).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (writer, task) = RecordWriter::spawn(store, 1, metrics.clone());
    let config = ValidatorConfig::new(1, key("//V"), dir.path().to_path_buf());
    let request = InferenceRequest {
        model: MODEL.into(),
        endpoint: Endpoint::Completion,
        prompt: Prompt::Text("x".into()),
        sampling: Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 1, seed: None, ..Sampling::default() },
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dendrite = Dendrite::new(key("//V"), Duration::from_millis(200)).unwrap();
    let results = run_round(&dendrite, None, &VerifyConfig::default(), &request, &[target(1, "M", closed)], common::limits(1, Duration::from_secs(1), Duration::from_secs(1))).await;
    let record = inference_record(&config, &request, &results[0], 1, false);
    let started = Instant::now();
    for _ in 0..2_000 {
        let mut r = record.clone();
        r.id = format!("{}-{}", r.id, started.elapsed().as_nanos());
        writer.send(Record::Inference(Box::new(r)));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "sending never waits for the store");
    drop(writer);
    tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap();
    let (written, dropped) = (metrics.get("ganglion_inference_records_written_total", &[]), metrics.get("ganglion_inference_records_dropped_total", &[]));
    assert!(dropped > 0.0, "a one-slot queue cannot take 2000 records at once");
    assert_eq!(written + dropped, 2_000.0, "every record is either written or counted as dropped");
}
