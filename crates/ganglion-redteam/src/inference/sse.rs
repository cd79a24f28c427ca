//! The OpenAI SSE stream as the strategies see it: events split from a byte stream, parsed
//! chunks, and the pure transformations each cheat applies to them (unit-tested here, so
//! each strategy's lie is pinned down without a network).

use bytes::Bytes;
use ganglion_engine::Engine;
use ganglion_inference::openai::{Endpoint, Sampling, parse_request, prompt_tokens};
use rand::Rng;
use serde_json::{Value, json};

/// The last event of every stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Splits a byte stream into SSE events (the text before a blank line), holding back an
/// incomplete event until the rest arrives.
#[derive(Debug, Default)]
pub struct EventSplitter {
    pending: Vec<u8>,
}

impl EventSplitter {
    /// The events completed by `bytes`, without their blank-line terminators.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event[..end]).replace('\r', "");
            if !text.trim().is_empty() {
                events.push(text);
            }
        }
        events
    }

    /// Whatever is left at the end of the stream (an event without its blank line).
    pub fn finish(&mut self) -> Option<String> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).trim().to_string();
        (!rest.is_empty()).then_some(rest)
    }
}

/// The JSON of an event's `data:` line; `None` for `[DONE]`, comments and non-JSON.
pub fn parse(event: &str) -> Option<Value> {
    let data = event.lines().find_map(|l| l.strip_prefix("data:"))?.trim();
    if data == "[DONE]" {
        return None;
    }
    serde_json::from_str(data).ok()
}

/// An event carrying `value`.
pub fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn choice(chunk: &Value) -> Option<&Value> {
    chunk.get("choices")?.as_array()?.first()
}

/// The finish reason of a chunk, if it carries one.
pub fn finish_reason(chunk: &Value) -> Option<&str> {
    choice(chunk)?.get("finish_reason")?.as_str()
}

/// Whether the chunk is the usage chunk (`stream_options.include_usage`).
pub fn is_usage(chunk: &Value) -> bool {
    chunk.get("usage").is_some_and(Value::is_object)
}

/// Tokens a chunk carries: its logprob entries (one per token), else one if it has text.
pub fn tokens_in(chunk: &Value) -> usize {
    let Some(choice) = choice(chunk) else { return 0 };
    let logprobs = choice.get("logprobs");
    if let Some(n) = logprobs.and_then(|l| l.get("content")).and_then(Value::as_array).map(Vec::len) {
        return n;
    }
    if let Some(n) = logprobs.and_then(|l| l.get("tokens")).and_then(Value::as_array).map(Vec::len) {
        return n;
    }
    let text = choice.get("delta").and_then(|d| d.get("content")).or_else(|| choice.get("text")).and_then(Value::as_str);
    usize::from(text.is_some_and(|t| !t.is_empty()))
}

/// Sets the finish reason of a chunk that has one.
pub fn set_finish_reason(chunk: &mut Value, reason: &str) {
    if let Some(choice) = chunk.get_mut("choices").and_then(Value::as_array_mut).and_then(|c| c.first_mut())
        && choice.get("finish_reason").is_some_and(|f| !f.is_null())
    {
        choice["finish_reason"] = json!(reason);
    }
}

/// `usage-lies`: multiplies the completion tokens a usage chunk reports by `factor` (and the
/// total with them). Returns whether the chunk was a usage chunk.
pub fn inflate_usage(chunk: &mut Value, factor: f64) -> bool {
    let Some(usage) = chunk.get_mut("usage").filter(|u| u.is_object()) else { return false };
    let prompt = usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let completion = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    let inflated = (completion as f64 * factor.max(1.0)).ceil() as u64;
    usage["completion_tokens"] = json!(inflated);
    usage["total_tokens"] = json!(prompt + inflated);
    true
}

/// `ttft-fake`: the empty chunk sent the moment a request arrives.
pub fn empty_first_chunk(endpoint: Endpoint, model: &str) -> Value {
    let choice = match endpoint {
        Endpoint::Chat => json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}),
        Endpoint::Completion => json!({"index": 0, "text": "", "logprobs": null, "finish_reason": null}),
    };
    let object = if endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
    json!({"id": format!("cmpl-{}", uuid::Uuid::new_v4().simple()), "object": object, "created": 0, "model": model, "choices": [choice]})
}

/// `early-eos` (stop mode): the body asking for only `fraction` of `max_tokens`.
pub fn truncate_request(body: &mut Value, fraction: f64) {
    let key = if body.get("max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
    let max = body.get(key).and_then(Value::as_u64).unwrap_or(16);
    body[key] = json!(((max as f64 * fraction.clamp(0.0, 1.0)).ceil() as u64).clamp(1, max.max(1)));
}

/// A complete answer as chunks: the token chunks (in order), the finish reason and the
/// prompt length the usage chunk reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// Chunks carrying tokens (or text), in order, without the finish and usage chunks.
    pub chunks: Vec<Value>,
    /// The stream's finish reason (`stop`, `length`).
    pub finish: String,
    /// The finish chunk as sent (its shape is reused).
    pub finish_chunk: Option<Value>,
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
}

impl Answer {
    /// Reads a complete stream's events.
    pub fn from_events(events: &[String]) -> Answer {
        let mut answer = Answer { finish: "stop".into(), ..Answer::default() };
        for chunk in events.iter().filter_map(|e| parse(e)) {
            if is_usage(&chunk) {
                answer.prompt_tokens = chunk["usage"].get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
            } else if let Some(reason) = finish_reason(&chunk) {
                answer.finish = reason.to_string();
                answer.finish_chunk = Some(chunk);
            } else if tokens_in(&chunk) > 0 {
                answer.chunks.push(chunk);
            }
        }
        answer
    }

    /// Tokens in the answer.
    pub fn tokens(&self) -> usize {
        self.chunks.iter().map(tokens_in).sum()
    }

    /// `cached`: the answer cut at `max_tokens` (whole chunks), ending `length` if it was cut,
    /// with a usage chunk that counts what is sent. Returns the events to stream.
    pub fn cut(&self, max_tokens: usize, model: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut sent = 0usize;
        for chunk in &self.chunks {
            let n = tokens_in(chunk);
            if sent + n > max_tokens {
                break;
            }
            sent += n;
            let mut chunk = chunk.clone();
            chunk["model"] = json!(model);
            out.push(chunk);
        }
        let finish = if sent < self.tokens() { "length" } else { self.finish.as_str() };
        self.close(&mut out, finish, sent, model);
        out
    }

    /// `early-eos` (pad mode): an answer that stopped by itself before `max_tokens`, padded
    /// to `max_tokens` by repeating its own chunks and reported as cut by the length limit.
    pub fn pad(&self, max_tokens: usize, model: &str) -> Vec<Value> {
        if self.finish != "stop" || self.chunks.is_empty() || self.tokens() >= max_tokens {
            return self.cut(max_tokens, model);
        }
        let mut out = Vec::new();
        let mut sent = 0usize;
        'fill: loop {
            for chunk in &self.chunks {
                let n = tokens_in(chunk).max(1);
                if sent + n > max_tokens {
                    break 'fill;
                }
                sent += n;
                out.push(chunk.clone());
            }
        }
        self.close(&mut out, "length", sent, model);
        out
    }

    fn close(&self, out: &mut Vec<Value>, finish: &str, completion: usize, model: &str) {
        let mut finish_chunk = self.finish_chunk.clone().unwrap_or_else(|| json!({"choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]}));
        set_finish_reason(&mut finish_chunk, finish);
        finish_chunk["model"] = json!(model);
        out.push(finish_chunk);
        out.push(json!({"choices": [], "model": model, "usage": {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": completion, "total_tokens": self.prompt_tokens + completion as u64,
        }}));
    }
}

/// `selective-refusal`: whether a request is one this miner would do badly on (hot sampling
/// or a long answer), so refuses.
pub fn would_refuse(sampling: &Sampling, max_temperature: f64, max_tokens: u32) -> bool {
    sampling.temperature > max_temperature || sampling.max_tokens > max_tokens
}

/// `cached`: which of the two cached answers stands in for a request: the greedy one for
/// (near-)greedy sampling, the low-temperature sample otherwise.
pub fn use_greedy(sampling: &Sampling) -> bool {
    sampling.temperature < 0.15 || sampling.top_p < 0.05
}

/// `random-tokens`: a complete SSE response of random vocabulary tokens for `body` (sent to
/// `endpoint`): `max_tokens` printable tokens each claiming logprob −1, then
/// `finish_reason: length` and a usage chunk counting the prompt with the real tokenizer, so
/// only the tokens themselves betray it.
pub fn random_token_events(vocabulary: &Engine, endpoint: Endpoint, body: &Value) -> Vec<Bytes> {
    let tokenizer = vocabulary.tokenizer();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("model").to_string();
    let (prompt_len, max_tokens) = match parse_request(endpoint, body) {
        Some((prompt, sampling)) => (prompt_tokens(&prompt, tokenizer).map_or(1, |p| p.len()), sampling.max_tokens.clamp(1, 4096)),
        None => (1, 16),
    };
    let mut rng = rand::thread_rng();
    let vocab = tokenizer.vocab_size().max(1) as u32;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let object = if endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = |choice: Value| json!({"id": id, "object": object, "created": 0, "model": model, "choices": [choice]});
    let mut events = Vec::with_capacity(max_tokens as usize + 3);
    let mut offset = 0usize;
    for _ in 0..max_tokens {
        // Tokens printable on their own, so the text matches the ids and only the likelihood
        // check can tell (bounded: most of the vocabulary qualifies).
        let mut token = 0;
        for _ in 0..10_000 {
            token = rng.gen_range(0..vocab);
            if !tokenizer.is_special(token) && std::str::from_utf8(tokenizer.token_bytes(token)).is_ok() {
                break;
            }
        }
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
    events.push(Bytes::from_static(DONE));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sampling as a validator's body states it (so new fields of `Sampling` take their defaults).
    fn sampling(temperature: f64, top_p: f64, max_tokens: u32) -> Sampling {
        let body = json!({"prompt": "p", "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, "seed": 1});
        parse_request(Endpoint::Completion, &body).unwrap().1
    }

    fn token_chunk(text: &str, id: u32) -> Value {
        json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null,
            "logprobs": {"content": [{"token": format!("token_id:{id}"), "logprob": -0.5}]}}]})
    }

    fn stream(n: u32, finish: &str) -> Vec<String> {
        let mut events: Vec<String> = (0..n).map(|i| format!("data: {}", token_chunk(&format!("t{i}"), i))).collect();
        events.push(format!("data: {}", json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})));
        events.push(format!("data: {}", json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}})));
        events.push("data: [DONE]".into());
        events
    }

    #[test]
    fn events_are_split_across_reads() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: {\"a\":").is_empty(), "an incomplete event is held back");
        let events = s.push(b"1}\n\ndata: [DONE]\n\n");
        assert_eq!(events, vec!["data: {\"a\":1}".to_string(), "data: [DONE]".to_string()]);
        assert_eq!(parse(&events[0]), Some(json!({"a": 1})));
        assert_eq!(parse(&events[1]), None);
        assert!(s.finish().is_none());
    }

    #[test]
    fn usage_lies_inflate_the_completion_count() {
        let mut chunk = json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}});
        assert!(inflate_usage(&mut chunk, 3.0));
        assert_eq!(chunk["usage"]["completion_tokens"], 60);
        assert_eq!(chunk["usage"]["total_tokens"], 70);
        let mut content = token_chunk("x", 1);
        assert!(!inflate_usage(&mut content, 3.0), "only the usage chunk is touched");
    }

    #[test]
    fn ttft_fake_sends_an_empty_chunk() {
        let chunk = empty_first_chunk(Endpoint::Chat, "smollm2");
        assert_eq!(tokens_in(&chunk), 0, "it carries no token");
        assert_eq!(chunk["choices"][0]["delta"]["content"], "");
        assert_eq!(empty_first_chunk(Endpoint::Completion, "m")["choices"][0]["text"], "");
    }

    #[test]
    fn early_eos_asks_for_less_and_calls_the_cut_a_stop() {
        let mut body = json!({"model": "m", "max_tokens": 100});
        truncate_request(&mut body, 0.25);
        assert_eq!(body["max_tokens"], 25);
        let mut finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]});
        set_finish_reason(&mut finish, "stop");
        assert_eq!(finish_reason(&finish), Some("stop"));
        let mut content = token_chunk("x", 1);
        set_finish_reason(&mut content, "stop");
        assert_eq!(finish_reason(&content), None, "a chunk without a finish reason keeps none");
    }

    #[test]
    fn early_eos_pads_a_natural_stop_to_max_tokens() {
        let answer = Answer::from_events(&stream(3, "stop"));
        let padded = answer.pad(8, "m");
        let tokens: usize = padded.iter().map(tokens_in).sum();
        assert_eq!(tokens, 8, "the 3-token answer repeated up to max_tokens");
        assert_eq!(finish_reason(&padded[padded.len() - 2]), Some("length"));
        assert_eq!(padded.last().map(|u| u["usage"]["completion_tokens"].clone()), Some(json!(8)));
        assert_eq!(padded[3]["choices"][0]["delta"]["content"], "t0", "the answer repeats");
    }

    #[test]
    fn cached_answers_are_cut_at_max_tokens() {
        let answer = Answer::from_events(&stream(10, "stop"));
        assert_eq!((answer.tokens(), answer.prompt_tokens, answer.finish.as_str()), (10, 7, "stop"));
        let cut = answer.cut(4, "smollm2");
        assert_eq!(cut.len(), 6, "4 tokens, the finish chunk, the usage chunk");
        assert_eq!(finish_reason(&cut[4]), Some("length"), "a cut answer ends on the length limit");
        assert_eq!(cut[5]["usage"], json!({"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}));
        let whole = answer.cut(50, "smollm2");
        assert_eq!(finish_reason(&whole[10]), Some("stop"), "an answer that fits keeps its own end");
        assert!(use_greedy(&sampling(0.0, 1.0, 8)));
        assert!(!use_greedy(&sampling(0.9, 0.9, 8)));
    }

    #[test]
    fn selective_refusal_picks_hot_and_long_requests() {
        let s = |temperature: f64, max_tokens: u32| sampling(temperature, 1.0, max_tokens);
        assert!(!would_refuse(&s(0.3, 32), 0.7, 64));
        assert!(would_refuse(&s(0.9, 32), 0.7, 64));
        assert!(would_refuse(&s(0.3, 128), 0.7, 64));
    }
}
