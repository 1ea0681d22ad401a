//! Real work through real agents: `suanwang up` runs jobs on this machine (site `local`);
//! separate `suanwang agent` processes join as sites; killing one moves its job.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod isolation;
mod probe;
mod trust;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A child process that is killed when dropped, so a failing test leaves no agent behind.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suanwang"));
    c.args(args).env_remove("SUANWANG_SERVER").env_remove("SUANWANG_TOKEN").stdout(Stdio::null()).stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().expect("suanwang starts"))
}

pub struct Up {
    child: Proc,
    pub url: String,
    pub dir: std::path::PathBuf,
    pub operator: String,
    pub tenant: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn up(tag: &str, extra: &[&str]) -> Up {
    let dir = std::env::temp_dir().join(format!("suanwang-agents-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // these tests are about agents, not money: wallets have no limit
    let mut args = vec!["up", "--data", dir.to_str().expect("utf8"), "--credit-limit-fen", "unlimited", "--listen"];
    let listen = format!("127.0.0.1:{port}");
    args.push(&listen);
    args.extend_from_slice(extra);
    let child = spawn(&args, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::http().get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "suanwang up did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("credentials.json")).expect("credentials"))
            .expect("json");
    Up {
        child,
        url,
        dir,
        operator: creds["operator"].as_str().expect("op").into(),
        tenant: creds["tenant"].as_str().expect("tenant").into(),
    }
}

async fn get(url: &str, token: &str, path: &str) -> Value {
    crate::http().get(format!("{url}{path}")).bearer_auth(token).send().await.expect("get").json().await.expect("json")
}

async fn submit(u: &Up, job: Value) -> u64 {
    let r = crate::http()
        .post(format!("{}/v1/jobs", u.url))
        .bearer_auth(&u.tenant)
        .json(&job)
        .send()
        .await
        .expect("submit");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status.as_u16(), 201, "{v}");
    v["id"].as_u64().expect("id")
}

/// Polls a job until `pred` holds (bounded); returns the job.
async fn until(u: &Up, id: u64, what: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = get(&u.url, &u.operator, &format!("/v1/jobs/{id}")).await;
        if pred(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} never {what}: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job(name: &str, sites: &[&str], script: &str) -> Value {
    json!({
        "name": name, "tenant": "acme-ai", "kind": "inference", "origin": "beijing", "allowed_sites": sites,
        "resources": {"family": "general", "count": 1, "memory_gib": 1}, "work": {"run_time_s": 30},
        "run": {"command": "sh", "args": ["-c", script]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_for_real_on_the_local_site_and_cancel_stops_it() {
    let u = up("local", &[]).await;
    // the local agent registers itself; wait until the site exists
    until_sites(&u, &["local"]).await;
    // some CPU work, then a pause: the measured use must show both
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
                  echo hello-$SUANWANG_JOB_ID; echo to-stderr >&2; sleep 0.5";
    let id = submit(&u, job("hello", &["local"], script)).await;
    let done = until(&u, id, "completed", 60, |j| j["state"] == "completed").await;
    assert_eq!(done["site"], "local");
    assert!(done["meter"]["energy_kwh"].as_f64().is_some_and(|e| e > 0.0), "{done}");
    let used = &done["usage"];
    let num = |k: &str| used[k].as_f64().unwrap_or_else(|| panic!("usage.{k} in {done}"));
    assert!(num("cpu_seconds") > 0.05, "the busy loop used CPU: {used}");
    assert!(num("wall_seconds") >= 0.5 && num("wall_seconds") >= num("cpu_seconds") * 0.9, "{used}");
    assert!(num("peak_memory_mib") > 0.0, "{used}");
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(logs["stdout"].as_str().map(str::trim), Some(format!("hello-{id}").as_str()), "{logs}");
    assert_eq!(logs["stderr"].as_str().map(str::trim), Some("to-stderr"));

    // a command that cannot start, and one that exceeds its memory: each job fails with a clear
    // reason, and the agent goes on serving (the next jobs run)
    let mut missing = job("missing", &["local"], "");
    missing["run"] = json!({"command": "no-such-command-xyz"});
    let id = submit(&u, missing).await;
    let failed = until(&u, id, "failed", 60, |j| j["state"] == "failed").await;
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("not found")), "{failed}");
    if std::path::Path::new("/usr/bin/prlimit").exists() {
        let mut hog = job("hog", &["local"], "");
        hog["run"] = json!({"command": "python3", "args": ["-c", "a = bytearray(3 * 1024 ** 3); print(len(a))"]});
        let id = submit(&u, hog).await;
        let failed = until(&u, id, "failed", 60, |j| j["state"] == "failed").await;
        assert!(failed["reason"].as_str().is_some_and(|r| r.contains("memory")), "{failed}");
    }

    // a command that fails: the job fails with the reason
    let id = submit(&u, job("boom", &["local"], "exit 7")).await;
    let failed = until(&u, id, "failed", 60, |j| j["state"] == "failed").await;
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("status 7")), "{failed}");

    // cancel a running job: the process tree goes away
    let marker = format!("{}.25", 600 + std::process::id() % 100);
    let id = submit(&u, job("long", &["local"], &format!("sleep {marker}"))).await;
    until(&u, id, "running", 60, |j| j["state"] == "running").await;
    until_process(&marker, true, "the run never started").await;
    let r = crate::http()
        .post(format!("{}/v1/jobs/{id}/cancel", u.url))
        .bearer_auth(&u.tenant)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status().as_u16(), 200);
    until_process(&marker, false, "the cancelled run is still running").await;
}

/// Waits (at most 30 s) until a `sleep MARKER` process runs (`running`) or no longer does;
/// fails with `what` otherwise.
async fn until_process(marker: &str, running: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pgrep(marker) != running {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pgrep(pattern: &str) -> bool {
    Command::new("pgrep").args(["-f", &format!("sleep {pattern}")]).output().is_ok_and(|o| !o.stdout.is_empty())
}

#[test]
fn an_agent_timeout_below_the_poll_period_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["up", "--data", "/nonexistent/never-made", "--agent-timeout", "1"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--agent-timeout must be at least 3 seconds"), "{err}");
}

/// A new provider token for `acme` (its sites are `acme-…`).
fn provider_token(u: &Up) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["token", "create", "--data", &u.dir.display().to_string(), "--role", "provider", "--name", "acme"])
        .output()
        .expect("token create");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("sw_"), "{token}");
    token
}

/// `suanwang site approve SITE` with the operator token.
fn approve(u: &Up, site: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["site", "approve", site])
        .env("SUANWANG_SERVER", &u.url)
        .env("SUANWANG_TOKEN", &u.operator)
        .output()
        .expect("site approve");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains(&format!("site {site} approved")), "{said} {out:?}");
}

fn agent_dir(u: &Up, site: &str) -> String {
    u.dir.join(format!("agent-{site}")).display().to_string()
}

/// Process agents for sites `acme-a` and `acme-b` (in beijing), once both are registered.
async fn two_agents(u: &Up, provider: &str) -> (Proc, Proc) {
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", provider)];
    let (da, db) = (agent_dir(u, "acme-a"), agent_dir(u, "acme-b"));
    let a = spawn(&["agent", "--site", "acme-a", "--city", "beijing", "--data", &da], &env);
    let b = spawn(&["agent", "--site", "acme-b", "--city", "beijing", "--data", &db], &env);
    until_sites(u, &["acme-a", "acme-b"]).await;
    (a, b)
}

/// Waits (at most 30 s) until every one of `sites` is registered, then approves those pending
/// with `suanwang site approve` and the operator token (a provider's site takes no work before).
pub(crate) async fn until_sites(u: &Up, sites: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = get(&u.url, &u.operator, "/v1/sites").await;
        let ids: Vec<&str> =
            now["sites"].as_array().map(|s| s.iter().filter_map(|x| x["id"].as_str()).collect()).unwrap_or_default();
        if sites.iter().all(|s| ids.contains(s)) {
            for s in now["sites"].as_array().into_iter().flatten() {
                let Some(id) = s["id"].as_str().filter(|id| sites.contains(id)) else { continue };
                if s["approval"] == "pending" {
                    approve(u, id);
                }
            }
            return;
        }
        assert!(Instant::now() < deadline, "sites {sites:?} never registered: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job that checkpoints resumes on another site from the checkpoint its first attempt left:
/// the first agent keeps the run's checkpoint directory with the control plane, the agent of
/// the next attempt restores it before starting, so the work counts on from step 3, not 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_job_resumes_from_its_checkpoint_on_the_other_site() {
    let u = up("checkpoint", &["--no-local-agent", "--agent-timeout", "4"]).await;
    let provider = provider_token(&u);
    let (mut a, mut b) = two_agents(&u, &provider).await;
    let marker = format!("{}.5", 800 + std::process::id() % 100);
    // six steps; each is recorded atomically in the checkpoint directory; attempt 1 stalls
    // after step 3 (until its agent dies)
    let script = format!(
        "echo token=${{SUANWANG_TOKEN:-unset}}; \
         d=$SUANWANG_CHECKPOINT_DIR; n=$(cat $d/step 2>/dev/null || echo 0); echo attempt $SUANWANG_ATTEMPT from step $n; \
         while [ $n -lt 6 ]; do n=$((n+1)); echo $n > $d/.step && mv $d/.step $d/step; \
         if [ $SUANWANG_ATTEMPT = 1 ] && [ $n = 3 ]; then sleep {marker}; fi; sleep 0.1; done; echo done at step $n"
    );
    let mut spec = job("resumes", &["acme-a", "acme-b"], &script);
    spec["checkpoint_s"] = json!(1);
    let id = submit(&u, spec).await;
    let running = until(&u, id, "running", 60, |j| j["state"] == "running").await;
    let first = running["site"].as_str().expect("site").to_string();
    // the control plane holds the checkpoint at step 3 (read back as the job's site may)
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let r = crate::http()
            .get(format!("{}/v1/agents/{first}/checkpoints/{id}", u.url))
            .bearer_auth(&provider)
            .send()
            .await
            .expect("get checkpoint");
        if r.status().as_u16() == 200 {
            assert_eq!(r.headers()["x-suanwang-checkpoint-attempt"], "1");
            let tgz = r.bytes().await.expect("body");
            let mut tar = Command::new("tar")
                .args(["-xzOf", "-", "./step"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("tar");
            std::io::Write::write_all(&mut tar.stdin.take().expect("stdin"), &tgz).expect("feed tar");
            let step = String::from_utf8_lossy(&tar.wait_with_output().expect("tar").stdout).trim().to_string();
            if step == "3" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the checkpoint at step 3 never reached the control plane");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a stale attempt may not overwrite it
    let r = crate::http()
        .put(format!("{}/v1/agents/{first}/checkpoints/{id}?attempt=7", u.url))
        .bearer_auth(&provider)
        .body(vec![1, 2, 3])
        .send()
        .await
        .expect("put checkpoint");
    assert_eq!(r.status().as_u16(), 409);
    assert!(pgrep(&marker), "attempt 1 stalls after step 3");
    // its agent dies; the job moves to the other site and resumes from step 3
    let (victim, other) = if first == "acme-a" { (&mut a, "acme-b") } else { (&mut b, "acme-a") };
    victim.kill().expect("SIGKILL the agent");
    let _ = victim.wait();
    let done = until(&u, id, "completed elsewhere", 90, |j| j["state"] == "completed").await;
    assert_eq!(done["site"], other, "{done}");
    assert_eq!(done["attempts"], 2);
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    let out = logs["stdout"].as_str().unwrap_or("");
    assert!(out.contains("attempt 2 from step 3") && out.contains("done at step 6"), "{logs}");
    // the agent was started with SUANWANG_TOKEN in its environment; its runs never see it
    assert!(out.contains("token=unset"), "{logs}");
    // the orphaned first attempt is stopped when its agent comes back
    let dir = agent_dir(&u, &first);
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", provider.as_str())];
    *victim = spawn(&["agent", "--site", &first, "--city", "beijing", "--data", &dir], &env);
    until_process(&marker, false, "the restarted agent left its orphaned run running").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_agent_moves_its_job_and_a_stale_attempt_cannot_report() {
    let u = up("failover", &["--no-local-agent", "--agent-timeout", "4"]).await;
    let provider = provider_token(&u);
    // a provider connects only its own sites
    let r = crate::http()
        .post(format!("{}/v1/agents/register", u.url))
        .bearer_auth(&provider)
        .json(&json!({"site": {"id": "globex-x", "city": "beijing", "pue": 1.3, "pools": []}, "detected": {"cores": 2, "memory_mib": 4096}}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status().as_u16(), 403);
    // an agent told so stops at once and says why (no retrying a refusal)
    let out = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["agent", "--site", "globex-x", "--data", &agent_dir(&u, "globex-x")])
        .env("SUANWANG_SERVER", &u.url)
        .env("SUANWANG_TOKEN", &provider)
        .output()
        .expect("agent runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused to register site globex-x: 403") && !err.contains("cannot reach"), "{err}");
    // and declares no more than it has
    let r = crate::http()
        .post(format!("{}/v1/agents/register", u.url))
        .bearer_auth(&provider)
        .json(&json!({"site": {"id": "acme-big", "city": "beijing", "pue": 1.3, "pools": [{"name": "cpu", "model": "generic-x86_64", "count": 512, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0, "price_fen_per_unit_hour": 30}]}, "detected": {"cores": 2, "memory_mib": 4096}}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status().as_u16(), 422);
    // accelerator cards count against the cards detected, not against cores
    let gpu_site = |gpus: u64| {
        json!({"site": {"id": "acme-gpu", "city": "shanghai", "pue": 1.25, "pools": [
            {"name": "cpu", "model": "generic-x86_64", "count": 2, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0, "price_fen_per_unit_hour": 30},
            {"name": "gpu-h800", "model": "h800", "count": 2, "memory_gib_per_unit": 80, "power_w_per_unit": 700.0, "price_fen_per_unit_hour": 1500}
        ]}, "detected": {"cores": 2, "memory_mib": 4096, "gpus": gpus}})
    };
    for (gpus, want) in [(1, 422), (2, 200)] {
        let r = crate::http()
            .post(format!("{}/v1/agents/register", u.url))
            .bearer_auth(&provider)
            .json(&gpu_site(gpus))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status().as_u16(), want, "{gpus} cards detected");
    }
    let sites = get(&u.url, &u.operator, "/v1/sites").await;
    let gpu = sites["sites"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "acme-gpu")).cloned();
    let gpu = gpu.unwrap_or_else(|| panic!("acme-gpu registered: {sites}"));
    assert!(gpu.to_string().contains("intelligent"), "the H800 pool is an intelligent-family pool: {gpu}");

    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", provider.as_str())];
    let (da, db_) = (agent_dir(&u, "acme-a"), agent_dir(&u, "acme-b"));
    let (mut a, mut b) = two_agents(&u, &provider).await;
    // the first attempt outlives its agent (a long sleep, findable by its odd length)
    let marker = format!("{}.75", 700 + std::process::id() % 100);
    let script = format!(
        "echo attempt-$SUANWANG_ATTEMPT; if [ $SUANWANG_ATTEMPT = 1 ]; then sleep {marker}; fi; sleep 3; echo finished"
    );
    let id = submit(&u, job("moved", &["acme-a", "acme-b"], &script)).await;
    let running = until(&u, id, "running", 60, |j| j["state"] == "running").await;
    let first = running["site"].as_str().expect("site").to_string();
    // "running" is the server's word once it assigned the job; wait until the agent started it
    until_process(&marker, true, "the first attempt never started").await;
    // the agent running it dies
    let (victim, other) = if first == "acme-a" { (&mut a, "acme-b") } else { (&mut b, "acme-a") };
    victim.kill().expect("SIGKILL the agent");
    let _ = victim.wait();
    // its site is lost after the heartbeat timeout; the job runs again, on the other site
    let done = until(&u, id, "completed elsewhere", 90, |j| j["state"] == "completed").await;
    assert_eq!(done["site"], other, "{done}");
    assert_eq!(done["attempts"], 2);
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    assert!(logs["stdout"].as_str().is_some_and(|s| s.contains("attempt-2") && s.contains("finished")), "{logs}");
    // the first attempt's agent (were it alive) could not report any more: fencing
    let r = crate::http()
        .post(format!("{}/v1/agents/{first}/reports", u.url))
        .bearer_auth(&provider)
        .json(&json!({"id": id, "attempt": 1, "succeeded": true}))
        .send()
        .await
        .expect("stale report");
    assert_eq!(r.status().as_u16(), 409);
    // the orphaned first attempt still runs; the dead agent, restarted, stops it
    assert!(pgrep(&marker), "the first attempt should have outlived its agent");
    let dir = if first == "acme-a" { &da } else { &db_ };
    *victim = spawn(&["agent", "--site", &first, "--city", "beijing", "--data", dir], &env);
    until_process(&marker, false, "the restarted agent left its orphaned run running").await;
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_through_slurm() {
    if !slurm_answers() {
        return;
    }
    let u = up("slurm", &["--no-local-agent"]).await;
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", u.operator.as_str())];
    // the agent's own data directory (Slurm runs its jobs as the run user, who must pass
    // through it; the control plane's is closed to everyone else)
    let data_dir = std::env::temp_dir().join(format!("suanwang-agent-hpc-{}", std::process::id()));
    let data = data_dir.display().to_string();
    let mut agent =
        spawn(&["agent", "--site", "hpc-local", "--city", "beijing", "--executor", "slurm", "--data", &data], &env);
    until_sites(&u, &["hpc-local"]).await;
    let id = submit(
        &u,
        job("via-slurm", &["hpc-local"], "echo from-slurm-$SUANWANG_JOB_ID${SUANWANG_TOKEN:+-token-leaked}; sleep 0.5"),
    )
    .await;
    let done = until(&u, id, "completed", 120, |j| j["state"] == "completed").await;
    assert_eq!(done["site"], "hpc-local");
    // use measured inside the batch job comes back too
    assert!(done["usage"]["wall_seconds"].as_f64().is_some_and(|w| w >= 0.5), "{done}");
    assert!(done["usage"]["peak_memory_mib"].as_f64().is_some_and(|m| m > 0.0), "{done}");
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(logs["stdout"].as_str().map(str::trim), Some(format!("from-slurm-{id}").as_str()), "{logs}");
    let _ = agent.kill();
    let _ = agent.wait();
}

/// Whether a Slurm controller answers; fails instead when the test script started one.
fn slurm_answers() -> bool {
    let slurm = Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| !o.stdout.is_empty());
    if !slurm {
        assert!(
            std::env::var_os("SUANWANG_REQUIRE_SLURM").is_none(),
            "Slurm was started for the tests but does not answer"
        );
        eprintln!("SKIPPED: no Slurm controller answers (sinfo); ./scripts/test.sh starts one as root");
    }
    slurm
}

/// The Slurm controller vanishes from an agent's view mid-job: the agent's own copy of
/// slurm.conf (`SLURM_CONF`) is pointed at a port where nothing listens, so every Slurm tool it
/// calls fails to reach the controller — a real outage as the agent sees it, while the other
/// tests keep their Slurm. The job fails with a clear reason after `--lost-after`, the agent
/// keeps heart-beating (its site is never lost), and once the controller answers again the
/// agent stops the abandoned batch job and runs the next job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_slurm_vanishes_the_job_fails_with_a_reason_and_the_agent_serves_on() {
    if !slurm_answers() {
        return;
    }
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/etc/slurm/slurm.conf".into());
    let good = std::fs::read_to_string(&conf).expect("slurm.conf");
    // a 4 s heartbeat timeout, shorter than one round against a Slurm that does not answer (a
    // 5 s tool timeout): the site stays connected only through the agent's heartbeat task
    let u = up("slurm-gone", &["--no-local-agent", "--agent-timeout", "4"]).await;
    let my_conf = u.dir.join("slurm.conf");
    std::fs::write(&my_conf, &good).expect("conf copy");
    let broken: String = good
        .lines()
        .filter(|l| !l.trim_start().starts_with("SlurmctldPort"))
        .chain(std::iter::once("SlurmctldPort=9"))
        .collect::<Vec<_>>()
        .join("\n");
    let env = [
        ("SUANWANG_SERVER", u.url.as_str()),
        ("SUANWANG_TOKEN", u.operator.as_str()),
        ("SLURM_CONF", my_conf.to_str().expect("utf8")),
    ];
    let data_dir = std::env::temp_dir().join(format!("suanwang-agent-gone-{}", std::process::id()));
    let data = data_dir.display().to_string();
    let _agent =
        spawn(&["agent", "--site", "hpc-gone", "--executor", "slurm", "--data", &data, "--lost-after", "8"], &env);
    until_sites(&u, &["hpc-gone"]).await;
    let id = submit(&u, job("slurm-goes", &["hpc-gone"], "echo started; sleep 120")).await;
    until(&u, id, "running", 60, |j| j["state"] == "running").await;
    let stdout = data_dir.join(format!("{id}-1/out/stdout.txt"));
    let deadline = Instant::now() + Duration::from_mins(1);
    while !std::fs::read_to_string(&stdout).is_ok_and(|o| o.contains("started")) {
        assert!(Instant::now() < deadline, "the batch job never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = format!("sw-{id}-1");
    let in_queue = |name: &str| {
        let out = Command::new("squeue").args(["-h", "-n", name, "-o", "%i"]).output().expect("squeue");
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    };
    assert!(in_queue(&name));

    std::fs::write(&my_conf, &broken).expect("break the conf");
    let failed = until(&u, id, "failed", 90, |j| j["state"] == "failed").await;
    let reason = failed["reason"].as_str().unwrap_or("");
    assert!(reason.contains("slurm executor lost the run"), "{failed}");
    // the agent kept heart-beating throughout: its site was never lost (that would have
    // superseded attempt 1 and refused its report), the failure is the run's
    assert_eq!(failed["attempts"], 1, "{failed}");
    // meanwhile the batch job goes on under Slurm: nothing could stop it
    assert!(in_queue(&name));

    std::fs::write(&my_conf, &good).expect("restore the conf");
    // the agent stops what it gave up on…
    let deadline = Instant::now() + Duration::from_mins(1);
    while in_queue(&name) {
        assert!(Instant::now() < deadline, "the abandoned batch job {name} still runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and serves the next job
    let next = submit(&u, job("slurm-back", &["hpc-gone"], "echo back")).await;
    let done = until(&u, next, "completed", 120, |j| j["state"] == "completed").await;
    assert_eq!(done["site"], "hpc-gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_running_job_instead_of_running_it_twice() {
    let u = up("adopt", &["--no-local-agent"]).await;
    let db = u.dir.display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["token", "create", "--data", &db, "--role", "provider", "--name", "acme"])
        .output()
        .expect("token create");
    let provider = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", provider.as_str())];
    let data = u.dir.join("agent-r").display().to_string();
    let args = ["agent", "--site", "acme-r", "--city", "beijing", "--data", &data];
    let mut agent = spawn(&args, &env);
    until_sites(&u, &["acme-r"]).await;
    // every start of the command appends a line to a file in its work directory (the only
    // place a run may write)
    let marker = format!("4.{}", 100 + std::process::id() % 800);
    let script = format!("echo start >> starts.txt; sleep {marker}; echo adopted-$SUANWANG_ATTEMPT");
    let id = submit(&u, job("adopt", &["acme-r"], &script)).await;
    let starts = std::path::Path::new(&data).join(format!("{id}-1/work/starts.txt"));
    until(&u, id, "running", 60, |j| j["state"] == "running").await;
    until_process(&marker, true, "the run never started").await;
    // the agent dies and comes back well within the heartbeat timeout
    agent.kill().expect("SIGKILL the agent");
    let _ = agent.wait();
    let mut agent = spawn(&args, &env);
    let done = until(&u, id, "completed", 60, |j| j["state"] == "completed").await;
    assert_eq!((done["site"].as_str(), done["attempts"].as_u64()), (Some("acme-r"), Some(1)), "{done}");
    let logs = get(&u.url, &u.tenant, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(logs["stdout"].as_str().map(str::trim), Some("adopted-1"), "{logs}");
    let started = std::fs::read_to_string(&starts).expect("starts file");
    assert_eq!(started.lines().count(), 1, "the command ran more than once: {started:?}");
    let _ = agent.kill();
    let _ = agent.wait();
}
