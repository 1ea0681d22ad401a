//! Resource limits and accounting through Linux control groups, for the process executor.
//!
//! Each run gets a group of its own beneath the agent's: a memory limit on resident memory
//! (not on address space, which runtimes such as the JVM, Go and CUDA reserve far beyond what
//! they use), a CPU quota of the run's declared cores, the run's peak memory, whether the
//! kernel's OOM killer struck, and — on cancel — every process of the run, including those
//! that left its process group (`setsid`, daemons).
//!
//! The unified hierarchy (cgroup v2) is used where it is mounted with the memory controller;
//! otherwise the legacy memory (and cpu) hierarchies (v1); otherwise nothing, and the
//! executor falls back to rlimits. Groups are plain directories: a process joins one by
//! writing its pid to `cgroup.procs` (the executor's launcher shell does so before `exec`,
//! so no unsafe code runs between fork and exec).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where run groups are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// Unified hierarchy: run groups are children of `parent`, whose subtree has the memory
    /// (and, when available, cpu) controller enabled.
    V2 { parent: PathBuf, cpu: bool },
    /// Legacy hierarchies: run groups are made in the memory hierarchy under `memory`, and in
    /// the cpu hierarchy under `cpu` when that one is writable too.
    V1 { memory: PathBuf, cpu: Option<PathBuf> },
}

/// One run's group (a directory per hierarchy; the first holds memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunGroup {
    v2: bool,
    dirs: Vec<PathBuf>,
}

/// Mount points of cgroup file systems: (mount point, fstype, options).
fn cgroup_mounts(mounts: &str) -> Vec<(PathBuf, String, Vec<String>)> {
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [_, dir, fs @ ("cgroup" | "cgroup2"), opts, ..] => {
                    Some((PathBuf::from(dir), fs.to_string(), opts.split(',').map(str::to_string).collect()))
                }
                _ => None,
            }
        })
        .collect()
}

/// This process's group in the hierarchy whose controller list contains `controller`
/// (`""` for the unified hierarchy), from `/proc/self/cgroup`.
fn own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if controller.is_empty() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == controller) };
        hit.then(|| path.trim_start_matches('/').to_string())
    })
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The `key N` value of a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Whether a directory can hold groups: makes and removes a probe group.
fn writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!("sw-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("cannot make a group in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(())
}

impl Cgroups {
    /// The hierarchy this process can make run groups in, or why there is none.
    pub fn detect() -> Result<Cgroups, String> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| format!("/proc/self/mounts: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let mounts = cgroup_mounts(&mounts);
        let mut why = vec![];
        // unified: the memory controller must be available to our group
        if let (Some((root, _, _)), Some(path)) = (mounts.iter().find(|(_, fs, _)| fs == "cgroup2"), own_path(&own, ""))
        {
            match Self::v2(&root.join(path)) {
                Ok(c) => return Ok(c),
                Err(e) => why.push(format!("cgroup v2: {e}")),
            }
        }
        let v1 = |controller: &str| {
            let (root, _, _) =
                mounts.iter().find(|(_, fs, opts)| fs == "cgroup" && opts.iter().any(|o| o == controller))?;
            Some(root.join(own_path(&own, controller)?))
        };
        match v1("memory") {
            Some(memory) => match writable(&memory) {
                Ok(()) => {
                    let cpu = v1("cpu").filter(|d| writable(d).is_ok());
                    return Ok(Cgroups::V1 { memory, cpu });
                }
                Err(e) => why.push(format!("cgroup v1: {e}")),
            },
            None => why.push("cgroup v1: no memory hierarchy mounted".into()),
        }
        Err(why.join("; "))
    }

    /// Unified hierarchy rooted at our group `own`. Children get controllers only through the
    /// parent's `cgroup.subtree_control`, and a group with processes cannot enable them (the
    /// no-internal-process rule) unless it is the root: so, as a delegated service manager
    /// does, the agent first moves itself into a leaf `agent` beside its runs.
    fn v2(own: &Path) -> Result<Cgroups, String> {
        let controllers = std::fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| e.to_string())?;
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !has("memory") {
            return Err(format!("the memory controller is not available in {}", own.display()));
        }
        let enabled = std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap_or_default();
        let cpu = has("cpu");
        if !enabled.split_whitespace().any(|x| x == "memory") {
            let leaf = own.join("agent");
            std::fs::create_dir_all(&leaf).map_err(|e| format!("making {}: {e}", leaf.display()))?;
            write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
            let want = if cpu { "+memory +cpu" } else { "+memory" };
            write(&own.join("cgroup.subtree_control"), want)?;
        }
        writable(own)?;
        Ok(Cgroups::V2 { parent: own.to_path_buf(), cpu })
    }

    /// One line for logs: which hierarchy, where.
    pub fn describe(&self) -> String {
        match self {
            Cgroups::V2 { parent, cpu } => {
                format!("cgroup v2 at {} (memory{})", parent.display(), if *cpu { ", cpu" } else { "" })
            }
            Cgroups::V1 { memory, cpu } => format!(
                "cgroup v1 at {}{}",
                memory.display(),
                cpu.as_ref().map_or_else(String::new, |c| format!(" and {}", c.display()))
            ),
        }
    }

    fn dirs(&self, name: &str) -> (bool, Vec<PathBuf>) {
        match self {
            Cgroups::V2 { parent, .. } => (true, vec![parent.join(name)]),
            Cgroups::V1 { memory, cpu } => {
                (false, std::iter::once(memory.join(name)).chain(cpu.iter().map(|c| c.join(name))).collect())
            }
        }
    }

    /// Makes the group `name` with its limits. A group left by an earlier run of the same name
    /// is emptied and reused.
    pub fn create(&self, name: &str, memory_mib: u64, cpus: u32) -> Result<RunGroup, String> {
        let (v2, dirs) = self.dirs(name);
        let group = RunGroup { v2, dirs };
        for d in &group.dirs {
            std::fs::create_dir_all(d).map_err(|e| format!("making {}: {e}", d.display()))?;
        }
        group.kill_all();
        let bytes = memory_mib.saturating_mul(1024 * 1024).to_string();
        let quota = u64::from(cpus.max(1)) * 100_000;
        let mem = &group.dirs[0];
        if v2 {
            write(&mem.join("memory.max"), &bytes)?;
            // no escape into swap (absent when the kernel has no swap accounting)
            let _ = std::fs::write(mem.join("memory.swap.max"), "0");
            if matches!(self, Cgroups::V2 { cpu: true, .. }) {
                write(&mem.join("cpu.max"), &format!("{quota} 100000"))?;
            }
        } else {
            write(&mem.join("memory.limit_in_bytes"), &bytes)?;
            let _ = std::fs::write(mem.join("memory.memsw.limit_in_bytes"), &bytes);
            if let Some(cpu) = group.dirs.get(1) {
                write(&cpu.join("cpu.cfs_period_us"), "100000")?;
                write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        Ok(group)
    }

    /// The group `name` if it exists (a run adopted after a restart).
    pub fn open(&self, name: &str) -> Option<RunGroup> {
        let (v2, dirs) = self.dirs(name);
        dirs[0].is_dir().then_some(RunGroup { v2, dirs })
    }
}

impl RunGroup {
    /// The files a process writes its pid to, to join the group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(self.dirs[0].join("cgroup.procs")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Peak memory use of the whole group, MiB (page cache included, as the limit counts it).
    pub fn peak_memory_mib(&self) -> Option<f64> {
        let file = if self.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" };
        read_u64(&self.dirs[0].join(file)).map(|b| b as f64 / (1024.0 * 1024.0))
    }

    /// Whether the kernel killed a process of the group for exceeding its memory limit.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = if self.v2 { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
        keyed(&self.dirs[0].join(file), key).is_some_and(|n| n > 0)
    }

    /// Kills every process in the group and waits (at most 5 s) until none is left.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        // cgroup.kill (v2, Linux 5.14) kills atomically the group and the groups beneath it,
        // even processes forking meanwhile or hiding in a child group its `cgroup.procs` omits
        let atomic = self.v2 && std::fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok();
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            if !atomic {
                let args: Vec<String> = pids.iter().map(u32::to_string).collect();
                let _ = std::process::Command::new("kill")
                    .arg("-KILL")
                    .args(&args)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(5));
            if atomic {
                let _ = std::fs::write(self.dirs[0].join("cgroup.kill"), "1");
            }
        }
    }

    /// Kills what is left and removes the group's directories.
    pub fn remove(&self) {
        self.kill_all();
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_own_groups_are_parsed() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0\n\
                      cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n";
        let m = cgroup_mounts(mounts);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].0, PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(m[0].2.iter().any(|o| o == "cpuacct"));
        let own = "12:cpu,cpuacct:/a/b\n4:memory:/process_api/x\n0::/user.slice/u.service\n";
        assert_eq!(own_path(own, "memory").as_deref(), Some("process_api/x"));
        assert_eq!(own_path(own, "cpu").as_deref(), Some("a/b"));
        assert_eq!(own_path(own, "").as_deref(), Some("user.slice/u.service"));
        assert_eq!(own_path(own, "pids"), None);
    }

    #[test]
    fn flat_keyed_files_are_read_by_key() {
        let dir = std::env::temp_dir().join(format!("sw-keyed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let f = dir.join("memory.events");
        std::fs::write(&f, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 2\noom_group_kill 0\n").expect("write");
        assert_eq!(keyed(&f, "oom_kill"), Some(2));
        assert_eq!(keyed(&f, "oom"), Some(1));
        assert_eq!(keyed(&f, "missing"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
