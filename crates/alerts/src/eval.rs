//! Alert states with Prometheus's and Alertmanager's semantics. Each evaluation takes the
//! indicators' samples; per rule, every sample whose condition holds is an alert identified by
//! its labels (`alertname`, `severity` and the sample's). A new alert is `pending`, and `firing`
//! once its condition held for the rule's hold time (at once for a hold of 0); a pending alert
//! whose condition stops is dropped (`inactive`); a firing one is `resolved`. A resolved alert
//! that comes back is a new alert. Every change is a [`Transition`].

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::rules::{Rule, render};

/// A measured value of an indicator, with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn new(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample { labels: labels.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(), value }
    }
}

/// One evaluation's samples, by indicator name.
pub type Samples = BTreeMap<&'static str, Vec<Sample>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The condition holds, not yet for the hold time.
    Pending,
    Firing,
    /// It fired and its condition no longer holds.
    Resolved,
    /// It was pending and its condition stopped before it fired.
    Inactive,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
            State::Inactive => "inactive",
        }
    }
}

/// An alert as it is now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// 16 hex digits of a hash of the labels: the same labels, the same fingerprint.
    pub fingerprint: String,
    /// The rule's name (`alertname`).
    pub name: String,
    pub state: State,
    pub severity: String,
    /// `alertname`, `severity` and the sample's labels.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `source`, filled in.
    pub annotations: BTreeMap<String, String>,
    /// The latest value of the indicator.
    pub value: f64,
    /// When the condition started to hold (UTC, ms since the epoch).
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
}

/// A change of an alert's state: the alert after it, and the state before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub from: Option<State>,
    pub alert: Alert,
}

/// How long resolved alerts stay listed (and re-sent to an Alertmanager): Prometheus's 15 min.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// The rules and their alerts.
#[derive(Debug, Clone)]
pub struct Evaluator {
    rules: Vec<Rule>,
    /// Pending and firing alerts, by rule index and labels.
    active: BTreeMap<(usize, BTreeMap<String, String>), Alert>,
    /// Resolved alerts, oldest first, kept for [`RESOLVED_RETENTION_MS`].
    resolved: VecDeque<Alert>,
}

impl Evaluator {
    pub fn new(rules: Vec<Rule>) -> Evaluator {
        Evaluator { rules, active: BTreeMap::new(), resolved: VecDeque::new() }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Judges every rule against `samples` at `now_ms`; returns the transitions, in rule order.
    pub fn evaluate(&mut self, now_ms: i64, samples: &Samples) -> Vec<Transition> {
        let mut out = vec![];
        for (i, rule) in self.rules.iter().enumerate() {
            let mut holding: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
            for s in samples.get(rule.indicator.name).map_or(&[][..], Vec::as_slice) {
                if rule.selects(&s.labels) && rule.op.holds(s.value, rule.threshold) {
                    holding.insert(s.labels.clone(), s.value);
                }
            }
            // alerts whose condition stopped
            let stopped: Vec<_> =
                self.active.keys().filter(|(r, l)| *r == i && !holding.contains_key(l)).cloned().collect();
            for key in stopped {
                let Some(mut a) = self.active.remove(&key) else { continue };
                let from = a.state;
                if from == State::Firing {
                    a.state = State::Resolved;
                    a.resolved_at_ms = Some(now_ms);
                    self.resolved.push_back(a.clone());
                } else {
                    a.state = State::Inactive;
                }
                out.push(Transition { from: Some(from), alert: a });
            }
            // alerts whose condition holds
            for (labels, value) in holding {
                let key = (i, labels);
                match self.active.get_mut(&key) {
                    Some(a) => {
                        a.value = value;
                        a.annotations = annotations(rule, &key.1, value);
                        if a.state == State::Pending && now_ms.saturating_sub(a.active_at_ms) >= rule.hold_ms {
                            a.state = State::Firing;
                            a.fired_at_ms = Some(now_ms);
                            out.push(Transition { from: Some(State::Pending), alert: a.clone() });
                        }
                    }
                    None => {
                        let a = new_alert(rule, &key.1, value, now_ms);
                        out.push(Transition { from: None, alert: a.clone() });
                        self.active.insert(key, a);
                    }
                }
            }
        }
        while self.resolved.front().is_some_and(|a| a.resolved_at_ms.unwrap_or(0) + RESOLVED_RETENTION_MS < now_ms) {
            self.resolved.pop_front();
        }
        out
    }

    /// Firing and pending alerts (most severe first, then oldest), then the recently resolved
    /// (newest first).
    pub fn alerts(&self) -> Vec<Alert> {
        let mut live: Vec<Alert> = self.active.values().cloned().collect();
        live.sort_by(|a, b| {
            (b.state == State::Firing)
                .cmp(&(a.state == State::Firing))
                .then_with(|| severity_rank(&b.severity).cmp(&severity_rank(&a.severity)))
                .then(a.active_at_ms.cmp(&b.active_at_ms))
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        live.extend(self.resolved.iter().rev().cloned());
        live
    }

    /// Firing alerts only.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.active.values().filter(|a| a.state == State::Firing)
    }

    /// Resolved alerts still kept.
    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.resolved.iter()
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    }
}

fn annotations(rule: &Rule, labels: &BTreeMap<String, String>, value: f64) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("summary".to_string(), render(&rule.summary, labels, value));
    if !rule.description.is_empty() {
        a.insert("description".to_string(), render(&rule.description, labels, value));
    }
    if !rule.source.is_empty() {
        a.insert("source".to_string(), rule.source.clone());
    }
    a
}

fn new_alert(rule: &Rule, sample_labels: &BTreeMap<String, String>, value: f64, now_ms: i64) -> Alert {
    let mut labels = sample_labels.clone();
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    let firing = rule.hold_ms == 0;
    Alert {
        fingerprint: fingerprint(&labels),
        name: rule.name.clone(),
        state: if firing { State::Firing } else { State::Pending },
        severity: rule.severity.as_str().into(),
        annotations: annotations(rule, sample_labels, value),
        labels,
        value,
        active_at_ms: now_ms,
        fired_at_ms: firing.then_some(now_ms),
        resolved_at_ms: None,
    }
}

/// FNV-1a (64 bits) of the labels, sorted, as `name\xffvalue\xff` (the separator Prometheus
/// uses): stable across processes and versions.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
