//! A container's cgroup limits from its pod's `resources`, computed as the kubelet computes
//! them, and written either into the runtime spec (libcontainer applies them) or, for the
//! cgroup v2 driver, as cgroup v2 interface files ([`Limits::v2_files`]).

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

use crate::runtime::ContainerSpec;

/// CFS period for CPU limits, in microseconds (the kubelet's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kubelet's bounds for `cpu.shares` and the smallest quota it sets.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const MIN_QUOTA_US: i64 = 1_000;
/// Default pids limit per container (the kubelet's `podPidsLimit` is unlimited by default;
/// a fork bomb in one pod should not exhaust the node's pids).
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// The limits of one container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `cpu.shares` (v1) from `requests.cpu` (or `limits.cpu` when no request: the API's
    /// defaulting), `shares = milliCPU * 1024 / 1000`, at least 2.
    pub cpu_shares: u64,
    /// CFS quota per [`CPU_PERIOD_US`] from `limits.cpu`, at least 1 ms.
    pub cpu_quota_us: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub pids: Option<i64>,
}

impl Limits {
    /// The limits of `spec`, with the runtime's pids limit.
    pub fn of(spec: &ContainerSpec, pids: Option<i64>) -> Limits {
        let request = spec.cpu_request_millis.or(spec.cpu_limit_millis);
        Limits {
            cpu_shares: milli_cpu_to_shares(request.unwrap_or(0)),
            cpu_quota_us: spec
                .cpu_limit_millis
                .filter(|m| *m > 0)
                .map(milli_cpu_to_quota),
            memory_bytes: spec
                .memory_limit_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            pids,
        }
    }

    /// Adds these limits to the runtime spec's resources.
    pub fn apply(
        &self,
        resources: LinuxResourcesBuilder,
    ) -> Result<LinuxResourcesBuilder, oci_spec::OciSpecError> {
        let mut cpu = LinuxCpuBuilder::default().shares(self.cpu_shares);
        if let Some(quota) = self.cpu_quota_us {
            cpu = cpu.quota(quota).period(CPU_PERIOD_US);
        }
        let mut resources = resources.cpu(cpu.build()?);
        if let Some(limit) = self.memory_bytes {
            resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
        }
        if let Some(limit) = self.pids {
            resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
        }
        Ok(resources)
    }

    /// The cgroup v2 files and values these limits become (runc's conversion of shares to
    /// `cpu.weight`), each with the controller that must be enabled for it.
    pub fn v2_files(&self) -> Vec<(&'static str, &'static str, String)> {
        let weight = 1 + ((self.cpu_shares.clamp(MIN_SHARES, MAX_SHARES) - 2) * 9999) / 262_142;
        let mut out = vec![("cpu", "cpu.weight", weight.to_string())];
        if let Some(quota) = self.cpu_quota_us {
            out.push(("cpu", "cpu.max", format!("{quota} {CPU_PERIOD_US}")));
        }
        if let Some(bytes) = self.memory_bytes {
            out.push(("memory", "memory.max", bytes.to_string()));
        }
        if let Some(pids) = self.pids {
            out.push(("pids", "pids.max", pids.to_string()));
        }
        out
    }
}

/// The kubelet's `MilliCPUToShares`.
fn milli_cpu_to_shares(milli: u64) -> u64 {
    (milli.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The kubelet's `MilliCPUToQuota` for the default period.
fn milli_cpu_to_quota(milli: u64) -> i64 {
    let quota = i64::try_from(milli.saturating_mul(CPU_PERIOD_US) / 1000).unwrap_or(i64::MAX);
    quota.max(MIN_QUOTA_US)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_conversions() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(500), 50_000);
        assert_eq!(milli_cpu_to_quota(5), 1_000);
    }

    #[test]
    fn v2_values() {
        let limits = Limits {
            cpu_shares: 1024,
            cpu_quota_us: Some(50_000),
            memory_bytes: Some(64 << 20),
            pids: Some(100),
        };
        assert_eq!(
            limits.v2_files(),
            vec![
                ("cpu", "cpu.weight", "39".to_string()),
                ("cpu", "cpu.max", "50000 100000".to_string()),
                ("memory", "memory.max", (64u64 << 20).to_string()),
                ("pids", "pids.max", "100".to_string()),
            ]
        );
        let idle = Limits {
            cpu_shares: 2,
            cpu_quota_us: None,
            memory_bytes: None,
            pids: None,
        };
        assert_eq!(
            idle.v2_files(),
            vec![("cpu", "cpu.weight", "1".to_string())]
        );
    }
}
