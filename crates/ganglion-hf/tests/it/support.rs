//! Shared fixtures: a fake hub with a public and a token-protected repo, and clients on it.

use std::path::Path;

use ganglion_hf::testkit::{FakeHub, FakeRepo};
use ganglion_hf::{HubClient, HubConfig};

pub(crate) const TOKEN: &str = "hf_test_token_123";
pub(crate) const PRIVATE: &str = "acme/private-model";
pub(crate) const PUBLIC: &str = "acme/tiny";

/// `len` bytes that are not all alike (a deterministic pattern).
pub(crate) fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

pub(crate) fn private_repo() -> FakeRepo {
    FakeRepo::new(PRIVATE)
        .lfs_file("model-Q4.gguf", content(300_000, 1))
        .file("config.json", br#"{"architectures":["LlamaForCausalLM"]}"#.to_vec())
        .file("README.md", b"# private\n".to_vec())
        .token(TOKEN)
        .tag("v1.0")
}

pub(crate) fn public_repo() -> FakeRepo {
    FakeRepo::new(PUBLIC)
        .lfs_file("a.gguf", content(50_000, 2))
        .lfs_file("sub/b.gguf", content(60_000, 3))
        .file("tokenizer.json", content(2_000, 4))
        // Larger than huggingface_hub's 10 MiB read chunk, so that Python has bytes to resume from.
        .lfs_file("big.safetensors", content(BIG, 5))
}

pub(crate) const BIG: usize = 11 << 20;

pub(crate) async fn hub() -> FakeHub {
    FakeHub::start([private_repo(), public_repo()]).await.unwrap_or_else(|e| panic!("fake hub: {e}"))
}

pub(crate) fn client(hub: &FakeHub, cache: &Path, token: Option<&str>) -> HubClient {
    let mut config = HubConfig::new(&hub.endpoint(), cache.to_path_buf()).unwrap_or_else(|e| panic!("{e}"));
    config.token = token.map(str::to_string);
    config.retries = 2;
    HubClient::new(config, &ganglion_tls::ClientTls::system()).unwrap_or_else(|e| panic!("{e}"))
}

/// Every file under `dir`, relative, sorted.
pub(crate) fn tree(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap_or(&path).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
