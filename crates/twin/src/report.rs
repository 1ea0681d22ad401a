//! `--report DIR`: the run's JSON and an index.html whose charts are drawn by Apache ECharts —
//! the library the web console uses, copied next to it (`echarts.min.js`, with its licence), so
//! the report opens offline from the directory: axes with ticks and units, legends that do not
//! overlap (scrolling when long), the cost–carbon–wait frontier with the Pareto set marked.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::run::PolicyKpis;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The charts' data: per policy the fields of twin.json the shared chart script draws.
fn chart_data(policies: &[PolicyKpis]) -> Value {
    json!(
        policies
            .iter()
            .map(|p| json!({
                "policy": p.policy,
                "cost_fen": p.cost_fen,
                "carbon_kg": p.carbon_kg,
                "mean_wait_s": p.mean_wait_s,
                "pareto_efficient": p.pareto_efficient,
                "daily_green_share": p.daily_green_share,
                "daily_hub_utilization": p.daily_hub_utilization,
            }))
            .collect::<Vec<_>>()
    )
}

/// Draws the page's charts with the shared script (`twin-charts.js`).
const DRAW_JS: &str = r"drawTwin(DATA, (kind, policy) => document.getElementById(policy ? `hubs-${policy}` : kind), (el) => echarts.init(el));";

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

/// The charting scripts a report's page uses, written beside it.
#[derive(Debug, Clone, Copy)]
pub struct Scripts<'a> {
    /// Apache ECharts (`echarts.min.js`) and its licence.
    pub echarts: &'a str,
    pub licence: &'a str,
    /// The twin's charts (`twin-charts.js`), the same script the web console draws them with.
    pub charts: &'a str,
}

/// The files of a report: (name, contents).
pub fn files(json: &str, trace: &str, policies: &[PolicyKpis], scripts: Scripts<'_>) -> Vec<(String, String)> {
    let mut out = vec![
        ("twin.json".to_string(), json.to_string()),
        ("echarts.min.js".to_string(), scripts.echarts.to_string()),
        ("ECHARTS-LICENSE".to_string(), scripts.licence.to_string()),
        ("twin-charts.js".to_string(), scripts.charts.to_string()),
    ];
    let mut body = String::new();
    for p in policies.iter().filter(|p| !p.policy.starts_with("sweep:")) {
        let _ = write!(body, r#"<h3>{}</h3><div class="chart" id="hubs-{}"></div>"#, esc(&p.policy), esc(&p.policy));
    }
    // `</` cannot end the script early
    let data = chart_data(policies).to_string().replace("</", "<\\/");
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
    // the market: the same work at posted prices and by call auctions (issue 16 item 8)
    table.push_str(
        "<h2>Market per policy and pricing</h2><p>The completed work priced at posted prices and by \
         uniform-price call auctions (a site's day of a family per product; asks at cost to list \
         price by utilisation, bids at each job's value — modelled). Welfare: bidders' value less \
         sellers' cost over what traded.</p><table><tr><th>policy</th><th>pricing</th>\
         <th>utilisation</th><th>matched (unit·h)</th><th>unmatched (unit·h)</th><th>unmatched jobs</th>\
         <th>tenants paid (CNY)</th><th>providers got (CNY)</th><th>mean price (CNY/unit·h)</th>\
         <th>welfare (CNY)</th></tr>",
    );
    for p in policies {
        for m in &p.market {
            let _ = write!(
                table,
                "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{:.2}</td>\
                 <td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                esc(&p.policy),
                m.pricing,
                m.utilisation,
                m.unit_hours_matched,
                m.unmatched_unit_hours,
                m.unmatched_jobs,
                m.tenants_cost_fen as f64 / 100.0,
                m.providers_revenue_fen as f64 / 100.0,
                m.mean_price_fen / 100.0,
                m.welfare_fen as f64 / 100.0
            );
        }
    }
    table.push_str("</table>");
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Suanwang twin — {t}</title><style>body{{font-family:system-ui,sans-serif;margin:2em}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}.chart{{width:100%;max-width:1100px;height:420px}}</style><script src="echarts.min.js"></script><script src="twin-charts.js"></script></head><body><h1>Suanwang digital twin</h1><p>Trace: {t}. Raw figures: <a href="twin.json">twin.json</a>. Charts: Apache ECharts (<a href="ECHARTS-LICENSE">licence</a>).</p>{table}<h2>Targets per policy</h2><p>The seed's targets and the policy goals (hover a target for its source).</p>{targets}<h2>The frontier</h2><p>{n} policies, {sweep} of them sweep points; {pareto} Pareto-efficient over (cost, carbon, mean wait), ringed; a marker's size is its mean wait.</p><div class="chart" id="frontier"></div><h2>Green share of energy used, per day</h2><div class="chart" id="green"></div><h2>Per-hub utilisation per day</h2>{body}<script>const DATA = {data};</script><script>{DRAW_JS}</script></body></html>"#,
        t = esc(trace),
        n = policies.len()
    );
    out.push(("index.html".into(), html));
    out
}
