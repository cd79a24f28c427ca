//! A fake Hugging Face Hub for tests (feature `test-utils`): axum on loopback, repos from
//! memory or a directory, the file-resolution protocol as the real hub speaks it to
//! `huggingface_hub` and to [`crate::HubClient`]:
//!
//! - `HEAD/GET /{repo}/resolve/{revision}/{path}`: `X-Repo-Commit`, `ETag` (git blob SHA-1),
//!   `Content-Length`, `Accept-Ranges`; for LFS files a `302` to `/cdn-lfs/{sha256}` on a
//!   second port of the fake (another origin, as the real CDN is another host) with `X-Linked-Etag`
//!   (the SHA-256) and `X-Linked-Size`. `Range: bytes=N-`/`N-M` gives `206`, a range past the
//!   end `416`.
//! - `GET /api/models/{repo}[/revision/{revision}]`: `sha`, `siblings` (`rfilename`; with
//!   `?blobs=true` also `size`, `blobId` and `lfs {sha256, size, pointerSize}`).
//! - A repo with a token answers `401` without `Authorization: Bearer <token>`; errors carry
//!   `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`) and
//!   `X-Error-Message` like the hub's.
//! - Faults: drop the connection after N bytes of a file once; serve a file with one byte
//!   flipped. Every request is recorded (method, path, `Range`, whether a token came).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use bytes::Bytes;

use crate::hash::{git_blob_sha1, sha256};

/// A file in a fake repo.
#[derive(Debug, Clone)]
pub struct FakeFile {
    /// The content.
    pub bytes: Bytes,
    /// Stored in LFS (served through the CDN redirect, hashed with SHA-256).
    pub lfs: bool,
}

impl FakeFile {
    fn sha256(&self) -> String {
        sha256(&self.bytes)
    }

    /// The LFS pointer file git stores instead of the content.
    fn pointer(&self) -> String {
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n", self.sha256(), self.bytes.len())
    }

    /// The git blob id: of the content, or of the pointer for LFS files.
    fn blob_id(&self) -> String {
        if self.lfs { git_blob_sha1(self.pointer().as_bytes()) } else { git_blob_sha1(&self.bytes) }
    }
}

/// A repo of the fake hub: one commit, reachable from `main` and any other named refs.
#[derive(Debug, Clone)]
pub struct FakeRepo {
    /// `OWNER/NAME`.
    pub id: String,
    /// Files by path.
    pub files: BTreeMap<String, FakeFile>,
    /// Refs (branches, tags) besides `main`.
    pub refs: Vec<String>,
    /// The token the repo requires, if private or gated.
    pub token: Option<String>,
}

impl FakeRepo {
    /// An empty public repo.
    pub fn new(id: &str) -> FakeRepo {
        FakeRepo { id: id.to_string(), files: BTreeMap::new(), refs: Vec::new(), token: None }
    }

    /// Adds a regular (git) file.
    pub fn file(mut self, path: &str, bytes: impl Into<Bytes>) -> FakeRepo {
        self.files.insert(path.to_string(), FakeFile { bytes: bytes.into(), lfs: false });
        self
    }

    /// Adds an LFS file.
    pub fn lfs_file(mut self, path: &str, bytes: impl Into<Bytes>) -> FakeRepo {
        self.files.insert(path.to_string(), FakeFile { bytes: bytes.into(), lfs: true });
        self
    }

    /// Another name (tag or branch) for the commit.
    pub fn tag(mut self, name: &str) -> FakeRepo {
        self.refs.push(name.to_string());
        self
    }

    /// Requires `Authorization: Bearer <token>`.
    pub fn token(mut self, token: &str) -> FakeRepo {
        self.token = Some(token.to_string());
        self
    }

    /// A repo with the files under `dir` (files of at least `lfs_from` bytes, and every
    /// `.gguf`/`.safetensors`/`.bin`, in LFS).
    pub fn from_dir(id: &str, dir: &Path, lfs_from: u64) -> std::io::Result<FakeRepo> {
        fn walk(dir: &Path, prefix: &str, repo: &mut FakeRepo, lfs_from: u64) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                if entry.file_type()?.is_dir() {
                    walk(&entry.path(), &rel, repo, lfs_from)?;
                } else {
                    let bytes = std::fs::read(entry.path())?;
                    let lfs = bytes.len() as u64 >= lfs_from || [".gguf", ".safetensors", ".bin"].iter().any(|e| name.ends_with(e));
                    repo.files.insert(rel, FakeFile { bytes: bytes.into(), lfs });
                }
            }
            Ok(())
        }
        let mut repo = FakeRepo::new(id);
        walk(dir, "", &mut repo, lfs_from)?;
        Ok(repo)
    }

    /// The commit sha: a SHA-1 over the paths and contents, so it changes with them.
    pub fn commit(&self) -> String {
        let listing: String = self.files.iter().map(|(p, f)| format!("{p}\0{}\n", f.sha256())).collect();
        crate::hash::git_blob_sha1(format!("{}\n{listing}", self.id).as_bytes())
    }
}

/// One request the fake hub saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// Whether an `Authorization` header came.
    pub authorized: bool,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, FakeRepo>,
    /// Each repo's commit, computed once.
    commits: HashMap<String, String>,
    /// LFS files by content SHA-256, for the CDN.
    lfs: HashMap<String, FakeFile>,
    /// By content SHA-256: bytes after which the next GET of it breaks (once).
    drop_after: HashMap<String, u64>,
    /// By content SHA-256: serve with one byte flipped.
    corrupt: HashMap<String, ()>,
    seen: Vec<SeenRequest>,
}

/// A running fake hub. Stops when dropped.
#[derive(Debug)]
pub struct FakeHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("repos", &self.repos.keys().collect::<Vec<_>>()).finish()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeHub {
    /// Serves `repos` on 127.0.0.1 (a free port).
    pub async fn start(repos: impl IntoIterator<Item = FakeRepo>) -> std::io::Result<FakeHub> {
        let repos: HashMap<String, FakeRepo> = repos.into_iter().map(|r| (r.id.clone(), r)).collect();
        let commits = repos.iter().map(|(id, r)| (id.clone(), r.commit())).collect();
        let lfs = repos.values().flat_map(|r| r.files.values()).filter(|f| f.lfs).map(|f| (f.sha256(), f.clone())).collect();
        let state = Arc::new(Mutex::new(State { repos, commits, lfs, ..State::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // The CDN is another origin, as the real one is another host: clients follow
        // same-origin redirects on HEAD (and send their token there), not this one.
        let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let cdn_addr = cdn_listener.local_addr()?;
        let app_state = state.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let state = app_state.clone();
            async move { handle(&state, cdn_addr, request) }
        });
        let cdn_app = app.clone();
        let task = tokio::spawn(async move {
            let hub = axum::serve(listener, app);
            let cdn = axum::serve(cdn_listener, cdn_app);
            let _ = tokio::join!(hub, cdn);
        });
        Ok(FakeHub { addr, state, task })
    }

    /// The base URL, for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.state).seen.clone()
    }

    fn file_sha(&self, repo: &str, path: &str) -> String {
        let state = lock(&self.state);
        let file = state.repos.get(repo).and_then(|r| r.files.get(path));
        file.map(FakeFile::sha256).unwrap_or_else(|| panic!("fake hub: no {repo}/{path}"))
    }

    /// The next GET of `repo`'s `path` sends its headers and `after` bytes, then breaks the
    /// connection; later ones are whole.
    pub fn drop_connection_once(&self, repo: &str, path: &str, after: u64) {
        let sha = self.file_sha(repo, path);
        lock(&self.state).drop_after.insert(sha, after);
    }

    /// Serves `repo`'s `path` with its middle byte flipped (headers unchanged).
    pub fn corrupt(&self, repo: &str, path: &str) {
        let sha = self.file_sha(repo, path);
        lock(&self.state).corrupt.insert(sha, ());
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn error(status: StatusCode, code: Option<&str>, message: &str, commit: Option<&str>) -> Response<Body> {
    let mut builder = Response::builder().status(status).header("x-error-message", message);
    if let Some(code) = code {
        builder = builder.header("x-error-code", code);
    }
    if let Some(commit) = commit {
        builder = builder.header("x-repo-commit", commit);
    }
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({ "error": message }).to_string()))
        .unwrap_or_default()
}

fn handle(state: &Mutex<State>, cdn: SocketAddr, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let headers = request.headers().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    lock(state).seen.push(SeenRequest {
        method: method.to_string(),
        path: if query.is_empty() { path.clone() } else { format!("{path}?{query}") },
        range: headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string),
        authorized: headers.contains_key(header::AUTHORIZATION),
    });
    if method != Method::GET && method != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, None, "method not allowed", None);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first() == Some(&"cdn-lfs") && segments.len() == 2 {
        return serve_cdn(state, &method, &headers, segments[1]);
    }
    if segments.len() >= 3 && segments[0] == "api" && segments[1] == "models" {
        return api(state, &headers, &segments[2..], query.split('&').any(|p| p == "blobs=true" || p == "blobs=True"));
    }
    // {repo (1 or 2 segments)}/resolve/{revision}/{path…}
    match segments.iter().position(|s| *s == "resolve") {
        Some(i @ (1 | 2)) if segments.len() > i + 2 => {
            let repo = segments[..i].join("/");
            let (Some(revision), Some(file)) = (
                percent_decode(segments[i + 1]),
                segments[i + 2..].iter().map(|s| percent_decode(s)).collect::<Option<Vec<_>>>().map(|v| v.join("/")),
            ) else {
                return error(StatusCode::BAD_REQUEST, None, "bad percent-encoding", None);
            };
            resolve(state, cdn, &method, &headers, &repo, &revision, &file)
        }
        _ => error(StatusCode::NOT_FOUND, None, "no such route on the fake hub", None),
    }
}

/// The repo if the caller may read it, else the error response.
fn authorize<'a>(repos: &'a HashMap<String, FakeRepo>, headers: &HeaderMap, repo: &str) -> Result<&'a FakeRepo, Box<Response<Body>>> {
    let Some(found) = repos.get(repo) else {
        return Err(Box::new(error(StatusCode::NOT_FOUND, Some("RepoNotFound"), "Repository not found", None)));
    };
    if let Some(token) = &found.token {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {token}").as_str()) {
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                Some("GatedRepo"),
                &format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it."),
                None,
            )));
        }
    }
    Ok(found)
}

fn commit_of(state: &State, repo: &FakeRepo, revision: &str) -> Option<String> {
    let commit = state.commits.get(&repo.id)?.clone();
    (revision == "main" || revision == commit || repo.refs.iter().any(|r| r == revision)).then_some(commit)
}

fn api(state: &Mutex<State>, headers: &HeaderMap, rest: &[&str], blobs: bool) -> Response<Body> {
    let (repo, revision) = match rest.iter().position(|s| *s == "revision") {
        Some(i @ (1 | 2)) if rest.len() == i + 2 => (rest[..i].join("/"), percent_decode(rest[i + 1]).unwrap_or_default()),
        None if rest.len() <= 2 => (rest.join("/"), "main".to_string()),
        _ => return error(StatusCode::NOT_FOUND, None, "no such route on the fake hub", None),
    };
    let state = lock(state);
    let found = match authorize(&state.repos, headers, &repo) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(commit) = commit_of(&state, found, &revision) else {
        return error(StatusCode::NOT_FOUND, Some("RevisionNotFound"), &format!("Invalid rev id: {revision}"), None);
    };
    let siblings: Vec<serde_json::Value> = found
        .files
        .iter()
        .map(|(path, f)| {
            if !blobs {
                return serde_json::json!({ "rfilename": path });
            }
            let mut s = serde_json::json!({ "rfilename": path, "size": f.bytes.len(), "blobId": f.blob_id() });
            if f.lfs {
                s["lfs"] = serde_json::json!({ "sha256": f.sha256(), "size": f.bytes.len(), "pointerSize": f.pointer().len() });
            }
            s
        })
        .collect();
    let body = serde_json::json!({
        "_id": format!("fake-{}", &commit[..24]),
        "id": found.id,
        "modelId": found.id,
        "sha": commit,
        "private": found.token.is_some(),
        "gated": if found.token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
        "disabled": false,
        "tags": [],
        "siblings": siblings,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn resolve(state: &Mutex<State>, cdn: SocketAddr, method: &Method, headers: &HeaderMap, repo: &str, revision: &str, path: &str) -> Response<Body> {
    let mut guard = lock(state);
    let found = match authorize(&guard.repos, headers, repo) {
        Ok(found) => found.clone(),
        Err(response) => return *response,
    };
    let Some(commit) = commit_of(&guard, &found, revision) else {
        return error(StatusCode::NOT_FOUND, Some("RevisionNotFound"), &format!("Invalid rev id: {revision}"), None);
    };
    let Some(file) = found.files.get(path) else {
        return error(StatusCode::NOT_FOUND, Some("EntryNotFound"), &format!("{path} does not exist on \"{revision}\""), Some(&commit));
    };
    if file.lfs {
        // The real hub redirects to its CDN (another host), which clients do not follow on
        // HEAD: they read these headers from the 302 itself.
        let sha = file.sha256();
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("http://{cdn}/cdn-lfs/{sha}"))
            .header("x-repo-commit", &commit)
            .header(header::ETAG, format!("\"{}\"", file.blob_id()))
            .header("x-linked-etag", format!("\"{sha}\""))
            .header("x-linked-size", file.bytes.len().to_string())
            .header(header::CONTENT_LENGTH, "0")
            .body(Body::empty())
            .unwrap_or_default();
    }
    let etag = format!("\"{}\"", file.blob_id());
    serve_bytes(&mut guard, method, headers, file, &[("x-repo-commit", commit), ("etag", etag)])
}

fn serve_cdn(state: &Mutex<State>, method: &Method, headers: &HeaderMap, sha: &str) -> Response<Body> {
    let mut guard = lock(state);
    let file = guard.lfs.get(sha).cloned();
    match file {
        Some(file) => serve_bytes(&mut guard, method, headers, &file, &[("etag", format!("\"{sha}\""))]),
        None => error(StatusCode::NOT_FOUND, None, "no such object", None),
    }
}

/// `bytes=a-` or `bytes=a-b` against `len`: `Ok(None)` without a Range, `Err` when unsatisfiable.
fn parse_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let spec = value.strip_prefix("bytes=").ok_or(())?;
    let (start, end) = spec.split_once('-').ok_or(())?;
    let start: u64 = start.trim().parse().map_err(|_| ())?;
    let end: u64 = if end.trim().is_empty() { len.saturating_sub(1) } else { end.trim().parse().map_err(|_| ())? };
    if start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end.min(len - 1))))
}

fn serve_bytes(state: &mut State, method: &Method, headers: &HeaderMap, file: &FakeFile, extra: &[(&str, String)]) -> Response<Body> {
    let len = file.bytes.len() as u64;
    let sha = file.sha256();
    let mut content = file.bytes.clone();
    if state.corrupt.contains_key(&sha) && !content.is_empty() {
        let mut bad = content.to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x01;
        content = Bytes::from(bad);
    }
    let mut builder = Response::builder().header(header::ACCEPT_RANGES, "bytes").header(header::CONTENT_TYPE, "application/octet-stream");
    for (name, value) in extra {
        builder = builder.header(*name, value);
    }
    let (status, slice) = match parse_range(headers, len) {
        Ok(None) => (StatusCode::OK, content),
        Ok(Some((start, end))) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, content.slice(start as usize..=end as usize))
        }
        Err(()) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, slice.len().to_string());
    if *method == Method::HEAD {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    let body = match state.drop_after.remove(&sha) {
        Some(after) => {
            let first = slice.slice(..(after as usize).min(slice.len()));
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(first), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake hub: dropping the connection"))];
            // The break comes a moment after the bytes, so that they are flushed first.
            Body::from_stream(futures::StreamExt::then(futures::stream::iter(chunks), |chunk| async move {
                if chunk.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                chunk
            }))
        }
        None => Body::from(slice),
    };
    builder.body(body).unwrap_or_default()
}
