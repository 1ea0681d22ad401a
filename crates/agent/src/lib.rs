//! Suanwang's site agent (R2 grid connection, R3 failures): the agent loop, which connects a
//! machine to the control plane as a site and runs the work assigned to it, and the executors
//! that run real work behind one `Executor` trait.
//!
//! - `control`: the agent protocol behind the `ControlPlane` trait (HTTP, and a fake in `fake`).
//! - `reconcile`: what to start, adopt, stop and report — a pure function of what runs and
//!   what is assigned.
//! - `runner`: the loop that observes, reconciles and acts; a run's end is an executor event.
//! - `process`, `slurm`: the executors. Every executor passes one conformance suite
//!   (`tests/agent`): it runs a command, keeps its output, reports success, failure (with the
//!   exit code and a reason) and cancellation, enforces a memory limit, kills the whole process
//!   tree on cancel, and meters CPU time, peak memory and wall time.
//!
//! Architecture invariant: an executor never decides anything — it runs what it is given and
//! reports what happened; placement stays with the scheduler, and what the agent does next
//! with `reconcile`.

pub mod cgroup;
pub mod checkpoint;
pub mod control;
pub mod executor;
pub mod fake;
pub mod machine;
pub mod process;
pub mod reconcile;
pub mod runner;
pub mod sandbox;
pub mod slurm;
pub mod users;

pub use cgroup::{Cgroups, RunGroup};
pub use control::{ControlPlane, CpError, HttpControlPlane};
pub use executor::{
    ExecError, ExecState, Executor, HANDLE_FILE, Handle, OnChange, RUN_ID_FILE, RunSpec, Usage, give, handle_in,
    prepare, run_id_in, run_id_matches, work_dir,
};
pub use process::ProcessExecutor;
pub use reconcile::{Action, Followed, OnDisk, RunKey, reconcile};
pub use runner::{Agent, Config};
pub use sandbox::{Isolation, RunUser, Sandbox};
pub use slurm::SlurmExecutor;
pub use users::{RunOptions, Users};

/// Why the agent cannot serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// A flag or file the agent was given is not usable (the message names it).
    #[error("{0}")]
    Setup(String),
    /// The control plane refused the agent for good (a bad token, a site not its own).
    #[error("{0}")]
    Refused(String),
    /// The control plane cannot be reached.
    #[error("{0}")]
    Unreachable(String),
}
