//! The network on the wire: `GET /v1/network` (and `suanwang network --json`) and
//! `GET /v1/sites`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::{Arch, Family};

/// Capacity per family, ucu (1 TFLOPS FP32-equivalent peak).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    pub general: f64,
    pub intelligent: f64,
    #[serde(rename = "super")]
    pub super_: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    East,
    West,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Core,
    Accelerator,
    Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// Between clusters / green regions.
    Backbone,
    /// From a demand city to a cluster / green region.
    Access,
}

/// The latency tier a one-way latency falls in: city ≤ 1 ms, regional ≤ 5 ms, cross-hub
/// ≤ 20 ms, else beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    City,
    Regional,
    CrossHub,
    Beyond,
}

/// Peak rates of one unit per precision, TFLOPS (TOPS for int8); absent = not rated.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Peaks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp64: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp16: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<f64>,
}

/// The unified metric's version and unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Metric {
    pub version: String,
    pub unit: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Totals {
    pub capacity_ucu: Capacity,
    /// The part of it in the 8 hubs.
    pub hub_capacity_ucu: Capacity,
    pub sites: u64,
    pub pools: u64,
}

/// A hub node of 东数西算.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hub {
    pub id: String,
    pub name_cn: String,
    pub name_en: String,
    pub side: Side,
    /// Its cluster ids.
    pub clusters: Vec<String>,
    /// How many sites it has.
    pub sites: u64,
    pub capacity_ucu: Capacity,
    /// Power-weighted mean green share of its sites, 0–1.
    pub green_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cluster {
    pub id: String,
    pub hub: String,
    pub name_cn: String,
    pub name_en: String,
    pub province_cn: String,
    pub lat: f64,
    pub lon: f64,
    pub source: String,
}

/// A non-hub green region (Qinghai, Yunnan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Region {
    pub id: String,
    pub name_cn: String,
    pub name_en: String,
    pub province: String,
    pub lat: f64,
    pub lon: f64,
    pub source: String,
}

/// A demand city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct City {
    pub id: String,
    pub name_cn: String,
    pub province: String,
    /// The hub whose area contains the city, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub source: String,
}

/// A resource pool: `count` identical units of one device model at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pool {
    pub id: String,
    pub family: Family,
    pub model: String,
    pub unit: Unit,
    pub count: u64,
    pub arch: Arch,
    /// Accelerator software stack (`cuda`, `cann`), for intelligent pools.
    pub accelerator_kind: Option<String>,
    pub memory_gib_per_unit: u32,
    pub power_w_per_unit: f64,
    pub price_fen_per_unit_hour: i64,
    pub peak_per_unit: Peaks,
    pub ucu_per_unit: f64,
    pub capacity_ucu: f64,
}

/// A site: a data centre (or an agent's machine) with its pools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Site {
    pub id: String,
    pub name_cn: String,
    pub cluster: Option<String>,
    pub hub: Option<String>,
    /// The residency region: the hub id, or the green region id.
    pub region: String,
    /// The paired disaster-recovery site that takes this site's jobs first when it is lost.
    pub backup: Option<String>,
    pub side: Side,
    pub province: String,
    pub lat: f64,
    pub lon: f64,
    pub racks: u64,
    pub pue: f64,
    pub grid_factor_kg_per_kwh: f64,
    pub green_share: f64,
    pub tariff_mean_fen_per_mwh: f64,
    pub capacity_ucu: Capacity,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub kind: LinkKind,
    pub bandwidth_gbps: f64,
    pub price_fen_per_gb: i64,
    pub available: bool,
    pub one_way_ms: Option<f64>,
    pub tier: Option<Tier>,
    /// Whether `one_way_ms` was measured (else the fibre model).
    pub measured: bool,
}

/// A demand city paired (结对子) with a hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pairing {
    pub city: String,
    pub hub: String,
}

/// The whole network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkDocument {
    pub metric: Metric,
    pub totals: Totals,
    pub hubs: Vec<Hub>,
    pub clusters: Vec<Cluster>,
    pub regions: Vec<Region>,
    pub cities: Vec<City>,
    pub sites: Vec<Site>,
    pub links: Vec<Link>,
    pub pairings: Vec<Pairing>,
}

/// Whether a site takes placements: agents' sites of providers wait for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    Approved,
    Pending,
}

impl Approval {
    pub fn of(approved: bool) -> Approval {
        if approved { Approval::Approved } else { Approval::Pending }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Approved => "approved",
            Approval::Pending => "pending",
        }
    }
}

/// A site as `GET /v1/sites` shows it: the network's view plus its approval and, for agents'
/// sites, who owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteStatus {
    #[serde(flatten)]
    pub site: Site,
    pub approval: Approval,
    /// The principal that owns an agent's site (absent for the reference network's sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Its role (`operator`, `provider`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_role: Option<String>,
}

/// `GET /v1/sites`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteList {
    pub sites: Vec<SiteStatus>,
}
