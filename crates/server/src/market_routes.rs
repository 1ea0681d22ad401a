//! The market's routes (issue 16, R4): orders, contracts, prices and a clearing on demand.
//! Roles: a provider asks (its own capacity), a tenant bids (its own wallet), the operator may
//! do either for a named party; tenants see their orders and contracts, providers theirs and
//! their sales, the operator and the regulator all; prices are public to every role.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use suanwang_api::market::{
    ClearingAnswer, ContractList, ContractView, OrderList, OrderRequest, OrderSide, OrderView, PriceList, PriceView,
    ReserveRequest,
};
use suanwang_economy::market::{Order, Product, Side};
use suanwang_store::{MarketQuery, Store};
use tokio::sync::oneshot;

use crate::Inner;
use crate::actor::Request;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::market::{JobBid, MarketDone, MarketOp, StoredOrder, row_id};
use crate::money_routes::parse_body;
use crate::routes::{authenticate, require};

type S = State<Arc<Inner>>;

fn bad(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", why.into()).field(field)
}

fn invalid(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_order", why.into()).field(field)
}

fn store_error(e: &suanwang_store::StoreError) -> ApiError {
    ApiError::unavailable("store").detail(e.to_string())
}

async fn ask(inner: &Inner, op: MarketOp) -> Result<MarketDone, ApiError> {
    let (tx, rx) = oneshot::channel();
    inner.tx.send(Request::Market { op, reply: tx }).await.map_err(|_| ApiError::unavailable("the engine stopped"))?;
    rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))?
}

/// The sites a product's place stands for: the site itself, or a cluster's, a hub's or a green
/// region's sites.
pub(crate) fn sites_of<'a>(net: &'a suanwang_core::Network, place: &str) -> Vec<&'a suanwang_core::network::Site> {
    net.sites
        .iter()
        .filter(|s| {
            s.id == place || s.cluster.as_deref() == Some(place) || s.hub.as_deref() == Some(place) || s.region == place
        })
        .collect()
}

/// Each provider's units of the product's kind at its place, with the dearest on-demand price
/// among them (fen per unit·hour); 422 naming `product` when the place is unknown or has none.
fn sellers(inner: &Inner, p: &Product) -> Result<BTreeMap<String, (u64, i64)>, ApiError> {
    let net = inner.net();
    let sites = sites_of(&net, &p.place);
    if sites.is_empty() {
        return Err(invalid("product", format!("no site, cluster, hub or green region {:?}", p.place)));
    }
    let grants = inner.grants();
    let book = inner.books.lock().map_err(|_| ApiError::unavailable("the books are unavailable"))?.book.clone();
    let mut out: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for s in sites {
        let provider = crate::billing::provider_of(&book, &net, &grants, &s.id);
        for pool in s.pools.iter().filter(|x| p.covers(x.family.as_str(), &x.model)) {
            let e = out.entry(provider.clone()).or_default();
            e.0 = e.0.saturating_add(pool.count);
            e.1 = e.1.max(pool.price_fen_per_unit_hour);
        }
    }
    if out.values().all(|(units, _)| *units == 0) {
        return Err(invalid("product", format!("no {}/{} capacity at {}", p.family, p.model, p.place)));
    }
    Ok(out)
}

/// `POST /v1/market/orders`: an ask or a bid, answered once it is durable (201).
pub async fn place(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let p = authenticate(&inner, &headers).await?;
    let body = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text()))?;
    let r: OrderRequest = parse_body(&body, "invalid_order", "{side: ask|bid, product, units, price_fen, owner?}")?;
    let owner = match (p.role, r.side, r.owner.as_deref()) {
        (Role::Operator, _, Some(o)) => o.to_string(),
        (Role::Operator, _, None) => {
            return Err(invalid("owner", "the operator names whose order it is (the provider or the tenant)"));
        }
        (Role::Provider, OrderSide::Ask, None) | (Role::Tenant, OrderSide::Bid, None) => p.name.clone(),
        (Role::Provider, OrderSide::Ask, Some(o)) | (Role::Tenant, OrderSide::Bid, Some(o)) if o == p.name => o.into(),
        (Role::Provider | Role::Tenant, _, Some(o)) if (r.side == OrderSide::Ask) == (p.role == Role::Provider) => {
            return Err(ApiError::forbidden(&format!("a {} places its own orders (owner {o:?})", p.role.as_str())));
        }
        (Role::Provider, OrderSide::Bid, _) => return Err(ApiError::forbidden("providers ask; tenants bid")),
        (Role::Tenant, OrderSide::Ask, _) => return Err(ApiError::forbidden("tenants bid; providers ask")),
        _ => return Err(ApiError::forbidden(&format!("a {} does not trade", p.role.as_str()))),
    };
    if owner.is_empty() || owner.chars().count() > 64 {
        return Err(invalid("owner", "1 to 64 characters"));
    }
    let product = Product::parse(&r.product).map_err(|e| invalid("product", e.to_string()))?;
    let owned = sellers(&inner, &product)?.get(&owner).map_or(0, |(units, _)| *units);
    let side = match r.side {
        OrderSide::Ask => Side::Ask,
        OrderSide::Bid => Side::Bid,
    };
    if side == Side::Ask && owned == 0 {
        return Err(invalid(
            "product",
            format!("{owner} has no {}/{} capacity at {} to offer", product.family, product.model, product.place),
        ));
    }
    let order = Order { id: 0, side, owner, product, units: r.units, price_fen: r.price_fen, seq: 0 };
    match ask(&inner, MarketOp::Place { order: Box::new(order), capacity: owned, by: p.name.clone() }).await? {
        MarketDone::Order(v) => Ok((StatusCode::CREATED, Json(v))),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// `POST /v1/market/orders/{id}/cancel`: an open order out of the book, a bid's hold released.
pub async fn cancel(State(inner): S, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<OrderView>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Provider, Role::Tenant], "cancel orders")?;
    let id: u64 = id.parse().map_err(|_| bad("id", format!("{id:?} is not an order number")))?;
    let op = MarketOp::Cancel { id, by: p.name.clone(), any_owner: p.role == Role::Operator };
    match ask(&inner, op).await? {
        MarketDone::Order(v) => Ok(Json(v)),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// `POST /v1/market/clear` (operator): a clearing now.
pub async fn clear(State(inner): S, headers: HeaderMap) -> Result<Json<ClearingAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator], "clear the market")?;
    match ask(&inner, MarketOp::Clear).await? {
        MarketDone::Cleared(a) => {
            // the bids' jobs whose windows have begun are in the engine before the answer
            release_due_jobs(&inner).await;
            Ok(Json(a))
        }
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

fn limit_of(q: &BTreeMap<String, String>) -> Result<i64, ApiError> {
    match q.get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad("limit", format!("{l:?} is not 1 to 1000"))),
    }
}

fn after_of(q: &BTreeMap<String, String>) -> Result<String, ApiError> {
    q.get("after").map_or(Ok(String::new()), |a| {
        a.parse::<u64>().map(row_id).map_err(|_| bad("after", format!("{a:?} is not an id")))
    })
}

/// The `product` filter: 1 to 256 characters (a product id; one nobody traded lists nothing).
fn product_of(q: &BTreeMap<String, String>) -> Result<Option<String>, ApiError> {
    match q.get("product") {
        Some(p) if p.is_empty() || p.chars().count() > 256 => Err(bad("product", "a product id, 1 to 256 characters")),
        p => Ok(p.cloned()),
    }
}

fn known(q: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(k, format!("unknown parameter {k:?}; known: {}", allowed.join(", ")))),
        None => Ok(()),
    }
}

/// Whose rows a principal lists: its own, or (operator, regulator) anyone's or `owner=`'s.
fn owner_filter(p: &Principal, asked: Option<&String>) -> Result<Option<String>, ApiError> {
    if asked.is_some_and(|o| o.is_empty() || o.chars().count() > 64) {
        return Err(bad("owner", "a party's name, 1 to 64 characters"));
    }
    match p.role {
        Role::Operator | Role::Regulator => Ok(asked.cloned()),
        Role::Tenant | Role::Provider => match asked {
            Some(o) if *o != p.name => Err(ApiError::forbidden(&format!("a {} lists its own", p.role.as_str()))),
            _ => Ok(Some(p.name.clone())),
        },
        _ => Err(ApiError::forbidden(&format!("a {} has no orders or contracts", p.role.as_str()))),
    }
}

/// `GET /v1/market/orders[?state=&product=&owner=&after=&limit=]`.
pub async fn orders(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<OrderList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    known(&q, &["state", "product", "owner", "after", "limit"])?;
    let owner = owner_filter(&p, q.get("owner"))?;
    if let Some(s) = q.get("state")
        && !["open", "filled", "cancelled", "expired"].contains(&s.as_str())
    {
        return Err(bad("state", format!("{s:?} is not open, filled, cancelled or expired")));
    }
    let limit = limit_of(&q)?;
    let query = MarketQuery {
        kind: "order".into(),
        owner,
        product: product_of(&q)?,
        state: q.get("state").cloned(),
        after: after_of(&q)?,
        limit,
    };
    let rows = inner.store.market(&query).await.map_err(|e| store_error(&e))?;
    let orders: Vec<OrderView> =
        rows.iter().filter_map(|r| serde_json::from_str::<StoredOrder>(&r.body).ok()).map(|o| o.view).collect();
    let next = (rows.len() as i64 == limit).then(|| orders.last().map(|o| o.id)).flatten();
    Ok(Json(OrderList { orders, next }))
}

/// `GET /v1/contracts[?product=&owner=&after=&limit=]`: a tenant's purchases, a provider's
/// sales, or (operator, regulator) all.
pub async fn contracts(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<ContractList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    known(&q, &["product", "owner", "after", "limit"])?;
    let owner = owner_filter(&p, q.get("owner"))?;
    let kind = if p.role == Role::Provider { "sale" } else { "contract" };
    let limit = limit_of(&q)?;
    let query =
        MarketQuery { kind: kind.into(), owner, product: product_of(&q)?, after: after_of(&q)?, limit, state: None };
    let rows = inner.store.market(&query).await.map_err(|e| store_error(&e))?;
    let contracts: Vec<ContractView> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
    let next = (rows.len() as i64 == limit).then(|| contracts.last().map(|c| c.id)).flatten();
    Ok(Json(ContractList { contracts, next }))
}

/// `POST /v1/contracts`: capacity bought at the reserved price for a whole window (包年包月),
/// answered with the contract once it is durable (201). The seller is named or the only provider
/// with the product's kind at its place; the on-demand price is the highest of the seller's
/// pools of that kind there (the block may be held in any of them).
pub async fn reserve(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<ContractView>), ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Tenant], "buy reserved capacity")?;
    let body = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text()))?;
    let r: ReserveRequest = parse_body(&body, "invalid_order", "{product, units, seller?, tenant?}")?;
    let tenant = match (p.role, r.tenant.as_deref()) {
        (Role::Operator, Some(t)) => t.to_string(),
        (Role::Operator, None) => return Err(invalid("tenant", "the operator names the tenant it buys for")),
        (_, Some(t)) if t != p.name => {
            return Err(ApiError::forbidden(&format!("a tenant buys for itself, not for {t:?}")));
        }
        _ => p.name.clone(),
    };
    if tenant.is_empty() || tenant.chars().count() > 64 {
        return Err(invalid("tenant", "1 to 64 characters"));
    }
    let product = Product::parse(&r.product).map_err(|e| invalid("product", e.to_string()))?;
    let sellers = sellers(&inner, &product)?;
    let seller = match r.seller {
        Some(s) if sellers.contains_key(&s) => s,
        Some(s) => {
            return Err(invalid(
                "seller",
                format!("{s} has no {}/{} at {}", product.family, product.model, product.place),
            ));
        }
        None if sellers.len() == 1 => sellers.keys().next().cloned().unwrap_or_default(),
        None => {
            let names: Vec<&str> = sellers.keys().map(String::as_str).collect();
            return Err(invalid("seller", format!("name one of {}", names.join(", "))));
        }
    };
    let (capacity, on_demand_fen) = sellers.get(&seller).copied().unwrap_or_default();
    let op = MarketOp::Reserve {
        tenant,
        product: Box::new(product),
        units: r.units,
        seller,
        on_demand_fen,
        capacity,
        by: p.name.clone(),
    };
    match ask(&inner, op).await? {
        MarketDone::Contract(v) => Ok((StatusCode::CREATED, Json(v))),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// `GET /v1/market/prices[?product=]`: each product's latest clearing price, or one product's
/// history (every role).
pub async fn prices(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<PriceList>, ApiError> {
    authenticate(&inner, &headers).await?;
    known(&q, &["product"])?;
    let query = match product_of(&q)? {
        Some(pr) => MarketQuery { kind: "price".into(), product: Some(pr), limit: 1000, ..MarketQuery::default() },
        None => MarketQuery { kind: "last_price".into(), limit: 1000, ..MarketQuery::default() },
    };
    let rows = inner.store.market(&query).await.map_err(|e| store_error(&e))?;
    let prices: Vec<PriceView> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
    Ok(Json(PriceList { prices }))
}

/// `POST /v1/carbon/offsets` (R5): an ended job's market-based carbon retired against a lot of
/// carbon-sink credits, paid to the lot's holder — once per job (201).
pub async fn offset(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<suanwang_api::market::OffsetView>), ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Tenant], "offset jobs' carbon")?;
    let body = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text()))?;
    let r: suanwang_api::market::OffsetRequest = parse_body(&body, "invalid_offset", "{job, lot?}")?;
    let no_job = || invalid("job", format!("no job {} of yours", r.job));
    let job = crate::routes::find_job(&inner, r.job).await?.ok_or_else(no_job)?;
    if p.role == Role::Tenant && job.tenant != p.name {
        return Err(no_job());
    }
    if !crate::actor::terminal(job.state) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ended",
            format!("job {} has not ended: its carbon is not known yet", r.job),
        )
        .field("job"));
    }
    let kg = job.meter.map_or(0.0, |m| m.carbon_market_kg);
    let grams = suanwang_economy::carbon::grams_of(kg)
        .filter(|g| *g > 0)
        .ok_or_else(|| invalid("job", format!("job {} emitted no market-based carbon to offset ({kg} kg)", r.job)))?;
    // retired once: the store knows every offset committed
    let q = MarketQuery { kind: "offset".into(), after: row_id(r.job - 1), limit: 1, ..MarketQuery::default() };
    let done = inner.store.market(&q).await.map_err(|e| store_error(&e))?;
    if done.first().is_some_and(|row| row.id == row_id(r.job)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("job {}'s carbon is already offset", r.job),
        )
        .field("job"));
    }
    let op = MarketOp::Offset { tenant: job.tenant.clone(), job: r.job, grams, lot: r.lot, by: p.name.clone() };
    match ask(&inner, op).await? {
        MarketDone::Offset(v) => Ok((StatusCode::CREATED, Json(v))),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// `GET /v1/carbon/credits`: the lots with what is left and retired (every role), and the
/// offsets the caller may see (a tenant its own; a provider those of its lots; the operator and
/// the regulator all).
pub async fn credits(
    State(inner): S,
    headers: HeaderMap,
) -> Result<Json<suanwang_api::market::CreditsAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    let lots: Vec<suanwang_economy::carbon::CreditLot> =
        inner.market.lock().map(|m| m.lots.clone()).map_err(|_| ApiError::unavailable("the market"))?;
    let views = {
        let books = inner.books.lock().map_err(|_| ApiError::unavailable("the books are unavailable"))?;
        lots.iter()
            .map(|l| {
                // before the first offset nothing is issued yet: the whole lot is left
                let issued = books.find(suanwang_economy::AccountKind::CarbonLot, &format!("lot:{}", l.id)).is_some();
                let total = l.grams().unwrap_or(0);
                let left = if issued { crate::market::Market::remaining(&books, &l.id) } else { total };
                suanwang_api::market::LotView {
                    id: l.id.clone(),
                    holder: l.holder.clone(),
                    place: l.place.clone(),
                    issuer: l.issuer.clone(),
                    vintage: l.vintage,
                    tonnes: l.tonnes,
                    price_fen_per_tonne: l.price_fen_per_tonne,
                    remaining_grams: left,
                    retired_grams: total.saturating_sub(left),
                    source: l.source.clone(),
                }
            })
            .collect()
    };
    let owner = match p.role {
        Role::Tenant => Some(p.name.clone()),
        _ => None,
    };
    let q = MarketQuery { kind: "offset".into(), owner, limit: 1000, ..MarketQuery::default() };
    let rows = inner.store.market(&q).await.map_err(|e| store_error(&e))?;
    let mut offsets: Vec<suanwang_api::market::OffsetView> =
        rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
    match p.role {
        Role::Operator | Role::Regulator | Role::Tenant => {}
        Role::Provider => offsets.retain(|o| o.holder == p.name),
        _ => offsets.clear(),
    }
    Ok(Json(suanwang_api::market::CreditsAnswer { lots: views, offsets }))
}

/// `POST /v1/quotas` (operator): set a tenant's quota of a family, in a region or everywhere.
pub async fn set_quota(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<suanwang_api::market::QuotaView>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator], "set quotas")?;
    let body = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text()))?;
    let q: suanwang_api::market::QuotaRequest =
        parse_body(&body, "invalid_quota", "{tenant, family, region?, max_units}")?;
    if q.tenant.is_empty() || q.tenant.chars().count() > 64 {
        return Err(invalid("tenant", "1 to 64 characters"));
    }
    if suanwang_core::Family::parse(&q.family).is_none() {
        return Err(invalid("family", format!("{:?} is not general, intelligent or super", q.family)));
    }
    if let Some(r) = &q.region {
        let net = inner.net();
        if !net.hubs.iter().any(|h| &h.id == r) && !net.regions.iter().any(|x| &x.id == r) {
            return Err(invalid("region", format!("{r:?} is not a hub or green region")));
        }
    }
    if q.max_units > 1_000_000_000 {
        return Err(invalid("max_units", "at most 1,000,000,000"));
    }
    let used = crate::market::used_units(&inner, &q.tenant, &q.family);
    let view = suanwang_api::market::QuotaView {
        tenant: q.tenant.clone(),
        family: q.family.clone(),
        region: q.region.clone(),
        max_units: q.max_units,
        used_units: used.get(q.region.as_deref().unwrap_or("")).copied().unwrap_or(0),
    };
    match ask(&inner, MarketOp::Quota { quota: q, by: p.name.clone() }).await? {
        MarketDone::Quota => Ok(Json(view)),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// `GET /v1/quotas`: every quota (operator, regulator) or the tenant's own, with what its live
/// jobs hold now.
pub async fn quotas(State(inner): S, headers: HeaderMap) -> Result<Json<suanwang_api::market::QuotaList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "read quotas")?;
    let all: Vec<((String, String, String), u64)> = inner
        .market
        .lock()
        .map_err(|_| ApiError::unavailable("the market"))?
        .quotas
        .iter()
        .filter(|((t, _, _), _)| p.role != Role::Tenant || *t == p.name)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let quotas = all
        .into_iter()
        .map(|((tenant, family, region), max_units)| {
            let used = crate::market::used_units(&inner, &tenant, &family);
            suanwang_api::market::QuotaView {
                used_units: used.get(&region).copied().unwrap_or(0),
                tenant,
                family,
                region: (!region.is_empty()).then_some(region),
                max_units,
            }
        })
        .collect();
    Ok(Json(suanwang_api::market::QuotaList { quotas }))
}

/// A job with `max_price` (issue 16 item 1): a bid of its tenant's on the open ask that fits it
/// (`Market::job_bid`); the order carries the job's spec (without `max_price`).
pub(crate) async fn submit_bid(
    inner: &Inner,
    p: &Principal,
    job: &suanwang_core::Job,
    mut spec: serde_json::Value,
    max_price: u64,
) -> Result<OrderView, ApiError> {
    if let Some(o) = spec.as_object_mut() {
        o.remove("max_price");
    }
    let net = inner.net();
    let mut places = job.allowed_sites.clone();
    for r in &job.allowed_regions {
        places.push(r.clone());
        places.extend(sites_of(&net, r).iter().map(|s| s.id.clone()));
    }
    places.sort();
    places.dedup();
    let bid = JobBid {
        spec,
        tenant: job.tenant.clone(),
        family: job.resources.family.as_str().to_string(),
        model: job.resources.accelerator.clone(),
        places,
        units: u64::from(job.resources.count),
        max_price,
        // work stated as an amount has no run time before its pool is known: any window fits
        run_s: match job.work {
            suanwang_core::job::Work::RunTime { run_time_s } => i64::from(run_time_s),
            suanwang_core::job::Work::Amount { .. } => 0,
        },
        deadline_ms: job.deadline.map(|d| d.0),
    };
    match ask(inner, MarketOp::JobBid { bid: Box::new(bid), by: p.name.clone() }).await? {
        MarketDone::Order(v) => Ok(v),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// Submits the bids' jobs whose contracts' windows have begun, each as its tenant on its
/// contract, and records on each order the job's id or why it was not submitted. Run after
/// each clearing and every few seconds.
pub(crate) async fn release_due_jobs(inner: &Inner) {
    // one release at a time: a job taken by another is submitted when this one starts
    let _one = inner.release_lock.lock().await;
    let Ok(MarketDone::DueJobs(due)) = ask(inner, MarketOp::DueJobs).await else { return };
    for (order, tenant, spec) in due {
        let body = Bytes::from(serde_json::to_vec(&spec).unwrap_or_default());
        let p = Principal { role: Role::Tenant, name: tenant };
        let result = match crate::routes::submit_spec(inner, p, spec, body, None).await {
            Ok((_, crate::routes::Submitted::Job(v))) => Ok(v.id),
            Ok((_, crate::routes::Submitted::Bid(_))) => Err("the job bid again".to_string()),
            Err(e) => Err(format!("the job was not accepted: {}", e.body.message)),
        };
        if let Err(why) = &result {
            tracing::warn!(order, %why, "a bid's job was not submitted");
        }
        let _ = ask(inner, MarketOp::JobSubmitted { order, result }).await;
    }
}
