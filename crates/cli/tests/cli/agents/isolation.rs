//! Tenant code against the provider's machine, through `suanwang up` and `suanwang agent` and
//! the real HTTP API (R7, R2): a hostile job runs unprivileged and reaches neither the control
//! plane's secrets nor its database; an agent whose data directory served another control plane
//! never passes an old run's output off as a new job's; bad flags are refused at start.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use super::{Proc, Up, get, job, slurm_answers, spawn, submit, until, until_process, until_sites, up};

/// A shell script that tries each `(name, command)` and prints `blocked NAME` when it failed,
/// `LEAK NAME` when it worked; it starts with `user NAME UID`.
fn probes(items: &[(&str, String)]) -> String {
    let mut s = String::from(
        "probe() { name=$1; shift; if \"$@\" >/dev/null 2>&1; then echo \"LEAK $name\"; else echo \"blocked $name\"; fi; }; \
         echo \"user $(id -un) $(id -u)\"; ",
    );
    for (name, cmd) in items {
        let _ = write!(s, "probe {name} {cmd}; ");
    }
    s
}

/// Runs `script` as a job on `site`; its standard output, once it completed.
async fn run_probes(u: &Up, site: &str, script: &str) -> String {
    let id = submit(u, job("probes", &[site], script)).await;
    let done = until(u, id, "ended", 90, |j| j["state"] == "completed" || j["state"] == "failed").await;
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(done["state"], "completed", "{done}\n{logs}");
    logs["stdout"].as_str().unwrap_or_default().to_string()
}

/// Every probe was blocked, none leaked.
fn all_blocked(out: &str, items: &[(&str, String)]) {
    assert!(!out.contains("LEAK"), "the hostile job reached something:\n{out}");
    for (name, _) in items {
        assert!(out.contains(&format!("blocked {name}\n")), "no verdict for {name}:\n{out}");
    }
}

/// The user `name`, created as a system user when missing (root only).
fn system_user(name: &str) -> u32 {
    suanwang_agent::RunUser::ensure_system(name).expect("the user").uid
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
}

fn is_root() -> bool {
    suanwang_agent::sandbox::agent_is_root()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_job_on_the_local_site_runs_unprivileged_and_reaches_no_secret() {
    let u = up("hostile", &[]).await;
    until_sites(&u, &["local"]).await;
    // the secrets are their owner's alone
    assert_eq!(mode(&u.dir), 0o700);
    for f in ["credentials.json", "suanwang.db"] {
        assert_eq!(mode(&u.dir.join(f)), 0o600, "{f}");
    }
    let data = u.dir.display().to_string();
    // what the tester of the issue tried, and more; each line says whether it worked
    let script = format!(
        "probe() {{ name=$1; shift; if \"$@\" >/dev/null 2>&1; then echo \"LEAK $name\"; else echo \"blocked $name\"; fi; }}; \
         echo \"user $(id -un)\"; \
         probe credentials-relative cat ../../credentials.json; \
         probe credentials cat {data}/credentials.json; \
         probe database cat {data}/suanwang.db; \
         probe agent-directory ls {data}/agent; \
         probe agent-environ sh -c 'for p in /proc/[0-9]*; do cat $p/environ; done | grep -q SUANWANG_SERVER'; \
         probe write-outside touch {data}/x; \
         echo ok > mine.txt && echo wrote-own"
    );
    let id = submit(&u, job("hostile", &["local"], &script)).await;
    let done = until(&u, id, "ended", 60, |j| j["state"] == "completed" || j["state"] == "failed").await;
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    let out = logs["stdout"].as_str().unwrap_or_default().to_string();
    assert_eq!(done["state"], "completed", "{done}\n{logs}");
    eprintln!("{out}");
    assert!(!out.contains("LEAK"), "the hostile job reached something:\n{out}");
    for probe in
        ["credentials-relative", "credentials", "database", "agent-directory", "agent-environ", "write-outside"]
    {
        assert!(out.contains(&format!("blocked {probe}\n")), "no verdict for {probe}:\n{out}");
    }
    assert!(out.contains("wrote-own"), "{out}");
    if is_root() {
        // the agent is root; the job is not
        assert!(out.contains("user suanwang-run\n"), "{out}");
    }
}

/// An agent's data directory that served another control plane (a fresh `up` numbers its jobs
/// from 1 again): the new job 1 runs its own command; the old job 1's run is stopped and set
/// aside, never adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_control_plane_never_gets_an_old_runs_output() {
    let data_dir = std::env::temp_dir().join(format!("suanwang-agent-cp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.display().to_string();
    let marker = format!("{}.75", 700 + std::process::id() % 100);
    let first_id = {
        let u = up("cp-first", &["--no-local-agent"]).await;
        let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", u.operator.as_str())];
        let mut agent = spawn(&["agent", "--site", "edge-1", "--data", &data], &env);
        until_sites(&u, &["edge-1"]).await;
        let id = submit(&u, job("word-a", &["edge-1"], &format!("echo word-A; sleep {marker}"))).await;
        until(&u, id, "running", 60, |j| j["state"] == "running").await;
        until_process(&marker, true, "the first run never started").await;
        // the agent dies with its run going; the control plane goes away with its database
        agent.kill().expect("SIGKILL the agent");
        let _ = agent.wait();
        id
    };
    let u = up("cp-second", &["--no-local-agent"]).await;
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", u.operator.as_str())];
    let _agent = spawn(&["agent", "--site", "edge-1", "--data", &data], &env);
    until_sites(&u, &["edge-1"]).await;
    let id = submit(&u, job("word-b", &["edge-1"], "echo word-B")).await;
    assert_eq!(id, first_id, "both control planes number their first job alike");
    until(&u, id, "completed", 60, |j| j["state"] == "completed").await;
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(logs["stdout"].as_str().map(str::trim), Some("word-B"), "{logs}");
    // the old run was stopped, and its directory set aside
    until_process(&marker, false, "the old control plane's run still runs").await;
    let aside: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("previous-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn agent_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(args)
        .env("SUANWANG_SERVER", "http://127.0.0.1:9")
        .env_remove("SUANWANG_TOKEN")
        .output()
        .expect("suanwang runs");
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_run_and_token_flags_are_refused_at_start_naming_the_flag() {
    let dir = std::env::temp_dir().join(format!("suanwang-badflags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = dir.join("token");
    std::fs::write(&token, "sw_0123").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("mode");
    let t = token.display().to_string();
    let data = dir.join("agent").display().to_string();
    let err = agent_fails(&["agent", "--site", "x-1", "--token-file", &t, "--data", &data]);
    assert!(err.contains("--token-file") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("mode");
    let err =
        agent_fails(&["agent", "--site", "x-1", "--token-file", &t, "--data", &data, "--run-as", "no-such-user-x"]);
    assert!(err.contains("--run-as no-such-user-x"), "{err}");
    if is_root() {
        let err = agent_fails(&["agent", "--site", "x-1", "--token-file", &t, "--data", &data, "--run-as", "root"]);
        assert!(err.contains("--allow-root-runs"), "{err}");
    }
    let err = agent_fails(&["agent", "--site", "x-1", "--token-file", &t, "--data", &data, "--run-network", "some"]);
    assert!(err.contains("--run-network"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent that is not root runs jobs as its own user, yet they cannot read its data directory
/// (a user namespace makes the mount and PID namespaces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_is_not_root_keeps_its_data_directory_from_its_runs() {
    if !is_root() {
        eprintln!("SKIPPED: starting an agent as another user needs root");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_suanwang");
    let as_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    if !Command::new("setpriv").args(as_nobody).args(["test", "-x", bin]).status().is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: user nobody cannot reach {bin}");
        return;
    }
    let u = up("nonroot", &["--no-local-agent"]).await;
    let data_dir = std::env::temp_dir().join(format!("suanwang-agent-nobody-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).expect("dir");
    std::fs::write(data_dir.join("secret.txt"), "the agent's").expect("secret");
    for p in [data_dir.join("secret.txt"), data_dir.clone()] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).expect("chown");
    }
    std::fs::set_permissions(data_dir.join("secret.txt"), std::fs::Permissions::from_mode(0o600)).expect("mode");
    let data = data_dir.display().to_string();
    let agent = Proc(
        Command::new("setpriv")
            .args(as_nobody)
            .args([bin, "agent", "--site", "nobody-1", "--data", &data])
            .env("SUANWANG_SERVER", &u.url)
            .env("SUANWANG_TOKEN", &u.operator)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the agent starts"),
    );
    until_sites(&u, &["nobody-1"]).await;
    let pid = agent.id();
    let items = [
        ("agent-secret", format!("cat {data}/secret.txt")),
        ("agent-directory", format!("sh -c 'ls -a {data} | grep -q secret'")),
        ("agent-environ", format!("cat /proc/{pid}/environ")),
        ("signal-agent", format!("kill -0 {pid}")),
    ];
    let out = run_probes(&u, "nobody-1", &probes(&items)).await;
    assert!(out.starts_with("user nobody 65534\n"), "runs are the agent's user:\n{out}");
    all_blocked(&out, &items);
    drop(agent);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `--run-as-map`: each tenant's jobs run as the user the file maps it to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_run_as_the_users_the_map_names() {
    if !is_root() {
        eprintln!("SKIPPED: mapping tenants to users needs root");
        return;
    }
    let uid = system_user("suanwang-acme");
    let map = std::env::temp_dir().join(format!("suanwang-map-{}.toml", std::process::id()));
    std::fs::write(&map, "[users]\n\"acme-ai\" = \"suanwang-acme\"\n").expect("map");
    let u = up("map", &["--run-as-map", &map.display().to_string()]).await;
    until_sites(&u, &["local"]).await;
    let out = run_probes(&u, "local", &probes(&[])).await;
    assert_eq!(out.trim(), format!("user suanwang-acme {uid}"), "{out}");
    let _ = std::fs::remove_file(&map);
}

/// The hostile job through the Slurm executor runs as the mapped user: the control plane's
/// secrets, the agent's environment and the system stay out of its reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_job_through_slurm_runs_as_the_mapped_user() {
    if !is_root() || !slurm_answers() {
        eprintln!("SKIPPED: needs root and a Slurm controller");
        return;
    }
    let u = up("slurm-hostile", &["--no-local-agent"]).await;
    let data_dir = std::env::temp_dir().join(format!("suanwang-agent-slurm-hostile-{}", std::process::id()));
    let data = data_dir.display().to_string();
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", u.operator.as_str())];
    let agent = spawn(&["agent", "--site", "hpc-h", "--executor", "slurm", "--data", &data], &env);
    until_sites(&u, &["hpc-h"]).await;
    let (pid, cp) = (agent.id(), u.dir.display().to_string());
    let items = [
        ("credentials", format!("cat {cp}/credentials.json")),
        ("database", format!("cat {cp}/suanwang.db")),
        ("agent-environ", format!("cat /proc/{pid}/environ")),
        ("signal-agent", format!("kill -0 {pid}")),
        ("write-etc", "touch /etc/suanwang-hostile".to_string()),
        ("write-control-plane", format!("touch {cp}/x")),
        ("agent-directory", format!("ls {data}")),
    ];
    let out = run_probes(&u, "hpc-h", &probes(&items)).await;
    let uid = system_user("suanwang-run");
    assert!(out.starts_with(&format!("user suanwang-run {uid}\n")), "{out}");
    all_blocked(&out, &items);
    drop(agent);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A job that prints megabytes completes: its report carries the last 64 KiB of each stream
/// (the full output stays on the site), never a body too large to be taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_prints_megabytes_completes_with_the_tail_of_its_output() {
    let u = up("chatty", &[]).await;
    until_sites(&u, &["local"]).await;
    let script =
        "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo the-end; head -c 2000000 /dev/zero | tr '\\0' y >&2";
    let id = submit(&u, job("chatty", &["local"], script)).await;
    let done = until(&u, id, "ended", 60, |j| j["state"] == "completed" || j["state"] == "failed").await;
    assert_eq!(done["state"], "completed", "{done}");
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    let out = logs["stdout"].as_str().unwrap_or_default();
    assert!(
        out.len() <= 64 * 1024 && out.ends_with("the-end\n"),
        "{} bytes, ends {:?}",
        out.len(),
        &out[out.len().saturating_sub(20)..]
    );
    let err = logs["stderr"].as_str().unwrap_or_default();
    assert!(err.len() <= 64 * 1024 && err.len() > 60_000, "{} bytes of stderr", err.len());
}
