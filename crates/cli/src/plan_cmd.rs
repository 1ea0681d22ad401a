//! `suanwang plan FILE`: where, when and how a job would run on the empty reference network,
//! and why.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use suanwang_api as api;
use suanwang_core::{Network, Ts};
use suanwang_sched::{Config, Policy, Scheduler};

pub fn policy(net: &Network, name: &str, weights_file: Option<&Path>) -> Result<Policy> {
    let mut policy = Policy::named(name, &net.policy)
        .with_context(|| format!("unknown policy {name:?}; one of {}", Policy::NAMES.join(", ")))?;
    if let Some(path) = weights_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let base = if text.contains("base") { text } else { format!("base = {name:?}\n{text}") };
        policy = Policy::from_toml(&base, &net.policy).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(policy)
}

pub fn run(net: Network, file: &Path, policy: &Policy, now: Ts, json: bool) -> Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let job = if file.extension().is_some_and(|e| e == "json") {
        suanwang_core::job::parse_json(&bytes, &net, now)
    } else {
        suanwang_core::job::parse_toml(&bytes, &net, now)
    };
    let job = match job {
        Ok(job) => job,
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            bail!("{} is not a valid job spec:\n{}", file.display(), list.join("\n"));
        }
    };
    let mut sched = Scheduler::new(Arc::new(net), now, Config::default());
    print(&suanwang_server::wire::plan(&sched.plan(&job, now, policy)), json)
}

/// A plan's answer (local, or the server's), as the human view or `--json`; exit 1 when no
/// site can take the job.
pub fn print(answer: &api::PlanAnswer, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else if let Some(p) = &answer.placement {
        print!("{}", human(p));
    } else if let Some(refusal) = &answer.refusal {
        eprintln!("{refusal}");
        for r in &refusal.rejections {
            eprintln!("  {:<22} {:<12} {}", r.site, r.filter.as_str(), r.detail);
        }
    }
    Ok(if answer.placed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn yuan(fen: i64) -> String {
    suanwang_core::Money(fen).to_string()
}

fn human(p: &api::Placement) -> String {
    let c = &p.chosen;
    let mut out = String::new();
    let _ = writeln!(out, "job {} — policy {}", p.job, p.policy);
    let _ = writeln!(out, "  where   {} (pool {}), {:.2} ms from origin", c.site, c.pool, c.latency_ms);
    let _ = writeln!(
        out,
        "  when    {} → {} ({} s run{})",
        Ts(c.start_at),
        Ts(c.end_at),
        p.run_s,
        if p.deferred_s > 0 {
            format!(", shifted {} h later for a better slot", p.deferred_s / 3600)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  data    {} ({} s, {})",
        c.transfer.mode.as_str(),
        c.transfer.seconds,
        yuan(c.transfer.cost_fen)
    );
    let _ = writeln!(
        out,
        "  cost    {} = compute {} + energy {} + transfer {}",
        yuan(c.cost.total_fen),
        yuan(c.cost.compute_fen),
        yuan(c.cost.energy_fen),
        yuan(c.cost.transfer_fen)
    );
    let _ = writeln!(
        out,
        "  energy  {:.1} kWh, green {:.0} %, carbon {:.1} kg market-based ({:.1} kg location-based)",
        c.energy_kwh,
        c.green_share * 100.0,
        c.carbon_kg,
        c.carbon_location_kg
    );
    let _ = writeln!(out, "\n  why (lower is better; weighted = weight × normalised):");
    let _ = write!(out, "  {:<24}", "");
    for s in &c.scores {
        let _ = write!(out, " {:>10}", s.scorer.as_str());
    }
    let _ = writeln!(out, " {:>8}", "TOTAL");
    let mut row = |label: &str, cand: &api::plan::Candidate| {
        let _ = write!(out, "  {label:<24}");
        for s in &cand.scores {
            let _ = write!(out, " {:>10.3}", s.weighted);
        }
        let _ = writeln!(out, " {:>8.3}", cand.score);
    };
    row(&format!("* {}", c.site), c);
    for r in &p.runners_up {
        row(&format!("  {}", r.site), r);
    }
    if !p.rejections.is_empty() {
        let _ = writeln!(out, "\n  refused sites:");
        for r in &p.rejections {
            let _ = writeln!(out, "    {:<22} {:<12} {}", r.site, r.filter.as_str(), r.detail);
        }
    }
    let _ = writeln!(out, "\n  {} options considered. `--json` shows raw and normalised values.", p.options_considered);
    out
}
