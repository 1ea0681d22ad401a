//! Market commands against a running control plane (issue 16, R4): `market ask|bid` post an
//! order, `market orders`, `market cancel ID`, `market prices`, `market clear` (operator) and
//! `contract list`. Prices are typed in yuan per unit·hour (`1.25`) or fen (`125fen`); `--json`
//! prints the API's answer as it is.

use std::process::ExitCode;

use anyhow::{Result, bail};
use suanwang_api::market::{ClearingAnswer, ContractList, OrderList, OrderRequest, OrderSide, OrderView, PriceList};

use crate::money_cmd::{get, parse_amount, post, yuan};
use crate::remote::Client;

/// `family/model/place/YYYY-MM-DDTHHZ/Nh` from its parts (`--start` defaults to the next hour).
pub fn product(family: &str, model: &str, place: &str, start: Option<&str>, hours: u32) -> Result<String> {
    let start = match start {
        Some(s) => s.to_string(),
        None => {
            let now = suanwang_server::actor::wall_now().0;
            suanwang_economy::market::hour_utc((now / 3_600_000 + 1) * 3_600_000)
        }
    };
    if suanwang_economy::market::parse_hour(&start).is_none() {
        bail!("--start {start:?}: a whole UTC hour like 2026-12-07T08Z");
    }
    Ok(format!("{family}/{model}/{place}/{start}/{hours}h"))
}

fn order_line(o: &OrderView) -> String {
    let side = match o.side {
        OrderSide::Ask => "ask",
        OrderSide::Bid => "bid",
    };
    let price = i64::try_from(o.price_fen).unwrap_or(i64::MAX);
    let held = if o.held_fen > 0 {
        format!(", holds {}", yuan(i64::try_from(o.held_fen).unwrap_or(i64::MAX)))
    } else {
        String::new()
    };
    format!(
        "#{} {side} {} {} units at {}/unit·h by {}: {} ({} filled{held})",
        o.id,
        o.product,
        o.units,
        yuan(price),
        o.owner,
        crate::market_cmd::state(o),
        o.filled_units
    )
}

fn state(o: &OrderView) -> &'static str {
    suanwang_server::market::state_str(o.state)
}

/// Prints an answer: as JSON, or for people.
fn show<T: serde::Serialize>(v: &T, json: bool, human: impl FnOnce(&T)) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(v)?);
    } else {
        human(v);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn place(
    c: &Client,
    side: OrderSide,
    product: String,
    units: u64,
    price: &str,
    owner: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let price_fen = parse_amount(price)?;
    let Ok(price_fen) = u64::try_from(price_fen) else { bail!("--price {price:?} must be positive") };
    let req = OrderRequest { side, product, units, price_fen, owner };
    match post::<_, OrderView>(c, "/v1/market/orders", &req).await? {
        Ok(o) => show(&o, json, |o| println!("{}", order_line(o))),
        Err(code) => Ok(code),
    }
}

pub async fn orders(c: &Client, state: Option<&str>, json: bool) -> Result<ExitCode> {
    let path = match state {
        Some(s) => format!("/v1/market/orders?state={s}&limit=1000"),
        None => "/v1/market/orders?limit=1000".into(),
    };
    match get::<OrderList>(c, &path).await? {
        Ok(l) => show(&l, json, |l| {
            if l.orders.is_empty() {
                println!("no orders");
            }
            for o in &l.orders {
                println!("{}", order_line(o));
            }
        }),
        Err(code) => Ok(code),
    }
}

pub async fn cancel(c: &Client, id: u64, json: bool) -> Result<ExitCode> {
    match post::<_, OrderView>(c, &format!("/v1/market/orders/{id}/cancel"), &serde_json::json!({})).await? {
        Ok(o) => show(&o, json, |o| println!("{}", order_line(o))),
        Err(code) => Ok(code),
    }
}

pub async fn prices(c: &Client, product: Option<&str>, json: bool) -> Result<ExitCode> {
    let path = match product {
        Some(p) => format!("/v1/market/prices?product={p}"),
        None => "/v1/market/prices".into(),
    };
    match get::<PriceList>(c, &path).await? {
        Ok(l) => show(&l, json, |l| {
            if l.prices.is_empty() {
                println!("no clearing prices yet");
            }
            for p in &l.prices {
                println!(
                    "{} {}/unit·h ({} units) at {}",
                    p.product,
                    yuan(i64::try_from(p.price_fen).unwrap_or(i64::MAX)),
                    p.units,
                    crate::remote::rfc3339(p.cleared_at_ms)
                );
            }
        }),
        Err(code) => Ok(code),
    }
}

pub async fn clear(c: &Client, json: bool) -> Result<ExitCode> {
    match post::<_, ClearingAnswer>(c, "/v1/market/clear", &serde_json::json!({})).await? {
        Ok(a) => show(&a, json, |a| {
            println!(
                "cleared {} products: {} traded, {} contracts, {} units; {} orders expired",
                a.products, a.traded, a.contracts, a.units, a.expired
            );
        }),
        Err(code) => Ok(code),
    }
}

/// One contract, for people.
fn contract_line(k: &suanwang_api::market::ContractView) -> String {
    let fen = |v: u64| yuan(i64::try_from(v).unwrap_or(i64::MAX));
    format!(
        "contract {}: {} {} units, {} → {} at {}/unit·h: {} (platform fee {}, seller gets {})",
        k.id,
        k.product,
        k.units,
        k.seller,
        k.buyer,
        fen(k.price_fen),
        fen(k.amount_fen),
        fen(k.fee_fen),
        fen(k.amount_fen - k.fee_fen)
    )
}

/// `suanwang contract buy`: a reserved purchase (包年包月).
pub async fn buy(c: &Client, req: &suanwang_api::market::ReserveRequest, json: bool) -> Result<ExitCode> {
    match post::<_, suanwang_api::market::ContractView>(c, "/v1/contracts", req).await? {
        Ok(k) => show(&k, json, |k| println!("{}", contract_line(k))),
        Err(code) => Ok(code),
    }
}

pub async fn contracts(c: &Client, json: bool) -> Result<ExitCode> {
    let l: ContractList = match get(c, "/v1/contracts?limit=1000").await? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string(&l)?);
    } else if l.contracts.is_empty() {
        println!("no contracts");
    } else {
        for k in &l.contracts {
            println!("{}", contract_line(k));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `suanwang carbon credits`: the lots and the offsets the token sees.
pub async fn credits(c: &Client, json: bool) -> Result<ExitCode> {
    match get::<suanwang_api::market::CreditsAnswer>(c, "/v1/carbon/credits").await? {
        Ok(a) => show(&a, json, |a| {
            for l in &a.lots {
                println!(
                    "lot {} ({} {}, {} at {}): {:.6} t left of {} t, {:.6} t retired, {}/t — {}",
                    l.id,
                    l.issuer,
                    l.vintage,
                    l.holder,
                    l.place,
                    l.remaining_grams as f64 / 1e6,
                    l.tonnes,
                    l.retired_grams as f64 / 1e6,
                    yuan(i64::try_from(l.price_fen_per_tonne).unwrap_or(i64::MAX)),
                    l.source
                );
            }
            for o in &a.offsets {
                println!(
                    "job {} ({}): {} g CO2e retired from {} — {} paid to {}",
                    o.job,
                    o.tenant,
                    o.grams,
                    o.lot,
                    yuan(i64::try_from(o.price_fen).unwrap_or(i64::MAX)),
                    o.holder
                );
            }
        }),
        Err(code) => Ok(code),
    }
}

/// `suanwang carbon offset JOB [--lot ID]`.
pub async fn offset(c: &Client, job: u64, lot: Option<String>, json: bool) -> Result<ExitCode> {
    let req = suanwang_api::market::OffsetRequest { job, lot };
    match post::<_, suanwang_api::market::OffsetView>(c, "/v1/carbon/offsets", &req).await? {
        Ok(o) => show(&o, json, |o| {
            println!(
                "job {}: {} g CO2e (market-based) retired from lot {} ({} {}); {} paid to {}",
                o.job,
                o.grams,
                o.lot,
                o.issuer,
                o.vintage,
                yuan(i64::try_from(o.price_fen).unwrap_or(i64::MAX)),
                o.holder
            );
        }),
        Err(code) => Ok(code),
    }
}

/// `suanwang quota set TENANT --family F [--region R] --max-units N` (operator).
pub async fn quota_set(c: &Client, q: suanwang_api::market::QuotaRequest, json: bool) -> Result<ExitCode> {
    match post::<_, suanwang_api::market::QuotaView>(c, "/v1/quotas", &q).await? {
        Ok(v) => show(&v, json, |v| println!("{}", quota_line(v))),
        Err(code) => Ok(code),
    }
}

/// `suanwang quota list`.
pub async fn quota_list(c: &Client, json: bool) -> Result<ExitCode> {
    match get::<suanwang_api::market::QuotaList>(c, "/v1/quotas").await? {
        Ok(l) => show(&l, json, |l| {
            if l.quotas.is_empty() {
                println!("no quotas");
            }
            for q in &l.quotas {
                println!("{}", quota_line(q));
            }
        }),
        Err(code) => Ok(code),
    }
}

fn quota_line(q: &suanwang_api::market::QuotaView) -> String {
    format!(
        "{}: at most {} {} units at once {} — its live jobs hold {}",
        q.tenant,
        q.max_units,
        q.family,
        q.region.as_deref().map_or_else(|| "everywhere".to_string(), |r| format!("in {r}")),
        q.used_units
    )
}
