//! The national computing power network as data (R1, R2): hubs, clusters, green regions,
//! demand cities, sites with pools, links, pairings, device models and energy facts.
//!
//! Loading parses text (embedded reference data or files a caller read) and checks the whole
//! network for consistency, reporting every problem found with its file and field path.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::energy::{GreenProfile, Season, Tariff};
use crate::geo::{FibreModel, LatLon, LatencyTier};
use crate::ident::id_problem;
use crate::metric::{ConversionTable, Family, Peaks};

/// East (demand) or west (supply) side of "East Data, West Computing".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    East,
    West,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    pub id: String,
    pub name_cn: String,
    pub name_en: String,
    pub side: Side,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// A non-hub green region (e.g. Qinghai, Yunnan).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub id: String,
    pub name_cn: String,
    pub name_en: String,
    pub province: String,
    pub lat: f64,
    pub lon: f64,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub id: String,
    pub name_cn: String,
    pub province: String,
    /// The hub whose area contains the city, if any (residency and pairing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub source: String,
}

/// How a pool counts its units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Core,
    Accelerator,
    Node,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub id: String,
    pub family: Family,
    pub model: String,
    pub unit: Unit,
    pub count: u64,
    pub memory_gib_per_unit: u32,
    pub power_w_per_unit: f64,
    pub price_fen_per_unit_hour: i64,
}

/// A resource pool: `count` identical units of one device model at one site.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub id: String,
    pub site: String,
    pub family: Family,
    pub model: String,
    pub unit: Unit,
    pub count: u64,
    pub memory_gib_per_unit: u32,
    pub power_w_per_unit: f64,
    /// Non-energy price; energy is billed at the site's tariff.
    pub price_fen_per_unit_hour: i64,
    pub arch: Arch,
    /// Accelerator software stack (`cuda`, `cann`), for intelligent pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator_kind: Option<String>,
    /// Native peaks of one unit.
    pub peak_per_unit: Peaks,
    /// Unified value of one unit, in the metric's unit.
    pub ucu_per_unit: f64,
}

impl Pool {
    pub fn capacity_ucu(&self) -> f64 {
        self.ucu_per_unit * self.count as f64
    }
}

/// Instruction-set architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    id: String,
    name_cn: String,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    region: Option<String>,
    /// A city data centre outside the hubs: the demand city it serves.
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    backup: Option<String>,
    province: String,
    lat: f64,
    lon: f64,
    coord_source: String,
    racks: u64,
    pue: f64,
    tariff: String,
    green_profile: String,
    #[serde(default)]
    pool: Vec<PoolFile>,
}

/// A machine an agent connects as a site (see `Network::with_agent_site`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSite {
    pub id: String,
    /// The demand city it stands in.
    pub city: String,
    pub pue: f64,
    pub pools: Vec<AgentPool>,
}

/// A pool an agent declares: cores of a CPU model in `devices.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPool {
    /// Pool name within the site (`cpu`).
    pub name: String,
    pub model: String,
    pub count: u64,
    pub memory_gib_per_unit: u32,
    pub power_w_per_unit: f64,
    pub price_fen_per_unit_hour: i64,
}

/// A site (data centre) in a cluster or a green region.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: String,
    pub name_cn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The hub (via the cluster), if the site is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// The residency region: the hub id, or the green region id; for a city data centre the
    /// city's hub, else the city id.
    pub region: String,
    /// For a city data centre outside the hubs: the demand city it stands in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// The paired disaster-recovery site that takes this site's jobs first when it is lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub side: Side,
    pub province: String,
    pub lat: f64,
    pub lon: f64,
    pub coord_source: String,
    pub racks: u64,
    pub pue: f64,
    /// 2022 provincial grid factor, kg CO2 per kWh (location-based).
    pub grid_factor_kg_per_kwh: f64,
    pub tariff: String,
    pub green_profile: String,
    pub pools: Vec<Pool>,
}

impl Site {
    pub fn latlon(&self) -> LatLon {
        LatLon { lat: self.lat, lon: self.lon }
    }

    pub fn capacity_ucu(&self, family: Family) -> f64 {
        self.pools.iter().filter(|p| p.family == family).map(Pool::capacity_ucu).sum()
    }

    pub fn in_hub(&self) -> bool {
        self.hub.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// Between clusters / green regions.
    Backbone,
    /// From a demand city to a cluster / green region.
    Access,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub kind: LinkKind,
    pub bandwidth_gbps: f64,
    pub price_fen_per_gb: i64,
    /// Measured one-way latency; when absent the fibre model applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_way_ms: Option<f64>,
    /// Links are up unless marked otherwise.
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pairing {
    pub city: String,
    pub hub: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuModel {
    pub id: String,
    pub vendor: String,
    pub name: String,
    pub arch: Arch,
    pub cores_per_socket: u32,
    pub sockets: u32,
    pub base_clock_ghz: f64,
    pub fp64_flops_per_cycle: u32,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceleratorModel {
    pub id: String,
    pub vendor: String,
    pub name: String,
    pub kind: String,
    pub arch: Arch,
    #[serde(default)]
    pub fp64_tflops: Option<f64>,
    #[serde(default)]
    pub fp32_tflops: Option<f64>,
    #[serde(default)]
    pub fp16_tflops: Option<f64>,
    #[serde(default)]
    pub int8_tops: Option<f64>,
    pub memory_gib: u32,
    pub tdp_w: u32,
    pub source: String,
}

impl AcceleratorModel {
    pub fn peaks(&self) -> Peaks {
        Peaks { fp64: self.fp64_tflops, fp32: self.fp32_tflops, fp16: self.fp16_tflops, int8: self.int8_tops }
    }
}

/// The text of every reference-data file, by its path under `data/`.
#[derive(Debug, Clone)]
pub struct DataFiles {
    pub files: BTreeMap<&'static str, String>,
}

/// The files the network is made of, relative to the data directory.
pub const DATA_FILES: [&str; 13] = [
    "metric.toml",
    "devices.toml",
    "network/hubs.toml",
    "network/clusters.toml",
    "network/regions.toml",
    "network/cities.toml",
    "network/sites.toml",
    "network/links.toml",
    "network/pairings.toml",
    "energy/grid_factors.toml",
    "energy/tariffs.toml",
    "energy/green_share.csv",
    "policy.toml",
];

impl DataFiles {
    /// The reference network compiled into the binary.
    pub fn reference() -> DataFiles {
        let texts: [&str; 13] = [
            include_str!("../../../data/metric.toml"),
            include_str!("../../../data/devices.toml"),
            include_str!("../../../data/network/hubs.toml"),
            include_str!("../../../data/network/clusters.toml"),
            include_str!("../../../data/network/regions.toml"),
            include_str!("../../../data/network/cities.toml"),
            include_str!("../../../data/network/sites.toml"),
            include_str!("../../../data/network/links.toml"),
            include_str!("../../../data/network/pairings.toml"),
            include_str!("../../../data/energy/grid_factors.toml"),
            include_str!("../../../data/energy/tariffs.toml"),
            include_str!("../../../data/energy/green_share.csv"),
            include_str!("../../../data/policy.toml"),
        ];
        DataFiles { files: DATA_FILES.into_iter().zip(texts.map(str::to_owned)).collect() }
    }

    fn get(&self, name: &'static str) -> &str {
        self.files.get(name).map_or("", String::as_str)
    }
}

/// One thing wrong with the data: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataProblem {
    pub file: String,
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for DataProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the network data has {} problem(s); first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
pub struct DataError(pub Vec<DataProblem>);

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    City(usize),
    Cluster(usize),
    Region(usize),
    Site(usize),
    Hub(usize),
}

impl Place {
    pub fn kind(self) -> &'static str {
        match self {
            Place::City(_) => "city",
            Place::Cluster(_) => "cluster",
            Place::Region(_) => "region",
            Place::Site(_) => "site",
            Place::Hub(_) => "hub",
        }
    }
}

/// One-way latency between two places.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub one_way_ms: f64,
    pub tier: LatencyTier,
    pub great_circle_km: f64,
    /// True when a measured link value was used instead of the fibre model.
    pub measured: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown place {id:?}: not a city, cluster, region, site or hub id")]
pub struct UnknownPlace {
    pub id: String,
}

/// The whole network, checked and indexed.
#[derive(Debug, Clone)]
pub struct Network {
    pub metric: ConversionTable,
    pub fibre: FibreModel,
    /// What the operator decides beyond the network itself (`policy.toml`).
    pub policy: OperatorPolicy,
    pub intra_cluster_gbps: f64,
    pub intra_cluster_fen_per_gb: i64,
    pub hubs: Vec<Hub>,
    pub clusters: Vec<Cluster>,
    pub regions: Vec<Region>,
    pub cities: Vec<City>,
    pub sites: Vec<Site>,
    pub links: Vec<Link>,
    pub pairings: Vec<Pairing>,
    pub cpus: Vec<CpuModel>,
    pub accelerators: Vec<AcceleratorModel>,
    pub grid_factors: BTreeMap<String, f64>,
    pub tariffs: Vec<Tariff>,
    pub green_profiles: Vec<GreenProfile>,
    places: HashMap<String, Place>,
    link_index: HashMap<(String, String), usize>,
}

// ---- file shapes --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HubsFile {
    hub: Vec<Hub>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClustersFile {
    cluster: Vec<Cluster>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionsFile {
    #[serde(default)]
    region: Vec<Region>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CitiesFile {
    city: Vec<City>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SitesFile {
    site: Vec<SiteFile>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkModel {
    route_factor: f64,
    fibre_km_per_s: f64,
    source: String,
    intra_cluster_gbps: f64,
    intra_cluster_fen_per_gb: i64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinksFile {
    model: LinkModel,
    #[serde(default)]
    link: Vec<Link>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairingsFile {
    #[serde(default)]
    pairing: Vec<Pairing>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    cpu: Vec<CpuModel>,
    accelerator: Vec<AcceleratorModel>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFactorsFile {
    factors: BTreeMap<String, f64>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TariffsFile {
    tariff: Vec<Tariff>,
}

/// Collects problems while loading.
/// What the operator decides beyond the network itself (`data/policy.toml`, R3, R5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorPolicy {
    /// How long the scheduler may defer a job's start when its spec has no `start_within`,
    /// seconds, per kind (indexed like `JobKind::ALL`).
    pub start_within_s: [i64; 8],
    /// Hubs first among equals: the `hub` scorer's weight in `balanced`, and the seed's
    /// targets the twin reports against (`[hubs]`).
    pub hubs: HubPolicy,
    /// Priority, fair share and preemption (`[fairshare]`, R3).
    pub fairshare: FairSharePolicy,
}

/// `[fairshare]` of `policy.toml`: how a job's effective priority is made (Slurm's
/// multifactor priority, two factors): `priority_weight × priority/9 + fairshare_weight × F`,
/// with `F = 2^(−U/S)` — `U` the tenant's share of the network's recent use (ucu·h, decayed
/// with `half_life_h`), `S` its share of the network (equal among tenants).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairSharePolicy {
    /// Hours after which a unit of use counts half (Slurm's `PriorityDecayHalfLife`).
    pub half_life_h: f64,
    /// Weight of the job's own priority (0–9, scaled to 0–1).
    pub priority_weight: f64,
    /// Weight of the tenant's fair-share factor (0–1).
    pub fairshare_weight: f64,
}

impl Default for FairSharePolicy {
    /// Slurm's default half-life (7 days); the two factors weighed alike.
    fn default() -> Self {
        FairSharePolicy { half_life_h: 168.0, priority_weight: 1.0, fairshare_weight: 1.0 }
    }
}

/// `[hubs]` of `policy.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubPolicy {
    /// Weight of the `hub` scorer (1 outside the hubs, 0 inside) in the `balanced` policy.
    pub weight: f64,
    /// Hub utilisation ÷ the national average (all sites, IT-capacity-weighted) to reach.
    pub utilisation_ratio_target: f64,
    /// Share of the hubs' electricity that is green power, to reach.
    pub green_share_target: f64,
}

impl Default for HubPolicy {
    /// No hub preference; the seed's targets (1.2 is "significantly above": our reading).
    fn default() -> Self {
        HubPolicy { weight: 0.0, utilisation_ratio_target: 1.2, green_share_target: 0.8 }
    }
}

impl Default for OperatorPolicy {
    /// No deferral for any kind, no hub preference (the reference data sets the real values).
    fn default() -> Self {
        OperatorPolicy { start_within_s: [0; 8], hubs: HubPolicy::default(), fairshare: FairSharePolicy::default() }
    }
}

impl OperatorPolicy {
    /// The default `start_within` of `kind`, seconds.
    pub fn start_within_s(&self, kind: crate::JobKind) -> i64 {
        self.start_within_s[kind.index()]
    }

    /// `[start_within]` with a duration for every kind, nothing else.
    fn parse(c: &mut Checker, text: &str) -> Option<OperatorPolicy> {
        const FILE: &str = "policy.toml";
        let table: toml::Table = c.parse(FILE, text)?;
        let before = c.problems.len();
        for key in table.keys().filter(|k| !matches!(k.as_str(), "start_within" | "hubs" | "fairshare")) {
            c.push(FILE, key.as_str(), "unknown section; the file has [start_within], [hubs] and [fairshare]");
        }
        let Some(sw) = table.get("start_within").and_then(toml::Value::as_table) else {
            c.push(FILE, "start_within", "missing: a [start_within] table with a duration per job kind");
            return None;
        };
        let kinds: Vec<&str> = crate::JobKind::ALL.iter().map(|k| k.as_str()).collect();
        for key in sw.keys().filter(|k| !kinds.contains(&k.as_str())) {
            c.push(FILE, format!("start_within.{key}"), format!("unknown job kind; one of {}", kinds.join(", ")));
        }
        let mut out = OperatorPolicy::default();
        for (i, kind) in kinds.iter().enumerate() {
            let path = format!("start_within.{kind}");
            let parsed = match sw.get(*kind) {
                None => Err("missing: every job kind needs a default".to_string()),
                Some(toml::Value::String(s)) => crate::time::parse_duration_s(s),
                Some(toml::Value::Integer(n)) => crate::time::parse_duration_s(&n.to_string()),
                Some(other) => Err(format!("must be a duration (\"6h\") or seconds, found {}", other.type_str())),
            };
            match parsed {
                Ok(s) if s <= crate::job::MAX_START_WITHIN_S => out.start_within_s[i] = s,
                Ok(s) => c.push(FILE, path, format!("{s} s is more than 366 days")),
                Err(e) => c.push(FILE, path, e),
            }
        }
        match table.get("hubs").cloned().map(HubPolicy::deserialize) {
            None => {
                c.push(FILE, "hubs", "missing: a [hubs] table (weight, utilisation_ratio_target, green_share_target)");
            }
            Some(Err(e)) => c.push(FILE, "hubs", e.message().to_string()),
            Some(Ok(h)) => {
                c.range(FILE, "hubs.weight", h.weight, 0.0, 100.0);
                c.range(FILE, "hubs.utilisation_ratio_target", h.utilisation_ratio_target, 0.0, 10.0);
                c.range(FILE, "hubs.green_share_target", h.green_share_target, 0.0, 1.0);
                out.hubs = h;
            }
        }
        // optional: a policy file from before fair share keeps Slurm's defaults
        match table.get("fairshare").cloned().map(FairSharePolicy::deserialize) {
            None => {}
            Some(Err(e)) => c.push(FILE, "fairshare", e.message().to_string()),
            Some(Ok(f)) => {
                c.range(FILE, "fairshare.half_life_h", f.half_life_h, 0.01, 87_840.0);
                c.range(FILE, "fairshare.priority_weight", f.priority_weight, 0.0, 1000.0);
                c.range(FILE, "fairshare.fairshare_weight", f.fairshare_weight, 0.0, 1000.0);
                out.fairshare = f;
            }
        }
        (c.problems.len() == before).then_some(out)
    }
}

struct Checker {
    problems: Vec<DataProblem>,
}

impl Checker {
    fn push(&mut self, file: &str, path: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(DataProblem { file: file.into(), path: path.into(), reason: reason.into() });
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, file: &'static str, text: &str) -> Option<T> {
        match toml::from_str::<T>(text) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = e.span().map(|s| line_col(text, s.start)).unwrap_or_default();
                self.push(file, at, e.message().to_string());
                None
            }
        }
    }

    fn range(&mut self, file: &str, path: &str, v: f64, lo: f64, hi: f64) {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.push(file, path, format!("{v} is outside [{lo}, {hi}]"));
        }
    }

    fn coords(&mut self, file: &str, path: &str, lat: f64, lon: f64) {
        // Mainland China's bounding box, with margin.
        self.range(file, &format!("{path}.lat"), lat, 15.0, 55.0);
        self.range(file, &format!("{path}.lon"), lon, 70.0, 137.0);
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// Per green profile: the shares and which season-hours were seen.
type ProfileRows = ([[f64; 24]; 4], [[bool; 24]; 4]);

fn parse_green_csv(c: &mut Checker, text: &str) -> Vec<GreenProfile> {
    const FILE: &str = "energy/green_share.csv";
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("profile,season,hour,green_share") {
        c.push(FILE, "line 1", "header must be `profile,season,hour,green_share`");
        return vec![];
    }
    let mut by_id: BTreeMap<String, ProfileRows> = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let at = format!("line {}", i + 2);
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let [id, season, hour, share] = cols[..] else {
            c.push(FILE, at, format!("expected 4 columns, found {}", cols.len()));
            continue;
        };
        let Some(season) = Season::parse(season) else {
            c.push(FILE, at, format!("unknown season {season:?}"));
            continue;
        };
        let Some(hour) = hour.parse::<usize>().ok().filter(|h| *h < 24) else {
            c.push(FILE, at, format!("hour {hour:?} is not an integer in 0..=23"));
            continue;
        };
        let Some(share) = share.parse::<f64>().ok().filter(|s| (0.0..=1.0).contains(s)) else {
            c.push(FILE, at, format!("green_share {share:?} is not a number in [0, 1]"));
            continue;
        };
        let entry = by_id.entry(id.to_string()).or_insert(([[0.0; 24]; 4], [[false; 24]; 4]));
        if entry.1[season.index()][hour] {
            c.push(FILE, at, format!("duplicate row for {id} {} hour {hour}", season.as_str()));
        }
        entry.0[season.index()][hour] = share;
        entry.1[season.index()][hour] = true;
    }
    let mut out = vec![];
    for (id, (share, seen)) in by_id {
        let missing = seen.iter().flatten().filter(|s| !**s).count();
        if missing > 0 {
            c.push(FILE, &id, format!("{missing} of 96 season-hours are missing"));
        }
        out.push(GreenProfile { id, share });
    }
    out
}

/// The most units one pool of an agent site may declare (a machine, or a cluster behind
/// Slurm, not a nation): larger counts are refused at registration as implausible.
pub const MAX_AGENT_POOL_UNITS: u64 = 1_048_576;
/// The most memory one unit of an agent pool may declare, GiB.
pub const MAX_AGENT_GIB_PER_UNIT: u32 = 65_536;
/// An agent pool's price must lie within the reference prices of its device model (or, for a
/// model the reference network does not price, of its family and unit), divided or multiplied
/// by this factor — and never below 1 fen per unit-hour.
pub const PRICE_BAND_FACTOR: i64 = 4;

/// What an agent site declares in total: cores of CPU pools, accelerator cards, host memory
/// (of the CPU pools; an accelerator's memory is the card's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentCapacity {
    pub cores: u64,
    pub accelerators: u64,
    pub memory_mib: u64,
}

impl AgentCapacity {
    /// The sum of two capacities, or `None` when a total would overflow.
    #[must_use]
    pub fn checked_add(self, o: AgentCapacity) -> Option<AgentCapacity> {
        Some(AgentCapacity {
            cores: self.cores.checked_add(o.cores)?,
            accelerators: self.accelerators.checked_add(o.accelerators)?,
            memory_mib: self.memory_mib.checked_add(o.memory_mib)?,
        })
    }
}

/// Why an agent site is refused: the field (`site.pools[0].count`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AgentSiteProblem {
    pub field: String,
    pub reason: String,
}

fn problem(field: impl Into<String>, reason: impl Into<String>) -> AgentSiteProblem {
    AgentSiteProblem { field: field.into(), reason: reason.into() }
}

impl Network {
    /// The price band (fen per unit-hour, inclusive) for a pool of `model` on an agent site:
    /// the reference pools' prices for the same model in the same family and unit, else for
    /// the same family and unit,
    /// divided and multiplied by `PRICE_BAND_FACTOR`; the low end is at least 1 fen. `None`
    /// when the model is unknown or nothing comparable is priced.
    pub fn price_band(&self, model: &str) -> Option<(i64, i64)> {
        let (family, unit) = if self.cpus.iter().any(|c| c.id == model) {
            (Family::General, Unit::Core)
        } else if self.accelerator(model).is_some() {
            (Family::Intelligent, Unit::Accelerator)
        } else {
            return None;
        };
        let reference = || self.sites.iter().filter(|s| s.racks > 0).flat_map(|s| s.pools.iter());
        let prices: Vec<i64> = {
            // the same model in the same unit (a hygon-7390 node is not priced like its core)
            let same: Vec<i64> = reference()
                .filter(|p| p.model == model && p.family == family && p.unit == unit)
                .map(|p| p.price_fen_per_unit_hour)
                .collect();
            if same.is_empty() {
                reference()
                    .filter(|p| p.family == family && p.unit == unit)
                    .map(|p| p.price_fen_per_unit_hour)
                    .collect()
            } else {
                same
            }
        };
        let lo = *prices.iter().min()?;
        let hi = *prices.iter().max()?;
        Some(((lo / PRICE_BAND_FACTOR).max(1), hi.checked_mul(PRICE_BAND_FACTOR).unwrap_or(i64::MAX)))
    }

    /// Checks what an agent declares before it joins the network: known models, counts of
    /// `1..=MAX_AGENT_POOL_UNITS`, memory per unit up to `MAX_AGENT_GIB_PER_UNIT`, a finite
    /// power in [0.1, 100000] W, a price within `price_band`, a PUE in [1, 3]. Returns the
    /// site's capacity (summed without overflow). Call it on the reference network, so agents'
    /// own prices never widen the band.
    pub fn check_agent_site(&self, site: &AgentSite) -> Result<AgentCapacity, AgentSiteProblem> {
        if !(site.pue.is_finite() && (1.0..=3.0).contains(&site.pue)) {
            return Err(problem("site.pue", format!("must be a number in [1, 3], not {}", site.pue)));
        }
        if site.pools.is_empty() {
            return Err(problem("site.pools", "an agent site needs at least one pool"));
        }
        for (i, p) in site.pools.iter().enumerate() {
            let at = |f: &str| format!("site.pools[{i}].{f}");
            if !self.cpus.iter().any(|c| c.id == p.model) && self.accelerator(&p.model).is_none() {
                return Err(problem(at("model"), format!("unknown CPU or accelerator model {:?}", p.model)));
            }
            if !(1..=MAX_AGENT_POOL_UNITS).contains(&p.count) {
                return Err(problem(at("count"), format!("must be in 1..={MAX_AGENT_POOL_UNITS}, not {}", p.count)));
            }
            if p.memory_gib_per_unit > MAX_AGENT_GIB_PER_UNIT {
                return Err(problem(
                    at("memory_gib_per_unit"),
                    format!("must be at most {MAX_AGENT_GIB_PER_UNIT} GiB, not {}", p.memory_gib_per_unit),
                ));
            }
            if !(p.power_w_per_unit.is_finite() && (0.1..=100_000.0).contains(&p.power_w_per_unit)) {
                return Err(problem(
                    at("power_w_per_unit"),
                    format!("must be a number in [0.1, 100000] W, not {}", p.power_w_per_unit),
                ));
            }
            let (lo, hi) = self.price_band(&p.model).ok_or_else(|| {
                problem(at("model"), format!("the reference network prices nothing like {:?}", p.model))
            })?;
            if !(lo..=hi).contains(&p.price_fen_per_unit_hour) {
                return Err(problem(
                    at("price_fen_per_unit_hour"),
                    format!(
                        "{} fen per unit-hour is outside the price band {lo}..={hi} for {} (the reference prices \
                         divided and multiplied by {PRICE_BAND_FACTOR})",
                        p.price_fen_per_unit_hour, p.model
                    ),
                ));
            }
        }
        self.agent_capacity(site).ok_or_else(|| problem("site.pools", "the pools' totals overflow"))
    }

    /// What an agent site declares in total (cores of CPU models, cards of accelerator models,
    /// host memory of the CPU pools); `None` when a sum overflows.
    pub fn agent_capacity(&self, site: &AgentSite) -> Option<AgentCapacity> {
        site.pools.iter().try_fold(AgentCapacity::default(), |total, p| {
            let pool = if self.accelerator(&p.model).is_some() {
                AgentCapacity { accelerators: p.count, ..AgentCapacity::default() }
            } else {
                let memory_mib = p.count.checked_mul(u64::from(p.memory_gib_per_unit))?.checked_mul(1024)?;
                AgentCapacity { cores: p.count, memory_mib, ..AgentCapacity::default() }
            };
            total.checked_add(pool)
        })
    }

    /// A copy of this network with one more site: a machine an agent connected, at a demand
    /// city. The site takes the city's residency region (or the nearest site's), and the
    /// province's tariff, green profile and grid factor (or the nearest site's); its pools count
    /// cores of a model in `devices.toml`.
    pub fn with_agent_site(&self, site: &AgentSite) -> Result<Network, String> {
        if let Some(why) = id_problem(&site.id) {
            return Err(format!("site id {:?} {why}", site.id));
        }
        if self.place(&site.id).is_some() {
            return Err(format!("{:?} is already the id of a place", site.id));
        }
        let city = self.city(&site.city).ok_or_else(|| format!("unknown city {:?}", site.city))?;
        let here = LatLon { lat: city.lat, lon: city.lon };
        let nearest = self
            .sites
            .iter()
            .min_by(|a, b| here.distance_km(a.latlon()).total_cmp(&here.distance_km(b.latlon())))
            .ok_or("the network has no site")?;
        let same_province = self.sites.iter().find(|s| s.province == city.province).unwrap_or(nearest);
        if site.pools.is_empty() {
            return Err("an agent site needs at least one pool".into());
        }
        let mut pools = vec![];
        for (i, p) in site.pools.iter().enumerate() {
            // a CPU model counts in cores (general family), an accelerator model in cards
            let (family, unit, peak, arch, accelerator_kind) =
                if let Some(cpu) = self.cpus.iter().find(|c| c.id == p.model) {
                    let peak = Peaks::cpu(1, cpu.base_clock_ghz, cpu.fp64_flops_per_cycle);
                    (Family::General, Unit::Core, peak, cpu.arch, None)
                } else if let Some(acc) = self.accelerator(&p.model) {
                    (Family::Intelligent, Unit::Accelerator, acc.peaks(), acc.arch, Some(acc.kind.clone()))
                } else {
                    return Err(format!("pools[{i}].model: unknown CPU or accelerator model {:?}", p.model));
                };
            if p.count == 0 {
                return Err(format!("pools[{i}].count must be positive"));
            }
            if site.pools[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("pools[{i}].name: {:?} is declared twice", p.name));
            }
            if !(p.power_w_per_unit.is_finite() && (0.1..=100_000.0).contains(&p.power_w_per_unit)) {
                return Err(format!("pools[{i}].power_w_per_unit must be in [0.1, 100000] W"));
            }
            if p.price_fen_per_unit_hour < 0 {
                return Err(format!("pools[{i}].price_fen_per_unit_hour must not be negative"));
            }
            pools.push(Pool {
                id: format!("{}.{}", site.id, p.name),
                site: site.id.clone(),
                family,
                model: p.model.clone(),
                unit,
                count: p.count,
                memory_gib_per_unit: p.memory_gib_per_unit,
                power_w_per_unit: p.power_w_per_unit,
                price_fen_per_unit_hour: p.price_fen_per_unit_hour,
                arch,
                accelerator_kind,
                peak_per_unit: peak,
                ucu_per_unit: self.metric.unified(&peak),
            });
        }
        let mut net = self.clone();
        net.sites.push(Site {
            id: site.id.clone(),
            name_cn: site.id.clone(),
            cluster: None,
            hub: None,
            region: city.region.clone().unwrap_or_else(|| nearest.region.clone()),
            city: None,
            backup: Some(nearest.id.clone()),
            side: nearest.side,
            province: city.province.clone(),
            lat: city.lat,
            lon: city.lon,
            coord_source: format!("agent site at {} (city coordinates)", city.id),
            racks: 0,
            pue: site.pue,
            grid_factor_kg_per_kwh: self
                .grid_factors
                .get(&city.province)
                .copied()
                .unwrap_or(same_province.grid_factor_kg_per_kwh),
            tariff: same_province.tariff.clone(),
            green_profile: same_province.green_profile.clone(),
            pools,
        });
        net.places.insert(site.id.clone(), Place::Site(net.sites.len() - 1));
        Ok(net)
    }

    /// This network with exactly `n` sites, for scale benchmarks: the first `n` sites when it
    /// has more (the hubs' come first); else more city data centres, placed and linked by the
    /// reference's rule — round-robin over the demand cities, each a copy of that city's data
    /// centre (pools, PUE, tariff, grid) a few kilometres off (a deterministic ±0.3° spiral),
    /// reaching the network through the city's links. `None` when `n` is 0 or a city has no data
    /// centre to copy.
    pub fn with_site_count(&self, n: usize) -> Option<Network> {
        if n == 0 {
            return None;
        }
        let mut net = self.clone();
        net.sites.truncate(n);
        let templates: Vec<Site> = self
            .cities
            .iter()
            .filter_map(|c| self.sites.iter().find(|s| s.city.as_deref() == Some(c.id.as_str())).cloned())
            .collect();
        let mut k = 0usize;
        while net.sites.len() < n {
            let t = templates.get(k % templates.len().max(1))?;
            let round = k / templates.len() + 1;
            let angle = round as f64 * 2.399_963; // the golden angle: no two copies coincide
            let r = 0.3 * (round as f64 / (round as f64 + 4.0));
            let id = format!("{}-{round}", t.id);
            let mut site = t.clone();
            site.pools = t
                .pools
                .iter()
                .map(|p| Pool { id: p.id.replacen(&t.id, &id, 1), site: id.clone(), ..p.clone() })
                .collect();
            site.backup = Some(t.id.clone());
            site.lat = t.lat + r * angle.sin();
            site.lon = t.lon + r * angle.cos();
            site.coord_source = format!("synthetic: near {} (bench)", t.id);
            site.id = id;
            net.sites.push(site);
            k += 1;
        }
        net.places.retain(|_, p| !matches!(p, Place::Site(_)));
        for (i, site) in net.sites.iter().enumerate() {
            net.places.insert(site.id.clone(), Place::Site(i));
        }
        let ids: std::collections::HashSet<String> = net.sites.iter().map(|s| s.id.clone()).collect();
        for site in &mut net.sites {
            if site.backup.as_ref().is_some_and(|b| !ids.contains(b)) {
                site.backup = None;
            }
        }
        Some(net)
    }

    /// The reference national network compiled into the binary.
    pub fn reference() -> Result<Network, DataError> {
        Network::from_files(&DataFiles::reference())
    }

    /// Parses and checks a network; reports every problem found.
    pub fn from_files(files: &DataFiles) -> Result<Network, DataError> {
        let mut c = Checker { problems: vec![] };
        let metric = match ConversionTable::from_toml(files.get("metric.toml")) {
            Ok(m) => Some(m),
            Err(e) => {
                c.push("metric.toml", "", e);
                None
            }
        };
        let devices: Option<DevicesFile> = c.parse("devices.toml", files.get("devices.toml"));
        let hubs: Option<HubsFile> = c.parse("network/hubs.toml", files.get("network/hubs.toml"));
        let clusters: Option<ClustersFile> = c.parse("network/clusters.toml", files.get("network/clusters.toml"));
        let regions: Option<RegionsFile> = c.parse("network/regions.toml", files.get("network/regions.toml"));
        let cities: Option<CitiesFile> = c.parse("network/cities.toml", files.get("network/cities.toml"));
        let sites: Option<SitesFile> = c.parse("network/sites.toml", files.get("network/sites.toml"));
        let links: Option<LinksFile> = c.parse("network/links.toml", files.get("network/links.toml"));
        let pairings: Option<PairingsFile> = c.parse("network/pairings.toml", files.get("network/pairings.toml"));
        let grid: Option<GridFactorsFile> = c.parse("energy/grid_factors.toml", files.get("energy/grid_factors.toml"));
        let tariffs: Option<TariffsFile> = c.parse("energy/tariffs.toml", files.get("energy/tariffs.toml"));
        let green = parse_green_csv(&mut c, files.get("energy/green_share.csv"));
        let policy = OperatorPolicy::parse(&mut c, files.get("policy.toml"));
        let (
            Some(metric),
            Some(devices),
            Some(hubs),
            Some(clusters),
            Some(regions),
            Some(cities),
            Some(sites),
            Some(links),
            Some(pairings),
            Some(grid),
            Some(tariffs),
        ) = (metric, devices, hubs, clusters, regions, cities, sites, links, pairings, grid, tariffs)
        else {
            return Err(DataError(c.problems));
        };
        let Some(policy) = policy else { return Err(DataError(c.problems)) };
        let mut net = build(
            &mut c, metric, devices, hubs, clusters, regions, cities, sites, links, pairings, grid, tariffs, green,
        );
        net.policy = policy;
        if c.problems.is_empty() { Ok(net) } else { Err(DataError(c.problems)) }
    }

    /// What `id` names, if anything.
    pub fn place(&self, id: &str) -> Option<Place> {
        self.places.get(id).copied()
    }

    /// Coordinates of any place; a hub sits at the mean of its clusters.
    pub fn latlon(&self, place: Place) -> LatLon {
        match place {
            Place::City(i) => LatLon { lat: self.cities[i].lat, lon: self.cities[i].lon },
            Place::Cluster(i) => LatLon { lat: self.clusters[i].lat, lon: self.clusters[i].lon },
            Place::Region(i) => LatLon { lat: self.regions[i].lat, lon: self.regions[i].lon },
            Place::Site(i) => self.sites[i].latlon(),
            Place::Hub(i) => {
                let hub = &self.hubs[i].id;
                let pts: Vec<&Cluster> = self.clusters.iter().filter(|c| &c.hub == hub).collect();
                let n = pts.len().max(1) as f64;
                LatLon {
                    lat: pts.iter().map(|c| c.lat).sum::<f64>() / n,
                    lon: pts.iter().map(|c| c.lon).sum::<f64>() / n,
                }
            }
        }
    }

    /// One-way latency between any two places: a measured link value for exactly this pair
    /// when one exists, else the fibre model on the great-circle distance.
    pub fn latency(&self, from: &str, to: &str) -> Result<Latency, UnknownPlace> {
        let a = self.place(from).ok_or_else(|| UnknownPlace { id: from.into() })?;
        let b = self.place(to).ok_or_else(|| UnknownPlace { id: to.into() })?;
        let km = self.latlon(a).distance_km(self.latlon(b));
        let measured = self.link(from, to).and_then(|l| l.one_way_ms);
        let one_way_ms = measured.unwrap_or_else(|| self.fibre.one_way_ms(km));
        Ok(Latency {
            one_way_ms,
            tier: LatencyTier::of_ms(one_way_ms),
            great_circle_km: km,
            measured: measured.is_some(),
        })
    }

    /// The link between exactly these two ids, either direction.
    pub fn link(&self, a: &str, b: &str) -> Option<&Link> {
        self.link_position(a, b).map(|i| &self.links[i])
    }

    /// Index into `links` of the link between exactly these two ids, either direction.
    pub fn link_position(&self, a: &str, b: &str) -> Option<usize> {
        let key = if a <= b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
        self.link_index.get(&key).copied()
    }

    pub fn site(&self, id: &str) -> Option<&Site> {
        match self.place(id)? {
            Place::Site(i) => Some(&self.sites[i]),
            _ => None,
        }
    }

    pub fn city(&self, id: &str) -> Option<&City> {
        match self.place(id)? {
            Place::City(i) => Some(&self.cities[i]),
            _ => None,
        }
    }

    pub fn tariff(&self, id: &str) -> Option<&Tariff> {
        self.tariffs.iter().find(|t| t.id == id)
    }

    pub fn green_profile(&self, id: &str) -> Option<&GreenProfile> {
        self.green_profiles.iter().find(|g| g.id == id)
    }

    pub fn accelerator(&self, id: &str) -> Option<&AcceleratorModel> {
        self.accelerators.iter().find(|a| a.id == id)
    }

    /// True when `id` is a hub or a green region: a valid `allowed_regions` entry.
    pub fn is_region(&self, id: &str) -> bool {
        matches!(self.place(id), Some(Place::Hub(_) | Place::Region(_)))
    }

    /// Unified capacity of the sites matching `pred`, per family.
    pub fn capacity_ucu(&self, pred: impl Fn(&Site) -> bool) -> BTreeMap<Family, f64> {
        let mut out: BTreeMap<Family, f64> = Family::ALL.iter().map(|f| (*f, 0.0)).collect();
        for s in self.sites.iter().filter(|s| pred(s)) {
            for p in &s.pools {
                *out.entry(p.family).or_default() += p.capacity_ucu();
            }
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    c: &mut Checker,
    metric: ConversionTable,
    devices: DevicesFile,
    hubs: HubsFile,
    clusters: ClustersFile,
    regions: RegionsFile,
    cities: CitiesFile,
    sites: SitesFile,
    links: LinksFile,
    pairings: PairingsFile,
    grid: GridFactorsFile,
    tariffs: TariffsFile,
    green: Vec<GreenProfile>,
) -> Network {
    let mut places: HashMap<String, Place> = HashMap::new();
    let mut claim = |c: &mut Checker, file: &str, path: String, id: &str, place: Place| {
        if let Some(why) = id_problem(id) {
            c.push(file, format!("{path}.id"), format!("{id:?} {why}"));
        }
        if let Some(prev) = places.insert(id.to_string(), place) {
            c.push(file, format!("{path}.id"), format!("{id:?} is already used by a {}", prev.kind()));
        }
    };
    for (i, h) in hubs.hub.iter().enumerate() {
        claim(c, "network/hubs.toml", format!("hub[{i}]"), &h.id, Place::Hub(i));
    }
    for (i, x) in clusters.cluster.iter().enumerate() {
        claim(c, "network/clusters.toml", format!("cluster[{i}]"), &x.id, Place::Cluster(i));
        c.coords("network/clusters.toml", &format!("cluster[{i}]"), x.lat, x.lon);
    }
    for (i, x) in regions.region.iter().enumerate() {
        claim(c, "network/regions.toml", format!("region[{i}]"), &x.id, Place::Region(i));
        c.coords("network/regions.toml", &format!("region[{i}]"), x.lat, x.lon);
    }
    for (i, x) in cities.city.iter().enumerate() {
        claim(c, "network/cities.toml", format!("city[{i}]"), &x.id, Place::City(i));
        c.coords("network/cities.toml", &format!("city[{i}]"), x.lat, x.lon);
    }
    for (i, x) in sites.site.iter().enumerate() {
        claim(c, "network/sites.toml", format!("site[{i}]"), &x.id, Place::Site(i));
    }
    let hub_side: HashMap<&str, Side> = hubs.hub.iter().map(|h| (h.id.as_str(), h.side)).collect();
    let cluster_hub: HashMap<&str, &str> = clusters.cluster.iter().map(|x| (x.id.as_str(), x.hub.as_str())).collect();
    for (i, x) in clusters.cluster.iter().enumerate() {
        if !hub_side.contains_key(x.hub.as_str()) {
            c.push("network/clusters.toml", format!("cluster[{i}].hub"), format!("unknown hub {:?}", x.hub));
        }
    }
    for h in &hubs.hub {
        if !clusters.cluster.iter().any(|x| x.hub == h.id) {
            c.push("network/hubs.toml", &h.id, "hub has no cluster");
        }
    }
    let region_ids: Vec<&str> = regions.region.iter().map(|r| r.id.as_str()).collect();
    for (i, x) in cities.city.iter().enumerate() {
        if let Some(r) = &x.region
            && !hub_side.contains_key(r.as_str())
            && !region_ids.contains(&r.as_str())
        {
            c.push("network/cities.toml", format!("city[{i}].region"), format!("unknown hub or region {r:?}"));
        }
    }
    for (i, p) in pairings.pairing.iter().enumerate() {
        if !matches!(places.get(&p.city), Some(Place::City(_))) {
            c.push("network/pairings.toml", format!("pairing[{i}].city"), format!("unknown city {:?}", p.city));
        }
        if !matches!(places.get(&p.hub), Some(Place::Hub(_) | Place::Region(_))) {
            c.push("network/pairings.toml", format!("pairing[{i}].hub"), format!("unknown hub {:?}", p.hub));
        }
    }

    // devices
    let mut device_ids = std::collections::HashSet::new();
    for (i, d) in devices.cpu.iter().enumerate() {
        let at = format!("cpu[{i}]");
        if !device_ids.insert(d.id.clone()) {
            c.push("devices.toml", format!("{at}.id"), format!("duplicate device id {:?}", d.id));
        }
        c.range("devices.toml", &format!("{at}.base_clock_ghz"), d.base_clock_ghz, 0.5, 6.0);
        if d.cores_per_socket == 0 || d.sockets == 0 || d.fp64_flops_per_cycle == 0 {
            c.push("devices.toml", &at, "cores_per_socket, sockets and fp64_flops_per_cycle must be positive");
        }
    }
    for (i, d) in devices.accelerator.iter().enumerate() {
        let at = format!("accelerator[{i}]");
        if !device_ids.insert(d.id.clone()) {
            c.push("devices.toml", format!("{at}.id"), format!("duplicate device id {:?}", d.id));
        }
        if metric.unified(&d.peaks()) <= 0.0 {
            c.push("devices.toml", &at, "no positive peak at any precision");
        }
        for (name, v) in [
            ("fp64_tflops", d.fp64_tflops),
            ("fp32_tflops", d.fp32_tflops),
            ("fp16_tflops", d.fp16_tflops),
            ("int8_tops", d.int8_tops),
        ] {
            if let Some(v) = v {
                c.range("devices.toml", &format!("{at}.{name}"), v, 0.0, 100_000.0);
            }
        }
    }

    // energy
    for (prov, f) in &grid.factors {
        c.range("energy/grid_factors.toml", &format!("factors.{prov}"), *f, 0.0, 1.5);
    }
    for (i, t) in tariffs.tariff.iter().enumerate() {
        if t.hours.len() != 24 {
            c.push(
                "energy/tariffs.toml",
                format!("tariff[{i}].hours"),
                format!("has {} entries; need 24", t.hours.len()),
            );
        }
        if let Some(h) = t.hours.iter().position(|p| *p <= 0 || *p > 10_000_000) {
            c.push("energy/tariffs.toml", format!("tariff[{i}].hours[{h}]"), "price must be in 1..=10,000,000 fen/MWh");
        }
    }

    // sites and pools
    let mut out_sites = Vec::with_capacity(sites.site.len());
    let mut pool_ids = std::collections::HashSet::new();
    for (i, s) in sites.site.into_iter().enumerate() {
        const F: &str = "network/sites.toml";
        let at = format!("site[{i}]");
        c.coords(F, &at, s.lat, s.lon);
        c.range(F, &format!("{at}.pue"), s.pue, 1.0, 3.0);
        let (hub, region, side) = match (&s.cluster, &s.region) {
            (None, None) if s.city.is_some() => {
                let id = s.city.as_deref().unwrap_or_default();
                match cities.city.iter().find(|x| x.id == id) {
                    // a city data centre: the city's hub for residency, else the city itself;
                    // the side of the city's hub, else east (demand cities are the east's)
                    Some(city) => match &city.region {
                        Some(h) => (None, h.clone(), hub_side.get(h.as_str()).copied().unwrap_or(Side::East)),
                        None => (None, city.id.clone(), Side::East),
                    },
                    None => {
                        c.push(F, format!("{at}.city"), format!("unknown demand city {id:?}"));
                        (None, String::new(), Side::East)
                    }
                }
            }
            (Some(_), _) | (_, Some(_)) if s.city.is_some() => {
                c.push(F, &at, "a site needs exactly one of `cluster`, `region` or `city`");
                (None, String::new(), Side::East)
            }
            (Some(cl), None) => match cluster_hub.get(cl.as_str()) {
                Some(h) => (Some((*h).to_string()), (*h).to_string(), hub_side.get(h).copied().unwrap_or(Side::East)),
                None => {
                    c.push(F, format!("{at}.cluster"), format!("unknown cluster {cl:?}"));
                    (None, String::new(), Side::East)
                }
            },
            (None, Some(r)) => {
                if !region_ids.contains(&r.as_str()) {
                    c.push(F, format!("{at}.region"), format!("unknown green region {r:?}"));
                }
                (None, r.clone(), Side::West)
            }
            _ => {
                c.push(F, &at, "a site needs exactly one of `cluster`, `region` or `city`");
                (None, String::new(), Side::East)
            }
        };
        let grid_factor = grid.factors.get(&s.province).copied().unwrap_or_else(|| {
            c.push(F, format!("{at}.province"), format!("no grid factor for province {:?}", s.province));
            0.0
        });
        if !tariffs.tariff.iter().any(|t| t.id == s.tariff) {
            c.push(F, format!("{at}.tariff"), format!("unknown tariff {:?}", s.tariff));
        }
        if !green.iter().any(|g| g.id == s.green_profile) {
            c.push(F, format!("{at}.green_profile"), format!("unknown green profile {:?}", s.green_profile));
        }
        if s.pool.is_empty() {
            c.push(F, &at, "a site needs at least one pool");
        }
        let mut pools = vec![];
        for (j, p) in s.pool.into_iter().enumerate() {
            let pat = format!("{at}.pool[{j}]");
            if !p.id.starts_with(&format!("{}.", s.id)) {
                c.push(F, format!("{pat}.id"), format!("pool id {:?} must start with \"{}.\"", p.id, s.id));
            }
            if !pool_ids.insert(p.id.clone()) {
                c.push(F, format!("{pat}.id"), format!("duplicate pool id {:?}", p.id));
            }
            if p.count == 0 {
                c.push(F, format!("{pat}.count"), "must be positive");
            }
            c.range(F, &format!("{pat}.power_w_per_unit"), p.power_w_per_unit, 0.1, 100_000.0);
            if p.price_fen_per_unit_hour < 0 {
                c.push(F, format!("{pat}.price_fen_per_unit_hour"), "must not be negative");
            }
            let resolved = match (p.family, p.unit) {
                (Family::General, Unit::Core) | (Family::Super, Unit::Node) => {
                    devices.cpu.iter().find(|d| d.id == p.model).map(|d| {
                        let cores = if p.unit == Unit::Core { 1 } else { d.cores_per_socket * d.sockets };
                        (Peaks::cpu(cores, d.base_clock_ghz, d.fp64_flops_per_cycle), d.arch, None)
                    })
                }
                (Family::Intelligent, Unit::Accelerator) => devices
                    .accelerator
                    .iter()
                    .find(|d| d.id == p.model)
                    .map(|d| (d.peaks(), d.arch, Some(d.kind.clone()))),
                (f, u) => {
                    c.push(
                        F,
                        format!("{pat}.unit"),
                        format!(
                            "{} pools count in {}, not {u:?}",
                            f.as_str(),
                            match f {
                                Family::General => "core",
                                Family::Intelligent => "accelerator",
                                Family::Super => "node",
                            }
                        ),
                    );
                    continue;
                }
            };
            let Some((peak_per_unit, arch, accelerator_kind)) = resolved else {
                c.push(
                    F,
                    format!("{pat}.model"),
                    format!("unknown {} device model {:?} (see devices.toml)", p.family.as_str(), p.model),
                );
                continue;
            };
            let ucu_per_unit = metric.unified(&peak_per_unit);
            pools.push(Pool {
                id: p.id,
                site: s.id.clone(),
                family: p.family,
                model: p.model,
                unit: p.unit,
                count: p.count,
                memory_gib_per_unit: p.memory_gib_per_unit,
                power_w_per_unit: p.power_w_per_unit,
                price_fen_per_unit_hour: p.price_fen_per_unit_hour,
                arch,
                accelerator_kind,
                peak_per_unit,
                ucu_per_unit,
            });
        }
        out_sites.push(Site {
            id: s.id,
            name_cn: s.name_cn,
            cluster: s.cluster,
            hub,
            region,
            city: s.city,
            backup: s.backup,
            side,
            province: s.province,
            lat: s.lat,
            lon: s.lon,
            coord_source: s.coord_source,
            racks: s.racks,
            pue: s.pue,
            grid_factor_kg_per_kwh: grid_factor,
            tariff: s.tariff,
            green_profile: s.green_profile,
            pools,
        });
    }
    for (i, s) in out_sites.iter().enumerate() {
        if let Some(b) = &s.backup
            && (b == &s.id || !out_sites.iter().any(|x| &x.id == b))
        {
            c.push("network/sites.toml", format!("site[{i}].backup"), format!("{b:?} is not another site"));
        }
    }
    for cl in &clusters.cluster {
        if !out_sites.iter().any(|s| s.cluster.as_deref() == Some(cl.id.as_str())) {
            c.push("network/sites.toml", &cl.id, "cluster has no site");
        }
    }
    for r in &regions.region {
        if !out_sites.iter().any(|s| s.cluster.is_none() && s.region == r.id) {
            c.push("network/sites.toml", &r.id, "green region has no site");
        }
    }

    // links
    let m = &links.model;
    c.range("network/links.toml", "model.route_factor", m.route_factor, 1.0, 5.0);
    c.range("network/links.toml", "model.fibre_km_per_s", m.fibre_km_per_s, 100_000.0, 300_000.0);
    c.range("network/links.toml", "model.intra_cluster_gbps", m.intra_cluster_gbps, 0.001, 1e6);
    if m.source.trim().is_empty() {
        c.push("network/links.toml", "model.source", "must say where the fibre model's numbers come from");
    }
    let mut link_index = HashMap::new();
    for (i, l) in links.link.iter().enumerate() {
        let at = format!("link[{i}]");
        for (end, id) in [("a", &l.a), ("b", &l.b)] {
            if !places.contains_key(id) {
                c.push("network/links.toml", format!("{at}.{end}"), format!("unknown endpoint {id:?}"));
            }
        }
        if l.a == l.b {
            c.push("network/links.toml", &at, "a link needs two different endpoints");
        }
        c.range("network/links.toml", &format!("{at}.bandwidth_gbps"), l.bandwidth_gbps, 0.001, 1e6);
        if l.price_fen_per_gb < 0 {
            c.push("network/links.toml", format!("{at}.price_fen_per_gb"), "must not be negative");
        }
        if let Some(ms) = l.one_way_ms {
            c.range("network/links.toml", &format!("{at}.one_way_ms"), ms, 0.0, 1000.0);
        }
        let key = if l.a <= l.b { (l.a.clone(), l.b.clone()) } else { (l.b.clone(), l.a.clone()) };
        if link_index.insert(key, i).is_some() {
            c.push("network/links.toml", &at, format!("duplicate link {} <-> {}", l.a, l.b));
        }
    }

    Network {
        policy: OperatorPolicy::default(),
        metric,
        fibre: FibreModel { route_factor: m.route_factor, fibre_km_per_s: m.fibre_km_per_s },
        intra_cluster_gbps: m.intra_cluster_gbps,
        intra_cluster_fen_per_gb: m.intra_cluster_fen_per_gb,
        hubs: hubs.hub,
        clusters: clusters.cluster,
        regions: regions.region,
        cities: cities.city,
        sites: out_sites,
        links: links.link,
        pairings: pairings.pairing,
        cpus: devices.cpu,
        accelerators: devices.accelerator,
        grid_factors: grid.factors,
        tariffs: tariffs.tariff,
        green_profiles: green,
        places,
        link_index,
    }
}

#[cfg(test)]
mod agent_site_tests {
    use super::*;

    #[test]
    fn the_price_band_comes_from_the_reference_prices_of_the_model_or_its_family() {
        let net = Network::reference().expect("reference");
        // h800 cards are priced 1500 fen an hour in the reference network
        assert_eq!(net.price_band("h800"), Some((375, 6000)));
        // a core of an unpriced CPU model: the general family's cores (38–50 fen)
        assert_eq!(net.price_band("generic-x86_64"), Some((9, 200)));
        // a hygon-7390 core is priced like cores, not like the 2,600-fen nodes of that CPU
        assert_eq!(net.price_band("hygon-7390"), Some((11, 180)));
        assert_eq!(net.price_band("atlantis-9000"), None);
    }
}
