//! Online placement: candidates → filters (each refusal named) → scorers (normalised, weighted
//! by the policy) → the best option, with its explanation.

use std::sync::Arc;

use serde::Serialize;
use suanwang_core::job::{Classification, Job, Work};
use suanwang_core::network::{Arch, Place, Side};
use suanwang_core::{Family, Network, Ts};

use crate::policy::{Policy, Scorer};
use crate::series::{SiteSeries, WindowEnergy};
use crate::slots::{SLOT_SECONDS, SLOTS_PER_HOUR, slot_at_or_after, slot_of, slot_start, slots_for};
use crate::timeline::{Reservation, Timeline, TimelineError};
use crate::transfer::{self, Route, Transfer, TransferMode, TransferModel};

/// Scheduler settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Config {
    /// Planning horizon in slots (default 192 = 48 h).
    pub horizon_slots: usize,
    /// How far past its earliest start a deferrable job may be shifted for a better slot
    /// (default 96 slots = 24 h: tariffs and green profiles repeat daily, so later starts
    /// only add waiting).
    pub max_deferral_slots: i64,
    /// Runners-up reported with each placement.
    pub runners_up: usize,
    pub transfer: TransferModel,
}

impl Default for Config {
    fn default() -> Self {
        Config { horizon_slots: 192, max_deferral_slots: 96, runners_up: 3, transfer: TransferModel::default() }
    }
}

/// The filters, in the order they apply. A site refused by several is reported with the
/// furthest one any of its options reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// The job itself is unusable (a number out of range, an unknown place): no site is tried.
    Spec,
    /// Not in `allowed_sites` / `allowed_regions`.
    Region,
    /// Restricted data may not leave its region: the compute must come to the data.
    Residency,
    /// Farther from the origin than the job's latency tier allows.
    Latency,
    Family,
    /// Not the requested accelerator model, or below the minimum throughput.
    Accelerator,
    /// No pool matches any of the job's architecture variants.
    Architecture,
    Memory,
    /// The pool has fewer units than the gang needs.
    PoolSize,
    /// Cannot finish (including data transfer) before the deadline.
    Deadline,
    /// Not enough free units over the run in any candidate window.
    Capacity,
    /// Green share over the run below the job's minimum.
    Green,
    /// Compute + energy + transfer above the budget.
    Budget,
}

impl Filter {
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Spec => "spec",
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
        }
    }
}

/// Why one site was refused: the filter, and the numbers behind it. The sentence (`detail`)
/// is rendered only when asked for — refusals are made on the hot path, read rarely.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub site: String,
    pub filter: Filter,
    /// The pool whose options got furthest, for pool-level filters.
    pub pool: Option<String>,
    /// The value that failed (ms for latency), when there is one.
    pub value: Option<f64>,
    /// The limit it failed against (ms, GiB, units, share, fen).
    pub limit: Option<f64>,
    /// Free text, for `spec` refusals.
    pub message: Option<String>,
}

impl Rejection {
    fn new(site: &str, filter: Filter) -> Rejection {
        Rejection { site: site.to_string(), filter, pool: None, value: None, limit: None, message: None }
    }

    /// The reason as a sentence.
    pub fn detail(&self) -> String {
        let pool = self.pool.as_deref().map(|p| format!("{p}: ")).unwrap_or_default();
        let limit = self.limit.unwrap_or(0.0);
        match self.filter {
            Filter::Spec => self.message.clone().unwrap_or_default(),
            Filter::Region => "not among the job's allowed regions or sites".into(),
            Filter::Residency => "restricted data may not leave its region".into(),
            Filter::Latency => {
                format!("{:.2} ms one-way from the origin exceeds the tier's {limit} ms", self.value.unwrap_or(0.0))
            }
            Filter::Family => "no pool of the job's family".into(),
            Filter::Accelerator => "no pool with the requested accelerator model or throughput".into(),
            Filter::Architecture => "no pool matches any of the job's architecture variants".into(),
            Filter::Memory => format!("no pool has {limit} GiB per unit"),
            Filter::PoolSize => format!("no pool has {limit} units"),
            Filter::Deadline if self.limit.is_some() => {
                format!("{pool}cannot finish before the deadline (data transfer included)")
            }
            Filter::Deadline => format!("{pool}cannot start within the planning horizon (data transfer included)"),
            Filter::Capacity => format!("{pool}{limit} units not free for the run before the latest start"),
            Filter::Green => format!("{pool}green share over the run below {limit:.2}"),
            Filter::Budget => format!("{pool}cost exceeds the budget of {limit} fen"),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.site, self.filter.as_str(), self.detail())
    }
}

impl Serialize for Rejection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Rejection", 6)?;
        st.serialize_field("site", &self.site)?;
        st.serialize_field("filter", &self.filter)?;
        st.serialize_field("pool", &self.pool)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("limit", &self.limit)?;
        st.serialize_field("detail", &self.detail())?;
        st.end()
    }
}

/// No site can take the job.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("no site can take job {job:?}: {}", summary(.rejections))]
pub struct Refusal {
    pub job: String,
    pub rejections: Vec<Rejection>,
}

fn summary(r: &[Rejection]) -> String {
    let mut counts: Vec<(Filter, usize)> = vec![];
    for x in r {
        match counts.iter_mut().find(|(f, _)| *f == x.filter) {
            Some((_, n)) => *n += 1,
            None => counts.push((x.filter, 1)),
        }
    }
    counts.sort();
    counts.iter().map(|(f, n)| format!("{n} site(s) by {}", f.as_str())).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreLine {
    pub scorer: Scorer,
    pub raw: f64,
    pub normalised: f64,
    pub weight: f64,
    pub weighted: f64,
}

/// Money of one option, integer fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Cost {
    pub compute_fen: i64,
    pub energy_fen: i64,
    pub transfer_fen: i64,
    pub total_fen: i64,
}

/// One way to run the job: a pool, a start slot, a transfer mode, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub site: String,
    pub pool: String,
    pub start_at: Ts,
    pub end_at: Ts,
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

/// A decision: where, when, how the data moves — and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub job: String,
    pub policy: String,
    pub chosen: Candidate,
    pub run_s: i64,
    /// How long the start was shifted past the earliest feasible one, seconds.
    pub deferred_s: i64,
    pub runners_up: Vec<Candidate>,
    pub rejections: Vec<Rejection>,
    pub options_considered: usize,
    /// What `commit` reserves.
    pub reservation: PoolReservation,
}

/// A reservation on a pool (by index into the scheduler's pool list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PoolReservation {
    pub pool: usize,
    pub window: Reservation,
}

/// A pool flattened for the hot path: integers where money is concerned.
#[derive(Debug, Clone)]
struct PoolInfo {
    site: usize,
    index_in_site: usize,
    family: Family,
    model: String,
    arch: Arch,
    accelerator_kind: Option<String>,
    memory_gib: u32,
    size: u32,
    ucu_per_unit: f64,
    peak: suanwang_core::Peaks,
    price_fen_per_unit_hour: i64,
    power_mw_per_unit: i64,
}

#[derive(Debug, Clone)]
struct SiteInfo {
    pue_permille: i64,
    grid_factor: f64,
    series: SiteSeries,
    pools: std::ops::Range<usize>,
}

/// One option, compact (the hot path makes hundreds per plan): what varies with the start.
/// The rest — pool, run time, compute price, energy — lives in its `PoolRun`, and exact
/// integer money is worked out only for the options reported.
#[derive(Debug, Clone, Copy)]
struct Opt {
    /// Index into the plan's `pool_runs`.
    run: u32,
    /// Index into the site's transfer list.
    transfer: u8,
    fits: bool,
    green: f32,
    start: i64,
    /// Raw scorer values (index = `Scorer::ALL`); money in fen, before rounding.
    raw: [f64; 7],
}

/// How one job's options are scored: the best and worst raw values over its options and the
/// policy's weights. Fixed per job, so a job's score for an option does not depend on which
/// other jobs are placed — the batch optimiser and the greedy baseline share one objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Norm {
    pub lo: [f64; 7],
    pub hi: [f64; 7],
    pub weights: [f64; 7],
}

impl Norm {
    fn over(opts: &[Opt], policy: &Policy) -> Norm {
        let mut lo = [f64::INFINITY; 7];
        let mut hi = [f64::NEG_INFINITY; 7];
        for o in opts {
            for k in 0..7 {
                lo[k] = lo[k].min(o.raw[k]);
                hi[k] = hi[k].max(o.raw[k]);
            }
        }
        Norm { lo, hi, weights: policy.weights.as_array() }
    }

    /// 0 for the best option; (raw − best) / worst for money, carbon, wait and latency, so a
    /// 1 % difference stays small (min-max scaling would blow it up to 1); the 0–1 scorers
    /// (`east_west`, `pairing`, `load`) are used as they are.
    pub fn normalised(&self, k: usize, x: f64) -> f64 {
        match k {
            0..=3 if self.hi[k] > 0.0 => ((x - self.lo[k]) / self.hi[k]).max(0.0),
            0..=3 => 0.0,
            _ => x,
        }
    }

    pub fn score(&self, raw: &[f64; 7]) -> f64 {
        let mut total = 0.0;
        for (k, x) in raw.iter().enumerate().take(4) {
            if self.hi[k] > 0.0 {
                total += self.weights[k] * ((x - self.lo[k]) / self.hi[k]).max(0.0);
            }
        }
        total + self.weights[4] * raw[4] + self.weights[5] * raw[5] + self.weights[6] * raw[6]
    }

    /// An upper bound on any option's score: what leaving a job unplaced costs in a batch.
    pub fn unplaced_penalty(&self) -> f64 {
        self.weights.iter().sum::<f64>() + 1.0
    }
}

/// One option of a job for the batch optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Choice {
    pub reservation: PoolReservation,
    pub score: f64,
    pub raw: [f64; 7],
}

/// A job's options, best first, with the scoring they were ranked by.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobOptions {
    pub choices: Vec<Choice>,
    pub norm: Norm,
}

/// What is fixed for one job on one pool, whatever the start: computed once, used for every
/// candidate start.
#[derive(Debug, Clone, Copy)]
struct PoolRun {
    index: usize,
    site: usize,
    len: i64,
    run_s: i64,
    compute_fen: i64,
    energy_wh: i64,
    energy_kwh: f64,
    latency_ms: f64,
    east_west: f64,
    pairing: f64,
}

/// A job resolved against the network: indices instead of names.
struct Request<'a> {
    job: &'a Job,
    now: Ts,
    origin: usize,
    origin_side: Side,
    location: Option<usize>,
    size_gb: f64,
    /// (hub or green region, province) restricted data must stay in; an empty region means
    /// the province.
    restricted_region: Option<(String, String)>,
}

/// The scheduler: the network, the load placed so far, and scratch space. Pure: time comes in
/// as arguments, and the same calls in the same order give the same placements.
#[derive(Debug)]
pub struct Scheduler {
    net: Arc<Network>,
    cfg: Config,
    pools: Vec<PoolInfo>,
    sites: Vec<SiteInfo>,
    timelines: Vec<Timeline>,
    /// `[city][site]` one-way ms.
    city_latency: Vec<Vec<f64>>,
    city_side: Vec<Side>,
    /// `[city][site]`: the site's hub is paired with the city.
    paired: Vec<Vec<bool>>,
    /// `[place][site]` where place = city index, then `cities.len() + site index`.
    routes: Vec<Vec<Option<Route>>>,
    /// Season per Beijing day over the horizon (day number since the epoch).
    seasons: Vec<(i64, suanwang_core::Season)>,
    opts: Vec<Opt>,
    runs: Vec<u32>,
    /// Per plan: the fixed part of each (job, pool) and each site's transfer options.
    pool_runs: Vec<PoolRun>,
    site_transfers: Vec<Vec<(i64, Transfer)>>,
    windows: Vec<WindowEnergy>,
    stage: Vec<Option<(Filter, usize)>>,
}

/// Season of each Beijing day the horizon `[base, base + slots)` touches.
fn seasons_for(base: i64, slots: usize) -> Vec<(i64, suanwang_core::Season)> {
    let first = (base + 32).div_euclid(96);
    let last = (base + slots as i64 + 32).div_euclid(96);
    (first..=last).map(|d| (d, crate::slots::season_of(d * 96 - 32))).collect()
}

impl Scheduler {
    /// A scheduler with an empty network whose horizon starts at `now`'s slot.
    pub fn new(net: Arc<Network>, now: Ts, cfg: Config) -> Scheduler {
        let base = slot_of(now);
        let mut pools = vec![];
        let mut sites = vec![];
        for (si, s) in net.sites.iter().enumerate() {
            let first = pools.len();
            for (pi, p) in s.pools.iter().enumerate() {
                pools.push(PoolInfo {
                    site: si,
                    index_in_site: pi,
                    family: p.family,
                    model: p.model.clone(),
                    arch: p.arch,
                    accelerator_kind: p.accelerator_kind.clone(),
                    memory_gib: p.memory_gib_per_unit,
                    size: u32::try_from(p.count).unwrap_or(u32::MAX),
                    ucu_per_unit: p.ucu_per_unit,
                    peak: p.peak_per_unit,
                    price_fen_per_unit_hour: p.price_fen_per_unit_hour,
                    power_mw_per_unit: (p.power_w_per_unit * 1000.0).round() as i64,
                });
            }
            sites.push(SiteInfo {
                pue_permille: (s.pue * 1000.0).round() as i64,
                grid_factor: s.grid_factor_kg_per_kwh,
                series: SiteSeries::new(&net, s),
                pools: first..pools.len(),
            });
        }
        let timelines = pools.iter().map(|p| Timeline::new(p.size, base, cfg.horizon_slots)).collect();
        let city_latency = net
            .cities
            .iter()
            .map(|c| {
                net.sites.iter().map(|s| net.latency(&c.id, &s.id).map_or(f64::INFINITY, |l| l.one_way_ms)).collect()
            })
            .collect();
        // A city is western when its nearest site is (西数西算).
        let city_side = net
            .cities
            .iter()
            .map(|c| {
                net.sites
                    .iter()
                    .min_by(|a, b| {
                        let la = net.latency(&c.id, &a.id).map_or(f64::INFINITY, |l| l.one_way_ms);
                        let lb = net.latency(&c.id, &b.id).map_or(f64::INFINITY, |l| l.one_way_ms);
                        la.total_cmp(&lb)
                    })
                    .map_or(Side::East, |s| s.side)
            })
            .collect();
        let paired = net
            .cities
            .iter()
            .map(|c| {
                net.sites.iter().map(|s| net.pairings.iter().any(|p| p.city == c.id && p.hub == s.region)).collect()
            })
            .collect();
        let sources: Vec<&str> =
            net.cities.iter().map(|c| c.id.as_str()).chain(net.sites.iter().map(|s| s.id.as_str())).collect();
        let routes =
            sources.iter().map(|from| net.sites.iter().map(|s| transfer::route(&net, from, s)).collect()).collect();
        let n_sites = sites.len();
        Scheduler {
            net,
            cfg,
            pools,
            sites,
            timelines,
            city_latency,
            city_side,
            paired,
            routes,
            seasons: seasons_for(base, cfg.horizon_slots),
            opts: vec![],
            runs: vec![],
            pool_runs: vec![],
            site_transfers: vec![vec![]; n_sites],
            windows: vec![],
            stage: vec![None; n_sites],
        }
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// Pool id of a pool index.
    pub fn pool_id(&self, pool: usize) -> &str {
        let p = &self.pools[pool];
        &self.net.sites[p.site].pools[p.index_in_site].id
    }

    pub fn pool_site(&self, pool: usize) -> usize {
        self.pools[pool].site
    }

    pub fn timeline(&self, pool: usize) -> &Timeline {
        &self.timelines[pool]
    }

    /// Moves every pool's horizon to start at `now`'s slot.
    pub fn advance(&mut self, now: Ts) {
        let base = slot_of(now);
        if self.timelines.first().is_some_and(|t| t.base() >= base) {
            return;
        }
        for t in &mut self.timelines {
            t.advance(base);
        }
        self.seasons = seasons_for(base, self.cfg.horizon_slots);
    }

    pub fn commit(&mut self, p: &PoolReservation) -> Result<(), TimelineError> {
        self.timelines[p.pool].reserve(p.window)
    }

    pub fn release(&mut self, p: &PoolReservation) -> Result<(), TimelineError> {
        self.timelines[p.pool].release(p.window)
    }

    /// Plans and reserves in one step.
    pub fn place(&mut self, job: &Job, now: Ts, policy: &Policy) -> Result<Placement, Refusal> {
        let placement = self.plan(job, now, policy)?;
        // `plan` only proposes windows that fit, so this cannot fail; if it ever did, refuse
        // rather than over-commit.
        self.commit(&placement.reservation).map_err(|e| Refusal {
            job: job.name.clone(),
            rejections: vec![Rejection {
                message: Some(e.to_string()),
                ..Rejection::new(&placement.chosen.site, Filter::Capacity)
            }],
        })?;
        Ok(placement)
    }

    fn request<'a>(&self, job: &'a Job, now: Ts) -> Result<Request<'a>, Refusal> {
        let refuse = |detail: String| Refusal {
            job: job.name.clone(),
            rejections: vec![Rejection { message: Some(detail), ..Rejection::new("", Filter::Spec) }],
        };
        // Jobs normally come checked by `suanwang_core::job::validate`; code can still build
        // one by hand, so the numbers the arithmetic relies on are checked again here.
        let r = &job.resources;
        if r.count == 0 {
            return Err(refuse("resources.count must be at least 1".into()));
        }
        if !(job.min_green_share.is_finite() && (0.0..=1.0).contains(&job.min_green_share)) {
            return Err(refuse(format!("min_green_share {} is not in [0, 1]", job.min_green_share)));
        }
        if let Work::Amount { amount_pflop } = job.work
            && !(amount_pflop.is_finite() && amount_pflop > 0.0)
        {
            return Err(refuse(format!("work.amount_pflop {amount_pflop} is not a positive number")));
        }
        if let Some(input) = &job.input
            && !(input.size_gb.is_finite() && input.size_gb >= 0.0 && input.size_gb <= suanwang_core::job::MAX_INPUT_GB)
        {
            return Err(refuse(format!("input.size_gb {} is not a size in GB", input.size_gb)));
        }
        if r.min_throughput.is_some_and(|t| !(t.tflops.is_finite() && t.tflops > 0.0)) {
            return Err(refuse("resources.min_throughput.tflops is not a positive number".into()));
        }
        if job.budget_fen.is_some_and(|b| b < 0) {
            return Err(refuse("budget_fen is negative".into()));
        }
        let Some(Place::City(origin)) = self.net.place(&job.origin) else {
            return Err(refuse(format!("origin {:?} is not a city of this network", job.origin)));
        };
        let (location, size_gb, restricted_region) = match &job.input {
            None => (None, 0.0, None),
            Some(input) => {
                let loc = match self.net.place(&input.location) {
                    Some(Place::City(i)) => i,
                    Some(Place::Site(i)) => self.net.cities.len() + i,
                    _ => return Err(refuse(format!("input location {:?} is not a city or site", input.location))),
                };
                let region = (input.classification == Classification::Restricted).then(|| {
                    match self.net.place(&input.location) {
                        Some(Place::Site(i)) => (self.net.sites[i].region.clone(), self.net.sites[i].province.clone()),
                        _ => {
                            let c = self.net.city(&input.location).unwrap_or(&self.net.cities[origin]);
                            (c.region.clone().unwrap_or_default(), c.province.clone())
                        }
                    }
                });
                (Some(loc), input.size_gb, region)
            }
        };
        Ok(Request { job, now, origin, origin_side: self.city_side[origin], location, size_gb, restricted_region })
    }

    /// Finds the best placement for `job` at `now` under `policy` without reserving it.
    pub fn plan(&mut self, job: &Job, now: Ts, policy: &Policy) -> Result<Placement, Refusal> {
        let req = self.request(job, now)?;
        let mut opts = std::mem::take(&mut self.opts);
        opts.clear();
        self.stage.iter_mut().for_each(|s| *s = None);
        self.pool_runs.clear();
        for si in 0..self.sites.len() {
            self.site_options(&req, si, now, &mut opts);
        }
        let result = self.choose(&req, policy, &opts);
        self.opts = opts;
        result
    }

    #[allow(clippy::many_single_char_names)] // r, p, s, k: resources, pool, slot, index
    fn site_options(&mut self, req: &Request<'_>, si: usize, now: Ts, opts: &mut Vec<Opt>) {
        let job = req.job;
        let site = &self.net.sites[si];
        if (!job.allowed_sites.is_empty() && !job.allowed_sites.contains(&site.id))
            || (!job.allowed_regions.is_empty() && !job.allowed_regions.contains(&site.region))
        {
            return reach(&mut self.stage, si, Filter::Region, usize::MAX);
        }
        if let Some((region, province)) = &req.restricted_region {
            let same = if region.is_empty() { site.province == *province } else { site.region == *region };
            if !same {
                return reach(&mut self.stage, si, Filter::Residency, usize::MAX);
            }
        }
        let latency_ms = self.city_latency[req.origin][si];
        if let Some(max) = job.latency_tier.and_then(suanwang_core::LatencyTier::max_ms)
            && latency_ms > max
        {
            return reach(&mut self.stage, si, Filter::Latency, usize::MAX);
        }
        // transfer modes, cheapest first: for each start the first that has arrived is used
        let mut transfers = std::mem::take(&mut self.site_transfers[si]);
        transfers.clear();
        match req.location.and_then(|l| self.routes[l][si]) {
            Some(route) => {
                let beijing_sod = (now.0.div_euclid(1000) + 8 * 3600).rem_euclid(86_400);
                let (modes, n) = transfer::options(&self.cfg.transfer, route, req.size_gb, beijing_sod);
                transfers.extend(modes[..n].iter().map(|x| (slot_at_or_after(Ts(now.0 + x.seconds * 1000)), *x)));
                transfers.sort_by_key(|(_, x)| (x.cost_fen, x.seconds));
            }
            None => {
                transfers.push((slot_at_or_after(now), Transfer { mode: TransferMode::None, seconds: 0, cost_fen: 0 }));
            }
        }
        let first_arrival = transfers.iter().map(|(s, _)| *s).min().unwrap_or(slot_at_or_after(now));
        let deferrable = job.kind.is_delay_tolerant()
            || (job.latency_tier.is_none() && job.kind != suanwang_core::JobKind::Inference);
        let east_west = if job.kind.is_delay_tolerant() {
            f64::from(u8::from(site.side == Side::East && site.in_hub()))
        } else if req.origin_side == Side::West {
            f64::from(u8::from(site.side == Side::East))
        } else {
            0.0
        };
        let pairing = f64::from(u8::from(!self.paired[req.origin][si]));
        let pue_permille = self.sites[si].pue_permille;
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        let mut windows_len = 0;
        let r = &job.resources;
        let count = i64::from(r.count);
        for pi in self.sites[si].pools.clone() {
            let p = &self.pools[pi];
            let failed = if p.family != r.family {
                Some(Filter::Family)
            } else if r.accelerator.as_ref().is_some_and(|a| *a != p.model)
                || r.min_throughput.is_some_and(|t| p.peak.get(t.precision).is_none_or(|v| v < t.tflops))
            {
                Some(Filter::Accelerator)
            } else if !r.variants.is_empty()
                && !r.variants.iter().any(|v| {
                    v.arch == p.arch
                        && v.accelerator_kind.as_ref().is_none_or(|k| p.accelerator_kind.as_ref() == Some(k))
                })
            {
                Some(Filter::Architecture)
            } else if p.memory_gib < r.memory_gib {
                Some(Filter::Memory)
            } else if p.size < r.count {
                Some(Filter::PoolSize)
            } else {
                None
            };
            if let Some(f) = failed {
                reach(&mut self.stage, si, f, pi);
                continue;
            }
            let run_s = match job.work {
                Work::RunTime { run_time_s } => i64::from(run_time_s),
                Work::Amount { amount_pflop } => {
                    let tflops = f64::from(r.count) * p.ucu_per_unit;
                    ((amount_pflop * 1000.0 / tflops).ceil() as i64).max(1)
                }
            };
            // compute: count × price per unit-hour × run time, rounded up to the fen
            let compute = mul_ceil_div(&[count, p.price_fen_per_unit_hour, run_s], 3600);
            // energy, Wh: count × mW × PUE‰ × s / (1000 × 1000 × 3600), rounded up
            let wh = mul_ceil_div(&[count, p.power_mw_per_unit, pue_permille, run_s], 3_600_000_000);
            let run = PoolRun {
                index: pi,
                site: si,
                len: slots_for(run_s),
                run_s,
                compute_fen: compute,
                energy_wh: wh,
                energy_kwh: wh as f64 / 1000.0,
                latency_ms,
                east_west,
                pairing,
            };
            let run_index = self.pool_runs.len() as u32;
            self.pool_runs.push(run);
            let run = &self.pool_runs[run_index as usize];
            let timeline = &self.timelines[pi];
            let horizon_last = timeline.end() - 1;
            let latest = match job.deadline {
                Some(d) => slot_of(Ts(d.0.saturating_sub(run_s.saturating_mul(1000)))).min(horizon_last),
                None => horizon_last,
            };
            if latest < first_arrival {
                reach(&mut self.stage, si, Filter::Deadline, pi);
                continue;
            }
            // Candidate starts: the earliest, then each hour boundary within the deferral
            // window (deferrable jobs only); when none of these fits, the first start that does.
            let all_fit = r.count <= timeline.min_free();
            if !all_fit {
                timeline.runs(r.count, &mut self.runs);
            }
            let len = run.len;
            let fits = |s: i64, runs: &[u32]| {
                all_fit || {
                    let i = (s - timeline.base()) as usize;
                    let need = len.min(timeline.end() - s);
                    i < runs.len() && i64::from(runs[i]) >= need
                }
            };
            let last_considered =
                if deferrable { latest.min(first_arrival + self.cfg.max_deferral_slots) } else { first_arrival };
            let mut any_fit = false;
            let mut s = first_arrival;
            let before = opts.len();
            // the site's pools walk the same starts: energy windows of one run length are shared
            if windows_len != len {
                windows.clear();
                windows_len = len;
            }
            let mut k = 0;
            while s <= last_considered {
                let ok = fits(s, &self.runs);
                any_fit |= ok;
                let w = self.push_option(req, run_index, s, &transfers, ok, windows.get(k).copied(), opts);
                if k == windows.len() {
                    windows.push(w);
                }
                k += 1;
                s = (s.div_euclid(SLOTS_PER_HOUR) + 1) * SLOTS_PER_HOUR;
            }
            if !any_fit {
                // queue: the first start that fits, up to the latest allowed
                let mut s = first_arrival + 1;
                while s <= latest && !fits(s, &self.runs) {
                    s += 1;
                }
                if s <= latest {
                    self.push_option(req, run_index, s, &transfers, true, None, opts);
                    any_fit = true;
                }
            }
            if !any_fit {
                reach(&mut self.stage, si, Filter::Capacity, pi);
            }
            // options refused by green share or budget leave the list but mark the stage
            let mut k = before;
            while k < opts.len() {
                let o = &opts[k];
                let green_ok = f64::from(o.green) + 1e-6 >= job.min_green_share;
                let budget_ok = job.budget_fen.is_none_or(|b| self.exact_cost_in(o, &transfers).total_fen <= b);
                if green_ok && budget_ok {
                    k += 1;
                } else {
                    reach(&mut self.stage, si, if green_ok { Filter::Budget } else { Filter::Green }, pi);
                    opts.swap_remove(k);
                }
            }
        }
        self.site_transfers[si] = transfers;
        self.windows = windows;
    }

    /// Adds the option of running the plan's pool run `run` from slot `start`, using the
    /// cheapest transfer mode that has the data in place by then.
    #[allow(clippy::too_many_arguments)]
    fn push_option(
        &self,
        req: &Request<'_>,
        run: u32,
        start: i64,
        transfers: &[(i64, Transfer)],
        fits: bool,
        window: Option<WindowEnergy>,
        opts: &mut Vec<Opt>,
    ) -> WindowEnergy {
        let pool = &self.pool_runs[run as usize];
        let w =
            window.unwrap_or_else(|| self.sites[pool.site].series.window_in(self.season_at(start), start, pool.len));
        let Some(t) = transfers.iter().position(|(arrive, _)| *arrive <= start) else { return w };
        let money = pool.compute_fen as f64
            + pool.energy_wh as f64 * w.tariff_sum as f64 / (pool.len as f64 * 1e6)
            + transfers[t].1.cost_fen as f64;
        let carbon_kg = pool.energy_kwh * w.carbon_kg_per_kwh;
        let wait_s = (slot_start(start).0 - req.now.0).max(0) as f64 / 1000.0;
        let tl = &self.timelines[pool.index];
        let load = f64::from(tl.used_at(start).saturating_add(req.job.resources.count).min(tl.size()))
            / f64::from(tl.size().max(1));
        opts.push(Opt {
            run,
            transfer: t as u8,
            fits,
            green: w.green_share as f32,
            start,
            raw: [money, carbon_kg, wait_s, pool.latency_ms, pool.east_west, pool.pairing, load],
        });
        w
    }

    /// Exact integer money of an option: compute and transfer as planned, energy at the
    /// window's tariff rounded up to the fen.
    fn exact_cost(&self, o: &Opt) -> Cost {
        self.exact_cost_in(o, &self.site_transfers[self.pool_runs[o.run as usize].site])
    }

    /// `exact_cost` with the site's transfer list given (while it is being built).
    fn exact_cost_in(&self, o: &Opt, transfers: &[(i64, Transfer)]) -> Cost {
        let pool = &self.pool_runs[o.run as usize];
        let transfer = transfers[o.transfer as usize].1;
        let w = self.sites[pool.site].series.window_in(self.season_at(o.start), o.start, pool.len);
        let energy_fen = i64::try_from(ceil_div(
            i128::from(pool.energy_wh) * i128::from(w.tariff_sum),
            i128::from(pool.len) * 1_000_000,
        ))
        .unwrap_or(i64::MAX / 4);
        let total_fen = pool.compute_fen.saturating_add(energy_fen).saturating_add(transfer.cost_fen);
        Cost { compute_fen: pool.compute_fen, energy_fen, transfer_fen: transfer.cost_fen, total_fen }
    }

    fn reservation(&self, o: &Opt, units: u32) -> PoolReservation {
        let run = &self.pool_runs[o.run as usize];
        PoolReservation { pool: run.index, window: Reservation { start: o.start, end: o.start + run.len, units } }
    }

    /// Season of a slot, from the per-day cache when the slot is in the horizon.
    fn season_at(&self, slot: i64) -> suanwang_core::Season {
        let day = (slot + 32).div_euclid(96);
        match self
            .seasons
            .first()
            .and_then(|(first, _)| usize::try_from(day - first).ok())
            .and_then(|i| self.seasons.get(i))
        {
            Some((_, season)) => *season,
            None => crate::slots::season_of(slot),
        }
    }

    /// Every option of `job` (capacity ignored: the current load only decides which fit now),
    /// scored with one fixed normalisation, best first, at most `keep` of them.
    pub fn options(&mut self, job: &Job, now: Ts, policy: &Policy, keep: usize) -> Result<JobOptions, Refusal> {
        let req = self.request(job, now)?;
        let mut opts = std::mem::take(&mut self.opts);
        opts.clear();
        self.stage.iter_mut().for_each(|s| *s = None);
        self.pool_runs.clear();
        for si in 0..self.sites.len() {
            self.site_options(&req, si, now, &mut opts);
        }
        let norm = Norm::over(&opts, policy);
        let mut choices: Vec<Choice> = opts
            .iter()
            .map(|o| Choice {
                reservation: self.reservation(o, job.resources.count),
                score: norm.score(&o.raw),
                raw: o.raw,
            })
            .collect();
        choices.sort_by(|a, b| {
            a.score
                .total_cmp(&b.score)
                .then(a.reservation.window.start.cmp(&b.reservation.window.start))
                .then(a.reservation.pool.cmp(&b.reservation.pool))
        });
        choices.truncate(keep);
        let result = if choices.is_empty() {
            Err(Refusal { job: job.name.clone(), rejections: self.rejections(&req, &opts) })
        } else {
            Ok(JobOptions { choices, norm })
        };
        self.opts = opts;
        result
    }

    /// True when the reservation fits the current load.
    pub fn fits(&self, r: &PoolReservation) -> bool {
        self.timelines[r.pool].fits(r.window.start, r.window.end, r.window.units)
    }

    fn choose(&self, req: &Request<'_>, policy: &Policy, opts: &[Opt]) -> Result<Placement, Refusal> {
        let job = req.job;
        let n = Norm::over(opts, policy);
        let weights = n.weights;
        let norm = |k: usize, x: f64| n.normalised(k, x);
        let score = |o: &Opt| n.score(&o.raw);
        // best option per site, for the choice and the runners-up; ties go to the earlier
        // start, then the lower pool index: deterministic
        let mut by_site: Vec<Option<(f64, usize)>> = vec![None; self.sites.len()];
        for (i, o) in opts.iter().enumerate().filter(|(_, o)| o.fits) {
            let s = score(o);
            let slot = &mut by_site[self.pool_runs[o.run as usize].site];
            if slot.is_none_or(|(bs, bi)| better(s, o, bs, &opts[bi])) {
                *slot = Some((s, i));
            }
        }
        let mut best: Vec<(f64, usize)> = by_site.into_iter().flatten().collect();
        best.sort_by(|a, b| {
            a.0.total_cmp(&b.0).then(opts[a.1].start.cmp(&opts[b.1].start)).then(opts[a.1].run.cmp(&opts[b.1].run))
        });
        let rejections = self.rejections(req, opts);
        let Some(&(_, chosen_i)) = best.first() else {
            return Err(Refusal { job: job.name.clone(), rejections });
        };
        let candidate = |i: usize| {
            let o = &opts[i];
            let run = &self.pool_runs[o.run as usize];
            let p = &self.pools[run.index];
            let scores = Scorer::ALL
                .iter()
                .enumerate()
                .map(|(k, s)| ScoreLine {
                    scorer: *s,
                    raw: o.raw[k],
                    normalised: norm(k, o.raw[k]),
                    weight: weights[k],
                    weighted: weights[k] * norm(k, o.raw[k]),
                })
                .collect();
            Candidate {
                site: self.net.sites[p.site].id.clone(),
                pool: self.net.sites[p.site].pools[p.index_in_site].id.clone(),
                start_at: slot_start(o.start),
                end_at: Ts(slot_start(o.start).0 + run.run_s * 1000),
                transfer: self.site_transfers[run.site][o.transfer as usize].1,
                cost: self.exact_cost(o),
                energy_kwh: run.energy_kwh,
                carbon_kg: o.raw[1],
                carbon_location_kg: run.energy_kwh * self.sites[p.site].grid_factor,
                green_share: f64::from(o.green),
                latency_ms: o.raw[3],
                score: score(o),
                scores,
            }
        };
        let o = &opts[chosen_i];
        let earliest_fit = opts
            .iter()
            .filter(|x| x.fits && self.pool_runs[x.run as usize].site == self.pool_runs[o.run as usize].site)
            .map(|x| x.start)
            .min()
            .unwrap_or(o.start);
        Ok(Placement {
            job: job.name.clone(),
            policy: policy.name.clone(),
            chosen: candidate(chosen_i),
            run_s: self.pool_runs[o.run as usize].run_s,
            deferred_s: (o.start - earliest_fit) * SLOT_SECONDS,
            runners_up: best.iter().skip(1).take(self.cfg.runners_up).map(|(_, i)| candidate(*i)).collect(),
            rejections,
            options_considered: opts.len(),
            reservation: self.reservation(o, job.resources.count),
        })
    }

    fn rejections(&self, req: &Request<'_>, opts: &[Opt]) -> Vec<Rejection> {
        let job = req.job;
        let r = &job.resources;
        let mut out = vec![];
        let mut has_fit = vec![false; self.sites.len()];
        for o in opts.iter().filter(|o| o.fits) {
            has_fit[self.pool_runs[o.run as usize].site] = true;
        }
        for (si, stage) in self.stage.iter().enumerate() {
            let Some((filter, pool)) = *stage else { continue };
            // a site with a surviving option is not rejected
            let site = &self.net.sites[si];
            if has_fit[si] {
                continue;
            }
            let mut rejection = Rejection::new(&site.id, filter);
            if pool != usize::MAX && filter >= Filter::Deadline {
                rejection.pool = Some(self.pool_id(pool).to_string());
            }
            match filter {
                Filter::Latency => {
                    rejection.value = Some(self.city_latency[req.origin][si]);
                    rejection.limit = job.latency_tier.and_then(suanwang_core::LatencyTier::max_ms);
                }
                Filter::Memory => rejection.limit = Some(f64::from(r.memory_gib)),
                Filter::PoolSize | Filter::Capacity => rejection.limit = Some(f64::from(r.count)),
                Filter::Deadline => rejection.limit = job.deadline.map(|d| d.0 as f64),
                Filter::Green => rejection.limit = Some(job.min_green_share),
                Filter::Budget => rejection.limit = job.budget_fen.map(|b| b as f64),
                _ => {}
            }
            out.push(rejection);
        }
        out
    }
}

/// Records that an option at site `si` died at `filter` (keeping the furthest).
fn reach(stage: &mut [Option<(Filter, usize)>], si: usize, filter: Filter, pool: usize) {
    let s = &mut stage[si];
    if s.is_none_or(|(f, _)| filter > f) {
        *s = Some((filter, pool));
    }
}

/// `ceil(Π factors / den)` for non-negative integers: in i64 when the product fits (the
/// common case), in i128 otherwise; saturates far below `i64::MAX` so sums cannot overflow.
fn mul_ceil_div(factors: &[i64], den: i64) -> i64 {
    let product = factors.iter().try_fold(1_i64, |acc, f| acc.checked_mul(*f));
    match product {
        Some(p) => p / den + i64::from(p % den != 0),
        None => {
            let p = factors.iter().fold(1_i128, |acc, f| acc.saturating_mul(i128::from(*f)));
            i64::try_from(ceil_div(p, i128::from(den))).unwrap_or(i64::MAX / 4).min(i64::MAX / 4)
        }
    }
}

/// Ceiling division of non-negative amounts.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

fn better(s: f64, o: &Opt, bs: f64, b: &Opt) -> bool {
    s.total_cmp(&bs).then((o.start, o.run).cmp(&(b.start, b.run))).is_lt()
}
