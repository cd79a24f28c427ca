//! Shared by the crates' interop tests (`#[path]`-included): finds the project's Python
//! venv with the reference implementations (`bittensor-wallet`, `openai`, `jellyfish`).

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python` if it exists (for tests that skip
/// without it, unless `GANGLION_REQUIRE_ALL=1`).
pub fn find_python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GANGLION_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = repo_root().join(".venv/bin/python");
    venv.is_file().then_some(venv)
}

/// [`find_python`], or a panic with the fix: interop tests are part of the suite and must
/// not silently pass without their peer.
pub fn python() -> PathBuf {
    if let Some(path) = find_python() {
        return path;
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need the project's venv at {}: run `scripts/setup-venv` (the README's test command does)",
        venv.display()
    );
    venv
}

/// Runs a Python script file from `tests/interop/` with arguments; panics with its output on failure.
pub fn run_script(script: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let path = repo_root().join("tests/interop").join(script);
    let output: Output = Command::new(python())
        .arg(&path)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|err| panic!("could not run {}: {err}", path.display()));
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
