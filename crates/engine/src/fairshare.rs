//! Fair share (R3): each tenant's recent use of the network, decayed with a half-life, and the
//! factor it gives (Slurm's classic fair-share formula, `F = 2^(−U/S)`).
//!
//! `U` is the tenant's share of all tenants' decayed use and `S` its share of the network —
//! equal among the tenants with recent use (and the one asking). Since every tenant's use decays
//! at the same rate, only the ratio matters: use is kept scaled by `2^((t − base)/half-life)`
//! at the time `t` it is charged, so a charge is O(1) and older use weighs less without ever
//! touching the other tenants; `base` moves forward (one pass over the tenants) when the scale
//! would grow past 2^64.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use suanwang_core::Ts;
use suanwang_core::network::FairSharePolicy;

/// Scale exponents above this move the base forward (2^64 keeps f64 sums exact enough).
const REBASE_AT: f64 = 64.0;
/// Use below this share of the total (after decay) no longer counts a tenant as active.
const NEGLIGIBLE: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FairShare {
    half_life_ms: f64,
    base_ms: i64,
    /// Decayed use in ucu·h × 2^((charge time − base) / half-life), per tenant.
    scaled: BTreeMap<String, f64>,
    total: f64,
}

impl FairShare {
    pub fn new(policy: &FairSharePolicy, now: Ts) -> FairShare {
        let half_life_ms = if policy.half_life_h.is_finite() && policy.half_life_h > 0.0 {
            policy.half_life_h * 3_600_000.0
        } else {
            FairSharePolicy::default().half_life_h * 3_600_000.0
        };
        FairShare { half_life_ms, base_ms: now.0, scaled: BTreeMap::new(), total: 0.0 }
    }

    /// Charges `ucu_hours` of use to `tenant` at `now` (negative, NaN or infinite use is ignored:
    /// a meter is never negative, and nothing a caller passes may poison the table).
    pub fn charge(&mut self, tenant: &str, ucu_hours: f64, now: Ts) {
        if !(ucu_hours.is_finite() && ucu_hours > 0.0) {
            return;
        }
        let mut exp = (now.0 - self.base_ms) as f64 / self.half_life_ms;
        if exp > REBASE_AT {
            let k = 2f64.powf(-exp);
            for v in self.scaled.values_mut() {
                *v *= k;
            }
            self.scaled.retain(|_, v| *v > 0.0);
            self.total *= k;
            self.base_ms = now.0;
            exp = 0.0;
        }
        let add = ucu_hours * 2f64.powf(exp.max(-REBASE_AT));
        *self.scaled.entry(tenant.to_string()).or_insert(0.0) += add;
        self.total += add;
    }

    /// The tenants with recent use.
    fn active(&self) -> usize {
        let floor = self.total * NEGLIGIBLE;
        self.scaled.values().filter(|v| **v > floor).count()
    }

    /// `tenant`'s share of recent use (0–1) and of the network (1 / active tenants, counting
    /// `tenant` itself).
    pub fn shares(&self, tenant: &str) -> (f64, f64) {
        self.shares_with(tenant, self.active())
    }

    /// `shares` with the count of active tenants given.
    fn shares_with(&self, tenant: &str, active: usize) -> (f64, f64) {
        if self.total <= 0.0 {
            return (0.0, 1.0);
        }
        let mine = self.scaled.get(tenant).copied().unwrap_or(0.0);
        let n = active + usize::from(mine <= self.total * NEGLIGIBLE);
        ((mine / self.total).clamp(0.0, 1.0), 1.0 / n.max(1) as f64)
    }

    /// `F = 2^(−U/S)`: 1 with no recent use, ½ at exactly its share, towards 0 above it.
    pub fn factor(&self, tenant: &str) -> f64 {
        self.ranker(&FairSharePolicy::default()).factor(tenant)
    }

    /// The effective priority of a job of `priority` (0–9) from `tenant`.
    pub fn effective(&self, policy: &FairSharePolicy, priority: u8, tenant: &str) -> Priority {
        self.ranker(policy).effective(priority, tenant)
    }

    /// Ranks many jobs at one instant: the count of active tenants taken once, each tenant's
    /// factor computed once.
    pub fn ranker<'a>(&'a self, policy: &'a FairSharePolicy) -> Ranker<'a> {
        Ranker { table: self, policy, active: self.active(), factors: std::cell::RefCell::default() }
    }
}

/// See [`FairShare::ranker`].
#[derive(Debug)]
pub struct Ranker<'a> {
    table: &'a FairShare,
    policy: &'a FairSharePolicy,
    active: usize,
    factors: std::cell::RefCell<crate::idhash::IdMap<&'a str, f64>>,
}

impl<'a> Ranker<'a> {
    fn factor(&self, tenant: &'a str) -> f64 {
        if let Some(f) = self.factors.borrow().get(tenant) {
            return *f;
        }
        let (u, s) = self.table.shares_with(tenant, self.active);
        let f = 2f64.powf(-u / s);
        self.factors.borrow_mut().insert(tenant, f);
        f
    }

    /// The effective priority of a job of `priority` (0–9) from `tenant`.
    pub fn effective(&self, priority: u8, tenant: &'a str) -> Priority {
        let factor = self.factor(tenant);
        let value =
            self.policy.priority_weight * f64::from(priority.min(9)) / 9.0 + self.policy.fairshare_weight * factor;
        Priority { priority, factor, value }
    }
}

/// A job's effective priority, with the factors it was made of (for the reasons given).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priority {
    pub priority: u8,
    pub factor: f64,
    pub value: f64,
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "priority {}, fair-share factor {:.3}, effective {:.3}", self.priority, self.factor, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn table() -> FairShare {
        FairShare::new(&FairSharePolicy { half_life_h: 10.0, ..FairSharePolicy::default() }, Ts(0))
    }

    #[test]
    fn the_factor_is_one_unused_a_half_at_the_share_and_falls_above_it() {
        let mut f = table();
        assert!((f.factor("a") - 1.0).abs() < 1e-15);
        f.charge("a", 10.0, Ts(0));
        f.charge("b", 10.0, Ts(0));
        // two tenants, each used half: U = S = ½
        assert!((f.factor("a") - 0.5).abs() < 1e-12);
        // a newcomer counts itself among three: U = 0
        assert!((f.factor("c") - 1.0).abs() < 1e-15);
        f.charge("a", 20.0, Ts(0));
        // a used ¾ of the total against a share of ½: 2^(−1.5)
        assert!((f.factor("a") - 2f64.powf(-1.5)).abs() < 1e-12);
        assert!(f.factor("b") > f.factor("a"));
    }

    #[test]
    fn older_use_counts_half_after_the_half_life() {
        let mut f = table();
        f.charge("a", 10.0, Ts(0));
        f.charge("b", 10.0, Ts(10 * H));
        // a's 10 ucu·h are worth 5 at b's charge: U_a = 5 / 15
        let (u, _) = f.shares("a");
        assert!((u - 1.0 / 3.0).abs() < 1e-12, "{u}");
    }

    #[test]
    fn the_base_moves_forward_without_changing_the_shares() {
        let mut f = table();
        f.charge("a", 10.0, Ts(0));
        f.charge("b", 30.0, Ts(0));
        assert!((f.shares("a").0 - 0.25).abs() < 1e-12);
        // far beyond 64 half-lives: the base moves, and both old charges fade to nothing
        // against a new one
        f.charge("a", 1.0, Ts(700 * H));
        assert_eq!(f.base_ms, 700 * H);
        assert!(f.shares("a").0 > 0.99);
        assert!(f.total.is_finite());
    }

    #[test]
    fn bad_use_is_ignored() {
        let mut f = table();
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            f.charge("a", bad, Ts(0));
        }
        assert!((f.factor("a") - 1.0).abs() < 1e-15);
        assert!(f.scaled.is_empty());
    }
}
