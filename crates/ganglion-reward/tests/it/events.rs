//! The event log through a real SQLite records store: a forward's events recorded by the
//! sink (with the V3 migration), read back in order and exported as JSON lines and CSV rows
//! that carry exactly what was stored (checked by parsing the export back).

use ganglion_records::Records;
use ganglion_reward::events::{ExportFormat, RecordsSink, export_events, export_events_to_file, quote};
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
    assert!("xlsx".parse::<ExportFormat>().is_err());
}

/// The parquet export read back with the same crate: one typed row per completion that
/// matches the JSON-lines export field by field, renamed over the previous file (no temporary
/// file left), in several row groups when the rows outgrow one.
#[tokio::test]
async fn parquet_export_matches_jsonl() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(&Records::default_url(dir.path())).await.unwrap();
    let sink = RecordsSink {
        records: records.clone(),
        netuid: 3,
        validator_hotkey: "5Validator".into(),
    };
    // Enough rows for two row groups (8192 rows each at most).
    let uids: Vec<u16> = (0..64).collect();
    let events = vec![event("augment", uids.clone()), event("answer0", uids)];
    for forward in 0..70 {
        sink.record(100 + forward, forward, &events).await;
    }
    let rows_expected = 70 * 2 * 64;

    let jsonl_path = dir.path().join("events.jsonl");
    assert_eq!(
        export_events_to_file(&records, None, ExportFormat::Jsonl, &jsonl_path)
            .await
            .unwrap(),
        140
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let path = dir.path().join("out").join("events.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"previous").unwrap();
    assert_eq!(
        export_events_to_file(&records, None, ExportFormat::Parquet, &path)
            .await
            .unwrap(),
        rows_expected
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("events.parquet")]);

    let reader = SerializedFileReader::try_from(std::fs::File::open(&path).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), rows_expected as i64);
    assert!(meta.num_row_groups() >= 2, "{} row groups", meta.num_row_groups());
    let mut n = 0usize;
    let mut rows = reader.get_row_iter(None).unwrap();
    for line in &lines {
        let uids = line["uids"].as_array().unwrap();
        for (i, uid) in uids.iter().enumerate() {
            let row = rows.next().unwrap().unwrap();
            let fields: std::collections::HashMap<&str, &Field> =
                row.get_column_iter().map(|(k, v)| (k.as_str(), v)).collect();
            let text = |k: &str| match fields[k] {
                Field::Str(s) => s.clone(),
                other => panic!("{k}: {other:?}"),
            };
            let long = |k: &str| match fields[k] {
                Field::Long(v) => *v,
                other => panic!("{k}: {other:?}"),
            };
            let double = |k: &str| match fields[k] {
                Field::Double(v) => Some(*v),
                Field::Null => None,
                other => panic!("{k}: {other:?}"),
            };
            assert_eq!(long("seq"), line["seq"].as_i64().unwrap());
            assert_eq!(
                fields["created_at"],
                &Field::TimestampMillis(line["created_at_ms"].as_i64().unwrap())
            );
            assert_eq!(fields["netuid"], &Field::UShort(3));
            assert_eq!(long("block") as u64, line["block"].as_u64().unwrap());
            assert_eq!(text("validator_hotkey"), line["validator_hotkey"]);
            assert_eq!(long("forward_index") as u64, line["forward_index"].as_u64().unwrap());
            assert_eq!(text("step"), line["step"]);
            assert_eq!(fields["uid"], &Field::UShort(uid.as_u64().unwrap() as u16));
            assert_eq!(text("prompt"), line["prompt"]);
            assert_eq!(text("base_prompt"), line["base_prompt"]);
            assert_eq!(text("completion"), line["completions"][i]);
            assert_eq!(double("completion_time"), line["completion_times"][i].as_f64());
            assert_eq!(double("reward"), line["rewards"][i].as_f64());
            let completion = line["completions"][i].as_str().unwrap();
            assert_eq!(
                fields["best"],
                &Field::Bool(!completion.is_empty() && completion.trim() == line["best"])
            );
            assert_eq!(double("step_length_s"), line["step_length_s"].as_f64());
            assert_eq!(double("scoring_s"), line["scoring_s"].as_f64());
            let functions: serde_json::Value = serde_json::from_str(&text("functions")).unwrap();
            let f = &line["functions"][0];
            assert_eq!(
                functions[f["name"].as_str().unwrap()],
                serde_json::json!([f["raw"][i], f["normalized"][i]])
            );
            n += 1;
        }
    }
    assert!(rows.next().is_none());
    assert_eq!(n, rows_expected as usize);
}
