//! Signed calls to a miner's routes (validator and renter side): Epistula-signed JSON, a
//! timeout per call, and response bodies read with a size limit.

use std::time::{Duration, Instant};

use ganglion_chain::AxonInfo;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_protocol::epistula::EpistulaRequestExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ComputeError, Result};
use crate::protocol::MAX_RESPONSE_BYTES;

/// The base URL of an axon (`http://ip:port`).
pub fn axon_url(axon: &AxonInfo) -> String {
    match axon.ip {
        std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", axon.port),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", axon.port),
    }
}

/// Calls miners as one hotkey.
#[derive(Clone)]
pub struct MinerClient {
    http: reqwest::Client,
    keypair: Keypair,
}

impl std::fmt::Debug for MinerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinerClient").field("hotkey", &self.keypair.public()).finish_non_exhaustive()
    }
}

/// A successful call: the decoded body and the round-trip time.
#[derive(Debug)]
pub struct Reply<T> {
    /// The body.
    pub body: T,
    /// Wall time from sending to the last byte.
    pub elapsed: Duration,
}

impl MinerClient {
    /// A client signing with `keypair`.
    pub fn new(keypair: Keypair) -> Result<MinerClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| ComputeError::Config(format!("building the HTTP client: {err}")))?;
        Ok(MinerClient { http, keypair })
    }

    /// The signing hotkey.
    pub fn hotkey(&self) -> PublicKey {
        self.keypair.public()
    }

    /// POSTs `body` to `base + route`, signed for `miner`, within `timeout`.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        base: &str,
        miner: &PublicKey,
        route: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Reply<R>> {
        let payload = serde_json::to_vec(body)?;
        let url = format!("{base}{route}");
        let started = Instant::now();
        let exchange = async {
            let response = self
                .http
                .post(&url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .epistula(&self.keypair, Some(miner), payload)
                .send()
                .await
                .map_err(|err| ComputeError::Peer { peer: url.clone(), reason: describe(&err) })?;
            let status = response.status();
            let bytes = read_bounded(response, MAX_RESPONSE_BYTES).await.map_err(|reason| ComputeError::Peer { peer: url.clone(), reason })?;
            Ok::<_, ComputeError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ComputeError::Peer { peer: url.clone(), reason: format!("no answer within {timeout:?}") })??;
        let elapsed = started.elapsed();
        if !status.is_success() {
            let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
            return Err(ComputeError::Peer { peer: url, reason: format!("HTTP {status}: {reason}") });
        }
        let body = serde_json::from_slice(&bytes)
            .map_err(|err| ComputeError::Peer { peer: url, reason: format!("malformed answer: {err}") })?;
        Ok(Reply { body, elapsed })
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_connect() {
        "cannot connect (is the miner running and its axon served?)".into()
    } else if err.is_timeout() {
        "timed out".into()
    } else {
        err.to_string()
    }
}

/// Reads a response body of at most `limit` bytes.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> std::result::Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("answer larger than {limit} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| format!("reading the answer: {err}"))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("answer larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
