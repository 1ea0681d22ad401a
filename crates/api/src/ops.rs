//! Errors, health, KPIs and the operator's answers.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::network::Approval;

/// Every 4xx/5xx body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_spec`, `unauthorized`, `forbidden`, `not_found`,
    /// `bad_query`, `bad_path`, `method_not_allowed`, `duplicate_key`, …
    pub code: String,
    pub message: String,
    pub detail: String,
    pub hint: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Jobs ever submitted.
    pub jobs: u64,
    /// Jobs in memory that have not ended.
    #[serde(default)]
    pub live_jobs: u64,
    /// Jobs in memory that ended lately (a bounded cache; the rest are in the store).
    #[serde(default)]
    pub cached_jobs: u64,
    /// The serving process.
    #[serde(default)]
    pub pid: u32,
    /// When it started serving, ms since the epoch (a restart changes it).
    #[serde(default)]
    pub started_at_ms: u64,
    /// `leader`, or `follower` (an instance of several that forwards to the leader; issue 17).
    /// A single control plane leads.
    #[serde(default = "leader")]
    pub role: String,
    /// `--instance`, when the control plane runs as several instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The leader's lease epoch (0 for a single control plane).
    #[serde(default)]
    pub epoch: u64,
    /// The leading instance and where it answers, as this instance last read the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

fn leader() -> String {
    "leader".into()
}

/// `GET /v1/kpis`: what the network delivered (metered jobs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Kpis {
    /// Jobs per state (`completed`, `running`, …); states with none are absent.
    pub jobs_by_state: BTreeMap<String, u64>,
    pub energy_kwh: f64,
    /// Green share of that energy, 0–1.
    pub green_share: f64,
    /// Market-based kg CO2.
    pub carbon_kg: f64,
    pub cost_fen: i64,
    /// Share of the delivered ucu·h that ran in the 8 hubs, 0–1.
    pub hub_share: f64,
    /// First placements made (moves not counted).
    pub placements: u64,
    /// Jobs no site could take.
    #[serde(default)]
    pub refusals: u64,
    /// Jobs ever submitted.
    #[serde(default)]
    pub jobs: u64,
    /// Unified compute delivered, ucu·h (cost per unit of compute = `cost_fen / ucu_hours`).
    #[serde(default)]
    pub ucu_hours: f64,
    /// Green share of the energy used by jobs in the hubs, 0–1 (the seed's 80 % target is for
    /// hub data centres).
    #[serde(default)]
    pub hub_green_share: f64,
    /// Data moved to jobs' sites, GB, and what it cost (transfer cost per GB = `transfer_fen /
    /// transfer_gb`).
    #[serde(default)]
    pub transfer_gb: f64,
    #[serde(default)]
    pub transfer_fen: i64,
    /// The part of it that crossed from one hub to another.
    #[serde(default)]
    pub inter_hub_transfer_gb: f64,
    #[serde(default)]
    pub inter_hub_transfer_fen: i64,
    /// Now: the share of the whole network's capacity held by running jobs (the national
    /// average), and the hubs' utilisation divided by it (absent while nothing runs).
    #[serde(default)]
    pub network_utilization: f64,
    #[serde(default)]
    pub hub_utilization_ratio: Option<f64>,
    /// Now: per latency tier (`city`, `regional`, `cross-hub`), the share of the last 15
    /// minutes' jobs with that tier that a site within it took.
    #[serde(default)]
    pub latency_tier_attainment: BTreeMap<String, f64>,
    /// The policy's targets these are judged against (`data/policy.toml`).
    #[serde(default)]
    pub targets: KpiTargets,
    /// Enclaves (飞地, R1): per contract holder (a city's tenant), the ended jobs it ran on its
    /// contracts at western hubs' sites — counted as the holder's, wherever they ran.
    #[serde(default)]
    pub enclaves: BTreeMap<String, EnclaveKpi>,
}

/// One holder's enclave work in `GET /v1/kpis`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnclaveKpi {
    pub jobs: u64,
    pub ucu_hours: f64,
    pub energy_kwh: f64,
    /// Green share of that energy, 0–1.
    pub green_share: f64,
    /// The western hub sites it ran at.
    pub sites: Vec<String>,
}

/// The targets of `GET /v1/kpis`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KpiTargets {
    /// Hub utilisation ÷ national average that counts as "significantly above".
    pub utilisation_ratio: f64,
    /// Green-power share of hub data centres.
    pub green_share: f64,
}

/// `POST /v1/admin/restart` (202): the process re-executes itself; `/healthz` shows a new
/// `started_at_ms` once it serves again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestartAnswer {
    pub restarting: bool,
    /// The process that restarts (it keeps its pid).
    pub pid: u32,
}

/// `POST /v1/sites/{site}/suspend` and `…/resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SuspendAnswer {
    pub site: String,
    pub suspended: bool,
    /// Whether the site's placed and running jobs were moved now (`move=true`).
    pub moved_jobs: bool,
}

/// `POST /v1/sites/{site}/approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApproveAnswer {
    pub site: String,
    pub approval: Approval,
    /// A suspended site stays suspended until resumed.
    pub suspended: bool,
    pub owner: String,
    pub owner_role: String,
}

/// `GET /v1/whoami`: the principal a token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    pub name: String,
    /// `operator`, `regulator`, `provider`, `carrier`, `tenant` or `funder`.
    pub role: String,
}
