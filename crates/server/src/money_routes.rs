//! The money routes (R4, R7): balances, top-ups, credit limits, bills, statements, vouchers.
//! Reads come from the books (accounts, live) and the store (transfers, the history); changes
//! go through the engine's actor so they are in a group commit with their log row.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use suanwang_api as api;
use suanwang_economy::{AccountKind, PriceBook, Programme, TransferKind, VoucherKind};
use suanwang_store::{AnyStore, Store, TransferQuery, TransferRow};
use tokio::sync::oneshot;

use crate::Inner;
use crate::actor::{MoneyDone, MoneyOp, Request as Req};
use crate::auth::{Principal, Role};
use crate::billing::{Books, hex, parse_hex};
use crate::error::ApiError;
use crate::routes::{authenticate, body_error, find_job, parse_id, refuse_duplicate_keys, require};

type S = State<Arc<Inner>>;

/// Most transfers one statement or bill reads.
const MAX_LINES: i64 = 100_000;

fn books(inner: &Inner) -> Result<std::sync::MutexGuard<'_, Books>, ApiError> {
    inner.books.lock().map_err(|_| ApiError::unavailable("the books are unavailable"))
}

fn account_view(books: &Books, id: u128) -> Option<api::AccountView> {
    let (kind, name) = books.name_of(id)?;
    Some(view_of(books.ledger().account(id)?, *kind, name))
}

fn view_of(a: &suanwang_economy::Account, kind: AccountKind, name: &str) -> api::AccountView {
    let fen = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    api::AccountView {
        id: hex(a.id),
        kind: kind.as_str().into(),
        name: name.to_string(),
        balance_fen: i64::try_from(a.balance()).unwrap_or(i64::MAX),
        debits_pending_fen: fen(a.debits_pending),
        debits_posted_fen: fen(a.debits_posted),
        credits_pending_fen: fen(a.credits_pending),
        credits_posted_fen: fen(a.credits_posted),
        credit_limit_fen: i64::try_from(a.credit_limit).unwrap_or(i64::MAX),
        available_fen: a.available().map(fen),
    }
}

/// Whether account (`kind`, `name`) is `party`'s: named for it, one of its grants
/// (`programme/party`), or for `platform` the platform's own (revenue, clearing, bank).
fn of_party(kind: AccountKind, name: &str, party: &str) -> bool {
    name == party
        || (kind == AccountKind::Grant && name.strip_suffix(party).is_some_and(|p| p.ends_with('/')))
        || (party == "platform" && matches!(kind, AccountKind::Clearing | AccountKind::Bank))
}

/// The accounts of `party` ([`of_party`]).
fn party_accounts(books: &Books, party: &str) -> Vec<(u128, AccountKind, String)> {
    books.ids_of(|k, n| of_party(k, n, party))
}

/// Every stored account (a follower's view of the books, issue 17), unreadable rows left out.
async fn stored_accounts(store: &AnyStore) -> Result<Vec<(suanwang_economy::Account, AccountKind, String)>, ApiError> {
    let rows = store.ledger_accounts().await.map_err(|e| ApiError::unavailable("store").detail(e.to_string()))?;
    Ok(rows.iter().filter_map(|r| crate::billing::account_of(r).map(|(a, k)| (a, k, r.name.clone()))).collect())
}

/// Which party a principal may read: its own, unless it reads everything.
fn party_for(p: &Principal, asked: Option<&str>) -> Result<String, ApiError> {
    if let Some(a) = asked
        && (a.is_empty() || a.chars().count() > 128)
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "party: 1-128 characters").field("party"));
    }
    match (p.role, asked) {
        (Role::Operator | Role::Regulator, Some(a)) => Ok(a.to_string()),
        (_, Some(a)) if a != p.name => Err(ApiError::forbidden(&format!(
            "a {} reads its own accounts only (party={a:?} is not {:?})",
            p.role.as_str(),
            p.name
        ))),
        (Role::Operator | Role::Regulator, None) => Ok("platform".into()),
        _ => Ok(p.name.clone()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyQuery {
    party: Option<String>,
}

fn bad_query(e: &axum::extract::rejection::QueryRejection, hint: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query").detail(e.body_text()).hint(hint)
}

pub async fn balance(
    State(inner): S,
    headers: HeaderMap,
    q: Result<Query<PartyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<api::BalanceAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    let Query(q) = q.map_err(|e| bad_query(&e, "party=NAME"))?;
    let party = party_for(&p, q.party.as_deref())?;
    let b = books(&inner)?;
    let accounts = party_accounts(&b, &party).into_iter().filter_map(|(id, ..)| account_view(&b, id)).collect();
    Ok(Json(api::BalanceAnswer { party, accounts }))
}

/// `GET /v1/balance` answered from the store alone (a follower, issue 17): the leader upserts
/// each account's balances in the transaction that makes their transfers durable.
pub(crate) async fn balance_stored(store: &AnyStore, p: &Principal, uri: &Uri) -> Result<api::BalanceAnswer, ApiError> {
    let Query(q) = Query::<PartyQuery>::try_from_uri(uri).map_err(|e| bad_query(&e, "party=NAME"))?;
    let party = party_for(p, q.party.as_deref())?;
    let mut mine: Vec<_> =
        stored_accounts(store).await?.into_iter().filter(|(_, k, n)| of_party(*k, n, &party)).collect();
    // the books' order: by id, as `ids_of` gives them
    mine.sort_by_key(|(a, ..)| a.id);
    let accounts = mine.iter().map(|(a, k, n)| view_of(a, *k, n)).collect();
    Ok(api::BalanceAnswer { party, accounts })
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes, code: &str, hint: &str) -> Result<T, ApiError> {
    refuse_duplicate_keys(body)?;
    serde_json::from_slice(body).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_string);
        let mut err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, "the request body is not valid")
            .detail(e.to_string())
            .hint(hint);
        if let Some(f) = field {
            err = err.field(f);
        }
        err
    })
}

async fn ask(inner: &Inner, principal: Principal, op: MoneyOp) -> Result<MoneyDone, ApiError> {
    let (tx, rx) = oneshot::channel();
    inner
        .tx
        .send(Req::Money { principal, op, reply: tx })
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    rx.await.map_err(|_| ApiError::unavailable("the engine stopped"))?
}

fn name_ok(field: &'static str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) || name.contains('/') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_money",
            format!("{field}: 1-128 characters, no control characters or '/'"),
        )
        .field(field));
    }
    Ok(())
}

/// A fresh client-side transfer id (random, top bit clear).
fn fresh_transfer_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ApiError::unavailable("no randomness").detail(e.to_string()))?;
    Ok(hex(u128::from_be_bytes(b) >> 1))
}

pub async fn topup(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator], "top up accounts")?;
    let body = body.map_err(|e| body_error(&e))?;
    let r: api::TopupRequest =
        parse_body(&body, "invalid_money", "{party, amount_fen, to?: wallet|funder, transfer_id?}")?;
    name_ok("party", &r.party)?;
    let to = r.to.unwrap_or_else(|| "wallet".into());
    let transfer_id = match r.transfer_id {
        Some(t) => {
            if parse_hex(&t).is_none_or(|id| !suanwang_economy::client_id_ok(id)) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_money",
                    "transfer_id: 32 hex digits, not all zero, first digit 0-7 (ids with the top bit set are the platform's)",
                )
                .field("transfer_id"));
            }
            t.to_ascii_lowercase()
        }
        None => fresh_transfer_id()?,
    };
    // a retry of a top-up applied before this process started is found in the store
    let stored = inner
        .store
        .ledger_transfer(&transfer_id)
        .await
        .map_err(|e| ApiError::unavailable("store").detail(e.to_string()))?;
    if let Some(row) = stored {
        let kind = if to == "funder" { AccountKind::Funder } else { AccountKind::Wallet };
        let b = books(&inner)?;
        if !b.is_topup(&row, kind, &r.party, r.amount_fen) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "this transfer id was used for another transfer",
            )
            .field("transfer_id"));
        }
        let balance = b.find(kind, &r.party).map_or(0, |a| i64::try_from(a.balance()).unwrap_or(i64::MAX));
        let answer = api::MoneyAnswer { transfer_id: Some(transfer_id), created: false, balance_fen: balance };
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    let op = MoneyOp::Topup { to, name: r.party, amount_fen: r.amount_fen, transfer_id: transfer_id.clone() };
    let done = ask(&inner, p, op).await?;
    let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
    let answer =
        api::MoneyAnswer { transfer_id: Some(transfer_id), created: done.created, balance_fen: done.balance_fen };
    Ok((status, Json(answer)).into_response())
}

pub async fn credit_limit(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::MoneyAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator], "set credit limits")?;
    let body = body.map_err(|e| body_error(&e))?;
    let r: api::CreditLimitRequest = parse_body(&body, "invalid_money", "{tenant, credit_limit_fen}")?;
    name_ok("tenant", &r.tenant)?;
    let done = ask(&inner, p, MoneyOp::CreditLimit { tenant: r.tenant, credit_limit_fen: r.credit_limit_fen }).await?;
    Ok(Json(api::MoneyAnswer { transfer_id: None, created: done.created, balance_fen: done.balance_fen }))
}

fn transfer_view(t: &TransferRow, names: &std::collections::HashMap<String, String>) -> api::TransferView {
    let name = |id: &String| names.get(id).cloned().unwrap_or_else(|| id.clone());
    let kind = u16::try_from(t.code).ok().and_then(TransferKind::from_code).map_or("unknown", TransferKind::as_str);
    api::TransferView {
        id: t.id.clone(),
        kind: kind.into(),
        debit: t.debit.clone(),
        credit: t.credit.clone(),
        debit_name: name(&t.debit),
        credit_name: name(&t.credit),
        amount_fen: t.amount,
        pending: t.flags & suanwang_store::TRANSFER_PENDING != 0,
        job: u64::try_from(t.user_data).unwrap_or(0),
        at_ms: t.at_ms,
    }
}

/// Every account's id → `kind:name`.
fn account_names(b: &Books) -> std::collections::HashMap<String, String> {
    b.ids_of(|_, _| true).into_iter().map(|(id, k, n)| (hex(id), format!("{}:{n}", k.as_str()))).collect()
}

fn kind_is(t: &TransferRow, k: TransferKind) -> bool {
    t.code == i32::from(k.code())
}

pub async fn bill(
    State(inner): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<api::BillAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "read bills")?;
    let id = parse_id(&id)?;
    let job = find_job(&inner, id)
        .await?
        .filter(|j| p.role != Role::Tenant || j.tenant == p.name)
        .ok_or_else(|| ApiError::not_found("such job"))?;
    let rows = job_transfers(&inner.store, id).await?;
    let (book, names) = {
        let b = books(&inner)?;
        (b.book.clone(), account_names(&b))
    };
    bill_of(id, &job, &rows, &book, &names).map(Json)
}

/// `GET /v1/jobs/{id}/bill` answered from the store alone (a follower, issue 17): the job, its
/// transfers and the accounts' names as the store has them (`names`: reloaded by the caller
/// when a transfer names an account it does not know).
pub(crate) async fn bill_stored(
    store: &AnyStore,
    book: &PriceBook,
    names: &crate::ha::AccountNames,
    p: &Principal,
    id: &str,
) -> Result<api::BillAnswer, ApiError> {
    require(p, &[Role::Operator, Role::Regulator, Role::Tenant], "read bills")?;
    let id = parse_id(id)?;
    // the roles allowed above see every job but tenants, who see their own
    let job = crate::routes::stored_job(store, p, id).await?;
    let rows = job_transfers(store, id).await?;
    let names = names.of(store, rows.iter().flat_map(|t| [&t.debit, &t.credit])).await?;
    bill_of(id, &job, &rows, book, &names)
}

/// Job `id`'s own transfers: by its id in `user_data`, with the platform's ids (top bit set) —
/// a client's top-up never has one.
async fn job_transfers(store: &AnyStore, id: u64) -> Result<Vec<TransferRow>, ApiError> {
    let q = TransferQuery {
        user_data: Some(i64::try_from(id).unwrap_or(i64::MAX)),
        limit: 1_000,
        ..TransferQuery::default()
    };
    let rows = store.ledger_transfers(&q).await.map_err(|e| ApiError::unavailable("store").detail(e.to_string()))?;
    Ok(rows.into_iter().filter(|t| parse_hex(&t.id).is_some_and(|x| x >> 127 == 1)).collect())
}

/// Job `id`'s bill: its meter priced by `book`, and what the ledger did about it (`rows`).
fn bill_of(
    id: u64,
    job: &crate::wire::JobView,
    rows: &[TransferRow],
    book: &PriceBook,
    names: &std::collections::HashMap<String, String>,
) -> Result<api::BillAnswer, ApiError> {
    let hold = rows.iter().find(|t| kind_is(t, TransferKind::Hold));
    let settled = rows.iter().any(|t| kind_is(t, TransferKind::Post) || kind_is(t, TransferKind::Charge));
    let voided = rows.iter().any(|t| kind_is(t, TransferKind::Void));
    let meter = job.meter.unwrap_or_default();
    // a job on a market contract paid its compute and energy at the auction
    let meter =
        if job.spec.get("contract").is_some_and(|c| !c.is_null()) { crate::market::prepaid(&meter) } else { meter };
    let mut b = book
        .bill(&meter.usage())
        .map_err(|e| ApiError::unavailable("the job's meter cannot be billed").detail(e.to_string()))?;
    // a voucher leg's debit is the grant `grant:PROGRAMME/TENANT`
    let vouchers: Vec<(String, i64)> = rows
        .iter()
        .filter(|t| kind_is(t, TransferKind::Voucher))
        .map(|t| {
            let grant = names.get(&t.debit).and_then(|n| n.strip_prefix("grant:")).unwrap_or("");
            (grant.split('/').next().unwrap_or("").to_string(), t.amount)
        })
        .collect();
    b = b.with_vouchers(&vouchers).map_err(|e| ApiError::unavailable("bill").detail(e.to_string()))?;
    let status = if settled {
        "settled"
    } else if voided || job.meter.is_some() || crate::actor::terminal(job.state) {
        // refused (nothing was held), cancelled before it ran, or ended owing nothing
        "void"
    } else {
        "estimate"
    };
    let held = if settled || voided { 0 } else { hold.map_or(0, |h| h.amount) };
    let split = rows
        .iter()
        .filter(|t| {
            kind_is(t, TransferKind::ProviderShare)
                || kind_is(t, TransferKind::CarrierShare)
                || kind_is(t, TransferKind::PlatformFee)
        })
        .map(|t| transfer_view(t, names))
        .collect();
    let paid: i64 = rows
        .iter()
        .filter(|t| kind_is(t, TransferKind::Post) || kind_is(t, TransferKind::Charge))
        .map(|t| t.amount)
        .sum();
    Ok(api::BillAnswer {
        job: id,
        tenant: job.tenant.clone(),
        status: status.into(),
        price_book: b.price_book.clone(),
        lines: b
            .lines
            .iter()
            .map(|l| api::BillLine {
                kind: l.kind.clone(),
                description: l.description.clone(),
                quantity: l.quantity,
                unit: l.unit.clone(),
                amount_fen: l.amount_fen,
            })
            .collect(),
        subtotal_fen: b.subtotal_fen,
        platform_fee_fen: b.platform_fee_fen,
        total_fen: b.total_fen,
        voucher_fen: b.voucher_fen,
        // what the ledger took from the wallet once settled; the bill's figure before
        tenant_fen: if settled { paid } else { b.tenant_fen },
        held_fen: held,
        split,
        transfers: rows.iter().map(|t| transfer_view(t, names)).collect(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    party: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// Epoch ms, or an RFC 3339 instant.
fn instant(field: &'static str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    v.parse::<jiff::Timestamp>().map(jiff::Timestamp::as_millisecond).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("{field}: {v:?} is neither epoch ms nor RFC 3339"))
            .detail(e.to_string())
            .field(field)
            .hint("e.g. 2026-12-01T00:00:00Z or 1796083200000")
    })
}

/// What a statement request asks: the party (checked against the principal), the period, CSV.
fn statement_params(p: &Principal, q: &StatementQuery) -> Result<(String, i64, i64, bool), ApiError> {
    let party = party_for(p, q.party.as_deref())?;
    let from = q.from.as_deref().map(|v| instant("from", v)).transpose()?.unwrap_or(0);
    let to = q.to.as_deref().map(|v| instant("to", v)).transpose()?.unwrap_or(i64::MAX);
    // to before from is an empty period: opening balances and no lines
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", format!("format {other:?}: json or csv"))
                .field("format"));
        }
    };
    Ok((party, from, to, csv))
}

const STATEMENT_HINT: &str = "party=NAME&from=…&to=…&format=csv";

pub async fn statements(
    State(inner): S,
    headers: HeaderMap,
    q: Result<Query<StatementQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    let Query(q) = q.map_err(|e| bad_query(&e, STATEMENT_HINT))?;
    let (party, from, to, csv) = statement_params(&p, &q)?;
    let (accounts, names) = {
        let b = books(&inner)?;
        (party_accounts(&b, &party), account_names(&b))
    };
    statement(&inner.store, party, (from, to), csv, &accounts, &names).await
}

/// `GET /v1/statements` answered from the store alone (a follower, issue 17): the accounts and
/// their names as stored, the transfers as for the leader.
pub(crate) async fn statements_stored(store: &AnyStore, p: &Principal, uri: &Uri) -> Result<Response, ApiError> {
    let Query(q) = Query::<StatementQuery>::try_from_uri(uri).map_err(|e| bad_query(&e, STATEMENT_HINT))?;
    let (party, from, to, csv) = statement_params(p, &q)?;
    let all = stored_accounts(store).await?;
    let names = all.iter().map(|(a, k, n)| (hex(a.id), format!("{}:{n}", k.as_str()))).collect();
    let mut accounts: Vec<_> =
        all.into_iter().filter(|(_, k, n)| of_party(*k, n, &party)).map(|(a, k, n)| (a.id, k, n)).collect();
    accounts.sort_by_key(|(id, ..)| *id);
    statement(store, party, (from, to), csv, &accounts, &names).await
}

/// `party`'s statement over [from, to): each account's opening and closing balance and every
/// posted transfer of the period, JSON or CSV.
async fn statement(
    store: &AnyStore,
    party: String,
    (from, to): (i64, i64),
    csv: bool,
    accounts: &[(u128, AccountKind, String)],
    names: &std::collections::HashMap<String, String>,
) -> Result<Response, ApiError> {
    let store_err = |e: suanwang_store::StoreError| ApiError::unavailable("store").detail(e.to_string());
    let mine: std::collections::HashSet<String> = accounts.iter().map(|(id, ..)| hex(*id)).collect();
    let mut summary = vec![];
    for (id, kind, name) in accounts {
        let (d0, c0) = store.posted_before(&hex(*id), from).await.map_err(store_err)?;
        summary.push(api::StatementAccount {
            id: hex(*id),
            kind: kind.as_str().into(),
            name: name.clone(),
            opening_fen: c0.saturating_sub(d0),
            debits_fen: 0,
            credits_fen: 0,
            closing_fen: c0.saturating_sub(d0),
        });
    }
    let mut lines = vec![];
    if !accounts.is_empty() {
        let q = TransferQuery {
            accounts: mine.iter().cloned().collect(),
            from_ms: Some(from),
            to_ms: Some(to),
            limit: MAX_LINES,
            ..TransferQuery::default()
        };
        let rows = store.ledger_transfers(&q).await.map_err(store_err)?;
        for t in rows.iter().filter(|t| t.flags & suanwang_store::TRANSFER_PENDING == 0 && t.amount > 0) {
            let kind =
                u16::try_from(t.code).ok().and_then(TransferKind::from_code).map_or("unknown", TransferKind::as_str);
            for (side, acct, other) in [(true, &t.debit, &t.credit), (false, &t.credit, &t.debit)] {
                if !mine.contains(acct) {
                    continue;
                }
                let (debit_fen, credit_fen) = if side { (t.amount, 0) } else { (0, t.amount) };
                // sums of a busy account over a long period may pass i64: they stay at its bound
                if let Some(s) = summary.iter_mut().find(|s| &s.id == acct) {
                    s.debits_fen = s.debits_fen.saturating_add(debit_fen);
                    s.credits_fen = s.credits_fen.saturating_add(credit_fen);
                    s.closing_fen = s.closing_fen.saturating_add(credit_fen).saturating_sub(debit_fen);
                }
                lines.push(api::StatementLine {
                    at_ms: t.at_ms,
                    transfer_id: t.id.clone(),
                    kind: kind.into(),
                    job: u64::try_from(t.user_data).unwrap_or(0),
                    account: names.get(acct).cloned().unwrap_or_else(|| acct.clone()),
                    counterparty: names.get(other).cloned().unwrap_or_else(|| other.clone()),
                    debit_fen,
                    credit_fen,
                });
            }
        }
    }
    let net_fen = lines.iter().fold(0i64, |n, l| n.saturating_add(l.credit_fen).saturating_sub(l.debit_fen));
    let st = api::Statement { party, from_ms: from, to_ms: to, accounts: summary, lines, net_fen };
    if csv {
        let mut out = String::from("at_ms,transfer_id,kind,job,account,counterparty,debit_fen,credit_fen\n");
        for l in &st.lines {
            use std::fmt::Write as _;
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{}",
                l.at_ms,
                l.transfer_id,
                l.kind,
                l.job,
                csv_field(&l.account),
                csv_field(&l.counterparty),
                l.debit_fen,
                l.credit_fen
            );
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    Ok(Json(st).into_response())
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn spec_of(p: &Programme) -> api::ProgrammeSpec {
    api::ProgrammeSpec {
        id: p.id.clone(),
        name: p.name.clone(),
        funder: p.funder.clone(),
        kind: match p.kind {
            VoucherKind::Compute => "compute".into(),
            VoucherKind::Transport => "transport".into(),
        },
        budget_fen: p.budget_fen,
        rate_bp: p.rate_bp,
        cap_per_beneficiary_fen: p.cap_per_beneficiary_fen,
        tenants: p.tenants.clone(),
        cities: p.cities.clone(),
        places: p.places.clone(),
        job_kinds: p.job_kinds.clone(),
        valid_from_ms: p.valid_from_ms,
        valid_to_ms: p.valid_to_ms,
    }
}

fn programme_view(b: &Books, id: &str, now_ms: i64) -> Option<api::ProgrammeView> {
    let state = b.programme(id)?;
    let (left, grants) = b.programme_balances(id, now_ms)?;
    Some(api::ProgrammeView {
        programme: spec_of(&state.programme),
        closed: state.closed,
        budget_left_fen: left,
        grants: grants
            .into_iter()
            .map(|(tenant, granted, left)| api::GrantView {
                programme: id.to_string(),
                tenant,
                granted_this_year_fen: granted,
                left_fen: left,
            })
            .collect(),
    })
}

pub async fn create_programme(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Funder], "file voucher programmes")?;
    let body = body.map_err(|e| body_error(&e))?;
    let spec: api::ProgrammeSpec =
        parse_body(&body, "invalid_programme", "see the ProgrammeSpec schema in /openapi.json")?;
    let funder = match (p.role, spec.funder.as_str()) {
        (Role::Funder, "") => p.name.clone(),
        (Role::Funder, f) if f != p.name => {
            return Err(ApiError::forbidden(&format!(
                "a funder files its own programmes (funder {f:?} is not {:?})",
                p.name
            )));
        }
        (Role::Operator, "") => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_programme",
                "funder: must name the funder",
            )
            .field("funder"));
        }
        (_, f) => f.to_string(),
    };
    name_ok("funder", &funder)?;
    let kind = match spec.kind.as_str() {
        "compute" => VoucherKind::Compute,
        "transport" => VoucherKind::Transport,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_programme",
                format!("kind: {other:?} is neither compute (算力券) nor transport (运力券)"),
            )
            .field("kind"));
        }
    };
    let programme = Programme {
        id: spec.id.clone(),
        name: spec.name,
        funder,
        kind,
        budget_fen: spec.budget_fen,
        rate_bp: spec.rate_bp,
        cap_per_beneficiary_fen: spec.cap_per_beneficiary_fen,
        tenants: spec.tenants,
        cities: spec.cities,
        places: spec.places,
        job_kinds: spec.job_kinds,
        valid_from_ms: spec.valid_from_ms,
        valid_to_ms: spec.valid_to_ms,
    };
    programme.check().map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_programme", format!("{}: {}", e.field, e.reason))
            .field(e.field)
    })?;
    let done = ask(&inner, p, MoneyOp::Programme { programme: Box::new(programme) }).await?;
    let view = programme_view(&*books(&inner)?, &spec.id, crate::actor::wall_now().0)
        .ok_or_else(|| ApiError::not_found("such programme"))?;
    let status = if done.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view)).into_response())
}

pub async fn grant(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Funder], "grant vouchers")?;
    let body = body.map_err(|e| body_error(&e))?;
    let r: api::GrantRequest = parse_body(&body, "invalid_grant", "{programme, tenant, amount_fen}")?;
    name_ok("tenant", &r.tenant)?;
    if p.role == Role::Funder {
        let funder = books(&inner)?.programme(&r.programme).map(|s| s.programme.funder.clone());
        match funder {
            Some(f) if f == p.name => {}
            Some(_) => return Err(ApiError::forbidden("a funder grants vouchers of its own programmes only")),
            None => return Err(ApiError::not_found("such programme").field("programme")),
        }
    }
    let done = ask(
        &inner,
        p,
        MoneyOp::Grant { programme: r.programme.clone(), tenant: r.tenant.clone(), amount_fen: r.amount_fen },
    )
    .await?;
    let granted = books(&inner)?
        .programme_balances(&r.programme, crate::actor::wall_now().0)
        .and_then(|(_, g)| g.into_iter().find(|x| x.0 == r.tenant).map(|x| x.1))
        .unwrap_or(0);
    let view = api::GrantView {
        programme: r.programme,
        tenant: r.tenant,
        granted_this_year_fen: granted,
        left_fen: done.balance_fen,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn vouchers(State(inner): S, headers: HeaderMap) -> Result<Json<api::VoucherList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Funder, Role::Tenant], "read vouchers")?;
    let now = crate::actor::wall_now().0;
    let (mut programmes, grant_accounts) = {
        let b = books(&inner)?;
        let ids: Vec<String> = b
            .programmes()
            .filter(|s| match p.role {
                Role::Funder => s.programme.funder == p.name,
                _ => true,
            })
            .map(|s| s.programme.id.clone())
            .collect();
        let views: Vec<api::ProgrammeView> = ids.iter().filter_map(|id| programme_view(&b, id, now)).collect();
        let grants = b.ids_of(|k, n| {
            k == AccountKind::Grant
                && n.split_once('/').is_some_and(|(prog, tenant)| {
                    ids.iter().any(|i| i == prog) && (p.role != Role::Tenant || tenant == p.name)
                })
        });
        (views, grants)
    };
    if p.role == Role::Tenant {
        // a tenant sees the programmes it holds grants of, and only its own grants
        for v in &mut programmes {
            v.grants.retain(|g| g.tenant == p.name);
        }
        programmes.retain(|v| !v.grants.is_empty());
    }
    let mut redemptions = vec![];
    if !grant_accounts.is_empty() {
        let q = TransferQuery {
            accounts: grant_accounts.iter().map(|(id, ..)| hex(*id)).collect(),
            limit: MAX_LINES,
            ..TransferQuery::default()
        };
        let rows =
            inner.store.ledger_transfers(&q).await.map_err(|e| ApiError::unavailable("store").detail(e.to_string()))?;
        for t in rows.iter().filter(|t| kind_is(t, TransferKind::Voucher)) {
            let Some((_, _, name)) = grant_accounts.iter().find(|(id, ..)| hex(*id) == t.debit) else { continue };
            let (programme, tenant) = name.split_once('/').unwrap_or((name, ""));
            redemptions.push(api::Redemption {
                programme: programme.into(),
                tenant: tenant.into(),
                job: u64::try_from(t.user_data).unwrap_or(0),
                amount_fen: t.amount,
                at_ms: t.at_ms,
                transfer_id: t.id.clone(),
            });
        }
    }
    Ok(Json(api::VoucherList { programmes, redemptions }))
}
