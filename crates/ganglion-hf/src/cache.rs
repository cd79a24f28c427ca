//! The hub cache, laid out as Python's `huggingface_hub` and the `hf-hub` crate lay it out,
//! so a file downloaded here is found there and back:
//!
//! ```text
//! <cache>/models--OWNER--NAME/blobs/<etag>                      the content, named by its hash
//! <cache>/models--OWNER--NAME/blobs/<etag>.incomplete           our partial download, resumed by the next run
//! <cache>/models--OWNER--NAME/snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
//! <cache>/models--OWNER--NAME/refs/<revision>                   the commit a branch or tag pointed to
//! <cache>/.locks/models--OWNER--NAME/<etag>.lock                 flock held while a blob is written (Python's too)
//! ```
//!
//! `huggingface_hub` 2.x downloads into a process-unique `<etag>.<random>.incomplete` and
//! resumes only within one call; older releases and `hf-hub` used `<etag>.incomplete` as we
//! do. Ours is shared across runs so that an interrupted pull continues; the lock keeps two
//! writers apart, and the hash check turns a lock that a filesystem does not honour into a
//! failed download, never a wrong blob.
//!
//! Folder names come from `hf_hub::Repo::folder_name`. Writes are atomic (temp + rename).

use std::path::{Path, PathBuf};

use crate::error::{HfError, HfResult};
use crate::reference::{HubRef, check_file_path, check_repo_id, check_revision, is_commit_sha};

/// A hub cache directory.
#[derive(Debug, Clone)]
pub struct HubCache {
    root: PathBuf,
}

/// A `.gguf` file found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    /// `OWNER/NAME`.
    pub repo: String,
    /// The snapshot's commit.
    pub commit: String,
    /// Path inside the repo.
    pub file: String,
    /// The snapshot path (a symlink into `blobs/`).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

impl HubCache {
    /// The cache at `root`.
    pub fn new(root: PathBuf) -> HubCache {
        HubCache { root }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/models--OWNER--NAME`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(hf_hub::Repo::model(repo.to_string()).folder_name())
    }

    fn cache_repo(&self, repo: &str, revision: &str) -> hf_hub::CacheRepo {
        hf_hub::Cache::new(self.root.clone()).repo(hf_hub::Repo::with_revision(
            repo.to_string(),
            hf_hub::RepoType::Model,
            revision.to_string(),
        ))
    }

    /// `blobs/<etag>`.
    pub fn blob_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag)
    }

    /// `blobs/<etag>.incomplete`, the partial download (the name Python uses too).
    pub fn incomplete_path(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(format!("{etag}.incomplete"))
    }

    /// `.locks/models--OWNER--NAME/<etag>.lock`, where `huggingface_hub` locks the same blob.
    pub fn lock_path(&self, repo: &str, etag: &str) -> PathBuf {
        let folder = hf_hub::Repo::model(repo.to_string()).folder_name();
        self.root.join(".locks").join(folder).join(format!("{etag}.lock"))
    }

    /// `snapshots/<commit>/<file>`.
    pub fn snapshot_path(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        self.cache_repo(repo, commit).pointer_path(commit).join(file)
    }

    /// `refs/<revision>`.
    pub fn ref_path(&self, repo: &str, revision: &str) -> PathBuf {
        self.repo_dir(repo).join("refs").join(revision)
    }

    /// The commit `revision` points to in the cache: itself if it is a commit sha, else
    /// the content of `refs/<revision>` if that is a commit sha.
    pub fn read_ref(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit_sha(revision) {
            return Some(revision.to_string());
        }
        check_revision(revision).ok()?;
        let text = read_small(&self.ref_path(repo, revision), 256)?;
        let sha = text.trim();
        is_commit_sha(sha).then(|| sha.to_string())
    }

    /// Records that `revision` points to `commit` (nothing to do when they are equal).
    pub fn write_ref(&self, repo: &str, revision: &str, commit: &str) -> HfResult<()> {
        if revision == commit {
            return Ok(());
        }
        check_revision(revision).map_err(|r| HfError::BadReference { spec: revision.to_string(), reason: r })?;
        let path = self.ref_path(repo, revision);
        write_atomic(&path, commit.as_bytes())
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative symlink, replacing
    /// whatever was there atomically. Returns the snapshot path.
    pub fn link(&self, repo: &str, commit: &str, file: &str, etag: &str) -> HfResult<PathBuf> {
        check_file_path(file).map_err(|r| HfError::BadReference { spec: file.to_string(), reason: r })?;
        let pointer = self.snapshot_path(repo, commit, file);
        let parent = pointer.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| HfError::io(&parent, e))?;
        let tmp = parent.join(format!(".{}.{}.tmp", file.rsplit('/').next().unwrap_or(file), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        {
            // From snapshots/<commit>/<dirs…>/<name> up to the repo dir, then into blobs/.
            let depth = 2 + file.matches('/').count();
            let target: PathBuf = std::iter::repeat_n("..", depth).collect::<PathBuf>().join("blobs").join(etag);
            std::os::unix::fs::symlink(&target, &tmp).map_err(|e| HfError::io(&tmp, e))?;
        }
        #[cfg(not(unix))]
        {
            let blob = self.blob_path(repo, etag);
            std::fs::copy(&blob, &tmp).map_err(|e| HfError::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &pointer).map_err(|e| HfError::io(&pointer, e))?;
        Ok(pointer)
    }

    /// The cached path of `reference` without the network: its revision through `refs/`,
    /// then its file, or the snapshot's single `.gguf` when it names none.
    pub fn resolve_gguf(&self, reference: &HubRef) -> HfResult<PathBuf> {
        let not_cached = || HfError::NotCached { spec: reference.to_string(), cache: self.root.clone() };
        let commit = self.read_ref(&reference.repo, reference.revision()).ok_or_else(not_cached)?;
        let snapshot = self.snapshot_path(&reference.repo, &commit, "");
        if let Some(file) = &reference.file {
            let path = snapshot.join(file);
            return if path.is_file() { Ok(path) } else { Err(not_cached()) };
        }
        let mut ggufs = Vec::new();
        collect_ggufs(&snapshot, "", &mut ggufs, 0);
        match ggufs.len() {
            0 => Err(not_cached()),
            1 => Ok(snapshot.join(&ggufs[0])),
            _ => Err(HfError::SeveralGguf {
                repo: reference.repo.clone(),
                revision: reference.revision().to_string(),
                files: ggufs.join(", "),
            }),
        }
    }

    /// Every `.gguf` in every model snapshot of the cache (an absent cache lists nothing).
    pub fn list_ggufs(&self) -> HfResult<Vec<CachedFile>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HfError::io(&self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(folder) = name.strip_prefix("models--") else { continue };
            let repo = folder.replacen("--", "/", 1);
            if check_repo_id(&repo).is_err() {
                continue;
            }
            let Ok(snapshots) = std::fs::read_dir(entry.path().join("snapshots")) else { continue };
            for snapshot in snapshots.flatten() {
                let commit = snapshot.file_name().to_string_lossy().into_owned();
                let mut files = Vec::new();
                collect_ggufs(&snapshot.path(), "", &mut files, 0);
                for file in files {
                    let path = snapshot.path().join(&file);
                    // Follows the symlink: a dangling one (blob deleted) is skipped.
                    let Ok(meta) = std::fs::metadata(&path) else { continue };
                    out.push(CachedFile { repo: repo.clone(), commit: commit.clone(), file, path, size: meta.len() });
                }
            }
        }
        out.sort_by(|a, b| (&a.repo, &a.file, &a.commit).cmp(&(&b.repo, &b.file, &b.commit)));
        Ok(out)
    }
}

/// Relative paths of the `.gguf` files under `dir` (depth-bounded).
fn collect_ggufs(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let path = entry.path();
        if path.is_dir() {
            if depth < 8 {
                collect_ggufs(&path, &rel, out, depth + 1);
            }
        } else if name.ends_with(".gguf") && path.is_file() {
            out.push(rel);
        }
    }
    out.sort();
}

fn read_small(path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> HfResult<()> {
    let parent = path.parent().ok_or_else(|| HfError::io(path, std::io::Error::other("no parent directory")))?;
    std::fs::create_dir_all(parent).map_err(|e| HfError::io(parent, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| HfError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| HfError::io(path, e))
}

/// An exclusive lock on a blob, released when dropped (best effort: a filesystem without
/// `flock` gives none, and the hash check still guards the blob).
#[derive(Debug)]
pub(crate) struct BlobLock {
    _file: Option<std::fs::File>,
}

/// Takes the lock at `path`, waiting (polling, as Python's filelock does) while another
/// process, ours or Python's, holds it.
pub(crate) async fn lock_blob(path: &Path) -> HfResult<BlobLock> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| HfError::io(parent, e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| HfError::io(path, e))?;
    #[cfg(unix)]
    {
        use rustix::fs::{FlockOperation, flock};
        let mut told = false;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(BlobLock { _file: Some(file) }),
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    if !told {
                        tracing::info!(lock = %path.display(), "another download of this file is running; waiting for it");
                        told = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    tracing::debug!(lock = %path.display(), error = %e, "no flock here; downloading without the lock");
                    return Ok(BlobLock { _file: None });
                }
            }
        }
    }
    #[cfg(not(unix))]
    Ok(BlobLock { _file: Some(file) })
}
