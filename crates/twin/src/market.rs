//! The twin runs the market (issue 16 item 8, R4): the replay's completed work priced two ways
//! — at the posted prices, and by call auctions — side by side.
//!
//! A product is one site's capacity of one family for one day, in unit·hours. **Asks**: each
//! site offers the unit·hours its pools of the family leave free of the background load that
//! day, at a floor between its cost — energy at the site's mean tariff (power × PUE) plus
//! `CAPITAL_SHARE` of its posted non-energy price — and its list price (energy plus the posted
//! price), by its utilisation: `cost + u × (list − cost)`, u its background share (an idle site
//! sells near cost, a busy one near list). Welfare counts the cost, not the floor. **Bids**: each completed job bids its
//! unit·hours at its value per unit·hour — its budget when it has one, else the site's list
//! price × a multiplier drawn per job from [`VALUE_MIN`, `VALUE_MAX`] (seeded by the job's id;
//! the trace says nothing of what work is worth to its owner: modelled). Each product clears as
//! the control plane's auctions do (`suanwang_economy::market`, a uniform-price double auction).
//!
//! Under posted prices a job buys when its value is at least the posted price; under auctions
//! when its bid is filled. Both report unit·hours demanded and matched, unmatched demand, what
//! tenants paid, what providers received, utilisation (matched ÷ offered) and welfare (Σ
//! bidders' value − sellers' cost over what traded). The placements are the scheduler's in
//! both (it places by posted prices): the comparison is of prices and who is served, not of a
//! re-run schedule.

use std::collections::BTreeMap;

use serde::Serialize;
use suanwang_core::{Family, Network};
use suanwang_economy::market::{Order, OrderBook, Product, Side};
use suanwang_engine::Outcome;

/// Share of the posted non-energy price that is the provider's cost (capital, staff): modelled.
pub const CAPITAL_SHARE: f64 = 0.5;
/// Bidders' value per unit·hour as a multiple of the posted price, for jobs without a budget:
/// uniform over this range (modelled).
pub const VALUE_MIN: f64 = 0.5;
pub const VALUE_MAX: f64 = 2.5;

/// One pricing's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PricingKpis {
    /// `posted` or `auction`.
    pub pricing: &'static str,
    pub products: u64,
    pub products_traded: u64,
    pub unit_hours_offered: f64,
    pub unit_hours_demanded: f64,
    pub unit_hours_matched: f64,
    pub unmatched_unit_hours: f64,
    /// Jobs not (fully) served at the price.
    pub unmatched_jobs: u64,
    /// Matched ÷ offered.
    pub utilisation: f64,
    pub tenants_cost_fen: i64,
    pub providers_revenue_fen: i64,
    /// Σ (bidder's value − seller's cost) over the unit·hours that traded, fen.
    pub welfare_fen: i64,
    /// Mean price paid per unit·hour.
    pub mean_price_fen: f64,
}

/// A job's demand.
#[derive(Debug, Clone)]
struct Demand {
    id: u64,
    /// Whole unit·hours (rounded up), and what the job paid at posted prices.
    unit_hours: u64,
    paid: f64,
    /// Value (or, negative, minus its multiple of the site's list price) and posted price, fen
    /// per unit·hour.
    value: f64,
    posted: f64,
}

/// What the replay's completed jobs asked for, by product (site, family, day).
#[derive(Debug, Default)]
pub struct MarketSim {
    demand: BTreeMap<(usize, usize, i64), Vec<Demand>>,
}

/// A number in [0, 1) from a job id (SplitMix64): the same job always draws the same value.
fn unit(id: u64) -> f64 {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

const DAY_MS: i64 = 86_400_000;

impl MarketSim {
    /// Records a completed job at site index `site`; `budget_fen` its budget, if any.
    pub fn record(&mut self, o: &Outcome, site: usize, budget_fen: Option<i64>) {
        let run_h = (o.finished_at.0 - o.started_at.0).max(0) as f64 / 3_600_000.0;
        let exact = (f64::from(o.units) * run_h).max(1e-6);
        // the book trades whole unit·hours: a job's quantity is rounded up, its prices are per
        // unit·hour it really used
        let unit_hours = exact.ceil().max(1.0);
        let paid = (o.meter.compute_fen + o.meter.energy_fen).max(0) as f64;
        let posted = paid / exact;
        // a budget says what the work is worth; else a multiple of the site's list price (set
        // in `finish`), negative here
        let value = match budget_fen {
            Some(b) if b > 0 => b as f64 / exact,
            _ => -(VALUE_MIN + (VALUE_MAX - VALUE_MIN) * unit(o.id)),
        };
        let family = Family::ALL.iter().position(|f| *f == o.family).unwrap_or(0);
        let day = o.started_at.0.div_euclid(DAY_MS);
        self.demand.entry((site, family, day)).or_default().push(Demand {
            id: o.id,
            unit_hours: unit_hours as u64,
            paid,
            value,
            posted,
        });
    }

    /// Both pricings over what was recorded; `background(site)` is the site's mean background
    /// share of its capacity.
    pub fn finish(&self, net: &Network, background: &dyn Fn(&suanwang_core::network::Site) -> f64) -> Vec<PricingKpis> {
        let mut posted = empty("posted");
        let mut auction = empty("auction");
        let mut book = OrderBook::new();
        // per order id: what a bid's units are worth to the bidder, an ask's cost the seller (the
        // welfare of a fill is the one less the other); an order's id is its index + 1
        let mut worth: Vec<f64> = vec![];
        let mut post = |book: &mut OrderBook, side, owner: String, product: &Product, units, price: f64, w| {
            worth.push(w);
            let id = worth.len() as u64;
            let price_fen = price.max(1.0) as u64;
            // ids are fresh: the insert cannot fail
            let _ = book.insert(Order { id, side, owner, product: product.clone(), units, price_fen, seq: id });
        };
        for ((si, fi, day), jobs) in &self.demand {
            let site = &net.sites[*si];
            let family = Family::ALL[*fi];
            let u = background(site).clamp(0.0, 1.0);
            let tariff = net.tariff(&site.tariff).map_or(0.0, suanwang_core::Tariff::mean_fen_per_mwh);
            let pools: Vec<_> = site.pools.iter().filter(|p| p.family == family).collect();
            let units: u64 = pools.iter().map(|p| p.count).sum();
            let offered = (units as f64 * 24.0 * (1.0 - u)).floor().max(0.0) as u64;
            // the seller's cost and list price per unit·hour: its dearest pool of the family
            let energy = |p: &suanwang_core::network::Pool| p.power_w_per_unit / 1000.0 * site.pue * tariff / 1000.0;
            let cost =
                pools.iter().map(|p| energy(p) + CAPITAL_SHARE * p.price_fen_per_unit_hour as f64).fold(0.0, f64::max);
            let list = pools.iter().map(|p| energy(p) + p.price_fen_per_unit_hour as f64).fold(0.0, f64::max);
            // an idle site asks its cost, a full one its list price
            let floor = cost + u * (list - cost).max(0.0);
            let value = |d: &Demand| if d.value < 0.0 { -d.value * list } else { d.value };
            for side in [&mut posted, &mut auction] {
                side.products += 1;
                side.unit_hours_offered += offered as f64;
            }
            // posted prices: a job buys when it values the capacity at least at the price
            let mut traded = false;
            for d in jobs {
                posted.unit_hours_demanded += d.unit_hours as f64;
                let v = value(d);
                if v >= d.posted {
                    traded = true;
                    let uh = d.unit_hours as f64;
                    posted.unit_hours_matched += uh;
                    let paid = d.paid.round() as i64;
                    posted.tenants_cost_fen += paid;
                    posted.providers_revenue_fen += paid;
                    posted.welfare_fen += ((v - cost) * uh).round() as i64;
                } else {
                    posted.unmatched_jobs += 1;
                    posted.unmatched_unit_hours += d.unit_hours as f64;
                }
            }
            posted.products_traded += u64::from(traded);
            // auctions: the site's ask and the jobs' bids for the product
            let product = Product {
                family: family.as_str().to_string(),
                model: "any".into(),
                place: site.id.clone(),
                start_ms: day * DAY_MS,
                hours: 24,
            };
            if offered > 0 {
                post(&mut book, Side::Ask, site.id.clone(), &product, offered, floor.ceil(), cost);
            }
            for d in jobs {
                auction.unit_hours_demanded += d.unit_hours as f64;
                let v = value(d);
                post(&mut book, Side::Bid, d.id.to_string(), &product, d.unit_hours, v.floor(), v);
            }
        }
        let mut paid_units = 0.0;
        for (c, orders) in book.clear_all() {
            let mut filled: BTreeMap<u64, u64> = BTreeMap::new();
            if let Some(price) = c.price_fen {
                auction.products_traded += 1;
                for f in &c.fills {
                    *filled.entry(f.bid).or_default() += f.units;
                    let uh = f.units as f64;
                    auction.unit_hours_matched += uh;
                    paid_units += uh;
                    let paid = i64::try_from(price.saturating_mul(f.units)).unwrap_or(i64::MAX);
                    auction.tenants_cost_fen = auction.tenants_cost_fen.saturating_add(paid);
                    auction.providers_revenue_fen = auction.providers_revenue_fen.saturating_add(paid);
                    let at = |id: u64| {
                        usize::try_from(id).ok().and_then(|i| worth.get(i.checked_sub(1)?)).copied().unwrap_or(0.0)
                    };
                    let (value, cost) = (at(f.bid), at(f.ask));
                    auction.welfare_fen += ((value - cost) * uh).round() as i64;
                }
            }
            for o in orders.iter().filter(|o| o.side == Side::Bid) {
                let got = filled.get(&o.id).copied().unwrap_or(0);
                if got < o.units {
                    auction.unmatched_jobs += 1;
                    auction.unmatched_unit_hours += (o.units - got) as f64;
                }
            }
        }
        for k in [&mut posted, &mut auction] {
            k.utilisation = if k.unit_hours_offered > 0.0 { k.unit_hours_matched / k.unit_hours_offered } else { 0.0 };
        }
        posted.mean_price_fen = if posted.unit_hours_matched > 0.0 {
            posted.tenants_cost_fen as f64 / posted.unit_hours_matched
        } else {
            0.0
        };
        auction.mean_price_fen = if paid_units > 0.0 { auction.tenants_cost_fen as f64 / paid_units } else { 0.0 };
        vec![posted, auction]
    }
}

fn empty(pricing: &'static str) -> PricingKpis {
    PricingKpis {
        pricing,
        products: 0,
        products_traded: 0,
        unit_hours_offered: 0.0,
        unit_hours_demanded: 0.0,
        unit_hours_matched: 0.0,
        unmatched_unit_hours: 0.0,
        unmatched_jobs: 0,
        utilisation: 0.0,
        tenants_cost_fen: 0,
        providers_revenue_fen: 0,
        welfare_fen: 0,
        mean_price_fen: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::unit;

    #[test]
    fn values_are_spread_and_repeatable() {
        let draws: Vec<f64> = (0..10_000).map(unit).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(unit(42).to_bits(), unit(42).to_bits());
    }
}
