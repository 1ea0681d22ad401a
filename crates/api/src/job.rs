//! Jobs on the wire: the spec a tenant submits (`POST /v1/jobs`, `POST /v1/plan`), the view the
//! API shows (`GET /v1/jobs`, `GET /v1/jobs/{id}`, cancel), and a job's output (`…/logs`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job is in its life: submitted → admitted (or refused) → placed / in_transfer →
/// running → completed, failed or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Submitted,
    Admitted,
    /// Placed; waiting for its start slot (data, if any, already in place).
    Placed,
    /// Placed; its input data is moving to the site.
    InTransfer,
    Running,
    Completed,
    Failed,
    Cancelled,
    Refused,
}

impl JobState {
    pub const ALL: [JobState; 9] = [
        JobState::Submitted,
        JobState::Admitted,
        JobState::Placed,
        JobState::InTransfer,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Refused,
    ];

    /// The name on the wire (`in_transfer`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Admitted => "admitted",
            JobState::Placed => "placed",
            JobState::InTransfer => "in_transfer",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Completed, failed, cancelled or refused: nothing more happens to the job.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled | JobState::Refused)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How input data reaches a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// No input, or the data is already at the site.
    None,
    /// Best-effort share of the regular network.
    Network,
    /// Reserved rate for the transfer's window (弹性带宽).
    Elastic,
    /// Task-style bulk copy in the night off-peak window (任务式传输).
    Bulk,
    /// Disks shipped (数据快递).
    Express,
}

impl TransferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::None => "none",
            TransferMode::Network => "network",
            TransferMode::Elastic => "elastic",
            TransferMode::Bulk => "bulk",
            TransferMode::Express => "express",
        }
    }
}

/// What one job (attempt) used. Money is integer fen (1/100 CNY).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Meter {
    /// Unified compute delivered: units × unified value per unit × hours (ucu·h).
    pub ucu_hours: f64,
    /// Facility energy, kWh (IT power × time × PUE).
    pub energy_kwh: f64,
    /// The part of it from green power, kWh.
    pub green_kwh: f64,
    pub carbon_location_kg: f64,
    pub carbon_market_kg: f64,
    pub transfer_gb: f64,
    pub transfer_mode: Option<TransferMode>,
    pub compute_fen: i64,
    pub energy_fen: i64,
    pub transfer_fen: i64,
    pub money_fen: i64,
}

/// What a real run used, as its agent measured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_memory_mib: f64,
    pub wall_seconds: f64,
}

/// A job as the API shows it. Times are milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobView {
    pub id: u64,
    pub name: String,
    pub tenant: String,
    /// The job's kind (`batch`, `training`, …).
    pub kind: String,
    pub state: JobState,
    /// Where it was placed (last attempt).
    pub site: Option<String>,
    pub pool: Option<String>,
    /// The planned start of the last attempt, ms since the epoch.
    pub start_at: Option<i64>,
    /// The planned end of the last attempt, ms since the epoch.
    pub end_at: Option<i64>,
    /// When the last attempt actually started, ms since the epoch (once it runs).
    #[serde(default)]
    pub started_at: Option<i64>,
    /// When the job ended, ms since the epoch (once it has).
    #[serde(default)]
    pub ended_at: Option<i64>,
    pub submitted_at: i64,
    /// The principal that submitted it.
    pub submitted_by: String,
    pub updated_at: i64,
    pub attempts: u32,
    /// Why it was refused or failed (or moved, for a later attempt).
    pub reason: Option<String>,
    /// Metered use, once completed (or cancelled while running).
    pub meter: Option<Meter>,
    /// What the last real run used, as its agent measured it (jobs with a `run` section).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The spec as submitted.
    #[schemars(with = "JobSpec")]
    pub spec: Value,
}

/// `GET /v1/jobs`: a page of jobs in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page; absent (null) on the last page.
    pub next_after: Option<u64>,
}

/// `GET /v1/jobs/{id}/logs`: the output of a job run by an agent (the last 64 KiB of each
/// stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JobLogs {
    pub id: u64,
    pub state: JobState,
    pub site: Option<String>,
    pub stdout: String,
    pub stderr: String,
}

/// A job spec: what a tenant asks the network to run (the TOML files of `examples/` as JSON).
/// The server checks every field (`suanwang job check` does the same locally) and answers 422
/// naming the first field at fault and listing every problem. Optional fields may be absent or
/// null. Beyond this schema the server checks what only the network knows: `origin` must be a
/// demand city, `input.location` a city or site, `allowed_sites` sites and `allowed_regions`
/// hubs or green regions (`GET /v1/network`), `resources.accelerator` a catalogue model, and a
/// `deadline` must be in the future.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = JobSpec::example())]
pub struct JobSpec {
    /// 1–128 ASCII letters, digits, '.', '_' or '-'.
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9._-]+$"))]
    pub name: String,
    /// The tenant's id; a tenant token may only submit its own.
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$"))]
    pub tenant: String,
    pub kind: JobKind,
    /// The demand city the work comes from (a city id of `GET /v1/network`).
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$"))]
    pub origin: String,
    pub resources: Resources,
    pub work: Work,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// The one-way latency the origin needs: city ≤ 1 ms, regional ≤ 5 ms, cross-hub ≤ 20 ms,
    /// or none (the default). A job of a kind that is not delay-tolerant with a tier is never
    /// deferred to a later slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_tier: Option<LatencyTier>,
    /// Finish before this instant (RFC 3339, e.g. `2027-01-31T00:00:00Z`); must be in the
    /// future. Delay-tolerant work is not deferred past what the deadline allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), extend("format" = "date-time"))]
    pub deadline: Option<String>,
    /// How long the scheduler may defer the start for greener or cheaper hours: a duration
    /// (`"6h"`, `"1h30m"`, `"0s"`) or seconds. Default: the operator's for the job's kind
    /// (`data/policy.toml`: none for inference, 2 h for batch and HPC, 4 h for analytics, 8 h for
    /// training, fine-tuning and rendering, 12 h for backup); at most 366 days. Waiting for
    /// capacity is not deferral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_within: Option<StartWithin>,
    /// The most the tenant will pay, fen (1/100 CNY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2_305_843_009_213_693_951_i64))]
    pub budget_fen: Option<i64>,
    /// The least share of green power over the run, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_green_share: Option<f64>,
    /// Hub or green-region ids the job may run in (empty: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$")))]
    pub allowed_regions: Option<Vec<String>>,
    /// Site ids the job may run on (empty: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$")))]
    pub allowed_sites: Option<Vec<String>>,
    /// 0 (lowest) to 9 (highest); default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9))]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptible: Option<bool>,
    /// Seconds of running between the job's checkpoints (a moved job resumes from the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_622_400))]
    pub checkpoint_s: Option<u32>,
    /// What to execute, for jobs that run for real on an agent's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// Run on a market contract of the tenant's (`suanwang contract list`): the job is
    /// confined to the seller's sites at the contract's place and to its window (which must have
    /// begun), its family and model; its compute and energy were paid at the auction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub contract: Option<u64>,
    /// Bid for the job's capacity instead of paying the posted price (issue 16): the most the
    /// tenant pays per unit·hour, fen. The job becomes a bid (`POST /v1/jobs` answers 202 with
    /// the order) on the open ask that fits it — its family and model, one of its allowed places,
    /// a window long enough for its run time that ends by its deadline, floor ≤ `max_price` and
    /// units enough — the earliest window, then the lowest floor. The bid holds units ×
    /// `max_price` × the window's hours of the wallet until the clearing; when it wins, the job is
    /// submitted on the contract as its window begins (the order's `job_id`); when it loses,
    /// the hold is released and the job is not run. Not with `contract`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_price: Option<u64>,
}

impl JobSpec {
    /// A small batch job of tenant `acme-ai` from Beijing: 4 cores for 10 minutes.
    pub fn example() -> JobSpec {
        JobSpec {
            name: "nightly-report".into(),
            tenant: "acme-ai".into(),
            kind: JobKind::Batch,
            origin: "beijing".into(),
            resources: Resources {
                family: Family::General,
                count: 4,
                accelerator: None,
                min_throughput: None,
                memory_gib: Some(2),
                variants: None,
            },
            work: Work::RunTime { run_time_s: 600 },
            input: None,
            latency_tier: None,
            deadline: None,
            start_within: None,
            budget_fen: None,
            min_green_share: None,
            allowed_regions: None,
            allowed_sites: None,
            priority: None,
            preemptible: None,
            checkpoint_s: None,
            run: None,
            contract: None,
            max_price: None,
        }
    }
}

/// A job's `start_within`: a duration in units (`"1h30m"`) or whole seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StartWithin {
    Seconds(#[schemars(range(min = 0, max = 31_622_400))] u32),
    Text(
        #[schemars(
            length(min = 1, max = 32),
            regex(pattern = r"^\s*(\d+|\d+d(\d+h)?(\d+m)?(\d+s)?|\d+h(\d+m)?(\d+s)?|\d+m(\d+s)?|\d+s)\s*$")
        )]
        String,
    ),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Inference,
    Training,
    FineTuning,
    Rendering,
    Analytics,
    Backup,
    Hpc,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyTier {
    City,
    Regional,
    CrossHub,
    None,
}

/// The three families of compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// CPU (通用算力); units are cores.
    General,
    /// GPU/NPU for AI (智能算力); units are accelerator cards.
    Intelligent,
    /// HPC, FP64 (超算算力); units are nodes.
    Super,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp64,
    Fp32,
    Fp16,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "aarch64")]
    Aarch64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    Internal,
    /// May not leave its region: the compute comes to the data.
    Restricted,
}

/// What the job needs at once, in one site (a gang). Name an accelerator model or a minimum
/// throughput, not both; an accelerator only for the intelligent family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = {"required": ["accelerator"], "properties": {"accelerator": {"type": "string"}}},
    "then" = {"properties": {"family": {"const": "intelligent"}}},
    "not" = {"required": ["accelerator", "min_throughput"],
        "properties": {"accelerator": {"type": "string"}, "min_throughput": {"type": "object"}}},
))]
pub struct Resources {
    pub family: Family,
    /// Units at once: cores, accelerators or nodes by family.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub count: u32,
    /// An accelerator model of the catalogue (intelligent family only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub accelerator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_throughput: Option<Throughput>,
    /// Memory per unit, GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16_384))]
    pub memory_gib: Option<u32>,
    /// Architecture variants the job can run as (absent or empty: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<Variant>>,
}

/// A minimum per-unit throughput at a precision, instead of naming a device model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throughput {
    pub precision: Precision,
    /// Per-unit peak at that precision, TFLOPS (TOPS for int8).
    #[schemars(range(min = 0.000_001, max = 1_000_000.0))]
    pub tflops: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub arch: Arch,
    /// An accelerator software stack of the catalogue (`cuda`, `cann`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub accelerator_kind: Option<String>,
}

/// How long the job runs: exactly one of a wall time or an amount of work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Work {
    RunTime {
        /// Wall time on the requested resources, seconds (at most a year).
        #[schemars(range(min = 1, max = 31_622_400))]
        run_time_s: u32,
    },
    Amount {
        /// Work in PFLOP (FP32-equivalent, the unified metric): faster units finish sooner.
        #[schemars(range(min = 0.000_000_001, max = 1e15))]
        amount_pflop: f64,
    },
}

/// The job's input data: its size and where it is, or a registered dataset's id (the control
/// plane fills size, location — the replica nearest the job's origin — and classification from
/// the registry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["size_gb", "location"]}, {"required": ["dataset"]}]))]
pub struct Input {
    /// GB, at most 100 PB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100_000_000.0))]
    pub size_gb: Option<f64>,
    /// The city or site id where the data is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$"))]
    pub location: Option<String>,
    /// A registered dataset (`prefix/suffix`, e.g. `88.156.1/1KX9QZ4M7T2BDE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 128), pattern(r"^[0-9]+(\.[0-9]+)*/[0-9A-Za-z*~$=]+$"))]
    pub dataset: Option<String>,
    /// Default public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
}

/// The command an agent runs (as an unprivileged user, in a sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The program (a name on PATH or a path): not blank, at most 4,096 bytes, no NUL.
    #[schemars(length(min = 1, max = 4096), pattern(r"^[^\u0000]*[^\s\u0000][^\u0000]*$"))]
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub args: Option<Vec<String>>,
    /// Environment variables: names of letters, digits and '_', not starting with a digit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}))]
    pub env: Option<BTreeMap<String, String>>,
}
