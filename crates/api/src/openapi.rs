//! The route table and the OpenAPI 3.1 document built from it: components are the JSON
//! Schemas (2020-12, which OpenAPI 3.1 takes as they are) that schemars derives from the wire
//! types; paths, parameters and responses come from `ROUTES`.

use schemars::generate::{Contract, SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

/// A request or response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// None.
    Empty,
    /// JSON of the named component schema (a wire type of this crate, or of `AGENT_SCHEMAS`).
    Json(&'static str),
    /// Any JSON object.
    AnyJson,
    /// Bytes of this media type.
    Bytes(&'static str),
    /// Text of this media type.
    Text(&'static str),
    /// JSON of the named component schema, or (as a query parameter asks) bytes of this media type.
    JsonOrBytes(&'static str, &'static str),
}

/// One route the server serves.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub roles: &'static str,
    /// The request body.
    pub request: Body,
    /// The status of success and its body.
    pub status: u16,
    pub response: Body,
    /// Query parameters (described by `param`).
    pub query: &'static [&'static str],
}

const fn route(method: &'static str, path: &'static str, summary: &'static str, roles: &'static str) -> Route {
    Route { method, path, summary, roles, request: Body::Empty, status: 200, response: Body::Empty, query: &[] }
}

/// The routes the server serves. The OpenAPI document is built from this list, and a test
/// checks the router serves exactly these.
pub const ROUTES: &[Route] = &[
    Route { response: Body::Json("Health"), ..route("get", "/healthz", "Liveness and store kind", "anyone") },
    Route {
        response: Body::Text("text/html; charset=utf-8"),
        ..route("get", "/", "The web console (sign in with a token; assets under /console/)", "anyone")
    },
    Route {
        response: Body::Bytes("text/javascript"),
        ..route("get", "/console/{path}", "A console asset (embedded in the binary)", "anyone")
    },
    Route {
        response: Body::Json("WhoAmI"),
        ..route("get", "/v1/whoami", "The principal the token names", "every role")
    },
    Route {
        response: Body::Json("MapLayer"),
        ..route(
            "get",
            "/v1/map",
            "The national map's borders from the approved map the operator supplied (`--map-borders`), with its \
             approval number; empty without one (the console then draws a schematic)",
            "every role",
        )
    },
    Route {
        response: Body::Json("TwinReportList"),
        ..route(
            "get",
            "/v1/twin/reports",
            "The digital twin's reports in the server's `--twin-reports DIR`, newest first",
            "operator, regulator",
        )
    },
    Route {
        response: Body::Json("TwinReport"),
        ..route(
            "get",
            "/v1/twin/reports/{name}",
            "One report's figures: per policy cost, carbon, waits, targets, daily green share and hub utilisation",
            "operator, regulator",
        )
    },
    Route {
        response: Body::Text("text/plain; version=0.0.4"),
        ..route("get", "/metrics", "Prometheus text metrics", "anyone")
    },
    Route { response: Body::AnyJson, ..route("get", "/openapi.json", "This document", "anyone") },
    Route {
        request: Body::Json("JobSpec"),
        status: 201,
        response: Body::Json("JobView"),
        ..route(
            "post",
            "/v1/jobs",
            "Submit a job (the job spec as JSON; Idempotency-Key header: the same key again answers 200 with \
             the same job; a job with `max_price` answers 202 with the bid it became)",
            "operator, tenant (own)",
        )
    },
    Route {
        response: Body::Json("JobList"),
        query: &["state", "tenant", "limit", "after"],
        ..route(
            "get",
            "/v1/jobs",
            "List jobs in id order (filters: state, tenant; pagination: limit, after)",
            "operator, regulator, tenant (own)",
        )
    },
    Route {
        response: Body::Json("JobView"),
        ..route("get", "/v1/jobs/{id}", "One job", "operator, regulator, tenant (own)")
    },
    Route {
        response: Body::Json("JobView"),
        ..route("post", "/v1/jobs/{id}/cancel", "Cancel a job (409 once it has ended)", "operator, tenant (own)")
    },
    Route {
        request: Body::Json("JobSpec"),
        response: Body::Json("PlanAnswer"),
        ..route(
            "post",
            "/v1/plan",
            "Dry run on the live load: where, when and how a job would run, and why (or why no site can)",
            "operator, regulator, tenant",
        )
    },
    Route {
        response: Body::Json("SiteList"),
        ..route("get", "/v1/sites", "Sites, pools, approval and owner", "every role")
    },
    Route { response: Body::Json("NetworkDocument"), ..route("get", "/v1/network", "The whole network", "every role") },
    Route {
        response: Body::Json("Kpis"),
        ..route("get", "/v1/kpis", "Job counts, placements, energy, green and hub shares", "operator, regulator")
    },
    Route {
        response: Body::JsonOrBytes("JobLogs", "application/octet-stream"),
        query: &["raw"],
        ..route(
            "get",
            "/v1/jobs/{id}/logs",
            "Output of a job run by an agent: the last 64 KiB of each stream, shown as UTF-8 (invalid bytes \
             replaced); `raw=stdout` or `raw=stderr` answers that stream's bytes as they were \
             (application/octet-stream)",
            "operator, regulator, tenant (own)",
        )
    },
    Route {
        response: Body::Json("SuspendAnswer"),
        query: &["move"],
        ..route(
            "post",
            "/v1/sites/{site}/suspend",
            "Stop new placements on a site (what runs there finishes; `move=true` moves it now)",
            "operator",
        )
    },
    Route {
        response: Body::Json("SuspendAnswer"),
        ..route("post", "/v1/sites/{site}/resume", "Allow placements on a suspended site again", "operator")
    },
    Route {
        response: Body::Json("ApproveAnswer"),
        query: &["owner"],
        ..route(
            "post",
            "/v1/sites/{site}/approve",
            "Approve an agent's site: it takes placements from now on (`owner=PROVIDER` hands it to that \
             provider); 409 probe_required while its probe has not found what it declared",
            "operator",
        )
    },
    Route {
        status: 202,
        response: Body::Json("RestartAnswer"),
        ..route(
            "post",
            "/v1/admin/restart",
            "Restart the control plane in place: it re-executes itself and rebuilds its state from the newest \
             snapshot and the log after it",
            "operator",
        )
    },
    // The agent protocol: its bodies are typed in `agent.rs` (see `AGENT_SCHEMAS`).
    Route {
        request: Body::Json("RegisterRequest"),
        response: Body::Json("RegisterAnswer"),
        ..route(
            "post",
            "/v1/agents/register",
            "An agent connects its machine as a site (declared ≤ detected capacity, within the provider's caps \
             and the price band; a provider's site is pending until the operator approves it)",
            "operator, provider (own sites)",
        )
    },
    Route {
        response: Body::Json("AssignmentsAnswer"),
        query: &["wait", "wait_ms", "known"],
        ..route(
            "get",
            "/v1/agents/{site}/assignments",
            "An agent's work and its `version` (long-poll: `wait` s or `wait_ms`, answering as soon as it \
             differs from `known`; also its heartbeat)",
            "operator, provider (own sites)",
        )
    },
    Route {
        request: Body::Json("Report"),
        // the job as it is now (JobView), or for a probe job the verdict (ProbeVerdict)
        response: Body::AnyJson,
        ..route(
            "post",
            "/v1/agents/{site}/reports",
            "An agent reports how a run ended, with its output (usage must be finite, non-negative and \
             plausible, else 422)",
            "operator, provider (own sites)",
        )
    },
    Route {
        request: Body::Bytes("application/octet-stream"),
        response: Body::Json("CheckpointAnswer"),
        query: &["attempt"],
        ..route(
            "put",
            "/v1/agents/{site}/checkpoints/{id}",
            "The current attempt keeps its checkpoint (gzipped tar, ≤ 64 MiB; `attempt` query = fencing token)",
            "operator, provider (own sites)",
        )
    },
    Route {
        response: Body::Bytes("application/gzip"),
        ..route(
            "get",
            "/v1/agents/{site}/checkpoints/{id}",
            "A job's newest checkpoint, for the site it is assigned to now (header X-Suanwang-Checkpoint-Attempt)",
            "operator, provider (own sites)",
        )
    },
    Route {
        response: Body::Json("BalanceAnswer"),
        query: &["party"],
        ..route(
            "get",
            "/v1/balance",
            "A party's ledger accounts: a tenant's wallet and vouchers, a provider's or carrier's receivable, a \
             funder's budget (`party`: operator and regulator only; others see their own)",
            "every role (own); operator, regulator (any party)",
        )
    },
    Route {
        request: Body::Json("TopupRequest"),
        status: 201,
        response: Body::Json("MoneyAnswer"),
        ..route(
            "post",
            "/v1/topups",
            "Money paid in to a tenant's wallet or a funder's budget (`transfer_id`: the same id again is applied \
             once and answers 200)",
            "operator",
        )
    },
    Route {
        request: Body::Json("CreditLimitRequest"),
        response: Body::Json("MoneyAnswer"),
        ..route("post", "/v1/credit-limits", "Set a tenant's credit limit", "operator")
    },
    Route {
        response: Body::Json("BillAnswer"),
        ..route(
            "get",
            "/v1/jobs/{id}/bill",
            "A job's bill: line items (compute, energy, transfer, platform fee, vouchers), what its tenant \
             pays, and the split to provider, carrier and platform from the ledger",
            "operator, regulator, tenant (own)",
        )
    },
    Route {
        response: Body::JsonOrBytes("Statement", "text/csv"),
        query: &["party", "from", "to", "format"],
        ..route(
            "get",
            "/v1/statements",
            "A party's statement over [from, to): opening and closing balance per account and every posted \
             transfer (`format=csv` for CSV)",
            "every role (own); operator, regulator (any party)",
        )
    },
    Route {
        request: Body::Json("OrderRequest"),
        status: 201,
        response: Body::Json("OrderView"),
        ..route(
            "post",
            "/v1/market/orders",
            "Post an ask (a provider's capacity at a floor price) or a bid (a tenant's, held in its wallet at units × \
             maximum × hours) for a product `family/model/place/YYYY-MM-DDTHHZ/Nh`; it waits for the next clearing",
            "provider (asks), tenant (bids), operator (either, for `owner`)",
        )
    },
    Route {
        response: Body::Json("OrderList"),
        query: &["state", "product", "owner", "after", "limit"],
        ..route("get", "/v1/market/orders", "Orders, in id order", "tenant, provider (own); operator, regulator (all)")
    },
    Route {
        response: Body::Json("OrderView"),
        ..route(
            "post",
            "/v1/market/orders/{id}/cancel",
            "Take an open order out of the book (a bid's hold is released); until the clearing that fills it",
            "the order's owner, operator",
        )
    },
    Route {
        response: Body::Json("PriceList"),
        query: &["product"],
        ..route(
            "get",
            "/v1/market/prices",
            "Each traded product's latest clearing price, or one product's price history (`product=`)",
            "every role",
        )
    },
    Route {
        response: Body::Json("ClearingAnswer"),
        ..route(
            "post",
            "/v1/market/clear",
            "Clear every product now (a uniform-price double auction per product), besides the periodic clearings",
            "operator",
        )
    },
    Route {
        response: Body::Json("ContractList"),
        query: &["product", "owner", "after", "limit"],
        ..route(
            "get",
            "/v1/contracts",
            "Contracts: a tenant's purchases, a provider's sales, all for the operator and the regulator",
            "tenant, provider (own); operator, regulator (all)",
        )
    },
    Route {
        request: Body::Json("ReserveRequest"),
        status: 201,
        response: Body::Json("ContractView"),
        ..route(
            "post",
            "/v1/contracts",
            "Buy capacity at the reserved price for a whole window (包年包月, at least `reserved.min_hours`), \
             paid at once; the contract reserves its units in the scheduler for the buyer",
            "tenant (own); operator (for `tenant`)",
        )
    },
    Route {
        request: Body::Json("QuotaRequest"),
        response: Body::Json("QuotaView"),
        ..route(
            "post",
            "/v1/quotas",
            "Set a tenant's quota: the most units of a family its live jobs may hold at once, in a hub or green \
             region or everywhere (R3); a submission beyond it is refused naming the quota",
            "operator",
        )
    },
    Route {
        response: Body::Json("QuotaList"),
        ..route(
            "get",
            "/v1/quotas",
            "Quotas, with what the tenant's live jobs hold now",
            "operator, regulator; tenant (own)",
        )
    },
    Route {
        response: Body::Json("CreditsAnswer"),
        ..route(
            "get",
            "/v1/carbon/credits",
            "Carbon-sink credit lots (issuer, vintage, price, grams left and retired) and the offsets the caller may see",
            "every role (offsets: tenant own, provider its lots', operator and regulator all)",
        )
    },
    Route {
        request: Body::Json("OffsetRequest"),
        status: 201,
        response: Body::Json("OffsetView"),
        ..route(
            "post",
            "/v1/carbon/offsets",
            "Offset an ended job's market-based carbon: money to a lot's holder, the credits retired against the job, \
             once per job (R5)",
            "tenant (own jobs), operator",
        )
    },
    Route {
        request: Body::Json("ProgrammeSpec"),
        status: 201,
        response: Body::Json("ProgrammeView"),
        ..route(
            "post",
            "/v1/vouchers/programmes",
            "File a voucher programme (算力券 `compute`, 运力券 `transport`): its budget moves from the funder",
            "funder (own), operator",
        )
    },
    Route {
        request: Body::Json("GrantRequest"),
        status: 201,
        response: Body::Json("GrantView"),
        ..route(
            "post",
            "/v1/vouchers/grants",
            "Grant vouchers of a programme to a tenant (within the cap per year, the budget and the window)",
            "funder (own programmes), operator",
        )
    },
    Route {
        response: Body::Json("VoucherList"),
        ..route(
            "get",
            "/v1/vouchers",
            "Programmes, grants and redemptions the caller may see",
            "funder (own), tenant (own grants), operator, regulator",
        )
    },
    Route {
        request: Body::Json("DatasetSpec"),
        status: 201,
        response: Body::Json("DatasetRecord"),
        ..route(
            "post",
            "/v1/datasets",
            "Register a dataset: the registry issues its identifier (prefix/suffix) and logs the registration",
            "operator, tenant (own)",
        )
    },
    Route {
        response: Body::Json("DatasetList"),
        query: &["owner", "after", "limit"],
        ..route(
            "get",
            "/v1/datasets",
            "Datasets in id order (a tenant sees its own and public ones)",
            "operator, regulator, tenant",
        )
    },
    Route {
        response: Body::Json("DatasetRecord"),
        ..route(
            "get",
            "/v1/datasets/{dataset}",
            "Resolve a dataset identifier (its `/` may be sent as %2F) to its record and type/value pairs",
            "operator, regulator, tenant (own or public)",
        )
    },
    Route {
        response: Body::Json("EvidenceBundle"),
        ..route(
            "get",
            "/v1/datasets/{dataset}/lineage",
            "Every record about a dataset — registration, copies, jobs that read it — with inclusion proofs",
            "operator, regulator, tenant (own)",
        )
    },
    Route {
        request: Body::Json("ReplicaRequest"),
        response: Body::Json("DatasetRecord"),
        ..route(
            "post",
            "/v1/datasets/{dataset}/replicas",
            "Report a copy of a dataset at a site, with the SHA-256 found there (a mismatch is refused)",
            "operator, tenant (own)",
        )
    },
    Route {
        response: Body::Json("EvidenceKey"),
        ..route("get", "/v1/evidence/key", "The evidence log's origin, verifier key and witnesses", "every role")
    },
    Route {
        response: Body::Text("text/plain; charset=utf-8"),
        ..route(
            "get",
            "/v1/evidence/checkpoint",
            "The newest checkpoint: a C2SP signed note (origin, size, base64 root; Ed25519 signature, witnesses' \
             cosignatures)",
            "every role",
        )
    },
    Route {
        response: Body::Json("AlertList"),
        query: &["state"],
        ..route(
            "get",
            "/v1/alerts",
            "Alerts of the early-warning rules: firing, pending, resolved in the last 15 minutes (`state=` one of \
             them)",
            "operator, regulator (all); provider (its sites'); tenant (its own)",
        )
    },
    Route {
        response: Body::Text("text/event-stream"),
        query: &["after"],
        ..route(
            "get",
            "/v1/events",
            "Server-sent events: every entry of the evidence log as it becomes durable (`event:` its kind — \
             `job`, `alert`, `ledger`, …; `id:` its index; `data:` a StreamEvent), only those the caller may \
             open. A `Last-Event-ID` header (or `?after=`) resumes after that index, from the store",
            "every role",
        )
    },
    Route {
        response: Body::Json("CheckpointList"),
        query: &["after", "limit"],
        ..route("get", "/v1/evidence/checkpoints", "Every checkpoint signed, in size order (pages)", "every role")
    },
    Route {
        response: Body::Bytes("application/octet-stream"),
        ..route(
            "get",
            "/v1/evidence/tile/{path}",
            "A C2SP tlog-tiles tile: `<L>/<N>[.p/<W>]` (hashes) or `entries/<N>[.p/<W>]` (an entry bundle)",
            "every role",
        )
    },
    Route {
        response: Body::Json("EntryAnswer"),
        ..route(
            "get",
            "/v1/evidence/entries/{index}",
            "One entry, with its opening (salt and record) when the caller may see the record",
            "every role (openings: operator, regulator, tenant (own))",
        )
    },
    Route {
        response: Body::Json("InclusionProof"),
        query: &["index", "size"],
        ..route(
            "get",
            "/v1/evidence/proof/inclusion",
            "RFC 9162 inclusion proof of entry `index` in the tree of `size` entries (default: the newest \
             checkpoint's)",
            "every role",
        )
    },
    Route {
        response: Body::Json("ConsistencyProof"),
        query: &["from", "to"],
        ..route(
            "get",
            "/v1/evidence/proof/consistency",
            "RFC 9162 consistency proof between the trees of `from` and `to` entries",
            "every role",
        )
    },
    Route {
        request: Body::Json("CosignRequest"),
        response: Body::Json("CosignAnswer"),
        ..route(
            "post",
            "/v1/evidence/cosignatures",
            "A witness's cosignature of a checkpoint (C2SP tlog-cosignature v1), checked against the witnesses \
             the log accepts",
            "every role (the witness key is what counts)",
        )
    },
    Route {
        response: Body::Json("EvidenceBundle"),
        ..route(
            "get",
            "/v1/jobs/{id}/evidence",
            "A job's records with their openings and inclusion proofs against a signed checkpoint: verify offline \
             with `suanwang evidence verify`",
            "operator, regulator, tenant (own)",
        )
    },
];

/// The schema names of the agent protocol's bodies (types in `agent.rs`, registered in
/// `components`).
pub const AGENT_SCHEMAS: &[&str] =
    &["RegisterRequest", "RegisterAnswer", "AssignmentsAnswer", "Report", "ProbeVerdict", "CheckpointAnswer"];

fn settings(contract: Contract) -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
        s.contract = contract;
    })
}

/// Every wire type's schema, by name: responses as the server serialises them, requests as it
/// reads them (a request's schema states what the server accepts).
fn components() -> Map<String, Value> {
    use crate::{job, network, ops, plan};
    let mut g = SchemaGenerator::new(settings(Contract::Serialize));
    g.subschema_for::<ops::ErrorBody>();
    g.subschema_for::<ops::Health>();
    g.subschema_for::<ops::WhoAmI>();
    g.subschema_for::<job::JobView>();
    g.subschema_for::<job::JobList>();
    g.subschema_for::<job::JobLogs>();
    g.subschema_for::<plan::PlanAnswer>();
    g.subschema_for::<network::SiteList>();
    g.subschema_for::<network::NetworkDocument>();
    g.subschema_for::<ops::Kpis>();
    g.subschema_for::<ops::SuspendAnswer>();
    g.subschema_for::<ops::RestartAnswer>();
    g.subschema_for::<ops::ApproveAnswer>();
    g.subschema_for::<crate::agent::RegisterAnswer>();
    g.subschema_for::<crate::agent::AssignmentsAnswer>();
    g.subschema_for::<crate::agent::ProbeVerdict>();
    g.subschema_for::<crate::agent::CheckpointAnswer>();
    g.subschema_for::<crate::money::BalanceAnswer>();
    g.subschema_for::<crate::money::MoneyAnswer>();
    g.subschema_for::<crate::money::BillAnswer>();
    g.subschema_for::<crate::money::Statement>();
    g.subschema_for::<crate::money::ProgrammeView>();
    g.subschema_for::<crate::money::GrantView>();
    g.subschema_for::<crate::money::VoucherList>();
    g.subschema_for::<crate::dataset::DatasetRecord>();
    g.subschema_for::<crate::dataset::DatasetList>();
    g.subschema_for::<crate::evidence::EvidenceKey>();
    g.subschema_for::<crate::evidence::CheckpointList>();
    g.subschema_for::<crate::evidence::EntryAnswer>();
    g.subschema_for::<crate::evidence::InclusionProof>();
    g.subschema_for::<crate::evidence::ConsistencyProof>();
    g.subschema_for::<crate::evidence::CosignAnswer>();
    g.subschema_for::<crate::evidence::EvidenceBundle>();
    g.subschema_for::<crate::alerts::AlertList>();
    g.subschema_for::<crate::alerts::StreamEvent>();
    g.subschema_for::<crate::market::OrderView>();
    g.subschema_for::<crate::market::OrderList>();
    g.subschema_for::<crate::market::PriceList>();
    g.subschema_for::<crate::market::ClearingAnswer>();
    g.subschema_for::<crate::market::ContractList>();
    g.subschema_for::<crate::market::ContractView>();
    g.subschema_for::<crate::market::CreditsAnswer>();
    g.subschema_for::<crate::market::QuotaView>();
    g.subschema_for::<crate::market::QuotaList>();
    g.subschema_for::<crate::market::OffsetView>();
    g.subschema_for::<crate::console::MapLayer>();
    g.subschema_for::<crate::console::TwinReportList>();
    g.subschema_for::<crate::console::TwinReport>();
    let mut out = g.take_definitions(true);
    let mut r = SchemaGenerator::new(settings(Contract::Deserialize));
    r.subschema_for::<job::JobSpec>();
    r.subschema_for::<crate::agent::RegisterRequest>();
    r.subschema_for::<crate::agent::Report>();
    r.subschema_for::<crate::money::TopupRequest>();
    r.subschema_for::<crate::money::CreditLimitRequest>();
    r.subschema_for::<crate::money::ProgrammeSpec>();
    r.subschema_for::<crate::money::GrantRequest>();
    r.subschema_for::<crate::evidence::CosignRequest>();
    r.subschema_for::<crate::dataset::DatasetSpec>();
    r.subschema_for::<crate::dataset::ReplicaRequest>();
    r.subschema_for::<crate::market::OrderRequest>();
    r.subschema_for::<crate::market::ReserveRequest>();
    r.subschema_for::<crate::market::OffsetRequest>();
    r.subschema_for::<crate::market::QuotaRequest>();
    out.extend(r.take_definitions(true));
    out
}

const ID: &str = "^[a-z][a-z0-9_-]*$";

/// An instant in a query: epoch milliseconds, or an RFC 3339 UTC timestamp (days 01–28 in the
/// pattern; the server takes every valid date).
const INSTANT: &str = "^(-?[0-9]{1,15}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z)$";

/// A query parameter's declaration.
fn param(path: &str, name: &str) -> Value {
    let count = json!({"type": "integer", "minimum": 0, "maximum": i64::MAX});
    let (schema, required, description) = match (path, name) {
        ("/v1/evidence/proof/inclusion", "index") => (count, true, "The entry's index, from 0"),
        ("/v1/evidence/proof/inclusion", "size") => {
            (count, false, "The tree's size (default: the newest checkpoint's)")
        }
        ("/v1/evidence/proof/consistency", "from") => (count, true, "The older tree's size"),
        ("/v1/evidence/proof/consistency", "to") => {
            (count, false, "The newer tree's size (default: the newest checkpoint's)")
        }
        ("/v1/evidence/checkpoints", "after") => (count, false, "Only checkpoints of more entries than this"),
        ("/v1/alerts", "state") => {
            (json!({"$ref": "#/components/schemas/AlertState"}), false, "Only alerts in this state")
        }
        ("/v1/events", "after") => {
            (count, false, "Resume after this entry index (as the Last-Event-ID header does; the header wins)")
        }
        ("/v1/evidence/checkpoints", "limit") => (
            json!({"type": "integer", "minimum": 1, "maximum": 10_000, "default": 1000}),
            false,
            "Checkpoints per page",
        ),
        ("/v1/market/orders", "state") => (
            json!({"type": "string", "enum": ["open", "filled", "cancelled", "expired"]}),
            false,
            "Only orders in this state",
        ),
        ("/v1/market/orders" | "/v1/contracts", "owner") => (
            json!({"type": "string", "minLength": 1, "maxLength": 64}),
            false,
            "Only this party's (operator, regulator)",
        ),
        ("/v1/market/orders" | "/v1/contracts", "after") => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
            false,
            "Ids above this (the previous page's `next`)",
        ),
        ("/v1/market/orders" | "/v1/contracts", "limit") => {
            (json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}), false, "Rows per page")
        }
        ("/v1/market/orders" | "/v1/contracts" | "/v1/market/prices", "product") => (
            json!({"type": "string", "minLength": 1, "maxLength": 256}),
            false,
            "A product `family/model/place/YYYY-MM-DDTHHZ/Nh`",
        ),
        ("/v1/datasets", "owner") => (
            json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z][a-z0-9_-]*$"}),
            false,
            "Only this owner's datasets",
        ),
        ("/v1/datasets", "after") => {
            (json!({"type": "string", "maxLength": 128}), false, "Only datasets with a greater id (pagination)")
        }
        ("/v1/datasets", "limit") => {
            (json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}), false, "Datasets per page")
        }
        (_, name) => return plain_param(name),
    };
    json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema})
}

fn plain_param(name: &str) -> Value {
    let (schema, required, description) = match name {
        "state" => (json!({"$ref": "#/components/schemas/JobState"}), false, "Only jobs in this state"),
        "tenant" => (json!({"type": "string"}), false, "Only this tenant's jobs"),
        "limit" => (json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}), false, "Jobs per page"),
        "after" => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
            false,
            "Jobs with ids above this (the previous page's `next_after`)",
        ),
        "move" => (json!({"type": "boolean", "default": false}), false, "Move the site's jobs now"),
        "raw" => (
            json!({"type": "string", "enum": ["stdout", "stderr"]}),
            false,
            "Answer this stream's bytes as they were (application/octet-stream) instead of JSON",
        ),
        "owner" => (
            json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": ID}),
            false,
            "Hand the site to this provider",
        ),
        "wait" => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
            false,
            "Long-poll up to this many s (at most 30)",
        ),
        "wait_ms" => (
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
            false,
            "Long-poll up to this many ms (at most 30,000); overrides `wait`",
        ),
        "known" => (json!({"type": "string"}), false, "The `version` of the assignments the agent has"),
        "attempt" => (
            json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
            true,
            "The attempt that took the checkpoint (the fencing token)",
        ),
        "party" => (
            json!({"type": "string", "minLength": 1, "maxLength": 128}),
            false,
            "The party (a tenant, provider, carrier, funder, or `platform`); default: the caller",
        ),
        "from" => (
            json!({"type": "string", "pattern": INSTANT}),
            false,
            "Start of the period, inclusive: epoch ms or RFC 3339 UTC (default: the beginning)",
        ),
        "to" => (
            json!({"type": "string", "pattern": INSTANT}),
            false,
            "End of the period, exclusive: epoch ms or RFC 3339 UTC (default: now)",
        ),
        "format" => (json!({"type": "string", "enum": ["json", "csv"], "default": "json"}), false, "`csv` for CSV"),
        other => (json!({"type": "string"}), false, other),
    };
    json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema})
}

fn content(body: Body) -> Option<Value> {
    match body {
        Body::Empty => None,
        Body::Json(name) => {
            Some(json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}))
        }
        Body::AnyJson => Some(json!({"application/json": {"schema": {"type": "object"}}})),
        Body::Bytes(media) => Some(json!({media: {"schema": {"type": "string", "format": "binary"}}})),
        Body::Text(media) => Some(json!({media: {"schema": {"type": "string"}}})),
        Body::JsonOrBytes(name, media) => Some(json!({
            "application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}},
            media: {"schema": {"type": "string", "format": "binary"}},
        })),
    }
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut responses = Map::new();
        let mut ok = json!({"description": "OK"});
        if let Some(c) = content(r.response) {
            ok["content"] = c;
        }
        if r.path.ends_with("/checkpoints/{id}") && r.method == "get" {
            ok["headers"] = json!({"X-Suanwang-Checkpoint-Attempt": {
                "description": "The attempt that took it", "schema": {"type": "integer", "minimum": 0}}});
        }
        if r.method == "post" && r.path == "/v1/jobs" {
            // the id of a submitted job leads to the operations on it (stateful testing)
            let link = |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/id"}});
            ok["links"] = json!({
                "GetJob": link("get_v1_jobs__id_"),
                "GetJobLogs": link("get_v1_jobs__id__logs"),
                "CancelJob": link("post_v1_jobs__id__cancel"),
            });
        }
        responses.insert(r.status.to_string(), ok);
        if r.method == "post" && r.path == "/v1/jobs" {
            responses.insert("200".into(), {
                let mut same = json!({"description": "The job submitted earlier with this Idempotency-Key"});
                same["content"] = content(r.response).unwrap_or(Value::Null);
                same
            });
            responses.insert("202".into(), {
                let mut bid = json!({"description": "A job with `max_price` became this bid: it is submitted on \
                    the contract the bid wins as the contract's window begins (the order's `job_id`)"});
                bid["content"] = content(Body::Json("OrderView")).unwrap_or(Value::Null);
                bid
            });
        }
        let v1 = r.path.starts_with("/v1");
        let has_params = r.path.contains('{') || !r.query.is_empty();
        if has_params || r.request != Body::Empty || r.method == "post" && v1 {
            responses.insert("400".into(), error("Bad request: a path, query or body that cannot be read"));
        }
        if r.path == "/console/{path}" {
            responses.insert("404".into(), error("No such asset"));
        }
        if v1 {
            responses.insert("401".into(), error("Missing or bad token"));
            responses.insert("403".into(), error("Role not allowed (or not the owner)"));
            responses.insert("404".into(), error("Not found (or not yours)"));
            responses.insert("409".into(), error("Conflict with the current state"));
            responses.insert(
                "429".into(),
                json!({
                    "description": "Too many failed authentications from this address or for this principal",
                    "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }),
            );
            responses.insert("500".into(), error("A figure overflowed"));
            responses.insert("503".into(), error("The engine or the store is unavailable; retry"));
        }
        if r.request != Body::Empty {
            responses.insert("413".into(), error("Body too large"));
            responses.insert("422".into(), error("The body is not valid: `field` names the first problem"));
        }
        let mut op = json!({
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.'], "_")),
            "summary": r.summary,
            "description": format!("Roles: {}.", r.roles),
            "responses": responses,
        });
        if v1 {
            op["security"] = json!([{"bearer": []}]);
        }
        let mut params: Vec<Value> = vec![];
        if r.method == "post" && r.path == "/v1/jobs" {
            params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                "description": "Resubmitting with the same key returns the same job",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"}}));
        }
        if r.path.contains("{site}") {
            params.push(json!({"name": "site", "in": "path", "required": true,
                "schema": {"type": "string", "pattern": ID, "minLength": 1, "maxLength": 64}}));
        }
        if r.path.contains("{id}") {
            params.push(json!({"name": "id", "in": "path", "required": true,
                "schema": {"type": "integer", "minimum": 1, "maximum": u64::MAX}}));
        }
        if r.path.contains("{index}") {
            params.push(json!({"name": "index", "in": "path", "required": true,
                "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}}));
        }
        if r.path.contains("{dataset}") {
            params.push(json!({"name": "dataset", "in": "path", "required": true,
                "description": "A dataset identifier, prefix/suffix, its '/' sent as is or as %2F (a malformed id or a wrong check symbol names no dataset: 404 saying why)",
                "schema": {"type": "string", "minLength": 3, "maxLength": 128}}));
        }
        if r.path.contains("{name}") {
            params.push(json!({"name": "name", "in": "path", "required": true,
                "description": "A report's directory name as `GET /v1/twin/reports` lists it (another: 404)",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}));
        }
        if r.path == "/console/{path}" {
            params.push(json!({"name": "path", "in": "path", "required": true,
                "description": "The asset's path under /console/ (`app.js`, `style.css`, `vendor/echarts.min.js`, …); another: 404",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128}}));
        } else if r.path.contains("{path}") {
            params.push(json!({"name": "path", "in": "path", "required": true,
                // The grammar is stated, not given as a `pattern`: every valid value holds '/',
                // which test generators filter out of path parameters, so a pattern would leave
                // them nothing to send (schemathesis fails its filter_too_much health check).
                "description": "The rest of the tile's path, slashes and all: `<L>/<N>[.p/<W>]` or \
                    `entries/<N>[.p/<W>]`, L in 0..=63, N in groups of three digits with `x` before all \
                    but the last (`1/x001/x234/067`), W in 1..=255. Anything else: 400 naming the part.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128}}));
        }
        params.extend(r.query.iter().map(|q| param(r.path, q)));
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if let Some(c) = content(r.request) {
            op["requestBody"] = json!({"required": true, "content": c});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Suanwang control plane", "version": env!("CARGO_PKG_VERSION"),
            "description": "Every error is the JSON `Error` body. Times are milliseconds since the Unix epoch (UTC); money is integer fen."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }

    /// Every `$ref` in the document points at a component that exists.
    #[test]
    fn every_reference_resolves() {
        let doc = openapi();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut refs = vec![];
        walk(&doc, &mut refs);
        assert!(refs.len() > 20, "{refs:?}");
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r} is not a component");
        }
        // every link leads to an operation of the document
        let ops: Vec<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|p| p.as_object().expect("ops").values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let links = &doc["paths"]["/v1/jobs"]["post"]["responses"]["201"]["links"];
        assert_eq!(links.as_object().map(serde_json::Map::len), Some(3), "{links}");
        for l in links.as_object().expect("links").values() {
            assert!(ops.contains(&l["operationId"].as_str().unwrap_or("")), "{l} in {ops:?}");
        }
        for name in ["JobSpec", "JobView", "JobList", "PlanAnswer", "Kpis", "Error", "SiteList", "NetworkDocument"] {
            assert!(schemas.contains_key(name), "{name}");
        }
    }

    /// The request schema states the limits the server enforces.
    #[test]
    fn the_job_spec_schema_states_the_limits() {
        let doc = openapi();
        let s = &doc["components"]["schemas"];
        assert_eq!(s["JobSpec"]["additionalProperties"], false, "{}", s["JobSpec"]);
        let count = &s["Resources"]["properties"]["count"];
        assert_eq!((count["minimum"].as_u64(), count["maximum"].as_u64()), (Some(1), Some(1_000_000)), "{count}");
        assert_eq!(s["JobSpec"]["properties"]["name"]["maxLength"], 128);
        let req: Vec<&str> =
            s["JobSpec"]["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
        for k in ["name", "tenant", "kind", "origin", "resources", "work"] {
            assert!(req.contains(&k), "{k} required: {req:?}");
        }
    }
}
