//! The OpenAI wire format as validators speak it to miners: the request a validator sends
//! (with the vLLM extensions that make verification possible) and the prompt's token ids
//! under the validator's own tokenizer.

use ganglion_engine::tokenizer::{ChatMessage, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{InferenceError, Result};

/// Header naming the model a request is for (v4+ validators send it; miners route on it).
pub const MODEL_HEADER: &str = "x-targon-model";

/// Which OpenAI endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completion,
}

impl Endpoint {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completion => "/v1/completions",
        }
    }

    /// The records store's name (`chat` | `completion`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completion => "completion",
        }
    }

    /// The endpoint of a request path, if it is one of the two.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path.trim_end_matches('/') {
            "/v1/chat/completions" | "/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" | "/completions" => Some(Endpoint::Completion),
            _ => None,
        }
    }
}

/// Sampling parameters of one request. The validator draws them; the miner must honour them.
/// Every parameter a server would otherwise default differently (llama.cpp's server defaults
/// to top_k 40, min_p 0.05 and repeat_penalty 1.1; vLLM's to none of them) is sent
/// explicitly, so every honest server samples from the same processed distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Temperature (0 = greedy).
    pub temperature: f64,
    /// Nucleus mass in (0, 1].
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 = off.
    #[serde(default)]
    pub top_k: u32,
    /// CTRL repetition penalty (vLLM's `repetition_penalty`, llama.cpp's `repeat_penalty`);
    /// 1 = off.
    #[serde(default = "one")]
    pub repetition_penalty: f64,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling seed (the "deterministic seed" of ground-truth mode).
    pub seed: Option<u64>,
}

fn one() -> f64 {
    1.0
}

impl Default for Sampling {
    /// The OpenAI API's defaults: temperature 1, no truncation, no penalty, 16 tokens.
    fn default() -> Self {
        Sampling { temperature: 1.0, top_p: 1.0, top_k: 0, repetition_penalty: 1.0, max_tokens: 16, seed: None }
    }
}

impl Sampling {
    /// As the engine's processed-distribution API takes it.
    pub fn processing(&self) -> ganglion_engine::distribution::Processing {
        ganglion_engine::distribution::Processing {
            temperature: self.temperature as f32,
            top_p: self.top_p as f32,
            top_k: self.top_k as usize,
            repetition_penalty: self.repetition_penalty as f32,
        }
    }

    /// Writes every sampling parameter into an OpenAI request body explicitly (see the
    /// type's doc), under both servers' names where they differ.
    pub fn write_into(&self, body: &mut Value) {
        body["max_tokens"] = json!(self.max_tokens);
        body["temperature"] = json!(self.temperature);
        body["top_p"] = json!(self.top_p);
        body["top_k"] = json!(self.top_k);
        body["min_p"] = json!(0.0);
        body["repetition_penalty"] = json!(self.repetition_penalty);
        body["repeat_penalty"] = json!(self.repetition_penalty);
        if let Some(seed) = self.seed {
            body["seed"] = json!(seed);
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text content.
    pub content: String,
}

/// The prompt of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Chat messages.
    Chat(Vec<Message>),
    /// A raw completion prompt.
    Text(String),
}

/// A complete inference request: model, prompt and sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceRequest {
    /// The model name miners serve it under.
    pub model: String,
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The prompt (must agree with `endpoint`).
    pub prompt: Prompt,
    /// Sampling parameters.
    pub sampling: Sampling,
}

impl InferenceRequest {
    /// The JSON body sent to miners: streaming, with `logprobs`, vLLM's
    /// `return_tokens_as_token_ids` (so tokens arrive as `token_id:<id>`) and
    /// `stream_options.include_usage` (so the last chunk carries `usage`).
    pub fn body(&self) -> Value {
        let mut body = json!({
            "model": self.model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "return_tokens_as_token_ids": true,
        });
        self.sampling.write_into(&mut body);
        match &self.prompt {
            Prompt::Chat(messages) => {
                body["messages"] = json!(messages);
                body["logprobs"] = json!(true);
            }
            Prompt::Text(text) => {
                body["prompt"] = json!(text);
                body["logprobs"] = json!(0);
            }
        }
        body
    }

    /// The prompt as the model sees it, under `tokenizer`: the chat template with the
    /// generation prompt appended, or the raw text (no BOS, as the engine server does).
    pub fn prompt_tokens(&self, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
        prompt_tokens(&self.prompt, tokenizer)
    }

    /// The prompt as one string, for records.
    pub fn prompt_json(&self) -> Value {
        json!(self.prompt)
    }
}

/// See [`InferenceRequest::prompt_tokens`].
pub fn prompt_tokens(prompt: &Prompt, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let ids = match prompt {
        Prompt::Chat(messages) => {
            let messages: Vec<ChatMessage> =
                messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
            tokenizer.encode_chat(&messages, true).map_err(|e| InferenceError::Reference(e.to_string()))?
        }
        Prompt::Text(text) => tokenizer.encode(text),
    };
    if ids.is_empty() {
        return Err(InferenceError::Reference("the prompt tokenizes to nothing".into()));
    }
    Ok(ids)
}

/// Reads an OpenAI request body (as a user or validator sent it) into its prompt and
/// sampling parameters; `None` for shapes this crate does not verify (multi-part content,
/// token-id prompts, several prompts).
pub fn parse_request(endpoint: Endpoint, body: &Value) -> Option<(Prompt, Sampling)> {
    let prompt = match endpoint {
        Endpoint::Chat => {
            let messages = body.get("messages")?.as_array()?;
            let mut out = Vec::with_capacity(messages.len());
            for m in messages {
                let role = m.get("role")?.as_str()?.to_string();
                let content = match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(Value::Array(parts)) => {
                        let mut text = String::new();
                        for part in parts {
                            text.push_str(part.get("text")?.as_str()?);
                        }
                        text
                    }
                    _ => return None,
                };
                out.push(Message { role, content });
            }
            Prompt::Chat(out)
        }
        Endpoint::Completion => match body.get("prompt")? {
            Value::String(s) => Prompt::Text(s.clone()),
            Value::Array(items) if items.len() == 1 => Prompt::Text(items[0].as_str()?.to_string()),
            _ => return None,
        },
    };
    let number = |key: &str| body.get(key).and_then(Value::as_f64);
    let max_tokens = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(if endpoint == Endpoint::Completion { 16 } else { 512 });
    let top_k = body.get("top_k").and_then(Value::as_i64).unwrap_or(0).max(0);
    let sampling = Sampling {
        temperature: number("temperature").unwrap_or(1.0),
        top_p: number("top_p").unwrap_or(1.0),
        top_k: u32::try_from(top_k).unwrap_or(u32::MAX),
        repetition_penalty: number("repetition_penalty").or_else(|| number("repeat_penalty")).unwrap_or(1.0),
        max_tokens: u32::try_from(max_tokens).unwrap_or(u32::MAX),
        seed: body.get("seed").and_then(Value::as_u64),
    };
    Some((prompt, sampling))
}

/// Joins an upstream base URL and a path, accepting bases with or without a trailing `/v1`
/// (operators write both, as the original's `--neuron.model_endpoint …/v1`).
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_asks_for_what_verification_needs() {
        let req = InferenceRequest {
            model: "m".into(),
            endpoint: Endpoint::Chat,
            prompt: Prompt::Chat(vec![Message { role: "user".into(), content: "hi".into() }]),
            sampling: Sampling { temperature: 0.5, top_p: 0.9, top_k: 40, repetition_penalty: 1.1, max_tokens: 7, seed: Some(42) },
        };
        let body = req.body();
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["logprobs"], json!(true));
        assert_eq!(body["return_tokens_as_token_ids"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
        assert_eq!(body["seed"], json!(42));
        assert_eq!((body["top_k"].clone(), body["min_p"].clone(), body["repeat_penalty"].clone()), (json!(40), json!(0.0), json!(1.1)));
        let (prompt, sampling) = parse_request(Endpoint::Chat, &body).unwrap_or_else(|| panic!("parse"));
        assert_eq!(prompt, req.prompt);
        assert_eq!(sampling, req.sampling);
    }

    #[test]
    fn urls_and_paths() {
        assert_eq!(join_url("http://h:1/v1/", "/v1/models"), "http://h:1/v1/models");
        assert_eq!(join_url("http://h:1", "/v1/models"), "http://h:1/v1/models");
        assert_eq!(Endpoint::from_path("/v1/completions"), Some(Endpoint::Completion));
        assert_eq!(Endpoint::from_path("/v1/embeddings"), None);
    }
}
