//! End-to-end tests against the real SmolLM2-135M-Instruct GGUF (pulled with
//! `ganglion model pull smollm2`): tokenizer fixture, chat template, determinism across runs
//! and thread counts, and teacher-forced scoring.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::ops::ControlFlow;
use std::sync::OnceLock;

use ganglion_engine::engine::{FinishReason, GenerateRequest};
use ganglion_engine::sampling::SamplingParams;
use ganglion_engine::tokenizer::ChatMessage;
use ganglion_engine::Engine;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::load(&common::smollm2_path()).unwrap())
}

#[test]
fn tokenizer_matches_hugging_face_fixture() {
    let raw = include_str!("../fixtures/smollm2_tokenizer.json");
    let doc: serde_json::Value = serde_json::from_str(raw).unwrap();
    let tok = engine().tokenizer();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text);
        if got != want {
            failures.push(format!("{text:?}\n  want {want:?}\n  got  {got:?}"));
        }
        // SmolLM2 has no byte-level token for a few control bytes; those are dropped.
        if !text.bytes().any(|b| matches!(b, 0x04 | 0x06 | 0x13 | 0x14 | 0x16 | 0x1d)) {
            assert_eq!(tok.decode(&got, false), text, "decode must round-trip");
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn chat_template_is_the_models_chatml() {
    let tok = engine().tokenizer();
    let msgs = [ChatMessage { role: "user".into(), content: "Hi".into() }];
    let text = tok.apply_chat_template(&msgs, true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = tok.encode(&text);
    assert_eq!(ids[0], tok.token_id("<|im_start|>").unwrap());
}

fn chat_request(question: &str, seed: u64, temperature: f32, max_tokens: usize) -> GenerateRequest {
    let msgs = [ChatMessage { role: "user".into(), content: question.into() }];
    GenerateRequest {
        ignore_eos: false,
        prompt: engine().tokenizer().encode_chat(&msgs, true).unwrap(),
        max_tokens,
        sampling: SamplingParams { temperature, seed, top_p: 0.95, ..Default::default() },
        stop: Vec::new(),
        top_logprobs: 2,
        prompt_logprobs: None,
    }
}

fn generate_text(req: GenerateRequest) -> (String, FinishReason, Vec<u32>) {
    let mut ids = Vec::new();
    let (text, finish, _) = engine()
        .generate(req, |s| {
            ids.extend(s.tokens.iter().map(|t| t.score.token));
            ControlFlow::Continue(())
        })
        .unwrap();
    (text, finish, ids)
}

#[test]
fn greedy_continuation_is_sensible_and_is_the_argmax() {
    let tok = engine().tokenizer();
    let prompt = tok.encode("The capital of France is");
    let req = GenerateRequest {
        ignore_eos: false,
        prompt: prompt.clone(),
        max_tokens: 6,
        sampling: SamplingParams { temperature: 0.0, ..Default::default() },
        stop: Vec::new(),
        top_logprobs: 1,
        prompt_logprobs: None,
    };
    let (text, finish, ids) = generate_text(req);
    assert!(text.contains("Paris"), "{text}");
    assert_eq!(finish, FinishReason::Length);
    // Greedy tokens are the argmax, so teacher-forced scoring must rank each of them first.
    let report = engine().score(&prompt, &[ids], 3).unwrap();
    for t in &report.completions[0].tokens {
        assert_eq!(t.rank, 1, "{t:?}");
        assert_eq!(t.top[0].0, t.token);
    }
}

#[test]
fn chat_generation_stops_at_end_of_turn() {
    let (text, finish, ids) = generate_text(chat_request("Say hello.", 0, 0.0, 96));
    assert_eq!(finish, FinishReason::Stop, "{text}");
    assert!(!text.is_empty() && !text.contains("<|im_end|>"), "{text}");
    assert_eq!(ids.last().copied(), engine().tokenizer().eos_token());

    // `ignore_eos`: the same tokens up to the end of turn, which is generated and passed,
    // then on to `max_tokens`.
    let (_, finish, through) = generate_text(GenerateRequest { ignore_eos: true, ..chat_request("Say hello.", 0, 0.0, ids.len() + 8) });
    assert_eq!(finish, FinishReason::Length);
    assert_eq!(through.len(), ids.len() + 8);
    assert_eq!(through[..ids.len()], ids[..]);
}

/// Seeded sampling: prints the text for the cross-thread-count check when run as a helper.
#[test]
fn seeded_sampling_is_reproducible() {
    let req = chat_request("Write a short poem about rivers.", 1234, 0.9, 24);
    let (a, _, ids_a) = generate_text(req.clone());
    let (b, _, ids_b) = generate_text(req);
    assert_eq!(ids_a, ids_b);
    assert_eq!(a, b);
    let (c, _, _) = generate_text(chat_request("Write a short poem about rivers.", 99, 0.9, 24));
    assert_ne!(a, c, "different seeds should give different samples");
    if std::env::var_os("GANGLION_ENGINE_PRINT_SAMPLE").is_some() {
        println!("SAMPLE:{}", serde_json::to_string(&ids_a).unwrap());
    }
}

#[test]
fn seeded_text_is_identical_with_one_and_two_threads() {
    let exe = std::env::current_exe().unwrap();
    let run = |threads: &str| {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "smollm2::seeded_sampling_is_reproducible", "--nocapture", "--test-threads=1"])
            .env("RAYON_NUM_THREADS", threads)
            .env("GANGLION_ENGINE_PRINT_SAMPLE", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "helper failed with {threads} threads:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout.lines().find_map(|l| l.split_once("SAMPLE:").map(|(_, s)| s.trim().to_string())).unwrap()
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn scoring_prefers_natural_text_and_reuses_the_prefix_exactly_enough() {
    let tok = engine().tokenizer();
    let prompt = tok.encode("The capital of France is");
    let good = tok.encode(" Paris, a city on the Seine.");
    let bad = tok.encode(" purple elephant seven seven banana.");
    let report = engine().score(&prompt, &[good.clone(), bad.clone()], 5).unwrap();
    let (g, b) = (&report.completions[0], &report.completions[1]);
    assert!(g.total_logprob() / good.len() as f64 > b.total_logprob() / bad.len() as f64 + 1.0);
    let full: Vec<u32> = prompt.iter().chain(&good).copied().collect();
    let direct = engine().score_sequence(&full, 5).unwrap();
    for (a, d) in g.tokens.iter().zip(&direct[prompt.len() - 1..]) {
        assert_eq!(a.token, d.token);
        assert!((a.logprob - d.logprob).abs() < 1e-3, "{a:?} vs {d:?}");
    }
    let nll = -g.total_logprob() / good.len() as f64;
    assert!(nll < 4.0, "mean NLL {nll} is too high for a natural continuation");
}
