use std::fmt::Write as _;

use super::{repo, stdout_json, suanwang};

#[test]
fn plan_json_explains_the_choice() {
    let file = repo("examples/training.toml");
    let doc = stdout_json(&suanwang(&["plan", &file, "--at", "2026-11-26T10:00:00Z", "--json"]));
    assert_eq!(doc["placed"], true);
    let p = &doc["placement"];
    for key in ["site", "pool", "start_at", "end_at", "transfer", "cost", "carbon_kg", "green_share", "scores"] {
        assert!(!p["chosen"][key].is_null(), "chosen.{key}");
    }
    let lines = p["chosen"]["scores"].as_array().expect("scores");
    assert_eq!(lines.len(), 8);
    for l in lines {
        for key in ["scorer", "raw", "normalised", "weight", "weighted"] {
            assert!(!l[key].is_null(), "score line has {key}");
        }
    }
    assert!(p["runners_up"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(
        ["network", "elastic", "bulk", "express", "none"]
            .contains(&p["chosen"]["transfer"]["mode"].as_str().expect("mode"))
    );
}

#[test]
fn plan_policies_and_weights() {
    let file = repo("examples/analytics.toml");
    let cheap =
        stdout_json(&suanwang(&["plan", &file, "--policy", "cheapest", "--at", "2026-11-26T10:00:00Z", "--json"]));
    let green =
        stdout_json(&suanwang(&["plan", &file, "--policy", "greenest", "--at", "2026-11-26T10:00:00Z", "--json"]));
    let cost = |d: &serde_json::Value| d["placement"]["chosen"]["cost"]["total_fen"].as_i64().expect("fen");
    let carbon = |d: &serde_json::Value| d["placement"]["chosen"]["carbon_kg"].as_f64().expect("kg");
    // the tie-breaking wait weight (0.01 per day of the reference cost) may trade a few fen
    // for hours: compare within 1 %
    assert!(cost(&cheap) as f64 <= cost(&green) as f64 * 1.01, "{} vs {}", cost(&cheap), cost(&green));
    assert!(carbon(&green) <= carbon(&cheap) * 1.01);

    let dir = std::env::temp_dir().join(format!("suanwang-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let w = dir.join("w.toml");
    std::fs::write(&w, "[weights]\ncarbon = 5.0\n").expect("write");
    let doc = stdout_json(&suanwang(&["plan", &file, "--weights", w.to_str().expect("utf8"), "--json"]));
    let lines = doc["placement"]["chosen"]["scores"].as_array().expect("scores").clone();
    let carbon_line = lines.iter().find(|l| l["scorer"] == "carbon").expect("carbon line");
    assert_eq!(carbon_line["weight"], 5.0);
    std::fs::write(&w, "[weights]\ncarbon = -1\n").expect("write");
    let out = suanwang(&["plan", &file, "--weights", w.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weights.carbon"));
    let out = suanwang(&["plan", &file, "--policy", "random"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_refusal_exits_1_with_a_reason_per_site() {
    let dir = std::env::temp_dir().join(format!("suanwang-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let f = dir.join("j.toml");
    std::fs::write(&f, "name = \"x\"\ntenant = \"t\"\nkind = \"inference\"\norigin = \"harbin\"\nlatency_tier = \"city\"\n[resources]\nfamily = \"intelligent\"\naccelerator = \"h800\"\ncount = 1\n[work]\nrun_time_s = 60\n").expect("write");
    let out = suanwang(&["plan", f.to_str().expect("utf8"), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["placed"], false);
    let rejections = doc["refusal"]["rejections"].as_array().expect("rejections");
    assert_eq!(rejections.len(), 49, "every site says why");
    // Harbin's own data centre is near enough but has no H800; every other site is too far
    for r in rejections {
        if r["site"] == "harbin-dc" {
            assert_eq!(r["filter"], "accelerator", "{r}");
        } else {
            assert!(r["filter"] == "latency" && r["detail"].as_str().is_some_and(|d| d.contains("ms")), "{r}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_sched_prints_the_documented_figures() {
    let doc = stdout_json(&suanwang(&["bench", "sched", "--jobs", "300", "--batch-jobs", "200", "--json"]));
    for key in ["placements_per_sec", "p50_us", "p99_us", "batch_jobs", "batch_ms", "batch_vs_greedy_cost_ratio"] {
        assert!(doc[key].as_f64().is_some(), "{key} is a number: {doc}");
    }
    assert_eq!(doc["batch_jobs"], 200);
    assert!(doc["batch_vs_greedy_cost_ratio"].as_f64().expect("ratio") <= 1.0 + 1e-9);
}

#[test]
fn bench_ledger_prints_the_documented_figures() {
    let doc = stdout_json(&suanwang(&["bench", "ledger", "--transfers", "16380", "--durable", "8190", "--json"]));
    for key in
        ["transfers_per_sec", "durable_transfers_per_sec", "indexed_transfers_per_sec", "p99_us", "memory_batch_p99_us"]
    {
        assert!(doc[key].as_f64().is_some_and(|v| v > 0.0), "{key} is a positive number: {doc}");
    }
    assert_eq!((doc["batch"].as_u64(), doc["transfers"].as_u64()), (Some(8190), Some(16380)), "every transfer applied");
}

#[test]
fn twin_json_has_the_documented_keys_and_the_report_its_files() {
    let dir = std::env::temp_dir().join(format!("suanwang-twin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let trace = dir.join("jobs.csv");
    let mut text = String::from("submit,runtime,cores,gpus\n");
    for i in 0..120 {
        let _ = writeln!(text, "{},{},{},{}", i * 60, 600 + i * 97, 4 + i % 64, i % 3);
    }
    text.push_str("9999,oops,1,0\n");
    std::fs::write(&trace, text).expect("write");
    let report = dir.join("report");
    let spec = format!("csv:{}", trace.display());
    // a compute voucher programme over the whole replay, with a small budget
    let scenario = dir.join("scenario.toml");
    std::fs::write(
        &scenario,
        "[[vouchers]]\nid = \"twin-compute\"\nkind = \"compute\"\nbudget_fen = 5000\nrate_bp = 3000\n\
         cap_per_beneficiary_fen = 5000\nvalid_from_ms = 0\nvalid_to_ms = 4102444800000\n",
    )
    .expect("scenario");
    let out = suanwang(&[
        "twin",
        "--scenario",
        scenario.to_str().expect("utf8"),
        "--trace",
        &spec,
        "--map",
        "submit=submit,duration=runtime,cpus=cores,gpus=gpus",
        "--units",
        "time=s",
        "--policy",
        "balanced,nearest",
        "--json",
        "--report",
        report.to_str().expect("utf8"),
    ]);
    let doc = stdout_json(&out);
    assert!(doc["wall_s"].as_f64().is_some() && doc["peak_rss_mib"].as_f64().is_some());
    let policies = doc["policies"].as_array().expect("policies");
    assert_eq!(policies.len(), 2);
    for p in policies {
        for key in [
            "policy",
            "jobs",
            "placed",
            "rejected",
            "latency_violations",
            "residency_violations",
            "deadline_misses",
            "cost_fen",
            "carbon_kg",
            "green_share",
            "hub_share",
            "west_share_of_deferrable",
            "mean_wait_s",
            "p99_wait_s",
            "utilization_hub",
            "utilization_nonhub",
            "hub_utilisation",
            "nonhub_utilisation",
            "hub_to_national_utilisation",
            "hub_green_share",
            "mean_slowdown",
            "deferred_beyond_start_within",
            "targets",
        ] {
            assert!(!p[key].is_null(), "{key} missing");
        }
        assert_eq!(p["jobs"], 120);
        assert_eq!(p["bad_lines"], 1);
        assert_eq!(p["deferred_beyond_start_within"], 0);
        let targets = p["targets"].as_array().expect("targets");
        for name in ["hub_to_national_utilisation", "hub_green_share", "violations", "mean_wait_s"] {
            let t = targets.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("target {name}"));
            assert!(t["value"].is_number() && t["met"].is_boolean(), "{t}");
        }
        let u = |k: &str| p[k].as_f64().expect(k);
        assert!(u("hub_utilisation") > 0.0 && u("hub_utilisation") < 1.0);
        // the economy: everything received was paid by tenants or vouchers, to the fen (R4)
        let fen = |k: &str| p[k].as_i64().unwrap_or_else(|| panic!("{k} in {p}"));
        assert!(fen("paid_by_tenants_fen") > 0);
        assert_eq!(
            fen("received_by_providers_fen") + fen("received_by_carriers_fen") + fen("received_by_platform_fen"),
            fen("paid_by_tenants_fen") + fen("voucher_spend_fen")
        );
        let by_hub: i64 = p["received_by_providers_by_hub_fen"]
            .as_object()
            .expect("by hub")
            .values()
            .map(|v| v.as_i64().expect("fen"))
            .sum();
        assert_eq!(by_hub, fen("received_by_providers_fen"));
        let spent: i64 = p["voucher_spend_by_programme_fen"]
            .as_object()
            .expect("by programme")
            .values()
            .map(|v| v.as_i64().expect("fen"))
            .sum();
        assert_eq!(spent, fen("voucher_spend_fen"));
        assert!(spent > 0 && spent <= 5_000, "the scenario's programme paid, within its budget: {spent}");
        let national = u("hub_to_national_utilisation");
        assert!(national > 0.5 && national < 3.0, "{national}");
    }
    assert!(doc["capacity_scale"].as_f64().is_some_and(|k| k > 0.0), "auto scale reported");
    for f in ["twin.json", "index.html", "echarts.min.js", "ECHARTS-LICENSE", "twin-charts.js"] {
        assert!(report.join(f).is_file(), "{f} written");
    }
    // the charts are ECharts', fed with the run's figures (drawn in a browser by the console test)
    let html = std::fs::read_to_string(report.join("index.html")).expect("index");
    for id in ["frontier", "green", "hubs-balanced"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "chart {id}");
    }
    assert!(html.contains("<script src=\"echarts.min.js\">") && !html.contains("<svg"), "no hand-drawn SVG");
    assert!(html.contains("\"policy\":\"balanced\""), "the data is in the page");
    assert!(html.contains("<script src=\"twin-charts.js\">"), "drawn by the console's chart script");
    let strict = suanwang(&[
        "twin",
        "--trace",
        &spec,
        "--map",
        "submit=submit,duration=runtime,cpus=cores",
        "--strict",
        "--json",
    ]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains(":122:"), "{}", String::from_utf8_lossy(&strict.stderr));
    let missing = suanwang(&["twin", "--trace", "philly:/nonexistent.csv"]);
    assert_eq!(missing.status.code(), Some(2));
    // a sweep replays balanced under each weighting and marks the Pareto set; bad sweeps and
    // weights files are refused naming the field
    let map = "submit=submit,duration=runtime,cpus=cores,gpus=gpus";
    let out = suanwang(&[
        "twin",
        "--trace",
        &spec,
        "--map",
        map,
        "--policy",
        "balanced",
        "--sweep",
        "money=0..2,carbon=1..1",
        "--steps",
        "3",
        "--json",
    ]);
    let doc = stdout_json(&out);
    let names: Vec<&str> =
        doc["policies"].as_array().expect("policies").iter().filter_map(|p| p["policy"].as_str()).collect();
    assert_eq!(names, ["balanced", "sweep:money=0,carbon=1", "sweep:money=1,carbon=1", "sweep:money=2,carbon=1"]);
    // pareto_efficient says exactly whether another point is no worse on all three and better on one
    let points: Vec<([f64; 3], bool)> = doc["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| {
            let f = |k: &str| p[k].as_f64().expect(k);
            ([f("cost_fen"), f("carbon_kg"), f("mean_wait_s")], p["pareto_efficient"] == true)
        })
        .collect();
    for (a, efficient) in &points {
        let dominated =
            points.iter().any(|(b, _)| b.iter().zip(a).all(|(x, y)| x <= y) && b.iter().zip(a).any(|(x, y)| x < y));
        assert_eq!(*efficient, !dominated, "{a:?}");
    }
    let w = dir.join("w.toml");
    std::fs::write(&w, "name = \"mine\"\n[weights]\nspeed = 1\n").expect("write");
    for (args, field) in [
        (vec!["--sweep", "money=3..1"], "money=3..1"),
        (vec!["--sweep", "money="], "--sweep"),
        (vec!["--sweep", "speed=0..1"], "speed"),
        (vec!["--weights", w.to_str().expect("utf8")], "weights.speed"),
    ] {
        let mut all = vec!["twin", "--trace", &spec, "--map", map, "--json"];
        all.extend(args);
        let out = suanwang(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{all:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
