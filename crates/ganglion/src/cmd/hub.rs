//! `ganglion hub` (serve the dashboard and JSON API over the records store) and
//! `ganglion bench hub` (page latency at 1 million records, ingest rate). The logic lives
//! in `ganglion_hub`; this file parses flags, opens the store and prints.

use std::net::IpAddr;
use std::sync::Arc;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ganglion_chain::resolve_network;
use ganglion_hub::bench::{BenchConfig, BenchReport, Progress};
use ganglion_hub::{ServeConfig, bind};
use ganglion_neuron::config::Overrides;
use ganglion_records::Records;

use crate::cmd::chain::NetArgs;
use crate::cmd::{TlsClientArgs, TlsServerArgs, runtime};

/// `ganglion hub` flags. Each one overrides the same key of the `--config` file; an unset
/// flag leaves the file's value (or the default shown).
#[derive(Debug, clap::Args)]
pub(crate) struct HubArgs {
    /// TOML config file whose keys are the flag names without `--`, `-` written `_`, dots as
    /// tables (`host`, `port`, `netuid`, `snapshot_every`, `[database] url`,
    /// `[subtensor] network`, `[tls] cert`, `key`, `ca_file`), plus `chain_poll = "2s"`,
    /// `feed_poll = "500ms"` and `max_sse_clients = 64`; flags and environment variables
    /// override it.
    #[arg(long, env = "GANGLION_HUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Records store: `sqlite:/path/records.db` or `postgres://user:pass@host/db`
    /// (default: SQLite at ~/.ganglion/records.db).
    #[arg(long = "database.url", env = "GANGLION_DATABASE_URL")]
    database_url: Option<String>,
    /// Port of the dashboard and API [default: 8800].
    #[arg(long)]
    port: Option<u16>,
    /// Address to bind (loopback by default; the hub has no authentication) [default: 127.0.0.1].
    #[arg(long)]
    host: Option<IpAddr>,
    /// Show only this subnet.
    #[arg(long)]
    netuid: Option<u16>,
    /// Record a metagraph snapshot every this many blocks (incentive over time) [default: 5].
    #[arg(long = "snapshot-every")]
    snapshot_every: Option<u64>,
    #[command(flatten)]
    net: NetArgs,
    // --tls.cert and --tls.key: serve the dashboard and API over HTTPS.
    #[command(flatten)]
    tls_server: TlsServerArgs,
    #[command(flatten)]
    tls: TlsClientArgs,
}

impl HubArgs {
    /// The set flags and environment variables, by config key.
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        o.set("database.url", self.database_url.clone())
            .set("port", self.port.map(i64::from))
            .set("host", self.host.map(|h| h.to_string()))
            .set("netuid", self.netuid.map(i64::from))
            .set("snapshot_every", self.snapshot_every.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
            .set("subtensor.network", self.net.network.clone());
        self.tls_server.apply(&mut o);
        self.tls.apply(&mut o);
        o
    }

    /// The file, then the flags and environment; validated.
    fn load(&self) -> anyhow::Result<ServeConfig> {
        let config: ServeConfig = ganglion_neuron::config::load(self.config.as_deref(), &self.overrides())
            .context("reading the hub configuration")?;
        config.validate()?;
        Ok(config)
    }
}

/// `ganglion bench hub` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Inference records to seed.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Compute challenges to seed (for the compute pages; 0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    challenges: u64,
    /// Reward-subnet step events to seed, 16 uids each (for the reward pages; 0 skips them).
    #[arg(long, default_value_t = 62_500)]
    reward_events: u64,
    /// Model evaluations to seed, one per uid per round (for the model pages; 0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    evaluations: u64,
    /// Miners in the pretend subnet.
    #[arg(long, default_value_t = 256)]
    miners: u16,
    /// Validators in the pretend subnet.
    #[arg(long, default_value_t = 8)]
    validators: u16,
    /// Records per insert (one transaction each).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Timed requests per page.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Also benchmark this PostgreSQL server (in a scratch schema that is dropped afterwards).
    #[arg(long = "postgres-url", env = "GANGLION_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// SQLite file to seed (default: a temporary file, deleted afterwards).
    #[arg(long = "sqlite-path")]
    sqlite_path: Option<PathBuf>,
    /// Skip SQLite (benchmark PostgreSQL only).
    #[arg(long = "no-sqlite")]
    no_sqlite: bool,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}


fn default_database_url() -> anyhow::Result<String> {
    let home = std::env::var_os("HOME").context("HOME is not set; pass --database.url")?;
    Ok(Records::default_url(&PathBuf::from(home).join(".ganglion")))
}

pub(crate) fn run(args: HubArgs) -> anyhow::Result<ExitCode> {
    let serve = args.load()?;
    // Bad certificate, key or CA files are start-up errors naming the file.
    let server_tls = serve.tls.server()?;
    let client_tls = serve.tls.client()?;
    runtime()?.block_on(async move {
        let url = match &serve.database.url {
            Some(url) => url.clone(),
            None => default_database_url()?,
        };
        let records = Records::open(&url).await?;
        let network = serve.subtensor.network.as_deref();
        let (chain, chain_url): (Arc<dyn ganglion_chain::Chain>, String) = match resolve_network(network) {
            Ok(url) => (Arc::new(ganglion_chain::LocalChain::with_tls(&url, &client_tls)?), url),
            // A subtensor network (finney, test, ws://, wss://).
            Err(_) => (crate::cmd::chain::connect(network)?, network.unwrap_or_default().to_string()),
        };
        let mut config = serve.hub_config(records.clone(), Some(chain), chain_url.clone());
        config.tls = server_tls;
        let hub = bind(config, serve.listen()).await?;
        if args.net.json {
            let line = serde_json::json!({"url": hub.url(), "database": records.display_url(), "chain": chain_url, "netuid": serve.netuid});
            println!("{line}");
        } else {
            println!("hub: {}   (records: {}, chain: {chain_url})", hub.url(), records.display_url());
        }
        let signal = ganglion_neuron::signals::wait_for_signal().await;
        tracing::info!(%signal, "shutting down the hub");
        hub.shutdown().await;
        records.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = BenchConfig {
        rows: args.rows,
        challenges: args.challenges,
        reward_events: args.reward_events,
        evaluations: args.evaluations,
        miners: args.miners.max(1),
        validators: args.validators.max(1),
        batch: args.batch.max(1),
        iterations: args.iterations.max(1),
        ..BenchConfig::default()
    };
    runtime()?.block_on(async move {
        let mut reports = Vec::new();
        if !args.no_sqlite {
            let temp = tempfile_dir()?;
            let path = args.sqlite_path.clone().unwrap_or_else(|| temp.join("records.db"));
            if path.exists() {
                anyhow::bail!("{} exists; the benchmark seeds a fresh store: remove it or pick another --sqlite-path", path.display());
            }
            let records = Records::open(&format!("sqlite:{}", path.display())).await?;
            reports.push(run_one(records, &config, "sqlite", args.json).await?);
            if args.sqlite_path.is_none() {
                let _ = std::fs::remove_dir_all(&temp);
            }
        }
        if let Some(base) = &args.postgres_url {
            let schema = format!("ganglion_bench_{}", std::process::id());
            let url = ganglion_records::create_postgres_schema(base, &schema).await?;
            let records = Records::open(&url).await?;
            let outcome = run_one(records, &config, "postgres", args.json).await;
            ganglion_records::drop_postgres_schema(base, &schema).await?;
            reports.push(outcome?);
        } else if !args.json {
            eprintln!("PostgreSQL skipped: pass --postgres-url (scripts/install-postgres prints one)");
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"rows": config.rows, "miners": config.miners, "reports": reports}))?);
        } else {
            print_table(&reports);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ganglion-bench-hub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

async fn run_one(records: Records, config: &BenchConfig, label: &str, quiet: bool) -> anyhow::Result<BenchReport> {
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(config.rows + config.challenges) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let progress = |p: Progress| match p {
        Progress::Rows { done, .. } => bar.set_position(done),
        Progress::Timing => bar.set_message("timing pages…"),
    };
    let report = ganglion_hub::bench::run(records.clone(), config, &progress).await;
    bar.finish_and_clear();
    records.close().await;
    Ok(report?)
}

fn print_table(reports: &[BenchReport]) {
    for r in reports {
        println!("\n{} ({}): {} inference rows, batches of {}", r.backend, r.url, r.rows, r.batch);
        println!("  ingest: {:.0} rows/s (rollups included); seeding took {:.1} s", r.ingest_rows_per_s, r.seed_s);
        if r.challenges > 0 {
            println!("  challenges: {} seeded at {:.0} rows/s (rollup included)", r.challenges, r.challenge_rows_per_s);
        }
        println!("  {:<16} {:>9} {:>9} {:>9} {:>9}", "page", "p50 ms", "p99 ms", "max ms", "bytes");
        for p in &r.pages {
            let flag = if p.p99_ms > 200.0 { "  > 200 ms" } else { "" };
            println!("  {:<16} {:>9.1} {:>9.1} {:>9.1} {:>9}{flag}", p.page, p.p50_ms, p.p99_ms, p.max_ms, p.bytes);
        }
    }
}
