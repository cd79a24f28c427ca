//! Current call layouts, offline: the calls built by `ganglion_subtensor::calls` encoded
//! against the V16 metadata of specs 346 and 381 (`fixtures/subtensor/`). The pallet and
//! call index bytes must be what each metadata says, and the argument bytes what a hand
//! SCALE encoding of the documented argument types gives (u16 netuid, `Vec<u16>`, u64, …).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ganglion_core::keys::Keypair;
use ganglion_subtensor::calls::{self, AxonEndpoint, SUBTENSOR};
use ganglion_subtensor::{Metadata, SubtensorError};
use subxt::ext::codec::Decode;

fn load(name: &str) -> Metadata {
    let path = crate::fixture(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Metadata::decode_from(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `spec_version` from the metadata's own `System.Version` constant.
fn spec_version(metadata: &Metadata) -> u32 {
    let system = metadata
        .pallet_by_name("System")
        .unwrap_or_else(|| panic!("no System pallet"));
    let version = system
        .constant_by_name("Version")
        .unwrap_or_else(|| panic!("no System.Version"));
    let (_name, _impl, _authoring, spec) =
        <(String, String, u32, u32)>::decode(&mut version.value())
            .unwrap_or_else(|e| panic!("{e}"));
    spec
}

/// SCALE compact length prefix (lengths below 2^14).
fn compact(n: usize) -> Vec<u8> {
    match n {
        0..=63 => vec![(n as u8) << 2],
        64..=16383 => (((n as u16) << 2) | 1).to_le_bytes().to_vec(),
        _ => panic!("test lengths stay below 2^14"),
    }
}

fn u16s(xs: &[u16]) -> Vec<u8> {
    let mut out = compact(xs.len());
    xs.iter().for_each(|x| out.extend(x.to_le_bytes()));
    out
}

fn check(metadata: &Metadata, spec: u32, call: &calls::Call, args: Vec<u8>) {
    let encoded = calls::encode(metadata, call).unwrap_or_else(|e| panic!("spec {spec}: {e}"));
    let (pallet, index) = calls::call_index(metadata, call.pallet_name(), call.call_name())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        &encoded[..2],
        &[pallet, index],
        "spec {spec}: {}.{} index bytes",
        call.pallet_name(),
        call.call_name()
    );
    assert_eq!(
        &encoded[2..],
        &args[..],
        "spec {spec}: {}.{} arguments",
        call.pallet_name(),
        call.call_name()
    );
}

#[test]
fn current_call_layouts_encode_against_the_346_and_381_metadata() {
    let hotkey = Keypair::from_uri("//Bob")
        .unwrap_or_else(|e| panic!("{e}"))
        .public();
    let mut indices = Vec::new();
    for (file, spec) in [
        ("metadata-devnet-spec346.scale", 346),
        ("metadata-devnet-spec381.scale", 381),
    ] {
        let m = load(file);
        assert_eq!(spec_version(&m), spec, "{file}");

        let call = calls::set_weights(&m, 7, &[0, 1, 300], &[100, 0, u16::MAX], 1_002_003)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut args = 7u16.to_le_bytes().to_vec();
        args.extend(u16s(&[0, 1, 300]));
        args.extend(u16s(&[100, 0, u16::MAX]));
        args.extend(1_002_003u64.to_le_bytes());
        check(&m, spec, &call, args);

        // Long vectors cross the compact length's one-byte form.
        let uids: Vec<u16> = (0..100).collect();
        let call = calls::set_weights(&m, 1, &uids, &uids, 0).unwrap_or_else(|e| panic!("{e}"));
        let mut args = 1u16.to_le_bytes().to_vec();
        args.extend(u16s(&uids));
        args.extend(u16s(&uids));
        args.extend(0u64.to_le_bytes());
        check(&m, spec, &call, args);

        for (ip, raw, ip_type) in [
            (
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                0x7f00_0002u128,
                4u8,
            ),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), 1u128, 6u8),
        ] {
            let axon = AxonEndpoint {
                ip,
                port: 8091,
                version: 1_002_003,
                protocol: 4,
            };
            let call = calls::serve_axon(&m, 3, &axon).unwrap_or_else(|e| panic!("{e}"));
            let mut args = 3u16.to_le_bytes().to_vec();
            args.extend(1_002_003u32.to_le_bytes());
            args.extend(raw.to_le_bytes());
            args.extend(8091u16.to_le_bytes());
            args.extend([ip_type, 4, 0, 0]); // ip_type, protocol, placeholder1, placeholder2
            check(&m, spec, &call, args);
        }

        let call = calls::burned_register(&m, 12, &hotkey).unwrap_or_else(|e| panic!("{e}"));
        let mut args = 12u16.to_le_bytes().to_vec();
        args.extend(hotkey.as_bytes());
        check(&m, spec, &call, args);

        // add_stake(hotkey, netuid, amount_staked): netuid since 218.
        let call =
            calls::add_stake(&m, &hotkey, 5, 123_456_789_000).unwrap_or_else(|e| panic!("{e}"));
        let mut args = hotkey.as_bytes().to_vec();
        args.extend(5u16.to_le_bytes());
        args.extend(123_456_789_000u64.to_le_bytes());
        check(&m, spec, &call, args);

        // register_network(hotkey) on 346/381: no mechid.
        assert_eq!(
            calls::call_fields(&m, SUBTENSOR, "register_network").unwrap_or_else(|e| panic!("{e}")),
            ["hotkey"],
            "spec {spec}"
        );
        let call = calls::register_network(&m, &hotkey).unwrap_or_else(|e| panic!("{e}"));
        check(&m, spec, &call, hotkey.as_bytes().to_vec());

        // remove_stake(hotkey, netuid, amount_unstaked).
        let call = calls::remove_stake(&m, &hotkey, 5, 42).unwrap_or_else(|e| panic!("{e}"));
        let mut args = hotkey.as_bytes().to_vec();
        args.extend(5u16.to_le_bytes());
        args.extend(42u64.to_le_bytes());
        check(&m, spec, &call, args);

        // Balances.transfer_keep_alive(MultiAddress::Id(dest), Compact(value)).
        let call = calls::transfer(&m, &hotkey, 1_000_000_000).unwrap_or_else(|e| panic!("{e}"));
        let mut args = vec![0u8]; // MultiAddress::Id
        args.extend(hotkey.as_bytes());
        args.extend(((1_000_000_000u32 << 2) | 0b10).to_le_bytes()); // compact 10^9: the four-byte mode
        check(&m, spec, &call, args);

        // commit_weights(netuid, H256) and reveal_weights(netuid, uids, values, salt, version_key).
        let call = calls::commit_weights(&m, 9, &[0xab; 32]).unwrap_or_else(|e| panic!("{e}"));
        let mut args = 9u16.to_le_bytes().to_vec();
        args.extend([0xab; 32]);
        check(&m, spec, &call, args);
        let call = calls::reveal_weights(&m, 9, &[1, 2], &[3, 4], &[5, 6, 7], 8).unwrap_or_else(|e| panic!("{e}"));
        let mut args = 9u16.to_le_bytes().to_vec();
        args.extend(u16s(&[1, 2]));
        args.extend(u16s(&[3, 4]));
        args.extend(u16s(&[5, 6, 7]));
        args.extend(8u64.to_le_bytes());
        check(&m, spec, &call, args);

        // Commitments.set_commitment(netuid, CommitmentInfo { fields: [Data::Raw5(b"hello")] }):
        // `Data::RawN` is variant N + 1 (variant 0 is `None`).
        let call = calls::set_commitment(&m, 4, b"hello").unwrap_or_else(|e| panic!("{e}"));
        let mut args = 4u16.to_le_bytes().to_vec();
        args.extend(compact(1));
        args.push(6);
        args.extend(b"hello");
        check(&m, spec, &call, args);

        // Every hyperparameter setter exists with (netuid, value…) and encodes.
        let all = ganglion_chain::HyperparamUpdate {
            tempo: Some(1),
            kappa: Some(2),
            weights_rate_limit: Some(3),
            commit_reveal_weights_enabled: Some(true),
            commit_reveal_period: Some(2),
            liquid_alpha_enabled: Some(false),
            alpha_low: Some(10),
            alpha_high: Some(20),
            ..ganglion_chain::HyperparamUpdate::default()
        };
        for (setter, values) in calls::hyperparam_setters(&all) {
            let mut args = vec![ganglion_subtensor::Value::u128(3)];
            args.extend(values);
            let call = calls::admin_positional(&m, setter, args).unwrap_or_else(|e| panic!("spec {spec}: {e}"));
            calls::encode(&m, &call).unwrap_or_else(|e| panic!("spec {spec}: {setter}: {e}"));
        }

        // Sudo wrapping: the outer indices, then the inner call's own encoding.
        let inner = calls::set_weights(&m, 7, &[1], &[1], 0).unwrap_or_else(|e| panic!("{e}"));
        let inner_bytes = calls::encode(&m, &inner).unwrap_or_else(|e| panic!("{e}"));
        let call = calls::sudo(&m, inner).unwrap_or_else(|e| panic!("{e}"));
        check(&m, spec, &call, inner_bytes);

        // A call whose arguments do not fit is refused by name, not encoded wrongly.
        let err = calls::build(
            &m,
            SUBTENSOR,
            "set_weights",
            vec![("netuid", ganglion_subtensor::Value::u128(1))],
            &[],
        )
        .expect_err("missing arguments");
        assert!(
            matches!(&err, SubtensorError::Metadata { what, .. } if what.contains("dests")),
            "{err}"
        );

        indices.push(
            calls::call_index(&m, SUBTENSOR, "set_weights").unwrap_or_else(|e| panic!("{e}")),
        );
    }
    println!("SubtensorModule.set_weights index per runtime (346, 381): {indices:?}");
}

/// `$GANGLION_PAPI_DIR`, else `~/.ganglion/papi` (`scripts/install-papi`), if installed.
fn papi_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("GANGLION_PAPI_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".ganglion/papi"));
    dir.join("node_modules/@polkadot-api/metadata-builders").is_dir().then_some(dir)
}

/// The independent encoder: polkadot-api's codecs, built from the same metadata, decode the
/// bytes of every call we build and encode the same arguments again; both must agree with
/// ours byte for byte (`scripts/papi/codec.mjs`).
#[test]
fn polkadot_api_agrees_with_our_call_encodings() {
    use serde_json::json;
    let Some(dir) = papi_dir() else {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "polkadot-api is not installed and GANGLION_REQUIRE_ALL=1: run scripts/install-papi");
        println!("skipped: polkadot-api is not installed (run scripts/install-papi)");
        return;
    };
    // The script must sit next to the packages it imports.
    let script = dir.join(format!("codec-{}.mjs", std::process::id()));
    std::fs::copy(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/papi/codec.mjs"), &script).unwrap_or_else(|e| panic!("{e}"));
    let bob = Keypair::from_uri("//Bob").unwrap_or_else(|e| panic!("{e}")).public();
    let ss58 = bob.to_ss58();
    for (file, spec) in [("metadata-devnet-spec346.scale", 346), ("metadata-devnet-spec381.scale", 381)] {
        let m = load(file);
        let axon = AxonEndpoint { ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port: 8091, version: 1_002_003, protocol: 4 };
        let cases: Vec<(calls::Call, serde_json::Value)> = vec![
            (calls::set_weights(&m, 7, &[0, 1, 300], &[100, 0, u16::MAX], 1_002_003).unwrap_or_else(|e| panic!("{e}")),
             json!({"netuid": 7, "dests": [0, 1, 300], "weights": [100, 0, 65535], "version_key": "1002003"})),
            (calls::serve_axon(&m, 3, &axon).unwrap_or_else(|e| panic!("{e}")),
             json!({"netuid": 3, "version": 1002003, "ip": "2130706434", "port": 8091, "ip_type": 4, "protocol": 4, "placeholder1": 0, "placeholder2": 0})),
            (calls::burned_register(&m, 12, &bob).unwrap_or_else(|e| panic!("{e}")), json!({"netuid": 12, "hotkey": ss58})),
            (calls::register_network(&m, &bob).unwrap_or_else(|e| panic!("{e}")), json!({"hotkey": ss58})),
            (calls::add_stake(&m, &bob, 5, 123_456_789_000).unwrap_or_else(|e| panic!("{e}")),
             json!({"hotkey": ss58, "netuid": 5, "amount_staked": "123456789000"})),
            (calls::remove_stake(&m, &bob, 5, 42).unwrap_or_else(|e| panic!("{e}")), json!({"hotkey": ss58, "netuid": 5, "amount_unstaked": "42"})),
            (calls::transfer(&m, &bob, 1_000_000_000).unwrap_or_else(|e| panic!("{e}")),
             json!({"dest": {"type": "Id", "value": ss58}, "value": "1000000000"})),
            (calls::commit_weights(&m, 9, &[0xab; 32]).unwrap_or_else(|e| panic!("{e}")),
             json!({"netuid": 9, "commit_hash": format!("0x{}", "ab".repeat(32))})),
            (calls::reveal_weights(&m, 9, &[1, 2], &[3, 4], &[5, 6, 7], 8).unwrap_or_else(|e| panic!("{e}")),
             json!({"netuid": 9, "uids": [1, 2], "values": [3, 4], "salt": [5, 6, 7], "version_key": "8"})),
            (calls::commit_timelocked_weights(&m, 3, &[1, 2, 3, 250], 1000, 4).unwrap_or_else(|e| panic!("{e}")),
             json!({"netuid": 3, "mecid": 0, "commit": "bytes:0x010203fa", "reveal_round": "1000", "commit_reveal_version": 4})),
            (calls::set_commitment(&m, 4, b"hello").unwrap_or_else(|e| panic!("{e}")),
             // polkadot-api gives `CommitmentInfo { fields }` (one field) as the list itself.
             json!({"netuid": 4, "info": [{"type": "Raw5", "value": "0x68656c6c6f"}]})),
        ];
        let input: Vec<serde_json::Value> = cases
            .iter()
            .map(|(call, args)| {
                let bytes = calls::encode(&m, call).unwrap_or_else(|e| panic!("{e}"));
                json!({"pallet": call.pallet_name(), "call": call.call_name(), "hex": format!("0x{}", hex(&bytes)), "args": args})
            })
            .collect();
        let calls_file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(calls_file.path(), serde_json::to_vec(&input).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        let output = std::process::Command::new("node")
            .arg(&script)
            .arg(crate::fixture(file))
            .arg(calls_file.path())
            .output()
            .unwrap_or_else(|e| panic!("node: {e}"));
        assert!(output.status.success(), "spec {spec}: {}", String::from_utf8_lossy(&output.stderr));
        let results: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("spec {spec}: {e}"));
        assert_eq!(results.len(), input.len());
        for (ours, theirs) in input.iter().zip(&results) {
            let what = format!("spec {spec}: {}.{}", ours["pallet"], ours["call"]);
            assert_eq!(theirs["encoded"], ours["hex"], "{what}: polkadot-api encodes the same arguments differently");
            assert_eq!(theirs["decoded"], ours["args"], "{what}: polkadot-api decodes our bytes differently");
        }
        println!("spec {spec}: polkadot-api agrees on {} calls", results.len());
    }
    let _ = std::fs::remove_file(&script);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Signed transactions for the current runtimes, offline: subxt builds every transaction
/// extension the 346/381 metadata lists (subtensor's own `SubtensorTransactionExtension`,
/// `DrandPriority`, `CheckMetadataHash`, and 381's `SudoTransactionExtension`), signs with our
/// key, and the result decodes again through the same metadata with our signer and call.
#[tokio::test]
async fn signed_transactions_build_for_the_346_and_381_runtimes() {
    use subxt::config::substrate::SpecVersionForRange;
    let alice = Keypair::from_uri("//Alice").unwrap_or_else(|e| panic!("{e}"));
    let signer = ganglion_subtensor::KeypairSigner::new(alice.clone());
    for (file, spec) in [("metadata-devnet-spec346.scale", 346u32), ("metadata-devnet-spec381.scale", 381)] {
        let m = load(file);
        let version = m.pallet_by_name("System").and_then(|p| p.constant_by_name("Version")).unwrap_or_else(|| panic!("System.Version"));
        // RuntimeVersion: spec_name, impl_name, authoring, spec, impl, apis, transaction_version.
        let mut cursor = version.value();
        let (_, _, _, spec_version, _, _apis, transaction_version) =
            <(String, String, u32, u32, u32, Vec<([u8; 8], u32)>, u32)>::decode(&mut cursor).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec_version, spec);
        let extensions: Vec<String> = m.extrinsic().transaction_extensions_by_version(0).map(|xs| xs.map(|x| x.identifier().to_string()).collect()).unwrap_or_default();
        let call = calls::set_weights(&m, 1, &[0, 1], &[1, 2], 0).unwrap_or_else(|e| panic!("{e}"));
        let config = subxt::SubstrateConfig::builder()
            .set_genesis_hash(subxt::utils::H256::repeat_byte(2))
            .set_metadata_for_spec_versions([(spec, std::sync::Arc::new(load(file)))])
            .set_spec_version_for_block_ranges([SpecVersionForRange { block_range: 0..u64::MAX, spec_version: spec, transaction_version }])
            .build();
        let client = subxt::OfflineClient::new_with_config(config);
        let at = client.at_block(100u64).unwrap_or_else(|e| panic!("spec {spec}: {e}"));
        let params = subxt::config::DefaultExtrinsicParamsBuilder::<subxt::SubstrateConfig>::new()
            .nonce(7)
            .mortal_from_unchecked(32, 100, subxt::utils::H256::repeat_byte(1))
            .build();
        let signed = at
            .tx()
            .create_signable_offline(&call, params)
            .unwrap_or_else(|e| panic!("spec {spec} (extensions {extensions:?}): {e}"))
            .sign(&signer)
            .unwrap_or_else(|e| panic!("spec {spec}: signing: {e}"));
        let bytes = signed.into_encoded();
        let decoded = at.extrinsics().from_bytes(vec![bytes.clone()]).await;
        let Some(Ok(ext)) = decoded.iter().next() else { panic!("spec {spec}: the signed transaction does not decode") };
        assert!(ext.is_signed(), "spec {spec}");
        assert_eq!((ext.pallet_name(), ext.call_name()), ("SubtensorModule", "set_weights"), "spec {spec}");
        let address = ext.address_bytes().unwrap_or_default();
        assert!(address.ends_with(alice.public().as_bytes()), "spec {spec}: signed by our key");
        let signature = ext.signature_bytes().unwrap_or_default();
        assert_eq!(signature.first(), Some(&1), "spec {spec}: MultiSignature::Sr25519");
        let names: Vec<String> = ext.transaction_extensions().map(|x| x.iter().map(|e| e.name().to_string()).collect()).unwrap_or_default();
        assert_eq!(names, extensions, "spec {spec}: every extension the runtime lists, in order");
        // Mortal (two bytes of era), not immortal (0x00): a lost transaction dies with its era.
        let era: Vec<u8> = ext
            .transaction_extensions()
            .and_then(|x| x.iter().find(|e| e.name() == "CheckMortality").map(|e| e.bytes().to_vec()))
            .unwrap_or_default();
        assert_eq!(era.len(), 2, "spec {spec}: a mortal era, got {era:?}");
        println!("spec {spec}: {} bytes, signed, extensions {names:?}", bytes.len());
    }
}
