//! Criterion benches of the scheduler. `cargo bench -p suanwang-sched` (outside CI).
//! For the headline JSON figures use `suanwang bench sched`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use suanwang_core::{Network, Ts};
use suanwang_sched::batch::{self, BatchConfig, Instance};
use suanwang_sched::{Config, Policy, Scheduler, workload};

fn start() -> Ts {
    Ts::parse("2026-11-26T00:00:00Z").expect("valid")
}

fn online(c: &mut Criterion) {
    let net = Arc::new(Network::reference().expect("reference network"));
    let policy = Policy::named("balanced", &net.policy).expect("policy");
    let jobs = workload::mix(&net, 7, 4096, start(), 0);
    // half full: the first half placed, the second half planned against it
    let mut sched = Scheduler::new(Arc::clone(&net), start(), Config::default());
    for (at, job) in &jobs[..2048] {
        let _ = sched.place(job, *at, &policy);
    }
    let mut i = 2048;
    c.bench_function("plan/reference/mixed", |b| {
        b.iter(|| {
            let (at, job) = &jobs[i];
            i = if i + 1 == jobs.len() { 2048 } else { i + 1 };
            black_box(sched.plan(job, *at, &policy).is_ok())
        });
    });
}

fn batch_1000(c: &mut Criterion) {
    let net = Arc::new(Network::reference().expect("reference network"));
    let policy = Policy::named("balanced", &net.policy).expect("policy");
    let jobs: Vec<_> = workload::mix(&net, 11, 1000, start(), 0).into_iter().map(|(_, j)| j).collect();
    let mut group = c.benchmark_group("batch");
    group.sample_size(10);
    group.bench_function("reference/1000", |b| {
        b.iter(|| {
            let mut sched = Scheduler::new(Arc::clone(&net), start(), Config::default());
            let inst = Instance::build(&mut sched, &jobs, start(), &policy, batch::DEFAULT_KEEP);
            black_box(batch::optimise(&mut sched, &inst, &BatchConfig::default()).total)
        });
    });
    group.finish();
}

criterion_group!(benches, online, batch_1000);
criterion_main!(benches);
