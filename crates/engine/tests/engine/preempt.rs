//! Spot, preemption and fair share (issue 16, R3/R4): preemptible work pays the spot price and
//! gives its capacity to work of higher effective priority; non-preemptible work is never
//! preempted; among preemptible work the tenant that used less of its share goes first.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use suanwang_core::{Job, Network, Ts};
use suanwang_engine::{Command, Engine, EngineConfig, Event, JobState, Owner, RunOutcome};

use super::{net, spec, start};

/// An engine with one agent site "local" of 4 cores.
fn engine() -> (Engine, Network) {
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let site = super::trust::agent_site("local");
    let op = Owner { role: "operator".into(), name: "ops".into() };
    e.apply(Command::RegisterSite { site: site.clone(), owner: op, approved: true }).expect("registers");
    let with = net.with_agent_site(&site).expect("extends");
    (e, with)
}

/// A job on "local" that starts as soon as it can and runs `run_s`.
fn job(net: &Network, tenant: &str, cores: u32, run_s: u32, preemptible: bool, priority: u8) -> Job {
    spec(
        net,
        &format!(
            "name = \"j\"\ntenant = \"{tenant}\"\nkind = \"batch\"\norigin = \"beijing\"\nallowed_sites = [\"local\"]\n\
             start_within = \"0s\"\npreemptible = {preemptible}\npriority = {priority}\ncheckpoint_s = 60\n\
             [resources]\nfamily = \"general\"\ncount = {cores}\nmemory_gib = 1\n[work]\nrun_time_s = {run_s}\n\
             [run]\ncommand = \"sleep\"\n"
        ),
    )
}

fn done(wall_seconds: f64) -> RunOutcome {
    RunOutcome { succeeded: true, reason: None, cpu_seconds: 0.0, peak_memory_mib: 1.0, wall_seconds }
}

fn at(e: &mut Engine, s: i64) {
    e.advance_to(Ts(start().0 + s * 1000)).expect("forward");
}

fn preemptions(events: &[Event]) -> Vec<(u64, u64, String)> {
    events
        .iter()
        .filter_map(|ev| match ev {
            Event::Preempted { id, by, reason, .. } => Some((*id, *by, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn non_preemptible_work_takes_the_place_of_spot_work_which_pays_for_what_it_used() {
    let (mut e, net) = engine();
    let policy = suanwang_sched::Policy::BALANCED;
    let on_demand = e.plan(&job(&net, "a", 4, 3600, false, 5), &policy).expect("plans").chosen.cost.compute_fen;
    e.apply(Command::Submit { id: 1, job: Box::new(job(&net, "a", 4, 3600, true, 5)) }).expect("submit");
    at(&mut e, 1);
    assert_eq!(e.state(1), Some(JobState::Running));
    // the spot price of an idle pool is the floor: 35 % of on-demand (prices.toml), half up
    let spot = e.planned_meter(1).expect("placed").compute_fen;
    assert_eq!(spot, (on_demand * 35 + 50) / 100, "on-demand {on_demand}");
    let _ = e.take_events();
    at(&mut e, 1200);
    // 20 minutes in, work that may not wait arrives: the spot job gives way
    e.apply(Command::Submit { id: 2, job: Box::new(job(&net, "b", 2, 600, false, 5)) }).expect("submit");
    let events = e.take_events();
    let p = preemptions(&events);
    assert_eq!(p.len(), 1, "{events:?}");
    assert_eq!((p[0].0, p[0].1), (1, 2));
    assert!(p[0].2.contains("not preemptible"), "{}", p[0].2);
    let used = events.iter().find_map(|ev| match ev {
        Event::Preempted { meter, .. } => Some(*meter),
        _ => None,
    });
    let used = used.expect("a meter");
    assert!(used.ucu_hours > 0.0 && used.compute_fen > 0, "{used:?}");
    assert!(
        events.iter().any(
            |ev| matches!(ev, Event::Rescheduled { id: 1, attempt: 2, reason, .. } if reason.contains("checkpoint"))
        ),
        "{events:?}"
    );
    assert!(events.iter().any(
        |ev| matches!(ev, Event::Placed { id: 2, start_at, .. } if start_at.0 <= start().0 + 1_200_000 + 900_000)
    ));
    assert_eq!(e.counts().preempted, 1);
    assert!(e.counts().balanced());
    // the preempted attempt's report is stale: it cannot complete the job twice
    assert!(e.apply(Command::Report { id: 1, attempt: 1, outcome: done(1200.0) }).is_err());
    at(&mut e, 1201);
    e.apply(Command::Report { id: 2, attempt: 1, outcome: done(600.0) }).expect("report");
    // job 1 starts again (its next attempt) and, once done, is billed for both attempts
    at(&mut e, 3 * 3600);
    let _ = e.take_events();
    assert_eq!(e.state(1), Some(JobState::Running));
    let second = *e.planned_meter(1).expect("placed");
    e.apply(Command::Report { id: 1, attempt: 2, outcome: done(2400.0) }).expect("report");
    let outcome = e.take_events().into_iter().find_map(|ev| match ev {
        Event::Completed { outcome, .. } => Some(outcome),
        _ => None,
    });
    let outcome = outcome.expect("completed");
    assert_eq!(outcome.attempts, 2);
    // it resumed from its checkpoint: the second attempt ran the remaining 40 minutes (its
    // report says 2,400 s of a plan of 2,400 s and the checkpoint's rounding), and the bill is
    // both attempts together
    assert!(
        (outcome.meter.ucu_hours - (used.ucu_hours + second.ucu_hours)).abs() < 1e-3,
        "{outcome:?} {used:?} {second:?}"
    );
    assert!((outcome.meter.compute_fen - (used.compute_fen + second.compute_fen)).abs() <= 1, "{outcome:?}");
    assert!(outcome.meter.compute_fen > second.compute_fen);
    assert!(e.counts().balanced());
}

#[test]
fn non_preemptible_work_is_never_preempted_and_waits_instead() {
    let (mut e, net) = engine();
    e.apply(Command::Submit { id: 1, job: Box::new(job(&net, "a", 4, 3600, false, 0)) }).expect("submit");
    at(&mut e, 1);
    e.apply(Command::Submit { id: 2, job: Box::new(job(&net, "b", 2, 600, false, 9)) }).expect("submit");
    let events = e.take_events();
    assert!(preemptions(&events).is_empty(), "{events:?}");
    assert_eq!(e.state(1), Some(JobState::Running));
    // a batch job may wait for capacity: it is placed after job 1's hour
    let start2 = events.iter().find_map(|ev| match ev {
        Event::Placed { id: 2, start_at, .. } => Some(*start_at),
        _ => None,
    });
    assert!(start2.is_some_and(|s| s.0 >= start().0 + 3_600_000), "{events:?}");
    assert_eq!(e.counts().preempted, 0);
}

#[test]
fn among_spot_work_the_tenant_under_its_share_goes_first() {
    let (mut e, net) = engine();
    // tenant "heavy" uses the whole site for an hour
    e.apply(Command::Submit { id: 1, job: Box::new(job(&net, "heavy", 4, 3600, false, 5)) }).expect("submit");
    at(&mut e, 1);
    e.apply(Command::Report { id: 1, attempt: 1, outcome: done(3600.0) }).expect("report");
    // "light" used a little
    e.apply(Command::Submit { id: 2, job: Box::new(job(&net, "light", 1, 60, false, 5)) }).expect("submit");
    at(&mut e, 2);
    e.apply(Command::Report { id: 2, attempt: 1, outcome: done(60.0) }).expect("report");
    // heavy's spot job (priority 5) holds the site; light's spot job takes it over even at
    // priority 0: with equal weights, heavy's factor (¼) against light's (≈ 1) outweighs 5 of
    // the 10 priority levels
    e.apply(Command::Submit { id: 3, job: Box::new(job(&net, "heavy", 4, 3600, true, 5)) }).expect("submit");
    at(&mut e, 3);
    let _ = e.take_events();
    e.apply(Command::Submit { id: 4, job: Box::new(job(&net, "light", 2, 600, true, 0)) }).expect("submit");
    let p = preemptions(&e.take_events());
    assert_eq!(p.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), vec![(3, 4)]);
    assert!(p[0].2.contains("fair-share factor"), "{}", p[0].2);
    // …but not the other way round: heavy's next spot job waits behind light's
    at(&mut e, 4);
    e.apply(Command::Submit { id: 5, job: Box::new(job(&net, "heavy", 4, 600, true, 5)) }).expect("submit");
    assert!(preemptions(&e.take_events()).is_empty());
    // …and a high enough priority outweighs the factor: heavy at 9 against light at 0
    e.apply(Command::Submit { id: 6, job: Box::new(job(&net, "heavy", 4, 600, true, 9)) }).expect("submit");
    let p = preemptions(&e.take_events());
    assert_eq!(p.iter().map(|x| x.1).collect::<Vec<_>>(), vec![6], "{p:?}");
    assert!(e.counts().balanced());
}

/// What the property test tracks of the site: id → (cores, attempt, planned end s) of each
/// running job, and each job's planned run time, cores and whether it is preemptible; the ucu·h
/// each running attempt was planned to use, and what preempted attempts were charged.
#[derive(Default)]
struct Track {
    running: BTreeMap<u64, (u32, u32, i64)>,
    planned: BTreeMap<u64, i64>,
    cores: BTreeMap<u64, u32>,
    preemptible: BTreeMap<u64, bool>,
    planned_ucu: BTreeMap<u64, (f64, i64)>,
    charged: BTreeMap<u64, f64>,
    /// Each contract's holder and what its block held per slot when it was made; each job's
    /// contract and tenant.
    blocks: BTreeMap<u64, (String, BTreeMap<i64, u32>)>,
    contract_of: BTreeMap<u64, (u64, String)>,
}

impl Track {
    /// Takes the engine's events; `submitted` is the job just submitted, if any.
    fn absorb(&mut self, e: &mut Engine, submitted: Option<u64>) -> Result<(), TestCaseError> {
        for ev in e.take_events() {
            match ev {
                Event::Placed { id, start_at, end_at, .. } => {
                    self.planned.insert(id, (end_at.0 - start_at.0) / 1000);
                }
                Event::Started { id, attempt, at, .. } => {
                    let end = (at.0 - start().0) / 1000 + self.planned[&id];
                    self.running.insert(id, (self.cores[&id], attempt, end));
                    let ucu = e.planned_meter(id).map_or(0.0, |m| m.ucu_hours);
                    self.planned_ucu.insert(id, (ucu, at.0));
                }
                Event::Preempted { id, by, at, meter, .. } => {
                    prop_assert!(self.preemptible[&id], "job {} was not preemptible", id);
                    prop_assert_eq!(Some(by), submitted);
                    // charged only for what it used: the share of its plan it ran, no more
                    if let Some((ucu, since)) = self.planned_ucu.remove(&id) {
                        let ran = (at.0 - since) as f64 / (self.planned[&id] as f64 * 1000.0);
                        prop_assert!(
                            meter.ucu_hours <= ucu * ran.min(1.0) + 1e-9,
                            "job {} charged {} of {} after {}",
                            id,
                            meter.ucu_hours,
                            ucu,
                            ran
                        );
                    } else {
                        prop_assert!(
                            meter.ucu_hours == 0.0,
                            "job {} never started but was charged {}",
                            id,
                            meter.ucu_hours
                        );
                    }
                    *self.charged.entry(id).or_default() += meter.ucu_hours;
                    self.running.remove(&id);
                }
                Event::Completed { id, ref outcome, .. } => {
                    // the bill is every attempt's use: what preemptions charged is in it
                    let before = self.charged.get(&id).copied().unwrap_or(0.0);
                    prop_assert!(
                        outcome.meter.ucu_hours + 1e-9 >= before,
                        "job {} billed {} after {} was charged",
                        id,
                        outcome.meter.ucu_hours,
                        before
                    );
                    self.running.remove(&id);
                }
                Event::Failed { id, .. } | Event::Rescheduled { id, .. } => {
                    self.running.remove(&id);
                }
                _ => {}
            }
        }
        // a run at its planned end holds nothing from then on (its report is due)
        let now_s = (e.now().0 - start().0) / 1000;
        let busy: u32 = self.running.values().filter(|r| r.2 > now_s).map(|r| r.0).sum();
        // contracts' blocks hold what their holders' jobs have not taken: nobody else's
        let slot = suanwang_sched::slots::slot_of(e.now());
        let held: u32 = e.blocks().map(|(_, b)| b.held_at(slot)).sum();
        prop_assert!(
            busy + held <= 4,
            "{} cores running and {} reserved on a 4-core site: {:?}",
            busy,
            held,
            self.running
        );
        // and no reserved unit went to anyone but its holder or, idle, to others' preemptible
        // work: what a block holds now, with its holder's running jobs on it and preemptible
        // jobs, is at least what it held when it was made
        for (contract, (holder, initial)) in &self.blocks {
            let Some(&at_start) = initial.get(&slot) else { continue };
            let now_held = e.blocks().find(|(c, _)| *c == contract).map_or(0, |(_, b)| b.held_at(slot));
            let holders: u32 = self
                .running
                .iter()
                .filter(|(j, r)| {
                    r.2 > now_s
                        && (self.contract_of.get(j).is_some_and(|(c, t)| c == contract && t == holder)
                            || self.preemptible.get(j).copied().unwrap_or(false))
                })
                .map(|(_, r)| r.0)
                .sum();
            prop_assert!(
                now_held + holders >= at_start,
                "contract {}: holds {} with {} of its holder's running, made with {}",
                contract,
                now_held,
                holders,
                at_start
            );
        }
        prop_assert!(e.counts().balanced(), "{:?}", e.counts());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random spot and non-spot work of random priority and tenants on one 4-core site
    /// (submitted on slot boundaries), with contracts reserving blocks of it for their holders
    /// and jobs naming them: running work and the blocks' holdings never exceed the site (a
    /// reserved unit goes to nobody but its holder), a non-preemptible job is never preempted,
    /// a preempted job was preemptible, gave way to the job just submitted and was charged only
    /// for what it ran, and no job disappears.
    #[test]
    fn preemption_keeps_every_invariant(
        ops in prop::collection::vec((0u8..4, 1u32..5, any::<bool>(), 0u8..10, 0u64..3, 0u8..8), 5..40)
    ) {
        let (mut e, net) = engine();
        let mut track = Track::default();
        let mut t = 0i64;
        let mut contracts: Vec<u64> = vec![];
        for (i, (tenant, cores, spot, prio, dt, act)) in ops.into_iter().enumerate() {
            let id = i as u64 + 1;
            // whole 15-minute slots, the scheduler's grain, so that runs fill their reservations
            t += dt as i64 * 900;
            at(&mut e, t);
            track.absorb(&mut e, None)?;
            // agents' runs end by report: every run is reported by its planned end (beyond it
            // the site's capacity is no longer held for it), the oldest now and then earlier
            let due: Vec<(u64, u32)> = track
                .running
                .iter()
                .enumerate()
                .filter(|(k, (_, r))| r.2 <= t || (*k == 0 && dt == 0))
                .map(|(_, (id, r))| (*id, r.1))
                .collect();
            for (rid, attempt) in due {
                e.apply(Command::Report { id: rid, attempt, outcome: done(60.0) }).expect("report");
            }
            track.absorb(&mut e, None)?;
            if act == 0 {
                // a contract: a block of what fits, for two hours from now
                let r = e.apply(Command::Reserve {
                    contract: id,
                    holder: format!("t{tenant}"),
                    sites: vec!["local".into()],
                    family: suanwang_core::Family::General,
                    model: "any".into(),
                    start: e.now(),
                    end: Ts(e.now().0 + 2 * 3_600_000),
                    units: cores.min(3),
                });
                prop_assert!(r.is_ok(), "{:?}", r);
                contracts.push(id);
                let block = e.blocks().find(|(c, _)| **c == id).map(|(_, b)| b.clone()).expect("the block");
                let initial = (block.start..block.end).map(|s| (s, block.held_at(s))).collect();
                track.blocks.insert(id, (format!("t{tenant}"), initial));
                track.absorb(&mut e, None)?;
                continue;
            }
            track.preemptible.insert(id, spot);
            track.cores.insert(id, cores);
            let mut j = job(&net, &format!("t{tenant}"), cores, 1800, spot, prio);
            if act <= 2 {
                j.contract = contracts.last().copied();
                if let Some(c) = j.contract {
                    track.contract_of.insert(id, (c, j.tenant.clone()));
                }
            }
            e.apply(Command::Submit { id, job: Box::new(j) }).expect("submit");
            at(&mut e, t);
            track.absorb(&mut e, Some(id))?;
        }
    }
}

/// A job on contract `contract` of `tenant`'s (else as `job`).
fn on_contract(net: &Network, tenant: &str, cores: u32, run_s: u32, contract: u64) -> Job {
    let mut j = job(net, tenant, cores, run_s, false, 5);
    j.contract = Some(contract);
    j
}

fn placed_at(events: &[Event], id: u64) -> Option<i64> {
    events.iter().find_map(|ev| match ev {
        Event::Placed { id: p, start_at, .. } if *p == id => Some((start_at.0 - start().0) / 1000),
        _ => None,
    })
}

/// Contract `contract` of tenant "city": `units` general units at "local" for 4 hours from the start.
fn reserve(contract: u64, units: u32) -> Command {
    Command::Reserve {
        contract,
        holder: "city".into(),
        sites: vec!["local".into()],
        family: suanwang_core::Family::General,
        model: "any".into(),
        start: start(),
        end: Ts(start().0 + 4 * 3_600_000),
        units,
    }
}

#[test]
fn others_spot_work_borrows_idle_reserved_units_until_the_holder_needs_them() {
    let (mut e, net) = engine();
    e.apply(reserve(9, 4)).expect("reserves");
    let _ = e.take_events();
    // the whole site is reserved: another tenant's non-preemptible job waits for the block's end…
    e.apply(Command::Submit { id: 1, job: Box::new(job(&net, "other", 2, 600, false, 9)) }).expect("submit");
    assert!(placed_at(&e.take_events(), 1).is_some_and(|s| s >= 4 * 3600), "never reserved units");
    // …its preemptible job runs on the idle reserved units now
    e.apply(Command::Submit { id: 2, job: Box::new(job(&net, "other", 2, 3600, true, 5)) }).expect("submit");
    assert_eq!(placed_at(&e.take_events(), 2), Some(0), "borrows the idle block");
    at(&mut e, 900);
    assert_eq!(e.state(2), Some(JobState::Running));
    let _ = e.take_events();
    // the holder comes: the borrower gives the units back and is placed again; the holder runs
    e.apply(Command::Submit { id: 3, job: Box::new(on_contract(&net, "city", 4, 600, 9)) }).expect("submit");
    let events = e.take_events();
    let p = preemptions(&events);
    assert_eq!(p.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), vec![(2, 3)], "{events:?}");
    assert!(p[0].2.contains("holder of contract 9"), "{}", p[0].2);
    assert_eq!(placed_at(&events, 3), Some(900), "{events:?}");
    assert!(e.counts().balanced());
}

#[test]
fn a_contracts_block_is_its_holders_first_and_nobody_elses() {
    let (mut e, net) = engine();
    e.apply(reserve(7, 2)).expect("reserves");
    let events = e.take_events();
    assert!(
        events.iter().any(|ev| matches!(ev, Event::Reserved { contract: 7, least: 2, site, .. } if site == "local")),
        "{events:?}"
    );
    assert!(e.apply(reserve(7, 2)).is_err(), "a contract is reserved once");
    // others see 2 of the 4 cores: a 4-core job waits for the block's end, a 2-core one runs now
    e.apply(Command::Submit { id: 1, job: Box::new(job(&net, "other", 4, 600, false, 9)) }).expect("submit");
    assert!(placed_at(&e.take_events(), 1).is_some_and(|s| s >= 4 * 3600), "the block is not others'");
    e.apply(Command::Submit { id: 2, job: Box::new(job(&net, "other", 2, 3600, false, 5)) }).expect("submit");
    assert_eq!(placed_at(&e.take_events(), 2), Some(0));
    // the holder runs in its block at once although the rest of the site is taken
    e.apply(Command::Submit { id: 3, job: Box::new(on_contract(&net, "city", 2, 3600, 7)) }).expect("submit");
    assert_eq!(placed_at(&e.take_events(), 3), Some(0));
    // another tenant naming the contract gets no block
    e.apply(Command::Submit { id: 4, job: Box::new(on_contract(&net, "thief", 2, 600, 7)) }).expect("submit");
    assert!(placed_at(&e.take_events(), 4).is_some_and(|s| s >= 3600));
    // the holder's job ends early: its units are the block's again, for the holder's next job
    at(&mut e, 1);
    e.apply(Command::Report { id: 3, attempt: 1, outcome: done(1.0) }).expect("report");
    at(&mut e, 900);
    let _ = e.take_events();
    e.apply(Command::Submit { id: 5, job: Box::new(on_contract(&net, "city", 2, 600, 7)) }).expect("submit");
    assert_eq!(placed_at(&e.take_events(), 5), Some(900));
    // the blocks survive a snapshot
    let snap = e.snapshot();
    let base = super::net();
    let mut back = Engine::restore(&base, EngineConfig::for_network(&base), snap).expect("restores");
    back.apply(Command::Submit { id: 6, job: Box::new(on_contract(&net, "city", 2, 600, 7)) }).expect("submit");
    assert!(placed_at(&back.take_events(), 6).is_some_and(|s| s >= 1800), "job 5 holds the block till then");
    assert!(back.apply(reserve(7, 1)).is_err(), "the restored engine knows contract 7");
    assert!(e.counts().balanced());
}
