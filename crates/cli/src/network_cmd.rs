//! `suanwang network` and `suanwang network latency`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use suanwang_core::network::{Place, Site};
use suanwang_core::{Family, Network};

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Energy-weighted mean green share of a set of sites (by IT power), over the year.
fn green_share(net: &Network, sites: &[&Site]) -> f64 {
    let mut w = 0.0;
    let mut g = 0.0;
    for s in sites {
        let power: f64 = s.pools.iter().map(|p| p.power_w_per_unit * p.count as f64).sum();
        let share = net.green_profile(&s.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean);
        w += power;
        g += power * share;
    }
    if w > 0.0 { g / w } else { 0.0 }
}

/// The network as JSON: one shape for the CLI and the API (`suanwang_api::NetworkDocument`).
pub fn document(net: &Network) -> suanwang_api::NetworkDocument {
    suanwang_server::wire::network(net)
}

pub fn show(net: &Network, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(&document(net))?);
        return Ok(ExitCode::SUCCESS);
    }
    let unit = &net.metric.unit;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Suanwang reference network — unified metric {} (1 {unit} = {})",
        net.metric.version, net.metric.unit_description
    );
    let _ =
        writeln!(out, "Capacity in P{unit} (= 1,000 {unit}); green share = modelled annual mean, IT-power weighted.\n");
    let _ = writeln!(
        out,
        "{:<14} {:<5} {:<28} {:>5} {:>12} {:>12} {:>10} {:>6}",
        "HUB", "SIDE", "CLUSTERS", "SITES", "GENERAL", "INTELLIGENT", "SUPER", "GREEN"
    );
    let row = |out: &mut String, id: &str, side: &str, clusters: &str, sites: &[&Site]| {
        let c = net.capacity_ucu(|s| sites.iter().any(|x| x.id == s.id));
        let _ = writeln!(
            out,
            "{:<14} {:<5} {:<28} {:>5} {:>12.1} {:>12.1} {:>10.1} {:>5.0}%",
            id,
            side,
            clusters,
            sites.len(),
            c[&Family::General] / 1000.0,
            c[&Family::Intelligent] / 1000.0,
            c[&Family::Super] / 1000.0,
            green_share(net, sites) * 100.0
        );
    };
    for h in &net.hubs {
        let sites: Vec<&Site> = net.sites.iter().filter(|s| s.hub.as_deref() == Some(h.id.as_str())).collect();
        let clusters: Vec<&str> = net.clusters.iter().filter(|c| c.hub == h.id).map(|c| c.id.as_str()).collect();
        let side = serde_json::to_value(h.side).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        row(&mut out, &h.id, &side, &clusters.join(","), &sites);
    }
    for r in &net.regions {
        let sites: Vec<&Site> = net.sites.iter().filter(|s| s.cluster.is_none() && s.region == r.id).collect();
        row(&mut out, &r.id, "green", "(non-hub region)", &sites);
    }
    let all: Vec<&Site> = net.sites.iter().collect();
    row(&mut out, "TOTAL", "", "", &all);

    let _ = writeln!(
        out,
        "\n{:<22} {:<14} {:<10} {:>5} {:>6} {:>6} {:>12} {:>12} {:>10}  POOLS",
        "SITE", "CLUSTER/REGION", "PROVINCE", "PUE", "GRID", "GREEN", "GENERAL", "INTELLIGENT", "SUPER"
    );
    for s in &net.sites {
        let c = net.capacity_ucu(|x| x.id == s.id);
        let pools: Vec<String> = s.pools.iter().map(|p| format!("{}×{}", p.count, p.model)).collect();
        let _ = writeln!(
            out,
            "{:<22} {:<14} {:<10} {:>5.2} {:>6.3} {:>5.0}% {:>12.1} {:>12.1} {:>10.1}  {}",
            s.id,
            s.cluster.as_deref().unwrap_or(&s.region),
            s.province.chars().take(10).collect::<String>(),
            s.pue,
            s.grid_factor_kg_per_kwh,
            net.green_profile(&s.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean) * 100.0,
            c[&Family::General] / 1000.0,
            c[&Family::Intelligent] / 1000.0,
            c[&Family::Super] / 1000.0,
            pools.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "\n{} cities, {} links (latency: fibre model ×{} route factor at {} km/s unless measured). `suanwang network --json` for everything.",
        net.cities.len(),
        net.links.len(),
        net.fibre.route_factor,
        net.fibre.fibre_km_per_s
    );
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub fn latency(net: &Network, from: &str, to: &str, json: bool) -> Result<ExitCode> {
    let lat = net.latency(from, to)?;
    let kind = |id: &str| net.place(id).map_or("?", Place::kind);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": from, "to": to, "from_kind": kind(from), "to_kind": kind(to),
                "one_way_ms": round(lat.one_way_ms), "tier": lat.tier,
                "great_circle_km": round(lat.great_circle_km), "measured": lat.measured,
                "model": if lat.measured { "measured".to_string() } else {
                    format!("great-circle km x {} / {} km/s", net.fibre.route_factor, net.fibre.fibre_km_per_s)
                },
            }))?
        );
    } else {
        println!(
            "{from} ({}) → {to} ({}): {:.3} ms one-way, tier {} ({:.0} km great-circle, {})",
            kind(from),
            kind(to),
            lat.one_way_ms,
            lat.tier,
            lat.great_circle_km,
            if lat.measured { "measured" } else { "fibre model" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
