//! The miner's side of allocations: admission, the sandbox, expiry, persistence.
//!
//! One allocation at a time (the original reserves the whole machine). Fixes over the
//! original (spec/compute.md §5, §8):
//! - a reservation is bound to the Epistula-verified hotkey that made it: only that hotkey
//!   can check, change (`docker_change`, which the original accepted from anyone) or
//!   release it;
//! - a new reservation never kills the running one (the original did, unconditionally);
//!   it is refused with the current expiry;
//! - the requested CPU, RAM and disk are checked against the machine and enforced;
//! - expiry is a timer in the miner, persisted in the miner's `allocations-<netuid>-<hotkey>.json` (atomic writes), so a
//!   restart still expires it on time; the original's `at` job wiped the host's `at` queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ganglion_core::clock::now_ms;
use ganglion_core::keys::PublicKey;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::{ComputeError, Result};
use crate::protocol::{AllocateOutput, AllocateRequest, Change, Requirement};
use crate::sandbox::{SandboxSpec, SandboxState, Sandboxes};
use crate::seal::{self, AccessInfo};
use crate::specs::Specs;

/// One active allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Id (UUID, simple form).
    pub id: String,
    /// The renter's hotkey (SS58).
    pub renter: String,
    /// Unix ms.
    pub created_at_ms: u64,
    /// Unix ms.
    pub expires_at_ms: u64,
    /// What was reserved.
    pub requirement: Requirement,
    /// The running sandbox.
    pub sandbox: SandboxState,
}

impl Allocation {
    /// The status document of `output.allocation` (no secrets).
    pub fn status(&self, now_ms: u64) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "renter": self.renter,
            "created_at_ms": self.created_at_ms,
            "expires_at_ms": self.expires_at_ms,
            "remaining_s": self.expires_at_ms.saturating_sub(now_ms) / 1000,
            "resources": self.requirement,
            "running": self.sandbox.running(),
            "paused": self.sandbox.paused,
            "port": self.sandbox.port,
            "host_key_fingerprint": self.sandbox.host_key_fingerprint,
            "enforcement": self.sandbox.enforcement,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    allocations: Vec<Allocation>,
}

/// What the machine can give, from its specs.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// CPUs the sandbox may use.
    pub cpus: u32,
    /// RAM available now, bytes.
    pub ram_bytes: u64,
    /// Free disk where the sandboxes live, bytes.
    pub disk_bytes: u64,
    /// GPUs (name, MiB).
    pub gpus: Vec<(String, u64)>,
}

impl Machine {
    /// From collected specs and the sandbox directory's free space.
    pub fn from_specs(specs: &Specs, sandbox_free_bytes: u64) -> Machine {
        Machine {
            cpus: crate::sandbox::cgroup::allowed_cpus().len() as u32,
            ram_bytes: specs.ram.available,
            disk_bytes: sandbox_free_bytes,
            gpus: specs.gpu.details.iter().map(|g| (g.name.clone(), g.capacity)).collect(),
        }
    }

    /// Checks a requirement; returns the GPU indices to expose.
    pub fn fit(&self, requirement: &Requirement) -> Result<Vec<u32>> {
        let too_large = |resource, requested: String, available: String| ComputeError::TooLarge { resource, requested, available };
        if requirement.cpu > self.cpus {
            return Err(too_large("cpu", format!("{} cores", requirement.cpu), format!("{} usable CPUs", self.cpus)));
        }
        if requirement.ram_bytes > self.ram_bytes {
            return Err(too_large("ram", bytes(requirement.ram_bytes), format!("{} available", bytes(self.ram_bytes))));
        }
        if requirement.disk_bytes > self.disk_bytes {
            return Err(too_large("disk", bytes(requirement.disk_bytes), format!("{} free", bytes(self.disk_bytes))));
        }
        if requirement.gpu == 0 {
            return Ok(Vec::new());
        }
        let kind = requirement.gpu_kind.to_lowercase();
        let matching: Vec<u32> = self
            .gpus
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| kind.is_empty() || name.to_lowercase().contains(&kind))
            .map(|(i, _)| i as u32)
            .collect();
        let chosen: Vec<u32> = matching.into_iter().take(requirement.gpu as usize).collect();
        let capacity: u64 = chosen.iter().map(|&i| self.gpus[i as usize].1).sum();
        if chosen.len() < requirement.gpu as usize || capacity < requirement.gpu_capacity_mib {
            return Err(too_large(
                "gpu",
                format!("{} × {:?} with {} MiB", requirement.gpu, requirement.gpu_kind, requirement.gpu_capacity_mib),
                format!("{} GPUs", self.gpus.len()),
            ));
        }
        Ok(chosen)
    }
}

/// Human-readable bytes (GiB / MiB).
pub fn bytes(n: u64) -> String {
    if n >= 1 << 30 { format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)) } else { format!("{:.0} MiB", n as f64 / f64::from(1u32 << 20)) }
}

/// The allocation manager.
pub struct Allocations {
    sandboxes: Arc<Sandboxes>,
    state_path: PathBuf,
    machine: std::sync::RwLock<Machine>,
    current: Mutex<Vec<Allocation>>,
    version: String,
}

impl std::fmt::Debug for Allocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocations").field("state_path", &self.state_path).finish_non_exhaustive()
    }
}


impl Allocations {
    /// Loads the persisted allocations: expired ones are torn down, live ones re-adopted (or
    /// restarted when their processes are gone). `state_path` is the miner's `allocations-<netuid>-<hotkey>.json`.
    pub async fn open(sandboxes: Arc<Sandboxes>, state_path: PathBuf, machine: Machine) -> Result<Arc<Allocations>> {
        let loaded: StateFile = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                ComputeError::Config(format!("{} is not a valid allocation state file ({err}); move it away to start fresh", state_path.display()))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(err) => return Err(ComputeError::io("reading", &state_path, err)),
        };
        let manager = Arc::new(Allocations {
            sandboxes,
            state_path,
            machine: std::sync::RwLock::new(machine),
            current: Mutex::new(Vec::new()),
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        let mut kept = Vec::new();
        for mut allocation in loaded.allocations {
            let sandboxes = Arc::clone(&manager.sandboxes);
            if allocation.expires_at_ms <= now_ms() {
                tracing::info!(target: "compute::allocation", id = %allocation.id, "expired while the miner was down; tearing down");
                let state = allocation.sandbox.clone();
                let _ = tokio::task::spawn_blocking(move || sandboxes.destroy(&state)).await;
                continue;
            }
            let outcome = tokio::task::spawn_blocking(move || {
                let result = sandboxes.ensure_running(&mut allocation.sandbox);
                (allocation, result)
            })
            .await;
            match outcome {
                Ok((allocation, Ok(()))) => {
                    tracing::info!(target: "compute::allocation", id = %allocation.id, "re-adopted");
                    kept.push(allocation);
                }
                Ok((allocation, Err(err))) => {
                    tracing::error!(target: "compute::allocation", id = %allocation.id, %err, "cannot restore; tearing down");
                    let sandboxes = Arc::clone(&manager.sandboxes);
                    let state = allocation.sandbox.clone();
                    let _ = tokio::task::spawn_blocking(move || sandboxes.destroy(&state)).await;
                }
                Err(err) => tracing::error!(target: "compute::allocation", %err, "restore task failed"),
            }
        }
        *manager.current.lock().await = kept;
        manager.persist_locked(&manager.current.lock().await)?;
        Ok(manager)
    }

    /// Updates what the machine can give (after a specs refresh).
    pub fn set_machine(&self, machine: Machine) {
        match self.machine.write() {
            Ok(mut guard) => *guard = machine,
            Err(poisoned) => *poisoned.into_inner() = machine,
        }
    }

    fn machine(&self) -> Machine {
        match self.machine.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn persist_locked(&self, current: &[Allocation]) -> Result<()> {
        let file = StateFile { version: 1, allocations: current.to_vec() };
        let bytes = serde_json::to_vec_pretty(&file)?;
        ganglion_core::fsutil::write_atomic(&self.state_path, &bytes, 0o600)?;
        Ok(())
    }

    /// The active allocations (for specs and metrics).
    pub async fn active(&self) -> Vec<Allocation> {
        self.current.lock().await.clone()
    }

    /// Serves one validated `Allocate` request from `caller`.
    pub async fn handle(&self, caller: &PublicKey, request: AllocateRequest) -> AllocateOutput {
        let renter = caller.to_ss58();
        let outcome = match request {
            AllocateRequest::CheckAvailability(requirement) => self.check_availability(&requirement).await,
            AllocateRequest::CheckMine => self.check_mine(&renter).await,
            AllocateRequest::Reserve { requirement, timeline_seconds, ssh_key, volume_path, seal_to } => {
                self.reserve(&renter, requirement, timeline_seconds, ssh_key, volume_path, seal_to).await
            }
            AllocateRequest::Change(change) => self.change(&renter, change).await,
            AllocateRequest::Release => self.release(&renter).await,
        };
        match outcome {
            Ok(mut output) => {
                output.port = Some(self.sandboxes.config().ssh.port);
                output
            }
            Err(err) => AllocateOutput {
                status: false,
                error: Some(err.to_string()),
                port: Some(self.sandboxes.config().ssh.port),
                ..AllocateOutput::default()
            },
        }
    }

    async fn check_availability(&self, requirement: &Requirement) -> Result<AllocateOutput> {
        if let Some(current) = self.current.lock().await.first() {
            return Err(ComputeError::Busy { until_ms: current.expires_at_ms });
        }
        if !self.sandboxes.capabilities().usable {
            return Err(ComputeError::Sandbox(self.sandboxes.capabilities().problems.join("; ")));
        }
        self.machine().fit(requirement)?;
        Ok(AllocateOutput { status: true, ..AllocateOutput::default() })
    }

    async fn check_mine(&self, renter: &str) -> Result<AllocateOutput> {
        let current = self.current.lock().await;
        let mine = current.iter().find(|a| a.renter == renter).ok_or_else(|| ComputeError::UnknownAllocation("of this hotkey".into()))?;
        Ok(AllocateOutput { status: mine.sandbox.running(), allocation: Some(mine.status(now_ms())), ..AllocateOutput::default() })
    }

    async fn reserve(
        &self,
        renter: &str,
        requirement: Requirement,
        timeline_seconds: u64,
        ssh_key: String,
        volume_path: String,
        seal_to: [u8; 32],
    ) -> Result<AllocateOutput> {
        // The lock is held while the sandbox is built, so two reservations cannot race.
        let mut current = self.current.lock().await;
        if let Some(existing) = current.first() {
            return Err(ComputeError::Busy { until_ms: existing.expires_at_ms });
        }
        let gpus = self.machine().fit(&requirement)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let spec = SandboxSpec {
            id: id.clone(),
            cpus: requirement.cpu,
            memory_bytes: requirement.ram_bytes,
            disk_bytes: requirement.disk_bytes,
            gpus,
            volume_path,
            ssh_key,
        };
        let sandboxes = Arc::clone(&self.sandboxes);
        let sandbox = tokio::task::spawn_blocking(move || sandboxes.create(&spec))
            .await
            .map_err(|err| ComputeError::Sandbox(format!("the sandbox task failed: {err}")))??;
        let created_at_ms = now_ms();
        let allocation = Allocation {
            id: id.clone(),
            renter: renter.to_string(),
            created_at_ms,
            expires_at_ms: created_at_ms + timeline_seconds * 1000,
            requirement,
            sandbox,
        };
        let info = AccessInfo {
            allocation_id: id,
            username: "root".into(),
            host: self.sandboxes.config().ssh.advertise_host.clone(),
            port: allocation.sandbox.port,
            host_key: allocation.sandbox.host_key.clone(),
            host_key_fingerprint: allocation.sandbox.host_key_fingerprint.clone(),
            expires_at_ms: allocation.expires_at_ms,
            version: self.version.clone(),
        };
        let sealed = seal::seal(&info, &seal_to);
        let status = allocation.status(now_ms());
        current.push(allocation);
        if let Err(err) = self.persist_locked(&current) {
            // Without the state file a restart could not expire it: undo.
            if let Some(allocation) = current.pop() {
                self.teardown(allocation).await;
            }
            return Err(err);
        }
        tracing::info!(target: "compute::allocation", renter, "allocated");
        Ok(AllocateOutput { status: true, info: Some(sealed?), allocation: Some(status), ..AllocateOutput::default() })
    }

    fn take_mine(current: &[Allocation], renter: &str) -> Result<usize> {
        match current.iter().position(|a| a.renter == renter) {
            Some(index) => Ok(index),
            None if current.is_empty() => Err(ComputeError::UnknownAllocation("of this hotkey".into())),
            None => Err(ComputeError::NotRenter),
        }
    }

    async fn change(&self, renter: &str, change: Change) -> Result<AllocateOutput> {
        let mut current = self.current.lock().await;
        let index = Self::take_mine(&current, renter)?;
        let mut sandbox = current[index].sandbox.clone();
        let sandboxes = Arc::clone(&self.sandboxes);
        let sandbox = tokio::task::spawn_blocking(move || -> Result<SandboxState> {
            match change {
                Change::ExchangeKey(key) => sandboxes.set_key(&sandbox, &key)?,
                Change::Restart => sandboxes.restart(&mut sandbox)?,
                Change::Pause => sandboxes.pause(&mut sandbox, true)?,
                Change::Unpause => sandboxes.pause(&mut sandbox, false)?,
            }
            Ok(sandbox)
        })
        .await
        .map_err(|err| ComputeError::Sandbox(format!("the sandbox task failed: {err}")))??;
        current[index].sandbox = sandbox;
        self.persist_locked(&current)?;
        Ok(AllocateOutput { status: true, allocation: Some(current[index].status(now_ms())), ..AllocateOutput::default() })
    }

    async fn release(&self, renter: &str) -> Result<AllocateOutput> {
        // The lock is held through the teardown: a new reservation must not start while the
        // old sshd still holds the port.
        let mut current = self.current.lock().await;
        let index = Self::take_mine(&current, renter)?;
        let allocation = current.remove(index);
        let id = allocation.id.clone();
        self.teardown(allocation).await;
        self.persist_locked(&current)?;
        tracing::info!(target: "compute::allocation", %id, renter, "released by the renter");
        Ok(AllocateOutput { status: true, allocation: Some(serde_json::json!({ "id": id, "state": "ended" })), ..AllocateOutput::default() })
    }

    async fn teardown(&self, allocation: Allocation) {
        let sandboxes = Arc::clone(&self.sandboxes);
        let _ = tokio::task::spawn_blocking(move || sandboxes.destroy(&allocation.sandbox)).await;
    }

    /// Tears down allocations whose time is up; returns their ids.
    pub async fn expire_due(&self) -> Vec<String> {
        let mut current = self.current.lock().await;
        let now = now_ms();
        let (due, keep): (Vec<Allocation>, Vec<Allocation>) = current.drain(..).partition(|a| a.expires_at_ms <= now);
        *current = keep;
        let mut ids = Vec::new();
        for allocation in due {
            tracing::info!(target: "compute::allocation", id = %allocation.id, "expired");
            ids.push(allocation.id.clone());
            self.teardown(allocation).await;
        }
        if !ids.is_empty()
            && let Err(err) = self.persist_locked(&current) {
                tracing::error!(target: "compute::allocation", %err, "cannot persist the allocation state");
            }
        ids
    }

    /// Runs [`Allocations::expire_due`] every `tick` until `shutdown` resolves.
    pub async fn run_expiry(self: Arc<Self>, tick: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(tick) => { self.expire_due().await; }
            }
        }
    }

    /// Tears everything down (miner shutdown with `stop_on_exit`).
    pub async fn stop_all(&self) {
        let mut current = self.current.lock().await;
        for allocation in current.drain(..).collect::<Vec<_>>() {
            self.teardown(allocation).await;
        }
        let _ = self.persist_locked(&current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requirement(cpu: u32, ram: u64, disk: u64, gpu: u32, kind: &str) -> Requirement {
        Requirement { cpu, gpu, gpu_capacity_mib: 0, gpu_kind: kind.into(), ram_bytes: ram, disk_bytes: disk }
    }

    #[test]
    fn requests_larger_than_the_machine_are_refused_with_the_numbers() {
        let machine = Machine { cpus: 2, ram_bytes: 8 << 30, disk_bytes: 50 << 30, gpus: vec![("NVIDIA A100".into(), 81920)] };
        assert_eq!(machine.fit(&requirement(2, 8 << 30, 50 << 30, 0, "")).ok(), Some(vec![]));
        let refused = |r: Requirement| match machine.fit(&r) {
            Err(ComputeError::TooLarge { resource, .. }) => resource,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(requirement(3, 1 << 30, 1 << 30, 0, "")), "cpu");
        assert_eq!(refused(requirement(1, 9 << 30, 1 << 30, 0, "")), "ram");
        assert_eq!(refused(requirement(1, 1 << 30, 51 << 30, 0, "")), "disk");
        assert_eq!(refused(requirement(1, 1 << 30, 1 << 30, 2, "")), "gpu");
        assert_eq!(refused(requirement(1, 1 << 30, 1 << 30, 1, "h100")), "gpu");
        assert_eq!(machine.fit(&requirement(1, 1 << 30, 1 << 30, 1, "a100")).ok(), Some(vec![0]));
        let message = machine.fit(&requirement(1, 9 << 30, 1 << 30, 0, "")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("9.0 GiB") && message.contains("8.0 GiB"), "{message}");
    }
}
