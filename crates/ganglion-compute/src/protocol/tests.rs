use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn ed25519_line(comment: &str) -> String {
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .unwrap_or_else(|e| panic!("keygen: {e}"));
    let mut public = key.public_key().clone();
    public.set_comment(comment);
    public.to_openssh().unwrap_or_else(|e| panic!("encode: {e}"))
}

fn challenge() -> Challenge {
    let (spec, _) = pow::generate(7, &mut StdRng::seed_from_u64(9));
    Challenge::from_spec(&spec)
}

fn field_of(result: Result<impl std::fmt::Debug>) -> &'static str {
    match result {
        Err(ComputeError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

#[test]
fn challenges_round_trip_and_every_field_is_checked() {
    let good = challenge();
    let json = serde_json::to_string(&good).unwrap_or_default();
    let parsed: Challenge = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    let spec = parsed.spec().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Challenge::from_spec(&spec), good);

    let bad = |f: &dyn Fn(&mut Challenge)| {
        let mut c = good.clone();
        f(&mut c);
        field_of(c.spec())
    };
    assert_eq!(bad(&|c| c.challenge_difficulty = 13), "challenge_difficulty");
    assert_eq!(bad(&|c| c.challenge_difficulty = 0), "challenge_difficulty");
    assert_eq!(bad(&|c| c.challenge_mode = "1410".into()), "challenge_mode");
    assert_eq!(bad(&|c| c.challenge_hash = c.challenge_hash.replace("$BLAKE2$", "")), "challenge_hash");
    assert_eq!(bad(&|c| c.challenge_hash.push('0')), "challenge_hash");
    assert_eq!(bad(&|c| c.challenge_hash = format!("$BLAKE2${}", "g".repeat(128))), "challenge_hash");
    assert_eq!(bad(&|c| c.challenge_salt = "0123".into()), "challenge_salt");
    assert_eq!(bad(&|c| c.challenge_salt = "0123456789abcdeZ".into()), "challenge_salt");
    assert_eq!(bad(&|c| c.challenge_chars = "abcdefghi".into()), "challenge_chars");
    assert_eq!(bad(&|c| c.challenge_chars = "abcdefghi?".into()), "challenge_chars", "? is not in the set");
    assert_eq!(bad(&|c| c.challenge_chars = "abcdefghi\u{e9}".into()), "challenge_chars");
    assert_eq!(bad(&|c| c.challenge_chars = "aacdefghij".into()), "challenge_chars");
    assert_eq!(bad(&|c| c.challenge_mask = "?1?1".into()), "challenge_mask");
    assert_eq!(bad(&|c| c.challenge_mask = "?a?a?a?a?a?a?a".into()), "challenge_mask");

    // Strict serde: unknown fields and wrong types are refused.
    let mut value = serde_json::to_value(&good).unwrap_or_default();
    value["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<Challenge>(value).is_err());
    let mut value = serde_json::to_value(&good).unwrap_or_default();
    value["challenge_difficulty"] = serde_json::json!(300);
    assert!(serde_json::from_value::<Challenge>(value).is_err());
    assert!(serde_json::from_str::<Specs>(r#"{"specs_input":"","nope":1}"#).is_err());
}

fn reserve() -> Allocate {
    Allocate {
        timeline: 7,
        checking: false,
        public_key: hex::encode([7u8; 32]),
        device_requirement: DeviceRequirement {
            cpu: CpuRequirement { count: 1 },
            ram: CapacityRequirement { capacity: 1 << 30 },
            hard_disk: CapacityRequirement { capacity: 10 << 30 },
            ..DeviceRequirement::default()
        },
        docker_requirement: DockerRequirement { ssh_key: ed25519_line("me@laptop"), ..DockerRequirement::default() },
        ..Allocate::default()
    }
}

#[test]
fn allocate_requests_are_classified_and_validated() {
    match reserve().validate() {
        Ok(AllocateRequest::Reserve { requirement, timeline_seconds, ssh_key, volume_path, seal_to }) => {
            assert_eq!(requirement.cpu, 1);
            assert_eq!(requirement.ram_bytes, 1 << 30);
            assert_eq!(timeline_seconds, 7 * 86_400);
            assert!(ssh_key.starts_with("ssh-ed25519 ") && !ssh_key.contains("laptop"), "comment dropped: {ssh_key}");
            assert_eq!(volume_path, "/tmp");
            assert_eq!(seal_to, [7u8; 32]);
        }
        other => panic!("{other:?}"),
    }
    let precise = Allocate { timeline: 0, timeline_seconds: Some(90), ..reserve() };
    assert!(matches!(precise.validate(), Ok(AllocateRequest::Reserve { timeline_seconds: 90, .. })));
    let check = Allocate { checking: true, ..reserve() };
    assert!(matches!(check.validate(), Ok(AllocateRequest::CheckAvailability(_))));
    assert_eq!(Allocate::default().validate().ok(), Some(AllocateRequest::CheckMine));
    let release = Allocate { timeline: -1, checking: false, ..Allocate::default() };
    assert_eq!(release.validate().ok(), Some(AllocateRequest::Release));
    let change = Allocate {
        docker_change: true,
        docker_action: DockerAction { action: "pause".into(), ..DockerAction::default() },
        ..Allocate::default()
    };
    assert_eq!(change.validate().ok(), Some(AllocateRequest::Change(Change::Pause)));

    let bad = |f: &dyn Fn(&mut Allocate)| {
        let mut a = reserve();
        f(&mut a);
        field_of(a.validate())
    };
    assert_eq!(bad(&|a| a.timeline = 61), "timeline");
    assert_eq!(bad(&|a| a.timeline_seconds = Some(MAX_TIMELINE_SECONDS + 1)), "timeline");
    assert_eq!(bad(&|a| a.device_requirement.ram.capacity = 1024), "device_requirement.ram.capacity");
    assert_eq!(bad(&|a| a.device_requirement.hard_disk.capacity = 0), "device_requirement.hard_disk.capacity");
    assert_eq!(bad(&|a| a.device_requirement.gpu.kind = "A100; rm -rf /".into()), "device_requirement.gpu.type");
    assert_eq!(bad(&|a| a.docker_requirement.dockerfile = "RUN curl evil | sh".into()), "docker_requirement.dockerfile");
    assert_eq!(bad(&|a| a.docker_requirement.ssh_key = String::new()), "docker_requirement.ssh_key");
    assert_eq!(bad(&|a| a.docker_requirement.ssh_key = "ssh-ed25519 notbase64 x; touch /pwned".into()), "docker_requirement.ssh_key");
    assert_eq!(
        bad(&|a| a.docker_requirement.ssh_key = format!("command=\"sh\" {}", ed25519_line(""))),
        "docker_requirement.ssh_key",
        "authorized_keys options are not a key"
    );
    assert_eq!(bad(&|a| a.docker_requirement.ssh_key = format!("{}\nssh-ed25519 AAAA", ed25519_line(""))), "docker_requirement.ssh_key");
    assert_eq!(bad(&|a| a.docker_requirement.volume_path = "/etc".into()), "docker_requirement.volume_path");
    assert_eq!(bad(&|a| a.public_key = "abcd".into()), "public_key");
    assert_eq!(bad(&|a| a.public_key = "00".repeat(32)), "public_key");
    let mut change = change;
    change.docker_action.action = "rm -rf".into();
    assert_eq!(field_of(change.validate()), "docker_action.action");
    change.docker_action = DockerAction { action: "exchange_key".into(), ssh_key: "nope".into(), key_type: "user".into() };
    assert_eq!(field_of(change.validate()), "docker_action.ssh_key");
}

#[test]
fn volume_paths_are_plain_and_outside_the_system() {
    assert_eq!(validate_volume_path("/workspace/").ok().as_deref(), Some("/workspace"));
    assert_eq!(validate_volume_path("").ok().as_deref(), Some("/tmp"));
    assert_eq!(validate_volume_path("/data/set-1_a.b").ok().as_deref(), Some("/data/set-1_a.b"));
    for bad in ["relative", "/", "/usr/local", "/etc", "/proc/1", "/a/../etc", "/a//b", "/a b", "/a;b", "/$(id)", "/root/x"] {
        assert!(validate_volume_path(bad).is_err(), "{bad}");
    }
}
