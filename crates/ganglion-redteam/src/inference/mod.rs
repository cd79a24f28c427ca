//! Inference strategies: each a real process (`ganglion-redteam inference --strategy …`)
//! with real hotkeys, axons published on a real chain, queried by the real validator.
//!
//! Most cheats are a *dishonest upstream* ([`upstream`]): an OpenAI-compatible server on a
//! loopback port that the **unmodified** production miner (`ganglion_inference::miner`)
//! proxies to, so the miner operators run contains no cheating code. Honest work comes from
//! the built-in engine (its own server, in this process: the same hardware as an honest
//! miner run by the runner with `--strategy honest`).
//!
//! | strategy | what it does |
//! |---|---|
//! | `honest` | the baseline: the production miner on the built-in engine |
//! | `random-tokens` | random vocabulary tokens with made-up logprobs, no model |
//! | `other-model` | a perturbed, lower-bit copy of SmolLM2 ([`fixture`]) under the real name |
//! | `cached` | one greedy answer + one low-temperature sample per prompt, replayed for any sampling, cut at max_tokens, streamed evenly |
//! | `selective-refusal` | 403 for hot or long requests, the rest honest |
//! | `sybil` | one engine behind N hotkeys, each axon on its own 127.0.0.x address; a body sent to all of them is generated once and streamed to each |
//! | `go-dark` | honest for K epochs from its first answer, then its axon goes away (still registered) |
//! | `usage-lies` | honest tokens, `completion_tokens` multiplied |
//! | `ttft-fake` | an empty chunk at once, then the honest tokens slowly |
//! | `early-eos` | stops early calling it a natural stop (`--eos.mode stop`) or pads past its end (`pad`) |
//! | `relay` | signs its own Epistula requests to another miner's axon and streams its answers back |
//!
//! Prompting strategies, against the reward-pipeline validator (`ganglion validator reward`,
//! `ganglion localnet --reward`), each aimed at the mask or reward that should hold it down:
//!
//! | strategy | what it does | what should catch it |
//! |---|---|---|
//! | `prompt-echo` | answers with the prompt | blacklist (a copy of the prompt), task validator (the echoed base text carries `Question:`/`Answer:`) |
//! | `off-topic` | sentences of another context (random corpus senses) | relevance |
//! | `duplicate` | one honest answer per prompt, the same text from each of its hotkeys | diversity (nearest other completion at distance 0) |
//! | `rule-breaker` | the honest answer as a `Question: … Answer: …` transcript | task validator |

pub mod fixture;
pub mod sse;
pub mod upstream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ganglion_chain::{Chain, LocalChain};
use ganglion_core::keys::{Keypair, PublicKey};
use ganglion_core::password::Passwords;
use ganglion_core::wallet::Wallet;
use ganglion_engine::Engine;
use ganglion_engine::server::worker::Schedule;
use ganglion_engine::server::{Server, ServerConfig};
use ganglion_inference::miner::{self, MinerConfig, MinerHandle, UpstreamConfig};
use ganglion_neuron::Shutdown;

use self::fixture::Perturbation;
use self::upstream::{Behaviour, EosMode};

/// The inference strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Strategy {
    /// The baseline: an honest miner on the built-in engine.
    Honest,
    /// Random vocabulary tokens with made-up logprobs.
    RandomTokens,
    /// A perturbed, lower-bit copy of the model answering under the real name.
    OtherModel,
    /// Cached answers replayed for any sampling parameters.
    Cached,
    /// Refuses (403) the requests it would do badly on.
    SelectiveRefusal,
    /// One engine behind several hotkeys.
    Sybil,
    /// Honest for K epochs, then stops answering (stays registered).
    GoDark,
    /// Inflated usage / token counts.
    UsageLies,
    /// An empty first chunk at once, then slow tokens.
    TtftFake,
    /// Early natural-looking stops, or padding past the end.
    EarlyEos,
    /// Relays another miner's answers.
    Relay,
    /// Prompting: answers with the prompt.
    PromptEcho,
    /// Prompting: answers with another context.
    OffTopic,
    /// Prompting: one answer returned by several hotkeys.
    Duplicate,
    /// Prompting: answers that break the task validator's rules.
    RuleBreaker,
}

impl Strategy {
    /// Every dishonest strategy, in the order the runner runs and prints them.
    pub const DISHONEST: [Strategy; 10] = [
        Strategy::RandomTokens,
        Strategy::OtherModel,
        Strategy::Cached,
        Strategy::SelectiveRefusal,
        Strategy::Sybil,
        Strategy::GoDark,
        Strategy::UsageLies,
        Strategy::TtftFake,
        Strategy::EarlyEos,
        Strategy::Relay,
    ];

    /// The strategies against the reward-pipeline (prompting) validator.
    pub const PROMPTING: [Strategy; 4] = [Strategy::PromptEcho, Strategy::OffTopic, Strategy::Duplicate, Strategy::RuleBreaker];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Honest => "honest",
            Strategy::RandomTokens => "random-tokens",
            Strategy::OtherModel => "other-model",
            Strategy::Cached => "cached",
            Strategy::SelectiveRefusal => "selective-refusal",
            Strategy::Sybil => "sybil",
            Strategy::GoDark => "go-dark",
            Strategy::UsageLies => "usage-lies",
            Strategy::TtftFake => "ttft-fake",
            Strategy::EarlyEos => "early-eos",
            Strategy::Relay => "relay",
            Strategy::PromptEcho => "prompt-echo",
            Strategy::OffTopic => "off-topic",
            Strategy::Duplicate => "duplicate",
            Strategy::RuleBreaker => "rule-breaker",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Option<Strategy> {
        std::iter::once(Strategy::Honest).chain(Strategy::DISHONEST).chain(Strategy::PROMPTING).find(|s| s.name() == name.trim())
    }

    /// Hotkeys the strategy runs (a Sybil several, a duplicate at least two, everyone else
    /// one).
    pub fn hotkeys(self, sybils: usize) -> usize {
        match self {
            Strategy::Sybil => sybils.max(1),
            Strategy::Duplicate => sybils.max(2),
            _ => 1,
        }
    }

    /// Runs several hotkeys.
    fn multi_hotkey(self) -> bool {
        matches!(self, Strategy::Sybil | Strategy::Duplicate)
    }
}

/// `ganglion-redteam inference` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct InferenceArgs {
    /// What to do.
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Wallets directory.
    #[arg(long = "wallet.path", default_value = "~/.bittensor/wallets")]
    pub wallet_path: PathBuf,
    /// Wallet name(s); `sybil` and `duplicate` take one per hotkey (comma-separated).
    #[arg(long = "wallet.name", value_delimiter = ',', required = true)]
    pub wallet_names: Vec<String>,
    /// Hotkey name inside each wallet.
    #[arg(long = "wallet.hotkey", default_value = "default")]
    pub wallet_hotkey: String,
    /// Subnet id.
    #[arg(long)]
    pub netuid: u16,
    /// The chain's URL.
    #[arg(long = "subtensor.network", default_value = "http://127.0.0.1:9944")]
    pub network: String,
    /// Address of the (first) axon; `sybil` uses 127.0.0.2, 127.0.0.3, … instead.
    #[arg(long = "axon.ip", default_value = "127.0.0.1")]
    pub axon_ip: IpAddr,
    /// Port of each axon (0 picks a free one).
    #[arg(long = "axon.port", default_value_t = 0)]
    pub axon_port: u16,
    /// The model to run: a known name (smollm2) or a GGUF path.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// The name it is served under (the validator's model name).
    #[arg(long = "model-name", default_value = "smollm2")]
    pub model_name: String,
    /// other-model: noise relative to each matrix's RMS.
    #[arg(long = "other-model.noise", default_value_t = 0.15)]
    pub noise: f32,
    /// other-model: keep each matrix's own quantisation instead of 4-bit Q4_0.
    #[arg(long = "other-model.same-bits")]
    pub same_bits: bool,
    /// cached and sybil: replay speed, token chunks per second.
    #[arg(long = "cached.tps", default_value_t = 100.0)]
    pub cached_tps: f64,
    /// cached: temperature of the one cached sample.
    #[arg(long = "cached.temperature", default_value_t = 0.3)]
    pub cached_temperature: f64,
    /// cached: tokens per cached answer.
    #[arg(long = "cached.max-tokens", default_value_t = 256)]
    pub cached_max_tokens: u32,
    /// selective-refusal: refuse above this temperature.
    #[arg(long = "refuse.temperature", default_value_t = 0.5)]
    pub refuse_temperature: f64,
    /// selective-refusal: refuse above this max_tokens.
    #[arg(long = "refuse.max-tokens", default_value_t = 32)]
    pub refuse_max_tokens: u32,
    /// usage-lies: factor on the completion tokens reported.
    #[arg(long = "usage.factor", default_value_t = 3.0)]
    pub usage_factor: f64,
    /// ttft-fake: how much slower than produced the real tokens are released.
    #[arg(long = "ttft.factor", default_value_t = 3.0)]
    pub ttft_factor: f64,
    /// early-eos: stop (cut and call it a stop) or pad (go past the natural end).
    #[arg(long = "eos.mode", value_enum, default_value = "stop")]
    pub eos_mode: EosMode,
    /// early-eos stop: share of max_tokens generated.
    #[arg(long = "eos.fraction", default_value_t = 0.3)]
    pub eos_fraction: f64,
    /// go-dark: epochs of honest work (from its first answered request) before going dark.
    #[arg(long = "go-dark.epochs", default_value_t = 3)]
    pub dark_after_epochs: u64,
    /// relay: the hotkey (SS58) of the miner whose answers are relayed.
    #[arg(long = "relay.victim")]
    pub relay_victim: Option<String>,
    /// off-topic: sentences per answer.
    #[arg(long = "off-topic.sentences", default_value_t = 3)]
    pub off_topic_sentences: usize,
    /// At most this many engine turns (a prompt chunk or a token) per second: a device of
    /// that speed however many miners share this machine's CPU (unset: as fast as it can).
    #[arg(long = "engine.pace")]
    pub engine_pace: Option<f64>,
}

fn load_hotkey(path: &std::path::Path, name: &str, hotkey: &str) -> anyhow::Result<Keypair> {
    let wallet = Wallet::new(path, name, hotkey).with_context(|| format!("wallet {name}"))?;
    wallet.hotkey(&Passwords::default()).with_context(|| format!("loading the hotkey of wallet {name}"))
}

/// Starts the built-in engine's OpenAI server on loopback under `name`, at most `pace` worker
/// turns per second; returns its base URL.
pub async fn engine_server(engine: Arc<Engine>, name: &str, pace: Option<f64>, schedule: Schedule, shutdown: Shutdown) -> anyhow::Result<String> {
    let server = Server::start_scheduled(engine, ServerConfig { model_id: name.to_string(), api_key: None }, pace, schedule).context("starting the engine worker")?;
    let addr = upstream::serve_loopback(server.router(), shutdown).await?;
    Ok(format!("http://{addr}/v1"))
}

/// Where the `n`-th axon of a strategy listens.
pub fn axon_address(strategy: Strategy, base: IpAddr, port: u16, n: usize) -> SocketAddr {
    match strategy {
        // Distinct loopback addresses, as distinct machines would have.
        Strategy::Sybil => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % 250) as u8)), port),
        _ => SocketAddr::new(base, port),
    }
}

/// Runs one strategy until SIGINT/SIGTERM.
pub async fn run(args: InferenceArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signal();
    let wallets = ganglion_core::wallet::expand_home(&args.wallet_path);
    let hotkeys = args
        .wallet_names
        .iter()
        .map(|name| load_hotkey(&wallets, name, &args.wallet_hotkey))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !args.strategy.multi_hotkey() && hotkeys.len() != 1 {
        anyhow::bail!("--strategy {} runs one hotkey; give one --wallet.name", args.strategy.name());
    }
    if args.strategy == Strategy::Duplicate && hotkeys.len() < 2 {
        anyhow::bail!("--strategy duplicate returns one answer from several hotkeys; give at least two --wallet.name");
    }
    let chain: Arc<dyn Chain> = Arc::new(LocalChain::new(&args.network)?);
    let models = ganglion_engine::store::models_dir()?;
    let mut model_path = ganglion_engine::store::resolve_model(&args.model, &models)?;
    if args.strategy == Strategy::OtherModel {
        let perturbation = Perturbation { noise: args.noise, lower_bits: !args.same_bits, ..Perturbation::default() };
        let source = model_path.clone();
        model_path = tokio::task::spawn_blocking(move || fixture::ensure_perturbed(&source, &models, perturbation)).await??;
    }
    let path = model_path.clone();
    let engine = Arc::new(tokio::task::spawn_blocking(move || Engine::load(&path)).await??);
    // The Sybil serves its hotkeys' requests one after another: under the original's
    // per-request speed that ordering paid one machine behind N hotkeys 1 + 1/2 + … + 1/N
    // times one honest miner; within the validator's fixed round window it pays nothing.
    let schedule = if args.strategy == Strategy::Sybil { Schedule::Fifo } else { Schedule::RoundRobin };
    let honest = engine_server(engine.clone(), &args.model_name, args.engine_pace, schedule, shutdown.clone()).await?;
    let behaviour = match args.strategy {
        Strategy::Honest | Strategy::OtherModel | Strategy::GoDark => None,
        Strategy::Sybil => Some(Behaviour::Fanout { tps: args.cached_tps }),
        Strategy::RandomTokens => Some(Behaviour::RandomTokens { vocabulary: engine.clone() }),
        Strategy::Cached => Some(Behaviour::Cached { tps: args.cached_tps, temperature: args.cached_temperature, max_tokens: args.cached_max_tokens }),
        Strategy::SelectiveRefusal => Some(Behaviour::SelectiveRefusal { max_temperature: args.refuse_temperature, max_tokens: args.refuse_max_tokens }),
        Strategy::UsageLies => Some(Behaviour::UsageLies { factor: args.usage_factor }),
        Strategy::TtftFake => Some(Behaviour::TtftFake { factor: args.ttft_factor }),
        Strategy::EarlyEos => Some(Behaviour::EarlyEos { mode: args.eos_mode, fraction: args.eos_fraction }),
        Strategy::PromptEcho => Some(Behaviour::PromptEcho),
        Strategy::OffTopic => {
            let corpus = tokio::task::spawn_blocking(ganglion_corpus::Corpus::locate).await?.context("loading the corpus (scripts/install-corpus)")?;
            Some(Behaviour::OffTopic { corpus: Arc::new(corpus), sentences: args.off_topic_sentences })
        }
        Strategy::Duplicate => Some(Behaviour::Duplicate),
        Strategy::RuleBreaker => Some(Behaviour::RuleBreaker),
        Strategy::Relay => {
            let victim = args.relay_victim.as_deref().context("--strategy relay needs --relay.victim SS58")?;
            let victim: PublicKey = victim.parse().map_err(|e| anyhow::anyhow!("--relay.victim {victim}: {e}"))?;
            Some(Behaviour::Relay { hotkey: hotkeys[0].clone(), chain: chain.clone(), netuid: args.netuid, victim })
        }
    };
    let url = match behaviour {
        Some(behaviour) => format!("http://{}/v1", upstream::start(honest, args.model_name.clone(), behaviour, shutdown.clone()).await?),
        None => honest,
    };
    let mut handles = Vec::new();
    for (n, hotkey) in hotkeys.iter().enumerate() {
        let listen = axon_address(args.strategy, args.axon_ip, args.axon_port, n);
        let upstreams = vec![UpstreamConfig { name: args.model_name.clone(), url: url.clone(), api_key: None, max_concurrency: 8 }];
        let mut config = MinerConfig::new(args.netuid, hotkey.clone(), listen, upstreams);
        config.sync_interval = Duration::from_secs(3);
        let handle = miner::start(config, Some(chain.clone()), Some(shutdown.clone())).await.with_context(|| format!("starting the miner of {}", args.wallet_names[n]))?;
        eprintln!("{} miner {} listening on http://{} (model {})", args.strategy.name(), hotkey.public(), handle.addr(), model_path.display());
        handles.push(handle);
    }
    if args.strategy == Strategy::GoDark {
        go_dark(chain.as_ref(), args.netuid, args.dark_after_epochs, handles, shutdown.clone()).await;
        handles = Vec::new();
    }
    let mut waiter = shutdown;
    waiter.wait().await;
    for handle in handles {
        handle.shutdown().await;
    }
    Ok(())
}

/// `go-dark`: serves honestly for `epochs` of the subnet after its first answered request
/// (so that it has built a score, however late the validators start), then stops the
/// miners (the hotkeys stay registered, the axons on chain stay published) and returns.
async fn go_dark(chain: &dyn Chain, netuid: u16, epochs: u64, handles: Vec<MinerHandle>, mut shutdown: Shutdown) {
    let answered = |h: &MinerHandle| {
        ["/v1/chat/completions", "/v1/completions"].iter().map(|route| h.metrics().get("ganglion_miner_requests_total", &[("route", route), ("status", "200")])).sum::<f64>()
    };
    let mut start = None;
    loop {
        if start.is_none() && handles.iter().map(answered).sum::<f64>() > 0.0 {
            start = chain.subnet(netuid).await.ok().map(|s| s.epoch_index);
        }
        if let (Some(first), Ok(subnet)) = (start, chain.subnet(netuid).await)
            && subnet.epoch_index >= first + epochs
        {
            break;
        }
        if shutdown.sleep(Duration::from_secs(1)).await {
            break;
        }
    }
    eprintln!("go-dark: stopping to answer after {epochs} epochs (still registered)");
    for handle in handles {
        handle.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in std::iter::once(Strategy::Honest).chain(Strategy::DISHONEST).chain(Strategy::PROMPTING) {
            assert_eq!(Strategy::parse(s.name()), Some(s));
            let value = <Strategy as clap::ValueEnum>::to_possible_value(&s).map(|v| v.get_name().to_string());
            assert_eq!(value.as_deref(), Some(s.name()), "clap and the runner agree on names");
        }
        assert_eq!(Strategy::parse("nope"), None);
    }

    #[test]
    fn sybils_get_distinct_loopback_addresses() {
        let base = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = axon_address(Strategy::Sybil, base, 0, 0);
        let b = axon_address(Strategy::Sybil, base, 0, 1);
        assert_ne!(a.ip(), b.ip());
        assert!(a.ip().is_loopback() && b.ip().is_loopback());
        assert_eq!(axon_address(Strategy::Honest, base, 9, 3), SocketAddr::new(base, 9));
        assert_eq!(Strategy::Sybil.hotkeys(3), 3);
        assert_eq!(Strategy::Relay.hotkeys(3), 1);
        assert_eq!(Strategy::Duplicate.hotkeys(1), 2);
    }
}
