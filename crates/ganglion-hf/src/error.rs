//! Typed errors, each with a sentence that says what to do.

use std::path::{Path, PathBuf};

/// Which hash a file is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// SHA-256 of the content (LFS files: `X-Linked-Etag`, the API's `lfs.sha256`).
    Sha256,
    /// Git blob SHA-1, `sha1("blob {len}\0" ‖ content)` (regular files: `ETag`, the API's `blobId`).
    GitBlobSha1,
}

impl std::fmt::Display for HashKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HashKind::Sha256 => "SHA-256",
            HashKind::GitBlobSha1 => "git blob SHA-1",
        })
    }
}

/// Everything that can go wrong talking to the hub or its cache.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A model reference that does not parse.
    #[error("bad Hugging Face reference `{spec}`: {reason}; write hf:OWNER/REPO[@REVISION][:FILE]")]
    BadReference {
        /// What was given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `HF_ENDPOINT` (or the configured endpoint) is not an http(s) URL.
    #[error("bad hub endpoint `{endpoint}`: {reason}; set HF_ENDPOINT to a URL like https://huggingface.co")]
    BadEndpoint {
        /// The endpoint.
        endpoint: String,
        /// Why it is refused.
        reason: String,
    },
    /// No place for the hub cache.
    #[error("no hub cache directory: set HF_HUB_CACHE or HF_HOME (or HOME)")]
    NoCacheDir,
    /// 401/403: the repo needs a token, a better token, or an accepted licence.
    #[error(
        "{url}: access refused (HTTP {status}{message}); set HF_TOKEN to a token that can read {repo}, and for a gated model accept its licence on its page on the hub"
    )]
    Unauthorized {
        /// The repo.
        repo: String,
        /// The URL refused.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The hub's `X-Error-Message`, if any (with a leading `: `).
        message: String,
    },
    /// 404 for the repository.
    #[error("repository {repo} not found at {endpoint}{message}; check its name (a private repository also needs HF_TOKEN)")]
    RepoNotFound {
        /// The repo.
        repo: String,
        /// The hub's base URL.
        endpoint: String,
        /// The hub's message (with a leading `: `).
        message: String,
    },
    /// 404 for the revision.
    #[error("revision `{revision}` not found in {repo}{message}; check the branch, tag or commit after `@`")]
    RevisionNotFound {
        /// The repo.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The hub's message (with a leading `: `).
        message: String,
    },
    /// 404 for the file.
    #[error("file `{file}` not found in {repo}@{revision}{message}; list the repository's files on the hub and pick one")]
    FileNotFound {
        /// The repo.
        repo: String,
        /// The revision.
        revision: String,
        /// The file asked for.
        file: String,
        /// The hub's message (with a leading `: `).
        message: String,
    },
    /// Any other HTTP status.
    #[error("{url}: HTTP {status}{message}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The hub's message (with a leading `: `).
        message: String,
    },
    /// The hub could not be reached, or the connection broke.
    #[error("cannot reach the hub at {url}: {reason}; check HF_ENDPOINT (now {endpoint}), the network, and --tls.ca_file for a private CA")]
    Network {
        /// The URL.
        url: String,
        /// The hub's base URL.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The hub's answer makes no sense to this client (missing headers, bad JSON, too big).
    #[error("{url}: {what}; is HF_ENDPOINT (now {endpoint}) a Hugging Face Hub?")]
    Protocol {
        /// The URL.
        url: String,
        /// The hub's base URL.
        endpoint: String,
        /// What was wrong.
        what: String,
    },
    /// A downloaded file's hash is not the one the hub announced. The file was deleted.
    #[error(
        "{file} from {repo}: {kind} mismatch (expected {expected}, got {actual}); the download was deleted, run the command again (a repeated mismatch means the hub, a proxy or the mirror serves corrupt data)"
    )]
    HashMismatch {
        /// The repo.
        repo: String,
        /// The file.
        file: String,
        /// Which hash.
        kind: HashKind,
        /// Expected, lowercase hex.
        expected: String,
        /// Computed (or announced by the hub, for a pinned hash), lowercase hex.
        actual: String,
    },
    /// The hub announced no hash this client can check.
    #[error("{file} from {repo}: the hub announced no usable hash (etag `{etag}`), so the file cannot be verified")]
    Unverifiable {
        /// The repo.
        repo: String,
        /// The file.
        file: String,
        /// The etag given.
        etag: String,
    },
    /// No `.gguf` file to pick.
    #[error("{repo}@{revision} has no .gguf file (files: {files}); name one with --file")]
    NoGguf {
        /// The repo.
        repo: String,
        /// The revision.
        revision: String,
        /// Its files, comma-separated.
        files: String,
    },
    /// Several `.gguf` files and none named.
    #[error("{repo}@{revision} has several .gguf files: {files}; pick one with --file NAME (or hf:{repo}@{revision}:NAME)")]
    SeveralGguf {
        /// The repo.
        repo: String,
        /// The revision.
        revision: String,
        /// The candidates, comma-separated.
        files: String,
    },
    /// Not in the local hub cache.
    #[error("{spec} is not in the hub cache {cache}; run `ganglion model pull {spec}` first")]
    NotCached {
        /// The reference.
        spec: String,
        /// The cache directory.
        cache: PathBuf,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl HfError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> HfError {
        HfError::Io { path: path.to_path_buf(), source }
    }

    /// Whether trying again (with a `Range` request for a partial file) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            HfError::Network { .. } => true,
            HfError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Results of this crate.
pub type HfResult<T> = Result<T, HfError>;
