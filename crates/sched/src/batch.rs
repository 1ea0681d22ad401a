//! The batch optimiser: a global assignment for a window of jobs.
//!
//! Each job comes with its options (pool × start × transfer mode), scored with one fixed
//! normalisation per job (`Norm`), so the objective — the sum of the chosen options' scores,
//! plus a penalty above any score for each job left unplaced — is the same for every method.
//!
//! The problem (gangs of units held over time windows on shared pools) is an unsplittable,
//! time-indexed packing problem: NP-hard, and not a network flow — a min-cost flow is exact
//! only when every job needs one unit. So the optimiser works in three steps:
//!
//! 1. **Exact** branch and bound when the instance is small (it is then equal to brute force).
//! 2. Otherwise **greedy in arrival order** (the baseline the result is never worse than), and
//!    greedy in **regret order** (the jobs that lose most when pushed off their best option go
//!    first, larger gangs before smaller); the better of the two is kept.
//! 3. **Local improvement**: each job in turn is lifted out and put back at its best fitting
//!    option; a move is kept only when it lowers the total, so the total never rises above the
//!    baseline. Then **ejection moves**: a job blocked from a better option may displace one
//!    job in that pool when both together score lower.

use serde::Serialize;
use suanwang_core::Ts;
use suanwang_core::job::Job;

use crate::place::{Choice, JobOptions, PoolReservation, Scheduler};
use crate::policy::Policy;

/// Options kept per job: enough alternatives to route around full pools.
pub const DEFAULT_KEEP: usize = 48;
/// Exact search when the product of option counts is at most this.
pub const EXACT_LIMIT: f64 = 2e5;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchConfig {
    pub keep: usize,
    pub improvement_passes: usize,
    pub exact_limit: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { keep: DEFAULT_KEEP, improvement_passes: 4, exact_limit: EXACT_LIMIT }
    }
}

/// The outcome: an option index (into the job's choices) or `None` per job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchOutcome {
    pub assignment: Vec<Option<PoolReservation>>,
    pub total: f64,
    pub greedy_total: f64,
    pub placed: usize,
    pub greedy_placed: usize,
    /// `exact`, or `heuristic` (greedy + regret + local improvement).
    pub method: &'static str,
}

/// A batch instance: the jobs' options, fixed before optimising.
#[derive(Debug, Clone)]
pub struct Instance {
    pub options: Vec<Option<JobOptions>>,
}

impl Instance {
    /// Evaluates every job's options against the scheduler's current load.
    pub fn build(sched: &mut Scheduler, jobs: &[Job], now: Ts, policy: &Policy, keep: usize) -> Instance {
        Instance { options: jobs.iter().map(|j| sched.options(j, now, policy, keep).ok()).collect() }
    }

    fn penalty(&self, j: usize) -> f64 {
        self.options[j].as_ref().map_or(1.0, |o| o.norm.unplaced_penalty())
    }

    fn choices(&self, j: usize) -> &[Choice] {
        self.options[j].as_ref().map_or(&[], |o| o.choices.as_slice())
    }

    /// Total objective of an assignment (`Some(choice index)` per job).
    pub fn total(&self, assign: &[Option<usize>]) -> f64 {
        assign.iter().enumerate().map(|(j, a)| a.map_or_else(|| self.penalty(j), |c| self.choices(j)[c].score)).sum()
    }
}

/// Places jobs in `order`, each at its best option that fits; returns the choice per job.
fn greedy(sched: &mut Scheduler, inst: &Instance, order: &[usize]) -> Vec<Option<usize>> {
    let mut assign = vec![None; inst.options.len()];
    for &j in order {
        if let Some(c) = inst.choices(j).iter().position(|c| sched.fits(&c.reservation)) {
            // fits() was just checked on the same state
            if sched.commit(&inst.choices(j)[c].reservation).is_ok() {
                assign[j] = Some(c);
            }
        }
    }
    assign
}

fn release_all(sched: &mut Scheduler, inst: &Instance, assign: &[Option<usize>]) {
    for (j, a) in assign.iter().enumerate() {
        if let Some(c) = a {
            let _ = sched.release(&inst.choices(j)[*c].reservation);
        }
    }
}

fn commit_all(sched: &mut Scheduler, inst: &Instance, assign: &[Option<usize>]) {
    for (j, a) in assign.iter().enumerate() {
        if let Some(c) = a {
            let _ = sched.commit(&inst.choices(j)[*c].reservation);
        }
    }
}

/// Optimises the assignment of `inst`'s jobs on `sched` (whose current load is kept). On
/// return the chosen reservations are committed on `sched`.
pub fn optimise(sched: &mut Scheduler, inst: &Instance, cfg: &BatchConfig) -> BatchOutcome {
    let n = inst.options.len();
    let arrival: Vec<usize> = (0..n).collect();
    let base = greedy(sched, inst, &arrival);
    let greedy_total = inst.total(&base);
    let greedy_placed = base.iter().flatten().count();

    let space: f64 = (0..n).map(|j| (inst.choices(j).len() + 1) as f64).product();
    let (best, method) = if space <= cfg.exact_limit {
        release_all(sched, inst, &base);
        let exact = exact(sched, inst, &base, greedy_total);
        commit_all(sched, inst, &exact);
        (exact, "exact")
    } else {
        // regret order: the loss of falling back from the best option to the next site's
        let mut order: Vec<(f64, u32, usize)> = (0..n)
            .map(|j| {
                let ch = inst.choices(j);
                let regret = match ch {
                    [] => 0.0,
                    [only] => inst.penalty(j) - only.score,
                    [first, rest @ ..] => rest
                        .iter()
                        .find(|c| sched.pool_site(c.reservation.pool) != sched.pool_site(first.reservation.pool))
                        .map_or(inst.penalty(j) - first.score, |c| c.score - first.score),
                };
                let units = ch.first().map_or(0, |c| c.reservation.window.units);
                (regret, units, j)
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        let order: Vec<usize> = order.into_iter().map(|(_, _, j)| j).collect();
        release_all(sched, inst, &base);
        let by_regret = greedy(sched, inst, &order);
        let mut current = if inst.total(&by_regret) < greedy_total {
            by_regret
        } else {
            release_all(sched, inst, &by_regret);
            commit_all(sched, inst, &base);
            base
        };
        improve(sched, inst, &mut current, cfg.improvement_passes);
        (current, "heuristic")
    };
    let total = inst.total(&best);
    BatchOutcome {
        assignment: best.iter().enumerate().map(|(j, a)| a.map(|c| inst.choices(j)[c].reservation)).collect(),
        total,
        greedy_total,
        placed: best.iter().flatten().count(),
        greedy_placed,
        method,
    }
}

/// Local improvement on a committed assignment; only strictly improving moves are kept.
fn improve(sched: &mut Scheduler, inst: &Instance, assign: &mut [Option<usize>], passes: usize) {
    let n = assign.len();
    for _ in 0..passes {
        let mut improved = false;
        #[allow(clippy::needless_range_loop)] // `assign` changes inside the loop body
        for j in 0..n {
            let current = assign[j].map_or_else(|| inst.penalty(j), |c| inst.choices(j)[c].score);
            // the best option is already held, or none is better than the current one
            if assign[j] == Some(0) || inst.choices(j).first().is_none_or(|c| c.score >= current) {
                continue;
            }
            if let Some(c) = assign[j] {
                let _ = sched.release(&inst.choices(j)[c].reservation);
            }
            let better = inst.choices(j).iter().position(|c| sched.fits(&c.reservation));
            match better {
                Some(b)
                    if inst.choices(j)[b].score < current && sched.commit(&inst.choices(j)[b].reservation).is_ok() =>
                {
                    assign[j] = Some(b);
                    improved = true;
                }
                _ => {
                    if let Some(c) = assign[j] {
                        let _ = sched.commit(&inst.choices(j)[c].reservation);
                    }
                }
            }
        }
        improved |= eject(sched, inst, assign);
        if !improved {
            break;
        }
    }
}

/// Ejection moves: job `j` takes a better option blocked by one job `k` in the same pool,
/// `k` moves to its best fitting option (or is left unplaced); kept when the sum improves.
fn eject(sched: &mut Scheduler, inst: &Instance, assign: &mut [Option<usize>]) -> bool {
    let n = assign.len();
    let mut improved = false;
    // jobs by pool, to find blockers quickly
    let mut by_pool: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    for (j, a) in assign.iter().enumerate() {
        if let Some(c) = a {
            by_pool.entry(inst.choices(j)[*c].reservation.pool).or_default().push(j);
        }
    }
    for j in 0..n {
        let current_j = assign[j].map_or_else(|| inst.penalty(j), |c| inst.choices(j)[c].score);
        let limit = assign[j].unwrap_or(inst.choices(j).len()).min(4);
        for cj in 0..limit {
            let want = inst.choices(j)[cj];
            if want.score >= current_j {
                break;
            }
            let blockers: Vec<usize> = by_pool
                .get(&want.reservation.pool)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|&k| {
                            k != j
                                && assign[k].is_some_and(|c| {
                                    let w = inst.choices(k)[c].reservation.window;
                                    w.start < want.reservation.window.end && want.reservation.window.start < w.end
                                })
                        })
                        .take(8)
                        .collect()
                })
                .unwrap_or_default();
            for k in blockers {
                let Some(ck) = assign[k] else { continue };
                let current_k = inst.choices(k)[ck].score;
                // lift both out
                let _ = sched.release(&inst.choices(k)[ck].reservation);
                if let Some(c) = assign[j] {
                    let _ = sched.release(&inst.choices(j)[c].reservation);
                }
                let mut done = false;
                if sched.fits(&want.reservation) && sched.commit(&want.reservation).is_ok() {
                    let new_k = inst.choices(k).iter().position(|c| sched.fits(&c.reservation));
                    let score_k = new_k.map_or_else(|| inst.penalty(k), |c| inst.choices(k)[c].score);
                    if want.score + score_k < current_j + current_k - 1e-12
                        && new_k.is_none_or(|c| sched.commit(&inst.choices(k)[c].reservation).is_ok())
                    {
                        if let Some(v) = by_pool.get_mut(&inst.choices(k)[ck].reservation.pool) {
                            v.retain(|x| *x != k);
                        }
                        if let Some(c) = new_k {
                            by_pool.entry(inst.choices(k)[c].reservation.pool).or_default().push(k);
                        }
                        if let Some(c) = assign[j]
                            && let Some(v) = by_pool.get_mut(&inst.choices(j)[c].reservation.pool)
                        {
                            v.retain(|x| *x != j);
                        }
                        by_pool.entry(want.reservation.pool).or_default().push(j);
                        assign[j] = Some(cj);
                        assign[k] = new_k;
                        done = true;
                        improved = true;
                    } else {
                        let _ = sched.release(&want.reservation);
                    }
                }
                if done {
                    break;
                }
                if let Some(c) = assign[j] {
                    let _ = sched.commit(&inst.choices(j)[c].reservation);
                }
                let _ = sched.commit(&inst.choices(k)[ck].reservation);
            }
            if assign[j] == Some(cj) {
                break;
            }
        }
    }
    improved
}

/// Exact branch and bound over every job's options (and "unplaced"); starts from the greedy
/// solution as the incumbent. The scheduler's load is used as scratch and restored.
fn exact(
    sched: &mut Scheduler,
    inst: &Instance,
    incumbent: &[Option<usize>],
    incumbent_total: f64,
) -> Vec<Option<usize>> {
    let n = inst.options.len();
    // optimistic bound of the jobs not yet decided: each at its best option
    let best_each: Vec<f64> =
        (0..n).map(|j| inst.choices(j).first().map_or_else(|| inst.penalty(j), |c| c.score)).collect();
    let mut suffix = vec![0.0; n + 1];
    for j in (0..n).rev() {
        suffix[j] = suffix[j + 1] + best_each[j];
    }
    let mut best = incumbent.to_vec();
    let mut best_total = incumbent_total;
    let mut current = vec![None; n];
    go(0, 0.0, sched, inst, &suffix, &mut current, &mut best, &mut best_total);
    best
}

/// One level of the branch and bound: decide job `j`, then recurse.
#[allow(clippy::too_many_arguments)]
fn go(
    j: usize,
    acc: f64,
    sched: &mut Scheduler,
    inst: &Instance,
    suffix: &[f64],
    current: &mut Vec<Option<usize>>,
    best: &mut Vec<Option<usize>>,
    best_total: &mut f64,
) {
    if acc + suffix[j] >= *best_total - 1e-12 {
        return;
    }
    if j == current.len() {
        *best_total = acc;
        best.clone_from(current);
        return;
    }
    for (c, choice) in inst.choices(j).iter().enumerate() {
        if sched.fits(&choice.reservation) && sched.commit(&choice.reservation).is_ok() {
            current[j] = Some(c);
            go(j + 1, acc + choice.score, sched, inst, suffix, current, best, best_total);
            current[j] = None;
            let _ = sched.release(&choice.reservation);
        }
    }
    go(j + 1, acc + inst.penalty(j), sched, inst, suffix, current, best, best_total);
}
