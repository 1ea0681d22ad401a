//! The reference network loads, is consistent, and its latencies follow the fibre model.

use suanwang_core::network::{DataFiles, Place};
use suanwang_core::{Family, LatencyTier, Network, Season};

fn net() -> Network {
    Network::reference().expect("the reference network loads")
}

#[test]
fn reference_has_the_national_layout() {
    let net = net();
    assert_eq!(net.hubs.len(), 8, "8 hub nodes");
    assert_eq!(net.clusters.len(), 10, "10 clusters");
    assert!(net.cities.len() >= 24, "at least 24 demand cities");
    assert!(net.regions.len() >= 2, "at least 2 non-hub green regions");
    for h in &net.hubs {
        assert!(net.clusters.iter().any(|c| c.hub == h.id), "hub {} has a cluster", h.id);
    }
}

#[test]
fn every_cluster_and_region_has_all_three_families() {
    let net = net();
    let areas = net.clusters.iter().map(|c| c.id.clone()).chain(net.regions.iter().map(|r| r.id.clone()));
    for area in areas {
        let sites: Vec<_> = net
            .sites
            .iter()
            .filter(|s| s.cluster.as_deref() == Some(area.as_str()) || (s.cluster.is_none() && s.region == area))
            .collect();
        assert!(!sites.is_empty(), "{area} has sites");
        for family in Family::ALL {
            assert!(sites.iter().any(|s| s.pools.iter().any(|p| p.family == family)), "{area} has a {family:?} pool");
        }
        let models: std::collections::BTreeSet<&str> = sites
            .iter()
            .flat_map(|s| s.pools.iter().filter(|p| p.family == Family::Intelligent).map(|p| p.model.as_str()))
            .collect();
        assert!(models.len() >= 2, "{area} has several accelerator models: {models:?}");
    }
}

#[test]
fn every_reference_is_known_and_every_factor_in_range() {
    let net = net();
    for s in &net.sites {
        match (&s.cluster, net.place(&s.region)) {
            (Some(c), Some(Place::Hub(_))) => {
                assert!(matches!(net.place(c), Some(Place::Cluster(_))), "{}", s.id);
            }
            (None, Some(Place::Region(_))) => {}
            // a city data centre: in a demand city, outside the hubs, residency its hub's or its city's
            (None, Some(Place::Hub(_) | Place::City(_))) if s.city.is_some() => {
                let city = s.city.as_deref().and_then(|c| net.city(c)).expect("known city");
                assert!(!s.in_hub() && city.province == s.province, "{}", s.id);
            }
            other => panic!("site {} sits in neither a known cluster, a green region nor a city: {other:?}", s.id),
        }
        assert!((1.0..=2.0).contains(&s.pue), "{} pue {}", s.id, s.pue);
        assert!(s.grid_factor_kg_per_kwh > 0.05 && s.grid_factor_kg_per_kwh < 1.2, "{} grid factor", s.id);
        let profile = net.green_profile(&s.green_profile).expect("profile exists");
        for season in Season::ALL {
            for h in 0..24 {
                let g = profile.at(season, h);
                assert!((0.0..=1.0).contains(&g), "{} {season:?} {h}: {g}", s.id);
            }
        }
        let tariff = net.tariff(&s.tariff).expect("tariff exists");
        assert_eq!(tariff.hours.len(), 24);
        assert!(tariff.hours.iter().all(|p| *p > 0));
        for p in &s.pools {
            assert!(p.count > 0 && p.ucu_per_unit > 0.0, "{}", p.id);
            assert!(p.id.starts_with(&format!("{}.", s.id)));
        }
    }
    for l in &net.links {
        assert!(net.place(&l.a).is_some() && net.place(&l.b).is_some(), "{} <-> {}", l.a, l.b);
        assert!(l.bandwidth_gbps > 0.0 && l.price_fen_per_gb >= 0);
    }
    for p in &net.pairings {
        assert!(net.city(&p.city).is_some() && net.is_region(&p.hub));
    }
    // ids are unique across cities, clusters, regions, sites and hubs
    let mut ids: Vec<&str> = net.cities.iter().map(|c| c.id.as_str()).collect();
    ids.extend(net.clusters.iter().map(|c| c.id.as_str()));
    ids.extend(net.regions.iter().map(|c| c.id.as_str()));
    ids.extend(net.sites.iter().map(|c| c.id.as_str()));
    ids.extend(net.hubs.iter().map(|c| c.id.as_str()));
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "ids are unique");
}

/// The fibre formula written out independently of the library.
fn formula_ms(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((b.1 - a.1).to_radians() / 2.0).sin().powi(2);
    let km = 2.0 * 6371.0088 * h.sqrt().asin();
    km * 1.5 / 204_000.0 * 1000.0
}

#[test]
fn latency_of_known_pairs() {
    let net = net();
    let bz = net.latency("beijing", "zhangjiakou").expect("known ids");
    assert!(bz.one_way_ms <= 5.0, "beijing→zhangjiakou {} ms", bz.one_way_ms);
    assert!(bz.tier <= LatencyTier::Regional);

    let sz = net.latency("shanghai", "zhongwei").expect("known ids");
    let shanghai = net.city("shanghai").expect("city");
    let zhongwei = net.clusters.iter().find(|c| c.id == "zhongwei").expect("cluster");
    let want = formula_ms((shanghai.lat, shanghai.lon), (zhongwei.lat, zhongwei.lon));
    assert!(sz.one_way_ms > 5.0, "shanghai→zhongwei {} ms", sz.one_way_ms);
    assert!((sz.one_way_ms - want).abs() / want < 0.01, "{} vs formula {want}", sz.one_way_ms);
    assert_eq!(sz.tier, LatencyTier::CrossHub);

    // a site close to its city is within the city tier; a city to itself is 0
    let q = net.latency("shanghai", "yrd-qingpu").expect("known ids");
    assert_eq!(q.tier, LatencyTier::City, "{} ms", q.one_way_ms);
    assert!(net.latency("beijing", "beijing").expect("known").one_way_ms.abs() < 1e-9);
    // symmetric
    let back = net.latency("zhongwei", "shanghai").expect("known ids");
    assert!((back.one_way_ms - sz.one_way_ms).abs() < 1e-9);
    // unknown ids are errors naming the id
    let err = net.latency("atlantis", "beijing").expect_err("unknown");
    assert!(err.to_string().contains("atlantis"));
}

fn with_file(name: &'static str, edit: impl Fn(&str) -> String) -> DataFiles {
    let mut files = DataFiles::reference();
    let text = files.files[name].clone();
    files.files.insert(name, edit(&text));
    files
}

#[test]
fn a_measured_link_overrides_the_model() {
    let files = with_file("network/links.toml", |t| {
        t.replacen(
            "a = \"beijing\"\nb = \"zhangjiakou\"\n",
            "a = \"beijing\"\nb = \"zhangjiakou\"\none_way_ms = 3.25\n",
            1,
        )
    });
    let net = Network::from_files(&files).expect("valid");
    let l = net.latency("zhangjiakou", "beijing").expect("known");
    assert!(l.measured);
    assert!((l.one_way_ms - 3.25).abs() < 1e-12);
    assert_eq!(l.tier, LatencyTier::Regional);
}

/// The operator's default `start_within` per kind: read from `policy.toml`, every kind there,
/// each a duration; anything else is refused naming the key.
#[test]
fn operator_policy_defaults_are_read_and_checked() {
    use suanwang_core::JobKind;
    let net = Network::reference().expect("reference");
    assert_eq!(net.policy.start_within_s(JobKind::Inference), 0);
    assert_eq!(net.policy.start_within_s(JobKind::Training), 8 * 3600);
    assert_eq!(net.policy.start_within_s(JobKind::Backup), 12 * 3600);
    let cases: [(&str, &str, &str); 4] = [
        ("training = \"8h\"", "training = \"8 hours\"", "start_within.training"),
        ("training = \"8h\"", "", "start_within.training"),
        ("backup = \"12h\"", "backup = \"12h\"\nquantum = \"1h\"", "start_within.quantum"),
        ("hpc = \"2h\"", "hpc = true", "start_within.hpc"),
    ];
    for (from, to, path) in cases {
        let files = with_file("policy.toml", |t| t.replacen(from, to, 1));
        let err = Network::from_files(&files).expect_err(to);
        assert!(err.0.iter().any(|p| p.file == "policy.toml" && p.path == path), "{to}: {err}");
    }
}

type Edit = Box<dyn Fn(&str) -> String>;

/// Each broken data file is refused with a problem naming the file and the field.
#[test]
fn broken_data_is_refused_with_its_location() {
    let cases: Vec<(&'static str, Edit, &str, &str)> = vec![
        (
            "network/sites.toml",
            Box::new(|t| t.replacen("cluster = \"zhangjiakou\"", "cluster = \"atlantis\"", 1)),
            "site[0].cluster",
            "unknown cluster",
        ),
        ("network/sites.toml", Box::new(|t| t.replacen("pue = 1.25", "pue = 0.8", 1)), "site[0].pue", "outside"),
        (
            "network/sites.toml",
            Box::new(|t| t.replacen("model = \"h800\"", "model = \"tpu-v9\"", 1)),
            ".model",
            "unknown",
        ),
        (
            "network/sites.toml",
            Box::new(|t| t.replacen("id = \"yrd-qingpu\"", "id = \"beijing\"", 1)),
            ".id",
            "already used",
        ),
        (
            "network/links.toml",
            Box::new(|t| t.replacen("b = \"zhangjiakou\"", "b = \"nowhere\"", 1)),
            ".b",
            "unknown endpoint",
        ),
        ("network/cities.toml", Box::new(|t| t.replacen("lat = 39.9", "lat = 95.0", 1)), "city[0].lat", "outside"),
        (
            "energy/grid_factors.toml",
            Box::new(|t| t.replacen("\"Hebei\" = 0.7252", "\"Hebei\" = 7.252", 1)),
            "factors.Hebei",
            "outside",
        ),
        (
            "energy/green_share.csv",
            Box::new(|t| t.replacen("anhui,spring,0,", "anhui,spring,0,1.5", 1)),
            "line 2",
            "green_share",
        ),
        (
            "energy/green_share.csv",
            Box::new(|t| t.lines().filter(|l| !l.starts_with("yunnan,winter,3,")).collect::<Vec<_>>().join("\n")),
            "yunnan",
            "missing",
        ),
        ("network/hubs.toml", Box::new(|t| t.replacen("side = \"east\"", "side = \"north\"", 1)), "line", "north"),
        ("metric.toml", Box::new(|t| t.replacen("fp16 = 0.5", "fp16 = -0.5", 1)), "", "fp16"),
    ];
    for (file, edit, path, reason) in cases {
        let files = with_file(file, edit);
        let err = Network::from_files(&files).expect_err(file);
        assert!(
            err.0.iter().any(|p| p.file == file && p.path.contains(path) && p.reason.contains(reason)),
            "{file}: expected a problem at {path:?} mentioning {reason:?}, got {:#?}",
            err.0
        );
    }
}

#[test]
fn unified_capacity_adds_up() {
    let net = net();
    let total = net.capacity_ucu(|_| true);
    let by_site: f64 = net.sites.iter().map(|s| Family::ALL.iter().map(|f| s.capacity_ucu(*f)).sum::<f64>()).sum();
    let sum: f64 = total.values().sum();
    assert!((sum - by_site).abs() / sum < 1e-9);
    // Intelligent compute is the largest family in FP32-equivalent terms, general next.
    assert!(total[&Family::Intelligent] > total[&Family::General]);
    assert!(total[&Family::General] > total[&Family::Super]);
}
