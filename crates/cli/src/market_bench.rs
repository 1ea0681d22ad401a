//! `suanwang bench market`: the market's speed (issue 16 item 9), in one process on the
//! economy crate's order book and ledger. Accepting an order is what the control plane does per
//! order before its group commit: the order's checks, a bid's hold placed in the ledger (a
//! pending transfer from the bidder's wallet), the book's insert. A clearing round is the call
//! auction of every product, then settling it in the ledger: each bid's hold posted with what
//! its fills cost, the rest voided, each contract paid to its seller less the platform's fee.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;
use suanwang_economy::market::{Order, OrderBook, Product, Side, cost};
use suanwang_economy::{Account, AccountKind, History, Ledger, Transfer, TransferFlags, TransferKind, system_id};

use crate::bench_cmd::{Rng, quantile};

#[derive(Debug)]
pub struct MarketArgs {
    pub orders: usize,
    pub products: usize,
    pub preemptions: usize,
    pub background: usize,
    pub json: bool,
}

const BANK: u128 = 1;
const CLEARING: u128 = 2;
const PLATFORM: u128 = 3;
/// Bidders' wallets from here, sellers' accounts after them.
const FIRST: u128 = 16;
const BIDDERS: u64 = 1_000;
const SELLERS: u64 = 200;

fn ledger() -> Result<Ledger> {
    let mut l = Ledger::new(History::Drop);
    let mut accounts = vec![
        Account::new(BANK, AccountKind::Bank.code(), AccountKind::Bank.flags()),
        Account::new(CLEARING, AccountKind::Clearing.code(), AccountKind::Clearing.flags()),
        Account::new(PLATFORM, AccountKind::Platform.code(), AccountKind::Platform.flags()),
    ];
    for i in 0..BIDDERS {
        accounts.push(Account::new(FIRST + u128::from(i), AccountKind::Wallet.code(), AccountKind::Wallet.flags()));
    }
    for i in 0..SELLERS {
        accounts.push(Account::new(
            FIRST + u128::from(BIDDERS + i),
            AccountKind::Provider.code(),
            AccountKind::Provider.flags(),
        ));
    }
    for a in accounts {
        l.create_account(a, 1).map_err(|e| anyhow::anyhow!("account: {e}"))?;
    }
    let funding: Vec<Transfer> = (0..BIDDERS)
        .map(|i| Transfer::new(system_id(TransferKind::Topup, i, 0), BANK, FIRST + u128::from(i), 1 << 50, 1))
        .collect();
    if l.create_transfers(&funding, 2).iter().any(Result::is_err) {
        bail!("funding the bidders failed");
    }
    Ok(l)
}

pub fn market(args: &MarketArgs) -> Result<()> {
    if args.orders == 0 || args.products == 0 {
        bail!("--orders and --products must be at least 1");
    }
    let mut rng = Rng(16);
    let start_ms = 1_796_515_200_000; // 2026-12-06T00Z
    let products: Vec<Product> = (0..args.products)
        .map(|i| Product {
            family: "general".into(),
            model: "any".into(),
            place: format!("site-{}", i / 24),
            start_ms: start_ms + (i % 24) as i64 * 3_600_000,
            hours: 1,
        })
        .collect();
    let orders: Vec<Order> = (0..args.orders as u64)
        .map(|id| {
            let side = if rng.next().is_multiple_of(2) { Side::Bid } else { Side::Ask };
            let owner = match side {
                Side::Bid => rng.next() % BIDDERS,
                Side::Ask => BIDDERS + rng.next() % SELLERS,
            };
            Order {
                id: id + 1,
                side,
                owner: owner.to_string(),
                product: products[(rng.next() % products.len() as u64) as usize].clone(),
                units: 1 + rng.next() % 100,
                price_fen: 100 + rng.next() % 100,
                seq: id,
            }
        })
        .collect();
    let mut l = ledger()?;
    let mut book = OrderBook::new();
    let now = start_ms - 3_600_000;
    let mut per_order = Vec::with_capacity(orders.len());
    let started = Instant::now();
    for o in orders {
        let t = Instant::now();
        o.check(now).map_err(|e| anyhow::anyhow!("order {}: {e}", o.id))?;
        if o.side == Side::Bid {
            let wallet = FIRST + u128::from(o.owner.parse::<u64>()?);
            let hold = Transfer::new(system_id(TransferKind::MarketHold, o.id, 0), wallet, CLEARING, o.hold_fen()?, 15)
                .flags(TransferFlags::PENDING);
            if let Some(Err(e)) = l.create_transfers(&[hold], 3).pop() {
                bail!("hold of order {}: {e}", o.id);
            }
        }
        book.insert(o).map_err(|e| anyhow::anyhow!("{e}"))?;
        per_order.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let accept_s = started.elapsed().as_secs_f64();
    let accepted = per_order.len();
    // one clearing round: the auctions, then the ledger
    let t = Instant::now();
    let cleared = book.clear_all();
    let auction_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let (mut units, mut traded, mut contracts) = (0u64, 0usize, 0u64);
    let mut batch = Vec::with_capacity(accepted);
    for (c, orders) in &cleared {
        let Some(price) = c.price_fen else {
            for o in orders.iter().filter(|o| o.side == Side::Bid) {
                batch.push(void(o.id));
            }
            continue;
        };
        traded += 1;
        units += c.units;
        let mut filled: BTreeMap<u64, u64> = BTreeMap::new();
        for f in &c.fills {
            *filled.entry(f.bid).or_default() += f.units;
            contracts += 1;
            let pay = cost(f.units, price, c.product.hours).unwrap_or(0);
            let fee = (pay * 300).div_ceil(10_000);
            let seller = orders.iter().find(|o| o.id == f.ask).map_or(0, |o| o.owner.parse::<u64>().unwrap_or(0));
            let leg = |k| system_id(k, contracts, 0);
            batch.push(Transfer::new(
                leg(TransferKind::MarketPayment),
                CLEARING,
                FIRST + u128::from(seller),
                pay - fee,
                18,
            ));
            batch.push(Transfer::new(leg(TransferKind::MarketFee), CLEARING, PLATFORM, fee, 19));
        }
        for o in orders.iter().filter(|o| o.side == Side::Bid) {
            match filled.get(&o.id) {
                Some(q) => batch.push(Transfer::post(
                    system_id(TransferKind::MarketPost, o.id, 0),
                    system_id(TransferKind::MarketHold, o.id, 0),
                    cost(*q, price, c.product.hours).unwrap_or(0),
                    16,
                )),
                None => batch.push(void(o.id)),
            }
        }
    }
    // posts and voids first, then the payments out of what the posts brought in
    let resolving = |t: &Transfer| t.pending_id != 0;
    batch.sort_by_key(|t| !resolving(t));
    let failed = l.create_transfers(&batch, 4).into_iter().filter(Result::is_err).count();
    let settle_ms = t.elapsed().as_secs_f64() * 1e3;
    if failed > 0 {
        bail!("{failed} settlement transfers failed");
    }
    let (dp, cp, dq, cq) = l.totals();
    if (dp, dq) != (cp, cq) {
        bail!("the ledger does not balance after clearing");
    }
    let out = json!({
        "orders": accepted,
        "products": args.products,
        "orders_per_sec": accepted as f64 / accept_s,
        "p50_us": quantile(per_order.clone(), 0.5),
        "p99_us": quantile(per_order, 0.99),
        "clearing_ms": auction_ms,
        "settle_ms": settle_ms,
        "products_traded": traded,
        "contracts": contracts,
        "units_traded": units,
        "open_holds_after": l.open_pending().count(),
        "preemption": crate::preempt_bench::preemption(args.preemptions, args.background)?,
    });
    if args.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn void(order: u64) -> Transfer {
    Transfer::void(system_id(TransferKind::MarketVoid, order, 0), system_id(TransferKind::MarketHold, order, 0), 17)
}
