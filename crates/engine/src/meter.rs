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

impl Meter {
    /// The metered share `fraction` (0–1) of a run, for work stopped part-way. Transfer is
    /// charged in full once the data has moved.
    #[must_use]
    pub fn partial(&self, fraction: f64) -> Meter {
        self.scaled(fraction.clamp(0.0, 1.0))
    }

    /// The meter of a run that took `factor` times its planned time (a real run reports its
    /// own). Transfer is charged as planned.
    #[must_use]
    pub fn scaled(&self, factor: f64) -> Meter {
        let f = if factor.is_finite() { factor.max(0.0) } else { 1.0 };
        let scale = |x: i64| (x as f64 * f).round() as i64;
        let compute_fen = scale(self.compute_fen);
        let energy_fen = scale(self.energy_fen);
        Meter {
            ucu_hours: self.ucu_hours * f,
            energy_kwh: self.energy_kwh * f,
            green_kwh: self.green_kwh * f,
            carbon_location_kg: self.carbon_location_kg * f,
            carbon_market_kg: self.carbon_market_kg * f,
            transfer_gb: self.transfer_gb,
            transfer_mode: self.transfer_mode,
            compute_fen,
            energy_fen,
            transfer_fen: self.transfer_fen,
            money_fen: compute_fen + energy_fen + self.transfer_fen,
        }
    }
}
