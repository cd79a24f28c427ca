//! The LLM judge, in the slot of the original's RLHF reward model
//! (OpenAssistant/reward-model-deberta-v3-large-v2, weight 0.4, which cannot be had here): any
//! OpenAI-compatible chat endpoint is asked to rate a completion from 0 to 10 for the prompt;
//! the reward is the rating / 10 (like the original's zero-weight `prompt` reward model),
//! then normalised online like every reward function.
//!
//! Requests are bounded in number in flight, in time and in the bytes read back; a failed or
//! unparseable rating is `None` (the pipeline gives such a completion 0, the scale's bottom).

use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;

use crate::error::{Result, RewardError};

/// The judge's instruction (the completion and prompt follow it).
pub const JUDGE_SYSTEM: &str = "You grade answers. Rate how helpful, correct, relevant and well written the \
RESPONSE is as a reply to the PROMPT, on a scale from 0 (useless, off-topic, or a copy of the prompt) \
to 10 (excellent). Reply with the number only.";
/// Characters of prompt and completion sent to the judge at most.
pub const MAX_JUDGED_CHARS: usize = 8_000;
/// Bytes of a judge's answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// The base URL of the OpenAI-compatible API (`…/v1`).
    pub url: String,
    /// The model name sent.
    pub model: String,
    /// A bearer token, if the upstream wants one.
    pub api_key: Option<String>,
    /// Deadline per rating.
    pub timeout: Duration,
    /// Ratings in flight at most.
    pub concurrency: usize,
}

/// An OpenAI-compatible judge.
#[derive(Debug, Clone)]
pub struct Judge {
    http: reqwest::Client,
    config: JudgeConfig,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}
#[derive(Deserialize)]
struct Choice {
    message: Message,
}
#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

impl Judge {
    /// A judge with a client from `tls`.
    pub fn new(config: JudgeConfig, tls: &ganglion_tls::ClientTls) -> Result<Self> {
        if config.concurrency == 0 {
            return Err(RewardError::Config(
                "judge concurrency must be at least 1".into(),
            ));
        }
        let http = tls
            .http_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .build()
            .map_err(|e| RewardError::Config(format!("judge client: {e}")))?;
        Ok(Judge { http, config })
    }

    /// Ratings in [0, 1] of each completion (`None` for a failed response or rating), at most
    /// [`JudgeConfig::concurrency`] in flight.
    pub async fn rate_all(&self, prompt: &str, completions: &[Option<String>]) -> Vec<Option<f64>> {
        let mut out = vec![None; completions.len()];
        // Owned jobs: closures over borrowed items would not be `Send` for every lifetime.
        let jobs: Vec<(usize, String)> = completions
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c.trim().to_owned())))
            .collect();
        let mut stream = futures::stream::iter(jobs)
            .map(|(i, c): (usize, String)| async move { (i, self.rate(prompt, &c).await) })
            .buffer_unordered(self.config.concurrency);
        while let Some((i, rating)) = stream.next().await {
            out[i] = rating;
        }
        out
    }

    /// One rating in [0, 1], or `None`.
    pub async fn rate(&self, prompt: &str, completion: &str) -> Option<f64> {
        let user = format!(
            "PROMPT:\n{}\n\nRESPONSE:\n{}\n\nRating (0-10):",
            clip(prompt, MAX_JUDGED_CHARS),
            clip(completion, MAX_JUDGED_CHARS)
        );
        let body = serde_json::json!({
            "model": self.config.model,
            "messages": [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}],
            "max_tokens": 8,
            "temperature": 0.0,
        });
        let url = format!("{}/chat/completions", self.config.url.trim_end_matches('/'));
        let mut request = self.http.post(url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::debug!(target: "reward::judge", status = %r.status(), "judge refused");
                return None;
            }
            Err(e) => {
                tracing::debug!(target: "reward::judge", error = %ganglion_tls::describe_http_error(&e), "judge unreachable");
                return None;
            }
        };
        let bytes = read_capped(response, MAX_ANSWER_BYTES).await?;
        let parsed: ChatResponse = serde_json::from_slice(&bytes).ok()?;
        let text = parsed.choices.into_iter().next()?.message.content?;
        parse_rating(&text)
    }
}

async fn read_capped(mut response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if bytes.len() + chunk.len() > limit {
            return None;
        }
        bytes.extend_from_slice(&chunk);
    }
    Some(bytes)
}

/// The first number in `text` (integer or decimal), if it lies in [0, 10], divided by 10.
pub fn parse_rating(text: &str) -> Option<f64> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value: f64 = rest[..end].trim_end_matches('.').parse().ok()?;
    (0.0..=10.0).contains(&value).then_some(value / 10.0)
}

fn clip(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_parse() {
        assert_eq!(parse_rating("7"), Some(0.7));
        assert_eq!(parse_rating(" Rating: 10."), Some(1.0));
        assert_eq!(parse_rating("8.5/10"), Some(0.85));
        assert_eq!(parse_rating("11"), None);
        assert_eq!(parse_rating("none"), None);
        assert_eq!(clip("héllo", 2), "hé");
    }
}
