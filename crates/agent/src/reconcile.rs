//! What the agent does next, as a pure function of what runs here and what is assigned here
//! (issue 11 item 5). No IO, no clock: the loop (`runner`) observes, calls [`reconcile`], and
//! carries out the actions in the order given.
//!
//! The order is the loop's discipline: first stop what is no longer assigned here (withdrawn
//! runs, and once after a start the runs an earlier instance left), then set aside directories
//! that hold another run, then adopt or start what is assigned, and last report what ended — so
//! a moved job's old attempt never runs beside its new one on this agent.

use std::collections::BTreeMap;

use suanwang_api::agent::Assignment;

/// One attempt of one job: `(job id, attempt)`.
pub type RunKey = (u64, u32);

/// What the agent knows of a run it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// Its executor says it runs (or has not answered yet).
    Running,
    /// It ended and its report is not yet accepted.
    Ended,
    /// Its report was taken (or refused for good): nothing more to do for it.
    Reported,
}

/// A run directory on disk (`<data>/<job>-<attempt>`) that no run followed here belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnDisk {
    /// The run id it records (the control plane's id of the attempt it started).
    pub run_id: Option<String>,
    /// Its run was reported (by this agent or an earlier instance).
    pub reported: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop a run this agent follows: it is no longer assigned here (cancelled, or moved
    /// after this site was lost).
    Withdraw(RunKey),
    /// Forget a reported run that is no longer assigned.
    Forget(RunKey),
    /// Stop what an earlier instance of this agent left running in this directory: it is not
    /// assigned here any more (first round after a start only).
    StopLeft(RunKey),
    /// The directory of an assigned run holds another run (of another control plane, or from
    /// before run ids): stop that and move it aside; it is never adopted.
    SetAside(RunKey),
    /// Follow the run an earlier instance started for this assignment: its directory records
    /// the run id the control plane gives this attempt.
    Adopt(Assignment),
    /// Start the assignment.
    Start(Assignment),
    /// Report how a followed run ended.
    Report(RunKey),
}

/// The actions that bring what runs here (`followed`, and the directories on disk no followed
/// run owns, `on_disk`) in line with what is `assigned`. `first_round`: the agent just
/// started, so directories that are neither assigned nor reported hold runs an earlier
/// instance left, which are stopped.
pub fn reconcile(
    followed: &BTreeMap<RunKey, Followed>,
    assigned: &[Assignment],
    on_disk: &BTreeMap<RunKey, OnDisk>,
    first_round: bool,
) -> Vec<Action> {
    let is_assigned = |k: &RunKey| assigned.iter().any(|a| (a.id, a.attempt) == *k);
    let mut actions = vec![];
    for (key, state) in followed {
        if !is_assigned(key) {
            actions.push(match state {
                Followed::Reported => Action::Forget(*key),
                Followed::Running | Followed::Ended => Action::Withdraw(*key),
            });
        }
    }
    if first_round {
        for (key, disk) in on_disk {
            if !followed.contains_key(key) && !is_assigned(key) && !disk.reported && disk.run_id.is_some() {
                actions.push(Action::StopLeft(*key));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut starts = vec![];
    for a in assigned {
        let key = (a.id, a.attempt);
        if followed.contains_key(&key) || !seen.insert(key) {
            continue;
        }
        match on_disk.get(&key) {
            Some(d) if !a.run_id.is_empty() && d.run_id.as_deref() == Some(a.run_id.as_str()) => {
                starts.push(Action::Adopt(a.clone()));
            }
            Some(_) => {
                actions.push(Action::SetAside(key));
                starts.push(Action::Start(a.clone()));
            }
            None => starts.push(Action::Start(a.clone())),
        }
    }
    actions.extend(starts);
    for (key, state) in followed {
        if *state == Followed::Ended && is_assigned(key) {
            actions.push(Action::Report(*key));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(id: u64, attempt: u32, run_id: &str) -> Assignment {
        Assignment {
            id,
            attempt,
            site: "s".into(),
            command: "true".into(),
            args: vec![],
            env: BTreeMap::new(),
            cores: 1,
            memory_mib: 64,
            time_limit_s: 60,
            checkpoint_s: None,
            tenant: "t".into(),
            run_id: run_id.into(),
        }
    }

    fn disk(run_id: &str, reported: bool) -> OnDisk {
        OnDisk { run_id: Some(run_id.into()), reported }
    }

    /// `check(followed, assigned, on_disk, first_round, expected)`: table-driven (`assigned`
    /// by value so cases read `vec![a]`).
    #[allow(clippy::needless_pass_by_value)]
    fn check(
        followed: &[(RunKey, Followed)],
        assigned: Vec<Assignment>,
        on_disk: &[(RunKey, OnDisk)],
        first_round: bool,
        expected: &[Action],
    ) {
        let f: BTreeMap<_, _> = followed.iter().copied().collect();
        let d: BTreeMap<_, _> = on_disk.iter().cloned().collect();
        assert_eq!(reconcile(&f, &assigned, &d, first_round), expected);
    }

    #[test]
    fn new_work_starts_and_what_runs_on_is_left_alone() {
        let a = assignment(1, 1, "r1");
        check(&[], vec![a.clone()], &[], false, &[Action::Start(a.clone())]);
        check(&[((1, 1), Followed::Running)], vec![a], &[], false, &[]);
        check(&[], vec![], &[], false, &[]);
    }

    #[test]
    fn a_withdrawn_run_is_stopped_before_its_successor_starts() {
        // job 1 moved away and came back as attempt 2: attempt 1 stops first
        let a2 = assignment(1, 2, "r2");
        check(
            &[((1, 1), Followed::Running)],
            vec![a2.clone()],
            &[],
            false,
            &[Action::Withdraw((1, 1)), Action::Start(a2)],
        );
        // an ended run that is no longer assigned is withdrawn (no report: it would be stale)
        check(&[((3, 1), Followed::Ended)], vec![], &[], false, &[Action::Withdraw((3, 1))]);
        check(&[((3, 1), Followed::Reported)], vec![], &[], false, &[Action::Forget((3, 1))]);
    }

    #[test]
    fn an_ended_run_is_reported_once_and_a_reported_one_is_not_started_again() {
        let a = assignment(1, 1, "r1");
        check(&[((1, 1), Followed::Ended)], vec![a.clone()], &[], false, &[Action::Report((1, 1))]);
        // the assignments may still list it for a moment after its report: nothing to do
        check(&[((1, 1), Followed::Reported)], vec![a], &[], false, &[]);
    }

    #[test]
    fn after_a_restart_a_run_is_adopted_only_with_its_run_id() {
        let a = assignment(1, 1, "r1");
        check(&[], vec![a.clone()], &[((1, 1), disk("r1", false))], true, &[Action::Adopt(a.clone())]);
        // another control plane's run (or one from before run ids) is set aside, never adopted
        check(
            &[],
            vec![a.clone()],
            &[((1, 1), disk("other", false))],
            false,
            &[Action::SetAside((1, 1)), Action::Start(a.clone())],
        );
        check(
            &[],
            vec![a.clone()],
            &[((1, 1), OnDisk::default())],
            false,
            &[Action::SetAside((1, 1)), Action::Start(a.clone())],
        );
        // an assignment without a run id never adopts
        let anonymous = assignment(1, 1, "");
        check(
            &[],
            vec![anonymous.clone()],
            &[((1, 1), OnDisk { run_id: Some(String::new()), reported: false })],
            false,
            &[Action::SetAside((1, 1)), Action::Start(anonymous)],
        );
    }

    #[test]
    fn left_runs_are_stopped_on_the_first_round_only() {
        let a = assignment(2, 1, "r2");
        let left = [((1, 1), disk("r1", false)), ((5, 1), disk("r5", true)), ((2, 1), disk("r2", false))];
        check(&[], vec![a.clone()], &left, true, &[Action::StopLeft((1, 1)), Action::Adopt(a.clone())]);
        check(&[], vec![a.clone()], &left, false, &[Action::Adopt(a)]);
    }

    #[test]
    fn a_duplicated_assignment_starts_once() {
        let a = assignment(1, 1, "r1");
        check(&[], vec![a.clone(), a.clone()], &[], false, &[Action::Start(a)]);
    }

    #[test]
    fn stops_come_before_starts_and_reports_last() {
        let (a, b) = (assignment(1, 1, "r1"), assignment(2, 1, "r2"));
        let followed = [((1, 1), Followed::Ended), ((9, 1), Followed::Running)];
        check(
            &followed,
            vec![a, b.clone()],
            &[((4, 1), disk("r4", false))],
            true,
            &[Action::Withdraw((9, 1)), Action::StopLeft((4, 1)), Action::Start(b), Action::Report((1, 1))],
        );
    }
}
