//! Trust boundaries of the agent protocol in the engine: who owns an agent's site, approval
//! before placements, and reports that must be plausible before they change a job or a bill.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use suanwang_core::network::{AgentPool, AgentSite};
use suanwang_core::{Network, Ts};
use suanwang_engine::{Command, Engine, EngineConfig, EngineError, Event, JobState, Meter, Owner, RunOutcome};

use super::{spec, start};

fn shared_net() -> Arc<Network> {
    static NET: OnceLock<Arc<Network>> = OnceLock::new();
    Arc::clone(NET.get_or_init(|| Arc::new(Network::reference().expect("reference"))))
}

fn who(role: &str, name: &str) -> Owner {
    Owner { role: role.into(), name: name.into() }
}

pub fn agent_site(id: &str) -> AgentSite {
    AgentSite {
        id: id.into(),
        city: "beijing".into(),
        pue: 1.3,
        pools: vec![AgentPool {
            name: "cpu".into(),
            model: "generic-x86_64".into(),
            count: 4,
            memory_gib_per_unit: 2,
            power_w_per_unit: 10.0,
            price_fen_per_unit_hour: 30,
        }],
    }
}

/// A 60 s job of 2 cores (1 GiB each) that may only run on `site`.
fn pinned_job(net: &Network, site: &AgentSite, name: &str) -> suanwang_core::Job {
    let with = net.with_agent_site(site).expect("extends");
    spec(
        &with,
        &format!(
            "name = \"{name}\"\ntenant = \"t\"\nkind = \"inference\"\norigin = \"beijing\"\nallowed_sites = [\"{}\"]\n[resources]\nfamily = \"general\"\ncount = 2\nmemory_gib = 1\n[work]\nrun_time_s = 60\n[run]\ncommand = \"true\"\n",
            site.id
        ),
    )
}

#[test]
fn a_providers_site_waits_for_approval_and_stays_its_own() {
    let net = shared_net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let site = agent_site("acme-cloud-dc1");
    let owner = who("provider", "acme-cloud");
    e.apply(Command::RegisterSite { site: site.clone(), owner: owner.clone(), approved: false }).expect("registers");
    assert!(matches!(e.take_events().last(), Some(Event::SiteRegistered { approved: false, .. })));
    assert_eq!(e.grants()["acme-cloud-dc1"].owner, owner);
    // pending: no placements, and a resume does not lift it
    e.apply(Command::Submit { id: 1, job: Box::new(pinned_job(&net, &site, "a")) }).expect("submit");
    assert!(matches!(e.take_events().last(), Some(Event::Refused { .. })), "a pending site takes no work");
    assert_eq!(
        e.apply(Command::Suspend { site: site.id.clone(), suspended: false, move_jobs: false }),
        Err(EngineError::Pending(site.id.clone()))
    );
    assert_eq!(e.apply(Command::SiteUp { site: site.id.clone() }), Err(EngineError::Pending(site.id.clone())));
    // another provider cannot take it over by registering it, not even with the same pools
    let thief = who("provider", "acme");
    assert_eq!(
        e.apply(Command::RegisterSite { site: site.clone(), owner: thief, approved: false }),
        Err(EngineError::NotOwner { site: site.id.clone(), owner: owner.clone() })
    );
    // its owner re-registering does not approve it either
    e.apply(Command::RegisterSite { site: site.clone(), owner: owner.clone(), approved: true }).expect("again");
    assert!(!e.grants()["acme-cloud-dc1"].approved, "only ApproveSite approves a known site");
    // more capacity than was registered is refused
    let mut bigger = site.clone();
    bigger.pools[0].count = 8;
    assert!(matches!(
        e.apply(Command::RegisterSite { site: bigger, owner: owner.clone(), approved: false }),
        Err(EngineError::Site(_))
    ));
    assert_eq!(
        e.apply(Command::ApproveSite { site: "atlantis".into(), owner: None }),
        Err(EngineError::UnknownSite("atlantis".into()))
    );
    e.apply(Command::ApproveSite { site: site.id.clone(), owner: None }).expect("approve");
    e.apply(Command::Submit { id: 2, job: Box::new(pinned_job(&net, &site, "b")) }).expect("submit");
    assert!(e.take_events().iter().any(|ev| matches!(ev, Event::Placed { id: 2, .. })), "approved: placed");
    // a snapshot keeps owner and approval
    let back = Engine::restore(&net, EngineConfig::for_network(&net), e.snapshot()).expect("restores");
    assert_eq!(back.grants(), e.grants());
    // capacity per owner
    let held = e.owned_capacity(&owner).expect("sums");
    assert_eq!((held.cores, held.accelerators, held.memory_mib), (4, 0, 8 * 1024));
}

/// An engine with job 1 running on approved agent site `local`: (engine, its time limit).
fn running() -> (Engine, u64) {
    let net = shared_net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let site = agent_site("local");
    e.apply(Command::RegisterSite { site: site.clone(), owner: who("operator", "ops"), approved: true }).expect("reg");
    e.apply(Command::Submit { id: 1, job: Box::new(pinned_job(&net, &site, "j")) }).expect("submit");
    e.advance_to(Ts(start().0 + 1000)).expect("forward");
    let limit = e
        .take_events()
        .into_iter()
        .find_map(|ev| if let Event::Assigned { assignment, .. } = ev { Some(assignment.time_limit_s) } else { None })
        .expect("assigned");
    assert_eq!(e.state(1), Some(JobState::Running));
    (e, limit)
}

fn report(wall: f64, cpu: f64, mem: f64) -> Command {
    Command::Report {
        id: 1,
        attempt: 1,
        outcome: RunOutcome {
            succeeded: true,
            reason: None,
            cpu_seconds: cpu,
            peak_memory_mib: mem,
            wall_seconds: wall,
        },
    }
}

fn billed(events: &[Event]) -> Option<Meter> {
    events.iter().find_map(|ev| match ev {
        Event::Completed { outcome, .. } => Some(outcome.meter),
        Event::Failed { meter, .. } => Some(*meter),
        _ => None,
    })
}

#[test]
fn implausible_reports_are_refused_with_the_field_and_change_nothing() {
    let (mut e, limit) = running();
    assert_eq!(limit, 120, "a 60 s job gets twice its time");
    for (cmd, field, says) in [
        (report(1e12, 0.0, 0.0), "wall_seconds", "time limit of 120 s plus the 60 s grace"),
        (report(1e300, 0.0, 0.0), "wall_seconds", "time limit"),
        (report(f64::INFINITY, 0.0, 0.0), "wall_seconds", "not a finite number"),
        (report(f64::NAN, 0.0, 0.0), "wall_seconds", "not a finite number"),
        (report(-5.0, 0.0, 0.0), "wall_seconds", "negative"),
        (report(10.0, -1.0, 0.0), "cpu_seconds", "negative"),
        (report(10.0, 0.0, -1.0), "peak_memory_mib", "negative"),
        (report(10.0, 30.0, 0.0), "cpu_seconds", "× 2 cores"),
        (report(10.0, 1.0, 1e9), "peak_memory_mib", "memory limit of 2048 MiB"),
    ] {
        match e.apply(cmd) {
            Err(EngineError::Implausible { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
                assert!(reason.contains(says), "{field}: {reason}");
            }
            other => panic!("{field}: {other:?}"),
        }
        assert!(e.take_events().is_empty(), "a refused report changes nothing");
        assert_eq!(e.state(1), Some(JobState::Running));
    }
    // at the edge: the limit plus grace, cores × wall plus tolerance, memory limit plus tolerance
    e.apply(report(180.0, 2.0 * 180.0 * 1.05 + 1.0, 2048.0 * 1.1 + 256.0)).expect("plausible");
    let meter = billed(&e.take_events()).expect("completed");
    assert!(meter.money_fen > 0, "{meter:?}");
    assert!(e.counts().balanced());
}

/// Upper bound of any bill for job 1: its meter at the longest wall time accepted.
fn most_billed() -> i64 {
    static MOST: OnceLock<i64> = OnceLock::new();
    *MOST.get_or_init(|| {
        let (mut e, limit) = running();
        e.apply(report(limit as f64 + suanwang_engine::WALL_GRACE_S, 0.0, 0.0)).expect("longest");
        billed(&e.take_events()).expect("billed").money_fen
    })
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(-0.0),
        Just(1e300),
        0.0..400.0f64,
        -1e6..1e6f64,
        any::<f64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// No report creates money or makes it negative: it is refused and changes nothing, or it
    /// bills between 0 and what the longest accepted run bills.
    #[test]
    fn no_report_creates_or_negates_money(
        wall in any_f64(), cpu in any_f64(), mem in any_f64(), ok in any::<bool>()
    ) {
        let (mut e, _) = running();
        let mut cmd = report(wall, cpu, mem);
        if let Command::Report { outcome, .. } = &mut cmd {
            outcome.succeeded = ok;
        }
        match e.apply(cmd) {
            Ok(()) => {
                let m = billed(&e.take_events()).expect("billed");
                prop_assert!(m.money_fen >= 0 && m.money_fen <= most_billed(), "{m:?}");
                prop_assert!(m.compute_fen >= 0 && m.energy_fen >= 0);
                prop_assert!(m.energy_kwh.is_finite() && m.energy_kwh >= 0.0);
                prop_assert!(m.carbon_market_kg.is_finite() && m.carbon_market_kg >= 0.0);
            }
            Err(EngineError::Implausible { .. }) => {
                prop_assert!(e.take_events().is_empty());
                prop_assert_eq!(e.state(1), Some(JobState::Running));
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
        prop_assert!(e.counts().balanced());
    }
}

/// A job that runs a command is never "run" on a simulated site: it is placed only on a site
/// with an agent, and a move (its site lost, or suspended with move) keeps that — to another
/// agent site, else it fails with the reason. A snapshot keeps which sites run commands.
#[test]
fn a_job_with_a_command_moves_only_between_agent_sites() {
    let net = shared_net();
    let mut e = Engine::new(Arc::clone(&net), start(), EngineConfig::for_network(&net));
    let ops = who("operator", "ops");
    for id in ["box-a", "box-b"] {
        e.apply(Command::RegisterSite { site: agent_site(id), owner: ops.clone(), approved: true }).expect("reg");
    }
    let with = net
        .with_agent_site(&agent_site("box-a"))
        .and_then(|n| n.with_agent_site(&agent_site("box-b")))
        .expect("extends");
    let job = |name: &str| {
        spec(
            &with,
            &format!(
                "name = \"{name}\"\ntenant = \"t\"\nkind = \"batch\"\norigin = \"beijing\"\n[resources]\nfamily = \"general\"\ncount = 1\nmemory_gib = 1\n[work]\nrun_time_s = 60\n[run]\ncommand = \"true\"\n"
            ),
        )
    };
    let placed_at = |events: &[Event], id: u64| {
        events.iter().rev().find_map(|ev| match ev {
            Event::Placed { id: i, site, .. } if *i == id => Some(site.clone()),
            _ => None,
        })
    };
    e.apply(Command::Submit { id: 1, job: Box::new(job("one")) }).expect("submit");
    let first = placed_at(&e.take_events(), 1).expect("placed");
    assert!(first.starts_with("box-"), "a job with a command goes to an agent site, not {first}");
    let other = if first == "box-a" { "box-b" } else { "box-a" };
    // its site is lost: it moves to the other agent site, never to the lost site's backup
    e.apply(Command::SiteDown { site: first.clone() }).expect("down");
    let evs = e.take_events();
    assert_eq!(placed_at(&evs, 1).as_deref(), Some(other), "{evs:?}");
    // that one is suspended with its jobs moved: no agent site is left, so it fails, saying why
    e.apply(Command::Suspend { site: other.into(), suspended: true, move_jobs: true }).expect("suspend");
    let evs = e.take_events();
    let failed = evs.iter().find_map(|ev| match ev {
        Event::Failed { id: 1, reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(failed.as_deref().is_some_and(|r| r.contains("agent")), "{evs:?}");
    assert_eq!(e.state(1), None, "ended, not simulated somewhere");
    // after a snapshot, the agent sites still run commands (and only they)
    e.apply(Command::SiteUp { site: first.clone() }).expect("up");
    let mut back = Engine::restore(&net, EngineConfig::for_network(&net), e.snapshot()).expect("restores");
    back.apply(Command::Submit { id: 2, job: Box::new(job("two")) }).expect("submit");
    assert_eq!(placed_at(&back.take_events(), 2).as_deref(), Some(first.as_str()));
}
