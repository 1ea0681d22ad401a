//! Carbon-sink credits (issue 16, R5: 碳汇互认结算): verified credits that sites' or regions'
//! holders offer, in a second ledger whose unit is a gram of CO2e (the same double-entry
//! invariants as money). A tenant offsets a job's market-based carbon by buying credits of a
//! lot: money moves to the holder, the credits are retired against the job — once per job.

use serde::{Deserialize, Serialize};

use crate::book::FieldError;

/// A lot of credits (`data/economy/carbon-credits.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditLot {
    /// Unique, `[a-z0-9-]`.
    pub id: String,
    /// Who is paid for the credits (a provider's name).
    pub holder: String,
    /// The site, cluster, hub or green region the sink is in.
    pub place: String,
    /// The scheme that verified it (e.g. CCER).
    pub issuer: String,
    /// The year the reduction happened.
    pub vintage: u16,
    /// Tonnes of CO2e in the lot.
    pub tonnes: u64,
    /// Price, fen per tonne.
    pub price_fen_per_tonne: u64,
    /// Where the numbers come from, or `modelled: …`.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    lot: Vec<CreditLot>,
}

impl CreditLot {
    /// Grams in the lot.
    pub fn grams(&self) -> Option<u64> {
        self.tonnes.checked_mul(1_000_000)
    }

    /// The shipped lots (`data/economy/carbon-credits.toml`).
    pub fn reference() -> Vec<CreditLot> {
        // the shipped file is checked by a test; a broken one is a build defect
        parse(include_str!("../../../data/economy/carbon-credits.toml")).unwrap_or_default()
    }
}

/// Reads and checks a lots file: ids unique, every number within bounds, a source for each.
pub fn parse(text: &str) -> Result<Vec<CreditLot>, FieldError> {
    let f: File = toml::from_str(text).map_err(|e| FieldError::new("carbon-credits.toml", e.to_string()))?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, l) in f.lot.iter().enumerate() {
        let at = |k: &str| format!("lot[{i}].{k}");
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !ok(&l.id) || !seen.insert(l.id.clone()) {
            return Err(FieldError::new(at("id"), format!("{:?}: unique, lowercase letters, digits and -", l.id)));
        }
        if l.holder.is_empty() || l.place.is_empty() || l.issuer.is_empty() {
            return Err(FieldError::new(at("holder"), "holder, place and issuer must be named"));
        }
        if !(1..=1_000_000_000).contains(&l.tonnes) {
            return Err(FieldError::new(at("tonnes"), "1 to 1,000,000,000"));
        }
        if !(1..=100_000_000).contains(&l.price_fen_per_tonne) {
            return Err(FieldError::new(at("price_fen_per_tonne"), "1 to 100,000,000 fen"));
        }
        if !(1990..=2100).contains(&l.vintage) {
            return Err(FieldError::new(at("vintage"), "a year"));
        }
        if l.source.trim().is_empty() {
            return Err(FieldError::new(at("source"), "say where the lot comes from, or `modelled: why`"));
        }
    }
    Ok(f.lot)
}

/// Grams of CO2e from kilograms, rounded half up; `None` for what is not a finite, non-negative
/// amount that fits.
pub fn grams_of(kg: f64) -> Option<u64> {
    let g = (kg * 1000.0).round();
    (kg.is_finite() && kg >= 0.0 && g < 9.0e15).then_some(g as u64)
}

/// What `grams` of a lot cost: `grams × price per tonne / 1,000,000`, rounded up (a seller is
/// never paid less than its price), checked.
pub fn price_fen(grams: u64, price_fen_per_tonne: u64) -> Option<u64> {
    let v = u128::from(grams).checked_mul(u128::from(price_fen_per_tonne))?;
    u64::try_from(v.div_ceil(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_lots_parse_and_prices_round_up() {
        let lots = parse(include_str!("../../../data/economy/carbon-credits.toml")).expect("lots");
        assert!(!lots.is_empty());
        assert_eq!(CreditLot::reference(), lots);
        assert_eq!(price_fen(1, 80_00), Some(1), "a gram at ¥80/t costs at least a fen");
        assert_eq!(price_fen(1_000_000, 80_00), Some(80_00));
        assert_eq!(grams_of(0.4996), Some(500));
        assert_eq!(grams_of(-1.0), None);
        assert_eq!(grams_of(f64::NAN), None);
        let bad = "[[lot]]\nid = \"a\"\nholder = \"h\"\nplace = \"p\"\nissuer = \"CCER\"\nvintage = 2024\ntonnes = 0\nprice_fen_per_tonne = 1\nsource = \"x\"\n";
        assert_eq!(parse(bad).map_err(|e| e.field), Err("lot[0].tonnes".into()));
    }
}
