//! The agent loop against an in-memory control plane and an executor that runs nothing (issue
//! 11 item 5): no server, no processes. What it starts, adopts, stops and reports, and that a
//! run's end reaches the control plane as an event.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use suanwang_agent::fake::{FakeControlPlane, FakeExecutor, refused};
use suanwang_agent::{Agent, Config, ExecState, Executor, RunSpec, Usage, Users};
use suanwang_api::agent::{Assignment, Detected, PoolDeclaration, RegisterRequest, Report, SiteDeclaration, unbase64};

const WAIT: Duration = Duration::from_secs(10);

fn assignment(id: u64, attempt: u32) -> Assignment {
    Assignment {
        id,
        attempt,
        site: "fake-site".into(),
        command: "work".into(),
        args: vec![],
        env: BTreeMap::new(),
        cores: 1,
        memory_mib: 256,
        time_limit_s: 60,
        checkpoint_s: None,
        tenant: "acme".into(),
        run_id: format!("run-{id}-{attempt}"),
    }
}

struct Fixture {
    cp: Arc<FakeControlPlane>,
    exec: Arc<FakeExecutor>,
    data: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn data_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("suanwang-agent-loop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("data dir");
    d
}

/// Starts an agent on `data` (made by `data_dir`); `events`: its executor tells when runs end;
/// `idle_check`: how often it looks at everything without an event; `before`: what the control
/// plane and the machine hold before the agent starts.
fn agent_on(
    data: PathBuf,
    events: bool,
    idle_check: Duration,
    lost_after: Duration,
    before: impl FnOnce(&FakeControlPlane, &FakeExecutor),
) -> Fixture {
    let cp = Arc::new(FakeControlPlane::new("cp1"));
    let exec = Arc::new(FakeExecutor::new(events));
    before(&cp, &exec);
    let config = Config {
        site: "fake-site".into(),
        data: data.clone(),
        registration: RegisterRequest {
            site: SiteDeclaration {
                id: "fake-site".into(),
                city: "beijing".into(),
                pue: 1.3,
                pools: vec![PoolDeclaration {
                    name: "cpu".into(),
                    model: "generic-x86_64".into(),
                    count: 2,
                    memory_gib_per_unit: 1,
                    power_w_per_unit: 10.0,
                    price_fen_per_unit_hour: 30,
                }],
            },
            detected: Detected { cores: 2, memory_mib: 2048, gpus: 0 },
        },
        lost_after,
        users: Users::default(),
        traversable: false,
        poll_wait: Duration::from_millis(200),
        idle_check,
    };
    let agent = Agent::new(Arc::clone(&cp), Arc::clone(&exec) as Arc<dyn Executor>, config);
    let task = tokio::spawn(async move {
        if let Err(e) = agent.run().await {
            panic!("the agent stopped: {e}");
        }
    });
    Fixture { cp, exec, data, task }
}

fn agent(tag: &str, events: bool, idle_check: Duration) -> Fixture {
    agent_on(data_dir(tag), events, idle_check, Duration::from_mins(1), |_, _| {})
}

/// Waits until `pred` holds (bounded by `WAIT`).
async fn until(what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !pred() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reports(f: &Fixture, n: usize) -> Vec<Report> {
    f.cp.wait_reports(WAIT, |r| r.len() >= n).await.unwrap_or_else(|| panic!("{n} reports: {:?}", f.cp.reports()))
}

fn ok_usage() -> Usage {
    Usage { cpu_seconds: 0.5, peak_memory_mib: 12.0, wall_seconds: 1.0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_end_is_reported_on_the_executors_event_not_at_a_check() {
    // the loop looks at its runs on its own only once an hour: the report can only come from
    // the executor's event
    let f = agent("event", true, Duration::from_hours(1));
    f.cp.assign(vec![assignment(1, 1)]);
    until("job 1 started", || f.exec.handle_of(1, 1).is_some()).await;
    let h = f.exec.handle_of(1, 1).expect("handle");
    let ended = Instant::now();
    f.exec.finish(&h, ExecState::Succeeded, ok_usage(), b"hello\n", b"");
    let r = reports(&f, 1).await;
    let took = ended.elapsed();
    assert_eq!((r[0].id, r[0].attempt, r[0].succeeded), (1, 1, true));
    assert_eq!((r[0].stdout.as_str(), r[0].stdout_base64.as_deref()), ("hello\n", None));
    assert!((r[0].cpu_seconds - 0.5).abs() < 1e-9, "{r:?}");
    assert!(took < Duration::from_secs(2), "reported {took:?} after the end");
    // reported once, and never started again though it may still be listed for a moment
    assert_eq!(f.exec.started().len(), 1);
    assert!(f.data.join("1-1").join("reported").exists() || !f.data.join("1-1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_without_events_are_polled_at_the_executors_check_interval() {
    let f = agent("polled", false, Duration::from_hours(1));
    f.cp.assign(vec![assignment(1, 1)]);
    until("job 1 started", || f.exec.handle_of(1, 1).is_some()).await;
    let h = f.exec.handle_of(1, 1).expect("handle");
    f.exec.finish(
        &h,
        ExecState::Failed { reason: "exited with status 3".into(), exit_code: Some(3) },
        ok_usage(),
        b"",
        b"boom",
    );
    let r = reports(&f, 1).await;
    assert_eq!(
        (r[0].succeeded, r[0].reason.as_deref(), r[0].stderr.as_str()),
        (false, Some("exited with status 3"), "boom")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_run_is_stopped_before_its_next_attempt_starts() {
    let f = agent("moved", true, Duration::from_secs(1));
    f.cp.assign(vec![assignment(1, 1), assignment(2, 1)]);
    until("both started", || f.exec.started().len() == 2).await;
    // job 1 moved away and back (attempt 2); job 2 was cancelled
    f.cp.assign(vec![assignment(1, 2)]);
    until("attempt 2 started", || f.exec.handle_of(1, 2).is_some()).await;
    until("job 2 stopped", || f.exec.journal().contains(&"cancel 2-1".to_string())).await;
    let journal = f.exec.journal();
    let pos = |s: &str| journal.iter().position(|j| j == s).unwrap_or_else(|| panic!("{s} in {journal:?}"));
    assert!(pos("cancel 1-1") < pos("start 1-2"), "{journal:?}");
    assert_eq!(f.exec.state(&f.exec.handle_of(1, 1).expect("h")), Some(ExecState::Cancelled));
    assert!(f.cp.report_attempts().is_empty(), "withdrawn runs are not reported: {:?}", f.cp.report_attempts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_its_own_run_is_adopted_and_anothers_is_set_aside() {
    let data = data_dir("adopt");
    // what an earlier instance left: job 1's run (this control plane's run id), job 2's
    // directory with another control plane's run id, and job 3's run, no longer assigned
    let dir = |k: &str, run_id: &str| {
        let d = data.join(k);
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::write(d.join(suanwang_agent::RUN_ID_FILE), run_id).expect("run id");
        d
    };
    let d1 = dir("1-1", "run-1-1");
    dir("2-1", "another-control-plane");
    let d3 = dir("3-1", "run-3-1");
    std::fs::write(data.join(suanwang_agent::runner::CONTROL_PLANE_FILE), "cp1").expect("identity");
    let left = |id: u64, dir: PathBuf| RunSpec {
        job_id: id,
        attempt: 1,
        command: "work".into(),
        args: vec![],
        env: vec![],
        dir,
        run_id: format!("run-{id}-1"),
        user: None,
        memory_mib: 256,
        time_limit: Duration::from_mins(1),
        cpus: 1,
    };
    // the runs and the assignments are there before the agent starts, as after a restart
    let (mut h1, mut h3) = (None, None);
    let f = agent_on(data, true, Duration::from_secs(1), Duration::from_mins(1), |cp, exec| {
        h1 = Some(exec.leave(left(1, d1)));
        h3 = Some(exec.leave(left(3, d3)));
        cp.assign(vec![assignment(1, 1), assignment(2, 1)]);
    });
    let (h1, h3) = (h1.expect("left"), h3.expect("left"));
    until("job 2 started afresh", || f.exec.started().iter().any(|s| s.job_id == 2)).await;
    until("job 3's left run stopped", || f.exec.cancelled().contains(&h3)).await;
    assert!(
        !f.exec.started().iter().any(|s| s.job_id == 1),
        "job 1 adopted, not started again: {:?}",
        f.exec.journal()
    );
    let aside = f.data.join("previous-unknown");
    assert!(
        std::fs::read_dir(&aside)
            .expect("set aside")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("2-1-"))
    );
    // the adopted run is followed: its end is reported
    f.exec.finish(&h1, ExecState::Succeeded, ok_usage(), b"", b"");
    let r = reports(&f, 1).await;
    assert_eq!((r[0].id, r[0].succeeded), (1, true), "{:?}", r[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_is_not_utf8_is_reported_as_its_bytes_too() {
    let f = agent("binary", true, Duration::from_secs(1));
    f.cp.assign(vec![assignment(1, 1)]);
    until("started", || f.exec.handle_of(1, 1).is_some()).await;
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR";
    let mut long = vec![b'x'; 100 * 1024];
    long.extend_from_slice(b"\xff tail");
    f.exec.finish(&f.exec.handle_of(1, 1).expect("h"), ExecState::Succeeded, ok_usage(), png, &long);
    let r = &reports(&f, 1).await[0];
    assert_eq!(r.stdout, String::from_utf8_lossy(png));
    assert_eq!(r.stdout_base64.as_deref().and_then(unbase64).as_deref(), Some(&png[..]));
    // the last 64 KiB only, as bytes
    let raw = r.stderr_base64.as_deref().and_then(unbase64).expect("stderr bytes");
    assert_eq!(raw.len(), 64 * 1024);
    assert!(raw.ends_with(b"\xff tail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_refused_for_size_is_trimmed_and_sent_again() {
    let f = agent("too-large", true, Duration::from_secs(1));
    // this control plane takes reports of at most 8,000 bytes
    f.cp.refuse_reports(Box::new(|_, size| (size > 8_000).then(|| refused(413, "too_large", "the body is too large"))));
    f.cp.assign(vec![assignment(1, 1)]);
    until("started", || f.exec.handle_of(1, 1).is_some()).await;
    let out = "a line of output\n".repeat(10_000);
    f.exec.finish(&f.exec.handle_of(1, 1).expect("h"), ExecState::Succeeded, ok_usage(), out.as_bytes(), b"");
    let r = &reports(&f, 1).await[0];
    assert!(r.succeeded, "{r:?}");
    assert!(!r.stdout.is_empty() && r.stdout.len() <= 4096 && out.ends_with(&r.stdout), "{}", r.stdout.len());
    assert!(f.cp.report_attempts().len() >= 2, "refused first: {}", f.cp.report_attempts().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_refused_as_invalid_or_implausible_ends_the_run_as_failed_with_the_reason() {
    let f = agent("invalid", true, Duration::from_secs(1));
    f.cp.refuse_reports(Box::new(|v, _| {
        (v["cpu_seconds"].as_f64().unwrap_or(0.0) > 1000.0)
            .then(|| refused(422, "implausible_report", "cpu_seconds: more than the run could use"))
    }));
    f.cp.assign(vec![assignment(1, 1), assignment(2, 1)]);
    until("started", || f.exec.started().len() == 2).await;
    // a NaN measured: the control plane cannot take the body
    let nan = Usage { cpu_seconds: f64::NAN, ..ok_usage() };
    f.exec.finish(&f.exec.handle_of(1, 1).expect("h"), ExecState::Succeeded, nan, b"out", b"");
    let huge = Usage { cpu_seconds: 1e9, ..ok_usage() };
    f.exec.finish(&f.exec.handle_of(2, 1).expect("h"), ExecState::Succeeded, huge, b"out", b"");
    let r = reports(&f, 2).await;
    let by_id = |id: u64| r.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("{id} in {r:?}"));
    let (invalid, implausible) = (by_id(1), by_id(2));
    assert!(!invalid.succeeded, "{invalid:?}");
    assert!(invalid.reason.as_deref().is_some_and(|r| r.contains("refused as invalid")), "{invalid:?}");
    assert_eq!((invalid.cpu_seconds, invalid.wall_seconds), (0.0, 0.0));
    assert!(!implausible.succeeded);
    assert!(
        implausible
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("usage report was refused") && r.contains("cpu_seconds")),
        "{implausible:?}"
    );
    assert_eq!(implausible.stdout, "out", "an implausible report keeps its output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_the_control_plane_could_not_take_is_sent_again_once_it_can() {
    let f = agent("down", true, Duration::from_secs(1));
    f.cp.assign(vec![assignment(1, 1)]);
    until("started", || f.exec.handle_of(1, 1).is_some()).await;
    f.cp.set_down(true);
    f.exec.finish(&f.exec.handle_of(1, 1).expect("h"), ExecState::Succeeded, ok_usage(), b"", b"");
    until("a report tried while down", || f.cp.missed_reports() > 0).await;
    f.cp.set_down(false);
    let r = reports(&f, 1).await;
    assert_eq!((r[0].id, r[0].succeeded), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_start_is_reported_failed_with_the_reason() {
    let f = agent("no-start", true, Duration::from_secs(1));
    f.cp.assign(vec![Assignment { command: "no-such-command".into(), ..assignment(1, 1) }]);
    let r = &reports(&f, 1).await[0];
    assert!(!r.succeeded && r.reason.as_deref().is_some_and(|x| x.contains("not found")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_its_executor_stops_answering_for_is_reported_lost() {
    let f = agent_on(data_dir("lost"), false, Duration::from_secs(1), Duration::from_millis(300), |_, _| {});
    f.cp.assign(vec![assignment(1, 1)]);
    until("started", || f.exec.handle_of(1, 1).is_some()).await;
    f.exec.set_silent(true);
    let r = &reports(&f, 1).await[0];
    assert!(!r.succeeded && r.reason.as_deref().is_some_and(|x| x.contains("the fake executor lost the run")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_that_forgot_the_site_gets_it_registered_again() {
    let f = agent("forgot", true, Duration::from_secs(1));
    assert!(f.cp.wait_registrations(1, WAIT).await);
    f.cp.forget_site();
    assert!(f.cp.wait_registrations(2, WAIT).await, "registered again");
    // and it serves on
    f.cp.assign(vec![assignment(1, 1)]);
    until("started after registering again", || f.exec.handle_of(1, 1).is_some()).await;
}
