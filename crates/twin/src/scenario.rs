//! Workload mapping: what the traces do not say (kind, origin, latency tier, data, deadline,
//! budget, green minimum) drawn from a documented scenario with defaults, from a seed.

use serde::{Deserialize, Serialize};
use suanwang_core::job::{Classification, Input, Job, JobKind, Resources, Work};
use suanwang_core::{Family, LatencyTier, Network, Ts};
use suanwang_sched::workload::Rng;

use crate::trace::TraceRecord;

/// The scenario: every knob of the mapping, with defaults. Load one with `Scenario::from_toml`
/// (unknown keys are errors); `Scenario::default()` documents the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub seed: u64,
    /// Voucher programmes (算力券, 运力券) in force over the replay (R4): every tenant of the
    /// trace holds a grant of each up to the programme's cap per year, paid from its budget.
    /// Windows are epoch ms (UTC), as `suanwang voucher programme create` takes them.
    pub vouchers: Vec<suanwang_economy::Programme>,
    /// When the replay starts (RFC 3339): trace time 0 maps here. Seasons, tariffs and green
    /// shares follow this calendar.
    pub start: String,
    /// Multiplies every pool's size: the reference network is a 1:10 model of China's data
    /// centres, far larger than any single trace's cluster. `"auto"` (the default) fits it to
    /// the trace: the scale at which the trace plus the background load keep the pools of the
    /// trace's busiest family at `target_utilisation` on average. A number fixes it.
    pub capacity_scale: CapacityScale,
    /// The mean utilisation `"auto"` aims at (IT-capacity-weighted, trace plus background).
    pub target_utilisation: f64,
    /// Background load: the mean share of each site's capacity used by work outside the trace
    /// (modelled; see the README), by kind of site, and its shape over the Beijing day (24
    /// hourly factors, mean 1).
    pub background: Background,
    /// What the scheduler sees of green share and price: forecasts with an error (the meters
    /// take the actual values).
    pub forecast: Forecast,
    /// Demand weight per city id (missing cities weigh `default_city_weight`).
    pub city_weights: std::collections::BTreeMap<String, f64>,
    pub default_city_weight: f64,
    /// GPU jobs shorter than this are inference, longer than `training_min_s` training, else
    /// fine-tuning.
    pub inference_max_s: f64,
    pub training_min_s: f64,
    /// CPU jobs: at most this long are batch; at least `rendering_min_cores` cores are
    /// rendering; at least `analytics_min_s` long are analytics (a `backup_share` of those are
    /// backups); the rest batch.
    pub batch_max_s: f64,
    pub rendering_min_cores: f64,
    pub analytics_min_s: f64,
    pub backup_share: f64,
    /// Cores per HPC node, for traces of HPC machines (SWF): processors → nodes.
    pub hpc_cores_per_node: f64,
    /// Latency tier shares of inference jobs: city, regional, cross-hub (the rest none).
    pub inference_tiers: [f64; 3],
    /// Share of batch jobs with a cross-hub tier.
    pub batch_cross_hub_share: f64,
    /// Input data GB range (log-uniform) per kind: inference, training, fine-tuning,
    /// rendering, analytics, backup, hpc, batch.
    pub input_gb: [[f64; 2]; 8],
    /// Shares of restricted and internal data (the rest public).
    pub restricted_share: f64,
    pub internal_share: f64,
    /// Share of jobs with a deadline; slack = run time × U(`slack_run`) + U(`slack_hours`) h
    /// (delay-tolerant kinds), or run time × U(`slack_run_critical`) + 1 h (others).
    pub deadline_share: f64,
    pub slack_run: [f64; 2],
    pub slack_hours: [f64; 2],
    pub slack_run_critical: [f64; 2],
    /// Share of delay-tolerant jobs that require `green_min` green power.
    pub green_share_of_deferrable: f64,
    pub green_min: f64,
    /// Tenants drawn uniformly from this many.
    pub tenants: u64,
    /// Share of the jobs that may wait (delay-tolerant kinds, or no latency tier and not
    /// inference) whose users state their own `start_within`: the operator's default for the
    /// kind × U(`start_within_factor`), rounded down to 15 minutes. The rest take the default.
    pub start_within_share: f64,
    pub start_within_factor: [f64; 2],
}

/// `capacity_scale`: `"auto"` or a factor in (0, 100].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CapacityScale {
    Fixed(f64),
    Auto,
}

impl Serialize for CapacityScale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CapacityScale::Fixed(k) => s.serialize_f64(*k),
            CapacityScale::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for CapacityScale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CapacityScale;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("capacity_scale: \"auto\" or a number in (0, 100]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CapacityScale, E> {
                if v == "auto" {
                    Ok(CapacityScale::Auto)
                } else {
                    Err(E::custom(format!("capacity_scale: {v:?} is neither \"auto\" nor a number")))
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<CapacityScale, E> {
                Ok(CapacityScale::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CapacityScale, E> {
                Ok(CapacityScale::Fixed(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CapacityScale, E> {
                Ok(CapacityScale::Fixed(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

/// The forecast error model: the scheduler decides on each site's green share and tariff per
/// Beijing hour × (1 + σ·z), z standard normal drawn per site and hour from the scenario's seed
/// (clamped to [0, 3] × the actual), constant over the replay — a forecaster's systematic
/// hour-of-day error, not redrawn daily (a simplification).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forecast {
    /// σ of the relative error of the green share.
    pub green_error: f64,
    /// σ of the relative error of the tariff.
    pub tariff_error: f64,
}

impl Default for Forecast {
    /// Modelled: 15 % on green share — the order of day-ahead wind and solar forecast errors
    /// (normalised errors of 10–20 % are typical of day-ahead wind, less for solar); 0 on price,
    /// as time-of-use tariffs are published in advance.
    fn default() -> Self {
        Forecast { green_error: 0.15, tariff_error: 0.0 }
    }
}

impl Forecast {
    /// Green and tariff factors per Beijing hour for site number `site`.
    pub fn factors(&self, seed: u64, site: usize) -> ([f64; 24], [f64; 24]) {
        let mut rng = Rng::new(seed ^ 0xF0CA_57E5 ^ (site as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut normal = || {
            // Box–Muller
            let (u, v) = (rng.unit().max(1e-12), rng.unit());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let green = std::array::from_fn(|_| (1.0 + self.green_error * normal()).clamp(0.0, 3.0));
        let tariff = std::array::from_fn(|_| (1.0 + self.tariff_error * normal()).clamp(0.0, 3.0));
        (green, tariff)
    }
}

/// The background load of the sites (see `Scenario::background`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Background {
    /// Mean share of capacity in use by other work: hub sites, city data centres, green regions.
    pub hub: f64,
    pub city: f64,
    pub green_region: f64,
    /// Hourly factors over the Beijing day, mean 1 (00:00 first).
    pub shape: [f64; 24],
}

impl Default for Background {
    /// Modelled, anchored where a figure exists. Hubs: 62.72 %, the clusters' racks in use in
    /// 2024 (SCIO) — the only sourced utilisation figure, taken as their load by other work. City
    /// data centres: 48 %, and the young green regions 30 % (modelled) — so that the national
    /// average (IT-capacity-weighted) is about 50 % and the hubs start at 1.25 × it: the seed's
    /// target as the state the policy must keep while the trace adds load. The shape: a
    /// business-day curve, 0.8 at night to 1.16 at the afternoon peak.
    fn default() -> Self {
        Background {
            hub: 0.6272,
            city: 0.48,
            green_region: 0.30,
            shape: [
                0.85, 0.82, 0.80, 0.80, 0.80, 0.82, 0.86, 0.92, 1.00, 1.08, 1.14, 1.14, 1.14, 1.14, 1.16, 1.16, 1.14,
                1.14, 1.10, 1.08, 1.06, 1.02, 0.94, 0.89,
            ],
        }
    }
}

impl Background {
    /// The mean share of `site`'s capacity in use by other work.
    pub fn mean_for(&self, site: &suanwang_core::network::Site) -> f64 {
        if site.in_hub() {
            self.hub
        } else if site.city.is_some() {
            self.city
        } else {
            self.green_region
        }
    }

    /// Units of a pool of `count` held at each 15-minute slot of the Beijing day.
    pub fn units(&self, site: &suanwang_core::network::Site, count: u32) -> Vec<u32> {
        let mean = self.mean_for(site);
        (0..96)
            .map(|k| {
                let share = (mean * self.shape[k / 4]).clamp(0.0, 1.0);
                ((f64::from(count) * share).floor() as u32).min(count)
            })
            .collect()
    }
}

impl Default for Scenario {
    fn default() -> Self {
        let weights = [
            ("beijing", 12.0),
            ("shanghai", 12.0),
            ("shenzhen", 10.0),
            ("guangzhou", 8.0),
            ("hangzhou", 7.0),
            ("chengdu", 5.0),
            ("nanjing", 4.0),
            ("suzhou", 4.0),
            ("wuhan", 4.0),
            ("tianjin", 3.0),
            ("chongqing_city", 3.0),
            ("xian", 3.0),
        ];
        Scenario {
            seed: 1,
            vouchers: Vec::new(),
            start: "2026-03-01T00:00:00Z".into(),
            capacity_scale: CapacityScale::Auto,
            target_utilisation: 0.6,
            background: Background::default(),
            forecast: Forecast::default(),
            city_weights: weights.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            default_city_weight: 2.0,
            inference_max_s: 900.0,
            training_min_s: 6.0 * 3600.0,
            batch_max_s: 600.0,
            rendering_min_cores: 512.0,
            analytics_min_s: 2.0 * 3600.0,
            backup_share: 0.1,
            hpc_cores_per_node: 1.0,
            inference_tiers: [0.3, 0.5, 0.2],
            batch_cross_hub_share: 0.3,
            input_gb: [
                [1.0, 200.0],
                [100.0, 20_000.0],
                [10.0, 2000.0],
                [50.0, 5000.0],
                [10.0, 20_000.0],
                [1000.0, 100_000.0],
                [10.0, 2000.0],
                [1.0, 500.0],
            ],
            restricted_share: 0.03,
            internal_share: 0.25,
            deadline_share: 0.7,
            slack_run: [1.0, 4.0],
            slack_hours: [2.0, 24.0],
            slack_run_critical: [1.5, 3.0],
            green_share_of_deferrable: 0.1,
            green_min: 0.3,
            tenants: 200,
            start_within_share: 0.25,
            start_within_factor: [0.0, 2.0],
        }
    }
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.message().to_string())?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let share = |name: &str, v: f64| {
            if v.is_finite() && (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name}: {v} is not a share in [0, 1]"))
            }
        };
        suanwang_core::Ts::parse(&self.start).map_err(|e| format!("start: {e}"))?;
        for (i, p) in self.vouchers.iter().enumerate() {
            p.check().map_err(|e| format!("vouchers[{i}].{e}"))?;
        }
        if let CapacityScale::Fixed(k) = self.capacity_scale
            && !(k.is_finite() && k > 0.0 && k <= 100.0)
        {
            return Err(format!("capacity_scale: {k} is not in (0, 100] (or \"auto\")"));
        }
        if !(self.target_utilisation.is_finite() && self.target_utilisation > 0.0 && self.target_utilisation < 1.0) {
            return Err(format!("target_utilisation: {} is not in (0, 1)", self.target_utilisation));
        }
        for (n, v) in
            [("forecast.green_error", self.forecast.green_error), ("forecast.tariff_error", self.forecast.tariff_error)]
        {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(format!("{n}: {v} is not a relative error σ in [0, 1]"));
            }
        }
        let b = &self.background;
        for (n, v) in
            [("background.hub", b.hub), ("background.city", b.city), ("background.green_region", b.green_region)]
        {
            share(n, v)?;
        }
        if b.shape.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err("background.shape: 24 hourly factors, finite and ≥ 0".into());
        }
        let mean = b.shape.iter().sum::<f64>() / 24.0;
        if (mean - 1.0).abs() > 0.01 {
            return Err(format!("background.shape: the factors' mean is {mean:.3}; it must be 1 (± 0.01)"));
        }
        if b.shape.iter().any(|v| v * b.hub.max(b.city).max(b.green_region) > 1.0) {
            return Err("background: a share × the shape's peak exceeds 1 (more than the whole site)".into());
        }
        for (n, v) in [
            ("backup_share", self.backup_share),
            ("batch_cross_hub_share", self.batch_cross_hub_share),
            ("restricted_share", self.restricted_share),
            ("internal_share", self.internal_share),
            ("deadline_share", self.deadline_share),
            ("green_share_of_deferrable", self.green_share_of_deferrable),
            ("green_min", self.green_min),
            ("start_within_share", self.start_within_share),
        ] {
            share(n, v)?;
        }
        if self.inference_tiers.iter().sum::<f64>() > 1.0 + 1e-9 || self.inference_tiers.iter().any(|v| *v < 0.0) {
            return Err("inference_tiers: shares must be ≥ 0 and sum to at most 1".into());
        }
        for (i, [lo, hi]) in self.input_gb.iter().enumerate() {
            if !(lo.is_finite() && hi.is_finite() && *lo > 0.0 && lo <= hi) {
                return Err(format!("input_gb[{i}]: [{lo}, {hi}] is not a range of positive sizes"));
            }
        }
        if self.city_weights.values().any(|w| !(w.is_finite() && *w >= 0.0)) || self.default_city_weight < 0.0 {
            return Err("city_weights: weights must be finite and ≥ 0".into());
        }
        let [lo, hi] = self.start_within_factor;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 10.0) {
            return Err(format!("start_within_factor: [{lo}, {hi}] is not a range within [0, 10]"));
        }
        if self.hpc_cores_per_node < 1.0 || self.tenants == 0 {
            return Err("hpc_cores_per_node must be ≥ 1 and tenants ≥ 1".into());
        }
        Ok(())
    }
}

/// Maps trace records to jobs: holds the city table and a seeded RNG per record, so a record
/// always maps to the same job whatever else is read.
#[derive(Debug, Clone)]
pub struct Mapper {
    scenario: Scenario,
    cities: Vec<String>,
    cumulative: Vec<f64>,
    hpc: bool,
    llm: bool,
    /// The operator's default `start_within` per kind (`policy.toml`), seconds.
    start_within_default: [i64; 8],
}

impl Mapper {
    /// The mapper for a trace of `kind` (HPC machines map to nodes, LLM requests to one
    /// accelerator each).
    pub fn for_trace(net: &Network, scenario: &Scenario, kind: &crate::trace::TraceKind) -> Mapper {
        Mapper::new(net, scenario, kind.is_hpc(), matches!(kind, crate::trace::TraceKind::AzureLlm))
    }

    pub fn new(net: &Network, scenario: &Scenario, hpc: bool, llm: bool) -> Mapper {
        let mut acc = 0.0;
        let mut cumulative = vec![];
        let mut cities = vec![];
        for c in &net.cities {
            acc += scenario.city_weights.get(&c.id).copied().unwrap_or(scenario.default_city_weight);
            cumulative.push(acc);
            cities.push(c.id.clone());
        }
        let start_within_default = net.policy.start_within_s;
        Mapper { scenario: scenario.clone(), cities, cumulative, hpc, llm, start_within_default }
    }

    /// The job for `rec` at `submit_at`; `key` distinguishes repeats of the same record.
    #[allow(clippy::many_single_char_names)] // s, u, c, r, x: scenario and draws
    pub fn job(&self, rec: &TraceRecord, key: u64, submit_at: Ts) -> Job {
        let s = &self.scenario;
        let mut rng = Rng::new(s.seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let run_s = rec.duration_s.clamp(1.0, f64::from(u32::MAX) / 2.0);
        let gpu = rec.gpus > 0.0;
        let (kind, family, count) = if self.llm {
            (JobKind::Inference, Family::Intelligent, 1)
        } else if gpu {
            let count = rec.gpus.ceil().max(1.0) as u32;
            let kind = if run_s <= s.inference_max_s {
                JobKind::Inference
            } else if run_s >= s.training_min_s {
                JobKind::Training
            } else {
                JobKind::FineTuning
            };
            (kind, Family::Intelligent, count)
        } else if self.hpc {
            (JobKind::Hpc, Family::Super, (rec.cpus / s.hpc_cores_per_node).ceil().max(1.0) as u32)
        } else {
            let cores = rec.cpus.ceil().max(1.0);
            let kind = if run_s <= s.batch_max_s {
                JobKind::Batch
            } else if cores >= s.rendering_min_cores {
                JobKind::Rendering
            } else if run_s >= s.analytics_min_s {
                if rng.unit() < s.backup_share { JobKind::Backup } else { JobKind::Analytics }
            } else {
                JobKind::Batch
            };
            (kind, Family::General, cores.min(1e6) as u32)
        };
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.unit() * total;
        let city = self.cumulative.iter().position(|c| x < *c).unwrap_or(self.cities.len().saturating_sub(1));
        let origin = self.cities.get(city).cloned().unwrap_or_else(|| "beijing".into());
        let tier = match kind {
            JobKind::Inference => {
                let u = rng.unit();
                let [c, r, x] = s.inference_tiers;
                if u < c {
                    Some(LatencyTier::City)
                } else if u < c + r {
                    Some(LatencyTier::Regional)
                } else if u < c + r + x {
                    Some(LatencyTier::CrossHub)
                } else {
                    None
                }
            }
            JobKind::Batch => (rng.unit() < s.batch_cross_hub_share).then_some(LatencyTier::CrossHub),
            _ => None,
        };
        let [lo, hi] = s.input_gb[kind.index()];
        let size_gb = (rng.log_uniform(lo, hi) * 10.0).round() / 10.0;
        let u = rng.unit();
        let classification = if u < s.restricted_share {
            Classification::Restricted
        } else if u < s.restricted_share + s.internal_share {
            Classification::Internal
        } else {
            Classification::Public
        };
        let deadline = (rng.unit() < s.deadline_share).then(|| {
            let slack = if kind.is_delay_tolerant() {
                run_s * uniform(&mut rng, s.slack_run) + uniform(&mut rng, s.slack_hours) * 3600.0
            } else {
                run_s * uniform(&mut rng, s.slack_run_critical) + 3600.0
            };
            Ts(submit_at.0.saturating_add(((run_s + slack) * 1000.0) as i64))
        });
        let min_green_share =
            if kind.is_delay_tolerant() && rng.unit() < s.green_share_of_deferrable { s.green_min } else { 0.0 };
        let tenant = format!("tenant-{}", rng.below(s.tenants));
        // drawn last: the draws above stay what they were without it
        let start_within_s = (kind.may_wait(tier.is_some()) && rng.unit() < s.start_within_share).then(|| {
            let default = self.start_within_default[kind.index()] as f64;
            let stated = default * uniform(&mut rng, s.start_within_factor);
            (stated / 900.0).floor() as i64 * 900
        });
        Job {
            name: format!("{}-{key}", kind.as_str()),
            tenant,
            kind,
            resources: Resources {
                family,
                count: count.max(1),
                accelerator: None,
                min_throughput: None,
                memory_gib: 0,
                variants: vec![],
            },
            work: Work::RunTime { run_time_s: run_s.ceil() as u32 },
            input: Some(Input { size_gb, location: origin.clone(), classification, dataset: None }),
            origin,
            latency_tier: tier,
            deadline,
            start_within_s,
            budget_fen: None,
            min_green_share,
            allowed_regions: vec![],
            allowed_sites: vec![],
            priority: 5,
            preemptible: kind.is_delay_tolerant(),
            checkpoint_s: None,
            run: None,
            contract: None,
            max_price: None,
        }
    }
}

fn uniform(rng: &mut Rng, [lo, hi]: [f64; 2]) -> f64 {
    lo + rng.unit() * (hi - lo)
}
