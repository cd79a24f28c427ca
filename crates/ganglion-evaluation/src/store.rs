//! Where validators get models: the [`ModelStore`] trait and its two backends.
//!
//! - [`MinerStore`] (the embedded default, no third party): the miner serves its published
//!   directory on its axon — `POST /model/manifest` (the files with sizes and base64
//!   SHA-256s) and `POST /model/file` (one file's bytes, by manifest path) — behind the
//!   Epistula layer. The validator signs each request for the miner's hotkey, checks the
//!   manifest (paths, sizes, count) and its directory hash against the commitment *before*
//!   downloading, then downloads every file with a byte cap of its announced size and one
//!   deadline, hashes it on the way, and finally hashes the directory on disk again.
//! - [`HubStore`]: the Hugging Face Hub through `ganglion-hf` (its cache, `HF_ENDPOINT`):
//!   the repo's file list at the committed revision, its total size checked, each file
//!   downloaded and hash-checked by the hub client, then the snapshot directory hashed.
//!
//! Either way the result is a directory whose hash (plain, or bound to the miner's hotkey)
//! equals the commitment's, or a typed [`StoreError`].

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_protocol::epistula::EpistulaRequestExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::commitment::ModelCommitment;
use crate::dirhash::{self, HashLimits};

/// The namespace that marks a miner-served model in a commitment (`axon:<name>:None:<hash>:<competition>`).
pub const AXON_NAMESPACE: &str = "axon";

/// Bounds of one download.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Most bytes over all files.
    pub max_bytes: u64,
    /// Most files.
    pub max_files: usize,
    /// The whole download must end within this.
    pub deadline: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits { max_bytes: 15 * 1024 * 1024 * 1024, max_files: 64, deadline: Duration::from_secs(600) }
    }
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The miner's commitment.
    pub commitment: ModelCommitment,
    /// The miner's hotkey (the bound hash is checked against it; requests are signed for it).
    pub hotkey: PublicKey,
    /// The miner's axon (`http://ip:port`), for miner-served models.
    pub axon: Option<String>,
    /// A directory of this validator's own where the files go (replaced if present).
    pub dest: PathBuf,
    /// Bounds.
    pub limits: FetchLimits,
}

/// A fetched, verified model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedModel {
    /// The directory.
    pub dir: PathBuf,
    /// Its plain directory hash (duplicates are found by this).
    pub hash: String,
    /// Total bytes.
    pub bytes: u64,
}

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The commitment has no hash to check against.
    #[error("the commitment has no hash")]
    NoHash,
    /// No axon is served for a miner-served model.
    #[error("the miner serves no axon")]
    NoAxon,
    /// The peer could not be reached or answered with an error.
    #[error("{0}")]
    Network(String),
    /// The peer answered something that is not the protocol.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// More than the limits allow.
    #[error("{0}")]
    TooLarge(String),
    /// The deadline passed.
    #[error("the download did not finish within {0:?}")]
    Deadline(Duration),
    /// A file's bytes do not have the announced hash or size.
    #[error("file `{file}`: {reason}")]
    FileMismatch {
        /// The file.
        file: String,
        /// What differed.
        reason: String,
    },
    /// The files do not hash to the committed hash.
    #[error("the files hash to {actual}, which does not match the commitment's {committed}")]
    HashMismatch {
        /// Committed.
        committed: String,
        /// Computed (plain).
        actual: String,
    },
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
    /// The directory hash failed (limits, I/O).
    #[error(transparent)]
    Hash(#[from] dirhash::HashError),
    /// The Hugging Face Hub failed.
    #[error(transparent)]
    Hub(#[from] ganglion_hf::HfError),
}

/// A source of committed models.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Fetches and verifies the committed model into `request.dest`.
    async fn fetch(&self, request: &FetchRequest) -> Result<FetchedModel, StoreError>;
}

/// One file of a served directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestFile {
    /// Path relative to the directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// base64(SHA-256) of the bytes.
    pub sha256: String,
}

/// What `POST /model/manifest` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The files, in the directory hash's walk order.
    pub files: Vec<ManifestFile>,
}

/// `POST /model/file` body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileQuery {
    /// A manifest path.
    pub path: String,
}

/// Whether `path` is a plain relative path (no `..`, no root, no empty or `.` parts).
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// The order `os.walk` with sorted names visits files: in a directory its files (sorted),
/// then each subdirectory (sorted).
fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    let ap: Vec<&str> = a.split('/').collect();
    let bp: Vec<&str> = b.split('/').collect();
    for i in 0.. {
        let (Some(x), Some(y)) = (ap.get(i), bp.get(i)) else { return ap.len().cmp(&bp.len()) };
        if x == y {
            continue;
        }
        let a_file = i + 1 == ap.len();
        let b_file = i + 1 == bp.len();
        return match (a_file, b_file) {
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => x.cmp(y),
        };
    }
    std::cmp::Ordering::Equal
}

impl Manifest {
    /// The manifest of a directory on disk (hashing every file), bounded by `limits`.
    pub fn of_directory(root: &Path, limits: &HashLimits) -> Result<Manifest, dirhash::HashError> {
        let mut files = Vec::new();
        for (rel, size) in dirhash::walk(root, limits)? {
            let sha256 = dirhash::hash_file(&root.join(&rel), limits.max_bytes)?;
            let path = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
            files.push(ManifestFile { path, size, sha256 });
        }
        Ok(Manifest { files })
    }

    /// The directory hash the files would have.
    pub fn directory_hash(&self) -> String {
        dirhash::combine(self.files.iter().map(|f| f.sha256.as_str()))
    }

    /// Checks paths, order, duplicates and totals against `limits`.
    pub fn check(&self, limits: &FetchLimits) -> Result<u64, StoreError> {
        if self.files.len() > limits.max_files {
            return Err(StoreError::TooLarge(format!("{} files; at most {}", self.files.len(), limits.max_files)));
        }
        let mut total = 0u64;
        for (i, f) in self.files.iter().enumerate() {
            if !safe_relative(&f.path) {
                return Err(StoreError::Protocol(format!("unsafe path `{}`", f.path)));
            }
            if i > 0 && walk_order(&self.files[i - 1].path, &f.path) != std::cmp::Ordering::Less {
                return Err(StoreError::Protocol(format!("`{}` is out of order or repeated", f.path)));
            }
            total = total.saturating_add(f.size);
        }
        if total > limits.max_bytes {
            return Err(StoreError::TooLarge(format!("{total} bytes; at most {}", limits.max_bytes)));
        }
        Ok(total)
    }
}

/// The miner side: a published directory, served by manifest path only.
#[derive(Debug)]
pub struct ServedModel {
    root: PathBuf,
    manifest: Manifest,
    by_path: BTreeMap<String, u64>,
}

impl ServedModel {
    /// Hashes `root` once; the files must not change while served.
    pub fn new(root: &Path, limits: &HashLimits) -> Result<ServedModel, dirhash::HashError> {
        let manifest = Manifest::of_directory(root, limits)?;
        let by_path = manifest.files.iter().map(|f| (f.path.clone(), f.size)).collect();
        Ok(ServedModel { root: root.to_path_buf(), manifest, by_path })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The plain directory hash.
    pub fn directory_hash(&self) -> String {
        self.manifest.directory_hash()
    }
}

async fn manifest_route(State(model): State<Arc<ServedModel>>) -> Json<Manifest> {
    Json(model.manifest.clone())
}

async fn file_route(State(model): State<Arc<ServedModel>>, Json(query): Json<FileQuery>) -> Response {
    let Some(&size) = model.by_path.get(&query.path) else {
        return (StatusCode::NOT_FOUND, "no such file in the manifest").into_response();
    };
    let file = match tokio::fs::File::open(model.root.join(&query.path)).await {
        Ok(f) => f,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    // At most the manifest's size, in 64 KiB chunks.
    let stream = futures::stream::unfold((file.take(size), vec![0u8; 64 * 1024]), |(mut f, mut buf)| async move {
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => Some((Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&buf[..n])), (f, buf))),
            Err(e) => Some((Err(e), (f, buf))),
        }
    });
    Response::builder()
        .header(axum::http::header::CONTENT_LENGTH, size)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

/// The miner's routes (put them behind the axon's Epistula layer).
pub fn miner_router(model: Arc<ServedModel>) -> axum::Router {
    axum::Router::new()
        .route("/model/manifest", axum::routing::post(manifest_route))
        .route("/model/file", axum::routing::post(file_route))
        .with_state(model)
}

/// The validator side of miner-served models.
#[derive(Debug, Clone)]
pub struct MinerStore {
    http: reqwest::Client,
    keypair: Keypair,
}

/// Largest manifest answer.
const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

impl MinerStore {
    /// A store signing as `keypair`, with a client from `tls`.
    pub fn new(keypair: Keypair, tls: &ganglion_tls::ClientTls) -> Result<MinerStore, StoreError> {
        let http = tls
            .http_builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StoreError::Network(ganglion_tls::describe_http_error(&e)))?;
        Ok(MinerStore { http, keypair })
    }

    async fn post(&self, url: &str, to: &PublicKey, body: Vec<u8>, until: Instant) -> Result<reqwest::Response, StoreError> {
        let left = until.saturating_duration_since(Instant::now());
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .timeout(left)
            .epistula(&self.keypair, Some(to), body)
            .send()
            .await
            .map_err(|e| StoreError::Network(ganglion_tls::describe_http_error(&e)))?;
        if !response.status().is_success() {
            return Err(StoreError::Network(format!("{url}: HTTP {}", response.status())));
        }
        Ok(response)
    }

    async fn fetch_inner(&self, request: &FetchRequest, committed: &str, until: Instant) -> Result<FetchedModel, StoreError> {
        let base = request.axon.as_deref().ok_or(StoreError::NoAxon)?.trim_end_matches('/');
        let hotkey_ss58 = request.hotkey.to_ss58();
        // 1. The manifest, bounded.
        let mut response = self.post(&format!("{base}/model/manifest"), &request.hotkey, b"{}".to_vec(), until).await?;
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| StoreError::Network(e.to_string()))? {
            if raw.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(StoreError::TooLarge(format!("manifest over {MAX_MANIFEST_BYTES} bytes")));
            }
            raw.extend_from_slice(&chunk);
        }
        let manifest: Manifest = serde_json::from_slice(&raw).map_err(|e| StoreError::Protocol(format!("manifest: {e}")))?;
        let total = manifest.check(&request.limits)?;
        // 2. Its hash against the commitment before any download.
        let announced = manifest.directory_hash();
        if !dirhash::matches_commitment(committed, &announced, &hotkey_ss58) {
            return Err(StoreError::HashMismatch { committed: committed.to_string(), actual: announced });
        }
        // 3. Every file into a fresh staging directory, capped at its size, hashed on the way.
        let staging = request.dest.with_extension("partial");
        let _ = tokio::fs::remove_dir_all(&staging).await;
        tokio::fs::create_dir_all(&staging).await.map_err(|e| StoreError::Io(format!("{}: {e}", staging.display())))?;
        for f in &manifest.files {
            let body = serde_json::to_vec(&FileQuery { path: f.path.clone() }).map_err(|e| StoreError::Protocol(e.to_string()))?;
            let response = self.post(&format!("{base}/model/file"), &request.hotkey, body, until).await?;
            let target = staging.join(&f.path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| StoreError::Io(format!("{}: {e}", parent.display())))?;
            }
            let mut out = tokio::fs::File::create(&target).await.map_err(|e| StoreError::Io(format!("{}: {e}", target.display())))?;
            let mut hasher = Sha256::new();
            let mut seen = 0u64;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| StoreError::Network(e.to_string()))?;
                seen += chunk.len() as u64;
                if seen > f.size {
                    return Err(StoreError::FileMismatch { file: f.path.clone(), reason: format!("more than the announced {} bytes", f.size) });
                }
                hasher.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| StoreError::Io(format!("{}: {e}", target.display())))?;
            }
            out.sync_all().await.map_err(|e| StoreError::Io(format!("{}: {e}", target.display())))?;
            if seen != f.size {
                return Err(StoreError::FileMismatch { file: f.path.clone(), reason: format!("{seen} bytes, {} announced", f.size) });
            }
            let got = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hasher.finalize());
            if got != f.sha256 {
                return Err(StoreError::FileMismatch { file: f.path.clone(), reason: format!("SHA-256 {got}, {} announced", f.sha256) });
            }
        }
        // 4. The directory as it is on disk, then into place.
        let limits = HashLimits { max_files: request.limits.max_files, max_bytes: request.limits.max_bytes, ..HashLimits::default() };
        let hash = dirhash::directory_hash(&staging, &limits)?;
        if hash != announced {
            return Err(StoreError::HashMismatch { committed: committed.to_string(), actual: hash });
        }
        replace_dir(&staging, &request.dest).await?;
        Ok(FetchedModel { dir: request.dest.clone(), hash, bytes: total })
    }
}

async fn replace_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    let _ = tokio::fs::remove_dir_all(to).await;
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| StoreError::Io(format!("{}: {e}", parent.display())))?;
    }
    tokio::fs::rename(from, to).await.map_err(|e| StoreError::Io(format!("{} → {}: {e}", from.display(), to.display())))
}

#[async_trait]
impl ModelStore for MinerStore {
    async fn fetch(&self, request: &FetchRequest) -> Result<FetchedModel, StoreError> {
        let committed = request.commitment.hash.clone().ok_or(StoreError::NoHash)?;
        let until = Instant::now() + request.limits.deadline;
        let result = tokio::time::timeout(request.limits.deadline, self.fetch_inner(request, &committed, until)).await;
        let staging = request.dest.with_extension("partial");
        match result {
            Ok(Ok(model)) => Ok(model),
            Ok(Err(e)) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                Err(e)
            }
            Err(_) => {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                Err(StoreError::Deadline(request.limits.deadline))
            }
        }
    }
}

/// The Hugging Face Hub backend.
#[derive(Debug, Clone)]
pub struct HubStore {
    client: ganglion_hf::HubClient,
}

impl HubStore {
    /// Over a configured hub client (its cache is where snapshots land).
    pub fn new(client: ganglion_hf::HubClient) -> HubStore {
        HubStore { client }
    }

    async fn fetch_inner(&self, request: &FetchRequest, committed: &str) -> Result<FetchedModel, StoreError> {
        let c = &request.commitment;
        let repo = c.repo_id();
        let revision = c.commit.clone().unwrap_or_else(|| ganglion_hf::DEFAULT_REVISION.to_string());
        let info = self.client.repo_info(&repo, &revision).await?;
        if info.files.len() > request.limits.max_files {
            return Err(StoreError::TooLarge(format!("{} files; at most {}", info.files.len(), request.limits.max_files)));
        }
        // The original's first check: the files' total size from the API, before any download.
        let total: u64 = info.files.iter().map(|f| f.size.unwrap_or(0)).fold(0, u64::saturating_add);
        if total > request.limits.max_bytes || info.files.iter().any(|f| f.size.is_none()) {
            return Err(StoreError::TooLarge(format!("the repository is {total} bytes (or does not say); at most {}", request.limits.max_bytes)));
        }
        let mut snapshot = None;
        for f in &info.files {
            let req = ganglion_hf::FileRequest { repo: repo.clone(), revision: info.sha.clone(), file: f.path.clone(), pinned: f.expected_hash() };
            let got = self.client.download(&req, &mut ganglion_hf::NoProgress).await?;
            snapshot = Some(self.client.cache().snapshot_path(&repo, &got.commit, ""));
        }
        let dir = snapshot.unwrap_or_else(|| self.client.cache().snapshot_path(&repo, &info.sha, ""));
        let limits = HashLimits { max_files: request.limits.max_files, max_bytes: request.limits.max_bytes, ..HashLimits::default() };
        let hash = dirhash::directory_hash(&dir, &limits)?;
        if !dirhash::matches_commitment(committed, &hash, &request.hotkey.to_ss58()) {
            return Err(StoreError::HashMismatch { committed: committed.to_string(), actual: hash });
        }
        Ok(FetchedModel { dir, hash, bytes: total })
    }
}

#[async_trait]
impl ModelStore for HubStore {
    async fn fetch(&self, request: &FetchRequest) -> Result<FetchedModel, StoreError> {
        let committed = request.commitment.hash.clone().ok_or(StoreError::NoHash)?;
        match tokio::time::timeout(request.limits.deadline, self.fetch_inner(request, &committed)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Deadline(request.limits.deadline)),
        }
    }
}

/// What a miner commits for a directory it serves itself: `axon:<name>:None:<hash>:<competition>`
/// with the hash bound to its hotkey (so the commitment cannot be replayed by another hotkey
/// before the files are public), checked against the 128-byte limit.
pub fn miner_served_commitment(
    model: &ServedModel,
    name: &str,
    competition: &str,
    hotkey: &PublicKey,
) -> Result<(ModelCommitment, String), crate::commitment::CommitmentError> {
    let c = ModelCommitment {
        namespace: AXON_NAMESPACE.to_string(),
        name: name.to_string(),
        commit: None,
        hash: Some(dirhash::bind_to_hotkey(&model.directory_hash(), &hotkey.to_ss58())),
        competition_id: Some(competition.to_string()),
    };
    let rendered = c.render()?;
    Ok((c, rendered))
}

/// Picks the backend for a commitment: [`AXON_NAMESPACE`] → the miner's axon, else the Hub.
pub fn is_miner_served(commitment: &ModelCommitment) -> bool {
    commitment.namespace == AXON_NAMESPACE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_matches_the_directory_walk() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["z", "a/x", "a/b/y", "a/a", "B", "b/c", "é", "a.b"] {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, p).unwrap();
        }
        let m = Manifest::of_directory(dir.path(), &HashLimits::default()).unwrap();
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["B", "a.b", "z", "é", "a/a", "a/x", "a/b/y", "b/c"]);
        let mut sorted = paths.clone();
        sorted.reverse();
        sorted.sort_by(|a, b| walk_order(a, b));
        assert_eq!(sorted, paths);
        m.check(&FetchLimits::default()).unwrap();
        assert_eq!(m.directory_hash(), dirhash::directory_hash(dir.path(), &HashLimits::default()).unwrap());
    }

    #[test]
    fn manifests_with_unsafe_paths_or_too_much_are_refused() {
        let f = |path: &str, size| ManifestFile { path: path.into(), size, sha256: "x".into() };
        for bad in ["../etc/passwd", "/abs", "a//b", "./a", "a/../b", ""] {
            let m = Manifest { files: vec![f(bad, 1)] };
            assert!(matches!(m.check(&FetchLimits::default()), Err(StoreError::Protocol(_))), "{bad}");
        }
        let dup = Manifest { files: vec![f("a", 1), f("a", 1)] };
        assert!(matches!(dup.check(&FetchLimits::default()), Err(StoreError::Protocol(_))));
        let big = Manifest { files: vec![f("a", 10), f("b", 10)] };
        let limits = FetchLimits { max_bytes: 15, ..FetchLimits::default() };
        assert!(matches!(big.check(&limits), Err(StoreError::TooLarge(_))));
        let many = FetchLimits { max_files: 1, ..FetchLimits::default() };
        assert!(matches!(big.check(&many), Err(StoreError::TooLarge(_))));
    }
}
