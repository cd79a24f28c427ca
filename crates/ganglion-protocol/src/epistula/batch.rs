//! Batched sr25519 verification for the Epistula layer.
//!
//! **Why batching helps.** Checking one Schnorr signature `(R, s)` by signer `A` on a message
//! with challenge `c` is checking `s·B = R + c·A`: a double-scalar multiplication, about 35 µs
//! on the 2-core bench machine. schnorrkel's `verify_batch` checks `n` signatures at once
//! through one random linear combination,
//! `(−Σ zᵢ·sᵢ)·B + Σ zᵢ·Rᵢ + Σ (zᵢ·cᵢ)·Aᵢ = 0` with random 128-bit `zᵢ`, evaluated as a single
//! *multiscalar* multiplication: Straus/Pippenger share the point doublings across all
//! terms, so the cost grows much more slowly than `n` separate verifications, and signatures
//! from the same signer (sorted next to each other, `deduplicate_public_keys`) collapse into
//! one `A` term. Measured with schnorrkel 0.11.5 on the bench machine, same signer: batch of
//! 1 costs 43 µs (worse than a single verification, which uses a precomputed basepoint
//! table — so a lone request is verified singly), 2 → 29 µs per signature, 4 → 19 µs,
//! 8 → 18 µs, 16 → 15 µs. An invalid signature makes the whole batch fail (with probability
//! 1 − 2⁻¹²⁸ whatever the attacker chooses, thanks to the random `zᵢ`), so a failed batch is
//! re-verified one signature at a time: a bad signature never rejects an honest request.
//!
//! **How batches form.** Requests go into one bounded queue. A verifier — one of
//! [`BatchConfig::verifiers`] tasks on the async runtime ([`Driver::Task`]), or a dedicated
//! OS thread ([`Driver::Thread`]) — takes whatever is queued when it becomes free (up to
//! [`BatchConfig::max_batch`]), optionally waiting up to [`BatchConfig::window`] for more,
//! and answers each request through a oneshot channel. Nothing waits on an idle queue: a
//! lone request is verified alone; batches grow with the backlog.
//!
//! **When it pays.** Batching saves CPU, not latency: every member of a batch waits for the
//! whole batch, and a batch only forms when verification is deferred. On the 2-core bench
//! machine (`ganglion bench epistula`), 16 requests in flight with no HTTP around them:
//! 43–64 µs of wall-clock time per request inline against 30–44 µs batched (mean batch
//! 8–15); but in the loopback echo comparison the layer added more latency batched (p50
//! 550–900 µs) than inline (90–300 µs). That is why [`super::VerifierConfig::batch`] is off
//! by default.
//!
//! **Poisoning.** A signer whose signature fails inside a batch (or who signs the
//! `<Bytes>`-wrapped form, which the batch equation does not cover) is verified singly from
//! then on, and signers not yet seen to verify correctly are verified singly too, so a
//! stranger cannot make every batch fail and be re-verified.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ganglion_core::keys::{PublicKey, SIGNING_CONTEXT, Signature, VerifyingKey};
use tokio::sync::oneshot;

/// How batches form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most signatures verified in one `verify_batch` call.
    pub max_batch: usize,
    /// How long a verifier waits for more requests once it holds fewer than `max_batch`
    /// (zero: take whatever is queued, never wait).
    pub window: Duration,
    /// Requests that may wait in the queue; beyond that the caller verifies inline.
    pub queue_capacity: usize,
    /// Where batches are verified.
    pub driver: Driver,
    /// With [`Driver::Task`], how many tasks verify batches in parallel (one batch each; a
    /// single one would leave every other core idle while it verifies).
    pub verifiers: usize,
}

/// Where the batcher verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// Tasks on the async runtime that first uses the batcher: waking one costs no thread
    /// switch, and it verifies on whichever worker is free. Needs a Tokio runtime (and its
    /// time driver if [`BatchConfig::window`] is not zero); should that runtime shut down,
    /// requests are verified inline.
    #[default]
    Task,
    /// A dedicated OS thread. Leaves the async workers free, but each batch costs two
    /// cross-thread wake-ups, and on a machine whose cores are all busy the thread waits
    /// for the scheduler.
    Thread,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 64,
            window: Duration::ZERO,
            queue_capacity: 4096,
            driver: Driver::default(),
            verifiers: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// Why the batcher did not give a verdict (the caller then verifies inline).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batcher was shut down (or its verifiers are gone).
    #[error("the signature batcher is shut down")]
    Closed,
    /// The queue is full.
    #[error("the signature batcher's queue is full")]
    Full,
    /// The verifier thread could not be started.
    #[error("could not start the signature verifier thread: {0}")]
    Spawn(String),
    /// [`Driver::Task`] outside a Tokio runtime.
    #[error("the signature batcher's task needs a Tokio runtime")]
    NoRuntime,
}

/// What the verifiers have done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// `verify_batch` calls.
    pub batches: u64,
    /// Signatures checked in those calls.
    pub batched: u64,
    /// Signatures checked one at a time (lone requests, new or single-only signers).
    pub single: u64,
    /// Batches that failed and were re-verified one signature at a time.
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    batched: AtomicU64,
    single: AtomicU64,
    failed_batches: AtomicU64,
}

/// One signature to check, and where to send the verdict.
struct Job {
    signer: PublicKey,
    message: Vec<u8>,
    signature: Signature,
    reply: oneshot::Sender<bool>,
}

/// Verifiers that check concurrent signatures in batches. Dropping it (or calling
/// [`SignatureBatcher::shutdown`]) closes the queue; requests already queued are still
/// answered, later ones get [`BatchError::Closed`].
pub struct SignatureBatcher {
    queue: Mutex<Option<Queue>>,
    /// The verifier thread ([`Driver::Thread`]), joined on shutdown.
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

enum Queue {
    Thread(SyncSender<Job>),
    Task(tokio::sync::mpsc::Sender<Job>),
}

impl std::fmt::Debug for SignatureBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureBatcher").field("open", &self.is_open()).finish_non_exhaustive()
    }
}

impl SignatureBatcher {
    /// Starts the verifier ([`Driver::Task`] spawns on the current Tokio runtime).
    pub fn spawn(config: BatchConfig) -> Result<SignatureBatcher, BatchError> {
        let counters = Arc::new(Counters::default());
        let worker = Worker { config, signers: Arc::default(), counters: Arc::clone(&counters) };
        let capacity = config.queue_capacity.max(1);
        let (queue, thread) = match config.driver {
            Driver::Thread => {
                let (sender, receiver) = mpsc::sync_channel(capacity);
                let thread = std::thread::Builder::new()
                    .name("epistula-verify".into())
                    .spawn(move || worker.run_thread(receiver))
                    .map_err(|err| BatchError::Spawn(err.to_string()))?;
                (Queue::Thread(sender), Some(thread))
            }
            Driver::Task => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| BatchError::NoRuntime)?;
                let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
                let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
                // Detached: the tasks end once the queue is closed and drained.
                for _ in 0..config.verifiers.max(1) {
                    drop(runtime.spawn(worker.clone().run_task(Arc::clone(&receiver))));
                }
                (Queue::Task(sender), None)
            }
        };
        Ok(SignatureBatcher { queue: Mutex::new(Some(queue)), thread: Mutex::new(thread), counters })
    }

    /// Counts of the work done so far.
    pub fn stats(&self) -> BatchStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BatchStats {
            batches: read(&self.counters.batches),
            batched: read(&self.counters.batched),
            single: read(&self.counters.single),
            failed_batches: read(&self.counters.failed_batches),
        }
    }

    /// Whether requests are still accepted.
    pub fn is_open(&self) -> bool {
        self.queue.lock().map(|queue| queue.is_some()).unwrap_or(false)
    }

    /// Whether `signature` by `signer` verifies over `message` (plainly or `<Bytes>`-wrapped,
    /// as [`VerifyingKey::verify`] accepts). Waits for the batch it joins.
    pub async fn verify(&self, signer: PublicKey, message: Vec<u8>, signature: Signature) -> Result<bool, BatchError> {
        let (reply, verdict) = oneshot::channel();
        {
            let queue = self.queue.lock().map_err(|_| BatchError::Closed)?;
            let job = Job { signer, message, signature, reply };
            match queue.as_ref().ok_or(BatchError::Closed)? {
                Queue::Thread(sender) => sender.try_send(job).map_err(|err| match err {
                    TrySendError::Full(_) => BatchError::Full,
                    TrySendError::Disconnected(_) => BatchError::Closed,
                })?,
                Queue::Task(sender) => sender.try_send(job).map_err(|err| match err {
                    tokio::sync::mpsc::error::TrySendError::Full(_) => BatchError::Full,
                    tokio::sync::mpsc::error::TrySendError::Closed(_) => BatchError::Closed,
                })?,
            }
        }
        // Verifiers answer every job they receive; if one died instead, the sender is dropped.
        verdict.await.map_err(|_| BatchError::Closed)
    }

    /// Closes the queue and, with [`Driver::Thread`], waits for the thread to answer what is
    /// queued and exit (the task of [`Driver::Task`] does the same on its own).
    pub fn shutdown(&self) {
        self.close();
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            // The thread holds no lock of ours and its loop ends once the queue is drained.
            let _ = thread.join();
        }
    }

    fn close(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
    }
}

impl Drop for SignatureBatcher {
    fn drop(&mut self) {
        // Do not join here: a drop may happen on an async worker. The thread exits by itself
        // once the queue is drained.
        self.close();
    }
}

/// A signer key, decoded once, as the verifiers know it.
#[derive(Clone, Copy)]
struct Signer {
    /// For single verification (plain or `<Bytes>`-wrapped), through ganglion-core.
    key: VerifyingKey,
    /// For `verify_batch`.
    point: schnorrkel::PublicKey,
    /// Verified singly from now on (a signature of theirs failed in a batch, or they sign
    /// the wrapped form).
    singly: bool,
}

/// One verifier (the thread, or one of the tasks); the signer cache is shared.
#[derive(Clone)]
struct Worker {
    config: BatchConfig,
    /// Only signers whose signature verified are kept, at most [`Worker::CAPACITY`].
    signers: Arc<Mutex<HashMap<PublicKey, Signer>>>,
    counters: Arc<Counters>,
}

impl Worker {
    const CAPACITY: usize = 4096;

    fn run_thread(self, queue: Receiver<Job>) {
        let max_batch = self.config.max_batch.max(1);
        let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
        // `recv` fails only once the queue is closed *and* empty: everything queued is answered.
        while let Ok(first) = queue.recv() {
            jobs.push(first);
            let mut open = true;
            while jobs.len() < max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if open && !self.config.window.is_zero() {
                let deadline = Instant::now() + self.config.window;
                while jobs.len() < max_batch {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match queue.recv_timeout(left) {
                        Ok(job) => jobs.push(job),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            self.process(&mut jobs);
        }
    }

    async fn run_task(self, queue: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>) {
        let max_batch = self.config.max_batch.max(1);
        let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
        loop {
            // One task at a time takes a batch off the queue; the others verify theirs.
            let mut queue = queue.lock().await;
            // `recv` gives `None` once the queue is closed *and* empty.
            let Some(first) = queue.recv().await else {
                break;
            };
            jobs.push(first);
            while jobs.len() < max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if !self.config.window.is_zero() {
                let deadline = tokio::time::Instant::now() + self.config.window;
                while jobs.len() < max_batch {
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(job)) => jobs.push(job),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            drop(queue);
            self.process(&mut jobs);
        }
    }

    fn signer(&self, key: &PublicKey) -> Option<Signer> {
        self.signers.lock().ok().and_then(|signers| signers.get(key).copied())
    }

    /// Answers every job in `jobs` (and empties it).
    fn process(&self, jobs: &mut Vec<Job>) {
        // Requests whose client went away need no answer.
        jobs.retain(|job| !job.reply.is_closed());
        let mut batch: Vec<(Job, schnorrkel::Signature)> = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            let known = self.signer(&job.signer).is_some_and(|signer| !signer.singly);
            match schnorrkel::Signature::from_bytes(job.signature.as_bytes()) {
                Ok(signature) if known => batch.push((job, signature)),
                // Not a canonical signature: no form of verification accepts it.
                Err(_) => {
                    let _ = job.reply.send(false);
                }
                Ok(signature) => {
                    let verdict = self.verify_one(&job, &signature);
                    let _ = job.reply.send(verdict);
                }
            }
        }
        if batch.len() == 1 {
            if let Some((job, signature)) = batch.pop() {
                let verdict = self.verify_one(&job, &signature);
                let _ = job.reply.send(verdict);
            }
            return;
        }
        if batch.is_empty() {
            return;
        }
        // Same signers next to each other, so that their key terms merge.
        batch.sort_unstable_by_key(|(job, _)| job.signer);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        self.counters.batched.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if self.verify_batch(&batch) {
            for (job, _) in batch {
                let _ = job.reply.send(true);
            }
            return;
        }
        self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
        for (job, signature) in batch {
            let verdict = self.verify_after_failed_batch(&job, &signature);
            let _ = job.reply.send(verdict);
        }
    }

    /// One `verify_batch` call over signers all present in the cache.
    fn verify_batch(&self, batch: &[(Job, schnorrkel::Signature)]) -> bool {
        let mut points = Vec::with_capacity(batch.len());
        {
            let Ok(signers) = self.signers.lock() else {
                return false;
            };
            for (job, _) in batch {
                match signers.get(&job.signer) {
                    Some(signer) => points.push(signer.point),
                    None => return false,
                }
            }
        }
        let signatures: Vec<schnorrkel::Signature> = batch.iter().map(|(_, signature)| *signature).collect();
        let context = schnorrkel::signing_context(SIGNING_CONTEXT);
        let transcripts = batch.iter().map(|(job, _)| context.bytes(&job.message));
        // `verify_batch` draws its random scalars from the OS and panics if it cannot; treat
        // that as a failed batch (each signature is then verified singly) rather than dying.
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            schnorrkel::verify_batch(transcripts, &signatures, &points, true).is_ok()
        }))
        .unwrap_or(false)
    }

    /// Single verification (plain or wrapped); remembers the signer if it verifies.
    fn verify_one(&self, job: &Job, signature: &schnorrkel::Signature) -> bool {
        self.counters.single.fetch_add(1, Ordering::Relaxed);
        if let Some(signer) = self.signer(&job.signer) {
            return signer.key.verify(&job.message, &job.signature);
        }
        let (Some(key), Ok(point)) =
            (job.signer.verifying_key(), schnorrkel::PublicKey::from_bytes(job.signer.as_bytes()))
        else {
            return false;
        };
        // A plain signature is what batches check; signers of the wrapped form stay single.
        let plain = point.verify_simple(SIGNING_CONTEXT, &job.message, signature).is_ok();
        if !plain && !key.verify(&job.message, &job.signature) {
            return false;
        }
        if let Ok(mut signers) = self.signers.lock() {
            if signers.len() >= Self::CAPACITY {
                signers.clear();
            }
            signers.insert(job.signer, Signer { key, point, singly: !plain });
        }
        true
    }

    /// Re-verifies one member of a failed batch; a signer whose plain signature does not
    /// verify is verified singly from now on.
    fn verify_after_failed_batch(&self, job: &Job, signature: &schnorrkel::Signature) -> bool {
        let Some(signer) = self.signer(&job.signer) else {
            return false;
        };
        if signer.point.verify_simple(SIGNING_CONTEXT, &job.message, signature).is_ok() {
            return true;
        }
        if let Ok(mut signers) = self.signers.lock()
            && let Some(entry) = signers.get_mut(&job.signer)
        {
            entry.singly = true;
        }
        signer.key.verify(&job.message, &job.signature)
    }
}

#[cfg(test)]
mod tests;
