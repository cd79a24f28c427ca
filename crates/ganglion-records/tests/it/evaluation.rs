//! The model-evaluation table (migration V4) on both backends: round trip with nulls,
//! idempotent inserts, filters and paging, and refused input rejected whole.

use crate::common;

use common::TestStore;
use ganglion_records::ModelEvaluationRecord;

fn row(i: u64, uid: u16, status: &str) -> ModelEvaluationRecord {
    ModelEvaluationRecord {
        id: format!("eval-{i}"),
        created_at_ms: 1_750_000_000_000 + i as i64,
        netuid: 3,
        block: 100 + i,
        validator_hotkey: "5Validator".into(),
        step: i / 3,
        competition: "g1".into(),
        uid,
        miner_hotkey: format!("5Miner{uid}"),
        commitment: "axon:m:None:abc=:g1".into(),
        commit_block: 7,
        model_hash: (status != "rejected").then(|| "hash=".to_string()),
        status: status.into(),
        reason: (status == "rejected").then(|| "the files hash to x, which does not match".to_string()),
        mean_loss: (status == "evaluated").then_some(1.25 + f64::from(uid)),
        win_rate: (status == "evaluated").then_some(0.5),
        wins: u64::from(uid),
        matches: 4,
        weight: if status == "evaluated" { 0.25 } else { 0.0 },
        samples: 8,
    }
}

async fn evaluations_round_trip_filter_and_page(store: &TestStore) {
    let r = &store.records;
    let rows: Vec<ModelEvaluationRecord> =
        (0..9).map(|i| row(i, (i % 3) as u16, ["evaluated", "duplicate", "rejected"][(i % 3) as usize])).collect();
    r.insert_model_evaluations(&rows).await.expect("records");
    // Idempotent by id.
    r.insert_model_evaluations(&rows[..2]).await.expect("records");
    let all = r.model_evaluations(Some(3), None, 0, 100).await.expect("records");
    assert_eq!(all.len(), 9);
    assert_eq!(all.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), rows);
    let uid2 = r.model_evaluations(Some(3), Some(2), 0, 100).await.expect("records");
    assert_eq!(uid2.len(), 3);
    assert!(uid2.iter().all(|(_, e)| e.status == "rejected" && e.reason.is_some() && e.mean_loss.is_none()));
    let page = r.model_evaluations(None, None, 0, 4).await.expect("records");
    assert_eq!(page.len(), 4);
    let rest = r.model_evaluations(None, None, page[3].0, 100).await.expect("records");
    assert_eq!(rest.len(), 5);
    assert!(r.model_evaluations(Some(4), None, 0, 100).await.expect("records").is_empty());
    assert!(r.model_evaluations(None, None, 0, 0).await.is_err());
}

async fn bad_evaluations_are_refused_whole(store: &TestStore) {
    let r = &store.records;
    let good = row(0, 0, "evaluated");
    let mut bad_status = row(1, 1, "evaluated");
    bad_status.status = "great".into();
    let mut nan = row(2, 2, "evaluated");
    nan.mean_loss = Some(f64::NAN);
    let mut long = row(3, 3, "rejected");
    long.reason = Some("x".repeat(5000));
    for bad in [bad_status, nan, long] {
        assert!(r.insert_model_evaluations(&[good.clone(), bad]).await.is_err());
    }
    assert!(r.model_evaluations(None, None, 0, 100).await.expect("records").is_empty());
}

both_backends!(evaluations_round_trip_filter_and_page, bad_evaluations_are_refused_whole);
