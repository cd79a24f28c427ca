//! Talking to another node: typed failures ([`PeerFailure`]) shared by every subnet, and a
//! client for signed JSON calls to a peer's routes ([`PeerClient`]) with a deadline and a
//! bounded read. Subnets match on the failure's kind, never on its English text.

use std::time::{Duration, Instant};

use ganglion_chain::AxonInfo;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_protocol::epistula::EpistulaRequestExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deadline {
    /// The TCP/TLS connection.
    Connect,
    /// The first byte (or token) of the answer.
    FirstByte,
    /// Silence between two chunks of a stream.
    Idle,
    /// The whole exchange.
    Total,
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Deadline::Connect => "connect",
            Deadline::FirstByte => "first byte",
            Deadline::Idle => "idle",
            Deadline::Total => "total",
        })
    }
}

/// Why a call to a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum PeerFailure {
    /// The peer serves no axon.
    #[error("the peer serves no axon")]
    NoAxon,
    /// The connection could not be made.
    #[error("cannot connect: {0} (is the node running and its axon served?)")]
    Connect(String),
    /// A deadline passed.
    #[error("no answer within the {deadline} deadline of {limit_ms} ms")]
    Timeout {
        /// Which one.
        deadline: Deadline,
        /// Its length.
        limit_ms: u64,
    },
    /// The peer's caller policy or Epistula check turned the caller away (401/403).
    #[error("refused with HTTP {status}: {message}")]
    Refused {
        /// 401 or 403.
        status: u16,
        /// The Epistula rejection code (`caller_denied`, `bad_signature`, …), when sent.
        code: Option<String>,
        /// The policy check that refused (`no_validator_permit`, `not_registered`, …), when sent.
        reason: Option<String>,
        /// The peer's message.
        message: String,
    },
    /// Any other non-success status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// The peer's message.
        message: String,
    },
    /// The connection broke mid-answer.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer is not what the protocol says.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The answer is larger than allowed.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

impl PeerFailure {
    /// The kind's stable name (`timeout`, `refused`, …) for metrics, records and status.
    pub fn name(&self) -> &'static str {
        match self {
            PeerFailure::NoAxon => "no_axon",
            PeerFailure::Connect(_) => "connect",
            PeerFailure::Timeout { .. } => "timeout",
            PeerFailure::Refused { .. } => "refused",
            PeerFailure::Status { .. } => "http_status",
            PeerFailure::Transport(_) => "transport",
            PeerFailure::Malformed(_) => "malformed",
            PeerFailure::TooLarge { .. } => "too_large",
        }
    }

    /// True when the peer refused the caller for its standing on the chain (not registered,
    /// or no validator permit): what a freshly permitted validator meets until the peer's
    /// next metagraph sync, and not the peer's fault.
    pub fn refused_for_standing(&self) -> bool {
        matches!(self, PeerFailure::Refused { reason: Some(r), .. } if r == "no_validator_permit" || r == "not_registered")
    }

    /// From a reqwest error (connect, timeout, or broken transport).
    pub fn from_reqwest(err: &reqwest::Error, timeout: Duration) -> PeerFailure {
        if err.is_timeout() {
            PeerFailure::Timeout { deadline: Deadline::Total, limit_ms: timeout.as_millis() as u64 }
        } else if err.is_connect() {
            PeerFailure::Connect(root_cause(err))
        } else {
            PeerFailure::Transport(root_cause(err))
        }
    }

    /// From a non-success answer and its (bounded) body. The peer's words are cut to
    /// [`MAX_PEER_TEXT`] characters: they end up in logs, records and status files.
    pub fn from_status(status: u16, body: &[u8]) -> PeerFailure {
        let json = serde_json::from_slice::<serde_json::Value>(body).ok();
        let field = |name: &str| json.as_ref().and_then(|v| v.pointer(&format!("/error/{name}"))).and_then(|m| m.as_str()).map(clip);
        let message = field("message").unwrap_or_else(|| clip(&String::from_utf8_lossy(&body[..body.len().min(MAX_PEER_TEXT * 4)])));
        if status == 401 || status == 403 {
            PeerFailure::Refused { status, code: field("code"), reason: field("reason"), message }
        } else {
            PeerFailure::Status { status, message }
        }
    }
}

/// The most of a peer's own text kept in a failure.
pub const MAX_PEER_TEXT: usize = 200;

fn clip(text: &str) -> String {
    text.chars().take(MAX_PEER_TEXT).collect()
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.chars().take(300).collect()
}

/// The base URL of an axon (`http://ip:port`).
pub fn axon_url(axon: &AxonInfo) -> String {
    match axon.ip {
        std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", axon.port),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", axon.port),
    }
}

/// Reads a response body of at most `limit` bytes.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, PeerFailure> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(PeerFailure::TooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| PeerFailure::Transport(root_cause(&err)))? {
        if out.len() + chunk.len() > limit {
            return Err(PeerFailure::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A successful call: the decoded body and the round-trip time.
#[derive(Debug)]
pub struct Reply<T> {
    /// The body.
    pub body: T,
    /// Wall time from sending to the last byte.
    pub elapsed: Duration,
}

/// Signed JSON calls to peers as one hotkey.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    keypair: Keypair,
    max_response_bytes: usize,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").field("hotkey", &self.keypair.public()).finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client signing with `keypair`, reading answers of at most `max_response_bytes`.
    pub fn new(keypair: Keypair, max_response_bytes: usize) -> Result<PeerClient, PeerFailure> {
        // Axons are plain `http://ip:port`; an `https://` peer is verified against the
        // system's roots.
        let http = ganglion_tls::ClientTls::system()
            .http_builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| PeerFailure::Transport(format!("building the HTTP client: {err}")))?;
        Ok(PeerClient { http, keypair, max_response_bytes })
    }

    /// The signing hotkey.
    pub fn hotkey(&self) -> PublicKey {
        self.keypair.public()
    }

    /// POSTs `body` as JSON to `base + route`, signed for `peer`, and decodes the JSON answer,
    /// all within `timeout`.
    pub async fn call<B: Serialize, R: DeserializeOwned>(&self, base: &str, peer: &PublicKey, route: &str, body: &B, timeout: Duration) -> Result<Reply<R>, PeerFailure> {
        let payload = serde_json::to_vec(body).map_err(|e| PeerFailure::Malformed(format!("encoding the request: {e}")))?;
        let url = format!("{base}{route}");
        let started = Instant::now();
        let exchange = async {
            let response = self
                .http
                .post(&url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .epistula(&self.keypair, Some(peer), payload)
                .send()
                .await
                .map_err(|err| PeerFailure::from_reqwest(&err, timeout))?;
            let status = response.status();
            let bytes = read_bounded(response, self.max_response_bytes).await?;
            Ok::<_, PeerFailure>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| PeerFailure::Timeout { deadline: Deadline::Total, limit_ms: timeout.as_millis() as u64 })??;
        let elapsed = started.elapsed();
        if !status.is_success() {
            return Err(PeerFailure::from_status(status.as_u16(), &bytes));
        }
        let body = serde_json::from_slice(&bytes).map_err(|err| PeerFailure::Malformed(err.to_string()))?;
        Ok(Reply { body, elapsed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_read_from_the_epistula_answer() {
        let body = br#"{"error":{"code":"caller_denied","reason":"no_validator_permit","message":"caller refused: hotkey 5F has no validator permit"}}"#;
        let failure = PeerFailure::from_status(403, body);
        assert!(failure.refused_for_standing(), "{failure:?}");
        assert_eq!(failure.name(), "refused");
        let blacklisted = PeerFailure::from_status(403, br#"{"error":{"code":"caller_denied","reason":"blacklisted","message":"x"}}"#);
        assert!(!blacklisted.refused_for_standing());
        // A 500 that happens to mention permits is not a refusal.
        let other = PeerFailure::from_status(500, b"has no validator permit");
        assert!(!other.refused_for_standing());
        assert!(matches!(other, PeerFailure::Status { status: 500, .. }));
        let json = serde_json::to_value(PeerFailure::Timeout { deadline: Deadline::Total, limit_ms: 31_000 }).unwrap_or_default();
        assert_eq!(json["kind"], "timeout");
        for failure in [PeerFailure::Connect("refused".into()), PeerFailure::Transport("reset".into()), PeerFailure::Malformed("x".into()), PeerFailure::NoAxon] {
            let json = serde_json::to_value(&failure).unwrap();
            assert_eq!(json["kind"], failure.name());
            assert_eq!(serde_json::from_value::<PeerFailure>(json).unwrap(), failure);
        }
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(100_000));
        assert!(matches!(PeerFailure::from_status(500, long.as_bytes()), PeerFailure::Status { message, .. } if message.len() == MAX_PEER_TEXT));
    }
}
