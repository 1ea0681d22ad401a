//! Integration tests of the scheduler: one test binary, modules by purpose.

mod batch;
mod capacity;
mod constraints;
mod explain;

use std::sync::Arc;

use suanwang_core::network::DataFiles;
use suanwang_core::{Network, Ts};

pub fn start() -> Ts {
    Ts::parse("2026-11-26T00:00:00Z").expect("valid")
}

pub fn reference() -> Arc<Network> {
    Arc::new(Network::reference().expect("reference network"))
}

/// The reference network with every pool shrunk to `1/divisor` of its size (at least `min`
/// units), so capacity binds after a few jobs.
pub fn tight(divisor: u64, min: u64) -> Arc<Network> {
    let mut files = DataFiles::reference();
    let sites = files.files["network/sites.toml"].clone();
    let shrunk: Vec<String> = sites
        .lines()
        .map(|l| match l.strip_prefix("count = ").and_then(|n| n.trim().parse::<u64>().ok()) {
            Some(n) => format!("count = {}", (n / divisor).max(min)),
            None => l.to_string(),
        })
        .collect();
    files.files.insert("network/sites.toml", shrunk.join("\n"));
    Arc::new(Network::from_files(&files).expect("shrunk network is valid"))
}
