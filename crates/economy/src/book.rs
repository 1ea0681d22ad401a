//! The price book's economy terms, bills and the revenue split (R4).
//!
//! Rounding (one rule, stated once): the meter's compute, energy and transfer amounts are
//! already whole fen (the scheduler rounds each half up); the platform fee is
//! `subtotal × fee_bp / 10,000` rounded half up; a voucher pays `eligible × rate_bp / 10,000`
//! rounded **down** (a subsidy never exceeds its rate), capped by what its grant has left. All in
//! integers with checked arithmetic: an amount that does not fit is an error, never wrapped.

use serde::{Deserialize, Serialize};

/// A precise error naming the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), reason: reason.into() }
    }
}

/// `data/economy/prices.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceBook {
    pub version: String,
    pub currency: String,
    pub platform: Platform,
    pub reserved: Reserved,
    pub spot: Spot,
    pub parties: Parties,
    /// The market's terms (issue 16); the defaults when the file has no `[market]`.
    #[serde(default)]
    pub market: MarketTerms,
}

/// `[market]`: how often the call auctions clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketTerms {
    /// Seconds between clearings (every product's call auction), 1 to 86,400.
    pub clearing_period_s: u32,
}

impl Default for MarketTerms {
    fn default() -> Self {
        MarketTerms { clearing_period_s: 60 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub fee_bp: u32,
    pub split_rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserved {
    pub discount_bp: u32,
    pub min_hours: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spot {
    pub floor_bp: u32,
}

impl Spot {
    /// The spot price of `on_demand` (per unit-hour, or a whole run's compute: the formula is
    /// linear in it) on a pool `busy / total` units used: on-demand × (floor + (1 − floor) × u²),
    /// rounded half up.
    pub fn price_fen(&self, on_demand: i64, busy: u64, total: u64) -> i64 {
        let total = i128::from(total.max(1));
        let busy = i128::from(busy).min(total);
        let floor = i128::from(self.floor_bp.min(10_000));
        // on_demand × (floor·T² + (10⁴ − floor)·B²) / (10⁴·T²)
        let num = i128::from(on_demand.max(0)) * (floor * total * total + (10_000 - floor) * busy * busy);
        i64::try_from(round_half_up(num, 10_000 * total * total)).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parties {
    pub reference_provider: String,
    pub backbone_carrier: String,
    pub access_carrier: String,
    pub express_carrier: String,
}

/// The revenue-sharing rules this code knows.
pub const SPLIT_RULES: &[&str] = &["v1"];

impl PriceBook {
    /// Parses and checks `prices.toml`.
    pub fn parse(text: &str) -> Result<PriceBook, FieldError> {
        let book: PriceBook = toml::from_str(text).map_err(|e| FieldError::new("prices.toml", e.to_string()))?;
        book.check()?;
        Ok(book)
    }

    /// The book shipped in `data/economy/prices.toml`.
    pub fn reference() -> PriceBook {
        // the shipped file is checked by a test; a broken one is a build defect
        PriceBook::parse(include_str!("../../../data/economy/prices.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.currency != "CNY" {
            return Err(FieldError::new(
                "currency",
                format!("{:?} is not supported: amounts are CNY fen", self.currency),
            ));
        }
        if self.version.trim().is_empty() {
            return Err(FieldError::new("version", "must not be empty"));
        }
        for (field, bp) in [
            ("platform.fee_bp", self.platform.fee_bp),
            ("reserved.discount_bp", self.reserved.discount_bp),
            ("spot.floor_bp", self.spot.floor_bp),
        ] {
            if bp > 10_000 {
                return Err(FieldError::new(field, format!("{bp} basis points is above 100 %")));
            }
        }
        if !(1..=86_400).contains(&self.market.clearing_period_s) {
            return Err(FieldError::new(
                "market.clearing_period_s",
                format!("{} is not 1 to 86,400 seconds", self.market.clearing_period_s),
            ));
        }
        if !SPLIT_RULES.contains(&self.platform.split_rule.as_str()) {
            return Err(FieldError::new(
                "platform.split_rule",
                format!("{:?} is unknown; known: {}", self.platform.split_rule, SPLIT_RULES.join(", ")),
            ));
        }
        Ok(())
    }

    /// The reserved price of `units` of a pool at `on_demand` fen per unit-hour held for
    /// `hours` (包年包月): on-demand less the discount, rounded half up.
    pub fn reserved_fen(&self, on_demand: i64, units: u64, hours: u64) -> Result<i64, FieldError> {
        if hours < u64::from(self.reserved.min_hours) {
            return Err(FieldError::new(
                "hours",
                format!("a reservation holds at least {} hours", self.reserved.min_hours),
            ));
        }
        let gross = i128::from(on_demand) * i128::from(units) * i128::from(hours);
        let net = round_half_up(gross * i128::from(10_000 - self.reserved.discount_bp), 10_000);
        i64::try_from(net).map_err(|_| FieldError::new("units", "the price does not fit in fen"))
    }

    /// The spot price per unit-hour of a pool at `on_demand` whose utilisation is
    /// `busy / total` units: on-demand × (floor + (1 − floor) × u²), rounded half up.
    pub fn spot_fen(&self, on_demand: i64, busy: u64, total: u64) -> i64 {
        self.spot.price_fen(on_demand, busy, total)
    }

    /// The provider a reference site in `cluster` is paid to.
    pub fn reference_provider(&self, cluster: &str) -> String {
        self.parties.reference_provider.replace("{cluster}", cluster)
    }
}

/// `n / d` rounded half up (d > 0, n ≥ 0).
pub fn round_half_up(n: i128, d: i128) -> i128 {
    (2 * n + d).div_euclid(2 * d)
}

/// What a job used, as the meter has it (money already priced in whole fen).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub ucu_hours: f64,
    pub energy_kwh: f64,
    pub carbon_kg: f64,
    pub compute_fen: i64,
    pub energy_fen: i64,
    pub transfer_fen: i64,
    pub transfer_gb: f64,
    /// `network`, `elastic`, `bulk`, `express`, or none when no data moved.
    pub transfer_mode: Option<String>,
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    /// `compute`, `energy`, `transfer`, `platform_fee`, `voucher`.
    pub kind: String,
    pub description: String,
    pub quantity: f64,
    pub unit: String,
    pub amount_fen: i64,
}

/// A job's bill: line items, their total, what vouchers paid and what the tenant pays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bill {
    pub price_book: String,
    pub lines: Vec<LineItem>,
    pub subtotal_fen: i64,
    pub platform_fee_fen: i64,
    pub total_fen: i64,
    pub voucher_fen: i64,
    pub tenant_fen: i64,
}

/// Who is owed money from a paid job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Payee {
    Provider(String),
    Carrier(String),
    Platform,
}

/// The revenue split of a bill: each payee and its share (they add up to the total).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub rule: String,
    pub shares: Vec<(Payee, i64)>,
}

fn overflow(field: &str) -> FieldError {
    FieldError::new(field, "the amount does not fit in fen")
}

impl PriceBook {
    /// What [`PriceBook::bill`] totals — subtotal, platform fee, total — without writing its
    /// lines: the price a job's hold is placed on, once per admitted job.
    pub fn total_fen(&self, u: &Usage) -> Result<i64, FieldError> {
        self.totals(u).map(|(_, _, total)| total)
    }

    fn totals(&self, u: &Usage) -> Result<(i64, i64, i64), FieldError> {
        for (field, v) in
            [("compute_fen", u.compute_fen), ("energy_fen", u.energy_fen), ("transfer_fen", u.transfer_fen)]
        {
            if v < 0 {
                return Err(FieldError::new(field, "must not be negative"));
            }
        }
        let subtotal = u
            .compute_fen
            .checked_add(u.energy_fen)
            .and_then(|s| s.checked_add(u.transfer_fen))
            .ok_or_else(|| overflow("subtotal_fen"))?;
        let fee = i64::try_from(round_half_up(i128::from(subtotal) * i128::from(self.platform.fee_bp), 10_000))
            .map_err(|_| overflow("platform_fee_fen"))?;
        let total = subtotal.checked_add(fee).ok_or_else(|| overflow("total_fen"))?;
        Ok((subtotal, fee, total))
    }

    /// The bill of `usage` before vouchers: compute, energy, transfer by mode, platform fee.
    pub fn bill(&self, u: &Usage) -> Result<Bill, FieldError> {
        let (subtotal, fee, total) = self.totals(u)?;
        let mut lines = vec![
            LineItem {
                kind: "compute".into(),
                description: "unified compute delivered".into(),
                quantity: u.ucu_hours,
                unit: "ucu·h".into(),
                amount_fen: u.compute_fen,
            },
            LineItem {
                kind: "energy".into(),
                description: "facility energy at the site's time-of-use tariff".into(),
                quantity: u.energy_kwh,
                unit: "kWh".into(),
                amount_fen: u.energy_fen,
            },
        ];
        if let Some(mode) = &u.transfer_mode {
            lines.push(LineItem {
                kind: "transfer".into(),
                description: format!("input data moved by {mode}"),
                quantity: u.transfer_gb,
                unit: "GB".into(),
                amount_fen: u.transfer_fen,
            });
        }
        lines.push(LineItem {
            kind: "platform_fee".into(),
            description: format!("platform fee {}.{:02} %", self.platform.fee_bp / 100, self.platform.fee_bp % 100),
            quantity: subtotal as f64,
            unit: "fen".into(),
            amount_fen: fee,
        });
        Ok(Bill {
            price_book: self.version.clone(),
            lines,
            subtotal_fen: subtotal,
            platform_fee_fen: fee,
            total_fen: total,
            voucher_fen: 0,
            tenant_fen: total,
        })
    }

    /// The split of a bill under the book's rule: the provider gets compute and energy, the
    /// carrier transfer, the platform its fee (rule `v1`). Zero shares are left out.
    pub fn split(&self, bill: &Bill, u: &Usage, provider: &str, carrier: Option<&str>) -> Split {
        let mut shares = vec![];
        let provider_fen = u.compute_fen + u.energy_fen; // checked in `bill`
        if provider_fen > 0 {
            shares.push((Payee::Provider(provider.to_string()), provider_fen));
        }
        if u.transfer_fen > 0 {
            let c = carrier.unwrap_or(&self.parties.backbone_carrier);
            shares.push((Payee::Carrier(c.to_string()), u.transfer_fen));
        }
        if bill.platform_fee_fen > 0 {
            shares.push((Payee::Platform, bill.platform_fee_fen));
        }
        Split { rule: self.platform.split_rule.clone(), shares }
    }
}

impl Bill {
    /// Adds what vouchers paid: a `voucher` line per programme, and the tenant's part lowered.
    pub fn with_vouchers(mut self, paid: &[(String, i64)]) -> Result<Bill, FieldError> {
        for (programme, fen) in paid.iter().filter(|(_, f)| *f > 0) {
            self.voucher_fen = self.voucher_fen.checked_add(*fen).ok_or_else(|| overflow("voucher_fen"))?;
            self.lines.push(LineItem {
                kind: "voucher".into(),
                description: format!("paid by voucher programme {programme}"),
                quantity: 1.0,
                unit: "voucher".into(),
                amount_fen: -fen,
            });
        }
        if self.voucher_fen > self.total_fen {
            return Err(FieldError::new("voucher_fen", "vouchers cannot pay more than the bill"));
        }
        self.tenant_fen = self.total_fen - self.voucher_fen;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_book_parses_and_bad_books_name_the_field() {
        let b = PriceBook::reference();
        assert_eq!(b.platform.fee_bp, 300);
        let bad = include_str!("../../../data/economy/prices.toml").replace("fee_bp = 300", "fee_bp = 10001");
        assert_eq!(PriceBook::parse(&bad).map_err(|e| e.field), Err("platform.fee_bp".to_string()));
        let usd = include_str!("../../../data/economy/prices.toml").replace("\"CNY\"", "\"USD\"");
        assert_eq!(PriceBook::parse(&usd).map_err(|e| e.field), Err("currency".to_string()));
    }

    #[test]
    fn a_bill_adds_up_and_rounds_the_fee_half_up() {
        let b = PriceBook::reference();
        let u = Usage {
            compute_fen: 1_000,
            energy_fen: 250,
            transfer_fen: 50,
            transfer_mode: Some("network".into()),
            ..Usage::default()
        };
        let bill = b.bill(&u).expect("bill");
        // 3 % of 1,300 = 39
        assert_eq!((bill.subtotal_fen, bill.platform_fee_fen, bill.total_fen), (1_300, 39, 1_339));
        assert_eq!(b.total_fen(&u), Ok(1_339), "the hold's price is the bill's total");
        assert_eq!(bill.lines.iter().map(|l| l.amount_fen).sum::<i64>(), bill.total_fen);
        let odd = Usage { compute_fen: 50, ..Usage::default() };
        assert_eq!(b.bill(&odd).expect("bill").platform_fee_fen, 2, "1.5 rounds up to 2");
        let split = b.split(&bill, &u, "idc-x", None);
        assert_eq!(split.shares.iter().map(|s| s.1).sum::<i64>(), bill.total_fen);
        let paid = bill.clone().with_vouchers(&[("p".into(), 400)]).expect("voucher");
        assert_eq!((paid.voucher_fen, paid.tenant_fen), (400, 939));
        assert!(b.bill(&Usage { compute_fen: -1, ..Usage::default() }).is_err());
        assert!(b.bill(&Usage { compute_fen: i64::MAX, energy_fen: 1, ..Usage::default() }).is_err());
    }

    #[test]
    fn spot_follows_utilisation_and_reserved_is_discounted() {
        let b = PriceBook::reference();
        assert_eq!(b.spot_fen(1_000, 0, 10), 350);
        assert_eq!(b.spot_fen(1_000, 10, 10), 1_000);
        assert!(b.spot_fen(1_000, 5, 10) > 350 && b.spot_fen(1_000, 5, 10) < 1_000);
        assert_eq!(b.reserved_fen(100, 2, 720), Ok(93_600));
        assert!(b.reserved_fen(100, 2, 10).is_err());
    }
}
