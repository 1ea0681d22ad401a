//! Suanwang's digital twin — the "prototype test field" (原型技术实验场, R8): real workload
//! traces replayed through the very engine production runs, in virtual time, under each
//! scheduling policy, with KPIs compared side by side.
//!
//! Architecture invariant: reproducible — the same trace, scenario and seed give the same
//! numbers. IO stays at the edge: readers take any `BufRead`, the runner takes an iterator of
//! records and a progress callback; the binary opens files and draws progress.

pub mod capacity;
pub mod market;
pub mod report;
pub mod run;
pub mod scenario;
pub mod trace;

pub use run::{PolicyKpis, RunConfig, run_policy};
pub use scenario::Scenario;
pub use trace::{BadLine, Item, Reader, TraceKind, TraceRecord};
