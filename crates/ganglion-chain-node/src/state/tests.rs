//! Unit tests of the state machine: every transaction check, with the state unchanged on
//! rejection, plus epochs and the coinbase.

use std::net::{IpAddr, Ipv4Addr};

use ganglion_core::keys::Keypair;

use super::*;
use ganglion_chain::hyperparams::HyperparamUpdate;

fn key(uri: &str) -> Keypair {
    match Keypair::from_uri(uri) {
        Ok(k) => k,
        Err(e) => panic!("{uri}: {e}"),
    }
}

struct Harness {
    state: State,
    cfg: ChainConfig,
}

impl Harness {
    fn new() -> Harness {
        let cfg = ChainConfig { default_tempo: 10, ..ChainConfig::default() };
        let endowed = vec![(key("//Alice").public(), 100_000 * RAO_PER_TAO), (key("//Bob").public(), 100_000 * RAO_PER_TAO)];
        Harness { state: State::genesis([1u8; 32], &endowed), cfg }
    }

    fn tx(&mut self, signer: &Keypair, call: Call) -> Result<Applied, TxError> {
        let nonce = self.state.account(&signer.public()).nonce;
        let tx = SignedTransaction::sign(signer, nonce, &self.state.genesis, call);
        self.state.apply(&tx, &self.cfg)
    }

    /// Apply and require success.
    fn ok(&mut self, signer: &Keypair, call: Call) -> Applied {
        match self.tx(signer, call) {
            Ok(a) => a,
            Err(e) => panic!("transaction refused: {e}"),
        }
    }

    /// Apply, require the named rejection, and check nothing changed.
    fn refused(&mut self, signer: &Keypair, call: Call, name: &str) {
        let before = self.state.clone();
        match self.tx(signer, call) {
            Ok(_) => panic!("expected {name}, transaction was accepted"),
            Err(e) => assert_eq!(e.name(), name, "{e}"),
        }
        assert_eq!(self.state, before, "state changed by a rejected transaction");
    }

    fn blocks(&mut self, n: u64) -> Vec<u16> {
        let mut epochs = Vec::new();
        for _ in 0..n {
            let number = self.state.block + 1;
            epochs.extend(self.state.finalize_block(number, &self.cfg));
            self.state.block = number;
        }
        epochs
    }

    fn neuron(&self, netuid: u16, uid: u16) -> &Neuron {
        &self.state.subnets[&netuid].neurons[usize::from(uid)]
    }

    /// Subnet 1 owned by Alice (hotkey //Alice/owner), with validator //V (coldkey Bob) and
    /// miners //M1, //M2 (coldkey Bob), the validator staked, rate limit 0.
    fn subnet_with_neurons(&mut self) -> (Keypair, Keypair, Keypair) {
        let alice = key("//Alice");
        let bob = key("//Bob");
        let (v, m1, m2) = (key("//V"), key("//M1"), key("//M2"));
        self.ok(&alice, Call::RegisterNetwork { hotkey: AccountId(key("//Alice/owner").public()), netuid: None });
        self.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() } });
        for hk in [&v, &m1, &m2] {
            self.ok(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(hk.public()) });
            self.blocks(1);
        }
        self.ok(&bob, Call::AddStake { netuid: 1, hotkey: AccountId(v.public()), amount: 1_000 * RAO_PER_TAO });
        (v, m1, m2)
    }
}

#[test]
fn signature_and_nonce_checks() {
    let mut h = Harness::new();
    let alice = key("//Alice");
    let before = h.state.clone();
    // Wrong genesis.
    let tx = SignedTransaction::sign(&alice, 0, &[9u8; 32], Call::Faucet { amount: 1 });
    assert_eq!(h.state.apply(&tx, &h.cfg).map_err(|e| e.name()), Err("BadProof"));
    // Signed by someone else.
    let mut tx = SignedTransaction::sign(&key("//Bob"), 0, &h.state.genesis, Call::Faucet { amount: 1 });
    tx.signer = AccountId(alice.public());
    assert_eq!(h.state.apply(&tx, &h.cfg).map_err(|e| e.name()), Err("BadProof"));
    // Future nonce.
    let tx = SignedTransaction::sign(&alice, 1, &h.state.genesis, Call::Faucet { amount: 1 });
    assert_eq!(h.state.apply(&tx, &h.cfg).map_err(|e| e.name()), Err("Future"));
    assert_eq!(h.state, before);
    // Good, then replay is stale.
    let tx = SignedTransaction::sign(&alice, 0, &h.state.genesis, Call::Faucet { amount: 1 });
    assert!(h.state.apply(&tx, &h.cfg).is_ok());
    let after = h.state.clone();
    assert_eq!(h.state.apply(&tx, &h.cfg).map_err(|e| e.name()), Err("Stale"));
    assert_eq!(h.state, after);
    assert_eq!(h.state.account(&alice.public()), AccountInfo { balance: 100_000 * RAO_PER_TAO + 1, nonce: 1 });
}

#[test]
fn faucet_and_transfer_rules() {
    let mut h = Harness::new();
    let carol = key("//Carol");
    h.refused(&carol, Call::Faucet { amount: FAUCET_MAX + 1 }, "FaucetAmountTooHigh");
    h.refused(&carol, Call::Faucet { amount: 0 }, "AmountTooLow");
    h.ok(&carol, Call::Faucet { amount: 5 * RAO_PER_TAO });
    h.refused(&carol, Call::Transfer { dest: AccountId(key("//Dave").public()), amount: 6 * RAO_PER_TAO }, "InsufficientBalance");
    h.ok(&carol, Call::Transfer { dest: AccountId(key("//Dave").public()), amount: 2 * RAO_PER_TAO });
    assert_eq!(h.state.account(&key("//Dave").public()).balance, 2 * RAO_PER_TAO);
    assert_eq!(h.state.account(&carol.public()).balance, 3 * RAO_PER_TAO);
    h.cfg.faucet = false;
    h.refused(&carol, Call::Faucet { amount: 1 }, "FaucetDisabled");
}

#[test]
fn subnet_creation_and_ownership() {
    let mut h = Harness::new();
    let alice = key("//Alice");
    let poor = key("//Poor");
    h.refused(&poor, Call::RegisterNetwork { hotkey: AccountId(poor.public()), netuid: None }, "NotEnoughBalanceToStake");
    h.refused(&alice, Call::RegisterNetwork { hotkey: AccountId(alice.public()), netuid: Some(0) }, "NetuidInUse");
    let applied = h.ok(&alice, Call::RegisterNetwork { hotkey: AccountId(key("//Alice/owner").public()), netuid: None });
    assert_eq!(applied.uid, Some(0));
    assert_eq!(h.state.account(&alice.public()).balance, 99_000 * RAO_PER_TAO);
    let subnet = &h.state.subnets[&1];
    assert_eq!(subnet.neurons.len(), 1);
    assert_eq!(subnet.params.tempo, 10);
    assert_eq!(subnet.params.immunity_period, 5000);
    h.refused(&alice, Call::RegisterNetwork { hotkey: AccountId(alice.public()), netuid: Some(1) }, "NetuidInUse");
    // Bob cannot claim Alice's owner hotkey for a subnet of his.
    h.refused(&key("//Bob"), Call::RegisterNetwork { hotkey: AccountId(key("//Alice/owner").public()), netuid: None }, "NonAssociatedColdKey");
    // Only the owner changes hyperparameters, within range.
    let update = HyperparamUpdate { tempo: Some(5), ..Default::default() };
    h.refused(&key("//Bob"), Call::SetHyperparams { netuid: 1, update: update.clone() }, "NotSubnetOwner");
    h.refused(&alice, Call::SetHyperparams { netuid: 2, update: update.clone() }, "SubnetNotExists");
    h.refused(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { tempo: Some(0), ..Default::default() } }, "InvalidHyperparameter");
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update });
    assert_eq!(h.state.subnets[&1].params.tempo, 5);
}

#[test]
fn registration_checks_and_burn() {
    let mut h = Harness::new();
    let alice = key("//Alice");
    let bob = key("//Bob");
    h.refused(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//x").public()) }, "SubnetNotExists");
    h.ok(&alice, Call::RegisterNetwork { hotkey: AccountId(key("//Alice/owner").public()), netuid: None });
    let burn = h.state.subnets[&1].burn;
    assert_eq!(burn, INITIAL_BURN);
    let applied = h.ok(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//h1").public()) });
    assert_eq!(applied.uid, Some(1));
    assert_eq!(h.state.account(&bob.public()).balance, 100_000 * RAO_PER_TAO - burn);
    assert_eq!(h.state.subnets[&1].burn, burn * 126 / 100);
    // One registration per block.
    h.refused(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//h2").public()) }, "TooManyRegistrationsThisBlock");
    h.blocks(1);
    h.refused(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//h1").public()) }, "HotKeyAlreadyRegisteredInSubNet");
    // A hotkey belongs to the first coldkey that registered it.
    h.refused(&alice, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//h1").public()) }, "HotKeyAlreadyRegisteredInSubNet");
    h.refused(&key("//Poor"), Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//h3").public()) }, "NotEnoughBalanceToStake");
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { registration_allowed: Some(false), ..Default::default() } });
    h.refused(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//h2").public()) }, "SubNetRegistrationDisabled");
    // The burn decays per block but not below min_burn.
    let before = h.state.subnets[&1].burn;
    h.blocks(10);
    let after = h.state.subnets[&1].burn;
    assert!(after < before && after >= h.state.subnets[&1].params.min_burn, "{before} -> {after}");
}

#[test]
fn pruning_when_full_respects_immunity_and_owner() {
    let mut h = Harness::new();
    let alice = key("//Alice");
    let bob = key("//Bob");
    h.ok(&alice, Call::RegisterNetwork { hotkey: AccountId(key("//Alice/owner").public()), netuid: None });
    h.ok(&alice, Call::SetHyperparams {
        netuid: 1,
        update: HyperparamUpdate { max_allowed_uids: Some(3), immunity_period: Some(5), ..Default::default() },
    });
    for name in ["//p1", "//p2"] {
        h.ok(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key(name).public()) });
        h.blocks(1);
    }
    h.ok(&bob, Call::AddStake { netuid: 1, hotkey: AccountId(key("//p1").public()), amount: RAO_PER_TAO });
    // Full, both immune: the earliest-registered immune non-owner is replaced (uid 1), and
    // its stake goes back to Bob.
    let balance = h.state.account(&bob.public()).balance;
    let burn = h.state.subnets[&1].burn;
    let applied = h.ok(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//p3").public()) });
    assert_eq!(applied.uid, Some(1));
    assert_eq!(h.state.account(&bob.public()).balance, balance - burn + RAO_PER_TAO);
    assert_eq!(h.neuron(1, 1).hotkey, AccountId(key("//p3").public()));
    assert_eq!(h.neuron(1, 1).total_stake(), 0);
    // p2 (uid 2) is mortal now, p3 (uid 1) still immune: the mortal one goes even though it
    // has the higher emission.
    h.blocks(5);
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { immunity_period: Some(6), ..Default::default() } });
    if let Some(subnet) = h.state.subnets.get_mut(&1) {
        subnet.neurons[2].emission = 1_000;
    }
    let applied = h.ok(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//p4").public()) });
    assert_eq!(applied.uid, Some(2));
    assert_eq!(h.neuron(1, 2).emission, 0, "replaced neuron starts fresh");
    // Owner hotkey is never pruned; a subnet of only the owner cannot take more.
    let mut h2 = Harness::new();
    h2.ok(&alice, Call::RegisterNetwork { hotkey: AccountId(key("//Alice/owner").public()), netuid: None });
    h2.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { max_allowed_uids: Some(1), ..Default::default() } });
    h2.refused(&bob, Call::BurnedRegister { netuid: 1, hotkey: AccountId(key("//q").public()) }, "NoNeuronIdAvailable");
}

#[test]
fn staking_rules() {
    let mut h = Harness::new();
    let bob = key("//Bob");
    let (v, _, _) = h.subnet_with_neurons();
    let hk = AccountId(v.public());
    h.refused(&bob, Call::AddStake { netuid: 1, hotkey: AccountId(key("//nobody").public()), amount: RAO_PER_TAO }, "HotKeyNotRegisteredInSubNet");
    h.refused(&bob, Call::AddStake { netuid: 1, hotkey: hk, amount: 1 }, "AmountTooLow");
    h.refused(&key("//Poor"), Call::AddStake { netuid: 1, hotkey: hk, amount: RAO_PER_TAO }, "NotEnoughBalanceToStake");
    h.refused(&key("//Alice"), Call::RemoveStake { netuid: 1, hotkey: hk, amount: 1 }, "NotEnoughStakeToWithdraw");
    h.refused(&bob, Call::RemoveStake { netuid: 1, hotkey: hk, amount: 1_001 * RAO_PER_TAO }, "NotEnoughStakeToWithdraw");
    let balance = h.state.account(&bob.public()).balance;
    h.ok(&bob, Call::RemoveStake { netuid: 1, hotkey: hk, amount: 400 * RAO_PER_TAO });
    assert_eq!(h.state.account(&bob.public()).balance, balance + 400 * RAO_PER_TAO);
    assert_eq!(h.neuron(1, 1).total_stake(), 600 * RAO_PER_TAO);
}

#[test]
fn serving_rules() {
    let mut h = Harness::new();
    let (v, m1, _) = h.subnet_with_neurons();
    let serve = |ip: IpAddr, port: u16| Call::ServeAxon { netuid: 1, version: 1, ip, port, protocol: 4 };
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    h.refused(&key("//stranger"), serve(lo, 8091), "HotKeyNotRegisteredInSubNet");
    h.refused(&v, serve(lo, 0), "InvalidPort");
    h.refused(&v, serve(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1)), 8091), "InvalidIpAddress");
    h.ok(&v, serve(lo, 8091));
    let axon = h.neuron(1, 1).axon.clone();
    assert_eq!(axon.map(|a| (a.ip, a.port, a.ip_type)), Some((lo, 8091, 4)));
    h.refused(&v, serve(lo, 8092), "ServingRateLimitExceeded");
    h.blocks(50);
    h.ok(&v, serve(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8092));
    // A non-local chain refuses loopback.
    h.cfg.allow_loopback = false;
    h.refused(&m1, serve(lo, 8091), "InvalidIpAddress");
    h.refused(&m1, serve("::1".parse().unwrap_or(lo), 8091), "InvalidIpAddress");
}

#[test]
fn commitments() {
    let mut h = Harness::new();
    let (v, _, _) = h.subnet_with_neurons();
    h.refused(&v, Call::SetCommitment { netuid: 1, data: "x".repeat(129) }, "SpaceLimitExceeded");
    h.refused(&key("//stranger"), Call::SetCommitment { netuid: 1, data: "hi".into() }, "HotKeyNotRegisteredInSubNet");
    h.ok(&v, Call::SetCommitment { netuid: 1, data: "x".repeat(128) });
    assert_eq!(h.state.subnets[&1].commitments.get(&AccountId(v.public())).map(|c| c.data.len()), Some(128));
}

#[test]
fn weights_checks_then_epoch_moves_incentive() {
    let mut h = Harness::new();
    let alice = key("//Alice");
    let (v, m1, _m2) = h.subnet_with_neurons();
    let sw = |uids: Vec<u16>, values: Vec<u16>, version_key: u64| Call::SetWeights { netuid: 1, uids, values, version_key };
    // No permit before the first epoch.
    h.refused(&v, sw(vec![2, 3], vec![100, 200], 0), "NeuronNoValidatorPermit");
    h.refused(&key("//stranger"), sw(vec![2], vec![1], 0), "HotKeyNotRegisteredInSubNet");
    // A single self-weight needs no permit.
    h.ok(&m1, sw(vec![2], vec![1], 0));
    let epochs = h.blocks(10);
    assert_eq!(epochs, vec![1]);
    assert!(h.neuron(1, 1).validator_permit, "staked validator got a permit");
    h.refused(&v, sw(vec![2, 2], vec![1, 1], 0), "DuplicateUids");
    h.refused(&v, sw(vec![2, 9], vec![1, 1], 0), "UidVecContainInvalidOne");
    h.refused(&v, sw(vec![2, 3], vec![1], 0), "WeightVecNotEqualSize");
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { weights_version: Some(5), min_allowed_weights: Some(3), max_weights_limit: Some(40_000), ..Default::default() } });
    h.refused(&v, sw(vec![2, 3], vec![1, 1], 4), "IncorrectWeightVersionKey");
    h.refused(&v, sw(vec![2, 3], vec![1, 1], 5), "WeightVecLengthIsLow");
    h.refused(&v, sw(vec![0, 2, 3], vec![1, 1, 100], 5), "MaxWeightExceeded");
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { min_allowed_weights: Some(1), max_weights_limit: Some(u16::MAX), ..Default::default() } });
    h.ok(&v, sw(vec![2, 3], vec![u16::MAX, u16::MAX / 3], 5));
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { weights_rate_limit: Some(100), ..Default::default() } });
    assert_eq!(h.neuron(1, 1).weights, vec![(2, 65535), (3, 21845)]);
    h.refused(&v, sw(vec![2, 3], vec![1, 1], 5), "SettingWeightsTooFast");
    h.ok(&alice, Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { commit_reveal_weights_enabled: Some(true), ..Default::default() } });
    h.refused(&v, sw(vec![2, 3], vec![1, 1], 5), "CommitRevealEnabled");

    // One tempo later: incentive and emission follow the weights.
    let stake_before = h.neuron(1, 2).total_stake();
    let owner_before = h.state.account(&alice.public()).balance;
    let epochs = h.blocks(10);
    assert_eq!(epochs, vec![1]);
    let (m1n, m2n, vn) = (h.neuron(1, 2).clone(), h.neuron(1, 3).clone(), h.neuron(1, 1).clone());
    assert!(m1n.incentive > m2n.incentive && m2n.incentive > 0, "{} {}", m1n.incentive, m2n.incentive);
    assert!(vn.dividends > 0 && vn.validator_trust > 0);
    assert!(m1n.emission > m2n.emission && m1n.emission > 0);
    assert!(m1n.total_stake() > stake_before, "miner emission is staked");
    // Coinbase: 10 blocks of 1 TAO; owner gets 11796/65535 per block.
    let owner_cut = (u128::from(RAO_PER_TAO) * 11_796 / 65_535) as u64;
    assert_eq!(h.state.account(&alice.public()).balance - owner_before, 10 * owner_cut);
    let emitted: u64 = h.state.subnets[&1].neurons.iter().map(|n| n.emission).sum();
    let pot = 10 * (RAO_PER_TAO - owner_cut);
    assert!(emitted <= pot && emitted + 10 >= pot, "emitted {emitted} of pot {pot}");
    // Miners and validator each get about half (41/41 of the total).
    let miners = m1n.emission + m2n.emission;
    assert!(miners.abs_diff(vn.emission) <= pot / 100, "miners {miners} vs validator {}", vn.emission);
    let subnet = &h.state.subnets[&1];
    let since_epoch = h.state.block - subnet.last_step_block;
    assert_eq!(subnet.pending_emission, since_epoch * (RAO_PER_TAO - owner_cut));
}

/// Subnet 1 as [`Harness::subnet_with_neurons`], past its first epoch (the validator holds a
/// permit), with commit-reveal on (period `period`).
fn commit_reveal_subnet(h: &mut Harness, period: u64) -> (Keypair, Keypair, Keypair) {
    let (v, m1, m2) = h.subnet_with_neurons();
    h.blocks(10);
    assert!(h.neuron(1, 1).validator_permit);
    let update = HyperparamUpdate { commit_reveal_weights_enabled: Some(true), commit_reveal_period: Some(period), ..Default::default() };
    h.ok(&key("//Alice"), Call::SetHyperparams { netuid: 1, update });
    (v, m1, m2)
}

fn commit(hotkey: &Keypair, uids: &[u16], values: &[u16], salt: &[u16], version_key: u64) -> Call {
    Call::CommitWeights { netuid: 1, commit_hash: weight_hash(&hotkey.public(), 1, uids, values, salt, version_key) }
}

fn reveal(uids: &[u16], values: &[u16], salt: &[u16], version_key: u64) -> Call {
    Call::RevealWeights { netuid: 1, uids: uids.to_vec(), values: values.to_vec(), salt: salt.to_vec(), version_key }
}

/// Finalises blocks until the subnet's next epoch has run.
fn next_epoch(h: &mut Harness) {
    let index = h.state.subnets[&1].epoch_index;
    while h.state.subnets[&1].epoch_index == index {
        h.blocks(1);
    }
}

#[test]
fn commit_reveal_is_refused_when_off_and_set_weights_when_on() {
    let mut h = Harness::new();
    let (v, _, _) = h.subnet_with_neurons();
    h.blocks(10);
    h.refused(&v, commit(&v, &[2], &[1], &[7], 0), "CommitRevealDisabled");
    h.refused(&v, reveal(&[2], &[1], &[7], 0), "CommitRevealDisabled");
    h.ok(&key("//Alice"), Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { commit_reveal_weights_enabled: Some(true), ..Default::default() } });
    h.refused(&v, Call::SetWeights { netuid: 1, uids: vec![2], values: vec![1], version_key: 0 }, "CommitRevealEnabled");
    h.refused(&key("//stranger"), commit(&v, &[2], &[1], &[7], 0), "HotKeyNotRegisteredInSubNet");
    h.refused(&v, reveal(&[2], &[1], &[7], 0), "NoWeightsCommitFound");
}

#[test]
fn reveal_only_in_the_reveal_epoch_then_weights_are_set() {
    let mut h = Harness::new();
    let (v, _, _) = commit_reveal_subnet(&mut h, 1);
    let (uids, values, salt) = ([2u16, 3], [u16::MAX, 100], [11u16, 22, 33]);
    h.blocks(1);
    let weights_before = h.neuron(1, 1).weights.clone();
    h.ok(&v, commit(&v, &uids, &values, &salt, 0));
    let committed_at = h.state.pending_block();
    assert_eq!(h.neuron(1, 1).last_update, committed_at, "a commit sets last_update");
    let infos = h.state.subnets[&1].weight_commit_infos(&AccountId(v.public()));
    assert_eq!(infos.len(), 1);
    let info = infos[0].clone();
    assert_eq!((info.commit_block, info.reveal_epoch), (committed_at, info.commit_epoch + 1));
    // Same epoch: too early.
    h.refused(&v, reveal(&uids, &values, &salt, 0), "RevealTooEarly");
    // A wrong salt, values or version key: no match.
    h.refused(&v, reveal(&uids, &values, &[11, 22, 34], 0), "InvalidRevealCommitHashNotMatch");
    h.refused(&v, reveal(&uids, &[u16::MAX, 101], &salt, 0), "InvalidRevealCommitHashNotMatch");
    h.refused(&v, reveal(&uids, &values, &salt, 1), "InvalidRevealCommitHashNotMatch");
    next_epoch(&mut h);
    // The advertised window is where the chain now is.
    let pending = h.state.pending_block();
    assert!((info.first_reveal_block..=info.last_reveal_block).contains(&pending), "{pending} not in {info:?}");
    // Another hotkey cannot reveal it (the hash binds the hotkey).
    h.refused(&key("//M1"), reveal(&uids, &values, &salt, 0), "NoWeightsCommitFound");
    assert_eq!(h.neuron(1, 1).weights, weights_before, "nothing set before the reveal");
    h.ok(&v, reveal(&uids, &values, &salt, 0));
    assert_eq!(h.neuron(1, 1).weights, vec![(2, 65535), (3, 100)]);
    assert_eq!(h.neuron(1, 1).last_update, committed_at, "a reveal does not move last_update");
    assert!(h.state.subnets[&1].weight_commits.is_empty(), "the revealed commit is gone");
    h.refused(&v, reveal(&uids, &values, &salt, 0), "NoWeightsCommitFound");
}

#[test]
fn expired_commits_are_refused_and_dropped() {
    let mut h = Harness::new();
    let (v, _, _) = commit_reveal_subnet(&mut h, 2);
    h.ok(&v, commit(&v, &[2], &[5], &[1], 0));
    next_epoch(&mut h);
    h.refused(&v, reveal(&[2], &[5], &[1], 0), "RevealTooEarly");
    next_epoch(&mut h);
    next_epoch(&mut h);
    // Epoch commit+3 with a period of 2: expired.
    h.refused(&v, reveal(&[2], &[5], &[1], 0), "ExpiredWeightCommit");
    h.refused(&v, reveal(&[2], &[6], &[1], 0), "NoWeightsCommitFound");
    assert!(h.state.subnets[&1].weight_commit_infos(&AccountId(v.public())).is_empty(), "expired commits are not shown");
    // A new commit drops the expired one; a hash matching only the expired one says so.
    h.ok(&v, commit(&v, &[3], &[5], &[1], 0));
    assert_eq!(h.state.subnets[&1].weight_commits[&AccountId(v.public())].len(), 1);
    h.refused(&v, reveal(&[3], &[5], &[9], 0), "InvalidRevealCommitHashNotMatch");
}

#[test]
fn pending_commits_queue_up_to_ten_and_a_reveal_drops_older_ones() {
    let mut h = Harness::new();
    let (v, _, _) = commit_reveal_subnet(&mut h, 1);
    for i in 0..10u16 {
        h.ok(&v, commit(&v, &[2], &[i + 1], &[i], 0));
    }
    h.refused(&v, commit(&v, &[2], &[99], &[99], 0), "TooManyUnrevealedCommits");
    next_epoch(&mut h);
    h.refused(&v, commit(&v, &[2], &[99], &[99], 0), "TooManyUnrevealedCommits");
    // Revealing the fourth drops the first four.
    h.ok(&v, reveal(&[2], &[4], &[3], 0));
    assert_eq!(h.neuron(1, 1).weights, vec![(2, 65535)]);
    assert_eq!(h.state.subnets[&1].weight_commits[&AccountId(v.public())].len(), 6);
    h.refused(&v, reveal(&[2], &[2], &[1], 0), "InvalidRevealCommitHashNotMatch");
    h.ok(&v, reveal(&[2], &[10], &[9], 0));
    assert!(h.state.subnets[&1].weight_commits.is_empty());
}

#[test]
fn commits_are_rate_limited_and_reveals_are_checked_like_set_weights() {
    let mut h = Harness::new();
    let (v, _, _) = commit_reveal_subnet(&mut h, 1);
    h.ok(&key("//Alice"), Call::SetHyperparams { netuid: 1, update: HyperparamUpdate { weights_rate_limit: Some(5), ..Default::default() } });
    // Just after an epoch, so that both commits below fall in the same one (tempo 10).
    next_epoch(&mut h);
    h.ok(&v, commit(&v, &[2, 2], &[1, 1], &[1], 0));
    h.refused(&v, commit(&v, &[2], &[1], &[2], 0), "CommittingWeightsTooFast");
    h.blocks(5);
    h.ok(&v, commit(&v, &[2], &[1], &[2], 0));
    next_epoch(&mut h);
    // The hash matches, but the weights are invalid: refused with set_weights' error, and the
    // commit stays (the state is unchanged).
    h.refused(&v, reveal(&[2, 2], &[1, 1], &[1], 0), "DuplicateUids");
    // Revealing within the rate limit of the last commit is fine.
    h.ok(&v, reveal(&[2], &[1], &[2], 0));
}

#[test]
fn pending_commits_survive_the_store_encoding_and_pruning_drops_them() {
    let mut h = Harness::new();
    let (v, _, _) = commit_reveal_subnet(&mut h, 1);
    h.ok(&v, commit(&v, &[2], &[1], &[2], 0));
    let subnet = h.state.subnets[&1].clone();
    let json = serde_json::to_vec(&subnet).unwrap_or_default();
    let back: Option<Subnet> = serde_json::from_slice(&json).ok();
    assert_eq!(back.as_ref(), Some(&subnet));
    // A subnet stored before commit-reveal existed reads back with no commits.
    let mut value = serde_json::to_value(&subnet).unwrap_or_default();
    value.as_object_mut().map(|o| o.remove("weight_commits"));
    let old: Option<Subnet> = serde_json::from_value(value).ok();
    assert_eq!(old.map(|s| s.weight_commits.len()), Some(0));
    // Epoch: the commit-reveal mask sees the validator's pending commit.
    assert_eq!(h.state.subnets[&1].commit_blocks()[1], h.state.pending_block());
    assert_eq!(h.state.subnets[&1].commit_blocks()[2], u64::MAX);
}
