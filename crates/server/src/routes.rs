//! The HTTP API. Handlers authenticate, check the role and the tenant, validate input, then
//! either read the views or hand the request to the engine actor and wait for it to be durable.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use suanwang_api as api;
use suanwang_api::JobList;
use suanwang_store::{AnyStore, Store};
use tokio::sync::oneshot;

use crate::Inner;
use crate::actor::{self, Request as Req};
use crate::auth::{Principal, Role, hash_token};
use crate::error::ApiError;
use crate::wire::{self, JobView};

type S = State<Arc<Inner>>;

/// Largest request body: a job spec is a few hundred bytes.
pub const MAX_BODY: usize = 1024 * 1024;
/// The largest checkpoint an agent may keep with the control plane (gzipped tar). Bigger
/// state belongs in the job's own storage; its checkpoint then names where.
pub const MAX_CHECKPOINT: usize = 64 * 1024 * 1024;

pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/", get(crate::console::index))
        .route("/console/{*path}", get(crate::console::asset))
        .route("/v1/whoami", get(whoami))
        .route("/v1/map", get(crate::console::map))
        .route("/v1/market/orders", post(crate::market_routes::place).get(crate::market_routes::orders))
        .route("/v1/market/orders/{id}/cancel", post(crate::market_routes::cancel))
        .route("/v1/market/prices", get(crate::market_routes::prices))
        .route("/v1/market/clear", post(crate::market_routes::clear))
        .route("/v1/contracts", get(crate::market_routes::contracts).post(crate::market_routes::reserve))
        .route("/v1/carbon/credits", get(crate::market_routes::credits))
        .route("/v1/carbon/offsets", post(crate::market_routes::offset))
        .route("/v1/quotas", post(crate::market_routes::set_quota).get(crate::market_routes::quotas))
        .route("/v1/twin/reports", get(crate::console::twin_reports))
        .route("/v1/twin/reports/{name}", get(crate::console::twin_report))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(suanwang_api::openapi()) }))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(one))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/plan", post(plan))
        .route("/v1/sites", get(sites))
        .route("/v1/network", get(network))
        .route("/v1/kpis", get(kpis))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/admin/restart", post(restart))
        .route("/v1/balance", get(crate::money_routes::balance))
        .route("/v1/topups", post(crate::money_routes::topup))
        .route("/v1/credit-limits", post(crate::money_routes::credit_limit))
        .route("/v1/jobs/{id}/bill", get(crate::money_routes::bill))
        .route("/v1/statements", get(crate::money_routes::statements))
        .route("/v1/vouchers/programmes", post(crate::money_routes::create_programme))
        .route("/v1/vouchers/grants", post(crate::money_routes::grant))
        .route("/v1/vouchers", get(crate::money_routes::vouchers))
        .route("/v1/datasets", post(crate::datasets::register).get(crate::datasets::list))
        // a dataset id holds a '/': sent as is (two segments) or as %2F (one)
        .route("/v1/datasets/{a}", get(crate::datasets::get))
        .route("/v1/datasets/{a}/{b}", get(crate::datasets::get))
        .route("/v1/datasets/{a}/lineage", get(crate::datasets::lineage))
        .route("/v1/datasets/{a}/{b}/lineage", get(crate::datasets::lineage))
        .route("/v1/datasets/{a}/replicas", post(crate::datasets::replicas))
        .route("/v1/datasets/{a}/{b}/replicas", post(crate::datasets::replicas))
        .route("/v1/alerts", get(crate::alert_routes::alerts))
        .route("/v1/events", get(crate::alert_routes::events))
        .route("/v1/evidence/key", get(crate::evidence_routes::key))
        .route("/v1/evidence/checkpoint", get(crate::evidence_routes::checkpoint))
        .route("/v1/evidence/checkpoints", get(crate::evidence_routes::checkpoints))
        .route("/v1/evidence/tile/{*path}", get(crate::evidence_routes::tile))
        .route("/v1/evidence/entries/{index}", get(crate::evidence_routes::entry))
        .route("/v1/evidence/proof/inclusion", get(crate::evidence_routes::inclusion))
        .route("/v1/evidence/proof/consistency", get(crate::evidence_routes::consistency))
        .route("/v1/evidence/cosignatures", post(crate::evidence_routes::cosign))
        .route("/v1/jobs/{id}/evidence", get(crate::evidence_routes::job_evidence))
        .route("/v1/agents/register", post(register))
        .route("/v1/sites/{site}/suspend", post(suspend))
        .route("/v1/sites/{site}/resume", post(resume))
        .route("/v1/sites/{site}/approve", post(approve))
        .route("/v1/agents/{site}/assignments", get(assignments))
        .route("/v1/agents/{site}/reports", post(report))
        .route(
            "/v1/agents/{site}/checkpoints/{id}",
            put(put_checkpoint).get(get_checkpoint).layer(DefaultBodyLimit::max(MAX_CHECKPOINT)),
        )
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {}", uri.path()),
            )
            .hint("the Allow header lists the methods it takes; see /openapi.json")
        })
        .fallback(|| async { ApiError::not_found("such route").hint("see /openapi.json") })
        .layer(middleware::from_fn(readable_path))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(Arc::clone(&inner), crate::throttle::guard))
        .layer(middleware::from_fn_with_state(Arc::clone(&inner), timed))
        .with_state(inner)
}

async fn timed(State(inner): S, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let res = next.run(req).await;
    inner.metrics.observe_http(t.elapsed().as_secs_f64());
    res
}

/// A path whose percent-encoding does not decode to UTF-8 (`/v1/jobs/%ff`) is a JSON 400
/// naming it, before any route (axum's own answer is a text/plain 400).
async fn readable_path(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !percent_decodes_to_utf8(path) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!("the path {path} does not decode to UTF-8 text"),
        )
        .hint("percent-encode UTF-8 bytes only (ids are ASCII: /v1/jobs/42)")
        .field("path")
        .into_response();
    }
    next.run(req).await
}

/// Whether `%XX` sequences decode (with the rest) to valid UTF-8; a `%` not followed by two hex
/// digits stays as it is, as in the router's own decoding.
fn percent_decodes_to_utf8(path: &str) -> bool {
    let b = path.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&out).is_ok()
}

/// A JSON body with the same key twice in one object is refused, naming the key (parsers
/// disagree on which one wins).
pub(crate) fn refuse_duplicate_keys(body: &[u8]) -> Result<(), ApiError> {
    match api::duplicate_key(body) {
        None => Ok(()),
        Some(key) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_key",
            format!("the key {key:?} appears more than once in one object"),
        )
        .field(key)
        .hint("send each key once")),
    }
}

pub(crate) async fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let fail = |why: &str| {
        inner.metrics.auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ApiError::unauthorized(why)
    };
    let Some(value) = headers.get("authorization") else { return Err(fail("no Authorization header")) };
    let Some(token) = value.to_str().ok().and_then(crate::auth::bearer_token) else {
        return Err(fail("the Authorization header is not `Bearer TOKEN`"));
    };
    let hash = hash_token(token);
    let (p, expires_at_ms) = match known_token(&inner.store, &inner.tokens, hash)
        .await
        .map_err(|e| ApiError::unavailable("token store unavailable").detail(e.to_string()))?
    {
        Ok(k) => k,
        Err(why) => return Err(fail(why)),
    };
    if !unexpired(expires_at_ms) {
        let at = expires_at_ms.unwrap_or_default();
        return Err(fail(&format!("the token expired at {}; ask for a new one", crate::alerting::rfc3339(at))));
    }
    Ok(p)
}

/// Token hash → principal and when the token expires, filled from the store on first use.
pub type TokenCache = std::sync::RwLock<std::collections::HashMap<String, (Principal, Option<i64>)>>;

/// The principal and expiry of the token whose hash is `hash`: from `cache`, else from the
/// store (then cached) — the leader's authentication and a follower's reads (issue 17). `Err`
/// inside: why it is refused (unknown, or of an unknown role).
pub(crate) async fn known_token(
    store: &AnyStore,
    cache: &TokenCache,
    hash: String,
) -> Result<Result<(Principal, Option<i64>), &'static str>, suanwang_store::StoreError> {
    if let Some(k) = cache.read().ok().and_then(|t| t.get(&hash).cloned()) {
        return Ok(Ok(k));
    }
    let Some(row) = store.token(&hash).await? else { return Ok(Err("unknown token")) };
    let Some(role) = Role::parse(&row.role) else { return Ok(Err("token with an unknown role")) };
    let k = (Principal { role, name: row.name }, row.expires_at_ms);
    if let Ok(mut t) = cache.write() {
        t.insert(hash, k.clone());
    }
    Ok(Ok(k))
}

/// Whether `expires_at_ms` (a token's) is still ahead.
pub(crate) fn unexpired(expires_at_ms: Option<i64>) -> bool {
    expires_at_ms.is_none_or(|at| at > actor::wall_now().0)
}

pub(crate) fn require(p: &Principal, allowed: &[Role], what: &str) -> Result<(), ApiError> {
    if allowed.contains(&p.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(&format!("a {} may not {what}", p.role.as_str())))
    }
}

/// Tenants see only their own jobs; others as their role allows. Hidden jobs are "not found".
fn visible(p: &Principal, job: &JobView) -> bool {
    match p.role {
        Role::Operator | Role::Regulator => true,
        Role::Tenant => job.tenant == p.name,
        Role::Provider | Role::Carrier | Role::Funder => false,
    }
}

pub(crate) fn body_error(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("the body is over {MAX_BODY} bytes"))
            .hint("a job spec is a few hundred bytes")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", "the request body could not be read").detail(e.body_text())
    }
}

fn spec_error(problems: &[suanwang_core::Problem]) -> ApiError {
    let first = problems.first();
    let mut e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_spec",
        format!("the job spec has {} problem(s)", problems.len()),
    )
    .detail(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    .hint(first.map_or_else(String::new, |p| p.hint.clone()));
    if let Some(p) = first {
        e = e.field(p.field.clone());
    }
    e
}

/// Liveness, the store's kind, how many jobs were ever submitted (`jobs`), and what memory holds
/// of them: `live_jobs` (not ended) and `cached_jobs` (ended lately, bounded).
async fn healthz(State(inner): S) -> Json<api::Health> {
    let (jobs, live, cached) =
        inner.views.read().map_or((0, 0, 0), |v| (v.totals.jobs, v.live.len() as u64, v.recent.len() as u64));
    Json(api::Health {
        status: "ok".into(),
        store: inner.store.kind().into(),
        jobs,
        live_jobs: live,
        cached_jobs: cached,
        pid: std::process::id(),
        started_at_ms: inner.metrics.started_ms.load(std::sync::atomic::Ordering::Relaxed),
        role: inner.ha.as_ref().map_or("leader", |h| h.role()).into(),
        instance: inner.ha.as_ref().map(|h| h.instance.clone()),
        epoch: inner.ha.as_ref().map_or(0, |h| u64::try_from(h.epoch()).unwrap_or(0)),
        leader: inner.ha.as_ref().map(|h| h.leader().0),
        leader_url: inner.ha.as_ref().map(|h| h.leader().1),
    })
}

/// An operator restarts the control plane in place: the process that serves re-executes
/// itself with the same arguments and rebuilds its state from the newest snapshot and the log
/// after it (everything acknowledged is durable already). `/healthz` shows the new
/// `started_at_ms` once it serves again.
async fn restart(State(inner): S, headers: HeaderMap) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator], "restart the control plane")?;
    tracing::warn!(by = %p.name, "restart requested");
    inner.restart.notify_one();
    Ok((StatusCode::ACCEPTED, Json(api::RestartAnswer { restarting: true, pid: std::process::id() })).into_response())
}

/// Who the token is: the console shows it and hides what the role may not open.
async fn whoami(State(inner): S, headers: HeaderMap) -> Result<Json<api::WhoAmI>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    Ok(Json(api::WhoAmI { name: p.name.clone(), role: p.role.as_str().into() }))
}

async fn metrics(State(inner): S) -> impl IntoResponse {
    let now = actor::wall_now();
    // every state, 0 when no job is in it: a series that exists from the start (rates and
    // dashboards need it)
    let counts = inner.views.read().map(|v| v.totals.counts_by_state()).unwrap_or_default();
    let states: Vec<(String, u64)> = api::JobState::ALL
        .into_iter()
        .map(api::JobState::as_str)
        .map(|s| (s.to_string(), counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n)))
        .collect();
    let (samples, alerts) = inner.board.read().map(|b| (Arc::clone(&b.samples), b.alerts.clone())).unwrap_or_default();
    let mut text = inner.metrics.render(&states, &samples, &alerts, now.0);
    if let Some(ha) = &inner.ha {
        text.push_str(&ha.metrics());
    }
    ([("content-type", "text/plain; version=0.0.4")], text)
}

async fn submit(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Tenant], "submit jobs")?;
    let body = body.map_err(|e| body_error(&e))?;
    refuse_duplicate_keys(&body)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k =
                v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 128 && k.chars().all(|c| c.is_ascii_graphic()));
            Some(
                k.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_idempotency_key",
                        "Idempotency-Key must be 1–128 visible ASCII characters",
                    )
                    .field("Idempotency-Key")
                })?
                .to_string(),
            )
        }
    };
    // (the body is read as JSON once: for the spec's resolution and the idempotency check)
    let spec: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = submit_spec(&inner, p, spec, body, key).await?;
    Ok((status, Json(answer)).into_response())
}

/// What `POST /v1/jobs` answers: the job, or the bid a job with `max_price` became.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Submitted {
    Job(Box<suanwang_api::job::JobView>),
    Bid(Box<suanwang_api::market::OrderView>),
}

/// A job spec submitted by `p` (`body` is the spec's bytes as sent): resolved (its contract,
/// its tenant's quotas, its dataset), checked, and handed to the engine — or, with
/// `max_price`, placed in the market as a bid.
pub(crate) async fn submit_spec(
    inner: &Inner,
    p: Principal,
    mut spec: Value,
    body: Bytes,
    key: Option<String>,
) -> Result<(StatusCode, Submitted), ApiError> {
    // R4: a job on a market contract is confined to its seller's sites and window
    let mut changed = crate::market::resolve_contract(inner, &mut spec).await?;
    // R3: the tenant's quotas (a full region is taken out of where it may run), checked and
    // submitted under the tenant's gate
    let _gate = crate::market::quota_gate(inner, &spec).await;
    changed |= crate::market::apply_quotas(inner, &mut spec)?;
    // R6: an input named by dataset id is completed from the registry (size, nearest replica,
    // classification) before the spec is checked
    changed |= crate::datasets::resolve_input(inner, &p, &mut spec).await?;
    let body = if changed { Bytes::from(serde_json::to_vec(&spec).unwrap_or_default()) } else { body };
    let now = actor::wall_now();
    let job = suanwang_core::job::parse_json(&body, &inner.net(), now).map_err(|p| spec_error(&p))?;
    if p.role == Role::Tenant && job.tenant != p.name {
        return Err(ApiError::forbidden(&format!("tenant {} may not submit jobs for tenant {}", p.name, job.tenant))
            .field("tenant"));
    }
    if let Some(max_price) = job.max_price {
        if key.is_some() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "max_price: a bidding job is placed once per request; Idempotency-Key is not kept for bids",
            )
            .field("max_price")
            .hint("send it without Idempotency-Key and look for the bid with suanwang market orders"));
        }
        let view = crate::market_routes::submit_bid(inner, &p, &job, spec, max_price).await?;
        return Ok((StatusCode::ACCEPTED, Submitted::Bid(Box::new(view))));
    }
    // a key the server no longer holds in memory is looked up in the log
    if let Some(k) = &key {
        let known = inner.views.read().ok().is_some_and(|v| v.keys.get(&(job.tenant.clone(), k.clone())).is_some());
        if !known && let Some((id, logged)) = inner.store.submission(&job.tenant, k).await.map_err(store_down)? {
            let id = u64::try_from(id).map_err(|_| ApiError::not_found("such job"))?;
            let was: Value =
                serde_json::from_str::<Value>(&logged).ok().and_then(|b| b.get("spec").cloned()).unwrap_or(Value::Null);
            if was != spec {
                return Err(actor::key_reused(k, id));
            }
            let view = find_job(inner, id).await?.ok_or_else(|| ApiError::not_found("such job"))?;
            return Ok((StatusCode::OK, Submitted::Job(Box::new(wire::job(&view)))));
        }
    }
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Submit { principal: p, job: Box::new(job), spec, key, reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    let (status, id, view) = rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))??;
    let view = match view {
        Some(v) => v,
        None => find_job(inner, id).await?.ok_or_else(|| ApiError::not_found("such job"))?,
    };
    Ok((status, Submitted::Job(Box::new(wire::job(&view)))))
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(store_down)`
fn store_down(e: suanwang_store::StoreError) -> ApiError {
    ApiError::unavailable("the store could not be read").detail(e.to_string())
}

/// Job `id`: from memory when it is live or ended lately, else from the store's projection
/// (which is never behind memory: rows are written before the views change).
pub(crate) async fn find_job(inner: &Inner, id: u64) -> Result<Option<JobView>, ApiError> {
    if let Some(v) = inner.views.read().ok().and_then(|v| v.job(id).cloned()) {
        return Ok(Some(v));
    }
    let Ok(key) = i64::try_from(id) else { return Ok(None) };
    Ok(inner.store.job(key).await.map_err(store_down)?.map(crate::views::job_view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    tenant: Option<String>,
    limit: Option<usize>,
    after: Option<u64>,
}

async fn list(
    State(inner): S,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "list jobs")?;
    let Query(q) = q.map_err(|e| list_query_error(&e))?;
    list_stored(&inner.store, &p, &q).await.map(Json)
}

pub(crate) fn list_query_error(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query parameters")
        .detail(e.body_text())
        .hint("state, tenant, limit, after")
}

/// `GET /v1/jobs` for `p`, from the store's projection alone (which is never behind memory):
/// what the leader answers, and what a follower answers on its own (issue 17).
pub(crate) async fn list_stored(store: &AnyStore, p: &Principal, q: &ListQuery) -> Result<JobList, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "limit must be 1..=1000").field("limit"));
    }
    if let Some(state) = &q.state
        && serde_json::from_value::<suanwang_engine::JobState>(Value::String(state.clone())).is_err()
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("unknown state {state:?}"))
            .field("state")
            .hint("submitted, admitted, refused, placed, in_transfer, running, completed, failed, cancelled"));
    }
    // after the largest id there is nothing (not the first page again)
    let after = match q.after.map(i64::try_from) {
        None => 0,
        Some(Ok(a)) => a,
        Some(Err(_)) => return Ok(JobList { jobs: vec![], next_after: None }),
    };
    // a tenant sees its own jobs only, whatever it asks
    let tenant = if p.role == Role::Tenant { Some(p.name.clone()) } else { q.tenant.clone() };
    if p.role == Role::Tenant && q.tenant.as_ref().is_some_and(|t| *t != p.name) {
        return Ok(JobList { jobs: vec![], next_after: None });
    }
    let query = suanwang_store::JobQuery {
        state: q.state.clone(),
        tenant,
        after,
        limit: i64::try_from(limit + 1).unwrap_or(1001),
    };
    let rows = store.jobs(&query).await.map_err(store_down)?;
    let mut jobs: Vec<api::JobView> =
        rows.into_iter().map(crate::views::job_view).filter(|j| visible(p, j)).map(|j| wire::job(&j)).collect();
    let next_after = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(JobList { jobs, next_after })
}

/// `GET /v1/jobs/{id}` for `p` from the store's projection alone (see [`list_stored`]).
pub(crate) async fn one_stored(store: &AnyStore, p: &Principal, id: &str) -> Result<api::JobView, ApiError> {
    stored_job(store, p, parse_id(id)?).await.map(|j| wire::job(&j))
}

/// Job `id` as the store has it, if `p` may see it (a follower's reads, issue 17).
pub(crate) async fn stored_job(store: &AnyStore, p: &Principal, id: u64) -> Result<JobView, ApiError> {
    let Ok(key) = i64::try_from(id) else { return Err(ApiError::not_found("such job")) };
    store
        .job(key)
        .await
        .map_err(store_down)?
        .map(crate::views::job_view)
        .filter(|j| visible(p, j))
        .ok_or_else(|| ApiError::not_found("such job"))
}

pub(crate) fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse::<u64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", format!("{id:?} is not a job id")).field("id"))
}

async fn one(State(inner): S, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<api::JobView>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "read jobs")?;
    let id = parse_id(&id)?;
    find_job(&inner, id)
        .await?
        .filter(|j| visible(&p, j))
        .map(|j| Json(wire::job(&j)))
        .ok_or_else(|| ApiError::not_found("such job"))
}

async fn cancel(State(inner): S, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<api::JobView>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Tenant], "cancel jobs")?;
    let id = parse_id(&id)?;
    let found = find_job(&inner, id).await?.filter(|j| visible(&p, j)).map(|j| j.state);
    let Some(state) = found else { return Err(ApiError::not_found("such job")) };
    if actor::terminal(state) {
        return Err(ApiError::new(StatusCode::CONFLICT, "not_cancellable", format!("job {id} has already ended")));
    }
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Cancel { principal: p, id, reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    Ok(Json(wire::job(&rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))??)))
}

async fn plan(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::PlanAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "plan jobs")?;
    let body = body.map_err(|e| body_error(&e))?;
    refuse_duplicate_keys(&body)?;
    let job = suanwang_core::job::parse_json(&body, &inner.net(), actor::wall_now()).map_err(|p| spec_error(&p))?;
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Plan { job: Box::new(job), reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    Ok(Json(wire::plan(&rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))?)))
}

/// The sites, each with `approval` ("approved", or "pending" for an agent's site the operator
/// has not approved: it takes no placements) and, for agents' sites, `owner` and `owner_role`.
async fn sites(State(inner): S, headers: HeaderMap) -> Result<Json<api::SiteList>, ApiError> {
    authenticate(&inner, &headers).await?;
    Ok(Json(wire::sites(&inner.net(), &inner.grants())))
}

async fn network(State(inner): S, headers: HeaderMap) -> Result<Json<api::NetworkDocument>, ApiError> {
    authenticate(&inner, &headers).await?;
    Ok(Json(wire::network(&inner.net())))
}

async fn kpis(State(inner): S, headers: HeaderMap) -> Result<Json<api::Kpis>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator], "read KPIs")?;
    let t = inner.views.read().map_err(|_| ApiError::unavailable("views poisoned"))?.totals.clone();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let net = inner.net();
    // the early-warning task's last measurement: (first label's value, sample) per indicator
    let samples = inner.board.read().map(|b| Arc::clone(&b.samples)).unwrap_or_default();
    let gauge = |name: &str| -> Option<Vec<(String, f64)>> {
        let v = samples.get(name).filter(|v| !v.is_empty())?;
        Some(v.iter().map(|x| (x.labels.values().next().cloned().unwrap_or_default(), x.value)).collect())
    };
    Ok(Json(api::Kpis {
        jobs_by_state: t.counts_by_state().into_iter().collect(),
        energy_kwh: t.energy_kwh,
        green_share: ratio(t.green_kwh, t.energy_kwh),
        carbon_kg: t.carbon_kg,
        cost_fen: t.cost_fen,
        hub_share: ratio(t.hub_ucu_hours, t.ucu_hours),
        placements: t.placements,
        refusals: t.refusals,
        jobs: t.jobs,
        ucu_hours: t.ucu_hours,
        hub_green_share: ratio(t.hub_green_kwh, t.hub_energy_kwh),
        transfer_gb: t.transfer_gb,
        transfer_fen: t.transfer_fen,
        inter_hub_transfer_gb: t.inter_hub_transfer_gb,
        inter_hub_transfer_fen: t.inter_hub_transfer_fen,
        network_utilization: gauge("suanwang_network_utilization").map_or(0.0, |v| v[0].1),
        hub_utilization_ratio: gauge("suanwang_hub_utilization_ratio").map(|v| v[0].1),
        latency_tier_attainment: gauge("suanwang_latency_tier_attainment").unwrap_or_default().into_iter().collect(),
        targets: api::KpiTargets {
            utilisation_ratio: net.policy.hubs.utilisation_ratio_target,
            green_share: net.policy.hubs.green_share_target,
        },
        enclaves: t
            .enclaves
            .iter()
            .map(|(holder, e)| {
                (
                    holder.clone(),
                    api::EnclaveKpi {
                        jobs: e.jobs,
                        ucu_hours: e.ucu_hours,
                        energy_kwh: e.energy_kwh,
                        green_share: ratio(e.green_kwh, e.energy_kwh),
                        sites: e.sites.iter().cloned().collect(),
                    },
                )
            })
            .collect(),
    }))
}

/// A report's raw stream: `None` without one; 422 naming the field when it is not base64.
fn raw_stream(b64: Option<&str>, field: &str) -> Result<Option<Vec<u8>>, ApiError> {
    b64.map(|t| {
        suanwang_api::agent::unbase64(t).ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_report", format!("{field} is not base64"))
                .field(field)
                .hint("standard base64 (RFC 4648) of the stream's last 64 KiB")
        })
    })
    .transpose()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogsQuery {
    /// `stdout` or `stderr`: that stream's bytes as they were.
    raw: Option<String>,
}

async fn logs(
    State(inner): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "read job output")?;
    let id = parse_id(&id)?;
    let Query(q) = q.map_err(|e| logs_query_error(&e))?;
    let job = find_job(&inner, id).await?.filter(|j| visible(&p, j)).ok_or_else(|| ApiError::not_found("such job"))?;
    logs_of(&inner.store, &job, &q).await
}

/// `GET /v1/jobs/{id}/logs` answered from the store alone (a follower, issue 17): the job as the
/// store has it, its output as the store has it.
pub(crate) async fn logs_stored(store: &AnyStore, p: &Principal, id: &str, uri: &Uri) -> Result<Response, ApiError> {
    require(p, &[Role::Operator, Role::Regulator, Role::Tenant], "read job output")?;
    let id = parse_id(id)?;
    let Query(q) = Query::<LogsQuery>::try_from_uri(uri).map_err(|e| logs_query_error(&e))?;
    let job = stored_job(store, p, id).await?;
    logs_of(store, &job, &q).await
}

fn logs_query_error(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query").detail(e.body_text()).hint("raw=stdout|stderr")
}

/// A job's output as stored: JSON, or one stream's bytes (`raw`).
async fn logs_of(store: &AnyStore, job: &JobView, q: &LogsQuery) -> Result<Response, ApiError> {
    let log = store.run_log(i64::try_from(job.id).unwrap_or(i64::MAX)).await.map_err(store_down)?;
    let (stdout, stderr) = log.map(|l| (l.stdout, l.stderr)).unwrap_or_default();
    if let Some(stream) = q.raw.as_deref() {
        let bytes = match stream {
            "stdout" => stdout,
            "stderr" => stderr,
            other => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("raw={other:?} is no stream"))
                    .field("raw")
                    .hint("raw=stdout or raw=stderr"));
            }
        };
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response());
    }
    Ok(Json(api::JobLogs {
        id: job.id,
        state: wire::job_state(job.state),
        site: job.site.clone(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
    .into_response())
}

/// Who may act for an agent's site (register it, poll its assignments, report, keep
/// checkpoints): an operator, any site; a provider, only a site it owns — the one that first
/// registered it, or the one the operator approved it for, as the command log records — never
/// inferred from the site's name. A site nobody registered yet may be registered by a provider
/// only under its own name (`<provider>-…`); other routes answer 404 for it.
fn may_run_site(inner: &Inner, p: &Principal, site: &str, registering: bool) -> Result<(), ApiError> {
    match p.role {
        Role::Operator => Ok(()),
        Role::Provider => match inner.grants().get(site) {
            Some(g) if g.owner == actor::owner_of(p) => Ok(()),
            Some(g) => Err(ApiError::forbidden(&format!(
                "site {site} belongs to {}: a provider may only act for sites it owns",
                g.owner
            ))
            .field("site")
            .hint("a site belongs to the principal that first registered it or that the operator approved it for")),
            None if !registering => Err(ApiError::not_found("registered site of that name")
                .field("site")
                .hint("POST /v1/agents/register first")),
            None if site.starts_with(&format!("{}-", p.name)) => Ok(()),
            None => {
                Err(ApiError::forbidden(&format!("provider {} may only register new sites named {}-…", p.name, p.name))
                    .field("site.id"))
            }
        },
        _ => Err(ApiError::forbidden(&format!("a {} may not connect sites", p.role.as_str()))),
    }
}

/// The engine's agent site from the wire's declaration.
fn agent_site(d: suanwang_api::agent::SiteDeclaration) -> suanwang_core::network::AgentSite {
    suanwang_core::network::AgentSite {
        id: d.id,
        city: d.city,
        pue: d.pue,
        pools: d
            .pools
            .into_iter()
            .map(|p| suanwang_core::network::AgentPool {
                name: p.name,
                model: p.model,
                count: p.count,
                memory_gib_per_unit: p.memory_gib_per_unit,
                power_w_per_unit: p.power_w_per_unit,
                price_fen_per_unit_hour: p.price_fen_per_unit_hour,
            })
            .collect(),
    }
}

/// The wire's assignment from the engine's.
fn wire_assignment(a: suanwang_engine::Assignment) -> suanwang_api::agent::Assignment {
    suanwang_api::agent::Assignment {
        id: a.id,
        attempt: a.attempt,
        site: a.site,
        command: a.command,
        args: a.args,
        env: a.env,
        cores: a.cores,
        memory_mib: a.memory_mib,
        time_limit_s: a.time_limit_s,
        checkpoint_s: a.checkpoint_s,
        tenant: a.tenant,
        run_id: a.run_id,
    }
}

async fn register(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<suanwang_api::agent::RegisterAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    // who may connect sites at all is decided before the body is read: a tenant posting
    // anything gets 403, not a lesson in the body's shape
    if !matches!(p.role, Role::Operator | Role::Provider) {
        return Err(ApiError::forbidden(&format!("a {} may not connect sites", p.role.as_str())));
    }
    let body = body.map_err(|e| body_error(&e))?;
    refuse_duplicate_keys(&body)?;
    let b: suanwang_api::agent::RegisterRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_registration", "the registration is not valid")
            .detail(e.to_string())
            .hint("{site: {id, city, pue, pools: [...]}, detected: {cores, memory_mib, gpus}}")
    })?;
    if let Some(why) = suanwang_core::ident::id_problem(&b.site.id) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_registration",
            format!("site.id: {:?} {why}", b.site.id),
        )
        .field("site.id")
        .hint("a site id is lowercase ASCII [a-z][a-z0-9_-]*, at most 64 bytes"));
    }
    if inner.base_net.place(&b.site.id).is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_registration",
            format!("site.id: {:?} is already the id of a place of the network", b.site.id),
        )
        .field("site.id")
        .hint("choose an id no city, cluster, region, site or hub has"));
    }
    if inner.base_net.city(&b.site.city).is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_registration",
            format!("site.city: unknown city {:?}", b.site.city),
        )
        .field("site.city")
        .hint("a demand city id of the network (GET /v1/network: cities)"));
    }
    may_run_site(&inner, &p, &b.site.id, true)?;
    let detected = b.detected;
    let site = agent_site(b.site);
    // counts, memory, power and price must be plausible (the price within the reference
    // network's band for the model), checked against the reference data only
    let declared = inner.base_net.check_agent_site(&site).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_registration", format!("{}: {}", e.field, e.reason))
            .field(e.field)
            .hint("declare what the machine has, at a price within the reference band")
    })?;
    // what is declared must exist: no more cores, host memory or accelerator cards than the
    // agent detected (an accelerator pool's memory is the cards' own)
    let (cores, memory, gpus) = (declared.cores, declared.memory_mib, declared.accelerators);
    if cores > detected.cores || memory > detected.memory_mib || gpus > detected.gpus {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "over_declared",
            format!(
                "declared {cores} cores, {memory} MiB and {gpus} accelerators; detected {} cores, {} MiB and {} \
                 accelerators",
                detected.cores, detected.memory_mib, detected.gpus
            ),
        )
        .field("site.pools")
        .hint("declare at most what the machine has"));
    }
    if !(site.pue.is_finite() && (1.0..=3.0).contains(&site.pue)) {
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_pue", "pue must be in [1, 3]").field("site.pue")
        );
    }
    let id = site.id.clone();
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Register { principal: p, site, reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    let approved = rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))??;
    let mut answer = suanwang_api::agent::RegisterAnswer {
        site: id.clone(),
        registered: true,
        approval: if approved {
            suanwang_api::agent::Approval::Approved
        } else {
            suanwang_api::agent::Approval::Pending
        },
        control_plane: inner.identity.clone(),
        probe: None,
    };
    if inner.require_probe
        && !approved
        && let Ok(mut probes) = inner.probes.lock()
    {
        // each registration probes afresh: what the machine has now is what is approved
        let attempt = probes.get(&id).map_or(1, |p| p.attempt.saturating_add(1));
        let declared = crate::probe::Capacity { cores, memory_mib: memory, gpus };
        probes.insert(id.clone(), crate::probe::Probe { attempt, declared, result: None });
        answer.probe = Some("waiting".into());
        inner.views_changed.notify_waiters();
    }
    Ok(Json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    /// Long-poll: wait up to this many seconds for work (0–30).
    wait: Option<u64>,
    /// The same in milliseconds (0–30,000); overrides `wait`.
    wait_ms: Option<u64>,
    /// The `version` of the assignments the agent already has: the call returns as soon as
    /// they differ (or the wait ends). Without it, it returns as soon as there are any.
    known: Option<String>,
}

/// A fingerprint of a site's assignments (which jobs, which attempts).
fn assignments_version(list: &[suanwang_engine::Assignment]) -> String {
    let mut keys: Vec<(u64, u32)> = list.iter().map(|a| (a.id, a.attempt)).collect();
    keys.sort_unstable();
    let h = keys.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, (id, attempt)| {
        id.to_le_bytes()
            .iter()
            .chain(attempt.to_le_bytes().iter())
            .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    });
    format!("{:x}-{}", h, keys.len())
}

async fn assignments(
    State(inner): S,
    headers: HeaderMap,
    Path(site): Path<String>,
    q: Result<Query<PollQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<suanwang_api::agent::AssignmentsAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    may_run_site(&inner, &p, &site, false)?;
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query").detail(e.body_text()))?;
    let wait = match q.wait_ms {
        Some(ms) => std::time::Duration::from_millis(ms.min(30_000)),
        None => std::time::Duration::from_secs(q.wait.unwrap_or(0).min(30)),
    };
    let deadline = Instant::now() + wait;
    loop {
        // armed before looking, so a change between the look and the wait still wakes us
        let changed_views = inner.views_changed.notified();
        tokio::pin!(changed_views);
        changed_views.as_mut().enable();
        if let Ok(mut a) = inner.agents.lock() {
            if !a.contains_key(&site) {
                return Err(ApiError::not_found("registered site of that name").hint("POST /v1/agents/register first"));
            }
            a.insert(site.clone(), actor::wall_now().0);
        }
        let mut list: Vec<suanwang_engine::Assignment> = inner
            .views
            .read()
            .map(|v| v.assignments.values().filter(|a| a.site == site).cloned().collect())
            .unwrap_or_default();
        for a in &mut list {
            a.run_id = inner.run_id(a.id, a.attempt);
        }
        if let Some(p) = inner.probes.lock().ok().and_then(|p| p.get(&site).filter(|p| p.result.is_none()).cloned()) {
            list.push(p.assignment(&site, inner.run_id(crate::probe::PROBE_JOB, p.attempt)));
        }
        let version = assignments_version(&list);
        let changed = match &q.known {
            Some(known) => *known != version,
            None => !list.is_empty(),
        };
        if changed || Instant::now() >= deadline {
            return Ok(Json(suanwang_api::agent::AssignmentsAnswer {
                site,
                assignments: list.into_iter().map(wire_assignment).collect(),
                version,
                control_plane: inner.identity.clone(),
            }));
        }
        // the wait is also the heartbeat: refresh it at least every second
        let wake = deadline.min(Instant::now() + std::time::Duration::from_secs(1));
        tokio::select! {
            () = &mut changed_views => {}
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

async fn report(
    State(inner): S,
    headers: HeaderMap,
    Path(site): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    may_run_site(&inner, &p, &site, false)?;
    let body = body.map_err(|e| body_error(&e))?;
    refuse_duplicate_keys(&body)?;
    let r: suanwang_api::agent::Report = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_report", "the report is not valid")
            .detail(e.to_string())
    })?;
    let r = actor::AgentReport {
        id: r.id,
        attempt: r.attempt,
        succeeded: r.succeeded,
        reason: r.reason,
        cpu_seconds: r.cpu_seconds,
        peak_memory_mib: r.peak_memory_mib,
        wall_seconds: r.wall_seconds,
        stdout: r.stdout,
        stderr: r.stderr,
        raw_stdout: raw_stream(r.stdout_base64.as_deref(), "stdout_base64")?,
        raw_stderr: raw_stream(r.stderr_base64.as_deref(), "stderr_base64")?,
    };
    if r.id == crate::probe::PROBE_JOB {
        return probe_report(&inner, &site, &r).map(|v| Json(v).into_response());
    }
    let assigned_here = inner
        .views
        .read()
        .ok()
        .and_then(|v| v.assignments.get(&r.id).map(|a| a.site == site && a.attempt == r.attempt))
        .unwrap_or(false);
    if !assigned_here {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_report",
            format!("job {} attempt {} is not assigned to {site}", r.id, r.attempt),
        )
        .hint("the job was moved or cancelled; stop this run"));
    }
    if let Ok(mut a) = inner.agents.lock() {
        a.insert(site.clone(), actor::wall_now().0);
    }
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Report { principal: p, report: Box::new(r), reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    Ok(Json(rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))??).into_response())
}

/// A site's report of its probe job: judged against what its registration declared.
fn probe_report(
    inner: &Inner,
    site: &str,
    r: &actor::AgentReport,
) -> Result<suanwang_api::agent::ProbeVerdict, ApiError> {
    let mut probes = inner.probes.lock().map_err(|_| ApiError::unavailable("probes poisoned"))?;
    let Some(p) = probes.get_mut(site).filter(|p| p.attempt == r.attempt && p.result.is_none()) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_report",
            format!("no probe {} is waiting for site {site}", r.attempt),
        )
        .hint("the site registered again, or its probe was judged already"));
    };
    p.result = Some(crate::probe::judge(p.declared, r.succeeded, &r.stdout));
    let capacity = |c: &crate::probe::Capacity| suanwang_api::agent::Capacity {
        cores: c.cores,
        memory_mib: c.memory_mib,
        gpus: c.gpus,
    };
    let out = suanwang_api::agent::ProbeVerdict {
        site: site.to_string(),
        probe: p.state().to_string(),
        declared: capacity(&p.declared),
        found: p.result.as_ref().and_then(|r| r.as_ref().ok()).map(capacity),
        reason: p.result.as_ref().and_then(|r| r.as_ref().err()).cloned(),
    };
    tracing::info!(site, probe = ?out, "probe judged");
    drop(probes);
    inner.views_changed.notify_waiters();
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointQuery {
    /// The attempt that took the checkpoint (the fencing token).
    attempt: u32,
}

/// Whether job `id` is assigned to `site` now: at `attempt`, or at any attempt when `None`.
fn assigned_to(inner: &Inner, id: u64, site: &str, attempt: Option<u32>) -> bool {
    inner
        .views
        .read()
        .ok()
        .and_then(|v| v.assignments.get(&id).map(|a| a.site == site && attempt.is_none_or(|n| a.attempt == n)))
        .unwrap_or(false)
}

/// The current attempt of a job keeps its checkpoint (a gzipped tar of its checkpoint
/// directory) with the control plane; a stale attempt is refused like its reports.
async fn put_checkpoint(
    State(inner): S,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
    q: Result<Query<CheckpointQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<suanwang_api::agent::CheckpointAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    may_run_site(&inner, &p, &site, false)?;
    let id = parse_id(&id)?;
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query")
            .detail(e.body_text())
            .field("attempt")
            .hint("?attempt=N, the attempt that took the checkpoint")
    })?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the checkpoint is over {MAX_CHECKPOINT} bytes"),
            )
            .hint("keep large state in the job's own storage and checkpoint a reference to it")
        } else {
            body_error(&e)
        }
    })?;
    if !assigned_to(&inner, id, &site, Some(q.attempt)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_checkpoint",
            format!("job {id} attempt {} is not assigned to {site}", q.attempt),
        )
        .hint("the job was moved or cancelled; stop this run"));
    }
    let cp = suanwang_store::Checkpoint {
        job_id: i64::try_from(id).map_err(|_| ApiError::not_found("such job"))?,
        attempt: i64::from(q.attempt),
        at_ms: actor::wall_now().0,
        data: body.to_vec(),
    };
    inner.store.put_checkpoint(&cp).await.map_err(|e| ApiError::unavailable("the store").detail(e.to_string()))?;
    Ok(Json(suanwang_api::agent::CheckpointAnswer {
        id,
        attempt: q.attempt,
        bytes: cp.data.len() as u64,
        at_ms: cp.at_ms,
    }))
}

/// A job's newest checkpoint, for the site the job is assigned to now (checkpoint data goes
/// only where the scheduler placed the job, so residency holds for it too).
async fn get_checkpoint(
    State(inner): S,
    headers: HeaderMap,
    Path((site, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    may_run_site(&inner, &p, &site, false)?;
    let id = parse_id(&id)?;
    if !assigned_to(&inner, id, &site, None) {
        return Err(ApiError::new(StatusCode::CONFLICT, "not_assigned", format!("job {id} is not assigned to {site}")));
    }
    let job_id = i64::try_from(id).map_err(|_| ApiError::not_found("such job"))?;
    let cp = inner
        .store
        .checkpoint(job_id)
        .await
        .map_err(|e| ApiError::unavailable("the store").detail(e.to_string()))?
        .ok_or_else(|| ApiError::not_found("checkpoint of that job"))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/gzip".to_string()),
            (axum::http::HeaderName::from_static("x-suanwang-checkpoint-attempt"), cp.attempt.to_string()),
        ],
        cp.data,
    )
        .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveQuery {
    /// Hand the site to this provider (default: it stays with whoever registered it).
    owner: Option<String>,
}

/// The operator approves an agent's site: from now on it takes placements (unless suspended).
async fn approve(
    State(inner): S,
    headers: HeaderMap,
    Path(site): Path<String>,
    q: Result<Query<ApproveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::ApproveAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator], "approve sites")?;
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query")
            .detail(e.body_text())
            .hint("owner=PROVIDER")
    })?;
    if let Some(o) = &q.owner
        && let Some(why) = suanwang_core::ident::id_problem(o)
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("owner {o:?} {why}")).field("owner"));
    }
    if inner.require_probe {
        let pending_provider_site = inner
            .grants
            .read()
            .ok()
            .and_then(|g| g.get(&site).map(|g| !g.approved && !g.owner.is_operator()))
            .unwrap_or(false);
        if pending_provider_site {
            let blocked = match inner.probes.lock().ok().and_then(|p| p.get(&site).cloned()) {
                Some(p) => p.blocks_approval(),
                None => Some(
                    "no probe job has run since the control plane started (its agent probes when it registers again)"
                        .into(),
                ),
            };
            if let Some(why) = blocked {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "probe_required",
                    format!("site {site} may not be approved yet: {why}"),
                )
                .hint("--require-probe is on: the site's agent must run its probe job and find what it declared"));
            }
        }
    }
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Approve { principal: p, site: site.clone(), owner: q.owner, reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    let g = rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))??;
    Ok(Json(api::ApproveAnswer {
        site,
        approval: api::Approval::of(g.approved),
        suspended: g.suspended,
        owner: g.owner.name,
        owner_role: g.owner.role,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SuspendQuery {
    /// Move the site's placed and running jobs now instead of letting them finish there.
    #[serde(default, rename = "move")]
    move_jobs: bool,
}

async fn suspend(
    State(inner): S,
    headers: HeaderMap,
    Path(site): Path<String>,
    q: Result<Query<SuspendQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::SuspendAnswer>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query")
            .detail(e.body_text())
            .field("move")
            .hint("move=true or move=false")
    })?;
    set_suspended(&inner, &headers, site, true, q.move_jobs).await
}

async fn resume(
    State(inner): S,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> Result<Json<api::SuspendAnswer>, ApiError> {
    set_suspended(&inner, &headers, site, false, false).await
}

/// The operator stops new placements on a site (what runs there finishes, unless `move`), or
/// allows them again.
async fn set_suspended(
    inner: &Arc<Inner>,
    headers: &HeaderMap,
    site: String,
    suspended: bool,
    move_jobs: bool,
) -> Result<Json<api::SuspendAnswer>, ApiError> {
    let p = authenticate(inner, headers).await?;
    require(&p, &[Role::Operator], "suspend or resume sites")?;
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Suspend { principal: p, site: site.clone(), suspended, move_jobs, reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))??;
    Ok(Json(api::SuspendAnswer { site, suspended, moved_jobs: move_jobs }))
}
