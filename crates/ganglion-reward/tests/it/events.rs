//! The event log through a real SQLite records store: a forward's events recorded by the
//! sink (with the V3 migration), read back in order and exported as JSON lines and CSV rows
//! that carry exactly what was stored (checked by parsing the export back).

use ganglion_records::Records;
use ganglion_reward::events::{ExportFormat, RecordsSink, export_events, quote};
use ganglion_reward::forward::StepEvent;
use ganglion_reward::pipeline::FunctionRewards;
use ganglion_reward::validator::EventSink;

fn event(name: &str, uids: Vec<u16>) -> StepEvent {
    let n = uids.len();
    StepEvent {
        name: name.into(),
        prompt: format!("prompt of {name}, with a comma and a \"quote\"\nand a newline"),
        base_prompt: "base".into(),
        completions: (0..n)
            .map(|i| {
                if i == 1 {
                    String::new()
                } else {
                    format!("answer {i}, {name}")
                }
            })
            .collect(),
        completion_times: (0..n).map(|i| 0.5 + i as f64).collect(),
        failures: (0..n)
            .map(|i| (i == 1).then(|| "timeout".to_owned()))
            .collect(),
        rewards: (0..n)
            .map(|i| if i == 1 { 0.0 } else { 0.25 * i as f64 })
            .collect(),
        functions: vec![FunctionRewards {
            name: "relevance_filter".into(),
            raw: (0..n).map(|i| (i != 1).then_some(1.0)).collect(),
            normalized: (0..n).map(|i| if i == 1 { 0.0 } else { 1.0 }).collect(),
        }],
        best: format!("answer {}, {name}", n - 1),
        step_length: 1.5,
        scoring_seconds: 0.25,
        uids,
    }
}

#[tokio::test]
async fn events_are_stored_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let url = Records::default_url(dir.path());
    let records = Records::open(&url).await.unwrap();
    assert_eq!(
        records.schema_version().await.unwrap(),
        ganglion_records::SCHEMA_VERSION
    );
    let sink = RecordsSink {
        records: records.clone(),
        netuid: 3,
        validator_hotkey: "5Validator".into(),
    };
    let events = vec![
        event("augment", vec![4, 7, 9]),
        event("followup0", vec![1, 2]),
    ];
    sink.record(120, 1, &events).await;
    sink.record(130, 2, &events[..1]).await;
    let stored = records.reward_events(Some(3), 0, 100).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.windows(2).all(|w| w[0].0 < w[1].0), "seq order");
    assert_eq!(stored[1].1.step, "followup0");
    assert_eq!(
        records.reward_events(Some(4), 0, 100).await.unwrap().len(),
        0
    );

    let mut jsonl = Vec::new();
    assert_eq!(
        export_events(&records, None, ExportFormat::Jsonl, &mut jsonl)
            .await
            .unwrap(),
        3
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["step"], "augment");
    assert_eq!(lines[0]["prompt"], events[0].prompt.as_str());
    assert_eq!(lines[0]["rewards"], serde_json::json!([0.0, 0.0, 0.5]));
    assert_eq!(
        lines[0]["functions"][0]["raw"],
        serde_json::json!([1.0, null, 1.0])
    );
    assert_eq!(lines[2]["forward_index"], 2);

    let mut csv = Vec::new();
    assert_eq!(
        export_events(&records, Some(3), ExportFormat::Csv, &mut csv)
            .await
            .unwrap(),
        3 + 2 + 3
    );
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("seq,created_at_ms,"));
    // The quoted prompt appears once per completion row.
    assert_eq!(csv.matches(&quote(&events[0].prompt)).count(), 6);
    assert!(csv.contains(",\"answer 2, augment\",2.5,0.5,1,"), "{csv}");
    assert!("parquet".parse::<ExportFormat>().is_err());
}
