//! `GET /status` and `GET /metrics`, the same on every node (and `/metrics` on
//! `ganglion chain serve`): [`routes`] to merge into a node's own router, [`serve`] to run
//! them on their own address.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::signals::Shutdown;
use crate::status::StatusBoard;

/// `GET /status` (the board's [`crate::status::NodeStatus`] as JSON) and `GET /metrics`.
pub fn routes(board: Arc<StatusBoard>, metrics: Arc<Metrics>) -> Router {
    Router::new().route("/status", get(status)).with_state(board).merge(ganglion_metrics::routes(metrics))
}

async fn status(State(board): State<Arc<StatusBoard>>) -> impl IntoResponse {
    axum::Json(board.get())
}

/// `GET /status` and `GET /metrics` for a miner's axon, answered to loopback callers only
/// (403 otherwise): the axon is public, its operator's figures are not. Needs the router to
/// be served with `ConnectInfo<SocketAddr>` (as [`crate::axon::Axon::serve`] does).
pub fn loopback_routes(board: Arc<StatusBoard>, metrics: Arc<Metrics>) -> Router {
    routes(board, metrics).layer(axum::middleware::from_fn(loopback_only))
}

/// Middleware (`axum::middleware::from_fn(loopback_only)`) that answers 403 to callers that
/// are not on a loopback address.
pub async fn loopback_only(ConnectInfo(peer): ConnectInfo<SocketAddr>, request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if !peer.ip().to_canonical().is_loopback() {
        let body = serde_json::json!({"error": {"code": "forbidden", "message": "status and metrics are served to loopback callers only"}});
        return (axum::http::StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    next.run(request).await
}

/// Serves `router` on `listen` until `shutdown`; returns the bound address and the task.
pub async fn serve(listen: SocketAddr, router: Router, shutdown: Shutdown) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_tls(listen, router, None, shutdown).await
}

/// As [`serve`], over HTTPS when `tls` is given (handshakes bounded in number and time,
/// see [`ganglion_tls::ServerTls::listener`]).
pub async fn serve_tls(listen: SocketAddr, router: Router, tls: Option<&ganglion_tls::ServerTls>, mut shutdown: Shutdown) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let tls = tls.cloned();
    let task = tokio::spawn(async move {
        let served = ganglion_tls::serve(listener, router, tls.as_ref(), false, async move { shutdown.wait().await }).await;
        if let Err(e) = served {
            tracing::error!(target: "ganglion::neuron", %addr, "status server failed: {e}");
        }
    });
    Ok((addr, task))
}

/// A loopback port for a child process to listen on, chosen by a supervisor before it starts
/// the child. Picked at random below the kernel's ephemeral range (32768+ on Linux), where
/// the outgoing connections of every other process cannot take it between this call and the
/// child's bind, checked free, and never handed out twice by this process.
pub fn free_loopback_port() -> std::io::Result<u16> {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..2000 {
        let port = rand::random::<u16>() % 12_000 + 20_000;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback port in 20000–31999"))
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn ports_are_below_the_ephemeral_range_and_distinct() {
        let ports: Vec<u16> = (0..50).map(|_| super::free_loopback_port().unwrap_or_else(|e| panic!("{e}"))).collect();
        assert!(ports.iter().all(|p| (20_000..32_000).contains(p)));
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
