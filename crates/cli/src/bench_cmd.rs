//! `suanwang bench sched`: the scheduler's speed on the reference network with a realistic mix
//! (every kind, every latency tier), 48 h horizon, the network filling up as jobs are placed.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;
use suanwang_core::{Network, Ts};
use suanwang_sched::batch::{self, BatchConfig, Instance};
use suanwang_sched::{Config, Policy, Scheduler, workload};

pub struct SchedArgs {
    pub jobs: usize,
    pub batch_jobs: usize,
    pub seed: u64,
    pub policy: Policy,
    pub json: bool,
}

/// The `p` quantile (0 to 1) of sorted figures, nearest rank; 0 for none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The `p` quantile of figures in any order.
pub(crate) fn quantile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, p)
}

/// A small deterministic generator (splitmix64) for the benchmarks: the same work every run.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn sched(net: Network, args: &SchedArgs) -> Result<()> {
    let net = Arc::new(net);
    // a fixed instant keeps runs comparable (tariffs and green shares depend on the hour)
    let start = Ts::parse("2026-11-26T00:00:00Z").map_err(anyhow::Error::msg)?;
    let progress = !args.json;

    // online: jobs arrive over 24 h and are placed one by one
    let jobs = workload::mix(&net, args.seed, args.jobs, start, 24 * 3600);
    let mut sched = Scheduler::new(Arc::clone(&net), start, Config::default());
    let mut lat_us = Vec::with_capacity(jobs.len());
    let (mut placed, mut refused, mut options) = (0usize, 0usize, 0usize);
    let (mut prepared, mut scored) = (0usize, 0usize);
    let t0 = Instant::now();
    for (at, job) in &jobs {
        let t = Instant::now();
        sched.advance(*at);
        match sched.place(job, *at, &args.policy) {
            Ok(p) => {
                placed += 1;
                options += p.options_considered;
            }
            Err(_) => refused += 1,
        }
        lat_us.push(t.elapsed().as_secs_f64() * 1e6);
        let (p, s) = sched.last_plan_sites();
        prepared += p;
        scored += s;
    }
    let online_s = t0.elapsed().as_secs_f64();
    lat_us.sort_by(f64::total_cmp);
    if progress {
        eprintln!("online: {} decisions in {:.3} s", jobs.len(), online_s);
    }

    // batch: one window of jobs, all known at `start`, on an empty network
    let window = workload::mix(&net, args.seed ^ 0xBA7C, args.batch_jobs, start, 0);
    let window: Vec<_> = window.into_iter().map(|(_, j)| j).collect();
    let mut bsched = Scheduler::new(Arc::clone(&net), start, Config::default());
    let tb = Instant::now();
    let inst = Instance::build(&mut bsched, &window, start, &args.policy, batch::DEFAULT_KEEP);
    let build_ms = tb.elapsed().as_secs_f64() * 1e3;
    let outcome = batch::optimise(&mut bsched, &inst, &BatchConfig::default());
    let batch_ms = tb.elapsed().as_secs_f64() * 1e3;

    let doc = json!({
        "jobs": jobs.len(),
        "placed": placed,
        "refused": refused,
        "policy": args.policy.name,
        "horizon_h": 48,
        "sites": net.sites.len(),
        "pools": sched.pool_count(),
        "mean_options_per_placement": (options as f64 / placed.max(1) as f64).round(),
        "mean_sites_prepared": (prepared as f64 / jobs.len().max(1) as f64 * 10.0).round() / 10.0,
        "mean_sites_scored": (scored as f64 / jobs.len().max(1) as f64 * 10.0).round() / 10.0,
        "placements_per_sec": (jobs.len() as f64 / online_s).round(),
        "p50_us": (percentile(&lat_us, 0.50) * 10.0).round() / 10.0,
        "p99_us": (percentile(&lat_us, 0.99) * 10.0).round() / 10.0,
        "max_us": (lat_us.last().copied().unwrap_or(0.0) * 10.0).round() / 10.0,
        "batch_jobs": window.len(),
        "batch_ms": (batch_ms * 10.0).round() / 10.0,
        "batch_options_ms": (build_ms * 10.0).round() / 10.0,
        "batch_method": outcome.method,
        "batch_placed": outcome.placed,
        "greedy_placed": outcome.greedy_placed,
        "batch_objective": outcome.total,
        "greedy_objective": outcome.greedy_total,
        "batch_vs_greedy_cost_ratio": if outcome.greedy_total > 0.0 { outcome.total / outcome.greedy_total } else { 1.0 },
    });
    if args.json {
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
