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
    let list = |xs: &[u16]| Value::unnamed_composite(xs.iter().map(|&x| u(x)));
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
