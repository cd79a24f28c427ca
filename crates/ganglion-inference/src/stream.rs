//! A bounded reader for OpenAI server-sent-event streams.
//!
//! Miners are adversarial, so every read is budgeted: total bytes, line length, number of
//! events, and three deadlines (first token, idle gap between reads, total). Lines must be
//! UTF-8; every `data:` payload except `[DONE]` must be a JSON chunk of the endpoint's shape.
//! The reader keeps what it needs for verification and timing — the text, each token with
//! its id (`token_id:<id>`), reported logprob and arrival time, the `finish_reason` and the
//! `usage` — and nothing else, so memory is bounded by the byte budget.
//!
//! [`SseDecoder`] is push-based (the organic proxy tees bytes into it while forwarding them);
//! [`read_stream`] drives one from any byte stream with the deadlines.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use ganglion_neuron::PeerFailure;
use ganglion_neuron::peer::Deadline;

use crate::cause::{Cause, Failure};
use crate::openai::Endpoint;

/// Budgets for one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamLimits {
    /// Most bytes read in total.
    pub max_bytes: usize,
    /// Longest line (an SSE `data:` line carries one JSON chunk).
    pub max_line_bytes: usize,
    /// Most SSE events.
    pub max_events: usize,
    /// Deadline for the first content, from the start of the request.
    pub first_token_timeout: Duration,
    /// Longest gap between two reads once the body started.
    pub idle_timeout: Duration,
    /// Deadline for the whole response, from the start of the request.
    pub total_timeout: Duration,
}

impl StreamLimits {
    /// Budgets sized for a response of at most `max_tokens` tokens: about 2 KiB and two
    /// events per token (a chat chunk with one logprob is ~300 bytes), plus slack.
    pub fn for_tokens(max_tokens: u32, first_token_timeout: Duration, total_timeout: Duration) -> StreamLimits {
        let tokens = max_tokens as usize;
        StreamLimits {
            max_bytes: 64 * 1024 + tokens * 2048,
            max_line_bytes: 64 * 1024,
            max_events: 64 + tokens * 2,
            first_token_timeout,
            idle_timeout: first_token_timeout.min(total_timeout),
            total_timeout,
        }
    }
}

/// One streamed token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamedToken {
    /// The id from `token_id:<id>`, if the token came in that form and parsed.
    pub id: Option<u32>,
    /// The token as sent.
    pub raw: String,
    /// The logprob the miner reported.
    pub logprob: Option<f64>,
    /// When its chunk arrived, since the request started.
    pub at: Duration,
}

/// The `usage` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// `prompt_tokens`.
    pub prompt_tokens: Option<u64>,
    /// `completion_tokens`.
    pub completion_tokens: Option<u64>,
}

/// What a stream carried.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Streamed {
    /// The concatenated content.
    pub text: String,
    /// Tokens from the `logprobs` of each chunk, in order.
    pub tokens: Vec<StreamedToken>,
    /// Arrival time of each chunk that carried content.
    pub content_times: Vec<Duration>,
    /// The last non-null `finish_reason`.
    pub finish_reason: Option<String>,
    /// The last `usage` object.
    pub usage: Option<Usage>,
    /// Time to the first chunk with content.
    pub ttft: Option<Duration>,
    /// Time to the end of the stream (or of the failure).
    pub total: Duration,
    /// Bytes read.
    pub bytes: usize,
    /// SSE events seen.
    pub events: usize,
    /// Whether `data: [DONE]` arrived.
    pub done: bool,
}

/// A stream that failed, with what had arrived by then (for records).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamError {
    /// Why.
    pub failure: Failure,
    /// What had been read (boxed: failures are the rare path, and the result type small).
    pub partial: Box<Streamed>,
}

/// Push-based SSE decoder with limits; see the module doc.
#[derive(Debug)]
pub struct SseDecoder {
    endpoint: Endpoint,
    limits: StreamLimits,
    line: Vec<u8>,
    data: Option<String>,
    out: Streamed,
}

/// What [`SseDecoder::push`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Keep reading.
    More,
    /// `[DONE]` arrived: stop reading.
    Done,
}

impl SseDecoder {
    /// A decoder for a stream from `endpoint`.
    pub fn new(endpoint: Endpoint, limits: StreamLimits) -> SseDecoder {
        SseDecoder { endpoint, limits, line: Vec::new(), data: None, out: Streamed::default() }
    }

    /// What has been decoded so far.
    pub fn streamed(&self) -> &Streamed {
        &self.out
    }

    /// Whether content has arrived (the first-token deadline no longer applies).
    pub fn has_content(&self) -> bool {
        self.out.ttft.is_some()
    }

    /// Feeds bytes that arrived at `at` (since the request started).
    pub fn push(&mut self, bytes: &[u8], at: Duration) -> Result<Progress, Failure> {
        self.out.bytes += bytes.len();
        if self.out.bytes > self.limits.max_bytes {
            return Err(Failure::peer_with(&PeerFailure::TooLarge { limit: self.limits.max_bytes }, format!("stream exceeded {} bytes", self.limits.max_bytes)));
        }
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..pos]);
            rest = &rest[pos + 1..];
            let line = std::mem::take(&mut self.line);
            if self.line_done(&line, at)? == Progress::Done {
                return Ok(Progress::Done);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > self.limits.max_line_bytes {
            return Err(Failure::new(Cause::TooLarge, format!("a line exceeded {} bytes", self.limits.max_line_bytes)));
        }
        Ok(Progress::More)
    }

    /// Ends the stream (EOF) and returns what it carried. A stream that never carried an
    /// event is not SSE at all.
    pub fn finish(mut self, at: Duration) -> Result<Streamed, StreamError> {
        self.out.total = at;
        let pending = std::mem::take(&mut self.line);
        let result = (|| {
            if !self.out.done && !pending.is_empty() {
                self.line_done(&pending, at)?;
            }
            if !self.out.done {
                self.dispatch(at)?;
            }
            if self.out.events == 0 {
                return Err(Failure::new(Cause::Malformed, "the response carried no server-sent events"));
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(self.out),
            Err(failure) => Err(StreamError { failure, partial: Box::new(self.out) }),
        }
    }

    /// Turns the decoder into an error carrying what was read.
    pub fn fail(mut self, failure: Failure, at: Duration) -> StreamError {
        self.out.total = at;
        StreamError { failure, partial: Box::new(self.out) }
    }

    fn line_done(&mut self, line: &[u8], at: Duration) -> Result<Progress, Failure> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line)
            .map_err(|e| Failure::new(Cause::InvalidUtf8, format!("line is not UTF-8 (valid up to byte {})", e.valid_up_to())))?;
        if line.is_empty() {
            return self.dispatch(at);
        }
        if line.starts_with(':') {
            return Ok(Progress::More);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        Ok(Progress::More)
    }

    fn dispatch(&mut self, at: Duration) -> Result<Progress, Failure> {
        let Some(data) = self.data.take() else { return Ok(Progress::More) };
        self.out.events += 1;
        if self.out.events > self.limits.max_events {
            return Err(Failure::new(Cause::TooLarge, format!("stream exceeded {} events", self.limits.max_events)));
        }
        if data.trim() == "[DONE]" {
            self.out.done = true;
            return Ok(Progress::Done);
        }
        let chunk: Value = serde_json::from_str(&data)
            .map_err(|e| Failure::new(Cause::Malformed, format!("chunk is not JSON ({e}): {}", preview(&data))))?;
        self.chunk(&chunk, at)?;
        Ok(Progress::More)
    }

    fn chunk(&mut self, chunk: &Value, at: Duration) -> Result<(), Failure> {
        let Some(obj) = chunk.as_object() else {
            return Err(Failure::new(Cause::Malformed, format!("chunk is not a JSON object: {}", preview(&chunk.to_string()))));
        };
        if let Some(error) = obj.get("error").filter(|e| !e.is_null()) {
            let message = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_string);
            return Err(Failure::new(Cause::MinerError, preview(&message)));
        }
        if let Some(usage) = obj.get("usage").filter(|u| !u.is_null()) {
            let field = |name: &str| -> Result<Option<u64>, Failure> {
                match usage.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_u64()
                        .map(Some)
                        .ok_or_else(|| Failure::new(Cause::Malformed, format!("usage.{name} is not a count: {v}"))),
                }
            };
            self.out.usage = Some(Usage { prompt_tokens: field("prompt_tokens")?, completion_tokens: field("completion_tokens")? });
        }
        let choices = match obj.get("choices") {
            Some(Value::Array(c)) => c,
            Some(other) => return Err(Failure::new(Cause::Malformed, format!("`choices` is not a list: {}", preview(&other.to_string())))),
            None if obj.contains_key("usage") => return Ok(()),
            None => return Err(Failure::new(Cause::Malformed, "chunk has neither `choices` nor `usage`")),
        };
        let Some(choice) = choices.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0) else {
            return Ok(());
        };
        let text = match self.endpoint {
            Endpoint::Chat => match choice.get("delta").and_then(|d| d.get("content")) {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s.as_str(),
                Some(other) => return Err(Failure::new(Cause::Malformed, format!("delta.content is not text: {}", preview(&other.to_string())))),
            },
            Endpoint::Completion => match choice.get("text") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s.as_str(),
                Some(other) => return Err(Failure::new(Cause::Malformed, format!("text is not a string: {}", preview(&other.to_string())))),
            },
        };
        let before = self.out.tokens.len();
        match choice.get("logprobs") {
            None | Some(Value::Null) => {}
            Some(logprobs) => self.tokens(logprobs, at)?,
        }
        if !text.is_empty() || self.out.tokens.len() > before {
            self.out.text.push_str(text);
            self.out.content_times.push(at);
            if self.out.ttft.is_none() {
                self.out.ttft = Some(at);
            }
        }
        match choice.get("finish_reason") {
            None | Some(Value::Null) => {}
            Some(Value::String(reason)) => self.out.finish_reason = Some(reason.chars().take(32).collect()),
            Some(other) => return Err(Failure::new(Cause::Malformed, format!("finish_reason is not a string: {}", preview(&other.to_string())))),
        }
        Ok(())
    }

    fn tokens(&mut self, logprobs: &Value, at: Duration) -> Result<(), Failure> {
        let malformed = |what: &str| Failure::new(Cause::Malformed, format!("logprobs: {what}"));
        match self.endpoint {
            Endpoint::Chat => {
                let entries = match logprobs.get("content") {
                    None | Some(Value::Null) => return Ok(()),
                    Some(Value::Array(entries)) => entries,
                    Some(_) => return Err(malformed("`content` is not a list")),
                };
                for entry in entries {
                    let raw = entry.get("token").and_then(Value::as_str).ok_or_else(|| malformed("an entry has no `token` string"))?;
                    let logprob = entry.get("logprob").and_then(Value::as_f64);
                    self.push_token(raw, logprob, at);
                }
            }
            Endpoint::Completion => {
                let tokens = match logprobs.get("tokens") {
                    None | Some(Value::Null) => return Ok(()),
                    Some(Value::Array(t)) => t,
                    Some(_) => return Err(malformed("`tokens` is not a list")),
                };
                let lps = logprobs.get("token_logprobs").and_then(Value::as_array);
                for (i, token) in tokens.iter().enumerate() {
                    let raw = token.as_str().ok_or_else(|| malformed("a token is not a string"))?;
                    let logprob = lps.and_then(|l| l.get(i)).and_then(Value::as_f64);
                    self.push_token(raw, logprob, at);
                }
            }
        }
        Ok(())
    }

    fn push_token(&mut self, raw: &str, logprob: Option<f64>, at: Duration) {
        let id = raw.strip_prefix("token_id:").and_then(|d| d.parse::<u32>().ok());
        self.out.tokens.push(StreamedToken { id, raw: raw.chars().take(64).collect(), logprob, at });
    }
}

fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Which deadline ran out.
fn timeout_failure(deadline: Deadline, what: &str, limit: Duration) -> Failure {
    let failure = PeerFailure::Timeout { deadline, limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX) };
    Failure::peer_with(&failure, format!("{what} deadline of {:.1}s passed", limit.as_secs_f64()))
}

/// Reads an SSE body to its end under `limits`. `started` is when the request was sent
/// (the first-token and total deadlines count from it).
pub async fn read_stream<S, E>(body: S, endpoint: Endpoint, limits: StreamLimits, started: Instant) -> Result<Streamed, StreamError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    read_stream_tee(body, endpoint, limits, started, &mut |_| {}).await
}

/// [`read_stream`], handing every chunk read to `tee` before decoding it (the organic
/// proxy forwards them to its user as they arrive).
pub async fn read_stream_tee<S, E>(
    body: S,
    endpoint: Endpoint,
    limits: StreamLimits,
    started: Instant,
    tee: &mut (dyn FnMut(&Bytes) + Send),
) -> Result<Streamed, StreamError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut decoder = SseDecoder::new(endpoint, limits);
    let mut body = std::pin::pin!(body);
    let total_deadline = started + limits.total_timeout;
    let first_deadline = started + limits.first_token_timeout;
    let mut last_read = Instant::now();
    loop {
        let idle_deadline = last_read + limits.idle_timeout;
        let mut deadline = (total_deadline, Deadline::Total, "total", limits.total_timeout);
        if idle_deadline < deadline.0 {
            deadline = (idle_deadline, Deadline::Idle, "idle", limits.idle_timeout);
        }
        if !decoder.has_content() && first_deadline < deadline.0 {
            deadline = (first_deadline, Deadline::FirstByte, "first-token", limits.first_token_timeout);
        }
        let (deadline, kind, what, limit) = deadline;
        let next = tokio::time::timeout_at(deadline.into(), body.next()).await;
        let at = started.elapsed();
        match next {
            Err(_) => return Err(decoder.fail(timeout_failure(kind, what, limit), at)),
            Ok(None) => return decoder.finish(at),
            Ok(Some(Err(e))) => {
                let failure = Failure::peer_with(&PeerFailure::Transport(e.to_string()), format!("the stream broke: {}", preview(&e.to_string())));
                return Err(decoder.fail(failure, at));
            }
            Ok(Some(Ok(bytes))) => {
                last_read = Instant::now();
                tee(&bytes);
                match decoder.push(&bytes, at) {
                    Ok(Progress::More) => {}
                    Ok(Progress::Done) => return decoder.finish(at),
                    Err(failure) => return Err(decoder.fail(failure, at)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
