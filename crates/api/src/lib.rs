//! Suanwang's wire format (R3, R7): the JSON bodies of the HTTP API under `/v1` and the
//! OpenAPI document that describes them.
//!
//! Architecture invariant: the only crate that knows the JSON wire format of the API; the
//! server maps its state to these types and nothing else is serialised onto the wire.

pub mod agent;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use suanwang_core::{Network, Ts};
use suanwang_engine::{JobState, Meter, Usage};

/// Every 4xx/5xx body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_spec`, `unauthorized`, `forbidden`, `not_found`, …
    pub code: String,
    pub message: String,
    pub detail: String,
    pub hint: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: u64,
    pub name: String,
    pub tenant: String,
    pub kind: String,
    pub state: JobState,
    /// Where it was placed (last attempt).
    pub site: Option<String>,
    pub pool: Option<String>,
    pub start_at: Option<Ts>,
    pub end_at: Option<Ts>,
    pub submitted_at: Ts,
    pub submitted_by: String,
    pub updated_at: Ts,
    pub attempts: u32,
    /// Why it was refused or failed.
    pub reason: Option<String>,
    /// Metered use, once completed (or cancelled while running).
    pub meter: Option<Meter>,
    /// What the last real run used, as its agent measured it (jobs with a `run` section).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The spec as submitted.
    pub spec: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// `GET /healthz`.
pub fn health(store: &str, jobs: usize) -> Value {
    json!({ "status": "ok", "store": store, "jobs": jobs })
}

/// The network for `GET /v1/network` and `suanwang network --json`: top-level arrays `hubs`,
/// `clusters`, `cities`, `sites`, `links` (and `regions`, `pairings`, `metric`, `totals`).
pub fn network_document(net: &Network) -> Value {
    use suanwang_core::Family;
    use suanwang_core::network::Site;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let caps = |pred: &dyn Fn(&Site) -> bool| {
        let c = net.capacity_ucu(pred);
        json!({"general": round(c[&Family::General]), "intelligent": round(c[&Family::Intelligent]), "super": round(c[&Family::Super])})
    };
    let green = |sites: &[&Site]| {
        let (mut w, mut g) = (0.0, 0.0);
        for s in sites {
            let power: f64 = s.pools.iter().map(|p| p.power_w_per_unit * p.count as f64).sum();
            w += power;
            g += power * net.green_profile(&s.green_profile).map_or(0.0, suanwang_core::GreenProfile::mean);
        }
        if w > 0.0 { round(g / w) } else { 0.0 }
    };
    let hubs: Vec<Value> = net
        .hubs
        .iter()
        .map(|h| {
            let sites: Vec<&Site> = net.sites.iter().filter(|s| s.hub.as_deref() == Some(h.id.as_str())).collect();
            json!({
                "id": h.id, "name_cn": h.name_cn, "name_en": h.name_en, "side": h.side,
                "clusters": net.clusters.iter().filter(|c| c.hub == h.id).map(|c| c.id.clone()).collect::<Vec<_>>(),
                "sites": sites.len(),
                "capacity_ucu": caps(&|s: &Site| s.hub.as_deref() == Some(h.id.as_str())),
                "green_share": green(&sites),
            })
        })
        .collect();
    let sites: Vec<Value> = net
        .sites
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "name_cn": s.name_cn, "cluster": s.cluster, "hub": s.hub, "region": s.region, "backup": s.backup,
                "side": s.side, "province": s.province, "lat": s.lat, "lon": s.lon, "racks": s.racks,
                "pue": s.pue, "grid_factor_kg_per_kwh": s.grid_factor_kg_per_kwh,
                "green_share": green(&[s]),
                "tariff_mean_fen_per_mwh": net.tariff(&s.tariff).map_or(0.0, |t| t.mean_fen_per_mwh().round()),
                "capacity_ucu": caps(&|x: &Site| x.id == s.id),
                "pools": s.pools.iter().map(|p| json!({
                    "id": p.id, "family": p.family, "model": p.model, "unit": p.unit, "count": p.count,
                    "arch": p.arch, "accelerator_kind": p.accelerator_kind,
                    "memory_gib_per_unit": p.memory_gib_per_unit, "power_w_per_unit": p.power_w_per_unit,
                    "price_fen_per_unit_hour": p.price_fen_per_unit_hour,
                    "peak_per_unit": p.peak_per_unit, "ucu_per_unit": round(p.ucu_per_unit),
                    "capacity_ucu": round(p.capacity_ucu()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let links: Vec<Value> = net
        .links
        .iter()
        .map(|l| {
            let lat = net.latency(&l.a, &l.b).ok();
            json!({
                "a": l.a, "b": l.b, "kind": l.kind, "bandwidth_gbps": l.bandwidth_gbps,
                "price_fen_per_gb": l.price_fen_per_gb, "available": l.available,
                "one_way_ms": lat.map(|x| round(x.one_way_ms)), "tier": lat.map(|x| x.tier),
                "measured": lat.is_some_and(|x| x.measured),
            })
        })
        .collect();
    json!({
        "metric": { "version": net.metric.version, "unit": net.metric.unit, "description": net.metric.unit_description },
        "totals": {
            "capacity_ucu": caps(&|_: &Site| true),
            "hub_capacity_ucu": caps(&Site::in_hub),
            "sites": net.sites.len(),
            "pools": net.sites.iter().map(|s| s.pools.len()).sum::<usize>(),
        },
        "hubs": hubs,
        "clusters": net.clusters,
        "regions": net.regions,
        "cities": net.cities,
        "sites": sites,
        "links": links,
        "pairings": net.pairings,
    })
}

/// The routes the server serves: (method, path, summary, roles allowed). The OpenAPI document
/// is built from this list, and a test checks the router serves exactly these.
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/healthz", "Liveness and store kind", "anyone"),
    ("get", "/metrics", "Prometheus text metrics", "anyone"),
    ("get", "/openapi.json", "This document", "anyone"),
    ("post", "/v1/jobs", "Submit a job (the job spec as JSON; Idempotency-Key header)", "operator, tenant"),
    (
        "get",
        "/v1/jobs",
        "List jobs (filters: state, tenant; pagination: limit, after)",
        "operator, regulator, tenant (own)",
    ),
    ("get", "/v1/jobs/{id}", "One job", "operator, regulator, tenant (own)"),
    ("post", "/v1/jobs/{id}/cancel", "Cancel a job", "operator, tenant (own)"),
    ("post", "/v1/plan", "Dry run: where, when and how a job would run, and why", "operator, regulator, tenant"),
    ("get", "/v1/sites", "Sites, pools, availability and use now", "every role"),
    ("get", "/v1/network", "The whole network", "every role"),
    ("get", "/v1/kpis", "Job counts, placements, green and hub shares", "operator, regulator"),
    ("get", "/v1/jobs/{id}/logs", "Output of a job run by an agent", "operator, regulator, tenant (own)"),
    (
        "post",
        "/v1/sites/{site}/suspend",
        "Stop new placements on a site (what runs there finishes; `move=true` moves it now)",
        "operator",
    ),
    ("post", "/v1/sites/{site}/resume", "Allow placements on a suspended site again", "operator"),
    (
        "post",
        "/v1/sites/{site}/approve",
        "Approve an agent's site: it takes placements from now on (`owner=PROVIDER` hands it to that provider)",
        "operator",
    ),
    (
        "post",
        "/v1/agents/register",
        "An agent connects its machine as a site (declared ≤ detected capacity, within the provider's caps and the price band; a provider's site is pending until the operator approves it)",
        "operator, provider (own sites)",
    ),
    (
        "get",
        "/v1/agents/{site}/assignments",
        "An agent's work and its `version` (long-poll: `wait` s or `wait_ms`, answering as soon as it differs from `known`; also its heartbeat)",
        "operator, provider (own sites)",
    ),
    (
        "post",
        "/v1/agents/{site}/reports",
        "An agent reports how a run ended, with its output (usage must be finite, non-negative and plausible, else 422)",
        "operator, provider (own sites)",
    ),
    (
        "put",
        "/v1/agents/{site}/checkpoints/{id}",
        "The current attempt keeps its checkpoint (gzipped tar, ≤ 64 MiB; `attempt` query = fencing token)",
        "operator, provider (own sites)",
    ),
    (
        "get",
        "/v1/agents/{site}/checkpoints/{id}",
        "A job's newest checkpoint, for the site it is assigned to now",
        "operator, provider (own sites)",
    ),
];

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub fn openapi() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = serde_json::Map::new();
    for (method, path, summary, roles) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "description": format!("Roles: {roles}."),
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "Bad request", "content": {"application/json": {"schema": error}}},
                "401": {"description": "Missing or bad token", "content": {"application/json": {"schema": error}}},
                "403": {"description": "Role not allowed", "content": {"application/json": {"schema": error}}},
                "404": {"description": "Not found (or not yours)", "content": {"application/json": {"schema": error}}},
            },
        });
        if path.starts_with("/v1") {
            op["security"] = json!([{"bearer": []}]);
            op["responses"]["429"] = json!({
                "description": "Too many failed authentications from this address or for this principal",
                "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": error}},
            });
        }
        if *path == "/v1/jobs" && *method == "post" {
            op["parameters"] = json!([{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 128}}]);
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}}});
            op["responses"]["201"] = json!({"description": "Accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}});
            op["responses"]["413"] =
                json!({"description": "Body over 1 MiB", "content": {"application/json": {"schema": error}}});
        }
        // every path parameter is declared (after any header parameters)
        let mut params: Vec<Value> = op["parameters"].as_array().cloned().unwrap_or_default();
        if path.contains("{site}") {
            params.push(json!({"name": "site", "in": "path", "required": true,
                "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "maxLength": 64}}));
        }
        if path.contains("{id}") {
            params.push(
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}),
            );
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Suanwang control plane", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message", "detail", "hint", "field"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"},
                    "hint": {"type": "string"}, "field": {"type": ["string", "null"]}}},
                "JobSpec": {"type": "object", "description": "The job spec of `suanwang job check` (README: Job spec fields), as JSON.",
                    "required": ["name", "tenant", "kind", "origin", "resources", "work"]},
                "Job": {"type": "object", "required": ["id", "state", "name", "tenant"], "properties": {
                    "id": {"type": "integer"}, "state": {"type": "string", "enum": ["submitted", "admitted", "placed", "in_transfer", "running", "completed", "failed", "cancelled", "refused"]},
                    "name": {"type": "string"}, "tenant": {"type": "string"}, "site": {"type": ["string", "null"]}}},
            },
        },
    })
}
