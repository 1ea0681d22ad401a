//! Per-site energy series over a typical Beijing day, per season, with prefix sums so any
//! window's total tariff, green share and carbon intensity costs O(1).

use suanwang_core::network::Site;
use suanwang_core::{Network, Season};

use crate::slots::{SLOTS_PER_DAY, beijing_slot_of_day, season_of};

/// One quantity per slot of the day, as prefix sums (`prefix[i]` = sum of slots `0..i`).
#[derive(Debug, Clone)]
struct Daily<T> {
    prefix: Vec<T>,
}

impl<T: Copy + Default + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + std::ops::Mul<Output = T>> Daily<T> {
    fn new(values: impl Iterator<Item = T>) -> Daily<T> {
        let mut prefix = Vec::with_capacity(SLOTS_PER_DAY + 1);
        let mut acc = T::default();
        prefix.push(acc);
        for v in values.take(SLOTS_PER_DAY) {
            acc = acc + v;
            prefix.push(acc);
        }
        Daily { prefix }
    }

    /// The value of slot-of-day `i`.
    fn at(&self, i: usize) -> T {
        self.prefix[i + 1] - self.prefix[i]
    }

    /// Sum over `len` slots starting at slot-of-day `sod`, wrapping around days.
    fn window(&self, sod: usize, len: usize, days: fn(usize) -> T) -> T {
        let total = self.prefix[SLOTS_PER_DAY];
        let (full, rem) = (len / SLOTS_PER_DAY, len % SLOTS_PER_DAY);
        let part = if sod + rem <= SLOTS_PER_DAY {
            self.prefix[sod + rem] - self.prefix[sod]
        } else {
            (total - self.prefix[sod]) + self.prefix[sod + rem - SLOTS_PER_DAY]
        };
        days(full) * total + part
    }
}

/// What a window of slots at a site costs in energy terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowEnergy {
    /// Sum over the window's slots of the tariff, fen per `MWh` (divide by slots for the mean).
    pub tariff_sum: i64,
    /// Mean green-power share over the window, 0–1.
    pub green_share: f64,
    /// Mean market-based carbon intensity, kg CO2 per kWh: grid factor × (1 − green share).
    pub carbon_kg_per_kwh: f64,
}

#[derive(Debug, Clone)]
pub struct SiteSeries {
    tariff: [Daily<i64>; 4],
    green: [Daily<f64>; 4],
    grid_factor: f64,
}

impl SiteSeries {
    pub fn new(net: &Network, site: &Site) -> SiteSeries {
        let tariff = net.tariff(&site.tariff);
        let profile = net.green_profile(&site.green_profile);
        let tariff_at = |h: usize| tariff.map_or(0, |t| t.fen_per_mwh_at(h));
        let green_at = |s: Season, h: usize| profile.map_or(0.0, |p| p.at(s, h));
        let hour = |slot: usize| slot / 4;
        SiteSeries {
            tariff: Season::ALL.map(|_| Daily::new((0..SLOTS_PER_DAY).map(|s| tariff_at(hour(s))))),
            green: Season::ALL.map(|season| Daily::new((0..SLOTS_PER_DAY).map(|s| green_at(season, hour(s))))),
            grid_factor: site.grid_factor_kg_per_kwh,
        }
    }

    /// A forecast of this series: each hour's green share × `green[h]` (capped to [0, 1]) and
    /// tariff × `tariff[h]` (rounded, at least 1 fen/MWh), hour = Beijing hour of the day.
    #[must_use]
    pub fn perturbed(&self, green: &[f64; 24], tariff: &[f64; 24]) -> SiteSeries {
        SiteSeries {
            tariff: std::array::from_fn(|k| {
                Daily::new(
                    (0..SLOTS_PER_DAY).map(|i| ((self.tariff[k].at(i) as f64 * tariff[i / 4]).round() as i64).max(1)),
                )
            }),
            green: std::array::from_fn(|k| {
                Daily::new((0..SLOTS_PER_DAY).map(|i| (self.green[k].at(i) * green[i / 4]).clamp(0.0, 1.0)))
            }),
            grid_factor: self.grid_factor,
        }
    }

    /// The lowest slot tariff (fen/MWh) and carbon intensity (kg/kWh) in any season.
    pub fn minima(&self) -> (i64, f64) {
        let mut lo = (i64::MAX, f64::INFINITY);
        for k in 0..4 {
            for i in 0..SLOTS_PER_DAY {
                lo.0 = lo.0.min(self.tariff[k].at(i));
                lo.1 = lo.1.min(self.grid_factor * (1.0 - self.green[k].at(i)));
            }
        }
        lo
    }

    /// Energy facts of the window `[start, start + len)` (absolute slots); the season is the
    /// one of the window's first slot.
    pub fn window(&self, start: i64, len: i64) -> WindowEnergy {
        self.window_in(season_of(start), start, len)
    }

    /// `window` with the season already known (the scheduler caches it per slot).
    pub fn window_in(&self, season: Season, start: i64, len: i64) -> WindowEnergy {
        let season = season.index();
        let sod = beijing_slot_of_day(start);
        let len_u = len.max(1) as usize;
        let tariff_sum = self.tariff[season].window(sod, len_u, |d| d as i64);
        let green_share = self.green[season].window(sod, len_u, |d| d as f64) / len_u as f64;
        WindowEnergy { tariff_sum, green_share, carbon_kg_per_kwh: self.grid_factor * (1.0 - green_share) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suanwang_core::Network;

    #[test]
    fn windows_match_slot_by_slot_sums() {
        let net = Network::reference().expect("net");
        let site = net.site("qingyang-xifeng").expect("site");
        let series = SiteSeries::new(&net, site);
        let tariff = net.tariff(&site.tariff).expect("tariff");
        let profile = net.green_profile(&site.green_profile).expect("profile");
        let start = crate::slots::slot_of(suanwang_core::Ts::parse("2026-11-26T10:00:00Z").expect("ts"));
        for len in [1_i64, 3, 95, 96, 97, 250] {
            let w = series.window(start, len);
            let season = season_of(start);
            let mut tariff_sum = 0;
            let mut green = 0.0;
            for s in start..start + len {
                let h = beijing_slot_of_day(s) / 4;
                tariff_sum += tariff.fen_per_mwh_at(h);
                green += profile.at(season, h);
            }
            assert_eq!(w.tariff_sum, tariff_sum, "len {len}");
            assert!((w.green_share - green / len as f64).abs() < 1e-9, "len {len}");
        }
    }
}
