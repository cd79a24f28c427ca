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
// The policy now runs before the signature (a lookup is cheaper than a verification); what
// this test guards, that refused callers never occupy the replay cache, still holds.
fn policy_runs_before_the_replay_cache() {
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

#[test]
fn a_refused_caller_costs_no_signature_check() {
    let policy = StandardPolicy::new(
        PolicyConfig { hotkey_blacklist: [alice().public()].into(), ..PolicyConfig::default() },
        Arc::new(SharedDirectory::default()),
    );
    let verifier = Verifier::new(VerifierConfig::default(), Arc::new(policy));
    // A garbage signature from a blacklisted hotkey is refused by the policy, not the crypto.
    let mut signed = SignedHeaders::sign_at(&alice(), b"x", None, NOW, UUID);
    signed.signature = format!("0x{}", "11".repeat(64));
    let err = verifier.verify(&headers_for(&signed), b"x", NOW).expect_err("denied");
    assert_eq!(err.code(), "caller_denied");
}

#[test]
fn the_replay_cache_remembers_only_verified_requests() {
    let v = verifier();
    let good = SignedHeaders::sign_at(&alice(), b"x", Some(&bob()), NOW, UUID);
    // Same UUID, bad signature: refused, and the UUID stays free for the real request.
    assert_eq!(v.verify(&headers_for(&good), b"y", NOW).map(|_| ()), Err(Rejection::BadSignature));
    assert!(v.replay.is_empty());
    assert!(v.verify(&headers_for(&good), b"x", NOW).is_ok());
    assert_eq!(v.replay.len(), 1);
}

#[test]
fn extreme_timestamps_are_refused_without_overflow() {
    let v = verifier();
    let far = SignedHeaders::sign_at(&alice(), b"x", Some(&bob()), u64::MAX, UUID);
    assert!(matches!(v.verify(&headers_for(&far), b"x", NOW), Err(Rejection::FromTheFuture { .. })));
    let ancient = SignedHeaders::sign_at(&alice(), b"x", Some(&bob()), 0, UUID);
    assert!(matches!(v.verify(&headers_for(&ancient), b"x", NOW), Err(Rejection::Stale { .. })));
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future).await.expect("answered in time")
}

fn batching(driver: Driver) -> Verifier {
    let batch = BatchConfig { driver, ..BatchConfig::default() };
    Verifier::allow_all(VerifierConfig { receiver: Some(bob()), batch: Some(batch), ..VerifierConfig::default() })
}

#[tokio::test]
async fn batched_verification_gives_the_same_verdicts_as_inline() {
    for driver in [Driver::Task, Driver::Thread] {
        same_verdicts_batched(batching(driver)).await;
    }
}

async fn same_verdicts_batched(v: Verifier) {
    let body = b"payload";
    let good = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, UUID);
    let caller = bounded(v.verify_batched(&headers_for(&good), body, NOW)).await.expect("valid");
    assert_eq!(caller.hotkey, alice().public());
    assert_eq!(
        bounded(v.verify_batched(&headers_for(&good), body, NOW)).await,
        Err(Rejection::Replayed(UUID.to_string()))
    );
    let other = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, "6f6c6c6f-0000-4000-8000-000000000002");
    assert_eq!(bounded(v.verify_batched(&headers_for(&other), b"payloaD", NOW)).await, Err(Rejection::BadSignature));
    assert!(matches!(
        bounded(v.verify_batched(&headers_for(&other), body, NOW + 8_001)).await,
        Err(Rejection::Stale { .. })
    ));
    assert!(bounded(v.verify_batched(&headers_for(&other), body, NOW)).await.is_ok());
    let stats = v.batch_stats().expect("the batcher ran");
    // Good, replayed (the cache is consulted after the signature), bad, good; not the stale one.
    assert_eq!(stats.single + stats.batched, 4, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_through_the_verifier_are_all_admitted() {
    for driver in [Driver::Task, Driver::Thread] {
        all_admitted(Arc::new(batching(driver))).await;
    }
}

async fn all_admitted(v: Arc<Verifier>) {
    let body = b"payload";
    let tasks: Vec<_> = (0..48)
        .map(|n| {
            let v = Arc::clone(&v);
            tokio::spawn(async move {
                let uuid = format!("6f6c6c6f-0000-4000-8000-{n:012}");
                let signed = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, &uuid);
                v.verify_batched(&headers_for(&signed), body, NOW).await.map(|caller| caller.uuid == uuid)
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(bounded(task).await.expect("task"), Ok(true));
    }
    assert_eq!(v.replay.len(), 48);
    let stats = v.batch_stats().expect("the batcher ran");
    assert_eq!(stats.single + stats.batched, 48, "{stats:?}");
    v.shutdown_batcher();
}

#[tokio::test]
async fn after_the_batcher_shuts_down_requests_are_verified_inline() {
    let v = batching(Driver::Task);
    let body = b"x";
    let first = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, UUID);
    assert!(bounded(v.verify_batched(&headers_for(&first), body, NOW)).await.is_ok());
    v.shutdown_batcher();
    let second = SignedHeaders::sign_at(&alice(), body, Some(&bob()), NOW, "6f6c6c6f-0000-4000-8000-000000000002");
    assert!(bounded(v.verify_batched(&headers_for(&second), body, NOW)).await.is_ok());
    assert_eq!(
        bounded(v.verify_batched(&headers_for(&second), b"y", NOW)).await.map(|_| ()),
        Err(Rejection::BadSignature)
    );

    // Batching off (the default): the same verdicts, inline.
    let inline = verifier();
    assert!(bounded(inline.verify_batched(&headers_for(&first), body, NOW)).await.is_ok());
    assert!(inline.batch_stats().is_none());
}
