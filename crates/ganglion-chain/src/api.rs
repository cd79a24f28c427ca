//! The [`Chain`] trait every miner and validator talks to, and the types it returns.
//!
//! Nothing here knows how a chain is reached: [`crate::LocalChain`] implements the trait over
//! the local node's HTTP/SSE API, `ganglion_chain_node::Node` implements it in-process, and a
//! subtensor backend can implement it later. Implementations provide the primitive queries
//! and [`Chain::submit`]; the transaction helpers (`register`, `add_stake`, `set_weights`, …)
//! are provided methods that build, sign (sr25519, with the account's next nonce and the
//! chain's genesis hash) and submit a [`crate::tx::SignedTransaction`].
//!
//! The trait is object-safe: hold it as `Arc<dyn Chain>`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use ganglion_core::keys::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};

use crate::commit_reveal::WeightCommit;
use crate::error::{ChainError, ChainResult};
use crate::hyperparams::{HyperparamUpdate, Hyperparams};
use crate::tx::{Call, SignedTransaction};

/// Serde helpers that write a [`PublicKey`] as its SS58 address.
pub mod ss58 {
    use ganglion_core::keys::PublicKey;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as SS58.
    pub fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_ss58())
    }

    /// Deserialize from SS58 or 0x-hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<PublicKey>().map_err(serde::de::Error::custom)
    }
}

/// An account id ([`PublicKey`]) that serializes as SS58, usable as a map key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AccountId(pub PublicKey);

impl Serialize for AccountId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ss58::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ss58::deserialize(d).map(AccountId)
    }
}

/// 1 TAO in rao.
pub const RAO_PER_TAO: u64 = 1_000_000_000;

/// Largest commitment in bytes (`Chain::commit`); the node refuses longer ones.
pub const MAX_COMMITMENT_BYTES: usize = 128;

/// Static facts about a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    /// Human-readable chain id (`ganglion-local`).
    pub chain_id: String,
    /// Hex of the 32-byte genesis hash every transaction signs over.
    pub genesis_hash: String,
    /// Best (last committed) block.
    pub block: u64,
    /// Target block time in milliseconds.
    pub block_time_ms: u64,
    /// Whether `faucet` transactions are accepted.
    pub faucet: bool,
}

/// A committed block as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Block number (genesis is 0).
    pub number: u64,
    /// Hex hash of this block.
    pub hash: String,
    /// Hex hash of the parent block.
    pub parent_hash: String,
    /// Wall-clock time the block was produced, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Hex hashes of the transactions included.
    pub extrinsics: Vec<String>,
    /// Netuids whose epoch ran in this block.
    pub epochs: Vec<u16>,
}

/// A stream of new blocks; ends when the connection to the chain does.
pub type BlockStream = Pin<Box<dyn Stream<Item = ChainResult<BlockHeader>> + Send>>;

/// Free balance and next nonce of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Free balance in rao.
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// A subnet's summary, as `subnet list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetInfo {
    /// Subnet id.
    pub netuid: u16,
    /// Owner coldkey.
    #[serde(with = "ss58")]
    pub owner_coldkey: PublicKey,
    /// Owner hotkey (registered as a neuron at creation).
    #[serde(with = "ss58")]
    pub owner_hotkey: PublicKey,
    /// Registered neurons.
    pub n: u16,
    /// `MaxAllowedUids`.
    pub max_n: u16,
    /// Epoch length in blocks.
    pub tempo: u16,
    /// Current registration burn in rao.
    pub burn: u64,
    /// Block of the last epoch (0 if none ran yet).
    pub last_epoch_block: u64,
    /// Number of epochs run.
    pub epoch_index: u64,
    /// Rao emitted to this subnet per block (before the owner cut).
    pub emission_per_block: u64,
    /// Block the subnet was created in.
    pub registered_at: u64,
}

/// Where a neuron serves (`AxonInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxonInfo {
    /// Block of the `serve_axon` that set it.
    pub block: u64,
    /// Version as `major·10⁶ + minor·10³ + patch`.
    pub version: u32,
    /// IP address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
    /// Protocol number (the SDK uses 4).
    pub protocol: u8,
}

/// One neuron of a subnet: every field of `NeuronInfoLite` (spec/chain.md §3) that the chain
/// still computes. u16 proportions are raw (divide by 65535); stake and emission are rao.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeuronInfo {
    /// Uid in the subnet.
    pub uid: u16,
    /// Hotkey.
    #[serde(with = "ss58")]
    pub hotkey: PublicKey,
    /// Coldkey owning the hotkey.
    #[serde(with = "ss58")]
    pub coldkey: PublicKey,
    /// Total stake on this hotkey in this subnet, rao.
    pub stake: u64,
    /// Set weights within the activity cutoff (as of the last epoch).
    pub active: bool,
    /// Holds a validator permit.
    pub validator_permit: bool,
    /// Validator trust (u16 proportion).
    pub validator_trust: u16,
    /// Consensus (u16 proportion).
    pub consensus: u16,
    /// Incentive (u16 proportion).
    pub incentive: u16,
    /// Dividends (u16 proportion).
    pub dividends: u16,
    /// Emission of the last epoch, rao.
    pub emission: u64,
    /// Block of the last weight update (registration counts).
    pub last_update: u64,
    /// Block the neuron registered in.
    pub block_at_registration: u64,
    /// Axon, if served.
    pub axon: Option<AxonInfo>,
}

impl NeuronInfo {
    /// A neuron just registered at `block`: no stake, no permit, no axon, zero figures.
    pub fn registered(uid: u16, hotkey: PublicKey, coldkey: PublicKey, block: u64) -> NeuronInfo {
        NeuronInfo {
            uid,
            hotkey,
            coldkey,
            stake: 0,
            active: true,
            validator_permit: false,
            validator_trust: 0,
            consensus: 0,
            incentive: 0,
            dividends: 0,
            emission: 0,
            last_update: block,
            block_at_registration: block,
            axon: None,
        }
    }

    /// Stake in TAO.
    pub fn stake_tao(&self) -> f64 {
        self.stake as f64 / RAO_PER_TAO as f64
    }

    /// Emission in TAO.
    pub fn emission_tao(&self) -> f64 {
        self.emission as f64 / RAO_PER_TAO as f64
    }
}

/// Converts a raw u16 proportion to a float in [0, 1], as the SDK does.
pub fn u16_to_float(v: u16) -> f64 {
    f64::from(v) / f64::from(u16::MAX)
}

/// The neurons of one subnet at one block, as returned by [`Chain::neurons`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeuronsSnapshot {
    /// Subnet id.
    pub netuid: u16,
    /// Block the snapshot was read at.
    pub block: u64,
    /// Chain state revision of the subnet's last change (opaque; pass it back as `since`).
    pub changed_at: u64,
    /// Neurons by uid.
    pub neurons: Vec<NeuronInfo>,
}

/// A hotkey's commitment in a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// The committed string (at most [`MAX_COMMITMENT_BYTES`] bytes).
    pub data: String,
    /// Block it was set in.
    pub block: u64,
}

/// Result of a submitted transaction: it is durably accepted and applied to the pending block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    /// Hex hash of the signed transaction.
    pub hash: String,
    /// The block the transaction is included in.
    pub block: u64,
    /// Uid assigned by a `register` (None for other calls).
    pub uid: Option<u16>,
    /// Netuid of a subnet created by `register_network`.
    #[serde(default)]
    pub netuid: Option<u16>,
}

/// A chain: queries plus transaction submission. See the module doc.
#[async_trait]
pub trait Chain: Send + Sync {
    /// Chain id, genesis hash and current block.
    async fn info(&self) -> ChainResult<ChainInfo>;

    /// The best (last committed) block number.
    async fn block_number(&self) -> ChainResult<u64> {
        Ok(self.info().await?.block)
    }

    /// New blocks as they are committed.
    async fn subscribe_blocks(&self) -> ChainResult<BlockStream>;

    /// Balance and next nonce of an account (zero for unknown accounts).
    async fn account(&self, account: &PublicKey) -> ChainResult<AccountInfo>;

    /// All subnets.
    async fn subnets(&self) -> ChainResult<Vec<SubnetInfo>>;

    /// One subnet; `SubnetNotExists` if absent.
    async fn subnet(&self, netuid: u16) -> ChainResult<SubnetInfo>;

    /// A subnet's hyperparameters.
    async fn hyperparams(&self, netuid: u16) -> ChainResult<Hyperparams>;

    /// The neurons of a subnet. With `since = Some(r)`, returns `None` when nothing changed
    /// after revision `r` (a snapshot's `changed_at`; what makes [`Metagraph::sync`] cheap).
    async fn neurons(&self, netuid: u16, since: Option<u64>) -> ChainResult<Option<NeuronsSnapshot>>;

    /// A hotkey's commitment in a subnet.
    async fn commitment(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Option<Commitment>>;

    /// The weights matrix of a subnet as stored (the full metagraph's `W`): per uid, its
    /// `(uid, u16)` row as last set or revealed.
    async fn weights(&self, netuid: u16) -> ChainResult<Vec<Vec<(u16, u16)>>>;

    /// A hotkey's pending (unrevealed, unexpired as of the last block) weight commits in a
    /// subnet, oldest first (subtensor's `WeightCommits`).
    async fn weight_commits(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Vec<WeightCommit>>;

    /// Submit a signed transaction. Returns once it is durable; rejections carry the chain's
    /// error name ([`ChainError::Rejected`]).
    async fn submit(&self, tx: SignedTransaction) -> ChainResult<TxReceipt>;

    /// Sign `call` with `signer` (next nonce, this chain's genesis hash) and submit it.
    /// Retries once if another client used the same nonce in between.
    async fn sign_and_submit(&self, signer: &Keypair, call: Call) -> ChainResult<TxReceipt> {
        let info = self.info().await?;
        let genesis = crate::tx::parse_genesis(&info.genesis_hash)?;
        let mut attempt = 0;
        loop {
            let nonce = self.account(&signer.public()).await?.nonce;
            let tx = SignedTransaction::sign(signer, nonce, &genesis, call.clone());
            match self.submit(tx).await {
                Err(ChainError::Rejected { name, .. }) if (name == "Stale" || name == "Future") && attempt == 0 => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Create a subnet owned by `coldkey`, with `hotkey` as its owner neuron (uid 0). Pays the
    /// lock cost. The receipt carries the new netuid; pass `netuid` to claim a specific free one.
    async fn register_network(&self, coldkey: &Keypair, hotkey: &PublicKey, netuid: Option<u16>) -> ChainResult<TxReceipt> {
        self.sign_and_submit(coldkey, Call::RegisterNetwork { hotkey: AccountId(*hotkey), netuid }).await
    }

    /// Burned registration of `hotkey` in `netuid`, paid by `coldkey`.
    async fn register(&self, coldkey: &Keypair, netuid: u16, hotkey: &PublicKey) -> ChainResult<TxReceipt> {
        self.sign_and_submit(coldkey, Call::BurnedRegister { netuid, hotkey: AccountId(*hotkey) }).await
    }

    /// Move `amount` rao of `coldkey`'s balance to stake on `hotkey` in `netuid`.
    async fn add_stake(&self, coldkey: &Keypair, netuid: u16, hotkey: &PublicKey, amount: u64) -> ChainResult<TxReceipt> {
        self.sign_and_submit(coldkey, Call::AddStake { netuid, hotkey: AccountId(*hotkey), amount }).await
    }

    /// Move `amount` rao of `coldkey`'s stake on `hotkey` back to its balance.
    async fn remove_stake(&self, coldkey: &Keypair, netuid: u16, hotkey: &PublicKey, amount: u64) -> ChainResult<TxReceipt> {
        self.sign_and_submit(coldkey, Call::RemoveStake { netuid, hotkey: AccountId(*hotkey), amount }).await
    }

    /// Transfer `amount` rao from `from` to `dest`.
    async fn transfer(&self, from: &Keypair, dest: &PublicKey, amount: u64) -> ChainResult<TxReceipt> {
        self.sign_and_submit(from, Call::Transfer { dest: AccountId(*dest), amount }).await
    }

    /// Publish `hotkey`'s axon in `netuid`.
    async fn serve_axon(&self, hotkey: &Keypair, netuid: u16, ip: IpAddr, port: u16, version: u32, protocol: u8) -> ChainResult<TxReceipt> {
        self.sign_and_submit(hotkey, Call::ServeAxon { netuid, version, ip, port, protocol }).await
    }

    /// Set `hotkey`'s weights in `netuid` (u16 values as the SDK emits them; see
    /// `ganglion_yuma::weights::convert_weights_and_uids_for_emit`).
    async fn set_weights(&self, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        self.sign_and_submit(hotkey, Call::SetWeights { netuid, uids, values, version_key }).await
    }

    /// Commit to weights on a subnet with commit-reveal on: `commit_hash` is
    /// [`crate::commit_reveal::weight_hash`] of what [`Chain::reveal_weights`] will send.
    async fn commit_weights(&self, hotkey: &Keypair, netuid: u16, commit_hash: [u8; 32]) -> ChainResult<TxReceipt> {
        self.sign_and_submit(hotkey, Call::CommitWeights { netuid, commit_hash }).await
    }

    /// Reveal weights committed earlier (in the commit's reveal epoch); the chain applies
    /// them as `set_weights` once the hash matches.
    async fn reveal_weights(&self, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, salt: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        self.sign_and_submit(hotkey, Call::RevealWeights { netuid, uids, values, salt, version_key }).await
    }

    /// Commit `hotkey`'s weights on a subnet with drand-timelocked commit-reveal
    /// ([`Hyperparams::timelocked_commits`]): encrypted to the drand round of the reveal
    /// epoch ([`crate::timelock`]); the chain decrypts and applies them itself. Chains
    /// without a drand beacon (the local one) refuse with `TimelockedCommitsUnsupported`.
    async fn commit_timelocked_weights(&self, _hotkey: &Keypair, _netuid: u16, _uids: Vec<u16>, _values: Vec<u16>, _version_key: u64) -> ChainResult<TxReceipt> {
        Err(ChainError::Rejected {
            name: "TimelockedCommitsUnsupported".into(),
            message: "this chain has no drand beacon to reveal timelocked commits; use hash-based commit-reveal (commit_weights, reveal_weights)".into(),
        })
    }

    /// Set `hotkey`'s commitment in `netuid` (at most 128 bytes).
    async fn set_commitment(&self, hotkey: &Keypair, netuid: u16, data: String) -> ChainResult<TxReceipt> {
        self.sign_and_submit(hotkey, Call::SetCommitment { netuid, data }).await
    }

    /// Change hyperparameters of a subnet owned by `coldkey`.
    async fn set_hyperparams(&self, coldkey: &Keypair, netuid: u16, update: HyperparamUpdate) -> ChainResult<TxReceipt> {
        self.sign_and_submit(coldkey, Call::SetHyperparams { netuid, update }).await
    }

    /// Dev faucet: credit `amount` rao to `account` (local chains only).
    async fn faucet(&self, account: &Keypair, amount: u64) -> ChainResult<TxReceipt> {
        self.sign_and_submit(account, Call::Faucet { amount }).await
    }
}

/// A subnet's neurons with lookups by uid and hotkey. [`Metagraph::sync`] refetches only when
/// the subnet changed since the last sync.
#[derive(Debug, Clone)]
pub struct Metagraph {
    netuid: u16,
    block: u64,
    changed_at: u64,
    neurons: Vec<NeuronInfo>,
    by_hotkey: HashMap<PublicKey, u16>,
}

impl Metagraph {
    /// Fetch the metagraph of `netuid`.
    pub async fn fetch(chain: &dyn Chain, netuid: u16) -> ChainResult<Metagraph> {
        let snapshot = chain
            .neurons(netuid, None)
            .await?
            .ok_or_else(|| ChainError::Protocol("the chain answered `unchanged` to a full metagraph request".into()))?;
        Ok(Metagraph::from_snapshot(snapshot))
    }

    /// Build from a snapshot.
    pub fn from_snapshot(snapshot: NeuronsSnapshot) -> Metagraph {
        let by_hotkey = snapshot.neurons.iter().map(|n| (n.hotkey, n.uid)).collect();
        Metagraph {
            netuid: snapshot.netuid,
            block: snapshot.block,
            changed_at: snapshot.changed_at,
            neurons: snapshot.neurons,
            by_hotkey,
        }
    }

    /// Refresh from the chain. Returns true if anything changed (a full refetch happened).
    pub async fn sync(&mut self, chain: &dyn Chain) -> ChainResult<bool> {
        match chain.neurons(self.netuid, Some(self.changed_at)).await? {
            None => {
                self.block = chain.block_number().await?;
                Ok(false)
            }
            Some(snapshot) => {
                *self = Metagraph::from_snapshot(snapshot);
                Ok(true)
            }
        }
    }

    /// Subnet id.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    /// Block of the last sync.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// Number of neurons.
    pub fn n(&self) -> u16 {
        self.neurons.len() as u16
    }

    /// All neurons, by uid.
    pub fn neurons(&self) -> &[NeuronInfo] {
        &self.neurons
    }

    /// The neuron with this uid.
    pub fn neuron(&self, uid: u16) -> Option<&NeuronInfo> {
        self.neurons.get(usize::from(uid))
    }

    /// The uid of a hotkey.
    pub fn uid_of(&self, hotkey: &PublicKey) -> Option<u16> {
        self.by_hotkey.get(hotkey).copied()
    }

    /// The neuron of a hotkey.
    pub fn by_hotkey(&self, hotkey: &PublicKey) -> Option<&NeuronInfo> {
        self.uid_of(hotkey).and_then(|uid| self.neuron(uid))
    }

    /// Uids holding a validator permit.
    pub fn validators(&self) -> Vec<u16> {
        self.neurons.iter().filter(|n| n.validator_permit).map(|n| n.uid).collect()
    }
}
