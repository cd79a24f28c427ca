//! [`LocalChain`]: the [`Chain`] trait over a node's HTTP/SSE API (`ganglion_chain_node::http`), so
//! miners and validators in separate processes share one chain.
//!
//! Every request has a timeout and every answer is read with a size cap; the block
//! subscription caps each SSE event too.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ganglion_core::keys::PublicKey;
use serde::de::DeserializeOwned;

use crate::api::{AccountInfo, BlockHeader, BlockStream, Chain, ChainInfo, Commitment, NeuronsSnapshot, SubnetInfo, TxReceipt};
use crate::commit_reveal::WeightCommit;
use crate::error::{ChainError, ChainResult, ErrorBody};
use crate::hyperparams::Hyperparams;
use crate::tx::SignedTransaction;

/// Default chain URL: `$GANGLION_CHAIN_URL`, else the local node.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9944";

/// Largest answer accepted from the node (a 4096-neuron metagraph is ≈ 2 MB).
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Largest single SSE event.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Resolve `--subtensor.network`: `local` (or empty) → `$GANGLION_CHAIN_URL` or
/// [`DEFAULT_URL`]; `http://…` as given. `ws://`/`wss://`/`finney`/`test` are refused: this
/// client speaks only to ganglion nodes.
pub fn resolve_network(network: Option<&str>) -> Result<String, ChainError> {
    let env = std::env::var("GANGLION_CHAIN_URL").ok().filter(|s| !s.is_empty());
    match network.map(str::trim) {
        None | Some("") | Some("local") => Ok(env.unwrap_or_else(|| DEFAULT_URL.to_string())),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(url.trim_end_matches('/').to_string()),
        Some(other) => Err(ChainError::Rejected {
            name: "UnsupportedNetwork".into(),
            message: format!(
                "network `{other}` is not supported yet: pass `local` or the http:// URL of a `ganglion chain serve` node (a subtensor backend is not implemented)"
            ),
        }),
    }
}

/// A [`Chain`] reached over HTTP.
#[derive(Debug, Clone)]
pub struct LocalChain {
    base: String,
    http: reqwest::Client,
    stream_http: reqwest::Client,
}

impl LocalChain {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:9944`; `https://` verified
    /// against the system's roots).
    pub fn new(base: &str) -> ChainResult<LocalChain> {
        LocalChain::with_tls(base, &ganglion_tls::ClientTls::system())
    }

    /// A client for the node at `base`, verifying `https://` with `tls`'s roots.
    pub fn with_tls(base: &str, tls: &ganglion_tls::ClientTls) -> ChainResult<LocalChain> {
        let base = base.trim_end_matches('/').to_string();
        let build = |timeout: Option<Duration>| {
            let mut b = tls.http_builder().connect_timeout(Duration::from_secs(5)).pool_idle_timeout(Duration::from_secs(30));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            b.build().map_err(|e| ChainError::Transport { url: base.clone(), reason: e.to_string() })
        };
        Ok(LocalChain { http: build(Some(Duration::from_secs(30)))?, stream_http: build(None)?, base })
    }

    /// The node URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn transport(&self, e: impl std::fmt::Display) -> ChainError {
        ChainError::Transport { url: self.base.clone(), reason: e.to_string() }
    }

    async fn read_body(&self, mut resp: reqwest::Response) -> ChainResult<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ChainError::Protocol(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> ChainResult<T> {
        let status = resp.status();
        let body = self.read_body(resp).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| ChainError::Protocol(format!("cannot decode answer: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(err) if status.is_client_error() => Err(ChainError::Rejected { name: err.error, message: err.message }),
            Ok(err) => Err(ChainError::Node(err.message)),
            Err(_) => Err(ChainError::Protocol(format!("HTTP {status} without an error body"))),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ChainResult<T> {
        let resp = self.http.get(format!("{}{}", self.base, path)).send().await.map_err(|e| self.transport(ganglion_tls::describe_http_error(&e)))?;
        self.decode(resp).await
    }
}

/// Parse SSE text into complete events' `data`, keeping the incomplete tail in `buf`.
fn drain_events(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let event: String = buf.drain(..end + 2).collect();
        let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
        if !data.is_empty() {
            out.push(data.join("\n"));
        }
    }
    out
}

#[async_trait]
impl Chain for LocalChain {
    async fn info(&self) -> ChainResult<ChainInfo> {
        self.get("/v1/info").await
    }

    async fn subscribe_blocks(&self) -> ChainResult<BlockStream> {
        let url = format!("{}/v1/blocks/subscribe", self.base);
        let resp = self.stream_http.get(&url).send().await.map_err(|e| self.transport(ganglion_tls::describe_http_error(&e)))?;
        if !resp.status().is_success() {
            return Err(ChainError::Protocol(format!("subscription answered HTTP {}", resp.status())));
        }
        let base = self.base.clone();
        let bytes = resp.bytes_stream();
        let stream = futures::stream::unfold((bytes, String::new(), Vec::<BlockHeader>::new(), false), move |(mut bytes, mut buf, mut ready, done)| {
            let base = base.clone();
            async move {
                loop {
                    if let Some(h) = ready.pop() {
                        return Some((Ok(h), (bytes, buf, ready, done)));
                    }
                    if done {
                        return None;
                    }
                    match bytes.next().await {
                        None => return None,
                        Some(Err(e)) => {
                            let err = ChainError::Transport { url: base, reason: e.to_string() };
                            return Some((Err(err), (bytes, buf, ready, true)));
                        }
                        Some(Ok(chunk)) => {
                            buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
                            if buf.len() > MAX_EVENT_BYTES {
                                let err = ChainError::Protocol(format!("SSE event larger than {MAX_EVENT_BYTES} bytes"));
                                return Some((Err(err), (bytes, String::new(), ready, true)));
                            }
                            let mut parsed: Vec<BlockHeader> =
                                drain_events(&mut buf).iter().filter_map(|d| serde_json::from_str(d).ok()).collect();
                            parsed.reverse();
                            ready = parsed;
                        }
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn account(&self, account: &PublicKey) -> ChainResult<AccountInfo> {
        self.get(&format!("/v1/accounts/{}", account.to_ss58())).await
    }

    async fn subnets(&self) -> ChainResult<Vec<SubnetInfo>> {
        self.get("/v1/subnets").await
    }

    async fn subnet(&self, netuid: u16) -> ChainResult<SubnetInfo> {
        self.get(&format!("/v1/subnets/{netuid}")).await
    }

    async fn hyperparams(&self, netuid: u16) -> ChainResult<Hyperparams> {
        self.get(&format!("/v1/subnets/{netuid}/hyperparams")).await
    }

    async fn neurons(&self, netuid: u16, since: Option<u64>) -> ChainResult<Option<NeuronsSnapshot>> {
        match since {
            Some(b) => self.get(&format!("/v1/subnets/{netuid}/neurons?since={b}")).await,
            None => self.get(&format!("/v1/subnets/{netuid}/neurons")).await,
        }
    }

    async fn commitment(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Option<Commitment>> {
        self.get(&format!("/v1/subnets/{netuid}/commitments/{}", hotkey.to_ss58())).await
    }

    async fn weights(&self, netuid: u16) -> ChainResult<Vec<Vec<(u16, u16)>>> {
        self.get(&format!("/v1/subnets/{netuid}/weights")).await
    }

    async fn weight_commits(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Vec<WeightCommit>> {
        self.get(&format!("/v1/subnets/{netuid}/weight_commits/{}", hotkey.to_ss58())).await
    }

    async fn submit(&self, tx: SignedTransaction) -> ChainResult<TxReceipt> {
        let resp = self.http.post(format!("{}/v1/tx", self.base)).json(&tx).send().await.map_err(|e| self.transport(ganglion_tls::describe_http_error(&e)))?;
        self.decode(resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parsing_keeps_partial_tail() {
        let mut buf = "event: block\ndata: {\"a\":1}\n\nevent: block\ndata: {\"a\"".to_string();
        assert_eq!(drain_events(&mut buf), vec!["{\"a\":1}".to_string()]);
        assert_eq!(buf, "event: block\ndata: {\"a\"");
        buf.push_str(":2}\n\n: keep-alive\n\n");
        assert_eq!(drain_events(&mut buf), vec!["{\"a\":2}".to_string()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn network_resolution() {
        assert!(resolve_network(Some("http://127.0.0.1:1/")).is_ok_and(|u| u == "http://127.0.0.1:1"));
        assert_eq!(resolve_network(Some("finney")).map_err(|e| e.name().map(str::to_string)), Err(Some("UnsupportedNetwork".into())));
    }
}
