use super::*;
use crate::policy::{CallerInfo, PolicyConfig, SharedDirectory, StandardPolicy};
use std::collections::HashMap;

fn alice() -> Keypair {
    Keypair::from_uri("//Alice").expect("uri")
}

fn bob() -> PublicKey {
    Keypair::from_uri("//Bob").expect("uri").public()
}

fn verifier() -> Verifier {
    Verifier::allow_all(VerifierConfig { receiver: Some(bob()), ..VerifierConfig::default() })
}

fn headers_for(signed: &SignedHeaders) -> HeaderMap {
    let mut headers = HeaderMap::new();
    signed.apply(&mut headers);
    headers
}

const NOW: u64 = 1_727_000_000_123;
const UUID: &str = "6f6c6c6f-0000-4000-8000-000000000001";

#[test]
fn message_format_matches_the_reference_example() {
    // gobt's example: //Alice signs "Hello World" for //Bob.
    let message = signing_message(b"Hello World", "<uuid>", 1_727_000_000_123, Some(&bob().to_ss58()));
    assert_eq!(
        message,
        "a591a6d40bf420404a011733cfb7b190d62c65bf0bcda32b57b277d9ad9f146e.<uuid>.1727000000123.5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
    );
    assert_eq!(body_hash_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn accepts_a_good_request_once() {
    let body = br#"{"model":"x"}"#;
    let signed = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, UUID);
    let verifier = verifier();
    let caller = verifier.verify(&headers_for(&signed), body, NOW + 100).expect("valid");
    assert_eq!(caller.hotkey, alice().public());
    assert_eq!(
        verifier.verify(&headers_for(&signed), body, NOW + 200),
        Err(Rejection::Replayed(UUID.to_string()))
    );
}

#[test]
fn each_failure_has_its_own_reason() {
    let body = b"payload";
    let good = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, UUID);
    let v = verifier();

    assert_eq!(v.verify(&headers_for(&good), b"payloaD", NOW).map(|_| ()), Err(Rejection::BadSignature));

    let for_alice = SignedHeaders::sign_at(&alice(), body, Some(&alice().public()), NOW, UUID);
    assert!(matches!(v.verify(&headers_for(&for_alice), body, NOW), Err(Rejection::WrongReceiver { .. })));

    assert!(matches!(v.verify(&headers_for(&good), body, NOW + 8_001), Err(Rejection::Stale { .. })));
    assert!(v.verify(&headers_for(&good), body, NOW + 8_000).is_ok(), "edge of the window");
    let future = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW + 60_000, UUID);
    assert!(matches!(v.verify(&headers_for(&future), body, NOW), Err(Rejection::FromTheFuture { .. })));

    let mut headers = headers_for(&good);
    headers.remove(header::SIGNATURE);
    assert_eq!(v.verify(&headers, body, NOW).map(|_| ()), Err(Rejection::MissingHeader(header::SIGNATURE)));

    let mut headers = headers_for(&good);
    headers.append(header::UUID, HeaderValue::from_static("6f6c6c6f-0000-4000-8000-000000000002"));
    assert_eq!(v.verify(&headers, body, NOW).map(|_| ()), Err(Rejection::DuplicateHeader(header::UUID)));

    let mut headers = headers_for(&good);
    headers.insert(header::VERSION, HeaderValue::from_static("1"));
    assert!(matches!(v.verify(&headers, body, NOW), Err(Rejection::UnsupportedVersion(_))));

    for (name, value) in [
        (header::TIMESTAMP, "12.5"),
        (header::TIMESTAMP, "99999999999999999999999"),
        (header::UUID, "not-a-uuid"),
        (header::SIGNED_BY, "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"),
        (header::SIGNATURE, "0xnothex"),
        (header::SIGNATURE, "0x1234"),
    ] {
        let mut headers = headers_for(&good);
        headers.insert(name, HeaderValue::from_static(value));
        assert!(matches!(v.verify(&headers, body, NOW), Err(Rejection::MalformedHeader { .. })), "{name}: {value}");
    }
    let mut headers = headers_for(&good);
    headers.insert(header::SIGNED_BY, HeaderValue::from_str(&"5".repeat(1000)).expect("ascii"));
    assert!(matches!(v.verify(&headers, body, NOW), Err(Rejection::MalformedHeader { .. })));
}

#[test]
fn signature_over_another_receiver_does_not_verify() {
    // Signed for Bob, headers edited to claim nobody: the message differs, the signature fails.
    let verifier = Verifier::allow_all(VerifierConfig::default());
    let signed = SignedHeaders::sign_at(&alice(), b"x", Some(&bob()), NOW, UUID);
    let mut headers = headers_for(&signed);
    headers.remove(header::SIGNED_FOR);
    assert_eq!(verifier.verify(&headers, b"x", NOW).map(|_| ()), Err(Rejection::BadSignature));
}

#[test]
fn policy_runs_after_the_signature_and_before_the_replay_cache() {
    let directory = Arc::new(SharedDirectory::default());
    directory.replace(HashMap::from([(
        alice().public(),
        CallerInfo { coldkey: bob(), stake_rao: 10, validator_permit: false },
    )]));
    let policy = StandardPolicy::new(PolicyConfig { min_stake_rao: 100, ..PolicyConfig::default() }, directory);
    let verifier = Verifier::new(VerifierConfig::default(), Arc::new(policy));
    let signed = SignedHeaders::sign_at(&alice(), b"x", None, NOW, UUID);
    let err = verifier.verify(&headers_for(&signed), b"x", NOW).expect_err("denied");
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert!(verifier.replay.is_empty(), "denied callers must not occupy the replay cache");
}

#[test]
fn statuses_and_codes() {
    assert_eq!(Rejection::BadSignature.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(Rejection::Replayed("u".into()).status(), StatusCode::CONFLICT);
    assert_eq!(Rejection::BodyTooLarge { limit: 1 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(Rejection::Stale { age_ms: 1, window_ms: 1 }.code(), "stale_timestamp");
}
