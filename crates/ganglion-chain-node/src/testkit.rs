//! Test fixture (feature `test-utils`): a subnet on an in-process local chain with N neurons.
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use ganglion_chain::HyperparamUpdate;
//! use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
//!
//! let subnet = SubnetBuilder::new()
//!     .block_time(Duration::from_millis(100))
//!     .tempo(10)
//!     .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
//!     .neuron(Neuron::new("//VCold", "//VHot").stake(2_000).validator())
//!     .neuron(Neuron::new("//MCold", "//MHot").axon())
//!     .build()
//!     .await;
//! let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
//! let miner_uid = subnet.uid("//MHot");
//! # let _ = (chain, netuid, miner_uid);
//! subnet.shutdown().await;
//! # }
//! ```
//!
//! Everything panics with the failing step on error: this is for tests only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::{Chain, HyperparamUpdate, LocalChain, Metagraph, RAO_PER_TAO};
use ganglion_core::keys::{Keypair, PublicKey};

use crate::http::{NodeHandle, spawn_node};
use crate::node::NodeConfig;
use crate::state::ChainConfig;

/// Port every loopback axon of [`Neuron::axon`] uses (each on its own 127.0.0.x address).
pub const LOOPBACK_AXON_PORT: u16 = 8091;

/// A key from a dev URI (`//Alice`, `//Alice/owner`, `//MinerHot`, …).
pub fn key(uri: &str) -> Keypair {
    Keypair::from_uri(uri).unwrap_or_else(|e| panic!("key {uri}: {e}"))
}

/// One neuron to set up: a coldkey funded from the faucet, a hotkey registered under it,
/// optionally staked, serving an axon, and awaited for a validator permit.
#[derive(Debug, Clone)]
pub struct Neuron {
    coldkey: String,
    hotkey: String,
    fund_tao: Option<u64>,
    stake_tao: u64,
    axon: Option<Axon>,
    validator: bool,
}

#[derive(Debug, Clone, Copy)]
enum Axon {
    Loopback,
    At(SocketAddr),
}

impl Neuron {
    /// A neuron with keys from dev URIs; funded with 100 TAO (plus its stake), not staked.
    pub fn new(coldkey_uri: &str, hotkey_uri: &str) -> Self {
        Neuron { coldkey: coldkey_uri.into(), hotkey: hotkey_uri.into(), fund_tao: None, stake_tao: 0, axon: None, validator: false }
    }

    /// Faucet `tao` to the coldkey (instead of the default 100 TAO + stake); at most 10 000.
    pub fn fund(mut self, tao: u64) -> Self {
        self.fund_tao = Some(tao);
        self
    }

    /// Stake `tao` on the hotkey after registering.
    pub fn stake(mut self, tao: u64) -> Self {
        self.stake_tao = tao;
        self
    }

    /// Serve an axon at a loopback address of its own (`127.0.0.{2+i}:8091`, `i` the
    /// neuron's position in the subnet's neuron list).
    pub fn axon(mut self) -> Self {
        self.axon = Some(Axon::Loopback);
        self
    }

    /// Serve an axon at `addr`.
    pub fn axon_at(mut self, addr: SocketAddr) -> Self {
        self.axon = Some(Axon::At(addr));
        self
    }

    /// Wait (in [`SubnetBuilder::build`] / [`TestSubnet::join`]) until the hotkey holds a
    /// validator permit (one epoch, given enough stake).
    pub fn validator(mut self) -> Self {
        self.validator = true;
        self
    }
}

/// A neuron as set up on the chain.
#[derive(Debug, Clone)]
pub struct TestNeuron {
    /// The dev URI of the hotkey (what [`TestSubnet::neuron`] looks up).
    pub hotkey_uri: String,
    /// The coldkey (owner of the hotkey, holder of funds and stake).
    pub coldkey: Keypair,
    /// The registered hotkey.
    pub hotkey: Keypair,
    /// Its uid on the subnet.
    pub uid: u16,
    /// The axon it serves, if asked.
    pub axon: Option<SocketAddr>,
}

/// Builds a [`TestSubnet`]: node settings, the subnet's hyperparameters, its neurons.
#[derive(Debug, Clone)]
pub struct SubnetBuilder {
    data_dir: Option<PathBuf>,
    addr: SocketAddr,
    block_time: Duration,
    tempo: u16,
    chain: ChainConfig,
    owner: String,
    hyperparams: Option<HyperparamUpdate>,
    neurons: Vec<Neuron>,
}

impl Default for SubnetBuilder {
    fn default() -> Self {
        SubnetBuilder::new()
    }
}

impl SubnetBuilder {
    /// Blocks every 100 ms, tempo 10, a fresh temporary data directory, 127.0.0.1 on a free
    /// port, subnet owned by `//Alice` (hotkey `//Alice/owner`), no neurons.
    pub fn new() -> Self {
        SubnetBuilder {
            data_dir: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            block_time: Duration::from_millis(100),
            tempo: 10,
            chain: ChainConfig::default(),
            owner: "//Alice".into(),
            hyperparams: None,
            neurons: Vec::new(),
        }
    }

    /// Keep the chain in `dir` (which outlives the fixture) instead of a temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listen on `addr` (default 127.0.0.1:0).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Block time.
    pub fn block_time(mut self, block_time: Duration) -> Self {
        self.block_time = block_time;
        self
    }

    /// Tempo of new subnets (the chain's `default_tempo`).
    pub fn tempo(mut self, tempo: u16) -> Self {
        self.tempo = tempo;
        self
    }

    /// Other chain settings (`default_tempo` is still taken from [`Self::tempo`]).
    pub fn chain_config(mut self, config: ChainConfig) -> Self {
        self.chain = config;
        self
    }

    /// The subnet owner's coldkey URI (default `//Alice`; the hotkey is `{uri}/owner`).
    pub fn owner(mut self, coldkey_uri: &str) -> Self {
        self.owner = coldkey_uri.into();
        self
    }

    /// Hyperparameters the owner sets right after creating the subnet.
    pub fn hyperparams(mut self, update: HyperparamUpdate) -> Self {
        self.hyperparams = Some(update);
        self
    }

    /// Adds a neuron (set up in order, so uids follow the order of the calls, from 1).
    pub fn neuron(mut self, neuron: Neuron) -> Self {
        self.neurons.push(neuron);
        self
    }

    /// Starts the node, creates the subnet, sets the neurons up and waits for the permits.
    pub async fn build(self) -> TestSubnet {
        let (temp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::Builder::new().prefix("ganglion-chain").tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let dir = temp.path().join("chain");
                (Some(temp), dir)
            }
        };
        let config = NodeConfig { data_dir, block_time: self.block_time, chain: ChainConfig { default_tempo: self.tempo, ..self.chain } };
        let node = spawn_node(config.clone(), self.addr).await.unwrap_or_else(|e| panic!("node did not start: {e}"));
        let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&node.url()).unwrap_or_else(|e| panic!("client: {e}")));
        let owner = key(&self.owner);
        let receipt = chain
            .register_network(&owner, &key(&format!("{}/owner", self.owner)).public(), None)
            .await
            .unwrap_or_else(|e| panic!("register_network: {e}"));
        let netuid = receipt.netuid.unwrap_or_else(|| panic!("no netuid in {receipt:?}"));
        if let Some(update) = self.hyperparams {
            chain.set_hyperparams(&owner, netuid, update).await.unwrap_or_else(|e| panic!("set_hyperparams: {e}"));
        }
        let addr = node.addr;
        let mut subnet = TestSubnet { chain, netuid, owner, neurons: Vec::new(), node: Some(node), config, addr, _temp: temp };
        let mut validators = Vec::new();
        for neuron in self.neurons {
            let validator = neuron.validator;
            let set_up = subnet.set_up(neuron).await;
            if validator {
                validators.push(set_up.hotkey.public());
            }
        }
        wait_for_permits(subnet.chain.as_ref(), netuid, &validators).await;
        subnet
    }
}

/// A subnet on a running in-process node. The node (and the temporary data directory, if
/// the builder made one) live until this is dropped or [`TestSubnet::shutdown`].
pub struct TestSubnet {
    /// The chain over HTTP, as a separate miner or validator process would reach it.
    pub chain: Arc<dyn Chain>,
    /// The subnet.
    pub netuid: u16,
    /// The subnet owner's coldkey.
    pub owner: Keypair,
    /// The neurons, in the order they were set up.
    pub neurons: Vec<TestNeuron>,
    node: Option<NodeHandle>,
    config: NodeConfig,
    addr: SocketAddr,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSubnet")
            .field("url", &self.url())
            .field("netuid", &self.netuid)
            .field("neurons", &self.neurons)
            .field("running", &self.node.is_some())
            .finish_non_exhaustive()
    }
}

impl TestSubnet {
    /// The running node; panics after [`Self::stop_node`].
    pub fn node(&self) -> &NodeHandle {
        self.node.as_ref().unwrap_or_else(|| panic!("the node is stopped"))
    }

    /// The node's API base URL (`http://127.0.0.1:port`); stays the same across restarts.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the node's API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The chain's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The neuron whose hotkey has dev URI `hotkey_uri`.
    pub fn neuron(&self, hotkey_uri: &str) -> &TestNeuron {
        self.neurons.iter().find(|n| n.hotkey_uri == hotkey_uri).unwrap_or_else(|| panic!("no neuron with hotkey {hotkey_uri}"))
    }

    /// The uid of the neuron whose hotkey has dev URI `hotkey_uri`.
    pub fn uid(&self, hotkey_uri: &str) -> u16 {
        self.neuron(hotkey_uri).uid
    }

    /// Sets one more neuron up (and waits for its permit if it is a validator).
    pub async fn join(&mut self, neuron: Neuron) -> TestNeuron {
        let validator = neuron.validator;
        let set_up = self.set_up(neuron).await;
        if validator {
            wait_for_permits(self.chain.as_ref(), self.netuid, &[set_up.hotkey.public()]).await;
        }
        set_up
    }

    async fn set_up(&mut self, neuron: Neuron) -> TestNeuron {
        let (coldkey, hotkey) = (key(&neuron.coldkey), key(&neuron.hotkey));
        let fund = neuron.fund_tao.unwrap_or(neuron.stake_tao + 100);
        let uid = register(self.chain.as_ref(), self.netuid, &coldkey, &hotkey, fund, neuron.stake_tao).await;
        let axon = match neuron.axon {
            None => None,
            Some(Axon::At(addr)) => Some(addr),
            Some(Axon::Loopback) => {
                let index = u8::try_from(self.neurons.len() + 2).unwrap_or_else(|_| panic!("too many loopback axons"));
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, index)), LOOPBACK_AXON_PORT))
            }
        };
        if let Some(addr) = axon {
            self.chain.serve_axon(&hotkey, self.netuid, addr.ip(), addr.port(), 1, 4).await.unwrap_or_else(|e| panic!("serve_axon {}: {e}", neuron.hotkey));
        }
        let set_up = TestNeuron { hotkey_uri: neuron.hotkey, coldkey, hotkey, uid, axon };
        self.neurons.push(set_up.clone());
        set_up
    }

    /// The metagraph now.
    pub async fn metagraph(&self) -> Metagraph {
        Metagraph::fetch(self.chain.as_ref(), self.netuid).await.unwrap_or_else(|e| panic!("metagraph: {e}"))
    }

    /// Waits (bounded) until the chain is past `block`.
    pub async fn wait_block(&self, block: u64) {
        wait_block(self.chain.as_ref(), block).await;
    }

    /// Stops the node (the chain stays in the data directory); [`Self::start_node`] resumes it.
    pub async fn stop_node(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }

    /// Starts the node again on the same address and data directory (retrying briefly while
    /// the port is still held), so that `chain` reaches it again.
    pub async fn start_node(&mut self) {
        self.stop_node().await;
        for _ in 0..50 {
            if let Ok(node) = spawn_node(self.config.clone(), self.addr).await {
                self.node = Some(node);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node did not restart on {}", self.addr);
    }

    /// Stops the node and removes the temporary directory.
    pub async fn shutdown(mut self) {
        self.stop_node().await;
    }
}

/// Funds `coldkey` with `fund_tao` from the faucet, registers `hotkey` under it (retrying
/// in the next block while the subnet's one-registration-per-block limit is taken), stakes
/// `stake_tao` on it if non-zero; returns the uid.
pub async fn register(chain: &dyn Chain, netuid: u16, coldkey: &Keypair, hotkey: &Keypair, fund_tao: u64, stake_tao: u64) -> u16 {
    if fund_tao > 0 {
        chain.faucet(coldkey, fund_tao * RAO_PER_TAO).await.unwrap_or_else(|e| panic!("faucet: {e}"));
    }
    let mut uid = None;
    for _ in 0..200 {
        match chain.register(coldkey, netuid, &hotkey.public()).await {
            Ok(receipt) => {
                uid = Some(receipt.uid.unwrap_or_else(|| panic!("no uid in {receipt:?}")));
                break;
            }
            Err(e) if e.name() == Some("TooManyRegistrationsThisBlock") => {
                let block = chain.block_number().await.unwrap_or(0);
                wait_block(chain, block).await;
            }
            Err(e) => panic!("register: {e}"),
        }
    }
    let uid = uid.unwrap_or_else(|| panic!("registration never got a slot"));
    if stake_tao > 0 {
        chain.add_stake(coldkey, netuid, &hotkey.public(), stake_tao * RAO_PER_TAO).await.unwrap_or_else(|e| panic!("add_stake: {e}"));
    }
    uid
}

/// Waits (bounded: 30 s) until every hotkey in `hotkeys` holds a validator permit.
pub async fn wait_for_permits(chain: &dyn Chain, netuid: u16, hotkeys: &[PublicKey]) {
    if hotkeys.is_empty() {
        return;
    }
    for _ in 0..600 {
        let metagraph = Metagraph::fetch(chain, netuid).await.unwrap_or_else(|e| panic!("metagraph: {e}"));
        if hotkeys.iter().all(|h| metagraph.by_hotkey(h).is_some_and(|n| n.validator_permit)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("validator permits never arrived");
}

/// Waits (bounded: 10 s) until the chain is past `block`.
pub async fn wait_block(chain: &dyn Chain, block: u64) {
    for _ in 0..400 {
        if chain.block_number().await.unwrap_or(0) > block {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chain did not reach block {block}");
}
