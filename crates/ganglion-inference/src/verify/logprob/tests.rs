use super::*;

const VOCAB: usize = 100;
const EOS: u32 = 99;

/// A score of `token` under a distribution over VOCAB tokens given as `(id, prob)` for the
/// likely ones; the remaining mass is spread evenly over the rest.
fn score(dist: &[(u32, f64)], token: u32, k: usize) -> TokenScore {
    let named: f64 = dist.iter().map(|d| d.1).sum();
    let rest = (1.0 - named).max(0.0) / (VOCAB - dist.len()) as f64;
    let mut all: Vec<(u32, f64)> = (0..VOCAB as u32).map(|id| (id, dist.iter().find(|d| d.0 == id).map_or(rest, |d| d.1))).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let rank = all.iter().position(|e| e.0 == token).unwrap() as u32 + 1;
    let p = all[rank as usize - 1].1;
    TokenScore { token, logprob: p.ln() as f32, rank, top: all.iter().take(k).map(|&(id, p)| (id, p.ln() as f32)).collect() }
}

fn sampling(temperature: f64, top_p: f64) -> Sampling {
    Sampling { temperature, top_p, max_tokens: 64, seed: Some(1) }
}

fn run(tokens: &[u32], scores: &[TokenScore], appended_end: bool, s: &Sampling, reported: Option<&[Option<f64>]>) -> (LogprobStats, Result<(), Failure>) {
    let none = vec![None; tokens.len()];
    let input = LogprobInput {
        tokens,
        reported: reported.unwrap_or(&none),
        scores,
        appended_end,
        sampling: s,
        end_tokens: &[EOS],
        vocab: VOCAB,
    };
    judge(&input, &LogprobConfig::default())
}

fn cause(r: &(LogprobStats, Result<(), Failure>)) -> Option<Cause> {
    r.1.as_ref().err().map(|f| f.cause)
}

/// A peaked distribution: token `best` 0.7, next 0.2, then 0.05.
fn peaked(best: u32) -> Vec<(u32, f64)> {
    vec![(best, 0.7), ((best + 1) % 98, 0.2), ((best + 2) % 98, 0.05)]
}

#[test]
fn honest_greedy_and_sampled_streams_pass() {
    let tokens: Vec<u32> = (0..30).map(|i| i % 50).collect();
    let scores: Vec<TokenScore> = tokens.iter().map(|&t| score(&peaked(t), t, 20)).collect();
    assert_eq!(cause(&run(&tokens, &scores, false, &sampling(0.0, 1.0), None)), None);
    // At T = 1 an honest sampler picks the second token ~20% of the time.
    let mixed: Vec<u32> = tokens.iter().enumerate().map(|(i, &t)| if i % 5 == 0 { (t + 1) % 98 } else { t }).collect();
    let scores: Vec<TokenScore> = tokens.iter().zip(&mixed).map(|(&best, &t)| score(&peaked(best), t, 20)).collect();
    let r = run(&mixed, &scores, false, &sampling(1.0, 0.95), None);
    assert_eq!(cause(&r), None, "{:?}", r);
    assert_eq!(r.0.not_first, 6);
    assert!((r.0.expected_not_first - 30.0 * 0.3).abs() < 1.0, "{}", r.0.expected_not_first);
}

#[test]
fn greedy_violations_are_named() {
    let s = sampling(0.0, 1.0);
    let r = run(&[5], &[score(&peaked(3), 5, 20)], false, &s, None);
    assert_eq!(cause(&r), Some(Cause::UnlikelyToken));
    // The argmax was the end token: the miner skipped it.
    let r = run(&[5], &[score(&[(EOS, 0.8), (5, 0.1)], 5, 20)], false, &s, None);
    assert_eq!(cause(&r), Some(Cause::SkippedEos));
    // A near-tie within the tolerance is fine (cross-backend numerics).
    let r = run(&[5], &[score(&[(3, 0.401), (5, 0.400)], 5, 20)], false, &s, None);
    assert_eq!(cause(&r), None);
}

#[test]
fn tokens_outside_the_nucleus_are_impossible() {
    // top_p 0.8 at T = 1: tokens 10 (0.7) and 11 (0.2) make the nucleus; 12 (0.05) is out.
    let dist = vec![(10, 0.7), (11, 0.2), (12, 0.05)];
    let s = sampling(1.0, 0.8);
    assert_eq!(cause(&run(&[11], &[score(&dist, 11, 20)], false, &s, None)), None);
    assert_eq!(cause(&run(&[12], &[score(&dist, 12, 20)], false, &s, None)), Some(Cause::UnlikelyToken));
    // Lower temperature sharpens: at T = 0.5, 11 is out too (0.7² / (0.7² + 0.2² + …) > 0.8).
    assert_eq!(cause(&run(&[11], &[score(&dist, 11, 20)], false, &sampling(0.5, 0.8), None)), Some(Cause::UnlikelyToken));
    // A token not even in the top-k.
    assert_eq!(cause(&run(&[50], &[score(&dist, 50, 3)], false, &s, None)), Some(Cause::UnlikelyToken));
    // Excluded while an end token ranked above: skipped EOS.
    let dist = vec![(EOS, 0.9), (11, 0.05)];
    assert_eq!(cause(&run(&[11], &[score(&dist, 11, 20)], false, &sampling(0.7, 0.9), None)), Some(Cause::SkippedEos));
}

#[test]
fn uniform_random_tokens_fail_the_statistics() {
    // Random tokens under a peaked model: each is plausible-ish at T = 1, top_p = 1, but
    // far too many are not the argmax and many are low.
    let tokens: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % 97).collect();
    let scores: Vec<TokenScore> = tokens.iter().map(|&t| score(&[(t.wrapping_add(1) % 97, 0.9)], t, 20)).collect();
    let r = run(&tokens, &scores, false, &sampling(1.0, 1.0), None);
    assert_eq!(cause(&r), Some(Cause::UnlikelyTokens), "{r:?}");
    // v5's hard floor on a single token.
    let mut low = score(&peaked(1), 2, 20);
    low.logprob = -14.0;
    assert_eq!(cause(&run(&[2], &[low], false, &sampling(0.8, 1.0), None)), Some(Cause::UnlikelyToken));
}

#[test]
fn going_on_past_likely_ends_is_skipped_eos() {
    // Ten positions where the end token has 0.65 and the miner continued each time:
    // 0.35^10 ≈ 3e-5 < 1e-4.
    let tokens: Vec<u32> = (0..10).collect();
    let scores: Vec<TokenScore> = tokens.iter().map(|&t| score(&[(EOS, 0.65), (t, 0.3)], t, 20)).collect();
    let r = run(&tokens, &scores, false, &sampling(1.0, 1.0), None);
    assert_eq!(cause(&r), Some(Cause::SkippedEos), "{r:?}");
    // Two such positions are normal sampling luck.
    let r = run(&tokens[..2], &scores[..2], false, &sampling(1.0, 1.0), None);
    assert_eq!(cause(&r), None);
}

#[test]
fn stopping_where_the_model_would_not_is_early_end() {
    let tokens = [1u32, 2];
    let mut scores: Vec<TokenScore> = tokens.iter().map(|&t| score(&peaked(t), t, 20)).collect();
    // End token far down the list at the stop position.
    scores.push(score(&[(7, 0.9)], EOS, 5));
    assert_eq!(cause(&run(&tokens, &scores, true, &sampling(0.7, 0.95), None)), Some(Cause::EarlyEnd));
    // At T = 0 the end must be the argmax.
    let mut greedy: Vec<TokenScore> = tokens.iter().map(|&t| score(&peaked(t), t, 20)).collect();
    greedy.push(score(&[(7, 0.6), (EOS, 0.3)], EOS, 20));
    assert_eq!(cause(&run(&tokens, &greedy, true, &sampling(0.0, 1.0), None)), Some(Cause::EarlyEnd));
    // A plausible stop passes.
    let mut fine: Vec<TokenScore> = tokens.iter().map(|&t| score(&peaked(t), t, 20)).collect();
    fine.push(score(&[(EOS, 0.6), (7, 0.3)], EOS, 20));
    assert_eq!(cause(&run(&tokens, &fine, true, &sampling(0.7, 0.95), None)), None);
    // An end token the miner did emit, where the model would not end, is an early end too.
    let s = vec![score(&peaked(1), 1, 20), score(&[(4, 0.95)], EOS, 20)];
    assert_eq!(cause(&run(&[1, EOS], &s, false, &sampling(0.5, 0.9), None)), Some(Cause::EarlyEnd));
}

#[test]
fn reported_logprobs_must_agree_on_average() {
    let tokens: Vec<u32> = (0..10).collect();
    let scores: Vec<TokenScore> = tokens.iter().map(|&t| score(&peaked(t), t, 20)).collect();
    let honest: Vec<Option<f64>> = scores.iter().map(|s| Some(f64::from(s.logprob))).collect();
    let r = run(&tokens, &scores, false, &sampling(1.0, 0.99), Some(&honest));
    assert_eq!(cause(&r), None);
    assert_eq!(r.0.average, Some(1.0));
    // A cheaper model claiming certainty everywhere: |1 − 0.7| → 0.7 < 0.75.
    let certain = vec![Some(0.0); 10];
    let r = run(&tokens, &scores, false, &sampling(1.0, 0.99), Some(&certain));
    assert_eq!(cause(&r), Some(Cause::LowAverage), "{r:?}");
    // Tempered reports (T = 0.5) are accepted too.
    let tempered: Vec<Option<f64>> = vec![Some((0.49f64 / (0.49 + 0.04 + 0.0025 + 97.0 * 0.0005f64.powi(2))).ln()); 10];
    let r = run(&tokens, &scores, false, &sampling(0.5, 0.99), Some(&tempered));
    assert_eq!(cause(&r), None, "{r:?}");
}

#[test]
fn score_count_mismatch_is_reported_not_panicked() {
    let r = run(&[1, 2, 3], &[score(&peaked(1), 1, 20)], false, &sampling(1.0, 1.0), None);
    assert_eq!(cause(&r), Some(Cause::Malformed));
}
