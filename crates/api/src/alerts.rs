//! Early warning on the wire (R7): alerts as `GET /v1/alerts` lists them, and the events of
//! `GET /v1/events` (server-sent events).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An alert's state, with Prometheus's and Alertmanager's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Its condition holds, not yet for the rule's hold time.
    Pending,
    Firing,
    /// It fired and its condition no longer holds (listed for 15 minutes).
    Resolved,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertView {
    /// 16 hex digits of a hash of the labels: the same labels, the same fingerprint.
    pub fingerprint: String,
    /// The rule's name (`alertname`).
    pub name: String,
    pub state: AlertState,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// `alertname`, `severity` and the indicator's labels (`site`, `hub`, `tenant`, …).
    pub labels: BTreeMap<String, String>,
    /// `summary`, and where the rule has them `description` and `source`.
    pub annotations: BTreeMap<String, String>,
    /// The indicator's latest value (absent when not finite).
    pub value: Option<f64>,
    /// When its condition started to hold, epoch ms UTC.
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
}

/// `GET /v1/alerts`: firing alerts first (most severe, then oldest), then pending, then those
/// resolved in the last 15 minutes (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
    /// When the rules were last judged, epoch ms UTC (0: not yet).
    pub evaluated_at_ms: i64,
    /// How many rules are judged.
    pub rules: usize,
}

/// The `data` of one event of `GET /v1/events`: an entry of the evidence log as it became
/// durable, with its record (the caller sees only events whose records it may open). The
/// event's `id` is the entry's index: send it back as `Last-Event-ID` to resume after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamEvent {
    /// The entry's index in the evidence log.
    pub id: u64,
    /// `job` (a job's commands, events and transfers of one commit), `alert`, `ledger`,
    /// `site_down`, `register`, `token_created`, …
    pub kind: String,
    pub at_ms: i64,
    pub job: Option<u64>,
    pub tenant: Option<String>,
    /// `site/…`, `dataset/…`, `alert/…`, `principal/…`.
    pub subject: Option<String>,
    /// The record the entry commits to.
    pub record: serde_json::Value,
}
