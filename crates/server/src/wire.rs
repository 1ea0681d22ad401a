//! Engine → wire: the server's own records (engine, scheduler and network types) converted to
//! the API's types (`suanwang_api`). Nothing else is serialised onto the wire, so a change in
//! the engine cannot change a response without a change here.

use serde_json::Value;
use suanwang_api as api;
use suanwang_core::Ts;
use suanwang_core::network::Site;
use suanwang_core::{Family, Network};

/// The server's record of a job (what the views and snapshots hold); `job` converts it to the
/// wire's `JobView`. Its JSON shape is the snapshots' format.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobView {
    pub id: u64,
    pub name: String,
    pub tenant: String,
    pub kind: String,
    pub state: suanwang_engine::JobState,
    /// Where it was placed (last attempt).
    pub site: Option<String>,
    pub pool: Option<String>,
    /// The planned start and end of its placement (from its start on: the actual start, and
    /// its run time after it).
    pub start_at: Option<Ts>,
    pub end_at: Option<Ts>,
    /// When its last attempt actually started, and when the job ended.
    #[serde(default)]
    pub started_at: Option<Ts>,
    #[serde(default)]
    pub ended_at: Option<Ts>,
    pub submitted_at: Ts,
    pub submitted_by: String,
    pub updated_at: Ts,
    pub attempts: u32,
    /// Why it was refused or failed.
    pub reason: Option<String>,
    /// Metered use, once completed (or cancelled while running).
    pub meter: Option<suanwang_engine::Meter>,
    /// What the last real run used, as its agent measured it (jobs with a `run` section).
    #[serde(default)]
    pub usage: Option<suanwang_engine::Usage>,
    /// The spec as submitted; shared, as it never changes, by the snapshots taken while the
    /// job is live (a snapshot copies the live views on the command thread).
    pub spec: std::sync::Arc<Value>,
}

pub fn job_state(s: suanwang_engine::JobState) -> api::JobState {
    use suanwang_engine::JobState as E;
    match s {
        E::Submitted => api::JobState::Submitted,
        E::Admitted => api::JobState::Admitted,
        E::Placed => api::JobState::Placed,
        E::InTransfer => api::JobState::InTransfer,
        E::Running => api::JobState::Running,
        E::Completed => api::JobState::Completed,
        E::Failed => api::JobState::Failed,
        E::Cancelled => api::JobState::Cancelled,
        E::Refused => api::JobState::Refused,
    }
}

pub fn transfer_mode(m: suanwang_sched::TransferMode) -> api::TransferMode {
    use suanwang_sched::TransferMode as M;
    match m {
        M::None => api::TransferMode::None,
        M::Network => api::TransferMode::Network,
        M::Elastic => api::TransferMode::Elastic,
        M::Bulk => api::TransferMode::Bulk,
        M::Express => api::TransferMode::Express,
    }
}

pub fn meter(m: &suanwang_engine::Meter) -> api::Meter {
    api::Meter {
        ucu_hours: m.ucu_hours,
        energy_kwh: m.energy_kwh,
        green_kwh: m.green_kwh,
        carbon_location_kg: m.carbon_location_kg,
        carbon_market_kg: m.carbon_market_kg,
        transfer_gb: m.transfer_gb,
        transfer_mode: m.transfer_mode.map(transfer_mode),
        compute_fen: m.compute_fen,
        energy_fen: m.energy_fen,
        transfer_fen: m.transfer_fen,
        money_fen: m.money_fen,
    }
}

pub fn usage(u: &suanwang_engine::Usage) -> api::Usage {
    api::Usage { cpu_seconds: u.cpu_seconds, peak_memory_mib: u.peak_memory_mib, wall_seconds: u.wall_seconds }
}

pub fn job(v: &JobView) -> api::JobView {
    api::JobView {
        id: v.id,
        name: v.name.clone(),
        tenant: v.tenant.clone(),
        kind: v.kind.clone(),
        state: job_state(v.state),
        site: v.site.clone(),
        pool: v.pool.clone(),
        start_at: v.start_at.map(|t| t.0),
        end_at: v.end_at.map(|t| t.0),
        started_at: v.started_at.map(|t| t.0),
        ended_at: v.ended_at.map(|t| t.0),
        submitted_at: v.submitted_at.0,
        submitted_by: v.submitted_by.clone(),
        updated_at: v.updated_at.0,
        attempts: v.attempts,
        reason: v.reason.clone(),
        meter: v.meter.as_ref().map(meter),
        usage: v.usage.as_ref().map(usage),
        spec: Value::clone(&v.spec),
    }
}

fn filter(f: suanwang_sched::Filter) -> api::plan::Filter {
    use api::plan::Filter as A;
    use suanwang_sched::Filter as F;
    match f {
        F::Spec => A::Spec,
        F::Unavailable => A::Unavailable,
        F::Region => A::Region,
        F::Residency => A::Residency,
        F::Latency => A::Latency,
        F::Family => A::Family,
        F::Accelerator => A::Accelerator,
        F::Architecture => A::Architecture,
        F::Memory => A::Memory,
        F::PoolSize => A::PoolSize,
        F::Deadline => A::Deadline,
        F::Capacity => A::Capacity,
        F::Green => A::Green,
        F::Budget => A::Budget,
        F::Agent => A::Agent,
        F::Balance => A::Balance,
    }
}

fn scorer(s: suanwang_sched::Scorer) -> api::plan::Scorer {
    use api::plan::Scorer as A;
    use suanwang_sched::Scorer as S;
    match s {
        S::Money => A::Money,
        S::Carbon => A::Carbon,
        S::Wait => A::Wait,
        S::Latency => A::Latency,
        S::EastWest => A::EastWest,
        S::Pairing => A::Pairing,
        S::Load => A::Load,
        S::Hub => A::Hub,
    }
}

fn rejection(r: &suanwang_sched::Rejection) -> api::plan::Rejection {
    api::plan::Rejection {
        site: r.site.clone(),
        filter: filter(r.filter),
        pool: r.pool.clone(),
        value: r.value,
        limit: r.limit,
        detail: r.detail(),
    }
}

fn candidate(c: &suanwang_sched::Candidate) -> api::plan::Candidate {
    api::plan::Candidate {
        site: c.site.clone(),
        pool: c.pool.clone(),
        start_at: c.start_at.0,
        end_at: c.end_at.0,
        transfer: api::plan::Transfer {
            mode: transfer_mode(c.transfer.mode),
            seconds: c.transfer.seconds,
            cost_fen: c.transfer.cost_fen,
        },
        cost: api::plan::Cost {
            compute_fen: c.cost.compute_fen,
            energy_fen: c.cost.energy_fen,
            transfer_fen: c.cost.transfer_fen,
            total_fen: c.cost.total_fen,
        },
        energy_kwh: c.energy_kwh,
        carbon_kg: c.carbon_kg,
        carbon_location_kg: c.carbon_location_kg,
        green_share: c.green_share,
        latency_ms: c.latency_ms,
        score: c.score,
        scores: c
            .scores
            .iter()
            .map(|s| api::plan::ScoreLine {
                scorer: scorer(s.scorer),
                raw: s.raw,
                normalised: s.normalised,
                weight: s.weight,
                weighted: s.weighted,
            })
            .collect(),
    }
}

pub fn placement(p: &suanwang_sched::Placement) -> api::Placement {
    api::Placement {
        job: p.job.clone(),
        policy: p.policy.clone(),
        chosen: candidate(&p.chosen),
        run_s: p.run_s,
        deferred_s: p.deferred_s,
        runners_up: p.runners_up.iter().map(candidate).collect(),
        rejections: p.rejections.iter().map(rejection).collect(),
        options_considered: p.options_considered as u64,
        reservation: api::plan::Reservation {
            pool: p.reservation.pool as u64,
            window: api::plan::Window {
                start: p.reservation.window.start,
                end: p.reservation.window.end,
                units: p.reservation.window.units,
            },
        },
    }
}

pub fn refusal(r: &suanwang_sched::Refusal) -> api::Refusal {
    api::Refusal { job: r.job.clone(), rejections: r.rejections.iter().map(rejection).collect() }
}

/// A plan's answer: placed with the placement, or refused with the reasons.
pub fn plan(result: &Result<suanwang_sched::Placement, suanwang_sched::Refusal>) -> api::PlanAnswer {
    match result {
        Ok(p) => api::PlanAnswer::placed(placement(p)),
        Err(r) => api::PlanAnswer::refused(refusal(r)),
    }
}

fn family(f: Family) -> api::job::Family {
    match f {
        Family::General => api::job::Family::General,
        Family::Intelligent => api::job::Family::Intelligent,
        Family::Super => api::job::Family::Super,
    }
}

fn side(s: suanwang_core::network::Side) -> api::network::Side {
    match s {
        suanwang_core::network::Side::East => api::network::Side::East,
        suanwang_core::network::Side::West => api::network::Side::West,
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The network for `GET /v1/network` and `suanwang network --json`.
pub fn network(net: &Network) -> api::NetworkDocument {
    use api::network as w;
    use suanwang_core::LatencyTier;
    use suanwang_core::network::{Arch, LinkKind, Unit};
    let caps = |pred: &dyn Fn(&Site) -> bool| {
        let c = net.capacity_ucu(pred);
        let get = |f: Family| round(c.get(&f).copied().unwrap_or(0.0));
        w::Capacity { general: get(Family::General), intelligent: get(Family::Intelligent), super_: get(Family::Super) }
    };
    let green = |sites: &[&Site]| {
        let (mut watts, mut g) = (0.0, 0.0);
        for s in sites {
            let power: f64 = s.pools.iter().map(|p| p.power_w_per_unit * p.count as f64).sum();
            watts += power;
            g += power * net.green_profile(&s.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean);
        }
        if watts > 0.0 { round(g / watts) } else { 0.0 }
    };
    let hubs = net
        .hubs
        .iter()
        .map(|h| {
            let sites: Vec<&Site> = net.sites.iter().filter(|s| s.hub.as_deref() == Some(h.id.as_str())).collect();
            w::Hub {
                id: h.id.clone(),
                name_cn: h.name_cn.clone(),
                name_en: h.name_en.clone(),
                side: side(h.side),
                clusters: net.clusters.iter().filter(|c| c.hub == h.id).map(|c| c.id.clone()).collect(),
                sites: sites.len() as u64,
                capacity_ucu: caps(&|s: &Site| s.hub.as_deref() == Some(h.id.as_str())),
                green_share: green(&sites),
            }
        })
        .collect();
    let pool = |p: &suanwang_core::network::Pool| w::Pool {
        id: p.id.clone(),
        family: family(p.family),
        model: p.model.clone(),
        unit: match p.unit {
            Unit::Core => w::Unit::Core,
            Unit::Accelerator => w::Unit::Accelerator,
            Unit::Node => w::Unit::Node,
        },
        count: p.count,
        arch: match p.arch {
            Arch::X86_64 => api::job::Arch::X86_64,
            Arch::Aarch64 => api::job::Arch::Aarch64,
        },
        accelerator_kind: p.accelerator_kind.clone(),
        memory_gib_per_unit: p.memory_gib_per_unit,
        power_w_per_unit: p.power_w_per_unit,
        price_fen_per_unit_hour: p.price_fen_per_unit_hour,
        peak_per_unit: w::Peaks {
            fp64: p.peak_per_unit.fp64,
            fp32: p.peak_per_unit.fp32,
            fp16: p.peak_per_unit.fp16,
            int8: p.peak_per_unit.int8,
        },
        ucu_per_unit: round(p.ucu_per_unit),
        capacity_ucu: round(p.capacity_ucu()),
    };
    let sites = net
        .sites
        .iter()
        .map(|s| w::Site {
            id: s.id.clone(),
            name_cn: s.name_cn.clone(),
            cluster: s.cluster.clone(),
            hub: s.hub.clone(),
            region: s.region.clone(),
            backup: s.backup.clone(),
            side: side(s.side),
            province: s.province.clone(),
            lat: s.lat,
            lon: s.lon,
            racks: s.racks,
            pue: s.pue,
            grid_factor_kg_per_kwh: s.grid_factor_kg_per_kwh,
            green_share: green(&[s]),
            tariff_mean_fen_per_mwh: net.tariff(&s.tariff).map_or(0.0, |t| t.mean_fen_per_mwh().round()),
            capacity_ucu: caps(&|x: &Site| x.id == s.id),
            pools: s.pools.iter().map(pool).collect(),
        })
        .collect();
    let links = net
        .links
        .iter()
        .map(|l| {
            let lat = net.latency(&l.a, &l.b).ok();
            w::Link {
                a: l.a.clone(),
                b: l.b.clone(),
                kind: match l.kind {
                    LinkKind::Backbone => w::LinkKind::Backbone,
                    LinkKind::Access => w::LinkKind::Access,
                },
                bandwidth_gbps: l.bandwidth_gbps,
                price_fen_per_gb: l.price_fen_per_gb,
                available: l.available,
                one_way_ms: lat.map(|x| round(x.one_way_ms)),
                tier: lat.map(|x| match x.tier {
                    LatencyTier::City => w::Tier::City,
                    LatencyTier::Regional => w::Tier::Regional,
                    LatencyTier::CrossHub => w::Tier::CrossHub,
                    LatencyTier::Beyond => w::Tier::Beyond,
                }),
                measured: lat.is_some_and(|x| x.measured),
            }
        })
        .collect();
    w::NetworkDocument {
        metric: w::Metric {
            version: net.metric.version.clone(),
            unit: net.metric.unit.clone(),
            description: net.metric.unit_description.clone(),
        },
        totals: w::Totals {
            capacity_ucu: caps(&|_: &Site| true),
            hub_capacity_ucu: caps(&Site::in_hub),
            sites: net.sites.len() as u64,
            pools: net.sites.iter().map(|s| s.pools.len() as u64).sum(),
        },
        hubs,
        clusters: net
            .clusters
            .iter()
            .map(|c| w::Cluster {
                id: c.id.clone(),
                hub: c.hub.clone(),
                name_cn: c.name_cn.clone(),
                name_en: c.name_en.clone(),
                province_cn: c.province_cn.clone(),
                lat: c.lat,
                lon: c.lon,
                source: c.source.clone(),
            })
            .collect(),
        regions: net
            .regions
            .iter()
            .map(|r| w::Region {
                id: r.id.clone(),
                name_cn: r.name_cn.clone(),
                name_en: r.name_en.clone(),
                province: r.province.clone(),
                lat: r.lat,
                lon: r.lon,
                source: r.source.clone(),
            })
            .collect(),
        cities: net
            .cities
            .iter()
            .map(|c| w::City {
                id: c.id.clone(),
                name_cn: c.name_cn.clone(),
                province: c.province.clone(),
                region: c.region.clone(),
                lat: c.lat,
                lon: c.lon,
                source: c.source.clone(),
            })
            .collect(),
        sites,
        links,
        pairings: net.pairings.iter().map(|p| w::Pairing { city: p.city.clone(), hub: p.hub.clone() }).collect(),
    }
}

/// `GET /v1/sites`: the network's sites with their approval and, for agents' sites, owner.
pub fn sites(net: &Network, grants: &std::collections::BTreeMap<String, suanwang_engine::SiteGrant>) -> api::SiteList {
    let doc = network(net);
    api::SiteList {
        sites: doc
            .sites
            .into_iter()
            .map(|site| {
                let grant = grants.get(&site.id);
                api::SiteStatus {
                    approval: api::Approval::of(grant.is_none_or(|g| g.approved)),
                    owner: grant.map(|g| g.owner.name.clone()),
                    owner_role: grant.map(|g| g.owner.role.clone()),
                    site,
                }
            })
            .collect(),
    }
}
