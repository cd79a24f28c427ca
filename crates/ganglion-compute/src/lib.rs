//! The compute subnet (Neural Internet's SN27, spec/compute.md): miners report hardware
//! specs and solve BLAKE2b hash challenges; validators challenge them, score success,
//! difficulty, speed, failures and allocations, and set weights; renters allocate a miner's
//! machine as a sandbox reachable over SSH with their own key.
//!
//! # Map
//! - [`protocol`]: the wire types (`Specs`, `Challenge`, `Allocate`, the original's field
//!   names) as Epistula-signed JSON routes, with strict parsing and per-field validation.
//! - [`pow`]: challenge generation (CSPRNG), `$BLAKE2$` hashing, statistics and difficulty
//!   adaptation (versions A and B). [`solver`]: the built-in multi-threaded, many-lane
//!   solver with fair sharing between concurrent challenges ([`solver::kernel`]: the
//!   AVX-512 8-lane kernel and the portable `blake2b_simd` one). [`hashcat`]: the optional
//!   hashcat backend (mode 610, `$HEX[]` decoding, killed at the deadline).
//! - [`specs`]: hardware specs from /proc, sysfs, statvfs and `nvidia-smi`, with bounded
//!   speed tests.
//! - [`scoring`]: the original's formulas (A default, B) and the weight rules.
//! - [`sandbox`]: bubblewrap + cgroups + loop-mounted disk + per-allocation OpenSSH;
//!   [`allocation`]: admission, ownership, expiry and persistence on the miner;
//!   [`seal`]: access information sealed to the renter's X25519 key; [`renter`]: the
//!   renter's side of allocate / deallocate / status / list; [`liveness`]: the proof that an
//!   allocation is alive (an SSH key exchange with the host key pinned at allocation time).
//! - [`access`]: black/whitelists, stake and permit checks over the metagraph (the
//!   original's inverted whitelist fixed).
//! - [`miner`] and [`validator`]: the two long-running nodes; [`config`]: the TOML file and
//!   its flag overrides; [`units`]: size and timeline parsing; [`bench`](mod@bench):
//!   `ganglion bench compute`.
//!
//! # What the runtime provides, what compute owns
//! Both nodes are assembled from the neuron runtime (`ganglion-neuron`), which owns the
//! plumbing every subnet shares: the miner's axon (bind, Epistula verifier over a caller
//! table kept in step with the metagraph, `serve_axon` at start and on change, full refetch
//! after sync errors), the validator loop (metagraph sync, permit wait, `step`, weights
//! through the `WeightSetter` with its `version_key` policy and backoff from the chain's
//! answer, status, stop and flush on the `Shutdown` token that SIGINT/SIGTERM fire), the
//! status schema (`NodeStatus`, `/status`, `<data_dir>/status.json`), the Prometheus
//! registry (`/metrics`, histograms), the config layering (file, then env and flags;
//! durations with units) and typed peer failures (`PeerFailure`, `PeerClient`).
//!
//! Compute owns its protocol (routes, wire types, [`protocol::client`]), the work (challenges,
//! solver, hashcat, specs, sandbox, allocations), the round schedule and scoring (what
//! [`validator::ComputeValidator`] implements of `ganglion_neuron::validator::Validator`:
//! `step`, `scores`, `status` rows, `on_hotkey_change`), its records (challenges, specs,
//! scores, allocations: the validator's history lives there) and its config sections
//! (`[miner]`, `[validator]`).
//!
//! # Library API (what `ganglion` and tests use)
//! - [`config::load`]`(file, &overrides) -> ComputeConfig` (netuid, `[neuron]`, `[axon]`,
//!   `[metrics]`, `[miner]`, `[validator]`).
//! - `miner::spawn(&ComputeConfig, hotkey, Arc<dyn Chain>, Option<Shutdown>) -> MinerHandle`
//!   (`handle.addr`, `handle.uid`, `handle.status()`, `handle.shutdown().await`,
//!   `handle.wait().await`), or `miner::run(config, hotkey, chain, shutdown)`.
//! - `validator::spawn(&ComputeConfig, hotkey, chain, Option<Shutdown>) -> ValidatorHandle`:
//!   `handle.status()` is the runtime's `NodeStatus` (`subnet: "compute"`), per miner
//!   `score` (normalised, 0–1), `weight`, `verified_share` (share of rounds with a solved
//!   challenge, 0–1), `last_failure {cause, detail}`, `speed {value: mean seconds to a
//!   round's first solve, unit: "s", context: "@d<difficulty>"}` and `details {total,
//!   attempts (rounds), difficulty,
//!   difficulty_avg, next_difficulty, allocated, has_sandbox (proven by this validator),
//!   claims_sandbox (the miner's `has_docker`), gpus_claimed, gpu_claim (`verified`,
//!   `contradicted`, `unchecked` or null), work, is_validator}`; the node's
//!   `details {rounds, last_round_block, next_round_block}`; `weights.last_set_block`. The
//!   same document is served at `GET http://<metrics.host>:<metrics.port>/status` and
//!   written to `<data_dir>/status.json` after every step.
//!
//! **Architecture invariant:** this crate knows the chain only through the `Chain` trait
//! and the records store only through `ganglion_records::Records`; it never runs a shell
//! over a request field (every process is started with an argument vector).

pub mod access;
pub mod allocation;
pub mod bench;
pub mod config;
pub mod error;
pub mod hashcat;
pub mod liveness;
pub mod miner;
pub mod pow;
pub mod protocol;
pub mod renter;
pub mod sandbox;
pub mod scoring;
pub mod seal;
pub mod solver;
pub mod specs;
pub mod units;
pub mod validator;

pub use error::{ComputeError, Result};
