//! The twin's driver: records → jobs → engine in virtual time → KPIs per policy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use serde::Serialize;
use suanwang_core::job::Classification;
use suanwang_core::network::Place;
use suanwang_core::{Family, Network, Ts};
use suanwang_engine::{Command, Engine, EngineConfig, Event, Outcome};
use suanwang_sched::{Config, Policy};

use crate::scenario::{Mapper, Scenario};
use crate::trace::{BadLine, Item, TraceKind, TraceRecord};

/// Records held back to restore time order in a trace that is not sorted; a record older
/// than the window's oldest is clamped to it (and counted).
pub const REORDER_WINDOW: usize = 100_000;

/// Run times below this count as this in the bounded slowdown (Feitelson's τ = 10 s), so a
/// one-second job that waited a minute does not dominate the mean.
pub const SLOWDOWN_BOUND_S: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub policy: Policy,
    pub scenario: Scenario,
    /// At most this many records per repeat.
    pub limit: Option<u64>,
    /// The trace replayed this many times back to back.
    pub repeat: u32,
    /// Stop at the first malformed line.
    pub strict: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("{0}")]
    Bad(BadLine),
    #[error("{0}")]
    Open(String),
    #[error("scenario: {0}")]
    Scenario(String),
}

/// The KPIs of one policy on one trace. The first keys are the contract of `twin --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyKpis {
    pub policy: String,
    pub jobs: u64,
    pub placed: u64,
    pub rejected: u64,
    pub latency_violations: u64,
    pub residency_violations: u64,
    pub deadline_misses: u64,
    /// Placements whose start was deferred beyond what the job allowed (`start_within`): must
    /// be 0.
    pub deferred_beyond_start_within: u64,
    pub cost_fen: i64,
    pub carbon_kg: f64,
    pub green_share: f64,
    pub hub_share: f64,
    pub west_share_of_deferrable: f64,
    pub mean_wait_s: f64,
    pub p99_wait_s: f64,
    /// ucu-weighted (unified compute delivered ÷ unified capacity): kept for scripts.
    pub utilization_hub: f64,
    pub utilization_nonhub: f64,
    /// IT-capacity-weighted utilisation over the replay (busy IT kW·h ÷ installed IT kW·h, the
    /// trace's jobs plus the sites' background load): in the hubs, outside them, and national
    /// (all sites); the hubs' ratio to the national average (seed: 显著超过全国平均水平).
    pub hub_utilisation: f64,
    pub nonhub_utilisation: f64,
    pub national_utilisation: f64,
    pub hub_to_national_utilisation: f64,
    /// Green share of the hubs' electricity (seed: > 80 % in new hub data centres).
    pub hub_green_share: f64,
    /// Mean bounded slowdown: (wait + run) ÷ max(run, 10 s), over completed jobs.
    pub mean_slowdown: f64,
    /// Each seed target and policy goal with its value and whether it is met.
    pub targets: Vec<Target>,
    /// No other policy of the run is at least as good on cost, carbon and mean wait and better
    /// on one of them.
    pub pareto_efficient: bool,
    // more
    pub completed: u64,
    pub failed: u64,
    pub skipped_lines: u64,
    pub bad_lines: u64,
    pub reordered: u64,
    pub jobs_with_deadline: u64,
    pub energy_kwh: f64,
    pub carbon_location_kg: f64,
    pub ucu_hours: f64,
    pub transfer_gb_by_mode: std::collections::BTreeMap<String, f64>,
    pub deferrable_jobs: u64,
    /// Delay-tolerant work: cost and carbon per job here, and if run at the origin city's
    /// nearest site at the same time (no shifting, no moving).
    pub deferrable_cost_fen_per_job: f64,
    pub deferrable_cost_fen_per_job_at_nearest: f64,
    pub deferrable_carbon_kg_per_job: f64,
    pub deferrable_carbon_kg_per_job_at_nearest: f64,
    pub refusals_by_filter: std::collections::BTreeMap<String, u64>,
    /// The economy (R4), priced by the shipped price book: what tenants paid (after
    /// vouchers), what providers (by hub; `non-hub` outside them), carriers and the platform
    /// received, and what each voucher programme of the scenario paid. Received = paid +
    /// vouchers, to the fen.
    pub price_book: String,
    pub paid_by_tenants_fen: i64,
    pub received_by_providers_fen: i64,
    pub received_by_providers_by_hub_fen: std::collections::BTreeMap<String, i64>,
    pub received_by_carriers_fen: i64,
    pub received_by_platform_fen: i64,
    pub voucher_spend_fen: i64,
    pub voucher_spend_by_programme_fen: std::collections::BTreeMap<String, i64>,
    pub first_bad_lines: Vec<BadLine>,
    /// Per day: ucu·h used per hub, and green share of the energy used.
    pub daily_hub_utilization: std::collections::BTreeMap<String, Vec<f64>>,
    pub daily_green_share: Vec<f64>,
    pub virtual_days: f64,
    /// The market (issue 16 item 8): the completed work priced at posted prices and by call
    /// auctions, side by side (`crate::market`).
    pub market: Vec<crate::market::PricingKpis>,
}

/// One target: `value` against `limit` (`at_most` or `at_least`); `met` is `None` when it
/// cannot be judged in this run (a goal relative to `nearest` when `nearest` did not run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    pub bound: &'static str,
    pub met: Option<bool>,
    pub source: &'static str,
}

/// Per city: the nearest site and, per family, (fen per unit-hour incl. energy at the mean
/// tariff, kg CO2 per unit-hour market-based) of its first pool of that family.
#[derive(Debug, Clone)]
struct Nearest {
    by_city: Vec<[Option<(f64, f64)>; 3]>,
}

impl Nearest {
    fn new(net: &Network) -> Nearest {
        let by_city = net
            .cities
            .iter()
            .map(|c| {
                let mut best: Option<(&suanwang_core::network::Site, f64)> = None;
                for s in &net.sites {
                    let ms = net.latency(&c.id, &s.id).map_or(f64::INFINITY, |l| l.one_way_ms);
                    if best.is_none_or(|(_, b)| ms < b) {
                        best = Some((s, ms));
                    }
                }
                Family::ALL.map(|f| {
                    let (site, _) = best?;
                    let pool = site.pools.iter().find(|p| p.family == f)?;
                    let tariff = net.tariff(&site.tariff).map_or(0.0, suanwang_core::Tariff::mean_fen_per_mwh);
                    let green = net.green_profile(&site.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean);
                    let kwh = pool.power_w_per_unit / 1000.0 * site.pue;
                    Some((
                        pool.price_fen_per_unit_hour as f64 + kwh * tariff / 1000.0,
                        kwh * site.grid_factor_kg_per_kwh * (1.0 - green),
                    ))
                })
            })
            .collect();
        Nearest { by_city }
    }
}

struct Acc<'n> {
    net: &'n Network,
    k: PolicyKpis,
    t0: Ts,
    waits: Vec<f32>,
    wait_sum: f64,
    green_kwh: f64,
    hub_ucu: f64,
    west_deferrable: u64,
    deferrable_cost: f64,
    deferrable_carbon: f64,
    nearest_cost: f64,
    nearest_carbon: f64,
    nearest: Nearest,
    /// per day: (energy, green energy)
    daily_energy: Vec<(f64, f64)>,
    last_finish: Ts,
    /// Per site: IT kWh, facility kWh, green kWh of the trace's jobs.
    per_site: Vec<[f64; 3]>,
    slowdown_sum: f64,
    background: crate::scenario::Background,
    book: suanwang_economy::PriceBook,
    vouchers: Vouchers,
    market: crate::market::MarketSim,
}

/// The scenario's voucher programmes as the replay spends them: what each has paid, and what
/// each tenant has been paid per calendar year (the cap is per beneficiary per year).
#[derive(Debug, Default)]
struct Vouchers {
    programmes: Vec<suanwang_economy::Programme>,
    spent: Vec<i64>,
    by_tenant: std::collections::HashMap<(usize, String, i32), i64>,
}

impl Vouchers {
    /// What vouchers pay of a job's `usage` (one programme per kind: the one that pays most),
    /// as (programme, fen); the spending is recorded.
    fn pay(&mut self, job: &suanwang_economy::JobFacts<'_>, usage: &suanwang_economy::Usage) -> Vec<(String, i64)> {
        use suanwang_economy::VoucherKind;
        let year = suanwang_economy::Programme::year_of(job.at_ms);
        let mut out = vec![];
        for (kind, eligible) in
            [(VoucherKind::Compute, usage.compute_fen + usage.energy_fen), (VoucherKind::Transport, usage.transfer_fen)]
        {
            // what each programme has left for this tenant: its cap this year, within the budget
            let left: Vec<i64> = (0..self.programmes.len())
                .map(|i| {
                    let used = self.by_tenant.get(&(i, job.tenant.to_string(), year)).copied().unwrap_or(0);
                    (self.programmes[i].cap_per_beneficiary_fen - used)
                        .min(self.programmes[i].budget_fen - self.spent[i])
                })
                .collect();
            let held: Vec<(&suanwang_economy::Programme, i64)> = self.programmes.iter().zip(left).collect();
            // the control plane's rule: one programme of the kind, the one that pays most
            let best = suanwang_economy::voucher::choose(&held, kind, job, eligible)
                .and_then(|(p, fen)| self.programmes.iter().position(|x| x.id == p.id).map(|i| (i, fen)));
            if let Some((i, fen)) = best {
                self.spent[i] += fen;
                *self.by_tenant.entry((i, job.tenant.to_string(), year)).or_default() += fen;
                out.push((self.programmes[i].id.clone(), fen));
            }
        }
        out
    }
}

impl Acc<'_> {
    /// Bills a completed job and splits what it paid (the control plane's rule, without the
    /// ledger: the twin has no wallets, so nobody is refused for balance).
    fn bill(&mut self, o: &Outcome) {
        let usage = o.meter.usage();
        let Ok(bill) = self.book.bill(&usage) else { return };
        let site = self.net.site(&o.site);
        let hub = site.and_then(|s| s.hub.as_deref()).unwrap_or("");
        let region = site.map_or("", |s| s.region.as_str());
        let facts = suanwang_economy::JobFacts {
            tenant: &o.tenant,
            origin: &o.origin,
            kind: o.kind.as_str(),
            places: [&o.site, hub, region],
            at_ms: o.finished_at.0,
        };
        let paid = self.vouchers.pay(&facts, &usage);
        let Ok(bill) = bill.with_vouchers(&paid) else { return };
        let k = &mut self.k;
        k.price_book.clone_from(&self.book.version);
        k.paid_by_tenants_fen += bill.tenant_fen;
        k.voucher_spend_fen += bill.voucher_fen;
        for (p, fen) in paid {
            *k.voucher_spend_by_programme_fen.entry(p).or_default() += fen;
        }
        for (payee, fen) in self.book.split(&bill, &usage, "provider", None).shares {
            match payee {
                suanwang_economy::Payee::Provider(_) => {
                    k.received_by_providers_fen += fen;
                    let h = if hub.is_empty() { "non-hub" } else { hub };
                    *k.received_by_providers_by_hub_fen.entry(h.to_string()).or_default() += fen;
                }
                suanwang_economy::Payee::Carrier(_) => k.received_by_carriers_fen += fen,
                suanwang_economy::Payee::Platform => k.received_by_platform_fen += fen,
            }
        }
    }

    fn day(&self, t: Ts) -> usize {
        ((t.0 - self.t0.0).max(0) / 86_400_000) as usize
    }

    fn spread(series: &mut Vec<f64>, from_day: usize, to_day: usize, amount: f64) {
        let days = to_day - from_day + 1;
        if series.len() <= to_day {
            series.resize(to_day + 1, 0.0);
        }
        for v in &mut series[from_day..=to_day] {
            *v += amount / days as f64;
        }
    }

    fn completed(&mut self, o: &Outcome, restricted_region: Option<(String, String)>) {
        let k = &mut self.k;
        k.completed += 1;
        let m = &o.meter;
        k.cost_fen += m.money_fen;
        k.carbon_kg += m.carbon_market_kg;
        k.carbon_location_kg += m.carbon_location_kg;
        k.energy_kwh += m.energy_kwh;
        k.ucu_hours += m.ucu_hours;
        self.green_kwh += m.green_kwh;
        if let Some(mode) = m.transfer_mode {
            *k.transfer_gb_by_mode.entry(mode.as_str().to_string()).or_default() += m.transfer_gb;
        }
        self.bill(o);
        let k = &mut self.k;
        let wait = (o.started_at.0 - o.submitted_at.0).max(0) as f64 / 1000.0;
        self.waits.push(wait as f32);
        self.wait_sum += wait;
        let run_s = (o.finished_at.0 - o.started_at.0).max(0) as f64 / 1000.0;
        self.slowdown_sum += (wait + run_s) / run_s.max(SLOWDOWN_BOUND_S);
        if let Some(Place::Site(i)) = self.net.place(&o.site) {
            // the trace says nothing of budgets: the market's bids take a modelled value
            self.market.record(o, i, None);
        }
        if let Some(Place::Site(i)) = self.net.place(&o.site)
            && let Some(acc) = self.per_site.get_mut(i)
        {
            let pue = self.net.sites[i].pue.max(1.0);
            acc[0] += m.energy_kwh / pue;
            acc[1] += m.energy_kwh;
            acc[2] += m.green_kwh;
        }
        if o.in_hub {
            self.hub_ucu += m.ucu_hours;
        }
        // independent checks of the hard constraints, from the outcome alone
        if let Some(max) = o.tier.and_then(suanwang_core::LatencyTier::max_ms) {
            let ms = self.net.latency(&o.origin, &o.site).map_or(f64::INFINITY, |l| l.one_way_ms);
            if ms > max + 1e-9 {
                k.latency_violations += 1;
            }
        }
        if let Some((region, province)) = restricted_region {
            let site = self.net.site(&o.site);
            let ok = site.is_some_and(|s| if region.is_empty() { s.province == province } else { s.region == region });
            if !ok {
                k.residency_violations += 1;
            }
        }
        if o.deadline.is_some_and(|d| o.finished_at > d) {
            k.deadline_misses += 1;
        }
        if o.deferrable {
            k.deferrable_jobs += 1;
            self.west_deferrable += u64::from(o.west);
            self.deferrable_cost += m.money_fen as f64;
            self.deferrable_carbon += m.carbon_market_kg;
            let hours = (o.finished_at.0 - o.started_at.0) as f64 / 3_600_000.0;
            if let Some(Place::City(c)) = self.net.place(&o.origin)
                && let Some((fen, kg)) = self.nearest.by_city[c][o.family as usize]
            {
                let count = f64::from(o.units);
                self.nearest_cost += fen * count * hours;
                self.nearest_carbon += kg * count * hours;
            }
        }
        let (d0, d1) = (self.day(o.started_at), self.day(o.finished_at));
        if let Some(hub) = self.net.site(&o.site).and_then(|s| s.hub.clone()) {
            let series = self.k.daily_hub_utilization.entry(hub).or_default();
            Self::spread(series, d0, d1, m.ucu_hours);
        }
        if self.daily_energy.len() <= d1 {
            self.daily_energy.resize(d1 + 1, (0.0, 0.0));
        }
        let days = (d1 - d0 + 1) as f64;
        for d in d0..=d1 {
            self.daily_energy[d].0 += m.energy_kwh / days;
            self.daily_energy[d].1 += m.green_kwh / days;
        }
        self.last_finish = self.last_finish.max(o.finished_at);
    }
}

/// Replays `records()` (a fresh reader per repeat) through the engine under `cfg.policy`.
/// `progress` is called with the number of records read so far.
pub fn run_policy<I>(
    net: &Arc<Network>,
    kind: &TraceKind,
    mut records: impl FnMut() -> Result<I, TwinError>,
    cfg: &RunConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<PolicyKpis, TwinError>
where
    I: Iterator<Item = Item>,
{
    let scenario = &cfg.scenario;
    let t0 = Ts::parse(&scenario.start).map_err(TwinError::Scenario)?;
    let mapper = Mapper::for_trace(net, scenario, kind);
    let mut engine = Engine::new(
        Arc::clone(net),
        t0,
        EngineConfig {
            sched: Config::default(),
            policy: cfg.policy.clone(),
            time_scale: 1.0,
            spot: suanwang_economy::PriceBook::reference().spot,
        },
    );
    // every site's background load: the work outside the trace
    for pool in 0..engine.scheduler().pool_count() {
        let site = &net.sites[engine.scheduler().pool_site(pool)];
        let units = scenario.background.units(site, engine.scheduler().timeline(pool).size());
        engine.set_background(pool, units).map_err(|e| TwinError::Scenario(format!("background: {e}")))?;
    }
    // the scheduler decides on forecasts of green share and price; meters take the actual
    if scenario.forecast.green_error > 0.0 || scenario.forecast.tariff_error > 0.0 {
        for site in 0..net.sites.len() {
            let (green, tariff) = scenario.forecast.factors(scenario.seed, site);
            engine.set_forecast(site, &green, &tariff);
        }
    }
    let mut acc = Acc {
        net,
        k: empty_kpis(&cfg.policy.name),
        t0,
        waits: vec![],
        wait_sum: 0.0,
        green_kwh: 0.0,
        hub_ucu: 0.0,
        west_deferrable: 0,
        deferrable_cost: 0.0,
        deferrable_carbon: 0.0,
        nearest_cost: 0.0,
        nearest_carbon: 0.0,
        nearest: Nearest::new(net),
        daily_energy: vec![],
        last_finish: t0,
        per_site: vec![[0.0; 3]; net.sites.len()],
        slowdown_sum: 0.0,
        background: scenario.background.clone(),
        book: suanwang_economy::PriceBook::reference(),
        vouchers: Vouchers {
            spent: vec![0; scenario.vouchers.len()],
            programmes: scenario.vouchers.clone(),
            by_tenant: std::collections::HashMap::new(),
        },
        market: crate::market::MarketSim::default(),
    };
    // restricted jobs in flight: id → (region, province) of their data, for the residency check
    let mut restricted: std::collections::HashMap<u64, (String, String)> = std::collections::HashMap::new();
    let mut read = 0u64;
    let mut offset_s = 0.0f64;
    let mut trace_min = f64::INFINITY;
    let mut trace_max = f64::NEG_INFINITY;
    for repeat in 0..cfg.repeat.max(1) {
        let mut window: BinaryHeap<Reverse<(i64, u64, usize)>> = BinaryHeap::new();
        let mut held: Vec<Option<TraceRecord>> = vec![];
        let mut free: Vec<usize> = vec![];
        let mut per_repeat = 0u64;
        let submit = |engine: &mut Engine,
                      acc: &mut Acc<'_>,
                      restricted: &mut std::collections::HashMap<u64, (String, String)>,
                      at_ms: i64,
                      rec: &TraceRecord| {
            let mut at = Ts(at_ms);
            if at < engine.now() {
                acc.k.reordered += 1;
                at = engine.now();
            }
            let _ = engine.advance_to(at);
            let id = u64::from(repeat) << 40 | rec.line;
            let job = mapper.job(rec, id, at);
            if let Some(input) = job.input.as_ref().filter(|i| i.classification == Classification::Restricted) {
                let c = net.city(&input.location);
                restricted.insert(
                    id,
                    c.map_or_else(Default::default, |c| (c.region.clone().unwrap_or_default(), c.province.clone())),
                );
            }
            acc.k.jobs += 1;
            acc.k.jobs_with_deadline += u64::from(job.deadline.is_some());
            let _ = engine.apply(Command::Submit { id, job: Box::new(job) });
        };
        for item in records()? {
            if cfg.limit.is_some_and(|l| per_repeat >= l) {
                break;
            }
            read += 1;
            if read.is_multiple_of(4096) {
                progress(read);
            }
            let rec = match item {
                Item::Record(r) => r,
                Item::Skipped { .. } => {
                    acc.k.skipped_lines += 1;
                    continue;
                }
                Item::Bad(b) => {
                    if cfg.strict {
                        return Err(TwinError::Bad(b));
                    }
                    acc.k.bad_lines += 1;
                    if acc.k.first_bad_lines.len() < 10 {
                        acc.k.first_bad_lines.push(b);
                    }
                    continue;
                }
            };
            per_repeat += 1;
            if repeat == 0 {
                trace_min = trace_min.min(rec.submit_s);
                trace_max = trace_max.max(rec.submit_s);
            }
            let base = if trace_min.is_finite() { trace_min } else { 0.0 };
            let at_ms = t0.0 + ((rec.submit_s - base + offset_s) * 1000.0) as i64;
            let slot = free.pop().unwrap_or_else(|| {
                held.push(None);
                held.len() - 1
            });
            held[slot] = Some(rec);
            window.push(Reverse((at_ms, rec.line, slot)));
            if window.len() > REORDER_WINDOW
                && let Some(Reverse((t, _, i))) = window.pop()
                && let Some(r) = held[i].take()
            {
                free.push(i);
                submit(&mut engine, &mut acc, &mut restricted, t, &r);
                drain_events(&mut engine, &mut acc, &mut restricted);
            }
            if window.len().is_multiple_of(64) {
                drain_events(&mut engine, &mut acc, &mut restricted);
            }
        }
        while let Some(Reverse((t, _, i))) = window.pop() {
            if let Some(r) = held[i].take() {
                submit(&mut engine, &mut acc, &mut restricted, t, &r);
                drain_events(&mut engine, &mut acc, &mut restricted);
            }
        }
        offset_s += (trace_max - trace_min).max(0.0) + 1.0;
    }
    engine.drain();
    drain_events(&mut engine, &mut acc, &mut restricted);
    progress(read);
    Ok(finish(acc, &engine))
}

fn drain_events(
    engine: &mut Engine,
    acc: &mut Acc<'_>,
    restricted: &mut std::collections::HashMap<u64, (String, String)>,
) {
    for ev in engine.take_events() {
        match ev {
            Event::Placed { attempt, deferred_s, start_within_s, .. } => {
                acc.k.placed += u64::from(attempt == 1);
                acc.k.deferred_beyond_start_within += u64::from(deferred_s > start_within_s);
            }
            Event::Refused { id, rejections, .. } => {
                acc.k.rejected += 1;
                restricted.remove(&id);
                let f = rejections.iter().map(|r| r.filter).max().map_or("none", suanwang_sched::Filter::as_str);
                *acc.k.refusals_by_filter.entry(f.to_string()).or_default() += 1;
            }
            Event::Completed { id, outcome, .. } => {
                let region = restricted.remove(&id);
                acc.completed(&outcome, region);
            }
            Event::Failed { id, .. } | Event::Cancelled { id, .. } => {
                acc.k.failed += 1;
                restricted.remove(&id);
            }
            _ => {}
        }
    }
}

fn empty_kpis(policy: &str) -> PolicyKpis {
    PolicyKpis {
        policy: policy.to_string(),
        jobs: 0,
        placed: 0,
        rejected: 0,
        latency_violations: 0,
        residency_violations: 0,
        deadline_misses: 0,
        deferred_beyond_start_within: 0,
        cost_fen: 0,
        carbon_kg: 0.0,
        green_share: 0.0,
        hub_share: 0.0,
        west_share_of_deferrable: 0.0,
        mean_wait_s: 0.0,
        p99_wait_s: 0.0,
        utilization_hub: 0.0,
        utilization_nonhub: 0.0,
        hub_utilisation: 0.0,
        nonhub_utilisation: 0.0,
        national_utilisation: 0.0,
        hub_to_national_utilisation: 0.0,
        hub_green_share: 0.0,
        mean_slowdown: 0.0,
        targets: vec![],
        pareto_efficient: false,
        completed: 0,
        failed: 0,
        skipped_lines: 0,
        bad_lines: 0,
        reordered: 0,
        jobs_with_deadline: 0,
        energy_kwh: 0.0,
        carbon_location_kg: 0.0,
        ucu_hours: 0.0,
        transfer_gb_by_mode: std::collections::BTreeMap::new(),
        deferrable_jobs: 0,
        deferrable_cost_fen_per_job: 0.0,
        deferrable_cost_fen_per_job_at_nearest: 0.0,
        deferrable_carbon_kg_per_job: 0.0,
        deferrable_carbon_kg_per_job_at_nearest: 0.0,
        refusals_by_filter: std::collections::BTreeMap::new(),
        price_book: String::new(),
        paid_by_tenants_fen: 0,
        received_by_providers_fen: 0,
        received_by_providers_by_hub_fen: std::collections::BTreeMap::new(),
        received_by_carriers_fen: 0,
        received_by_platform_fen: 0,
        voucher_spend_fen: 0,
        voucher_spend_by_programme_fen: std::collections::BTreeMap::new(),
        first_bad_lines: vec![],
        daily_hub_utilization: std::collections::BTreeMap::new(),
        daily_green_share: vec![],
        virtual_days: 0.0,
        market: vec![],
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn finish(mut acc: Acc<'_>, engine: &Engine) -> PolicyKpis {
    let net = acc.net;
    let c = engine.counts();
    acc.k.failed = c.failed + c.cancelled;
    let n = acc.k.completed as f64;
    acc.k.green_share = ratio(acc.green_kwh, acc.k.energy_kwh);
    acc.k.hub_share = ratio(acc.hub_ucu, acc.k.ucu_hours);
    acc.k.west_share_of_deferrable = ratio(acc.west_deferrable as f64, acc.k.deferrable_jobs as f64);
    acc.k.mean_wait_s = ratio(acc.wait_sum, n);
    if !acc.waits.is_empty() {
        let i = ((acc.waits.len() - 1) as f64 * 0.99).round() as usize;
        let (_, p99, _) = acc.waits.select_nth_unstable_by(i, f32::total_cmp);
        acc.k.p99_wait_s = f64::from(*p99);
    }
    let d = acc.k.deferrable_jobs as f64;
    acc.k.deferrable_cost_fen_per_job = ratio(acc.deferrable_cost, d);
    acc.k.deferrable_carbon_kg_per_job = ratio(acc.deferrable_carbon, d);
    acc.k.deferrable_cost_fen_per_job_at_nearest = ratio(acc.nearest_cost, d);
    acc.k.deferrable_carbon_kg_per_job_at_nearest = ratio(acc.nearest_carbon, d);
    let hours = ((acc.last_finish.0 - acc.t0.0).max(1) as f64) / 3_600_000.0;
    acc.k.virtual_days = hours / 24.0;
    let background = acc.background.clone();
    acc.k.market = acc.market.finish(net, &|s| background.mean_for(s));
    let cap = |pred: &dyn Fn(&suanwang_core::network::Site) -> bool| -> f64 {
        net.sites
            .iter()
            .filter(|s| pred(s))
            .flat_map(|s| s.pools.iter())
            .map(suanwang_core::network::Pool::capacity_ucu)
            .sum()
    };
    let hub_cap = cap(&|s| s.in_hub());
    let nonhub_cap = cap(&|s| !s.in_hub());
    acc.k.utilization_hub = ratio(acc.hub_ucu, hub_cap * hours);
    acc.k.utilization_nonhub = ratio(acc.k.ucu_hours - acc.hub_ucu, nonhub_cap * hours);
    for (hub, series) in &mut acc.k.daily_hub_utilization {
        let hub_capacity = cap(&|s| s.hub.as_deref() == Some(hub.as_str())) * 24.0;
        for v in series.iter_mut() {
            *v = ratio(*v, hub_capacity);
        }
    }
    acc.k.daily_green_share = acc.daily_energy.iter().map(|(e, g)| ratio(*g, *e)).collect();
    acc.k.mean_slowdown = ratio(acc.slowdown_sum, n);
    // IT-capacity-weighted: busy IT kWh over installed IT kW × hours, hub / non-hub / all
    let mut busy = [0.0f64; 2];
    let mut installed = [0.0f64; 2];
    let (mut hub_energy, mut hub_green) = (0.0, 0.0);
    for (site, a) in net.sites.iter().zip(&acc.per_site) {
        let side = usize::from(!site.in_hub());
        let it_kw = site_it_kw(site);
        // the background load runs all along at its mean share (the day's shape averages 1),
        // on the site's grid mix
        let bg_it_kwh = it_kw * acc.background.mean_for(site) * hours;
        let green = net.green_profile(&site.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean);
        busy[side] += a[0] + bg_it_kwh;
        installed[side] += it_kw * hours;
        if site.in_hub() {
            hub_energy += a[1] + bg_it_kwh * site.pue;
            hub_green += a[2] + bg_it_kwh * site.pue * green;
        }
    }
    acc.k.hub_utilisation = ratio(busy[0], installed[0]);
    acc.k.nonhub_utilisation = ratio(busy[1], installed[1]);
    acc.k.national_utilisation = ratio(busy[0] + busy[1], installed[0] + installed[1]);
    acc.k.hub_to_national_utilisation = ratio(acc.k.hub_utilisation, acc.k.national_utilisation);
    acc.k.hub_green_share = ratio(hub_green, hub_energy);
    acc.k
}

/// Installed IT power of a site, kW: every pool's units × their power.
pub fn site_it_kw(site: &suanwang_core::network::Site) -> f64 {
    site.pools.iter().map(|p| p.count as f64 * p.power_w_per_unit / 1000.0).sum()
}

/// Fills each policy's `targets`: the seed's (hub utilisation ratio, hub green share) from the
/// operator's `[hubs]`, and the policy goals — no violations, delay-tolerant work's cost at most
/// and carbon at most half of running it at the origin's nearest site, and a mean wait at most
/// 2 × `nearest`'s + 15 min (judged only when `nearest` ran alongside).
///
/// Also marks the Pareto-efficient policies over (cost, carbon, mean wait) and, when the run
/// has other points (a sweep), counts for each policy the points that beat it by more than 5 %
/// on two objectives while no worse on the third (`sweep_dominance`, goal 0).
pub fn judge(kpis: &mut [PolicyKpis], op: &suanwang_core::network::OperatorPolicy) {
    let nearest_wait = kpis.iter().find(|k| k.policy == "nearest").map(|k| k.mean_wait_s);
    let points: Vec<[f64; 3]> = kpis.iter().map(objectives).collect();
    for (i, k) in kpis.iter_mut().enumerate() {
        k.pareto_efficient = !points.iter().any(|q| dominates(q, &points[i]));
    }
    for (i, k) in kpis.iter_mut().enumerate() {
        let t = |name: &str, value: f64, limit: f64, at_least: bool, source: &'static str| {
            let met = if at_least { value >= limit } else { value <= limit };
            Target {
                name: name.to_string(),
                value,
                limit,
                bound: if at_least { "at_least" } else { "at_most" },
                met: Some(met && value.is_finite()),
                source,
            }
        };
        let violations = (k.latency_violations + k.residency_violations + k.deferred_beyond_start_within) as f64;
        let mut out = vec![
            t(
                "hub_to_national_utilisation",
                k.hub_to_national_utilisation,
                op.hubs.utilisation_ratio_target,
                true,
                "seed 二: hub utilisation significantly above the national average",
            ),
            t(
                "hub_green_share",
                k.hub_green_share,
                op.hubs.green_share_target,
                true,
                "seed 二: more than 80 % green power in new hub data centres",
            ),
            t("violations", violations, 0.0, false, "latency, residency and start_within: none"),
        ];
        if k.deferrable_jobs > 0 {
            out.push(t(
                "deferrable_cost_vs_nearest",
                ratio(k.deferrable_cost_fen_per_job, k.deferrable_cost_fen_per_job_at_nearest),
                1.0,
                false,
                "seed: lower cost for users",
            ));
            out.push(t(
                "deferrable_carbon_vs_nearest",
                ratio(k.deferrable_carbon_kg_per_job, k.deferrable_carbon_kg_per_job_at_nearest),
                0.5,
                false,
                "R5: green power and time shifting halve delay-tolerant work's carbon",
            ));
        }
        let mut wait = t(
            "mean_wait_s",
            k.mean_wait_s,
            nearest_wait.map_or(f64::NAN, |w| 2.0 * w + 900.0),
            false,
            "seed: better usability (at most 2 × nearest's mean wait + 15 min)",
        );
        if nearest_wait.is_none() {
            wait.met = None;
        }
        out.push(wait);
        if points.len() > 2 {
            let beaten = points.iter().filter(|q| beats_by(q, &points[i], 0.05)).count();
            out.push(t(
                "sweep_dominance",
                beaten as f64,
                0.0,
                false,
                "no point of the run > 5 % better on two of (cost, carbon, mean wait) and no worse on the third",
            ));
        }
        k.targets = out;
    }
}

/// (cost fen, carbon kg, mean wait s): the objectives of the frontier, all "lower is better".
pub fn objectives(k: &PolicyKpis) -> [f64; 3] {
    [k.cost_fen as f64, k.carbon_kg, k.mean_wait_s]
}

/// `a` is no worse than `b` on every objective and better on one.
pub fn dominates(a: &[f64; 3], b: &[f64; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// `a` is better than `b` by more than `margin` (relative) on at least two objectives and no
/// worse on the rest.
pub fn beats_by(a: &[f64; 3], b: &[f64; 3], margin: f64) -> bool {
    let better = a.iter().zip(b).filter(|(x, y)| **x < **y * (1.0 - margin)).count();
    better >= 2 && a.iter().zip(b).all(|(x, y)| x <= y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominance_and_the_five_per_cent_rule() {
        let b = [100.0, 10.0, 60.0];
        assert!(dominates(&[100.0, 9.0, 60.0], &b));
        assert!(!dominates(&b, &b), "a point does not dominate itself");
        assert!(!dominates(&[90.0, 11.0, 60.0], &b), "worse on carbon");
        // two objectives more than 5 % better, the third no worse
        assert!(beats_by(&[94.0, 9.4, 60.0], &b, 0.05));
        assert!(!beats_by(&[96.0, 9.4, 60.0], &b, 0.05), "cost only 4 % better");
        assert!(!beats_by(&[90.0, 9.0, 61.0], &b, 0.05), "worse on wait");
    }
}
