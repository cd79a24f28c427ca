//! [`SubtensorChain`]: the [`Chain`] trait over a node of a real subtensor runtime, so that
//! every miner and validator runs unchanged on finney, testnet or a local subtensor.
//!
//! Reads: one finalized block per query ([`Reader`]), every storage entry resolved by name
//! from that block's metadata. Where an entry differs between runtimes the reader picks the
//! one the runtime has: stake is `TotalHotkeyAlpha(hotkey, netuid)` (dynamic TAO: the
//! subnet's alpha stake, what the runtime's validator permits are computed from) and
//! `TotalHotkeyStake(hotkey)` before it; the reveal period is `RevealPeriodEpochs`, or
//! `CommitRevealWeightsInterval` in older runtimes; a runtime without `Yuma3On` runs classic
//! Yuma (read as off); other entries a runtime does not have (`AlphaSigmoidSteepness`,
//! `BondsPenalty`, …) read as a new subnet's defaults ([`Hyperparams::new_subnet`]), which
//! are what those runtimes behave as (a bonds penalty of 1: bonds from clipped weights).
//!
//! Writes: [`Chain::sign_and_submit`] maps each [`Call`] to the runtime call (shaped from
//! the node's metadata by [`crate::calls`]), signs it with our keys (subxt fetches the
//! account's next nonce) and waits until it is in a block: the receipt is durable in the
//! sense of [`Chain`] once the block is (a finalized block on a real node). The runtime's
//! dispatch errors come back as [`ChainError::Rejected`] with the runtime's error name.
//! [`Chain::submit`] takes the local chain's own signed-transaction format, which a
//! subtensor node cannot accept: it is refused with `UnsupportedOnSubtensor`, as is the
//! local chain's dev `faucet`.
//!
//! The connection is opened on first use and reopened after it broke (a query that fails
//! on transport drops it), so a node restart costs the queries made while it was down.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use ganglion_chain::commit_reveal::WeightCommit;
use ganglion_chain::timelock::{self, EpochSchedule};
use ganglion_chain::tx::{Call as ChainCall, SignedTransaction};
use ganglion_chain::{
    AccountInfo, AxonInfo, BlockHeader, BlockStream, Chain, ChainError, ChainInfo, ChainResult, Commitment,
    HyperparamUpdate, Hyperparams, NeuronInfo, NeuronsSnapshot, SubnetInfo, TxReceipt,
};
use ganglion_core::keys::{Keypair, PublicKey};
use subxt::PolkadotConfig;
use subxt::client::OnlineClientAtBlock;
use subxt::dynamic::Value;
use subxt::ext::frame_decode::storage::{IntoDecodableValues, IntoEncodableValues};
use subxt::ext::scale_decode::DecodeAsType;
use subxt::ext::scale_value::{Composite, Primitive, ValueDef};
use subxt::utils::AccountId32;
use tokio::sync::Mutex;

use crate::calls::{self, AxonEndpoint, SUBTENSOR};
use crate::client::{Included, MORTAL_BLOCKS, RawAxon, SignedTx, Subtensor, Timeouts};
use crate::error::{SubtensorError, SubtensorResult};
use crate::signer::{KeypairSigner, account_id};

/// Times a transaction is submitted again after a lost answer ([`SubtensorChain::execute_signed`]).
const RETRIES: u64 = 2;

/// Reads at most this many per-hotkey entries at once (owners, stakes).
const READ_CONCURRENCY: usize = 16;

/// Known btcli network names and their endpoints.
pub const NETWORKS: &[(&str, &str)] = &[
    ("finney", "wss://entrypoint-finney.opentensor.ai:443"),
    ("test", "wss://test.finney.opentensor.ai:443"),
    ("archive", "wss://archive.chain.opentensor.ai:443"),
];

/// The endpoint of a btcli network name (`finney`, `test`, `archive`), or `None`.
pub fn network_endpoint(name: &str) -> Option<&'static str> {
    NETWORKS.iter().find(|(n, _)| *n == name).map(|(_, url)| *url)
}

/// The [`Chain`] over a subtensor node. See the module doc.
pub struct SubtensorChain {
    url: String,
    timeouts: Timeouts,
    tls: ganglion_tls::ClientTls,
    client: Mutex<Option<Subtensor>>,
}

impl std::fmt::Debug for SubtensorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubtensorChain").field("url", &self.url).finish()
    }
}

impl SubtensorChain {
    /// A chain on the node at `url` (`ws://…` or `wss://…`), connected on first use.
    pub fn new(url: &str, timeouts: Timeouts) -> SubtensorChain {
        SubtensorChain::with_tls(url, timeouts, ganglion_tls::ClientTls::system())
    }

    /// As [`SubtensorChain::new`], verifying a `wss://` node against `tls`'s roots too.
    pub fn with_tls(url: &str, timeouts: Timeouts, tls: ganglion_tls::ClientTls) -> SubtensorChain {
        SubtensorChain { url: url.to_string(), timeouts, tls, client: Mutex::new(None) }
    }

    /// A chain over an open client.
    pub fn from_client(client: Subtensor) -> SubtensorChain {
        SubtensorChain { url: client.url().to_string(), timeouts: client.timeouts(), tls: ganglion_tls::ClientTls::system(), client: Mutex::new(Some(client)) }
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client, connecting if there is none.
    pub async fn client(&self) -> SubtensorResult<Subtensor> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Subtensor::connect_with_tls(&self.url, self.timeouts, &self.tls).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs `op` on the client; a transport failure drops the connection so that the next
    /// call reconnects.
    async fn with<T, F, Fut>(&self, op: F) -> ChainResult<T>
    where
        F: FnOnce(Subtensor) -> Fut,
        Fut: std::future::Future<Output = SubtensorResult<T>>,
    {
        let client = self.client().await?;
        match op(client).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if matches!(e, SubtensorError::Rpc { .. } | SubtensorError::Timeout { .. } | SubtensorError::Connect { .. }) {
                    *self.client.lock().await = None;
                }
                Err(e.into())
            }
        }
    }

    /// Runs `op` on a [`Reader`] at the finalized head; a transport failure drops the
    /// connection so that the next call reconnects.
    async fn read<T, F, Fut>(&self, op: F) -> ChainResult<T>
    where
        F: FnOnce(Reader) -> Fut,
        Fut: std::future::Future<Output = ChainResult<T>>,
    {
        let outcome = match self.client().await {
            Ok(client) => match Self::reader(&client).await {
                Ok(reader) => op(reader).await,
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        };
        if matches!(outcome, Err(ChainError::Transport { .. })) {
            *self.client.lock().await = None;
        }
        outcome
    }

    async fn reader(client: &Subtensor) -> SubtensorResult<Reader> {
        Ok(Reader { at: client.at_head().await?, client: client.clone() })
    }

    /// Signs `call` with `signer`, submits it and waits until it is in a block.
    async fn execute(&self, signer: &Keypair, make: impl FnOnce(&subxt::Metadata) -> SubtensorResult<calls::Call> + Send) -> ChainResult<Included> {
        let signer = KeypairSigner::new(signer.clone());
        let tx = self
            .with(|client| async move {
                let call = client.build(make).await?;
                client.sign(&call, &signer).await
            })
            .await?;
        self.execute_signed(&tx).await
    }

    /// Submits `tx` and waits until it is in a block. A failure of the connection or of a
    /// wait submits the *same* signed bytes again (at most [`RETRIES`] times, on a fresh
    /// connection): one nonce, so it executes at most once. If the node then refuses it as
    /// known or stale, the first submission got through, and its block is looked up
    /// (within the transaction's era) for the outcome.
    pub async fn execute_signed(&self, tx: &SignedTx) -> ChainResult<Included> {
        let mut attempt = 0;
        loop {
            let client = self.client().await?;
            let outcome = match client.submit_signed(tx).await {
                Ok(pending) => pending.wait().await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(included) => return Ok(included),
                Err(e @ (SubtensorError::Rpc { .. } | SubtensorError::Timeout { .. } | SubtensorError::Connect { .. } | SubtensorError::NotIncluded { .. }))
                    if attempt < RETRIES =>
                {
                    attempt += 1;
                    if !matches!(e, SubtensorError::NotIncluded { .. }) {
                        *self.client.lock().await = None;
                    }
                    tracing::warn!(target: "ganglion::subtensor", tx = %tx.label(), attempt, "submitting again, unchanged: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(attempt)).await;
                }
                Err(e @ SubtensorError::Invalid { .. }) if attempt > 0 => {
                    // Refused on resubmission (already in the pool, or its nonce is used):
                    // the first submission got through; find its block.
                    let deadline = tokio::time::Instant::now() + client.timeouts().inclusion;
                    loop {
                        if let Some(included) = client.find_included(tx, MORTAL_BLOCKS + 2).await? {
                            return Ok(included);
                        }
                        if tokio::time::Instant::now() >= deadline {
                            return Err(e.into());
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
                Err(e) => {
                    if matches!(e, SubtensorError::Rpc { .. } | SubtensorError::Timeout { .. } | SubtensorError::Connect { .. }) {
                        *self.client.lock().await = None;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    fn receipt(included: &Included) -> TxReceipt {
        TxReceipt {
            hash: format!("{:#x}", included.extrinsic_hash),
            block: included.block_number,
            uid: None,
            netuid: None,
        }
    }
}

/// Storage reads at one block, by name from that block's metadata.
struct Reader {
    at: OnlineClientAtBlock<PolkadotConfig>,
    client: Subtensor,
}

impl Reader {
    fn block(&self) -> u64 {
        self.at.block_number()
    }

    /// Whether the runtime has `pallet::entry`.
    fn has(&self, pallet: &str, entry: &str) -> bool {
        self.at
            .metadata()
            .pallet_by_name(pallet)
            .and_then(|p| p.storage())
            .is_some_and(|s| s.entry_by_name(entry).is_some())
    }

    /// `pallet::entry(keys)`, the entry's default when unset; `None` when the runtime has no
    /// such entry.
    async fn get<K, V>(&self, pallet: &str, entry: &str, keys: K) -> SubtensorResult<Option<V>>
    where
        K: IntoEncodableValues + IntoDecodableValues,
        V: DecodeAsType,
    {
        if !self.has(pallet, entry) {
            return Ok(None);
        }
        let what = format!("storage {pallet}::{entry}");
        let addr = subxt::dynamic::storage::<K, V>(pallet, entry);
        let value = self.client.bounded(&what, self.at.storage().try_fetch(addr, keys)).await?;
        match value {
            None => Ok(None),
            Some(v) => v.decode().map(Some).map_err(|e| SubtensorError::Decode { what, reason: e.to_string() }),
        }
    }

    /// Like [`Reader::get`], but an entry the runtime must have.
    async fn need<K, V>(&self, pallet: &str, entry: &str, keys: K) -> SubtensorResult<V>
    where
        K: IntoEncodableValues + IntoDecodableValues,
        V: DecodeAsType,
    {
        self.get(pallet, entry, keys).await?.ok_or_else(|| SubtensorError::Metadata {
            url: self.client.url().to_string(),
            what: format!("storage {pallet}::{entry}"),
        })
    }

    /// Every `(second key, value)` of the double map `pallet::entry` under `first`; empty
    /// when the runtime has no such entry.
    async fn iter2<K1, K2, V>(&self, pallet: &str, entry: &str, first: K1) -> SubtensorResult<Vec<(K2, V)>>
    where
        K1: subxt::ext::scale_encode::EncodeAsType + Clone,
        K2: DecodeAsType + subxt::ext::scale_encode::EncodeAsType,
        (K1, K2): IntoEncodableValues + IntoDecodableValues,
        (K1,): IntoEncodableValues,
        V: DecodeAsType,
    {
        if !self.has(pallet, entry) {
            return Ok(Vec::new());
        }
        let what = format!("storage {pallet}::{entry}");
        let addr = subxt::dynamic::storage::<(K1, K2), V>(pallet, entry);
        let read = async {
            let mut entries = self.at.storage().iter(addr, (first,)).await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            while let Some(kv) = entries.next().await {
                let kv = kv.map_err(|e| e.to_string())?;
                let key = kv.key().map_err(|e| e.to_string())?;
                let second = key
                    .part(1)
                    .ok_or("a key without its second part")?
                    .decode_as::<K2>()
                    .map_err(|e| e.to_string())?
                    .ok_or("a hashed key part (not readable)")?;
                let value = kv.value().decode().map_err(|e| e.to_string())?;
                out.push((second, value));
            }
            Ok::<_, String>(out)
        };
        match tokio::time::timeout(self.client.timeouts().request, read).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(reason)) => Err(SubtensorError::Decode { what, reason }),
            Err(_) => Err(SubtensorError::Timeout { url: self.client.url().to_string(), what, after: self.client.timeouts().request }),
        }
    }

    async fn networks(&self) -> SubtensorResult<Vec<u16>> {
        // `NetworksAdded` is a map netuid → bool: iterate it whole.
        let addr = subxt::dynamic::storage::<(u16,), bool>(SUBTENSOR, "NetworksAdded");
        let what = format!("storage {SUBTENSOR}::NetworksAdded");
        let read = async {
            let mut entries = self.at.storage().iter(addr, ()).await.map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            while let Some(kv) = entries.next().await {
                let kv = kv.map_err(|e| e.to_string())?;
                let key = kv.key().map_err(|e| e.to_string())?;
                let netuid = key.part(0).ok_or("no netuid")?.decode_as::<u16>().map_err(|e| e.to_string())?.ok_or("hashed netuid")?;
                if kv.value().decode().map_err(|e| e.to_string())? {
                    out.push(netuid);
                }
            }
            out.sort_unstable();
            Ok::<_, String>(out)
        };
        match tokio::time::timeout(self.client.timeouts().request, read).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(reason)) => Err(SubtensorError::Decode { what, reason }),
            Err(_) => Err(SubtensorError::Timeout { url: self.client.url().to_string(), what, after: self.client.timeouts().request }),
        }
    }

    async fn exists(&self, netuid: u16) -> SubtensorResult<bool> {
        Ok(self.get::<_, bool>(SUBTENSOR, "NetworksAdded", (netuid,)).await?.unwrap_or(false))
    }

    async fn subnet(&self, netuid: u16) -> ChainResult<SubnetInfo> {
        if !self.exists(netuid).await? {
            return Err(ChainError::Rejected {
                name: "SubNetworkDoesNotExist".into(),
                message: format!("subnet {netuid} does not exist on this chain; check the netuid"),
            });
        }
        let u16_of = |entry: &'static str| async move { self.get::<_, u16>(SUBTENSOR, entry, (netuid,)).await.map(Option::unwrap_or_default) };
        let u64_of = |entry: &'static str| async move { self.get::<_, u64>(SUBTENSOR, entry, (netuid,)).await.map(Option::unwrap_or_default) };
        let owner: AccountId32 = self.need(SUBTENSOR, "SubnetOwner", (netuid,)).await?;
        let owner_hotkey = match self.get::<_, AccountId32>(SUBTENSOR, "SubnetOwnerHotkey", (netuid,)).await? {
            Some(k) => k,
            // Before dynamic TAO the owner's hotkey is the subnet's first neuron.
            None => self.get::<_, AccountId32>(SUBTENSOR, "Keys", (netuid, 0u16)).await?.unwrap_or(AccountId32([0; 32])),
        };
        let emission = match self.get::<_, u64>(SUBTENSOR, "EmissionValues", (netuid,)).await? {
            Some(e) => e,
            None => u64_of("SubnetTaoInEmission").await?,
        };
        let tempo = u16_of("Tempo").await?;
        Ok(SubnetInfo {
            netuid,
            owner_coldkey: PublicKey::from_bytes(owner.0),
            owner_hotkey: PublicKey::from_bytes(owner_hotkey.0),
            n: u16_of("SubnetworkN").await?,
            max_n: u16_of("MaxAllowedUids").await?,
            tempo,
            burn: u64_of("Burn").await?,
            last_epoch_block: u64_of("LastMechansimStepBlock").await?,
            // Subtensor's own epoch index of the block read at (what its commit-reveal
            // windows are counted in).
            epoch_index: epoch_index(self.block(), netuid, tempo),
            emission_per_block: emission,
            registered_at: u64_of("NetworkRegisteredAt").await?,
        })
    }

    async fn hyperparams(&self, netuid: u16) -> ChainResult<Hyperparams> {
        if !self.exists(netuid).await? {
            return Err(ChainError::Rejected {
                name: "SubNetworkDoesNotExist".into(),
                message: format!("subnet {netuid} does not exist on this chain; check the netuid"),
            });
        }
        let tempo: u16 = self.need(SUBTENSOR, "Tempo", (netuid,)).await?;
        let mut h = Hyperparams::new_subnet(tempo);
        macro_rules! read {
            ($field:ident, $ty:ty, $entry:literal) => {
                if let Some(v) = self.get::<_, $ty>(SUBTENSOR, $entry, (netuid,)).await? {
                    h.$field = v.into();
                }
            };
        }
        read!(kappa, u16, "Kappa");
        read!(immunity_period, u16, "ImmunityPeriod");
        read!(min_allowed_weights, u16, "MinAllowedWeights");
        read!(max_weights_limit, u16, "MaxWeightsLimit");
        read!(weights_version, u64, "WeightsVersionKey");
        read!(weights_rate_limit, u64, "WeightsSetRateLimit");
        read!(activity_cutoff, u16, "ActivityCutoff");
        read!(max_allowed_uids, u16, "MaxAllowedUids");
        read!(max_allowed_validators, u16, "MaxAllowedValidators");
        read!(max_registrations_per_block, u16, "MaxRegistrationsPerBlock");
        read!(registration_allowed, bool, "NetworkRegistrationAllowed");
        read!(min_burn, u64, "MinBurn");
        read!(max_burn, u64, "MaxBurn");
        read!(bonds_moving_average, u64, "BondsMovingAverage");
        read!(bonds_penalty, u16, "BondsPenalty");
        read!(serving_rate_limit, u64, "ServingRateLimit");
        read!(commit_reveal_weights_enabled, bool, "CommitRevealWeightsEnabled");
        // A runtime without the entry predates Yuma3: it runs classic Yuma.
        h.yuma3_enabled = self.get::<_, bool>(SUBTENSOR, "Yuma3On", (netuid,)).await?.unwrap_or(false);
        read!(liquid_alpha_enabled, bool, "LiquidAlphaOn");
        read!(alpha_sigmoid_steepness, i16, "AlphaSigmoidSteepness");
        if self.has(SUBTENSOR, "RevealPeriodEpochs") {
            read!(commit_reveal_period, u64, "RevealPeriodEpochs");
        } else {
            read!(commit_reveal_period, u64, "CommitRevealWeightsInterval");
        }
        if let Some((low, high)) = self.get::<_, (u16, u16)>(SUBTENSOR, "AlphaValues", (netuid,)).await? {
            h.alpha_low = low;
            h.alpha_high = high;
        }
        // Which commit-reveal runs when it is on: a chain-wide version in current runtimes
        // (3 and above: drand-timelocked), hash-based where the runtime has no such entry.
        h.commit_reveal_version = self.get::<_, u16>(SUBTENSOR, "CommitRevealWeightsVersion", ()).await?.unwrap_or(1);
        // The stake a validator needs to set weights: per chain in both runtimes.
        for entry in ["StakeThreshold", "WeightsMinStake"] {
            if let Some(v) = self.get::<_, u64>(SUBTENSOR, entry, ()).await? {
                h.stake_threshold = v;
                break;
            }
        }
        Ok(h)
    }

    /// The subnet's epoch scheduling state, as the SDK reads it for timelocked commits
    /// (`LastEpochBlock`, `PendingEpochAt`, `SubnetEpochIndex`, `Tempo`,
    /// `BlocksSinceLastStep`); runtimes that predate that scheduling are refused by name.
    async fn epoch_schedule(&self, netuid: u16) -> ChainResult<EpochSchedule> {
        let missing = |entry: &str| ChainError::Rejected {
            name: "EpochScheduleUnknown".into(),
            message: format!(
                "this runtime has no {SUBTENSOR}::{entry}: its epoch scheduling predates the one timelocked commits are computed for; the subnet cannot take timelocked commits from this client"
            ),
        };
        let u64_at = |entry: &'static str| async move { self.get::<_, u64>(SUBTENSOR, entry, (netuid,)).await?.ok_or_else(|| missing(entry)) };
        Ok(EpochSchedule {
            last_epoch_block: u64_at("LastEpochBlock").await?,
            pending_epoch_at: u64_at("PendingEpochAt").await?,
            subnet_epoch_index: u64_at("SubnetEpochIndex").await?,
            tempo: self.get::<_, u16>(SUBTENSOR, "Tempo", (netuid,)).await?.ok_or_else(|| missing("Tempo"))?,
            blocks_since_last_step: u64_at("BlocksSinceLastStep").await?,
            current_block: self.block(),
        })
    }

    async fn neurons(&self, netuid: u16) -> ChainResult<NeuronsSnapshot> {
        if !self.exists(netuid).await? {
            return Err(ChainError::Rejected {
                name: "SubNetworkDoesNotExist".into(),
                message: format!("subnet {netuid} does not exist on this chain; check the netuid"),
            });
        }
        let block = self.block();
        let n: u16 = self.get(SUBTENSOR, "SubnetworkN", (netuid,)).await?.unwrap_or(0);
        let keys: Vec<(u16, AccountId32)> = self.iter2(SUBTENSOR, "Keys", netuid).await?;
        let mut hotkeys: Vec<Option<PublicKey>> = vec![None; usize::from(n)];
        for (uid, key) in keys {
            if let Some(slot) = hotkeys.get_mut(usize::from(uid)) {
                *slot = Some(PublicKey::from_bytes(key.0));
            }
        }
        let vec_of = |entry: &'static str| async move { self.get::<_, Vec<u16>>(SUBTENSOR, entry, (netuid,)).await.map(Option::unwrap_or_default) };
        let bools_of = |entry: &'static str| async move { self.get::<_, Vec<bool>>(SUBTENSOR, entry, (netuid,)).await.map(Option::unwrap_or_default) };
        let u64s_of = |entry: &'static str| async move { self.get::<_, Vec<u64>>(SUBTENSOR, entry, (netuid,)).await.map(Option::unwrap_or_default) };
        let active = bools_of("Active").await?;
        let permit = bools_of("ValidatorPermit").await?;
        let vtrust = vec_of("ValidatorTrust").await?;
        let consensus = vec_of("Consensus").await?;
        let incentive = vec_of("Incentive").await?;
        let dividends = vec_of("Dividends").await?;
        let emission = u64s_of("Emission").await?;
        let last_update = u64s_of("LastUpdate").await?;
        let registered: HashMap<u16, u64> = self.iter2::<u16, u16, u64>(SUBTENSOR, "BlockAtRegistration", netuid).await?.into_iter().collect();
        let axons: HashMap<PublicKey, RawAxon> =
            self.iter2::<u16, AccountId32, RawAxon>(SUBTENSOR, "Axons", netuid).await?.into_iter().map(|(k, v)| (PublicKey::from_bytes(k.0), v)).collect();

        // Per hotkey: its coldkey and its stake on this subnet.
        let alpha = self.has(SUBTENSOR, "TotalHotkeyAlpha");
        let present: Vec<PublicKey> = hotkeys.iter().flatten().copied().collect();
        let per_hotkey = futures::stream::iter(present.into_iter().map(|hotkey| async move {
            let account = account_id(&hotkey);
            let owner: AccountId32 = self.need(SUBTENSOR, "Owner", (account,)).await?;
            let stake: u64 = if alpha {
                self.get(SUBTENSOR, "TotalHotkeyAlpha", (account, netuid)).await?.unwrap_or(0)
            } else {
                self.get(SUBTENSOR, "TotalHotkeyStake", (account,)).await?.unwrap_or(0)
            };
            Ok::<_, SubtensorError>((hotkey, (PublicKey::from_bytes(owner.0), stake)))
        }))
        .buffer_unordered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<HashMap<_, _>, _>>()?;

        let mut neurons = Vec::with_capacity(hotkeys.len());
        for (uid, hotkey) in hotkeys.into_iter().enumerate() {
            let Some(hotkey) = hotkey else { continue };
            let i = uid;
            let uid = u16::try_from(uid).unwrap_or(u16::MAX);
            let (coldkey, stake) = per_hotkey.get(&hotkey).copied().unwrap_or((PublicKey::from_bytes([0; 32]), 0));
            let axon: Option<AxonInfo> = match axons.get(&hotkey) {
                Some(raw) => raw.clone().into_info(|| format!("storage {SUBTENSOR}::Axons ({netuid}, {hotkey})"))?,
                None => None,
            };
            neurons.push(NeuronInfo {
                uid,
                hotkey,
                coldkey,
                stake,
                active: active.get(i).copied().unwrap_or(false),
                validator_permit: permit.get(i).copied().unwrap_or(false),
                validator_trust: vtrust.get(i).copied().unwrap_or(0),
                consensus: consensus.get(i).copied().unwrap_or(0),
                incentive: incentive.get(i).copied().unwrap_or(0),
                dividends: dividends.get(i).copied().unwrap_or(0),
                emission: emission.get(i).copied().unwrap_or(0),
                last_update: last_update.get(i).copied().unwrap_or(0),
                block_at_registration: registered.get(&uid).copied().unwrap_or(0),
                axon,
            });
        }
        Ok(NeuronsSnapshot { netuid, block, changed_at: block, neurons })
    }
}

/// The bytes of a value that is a sequence of `u8` (a `[u8; N]` or `Vec<u8>`), looking
/// through newtypes.
fn bytes_of(value: &Value<()>) -> Option<Vec<u8>> {
    match &value.value {
        ValueDef::Composite(c) => {
            let items: Vec<&Value<()>> = c.values().collect();
            if items.len() == 1
                && let Some(inner) = bytes_of(items[0])
                && !matches!(items[0].value, ValueDef::Primitive(_))
            {
                return Some(inner);
            }
            items
                .iter()
                .map(|v| match &v.value {
                    ValueDef::Primitive(Primitive::U128(b)) => u8::try_from(*b).ok(),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

fn field<'a>(value: &'a Value<()>, name: &str) -> Option<&'a Value<()>> {
    match &value.value {
        ValueDef::Composite(Composite::Named(fields)) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

fn u64_of(value: &Value<()>) -> Option<u64> {
    match &value.value {
        ValueDef::Primitive(p) => p.as_u128().and_then(|v| u64::try_from(v).ok()),
        ValueDef::Composite(c) if c.len() == 1 => c.values().next().and_then(u64_of),
        _ => None,
    }
}

/// A `Commitments::CommitmentOf` registration: `{ deposit, block, info: { fields: [Data] } }`
/// with the raw fields' bytes joined (the SDK publishes one `Raw{len}` field).
fn commitment_from(value: &Value<()>) -> Option<Commitment> {
    let block = field(value, "block").and_then(u64_of)?;
    let fields = field(field(value, "info")?, "fields")?;
    let list: Vec<&Value<()>> = match &fields.value {
        ValueDef::Composite(c) => {
            // A BoundedVec is a newtype around the list.
            let items: Vec<&Value<()>> = c.values().collect();
            match items.as_slice() {
                [only] if matches!(only.value, ValueDef::Composite(_)) => match &only.value {
                    ValueDef::Composite(inner) => inner.values().collect(),
                    _ => items,
                },
                _ => items,
            }
        }
        _ => return None,
    };
    let mut data = Vec::new();
    for item in list {
        if let ValueDef::Variant(v) = &item.value
            && v.name.starts_with("Raw")
            && let Some(bytes) = v.values.values().next().and_then(bytes_of)
        {
            data.extend_from_slice(&bytes);
        }
    }
    Some(Commitment { data: String::from_utf8_lossy(&data).into_owned(), block })
}

/// Subtensor's epoch index of `block` for a subnet (`(block + netuid + 1) / (tempo + 1)`).
fn epoch_index(block: u64, netuid: u16, tempo: u16) -> u64 {
    (block + u64::from(netuid) + 1) / (u64::from(tempo) + 1)
}

/// A timelock failure (lengths, size, an impossible schedule) as a refusal by name.
fn timelock_refusal(e: timelock::TimelockError) -> ChainError {
    ChainError::Rejected { name: "TimelockedCommitRefused".into(), message: e.to_string() }
}

fn unsupported(what: &str) -> ChainError {
    ChainError::Rejected {
        name: "UnsupportedOnSubtensor".into(),
        message: format!("{what} exists only on a local ganglion chain; on subtensor use the runtime's own calls"),
    }
}

#[async_trait]
impl Chain for SubtensorChain {
    async fn info(&self) -> ChainResult<ChainInfo> {
        self.with(|client| async move {
            let name = client.chain_name().await?;
            let reader = Self::reader(&client).await?;
            // Aura's slot duration when the runtime exposes it, else twice the timestamp
            // pallet's minimum period (what Aura runtimes set it to).
            let constant = |pallet: &str, name: &str| reader.at.constants().entry(subxt::dynamic::constant::<u64>(pallet, name)).ok();
            let block_time_ms = constant("Aura", "SlotDuration").or_else(|| constant("Timestamp", "MinimumPeriod").map(|p| p * 2)).unwrap_or(12_000);
            Ok(ChainInfo {
                chain_id: name,
                genesis_hash: format!("{:#x}", client.genesis_hash()),
                block: reader.block(),
                block_time_ms,
                faucet: false,
            })
        })
        .await
    }

    async fn block_number(&self) -> ChainResult<u64> {
        self.with(|client| async move { client.block_number().await }).await
    }

    async fn subscribe_blocks(&self) -> ChainResult<BlockStream> {
        // The finalized head, polled at a quarter of the block time: one read per poll, and
        // it works on every node (chopsticks ends subxt's finalized-head subscription at
        // once). Each new head is reported once, in order; a poll that fails ends the stream
        // (as a broken subscription would), and the caller resubscribes.
        let client = self.client().await?;
        let block_time = self.info().await.map(|i| i.block_time_ms).unwrap_or(12_000);
        let period = std::time::Duration::from_millis((block_time / 4).clamp(250, 3_000));
        let last = client.block_number().await.map_err(ChainError::from)?;
        let stream = futures::stream::unfold((client, last, false), move |(client, last, failed)| {
            async move {
                if failed {
                    return None;
                }
                loop {
                    tokio::time::sleep(period).await;
                    let at = match client.at_head().await {
                        Ok(at) => at,
                        Err(e) => return Some((Err(ChainError::from(e)), (client, last, true))),
                    };
                    let number = at.block_number();
                    if number <= last {
                        continue;
                    }
                    let addr = subxt::dynamic::storage::<(), u64>("Timestamp", "Now");
                    let timestamp_ms = match at.storage().try_fetch(addr, ()).await {
                        Ok(Some(v)) => v.decode().unwrap_or(0),
                        _ => 0,
                    };
                    let parent_hash = match client.bounded("a block header", at.block_header()).await {
                        Ok(h) => format!("{:#x}", h.parent_hash),
                        Err(e) => return Some((Err(ChainError::from(e)), (client, last, true))),
                    };
                    let header = BlockHeader {
                        number,
                        hash: format!("{:#x}", at.block_hash()),
                        parent_hash,
                        timestamp_ms,
                        // Not read: a block's extrinsics and epochs cost a body fetch and an
                        // event scan per block, and no caller of the stream uses them.
                        extrinsics: Vec::new(),
                        epochs: Vec::new(),
                    };
                    return Some((Ok(header), (client, number, false)));
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn account(&self, account: &PublicKey) -> ChainResult<AccountInfo> {
        #[derive(DecodeAsType)]
        #[decode_as_type(crate_path = "subxt::ext::scale_decode")]
        struct Data {
            free: u64,
        }
        #[derive(DecodeAsType)]
        #[decode_as_type(crate_path = "subxt::ext::scale_decode")]
        struct Info {
            nonce: u32,
            data: Data,
        }
        let account = account_id(account);
        self.with(|client| async move {
            let reader = Self::reader(&client).await?;
            let info: Info = reader.need("System", "Account", (account,)).await?;
            Ok(AccountInfo { balance: info.data.free, nonce: u64::from(info.nonce) })
        })
        .await
    }

    async fn subnets(&self) -> ChainResult<Vec<SubnetInfo>> {
        self.read(|reader| async move {
            let mut out = Vec::new();
            for netuid in reader.networks().await? {
                out.push(reader.subnet(netuid).await?);
            }
            Ok(out)
        })
        .await
    }

    async fn subnet(&self, netuid: u16) -> ChainResult<SubnetInfo> {
        self.read(|reader| async move { reader.subnet(netuid).await }).await
    }

    async fn hyperparams(&self, netuid: u16) -> ChainResult<Hyperparams> {
        self.read(|reader| async move { reader.hyperparams(netuid).await }).await
    }

    async fn neurons(&self, netuid: u16, since: Option<u64>) -> ChainResult<Option<NeuronsSnapshot>> {
        self.read(|reader| async move {
            // The revision is the finalized block read at: nothing changes within a block.
            if since == Some(reader.block()) {
                return Ok(None);
            }
            reader.neurons(netuid).await.map(Some)
        })
        .await
    }

    async fn commitment(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Option<Commitment>> {
        let account = account_id(hotkey);
        self.with(|client| async move {
            let reader = Self::reader(&client).await?;
            if !reader.has("Commitments", "CommitmentOf") {
                return Err(SubtensorError::Metadata { url: client.url().to_string(), what: "storage Commitments::CommitmentOf".into() });
            }
            let addr = subxt::dynamic::storage::<(u16, AccountId32), Value<()>>("Commitments", "CommitmentOf");
            let what = "storage Commitments::CommitmentOf".to_string();
            let value = client.bounded(&what, reader.at.storage().try_fetch(addr, (netuid, account))).await?;
            let Some(value) = value else { return Ok(None) };
            let value = value.decode().map_err(|e| SubtensorError::Decode { what: what.clone(), reason: e.to_string() })?;
            commitment_from(&value).map(Some).ok_or_else(|| SubtensorError::Decode { what, reason: format!("unexpected shape {value}") })
        })
        .await
    }

    async fn weights(&self, netuid: u16) -> ChainResult<Vec<Vec<(u16, u16)>>> {
        self.read(|reader| async move {
            let n: u16 = reader.get(SUBTENSOR, "SubnetworkN", (netuid,)).await?.unwrap_or(0);
            let mut rows = vec![Vec::new(); usize::from(n)];
            for (uid, row) in reader.iter2::<u16, u16, Vec<(u16, u16)>>(SUBTENSOR, "Weights", netuid).await? {
                if let Some(slot) = rows.get_mut(usize::from(uid)) {
                    *slot = row;
                }
            }
            Ok(rows)
        })
        .await
    }

    async fn weight_commits(&self, netuid: u16, hotkey: &PublicKey) -> ChainResult<Vec<WeightCommit>> {
        let account = account_id(hotkey);
        self.read(|reader| async move {
            let what = format!("storage {SUBTENSOR}::WeightCommits");
            // Current runtimes: a queue of (hash, commit block, first reveal block, last reveal block).
            let commits: Vec<([u8; 32], u64, u64, u64)> = match reader.get(SUBTENSOR, "WeightCommits", (netuid, account)).await {
                Ok(v) => v.unwrap_or_default(),
                Err(SubtensorError::Decode { reason, .. }) => {
                    return Err(ChainError::Protocol(format!(
                        "{what} of this runtime is not the (hash, commit block, first reveal block, last reveal block) queue this client reads: {reason}"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            let h = reader.hyperparams(netuid).await?;
            Ok(commits
                .into_iter()
                .map(|(hash, commit_block, first, last)| {
                    let commit_epoch = epoch_index(commit_block, netuid, h.tempo);
                    WeightCommit {
                        hash,
                        commit_block,
                        commit_epoch,
                        reveal_epoch: commit_epoch + h.commit_reveal_period,
                        first_reveal_block: first,
                        last_reveal_block: last,
                    }
                })
                .collect())
        })
        .await
    }

    async fn commit_timelocked_weights(&self, hotkey: &Keypair, netuid: u16, uids: Vec<u16>, values: Vec<u16>, version_key: u64) -> ChainResult<TxReceipt> {
        let block_time_secs = self.info().await?.block_time_ms as f64 / 1000.0;
        let public = hotkey.public();
        let (commit, round, version) = self
            .read(|reader| async move {
                let h = reader.hyperparams(netuid).await?;
                let schedule = reader.epoch_schedule(netuid).await?;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                let round = timelock::reveal_round(&schedule, h.commit_reveal_period, block_time_secs, now).map_err(timelock_refusal)?;
                let commit = timelock::encrypt_weights(&public, &uids, &values, version_key, round).map_err(timelock_refusal)?;
                Ok((commit, round, h.commit_reveal_version))
            })
            .await?;
        let included = self.execute(hotkey, |m| calls::commit_timelocked_weights(m, netuid, &commit, round, version)).await?;
        tracing::info!(target: "ganglion::subtensor", netuid, round, bytes = commit.len(), "weights committed, timelocked to drand round {round}");
        Ok(Self::receipt(&included))
    }

    async fn submit(&self, _tx: SignedTransaction) -> ChainResult<TxReceipt> {
        Err(unsupported("a transaction in the local chain's format"))
    }

    async fn sign_and_submit(&self, signer: &Keypair, call: ChainCall) -> ChainResult<TxReceipt> {
        match call {
            ChainCall::RegisterNetwork { hotkey, netuid } => {
                if netuid.is_some() {
                    return Err(ChainError::Rejected {
                        name: "NetuidChosenByRuntime".into(),
                        message: "subtensor assigns the netuid of a new subnet; omit it".into(),
                    });
                }
                let included = self.execute(signer, |m| calls::register_network(m, &hotkey.0)).await?;
                let netuid = included.network_added().map_err(ChainError::from)?;
                Ok(TxReceipt { netuid: Some(netuid), ..Self::receipt(&included) })
            }
            ChainCall::BurnedRegister { netuid, hotkey } => {
                let included = self.execute(signer, |m| calls::burned_register(m, netuid, &hotkey.0)).await?;
                // `NeuronRegistered(netuid, uid, hotkey)`: read from the block that has it (the
                // finalized head may not yet).
                let uid = included.event(SUBTENSOR, "NeuronRegistered").and_then(|e| e.field_u128(1)).and_then(|u| u16::try_from(u).ok());
                Ok(TxReceipt { uid, ..Self::receipt(&included) })
            }
            ChainCall::AddStake { netuid, hotkey, amount } => {
                let included = self.execute(signer, |m| calls::add_stake(m, &hotkey.0, netuid, amount)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::RemoveStake { netuid, hotkey, amount } => {
                let included = self.execute(signer, |m| calls::remove_stake(m, &hotkey.0, netuid, amount)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::Transfer { dest, amount } => {
                let included = self.execute(signer, |m| calls::transfer(m, &dest.0, amount)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::ServeAxon { netuid, version, ip, port, protocol } => {
                let axon = AxonEndpoint { ip, port, version, protocol };
                let included = self.execute(signer, |m| calls::serve_axon(m, netuid, &axon)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::SetWeights { netuid, uids, values, version_key } => {
                let included = self.execute(signer, |m| calls::set_weights(m, netuid, &uids, &values, version_key)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::CommitWeights { netuid, commit_hash } => {
                let included = self.execute(signer, |m| calls::commit_weights(m, netuid, &commit_hash)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::RevealWeights { netuid, uids, values, salt, version_key } => {
                let included = self.execute(signer, |m| calls::reveal_weights(m, netuid, &uids, &values, &salt, version_key)).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::SetCommitment { netuid, data } => {
                let included = self.execute(signer, |m| calls::set_commitment(m, netuid, data.as_bytes())).await?;
                Ok(Self::receipt(&included))
            }
            ChainCall::SetHyperparams { netuid, update } => self.set_hyperparams_calls(signer, netuid, update).await,
            ChainCall::Faucet { .. } => Err(unsupported("the dev faucet")),
        }
    }
}

impl SubtensorChain {
    /// One `AdminUtils` setter per changed field, in order, each waited for; the receipt is
    /// the last one's. A setter the runtime lacks fails before anything is sent.
    async fn set_hyperparams_calls(&self, signer: &Keypair, netuid: u16, mut update: HyperparamUpdate) -> ChainResult<TxReceipt> {
        if update.alpha_low.is_some() != update.alpha_high.is_some() {
            let current = self.hyperparams(netuid).await?;
            update.alpha_low.get_or_insert(current.alpha_low);
            update.alpha_high.get_or_insert(current.alpha_high);
        }
        let setters = calls::hyperparam_setters(&update);
        if setters.is_empty() {
            return Err(ChainError::Rejected { name: "NothingToChange".into(), message: "the update changes no hyperparameter".into() });
        }
        // Check every setter against the metadata first, so that nothing is half applied
        // because of a setter this runtime does not have.
        let metadata = self.with(|client| async move { client.metadata().await }).await?;
        for (setter, values) in &setters {
            let mut args = vec![Value::u128(u128::from(netuid))];
            args.extend(values.iter().cloned());
            calls::admin_positional(&metadata, setter, args)?;
        }
        let mut last = None;
        for (setter, values) in setters {
            let included = self
                .execute(signer, |m| {
                    let mut args = vec![Value::u128(u128::from(netuid))];
                    args.extend(values);
                    calls::admin_positional(m, setter, args)
                })
                .await?;
            last = Some(Self::receipt(&included));
        }
        last.ok_or_else(|| ChainError::Protocol("no setter sent".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_are_btcli_s() {
        assert_eq!(network_endpoint("finney"), Some("wss://entrypoint-finney.opentensor.ai:443"));
        assert_eq!(network_endpoint("test"), Some("wss://test.finney.opentensor.ai:443"));
        assert_eq!(network_endpoint("local"), None);
    }

    #[test]
    fn epoch_index_is_subtensor_s() {
        // `(block + netuid + 1) / (tempo + 1)`: netuid 1, tempo 360 → the first epoch ends at 359.
        assert_eq!(epoch_index(359, 1, 360), 1);
        assert_eq!(epoch_index(358, 1, 360), 0);
    }

    #[test]
    fn commitments_decode_from_their_registration() {
        let raw = |s: &str| Value::unnamed_variant(format!("Raw{}", s.len()), [Value::from_bytes(s.as_bytes())]);
        let reg = Value::named_composite([
            ("deposit", Value::u128(0)),
            ("block", Value::u128(42)),
            ("info", Value::named_composite([("fields", Value::unnamed_composite([Value::unnamed_composite([raw("ns:model:"), raw("abc")])]))])),
        ]);
        assert_eq!(commitment_from(&reg), Some(Commitment { data: "ns:model:abc".into(), block: 42 }));
        let flat = Value::named_composite([
            ("deposit", Value::u128(0)),
            ("block", Value::u128(7)),
            ("info", Value::named_composite([("fields", Value::unnamed_composite([raw("x")]))])),
        ]);
        assert_eq!(commitment_from(&flat), Some(Commitment { data: "x".into(), block: 7 }));
        assert_eq!(commitment_from(&Value::u128(1)), None);
    }
}
