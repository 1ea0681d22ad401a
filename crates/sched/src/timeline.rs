//! Capacity over time for one pool: free units per slot over a rolling horizon.
//!
//! Invariant: `0 <= free[s] <= size` for every slot, after every operation; a reservation
//! either applies to every slot of its window or to none.

use serde::{Deserialize, Serialize};

/// A reservation of `units` for slots `[start, end)`. `end` may lie beyond the horizon: the
/// part beyond is applied when the horizon advances over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reservation {
    pub start: i64,
    pub end: i64,
    pub units: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    #[error("only {free} of {wanted} units are free at slot {slot}")]
    Insufficient { slot: i64, free: u32, wanted: u32 },
    #[error("releasing {units} units at slot {slot} would exceed the pool's size {size}")]
    OverRelease { slot: i64, units: u32, size: u32 },
    #[error("empty or inverted window [{start}, {end})")]
    BadWindow { start: i64, end: i64 },
    #[error("a background load has 96 slots of a day, not {len}")]
    BadBackground { len: usize },
    #[error("a background load of {units} units exceeds the pool's size {size}")]
    BackgroundOverSize { units: u32, size: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    size: u32,
    /// Absolute slot of `free[0]`.
    base: i64,
    free: Vec<u32>,
    /// Lowest value in `free`: when a request fits under it, every window fits.
    min_free: u32,
    /// Reservations reaching past the horizon's end, applied as it advances.
    long: Vec<Reservation>,
    /// Background load: units held by work outside the scheduler at each 15-minute slot of the
    /// Beijing day (96 entries), or empty for none. Free units never exceed the size less it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    background: Vec<u32>,
}

impl Timeline {
    pub fn new(size: u32, base: i64, slots: usize) -> Timeline {
        Timeline { size, base, free: vec![size; slots], min_free: size, long: vec![], background: vec![] }
    }

    /// Units free at slot `s` when nothing is reserved: the size less the background load.
    pub fn capacity_at(&self, s: i64) -> u32 {
        if self.background.is_empty() {
            return self.size;
        }
        let i = crate::slots::beijing_slot_of_day(s);
        self.size.saturating_sub(self.background.get(i).copied().unwrap_or(0))
    }

    /// Sets the background load: `units[k]` held at the k-th 15-minute slot of every Beijing
    /// day (96 entries, each at most the size). Reservations already made keep their units; a
    /// slot they fill beyond the new capacity has 0 free.
    pub fn set_background(&mut self, units: Vec<u32>) -> Result<(), TimelineError> {
        if units.len() != crate::slots::SLOTS_PER_DAY {
            return Err(TimelineError::BadBackground { len: units.len() });
        }
        if let Some(&u) = units.iter().find(|u| **u > self.size) {
            return Err(TimelineError::BackgroundOverSize { units: u, size: self.size });
        }
        let before: Vec<u32> = (0..self.free.len()).map(|i| self.capacity_at(self.base + i as i64)).collect();
        self.background = units;
        for (i, cap_before) in before.into_iter().enumerate() {
            let used = cap_before - self.free[i].min(cap_before);
            self.free[i] = self.capacity_at(self.base + i as i64).saturating_sub(used);
        }
        self.min_free = self.free.iter().copied().min().unwrap_or(self.size);
        Ok(())
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub fn base(&self) -> i64 {
        self.base
    }

    pub fn end(&self) -> i64 {
        self.base + self.free.len() as i64
    }

    pub fn min_free(&self) -> u32 {
        self.min_free
    }

    /// Free units at absolute slot `s` (full size outside the horizon's past, 0 never assumed).
    pub fn free_at(&self, s: i64) -> u32 {
        self.index(s).map_or(self.size, |i| self.free[i])
    }

    fn index(&self, s: i64) -> Option<usize> {
        let i = s - self.base;
        (0..self.free.len() as i64).contains(&i).then_some(i as usize)
    }

    /// The window clipped to the horizon, as indices.
    fn clip(&self, start: i64, end: i64) -> std::ops::Range<usize> {
        let lo = (start - self.base).clamp(0, self.free.len() as i64) as usize;
        let hi = (end - self.base).clamp(0, self.free.len() as i64) as usize;
        lo..hi.max(lo)
    }

    /// True when `units` are free in every slot of `[start, end)` inside the horizon.
    pub fn fits(&self, start: i64, end: i64, units: u32) -> bool {
        units <= self.min_free || self.free[self.clip(start, end)].iter().all(|f| *f >= units)
    }

    /// Length of the run of slots with at least `units` free starting at each index, written
    /// into `out` (index = slot − base). Lets a caller test many starts in one pass.
    pub fn runs(&self, units: u32, out: &mut Vec<u32>) {
        out.clear();
        out.resize(self.free.len(), 0);
        let mut run = 0u32;
        for i in (0..self.free.len()).rev() {
            run = if self.free[i] >= units { run + 1 } else { 0 };
            out[i] = run;
        }
    }

    pub fn reserve(&mut self, r: Reservation) -> Result<(), TimelineError> {
        if r.end <= r.start {
            return Err(TimelineError::BadWindow { start: r.start, end: r.end });
        }
        let range = self.clip(r.start, r.end);
        if let Some(i) = range.clone().find(|&i| self.free[i] < r.units) {
            return Err(TimelineError::Insufficient {
                slot: self.base + i as i64,
                free: self.free[i],
                wanted: r.units,
            });
        }
        for i in range {
            self.free[i] -= r.units;
        }
        if r.end > self.end() {
            self.long.push(r);
        }
        self.min_free = self.free.iter().copied().min().unwrap_or(self.size);
        Ok(())
    }

    pub fn release(&mut self, r: Reservation) -> Result<(), TimelineError> {
        if r.end <= r.start {
            return Err(TimelineError::BadWindow { start: r.start, end: r.end });
        }
        let range = self.clip(r.start, r.end);
        if let Some(i) = range.clone().find(|&i| self.free[i] + r.units > self.capacity_at(self.base + i as i64)) {
            return Err(TimelineError::OverRelease { slot: self.base + i as i64, units: r.units, size: self.size });
        }
        for i in range {
            self.free[i] += r.units;
        }
        if let Some(pos) = self.long.iter().position(|x| *x == r) {
            self.long.swap_remove(pos);
        }
        self.min_free = self.free.iter().copied().min().unwrap_or(self.size);
        Ok(())
    }

    /// Moves the horizon so it starts at `new_base`: past slots drop off, new slots appear
    /// with full capacity less the long reservations that cover them.
    pub fn advance(&mut self, new_base: i64) {
        if new_base <= self.base {
            return;
        }
        let len = self.free.len();
        let old_end = self.end();
        let shift = ((new_base - self.base) as usize).min(len);
        self.free.drain(..shift);
        self.base = new_base;
        let kept = self.free.len();
        for i in kept..len {
            let cap = self.capacity_at(new_base + i as i64);
            self.free.push(cap);
        }
        let first_new = old_end.max(new_base);
        for r in &self.long {
            for s in r.start.max(first_new)..r.end.min(self.end()) {
                if let Some(i) = self.index(s) {
                    self.free[i] = self.free[i].saturating_sub(r.units);
                }
            }
        }
        let end = self.end();
        self.long.retain(|r| r.end > end);
        self.min_free = self.free.iter().copied().min().unwrap_or(self.size);
    }

    /// Units in use at slot `s`, background included.
    pub fn used_at(&self, s: i64) -> u32 {
        self.size - self.free_at(s).min(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_release_and_bounds() {
        let mut t = Timeline::new(10, 100, 8);
        t.reserve(Reservation { start: 101, end: 104, units: 6 }).expect("fits");
        assert_eq!(t.free_at(100), 10);
        assert_eq!(t.free_at(101), 4);
        assert_eq!(t.min_free(), 4);
        assert!(!t.fits(102, 105, 5));
        assert!(t.fits(104, 108, 10));
        let err = t.reserve(Reservation { start: 103, end: 106, units: 5 }).expect_err("too big");
        assert_eq!(err, TimelineError::Insufficient { slot: 103, free: 4, wanted: 5 });
        assert_eq!(t.free_at(104), 10, "a refused reservation changes nothing");
        t.release(Reservation { start: 101, end: 104, units: 6 }).expect("release");
        assert_eq!(t.min_free(), 10);
        assert!(t.release(Reservation { start: 101, end: 102, units: 1 }).is_err(), "over-release refused");
    }

    #[test]
    fn runs_count_consecutive_free_slots() {
        let mut t = Timeline::new(4, 0, 6);
        t.reserve(Reservation { start: 2, end: 3, units: 3 }).expect("fits");
        let mut runs = vec![];
        t.runs(2, &mut runs);
        assert_eq!(runs, vec![2, 1, 0, 3, 2, 1]);
    }

    #[test]
    fn long_reservations_carry_over_when_advancing() {
        let mut t = Timeline::new(8, 0, 4);
        t.reserve(Reservation { start: 2, end: 10, units: 5 }).expect("fits");
        assert_eq!(t.free_at(3), 3);
        t.advance(3);
        assert_eq!((t.base(), t.end()), (3, 7));
        for s in 3..7 {
            assert_eq!(t.free_at(s), 3, "slot {s}");
        }
        t.advance(9);
        assert_eq!(t.free_at(9), 3);
        assert_eq!(t.free_at(10), 8);
        t.advance(20);
        assert_eq!(t.min_free(), 8);
    }

    #[test]
    fn background_load_follows_the_beijing_day_and_bounds_releases() {
        // slot 64 (16:00 UTC) is 00:00 in Beijing: index 0 of the background
        let mut t = Timeline::new(10, 64, 8);
        let mut bg = vec![2; 96];
        bg[1] = 7;
        t.set_background(bg).expect("valid");
        assert_eq!(t.free_at(64), 8);
        assert_eq!(t.free_at(65), 3);
        assert_eq!(t.used_at(65), 7);
        assert!(t.reserve(Reservation { start: 64, end: 66, units: 4 }).is_err(), "slot 65 has 3 free");
        t.reserve(Reservation { start: 64, end: 66, units: 3 }).expect("fits");
        assert!(t.release(Reservation { start: 66, end: 67, units: 1 }).is_err(), "never above capacity");
        t.release(Reservation { start: 64, end: 66, units: 3 }).expect("release");
        t.advance(64 + 96);
        assert_eq!((t.free_at(64 + 96), t.free_at(65 + 96)), (8, 3), "the next day has the same load");
        assert!(t.set_background(vec![11; 96]).is_err(), "above the size");
        assert!(t.set_background(vec![1; 95]).is_err(), "not a day");
    }
}
