//! Who may call a node: the checks both subnets' miners and validators apply to a verified
//! caller, answered from a [`CallerDirectory`] that the subnets fill from the metagraph.
//!
//! Semantics (fixing the compute subnet's inverted whitelist): the blacklists always deny;
//! a non-empty whitelist *restricts* callers to its members, and members still pass every
//! other check. A whitelist never lets anybody skip a check.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use ganglion_core::keys::PublicKey;

/// What the directory knows about a registered hotkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerInfo {
    /// The coldkey that owns the hotkey.
    pub coldkey: PublicKey,
    /// Stake behind the hotkey, in rao.
    pub stake_rao: u64,
    /// Whether the hotkey holds a validator permit.
    pub validator_permit: bool,
}

/// Looks up callers; implemented over the metagraph by the subnets.
pub trait CallerDirectory: Send + Sync {
    /// The caller's registration, or `None` when the hotkey is not registered.
    fn lookup(&self, hotkey: &PublicKey) -> Option<CallerInfo>;
}

/// A directory held in memory and replaced wholesale on every metagraph sync.
#[derive(Debug, Default)]
pub struct SharedDirectory {
    entries: RwLock<Arc<HashMap<PublicKey, CallerInfo>>>,
}

impl SharedDirectory {
    /// Replaces the whole table (cheap for readers: they keep the old `Arc` until done).
    pub fn replace(&self, entries: HashMap<PublicKey, CallerInfo>) {
        let fresh = Arc::new(entries);
        match self.entries.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }
}

impl CallerDirectory for SharedDirectory {
    fn lookup(&self, hotkey: &PublicKey) -> Option<CallerInfo> {
        let table = match self.entries.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        table.get(hotkey).copied()
    }
}

/// Why a verified caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The hotkey is blacklisted.
    #[error("hotkey {0} is blacklisted")]
    HotkeyBlacklisted(String),
    /// The coldkey owning the hotkey is blacklisted.
    #[error("coldkey {0} is blacklisted")]
    ColdkeyBlacklisted(String),
    /// A hotkey whitelist is set and the caller is not on it.
    #[error("hotkey {0} is not on this node's whitelist")]
    HotkeyNotWhitelisted(String),
    /// A coldkey whitelist is set and the caller's coldkey is not on it.
    #[error("the coldkey of {0} is not on this node's whitelist")]
    ColdkeyNotWhitelisted(String),
    /// The hotkey is not registered on the subnet.
    #[error("hotkey {0} is not registered on this subnet")]
    NotRegistered(String),
    /// Stake below the minimum.
    #[error("hotkey {hotkey} has {have} rao staked, this node requires {need}")]
    InsufficientStake {
        /// The caller.
        hotkey: String,
        /// Stake it has.
        have: u64,
        /// Stake required.
        need: u64,
    },
    /// No validator permit.
    #[error("hotkey {0} has no validator permit")]
    NoValidatorPermit(String),
}

impl Denial {
    /// A stable machine-readable code (sent as `error.reason` in a 403 answer).
    pub fn code(&self) -> &'static str {
        match self {
            Denial::HotkeyBlacklisted(_) | Denial::ColdkeyBlacklisted(_) => "blacklisted",
            Denial::HotkeyNotWhitelisted(_) | Denial::ColdkeyNotWhitelisted(_) => "not_whitelisted",
            Denial::NotRegistered(_) => "not_registered",
            Denial::InsufficientStake { .. } => "insufficient_stake",
            Denial::NoValidatorPermit(_) => "no_validator_permit",
        }
    }
}

/// Decides whether a verified caller may proceed.
pub trait CallerPolicy: Send + Sync {
    /// `Ok` to serve the caller, or the reason to refuse.
    fn check(&self, hotkey: &PublicKey) -> Result<(), Denial>;
}

/// Lets every correctly signed caller through (tests, private deployments).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl CallerPolicy for AllowAll {
    fn check(&self, _hotkey: &PublicKey) -> Result<(), Denial> {
        Ok(())
    }
}

/// The configurable checks of the originals.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// Refuse hotkeys that are not registered on the subnet.
    pub require_registered: bool,
    /// Minimum stake in rao (0: no minimum). Implies registration when non-zero.
    pub min_stake_rao: u64,
    /// Refuse hotkeys without a validator permit. Implies registration.
    pub require_validator_permit: bool,
    /// Hotkeys always refused.
    pub hotkey_blacklist: HashSet<PublicKey>,
    /// If non-empty, only these hotkeys may call.
    pub hotkey_whitelist: HashSet<PublicKey>,
    /// Coldkeys whose hotkeys are always refused.
    pub coldkey_blacklist: HashSet<PublicKey>,
    /// If non-empty, only hotkeys owned by these coldkeys may call.
    pub coldkey_whitelist: HashSet<PublicKey>,
}

/// [`PolicyConfig`] applied over a directory.
pub struct StandardPolicy {
    config: PolicyConfig,
    directory: Arc<dyn CallerDirectory>,
}

impl std::fmt::Debug for StandardPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandardPolicy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl StandardPolicy {
    /// Applies `config` to callers looked up in `directory`.
    pub fn new(config: PolicyConfig, directory: Arc<dyn CallerDirectory>) -> StandardPolicy {
        StandardPolicy { config, directory }
    }
}

impl CallerPolicy for StandardPolicy {
    fn check(&self, hotkey: &PublicKey) -> Result<(), Denial> {
        let config = &self.config;
        let name = || hotkey.to_ss58();
        if config.hotkey_blacklist.contains(hotkey) {
            return Err(Denial::HotkeyBlacklisted(name()));
        }
        if !config.hotkey_whitelist.is_empty() && !config.hotkey_whitelist.contains(hotkey) {
            return Err(Denial::HotkeyNotWhitelisted(name()));
        }
        let info = self.directory.lookup(hotkey);
        if let Some(info) = &info
            && config.coldkey_blacklist.contains(&info.coldkey) {
                return Err(Denial::ColdkeyBlacklisted(info.coldkey.to_ss58()));
            }
        if !config.coldkey_whitelist.is_empty() {
            match &info {
                Some(info) if config.coldkey_whitelist.contains(&info.coldkey) => {}
                _ => return Err(Denial::ColdkeyNotWhitelisted(name())),
            }
        }
        let needs_registration = config.require_registered || config.min_stake_rao > 0 || config.require_validator_permit;
        let Some(info) = info else {
            return if needs_registration { Err(Denial::NotRegistered(name())) } else { Ok(()) };
        };
        if info.stake_rao < config.min_stake_rao {
            return Err(Denial::InsufficientStake { hotkey: name(), have: info.stake_rao, need: config.min_stake_rao });
        }
        if config.require_validator_permit && !info.validator_permit {
            return Err(Denial::NoValidatorPermit(name()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ganglion_core::keys::Keypair;

    fn key(uri: &str) -> PublicKey {
        Keypair::from_uri(uri).expect("uri").public()
    }

    fn directory() -> Arc<SharedDirectory> {
        let dir = Arc::new(SharedDirectory::default());
        let mut table = HashMap::new();
        table.insert(key("//Validator"), CallerInfo { coldkey: key("//Cold1"), stake_rao: 5_000, validator_permit: true });
        table.insert(key("//Miner"), CallerInfo { coldkey: key("//Cold2"), stake_rao: 10, validator_permit: false });
        dir.replace(table);
        dir
    }

    #[test]
    fn registration_stake_and_permit() {
        let config = PolicyConfig { min_stake_rao: 1_000, require_validator_permit: true, ..PolicyConfig::default() };
        let policy = StandardPolicy::new(config, directory());
        assert_eq!(policy.check(&key("//Validator")), Ok(()));
        assert!(matches!(policy.check(&key("//Miner")), Err(Denial::InsufficientStake { have: 10, need: 1_000, .. })));
        assert!(matches!(policy.check(&key("//Stranger")), Err(Denial::NotRegistered(_))));

        let permit_only = PolicyConfig { require_validator_permit: true, ..PolicyConfig::default() };
        let policy = StandardPolicy::new(permit_only, directory());
        assert!(matches!(policy.check(&key("//Miner")), Err(Denial::NoValidatorPermit(_))));
    }

    #[test]
    fn whitelist_restricts_and_never_bypasses() {
        let mut config = PolicyConfig { min_stake_rao: 1_000, ..PolicyConfig::default() };
        config.hotkey_whitelist.insert(key("//Miner"));
        config.hotkey_whitelist.insert(key("//Stranger"));
        let policy = StandardPolicy::new(config, directory());
        // Not on the list: refused even though it would pass every other check.
        assert!(matches!(policy.check(&key("//Validator")), Err(Denial::HotkeyNotWhitelisted(_))));
        // On the list but failing the other checks: still refused (the original let these through).
        assert!(matches!(policy.check(&key("//Miner")), Err(Denial::InsufficientStake { .. })));
        assert!(matches!(policy.check(&key("//Stranger")), Err(Denial::NotRegistered(_))));
    }

    #[test]
    fn blacklists_and_coldkey_lists() {
        let mut config = PolicyConfig::default();
        config.coldkey_blacklist.insert(key("//Cold2"));
        let policy = StandardPolicy::new(config, directory());
        assert!(matches!(policy.check(&key("//Miner")), Err(Denial::ColdkeyBlacklisted(_))));
        assert_eq!(policy.check(&key("//Stranger")), Ok(()), "nothing requires registration");

        let mut config = PolicyConfig::default();
        config.coldkey_whitelist.insert(key("//Cold1"));
        config.hotkey_blacklist.insert(key("//Validator"));
        let policy = StandardPolicy::new(config, directory());
        assert!(matches!(policy.check(&key("//Validator")), Err(Denial::HotkeyBlacklisted(_))));
        assert!(matches!(policy.check(&key("//Miner")), Err(Denial::ColdkeyNotWhitelisted(_))));
        assert!(matches!(policy.check(&key("//Stranger")), Err(Denial::ColdkeyNotWhitelisted(_))));
    }
}
