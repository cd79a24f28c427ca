//! The Hugging Face Hub as a model source.
//!
//! - [`HubClient`], to resolve `repo@revision` to its commit ([`HubClient::resolve_revision`]),
//!   list a repo's files with sizes and hashes ([`HubClient::repo_info`]), and download one
//!   file into the hub cache ([`HubClient::download`]) with progress, resumption of a partial
//!   download with a `Range` request, and a hash check (LFS: SHA-256 from `X-Linked-Etag` /
//!   `lfs.sha256`; other files: the git blob SHA-1 from `ETag` / `blobId`). A mismatch is
//!   [`HfError::HashMismatch`] and leaves nothing in the cache. A caller that already knows the
//!   hash (a validator checking a miner's `repo@revision`) pins it in [`FileRequest::pinned`].
//! - [`HubConfig`], the settings: `HF_ENDPOINT`, `HF_TOKEN` (or the token file), `HF_HUB_CACHE` / `HF_HOME`,
//!   read as Python's `huggingface_hub` reads them.
//! - [`HubCache`], the cache layout shared with Python (`models--OWNER--NAME/{blobs,snapshots,refs}`),
//!   offline look-ups ([`HubCache::resolve_gguf`]) and listing ([`HubCache::list_ggufs`]).
//! - [`HubRef`], a reference `hf:OWNER/REPO[@REVISION][:FILE]`.
//! - `testkit` (feature `test-utils`): a fake hub on loopback that speaks the same protocol as
//!   the real one (checked against `huggingface_hub`'s `hf_hub_download`), with tokens and
//!   fault injection.
//!
//! The crates.io `hf-hub` crate provides the cache layout only; [`HubClient`]'s doc says why
//! the network side is ours.
//!
//! *Invariants:* every read from the network is bounded (JSON and error bodies by size, file
//! bodies by the announced size); files reach the cache by rename only; the token is sent
//! only to the endpoint's origin.

mod cache;
mod client;
mod config;
mod error;
mod hash;
mod reference;
#[cfg(feature = "test-utils")]
pub mod testkit;

pub use cache::{CachedFile, HubCache};
pub use client::{Downloaded, FileMetadata, FileRequest, HubClient, NoProgress, Progress, RepoFile, RepoInfo, pick_gguf};
pub use config::{DEFAULT_ENDPOINT, HubConfig, hf_home, hub_cache_dir, normalize_endpoint};
pub use error::{HashKind, HfError, HfResult};
pub use hash::{ExpectedHash, git_blob_sha1, hash_file, normalize_etag, sha256, verify_file};
pub use reference::{DEFAULT_REVISION, HubRef, PREFIX, check_file_path, check_repo_id, check_revision, is_commit_sha};
