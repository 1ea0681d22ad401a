//! Energy: seasons, time-of-use tariffs and hourly green-power-share profiles.

use serde::{Deserialize, Serialize};

/// Seasons of the typical-day profiles (Beijing months): spring Mar–May, summer Jun–Aug,
/// autumn Sep–Nov, winter Dec–Feb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Season {
    Spring,
    Summer,
    Autumn,
    Winter,
}

impl Season {
    pub const ALL: [Season; 4] = [Season::Spring, Season::Summer, Season::Autumn, Season::Winter];

    pub fn of_month(month: u8) -> Season {
        match month {
            3..=5 => Season::Spring,
            6..=8 => Season::Summer,
            9..=11 => Season::Autumn,
            _ => Season::Winter,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Season::Spring => "spring",
            Season::Summer => "summer",
            Season::Autumn => "autumn",
            Season::Winter => "winter",
        }
    }

    pub fn parse(s: &str) -> Option<Season> {
        Season::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A time-of-use tariff: price per Beijing-time hour of day, fen per `MWh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tariff {
    pub id: String,
    pub province: String,
    pub flat_fen_per_mwh: i64,
    pub schedule_source: String,
    /// 24 prices, index = Beijing-time hour.
    pub hours: Vec<i64>,
}

impl Tariff {
    pub fn fen_per_mwh_at(&self, beijing_hour: usize) -> i64 {
        self.hours[beijing_hour % 24]
    }

    pub fn mean_fen_per_mwh(&self) -> f64 {
        self.hours.iter().sum::<i64>() as f64 / self.hours.len() as f64
    }
}

/// Green-power share per season and Beijing-time hour, 0–1 (modelled; see data/README.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GreenProfile {
    pub id: String,
    /// `[season][hour]`.
    pub share: [[f64; 24]; 4],
}

impl GreenProfile {
    pub fn at(&self, season: Season, beijing_hour: usize) -> f64 {
        self.share[season.index()][beijing_hour % 24]
    }

    pub fn mean(&self) -> f64 {
        self.share.iter().flatten().sum::<f64>() / 96.0
    }

    pub fn season_mean(&self, season: Season) -> f64 {
        self.share[season.index()].iter().sum::<f64>() / 24.0
    }
}
