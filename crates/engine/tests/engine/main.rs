//! Engine tests: the lifecycle, failures, and conservation of jobs at every step.

use std::sync::Arc;

use proptest::prelude::*;
use suanwang_core::job::{self, Job};
use suanwang_core::{Network, Ts};
use suanwang_engine::{Command, Engine, EngineConfig, EngineError, Event, JobState};
use suanwang_sched::workload;

mod preempt;
mod trust;

fn start() -> Ts {
    Ts::parse("2026-11-26T00:00:00Z").expect("valid")
}

fn net() -> Arc<Network> {
    Arc::new(Network::reference().expect("reference"))
}

fn spec(net: &Network, text: &str) -> Job {
    job::parse_toml(text.as_bytes(), net, start()).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn names(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            Event::Submitted { .. } => "submitted",
            Event::Admitted { .. } => "admitted",
            Event::Refused { .. } => "refused",
            Event::Placed { .. } => "placed",
            Event::DataArrived { .. } => "data_arrived",
            Event::Started { .. } => "started",
            Event::Completed { .. } => "completed",
            Event::Failed { .. } => "failed",
            Event::Cancelled { .. } => "cancelled",
            Event::Rescheduled { .. } => "rescheduled",
            Event::Preempted { .. } => "preempted",
            Event::Reserved { .. } => "reserved",
            Event::SiteLost { .. } => "site_lost",
            Event::SiteRestored { .. } => "site_restored",
            Event::LinkLost { .. } => "link_lost",
            Event::LinkRestored { .. } => "link_restored",
            Event::SiteRegistered { .. } => "site_registered",
            Event::SiteSuspended { .. } => "site_suspended",
            Event::SiteApproved { .. } => "site_approved",
            Event::Assigned { .. } => "assigned",
            Event::Measured { .. } => "measured",
        })
        .collect()
}

#[test]
fn a_job_goes_through_its_whole_life_and_is_metered() {
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let job = spec(
        &net,
        "name = \"j\"\ntenant = \"t\"\nkind = \"inference\"\norigin = \"shanghai\"\nlatency_tier = \"regional\"\n[resources]\nfamily = \"intelligent\"\ncount = 4\n[work]\nrun_time_s = 3600\n[input]\nsize_gb = 200\nlocation = \"shanghai\"\n",
    );
    e.apply(Command::Submit { id: 1, job: Box::new(job) }).expect("submit");
    assert_eq!(e.state(1), Some(JobState::InTransfer));
    e.drain();
    let events = e.take_events();
    assert_eq!(names(&events), ["submitted", "admitted", "placed", "data_arrived", "started", "completed"]);
    let Some(Event::Completed { outcome, .. }) = events.last() else { panic!("completed last") };
    let m = &outcome.meter;
    assert!(m.ucu_hours > 0.0 && m.energy_kwh > 0.0 && m.green_kwh <= m.energy_kwh);
    assert!(m.carbon_location_kg >= m.carbon_market_kg && m.carbon_market_kg >= 0.0);
    assert_eq!(m.money_fen, m.compute_fen + m.energy_fen + m.transfer_fen);
    assert!((m.transfer_gb - 200.0).abs() < 1e-9);
    assert!(outcome.latency_ms <= 5.0);
    assert_eq!(e.counts().completed, 1);
    assert!(e.counts().balanced());
}

#[test]
fn refusals_cancellations_and_bad_commands() {
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let far = spec(
        &net,
        "name = \"j\"\ntenant = \"t\"\nkind = \"inference\"\norigin = \"harbin\"\nlatency_tier = \"city\"\n[resources]\nfamily = \"intelligent\"\naccelerator = \"h800\"\ncount = 1\n[work]\nrun_time_s = 60\n",
    );
    e.apply(Command::Submit { id: 1, job: Box::new(far) }).expect("submit");
    assert!(matches!(e.take_events().last(), Some(Event::Refused { rejections, .. }) if !rejections.is_empty()));
    let long = spec(
        &net,
        "name = \"k\"\ntenant = \"t\"\nkind = \"batch\"\norigin = \"beijing\"\nlatency_tier = \"cross-hub\"\n[resources]\nfamily = \"general\"\ncount = 64\n[work]\nrun_time_s = 36000\n",
    );
    e.apply(Command::Submit { id: 2, job: Box::new(long.clone()) }).expect("submit");
    assert_eq!(e.apply(Command::Submit { id: 2, job: Box::new(long) }), Err(EngineError::Duplicate(2)));
    // run half of it, then cancel: half the compute is metered
    e.advance_to(Ts(start().0 + 900_000)).expect("forward");
    let started = e
        .take_events()
        .iter()
        .find_map(|ev| if let Event::Placed { start_at, .. } = ev { Some(*start_at) } else { None });
    let started = started.expect("placed");
    e.advance_to(Ts(started.0 + 18_000_000)).expect("forward");
    assert_eq!(e.state(2), Some(JobState::Running));
    e.apply(Command::Cancel { id: 2 }).expect("cancel");
    let Some(Event::Cancelled { meter, .. }) = e.take_events().pop() else { panic!("cancelled") };
    assert!(meter.energy_kwh > 0.0 && meter.compute_fen > 0);
    assert_eq!(e.apply(Command::Cancel { id: 2 }), Err(EngineError::NotFound(2)));
    assert!(matches!(e.advance_to(start()), Err(EngineError::TimeBackwards { .. })));
    assert!(matches!(e.apply(Command::SiteDown { site: "atlantis".into() }), Err(EngineError::UnknownSite(_))));
    let c = e.counts();
    assert_eq!((c.submitted, c.refused, c.cancelled, c.in_flight), (2, 1, 1, 0));
    assert!(c.balanced());
}

#[test]
fn a_lost_sites_jobs_go_to_its_backup() {
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let site = "qingyang-xifeng";
    let backup = net.site(site).and_then(|s| s.backup.clone()).expect("a backup is set");
    for id in 0..5 {
        let job = spec(
            &net,
            &format!(
                "name = \"j{id}\"\ntenant = \"t\"\nkind = \"training\"\norigin = \"xian\"\nallowed_sites = [\"{site}\", \"{backup}\"]\n[resources]\nfamily = \"intelligent\"\ncount = 8\n[work]\nrun_time_s = 7200\n"
            ),
        );
        e.apply(Command::Submit { id, job: Box::new(job) }).expect("submit");
    }
    let placed_at_site =
        e.take_events().iter().filter(|ev| matches!(ev, Event::Placed { site: s, .. } if s == site)).count();
    assert!(placed_at_site > 0, "some jobs went to {site}");
    e.apply(Command::SiteDown { site: site.into() }).expect("down");
    let events = e.take_events();
    let moved: Vec<_> = events
        .iter()
        .filter_map(|ev| if let Event::Placed { site: s, .. } = ev { Some(s.clone()) } else { None })
        .collect();
    assert_eq!(moved.len(), placed_at_site, "every job of the lost site is placed again");
    assert!(moved.iter().all(|s| *s == backup), "{moved:?} on backup {backup}");
    assert!(e.counts().balanced());
    e.drain();
    assert_eq!(e.counts().completed, 5);
}

#[test]
fn an_agent_site_runs_its_jobs_for_real_and_reports_are_fenced() {
    use suanwang_engine::RunOutcome;
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let site = trust::agent_site("local");
    let op = suanwang_engine::Owner { role: "operator".into(), name: "ops".into() };
    e.apply(Command::RegisterSite { site: site.clone(), owner: op.clone(), approved: true }).expect("registers");
    e.apply(Command::RegisterSite { site: site.clone(), owner: op.clone(), approved: true })
        .expect("re-registering the same site is fine");
    let mut other = site.clone();
    other.pools[0].count = 64;
    assert!(matches!(
        e.apply(Command::RegisterSite { site: other, owner: op, approved: true }),
        Err(EngineError::Site(_))
    ));
    // specs naming the agent's site are checked against the network that has it
    let with_local = net.with_agent_site(&site).expect("extends");
    let job = spec(
        &with_local,
        "name = \"j\"\ntenant = \"t\"\nkind = \"batch\"\norigin = \"beijing\"\nallowed_sites = [\"local\"]\n[resources]\nfamily = \"general\"\ncount = 2\n[work]\nrun_time_s = 60\n[run]\ncommand = \"echo\"\nargs = [\"hi\"]\n",
    );
    e.apply(Command::Submit { id: 1, job: Box::new(job) }).expect("submit");
    // batch work may wait for a cheap hour: a day covers it
    e.advance_to(Ts(start().0 + 24 * 3_600_000)).expect("forward");
    let events = e.take_events();
    let assigned = events
        .iter()
        .find_map(|ev| if let Event::Assigned { assignment, .. } = ev { Some(assignment.clone()) } else { None })
        .unwrap_or_else(|| panic!("assigned: {events:?}"));
    assert_eq!((assigned.site.as_str(), assigned.command.as_str(), assigned.attempt), ("local", "echo", 1));
    assert_eq!(e.state(1), Some(JobState::Running), "an agent's job does not finish by itself");
    let ok = RunOutcome { succeeded: true, reason: None, cpu_seconds: 0.01, peak_memory_mib: 2.0, wall_seconds: 0.5 };
    assert_eq!(
        e.apply(Command::Report { id: 1, attempt: 2, outcome: ok.clone() }),
        Err(EngineError::StaleAttempt { id: 1, current: 1, reported: 2 })
    );
    e.apply(Command::Report { id: 1, attempt: 1, outcome: ok }).expect("report");
    assert!(matches!(e.take_events().last(), Some(Event::Completed { outcome, .. }) if outcome.site == "local"));
    assert!(e.counts().balanced());
    // a run that fails after running is metered for what it ran; one that never ran is not
    let mut billed = vec![];
    for (id, wall_seconds) in [(2, 30.0), (3, 0.0)] {
        let job = spec(
            &with_local,
            "name = \"f\"\ntenant = \"t\"\nkind = \"inference\"\norigin = \"beijing\"\nallowed_sites = [\"local\"]\n[resources]\nfamily = \"general\"\ncount = 2\n[work]\nrun_time_s = 60\n[run]\ncommand = \"false\"\n",
        );
        e.apply(Command::Submit { id, job: Box::new(job) }).expect("submit");
        e.advance_to(Ts(e.now().0 + 1000)).expect("forward");
        let _ = e.take_events();
        assert_eq!(e.state(id), Some(JobState::Running));
        let failed = RunOutcome {
            succeeded: false,
            reason: Some("exited with status 1".into()),
            cpu_seconds: 1.0,
            peak_memory_mib: 2.0,
            wall_seconds,
        };
        e.apply(Command::Report { id, attempt: 1, outcome: failed }).expect("report");
        let meter = e.take_events().into_iter().find_map(|ev| match ev {
            Event::Failed { meter, .. } => Some(meter),
            _ => None,
        });
        billed.push(meter.unwrap_or_else(|| panic!("job {id} failed")));
    }
    assert!(billed[0].compute_fen > 0 && billed[0].ucu_hours > 0.0 && billed[0].energy_kwh > 0.0, "{billed:?}");
    assert_eq!((billed[1].compute_fen, billed[1].ucu_hours), (0, 0.0), "{billed:?}");
    assert!(e.counts().balanced());
    // the agent site survives a snapshot
    let snap = e.snapshot();
    let back = Engine::restore(&net, EngineConfig::for_network(&net), snap).expect("restores");
    assert!(back.scheduler().network().site("local").is_some());
}

#[test]
fn a_cut_link_sends_moving_data_another_way() {
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    // 20 TB from Beijing to Zhongwei: hours on the network
    let job = spec(
        &net,
        "name = \"j\"\ntenant = \"t\"\nkind = \"training\"\norigin = \"beijing\"\nallowed_sites = [\"zhongwei-xibuyun\"]\n[resources]\nfamily = \"intelligent\"\ncount = 8\n[work]\nrun_time_s = 3600\n[input]\nsize_gb = 20000\nlocation = \"beijing\"\n",
    );
    e.apply(Command::Submit { id: 7, job: Box::new(job) }).expect("submit");
    let first = e.take_events();
    let Some(Event::Placed { mode, .. }) = first.iter().find(|ev| matches!(ev, Event::Placed { .. })) else {
        panic!("placed")
    };
    assert_ne!(*mode, suanwang_sched::TransferMode::Express, "fast enough by network at first");
    assert_eq!(e.state(7), Some(JobState::InTransfer));
    assert_eq!(
        e.apply(Command::LinkDown { a: "beijing".into(), b: "atlantis".into() }),
        Err(EngineError::UnknownLink("beijing".into(), "atlantis".into()))
    );
    e.apply(Command::LinkDown { a: "beijing".into(), b: "zhongwei".into() }).expect("cut");
    let events = e.take_events();
    assert!(matches!(events.first(), Some(Event::LinkLost { jobs: 1, .. })), "{events:?}");
    let replaced = events
        .iter()
        .find_map(|ev| if let Event::Placed { mode, attempt, .. } = ev { Some((*mode, *attempt)) } else { None });
    assert_eq!(replaced, Some((suanwang_sched::TransferMode::Express, 2)), "the data now travels on disks");
    e.apply(Command::LinkUp { a: "zhongwei".into(), b: "beijing".into() }).expect("restored");
    e.drain();
    assert_eq!(e.counts().completed, 1);
    assert!(e.counts().balanced());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Random submissions, cancellations, site losses and recoveries over time: at every step
    /// no job disappears (submitted = completed + failed + refused + cancelled + in flight),
    /// and every job ends in exactly one terminal event.
    #[test]
    fn no_job_ever_disappears(seed in any::<u64>(), ops in prop::collection::vec((0u8..12, 0u64..3600), 10..60)) {
        let net = net();
        let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
        let jobs = workload::mix(&net, seed, ops.len(), start(), 0);
        let mut t = start();
        let mut next_id = 0u64;
        let mut terminal = std::collections::HashMap::<u64, usize>::new();
        for ((op, dt), (_, job)) in ops.iter().zip(jobs) {
            t = Ts(t.0 + (*dt as i64) * 1000);
            e.advance_to(t).expect("forward");
            match op {
                0..=6 => { e.apply(Command::Submit { id: next_id, job: Box::new(job) }).expect("submit"); next_id += 1; }
                7 | 8 => { let _ = e.apply(Command::Cancel { id: seed.wrapping_add(u64::from(*op)) % next_id.max(1) }); }
                9 => { let s = &net.sites[(seed as usize + *dt as usize) % net.sites.len()].id; e.apply(Command::SiteDown { site: s.clone() }).expect("down"); }
                10 => { let l = &net.links[(seed as usize + *dt as usize) % net.links.len()]; e.apply(Command::LinkDown { a: l.a.clone(), b: l.b.clone() }).expect("cut"); }
                _ => { let s = &net.sites[(*dt as usize) % net.sites.len()].id; e.apply(Command::SiteUp { site: s.clone() }).expect("up"); }
            }
            prop_assert!(e.counts().balanced(), "{:?}", e.counts());
            for ev in e.take_events() {
                if let Event::Completed { id, .. } | Event::Failed { id, .. } | Event::Refused { id, .. } | Event::Cancelled { id, .. } = ev {
                    *terminal.entry(id).or_default() += 1;
                }
            }
        }
        e.drain();
        for ev in e.take_events() {
            if let Event::Completed { id, .. } | Event::Failed { id, .. } | Event::Refused { id, .. } | Event::Cancelled { id, .. } = ev {
                *terminal.entry(id).or_default() += 1;
            }
        }
        let c = e.counts();
        prop_assert!(c.balanced());
        prop_assert_eq!(c.in_flight, 0);
        prop_assert_eq!(terminal.len() as u64, next_id, "every job ended");
        prop_assert!(terminal.values().all(|n| *n == 1), "no job ended twice");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// An engine restored from a snapshot behaves exactly like the original: the same further
    /// commands give the same events and counts.
    #[test]
    fn a_restored_snapshot_continues_identically(seed in any::<u64>(), split in 5usize..30) {
        let net = net();
        let jobs = workload::mix(&net, seed, 40, start(), 0);
        let mut a = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
        let step = |e: &mut Engine, i: usize, job: &Job| {
            let t = Ts(start().0 + i as i64 * 600_000);
            e.advance_to(t).expect("forward");
            e.apply(Command::Submit { id: i as u64, job: Box::new(job.clone()) }).expect("submit");
            if i % 9 == 4 {
                let _ = e.apply(Command::Cancel { id: (i - 2) as u64 });
            }
            if i == split + 3 {
                let s = &net.sites[seed as usize % net.sites.len()].id;
                e.apply(Command::SiteDown { site: s.clone() }).expect("down");
            }
        };
        for (i, (_, job)) in jobs.iter().enumerate().take(split) {
            step(&mut a, i, job);
        }
        a.take_events();
        let snap = a.snapshot();
        let json = serde_json::to_string(&snap).expect("serialises");
        let back: suanwang_engine::EngineSnapshot = serde_json::from_str(&json).expect("deserialises");
        let mut b = Engine::restore(&net, EngineConfig::for_network(&net), back).expect("restores");
        prop_assert_eq!(serde_json::to_string(&b.snapshot()).expect("json"), json, "restore is exact");
        for (i, (_, job)) in jobs.iter().enumerate().skip(split) {
            step(&mut a, i, job);
            step(&mut b, i, job);
        }
        a.drain();
        b.drain();
        prop_assert_eq!(a.take_events(), b.take_events());
        prop_assert_eq!(a.counts(), b.counts());
    }
}

/// A running job that declares checkpoints resumes from the last one after its site is lost;
/// one that does not starts over.
#[test]
fn a_moved_job_resumes_from_its_last_checkpoint() {
    let net = net();
    let site = "qingyang-xifeng";
    let backup = net.site(site).and_then(|s| s.backup.clone()).expect("a backup is set");
    let planned_after = |checkpoint: &str| {
        let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
        let job = spec(
            &net,
            &format!(
                "name = \"c\"\ntenant = \"t\"\nkind = \"training\"\norigin = \"xian\"\nallowed_sites = [\"{site}\", \"{backup}\"]\n{checkpoint}\n[resources]\nfamily = \"intelligent\"\ncount = 8\n[work]\nrun_time_s = 10000\n"
            ),
        );
        e.apply(Command::Submit { id: 1, job: Box::new(job) }).expect("submit");
        let started = e
            .take_events()
            .iter()
            .find_map(|ev| {
                if let Event::Placed { site: s, start_at, .. } = ev { Some((s.clone(), *start_at)) } else { None }
            })
            .expect("placed");
        // run 3,500 s at whichever site it went to, then lose that site
        e.advance_to(Ts(started.1.0 + 3_500_000)).expect("advance");
        let _ = e.take_events();
        assert_eq!(e.state(1), Some(JobState::Running));
        e.apply(Command::SiteDown { site: started.0.clone() }).expect("down");
        let events = e.take_events();
        let reason = events
            .iter()
            .find_map(|ev| if let Event::Rescheduled { reason, .. } = ev { Some(reason.clone()) } else { None })
            .expect("rescheduled");
        let (a, b) = events
            .iter()
            .find_map(
                |ev| if let Event::Placed { start_at, end_at, .. } = ev { Some((*start_at, *end_at)) } else { None },
            )
            .expect("placed again");
        (reason, (b.0 - a.0) / 1000)
    };
    let (reason, run_s) = planned_after("checkpoint_s = 1000");
    assert!(reason.contains("checkpoint at 30 %"), "{reason}");
    assert_eq!(run_s, 7000, "3,000 s of 10,000 were saved at the last checkpoint");
    let (reason, run_s) = planned_after("");
    assert!(!reason.contains("checkpoint"), "{reason}");
    assert_eq!(run_s, 10000, "without checkpoints the job starts over");
}

/// The scheduler may decide on a forecast of green share and price; the meter keeps the
/// actual values: a forecast of no green power at all still meters Sichuan's green share.
#[test]
fn meters_take_the_actual_energy_when_the_scheduler_decides_on_a_forecast() {
    let net = net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    for site in 0..net.sites.len() {
        e.set_forecast(site, &[0.0; 24], &[2.0; 24]).expect("a site");
    }
    let job = spec(
        &net,
        "name = \"j\"\ntenant = \"t\"\nkind = \"batch\"\norigin = \"chengdu\"\nallowed_sites = [\"tianfu-pidu\"]\n[resources]\nfamily = \"general\"\ncount = 64\n[work]\nrun_time_s = 3600\n",
    );
    e.apply(Command::Submit { id: 1, job: Box::new(job) }).expect("submit");
    e.drain();
    let outcome = e
        .take_events()
        .into_iter()
        .find_map(|ev| match ev {
            Event::Completed { outcome, .. } => Some(outcome),
            _ => None,
        })
        .expect("completed");
    let m = &outcome.meter;
    let green = m.green_kwh / m.energy_kwh;
    assert!(green > 0.5, "Sichuan's actual green share is metered, not the forecast's 0: {green}");
    assert!(m.carbon_market_kg < m.carbon_location_kg * 0.5, "{} vs {}", m.carbon_market_kg, m.carbon_location_kg);
    assert_eq!(m.money_fen, m.compute_fen + m.energy_fen + m.transfer_fen);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// R6: a job whose input is restricted is placed only in its data's region — when it is
    /// submitted, and again whenever a lost site or a cut link moves it.
    #[test]
    fn restricted_data_never_leaves_its_region_even_when_its_jobs_move(
        seed in any::<u64>(),
        ops in prop::collection::vec((0u8..10, 0u64..3600), 10..50),
    ) {
        let net = net();
        let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
        // cities with a region: the data of each job is in one of them
        let homes: Vec<&suanwang_core::network::City> = net.cities.iter().filter(|c| c.region.is_some()).collect();
        prop_assume!(!homes.is_empty());
        let mut region_of_job = std::collections::HashMap::<u64, String>::new();
        let mut placed = 0usize;
        let mut t = start();
        let mut next_id = 0u64;
        for (op, dt) in &ops {
            t = Ts(t.0 + (*dt as i64) * 1000);
            e.advance_to(t).expect("forward");
            let pick = (seed.wrapping_add(*dt) as usize) % homes.len();
            match op {
                0..=5 => {
                    let home = homes[pick];
                    let job = spec(
                        &net,
                        &format!(
                            "name = \"r{next_id}\"\ntenant = \"t\"\nkind = \"batch\"\norigin = \"shanghai\"\n[resources]\nfamily = \"general\"\ncount = 16\n[work]\nrun_time_s = 7200\n[input]\nsize_gb = 200\nlocation = \"{}\"\nclassification = \"restricted\"\n",
                            home.id
                        ),
                    );
                    region_of_job.insert(next_id, home.region.clone().unwrap_or_default());
                    e.apply(Command::Submit { id: next_id, job: Box::new(job) }).expect("submit");
                    next_id += 1;
                }
                6 | 7 => {
                    let s = &net.sites[(seed as usize + *dt as usize) % net.sites.len()].id;
                    e.apply(Command::SiteDown { site: s.clone() }).expect("down");
                }
                8 => {
                    let l = &net.links[(seed as usize + *dt as usize) % net.links.len()];
                    e.apply(Command::LinkDown { a: l.a.clone(), b: l.b.clone() }).expect("cut");
                }
                _ => {
                    let s = &net.sites[(*dt as usize) % net.sites.len()].id;
                    e.apply(Command::SiteUp { site: s.clone() }).expect("up");
                }
            }
            for ev in e.take_events() {
                if let Event::Placed { id, site, .. } = ev {
                    let want = &region_of_job[&id];
                    let got = &net.site(&site).expect("a placed site exists").region;
                    prop_assert_eq!(got, want, "job {} placed at {} outside its data's region", id, site);
                    placed += 1;
                }
            }
        }
        prop_assert!(placed > 0 || next_id == 0, "restricted jobs were placed somewhere in their region");
    }
}
