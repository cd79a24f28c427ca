//! The node's HTTP/JSON API and SSE block subscription (axum), and [`spawn_node`], which
//! starts a node, its block loop and its server together.
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | GET | `/v1/info` | [`ChainInfo`] |
//! | GET | `/v1/blocks/{number}` | [`BlockHeader`] |
//! | GET | `/v1/blocks/subscribe` | SSE, one `block` event ([`BlockHeader`] JSON) per block |
//! | GET | `/v1/accounts/{ss58}` | [`ganglion_chain::AccountInfo`] |
//! | GET | `/v1/subnets` | `[SubnetInfo]` |
//! | GET | `/v1/subnets/{netuid}` | [`ganglion_chain::SubnetInfo`] |
//! | GET | `/v1/subnets/{netuid}/hyperparams` | [`ganglion_chain::Hyperparams`] |
//! | GET | `/v1/subnets/{netuid}/neurons?since=B` | [`ganglion_chain::NeuronsSnapshot`], or `null` if unchanged after B |
//! | GET | `/v1/subnets/{netuid}/commitments/{ss58}` | [`ganglion_chain::Commitment`] or `null` |
//! | GET | `/v1/subnets/{netuid}/weights` | `[[[uid, u16]]]`: the weights matrix, rows by uid |
//! | GET | `/v1/subnets/{netuid}/weight_commits/{ss58}` | `[WeightCommit]`: the hotkey's pending weight commits, oldest first |
//! | POST | `/v1/tx` | body: [`ganglion_chain::SignedTransaction`]; answer [`ganglion_chain::TxReceipt`] |
//! | GET | `/metrics` | Prometheus metrics (blocks, block commit time, transactions by call and result) |
//!
//! Errors are `{"error": Name, "message": one line}` with status 400 (rejected), 404 (no such
//! subnet or block) or 500 (node failure; details logged, not sent). Bodies are limited to
//! [`MAX_TX_BYTES`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use ganglion_core::keys::PublicKey;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use ganglion_chain::api::{BlockHeader, ChainInfo};
use ganglion_chain::error::ChainError;
use crate::node::{Node, NodeConfig};
use ganglion_chain::tx::MAX_TX_BYTES;

/// The JSON error body (defined next to the client that reads it).
pub use ganglion_chain::error::ErrorBody;

struct ApiError(ChainError);

impl From<ChainError> for ApiError {
    fn from(e: ChainError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self.0 {
            ChainError::Rejected { name, message } => {
                let status = if name == "SubnetNotExists" || name == "NotFound" { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
                (status, ErrorBody { error: name, message })
            }
            other => {
                tracing::error!(target: "ganglion::chain", "request failed: {other}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody { error: "NodeFailure".into(), message: "the node failed internally; see its log".into() },
                )
            }
        };
        (status, axum::Json(body)).into_response()
    }
}

fn rejected(name: &str, message: String) -> ApiError {
    ApiError(ChainError::Rejected { name: name.into(), message })
}

fn parse_key(text: &str) -> Result<PublicKey, ApiError> {
    text.parse::<PublicKey>()
        .map_err(|e| rejected("InvalidAccount", format!("`{text}` is not an SS58 address or 0x-hex public key: {e}")))
}

type AppState = State<Arc<Node>>;
type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// The API router over a node.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/blocks/subscribe", get(subscribe))
        .route("/v1/blocks/{number}", get(block))
        .route("/v1/accounts/{account}", get(account))
        .route("/v1/subnets", get(subnets))
        .route("/v1/subnets/{netuid}", get(subnet))
        .route("/v1/subnets/{netuid}/hyperparams", get(hyperparams))
        .route("/v1/subnets/{netuid}/neurons", get(neurons))
        .route("/v1/subnets/{netuid}/commitments/{hotkey}", get(commitment))
        .route("/v1/subnets/{netuid}/weights", get(weights))
        .route("/v1/subnets/{netuid}/weight_commits/{hotkey}", get(weight_commits))
        .route("/v1/tx", post(submit))
        .layer(DefaultBodyLimit::max(MAX_TX_BYTES))
        .with_state(node.clone())
        .merge(ganglion_metrics::routes(node.metrics().clone()))
}

async fn info(State(node): AppState) -> ApiResult<ChainInfo> {
    Ok(axum::Json(node.info_now()?))
}

async fn block(State(node): AppState, Path(number): Path<u64>) -> ApiResult<BlockHeader> {
    match node.block(number)? {
        Some(h) => Ok(axum::Json(h)),
        None => Err(rejected("NotFound", format!("block {number} is not committed yet"))),
    }
}

async fn subscribe(State(node): AppState) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = tokio_stream::wrappers::BroadcastStream::new(node.block_receiver())
        .filter_map(|item| async move {
            let header = item.ok()?;
            let data = serde_json::to_string(&header).ok()?;
            Some(Ok(Event::default().event("block").data(data)))
        })
        .take_until(node.closed());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}

async fn account(State(node): AppState, Path(account): Path<String>) -> ApiResult<ganglion_chain::api::AccountInfo> {
    let key = parse_key(&account)?;
    Ok(axum::Json(node.with_state(|s| s.account(&key))?))
}

async fn subnets(State(node): AppState) -> ApiResult<Vec<ganglion_chain::api::SubnetInfo>> {
    Ok(axum::Json(node.subnets_now()?))
}

async fn subnet(State(node): AppState, Path(netuid): Path<u16>) -> ApiResult<ganglion_chain::api::SubnetInfo> {
    Ok(axum::Json(node.subnet_now(netuid)?))
}

async fn hyperparams(State(node): AppState, Path(netuid): Path<u16>) -> ApiResult<ganglion_chain::hyperparams::Hyperparams> {
    Ok(axum::Json(node.hyperparams_now(netuid)?))
}

#[derive(Debug, Deserialize)]
struct SinceQuery {
    since: Option<u64>,
}

async fn neurons(
    State(node): AppState,
    Path(netuid): Path<u16>,
    Query(q): Query<SinceQuery>,
) -> ApiResult<Option<ganglion_chain::api::NeuronsSnapshot>> {
    Ok(axum::Json(node.neurons_now(netuid, q.since)?))
}

async fn commitment(
    State(node): AppState,
    Path((netuid, hotkey)): Path<(u16, String)>,
) -> ApiResult<Option<ganglion_chain::api::Commitment>> {
    let key = parse_key(&hotkey)?;
    Ok(axum::Json(node.commitment_now(netuid, &key)?))
}

async fn weights(State(node): AppState, Path(netuid): Path<u16>) -> ApiResult<Vec<Vec<(u16, u16)>>> {
    Ok(axum::Json(node.weights_now(netuid)?))
}

async fn weight_commits(
    State(node): AppState,
    Path((netuid, hotkey)): Path<(u16, String)>,
) -> ApiResult<Vec<ganglion_chain::commit_reveal::WeightCommit>> {
    let key = parse_key(&hotkey)?;
    Ok(axum::Json(node.weight_commits_now(netuid, &key)?))
}

async fn submit(State(node): AppState, body: Bytes) -> ApiResult<ganglion_chain::api::TxReceipt> {
    let receipt = tokio::task::spawn_blocking(move || node.submit_bytes(&body))
        .await
        .map_err(|e| ApiError(ChainError::Node(format!("submit task failed: {e}"))))??;
    Ok(axum::Json(receipt))
}

/// A node with its block loop and HTTP server running.
#[derive(Debug)]
pub struct NodeHandle {
    /// The node, for in-process use.
    pub node: Arc<Node>,
    /// Where the API listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// The API base URL (`http://addr`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop producing blocks and serving; waits for both, and (for up to 5 s) for the last
    /// request task still holding the node to let go, so that the database is closed when
    /// this returns and the same data directory can be reopened at once.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&self.node) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Wait until the node stops (storage failure or shutdown).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Open the node in `config.data_dir`, bind `addr`, and run the block loop and API server
/// until [`NodeHandle::shutdown`].
pub async fn spawn_node(config: NodeConfig, addr: SocketAddr) -> Result<NodeHandle, ChainError> {
    let node = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Node::open(config))
            .await
            .map_err(|e| ChainError::Node(format!("open task failed: {e}")))??
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ChainError::Node(format!("cannot listen on {addr}: {e}; pick another --port")))?;
    let addr = listener.local_addr().map_err(|e| ChainError::Node(format!("listener address: {e}")))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = router(node.clone());
    let loop_node = node.clone();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(loop_node.closed());
        let server_task = tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(target: "ganglion::chain", "API server failed: {e}");
            }
        });
        loop_node
            .clone()
            .run(async move {
                let _ = stop_rx.await;
            })
            .await;
        loop_node.close();
        // Give open connections two seconds to finish before cutting them.
        let abort = server_task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), server_task).await.is_err() {
            abort.abort();
        }
    });
    Ok(NodeHandle { node, addr, stop: Some(stop_tx), task })
}
