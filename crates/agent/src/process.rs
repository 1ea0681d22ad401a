//! The `process` executor: runs a command as a local process group.
//!
//! Limits: where this process can make control groups (`cgroup` module: v2, else v1), each
//! run gets one with a memory limit on resident memory and a CPU quota of its cores; otherwise
//! address space (`prlimit --as`). CPU seconds are capped by `prlimit --cpu` when util-linux's
//! `prlimit` is installed; the wall-time limit is enforced here. Metering: GNU `time` (when
//! installed) reports CPU seconds and peak RSS, and the group's own peak when there is one.
//! Output goes to `stdout.txt` and `stderr.txt` in the run's working directory. Cancel kills
//! the process group and the run's control group, so everything the command started goes too,
//! even processes that left the process group.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cgroup::{Cgroups, RunGroup};
use crate::executor::{
    ExecError, ExecState, Executor, HANDLE_FILE, Handle, OnChange, RUN_ID_FILE, RunSpec, Usage, handle_in,
    mark_started, on_run_path, prepare, read_logs, read_logs_bytes, read_tail, run_env, run_id_matches, started_at,
    work_dir,
};
use crate::sandbox::{Isolation, Sandbox};

#[derive(Debug)]
struct Run {
    /// `None` for a run adopted after a restart: it is not our child, so its group is watched
    /// through /proc and its exit status read from GNU time's report.
    child: Option<Child>,
    started: Instant,
    /// The run's directory (control files); it works in `work/`.
    dir: PathBuf,
    memory_mib: u64,
    time_limit: Duration,
    /// Set when cancelled (by a caller, or for running past its time limit).
    stopped: Option<ExecState>,
    done: Option<(ExecState, Usage)>,
    /// The run's control group, when the executor makes them.
    group: Option<RunGroup>,
}

impl Run {
    fn new(spec: &RunSpec, dir: PathBuf, child: Option<Child>, started: Instant, group: Option<RunGroup>) -> Run {
        Run {
            child,
            started,
            dir,
            memory_mib: spec.memory_mib,
            time_limit: spec.time_limit,
            stopped: None,
            done: None,
            group,
        }
    }
}

#[derive(Debug)]
pub struct ProcessExecutor {
    runs: Mutex<HashMap<Handle, Run>>,
    cgroups: Option<Cgroups>,
    sandbox: Sandbox,
}

impl Default for ProcessExecutor {
    fn default() -> Self {
        ProcessExecutor::new()
    }
}

/// Joins the control groups named by its arguments (up to `--`), then becomes the rest.
const JOIN_GROUP: &str =
    r#"p=$$; while [ "$1" != -- ]; do echo "$p" > "$1" || exit 125; shift; done; shift; exec "$@""#;

/// The process-group id a handle names (`pg:N`, N > 1: 0 and 1 would make `kill -N` signal
/// the agent's own group or every process).
fn pgid_of(handle: &Handle) -> Option<u32> {
    handle.0.strip_prefix("pg:")?.parse::<u32>().ok().filter(|p| *p > 1)
}

/// A process's state letter (`R`, `S`, `Z`…), from /proc; `None` when it does not exist.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A run's group name: the job, the attempt and a hash of its directory (two agents on one
/// machine may run the same job ids for different servers). Stable across agent versions
/// (FNV-1a), so a restarted agent finds the group again.
fn group_name(spec: &RunSpec, dir: &Path) -> String {
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("sw-{}-{}-{:08x}", spec.job_id, spec.attempt, hash & 0xffff_ffff)
}

pub(crate) fn on_path(cmd: &str) -> bool {
    if cmd.contains('/') {
        return Path::new(cmd).is_file();
    }
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn io(e: impl std::fmt::Display) -> ExecError {
    ExecError::Io(e.to_string())
}

/// The numbers of GNU time's `-f "%e %U %S %M %x"` line (the last line of the file).
fn usage_line(dir: &Path, owner: Option<u32>) -> Vec<f64> {
    let text = read_tail(&dir.join("usage.txt"), owner);
    text.lines().last().unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect()
}

/// What the run used, from GNU time's report in `dir` (zeros and `wall` when there is none); a
/// report that must be `owner`'s is read only when it is.
pub(crate) fn read_usage(dir: &Path, wall: f64, owner: Option<u32>) -> Usage {
    match usage_line(dir, owner)[..] {
        [e, u, s, m, ..] => Usage { cpu_seconds: u + s, peak_memory_mib: m / 1024.0, wall_seconds: e },
        _ => Usage { cpu_seconds: 0.0, peak_memory_mib: 0.0, wall_seconds: wall },
    }
}

/// The command's exit status, from GNU time's report.
fn read_exit(dir: &Path) -> Option<i32> {
    match usage_line(dir, None)[..] {
        [_, _, _, _, x] => Some(x as i32),
        _ => None,
    }
}

/// Why a run that exited with `code` (or was killed by `signal`) failed, from what it left.
pub(crate) fn failure_reason(
    code: i32,
    signal: Option<i32>,
    stderr: &str,
    peak_memory_mib: f64,
    memory_mib: u64,
) -> String {
    let memory = stderr.contains("MemoryError")
        || stderr.contains("Cannot allocate memory")
        || stderr.contains("bad_alloc")
        || stderr.contains("memory allocation")
        || peak_memory_mib >= memory_mib as f64 * 0.95;
    if memory {
        format!("exceeded its memory limit of {memory_mib} MiB")
    } else if let Some(sig) = signal.or((code > 128).then_some(code - 128)) {
        format!("killed by signal {sig}")
    } else if code == 127 {
        "the command could not be run (not found or not executable)".to_string()
    } else {
        format!("exited with status {code}")
    }
}

impl ProcessExecutor {
    /// Limits through control groups where this process can make them (unless
    /// `SUANWANG_CGROUPS=off`), else through rlimits.
    pub fn new() -> ProcessExecutor {
        let off = std::env::var("SUANWANG_CGROUPS").is_ok_and(|v| v == "off" || v == "0");
        let cgroups = if off {
            None
        } else {
            Cgroups::detect().map_err(|why| tracing::info!(%why, "no control groups; limits through rlimits")).ok()
        };
        ProcessExecutor { runs: Mutex::default(), cgroups, sandbox: Sandbox::off() }
    }

    /// Limits through rlimits only.
    pub fn rlimits_only() -> ProcessExecutor {
        ProcessExecutor { runs: Mutex::default(), cgroups: None, sandbox: Sandbox::off() }
    }

    /// Runs confined by `sandbox` (namespaces; runs with a `user` execute as that user).
    #[must_use]
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> ProcessExecutor {
        self.sandbox = sandbox;
        self
    }

    /// How runs are confined.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// How runs are limited: the control-group hierarchy, or rlimits.
    pub fn limits(&self) -> String {
        self.cgroups.as_ref().map_or_else(|| "rlimits (prlimit)".to_string(), Cgroups::describe)
    }

    /// The control group of a run, when it has one (tests, diagnostics).
    pub fn group(&self, handle: &Handle) -> Option<RunGroup> {
        self.runs.lock().ok()?.get(handle)?.group.clone()
    }

    /// Live (non-zombie) processes of process group `pgid`, from /proc.
    fn group_alive(pgid: u32) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else { return false };
        dir.flatten().any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
            // fields after the command name: state, ppid, pgrp, …
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 2 && f[2].parse::<u32>() == Ok(pgid) && f[0] != "Z" && f[0] != "X"
        })
    }

    /// Whether the group `pgid` is the run in `dir`: its leader is alive and works in `dir/work`.
    /// (The handle comes from a file the run itself can write, and ids are reused once a group
    /// is gone: an adopted group is only signalled while this holds.)
    fn ours(pgid: u32, dir: &Path) -> bool {
        let cwd = std::fs::read_link(format!("/proc/{pgid}/cwd")).ok();
        let here = work_dir(dir).canonicalize().ok();
        cwd.is_some() && cwd == here && process_state(pgid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    /// Kills the whole group and returns once none of it runs (bounded: 5 s).
    fn kill_group_and_wait(pgid: u32) {
        Self::kill_group(pgid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Self::group_alive(pgid) && Instant::now() < deadline {
            Self::kill_group(pgid);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn kill_group(pgid: u32) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Moves a run on: reaps it if it exited, stops it if past its time limit.
    fn refresh(handle: &Handle, run: &mut Run) -> Result<(), ExecError> {
        if run.done.is_some() {
            return Ok(());
        }
        let pgid = pgid_of(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        // may its group be signalled? our child holds its pid (the group id) until reaped; an
        // adopted group only while its leader still works in the run's directory
        let live = match &run.child {
            Some(_) => true,
            None => Self::ours(pgid, &run.dir),
        };
        let wall = run.started.elapsed();
        if live && run.stopped.is_none() && wall > run.time_limit {
            run.stopped = Some(ExecState::Failed {
                reason: format!("exceeded its time limit of {} s", run.time_limit.as_secs()),
                exit_code: None,
            });
            Self::kill_group(pgid);
        }
        // (exit status, signal), once the run has ended
        let (code, signal) = match &mut run.child {
            Some(child) => {
                // reaped only once seen exited: the zombie keeps the group id ours while what
                // the command left in its group is killed (nothing it started outlives it)
                match process_state(child.id()) {
                    Some('Z' | 'X') => Self::kill_group(pgid),
                    Some(_) => return Ok(()),
                    None => {}
                }
                let Some(status) = child.try_wait().map_err(io)? else { return Ok(()) };
                (status.code(), status.signal())
            }
            None => {
                if live {
                    return Ok(());
                }
                (read_exit(&run.dir), None)
            }
        };
        let mut usage = read_usage(&run.dir, wall.as_secs_f64(), None);
        let mut oom = false;
        if let Some(g) = &run.group {
            usage.peak_memory_mib = usage.peak_memory_mib.max(g.peak_memory_mib().unwrap_or(0.0));
            oom = g.oom_killed();
            // nothing the run started outlives it
            g.remove();
        }
        let stderr = read_tail(&run.dir.join("stderr.txt"), None);
        let state = if let Some(s) = run.stopped.take() {
            s
        } else if oom {
            ExecState::Failed {
                reason: format!(
                    "exceeded its memory limit of {} MiB (killed by the kernel in its cgroup)",
                    run.memory_mib
                ),
                exit_code: code,
            }
        } else if code == Some(0) {
            ExecState::Succeeded
        } else if code.is_none() && signal.is_none() {
            ExecState::Failed {
                reason: "the run ended while its agent was down, leaving no exit status".into(),
                exit_code: None,
            }
        } else {
            let reason = failure_reason(code.unwrap_or(-1), signal, &stderr, usage.peak_memory_mib, run.memory_mib);
            ExecState::Failed { reason, exit_code: code }
        };
        run.done = Some((state, usage));
        Ok(())
    }
}

impl Executor for ProcessExecutor {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start(&self, spec: &RunSpec) -> Result<Handle, ExecError> {
        let env = run_env(spec, &work_dir(&spec.dir));
        if !on_run_path(&spec.command, &env) {
            return Err(ExecError::Start {
                command: spec.command.clone(),
                reason: "not found (not a file, not on the run's PATH)".into(),
            });
        }
        // without namespaces, a run user reaches its work directory through the run's
        // directory (mode 0711: no listing)
        let traversable = self.sandbox.isolation == Isolation::Off && spec.user.is_some();
        let dir = prepare(spec, traversable).map_err(io)?;
        let work = work_dir(&dir);
        let env = run_env(spec, &work);
        let out = File::create(dir.join("stdout.txt")).map_err(io)?;
        let err = File::create(dir.join("stderr.txt")).map_err(io)?;
        std::fs::write(dir.join(RUN_ID_FILE), &spec.run_id).map_err(io)?;
        let mount_point = dir.join("root");
        std::fs::create_dir_all(&mount_point).map_err(io)?;
        let group = self.cgroups.as_ref().and_then(|c| {
            c.create(&group_name(spec, &dir), spec.memory_mib, spec.cpus)
                .map_err(|e| tracing::warn!(job = spec.job_id, error = %e, "no control group; limits through rlimits"))
                .ok()
        });
        // the chain, each link as the agent's user until the last: join the control group,
        // meter (GNU time writes into the run's directory, which the run cannot reach), limit
        // (prlimit), confine (namespaces) and drop to the run's user
        let mut argv: Vec<String> = vec![];
        if let Some(g) = &group {
            argv.extend(["sh".into(), "-c".into(), JOIN_GROUP.into(), "sw-join".into()]);
            argv.extend(g.procs_files().iter().map(|f| f.display().to_string()));
            argv.push("--".into());
        }
        if Path::new("/usr/bin/time").is_file() {
            argv.extend([
                "/usr/bin/time".into(),
                "-f".into(),
                "%e %U %S %M %x".into(),
                "-o".into(),
                dir.join("usage.txt").display().to_string(),
            ]);
        }
        if on_path("prlimit") {
            argv.push("prlimit".into());
            if group.is_none() {
                argv.push(format!("--as={}", spec.memory_mib.saturating_mul(1024 * 1024)));
            }
            argv.push(format!("--cpu={}", spec.time_limit.as_secs().max(1) * u64::from(spec.cpus.max(1))));
            argv.push("--".into());
        }
        let command: Vec<String> = std::iter::once(spec.command.clone()).chain(spec.args.iter().cloned()).collect();
        argv.extend(self.sandbox.wrap(&mount_point, &work, spec.user.as_ref(), command));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(&work)
            // nothing of the agent's environment: the run's own variables only
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // its own process group: cancel kills everything the command starts
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            if let Some(g) = &group {
                g.remove();
            }
            ExecError::Start { command: spec.command.clone(), reason: e.to_string() }
        })?;
        let handle = Handle(format!("pg:{}", child.id()));
        // a run that could not be recorded could not be adopted after a restart: stop it
        let recorded = std::fs::write(dir.join(HANDLE_FILE), &handle.0).and_then(|()| mark_started(&dir));
        if let Err(e) = recorded {
            Self::kill_group_and_wait(child.id());
            let _ = child.wait();
            if let Some(g) = &group {
                g.remove();
            }
            let reason = format!("cannot record the run in {}: {e}", dir.display());
            return Err(ExecError::Start { command: spec.command.clone(), reason });
        }
        let run = Run::new(spec, dir, Some(child), Instant::now(), group);
        self.runs.lock().map_err(io)?.insert(handle.clone(), run);
        Ok(handle)
    }

    fn poll(&self, handle: &Handle) -> Result<(ExecState, Usage), ExecError> {
        let mut runs = self.runs.lock().map_err(io)?;
        let run = runs.get_mut(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Self::refresh(handle, run)?;
        Ok(run.done.clone().unwrap_or((
            ExecState::Running,
            Usage { wall_seconds: run.started.elapsed().as_secs_f64(), ..Usage::default() },
        )))
    }

    fn poll_interval(&self) -> Duration {
        // a child exit has no portable wait-with-timeout in std: poll at a fine grain
        Duration::from_millis(5)
    }

    fn check_interval(&self) -> Duration {
        // a poll is a try_wait and a few /proc reads: cheap enough to report ends promptly
        Duration::from_millis(100)
    }

    fn watch(&self, handle: &Handle, on_change: OnChange) -> bool {
        let Some(pgid) = pgid_of(handle) else { return false };
        let (deadline, adopted_dir) = {
            let Ok(runs) = self.runs.lock() else { return false };
            let Some(run) = runs.get(handle) else { return false };
            if run.done.is_some() {
                drop(runs);
                on_change(handle);
                return true;
            }
            (run.started + run.time_limit, run.child.is_none().then(|| run.dir.clone()))
        };
        // a pidfd becomes readable when the process ends (a child stays a zombie until `poll`
        // reaps it); it works for a run adopted after a restart too (kernel 5.3 and later)
        let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) else { return false };
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!(handle = %handle.0, error = %e, "no pidfd: the agent polls this run");
                return false;
            }
        };
        if let Some(dir) = adopted_dir
            && !Self::ours(pgid, &dir)
        {
            // the adopted group ended before the pidfd was opened (its id may name another
            // process by now): it has changed already
            on_change(handle);
            return true;
        }
        let h = handle.clone();
        std::thread::Builder::new()
            .name(format!("sw-watch-{pgid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                // first until the time limit (a little after it, so `poll` finds it passed),
                // then until the exit its stop brings
                let mut until = Some(deadline + Duration::from_millis(20));
                loop {
                    let timeout = until.map(|d| {
                        let left = d.saturating_duration_since(Instant::now());
                        rustix::event::Timespec::try_from(left)
                            .unwrap_or(rustix::event::Timespec { tv_sec: i64::MAX, tv_nsec: 0 })
                    });
                    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
                    match rustix::event::poll(&mut fds, timeout.as_ref()) {
                        Ok(0) => {
                            until = None;
                            on_change(&h);
                        }
                        Err(rustix::io::Errno::INTR) => {}
                        Ok(_) | Err(_) => {
                            on_change(&h);
                            return;
                        }
                    }
                }
            })
            .is_ok()
    }

    fn cancel(&self, handle: &Handle) -> Result<(), ExecError> {
        let mut runs = self.runs.lock().map_err(io)?;
        let run = runs.get_mut(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        if run.done.is_none() {
            run.stopped = Some(ExecState::Cancelled);
            let pgid = pgid_of(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
            if run.child.is_some() || Self::ours(pgid, &run.dir) {
                Self::kill_group_and_wait(pgid);
            }
            if let Some(g) = &run.group {
                g.kill_all();
            }
            if let Some(child) = &mut run.child {
                let _ = child.wait();
            }
            Self::refresh(handle, run)?;
        }
        Ok(())
    }

    fn logs(&self, handle: &Handle) -> Result<(String, String), ExecError> {
        let runs = self.runs.lock().map_err(io)?;
        let run = runs.get(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Ok(read_logs(&run.dir, None))
    }

    fn logs_bytes(&self, handle: &Handle) -> Result<(Vec<u8>, Vec<u8>), ExecError> {
        let runs = self.runs.lock().map_err(io)?;
        let run = runs.get(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Ok(read_logs_bytes(&run.dir, None))
    }

    fn adopt(&self, spec: &RunSpec) -> Result<Option<Handle>, ExecError> {
        // only a run this control plane started for this attempt (its run id is recorded in
        // the run's directory, which the run cannot write)
        if !run_id_matches(&spec.dir, &spec.run_id) {
            return Ok(None);
        }
        let Some(handle) = handle_in(&spec.dir) else { return Ok(None) };
        let Some(pgid) = pgid_of(&handle) else { return Ok(None) };
        if Self::group_alive(pgid) && !Self::ours(pgid, &spec.dir) {
            // a live group under that id that is not working in the run's directory: the id
            // was reused after our run ended (or the handle file lies)
            return Ok(None);
        }
        let mut runs = self.runs.lock().map_err(io)?;
        if !runs.contains_key(&handle) {
            let dir = spec.dir.canonicalize().unwrap_or_else(|_| spec.dir.clone());
            let group = self.cgroups.as_ref().and_then(|c| c.open(&group_name(spec, &dir)));
            // its time limit counts from when it really started
            runs.insert(handle.clone(), Run::new(spec, dir, None, started_at(&spec.dir), group));
        }
        Ok(Some(handle))
    }

    fn running(&self) -> Result<Vec<Handle>, ExecError> {
        let mut runs = self.runs.lock().map_err(io)?;
        let mut out = vec![];
        for (h, run) in runs.iter_mut() {
            Self::refresh(h, run)?;
            if run.done.is_none() {
                out.push(h.clone());
            }
        }
        out.sort();
        Ok(out)
    }
}
