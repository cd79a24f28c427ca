//! The built-in challenge solver: a pool of worker threads that search keyspaces in blocks.
//!
//! - **All cores, many lanes.** Each worker hashes 8 candidates per step (see [`kernel`]).
//! - **Fair sharing between callers, one job at a time within a caller.** Every challenge in
//!   flight is a job of a *group* (the miner uses the calling validator's hotkey). A worker
//!   takes its next block from the groups in turn (round robin per block), so concurrent
//!   challenges from several validators progress together instead of queueing behind each
//!   other as in the original's FIFO, where the later validators timed out. Within a group
//!   the workers search the oldest job that still has blocks to hand out: a validator's
//!   concurrent challenges of one round share one deadline, and for a password drawn
//!   uniformly from the keyspace the chance of finding it in the next block grows with the
//!   part already searched, so finishing one job before starting the next solves more of
//!   them by the deadline than searching them side by side (see `scoring`'s module
//!   documentation: this is what makes splitting a machine across hotkeys pay nothing).
//!   [`Solver::solve`] puts every job in a group of its own.
//! - **Deadlines and cancellation.** A job ends at its deadline, when the caller drops the
//!   future (the validator hung up), or when the pool shuts down; a worker never starts a
//!   block of a finished job. A block is about 65 000 candidates (a few milliseconds).
//! - **Optional rate cap** (`max_hash_rate`): a token bucket over the whole pool, for miners
//!   that share the machine with other work (and for demonstrating two miners of different
//!   speed on one machine, as `ganglion localnet` does).

pub mod kernel;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use kernel::{Kernel, Layout};

use crate::error::{ComputeError, Result};
use crate::pow::ChallengeSpec;

/// Candidates per block (rounded to whole outer indices).
const BLOCK_CANDIDATES: u64 = 65_536;

/// Solver settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SolverConfig {
    /// Worker threads (0: one per logical CPU).
    pub threads: usize,
    /// Hashing kernel.
    pub kernel: Kernel,
    /// Upper bound on hashes per second over all workers (None: unlimited).
    pub max_hash_rate: Option<u64>,
}

/// A found password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    /// The password.
    pub password: String,
    /// Candidates hashed before it was found (all workers, whole blocks).
    pub searched: u64,
    /// Time from submission to the answer.
    pub elapsed: Duration,
}

struct Job {
    group: u64,
    layout: Layout,
    deadline: Instant,
    started: Instant,
    outer_per_block: u64,
    next_outer: AtomicU64,
    in_flight: AtomicU64,
    searched: AtomicU64,
    finished: AtomicBool,
    reply: Mutex<Option<oneshot::Sender<Result<Solution>>>>,
}

impl Job {
    fn finish(&self, outcome: Result<Solution>) {
        self.finished.store(true, Ordering::SeqCst);
        let sender = match self.reply.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(sender) = sender {
            let _ = sender.send(outcome);
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Arc<Job>>,
}

struct RateLimit {
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// Takes `n` tokens; returns how long to sleep to stay under the rate. The bucket holds
    /// at most 50 ms of tokens so that idle time does not turn into a burst.
    fn take(&self, n: u64) -> Duration {
        let mut guard = match self.bucket.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let (tokens, last) = *guard;
        let capacity = self.rate * 0.05;
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(capacity);
        let left = refilled - n as f64;
        *guard = (left, now);
        if left < 0.0 { Duration::from_secs_f64(-left / self.rate) } else { Duration::ZERO }
    }
}

struct Shared {
    kernel: Kernel,
    queue: Mutex<Queue>,
    wake: Condvar,
    shutdown: AtomicBool,
    rate: Option<RateLimit>,
    hashed: AtomicU64,
    /// The next group [`Solver::solve`] hands out.
    next_group: AtomicU64,
}

/// The worker pool. Dropping it stops the workers (jobs in flight end as cancelled).
pub struct Solver {
    shared: Arc<Shared>,
    threads: usize,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Solver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solver").field("threads", &self.threads).field("kernel", &self.shared.kernel).finish()
    }
}

impl Solver {
    /// Starts the pool.
    pub fn new(config: &SolverConfig) -> Result<Solver> {
        let kernel = config.kernel.resolve().map_err(ComputeError::Config)?;
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            config.threads.min(1024)
        };
        let rate = match config.max_hash_rate {
            Some(0) => return Err(ComputeError::Config("max_hash_rate must be positive (leave it unset for no limit)".into())),
            Some(rate) => Some(RateLimit { rate: rate as f64, bucket: Mutex::new((0.0, Instant::now())) }),
            None => None,
        };
        let shared = Arc::new(Shared {
            kernel,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            rate,
            hashed: AtomicU64::new(0),
            next_group: AtomicU64::new(0),
        });
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("pow-solver-{index}"))
                .spawn(move || worker(&shared))
                .map_err(|err| ComputeError::io("starting solver thread", "pow-solver", err))?;
            workers.push(handle);
        }
        Ok(Solver { shared, threads, workers })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The kernel in use (never `Auto`).
    pub fn kernel(&self) -> Kernel {
        self.shared.kernel
    }

    /// Candidates hashed since the pool started.
    pub fn hashed(&self) -> u64 {
        self.shared.hashed.load(Ordering::Relaxed)
    }

    /// Jobs in flight.
    pub fn active_jobs(&self) -> usize {
        self.lock_queue().jobs.iter().filter(|j| !j.is_finished()).count()
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        match self.shared.queue.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Searches for the password of `spec` until `deadline`, in a group of its own (shares
    /// the workers fairly with every other job). Dropping the future cancels it.
    pub fn solve(&self, spec: &ChallengeSpec, deadline: Instant) -> Result<SolveFuture> {
        let group = self.own_group();
        self.solve_in(group, spec, deadline)
    }

    /// [`Solver::solve`] in `group`: the group gets its fair share of the workers, and its
    /// jobs are searched one after another in the order they came (the oldest job with
    /// blocks left first). Use [`Solver::group_of`] for a caller's group.
    pub fn solve_in(&self, group: u64, spec: &ChallengeSpec, deadline: Instant) -> Result<SolveFuture> {
        let (rx, job) = self.submit(group, spec, deadline)?;
        Ok(SolveFuture { rx, job })
    }

    /// The group of a caller (e.g. a validator's hotkey bytes): the same caller, the same
    /// group; never one of the groups [`Solver::solve`] makes up.
    pub fn group_of(caller: &[u8]) -> u64 {
        // FNV-1a with the top bit set; own groups have it clear.
        let hash = caller.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        hash | (1 << 63)
    }

    fn own_group(&self) -> u64 {
        self.shared.next_group.fetch_add(1, Ordering::Relaxed) & !(1 << 63)
    }

    /// [`Solver::solve`] for synchronous callers (benchmarks, tests).
    pub fn solve_blocking(&self, spec: &ChallengeSpec, deadline: Instant) -> Result<Solution> {
        let (rx, job) = self.submit(self.own_group(), spec, deadline)?;
        let outcome = rx.blocking_recv().unwrap_or(Err(ComputeError::Cancelled));
        job.finished.store(true, Ordering::SeqCst);
        outcome
    }

    fn submit(&self, group: u64, spec: &ChallengeSpec, deadline: Instant) -> Result<(oneshot::Receiver<Result<Solution>>, Arc<Job>)> {
        let layout = layout_of(spec)?;
        let (tx, rx) = oneshot::channel();
        let outer_per_block = (BLOCK_CANDIDATES / layout.low_count).max(1);
        let job = Arc::new(Job {
            group,
            layout,
            deadline,
            started: Instant::now(),
            outer_per_block,
            next_outer: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            searched: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            reply: Mutex::new(Some(tx)),
        });
        if self.shared.shutdown.load(Ordering::SeqCst) {
            return Err(ComputeError::Cancelled);
        }
        self.lock_queue().jobs.push_back(Arc::clone(&job));
        self.shared.wake.notify_all();
        Ok((rx, job))
    }
}

impl Drop for Solver {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        let jobs: Vec<Arc<Job>> = self.lock_queue().jobs.drain(..).collect();
        for job in jobs {
            job.finish(Err(ComputeError::Cancelled));
        }
    }
}

/// The pending answer of [`Solver::solve`]. Dropping it cancels the search.
pub struct SolveFuture {
    rx: oneshot::Receiver<Result<Solution>>,
    job: Arc<Job>,
}

impl std::fmt::Debug for SolveFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolveFuture").field("keyspace", &self.job.layout.keyspace()).finish()
    }
}

impl Future for SolveFuture {
    type Output = Result<Solution>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(outcome)) => Poll::Ready(outcome),
            Poll::Ready(Err(_)) => Poll::Ready(Err(ComputeError::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for SolveFuture {
    fn drop(&mut self) {
        self.job.finished.store(true, Ordering::SeqCst);
    }
}

/// The kernel layout of a validated challenge.
pub fn layout_of(spec: &ChallengeSpec) -> Result<Layout> {
    let chars: [u8; 10] = spec
        .chars
        .as_bytes()
        .try_into()
        .map_err(|_| ComputeError::invalid("challenge_chars", "expected exactly 10 ASCII characters"))?;
    let salt: [u8; 16] = spec
        .salt
        .as_bytes()
        .try_into()
        .map_err(|_| ComputeError::invalid("challenge_salt", "expected 16 hex digits"))?;
    Ok(Layout::new(spec.difficulty, chars, salt, spec.target()))
}

fn worker(shared: &Shared) {
    let mut cursor = 0usize;
    loop {
        let job = {
            let mut queue = match shared.queue.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            loop {
                if shared.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                // Jobs waiting behind an older one of their group end at their deadline too.
                let now = Instant::now();
                for job in queue.jobs.iter().filter(|j| !j.is_finished() && now >= j.deadline) {
                    job.finish(Err(ComputeError::DeadlineExceeded { searched: job.searched.load(Ordering::SeqCst), keyspace: job.layout.keyspace() }));
                }
                queue.jobs.retain(|job| !job.is_finished());
                if !queue.jobs.is_empty() {
                    break;
                }
                queue = match shared.wake.wait_timeout(queue, Duration::from_millis(200)) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            cursor = cursor.wrapping_add(1);
            next_job(&queue.jobs, cursor)
        };
        if let Some(job) = job {
            run_block(shared, &job);
        }
    }
}

/// The job a worker searches next: the `cursor`-th group in turn (groups in the order of
/// their oldest job), and in it the oldest job with blocks left to hand out (else its oldest).
fn next_job(jobs: &VecDeque<Arc<Job>>, cursor: usize) -> Option<Arc<Job>> {
    let mut groups: Vec<u64> = Vec::new();
    for job in jobs {
        if !groups.contains(&job.group) {
            groups.push(job.group);
        }
    }
    let group = *groups.get(cursor % groups.len().max(1))?;
    let mut members = jobs.iter().filter(|j| j.group == group);
    let oldest = members.clone().next();
    members.find(|j| j.next_outer.load(Ordering::SeqCst) < j.layout.outer_count).or(oldest).map(Arc::clone)
}

fn run_block(shared: &Shared, job: &Job) {
    if job.is_finished() {
        return;
    }
    if Instant::now() >= job.deadline {
        job.finish(Err(ComputeError::DeadlineExceeded {
            searched: job.searched.load(Ordering::SeqCst),
            keyspace: job.layout.keyspace(),
        }));
        return;
    }
    job.in_flight.fetch_add(1, Ordering::SeqCst);
    let start = job.next_outer.fetch_add(job.outer_per_block, Ordering::SeqCst);
    if start < job.layout.outer_count {
        let found = kernel::search(shared.kernel, &job.layout, start, job.outer_per_block);
        let outers = job.outer_per_block.min(job.layout.outer_count - start);
        let candidates = outers * job.layout.low_count;
        job.searched.fetch_add(candidates, Ordering::SeqCst);
        shared.hashed.fetch_add(candidates, Ordering::Relaxed);
        if let Some(index) = found {
            job.finish(Ok(Solution {
                password: job.layout.password(index),
                searched: job.searched.load(Ordering::SeqCst),
                elapsed: job.started.elapsed(),
            }));
        }
        if let Some(rate) = &shared.rate {
            let pause = rate.take(candidates);
            if !pause.is_zero() {
                // Never sleep past the job's deadline.
                let until_deadline = job.deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(pause.min(until_deadline));
            }
        }
    }
    let remaining = job.in_flight.fetch_sub(1, Ordering::SeqCst) - 1;
    if remaining == 0 && job.next_outer.load(Ordering::SeqCst) >= job.layout.outer_count && !job.is_finished() {
        job.finish(Err(ComputeError::Exhausted { keyspace: job.layout.keyspace() }));
    }
}

#[cfg(test)]
mod tests;
