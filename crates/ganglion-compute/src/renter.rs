//! The renter's side (`ganglion compute allocate | deallocate | status | list`): find a
//! fitting miner from the specs stored in the records store, reserve it with a signed
//! `Allocate`, open the sealed SSH access, and keep the reservation in the store
//! (`AllocationRecord`, which the validator's scoring and the hub read).
//!
//! Miners admit allocation requests under the same access policy as challenges (by default
//! a registered hotkey with a validator permit), so renters use a validator's wallet, as in
//! the original (`register.py` ran with the validator's keys).

use std::time::Duration;

use ganglion_chain::{Chain, Metagraph};
use ganglion_records::{AllocationRecord, Records};
use serde::{Deserialize, Serialize};

use ganglion_core::clock::now_ms_i64 as now_ms;
use ganglion_neuron::peer::{PeerClient, axon_url};
use crate::error::{ComputeError, Result};
use crate::protocol::{
    Allocate, CapacityRequirement, CpuRequirement, DeviceRequirement, DockerRequirement, GpuRequirement, MAX_TIMELINE_SECONDS,
    Requirement, route,
};
use crate::seal::RenterKey;

/// How long a reservation call may take (building the sandbox takes seconds).
const RESERVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long checks and releases may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Subnet.
    pub netuid: u16,
    /// Resources.
    pub requirement: Requirement,
    /// Length.
    pub timeline_seconds: u64,
    /// The OpenSSH public key that may log in.
    pub ssh_public_key: String,
    /// Extra mount point of the disk.
    pub volume_path: String,
    /// Only this miner (hotkey SS58 or uid).
    pub miner: Option<String>,
}

/// A granted reservation (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    /// Allocation id.
    pub allocation_id: String,
    /// Subnet.
    pub netuid: u16,
    /// Miner uid.
    pub miner_uid: u16,
    /// Miner hotkey.
    pub miner_hotkey: String,
    /// SSH host.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// SSH user.
    pub user: String,
    /// The server's host key (pin it in `known_hosts`).
    pub host_key: String,
    /// Its fingerprint.
    pub host_key_fingerprint: String,
    /// Unix ms.
    pub expires_at_ms: u64,
}

/// A miner that could take an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// Uid.
    pub uid: u16,
    /// Hotkey.
    pub hotkey: String,
    /// CPUs (logical).
    pub cpus: u64,
    /// Available RAM, bytes.
    pub ram_available: u64,
    /// Free disk, bytes.
    pub disk_free: u64,
    /// GPUs.
    pub gpus: u64,
    /// GPU names.
    pub gpu_names: Vec<String>,
    /// Sandbox usable.
    pub has_sandbox: bool,
    /// Reserved now (per the records store).
    pub allocated: bool,
    /// When the specs were received (Unix ms).
    pub specs_updated_at_ms: i64,
}

impl Listing {
    /// Whether this machine can take `requirement` (by its reported specs).
    pub fn fits(&self, requirement: &Requirement) -> bool {
        let kind = requirement.gpu_kind.to_lowercase();
        let matching_gpus = self.gpu_names.iter().filter(|n| kind.is_empty() || n.to_lowercase().contains(&kind)).count() as u64;
        self.has_sandbox
            && !self.allocated
            && u64::from(requirement.cpu) <= self.cpus
            && requirement.ram_bytes <= self.ram_available
            && requirement.disk_bytes <= self.disk_free
            && u64::from(requirement.gpu) <= matching_gpus
    }
}

fn records_error(err: ganglion_records::RecordsError) -> ComputeError {
    ComputeError::Records(err.to_string())
}


/// Machines of a subnet with stored specs, joined with the metagraph and active allocations.
pub async fn list(records: &Records, metagraph: &Metagraph) -> Result<Vec<Listing>> {
    let netuid = metagraph.netuid();
    let specs = records.specs(netuid).await.map_err(records_error)?;
    let now = now_ms();
    let allocated: std::collections::HashSet<String> = records
        .allocations(netuid)
        .await
        .map_err(records_error)?
        .into_iter()
        .filter(|a| a.status == "active" && a.expires_at_ms > now)
        .map(|a| a.miner_hotkey)
        .collect();
    let number = |v: &serde_json::Value, path: &str| v.pointer(path).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let mut out: Vec<Listing> = specs
        .into_iter()
        .filter_map(|row| {
            let hotkey = row.miner_hotkey.parse().ok()?;
            let neuron = metagraph.by_hotkey(&hotkey)?;
            let s = &row.specs;
            Some(Listing {
                uid: neuron.uid,
                hotkey: row.miner_hotkey.clone(),
                cpus: number(s, "/cpu/logical").max(number(s, "/cpu/count")),
                ram_available: number(s, "/ram/available"),
                disk_free: number(s, "/hard_disk/free"),
                gpus: number(s, "/gpu/count"),
                gpu_names: s
                    .pointer("/gpu/details")
                    .and_then(serde_json::Value::as_array)
                    .map(|d| d.iter().filter_map(|g| g.get("name").and_then(serde_json::Value::as_str).map(str::to_string)).collect())
                    .unwrap_or_default(),
                has_sandbox: s.get("has_docker").and_then(serde_json::Value::as_bool).unwrap_or(false),
                allocated: allocated.contains(&row.miner_hotkey),
                specs_updated_at_ms: row.updated_at_ms,
            })
        })
        .collect();
    out.sort_by(|a, b| b.cpus.cmp(&a.cpus).then(b.ram_available.cmp(&a.ram_available)).then(a.uid.cmp(&b.uid)));
    Ok(out)
}

fn device_requirement(requirement: &Requirement) -> DeviceRequirement {
    DeviceRequirement {
        cpu: CpuRequirement { count: requirement.cpu },
        gpu: GpuRequirement { count: requirement.gpu, capacity: requirement.gpu_capacity_mib, kind: requirement.gpu_kind.clone() },
        hard_disk: CapacityRequirement { capacity: requirement.disk_bytes },
        ram: CapacityRequirement { capacity: requirement.ram_bytes },
        testing: false,
    }
}

/// Finds a fitting miner and reserves it; stores the reservation in `records`.
pub async fn allocate(client: &PeerClient, chain: &dyn Chain, records: &Records, order: &Order) -> Result<Granted> {
    if order.timeline_seconds == 0 || order.timeline_seconds > MAX_TIMELINE_SECONDS {
        return Err(ComputeError::invalid("timeline", "between 1 second and 60 days"));
    }
    crate::protocol::validate_ssh_key(&order.ssh_public_key, "ssh key")?;
    let metagraph = Metagraph::fetch(chain, order.netuid).await?;
    let listings = list(records, &metagraph).await?;
    let chosen: Vec<Listing> = match &order.miner {
        Some(wanted) => listings.into_iter().filter(|l| &l.hotkey == wanted || l.uid.to_string() == *wanted).collect(),
        None => listings.into_iter().filter(|l| l.fits(&order.requirement)).collect(),
    };
    if chosen.is_empty() {
        let reason = match &order.miner {
            Some(wanted) => format!("{wanted} is not a miner with stored specs (see `ganglion compute list`)"),
            None => "none with stored specs has enough free cpu, ram, disk and gpu for it (see `ganglion compute list`; specs arrive with the validator's rounds)".into(),
        };
        return Err(ComputeError::NoFit { netuid: order.netuid, reason });
    }
    let mut refusals = Vec::new();
    for listing in chosen.iter().take(5) {
        let Some(neuron) = listing.hotkey.parse().ok().and_then(|hk| metagraph.by_hotkey(&hk)).cloned() else { continue };
        let Some(axon) = neuron.axon.clone() else {
            refusals.push(format!("uid {}: no axon", listing.uid));
            continue;
        };
        let base = axon_url(&axon);
        let check = Allocate {
            timeline_seconds: Some(order.timeline_seconds),
            checking: true,
            device_requirement: device_requirement(&order.requirement),
            ..Allocate::default()
        };
        match client.call::<_, Allocate>(&base, &neuron.hotkey, route::ALLOCATE, &check, CHECK_TIMEOUT).await {
            Ok(reply) if reply.body.output.status => {}
            Ok(reply) => {
                refusals.push(format!("uid {}: {}", listing.uid, reply.body.output.error.unwrap_or_else(|| "unavailable".into())));
                continue;
            }
            Err(err) => {
                refusals.push(format!("uid {}: {err}", listing.uid));
                continue;
            }
        }
        let key = RenterKey::generate();
        let reserve = Allocate {
            timeline_seconds: Some(order.timeline_seconds),
            timeline: (order.timeline_seconds.div_ceil(86_400)) as i64,
            checking: false,
            device_requirement: device_requirement(&order.requirement),
            public_key: key.public_hex(),
            docker_requirement: DockerRequirement {
                ssh_key: order.ssh_public_key.clone(),
                volume_path: order.volume_path.clone(),
                ..DockerRequirement::default()
            },
            ..Allocate::default()
        };
        let reply = match client.call::<_, Allocate>(&base, &neuron.hotkey, route::ALLOCATE, &reserve, RESERVE_TIMEOUT).await {
            Ok(reply) => reply.body.output,
            Err(err) => {
                refusals.push(format!("uid {}: {err}", listing.uid));
                continue;
            }
        };
        if !reply.status {
            refusals.push(format!("uid {}: {}", listing.uid, reply.error.unwrap_or_else(|| "refused".into())));
            continue;
        }
        let info = key.open(reply.info.as_deref().unwrap_or_default())?;
        let granted = Granted {
            allocation_id: info.allocation_id.clone(),
            netuid: order.netuid,
            miner_uid: neuron.uid,
            miner_hotkey: listing.hotkey.clone(),
            host: info.host.clone().unwrap_or_else(|| axon.ip.to_string()),
            port: info.port,
            user: info.username.clone(),
            host_key: info.host_key.clone(),
            host_key_fingerprint: info.host_key_fingerprint.clone(),
            expires_at_ms: info.expires_at_ms,
        };
        let record = AllocationRecord {
            id: granted.allocation_id.clone(),
            netuid: order.netuid,
            miner_uid: neuron.uid,
            miner_hotkey: granted.miner_hotkey.clone(),
            renter: client.hotkey().to_ss58(),
            created_at_ms: now_ms(),
            expires_at_ms: granted.expires_at_ms as i64,
            ended_at_ms: None,
            status: "active".into(),
            resources: serde_json::to_value(&order.requirement)?,
            // The pinned host key is public; the validator proves the allocation alive with it
            // (an SSH key exchange signed by this key, see `liveness`).
            access: serde_json::json!({
                "host": granted.host, "port": granted.port, "user": granted.user,
                "host_key": granted.host_key,
                "host_key_fingerprint": granted.host_key_fingerprint,
            }),
        };
        records.upsert_allocation(&record).await.map_err(records_error)?;
        return Ok(granted);
    }
    Err(ComputeError::NoFit { netuid: order.netuid, reason: format!("every fitting miner refused: {}", refusals.join("; ")) })
}

/// The caller's active reservations in `netuid`, newest first.
pub async fn mine(records: &Records, client: &PeerClient, netuid: u16) -> Result<Vec<AllocationRecord>> {
    let me = client.hotkey().to_ss58();
    Ok(records.allocations(netuid).await.map_err(records_error)?.into_iter().filter(|a| a.renter == me && a.status == "active").collect())
}

/// Releases a reservation (by allocation id, miner hotkey or uid; None: the only active one).
pub async fn deallocate(client: &PeerClient, chain: &dyn Chain, records: &Records, netuid: u16, which: Option<&str>) -> Result<AllocationRecord> {
    let active = mine(records, client, netuid).await?;
    let record = match which {
        Some(key) => active.into_iter().find(|a| a.id == key || a.miner_hotkey == key || a.miner_uid.to_string() == key),
        None if active.len() == 1 => active.into_iter().next(),
        None if active.is_empty() => None,
        None => return Err(ComputeError::invalid("allocation", "several are active; say which (id, miner hotkey or uid)")),
    }
    .ok_or_else(|| ComputeError::UnknownAllocation(which.unwrap_or("of this hotkey").to_string()))?;
    let metagraph = Metagraph::fetch(chain, netuid).await?;
    let hotkey = record.miner_hotkey.parse().map_err(|_| ComputeError::invalid("miner_hotkey", "stored hotkey is not SS58"))?;
    let neuron = metagraph.by_hotkey(&hotkey).cloned();
    if let Some(axon) = neuron.as_ref().and_then(|n| n.axon.clone()) {
        let release = Allocate { timeline: 0, checking: false, ..Allocate::default() };
        let output = client.call::<_, Allocate>(&axon_url(&axon), &hotkey, route::ALLOCATE, &release, CHECK_TIMEOUT).await?.body.output;
        let gone = output.error.as_deref().is_some_and(|e| e.contains("no active allocation"));
        if !output.status && !gone {
            return Err(ComputeError::Peer { peer: record.miner_hotkey.clone(), reason: output.error.unwrap_or_else(|| "refused".into()) });
        }
    }
    let ended = AllocationRecord { status: "ended".into(), ended_at_ms: Some(now_ms()), ..record };
    records.upsert_allocation(&ended).await.map_err(records_error)?;
    Ok(ended)
}

/// The live state of each of the caller's reservations (the miner's own answer, including
/// which mechanism enforces each limit), or why it could not be asked.
pub async fn status(client: &PeerClient, chain: &dyn Chain, records: &Records, netuid: u16) -> Result<Vec<(AllocationRecord, std::result::Result<serde_json::Value, String>)>> {
    let active = mine(records, client, netuid).await?;
    let metagraph = Metagraph::fetch(chain, netuid).await?;
    let mut out = Vec::new();
    for record in active {
        let live = async {
            let hotkey = record.miner_hotkey.parse().map_err(|_| "stored hotkey is not SS58".to_string())?;
            let axon = metagraph.by_hotkey(&hotkey).and_then(|n| n.axon.clone()).ok_or("the miner serves no axon")?;
            let check = Allocate { timeline: 0, checking: true, ..Allocate::default() };
            let output = client
                .call::<_, Allocate>(&axon_url(&axon), &hotkey, route::ALLOCATE, &check, CHECK_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?
                .body
                .output;
            match (output.allocation, output.error) {
                (Some(allocation), _) => Ok(allocation),
                (None, Some(error)) => Err(error),
                (None, None) => Err("the miner sent no status".to_string()),
            }
        }
        .await;
        let mut record = record;
        if let Err(error) = &live
            && error.contains("no active allocation") {
                // The miner no longer has it (expired or restarted without it): record that,
                // and report it with its new status this once.
                let status = if record.expires_at_ms <= now_ms() { "expired" } else { "ended" };
                record = AllocationRecord { status: status.into(), ended_at_ms: Some(now_ms().min(record.expires_at_ms)), ..record };
                let _ = records.upsert_allocation(&record).await;
            }
        out.push((record, live));
    }
    Ok(out)
}

/// Generates an ed25519 SSH key pair for a renter: `<dir>/<name>` (private, 0600) and
/// `<dir>/<name>.pub`. Returns the private key's path and the public line.
pub fn generate_ssh_key(dir: &std::path::Path, name: &str) -> Result<(std::path::PathBuf, String)> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
        return Err(ComputeError::invalid("key name", "letters, digits and _ - . only"));
    }
    let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|err| ComputeError::Config(format!("generating an SSH key: {err}")))?;
    let private = key.to_openssh(ssh_key::LineEnding::LF).map_err(|err| ComputeError::Config(format!("encoding the SSH key: {err}")))?;
    let mut public = key.public_key().clone();
    public.set_comment(format!("ganglion-compute-{name}"));
    let public_line = public.to_openssh().map_err(|err| ComputeError::Config(format!("encoding the SSH key: {err}")))?;
    let path = dir.join(name);
    ganglion_core::fsutil::write_atomic(&path, private.as_bytes(), 0o600)?;
    ganglion_core::fsutil::write_atomic(&dir.join(format!("{name}.pub")), format!("{public_line}\n").as_bytes(), 0o644)?;
    Ok((path, public_line))
}

/// Writes a `known_hosts` file that pins the allocation's host key.
pub fn write_known_hosts(path: &std::path::Path, host: &str, port: u16, host_key: &str) -> Result<()> {
    let entry = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
    ganglion_core::fsutil::write_atomic(path, format!("{entry} {host_key}\n").as_bytes(), 0o644)?;
    Ok(())
}

/// The `ssh` command line that logs into a granted allocation.
pub fn ssh_command(granted: &Granted, private_key: Option<&std::path::Path>, known_hosts: &std::path::Path) -> String {
    let key = private_key.map(|p| format!("-i {} ", p.display())).unwrap_or_default();
    format!(
        "ssh {key}-p {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes {}@{}",
        granted.port,
        known_hosts.display(),
        granted.user,
        granted.host
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_validate_and_commands_pin_the_host() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (path, public) = generate_ssh_key(dir.path(), "abc").unwrap_or_else(|e| panic!("{e}"));
        assert!(crate::protocol::validate_ssh_key(&public, "k").is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o600);
        assert!(generate_ssh_key(dir.path(), "../x").is_err());
        let granted = Granted {
            allocation_id: "a".into(),
            netuid: 1,
            miner_uid: 2,
            miner_hotkey: "h".into(),
            host: "10.0.0.5".into(),
            port: 4444,
            user: "root".into(),
            host_key: "ssh-ed25519 AAAA".into(),
            host_key_fingerprint: "SHA256:x".into(),
            expires_at_ms: 0,
        };
        let known = dir.path().join("known_hosts");
        write_known_hosts(&known, &granted.host, granted.port, &granted.host_key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read_to_string(&known).unwrap_or_default(), "[10.0.0.5]:4444 ssh-ed25519 AAAA\n");
        let command = ssh_command(&granted, Some(&path), &known);
        assert!(command.starts_with("ssh -i ") && command.ends_with("-o StrictHostKeyChecking=yes root@10.0.0.5"));
        let requirement = Requirement { cpu: 2, gpu: 0, gpu_capacity_mib: 0, gpu_kind: String::new(), ram_bytes: 1 << 30, disk_bytes: 1 << 30 };
        let listing = Listing {
            uid: 1,
            hotkey: "h".into(),
            cpus: 2,
            ram_available: 2 << 30,
            disk_free: 2 << 30,
            gpus: 0,
            gpu_names: vec![],
            has_sandbox: true,
            allocated: false,
            specs_updated_at_ms: 0,
        };
        assert!(listing.fits(&requirement));
        assert!(!Listing { allocated: true, ..listing.clone() }.fits(&requirement));
        assert!(!Listing { has_sandbox: false, ..listing.clone() }.fits(&requirement));
        assert!(!listing.fits(&Requirement { cpu: 3, ..requirement.clone() }));
        assert!(!listing.fits(&Requirement { gpu: 1, ..requirement }));
    }
}
