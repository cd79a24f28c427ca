//! A whole round on tiny generated models: the evaluation responses are model A's own greedy
//! continuations, so A must have the lower loss on every sample and win them all against B
//! even though B was committed earlier (its 1% advantage is far smaller than the gap); a
//! byte-identical copy of A committed later is a duplicate and gets no losses; a garbage
//! file is rejected with its cause; the weight update then favours A.

use std::collections::BTreeMap;

use ganglion_engine::Engine;
use ganglion_engine::engine::GenerateRequest;
use ganglion_engine::sampling::SamplingParams;
use ganglion_engine::tokenizer::ChatMessage;
use ganglion_evaluation::dirhash::hash_file;
use ganglion_evaluation::loss::Sample;
use ganglion_evaluation::round::{Candidate, Competition, evaluate};
use ganglion_evaluation::scoring::finetuning_update;

#[test]
fn the_model_that_wrote_the_data_wins_and_copies_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    let copy = dir.path().join("copy.gguf");
    let junk = dir.path().join("junk.gguf");
    ganglion_engine::model::write_random_llama_gguf(&a, 21).unwrap();
    ganglion_engine::model::write_random_llama_gguf(&b, 22).unwrap();
    std::fs::copy(&a, &copy).unwrap();
    std::fs::write(&junk, b"GGUF but not really").unwrap();

    let engine = Engine::load(&a).unwrap();
    let samples: Vec<Sample> = ["what is a cat", "name a colour", "hello", "why is the sky blue", "count to three", "say hi"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let prompt = engine.tokenizer().encode_chat(&[ChatMessage { role: "user".into(), content: (*p).into() }], true).unwrap();
            let req = GenerateRequest {
                prompt,
                max_tokens: 24,
                sampling: SamplingParams { temperature: 0.0, seed: i as u64, ..SamplingParams::default() },
                stop: Vec::new(),
                top_logprobs: 0,
                prompt_logprobs: None,
            };
            let (text, _, _) = engine.generate(req, |_| std::ops::ControlFlow::Continue(())).unwrap();
            Sample { prompt: (*p).into(), response: text }
        })
        .collect();
    drop(engine);

    let h = |p: &std::path::Path| hash_file(p, u64::MAX).unwrap();
    let candidates = vec![
        Candidate { uid: 1, block: 10, hash: h(&b), model: b.clone() },
        Candidate { uid: 2, block: 20, hash: h(&a), model: a.clone() },
        Candidate { uid: 3, block: 30, hash: h(&copy), model: copy.clone() },
        Candidate { uid: 4, block: 5, hash: h(&junk), model: junk.clone() },
    ];
    let mut comp = Competition::default_schedule().remove(0);
    comp.sequence_length = 256;
    let out = evaluate(&comp, &candidates, &samples, 100, &|| false);
    assert_eq!(out.duplicates, vec![3]);
    assert!(out.rejected[&4].contains("GGUF"), "{:?}", out.rejected);
    assert_eq!(out.losses.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    let (la, lb) = (&out.losses[&2], &out.losses[&1]);
    assert_eq!(la.len(), samples.len());
    for (x, y) in la.iter().zip(lb) {
        assert!(x.is_finite() && y.is_finite());
        assert!(*x < 0.99 * y, "A {x} vs B {y}");
    }
    assert_eq!(out.wins[&2].win_rate, 1.0);
    assert_eq!(out.wins[&1].win_rate, 0.0);
    assert!(out.mean_loss(2).unwrap() < out.mean_loss(1).unwrap());

    let mut weights = BTreeMap::new();
    finetuning_update(&mut weights, &out.wins, comp.temperature, comp.share, 1, 0.9);
    assert!(weights[&2] > 0.09 && weights[&1] < 1e-4, "{weights:?}");
}
