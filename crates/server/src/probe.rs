//! The probe job (R2, R7): with `--require-probe`, a provider's new site is approved only after
//! its agent has run a small job that counts the machine's cores, memory and accelerator cards,
//! and what it found covers what the registration declared. The probe runs like any job (as the
//! run user, in the agent's sandbox), as job id 0 of the site, outside the engine: it decides
//! nothing but whether the operator may approve. Probe results are state, not commands: after a
//! control-plane restart a pending site is probed again when its agent registers again.

use std::collections::BTreeMap;

use serde::Serialize;

/// What the probe prints: `cores N`, `memory_mib N`, `gpus N`, a line each.
pub const SCRIPT: &str = "echo \"cores $(nproc --all)\"; \
     awk '/^MemTotal:/ { printf \"memory_mib %d\\n\", $2 / 1024 }' /proc/meminfo; \
     if command -v nvidia-smi >/dev/null 2>&1; then echo \"gpus $(nvidia-smi -L | grep -c '^GPU')\"; \
     else echo 'gpus 0'; fi";

/// The job id a probe runs under (real jobs start at 1).
pub const PROBE_JOB: u64 = 0;

/// Memory the probe may find short of what was declared (the kernel keeps some of it).
pub const MEMORY_TOLERANCE: f64 = 0.05;

/// What a registration declared, and what its probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub cores: u64,
    pub memory_mib: u64,
    pub gpus: u64,
}

/// One site's probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Each registration probes afresh (the attempt fences stale reports).
    pub attempt: u32,
    pub declared: Capacity,
    /// `None` while the agent has not reported; then what it found, or why it failed.
    pub result: Option<Result<Capacity, String>>,
}

impl Probe {
    /// `waiting`, `passed` or `failed`.
    pub fn state(&self) -> &'static str {
        match &self.result {
            None => "waiting",
            Some(Ok(_)) => "passed",
            Some(Err(_)) => "failed",
        }
    }

    /// Why the operator may not approve yet, or `None` when the probe passed.
    pub fn blocks_approval(&self) -> Option<String> {
        match &self.result {
            Some(Ok(_)) => None,
            None => Some("its probe job has not reported yet (the site's agent runs it on its next poll)".into()),
            Some(Err(why)) => Some(format!("its probe job failed: {why}")),
        }
    }

    /// The assignment an agent runs for this probe.
    pub fn assignment(&self, site: &str, run_id: String) -> suanwang_engine::Assignment {
        suanwang_engine::Assignment {
            id: PROBE_JOB,
            attempt: self.attempt,
            site: site.to_string(),
            command: "sh".into(),
            args: vec!["-c".into(), SCRIPT.into()],
            env: BTreeMap::new(),
            cores: 1,
            memory_mib: 256,
            time_limit_s: 60,
            checkpoint_s: None,
            tenant: String::new(),
            run_id,
        }
    }
}

/// Judges a probe's output against what was declared: every count must be found (memory within
/// `MEMORY_TOLERANCE`).
pub fn judge(declared: Capacity, succeeded: bool, stdout: &str) -> Result<Capacity, String> {
    if !succeeded {
        return Err("the probe job did not succeed".into());
    }
    let value = |key: &str| -> Result<u64, String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("the probe's output has no `{key} N` line"))
    };
    let found = Capacity { cores: value("cores")?, memory_mib: value("memory_mib")?, gpus: value("gpus")? };
    let mut short = vec![];
    if found.cores < declared.cores {
        short.push(format!("{} cores declared, {} found", declared.cores, found.cores));
    }
    if (found.memory_mib as f64) < declared.memory_mib as f64 * (1.0 - MEMORY_TOLERANCE) {
        short.push(format!("{} MiB declared, {} MiB found", declared.memory_mib, found.memory_mib));
    }
    if found.gpus < declared.gpus {
        short.push(format!("{} accelerator cards declared, {} found", declared.gpus, found.gpus));
    }
    if short.is_empty() { Ok(found) } else { Err(short.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::{Capacity, judge};

    #[test]
    fn a_probe_passes_only_when_it_finds_what_was_declared() {
        let declared = Capacity { cores: 2, memory_mib: 2048, gpus: 0 };
        let out = "cores 2\nmemory_mib 1990\ngpus 0\n";
        assert_eq!(judge(declared, true, out), Ok(Capacity { cores: 2, memory_mib: 1990, gpus: 0 }));
        let big = Capacity { cores: 1_000_000_000_000, memory_mib: 2048, gpus: 100_000 };
        let why = judge(big, true, out).expect_err("over-declared");
        assert!(why.contains("1000000000000 cores declared, 2 found") && why.contains("100000 accelerator"), "{why}");
        assert!(judge(declared, true, "cores 2\n").expect_err("no memory line").contains("memory_mib"));
        assert!(judge(declared, false, out).is_err());
        assert!(judge(Capacity { memory_mib: 4096, ..declared }, true, out).expect_err("short").contains("MiB"));
    }
}
