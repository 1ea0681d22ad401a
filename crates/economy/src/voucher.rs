//! Vouchers (R4): 算力券 pay a share of compute (and its energy), 运力券 a share of transport.
//!
//! A funder (a city's or province's body) creates a programme: a budget, a rate, a cap per
//! beneficiary per calendar year, who and what is eligible, and a validity window. It grants
//! vouchers to tenants out of the budget; a grant is non-transferable (it is the tenant's
//! account under the programme). At settlement a job's eligible cost is paid at the rate, up to
//! what the grant has left; at most one programme of each kind pays for one job (no double
//! subsidy). When the window closes, what grants have left goes back to the funder.

use serde::{Deserialize, Serialize};

use crate::book::FieldError;

/// What a voucher pays a share of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoucherKind {
    /// 算力券: compute and its energy.
    Compute,
    /// 运力券: data transfer.
    Transport,
}

/// A voucher programme, as a funder files it (`suanwang voucher programme create FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Programme {
    /// Lowercase letters, digits and `-`, 1–64 characters.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The funder it is paid from (defaults to the principal that creates it).
    #[serde(default)]
    pub funder: String,
    pub kind: VoucherKind,
    pub budget_fen: i64,
    /// Share of the eligible cost, basis points (1–10,000).
    pub rate_bp: u32,
    /// Most one tenant may be granted per calendar year (UTC).
    pub cap_per_beneficiary_fen: i64,
    /// Tenants that may hold it; empty: any.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Origin cities whose jobs it pays for; empty: any.
    #[serde(default)]
    pub cities: Vec<String>,
    /// Sites, hubs or regions whose work it pays for; empty: any.
    #[serde(default)]
    pub places: Vec<String>,
    /// Job kinds it pays for; empty: any.
    #[serde(default)]
    pub job_kinds: Vec<String>,
    /// Validity, epoch ms UTC: [from, to).
    pub valid_from_ms: i64,
    pub valid_to_ms: i64,
}

/// What eligibility is judged on: facts of the settled job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobFacts<'a> {
    pub tenant: &'a str,
    pub origin: &'a str,
    pub kind: &'a str,
    /// The site, its hub and its region.
    pub places: [&'a str; 3],
    /// When the job ended (epoch ms).
    pub at_ms: i64,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Programme {
    /// Checks every field; the error names the first bad one.
    pub fn check(&self) -> Result<(), FieldError> {
        if !valid_id(&self.id) {
            return Err(FieldError::new("id", "1-64 lowercase letters, digits or '-'"));
        }
        if self.budget_fen <= 0 {
            return Err(FieldError::new("budget_fen", "must be a positive number of fen"));
        }
        if self.rate_bp == 0 || self.rate_bp > 10_000 {
            return Err(FieldError::new(
                "rate_bp",
                format!("{} is not in 1..=10000 (a share of at most 100 %)", self.rate_bp),
            ));
        }
        if self.cap_per_beneficiary_fen <= 0 {
            return Err(FieldError::new("cap_per_beneficiary_fen", "must be a positive number of fen"));
        }
        if self.valid_to_ms <= self.valid_from_ms {
            return Err(FieldError::new("valid_to_ms", "the validity window is empty (valid_to_ms <= valid_from_ms)"));
        }
        Ok(())
    }

    pub fn valid_at(&self, at_ms: i64) -> bool {
        (self.valid_from_ms..self.valid_to_ms).contains(&at_ms)
    }

    /// Whether the programme pays for this job (the tenant holding a grant is checked apart).
    pub fn covers(&self, j: &JobFacts<'_>) -> bool {
        let any_or = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        self.valid_at(j.at_ms)
            && any_or(&self.tenants, j.tenant)
            && any_or(&self.cities, j.origin)
            && any_or(&self.job_kinds, j.kind)
            && (self.places.is_empty() || j.places.iter().any(|p| !p.is_empty() && self.places.iter().any(|x| x == p)))
    }

    /// What it pays of `eligible_fen` with `left_fen` left on the grant: the rate's share
    /// rounded down, at most what is left.
    pub fn pays(&self, eligible_fen: i64, left_fen: i64) -> i64 {
        let share = i128::from(eligible_fen.max(0)) * i128::from(self.rate_bp) / 10_000;
        i64::try_from(share).unwrap_or(i64::MAX).min(left_fen.max(0))
    }

    /// The calendar year (UTC) of an epoch-ms instant: caps are per beneficiary per year.
    pub fn year_of(at_ms: i64) -> i32 {
        // days since 1970-01-01 → civil year (Howard Hinnant's algorithm)
        let z = at_ms.div_euclid(86_400_000) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2)) as i32
    }
}

/// Of the programmes whose grants a tenant holds (programme, what its grant has left), the one
/// that pays for a job of `kind`: the covering one that pays most, ties to the smaller id. One
/// per kind: no double subsidy.
pub fn choose<'a>(
    held: &'a [(&'a Programme, i64)],
    kind: VoucherKind,
    job: &JobFacts<'_>,
    eligible_fen: i64,
) -> Option<(&'a Programme, i64)> {
    held.iter()
        .filter(|(p, left)| p.kind == kind && *left > 0 && p.covers(job))
        .map(|(p, left)| (*p, p.pays(eligible_fen, *left)))
        .filter(|(_, pay)| *pay > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.id.cmp(&a.0.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn programme() -> Programme {
        Programme {
            id: "qingyang-2026".into(),
            name: "庆阳东数西算算力券".into(),
            funder: "qingyang".into(),
            kind: VoucherKind::Compute,
            budget_fen: 10_000_000_000,
            rate_bp: 3_000,
            cap_per_beneficiary_fen: 200_000_000,
            tenants: vec![],
            cities: vec![],
            places: vec!["gansu".into()],
            job_kinds: vec![],
            valid_from_ms: 0,
            valid_to_ms: 1_000,
        }
    }

    #[test]
    fn programmes_check_their_fields_and_pay_their_rate() {
        let p = programme();
        assert_eq!(p.check(), Ok(()));
        let over = Programme { rate_bp: 10_001, ..p.clone() };
        assert_eq!(over.check().map_err(|e| e.field), Err("rate_bp".into()));
        let empty = Programme { valid_to_ms: 0, ..p.clone() };
        assert_eq!(empty.check().map_err(|e| e.field), Err("valid_to_ms".into()));
        assert_eq!(p.pays(1_001, 1_000), 300, "30 % of 1,001 rounds down");
        assert_eq!(p.pays(10_000, 100), 100, "never beyond what the grant has left");
        let job = JobFacts { tenant: "t", places: ["s", "gansu", "gansu"], at_ms: 10, ..JobFacts::default() };
        assert!(p.covers(&job));
        assert!(!p.covers(&JobFacts { at_ms: 1_000, ..job.clone() }), "the window is half-open");
        assert!(!p.covers(&JobFacts { places: ["s", "", "beijing"], ..job.clone() }));
        let better = Programme { id: "b".into(), rate_bp: 5_000, ..p.clone() };
        let held = [(&p, 1_000), (&better, 1_000)];
        assert_eq!(choose(&held, VoucherKind::Compute, &job, 1_000).map(|(p, f)| (p.id.as_str(), f)), Some(("b", 500)));
        assert_eq!(choose(&held, VoucherKind::Transport, &job, 1_000), None);
        assert_eq!(Programme::year_of(0), 1970);
        assert_eq!(Programme::year_of(1_798_761_600_000), 2027); // 2027-01-01T00:00Z
        assert_eq!(Programme::year_of(1_798_761_599_999), 2026);
    }
}
