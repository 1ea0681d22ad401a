//! The batch optimiser: never worse than greedy; equal to brute force on small instances.

use std::sync::Arc;

use proptest::prelude::*;
use suanwang_core::Network;
use suanwang_sched::batch::{self, BatchConfig, Instance};
use suanwang_sched::{Config, Policy, Scheduler, workload};

use super::{start, tight};

fn instance(net: &Arc<Network>, seed: u64, n: usize, keep: usize) -> (Scheduler, Instance) {
    let policy = Policy::named(["balanced", "cheapest", "greenest"][(seed % 3) as usize], &net.policy).expect("policy");
    let jobs: Vec<_> = workload::mix(net, seed, n, start(), 0).into_iter().map(|(_, j)| j).collect();
    let mut sched = Scheduler::new(Arc::clone(net), start(), Config::default());
    let inst = Instance::build(&mut sched, &jobs, start(), &policy, keep);
    (sched, inst)
}

/// Brute force: every combination of options (and "unplaced"), feasibility checked by
/// committing on a fresh scheduler.
fn brute_force(net: &Arc<Network>, inst: &Instance) -> f64 {
    let n = inst.options.len();
    let counts: Vec<usize> = (0..n).map(|j| inst.options[j].as_ref().map_or(0, |o| o.choices.len()) + 1).collect();
    let mut idx = vec![0usize; n];
    let mut best = f64::INFINITY;
    loop {
        let assign: Vec<Option<usize>> =
            idx.iter().enumerate().map(|(j, &i)| (i + 1 < counts[j]).then_some(i)).collect();
        let mut s = Scheduler::new(Arc::clone(net), start(), Config::default());
        let feasible = assign.iter().enumerate().all(|(j, a)| {
            a.is_none_or(|c| s.commit(&inst.options[j].as_ref().expect("has options").choices[c].reservation).is_ok())
        });
        if feasible {
            best = best.min(inst.total(&assign));
        }
        let mut k = 0;
        loop {
            if k == n {
                return best;
            }
            idx[k] += 1;
            if idx[k] < counts[k] {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// On random instances where capacity binds, the batch total is never above greedy's.
    #[test]
    fn batch_never_worse_than_greedy(seed in any::<u64>(), n in 20usize..120) {
        let net = tight(400, 2);
        let (mut sched, inst) = instance(&net, seed, n, batch::DEFAULT_KEEP);
        let out = batch::optimise(&mut sched, &inst, &BatchConfig { exact_limit: 0.0, ..BatchConfig::default() });
        prop_assert!(out.total <= out.greedy_total + 1e-9, "batch {} > greedy {}", out.total, out.greedy_total);
        // and what it reports is what it committed: every assigned reservation is held
        for r in out.assignment.iter().flatten() {
            prop_assert!(sched.release(r).is_ok());
        }
    }

    /// On small instances the batch result is the brute-force optimum.
    #[test]
    fn batch_equals_brute_force_on_small_instances(seed in any::<u64>(), n in 2usize..5) {
        let net = tight(3000, 1);
        let (mut sched, inst) = instance(&net, seed, n, 4);
        let want = brute_force(&net, &inst);
        let out = batch::optimise(&mut sched, &inst, &BatchConfig::default());
        prop_assert_eq!(out.method, "exact");
        prop_assert!((out.total - want).abs() < 1e-9, "batch {} vs brute force {}", out.total, want);
    }
}
