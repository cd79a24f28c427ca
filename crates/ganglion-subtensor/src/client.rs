//! [`Subtensor`]: a connection to a node of a real subtensor runtime over subxt (jsonrpsee
//! WebSocket, `ws://` or `wss://`). The runtime's metadata is read from the node at run time;
//! calls are subxt dynamic payloads ([`crate::calls`]) and storage is read with subxt's
//! dynamic storage API, so no pallet, call or storage index is compiled in.
//!
//! Every request is bounded ([`Timeouts`]); a transaction is signed, submitted, and waited
//! for until it is in a block (bounded too: a node that builds no block gives
//! [`SubtensorError::NotIncluded`], never a hang). Its events are then read: a failed
//! dispatch — of the call itself, or of the call a `Sudo.sudo` wraps — comes back as
//! [`SubtensorError::Dispatch`] with the runtime's error name decoded through the metadata.

use std::future::Future;
use std::time::Duration;

use ganglion_chain::AxonInfo;
use ganglion_core::keys::PublicKey;
use subxt::dynamic::Value;
use subxt::ext::scale_value::{Composite, ValueDef};
use subxt::tx::{Signer, TransactionStatus};
use subxt::utils::{AccountId32, H256};
use subxt::{ArcMetadata, Metadata, OnlineClient, PolkadotConfig};

use crate::calls::{self, AxonEndpoint, Call, SUBTENSOR, call_label};
use crate::error::{SubtensorError, SubtensorResult, hint};
use crate::signer::account_id;

/// Bounds on the client's waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the WebSocket and the first exchange (methods, genesis hash).
    pub connect: Duration,
    /// One read (a storage entry, the head, the metadata at a new runtime).
    pub request: Duration,
    /// From submission until the transaction is in a block.
    pub inclusion: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            inclusion: Duration::from_secs(60),
        }
    }
}

/// A connected subtensor client.
#[derive(Clone)]
pub struct Subtensor {
    url: String,
    rpc: subxt::rpcs::RpcClient,
    api: OnlineClient<PolkadotConfig>,
    timeouts: Timeouts,
}

impl std::fmt::Debug for Subtensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subtensor")
            .field("url", &self.url)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// One event of an included transaction.
#[derive(Debug, Clone)]
pub struct RuntimeEvent {
    /// Pallet name (`SubtensorModule`).
    pub pallet: String,
    /// Event name (`NetworkAdded`).
    pub name: String,
    /// The event's fields, decoded through the metadata.
    pub fields: Composite<()>,
}

impl RuntimeEvent {
    /// Field `index` as an unsigned integer, if it is one (newtypes such as `NetUid(u16)`
    /// are looked through).
    pub fn field_u128(&self, index: usize) -> Option<u128> {
        self.fields.values().nth(index).and_then(as_u128)
    }
}

/// A transaction in a block whose dispatch succeeded.
#[derive(Debug, Clone)]
pub struct Included {
    /// The block it is in.
    pub block_hash: H256,
    /// That block's number.
    pub block_number: u64,
    /// The transaction's hash.
    pub extrinsic_hash: H256,
    /// Its events, in order.
    pub events: Vec<RuntimeEvent>,
}

impl Included {
    /// The first event `pallet::name`.
    pub fn event(&self, pallet: &str, name: &str) -> Option<&RuntimeEvent> {
        self.events
            .iter()
            .find(|e| e.pallet == pallet && e.name == name)
    }

    /// The netuid of a `register_network`: the first field of its `NetworkAdded` event.
    pub fn network_added(&self) -> SubtensorResult<u16> {
        self.event(SUBTENSOR, "NetworkAdded")
            .and_then(|e| e.field_u128(0))
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| SubtensorError::Decode {
                what: "the NetworkAdded event of register_network".into(),
                reason: "no such event with a netuid among the transaction's events".into(),
            })
    }
}

/// How many blocks a signed transaction stays valid ([`Subtensor::sign`]).
pub const MORTAL_BLOCKS: u64 = 32;

/// A signed transaction, kept so that it can be submitted again unchanged.
#[derive(Debug, Clone)]
pub struct SignedTx {
    label: String,
    hash: H256,
    bytes: Vec<u8>,
}

impl SignedTx {
    /// Its hash (what [`Subtensor::find_included`] looks for).
    pub fn hash(&self) -> H256 {
        self.hash
    }

    /// `Pallet.call`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// A submitted transaction, not yet seen in a block.
pub struct Pending {
    label: String,
    url: String,
    inclusion: Duration,
    progress: subxt::tx::TransactionProgress<
        PolkadotConfig,
        subxt::client::OnlineClientAtBlockImpl<PolkadotConfig>,
    >,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("call", &self.label)
            .field("url", &self.url)
            .finish()
    }
}

/// The axon a hotkey serves on a subnet, as stored in `SubtensorModule::Axons`.
#[derive(Debug, Clone, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
pub(crate) struct RawAxon {
    block: u64,
    version: u32,
    ip: u128,
    port: u16,
    ip_type: u8,
    protocol: u8,
}

impl RawAxon {
    /// The axon, or `None` for the map's default value (never served).
    pub(crate) fn into_info(self, what: impl FnOnce() -> String) -> SubtensorResult<Option<AxonInfo>> {
        let raw = self;
        if raw.block == 0 && raw.ip == 0 && raw.port == 0 {
            return Ok(None);
        }
        let ip = calls::ip_from_subtensor(raw.ip, raw.ip_type).ok_or_else(|| SubtensorError::Decode {
            what: what(),
            reason: format!("ip {} with ip_type {}", raw.ip, raw.ip_type),
        })?;
        Ok(Some(AxonInfo {
            block: raw.block,
            version: raw.version,
            ip,
            port: raw.port,
            ip_type: raw.ip_type,
            protocol: raw.protocol,
        }))
    }
}

#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountData {
    free: u64,
}

#[derive(Debug, subxt::ext::scale_decode::DecodeAsType)]
#[decode_as_type(crate_path = "subxt::ext::scale_decode")]
struct AccountInfo {
    data: AccountData,
}

impl Subtensor {
    /// Connects to `url` (`ws://…` or `wss://…`) with the default [`Timeouts`].
    pub async fn connect(url: &str) -> SubtensorResult<Subtensor> {
        Subtensor::connect_with(url, Timeouts::default()).await
    }

    /// Connects to `url` with the given bounds (`wss://` verified against the system's roots).
    pub async fn connect_with(url: &str, timeouts: Timeouts) -> SubtensorResult<Subtensor> {
        Subtensor::connect_with_tls(url, timeouts, &ganglion_tls::ClientTls::system()).await
    }

    /// Connects to `url` with the given bounds; a `wss://` node is verified against the
    /// system's roots and `tls`'s extra ones (`--tls.ca_file`).
    pub async fn connect_with_tls(url: &str, timeouts: Timeouts, tls: &ganglion_tls::ClientTls) -> SubtensorResult<Subtensor> {
        let connect = async {
            let failed = |reason: String| SubtensorError::Connect { url: url.to_string(), reason };
            let rpc = if url.starts_with("wss://") && tls.extra_roots() > 0 {
                let config = tls.rustls_config().map_err(|e| failed(e.to_string()))?;
                let client = jsonrpsee::ws_client::WsClientBuilder::new()
                    .with_custom_cert_store(config)
                    .build(url)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                subxt::rpcs::RpcClient::new(client)
            } else {
                subxt::rpcs::RpcClient::from_insecure_url(url).await.map_err(|e| failed(e.to_string()))?
            };
            let api = OnlineClient::<PolkadotConfig>::from_rpc_client(rpc.clone())
                .await
                .map_err(|e| SubtensorError::Connect {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
            Ok::<_, SubtensorError>((rpc, api))
        };
        let (rpc, api) = tokio::time::timeout(timeouts.connect, connect)
            .await
            .map_err(|_| SubtensorError::Timeout {
                url: url.to_string(),
                what: "the connection".into(),
                after: timeouts.connect,
            })??;
        let client = Subtensor {
            url: url.to_string(),
            rpc,
            api,
            timeouts,
        };
        // Read the runtime's metadata now, so that a node that is not a subtensor fails here.
        let metadata = client.metadata().await?;
        if metadata.pallet_by_name(SUBTENSOR).is_none() {
            return Err(SubtensorError::Metadata {
                url: url.to_string(),
                what: format!("pallet {SUBTENSOR}"),
            });
        }
        Ok(client)
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bounds this client waits within.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The node's chain name (`system_chain`).
    pub async fn chain_name(&self) -> SubtensorResult<String> {
        self.bounded(
            "the chain name",
            self.rpc.request::<String>("system_chain", subxt::rpcs::rpc_params![]),
        )
        .await
    }

    /// The genesis hash every transaction signs over.
    pub fn genesis_hash(&self) -> H256 {
        self.api.genesis_hash()
    }


    pub(crate) async fn bounded<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> SubtensorResult<T> {
        match tokio::time::timeout(self.timeouts.request, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SubtensorError::Rpc {
                url: self.url.clone(),
                what: what.to_string(),
                reason: e.to_string(),
            }),
            Err(_) => Err(SubtensorError::Timeout {
                url: self.url.clone(),
                what: what.to_string(),
                after: self.timeouts.request,
            }),
        }
    }

    pub(crate) async fn at_head(&self) -> SubtensorResult<subxt::client::OnlineClientAtBlock<PolkadotConfig>> {
        self.bounded("the current block", self.api.at_current_block())
            .await
    }

    /// The runtime's metadata at the current block.
    pub async fn metadata(&self) -> SubtensorResult<ArcMetadata> {
        Ok(self.at_head().await?.metadata())
    }

    /// The runtime's `spec_version` at the current block.
    pub async fn spec_version(&self) -> SubtensorResult<u32> {
        Ok(self.at_head().await?.spec_version())
    }

    /// The number of the current (finalized) block.
    pub async fn block_number(&self) -> SubtensorResult<u64> {
        Ok(self.at_head().await?.block_number())
    }

    async fn fetch<K, V>(&self, pallet: &str, entry: &str, keys: K) -> SubtensorResult<Option<V>>
    where
        K: subxt::ext::frame_decode::storage::IntoEncodableValues
            + subxt::ext::frame_decode::storage::IntoDecodableValues,
        V: subxt::ext::scale_decode::DecodeAsType,
    {
        let at = self.at_head().await?;
        let what = format!("storage {pallet}::{entry}");
        let addr = subxt::dynamic::storage::<K, V>(pallet, entry);
        let value = self
            .bounded(&what, at.storage().try_fetch(addr, keys))
            .await?;
        match value {
            None => Ok(None),
            Some(v) => v.decode().map(Some).map_err(|e| SubtensorError::Decode {
                what,
                reason: e.to_string(),
            }),
        }
    }

    /// Free balance of an account, in rao (`System::Account`).
    pub async fn free_balance(&self, account: &PublicKey) -> SubtensorResult<u64> {
        let info: Option<AccountInfo> = self
            .fetch("System", "Account", (account_id(account),))
            .await?;
        Ok(info.map_or(0, |i| i.data.free))
    }

    /// Whether subnet `netuid` exists (`SubtensorModule::NetworksAdded`).
    pub async fn network_exists(&self, netuid: u16) -> SubtensorResult<bool> {
        Ok(self
            .fetch::<_, bool>(SUBTENSOR, "NetworksAdded", (netuid,))
            .await?
            .unwrap_or(false))
    }

    /// The number of subnets (`SubtensorModule::TotalNetworks`).
    pub async fn total_networks(&self) -> SubtensorResult<u16> {
        Ok(self
            .fetch::<_, u16>(SUBTENSOR, "TotalNetworks", ())
            .await?
            .unwrap_or(0))
    }

    /// The number of uids on subnet `netuid` (`SubtensorModule::SubnetworkN`).
    pub async fn subnetwork_n(&self, netuid: u16) -> SubtensorResult<u16> {
        Ok(self
            .fetch::<_, u16>(SUBTENSOR, "SubnetworkN", (netuid,))
            .await?
            .unwrap_or(0))
    }

    /// The uid of `hotkey` on subnet `netuid` (`SubtensorModule::Uids`), `None` if it has none.
    pub async fn uid(&self, netuid: u16, hotkey: &PublicKey) -> SubtensorResult<Option<u16>> {
        self.fetch(SUBTENSOR, "Uids", (netuid, account_id(hotkey)))
            .await
    }

    /// The hotkey holding `uid` on subnet `netuid` (`SubtensorModule::Keys`), `None` for a
    /// uid at or above the subnet's `SubnetworkN` (the map's default is a placeholder key).
    pub async fn hotkey(&self, netuid: u16, uid: u16) -> SubtensorResult<Option<PublicKey>> {
        if uid >= self.subnetwork_n(netuid).await? {
            return Ok(None);
        }
        let key: Option<AccountId32> = self.fetch(SUBTENSOR, "Keys", (netuid, uid)).await?;
        Ok(key.map(|k| PublicKey::from_bytes(k.0)))
    }

    /// The axon `hotkey` serves on subnet `netuid` (`SubtensorModule::Axons`), `None` if it
    /// never served one.
    pub async fn axon(&self, netuid: u16, hotkey: &PublicKey) -> SubtensorResult<Option<AxonInfo>> {
        let raw: Option<RawAxon> = self
            .fetch(SUBTENSOR, "Axons", (netuid, account_id(hotkey)))
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        raw.into_info(|| format!("storage {SUBTENSOR}::Axons ({netuid}, {hotkey})"))
    }

    /// The weights `uid` set on subnet `netuid` (`SubtensorModule::Weights`), as
    /// `(destination uid, u16 weight)` pairs; empty if none.
    pub async fn weights(&self, netuid: u16, uid: u16) -> SubtensorResult<Vec<(u16, u16)>> {
        Ok(self
            .fetch::<_, Vec<(u16, u16)>>(SUBTENSOR, "Weights", (netuid, uid))
            .await?
            .unwrap_or_default())
    }

    /// Signs `call` with `signer` (the account's next nonce from the node, mortal for
    /// [`MORTAL_BLOCKS`]) without submitting it. The same [`SignedTx`] can be submitted
    /// again after a lost answer ([`Subtensor::submit_signed`]): it carries one nonce, so it
    /// executes at most once, and dies with its era if it never got in.
    pub async fn sign<S: Signer<PolkadotConfig>>(&self, call: &Call, signer: &S) -> SubtensorResult<SignedTx> {
        let label = call_label(call);
        let at = self.at_head().await?;
        let mut txs = at.transactions();
        let params = subxt::config::DefaultExtrinsicParamsBuilder::<PolkadotConfig>::new().mortal(MORTAL_BLOCKS).build();
        let sign = async {
            txs.create_signed(call, signer, params).await.map_err(|e| SubtensorError::Encode {
                call: label.clone(),
                reason: e.to_string(),
            })
        };
        let signed = tokio::time::timeout(self.timeouts.request, sign).await.map_err(|_| SubtensorError::Timeout {
            url: self.url.clone(),
            what: format!("signing {label}"),
            after: self.timeouts.request,
        })??;
        Ok(SignedTx { label: inner_label(call), hash: signed.hash(), bytes: signed.into_encoded() })
    }

    /// Submits a signed transaction; the returned [`Pending`] is waited on with
    /// [`Pending::wait`]. A transaction the node refuses outright (nonce, signature, fees,
    /// a signed extension's check, already in the pool) is [`SubtensorError::Invalid`] here.
    pub async fn submit_signed(&self, tx: &SignedTx) -> SubtensorResult<Pending> {
        let at = self.at_head().await?;
        let submittable = at.transactions().from_bytes(tx.bytes.clone());
        let submit = async {
            submittable.submit_and_watch().await.map_err(|e| SubtensorError::Invalid {
                call: tx.label.clone(),
                reason: e.to_string(),
            })
        };
        let progress = tokio::time::timeout(self.timeouts.request, submit).await.map_err(|_| SubtensorError::Timeout {
            url: self.url.clone(),
            what: format!("the submission of {}", tx.label),
            after: self.timeouts.request,
        })??;
        Ok(Pending {
            label: tx.label.clone(),
            url: self.url.clone(),
            inclusion: self.timeouts.inclusion,
            progress,
        })
    }

    /// Signs `call` with `signer` and submits it ([`Subtensor::sign`], then
    /// [`Subtensor::submit_signed`]).
    pub async fn submit<S: Signer<PolkadotConfig>>(&self, call: &Call, signer: &S) -> SubtensorResult<Pending> {
        let tx = self.sign(call, signer).await?;
        self.submit_signed(&tx).await
    }

    /// Looks for `tx` in the last `blocks` finalized blocks: its block and events (a failed
    /// dispatch is [`SubtensorError::Dispatch`], as from [`Pending::wait`]), or `None`.
    pub async fn find_included(&self, tx: &SignedTx, blocks: u64) -> SubtensorResult<Option<Included>> {
        let top = self.block_number().await?;
        for number in (top.saturating_sub(blocks)..=top).rev() {
            let at = self.bounded("a block", self.api.at_block(number)).await?;
            let extrinsics = self.bounded("a block's extrinsics", at.extrinsics().fetch()).await?;
            for ext in extrinsics.iter() {
                let Ok(ext) = ext else { continue };
                if ext.hash() != tx.hash {
                    continue;
                }
                let events = self.bounded("a transaction's events", ext.events()).await?;
                let events = runtime_events(&tx.label, events.iter())?;
                let metadata = at.metadata();
                check_dispatch(&tx.label, &events, &metadata)?;
                return Ok(Some(Included { block_hash: at.block_hash(), block_number: number, extrinsic_hash: tx.hash, events }));
            }
        }
        Ok(None)
    }

    /// [`Subtensor::submit`], then [`Pending::wait`].
    pub async fn execute<S: Signer<PolkadotConfig>>(
        &self,
        call: &Call,
        signer: &S,
    ) -> SubtensorResult<Included> {
        self.submit(call, signer).await?.wait().await
    }

    /// Builds a call from the node's current metadata (for [`Subtensor::submit`]).
    pub async fn build<F>(&self, make: F) -> SubtensorResult<Call>
    where
        F: FnOnce(&Metadata) -> SubtensorResult<Call>,
    {
        let metadata = self.metadata().await?;
        make(&metadata)
    }

    // The transactions below are submitted and handed back [`Pending`]: the caller waits
    // ([`Pending::wait`]) once a block can contain them — at once on a node that builds its
    // own blocks, after `dev_newBlock` under chopsticks' manual block mode.

    /// `Sudo.sudo(call)` signed by the sudo key; a refusal of the wrapped call is a
    /// [`SubtensorError::Dispatch`] too.
    pub async fn sudo<S: Signer<PolkadotConfig>>(
        &self,
        sudo_key: &S,
        call: Call,
    ) -> SubtensorResult<Pending> {
        let call = self.build(|m| calls::sudo(m, call)).await?;
        self.submit(&call, sudo_key).await
    }

    /// `Sudo.sudo(AdminUtils.<setter>(args…))` signed by the sudo key.
    pub async fn sudo_admin<S: Signer<PolkadotConfig>>(
        &self,
        sudo_key: &S,
        setter: &str,
        args: Vec<(&str, Value)>,
    ) -> SubtensorResult<Pending> {
        let call = self.build(|m| calls::admin(m, setter, args)).await?;
        self.sudo(sudo_key, call).await
    }

    /// `SubtensorModule.register_network` (its shape from the metadata) signed by the
    /// coldkey; [`Included::network_added`] gives the new netuid.
    pub async fn register_network<S: Signer<PolkadotConfig>>(
        &self,
        coldkey: &S,
        hotkey: &PublicKey,
    ) -> SubtensorResult<Pending> {
        let call = self.build(|m| calls::register_network(m, hotkey)).await?;
        self.submit(&call, coldkey).await
    }

    /// `SubtensorModule.burned_register(netuid, hotkey)` signed (and paid) by the coldkey.
    pub async fn burned_register<S: Signer<PolkadotConfig>>(
        &self,
        coldkey: &S,
        netuid: u16,
        hotkey: &PublicKey,
    ) -> SubtensorResult<Pending> {
        let call = self
            .build(|m| calls::burned_register(m, netuid, hotkey))
            .await?;
        self.submit(&call, coldkey).await
    }

    /// `SubtensorModule.add_stake` (with `netuid` where the runtime takes it) signed by the
    /// coldkey.
    pub async fn add_stake<S: Signer<PolkadotConfig>>(
        &self,
        coldkey: &S,
        hotkey: &PublicKey,
        netuid: u16,
        amount_rao: u64,
    ) -> SubtensorResult<Pending> {
        let call = self
            .build(|m| calls::add_stake(m, hotkey, netuid, amount_rao))
            .await?;
        self.submit(&call, coldkey).await
    }

    /// `SubtensorModule.serve_axon` signed by the hotkey.
    pub async fn serve_axon<S: Signer<PolkadotConfig>>(
        &self,
        hotkey: &S,
        netuid: u16,
        axon: &AxonEndpoint,
    ) -> SubtensorResult<Pending> {
        let call = self.build(|m| calls::serve_axon(m, netuid, axon)).await?;
        self.submit(&call, hotkey).await
    }

    /// `SubtensorModule.set_weights(netuid, uids, weights, version_key)` signed by the hotkey.
    pub async fn set_weights<S: Signer<PolkadotConfig>>(
        &self,
        hotkey: &S,
        netuid: u16,
        uids: &[u16],
        weights: &[u16],
        version_key: u64,
    ) -> SubtensorResult<Pending> {
        let call = self
            .build(|m| calls::set_weights(m, netuid, uids, weights, version_key))
            .await?;
        self.submit(&call, hotkey).await
    }
}

/// `Pallet.call`, or for `Sudo.sudo(inner)` the inner call's `Pallet.call`.
fn inner_label(call: &Call) -> String {
    if call.pallet_name() == "Sudo"
        && let Some(inner) = call.call_data().values().next()
        && let ValueDef::Variant(pallet) = &inner.value
        && let Some(Value {
            value: ValueDef::Variant(c),
            ..
        }) = pallet.values.values().next()
    {
        return format!("Sudo.{}({}.{})", call.call_name(), pallet.name, c.name);
    }
    call_label(call)
}

impl Pending {
    /// Waits (bounded) until the transaction is in a block, then reads its events: a failed
    /// dispatch is [`SubtensorError::Dispatch`].
    pub async fn wait(mut self) -> SubtensorResult<Included> {
        let label = self.label.clone();
        let inclusion = self.inclusion;
        let in_block = async {
            while let Some(status) = self.progress.next().await {
                let status = status.map_err(|e| SubtensorError::Rpc {
                    url: self.url.clone(),
                    what: format!("the status of {label}"),
                    reason: e.to_string(),
                })?;
                match status {
                    TransactionStatus::InBestBlock(b) | TransactionStatus::InFinalizedBlock(b) => {
                        return Ok(b);
                    }
                    TransactionStatus::Invalid { message }
                    | TransactionStatus::Dropped { message }
                    | TransactionStatus::Error { message } => {
                        return Err(SubtensorError::Invalid {
                            call: label.clone(),
                            reason: message,
                        });
                    }
                    TransactionStatus::Validated
                    | TransactionStatus::Broadcasted
                    | TransactionStatus::NoLongerInBestBlock => {}
                }
            }
            Err(SubtensorError::Rpc {
                url: self.url.clone(),
                what: format!("the status of {label}"),
                reason: "the node ended the status stream before inclusion".into(),
            })
        };
        let block = tokio::time::timeout(inclusion, in_block)
            .await
            .map_err(|_| SubtensorError::NotIncluded {
                call: label.clone(),
                after: inclusion,
            })??;
        let read = async {
            let events = block
                .fetch_events()
                .await
                .map_err(|e| SubtensorError::Rpc {
                    url: self.url.clone(),
                    what: format!("the events of {label}"),
                    reason: e.to_string(),
                })?;
            let at = block.at().await.map_err(|e| SubtensorError::Rpc {
                url: self.url.clone(),
                what: format!("the block of {label}"),
                reason: e.to_string(),
            })?;
            let metadata = at.metadata();
            let number = at.block_number();
            let out = runtime_events(&label, events.iter())?;
            Ok::<_, SubtensorError>((out, metadata, number))
        };
        let (events, metadata, block_number) = tokio::time::timeout(inclusion, read).await.map_err(|_| {
            SubtensorError::Timeout {
                url: self.url.clone(),
                what: format!("the events of {label}"),
                after: inclusion,
            }
        })??;
        check_dispatch(&label, &events, &metadata)?;
        Ok(Included {
            block_hash: block.block_hash(),
            block_number,
            extrinsic_hash: block.extrinsic_hash(),
            events,
        })
    }
}

/// The events of one transaction, decoded through the metadata.
fn runtime_events<'a, E>(label: &str, events: impl Iterator<Item = Result<subxt::events::Event<'a, PolkadotConfig>, E>>) -> SubtensorResult<Vec<RuntimeEvent>>
where
    E: std::fmt::Display,
{
    let mut out = Vec::new();
    for ev in events {
        let ev = ev.map_err(|e| SubtensorError::Decode {
            what: format!("an event of {label}"),
            reason: e.to_string(),
        })?;
        let fields = ev.decode_fields_unchecked_as::<Composite<()>>().map_err(|e| SubtensorError::Decode {
            what: format!("event {}::{} of {label}", ev.pallet_name(), ev.event_name()),
            reason: e.to_string(),
        })?;
        out.push(RuntimeEvent {
            pallet: ev.pallet_name().to_string(),
            name: ev.event_name().to_string(),
            fields,
        });
    }
    Ok(out)
}

/// A failed dispatch among a transaction's events — of the call itself, or of the call a
/// `Sudo.sudo` wraps — as [`SubtensorError::Dispatch`].
fn check_dispatch(label: &str, events: &[RuntimeEvent], metadata: &Metadata) -> SubtensorResult<()> {
    for ev in events {
        let failed = match (ev.pallet.as_str(), ev.name.as_str()) {
            ("System", "ExtrinsicFailed") => ev.fields.values().next(),
            // Sudo.sudo succeeds as a transaction; the wrapped call's result is in `Sudid`.
            ("Sudo", "Sudid") => match ev.fields.values().next().map(|v| &v.value) {
                Some(ValueDef::Variant(r)) if r.name == "Err" => r.values.values().next(),
                _ => None,
            },
            _ => None,
        };
        if let Some(error) = failed {
            return Err(dispatch_error(label, error, metadata));
        }
    }
    Ok(())
}

fn as_u128(value: &Value<()>) -> Option<u128> {
    match &value.value {
        ValueDef::Primitive(p) => p.as_u128(),
        // Newtypes (`NetUid(u16)`) and single-field structs.
        ValueDef::Composite(c) if c.len() == 1 => c.values().next().and_then(as_u128),
        _ => None,
    }
}

/// A `DispatchError` value decoded through the metadata: `Module { index, error }` becomes
/// the pallet's error variant (its name and docs), anything else its variant name.
fn dispatch_error(label: &str, error: &Value<()>, metadata: &Metadata) -> SubtensorError {
    let ValueDef::Variant(variant) = &error.value else {
        return SubtensorError::Dispatch {
            call: label.to_string(),
            pallet: None,
            name: format!("{error}"),
            hint: hint("", &[]),
        };
    };
    if variant.name == "Module" {
        // `Module(ModuleError { index, error })`: look through the one-field tuple variant.
        let module = match variant.values.values().next().map(|v| &v.value) {
            Some(ValueDef::Composite(inner)) if variant.values.len() == 1 => inner,
            _ => &variant.values,
        };
        let field = |name: &str, pos: usize| match module {
            Composite::Named(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            Composite::Unnamed(values) => values.get(pos),
        };
        let index = field("index", 0)
            .and_then(as_u128)
            .and_then(|i| u8::try_from(i).ok());
        // `error` is `[u8; 4]` in current runtimes (first byte: the variant), `u8` in old ones.
        let error_index = field("error", 1).and_then(|v| match &v.value {
            ValueDef::Composite(bytes) => bytes.values().next().and_then(as_u128),
            _ => as_u128(v),
        });
        if let (Some(index), Some(error_index)) =
            (index, error_index.and_then(|e| u8::try_from(e).ok()))
            && let Some(pallet) = metadata.pallet_by_error_index(index)
            && let Some(v) = pallet.error_variant_by_index(error_index)
        {
            return SubtensorError::Dispatch {
                call: label.to_string(),
                pallet: Some(pallet.name().to_string()),
                name: v.name.clone(),
                hint: hint(&v.name, &v.docs),
            };
        }
        return SubtensorError::Dispatch {
            call: label.to_string(),
            pallet: None,
            name: format!("{error}"),
            hint: "the runtime's metadata does not name this module error; check that client and node agree on the runtime".into(),
        };
    }
    // `BadOrigin`, `Token(FundsUnavailable)`, `Arithmetic(Overflow)`, …
    let name = match variant.values.values().next().map(|v| &v.value) {
        Some(ValueDef::Variant(inner)) => format!("{}({})", variant.name, inner.name),
        _ => variant.name.clone(),
    };
    SubtensorError::Dispatch {
        call: label.to_string(),
        pallet: None,
        hint: hint(&variant.name, &[]),
        name,
    }
}
