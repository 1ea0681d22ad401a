//! The market (issue 16, R4): products, orders, and periodic call auctions that clear them.
//!
//! A **product** is a block of capacity: a family, a device model (or `any`), a place (a site, a
//! hub or a green region) and a window of whole UTC hours. Providers post **asks** (units and a
//! floor price per unit·hour); tenants post **bids** (units and a maximum price). Orders wait in
//! the product's book until the next **clearing**, a call auction per product:
//!
//! **Mechanism: uniform-price double auction (k = ½).** Bids are ranked by price, highest first,
//! asks lowest first; ties go to the earlier order (then the lower id), so the result is
//! deterministic. Units trade from the top of both rankings while the next bid's price is at least
//! the next ask's; every traded unit clears at one price, the midpoint of the last traded bid's and
//! ask's prices, rounded down to the fen. Its properties:
//! - **individually rational**: no bid pays above its maximum, no ask is paid below its floor (the
//!   price lies between the last traded pair, and every other traded bid is higher, every other
//!   traded ask lower);
//! - **budget balanced**: buyers pay exactly what sellers receive (the platform's fee is a share
//!   of the sellers' receipts, not new money);
//! - **efficient** for the orders as stated: it trades the largest quantity that can trade at a
//!   common price and maximises the stated gains from trade;
//! - **not strategy-proof** for either side (no mechanism is IR, budget balanced and efficient
//!   and truthful at once — Myerson–Satterthwaite): the marginal bidder can gain by shading its
//!   bid, the marginal seller by raising its ask; with many orders per product the gain shrinks.
//!   McAfee's trade reduction would be truthful but drops the marginal trade; we chose volume.
//!
//! Money: a bid holds `units × max price × hours` from the bidder's wallet when it is accepted;
//! at clearing the filled part is posted at the clearing price (`filled × price × hours`) and the
//! rest voided. All integer fen, checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::book::FieldError;

/// The highest price an order may name, fen per unit·hour (¥100,000).
pub const MAX_PRICE_FEN: u64 = 10_000_000;
/// The most units one order may name.
pub const MAX_UNITS: u64 = 1_000_000;
/// The longest window: a leap year of hours (包年).
pub const MAX_HOURS: u32 = 8784;
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Ask,
    Bid,
}

/// A capacity block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Product {
    /// `general`, `intelligent` or `super` (HPC).
    pub family: String,
    /// A device model of the catalogue, or `any`.
    pub model: String,
    /// A site, a hub or a green region.
    pub place: String,
    /// The window's first hour, ms since the epoch (UTC, a whole hour).
    pub start_ms: i64,
    pub hours: u32,
}

impl Product {
    /// `family/model/place/YYYY-MM-DDTHHZ/Nh`, e.g. `intelligent/h800/qingyang/2026-12-07T00Z/24h`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}/{}/{}h", self.family, self.model, self.place, hour_utc(self.start_ms), self.hours)
    }

    /// Reads a product id; each malformed part is named.
    pub fn parse(id: &str) -> Result<Product, FieldError> {
        let parts: Vec<&str> = id.split('/').collect();
        let [family, model, place, start, hours] = parts.as_slice() else {
            return Err(FieldError::new("product", format!("{id:?} is not family/model/place/YYYY-MM-DDTHHZ/Nh")));
        };
        let start_ms = parse_hour(start)
            .ok_or_else(|| FieldError::new("product", format!("{start:?} is not an hour like 2026-12-07T00Z")))?;
        let hours = hours
            .strip_suffix('h')
            .and_then(|h| h.parse::<u32>().ok())
            .ok_or_else(|| FieldError::new("product", format!("{hours:?} is not a number of hours like 24h")))?;
        let p = Product {
            family: (*family).to_string(),
            model: (*model).to_string(),
            place: (*place).to_string(),
            start_ms,
            hours,
        };
        p.check_shape()?;
        Ok(p)
    }

    /// Whether a pool of `family` and `model` is of this product's kind.
    pub fn covers(&self, family: &str, model: &str) -> bool {
        family == self.family && (self.model == "any" || model == self.model)
    }

    /// The window's end, ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms.saturating_add(i64::from(self.hours) * HOUR_MS)
    }

    /// A window that has not begun before this hour (`now_ms`'s).
    pub fn check_not_past(&self, now_ms: i64) -> Result<(), FieldError> {
        if self.start_ms < now_ms.div_euclid(HOUR_MS) * HOUR_MS {
            return Err(FieldError::new(
                "start",
                format!("the window starts at {}, in the past", hour_utc(self.start_ms)),
            ));
        }
        Ok(())
    }

    /// Names and hours within bounds (the places and models are the caller's to check).
    pub fn check_shape(&self) -> Result<(), FieldError> {
        let ok_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.')
        };
        if !["general", "intelligent", "super"].contains(&self.family.as_str()) {
            return Err(FieldError::new(
                "family",
                format!("{:?} is not general, intelligent or super (HPC)", self.family),
            ));
        }
        if !ok_name(&self.model) {
            return Err(FieldError::new("model", format!("{:?}: a catalogue model id or `any`", self.model)));
        }
        if !ok_name(&self.place) {
            return Err(FieldError::new("place", format!("{:?}: a site, cluster, hub or region id", self.place)));
        }
        if self.start_ms.rem_euclid(HOUR_MS) != 0 {
            return Err(FieldError::new("start", "a window starts on a whole UTC hour"));
        }
        if !(1..=MAX_HOURS).contains(&self.hours) {
            return Err(FieldError::new("hours", format!("{} is not 1 to {MAX_HOURS}", self.hours)));
        }
        Ok(())
    }
}

/// An order as the book keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub side: Side,
    pub owner: String,
    pub product: Product,
    pub units: u64,
    /// An ask's floor or a bid's maximum, fen per unit·hour.
    pub price_fen: u64,
    /// Arrival order (time priority).
    pub seq: u64,
}

impl Order {
    /// Units and price within bounds, the window not over: the checks every order passes.
    pub fn check(&self, now_ms: i64) -> Result<(), FieldError> {
        self.product.check_shape()?;
        check_units(self.units)?;
        if !(1..=MAX_PRICE_FEN).contains(&self.price_fen) {
            return Err(FieldError::new(
                "price_fen",
                format!("{} is not 1 to {MAX_PRICE_FEN} fen per unit·hour", self.price_fen),
            ));
        }
        self.product.check_not_past(now_ms)?;
        self.hold_fen().map(|_| ())
    }

    /// What a bid holds from its wallet: units × maximum price × hours (an ask holds nothing).
    pub fn hold_fen(&self) -> Result<u64, FieldError> {
        if self.side == Side::Ask {
            return Ok(0);
        }
        cost(self.units, self.price_fen, self.product.hours)
            .ok_or_else(|| FieldError::new("units", "units × price × hours does not fit in fen"))
    }
}

/// An order's or a purchase's units: 1 to `MAX_UNITS`.
pub fn check_units(units: u64) -> Result<(), FieldError> {
    if !(1..=MAX_UNITS).contains(&units) {
        return Err(FieldError::new("units", format!("{units} is not 1 to {MAX_UNITS}")));
    }
    Ok(())
}

/// `units × price × hours`, checked.
pub fn cost(units: u64, price_fen: u64, hours: u32) -> Option<u64> {
    units.checked_mul(price_fen)?.checked_mul(u64::from(hours))
}

/// Units of one bid bought from one ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub bid: u64,
    pub ask: u64,
    pub units: u64,
}

/// One product's clearing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clearing {
    pub product: Product,
    /// The uniform price, fen per unit·hour; `None` when nothing traded.
    pub price_fen: Option<u64>,
    pub units: u64,
    pub fills: Vec<Fill>,
}

/// Clears one product's orders (any order: they are ranked here).
pub fn clear(product: &Product, orders: &[&Order]) -> Clearing {
    let mut bids: Vec<&Order> = orders.iter().copied().filter(|o| o.side == Side::Bid).collect();
    let mut asks: Vec<&Order> = orders.iter().copied().filter(|o| o.side == Side::Ask).collect();
    bids.sort_by(|a, b| b.price_fen.cmp(&a.price_fen).then(a.seq.cmp(&b.seq)).then(a.id.cmp(&b.id)));
    asks.sort_by(|a, b| a.price_fen.cmp(&b.price_fen).then(a.seq.cmp(&b.seq)).then(a.id.cmp(&b.id)));
    let (mut i, mut j) = (0, 0);
    let (mut left_bid, mut left_ask) = (bids.first().map_or(0, |o| o.units), asks.first().map_or(0, |o| o.units));
    let mut fills = vec![];
    let mut last = None;
    let mut units = 0u64;
    while i < bids.len() && j < asks.len() && bids[i].price_fen >= asks[j].price_fen {
        let q = left_bid.min(left_ask);
        fills.push(Fill { bid: bids[i].id, ask: asks[j].id, units: q });
        units += q;
        last = Some((bids[i].price_fen, asks[j].price_fen));
        left_bid -= q;
        left_ask -= q;
        if left_bid == 0 {
            i += 1;
            left_bid = bids.get(i).map_or(0, |o| o.units);
        }
        if left_ask == 0 {
            j += 1;
            left_ask = asks.get(j).map_or(0, |o| o.units);
        }
    }
    // the midpoint of the last traded pair, rounded down: between them, as b >= a
    let price_fen = last.map(|(b, a)| a + (b - a) / 2);
    Clearing { product: product.clone(), price_fen, units, fills }
}

/// The open orders, by product.
#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    books: BTreeMap<Product, Vec<Order>>,
    by_id: BTreeMap<u64, Product>,
}

impl OrderBook {
    pub fn new() -> OrderBook {
        OrderBook::default()
    }

    /// Adds a checked order (its id unique).
    pub fn insert(&mut self, o: Order) -> Result<(), FieldError> {
        if self.by_id.contains_key(&o.id) {
            return Err(FieldError::new("id", format!("order {} is already in the book", o.id)));
        }
        self.by_id.insert(o.id, o.product.clone());
        self.books.entry(o.product.clone()).or_default().push(o);
        Ok(())
    }

    pub fn get(&self, id: u64) -> Option<&Order> {
        let p = self.by_id.get(&id)?;
        self.books.get(p)?.iter().find(|o| o.id == id)
    }

    /// Takes an order out (cancelled): `None` when it is not open.
    pub fn remove(&mut self, id: u64) -> Option<Order> {
        let p = self.by_id.remove(&id)?;
        let book = self.books.get_mut(&p)?;
        let at = book.iter().position(|o| o.id == id)?;
        let o = book.swap_remove(at);
        if book.is_empty() {
            self.books.remove(&p);
        }
        Some(o)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.books.values().flatten()
    }

    /// Units an owner offers in open asks of products overlapping `product`'s window at the
    /// same place, family and model (capacity checks count them).
    pub fn asked_overlapping(&self, owner: &str, product: &Product) -> u64 {
        self.books
            .iter()
            .filter(|(p, _)| {
                p.place == product.place
                    && p.family == product.family
                    && p.model == product.model
                    && p.start_ms < product.end_ms()
                    && product.start_ms < p.end_ms()
            })
            .flat_map(|(_, v)| v.iter())
            .filter(|o| o.side == Side::Ask && o.owner == owner)
            .map(|o| o.units)
            .sum()
    }

    /// Clears every product and empties the book: each product's result and its orders (a
    /// call auction: what did not trade leaves the book; a bid's hold is released).
    pub fn clear_all(&mut self) -> Vec<(Clearing, Vec<Order>)> {
        let books = std::mem::take(&mut self.books);
        self.by_id.clear();
        books
            .into_iter()
            .map(|(p, orders)| {
                let refs: Vec<&Order> = orders.iter().collect();
                let c = clear(&p, &refs);
                (c, orders)
            })
            .collect()
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHHZ` of the hour holding `ms`.
pub fn hour_utc(ms: i64) -> String {
    let (y, m, d) = civil(ms.div_euclid(86_400_000));
    let h = ms.rem_euclid(86_400_000) / HOUR_MS;
    format!("{y:04}-{m:02}-{d:02}T{h:02}Z")
}

/// Reads `YYYY-MM-DDTHHZ` (or `…THH:00Z`).
pub fn parse_hour(text: &str) -> Option<i64> {
    let rest = text.strip_suffix('Z')?;
    let rest = rest.strip_suffix(":00").unwrap_or(rest);
    let (date, hour) = rest.split_once('T')?;
    let parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = parts.as_slice() else { return None };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 || hour.len() != 2 {
        return None;
    }
    let ymd: (i64, u32, u32) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let hour: i64 = hour.parse().ok()?;
    let days = days_from_civil(ymd.0, ymd.1, ymd.2);
    // a date that does not exist (2026-02-30) does not come back the same
    if !(1..=12).contains(&ymd.1) || !(0..24).contains(&hour) || civil(days) != ymd {
        return None;
    }
    Some(days * 86_400_000 + hour * HOUR_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn product() -> Product {
        Product { family: "general".into(), model: "any".into(), place: "chengyu".into(), start_ms: 0, hours: 2 }
    }

    fn order(id: u64, side: Side, units: u64, price_fen: u64) -> Order {
        Order { id, side, owner: format!("o{id}"), product: product(), units, price_fen, seq: id }
    }

    #[test]
    fn hours_read_and_write_the_same() {
        for ms in [0, 1_796_515_200_000, 951_782_400_000 /* 2000-02-29 */, -3_600_000] {
            assert_eq!(parse_hour(&hour_utc(ms)), Some(ms), "{}", hour_utc(ms));
        }
        assert_eq!(hour_utc(1_796_515_200_000), "2026-12-06T00Z");
        for bad in ["2026-02-30T00Z", "2026-13-01T00Z", "2026-12-05T24Z", "2026-12-05T00", "26-12-05T00Z", "x"] {
            assert_eq!(parse_hour(bad), None, "{bad}");
        }
        let p = Product { start_ms: 1_796_515_200_000, ..product() };
        assert_eq!(p.id(), "general/any/chengyu/2026-12-06T00Z/2h");
        assert_eq!(Product::parse(&p.id()), Ok(p));
        assert_eq!(Product::parse("general/any/x/2026-12-05T00Z/0h").map_err(|e| e.field), Err("hours".into()));
        assert_eq!(Product::parse("gpu/any/x/2026-12-05T00Z/1h").map_err(|e| e.field), Err("family".into()));
    }

    #[test]
    fn a_worked_clearing() {
        // bids 10 × 120, 5 × 100, 5 × 80; asks 8 × 70, 6 × 90, 10 × 130
        let os = [
            order(1, Side::Bid, 10, 120),
            order(2, Side::Bid, 5, 100),
            order(3, Side::Bid, 5, 80),
            order(4, Side::Ask, 8, 70),
            order(5, Side::Ask, 6, 90),
            order(6, Side::Ask, 10, 130),
        ];
        let refs: Vec<&Order> = os.iter().collect();
        let c = clear(&product(), &refs);
        // 8 units 120/70, 2 units 120/90, 4 units 100/90; then bid 80 < ask 90 stops it
        assert_eq!(c.units, 14);
        assert_eq!(
            c.fills,
            vec![
                Fill { bid: 1, ask: 4, units: 8 },
                Fill { bid: 1, ask: 5, units: 2 },
                Fill { bid: 2, ask: 5, units: 4 }
            ]
        );
        assert_eq!(c.price_fen, Some(95), "midpoint of the last pair (100, 90)");
    }

    #[test]
    fn ties_go_to_the_earlier_order() {
        let os = [order(7, Side::Bid, 3, 100), order(2, Side::Bid, 3, 100), order(9, Side::Ask, 4, 50)];
        let refs: Vec<&Order> = os.iter().collect();
        let c = clear(&product(), &refs);
        assert_eq!(c.fills, vec![Fill { bid: 2, ask: 9, units: 3 }, Fill { bid: 7, ask: 9, units: 1 }]);
        assert_eq!(c.price_fen, Some(75));
    }

    #[test]
    fn bad_orders_are_named() {
        let now = 7_200_000;
        let mut o = order(1, Side::Bid, 0, 10);
        o.product.start_ms = now;
        assert_eq!(o.check(now).map_err(|e| e.field), Err("units".into()));
        o.units = 1;
        o.price_fen = MAX_PRICE_FEN + 1;
        assert_eq!(o.check(now).map_err(|e| e.field), Err("price_fen".into()));
        o.price_fen = 10;
        o.product.start_ms = 0;
        assert_eq!(o.check(now).map_err(|e| e.field), Err("start".into()));
        o.product.start_ms = now;
        assert_eq!(o.check(now), Ok(()));
        assert_eq!(o.hold_fen(), Ok(20));
    }

    fn orders() -> impl Strategy<Value = Vec<Order>> {
        proptest::collection::vec((any::<bool>(), 1u64..50, 1u64..200, 0u64..5), 0..40).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (bid, units, price, seq))| Order {
                    id: i as u64,
                    side: if bid { Side::Bid } else { Side::Ask },
                    owner: format!("o{i}"),
                    product: product(),
                    units,
                    price_fen: price,
                    seq,
                })
                .collect()
        })
    }

    proptest! {
        /// No trade below an ask's floor or above a bid's maximum; no order sells or buys more
        /// than it named; buyers pay what sellers get; the result does not depend on the order
        /// the orders arrive in the slice; no further trade was possible.
        #[test]
        fn clearing_is_rational_balanced_bounded_and_deterministic(os in orders(), rot in 0usize..40) {
            let refs: Vec<&Order> = os.iter().collect();
            let c = clear(&product(), &refs);
            let by_id: BTreeMap<u64, &Order> = os.iter().map(|o| (o.id, o)).collect();
            let mut filled: BTreeMap<u64, u64> = BTreeMap::new();
            let (mut paid, mut got) = (0u64, 0u64);
            for f in &c.fills {
                let p = c.price_fen.expect("a price when something traded");
                prop_assert!(by_id[&f.bid].price_fen >= p, "bid {} pays above its maximum", f.bid);
                prop_assert!(by_id[&f.ask].price_fen <= p, "ask {} paid below its floor", f.ask);
                prop_assert_eq!(by_id[&f.bid].side, Side::Bid);
                prop_assert_eq!(by_id[&f.ask].side, Side::Ask);
                *filled.entry(f.bid).or_default() += f.units;
                *filled.entry(f.ask).or_default() += f.units;
                paid += f.units * p;
                got += f.units * p;
            }
            prop_assert_eq!(paid, got);
            for (id, q) in &filled {
                prop_assert!(*q <= by_id[id].units, "order {} filled beyond its units", id);
            }
            prop_assert_eq!(c.units, c.fills.iter().map(|f| f.units).sum::<u64>());
            // what is left cannot trade: the best unfilled bid is below the best unfilled ask
            let open = |o: &&Order| filled.get(&o.id).copied().unwrap_or(0) < o.units;
            let best_bid = os.iter().filter(|o| o.side == Side::Bid).filter(open).map(|o| o.price_fen).max();
            let best_ask = os.iter().filter(|o| o.side == Side::Ask).filter(open).map(|o| o.price_fen).min();
            if let (Some(b), Some(a)) = (best_bid, best_ask) {
                prop_assert!(b < a, "a bid of {} and an ask of {} were left", b, a);
            }
            let mut shuffled = refs.clone();
            if !shuffled.is_empty() {
                let k = rot % shuffled.len();
                shuffled.rotate_left(k);
                shuffled.reverse();
            }
            prop_assert_eq!(clear(&product(), &shuffled), c);
        }
    }
}
