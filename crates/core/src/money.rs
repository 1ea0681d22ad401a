//! Money: integer fen (1/100 CNY). Never a float.

use serde::{Deserialize, Serialize};

/// An amount of money in fen. Arithmetic is checked: overflow is an error, never a wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn fen(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_mul(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).map(Money)
    }
}

impl std::fmt::Display for Money {
    /// `¥12.34`: yuan with two decimals, from integer fen.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}¥{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::Money;

    #[test]
    fn displays_yuan_and_checks_overflow() {
        assert_eq!(Money(12_345).to_string(), "¥123.45");
        assert_eq!(Money(-5).to_string(), "-¥0.05");
        assert_eq!(Money(i64::MAX).checked_add(Money(1)), None);
        assert_eq!(Money(3).checked_mul(4), Some(Money(12)));
    }
}
