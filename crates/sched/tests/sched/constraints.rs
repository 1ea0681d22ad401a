//! No placement violates a hard constraint; the same inputs give the same placement.

use std::sync::Arc;

use proptest::prelude::*;
use suanwang_core::job::{Classification, Job};
use suanwang_core::network::Place;
use suanwang_core::{Network, Ts};
use suanwang_sched::slots::{slot_at_or_after, slot_start};
use suanwang_sched::{Config, Filter, Placement, Policy, Scheduler, workload};

use super::{start, tight};

/// Checks one placement against every hard constraint of its job, independently of the
/// scheduler's own filter code.
fn assert_honours(net: &Network, job: &Job, p: &Placement, now: Ts) {
    let c = &p.chosen;
    let site = net.site(&c.site).expect("placed on a known site");
    let pool = site.pools.iter().find(|x| x.id == c.pool).expect("pool of that site");
    let r = &job.resources;
    assert_eq!(pool.family, r.family, "{}: family", job.name);
    if let Some(a) = &r.accelerator {
        assert_eq!(&pool.model, a, "{}: accelerator", job.name);
    }
    if let Some(t) = r.min_throughput {
        assert!(pool.peak_per_unit.get(t.precision).is_some_and(|v| v >= t.tflops), "{}: throughput", job.name);
    }
    if !r.variants.is_empty() {
        assert!(
            r.variants.iter().any(|v| v.arch == pool.arch
                && v.accelerator_kind.as_ref().is_none_or(|k| pool.accelerator_kind.as_ref() == Some(k))),
            "{}: variants",
            job.name
        );
    }
    assert!(pool.memory_gib_per_unit >= r.memory_gib, "{}: memory", job.name);
    assert!(u64::from(r.count) <= pool.count, "{}: gang fits the pool", job.name);
    if let Some(tier) = job.latency_tier {
        let ms = net.latency(&job.origin, &site.id).expect("known").one_way_ms;
        assert!(ms <= tier.max_ms().expect("bounded tier"), "{}: latency {ms} ms over {tier}", job.name);
    }
    if !job.allowed_sites.is_empty() {
        assert!(job.allowed_sites.contains(&site.id), "{}: allowed_sites", job.name);
    }
    if !job.allowed_regions.is_empty() {
        assert!(job.allowed_regions.contains(&site.region), "{}: allowed_regions", job.name);
    }
    if let Some(input) = &job.input
        && input.classification == Classification::Restricted
    {
        let (region, province) = match net.place(&input.location) {
            Some(Place::Site(i)) => (net.sites[i].region.clone(), net.sites[i].province.clone()),
            _ => {
                let city = net.city(&input.location).expect("city");
                (city.region.clone().unwrap_or_default(), city.province.clone())
            }
        };
        if region.is_empty() {
            assert_eq!(site.province, province, "{}: residency (province)", job.name);
        } else {
            assert_eq!(site.region, region, "{}: residency (region)", job.name);
        }
    }
    if let Some(d) = job.deadline {
        assert!(c.end_at <= d, "{}: ends {} after deadline {d}", job.name, c.end_at);
    }
    if let Some(b) = job.budget_fen {
        assert!(c.cost.total_fen <= b, "{}: cost {} over budget {b}", job.name, c.cost.total_fen);
    }
    assert!(
        c.green_share + 1e-9 >= job.min_green_share,
        "{}: green {} < {}",
        job.name,
        c.green_share,
        job.min_green_share
    );
    // data arrives before the start
    assert!(
        slot_start(slot_at_or_after(Ts(now.0 + c.transfer.seconds * 1000))) <= c.start_at,
        "{}: data late",
        job.name
    );
    assert!(c.start_at >= now || slot_start(slot_at_or_after(now)) <= c.start_at, "{}: starts in the past", job.name);
    // the start is never deferred beyond what the job allows (its start_within, else the default)
    let allowed = suanwang_sched::place::start_within_s(net, job);
    assert!(p.deferred_s <= allowed, "{}: deferred {} s > start_within {allowed} s", job.name, p.deferred_s);
    assert_eq!(c.cost.total_fen, c.cost.compute_fen + c.cost.energy_fen + c.cost.transfer_fen);
    assert!(c.cost.compute_fen >= 0 && c.cost.energy_fen >= 0 && c.cost.transfer_fen >= 0);
}

fn arb_constraints() -> impl Strategy<Value = (u64, u16, Option<i64>, f64, Vec<&'static str>, Vec<&'static str>)> {
    (
        any::<u64>(),
        1u16..200,
        prop::option::of(0i64..2_000_000_000),
        prop_oneof![Just(0.0), 0.0f64..0.9],
        prop::sample::subsequence(vec!["jingjinji", "changsanjiao", "gansu", "ningxia", "qinghai", "guizhou"], 0..3),
        prop::sample::subsequence(vec!["qingyang-xifeng", "yrd-qingpu", "zhongwei-xibuyun", "tianfu-pidu"], 0..2),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random jobs with random extra constraints on a network that fills up: every placement
    /// honours every hard constraint; every refusal names a filter per site.
    #[test]
    fn placements_honour_hard_constraints((seed, n, budget, green, regions, sites) in arb_constraints()) {
        let net = tight(200, 8);
        let policy = Policy::named(["balanced", "cheapest", "greenest", "fastest", "nearest"][(seed % 5) as usize], &net.policy).expect("policy");
        let mut sched = Scheduler::new(Arc::clone(&net), start(), Config::default());
        for (i, (at, mut job)) in workload::mix(&net, seed, usize::from(n), start(), 6 * 3600).into_iter().enumerate() {
            if i % 3 == 0 { job.budget_fen = budget; }
            if i % 4 == 0 { job.min_green_share = green; }
            if i % 5 == 0 { job.allowed_regions = regions.iter().map(|s| (*s).to_string()).collect(); }
            if i % 7 == 0 { job.allowed_sites = sites.iter().map(|s| (*s).to_string()).collect(); }
            // a bound of 0, or up to about 22 h, on every other job (the rest take the default)
            if i % 2 == 0 { job.start_within_s = Some((seed % 40_000) as i64 * (i as i64 % 3)); }
            sched.advance(at);
            match sched.place(&job, at, &policy) {
                Ok(p) => assert_honours(&net, &job, &p, at),
                Err(refusal) => {
                    prop_assert!(!refusal.rejections.is_empty());
                    for r in &refusal.rejections {
                        prop_assert!(r.filter == Filter::Spec || net.site(&r.site).is_some());
                    }
                }
            }
        }
    }

    /// Two schedulers fed the same calls give identical placements.
    #[test]
    fn same_inputs_same_placements(seed in any::<u64>()) {
        let net = tight(500, 4);
        let policy = Policy::named("balanced", &net.policy).expect("policy");
        let jobs = workload::mix(&net, seed, 60, start(), 3 * 3600);
        let run = || {
            let mut s = Scheduler::new(Arc::clone(&net), start(), Config::default());
            jobs.iter().map(|(at, j)| { s.advance(*at); s.place(j, *at, &policy) }).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }
}

#[test]
fn bad_numbers_in_a_hand_built_job_are_refused_not_panicking() {
    let net = super::reference();
    let mut sched = Scheduler::new(Arc::clone(&net), start(), Config::default());
    let policy = Policy::named("balanced", &net.policy).expect("policy");
    let (_, base) = workload::mix(&net, 3, 1, start(), 0).remove(0);
    let mut cases = vec![];
    let mut j = base.clone();
    j.min_green_share = f64::NAN;
    cases.push(j);
    let mut j = base.clone();
    j.resources.count = 0;
    cases.push(j);
    let mut j = base.clone();
    if let Some(i) = j.input.as_mut() {
        i.size_gb = -1.0;
    }
    cases.push(j);
    let mut j = base.clone();
    j.work = suanwang_core::job::Work::Amount { amount_pflop: f64::INFINITY };
    cases.push(j);
    let mut j = base;
    j.origin = "atlantis".into();
    cases.push(j);
    for job in cases {
        let refusal = sched.plan(&job, start(), &policy).expect_err("refused");
        assert_eq!(refusal.rejections[0].filter, Filter::Spec, "{refusal}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The online planner prunes pools and starts by a lower bound; pruning must never change
    /// the decision: its choice equals the best fitting option of the full enumeration.
    #[test]
    fn pruning_never_changes_the_choice(seed in any::<u64>()) {
        let net = tight(300, 4);
        let policy = Policy::named(["balanced", "cheapest", "greenest", "fastest", "nearest"][(seed % 5) as usize], &net.policy).expect("policy");
        let mut sched = Scheduler::new(Arc::clone(&net), start(), Config::default());
        for (at, job) in workload::mix(&net, seed, 80, start(), 6 * 3600) {
            sched.advance(at);
            let full = sched.options(&job, at, &policy, usize::MAX);
            match sched.place(&job, at, &policy) {
                Ok(p) => {
                    let full = full.expect("the full enumeration has options too");
                    // the reservation is committed now; compare with the first option that fitted before
                    prop_assert!(sched.release(&p.reservation).is_ok());
                    let best = full.choices.iter().find(|c| sched.fits(&c.reservation)).expect("a fitting option");
                    prop_assert!((best.score - p.chosen.score).abs() < 1e-9, "{} vs {}", best.score, p.chosen.score);
                    prop_assert_eq!(best.reservation, p.reservation);
                    prop_assert!(sched.commit(&p.reservation).is_ok());
                }
                Err(_) => prop_assert!(full.map_or(true, |f| f.choices.iter().all(|c| !sched.fits(&c.reservation)))),
            }
        }
    }
}
