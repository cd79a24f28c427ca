//! The wire protocol: the original's synapses (spec/compute.md §1) as JSON routes on the
//! miner, behind Epistula.
//!
//! | route | request | response |
//! |---|---|---|
//! | `POST /Specs` | [`Specs`] | [`Specs`] with `specs_output` (a JSON document, [`crate::specs::Specs`]) |
//! | `POST /Challenge` | [`Challenge`] | [`Challenge`] with `output` = `{password, local_execution_time, error}` |
//! | `POST /Allocate` | [`Allocate`] | [`Allocate`] with `output` = [`AllocateOutput`] |
//!
//! Field names are the original's. Every request is parsed strictly (unknown fields are
//! refused), bodies are capped at [`MAX_REQUEST_BYTES`], and every field is validated before
//! use ([`Challenge::spec`], [`Allocate::validate`]). Differences, all documented on the
//! fields: `public_key` is an X25519 key (hex) the access information is sealed to, not an
//! RSA PEM; `timeline_seconds` is an optional precise alternative to `timeline` (days);
//! `dockerfile` must be empty (the sandbox builds no images; the original ran it as `RUN`).

use serde::{Deserialize, Serialize};

use crate::error::{ComputeError, Result};
use crate::pow::{self, ChallengeSpec};

/// Route paths (the synapse class names, as bittensor axons serve them).
pub mod route {
    /// Hardware specs.
    pub const SPECS: &str = "/Specs";
    /// Proof-of-work challenge.
    pub const CHALLENGE: &str = "/Challenge";
    /// Allocation (reserve, check, change, release).
    pub const ALLOCATE: &str = "/Allocate";
}

/// Largest request body the miner reads.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest response body a client reads.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// A client for signed calls to miners' routes (validators and renters), reading answers of
/// at most [`MAX_RESPONSE_BYTES`]; its failures are typed ([`ganglion_neuron::PeerFailure`]).
pub fn client(keypair: ganglion_core::keys::Keypair) -> Result<ganglion_neuron::peer::PeerClient> {
    Ok(ganglion_neuron::peer::PeerClient::new(keypair, MAX_RESPONSE_BYTES)?)
}

/// Longest reservation (the original's 60 days).
pub const MAX_TIMELINE_SECONDS: u64 = 60 * 86_400;
/// Longest OpenSSH public key line accepted (an RSA-16384 key is about 2.8 KB).
pub const MAX_SSH_KEY_LEN: usize = 4096;

/// `Specs`: the validator asks, the miner fills `specs_output` with a JSON document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Specs {
    /// Unused (the legacy transport sent a binary here; it is ignored and must be short).
    #[serde(default)]
    pub specs_input: String,
    /// The specs as a JSON document.
    #[serde(default)]
    pub specs_output: String,
}

/// `Challenge`: find the password of a `$BLAKE2$` hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// `$BLAKE2$` + 128 hex digits.
    pub challenge_hash: String,
    /// 16 hex digits.
    pub challenge_salt: String,
    /// `610`.
    pub challenge_mode: String,
    /// The 10 characters of the password (hashcat's `-1`).
    pub challenge_chars: String,
    /// `?1` × difficulty.
    pub challenge_mask: String,
    /// Password length.
    #[serde(default = "default_difficulty")]
    pub challenge_difficulty: u8,
    /// The miner's answer.
    #[serde(default)]
    pub output: ChallengeOutput,
}

fn default_difficulty() -> u8 {
    7
}

/// `Challenge.output`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeOutput {
    /// The password, if found.
    #[serde(default)]
    pub password: Option<String>,
    /// Seconds the miner spent (self-reported; the validator measures its own).
    #[serde(default)]
    pub local_execution_time: Option<f64>,
    /// Why there is no password.
    #[serde(default)]
    pub error: Option<String>,
}

impl Challenge {
    /// The wire form of a challenge.
    pub fn from_spec(spec: &ChallengeSpec) -> Challenge {
        Challenge {
            challenge_hash: spec.hash_field(),
            challenge_salt: spec.salt.clone(),
            challenge_mode: pow::MODE.to_string(),
            challenge_chars: spec.chars.clone(),
            challenge_mask: spec.mask(),
            challenge_difficulty: spec.difficulty,
            output: ChallengeOutput::default(),
        }
    }

    /// Validates every field and returns the challenge to solve.
    pub fn spec(&self) -> Result<ChallengeSpec> {
        let difficulty = self.challenge_difficulty;
        if !(pow::MIN_DIFFICULTY..=pow::MAX_DIFFICULTY).contains(&difficulty) {
            return Err(ComputeError::invalid(
                "challenge_difficulty",
                format!("{difficulty} is outside {}..={}", pow::MIN_DIFFICULTY, pow::MAX_DIFFICULTY),
            ));
        }
        if self.challenge_mode != pow::MODE {
            return Err(ComputeError::invalid("challenge_mode", format!("only mode 610 is supported, not {:?}", short(&self.challenge_mode))));
        }
        let hash_hex = self
            .challenge_hash
            .strip_prefix(pow::HASH_PREFIX)
            .ok_or_else(|| ComputeError::invalid("challenge_hash", "expected $BLAKE2$ followed by 128 hex digits"))?;
        if hash_hex.len() != 128 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ComputeError::invalid("challenge_hash", "expected $BLAKE2$ followed by 128 hex digits"));
        }
        let salt = &self.challenge_salt;
        if salt.len() != pow::SALT_HEX_LEN || !salt.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ComputeError::invalid("challenge_salt", "expected 16 hex digits"));
        }
        let chars = &self.challenge_chars;
        if chars.chars().count() != pow::CHALLENGE_CHARS || !chars.chars().all(|c| pow::CHARSET.contains(c)) {
            return Err(ComputeError::invalid(
                "challenge_chars",
                format!("expected 10 characters of {:?}", pow::CHARSET),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if !chars.chars().all(|c| seen.insert(c)) {
            return Err(ComputeError::invalid("challenge_chars", "characters must be distinct"));
        }
        if self.challenge_mask != "?1".repeat(usize::from(difficulty)) {
            return Err(ComputeError::invalid("challenge_mask", format!("expected ?1 repeated {difficulty} times")));
        }
        Ok(ChallengeSpec {
            hash_hex: hash_hex.to_ascii_lowercase(),
            salt: salt.clone(),
            chars: chars.clone(),
            difficulty,
        })
    }
}

/// `Allocate.device_requirement`: `{"cpu":{"count"}, "gpu":{"count","capacity","type"},
/// "hard_disk":{"capacity"}, "ram":{"capacity"}, "testing"}` (bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceRequirement {
    /// CPU cores.
    pub cpu: CpuRequirement,
    /// GPUs.
    pub gpu: GpuRequirement,
    /// Disk in bytes.
    pub hard_disk: CapacityRequirement,
    /// RAM in bytes.
    pub ram: CapacityRequirement,
    /// The original's flag for validator test allocations (recorded, not acted on).
    pub testing: bool,
}

/// CPU part of a requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuRequirement {
    /// Cores.
    pub count: u32,
}

/// GPU part of a requirement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuRequirement {
    /// GPUs.
    pub count: u32,
    /// Total memory in MiB (0: any).
    pub capacity: u64,
    /// Substring of the GPU name ("" any).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A capacity in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityRequirement {
    /// Bytes.
    pub capacity: u64,
}

/// `Allocate.docker_requirement` (names kept; see each field for what it means here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerRequirement {
    /// Ignored: the sandbox is the host's system tree, read-only (recorded for reference).
    pub base_image: String,
    /// The renter's OpenSSH public key: the only key that can log in.
    pub ssh_key: String,
    /// Ignored: the miner's `--ssh.port` decides (the answer says which).
    pub ssh_port: u16,
    /// Where the allocation's disk appears inside the sandbox besides `/root`.
    pub volume_path: String,
    /// Must be empty: the sandbox builds no images (the original ran this text as `RUN`).
    pub dockerfile: String,
}

impl Default for DockerRequirement {
    fn default() -> Self {
        DockerRequirement {
            base_image: "ubuntu".into(),
            ssh_key: String::new(),
            ssh_port: 4444,
            volume_path: "/tmp".into(),
            dockerfile: String::new(),
        }
    }
}

/// `Allocate.docker_action`: what `docker_change` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerAction {
    /// `exchange_key`, `restart`, `pause` or `unpause`.
    pub action: String,
    /// The new key for `exchange_key`.
    pub ssh_key: String,
    /// Recorded only (the original's `user`).
    pub key_type: String,
}

/// `Allocate`: reserve (`timeline > 0`, `checking = false`), check availability (`checking`,
/// `timeline > 0`), check the caller's allocation (`checking`, `timeline = 0`), change it
/// (`docker_change`) or release it (`timeline = 0`, `checking = false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocate {
    /// Days (the original's unit). 0 or less releases.
    #[serde(default)]
    pub timeline: i64,
    /// Extension: the reservation length in seconds; when set it wins over `timeline`.
    #[serde(default)]
    pub timeline_seconds: Option<u64>,
    /// What the renter needs.
    #[serde(default)]
    pub device_requirement: DeviceRequirement,
    /// Only check, change nothing.
    #[serde(default = "default_true")]
    pub checking: bool,
    /// The miner's answer.
    #[serde(default)]
    pub output: AllocateOutput,
    /// The renter's ephemeral X25519 public key (64 hex digits) the access is sealed to.
    #[serde(default)]
    pub public_key: String,
    /// Container settings (see [`DockerRequirement`]).
    #[serde(default)]
    pub docker_requirement: DockerRequirement,
    /// Apply `docker_action` to the caller's allocation.
    #[serde(default)]
    pub docker_change: bool,
    /// What to change.
    #[serde(default)]
    pub docker_action: DockerAction,
}

fn default_true() -> bool {
    true
}

impl Default for Allocate {
    fn default() -> Self {
        Allocate {
            timeline: 0,
            timeline_seconds: None,
            device_requirement: DeviceRequirement::default(),
            checking: true,
            output: AllocateOutput::default(),
            public_key: String::new(),
            docker_requirement: DockerRequirement::default(),
            docker_change: false,
            docker_action: DockerAction::default(),
        }
    }
}

/// `Allocate.output`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateOutput {
    /// Whether the request succeeded (for checks: whether the answer is yes).
    #[serde(default)]
    pub status: bool,
    /// Base64 of the sealed [`crate::seal::AccessInfo`] (reservations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// The SSH port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Why `status` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The caller's allocation (checks and changes): state, limits, expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<serde_json::Value>,
}

/// What an [`Allocate`] request asks for, after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum AllocateRequest {
    /// Can the miner take this requirement now?
    CheckAvailability(Requirement),
    /// What is the state of the caller's allocation?
    CheckMine,
    /// Reserve.
    Reserve {
        /// Resources.
        requirement: Requirement,
        /// Length in seconds.
        timeline_seconds: u64,
        /// The renter's SSH key (canonical OpenSSH line, no comment).
        ssh_key: String,
        /// Where the disk is mounted besides `/root`.
        volume_path: String,
        /// The X25519 key the access is sealed to.
        seal_to: [u8; 32],
    },
    /// Change the caller's allocation.
    Change(Change),
    /// Release the caller's allocation.
    Release,
}

/// Resources of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Cores (at least 1).
    pub cpu: u32,
    /// GPUs.
    pub gpu: u32,
    /// GPU memory in MiB (0: any).
    pub gpu_capacity_mib: u64,
    /// GPU name substring.
    pub gpu_kind: String,
    /// RAM in bytes.
    pub ram_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
}

/// A `docker_change`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replace the authorised SSH key.
    ExchangeKey(String),
    /// Kill everything in the sandbox and start it again (the disk stays).
    Restart,
    /// Freeze every process of the sandbox.
    Pause,
    /// Thaw it.
    Unpause,
}

/// Smallest RAM and disk of a reservation.
pub const MIN_RESOURCE_BYTES: u64 = 64 * 1024 * 1024;

impl Allocate {
    /// Validates the request and says what it asks for.
    pub fn validate(&self) -> Result<AllocateRequest> {
        if self.docker_change {
            let change = match self.docker_action.action.as_str() {
                "exchange_key" => Change::ExchangeKey(validate_ssh_key(&self.docker_action.ssh_key, "docker_action.ssh_key")?),
                "restart" => Change::Restart,
                "pause" => Change::Pause,
                "unpause" => Change::Unpause,
                other => {
                    return Err(ComputeError::invalid(
                        "docker_action.action",
                        format!("{:?} is not one of exchange_key, restart, pause, unpause", short(other)),
                    ));
                }
            };
            check_len("docker_action.key_type", &self.docker_action.key_type, 32)?;
            return Ok(AllocateRequest::Change(change));
        }
        let seconds = self.timeline_seconds()?;
        if seconds == 0 {
            return Ok(if self.checking { AllocateRequest::CheckMine } else { AllocateRequest::Release });
        }
        let requirement = self.requirement()?;
        if self.checking {
            return Ok(AllocateRequest::CheckAvailability(requirement));
        }
        let docker = &self.docker_requirement;
        if !docker.dockerfile.trim().is_empty() {
            return Err(ComputeError::invalid(
                "docker_requirement.dockerfile",
                "must be empty: this miner's sandbox builds no images (install what you need after logging in)",
            ));
        }
        check_len("docker_requirement.base_image", &docker.base_image, 128)?;
        let ssh_key = validate_ssh_key(&docker.ssh_key, "docker_requirement.ssh_key")?;
        let volume_path = validate_volume_path(&docker.volume_path)?;
        let seal_to = parse_x25519(&self.public_key)?;
        Ok(AllocateRequest::Reserve { requirement, timeline_seconds: seconds, ssh_key, volume_path, seal_to })
    }

    fn timeline_seconds(&self) -> Result<u64> {
        let seconds = match self.timeline_seconds {
            Some(seconds) => seconds,
            None if self.timeline <= 0 => 0,
            None => (self.timeline as u64).saturating_mul(86_400),
        };
        if seconds > MAX_TIMELINE_SECONDS {
            return Err(ComputeError::invalid("timeline", "at most 60 days"));
        }
        Ok(seconds)
    }

    fn requirement(&self) -> Result<Requirement> {
        let d = &self.device_requirement;
        if d.ram.capacity < MIN_RESOURCE_BYTES {
            return Err(ComputeError::invalid("device_requirement.ram.capacity", "at least 64 MiB (in bytes)"));
        }
        if d.hard_disk.capacity < MIN_RESOURCE_BYTES {
            return Err(ComputeError::invalid("device_requirement.hard_disk.capacity", "at least 64 MiB (in bytes)"));
        }
        if d.cpu.count > 4096 || d.gpu.count > 64 {
            return Err(ComputeError::invalid("device_requirement", "cpu.count at most 4096, gpu.count at most 64"));
        }
        check_len("device_requirement.gpu.type", &d.gpu.kind, 64)?;
        if !d.gpu.kind.chars().all(|c| c.is_ascii_alphanumeric() || " -_.".contains(c)) {
            return Err(ComputeError::invalid("device_requirement.gpu.type", "letters, digits, space, - _ . only"));
        }
        Ok(Requirement {
            cpu: d.cpu.count.max(1),
            gpu: d.gpu.count,
            gpu_capacity_mib: d.gpu.capacity,
            gpu_kind: d.gpu.kind.clone(),
            ram_bytes: d.ram.capacity,
            disk_bytes: d.hard_disk.capacity,
        })
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(ComputeError::invalid(field, format!("at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ComputeError::invalid(field, "control characters are not allowed"));
    }
    Ok(())
}

fn short(text: &str) -> String {
    text.chars().take(32).collect()
}

/// Parses 64 hex digits (optionally `0x`) of an X25519 public key.
pub fn parse_x25519(text: &str) -> Result<[u8; 32]> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out)
        .map_err(|_| ComputeError::invalid("public_key", "expected the renter's X25519 public key as 64 hex digits"))?;
    if out == [0u8; 32] {
        return Err(ComputeError::invalid("public_key", "the all-zero key is not a public key"));
    }
    Ok(out)
}

/// Validates an OpenSSH public key line and returns it canonically (`type base64`, no
/// comment, no options): ed25519, ECDSA P-256/384/521 or RSA of at least 2048 bits.
pub fn validate_ssh_key(line: &str, field: &'static str) -> Result<String> {
    if line.len() > MAX_SSH_KEY_LEN {
        return Err(ComputeError::invalid(field, format!("longer than {MAX_SSH_KEY_LEN} bytes")));
    }
    let line = line.trim();
    if line.is_empty() {
        return Err(ComputeError::invalid(field, "an OpenSSH public key (ssh-ed25519 AAAA…) is required"));
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err(ComputeError::invalid(field, "one key on one line"));
    }
    let mut key = ssh_key::PublicKey::from_openssh(line)
        .map_err(|_| ComputeError::invalid(field, "not an OpenSSH public key line (`ssh-ed25519 AAAA… comment`)"))?;
    match key.key_data() {
        ssh_key::public::KeyData::Ed25519(_) | ssh_key::public::KeyData::Ecdsa(_) => {}
        ssh_key::public::KeyData::Rsa(rsa) => {
            let bits = rsa.n.as_positive_bytes().map(|b| b.len() * 8).unwrap_or(0);
            if bits < 2048 {
                return Err(ComputeError::invalid(field, format!("RSA keys need at least 2048 bits, this one has {bits}")));
            }
        }
        _ => return Err(ComputeError::invalid(field, "use an ed25519, ECDSA or RSA key")),
    }
    key.set_comment("");
    key.to_openssh().map(|s| s.trim().to_string()).map_err(|_| ComputeError::invalid(field, "cannot re-encode the key"))
}

/// Directories a volume may not shadow.
const SYSTEM_DIRS: &[&str] =
    &["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr", "/var", "/root"];

/// Validates `volume_path`: absolute, plain characters, no `..`, not a system directory.
pub fn validate_volume_path(path: &str) -> Result<String> {
    let field = "docker_requirement.volume_path";
    let path = if path.is_empty() { "/tmp" } else { path };
    if path.len() > 128 || !path.starts_with('/') {
        return Err(ComputeError::invalid(field, "an absolute path of at most 128 bytes, e.g. /tmp or /workspace"));
    }
    if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b)) {
        return Err(ComputeError::invalid(field, "letters, digits and / _ . - only"));
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    if trimmed.split('/').any(|part| part == ".." || part == ".") || trimmed.contains("//") {
        return Err(ComputeError::invalid(field, "no `.`, `..` or empty components"));
    }
    let under_system = SYSTEM_DIRS.iter().any(|dir| trimmed == *dir || (dir.len() > 1 && trimmed.starts_with(&format!("{dir}/"))));
    if under_system && trimmed != "/tmp" {
        return Err(ComputeError::invalid(field, "may not be a system directory (/usr, /etc, /proc, …)"));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests;
