use super::*;
use ganglion_core::keys::Keypair;

/// Every wait in these tests is bounded: a hang fails the test instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(10);

fn key(n: usize) -> Keypair {
    Keypair::from_uri(&format!("//Batch{n}")).expect("uri")
}

fn message(n: usize) -> Vec<u8> {
    format!("{n:064x}.6f6c6c6f-0000-4000-8000-{n:012}.1727000000123.").into_bytes()
}

const DRIVERS: [Driver; 2] = [Driver::Task, Driver::Thread];

fn spawn(driver: Driver) -> SignatureBatcher {
    SignatureBatcher::spawn(BatchConfig { driver, ..BatchConfig::default() }).expect("spawn")
}

/// A batcher that waits long enough for `expected` requests to form one batch.
fn collecting(expected: usize, driver: Driver) -> SignatureBatcher {
    SignatureBatcher::spawn(BatchConfig {
        max_batch: expected,
        window: Duration::from_secs(2),
        queue_capacity: 1024,
        driver,
        ..BatchConfig::default()
    })
    .expect("spawn")
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future).await.expect("the batcher answered in time")
}

/// Makes each signer known to the verifier thread (a signer's first signature is verified
/// singly): `count` valid requests at once, round-robin over `signers`.
async fn introduce(batcher: &SignatureBatcher, signers: &[Keypair], count: usize) {
    let requests = (0..count).map(|n| {
        let signer = &signers[n % signers.len()];
        let m = message(10_000 + n);
        let signature = signer.sign(&m);
        batcher.verify(signer.public(), m, signature)
    });
    let verdicts = bounded(futures::future::join_all(requests)).await;
    assert!(verdicts.iter().all(|v| *v == Ok(true)), "{verdicts:?}");
}

#[tokio::test]
async fn a_batch_mixing_valid_and_invalid_signatures_rejects_exactly_the_invalid_ones() {
    for driver in DRIVERS {
        a_batch_mixing_valid_and_invalid_signatures_rejects_exactly_the_invalid_ones_with(driver).await;
    }
}

async fn a_batch_mixing_valid_and_invalid_signatures_rejects_exactly_the_invalid_ones_with(driver: Driver) {
    let signers: Vec<Keypair> = (0..4).map(key).collect();
    // The thread gathers 12 requests per batch: the first 12 teach it the signers.
    let batcher = collecting(12, driver);
    introduce(&batcher, &signers, 12).await;
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for n in 0..12 {
        let signer = &signers[n % signers.len()];
        let signed = message(n);
        let valid = !matches!(n, 3 | 7 | 8);
        // Invalid ones: a signature over another message (well-formed and canonical).
        let signature = if valid { signer.sign(&signed) } else { signer.sign(&message(n + 100)) };
        requests.push((signer.public(), signed, signature));
        expected.push(valid);
    }
    let before = batcher.stats();
    let verdicts = bounded(futures::future::join_all(
        requests.into_iter().map(|(signer, message, signature)| batcher.verify(signer, message, signature)),
    ))
    .await;
    let verdicts: Vec<bool> = verdicts.into_iter().map(|v| v.expect("verdict")).collect();
    assert_eq!(verdicts, expected);
    let stats = batcher.stats();
    assert_eq!(stats.batches - before.batches, 1, "{stats:?}");
    assert_eq!(stats.batched - before.batched, 12, "{stats:?}");
    assert_eq!(stats.failed_batches - before.failed_batches, 1, "{stats:?}");

    // Signers 3 and 0 (requests 3, 7, 8) signed badly and are now verified singly; the
    // honest ones still batch, and their batch does not fail.
    let before = batcher.stats();
    introduce(&batcher, &signers, 12).await;
    let after = batcher.stats();
    assert_eq!(after.failed_batches, before.failed_batches, "{after:?}");
    assert_eq!(after.batches - before.batches, 1, "{after:?}");
    assert_eq!(after.batched - before.batched, 6, "signers 1 and 2: {after:?}");
    assert_eq!(after.single - before.single, 6, "signers 0 and 3: {after:?}");
    batcher.shutdown();
}

#[tokio::test]
async fn concurrent_requests_are_all_verified() {
    for driver in DRIVERS {
        concurrent_requests_are_all_verified_with(driver).await;
    }
}

async fn concurrent_requests_are_all_verified_with(driver: Driver) {
    let batcher = Arc::new(spawn(driver));
    let signers: Vec<Keypair> = (0..3).map(key).collect();
    introduce(&batcher, &signers, 3).await;
    let mut tasks = Vec::new();
    for n in 0..96 {
        let batcher = Arc::clone(&batcher);
        let signer = signers[n % signers.len()].clone();
        tasks.push(tokio::spawn(async move {
            let m = message(n);
            let signature = signer.sign(&m);
            batcher.verify(signer.public(), m, signature).await
        }));
    }
    for task in tasks {
        assert_eq!(bounded(task).await.expect("task"), Ok(true));
    }
    let stats = batcher.stats();
    assert_eq!(stats.batched + stats.single, 96 + 3, "{stats:?}");
    assert_eq!(stats.failed_batches, 0);
    batcher.shutdown();
}

#[tokio::test]
async fn a_lone_request_is_answered_without_company() {
    for driver in DRIVERS {
        a_lone_request_is_answered_without_company_with(driver).await;
    }
}

async fn a_lone_request_is_answered_without_company_with(driver: Driver) {
    // No window: answered as soon as the thread gets to it.
    let batcher = spawn(driver);
    let signer = key(0);
    let m = message(1);
    let signature = signer.sign(&m);
    assert_eq!(bounded(batcher.verify(signer.public(), m.clone(), signature)).await, Ok(true));
    assert_eq!(bounded(batcher.verify(signer.public(), m.clone(), signer.sign(b"other"))).await, Ok(false));

    // With a window, a lone request waits for the window and no longer.
    let batcher = SignatureBatcher::spawn(BatchConfig {
        max_batch: 64,
        window: Duration::from_millis(30),
        queue_capacity: 16,
        driver,
        ..BatchConfig::default()
    })
    .expect("spawn");
    let started = Instant::now();
    assert_eq!(bounded(batcher.verify(signer.public(), m, signature)).await, Ok(true));
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn nothing_hangs_when_the_batcher_is_shut_down() {
    for driver in DRIVERS {
        nothing_hangs_when_the_batcher_is_shut_down_with(driver).await;
    }
}

async fn nothing_hangs_when_the_batcher_is_shut_down_with(driver: Driver) {
    let batcher = Arc::new(collecting(64, driver));
    let signer = key(0);
    // Queued requests (the thread is waiting for company) are answered when the queue closes.
    let pending: Vec<_> = (0..5)
        .map(|n| {
            let batcher = Arc::clone(&batcher);
            let signer = signer.clone();
            tokio::spawn(async move {
                let m = message(n);
                let signature = signer.sign(&m);
                batcher.verify(signer.public(), m, signature).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closer = Arc::clone(&batcher);
    bounded(tokio::task::spawn_blocking(move || closer.shutdown())).await.expect("shutdown");
    for task in pending {
        let verdict = bounded(task).await.expect("task");
        // Either verified before the queue closed, or refused as closed: never left waiting.
        assert!(matches!(verdict, Ok(true) | Err(BatchError::Closed)), "{verdict:?}");
    }
    assert!(!batcher.is_open());
    let m = message(9);
    let signature = signer.sign(&m);
    assert_eq!(bounded(batcher.verify(signer.public(), m, signature)).await, Err(BatchError::Closed));
    // A second shutdown, and dropping, return at once.
    bounded(tokio::task::spawn_blocking(move || batcher.shutdown())).await.expect("second shutdown");
}

#[tokio::test]
async fn malformed_keys_and_signatures_are_refused_not_fatal() {
    let batcher = spawn(Driver::Thread);
    let signer = key(0);
    let m = message(0);
    // No schnorrkel marker bit: not a signature at all.
    let junk = Signature::from_bytes([0; 64]);
    assert_eq!(bounded(batcher.verify(signer.public(), m.clone(), junk)).await, Ok(false));
    // Not a Ristretto point.
    let nowhere = PublicKey::from_bytes([0xff; 32]);
    assert_eq!(bounded(batcher.verify(nowhere, m.clone(), signer.sign(&m))).await, Ok(false));
    // The thread is still serving.
    assert_eq!(bounded(batcher.verify(signer.public(), m.clone(), signer.sign(&m))).await, Ok(true));
}

#[tokio::test]
async fn wrapped_signatures_still_verify_and_keep_their_signer_single() {
    for driver in DRIVERS {
        wrapped_signatures_still_verify_and_keep_their_signer_single_with(driver).await;
    }
}

async fn wrapped_signatures_still_verify_and_keep_their_signer_single_with(driver: Driver) {
    // Browser wallets sign `<Bytes>message</Bytes>`; the batch equation covers only the plain
    // form, so such a signer must be verified singly and never reject an honest batch.
    let wrapped_signer = key(1);
    let plain_signer = key(2);
    let wrap = |m: &[u8]| [b"<Bytes>".as_slice(), m, b"</Bytes>".as_slice()].concat();
    let batcher = collecting(4, driver);
    let m = message(0);
    let first = wrapped_signer.sign(&wrap(&m));
    let answers = bounded(futures::future::join_all([
        batcher.verify(wrapped_signer.public(), m.clone(), first),
        batcher.verify(plain_signer.public(), m.clone(), plain_signer.sign(&m)),
        batcher.verify(wrapped_signer.public(), m.clone(), wrapped_signer.sign(&wrap(&m))),
        batcher.verify(plain_signer.public(), m.clone(), plain_signer.sign(&m)),
    ]))
    .await;
    assert!(answers.iter().all(|a| *a == Ok(true)), "{answers:?}");
    let more = bounded(futures::future::join_all([
        batcher.verify(wrapped_signer.public(), m.clone(), wrapped_signer.sign(&wrap(&m))),
        batcher.verify(plain_signer.public(), m.clone(), plain_signer.sign(&m)),
        batcher.verify(plain_signer.public(), m.clone(), plain_signer.sign(&m)),
        batcher.verify(wrapped_signer.public(), m.clone(), wrapped_signer.sign(b"forged")),
    ]))
    .await;
    assert_eq!(more, vec![Ok(true), Ok(true), Ok(true), Ok(false)]);
    assert_eq!(batcher.stats().failed_batches, 0, "the wrapped signer never joins a batch");
}
