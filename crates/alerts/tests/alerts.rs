//! Rules as data, alert states and anomaly scores (issue 15 item 1).
#![allow(clippy::float_cmp)] // values pass through unchanged: exact comparison is the point

use proptest::prelude::*;
use suanwang_alerts::ewma::Ewma;
use suanwang_alerts::rules::{duration_ms, duration_text, parse};
use suanwang_alerts::{Evaluator, INDICATORS, Sample, Samples, State, default_rules, prom};

fn samples(name: &'static str, list: &[(&str, f64)]) -> Samples {
    let mut s = Samples::new();
    s.insert(name, list.iter().map(|(site, v)| Sample::new(&[("site", site)], *v)).collect());
    s
}

const ONE: &str = r#"
[[rule]]
name = "Hot"
indicator = "suanwang_site_utilization"
when = "> 0.9"
for = "10s"
severity = "warning"
summary = "{site} at {value}"
"#;

#[test]
fn the_default_rules_parse_and_use_every_kind_of_indicator_the_issue_names() {
    let rules = default_rules().expect("data/alerts/rules.toml");
    assert!(rules.len() >= 15, "{}", rules.len());
    // every indicator is used by at least one default rule, except the raw transfer volume
    // (its anomaly score is) and the raw utilisations (their ratio is)
    for i in INDICATORS {
        let used = rules.iter().any(|r| r.indicator.name == i.name);
        assert!(
            used || ["suanwang_link_transfer_bytes", "suanwang_hub_utilization", "suanwang_network_utilization"]
                .contains(&i.name),
            "{} unused",
            i.name
        );
    }
    for r in &rules {
        assert!(!r.source.is_empty(), "{} says where its threshold comes from", r.name);
    }
}

#[test]
fn malformed_rule_files_are_refused_naming_the_line_and_the_reason() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_nope\"\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"x\"\n",
            3,
            "no indicator",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"≥ 1\"\nseverity = \"info\"\nsummary = \"x\"\n",
            4,
            "must start with",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> x\"\nseverity = \"info\"\nsummary = \"x\"\n",
            4,
            "not a number",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nfor = \"5 minutes\"\nseverity = \"info\"\nsummary = \"x\"\n",
            5,
            "unit",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"loud\"\nsummary = \"x\"\n",
            5,
            "severity",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nmatch = { hub = \"x\" }\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"x\"\n",
            4,
            "no label \"hub\"",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"{hub} down\"\n",
            6,
            "{hub}",
        ),
        (
            "[[rule]]\nname = \"A-b\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"x\"\n",
            2,
            "must match",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"x\"\nloud = true\n",
            7,
            "unknown field",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"info\"\n",
            1,
            "summary",
        ),
        (
            "[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"x\"\n\n[[rule]]\nname = \"A\"\nindicator = \"suanwang_site_up\"\nwhen = \"> 1\"\nseverity = \"info\"\nsummary = \"x\"\n",
            9,
            "second rule",
        ),
        ("[[rule]\nname = \"A\"\n", 1, ""),
    ];
    for (text, line, reason) in cases {
        let e = parse(text, Some("r.toml")).expect_err(text);
        assert_eq!(e.line, *line, "{text}\n→ {e}");
        assert!(e.message.contains(reason), "{text}\n→ {e}");
        assert!(e.to_string().starts_with(&format!("r.toml: line {line}: ")), "{e}");
    }
}

#[test]
fn durations_read_and_write_as_prometheus_does() {
    for (text, ms) in
        [("0s", 0), ("30s", 30_000), ("5m", 300_000), ("1h30m", 5_400_000), ("250ms", 250), ("1d", 86_400_000)]
    {
        assert_eq!(duration_ms(text), Ok(ms), "{text}");
        assert_eq!(duration_ms(&duration_text(ms)), Ok(ms), "{text}");
    }
    for bad in ["", "5", "m", "-1s", "8d", "1.5h", "1y"] {
        assert!(duration_ms(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_alert_is_pending_then_firing_after_its_hold_then_resolved() {
    let mut ev = Evaluator::new(parse(ONE, None).expect("rule"));
    let t = ev.evaluate(0, &samples("suanwang_site_utilization", &[("a", 0.95), ("b", 0.5)]));
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].from, t[0].alert.state), (None, State::Pending));
    assert_eq!(t[0].alert.labels["site"], "a");
    assert_eq!(t[0].alert.labels["alertname"], "Hot");
    assert_eq!(t[0].alert.annotations["summary"], "a at 0.95");
    assert!(
        ev.evaluate(9_999, &samples("suanwang_site_utilization", &[("a", 0.97)])).is_empty(),
        "held 9.999 s < 10 s"
    );
    let t = ev.evaluate(10_000, &samples("suanwang_site_utilization", &[("a", 0.96)]));
    assert_eq!(
        (t[0].from, t[0].alert.state, t[0].alert.fired_at_ms),
        (Some(State::Pending), State::Firing, Some(10_000))
    );
    assert_eq!(t[0].alert.value, 0.96);
    assert_eq!(ev.firing().count(), 1);
    // the condition stops: resolved, listed for 15 minutes
    let t = ev.evaluate(11_000, &samples("suanwang_site_utilization", &[("a", 0.5)]));
    assert_eq!(
        (t[0].from, t[0].alert.state, t[0].alert.resolved_at_ms),
        (Some(State::Firing), State::Resolved, Some(11_000))
    );
    assert_eq!(ev.alerts().len(), 1);
    assert!(ev.evaluate(11_000 + 15 * 60_000, &Samples::new()).is_empty());
    assert_eq!(ev.alerts().len(), 1, "still kept at exactly 15 min");
    ev.evaluate(11_001 + 15 * 60_000, &Samples::new());
    assert!(ev.alerts().is_empty(), "dropped after 15 min");
    // it comes back: a new alert, pending again, with a new start
    let t = ev.evaluate(2_000_000, &samples("suanwang_site_utilization", &[("a", 0.99)]));
    assert_eq!((t[0].from, t[0].alert.state, t[0].alert.active_at_ms), (None, State::Pending, 2_000_000));
}

#[test]
fn a_pending_alert_whose_condition_stops_is_dropped_and_a_zero_hold_fires_at_once() {
    let mut ev = Evaluator::new(parse(ONE, None).expect("rule"));
    ev.evaluate(0, &samples("suanwang_site_utilization", &[("a", 0.95)]));
    let t = ev.evaluate(5_000, &samples("suanwang_site_utilization", &[("a", 0.9)]));
    assert_eq!((t[0].from, t[0].alert.state), (Some(State::Pending), State::Inactive));
    assert!(ev.alerts().is_empty(), "an inactive alert is not kept");
    let mut ev = Evaluator::new(parse(&ONE.replace("10s", "0s"), None).expect("rule"));
    let t = ev.evaluate(7, &samples("suanwang_site_utilization", &[("a", 0.95)]));
    assert_eq!((t[0].from, t[0].alert.state, t[0].alert.fired_at_ms), (None, State::Firing, Some(7)));
}

#[test]
fn matchers_select_samples_by_label() {
    let rules = default_rules().expect("rules");
    let mut ev = Evaluator::new(rules);
    let mut s = Samples::new();
    s.insert(
        "suanwang_site_pue",
        vec![
            Sample::new(&[("site", "w"), ("side", "west")], 1.22),
            Sample::new(&[("site", "e"), ("side", "east")], 1.22),
            Sample::new(&[("site", "n"), ("side", "none")], 1.29),
        ],
    );
    let t = ev.evaluate(0, &s);
    let names: Vec<(&str, &str)> = t.iter().map(|t| (t.alert.name.as_str(), t.alert.labels["site"].as_str())).collect();
    assert_eq!(names, [("SitePueAboveTargetWest", "w")], "1.22 is above the west's 1.2 only");
}

#[test]
fn the_prometheus_rules_file_carries_every_rule() {
    let rules = default_rules().expect("rules");
    let text = prom::rules_file(&rules, "15s", "data/alerts/rules.toml");
    for r in &rules {
        assert!(text.contains(&format!("- alert: {}\n", r.name)), "{}", r.name);
    }
    assert!(text.contains("expr: \"suanwang_site_pue{side=\\\"west\\\"} > 1.2\""), "{text}");
    assert!(text.contains("{{ $labels.site }}"), "{text}");
    assert!(text.contains("for: 10m"), "{text}");
}

#[test]
fn ewma_scores_a_jump_against_a_steady_history_and_nothing_during_warmup() {
    let mut e = Ewma::new(60_000, 0.01, 30);
    for i in 0..29 {
        assert_eq!(e.update(0.5, i * 1_000), 0.0, "warm-up");
    }
    for i in 29..200 {
        let z = e.update(0.5 + if i % 2 == 0 { 0.001 } else { -0.001 }, i * 1_000);
        assert!(z.abs() < 1.0, "noise scores small: {z}");
    }
    let z = e.update(0.9, 200_000);
    assert!(z > 10.0, "a jump from 0.5 to 0.9 scores high: {z}");
    assert_eq!(e.update(f64::NAN, 201_000), 0.0);
}

proptest! {
    /// An alert fires only after its condition held at every evaluation for the hold time, and
    /// every transition is one Prometheus allows.
    #[test]
    fn alerts_fire_only_after_holding_and_move_by_allowed_steps(values in proptest::collection::vec(0.0f64..1.0, 1..80), step in 1i64..5_000) {
        let mut ev = Evaluator::new(parse(ONE, None).expect("rule"));
        let mut held_since: Option<i64> = None;
        for (i, v) in values.iter().enumerate() {
            let now = i as i64 * step;
            let t = ev.evaluate(now, &samples("suanwang_site_utilization", &[("a", *v)]));
            if *v > 0.9 { held_since.get_or_insert(now); } else { held_since = None; }
            for tr in &t {
                let ok = matches!(
                    (tr.from, tr.alert.state),
                    (None, State::Pending) | (Some(State::Pending), State::Firing | State::Inactive) | (Some(State::Firing), State::Resolved)
                );
                prop_assert!(ok, "{:?} → {:?}", tr.from, tr.alert.state);
                if tr.alert.state == State::Firing {
                    let since = held_since.expect("firing while the condition holds");
                    prop_assert!(now - since >= 10_000);
                    prop_assert_eq!(tr.alert.active_at_ms, since);
                }
            }
            let firing = ev.firing().count();
            prop_assert!(firing <= 1);
            if firing == 1 { prop_assert!(held_since.is_some_and(|s| now - s >= 10_000)); }
        }
    }
}
