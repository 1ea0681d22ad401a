//! The rules as a Prometheus rules file (YAML), over the gauges `/metrics` serves: for users
//! who run Prometheus and Alertmanager themselves. Strings are written as double-quoted YAML
//! scalars (JSON string syntax, which YAML reads the same).

use std::fmt::Write as _;

use crate::rules::{Rule, duration_text, prometheus_template, quote};

/// The rules file: one group, `suanwang`, evaluated every `interval` (`15s`, `1m`).
pub fn rules_file(rules: &[Rule], interval: &str, origin: &str) -> String {
    let mut out = format!(
        "# Suanwang's early-warning rules over its /metrics, from {origin}\n\
         # (written by `suanwang alerts rules --prometheus`; check with `promtool check rules`)\n\
         groups:\n  - name: suanwang\n    interval: {interval}\n    rules:\n"
    );
    for r in rules {
        let _ = writeln!(out, "      - alert: {}", r.name);
        let _ = writeln!(out, "        expr: {}", quote(&r.expr()));
        let _ = writeln!(out, "        for: {}", duration_text(r.hold_ms));
        let _ = writeln!(out, "        labels:\n          severity: {}", r.severity.as_str());
        out.push_str("        annotations:\n");
        let _ = writeln!(out, "          summary: {}", quote(&prometheus_template(&r.summary)));
        if !r.description.is_empty() {
            let _ = writeln!(out, "          description: {}", quote(&prometheus_template(&r.description)));
        }
        if !r.source.is_empty() {
            let _ = writeln!(out, "          source: {}", quote(&r.source));
        }
    }
    out
}
