//! Suanwang's early warning (R7): named [`indicators`], [`rules`] as data, alert states with
//! Prometheus's and Alertmanager's semantics ([`eval`]), anomaly scores ([`ewma`]), and the
//! rules as a Prometheus rules file ([`prom`]). Pure: the control plane measures, this judges.

pub mod eval;
pub mod ewma;
pub mod indicators;
pub mod prom;
pub mod rules;

pub use eval::{Alert, Evaluator, Sample, Samples, State, Transition};
pub use indicators::{INDICATORS, Indicator};
pub use rules::{Rule, RuleError, Severity};

/// The rules the control plane uses unless given a file (`data/alerts/rules.toml`).
pub const DEFAULT_RULES: &str = include_str!("../../../data/alerts/rules.toml");

/// The default rules, parsed (they are checked by this crate's tests).
pub fn default_rules() -> Result<Vec<Rule>, RuleError> {
    rules::parse(DEFAULT_RULES, Some("data/alerts/rules.toml"))
}
