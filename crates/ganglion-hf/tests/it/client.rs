//! `HubClient` against the fake hub: a pull with a token into the Python cache layout, 401
//! without it, resumption with a `Range` request after a dropped connection (in one call and
//! across runs), a corrupted file refused with nothing left behind, revisions resolved to
//! their commit, and the typed not-found errors. Expected bytes and hashes are the fixture's
//! own (the fake serves them; the test computes SHA-256 and git blob SHA-1 independently of
//! the client's streaming hasher).

use std::future::Future;
use std::time::Duration;

use ganglion_hf::testkit::FakeHub;
use ganglion_hf::{ExpectedHash, FileRequest, HashKind, HfError, NoProgress, pick_gguf};

use crate::support::{PRIVATE, PUBLIC, TOKEN, client, content, hub, private_repo, public_repo, tree};

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f).await.unwrap_or_else(|_| panic!("test took more than 20 s"))
}

fn request(repo: &str, revision: &str, file: &str) -> FileRequest {
    FileRequest { repo: repo.into(), revision: revision.into(), file: file.into(), pinned: None }
}

fn cdn_gets(hub: &FakeHub) -> Vec<Option<String>> {
    hub.requests().into_iter().filter(|r| r.method == "GET" && r.path.starts_with("/cdn-lfs/")).map(|r| r.range).collect()
}

#[tokio::test]
async fn a_pull_with_a_token_lands_verified_in_the_python_cache_layout() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        let hf = client(&hub, cache.path(), Some(TOKEN));
        let info = hf.repo_info(PRIVATE, "main").await.unwrap();
        let commit = private_repo().commit();
        assert_eq!(info.sha, commit);
        let gguf = pick_gguf(&info, "main", None).unwrap();
        assert_eq!(gguf.path, "model-Q4.gguf");
        let expected_sha = ganglion_hf::sha256(&content(300_000, 1));
        assert_eq!(gguf.lfs_sha256.as_deref(), Some(expected_sha.as_str()));
        assert_eq!(gguf.size, Some(300_000));

        let mut req = request(PRIVATE, "main", &gguf.path);
        req.pinned = gguf.expected_hash();
        let got = hf.download(&req, &mut NoProgress).await.unwrap();
        assert!(!got.already_present);
        assert_eq!(std::fs::read(&got.path).unwrap(), content(300_000, 1));
        assert_eq!(got.commit, commit);
        assert_eq!(got.hash, ExpectedHash { kind: HashKind::Sha256, hex: expected_sha.clone() });
        // huggingface_hub's layout: snapshots/<commit>/<file> → ../../blobs/<sha256>, refs/main.
        let repo_dir = cache.path().join("models--acme--private-model");
        assert_eq!(got.path, repo_dir.join("snapshots").join(&commit).join("model-Q4.gguf"));
        assert_eq!(std::fs::read_link(&got.path).unwrap(), std::path::Path::new("../../blobs").join(&expected_sha));
        assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), commit);

        // A regular (non-LFS) file: checked against its git blob SHA-1.
        let config = hf.download(&request(PRIVATE, "v1.0", "config.json"), &mut NoProgress).await.unwrap();
        assert_eq!(config.hash.kind, HashKind::GitBlobSha1);
        assert_eq!(config.hash.hex, ganglion_hf::git_blob_sha1(br#"{"architectures":["LlamaForCausalLM"]}"#));
        assert_eq!(std::fs::read_to_string(repo_dir.join("refs/v1.0")).unwrap(), commit);

        // The token went to the hub, not to the CDN (another origin), as with the real one.
        let seen = hub.requests();
        assert!(seen.iter().filter(|r| !r.path.starts_with("/cdn-lfs/")).all(|r| r.authorized), "{seen:?}");
        assert!(seen.iter().filter(|r| r.path.starts_with("/cdn-lfs/")).all(|r| !r.authorized), "{seen:?}");

        // Again: re-hashed from the cache, not fetched.
        let again = hf.download(&req, &mut NoProgress).await.unwrap();
        assert!(again.already_present);
        assert_eq!(cdn_gets(&hub).len(), 1);
        assert_eq!(
            tree(&repo_dir),
            vec![
                format!("blobs/{}", config.hash.hex),
                format!("blobs/{expected_sha}"),
                "refs/main".to_string(),
                "refs/v1.0".to_string(),
                format!("snapshots/{commit}/config.json"),
                format!("snapshots/{commit}/model-Q4.gguf"),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn without_the_token_the_hub_says_401_and_the_error_says_set_hf_token() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        for token in [None, Some("hf_wrong")] {
            let hf = client(&hub, cache.path(), token);
            let err = hf.download(&request(PRIVATE, "main", "model-Q4.gguf"), &mut NoProgress).await.unwrap_err();
            assert!(matches!(err, HfError::Unauthorized { status: 401, .. }), "{err:?}");
            assert!(err.to_string().contains("set HF_TOKEN"), "{err}");
            assert!(err.to_string().contains("restricted"), "the hub's message is kept: {err}");
            let err = hf.repo_info(PRIVATE, "main").await.unwrap_err();
            assert!(matches!(err, HfError::Unauthorized { status: 401, .. }), "{err:?}");
        }
        assert!(tree(cache.path()).is_empty(), "{:?}", tree(cache.path()));
        // The public repo needs none.
        let hf = client(&hub, cache.path(), None);
        let got = hf.download(&request(PUBLIC, "main", "a.gguf"), &mut NoProgress).await.unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), content(50_000, 2));
    })
    .await;
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_with_a_range_request() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        let mut hf = client(&hub, cache.path(), Some(TOKEN));

        // Within one call: the retry asks for the rest only.
        hub.drop_connection_once(PRIVATE, "model-Q4.gguf", 100_000);
        let got = hf.download(&request(PRIVATE, "main", "model-Q4.gguf"), &mut NoProgress).await.unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), content(300_000, 1));
        assert_eq!(cdn_gets(&hub), vec![None, Some("bytes=100000-".to_string())]);

        // Across runs (no retries): the first run leaves blobs/<sha>.incomplete, the next
        // one continues it, as Python's client would.
        let cache2 = tempfile::tempdir().unwrap();
        hf = client(&hub, cache2.path(), None);
        let mut config = hf.config().clone();
        config.retries = 0;
        hf = ganglion_hf::HubClient::new(config, &ganglion_tls::ClientTls::system()).unwrap();
        hub.drop_connection_once(PUBLIC, "sub/b.gguf", 25_000);
        let err = hf.download(&request(PUBLIC, "main", "sub/b.gguf"), &mut NoProgress).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("check HF_ENDPOINT"), "{err}");
        let sha = ganglion_hf::sha256(&content(60_000, 3));
        let incomplete = cache2.path().join(format!("models--acme--tiny/blobs/{sha}.incomplete"));
        assert_eq!(std::fs::metadata(&incomplete).unwrap().len(), 25_000);
        let got = hf.download(&request(PUBLIC, "main", "sub/b.gguf"), &mut NoProgress).await.unwrap();
        assert_eq!(got.resumed_from, 25_000);
        assert_eq!(std::fs::read(&got.path).unwrap(), content(60_000, 3));
        assert!(!incomplete.exists());
        assert_eq!(std::fs::read_link(&got.path).unwrap(), std::path::Path::new("../../../blobs").join(&sha));
        let gets = cdn_gets(&hub);
        assert_eq!(gets[gets.len() - 2..], [None, Some("bytes=25000-".to_string())]);

        // A complete `.incomplete` (a run stopped before the rename) is hashed, not fetched.
        let cache3 = tempfile::tempdir().unwrap();
        let sha_a = ganglion_hf::sha256(&content(50_000, 2));
        let blobs = cache3.path().join("models--acme--tiny/blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(format!("{sha_a}.incomplete")), content(50_000, 2)).unwrap();
        let before = cdn_gets(&hub).len();
        let got = client(&hub, cache3.path(), None).download(&request(PUBLIC, "main", "a.gguf"), &mut NoProgress).await.unwrap();
        assert_eq!((got.resumed_from, cdn_gets(&hub).len()), (50_000, before));
        assert_eq!(std::fs::read(&got.path).unwrap(), content(50_000, 2));
    })
    .await;
}

#[tokio::test]
async fn a_corrupted_file_is_refused_and_nothing_is_left() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        let hf = client(&hub, cache.path(), Some(TOKEN));
        hub.corrupt(PRIVATE, "model-Q4.gguf");
        hub.corrupt(PRIVATE, "config.json");
        let err = hf.download(&request(PRIVATE, "main", "model-Q4.gguf"), &mut NoProgress).await.unwrap_err();
        let HfError::HashMismatch { kind, expected, actual, .. } = &err else { panic!("{err:?}") };
        assert_eq!(*kind, HashKind::Sha256);
        assert_eq!(*expected, ganglion_hf::sha256(&content(300_000, 1)));
        let mut bad = content(300_000, 1);
        bad[150_000] ^= 1;
        assert_eq!(*actual, ganglion_hf::sha256(&bad));
        assert!(err.to_string().contains("deleted"), "{err}");
        let err = hf.download(&request(PRIVATE, "main", "config.json"), &mut NoProgress).await.unwrap_err();
        assert!(matches!(err, HfError::HashMismatch { kind: HashKind::GitBlobSha1, .. }), "{err:?}");
        let left = tree(cache.path());
        assert!(left.iter().all(|p| !p.contains("blobs/") && !p.contains("snapshots/")), "{left:?}");

        // A pinned hash the hub does not announce is refused before any byte is fetched.
        let before = cdn_gets(&hub).len();
        let mut req = request(PUBLIC, "main", "a.gguf");
        req.pinned = ExpectedHash::sha256(&"0".repeat(64));
        let err = hf.download(&req, &mut NoProgress).await.unwrap_err();
        assert!(matches!(err, HfError::HashMismatch { .. }), "{err:?}");
        assert_eq!(cdn_gets(&hub).len(), before);
    })
    .await;
}

#[tokio::test]
async fn revisions_resolve_to_their_commit_and_missing_things_are_typed() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        let hf = client(&hub, cache.path(), Some(TOKEN));
        let commit = private_repo().commit();
        assert!(ganglion_hf::is_commit_sha(&commit));
        for rev in ["main", "v1.0", commit.as_str()] {
            assert_eq!(hf.resolve_revision(PRIVATE, rev).await.unwrap(), commit, "{rev}");
        }
        let meta = hf.file_metadata(PRIVATE, "v1.0", "model-Q4.gguf").await.unwrap();
        assert_eq!(meta.commit, commit);
        assert_eq!(meta.size, 300_000);
        let err = hf.resolve_revision(PRIVATE, "nope").await.unwrap_err();
        assert!(matches!(err, HfError::RevisionNotFound { .. }), "{err:?}");
        let err = hf.file_metadata(PRIVATE, "nope", "config.json").await.unwrap_err();
        assert!(matches!(err, HfError::RevisionNotFound { .. }), "{err:?}");
        let err = hf.resolve_revision("acme/absent", "main").await.unwrap_err();
        assert!(matches!(err, HfError::RepoNotFound { .. }), "{err:?}");
        let err = hf.file_metadata(PRIVATE, "main", "absent.gguf").await.unwrap_err();
        assert!(matches!(err, HfError::FileNotFound { .. }), "{err:?}");

        let public = hf.repo_info(PUBLIC, "main").await.unwrap();
        assert_eq!(public.sha, public_repo().commit());
        let err = pick_gguf(&public, "main", None).unwrap_err();
        assert!(matches!(err, HfError::SeveralGguf { .. }), "{err:?}");
        assert!(err.to_string().contains("a.gguf, sub/b.gguf") && err.to_string().contains("--file"), "{err}");
        assert_eq!(pick_gguf(&public, "main", Some("sub/b.gguf")).unwrap().size, Some(60_000));
        let err = pick_gguf(&public, "main", Some("c.gguf")).unwrap_err();
        assert!(matches!(err, HfError::FileNotFound { .. }), "{err:?}");

        // An unreachable endpoint is a network error that names HF_ENDPOINT.
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let config = ganglion_hf::HubConfig::new(&format!("http://{dead}"), cache.path().to_path_buf()).unwrap();
        let offline = ganglion_hf::HubClient::new(config, &ganglion_tls::ClientTls::system()).unwrap();
        let err = offline.resolve_revision(PUBLIC, "main").await.unwrap_err();
        assert!(matches!(err, HfError::Network { .. }) && err.to_string().contains("HF_ENDPOINT"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn the_offline_cache_finds_pulled_ggufs() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        let hf = client(&hub, cache.path(), None);
        let reference = ganglion_hf::HubRef::parse("hf:acme/tiny").unwrap();
        assert!(matches!(hf.cache().resolve_gguf(&reference), Err(HfError::NotCached { .. })));
        let got = hf.download(&request(PUBLIC, "main", "sub/b.gguf"), &mut NoProgress).await.unwrap();
        assert_eq!(hf.cache().resolve_gguf(&reference).unwrap(), got.path);
        let pinned = ganglion_hf::HubRef::parse(&format!("hf:acme/tiny@{}:sub/b.gguf", got.commit)).unwrap();
        assert_eq!(hf.cache().resolve_gguf(&pinned).unwrap(), got.path);
        hf.download(&request(PUBLIC, "main", "a.gguf"), &mut NoProgress).await.unwrap();
        assert!(matches!(hf.cache().resolve_gguf(&reference), Err(HfError::SeveralGguf { .. })));
        let listed = hf.cache().list_ggufs().unwrap();
        let names: Vec<_> = listed.iter().map(|f| (f.repo.as_str(), f.file.as_str(), f.size)).collect();
        assert_eq!(names, vec![("acme/tiny", "a.gguf", 50_000), ("acme/tiny", "sub/b.gguf", 60_000)]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_downloads_of_one_file_take_turns() {
    bounded(async {
        let hub = hub().await;
        let cache = tempfile::tempdir().unwrap();
        let (a, b) = (client(&hub, cache.path(), None), client(&hub, cache.path(), None));
        let req = request(PUBLIC, "main", "big.safetensors");
        let (mut pa, mut pb) = (NoProgress, NoProgress);
        let (ra, rb) = tokio::join!(a.download(&req, &mut pa), b.download(&req, &mut pb));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        // One fetched it under the lock; the other waited and found the blob.
        assert_eq!(cdn_gets(&hub).len(), 1);
        assert!(ra.already_present != rb.already_present, "{ra:?} {rb:?}");
        assert!(std::fs::read(&ra.path).unwrap() == content(crate::support::BIG, 5));
        let lock = cache.path().join(".locks/models--acme--tiny").join(format!("{}.lock", ra.hash.hex));
        assert!(lock.is_file(), "the lock is where Python takes it: {}", lock.display());
    })
    .await;
}

#[tokio::test]
async fn a_repo_served_from_a_directory_with_a_slashed_revision() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("weights")).unwrap();
        std::fs::write(dir.path().join("weights/m.gguf"), content(4_000, 7)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"small text\n").unwrap();
        let repo = ganglion_hf::testkit::FakeRepo::from_dir("org/from-dir", dir.path(), 1 << 20).unwrap().tag("refs/pr/1");
        let commit = repo.commit();
        let hub = FakeHub::start([repo]).await.unwrap();
        let cache = tempfile::tempdir().unwrap();
        let hf = client(&hub, cache.path(), None);
        let info = hf.repo_info("org/from-dir", "refs/pr/1").await.unwrap();
        assert_eq!(info.sha, commit);
        let gguf = pick_gguf(&info, "refs/pr/1", None).unwrap();
        assert_eq!(gguf.path, "weights/m.gguf");
        assert!(gguf.lfs_sha256.is_some(), ".gguf files are LFS files");
        let notes = info.files.iter().find(|f| f.path == "notes.txt").unwrap();
        assert_eq!(notes.expected_hash().map(|h| h.kind), Some(HashKind::GitBlobSha1));
        let got = hf.download(&request("org/from-dir", "refs/pr/1", "notes.txt"), &mut NoProgress).await.unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), b"small text\n");
        assert_eq!(std::fs::read_to_string(cache.path().join("models--org--from-dir/refs/refs/pr/1")).unwrap(), commit);
        assert!(hub.requests().iter().any(|r| r.path.contains("/resolve/refs%2Fpr%2F1/")), "{:?}", hub.requests());
    })
    .await;
}
