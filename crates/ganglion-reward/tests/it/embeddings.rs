//! all-MiniLM-L6-v2 in candle against the real sentence-transformers: token ids must be
//! identical and every embedding within cosine 0.9999 (and 1e-4 per component) of the golden
//! fixture `tests/fixtures/minilm_golden.json`, which `scripts/reward-golden.py` wrote with
//! sentence-transformers on PyTorch (versions inside the fixture).

use serde_json::Value;

use crate::common::embedder;
use ganglion_reward::embed::cosine;

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn embeddings_match_sentence_transformers() {
    let golden = golden();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let model = embedder();
    let model = &*model;
    let ours = model.embed(&texts).unwrap();
    let mut worst = 1.0f64;
    for (case, mine) in cases.iter().zip(&ours) {
        let text = case["text"].as_str().unwrap();
        let want_ids: Vec<u32> = case["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            model.token_ids(text).unwrap(),
            want_ids,
            "token ids of {text:?}"
        );
        let want: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(mine.len(), want.len());
        let c = cosine(mine, &want);
        worst = worst.min(c);
        assert!(c >= 0.9999, "cosine {c} for {text:?}");
        let max_diff = mine
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff < 1e-4,
            "max component difference {max_diff} for {text:?}"
        );
        let norm: f64 = mine
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    eprintln!(
        "minilm: {} texts, worst cosine to sentence-transformers {worst:.7}",
        cases.len()
    );
}

#[test]
fn batching_does_not_change_embeddings() {
    // One text alone and the same text in a batch with longer ones (padding) agree.
    let model = embedder();
    let model = &*model;
    let texts = [
        "short text",
        "a much longer text that forces padding of the short one in the same batch",
    ];
    let alone = model.embed(&texts[..1]).unwrap();
    let together = model.embed(&texts).unwrap();
    assert!(cosine(&alone[0], &together[0]) > 0.99999);
}

#[test]
fn enormous_and_empty_texts_embed() {
    let model = embedder();
    let model = &*model;
    let huge = "word ".repeat(200_000);
    let out = model.embed(&["", &huge, "\u{0}\u{7f}\u{fffd}"]).unwrap();
    assert_eq!(out.len(), 3);
    assert!(
        out.iter()
            .all(|e| e.len() == model.dim() && e.iter().all(|x| x.is_finite()))
    );
    // Truncated at 256 tokens: [CLS] + 254 words + [SEP].
    assert_eq!(model.token_ids(&huge).unwrap().len(), 256);
}

/// The texts of the throughput figure (shared with `scripts/reward-bench-st.py`): 64 passages
/// of 60–120 words.
pub(crate) fn bench_texts() -> Vec<String> {
    (0..64)
        .map(|i| {
            let words = 60 + (i * 7) % 61;
            (0..words)
                .map(|w| {
                    [
                        "bees",
                        "dance",
                        "flowers",
                        "direction",
                        "sun",
                        "distance",
                        "hive",
                        "nectar",
                    ][(i + w * 3) % 8]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn throughput_figure() {
    let model = embedder();
    let texts = bench_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs[..8]).unwrap();
    let started = std::time::Instant::now();
    let out = model.embed(&refs).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(out.len(), 64);
    eprintln!(
        "minilm: {} texts in {elapsed:.2?} = {:.1} texts/s",
        refs.len(),
        refs.len() as f64 / elapsed.as_secs_f64()
    );
}
