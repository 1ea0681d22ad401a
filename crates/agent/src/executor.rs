//! The executor contract.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to run: one attempt of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub job_id: u64,
    /// The fencing token: a later attempt of the same job supersedes this one.
    pub attempt: u32,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory; output files are kept here.
    pub workdir: PathBuf,
    /// Memory limit, MiB (address space for processes, `--mem` for Slurm).
    pub memory_mib: u64,
    /// Wall-time limit.
    pub time_limit: Duration,
    pub cpus: u32,
}

/// Variables of the agent's own environment a run must not see: the agent's credentials.
pub(crate) const HIDDEN_ENV: &[&str] = &["SUANWANG_TOKEN"];

/// The file in a run's working directory that names its handle (for `Executor::adopt`).
pub const HANDLE_FILE: &str = "handle";

/// Records in `workdir` that a run starts now (wall clock), so an adopting instance knows how
/// long it has run.
pub(crate) fn mark_started(workdir: &std::path::Path) -> std::io::Result<()> {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    std::fs::write(workdir.join("started_ms"), ms.to_string())
}

/// A run's standard output and standard error, as kept in its directory.
pub(crate) fn read_logs(workdir: &std::path::Path) -> (String, String) {
    let read = |f: &str| std::fs::read_to_string(workdir.join(f)).unwrap_or_default();
    (read("stdout.txt"), read("stderr.txt"))
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
    /// Stops the run and everything it started.
    fn cancel(&self, handle: &Handle) -> Result<(), ExecError>;
    /// The run's standard output and standard error so far.
    fn logs(&self, handle: &Handle) -> Result<(String, String), ExecError>;
    /// Runs this executor knows of that are still running (for reconciling after a restart).
    fn running(&self) -> Result<Vec<Handle>, ExecError>;
    /// Reconciling after a restart: the run of `spec` that an earlier instance started (it left
    /// its handle in `spec.workdir`), taken over as if this instance had started it: running
    /// or, if it ended meanwhile, with its final state. `None` when the directory holds no run.
    fn adopt(&self, spec: &RunSpec) -> Result<Option<Handle>, ExecError>;
}
