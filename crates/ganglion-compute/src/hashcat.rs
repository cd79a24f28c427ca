//! The optional hashcat backend (`--miner.hashcat.path`): mode 610, mask attack.
//!
//! The command is built as an argument vector (no shell), like the original's
//! `hashcat "<hash>:<salt>" -a 3 -m 610 -1 <chars> <mask> -w 3 <extra>`, plus what a server
//! needs: `--potfile-disable` (a cached answer would hide a miner's speed and grow a file
//! forever), a unique `--session` so that concurrent challenges do not collide on
//! hashcat's session lock, `--runtime` as a second deadline, and the answer written to a
//! private outfile in plain format instead of being scraped from the terminal output.
//!
//! Fixes over the original:
//! - hashcat prints `$HEX[...]` for plaintexts that contain `:` (which is in the charset);
//!   the original returned that text verbatim and failed. [`decode_plain`] decodes it.
//! - The original's empty `--miner.hashcat.extended.options` default became an empty
//!   argument; here the options are split on whitespace and empty pieces are dropped.
//! - The child is killed at the deadline (tokio `kill_on_drop` plus an explicit kill).
//!
//! Mode 610 does not need `--force` on the PoCL CPU device (checked with hashcat 6.2.6 and
//! PoCL 3.1 on Debian 12). The first run compiles the OpenCL kernel, about 50–75 s on two
//! cores; later runs reuse `~/.cache/hashcat/kernels` and start in about 5 s.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::{ComputeError, Result};
use crate::pow::ChallengeSpec;

/// hashcat settings (the original's flag names in comments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashcatConfig {
    /// `--miner.hashcat.path`: the binary.
    pub path: PathBuf,
    /// `--miner.hashcat.workload.profile`: 1 low, 2 economic, 3 high, 4 insane.
    pub workload_profile: u8,
    /// `--miner.hashcat.extended.options`: extra arguments, split on whitespace (e.g. `-O`).
    pub extended_options: String,
    /// `-D`: device types (1 CPU, 2 GPU, 3 FPGA…); None lets hashcat choose. The original
    /// forced `-D 2`, which finds nothing on a CPU-only machine.
    pub device_types: Option<String>,
}

impl Default for HashcatConfig {
    fn default() -> Self {
        HashcatConfig { path: PathBuf::from("hashcat"), workload_profile: 3, extended_options: String::new(), device_types: None }
    }
}

impl HashcatConfig {
    /// Checks the settings (not whether the binary exists; see [`find_binary`]).
    pub fn validate(&self) -> Result<()> {
        if !(1..=4).contains(&self.workload_profile) {
            return Err(ComputeError::Config(format!(
                "--miner.hashcat.workload.profile must be 1, 2, 3 or 4, not {}",
                self.workload_profile
            )));
        }
        if let Some(types) = &self.device_types
            && (types.is_empty() || !types.bytes().all(|b| b.is_ascii_digit() || b == b',')) {
                return Err(ComputeError::Config(format!("hashcat device types must look like `1` or `1,2`, not {types:?}")));
            }
        Ok(())
    }

    /// The extra arguments, one per whitespace-separated word.
    pub fn extra_args(&self) -> Vec<String> {
        self.extended_options.split_whitespace().map(str::to_string).collect()
    }
}

/// Resolves the configured binary on `PATH`; None when hashcat is not installed.
pub fn find_binary(path: &Path) -> Option<PathBuf> {
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(path)).find(|candidate| candidate.is_file())
}

/// The argument vector (after the program name) that solves `spec`.
pub fn attack_args(config: &HashcatConfig, spec: &ChallengeSpec, session: &str, outfile: &Path, runtime_s: u64) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        format!("{}:{}", spec.hash_field(), spec.salt).into(),
        "-a".into(),
        "3".into(),
        "-m".into(),
        crate::pow::MODE.into(),
        "-1".into(),
        spec.chars.clone().into(),
        spec.mask().into(),
        "-w".into(),
        config.workload_profile.to_string().into(),
        "--potfile-disable".into(),
        "--restore-disable".into(),
        "--logfile-disable".into(),
        "--quiet".into(),
        "--session".into(),
        session.into(),
        "--outfile".into(),
        outfile.as_os_str().to_owned(),
        "--outfile-format".into(),
        "2".into(),
        format!("--runtime={}", runtime_s.max(1)).into(),
    ];
    if let Some(types) = &config.device_types {
        args.push("-D".into());
        args.push(types.into());
    }
    args.extend(config.extra_args().into_iter().map(OsString::from));
    args
}

/// Decodes hashcat's plain output: `$HEX[6162]` → `ab`, anything else verbatim.
pub fn decode_plain(line: &str) -> Result<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(inner) = line.strip_prefix("$HEX[").and_then(|rest| rest.strip_suffix(']')) else {
        return Ok(line.to_string());
    };
    let bytes = hex::decode(inner).map_err(|_| ComputeError::Hashcat(format!("malformed $HEX[] answer {line:?}")))?;
    String::from_utf8(bytes).map_err(|_| ComputeError::Hashcat("the $HEX[] answer is not UTF-8".into()))
}

/// Solves `spec` with hashcat before `deadline`. The child is killed at the deadline.
pub async fn solve(config: &HashcatConfig, spec: &ChallengeSpec, deadline: Instant) -> Result<String> {
    config.validate()?;
    let binary = find_binary(&config.path).ok_or_else(|| {
        ComputeError::Hashcat(format!(
            "{} not found; install it (scripts/install-hashcat) or point --miner.hashcat.path at it",
            config.path.display()
        ))
    })?;
    let dir = tempdir()?;
    let outfile = dir.path.join("answer.txt");
    let session = format!("ganglion-{}", uuid::Uuid::new_v4().simple());
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ComputeError::DeadlineExceeded { searched: 0, keyspace: spec.keyspace() });
    }
    let mut child = tokio::process::Command::new(&binary)
        .args(attack_args(config, spec, &session, &outfile, remaining.as_secs().max(1)))
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| ComputeError::io("starting", &binary, err))?;
    let mut stderr = child.stderr.take();
    let status = tokio::select! {
        status = child.wait() => status.map_err(|err| ComputeError::io("waiting for", &binary, err))?,
        () = tokio::time::sleep(remaining) => {
            let _ = child.kill().await;
            return Err(ComputeError::DeadlineExceeded { searched: 0, keyspace: spec.keyspace() });
        }
    };
    let answer = read_small(&outfile, 4096).await.unwrap_or_default();
    if let Some(line) = answer.lines().find(|l| !l.is_empty()) {
        let password = decode_plain(line)?;
        if spec.is_solved_by(&password) {
            return Ok(password);
        }
        return Err(ComputeError::Hashcat(format!("hashcat answered {password:?}, which does not match the hash")));
    }
    let mut message = String::new();
    if let Some(stderr) = stderr.as_mut() {
        let mut buf = Vec::new();
        let _ = stderr.take(2048).read_to_end(&mut buf).await;
        message = String::from_utf8_lossy(&buf).trim().to_string();
    }
    // Exit code 1 is "exhausted", 4 "runtime limit reached" (hashcat's --runtime).
    match status.code() {
        Some(1) => Err(ComputeError::Exhausted { keyspace: spec.keyspace() }),
        Some(4) => Err(ComputeError::DeadlineExceeded { searched: 0, keyspace: spec.keyspace() }),
        code => Err(ComputeError::Hashcat(format!(
            "hashcat exited with {code:?} without an answer{}",
            if message.is_empty() { String::new() } else { format!(": {message}") }
        ))),
    }
}

/// `hashcat -b -m 610 --machine-readable`: the summed speed of all devices in hashes/s.
pub async fn benchmark(config: &HashcatConfig, timeout: Duration) -> Result<f64> {
    config.validate()?;
    let binary = find_binary(&config.path)
        .ok_or_else(|| ComputeError::Hashcat(format!("{} not found (scripts/install-hashcat)", config.path.display())))?;
    let mut command = tokio::process::Command::new(&binary);
    command.args(["-b", "-m", crate::pow::MODE, "--machine-readable", "-w"]).arg(config.workload_profile.to_string());
    if let Some(types) = &config.device_types {
        command.args(["-D", types]);
    }
    command.args(config.extra_args()).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| ComputeError::Hashcat(format!("the benchmark did not finish within {timeout:?}")))?
        .map_err(|err| ComputeError::io("running", &binary, err))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_benchmark(&text).ok_or_else(|| {
        ComputeError::Hashcat(format!("no speed line in the benchmark output: {}", text.chars().take(300).collect::<String>()))
    })
}

/// Parses `--machine-readable` benchmark lines `device:mode:…:ms:hashes_per_second`.
pub fn parse_benchmark(text: &str) -> Option<f64> {
    let speeds: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().split(':').collect();
            (fields.len() >= 6 && fields[1] == crate::pow::MODE).then(|| fields[fields.len() - 1].parse::<f64>().ok()).flatten()
        })
        .collect();
    (!speeds.is_empty()).then(|| speeds.iter().sum())
}

async fn read_small(path: &Path, limit: u64) -> Option<String> {
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).await.ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A private temporary directory removed on drop.
struct TempDir {
    path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempdir() -> Result<TempDir> {
    let path = std::env::temp_dir().join(format!("ganglion-hashcat-{}", uuid::Uuid::new_v4().simple()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(&path).map_err(|err| ComputeError::io("creating", &path, err))?;
    Ok(TempDir { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ChallengeSpec {
        ChallengeSpec { hash_hex: "ab".repeat(64), salt: "0123456789abcdef".into(), chars: "-ab:cdefgh".into(), difficulty: 3 }
    }

    #[test]
    fn builds_the_exact_argument_vector() {
        let config = HashcatConfig { extended_options: "  -O   --self-test-disable ".into(), ..HashcatConfig::default() };
        let args = attack_args(&config, &spec(), "s1", Path::new("/tmp/x/answer.txt"), 30);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let expected_head = [
            format!("$BLAKE2${}:0123456789abcdef", "ab".repeat(64)),
            "-a".into(),
            "3".into(),
            "-m".into(),
            "610".into(),
            "-1".into(),
            "-ab:cdefgh".into(),
            "?1?1?1".into(),
            "-w".into(),
            "3".into(),
            "--potfile-disable".into(),
        ];
        assert_eq!(&args[..expected_head.len()], &expected_head);
        assert!(args.windows(2).any(|w| w[0] == "--session" && w[1] == "s1"));
        assert!(args.contains(&"--runtime=30".to_string()));
        assert_eq!(&args[args.len() - 2..], &["-O".to_string(), "--self-test-disable".to_string()]);
        assert!(!args.iter().any(String::is_empty), "no empty argument (the original's bug)");
    }

    #[test]
    fn decodes_hex_answers() {
        assert_eq!(decode_plain("$HEX[613a6224633a31]\n").ok().as_deref(), Some("a:b$c:1"));
        assert_eq!(decode_plain("abc").ok().as_deref(), Some("abc"));
        assert!(decode_plain("$HEX[zz]").is_err());
        assert!(decode_plain("$HEX[ff]").is_err(), "not UTF-8");
    }

    #[test]
    fn parses_machine_readable_benchmarks_and_checks_settings() {
        let out = "# version: v6.2.6\n# option: --optimized-kernel-enable\n1:610:4294967295:4294967295:84.59:11262234\n2:610:1:1:10.0:1000\n";
        assert_eq!(parse_benchmark(out), Some(11_263_234.0));
        assert_eq!(parse_benchmark("nothing here"), None);
        assert!(HashcatConfig { workload_profile: 5, ..HashcatConfig::default() }.validate().is_err());
        assert!(HashcatConfig { device_types: Some("1;rm".into()), ..HashcatConfig::default() }.validate().is_err());
        assert!(HashcatConfig { device_types: Some("1,2".into()), ..HashcatConfig::default() }.validate().is_ok());
    }
}
