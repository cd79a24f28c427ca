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
//!   renter's side of allocate / deallocate / status / list.
//! - [`access`]: black/whitelists, stake and permit checks over the metagraph (the
//!   original's inverted whitelist fixed).
//! - [`miner`] and [`validator`]: the two long-running nodes; [`client`]: signed calls to
//!   miners; [`metrics`]: Prometheus text; [`config`]: the TOML file; [`units`]: size and
//!   timeline parsing; [`bench`](mod@bench): `ganglion bench compute`.
//!
//! # Library API (what `ganglion localnet` and tests use)
//! - `miner::spawn(MinerConfig, hotkey, Arc<dyn Chain>) -> MinerHandle` (`handle.addr`,
//!   `handle.uid`, `handle.shutdown().await`), or `miner::run(config, hotkey, chain,
//!   shutdown_future)`.
//! - `validator::spawn(ValidatorConfig, hotkey, chain) -> ValidatorHandle`:
//!   `handle.status()` is the current [`validator::ValidatorStatus`]: `{"block", "rounds",
//!   "last_weights_block", "waiting_for_permit", …, "miners": [{"uid", "hotkey", "score"
//!   (normalised, 0–1), "weight", "success_rate" (0–1), "attempts", "difficulty" (of the
//!   last challenge), "difficulty_avg", "next_difficulty", "mean_elapsed_s", "last",
//!   "allocated", "has_sandbox", "is_validator"}]}`; the same document is served at
//!   `GET http://<metrics_ip>:<metrics_port>/status` and written to
//!   `<data_dir>/validator-status-<netuid>.json` after every round.
//!
//! **Architecture invariant:** this crate knows the chain only through the `Chain` trait
//! and the records store only through `ganglion_records::Records`; it never runs a shell
//! over a request field (every process is started with an argument vector).

pub mod access;
pub mod allocation;
pub mod bench;
pub mod client;
pub mod config;
pub mod error;
pub mod hashcat;
pub mod metrics;
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
