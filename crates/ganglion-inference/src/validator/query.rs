//! The validator's client to miners ("dendrite"): Epistula-signed requests with connect,
//! first-token and total deadlines, every answer read through the bounded stream reader.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_protocol::epistula::EpistulaRequestExt;
use serde_json::Value;

use ganglion_neuron::PeerFailure;
use ganglion_neuron::peer::Deadline;

use crate::cause::Failure;
use crate::error::{InferenceError, Result};
use crate::openai::{MODEL_HEADER, InferenceRequest};
use crate::stream::{StreamError, StreamLimits, Streamed, read_stream};

/// A miner to query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Uid.
    pub uid: u16,
    /// Hotkey (the Epistula receiver).
    pub hotkey: PublicKey,
    /// Coldkey (for records).
    pub coldkey: PublicKey,
    /// Served axon.
    pub addr: SocketAddr,
}

/// Signs and sends requests to miners.
#[derive(Debug, Clone)]
pub struct Dendrite {
    http: reqwest::Client,
    keypair: Keypair,
}

/// Most bytes of an error body kept.
const ERROR_BODY_BYTES: usize = 512;

impl Dendrite {
    /// A client signing with `keypair`, refusing connections slower than `connect_timeout`.
    pub fn new(keypair: Keypair, connect_timeout: Duration) -> Result<Dendrite> {
        // Axons are plain `http://ip:port` (Epistula signs every request).
        let http = ganglion_tls::ClientTls::system()
            .http_builder()
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| InferenceError::Http(e.to_string()))?;
        Ok(Dendrite { http, keypair })
    }

    /// The signing key.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Sends `request` to `target` and reads the streamed answer under `limits`.
    pub async fn complete(&self, target: &Target, request: &InferenceRequest, limits: StreamLimits) -> std::result::Result<Streamed, StreamError> {
        let body = serde_json::to_vec(&request.body()).unwrap_or_default();
        let url = format!("http://{}{}", target.addr, request.endpoint.path());
        self.send_and_read(target, &url, &request.model, body, request.endpoint, limits).await
    }

    /// Sends an already-built body (organic traffic) and reads the answer.
    pub(crate) async fn send_and_read(
        &self,
        target: &Target,
        url: &str,
        model: &str,
        body: Vec<u8>,
        endpoint: crate::openai::Endpoint,
        limits: StreamLimits,
    ) -> std::result::Result<Streamed, StreamError> {
        let started = Instant::now();
        let response = match self.send(target, url, model, body, limits.first_token_timeout).await {
            Ok(r) => r,
            Err(failure) => return Err(StreamError { failure, partial: Box::new(Streamed { total: started.elapsed(), ..Default::default() }) }),
        };
        read_stream(response.bytes_stream(), endpoint, limits, started).await
    }

    /// Sends a signed POST and returns the response once its headers arrived with status
    /// 200; anything else is a [`Failure`] with its cause.
    pub(crate) async fn send(&self, target: &Target, url: &str, model: &str, body: Vec<u8>, header_timeout: Duration) -> std::result::Result<reqwest::Response, Failure> {
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(MODEL_HEADER, model)
            .epistula(&self.keypair, Some(&target.hotkey), body);
        let limit_ms = u64::try_from(header_timeout.as_millis()).unwrap_or(u64::MAX);
        let response = match tokio::time::timeout(header_timeout, request.send()).await {
            Err(_) => {
                let failure = PeerFailure::Timeout { deadline: Deadline::FirstByte, limit_ms };
                return Err(Failure::peer_with(&failure, format!("no response headers within {:.1}s", header_timeout.as_secs_f64())));
            }
            Ok(Err(e)) => return Err(transport_failure(&e, target, limit_ms)),
            Ok(Ok(r)) => r,
        };
        if response.status() != reqwest::StatusCode::OK {
            let status = response.status();
            let body = tokio::time::timeout(Duration::from_secs(2), first_bytes(response, ERROR_BODY_BYTES)).await.unwrap_or_default();
            // Refusals are read from the status and the Epistula `error.code`/`error.reason`.
            let failure = PeerFailure::from_status(status.as_u16(), &body);
            let detail = match &failure {
                PeerFailure::Refused { code, reason, message, .. } => {
                    format!("status {status} ({}): {}", [code.as_deref(), reason.as_deref()].into_iter().flatten().collect::<Vec<_>>().join("/"), message.trim())
                }
                _ => format!("status {status}: {}", String::from_utf8_lossy(&body).trim()),
            };
            return Err(Failure::peer_with(&failure, detail));
        }
        Ok(response)
    }

    /// `GET /models`: the models the miner says it serves (`None` if it cannot be asked).
    pub async fn served_models(&self, target: &Target, timeout: Duration) -> Option<Vec<String>> {
        let url = format!("http://{}/models", target.addr);
        let request = self.http.get(&url).epistula(&self.keypair, Some(&target.hotkey), Vec::new());
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(target: "ganglion::inference", uid = target.uid, "GET /models failed: {}", root_cause(&e));
                return None;
            }
            Err(_) => {
                tracing::debug!(target: "ganglion::inference", uid = target.uid, "GET /models timed out");
                return None;
            }
        };
        if !response.status().is_success() {
            tracing::debug!(target: "ganglion::inference", uid = target.uid, status = %response.status(), "GET /models refused");
            return None;
        }
        let bytes = tokio::time::timeout(timeout, crate::reference::read_limited(response, 64 * 1024)).await.ok()?.ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        // v4 answers a list; v5 a {model: qps} object.
        let names: Vec<String> = match value {
            Value::Array(items) => items.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Value::Object(map) => map.keys().cloned().collect(),
            _ => return None,
        };
        Some(names.into_iter().take(256).map(|n| n.chars().take(256).collect()).collect())
    }

    /// `POST /models`: tells the miner which models this validator asks for.
    pub async fn announce_models(&self, target: &Target, models: &[String], timeout: Duration) -> bool {
        let url = format!("http://{}/models", target.addr);
        let body = serde_json::to_vec(models).unwrap_or_default();
        let request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .epistula(&self.keypair, Some(&target.hotkey), body);
        matches!(tokio::time::timeout(timeout, request.send()).await, Ok(Ok(r)) if r.status().is_success())
    }
}

/// A reqwest error before the headers, as the runtime classifies it: a connection that
/// could not be made (`CONNECT`; a connect deadline is a `TIMEOUT`), or a broken exchange.
fn transport_failure(e: &reqwest::Error, target: &Target, limit_ms: u64) -> Failure {
    let failure = if e.is_connect() && e.is_timeout() {
        PeerFailure::Timeout { deadline: Deadline::Connect, limit_ms }
    } else if e.is_connect() {
        PeerFailure::Connect(root_cause(e))
    } else if e.is_timeout() {
        PeerFailure::Timeout { deadline: Deadline::Total, limit_ms }
    } else {
        PeerFailure::Transport(root_cause(e))
    };
    let detail = match &failure {
        PeerFailure::Connect(why) => format!("cannot connect to {}: {why}", target.addr),
        PeerFailure::Timeout { deadline: Deadline::Connect, .. } => format!("connecting to {} timed out", target.addr),
        PeerFailure::Timeout { .. } => format!("request to {} timed out", target.addr),
        other => format!("request to {} failed: {other}", target.addr),
    };
    Failure::peer_with(&failure, detail)
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

async fn first_bytes(response: reqwest::Response, limit: usize) -> Vec<u8> {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]);
        if out.len() >= limit {
            break;
        }
    }
    out
}
