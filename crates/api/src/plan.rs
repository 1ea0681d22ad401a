//! `POST /v1/plan` (and `suanwang plan --json`): where, when and how a job would run, and why —
//! or why no site can take it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::TransferMode;

/// The answer of a dry run: `placed` true with a `placement`, or false with a `refusal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanAnswer {
    pub placed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

impl PlanAnswer {
    pub fn placed(p: Placement) -> PlanAnswer {
        PlanAnswer { placed: true, placement: Some(p), refusal: None }
    }

    pub fn refused(r: Refusal) -> PlanAnswer {
        PlanAnswer { placed: false, placement: None, refusal: Some(r) }
    }
}

/// The scheduler's filters, in the order they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// The job itself is unusable: no site is tried.
    Spec,
    /// The site is down (lost), suspended or not approved.
    Unavailable,
    Region,
    Residency,
    Latency,
    Family,
    Accelerator,
    Architecture,
    Memory,
    PoolSize,
    Deadline,
    Capacity,
    Green,
    Budget,
    /// The job runs a command, and no live agent runs commands at the site.
    Agent,
    /// The tenant's wallet could not hold the placement's price (the refusal names the
    /// shortfall).
    Balance,
}

impl Filter {
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Spec => "spec",
            Filter::Unavailable => "unavailable",
            Filter::Region => "region",
            Filter::Residency => "residency",
            Filter::Latency => "latency",
            Filter::Family => "family",
            Filter::Accelerator => "accelerator",
            Filter::Architecture => "architecture",
            Filter::Memory => "memory",
            Filter::PoolSize => "pool_size",
            Filter::Deadline => "deadline",
            Filter::Capacity => "capacity",
            Filter::Green => "green",
            Filter::Budget => "budget",
            Filter::Agent => "agent",
            Filter::Balance => "balance",
        }
    }
}

/// The scorers; every one is "lower is better" on its raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    Money,
    Carbon,
    Wait,
    Latency,
    EastWest,
    Pairing,
    Load,
    /// 1 at a site outside the hubs, else 0 (hubs first among equals).
    Hub,
}

impl Scorer {
    pub fn as_str(self) -> &'static str {
        match self {
            Scorer::Money => "money",
            Scorer::Carbon => "carbon",
            Scorer::Wait => "wait",
            Scorer::Latency => "latency",
            Scorer::EastWest => "east_west",
            Scorer::Pairing => "pairing",
            Scorer::Load => "load",
            Scorer::Hub => "hub",
        }
    }
}

/// Why one site was refused: the filter and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rejection {
    pub site: String,
    pub filter: Filter,
    /// The pool whose options got furthest, for pool-level filters.
    pub pool: Option<String>,
    /// The value that failed (ms for latency), when there is one.
    pub value: Option<f64>,
    /// The limit it failed against (ms, GiB, units, share, fen).
    pub limit: Option<f64>,
    /// The reason as a sentence.
    pub detail: String,
}

/// No site can take the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Refusal {
    pub job: String,
    pub rejections: Vec<Rejection>,
}

impl std::fmt::Display for Refusal {
    /// `no site can take job "x": 3 site(s) by latency, 22 site(s) by capacity`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut counts: std::collections::BTreeMap<Filter, usize> = std::collections::BTreeMap::new();
        for r in &self.rejections {
            *counts.entry(r.filter).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(x, n)| format!("{n} site(s) by {}", x.as_str())).collect();
        write!(f, "no site can take job {:?}: {}", self.job, summary.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScoreLine {
    pub scorer: Scorer,
    pub raw: f64,
    pub normalised: f64,
    pub weight: f64,
    pub weighted: f64,
}

/// Money of one option, integer fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Cost {
    pub compute_fen: i64,
    pub energy_fen: i64,
    pub transfer_fen: i64,
    pub total_fen: i64,
}

/// How the input data moves, when it arrives and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Transfer {
    pub mode: TransferMode,
    /// Seconds from the decision until the data is at the site.
    pub seconds: i64,
    pub cost_fen: i64,
}

/// One way to run the job: a pool, a start, a transfer mode, and what it costs. Times are ms
/// since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Candidate {
    pub site: String,
    pub pool: String,
    pub start_at: i64,
    pub end_at: i64,
    pub transfer: Transfer,
    pub cost: Cost,
    pub energy_kwh: f64,
    pub carbon_kg: f64,
    pub carbon_location_kg: f64,
    pub green_share: f64,
    pub latency_ms: f64,
    pub score: f64,
    pub scores: Vec<ScoreLine>,
}

/// A window of 15-minute slots reserved on a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub units: u32,
}

/// What placing the job reserves (the pool by its index in the scheduler's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    pub pool: u64,
    pub window: Window,
}

/// A decision: where, when, how the data moves — and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    pub job: String,
    pub policy: String,
    pub chosen: Candidate,
    pub run_s: i64,
    /// How long the start was shifted past the earliest feasible one for a better slot, s.
    pub deferred_s: i64,
    pub runners_up: Vec<Candidate>,
    pub rejections: Vec<Rejection>,
    pub options_considered: u64,
    pub reservation: Reservation,
}
