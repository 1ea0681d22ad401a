//! Policies: how much each scorer weighs. Named presets, overridable from a TOML file.

use serde::{Deserialize, Serialize};
use suanwang_core::network::OperatorPolicy;

/// The scorers. Every one is "lower is better" on its raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    /// Compute at the pool's price + energy at the slots' tariff + data transfer, fen.
    Money,
    /// Market-based kg CO2: energy × grid factor × (1 − green share) over the run.
    Carbon,
    /// Seconds from submission to start (queueing, deferral and data arrival).
    Wait,
    /// One-way ms from the job's origin city to the site.
    Latency,
    /// 1 when the placement goes against 东数西算 (delay-tolerant work kept east, western
    /// work sent east), else 0.
    EastWest,
    /// 0 when the site's hub is paired (结对子) with the job's origin city, else 1.
    Pairing,
    /// Share of the pool in use at the start slot, after this job.
    Load,
    /// 1 at a site outside the eight hubs (a city data centre or a non-hub green region), else
    /// 0: hubs first among equals (seed: hub utilisation above the national average); 0 for
    /// work with a city or regional latency tier, which belongs near its users. Its weight in
    /// `balanced` is operator data (`policy.toml` `[hubs] weight`).
    Hub,
}

impl Scorer {
    pub const ALL: [Scorer; N] = [
        Scorer::Money,
        Scorer::Carbon,
        Scorer::Wait,
        Scorer::Latency,
        Scorer::EastWest,
        Scorer::Pairing,
        Scorer::Load,
        Scorer::Hub,
    ];

    /// The scorer named `name` (as in `as_str`).
    pub fn parse(name: &str) -> Option<Scorer> {
        Scorer::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The scorers' names, for error messages.
    pub fn names() -> String {
        Scorer::ALL.map(Scorer::as_str).join(", ")
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scorer::Money => "money",
            Scorer::Carbon => "carbon",
            Scorer::Wait => "wait",
            Scorer::Latency => "latency",
            Scorer::EastWest => "east_west",
            Scorer::Pairing => "pairing",
            Scorer::Load => "load",
            Scorer::Hub => "hub",
        }
    }
}

/// How many scorers there are.
pub const N: usize = 8;

/// Weight per scorer, indexed like `Scorer::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub money: f64,
    pub carbon: f64,
    pub wait: f64,
    pub latency: f64,
    pub east_west: f64,
    pub pairing: f64,
    pub load: f64,
    pub hub: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Policy::BALANCED.weights
    }
}

impl Weights {
    pub fn get(&self, s: Scorer) -> f64 {
        match s {
            Scorer::Money => self.money,
            Scorer::Carbon => self.carbon,
            Scorer::Wait => self.wait,
            Scorer::Latency => self.latency,
            Scorer::EastWest => self.east_west,
            Scorer::Pairing => self.pairing,
            Scorer::Load => self.load,
            Scorer::Hub => self.hub,
        }
    }

    pub fn set(&mut self, s: Scorer, v: f64) {
        let w = match s {
            Scorer::Money => &mut self.money,
            Scorer::Carbon => &mut self.carbon,
            Scorer::Wait => &mut self.wait,
            Scorer::Latency => &mut self.latency,
            Scorer::EastWest => &mut self.east_west,
            Scorer::Pairing => &mut self.pairing,
            Scorer::Load => &mut self.load,
            Scorer::Hub => &mut self.hub,
        };
        *w = v;
    }

    pub fn as_array(&self) -> [f64; N] {
        Scorer::ALL.map(|s| self.get(s))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub weights: Weights,
}

const fn w(money: f64, carbon: f64, wait: f64, latency: f64, east_west: f64, pairing: f64, load: f64) -> Weights {
    Weights { money, carbon, wait, latency, east_west, pairing, load, hub: 0.0 }
}

/// `[weights]` overrides on top of a named base policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    weights: Option<toml::Table>,
}

impl Policy {
    /// Money and carbon first, then the national policy (east→west, pairing), waiting, balance;
    /// `Policy::named` adds the operator's hub weight.
    pub const BALANCED: Policy = Policy { name: String::new(), weights: w(1.0, 1.0, 1.5, 0.025, 0.1, 0.05, 0.05) };

    pub const NAMES: [&'static str; 6] = ["balanced", "cheapest", "greenest", "fastest", "nearest", "wait-awhile"];

    /// A named policy under the operator's policy data (`Network::policy`): `balanced` takes
    /// its `hub` weight from `[hubs] weight`; the single-objective policies ignore hubs.
    pub fn named(name: &str, op: &OperatorPolicy) -> Option<Policy> {
        let weights = match name {
            "balanced" => Weights { hub: op.hubs.weight, ..Policy::BALANCED.weights },
            // Small second terms only break ties (waiting is scored per run time, at least an
            // hour: 0.0001 makes an hour's wait on a short job worth 0.01 % of its cost).
            "cheapest" => w(1.0, 0.0, 0.0001, 0.0, 0.0, 0.0, 0.0),
            "greenest" => w(0.0, 1.0, 0.0001, 0.0, 0.0, 0.0, 0.0),
            "fastest" => w(0.01, 0.0, 1.0, 0.05, 0.0, 0.0, 0.0),
            "nearest" => w(0.0, 0.0, 0.005, 1.0, 0.0, 0.0, 0.0),
            // temporal carbon shifting only: a dominant latency weight keeps the job at the
            // nearest site, carbon picks its start ("Let's Wait Awhile", Wiesner et al. 2021)
            "wait-awhile" => w(0.0, 1.0, 0.005, 10.0, 0.0, 0.0, 0.0),
            _ => return None,
        };
        Some(Policy { name: name.to_string(), weights })
    }

    /// Parses a policy file: optional `base` (a named policy, default balanced), optional
    /// `name`, and a `[weights]` table overriding some scorers. Weights must be finite, ≥ 0.
    pub fn from_toml(text: &str, op: &OperatorPolicy) -> Result<Policy, String> {
        let f: PolicyFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let base_name = f.base.as_deref().unwrap_or("balanced");
        let mut policy = Policy::named(base_name, op)
            .ok_or_else(|| format!("base: unknown policy {base_name:?}; one of {}", Policy::NAMES.join(", ")))?;
        for (k, v) in f.weights.unwrap_or_default() {
            let scorer =
                Scorer::parse(&k).ok_or_else(|| format!("weights.{k}: unknown scorer; one of {}", Scorer::names()))?;
            match v.as_float().or_else(|| v.as_integer().map(|i| i as f64)) {
                Some(x) if x.is_finite() && x >= 0.0 => policy.weights.set(scorer, x),
                _ => return Err(format!("weights.{k}: must be a finite number ≥ 0, got {v}")),
            }
        }
        if policy.weights.as_array().iter().all(|x| *x == 0.0) {
            return Err("weights: at least one weight must be positive".into());
        }
        policy.name = f.name.unwrap_or_else(|| format!("{base_name}+custom"));
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_overridden() {
        let op = OperatorPolicy::default();
        for n in Policy::NAMES {
            assert_eq!(Policy::named(n, &op).expect("known").name, n);
        }
        assert!(Policy::named("random", &op).is_none());
        let hubs = OperatorPolicy { hubs: suanwang_core::network::HubPolicy { weight: 0.7, ..op.hubs }, ..op.clone() };
        assert!((Policy::named("balanced", &hubs).expect("known").weights.hub - 0.7).abs() < 1e-12);
        assert!(Policy::named("nearest", &hubs).expect("known").weights.hub.abs() < 1e-12);
        let p = Policy::from_toml("base = \"cheapest\"\n[weights]\ncarbon = 0.5\n", &op).expect("valid");
        assert!((p.weights.carbon - 0.5).abs() < 1e-12);
        assert!((p.weights.money - 1.0).abs() < 1e-12);
        for bad in [
            "[weights]\ncarbon = -1",
            "[weights]\nspeed = 1",
            "base = \"x\"",
            "[weights]\nmoney = nan",
            "[weights]\nmoney=0\ncarbon=0\nwait=0\nlatency=0\neast_west=0\npairing=0\nload=0\nhub=0",
        ] {
            assert!(Policy::from_toml(bad, &op).is_err(), "{bad}");
        }
    }
}
