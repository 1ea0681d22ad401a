//! The job spec (R3): what a tenant asks the network to run.
//!
//! A spec arrives as TOML (a file) or JSON (the API) in the same shape. Both are first turned
//! into one neutral tree, then checked field by field: validation reports *every* problem at
//! once, each with its field path, the reason and a hint, and no input makes it panic.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::geo::LatencyTier;
use crate::ident::id_problem;
use crate::metric::{Family, Precision};
use crate::network::{Arch, Network, Place};
use crate::time::Ts;

/// Largest spec accepted, bytes. A job spec is a few hundred bytes; anything near this is a
/// mistake (or an attack), and refusing it early keeps memory bounded.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// Kinds of work (R3). The kind drives the east→west policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Inference,
    Training,
    FineTuning,
    Rendering,
    Analytics,
    Backup,
    Hpc,
    Batch,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::Inference,
        JobKind::Training,
        JobKind::FineTuning,
        JobKind::Rendering,
        JobKind::Analytics,
        JobKind::Backup,
        JobKind::Hpc,
        JobKind::Batch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Inference => "inference",
            JobKind::Training => "training",
            JobKind::FineTuning => "fine-tuning",
            JobKind::Rendering => "rendering",
            JobKind::Analytics => "analytics",
            JobKind::Backup => "backup",
            JobKind::Hpc => "hpc",
            JobKind::Batch => "batch",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Position in [`JobKind::ALL`] (for per-kind tables).
    pub fn index(self) -> usize {
        JobKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// Whether work of this kind may have its start deferred at all: delay-tolerant kinds
    /// always, others only without a latency tier and unless they are inference.
    pub fn may_wait(self, has_latency_tier: bool) -> bool {
        self.is_delay_tolerant() || (!has_latency_tier && self != JobKind::Inference)
    }

    /// Delay-tolerant kinds move west under 东数西算 (R3): training, fine-tuning, rendering,
    /// offline analytics, storage backup.
    pub fn is_delay_tolerant(self) -> bool {
        matches!(
            self,
            JobKind::Training | JobKind::FineTuning | JobKind::Rendering | JobKind::Analytics | JobKind::Backup
        )
    }
}

/// Data classification. `restricted` data may not leave its region, so the compute must come
/// to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    #[default]
    Public,
    Internal,
    Restricted,
}

impl Classification {
    pub fn parse(s: &str) -> Option<Classification> {
        match s {
            "public" => Some(Classification::Public),
            "internal" => Some(Classification::Internal),
            "restricted" => Some(Classification::Restricted),
            _ => None,
        }
    }
}

/// A minimum per-unit throughput at a precision, instead of naming a device model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub precision: Precision,
    pub tflops: f64,
}

/// One architecture variant the job can run as (R2 cross-architecture deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub arch: Arch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator_kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    pub family: Family,
    /// Units wanted at once in one site (a gang).
    pub count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_throughput: Option<Throughput>,
    /// Memory per unit, GiB.
    pub memory_gib: u32,
    /// Empty = any architecture.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// How long the job runs: a wall time on the requested resources, or an amount of work in the
/// unified metric (PFLOP, FP32-equivalent) that runs faster on faster units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Work {
    RunTime { run_time_s: u32 },
    Amount { amount_pflop: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Input {
    pub size_gb: f64,
    /// A city or site id.
    pub location: String,
    pub classification: Classification,
    /// The registry's dataset this input is (`prefix/suffix`, normalised), when named by id:
    /// the control plane filled size, location and classification from its record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// A checked job spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub name: String,
    pub tenant: String,
    pub kind: JobKind,
    pub resources: Resources,
    pub work: Work,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    pub origin: String,
    /// `None` = no latency requirement.
    #[serde(serialize_with = "ser_tier")]
    pub latency_tier: Option<LatencyTier>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_ts")]
    pub deadline: Option<Ts>,
    /// How long the scheduler may defer the start for greener or cheaper hours, in seconds
    /// (`start_within`: `"6h"`, `"1h30m"` or seconds); `None` takes the operator's default for
    /// the job's kind (`data/policy.toml`). Waiting for capacity is not deferral.
    #[serde(rename = "start_within", skip_serializing_if = "Option::is_none")]
    pub start_within_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_fen: Option<i64>,
    pub min_green_share: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_regions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_sites: Vec<String>,
    pub priority: u8,
    pub preemptible: bool,
    /// Seconds of running between checkpoints (`checkpoint_s`): a job moved off a lost
    /// site resumes from its last checkpoint instead of from the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_s: Option<u32>,
    /// What to execute, for jobs that run for real on an agent's executor (the twin's and the
    /// simulated sites' jobs need none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// The market contract (issue 16) whose capacity the job runs on: the control plane checks
    /// it is the tenant's and current, and confines the job to its seller's sites and window;
    /// its compute and energy were paid at the auction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<u64>,
    /// The most the tenant pays per unit·hour, fen (issue 16): the job becomes a bid on the
    /// market product that fits it, and runs on the contract it wins once its window begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<u64>,
}

/// The command a real executor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub command: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn ser_tier<S: serde::Serializer>(t: &Option<LatencyTier>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.map_or("none", LatencyTier::as_str))
}

#[allow(clippy::ref_option)]
fn ser_ts<S: serde::Serializer>(t: &Option<Ts>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Field path: `resources.count`, `allowed_sites[1]`; `$` for the document itself.
    pub field: String,
    pub reason: String,
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// A neutral document tree that TOML and JSON both map onto.
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A TOML datetime, kept as its text.
    Datetime(String),
    Array(Vec<Tree>),
    Table(BTreeMap<String, Tree>),
}

impl Tree {
    fn type_name(&self) -> &'static str {
        match self {
            Tree::Null => "null",
            Tree::Bool(_) => "a boolean",
            Tree::Int(_) => "an integer",
            Tree::Float(_) => "a float",
            Tree::Str(_) => "a string",
            Tree::Datetime(_) => "a datetime",
            Tree::Array(_) => "an array",
            Tree::Table(_) => "a table",
        }
    }

    pub fn from_toml(v: toml::Value) -> Tree {
        match v {
            toml::Value::String(s) => Tree::Str(s),
            toml::Value::Integer(i) => Tree::Int(i),
            toml::Value::Float(f) => Tree::Float(f),
            toml::Value::Boolean(b) => Tree::Bool(b),
            toml::Value::Datetime(d) => Tree::Datetime(d.to_string()),
            toml::Value::Array(a) => Tree::Array(a.into_iter().map(Tree::from_toml).collect()),
            toml::Value::Table(t) => Tree::Table(t.into_iter().map(|(k, v)| (k, Tree::from_toml(v))).collect()),
        }
    }

    pub fn from_json(v: serde_json::Value) -> Tree {
        match v {
            serde_json::Value::Null => Tree::Null,
            serde_json::Value::Bool(b) => Tree::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Tree::Int(i),
                // u64 beyond i64 or a real: keep the magnitude so range checks can name it
                None => Tree::Float(n.as_f64().unwrap_or(f64::INFINITY)),
            },
            serde_json::Value::String(s) => Tree::Str(s),
            serde_json::Value::Array(a) => Tree::Array(a.into_iter().map(Tree::from_json).collect()),
            serde_json::Value::Object(o) => Tree::Table(o.into_iter().map(|(k, v)| (k, Tree::from_json(v))).collect()),
        }
    }
}

/// Checks the raw bytes of a TOML spec file.
/// A deadline at most this far after now (100 years).
const MAX_DEADLINE_AHEAD_MS: i64 = 100 * 366 * 24 * 3_600_000;

pub fn parse_toml(bytes: &[u8], net: &Network, now: Ts) -> Result<Job, Vec<Problem>> {
    let text = decode(bytes)?;
    let value: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| line_col(text, s.start)).unwrap_or_default();
        vec![problem("$", format!("not valid TOML{at}: {}", e.message()), "check the syntax at that position")]
    })?;
    validate(&Tree::Table(value.into_iter().map(|(k, v)| (k, Tree::from_toml(v))).collect()), net, now)
}

/// Checks the raw bytes of a JSON spec (the API's body).
pub fn parse_json(bytes: &[u8], net: &Network, now: Ts) -> Result<Job, Vec<Problem>> {
    let text = decode(bytes)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        vec![problem(
            "$",
            format!("not valid JSON at line {}, column {}: {e}", e.line(), e.column()),
            "send a JSON object in the job spec's shape",
        )]
    })?;
    validate(&Tree::from_json(value), net, now)
}

fn decode(bytes: &[u8]) -> Result<&str, Vec<Problem>> {
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(vec![problem(
            "$",
            format!("the spec is {} bytes; the limit is {MAX_SPEC_BYTES}", bytes.len()),
            "a job spec is a few hundred bytes: put large data in `input`, not in the spec",
        )]);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        vec![problem("$", format!("not UTF-8: invalid byte at offset {}", e.valid_up_to()), "save the file as UTF-8")]
    })
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {col}")
}

fn problem(field: impl Into<String>, reason: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem { field: field.into(), reason: reason.into(), hint: hint.into() }
}

/// Walks a table, collecting problems and remembering which keys were read so unknown ones
/// can be reported.
struct Fields<'a> {
    prefix: String,
    table: &'a BTreeMap<String, Tree>,
    known: &'static [&'static str],
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>, hint: impl Into<String>) {
        self.problems.push(problem(field, reason, hint));
    }

    fn table<'a>(&mut self, path: &str, v: &'a Tree, known: &'static [&'static str]) -> Option<Fields<'a>> {
        let Tree::Table(table) = v else {
            self.push(path, format!("must be a table, found {}", v.type_name()), "");
            return None;
        };
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let at = if path == "$" { key.clone() } else { format!("{path}.{key}") };
                let hint = closest(key, known)
                    .map_or_else(|| format!("known fields: {}", known.join(", ")), |k| format!("did you mean `{k}`?"));
                self.push(at, "unknown field", hint);
            }
        }
        Some(Fields { prefix: if path == "$" { String::new() } else { format!("{path}.") }, table, known })
    }
}

impl<'a> Fields<'a> {
    fn path(&self, key: &str) -> String {
        debug_assert!(self.known.contains(&key), "{key} not declared");
        format!("{}{key}", self.prefix)
    }

    fn get(&self, key: &str) -> Option<&'a Tree> {
        match self.table.get(key) {
            Some(Tree::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    fn required(&self, c: &mut Checker, key: &str, hint: &str) -> Option<&'a Tree> {
        let v = self.get(key);
        if v.is_none() {
            c.push(self.path(key), "is required", hint);
        }
        v
    }

    fn str(&self, c: &mut Checker, key: &str, required: bool, hint: &str) -> Option<&'a str> {
        let v = if required { self.required(c, key, hint)? } else { self.get(key)? };
        match v {
            Tree::Str(s) => Some(s),
            other => {
                c.push(self.path(key), format!("must be a string, found {}", other.type_name()), hint);
                None
            }
        }
    }

    /// An integer in `lo..=hi`.
    fn int(&self, c: &mut Checker, key: &str, required: bool, lo: i64, hi: i64, hint: &str) -> Option<i64> {
        let v = if required { self.required(c, key, hint)? } else { self.get(key)? };
        match v {
            Tree::Int(i) if (lo..=hi).contains(i) => Some(*i),
            Tree::Int(i) => {
                c.push(self.path(key), format!("{i} is out of range {lo}..={hi}"), hint);
                None
            }
            Tree::Float(f) => {
                c.push(self.path(key), format!("must be an integer, found {f}"), hint);
                None
            }
            other => {
                c.push(self.path(key), format!("must be an integer, found {}", other.type_name()), hint);
                None
            }
        }
    }

    /// A finite number in `[lo, hi]` (integers accepted).
    fn num(&self, c: &mut Checker, key: &str, required: bool, lo: f64, hi: f64, hint: &str) -> Option<f64> {
        let v = if required { self.required(c, key, hint)? } else { self.get(key)? };
        let x = match v {
            Tree::Int(i) => *i as f64,
            Tree::Float(f) => *f,
            other => {
                c.push(self.path(key), format!("must be a number, found {}", other.type_name()), hint);
                return None;
            }
        };
        if !x.is_finite() {
            c.push(self.path(key), format!("must be a finite number, found {x}"), hint);
            None
        } else if x < lo || x > hi {
            c.push(self.path(key), format!("{x} is out of range [{lo}, {hi}]"), hint);
            None
        } else {
            Some(x)
        }
    }

    fn bool(&self, c: &mut Checker, key: &str) -> Option<bool> {
        match self.get(key)? {
            Tree::Bool(b) => Some(*b),
            other => {
                c.push(self.path(key), format!("must be true or false, found {}", other.type_name()), "");
                None
            }
        }
    }

    fn str_list(&self, c: &mut Checker, key: &str, hint: &str) -> Vec<(String, &'a str)> {
        let Some(v) = self.get(key) else {
            return vec![];
        };
        let Tree::Array(items) = v else {
            c.push(self.path(key), format!("must be an array of strings, found {}", v.type_name()), hint);
            return vec![];
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}[{i}]", self.path(key));
            match item {
                Tree::Str(s) => out.push((at, s.as_str())),
                other => c.push(at, format!("must be a string, found {}", other.type_name()), hint),
            }
        }
        out
    }
}

/// The known word nearest to `word`, when it is close enough to be a typo.
fn closest(word: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

const TOP: &[&str] = &[
    "name",
    "tenant",
    "kind",
    "resources",
    "work",
    "input",
    "origin",
    "latency_tier",
    "deadline",
    "start_within",
    "budget_fen",
    "min_green_share",
    "allowed_regions",
    "allowed_sites",
    "priority",
    "preemptible",
    "checkpoint_s",
    "run",
    "contract",
    "max_price",
];
const RUN: &[&str] = &["command", "args", "env"];
const RESOURCES: &[&str] = &["family", "count", "accelerator", "min_throughput", "memory_gib", "variants"];
const THROUGHPUT: &[&str] = &["precision", "tflops"];
const VARIANT: &[&str] = &["arch", "accelerator_kind"];
const WORK: &[&str] = &["run_time_s", "amount_pflop"];
const INPUT: &[&str] = &["size_gb", "location", "classification", "dataset"];

/// Largest gang: units of one pool at once.
pub const MAX_COUNT: i64 = 1_000_000;
/// Longest run time: one year.
pub const MAX_RUN_TIME_S: i64 = 366 * 24 * 3600;
/// The highest `max_price` a job may bid, fen per unit·hour (as an order's price).
pub const MAX_PRICE_FEN: i64 = 10_000_000;
/// Longest `start_within`: a year (the scheduler defers within its horizon anyway).
pub const MAX_START_WITHIN_S: i64 = 366 * 24 * 3600;
/// Largest input: 100 PB.
pub const MAX_INPUT_GB: f64 = 1e8;

/// Checks a spec tree against the network at time `now`.
pub fn validate(doc: &Tree, net: &Network, now: Ts) -> Result<Job, Vec<Problem>> {
    let mut c = Checker { problems: vec![] };
    let Some(top) = c.table("$", doc, TOP) else {
        return Err(c.problems);
    };

    let name = top.str(&mut c, "name", true, "a short name such as \"llm-finetune-7b\"").and_then(|n| {
        let ok =
            !n.is_empty() && n.len() <= 128 && n.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch));
        if !ok {
            c.push("name", format!("{n:?} is not a valid name"), "1–128 ASCII letters, digits, '.', '_' or '-'");
        }
        ok.then(|| n.to_string())
    });
    let tenant =
        top.str(&mut c, "tenant", true, "the tenant's id, e.g. \"acme-ai\"").and_then(|t| match id_problem(t) {
            Some(why) => {
                c.push("tenant", format!("{t:?} {why}"), "tenant ids are lowercase ASCII, e.g. \"acme-ai\"");
                None
            }
            None => Some(t.to_string()),
        });
    let kinds = JobKind::ALL.map(JobKind::as_str).join(", ");
    let kind = top.str(&mut c, "kind", true, &format!("one of {kinds}")).and_then(|k| {
        let kind = JobKind::parse(k);
        if kind.is_none() {
            let hint = closest(k, &JobKind::ALL.map(JobKind::as_str))
                .map_or_else(|| format!("one of {kinds}"), |k| format!("did you mean `{k}`?"));
            c.push("kind", format!("unknown kind {k:?}"), hint);
        }
        kind
    });

    let origin = top.str(&mut c, "origin", true, "the demand city the work comes from, e.g. \"shanghai\"").and_then(
        |o| match net.place(o) {
            Some(Place::City(_)) => Some(o.to_string()),
            Some(p) => {
                c.push("origin", format!("{o:?} is a {}, not a demand city", p.kind()), city_hint(net, o));
                None
            }
            None => {
                c.push("origin", format!("unknown city {o:?}"), city_hint(net, o));
                None
            }
        },
    );

    let latency_tier = top.str(&mut c, "latency_tier", false, "").and_then(|t| match t {
        "city" => Some(Some(LatencyTier::City)),
        "regional" => Some(Some(LatencyTier::Regional)),
        "cross-hub" => Some(Some(LatencyTier::CrossHub)),
        "none" => Some(None),
        other => {
            c.push(
                "latency_tier",
                format!("unknown tier {other:?}"),
                "one of city (≤ 1 ms), regional (≤ 5 ms), cross-hub (≤ 20 ms), none",
            );
            None
        }
    });

    let resources = top
        .required(&mut c, "resources", "a [resources] table with at least family and count")
        .and_then(|v| resources(&mut c, v, net));
    let work =
        top.required(&mut c, "work", "a [work] table with run_time_s or amount_pflop").and_then(|v| work(&mut c, v));
    let input = top.get("input").and_then(|v| input(&mut c, v, net));

    let deadline = top.get("deadline").and_then(|v| {
        let text = match v {
            Tree::Str(s) | Tree::Datetime(s) => s.as_str(),
            other => {
                c.push(
                    "deadline",
                    format!("must be an RFC 3339 timestamp, found {}", other.type_name()),
                    "e.g. \"2026-12-01T00:00:00Z\"",
                );
                return None;
            }
        };
        match Ts::parse(text) {
            Ok(t) if t <= now => {
                c.push(
                    "deadline",
                    format!("{t} is in the past (now is {now})"),
                    "set a deadline after now, or leave it out",
                );
                None
            }
            // a deadline decades away means no deadline; beyond this the scheduler's time
            // arithmetic would leave the range it is checked for
            // (a restore parses with `now` at the dawn of time: no horizon then)
            Ok(t) if t.0.checked_sub(now.0).is_some_and(|ahead| ahead > MAX_DEADLINE_AHEAD_MS) => {
                c.push(
                    "deadline",
                    format!("{t} is more than 100 years after now"),
                    "leave the deadline out when the job has none",
                );
                None
            }
            Ok(t) => Some(t),
            Err(e) if text.trim_start().starts_with("9999") || e.contains("overflowed") || e.contains("range") => {
                c.push(
                    "deadline",
                    format!("{text:?} is out of the range of times (up to 9999-12-30)"),
                    "leave the deadline out when the job has none",
                );
                None
            }
            Err(e) => {
                c.push(
                    "deadline",
                    format!("{text:?}: {e}"),
                    "e.g. \"2026-12-01T00:00:00Z\" (UTC) or with an offset \"+08:00\"",
                );
                None
            }
        }
    });
    let start_within_s = top.get("start_within").and_then(|v| {
        let hint = "how long the start may be deferred: \"6h\", \"1h30m\", \"0s\" or seconds";
        let parsed = match v {
            Tree::Str(s) => crate::time::parse_duration_s(s),
            Tree::Int(i) => crate::time::parse_duration_s(&i.to_string()),
            other => Err(format!("must be a duration, found {}", other.type_name())),
        };
        match parsed {
            Ok(s) if s <= MAX_START_WITHIN_S => Some(s),
            Ok(s) => {
                c.push("start_within", format!("{s} s is more than 366 days"), hint);
                None
            }
            Err(e) => {
                c.push("start_within", e, hint);
                None
            }
        }
    });
    let budget_fen = top.int(
        &mut c,
        "budget_fen",
        false,
        0,
        i64::MAX / 4,
        "the most the tenant will pay, in fen (1/100 CNY), e.g. 500000 = ¥5,000",
    );
    let min_green_share =
        top.num(&mut c, "min_green_share", false, 0.0, 1.0, "a fraction of green power between 0 and 1").unwrap_or(0.0);
    let allowed_regions = top
        .str_list(&mut c, "allowed_regions", "hub or green-region ids")
        .into_iter()
        .filter_map(|(at, r)| {
            if net.is_region(r) {
                Some(r.to_string())
            } else {
                let ids: Vec<&str> =
                    net.hubs.iter().map(|h| h.id.as_str()).chain(net.regions.iter().map(|r| r.id.as_str())).collect();
                c.push(at, format!("unknown region {r:?}"), format!("a hub or green region: {}", ids.join(", ")));
                None
            }
        })
        .collect();
    let allowed_sites = top
        .str_list(&mut c, "allowed_sites", "site ids, see `suanwang network`")
        .into_iter()
        .filter_map(|(at, s)| {
            if net.site(s).is_some() {
                Some(s.to_string())
            } else {
                c.push(at, format!("unknown site {s:?}"), "see `suanwang network` for site ids");
                None
            }
        })
        .collect();
    let priority =
        top.int(&mut c, "priority", false, 0, 9, "0 (lowest) to 9 (highest); default 5").map_or(5, |p| p as u8);
    let preemptible = top.bool(&mut c, "preemptible").unwrap_or(false);
    let checkpoint_s = top
        .int(
            &mut c,
            "checkpoint_s",
            false,
            1,
            MAX_RUN_TIME_S,
            "seconds of running between the job's checkpoints (a moved job resumes from the last)",
        )
        .map(|s| s as u32);
    let run = top.get("run").and_then(|v| run(&mut c, v));
    let contract = top
        .int(
            &mut c,
            "contract",
            false,
            1,
            i64::MAX,
            "the number of a market contract of the tenant (suanwang contract list)",
        )
        .map(|n| n as u64);
    let max_price = top
        .int(
            &mut c,
            "max_price",
            false,
            1,
            MAX_PRICE_FEN,
            "the most the tenant pays per unit·hour at auction, fen (1 to 10,000,000)",
        )
        .map(|n| n as u64);
    if contract.is_some() && max_price.is_some() {
        c.problems.push(problem(
            "max_price",
            "a job on a contract has its capacity already: it does not bid",
            "leave out `max_price` or `contract`",
        ));
    }

    match (name, tenant, kind, origin, latency_tier.or(Some(None)), resources, work) {
        (Some(name), Some(tenant), Some(kind), Some(origin), Some(latency_tier), Some(resources), Some(work))
            if c.problems.is_empty() =>
        {
            Ok(Job {
                name,
                tenant,
                kind,
                resources,
                work,
                input,
                origin,
                latency_tier,
                deadline,
                start_within_s,
                budget_fen,
                min_green_share,
                allowed_regions,
                allowed_sites,
                priority,
                preemptible,
                checkpoint_s,
                run,
                contract,
                max_price,
            })
        }
        _ => Err(c.problems),
    }
}

fn city_hint(net: &Network, got: &str) -> String {
    let ids: Vec<&str> = net.cities.iter().map(|c| c.id.as_str()).collect();
    closest(got, &ids)
        .map_or_else(|| format!("a demand city id: {}", ids.join(", ")), |k| format!("did you mean `{k}`?"))
}

fn resources(c: &mut Checker, v: &Tree, net: &Network) -> Option<Resources> {
    let r = c.table("resources", v, RESOURCES)?;
    let family = r.str(c, "family", true, "general (CPU), intelligent (GPU/NPU) or super (HPC)").and_then(|f| {
        let fam = Family::parse(f);
        if fam.is_none() {
            c.push(
                "resources.family",
                format!("unknown family {f:?}"),
                "general (CPU), intelligent (GPU/NPU) or super (HPC)",
            );
        }
        fam
    });
    let count = r.int(c, "count", true, 1, MAX_COUNT, "units at once: cores, accelerators or nodes by family");
    let memory_gib = r.int(c, "memory_gib", false, 0, 16_384, "memory per unit, GiB").unwrap_or(0);
    let accelerator = r.str(c, "accelerator", false, "").and_then(|a| {
        if net.accelerator(a).is_some() {
            Some(a.to_string())
        } else {
            let ids: Vec<&str> = net.accelerators.iter().map(|x| x.id.as_str()).collect();
            c.push(
                "resources.accelerator",
                format!("unknown accelerator model {a:?}"),
                format!("one of {}", ids.join(", ")),
            );
            None
        }
    });
    if accelerator.is_some() && family.is_some_and(|f| f != Family::Intelligent) {
        c.push(
            "resources.accelerator",
            "only intelligent jobs name an accelerator",
            "set family = \"intelligent\" or drop the accelerator",
        );
    }
    let min_throughput = r.get("min_throughput").and_then(|v| {
        let t = c.table("resources.min_throughput", v, THROUGHPUT)?;
        let precision = t.str(c, "precision", true, "fp64, fp32, fp16 or int8").and_then(|p| {
            let prec = Precision::parse(p);
            if prec.is_none() {
                c.push(
                    "resources.min_throughput.precision",
                    format!("unknown precision {p:?}"),
                    "fp64, fp32, fp16 or int8",
                );
            }
            prec
        });
        let tflops = t.num(c, "tflops", true, 1e-6, 1e6, "per-unit peak at that precision, TFLOPS (TOPS for int8)");
        Some(Throughput { precision: precision?, tflops: tflops? })
    });
    if accelerator.is_some() && min_throughput.is_some() {
        c.push(
            "resources.min_throughput",
            "give an accelerator model or a minimum throughput, not both",
            "drop one of them",
        );
    }
    let mut variants = vec![];
    if let Some(v) = r.get("variants") {
        if let Tree::Array(items) = v {
            for (i, item) in items.iter().enumerate() {
                let path = format!("resources.variants[{i}]");
                let Some(t) = c.table(&path, item, VARIANT) else {
                    continue;
                };
                let arch = t.str(c, "arch", true, "x86_64 or aarch64").and_then(|a| {
                    let arch = Arch::parse(a);
                    if arch.is_none() {
                        c.push(format!("{path}.arch"), format!("unknown architecture {a:?}"), "x86_64 or aarch64");
                    }
                    arch
                });
                let kind = t.str(c, "accelerator_kind", false, "").and_then(|k| {
                    if net.accelerators.iter().any(|a| a.kind == k) {
                        Some(k.to_string())
                    } else {
                        let mut kinds: Vec<&str> = net.accelerators.iter().map(|a| a.kind.as_str()).collect();
                        kinds.dedup();
                        c.push(
                            format!("{path}.accelerator_kind"),
                            format!("unknown accelerator kind {k:?}"),
                            format!("one of {}", kinds.join(", ")),
                        );
                        None
                    }
                });
                if let Some(arch) = arch {
                    variants.push(Variant { arch, accelerator_kind: kind });
                }
            }
        } else {
            c.push(
                "resources.variants",
                format!("must be an array of tables, found {}", v.type_name()),
                "[[resources.variants]] arch = \"x86_64\"",
            );
        }
    }
    Some(Resources {
        family: family?,
        count: u32::try_from(count?).ok()?,
        accelerator,
        min_throughput,
        memory_gib: memory_gib as u32,
        variants,
    })
}

#[allow(clippy::many_single_char_names)] // c, v, r, k, s: checker, value, table, key, string
fn run(c: &mut Checker, v: &Tree) -> Option<Run> {
    let r = c.table("run", v, RUN)?;
    let command = r.str(c, "command", true, "the program to run, e.g. \"python3\" or \"/opt/app/bin/train\"");
    if let Some(cmd) = command
        && (cmd.trim().is_empty() || cmd.len() > 4096 || cmd.contains('\0'))
    {
        c.push(
            "run.command",
            "must be a non-empty program name or path (at most 4,096 bytes, no NUL)",
            "e.g. \"python3\"",
        );
    }
    let args: Vec<String> =
        r.str_list(c, "args", "a list of strings").into_iter().map(|(_, a)| a.to_string()).collect();
    if args.len() > 4096 {
        c.push("run.args", format!("{} arguments; the limit is 4,096", args.len()), "pass large inputs as files");
    }
    let mut env = BTreeMap::new();
    if let Some(v) = r.get("env") {
        match v {
            Tree::Table(t) => {
                for (k, val) in t {
                    let ok_key = !k.is_empty()
                        && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                        && !k.starts_with(|ch: char| ch.is_ascii_digit());
                    match val {
                        Tree::Str(s) if ok_key => {
                            env.insert(k.clone(), s.clone());
                        }
                        Tree::Str(_) => c.push(
                            format!("run.env.{k}"),
                            "is not a variable name",
                            "letters, digits and '_', not starting with a digit",
                        ),
                        other => {
                            c.push(
                                format!("run.env.{k}"),
                                format!("must be a string, found {}", other.type_name()),
                                "",
                            );
                        }
                    }
                }
            }
            other => c.push(
                "run.env",
                format!("must be a table of strings, found {}", other.type_name()),
                "env = { KEY = \"value\" }",
            ),
        }
    }
    let command = command?.to_string();
    (!command.trim().is_empty()).then_some(Run { command, args, env })
}

fn work(c: &mut Checker, v: &Tree) -> Option<Work> {
    let w = c.table("work", v, WORK)?;
    let run_time = w.int(
        c,
        "run_time_s",
        false,
        1,
        MAX_RUN_TIME_S,
        "wall time in seconds on the requested resources, at most one year",
    );
    let amount = w.num(c, "amount_pflop", false, 1e-9, 1e15, "work in PFLOP (FP32-equivalent, the unified metric)");
    match (w.get("run_time_s"), w.get("amount_pflop")) {
        (Some(_), Some(_)) => {
            c.push("work", "give run_time_s or amount_pflop, not both", "keep the one you know");
            None
        }
        (None, None) => {
            c.push("work.run_time_s", "is required (or work.amount_pflop)", "e.g. run_time_s = 3600");
            None
        }
        _ => run_time
            .map(|s| Work::RunTime { run_time_s: s as u32 })
            .or(amount.map(|a| Work::Amount { amount_pflop: a })),
    }
}

fn input(c: &mut Checker, v: &Tree, net: &Network) -> Option<Input> {
    let i = c.table("input", v, INPUT)?;
    let size_gb = i.num(c, "size_gb", true, 0.0, MAX_INPUT_GB, "input size in GB, at most 100 PB");
    let location =
        i.str(c, "location", true, "the city or site id where the data is now").and_then(|l| match net.place(l) {
            Some(Place::City(_) | Place::Site(_)) => Some(l.to_string()),
            Some(p) => {
                c.push(
                    "input.location",
                    format!("{l:?} is a {}; data lives in a city or a site", p.kind()),
                    "name a city or site id",
                );
                None
            }
            None => {
                c.push("input.location", format!("unknown city or site {l:?}"), "see `suanwang network` for ids");
                None
            }
        });
    let classification = i.str(c, "classification", false, "").map_or(Some(Classification::Public), |s| {
        let cls = Classification::parse(s);
        if cls.is_none() {
            c.push(
                "input.classification",
                format!("unknown classification {s:?}"),
                "public, internal or restricted (may not leave its region)",
            );
        }
        cls
    });
    let dataset = match i.str(c, "dataset", false, "") {
        None => Some(None),
        Some(given) => match crate::dataid::DataId::parse(given) {
            Ok(id) => Some(Some(id.to_string())),
            Err(e) => {
                c.push(
                    "input.dataset",
                    e.why,
                    "a dataset id is prefix/suffix, e.g. 88.156.1/1KX9QZ4M7T2BDE (see `suanwang dataset list`)",
                );
                None
            }
        },
    };
    Some(Input { size_gb: size_gb?, location: location?, classification: classification?, dataset: dataset? })
}
