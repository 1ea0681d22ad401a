//! Preemption's speed (issue 16 target: decided ≤ 1 ms after the need arises), measured in the
//! engine as the control plane runs it: the reference network with preemptible work in flight
//! everywhere, and two agent sites of 4,096 cores — one full of preemptible jobs, one empty.
//! Each trial submits a non-preemptible 1-core job to the full site (the engine finds, lifts
//! and preempts a victim, places the job and requeues the victim) and the same job to the
//! empty site (a plain placement, the baseline), timing each `apply`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use suanwang_core::network::{AgentPool, AgentSite};
use suanwang_core::{Network, Ts};
use suanwang_engine::{Command, Engine, EngineConfig, Event, Owner};

use crate::bench_cmd::quantile;

const CORES: u32 = 4_096;

fn site(id: &str) -> AgentSite {
    AgentSite {
        id: id.into(),
        city: "beijing".into(),
        pue: 1.3,
        pools: vec![AgentPool {
            name: "cpu".into(),
            model: "generic-x86_64".into(),
            count: u64::from(CORES),
            memory_gib_per_unit: 2,
            power_w_per_unit: 10.0,
            price_fen_per_unit_hour: 30,
        }],
    }
}

fn job(net: &Network, now: Ts, site: &str, preemptible: bool, tenant: &str) -> Result<suanwang_core::Job> {
    let text = format!(
        "name = \"bench\"\ntenant = \"{tenant}\"\nkind = \"batch\"\norigin = \"beijing\"\nallowed_sites = [\"{site}\"]\n\
         start_within = \"0s\"\npreemptible = {preemptible}\n[resources]\nfamily = \"general\"\ncount = 1\n\
         memory_gib = 1\n[work]\nrun_time_s = 36000\n"
    );
    suanwang_core::job::parse_toml(text.as_bytes(), net, now)
        .map_err(|p| anyhow::anyhow!("bench job: {}", p.first().map(ToString::to_string).unwrap_or_default()))
}

/// `trials` preempting submissions and as many plain ones, with `background` preemptible jobs
/// in flight across the reference network.
pub fn preemption(trials: usize, background: usize) -> Result<Value> {
    let base = Arc::new(Network::reference().map_err(|p| anyhow::anyhow!("reference network: {p:?}"))?);
    let now = Ts::parse("2026-12-07T00:00:00Z").map_err(anyhow::Error::msg)?;
    let mut e = Engine::new(Arc::clone(&base), now, EngineConfig::for_network(&base));
    let op = Owner { role: "operator".into(), name: "bench".into() };
    let mut net = (*base).clone();
    for id in ["bench-full", "bench-free"] {
        e.apply(Command::RegisterSite { site: site(id), owner: op.clone(), approved: true })?;
        net = net.with_agent_site(&site(id)).map_err(anyhow::Error::msg)?;
    }
    let mut id = 0u64;
    let mut next = || {
        id += 1;
        id
    };
    for (_, mut j) in suanwang_sched::workload::mix(&base, 7, background, now, 0) {
        j.preemptible = true;
        e.apply(Command::Submit { id: next(), job: Box::new(j) })?;
    }
    for i in 0..CORES {
        let j = job(&net, now, "bench-full", true, &format!("spot{}", i % 16))?;
        e.apply(Command::Submit { id: next(), job: Box::new(j) })?;
    }
    let _ = e.take_events();
    let in_flight = e.counts().in_flight;
    let trials = trials.min(CORES as usize);
    let (mut preempting, mut plain) = (Vec::with_capacity(trials), Vec::with_capacity(trials));
    let mut preempted = 0usize;
    for _ in 0..trials {
        let j = job(&net, now, "bench-full", false, "urgent")?;
        let n = next();
        let t = Instant::now();
        e.apply(Command::Submit { id: n, job: Box::new(j) })?;
        preempting.push(t.elapsed().as_secs_f64() * 1e6);
        preempted += e.take_events().iter().filter(|ev| matches!(ev, Event::Preempted { by, .. } if *by == n)).count();
        let j = job(&net, now, "bench-free", false, "urgent")?;
        let t = Instant::now();
        e.apply(Command::Submit { id: next(), job: Box::new(j) })?;
        plain.push(t.elapsed().as_secs_f64() * 1e6);
        let _ = e.take_events();
    }
    if preempted != trials {
        bail!("{preempted} preemptions in {trials} trials: each trial should preempt one job");
    }
    let p99 = quantile(preempting.clone(), 0.99);
    let base_p99 = quantile(plain.clone(), 0.99);
    Ok(json!({
        "trials": trials,
        "jobs_in_flight": in_flight,
        "preempt_p50_us": quantile(preempting.clone(), 0.5),
        "preempt_p99_us": p99,
        "preempt_max_us": preempting.iter().copied().fold(0.0, f64::max),
        "plain_p50_us": quantile(plain.clone(), 0.5),
        "plain_p99_us": base_p99,
        "p99_ratio": if base_p99 > 0.0 { p99 / base_p99 } else { 0.0 },
    }))
}
