//! The demo/test misbehaviours of [`super::Adversary`]: what a weak or dishonest miner does,
//! so the validator can be shown (and tested) to catch it. Not for real mining.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ganglion_engine::Engine;
use rand::Rng;
use serde_json::{Value, json};

use crate::openai::{Endpoint, parse_request, prompt_tokens};

/// Rewrites the body of a truncating miner's request: ask for `fraction` of `max_tokens`.
pub(crate) fn truncate_body(body: &[u8], fraction: f64) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let key = if value.get("max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
    let max = value.get(key).and_then(Value::as_u64).unwrap_or(16);
    value[key] = json!(((max as f64 * fraction).ceil() as u64).clamp(1, max));
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// Rewrites complete SSE lines of a truncating miner's stream so that the cut looks like a
/// natural stop (`finish_reason: length` becomes `stop`). Holds back an incomplete line.
#[derive(Debug, Default)]
pub(crate) struct StopRewriter {
    pending: Vec<u8>,
}

impl StopRewriter {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Bytes {
        self.pending.extend_from_slice(bytes);
        let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') else { return Bytes::new() };
        let complete: Vec<u8> = self.pending.drain(..=last).collect();
        let text = String::from_utf8_lossy(&complete)
            .replace("\"finish_reason\":\"length\"", "\"finish_reason\":\"stop\"")
            .replace("\"finish_reason\": \"length\"", "\"finish_reason\": \"stop\"");
        Bytes::from(text)
    }

    pub(crate) fn finish(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.pending))
    }
}

/// When a slow miner releases a chunk that arrived `arrived` after the request started,
/// the `index`-th chunk of the stream.
pub(crate) fn slow_release(started: Instant, arrived: Duration, index: usize, factor: f64, max_tps: Option<f64>) -> Instant {
    let stretched = arrived.mul_f64(factor.max(1.0));
    let capped = max_tps.filter(|t| *t > 0.0).map_or(Duration::ZERO, |tps| Duration::from_secs_f64(index as f64 / tps));
    started + stretched.max(capped)
}

/// A complete SSE response of random vocabulary tokens for `body` (sent to `endpoint`):
/// `max_tokens` tokens, each claiming logprob −1, then `finish_reason: length` and a usage
/// chunk counting the prompt with the real tokenizer, so only the tokens themselves betray it.
pub(crate) fn random_token_events(vocabulary: &Engine, endpoint: Endpoint, body: &[u8]) -> Vec<Bytes> {
    let tokenizer = vocabulary.tokenizer();
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = parsed.get("model").and_then(Value::as_str).unwrap_or("model").to_string();
    let (prompt_len, max_tokens) = match parse_request(endpoint, &parsed) {
        Some((prompt, sampling)) => (prompt_tokens(&prompt, tokenizer).map_or(1, |p| p.len()), sampling.max_tokens.clamp(1, 4096)),
        None => (1, 16),
    };
    let mut rng = rand::thread_rng();
    let vocab = tokenizer.vocab_size().max(1) as u32;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let object = if endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = |choice: Value| json!({"id": id, "object": object, "created": 0, "model": model, "choices": [choice]});
    let event = |v: &Value| Bytes::from(format!("data: {v}\n\n"));
    let mut events = Vec::with_capacity(max_tokens as usize + 3);
    let mut offset = 0usize;
    for _ in 0..max_tokens {
        // Tokens that are printable on their own, so the text matches the ids and only the
        // likelihood check can tell.
        let token = loop {
            let t = rng.gen_range(0..vocab);
            if !tokenizer.is_special(t) && std::str::from_utf8(tokenizer.token_bytes(t)).is_ok() {
                break t;
            }
        };
        let text = tokenizer.token_text(token);
        let choice = match endpoint {
            Endpoint::Chat => json!({
                "index": 0, "delta": {"content": text}, "finish_reason": null,
                "logprobs": {"content": [{"token": format!("token_id:{token}"), "logprob": -1.0, "top_logprobs": []}]},
            }),
            Endpoint::Completion => json!({
                "index": 0, "text": text, "finish_reason": null,
                "logprobs": {"tokens": [format!("token_id:{token}")], "token_logprobs": [-1.0], "top_logprobs": [{}], "text_offset": [offset]},
            }),
        };
        offset += text.len();
        events.push(event(&chunk(choice)));
    }
    let finish = match endpoint {
        Endpoint::Chat => json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}),
        Endpoint::Completion => json!({"index": 0, "text": "", "logprobs": null, "finish_reason": "length"}),
    };
    events.push(event(&chunk(finish)));
    let mut usage = chunk(Value::Null);
    usage["choices"] = json!([]);
    usage["usage"] = json!({"prompt_tokens": prompt_len, "completion_tokens": max_tokens, "total_tokens": prompt_len as u32 + max_tokens});
    events.push(event(&usage));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_asks_for_less_and_hides_the_cut() {
        let body = truncate_body(br#"{"model":"m","max_tokens":100}"#, 0.25).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["max_tokens"], json!(25));
        let mut r = StopRewriter::default();
        let a = r.push(b"data: {\"finish_reason\":\"len");
        assert!(a.is_empty(), "an incomplete line is held back");
        let b = r.push(b"gth\"}\n\ndata: [DONE]\n\n");
        assert_eq!(&b[..], b"data: {\"finish_reason\":\"stop\"}\n\ndata: [DONE]\n\n");
        assert!(r.finish().is_empty());
    }

    #[test]
    fn slow_release_stretches_and_caps() {
        let t0 = Instant::now();
        assert_eq!(slow_release(t0, Duration::from_millis(100), 0, 3.0, None), t0 + Duration::from_millis(300));
        assert_eq!(slow_release(t0, Duration::from_millis(10), 10, 1.0, Some(5.0)), t0 + Duration::from_secs(2));
    }
}
