//! The hub: a web dashboard and JSON API (with an OpenAPI document and server-sent events)
//! over the records store and the chain's metagraph. No CDN, no network at run time: the
//! dashboard (vanilla JS, hand-drawn SVG plots) is embedded in the binary.
//!
//! ```text
//!   validators ──write──► records store (SQLite | PostgreSQL) ◄──read── API handlers ◄── browser
//!                              ▲        │ seq > cursor                        ▲
//!   chain ──Metagraph::sync──► chain watcher (cache, snapshots every N blocks) │
//!                                       └──► feed poller ──broadcast──► SSE clients
//! ```
//!
//! # Map
//! - [`config`]: [`ServeConfig`], the TOML configuration of `ganglion hub`.
//! - [`server`]: [`router`] (test it with `oneshot`), [`serve`]/[`bind`] → [`HubHandle`].
//! - [`state`]: [`HubConfig`], [`HubState`], [`ChainStatus`].
//! - [`api`]: JSON handlers (inference, compute, reward distributions and per-uid rewards,
//!   the latest model-evaluation round and per-uid evaluations); [`params`]: validated,
//!   bounded parameters.
//! - [`feed`]: the live feed (SSE, bounded per client, capped clients).
//! - [`chain_watch`]: metagraph cache, chain status, [`ganglion_records::NeuronSnapshot`]s.
//! - [`openapi`]: the document at `/api/openapi.json`, in sync with the routes.
//! - [`bench`]: `ganglion bench hub` (seed 1 million rows, time pages and ingest).
//! - `assets`: the embedded dashboard.
//!
//! **Architecture invariant:** the hub only reads records (it writes nothing but metagraph
//! snapshots), and keeps serving records when the chain is unreachable (it says so, and
//! shows the last recorded metagraph).

pub mod api;
mod assets;
pub mod bench;
pub mod chain_watch;
pub mod config;
pub mod error;
pub mod feed;
pub mod openapi;
pub mod params;
pub mod server;
pub mod state;

pub use config::ServeConfig;
pub use error::{ApiError, HubError, HubResult};
pub use server::{HubHandle, bind, render_metrics, router, serve};
pub use state::{ChainStatus, HubConfig, HubState};
