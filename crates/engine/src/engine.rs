//! The state machine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use suanwang_core::job::{Job, Work};
use suanwang_core::network::{AgentSite, FairSharePolicy, Side};
use suanwang_core::{Family, JobKind, LatencyTier, Network, Ts};
use suanwang_economy::book::Spot;
use suanwang_sched::{Config, Filter, Placement, Policy, PoolReservation, Rejection, Scheduler, TransferMode};

use crate::blocks::Block;
use crate::fairshare::{FairShare, Priority};
use crate::meter::Meter;

/// Most preemptible jobs one preemption decision considers (the lowest-ranked first): bounds
/// the decision's time on a network with many preemptible jobs in flight.
pub const MAX_PREEMPTION_CANDIDATES: usize = 256;
/// The scheduler's slot: a wait for capacity shorter than this is rounding, not waiting.
const SLOT_S: i64 = 900;

/// A real run's wall time may exceed its time limit by this much before its report is refused
/// as implausible: the executor stops a run at its limit, and stopping (a Slurm cancel, a
/// process tree's exit) and measuring take a little longer.
pub const WALL_GRACE_S: f64 = 60.0;
/// Reported CPU seconds may exceed wall time × cores by this share (measurement granularity
/// of the two clocks)…
pub const CPU_TOLERANCE: f64 = 0.05;
/// …plus this many seconds.
pub const CPU_TOLERANCE_S: f64 = 1.0;
/// Reported peak memory may exceed the run's memory limit by this share…
pub const MEMORY_TOLERANCE: f64 = 0.10;
/// …plus this many MiB (the executor's own launcher and accounting).
pub const MEMORY_TOLERANCE_MIB: f64 = 256.0;

/// Who registered (and so owns) a site an agent connected: a principal's role and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub role: String,
    pub name: String,
}

impl Owner {
    pub fn is_operator(&self) -> bool {
        self.role == "operator"
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// A site an agent connected: who owns it, whether the operator approved it (a site takes
/// placements only when approved and not suspended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteGrant {
    pub owner: Owner,
    pub approved: bool,
    /// Suspended by the operator: registering again does not lift it, only a resume.
    #[serde(default)]
    pub suspended: bool,
}

pub type JobId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub sched: Config,
    pub policy: Policy,
    /// A control plane that simulates at speed (`--time-scale`) shortens the wait for a
    /// deferred start by this factor, as it shortens run times: 1 in real time.
    pub time_scale: f64,
    /// The spot price preemptible work pays (the price book's `[spot]`).
    pub spot: Spot,
}

impl EngineConfig {
    /// Real time, the default scheduler configuration, and `balanced` under the network's
    /// operator policy.
    pub fn for_network(net: &Network) -> Self {
        EngineConfig {
            sched: Config::default(),
            policy: Policy::named("balanced", &net.policy).unwrap_or(Policy::BALANCED),
            time_scale: 1.0,
            spot: suanwang_economy::PriceBook::reference().spot,
        }
    }
}

/// What can be asked of the engine.
#[derive(Debug, Clone)]
pub enum Command {
    Submit {
        id: JobId,
        job: Box<Job>,
    },
    Cancel {
        id: JobId,
    },
    /// A site is lost: its jobs are rescheduled, it takes no new placements.
    SiteDown {
        site: String,
    },
    SiteUp {
        site: String,
    },
    /// A link is cut: data moving over it by network must be placed again (data express
    /// still travels by road); no new transfer uses it.
    LinkDown {
        a: String,
        b: String,
    },
    LinkUp {
        a: String,
        b: String,
    },
    /// The operator suspends a site (no new placements; what runs there finishes) or resumes it.
    Suspend {
        site: String,
        suspended: bool,
        /// Also move the jobs placed or running there now (as if the site were lost).
        move_jobs: bool,
    },
    /// An agent connects a machine as a site: jobs placed there are assigned to the agent,
    /// which reports how they ended. The first registration records `owner`; a site not
    /// `approved` takes no placements until `ApproveSite`. Registering again (by the owner or
    /// an operator, with the same pools) re-enables a lost site that is approved and not
    /// suspended; other pools are refused (what was approved is fixed).
    RegisterSite {
        site: AgentSite,
        owner: Owner,
        approved: bool,
    },
    /// The operator approves an agent's site (optionally handing it to `owner`): it takes
    /// placements from now on, unless suspended.
    ApproveSite {
        site: String,
        owner: Option<Owner>,
    },
    /// An agent reports how attempt `attempt` of job `id` ended; a report for any other attempt
    /// than the current one is refused (the fencing token).
    Report {
        id: JobId,
        attempt: u32,
        outcome: RunOutcome,
    },
    /// The control plane's ledger could not hold the price of job `id`'s first placement
    /// (`price_fen` against `available_fen` in the tenant's wallet): the placement is released
    /// and the job refused with the `balance` filter, before it ran.
    Unfunded {
        id: JobId,
        price_fen: i64,
        available_fen: i64,
    },
    /// A contract reserves `units` of `family` (`model`, or `any`) for `holder` over
    /// `[start, end)` in one pool at `sites` (the one that can hold the most of it): the
    /// holder's jobs on the contract use it first (issue 16 item 3).
    Reserve {
        contract: u64,
        holder: String,
        sites: Vec<String>,
        family: Family,
        model: String,
        start: Ts,
        end: Ts,
        units: u32,
    },
}

/// How a real run ended, as its agent saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub succeeded: bool,
    pub reason: Option<String>,
    pub cpu_seconds: f64,
    pub peak_memory_mib: f64,
    pub wall_seconds: f64,
}

/// What a real run used, as its executor measured it (R7: metering from evidence, not plans).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_memory_mib: f64,
    pub wall_seconds: f64,
}

/// Work handed to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: JobId,
    pub attempt: u32,
    pub site: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub cores: u32,
    pub memory_mib: u64,
    pub time_limit_s: u64,
    /// The job checkpoints (every this many seconds): the agent keeps what the run leaves in
    /// its checkpoint directory with the control plane, and a later attempt starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_s: Option<u32>,
    /// Whose job it is (an agent may map tenants to users of its machine).
    #[serde(default)]
    pub tenant: String,
    /// The control plane's unguessable id of this attempt, filled in when the assignment is
    /// served (the engine leaves it empty): an agent adopts a run after a restart only when
    /// the run's directory records the same id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("job {0} already exists")]
    Duplicate(JobId),
    #[error("no job {0} in flight")]
    NotFound(JobId),
    #[error("unknown site {0:?}")]
    UnknownSite(String),
    #[error("no link between {0:?} and {1:?}")]
    UnknownLink(String, String),
    #[error("job {id} is at attempt {current}; a report for attempt {reported} is stale")]
    StaleAttempt { id: JobId, current: u32, reported: u32 },
    #[error("job {0} is not running on an agent")]
    NotAssigned(JobId),
    #[error("site: {0}")]
    Site(String),
    #[error("site {site} belongs to {owner}: only its owner or an operator may act for it")]
    NotOwner { site: String, owner: Owner },
    #[error("site {0} is pending the operator's approval (POST /v1/sites/{0}/approve)")]
    Pending(String),
    #[error("{field}: {reason}")]
    Implausible { field: &'static str, reason: String },
    #[error("time went backwards: {now} is before {last}")]
    TimeBackwards { now: Ts, last: Ts },
    #[error("contract {contract}: {reason}")]
    Contract { contract: u64, reason: String },
}

/// How a finished job went: everything the twin's KPIs and the bills need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub id: JobId,
    pub tenant: String,
    pub kind: JobKind,
    pub family: Family,
    /// Units held (cores, accelerators or nodes).
    pub units: u32,
    pub origin: String,
    pub site: String,
    pub in_hub: bool,
    pub west: bool,
    pub deferrable: bool,
    pub submitted_at: Ts,
    pub started_at: Ts,
    pub finished_at: Ts,
    pub deadline: Option<Ts>,
    pub tier: Option<LatencyTier>,
    pub latency_ms: f64,
    pub attempts: u32,
    pub meter: Meter,
}

/// What happened. Events are the engine's only output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Submitted {
        id: JobId,
        at: Ts,
    },
    Admitted {
        id: JobId,
        at: Ts,
    },
    Refused {
        id: JobId,
        at: Ts,
        rejections: Vec<Rejection>,
    },
    Placed {
        id: JobId,
        at: Ts,
        attempt: u32,
        site: String,
        pool: String,
        start_at: Ts,
        end_at: Ts,
        mode: TransferMode,
        /// Seconds the start was shifted past the site's earliest possible start, for greener
        /// or cheaper hours (0: not deferred), and the most the job allowed (`start_within`).
        deferred_s: i64,
        start_within_s: i64,
    },
    DataArrived {
        id: JobId,
        at: Ts,
        attempt: u32,
    },
    Started {
        id: JobId,
        at: Ts,
        attempt: u32,
    },
    Completed {
        id: JobId,
        at: Ts,
        outcome: Box<Outcome>,
    },
    Failed {
        id: JobId,
        at: Ts,
        reason: String,
        /// What the failed attempt used, when it ran for real (a run that exits with an error
        /// after an hour used an hour); zero when it never ran.
        #[serde(default)]
        meter: Meter,
    },
    /// An agent measured what one attempt of a real run used.
    Measured {
        id: JobId,
        at: Ts,
        attempt: u32,
        usage: Usage,
    },
    Cancelled {
        id: JobId,
        at: Ts,
        meter: Meter,
    },
    Rescheduled {
        id: JobId,
        at: Ts,
        from_site: String,
        attempt: u32,
        reason: String,
    },
    /// A contract's block is held: `least` is the fewest units it holds at any slot of its
    /// window within the horizon (less than `units` where the pool was already busy).
    Reserved {
        contract: u64,
        at: Ts,
        holder: String,
        site: String,
        pool: String,
        units: u32,
        least: u32,
        start_at: Ts,
        end_at: Ts,
    },
    /// A preemptible job gave its capacity to job `by` of higher effective priority (`reason`
    /// names both jobs' priorities and fair-share factors). `meter` is what the attempt used
    /// (billed with the job); it is placed again next (`Rescheduled`), from its checkpoint
    /// when it declared one.
    Preempted {
        id: JobId,
        at: Ts,
        attempt: u32,
        site: String,
        by: JobId,
        reason: String,
        meter: Meter,
    },
    SiteLost {
        site: String,
        at: Ts,
        jobs: usize,
    },
    SiteRestored {
        site: String,
        at: Ts,
    },
    LinkLost {
        a: String,
        b: String,
        at: Ts,
        jobs: usize,
    },
    SiteRegistered {
        site: String,
        at: Ts,
        /// Whether it may take placements (an operator's registration, or approved earlier).
        #[serde(default)]
        approved: bool,
    },
    /// The operator approved an agent's site.
    SiteApproved {
        site: String,
        at: Ts,
        owner: Owner,
    },
    SiteSuspended {
        site: String,
        at: Ts,
        suspended: bool,
    },
    /// A job starts on an agent's site: the agent must run it.
    Assigned {
        at: Ts,
        assignment: Assignment,
    },
    LinkRestored {
        a: String,
        b: String,
        at: Ts,
    },
}

/// Job counts; `submitted == completed + failed + refused + cancelled + in_flight` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub refused: u64,
    pub cancelled: u64,
    pub in_flight: u64,
    /// Preemptions (a job preempted twice counts twice); not a final state.
    #[serde(default)]
    pub preempted: u64,
}

impl Counts {
    pub fn balanced(&self) -> bool {
        self.submitted == self.completed + self.failed + self.refused + self.cancelled + self.in_flight
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Phase {
    Arrive,
    Start,
    Finish,
}

/// A timer: (epoch ms, sequence for a stable order, job, attempt, phase).
type Timer = (i64, u64, JobId, u32, Phase);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Active {
    site: usize,
    reservation: PoolReservation,
    start_at: Ts,
    end_at: Ts,
    meter: Meter,
    latency_ms: f64,
    /// The link the input data crosses while it moves over the network.
    link: Option<usize>,
    /// The time limit its agent was given, once assigned.
    #[serde(default)]
    time_limit_s: Option<u64>,
    /// The contract block it runs in and what it took from it.
    #[serde(default)]
    block: Option<(u64, Vec<suanwang_sched::Reservation>)>,
    /// Another holder's block whose idle units this preemptible job borrows, and what it took:
    /// it gives them back when the holder needs them (or it ends).
    #[serde(default)]
    lent: Option<(u64, Vec<suanwang_sched::Reservation>)>,
}

#[derive(Debug, Clone)]
struct Record {
    /// Shared with the snapshots taken while the job is in flight (copied, the rare time it
    /// changes: a resumed checkpoint shortens its work).
    job: Arc<Job>,
    state: JobState,
    attempt: u32,
    submitted_at: Ts,
    active: Option<Active>,
    /// What earlier, preempted attempts used: billed with the job when it ends.
    used: Meter,
}

/// A job in flight, as a snapshot holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordSnapshot {
    id: JobId,
    job: SnapshotJob,
    state: JobState,
    attempt: u32,
    submitted_at: Ts,
    active: Option<Active>,
    #[serde(default)]
    used: Meter,
}

/// A snapshot's job: the engine's own, shared (taking a snapshot copies no job — it runs on the
/// server's one thread of commands, and is serialised elsewhere), or, read back, its JSON shape,
/// which `Engine::restore` parses against the network. Both write the job's JSON.
#[derive(Debug, Clone)]
enum SnapshotJob {
    Live(Arc<Job>),
    Json(serde_json::Value),
}

impl Serialize for SnapshotJob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SnapshotJob::Live(job) => job.serialize(s),
            SnapshotJob::Json(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SnapshotJob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(SnapshotJob::Json)
    }
}

/// A job that lost its place to another: its id, its record (out of the engine, its
/// reservation released) and the reason.
type Preemption = (JobId, Record, String);

/// A contract block and what a job took from it.
type Taken = (u64, Vec<suanwang_sched::Reservation>);

/// How a new job is admitted: its placement, the block it runs in (its holder's) or borrows
/// from, and the jobs that gave it their place.
type Admission = (Placement, Option<Taken>, Option<Taken>, Vec<Preemption>);

/// A job that may give its place to another: its rank, whether it runs, when it starts and
/// what it holds.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: JobId,
    rank: Priority,
    running: bool,
    start: Ts,
    held: PoolReservation,
}

/// Everything the engine holds, to restart from without replaying the whole log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSnapshot {
    now: Ts,
    jobs: Vec<RecordSnapshot>,
    timers: Vec<Timer>,
    seq: u64,
    counts: Counts,
    sched: suanwang_sched::SchedSnapshot,
    #[serde(default)]
    agent_sites: Vec<AgentSite>,
    /// Owner and approval of each agent site (a snapshot without them predates ownership:
    /// its sites stay in service, owned by the operator until one hands them on).
    #[serde(default)]
    grants: Vec<(String, SiteGrant)>,
    /// Tenants' recent use (a snapshot without it starts the table afresh).
    #[serde(default)]
    fairshare: Option<FairShare>,
    /// Contracts' reserved blocks.
    #[serde(default)]
    blocks: Vec<(u64, Block)>,
}

/// The engine: the scheduler, the jobs in flight, and the timers that move them on.
#[derive(Debug)]
pub struct Engine {
    sched: Scheduler,
    policy: Policy,
    /// See [`EngineConfig::time_scale`].
    time_scale: f64,
    now: Ts,
    jobs: crate::idhash::IdMap<JobId, Record>,
    timers: BinaryHeap<Reverse<Timer>>,
    seq: u64,
    counts: Counts,
    events: Vec<Event>,
    /// Machines agents connected, in the order they joined the network.
    agent_sites: Vec<AgentSite>,
    /// Who owns each of them and whether it is approved.
    grants: std::collections::BTreeMap<String, SiteGrant>,
    spot: Spot,
    fs_policy: FairSharePolicy,
    fairshare: FairShare,
    /// Contracts' reserved blocks, by contract.
    blocks: std::collections::BTreeMap<u64, Block>,
    /// Preemptible jobs placed at each site (by index), for preemption to look at without
    /// scanning every job: ids are pushed when placed and checked when read (one that has
    /// ended or moved is dropped then), and the list is compacted when it doubles.
    preemptible_at: crate::idhash::IdMap<usize, (Vec<JobId>, usize)>,
}

impl Engine {
    pub fn new(net: Arc<Network>, now: Ts, cfg: EngineConfig) -> Engine {
        let fs_policy = net.policy.fairshare;
        Engine {
            spot: cfg.spot,
            fs_policy,
            fairshare: FairShare::new(&fs_policy, now),
            blocks: std::collections::BTreeMap::new(),
            preemptible_at: crate::idhash::IdMap::default(),
            sched: Scheduler::new(net, now, cfg.sched),
            policy: cfg.policy,
            time_scale: if cfg.time_scale.is_finite() && cfg.time_scale > 0.0 { cfg.time_scale } else { 1.0 },
            now,
            jobs: crate::idhash::IdMap::default(),
            timers: BinaryHeap::new(),
            seq: 0,
            counts: Counts::default(),
            events: vec![],
            agent_sites: vec![],
            grants: std::collections::BTreeMap::new(),
        }
    }

    /// The whole state, for a snapshot. Jobs are in id order, timers in firing order: the same
    /// state always gives the same snapshot.
    pub fn snapshot(&self) -> EngineSnapshot {
        let mut jobs: Vec<RecordSnapshot> = self
            .jobs
            .iter()
            .map(|(id, r)| RecordSnapshot {
                id: *id,
                job: SnapshotJob::Live(Arc::clone(&r.job)),
                state: r.state,
                attempt: r.attempt,
                submitted_at: r.submitted_at,
                active: r.active.clone(),
                used: r.used,
            })
            .collect();
        jobs.sort_by_key(|r| r.id);
        let mut timers: Vec<Timer> = self.timers.iter().map(|Reverse(t)| *t).collect();
        timers.sort_unstable();
        EngineSnapshot {
            now: self.now,
            jobs,
            timers,
            seq: self.seq,
            counts: self.counts,
            sched: self.sched.snapshot(),
            agent_sites: self.agent_sites.clone(),
            grants: self.grants.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            fairshare: Some(self.fairshare.clone()),
            blocks: self.blocks.iter().map(|(k, v)| (*k, v.clone())).collect(),
        }
    }

    /// An engine in the state of `snap`, on `net` (which must be the snapshot's network).
    pub fn restore(net: &Arc<Network>, cfg: EngineConfig, snap: EngineSnapshot) -> Result<Engine, String> {
        let mut full = (**net).clone();
        for site in &snap.agent_sites {
            full = full.with_agent_site(site)?;
        }
        let net = &Arc::new(full);
        let mut engine = Engine::new(Arc::clone(net), snap.now, cfg);
        engine.grants = snap.grants.into_iter().collect();
        for site in &snap.agent_sites {
            engine.grants.entry(site.id.clone()).or_insert_with(|| SiteGrant {
                owner: Owner { role: "operator".into(), name: String::new() },
                approved: true,
                suspended: false,
            });
        }
        engine.agent_sites = snap.agent_sites;
        engine.sched.restore(snap.sched)?;
        for site in &engine.agent_sites {
            engine.sched.set_site_runs_commands(&site.id, true);
        }
        for r in snap.jobs {
            let job = match r.job {
                SnapshotJob::Live(job) => job,
                SnapshotJob::Json(v) => {
                    let bytes = serde_json::to_vec(&v).map_err(|e| e.to_string())?;
                    // Ts(i64::MIN): a deadline that has passed since the snapshot is not an error here
                    Arc::new(suanwang_core::job::parse_json(&bytes, net, Ts(i64::MIN)).map_err(|p| {
                        format!(
                            "job {} in the snapshot: {}",
                            r.id,
                            p.first().map(ToString::to_string).unwrap_or_default()
                        )
                    })?)
                }
            };
            engine.jobs.insert(
                r.id,
                Record {
                    job,
                    state: r.state,
                    attempt: r.attempt,
                    submitted_at: r.submitted_at,
                    active: r.active,
                    used: r.used,
                },
            );
        }
        engine.timers = snap.timers.into_iter().map(Reverse).collect();
        engine.seq = snap.seq;
        engine.counts = snap.counts;
        if let Some(f) = snap.fairshare {
            engine.fairshare = f;
        }
        // the blocks' holdings are in the restored timelines already
        engine.blocks = snap.blocks.into_iter().collect();
        let mut placed: Vec<(JobId, usize)> = engine
            .jobs
            .iter()
            .filter(|(_, r)| r.job.preemptible)
            .filter_map(|(id, r)| r.active.as_ref().map(|a| (*id, a.site)))
            .collect();
        placed.sort_unstable();
        for (id, site) in placed {
            engine.preemptible_at.entry(site).or_default().0.push(id);
        }
        Ok(engine)
    }

    pub fn now(&self) -> Ts {
        self.now
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The network the engine schedules on (the reference one plus agents' machines).
    pub fn network(&self) -> Arc<Network> {
        self.sched.network_arc()
    }

    /// Sets a pool's background load (work outside the engine, e.g. the twin's modelled load
    /// of every site); see `Scheduler::set_background`.
    pub fn set_background(&mut self, pool: usize, units: Vec<u32>) -> Result<(), suanwang_sched::TimelineError> {
        self.sched.set_background(pool, units)
    }

    /// The scheduler decides on a forecast of site `site`'s energy (green share and tariff per
    /// Beijing hour × the factors); meters keep the actual values. See `Scheduler::set_forecast`.
    pub fn set_forecast(&mut self, site: usize, green: &[f64; 24], tariff: &[f64; 24]) -> Option<()> {
        self.sched.set_forecast(site, green, tariff)
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Owner and approval of every agent site, by site id.
    pub fn grants(&self) -> &std::collections::BTreeMap<String, SiteGrant> {
        &self.grants
    }

    /// What the agent sites `owner` holds declare in total (pending ones included).
    pub fn owned_capacity(&self, owner: &Owner) -> Option<suanwang_core::network::AgentCapacity> {
        let net = self.sched.network();
        self.agent_sites
            .iter()
            .filter(|s| self.grants.get(&s.id).is_some_and(|g| &g.owner == owner))
            .try_fold(suanwang_core::network::AgentCapacity::default(), |acc, s| {
                acc.checked_add(net.agent_capacity(s)?)
            })
    }

    /// Contracts' reserved blocks, by contract.
    pub fn blocks(&self) -> impl Iterator<Item = (&u64, &Block)> {
        self.blocks.iter()
    }

    pub fn state(&self, id: JobId) -> Option<JobState> {
        self.jobs.get(&id).map(|r| r.state)
    }

    /// Where, when and how `job` would run now under `policy` — a dry run: nothing is reserved.
    pub fn plan(&mut self, job: &Job, policy: &Policy) -> Result<Placement, suanwang_sched::Refusal> {
        self.sched.plan(job, self.now, policy)
    }

    /// The events emitted since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The time of the next timer, if any job is still moving.
    pub fn next_timer(&self) -> Option<Ts> {
        self.timers.peek().map(|Reverse((t, ..))| Ts(*t))
    }

    /// Moves time forward to `now`, firing every timer due on the way, in time order.
    pub fn advance_to(&mut self, now: Ts) -> Result<(), EngineError> {
        if now < self.now {
            return Err(EngineError::TimeBackwards { now, last: self.now });
        }
        while let Some(Reverse((t, _, id, attempt, phase))) = self.timers.peek().copied() {
            if t > now.0 {
                break;
            }
            self.timers.pop();
            self.set_now(Ts(t));
            self.fire(id, attempt, phase);
        }
        self.set_now(now);
        Ok(())
    }

    /// Runs every remaining timer: the state when all placed work has finished.
    pub fn drain(&mut self) {
        while let Some(t) = self.next_timer() {
            // timers are never in the past, so this cannot fail
            let _ = self.advance_to(t);
        }
    }

    fn set_now(&mut self, now: Ts) {
        if now > self.now {
            self.now = now;
            self.sched.advance(now);
            if !self.blocks.is_empty() {
                let slot = suanwang_sched::slots::slot_of(now);
                self.blocks.retain(|_, b| b.end > slot);
            }
        }
    }

    pub fn apply(&mut self, cmd: Command) -> Result<(), EngineError> {
        match cmd {
            Command::Submit { id, job } => self.submit(id, *job),
            Command::Cancel { id } => self.cancel(id),
            Command::SiteDown { site } => self.site_down(&site),
            Command::SiteUp { site } => {
                if self.grants.get(&site).is_some_and(|g| !g.approved || g.suspended) {
                    return Err(EngineError::Pending(site));
                }
                self.sched.set_site_available(&site, true).ok_or_else(|| EngineError::UnknownSite(site.clone()))?;
                self.events.push(Event::SiteRestored { site, at: self.now });
                Ok(())
            }
            Command::LinkDown { a, b } => self.link_down(&a, &b),
            Command::RegisterSite { site, owner, approved } => self.register_site(site, owner, approved),
            Command::ApproveSite { site, owner } => self.approve_site(&site, owner),
            Command::Suspend { site, suspended, move_jobs } => {
                if let Some(g) = self.grants.get_mut(&site) {
                    if !suspended && !g.approved {
                        return Err(EngineError::Pending(site));
                    }
                    g.suspended = suspended;
                }
                let si = self
                    .sched
                    .set_site_available(&site, !suspended)
                    .ok_or_else(|| EngineError::UnknownSite(site.clone()))?;
                self.events.push(Event::SiteSuspended { site: site.clone(), at: self.now, suspended });
                if suspended && move_jobs {
                    let affected = self.jobs_at(si);
                    let backup = self.sched.network().sites[si].backup.clone();
                    self.reschedule(&affected, &site, backup.as_deref(), &format!("site {site} suspended"));
                }
                Ok(())
            }
            Command::Report { id, attempt, outcome } => self.report(id, attempt, &outcome),
            Command::Unfunded { id, price_fen, available_fen } => self.unfunded(id, price_fen, available_fen),
            Command::Reserve { contract, holder, sites, family, model, start, end, units } => {
                self.reserve(contract, &holder, &sites, family, &model, (start, end), units)
            }
            Command::LinkUp { a, b } => {
                self.sched
                    .set_link_available(&a, &b, true)
                    .ok_or_else(|| EngineError::UnknownLink(a.clone(), b.clone()))?;
                self.events.push(Event::LinkRestored { a, b, at: self.now });
                Ok(())
            }
        }
    }

    fn timer(&mut self, at: Ts, id: JobId, attempt: u32, phase: Phase) {
        self.seq += 1;
        self.timers.push(Reverse((at.0, self.seq, id, attempt, phase)));
    }

    fn submit(&mut self, id: JobId, job: Job) -> Result<(), EngineError> {
        if self.jobs.contains_key(&id) {
            return Err(EngineError::Duplicate(id));
        }
        let now = self.now;
        self.counts.submitted += 1;
        self.events.push(Event::Submitted { id, at: now });
        self.events.push(Event::Admitted { id, at: now });
        // a job on a contract with a block runs in it when it can (the holder's jobs first);
        // a job that would wait for capacity (a slot or more), or be refused for it, may take
        // the place of preemptible work of lower rank
        // a preemptible job that still waits may borrow another holder's idle reserved units
        let placed = match self.place_in_block(id, &job) {
            Some((p, taken, evicted)) => Ok((p, Some(taken), None, evicted)),
            None => match self.sched.place(&job, now, &self.policy) {
                Ok(p) if self.capacity_wait_s(&p) >= SLOT_S => {
                    Ok(self.place_when_short(id, &job, Ok(&p)).unwrap_or((p, None, None, vec![])))
                }
                Ok(p) => Ok((p, None, None, vec![])),
                Err(refusal) => self.place_when_short(id, &job, Err(&refusal)).ok_or(refusal),
            },
        };
        match placed {
            Ok((p, block, lent, preempted)) => {
                self.counts.in_flight += 1;
                let mut record = Record {
                    job: Arc::new(job),
                    state: JobState::Admitted,
                    attempt: 1,
                    submitted_at: now,
                    active: None,
                    used: Meter::default(),
                };
                self.activate(id, &mut record, &p);
                if let Some(a) = record.active.as_mut() {
                    a.block = block;
                    a.lent = lent;
                }
                self.jobs.insert(id, record);
                for (victim, record, reason) in preempted {
                    self.preempted(victim, record, id, &reason);
                }
            }
            Err(refusal) => {
                self.counts.refused += 1;
                self.events.push(Event::Refused { id, at: now, rejections: refusal.rejections });
            }
        }
        Ok(())
    }

    /// A contract's block: the pool at `sites` of `family` (and `model`) that can hold the most
    /// of `units` over the window within the horizon holds what fits there.
    #[allow(clippy::too_many_arguments)]
    fn reserve(
        &mut self,
        contract: u64,
        holder: &str,
        sites: &[String],
        family: suanwang_core::Family,
        model: &str,
        (start, end): (Ts, Ts),
        units: u32,
    ) -> Result<(), EngineError> {
        let refuse = |reason: String| EngineError::Contract { contract, reason };
        if self.blocks.contains_key(&contract) {
            return Err(refuse("is reserved already".into()));
        }
        if units == 0 || end <= start {
            return Err(refuse("reserves no units or no time".into()));
        }
        let (a, b) = (
            suanwang_sched::slots::slot_of(start).max(suanwang_sched::slots::slot_of(self.now)),
            suanwang_sched::slots::slot_at_or_after(end),
        );
        if b <= a {
            return Err(refuse("its window is over".into()));
        }
        let net = self.sched.network_arc();
        let best = (0..self.sched.pool_count())
            .filter(|&pi| {
                let p = self.sched.pool(pi);
                let site = &net.sites[self.sched.pool_site(pi)];
                sites.contains(&site.id) && p.family == family && (model == "any" || p.model == model)
            })
            .map(|pi| {
                let t = self.sched.timeline(pi);
                let fits: u64 = (a..b.min(t.end())).map(|s| u64::from(units.min(t.free_at(s)))).sum();
                (fits, std::cmp::Reverse(pi))
            })
            .max()
            .map(|(_, std::cmp::Reverse(pi))| pi)
            .ok_or_else(|| refuse(format!("no {family:?} pool of {model} at {}", sites.join(", "))))?;
        let block = Block::new(&mut self.sched, holder, best, units, a, b);
        let horizon = self.sched.timeline(best).end();
        let least = (a..b.min(horizon)).map(|s| block.held_at(s)).min().unwrap_or(units);
        self.events.push(Event::Reserved {
            contract,
            at: self.now,
            holder: holder.to_string(),
            site: net.sites[self.sched.pool_site(best)].id.clone(),
            pool: self.sched.pool(best).id.clone(),
            units,
            least,
            start_at: suanwang_sched::slots::slot_start(a),
            end_at: suanwang_sched::slots::slot_start(b),
        });
        self.blocks.insert(contract, block);
        Ok(())
    }

    /// `job` is on a contract of its tenant's with a block: placed at the block's site with
    /// the block's units free for it, the block giving what the job takes. `None` when it is
    /// not, or does not fit there (it is then placed as any job is).
    fn place_in_block(&mut self, id: JobId, job: &Job) -> Option<(Placement, Taken, Vec<Preemption>)> {
        let n = job.contract?;
        if self.blocks.get(&n).is_none_or(|b| b.holder != job.tenant) {
            return None;
        }
        // the holder comes first: whoever borrowed the block's idle units gives them back
        let mut borrowers: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, r)| r.active.as_ref().is_some_and(|a| a.lent.as_ref().is_some_and(|(c, _)| *c == n)))
            .map(|(j, _)| *j)
            .collect();
        borrowers.sort_unstable();
        let mut evicted = vec![];
        for b in borrowers {
            let Some(mut r) = self.jobs.remove(&b) else { continue };
            if let Some(a) = r.active.as_mut() {
                let _ = self.sched.release(&a.reservation);
                let lent = a.lent.take();
                if let (Some((_, taken)), Some(block)) = (lent, self.blocks.get_mut(&n)) {
                    block.give_back(&mut self.sched, &taken, suanwang_sched::slots::slot_at_or_after(self.now));
                }
            }
            evicted.push((b, r, format!("the holder of contract {n} needs its reserved units (job {id})")));
        }
        match self.place_with_block(n, job, None) {
            Some((p, taken)) => Some((p, taken, evicted)),
            None => {
                // placed as any job is; the evicted borrowers are placed again
                for (b, r, why) in evicted {
                    self.preempted(b, r, id, &why);
                }
                None
            }
        }
    }

    /// `job`, preemptible, would wait for capacity (`current`, committed) or was refused for it
    /// at `sites`: it may run on another holder's idle reserved units there, giving them back
    /// when the holder needs them. Returns the placement (`current` released) and what it
    /// borrowed; `None` when no block there places it sooner, leaving everything as it was.
    fn place_on_loan(&mut self, job: &Job, current: Option<&Placement>, sites: &[usize]) -> Option<(Placement, Taken)> {
        if !job.preemptible {
            return None;
        }
        let lenders: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.holder != job.tenant && sites.contains(&self.sched.pool_site(b.pool)))
            .map(|(n, _)| *n)
            .collect();
        lenders.into_iter().find_map(|n| self.place_with_block(n, job, current))
    }

    /// `job` placed at block `n`'s site with the block's units free for it (and `current`, a
    /// placement it holds, released): the block gives what the job takes. `None` when it does
    /// not fit there sooner than `current`, leaving everything as it was.
    fn place_with_block(&mut self, n: u64, job: &Job, current: Option<&Placement>) -> Option<(Placement, Taken)> {
        let mut block = self.blocks.remove(&n)?;
        let mut pinned = job.clone();
        pinned.allowed_sites = vec![self.sched.network().sites[self.sched.pool_site(block.pool)].id.clone()];
        if let Some(c) = current {
            let _ = self.sched.release(&c.reservation);
        }
        block.lift(&mut self.sched);
        let out = match self.sched.place(&pinned, self.now, &self.policy) {
            Ok(p) if current.is_none_or(|c| p.chosen.start_at < c.chosen.start_at) => {
                let taken = block.take(&mut self.sched, &p.reservation);
                Some((p, (n, taken)))
            }
            placed => {
                if let Ok(p) = placed {
                    let _ = self.sched.release(&p.reservation);
                }
                block.restore(&mut self.sched);
                if let Some(c) = current {
                    let _ = self.sched.commit(&c.reservation);
                }
                None
            }
        };
        self.blocks.insert(n, block);
        out
    }

    /// A job lets its placement go: its reservation is released and, when it ran in a
    /// contract's block (its holder's, or borrowed), what it took from now on goes back.
    fn let_go(&mut self, a: &Active) {
        let _ = self.sched.release(&a.reservation);
        self.return_to_block(a);
    }

    /// What an attempt used (`meter`) is charged to the tenant's fair share; returns the job's
    /// whole use, earlier preempted attempts included (what it is billed).
    fn charge_use(&mut self, record: &Record, meter: &Meter) -> Meter {
        self.fairshare.charge(&record.job.tenant, meter.ucu_hours, self.now);
        record.used.plus(meter)
    }

    /// A job that ran in a contract's block let its reservation go before its end: what it
    /// took from now on goes back to the block.
    fn return_to_block(&mut self, a: &Active) {
        let from = suanwang_sched::slots::slot_at_or_after(self.now);
        for (n, taken) in [&a.block, &a.lent].into_iter().flatten() {
            if let Some(b) = self.blocks.get_mut(n) {
                b.give_back(&mut self.sched, taken, from);
            }
        }
    }

    /// `job` would wait for capacity (`Ok`, its placement, committed) or was refused for it
    /// (`Err`): it takes the place of lower-ranked preemptible work if that places it sooner,
    /// else — preemptible — borrows another holder's idle reserved units. `None` leaves
    /// everything as it was.
    fn place_when_short(
        &mut self,
        id: JobId,
        job: &Job,
        outcome: Result<&Placement, &suanwang_sched::Refusal>,
    ) -> Option<Admission> {
        let sites = self.preemption_sites(outcome);
        let current = outcome.ok();
        if let Some((p, lost)) = self.place_by_preempting(id, job, current, &sites) {
            return Some((p, None, None, lost));
        }
        self.place_on_loan(job, current, &sites).map(|(p, lent)| (p, None, Some(lent), vec![]))
    }

    /// Seconds placement `p` waits for capacity: its start less when its data can be there
    /// and less the deferral the scheduler chose for greener or cheaper hours.
    fn capacity_wait_s(&self, p: &Placement) -> i64 {
        let ready_ms = self.now.0.saturating_add(p.chosen.transfer.seconds.saturating_mul(1000));
        ((p.chosen.start_at.0 - ready_ms) / 1000 - p.deferred_s).max(0)
    }

    /// Where `job` (not yet in the engine) would wait for capacity (`current`, committed) or
    /// was refused for it (`sites`, the sites refused for capacity), frees capacity held by
    /// preemptible jobs of lower effective priority and places `job` on it. Returns the new
    /// placement (`current` released) and the jobs that lost their place (taken out of the
    /// engine, their reservations released), with the reason; `None` when preempting would not
    /// place `job` sooner, leaving everything as it was.
    ///
    /// Non-preemptible work outranks any preemptible work; among preemptible work the higher
    /// effective priority (priority and fair-share factor, [`FairShare::effective`]) wins. A
    /// non-preemptible job is never a candidate. Of the candidates (same family, at the sites
    /// concerned, starting before the job's current placement would; at most
    /// [`MAX_PREEMPTION_CANDIDATES`], lowest-ranked first), all are lifted,
    /// `job` is placed, and then each candidate takes its reservation back — the highest-ranked
    /// first, a running one before one not started, the longest-running first — so that only
    /// those whose capacity `job` took are preempted.
    fn place_by_preempting(
        &mut self,
        id: JobId,
        job: &Job,
        current: Option<&Placement>,
        sites: &[usize],
    ) -> Option<(Placement, Vec<Preemption>)> {
        if sites.is_empty() {
            return None;
        }
        let ranks = self.fairshare.ranker(&self.fs_policy);
        let me = ranks.effective(job.priority, &job.tenant);
        // only work that starts before the job would can make it start sooner
        let before = current.map_or(Ts(i64::MAX), |c| c.chosen.start_at);
        let mut ids: Vec<JobId> =
            sites.iter().filter_map(|s| self.preemptible_at.get(s)).flat_map(|(ids, _)| ids.iter().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut candidates: Vec<Candidate> = ids
            .iter()
            .filter_map(|vid| Some((vid, self.jobs.get(vid)?)))
            .filter(|(_, r)| r.job.preemptible && r.job.resources.family == job.resources.family)
            .filter_map(|(vid, r)| {
                // a holder's job in its contract's block keeps it: the block is nobody else's
                let a = r.active.as_ref().filter(|a| {
                    sites.contains(&a.site) && a.start_at < before && a.block.is_none() && a.lent.is_none()
                })?;
                let theirs = ranks.effective(r.job.priority, &r.job.tenant);
                (!job.preemptible || me.value > theirs.value + 1e-9).then_some(Candidate {
                    id: *vid,
                    rank: theirs,
                    running: r.state == JobState::Running,
                    start: a.start_at,
                    held: a.reservation,
                })
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        // keep order (the order they take their places back in): highest rank, running,
        // oldest, lowest id; the lowest-ranked are last, and the first lifted
        let keep = |a: &Candidate, b: &Candidate| {
            b.rank
                .value
                .total_cmp(&a.rank.value)
                .then(b.running.cmp(&a.running))
                .then(a.start.cmp(&b.start))
                .then(a.id.cmp(&b.id))
        };
        if candidates.len() > MAX_PREEMPTION_CANDIDATES {
            let cut = candidates.len() - MAX_PREEMPTION_CANDIDATES;
            candidates.select_nth_unstable_by(cut, keep);
            candidates.drain(..cut);
        }
        candidates.sort_by(keep);
        if let Some(c) = current {
            let _ = self.sched.release(&c.reservation);
        }
        // lift the lowest-ranked first, doubling, until the job places sooner: most needs are
        // met by the first few, and the rest are never touched
        let n = candidates.len();
        let (mut lifted, mut batch) = (0usize, 1usize);
        let placed = loop {
            let upto = (lifted + batch).min(n);
            for c in &candidates[n - upto..n - lifted] {
                let _ = self.sched.release(&c.held);
            }
            lifted = upto;
            match self.sched.place(job, self.now, &self.policy) {
                Ok(p) if current.is_none_or(|c| p.chosen.start_at < c.chosen.start_at) => break Some(p),
                Ok(p) => {
                    let _ = self.sched.release(&p.reservation);
                }
                Err(_) => {}
            }
            if lifted == n {
                break None;
            }
            batch *= 2;
        };
        let lifted = &candidates[n - lifted..];
        let Some(placement) = placed else {
            // no better: everything back as it was (it all fitted together before)
            for c in lifted {
                let _ = self.sched.commit(&c.held);
            }
            if let Some(c) = current {
                let _ = self.sched.commit(&c.reservation);
            }
            return None;
        };
        let mut lost = vec![];
        for c in lifted {
            if self.sched.commit(&c.held).is_err() {
                lost.push((c.id, c.rank));
            }
        }
        let net = self.sched.network_arc();
        let site = net.sites.get(self.sched.pool_site(placement.reservation.pool)).map_or("", |s| s.id.as_str());
        let out = lost
            .into_iter()
            .filter_map(|(vid, theirs)| {
                let r = self.jobs.remove(&vid)?;
                let why = if job.preemptible {
                    format!("job {id} ({me}) needs its capacity at {site}; this job has {theirs}")
                } else {
                    format!("job {id} (not preemptible, {me}) needs its capacity at {site}")
                };
                Some((vid, r, why))
            })
            .collect();
        Some((placement, out))
    }

    /// The sites preemption may free capacity at for `job`: those its placement `p` chose
    /// among (the chosen one and the runners-up), or those that refused it for capacity alone.
    fn preemption_sites(&self, outcome: Result<&Placement, &suanwang_sched::Refusal>) -> Vec<usize> {
        let net = self.sched.network();
        let index = |id: &str| net.sites.iter().position(|s| s.id == id);
        let mut sites: Vec<usize> = match outcome {
            Ok(p) => std::iter::once(&p.chosen).chain(&p.runners_up).filter_map(|c| index(&c.site)).collect(),
            Err(r) => {
                r.rejections.iter().filter(|x| x.filter == Filter::Capacity).filter_map(|x| index(&x.site)).collect()
            }
        };
        sites.sort_unstable();
        sites.dedup();
        sites
    }

    /// Job `id` (taken out of the engine, its reservation already released) was preempted by
    /// job `by`: what its attempt used is kept for the bill, and it is placed again — from its
    /// checkpoint when it declared one.
    fn preempted(&mut self, id: JobId, mut record: Record, by: JobId, reason: &str) {
        let now = self.now;
        self.counts.preempted += 1;
        let net = self.sched.network_arc();
        let mut why = format!("preempted: {reason}");
        let mut from_site = String::new();
        if let Some(a) = record.active.take() {
            self.return_to_block(&a);
            from_site = net.sites.get(a.site).map_or_else(String::new, |s| s.id.clone());
            let mut meter = Meter::default();
            if record.state == JobState::Running {
                meter = a.meter.partial(now.0 - a.start_at.0, a.end_at.0 - a.start_at.0);
                if let Some(saved) = resume_from_checkpoint(Arc::make_mut(&mut record.job), &a, now) {
                    why = format!("{why}; resumes from its checkpoint at {saved:.0} % done");
                }
            }
            record.used = self.charge_use(&record, &meter);
            self.events.push(Event::Preempted {
                id,
                at: now,
                attempt: record.attempt,
                site: from_site.clone(),
                by,
                reason: reason.to_string(),
                meter,
            });
        }
        self.requeue(id, record, &from_site, None, &why);
    }

    /// Takes a placement: records it, sets the timers, emits `Placed`.
    fn activate(&mut self, id: JobId, record: &mut Record, p: &Placement) {
        if record.job.preemptible {
            let si = self.sched.pool_site(p.reservation.pool);
            let (ids, compacted) = self.preemptible_at.entry(si).or_default();
            ids.push(id);
            if ids.len() >= (2 * *compacted).max(64) {
                let jobs = &self.jobs;
                // the job being placed is not in `jobs` yet: keep it
                ids.retain(|j| *j == id || jobs.get(j).and_then(|r| r.active.as_ref()).is_some_and(|a| a.site == si));
                ids.sort_unstable();
                ids.dedup();
                *compacted = ids.len();
            }
        }
        let c = &p.chosen;
        let pool = self.sched.pool(p.reservation.pool);
        let count = f64::from(record.job.resources.count);
        let moved = c.transfer.mode != TransferMode::None;
        // the scheduler may have decided on a forecast; the meter takes the actual energy
        let (energy_fen, green_share, carbon_market_kg) = match self.sched.actual_energy(p) {
            Some((fen, green, kg_per_kwh)) => (fen, green, c.energy_kwh * kg_per_kwh),
            None => (c.cost.energy_fen, c.green_share, c.carbon_kg),
        };
        // preemptible work pays the spot price of the pool's use when it starts (R4)
        let compute_fen = if record.job.preemptible {
            let t = self.sched.timeline(p.reservation.pool);
            let busy = t.used_at(p.reservation.window.start).saturating_sub(p.reservation.window.units);
            self.spot.price_fen(c.cost.compute_fen, u64::from(busy), u64::from(t.size()))
        } else {
            c.cost.compute_fen
        };
        let meter = Meter {
            ucu_hours: count * pool.ucu_per_unit * p.run_s as f64 / 3600.0,
            energy_kwh: c.energy_kwh,
            green_kwh: c.energy_kwh * green_share,
            carbon_location_kg: c.carbon_location_kg,
            carbon_market_kg,
            transfer_gb: if moved { record.job.input.as_ref().map_or(0.0, |i| i.size_gb) } else { 0.0 },
            transfer_mode: moved.then_some(c.transfer.mode),
            compute_fen,
            energy_fen,
            transfer_fen: c.cost.transfer_fen,
            money_fen: compute_fen.saturating_add(energy_fen).saturating_add(c.cost.transfer_fen),
        };
        let site = self.sched.pool_site(p.reservation.pool);
        let arrival = Ts(self.now.0 + c.transfer.seconds * 1000);
        let over_network = moved && c.transfer.mode != TransferMode::Express;
        let link =
            record.job.input.as_ref().filter(|_| over_network).and_then(|i| self.sched.route_link(&i.location, site));
        record.state = if moved && c.transfer.seconds > 0 { JobState::InTransfer } else { JobState::Placed };
        record.active = Some(Active {
            site,
            reservation: p.reservation,
            start_at: c.start_at,
            end_at: c.end_at,
            meter,
            latency_ms: c.latency_ms,
            link,
            time_limit_s: None,
            block: None,
            lent: None,
        });
        self.events.push(Event::Placed {
            id,
            at: self.now,
            attempt: record.attempt,
            site: c.site.clone(),
            pool: c.pool.clone(),
            start_at: c.start_at,
            end_at: c.end_at,
            mode: c.transfer.mode,
            deferred_s: p.deferred_s,
            start_within_s: suanwang_sched::place::start_within_s(self.sched.network(), &record.job),
        });
        if record.state == JobState::InTransfer {
            self.timer(arrival, id, record.attempt, Phase::Arrive);
        }
        // Capacity is kept in 15-minute slots; a job planned for the first slot it could have
        // (the first to begin at or after now: less than a slot away) starts as soon as its
        // data is in place rather than waiting for the slot boundary — not one planned a whole
        // slot later, whose slot is someone else's until then. A deferred start waits its
        // planned time × the time scale (at speed, a wait of hours passes in seconds, as run
        // times do)
        let start = if c.start_at.0 - self.now.0 < 900_000 {
            arrival.max(self.now)
        } else if (self.time_scale - 1.0).abs() < f64::EPSILON {
            c.start_at
        } else {
            let wait = ((c.start_at.0 - self.now.0) as f64 * self.time_scale).round() as i64;
            Ts(self.now.0.saturating_add(wait)).max(arrival)
        };
        self.timer(start.max(self.now), id, record.attempt, Phase::Start);
    }

    fn fire(&mut self, id: JobId, attempt: u32, phase: Phase) {
        let now = self.now;
        // a timer of an earlier attempt (before a reschedule) or of a finished job is stale
        let Some(record) = self.jobs.get_mut(&id).filter(|r| r.attempt == attempt) else { return };
        match phase {
            Phase::Arrive => {
                if record.state == JobState::InTransfer {
                    record.state = JobState::Placed;
                    self.events.push(Event::DataArrived { id, at: now, attempt });
                }
            }
            Phase::Start => {
                record.state = JobState::Running;
                // a job that starts before its planned slot (or late in it) still runs for its
                // planned time: it ends that long after it actually started, not at the plan's end
                if let Some(a) = record.active.as_mut() {
                    let planned_ms = a.end_at.0.saturating_sub(a.start_at.0).max(0);
                    a.start_at = now;
                    a.end_at = Ts(now.0.saturating_add(planned_ms));
                }
                let end = record.active.as_ref().map_or(now, |a| a.end_at);
                self.events.push(Event::Started { id, at: now, attempt });
                let site = record.active.as_ref().map(|a| a.site);
                let net = self.sched.network();
                match site.map(|s| &net.sites[s]).filter(|s| self.agent_sites.iter().any(|a| a.id == s.id)) {
                    // a real machine: its agent runs the job and reports how it ended
                    Some(s) => {
                        let run = record.job.run.clone();
                        let planned_s = (end.0 - now.0).max(1000) / 1000;
                        let time_limit_s = (planned_s.max(1) as u64).saturating_mul(2).max(60);
                        if let Some(a) = record.active.as_mut() {
                            a.time_limit_s = Some(time_limit_s);
                        }
                        self.events.push(Event::Assigned {
                            at: now,
                            assignment: Assignment {
                                id,
                                attempt,
                                site: s.id.clone(),
                                command: run.as_ref().map_or_else(|| "sleep".to_string(), |r| r.command.clone()),
                                args: run.as_ref().map_or_else(|| vec![planned_s.to_string()], |r| r.args.clone()),
                                env: run.map(|r| r.env).unwrap_or_default(),
                                cores: record.job.resources.count,
                                memory_mib: memory_limit_mib(&record.job),
                                time_limit_s,
                                checkpoint_s: record.job.checkpoint_s,
                                tenant: record.job.tenant.clone(),
                                run_id: String::new(),
                            },
                        });
                    }
                    None => self.timer(end.max(now), id, attempt, Phase::Finish),
                }
            }
            Phase::Finish => {
                let Some(record) = self.jobs.remove(&id) else { return };
                let Some(active) = &record.active else { return };
                self.counts.in_flight -= 1;
                self.complete(id, &record, active, active.meter);
            }
        }
    }

    /// A job ends well (by the clock on a simulated site, or by its agent's report): its outcome
    /// with `meter` as what it used.
    fn complete(&mut self, id: JobId, record: &Record, active: &Active, meter: Meter) {
        let now = self.now;
        let meter = self.charge_use(record, &meter);
        let site = &self.sched.network().sites[active.site];
        let outcome = Outcome {
            id,
            tenant: record.job.tenant.clone(),
            kind: record.job.kind,
            family: record.job.resources.family,
            units: record.job.resources.count,
            origin: record.job.origin.clone(),
            site: site.id.clone(),
            in_hub: site.in_hub(),
            west: site.side == Side::West,
            deferrable: record.job.kind.is_delay_tolerant(),
            submitted_at: record.submitted_at,
            started_at: active.start_at,
            finished_at: now,
            deadline: record.job.deadline,
            tier: record.job.latency_tier,
            latency_ms: active.latency_ms,
            attempts: record.attempt,
            meter,
        };
        self.counts.completed += 1;
        self.events.push(Event::Completed { id, at: now, outcome: Box::new(outcome) });
    }

    fn cancel(&mut self, id: JobId) -> Result<(), EngineError> {
        let record = self.jobs.remove(&id).ok_or(EngineError::NotFound(id))?;
        let mut meter = Meter::default();
        if let Some(a) = &record.active {
            self.let_go(a);
            if record.state == JobState::Running {
                meter = a.meter.partial(self.now.0 - a.start_at.0, a.end_at.0 - a.start_at.0);
            }
        }
        let meter = self.charge_use(&record, &meter);
        self.counts.in_flight -= 1;
        self.counts.cancelled += 1;
        self.events.push(Event::Cancelled { id, at: self.now, meter });
        Ok(())
    }

    fn unfunded(&mut self, id: JobId, price_fen: i64, available_fen: i64) -> Result<(), EngineError> {
        let record = self.jobs.get(&id).ok_or(EngineError::NotFound(id))?;
        let Some(a) = &record.active else { return Err(EngineError::NotFound(id)) };
        if record.state == JobState::Running || record.attempt != 1 {
            return Err(EngineError::NotFound(id));
        }
        let net = self.sched.network();
        let site = net.sites[a.site].id.clone();
        let pool = self.sched.pool(a.reservation.pool).id.clone();
        if let Some(a) = self.jobs.remove(&id).and_then(|r| r.active) {
            self.let_go(&a);
        }
        self.counts.in_flight -= 1;
        self.counts.refused += 1;
        let rejections = vec![suanwang_sched::Rejection::balance(&site, &pool, price_fen, available_fen)];
        self.events.push(Event::Refused { id, at: self.now, rejections });
        Ok(())
    }

    /// The price of job `id`'s current placement as planned (compute, energy at the actual
    /// tariff, transfer), with the meter it was planned on.
    pub fn planned_meter(&self, id: JobId) -> Option<&Meter> {
        self.jobs.get(&id).and_then(|r| r.active.as_ref()).map(|a| &a.meter)
    }

    /// Jobs placed, moving data or running at site index `si`, in id order.
    fn jobs_at(&self, si: usize) -> Vec<JobId> {
        let mut ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, r)| r.active.as_ref().is_some_and(|a| a.site == si))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// A site is lost: no new placements there; every job placed, moving data or running there
    /// is released and placed again from the start (no checkpoints) — on the site's paired
    /// backup when that satisfies the job, else wherever the scheduler finds best.
    fn site_down(&mut self, site: &str) -> Result<(), EngineError> {
        let si = self.sched.set_site_available(site, false).ok_or_else(|| EngineError::UnknownSite(site.into()))?;
        let affected = self.jobs_at(si);
        let now = self.now;
        self.events.push(Event::SiteLost { site: site.to_string(), at: now, jobs: affected.len() });
        let backup = self.sched.network().sites[si].backup.clone();
        self.reschedule(&affected, site, backup.as_deref(), &format!("site {site} lost"));
        Ok(())
    }

    /// A link is cut: jobs whose data is still moving over it by network go back to the
    /// scheduler (which now avoids the link); data already in place is unaffected.
    fn link_down(&mut self, a: &str, b: &str) -> Result<(), EngineError> {
        let l = self
            .sched
            .set_link_available(a, b, false)
            .ok_or_else(|| EngineError::UnknownLink(a.to_string(), b.to_string()))?;
        let mut affected: Vec<(JobId, usize)> = self
            .jobs
            .iter()
            .filter(|(_, r)| r.state == JobState::InTransfer)
            .filter_map(|(id, r)| r.active.as_ref().filter(|x| x.link == Some(l)).map(|x| (*id, x.site)))
            .collect();
        affected.sort_unstable();
        self.events.push(Event::LinkLost { a: a.to_string(), b: b.to_string(), at: self.now, jobs: affected.len() });
        for (id, site) in affected {
            let site = self.sched.network().sites[site].id.clone();
            self.reschedule(&[id], &site, None, &format!("link {a}–{b} cut"));
        }
        Ok(())
    }

    /// Releases `ids` and places them again from the start, on `prefer` first when given and
    /// the job allows it; a job no site can take fails with the reason.
    fn reschedule(&mut self, ids: &[JobId], from_site: &str, prefer: Option<&str>, reason: &str) {
        let now = self.now;
        for &id in ids {
            let Some(mut record) = self.jobs.remove(&id) else { continue };
            let mut why = reason.to_string();
            if let Some(a) = record.active.take() {
                self.let_go(&a);
                if record.state == JobState::Running
                    && let Some(saved) = resume_from_checkpoint(Arc::make_mut(&mut record.job), &a, now)
                {
                    why = format!("{reason}; resumes from its checkpoint at {saved:.0} % done");
                }
            }
            self.requeue(id, record, from_site, prefer, &why);
        }
    }

    /// Places job `id` (out of the engine, holding no reservation) again as its next attempt,
    /// on `prefer` first when given and the job allows it; a job no site can take fails with
    /// the reason.
    fn requeue(&mut self, id: JobId, mut record: Record, from_site: &str, prefer: Option<&str>, why: &str) {
        let now = self.now;
        record.attempt += 1;
        self.events.push(Event::Rescheduled {
            id,
            at: now,
            from_site: from_site.to_string(),
            attempt: record.attempt,
            reason: why.to_string(),
        });
        let preferred = prefer
            .filter(|b| record.job.allowed_sites.is_empty() || record.job.allowed_sites.iter().any(|s| s == b))
            .and_then(|b| {
                let mut pinned = Job::clone(&record.job);
                pinned.allowed_sites = vec![b.to_string()];
                self.sched.place(&pinned, now, &self.policy).ok()
            });
        match preferred.map_or_else(|| self.sched.place(&record.job, now, &self.policy), Ok) {
            Ok(p) => {
                self.activate(id, &mut record, &p);
                self.jobs.insert(id, record);
            }
            Err(refusal) => {
                self.counts.in_flight -= 1;
                self.counts.failed += 1;
                let reason = format!("{why}; {refusal}");
                self.events.push(Event::Failed { id, at: now, reason, meter: record.used });
            }
        }
    }

    fn register_site(&mut self, site: AgentSite, owner: Owner, approved: bool) -> Result<(), EngineError> {
        if let Some(known) = self.agent_sites.iter().find(|a| a.id == site.id) {
            let grant = self.grants.get(&site.id).cloned().unwrap_or(SiteGrant {
                owner: owner.clone(),
                approved: true,
                suspended: false,
            });
            if !owner.is_operator() && grant.owner != owner {
                return Err(EngineError::NotOwner { site: site.id, owner: grant.owner });
            }
            if *known != site {
                return Err(EngineError::Site(format!(
                    "{} is registered with other pools (what was approved is fixed); use a new site id",
                    site.id
                )));
            }
            let on = grant.approved && !grant.suspended;
            if on {
                self.sched.set_site_available(&site.id, true);
            }
            self.events.push(Event::SiteRegistered { site: site.id, at: self.now, approved: grant.approved });
        } else {
            let net = self.sched.network().with_agent_site(&site).map_err(EngineError::Site)?;
            self.sched = self.sched.extended(Arc::new(net)).map_err(EngineError::Site)?;
            // an agent runs commands here: jobs with a `run` section may be placed here
            self.sched.set_site_runs_commands(&site.id, true);
            if !approved {
                self.sched.set_site_available(&site.id, false);
            }
            self.grants.insert(site.id.clone(), SiteGrant { owner, approved, suspended: false });
            self.agent_sites.push(site.clone());
            self.events.push(Event::SiteRegistered { site: site.id, at: self.now, approved });
        }
        Ok(())
    }

    fn approve_site(&mut self, site: &str, owner: Option<Owner>) -> Result<(), EngineError> {
        let grant = self.grants.get_mut(site).ok_or_else(|| EngineError::UnknownSite(site.to_string()))?;
        if let Some(o) = owner {
            grant.owner = o;
        }
        grant.approved = true;
        let (on, owner) = (!grant.suspended, grant.owner.clone());
        if on {
            self.sched.set_site_available(site, true);
        }
        self.events.push(Event::SiteApproved { site: site.to_string(), at: self.now, owner });
        Ok(())
    }

    fn report(&mut self, id: JobId, attempt: u32, outcome: &RunOutcome) -> Result<(), EngineError> {
        let record = self.jobs.get(&id).ok_or(EngineError::NotFound(id))?;
        if record.attempt != attempt {
            return Err(EngineError::StaleAttempt { id, current: record.attempt, reported: attempt });
        }
        if record.state != JobState::Running {
            return Err(EngineError::NotAssigned(id));
        }
        let Some(active) = record.active.as_ref() else { return Err(EngineError::NotAssigned(id)) };
        let limit_s = active.time_limit_s.unwrap_or_else(|| {
            (((active.end_at.0 - active.start_at.0).max(1000) / 1000) as u64).saturating_mul(2).max(60)
        });
        check_usage(outcome, limit_s, record.job.resources.count, memory_limit_mib(&record.job))?;
        // what ran is metered by its real wall time, whether it succeeded or not; the wall time
        // is bounded by the time limit, so this only fails for a meter already near overflow
        let planned_ms = (active.end_at.0 - active.start_at.0).max(1000);
        let wall_ms = (outcome.wall_seconds * 1000.0).round() as i64;
        let meter = active
            .meter
            .ratio(wall_ms, planned_ms)
            .map_err(|e| EngineError::Implausible { field: "wall_seconds", reason: e.to_string() })?;
        let Some(mut record) = self.jobs.remove(&id) else { return Err(EngineError::NotFound(id)) };
        let Some(active) = record.active.take() else { return Err(EngineError::NotAssigned(id)) };
        self.let_go(&active);
        let now = self.now;
        self.counts.in_flight -= 1;
        let usage = Usage {
            cpu_seconds: outcome.cpu_seconds,
            peak_memory_mib: outcome.peak_memory_mib,
            wall_seconds: outcome.wall_seconds,
        };
        self.events.push(Event::Measured { id, at: now, attempt, usage });
        if outcome.succeeded {
            self.complete(id, &record, &active, meter);
        } else {
            self.counts.failed += 1;
            let reason = outcome.reason.clone().unwrap_or_else(|| "the run failed".into());
            let meter = self.charge_use(&record, &meter);
            self.events.push(Event::Failed { id, at: now, reason, meter });
        }
        Ok(())
    }
}

/// The memory limit a job's agent enforces: its memory per unit (at least 1 GiB) × units.
fn memory_limit_mib(job: &Job) -> u64 {
    u64::from(job.resources.memory_gib.max(1)) * 1024 * u64::from(job.resources.count)
}

/// A report's usage must be finite, non-negative and plausible for the run: wall time within
/// its time limit plus `WALL_GRACE_S`, CPU seconds within wall time × cores plus
/// `CPU_TOLERANCE` and `CPU_TOLERANCE_S`, peak memory within the memory limit plus
/// `MEMORY_TOLERANCE` and `MEMORY_TOLERANCE_MIB`.
fn check_usage(o: &RunOutcome, time_limit_s: u64, cores: u32, memory_mib: u64) -> Result<(), EngineError> {
    let bad = |field, reason: String| Err(EngineError::Implausible { field, reason });
    for (field, v) in
        [("wall_seconds", o.wall_seconds), ("cpu_seconds", o.cpu_seconds), ("peak_memory_mib", o.peak_memory_mib)]
    {
        if !v.is_finite() {
            return bad(field, format!("{v} is not a finite number"));
        }
        if v < 0.0 {
            return bad(field, format!("{v} is negative"));
        }
    }
    let wall_max = time_limit_s as f64 + WALL_GRACE_S;
    if o.wall_seconds > wall_max {
        return bad(
            "wall_seconds",
            format!(
                "{} s is more than the run's time limit of {time_limit_s} s plus the {WALL_GRACE_S} s grace",
                o.wall_seconds
            ),
        );
    }
    let cpu_max = o.wall_seconds * f64::from(cores) * (1.0 + CPU_TOLERANCE) + CPU_TOLERANCE_S;
    if o.cpu_seconds > cpu_max {
        return bad(
            "cpu_seconds",
            format!(
                "{} s is more than wall time {} s × {cores} cores (+{} %, +{CPU_TOLERANCE_S} s) = {cpu_max:.1} s",
                o.cpu_seconds,
                o.wall_seconds,
                CPU_TOLERANCE * 100.0
            ),
        );
    }
    let mem_max = memory_mib as f64 * (1.0 + MEMORY_TOLERANCE) + MEMORY_TOLERANCE_MIB;
    if o.peak_memory_mib > mem_max {
        return bad(
            "peak_memory_mib",
            format!(
                "{} MiB is more than the run's memory limit of {memory_mib} MiB (+{} %, +{MEMORY_TOLERANCE_MIB} MiB)",
                o.peak_memory_mib,
                MEMORY_TOLERANCE * 100.0
            ),
        );
    }
    Ok(())
}

/// A running job that checkpoints keeps the work done up to its last checkpoint: what is left
/// becomes its work. Returns the share saved (percent), or `None` when nothing was saved.
fn resume_from_checkpoint(job: &mut Job, active: &Active, now: Ts) -> Option<f64> {
    let every_ms = i64::from(job.checkpoint_s?) * 1000;
    let planned_ms = (active.end_at.0 - active.start_at.0).max(1);
    let ran_ms = (now.0 - active.start_at.0).clamp(0, planned_ms);
    let saved_ms = ran_ms / every_ms * every_ms;
    if saved_ms <= 0 || saved_ms >= planned_ms {
        return None;
    }
    let left = 1.0 - saved_ms as f64 / planned_ms as f64;
    job.work = match job.work {
        Work::RunTime { run_time_s } => {
            Work::RunTime { run_time_s: ((f64::from(run_time_s) * left).ceil() as u32).max(1) }
        }
        Work::Amount { amount_pflop } => Work::Amount { amount_pflop: amount_pflop * left },
    };
    Some((1.0 - left) * 100.0)
}
