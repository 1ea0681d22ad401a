//! How input data reaches a site (R1 transport modes), each with a time and price model.
//!
//! Link bandwidth and price come from the network data; the mode parameters below are
//! MODELLED (no Chinese tariffs for these services were found; see data/README.md) and can be
//! overridden in the scheduler's configuration.

use serde::{Deserialize, Serialize};
use suanwang_core::Network;
use suanwang_core::network::{Place, Site};

use crate::slots::SLOT_SECONDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// No input, or the data is already at the site.
    None,
    /// Best-effort share of the regular network.
    Network,
    /// Reserved rate for the transfer's window (弹性带宽), priced per Gbps-hour on top.
    Elastic,
    /// Task-style bulk copy (任务式传输): cheap, runs in the night off-peak window.
    Bulk,
    /// Data express (数据快递): disks shipped at a fixed lead time and price per TB.
    Express,
}

impl TransferMode {
    pub const MOVING: [TransferMode; 4] =
        [TransferMode::Network, TransferMode::Elastic, TransferMode::Bulk, TransferMode::Express];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::None => "none",
            TransferMode::Network => "network",
            TransferMode::Elastic => "elastic",
            TransferMode::Bulk => "bulk",
            TransferMode::Express => "express",
        }
    }
}

/// Parameters of the transfer modes (modelled).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferModel {
    /// Share of a link's bandwidth a best-effort transfer gets.
    pub network_share: f64,
    /// Reserved rate of an elastic transfer: this share of the link, capped at `elastic_max_gbps`.
    pub elastic_share: f64,
    pub elastic_max_gbps: f64,
    pub elastic_setup_s: f64,
    /// Price of reserved bandwidth, fen per Gbps-hour, on top of the per-GB price.
    pub elastic_fen_per_gbps_hour: i64,
    /// Bulk copies run only in the Beijing night window `[0, bulk_window_hours)` at this share.
    pub bulk_share: f64,
    pub bulk_window_hours: i64,
    /// Bulk price as a fraction of the link's per-GB price, in percent.
    pub bulk_price_percent: i64,
    /// Data express: lead time (pack, next-day courier, unpack), then loading per device.
    pub express_lead_hours: i64,
    pub express_device_tb: f64,
    pub express_fen_per_device: i64,
    pub express_load_hours_per_device: f64,
}

impl Default for TransferModel {
    fn default() -> Self {
        TransferModel {
            network_share: 0.10,
            elastic_share: 0.40,
            elastic_max_gbps: 100.0,
            elastic_setup_s: 60.0,
            elastic_fen_per_gbps_hour: 50,
            bulk_share: 0.25,
            bulk_window_hours: 8,
            bulk_price_percent: 40,
            express_lead_hours: 24,
            express_device_tb: 200.0,
            express_fen_per_device: 200_000,
            express_load_hours_per_device: 2.0,
        }
    }
}

/// The path data takes from where it is to a site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    pub bandwidth_gbps: f64,
    pub price_fen_per_gb: i64,
    pub latency_ms: f64,
    /// True when source and destination are the same site.
    pub local: bool,
    /// The network link the data crosses (index into `Network::links`); `None` within a site
    /// or a cluster's campus fabric.
    pub link: Option<usize>,
}

/// The route from `location` (a city or site id) to `site`, or `None` if unknown.
pub fn route(net: &Network, location: &str, site: &Site) -> Option<Route> {
    let latency_ms = net.latency(location, &site.id).ok()?.one_way_ms;
    // where a site's traffic enters: its cluster, its city (a city data centre), or its region
    let area_of = |s: &Site| s.cluster.as_deref().or(s.city.as_deref()).unwrap_or(&s.region).to_string();
    let area = area_of(site);
    let area = area.as_str();
    let link = |a: &str| {
        let i = net.link_position(a, area)?;
        let l = &net.links[i];
        Some((l.bandwidth_gbps, l.price_fen_per_gb, false, Some(i)))
    };
    let (bandwidth_gbps, price_fen_per_gb, local, link) = match net.place(location)? {
        Place::Site(i) => {
            let from = &net.sites[i];
            if from.id == site.id {
                (f64::INFINITY, 0, true, None)
            } else {
                let from_area = area_of(from);
                if from_area == area {
                    (net.intra_cluster_gbps, net.intra_cluster_fen_per_gb, false, None)
                } else {
                    link(&from_area)?
                }
            }
        }
        // a city's own data centre: the metro fabric, like a campus
        Place::City(_) if location == area => (net.intra_cluster_gbps, net.intra_cluster_fen_per_gb, false, None),
        Place::City(_) => link(location)?,
        _ => return None,
    };
    Some(Route { bandwidth_gbps, price_fen_per_gb, latency_ms, local, link })
}

/// A way to move the data, with when it arrives and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Transfer {
    pub mode: TransferMode,
    /// Seconds from the decision until the data is at the site.
    pub seconds: i64,
    pub cost_fen: i64,
}

/// Seconds from `now_s_of_beijing_day` until the next Beijing midnight.
fn until_midnight(beijing_second_of_day: i64) -> i64 {
    (86_400 - beijing_second_of_day) % 86_400
}

/// Every mode that can move `size_gb` over `route`, starting at Beijing second-of-day `sod`:
/// the first `n` entries of the array (no allocation: this runs for every site of every plan).
pub fn options(
    model: &TransferModel,
    route: Route,
    size_gb: f64,
    beijing_second_of_day: i64,
) -> ([Transfer; 4], usize) {
    let none = Transfer { mode: TransferMode::None, seconds: 0, cost_fen: 0 };
    let mut out = [none; 4];
    if size_gb <= 0.0 || route.local {
        return (out, 1);
    }
    let gbits = size_gb * 8.0;
    let per_gb = |percent: i64| ((size_gb * (route.price_fen_per_gb * percent) as f64) / 100.0).ceil() as i64;
    let latency_s = route.latency_ms / 1000.0;

    let net_rate = route.bandwidth_gbps * model.network_share;
    out[0] = Transfer {
        mode: TransferMode::Network,
        seconds: (gbits / net_rate + latency_s).ceil() as i64,
        cost_fen: per_gb(100),
    };

    let el_rate = (route.bandwidth_gbps * model.elastic_share).min(model.elastic_max_gbps);
    let el_s = model.elastic_setup_s + gbits / el_rate + latency_s;
    let el_hours = el_s / 3600.0;
    out[1] = Transfer {
        mode: TransferMode::Elastic,
        seconds: el_s.ceil() as i64,
        cost_fen: per_gb(100) + (el_rate * el_hours * model.elastic_fen_per_gbps_hour as f64).ceil() as i64,
    };

    // Bulk: copies only inside the nightly window; waits for it to open if needed.
    let window_s = model.bulk_window_hours * 3600;
    let bulk_rate = route.bandwidth_gbps * model.bulk_share;
    let busy_s = (gbits / bulk_rate).ceil() as i64;
    let (mut t, mut left) = (0_i64, busy_s);
    let mut sod = beijing_second_of_day;
    while left > 0 {
        if sod < window_s {
            let step = left.min(window_s - sod);
            t += step;
            left -= step;
            sod += step;
        } else {
            let wait = until_midnight(sod);
            t += wait;
            sod = 0;
        }
        if t > 400 * 86_400 {
            break; // a copy this long is never useful; its time says so
        }
    }
    out[2] = Transfer {
        mode: TransferMode::Bulk,
        seconds: t + latency_s.ceil() as i64,
        cost_fen: per_gb(model.bulk_price_percent),
    };

    let devices = (size_gb / 1000.0 / model.express_device_tb).ceil().max(1.0);
    out[3] = Transfer {
        mode: TransferMode::Express,
        seconds: model.express_lead_hours * 3600
            + (devices * model.express_load_hours_per_device * 3600.0).ceil() as i64,
        cost_fen: devices as i64 * model.express_fen_per_device,
    };
    (out, 4)
}

/// What no mode of `options` beats, whatever the hour: (seconds, cost in fen) at most those of
/// the fastest and of the cheapest mode. Cheap enough to compute for every site of a plan,
/// where `options` is computed only for the sites worth a closer look.
pub fn lower_bounds(model: &TransferModel, route: Route, size_gb: f64) -> (f64, f64) {
    if size_gb <= 0.0 || route.local {
        return (0.0, 0.0);
    }
    // real-valued where `options` rounds up: no call to `ceil` on this hot path
    let per_gb = |percent: i64| size_gb * (route.price_fen_per_gb * percent) as f64 / 100.0;
    // network and elastic pay the full rate per GB (elastic more on top), bulk its percentage
    let devices = (size_gb / 1000.0 / model.express_device_tb).max(1.0);
    let cost = per_gb(100).min(per_gb(model.bulk_price_percent)).min(devices * model.express_fen_per_device as f64);
    // every networked mode moves at most at the largest share of the link, plus its latency;
    // bulk stops counting after 400 days; express takes its lead and loading time
    let share = model.network_share.max(model.elastic_share).max(model.bulk_share);
    let networked = (size_gb * 8.0 / (route.bandwidth_gbps * share) + route.latency_ms / 1000.0).min(400.0 * 86_400.0);
    let express = (model.express_lead_hours * 3600) as f64 + devices * model.express_load_hours_per_device * 3600.0;
    // NaN (a zero-bandwidth route) bounds nothing: 0
    (networked.min(express).max(0.0), cost.max(0.0))
}

/// Slot-rounded arrival: the first slot offset at which the data is in place.
pub fn arrival_slots(t: &Transfer) -> i64 {
    (t.seconds + SLOT_SECONDS - 1) / SLOT_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Route {
        Route { bandwidth_gbps: 400.0, price_fen_per_gb: 8, latency_ms: 10.0, local: false, link: None }
    }

    #[test]
    fn small_data_goes_by_network_huge_data_by_express() {
        let m = TransferModel::default();
        let (small, _) = options(&m, r(), 10.0, 0);
        let net = small.iter().find(|t| t.mode == TransferMode::Network).expect("network");
        assert_eq!(net.cost_fen, 80);
        assert!(net.seconds <= 3, "10 GB at 40 Gbps: {} s", net.seconds);
        let cheapest = small.iter().min_by_key(|t| t.cost_fen).expect("some");
        assert_eq!(cheapest.mode, TransferMode::Bulk);

        let (huge, _) = options(&m, r(), 2_000_000.0, 0); // 2 PB
        let express = huge.iter().find(|t| t.mode == TransferMode::Express).expect("express");
        let network = huge.iter().find(|t| t.mode == TransferMode::Network).expect("network");
        assert!(express.cost_fen < network.cost_fen);
        assert!(express.seconds < network.seconds);
    }

    #[test]
    fn bulk_waits_for_the_night_window() {
        let m = TransferModel::default();
        // at Beijing noon, a 1 GB bulk copy waits 12 h for midnight
        let t = options(&m, r(), 1.0, 12 * 3600).0.into_iter().find(|t| t.mode == TransferMode::Bulk).expect("bulk");
        assert!(t.seconds >= 12 * 3600 && t.seconds < 12 * 3600 + 60, "{}", t.seconds);
        // at 01:00 it starts at once
        let t = options(&m, r(), 1.0, 3600).0.into_iter().find(|t| t.mode == TransferMode::Bulk).expect("bulk");
        assert!(t.seconds < 60);
    }

    proptest::proptest! {
        /// No transfer option is faster or cheaper than `lower_bounds` says: the planner prunes
        /// whole sites on them.
        #[test]
        fn no_option_beats_the_lower_bounds(
            size_gb in 0.0_f64..5_000_000.0,
            bandwidth_gbps in 0.1_f64..1000.0,
            price_fen_per_gb in 0_i64..100,
            latency_ms in 0.0_f64..80.0,
            sod in 0_i64..86_400,
            local in proptest::bool::ANY,
        ) {
            let m = TransferModel::default();
            let route = Route { bandwidth_gbps, price_fen_per_gb, latency_ms, local, link: None };
            let (seconds, cost) = lower_bounds(&m, route, size_gb);
            let (modes, n) = options(&m, route, size_gb, sod);
            for t in &modes[..n] {
                proptest::prop_assert!(t.seconds as f64 >= seconds, "{t:?} faster than {seconds}");
                proptest::prop_assert!(t.cost_fen as f64 >= cost, "{t:?} cheaper than {cost}");
            }
        }
    }

    #[test]
    fn local_or_empty_data_does_not_move() {
        let m = TransferModel::default();
        assert_eq!(options(&m, r(), 0.0, 0), ([Transfer { mode: TransferMode::None, seconds: 0, cost_fen: 0 }; 4], 1));
        assert_eq!(options(&m, Route { local: true, ..r() }, 5.0, 0).1, 1);
    }
}
