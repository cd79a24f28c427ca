//! The hub's file-resolution protocol, as `huggingface_hub` speaks it:
//!
//! 1. `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` (following same-origin redirects only, as `huggingface_hub` does):
//!    `X-Repo-Commit` is the commit, `X-Linked-Etag` (LFS: the SHA-256) or `ETag` (the git
//!    blob SHA-1) names the blob, `X-Linked-Size` or `Content-Length` its size, and a `302`'s
//!    `Location` is where the bytes are (the CDN, for LFS files).
//! 2. `GET` that location into `blobs/<etag>.incomplete`, with `Range: bytes=N-` when N bytes
//!    are already there (after a broken connection, or from an earlier run, ours or Python's).
//! 3. Hash while writing; compare with the etag; rename to `blobs/<etag>`; link the snapshot.
//!
//! `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` gives the commit and the
//! files with their sizes and hashes.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::cache::{HubCache, lock_blob};
use crate::config::HubConfig;
use crate::error::{HfError, HfResult};
use crate::hash::{ExpectedHash, Hasher, feed_file, normalize_etag, verify_file};
use crate::reference::{check_file_path, check_repo_id, check_revision, is_commit_sha};

// Header sizes are bounded by hyper (reqwest's HTTP/1 parser: at most 100 headers in a
// bounded read buffer); bodies by these limits and, for files, by the announced size.

/// The largest JSON body read from the API (a repo with tens of thousands of files).
const MAX_JSON: usize = 32 << 20;
/// The largest error body read (for its message).
const MAX_ERROR_BODY: usize = 4096;
/// The most redirects followed.
const MAX_REDIRECTS: usize = 8;

/// Progress of a download, so a caller can draw bars without this crate knowing how.
pub trait Progress {
    /// A phase starts: `total` bytes (if known), `done` of them already there.
    fn start(&mut self, name: &str, total: Option<u64>, done: u64);
    /// `done` bytes so far.
    fn advance(&mut self, done: u64);
    /// The phase ended.
    fn finish(&mut self);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _name: &str, _total: Option<u64>, _done: u64) {}
    fn advance(&mut self, _done: u64) {}
    fn finish(&mut self) {}
}

/// A repo at one commit, from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// `OWNER/NAME`.
    pub id: String,
    /// The commit the revision resolved to.
    pub sha: String,
    /// Its files.
    pub files: Vec<RepoFile>,
}

/// A file of a repo, from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    /// Path in the repo.
    pub path: String,
    /// Size in bytes (the content's, for LFS files).
    pub size: Option<u64>,
    /// Git blob SHA-1 (of the LFS pointer, for LFS files).
    pub blob_id: Option<String>,
    /// LFS content SHA-256, for LFS files.
    pub lfs_sha256: Option<String>,
}

impl RepoFile {
    /// The hash the content must have: `lfs.sha256` for LFS files, else `blobId`.
    pub fn expected_hash(&self) -> Option<ExpectedHash> {
        match &self.lfs_sha256 {
            Some(sha) => ExpectedHash::sha256(sha),
            None => self.blob_id.as_deref().and_then(ExpectedHash::git_sha1),
        }
    }
}

/// What `HEAD …/resolve/…` says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMetadata {
    /// The commit.
    pub commit: String,
    /// The normalized etag (blob name in the cache).
    pub etag: String,
    /// The hash derived from the etag.
    pub expected: ExpectedHash,
    /// Size in bytes.
    pub size: u64,
    /// Where to GET the bytes.
    pub location: String,
}

/// A file in the cache, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The snapshot path (`snapshots/<commit>/<file>`, a symlink to the blob).
    pub path: PathBuf,
    /// The blob.
    pub blob: PathBuf,
    /// The commit.
    pub commit: String,
    /// Size in bytes.
    pub size: u64,
    /// The hash it was checked against.
    pub hash: ExpectedHash,
    /// It was already in the cache (and still had the right hash).
    pub already_present: bool,
    /// Bytes of an earlier partial download that were kept (0 when none).
    pub resumed_from: u64,
}

/// One file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// `OWNER/NAME`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Path in the repo.
    pub file: String,
    /// A hash the caller already knows (from [`HubClient::repo_info`], or pinned by a
    /// validator): the hub must announce the same one, and the bytes must have it.
    pub pinned: Option<ExpectedHash>,
}

#[derive(Deserialize)]
struct ApiInfo {
    #[serde(default)]
    id: Option<String>,
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    sha256: String,
}

/// A Hugging Face Hub client over our TLS setup.
///
/// Why not `hf-hub`'s client: `hf-hub` 0.5's tokio API builds its own reqwest 0.12 client
/// (a second HTTP stack that cannot trust `--tls.ca_file`), and neither it nor 1.0 checks
/// hashes or resumes an interrupted download with a `Range` request where it stopped; 1.0
/// takes a reqwest 0.13 client but turns on reqwest's default TLS (aws-lc-rs, which this
/// workspace keeps out of the build) and needs `hf-xet`. So the protocol (a HEAD, a GET,
/// one JSON call) is spoken here, and `hf-hub` gives the cache layout.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    config: HubConfig,
    cache: HubCache,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(path: &str) -> String {
    path.split('/').map(encode_segment).collect::<Vec<_>>().join("/")
}

impl HubClient {
    /// A client for `config` whose connections trust what `tls` trusts.
    pub fn new(config: HubConfig, tls: &ganglion_tls::ClientTls) -> HfResult<HubClient> {
        let http = tls
            .http_builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("ganglion-hf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HfError::Client(ganglion_tls::describe_http_error(&e)))?;
        let cache = HubCache::new(config.cache_dir.clone());
        Ok(HubClient { http, config, cache })
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The cache.
    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`.
    pub fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!("{}/{}/resolve/{}/{}", self.config.endpoint, repo, encode_segment(revision), encode_path(file))
    }

    fn network(&self, url: &str, error: &reqwest::Error) -> HfError {
        HfError::Network {
            url: url.to_string(),
            endpoint: self.config.endpoint.clone(),
            reason: ganglion_tls::describe_http_error(error),
        }
    }

    fn protocol(&self, url: &str, what: impl Into<String>) -> HfError {
        HfError::Protocol { url: url.to_string(), endpoint: self.config.endpoint.clone(), what: what.into() }
    }

    /// Sends `method url`, with the token only to the endpoint's origin, following redirects:
    /// all of them, or (`same_origin_only`, as `huggingface_hub` does for HEAD) only those to the
    /// same origin, returning the cross-origin one itself.
    async fn send(&self, method: Method, url: &str, extra: HeaderMap, same_origin_only: bool) -> HfResult<(String, reqwest::Response)> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.http.request(method.clone(), &url).headers(extra.clone());
            if let Some(token) = &self.config.token
                && origin(&url) == origin(&self.config.endpoint)
            {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| self.network(&url, &e))?;
            if !response.status().is_redirection() {
                return Ok((url, response));
            }
            let Some(location) = header_str(response.headers(), "location") else {
                return Ok((url, response));
            };
            let next = response
                .url()
                .join(location)
                .map_err(|e| self.protocol(&url, format!("bad redirect Location `{location}`: {e}")))?;
            let next = next.to_string();
            if same_origin_only && origin(&next) != origin(&url) {
                return Ok((url, response));
            }
            url = next;
        }
        Err(self.protocol(&url, format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// Reads at most `max` bytes of a body; more is a protocol error.
    async fn read_bounded(&self, url: &str, mut response: reqwest::Response, max: usize) -> HfResult<Vec<u8>> {
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(self.protocol(url, format!("a response larger than {max} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.network(url, &e))? {
            if body.len() + chunk.len() > max {
                return Err(self.protocol(url, format!("a response larger than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Turns a failed response into the typed error for what it means.
    async fn status_error(&self, url: &str, response: reqwest::Response, repo: &str, revision: &str, file: Option<&str>) -> HfError {
        let status = response.status();
        let code = header_str(response.headers(), "x-error-code").map(str::to_string);
        let header_message = header_str(response.headers(), "x-error-message").map(str::to_string);
        let message = match header_message {
            Some(m) => m,
            None => {
                // A bounded read; a failure to read the body leaves the status alone.
                let body = self.read_bounded(url, response, MAX_ERROR_BODY).await.unwrap_or_default();
                let text = String::from_utf8_lossy(&body);
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_else(|| text.chars().take(200).collect())
            }
        };
        let message = if message.trim().is_empty() { String::new() } else { format!(": {}", message.trim()) };
        match (status, code.as_deref()) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
                HfError::Unauthorized { repo: repo.to_string(), url: url.to_string(), status: status.as_u16(), message }
            }
            (StatusCode::NOT_FOUND, Some("RevisionNotFound")) => {
                HfError::RevisionNotFound { repo: repo.to_string(), revision: revision.to_string(), message }
            }
            (StatusCode::NOT_FOUND, Some("EntryNotFound")) => HfError::FileNotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.unwrap_or_default().to_string(),
                message,
            },
            (StatusCode::NOT_FOUND, Some("RepoNotFound") | None) if file.is_none() => {
                HfError::RepoNotFound { repo: repo.to_string(), endpoint: self.config.endpoint.clone(), message }
            }
            (StatusCode::NOT_FOUND, Some("RepoNotFound")) => {
                HfError::RepoNotFound { repo: repo.to_string(), endpoint: self.config.endpoint.clone(), message }
            }
            (StatusCode::NOT_FOUND, _) => HfError::FileNotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.unwrap_or_default().to_string(),
                message,
            },
            _ => HfError::Status { url: url.to_string(), status: status.as_u16(), message },
        }
    }

    fn check_names(repo: &str, revision: &str, file: Option<&str>) -> HfResult<()> {
        let bad = |spec: &str, reason: String| HfError::BadReference { spec: spec.to_string(), reason };
        check_repo_id(repo).map_err(|r| bad(repo, r))?;
        check_revision(revision).map_err(|r| bad(revision, r))?;
        if let Some(file) = file {
            check_file_path(file).map_err(|r| bad(file, r))?;
        }
        Ok(())
    }

    /// The repo at `revision`: its commit and its files with sizes and hashes.
    pub async fn repo_info(&self, repo: &str, revision: &str) -> HfResult<RepoInfo> {
        Self::check_names(repo, revision, None)?;
        let url = format!("{}/api/models/{}/revision/{}?blobs=true", self.config.endpoint, repo, encode_segment(revision));
        let (url, response) = self.send(Method::GET, &url, HeaderMap::new(), false).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&url, response, repo, revision, None).await);
        }
        let body = self.read_bounded(&url, response, MAX_JSON).await?;
        let info: ApiInfo = serde_json::from_slice(&body).map_err(|e| self.protocol(&url, format!("bad JSON: {e}")))?;
        let sha = info
            .sha
            .filter(|s| is_commit_sha(s))
            .ok_or_else(|| self.protocol(&url, "no commit sha in the repository info"))?;
        let files = info
            .siblings
            .into_iter()
            .filter(|s| check_file_path(&s.rfilename).is_ok())
            .map(|s| RepoFile {
                path: s.rfilename,
                size: s.size,
                blob_id: s.blob_id,
                lfs_sha256: s.lfs.map(|l| l.sha256.to_ascii_lowercase()),
            })
            .collect();
        Ok(RepoInfo { id: info.id.unwrap_or_else(|| repo.to_string()), sha, files })
    }

    /// The commit `revision` (a branch, tag or commit) points to.
    pub async fn resolve_revision(&self, repo: &str, revision: &str) -> HfResult<String> {
        Ok(self.repo_info(repo, revision).await?.sha)
    }

    /// `HEAD …/resolve/…`: the file's commit, etag, hash, size and download location.
    pub async fn file_metadata(&self, repo: &str, revision: &str, file: &str) -> HfResult<FileMetadata> {
        Self::check_names(repo, revision, Some(file))?;
        let url = self.resolve_url(repo, revision, file);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        let (url, response) = self.send(Method::HEAD, &url, headers, true).await?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(self.status_error(&url, response, repo, revision, Some(file)).await);
        }
        let h = response.headers();
        let commit = header_str(h, "x-repo-commit")
            .filter(|c| is_commit_sha(c))
            .ok_or_else(|| self.protocol(&url, "no X-Repo-Commit header with a commit sha"))?
            .to_string();
        let etag = header_str(h, "x-linked-etag")
            .or_else(|| header_str(h, "etag"))
            .map(normalize_etag)
            .ok_or_else(|| self.protocol(&url, "no ETag header"))?;
        let expected = ExpectedHash::from_etag(&etag).ok_or_else(|| HfError::Unverifiable {
            repo: repo.to_string(),
            file: file.to_string(),
            etag: etag.clone(),
        })?;
        let size = header_str(h, "x-linked-size")
            .or_else(|| header_str(h, "content-length"))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| self.protocol(&url, "no X-Linked-Size or Content-Length header"))?;
        let location = match header_str(h, "location").filter(|_| status.is_redirection()) {
            Some(loc) => response.url().join(loc).map_err(|e| self.protocol(&url, format!("bad Location: {e}")))?.to_string(),
            None => url.clone(),
        };
        Ok(FileMetadata { commit, etag: etag.to_ascii_lowercase(), expected, size, location })
    }

    /// Downloads one file into the cache (resuming a partial download, verifying its hash)
    /// and returns its snapshot path. A file already cached is re-hashed, not re-fetched.
    /// On a hash mismatch the bytes are deleted and nothing is linked.
    pub async fn download(&self, request: &FileRequest, progress: &mut (dyn Progress + Send)) -> HfResult<Downloaded> {
        let FileRequest { repo, revision, file, pinned } = request;
        let meta = self.file_metadata(repo, revision, file).await?;
        if let Some(pinned) = pinned
            && *pinned != meta.expected
        {
            return Err(HfError::HashMismatch {
                repo: repo.clone(),
                file: file.clone(),
                kind: pinned.kind,
                expected: pinned.hex.clone(),
                actual: if pinned.kind == meta.expected.kind { meta.expected.hex.clone() } else { format!("{} {}", meta.expected.kind, meta.expected.hex) },
            });
        }
        let blob = self.cache.blob_path(repo, &meta.etag);
        let _lock = lock_blob(&self.cache.lock_path(repo, &meta.etag)).await?;
        let finish = |already_present: bool, resumed_from: u64| -> HfResult<Downloaded> {
            let path = self.cache.link(repo, &meta.commit, file, &meta.etag)?;
            self.cache.write_ref(repo, revision, &meta.commit)?;
            Ok(Downloaded {
                path,
                blob: blob.clone(),
                commit: meta.commit.clone(),
                size: meta.size,
                hash: meta.expected.clone(),
                already_present,
                resumed_from,
            })
        };
        if blob.is_file() {
            progress.start(&format!("verifying {file}"), Some(meta.size), 0);
            let checked = verify_file(&blob, &meta.expected, repo, file).await;
            progress.finish();
            match checked {
                Ok(()) => return finish(true, 0),
                Err(HfError::HashMismatch { .. }) => {
                    tracing::warn!(path = %blob.display(), "cached blob has the wrong hash; downloading it again");
                    std::fs::remove_file(&blob).map_err(|e| HfError::io(&blob, e))?;
                }
                Err(e) => return Err(e),
            }
        }
        let incomplete = self.cache.incomplete_path(repo, &meta.etag);
        if let Some(dir) = incomplete.parent() {
            std::fs::create_dir_all(dir).map_err(|e| HfError::io(dir, e))?;
        }
        let resumed_from = std::fs::metadata(&incomplete).map(|m| m.len()).unwrap_or(0).min(meta.size);
        let mut attempt = 0;
        let actual = loop {
            match self.fetch(repo, revision, &meta, &incomplete, file, progress).await {
                Ok(hash) => break hash,
                Err(e) if e.is_transient() && attempt < self.config.retries => {
                    attempt += 1;
                    tracing::warn!(%file, attempt, error = %e, "download broken; resuming");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                }
                // The partial file stays: the next run (ours or Python's) resumes it.
                Err(e) => return Err(e),
            }
        };
        if actual != meta.expected.hex {
            let _ = std::fs::remove_file(&incomplete);
            return Err(HfError::HashMismatch {
                repo: repo.clone(),
                file: file.clone(),
                kind: meta.expected.kind,
                expected: meta.expected.hex.clone(),
                actual,
            });
        }
        std::fs::rename(&incomplete, &blob).map_err(|e| HfError::io(&blob, e))?;
        finish(false, resumed_from)
    }

    /// One GET of the rest of the file into `incomplete`; returns the whole file's hash.
    async fn fetch(&self, repo: &str, revision: &str, meta: &FileMetadata, incomplete: &std::path::Path, file: &str, progress: &mut (dyn Progress + Send)) -> HfResult<String> {
        let mut have = std::fs::metadata(incomplete).map(|m| m.len()).unwrap_or(0);
        if have > meta.size {
            have = 0;
        }
        if have == meta.size && have > 0 {
            // Complete but not renamed (a run stopped between the two): only the hash is left.
            let mut hasher = Hasher::new(meta.expected.kind, meta.size);
            feed_file(incomplete, &mut hasher, have).await?;
            return Ok(hasher.finish());
        }
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if have > 0 {
            let range = HeaderValue::from_str(&format!("bytes={have}-")).map_err(|e| self.protocol(&meta.location, e.to_string()))?;
            headers.insert(reqwest::header::RANGE, range);
        }
        let (url, mut response) = self.send(Method::GET, &meta.location, headers, false).await?;
        let status = response.status();
        let append = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let start = header_str(response.headers(), "content-range")
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(have) {
                    let _ = std::fs::remove_file(incomplete);
                    return Err(HfError::Network {
                        url,
                        endpoint: self.config.endpoint.clone(),
                        reason: format!("asked for bytes from {have}, the server sent a different range; starting over"),
                    });
                }
                true
            }
            StatusCode::OK => false,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let _ = std::fs::remove_file(incomplete);
                return Err(HfError::Network {
                    url,
                    endpoint: self.config.endpoint.clone(),
                    reason: format!("the server refused the range from byte {have}; starting over"),
                });
            }
            _ => {
                return Err(self.status_error(&url, response, repo, revision, Some(file)).await);
            }
        };
        let mut hasher = Hasher::new(meta.expected.kind, meta.size);
        let mut done = 0;
        if append {
            done = feed_file(incomplete, &mut hasher, have).await?;
        }
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(incomplete)
            .await
            .map_err(|e| HfError::io(incomplete, e))?;
        progress.start(&format!("downloading {file}"), Some(meta.size), done);
        let result = async {
            loop {
                let chunk = match response.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => return Err(self.network(&url, &e)),
                };
                if done + chunk.len() as u64 > meta.size {
                    return Err(self.protocol(&url, format!("more bytes than the announced {}", meta.size)));
                }
                out.write_all(&chunk).await.map_err(|e| HfError::io(incomplete, e))?;
                hasher.update(&chunk);
                done += chunk.len() as u64;
                progress.advance(done);
            }
            if done != meta.size {
                return Err(HfError::Network {
                    url: url.clone(),
                    endpoint: self.config.endpoint.clone(),
                    reason: format!("the connection ended after {done} of {} bytes", meta.size),
                });
            }
            Ok(())
        }
        .await;
        progress.finish();
        // Whatever arrived is kept (flushed) for a resume.
        out.flush().await.map_err(|e| HfError::io(incomplete, e))?;
        if let Err(e) = result {
            if matches!(e, HfError::Protocol { .. }) {
                drop(out);
                let _ = std::fs::remove_file(incomplete);
            }
            return Err(e);
        }
        out.sync_all().await.map_err(|e| HfError::io(incomplete, e))?;
        Ok(hasher.finish())
    }
}

/// The file to pull from `files`: `wanted` if given (it must exist), else the single `.gguf`.
pub fn pick_gguf<'a>(info: &'a RepoInfo, revision: &str, wanted: Option<&str>) -> HfResult<&'a RepoFile> {
    if let Some(wanted) = wanted {
        return info.files.iter().find(|f| f.path == wanted).ok_or_else(|| HfError::FileNotFound {
            repo: info.id.clone(),
            revision: revision.to_string(),
            file: wanted.to_string(),
            message: format!(": the repository has {}", list(info.files.iter().map(|f| f.path.as_str()))),
        });
    }
    let ggufs: Vec<&RepoFile> = info.files.iter().filter(|f| f.path.ends_with(".gguf")).collect();
    match ggufs.as_slice() {
        [one] => Ok(one),
        [] => Err(HfError::NoGguf {
            repo: info.id.clone(),
            revision: revision.to_string(),
            files: list(info.files.iter().map(|f| f.path.as_str())),
        }),
        many => Err(HfError::SeveralGguf {
            repo: info.id.clone(),
            revision: revision.to_string(),
            files: list(many.iter().map(|f| f.path.as_str())),
        }),
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}
