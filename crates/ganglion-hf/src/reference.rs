//! `hf:OWNER/REPO[@REVISION][:FILE]`, and the checks on repo ids, revisions and file paths
//! that keep them inside the cache directory.

use crate::error::{HfError, HfResult};

/// The branch used when no revision is given.
pub const DEFAULT_REVISION: &str = "main";

/// The prefix of a hub reference on the command line.
pub const PREFIX: &str = "hf:";

/// A model on the hub: `hf:OWNER/REPO[@REVISION][:FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `OWNER/REPO` (or a bare `REPO`).
    pub repo: String,
    /// A branch, tag or commit; `None` means `main`.
    pub revision: Option<String>,
    /// A file in the repo.
    pub file: Option<String>,
}

impl HubRef {
    /// Whether `spec` is meant as a hub reference (starts with `hf:`).
    pub fn is_hub_ref(spec: &str) -> bool {
        spec.starts_with(PREFIX)
    }

    /// Parses `hf:OWNER/REPO[@REVISION][:FILE]` (the `hf:` prefix is required).
    pub fn parse(spec: &str) -> HfResult<HubRef> {
        let bad = |reason: &str| HfError::BadReference { spec: spec.to_string(), reason: reason.to_string() };
        let rest = spec.strip_prefix(PREFIX).ok_or_else(|| bad("it does not start with hf:"))?;
        // Repo ids and revisions never contain `:`; a file name may.
        let (repo_rev, file) = match rest.split_once(':') {
            Some((head, file)) => (head, Some(file)),
            None => (rest, None),
        };
        let (repo, revision) = match repo_rev.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (repo_rev, None),
        };
        check_repo_id(repo).map_err(|r| bad(&r))?;
        if let Some(rev) = revision {
            check_revision(rev).map_err(|r| bad(&r))?;
        }
        if let Some(file) = file {
            check_file_path(file).map_err(|r| bad(&r))?;
        }
        Ok(HubRef { repo: repo.to_string(), revision: revision.map(str::to_string), file: file.map(str::to_string) })
    }

    /// The revision, `main` when none was given.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The reference as written on the command line, with `file` if given.
    pub fn display_with(&self, file: Option<&str>) -> String {
        let mut s = format!("{PREFIX}{}", self.repo);
        if let Some(rev) = &self.revision {
            s.push('@');
            s.push_str(rev);
        }
        if let Some(file) = file.or(self.file.as_deref()) {
            s.push(':');
            s.push_str(file);
        }
        s
    }
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display_with(None))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// `OWNER/NAME` or `NAME`, with the hub's characters (letters, digits, `-`, `_`, `.`).
pub fn check_repo_id(repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(format!("repository `{repo}` is not OWNER/NAME"));
    }
    for part in parts {
        if part.is_empty() || part.len() > 96 || part == "." || part == ".." || !part.chars().all(is_name_char) {
            return Err(format!("repository `{repo}` is not OWNER/NAME (letters, digits, -, _, .)"));
        }
    }
    Ok(())
}

/// A branch, tag or commit: no empty, `.` or `..` components, no control characters.
pub fn check_revision(revision: &str) -> Result<(), String> {
    check_relative(revision).map_err(|r| format!("revision `{revision}`: {r}"))
}

/// A path inside a repo: relative, no empty, `.` or `..` components, no backslashes.
pub fn check_file_path(file: &str) -> Result<(), String> {
    check_relative(file).map_err(|r| format!("file `{file}`: {r}"))
}

fn check_relative(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 1024 {
        return Err("empty or too long".into());
    }
    if s.chars().any(|c| c.is_control() || c == '\\') {
        return Err("control characters or backslashes".into());
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("empty, `.` or `..` path components".into());
    }
    Ok(())
}

/// Whether `s` is a full commit sha (40 lowercase hex digits).
pub fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let r = HubRef::parse("hf:owner/repo").unwrap();
        assert_eq!((r.repo.as_str(), r.revision(), r.file.as_deref()), ("owner/repo", "main", None));
        let r = HubRef::parse("hf:owner/repo@v1.0:sub/model.gguf").unwrap();
        assert_eq!((r.repo.as_str(), r.revision(), r.file.as_deref()), ("owner/repo", "v1.0", Some("sub/model.gguf")));
        let r = HubRef::parse("hf:gpt2@refs/pr/1").unwrap();
        assert_eq!((r.repo.as_str(), r.revision()), ("gpt2", "refs/pr/1"));
        assert_eq!(r.to_string(), "hf:gpt2@refs/pr/1");
        for bad in ["owner/repo", "hf:", "hf:a/b/c", "hf:a/..", "hf:a/b@", "hf:a/b:../x", "hf:a/b@x/../y", "hf:a b/c"] {
            assert!(HubRef::parse(bad).is_err(), "{bad}");
        }
    }
}
