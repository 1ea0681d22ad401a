//! The executor contract.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sandbox::RunUser;

/// What to run: one attempt of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub job_id: u64,
    /// The fencing token: a later attempt of the same job supersedes this one.
    pub attempt: u32,
    pub command: String,
    pub args: Vec<String>,
    /// The run's own variables (its environment is these, `PATH`, `HOME` and `SUANWANG_*`;
    /// nothing of the agent's).
    pub env: Vec<(String, String)>,
    /// The run's directory, the agent's: control files (handle, run id, usage, output) live
    /// here, out of the run's reach; the run works in its `work/` subdirectory ([`work_dir`]).
    pub dir: PathBuf,
    /// The control plane's unguessable id of this attempt: a run is adopted after a restart
    /// only when its directory records the same id.
    pub run_id: String,
    /// The user the run executes as (`None`: the agent's own).
    pub user: Option<RunUser>,
    /// Memory limit, MiB (address space for processes, `--mem` for Slurm).
    pub memory_mib: u64,
    /// Wall-time limit.
    pub time_limit: Duration,
    pub cpus: u32,
}

/// Variables of the agent's own environment a run must not see: the agent's credentials.
pub(crate) const HIDDEN_ENV: &[&str] = &["SUANWANG_TOKEN"];

/// The whole environment of a run: `PATH` (the job's own, else [`RUN_PATH`]), `HOME` (its work
/// directory), the job's variables and its `SUANWANG_JOB_ID`, `SUANWANG_ATTEMPT` — nothing of the
/// agent's own environment.
pub(crate) fn run_env(spec: &RunSpec, work: &std::path::Path) -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_string(), RUN_PATH.to_string()), ("HOME".into(), work.display().to_string())];
    for (k, v) in &spec.env {
        if HIDDEN_ENV.contains(&k.as_str()) {
            continue;
        }
        env.retain(|(key, _)| key != k);
        env.push((k.clone(), v.clone()));
    }
    env.push(("SUANWANG_JOB_ID".into(), spec.job_id.to_string()));
    env.push(("SUANWANG_ATTEMPT".into(), spec.attempt.to_string()));
    env
}

/// Whether `cmd` is a file, or found on the run's `PATH` (where the run will look for it).
pub(crate) fn on_run_path(cmd: &str, env: &[(String, String)]) -> bool {
    if cmd.contains('/') {
        return std::path::Path::new(cmd).is_file();
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(RUN_PATH, |(_, v)| v.as_str());
    std::env::split_paths(path).any(|d| d.join(cmd).is_file())
}

/// The file in a run's working directory that names its handle (for `Executor::adopt`).
pub const HANDLE_FILE: &str = "handle";

/// The directory a run works in (its current directory, and the only host path it may write).
pub fn work_dir(dir: &std::path::Path) -> PathBuf {
    dir.join("work")
}

/// The file in a run's directory that records its run id.
pub const RUN_ID_FILE: &str = "run_id";

/// The default `PATH` of a run (its environment starts empty).
pub const RUN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Makes a run's directories: `dir` (the agent's, mode 0700 — 0711 when `traversable`, for a
/// run user who must reach `work/` through it without namespaces) and `work/` (0700, owned by
/// the run's user). Returns the canonical `dir`.
pub fn prepare(spec: &RunSpec, traversable: bool) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(&spec.dir)?;
    let dir = spec.dir.canonicalize()?;
    let mode = if traversable { 0o711 } else { 0o700 };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    let work = work_dir(&dir);
    std::fs::create_dir_all(&work)?;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700))?;
    give(&work, spec.user.as_ref())?;
    Ok(dir)
}

/// Hands `path` to the run's user (when the agent may: it is root).
pub fn give(path: &std::path::Path, user: Option<&RunUser>) -> std::io::Result<()> {
    match user {
        Some(u) if crate::sandbox::agent_is_root() => std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid)),
        _ => Ok(()),
    }
}

/// Whether `dir` records the run id `run_id` (an earlier instance started this attempt for
/// the same control plane).
pub fn run_id_matches(dir: &std::path::Path, run_id: &str) -> bool {
    !run_id.is_empty() && std::fs::read_to_string(dir.join(RUN_ID_FILE)).is_ok_and(|r| r.trim() == run_id)
}

/// The run id recorded in `dir`, if any.
pub fn run_id_in(dir: &std::path::Path) -> Option<String> {
    let r = std::fs::read_to_string(dir.join(RUN_ID_FILE)).ok()?;
    let r = r.trim();
    (!r.is_empty()).then(|| r.to_string())
}

/// The most of a run's output file read back (its tail): a run that writes gigabytes must not
/// exhaust the agent.
pub const MAX_LOG_READ: u64 = 1024 * 1024;

/// The tail (at most `MAX_LOG_READ` bytes) of a file a run may have written, as text (invalid
/// UTF-8 replaced). With `owner`, the file must be a regular file owned by that uid: a run that
/// replaced its output by a link to a file of root's does not get that file read back to it.
pub(crate) fn read_tail(path: &std::path::Path, owner: Option<u32>) -> String {
    String::from_utf8_lossy(&read_tail_bytes(path, owner)).into_owned()
}

/// The tail of a file a run may have written, as bytes (see [`read_tail`]).
pub(crate) fn read_tail_bytes(path: &std::path::Path, owner: Option<u32>) -> Vec<u8> {
    use std::io::{Read as _, Seek as _};
    use std::os::unix::fs::MetadataExt as _;
    let Ok(mut f) = std::fs::File::open(path) else { return vec![] };
    let Ok(meta) = f.metadata() else { return vec![] };
    if !meta.is_file() || owner.is_some_and(|uid| meta.uid() != uid) {
        return vec![];
    }
    let skip = meta.len().saturating_sub(MAX_LOG_READ);
    if skip > 0 && f.seek(std::io::SeekFrom::Start(skip)).is_err() {
        return vec![];
    }
    let mut buf = Vec::new();
    let _ = f.take(MAX_LOG_READ).read_to_end(&mut buf);
    buf
}

/// Records in `workdir` that a run starts now (wall clock), so an adopting instance knows how
/// long it has run.
pub(crate) fn mark_started(workdir: &std::path::Path) -> std::io::Result<()> {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    std::fs::write(workdir.join("started_ms"), ms.to_string())
}

/// A run's standard output and standard error, as kept in `dir` (files of `owner`'s when given).
pub(crate) fn read_logs(dir: &std::path::Path, owner: Option<u32>) -> (String, String) {
    (read_tail(&dir.join("stdout.txt"), owner), read_tail(&dir.join("stderr.txt"), owner))
}

/// The same as bytes, as the run wrote them.
pub(crate) fn read_logs_bytes(dir: &std::path::Path, owner: Option<u32>) -> (Vec<u8>, Vec<u8>) {
    (read_tail_bytes(&dir.join("stdout.txt"), owner), read_tail_bytes(&dir.join("stderr.txt"), owner))
}

/// When the run in `workdir` started, as an `Instant` (now, if it is not recorded).
pub(crate) fn started_at(workdir: &std::path::Path) -> std::time::Instant {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let then_ms = std::fs::read_to_string(workdir.join("started_ms"))
        .ok()
        .and_then(|t| t.trim().parse::<u128>().ok())
        .unwrap_or(now_ms);
    let ago = std::time::Duration::from_millis(u64::try_from(now_ms.saturating_sub(then_ms)).unwrap_or(0));
    std::time::Instant::now().checked_sub(ago).unwrap_or_else(std::time::Instant::now)
}

/// The handle an earlier instance left in `workdir`, if any.
pub fn handle_in(workdir: &std::path::Path) -> Option<Handle> {
    let text = std::fs::read_to_string(workdir.join(HANDLE_FILE)).ok()?;
    let h = text.trim();
    (!h.is_empty()).then(|| Handle(h.to_string()))
}

/// An executor's name for a run (a process-group id, a Slurm job id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Handle(pub String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ExecState {
    Running,
    Succeeded,
    Failed { reason: String, exit_code: Option<i32> },
    Cancelled,
}

impl ExecState {
    pub fn is_done(&self) -> bool {
        !matches!(self, ExecState::Running)
    }
}

/// Metered use of a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_memory_mib: f64,
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start {command:?}: {reason}")]
    Start { command: String, reason: String },
    #[error("no run {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Io(String),
}

/// What an executor calls when a run may have changed state (see [`Executor::watch`]).
pub type OnChange = std::sync::Arc<dyn Fn(&Handle) + Send + Sync>;

/// Runs work at a site. Implementations: `ProcessExecutor`, `SlurmExecutor`.
pub trait Executor: Send + Sync {
    fn name(&self) -> &'static str;
    /// Starts a run; returns at once.
    fn start(&self, spec: &RunSpec) -> Result<Handle, ExecError>;
    /// Where the run is now, and its use so far (final once done).
    fn poll(&self, handle: &Handle) -> Result<(ExecState, Usage), ExecError>;
    /// How often `wait` polls (neither a child's exit nor a Slurm job offers a wait with a
    /// timeout to a client).
    fn poll_interval(&self) -> Duration;
    /// How often the agent looks at its runs in flight: a finished run is reported within
    /// about this long (each look costs a `poll` per run).
    fn check_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
    /// Blocks until the run is done or `timeout` passes; returns the state then.
    fn wait(&self, handle: &Handle, timeout: Duration) -> Result<(ExecState, Usage), ExecError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (state, usage) = self.poll(handle)?;
            if state.is_done() || std::time::Instant::now() >= deadline {
                return Ok((state, usage));
            }
            std::thread::sleep(self.poll_interval());
        }
    }
    /// Calls `on_change` when the run may have changed state — it ended (the child's exit), or
    /// reached its time limit — so the agent learns it at once instead of at its next check;
    /// `poll` then says what happened. It may be called more than once, and is called at once
    /// for a run that ended before it was watched (a run may end before the agent watches it).
    /// `false`: this executor has no such event for this run, and the agent polls it every
    /// `check_interval`.
    fn watch(&self, handle: &Handle, on_change: OnChange) -> bool {
        let _ = (handle, on_change);
        false
    }
    /// Stops the run and everything it started.
    fn cancel(&self, handle: &Handle) -> Result<(), ExecError>;
    /// The run's standard output and standard error so far (invalid UTF-8 replaced).
    fn logs(&self, handle: &Handle) -> Result<(String, String), ExecError>;
    /// The same as the bytes the run wrote (output need not be text).
    fn logs_bytes(&self, handle: &Handle) -> Result<(Vec<u8>, Vec<u8>), ExecError> {
        self.logs(handle).map(|(out, err)| (out.into_bytes(), err.into_bytes()))
    }
    /// Runs this executor knows of that are still running (for reconciling after a restart).
    fn running(&self) -> Result<Vec<Handle>, ExecError>;
    /// Reconciling after a restart: the run of `spec` that an earlier instance started (it left
    /// its handle in `spec.workdir`), taken over as if this instance had started it: running
    /// or, if it ended meanwhile, with its final state. `None` when the directory holds no run.
    fn adopt(&self, spec: &RunSpec) -> Result<Option<Handle>, ExecError>;
}
