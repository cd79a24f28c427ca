//! The runtime calls the client submits, built as subxt dynamic payloads and shaped from the
//! runtime's metadata: pallet and call indices come from the metadata when the call is
//! encoded (never from this code), and where runtimes differ in a call's arguments
//! (`register_network` takes `(hotkey, mechid)` in spec 218 and `(hotkey)` in 346/381,
//! `add_stake` gained `netuid` in 218) the call's fields in the metadata decide.
//!
//! Arguments are given by name; [`build`] checks them against the call's fields, so that a
//! runtime whose call changed shape is refused with a [`SubtensorError::Metadata`] naming
//! the argument rather than encoded wrongly.

use std::net::IpAddr;

use ganglion_core::keys::PublicKey;
use subxt::Metadata;
use subxt::dynamic::Value;
use subxt::ext::scale_value::Composite;
use subxt::tx::DynamicPayload;

use crate::error::{SubtensorError, SubtensorResult};

/// A call ready to sign: a dynamic payload (pallet and call by name, named arguments).
pub type Call = DynamicPayload<Composite<()>>;

/// The pallet of the subnet calls.
pub const SUBTENSOR: &str = "SubtensorModule";
/// The pallet of the sudo-only hyperparameter setters.
pub const ADMIN_UTILS: &str = "AdminUtils";

/// `pallet.call` for messages.
pub fn call_label(call: &Call) -> String {
    format!("{}.{}", call.pallet_name(), call.call_name())
}

/// The argument names of `pallet.call` in this runtime, in order.
pub fn call_fields(metadata: &Metadata, pallet: &str, call: &str) -> SubtensorResult<Vec<String>> {
    Ok(call_variant(metadata, pallet, call)?.2)
}

/// Builds `pallet.call` from named arguments. Every field of the call in `metadata` must be
/// given; a given argument the call does not have is an error unless its name is in
/// `optional` (arguments that only some runtimes take).
pub fn build(
    metadata: &Metadata,
    pallet: &str,
    call: &str,
    args: Vec<(&str, Value)>,
    optional: &[&str],
) -> SubtensorResult<Call> {
    let fields = call_fields(metadata, pallet, call)?;
    let mut args: Vec<(&str, Option<Value>)> =
        args.into_iter().map(|(n, v)| (n, Some(v))).collect();
    let mut ordered = Vec::with_capacity(fields.len());
    for field in &fields {
        let value = args
            .iter_mut()
            .find(|(name, _)| name == field)
            .and_then(|(_, v)| v.take())
            .ok_or_else(|| SubtensorError::Metadata {
                url: "metadata".into(),
                what: format!(
                    "value for argument `{field}` of {pallet}.{call} (the call's arguments: {})",
                    fields.join(", ")
                ),
            })?;
        ordered.push((field.clone(), value));
    }
    if let Some((name, _)) = args
        .iter()
        .find(|(name, v)| v.is_some() && !optional.contains(name))
    {
        return Err(SubtensorError::Metadata {
            url: "metadata".into(),
            what: format!(
                "argument `{name}` in {pallet}.{call} (the call's arguments: {})",
                fields.join(", ")
            ),
        });
    }
    Ok(subxt::dynamic::tx(pallet, call, Composite::named(ordered)))
}

fn account(key: &PublicKey) -> Value {
    Value::from_bytes(key.as_bytes())
}

/// A `Vec<u16>` argument.
fn list(xs: &[u16]) -> Value {
    Value::unnamed_composite(xs.iter().map(|&x| u(x)))
}

fn u(n: impl Into<u128>) -> Value {
    Value::u128(n.into())
}

/// `Sudo.sudo(call)`.
pub fn sudo(metadata: &Metadata, inner: Call) -> SubtensorResult<Call> {
    build(
        metadata,
        "Sudo",
        "sudo",
        vec![("call", inner.into_value())],
        &[],
    )
}

/// `SubtensorModule.register_network`: `(hotkey, mechid)` where the runtime takes a
/// mechanism id, `(hotkey)` otherwise. The mechanism is 1, the one spec 218 has (it
/// refuses 0 with `MechanismDoesNotExist`; measured under chopsticks).
pub fn register_network(metadata: &Metadata, hotkey: &PublicKey) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "register_network",
        vec![("hotkey", account(hotkey)), ("mechid", u(1u16))],
        &["mechid"],
    )
}

/// `SubtensorModule.burned_register(netuid, hotkey)`.
pub fn burned_register(
    metadata: &Metadata,
    netuid: u16,
    hotkey: &PublicKey,
) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "burned_register",
        vec![("netuid", u(netuid)), ("hotkey", account(hotkey))],
        &[],
    )
}

/// `SubtensorModule.add_stake(hotkey, [netuid,] amount_staked)`: `netuid` is passed where
/// the runtime's call takes it (from spec 218 on) and dropped where it does not.
pub fn add_stake(
    metadata: &Metadata,
    hotkey: &PublicKey,
    netuid: u16,
    amount_rao: u64,
) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "add_stake",
        vec![
            ("hotkey", account(hotkey)),
            ("netuid", u(netuid)),
            ("amount_staked", u(amount_rao)),
        ],
        &["netuid"],
    )
}

/// `SubtensorModule.set_weights(netuid, dests, weights, version_key)`.
pub fn set_weights(
    metadata: &Metadata,
    netuid: u16,
    uids: &[u16],
    weights: &[u16],
    version_key: u64,
) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "set_weights",
        vec![
            ("netuid", u(netuid)),
            ("dests", list(uids)),
            ("weights", list(weights)),
            ("version_key", u(version_key)),
        ],
        &[],
    )
}

/// `SubtensorModule.remove_stake` (with `netuid` where the runtime takes it): unstake
/// `amount_rao` from `hotkey` back to the signing coldkey.
pub fn remove_stake(metadata: &Metadata, hotkey: &PublicKey, netuid: u16, amount_rao: u64) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "remove_stake",
        vec![("hotkey", account(hotkey)), ("netuid", u(netuid)), ("amount_unstaked", u(amount_rao))],
        &["netuid"],
    )
}

/// `Balances.transfer_keep_alive(dest, value)`: `amount_rao` to `dest`, never reaping the
/// sender (what btcli's `transfer` sends).
pub fn transfer(metadata: &Metadata, dest: &PublicKey, amount_rao: u64) -> SubtensorResult<Call> {
    build(
        metadata,
        "Balances",
        "transfer_keep_alive",
        vec![("dest", Value::unnamed_variant("Id", [account(dest)])), ("value", u(amount_rao))],
        &[],
    )
}

/// `SubtensorModule.commit_weights(netuid, commit_hash)`: the hash-based commit.
pub fn commit_weights(metadata: &Metadata, netuid: u16, commit_hash: &[u8; 32]) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "commit_weights",
        vec![("netuid", u(netuid)), ("commit_hash", Value::from_bytes(commit_hash))],
        &[],
    )
}

/// `SubtensorModule.reveal_weights(netuid, uids, values, salt, version_key)`.
pub fn reveal_weights(
    metadata: &Metadata,
    netuid: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> SubtensorResult<Call> {
    build(
        metadata,
        SUBTENSOR,
        "reveal_weights",
        vec![
            ("netuid", u(netuid)),
            ("uids", list(uids)),
            ("values", list(values)),
            ("salt", list(salt)),
            ("version_key", u(version_key)),
        ],
        &[],
    )
}

/// A drand-timelocked weight commit (`ganglion_chain::timelock`): the runtime's
/// `commit_timelocked_mechanism_weights(netuid, mecid 0, …)` where it has it (what the SDK
/// sends), `commit_timelocked_weights(netuid, commit, reveal_round, commit_reveal_version)`
/// otherwise.
pub fn commit_timelocked_weights(metadata: &Metadata, netuid: u16, commit: &[u8], reveal_round: u64, version: u16) -> SubtensorResult<Call> {
    let mut args = vec![
        ("netuid", u(netuid)),
        ("commit", Value::from_bytes(commit)),
        ("reveal_round", u(reveal_round)),
        ("commit_reveal_version", u(version)),
    ];
    if call_fields(metadata, SUBTENSOR, "commit_timelocked_mechanism_weights").is_ok() {
        args.push(("mecid", u(0u8)));
        return build(metadata, SUBTENSOR, "commit_timelocked_mechanism_weights", args, &[]);
    }
    build(metadata, SUBTENSOR, "commit_timelocked_weights", args, &[])
}

/// `Commitments.set_commitment(netuid, info)` with one `Data::Raw{len}` field holding
/// `data` (≤ 128 bytes), as the SDK's `commit` publishes it.
pub fn set_commitment(metadata: &Metadata, netuid: u16, data: &[u8]) -> SubtensorResult<Call> {
    if data.len() > ganglion_chain::MAX_COMMITMENT_BYTES {
        return Err(SubtensorError::Encode {
            call: "Commitments.set_commitment".into(),
            reason: format!("{} bytes, more than the {} a raw field holds", data.len(), ganglion_chain::MAX_COMMITMENT_BYTES),
        });
    }
    let field = Value::unnamed_variant(format!("Raw{}", data.len()), [Value::from_bytes(data)]);
    let info = Value::named_composite([("fields", Value::unnamed_composite([field]))]);
    build(metadata, "Commitments", "set_commitment", vec![("netuid", u(netuid)), ("info", info)], &[])
}

/// `AdminUtils.<setter>` with its arguments given by position (`netuid`, then the values),
/// since their names differ between setters and runtimes.
pub fn admin_positional(metadata: &Metadata, setter: &str, values: Vec<Value>) -> SubtensorResult<Call> {
    let fields = call_fields(metadata, ADMIN_UTILS, setter)?;
    if fields.len() != values.len() {
        return Err(SubtensorError::Metadata {
            url: "metadata".into(),
            what: format!("{ADMIN_UTILS}.{setter} with {} arguments (it takes {}: {})", values.len(), fields.len(), fields.join(", ")),
        });
    }
    Ok(subxt::dynamic::tx(ADMIN_UTILS, setter, Composite::named(fields.into_iter().zip(values))))
}

/// The `AdminUtils` setters a subnet owner (or sudo) sends for a [`HyperparamUpdate`], in a
/// fixed order, each with its values (after `netuid`).
pub fn hyperparam_setters(update: &ganglion_chain::HyperparamUpdate) -> Vec<(&'static str, Vec<Value>)> {
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut one = |setter: &'static str, v: Option<Value>| {
        if let Some(v) = v {
            out.push((setter, vec![v]));
        }
    };
    one("sudo_set_tempo", update.tempo.map(u));
    one("sudo_set_kappa", update.kappa.map(u));
    one("sudo_set_immunity_period", update.immunity_period.map(u));
    one("sudo_set_min_allowed_weights", update.min_allowed_weights.map(u));
    one("sudo_set_max_weight_limit", update.max_weights_limit.map(u));
    one("sudo_set_weights_version_key", update.weights_version.map(u));
    one("sudo_set_weights_set_rate_limit", update.weights_rate_limit.map(u));
    one("sudo_set_activity_cutoff", update.activity_cutoff.map(u));
    one("sudo_set_max_allowed_uids", update.max_allowed_uids.map(u));
    one("sudo_set_max_allowed_validators", update.max_allowed_validators.map(u));
    one("sudo_set_max_registrations_per_block", update.max_registrations_per_block.map(u));
    one("sudo_set_network_registration_allowed", update.registration_allowed.map(Value::bool));
    one("sudo_set_min_burn", update.min_burn.map(u));
    one("sudo_set_max_burn", update.max_burn.map(u));
    one("sudo_set_bonds_moving_average", update.bonds_moving_average.map(u));
    one("sudo_set_bonds_penalty", update.bonds_penalty.map(u));
    one("sudo_set_serving_rate_limit", update.serving_rate_limit.map(u));
    one("sudo_set_commit_reveal_weights_enabled", update.commit_reveal_weights_enabled.map(Value::bool));
    one("sudo_set_commit_reveal_weights_interval", update.commit_reveal_period.map(u));
    one("sudo_set_yuma3_enabled", update.yuma3_enabled.map(Value::bool));
    one("sudo_set_liquid_alpha_enabled", update.liquid_alpha_enabled.map(Value::bool));
    one("sudo_set_alpha_sigmoid_steepness", update.alpha_sigmoid_steepness.map(|v| Value::i128(i128::from(v))));
    one("sudo_set_stake_threshold", update.stake_threshold.map(u));
    if update.alpha_low.is_some() || update.alpha_high.is_some() {
        // One call sets both: `SubtensorChain` fills the one not given from the chain first;
        // a caller that does not gets the runtime's defaults for it.
        let low = update.alpha_low.unwrap_or(45875);
        let high = update.alpha_high.unwrap_or(58982);
        out.push(("sudo_set_alpha_values", vec![u(low), u(high)]));
    }
    out
}

/// An IP address as subtensor stores it: the address as a u128 and its type (4 or 6).
pub fn ip_to_subtensor(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 4),
        IpAddr::V6(v6) => (u128::from(v6), 6),
    }
}

/// The inverse of [`ip_to_subtensor`]; `None` for an unknown type or a v4 value over 32 bits.
pub fn ip_from_subtensor(ip: u128, ip_type: u8) -> Option<IpAddr> {
    match ip_type {
        4 => u32::try_from(ip).ok().map(|v| IpAddr::V4(v.into())),
        6 => Some(IpAddr::V6(ip.into())),
        _ => None,
    }
}

/// Where an axon serves, as `serve_axon` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxonEndpoint {
    /// Address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
    /// Version as `major·10⁶ + minor·10³ + patch`.
    pub version: u32,
    /// Protocol number (the SDK uses 4).
    pub protocol: u8,
}

/// `SubtensorModule.serve_axon(netuid, version, ip, port, ip_type, protocol, placeholder1,
/// placeholder2)`.
pub fn serve_axon(metadata: &Metadata, netuid: u16, axon: &AxonEndpoint) -> SubtensorResult<Call> {
    let (ip, ip_type) = ip_to_subtensor(axon.ip);
    build(
        metadata,
        SUBTENSOR,
        "serve_axon",
        vec![
            ("netuid", u(netuid)),
            ("version", u(axon.version)),
            ("ip", u(ip)),
            ("port", u(axon.port)),
            ("ip_type", u(ip_type)),
            ("protocol", u(axon.protocol)),
            ("placeholder1", u(0u8)),
            ("placeholder2", u(0u8)),
        ],
        &[],
    )
}

/// `AdminUtils.<setter>(args…)`, e.g. `sudo_set_network_rate_limit(rate_limit)`, to be
/// wrapped in [`sudo`].
pub fn admin(metadata: &Metadata, setter: &str, args: Vec<(&str, Value)>) -> SubtensorResult<Call> {
    build(metadata, ADMIN_UTILS, setter, args, &[])
}

/// SCALE call data (`pallet index ‖ call index ‖ arguments`) of `call` in `metadata`: the
/// indices are looked up in the metadata by name.
pub fn encode(metadata: &Metadata, call: &Call) -> SubtensorResult<Vec<u8>> {
    subxt::ext::frame_decode::extrinsics::encode_call_data(
        call.pallet_name(),
        call.call_name(),
        call.call_data(),
        metadata,
        metadata.types(),
    )
    .map_err(|e| SubtensorError::Encode {
        call: call_label(call),
        reason: e.to_string(),
    })
}

/// The pallet and call index of `pallet.call` in `metadata`.
pub fn call_index(metadata: &Metadata, pallet: &str, call: &str) -> SubtensorResult<(u8, u8)> {
    let (pallet_index, call_index, _) = call_variant(metadata, pallet, call)?;
    Ok((pallet_index, call_index))
}

/// `pallet.call`'s pallet index, call index and argument names in `metadata`, or a typed
/// error naming what is missing.
fn call_variant(metadata: &Metadata, pallet: &str, call: &str) -> SubtensorResult<(u8, u8, Vec<String>)> {
    let missing = |what: String| SubtensorError::Metadata { url: "metadata".into(), what };
    let p = metadata.pallet_by_name(pallet).ok_or_else(|| missing(format!("pallet {pallet}")))?;
    let variant = p.call_variant_by_name(call).ok_or_else(|| missing(format!("call {pallet}.{call}")))?;
    Ok((p.call_index(), variant.index, variant.fields.iter().map(|f| f.name.clone().unwrap_or_default()).collect()))
}
