//! Suanwang's domain model: the national network as data, the unified metric, energy profiles
//! and the job spec.
//!
//! Architecture invariant: this crate does no IO except parsing text it is given, and never
//! reads the clock — the caller passes `now` where time matters. Every input-driven path
//! returns an error instead of panicking.

pub mod dataid;
pub mod energy;
pub mod geo;
pub mod ident;
pub mod job;
pub mod metric;
pub mod money;
pub mod network;
pub mod time;

pub use energy::{GreenProfile, Season, Tariff};
pub use geo::{FibreModel, LatLon, LatencyTier};
pub use job::{Job, JobKind, Problem};
pub use metric::{Family, Peaks, Precision};
pub use money::Money;
pub use network::Network;
pub use time::Ts;
