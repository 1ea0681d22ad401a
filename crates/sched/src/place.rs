//! Online placement: candidates → filters (each refusal named) → scorers (normalised, weighted
//! by the policy) → the best option, with its explanation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use suanwang_core::job::{Classification, Job, Work};
use suanwang_core::network::{Arch, Place, Side};
use suanwang_core::{Family, LatencyTier, Network, Ts};

use crate::policy::{N, Policy, Scorer};
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
    /// The site is down (lost) or suspended by the operator.
    Unavailable,
    /// Not in `allowed_sites` / `allowed_regions`.
    Region,
    /// The job runs a command (a `run` section), and no agent runs commands at this site: a
    /// simulated site would mark it completed without running it.
    Agent,
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
    /// The tenant's wallet cannot hold the price (decided by the control plane's ledger after
    /// placement, never by the scheduler).
    Balance,
}

impl Filter {
    pub fn as_str(self) -> &'static str {
        match self {
            Filter::Spec => "spec",
            Filter::Unavailable => "unavailable",
            Filter::Region => "region",
            Filter::Agent => "agent",
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
            Filter::Balance => "balance",
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
    /// The tenant's wallet could not hold `price_fen` for a placement at `site` (`pool`).
    pub fn balance(site: &str, pool: &str, price_fen: i64, available_fen: i64) -> Rejection {
        Rejection {
            pool: Some(pool.to_string()),
            value: Some(price_fen as f64),
            limit: Some(available_fen as f64),
            ..Rejection::new(site, Filter::Balance)
        }
    }

    fn new(site: &str, filter: Filter) -> Rejection {
        Rejection { site: site.to_string(), filter, pool: None, value: None, limit: None, message: None }
    }

    /// The reason as a sentence.
    pub fn detail(&self) -> String {
        let pool = self.pool.as_deref().map(|p| format!("{p}: ")).unwrap_or_default();
        let limit = self.limit.unwrap_or(0.0);
        match self.filter {
            Filter::Spec => self.message.clone().unwrap_or_default(),
            Filter::Unavailable => "the site is down or suspended".into(),
            Filter::Region => "not among the job's allowed regions or sites".into(),
            Filter::Agent => {
                "no agent runs commands at this site: a job with a run section is placed only on sites with a live agent"
                    .into()
            }
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
            Filter::Balance => {
                let price = self.value.unwrap_or(0.0);
                format!(
                    "{pool}the price of {price} fen exceeds the {limit} fen the tenant's wallet has available: short by {} fen",
                    price - limit
                )
            }
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
    /// The sites examined and ruled out, each with the filter that did (`plan` only: a
    /// placement made by `place` leaves them out, as nobody reads them on that path). Sites
    /// the search pruned by their score bound are not rejected and not listed; a refusal
    /// examines and lists every site.
    pub rejections: Vec<Rejection>,
    pub options_considered: usize,
    /// What `commit` reserves.
    pub reservation: PoolReservation,
}

/// The scheduler's mutable state (see `Scheduler::snapshot`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedSnapshot {
    pub timelines: Vec<Timeline>,
    pub available: Vec<bool>,
    pub links_up: Vec<bool>,
}

/// A reservation on a pool (by index into the scheduler's pool list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Lowest hourly tariff (fen/MWh) and carbon intensity (kg/kWh) in any season: bounds
    /// for pruning.
    min_tariff: i64,
    min_carbon: f64,
    pue_permille: i64,
    grid_factor: f64,
    /// On the east side of 东数西算, and in a national hub.
    east: bool,
    in_hub: bool,
    /// What the scheduler decides on: the site's energy series, or a forecast of it (boxed:
    /// every plan reads the fields above for every site, and only a few sites' series).
    series: Box<SiteSeries>,
    /// The actual series when `series` is a forecast (`set_forecast`); `None`: exact.
    actual: Option<Box<SiteSeries>>,
    pools: std::ops::Range<usize>,
    /// Per family (index = `Family as usize`): the rates behind the site's static bound.
    rates: [FamilyRates; 3],
}

/// What the cheapest pools of one family at one site charge and draw, whatever the job: with a
/// job's size and the site's terms they give a lower bound on the score of every option the
/// site has (`StaticBound`), before any of its pools, transfers or timelines is looked at.
#[derive(Debug, Clone, Copy, Default)]
struct FamilyRates {
    /// Least compute price, fen per unit-second, and least energy, Wh per unit-second (IT
    /// power × PUE), over the family's pools.
    fen_per_unit_s: f64,
    wh_per_unit_s: f64,
    /// The same per PFLOP of work (a job given as an amount runs amount ÷ TFLOPS per unit).
    fen_per_pflop: f64,
    wh_per_pflop: f64,
    /// The largest pool, units; 0: the site has no pool of the family.
    max_size: u32,
    /// 1 ÷ `max_size` (the least load a unit adds), 0 without a pool.
    inv_max_size: f64,
}

impl FamilyRates {
    fn of(pools: &[PoolInfo], pue_permille: i64) -> [FamilyRates; 3] {
        Family::ALL.map(|f| {
            let mut r = FamilyRates {
                fen_per_unit_s: f64::INFINITY,
                wh_per_unit_s: f64::INFINITY,
                fen_per_pflop: f64::INFINITY,
                wh_per_pflop: f64::INFINITY,
                max_size: 0,
                inv_max_size: 0.0,
            };
            for p in pools.iter().filter(|p| p.family == f) {
                // the same products `site_prepare` rounds up: count × price × s / 3600 and
                // count × mW × PUE‰ × s / 3.6e9
                let fen = p.price_fen_per_unit_hour as f64 / 3600.0;
                let wh = p.power_mw_per_unit as f64 * pue_permille as f64 / 3.6e9;
                r.fen_per_unit_s = r.fen_per_unit_s.min(fen);
                r.wh_per_unit_s = r.wh_per_unit_s.min(wh);
                // an amount of work takes count × run time ≥ PFLOP × 1000 ÷ TFLOPS per unit;
                // a pool without a throughput gives no bound
                let per_pflop = if p.ucu_per_unit > 0.0 { 1000.0 / p.ucu_per_unit } else { 0.0 };
                r.fen_per_pflop = r.fen_per_pflop.min(fen * per_pflop);
                r.wh_per_pflop = r.wh_per_pflop.min(wh * per_pflop);
                r.max_size = r.max_size.max(p.size);
            }
            if r.max_size > 0 {
                r.inv_max_size = 1.0 / f64::from(r.max_size);
            }
            r
        })
    }
}

/// One option, compact (the hot path makes hundreds per plan): what varies with the start.
/// The rest — pool, run time, compute price, energy — lives in its `PoolRun`, and exact
/// integer money is worked out only for the options reported.
#[derive(Debug, Clone, Copy)]
struct Opt {
    /// Index into the plan's `pool_runs`.
    run: u32,
    /// The scheduler's pool index: ties break on it, whatever order the pools were visited in.
    pool: u32,
    /// Index into the site's transfer list.
    transfer: u8,
    fits: bool,
    green: f32,
    start: i64,
    /// Raw scorer values (index = `Scorer::ALL`); money in fen, before rounding.
    raw: [f64; N],
    score: f64,
}

/// How one job's options are scored: each raw value divided by a reference scale fixed for
/// the job before any option is seen, times the policy's weight.
///
/// Scales: money and carbon by what the job would cost and emit on a typical pool of its
/// family (network medians) at the mean tariff and carbon intensity (carbon at least money ÷
/// `MAX_CARBON_PRICE_FEN_PER_KG`); waiting by the job's run
/// time, clamped to [1 h, the deferral window]; latency by the cross-hub bound (20 ms); the 0–1 scorers by 1. Because the
/// scale does not depend on the other options, adding or removing an alternative never
/// changes how the rest compare (unlike min-max scaling, which also turns a 1 % difference
/// into a full point), scores of different jobs are in the same units — so a batch objective
/// is a meaningful sum — and an option is scored the moment it is generated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Norm {
    pub scale: [f64; N],
    pub weights: [f64; N],
    #[serde(skip)]
    coef: [f64; N],
}

impl Norm {
    fn new(scale: [f64; N], policy: &Policy) -> Norm {
        let weights = policy.weights.as_array();
        let mut coef = [0.0; N];
        for k in 0..N {
            coef[k] = weights[k] / scale[k];
        }
        Norm { scale, weights, coef }
    }

    pub fn normalised(&self, k: usize, x: f64) -> f64 {
        x / self.scale[k]
    }

    pub fn score(&self, raw: &[f64; N]) -> f64 {
        raw.iter().zip(self.coef).map(|(x, c)| x * c).sum()
    }

    /// What leaving a job unplaced costs in a batch: above any sensible option's score (a
    /// placement at ten times the reference cost and carbon, a day late, against policy).
    pub fn unplaced_penalty(&self) -> f64 {
        10.0 * self.weights.iter().sum::<f64>() + 1.0
    }
}

/// One option of a job for the batch optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Choice {
    pub reservation: PoolReservation,
    pub score: f64,
    pub raw: [f64; N],
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
    hub: f64,
}

/// A job resolved against the network: indices instead of names.
struct Request<'a> {
    job: &'a Job,
    now: Ts,
    norm: Norm,
    /// Keep every option (for the batch optimiser), not only the best per site.
    collect: bool,
    origin: usize,
    origin_side: Side,
    location: Option<usize>,
    size_gb: f64,
    /// (hub or green region, province) restricted data must stay in; an empty region means
    /// the province.
    restricted_region: Option<(String, String)>,
}

impl Request<'_> {
    /// Delay-tolerant work, and work from the west, belongs west: in an eastern hub or an
    /// eastern city data centre alike it goes against 东数西算 (the east_west scorer).
    fn belongs_west(&self) -> bool {
        self.job.kind.is_delay_tolerant() || self.origin_side == Side::West
    }

    /// Hubs first for work that may travel: a city or regional latency tier keeps work near
    /// its users, where city data centres are what suits it (the hub scorer).
    fn may_travel(&self) -> bool {
        !matches!(self.job.latency_tier, Some(LatencyTier::City | LatencyTier::Regional))
    }
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
    /// Per family (index = `Family as usize`): median price incl. energy at the mean tariff
    /// (fen per unit-hour), median IT power (kW per unit), median unified value per unit.
    family_ref: [(f64, f64, f64); 3],
    /// Mean market-based carbon intensity over sites, kg/kWh, and mean PUE.
    carbon_ref: f64,
    pue_ref: f64,
    /// Season per Beijing day over the horizon (day number since the epoch).
    seasons: Vec<(i64, suanwang_core::Season)>,
    opts: Vec<Opt>,
    /// Per plan, per site: the best fitting option and the earliest fitting start.
    best: Vec<Option<Opt>>,
    considered: usize,
    /// Sites that take new placements (false: lost or suspended).
    available: Vec<bool>,
    /// Sites where an agent runs commands (jobs with a `run` section go only there). Not in
    /// the snapshot: the engine marks its agent sites again.
    runs_commands: Vec<bool>,
    /// Links that carry data (index = `Network::links`).
    links_up: Vec<bool>,
    runs: Vec<u32>,
    /// Per plan: the fixed part of each (job, pool) and each site's transfer options.
    pool_runs: Vec<PoolRun>,
    site_transfers: Vec<Vec<(i64, Transfer)>>,
    windows: Vec<WindowEnergy>,
    /// Per plan, per site: the pools that pass the static filters with a bound on their score,
    /// the first slot the data can be there, and the earliest start any of them can take.
    site_pools: Vec<Vec<(f64, usize, PoolRun)>>,
    site_first: Vec<i64>,
    site_earliest: Vec<i64>,
    /// Per plan, per site: a lower bound on the score of any option it has (see `site_prepare`).
    site_bound: Vec<f64>,
    /// Per plan: sites not yet prepared (by static bound) and prepared but not yet scored (by
    /// `site_bound`), best first; the best scores found so far; the sites scored, and how
    /// many were prepared.
    pending: Frontier,
    ready: BinaryHeap<Reverse<Ranked>>,
    /// Per plan: the first slot the job's data can be at each site (a lower bound), and the
    /// sites prepared (flagged in `is_prepared`).
    arrival: Vec<i64>,
    is_prepared: Vec<bool>,
    /// Per plan: scratch for the sites the data reaches first, and every site's static bound.
    at_floor: Vec<Ranked>,
    static_bounds: Vec<f64>,
    table: SiteTable,
    prepared: Vec<usize>,
    top: Vec<f64>,
    scored: Vec<usize>,
    /// Per plan: the earliest start any site can take; no start is later than it plus the
    /// job's `start_within`.
    global_earliest: i64,
    stage: Vec<Option<(Filter, usize)>>,
}

/// The highest carbon price, fen per kg CO2, a policy weighing money and carbon equally may
/// imply: 100 CNY/kg, about a thousand times China's ETS price — it binds only where a job's
/// carbon is negligible beside its cost.
pub const MAX_CARBON_PRICE_FEN_PER_KG: f64 = 10_000.0;

/// Slack added to a score before pruning against it (scores are O(1) sums of normalised terms).
const PRUNE_MARGIN: f64 = 1e-9;

/// What every plan reads for every site, column by column, so that the static bounds of all
/// sites are one vectorisable pass (`StaticBound::fill`).
#[derive(Debug, Clone, Default)]
struct SiteTable {
    /// Per family (index = `Family as usize`): fen and kg CO2 per unit-second, and per PFLOP,
    /// at the family's cheapest pools and the site's lowest tariff and carbon intensity
    /// (`FamilyRates`); 1 ÷ the largest pool, 0 where the site has none.
    fen_s: [Vec<f64>; 3],
    kg_s: [Vec<f64>; 3],
    fen_pflop: [Vec<f64>; 3],
    kg_pflop: [Vec<f64>; 3],
    inv_size: [Vec<f64>; 3],
    /// 1 where the east_west and hub scorers count against the site (east; not a hub).
    east: Vec<f64>,
    nonhub: Vec<f64>,
    /// `[city][site]`: 1 where the site's hub is not paired with the city.
    unpaired: Vec<Vec<f64>>,
    /// Per family: the largest rate (fen or Wh, per unit-second and per PFLOP) at any site,
    /// to check once per job that no product saturates (`StaticBound` does not saturate).
    max_rate: [(f64, f64); 3],
}

impl SiteTable {
    fn new(sites: &[SiteInfo], paired: &[Vec<bool>]) -> SiteTable {
        let n = sites.len();
        let column = || [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let mut t = SiteTable {
            fen_s: column(),
            kg_s: column(),
            fen_pflop: column(),
            kg_pflop: column(),
            inv_size: column(),
            east: sites.iter().map(|s| f64::from(u8::from(s.east))).collect(),
            nonhub: sites.iter().map(|s| f64::from(u8::from(!s.in_hub))).collect(),
            unpaired: paired.iter().map(|row| row.iter().map(|p| f64::from(u8::from(!p))).collect()).collect(),
            max_rate: [(0.0, 0.0); 3],
        };
        for (si, site) in sites.iter().enumerate() {
            t.set_site(si, site);
        }
        t
    }

    /// Fills site `si`'s row from its rates, lowest tariff and carbon intensity.
    fn set_site(&mut self, si: usize, site: &SiteInfo) {
        for (f, r) in site.rates.iter().enumerate() {
            if r.max_size == 0 {
                for col in
                    [&mut self.fen_s, &mut self.kg_s, &mut self.fen_pflop, &mut self.kg_pflop, &mut self.inv_size]
                {
                    col[f][si] = 0.0;
                }
                continue;
            }
            // fen: compute plus energy (Wh × fen/MWh ÷ 10⁶); kg: kWh × kg/kWh
            let tariff = site.min_tariff as f64 * 1e-6;
            let kg = site.min_carbon * 1e-3;
            self.fen_s[f][si] = r.fen_per_unit_s + r.wh_per_unit_s * tariff;
            self.kg_s[f][si] = r.wh_per_unit_s * kg;
            self.fen_pflop[f][si] = r.fen_per_pflop + r.wh_per_pflop * tariff;
            self.kg_pflop[f][si] = r.wh_per_pflop * kg;
            self.inv_size[f][si] = r.inv_max_size;
            let (unit_s, pflop) = &mut self.max_rate[f];
            *unit_s = unit_s.max(r.fen_per_unit_s).max(r.wh_per_unit_s);
            *pflop = pflop.max(r.fen_per_pflop).max(r.wh_per_pflop);
        }
    }
}

/// Sites in order of their static bound, sorted only as far as they are taken: a plan takes a
/// few dozen of hundreds, so selecting the next chunk (linear) and sorting only it beats a
/// heap's or a full sort's n log n.
#[derive(Debug, Default)]
struct Frontier {
    items: Vec<Ranked>,
    /// The next to take, and the end of the sorted part.
    next: usize,
    sorted: usize,
}

impl Frontier {
    const FIRST_CHUNK: usize = 32;

    fn clear(&mut self) {
        self.items.clear();
        (self.next, self.sorted) = (0, 0);
    }

    fn push(&mut self, r: Ranked) {
        self.items.push(r);
    }

    fn peek(&mut self) -> Option<Ranked> {
        if self.next == self.sorted && self.next < self.items.len() {
            // the next chunk, twice the last: at most twice the work of sorting what is taken
            let rest = &mut self.items[self.next..];
            let chunk = Self::FIRST_CHUNK.max(self.next).min(rest.len());
            if chunk < rest.len() {
                rest.select_nth_unstable(chunk);
            }
            rest[..chunk].sort_unstable();
            self.sorted = self.next + chunk;
        }
        self.items.get(self.next).copied()
    }

    fn pop(&mut self) -> Option<Ranked> {
        let r = self.peek()?;
        self.next += 1;
        Some(r)
    }

    /// The sites not taken yet, in no particular order.
    fn rest(&self) -> &[Ranked] {
        &self.items[self.next..]
    }
}

/// A lower bound on the score of every option at a site, for one job: the site's terms; money
/// and carbon at its cheapest pools' rates, lowest tariff and carbon intensity; the cheapest
/// and fastest a transfer can be (`transfer::lower_bounds`); the least load. It is at most
/// each pool's bound in `site_prepare` (real-valued products where those round up), so pruning
/// on it is exact.
struct StaticBound {
    family: usize,
    /// Unit-seconds of the job (count × run time), or PFLOP of work.
    amount: f64,
    per_pflop: bool,
    coef: [f64; N],
    /// The east_west and hub scorers apply to the job; the load scorer's numerator.
    east_west: bool,
    hub: bool,
    count: f64,
    first_slot: i64,
    first_wait: f64,
    now: Ts,
}

impl StaticBound {
    fn new(req: &Request<'_>, now: Ts) -> StaticBound {
        let job = req.job;
        let (amount, per_pflop) = match job.work {
            Work::RunTime { run_time_s } => (f64::from(job.resources.count) * f64::from(run_time_s), false),
            Work::Amount { amount_pflop } => (amount_pflop, true),
        };
        let first_slot = slot_at_or_after(now);
        StaticBound {
            family: job.resources.family as usize,
            amount,
            per_pflop,
            coef: req.norm.coef,
            east_west: req.belongs_west(),
            hub: req.may_travel(),
            count: f64::from(job.resources.count),
            first_slot,
            first_wait: (slot_start(first_slot).0 - now.0).max(0) as f64 / 1000.0,
            now,
        }
    }

    /// Every site's bound without the transfer, into `out`: one pass over the columns.
    fn fill(&self, table: &SiteTable, latency: &[f64], origin: usize, out: &mut Vec<f64>) {
        let f = self.family;
        let (fen, kg, max_rate) = if self.per_pflop {
            (&table.fen_pflop[f], &table.kg_pflop[f], table.max_rate[f].1)
        } else {
            (&table.fen_s[f], &table.kg_s[f], table.max_rate[f].0)
        };
        out.clear();
        // `site_prepare` saturates far beyond any real job; for one that gets there, 0 bounds
        // (no pruning) rather than a bound above a saturated score
        if self.amount * max_rate >= (i64::MAX / 8) as f64 || !self.amount.is_finite() {
            out.resize(latency.len(), 0.0);
            return;
        }
        let c = &self.coef;
        let (money, carbon, wait) = (c[0] * self.amount, c[1] * self.amount, c[2] * self.first_wait);
        let east = c[4] * f64::from(u8::from(self.east_west));
        let hub = c[7] * f64::from(u8::from(self.hub));
        let load = c[6] * self.count;
        let columns = fen.iter().zip(kg).zip(latency).zip(&table.unpaired[origin]).zip(&table.east).zip(&table.nonhub);
        out.extend(columns.zip(&table.inv_size[f]).map(|((((((fen, kg), lat), unpaired), e), nonhub), inv)| {
            money * fen + carbon * kg + wait + c[3] * lat + c[5] * unpaired + east * e + hub * nonhub + load * inv
        }));
    }

    /// What moving the job's data adds to site `si`'s bound, and the first slot it can be there.
    fn transfer(&self, sched: &Scheduler, req: &Request<'_>, si: usize) -> (f64, i64) {
        match req.location.and_then(|l| sched.routes[l][si]) {
            Some(route) => {
                let (seconds, fen) = transfer::lower_bounds(&sched.cfg.transfer, route, req.size_gb);
                let arrival = slot_at_or_after(Ts(self.now.0.saturating_add((seconds * 1000.0) as i64)));
                // the wait beyond the first slot's, exactly (no division on this per-site path)
                let later = (arrival - self.first_slot).max(0) as f64 * SLOT_SECONDS as f64;
                (self.coef[0] * fen + self.coef[2] * later, arrival)
            }
            None => (0.0, self.first_slot),
        }
    }
}

/// A site ranked by a lower bound on its score: lowest bound first in a `Reverse` heap, ties
/// to the lower site index (deterministic).
#[derive(Debug, Clone, Copy)]
struct Ranked {
    bound: f64,
    site: usize,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bound.total_cmp(&other.bound).then(self.site.cmp(&other.site))
    }
}

/// The last slot `timeline` can start a run of `run_s` seconds at and still meet `deadline`.
fn latest_start(timeline: &Timeline, deadline: Option<Ts>, run_s: i64) -> i64 {
    let horizon_last = timeline.end() - 1;
    match deadline {
        Some(d) => slot_of(Ts(d.0.saturating_sub(run_s.saturating_mul(1000)))).min(horizon_last),
        None => horizon_last,
    }
}

/// Whether a run of `len` slots fits from slot `s`, given `runs` (from `Timeline::runs`): the
/// part beyond the horizon is not checked.
fn run_fits(timeline: &Timeline, runs: &[u32], s: i64, len: i64) -> bool {
    let i = (s - timeline.base()) as usize;
    let need = len.min(timeline.end() - s);
    i < runs.len() && i64::from(runs[i]) >= need
}

/// How long the scheduler may defer `job`'s start, seconds: its `start_within`, else the
/// operator's default for its kind (`policy.toml`) when the job may wait at all — a
/// delay-tolerant kind, or no latency tier and not inference.
pub fn start_within_s(net: &Network, job: &Job) -> i64 {
    job.start_within_s.unwrap_or_else(|| {
        if job.kind.may_wait(job.latency_tier.is_some()) { net.policy.start_within_s(job.kind) } else { 0 }
    })
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
            let tariff = net.tariff(&s.tariff);
            let profile = net.green_profile(&s.green_profile);
            let max_green = profile.map_or(0.0, |g| g.share.iter().flatten().copied().fold(0.0, f64::max));
            let pue_permille = (s.pue * 1000.0).round() as i64;
            sites.push(SiteInfo {
                min_tariff: tariff.and_then(|t| t.hours.iter().copied().min()).unwrap_or(0),
                min_carbon: s.grid_factor_kg_per_kwh * (1.0 - max_green),
                pue_permille,
                grid_factor: s.grid_factor_kg_per_kwh,
                east: s.side == Side::East,
                in_hub: s.in_hub(),
                series: Box::new(SiteSeries::new(&net, s)),
                actual: None,
                rates: FamilyRates::of(&pools[first..], pue_permille),
                pools: first..pools.len(),
            });
        }
        let timelines = pools.iter().map(|p| Timeline::new(p.size, base, cfg.horizon_slots)).collect();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(1.0)
        };
        let family_ref = Family::ALL.map(|f| {
            let of = |g: &dyn Fn(&PoolInfo) -> f64| median(pools.iter().filter(|p| p.family == f).map(g).collect());
            let price = of(&|p: &PoolInfo| {
                let site = &net.sites[p.site];
                let tariff = net.tariff(&site.tariff).map_or(0.0, suanwang_core::Tariff::mean_fen_per_mwh);
                p.price_fen_per_unit_hour as f64 + p.power_mw_per_unit as f64 / 1e9 * site.pue * tariff
            });
            (price, of(&|p: &PoolInfo| p.power_mw_per_unit as f64 / 1e6), of(&|p: &PoolInfo| p.ucu_per_unit))
        });
        let n = net.sites.len().max(1) as f64;
        let carbon_ref = net
            .sites
            .iter()
            .map(|s| {
                s.grid_factor_kg_per_kwh
                    * (1.0 - net.green_profile(&s.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean))
            })
            .sum::<f64>()
            / n;
        let pue_ref = net.sites.iter().map(|s| s.pue).sum::<f64>() / n;
        let city_latency: Vec<Vec<f64>> = net
            .cities
            .iter()
            .map(|c| {
                net.sites.iter().map(|s| net.latency(&c.id, &s.id).map_or(f64::INFINITY, |l| l.one_way_ms)).collect()
            })
            .collect();
        // A city is western when its nearest site is (西数西算).
        let city_side = city_latency
            .iter()
            .map(|row| {
                row.iter().zip(&net.sites).min_by(|(a, _), (b, _)| a.total_cmp(b)).map_or(Side::East, |(_, s)| s.side)
            })
            .collect();
        let paired: Vec<Vec<bool>> = net
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
        let n_links = net.links.len();
        let table = SiteTable::new(&sites, &paired);
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
            family_ref,
            carbon_ref,
            pue_ref,
            seasons: seasons_for(base, cfg.horizon_slots),
            opts: vec![],
            best: vec![None; n_sites],
            considered: 0,
            available: vec![true; n_sites],
            runs_commands: vec![false; n_sites],
            links_up: vec![true; n_links],
            runs: vec![],
            pool_runs: vec![],
            site_transfers: vec![vec![]; n_sites],
            windows: vec![],
            site_pools: vec![vec![]; n_sites],
            site_first: vec![i64::MAX; n_sites],
            site_earliest: vec![i64::MAX; n_sites],
            site_bound: vec![f64::INFINITY; n_sites],
            pending: Frontier::default(),
            ready: BinaryHeap::new(),
            arrival: vec![i64::MAX; n_sites],
            at_floor: vec![],
            static_bounds: vec![],
            table,
            is_prepared: vec![false; n_sites],
            prepared: vec![],
            top: vec![],
            scored: vec![],
            global_earliest: i64::MAX,
            stage: vec![None; n_sites],
        }
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn network_arc(&self) -> Arc<Network> {
        Arc::clone(&self.net)
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

    /// This scheduler on `net`, a network that extends this one with more sites at the end
    /// (an agent's machine): the load and availability of the existing sites carry over.
    pub fn extended(&self, net: Arc<Network>) -> Result<Scheduler, String> {
        let base = self.timelines.first().map_or(0, Timeline::base);
        let mut next = Scheduler::new(net, slot_start(base), self.cfg);
        if next.timelines.len() < self.timelines.len()
            || next.available.len() < self.available.len()
            || next.links_up.len() != self.links_up.len()
        {
            return Err("the new network does not extend the old one".into());
        }
        next.timelines[..self.timelines.len()].clone_from_slice(&self.timelines);
        next.available[..self.available.len()].copy_from_slice(&self.available);
        next.runs_commands[..self.runs_commands.len()].copy_from_slice(&self.runs_commands);
        next.links_up.clone_from(&self.links_up);
        Ok(next)
    }

    /// The scheduler's mutable state: load per pool, site and link availability. Everything
    /// else is derived from the network and rebuilt by `new`.
    pub fn snapshot(&self) -> SchedSnapshot {
        SchedSnapshot {
            timelines: self.timelines.clone(),
            available: self.available.clone(),
            links_up: self.links_up.clone(),
        }
    }

    /// Puts back a `snapshot` taken from a scheduler of the same network.
    pub fn restore(&mut self, s: SchedSnapshot) -> Result<(), String> {
        if s.timelines.len() != self.timelines.len()
            || s.available.len() != self.available.len()
            || s.links_up.len() != self.links_up.len()
        {
            return Err("the snapshot is of another network".into());
        }
        self.timelines = s.timelines;
        self.available = s.available;
        self.links_up = s.links_up;
        if let Some(base) = self.timelines.first().map(Timeline::base) {
            self.seasons = seasons_for(base, self.cfg.horizon_slots);
        }
        Ok(())
    }

    /// Marks a site as taking placements or not; `None` if the id is not a site.
    pub fn set_site_available(&mut self, site: &str, available: bool) -> Option<usize> {
        let i = self.net.sites.iter().position(|s| s.id == site)?;
        self.available[i] = available;
        Some(i)
    }

    /// Marks a site as one where an agent runs commands (or not); `None` if the id is not a site.
    pub fn set_site_runs_commands(&mut self, site: &str, runs: bool) -> Option<usize> {
        let i = self.net.sites.iter().position(|s| s.id == site)?;
        self.runs_commands[i] = runs;
        Some(i)
    }

    /// Whether an agent runs commands at site `site` (by index).
    pub fn site_runs_commands(&self, site: usize) -> bool {
        self.runs_commands.get(site).copied().unwrap_or(false)
    }

    /// Marks the link between `a` and `b` as carrying data or not; `None` if there is none.
    pub fn set_link_available(&mut self, a: &str, b: &str, up: bool) -> Option<usize> {
        let i = self.net.link_position(a, b)?;
        self.links_up[i] = up;
        Some(i)
    }

    /// The link data from `location` (a city or site id) crosses to reach site `site`.
    pub fn route_link(&self, location: &str, site: usize) -> Option<usize> {
        let from = match self.net.place(location)? {
            Place::City(i) => i,
            Place::Site(i) => self.net.cities.len() + i,
            _ => return None,
        };
        self.routes[from][site].and_then(|r| r.link)
    }

    pub fn site_available(&self, site: usize) -> bool {
        self.available[site]
    }

    /// The network's description of a pool (by scheduler pool index).
    pub fn pool(&self, pool: usize) -> &suanwang_core::network::Pool {
        let p = &self.pools[pool];
        &self.net.sites[p.site].pools[p.index_in_site]
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

    /// The scheduler decides on a forecast of site `site`'s energy: each Beijing hour's green
    /// share × `green[h]` and tariff × `tariff[h]`; metering (`actual_energy`) keeps the actual
    /// values. Calling it again replaces the forecast (factors of 1: exact again).
    pub fn set_forecast(&mut self, site: usize, green: &[f64; 24], tariff: &[f64; 24]) -> Option<()> {
        let info = self.sites.get_mut(site)?;
        let actual = info.actual.take().unwrap_or_else(|| info.series.clone());
        *info.series = actual.perturbed(green, tariff);
        (info.min_tariff, info.min_carbon) = info.series.minima();
        info.actual = Some(actual);
        self.table.set_site(site, &self.sites[site]);
        Some(())
    }

    /// What a placement's energy actually costs and emits when the scheduler decided on a
    /// forecast: (energy fen, rounded up; green share; kg CO2 per kWh, market-based). `None`
    /// when the site's forecast is exact (the placement's own figures are the actual ones).
    pub fn actual_energy(&self, p: &Placement) -> Option<(i64, f64, f64)> {
        let site = self.pools.get(p.reservation.pool)?.site;
        let actual = self.sites[site].actual.as_ref()?;
        let (start, len) = (p.reservation.window.start, p.reservation.window.end - p.reservation.window.start);
        let w = actual.window_in(self.season_at(start), start, len);
        let fen = energy_fen((p.chosen.energy_kwh * 1000.0).round() as i64, &w, len);
        Some((fen, w.green_share, w.carbon_kg_per_kwh))
    }

    /// Sets pool `pool`'s background load: units held by work outside the scheduler at each
    /// 15-minute slot of the Beijing day (see `Timeline::set_background`).
    pub fn set_background(&mut self, pool: usize, units: Vec<u32>) -> Result<(), TimelineError> {
        match self.timelines.get_mut(pool) {
            Some(t) => t.set_background(units),
            None => Err(TimelineError::BadBackground { len: 0 }),
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
        let req = self.request(job, now, policy, false)?;
        self.evaluate(&req, now);
        let placement = self.choose(&req, policy, false)?;
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

    fn request<'a>(&self, job: &'a Job, now: Ts, policy: &Policy, collect: bool) -> Result<Request<'a>, Refusal> {
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
        let norm = Norm::new(self.reference_scale(job, size_gb), policy);
        Ok(Request {
            job,
            now,
            norm,
            collect,
            origin,
            origin_side: self.city_side[origin],
            location,
            size_gb,
            restricted_region,
        })
    }

    /// The job's reference scales (see `Norm`).
    fn reference_scale(&self, job: &Job, size_gb: f64) -> [f64; N] {
        let r = &job.resources;
        let (price, kw, ucu) = self.family_ref[r.family as usize];
        let count = f64::from(r.count);
        let run_h = match job.work {
            Work::RunTime { run_time_s } => f64::from(run_time_s) / 3600.0,
            Work::Amount { amount_pflop } => amount_pflop * 1000.0 / (count * ucu.max(1e-9)) / 3600.0,
        };
        let money = (count * run_h * price + size_gb * 8.0).max(1.0);
        // at equal weights the scheduler pays at most money ÷ carbon scale per kg avoided: the
        // floor caps that implicit carbon price (a 5-second request with 100 GB of data would
        // otherwise be moved at 16,000 CNY per kg saved)
        let carbon =
            (count * run_h * kw * self.pue_ref * self.carbon_ref).max(money / MAX_CARBON_PRICE_FEN_PER_KG).max(1e-6);
        // waiting counts relative to the job's own run time (as slowdown does), between an hour
        // and the deferral window: an hour's wait weighs as much on a 5-minute job as on a
        // 1-hour one, and 1/24 of that on a day-long run
        let window = (self.cfg.max_deferral_slots.max(1) * SLOT_SECONDS) as f64;
        let wait = (run_h * 3600.0).clamp(3600.0_f64.min(window), window);
        [money, carbon, wait, 20.0, 1.0, 1.0, 1.0, 1.0]
    }

    /// Evaluates the sites for `req`: fills `best` (for the sites in `scored`),
    /// `global_earliest`, `stage` (and `opts` when collecting).
    ///
    /// Best first, lazily. Each site gets a static bound from its site-level terms, its
    /// cheapest pools' rates and the transfer's lower bounds (`StaticBound`: a few dozen
    /// flops, no pool or timeline visited). Sites are then *prepared* (pass 1: pool filters,
    /// transfers, the earliest start, a tighter bound) and *scored* (pass 2) in order of the
    /// lowest bound outstanding, and the search stops when that bound exceeds the k-th best
    /// score found (k = the chosen one and its runners-up): no site left can change the answer.
    /// Scoring needs the earliest start anywhere (the `start_within` anchor), which is known
    /// once the earliest start of the sites prepared is no later than the first slot the data
    /// can reach any other site; until then the site the data reaches first is prepared. So
    /// the cost grows with the sites that compete for the job, plus one pass over every site's
    /// bound. Collecting every option (`options`) prepares and scores all.
    fn evaluate(&mut self, req: &Request<'_>, now: Ts) {
        self.stage.iter_mut().for_each(|s| *s = None);
        for &si in &self.scored {
            self.best[si] = None;
        }
        for &si in &self.prepared {
            self.is_prepared[si] = false;
        }
        self.scored.clear();
        self.prepared.clear();
        self.pool_runs.clear();
        self.opts.clear();
        self.considered = 0;
        self.top.clear();
        self.global_earliest = i64::MAX;
        let mut pending = std::mem::take(&mut self.pending);
        pending.clear();
        // the earliest any site's data can be there, and how many sites share it
        let (mut floor, mut at_floor) = (i64::MAX, 0_usize);
        let sb = StaticBound::new(req, now);
        let mut bounds = std::mem::take(&mut self.static_bounds);
        sb.fill(&self.table, &self.city_latency[req.origin], req.origin, &mut bounds);
        let family = &self.table.inv_size[sb.family];
        for (si, &bound) in bounds.iter().enumerate() {
            let filter = self.site_filter(req, si);
            if let Some(f) = filter.or((family[si] == 0.0).then_some(Filter::Family)) {
                reach(&mut self.stage, si, f, usize::MAX);
                continue;
            }
            let (extra, arrival) =
                if req.location.is_some() { sb.transfer(self, req, si) } else { (0.0, sb.first_slot) };
            pending.push(Ranked { bound: bound + extra, site: si });
            self.arrival[si] = arrival;
            match arrival.cmp(&floor) {
                std::cmp::Ordering::Less => (floor, at_floor) = (arrival, 1),
                std::cmp::Ordering::Equal => at_floor += 1,
                std::cmp::Ordering::Greater => {}
            }
        }
        self.static_bounds = bounds;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        let k = self.cfg.runners_up + 1;
        // Until the anchor is known nothing can be scored: prepare the sites the data reaches
        // first, best bound first, until one can start no later than the first slot the data
        // can reach any site not yet prepared. Without data to move, that is every site and
        // `pending`'s own order; with data, a few (its own site, its metro).
        let eligible = pending.rest().len();
        let mut at_floor_sites = std::mem::take(&mut self.at_floor);
        at_floor_sites.clear();
        while self.global_earliest > floor {
            let next = if at_floor == eligible - self.prepared.len() {
                pending.pop()
            } else {
                if at_floor_sites.is_empty() {
                    at_floor_sites.extend(
                        pending.rest().iter().filter(|r| !self.is_prepared[r.site] && self.arrival[r.site] == floor),
                    );
                    // best last: taken by `pop`
                    at_floor_sites.sort_unstable_by(|a, b| b.cmp(a));
                }
                at_floor_sites.pop()
            };
            let Some(r) = next else { break };
            if self.is_prepared[r.site] {
                continue;
            }
            self.prepare(req, r.site, now, &mut ready);
            if self.arrival[r.site] == floor {
                at_floor -= 1;
            }
            if at_floor == 0 {
                // every site at the floor is prepared: the floor rises to the next one
                (floor, at_floor) = (i64::MAX, 0);
                at_floor_sites.clear();
                for r in pending.rest() {
                    let a = self.arrival[r.site];
                    if self.is_prepared[r.site] || a > floor {
                        continue;
                    }
                    if a < floor {
                        (floor, at_floor) = (a, 0);
                    }
                    at_floor += 1;
                }
            }
        }
        self.at_floor = at_floor_sites;
        loop {
            // a margin for rounding: a bound and a score of the same option are summed in
            // different orders, and an exact tie must still be scored (ties go to the lower pool)
            let prune_at =
                if req.collect || self.top.len() < k { f64::INFINITY } else { self.top[k - 1] + PRUNE_MARGIN };
            let next_pending = match pending.peek() {
                Some(r) if self.is_prepared[r.site] => {
                    pending.pop();
                    continue;
                }
                Some(r) => Some(r.bound),
                None => None,
            };
            let next_ready = ready.peek().map(|r| r.0.bound);
            let lowest = match (next_pending, next_ready) {
                (None, None) => break,
                (p, r) => p.unwrap_or(f64::INFINITY).min(r.unwrap_or(f64::INFINITY)),
            };
            if lowest > prune_at {
                break;
            }
            if next_ready.is_none_or(|r| next_pending.is_some_and(|p| p < r)) {
                if let Some(r) = pending.pop() {
                    self.prepare(req, r.site, now, &mut ready);
                }
                continue;
            }
            let Some(Reverse(r)) = ready.pop() else { break };
            self.site_score(req, r.site, now, prune_at);
            self.scored.push(r.site);
            if let Some(b) = self.best[r.site] {
                let at = self.top.partition_point(|x| *x <= b.score);
                self.top.insert(at, b.score);
                self.top.truncate(k);
            }
        }
        self.pending = pending;
        self.ready = ready;
    }

    /// Pass 1 for site `si` (`site_prepare`), queueing it for pass 2 when it can start at all.
    fn prepare(&mut self, req: &Request<'_>, si: usize, now: Ts, ready: &mut BinaryHeap<Reverse<Ranked>>) {
        self.is_prepared[si] = true;
        self.prepared.push(si);
        self.site_prepare(req, si, now);
        let earliest = self.site_earliest[si];
        if earliest != i64::MAX {
            self.global_earliest = self.global_earliest.min(earliest);
            ready.push(Reverse(Ranked { bound: self.site_bound[si], site: si }));
        }
    }

    /// Sites prepared and scored by the last plan: how much of the network it looked at.
    pub fn last_plan_sites(&self) -> (usize, usize) {
        (self.prepared.len(), self.scored.len())
    }

    /// The site-level filters, in the order they apply: the first that refuses site `si`.
    fn site_filter(&self, req: &Request<'_>, si: usize) -> Option<Filter> {
        let job = req.job;
        let site = &self.net.sites[si];
        if !self.available[si] {
            return Some(Filter::Unavailable);
        }
        if (!job.allowed_sites.is_empty() && !job.allowed_sites.contains(&site.id))
            || (!job.allowed_regions.is_empty() && !job.allowed_regions.contains(&site.region))
        {
            return Some(Filter::Region);
        }
        if job.run.is_some() && !self.runs_commands[si] {
            return Some(Filter::Agent);
        }
        if let Some((region, province)) = &req.restricted_region {
            let same = if region.is_empty() { site.province == *province } else { site.region == *region };
            if !same {
                return Some(Filter::Residency);
            }
        }
        if let Some(max) = job.latency_tier.and_then(suanwang_core::LatencyTier::max_ms)
            && self.city_latency[req.origin][si] > max
        {
            return Some(Filter::Latency);
        }
        None
    }

    /// What every option at site `si` scores alike: (latency ms, east_west, pairing, hub).
    fn site_terms(&self, req: &Request<'_>, si: usize) -> (f64, f64, f64, f64) {
        let site = &self.sites[si];
        let east_west = f64::from(u8::from(req.belongs_west() && site.east));
        let pairing = f64::from(u8::from(!self.paired[req.origin][si]));
        let hub = f64::from(u8::from(req.may_travel() && !site.in_hub));
        (self.city_latency[req.origin][si], east_west, pairing, hub)
    }

    /// Finds the best placement for `job` at `now` under `policy` without reserving it.
    pub fn plan(&mut self, job: &Job, now: Ts, policy: &Policy) -> Result<Placement, Refusal> {
        let req = self.request(job, now, policy, false)?;
        self.evaluate(&req, now);
        self.choose(&req, policy, true)
    }

    /// The slot a start at site `si` counts its deferral from: the earliest start any site can
    /// give, or when the data can be at `si` if later (moving the data is not waiting).
    fn deferral_anchor(&self, si: usize) -> i64 {
        self.global_earliest.max(self.site_first[si])
    }

    /// Pass 1 for site `si`, which passed the site-level filters: the pool filters, the transfer
    /// options, each passing pool's fixed costs and score bound, and the earliest start the
    /// site can take.
    fn site_prepare(&mut self, req: &Request<'_>, si: usize, now: Ts) {
        let job = req.job;
        let (latency_ms, east_west, pairing, hub) = self.site_terms(req, si);
        // transfer modes, cheapest first: for each start the first that has arrived is used
        let mut transfers = std::mem::take(&mut self.site_transfers[si]);
        transfers.clear();
        match req.location.and_then(|l| self.routes[l][si]) {
            Some(route) => {
                let beijing_sod = (now.0.div_euclid(1000) + 8 * 3600).rem_euclid(86_400);
                let (modes, n) = transfer::options(&self.cfg.transfer, route, req.size_gb, beijing_sod);
                // a link that is down carries nothing; disks still travel by road
                let link_down = route.link.is_some_and(|l| !self.links_up[l]);
                transfers.extend(
                    modes[..n]
                        .iter()
                        .filter(|x| !link_down || matches!(x.mode, TransferMode::Express | TransferMode::None))
                        .map(|x| (slot_at_or_after(Ts(now.0 + x.seconds * 1000)), *x)),
                );
                transfers.sort_by_key(|(_, x)| (x.cost_fen, x.seconds));
            }
            None => {
                transfers.push((slot_at_or_after(now), Transfer { mode: TransferMode::None, seconds: 0, cost_fen: 0 }));
            }
        }
        let first_arrival = transfers.iter().map(|(s, _)| *s).min().unwrap_or(slot_at_or_after(now));
        self.site_first[si] = first_arrival;
        let pue_permille = self.sites[si].pue_permille;
        let r = &job.resources;
        let count = i64::from(r.count);
        // Phase 1: the pools that pass the static filters, with a lower bound on their score.
        let n = &req.norm;
        let min_transfer = transfers.iter().map(|(_, t)| t.cost_fen).min().unwrap_or(0);
        let mut candidates = std::mem::take(&mut self.site_pools[si]);
        candidates.clear();
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
                hub,
            };
            // A bound no start of this pool can beat: the lowest tariff and carbon intensity of
            // the site, the earliest start, the cheapest transfer, the least load. When it is
            // no better than the site's best so far, the pool cannot change the outcome.
            let bound_wo_wait = n.coef[0]
                * (run.compute_fen as f64
                    + run.energy_wh as f64 * self.sites[si].min_tariff as f64 / 1e6
                    + min_transfer as f64)
                + n.coef[1] * run.energy_kwh * self.sites[si].min_carbon
                + n.coef[3] * latency_ms
                + n.coef[4] * east_west
                + n.coef[5] * pairing
                + n.coef[7] * hub
                + n.coef[6] * f64::from(r.count) / f64::from(p.size.max(1));
            candidates.push((bound_wo_wait, pi, run));
        }
        // the most promising pools first, so the bound prunes the rest sooner
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // The earliest start any pool of the site can take, capacity permitting.
        let mut site_earliest = i64::MAX;
        for &(_, pi, run) in &candidates {
            let timeline = &self.timelines[pi];
            let latest = latest_start(timeline, job.deadline, run.run_s);
            if latest < first_arrival {
                continue;
            }
            if r.count <= timeline.min_free() {
                site_earliest = first_arrival;
                break;
            }
            timeline.runs(r.count, &mut self.runs);
            if let Some(s) = (first_arrival..=latest).find(|&s| run_fits(timeline, &self.runs, s, run.len)) {
                site_earliest = site_earliest.min(s);
            }
        }
        if site_earliest == i64::MAX {
            // no pool can start before its deadline or the horizon's end: say why per pool
            for &(_, pi, run) in &candidates {
                let filter = if latest_start(&self.timelines[pi], job.deadline, run.run_s) < first_arrival {
                    Filter::Deadline
                } else {
                    Filter::Capacity
                };
                reach(&mut self.stage, si, filter, pi);
            }
        }
        self.site_earliest[si] = site_earliest;
        // no option of the site scores below its best pool's bound plus the wait to its earliest
        // start: what lets `evaluate` skip whole sites
        let wait_s = (slot_start(site_earliest).0 - now.0).max(0) as f64 / 1000.0;
        self.site_bound[si] = candidates.first().map_or(f64::INFINITY, |c| c.0 + n.coef[2] * wait_s);
        self.site_pools[si] = candidates;
        self.site_transfers[si] = transfers;
    }

    /// Pass 2 for site `si`: scores its pools' candidate starts, keeping the best that fits.
    #[allow(clippy::many_single_char_names)] // r, p, s, k: resources, pool, slot, index
    fn site_score(&mut self, req: &Request<'_>, si: usize, now: Ts, prune_at: f64) {
        let job = req.job;
        let r = &job.resources;
        let n = &req.norm;
        let candidates = std::mem::take(&mut self.site_pools[si]);
        let transfers = std::mem::take(&mut self.site_transfers[si]);
        let first_arrival = self.site_first[si];
        // how far past the earliest start anywhere the scheduler may shift it: the job's
        // `start_within` (else the operator's default for its kind, for kinds that may wait at
        // all), within the deferral window; floored to whole slots, so never beyond it
        let deferral_slots = start_within_s(&self.net, job).div_euclid(SLOT_SECONDS).min(self.cfg.max_deferral_slots);
        let deferrable = deferral_slots > 0;
        let window_end = self.deferral_anchor(si).saturating_add(deferral_slots);
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        let mut windows_len = 0;
        let wait_of = |s: i64| (slot_start(s).0 - now.0).max(0) as f64 / 1000.0;
        for &(bound_wo_wait, pi, run) in &candidates {
            let run_s = run.run_s;
            let bound = bound_wo_wait + n.coef[2] * wait_of(first_arrival);
            if !req.collect && (bound > prune_at || self.best[si].is_some_and(|b| bound > b.score + PRUNE_MARGIN)) {
                continue;
            }
            let run_index = self.pool_runs.len() as u32;
            self.pool_runs.push(run);
            let timeline = &self.timelines[pi];
            let latest = latest_start(timeline, job.deadline, run_s);
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
            let fits = |s: i64, runs: &[u32]| all_fit || run_fits(timeline, runs, s, len);
            let last_considered =
                if deferrable { latest.min(first_arrival + deferral_slots).min(window_end) } else { first_arrival };
            // a queued start (capacity) still may not come later than the window allows
            let latest = latest.min(window_end);
            let mut any_fit = false;
            let mut refused: Option<Filter> = None;
            let mut s = first_arrival;
            // the site's pools walk the same starts: energy windows of one run length are shared
            if windows_len != len {
                windows.clear();
                windows_len = len;
            }
            let mut k = 0;
            let mut queue = false;
            loop {
                if !queue && s > last_considered {
                    if any_fit {
                        break;
                    }
                    // none of the candidate starts fits: queue at the first start that does
                    queue = true;
                    s = first_arrival + 1;
                    while s <= latest && !fits(s, &self.runs) {
                        s += 1;
                    }
                    if s > latest {
                        break;
                    }
                } else if queue && any_fit {
                    break;
                }
                // later starts only wait longer: stop once even the bound cannot beat the best
                let bound = bound_wo_wait + n.coef[2] * wait_of(s);
                if !req.collect
                    && !queue
                    && (bound > prune_at || self.best[si].is_some_and(|b| bound > b.score + PRUNE_MARGIN))
                {
                    break;
                }
                let ok = fits(s, &self.runs);
                any_fit |= ok;
                let cached = if queue { None } else { windows.get(k).copied() };
                let (w, outcome) = self.option(req, run_index, s, &transfers, ok, cached);
                if !queue && k == windows.len() {
                    windows.push(w);
                }
                k += 1;
                match outcome {
                    Ok(o) => {
                        self.considered += 1;
                        if o.fits {
                            let b = &mut self.best[si];
                            if b.is_none_or(|b| better(&o, &b)) {
                                *b = Some(o);
                            }
                        }
                        if req.collect {
                            self.opts.push(o);
                        }
                    }
                    Err(f) => refused = refused.max(Some(f)),
                }
                if queue {
                    break;
                }
                s = (s.div_euclid(SLOTS_PER_HOUR) + 1) * SLOTS_PER_HOUR;
            }
            if !any_fit {
                reach(&mut self.stage, si, Filter::Capacity, pi);
            }
            if let Some(f) = refused {
                reach(&mut self.stage, si, f, pi);
            }
        }
        self.site_pools[si] = candidates;
        self.site_transfers[si] = transfers;
        self.windows = windows;
    }

    /// The option of running the plan's pool run `run` from slot `start`, using the cheapest
    /// transfer mode that has the data in place by then; or the filter (green, budget) that
    /// refuses it. Also returns the energy window, for the site's cache.
    fn option(
        &self,
        req: &Request<'_>,
        run: u32,
        start: i64,
        transfers: &[(i64, Transfer)],
        fits: bool,
        window: Option<WindowEnergy>,
    ) -> (WindowEnergy, Result<Opt, Filter>) {
        let pool = &self.pool_runs[run as usize];
        let w =
            window.unwrap_or_else(|| self.sites[pool.site].series.window_in(self.season_at(start), start, pool.len));
        let Some(t) = transfers.iter().position(|(arrive, _)| *arrive <= start) else {
            return (w, Err(Filter::Deadline));
        };
        if w.green_share + 1e-9 < req.job.min_green_share {
            return (w, Err(Filter::Green));
        }
        let money = pool.compute_fen as f64
            + pool.energy_wh as f64 * w.tariff_sum as f64 / (pool.len as f64 * 1e6)
            + transfers[t].1.cost_fen as f64;
        let carbon_kg = pool.energy_kwh * w.carbon_kg_per_kwh;
        let wait_s = (slot_start(start).0 - req.now.0).max(0) as f64 / 1000.0;
        let tl = &self.timelines[pool.index];
        let load = f64::from(tl.used_at(start).saturating_add(req.job.resources.count).min(tl.size()))
            / f64::from(tl.size().max(1));
        let raw = [money, carbon_kg, wait_s, pool.latency_ms, pool.east_west, pool.pairing, load, pool.hub];
        let o = Opt {
            run,
            pool: pool.index as u32,
            transfer: t as u8,
            fits,
            green: w.green_share as f32,
            start,
            raw,
            score: req.norm.score(&raw),
        };
        if let Some(budget) = req.job.budget_fen
            && self.exact_cost_in(&o, transfers).total_fen > budget
        {
            return (w, Err(Filter::Budget));
        }
        (w, Ok(o))
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
        let energy_fen = energy_fen(pool.energy_wh, &w, pool.len);
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
    /// best first, at most `keep` of them, with the scoring they were ranked by.
    pub fn options(&mut self, job: &Job, now: Ts, policy: &Policy, keep: usize) -> Result<JobOptions, Refusal> {
        let req = self.request(job, now, policy, true)?;
        self.evaluate(&req, now);
        let mut choices: Vec<Choice> = self
            .opts
            .iter()
            .map(|o| Choice { reservation: self.reservation(o, job.resources.count), score: o.score, raw: o.raw })
            .collect();
        choices.sort_by(|a, b| {
            a.score
                .total_cmp(&b.score)
                .then(a.reservation.window.start.cmp(&b.reservation.window.start))
                .then(a.reservation.pool.cmp(&b.reservation.pool))
        });
        choices.truncate(keep);
        if choices.is_empty() {
            return Err(Refusal { job: job.name.clone(), rejections: self.rejections(&req) });
        }
        Ok(JobOptions { choices, norm: req.norm })
    }

    /// True when the reservation fits the current load.
    pub fn fits(&self, r: &PoolReservation) -> bool {
        self.timelines[r.pool].fits(r.window.start, r.window.end, r.window.units)
    }

    /// The best option found, with its runners-up; `explain`: list the sites ruled out too.
    fn choose(&self, req: &Request<'_>, policy: &Policy, explain: bool) -> Result<Placement, Refusal> {
        let job = req.job;
        let n = &req.norm;
        // the best option per site, best site first; ties go to the earlier start, then the
        // lower pool: deterministic
        let mut best: Vec<Opt> = self.scored.iter().filter_map(|&si| self.best[si]).collect();
        best.sort_by(|a, b| if better(a, b) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater });
        let Some(chosen) = best.first().copied() else {
            return Err(Refusal { job: job.name.clone(), rejections: self.rejections(req) });
        };
        let candidate = |o: &Opt| {
            let run = &self.pool_runs[o.run as usize];
            let p = &self.pools[run.index];
            let scores = Scorer::ALL
                .iter()
                .enumerate()
                .map(|(k, s)| ScoreLine {
                    scorer: *s,
                    raw: o.raw[k],
                    normalised: n.normalised(k, o.raw[k]),
                    weight: n.weights[k],
                    weighted: n.weights[k] * n.normalised(k, o.raw[k]),
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
                score: o.score,
                scores,
            }
        };
        Ok(Placement {
            job: job.name.clone(),
            policy: policy.name.clone(),
            chosen: candidate(&chosen),
            run_s: self.pool_runs[chosen.run as usize].run_s,
            deferred_s: (chosen.start
                - self.deferral_anchor(self.pool_runs[chosen.run as usize].site).min(chosen.start))
                * SLOT_SECONDS,
            runners_up: best.iter().skip(1).take(self.cfg.runners_up).map(candidate).collect(),
            rejections: if explain { self.rejections(req) } else { vec![] },
            options_considered: self.considered,
            reservation: self.reservation(&chosen, job.resources.count),
        })
    }

    fn rejections(&self, req: &Request<'_>) -> Vec<Rejection> {
        let job = req.job;
        let r = &job.resources;
        let mut out = vec![];
        for (si, stage) in self.stage.iter().enumerate() {
            let Some((filter, pool)) = *stage else { continue };
            // a site with a surviving option is not rejected
            let site = &self.net.sites[si];
            if self.best[si].is_some() {
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

/// Energy over a window at its tariff, fen, rounded up: Wh × the window's mean fen/MWh.
fn energy_fen(wh: i64, w: &WindowEnergy, len: i64) -> i64 {
    i64::try_from(ceil_div(i128::from(wh) * i128::from(w.tariff_sum), i128::from(len.max(1)) * 1_000_000))
        .unwrap_or(i64::MAX / 4)
}

/// Strictly better: lower score, then earlier start, then lower pool index.
fn better(o: &Opt, b: &Opt) -> bool {
    o.score.total_cmp(&b.score).then((o.start, o.pool).cmp(&(b.start, b.pool))).is_lt()
}
