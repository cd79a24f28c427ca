//! Fresh evaluation data every step (spec A5.3): prompt/response pairs from the inference
//! subnet's verified records (the coupling the original had with Cortex.t through wandb), or
//! from the shared corpus when the validator runs standalone. Pairs that are empty or whose
//! response holds an unwanted phrase (refusals, "As an AI", model names) are dropped.
//!
//! The phrase list below is written from the original's description (about 200 phrases of
//! refusals and AI self-references, matched as substrings of the response), not copied: it
//! keeps the families the original filtered and matches case-insensitively, where the
//! original matched exact case (so "as an AI" slipped through when "As an AI" did not).

use rand::Rng;
use rand::seq::SliceRandom;

use crate::loss::Sample;

/// Substrings that disqualify a response (lower case; matched case-insensitively).
pub const UNWANTED_PHRASES: &[&str] = &[
    "as an ai",
    "as a language model",
    "as an artificial intelligence",
    "i am an ai",
    "i'm an ai",
    "i am a language model",
    "i'm a language model",
    "language model",
    "ai language model",
    "ai assistant",
    "openai",
    "chatgpt",
    "gpt-3",
    "gpt-4",
    "gpt3",
    "gpt4",
    "gpt",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot provide",
    "i can't provide",
    "i cannot assist",
    "i can't assist",
    "i cannot help",
    "i can't help with",
    "i'm sorry, but",
    "i am sorry, but",
    "i apologize, but",
    "i apologise, but",
    "sorry, but i",
    "i'm not able to",
    "i am not able to",
    "i am unable to",
    "i'm unable to",
    "i do not have the ability",
    "i don't have the ability",
    "i don't have personal",
    "i do not have personal",
    "i don't have feelings",
    "i do not have feelings",
    "my programming",
    "my training data",
    "my knowledge cutoff",
    "knowledge cutoff",
    "as of my last update",
    "as of my training",
    "ethical guidelines",
    "content policy",
    "against my programming",
    "not appropriate for me",
    "i must decline",
    "i cannot comply",
    "i can't comply",
    "it is not appropriate",
    "it's not appropriate",
    "responsible ai",
    "text-based ai",
    "virtual assistant",
];

/// Whether a pair is usable: both sides non-empty (after trimming) and no unwanted phrase in
/// the response.
pub fn is_wanted(sample: &Sample) -> bool {
    if sample.prompt.trim().is_empty() || sample.response.trim().is_empty() {
        return false;
    }
    let lower = sample.response.to_lowercase();
    !UNWANTED_PHRASES.iter().any(|p| lower.contains(p))
}

/// The user's text of a recorded prompt: a string as is; for chat messages the last `user`
/// message's string content.
pub fn prompt_text(prompt: &serde_json::Value) -> Option<String> {
    match prompt {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(messages) => messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
            .and_then(|m| m.get("content"))
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// Up to `n` corpus pairs: "What does "X" mean?" answered by the sense's passage.
pub fn corpus_samples(corpus: &ganglion_corpus::Corpus, rng: &mut impl Rng, n: usize) -> Vec<Sample> {
    let templates = [
        "What does \"{}\" mean?",
        "Define \"{}\".",
        "Explain the word \"{}\" with an example if you can.",
        "What is meant by \"{}\"?",
    ];
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0;
    while out.len() < n && attempts < n * 4 {
        attempts += 1;
        let entry = corpus.draw(&mut *rng);
        let Some(template) = templates.choose(&mut *rng) else { break };
        let sample = Sample { prompt: template.replace("{}", entry.lemma()), response: entry.passage() };
        if is_wanted(&sample) {
            out.push(sample);
        }
    }
    out
}

/// Up to `n` pairs from the inference subnet's verified records of `netuid` since
/// `since_ms` (newest first, at most [`ganglion_records::read::MAX_LIMIT`] looked at),
/// filtered by [`is_wanted`].
pub async fn record_samples(
    records: &ganglion_records::Records,
    netuid: u16,
    since_ms: Option<i64>,
    n: usize,
) -> Result<Vec<Sample>, ganglion_records::RecordsError> {
    let filter = ganglion_records::query::InferenceFilter {
        netuid,
        miner_hotkey: None,
        validator_hotkey: None,
        model: None,
        verified: Some(true),
        since_ms,
        before_ms: None,
        limit: ganglion_records::read::MAX_LIMIT,
    };
    let mut out = Vec::new();
    for summary in records.recent_inference(&filter).await? {
        if out.len() >= n {
            break;
        }
        let Some(record) = records.inference(&summary.id).await? else { continue };
        let Some(prompt) = prompt_text(&record.prompt) else { continue };
        let sample = Sample { prompt, response: record.response };
        if is_wanted(&sample) && !out.contains(&sample) {
            out.push(sample);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_drops_refusals_and_empty_pairs() {
        let s = |p: &str, r: &str| Sample { prompt: p.into(), response: r.into() };
        assert!(is_wanted(&s("what is a cat", "A small domesticated carnivore.")));
        assert!(!is_wanted(&s("what is a cat", "As an AI, I cannot see cats.")));
        assert!(!is_wanted(&s("what is a cat", "as an ai language model i think…")));
        assert!(!is_wanted(&s("x", "I'm sorry, but I can't help with that.")));
        assert!(!is_wanted(&s("x", "Trained by OpenAI.")));
        assert!(!is_wanted(&s("", "fine")));
        assert!(!is_wanted(&s("fine", "  \n")));
        assert!(UNWANTED_PHRASES.iter().all(|p| p.to_lowercase() == *p));
    }

    #[test]
    fn prompt_text_takes_the_last_user_message() {
        let chat = serde_json::json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"}
        ]);
        assert_eq!(prompt_text(&chat).as_deref(), Some("second"));
        assert_eq!(prompt_text(&serde_json::json!("plain")).as_deref(), Some("plain"));
        assert_eq!(prompt_text(&serde_json::json!({"x": 1})), None);
    }
}
