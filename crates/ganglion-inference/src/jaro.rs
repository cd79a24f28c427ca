//! Jaro and Jaro-Winkler similarity, at character and word level, and the ground-truth
//! chunked pass rule of Targon 2.6.3.
//!
//! # Two implementations
//! - [`jaro`] / [`jaro_winkler`]: the standard measure, written to agree bit for bit with the
//!   `jellyfish` Python package (checked in `tests/jaro_reference.rs` on a corpus of pairs):
//!   match window `max(⌊max_len/2⌋ − 1, 0)`, greedy matching in order, transpositions
//!   `t = ⌊half-mismatches⌋` (jellyfish and strcmp95 halve with integer division), similarity
//!   `(m/|a| + m/|b| + (m−t)/m) / 3`, and `0.0` when either side is empty. Winkler adds
//!   `p·ℓ·(1−J)` with ℓ the common prefix (at most 4) only when `J > 0.7`.
//! - [`original`]: the hand-written GeeksforGeeks port Targon shipped (`targon/utils.py`,
//!   2.x), kept so its published test vectors can be reproduced. It differs from the
//!   standard in exactly these ways:
//!   1. the match window is `⌊max_len·0.75⌋ − 1` instead of `⌊max_len/2⌋ − 1`;
//!   2. `t /= 2` runs on *every* iteration of the outer loop (an indentation bug), so a
//!      mismatch found at position k of `a` contributes `2^-(|a|−k)` and transpositions all
//!      but vanish;
//!   3. two equal sequences score 1.0 even when empty (the standard scores empty as 0.0);
//!   4. the Winkler scale is 0.25 (standard 0.1), so a 4-element common prefix makes the
//!      score exactly 1.0 whenever `J > 0.7`;
//!   5. words come from `split(" ")`, so runs of spaces make empty words.
//!
//! The validator uses the standard measure with the seed's Winkler scale (0.25) inside
//! [`ChunkRule`], which fixes the rule's own weakness (the last chunk's threshold reaching 0)
//! with a floor.

/// Standard Jaro similarity of two sequences (jellyfish semantics; see the module doc).
pub fn jaro<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_matched = vec![false; a.len()];
    let mut b_matched = vec![false; b.len()];
    let mut matches = 0usize;
    for (i, x) in a.iter().enumerate() {
        let low = i.saturating_sub(window);
        let high = (i + window).min(b.len() - 1);
        if low > high {
            continue;
        }
        for j in low..=high {
            if !b_matched[j] && b[j] == *x {
                a_matched[i] = true;
                b_matched[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut half_transpositions = 0usize;
    let mut k = 0usize;
    for (i, x) in a.iter().enumerate() {
        if !a_matched[i] {
            continue;
        }
        while k < b.len() && !b_matched[k] {
            k += 1;
        }
        if k < b.len() && b[k] != *x {
            half_transpositions += 1;
        }
        k += 1;
    }
    let t = (half_transpositions / 2) as f64;
    let m = matches as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0
}

/// Standard Jaro-Winkler with prefix scale `scale` (0.1 is the usual value; Targon's seed
/// uses 0.25): `J + scale·ℓ·(1−J)` for a common prefix ℓ ≤ 4, applied only when `J > 0.7`.
pub fn jaro_winkler<T: PartialEq>(a: &[T], b: &[T], scale: f64) -> f64 {
    winkler(jaro(a, b), a, b, scale)
}

fn winkler<T: PartialEq>(j: f64, a: &[T], b: &[T], scale: f64) -> f64 {
    if j <= 0.7 {
        return j;
    }
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    j + scale * prefix as f64 * (1.0 - j)
}

/// Jaro over Unicode scalar values.
pub fn jaro_chars(a: &str, b: &str) -> f64 {
    jaro(&chars(a), &chars(b))
}

/// Jaro-Winkler over Unicode scalar values.
pub fn jaro_winkler_chars(a: &str, b: &str, scale: f64) -> f64 {
    jaro_winkler(&chars(a), &chars(b), scale)
}

/// Jaro over whitespace-separated words.
pub fn jaro_words(a: &str, b: &str) -> f64 {
    jaro(&words(a), &words(b))
}

/// Jaro-Winkler over whitespace-separated words.
pub fn jaro_winkler_words(a: &str, b: &str, scale: f64) -> f64 {
    jaro_winkler(&words(a), &words(b), scale)
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

/// Whitespace-separated words (runs of whitespace never make empty words).
pub fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Targon's original Jaro and Jaro-Winkler, bug for bug (see the module doc for how it
/// differs from the standard). Only for reproducing the original's numbers.
pub mod original {
    /// The original Jaro (window `⌊0.75·max⌋ − 1`, `t` halved every iteration).
    pub fn jaro<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
        if a == b {
            return 1.0;
        }
        let window = (a.len().max(b.len()) as f64 * 0.75).floor() as isize - 1;
        let mut a_matched = vec![false; a.len()];
        let mut b_matched = vec![false; b.len()];
        let mut matches = 0usize;
        for (i, x) in a.iter().enumerate() {
            let i = i as isize;
            let low = (i - window).max(0);
            let high = (b.len() as isize).min(i + window + 1);
            let mut j = low;
            while j < high {
                let ju = j as usize;
                if b[ju] == *x && !b_matched[ju] {
                    a_matched[i as usize] = true;
                    b_matched[ju] = true;
                    matches += 1;
                    break;
                }
                j += 1;
            }
        }
        if matches == 0 {
            return 0.0;
        }
        let mut t = 0.0f64;
        let mut point = 0usize;
        for (i, x) in a.iter().enumerate() {
            if a_matched[i] {
                while point < b.len() && !b_matched[point] {
                    point += 1;
                }
                if point < b.len() && b[point] != *x {
                    t += 1.0;
                }
                point += 1;
            }
            // The original's `t /= 2` sits inside this loop.
            t /= 2.0;
        }
        let m = matches as f64;
        (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0
    }

    /// The original Jaro-Winkler: scale 0.25, prefix at most 4, only when Jaro > 0.7.
    pub fn jaro_winkler<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
        super::winkler(jaro(a, b), a, b, 0.25)
    }

    /// Words as the original split them (`str.split(" ")`).
    pub fn words(s: &str) -> Vec<&str> {
        s.split(' ').collect()
    }
}

/// The ground-truth pass rule (Targon 2.6.3's final form, with the fixes listed on each
/// field). The ground truth is cut into a first chunk of `first_chunk` words and then
/// chunks of `chunk` words; the response is cut at the same word offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRule {
    /// Words in the first chunk (30).
    pub first_chunk: usize,
    /// Words in each later chunk (50).
    pub chunk: usize,
    /// Winkler scale for chunk 0 (0.25, as the seed defines it).
    pub winkler_scale: f64,
    /// Lowest pass threshold of any chunk. The original's `1 − (i+1)/N` reaches 0 for the
    /// last chunk, so any text passed it; this floor (0.5) fixes that.
    pub min_chunk_threshold: f64,
    /// `passed/N · modifier` must exceed this (0.70).
    pub pass_fraction: f64,
    /// The mean chunk score must exceed this (0.5).
    pub min_mean: f64,
    /// The response must have at least this share of the truth's words (Targon 2.0.0's
    /// 0.8). Without it a truncated answer passes whenever it fits in chunk 0: the chunk
    /// rule ignores what is missing inside a chunk, and the 0.25 prefix scale lifts a
    /// 4-word common prefix to 1.0.
    pub min_length_ratio: f64,
    /// …and at most this multiple of them (the chunks ignore extra words, so padding past
    /// a skipped end would pass otherwise).
    pub max_length_ratio: f64,
}

impl Default for ChunkRule {
    fn default() -> Self {
        ChunkRule {
            first_chunk: 30,
            chunk: 50,
            winkler_scale: 0.25,
            min_chunk_threshold: 0.5,
            pass_fraction: 0.70,
            min_mean: 0.5,
            min_length_ratio: 0.8,
            max_length_ratio: 1.25,
        }
    }
}

/// What [`ChunkRule::judge`] found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChunkVerdict {
    /// Score per chunk (chunk 0: Jaro-Winkler; others: Jaro; a missing response chunk is 0).
    pub scores: Vec<f64>,
    /// Chunks over their threshold.
    pub passed: usize,
    /// The modifier (0.75, 1.0 or 1.15).
    pub modifier: f64,
    /// Mean chunk score.
    pub mean: f64,
    /// Whether the response's length is within the ratios.
    pub length_ok: bool,
    /// Whether the response passes.
    pub verified: bool,
}

impl ChunkRule {
    /// Judges `response` against the ground truth `truth`, word by word.
    pub fn judge(&self, truth: &str, response: &str) -> ChunkVerdict {
        let truth = words(truth);
        let response = words(response);
        if truth.is_empty() {
            // Nothing to match: only an (almost) empty answer agrees with an empty truth.
            let ok = response.len() <= 2;
            let score = if ok { 1.0 } else { 0.0 };
            return ChunkVerdict { scores: vec![score], passed: usize::from(ok), modifier: 1.0, mean: score, length_ok: ok, verified: ok };
        }
        let mut bounds = vec![(0, self.first_chunk.min(truth.len()))];
        while let Some(&(_, end)) = bounds.last() {
            if end >= truth.len() {
                break;
            }
            bounds.push((end, (end + self.chunk.max(1)).min(truth.len())));
        }
        let n = bounds.len();
        let scores: Vec<f64> = bounds
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| {
                let Some(mine) = response.get(start..end.min(response.len())).filter(|m| !m.is_empty()) else {
                    return 0.0;
                };
                if i == 0 { jaro_winkler(&truth[start..end], mine, self.winkler_scale) } else { jaro(&truth[start..end], mine) }
            })
            .collect();
        let passed = scores
            .iter()
            .enumerate()
            .filter(|&(i, &s)| s > (1.0 - (i + 1) as f64 / n as f64).max(self.min_chunk_threshold))
            .count();
        let first = scores[0];
        let modifier = if first < 0.7 || scores.get(1).is_some_and(|&s| s < 0.6) {
            0.75
        } else if first > 0.9 {
            1.15
        } else {
            1.0
        };
        let mean = scores.iter().sum::<f64>() / n as f64;
        let (t, r) = (truth.len() as f64, response.len() as f64);
        // Short answers are judged by an absolute difference: a ratio of 3 words is noise.
        let length_ok = if truth.len() >= 8 {
            r >= self.min_length_ratio * t && r <= self.max_length_ratio * t
        } else {
            response.len().abs_diff(truth.len()) <= 2
        };
        let verified = length_ok && passed as f64 / n as f64 * modifier > self.pass_fraction && mean > self.min_mean;
        ChunkVerdict { scores, passed, modifier, mean, length_ok, verified }
    }
}

#[cfg(test)]
mod tests;
