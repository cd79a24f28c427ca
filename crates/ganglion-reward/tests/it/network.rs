//! The two network clients against fake servers on loopback: the judge (ratings, refusals,
//! garbage, oversized answers) and the miner querier (answers, a timeout, non-UTF-8 bytes, an
//! oversized body, a uid without an axon), each failure a `None` or a failure, never a panic.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use ganglion_core::keys::Keypair;
use ganglion_reward::forward::Querier;
use ganglion_reward::judge::{Judge, JudgeConfig};
use ganglion_reward::validator::MinerQuerier;

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    format!("http://{addr}")
}

fn chat(content: &str) -> axum::response::Response {
    axum::Json(json!({"choices": [{"message": {"role": "assistant", "content": content}}]}))
        .into_response()
}

async fn fake_judge(body: axum::Json<Value>) -> axum::response::Response {
    let user = body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if user.contains("GOOD") {
        chat("9")
    } else if user.contains("MEH") {
        chat("Rating: 4.5")
    } else if user.contains("GARBAGE") {
        chat("I cannot rate this.")
    } else if user.contains("ERROR") {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    } else {
        chat(&"7".repeat(200_000))
    }
}

#[tokio::test]
async fn judge_ratings_and_failures() {
    ganglion_tls::install_crypto_provider();
    let url = serve(Router::new().route("/v1/chat/completions", post(fake_judge))).await;
    let config = JudgeConfig {
        url: format!("{url}/v1"),
        model: "judge".into(),
        api_key: Some("k".into()),
        timeout: Duration::from_secs(5),
        concurrency: 2,
    };
    let judge = Judge::new(config, &ganglion_tls::ClientTls::system()).unwrap();
    let completions: Vec<Option<String>> =
        ["GOOD answer", "MEH answer", "GARBAGE", "ERROR", "HUGE"]
            .iter()
            .map(|s| Some((*s).to_owned()))
            .chain([None])
            .collect();
    let ratings = judge.rate_all("a prompt", &completions).await;
    assert_eq!(ratings, vec![Some(0.9), Some(0.45), None, None, None, None]);
}

async fn fake_miner(body: axum::Json<Value>) -> axum::response::Response {
    let prompt = body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match prompt.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            chat("late")
        }
        "bytes" => (
            StatusCode::OK,
            [("content-type", "application/json")],
            b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\"}}]}".to_vec(),
        )
            .into_response(),
        "huge" => chat(&"x".repeat(400_000)),
        _ => chat(&format!("echo: {prompt}")),
    }
}

#[tokio::test]
async fn miner_querier_answers_and_failures() {
    ganglion_tls::install_crypto_provider();
    let url = serve(Router::new().route("/v1/chat/completions", post(fake_miner))).await;
    let key = Keypair::from_seed(&[7u8; 32]).unwrap();
    let miner = Keypair::from_seed(&[8u8; 32]).unwrap().public();
    let mut querier = MinerQuerier::new(key, "smollm2".into(), 64, 4).unwrap();
    for uid in 0..3 {
        querier.set_target(uid, url.clone(), miner);
    }
    let answers = querier
        .query(&[0, 1, 2, 9], "hello", Duration::from_secs(2))
        .await;
    assert_eq!(
        answers.iter().map(|a| a.uid).collect::<Vec<_>>(),
        vec![0, 1, 2, 9]
    );
    assert_eq!(answers[0].completion.as_deref(), Some("echo: hello"));
    assert!(
        answers[3].completion.is_none() && answers[3].failure.is_some(),
        "no axon"
    );
    for (prompt, what) in [
        ("slow", "timeout"),
        ("bytes", "non-UTF-8"),
        ("huge", "oversized"),
    ] {
        let started = std::time::Instant::now();
        let answer = &querier.query(&[1], prompt, Duration::from_secs(1)).await[0];
        assert!(answer.completion.is_none(), "{what}: {answer:?}");
        assert!(answer.failure.is_some(), "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what} took {:?}",
            started.elapsed()
        );
    }
}
