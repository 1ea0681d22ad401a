//! Fitting the network to a trace: `capacity_scale = "auto"`.
//!
//! The reference network models all of China's data centres at 1:10, far more than any single
//! trace fills. `auto` picks the factor that makes the trace plus the background load keep the
//! pools of the trace's busiest family at the scenario's `target_utilisation` on average:
//! k = demand_f ÷ ((target − background_f) × capacity_f), maximised over families, where
//! demand_f is the trace's mean IT power in family f (units × the family's mean power per unit ×
//! run time rounded up to the scheduler's 15-minute slots, over the trace's span) and background_f the capacity-weighted mean background share; the
//! room target − background_f is at least `MIN_ROOM`. The scale is never below what keeps the
//! trace's largest job of each family within the largest pool of that family (when it fitted at
//! full size), nor below what gives the family's median pool `MIN_MEDIAN_POOL_UNITS` units: a
//! trace too small for that (short requests) then loads the network less than the target.

use suanwang_core::job::Work;
use suanwang_core::{Family, Network, Ts};

use crate::run::TwinError;
use crate::scenario::{CapacityScale, Mapper, Scenario};
use crate::trace::{Item, TraceKind};

/// Units (one 8-accelerator server) the median pool of a family the trace uses holds at least.
pub const MIN_MEDIAN_POOL_UNITS: f64 = 8.0;

/// The least share of a family's capacity the trace is given above its background.
pub const MIN_ROOM: f64 = 0.05;

/// `net` with every pool's size multiplied by `k` (at least one unit each).
pub fn scaled(net: &Network, k: f64) -> Network {
    let mut net = net.clone();
    for site in &mut net.sites {
        for pool in &mut site.pools {
            pool.count = ((pool.count as f64 * k).round() as u64).max(1);
        }
    }
    net
}

/// What the auto scale needs of one family's pools.
#[derive(Debug, Clone, Copy, Default)]
struct FamilyCapacity {
    /// Installed IT kW and units.
    kw: f64,
    units: f64,
    /// Capacity-weighted mean background share.
    background: f64,
    /// Units of the median and of the largest pool.
    median_pool: u64,
    largest_pool: u64,
}

/// Per family (index = `Family as usize`).
fn families(net: &Network, scenario: &Scenario) -> [FamilyCapacity; 3] {
    Family::ALL.map(|f| {
        let mut c = FamilyCapacity::default();
        let mut sizes = vec![];
        for site in &net.sites {
            let bg = scenario.background.mean_for(site);
            for p in site.pools.iter().filter(|p| p.family == f) {
                let kw = p.count as f64 * p.power_w_per_unit / 1000.0;
                c.kw += kw;
                c.units += p.count as f64;
                c.background += kw * bg;
                sizes.push(p.count);
            }
        }
        c.background = if c.kw > 0.0 { c.background / c.kw } else { 0.0 };
        sizes.sort_unstable();
        c.median_pool = sizes.get(sizes.len() / 2).copied().unwrap_or(0);
        c.largest_pool = sizes.last().copied().unwrap_or(0);
        c
    })
}

/// The scale to replay at: the scenario's fixed factor, or the fitted one for `auto` (reads
/// the trace once, up to `limit` records).
pub fn capacity_scale<I>(
    net: &Network,
    kind: &TraceKind,
    records: impl FnOnce() -> Result<I, TwinError>,
    scenario: &Scenario,
    limit: Option<u64>,
) -> Result<f64, TwinError>
where
    I: Iterator<Item = Item>,
{
    if let CapacityScale::Fixed(k) = scenario.capacity_scale {
        return Ok(k);
    }
    let fam = families(net, scenario);
    let mapper = Mapper::for_trace(net, scenario, kind);
    let t0 = Ts::parse(&scenario.start).map_err(TwinError::Scenario)?;
    let mut kwh = [0.0f64; 3];
    let mut largest = [0u32; 3];
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut n = 0u64;
    for item in records()? {
        if limit.is_some_and(|l| n >= l) {
            break;
        }
        let Item::Record(rec) = item else { continue };
        n += 1;
        let job = mapper.job(&rec, rec.line, t0);
        let run_s = match job.work {
            Work::RunTime { run_time_s } => f64::from(run_time_s),
            Work::Amount { .. } => rec.duration_s,
        };
        // the scheduler holds whole 15-minute slots: a 5-second request occupies one
        let run_s =
            (suanwang_sched::slots::slots_for(run_s.ceil() as i64) * suanwang_sched::slots::SLOT_SECONDS) as f64;
        let f = job.resources.family as usize;
        let w_per_unit = if fam[f].units > 0.0 { fam[f].kw * 1000.0 / fam[f].units } else { 0.0 };
        kwh[f] += f64::from(job.resources.count) * w_per_unit / 1000.0 * run_s / 3600.0;
        largest[f] = largest[f].max(job.resources.count);
        first = first.min(rec.submit_s);
        last = last.max(rec.submit_s + run_s);
    }
    if n == 0 {
        return Err(TwinError::Scenario("capacity_scale \"auto\": the trace has no records to fit".into()));
    }
    let span_h = ((last - first) / 3600.0).max(1.0);
    let mut k = 0.0f64;
    for f in Family::ALL {
        let (c, demand_kwh, largest_job) = (fam[f as usize], kwh[f as usize], u64::from(largest[f as usize]));
        if demand_kwh <= 0.0 || c.kw <= 0.0 {
            continue;
        }
        // at least 5 points above the family's background (an HPC trace meets hubs whose
        // background is already near the target: super pools are in the hubs only)
        let room = (scenario.target_utilisation - c.background).max(MIN_ROOM);
        k = k.max(demand_kwh / span_h / (room * c.kw));
        // never so small that the median pool holds less than a server: below that the network
        // turns into a toy whose few units queue for hours (a short-request trace such as LLM
        // inference, sized by its mean, would otherwise get a unit or two per site)
        if c.median_pool > 0 {
            k = k.max(MIN_MEDIAN_POOL_UNITS / c.median_pool as f64);
        }
        // never so small that the trace's largest job fits no pool it fitted before
        if c.largest_pool > 0 && largest_job <= c.largest_pool {
            k = k.max(largest_job as f64 / c.largest_pool as f64);
        }
    }
    Ok(k.clamp(1e-6, 100.0))
}
