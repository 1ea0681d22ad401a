use std::fmt::Write as _;
use std::sync::Arc;

use suanwang_core::Network;
use suanwang_sched::Policy;
use suanwang_twin::run::{PolicyKpis, RunConfig, TwinError};
use suanwang_twin::{Reader, Scenario, TraceKind, run_policy};

/// A small Philly-shaped trace: GPU jobs of every size class over a day.
fn philly_sample() -> String {
    let mut s = String::from("#job id,arrival time (sec),topology,shape,size,duration (sec)\n");
    for i in 0..300u64 {
        let size = [1, 1, 1, 2, 4, 8, 16][(i % 7) as usize];
        let duration = [120, 600, 1800, 7200, 30000, 90000][(i % 6) as usize];
        let _ = writeln!(s, "{i},{}.0,CLOS,{size},{size},{duration}.0", i * 280);
    }
    s
}

fn run(text: &str, kind: &TraceKind, policy: &str, seed: u64, repeat: u32) -> Result<PolicyKpis, TwinError> {
    let net = Arc::new(Network::reference().expect("reference"));
    let scenario = Scenario { seed, ..Scenario::default() };
    let cfg = RunConfig {
        policy: Policy::named(policy, &net.policy).expect("policy"),
        scenario,
        limit: None,
        repeat,
        strict: false,
    };
    let bytes = text.as_bytes().to_vec();
    let open = || Ok(Reader::new(std::io::Cursor::new(bytes.clone()), kind.clone(), "inline"));
    // as `suanwang twin` does: the network fitted to the trace ("auto")
    let k = suanwang_twin::capacity::capacity_scale(&net, kind, open, &cfg.scenario, None)?;
    let net = Arc::new(suanwang_twin::capacity::scaled(&net, k));
    run_policy(&net, kind, open, &cfg, &mut |_| {})
}

/// The numbers a run must reproduce exactly; a change here is a change of the model and has
/// to be explained in the commit that makes it.
fn summary(k: &PolicyKpis) -> String {
    format!(
        "jobs={} placed={} rejected={} completed={} latency_v={} residency_v={} misses={} cost_fen={} carbon_kg={:.1} green={:.3} hub={:.3} west={:.3}",
        k.jobs,
        k.placed,
        k.rejected,
        k.completed,
        k.latency_violations,
        k.residency_violations,
        k.deadline_misses,
        k.cost_fen,
        k.carbon_kg,
        k.green_share,
        k.hub_share,
        k.west_share_of_deferrable
    )
}

#[test]
fn golden_summaries_of_small_traces() {
    let balanced = run(&philly_sample(), &TraceKind::Philly, "balanced", 1, 1).expect("runs");
    let nearest = run(&philly_sample(), &TraceKind::Philly, "nearest", 1, 1).expect("runs");
    insta_like("philly-balanced", &summary(&balanced));
    insta_like("philly-nearest", &summary(&nearest));
    // the policies' invariants hold whatever the golden numbers
    for k in [&balanced, &nearest] {
        assert_eq!(k.jobs, 300);
        assert_eq!(k.placed + k.rejected, k.jobs);
        assert_eq!(k.completed + k.failed, k.placed);
        assert_eq!((k.latency_violations, k.residency_violations, k.deadline_misses), (0, 0, 0));
        assert_eq!(k.deferred_beyond_start_within, 0, "{}: no start deferred beyond start_within", k.policy);
    }
    assert!(balanced.carbon_kg < nearest.carbon_kg && balanced.cost_fen < nearest.cost_fen);
    assert!(balanced.west_share_of_deferrable > nearest.west_share_of_deferrable);
}

/// Compares with the golden file `tests/twin/golden/NAME.txt`; with `UPDATE_GOLDEN=1` writes it.
fn insta_like(name: &str, got: &str) {
    let path = format!("{}/tests/twin/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(&path).parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, format!("{got}\n")).expect("write golden");
        return;
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing golden {path}; run with UPDATE_GOLDEN=1"));
    assert_eq!(got, want.trim_end(), "golden {name} differs (UPDATE_GOLDEN=1 to accept a deliberate change)");
}

#[test]
fn the_same_seed_gives_the_same_numbers() {
    let a = run(&philly_sample(), &TraceKind::Philly, "balanced", 7, 2).expect("runs");
    let b = run(&philly_sample(), &TraceKind::Philly, "balanced", 7, 2).expect("runs");
    assert_eq!(a, b);
    assert_eq!(a.jobs, 600, "two repeats");
    let c = run(&philly_sample(), &TraceKind::Philly, "balanced", 8, 2).expect("runs");
    assert_ne!(summary(&a), summary(&c), "another seed maps the trace differently");
}

#[test]
fn malformed_lines_are_skipped_and_counted_or_stop_a_strict_run() {
    let text = format!("{}1000,broken\n", philly_sample());
    let k = run(&text, &TraceKind::Philly, "balanced", 1, 1).expect("runs");
    assert_eq!(k.bad_lines, 1);
    assert_eq!(k.first_bad_lines[0].line, 302);
    let net = Arc::new(Network::reference().expect("reference"));
    let cfg = RunConfig {
        policy: Policy::named("balanced", &net.policy).expect("policy"),
        scenario: Scenario::default(),
        limit: None,
        repeat: 1,
        strict: true,
    };
    let bytes = text.into_bytes();
    let open = || Ok(Reader::new(std::io::Cursor::new(bytes.clone()), TraceKind::Philly, "inline.csv"));
    let err = run_policy(&net, &TraceKind::Philly, open, &cfg, &mut |_| {}).expect_err("strict stops");
    assert_eq!(err.to_string(), "inline.csv:302: expected 6 columns, found 2");
}

#[test]
fn scenarios_are_checked() {
    assert!(Scenario::from_toml("capacity_scale = 0.1\nseed = 3\n").is_ok());
    for bad in [
        "capacity_scale = -1",
        "deadline_share = 2.0",
        "colour = 1",
        "start = \"yesterday\"",
        "input_gb = [[1.0, 0.5]]",
    ] {
        assert!(Scenario::from_toml(bad).is_err(), "{bad}");
    }
    // the load: auto or a factor, a target, a background by kind of site with a day's shape
    assert!(Scenario::from_toml("capacity_scale = \"auto\"\ntarget_utilisation = 0.7\n").is_ok());
    for (bad, field) in [
        ("capacity_scale = \"big\"", "capacity_scale"),
        ("capacity_scale = 0", "capacity_scale"),
        ("target_utilisation = 1.5", "target_utilisation"),
        ("[background]\nhub = 1.2", "background.hub"),
        (
            "[background]\nshape = [2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.5]",
            "background.shape",
        ),
    ] {
        let e = Scenario::from_toml(bad).expect_err(bad);
        assert!(e.contains(field), "{bad}: {e}");
    }
    // the users' own start_within: a share and a factor range, each named when wrong
    assert!(Scenario::from_toml("start_within_share = 0.5\nstart_within_factor = [0.5, 1.5]\n").is_ok());
    for (bad, field) in [
        ("start_within_share = 1.5", "start_within_share"),
        ("start_within_factor = [3.0, 1.0]", "start_within_factor"),
    ] {
        let e = Scenario::from_toml(bad).expect_err(bad);
        assert!(e.starts_with(field), "{bad}: {e}");
    }
}

/// The twin runs the market (issue 16 item 8): the same completed work at posted prices and by
/// call auctions, side by side, with the auction's properties holding on the aggregate.
#[test]
fn the_twin_prices_its_work_posted_and_by_auction() {
    let k = run(&philly_sample(), &TraceKind::Philly, "balanced", 1, 1).expect("runs");
    let pricings: Vec<&str> = k.market.iter().map(|m| m.pricing).collect();
    assert_eq!(pricings, ["posted", "auction"]);
    for m in &k.market {
        assert!(m.products > 0 && m.unit_hours_offered > 0.0, "{m:?}");
        assert!(m.unit_hours_matched <= m.unit_hours_demanded + 1e-6, "{m:?}");
        assert!(
            (m.unit_hours_matched + m.unmatched_unit_hours - m.unit_hours_demanded).abs() < 1e-6,
            "every unit·hour demanded is matched or not: {m:?}"
        );
        assert!(m.unit_hours_matched <= m.unit_hours_offered + 1e-6, "no more sold than offered: {m:?}");
        assert_eq!(m.tenants_cost_fen, m.providers_revenue_fen, "budget balanced: {m:?}");
        assert!((0.0..=1.0).contains(&m.utilisation), "{m:?}");
    }
    let auction = &k.market[1];
    // individually rational: every trade is at or below the bid's value and at or above the
    // ask's cost, so the welfare of what traded is not negative
    assert!(auction.welfare_fen >= 0, "{auction:?}");
    assert!(auction.unit_hours_matched > 0.0, "{auction:?}");
    let posted = &k.market[0];
    assert!((posted.unit_hours_demanded - auction.unit_hours_demanded).abs() < 1e-9, "the same demand");
}
