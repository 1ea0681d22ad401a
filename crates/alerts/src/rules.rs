//! Rules as data: a TOML file of `[[rule]]` tables (`data/alerts/rules.toml` is the default,
//! documented there). A rule compares one indicator with a threshold; samples that hold for
//! the rule's hold time fire. A malformed file is refused whole, naming the line and the reason.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use serde::Deserialize;
use toml::Spanned;

use crate::indicators::{Indicator, indicator};

/// How bad it is: routes and pagers decide what to do with each (the `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The comparison of a rule's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `x op threshold` holds (never for a NaN sample). Equality is exact, as in
    /// PromQL: indicators compared with `==` are counts and flags.
    #[allow(clippy::float_cmp)]
    pub fn holds(self, x: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => x < threshold,
            Op::Le => x <= threshold,
            Op::Gt => x > threshold,
            Op::Ge => x >= threshold,
            Op::Eq => x == threshold,
            Op::Ne => !x.is_nan() && x != threshold,
        }
    }
}

/// One rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The alert's name (`alertname`): unique in the file, `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    pub indicator: &'static Indicator,
    /// Only samples whose labels have these values (label → value).
    pub matchers: BTreeMap<String, String>,
    pub op: Op,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires (Prometheus `for`), ms.
    pub hold_ms: i64,
    pub severity: Severity,
    /// One line, with `{label}` and `{value}` filled in per alert.
    pub summary: String,
    pub description: String,
    /// Where the threshold comes from (a policy document, a modelling choice).
    pub source: String,
}

impl Rule {
    /// The rule's condition in PromQL, over the gauge `/metrics` serves.
    pub fn expr(&self) -> String {
        let sel = if self.matchers.is_empty() {
            String::new()
        } else {
            let m: Vec<String> = self.matchers.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
            format!("{{{}}}", m.join(","))
        };
        format!("{}{sel} {} {}", self.indicator.name, self.op.as_str(), number(self.threshold))
    }

    /// Whether a sample with `labels` is this rule's to judge.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
    }
}

/// A rule file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}line {line}: {message}", origin.as_deref().map(|o| format!("{o}: ")).unwrap_or_default())]
pub struct RuleError {
    /// The file, when known.
    pub origin: Option<String>,
    /// 1-based.
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    indicator: Spanned<String>,
    #[serde(rename = "match", default)]
    matchers: Option<Spanned<BTreeMap<String, String>>>,
    when: Spanned<String>,
    #[serde(rename = "for", default)]
    hold: Option<Spanned<String>>,
    severity: Spanned<String>,
    summary: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    source: String,
}

/// Parses and checks a rule file; `origin` names it in errors.
pub fn parse(text: &str, origin: Option<&str>) -> Result<Vec<Rule>, RuleError> {
    let at = |offset: usize, message: String| RuleError {
        origin: origin.map(str::to_string),
        line: line_of(text, offset),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(offset, e.message().trim().to_string())
    })?;
    let mut out: Vec<Rule> = Vec::with_capacity(raw.rule.len());
    for r in raw.rule {
        let r = r.into_inner();
        let name = r.name.get_ref();
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(at(r.name.span().start, format!("name {name:?} must match [A-Za-z_][A-Za-z0-9_]*")));
        }
        if out.iter().any(|o| o.name == *name) {
            return Err(at(r.name.span().start, format!("a second rule named {name:?} (names are alertnames)")));
        }
        let ind = indicator(r.indicator.get_ref()).ok_or_else(|| {
            at(
                r.indicator.span().start,
                format!(
                    "no indicator {:?}; the control plane serves: {}",
                    r.indicator.get_ref(),
                    crate::INDICATORS.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let matchers = match r.matchers {
            None => BTreeMap::new(),
            Some(m) => {
                let span = m.span().start;
                let m = m.into_inner();
                if let Some(bad) = m.keys().find(|k| !ind.labels.contains(&k.as_str())) {
                    return Err(at(span, format!("{} has no label {bad:?} (labels: {:?})", ind.name, ind.labels)));
                }
                m
            }
        };
        let (op, threshold) = condition(r.when.get_ref())
            .map_err(|e| at(r.when.span().start, format!("when {:?}: {e}", r.when.get_ref())))?;
        let hold_ms = match &r.hold {
            None => 0,
            Some(h) => {
                duration_ms(h.get_ref()).map_err(|e| at(h.span().start, format!("for {:?}: {e}", h.get_ref())))?
            }
        };
        let severity = match r.severity.get_ref().as_str() {
            "critical" => Severity::Critical,
            "warning" => Severity::Warning,
            "info" => Severity::Info,
            other => {
                return Err(at(r.severity.span().start, format!("severity {other:?}: one of critical, warning, info")));
            }
        };
        for (field, text) in [("summary", r.summary.get_ref()), ("description", &r.description)] {
            check_template(text, ind).map_err(|e| at(r.summary.span().start, format!("{field}: {e}")))?;
        }
        if r.summary.get_ref().trim().is_empty() {
            return Err(at(r.summary.span().start, "summary is empty".into()));
        }
        out.push(Rule {
            name: name.clone(),
            indicator: ind,
            matchers,
            op,
            threshold,
            hold_ms,
            severity,
            summary: r.summary.into_inner(),
            description: r.description,
            source: r.source,
        });
    }
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

/// `"> 0.9"`, `"<= 1"`, `"== 0"`: an operator and a finite number.
fn condition(s: &str) -> Result<(Op, f64), String> {
    let s = s.trim();
    let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)]
        .iter()
        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (*op, r)))
        .ok_or("it must start with one of <, <=, >, >=, ==, !=")?;
    let x: f64 = rest.trim().parse().map_err(|_| format!("{:?} is not a number", rest.trim()))?;
    if !x.is_finite() {
        return Err("the threshold must be finite".into());
    }
    Ok((op, x))
}

/// A Prometheus duration (`30s`, `5m`, `1h30m`, `0s`; units ms, s, m, h, d), at most 7 days.
pub fn duration_ms(s: &str) -> Result<i64, String> {
    const MAX: i64 = 7 * 86_400_000;
    if s.is_empty() {
        return Err("empty (write 0s for none)".into());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err("a number must come before each unit (30s, 5m, 1h30m)".into());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| "the number is too large".to_string())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next() {
                Some('s') => (1_000, 1),
                Some('m') => (60_000, 1),
                Some('h') => (3_600_000, 1),
                Some('d') => (86_400_000, 1),
                _ => return Err("a unit must follow each number: ms, s, m, h or d".into()),
            }
        };
        rest = &rest[len..];
        total = n.checked_mul(unit).and_then(|x| total.checked_add(x)).filter(|t| *t <= MAX).ok_or("more than 7d")?;
    }
    Ok(total)
}

/// The duration in Prometheus's form (`1h30m`, `0s`).
pub fn duration_text(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut left = ms;
    for (unit, name) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")] {
        if left >= unit {
            let _ = write!(out, "{}{name}", left / unit);
            left %= unit;
        }
    }
    out
}

/// `{label}` placeholders must name the indicator's labels (or `value`); `{{`/`}}` are braces.
fn check_template(t: &str, ind: &Indicator) -> Result<(), String> {
    for name in placeholders(t)? {
        if name != "value" && !ind.labels.contains(&name) {
            return Err(format!("{{{name}}} is neither a label of {} ({:?}) nor value", ind.name, ind.labels));
        }
    }
    Ok(())
}

fn placeholders(t: &str) -> Result<Vec<&str>, String> {
    let mut out = vec![];
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let end = after.find('}').ok_or("a '{' is not closed")?;
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// `t` with each `{name}` replaced by `fill(name)` (an unclosed `{` is kept as it is).
fn substitute(t: &str, fill: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(t.len() + 16);
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        out.push_str(&fill(&after[..end]));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The template with its placeholders filled: labels by name, `{value}` by the sample.
pub fn render(t: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    substitute(t, |name| match name {
        "value" => number(value),
        label => labels.get(label).cloned().unwrap_or_default(),
    })
}

/// The template in Prometheus's Go templates: `{site}` → `{{ $labels.site }}`.
pub fn prometheus_template(t: &str) -> String {
    substitute(t, |name| match name {
        "value" => "{{ $value }}".to_string(),
        label => format!("{{{{ $labels.{label} }}}}"),
    })
}

/// A number as people write it: `0.9`, `3`, `1.25` (shortest form that reads back the same).
pub fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x}");
        if s.len() > 12 { format!("{x:.4}") } else { s }
    }
}

/// A string as a double-quoted YAML/PromQL literal.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {} for {}", self.name, self.severity.as_str(), self.expr(), duration_text(self.hold_ms))
    }
}
