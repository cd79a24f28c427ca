//! The original's directory hash (`disk/utils.py:get_hash_of_directory`) and its
//! hotkey-bound variant (`get_hash_of_two_strings`).
//!
//! Walk the directory top-down as Python's `os.walk` does with sorted names: the files of a
//! directory (sorted by name), then each subdirectory (sorted) recursively. Each file
//! contributes base64(SHA-256(bytes)) — the 44 ASCII characters — to one SHA-256, whose
//! digest, base64-encoded, is the directory hash. An empty directory hashes to
//! base64(SHA-256("")).
//!
//! Symbolic links: the original materialised them first (`realize_symlinks_in_directory`),
//! so a link to a file counts as that file's bytes. Here a link to a regular file is
//! followed likewise; a link to a directory (which `os.walk` lists but does not enter) is
//! skipped as there. Every walk is bounded in files, depth and bytes ([`HashLimits`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Bounds of one walk.
#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    /// Most files.
    pub max_files: usize,
    /// Most bytes over all files.
    pub max_bytes: u64,
    /// Deepest directory nesting.
    pub max_depth: usize,
}

impl Default for HashLimits {
    fn default() -> Self {
        // The finetuning subnet's repository limit (15 GiB), and generous counts.
        HashLimits { max_files: 10_000, max_bytes: 15 * 1024 * 1024 * 1024, max_depth: 32 }
    }
}

/// Why a directory could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// A read failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Over [`HashLimits::max_files`].
    #[error("more than {0} files")]
    TooManyFiles(usize),
    /// Over [`HashLimits::max_bytes`].
    #[error("more than {0} bytes")]
    TooLarge(u64),
    /// Over [`HashLimits::max_depth`].
    #[error("directories nested deeper than {0}")]
    TooDeep(usize),
    /// A name that is not UTF-8 (Python would sort it by its surrogate escapes; refused here).
    #[error("{0}: the file name is not UTF-8")]
    NonUtf8Name(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HashError + '_ {
    move |source| HashError::Io { path: path.to_path_buf(), source }
}

/// base64(SHA-256) of `bytes`.
pub fn sha256_base64(bytes: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(bytes))
}

/// The directory's files in hashing order, as paths relative to `root`, with their sizes.
pub fn walk(root: &Path, limits: &HashLimits) -> Result<Vec<(PathBuf, u64)>, HashError> {
    let mut out = Vec::new();
    let mut total = 0u64;
    walk_into(root, Path::new(""), 0, limits, &mut out, &mut total)?;
    Ok(out)
}

fn walk_into(
    root: &Path,
    rel: &Path,
    depth: usize,
    limits: &HashLimits,
    out: &mut Vec<(PathBuf, u64)>,
    total: &mut u64,
) -> Result<(), HashError> {
    if depth > limits.max_depth {
        return Err(HashError::TooDeep(limits.max_depth));
    }
    let dir = root.join(rel);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().map(str::to_string) else {
            return Err(HashError::NonUtf8Name(entry.path()));
        };
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_symlink() {
            // Followed: a link to a file is that file; a link to a directory is not entered.
            let meta = std::fs::metadata(&path).map_err(io(&path))?;
            if meta.is_file() {
                files.push((name, meta.len()));
            }
        } else if kind.is_dir() {
            dirs.push(name);
        } else if kind.is_file() {
            files.push((name, entry.metadata().map_err(io(&path))?.len()));
        }
        if files.len() + out.len() > limits.max_files {
            return Err(HashError::TooManyFiles(limits.max_files));
        }
    }
    files.sort();
    dirs.sort();
    for (name, len) in files {
        *total = total.saturating_add(len);
        if *total > limits.max_bytes {
            return Err(HashError::TooLarge(limits.max_bytes));
        }
        out.push((rel.join(name), len));
    }
    for name in dirs {
        walk_into(root, &rel.join(name), depth + 1, limits, out, total)?;
    }
    Ok(())
}

/// base64(SHA-256) of one file, read in 64 KiB blocks, at most `max_bytes`.
pub fn hash_file(path: &Path, max_bytes: u64) -> Result<String, HashError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader = file.take(max_bytes.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        if seen > max_bytes {
            return Err(HashError::TooLarge(max_bytes));
        }
        hasher.update(&buf[..n]);
    }
    Ok(STANDARD.encode(hasher.finalize()))
}

/// The directory hash of the files already hashed in walk order: SHA-256 over each file's
/// base64 hash, base64-encoded.
pub fn combine<'a>(file_hashes: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for h in file_hashes {
        hasher.update(h.as_bytes());
    }
    STANDARD.encode(hasher.finalize())
}

/// The original's directory hash of `root`.
pub fn directory_hash(root: &Path, limits: &HashLimits) -> Result<String, HashError> {
    let files = walk(root, limits)?;
    let mut hashes = Vec::with_capacity(files.len());
    let mut budget = limits.max_bytes;
    for (rel, _) in &files {
        let path = root.join(rel);
        let h = hash_file(&path, budget)?;
        // The size may have changed since the walk: charge what was actually read.
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        budget = budget.saturating_sub(len);
        hashes.push(h);
    }
    Ok(combine(hashes.iter().map(String::as_str)))
}

/// The anti-copy variant committed on chain: base64(SHA-256(hash ‖ hotkey SS58)).
pub fn bind_to_hotkey(hash: &str, hotkey_ss58: &str) -> String {
    let mut s = String::with_capacity(hash.len() + hotkey_ss58.len());
    s.push_str(hash);
    s.push_str(hotkey_ss58);
    sha256_base64(s.as_bytes())
}

/// Whether `committed` is `hash` itself or its variant bound to `hotkey_ss58`.
pub fn matches_commitment(committed: &str, hash: &str, hotkey_ss58: &str) -> bool {
    committed == hash || committed == bind_to_hotkey(hash, hotkey_ss58)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_directory_is_the_hash_of_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(directory_hash(dir.path(), &HashLimits::default()).unwrap(), sha256_base64(b""));
    }

    #[test]
    fn order_is_files_first_then_sorted_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("z.txt"), b"z").unwrap();
        std::fs::write(dir.path().join("a/x"), b"x").unwrap();
        std::fs::write(dir.path().join("a/b/y"), b"y").unwrap();
        let order: Vec<String> = walk(dir.path(), &HashLimits::default())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(order, ["z.txt", "a/x", "a/b/y"]);
        let expected = combine([sha256_base64(b"z"), sha256_base64(b"x"), sha256_base64(b"y")].iter().map(String::as_str));
        assert_eq!(directory_hash(dir.path(), &HashLimits::default()).unwrap(), expected);
    }

    #[test]
    fn limits_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), vec![0u8; 100]).unwrap();
        }
        let few = HashLimits { max_files: 4, ..HashLimits::default() };
        assert!(matches!(directory_hash(dir.path(), &few), Err(HashError::TooManyFiles(4))));
        let small = HashLimits { max_bytes: 450, ..HashLimits::default() };
        assert!(matches!(directory_hash(dir.path(), &small), Err(HashError::TooLarge(450))));
        std::fs::create_dir_all(dir.path().join("d/e/f")).unwrap();
        let shallow = HashLimits { max_depth: 2, ..HashLimits::default() };
        assert!(matches!(directory_hash(dir.path(), &shallow), Err(HashError::TooDeep(2))));
    }

    #[test]
    fn hotkey_binding_differs_per_hotkey_and_is_accepted() {
        let h = sha256_base64(b"model");
        let a = bind_to_hotkey(&h, "5Grwva");
        assert_ne!(a, bind_to_hotkey(&h, "5FHne"));
        assert!(matches_commitment(&a, &h, "5Grwva"));
        assert!(matches_commitment(&h, &h, "anyone"));
        assert!(!matches_commitment(&a, &h, "5FHne"));
    }
}
