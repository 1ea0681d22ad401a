//! A hostile job against the process executor in the agent's sandbox (R7): it tries to read the
//! control plane's credentials and database, another run's directory and the agent's
//! environment, to signal the agent, to write outside its work directory and to see other
//! runs' processes. Every attempt fails, and the job's own output says so.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use suanwang_agent::{ExecState, Executor, Isolation, ProcessExecutor, RunSpec};

use super::{run_user, sandbox};

/// Each probe prints `blocked NAME` when the attempt failed and `LEAK NAME` when it worked.
const HOSTILE: &str = r#"
data=$1 agent=$2
probe() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "LEAK $name"; else echo "blocked $name"; fi; }
echo "uid $(id -u)"
probe credentials cat "$data/credentials.json"
probe database cat "$data/suanwang.db"
probe data-listing sh -c "ls -a '$data' | grep -q credentials"
probe other-run ls "$data/agent/1-1/work"
probe other-run-file cat "$data/agent/1-1/work/secret.txt"
probe agent-environ cat "/proc/$agent/environ"
probe signal-agent kill -0 "$agent"
probe write-etc touch /etc/suanwang-hostile
probe write-data touch "$data/hostile"
probe write-usr touch /usr/suanwang-hostile
if ps -eo args | grep -v grep | grep -q other-run-marker; then echo "LEAK other-processes"; else echo "blocked other-processes"; fi
echo mine > own.txt && echo "wrote own"
"#;

#[test]
fn a_hostile_job_can_reach_nothing_but_its_own_directory() {
    let sandbox = sandbox(true);
    let user = run_user();
    if sandbox.isolation == Isolation::Off && user.is_none() {
        eprintln!("SKIPPED: neither namespaces nor a run user here ({})", sandbox.describe());
        return;
    }
    eprintln!("sandbox: {}; run user: {user:?}", sandbox.describe());
    // the layout of `suanwang up`: the control plane's data directory holds its secrets and the
    // agent's run directories
    let data = std::env::temp_dir().join(format!("suanwang-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(data.join("agent")).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("mode");
    for (f, text) in [("credentials.json", "{\"operator\": \"sw_secret\"}"), ("suanwang.db", "tenants' jobs")] {
        std::fs::write(data.join(f), text).expect("secret");
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o600)).expect("mode");
    }
    let e = ProcessExecutor::new().with_sandbox(sandbox);
    let spec = |id: u64, command: &str, args: &[&str]| RunSpec {
        job_id: id,
        attempt: 1,
        command: command.into(),
        args: args.iter().map(|s| (*s).to_string()).collect(),
        env: vec![],
        dir: data.join("agent").join(format!("{id}-1")),
        run_id: format!("hostile-{id}"),
        user: user.clone(),
        memory_mib: 256,
        time_limit: Duration::from_mins(1),
        cpus: 1,
    };
    // another tenant's run, still going, with a file of its own
    let other =
        e.start(&spec(1, "sh", &["-c", "echo private > secret.txt; exec sleep 30 other-run-marker"])).expect("starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !data.join("agent/1-1/work/secret.txt").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let me = std::process::id().to_string();
    let data_s = data.display().to_string();
    let h = e.start(&spec(2, "sh", &["-c", HOSTILE, "hostile", &data_s, &me])).expect("starts");
    let (state, _) = e.wait(&h, Duration::from_secs(30)).expect("waits");
    let (out, err) = e.logs(&h).expect("logs");
    e.cancel(&other).expect("cancels");
    assert_eq!(state, ExecState::Succeeded, "{out}\n{err}");
    eprintln!("{out}");
    assert!(!out.contains("LEAK"), "the hostile job reached something:\n{out}");
    for probe in [
        "credentials",
        "database",
        "data-listing",
        "other-run",
        "other-run-file",
        "agent-environ",
        "signal-agent",
        "write-etc",
        "write-data",
        "write-usr",
        "other-processes",
    ] {
        assert!(out.contains(&format!("blocked {probe}\n")), "no verdict for {probe}:\n{out}");
    }
    // it could still do its own work
    assert!(out.contains("wrote own"), "{out}");
    assert_eq!(std::fs::read_to_string(data.join("agent/2-1/work/own.txt")).expect("its own file").trim(), "mine");
    if let Some(u) = &user {
        assert!(out.contains(&format!("uid {}\n", u.uid)), "{out}");
        assert!(!out.contains("uid 0\n"), "{out}");
    }
    assert!(!std::path::Path::new("/etc/suanwang-hostile").exists());
    let _ = std::fs::remove_dir_all(&data);
}

/// `--run-network none`: a run has no interface but loopback.
#[test]
fn without_network_a_run_has_only_loopback() {
    let sandbox = sandbox(false);
    if sandbox.isolation == Isolation::Off {
        eprintln!("SKIPPED: no namespaces here ({})", sandbox.describe());
        return;
    }
    let e = ProcessExecutor::new().with_sandbox(sandbox);
    let s = RunSpec {
        job_id: 1,
        attempt: 1,
        command: "sh".into(),
        args: vec!["-c".into(), "tail -n +3 /proc/net/dev | cut -d: -f1".into()],
        env: vec![],
        dir: std::env::temp_dir().join(format!("suanwang-nonet-{}", std::process::id())),
        run_id: "nonet".into(),
        user: run_user(),
        memory_mib: 256,
        time_limit: Duration::from_mins(1),
        cpus: 1,
    };
    let h = e.start(&s).expect("starts");
    assert_eq!(e.wait(&h, Duration::from_secs(30)).expect("waits").0, ExecState::Succeeded, "{:?}", e.logs(&h));
    let out = e.logs(&h).expect("logs").0;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), vec!["lo"], "{out}");
    let _ = std::fs::remove_dir_all(&s.dir);
}
