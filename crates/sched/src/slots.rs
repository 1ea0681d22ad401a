//! Time in slots: the scheduler's unit of time is a 15-minute slot, counted from the Unix epoch.
//! Tariffs and green shares follow Beijing time (UTC+8), which has no daylight saving.

use suanwang_core::{Season, Ts};

pub const SLOT_SECONDS: i64 = 900;
pub const SLOT_MS: i64 = SLOT_SECONDS * 1000;
pub const SLOTS_PER_HOUR: i64 = 4;
pub const SLOTS_PER_DAY: usize = 96;
/// Beijing is 8 hours (32 slots) ahead of UTC.
const BEIJING_OFFSET_SLOTS: i64 = 32;

/// The slot containing `t`.
pub fn slot_of(t: Ts) -> i64 {
    t.0.div_euclid(SLOT_MS)
}

/// The first slot starting at or after `t`.
pub fn slot_at_or_after(t: Ts) -> i64 {
    t.0.div_euclid(SLOT_MS) + i64::from(t.0.rem_euclid(SLOT_MS) != 0)
}

pub fn slot_start(slot: i64) -> Ts {
    Ts(slot.saturating_mul(SLOT_MS))
}

/// Slot of the Beijing day, 0..96.
pub fn beijing_slot_of_day(slot: i64) -> usize {
    (slot + BEIJING_OFFSET_SLOTS).rem_euclid(SLOTS_PER_DAY as i64) as usize
}

/// Season of the Beijing calendar date containing `slot`.
pub fn season_of(slot: i64) -> Season {
    let days = (slot + BEIJING_OFFSET_SLOTS).div_euclid(SLOTS_PER_DAY as i64);
    Season::of_month(civil_month(days))
}

/// Month (1–12) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_month(days: i64) -> u8 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    (if mp < 10 { mp + 3 } else { mp - 9 }) as u8
}

/// Slots needed to cover `seconds` (at least one).
pub fn slots_for(seconds: i64) -> i64 {
    (seconds.max(1) + SLOT_SECONDS - 1) / SLOT_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_arithmetic() {
        let t = Ts::parse("2026-11-26T00:00:00Z").expect("valid");
        let s = slot_of(t);
        assert_eq!(slot_start(s), t);
        assert_eq!(slot_at_or_after(Ts(t.0 + 1)), s + 1);
        assert_eq!(slot_at_or_after(t), s);
        // 00:00 UTC is 08:00 in Beijing: slot 32 of the Beijing day
        assert_eq!(beijing_slot_of_day(s), 32);
        assert_eq!(season_of(s), Season::Autumn);
        // 2026-11-30T16:00Z is 2026-12-01T00:00 in Beijing: winter
        assert_eq!(season_of(slot_of(Ts::parse("2026-11-30T16:00:00Z").expect("valid"))), Season::Winter);
        assert_eq!(season_of(slot_of(Ts::parse("2026-07-01T00:00:00Z").expect("valid"))), Season::Summer);
        assert_eq!(slots_for(1), 1);
        assert_eq!(slots_for(900), 1);
        assert_eq!(slots_for(901), 2);
    }

    #[test]
    fn civil_month_matches_known_dates() {
        // 2000-03-01 is day 11017; 2024-02-29 is day 19782
        assert_eq!(civil_month(11_017), 3);
        assert_eq!(civil_month(19_782), 2);
        assert_eq!(civil_month(0), 1);
    }
}
