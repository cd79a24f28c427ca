use std::collections::HashSet;

use ganglion_engine::distribution::{self, Family, Order, Processing};
use ganglion_engine::engine::{logits_to_logprobs, score_row};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const VOCAB: usize = 100;
const EOS: u32 = 99;

/// A synthetic model: a peaked, position-dependent row of logits over VOCAB tokens, with
/// the end token's logit `eos` (low by default).
fn logits(position: usize, eos: f32) -> Vec<f32> {
    let mut row: Vec<f32> = (0..VOCAB).map(|i| (((i * 37 + position * 11) % VOCAB) as f32 / 14.0).powi(2) / 4.0).collect();
    row[EOS as usize] = eos;
    row
}

fn sampling(temperature: f64, top_p: f64, top_k: u32, repetition_penalty: f64) -> Sampling {
    Sampling { temperature, top_p, top_k, repetition_penalty, max_tokens: 64, seed: Some(1) }
}

/// Scores and placements of `tokens` (the last one an appended end if `appended`).
fn place(tokens: &[u32], s: &Sampling, eos: f32) -> (Vec<TokenScore>, Vec<Vec<Placement>>) {
    let processing = s.processing();
    let mut scores = Vec::new();
    let mut placements = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let row = logits(i, eos);
        scores.push(score_row(&logits_to_logprobs(&row), t, 20));
        placements.push(
            Family::ALL
                .iter()
                .map(|f| distribution::evaluate(&row, &f.penalized(&[], &tokens[..i]), t, &processing, *f, 0.3, &[EOS]))
                .collect(),
        );
    }
    (scores, placements)
}

fn judge_tokens(tokens: &[u32], s: &Sampling, appended_end: bool, reported: Option<&[Option<f64>]>, eos: f32) -> (LogprobStats, Result<(), Failure>) {
    let (scores, placements) = place(tokens, s, eos);
    let n = tokens.len() - usize::from(appended_end);
    let none = vec![None; n];
    let input = LogprobInput {
        tokens: &tokens[..n],
        reported: reported.unwrap_or(&none),
        scores: &scores,
        placements: &placements,
        appended_end,
        sampling: s,
        end_tokens: &[EOS],
        lenient: false,
        noise_seed: 7,
    };
    judge(&input, &LogprobConfig::default())
}

fn cause(r: &(LogprobStats, Result<(), Failure>)) -> Option<Cause> {
    r.1.as_ref().err().map(|f| f.cause)
}

/// Draws `n` tokens from the synthetic model as a sampler of `family` would.
fn draw(rng: &mut StdRng, s: &Sampling, family: Family, n: usize, eos: f32) -> Vec<u32> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut row = logits(i, eos);
        distribution::penalize(&mut row, family.penalized(&[], &out), s.repetition_penalty as f32);
        let t = if s.temperature <= 0.0 {
            distribution::argmax(&row)
        } else {
            let support = distribution::process(&row, &s.processing(), family.order).support;
            let mut u = rand::Rng::r#gen::<f64>(rng);
            let mut pick = support[0].0;
            for &(id, q) in &support {
                pick = id;
                if u < q {
                    break;
                }
                u -= q;
            }
            pick
        };
        out.push(t);
        if t == EOS {
            break;
        }
    }
    out
}

#[test]
fn fair_draws_pass_for_every_family_and_setting() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut failed = Vec::new();
    let mut judged = 0;
    for family in Family::ALL {
        for s in [
            sampling(0.0, 1.0, 0, 1.0),
            sampling(0.99, 0.99, 0, 1.0),
            sampling(0.5, 0.9, 0, 1.0),
            sampling(1.0, 0.85, 40, 1.0),
            sampling(0.8, 0.95, 20, 1.15),
            sampling(0.3, 0.99, 0, 1.1),
        ] {
            for _ in 0..40 {
                let tokens = draw(&mut rng, &s, family, 48, -5.0);
                let appended = tokens.last() == Some(&EOS);
                let r = judge_tokens(&tokens, &s, appended, None, -5.0);
                judged += 1;
                if r.1.is_err() {
                    failed.push((family.name, s, r.1.clone()));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{} of {judged} fair draws failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
}

#[test]
fn greedy_violations_are_named() {
    let s = sampling(0.0, 1.0, 0, 1.0);
    let mut tokens: Vec<u32> = (0..10).map(|i| distribution::argmax(&logits(i, -5.0))).collect();
    assert_eq!(cause(&judge_tokens(&tokens, &s, false, None, -5.0)), None);
    // The argmax's runner-up at position 3 is far below it in this model.
    let row = logits(3, -5.0);
    let mut sorted: Vec<u32> = (0..VOCAB as u32).collect();
    sorted.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    tokens[3] = sorted[5];
    let r = judge_tokens(&tokens, &s, false, None, -5.0);
    assert_eq!(cause(&r), Some(Cause::UnlikelyToken), "{r:?}");
    assert!(r.1.as_ref().err().is_some_and(|f| f.detail.contains("position 3")));
}

#[test]
fn tokens_outside_the_nucleus_are_impossible_for_every_family() {
    let s = sampling(0.7, 0.85, 0, 1.0);
    let row = logits(0, -5.0);
    let mut sorted: Vec<u32> = (0..VOCAB as u32).collect();
    sorted.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    let r = judge_tokens(&[sorted[60]], &s, false, None, -5.0);
    assert_eq!(cause(&r), Some(Cause::UnlikelyToken), "{r:?}");
    assert_eq!(r.0.families.len(), Family::ALL.len());
    assert!(r.0.families.iter().all(|f| f.outside == 1 && !f.passed));
}

#[test]
fn a_replayed_greedy_answer_is_too_predictable_at_high_temperature() {
    // What a miner replaying a cached greedy answer for a T = 1 request sends.
    let tokens: Vec<u32> = (0..64).map(|i| distribution::argmax(&logits(i, -5.0))).collect();
    let r = judge_tokens(&tokens, &sampling(1.0, 0.99, 0, 1.0), false, None, -5.0);
    assert_eq!(cause(&r), Some(Cause::UnlikelyTokens), "{r:?}");
    assert!(r.1.as_ref().err().is_some_and(|f| f.detail.contains("too predictable")), "{r:?}");
}

#[test]
fn another_models_draws_are_too_surprising() {
    // Draws from a flatter model (T = 1.6) judged as T = 0.7: inside the support (no top_p),
    // but ranked far too low.
    let mut rng = StdRng::seed_from_u64(5);
    let tokens = draw(&mut rng, &sampling(1.6, 1.0, 0, 1.0), Family::VLLM, 64, -30.0);
    let r = judge_tokens(&tokens, &sampling(0.7, 1.0, 0, 1.0), false, None, -30.0);
    assert_eq!(cause(&r), Some(Cause::UnlikelyTokens), "{r:?}");
    assert!(r.1.as_ref().err().is_some_and(|f| f.detail.contains("too unlikely")), "{r:?}");
}

#[test]
fn going_on_past_likely_ends_is_skipped_eos() {
    // The end token carries half the mass at every position; a fair sampler would have
    // stopped within a few tokens, the miner went on for 40.
    let eos = logits(0, 0.0).iter().copied().fold(f32::MIN, f32::max) + 1.0;
    let mut rng = StdRng::seed_from_u64(9);
    let s = sampling(1.0, 1.0, 0, 1.0);
    let mut tokens = Vec::new();
    while tokens.len() < 40 {
        let t = draw(&mut rng, &s, Family::VLLM, 1, -30.0)[0];
        tokens.push(t);
    }
    let r = judge_tokens(&tokens, &s, false, None, eos);
    assert_eq!(cause(&r), Some(Cause::SkippedEos), "{r:?}");
}

#[test]
fn stopping_where_the_model_would_not_is_early_end() {
    let s = sampling(0.7, 0.9, 0, 1.0);
    let tokens: Vec<u32> = (0..5).map(|i| distribution::argmax(&logits(i, -30.0))).chain([EOS]).collect();
    let r = judge_tokens(&tokens, &s, true, None, -30.0);
    assert_eq!(cause(&r), Some(Cause::EarlyEnd), "{r:?}");
    // Where the end token is likely, stopping is fine.
    let r = judge_tokens(&tokens, &s, true, None, 10.0);
    assert_ne!(cause(&r), Some(Cause::EarlyEnd), "{r:?}");
}

#[test]
fn reported_logprobs_must_agree_on_average() {
    // Greedy-looking tokens at T = 0.7 are too predictable over many tokens, but 12 are few.
    let s = sampling(0.7, 1.0, 0, 1.0);
    let tokens: Vec<u32> = (0..12).map(|i| distribution::argmax(&logits(i, -5.0))).collect();
    let (scores, _) = place(&tokens, &s, -5.0);
    let honest: Vec<Option<f64>> = scores.iter().map(|sc| Some(f64::from(sc.logprob))).collect();
    assert_eq!(cause(&judge_tokens(&tokens, &s, false, Some(&honest), -5.0)), None);
    // Claiming certainty for every token (what a cheaper model copying ids would report).
    let lies: Vec<Option<f64>> = scores.iter().map(|_| Some(0.0)).collect();
    assert_eq!(cause(&judge_tokens(&tokens, &s, false, Some(&lies), -5.0)), Some(Cause::LowAverage));
}

#[test]
fn the_penalty_window_decides_between_families() {
    // A token the vLLM family penalises (it was in the prompt) but llama.cpp does not.
    let row = logits(0, -5.0);
    let best = distribution::argmax(&row);
    let p = Processing { temperature: 0.0, top_p: 1.0, top_k: 0, repetition_penalty: 2.0 };
    let prompt_has_best: HashSet<u32> = Family::VLLM.penalized(&[best], &[]);
    let vllm = distribution::evaluate(&row, &prompt_has_best, best, &p, Family::VLLM, 0.0, &[]);
    let llama = distribution::evaluate(&row, &Family::LLAMA_CPP.penalized(&[best], &[]), best, &p, Family::LLAMA_CPP, 0.0, &[]);
    assert!(!vllm.in_support && llama.in_support);
    let _ = Order::TemperatureLast;
}

#[test]
fn score_count_mismatch_is_reported_not_panicked() {
    let s = sampling(0.5, 0.9, 0, 1.0);
    let (scores, placements) = place(&[1, 2, 3], &s, -5.0);
    let input = LogprobInput {
        tokens: &[1, 2, 3, 4],
        reported: &[None; 4],
        scores: &scores,
        placements: &placements,
        appended_end: false,
        sampling: &s,
        end_tokens: &[EOS],
        lenient: false,
        noise_seed: 0,
    };
    assert_eq!(judge(&input, &LogprobConfig::default()).1.err().map(|f| f.cause), Some(Cause::Malformed));
}
