//! The market in the control plane (issue 16, R4): the open orders' book, orders placed and
//! cancelled, and the periodic clearing — each a change the actor applies inside its batch, so
//! the orders' rows, the ledger's holds and payments and the evidence go into one group commit.
//!
//! The book is memory (what is live: open orders); orders, contracts and prices once written are
//! the store's (`market_rows`). A bid holds `units × maximum × hours` of its wallet (a pending
//! transfer `MarketHold`, leg 0); at a clearing its fills are paid at the clearing price — the
//! hold posted with what they cost, each contract paid to its seller less the platform's fee,
//! one linked chain — and what is left of it is held again (leg + 1) while it stays open. An
//! order whose window has begun leaves the book at the next clearing (`expired`); a bid's hold
//! is voided then, or when it is cancelled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use suanwang_api::market::{ClearingAnswer, ContractView, OrderSide, OrderState, OrderView};
use suanwang_economy::market::{Order, OrderBook, Product, Side, cost};
use suanwang_economy::{AccountKind, Transfer, TransferFlags, TransferKind, system_id};
use suanwang_store::{MarketQuery, MarketRow, Store};

use crate::billing::Books;
use crate::error::ApiError;

/// The platform's own name in the books.
const PLATFORM: &str = "platform";

/// An order as stored: its view and the leg of its open hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredOrder {
    #[serde(flatten)]
    pub view: OrderView,
    #[serde(default)]
    pub hold_leg: u16,
}

/// What the actor does with the market.
#[derive(Debug, Clone)]
pub enum MarketOp {
    /// A checked order; an ask's owner has `capacity` units of the product's kind at its place.
    Place {
        order: Box<Order>,
        capacity: u64,
        by: String,
    },
    Cancel {
        id: u64,
        by: String,
        any_owner: bool,
    },
    Clear,
    /// 包年包月: `units` of `product` bought from `seller` at the reserved price of `on_demand_fen`
    /// per unit·hour; the seller has `capacity` units of its kind at the place.
    Reserve {
        tenant: String,
        product: Box<Product>,
        units: u64,
        seller: String,
        on_demand_fen: i64,
        capacity: u64,
        by: String,
    },
    /// Set a tenant's quota of a family (in a region, or everywhere).
    Quota {
        quota: suanwang_api::market::QuotaRequest,
        by: String,
    },
    /// A job with `max_price` becomes a bid on the open ask that fits it.
    JobBid {
        bid: Box<JobBid>,
        by: String,
    },
    /// The bids' jobs whose contracts' windows have begun: taken to be submitted.
    DueJobs,
    /// What became of a bid's job: its id, or why it was not submitted.
    JobSubmitted {
        order: u64,
        result: Result<u64, String>,
    },
    /// Retire `grams` of a lot's credits against an ended job of `tenant`'s (R5).
    Offset {
        tenant: String,
        job: u64,
        grams: u64,
        lot: Option<String>,
        by: String,
    },
}

#[derive(Debug, Clone)]
pub enum MarketDone {
    Order(OrderView),
    Cleared(ClearingAnswer),
    Offset(suanwang_api::market::OffsetView),
    Quota,
    Contract(ContractView),
    /// (order, tenant, the job's spec on its contract) for each bid's job now due.
    DueJobs(Vec<(u64, String, serde_json::Value)>),
    Done,
}

/// What a job with `max_price` asks of the book (issue 16 item 1): the job's spec (without
/// `max_price`) and what an ask must offer to fit it.
#[derive(Debug, Clone)]
pub struct JobBid {
    pub spec: serde_json::Value,
    pub tenant: String,
    pub family: String,
    /// The job's accelerator model, if it names one.
    pub model: Option<String>,
    /// The places the job may run at (its allowed sites, regions and the regions' sites); empty:
    /// anywhere.
    pub places: Vec<String>,
    pub units: u64,
    pub max_price: u64,
    /// The job's run time (at its pool's speed), s: the window must be as long.
    pub run_s: i64,
    pub deadline_ms: Option<i64>,
}

/// A bid's job not yet submitted: the contracts its bid won so far, and whether it is being
/// submitted now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct JobWait {
    order: u64,
    #[serde(default)]
    contracts: Vec<u64>,
    /// The won contract's window start, ms.
    #[serde(default)]
    start_ms: i64,
    /// The order, once it left the book (filled, expired or cancelled).
    #[serde(default)]
    stored: Option<StoredOrder>,
    #[serde(skip)]
    taken: bool,
}

/// The live market: open orders and what has been sold of each seller's capacity.
#[derive(Debug, Default)]
pub struct Market {
    book: OrderBook,
    open: HashMap<u64, StoredOrder>,
    /// (seller, family, model, place) → contracts' (start, end, units) not yet over.
    sold: BTreeMap<SoldKey, Vec<(i64, i64, u64)>>,
    next_order: u64,
    next_contract: u64,
    staged: Vec<MarketRow>,
    /// Tenants' quotas: (tenant, family, region or "") → most units at once (R3).
    pub quotas: BTreeMap<(String, String, String), u64>,
    /// The carbon-sink credits on offer (R5), and the jobs offset since the store was read.
    pub lots: Vec<suanwang_economy::carbon::CreditLot>,
    offset_jobs: std::collections::HashSet<u64>,
    /// What the batch logs: (kind, actor, body); a body's `tenant` may open its record.
    logs: Vec<(&'static str, String, serde_json::Value)>,
    /// Contracts made since the actor last took them: each reserves its units in the engine.
    pub fresh_contracts: Vec<ContractView>,
    /// Bids that jobs became, by order, until their jobs are submitted or given up.
    jobs: BTreeMap<u64, JobWait>,
}

/// The platform's fee on a contract's `amount`: `fee_bp` basis points, rounded half up.
fn platform_fee(amount: u64, fee_bp: u32) -> u64 {
    (amount.saturating_mul(u64::from(fee_bp)) + 5_000) / 10_000
}

/// A reserved purchase's terms, checked by its route.
#[derive(Debug)]
struct Purchase {
    tenant: String,
    product: Product,
    units: u64,
    seller: String,
    on_demand_fen: i64,
    capacity: u64,
}

/// A contract a bid pays at a clearing: to whom, how much, the platform's part.
#[derive(Debug)]
struct Sale {
    contract: u64,
    seller: String,
    amount: u64,
    fee: u64,
}

/// Whose capacity of which kind at which place: (seller, family, model, place).
type SoldKey = (String, String, String, String);

/// Ids are zero-padded to sort as numbers.
pub fn row_id(id: u64) -> String {
    format!("{id:020}")
}

fn side_of(s: OrderSide) -> Side {
    match s {
        OrderSide::Ask => Side::Ask,
        OrderSide::Bid => Side::Bid,
    }
}

fn wire_side(s: Side) -> OrderSide {
    match s {
        Side::Ask => OrderSide::Ask,
        Side::Bid => OrderSide::Bid,
    }
}

pub fn state_str(s: OrderState) -> &'static str {
    match s {
        OrderState::Open => "open",
        OrderState::Filled => "filled",
        OrderState::Cancelled => "cancelled",
        OrderState::Expired => "expired",
    }
}

fn invalid(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_order", why).field(field)
}

fn hold_id(order: u64, leg: u16) -> u128 {
    system_id(TransferKind::MarketHold, order, leg)
}

impl Market {
    /// The open orders and the sellers' sold capacity, from the store.
    pub async fn load<S: Store>(
        store: &S,
        lots: Vec<suanwang_economy::carbon::CreditLot>,
        now_ms: i64,
    ) -> Result<Market, suanwang_store::StoreError> {
        let mut m = Market { lots, ..Market::default() };
        let mut after = String::new();
        loop {
            let q = MarketQuery {
                kind: "order".into(),
                state: Some("open".into()),
                after: after.clone(),
                limit: 10_000,
                ..MarketQuery::default()
            };
            let rows = store.market(&q).await?;
            for r in &rows {
                let Ok(o) = serde_json::from_str::<StoredOrder>(&r.body) else {
                    tracing::error!(order = %r.id, "an open order's row cannot be read; it is left out of the book");
                    continue;
                };
                if let Ok(order) = Market::book_order(&o) {
                    let _ = m.book.insert(order);
                    m.open.insert(o.view.id, o);
                }
            }
            match rows.last() {
                Some(r) if rows.len() == 10_000 => after.clone_from(&r.id),
                _ => break,
            }
        }
        let mut after = String::new();
        loop {
            let q = MarketQuery { kind: "sale".into(), after: after.clone(), limit: 10_000, ..MarketQuery::default() };
            let rows = store.market(&q).await?;
            for r in &rows {
                if let Ok(c) = serde_json::from_str::<ContractView>(&r.body)
                    && c.end_ms > now_ms
                {
                    m.add_sold(&c);
                }
            }
            match rows.last() {
                Some(r) if rows.len() == 10_000 => after.clone_from(&r.id),
                _ => break,
            }
        }
        let q = MarketQuery { kind: "quota".into(), limit: 100_000, ..MarketQuery::default() };
        for r in store.market(&q).await? {
            if let Ok(k) = serde_json::from_str::<suanwang_api::market::QuotaRequest>(&r.body) {
                m.quotas.insert((k.tenant, k.family, k.region.unwrap_or_default()), k.max_units);
            }
        }
        let q = MarketQuery {
            kind: "job_bid".into(),
            state: Some("waiting".into()),
            limit: 100_000,
            ..MarketQuery::default()
        };
        for r in store.market(&q).await? {
            if let Ok(w) = serde_json::from_str::<JobWait>(&r.body) {
                m.jobs.insert(w.order, w);
            }
        }
        let last = |id: Option<String>| id.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        m.next_order = last(store.market_last_id("order").await?) + 1;
        m.next_contract = last(store.market_last_id("contract").await?) + 1;
        Ok(m)
    }

    fn book_order(o: &StoredOrder) -> Result<Order, suanwang_economy::FieldError> {
        Ok(Order {
            id: o.view.id,
            side: side_of(o.view.side),
            owner: o.view.owner.clone(),
            product: Product::parse(&o.view.product)?,
            units: o.view.units - o.view.filled_units,
            price_fen: o.view.price_fen,
            seq: o.view.id,
        })
    }

    /// A new contract: counted as sold, staged for the store (for its buyer and its seller),
    /// logged (its buyer may open the record), and due to reserve its units.
    fn record_contract(&mut self, view: &ContractView, actor: &str, now_ms: i64) {
        self.add_sold(view);
        self.fresh_contracts.push(view.clone());
        let body = serde_json::to_string(view).unwrap_or_default();
        for (kind, owner) in [("contract", &view.buyer), ("sale", &view.seller)] {
            self.staged.push(MarketRow {
                kind: kind.into(),
                id: row_id(view.id),
                owner: owner.clone(),
                product: view.product.clone(),
                state: "active".into(),
                body: body.clone(),
                at_ms: now_ms,
            });
        }
        let mut body = serde_json::to_value(view).unwrap_or_default();
        body["tenant"] = serde_json::Value::String(view.buyer.clone());
        self.logs.push(("contract", actor.to_string(), body));
    }

    fn add_sold(&mut self, c: &ContractView) {
        if let Ok(p) = Product::parse(&c.product) {
            self.sold
                .entry((c.seller.clone(), p.family, p.model, p.place))
                .or_default()
                .push((c.start_ms, c.end_ms, c.units));
        }
    }

    /// Units `seller` has sold of the product's kind and place in windows overlapping it.
    fn sold_overlapping(&self, seller: &str, p: &Product) -> u64 {
        let key = (seller.to_string(), p.family.clone(), p.model.clone(), p.place.clone());
        self.sold
            .get(&key)
            .map_or(0, |v| v.iter().filter(|(s, e, _)| *s < p.end_ms() && p.start_ms < *e).map(|(_, _, u)| u).sum())
    }

    pub fn open_orders(&self) -> usize {
        self.open.len()
    }

    /// What the next group commit writes, and what it logs.
    pub fn take_staged(&mut self) -> (Vec<MarketRow>, Vec<(&'static str, String, serde_json::Value)>) {
        (std::mem::take(&mut self.staged), std::mem::take(&mut self.logs))
    }

    fn stage_order(&mut self, o: &StoredOrder) {
        self.staged.push(MarketRow {
            kind: "order".into(),
            id: row_id(o.view.id),
            owner: o.view.owner.clone(),
            product: o.view.product.clone(),
            state: state_str(o.view.state).into(),
            body: serde_json::to_string(o).unwrap_or_default(),
            at_ms: o.view.updated_at_ms,
        });
    }

    /// Applies `op` (the books and the market staged for the batch's commit).
    pub fn apply(&mut self, books: &mut Books, op: MarketOp, now_ms: i64) -> Result<MarketDone, ApiError> {
        match op {
            MarketOp::Place { order, capacity, by } => {
                self.place(books, *order, capacity, None, &by, now_ms).map(MarketDone::Order)
            }
            MarketOp::Cancel { id, by, any_owner } => {
                self.cancel(books, id, &by, any_owner, now_ms).map(MarketDone::Order)
            }
            MarketOp::Clear => Ok(MarketDone::Cleared(self.clear(books, now_ms))),
            MarketOp::Reserve { tenant, product, units, seller, on_demand_fen, capacity, by } => self
                .reserve(
                    books,
                    &Purchase { tenant, product: *product, units, seller, on_demand_fen, capacity },
                    &by,
                    now_ms,
                )
                .map(MarketDone::Contract),
            MarketOp::Quota { quota, by } => {
                let region = quota.region.clone().unwrap_or_default();
                let id = format!("{}/{}/{}", quota.tenant, quota.family, region);
                self.quotas.insert((quota.tenant.clone(), quota.family.clone(), region), quota.max_units);
                self.staged.push(MarketRow {
                    kind: "quota".into(),
                    id,
                    owner: quota.tenant.clone(),
                    product: quota.family.clone(),
                    state: "set".into(),
                    body: serde_json::to_string(&quota).unwrap_or_default(),
                    at_ms: now_ms,
                });
                let mut body = serde_json::to_value(&quota).unwrap_or_default();
                body["tenant"] = serde_json::Value::String(quota.tenant.clone());
                self.logs.push(("quota", by, body));
                Ok(MarketDone::Quota)
            }
            MarketOp::JobBid { bid, by } => self.job_bid(books, &bid, &by, now_ms).map(MarketDone::Order),
            MarketOp::DueJobs => Ok(MarketDone::DueJobs(self.due_jobs(now_ms))),
            MarketOp::JobSubmitted { order, result } => {
                self.job_submitted(order, result, now_ms);
                Ok(MarketDone::Done)
            }
            MarketOp::Offset { tenant, job, grams, lot, by } => {
                self.offset(books, &tenant, job, grams, lot.as_deref(), &by, now_ms).map(MarketDone::Offset)
            }
        }
    }

    /// `units` more of `seller`'s `capacity` of the product's kind at its place fit with what it
    /// has offered and sold in overlapping windows; else 422 naming `units`.
    fn check_left(&self, seller: &str, p: &Product, units: u64, capacity: u64) -> Result<(), ApiError> {
        let offered = self.book.asked_overlapping(seller, p);
        let sold = self.sold_overlapping(seller, p);
        if offered.saturating_add(sold).saturating_add(units) > capacity {
            return Err(invalid(
                "units",
                format!(
                    "{seller} has {capacity} units of {}/{} at {}; with {offered} offered and {sold} sold in \
                     overlapping windows, {units} more is too many",
                    p.family, p.model, p.place
                ),
            ));
        }
        Ok(())
    }

    /// A reserved purchase (包年包月): priced by the book, checked against what the seller has
    /// left in the window, paid at once (wallet → clearing → seller and platform, one linked
    /// chain), recorded as a contract (in the evidence log) that reserves its units.
    fn reserve(&mut self, books: &mut Books, b: &Purchase, by: &str, now_ms: i64) -> Result<ContractView, ApiError> {
        let p = &b.product;
        p.check_shape().map_err(|e| invalid("product", e.to_string()))?;
        suanwang_economy::market::check_units(b.units).map_err(|e| invalid("units", e.to_string()))?;
        p.check_not_past(now_ms).map_err(|e| invalid("product", e.to_string()))?;
        let amount = books
            .book
            .reserved_fen(b.on_demand_fen, b.units, u64::from(p.hours))
            .map_err(|e| invalid("product", e.to_string()))?;
        let amount = u64::try_from(amount).map_err(|_| invalid("units", "the price is not a positive amount"))?;
        self.check_left(&b.seller, p, b.units, b.capacity)?;
        let id = self.next_contract;
        let fee = platform_fee(amount, books.book.platform.fee_bp);
        let wallet = books.account(AccountKind::Wallet, &b.tenant, now_ms);
        let clearing = books.account(AccountKind::Clearing, PLATFORM, now_ms);
        let platform = books.account(AccountKind::Platform, PLATFORM, now_ms);
        let seller = books.account(AccountKind::Provider, &b.seller, now_ms);
        let mut chain = vec![
            Transfer::new(
                system_id(TransferKind::ReservedPurchase, id, 0),
                wallet,
                clearing,
                amount,
                TransferKind::ReservedPurchase.code(),
            )
            .flags(TransferFlags::LINKED),
            Transfer::new(
                system_id(TransferKind::MarketPayment, id, 0),
                clearing,
                seller,
                amount - fee,
                TransferKind::MarketPayment.code(),
            ),
        ];
        if fee > 0 {
            chain[1] = chain[1].flags(TransferFlags::LINKED);
            chain.push(Transfer::new(
                system_id(TransferKind::MarketFee, id, 0),
                clearing,
                platform,
                fee,
                TransferKind::MarketFee.code(),
            ));
        }
        if books.apply(&chain, now_ms).is_err() {
            let available =
                books.find(AccountKind::Wallet, &b.tenant).and_then(suanwang_economy::Account::available).unwrap_or(0);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "balance",
                format!("{}'s wallet has {available} fen available; the reservation costs {amount} fen", b.tenant),
            )
            .field("units"));
        }
        self.next_contract += 1;
        let hours = u64::from(p.hours);
        let view = ContractView {
            id,
            product: p.id(),
            buyer: b.tenant.clone(),
            seller: b.seller.clone(),
            units: b.units,
            // what it came to per unit·hour (rounded down: the amount is exact)
            price_fen: amount / b.units.saturating_mul(hours).max(1),
            amount_fen: amount,
            fee_fen: fee,
            bid: 0,
            ask: 0,
            cleared_at_ms: now_ms,
            start_ms: p.start_ms,
            end_ms: p.end_ms(),
        };
        self.record_contract(&view, by, now_ms);
        Ok(view)
    }

    fn place(
        &mut self,
        books: &mut Books,
        mut o: Order,
        capacity: u64,
        job: Option<serde_json::Value>,
        by: &str,
        now_ms: i64,
    ) -> Result<OrderView, ApiError> {
        o.id = self.next_order;
        o.seq = o.id;
        o.check(now_ms).map_err(|e| invalid(&e.field, e.to_string()))?;
        let held = o.hold_fen().map_err(|e| invalid(&e.field, e.to_string()))?;
        match o.side {
            Side::Ask => self.check_left(&o.owner, &o.product, o.units, capacity)?,
            Side::Bid => {
                let wallet = books.account(AccountKind::Wallet, &o.owner, now_ms);
                let clearing = books.account(AccountKind::Clearing, PLATFORM, now_ms);
                let hold = Transfer::new(hold_id(o.id, 0), wallet, clearing, held, TransferKind::MarketHold.code())
                    .flags(TransferFlags::PENDING);
                if books.apply(&[hold], now_ms).is_err() {
                    let available = books
                        .find(AccountKind::Wallet, &o.owner)
                        .and_then(suanwang_economy::Account::available)
                        .unwrap_or(0);
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "balance",
                        format!(
                            "balance: the bid holds ¥{:.2} (units × price × hours) and {}'s wallet has ¥{:.2} \
                             available: short by ¥{:.2}",
                            held as f64 / 100.0,
                            o.owner,
                            available as f64 / 100.0,
                            (u128::from(held).saturating_sub(available)) as f64 / 100.0
                        ),
                    )
                    .field("units")
                    .hint("top the wallet up (suanwang topup), or bid for fewer units or a lower price"));
                }
            }
        }
        self.next_order += 1;
        let stored = StoredOrder {
            view: OrderView {
                id: o.id,
                side: wire_side(o.side),
                owner: o.owner.clone(),
                product: o.product.id(),
                units: o.units,
                filled_units: 0,
                price_fen: o.price_fen,
                state: OrderState::Open,
                held_fen: held,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                job,
                job_id: None,
                job_reason: None,
            },
            hold_leg: 0,
        };
        self.stage_order(&stored);
        let mut body = serde_json::to_value(&stored.view).unwrap_or_default();
        if o.side == Side::Bid {
            body["tenant"] = serde_json::Value::String(o.owner.clone());
        }
        self.logs.push(("market_order", by.to_string(), body));
        let view = stored.view.clone();
        // the id is fresh: the insert cannot collide
        let _ = self.book.insert(o);
        self.open.insert(view.id, stored);
        Ok(view)
    }

    /// A job with `max_price` becomes a bid (issue 16 item 1) on the open ask that fits it: the
    /// job's family and model, one of its places, a window long enough for its run time that
    /// ends by its deadline, a floor within `max_price` and units enough — the earliest window,
    /// then the lowest floor, then the oldest ask. 422 naming `max_price` when none fits.
    fn job_bid(&mut self, books: &mut Books, b: &JobBid, by: &str, now_ms: i64) -> Result<OrderView, ApiError> {
        let fits = |p: &Product, left: u64| {
            p.family == b.family
                && b.model.as_ref().is_none_or(|m| p.model == *m || p.model == "any")
                && (b.places.is_empty() || b.places.contains(&p.place))
                && i64::from(p.hours) * 3600 >= b.run_s
                && p.start_ms >= now_ms - now_ms.rem_euclid(3_600_000)
                && b.deadline_ms.is_none_or(|d| p.start_ms.saturating_add(b.run_s.saturating_mul(1000)) <= d)
                && left >= b.units
        };
        let mut best: Option<(i64, u64, u64, Product)> = None;
        let mut cheapest_over: Option<u64> = None;
        for o in self.open.values().filter(|o| o.view.side == OrderSide::Ask && o.view.state == OrderState::Open) {
            let Ok(p) = Product::parse(&o.view.product) else { continue };
            if !fits(&p, o.view.units - o.view.filled_units) {
                continue;
            }
            if o.view.price_fen > b.max_price {
                cheapest_over = Some(cheapest_over.map_or(o.view.price_fen, |c| c.min(o.view.price_fen)));
                continue;
            }
            let key = (p.start_ms, o.view.price_fen, o.view.id);
            if best.as_ref().is_none_or(|(s, f, i, _)| key < (*s, *f, *i)) {
                best = Some((key.0, key.1, key.2, p));
            }
        }
        let Some((_, _, _, product)) = best else {
            let why = match cheapest_over {
                Some(c) => format!(
                    "the asks that fit the job want at least {c} fen per unit·hour, above max_price {}",
                    b.max_price
                ),
                None => format!(
                    "no open ask offers {} {} units{}{} for {} s{}",
                    b.units,
                    b.family,
                    b.model.as_ref().map_or(String::new(), |m| format!(" of {m}")),
                    if b.places.is_empty() { String::new() } else { format!(" at {}", b.places.join(", ")) },
                    b.run_s,
                    if b.deadline_ms.is_some() { " before the deadline" } else { "" }
                ),
            };
            return Err(invalid("max_price", why)
                .hint("see GET /v1/market/prices; raise max_price, widen the places, or submit without it"));
        };
        let order = Order {
            id: 0,
            side: Side::Bid,
            owner: b.tenant.clone(),
            product,
            units: b.units,
            price_fen: b.max_price,
            seq: 0,
        };
        let view = self.place(books, order, 0, Some(b.spec.clone()), by, now_ms)?;
        let wait = JobWait { order: view.id, ..JobWait::default() };
        self.stage_wait(&wait, "waiting", now_ms);
        self.jobs.insert(view.id, wait);
        Ok(view)
    }

    /// The job bids' row (`job_bid`, by order): `waiting` until the job is submitted or given up.
    fn stage_wait(&mut self, w: &JobWait, state: &str, now_ms: i64) {
        self.staged.push(MarketRow {
            kind: "job_bid".into(),
            id: row_id(w.order),
            owner: String::new(),
            product: String::new(),
            state: state.into(),
            body: serde_json::to_string(w).unwrap_or_default(),
            at_ms: now_ms,
        });
    }

    /// After a clearing or a cancel: a bid's job whose order left the book waits for its
    /// contract's window, or is given up with the reason.
    fn bid_left_book(&mut self, stored: &StoredOrder, won: &[(u64, i64)], now_ms: i64) {
        let Some(mut w) = self.jobs.remove(&stored.view.id) else { return };
        w.contracts.extend(won.iter().map(|(c, _)| *c));
        if let Some((_, start)) = won.first() {
            w.start_ms = *start;
        }
        if stored.view.state == OrderState::Open {
            self.stage_wait(&w, "waiting", now_ms);
            self.jobs.insert(w.order, w);
            return;
        }
        w.stored = Some(stored.clone());
        let why = match (stored.view.state, w.contracts.len()) {
            (OrderState::Filled, 1) => None,
            (OrderState::Filled, n) => Some(format!(
                "the bid was filled by {n} contracts ({}), none with all the job's units: they are the tenant's to use",
                w.contracts.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )),
            (OrderState::Cancelled, _) => Some("the bid was cancelled before a clearing filled it".into()),
            (_, 0) => Some("the bid was not filled before its window began: nothing was paid".into()),
            (_, _) => Some(format!(
                "the bid was filled only in part ({} of {} units, contracts {}): they are the tenant's to use",
                stored.view.filled_units,
                stored.view.units,
                w.contracts.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )),
        };
        match why {
            None => {
                self.stage_wait(&w, "waiting", now_ms);
                self.jobs.insert(w.order, w);
            }
            Some(why) => self.finish_job(&w, Err(why), now_ms),
        }
    }

    /// The bids' jobs whose single contract's window has begun, with the contract set: taken
    /// until `JobSubmitted` says what became of them.
    fn due_jobs(&mut self, now_ms: i64) -> Vec<(u64, String, serde_json::Value)> {
        let mut due = vec![];
        for w in self.jobs.values_mut() {
            let Some(stored) = &w.stored else { continue };
            if w.taken || w.contracts.len() != 1 || w.start_ms > now_ms {
                continue;
            }
            let Some(mut spec) = stored.view.job.clone() else { continue };
            spec["contract"] = serde_json::Value::from(w.contracts[0]);
            w.taken = true;
            due.push((w.order, stored.view.owner.clone(), spec));
        }
        due
    }

    fn job_submitted(&mut self, order: u64, result: Result<u64, String>, now_ms: i64) {
        if let Some(w) = self.jobs.remove(&order) {
            self.finish_job(&w, result, now_ms);
        }
    }

    /// A bid's job submitted (its id on the order) or given up (the reason on the order).
    fn finish_job(&mut self, w: &JobWait, result: Result<u64, String>, now_ms: i64) {
        if let Some(mut stored) = w.stored.clone() {
            match &result {
                Ok(id) => stored.view.job_id = Some(*id),
                Err(why) => stored.view.job_reason = Some(why.clone()),
            }
            stored.view.updated_at_ms = now_ms;
            self.stage_order(&stored);
            let mut body = serde_json::json!({"order": w.order, "tenant": stored.view.owner});
            match result {
                Ok(id) => body["job"] = serde_json::Value::from(id),
                Err(why) => body["reason"] = serde_json::Value::String(why),
            }
            self.logs.push(("market_job", "server".into(), body));
        }
        self.stage_wait(w, "done", now_ms);
    }

    /// Grams left in a lot (issued, less what was retired).
    pub fn remaining(books: &Books, lot: &str) -> u64 {
        books
            .find(AccountKind::CarbonLot, &format!("lot:{lot}"))
            .map_or(0, |a| u64::try_from(a.balance().max(0)).unwrap_or(u64::MAX))
    }

    /// Issues every lot into the carbon ledger, once: a lot whose account has been credited is
    /// issued (the ledger keeps no resolved transfers in memory to recognise a repeat by).
    fn issue_lots(&self, books: &mut Books, now_ms: i64) {
        let issuer = books.account(AccountKind::CarbonIssuer, "issuer", now_ms);
        for l in &self.lots {
            let Some(grams) = l.grams() else { continue };
            if books.find(AccountKind::CarbonLot, &format!("lot:{}", l.id)).is_some_and(|a| a.credits_posted > 0) {
                continue;
            }
            let to = books.account(AccountKind::CarbonLot, &format!("lot:{}", l.id), now_ms);
            let mut t = Transfer::new(
                system_id(TransferKind::CarbonIssue, fnv(&l.id), 0),
                issuer,
                to,
                grams,
                TransferKind::CarbonIssue.code(),
            );
            t.ledger = suanwang_economy::CO2E_G;
            if let Err(e) = books.apply(&[t], now_ms) {
                tracing::error!(lot = %l.id, error = %e, "a carbon lot could not be issued");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn offset(
        &mut self,
        books: &mut Books,
        tenant: &str,
        job: u64,
        grams: u64,
        lot: Option<&str>,
        by: &str,
        now_ms: i64,
    ) -> Result<suanwang_api::market::OffsetView, ApiError> {
        if self.offset_jobs.contains(&job) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("job {job}'s carbon is already offset"),
            )
            .field("job"));
        }
        self.issue_lots(books, now_ms);
        let chosen = match lot {
            Some(id) => self
                .lots
                .iter()
                .find(|l| l.id == id)
                .ok_or_else(|| invalid("lot", format!("no carbon-sink lot {id:?} (suanwang carbon credits)")))?,
            None => self
                .lots
                .iter()
                .find(|l| Market::remaining(books, &l.id) >= grams)
                .ok_or_else(|| invalid("job", format!("no lot has {grams} g CO2e left to retire")))?,
        };
        let left = Market::remaining(books, &chosen.id);
        if left < grams {
            return Err(invalid("lot", format!("lot {} has {left} g left; the job needs {grams} g", chosen.id)));
        }
        let price = suanwang_economy::carbon::price_fen(grams, chosen.price_fen_per_tonne)
            .ok_or_else(|| invalid("job", "the price does not fit in fen"))?;
        let wallet = books.account(AccountKind::Wallet, tenant, now_ms);
        let holder = books.account(AccountKind::Provider, &chosen.holder, now_ms);
        let lot_account = books.account(AccountKind::CarbonLot, &format!("lot:{}", chosen.id), now_ms);
        let retired = books.account(AccountKind::CarbonRetired, "retired", now_ms);
        let pay = Transfer::new(
            system_id(TransferKind::CarbonPurchase, job, 0),
            wallet,
            holder,
            price,
            TransferKind::CarbonPurchase.code(),
        )
        .flags(TransferFlags::LINKED);
        let mut retire = Transfer::new(
            system_id(TransferKind::CarbonRetire, job, 0),
            lot_account,
            retired,
            grams,
            TransferKind::CarbonRetire.code(),
        );
        retire.ledger = suanwang_economy::CO2E_G;
        let chain: Vec<Transfer> = if price > 0 { vec![pay, retire] } else { vec![retire] };
        if let Err(e) = books.apply(&chain, now_ms) {
            let available =
                books.find(AccountKind::Wallet, tenant).and_then(suanwang_economy::Account::available).unwrap_or(0);
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "balance",
                format!(
                    "balance: the credits cost ¥{:.2} and {tenant}'s wallet has ¥{:.2} available ({e})",
                    price as f64 / 100.0,
                    available as f64 / 100.0
                ),
            )
            .field("job"));
        }
        self.offset_jobs.insert(job);
        let view = suanwang_api::market::OffsetView {
            job,
            tenant: tenant.to_string(),
            lot: chosen.id.clone(),
            holder: chosen.holder.clone(),
            issuer: chosen.issuer.clone(),
            vintage: chosen.vintage,
            grams,
            price_fen: price,
            at_ms: now_ms,
        };
        self.staged.push(MarketRow {
            kind: "offset".into(),
            id: row_id(job),
            owner: tenant.to_string(),
            product: chosen.id.clone(),
            state: "retired".into(),
            body: serde_json::to_string(&view).unwrap_or_default(),
            at_ms: now_ms,
        });
        let mut body = serde_json::to_value(&view).unwrap_or_default();
        body["tenant"] = serde_json::Value::String(tenant.to_string());
        self.logs.push(("carbon_offset", by.to_string(), body));
        Ok(view)
    }

    fn cancel(
        &mut self,
        books: &mut Books,
        id: u64,
        by: &str,
        any_owner: bool,
        now_ms: i64,
    ) -> Result<OrderView, ApiError> {
        let not_open = || {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no open order {id} of yours"))
                .hint("orders can be cancelled until the clearing that fills them; see suanwang market orders")
        };
        let mine = self.open.get(&id).is_some_and(|o| any_owner || o.view.owner == by);
        if !mine {
            return Err(not_open());
        }
        let Some(mut stored) = self.open.remove(&id) else { return Err(not_open()) };
        self.book.remove(id);
        if stored.view.side == OrderSide::Bid {
            void(books, id, stored.hold_leg, now_ms);
        }
        stored.view.state = OrderState::Cancelled;
        stored.view.held_fen = 0;
        stored.view.updated_at_ms = now_ms;
        self.stage_order(&stored);
        if stored.view.job.is_some() {
            self.bid_left_book(&stored, &[], now_ms);
        }
        let tenant = (stored.view.side == OrderSide::Bid).then(|| stored.view.owner.clone());
        self.logs.push(("market_cancel", by.to_string(), serde_json::json!({"order": id, "tenant": tenant})));
        Ok(stored.view)
    }

    /// One clearing of every product in the book.
    pub fn clear(&mut self, books: &mut Books, now_ms: i64) -> ClearingAnswer {
        let results = self.book.clear_all();
        let mut answer = ClearingAnswer {
            products: results.len() as u64,
            traded: 0,
            contracts: 0,
            units: 0,
            expired: 0,
            cleared_at_ms: now_ms,
        };
        let fee_bp = books.book.platform.fee_bp;
        let platform = books.account(AccountKind::Platform, PLATFORM, now_ms);
        let clearing = books.account(AccountKind::Clearing, PLATFORM, now_ms);
        for (c, orders) in results {
            let hours = c.product.hours;
            let mut filled: BTreeMap<u64, u64> = BTreeMap::new();
            // each bid's contracts, to pay
            let mut by_bid: BTreeMap<u64, Vec<Sale>> = BTreeMap::new();
            // each bid's contracts and their window's start: a bid's job runs on its contract
            let mut won: BTreeMap<u64, Vec<(u64, i64)>> = BTreeMap::new();
            if let Some(price) = c.price_fen {
                answer.traded += 1;
                answer.units += c.units;
                for f in &c.fills {
                    let (Some(bid), Some(ask)) =
                        (orders.iter().find(|o| o.id == f.bid), orders.iter().find(|o| o.id == f.ask))
                    else {
                        continue;
                    };
                    // within the bid's hold: units ≤ its units, price ≤ its maximum
                    let amount = cost(f.units, price, hours).unwrap_or(0);
                    let fee = platform_fee(amount, fee_bp);
                    let id = self.next_contract;
                    self.next_contract += 1;
                    answer.contracts += 1;
                    *filled.entry(f.bid).or_default() += f.units;
                    *filled.entry(f.ask).or_default() += f.units;
                    let view = ContractView {
                        id,
                        product: c.product.id(),
                        buyer: bid.owner.clone(),
                        seller: ask.owner.clone(),
                        units: f.units,
                        price_fen: price,
                        amount_fen: amount,
                        fee_fen: fee,
                        bid: bid.id,
                        ask: ask.id,
                        cleared_at_ms: now_ms,
                        start_ms: c.product.start_ms,
                        end_ms: c.product.end_ms(),
                    };
                    self.record_contract(&view, "server", now_ms);
                    won.entry(bid.id).or_default().push((id, view.start_ms));
                    by_bid.entry(bid.id).or_default().push(Sale {
                        contract: id,
                        seller: ask.owner.clone(),
                        amount,
                        fee,
                    });
                }
                // the price's history (`price`, by product then time) and the latest (`last_price`)
                let body = serde_json::to_string(&suanwang_api::market::PriceView {
                    product: c.product.id(),
                    price_fen: price,
                    units: c.units,
                    cleared_at_ms: now_ms,
                })
                .unwrap_or_default();
                for (kind, id) in
                    [("price", format!("{}@{:020}", c.product.id(), now_ms)), ("last_price", c.product.id())]
                {
                    self.staged.push(MarketRow {
                        kind: kind.into(),
                        id,
                        owner: String::new(),
                        product: c.product.id(),
                        state: "published".into(),
                        body: body.clone(),
                        at_ms: now_ms,
                    });
                }
            }
            let started = c.product.start_ms <= now_ms;
            for mut o in orders {
                let Some(mut stored) = self.open.remove(&o.id) else { continue };
                let got = filled.get(&o.id).copied().unwrap_or(0);
                let left = o.units - got;
                let mut changed = got > 0;
                if o.side == Side::Bid && got > 0 {
                    // pay for the fills: post the hold with what they cost, pay each seller and
                    // the platform — one linked chain
                    let contracts = by_bid.remove(&o.id).unwrap_or_default();
                    let total: u64 = contracts.iter().map(|x| x.amount).sum();
                    let mut chain = vec![Transfer::post(
                        system_id(TransferKind::MarketPost, o.id, stored.hold_leg),
                        hold_id(o.id, stored.hold_leg),
                        total,
                        TransferKind::MarketPost.code(),
                    )];
                    for Sale { contract: id, seller, amount, fee } in &contracts {
                        let to = books.account(AccountKind::Provider, seller, now_ms);
                        chain.push(Transfer::new(
                            system_id(TransferKind::MarketPayment, *id, 0),
                            clearing,
                            to,
                            amount - fee,
                            TransferKind::MarketPayment.code(),
                        ));
                        if *fee > 0 {
                            chain.push(Transfer::new(
                                system_id(TransferKind::MarketFee, *id, 0),
                                clearing,
                                platform,
                                *fee,
                                TransferKind::MarketFee.code(),
                            ));
                        }
                    }
                    let n = chain.len();
                    for t in &mut chain[..n - 1] {
                        *t = t.flags(TransferFlags::LINKED);
                    }
                    if let Err(e) = books.apply(&chain, now_ms) {
                        tracing::error!(order = o.id, error = %e, "a bid's fills could not be paid; the order is cancelled");
                        void(books, o.id, stored.hold_leg, now_ms);
                        stored.view.state = OrderState::Cancelled;
                        stored.view.held_fen = 0;
                        stored.view.updated_at_ms = now_ms;
                        self.stage_order(&stored);
                        if stored.view.job.is_some() {
                            self.bid_left_book(&stored, &[], now_ms);
                        }
                        continue;
                    }
                    stored.hold_leg += 1;
                    stored.view.held_fen = 0;
                    // what is left stays open, held again
                    if left > 0 && !started {
                        let again = cost(left, o.price_fen, hours).unwrap_or(u64::MAX);
                        let wallet = books.account(AccountKind::Wallet, &o.owner, now_ms);
                        let hold = Transfer::new(
                            hold_id(o.id, stored.hold_leg),
                            wallet,
                            clearing,
                            again,
                            TransferKind::MarketHold.code(),
                        )
                        .flags(TransferFlags::PENDING);
                        if books.apply(&[hold], now_ms).is_ok() {
                            stored.view.held_fen = again;
                        } else {
                            stored.view.state = OrderState::Expired;
                        }
                    }
                }
                stored.view.filled_units += got;
                if left == 0 {
                    stored.view.state = OrderState::Filled;
                } else if started && stored.view.state == OrderState::Open {
                    // its window began: out of the book
                    if o.side == Side::Bid && got == 0 {
                        void(books, o.id, stored.hold_leg, now_ms);
                    }
                    stored.view.state = OrderState::Expired;
                    stored.view.held_fen = 0;
                    answer.expired += 1;
                    changed = true;
                }
                if stored.view.state != OrderState::Open || changed {
                    stored.view.updated_at_ms = now_ms;
                    self.stage_order(&stored);
                }
                if stored.view.job.is_some() && changed {
                    self.bid_left_book(&stored, won.get(&o.id).map_or(&[], Vec::as_slice), now_ms);
                }
                if stored.view.state == OrderState::Open {
                    o.units = left;
                    let _ = self.book.insert(o);
                    self.open.insert(stored.view.id, stored);
                }
            }
        }
        // sold capacity whose window is over is forgotten
        for v in self.sold.values_mut() {
            v.retain(|(_, end, _)| *end > now_ms);
        }
        self.sold.retain(|_, v| !v.is_empty());
        if answer.products > 0 {
            self.logs.push(("market_clearing", "server".into(), serde_json::to_value(&answer).unwrap_or_default()));
        }
        answer
    }
}

/// FNV-1a of a lot's id: the subject of its issuance's transfer id.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Voids an order's open hold, if it has one.
fn void(books: &mut Books, order: u64, leg: u16, now_ms: i64) {
    let hold = hold_id(order, leg);
    if !matches!(books.ledger().pending(hold), Some((_, suanwang_economy::PendingState::Pending))) {
        return;
    }
    let v = Transfer::void(system_id(TransferKind::MarketVoid, order, leg), hold, TransferKind::MarketVoid.code());
    if let Err(e) = books.apply(&[v], now_ms) {
        tracing::error!(order, error = %e, "voiding a market hold failed");
    }
}

/// A job on a contract's meter as billed: its compute and energy were paid at the auction, so
/// only transfer (and the platform's fee on it) is left.
pub fn prepaid(m: &suanwang_engine::Meter) -> suanwang_engine::Meter {
    suanwang_engine::Meter { compute_fen: 0, energy_fen: 0, money_fen: m.transfer_fen.max(0), ..*m }
}

/// `2026-12-06T02:00:00Z` of a whole hour.
fn rfc3339_hour(ms: i64) -> String {
    let h = suanwang_economy::market::hour_utc(ms);
    format!("{}:00:00Z", h.trim_end_matches('Z'))
}

/// A job on a market contract (issue 16, R4): the contract must be the tenant's and current,
/// of the job's family (and model) and big enough; the spec is confined to the seller's sites at
/// the contract's place and to its window (`allowed_sites`, `deadline`). Bad cases are 422s
/// naming the field. Returns whether the spec changed.
pub async fn resolve_contract(inner: &crate::Inner, spec: &mut serde_json::Value) -> Result<bool, ApiError> {
    use serde_json::Value;
    let Some(n) = spec.get("contract").and_then(Value::as_u64).filter(|n| *n >= 1) else {
        return Ok(false); // absent, or malformed: the spec's check names it
    };
    if spec.get("max_price").is_some() {
        return Ok(false); // a contract and a bid: the spec's check names `max_price`
    }
    let tenant = spec.get("tenant").and_then(Value::as_str).unwrap_or_default().to_string();
    let query = MarketQuery {
        kind: "contract".into(),
        owner: Some(tenant.clone()),
        after: row_id(n - 1),
        limit: 1,
        ..MarketQuery::default()
    };
    let rows = inner.store.market(&query).await.map_err(|e| ApiError::unavailable("store").detail(e.to_string()))?;
    let c: ContractView =
        rows.iter().find(|r| r.id == row_id(n)).and_then(|r| serde_json::from_str(&r.body).ok()).ok_or_else(|| {
            invalid("contract", format!("no contract {n} of tenant {tenant:?} (suanwang contract list)"))
        })?;
    let now = crate::actor::wall_now().0;
    if now < c.start_ms {
        return Err(invalid("contract", format!("contract {n}'s window begins at {}", rfc3339_hour(c.start_ms))));
    }
    if now >= c.end_ms {
        return Err(invalid("contract", format!("contract {n}'s window ended at {}", rfc3339_hour(c.end_ms))));
    }
    let product = Product::parse(&c.product).map_err(|e| invalid("contract", e.to_string()))?;
    let res = spec.get("resources").cloned().unwrap_or(Value::Null);
    if res.get("family").and_then(Value::as_str) != Some(product.family.as_str()) {
        return Err(invalid("resources.family", format!("contract {n} is for {} capacity", product.family)));
    }
    if res.get("count").and_then(Value::as_u64).is_some_and(|k| k > c.units) {
        return Err(invalid("resources.count", format!("contract {n} holds {} units", c.units)));
    }
    if product.family == "intelligent" && product.model != "any" {
        match res.get("accelerator").and_then(Value::as_str) {
            None => spec["resources"]["accelerator"] = Value::String(product.model.clone()),
            Some(a) if a == product.model => {}
            Some(a) => {
                return Err(invalid(
                    "resources.accelerator",
                    format!("contract {n} is for {}, not {a}", product.model),
                ));
            }
        }
    }
    // the seller's sites at the place that have the product's kind
    let book = inner.books.lock().map_err(|_| ApiError::unavailable("the books are unavailable"))?.book.clone();
    let mut sites = contract_sites(&inner.net(), &book, &inner.grants(), &product, &c.seller);
    if let Some(asked) = spec.get("allowed_sites").and_then(Value::as_array) {
        sites.retain(|s| asked.iter().any(|a| a.as_str() == Some(s)));
    }
    if sites.is_empty() {
        return Err(invalid("allowed_sites", format!("none of contract {n}'s sites ({}) is allowed", product.place)));
    }
    spec["allowed_sites"] = sites.into_iter().map(Value::String).collect();
    let end = rfc3339_hour(c.end_ms);
    // the contract's end, unless the job's own deadline is earlier
    let earlier = spec
        .get("deadline")
        .and_then(Value::as_str)
        .and_then(|d| suanwang_core::Ts::parse(d).ok())
        .is_some_and(|d| d.0 < c.end_ms);
    if !earlier {
        spec["deadline"] = Value::String(end);
    }
    Ok(true)
}

/// The seller's sites at a product's place that have the product's kind of capacity: where a
/// contract's jobs may run and its block is held.
pub fn contract_sites(
    net: &suanwang_core::Network,
    book: &suanwang_economy::PriceBook,
    grants: &BTreeMap<String, suanwang_engine::SiteGrant>,
    product: &Product,
    seller: &str,
) -> Vec<String> {
    crate::market_routes::sites_of(net, &product.place)
        .into_iter()
        .filter(|s| crate::billing::provider_of(book, net, grants, &s.id) == seller)
        .filter(|s| s.pools.iter().any(|x| product.covers(x.family.as_str(), &x.model)))
        .map(|s| s.id.clone())
        .collect()
}

/// The engine command that reserves contract `c`'s units (issue 16 item 3), as the command
/// log keeps it; `None` for a contract whose product no longer parses or names a family the
/// network does not have.
pub fn reserve_body(inner: &crate::Inner, c: &ContractView) -> Option<serde_json::Value> {
    let product = Product::parse(&c.product).ok()?;
    let book = inner.books.lock().ok()?.book.clone();
    let sites = contract_sites(&inner.net(), &book, &inner.grants(), &product, &c.seller);
    Some(serde_json::json!({
        "contract": c.id,
        "holder": c.buyer,
        "sites": sites,
        "family": product.family,
        "model": product.model,
        "start_ms": c.start_ms,
        "end_ms": c.end_ms,
        "units": c.units,
    }))
}

/// The engine command of a `reserve` body (`reserve_body`).
pub fn reserve_command(body: &serde_json::Value) -> Option<suanwang_engine::Command> {
    use serde_json::Value;
    Some(suanwang_engine::Command::Reserve {
        contract: body.get("contract")?.as_u64()?,
        holder: body.get("holder")?.as_str()?.to_string(),
        sites: body.get("sites")?.as_array()?.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        family: suanwang_core::Family::parse(body.get("family")?.as_str()?)?,
        model: body.get("model")?.as_str()?.to_string(),
        start: suanwang_core::Ts(body.get("start_ms")?.as_i64()?),
        end: suanwang_core::Ts(body.get("end_ms")?.as_i64()?),
        units: u32::try_from(body.get("units")?.as_u64()?).ok()?,
    })
}

/// Units of `family` that `tenant`'s live jobs hold, per region (the region of the site each is
/// placed at; "" for all together).
pub fn used_units(inner: &crate::Inner, tenant: &str, family: &str) -> BTreeMap<String, u64> {
    let net = inner.net();
    let mut used: BTreeMap<String, u64> = BTreeMap::new();
    if let Ok(v) = inner.views.read() {
        for j in v.live.values().filter(|j| j.tenant == tenant) {
            if j.spec.pointer("/resources/family").and_then(serde_json::Value::as_str) != Some(family) {
                continue;
            }
            let units = j.spec.pointer("/resources/count").and_then(serde_json::Value::as_u64).unwrap_or(0);
            *used.entry(String::new()).or_default() += units;
            if let Some(site) = j.site.as_deref().and_then(|s| net.site(s)) {
                *used.entry(site.region.clone()).or_default() += units;
            }
        }
    }
    used
}

/// The tenant's quotas (R3) applied to a submission: a quota everywhere that this job would
/// exceed refuses it (422 naming the quota); regions whose quota it would exceed are taken out
/// of the regions it may run in (`allowed_regions`), and when none is left it is refused.
/// Returns whether the spec changed. The caller holds the tenant's `quota_gate` until the job
/// is in the live jobs, so the check and the submission are one step.
pub fn apply_quotas(inner: &crate::Inner, spec: &mut serde_json::Value) -> Result<bool, ApiError> {
    use serde_json::Value;
    let tenant = spec.get("tenant").and_then(Value::as_str).unwrap_or_default().to_string();
    let family = spec.pointer("/resources/family").and_then(Value::as_str).unwrap_or_default().to_string();
    let count = spec.pointer("/resources/count").and_then(Value::as_u64).unwrap_or(0);
    let mine: Vec<(String, u64)> = match inner.market.lock() {
        Ok(m) => m
            .quotas
            .iter()
            .filter(|((t, f, _), _)| *t == tenant && *f == family)
            .map(|((_, _, r), max)| (r.clone(), *max))
            .collect(),
        Err(_) => return Err(ApiError::unavailable("the market")),
    };
    if mine.is_empty() {
        return Ok(false);
    }
    let used = used_units(inner, &tenant, &family);
    let over = |region: &str, max: u64| used.get(region).copied().unwrap_or(0).saturating_add(count) > max;
    if let Some((_, max)) = mine.iter().find(|(r, max)| r.is_empty() && over("", *max)) {
        return Err(quota_refusal(format!(
            "quota: tenant {tenant} may hold {max} {family} units at once and its live jobs hold {}; {count} more is too many",
            used.get("").copied().unwrap_or(0)
        )));
    }
    let full: Vec<&String> = mine.iter().filter(|(r, max)| !r.is_empty() && over(r, *max)).map(|(r, _)| r).collect();
    if full.is_empty() {
        return Ok(false);
    }
    let net = inner.net();
    let regions: Vec<String> = match spec.get("allowed_regions").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => net.hubs.iter().map(|h| h.id.clone()).chain(net.regions.iter().map(|r| r.id.clone())).collect(),
    };
    let left: Vec<String> = regions.into_iter().filter(|r| !full.contains(&r)).collect();
    if left.is_empty() {
        let names: Vec<&str> = full.iter().map(|s| s.as_str()).collect();
        return Err(quota_refusal(format!(
            "quota: tenant {tenant}'s {family} quota is full in {} (and it may run nowhere else)",
            names.join(", ")
        )));
    }
    spec["allowed_regions"] = left.into_iter().map(Value::String).collect();
    Ok(true)
}

/// The tenant's submission gate when it has any quota (`Inner::quota_gates`): held from the
/// quota check until the job is live.
pub async fn quota_gate(inner: &crate::Inner, spec: &serde_json::Value) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    let tenant = spec.get("tenant").and_then(serde_json::Value::as_str)?;
    let quoted = inner.market.lock().ok()?.quotas.keys().any(|(t, _, _)| t == tenant);
    if !quoted {
        return None;
    }
    let gate = {
        let mut gates = inner.quota_gates.lock().ok()?;
        // bounded by the tenants with quotas
        Arc::clone(gates.entry(tenant.to_string()).or_default())
    };
    Some(gate.lock_owned().await)
}

fn quota_refusal(why: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "quota", why)
        .field("resources.count")
        .hint("the operator sets quotas (suanwang quota list); wait for your jobs to end, or ask for fewer units")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use suanwang_economy::PriceBook;

    const HOUR: i64 = 3_600_000;

    /// Random asks and bids over two products, some cancelled, cleared twice (the second time
    /// after the first window began): money is never created or lost, the clearing account nets
    /// to zero, every buyer paid exactly its contracts, every seller got them less the fee, no
    /// hold is left of an order that is not open, and no ask sold more than it offered.
    #[test]
    fn market_money_is_conserved_through_orders_cancels_and_clearings() {
        let orders =
            proptest::collection::vec((any::<bool>(), 0usize..2, 1u64..20, 1u64..300, 0usize..3, any::<bool>()), 1..40);
        proptest!(ProptestConfig::with_cases(64), |(os in orders)| {
            let mut books = Books::new(PriceBook::reference(), 10_000_000);
            let mut m = Market { next_order: 1, next_contract: 1, ..Market::default() };
            let t0 = 10 * HOUR;
            let products = [
                Product { family: "general".into(), model: "any".into(), place: "x".into(), start_ms: t0 + HOUR, hours: 2 },
                Product { family: "general".into(), model: "any".into(), place: "x".into(), start_ms: t0 + 3 * HOUR, hours: 1 },
            ];
            let mut placed = vec![];
            for (i, (bid, p, units, price, who, cancel)) in os.iter().enumerate() {
                let side = if *bid { Side::Bid } else { Side::Ask };
                let owner = if *bid { format!("t{who}") } else { format!("s{who}") };
                let o = Order { id: 0, side, owner: owner.clone(), product: products[*p].clone(), units: *units, price_fen: *price, seq: 0 };
                if let Ok(MarketDone::Order(v)) = m.apply(&mut books, MarketOp::Place { order: Box::new(o), capacity: 1_000, by: owner.clone() }, t0) {
                    placed.push(v.id);
                    if *cancel && i % 3 == 0 {
                        let _ = m.apply(&mut books, MarketOp::Cancel { id: v.id, by: owner, any_owner: false }, t0);
                    }
                }
            }
            let first = m.clear(&mut books, t0 + 1);
            let second = m.clear(&mut books, t0 + 2 * HOUR);
            prop_assert!(books.balanced(), "Σ debits = Σ credits");
            let clearing = books.find(AccountKind::Clearing, PLATFORM).map_or(0, suanwang_economy::Account::balance);
            let held: u128 = m.open.values().map(|o| u128::from(o.view.held_fen)).sum();
            // what is still held sits in clearing as pending, not posted: posted nets to zero
            prop_assert_eq!(clearing, 0, "clearing nets to zero ({} held pending)", held);
            let (staged, _) = m.take_staged();
            let contracts: Vec<ContractView> = staged.iter().filter(|r| r.kind == "contract").filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
            prop_assert_eq!(contracts.len() as u64, first.contracts + second.contracts);
            let mut paid: BTreeMap<String, u64> = BTreeMap::new();
            let mut got: BTreeMap<String, u64> = BTreeMap::new();
            let mut sold: BTreeMap<u64, u64> = BTreeMap::new();
            for c in &contracts {
                *paid.entry(c.buyer.clone()).or_default() += c.amount_fen;
                *got.entry(c.seller.clone()).or_default() += c.amount_fen - c.fee_fen;
                *sold.entry(c.ask).or_default() += c.units;
            }
            for (tenant, fen) in &paid {
                let w = books.find(AccountKind::Wallet, tenant).map_or(0, |a| -a.balance());
                prop_assert_eq!(w, i128::from(*fen), "{} paid its contracts", tenant);
            }
            for (seller, fen) in &got {
                let a = books.find(AccountKind::Provider, seller).map_or(0, suanwang_economy::Account::balance);
                prop_assert_eq!(a, i128::from(*fen), "{} got its contracts less the fee", seller);
            }
            // no order that left the book holds anything; each ask sold at most its units
            let open_holds = books.ledger().open_pending().count();
            prop_assert_eq!(open_holds, m.open.values().filter(|o| o.view.held_fen > 0).count());
            for (ask, units) in &sold {
                let offered = os.get(usize::try_from(*ask).unwrap_or(0).saturating_sub(1)).map_or(0, |o| o.2);
                prop_assert!(*units <= offered, "ask {} sold {} of {}", ask, units, offered);
            }
            prop_assert!(placed.windows(2).all(|w| w[0] < w[1]), "ids increase");
        });
    }

    /// Random offsets (R5 碳汇) — jobs repeated, lots named or not, some unknown, some too large
    /// for any lot, wallets that run dry — through both ledgers: carbon is never created or
    /// lost (issued = left in the lots + retired, to the gram), a job is retired at most once,
    /// what tenants paid is exactly what the lots' holders received, and a refused offset
    /// changes nothing in either ledger.
    #[test]
    fn carbon_and_money_are_conserved_through_offsets() {
        let offsets = proptest::collection::vec(
            (0usize..3, 0u64..12, prop_oneof![1u64..5_000_000, 1u64..u64::MAX / 4], 0usize..5),
            1..40,
        );
        proptest!(ProptestConfig::with_cases(64), |(os in offsets)| {
            // a small credit limit: some offsets find the wallet dry
            let mut books = Books::new(PriceBook::reference(), 2_000);
            let mut m = Market { next_order: 1, next_contract: 1, ..Market::default() };
            m.lots = suanwang_economy::carbon::CreditLot::reference();
            let issued: u64 = m.lots.iter().filter_map(suanwang_economy::carbon::CreditLot::grams).sum();
            let mut retired_jobs: BTreeMap<u64, u64> = BTreeMap::new();
            let mut paid: i128 = 0;
            for (who, job, grams, lot) in os {
                let lot = match lot {
                    0 => None,
                    1 => Some("no-such-lot".to_string()),
                    k => m.lots.get(k - 2).map(|l| l.id.clone()),
                };
                let before = (books.ledger().totals(), m.offset_jobs.len());
                let op = MarketOp::Offset { tenant: format!("t{who}"), job, grams, lot, by: format!("t{who}") };
                match m.apply(&mut books, op, 1_000) {
                    Ok(MarketDone::Offset(v)) => {
                        prop_assert!(retired_jobs.insert(job, grams).is_none(), "job {} retired twice", job);
                        prop_assert_eq!(v.grams, grams);
                        paid += i128::from(v.price_fen);
                    }
                    Ok(_) => prop_assert!(false, "an offset answers with its view"),
                    Err(_) => {
                        // nothing half-applied: the money ledger's totals and the jobs offset
                        // are as they were (the lots' issue, once, aside)
                        prop_assert_eq!(m.offset_jobs.len(), before.1);
                        let (dp, cp, dq, cq) = books.ledger().totals();
                        let (dp0, cp0, dq0, cq0) = before.0;
                        let issue: u128 = if dq0 == 0 { u128::from(issued) } else { 0 };
                        prop_assert!(dp == dp0 && cp == cp0, "a refused offset holds nothing");
                        prop_assert!(dq == dq0 + issue && cq == cq0 + issue, "a refused offset moved nothing");
                    }
                }
            }
            prop_assert!(books.balanced(), "Σ debits = Σ credits in both ledgers");
            let left: u64 = m.lots.iter().map(|l| Market::remaining(&books, &l.id)).sum();
            let retired = books.find(AccountKind::CarbonRetired, "retired").map_or(0, suanwang_economy::Account::balance);
            if !retired_jobs.is_empty() {
                prop_assert_eq!(i128::from(left) + retired, i128::from(issued), "issued = left + retired");
                prop_assert_eq!(retired, i128::from(retired_jobs.values().sum::<u64>()));
            }
            let wallets: i128 = (0..3).map(|w| books.find(AccountKind::Wallet, &format!("t{w}")).map_or(0, |a| -a.balance())).sum();
            let holders: i128 = m
                .lots
                .iter()
                .map(|l| l.holder.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .iter()
                .map(|h| books.find(AccountKind::Provider, h).map_or(0, suanwang_economy::Account::balance))
                .sum();
            prop_assert_eq!(wallets, paid, "tenants paid their offsets");
            prop_assert_eq!(holders, paid, "the holders received them");
        });
    }
}
