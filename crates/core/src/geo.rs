//! Geography: great-circle distance, the fibre latency model and latency tiers.

use serde::{Deserialize, Serialize};

/// A point on the WGS-84 ellipsoid, degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// Mean Earth radius (IUGG), km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

impl LatLon {
    /// Haversine great-circle distance, km.
    pub fn distance_km(self, other: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// One-way latency of a fibre path: great-circle km × route factor ÷ speed of light in fibre.
///
/// The route factor 1.5 is the MIIT 2023 ceiling for direct links between hub clusters
/// ("≤ 1.5 × theoretical latency"); the speed is c / 1.47 ≈ 204,000 km/s. Equipment and
/// queueing delays are not modelled; measured values on links override the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FibreModel {
    pub route_factor: f64,
    pub fibre_km_per_s: f64,
}

impl Default for FibreModel {
    fn default() -> Self {
        FibreModel { route_factor: 1.5, fibre_km_per_s: 204_000.0 }
    }
}

impl FibreModel {
    pub fn one_way_ms(&self, km: f64) -> f64 {
        km * self.route_factor / self.fibre_km_per_s * 1000.0
    }
}

/// The latency tiers of R1: city ≤ 1 ms, regional ≤ 5 ms, cross-hub ≤ 20 ms (one-way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyTier {
    City,
    Regional,
    CrossHub,
    /// Beyond 20 ms: outside every tier.
    Beyond,
}

impl LatencyTier {
    pub const ALL: [LatencyTier; 4] =
        [LatencyTier::City, LatencyTier::Regional, LatencyTier::CrossHub, LatencyTier::Beyond];

    /// The tightest tier a one-way latency falls in.
    pub fn of_ms(one_way_ms: f64) -> LatencyTier {
        if one_way_ms <= 1.0 {
            LatencyTier::City
        } else if one_way_ms <= 5.0 {
            LatencyTier::Regional
        } else if one_way_ms <= 20.0 {
            LatencyTier::CrossHub
        } else {
            LatencyTier::Beyond
        }
    }

    /// The tier's bound on one-way latency, ms (`None` for `Beyond`).
    pub fn max_ms(self) -> Option<f64> {
        match self {
            LatencyTier::City => Some(1.0),
            LatencyTier::Regional => Some(5.0),
            LatencyTier::CrossHub => Some(20.0),
            LatencyTier::Beyond => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LatencyTier::City => "city",
            LatencyTier::Regional => "regional",
            LatencyTier::CrossHub => "cross-hub",
            LatencyTier::Beyond => "beyond",
        }
    }
}

impl std::fmt::Display for LatencyTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_symmetric_and_zero_on_self() {
        let a = LatLon { lat: 39.9, lon: 116.4 };
        let b = LatLon { lat: 31.23, lon: 121.47 };
        assert!((a.distance_km(b) - b.distance_km(a)).abs() < 1e-9);
        assert!(a.distance_km(a).abs() < 1e-9);
        // Beijing–Shanghai is about 1,067 km great-circle.
        assert!((a.distance_km(b) - 1067.0).abs() < 10.0, "{}", a.distance_km(b));
    }

    #[test]
    fn tiers_at_their_bounds() {
        let cases = [
            (0.0, LatencyTier::City),
            (1.0, LatencyTier::City),
            (1.0001, LatencyTier::Regional),
            (5.0, LatencyTier::Regional),
            (5.01, LatencyTier::CrossHub),
            (20.0, LatencyTier::CrossHub),
            (20.5, LatencyTier::Beyond),
        ];
        for (ms, tier) in cases {
            assert_eq!(LatencyTier::of_ms(ms), tier, "{ms} ms");
        }
    }
}
