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

/// Parses a duration: whole seconds (`3600`), or numbers with units `d`, `h`, `m`, `s` in that
/// order (`"6h"`, `"1h30m"`, `"90s"`, `"0"`). Returns seconds; the error says what is wrong.
pub fn parse_duration_s(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(n) = t.parse::<i64>() {
        return if n < 0 { Err(format!("{n} is negative")) } else { Ok(n) };
    }
    let units = [('d', 86_400i64), ('h', 3_600), ('m', 60), ('s', 1)];
    let (mut total, mut rest, mut next_unit) = (0i64, t, 0usize);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?}: expected a number at {rest:?} (e.g. \"6h\", \"1h30m\", \"90s\")"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("{text:?}: {} is too large", &rest[..digits]))?;
        let Some(u) = rest[digits..].chars().next() else {
            return Err(format!("{text:?}: {n} has no unit (d, h, m or s)"));
        };
        let Some(pos) = units.iter().position(|(c, _)| *c == u) else {
            return Err(format!("{text:?}: unknown unit {u:?} (d, h, m or s)"));
        };
        if pos < next_unit {
            return Err(format!("{text:?}: units must come in the order d, h, m, s, each once"));
        }
        next_unit = pos + 1;
        total = n
            .checked_mul(units[pos].1)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = &rest[digits + u.len_utf8()..];
    }
    Ok(total)
}

/// A duration as `parse_duration_s` reads it, in its largest exact units (`"1h30m"`, `"0s"`).
pub fn format_duration_s(mut s: i64) -> String {
    if s <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if s >= size {
            out += &(s / size).to_string();
            out.push(unit);
            s %= size;
        }
    }
    out
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

    #[test]
    fn durations_parse_and_print_back() {
        for (text, s) in [
            ("0", 0),
            ("3600", 3600),
            ("6h", 21_600),
            ("1h30m", 5_400),
            ("90s", 90),
            ("2d", 172_800),
            ("1d2h3m4s", 93_784),
        ] {
            assert_eq!(super::parse_duration_s(text), Ok(s), "{text}");
            assert_eq!(super::parse_duration_s(&super::format_duration_s(s)), Ok(s), "{text} back");
        }
        assert_eq!(super::format_duration_s(5_400), "1h30m");
        for bad in ["", "-5", "h", "6x", "30m1h", "1h1h", "99999999999999999999d", "9223372036854775807d", "5 m"] {
            assert!(super::parse_duration_s(bad).is_err(), "{bad:?} accepted");
        }
    }
}
