//! Hardware specs, in the original's `get_perf_info()` shape (spec/compute.md §2) plus what a
//! renter needs to know (CPU model, logical CPUs, the sandbox and which limits it enforces).
//!
//! Sources: `/proc/cpuinfo` (physical cores = distinct `(physical id, core id)` pairs, model,
//! MHz), `/sys/devices/system/cpu/*/cpufreq/cpuinfo_max_freq` when present, `/proc/meminfo`,
//! `statvfs` of the miner's data directory, and `nvidia-smi --query-gpu` when it is on
//! `PATH` (otherwise no GPUs). Speeds are measured with bounded sizes (64 MiB by default):
//! RAM by writing and reading a buffer, disk by writing a file in the data directory,
//! `fsync`ing it, dropping it from the page cache (`posix_fadvise(DONTNEED)`) and reading it
//! back, so that the read speed is the disk's and not the cache's (the original measured
//! its own cache). The file is removed afterwards, also on error.
//!
//! Specs are self-reported, as in every version of the original; validators store them for
//! renters and the allocation path checks requests against the miner's own live numbers.
//! What a validator can check, it checks ([`GpuProbe`]): a GPU claim must be backed by a
//! GPU-class BLAKE2b rate on the validator's own challenges. What it cannot check (CPU
//! model, RAM, disk, `has_docker`) never raises a score (see `scoring`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};

/// The specs document (`Specs.specs_output`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Specs {
    /// CPU.
    pub cpu: CpuSpecs,
    /// GPUs (none without `nvidia-smi`).
    pub gpu: GpuSpecs,
    /// The data directory's filesystem.
    pub hard_disk: DiskSpecs,
    /// Memory.
    pub ram: RamSpecs,
    /// The original's name for "can run an allocation": here, whether the sandbox works.
    pub has_docker: bool,
    /// Container runtimes found on the machine.
    pub container_runtimes: Vec<String>,
    /// The allocation sandbox, when usable: runtime and enforced limits.
    pub sandbox: Option<serde_json::Value>,
    /// The built-in solver.
    pub solver: Option<SolverSpecs>,
    /// When these were measured (Unix ms).
    pub measured_at_ms: u64,
    /// Software version.
    pub version: String,
}

/// CPU facts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuSpecs {
    /// Physical cores.
    pub count: u32,
    /// Logical CPUs.
    pub logical: u32,
    /// Model name.
    pub model: String,
    /// Frequency in MHz (maximum when known).
    pub frequency: f64,
}

/// GPU facts (the original's `gpu` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuSpecs {
    /// Number of GPUs.
    pub count: u32,
    /// Sum of memory in MiB.
    pub capacity: u64,
    /// Per GPU.
    pub details: Vec<GpuDetail>,
    /// Graphics clock of GPU 0, MHz.
    pub graphics_speed: u64,
    /// Memory clock of GPU 0, MHz.
    pub memory_speed: u64,
}

/// One GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuDetail {
    /// Name as `nvidia-smi` prints it.
    pub name: String,
    /// Memory in MiB.
    pub capacity: u64,
}

/// Disk facts (bytes; speeds in MB/s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskSpecs {
    /// Size.
    pub total: u64,
    /// Available to unprivileged users.
    pub free: u64,
    /// Used.
    pub used: u64,
    /// Sequential read MB/s (uncached).
    pub read_speed: f64,
    /// Sequential write MB/s (including fsync).
    pub write_speed: f64,
}

/// Memory facts (bytes; speeds in MB/s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RamSpecs {
    /// MemTotal.
    pub total: u64,
    /// MemAvailable.
    pub available: u64,
    /// total − available.
    pub used: u64,
    /// MemFree.
    pub free: u64,
    /// SwapTotal.
    pub swap_total: u64,
    /// SwapFree.
    pub swap_free: u64,
    /// SwapTotal − SwapFree.
    pub swap_used: u64,
    /// Read MB/s.
    pub read_speed: f64,
    /// Write MB/s.
    pub write_speed: f64,
}

/// What the miner's solver is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SolverSpecs {
    /// Kernel name.
    pub kernel: String,
    /// Threads.
    pub threads: u32,
    /// Whether hashcat answers instead.
    pub hashcat: bool,
}

/// How to measure.
#[derive(Debug, Clone)]
pub struct MeasureConfig {
    /// Bytes of the RAM and disk speed tests (clamped to 1 MiB – 1 GiB).
    pub sample_bytes: usize,
    /// Skip the speed tests (zeros): for tests and `--specs.no-benchmark`.
    pub skip_speed_tests: bool,
}

impl Default for MeasureConfig {
    fn default() -> Self {
        MeasureConfig { sample_bytes: 64 << 20, skip_speed_tests: false }
    }
}

/// Collects the specs of this machine; disk numbers are for `data_dir`'s filesystem.
pub fn collect(data_dir: &Path, config: &MeasureConfig) -> Result<Specs> {
    let cpuinfo = read_text("/proc/cpuinfo", 4 << 20).unwrap_or_default();
    let mut cpu = parse_cpuinfo(&cpuinfo);
    if let Some(max_khz) = read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", 64)
        .and_then(|t| t.trim().parse::<f64>().ok())
    {
        cpu.frequency = max_khz / 1000.0;
    }
    if cpu.logical == 0 {
        cpu.logical = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    }
    if cpu.count == 0 {
        cpu.count = cpu.logical;
    }
    let meminfo = read_text("/proc/meminfo", 1 << 20).unwrap_or_default();
    let mut ram = parse_meminfo(&meminfo);
    let mut hard_disk = disk_usage(data_dir)?;
    if !config.skip_speed_tests {
        let size = config.sample_bytes.clamp(1 << 20, 1 << 30);
        let (read, write) = memory_speed(size);
        ram.read_speed = read;
        ram.write_speed = write;
        let (read, write) = disk_speed(data_dir, size)?;
        hard_disk.read_speed = read;
        hard_disk.write_speed = write;
    }
    let gpu = nvidia_gpus().unwrap_or_default();
    Ok(Specs {
        cpu,
        gpu,
        hard_disk,
        ram,
        has_docker: false,
        container_runtimes: container_runtimes(),
        sandbox: None,
        solver: None,
        measured_at_ms: ganglion_core::clock::now_ms(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

fn read_text(path: &str, limit: u64) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Physical cores, logical CPUs, model and MHz from `/proc/cpuinfo` text.
pub fn parse_cpuinfo(text: &str) -> CpuSpecs {
    let mut cores = std::collections::HashSet::new();
    let mut logical = 0u32;
    let mut model = String::new();
    let mut mhz: f64 = 0.0;
    let (mut physical, mut core) = (None::<String>, None::<String>);
    let mut flush = |physical: &mut Option<String>, core: &mut Option<String>| {
        if let (Some(p), Some(c)) = (physical.take(), core.take()) {
            cores.insert((p, c));
        }
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                flush(&mut physical, &mut core);
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => logical += 1,
            "model name" if model.is_empty() => model = value.to_string(),
            "cpu MHz" => mhz = mhz.max(value.parse().unwrap_or(0.0)),
            "physical id" => physical = Some(value.to_string()),
            "core id" => core = Some(value.to_string()),
            _ => {}
        }
    }
    flush(&mut physical, &mut core);
    CpuSpecs { count: cores.len() as u32, logical, model, frequency: mhz }
}

/// RAM and swap from `/proc/meminfo` text (kB → bytes).
pub fn parse_meminfo(text: &str) -> RamSpecs {
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    let (total, available, free) = (value("MemTotal"), value("MemAvailable"), value("MemFree"));
    let (swap_total, swap_free) = (value("SwapTotal"), value("SwapFree"));
    RamSpecs {
        total,
        available,
        used: total.saturating_sub(available),
        free,
        swap_total,
        swap_free,
        swap_used: swap_total.saturating_sub(swap_free),
        read_speed: 0.0,
        write_speed: 0.0,
    }
}

/// Size, free and used bytes of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskSpecs> {
    let stat = rustix::fs::statvfs(path).map_err(|err| ComputeError::io("statvfs", path, err.into()))?;
    let block = stat.f_frsize.max(1);
    let total = stat.f_blocks * block;
    Ok(DiskSpecs {
        total,
        free: stat.f_bavail * block,
        used: total.saturating_sub(stat.f_bfree * block),
        read_speed: 0.0,
        write_speed: 0.0,
    })
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(1e-9);
    (bytes as f64 / 1e6 / secs * 10.0).round() / 10.0
}

/// RAM read and write speed (MB/s) over a `size`-byte buffer.
pub fn memory_speed(size: usize) -> (f64, f64) {
    let started = Instant::now();
    let mut buffer = vec![0u8; size];
    for (i, chunk) in buffer.chunks_mut(4096).enumerate() {
        chunk.fill(i as u8);
    }
    let write = mb_per_s(size, started.elapsed());
    let started = Instant::now();
    let mut sum = 0u64;
    for chunk in buffer.chunks(8) {
        sum = sum.wrapping_add(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
    }
    std::hint::black_box(sum);
    let read = mb_per_s(size, started.elapsed());
    (read, write)
}

/// Disk read and write speed (MB/s) of a `size`-byte file in `dir` (removed afterwards).
pub fn disk_speed(dir: &Path, size: usize) -> Result<(f64, f64)> {
    std::fs::create_dir_all(dir).map_err(|err| ComputeError::io("creating", dir, err))?;
    let path = dir.join(format!(".ganglion-disk-speed-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let chunk = vec![0xA5u8; 1 << 20];
        let started = Instant::now();
        let mut file = std::fs::File::create(&path).map_err(|err| ComputeError::io("creating", &path, err))?;
        let mut written = 0usize;
        while written < size {
            let n = chunk.len().min(size - written);
            file.write_all(&chunk[..n]).map_err(|err| ComputeError::io("writing", &path, err))?;
            written += n;
        }
        file.sync_all().map_err(|err| ComputeError::io("syncing", &path, err))?;
        let write = mb_per_s(size, started.elapsed());
        // Drop the clean pages so that the read below comes from the disk.
        let _ = rustix::fs::fadvise(&file, 0, std::num::NonZeroU64::new(size as u64), rustix::fs::Advice::DontNeed);
        drop(file);
        let started = Instant::now();
        let mut file = std::fs::File::open(&path).map_err(|err| ComputeError::io("opening", &path, err))?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut read_total = 0usize;
        loop {
            let n = file.read(&mut buffer).map_err(|err| ComputeError::io("reading", &path, err))?;
            if n == 0 {
                break;
            }
            read_total += n;
        }
        Ok((mb_per_s(read_total, started.elapsed()), write))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// GPUs from `nvidia-smi`; None when it is not installed or fails.
pub fn nvidia_gpus() -> Option<GpuSpecs> {
    let binary = crate::hashcat::find_binary(Path::new("nvidia-smi"))?;
    let mut child = std::process::Command::new(binary)
        .args(["--query-gpu=name,memory.total,clocks.gr,clocks.mem", "--format=csv,noheader,nounits"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Bounded: a wedged driver must not hang the miner.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) => return None,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    child.stdout.take()?.take(1 << 16).read_to_string(&mut text).ok()?;
    Some(parse_nvidia_smi(&text))
}

/// Parses `name, memory.total, clocks.gr, clocks.mem` CSV lines.
pub fn parse_nvidia_smi(text: &str) -> GpuSpecs {
    let mut gpus = GpuSpecs::default();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 4 {
            continue;
        }
        let number = |s: &str| s.parse::<f64>().map(|v| v as u64).unwrap_or(0);
        let capacity = number(fields[1]);
        gpus.details.push(GpuDetail { name: fields[0].chars().take(128).collect(), capacity });
        gpus.capacity += capacity;
        if i == 0 {
            gpus.graphics_speed = number(fields[2]);
            gpus.memory_speed = number(fields[3]);
        }
    }
    gpus.count = gpus.details.len() as u32;
    gpus
}

/// Container runtimes on `PATH` (podman, docker with a reachable socket, bubblewrap).
pub fn container_runtimes() -> Vec<String> {
    let mut found = Vec::new();
    if crate::hashcat::find_binary(Path::new("bwrap")).is_some() {
        found.push("bubblewrap".to_string());
    }
    if crate::hashcat::find_binary(Path::new("podman")).is_some() {
        found.push("podman".to_string());
    }
    if crate::hashcat::find_binary(Path::new("docker")).is_some() && Path::new("/var/run/docker.sock").exists() {
        found.push("docker".to_string());
    }
    found
}

/// The slowest BLAKE2b-512 rate (hashes per second, per GPU) a GPU claim is held to. It is
/// deliberately low: hashcat's mode 610 runs at several GH/s on current NVIDIA cards and
/// around 1 GH/s on ten-year-old ones, while a CPU core does tens of MH/s (this crate's
/// AVX-512 kernel about 30 MH/s per core). A miner whose GPUs solve challenges (hashcat)
/// clears it many times over; one whose GPUs do not solve is not using them for the work
/// it is paid for and gets no credit for them.
pub const GPU_FLOOR_HASHES_PER_S: f64 = 500e6;
/// Seconds a GPU at the floor needs to search a probe's whole keyspace (at most).
pub const GPU_PROBE_BUDGET_S: f64 = 2.0;
/// Allowance for the network and scheduling on top of twice the floor's search time.
pub const GPU_PROBE_SLACK_S: f64 = 1.5;
/// How many of a miner's newest probes the verdict looks at.
pub const GPU_PROBE_WINDOW: usize = 4;

/// A challenge that checks a GPU claim: at the claimed GPUs' floor rate its whole keyspace is
/// searched within [`GPU_PROBE_BUDGET_S`], so a solver of that class answers well within the
/// deadline whatever the password; a CPU-class solver needs 10–100× longer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuProbe {
    /// Difficulty of the probe (the largest whose keyspace fits the budget).
    pub difficulty: u8,
    /// Answer deadline: twice the floor's exhaustive search time plus the slack.
    pub deadline: Duration,
}

impl GpuProbe {
    /// The probe for a claim of `gpus` GPUs (None for no GPU), deadline at most `timeout`.
    pub fn for_claim(gpus: u32, timeout: Duration) -> Option<GpuProbe> {
        if gpus == 0 {
            return None;
        }
        let budget = f64::from(gpus.min(64)) * GPU_FLOOR_HASHES_PER_S * GPU_PROBE_BUDGET_S;
        let difficulty = (crate::pow::MIN_DIFFICULTY..=crate::pow::MAX_DIFFICULTY).rev().find(|d| 10f64.powi(i32::from(*d)) <= budget)?;
        let exhaustive = 10f64.powi(i32::from(difficulty)) / (f64::from(gpus.min(64)) * GPU_FLOOR_HASHES_PER_S);
        let deadline = Duration::from_secs_f64(2.0 * exhaustive + GPU_PROBE_SLACK_S).min(timeout);
        Some(GpuProbe { difficulty, deadline })
    }
}

/// The verdict on a GPU claim from its newest probes (true: passed): None before any probe
/// (the claim is unchecked), otherwise whether more than half of the newest
/// [`GPU_PROBE_WINDOW`] passed. A real GPU at the floor fails a probe only when the network
/// or the machine stalls for seconds, so a majority rule tolerates one bad probe.
pub fn gpu_claim_verdict(newest_first: &[bool]) -> Option<bool> {
    let window = &newest_first[..newest_first.len().min(GPU_PROBE_WINDOW)];
    if window.is_empty() {
        return None;
    }
    let passed = window.iter().filter(|p| **p).count();
    Some(passed * 2 > window.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_probes_fit_a_gpu_and_not_a_cpu() {
        assert_eq!(GpuProbe::for_claim(0, Duration::from_secs(30)), None);
        let one = GpuProbe::for_claim(1, Duration::from_secs(30)).unwrap_or_else(|| panic!("a probe"));
        assert_eq!(one.difficulty, 9);
        assert!((one.deadline.as_secs_f64() - 5.5).abs() < 1e-9, "{one:?}");
        // A 30 MH/s CPU needs 33 s for the whole keyspace: it answers by the deadline with
        // probability 5.5 / 33 < 17 %.
        let cpu_rate = 30e6;
        assert!(one.deadline.as_secs_f64() * cpu_rate / 10f64.powi(i32::from(one.difficulty)) < 0.17);
        let many = GpuProbe::for_claim(8, Duration::from_secs(30)).unwrap_or_else(|| panic!("a probe"));
        assert_eq!(many.difficulty, 9);
        assert_eq!(GpuProbe::for_claim(1, Duration::from_secs(2)).map(|p| p.deadline), Some(Duration::from_secs(2)));
        assert_eq!(gpu_claim_verdict(&[]), None);
        assert_eq!(gpu_claim_verdict(&[false]), Some(false));
        assert_eq!(gpu_claim_verdict(&[true, false]), Some(false), "half is not a majority");
        assert_eq!(gpu_claim_verdict(&[true, true, false, true, false, false]), Some(true), "only the newest four count");
    }

    #[test]
    fn parses_cpuinfo_meminfo_and_nvidia_smi() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Xeon\ncpu MHz\t\t: 2300.000\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                       processor\t: 1\nmodel name\t: Xeon\ncpu MHz\t\t: 2400.5\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                       processor\t: 2\nmodel name\t: Xeon\ncpu MHz\t\t: 2300.000\nphysical id\t: 0\ncore id\t\t: 1\n";
        let cpu = parse_cpuinfo(cpuinfo);
        assert_eq!((cpu.count, cpu.logical, cpu.model.as_str()), (2, 3, "Xeon"), "hyperthreads are not cores");
        assert!((cpu.frequency - 2400.5).abs() < 1e-9);

        let ram = parse_meminfo("MemTotal:       24683584 kB\nMemFree:        22000000 kB\nMemAvailable:   23000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n");
        assert_eq!(ram.total, 24_683_584 * 1024);
        assert_eq!(ram.used, (24_683_584 - 23_000_000) * 1024);

        let gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 1980, 2619\nNVIDIA H100 80GB HBM3, 81559, 1755, 2619\nbroken\n");
        assert_eq!((gpus.count, gpus.capacity, gpus.graphics_speed, gpus.memory_speed), (2, 163_118, 1980, 2619));
        assert_eq!(gpus.details[1].name, "NVIDIA H100 80GB HBM3");
    }

    #[test]
    fn measures_this_machine_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let specs = collect(dir.path(), &MeasureConfig { sample_bytes: 4 << 20, skip_speed_tests: false })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(specs.cpu.count >= 1 && specs.cpu.logical >= specs.cpu.count);
        assert!(specs.ram.total > 0 && specs.ram.available <= specs.ram.total);
        assert!(specs.hard_disk.total > 0 && specs.hard_disk.free <= specs.hard_disk.total);
        assert!(specs.ram.read_speed > 0.0 && specs.hard_disk.write_speed > 0.0 && specs.hard_disk.read_speed > 0.0);
        let leftovers = std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(usize::MAX);
        assert_eq!(leftovers, 0, "the speed-test file is removed");
        let json = serde_json::to_value(&specs).unwrap_or_default();
        for key in ["cpu", "gpu", "hard_disk", "ram", "has_docker"] {
            assert!(json.get(key).is_some(), "{key} is part of the original's document");
        }
    }
}
