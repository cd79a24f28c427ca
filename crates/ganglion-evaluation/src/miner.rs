//! The miner side: publish a model directory (hash it with the original's directory hash,
//! commit `namespace:name:commit:hash:competition_id` on chain) and serve it
//! content-addressed on the axon (the [`crate::store::MinerStore`]'s server: the manifest and
//! the files by manifest path, behind the runtime's Epistula verifier — signatures checked,
//! replays and stale timestamps refused, callers judged by the subnet policy — on the
//! runtime's bounded HTTP server).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::{Chain, TxReceipt};
use ganglion_core::keys::Keypair;
use ganglion_neuron::axon::{Axon, attach_chain};
use ganglion_neuron::config::AxonConfig;
use ganglion_neuron::status::{NodeStatus, Role, StatusBoard};
use ganglion_neuron::{Metrics, Shutdown};
use ganglion_protocol::epistula::{VerifierConfig, protect};
use ganglion_protocol::policy::PolicyConfig;

use crate::commitment::{CommitmentError, ModelCommitment};
use crate::dirhash::{self, HashLimits};
use crate::store::{AXON_NAMESPACE, ServedModel, miner_router};

/// Why publishing or serving failed.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    /// The directory could not be hashed (limits, I/O).
    #[error("hashing {path}: {source}")]
    Hash {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: dirhash::HashError,
    },
    /// The commitment does not fit the format.
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
    /// The chain refused or could not be reached.
    #[error("the chain: {0}")]
    Chain(#[from] ganglion_chain::ChainError),
    /// The axon could not be set up.
    #[error(transparent)]
    Axon(#[from] ganglion_neuron::axon::AxonError),
    /// The directory is not a model directory.
    #[error("{0}")]
    NotAModel(String),
}

/// Where the published model lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishTarget {
    /// Served by this miner's axon (`axon:<name>:None:<hash>:<competition>`).
    Axon {
        /// A name for it (≤ 38 characters with the namespace).
        name: String,
    },
    /// A Hugging Face Hub repository at a commit (the directory is that snapshot).
    Hub {
        /// `namespace/name`.
        repo: String,
        /// The 40-hex commit.
        commit: String,
    },
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The model directory: one GGUF (and any config files), or Hugging Face safetensors +
    /// `config.json` + `tokenizer.json`.
    pub dir: PathBuf,
    /// Where it lives.
    pub target: PublishTarget,
    /// Competition id.
    pub competition: String,
    /// Commit the hotkey-bound hash (`base64(sha256(hash + hotkey))`, the anti-copy variant)
    /// rather than the plain one.
    pub bind_to_hotkey: bool,
}

/// The commitment for `publication` by `hotkey`, and the directory's plain hash.
pub fn commitment_for(publication: &Publication, hotkey: &Keypair, limits: &HashLimits) -> Result<(ModelCommitment, String), MinerError> {
    // One GGUF, or Hugging Face safetensors + config.json + tokenizer.json: what validators load.
    ganglion_engine::hf_model::locate(&publication.dir).map_err(|e| MinerError::NotAModel(e.to_string()))?;
    let plain = dirhash::directory_hash(&publication.dir, limits).map_err(|source| MinerError::Hash { path: publication.dir.clone(), source })?;
    let hash = if publication.bind_to_hotkey { dirhash::bind_to_hotkey(&plain, &hotkey.public().to_ss58()) } else { plain.clone() };
    let (namespace, name, commit) = match &publication.target {
        PublishTarget::Axon { name } => (AXON_NAMESPACE.to_string(), name.clone(), None),
        PublishTarget::Hub { repo, commit } => {
            let (ns, name) = repo.split_once('/').ok_or_else(|| MinerError::NotAModel(format!("repository `{repo}` is not namespace/name")))?;
            (ns.to_string(), name.to_string(), Some(commit.clone()))
        }
    };
    let c = ModelCommitment { namespace, name, commit, hash: Some(hash), competition_id: Some(publication.competition.clone()) };
    c.render()?;
    Ok((c, plain))
}

/// Hashes the directory and commits its identity on chain; returns the commitment string,
/// the plain hash and the receipt.
pub async fn publish(chain: &dyn Chain, netuid: u16, hotkey: &Keypair, publication: &Publication) -> Result<(String, String, TxReceipt), MinerError> {
    let (c, plain) = {
        let (p, h) = (publication.clone(), hotkey.clone());
        tokio::task::spawn_blocking(move || commitment_for(&p, &h, &HashLimits::default()))
            .await
            .map_err(|e| MinerError::NotAModel(format!("the hashing task failed: {e}")))??
    };
    let rendered = c.render()?;
    let receipt = chain.set_commitment(hotkey, netuid, rendered.clone()).await?;
    Ok((rendered, plain, receipt))
}

/// How the model miner serves.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Subnet.
    pub netuid: u16,
    /// Listen and publish addresses.
    pub axon: AxonConfig,
    /// Who may call (default: registered validators with a permit).
    pub policy: PolicyConfig,
    /// Metagraph sync interval (caller table, axon republishing).
    pub sync_interval: Duration,
    /// A download in progress gets this long to finish at shutdown.
    pub drain: Duration,
}

/// A serving model miner.
#[derive(Debug)]
pub struct ServingMiner {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    /// The address published on chain.
    pub external: std::net::SocketAddr,
    /// The plain directory hash of what is served.
    pub hash: String,
    /// The status board.
    pub board: Arc<StatusBoard>,
    server: tokio::task::JoinHandle<()>,
    sync: tokio::task::JoinHandle<()>,
}

impl ServingMiner {
    /// Waits until the server and the chain task end (after the shutdown token fired).
    pub async fn wait(self) {
        let _ = self.server.await;
        let _ = self.sync.await;
    }
}

/// Serves `dir` (hashed once; it must not change while served) on an axon until `shutdown`:
/// `POST /model/manifest` and `POST /model/file` behind Epistula, `/status` and `/metrics`
/// on loopback.
pub async fn serve(settings: &ServeSettings, dir: &Path, hotkey: Keypair, chain: Arc<dyn Chain>, shutdown: Shutdown) -> Result<ServingMiner, MinerError> {
    let served = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || ServedModel::new(&dir, &HashLimits::default()).map_err(|source| MinerError::Hash { path: dir, source }))
            .await
            .map_err(|e| MinerError::NotAModel(format!("the hashing task failed: {e}")))??
    };
    let served = Arc::new(served);
    let hash = served.directory_hash();
    // Requests are `{}` or `{"path": …}`: a few KiB at most.
    let verifier = VerifierConfig { max_body_bytes: 16 * 1024, ..VerifierConfig::default() };
    let axon = Axon::bind(&settings.axon, &hotkey, settings.policy.clone(), verifier).await?;
    let metrics = Arc::new(Metrics::new());
    let mut status = NodeStatus::new("evaluation", Role::Miner, settings.netuid, hotkey.public().to_ss58());
    status.details = serde_json::json!({
        "axon": axon.external().to_string(),
        "hash": hash,
        "files": served.manifest().files.len(),
        "bytes": served.manifest().files.iter().map(|f| f.size).sum::<u64>(),
    });
    let board = Arc::new(StatusBoard::new(status, None));
    let router = protect(miner_router(served.clone()), axon.verifier()).merge(ganglion_neuron::server::loopback_routes(board.clone(), metrics.clone()));
    let link = attach_chain(&axon, chain, settings.netuid, &hotkey, settings.axon.serve, settings.sync_interval, metrics, board.clone(), shutdown.clone(), |_, _| {}).await?;
    let (addr, external) = (axon.addr(), axon.external());
    tracing::info!(target: "evaluation::miner", %addr, %external, %hash, uid = ?link.uid, "serving the model");
    let server = axon.serve(router, shutdown, settings.drain);
    Ok(ServingMiner { addr, external, hash, board, server, sync: link.task })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    #[test]
    fn commitments_carry_the_plain_or_the_bound_hash() {
        let dir = dir_with(&[("model.gguf", b"weights"), ("config.json", b"{}")]);
        let key = Keypair::from_uri("//PublishTest").unwrap();
        let plain = dirhash::directory_hash(dir.path(), &HashLimits::default()).unwrap();
        let p = |bind, target| Publication { dir: dir.path().to_path_buf(), target, competition: "g1".into(), bind_to_hotkey: bind };
        let axon = PublishTarget::Axon { name: "smol".into() };
        let (c, h) = commitment_for(&p(false, axon.clone()), &key, &HashLimits::default()).unwrap();
        assert_eq!(h, plain);
        assert_eq!(c.render().unwrap(), format!("axon:smol:None:{plain}:g1"));
        let (c, _) = commitment_for(&p(true, axon), &key, &HashLimits::default()).unwrap();
        let bound = dirhash::bind_to_hotkey(&plain, &key.public().to_ss58());
        assert_ne!(bound, plain);
        assert_eq!(c.hash.as_deref(), Some(bound.as_str()));
        assert!(dirhash::matches_commitment(&bound, &plain, &key.public().to_ss58()));
        let commit = "a".repeat(40);
        let hub = PublishTarget::Hub { repo: "org/model".into(), commit: commit.clone() };
        let (c, _) = commitment_for(&p(false, hub), &key, &HashLimits::default()).unwrap();
        assert_eq!(c.render().unwrap(), format!("org:model:{commit}:{plain}:g1"));
        // Round trip through the parser.
        assert_eq!(ModelCommitment::parse(&c.render().unwrap()).unwrap(), c);
    }

    #[test]
    fn non_model_directories_and_long_names_are_refused() {
        let key = Keypair::from_uri("//PublishTest").unwrap();
        let p = |dir: &Path, name: &str| Publication {
            dir: dir.to_path_buf(),
            target: PublishTarget::Axon { name: name.into() },
            competition: "g1".into(),
            bind_to_hotkey: true,
        };
        let none = dir_with(&[("config.json", b"{}")]);
        assert!(matches!(commitment_for(&p(none.path(), "m"), &key, &HashLimits::default()), Err(MinerError::NotAModel(_))));
        let two = dir_with(&[("a.gguf", b"1"), ("b.gguf", b"2")]);
        assert!(matches!(commitment_for(&p(two.path(), "m"), &key, &HashLimits::default()), Err(MinerError::NotAModel(_))));
        // Hugging Face files without their tokenizer are not a model; with it they are.
        let no_tokenizer = dir_with(&[("config.json", b"{}"), ("model.safetensors", b"w")]);
        assert!(matches!(commitment_for(&p(no_tokenizer.path(), "m"), &key, &HashLimits::default()), Err(MinerError::NotAModel(_))));
        let hf = dir_with(&[("config.json", b"{}"), ("model.safetensors", b"w"), ("tokenizer.json", b"{}")]);
        commitment_for(&p(hf.path(), "m"), &key, &HashLimits::default()).unwrap();
        let ok = dir_with(&[("a.gguf", b"1")]);
        assert!(matches!(commitment_for(&p(ok.path(), &"x".repeat(80)), &key, &HashLimits::default()), Err(MinerError::Commitment(_))));
        let bad_repo = Publication { target: PublishTarget::Hub { repo: "no-slash".into(), commit: "a".repeat(40) }, ..p(ok.path(), "m") };
        assert!(matches!(commitment_for(&bad_repo, &key, &HashLimits::default()), Err(MinerError::NotAModel(_))));
    }
}
