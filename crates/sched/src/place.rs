//! Online placement: candidates → filters (each refusal named) → scorers (normalised, weighted
//! by the policy) → the best option, with its explanation.

use std::sync::Arc;

use serde::Serialize;
use suanwang_core::job::{Classification, Job, Work};
use suanwang_core::network::{Arch, Place, Side};
use suanwang_core::{Family, Network, Ts};

use crate::policy::{Policy, Scorer};
use crate::series::SiteSeries;
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

/// Why one site was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub site: String,
    pub filter: Filter,
    pub detail: String,
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
    side: Side,
    pue_permille: i64,
    grid_factor: f64,
    series: SiteSeries,
    pools: std::ops::Range<usize>,
}

/// Raw values of one option, before normalisation (index = `Scorer::ALL`).
#[derive(Debug, Clone, Copy)]
struct Opt {
    pool: usize,
    start: i64,
    len: i64,
    run_s: i64,
    transfer: Transfer,
    cost: Cost,
    energy_kwh: f64,
    green: f64,
    carbon_kg: f64,
    fits: bool,
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
        (0..7).map(|k| self.weights[k] * self.normalised(k, raw[k])).sum()
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

/// A job resolved against the network: indices instead of names.
struct Request<'a> {
    job: &'a Job,
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
    opts: Vec<Opt>,
    runs: Vec<u32>,
    stage: Vec<Option<(Filter, usize)>>,
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
                side: s.side,
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
            opts: vec![],
            runs: vec![],
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
        for t in &mut self.timelines {
            t.advance(base);
        }
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
                site: placement.chosen.site.clone(),
                filter: Filter::Capacity,
                detail: e.to_string(),
            }],
        })?;
        Ok(placement)
    }

    fn request<'a>(&self, job: &'a Job) -> Result<Request<'a>, Refusal> {
        let refuse = |detail: String| Refusal {
            job: job.name.clone(),
            rejections: vec![Rejection { site: String::new(), filter: Filter::Spec, detail }],
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
        Ok(Request { job, origin, origin_side: self.city_side[origin], location, size_gb, restricted_region })
    }

    /// Finds the best placement for `job` at `now` under `policy` without reserving it.
    pub fn plan(&mut self, job: &Job, now: Ts, policy: &Policy) -> Result<Placement, Refusal> {
        let req = self.request(job)?;
        let mut opts = std::mem::take(&mut self.opts);
        opts.clear();
        self.stage.iter_mut().for_each(|s| *s = None);
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
        let transfers: Vec<(i64, Transfer)> = match req.location.and_then(|l| self.routes[l][si]) {
            Some(route) => {
                let beijing_sod = (now.0.div_euclid(1000) + 8 * 3600).rem_euclid(86_400);
                let mut t = transfer::options(&self.cfg.transfer, route, req.size_gb, beijing_sod);
                // cheapest first: for each start the first mode that has arrived is the one used
                t.sort_by_key(|x| (x.cost_fen, x.seconds));
                t.into_iter().map(|x| (slot_at_or_after(Ts(now.0 + x.seconds * 1000)), x)).collect()
            }
            None => vec![(slot_at_or_after(now), Transfer { mode: TransferMode::None, seconds: 0, cost_fen: 0 })],
        };
        let first_arrival = transfers.iter().map(|(s, _)| *s).min().unwrap_or(slot_at_or_after(now));
        let deferrable = job.kind.is_delay_tolerant()
            || (job.latency_tier.is_none() && job.kind != suanwang_core::JobKind::Inference);
        let r = &job.resources;
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
            let len = slots_for(run_s);
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
            while s <= last_considered {
                let ok = fits(s, &self.runs);
                any_fit |= ok;
                self.push_option(req, si, pi, s, len, run_s, latency_ms, now, &transfers, ok, opts);
                s = if s % SLOTS_PER_HOUR == 0 {
                    s + SLOTS_PER_HOUR
                } else {
                    s + SLOTS_PER_HOUR - s.rem_euclid(SLOTS_PER_HOUR)
                };
            }
            if !any_fit {
                // queue: the first start that fits, up to the latest allowed
                let mut s = first_arrival + 1;
                while s <= latest && !fits(s, &self.runs) {
                    s += 1;
                }
                if s <= latest {
                    self.push_option(req, si, pi, s, len, run_s, latency_ms, now, &transfers, true, opts);
                    any_fit = true;
                }
            }
            if !any_fit {
                reach(&mut self.stage, si, Filter::Capacity, pi);
            }
            // options refused by green share or budget leave the list but mark the stage
            let mut k = before;
            while k < opts.len() {
                let o = opts[k];
                let green_ok = o.green + 1e-12 >= job.min_green_share;
                let budget_ok = job.budget_fen.is_none_or(|b| o.cost.total_fen <= b);
                if green_ok && budget_ok {
                    k += 1;
                } else {
                    reach(&mut self.stage, si, if green_ok { Filter::Budget } else { Filter::Green }, pi);
                    opts.swap_remove(k);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_option(
        &self,
        req: &Request<'_>,
        si: usize,
        pi: usize,
        start: i64,
        len: i64,
        run_s: i64,
        latency_ms: f64,
        now: Ts,
        transfers: &[(i64, Transfer)],
        fits: bool,
        opts: &mut Vec<Opt>,
    ) {
        let Some(&(_, transfer)) = transfers.iter().find(|(arrive, _)| *arrive <= start) else { return };
        let p = &self.pools[pi];
        let site = &self.sites[si];
        let count = i64::from(req.job.resources.count);
        let w = site.series.window(start, len);
        // compute: count × price per unit-hour × run time, rounded up to the fen
        let compute_fen = i128::from(count) * i128::from(p.price_fen_per_unit_hour) * i128::from(run_s);
        let compute_fen = ceil_div(compute_fen, 3600);
        // energy: count × mW × PUE‰ × s × mean tariff; fen = mWh×1e-9 × fen/MWh
        let energy_num = i128::from(count)
            * i128::from(p.power_mw_per_unit)
            * i128::from(site.pue_permille)
            * i128::from(run_s)
            * i128::from(w.tariff_sum);
        let energy_fen = ceil_div(energy_num, i128::from(len) * 3_600_000_000_000_000);
        let to_i64 = |x: i128| i64::try_from(x).unwrap_or(i64::MAX / 4);
        let cost = Cost {
            compute_fen: to_i64(compute_fen),
            energy_fen: to_i64(energy_fen),
            transfer_fen: transfer.cost_fen,
            total_fen: to_i64(compute_fen + energy_fen + i128::from(transfer.cost_fen)),
        };
        let energy_kwh =
            count as f64 * p.power_mw_per_unit as f64 / 1e6 * site.pue_permille as f64 / 1000.0 * run_s as f64 / 3600.0;
        let carbon_kg = energy_kwh * w.carbon_kg_per_kwh;
        let wait_s = (slot_start(start).0 - now.0).max(0) as f64 / 1000.0;
        let east_west = if req.job.kind.is_delay_tolerant() {
            f64::from(u8::from(site.side == Side::East && self.net.sites[si].in_hub()))
        } else if req.origin_side == Side::West {
            f64::from(u8::from(site.side == Side::East))
        } else {
            0.0
        };
        let pairing = f64::from(u8::from(!self.paired[req.origin][si]));
        let tl = &self.timelines[pi];
        let load = f64::from(tl.used_at(start).saturating_add(req.job.resources.count).min(tl.size()))
            / f64::from(tl.size().max(1));
        opts.push(Opt {
            pool: pi,
            start,
            len,
            run_s,
            transfer,
            cost,
            energy_kwh,
            green: w.green_share,
            carbon_kg,
            fits,
            raw: [cost.total_fen as f64, carbon_kg, wait_s, latency_ms, east_west, pairing, load],
        });
    }

    /// Every option of `job` (capacity ignored: the current load only decides which fit now),
    /// scored with one fixed normalisation, best first, at most `keep` of them.
    pub fn options(&mut self, job: &Job, now: Ts, policy: &Policy, keep: usize) -> Result<JobOptions, Refusal> {
        let req = self.request(job)?;
        let mut opts = std::mem::take(&mut self.opts);
        opts.clear();
        self.stage.iter_mut().for_each(|s| *s = None);
        for si in 0..self.sites.len() {
            self.site_options(&req, si, now, &mut opts);
        }
        let norm = Norm::over(&opts, policy);
        let mut choices: Vec<Choice> = opts
            .iter()
            .map(|o| Choice {
                reservation: PoolReservation {
                    pool: o.pool,
                    window: Reservation { start: o.start, end: o.start + o.len, units: job.resources.count },
                },
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
        let mut best: Vec<(f64, usize)> = vec![];
        for (i, o) in opts.iter().enumerate().filter(|(_, o)| o.fits) {
            let s = score(o);
            let site = self.pools[o.pool].site;
            match best.iter_mut().find(|(_, j)| self.pools[opts[*j].pool].site == site) {
                Some(b) => {
                    if better(s, o, b.0, &opts[b.1]) {
                        *b = (s, i);
                    }
                }
                None => best.push((s, i)),
            }
        }
        best.sort_by(|a, b| {
            a.0.total_cmp(&b.0).then(opts[a.1].start.cmp(&opts[b.1].start)).then(opts[a.1].pool.cmp(&opts[b.1].pool))
        });
        let rejections = self.rejections(req, opts);
        let Some(&(_, chosen_i)) = best.first() else {
            return Err(Refusal { job: job.name.clone(), rejections });
        };
        let candidate = |i: usize| {
            let o = &opts[i];
            let p = &self.pools[o.pool];
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
                end_at: Ts(slot_start(o.start).0 + o.run_s * 1000),
                transfer: o.transfer,
                cost: o.cost,
                energy_kwh: o.energy_kwh,
                carbon_kg: o.carbon_kg,
                carbon_location_kg: o.energy_kwh * self.sites[p.site].grid_factor,
                green_share: o.green,
                latency_ms: o.raw[3],
                score: score(o),
                scores,
            }
        };
        let o = &opts[chosen_i];
        let earliest_fit = opts
            .iter()
            .filter(|x| x.fits && self.pools[x.pool].site == self.pools[o.pool].site)
            .map(|x| x.start)
            .min()
            .unwrap_or(o.start);
        Ok(Placement {
            job: job.name.clone(),
            policy: policy.name.clone(),
            chosen: candidate(chosen_i),
            run_s: o.run_s,
            deferred_s: (o.start - earliest_fit) * SLOT_SECONDS,
            runners_up: best.iter().skip(1).take(self.cfg.runners_up).map(|(_, i)| candidate(*i)).collect(),
            rejections,
            options_considered: opts.len(),
            reservation: PoolReservation {
                pool: o.pool,
                window: Reservation { start: o.start, end: o.start + o.len, units: job.resources.count },
            },
        })
    }

    fn rejections(&self, req: &Request<'_>, opts: &[Opt]) -> Vec<Rejection> {
        let job = req.job;
        let r = &job.resources;
        let mut out = vec![];
        for (si, stage) in self.stage.iter().enumerate() {
            let Some((filter, pool)) = *stage else { continue };
            // a site with a surviving option is not rejected
            let site = &self.net.sites[si];
            if opts.iter().any(|o| o.fits && self.pools[o.pool].site == si) {
                continue;
            }
            let pool_id = if pool == usize::MAX { "" } else { self.pool_id(pool) };
            let detail = match filter {
                Filter::Spec => String::new(),
                Filter::Region => format!("region {} is not allowed", site.region),
                Filter::Residency => "restricted data may not leave its region".to_string(),
                Filter::Latency => format!(
                    "{:.2} ms one-way from {} exceeds the {} tier's {} ms",
                    self.city_latency[req.origin][si],
                    job.origin,
                    job.latency_tier.map_or("none", suanwang_core::LatencyTier::as_str),
                    job.latency_tier.and_then(suanwang_core::LatencyTier::max_ms).unwrap_or(0.0)
                ),
                Filter::Family => format!("no {} pool", r.family.as_str()),
                Filter::Accelerator => match (&r.accelerator, r.min_throughput) {
                    (Some(a), _) => format!("no {a} pool"),
                    (None, Some(t)) => format!("no pool reaches {} TFLOPS {} per unit", t.tflops, t.precision.as_str()),
                    _ => "no matching accelerator".into(),
                },
                Filter::Architecture => "no pool matches a variant".into(),
                Filter::Memory => format!("no pool has {} GiB per unit", r.memory_gib),
                Filter::PoolSize => format!("no pool has {} units", r.count),
                Filter::Deadline if job.deadline.is_some() => {
                    "cannot finish before the deadline (data transfer included)".into()
                }
                Filter::Deadline => "cannot start within the planning horizon (data transfer included)".into(),
                Filter::Capacity => {
                    format!("{pool_id}: {} units not free for the run before the latest start", r.count)
                }
                Filter::Green => format!("{pool_id}: green share below {:.2}", job.min_green_share),
                Filter::Budget => format!("{pool_id}: cost exceeds the budget of {} fen", job.budget_fen.unwrap_or(0)),
            };
            out.push(Rejection { site: site.id.clone(), filter, detail });
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

/// Ceiling division of non-negative amounts.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

fn better(s: f64, o: &Opt, bs: f64, b: &Opt) -> bool {
    s.total_cmp(&bs).then((o.start, o.pool).cmp(&(b.start, b.pool))).is_lt()
}
