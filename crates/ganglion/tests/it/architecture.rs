//! ARCHITECTURE.md's dependency table is the workspace's: every normal dependency between
//! workspace crates, no more and no fewer (read from `cargo metadata`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn documented(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let block = doc.split("```text deps\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap_or_else(|| panic!("no ```text deps block in ARCHITECTURE.md"));
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (name, deps) = line.split_once("->").unwrap_or_else(|| panic!("not `crate -> deps`: {line}"));
            let deps = deps.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| format!("ganglion-{d}")).collect();
            (name.trim().to_string(), deps)
        })
        .collect()
}

#[test]
fn architecture_doc_matches_the_workspace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_else(|e| panic!("ARCHITECTURE.md: {e}"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cargo metadata: {e}"));
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("cargo metadata JSON: {e}"));
    let actual: BTreeMap<String, BTreeSet<String>> = metadata["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages"))
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null() && d["name"].as_str().is_some_and(|n| n.starts_with("ganglion")))
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect();
    assert_eq!(documented(&doc), actual, "update the ```text deps block of ARCHITECTURE.md (or the dependency)");
}
