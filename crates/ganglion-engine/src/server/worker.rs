//! The engine worker: one OS thread owns all model work.
//!
//! By default ([`Schedule::Batched`]) it does continuous batching: up to
//! [`WorkerOptions::max_batch`] generations are active at once, and each turn is one step of
//! all of them, the tokens of every decoding sequence run through the model in one batched
//! forward ([`Engine::step_batch`]: each sequence keeps its own KV cache and sampler, and its
//! output is identical to serving it alone); a sequence still in its prompt runs one prompt
//! chunk in that turn. Waiting requests are admitted between turns as slots free up. The
//! older schedules serve one generation per turn (round robin or FIFO). Requests beyond
//! [`WorkerOptions::max_queued`] in flight are refused at submission ([`SubmitError::Busy`]).
//! A request whose event receiver is dropped (the client disconnected) is cancelled before
//! its next turn.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::metrics::Metrics;
use crate::engine::{Engine, FinishReason, Generation, StepOutput, TokenScore};
use crate::error::EngineError;

/// What the worker reports for one request, in order.
#[derive(Debug)]
pub enum Event {
    /// The prompt has been processed; its scores if `prompt_logprobs` was asked for.
    PromptDone(Vec<TokenScore>),
    /// Tokens and/or text from one step.
    Step {
        /// What the step produced.
        out: StepOutput,
        /// Worker-wide step counter (shows how requests were interleaved).
        turn: u64,
    },
    /// The generation is over.
    Done {
        /// Why.
        finish: FinishReason,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
    },
    /// The generation failed.
    Failed(EngineError),
}

/// One queued request.
#[derive(Debug)]
pub struct Job {
    /// The generation to drive.
    pub generation: Generation,
    /// Where its events go.
    pub events: mpsc::UnboundedSender<Event>,
    /// When it was queued (for the time-to-first-token histogram).
    pub queued: Instant,
}

/// Why a request could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// As many requests as the queue holds are already in flight.
    #[error("the server is busy: {limit} requests are already queued or running; retry later")]
    Busy {
        /// [`WorkerOptions::max_queued`].
        limit: usize,
    },
    /// The worker thread has stopped.
    #[error("the engine worker thread has stopped")]
    Stopped,
}

/// How the worker serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerOptions {
    /// At most one turn per interval (see [`Pace`]).
    pub pace: Option<Pace>,
    /// Order of service.
    pub schedule: Schedule,
    /// Generations stepped together in one batched turn ([`Schedule::Batched`]; llama.cpp's
    /// parallel slots). At least 1.
    pub max_batch: usize,
    /// Requests queued or running at once; more are refused with [`SubmitError::Busy`].
    pub max_queued: usize,
}

/// Default [`WorkerOptions::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 16;
/// Default [`WorkerOptions::max_queued`].
pub const DEFAULT_MAX_QUEUED: usize = 256;

impl Default for WorkerOptions {
    /// Continuous batching of up to 16 sequences, 256 requests in flight, no pace.
    fn default() -> Self {
        WorkerOptions { pace: None, schedule: Schedule::Batched, max_batch: DEFAULT_MAX_BATCH, max_queued: DEFAULT_MAX_QUEUED }
    }
}

/// Handle to submit jobs to the worker thread.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    jobs: mpsc::UnboundedSender<Job>,
    /// Requests submitted and not yet finished (the worker decrements).
    in_flight: Arc<AtomicUsize>,
    max_queued: usize,
}

impl WorkerHandle {
    /// Spawns the worker thread with the default options (continuous batching). It exits
    /// when every handle is dropped.
    pub fn spawn(engine: Arc<Engine>, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Self::spawn_with(engine, metrics, WorkerOptions::default())
    }

    /// Spawns a round-robin worker taking at most one turn per `pace` interval.
    pub fn spawn_paced(engine: Arc<Engine>, metrics: Arc<Metrics>, pace: Option<Pace>) -> std::io::Result<Self> {
        Self::spawn_scheduled(engine, metrics, pace, Schedule::RoundRobin)
    }

    /// Spawns the worker thread with a pace and an order of service.
    pub fn spawn_scheduled(engine: Arc<Engine>, metrics: Arc<Metrics>, pace: Option<Pace>, schedule: Schedule) -> std::io::Result<Self> {
        Self::spawn_with(engine, metrics, WorkerOptions { pace, schedule, ..WorkerOptions::default() })
    }

    /// Spawns the worker thread with `options`.
    pub fn spawn_with(engine: Arc<Engine>, metrics: Arc<Metrics>, options: WorkerOptions) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        let options = WorkerOptions { max_batch: options.max_batch.max(1), max_queued: options.max_queued.max(1), ..options };
        std::thread::Builder::new().name("ganglion-engine".into()).spawn(move || {
            let mut worker = Worker { engine, metrics, in_flight: counter, turn: 0 };
            match options.schedule {
                Schedule::Batched => worker.run_batched(rx, options),
                _ => worker.run(rx, options.pace, options.schedule),
            }
        })?;
        Ok(Self { jobs: tx, in_flight, max_queued: options.max_queued })
    }

    /// Queues a generation and returns its event stream; refused when
    /// [`WorkerOptions::max_queued`] requests are already in flight or the worker is gone.
    pub fn submit(&self, generation: Generation) -> Result<mpsc::UnboundedReceiver<Event>, SubmitError> {
        let admitted = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_queued).then_some(n + 1));
        if admitted.is_err() {
            return Err(SubmitError::Busy { limit: self.max_queued });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if self.jobs.send(Job { generation, events: tx, queued: Instant::now() }).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::Stopped);
        }
        Ok(rx)
    }

    /// Requests queued or running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// The order in which the worker serves the generations in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Continuous batching: every active generation advances in each turn, their decode
    /// steps sharing one batched forward (the default).
    #[default]
    Batched,
    /// One generation's turn at a time, each in turn (every stream advances).
    RoundRobin,
    /// The oldest generation to its end before the next one starts: the lowest mean
    /// latency for the same work, and the order that favours the first request served.
    Fifo,
}

/// A cap on the worker's speed: one turn per `interval`, never bursting to catch up after
/// a slow turn or an idle spell. Below what the machine sustains, it makes the worker a
/// device of exactly that speed however many other processes share the CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    interval: std::time::Duration,
}

impl Pace {
    /// `turns` per second (`None` unless finite and positive).
    pub fn per_second(turns: f64) -> Option<Pace> {
        (turns.is_finite() && turns > 0.0).then(|| Pace { interval: std::time::Duration::from_secs_f64(1.0 / turns) })
    }

    /// Sleeps until the slot after `slot`, and returns the next one.
    fn wait(self, slot: Instant) -> Instant {
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
        slot.max(now) + self.interval
    }
}

struct Active {
    job: Job,
    prompt_reported: bool,
}

impl Active {
    fn new(job: Job) -> Self {
        Active { job, prompt_reported: false }
    }
}

struct Worker {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    in_flight: Arc<AtomicUsize>,
    turn: u64,
}

impl Worker {
    /// A request left the worker (finished, failed or cancelled).
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Sends what one step produced; `false` when the request is over (finished, failed, or
    /// its client went away), after releasing it.
    /// `seconds` is the step's time, `None` when a batched turn's time was already counted.
    fn report(&self, active: &mut Active, result: crate::error::EngineResult<StepOutput>, was_prefilling: bool, seconds: Option<f64>) -> bool {
        let generation = &active.job.generation;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                // Released before the last event, so a client that has seen it sees the place free.
                self.release();
                let _ = active.job.events.send(Event::Failed(err));
                return false;
            }
        };
        match seconds {
            Some(seconds) => self.metrics.step(was_prefilling, seconds, out.tokens.len()),
            None => self.metrics.generated(out.tokens.len()),
        }
        if generation.prompt_processed() && !active.prompt_reported {
            active.prompt_reported = true;
            self.metrics.prompt_done(generation.prompt_tokens(), active.job.queued.elapsed().as_secs_f64());
            let _ = active.job.events.send(Event::PromptDone(generation.prompt_scores().to_vec()));
        }
        let finish = out.finish;
        let has_output = !out.tokens.is_empty() || !out.text.is_empty();
        if has_output && active.job.events.send(Event::Step { out, turn: self.turn }).is_err() {
            self.metrics.cancelled();
            self.release();
            return false;
        }
        if let Some(finish) = finish {
            self.release();
            let _ = active.job.events.send(Event::Done {
                finish,
                prompt_tokens: generation.prompt_tokens(),
                completion_tokens: generation.completion_tokens(),
            });
            return false;
        }
        true
    }

    fn run(&mut self, mut jobs: mpsc::UnboundedReceiver<Job>, pace: Option<Pace>, schedule: Schedule) {
        let mut queue: VecDeque<Active> = VecDeque::new();
        let mut slot = Instant::now();
        loop {
            if queue.is_empty() {
                self.metrics.running(0);
                match jobs.blocking_recv() {
                    Some(job) => queue.push_back(Active::new(job)),
                    None => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                queue.push_back(Active::new(job));
            }
            self.metrics.running(queue.len());
            let Some(mut active) = queue.pop_front() else { continue };
            if active.job.events.is_closed() {
                self.metrics.cancelled();
                self.release();
                continue;
            }
            if let Some(pace) = pace {
                slot = pace.wait(slot);
            }
            let started = Instant::now();
            let was_prefilling = !active.job.generation.prompt_processed();
            let result = active.job.generation.step(&self.engine);
            self.turn += 1;
            if self.report(&mut active, result, was_prefilling, Some(started.elapsed().as_secs_f64())) {
                if schedule == Schedule::Fifo {
                    queue.push_front(active);
                } else {
                    queue.push_back(active);
                }
            }
        }
    }

    /// Continuous batching: admit waiting requests up to `max_batch` between turns, drop the
    /// cancelled, then step every active generation in one [`Engine::step_batch`].
    fn run_batched(&mut self, mut jobs: mpsc::UnboundedReceiver<Job>, options: WorkerOptions) {
        let mut waiting: VecDeque<Job> = VecDeque::new();
        let mut active: Vec<Active> = Vec::new();
        let mut slot = Instant::now();
        loop {
            if active.is_empty() && waiting.is_empty() {
                self.metrics.running(0);
                match jobs.blocking_recv() {
                    Some(job) => waiting.push_back(job),
                    None => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                waiting.push_back(job);
            }
            // Cancellation: a client that went away frees its slot (or its place in line).
            let before = active.len() + waiting.len();
            active.retain(|a| !a.job.events.is_closed());
            waiting.retain(|j| !j.events.is_closed());
            for _ in active.len() + waiting.len()..before {
                self.metrics.cancelled();
                self.release();
            }
            while active.len() < options.max_batch {
                let Some(job) = waiting.pop_front() else { break };
                active.push(Active::new(job));
            }
            self.metrics.running(active.len());
            if active.is_empty() {
                continue;
            }
            if let Some(pace) = options.pace {
                slot = pace.wait(slot);
            }
            let started = Instant::now();
            let prefilling: Vec<bool> = active.iter().map(|a| !a.job.generation.prompt_processed()).collect();
            let results = {
                let mut generations: Vec<&mut Generation> = active.iter_mut().map(|a| &mut a.job.generation).collect();
                self.engine.step_batch(&mut generations)
            };
            self.turn += 1;
            let seconds = started.elapsed().as_secs_f64();
            let mut kept = Vec::with_capacity(active.len());
            let mut counted = false;
            for ((mut a, result), was_prefilling) in active.drain(..).zip(results).zip(prefilling) {
                // The turn's time is counted once, against its first report.
                let share = (!counted).then_some(seconds);
                counted = true;
                if self.report(&mut a, result, was_prefilling, share) {
                    kept.push(a);
                }
            }
            active = kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::GenerateRequest;
    use crate::model::tests::tiny_model;
    use crate::sampling::SamplingParams;

    fn request(engine: &Engine, max_tokens: usize) -> Generation {
        engine
            .start(GenerateRequest {
                ignore_eos: false,
                prompt: vec![5, 6, 7],
                max_tokens,
                sampling: SamplingParams { temperature: 0.0, ..Default::default() },
                stop: Vec::new(),
                top_logprobs: 0,
                prompt_logprobs: None,
            })
            .unwrap()
    }

    fn collect(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<u64> {
        let mut turns = Vec::new();
        loop {
            match rx.blocking_recv() {
                Some(Event::Step { out, turn }) => turns.extend(out.tokens.iter().map(|_| turn)),
                Some(Event::Done { finish, completion_tokens, .. }) => {
                    assert_eq!(finish, FinishReason::Length);
                    assert_eq!(completion_tokens, turns.len());
                    return turns;
                }
                Some(Event::PromptDone(_)) => {}
                Some(Event::Failed(e)) => panic!("{e}"),
                None => panic!("worker hung up"),
            }
        }
    }

    /// Every generated token (id and logprob bits) and the text of one request.
    fn tokens_of(rx: &mut mpsc::UnboundedReceiver<Event>) -> (Vec<(u32, u32)>, String, FinishReason) {
        let (mut tokens, mut text) = (Vec::new(), String::new());
        loop {
            match rx.blocking_recv() {
                Some(Event::Step { out, .. }) => {
                    tokens.extend(out.tokens.iter().map(|t| (t.score.token, t.score.logprob.to_bits())));
                    text.push_str(&out.text);
                }
                Some(Event::Done { finish, .. }) => return (tokens, text, finish),
                Some(Event::PromptDone(_)) => {}
                Some(Event::Failed(e)) => panic!("{e}"),
                None => panic!("worker hung up"),
            }
        }
    }

    fn sampled(engine: &Engine, prompt: Vec<u32>, seed: u64, max_tokens: usize) -> Generation {
        engine
            .start(GenerateRequest {
                ignore_eos: false,
                prompt,
                max_tokens,
                sampling: SamplingParams { temperature: 0.9, top_p: 0.95, seed, ..Default::default() },
                stop: Vec::new(),
                top_logprobs: 2,
                prompt_logprobs: None,
            })
            .unwrap()
    }

    #[test]
    fn a_request_among_concurrent_others_gets_the_tokens_it_gets_alone() {
        let (_dir, path) = tiny_model();
        let engine = Arc::new(Engine::load(&path).unwrap());
        let prompt: Vec<u32> = (0..20).map(|i| 3 + (i * 11) % 200).collect();
        // Alone, through the unbatched step.
        let mut alone = sampled(&engine, prompt.clone(), 42, 24);
        let mut expected = Vec::new();
        loop {
            let out = alone.step(&engine).unwrap();
            expected.extend(out.tokens.iter().map(|t| (t.score.token, t.score.logprob.to_bits())));
            if out.finish.is_some() {
                break;
            }
        }
        // Among five others (different prompts, lengths and seeds, one arriving later) in a
        // batching worker.
        let options = WorkerOptions { max_batch: 4, ..WorkerOptions::default() };
        let worker = WorkerHandle::spawn_with(engine.clone(), Arc::new(Metrics::default()), options).unwrap();
        let mut others: Vec<_> = (0..3u64).map(|i| worker.submit(sampled(&engine, vec![5 + i as u32; 3 + i as usize * 7], i, 10 + i as usize * 9)).unwrap()).collect();
        let mut rx = worker.submit(sampled(&engine, prompt, 42, 24)).unwrap();
        others.extend((3..5u64).map(|i| worker.submit(sampled(&engine, vec![9; 5], i, 30)).unwrap()));
        let (got, _, finish) = tokens_of(&mut rx);
        assert_eq!(finish, FinishReason::Length);
        assert_eq!(got, expected, "batched tokens or logprobs differ from the request served alone");
        for mut other in others {
            assert!(!tokens_of(&mut other).0.is_empty());
        }
        assert_eq!(worker.in_flight(), 0);
    }

    #[test]
    fn a_full_queue_refuses_requests() {
        let (_dir, path) = tiny_model();
        let engine = Arc::new(Engine::load(&path).unwrap());
        let options = WorkerOptions { max_batch: 1, max_queued: 2, pace: Pace::per_second(50.0), ..WorkerOptions::default() };
        let worker = WorkerHandle::spawn_with(engine.clone(), Arc::new(Metrics::default()), options).unwrap();
        let a = worker.submit(request(&engine, 5)).unwrap();
        let b = worker.submit(request(&engine, 5)).unwrap();
        assert_eq!(worker.submit(request(&engine, 5)).unwrap_err(), SubmitError::Busy { limit: 2 });
        // Disconnecting frees the places.
        drop((a, b));
        let started = Instant::now();
        while worker.in_flight() > 0 {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "cancelled requests were never released");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut c = worker.submit(request(&engine, 3)).unwrap();
        assert_eq!(collect(&mut c).len(), 3);
    }

    #[test]
    fn a_paced_worker_takes_no_more_turns_than_its_pace() {
        let (_dir, path) = tiny_model();
        let engine = Arc::new(Engine::load(&path).unwrap());
        let metrics = Arc::new(Metrics::default());
        let worker = WorkerHandle::spawn_paced(engine.clone(), metrics, Pace::per_second(100.0)).unwrap();
        let started = Instant::now();
        let mut a = worker.submit(request(&engine, 10)).unwrap();
        let mut b = worker.submit(request(&engine, 10)).unwrap();
        let turns = collect(&mut a).len() + collect(&mut b).len();
        // 20 tokens and at least one prompt turn each: 22 turns, the first at once, so at
        // least 21 intervals of 10 ms whatever the machine's speed (a lower bound only).
        assert_eq!(turns, 20);
        let elapsed = started.elapsed();
        assert!(elapsed >= std::time::Duration::from_millis(210), "22 turns at 100/s took only {elapsed:?}");
        assert_eq!(Pace::per_second(0.0), None);
        assert_eq!(Pace::per_second(f64::NAN), None);
    }

    #[test]
    fn a_fifo_worker_finishes_the_oldest_first() {
        let (_dir, path) = tiny_model();
        let engine = Arc::new(Engine::load(&path).unwrap());
        let worker = WorkerHandle::spawn_scheduled(engine.clone(), Arc::new(Metrics::default()), None, Schedule::Fifo).unwrap();
        let mut a = worker.submit(request(&engine, 12)).unwrap();
        let mut b = worker.submit(request(&engine, 12)).unwrap();
        let (turns_a, turns_b) = (collect(&mut a), collect(&mut b));
        assert_eq!((turns_a.len(), turns_b.len()), (12, 12));
        assert!(turns_a[11] < turns_b[0], "b started before a ended: a {turns_a:?} b {turns_b:?}");
    }

    #[test]
    fn concurrent_requests_interleave_and_disconnects_cancel() {
        let (_dir, path) = tiny_model();
        let engine = Arc::new(Engine::load(&path).unwrap());
        let metrics = Arc::new(Metrics::default());
        let worker = WorkerHandle::spawn(engine.clone(), metrics.clone()).unwrap();
        let mut a = worker.submit(request(&engine, 30)).unwrap();
        let mut b = worker.submit(request(&engine, 30)).unwrap();
        drop(worker.submit(request(&engine, 400)).unwrap());
        let turns_a = collect(&mut a);
        let turns_b = collect(&mut b);
        assert_eq!((turns_a.len(), turns_b.len()), (30, 30));
        // Round robin: b's first token comes before a's last one (FIFO would finish a first).
        assert!(turns_b[0] < turns_a[29], "not interleaved: a {turns_a:?} b {turns_b:?}");
        let generated = metrics.generation_tokens();
        assert!(generated < 100.0, "the disconnected request kept generating: {generated} tokens");
        assert!(metrics.cancelled_count() >= 1.0);
    }
}
