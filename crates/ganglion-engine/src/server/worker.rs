//! The engine worker: one OS thread owns all model work and serves a queue of generations
//! round-robin (one prompt chunk or one token per turn), so concurrent requests progress
//! fairly and a long prompt cannot starve the others. A request whose event receiver is
//! dropped (the client disconnected) is cancelled at its next turn.

use std::collections::VecDeque;
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

/// Handle to submit jobs to the worker thread.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    jobs: mpsc::UnboundedSender<Job>,
}

impl WorkerHandle {
    /// Spawns the worker thread. It exits when every handle is dropped.
    pub fn spawn(engine: Arc<Engine>, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        Self::spawn_paced(engine, metrics, None)
    }

    /// Spawns the worker thread, taking at most one turn per `pace` interval.
    pub fn spawn_paced(engine: Arc<Engine>, metrics: Arc<Metrics>, pace: Option<Pace>) -> std::io::Result<Self> {
        Self::spawn_scheduled(engine, metrics, pace, Schedule::RoundRobin)
    }

    /// Spawns the worker thread with a pace and an order of service.
    pub fn spawn_scheduled(engine: Arc<Engine>, metrics: Arc<Metrics>, pace: Option<Pace>, schedule: Schedule) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("ganglion-engine".into())
            .spawn(move || run(engine, metrics, rx, pace, schedule))?;
        Ok(Self { jobs: tx })
    }

    /// Queues a generation; returns its event stream, or `None` if the worker is gone.
    pub fn submit(&self, generation: Generation) -> Option<mpsc::UnboundedReceiver<Event>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.jobs.send(Job { generation, events: tx, queued: Instant::now() }).ok().map(|_| rx)
    }
}

/// The order in which the worker serves the generations in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// One turn each in turn (every stream advances; the default).
    #[default]
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

fn run(engine: Arc<Engine>, metrics: Arc<Metrics>, mut jobs: mpsc::UnboundedReceiver<Job>, pace: Option<Pace>, schedule: Schedule) {
    let mut queue: VecDeque<Active> = VecDeque::new();
    let mut turn = 0u64;
    let mut slot = Instant::now();
    loop {
        if queue.is_empty() {
            metrics.running(0);
            match jobs.blocking_recv() {
                Some(job) => queue.push_back(Active { job, prompt_reported: false }),
                None => return,
            }
        }
        while let Ok(job) = jobs.try_recv() {
            queue.push_back(Active { job, prompt_reported: false });
        }
        metrics.running(queue.len());
        let Some(mut active) = queue.pop_front() else { continue };
        if active.job.events.is_closed() {
            metrics.cancelled();
            continue;
        }
        if let Some(pace) = pace {
            slot = pace.wait(slot);
        }
        let started = Instant::now();
        let was_prefilling = !active.job.generation.prompt_processed();
        let result = active.job.generation.step(&engine);
        turn += 1;
        let seconds = started.elapsed().as_secs_f64();
        let generation = &active.job.generation;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                let _ = active.job.events.send(Event::Failed(err));
                continue;
            }
        };
        metrics.step(was_prefilling, seconds, out.tokens.len());
        if generation.prompt_processed() && !active.prompt_reported {
            active.prompt_reported = true;
            metrics.prompt_done(generation.prompt_tokens(), active.job.queued.elapsed().as_secs_f64());
            let _ = active.job.events.send(Event::PromptDone(generation.prompt_scores().to_vec()));
        }
        let finish = out.finish;
        let has_output = !out.tokens.is_empty() || !out.text.is_empty();
        if has_output && active.job.events.send(Event::Step { out, turn }).is_err() {
            metrics.cancelled();
            continue;
        }
        match finish {
            Some(finish) => {
                let _ = active.job.events.send(Event::Done {
                    finish,
                    prompt_tokens: generation.prompt_tokens(),
                    completion_tokens: generation.completion_tokens(),
                });
            }
            None if schedule == Schedule::Fifo => queue.push_front(active),
            None => queue.push_back(active),
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
