//! Time: one newtype over epoch milliseconds, always UTC.

use serde::{Deserialize, Serialize};

/// An instant, milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ts(pub i64);

impl Ts {
    pub fn from_secs(s: i64) -> Ts {
        Ts(s.saturating_mul(1000))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 / ISO 8601 with an offset (`2026-12-01T08:00:00Z`, `…+08:00`).
    pub fn parse(s: &str) -> Result<Ts, String> {
        let ts: jiff::Timestamp =
            s.parse().map_err(|e: jiff::Error| format!("not an RFC 3339 timestamp with offset: {e}"))?;
        Ok(Ts(ts.as_millisecond()))
    }

    /// UTC hour of day and month (1–12), for tariff and profile look-ups.
    pub fn to_jiff(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_millisecond(self.0).ok()
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_jiff() {
            Some(t) => write!(f, "{t}"),
            None => write!(f, "{}ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ts;

    #[test]
    fn parses_offsets_to_utc() {
        let a = Ts::parse("2026-12-01T08:00:00+08:00").expect("valid");
        let b = Ts::parse("2026-12-01T00:00:00Z").expect("valid");
        assert_eq!(a, b);
        assert_eq!(b.to_string(), "2026-12-01T00:00:00Z");
        assert!(Ts::parse("2026-12-01").is_err());
        assert!(Ts::parse("yesterday").is_err());
    }
}
