//! Metering of one job (R4, R5): what it used and what it cost.

use serde::{Deserialize, Serialize};
use suanwang_sched::TransferMode;

/// What one job (attempt) used. Money is integer fen; energy and carbon are measured
/// quantities (floats).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Meter {
    /// Unified compute delivered: units × unified value per unit × hours (ucu·h).
    pub ucu_hours: f64,
    /// Facility energy, kWh (IT power × time × PUE).
    pub energy_kwh: f64,
    /// The part of it from green power, kWh.
    pub green_kwh: f64,
    pub carbon_location_kg: f64,
    pub carbon_market_kg: f64,
    pub transfer_gb: f64,
    pub transfer_mode: Option<TransferMode>,
    pub compute_fen: i64,
    pub energy_fen: i64,
    pub transfer_fen: i64,
    pub money_fen: i64,
}

/// A meter that cannot be scaled: the result would not be a number, or would not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error("the scale {num}/{den} is not a non-negative ratio")]
    BadRatio { num: i64, den: i64 },
    #[error("{0} would overflow")]
    Overflow(&'static str),
}

/// `x × num / den` rounded half up, in integers: `None` when it does not fit an `i64`.
fn ratio_fen(x: i64, num: i64, den: i64) -> Option<i64> {
    let (x, num, den) = (i128::from(x), i128::from(num), i128::from(den));
    // |x·num| < 2^126, so 2·x·num + den fits an i128
    i64::try_from((2 * x * num + den).div_euclid(2 * den)).ok()
}

impl Meter {
    /// What the economy bills (R4): the meter's priced amounts and quantities.
    pub fn usage(&self) -> suanwang_economy::Usage {
        suanwang_economy::Usage {
            ucu_hours: self.ucu_hours,
            energy_kwh: self.energy_kwh,
            carbon_kg: self.carbon_location_kg,
            compute_fen: self.compute_fen.max(0),
            energy_fen: self.energy_fen.max(0),
            transfer_fen: self.transfer_fen.max(0),
            transfer_gb: self.transfer_gb,
            transfer_mode: self.transfer_mode.map(|t| t.as_str().to_string()),
        }
    }

    /// Two attempts' use together (a preempted attempt and the one that finished the job):
    /// quantities summed, money summed saturating at the bound, the first transfer mode kept.
    #[must_use]
    pub fn plus(&self, o: &Meter) -> Meter {
        Meter {
            ucu_hours: self.ucu_hours + o.ucu_hours,
            energy_kwh: self.energy_kwh + o.energy_kwh,
            green_kwh: self.green_kwh + o.green_kwh,
            carbon_location_kg: self.carbon_location_kg + o.carbon_location_kg,
            carbon_market_kg: self.carbon_market_kg + o.carbon_market_kg,
            transfer_gb: self.transfer_gb + o.transfer_gb,
            transfer_mode: self.transfer_mode.or(o.transfer_mode),
            compute_fen: self.compute_fen.saturating_add(o.compute_fen),
            energy_fen: self.energy_fen.saturating_add(o.energy_fen),
            transfer_fen: self.transfer_fen.saturating_add(o.transfer_fen),
            money_fen: self.money_fen.saturating_add(o.money_fen),
        }
    }

    /// The metered share `done_ms / of_ms` (clamped to 0–1) of a run, for work stopped
    /// part-way. Transfer is charged in full once the data has moved. Never fails: a share of at
    /// most the whole cannot overflow.
    #[must_use]
    pub fn partial(&self, done_ms: i64, of_ms: i64) -> Meter {
        let of = of_ms.max(1);
        self.ratio(done_ms.clamp(0, of), of).unwrap_or(*self)
    }

    /// The meter of a run that took `num / den` times its planned time (a real run reports its
    /// own wall time: `num` = real ms, `den` = planned ms). Money is scaled in integers and
    /// summed with checks; a result that does not fit, or a float that is not finite, is an
    /// error — never wrapped or saturated. Transfer is charged as planned.
    pub fn ratio(&self, num: i64, den: i64) -> Result<Meter, MeterError> {
        if num < 0 || den <= 0 {
            return Err(MeterError::BadRatio { num, den });
        }
        let fen = |name, x| ratio_fen(x, num, den).ok_or(MeterError::Overflow(name));
        let f = num as f64 / den as f64;
        let q = |name, x: f64| Some(x * f).filter(|y| y.is_finite()).ok_or(MeterError::Overflow(name));
        let compute_fen = fen("compute_fen", self.compute_fen)?;
        let energy_fen = fen("energy_fen", self.energy_fen)?;
        let money_fen = compute_fen
            .checked_add(energy_fen)
            .and_then(|m| m.checked_add(self.transfer_fen))
            .ok_or(MeterError::Overflow("money_fen"))?;
        Ok(Meter {
            ucu_hours: q("ucu_hours", self.ucu_hours)?,
            energy_kwh: q("energy_kwh", self.energy_kwh)?,
            green_kwh: q("green_kwh", self.green_kwh)?,
            carbon_location_kg: q("carbon_location_kg", self.carbon_location_kg)?,
            carbon_market_kg: q("carbon_market_kg", self.carbon_market_kg)?,
            transfer_gb: self.transfer_gb,
            transfer_mode: self.transfer_mode,
            compute_fen,
            energy_fen,
            transfer_fen: self.transfer_fen,
            money_fen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_rounds_in_integers_and_refuses_overflow() {
        let m = Meter { compute_fen: 100, energy_fen: 50, transfer_fen: 7, money_fen: 157, ..Meter::default() };
        let half = m.ratio(1, 2).expect("half");
        assert_eq!((half.compute_fen, half.energy_fen, half.money_fen), (50, 25, 82));
        assert_eq!(m.ratio(1, 3).expect("third").compute_fen, 33);
        assert!(matches!(m.ratio(-1, 2), Err(MeterError::BadRatio { .. })));
        assert!(matches!(m.ratio(1, 0), Err(MeterError::BadRatio { .. })));
        let big = Meter { compute_fen: i64::MAX / 2, energy_fen: i64::MAX / 2, ..Meter::default() };
        assert_eq!(big.ratio(3, 1), Err(MeterError::Overflow("compute_fen")));
        assert_eq!(big.ratio(1, 1).map(|m| m.money_fen), Ok(i64::MAX - 1));
        let over = Meter { transfer_fen: 2, ..big };
        assert_eq!(over.ratio(1, 1), Err(MeterError::Overflow("money_fen")));
        let hot = Meter { carbon_market_kg: f64::MAX, ..Meter::default() };
        assert_eq!(hot.ratio(2, 1), Err(MeterError::Overflow("carbon_market_kg")));
        assert_eq!(m.partial(5_000, 1_000), m, "a share is at most the whole");
        assert_eq!(m.partial(-5, 1_000).money_fen, 7, "transfer stays charged");
    }
}
