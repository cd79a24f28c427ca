//! Subnet hyperparameters with the originals' defaults for new subnets
//! (`init_new_network` values, spec/chain.md §1.1, §2, §4), and owner updates to them.

use serde::{Deserialize, Serialize};

use crate::error::TxError;

/// A subnet's hyperparameters. Names follow subtensor's `SubnetHyperparams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hyperparams {
    /// Blocks between epochs (subtensor default 360; `--tempo` sets it for new subnets).
    pub tempo: u16,
    /// κ as a u16 proportion (32767 ≈ 0.5).
    pub kappa: u16,
    /// Blocks a new neuron is protected from pruning (new subnets 5000).
    pub immunity_period: u16,
    /// Minimum weights a validator must set (new subnets 1).
    pub min_allowed_weights: u16,
    /// Max normalised weight as a u16 proportion (65535 = no limit).
    pub max_weights_limit: u16,
    /// Minimum validator version key (0 = any).
    pub weights_version: u64,
    /// Blocks between two weight updates of a neuron (100).
    pub weights_rate_limit: u64,
    /// Blocks after its last update that a neuron stays active (5000).
    pub activity_cutoff: u16,
    /// `MaxAllowedUids` (new subnets 256).
    pub max_allowed_uids: u16,
    /// `MaxAllowedValidators` (new subnets 64).
    pub max_allowed_validators: u16,
    /// Registrations accepted per block (`MaxRegistrationsPerBlock`, 1).
    pub max_registrations_per_block: u16,
    /// Whether registration is open.
    pub registration_allowed: bool,
    /// Minimum burn in rao (500_000).
    pub min_burn: u64,
    /// Maximum burn in rao (100 TAO).
    pub max_burn: u64,
    /// `BondsMovingAverage` in millionths (900_000).
    pub bonds_moving_average: u64,
    /// `BondsPenalty` as a u16 proportion (65535).
    pub bonds_penalty: u16,
    /// Blocks between two `serve_axon` of a neuron (50).
    pub serving_rate_limit: u64,
    /// Hash-based weight commit-reveal (`CommitRevealWeightsEnabled`, new subnets false):
    /// when true, `set_weights` fails with `CommitRevealEnabled` and validators
    /// `commit_weights` then `reveal_weights` (see `ganglion_chain::commit_reveal`).
    pub commit_reveal_weights_enabled: bool,
    /// Epochs between a weight commit and its reveal (`RevealPeriodEpochs`, default 1).
    #[serde(default = "default_reveal_period")]
    pub commit_reveal_period: u64,
    /// Which commit-reveal the chain runs when it is on (`CommitRevealWeightsVersion`):
    /// 1 the hash-based commit and reveal (the local chain, older subtensor runtimes), 3 and
    /// above drand-timelocked commits the chain reveals itself (`ganglion_chain::timelock`).
    #[serde(default = "default_commit_reveal_version")]
    pub commit_reveal_version: u16,
    /// `Yuma3On` (new subnets true).
    pub yuma3_enabled: bool,
    /// `LiquidAlphaOn` (false).
    pub liquid_alpha_enabled: bool,
    /// `AlphaValues.0` (45875 ≈ 0.7).
    pub alpha_low: u16,
    /// `AlphaValues.1` (58982 ≈ 0.9).
    pub alpha_high: u16,
    /// `AlphaSigmoidSteepness` (1000).
    pub alpha_sigmoid_steepness: i16,
    /// `StakeThreshold` in rao (0).
    pub stake_threshold: u64,
}

fn default_reveal_period() -> u64 {
    crate::commit_reveal::DEFAULT_REVEAL_PERIOD
}

fn default_commit_reveal_version() -> u16 {
    1
}

impl Hyperparams {
    /// Whether weights go on chain as drand-timelocked commits (commit-reveal on, version 3+).
    pub fn timelocked_commits(&self) -> bool {
        self.commit_reveal_weights_enabled && self.commit_reveal_version >= 3
    }
}

/// Largest `commit_reveal_period` accepted, in epochs.
pub const MAX_REVEAL_PERIOD: u64 = 1_000;

impl Hyperparams {
    /// Defaults of a new subnet with the given tempo.
    pub fn new_subnet(tempo: u16) -> Hyperparams {
        Hyperparams {
            tempo,
            kappa: 32_767,
            immunity_period: 5_000,
            min_allowed_weights: 1,
            max_weights_limit: u16::MAX,
            weights_version: 0,
            weights_rate_limit: 100,
            activity_cutoff: 5_000,
            max_allowed_uids: 256,
            max_allowed_validators: 64,
            max_registrations_per_block: 1,
            registration_allowed: true,
            min_burn: 500_000,
            max_burn: 100_000_000_000,
            bonds_moving_average: 900_000,
            bonds_penalty: u16::MAX,
            serving_rate_limit: 50,
            commit_reveal_weights_enabled: false,
            commit_reveal_period: crate::commit_reveal::DEFAULT_REVEAL_PERIOD,
            commit_reveal_version: 1,
            yuma3_enabled: true,
            liquid_alpha_enabled: false,
            alpha_low: 45_875,
            alpha_high: 58_982,
            alpha_sigmoid_steepness: 1_000,
            stake_threshold: 0,
        }
    }
}

/// An owner's change to some hyperparameters; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperparamUpdate {
    /// See [`Hyperparams::tempo`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo: Option<u16>,
    /// See [`Hyperparams::kappa`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kappa: Option<u16>,
    /// See [`Hyperparams::immunity_period`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immunity_period: Option<u16>,
    /// See [`Hyperparams::min_allowed_weights`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_allowed_weights: Option<u16>,
    /// See [`Hyperparams::max_weights_limit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weights_limit: Option<u16>,
    /// See [`Hyperparams::weights_version`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_version: Option<u64>,
    /// See [`Hyperparams::weights_rate_limit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_rate_limit: Option<u64>,
    /// See [`Hyperparams::activity_cutoff`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_cutoff: Option<u16>,
    /// See [`Hyperparams::max_allowed_uids`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_allowed_uids: Option<u16>,
    /// See [`Hyperparams::max_allowed_validators`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_allowed_validators: Option<u16>,
    /// See [`Hyperparams::max_registrations_per_block`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_registrations_per_block: Option<u16>,
    /// See [`Hyperparams::registration_allowed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_allowed: Option<bool>,
    /// See [`Hyperparams::min_burn`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_burn: Option<u64>,
    /// See [`Hyperparams::max_burn`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_burn: Option<u64>,
    /// See [`Hyperparams::bonds_moving_average`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonds_moving_average: Option<u64>,
    /// See [`Hyperparams::bonds_penalty`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonds_penalty: Option<u16>,
    /// See [`Hyperparams::serving_rate_limit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_rate_limit: Option<u64>,
    /// See [`Hyperparams::commit_reveal_weights_enabled`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_reveal_weights_enabled: Option<bool>,
    /// See [`Hyperparams::commit_reveal_period`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_reveal_period: Option<u64>,
    /// See [`Hyperparams::yuma3_enabled`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yuma3_enabled: Option<bool>,
    /// See [`Hyperparams::liquid_alpha_enabled`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liquid_alpha_enabled: Option<bool>,
    /// See [`Hyperparams::alpha_low`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_low: Option<u16>,
    /// See [`Hyperparams::alpha_high`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_high: Option<u16>,
    /// See [`Hyperparams::alpha_sigmoid_steepness`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha_sigmoid_steepness: Option<i16>,
    /// See [`Hyperparams::stake_threshold`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_threshold: Option<u64>,
}

macro_rules! apply_fields {
    ($update:expr, $target:expr, $($field:ident),*) => {
        $( if let Some(v) = $update.$field { $target.$field = v; } )*
    };
}

impl HyperparamUpdate {
    /// Parse `name=value` as the CLI's `hyperparams set NAME VALUE`.
    pub fn from_name_value(name: &str, value: &str) -> Result<HyperparamUpdate, String> {
        let name = name.replace('-', "_");
        let mut object = serde_json::Map::new();
        let parsed: serde_json::Value = match value {
            "true" | "false" => serde_json::Value::Bool(value == "true"),
            _ => value
                .parse::<i64>()
                .map(serde_json::Value::from)
                .or_else(|_| value.parse::<u64>().map(serde_json::Value::from))
                .map_err(|_| format!("value `{value}` for `{name}` is not an integer or true/false"))?,
        };
        object.insert(name.clone(), parsed);
        serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| format!("cannot set `{name}` to `{value}`: {e}; see `ganglion subnet hyperparams` for names"))
    }

    /// Apply to `params`, checking ranges; on error `params` is unchanged.
    pub fn apply(&self, params: &mut Hyperparams, n: u16) -> Result<(), TxError> {
        let mut next = params.clone();
        apply_fields!(
            self, next, tempo, kappa, immunity_period, min_allowed_weights, max_weights_limit, weights_version,
            weights_rate_limit, activity_cutoff, max_allowed_uids, max_allowed_validators,
            max_registrations_per_block, registration_allowed, min_burn, max_burn, bonds_moving_average,
            bonds_penalty, serving_rate_limit, commit_reveal_weights_enabled, commit_reveal_period, yuma3_enabled, liquid_alpha_enabled,
            alpha_low, alpha_high, alpha_sigmoid_steepness, stake_threshold
        );
        let bad = |m: String| Err(TxError::InvalidHyperparameter(m));
        if next.tempo == 0 {
            return bad("tempo must be at least 1 block".into());
        }
        if next.max_allowed_uids < n.max(1) {
            return bad(format!("max_allowed_uids {} is below the {} registered neurons", next.max_allowed_uids, n));
        }
        if next.max_allowed_validators == 0 {
            return bad("max_allowed_validators must be at least 1".into());
        }
        if next.min_burn > next.max_burn {
            return bad("min_burn must not exceed max_burn".into());
        }
        if next.bonds_moving_average > 1_000_000 {
            return bad("bonds_moving_average is in millionths and must be <= 1000000".into());
        }
        if !(1..=MAX_REVEAL_PERIOD).contains(&next.commit_reveal_period) {
            return bad(format!("commit_reveal_period is in epochs and must be between 1 and {MAX_REVEAL_PERIOD}"));
        }
        if next.alpha_low > next.alpha_high {
            return bad("alpha_low must not exceed alpha_high".into());
        }
        if next.max_allowed_uids > 4096 {
            return bad("max_allowed_uids is capped at 4096 on the local chain".into());
        }
        *params = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_name_value() {
        let u = HyperparamUpdate::from_name_value("weights-rate-limit", "0").unwrap_or_default();
        assert_eq!(u.weights_rate_limit, Some(0));
        let u = HyperparamUpdate::from_name_value("yuma3_enabled", "false").unwrap_or_default();
        assert_eq!(u.yuma3_enabled, Some(false));
        assert!(HyperparamUpdate::from_name_value("nope", "1").is_err());
        assert!(HyperparamUpdate::from_name_value("tempo", "x").is_err());
        assert!(HyperparamUpdate::from_name_value("tempo", "70000").is_err());
        let u = HyperparamUpdate::from_name_value("commit-reveal-weights-enabled", "true").unwrap_or_default();
        assert_eq!(u.commit_reveal_weights_enabled, Some(true));
        let u = HyperparamUpdate::from_name_value("commit_reveal_period", "3").unwrap_or_default();
        assert_eq!(u.commit_reveal_period, Some(3));
    }

    #[test]
    fn commit_reveal_period_is_checked_and_old_documents_default_it() {
        let mut p = Hyperparams::new_subnet(10);
        assert_eq!(p.commit_reveal_period, 1);
        let u = HyperparamUpdate { commit_reveal_period: Some(0), ..Default::default() };
        assert!(u.apply(&mut p, 1).is_err());
        let u = HyperparamUpdate { commit_reveal_period: Some(2), commit_reveal_weights_enabled: Some(true), ..Default::default() };
        assert!(u.apply(&mut p, 1).is_ok());
        assert_eq!((p.commit_reveal_period, p.commit_reveal_weights_enabled), (2, true));
        // A subnet stored before the field existed reads back with the default.
        let mut json = serde_json::to_value(Hyperparams::new_subnet(10)).unwrap_or_default();
        json.as_object_mut().map(|o| o.remove("commit_reveal_period"));
        let back: Option<Hyperparams> = serde_json::from_value(json).ok();
        assert_eq!(back.map(|h| h.commit_reveal_period), Some(1));
    }

    #[test]
    fn apply_checks_ranges_and_leaves_params_on_error() {
        let mut p = Hyperparams::new_subnet(10);
        let before = p.clone();
        let u = HyperparamUpdate { tempo: Some(0), kappa: Some(1), ..Default::default() };
        assert_eq!(u.apply(&mut p, 3).map_err(|e| e.name()), Err("InvalidHyperparameter"));
        assert_eq!(p, before);
        let u = HyperparamUpdate { max_allowed_uids: Some(2), ..Default::default() };
        assert!(u.apply(&mut p, 3).is_err());
        let u = HyperparamUpdate { tempo: Some(20), kappa: Some(1), ..Default::default() };
        assert!(u.apply(&mut p, 3).is_ok());
        assert_eq!((p.tempo, p.kappa), (20, 1));
    }
}
