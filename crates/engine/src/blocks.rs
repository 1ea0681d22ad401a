//! Reserved capacity (issue 16 item 3, R1 enclaves 飞地, R4 包年包月): a contract's block of units
//! held in one pool's timeline for its holder over its window.
//!
//! The block's holding over time is a step function kept as disjoint, time-ordered rectangles
//! (`Reservation`s), each committed to the pool's timeline as it is. Changing the holding
//! releases the old rectangles and commits the new ones — per slot the block never holds more
//! than before except by a give-back that was committed first — so the timeline's count stays
//! exact (and a rectangle reaching past the horizon is released as the very one committed).

use serde::{Deserialize, Serialize};
use suanwang_sched::{PoolReservation, Reservation, Scheduler};

/// A contract's reserved block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    /// The tenant whose jobs on the contract use it first.
    pub holder: String,
    /// The pool (index into the scheduler's pools) it is held in.
    pub pool: usize,
    /// The window, slots `[start, end)`.
    pub start: i64,
    pub end: i64,
    /// What it holds now: disjoint rectangles in time order (units > 0).
    pub parts: Vec<Reservation>,
}

/// A step function over slots as disjoint rectangles: the value at slot `s`.
fn value_at(parts: &[Reservation], s: i64) -> u32 {
    parts.iter().find(|p| p.start <= s && s < p.end).map_or(0, |p| p.units)
}

/// `parts` with `f` applied over `[a, b)` (gaps count as 0), as disjoint rectangles with
/// units > 0, merged where neighbours are equal.
fn apply(parts: &[Reservation], from: i64, to: i64, f: impl Fn(u32) -> u32) -> Vec<Reservation> {
    let mut cuts: Vec<i64> = parts.iter().flat_map(|p| [p.start, p.end]).chain([from, to]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Reservation> = vec![];
    for pair in cuts.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let old = value_at(parts, start);
        let units = if start >= from && end <= to { f(old) } else { old };
        if units == 0 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == start && last.units == units => last.end = end,
            _ => out.push(Reservation { start, end, units }),
        }
    }
    out
}

impl Block {
    /// Replaces the holding by `parts` in the timeline (release the old, commit the new).
    /// The new holding never exceeds the old at any slot, except where the difference was
    /// committed beforehand by the caller, so the commits cannot fail; if one ever did, the
    /// block keeps what it could commit.
    fn replace(&mut self, sched: &mut Scheduler, parts: Vec<Reservation>) {
        self.lift(sched);
        self.parts = parts;
        self.restore(sched);
    }

    /// Holds `units` over `[start, end)` where `pool` has them, slot by slot (a block is what
    /// fits: a seller whose capacity is taken at some hours holds less there).
    pub fn new(sched: &mut Scheduler, holder: &str, pool: usize, units: u32, start: i64, end: i64) -> Block {
        let timeline = sched.timeline(pool);
        let last = timeline.end();
        // within the horizon what is free, slot by slot; beyond it nothing is known yet: the
        // whole block
        let mut parts = vec![];
        for s in start..end.min(last) {
            parts = apply(&parts, s, s + 1, |_| units.min(timeline.free_at(s)));
        }
        if end > last {
            parts = apply(&parts, start.max(last), end, |_| units);
        }
        let mut block = Block { holder: holder.to_string(), pool, start, end, parts: vec![] };
        block.replace(sched, parts);
        block
    }

    /// Units held at slot `s`.
    pub fn held_at(&self, s: i64) -> u32 {
        value_at(&self.parts, s)
    }

    /// Lets the whole holding go (for a placement that may use it); `restore` or `take` after.
    pub fn lift(&self, sched: &mut Scheduler) {
        for p in &self.parts {
            let _ = sched.release(&PoolReservation { pool: self.pool, window: *p });
        }
    }

    /// After `lift`: commits the holding again as it was.
    pub fn restore(&mut self, sched: &mut Scheduler) {
        let parts = std::mem::take(&mut self.parts);
        self.parts = parts
            .into_iter()
            .filter(|p| sched.commit(&PoolReservation { pool: self.pool, window: *p }).is_ok())
            .collect();
    }

    /// After `lift`: a holder's job took `job` (its reservation, committed) — the block gives
    /// up to its units over the job's window and holds the rest again. Returns what it gave,
    /// as rectangles (for `give_back`).
    pub fn take(&mut self, sched: &mut Scheduler, job: &PoolReservation) -> Vec<Reservation> {
        if job.pool != self.pool {
            self.restore(sched);
            return vec![];
        }
        let w = job.window;
        let given = apply(&self.parts, w.start, w.end, |v| v.min(w.units));
        let given: Vec<Reservation> = given.into_iter().filter_map(|g| clip(g, w.start, w.end)).collect();
        self.parts = apply(&self.parts, w.start, w.end, |v| v - v.min(w.units));
        self.restore(sched);
        given
    }

    /// A holder's job ended before its window did: what it took from slot `from` on comes back
    /// to the block, where the pool still has it free.
    pub fn give_back(&mut self, sched: &mut Scheduler, taken: &[Reservation], from: i64) {
        let (lo, hi) = (from.max(self.start), self.end);
        for t in taken.iter().filter_map(|t| clip(*t, lo, hi)) {
            if sched.commit(&PoolReservation { pool: self.pool, window: t }).is_err() {
                continue;
            }
            // the rectangle is held now: fold it into the block's shape (same total per slot)
            let parts = apply(&self.parts, t.start, t.end, |v| v + t.units);
            let _ = sched.release(&PoolReservation { pool: self.pool, window: t });
            self.replace(sched, parts);
        }
    }
}

/// `r` within `[a, b)`, or `None` when nothing is left.
fn clip(r: Reservation, from: i64, to: i64) -> Option<Reservation> {
    let (start, end) = (r.start.max(from), r.end.min(to));
    (start < end && r.units > 0).then_some(Reservation { start, end, units: r.units })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: i64, end: i64, units: u32) -> Reservation {
        Reservation { start, end, units }
    }

    #[test]
    fn a_step_function_splits_and_merges() {
        let parts = vec![r(0, 10, 4)];
        assert_eq!(apply(&parts, 2, 5, |v| v - 3), vec![r(0, 2, 4), r(2, 5, 1), r(5, 10, 4)]);
        assert_eq!(apply(&parts, 2, 5, |v| v - 4), vec![r(0, 2, 4), r(5, 10, 4)]);
        // a give-back over a gap and a part: merged where equal
        let split = vec![r(0, 2, 4), r(5, 10, 4)];
        assert_eq!(apply(&split, 2, 5, |v| v + 4), vec![r(0, 10, 4)]);
        assert_eq!(apply(&split, 8, 12, |v| v + 1), vec![r(0, 2, 4), r(5, 8, 4), r(8, 10, 5), r(10, 12, 1)]);
    }
}
