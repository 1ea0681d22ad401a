//! One conformance suite for every executor (today: process; Slurm joins it with its executor).

use std::path::PathBuf;
use std::time::Duration;

use suanwang_agent::{ExecError, ExecState, Executor, ProcessExecutor, RunSpec, RunUser, Sandbox, SlurmExecutor};

mod agent_loop;
mod hostile;

/// The strongest sandbox this machine allows, its roots built by the crate's own helper binary.
pub fn sandbox(network: bool) -> Sandbox {
    Sandbox::detect_with(network, PathBuf::from(env!("CARGO_BIN_EXE_suanwang-sandbox")))
}

fn spec_in(executor: &str, tag: &str, command: &str, args: &[&str]) -> RunSpec {
    RunSpec {
        job_id: 1,
        attempt: 1,
        command: command.into(),
        args: args.iter().map(|s| (*s).to_string()).collect(),
        env: vec![("FOO".into(), "bar-42".into())],
        dir: std::env::temp_dir().join(format!("suanwang-exec-{}-{executor}-{tag}", std::process::id())),
        run_id: format!("run-{executor}-{tag}"),
        user: None,
        memory_mib: 256,
        time_limit: Duration::from_mins(1),
        cpus: 1,
    }
}

fn workdir(s: &RunSpec) -> PathBuf {
    suanwang_agent::work_dir(&s.dir.canonicalize().unwrap_or_else(|_| s.dir.clone()))
}

/// The dedicated run user, when this process is root (and may create it); `None` otherwise.
pub fn run_user() -> Option<RunUser> {
    suanwang_agent::sandbox::agent_is_root().then(|| RunUser::ensure_system("suanwang-run").expect("the run user"))
}

/// What every executor must do, with runs executing as `user` (the agent's own when `None`).
/// `label` names the run directories (tests run at once: each suite needs its own).
fn conformance(e: &dyn Executor, label: &str, user: Option<&RunUser>) {
    let name = label;
    let spec =
        |tag: &str, command: &str, args: &[&str]| RunSpec { user: user.cloned(), ..spec_in(name, tag, command, args) };
    let wait = Duration::from_secs(30);

    // runs a command with its environment in its working directory and keeps the output
    let s = spec("ok", "sh", &["-c", "echo hello $FOO; pwd; id -u; echo oops >&2"]);
    let h = e.start(&s).expect("starts");
    let (state, usage) = e.wait(&h, wait).expect("waits");
    assert_eq!(state, ExecState::Succeeded, "{:?}", e.logs(&h));
    let (out, err) = e.logs(&h).expect("logs");
    assert!(out.contains("hello bar-42"), "{out}");
    // as the run's user (the agent's own when none is given)
    let uid = user.map_or_else(|| suanwang_agent::sandbox::current_ids().0, |u| u.uid);
    assert_eq!(out.lines().nth(2), Some(uid.to_string().as_str()), "{out}");
    assert!(out.contains(&workdir(&s).display().to_string()), "{out}");
    assert_eq!(err.trim(), "oops");
    assert!(usage.wall_seconds.is_finite() && usage.wall_seconds < wait.as_secs_f64(), "{usage:?}");

    // a failing command: its status and a reason
    let h = e.start(&spec("fail", "sh", &["-c", "exit 3"])).expect("starts");
    match e.wait(&h, wait).expect("waits").0 {
        ExecState::Failed { exit_code, reason } => {
            assert_eq!(exit_code, Some(3));
            assert!(reason.contains("status 3"), "{reason}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // a command that cannot start is an error, not a hang
    let err = e.start(&spec("missing", "no-such-command-xyz", &[])).expect_err("refused");
    assert!(matches!(err, ExecError::Start { .. }), "{err}");

    // more memory than allowed: fails, and says so
    if std::path::Path::new("/usr/bin/prlimit").exists() {
        let mut s = spec("mem", "python3", &["-c", "a = bytearray(600 * 1024 * 1024); print(len(a))"]);
        s.memory_mib = 128;
        let h = e.start(&s).expect("starts");
        match e.wait(&h, wait).expect("waits").0 {
            ExecState::Failed { reason, .. } => assert!(reason.contains("memory"), "{reason}"),
            other => panic!("expected a memory failure, got {other:?}"),
        }
    } else {
        eprintln!("SKIPPED memory limit: prlimit (util-linux) is not installed");
    }

    // the wall-time limit
    let mut s = spec("slow", "sleep", &["30"]);
    s.time_limit = Duration::from_secs(1);
    let h = e.start(&s).expect("starts");
    match e.wait(&h, wait).expect("waits").0 {
        ExecState::Failed { reason, .. } => assert!(reason.contains("time limit"), "{reason}"),
        other => panic!("expected a time-limit failure, got {other:?}"),
    }

    // cancel stops the whole tree, and the run leaves the running list
    let h = e.start(&spec("tree", "sh", &["-c", "sleep 30 & sleep 30; wait"])).expect("starts");
    assert!(e.running().expect("running").contains(&h));
    e.cancel(&h).expect("cancels");
    assert_eq!(e.poll(&h).expect("polls").0, ExecState::Cancelled);
    assert!(!e.running().expect("running").contains(&h));
    if let Some(pgid) = h.0.strip_prefix("pg:") {
        let left = std::process::Command::new("ps").args(["-o", "pid=,stat=", "-g", pgid]).output().expect("ps");
        let alive: Vec<String> =
            String::from_utf8_lossy(&left.stdout).lines().filter(|l| !l.contains('Z')).map(str::to_owned).collect();
        assert!(alive.is_empty(), "processes of group {pgid} survive cancel: {alive:?}");
    }

    // use is metered
    if std::path::Path::new("/usr/bin/time").exists() {
        let h = e
            .start(&spec("cpu", "python3", &["-c", "x = 0\nfor i in range(3_000_000): x += i\nprint(x)"]))
            .expect("starts");
        let (state, usage) = e.wait(&h, wait).expect("waits");
        assert_eq!(state, ExecState::Succeeded);
        assert!(usage.cpu_seconds > 0.05, "{usage:?}");
        assert!(usage.peak_memory_mib > 1.0, "{usage:?}");
    } else {
        eprintln!("SKIPPED metering: GNU time is not installed");
    }
    assert!(matches!(e.poll(&suanwang_agent::Handle("pg:0".into())), Err(ExecError::Unknown(_))));
}

/// After a restart, a second instance takes over what the first started: a run still going is
/// followed to its end (output and status intact), an unwanted one can be stopped, and a
/// directory with no run is not mistaken for one.
fn restart_conformance(first: &dyn Executor, second: &dyn Executor, label: &str) {
    // a run started for another control plane (or another database) under the same job and
    // attempt numbers is not adopted: its run id differs
    let s = spec_in(label, "foreign", "sh", &["-c", "echo word-A; sleep 30"]);
    let h = first.start(&s).expect("starts");
    let other = RunSpec { run_id: "run-of-another-control-plane".into(), ..s.clone() };
    assert_eq!(second.adopt(&other).expect("adopt answers"), None);
    first.cancel(&h).expect("cancels");

    let name = label;
    let wait = Duration::from_secs(30);
    let s = spec_in(name, "adopt", "sh", &["-c", "sleep 1; echo survived $FOO; exit 5"]);
    let h = first.start(&s).expect("starts");
    let adopted = second.adopt(&s).expect("adopts").expect("a run to adopt");
    assert_eq!(adopted, h);
    match second.wait(&adopted, wait).expect("waits").0 {
        ExecState::Failed { exit_code, .. } => assert_eq!(exit_code, Some(5)),
        other => panic!("expected the adopted run to end with status 5, got {other:?}"),
    }
    assert_eq!(second.logs(&adopted).expect("logs").0.trim(), "survived bar-42");

    let s = spec_in(name, "orphan", "sh", &["-c", "sleep 30 & sleep 30; wait"]);
    let h = first.start(&s).expect("starts");
    let adopted = second.adopt(&s).expect("adopts").expect("a run to adopt");
    assert_eq!(second.poll(&adopted).expect("polls").0, ExecState::Running);
    second.cancel(&adopted).expect("cancels");
    assert_eq!(second.poll(&adopted).expect("polls").0, ExecState::Cancelled);
    assert!(!first.running().expect("running").contains(&h), "the orphan still runs");

    // the time limit counts from the real start, not from the adoption: a run adopted after
    // outliving its limit is stopped at once (the sleep lets it age twice its limit, so a
    // scheduler that starts it a few seconds late still has it over the limit; it synchronises
    // nothing). The wait after adoption stays under the limit: counted from the adoption, the
    // limit would not be reached in it.
    let mut s = spec_in(name, "aged", "sleep", &["60"]);
    s.time_limit = Duration::from_secs(3);
    let h = first.start(&s).expect("starts");
    std::thread::sleep(Duration::from_secs(6));
    let adopted = second.adopt(&s).expect("adopts").expect("a run to adopt");
    match second.wait(&adopted, Duration::from_secs(2)).expect("waits").0 {
        ExecState::Failed { reason, .. } => assert!(reason.contains("time limit"), "{reason}"),
        other => panic!("expected the aged run to be over its time limit, got {other:?}"),
    }
    let _ = first.cancel(&h);

    let empty = spec_in(name, "nothing-here", "true", &[]);
    let _ = std::fs::create_dir_all(&empty.dir);
    let _ = std::fs::remove_file(empty.dir.join(suanwang_agent::HANDLE_FILE));
    assert_eq!(second.adopt(&empty).expect("adopts"), None);
}

#[test]
fn the_process_executor_conforms() {
    let e = ProcessExecutor::new();
    eprintln!("process executor limits: {}", e.limits());
    conformance(&e, "process", None);
    restart_conformance(&ProcessExecutor::new(), &ProcessExecutor::new(), "process");
}

/// The same suite in the sandbox the agent uses (namespaces where the kernel allows them),
/// with runs as the dedicated run user when this process is root.
#[test]
fn the_process_executor_conforms_in_its_sandbox() {
    let sandbox = sandbox(true);
    eprintln!("sandbox: {}", sandbox.describe());
    let e = ProcessExecutor::new().with_sandbox(sandbox.clone());
    conformance(&e, "process-sandbox", run_user().as_ref());
    let second = ProcessExecutor::new().with_sandbox(sandbox);
    restart_conformance(&e, &second, "process-sandbox");
}

/// The fallback where the kernel allows no namespaces: runs still execute as the run user
/// (reaching their work directory through the run's directory, mode 0711).
#[test]
fn the_process_executor_conforms_as_the_run_user_without_namespaces() {
    let Some(user) = run_user() else {
        eprintln!("SKIPPED: not root, so runs cannot change user");
        return;
    };
    let e = ProcessExecutor::new().with_sandbox(Sandbox::off());
    conformance(&e, "process-user", Some(&user));
}

#[test]
fn the_process_executor_conforms_with_rlimits_only() {
    conformance(&ProcessExecutor::rlimits_only(), "process-rlimits", None);
    restart_conformance(&ProcessExecutor::rlimits_only(), &ProcessExecutor::rlimits_only(), "process-rlimits");
}

/// A run's directory is the run's to write: a handle file that names no run of ours (a
/// group id of 0 or 1 would make `kill` hit the agent's own group or every process, another
/// Slurm job's id…) is not adopted, and nothing is signalled.
#[test]
fn forged_handle_files_are_not_adopted() {
    let probe = |executor: &dyn Executor, tag: &str, handle: &str| {
        let s = spec_in(executor.name(), tag, "true", &[]);
        std::fs::create_dir_all(&s.dir).expect("dir");
        std::fs::write(s.dir.join(suanwang_agent::HANDLE_FILE), handle).expect("handle");
        std::fs::write(s.dir.join(suanwang_agent::RUN_ID_FILE), &s.run_id).expect("run id");
        std::fs::write(s.dir.join("started_ms"), "0").expect("started");
        executor.adopt(&s).expect("adopt answers")
    };
    let process = ProcessExecutor::new();
    for (i, forged) in ["pg:0", "pg:1", "pg:01", "pg:-1", "pg:x", "slurm:5"].iter().enumerate() {
        assert_eq!(probe(&process, &format!("forged{i}"), forged), None, "{forged}");
    }
    // a live group that does not work in the run's directory (this test's own) is not ours
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let pgrp = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(2)).expect("pgrp").to_string();
    assert_eq!(probe(&process, "forged-live", &format!("pg:{pgrp}")), None);
    let slurm = SlurmExecutor::new();
    for (i, forged) in ["slurm:", "slurm:1;scancel -u root", "slurm:-1", "pg:42"].iter().enumerate() {
        assert_eq!(probe(&slurm, &format!("forged-s{i}"), forged), None, "{forged}");
    }
}

/// A relative working directory works: paths handed to the run's wrappers are absolute.
#[test]
fn a_relative_working_directory_works() {
    let e = ProcessExecutor::new();
    let mut s = spec_in("process", "relative", "sh", &["-c", "echo here"]);
    s.dir = PathBuf::from(format!("../../target/suanwang-rel-{}", std::process::id()));
    let h = e.start(&s).expect("starts");
    assert_eq!(e.wait(&h, Duration::from_secs(30)).expect("waits").0, ExecState::Succeeded, "{:?}", e.logs(&h));
    assert_eq!(e.logs(&h).expect("logs").0.trim(), "here");
    let _ = std::fs::remove_dir_all(&s.dir);
}

fn dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

/// Where the agent can make control groups (root on this machine: cgroup v1 memory and cpu;
/// a delegated cgroup v2 subtree elsewhere), limits hold on resident memory and cores, and
/// cancel reaches processes that left the run's process group.
#[test]
fn control_groups_limit_resident_memory_and_cores_and_cancel_reaches_escaped_processes() {
    let e = ProcessExecutor::new();
    if !e.limits().starts_with("cgroup") {
        eprintln!("SKIPPED: this process cannot make control groups ({})", e.limits());
        return;
    }
    let wait = Duration::from_mins(1);
    let spec = |tag: &str, command: &str, args: &[&str]| spec_in("cgroup", tag, command, args);

    // 1 GiB of address space reserved but untouched fits a 128 MiB limit on resident memory
    // (an address-space rlimit refuses it: runtimes that reserve ahead break under rlimits)
    let reserve = ["-c", "import mmap; m = mmap.mmap(-1, 1 << 30); m[0] = 1; print('reserved')"];
    let mut s = spec("reserve", "python3", &reserve);
    s.memory_mib = 128;
    let h = e.start(&s).expect("starts");
    assert_eq!(e.wait(&h, wait).expect("waits").0, ExecState::Succeeded, "{:?}", e.logs(&h));
    if std::path::Path::new("/usr/bin/prlimit").exists() {
        let r = ProcessExecutor::rlimits_only();
        let mut s = spec("reserve-rlimit", "python3", &reserve);
        s.memory_mib = 128;
        let h = r.start(&s).expect("starts");
        assert!(matches!(r.wait(&h, wait).expect("waits").0, ExecState::Failed { .. }));
    }

    // touching more than the limit: the kernel kills it in its group, and the reason says so
    let mut s = spec("oom", "python3", &["-c", "a = bytearray(400 * 1024 * 1024); print(len(a))"]);
    s.memory_mib = 128;
    let h = e.start(&s).expect("starts");
    let (state, usage) = e.wait(&h, wait).expect("waits");
    match state {
        ExecState::Failed { reason, .. } => assert!(reason.contains("memory limit of 128 MiB"), "{reason}"),
        other => panic!("expected a memory failure, got {other:?}"),
    }
    // stopped near the limit, far below the 400 MiB it asked for (GNU time's RSS counts shared
    // pages the group does not, so a little above 128)
    assert!(usage.peak_memory_mib >= 100.0 && usage.peak_memory_mib <= 200.0, "{usage:?}");

    // a process that leaves the process group (setsid) is still the run's: cancel stops it
    let s = spec("escape", "sh", &["-c", "setsid sleep 300 & sleep 300"]);
    let h = e.start(&s).expect("starts");
    let group = e.group(&h).expect("the run has a group");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut pids = group.pids();
    while pids.len() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        pids = group.pids();
    }
    assert!(pids.len() >= 4, "time, sh and two sleeps in the group: {pids:?}");
    e.cancel(&h).expect("cancels");
    let alive: Vec<u32> = pids.iter().copied().filter(|p| !dead(*p)).collect();
    assert!(alive.is_empty(), "processes of the run survive cancel: {alive:?}");

    // the CPU quota: two busy loops for a second get about one core between them
    if e.limits().contains("cpu") && std::path::Path::new("/usr/bin/time").exists() {
        let busy = "timeout 1 sh -c 'while :; do :; done' & timeout 1 sh -c 'while :; do :; done'; wait";
        let mut s = spec("quota", "sh", &["-c", busy]);
        s.cpus = 1;
        let h = e.start(&s).expect("starts");
        let (state, usage) = e.wait(&h, wait).expect("waits");
        assert_eq!(state, ExecState::Succeeded);
        assert!(usage.cpu_seconds <= 1.3, "one core's quota, yet {usage:?}");
    }
}

/// Against a real Slurm: `scripts/test.sh` starts a one-node cluster where it can (root, Debian's
/// slurm-wlm) and then sets SUANWANG_REQUIRE_SLURM=1, so a missing Slurm fails instead of skipping.
#[test]
fn the_slurm_executor_conforms() {
    if !SlurmExecutor::available() {
        assert!(
            std::env::var_os("SUANWANG_REQUIRE_SLURM").is_none(),
            "Slurm was started for the tests but does not answer"
        );
        eprintln!("SKIPPED: no Slurm controller answers (sinfo); run ./scripts/test.sh as root to start one");
        return;
    }
    conformance(&SlurmExecutor::new(), "slurm", None);
    restart_conformance(&SlurmExecutor::new(), &SlurmExecutor::new(), "slurm");
    // submitted as the run user (`sbatch --uid/--gid` as root): the job runs as that user
    if let Some(user) = run_user() {
        conformance(&SlurmExecutor::new(), "slurm-user", Some(&user));
    }
}

/// The process executor tells when a run ends (a pidfd, not a poll), also for a run adopted
/// after a restart, and when a run reaches its time limit; output that is not UTF-8 is kept
/// as bytes.
#[test]
fn the_process_executor_tells_when_a_run_ends() {
    let (tx, rx) = std::sync::mpsc::channel::<suanwang_agent::Handle>();
    let on_change: suanwang_agent::OnChange = std::sync::Arc::new(move |h: &suanwang_agent::Handle| {
        let _ = tx.send(h.clone());
    });
    let e = ProcessExecutor::new().with_sandbox(sandbox(true));
    let s =
        RunSpec { user: run_user(), ..spec_in("process", "watch", "sh", &["-c", "sleep 0.3; printf '\\211PNG\\377'"]) };
    let h = e.start(&s).expect("starts");
    assert!(e.watch(&h, on_change.clone()), "the process executor has events");
    assert_eq!(e.poll(&h).expect("polls").0, ExecState::Running);
    let told = rx.recv_timeout(Duration::from_secs(30)).expect("told of the end");
    assert_eq!(told, h);
    assert_eq!(e.poll(&h).expect("polls").0, ExecState::Succeeded, "{:?}", e.logs(&h));
    assert_eq!(e.logs_bytes(&h).expect("logs").0, b"\x89PNG\xff");

    // a run past its time limit: told at the limit, stopped by the poll, told again at its exit
    let s = RunSpec {
        time_limit: Duration::from_secs(1),
        user: run_user(),
        ..spec_in("process", "watch-limit", "sleep", &["30"])
    };
    let h = e.start(&s).expect("starts");
    assert!(e.watch(&h, on_change.clone()));
    let started = std::time::Instant::now();
    rx.recv_timeout(Duration::from_secs(30)).expect("told at the time limit");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    let _ = e.poll(&h).expect("polls");
    rx.recv_timeout(Duration::from_secs(30)).expect("told of the exit");
    let (state, _) = e.poll(&h).expect("polls");
    assert!(matches!(&state, ExecState::Failed { reason, .. } if reason.contains("time limit")), "{state:?}");

    // adopted by a second instance (not its child): still an event
    let s = RunSpec { user: run_user(), ..spec_in("process", "watch-adopted", "sleep", &["0.5"]) };
    let first = ProcessExecutor::new().with_sandbox(sandbox(true));
    let h = first.start(&s).expect("starts");
    let second = ProcessExecutor::new().with_sandbox(sandbox(true));
    let adopted = second.adopt(&s).expect("adopts").expect("a run");
    assert!(second.watch(&adopted, on_change));
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).expect("told"), adopted);
    let _ = first.wait(&h, Duration::from_secs(30));
}
