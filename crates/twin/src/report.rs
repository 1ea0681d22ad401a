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

/// A line chart of several series (values `0..=y_max`) over days.
pub fn line_chart(title: &str, y_label: &str, series: &[(String, Vec<f64>)], y_max: f64) -> String {
    let days = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(2);
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (days - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v / y_max).clamp(0.0, 1.0);
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
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{PAD}" y="20" font-size="14">cost (CNY) against carbon (kg, market-based) per policy</text>"#
    );
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="#444"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="#444"/>"##,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
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

/// The files of a report: (name, contents).
pub fn files(json: &str, trace: &str, policies: &[PolicyKpis]) -> Vec<(String, String)> {
    let mut out = vec![("twin.json".to_string(), json.to_string())];
    let mut body = String::new();
    for p in policies {
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
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Suanwang twin — {t}</title><style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style></head><body><h1>Suanwang digital twin</h1><p>Trace: {t}. Raw figures: <a href="twin.json">twin.json</a>.</p>{table}<h2>Cost against carbon</h2><img src="cost-carbon.svg"/><h2>Green share over time</h2><img src="green-share.svg"/><h2>Per-hub utilisation over time</h2>{body}</body></html>"#,
        t = esc(trace)
    );
    out.push(("index.html".into(), html));
    out
}
