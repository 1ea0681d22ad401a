//! Suanwang's scheduler (R3, R5, R1 transfer modes): given the network, the load already
//! placed, prices and energy profiles, and a job, decide **where** (site and pool), **when**
//! (start slot) and **how the data moves** (transfer mode), under hard constraints, minimising
//! a policy's objective — and say why.
//!
//! Architecture invariant: pure and deterministic. Time comes in as arguments (`now: Ts`),
//! there is no randomness, no IO and no clock; the same calls in the same order give the same
//! placements. Every placement carries its explanation; every refusal names the filter that
//! refused each site.

pub mod batch;
pub mod place;
pub mod policy;
pub mod series;
pub mod slots;
pub mod timeline;
pub mod transfer;
pub mod workload;

pub use place::{
    Candidate, Config, Cost, Filter, Placement, PoolReservation, Refusal, Rejection, SchedSnapshot, Scheduler,
};
pub use policy::{Policy, Scorer, Weights};
pub use timeline::{Reservation, Timeline, TimelineError};
pub use transfer::{TransferMode, TransferModel};
