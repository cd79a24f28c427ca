//! OpenAI wire types (requests in, JSON out) and their conversion to engine requests.
//!
//! Numbers arrive as `f64`/`i64` so out-of-range values get a precise 400 instead of a serde
//! type error. vLLM extensions: `top_k`, `repetition_penalty`, `return_tokens_as_token_ids`,
//! `prompt_logprobs`. Only this module and its siblings know the wire format.

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use crate::engine::{FinishReason, GenerateRequest, TokenScore, MAX_TOP_K};
use crate::sampling::SamplingParams;
use crate::tokenizer::{ChatMessage, Tokenizer};

/// vLLM's stand-in for `-inf` logprobs, which JSON cannot carry.
const NEG_INF_LOGPROB: f32 = -9999.0;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by chat and completions requests.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommonParams {
    /// Model name; must be the served one.
    #[serde(default)]
    pub model: Option<String>,
    /// Tokens to generate.
    pub max_tokens: Option<i64>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus mass.
    pub top_p: Option<f64>,
    /// vLLM: top-k (-1 or 0 disables).
    pub top_k: Option<i64>,
    /// Seed for deterministic sampling.
    pub seed: Option<i64>,
    /// Stop strings.
    pub stop: Option<StopSpec>,
    /// Stream with SSE.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Number of choices (only 1).
    pub n: Option<i64>,
    /// vLLM repetition penalty.
    pub repetition_penalty: Option<f64>,
    /// llama.cpp's name for the same penalty (validators send both, for either server).
    pub repeat_penalty: Option<f64>,
    /// vLLM/llama.cpp min-p (only 0, which disables it).
    pub min_p: Option<f64>,
    /// OpenAI presence penalty (only 0).
    pub presence_penalty: Option<f64>,
    /// OpenAI frequency penalty (only 0).
    pub frequency_penalty: Option<f64>,
    /// vLLM: render tokens as `token_id:<id>`.
    #[serde(default)]
    pub return_tokens_as_token_ids: Option<bool>,
    /// vLLM: logprobs of the prompt tokens with this many alternatives.
    pub prompt_logprobs: Option<i64>,
    /// vLLM and llama.cpp: generate through EOS and end-of-turn tokens, to `max_tokens`.
    #[serde(default)]
    pub ignore_eos: Option<bool>,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<WireMessage>,
    /// Newer name for `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    /// Return logprobs of the generated tokens.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Alternatives per generated token (0..=20).
    pub top_logprobs: Option<i64>,
    /// Append the assistant header (default true).
    pub add_generation_prompt: Option<bool>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonParams,
    /// Every other field (after `common`: serde hands a flattened map what the structs before
    /// it did not take); refused by name unless harmless ([`check_extra`]).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// One message as sent on the wire.
#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    /// `system`, `user`, `assistant`, `developer`, `tool`.
    pub role: String,
    /// A string, a list of `{type: "text", text}` parts, or null.
    #[serde(default)]
    pub content: Value,
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// A string, `[string]`, `[int]` or `[[int]]` (one prompt only).
    pub prompt: Value,
    /// Legacy logprobs: alternatives per token (0..=20).
    pub logprobs: Option<i64>,
    /// Echo the prompt (unsupported when true).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Only 1 is supported.
    pub best_of: Option<i64>,
    /// Shared fields.
    #[serde(flatten)]
    pub common: CommonParams,
    /// Every other field; refused by name unless harmless ([`check_extra`]).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Fields that are accepted and ignored because they cannot change the answer: OpenAI's
/// end-user id and bookkeeping fields.
const IGNORED_FIELDS: &[&str] = &["user", "metadata", "store", "service_tier"];

/// Refuses every field the server does not implement (`tools`, `response_format`,
/// `logit_bias`, `logprobs` on chat as an integer…), naming it, rather than answering as if it
/// had been honoured. A field sent as `null`, `{}` or `[]` asks for nothing and passes.
pub fn check_extra(extra: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let mut names: Vec<&String> = extra
        .iter()
        .filter(|(name, value)| {
            let empty = match value {
                Value::Null => true,
                Value::Object(o) => o.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            !empty && !IGNORED_FIELDS.contains(&name.as_str())
        })
        .map(|(name, _)| name)
        .collect();
    names.sort();
    match names.first() {
        None => Ok(()),
        Some(first) => Err(ApiError::unsupported_field(first)),
    }
}

/// Options that shape the response, not the generation.
#[derive(Debug, Clone, Copy)]
pub struct ResponseOptions {
    /// Stream with SSE.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Report logprobs of generated tokens.
    pub logprobs: bool,
    /// Render tokens as `token_id:<id>`.
    pub token_ids: bool,
    /// Report vLLM `prompt_logprobs`.
    pub prompt_logprobs: bool,
}

fn message_text(content: &Value) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(ApiError::invalid("messages", "only text content parts (`{\"type\":\"text\",\"text\":…}`) are supported")),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid("messages", "message content must be a string or a list of text parts")),
    }
}

fn to_usize(v: i64, param: &'static str, min: i64, max: i64) -> Result<usize, ApiError> {
    if v < min || v > max {
        return Err(ApiError::invalid(param, format!("{param} must be between {min} and {max}, got {v}")));
    }
    usize::try_from(v).map_err(|_| ApiError::invalid(param, format!("{param} is out of range")))
}

impl CommonParams {
    /// Checks the model name against the served one.
    pub fn check_model(&self, served: &str, aliases: &[String]) -> Result<(), ApiError> {
        match self.model.as_deref() {
            None => Err(ApiError::invalid("model", format!("`model` is required; use `{served}`"))),
            Some(m) if m == served || aliases.iter().any(|a| a == m) => Ok(()),
            Some(m) => Err(ApiError::unknown_model(m, served)),
        }
    }

    fn sampling(&self) -> Result<SamplingParams, ApiError> {
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::invalid("n", format!("only n=1 is supported, got {n}")));
        }
        for (param, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if let Some(v) = v.filter(|&v| v != 0.0) {
                return Err(ApiError::invalid(param, format!("{param} is not supported (got {v}); use repetition_penalty")));
            }
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid("temperature", format!("temperature must be between 0 and 2, got {temperature}")));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid("top_p", format!("top_p must be in (0, 1], got {top_p}")));
        }
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) => to_usize(k, "top_k", 1, i64::from(u32::MAX))?,
        };
        if let Some(v) = self.min_p.filter(|&v| v != 0.0) {
            return Err(ApiError::invalid("min_p", format!("min_p is not supported (got {v}); use top_p or top_k")));
        }
        let repetition_penalty = match (self.repetition_penalty, self.repeat_penalty) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::invalid(
                    "repeat_penalty",
                    format!("repeat_penalty ({b}) and repetition_penalty ({a}) name the same penalty; send one, or equal values"),
                ));
            }
            (a, b) => a.or(b).unwrap_or(1.0),
        };
        if !(repetition_penalty > 0.0 && repetition_penalty <= 2.0) {
            return Err(ApiError::invalid("repetition_penalty", format!("repetition_penalty must be in (0, 2], got {repetition_penalty}")));
        }
        let seed = match self.seed {
            Some(s) => s as u64,
            None => rand::random::<u64>(),
        };
        Ok(SamplingParams {
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k,
            repetition_penalty: repetition_penalty as f32,
            seed,
        })
    }

    fn stops(&self) -> Result<Vec<String>, ApiError> {
        let stops = match &self.stop {
            None => Vec::new(),
            Some(StopSpec::One(s)) => vec![s.clone()],
            Some(StopSpec::Many(v)) => v.clone(),
        };
        if stops.len() > 16 || stops.iter().any(|s| s.len() > 256) {
            return Err(ApiError::invalid("stop", "at most 16 stop strings of at most 256 bytes each"));
        }
        Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
    }

    fn max_tokens(&self, value: Option<i64>, default: usize, prompt: usize, limit: usize) -> Result<usize, ApiError> {
        let Some(v) = value else { return Ok(default.min(limit.saturating_sub(prompt)).max(1)) };
        if v < 1 {
            return Err(ApiError::invalid("max_tokens", format!("max_tokens must be at least 1, got {v}")));
        }
        let v = usize::try_from(v).unwrap_or(usize::MAX);
        if prompt.saturating_add(v) > limit {
            return Err(ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid(
                    "max_tokens",
                    format!(
                        "this model's maximum context length is {limit} tokens, but you requested {} tokens ({prompt} in the prompt, {v} for the completion); lower max_tokens or shorten the prompt",
                        prompt.saturating_add(v)
                    ),
                )
            });
        }
        Ok(v)
    }

    fn prompt_logprobs(&self) -> Result<Option<usize>, ApiError> {
        self.prompt_logprobs.map(|k| to_usize(k, "prompt_logprobs", 0, MAX_TOP_K as i64)).transpose()
    }

    fn response_options(&self, logprobs: bool) -> ResponseOptions {
        ResponseOptions {
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
            logprobs,
            token_ids: self.return_tokens_as_token_ids.unwrap_or(false),
            prompt_logprobs: self.prompt_logprobs.is_some(),
        }
    }
}

fn check_prompt_fits(prompt: usize, limit: usize, param: &'static str) -> Result<(), ApiError> {
    if prompt == 0 {
        return Err(ApiError::invalid(param, format!("`{param}` is empty")));
    }
    if prompt >= limit {
        return Err(ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(param, format!("this model's maximum context length is {limit} tokens, but the prompt has {prompt}; shorten it"))
        });
    }
    Ok(())
}

impl ChatRequest {
    /// Builds the engine request and the response options.
    pub fn to_engine(&self, tok: &Tokenizer, limit: usize) -> Result<(GenerateRequest, ResponseOptions), ApiError> {
        check_extra(&self.extra)?;
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "`messages` must contain at least one message"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for m in &self.messages {
            let role = if m.role == "developer" { "system".to_string() } else { m.role.clone() };
            if !["system", "user", "assistant", "tool"].contains(&role.as_str()) {
                return Err(ApiError::invalid("messages", format!("unknown role `{}`; use system, user or assistant", m.role)));
            }
            messages.push(ChatMessage { role, content: message_text(&m.content)? });
        }
        let prompt = tok
            .encode_chat(&messages, self.add_generation_prompt.unwrap_or(true))
            .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
        check_prompt_fits(prompt.len(), limit, "messages")?;
        let top_logprobs = match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (_, None) => 0,
            (true, Some(k)) => to_usize(k, "top_logprobs", 0, MAX_TOP_K as i64)?,
            (false, Some(_)) => return Err(ApiError::invalid("top_logprobs", "top_logprobs requires logprobs=true")),
        };
        let max_tokens = self.common.max_tokens(self.max_completion_tokens.or(self.common.max_tokens), usize::MAX, prompt.len(), limit)?;
        let req = GenerateRequest {
            ignore_eos: self.common.ignore_eos.unwrap_or(false),
            max_tokens,
            sampling: self.common.sampling()?,
            stop: self.common.stops()?,
            top_logprobs,
            prompt_logprobs: self.common.prompt_logprobs()?,
            prompt,
        };
        Ok((req, self.common.response_options(self.logprobs.unwrap_or(false))))
    }
}

impl CompletionRequest {
    /// Builds the engine request and the response options.
    pub fn to_engine(&self, tok: &Tokenizer, limit: usize) -> Result<(GenerateRequest, ResponseOptions), ApiError> {
        check_extra(&self.extra)?;
        if self.echo.unwrap_or(false) {
            return Err(ApiError::invalid("echo", "echo=true is not supported; use prompt_logprobs to score the prompt"));
        }
        if let Some(b) = self.best_of.filter(|&b| b != 1) {
            return Err(ApiError::invalid("best_of", format!("only best_of=1 is supported, got {b}")));
        }
        let vocab = tok.vocab_size() as u64;
        let ids = |v: &[Value]| -> Result<Vec<u32>, ApiError> {
            v.iter()
                .map(|x| match x.as_u64() {
                    Some(id) if id < vocab => Ok(id as u32),
                    _ => Err(ApiError::invalid("prompt", format!("prompt token ids must be integers below {vocab}"))),
                })
                .collect()
        };
        let prompt = match &self.prompt {
            Value::String(s) => tok.encode(s),
            Value::Array(items) if items.len() == 1 && items[0].is_string() => tok.encode(items[0].as_str().unwrap_or_default()),
            Value::Array(items) if items.len() == 1 && items[0].is_array() => ids(items[0].as_array().map_or(&[][..], |a| a))?,
            Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => ids(items)?,
            Value::Array(items) if items.len() > 1 => {
                return Err(ApiError::invalid("prompt", "only one prompt per request is supported; send several requests"));
            }
            _ => return Err(ApiError::invalid("prompt", "prompt must be a string, a list of token ids, or a one-element list of either")),
        };
        check_prompt_fits(prompt.len(), limit, "prompt")?;
        let logprobs = self.logprobs.map(|k| to_usize(k, "logprobs", 0, MAX_TOP_K as i64)).transpose()?;
        let max_tokens = self.common.max_tokens(self.common.max_tokens, 16, prompt.len(), limit)?;
        let req = GenerateRequest {
            ignore_eos: self.common.ignore_eos.unwrap_or(false),
            max_tokens,
            sampling: self.common.sampling()?,
            stop: self.common.stops()?,
            top_logprobs: logprobs.unwrap_or(0),
            prompt_logprobs: self.common.prompt_logprobs()?,
            prompt,
        };
        Ok((req, self.common.response_options(logprobs.is_some())))
    }
}

/// Renders a token for the wire.
pub fn token_repr(tok: &Tokenizer, id: u32, token_ids: bool) -> String {
    if token_ids { format!("token_id:{id}") } else { tok.token_text(id) }
}

fn finite(lp: f32) -> f32 {
    if lp.is_finite() { lp } else { NEG_INF_LOGPROB }
}

/// Chat `logprobs.content` entries for some generated tokens.
pub fn chat_logprobs(tok: &Tokenizer, scores: &[TokenScore], token_ids: bool) -> Vec<Value> {
    let entry = |id: u32, lp: f32| {
        json!({"token": token_repr(tok, id, token_ids), "logprob": finite(lp), "bytes": tok.token_bytes(id)})
    };
    scores
        .iter()
        .map(|s| {
            let mut e = entry(s.token, s.logprob);
            e["top_logprobs"] = Value::Array(s.top.iter().map(|&(id, lp)| entry(id, lp)).collect());
            e
        })
        .collect()
}

/// Legacy completions `logprobs` object; `offset` is the text offset of the first token.
pub fn completion_logprobs(tok: &Tokenizer, scores: &[TokenScore], token_ids: bool, mut offset: usize) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut text_offset = Vec::new();
    for s in scores {
        tokens.push(Value::String(token_repr(tok, s.token, token_ids)));
        token_logprobs.push(json!(finite(s.logprob)));
        let mut map = serde_json::Map::new();
        for &(id, lp) in &s.top {
            map.insert(token_repr(tok, id, token_ids), json!(finite(lp)));
        }
        map.entry(token_repr(tok, s.token, token_ids)).or_insert(json!(finite(s.logprob)));
        top.push(Value::Object(map));
        text_offset.push(json!(offset));
        offset += tok.token_bytes(s.token).len();
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": text_offset})
}

/// vLLM `prompt_logprobs`: `null` for the first token, then `{id: {logprob, rank, decoded_token}}`.
pub fn prompt_logprobs_json(tok: &Tokenizer, scores: &[TokenScore], token_ids: bool) -> Value {
    let mut out = vec![Value::Null];
    for s in scores {
        let mut map = serde_json::Map::new();
        let entry = |id: u32, lp: f32, rank: u32| {
            json!({"logprob": finite(lp), "rank": rank, "decoded_token": token_repr(tok, id, token_ids)})
        };
        map.insert(s.token.to_string(), entry(s.token, s.logprob, s.rank));
        for (i, &(id, lp)) in s.top.iter().enumerate() {
            map.entry(id.to_string()).or_insert_with(|| entry(id, lp, i as u32 + 1));
        }
        out.push(Value::Object(map));
    }
    Value::Array(out)
}

/// OpenAI `finish_reason`.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "abort",
    }
}

/// `usage` object.
pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tests::tiny_spec;

    fn tok() -> Tokenizer {
        Tokenizer::from_spec(tiny_spec()).unwrap()
    }

    fn chat(body: Value) -> Result<(GenerateRequest, ResponseOptions), ApiError> {
        let req: ChatRequest = serde_json::from_value(body).unwrap();
        req.to_engine(&tok(), 64)
    }

    #[test]
    fn chat_request_maps_fields() {
        let (req, opts) = chat(json!({
            "model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "max_tokens": 5, "temperature": 0, "seed": 3, "stop": "x", "logprobs": true, "top_logprobs": 2,
            "stream": true, "stream_options": {"include_usage": true}, "return_tokens_as_token_ids": true,
            "prompt_logprobs": 1, "top_k": -1
        }))
        .unwrap();
        assert_eq!(req.max_tokens, 5);
        assert_eq!(req.sampling.seed, 3);
        assert_eq!(req.stop, vec!["x"]);
        assert_eq!((req.top_logprobs, req.prompt_logprobs), (2, Some(1)));
        assert!(opts.stream && opts.include_usage && opts.logprobs && opts.token_ids);
        assert_eq!(tok().decode(&req.prompt, false), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let cases = [
            ("max_tokens", json!(0)),
            ("max_tokens", json!(1_000_000_000_000i64)),
            ("temperature", json!(2.5)),
            ("top_p", json!(0)),
            ("top_logprobs", json!(21)),
            ("n", json!(2)),
            ("repetition_penalty", json!(-1)),
            ("prompt_logprobs", json!(100)),
        ];
        for (field, value) in cases {
            let mut body = base.clone();
            body[field] = value;
            body["logprobs"] = json!(true);
            let err = chat(body).unwrap_err();
            assert_eq!(err.status, 400, "{field}");
            assert_eq!(err.param.as_deref(), Some(field), "{field}: {err:?}");
        }
        let err = chat(json!({"model": "m", "messages": []})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
    }

    #[test]
    fn fields_we_do_not_implement_are_refused_by_name() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (field, value) in [
            ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("tool_choice", json!("auto")),
            ("response_format", json!({"type": "json_object"})),
            ("logit_bias", json!({"5": 100})),
            ("parallel_tool_calls", json!(false)),
            ("some_future_field", json!(1)),
        ] {
            let mut body = base.clone();
            body[field] = value;
            let err = chat(body).unwrap_err();
            assert_eq!((err.status.as_u16(), err.param.as_deref()), (400, Some(field)), "{err:?}");
            assert!(err.message.contains(field), "{}", err.message);
        }
        // Asking for nothing, or for what cannot change the answer, passes.
        let mut body = base.clone();
        body["tools"] = json!([]);
        body["logit_bias"] = json!({});
        body["response_format"] = Value::Null;
        body["user"] = json!("alice");
        // What validators send for either server: llama.cpp's name for the penalty, min_p 0.
        body["repeat_penalty"] = json!(1.1);
        body["repetition_penalty"] = json!(1.1);
        body["min_p"] = json!(0.0);
        assert!(chat(body.clone()).is_ok());
        // vLLM's and llama.cpp's `ignore_eos` is implemented: it reaches the engine request.
        body["ignore_eos"] = json!(true);
        assert!(chat(body.clone()).unwrap().0.ignore_eos);
        body["ignore_eos"] = json!(false);
        assert!(!chat(body.clone()).unwrap().0.ignore_eos);
        body["min_p"] = json!(0.05);
        assert_eq!(chat(body.clone()).unwrap_err().param.as_deref(), Some("min_p"));
        body["min_p"] = json!(0.0);
        body["repeat_penalty"] = json!(1.2);
        assert_eq!(chat(body).unwrap_err().param.as_deref(), Some("repeat_penalty"));
        let completion: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": "he", "suffix": "x"})).unwrap();
        assert_eq!(completion.to_engine(&tok(), 64).unwrap_err().param.as_deref(), Some("suffix"));
    }

    #[test]
    fn long_prompt_is_context_overflow() {
        let long = "a ".repeat(100);
        let err = chat(json!({"model": "m", "messages": [{"role": "user", "content": long}]})).unwrap_err();
        assert_eq!(err.code, Some("context_length_exceeded"));
    }

    #[test]
    fn completion_prompt_forms() {
        let t = tok();
        let parse = |p: Value| {
            let req: CompletionRequest = serde_json::from_value(json!({"model": "m", "prompt": p})).unwrap();
            req.to_engine(&t, 64)
        };
        assert_eq!(parse(json!([5, 6])).unwrap().0.prompt, vec![5, 6]);
        assert_eq!(parse(json!([[7]])).unwrap().0.prompt, vec![7]);
        assert_eq!(parse(json!("he")).unwrap().0.max_tokens, 16);
        assert_eq!(parse(json!(["a", "b"])).unwrap_err().param.as_deref(), Some("prompt"));
        assert_eq!(parse(json!([999999])).unwrap_err().param.as_deref(), Some("prompt"));
        assert_eq!(parse(json!("")).unwrap_err().param.as_deref(), Some("prompt"));
    }

    #[test]
    fn logprob_shapes() {
        let t = tok();
        let s = TokenScore { token: 3, logprob: -0.5, rank: 2, top: vec![(4, -0.1), (3, -0.5)] };
        let chat = chat_logprobs(&t, std::slice::from_ref(&s), true);
        assert_eq!(chat[0]["token"], "token_id:3");
        assert_eq!(chat[0]["top_logprobs"][0]["token"], "token_id:4");
        let legacy = completion_logprobs(&t, std::slice::from_ref(&s), false, 0);
        assert_eq!(legacy["token_logprobs"][0], json!(-0.5));
        assert_eq!(legacy["text_offset"][0], json!(0));
        let prompt = prompt_logprobs_json(&t, &[s], false);
        assert!(prompt[0].is_null());
        assert_eq!(prompt[1]["3"]["rank"], json!(2));
        assert_eq!(prompt[1]["4"]["rank"], json!(1));
    }
}
