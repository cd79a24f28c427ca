//! The formulas against worked examples from an independent Python reference written from the
//! spec (`scripts/reward-reference.py`, fixture `tests/fixtures/reward_worked.json`):
//! running normalisation (through N = 3000), the moving average, the task validator, the
//! blacklist, and diversity (batch and history sigmoids, the history's activation at 502 and
//! its consecutive-duplicate rule).

use serde_json::Value;

use ganglion_reward::masks::{Blacklist, task_validator};
use ganglion_reward::normalize::{MOVING_AVERAGE_ALPHA, RunningNormalizer, moving_average};
use ganglion_reward::similarity::{Diversity, batch_diversity};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/reward_worked.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn running_normalization_matches_the_reference() {
    let doc = fixture();
    let mut norm = RunningNormalizer::default();
    let steps = doc["normalization"].as_array().unwrap();
    assert!(steps.len() > 60);
    for (k, step) in steps.iter().enumerate() {
        let out = norm.normalize(&floats(&step["rewards"]));
        close(
            &out,
            &floats(&step["normalized"]),
            1e-12,
            &format!("batch {k}"),
        );
        assert!((norm.mean - step["mean"].as_f64().unwrap()).abs() < 1e-12);
        assert!((norm.var - step["var"].as_f64().unwrap()).abs() < 1e-9);
        assert_eq!(norm.count, step["count"].as_u64().unwrap());
    }
    assert_eq!(norm.count, 3000);
}

#[test]
fn moving_average_matches_the_reference() {
    let doc = fixture();
    let mut scores = floats(&doc["moving_average"]["initial"]);
    for step in doc["moving_average"]["steps"].as_array().unwrap() {
        let uids: Vec<u16> = step["uids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_u64().unwrap() as u16)
            .collect();
        moving_average(
            &mut scores,
            &uids,
            &floats(&step["rewards"]),
            MOVING_AVERAGE_ALPHA,
        );
        close(&scores, &floats(&step["scores"]), 1e-15, "scores");
    }
}

#[test]
fn task_validator_matches_the_reference() {
    let doc = fixture();
    let cases = doc["task_validator"].as_array().unwrap();
    let zeros = cases
        .iter()
        .filter(|c| c["mask"].as_f64() == Some(0.0))
        .count();
    assert!(zeros > 10 && zeros < cases.len() - 10);
    for case in cases {
        let (name, completion) = (
            case["name"].as_str().unwrap(),
            case["completion"].as_str().unwrap(),
        );
        assert_eq!(
            task_validator(name, completion),
            case["mask"].as_f64().unwrap(),
            "{name}: {completion:?}"
        );
    }
}

#[test]
fn blacklist_matches_the_reference() {
    let doc = fixture();
    let bl = &doc["blacklist"];
    let mut blacklist = Blacklist::default();
    for q in bl["questions"].as_array().unwrap() {
        blacklist.add_question(q.as_str().unwrap());
    }
    for a in bl["answers"].as_array().unwrap() {
        blacklist.add_answer(a.as_str().unwrap());
    }
    let prompt = bl["prompt"].as_str().unwrap();
    for case in bl["cases"].as_array().unwrap() {
        let c = case["completion"].as_str().unwrap();
        assert_eq!(
            blacklist.reward(prompt, c),
            case["mask"].as_f64().unwrap(),
            "{c:?}"
        );
    }
}

#[test]
fn diversity_matches_the_reference_through_the_history() {
    let doc = fixture();
    let mut diversity = Diversity::default();
    let mut saw_history = false;
    for (k, step) in doc["diversity"].as_array().unwrap().iter().enumerate() {
        let embeddings: Vec<Vec<f32>> = step["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect();
        close(
            &batch_diversity(&embeddings),
            &floats(&step["batch"]),
            1e-9,
            &format!("batch factor {k}"),
        );
        match (&step["history"], diversity.historic(&embeddings)) {
            (Value::Null, None) => {}
            (want, Some(got)) if !want.is_null() => {
                saw_history = true;
                close(&got, &floats(want), 1e-7, &format!("history factor {k}"));
            }
            (want, got) => panic!("step {k}: history factor {want:?} vs {got:?}"),
        }
        let mask = diversity.rewards(&embeddings);
        close(&mask, &floats(&step["mask"]), 1e-7, &format!("mask {k}"));
        assert_eq!(
            diversity.history_len() as u64,
            step["history_len"].as_u64().unwrap()
        );
    }
    assert!(saw_history);
}

#[test]
fn diversity_history_is_bounded_and_persisted() {
    let mut diversity = Diversity::default();
    let batch: Vec<Vec<f32>> = (0..500)
        .map(|i| vec![i as f32, 1.0, (i % 7) as f32])
        .collect();
    for _ in 0..40 {
        diversity.update(&batch);
    }
    assert_eq!(
        diversity.history_len(),
        ganglion_reward::similarity::HISTORY_KEEP
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.bin");
    diversity.save(&path).unwrap();
    let loaded = Diversity::load(&path).unwrap();
    assert_eq!(loaded, diversity);
    // A truncated file is a typed error, never a panic.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(Diversity::load(&path).is_err());
    std::fs::write(&path, b"GD").unwrap();
    assert!(Diversity::load(&path).is_err());
    assert_eq!(
        Diversity::load(&dir.path().join("absent.bin"))
            .unwrap()
            .history_len(),
        0
    );
}
