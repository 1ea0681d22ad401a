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
    /// When the replay starts (RFC 3339): trace time 0 maps here. Seasons, tariffs and green
    /// shares follow this calendar.
    pub start: String,
    /// Multiplies every pool's size: the reference network is a 1:10 model of the national
    /// clusters, far larger than any single trace's cluster; 0.05 makes a trace's load visible.
    pub capacity_scale: f64,
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
            start: "2026-03-01T00:00:00Z".into(),
            capacity_scale: 0.05,
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
        if !(self.capacity_scale.is_finite() && self.capacity_scale > 0.0 && self.capacity_scale <= 100.0) {
            return Err(format!("capacity_scale: {} is not in (0, 100]", self.capacity_scale));
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
            input: Some(Input { size_gb, location: origin.clone(), classification }),
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
        }
    }
}

fn uniform(rng: &mut Rng, [lo, hi]: [f64; 2]) -> f64 {
    lo + rng.unit() * (hi - lo)
}
