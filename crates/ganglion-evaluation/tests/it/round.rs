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
use ganglion_evaluation::loss::{Sample, mean_loss_from, pack_documents};
use ganglion_evaluation::round::{Candidate, Competition, Task, evaluate, select_candidates};
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
                ignore_eos: false,
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
    let out = evaluate(&comp, None, &candidates, &samples, 100, &|| false);
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

/// The pretraining-style text task: the samples' responses are documents packed with one EOS
/// each into rows of the sequence length, one loss per row, each the mean shifted
/// cross-entropy of the row (the same number as a direct `mean_loss_from` on the row); the
/// win goes to the lower loss after the earlier commit's epsilon. With the degeneracy check
/// on, a model is either scored the same or rejected with the check's cause, never both.
#[test]
fn the_text_task_scores_packed_documents() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    ganglion_engine::model::write_random_llama_gguf(&a, 31).unwrap();
    ganglion_engine::model::write_random_llama_gguf(&b, 32).unwrap();
    let samples: Vec<Sample> = [
        "the cat sat on the mat and looked at the garden for a long while",
        "a colour is what the eye sees when light of some wavelengths comes back",
        "hello there, said the keeper of the lighthouse, the tide is late tonight",
    ]
    .iter()
    .map(|text| Sample { prompt: "unused by the text task".into(), response: (*text).into() })
    .collect();
    let h = |p: &std::path::Path| hash_file(p, u64::MAX).unwrap();
    let candidates = vec![Candidate { uid: 1, block: 10, hash: h(&b), model: b.clone() }, Candidate { uid: 2, block: 20, hash: h(&a), model: a.clone() }];
    let mut comp = Competition::default_schedule().remove(0);
    comp.sequence_length = 48;
    comp.task = Task::Text { degeneracy_check: false };
    let out = evaluate(&comp, None, &candidates, &samples, 100, &|| false);
    let documents: Vec<String> = samples.iter().map(|s| s.response.clone()).collect();
    for c in &candidates {
        let engine = Engine::load(&c.model).unwrap();
        let rows = pack_documents(engine.tokenizer(), &documents, comp.sequence_length);
        assert!(rows.len() >= 2 && rows.iter().all(|r| r.len() == 48), "{rows:?}");
        let want: Vec<f64> = rows.iter().map(|r| mean_loss_from(&engine, r, 1).unwrap()).collect();
        assert_eq!(out.losses[&c.uid], want, "uid {}", c.uid);
    }
    assert_eq!(out.scored_samples, 2 * out.losses[&1].len());
    // uid 1 committed first: its loss counts at 0.99 against uid 2's.
    let (l1, l2) = (out.mean_loss(1).unwrap(), out.mean_loss(2).unwrap());
    let first_wins = out.losses[&1].iter().zip(&out.losses[&2]).filter(|(x, y)| **x * 0.99 < **y).count();
    assert_eq!(out.wins[&1].wins as usize, first_wins, "{l1} vs {l2}: {out:?}");
    assert_eq!(out.wins[&1].matches as usize, out.losses[&1].len());

    comp.task = Task::Text { degeneracy_check: true };
    let checked = evaluate(&comp, None, &candidates, &samples, 100, &|| false);
    for uid in [1, 2] {
        match checked.rejected.get(&uid) {
            Some(why) => assert!(why.starts_with("degenerate") && !checked.losses.contains_key(&uid), "{why}"),
            None => assert_eq!(checked.losses[&uid], out.losses[&uid]),
        }
    }
    // The task is read from the competitions file (serde); without it a competition is the chat task.
    let mut file = serde_json::json!({
        "id": "p1", "share": 1.0, "sequence_length": 1024, "temperature": 0.01,
        "epsilon": {"kind": "fixed", "epsilon": 0.005},
        "limits": {"max_bytes": 1_000_000, "architectures": ["llama"], "max_parameters": 1_000_000, "min_parameters": 0, "norms": null},
    });
    assert_eq!(serde_json::from_value::<Competition>(file.clone()).unwrap().task, Task::Chat);
    file["task"] = serde_json::json!({"kind": "text", "degeneracy_check": true});
    assert_eq!(serde_json::from_value::<Competition>(file).unwrap().task, Task::Text { degeneracy_check: true });
}

/// A competition's own tokenizer and chat template render every model's samples: with the
/// model's own files it changes nothing; with another template the losses are exactly those
/// of samples rendered by it; a tokenizer with more tokens than a model outputs rejects the
/// model with that cause; an unreadable one is an error when the competition is loaded.
#[test]
fn a_competition_tokenizer_renders_every_models_samples() {
    use ganglion_evaluation::loss::chat_losses;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gguf");
    ganglion_engine::model::write_random_llama_gguf(&a, 41).unwrap();
    let samples: Vec<Sample> = ["what is a cat", "name a colour", "say hi"]
        .iter()
        .map(|p| Sample { prompt: (*p).into(), response: format!("an answer to {p}, at some length") })
        .collect();
    let candidates = vec![Candidate { uid: 1, block: 10, hash: hash_file(&a, u64::MAX).unwrap(), model: a.clone() }];
    let mut comp = Competition::default_schedule().remove(0);
    comp.sequence_length = 256;
    let own = evaluate(&comp, None, &candidates, &samples, 100, &|| false);

    comp.tokenizer = Some(a.display().to_string());
    let same = comp.load_tokenizer().unwrap().unwrap();
    assert_eq!(evaluate(&comp, Some(&same), &candidates, &samples, 100, &|| false).losses, own.losses);

    // The same vocabulary with a bare template: other text, so other losses, and exactly the
    // ones its rendering gives.
    let hf = dir.path().join("a-hf");
    ganglion_engine::hf_model::export_gguf(&a, &hf, ganglion_engine::hf_model::ExportDType::F32).unwrap();
    let config = hf.join("tokenizer_config.json");
    let mut tc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    tc["chat_template"] = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}".into();
    std::fs::write(&config, tc.to_string()).unwrap();
    comp.tokenizer = Some(hf.join("tokenizer.json").display().to_string());
    let bare = comp.load_tokenizer().unwrap().unwrap();
    let out = evaluate(&comp, Some(&bare), &candidates, &samples, 100, &|| false);
    let engine = Engine::load(&a).unwrap();
    let want: Vec<f64> = chat_losses(&engine, &bare, &samples, 256).into_iter().map(|l| l.unwrap()).collect();
    assert_eq!(out.losses[&1], want);
    assert_ne!(out.losses[&1], own.losses[&1]);

    // SmolLM2's tokenizer (49,152 tokens) on a 265-token model.
    if let Some(smollm2) = crate::smollm2() {
        comp.tokenizer = Some(smollm2.display().to_string());
        let big = comp.load_tokenizer().unwrap().unwrap();
        let out = evaluate(&comp, Some(&big), &candidates, &samples, 100, &|| false);
        assert!(out.losses.is_empty(), "{out:?}");
        assert!(out.rejected[&1].contains("tokenizer has 49152 tokens but the model outputs 265"), "{:?}", out.rejected);
    }

    comp.tokenizer = Some(dir.path().join("missing.gguf").display().to_string());
    assert!(comp.load_tokenizer().unwrap_err().contains("missing.gguf"));
}

/// A step evaluates the kept leaders first, then models not settled (new in their commitment
/// or worth a retry), earliest commit first, up to the cap; a copy is caught by hash even when
/// its original is not evaluated this step.
#[test]
fn a_step_evaluates_the_kept_and_the_new_and_catches_copies() {
    let c = |uid: u16, block: u64, hash: &str| Candidate { uid, block, hash: hash.into(), model: format!("m{uid}.gguf").into() };
    let ready = vec![c(1, 10, "h1"), c(2, 20, "h2"), c(3, 30, "h1"), c(4, 5, "h4"), c(5, 40, "h5")];
    let settled = |uid: u16| uid == 1 || uid == 2;
    let uids = |v: &[Candidate]| v.iter().map(|c| c.uid).collect::<Vec<_>>();
    let (selected, copies) = select_candidates(&ready, &[2], &settled, 25);
    assert_eq!((uids(&selected), copies.clone()), (vec![2, 4, 5], vec![3]));
    let (selected, _) = select_candidates(&ready, &[2], &settled, 2);
    assert_eq!(uids(&selected), vec![2, 4]);
    // Nothing kept and nothing new: an idle step.
    let (selected, copies) = select_candidates(&ready[..2], &[], &settled, 25);
    assert!(selected.is_empty() && copies.is_empty());
}
