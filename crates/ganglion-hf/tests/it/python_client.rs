//! The fake hub against the hub's own Python client, `huggingface_hub` (pinned in
//! `scripts/requirements-interop.txt`): `hf_hub_download` with `HF_ENDPOINT` pointed at the
//! fake fetches the same bytes (an LFS file through the CDN redirect, a regular file, with a
//! token; a gated error without one), resumes a dropped download with a `Range` request of
//! its own, and `model_info(files_metadata=True)` reads the same commit and hashes. The two
//! clients share one cache: what Python downloaded our client finds in place, and the other
//! way round (`local_files_only=True`).
//!
//! Python: `$GANGLION_PYTHON`, else `<repo>/.venv/bin/python` (`scripts/setup-venv`). Without
//! it (or without `huggingface_hub` in it) the test is skipped, unless `GANGLION_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ganglion_hf::{FileRequest, NoProgress};
use serde_json::{Value, json};

use crate::support::{BIG, PRIVATE, PUBLIC, TOKEN, client, content, hub, private_repo};

fn find_python() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GANGLION_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    venv.is_file().then_some(venv)
}

/// The venv's Python if it has `huggingface_hub`; `None` (after printing why) to skip.
fn python_with_hub() -> Option<PathBuf> {
    let require = std::env::var("GANGLION_REQUIRE_ALL").as_deref() == Ok("1");
    let Some(python) = find_python() else {
        assert!(!require, "GANGLION_REQUIRE_ALL=1 but no Python: run scripts/setup-venv");
        println!("skipped: no .venv/bin/python (run scripts/setup-venv)");
        return None;
    };
    let ok = std::process::Command::new(&python)
        .args(["-c", "import huggingface_hub"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(!require, "GANGLION_REQUIRE_ALL=1 but {} has no huggingface_hub", python.display());
        println!("skipped: {} has no huggingface_hub (run scripts/setup-venv)", python.display());
        return None;
    }
    Some(python)
}

const SCRIPT: &str = r#"
import json, os, sys
from huggingface_hub import hf_hub_download, HfApi
a = json.load(sys.stdin)
out = {}
def dl(repo, name, rev, token, **kw):
    return hf_hub_download(repo_id=repo, filename=name, revision=rev, endpoint=a["endpoint"], cache_dir=a["cache"], token=token, **kw)
if a["mode"] == "download":
    out["gguf"] = dl(a["private"], "model-Q4.gguf", "main", a["token"])
    out["config"] = dl(a["private"], "config.json", "v1.0", a["token"])
    out["public"] = dl(a["public"], "sub/b.gguf", "main", False)
    out["big"] = dl(a["public"], "big.safetensors", "main", False)
    try:
        dl(a["private"], "README.md", "main", False)
        out["no_token"] = "no error"
    except Exception as e:
        out["no_token"] = type(e).__name__
    info = HfApi(endpoint=a["endpoint"], token=a["token"]).model_info(a["private"], revision="v1.0", files_metadata=True)
    out["sha"] = info.sha
    out["siblings"] = {s.rfilename: {"size": s.size, "blob_id": s.blob_id, "lfs": s.lfs.sha256 if s.lfs else None} for s in info.siblings}
else:
    out["gguf"] = dl(a["private"], "model-Q4.gguf", "main", a["token"], local_files_only=True)
print(json.dumps(out))
"#;

async fn run_python(python: &Path, input: &Value) -> Value {
    let mut child = tokio::process::Command::new(python)
        .args(["-c", SCRIPT])
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_ENDPOINT", input["endpoint"].as_str().unwrap_or_default())
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HOME", input["home"].as_str().unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", python.display()));
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin.write_all(input.to_string().as_bytes()).await.unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("python took more than 60 s"))
        .unwrap_or_else(|e| panic!("python: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("python output {stdout}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_downloads_the_same_bytes_from_the_fake_hub() {
    let Some(python) = python_with_hub() else { return };
    let hub = hub().await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("hub");
    let input = |mode: &str, cache: &Path| {
        json!({
            "mode": mode, "endpoint": hub.endpoint(), "cache": cache, "home": home.path(),
            "token": TOKEN, "private": PRIVATE, "public": PUBLIC,
        })
    };
    // Python's own resume: the fake drops its first GET of the big file after 10.5 MiB
    // (Python keeps what it read in whole 10 MiB chunks).
    hub.drop_connection_once(PUBLIC, "big.safetensors", 11_000_000);
    let out = run_python(&python, &input("download", &cache)).await;
    let read = |key: &str| std::fs::read(out[key].as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{key}: {e} in {out}"));
    assert_eq!(read("gguf"), content(300_000, 1));
    assert_eq!(read("config"), br#"{"architectures":["LlamaForCausalLM"]}"#.to_vec());
    assert_eq!(read("public"), content(60_000, 3));
    assert!(read("big") == content(BIG, 5), "big.safetensors differs");
    assert_eq!(out["no_token"], "GatedRepoError", "{out}");
    let commit = private_repo().commit();
    assert_eq!(out["sha"], commit.as_str());
    let gguf_sha = ganglion_hf::sha256(&content(300_000, 1));
    assert_eq!(out["siblings"]["model-Q4.gguf"]["lfs"], gguf_sha.as_str(), "{out}");
    assert_eq!(out["siblings"]["model-Q4.gguf"]["size"], 300_000, "{out}");
    let config_blob = ganglion_hf::git_blob_sha1(br#"{"architectures":["LlamaForCausalLM"]}"#);
    assert_eq!(out["siblings"]["config.json"]["blob_id"], config_blob.as_str(), "{out}");
    let ranges: Vec<_> = hub.requests().into_iter().filter(|r| r.path.starts_with("/cdn-lfs/") && r.range.is_some()).collect();
    assert_eq!(ranges.len(), 1, "python resumed with a Range request: {:?}", hub.requests());
    assert_eq!(ranges[0].range.as_deref(), Some("bytes=10485760-"));

    // Our client finds Python's files where it would put them.
    let ours = client(&hub, &cache, Some(TOKEN));
    for (repo, rev, file, key) in [(PRIVATE, "main", "model-Q4.gguf", "gguf"), (PRIVATE, "v1.0", "config.json", "config"), (PUBLIC, "main", "sub/b.gguf", "public")] {
        let request = FileRequest { repo: repo.into(), revision: rev.into(), file: file.into(), pinned: None };
        let got = ours.download(&request, &mut NoProgress).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(got.already_present, "{file}");
        assert_eq!(got.path, PathBuf::from(out[key].as_str().unwrap_or_default()), "{file}");
    }

    // And Python finds ours, offline.
    let cache2 = home.path().join("hub2");
    let request = FileRequest { repo: PRIVATE.into(), revision: "main".into(), file: "model-Q4.gguf".into(), pinned: None };
    let got = client(&hub, &cache2, Some(TOKEN)).download(&request, &mut NoProgress).await.unwrap();
    let out = run_python(&python, &input("offline", &cache2)).await;
    assert_eq!(PathBuf::from(out["gguf"].as_str().unwrap_or_default()), got.path, "{out}");
}
