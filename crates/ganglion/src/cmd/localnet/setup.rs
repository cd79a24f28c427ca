//! Chain-side set-up of `ganglion localnet`: wallets, funds, subnets, registrations, stake.
//! Everything goes through the `Chain` trait, exactly as a user's CLI calls would.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ganglion_chain::{Chain, ChainError, HyperparamUpdate, RAO_PER_TAO};
use ganglion_core::keys::Keypair;
use ganglion_core::wallet::{Protection, Wallet};

/// What a neuron does in the localnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Sets weights.
    Validator,
    /// An honest inference miner on the built-in engine.
    Honest,
    /// A red-team strategy (`--adversaries`): a `ganglion-redteam inference --strategy …`
    /// process, never this binary.
    Adversary(&'static str),
    /// A compute miner at its full hash rate.
    ComputeFast,
    /// A compute miner with a capped hash rate.
    ComputeSlow,
    /// A model-evaluation miner (`--model-eval`), by its part in the cast: base, trained,
    /// degraded, copier, oversized, mismatch (`ganglion miner model publish` + `serve`).
    Model(&'static str),
}

impl Role {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Role::Validator => "validator",
            Role::Honest => "honest",
            Role::Adversary(strategy) => strategy,
            Role::ComputeFast => "fast",
            Role::ComputeSlow => "slow",
            Role::Model(part) => part,
        }
    }
}

/// One wallet of the localnet (its own coldkey and a `default` hotkey) and its registration.
#[derive(Debug, Clone)]
pub(crate) struct Neuron {
    /// Wallet name, also the child process name.
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) netuid: u16,
    /// The model an inference miner serves (the validator's models are all of `--models`).
    pub(crate) model: Option<String>,
    pub(crate) coldkey: Keypair,
    pub(crate) hotkey: Keypair,
    /// Uid once registered.
    pub(crate) uid: Option<u16>,
}

/// Stake each validator gets (enough for a permit and the miners' stake checks).
const VALIDATOR_STAKE: u64 = 1_000 * RAO_PER_TAO;
/// Faucet credit per coldkey.
const FUNDS: u64 = 5_000 * RAO_PER_TAO;

/// Creates the wallet `name` under `wallets` with fresh, unencrypted keys (a local demo: the
/// keys fund nothing real) and returns its keys.
pub(crate) fn create_wallet(wallets: &Path, name: &str) -> anyhow::Result<(Keypair, Keypair)> {
    let wallet = Wallet::new(wallets, name, "default")?;
    let coldkey = Keypair::generate(12)?;
    let hotkey = Keypair::generate(12)?;
    // Writes coldkeypub.txt too.
    wallet.write_coldkey(&coldkey, Protection::Plain, false)?;
    wallet.write_hotkey(&hotkey, Protection::Plain, false)?;
    Ok((coldkey, hotkey))
}

/// Waits until the chain answers, for at most `limit`.
pub(crate) async fn wait_for_chain(chain: &dyn Chain, limit: Duration) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match chain.info().await {
            Ok(info) => return Ok(info.block),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(err).context(format!("the local chain did not answer within {limit:?}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Creates a subnet owned by `owner` with hyperparameters suited to a fast local run.
pub(crate) async fn create_subnet(chain: &dyn Chain, owner: &(Keypair, Keypair), tempo: u16) -> anyhow::Result<u16> {
    let receipt = chain.register_network(&owner.0, &owner.1.public(), None).await.context("creating a subnet")?;
    let netuid = receipt.netuid.context("the chain did not say which netuid it created")?;
    let update = HyperparamUpdate {
        tempo: Some(tempo),
        // Validators set weights once per epoch; let them do so from their first epoch.
        weights_rate_limit: Some(u64::from(tempo / 2)),
        max_registrations_per_block: Some(16),
        serving_rate_limit: Some(0),
        ..HyperparamUpdate::default()
    };
    chain.set_hyperparams(&owner.0, netuid, update).await.with_context(|| format!("tuning subnet {netuid}"))?;
    Ok(netuid)
}

/// Funds, registers and (for validators) stakes every neuron; fills in their uids.
pub(crate) async fn register_all(chain: &Arc<dyn Chain>, neurons: &mut [Neuron]) -> anyhow::Result<()> {
    for neuron in neurons.iter() {
        chain.faucet(&neuron.coldkey, FUNDS).await.with_context(|| format!("funding {}", neuron.name))?;
    }
    for neuron in neurons.iter_mut() {
        let hotkey = neuron.hotkey.public();
        let receipt = retry_next_block(chain.as_ref(), || chain.register(&neuron.coldkey, neuron.netuid, &hotkey))
            .await
            .with_context(|| format!("registering {} in subnet {}", neuron.name, neuron.netuid))?;
        neuron.uid = receipt.uid;
        if neuron.role == Role::Validator {
            chain
                .add_stake(&neuron.coldkey, neuron.netuid, &neuron.hotkey.public(), VALIDATOR_STAKE)
                .await
                .with_context(|| format!("staking on {}", neuron.name))?;
        }
    }
    Ok(())
}

/// Runs `submit`, retrying once per block (for up to 10 blocks) while the chain refuses it
/// for a reason that the next block clears.
async fn retry_next_block<F, Fut>(chain: &dyn Chain, mut submit: F) -> anyhow::Result<ganglion_chain::TxReceipt>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<ganglion_chain::TxReceipt, ChainError>>,
{
    let block_time = Duration::from_millis(chain.info().await?.block_time_ms.max(50));
    for _ in 0..10 {
        match submit().await {
            Err(ChainError::Rejected { name, .. }) if name == "TooManyRegistrationsThisBlock" => {
                tokio::time::sleep(block_time).await;
            }
            other => return other.map_err(Into::into),
        }
    }
    bail!("the chain kept refusing registrations for 10 blocks")
}
