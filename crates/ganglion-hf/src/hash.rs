//! The hashes the hub announces: SHA-256 for LFS files, the git blob SHA-1 for the rest.

use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::{HashKind, HfError, HfResult};

/// A hash a file must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHash {
    /// Which hash.
    pub kind: HashKind,
    /// Lowercase hex.
    pub hex: String,
}

impl ExpectedHash {
    /// A SHA-256 (64 hex digits), lowercased.
    pub fn sha256(hex: &str) -> Option<ExpectedHash> {
        is_hex(hex, 64).then(|| ExpectedHash { kind: HashKind::Sha256, hex: hex.to_ascii_lowercase() })
    }

    /// A git blob SHA-1 (40 hex digits), lowercased.
    pub fn git_sha1(hex: &str) -> Option<ExpectedHash> {
        is_hex(hex, 40).then(|| ExpectedHash { kind: HashKind::GitBlobSha1, hex: hex.to_ascii_lowercase() })
    }

    /// From a normalized etag: 64 hex digits are a SHA-256 (LFS), 40 a git blob SHA-1.
    pub fn from_etag(etag: &str) -> Option<ExpectedHash> {
        ExpectedHash::sha256(etag).or_else(|| ExpectedHash::git_sha1(etag))
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An etag without `W/` and quotes, as `huggingface_hub` normalizes it.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// A running hash of one kind over a file of known size.
pub(crate) enum Hasher {
    Sha256(Sha256),
    GitSha1(Sha1),
}

impl Hasher {
    /// A fresh hasher; the git blob header needs the total `size` up front.
    pub(crate) fn new(kind: HashKind, size: u64) -> Hasher {
        match kind {
            HashKind::Sha256 => Hasher::Sha256(Sha256::new()),
            HashKind::GitBlobSha1 => {
                let mut h = Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Hasher::GitSha1(h)
            }
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitSha1(h) => h.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::GitSha1(h) => hex::encode(h.finalize()),
        }
    }
}

/// Feeds the first `limit` bytes of `path` into `hasher`; returns how many there were.
pub(crate) async fn feed_file(path: &Path, hasher: &mut Hasher, limit: u64) -> HfResult<u64> {
    let file = tokio::fs::File::open(path).await.map_err(|e| HfError::io(path, e))?;
    let mut file = file.take(limit);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(|e| HfError::io(path, e))?;
        if n == 0 {
            return Ok(done);
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
}

/// The `kind` hash of the file at `path` (lowercase hex).
pub async fn hash_file(path: &Path, kind: HashKind) -> HfResult<String> {
    let size = tokio::fs::metadata(path).await.map_err(|e| HfError::io(path, e))?.len();
    let mut hasher = Hasher::new(kind, size);
    let read = feed_file(path, &mut hasher, size).await?;
    if read != size {
        return Err(HfError::io(path, std::io::Error::other("the file changed while it was hashed")));
    }
    Ok(hasher.finish())
}

/// Checks the file at `path` against `expected`; a mismatch is [`HfError::HashMismatch`].
pub async fn verify_file(path: &Path, expected: &ExpectedHash, repo: &str, file: &str) -> HfResult<()> {
    let actual = hash_file(path, expected.kind).await?;
    if actual == expected.hex {
        Ok(())
    } else {
        Err(HfError::HashMismatch {
            repo: repo.to_string(),
            file: file.to_string(),
            kind: expected.kind,
            expected: expected.hex.clone(),
            actual,
        })
    }
}

/// The git blob SHA-1 of `bytes`, as git and the hub compute it.
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut h = Hasher::new(HashKind::GitBlobSha1, bytes.len() as u64);
    h.update(bytes);
    h.finish()
}

/// The SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(git_blob_sha1(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        // `git hash-object /dev/null`
        assert_eq!(git_blob_sha1(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }

    #[test]
    fn etags_normalize_and_classify() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        let sha = "a".repeat(64);
        assert_eq!(ExpectedHash::from_etag(&sha).map(|h| h.kind), Some(HashKind::Sha256));
        assert_eq!(ExpectedHash::from_etag(&"b".repeat(40)).map(|h| h.kind), Some(HashKind::GitBlobSha1));
        assert_eq!(ExpectedHash::from_etag("xyz"), None);
    }
}
