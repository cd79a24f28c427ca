//! Helpers shared by the end-to-end tests: locating the pulled SmolLM2 GGUF and the project venv.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The pulled SmolLM2 GGUF; fails the test with the command to run when it is absent.
pub(crate) fn smollm2_path() -> PathBuf {
    let dir = ganglion_engine::store::models_dir().expect("HOME or GANGLION_HOME must be set");
    let known = ganglion_engine::store::known_model("smollm2").unwrap();
    let path = dir.join(known.file_name);
    assert!(
        path.is_file(),
        "{} is missing: run `ganglion model pull smollm2` (or set GANGLION_HOME to where it was pulled)",
        path.display()
    );
    path
}

/// Python with the `openai` package: `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python`.
#[path = "../../../../../tests/support/python.rs"]
mod support;

pub(crate) fn python() -> PathBuf {
    support::python()
}
