//! `ganglion model pull hf:OWNER/REPO[@REVISION][:FILE]` through the real binary against the
//! fake Hugging Face Hub (`ganglion_hf::testkit`, on loopback): with `HF_ENDPOINT` and
//! `HF_TOKEN` the repo's only GGUF lands in `$HF_HOME/hub` with the fixture's bytes and its
//! path is printed (`--json`); without the token the error says to set HF_TOKEN; a repo with
//! two GGUFs lists them and asks for `--file`; `model list` shows the pulled file; `engine
//! serve --model hf:…` of something never pulled says to pull it. Each run is bounded (30 s).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ganglion_hf::testkit::{FakeHub, FakeRepo};
use tokio::process::Command;

const TOKEN: &str = "hf_cli_test_token";

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn ganglion(args: &[&str], hub: &FakeHub, home: &Path, token: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ganglion"));
    command
        .args(args)
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", home.join("hf"))
        .env("GANGLION_HOME", home.join("ganglion"))
        .env("RUST_LOG", "warn")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("GANGLION_TLS_CA_FILE")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("HF_TOKEN", token);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("ganglion {args:?} took more than 30 s"))
        .unwrap_or_else(|e| panic!("ganglion {args:?}: {e}"));
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn gguf_bytes() -> Vec<u8> {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    bytes
}

#[tokio::test]
async fn model_pull_hf_fetches_the_repos_gguf_into_the_hub_cache() {
    let private = FakeRepo::new("acme/tiny-gguf")
        .lfs_file("tiny-Q4_K_M.gguf", gguf_bytes())
        .file("config.json", b"{}".to_vec())
        .token(TOKEN);
    let commit = private.commit();
    let two = FakeRepo::new("acme/two").lfs_file("a.gguf", b"GGUF-a".to_vec()).lfs_file("b.gguf", b"GGUF-b".to_vec());
    let hub = FakeHub::start([private, two]).await.unwrap_or_else(|e| panic!("fake hub: {e}"));
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    let run = ganglion(&["model", "pull", "hf:acme/tiny-gguf", "--json"], &hub, home.path(), None).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains("set HF_TOKEN"), "{}", run.stderr);

    let run = ganglion(&["model", "pull", "hf:acme/tiny-gguf", "--json"], &hub, home.path(), Some(TOKEN)).await;
    assert!(run.ok, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let expected_path = home.path().join("hf/hub/models--acme--tiny-gguf/snapshots").join(&commit).join("tiny-Q4_K_M.gguf");
    assert_eq!(out["path"].as_str(), expected_path.to_str(), "{out}");
    assert_eq!(out["commit"], commit.as_str());
    assert_eq!(out["file"], "tiny-Q4_K_M.gguf");
    assert_eq!(out["already_present"], false);
    assert_eq!(out["hash"]["kind"], "SHA-256");
    assert_eq!(std::fs::read(&expected_path).unwrap_or_else(|e| panic!("{e}")), gguf_bytes());

    // Again, by commit and file: already there, plain text output names the path.
    let spec = format!("hf:acme/tiny-gguf@{commit}:tiny-Q4_K_M.gguf");
    let run = ganglion(&["model", "pull", &spec], &hub, home.path(), Some(TOKEN)).await;
    assert!(run.ok && run.stdout.contains("already present") && run.stdout.contains(expected_path.to_str().unwrap_or("?")), "{}{}", run.stdout, run.stderr);

    let run = ganglion(&["model", "pull", "hf:acme/two"], &hub, home.path(), None).await;
    assert!(!run.ok && run.stderr.contains("a.gguf, b.gguf") && run.stderr.contains("--file"), "{}", run.stderr);
    let run = ganglion(&["model", "pull", "hf:acme/two", "--file", "b.gguf", "--json"], &hub, home.path(), None).await;
    assert!(run.ok, "{}", run.stderr);

    let run = ganglion(&["model", "list"], &hub, home.path(), None).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("hf:acme/tiny-gguf@{}:tiny-Q4_K_M.gguf", &commit[..12])), "{}", run.stdout);
    assert!(run.stdout.contains("hf:acme/two@") && run.stdout.contains(":b.gguf"), "{}", run.stdout);

    let run = ganglion(&["engine", "serve", "--model", "hf:acme/never-pulled", "--port", "0"], &hub, home.path(), None).await;
    assert!(!run.ok && run.stderr.contains("ganglion model pull hf:acme/never-pulled"), "{}", run.stderr);
}
