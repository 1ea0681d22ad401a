//! `suanwang twin`: replay a real trace through the engine under each policy, side by side.

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use suanwang_core::Network;
use suanwang_sched::{Policy, Scorer};
use suanwang_twin::run::{PolicyKpis, RunConfig, TwinError};
use suanwang_twin::{Reader, Scenario, TraceKind, report, run_policy};

#[derive(Debug, clap::Args)]
pub struct TwinArgs {
    /// KIND:PATH with KIND alibaba2017, openb, philly, azure-llm, swf or csv.
    #[arg(long)]
    pub trace: String,
    /// For csv traces: submit=COL,duration=COL|end=COL,cpus=COL,gpus=COL,mem=COL.
    #[arg(long)]
    pub map: Option<String>,
    /// For csv traces: time=s|ms|us,mem=MiB|GiB.
    #[arg(long)]
    pub units: Option<String>,
    /// A policy, a comma-separated list, or all (balanced, nearest, cheapest, greenest, wait-awhile).
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// Scenario TOML (workload mapping); defaults documented in the README.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// At most N records per repeat.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Replay the trace K times back to back.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Overrides the scenario's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop at the first malformed line (default: skip and count them).
    #[arg(long)]
    pub strict: bool,
    #[arg(long)]
    pub json: bool,
    /// Write twin.json, SVG plots and index.html here.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// A policy file (`base`, `name`, `[weights]`, as for `plan --weights`) replayed beside
    /// --policy; repeatable.
    #[arg(long, value_name = "FILE")]
    pub weights: Vec<PathBuf>,
    /// Replay `balanced` under every combination of these weights, SCORER=LO..HI
    /// comma-separated (e.g. money=0..4,carbon=0..4), and report the Pareto-efficient set
    /// over (cost, carbon, mean wait).
    #[arg(long, value_name = "SPEC")]
    pub sweep: Option<String>,
    /// Values per swept scorer, evenly spaced from LO to HI.
    #[arg(long, default_value_t = 5)]
    pub steps: u32,
}

/// A fresh streaming reader of the trace at `path` (one per pass: the auto scale, each policy).
fn open_trace(path: &str, kind: &TraceKind) -> Result<Reader<BufReader<File>>, TwinError> {
    let f = File::open(path).map_err(|e| TwinError::Open(format!("{path}: {e}")))?;
    Ok(Reader::new(BufReader::with_capacity(1 << 16, f), kind.clone(), path.to_string()))
}

/// Peak resident set size of this process, MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(net: &Network, args: &TwinArgs) -> Result<()> {
    let (kind, path) =
        TraceKind::parse(&args.trace, args.map.as_deref(), args.units.as_deref()).map_err(anyhow::Error::msg)?;
    if !Path::new(&path).is_file() {
        bail!("--trace: {path}: no such file");
    }
    let mut scenario = match &args.scenario {
        Some(p) => {
            Scenario::from_toml(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => Scenario::default(),
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let mut policies: Vec<Policy> = if args.policy == "all" {
        ["balanced", "nearest", "cheapest", "greenest", "wait-awhile"]
            .iter()
            .filter_map(|n| Policy::named(n, &net.policy))
            .collect()
    } else {
        args.policy
            .split(',')
            .map(|n| {
                Policy::named(n.trim(), &net.policy)
                    .with_context(|| format!("--policy: unknown {n:?}; one of {}, or all", Policy::NAMES.join(", ")))
            })
            .collect::<Result<_>>()?
    };
    for path in &args.weights {
        let policy = crate::plan_cmd::policy(net, "balanced", Some(path))?;
        if policies.iter().any(|p| p.name == policy.name) {
            bail!(
                "--weights {}: policy name {:?} is already in the run; give the file a `name`",
                path.display(),
                policy.name
            );
        }
        policies.push(policy);
    }
    if let Some(spec) = &args.sweep {
        policies.extend(sweep_policies(net, spec, args.steps)?);
    }
    let scale = suanwang_twin::capacity::capacity_scale(net, &kind, || open_trace(&path, &kind), &scenario, args.limit)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let net = Arc::new(suanwang_twin::capacity::scaled(net, scale));
    let started = Instant::now();
    let bar =
        if std::io::stderr().is_terminal() && !args.json { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(policies.len()).max(1);
    let results: Vec<Result<PolicyKpis, TwinError>> = std::thread::scope(|scope| {
        let mut out: Vec<Option<Result<PolicyKpis, TwinError>>> = (0..policies.len()).map(|_| None).collect();
        for chunk in policies.iter().enumerate().collect::<Vec<_>>().chunks(threads) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|(i, policy)| {
                    let (net, kind, path, bar, scenario) =
                        (Arc::clone(&net), kind.clone(), path.clone(), bar.clone(), scenario.clone());
                    let cfg = RunConfig {
                        policy: (*policy).clone(),
                        scenario,
                        limit: args.limit,
                        repeat: args.repeat,
                        strict: args.strict,
                    };
                    let i = *i;
                    scope.spawn(move || {
                        let mut progress = |n: u64| bar.set_message(format!("{}: {n} records", cfg.policy.name));
                        (i, run_policy(&net, &kind, || open_trace(&path, &kind), &cfg, &mut progress))
                    })
                })
                .collect();
            for h in handles {
                if let Ok((i, r)) = h.join() {
                    out[i] = Some(r);
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err(TwinError::Open("a worker thread panicked".into())))).collect()
    });
    bar.finish_and_clear();
    let mut kpis: Vec<PolicyKpis> = vec![];
    for r in results {
        kpis.push(r.map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    suanwang_twin::run::judge(&mut kpis, &net.policy);
    let wall_s = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    let full = json!({
        "trace": args.trace, "scenario": scenario, "capacity_scale": scale, "repeat": args.repeat, "limit": args.limit,
        "wall_s": wall_s, "peak_rss_mib": rss, "policies": kpis,
    });
    if let Some(dir) = &args.report {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in report::files(
            &serde_json::to_string_pretty(&full)?,
            &args.trace,
            &kpis,
            report::Scripts {
                echarts: &suanwang_server::console::echarts().context("unzipping the vendored ECharts")?,
                licence: suanwang_server::console::ECHARTS_LICENSE,
                charts: suanwang_server::console::TWIN_CHARTS_JS,
            },
        ) {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    if args.json {
        let mut brief = kpis.clone();
        for k in &mut brief {
            k.daily_hub_utilization.clear();
            k.daily_green_share.clear();
        }
        println!(
            "{}",
            serde_json::to_string(
                &json!({"trace": args.trace, "capacity_scale": scale, "wall_s": wall_s, "peak_rss_mib": rss, "policies": brief})
            )?
        );
    } else {
        println!(
            "capacity scale {scale:.4} ({})",
            match scenario.capacity_scale {
                suanwang_twin::scenario::CapacityScale::Auto => format!(
                    "auto: the trace plus background at {:.0} % in its busiest family",
                    scenario.target_utilisation * 100.0
                ),
                suanwang_twin::scenario::CapacityScale::Fixed(_) => "fixed by the scenario".into(),
            }
        );
        print_table(&kpis, wall_s, rss);
        if let Some(dir) = &args.report {
            println!("report: {}", dir.join("index.html").display());
        }
    }
    Ok(())
}

/// The policies of `--sweep SPEC --steps N`: `balanced` with each combination of the swept
/// scorers' weights, named `sweep:money=1,carbon=2`.
pub fn sweep_policies(net: &Network, spec: &str, steps: u32) -> Result<Vec<Policy>> {
    let base = Policy::named("balanced", &net.policy).context("balanced policy")?;
    let mut axes: Vec<(Scorer, Vec<f64>)> = vec![];
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, range) = part.split_once('=').with_context(|| format!("--sweep: {part:?} is not SCORER=LO..HI"))?;
        let name = name.trim();
        let scorer = Scorer::parse(name)
            .with_context(|| format!("--sweep: {name:?}: unknown scorer; one of {}", Scorer::names()))?;
        if axes.iter().any(|(s, _)| *s == scorer) {
            bail!("--sweep: {name}: swept twice");
        }
        let (lo, hi) = range
            .split_once("..")
            .with_context(|| format!("--sweep: {name}={range}: the range must be LO..HI (e.g. 0..4)"))?;
        let num = |v: &str, which: &str| -> Result<f64> {
            let x: f64 =
                v.trim().parse().map_err(|_| anyhow::anyhow!("--sweep: {name}: {which} {v:?} is not a number"))?;
            if !(x.is_finite() && x >= 0.0) {
                bail!("--sweep: {name}: {which} {v:?} must be a finite weight ≥ 0");
            }
            Ok(x)
        };
        let (lo, hi) = (num(lo, "LO")?, num(hi, "HI")?);
        if hi < lo {
            bail!("--sweep: {name}={range}: the range is empty (HI < LO)");
        }
        let values = if hi <= lo || steps <= 1 {
            vec![lo]
        } else {
            (0..steps).map(|i| lo + (hi - lo) * f64::from(i) / f64::from(steps - 1)).collect()
        };
        axes.push((scorer, values));
    }
    if axes.is_empty() {
        bail!("--sweep: no scorer given; e.g. --sweep money=0..4,carbon=0..4");
    }
    if steps == 0 {
        bail!("--steps: must be at least 1");
    }
    let total: usize = axes.iter().map(|(_, v)| v.len()).product();
    if total > 1024 {
        bail!("--sweep: {total} combinations; at most 1024 (fewer --steps or scorers)");
    }
    let mut out = vec![];
    for i in 0..total {
        let mut rest = i;
        let mut weights = base.weights;
        let mut label = vec![];
        for (scorer, values) in &axes {
            let v = values[rest % values.len()];
            rest /= values.len();
            weights.set(*scorer, v);
            label.push(format!("{}={}", scorer.as_str(), short_weight(v)));
        }
        if weights.as_array().iter().all(|w| *w == 0.0) {
            continue;
        }
        out.push(Policy { name: format!("sweep:{}", label.join(",")), weights });
    }
    Ok(out)
}

fn short_weight(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A number in at most 6 characters or so: 3 significant digits.
fn short(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// A table row's label and how to render one policy's cell.
type Cell = Box<dyn Fn(&PolicyKpis) -> String>;

fn print_table(kpis: &[PolicyKpis], wall_s: f64, rss: Option<f64>) {
    let rows: Vec<(&str, Cell)> = vec![
        ("jobs", Box::new(|k| k.jobs.to_string())),
        ("placed", Box::new(|k| k.placed.to_string())),
        ("rejected", Box::new(|k| k.rejected.to_string())),
        ("completed", Box::new(|k| k.completed.to_string())),
        ("latency violations", Box::new(|k| k.latency_violations.to_string())),
        ("residency violations", Box::new(|k| k.residency_violations.to_string())),
        ("deadline misses", Box::new(|k| k.deadline_misses.to_string())),
        ("deferred beyond start_within", Box::new(|k| k.deferred_beyond_start_within.to_string())),
        ("cost (CNY)", Box::new(|k| format!("{:.0}", k.cost_fen as f64 / 100.0))),
        ("carbon (t, market)", Box::new(|k| format!("{:.2}", k.carbon_kg / 1000.0))),
        ("green share", Box::new(|k| format!("{:.3}", k.green_share))),
        ("hub share", Box::new(|k| format!("{:.3}", k.hub_share))),
        ("west share (deferrable)", Box::new(|k| format!("{:.3}", k.west_share_of_deferrable))),
        ("mean wait (s)", Box::new(|k| format!("{:.0}", k.mean_wait_s))),
        ("p99 wait (s)", Box::new(|k| format!("{:.0}", k.p99_wait_s))),
        ("mean slowdown", Box::new(|k| format!("{:.2}", k.mean_slowdown))),
        ("utilisation hub (IT)", Box::new(|k| format!("{:.4}", k.hub_utilisation))),
        ("utilisation non-hub (IT)", Box::new(|k| format!("{:.4}", k.nonhub_utilisation))),
        ("utilisation national (IT)", Box::new(|k| format!("{:.4}", k.national_utilisation))),
        ("hub ÷ national utilisation", Box::new(|k| format!("{:.2}", k.hub_to_national_utilisation))),
        ("hub green share", Box::new(|k| format!("{:.3}", k.hub_green_share))),
        (
            "deferrable cost/job vs nearest",
            Box::new(|k| {
                format!("{:.2}", k.deferrable_cost_fen_per_job / k.deferrable_cost_fen_per_job_at_nearest.max(1e-9))
            }),
        ),
        (
            "deferrable carbon/job vs nearest",
            Box::new(|k| {
                format!("{:.2}", k.deferrable_carbon_kg_per_job / k.deferrable_carbon_kg_per_job_at_nearest.max(1e-9))
            }),
        ),
        ("skipped / bad lines", Box::new(|k| format!("{} / {}", k.skipped_lines, k.bad_lines))),
    ];
    print!("{:<34}", "");
    for k in kpis {
        print!(" {:>14}", k.policy);
    }
    println!();
    for (name, f) in &rows {
        print!("{name:<34}");
        for k in kpis {
            print!(" {:>14}", f(k));
        }
        println!();
    }
    println!();
    println!("{:<34}", "targets (value / limit)");
    if let Some(first) = kpis.first() {
        for (i, t) in first.targets.iter().enumerate() {
            let bound = if t.bound == "at_least" { "≥" } else { "≤" };
            print!("{:<34}", format!("{} {bound} {}", t.name, short(t.limit)));
            for k in kpis {
                let cell = k.targets.get(i).map_or(String::new(), |t| {
                    let mark = match t.met {
                        Some(true) => "met",
                        Some(false) => "MISSED",
                        None => "?",
                    };
                    format!("{} {mark}", short(t.value))
                });
                print!(" {cell:>14}");
            }
            println!();
        }
    }
    if let Some(b) = kpis.first().and_then(|k| k.first_bad_lines.first()) {
        println!("first bad line: {b}");
    }
    println!("wall {wall_s:.1} s, peak RSS {} MiB", rss.map_or("?".into(), |r| format!("{r:.0}")));
}
