//! `--models.mode`: the three sources of the validator's model list, over real files and
//! HTTP, including the failures an operator must hear about.
#![allow(clippy::unwrap_used)]

use crate::common;

use axum::routing::get;
use ganglion_inference::validator::ModelSource;
use ganglion_inference::validator::models::load;

#[tokio::test]
async fn default_config_and_endpoint_sources() {
    let verifiable = vec!["smollm2".to_string()];
    let tls = ganglion_tls::ClientTls::system();
    assert_eq!(load(&ModelSource::Default, &verifiable, &tls).await.unwrap(), verifiable);
    assert!(load(&ModelSource::Default, &[], &tls).await.is_err(), "nothing to verify is an error, not an idle validator");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("models.txt");
    std::fs::write(&file, "# models this validator asks for\nsmollm2\nNousResearch/Meta-Llama-3.1-8B-Instruct  # not verifiable here\n").unwrap();
    assert_eq!(load(&ModelSource::Config(file), &verifiable, &tls).await.unwrap(), vec!["smollm2", "NousResearch/Meta-Llama-3.1-8B-Instruct"]);
    let missing = load(&ModelSource::Config(dir.path().join("nope.txt")), &verifiable, &tls).await.unwrap_err();
    assert!(missing.to_string().contains("nope.txt"), "{missing}");

    let addr = common::serve(
        axum::Router::new()
            .route("/list", get(|| async { axum::Json(serde_json::json!(["a", "b"])) }))
            .route("/openai", get(|| async { axum::Json(serde_json::json!({"object": "list", "data": [{"id": "c"}]})) }))
            .route("/broken", get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "down") })),
    )
    .await;
    assert_eq!(load(&ModelSource::Endpoint(format!("http://{addr}/list")), &verifiable, &tls).await.unwrap(), vec!["a", "b"]);
    assert_eq!(load(&ModelSource::Endpoint(format!("http://{addr}/openai")), &verifiable, &tls).await.unwrap(), vec!["c"]);
    let broken = load(&ModelSource::Endpoint(format!("http://{addr}/broken")), &verifiable, &tls).await.unwrap_err();
    assert!(broken.to_string().contains("502"), "{broken}");
}
