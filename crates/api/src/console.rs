//! What the web console reads besides the rest of the API: the map's operator-supplied
//! borders, and the digital twin's reports.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /v1/map`: administrative borders for the national map, from an approved map (审图号)
/// the operator supplied with `--map-borders FILE --map-approval NUMBER`. Without one the
/// console draws a schematic (sites at their coordinates, no borders) and `lines` is empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MapLayer {
    /// The map's approval number (e.g. `GS(2024)0650号`), shown under the map.
    pub approval: Option<String>,
    /// The file the borders came from (its name only).
    pub source: Option<String>,
    /// Polylines of [longitude, latitude] points (degrees, WGS 84 as the file gives them):
    /// every ring of its polygons and every line string.
    pub lines: Vec<Vec<[f64; 2]>>,
    /// Points in all lines.
    pub points: u64,
}

/// `GET /v1/twin/reports`: the twin's reports in the server's `--twin-reports DIR` (each a
/// directory that `suanwang twin --report DIR/NAME` wrote), newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinReportList {
    pub reports: Vec<TwinReportSummary>,
    /// Directories that hold no readable report, with the reason.
    pub unreadable: Vec<TwinReportProblem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinReportSummary {
    /// The directory's name: `GET /v1/twin/reports/{name}`.
    pub name: String,
    pub trace: String,
    pub policies: u64,
    /// When its twin.json was written, ms since the epoch.
    pub modified_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TwinReportProblem {
    pub name: String,
    pub reason: String,
}

/// `GET /v1/twin/reports/{name}`: the figures of a report's twin.json that its charts draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinReport {
    pub name: String,
    pub trace: String,
    pub capacity_scale: f64,
    pub policies: Vec<TwinPolicy>,
}

/// One policy's run (or a sweep point, `sweep:…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinPolicy {
    pub policy: String,
    pub jobs: u64,
    pub cost_fen: i64,
    /// Market-based kg CO2.
    pub carbon_kg: f64,
    pub mean_wait_s: f64,
    pub p99_wait_s: f64,
    pub green_share: f64,
    pub hub_share: f64,
    /// Not dominated over (cost, carbon, mean wait) by another policy of the run.
    pub pareto_efficient: bool,
    #[serde(default)]
    pub targets: Vec<TwinTarget>,
    /// Per day: green share of the energy used.
    #[serde(default)]
    pub daily_green_share: Vec<f64>,
    /// Per hub, per day: utilisation.
    #[serde(default)]
    pub daily_hub_utilization: BTreeMap<String, Vec<f64>>,
}

/// A target of the seed or the policy, judged for one policy's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwinTarget {
    pub name: String,
    pub value: f64,
    pub limit: f64,
    /// `at_most` or `at_least`.
    pub bound: String,
    /// `null` when this run cannot judge it.
    pub met: Option<bool>,
    pub source: String,
}
