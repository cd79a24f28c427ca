//! Both model stores end to end on loopback.
//!
//! Miner-served: the miner's routes behind the real Epistula verifier (signed for the miner's
//! hotkey); a good fetch reproduces the directory and its hash (plain and hotkey-bound
//! commitments); a commitment whose hash does not match the served files is refused before
//! any file is downloaded; a file changed after publishing, a file that streams forever, a
//! server that stalls and an unsigned request each fail with their own cause, within the
//! deadline, leaving nothing behind.
//!
//! Hugging Face Hub: `ganglion-hf`'s fake hub (the hub's resolve/LFS/API protocol on
//! loopback) serves the same directory as a repo; the snapshot's directory hash equals the
//! published one; a repository over the size limit is refused from the API listing, and a
//! corrupted file by the hub client's hash check.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ganglion_core::keys::Keypair;
use ganglion_evaluation::commitment::ModelCommitment;
use ganglion_evaluation::dirhash::{HashLimits, bind_to_hotkey, directory_hash};
use ganglion_evaluation::store::{
    FetchLimits, FetchRequest, HubStore, MinerStore, ModelStore, ServedModel, StoreError, is_miner_served, miner_router,
    miner_served_commitment,
};
use ganglion_protocol::epistula::{Verifier, VerifierConfig, protect};

fn publish_dir(root: &Path) {
    std::fs::create_dir_all(root.join("tokenizer")).unwrap();
    ganglion_engine::model::write_random_llama_gguf(&root.join("model.gguf"), 5).unwrap();
    std::fs::write(root.join("config.json"), br#"{"architectures":["LlamaForCausalLM"]}"#).unwrap();
    std::fs::write(root.join("tokenizer/tokenizer.json"), vec![b'x'; 70_000]).unwrap();
}

async fn serve(router: axum::Router, miner: &Keypair) -> SocketAddr {
    let verifier = Arc::new(Verifier::allow_all(VerifierConfig { receiver: Some(miner.public()), ..VerifierConfig::default() }));
    let app = protect(router, verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn commitment(hash: &str) -> ModelCommitment {
    ModelCommitment { namespace: "axon".into(), name: "tiny".into(), commit: None, hash: Some(hash.into()), competition_id: Some("l3".into()) }
}

fn request(c: ModelCommitment, miner: &Keypair, addr: SocketAddr, dest: &Path, deadline: Duration) -> FetchRequest {
    FetchRequest {
        commitment: c,
        hotkey: miner.public(),
        axon: Some(format!("http://{addr}")),
        dest: dest.to_path_buf(),
        limits: FetchLimits { deadline, ..FetchLimits::default() },
    }
}

#[tokio::test]
async fn miner_served_models_are_fetched_and_checked() {
    let work = tempfile::tempdir().unwrap();
    let published = work.path().join("published");
    publish_dir(&published);
    let miner = Keypair::from_uri("//EvalMiner").unwrap();
    let validator = Keypair::from_uri("//EvalValidator").unwrap();
    let served = Arc::new(ServedModel::new(&published, &HashLimits::default()).unwrap());
    let plain = served.directory_hash();
    assert_eq!(plain, directory_hash(&published, &HashLimits::default()).unwrap());
    let addr = serve(miner_router(served.clone()), &miner).await;
    let store = MinerStore::new(validator.clone(), &ganglion_tls::ClientTls::system()).unwrap();

    // Plain and hotkey-bound commitments.
    for (i, committed) in [plain.clone(), bind_to_hotkey(&plain, &miner.public().to_ss58())].into_iter().enumerate() {
        let dest = work.path().join(format!("got{i}"));
        let got = store.fetch(&request(commitment(&committed), &miner, addr, &dest, Duration::from_secs(30))).await.unwrap();
        assert_eq!(got.hash, plain);
        assert_eq!(directory_hash(&dest, &HashLimits::default()).unwrap(), plain);
        assert_eq!(std::fs::read(dest.join("model.gguf")).unwrap(), std::fs::read(published.join("model.gguf")).unwrap());
    }

    // What the miner would commit: parsed back from its string, it fetches as well.
    let (published_commitment, rendered) = miner_served_commitment(&served, "tiny-v1", "g1", &miner.public()).unwrap();
    assert!(rendered.len() <= 128 && rendered.starts_with("axon:tiny-v1:None:") && rendered.ends_with(":g1"), "{rendered}");
    let parsed = ModelCommitment::parse(&rendered).unwrap();
    assert_eq!(parsed, published_commitment);
    assert!(is_miner_served(&parsed));
    let dest = work.path().join("from-chain-string");
    let got = store.fetch(&request(parsed, &miner, addr, &dest, Duration::from_secs(30))).await.unwrap();
    assert_eq!(got.hash, plain);

    // Bound to another hotkey (a copier committing someone else's bound hash): refused before downloading.
    let other = bind_to_hotkey(&plain, &validator.public().to_ss58());
    let dest = work.path().join("copier");
    let err = store.fetch(&request(commitment(&other), &miner, addr, &dest, Duration::from_secs(30))).await.unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");
    assert!(!dest.exists() && !dest.with_extension("partial").exists());

    // The served file changed after publishing: its bytes no longer have the announced hash.
    std::fs::write(published.join("config.json"), br#"{"architectures":["Evil0000000000000000"]}"#).unwrap();
    let dest = work.path().join("changed");
    let err = store.fetch(&request(commitment(&plain), &miner, addr, &dest, Duration::from_secs(30))).await.unwrap_err();
    assert!(matches!(&err, StoreError::FileMismatch { file, .. } if file == "config.json"), "{err}");
    assert!(!dest.exists() && !dest.with_extension("partial").exists());

    // An unsigned request is refused by the miner's Epistula layer.
    let raw = ganglion_tls::ClientTls::system().http_client().unwrap();
    let status = raw.post(format!("http://{addr}/model/manifest")).body("{}").send().await.unwrap().status();
    assert_eq!(status.as_u16() / 100, 4, "{status}");
}

#[tokio::test]
async fn hostile_miners_are_bounded() {
    let work = tempfile::tempdir().unwrap();
    let published = work.path().join("published");
    publish_dir(&published);
    let miner = Keypair::from_uri("//Hostile").unwrap();
    let validator = Keypair::from_uri("//EvalValidator").unwrap();
    let served = Arc::new(ServedModel::new(&published, &HashLimits::default()).unwrap());
    let plain = served.directory_hash();
    let manifest = served.manifest().clone();
    let store = MinerStore::new(validator, &ganglion_tls::ClientTls::system()).unwrap();

    // The right manifest, then a file that never ends.
    let m = manifest.clone();
    let endless = axum::Router::new()
        .route("/model/manifest", axum::routing::post(move || { let m = m.clone(); async move { axum::Json(m) } }))
        .route(
            "/model/file",
            axum::routing::post(|| async {
                let stream = futures::stream::repeat_with(|| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 65536])));
                axum::body::Body::from_stream(stream)
            }),
        );
    let addr = serve(endless, &miner).await;
    let started = Instant::now();
    let err = store.fetch(&request(commitment(&plain), &miner, addr, &work.path().join("a"), Duration::from_secs(20))).await.unwrap_err();
    assert!(matches!(err, StoreError::FileMismatch { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A manifest that stalls: the deadline.
    let stall = axum::Router::new().route(
        "/model/manifest",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "{}"
        }),
    );
    let addr = serve(stall, &miner).await;
    let started = Instant::now();
    let err = store.fetch(&request(commitment(&plain), &miner, addr, &work.path().join("b"), Duration::from_millis(800))).await.unwrap_err();
    assert!(matches!(err, StoreError::Deadline(_) | StoreError::Network(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A manifest that is garbage, or names a path outside the directory.
    let bad = axum::Router::new().route(
        "/model/manifest",
        axum::routing::post(|| async { axum::Json(serde_json::json!({"files": [{"path": "../../etc/passwd", "size": 1, "sha256": "x"}]})) }),
    );
    let addr = serve(bad, &miner).await;
    let err = store.fetch(&request(commitment(&plain), &miner, addr, &work.path().join("c"), Duration::from_secs(5))).await.unwrap_err();
    assert!(matches!(err, StoreError::Protocol(_)), "{err}");
}

#[tokio::test]
async fn hub_models_are_fetched_through_the_hub_protocol() {
    use ganglion_hf::testkit::{FakeHub, FakeRepo};
    let work = tempfile::tempdir().unwrap();
    let published = work.path().join("published");
    publish_dir(&published);
    let plain = directory_hash(&published, &HashLimits::default()).unwrap();
    let repo = FakeRepo::from_dir("nous/tiny", &published, 1024).unwrap();
    let commit = repo.commit();
    let hub = FakeHub::start([repo]).await.unwrap();
    let config = ganglion_hf::HubConfig::new(&hub.endpoint(), work.path().join("hf-cache")).unwrap();
    let store = HubStore::new(ganglion_hf::HubClient::new(config, &ganglion_tls::ClientTls::system()).unwrap());
    let miner = Keypair::from_uri("//HubMiner").unwrap();
    let c = ModelCommitment {
        namespace: "nous".into(),
        name: "tiny".into(),
        commit: Some(commit.clone()),
        hash: Some(bind_to_hotkey(&plain, &miner.public().to_ss58())),
        competition_id: Some("l3".into()),
    };
    let req = |c: ModelCommitment, limits: FetchLimits| FetchRequest { commitment: c, hotkey: miner.public(), axon: None, dest: work.path().join("unused"), limits };
    let got = store.fetch(&req(c.clone(), FetchLimits::default())).await.unwrap();
    assert_eq!(got.hash, plain);
    assert!(got.dir.ends_with(format!("snapshots/{commit}")) || got.dir.to_string_lossy().contains(&commit), "{}", got.dir.display());
    assert_eq!(std::fs::read(got.dir.join("model.gguf")).unwrap(), std::fs::read(published.join("model.gguf")).unwrap());

    // Over the size limit: refused from the listing.
    let small = FetchLimits { max_bytes: 50_000, ..FetchLimits::default() };
    assert!(matches!(store.fetch(&req(c.clone(), small)).await, Err(StoreError::TooLarge(_))));

    // A commitment of other files: the hash check fails.
    let wrong = ModelCommitment { hash: Some(plain.replace('A', "B") + "x"), ..c.clone() };
    assert!(matches!(store.fetch(&req(wrong, FetchLimits::default())).await, Err(StoreError::HashMismatch { .. })));

    // Corrupted bytes on a fresh cache: the hub client's hash check.
    hub.corrupt("nous/tiny", "config.json");
    let config = ganglion_hf::HubConfig::new(&hub.endpoint(), work.path().join("hf-cache-2")).unwrap();
    let fresh = HubStore::new(ganglion_hf::HubClient::new(config, &ganglion_tls::ClientTls::system()).unwrap());
    let err = fresh.fetch(&req(c, FetchLimits::default())).await.unwrap_err();
    assert!(matches!(err, StoreError::Hub(_)), "{err}");
}
