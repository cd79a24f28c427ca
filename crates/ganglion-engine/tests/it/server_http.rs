//! HTTP behaviour of the server on a tiny random-weight model, in memory with `oneshot`:
//! auth, OpenAI error shapes for bad input, SSE framing, metrics.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ganglion_engine::server::{Server, ServerConfig};
use ganglion_engine::Engine;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn tiny_engine(dir: &std::path::Path) -> Arc<Engine> {
    // The smallest llama GGUF we can make from the real file's structure is still large,
    // so the in-crate tiny writer is reused through the public `model` API.
    let path = dir.join("tiny.gguf");
    ganglion_engine::model::write_random_llama_gguf(&path, 3).unwrap();
    Arc::new(Engine::load(&path).unwrap())
}

async fn call(server: &Server, method: &str, uri: &str, key: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = server.router().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn errors_auth_streaming_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(tiny_engine(dir.path()), ServerConfig { model_id: "tiny".into(), api_key: Some("k".into()) }).unwrap();
    let chat = r#"{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":5,"seed":1,"logprobs":true,"top_logprobs":2}"#;

    let (status, body) = call(&server, "POST", "/v1/chat/completions", None, chat).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("\"authentication_error\""), "{body}");

    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, "invalid JSON"),
        (r#"{"model":"other","messages":[{"role":"user","content":"x"}]}"#, StatusCode::NOT_FOUND, "model_not_found"),
        (r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, StatusCode::BAD_REQUEST, "max_tokens"),
        (r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":100000000}"#, StatusCode::BAD_REQUEST, "context_length_exceeded"),
        (r#"{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":7}"#, StatusCode::BAD_REQUEST, "temperature"),
    ];
    for (body, want, needle) in cases {
        let (status, resp) = call(&server, "POST", "/v1/chat/completions", Some("k"), body).await;
        assert_eq!(status, want, "{body} -> {resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
        for field in ["message", "type", "param", "code"] {
            assert!(v["error"].get(field).is_some(), "{resp}");
        }
        assert!(resp.contains(needle), "{resp}");
    }
    let long = format!(r#"{{"model":"tiny","prompt":"{}"}}"#, "a ".repeat(600));
    let (status, resp) = call(&server, "POST", "/v1/completions", Some("k"), &long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert!(resp.contains("context_length_exceeded"), "{resp}");

    let (status, resp) = call(&server, "POST", "/v1/chat/completions", Some("k"), chat).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    let n = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(v["choices"][0]["logprobs"]["content"].as_array().unwrap().len() as u64, n);
    assert!(["stop", "length"].contains(&v["choices"][0]["finish_reason"].as_str().unwrap()));
    // Same seed, same answer.
    let (_, again) = call(&server, "POST", "/v1/chat/completions", Some("k"), chat).await;
    let w: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(v["choices"], w["choices"]);

    let stream = r#"{"model":"tiny","prompt":[5,6,7],"max_tokens":4,"seed":7,"stream":true,"stream_options":{"include_usage":true},"logprobs":1,"return_tokens_as_token_ids":true}"#;
    let (status, resp) = call(&server, "POST", "/v1/completions", Some("k"), stream).await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<&str> = resp.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{resp}");
    let usage: serde_json::Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 4, "{resp}");
    assert!(resp.contains("token_id:"), "{resp}");

    let (status, models) = call(&server, "GET", "/v1/models", Some("k"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(models.contains("\"tiny\""));
    let (status, metrics) = call(&server, "GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("ganglion_engine_requests_total{endpoint=\"/v1/chat/completions\",status=\"401\"} 1"), "{metrics}");
    assert!(metrics.contains("ganglion_engine_generation_tokens_total"), "{metrics}");
}
