//! The chain's state machine: accounts, subnets, neurons; transaction application with the
//! original's checks; and block finalisation (coinbase + epochs through `ganglion_yuma`).
//!
//! Pure and synchronous: no I/O, no clock. [`crate::node`] owns a [`State`], feeds it
//! transactions and blocks, and persists it through [`crate::store`].
//!
//! # Simplified coinbase (documented difference from subtensor)
//! There is no dTAO (no alpha pools, swap or root subnet). Each block mints
//! [`ChainConfig::block_emission`] rao, split evenly across subnets. Of a subnet's share the
//! owner cut (`SubnetOwnerCut` = 11796/65535 ≈ 18%) is credited to the owner coldkey's free
//! balance at once; the rest accumulates as the subnet's pending emission. With no root
//! stake, root_proportion is 0, so the pending pot is half server and half validator, which
//! is the 41/41/18 split of spec/chain.md §1.3. At the epoch the pot goes to
//! `ganglion_yuma::run_epoch`; each miner's server emission is staked on its hotkey for its
//! own coldkey; each validator's emission is shared by the hotkey's stakers pro rata (no
//! delegate take). Stake is TAO held per (subnet, hotkey, coldkey); a pruned neuron's stake
//! is returned to its stakers' balances.
//!
//! Epochs run when `block - last_epoch_block >= tempo` (subtensor ≥ v3.4.8). Commit-reveal is
//! subtensor's hash-based one (v1; see `ganglion_chain::commit_reveal` for the rules), with
//! the epoch of a commit counted in epochs this subnet ran ([`Subnet::epoch_index`]); pending
//! commits live in [`Subnet::weight_commits`], so they persist with the subnet. Subnets
//! default to it off.
//!
//! Every transaction handler runs all its checks before it mutates anything, so a rejected
//! transaction leaves the state unchanged.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use ganglion_core::keys::PublicKey;
use ganglion_yuma::weights::{SetWeightsContext, check_set_weights};
use ganglion_yuma::{EpochInput, EpochParams, run_epoch};
use serde::{Deserialize, Serialize};

use ganglion_chain::api::{AccountId, AccountInfo, AxonInfo, Commitment, NeuronInfo, RAO_PER_TAO, SubnetInfo};
use ganglion_chain::commit_reveal::{MAX_PENDING_COMMITS, WeightCommit, hex32, weight_hash};
use ganglion_chain::error::TxError;
use ganglion_chain::hyperparams::Hyperparams;
use ganglion_chain::tx::{Call, SignedTransaction};

/// Largest commitment in bytes (defined in the API crate, which documents it).
pub use ganglion_chain::api::MAX_COMMITMENT_BYTES;
/// Minimum `add_stake` amount in rao (subtensor's `DefaultMinStake`).
pub const MIN_STAKE: u64 = 500_000;
/// Most subnets the chain holds (netuid 0 is reserved for root).
pub const MAX_SUBNETS: usize = 128;
/// Owner cut as a u16 proportion (`SubnetOwnerCut` = 11796 ≈ 18%).
pub const SUBNET_OWNER_CUT: u64 = 11_796;
/// Largest single faucet credit: 10 000 TAO.
pub const FAUCET_MAX: u64 = 10_000 * RAO_PER_TAO;
/// Burn of a new subnet: 1 TAO.
pub const INITIAL_BURN: u64 = RAO_PER_TAO;

/// Node-wide settings that shape the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainConfig {
    /// Chain id, part of the genesis hash.
    pub chain_id: String,
    /// Accept `faucet` transactions.
    pub faucet: bool,
    /// Accept loopback axon addresses (local chain).
    pub allow_loopback: bool,
    /// Tempo of new subnets.
    pub default_tempo: u16,
    /// Rao minted per block across all subnets.
    pub block_emission: u64,
    /// Rao burned to create a subnet.
    pub network_lock_cost: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            chain_id: "ganglion-local".into(),
            faucet: true,
            allow_loopback: true,
            default_tempo: 360,
            block_emission: RAO_PER_TAO,
            network_lock_cost: 1_000 * RAO_PER_TAO,
        }
    }
}

/// An account's balance and nonce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Free balance, rao.
    pub balance: u64,
    /// Next nonce.
    pub nonce: u64,
}

/// One registered neuron.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neuron {
    /// Hotkey.
    pub hotkey: AccountId,
    /// Owning coldkey.
    pub coldkey: AccountId,
    /// Stake on this hotkey in this subnet, per staking coldkey.
    pub stakes: BTreeMap<AccountId, u64>,
    /// `Active` from the last epoch.
    pub active: bool,
    /// `ValidatorPermit` from the last epoch.
    pub validator_permit: bool,
    /// `ValidatorTrust`.
    pub validator_trust: u16,
    /// `Consensus`.
    pub consensus: u16,
    /// `Incentive`.
    pub incentive: u16,
    /// `Dividends`.
    pub dividends: u16,
    /// `Emission` of the last epoch, rao.
    pub emission: u64,
    /// `LastUpdate`.
    pub last_update: u64,
    /// `BlockAtRegistration`.
    pub block_at_registration: u64,
    /// Axon.
    pub axon: Option<AxonInfo>,
    /// Stored weights row `(uid, u16)`.
    pub weights: Vec<(u16, u16)>,
    /// Stored bonds row `(uid, u16)`.
    pub bonds: Vec<(u16, u16)>,
}

impl Neuron {
    fn new(hotkey: AccountId, coldkey: AccountId, block: u64) -> Neuron {
        Neuron {
            hotkey,
            coldkey,
            stakes: BTreeMap::new(),
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
            weights: Vec::new(),
            bonds: Vec::new(),
        }
    }

    /// Total stake, rao (saturating).
    pub fn total_stake(&self) -> u64 {
        self.stakes.values().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// One subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Netuid.
    pub netuid: u16,
    /// Owner coldkey.
    pub owner_coldkey: AccountId,
    /// Owner hotkey.
    pub owner_hotkey: AccountId,
    /// Hyperparameters.
    pub params: Hyperparams,
    /// Neurons by uid.
    pub neurons: Vec<Neuron>,
    /// Current burn, rao.
    pub burn: u64,
    /// Registrations counted in `registrations_block`.
    pub registrations_this_block: u16,
    /// Block the registration counter refers to.
    pub registrations_block: u64,
    /// Block of the last epoch (creation block before the first).
    pub last_epoch_block: u64,
    /// `LastMechansimStepBlock` (0 before the first epoch).
    pub last_step_block: u64,
    /// Epochs run.
    pub epoch_index: u64,
    /// Undistributed emission (server + validator pots), rao.
    pub pending_emission: u64,
    /// Creation block.
    pub registered_at: u64,
    /// State revision of the last change to any neuron (see [`State::revision`]).
    pub changed_at: u64,
    /// Commitments by hotkey.
    pub commitments: BTreeMap<AccountId, Commitment>,
    /// Unrevealed weight commits by hotkey, oldest first (subtensor's `WeightCommits`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weight_commits: BTreeMap<AccountId, VecDeque<PendingCommit>>,
}

/// A weight commit as the state stores it; its reveal epoch follows the subnet's current
/// `commit_reveal_period`, as on subtensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The committed hash.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    /// Block the commit was included in.
    pub commit_block: u64,
    /// [`Subnet::epoch_index`] when it was committed.
    pub commit_epoch: u64,
}

impl Subnet {
    /// Uid of a hotkey.
    pub fn uid_of(&self, hotkey: &AccountId) -> Option<u16> {
        self.neurons.iter().position(|n| &n.hotkey == hotkey).map(|i| i as u16)
    }

    fn owner_uid(&self) -> Option<u16> {
        self.uid_of(&self.owner_hotkey)
    }

    /// The uid a registration replaces when full: lowest emission, then earliest
    /// registration, then lowest uid; non-immune neurons first; the owner hotkey never.
    pub fn neuron_to_prune(&self, now: u64) -> Option<u16> {
        let immunity = u64::from(self.params.immunity_period);
        let key = |item: &&(usize, &Neuron)| (item.1.emission, item.1.block_at_registration, item.0);
        let candidates = self.neurons.iter().enumerate().filter(|(_, n)| n.hotkey != self.owner_hotkey);
        let (immune, mortal): (Vec<_>, Vec<_>) =
            candidates.partition(|(_, n)| now.saturating_sub(n.block_at_registration) < immunity);
        mortal.iter().min_by_key(key).or_else(|| immune.iter().min_by_key(key)).map(|(uid, _)| *uid as u16)
    }

    /// The epoch index in which a commit made in `commit_epoch` can be revealed.
    pub fn reveal_epoch(&self, commit_epoch: u64) -> u64 {
        commit_epoch.saturating_add(self.params.commit_reveal_period)
    }

    /// The blocks whose transactions see epoch index `epoch` (≥ the current one), as the
    /// schedule stands: `(first, last)`.
    pub fn epoch_blocks(&self, epoch: u64) -> (u64, u64) {
        let tempo = u64::from(self.params.tempo);
        let ahead = epoch.saturating_sub(self.epoch_index);
        let first = self.last_epoch_block.saturating_add(ahead.saturating_mul(tempo)).saturating_add(1);
        (first, first.saturating_add(tempo).saturating_sub(1))
    }

    /// The live (not expired) weight commits of `hotkey`, as the API shows them.
    pub fn weight_commit_infos(&self, hotkey: &AccountId) -> Vec<WeightCommit> {
        let Some(queue) = self.weight_commits.get(hotkey) else { return Vec::new() };
        queue
            .iter()
            .map(|c| {
                let reveal_epoch = self.reveal_epoch(c.commit_epoch);
                let (first_reveal_block, last_reveal_block) = self.epoch_blocks(reveal_epoch);
                WeightCommit { hash: c.hash, commit_block: c.commit_block, commit_epoch: c.commit_epoch, reveal_epoch, first_reveal_block, last_reveal_block }
            })
            .filter(|c| !c.expired(self.epoch_index))
            .collect()
    }

    /// How many commits at the front of `queue` have expired.
    fn expired_prefix(&self, queue: &VecDeque<PendingCommit>) -> usize {
        queue.iter().take_while(|c| self.epoch_index > self.reveal_epoch(c.commit_epoch)).count()
    }

    /// Per uid, the block of its oldest pending weight commit (`u64::MAX` if none): the
    /// epoch's commit-reveal mask.
    fn commit_blocks(&self) -> Vec<u64> {
        self.neurons
            .iter()
            .map(|n| self.weight_commits.get(&n.hotkey).and_then(|q| q.front()).map_or(u64::MAX, |c| c.commit_block))
            .collect()
    }

    /// Summary.
    pub fn info(&self, emission_per_block: u64) -> SubnetInfo {
        SubnetInfo {
            netuid: self.netuid,
            owner_coldkey: self.owner_coldkey.0,
            owner_hotkey: self.owner_hotkey.0,
            n: self.neurons.len() as u16,
            max_n: self.params.max_allowed_uids,
            tempo: self.params.tempo,
            burn: self.burn,
            last_epoch_block: self.last_step_block,
            epoch_index: self.epoch_index,
            emission_per_block,
            registered_at: self.registered_at,
        }
    }

    /// Neurons as the API shows them.
    pub fn neuron_infos(&self) -> Vec<NeuronInfo> {
        self.neurons
            .iter()
            .enumerate()
            .map(|(uid, n)| NeuronInfo {
                uid: uid as u16,
                hotkey: n.hotkey.0,
                coldkey: n.coldkey.0,
                stake: n.total_stake(),
                active: n.active,
                validator_permit: n.validator_permit,
                validator_trust: n.validator_trust,
                consensus: n.consensus,
                incentive: n.incentive,
                dividends: n.dividends,
                emission: n.emission,
                last_update: n.last_update,
                block_at_registration: n.block_at_registration,
                axon: n.axon.clone(),
            })
            .collect()
    }
}

/// What a successful transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Uid assigned by a registration.
    pub uid: Option<u16>,
    /// Netuid of a created subnet.
    pub netuid: Option<u16>,
}

/// The whole chain state. `block` is the last committed block; transactions apply to the
/// pending block `block + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Last committed block.
    pub block: u64,
    /// Hex hash of the last committed block.
    pub block_hash: String,
    /// Genesis hash.
    pub genesis: [u8; 32],
    /// Counts successful transactions and finalised blocks; subnets record the revision of
    /// their last change so a metagraph sync can tell "unchanged" within a block too.
    pub revision: u64,
    /// Accounts.
    pub accounts: BTreeMap<AccountId, Account>,
    /// Hotkey → owning coldkey.
    pub owners: BTreeMap<AccountId, AccountId>,
    /// Subnets by netuid.
    pub subnets: BTreeMap<u16, Subnet>,
    /// Accounts changed since the last commit.
    #[serde(skip)]
    pub dirty_accounts: BTreeSet<AccountId>,
    /// Owner entries changed since the last commit.
    #[serde(skip)]
    pub dirty_owners: BTreeSet<AccountId>,
}

fn checked_add(a: u64, b: u64) -> Result<u64, TxError> {
    a.checked_add(b).ok_or(TxError::Overflow)
}

impl State {
    /// An empty state at block 0 with `genesis`, funding `endowed` accounts.
    pub fn genesis(genesis: [u8; 32], endowed: &[(PublicKey, u64)]) -> State {
        let mut state = State {
            block: 0,
            block_hash: hex::encode(genesis),
            genesis,
            revision: 0,
            accounts: BTreeMap::new(),
            owners: BTreeMap::new(),
            subnets: BTreeMap::new(),
            dirty_accounts: BTreeSet::new(),
            dirty_owners: BTreeSet::new(),
        };
        for (key, amount) in endowed {
            state.account_mut(AccountId(*key)).balance = *amount;
        }
        state
    }

    /// The pending block transactions apply to.
    pub fn pending_block(&self) -> u64 {
        self.block + 1
    }

    /// Balance and nonce (zero for unknown accounts).
    pub fn account(&self, id: &PublicKey) -> AccountInfo {
        let a = self.accounts.get(&AccountId(*id)).copied().unwrap_or_default();
        AccountInfo { balance: a.balance, nonce: a.nonce }
    }

    fn account_mut(&mut self, id: AccountId) -> &mut Account {
        self.dirty_accounts.insert(id);
        self.accounts.entry(id).or_default()
    }

    fn balance(&self, id: &AccountId) -> u64 {
        self.accounts.get(id).map(|a| a.balance).unwrap_or(0)
    }

    /// Emission per block of each subnet.
    pub fn emission_per_subnet(&self, cfg: &ChainConfig) -> u64 {
        if self.subnets.is_empty() { 0 } else { cfg.block_emission / self.subnets.len() as u64 }
    }

    fn subnet(&self, netuid: u16) -> Result<&Subnet, TxError> {
        self.subnets.get(&netuid).ok_or(TxError::SubnetNotExists(netuid))
    }

    fn registered_uid(&self, netuid: u16, hotkey: &AccountId) -> Result<u16, TxError> {
        self.subnet(netuid)?
            .uid_of(hotkey)
            .ok_or_else(|| TxError::HotKeyNotRegisteredInSubNet(hotkey.0.to_ss58(), netuid))
    }

    /// Verify, check the nonce, apply. On error nothing changed.
    pub fn apply(&mut self, tx: &SignedTransaction, cfg: &ChainConfig) -> Result<Applied, TxError> {
        tx.verify(&self.genesis)?;
        let expected = self.accounts.get(&tx.signer).map(|a| a.nonce).unwrap_or(0);
        if tx.nonce < expected {
            return Err(TxError::Stale { got: tx.nonce, expected });
        }
        if tx.nonce > expected {
            return Err(TxError::Future { got: tx.nonce, expected });
        }
        let applied = self.apply_call(tx.signer, &tx.call, cfg)?;
        self.account_mut(tx.signer).nonce = expected + 1;
        self.revision += 1;
        Ok(applied)
    }

    fn apply_call(&mut self, signer: AccountId, call: &Call, cfg: &ChainConfig) -> Result<Applied, TxError> {
        let now = self.pending_block();
        match call {
            Call::RegisterNetwork { hotkey, netuid } => self.register_network(signer, *hotkey, *netuid, cfg, now),
            Call::BurnedRegister { netuid, hotkey } => self.burned_register(signer, *netuid, *hotkey, now),
            Call::AddStake { netuid, hotkey, amount } => {
                let uid = self.registered_uid(*netuid, hotkey)?;
                if *amount < MIN_STAKE {
                    return Err(TxError::AmountTooLow { amount: *amount, min: MIN_STAKE });
                }
                let balance = self.balance(&signer);
                if balance < *amount {
                    return Err(TxError::NotEnoughBalanceToStake { balance, needed: *amount });
                }
                let subnet = self.subnets.get_mut(netuid).ok_or(TxError::SubnetNotExists(*netuid))?;
                let neuron = &mut subnet.neurons[usize::from(uid)];
                let entry = neuron.stakes.entry(signer).or_insert(0);
                *entry = checked_add(*entry, *amount)?;
                subnet.changed_at = self.revision + 1;
                self.account_mut(signer).balance = balance - amount;
                Ok(Applied::default())
            }
            Call::RemoveStake { netuid, hotkey, amount } => {
                let uid = self.registered_uid(*netuid, hotkey)?;
                if *amount == 0 {
                    return Err(TxError::AmountTooLow { amount: 0, min: 1 });
                }
                let balance = self.balance(&signer);
                let new_balance = checked_add(balance, *amount)?;
                let subnet = self.subnets.get_mut(netuid).ok_or(TxError::SubnetNotExists(*netuid))?;
                let neuron = &mut subnet.neurons[usize::from(uid)];
                let stake = neuron.stakes.get(&signer).copied().unwrap_or(0);
                if stake < *amount {
                    return Err(TxError::NotEnoughStakeToWithdraw { stake, needed: *amount });
                }
                if stake == *amount {
                    neuron.stakes.remove(&signer);
                } else {
                    neuron.stakes.insert(signer, stake - amount);
                }
                subnet.changed_at = self.revision + 1;
                self.account_mut(signer).balance = new_balance;
                Ok(Applied::default())
            }
            Call::Transfer { dest, amount } => {
                if *amount == 0 {
                    return Err(TxError::AmountTooLow { amount: 0, min: 1 });
                }
                let balance = self.balance(&signer);
                if balance < *amount {
                    return Err(TxError::InsufficientBalance { balance, needed: *amount });
                }
                if *dest != signer {
                    let dest_balance = checked_add(self.balance(dest), *amount)?;
                    self.account_mut(signer).balance = balance - amount;
                    self.account_mut(*dest).balance = dest_balance;
                }
                Ok(Applied::default())
            }
            Call::ServeAxon { netuid, version, ip, port, protocol } => {
                let uid = self.registered_uid(*netuid, &signer)?;
                check_ip(ip, cfg.allow_loopback)?;
                if *port == 0 {
                    return Err(TxError::InvalidPort);
                }
                let subnet = self.subnets.get_mut(netuid).ok_or(TxError::SubnetNotExists(*netuid))?;
                let limit = subnet.params.serving_rate_limit;
                let neuron = &mut subnet.neurons[usize::from(uid)];
                if let Some(axon) = &neuron.axon
                    && axon.block != 0
                    && now.saturating_sub(axon.block) < limit
                {
                    return Err(TxError::ServingRateLimitExceeded { last: axon.block, limit });
                }
                let ip_type = if ip.is_ipv4() { 4 } else { 6 };
                neuron.axon = Some(AxonInfo { block: now, version: *version, ip: *ip, port: *port, ip_type, protocol: *protocol });
                subnet.changed_at = self.revision + 1;
                Ok(Applied::default())
            }
            Call::SetWeights { netuid, uids, values, version_key } => {
                let subnet = self.subnet(*netuid)?;
                if subnet.params.commit_reveal_weights_enabled {
                    return Err(TxError::CommitRevealEnabled(*netuid));
                }
                let uid = self.registered_uid(*netuid, &signer)?;
                let row = check_weights(subnet, uid, &signer, uids, values, *version_key, now)?;
                let subnet = self.subnets.get_mut(netuid).ok_or(TxError::SubnetNotExists(*netuid))?;
                let neuron = &mut subnet.neurons[usize::from(uid)];
                neuron.weights = row;
                neuron.last_update = now;
                subnet.changed_at = self.revision + 1;
                Ok(Applied::default())
            }
            Call::CommitWeights { netuid, commit_hash } => self.commit_weights(signer, *netuid, *commit_hash, now),
            Call::RevealWeights { netuid, uids, values, salt, version_key } => {
                self.reveal_weights(signer, *netuid, uids, values, salt, *version_key, now)
            }
            Call::SetCommitment { netuid, data } => {
                self.registered_uid(*netuid, &signer)?;
                if data.len() > MAX_COMMITMENT_BYTES {
                    return Err(TxError::SpaceLimitExceeded(data.len()));
                }
                let subnet = self.subnets.get_mut(netuid).ok_or(TxError::SubnetNotExists(*netuid))?;
                subnet.commitments.insert(signer, Commitment { data: data.clone(), block: now });
                Ok(Applied::default())
            }
            Call::SetHyperparams { netuid, update } => {
                let subnet = self.subnets.get_mut(netuid).ok_or(TxError::SubnetNotExists(*netuid))?;
                if subnet.owner_coldkey != signer {
                    return Err(TxError::NotSubnetOwner(*netuid));
                }
                let n = subnet.neurons.len() as u16;
                update.apply(&mut subnet.params, n)?;
                Ok(Applied::default())
            }
            Call::Faucet { amount } => {
                if !cfg.faucet {
                    return Err(TxError::FaucetDisabled);
                }
                if *amount > FAUCET_MAX {
                    return Err(TxError::FaucetAmountTooHigh { max: FAUCET_MAX });
                }
                if *amount == 0 {
                    return Err(TxError::AmountTooLow { amount: 0, min: 1 });
                }
                let balance = checked_add(self.balance(&signer), *amount)?;
                self.account_mut(signer).balance = balance;
                Ok(Applied::default())
            }
        }
    }

    /// `commit_weights` (subtensor's `do_commit_weights`).
    fn commit_weights(&mut self, signer: AccountId, netuid: u16, hash: [u8; 32], now: u64) -> Result<Applied, TxError> {
        let subnet = self.subnet(netuid)?;
        if !subnet.params.commit_reveal_weights_enabled {
            return Err(TxError::CommitRevealDisabled(netuid));
        }
        let uid = self.registered_uid(netuid, &signer)?;
        let last_update = subnet.neurons[usize::from(uid)].last_update;
        let rate_limit = subnet.params.weights_rate_limit;
        if last_update != 0 && now.saturating_sub(last_update) < rate_limit {
            return Err(TxError::CommittingWeightsTooFast { last_update, current_block: now, rate_limit });
        }
        let expired = subnet.weight_commits.get(&signer).map_or(0, |q| subnet.expired_prefix(q));
        let live = subnet.weight_commits.get(&signer).map_or(0, |q| q.len() - expired);
        if live >= MAX_PENDING_COMMITS {
            return Err(TxError::TooManyUnrevealedCommits(live));
        }
        let commit_epoch = subnet.epoch_index;
        let subnet = self.subnets.get_mut(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
        let queue = subnet.weight_commits.entry(signer).or_default();
        queue.drain(..expired);
        queue.push_back(PendingCommit { hash, commit_block: now, commit_epoch });
        subnet.neurons[usize::from(uid)].last_update = now;
        subnet.changed_at = self.revision + 1;
        Ok(Applied::default())
    }

    /// `reveal_weights` (subtensor's `do_reveal_weights`): the matching live commit in its
    /// reveal epoch, then `set_weights`' checks and storage (no rate limit, no `last_update`).
    #[allow(clippy::too_many_arguments)]
    fn reveal_weights(
        &mut self,
        signer: AccountId,
        netuid: u16,
        uids: &[u16],
        values: &[u16],
        salt: &[u16],
        version_key: u64,
        now: u64,
    ) -> Result<Applied, TxError> {
        let subnet = self.subnet(netuid)?;
        if !subnet.params.commit_reveal_weights_enabled {
            return Err(TxError::CommitRevealDisabled(netuid));
        }
        let queue = subnet.weight_commits.get(&signer).filter(|q| !q.is_empty()).ok_or(TxError::NoWeightsCommitFound)?;
        let expired = subnet.expired_prefix(queue);
        let hash = weight_hash(&signer.0, netuid, uids, values, salt, version_key);
        let matches_expired = queue.iter().take(expired).any(|c| c.hash == hash);
        if expired == queue.len() {
            return Err(if matches_expired { TxError::ExpiredWeightCommit } else { TxError::NoWeightsCommitFound });
        }
        let Some(position) = queue.iter().skip(expired).position(|c| c.hash == hash) else {
            return Err(if matches_expired { TxError::ExpiredWeightCommit } else { TxError::InvalidRevealCommitHashNotMatch });
        };
        let reveal_epoch = subnet.reveal_epoch(queue[expired + position].commit_epoch);
        if subnet.epoch_index != reveal_epoch {
            return Err(TxError::RevealTooEarly { epoch: subnet.epoch_index, reveal_epoch });
        }
        let uid = self.registered_uid(netuid, &signer)?;
        let row = check_weights(subnet, uid, &signer, uids, values, version_key, now)?;
        let subnet = self.subnets.get_mut(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
        if let Some(queue) = subnet.weight_commits.get_mut(&signer) {
            queue.drain(..expired + position + 1);
            if queue.is_empty() {
                subnet.weight_commits.remove(&signer);
            }
        }
        subnet.neurons[usize::from(uid)].weights = row;
        subnet.changed_at = self.revision + 1;
        Ok(Applied::default())
    }

    fn check_hotkey_owner(&self, coldkey: &AccountId, hotkey: &AccountId) -> Result<(), TxError> {
        match self.owners.get(hotkey) {
            Some(owner) if owner != coldkey => Err(TxError::NonAssociatedColdKey(hotkey.0.to_ss58())),
            _ => Ok(()),
        }
    }

    fn register_network(
        &mut self,
        coldkey: AccountId,
        hotkey: AccountId,
        netuid: Option<u16>,
        cfg: &ChainConfig,
        now: u64,
    ) -> Result<Applied, TxError> {
        if self.subnets.len() >= MAX_SUBNETS {
            return Err(TxError::SubnetLimitReached(MAX_SUBNETS));
        }
        let netuid = match netuid {
            Some(0) => return Err(TxError::NetuidInUse(0)),
            Some(id) if self.subnets.contains_key(&id) => return Err(TxError::NetuidInUse(id)),
            Some(id) => id,
            None => (1..=u16::MAX).find(|id| !self.subnets.contains_key(id)).ok_or(TxError::SubnetLimitReached(MAX_SUBNETS))?,
        };
        self.check_hotkey_owner(&coldkey, &hotkey)?;
        let balance = self.balance(&coldkey);
        if balance < cfg.network_lock_cost {
            return Err(TxError::NotEnoughBalanceToStake { balance, needed: cfg.network_lock_cost });
        }
        self.account_mut(coldkey).balance = balance - cfg.network_lock_cost;
        self.owners.insert(hotkey, coldkey);
        self.dirty_owners.insert(hotkey);
        let subnet = Subnet {
            netuid,
            owner_coldkey: coldkey,
            owner_hotkey: hotkey,
            params: Hyperparams::new_subnet(cfg.default_tempo),
            neurons: vec![Neuron::new(hotkey, coldkey, now)],
            burn: INITIAL_BURN,
            registrations_this_block: 0,
            registrations_block: 0,
            last_epoch_block: now,
            last_step_block: 0,
            epoch_index: 0,
            pending_emission: 0,
            registered_at: now,
            changed_at: self.revision + 1,
            commitments: BTreeMap::new(),
            weight_commits: BTreeMap::new(),
        };
        self.subnets.insert(netuid, subnet);
        Ok(Applied { uid: Some(0), netuid: Some(netuid) })
    }

    fn burned_register(&mut self, coldkey: AccountId, netuid: u16, hotkey: AccountId, now: u64) -> Result<Applied, TxError> {
        let subnet = self.subnet(netuid)?;
        if !subnet.params.registration_allowed {
            return Err(TxError::SubNetRegistrationDisabled(netuid));
        }
        let regs = if subnet.registrations_block == now { subnet.registrations_this_block } else { 0 };
        if regs >= subnet.params.max_registrations_per_block {
            return Err(TxError::TooManyRegistrationsThisBlock { netuid, max: subnet.params.max_registrations_per_block });
        }
        if let Some(uid) = subnet.uid_of(&hotkey) {
            return Err(TxError::HotKeyAlreadyRegisteredInSubNet(uid));
        }
        let burn = subnet.burn;
        let balance = self.balance(&coldkey);
        if balance < burn {
            return Err(TxError::NotEnoughBalanceToStake { balance, needed: burn });
        }
        self.check_hotkey_owner(&coldkey, &hotkey)?;
        let full = subnet.neurons.len() >= usize::from(subnet.params.max_allowed_uids);
        let replace = if full { Some(subnet.neuron_to_prune(now).ok_or(TxError::NoNeuronIdAvailable(netuid))?) } else { None };

        // All checks passed: mutate.
        self.account_mut(coldkey).balance = balance - burn;
        self.owners.insert(hotkey, coldkey);
        self.dirty_owners.insert(hotkey);
        let mut refunds: Vec<(AccountId, u64)> = Vec::new();
        let subnet = self.subnets.get_mut(&netuid).ok_or(TxError::SubnetNotExists(netuid))?;
        let uid = match replace {
            None => {
                subnet.neurons.push(Neuron::new(hotkey, coldkey, now));
                (subnet.neurons.len() - 1) as u16
            }
            Some(uid) => {
                let old = std::mem::replace(&mut subnet.neurons[usize::from(uid)], Neuron::new(hotkey, coldkey, now));
                subnet.commitments.remove(&old.hotkey);
                subnet.weight_commits.remove(&old.hotkey);
                refunds.extend(old.stakes);
                for neuron in &mut subnet.neurons {
                    for entry in neuron.weights.iter_mut().filter(|(j, _)| *j == uid) {
                        entry.1 = 0;
                    }
                    neuron.bonds.retain(|(j, _)| *j != uid);
                }
                uid
            }
        };
        subnet.registrations_block = now;
        subnet.registrations_this_block = regs + 1;
        subnet.burn = (burn.saturating_mul(126) / 100).clamp(subnet.params.min_burn, subnet.params.max_burn);
        subnet.changed_at = self.revision + 1;
        for (staker, amount) in refunds {
            let account = self.account_mut(staker);
            account.balance = account.balance.saturating_add(amount);
        }
        Ok(Applied { uid: Some(uid), netuid: None })
    }

    /// Finalise block `number`: coinbase, burn decay and due epochs. Returns the netuids whose
    /// epoch ran. The caller then persists the state and sets `block`/`block_hash`.
    pub fn finalize_block(&mut self, number: u64, cfg: &ChainConfig) -> Vec<u16> {
        let per_subnet = self.emission_per_subnet(cfg);
        self.revision += 1;
        let revision = self.revision;
        let mut epochs = Vec::new();
        let mut credits: Vec<(AccountId, u64)> = Vec::new();
        for subnet in self.subnets.values_mut() {
            let owner_cut = (u128::from(per_subnet) * u128::from(SUBNET_OWNER_CUT) / 65_535) as u64;
            credits.push((subnet.owner_coldkey, owner_cut));
            subnet.pending_emission = subnet.pending_emission.saturating_add(per_subnet - owner_cut);
            // Burn halves every 360 blocks: multiply by 2^(-1/360) ≈ 1 - 0.0019235.
            let decayed = subnet.burn - subnet.burn / 1_000_000 * 1_924 - (subnet.burn % 1_000_000) * 1_924 / 1_000_000;
            subnet.burn = decayed.clamp(subnet.params.min_burn, subnet.params.max_burn);
            if number.saturating_sub(subnet.last_epoch_block) >= u64::from(subnet.params.tempo) && !subnet.neurons.is_empty() {
                match epoch(subnet, number, revision) {
                    Ok(()) => epochs.push(subnet.netuid),
                    Err(e) => tracing::error!(target: "ganglion::chain", netuid = subnet.netuid, "epoch failed: {e}"),
                }
                subnet.last_epoch_block = number;
            }
        }
        for (id, amount) in credits {
            let account = self.account_mut(id);
            account.balance = account.balance.saturating_add(amount);
        }
        epochs
    }
}

/// `set_weights`' checks for `signer` (uid `uid`) in `subnet`, executing in block `now`; the
/// stored row on success. With commit-reveal on (a reveal), the rate limit is not checked:
/// the commit was.
#[allow(clippy::too_many_arguments)]
fn check_weights(subnet: &Subnet, uid: u16, signer: &AccountId, uids: &[u16], values: &[u16], version_key: u64, now: u64) -> Result<Vec<(u16, u16)>, TxError> {
    let neuron = &subnet.neurons[usize::from(uid)];
    let p = &subnet.params;
    let ctx = SetWeightsContext {
        n: subnet.neurons.len() as u16,
        uid,
        is_owner: *signer == subnet.owner_hotkey,
        stake: neuron.total_stake(),
        stake_threshold: p.stake_threshold,
        required_version_key: p.weights_version,
        version_key,
        current_block: now,
        last_update: neuron.last_update,
        rate_limit: p.weights_rate_limit,
        commit_reveal_enabled: p.commit_reveal_weights_enabled,
        validator_permit: neuron.validator_permit,
        min_allowed_weights: p.min_allowed_weights,
        max_weight_limit: p.max_weights_limit,
    };
    check_set_weights(&ctx, uids, values).map_err(TxError::Weights)
}

fn check_ip(ip: &IpAddr, allow_loopback: bool) -> Result<(), TxError> {
    let bad = match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || (v4.is_loopback() && !allow_loopback),
        IpAddr::V6(v6) => v6.is_multicast() || (v6.is_loopback() && !allow_loopback),
    };
    if bad { Err(TxError::InvalidIpAddress(ip.to_string())) } else { Ok(()) }
}

/// Run one epoch of `subnet` at `block` and distribute its pending emission.
fn epoch(subnet: &mut Subnet, block: u64, revision: u64) -> Result<(), ganglion_yuma::YumaError> {
    let p = &subnet.params;
    let params = EpochParams {
        kappa: p.kappa,
        bonds_penalty: p.bonds_penalty,
        bonds_moving_average: p.bonds_moving_average,
        max_allowed_validators: p.max_allowed_validators,
        activity_cutoff: u64::from(p.activity_cutoff),
        stake_threshold: p.stake_threshold,
        yuma3: p.yuma3_enabled,
        liquid_alpha: p.liquid_alpha_enabled,
        alpha_low: p.alpha_low,
        alpha_high: p.alpha_high,
        alpha_sigmoid_steepness: p.alpha_sigmoid_steepness,
        owner_uid: subnet.owner_uid(),
    };
    let neurons = &subnet.neurons;
    let stake: Vec<u64> = neurons.iter().map(Neuron::total_stake).collect();
    let last_update: Vec<u64> = neurons.iter().map(|n| n.last_update).collect();
    let reg: Vec<u64> = neurons.iter().map(|n| n.block_at_registration).collect();
    let permit: Vec<bool> = neurons.iter().map(|n| n.validator_permit).collect();
    let weights: Vec<Vec<(u16, u16)>> = neurons.iter().map(|n| n.weights.clone()).collect();
    let bonds: Vec<Vec<(u16, u16)>> = neurons.iter().map(|n| n.bonds.clone()).collect();
    let commit_blocks = p.commit_reveal_weights_enabled.then(|| subnet.commit_blocks());
    let last_tempo_block = if subnet.last_step_block == 0 {
        block.saturating_sub(u64::from(p.tempo))
    } else {
        subnet.last_step_block + 1
    };
    let input = EpochInput {
        current_block: block,
        last_tempo_block,
        stake: &stake,
        last_update: &last_update,
        block_at_registration: &reg,
        validator_permit: &permit,
        weights: &weights,
        bonds: &bonds,
        commit_blocks: commit_blocks.as_deref(),
    };
    let out = run_epoch(&params, &input, subnet.pending_emission)?;
    for (uid, neuron) in subnet.neurons.iter_mut().enumerate() {
        neuron.active = out.active[uid];
        neuron.validator_permit = out.new_validator_permit[uid];
        neuron.validator_trust = out.validator_trust[uid];
        neuron.consensus = out.consensus[uid];
        neuron.incentive = out.incentive[uid];
        neuron.dividends = out.dividends[uid];
        neuron.emission = out.emission[uid];
        neuron.bonds = out.new_bonds[uid].clone();
        let server = out.server_emission[uid];
        let validator = out.validator_emission[uid];
        distribute(neuron, server, validator);
    }
    subnet.pending_emission = 0;
    subnet.last_step_block = block;
    subnet.epoch_index += 1;
    subnet.changed_at = revision;
    Ok(())
}

/// Server emission is staked for the hotkey's own coldkey; validator emission is shared by
/// the stakers pro rata (the remainder of the integer split goes to the owning coldkey).
fn distribute(neuron: &mut Neuron, server: u64, validator: u64) {
    let total = neuron.total_stake();
    let mut to_owner = server;
    if total == 0 {
        to_owner = to_owner.saturating_add(validator);
    } else {
        let mut paid = 0u64;
        for amount in neuron.stakes.values_mut() {
            let share = (u128::from(validator) * u128::from(*amount) / u128::from(total)) as u64;
            *amount = amount.saturating_add(share);
            paid += share;
        }
        to_owner = to_owner.saturating_add(validator - paid);
    }
    if to_owner > 0 {
        let entry = neuron.stakes.entry(neuron.coldkey).or_insert(0);
        *entry = entry.saturating_add(to_owner);
    }
}

#[cfg(test)]
mod tests;
