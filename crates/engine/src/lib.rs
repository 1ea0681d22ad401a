//! Suanwang's engine (R3, R5, R7): the job lifecycle as a pure state machine.
//!
//! submitted → admitted (or refused, with reasons) → placed → data in transfer → running →
//! completed / failed / cancelled. Site failures send a lost site's jobs back through the
//! scheduler — to the site's paired backup first — under the same constraints. Every job is
//! metered: unified compute, energy, green energy, carbon (location- and market-based), data
//! moved by mode, money.
//!
//! Architecture invariant: pure — driven by commands and `advance_to(now)`, never reads the
//! wall clock, no IO, no randomness. It emits events; the caller decides what to do with them
//! (the server persists them, the twin aggregates them). Invariant checked by tests at every
//! step: submitted = completed + failed + refused + cancelled + in flight.

mod blocks;
mod engine;
mod fairshare;
mod idhash;
mod meter;

pub use blocks::Block;
pub use engine::{
    Assignment, CPU_TOLERANCE, CPU_TOLERANCE_S, Command, Counts, Engine, EngineConfig, EngineError, EngineSnapshot,
    Event, JobId, JobState, MAX_PREEMPTION_CANDIDATES, MEMORY_TOLERANCE, MEMORY_TOLERANCE_MIB, Outcome, Owner,
    RunOutcome, SiteGrant, Usage, WALL_GRACE_S,
};
pub use fairshare::{FairShare, Priority};
pub use meter::{Meter, MeterError};
