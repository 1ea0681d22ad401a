//! The dataset registry (R6 统一标识编码、登记、溯源; classification drives residency; compute
//! goes to the data): datasets registered under unified identifiers (`core::dataid`), resolved
//! to records of type/value pairs, their replicas, and their lineage from the evidence log.
//!
//! The registry's rows live in the store (`datasets`), written through the engine's actor so a
//! change is in one group commit with its log row and its evidence entry. Changes to one
//! dataset are serialised by a lock here (read the record, change it, commit it). A job names
//! its input by dataset id: the submission is completed from the record — size, the replica
//! nearest the job's origin, and the classification (a `restricted` dataset's jobs are placed in
//! its region) — and the job's records in the log carry the dataset as their subject; a job that
//! moved the data and completed adds a replica where it ran.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use suanwang_api as api;
use suanwang_core::Network;
use suanwang_core::dataid::DataId;
use suanwang_core::network::Place;
use suanwang_store::{DatasetRow, Store};
use tokio::sync::oneshot;

use crate::Inner;
use crate::actor::Request as Req;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::money_routes::parse_body;
use crate::routes::{authenticate, body_error, require};

type S = State<Arc<Inner>>;

fn store_error(e: &impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("store").detail(e.to_string())
}

fn invalid(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_dataset", why.into()).field(field)
}

/// Whether `p` may see dataset `r`: its owner, the operator and the regulator; public ones all.
fn may_see(p: &Principal, r: &api::DatasetRecord) -> bool {
    matches!(p.role, Role::Operator | Role::Regulator)
        || r.owner == p.name
        || r.classification == api::job::Classification::Public
}

/// The type/value pairs of a record, as a Handle resolves to.
fn values(r: &api::DatasetRecord) -> Vec<api::TypedValue> {
    let v = |k: &str, x: String| api::TypedValue { kind: k.into(), value: x };
    let mut out = vec![
        v("URL", format!("/v1/datasets/{}", r.id)),
        v("NAME", r.name.clone()),
        v("OWNER", r.owner.clone()),
        v("SIZE_GB", r.size_gb.to_string()),
        v("SHA256", r.sha256.clone()),
        v("CLASSIFICATION", classification_str(r.classification).into()),
        v("LICENCE", r.licence.clone()),
    ];
    if let Some(region) = &r.region {
        out.push(v("REGION", region.clone()));
    }
    out.extend(r.replicas.iter().map(|x| v("REPLICA", x.site.clone())));
    out
}

fn classification_str(c: api::job::Classification) -> &'static str {
    match c {
        api::job::Classification::Public => "public",
        api::job::Classification::Internal => "internal",
        api::job::Classification::Restricted => "restricted",
    }
}

/// The record of a stored row (the body is the record without its values).
fn record_of(row: &DatasetRow) -> Result<api::DatasetRecord, ApiError> {
    let mut r: api::DatasetRecord = serde_json::from_str(&row.body)
        .map_err(|e| ApiError::unavailable("a stored dataset record is damaged").detail(e.to_string()))?;
    r.values = values(&r);
    Ok(r)
}

fn row_of(r: &api::DatasetRecord) -> DatasetRow {
    let stored = api::DatasetRecord { values: vec![], ..r.clone() };
    DatasetRow {
        id: r.id.clone(),
        owner: r.owner.clone(),
        body: serde_json::to_string(&stored).unwrap_or_default(),
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
    }
}

/// The region (hub area or province) of a city or site: where a restricted dataset stays.
fn region_of(net: &Network, place: &str) -> Option<String> {
    match net.place(place)? {
        Place::Site(i) => Some(net.sites[i].region.clone()),
        Place::City(i) => Some(net.cities[i].region.clone().unwrap_or_else(|| net.cities[i].province.clone())),
        _ => None,
    }
}

/// Commits a dataset's row through the actor (with its log row and evidence entry).
async fn commit(inner: &Inner, actor: &str, kind: &'static str, r: &api::DatasetRecord) -> Result<(), ApiError> {
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Dataset { actor: actor.to_string(), kind, row: row_of(r), reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine is not running"))?;
    rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))?
}

async fn load(inner: &Inner, id: &DataId) -> Result<Option<api::DatasetRecord>, ApiError> {
    match inner.store.dataset(&id.to_string()).await.map_err(|e| store_error(&e))? {
        Some(row) => Ok(Some(record_of(&row)?)),
        None => Ok(None),
    }
}

fn hex64(s: &str, field: &str) -> Result<String, ApiError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(invalid(field, format!("{field}: a SHA-256 is 64 hex digits")))
    }
}

pub async fn register(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Tenant], "register datasets")?;
    let body = body.map_err(|e| body_error(&e))?;
    let spec: api::DatasetSpec =
        parse_body(&body, "invalid_dataset", "{name, size_gb, sha256, classification, licence, location, owner?}")?;
    let owner = match (&spec.owner, p.role) {
        (Some(o), Role::Operator) => o.clone(),
        (Some(o), _) if *o != p.name => {
            return Err(ApiError::forbidden(&format!("{} may not register datasets for {o}", p.name)).field("owner"));
        }
        _ => p.name.clone(),
    };
    if let Some(why) = suanwang_core::ident::id_problem(&owner) {
        return Err(invalid("owner", format!("owner {why}")));
    }
    if spec.name.trim().is_empty() || spec.name.len() > 128 || spec.name.chars().any(char::is_control) {
        return Err(invalid("name", "name: 1 to 128 bytes of text without control characters"));
    }
    if !(spec.size_gb.is_finite() && spec.size_gb > 0.0 && spec.size_gb <= 100_000_000.0) {
        return Err(invalid("size_gb", "size_gb: more than 0, at most 100 PB"));
    }
    if spec.licence.trim().is_empty() || spec.licence.len() > 128 || spec.licence.chars().any(char::is_control) {
        return Err(invalid("licence", "licence: an SPDX id or 1 to 128 bytes of text"));
    }
    let sha256 = hex64(&spec.sha256, "sha256")?;
    let net = inner.net();
    let region = region_of(&net, &spec.location).ok_or_else(|| {
        invalid("location", format!("location {:?} is not a city or site of this network", spec.location))
    })?;
    let now = crate::actor::wall_now().0;
    // a fresh identifier; one already taken (65 random bits: never in practice) is drawn again
    let mut id = None;
    for _ in 0..8 {
        let mut random = [0u8; 9];
        getrandom::fill(&mut random).map_err(|e| ApiError::unavailable("no randomness").detail(e.to_string()))?;
        let fresh = DataId::issue(&inner.id_prefix, random).map_err(|e| ApiError::unavailable(e.to_string()))?;
        if load(&inner, &fresh).await?.is_none() {
            id = Some(fresh);
            break;
        }
    }
    let id = id.ok_or_else(|| ApiError::unavailable("no fresh dataset identifier could be drawn"))?;
    let mut r = api::DatasetRecord {
        id: id.to_string(),
        name: spec.name,
        owner,
        size_gb: spec.size_gb,
        sha256,
        classification: spec.classification,
        region: (spec.classification == api::job::Classification::Restricted).then_some(region),
        licence: spec.licence,
        replicas: vec![api::Replica {
            site: spec.location,
            since_ms: now,
            sha256_verified: false,
            by: "registration".into(),
            job: None,
        }],
        created_at_ms: now,
        updated_at_ms: now,
        values: vec![],
    };
    {
        let _one = inner.dataset_lock.lock().await;
        commit(&inner, &p.name, "register_dataset", &r).await?;
    }
    r.values = values(&r);
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

pub async fn list(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<api::DatasetList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "list datasets")?;
    let limit: i64 = match q.get("limit") {
        None => 100,
        Some(l) => l.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("limit: {l:?} is not 1 to 1000")).field("limit")
        })?,
    };
    let after = q.get("after").map_or("", String::as_str);
    let owner = q.get("owner").map(String::as_str);
    if let Some(o) = owner
        && let Some(why) = suanwang_core::ident::id_problem(o)
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("owner {o:?} {why}")).field("owner"));
    }
    if after.chars().count() > 128 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "after: at most 128 characters").field("after"));
    }
    let mut out = vec![];
    let mut cursor = after.to_string();
    // a tenant's page skips what it may not see: read on until the page is full
    loop {
        let rows = inner.store.datasets(owner, &cursor, limit).await.map_err(|e| store_error(&e))?;
        let done = (rows.len() as i64) < limit;
        for row in &rows {
            cursor.clone_from(&row.id);
            let r = record_of(row)?;
            if may_see(&p, &r) && (out.len() as i64) < limit {
                out.push(r);
            }
        }
        if done || out.len() as i64 >= limit {
            break;
        }
    }
    let next = (out.len() as i64 == limit).then(|| out.last().map(|r| r.id.clone())).flatten();
    Ok(Json(api::DatasetList { datasets: out, next }))
}

/// The dataset id of a path: its segments joined (the id's '/' sent as is or as %2F). A path
/// that holds no identifier names no dataset: 404, saying why (a mistyped check symbol, …).
fn path_id(parts: &[(String, String)]) -> Result<DataId, ApiError> {
    let joined: Vec<&str> = parts.iter().map(|(_, v)| v.as_str()).collect();
    DataId::parse(&joined.join("/")).map_err(|e| {
        ApiError::new(StatusCode::NOT_FOUND, "bad_dataset_id", format!("no such dataset: {e}"))
            .field("dataset")
            .hint("a dataset id is prefix/suffix, e.g. 88.156.1/1KX9QZ4M7T2BDE; send its '/' as is or as %2F")
    })
}

/// `GET /v1/datasets/{id}`.
pub async fn get(
    State(inner): S,
    headers: HeaderMap,
    Path(parts): Path<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    read(&inner, &headers, &parts, false).await
}

/// `GET /v1/datasets/{id}/lineage`.
pub async fn lineage(
    State(inner): S,
    headers: HeaderMap,
    Path(parts): Path<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    read(&inner, &headers, &parts, true).await
}

async fn read(
    inner: &Inner,
    headers: &HeaderMap,
    parts: &[(String, String)],
    lineage: bool,
) -> Result<Response, ApiError> {
    let p = authenticate(inner, headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "read datasets")?;
    let id = path_id(parts)?;
    let r = load(inner, &id).await?.filter(|r| may_see(&p, r)).ok_or_else(|| ApiError::not_found("such dataset"))?;
    if !lineage {
        return Ok(Json(r).into_response());
    }
    if !(matches!(p.role, Role::Operator | Role::Regulator) || r.owner == p.name) {
        return Err(ApiError::not_found("such dataset").hint("a dataset's lineage is its owner's"));
    }
    let bundle = crate::evidence_routes::bundle_about(inner, &p, None, Some(&format!("dataset/{id}"))).await?;
    Ok(Json(bundle).into_response())
}

/// `POST /v1/datasets/{id}/replicas`.
pub async fn replicas(
    State(inner): S,
    headers: HeaderMap,
    Path(parts): Path<Vec<(String, String)>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::DatasetRecord>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Tenant], "report replicas")?;
    let id = path_id(&parts)?;
    let body = body.map_err(|e| body_error(&e))?;
    let req: api::ReplicaRequest = parse_body(&body, "invalid_dataset", "{site, sha256}")?;
    let sha = hex64(&req.sha256, "sha256")?;
    let r = add_replica(&inner, &id, &p, &req.site, Some(&sha), "report", None).await?;
    Ok(Json(r))
}

/// Adds a replica of `id` at `site` (a city or site id), checking the residency of a restricted
/// dataset and, when given, the SHA-256 found there.
pub async fn add_replica(
    inner: &Inner,
    id: &DataId,
    by: &Principal,
    site: &str,
    sha256: Option<&str>,
    how: &str,
    job: Option<u64>,
) -> Result<api::DatasetRecord, ApiError> {
    let _one = inner.dataset_lock.lock().await;
    let mut r = load(inner, id).await?.ok_or_else(|| ApiError::not_found("such dataset"))?;
    if !(by.role == Role::Operator || r.owner == by.name) {
        return Err(
            ApiError::not_found("such dataset").hint("replicas are reported by the dataset's owner or the operator")
        );
    }
    let net = inner.net();
    let region = region_of(&net, site)
        .ok_or_else(|| invalid("site", format!("site {site:?} is not a city or site of this network")))?;
    if let Some(keep) = &r.region
        && *keep != region
    {
        return Err(invalid(
            "site",
            format!("dataset {id} is restricted to region {keep}; {site} is in {region}: it may not be copied there"),
        ));
    }
    if let Some(s) = sha256
        && s != r.sha256
    {
        return Err(invalid(
            "sha256",
            format!("the SHA-256 found at {site} does not match the dataset's: the copy is not it"),
        ));
    }
    if r.replicas.iter().any(|x| x.site == site) {
        return Ok(api::DatasetRecord { values: values(&r), ..r });
    }
    let now = crate::actor::wall_now().0;
    r.replicas.push(api::Replica {
        site: site.to_string(),
        since_ms: now,
        sha256_verified: sha256.is_some(),
        by: how.into(),
        job,
    });
    r.updated_at_ms = now;
    commit(inner, &by.name, "replicate_dataset", &r).await?;
    r.values = values(&r);
    Ok(r)
}

/// Completes a submission whose `input` names a dataset from the registry: size, the replica
/// nearest the job's origin, and the classification. Whether it changed `spec`.
pub async fn resolve_input(inner: &Inner, p: &Principal, spec: &mut Value) -> Result<bool, ApiError> {
    let Some(d) = spec.get("input").and_then(|i| i.get("dataset")).and_then(Value::as_str).map(str::to_string) else {
        return Ok(false);
    };
    let id = DataId::parse(&d).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", e.to_string()).field("input.dataset")
    })?;
    let r = load(inner, &id).await?.filter(|r| may_see(p, r)).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            format!("no dataset {id} that this tenant may read"),
        )
        .field("input.dataset")
        .hint("`suanwang dataset list` shows the datasets you may read")
    })?;
    let net = inner.net();
    let origin = spec.get("origin").and_then(Value::as_str).and_then(|o| net.place(o)).map(|o| net.latlon(o));
    let nearest = r
        .replicas
        .iter()
        .filter_map(|x| net.place(&x.site).map(|pl| (x, net.latlon(pl))))
        .min_by(|(_, a), (_, b)| {
            let d = |x: &suanwang_core::geo::LatLon| origin.map_or(0.0, |o| o.distance_km(*x));
            d(a).total_cmp(&d(b))
        })
        .map(|(x, _)| x.site.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_spec",
                format!("dataset {id} has no replica in this network"),
            )
            .field("input.dataset")
        })?;
    if let Some(input) = spec.get_mut("input").and_then(Value::as_object_mut) {
        input.insert("dataset".into(), Value::String(id.to_string()));
        input.entry("size_gb").or_insert_with(|| serde_json::json!(r.size_gb));
        input.insert("location".into(), Value::String(nearest));
        input.insert("classification".into(), Value::String(classification_str(r.classification).into()));
    }
    Ok(true)
}
