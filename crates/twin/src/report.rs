//! `--report DIR`: the run's JSON, SVG plots and an index.html that shows them. The SVG is
//! written by hand (a few polylines and circles): no plotting dependency, no fonts needed.

use std::fmt::Write as _;

use crate::run::PolicyKpis;

const W: f64 = 720.0;
const H: f64 = 300.0;
const PAD: f64 = 48.0;
const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An open SVG of the report's size with `title` and the two axes drawn; the caller adds the
/// marks and closes it.
fn frame(title: &str) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r#"<text x="{PAD}" y="20" font-size="14">{}</text>"#, esc(title));
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="#444"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="#444"/>"##,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    svg
}

/// A line chart of several series (values `0..=y_max`) over days.
pub fn line_chart(title: &str, y_label: &str, series: &[(String, Vec<f64>)], y_max: f64) -> String {
    let days = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(2);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (days - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v / y_max).clamp(0.0, 1.0);
    let mut svg = frame(title);
    let _ = write!(
        svg,
        r#"<text x="{PAD}" y="{}">day 0</text><text x="{}" y="{}" text-anchor="end">day {}</text>"#,
        H - PAD + 16.0,
        W - PAD,
        H - PAD + 16.0,
        days - 1
    );
    let _ = write!(
        svg,
        r#"<text x="8" y="{PAD}">{y_max:.2}</text><text x="8" y="{}">0</text><text x="8" y="{}">{}</text>"#,
        H - PAD,
        H / 2.0,
        esc(y_label)
    );
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<String> = values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
            W - PAD + 4.0 - 140.0,
            PAD + 14.0 * k as f64,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A scatter of cost (x) against carbon (y), one labelled point per policy.
pub fn cost_carbon(policies: &[PolicyKpis]) -> String {
    let max_x = policies.iter().map(|p| p.cost_fen as f64 / 100.0).fold(1.0, f64::max) * 1.1;
    let max_y = policies.iter().map(|p| p.carbon_kg).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| PAD + (W - 2.0 * PAD) * v / max_x;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * v / max_y;
    let mut svg = frame("cost (CNY) against carbon (kg, market-based) per policy");
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{max_x:.0} CNY</text><text x="8" y="{PAD}">{max_y:.0} kg</text>"#,
        W - PAD,
        H - PAD + 16.0
    );
    for (k, p) in policies.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let (px, py) = (x(p.cost_fen as f64 / 100.0), y(p.carbon_kg));
        let _ = write!(
            svg,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="5" fill="{colour}"/><text x="{:.1}" y="{:.1}" fill="{colour}">{}</text>"#,
            px + 7.0,
            py - 6.0,
            esc(&p.policy)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The frontier: cost (x) against carbon (y) for every policy of the run; the mean wait is the
/// marker's radius (3–12 px); Pareto-efficient points over (cost, carbon, mean wait) are ringed;
/// named policies are labelled, sweep points are grey and unlabelled.
pub fn frontier(policies: &[PolicyKpis]) -> String {
    let xs: Vec<f64> = policies.iter().map(|p| p.cost_fen as f64 / 100.0).collect();
    let ys: Vec<f64> = policies.iter().map(|p| p.carbon_kg).collect();
    let (lo_x, hi_x) = span(&xs);
    let (lo_y, hi_y) = span(&ys);
    let max_wait = policies.iter().map(|p| p.mean_wait_s).fold(1.0, f64::max);
    let x = |v: f64| PAD + (W - 2.0 * PAD) * (v - lo_x) / (hi_x - lo_x);
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo_y) / (hi_y - lo_y);
    let mut svg = frame(&format!(
        "cost against carbon; marker size = mean wait (largest {max_wait:.0} s); ringed = Pareto-efficient"
    ));
    for i in 0..=4 {
        let fx = lo_x + (hi_x - lo_x) * f64::from(i) / 4.0;
        let fy = lo_y + (hi_y - lo_y) * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#444"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4:.0}</text><line x1="{5}" y1="{6:.1}" x2="{PAD}" y2="{6:.1}" stroke="#444"/><text x="{7}" y="{8:.1}" text-anchor="end">{9:.1}</text>"##,
            x(fx),
            H - PAD,
            H - PAD + 4.0,
            H - PAD + 16.0,
            fx,
            PAD - 4.0,
            y(fy),
            PAD - 6.0,
            y(fy) + 4.0,
            fy
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">cost, CNY</text><text x="8" y="{}">kg CO2</text>"#,
        W - PAD,
        H - 8.0,
        PAD - 14.0
    );
    let mut named = 0;
    for p in policies {
        let sweep = p.policy.starts_with("sweep:");
        let colour = if sweep {
            "#999"
        } else {
            named += 1;
            COLOURS[(named - 1) % COLOURS.len()]
        };
        let (px, py) = (x(p.cost_fen as f64 / 100.0), y(p.carbon_kg));
        let r = 3.0 + 9.0 * (p.mean_wait_s / max_wait).clamp(0.0, 1.0);
        let _ = write!(svg, r#"<circle cx="{px:.1}" cy="{py:.1}" r="{r:.1}" fill="{colour}" fill-opacity="0.7"/>"#);
        if p.pareto_efficient {
            let _ =
                write!(svg, r##"<circle cx="{px:.1}" cy="{py:.1}" r="{:.1}" fill="none" stroke="#000"/>"##, r + 2.0);
        }
        if !sweep {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{}</text>"#,
                px + r + 3.0,
                py - 3.0,
                esc(&p.policy)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A value range with 5 % margins, never empty.
fn span(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.01).max(1e-9);
    (lo - pad, hi + pad)
}

/// Targets met per named policy: one row per target, one column per policy.
pub fn targets_table(policies: &[PolicyKpis]) -> String {
    let named: Vec<&PolicyKpis> = policies.iter().filter(|p| !p.policy.starts_with("sweep:")).collect();
    let mut t = String::from("<table><tr><th>target</th><th>limit</th>");
    for p in &named {
        let _ = write!(t, "<th>{}</th>", esc(&p.policy));
    }
    t.push_str("</tr>");
    if let Some(first) = named.first() {
        for (i, target) in first.targets.iter().enumerate() {
            let bound = if target.bound == "at_least" { "≥" } else { "≤" };
            let _ = write!(
                t,
                "<tr><td title=\"{}\">{}</td><td>{bound} {:.3}</td>",
                esc(target.source),
                esc(&target.name),
                target.limit
            );
            for p in &named {
                let cell = p.targets.get(i).map_or(String::new(), |x| {
                    let mark = match x.met {
                        Some(true) => "✓ met",
                        Some(false) => "✗ missed",
                        None => "?",
                    };
                    format!("{:.3} {mark}", x.value)
                });
                let _ = write!(t, "<td>{cell}</td>");
            }
            t.push_str("</tr>");
        }
    }
    t.push_str("</table>");
    t
}

/// The files of a report: (name, contents).
pub fn files(json: &str, trace: &str, policies: &[PolicyKpis]) -> Vec<(String, String)> {
    let mut out = vec![("twin.json".to_string(), json.to_string())];
    let mut body = String::new();
    for p in policies.iter().filter(|p| !p.policy.starts_with("sweep:")) {
        let hubs: Vec<(String, Vec<f64>)> =
            p.daily_hub_utilization.iter().map(|(h, v)| (h.clone(), v.clone())).collect();
        let max = hubs.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.01, f64::max);
        let name = format!("utilisation-{}.svg", p.policy);
        out.push((
            name.clone(),
            line_chart(&format!("per-hub utilisation per day — {}", p.policy), "share", &hubs, max),
        ));
        let _ = write!(body, r#"<h3>{}</h3><img src="{name}"/>"#, esc(&p.policy));
    }
    let green: Vec<(String, Vec<f64>)> =
        policies.iter().map(|p| (p.policy.clone(), p.daily_green_share.clone())).collect();
    out.push(("green-share.svg".into(), line_chart("green share of energy used, per day", "share", &green, 1.0)));
    out.push(("cost-carbon.svg".into(), cost_carbon(policies)));
    out.push(("frontier.svg".into(), frontier(policies)));
    let targets = targets_table(policies);
    let sweep = policies.iter().filter(|p| p.policy.starts_with("sweep:")).count();
    let pareto = policies.iter().filter(|p| p.pareto_efficient).count();
    let mut table = String::from(
        "<table><tr><th>policy</th><th>jobs</th><th>placed</th><th>rejected</th><th>cost (CNY)</th><th>carbon (kg)</th><th>green</th><th>hub share</th><th>west share (deferrable)</th><th>mean wait (s)</th><th>p99 wait (s)</th><th>latency viol.</th><th>residency viol.</th><th>deadline misses</th></tr>",
    );
    for p in policies {
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.policy),
            p.jobs,
            p.placed,
            p.rejected,
            p.cost_fen as f64 / 100.0,
            p.carbon_kg,
            p.green_share,
            p.hub_share,
            p.west_share_of_deferrable,
            p.mean_wait_s,
            p.p99_wait_s,
            p.latency_violations,
            p.residency_violations,
            p.deadline_misses
        );
    }
    table.push_str("</table>");
    // the economy: who paid and who was paid, per policy (R4)
    table.push_str(
        "<h2>Money per policy</h2><p>Priced by the shipped price book; received = paid by tenants + vouchers.</p>\
         <table><tr><th>policy</th><th>tenants paid (CNY)</th><th>vouchers paid (CNY)</th><th>providers (CNY)</th>\
         <th>of which in hubs (CNY)</th><th>carriers (CNY)</th><th>platform (CNY)</th><th>voucher spend by programme</th></tr>",
    );
    for p in policies {
        let in_hubs: i64 =
            p.received_by_providers_by_hub_fen.iter().filter(|(h, _)| h.as_str() != "non-hub").map(|(_, v)| *v).sum();
        let programmes: Vec<String> = p
            .voucher_spend_by_programme_fen
            .iter()
            .map(|(k, v)| format!("{}: {:.2}", esc(k), *v as f64 / 100.0))
            .collect();
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            esc(&p.policy),
            p.paid_by_tenants_fen as f64 / 100.0,
            p.voucher_spend_fen as f64 / 100.0,
            p.received_by_providers_fen as f64 / 100.0,
            in_hubs as f64 / 100.0,
            p.received_by_carriers_fen as f64 / 100.0,
            p.received_by_platform_fen as f64 / 100.0,
            programmes.join(", ")
        );
    }
    table.push_str("</table>");
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Suanwang twin — {t}</title><style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style></head><body><h1>Suanwang digital twin</h1><p>Trace: {t}. Raw figures: <a href="twin.json">twin.json</a>.</p>{table}<h2>Targets per policy</h2><p>The seed's targets and the policy goals (hover a target for its source).</p>{targets}<h2>The frontier</h2><p>{n} policies, {sweep} of them sweep points; {pareto} Pareto-efficient over (cost, carbon, mean wait).</p><img src="frontier.svg"/><h2>Cost against carbon</h2><img src="cost-carbon.svg"/><h2>Green share over time</h2><img src="green-share.svg"/><h2>Per-hub utilisation over time</h2>{body}</body></html>"#,
        t = esc(trace),
        n = policies.len()
    );
    out.push(("index.html".into(), html));
    out
}
