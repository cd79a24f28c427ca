//! Incentive integrity (issue 12): the holes a dishonest compute miner could use, each shown
//! closed on a real validator over a local chain.
//!
//! - a fake allocation made by the validator itself (the miner answers every `/Allocate`
//!   with a sealed host key but runs no SSH server) earns nothing: the liveness proof fails
//!   with `allocation_unreachable`, which counts as a failed challenge;
//! - a third-party reservation row (a colluding renter writing to a shared records store)
//!   is not paid at all: the miner is challenged like everyone else;
//! - a GPU claim on a CPU-class solver fails its GPU probes (`false_specs`) and earns nothing;
//! - `has_docker` claimed without a proven sandbox no longer doubles a version-B score;
//! - two hotkeys sharing one solver no longer earn about twice one honest miner with the
//!   same solver settings (the red team's `compute::compute_adversaries_earn_at_most_their_share`
//!   measures the pair against the goal of at most one honest miner over more rounds).
//!
//! Before the fix: the fake allocations scored the allocated maximum without doing any
//! work, the GPU claim was not looked at, the `has_docker` claimer scored twice the honest
//! miner, and the Sybil pair about twice the honest miner.
//!
//! Also: the liveness proof against a real OpenSSH server (right key proves, another pinned
//! key is refused).

use crate::common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ganglion_chain::HyperparamUpdate;
use ganglion_chain_node::testkit::{self, Neuron, SubnetBuilder};
use ganglion_compute::config::ComputeConfig;
use ganglion_compute::liveness::{self, LivenessFailure};
use ganglion_compute::miner::{self, AllocateService, ChallengeSolver, MinerParts, SpecsSource};
use ganglion_compute::protocol::{AllocateOutput, AllocateRequest, Requirement};
use ganglion_compute::renter::{self, Order};
use ganglion_compute::scoring::ScoringVersion;
use ganglion_compute::seal::{self, AccessInfo};
use ganglion_compute::solver::{Kernel, Solver, SolverConfig};
use ganglion_compute::specs::{GpuDetail, Specs};
use ganglion_compute::validator::{self, ValidatorConfig};
use ganglion_core::keys::PublicKey;
use ganglion_records::{AllocationRecord, Records};

fn ed25519_line() -> String {
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap_or_else(|e| panic!("{e}"));
    key.public_key().to_openssh().unwrap_or_else(|e| panic!("{e}"))
}

/// Test-only dishonest specs: claims GPUs and/or a working sandbox.
struct Claim {
    gpus: u32,
    docker: bool,
}

impl SpecsSource for Claim {
    fn specs(&self, mut measured: Specs) -> Specs {
        if self.gpus > 0 {
            measured.gpu.count = self.gpus;
            measured.gpu.capacity = 81_559 * u64::from(self.gpus);
            measured.gpu.details = (0..self.gpus).map(|_| GpuDetail { name: "NVIDIA H100 80GB HBM3".into(), capacity: 81_559 }).collect();
        }
        measured.has_docker |= self.docker;
        measured
    }
}

/// Test-only fake allocation answerer: accepts every reservation and hands out a sealed
/// host key, but no SSH server ever runs; every check says "running".
struct FakeAllocations {
    port: u16,
}

#[async_trait::async_trait]
impl AllocateService for FakeAllocations {
    async fn handle(&self, _caller: &PublicKey, request: AllocateRequest) -> AllocateOutput {
        let ok = |allocation: Option<serde_json::Value>| AllocateOutput { status: true, port: Some(self.port), allocation, ..AllocateOutput::default() };
        match request {
            AllocateRequest::Reserve { timeline_seconds, seal_to, .. } => {
                let info = AccessInfo {
                    allocation_id: uuid::Uuid::new_v4().simple().to_string(),
                    username: "root".into(),
                    host: None,
                    port: self.port,
                    host_key: ed25519_line(),
                    host_key_fingerprint: "SHA256:fake".into(),
                    expires_at_ms: ganglion_core::clock::now_ms() + timeline_seconds * 1000,
                    version: "fake".into(),
                };
                AllocateOutput { info: seal::seal(&info, &seal_to).ok(), ..ok(Some(serde_json::json!({ "running": true }))) }
            }
            _ => ok(Some(serde_json::json!({ "running": true }))),
        }
    }
}

/// Test-only: does no work ("allocated, busy").
struct NoWork;

#[async_trait::async_trait]
impl ChallengeSolver for NoWork {
    async fn solve(&self, _spec: &ganglion_compute::pow::ChallengeSpec, _deadline: std::time::Instant) -> ganglion_compute::Result<String> {
        Err(ganglion_compute::ComputeError::Busy { until_ms: ganglion_core::clock::now_ms() + 3_600_000 })
    }
}

fn solver_config(rate: u64) -> SolverConfig {
    SolverConfig { threads: 1, kernel: Kernel::Portable, max_hash_rate: Some(rate) }
}

fn miner_config(netuid: u16, dir: &std::path::Path, name: &str, ip: &str, rate: u64) -> ComputeConfig {
    let mut config = common::node_config(netuid, &dir.join(name));
    config.axon.ip = ip.parse().unwrap_or_else(|_| panic!("ip {ip}"));
    config.miner.solver = solver_config(rate);
    config.miner.challenge_timeout = TIMEOUT;
    config
}

/// The miners' and the validator's challenge timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A real OpenSSH server with a fresh host key on a free loopback port (None if it cannot run here).
struct Sshd {
    child: std::process::Child,
    port: u16,
    host_key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd() -> Option<Sshd> {
    let sshd = ganglion_compute::hashcat::find_binary(std::path::Path::new("/usr/sbin/sshd"))?;
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = tempfile::tempdir().ok()?;
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).ok()?;
    let key_path = dir.path().join("host_key");
    std::fs::write(&key_path, key.to_openssh(ssh_key::LineEnding::LF).ok()?.as_bytes()).ok()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).ok()?;
    let config = dir.path().join("sshd_config");
    std::fs::write(&config, "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n").ok()?;
    let port = common::free_port();
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .arg("-h")
        .arg(&key_path)
        .args(["-p", &port.to_string(), "-o", "ListenAddress=127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let host_key = key.public_key().to_openssh().ok()?;
    let server = Sshd { child, port, host_key, _dir: dir };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

#[tokio::test]
async fn liveness_proof_holds_for_the_pinned_key_only() {
    let Some(server) = start_sshd() else {
        if common::skip("no OpenSSH sshd runnable as root here") {
            return;
        }
        return;
    };
    let proof = liveness::prove("127.0.0.1", server.port, &server.host_key, Duration::from_secs(10)).await;
    assert_eq!(proof, Ok(()), "the server proves the pinned key");
    // Twice: each exchange is fresh (nothing cached on either side).
    assert_eq!(liveness::prove("127.0.0.1", server.port, &server.host_key, Duration::from_secs(10)).await, Ok(()));
    let other = liveness::prove("127.0.0.1", server.port, &ed25519_line(), Duration::from_secs(10)).await;
    assert_eq!(other, Err(LivenessFailure::WrongHostKey), "another pinned key is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dishonest_compute_miners_earn_nothing_beyond_their_work() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let subnet = SubnetBuilder::new()
        .data_dir(dir.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//IVCold", "//IVHot").stake(2_000))
        .neuron(Neuron::new("//IHonestCold", "//IHonestHot"))
        .neuron(Neuron::new("//IDockerCold", "//IDockerHot"))
        .neuron(Neuron::new("//IGpuCold", "//IGpuHot"))
        .neuron(Neuron::new("//IFakeCold", "//IFakeHot"))
        .neuron(Neuron::new("//IThirdCold", "//IThirdHot"))
        .neuron(Neuron::new("//ISybilACold", "//ISybilAHot"))
        .neuron(Neuron::new("//ISybilBCold", "//ISybilBHot"))
        .build()
        .await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let hot = |uri: &str| subnet.neuron(uri).hotkey.clone();
    let uid = |uri: &str| subnet.uid(uri);
    // 1.25M hashes/s for the 2 s a miner works on a challenge: 2.5·10^6 per deadline, 2.5
    // keyspaces at the top difficulty (10^6): a miner solves several of a round's
    // challenges (one after another), which keeps the work estimate's noise per round low.
    const RATE: u64 = 1_250_000;
    let d = dir.path();
    let spawn = |name: &str, ip: &str, rate: u64, uri: &str, parts: MinerParts| {
        let config = miner_config(netuid, d, name, ip, rate);
        let (hotkey, chain) = (hot(uri), chain.clone());
        async move { miner::spawn_with(&config, hotkey, chain, None, parts).await.unwrap_or_else(|e| panic!("miner: {e}")) }
    };
    let honest = spawn("honest", "127.0.0.1", RATE, "//IHonestHot", MinerParts::default()).await;
    let docker = spawn("docker", "127.0.0.1", RATE, "//IDockerHot", MinerParts { specs: Some(Arc::new(Claim { gpus: 0, docker: true })), ..MinerParts::default() }).await;
    let gpu = spawn("gpu", "127.0.0.1", RATE, "//IGpuHot", MinerParts { specs: Some(Arc::new(Claim { gpus: 1, docker: true })), ..MinerParts::default() }).await;
    let closed_port = common::free_port();
    let fake_parts = || MinerParts {
        specs: Some(Arc::new(Claim { gpus: 0, docker: true })),
        allocate: Some(Arc::new(FakeAllocations { port: closed_port })),
        challenge: Some(Arc::new(NoWork)),
        ..MinerParts::default()
    };
    // The fakes do no work: whatever they would earn comes from the claim.
    let fake = spawn("fake", "127.0.0.1", 1, "//IFakeHot", fake_parts()).await;
    let third = spawn("third", "127.0.0.1", 1, "//IThirdHot", fake_parts()).await;
    let shared = Arc::new(Solver::new(&solver_config(RATE)).unwrap_or_else(|e| panic!("{e}")));
    let sybil_a = spawn("sybil-a", "127.0.0.2", RATE, "//ISybilAHot", MinerParts { solver: Some(shared.clone()), ..MinerParts::default() }).await;
    let sybil_b = spawn("sybil-b", "127.0.0.3", RATE, "//ISybilBHot", MinerParts { solver: Some(shared), ..MinerParts::default() }).await;

    let records_url = Records::default_url(&d.join("validator"));
    let mut config = common::node_config(netuid, &d.join("validator"));
    config.neuron.epoch_length = 10;
    config.validator = ValidatorConfig {
        records_url: Some(records_url.clone()),
        difficulty_min: 3,
        difficulty_max: 6,
        challenge_timeout: TIMEOUT,
        round_blocks_min: 2,
        round_blocks_max: 3,
        block_poll: Duration::from_millis(50),
        ..ValidatorConfig::default()
    };
    config.validator.scoring.version = ScoringVersion::B;
    config.validator.scoring.min_difficulty = 3;
    config.validator.scoring.max_difficulty = 6;
    config.validator.scoring.timeout_s = TIMEOUT.as_secs_f64();
    let vhot = hot("//IVHot");
    let validator = validator::spawn(&config, vhot.clone(), chain.clone(), None).await.unwrap_or_else(|e| panic!("validator: {e}"));
    testkit::wait_for_permits(chain.as_ref(), netuid, &[vhot.public()]).await;

    // The validator rents the fake itself once its specs are in; a colluding renter writes a
    // third-party reservation of the other fake into the (shared) records store.
    let records = Records::open(&records_url).await.unwrap_or_else(|e| panic!("{e}"));
    let fake_key = hot("//IFakeHot").public().to_ss58();
    common::eventually(Duration::from_secs(60), "the fake's specs", || {
        let (records, fake_key) = (records.clone(), fake_key.clone());
        async move { records.specs(netuid).await.ok().filter(|s| s.iter().any(|r| r.miner_hotkey == fake_key)) }
    })
    .await;
    let keys = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let renter_key = common::renter_key(keys.path(), "renter");
    let client = ganglion_compute::protocol::client(vhot.clone()).unwrap_or_else(|e| panic!("{e}"));
    let order = Order {
        netuid,
        requirement: Requirement { cpu: 1, gpu: 0, gpu_capacity_mib: 0, gpu_kind: String::new(), ram_bytes: 256 << 20, disk_bytes: 128 << 20 },
        timeline_seconds: 3600,
        ssh_public_key: renter_key.public_line.clone(),
        volume_path: "/workspace".into(),
        miner: Some(fake_key.clone()),
    };
    let granted = renter::allocate(&client, chain.as_ref(), &records, &order).await.unwrap_or_else(|e| panic!("allocating the fake: {e}"));
    assert_eq!(granted.port, closed_port);
    let now = ganglion_core::clock::now_ms_i64();
    records
        .upsert_allocation(&AllocationRecord {
            id: "colluding-renter".into(),
            netuid,
            miner_uid: uid("//IThirdHot"),
            miner_hotkey: hot("//IThirdHot").public().to_ss58(),
            renter: testkit::key("//Colluder").public().to_ss58(),
            created_at_ms: now,
            expires_at_ms: now + 3_600_000,
            ended_at_ms: None,
            status: "active".into(),
            resources: serde_json::json!({}),
            access: serde_json::json!({ "host": "127.0.0.1", "port": closed_port, "host_key": ed25519_line() }),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Sum every miner's score over the rounds from here on.
    let names = [
        ("honest", uid("//IHonestHot")),
        ("docker-claim", uid("//IDockerHot")),
        ("false-gpu", uid("//IGpuHot")),
        ("fake-allocation", uid("//IFakeHot")),
        ("third-party-claim", uid("//IThirdHot")),
        ("sybil-a", uid("//ISybilAHot")),
        ("sybil-b", uid("//ISybilBHot")),
    ];
    let mut sums: HashMap<&str, f64> = HashMap::new();
    // After a warm-up (new miners climb a level per round and fill their windows).
    let start_round = validator.status().details["rounds"].as_u64().unwrap_or(0) + WARM_UP;
    let mut seen = start_round;
    const WARM_UP: u64 = 5;
    const ROUNDS: u64 = 16;
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let status = loop {
        let status = validator.status();
        let rounds = status.details["rounds"].as_u64().unwrap_or(0);
        if rounds > seen.max(start_round) {
            seen = rounds;
            for (name, uid) in names {
                *sums.entry(name).or_default() += status.miner(uid).map_or(0.0, |m| m.score);
            }
        }
        if seen >= start_round + ROUNDS {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "only {} rounds", seen - start_round);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let honest_sum = sums["honest"];
    eprintln!("score sums over {ROUNDS} rounds (relative to honest {honest_sum:.3}):");
    for (name, _) in names {
        eprintln!("  {name:18} {:.3}  ({:.1} %)", sums[name], 100.0 * sums[name] / honest_sum.max(1e-12));
    }
    let row = |uid: u16| status.miner(uid).cloned().unwrap_or_else(|| panic!("uid {uid} missing"));
    for (name, uid) in names {
        let m = row(uid);
        eprintln!("  {name:18} score {:.3} verified {:?} details {}", m.score, m.verified_share, m.details);
    }
    assert!(honest_sum > 0.0, "the honest miner earns");

    // The validator's own fake allocation: not allocated, a failure with the proof's cause.
    let f = row(uid("//IFakeHot"));
    assert_eq!(f.details["allocated"], false, "{f:?}");
    assert_eq!(f.last_failure.as_ref().map(|l| l.cause.as_str()), Some("allocation_unreachable"), "{f:?}");
    assert!(sums["fake-allocation"] <= 0.01 * honest_sum, "fake allocation earned {}", sums["fake-allocation"]);
    // A third-party reservation is not paid: challenged like anyone (and failing).
    let t = row(uid("//IThirdHot"));
    assert_eq!(t.details["allocated"], false, "{t:?}");
    assert!(t.details["attempts"].as_u64().unwrap_or(0) > 0, "challenged: {t:?}");
    assert!(sums["third-party-claim"] <= 0.01 * honest_sum, "third-party claim earned {}", sums["third-party-claim"]);
    // The false GPU claim is caught by the probes.
    let g = row(uid("//IGpuHot"));
    assert_eq!(g.last_failure.as_ref().map(|l| l.cause.as_str()), Some("false_specs"), "{g:?}");
    assert_eq!(g.details["gpu_claim"], "contradicted", "{g:?}");
    assert!(sums["false-gpu"] <= 0.01 * honest_sum, "false GPU claim earned {}", sums["false-gpu"]);
    // has_docker is recorded, not paid: the claimer is halved like the honest miner (before
    // the fix `has_sandbox` was the claim, and B doubled the claimer's score). The sums of
    // two identical miners differ by up to ±40 % over these few rounds (the work estimate's
    // variance), so the check is on what the formula was given, in every score record.
    let k = row(uid("//IDockerHot"));
    assert_eq!((k.details["claims_sandbox"].as_bool(), k.details["has_sandbox"].as_bool()), (Some(true), Some(false)), "{k:?}");
    let docker_scores = records.scores_for(netuid, &hot("//IDockerHot").public().to_ss58(), 500).await.unwrap_or_default();
    assert!(!docker_scores.is_empty(), "scores are recorded");
    // Rounds scored before the miner's specs arrived (a slow machine) record no claim yet;
    // every round records that the formula was not given one.
    assert!(docker_scores.iter().all(|r| r.components["has_sandbox"] == false), "the claim never reached the formula");
    assert!(docker_scores.iter().any(|r| r.components["claims_sandbox"] == true), "the claim was seen");
    // The Sybil pair together. Before the work factor each hotkey scored about what the whole
    // machine would (≈ 2× the honest miner for a pair); with one challenge per round a pair
    // still gained from the time one part left idle after an early solve. With a round's
    // challenges searched one after another by every miner the pair's expected share is
    // ≤ 1.003× here (`scoring`); the sums over these 16 rounds vary by about ±0.12, so the
    // bound only catches a return of the superlinearity (the red-team test measures the goal).
    let sybil = sums["sybil-a"] + sums["sybil-b"];
    assert!(sybil <= 1.6 * honest_sum, "sybil pair {sybil} vs honest {honest_sum}");

    let records_rows = records.allocations(netuid).await.unwrap_or_default();
    assert!(records_rows.iter().any(|r| r.id == granted.allocation_id && r.access["host_key"].as_str().is_some()), "the pin is stored");
    validator.shutdown().await.map(drop).unwrap_or_else(|e| panic!("{e}"));
    for m in [honest, docker, gpu, fake, third, sybil_a, sybil_b] {
        m.shutdown().await;
    }
    subnet.shutdown().await;
}
