//! Suanwang's site agent (R2 grid connection, R3 failures): executors that run real work
//! behind one `Executor` trait. Every executor passes one conformance suite
//! (`tests/agent`): it runs a command, keeps its output, reports success, failure (with the
//! exit code and a reason) and cancellation, enforces a memory limit, kills the whole process
//! tree on cancel, and meters CPU time, peak memory and wall time.
//!
//! Architecture invariant: an executor never decides anything — it runs what it is given and
//! reports what happened; placement stays with the scheduler.

pub mod cgroup;
pub mod executor;
pub mod process;
pub mod sandbox;
pub mod slurm;

pub use cgroup::{Cgroups, RunGroup};
pub use executor::{
    ExecError, ExecState, Executor, HANDLE_FILE, Handle, RUN_ID_FILE, RunSpec, Usage, give, handle_in, prepare,
    run_id_in, run_id_matches, work_dir,
};
pub use process::ProcessExecutor;
pub use sandbox::{Isolation, RunUser, Sandbox};
pub use slurm::SlurmExecutor;
