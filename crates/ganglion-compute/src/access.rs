//! Who may call a miner and which miners a validator queries: hotkey and coldkey black- and
//! whitelists, minimum stake, validator permit, answered from the metagraph.
//!
//! Built on `ganglion_protocol::policy::StandardPolicy`, whose semantics fix the original's
//! inverted whitelist (spec/compute.md §6, commit `61c6caa`): there, a hotkey *outside* a
//! non-empty whitelist returned early and skipped the metagraph, stake, blacklist and
//! exploiter checks. Here a whitelist only restricts; everyone, listed or not, passes every
//! other check.

use std::collections::HashSet;
use std::sync::Arc;

use ganglion_core::keys::PublicKey;
use ganglion_protocol::policy::{CallerPolicy, PolicyConfig, SharedDirectory, StandardPolicy};
use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};

/// The access settings (flag names of the original in comments).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// `--blacklist.hotkeys`.
    pub blacklist_hotkeys: Vec<String>,
    /// `--blacklist.coldkeys`.
    pub blacklist_coldkeys: Vec<String>,
    /// `--whitelist.hotkeys`: if set, only these.
    pub whitelist_hotkeys: Vec<String>,
    /// `--whitelist.coldkeys`: if set, only hotkeys of these coldkeys.
    pub whitelist_coldkeys: Vec<String>,
    /// Minimum stake of callers in TAO (the original: 1024 for validators calling miners).
    pub min_stake_tao: f64,
    /// Callers need a validator permit.
    pub require_validator_permit: bool,
    /// Callers must be registered on the subnet.
    pub require_registered: bool,
}

fn parse_keys(list: &[String], flag: &str) -> Result<HashSet<PublicKey>> {
    list.iter()
        .flat_map(|entry| entry.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<PublicKey>().map_err(|_| ComputeError::Config(format!("{flag}: {s:?} is not an SS58 address or 0x public key"))))
        .collect()
}

impl AccessConfig {
    /// The protocol crate's policy settings.
    pub fn policy_config(&self) -> Result<PolicyConfig> {
        if !self.min_stake_tao.is_finite() || self.min_stake_tao < 0.0 {
            return Err(ComputeError::Config("the minimum stake must be a non-negative number of TAO".into()));
        }
        Ok(PolicyConfig {
            require_registered: self.require_registered,
            min_stake_rao: (self.min_stake_tao * ganglion_chain::RAO_PER_TAO as f64).round() as u64,
            require_validator_permit: self.require_validator_permit,
            hotkey_blacklist: parse_keys(&self.blacklist_hotkeys, "--blacklist.hotkeys")?,
            hotkey_whitelist: parse_keys(&self.whitelist_hotkeys, "--whitelist.hotkeys")?,
            coldkey_blacklist: parse_keys(&self.blacklist_coldkeys, "--blacklist.coldkeys")?,
            coldkey_whitelist: parse_keys(&self.whitelist_coldkeys, "--whitelist.coldkeys")?,
        })
    }

    /// A policy over `directory`.
    pub fn policy(&self, directory: Arc<SharedDirectory>) -> Result<Arc<dyn CallerPolicy>> {
        Ok(Arc::new(StandardPolicy::new(self.policy_config()?, directory)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ganglion_core::keys::Keypair;
    use ganglion_protocol::policy::{CallerInfo, Denial};

    use super::*;

    fn key(uri: &str) -> PublicKey {
        Keypair::from_uri(uri).map(|k| k.public()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn directory() -> Arc<SharedDirectory> {
        let directory = Arc::new(SharedDirectory::default());
        let mut table = HashMap::new();
        table.insert(key("//Trusted"), CallerInfo { coldkey: key("//ColdA"), stake_rao: 10, validator_permit: false });
        table.insert(key("//Validator"), CallerInfo { coldkey: key("//ColdB"), stake_rao: 2_000 * ganglion_chain::RAO_PER_TAO, validator_permit: true });
        directory.replace(table);
        directory
    }

    /// The original's bug: with a whitelist set, a hotkey outside it skipped every check.
    #[test]
    fn a_hotkey_outside_the_whitelist_does_not_skip_the_checks() {
        let config = AccessConfig {
            whitelist_hotkeys: vec![format!("{},{}", key("//Trusted"), key("//Unregistered"))],
            blacklist_coldkeys: vec![key("//ColdB").to_ss58()],
            min_stake_tao: 1024.0,
            require_validator_permit: true,
            ..AccessConfig::default()
        };
        let policy = config.policy(directory()).unwrap_or_else(|e| panic!("{e}"));
        // Not whitelisted: refused (the original let it through without any other check).
        assert!(matches!(policy.check(&key("//Stranger")), Err(Denial::HotkeyNotWhitelisted(_))));
        // Whitelisted hotkeys still pass stake, registration and permit checks.
        assert!(matches!(policy.check(&key("//Trusted")), Err(Denial::InsufficientStake { .. })));
        assert!(matches!(policy.check(&key("//Unregistered")), Err(Denial::NotRegistered(_))));
        // A blacklisted coldkey wins over everything.
        let open = AccessConfig { blacklist_coldkeys: vec![key("//ColdB").to_ss58()], ..AccessConfig::default() };
        let policy = open.policy(directory()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(policy.check(&key("//Validator")), Err(Denial::ColdkeyBlacklisted(_))));
        assert_eq!(policy.check(&key("//Trusted")), Ok(()));
    }

    #[test]
    fn bad_keys_and_stakes_are_configuration_errors() {
        let bad = AccessConfig { blacklist_hotkeys: vec!["not-a-key".into()], ..AccessConfig::default() };
        assert!(matches!(bad.policy_config(), Err(ComputeError::Config(m)) if m.contains("--blacklist.hotkeys")));
        let bad = AccessConfig { min_stake_tao: -1.0, ..AccessConfig::default() };
        assert!(bad.policy_config().is_err());
        let good = AccessConfig { min_stake_tao: 1.5, ..AccessConfig::default() };
        assert_eq!(good.policy_config().map(|c| c.min_stake_rao).ok(), Some(1_500_000_000));
    }
}
