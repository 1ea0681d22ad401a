//! Capacity never goes negative or above a pool's size, whatever the sequence of operations.

use std::sync::Arc;

use proptest::prelude::*;
use suanwang_sched::slots::slot_of;
use suanwang_sched::{Config, Policy, PoolReservation, Scheduler, workload};

use super::{start, tight};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Place, release and advance in random order; after every step every slot of every pool
    /// holds exactly `size − Σ active reservations covering it`, within `[0, size]`.
    #[test]
    fn free_units_stay_in_bounds(seed in any::<u64>(), ops in prop::collection::vec(0u8..10, 20..80)) {
        let net = tight(300, 4);
        let policy = Policy::named("fastest", &net.policy).expect("policy");
        let mut sched = Scheduler::new(Arc::clone(&net), start(), Config::default());
        let jobs = workload::mix(&net, seed, ops.len(), start(), 12 * 3600);
        let mut active: Vec<PoolReservation> = vec![];
        for (op, (at, job)) in ops.iter().zip(&jobs) {
            sched.advance(*at);
            match op {
                0..=6 => {
                    if let Ok(p) = sched.place(job, *at, &policy) {
                        active.push(p.reservation);
                    }
                }
                7 | 8 if !active.is_empty() => {
                    let r = active.swap_remove((seed as usize + active.len()) % active.len());
                    prop_assert!(sched.release(&r).is_ok());
                }
                _ => {
                    // double release of something not held must be refused, never corrupt
                    if let Some(r) = active.first() {
                        let base = sched.timeline(r.pool).base();
                        let mut bogus = *r;
                        bogus.window = suanwang_sched::Reservation { start: base, end: base + 1, units: u32::MAX / 2 };
                        prop_assert!(sched.release(&bogus).is_err());
                    }
                }
            }
            let now_slot = slot_of(*at);
            for pool in 0..sched.pool_count() {
                let t = sched.timeline(pool);
                for s in t.base()..t.end() {
                    let held: u64 = active
                        .iter()
                        .filter(|r| r.pool == pool && r.window.start <= s && s < r.window.end)
                        .map(|r| u64::from(r.window.units))
                        .sum();
                    let free = t.free_at(s);
                    prop_assert!(free <= t.size());
                    prop_assert_eq!(u64::from(free), u64::from(t.size()) - held, "pool {} slot {} (now {})", pool, s, now_slot);
                }
            }
        }
    }
}
