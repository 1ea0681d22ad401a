//! The `slurm` executor: each run is one Slurm batch job, driven through the command-line
//! tools (`sbatch --parsable`, `squeue`, `scancel`). The batch script applies the same limits
//! and metering as the process executor (`timeout` for wall time, `prlimit` for memory, GNU
//! `time` for use) and records the command's exit status in the run directory, so nothing
//! depends on Slurm's accounting being configured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::executor::{
    ExecError, ExecState, Executor, HANDLE_FILE, HIDDEN_ENV, Handle, RUN_ID_FILE, RunSpec, Usage, give, handle_in,
    mark_started, on_run_path, prepare, read_logs, read_logs_bytes, read_tail, run_env, run_id_matches, started_at,
    work_dir,
};

/// Where a batch job writes its output, use and exit status: a directory of the run user's
/// (Slurm writes there as that user), read back only from files that user owns.
fn out_dir(dir: &Path) -> PathBuf {
    dir.join("out")
}

#[derive(Debug, Clone)]
struct Run {
    /// The run's directory (the agent's); the job works in `work/` and writes to `out/`.
    dir: PathBuf,
    /// Whose files `out/` must hold (the run user's, when the agent submitted as another user).
    owner: Option<u32>,
    memory_mib: u64,
    time_limit: Duration,
    started: Instant,
    cancelled: bool,
}

#[derive(Debug, Default)]
pub struct SlurmExecutor {
    runs: Mutex<std::collections::HashMap<Handle, Run>>,
    /// Extra `sbatch` options (partition, account…).
    pub sbatch_args: Vec<String>,
    /// When a call last found the controller unreachable, and the error it got.
    unreachable: Mutex<Option<(Instant, ExecError)>>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn io(e: impl std::fmt::Display) -> ExecError {
    ExecError::Io(e.to_string())
}

/// How long one call of a Slurm tool may take. Against a controller that does not answer the
/// tools retry for about 18 s (or hang, when it accepts but never replies); the agent must go
/// on heart-beating and serving its other runs meanwhile.
const TOOL_TIMEOUT_S: u64 = 5;

/// For how long after a call found the controller unreachable later calls fail at once with
/// the same error instead of waiting again (one outage costs a round one timeout, not one per run).
const UNREACHABLE_MEMO: Duration = Duration::from_secs(3);

/// Runs a Slurm tool (under coreutils `timeout` when installed); its standard output, or why not.
fn tool(name: &str, args: &[&str]) -> Result<String, ExecError> {
    let bounded = crate::process::on_path("timeout");
    let mut cmd = if bounded {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=1", &TOOL_TIMEOUT_S.to_string(), name]);
        c
    } else {
        Command::new(name)
    };
    for hidden in HIDDEN_ENV {
        // sbatch hands its environment to the batch job
        cmd.env_remove(hidden);
    }
    let out = cmd.args(args).output().map_err(|e| ExecError::Io(format!("{name}: {e}")))?;
    if bounded && out.status.code() == Some(124) {
        return Err(ExecError::Io(format!("{name}: no answer within {TOOL_TIMEOUT_S} s")));
    }
    if bounded && out.status.code() == Some(127) {
        return Err(ExecError::Io(format!("{name}: not installed (not on PATH)")));
    }
    if !out.status.success() {
        return Err(ExecError::Io(format!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a tool's failure says the controller (or the tools themselves) cannot be reached,
/// rather than something about one job.
fn unreachable(e: &ExecError) -> bool {
    let ExecError::Io(m) = e else { return false };
    ["no answer within", "not installed", "Unable to contact", "Socket timed out", "Connection refused", "No such file"]
        .iter()
        .any(|k| m.contains(k))
}

impl SlurmExecutor {
    pub fn new() -> SlurmExecutor {
        SlurmExecutor::default()
    }

    /// True when the Slurm client tools are installed and a controller answers.
    pub fn available() -> bool {
        tool("sinfo", &["-h", "-o", "%T"]).is_ok_and(|s| !s.trim().is_empty())
    }

    fn id(handle: &Handle) -> &str {
        handle.0.trim_start_matches("slurm:")
    }

    /// `tool`, failing at once while the controller was found unreachable moments ago.
    fn call(&self, name: &str, args: &[&str]) -> Result<String, ExecError> {
        if let Ok(memo) = self.unreachable.lock()
            && let Some((at, e)) = memo.as_ref()
            && at.elapsed() < UNREACHABLE_MEMO
        {
            return Err(e.clone());
        }
        let res = tool(name, args);
        if let (Err(e), Ok(mut memo)) = (&res, self.unreachable.lock())
            && unreachable(e)
        {
            *memo = Some((Instant::now(), e.clone()));
        }
        res
    }

    /// Still pending or running (a job Slurm no longer knows of has ended). An error when the
    /// controller does not answer: that says nothing about the job.
    fn queued(&self, handle: &Handle) -> Result<bool, ExecError> {
        match self.call("squeue", &["-h", "-j", Self::id(handle), "-o", "%T"]) {
            Ok(out) => Ok(!out.trim().is_empty()),
            // purged from the controller's memory (MinJobAge): long finished
            Err(ExecError::Io(m)) if m.contains("Invalid job id") => Ok(false),
            Err(e) => Err(ExecError::Io(format!("Slurm does not answer: {e}"))),
        }
    }

    /// How Slurm's accounting saw the job end (`sacct`), when accounting is configured.
    fn accounted_state(&self, handle: &Handle) -> Option<String> {
        let out = self.call("sacct", &["-n", "-X", "-P", "-j", Self::id(handle), "-o", "State,ExitCode"]).ok()?;
        let line = out.lines().next()?.trim().to_string();
        (!line.is_empty()).then_some(line)
    }

    fn finish(&self, handle: &Handle, run: &Run) -> (ExecState, Usage) {
        let out = out_dir(&run.dir);
        let usage = crate::process::read_usage(&out, run.started.elapsed().as_secs_f64(), run.owner);
        if run.cancelled {
            return (ExecState::Cancelled, usage);
        }
        let code = read_tail(&out.join("exit_code"), run.owner).trim().parse::<i32>().ok();
        let stderr = read_tail(&out.join("stderr.txt"), run.owner);
        match code {
            Some(0) => (ExecState::Succeeded, usage),
            Some(124 | 137) if run.started.elapsed() >= run.time_limit => (
                ExecState::Failed {
                    reason: format!("exceeded its time limit of {} s", run.time_limit.as_secs()),
                    exit_code: code,
                },
                usage,
            ),
            Some(c) => {
                let reason = crate::process::failure_reason(c, None, &stderr, usage.peak_memory_mib, run.memory_mib);
                (ExecState::Failed { reason, exit_code: Some(c) }, usage)
            }
            None => {
                let how = self
                    .accounted_state(handle)
                    .map_or_else(String::new, |a| format!("; Slurm accounting says {}", a.replace('|', " exit ")));
                let reason = format!("the batch job ended without an exit status (killed by Slurm){how}");
                (ExecState::Failed { reason, exit_code: None }, usage)
            }
        }
    }
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn start(&self, spec: &RunSpec) -> Result<Handle, ExecError> {
        let env = run_env(spec, &work_dir(&spec.dir));
        if !on_run_path(&spec.command, &env) {
            return Err(ExecError::Start {
                command: spec.command.clone(),
                reason: "not found (not a file, not on the run's PATH)".into(),
            });
        }
        // the batch job runs as the run user, who must reach work/ and out/ through the run's
        // directory (mode 0711: no listing)
        let dir = prepare(spec, true).map_err(io)?;
        let work = work_dir(&dir);
        let out = out_dir(&dir);
        std::fs::create_dir_all(&out).map_err(io)?;
        give(&out, spec.user.as_ref()).map_err(io)?;
        for stale in ["exit_code", "usage.txt", "stdout.txt", "stderr.txt"] {
            let _ = std::fs::remove_file(out.join(stale));
        }
        std::fs::write(dir.join(RUN_ID_FILE), &spec.run_id).map_err(io)?;
        let quoted = |p: &Path| quote(&p.display().to_string());
        // the job's environment is its own variables only (`--export=NONE` below)
        let mut script = String::from("#!/bin/sh\n");
        for (k, v) in run_env(spec, &work) {
            let _ = writeln!(script, "export {k}={}", quote(&v));
        }
        let mut cmd = vec![];
        if Path::new("/usr/bin/time").is_file() {
            cmd.push(format!("/usr/bin/time -f '%e %U %S %M' -o {}", quoted(&out.join("usage.txt"))));
        }
        cmd.push(format!("timeout --signal=KILL {}", spec.time_limit.as_secs().max(1)));
        if crate::process::on_path("prlimit") {
            cmd.push(format!("prlimit --as={} --", spec.memory_mib.saturating_mul(1024 * 1024)));
        }
        cmd.push(quote(&spec.command));
        cmd.extend(spec.args.iter().map(|a| quote(a)));
        script.push_str(&cmd.join(" "));
        let _ = write!(script, "\necho $? > {}\n", quoted(&out.join("exit_code")));
        let path = dir.join("run.sh");
        std::fs::write(&path, script).map_err(io)?;
        let minutes = spec.time_limit.as_secs().div_ceil(60) + 1;
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            "--export=NONE".into(),
            format!("--job-name=sw-{}-{}", spec.job_id, spec.attempt),
            format!("--chdir={}", work.display()),
            format!("--output={}", out.join("stdout.txt").display()),
            format!("--error={}", out.join("stderr.txt").display()),
            format!("--time={minutes}"),
            format!("--cpus-per-task={}", spec.cpus.max(1)),
            // where memory is a consumable resource (CR_*_Memory) a job without --mem takes the
            // whole node's memory: runs would go one at a time
            format!("--mem={}", spec.memory_mib.max(1)),
        ];
        // submitted as the run's user: Slurm's own accounting and limits apply to that user
        let owner = match &spec.user {
            Some(u) if crate::sandbox::agent_is_root() => {
                args.push(format!("--uid={}", u.uid));
                args.push(format!("--gid={}", u.gid));
                Some(u.uid)
            }
            _ => None,
        };
        args.extend(self.sbatch_args.iter().cloned());
        args.push(path.display().to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.call("sbatch", &refs).map_err(|e| {
            // a submission that timed out may still have been accepted: do not leave it behind
            let name = format!("sw-{}-{}", spec.job_id, spec.attempt);
            if let Ok(ids) = self.call("squeue", &["-h", "-n", &name, "-o", "%i"]) {
                for id in ids.split_whitespace().filter(|i| i.chars().all(|c| c.is_ascii_digit())) {
                    let _ = self.call("scancel", &["--signal=KILL", "--full", id]);
                }
            }
            ExecError::Start { command: spec.command.clone(), reason: e.to_string() }
        })?;
        let id = out.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ExecError::Start { command: spec.command.clone(), reason: format!("sbatch answered {out:?}") });
        }
        let handle = Handle(format!("slurm:{id}"));
        std::fs::write(dir.join(HANDLE_FILE), &handle.0).map_err(io)?;
        mark_started(&dir).map_err(io)?;
        let run = Run {
            dir,
            owner,
            memory_mib: spec.memory_mib,
            time_limit: spec.time_limit,
            started: Instant::now(),
            cancelled: false,
        };
        self.runs.lock().map_err(io)?.insert(handle.clone(), run);
        Ok(handle)
    }

    fn poll(&self, handle: &Handle) -> Result<(ExecState, Usage), ExecError> {
        let run =
            self.runs.lock().map_err(io)?.get(handle).cloned().ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        if self.queued(handle)? {
            return Ok((
                ExecState::Running,
                Usage { wall_seconds: run.started.elapsed().as_secs_f64(), ..Usage::default() },
            ));
        }
        Ok(self.finish(handle, &run))
    }

    fn poll_interval(&self) -> Duration {
        // Slurm offers no wait on a job id to a client: poll its queue
        Duration::from_millis(50)
    }

    fn cancel(&self, handle: &Handle) -> Result<(), ExecError> {
        if !self.runs.lock().map_err(io)?.contains_key(handle) {
            return Err(ExecError::Unknown(handle.0.clone()));
        }
        if !self.queued(handle)? {
            return Ok(());
        }
        self.call("scancel", &["--signal=KILL", "--full", Self::id(handle)])?;
        // cancelled once Slurm took the order (a failed scancel leaves the run as it was)
        if let Some(run) = self.runs.lock().map_err(io)?.get_mut(handle) {
            run.cancelled = true;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.queued(handle)? && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn logs(&self, handle: &Handle) -> Result<(String, String), ExecError> {
        let runs = self.runs.lock().map_err(io)?;
        let run = runs.get(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Ok(read_logs(&out_dir(&run.dir), run.owner))
    }

    fn logs_bytes(&self, handle: &Handle) -> Result<(Vec<u8>, Vec<u8>), ExecError> {
        let runs = self.runs.lock().map_err(io)?;
        let run = runs.get(handle).ok_or_else(|| ExecError::Unknown(handle.0.clone()))?;
        Ok(read_logs_bytes(&out_dir(&run.dir), run.owner))
    }

    fn adopt(&self, spec: &RunSpec) -> Result<Option<Handle>, ExecError> {
        if !run_id_matches(&spec.dir, &spec.run_id) {
            return Ok(None);
        }
        let Some(handle) = handle_in(&spec.dir) else { return Ok(None) };
        // the handle file is writable by the run: take only a well-formed Slurm job id
        let id = handle.0.strip_prefix("slurm:").unwrap_or("");
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let run = Run {
            dir: spec.dir.canonicalize().unwrap_or_else(|_| spec.dir.clone()),
            owner: spec.user.as_ref().filter(|_| crate::sandbox::agent_is_root()).map(|u| u.uid),
            memory_mib: spec.memory_mib,
            time_limit: spec.time_limit,
            started: started_at(&spec.dir),
            cancelled: false,
        };
        self.runs.lock().map_err(io)?.entry(handle.clone()).or_insert(run);
        Ok(Some(handle))
    }

    fn running(&self) -> Result<Vec<Handle>, ExecError> {
        let out = self.call("squeue", &["-h", "-o", "%i %j"])?;
        let mut v: Vec<Handle> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, name)| name.starts_with("sw-"))
            .map(|(id, _)| Handle(format!("slurm:{id}")))
            .collect();
        v.sort();
        Ok(v)
    }
}
