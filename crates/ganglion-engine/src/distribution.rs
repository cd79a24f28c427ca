//! The processed sampling distribution: what a sampler actually draws from after repetition
//! penalty, temperature, top-k and top-p — the one implementation both this engine's
//! [`Sampler`](crate::sampling::Sampler) and validators' verification use.
//!
//! Servers differ in the order of those steps, and a validator does not know which server a
//! miner runs, so the order is a parameter ([`Family`]):
//! - [`Family::VLLM`] — vLLM, Hugging Face `transformers` and this engine: the penalty over
//!   every distinct prompt and generated token, then temperature, then top-k, then top-p on
//!   the tempered distribution.
//! - [`Family::LLAMA_CPP`] — llama.cpp's sampler chain as `llama-cpp-python` builds it
//!   (`_init_sampler`: penalties over the last 64 *sampled* tokens, top-k, typical (off),
//!   top-p and min-p on the *untempered* distribution, temperature last).
//!
//! For verification, [`evaluate`] places one observed token in a family's processed
//! distribution: its probability `q`, the mass ranked above it (for the randomized
//! probability integral transform), whether it is in the support at all — and whether it
//! would be with its logit raised by a margin, so that a backend whose kernels round
//! differently (another quantisation kernel, another batch shape) is not accused for a
//! token sitting on the nucleus boundary — and the mean and variance of the clipped
//! log-probability of a fair draw. With those, a fair draw gives `u ~ U(0, 1)` and a
//! log-likelihood with known mean and variance at every position, whatever the model:
//! the verifier's tests rest on that, not on fixed thresholds.

use std::collections::HashSet;

/// Order of a server's sampling steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Temperature first, then top-k and top-p on the tempered distribution.
    TemperatureFirst,
    /// Top-k and top-p on the raw distribution, temperature last (llama.cpp).
    TemperatureLast,
}

/// Which tokens the repetition penalty applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyWindow {
    /// Every distinct prompt and generated token.
    PromptAndGenerated,
    /// The last `n` generated tokens only (llama.cpp's `penalty_last_n`; prompt tokens are
    /// never fed to its sampler by `llama-cpp-python`).
    LastGenerated(usize),
}

/// A server family's sampler (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Its name in verdicts.
    pub name: &'static str,
    /// Step order.
    pub order: Order,
    /// Penalty window.
    pub penalty: PenaltyWindow,
}

impl Family {
    /// vLLM, `transformers` and this engine.
    pub const VLLM: Family = Family { name: "vllm", order: Order::TemperatureFirst, penalty: PenaltyWindow::PromptAndGenerated };
    /// llama.cpp through `llama-cpp-python` (`last_n_tokens_size` 64).
    pub const LLAMA_CPP: Family = Family { name: "llama.cpp", order: Order::TemperatureLast, penalty: PenaltyWindow::LastGenerated(64) };
    /// Every family a verifier considers.
    pub const ALL: [Family; 2] = [Family::VLLM, Family::LLAMA_CPP];

    /// The distinct tokens this family penalises before generated token `generated.len()`.
    pub fn penalized(&self, prompt: &[u32], generated: &[u32]) -> HashSet<u32> {
        match self.penalty {
            PenaltyWindow::PromptAndGenerated => prompt.iter().chain(generated).copied().collect(),
            PenaltyWindow::LastGenerated(n) => generated[generated.len().saturating_sub(n)..].iter().copied().collect(),
        }
    }
}

/// Sampling settings, as requested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Processing {
    /// 0 = greedy.
    pub temperature: f32,
    /// Nucleus mass; 1 disables.
    pub top_p: f32,
    /// 0 disables.
    pub top_k: usize,
    /// CTRL penalty; 1 disables.
    pub repetition_penalty: f32,
}

/// Tempered logits further than this below the best are left out of the candidate list:
/// their mass is below e⁻³⁰ each, under 10⁻⁸ in all even for a 100k vocabulary.
pub const CANDIDATE_WINDOW: f32 = 30.0;

/// Applies the CTRL repetition penalty (divide positive logits, multiply negative ones) to
/// the `penalized` tokens, once each.
pub fn penalize(logits: &mut [f32], penalized: impl IntoIterator<Item = u32>, penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = HashSet::new();
    for id in penalized {
        let Some(l) = logits.get_mut(id as usize) else { continue };
        if !seen.insert(id) {
            continue;
        }
        *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
    }
}

/// The support of a processed distribution, most likely first (ties: lower id first), with
/// probabilities summing to 1. Empty only for greedy sampling (use [`argmax`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// `(token, probability)`.
    pub support: Vec<(u32, f64)>,
}

fn sorted_candidates(values: impl Iterator<Item = (u32, f32)>, window: f32) -> Vec<(u32, f32)> {
    let values: Vec<(u32, f32)> = values.collect();
    let max = values.iter().map(|v| v.1).fold(f32::NEG_INFINITY, f32::max);
    let mut cand: Vec<(u32, f32)> = values.into_iter().filter(|c| c.1 >= max - window).collect();
    cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cand
}

fn softmax(values: &[f32], scale: f32) -> Vec<f64> {
    let max = values.first().copied().unwrap_or(0.0);
    let mut probs: Vec<f64> = values.iter().map(|&v| f64::from((v - max) * scale).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    probs
}

/// Number of leading probabilities whose running sum first reaches `top_p` (all if never).
fn nucleus_len(probs: &[f64], top_p: f32) -> usize {
    if top_p >= 1.0 {
        return probs.len();
    }
    let mut cum = 0.0;
    for (i, p) in probs.iter().enumerate() {
        cum += p;
        if cum >= f64::from(top_p) {
            return i + 1;
        }
    }
    probs.len()
}

/// The processed distribution of already penalised `logits` (temperature > 0).
pub fn process(logits: &[f32], p: &Processing, order: Order) -> Processed {
    let inv_t = 1.0 / p.temperature.max(f32::MIN_POSITIVE);
    let truncate_k = |cand: &mut Vec<(u32, f32)>| {
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
    };
    match order {
        Order::TemperatureFirst => {
            // Scaled in f32 exactly as the sampler always did, so draws stay bit-identical.
            let mut cand = sorted_candidates(logits.iter().enumerate().map(|(i, &l)| (i as u32, l * inv_t)), CANDIDATE_WINDOW);
            truncate_k(&mut cand);
            let values: Vec<f32> = cand.iter().map(|c| c.1).collect();
            let mut probs = softmax(&values, 1.0);
            let keep = nucleus_len(&probs, p.top_p);
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            Processed { support: cand.iter().zip(probs).map(|(c, q)| (c.0, q / total)).collect() }
        }
        Order::TemperatureLast => {
            // The nucleus is decided on raw probabilities; a token 30·max(T, 1) below the best
            // has raw and tempered weight under e⁻³⁰.
            let mut cand = sorted_candidates(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)), CANDIDATE_WINDOW * p.temperature.max(1.0));
            truncate_k(&mut cand);
            let raw: Vec<f32> = cand.iter().map(|c| c.1).collect();
            let keep = nucleus_len(&softmax(&raw, 1.0), p.top_p);
            cand.truncate(keep);
            let probs = softmax(&raw[..keep], inv_t);
            Processed { support: cand.iter().zip(probs).map(|(c, q)| (c.0, q)).collect() }
        }
    }
}

/// Index of the largest value; ties go to the lowest index. NaN never wins.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// Where one observed token sits in a family's processed distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The token is in the support.
    pub in_support: bool,
    /// It would be with its logit raised by the margin (always true when `in_support`).
    pub admitted: bool,
    /// Its probability (0 outside the support).
    pub q: f64,
    /// The mass ranked strictly above it (1 outside the support).
    pub above: f64,
    /// `max(ln q, −clip)` of the token.
    pub loglik: f64,
    /// Mean of `max(ln q, −clip)` for a fair draw.
    pub loglik_mean: f64,
    /// Its variance.
    pub loglik_var: f64,
    /// Greedy only: how far (raw logit) the token lies below the argmax (0 if it is it).
    pub greedy_gap: f32,
    /// The processed mass of the `ends` tokens passed to [`evaluate`] (the chance that a
    /// fair sampler would have stopped here).
    pub end_mass: f64,
}

/// The clip of the log-likelihood statistic: each position moves it by at most this. The
/// verifier's tail bound grows linearly with it (Freedman), while tokens rarer than e⁻⁶
/// add little power beyond "rare", so 6 keeps per-response tests sharp.
pub const LOGLIK_CLIP: f64 = 6.0;

/// Places `token` in the processed distribution of raw `logits` under `family`, with the
/// penalty over `penalized` (see [`Family::penalized`]) and a logit `margin` for admission;
/// `ends` are the tokens that would end generation (for [`Placement::end_mass`]).
pub fn evaluate(logits: &[f32], penalized: &HashSet<u32>, token: u32, p: &Processing, family: Family, margin: f32, ends: &[u32]) -> Placement {
    let mut l = logits.to_vec();
    penalize(&mut l, penalized.iter().copied(), p.repetition_penalty);
    let own = l.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    if p.temperature <= 0.0 {
        let best = argmax(&l);
        let gap = l.get(best as usize).copied().unwrap_or(0.0) - own;
        let exact = best == token;
        return Placement {
            in_support: exact,
            admitted: exact || gap <= margin,
            q: f64::from(u8::from(exact)),
            above: if exact { 0.0 } else { 1.0 },
            loglik: 0.0,
            loglik_mean: 0.0,
            loglik_var: 0.0,
            greedy_gap: gap.max(0.0),
            end_mass: f64::from(u8::from(ends.contains(&best))),
        };
    }
    let processed = process(&l, p, family.order);
    let (mut above, mut found) = (0.0, None);
    for &(id, q) in &processed.support {
        if id == token {
            found = Some(q);
            break;
        }
        above += q;
    }
    let (mean, var) = loglik_moments(&processed);
    let admitted = found.is_some() || admitted_with_margin(&l, own, token, p, family.order, margin);
    let q = found.unwrap_or(0.0);
    Placement {
        in_support: found.is_some(),
        admitted,
        q,
        above: if found.is_some() { above } else { 1.0 },
        loglik: clip_ln(q),
        loglik_mean: mean,
        loglik_var: var,
        greedy_gap: 0.0,
        end_mass: processed.support.iter().filter(|(id, _)| ends.contains(id)).map(|s| s.1).sum(),
    }
}

fn clip_ln(q: f64) -> f64 {
    if q > 0.0 { q.ln().max(-LOGLIK_CLIP) } else { -LOGLIK_CLIP }
}

fn loglik_moments(processed: &Processed) -> (f64, f64) {
    let mean: f64 = processed.support.iter().map(|&(_, q)| q * clip_ln(q)).sum();
    let second: f64 = processed.support.iter().map(|&(_, q)| q * clip_ln(q).powi(2)).sum();
    (mean, (second - mean * mean).max(0.0))
}

/// Whether `token` (penalised logit `own`) enters the support with its logit raised by
/// `margin`, the others unchanged. Errs on admitting: the truncation set is taken as it
/// was before the raise, which only makes the mass above the token smaller.
fn admitted_with_margin(logits: &[f32], own: f32, token: u32, p: &Processing, order: Order, margin: f32) -> bool {
    if !own.is_finite() {
        return false;
    }
    let raised = own + margin;
    let inv_t = 1.0 / p.temperature;
    // Values in the space where top-k / top-p are decided.
    let scale = match order {
        Order::TemperatureFirst => inv_t,
        Order::TemperatureLast => 1.0,
    };
    let mut others: Vec<f32> = logits.iter().enumerate().filter(|&(i, _)| i as u32 != token).map(|(_, &v)| v * scale).collect();
    let v = raised * scale;
    let higher = others.iter().filter(|&&o| o > v).count();
    if p.top_k > 0 && higher >= p.top_k {
        return false;
    }
    if p.top_p >= 1.0 {
        return true;
    }
    // Mass strictly above the raised token, among the top-k survivors.
    others.sort_unstable_by(|a, b| b.total_cmp(a));
    if p.top_k > 0 {
        others.truncate(p.top_k);
    }
    let max = others.first().copied().unwrap_or(v).max(v);
    let weight = |x: f32| f64::from(x - max).exp();
    let z: f64 = others.iter().map(|&o| weight(o)).sum::<f64>() + weight(v);
    let above: f64 = others.iter().filter(|&&o| o > v).map(|&o| weight(o)).sum();
    above / z < f64::from(p.top_p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Vec<f32> {
        vec![3.0, 2.5, 2.0, 1.0, 0.0, -1.0, -4.0, -9.0]
    }

    fn proc(t: f32, top_p: f32, top_k: usize) -> Processing {
        Processing { temperature: t, top_p, top_k, repetition_penalty: 1.0 }
    }

    #[test]
    fn support_sums_to_one_and_is_sorted() {
        for order in [Order::TemperatureFirst, Order::TemperatureLast] {
            for (t, top_p, k) in [(1.0, 1.0, 0), (0.5, 0.9, 0), (1.3, 0.8, 3), (0.7, 0.95, 5)] {
                let d = process(&row(), &proc(t, top_p, k), order);
                let total: f64 = d.support.iter().map(|s| s.1).sum();
                assert!((total - 1.0).abs() < 1e-12, "{order:?} {t} {top_p} {k}: {total}");
                assert!(d.support.windows(2).all(|w| w[0].1 >= w[1].1));
                if k > 0 {
                    assert!(d.support.len() <= k);
                }
            }
        }
    }

    #[test]
    fn orders_differ_where_they_should() {
        // top_p 0.8 at T = 0.5: tempering first sharpens, so fewer tokens reach 0.8.
        let first = process(&row(), &proc(0.5, 0.8, 0), Order::TemperatureFirst);
        let last = process(&row(), &proc(0.5, 0.8, 0), Order::TemperatureLast);
        assert!(first.support.len() < last.support.len(), "{first:?} vs {last:?}");
        // Without truncation they agree.
        let a = process(&row(), &proc(0.7, 1.0, 0), Order::TemperatureFirst);
        let b = process(&row(), &proc(0.7, 1.0, 0), Order::TemperatureLast);
        for (x, y) in a.support.iter().zip(&b.support) {
            assert_eq!(x.0, y.0);
            assert!((x.1 - y.1).abs() < 1e-6, "{x:?} {y:?}");
        }
    }

    #[test]
    fn penalty_window_by_family() {
        let prompt = [1, 2, 3];
        let generated: Vec<u32> = (100..200).collect();
        assert!(Family::VLLM.penalized(&prompt, &generated).contains(&1));
        let llama = Family::LLAMA_CPP.penalized(&prompt, &generated);
        assert!(!llama.contains(&1) && !llama.contains(&100) && llama.contains(&199) && llama.contains(&136));
        assert_eq!(llama.len(), 64);
    }

    #[test]
    fn evaluate_places_tokens_and_admits_by_margin() {
        let none = HashSet::new();
        let p = proc(1.0, 0.9, 0);
        let d = process(&row(), &p, Order::TemperatureFirst);
        let last_in = d.support.last().map(|s| s.0).unwrap_or(0);
        let first_out = last_in + 1;
        let inside = evaluate(&row(), &none, last_in, &p, Family::VLLM, 0.0, &[]);
        assert!(inside.in_support && inside.admitted && inside.q > 0.0);
        assert!((inside.above + inside.q - 1.0).abs() < 1e-12, "the last support token ends the mass");
        let outside = evaluate(&row(), &none, first_out, &p, Family::VLLM, 0.0, &[]);
        assert!(!outside.in_support && !outside.admitted && outside.q == 0.0);
        let gap = row()[last_in as usize] - row()[first_out as usize];
        let margin = evaluate(&row(), &none, first_out, &p, Family::VLLM, gap + 0.01, &[]);
        assert!(!margin.in_support && margin.admitted);
        let far = evaluate(&row(), &none, 7, &p, Family::VLLM, 0.5, &[]);
        assert!(!far.admitted);
        // Greedy: the argmax, or within the margin of it.
        let g = proc(0.0, 1.0, 0);
        assert!(evaluate(&row(), &none, 0, &g, Family::VLLM, 0.0, &[]).in_support);
        assert!(!evaluate(&row(), &none, 1, &g, Family::VLLM, 0.3, &[]).admitted);
        assert!(evaluate(&row(), &none, 1, &g, Family::VLLM, 0.6, &[]).admitted);
    }

    #[test]
    fn penalty_changes_the_placement() {
        let p = Processing { temperature: 0.0, top_p: 1.0, top_k: 0, repetition_penalty: 1.5 };
        let seen: HashSet<u32> = [0].into_iter().collect();
        // 3.0 / 1.5 = 2.0 < 2.5: token 1 becomes the argmax.
        assert!(evaluate(&row(), &seen, 1, &p, Family::VLLM, 0.0, &[]).in_support);
        assert!(!evaluate(&row(), &HashSet::new(), 1, &p, Family::VLLM, 0.0, &[]).in_support);
    }

    #[test]
    fn fair_draws_give_uniform_pit_and_centred_loglik() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let logits: Vec<f32> = (0..200).map(|i| ((i * 7919) % 97) as f32 / 12.0).collect();
        let none = HashSet::new();
        for family in Family::ALL {
            let p = proc(0.8, 0.9, 50);
            let d = process(&logits, &p, family.order);
            let (n, mut sum_u, mut sum_ll, mut var) = (20_000, 0.0, 0.0, 0.0);
            for _ in 0..n {
                let mut x = rng.r#gen::<f64>();
                let mut tok = d.support[0].0;
                for &(id, q) in &d.support {
                    tok = id;
                    if x < q {
                        break;
                    }
                    x -= q;
                }
                let e = evaluate(&logits, &none, tok, &p, family, 0.0, &[]);
                assert!(e.in_support);
                sum_u += e.above + rng.r#gen::<f64>() * e.q - 0.5;
                sum_ll += e.loglik - e.loglik_mean;
                var += e.loglik_var;
            }
            let z_u = sum_u / (f64::from(n) / 12.0).sqrt();
            let z_ll = sum_ll / var.sqrt();
            assert!(z_u.abs() < 4.0 && z_ll.abs() < 4.0, "{}: z_u {z_u:.2} z_ll {z_ll:.2}", family.name);
        }
    }
}
