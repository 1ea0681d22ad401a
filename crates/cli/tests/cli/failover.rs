//! Several `suanwang serve --instance` over one real PostgreSQL (issue 17, R7): the follower
//! forwards to the leader; kill -9 the leader under 64 submitting clients and an agent running
//! a real job — a follower takes over within the lease and a second, every acknowledged job is
//! there exactly once, and the agent's job completes in one attempt with one output;
//! SIGSTOP the new leader past its lease — the other takes over, and the stopped one, continued,
//! is refused by the database and steps down to follow; both restarted at once — the state is
//! as acknowledged.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::agents::Proc;

const LEASE_MS: u64 = 1000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A fresh database on the test server (SUANWANG_TEST_PG, as the store's tests).
async fn fresh_pg(tag: &str) -> String {
    let admin =
        std::env::var("SUANWANG_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("suanwang_test_{tag}_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} is not reachable ({e}); run ./scripts/test.sh, which starts one")
    });
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&pool).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&pool).await.expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_string();
    format!("{base}/{db}")
}

/// Killed when dropped, so a failed assertion leaves no instance behind.
fn instance(db: &str, name: &str, port: u16, log: &std::path::Path) -> Proc {
    let err = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let out = err.try_clone().expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["serve", "--db", db, "--instance", name, "--lease-ms", &LEASE_MS.to_string()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--credit-limit-fen", "unlimited"])
        .env_remove("SUANWANG_SERVER")
        .env_remove("SUANWANG_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("suanwang serve starts");
    Proc(child)
}

async fn health(url: &str) -> Option<Value> {
    let r = crate::http().get(format!("{url}/healthz")).timeout(Duration::from_millis(500)).send().await.ok()?;
    r.json().await.ok()
}

/// Waits until `url` answers `/healthz` with this role; the time it took.
async fn until_role(url: &str, role: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if health(url).await.is_some_and(|h| h["role"] == role) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} was not {role} within {within:?}: {:?}", health(url).await);
}

fn token(db: &str, role: &str, name: &str) -> String {
    let out = crate::suanwang(&["token", "create", "--db", db, "--role", role, "--name", name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every job, through `url` (pages of 1,000).
pub async fn all_jobs(url: &str, operator: &str) -> Vec<Value> {
    let mut all = vec![];
    let mut after = 0;
    loop {
        let page: Value = crate::http()
            .get(format!("{url}/v1/jobs?limit=1000&after={after}"))
            .bearer_auth(operator)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        all.extend(page["jobs"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => return all,
        }
    }
}

/// Every acknowledged (key, id) is one job of that name, and no job is there twice.
async fn check_acknowledged(url: &str, operator: &str, acked: &[(String, u64)]) {
    let all = all_jobs(url, operator).await;
    let mut names: Vec<&str> = all.iter().filter_map(|j| j["name"].as_str()).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "no submission applied twice");
    for (key, id) in acked {
        let job = all
            .iter()
            .find(|j| j["id"].as_u64() == Some(*id))
            .unwrap_or_else(|| panic!("acknowledged job {id} ({key}) lost"));
        assert_eq!(job["name"].as_str(), Some(key.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn a_follower_takes_over_without_losing_or_repeating_an_acknowledged_job() {
    let db = fresh_pg("failover").await;
    let dir = std::env::temp_dir().join(format!("suanwang-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let tenant = token(&db, "tenant", "acme-ai");
    let operator = token(&db, "operator", "ops");
    let (pa, pb) = (free_port(), free_port());
    let (ua, ub) = (format!("http://127.0.0.1:{pa}"), format!("http://127.0.0.1:{pb}"));
    let mut a = instance(&db, "a", pa, &dir.join("a.log"));
    until_role(&ua, "leader", Duration::from_mins(1)).await;
    let mut b = instance(&db, "b", pb, &dir.join("b.log"));
    until_role(&ub, "follower", Duration::from_mins(1)).await;
    // bad input: a second live instance of the same name is refused, naming it
    let dup = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["serve", "--db", &db, "--instance", "a", "--lease-ms", "1000", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "off")
        .output()
        .expect("runs");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already running"), "{dup:?}");
    // the leader counts a client's failed authentications against the client, not against the
    // follower that forwarded them (the client here speaks from 127.0.0.2, the follower from
    // 127.0.0.1); and a client cannot name another address itself
    let from_2 =
        reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().expect("client");
    let spoofed = from_2
        .get(format!("{ub}/v1/jobs"))
        .bearer_auth("not-a-token")
        .header("x-suanwang-peer", "198.51.100.9:1")
        .header("x-suanwang-instance-secret", "guess")
        .send()
        .await
        .expect("answer");
    assert_eq!(spoofed.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = reqwest::get(format!("{ua}/metrics")).await.expect("metrics").text().await.expect("text");
        if metrics.contains("suanwang_auth_failures_recent{source=\"127.0.0.2\"}") {
            assert!(!metrics.contains("198.51.100.9"), "a client named its own address");
            break;
        }
        assert!(Instant::now() < deadline, "the leader never counted the client's address");
        tokio::time::sleep(Duration::from_millis(100)).await; // the indicators are measured every second
    }

    // an agent given both instances runs a real job across the failover
    let agent_dir = dir.join("agent");
    let servers = format!("{ua},{ub}");
    let mut agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_suanwang"))
            .args(["agent", "--site", "local", "--city", "beijing", "--data", agent_dir.to_str().expect("utf8")])
            .env("SUANWANG_SERVER", &servers)
            .env("SUANWANG_TOKEN", &operator)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).expect("log"))
            .spawn()
            .expect("agent starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sites: Value = client_get(&ua, &operator, "/v1/sites").await;
        let live = sites["sites"].as_array().into_iter().flatten().any(|s| s["id"] == "local");
        if live {
            break;
        }
        assert!(Instant::now() < deadline, "the agent's site never appeared: {sites}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = json!({"name": "across-the-failover", "tenant": "acme-ai", "kind": "inference", "origin": "beijing",
        "allowed_sites": ["local"], "resources": {"family": "general", "count": 1, "memory_gib": 1},
        "work": {"run_time_s": 30}, "run": {"command": "sh", "args": ["-c", "sleep 8; echo ran"]}});
    let r = crate::http().post(format!("{ub}/v1/jobs")).bearer_auth(&tenant).json(&run).send().await.expect("submit");
    assert_eq!(r.status().as_u16(), 201, "through the follower");
    let run_id = r.json::<Value>().await.expect("json")["id"].as_u64().expect("id");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client_get(&ua, &operator, &format!("/v1/jobs/{run_id}")).await["state"] != "running" {
        assert!(Instant::now() < deadline, "the agent's job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 64 clients submit through either instance, each request retried (same key) on the other
    // until acknowledged
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(vec![]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = crate::http();
    let mut tasks = vec![];
    for c in 0..64 {
        let (client, urls, tenant, acked, stop) =
            (client.clone(), [ua.clone(), ub.clone()], tenant.clone(), Arc::clone(&acked), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut at = c % 2;
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("c{c}-{i}");
                let body = json!({"name": key, "tenant": "acme-ai", "kind": "batch", "origin": "beijing",
                    "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 60}});
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    let res = client
                        .post(format!("{}/v1/jobs", urls[at]))
                        .bearer_auth(&tenant)
                        .header("idempotency-key", &key)
                        .json(&body)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match res {
                        Ok(r) if matches!(r.status().as_u16(), 200 | 201) => {
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            if let Some(id) = v["id"].as_u64() {
                                acked.lock().expect("lock").push((key.clone(), id));
                            }
                            break;
                        }
                        _ => {
                            at = 1 - at;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }));
    }
    let wait_acks = |n: usize| {
        let acked = Arc::clone(&acked);
        async move {
            let deadline = Instant::now() + Duration::from_mins(2);
            while acked.lock().expect("lock").len() < n {
                assert!(Instant::now() < deadline, "fewer than {n} submissions acknowledged");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_acks(300).await;
    // b follows with its own copy of the engine, kept current from the log the leader appends
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = crate::http().get(format!("{ub}/metrics")).send().await.expect("metrics");
        let m = m.text().await.expect("text");
        let seq = m
            .lines()
            .find(|l| l.starts_with("suanwang_ha_replica_seq"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .unwrap_or(0);
        if seq >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "b's copy never applied the 300 acknowledged submissions: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // and answers the sites and the network from it, as the leader does (the agent's site too)
    for path in ["/v1/sites", "/v1/network"] {
        let r = crate::http().get(format!("{ub}{path}")).bearer_auth(&operator).send().await.expect("read");
        assert_eq!(r.headers().get("x-suanwang-served-by").and_then(|v| v.to_str().ok()), Some("b"), "{path}");
        let from_b: Value = r.json().await.expect("json");
        assert_eq!(from_b, client_get(&ua, &operator, path).await, "{path}: the follower's copy and the leader");
    }

    // a job whose end falls due while no instance leads: the new leader, replaying the log,
    // ends it once — one `completed` in its evidence, one settlement
    let due = json!({"name": "due-in-the-gap", "tenant": "acme-ai", "kind": "inference", "origin": "beijing",
        "resources": {"family": "intelligent", "count": 1}, "work": {"run_time_s": 1}});
    let r = crate::http().post(format!("{ua}/v1/jobs")).bearer_auth(&tenant).json(&due).send().await.expect("submit");
    assert_eq!(r.status().as_u16(), 201);
    let due: Value = r.json().await.expect("json");
    assert_eq!(due["state"], "running", "started at once, so it ends a second from now: {due}");
    let due_id = due["id"].as_u64().expect("id");

    // kill -9 the leader: b takes over within the lease and a second
    a.kill().expect("SIGKILL");
    let _ = a.wait();
    let took = until_role(&ub, "leader", Duration::from_secs(30)).await;
    eprintln!("takeover after kill -9: {} ms (lease {LEASE_MS} ms)", took.as_millis());
    assert!(took <= Duration::from_millis(LEASE_MS + 1000), "takeover after kill -9 took {took:?}");
    let epoch_b = health(&ub).await.expect("healthz")["epoch"].as_u64().expect("epoch");
    assert!(epoch_b >= 2, "a new epoch: {epoch_b}");
    // b followed with its own copy of the engine, current to the log: it led from that copy,
    // not from a replay of the whole log (and lost nor repeated anything: below)
    let said = std::fs::read_to_string(dir.join("b.log")).expect("b's log");
    let copy = said.lines().find(|l| l.contains("leads at epoch")).unwrap_or_default();
    assert!(copy.contains("state loaded from its copy, current to command"), "b took the lease: {said}");
    let before = acked.lock().expect("lock").len();
    wait_acks(before + 200).await;
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let bill = client_get(&ub, &operator, &format!("/v1/jobs/{due_id}/bill")).await;
        let evidence = client_get(&ub, &operator, &format!("/v1/jobs/{due_id}/evidence")).await;
        let ends = evidence["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["opening"]["record"].as_str())
            .map(|r| r.matches("\"event\":\"completed\"").count())
            .sum::<usize>();
        assert!(ends <= 1, "the job's end fired more than once: {evidence}");
        if ends == 1 && bill["status"] == "settled" {
            break;
        }
        assert!(Instant::now() < deadline, "the due job never ended after the takeover: {bill} {evidence}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the agent's job, running when its leader died, completes once: one attempt, one output
    let deadline = Instant::now() + Duration::from_mins(1);
    let done = loop {
        let j = client_get(&ub, &operator, &format!("/v1/jobs/{run_id}")).await;
        if j["state"] == "completed" {
            break j;
        }
        assert!(j["state"] == "running" && Instant::now() < deadline, "the agent's job: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["attempts"], 1, "ran once: {done}");
    let logs = client_get(&ub, &operator, &format!("/v1/jobs/{run_id}/logs")).await;
    assert_eq!(logs["stdout"].as_str().map(|o| o.matches("ran").count()), Some(1), "{logs}");

    // a rejoins as a follower; SIGSTOP b past its lease: a takes over; b, continued, is refused
    // by the database and steps down to follow
    let mut a = instance(&db, "a", pa, &dir.join("a.log"));
    until_role(&ua, "follower", Duration::from_secs(30)).await;
    let b_pid = i32::try_from(b.id()).expect("pid");
    assert!(Command::new("kill").args(["-STOP", &b_pid.to_string()]).status().expect("kill").success());
    until_role(&ua, "leader", Duration::from_secs(30)).await;
    assert!(Command::new("kill").args(["-CONT", &b_pid.to_string()]).status().expect("kill").success());
    until_role(&ub, "follower", Duration::from_secs(30)).await;
    let b_log = std::fs::read_to_string(dir.join("b.log")).unwrap_or_default();
    assert!(b_log.contains("deposed"), "b saw its lease taken: {b_log}");
    let epoch_a = health(&ua).await.expect("healthz")["epoch"].as_u64().expect("epoch");
    assert!(epoch_a > epoch_b, "epochs only grow: {epoch_b} then {epoch_a}");
    let before = acked.lock().expect("lock").len();
    wait_acks(before + 100).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    check_acknowledged(&ua, &operator, &acked).await;
    // reads through the follower are the leader's: the follower answers job reads itself from
    // the database (saying so), the same pages, the same jobs, output and bills as the leader
    check_acknowledged(&ub, &operator, &acked[..10]).await;
    let read = |url: String, token: String| async move {
        let r = crate::http().get(url).bearer_auth(token).send().await.expect("read");
        let by = r.headers().get("x-suanwang-served-by").map(|v| v.to_str().expect("ascii").to_string());
        let status = r.status().as_u16();
        // a body that is not JSON is kept as text: compared, and shown when an assertion fails
        let text = r.text().await.expect("body");
        (status, by, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
    };
    let id = acked[0].1;
    for path in [
        "/v1/jobs?limit=50".to_string(),
        format!("/v1/jobs/{id}"),
        "/v1/jobs?state=nope".into(),
        format!("/v1/jobs/{run_id}/logs"),
        format!("/v1/jobs/{run_id}/logs?raw=nope"),
        format!("/v1/jobs/{run_id}/bill"),
        format!("/v1/jobs/{id}/bill"),
    ] {
        let (st_b, by, at_b) = read(format!("{ub}{path}"), operator.clone()).await;
        let (st_a, _, at_a) = read(format!("{ua}{path}"), operator.clone()).await;
        assert_eq!(by.as_deref(), Some("b"), "{path}: answered by the follower itself");
        assert_eq!((st_b, &at_b), (st_a, &at_a), "{path}: the follower's answer is the leader's");
    }
    // balances and statements too — compared until two reads in a row agree, as a job the
    // agent's site ends may settle between the two reads
    let platform = read(format!("{ub}/v1/statements"), operator.clone()).await.2;
    assert!(platform["lines"].as_array().is_some_and(|l| !l.is_empty()), "the platform was paid: {platform}");
    for (path, who) in [
        ("/v1/balance", &operator),
        ("/v1/balance?party=acme-ai", &operator),
        ("/v1/balance", &tenant),
        ("/v1/statements", &operator),
        ("/v1/statements?party=acme-ai&format=csv", &operator),
        ("/v1/statements?from=2026-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", &tenant),
        ("/v1/statements?format=xml", &operator),
        ("/v1/statements?party=someone-else", &tenant),
        // the evidence log's entries (an opening for whom may see it) and its checkpoints
        ("/v1/evidence/entries/3", &operator),
        ("/v1/evidence/entries/3", &tenant),
        ("/v1/evidence/entries/99999999", &operator),
        ("/v1/evidence/entries/x", &operator),
        ("/v1/evidence/checkpoints?limit=3", &operator),
        ("/v1/evidence/checkpoints?limit=0", &operator),
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (st_b, by, at_b) = read(format!("{ub}{path}"), who.clone()).await;
            let (st_a, _, at_a) = read(format!("{ua}{path}"), who.clone()).await;
            assert_eq!(by.as_deref(), Some("b"), "{path}: answered by the follower itself");
            if (st_b, &at_b) == (st_a, &at_a) {
                break;
            }
            assert!(Instant::now() < deadline, "{path}: the follower's answer is not the leader's: {at_b} vs {at_a}");
        }
    }
    // its newest checkpoint is the newest stored one: the leader's, or one the leader has since
    // superseded with a fresher signature (on demand)
    let (st, by, note) = read(format!("{ub}/v1/evidence/checkpoint"), operator.clone()).await;
    let (_, _, list) = read(format!("{ua}/v1/evidence/checkpoints?limit=10000"), operator.clone()).await;
    let notes: Vec<&str> =
        list["checkpoints"].as_array().expect("checkpoints").iter().filter_map(|c| c["note"].as_str()).collect();
    assert_eq!((st, by.as_deref()), (200, Some("b")));
    assert!(note.as_str().is_some_and(|n| notes.contains(&n)), "{note} is one of the leader's checkpoints");
    // the event stream too: the follower tails the log from the database — the same entries
    // from an index on, and a new one as it lands
    let from = 3;
    let (by, on_b) = sse(&format!("{ub}/v1/events?after={from}"), &operator, 5).await;
    let (_, on_a) = sse(&format!("{ua}/v1/events?after={from}"), &operator, 5).await;
    assert_eq!(by.as_deref(), Some("b"), "the follower streams the events itself");
    assert_eq!(on_b, on_a, "the follower's events are the leader's");
    assert_eq!(on_b.first().map(|e| e.0), Some(from + 1), "{on_b:?}");
    let live = tokio::spawn({
        let (ub, operator) = (ub.clone(), operator.clone());
        async move { sse(&format!("{ub}/v1/events"), &operator, 1).await }
    });
    // the stream is open once the follower answered its head; then a job through the leader
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while !live.is_finished() {
        assert!(Instant::now() < deadline, "no live event reached the follower's stream");
        let job = json!({"name": format!("live-event-{sent}"), "tenant": "acme-ai", "kind": "batch",
            "origin": "beijing", "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 60}});
        let r = crate::http().post(format!("{ua}/v1/jobs")).bearer_auth(&tenant).json(&job).send().await;
        assert_eq!(r.expect("submit").status().as_u16(), 201);
        sent += 1;
        // until the stream task has its event (it needs the follower's head first): polled
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (by, got) = live.await.expect("stream task");
    assert_eq!(by.as_deref(), Some("b"));
    assert!(got.len() == 1 && got[0].0 >= on_b.last().map_or(0, |e| e.0), "{got:?}");
    // a tenant sees only its own there too; a bad token is left to the leader (401, counted)
    let (st, by, mine) = read(format!("{ub}/v1/jobs?tenant=someone-else"), tenant.clone()).await;
    assert_eq!((st, by.as_deref(), mine["jobs"].as_array().map(Vec::len)), (200, Some("b"), Some(0)), "{mine}");
    let (st, by, body) = read(format!("{ub}/v1/jobs"), "not-a-token".into()).await;
    assert_eq!((st, by), (401, None), "forwarded, not answered by the follower: {body}");

    // both restarted at once: the state is as acknowledged
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    let mut a = instance(&db, "a", pa, &dir.join("a.log"));
    let mut b = instance(&db, "b", pb, &dir.join("b.log"));
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let roles = (health(&ua).await.map(|h| h["role"].clone()), health(&ub).await.map(|h| h["role"].clone()));
        let leaders = [&roles.0, &roles.1].iter().filter(|r| r.as_ref().is_some_and(|r| r == "leader")).count();
        if leaders == 1 && roles.0.is_some() && roles.1.is_some() {
            break;
        }
        assert!(leaders <= 1, "never two leaders: {roles:?}");
        assert!(Instant::now() < deadline, "no leader after a restart of both: {roles:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_acknowledged(&ua, &operator, &acked).await;
    // a client given the follower first sends to the leader once the follower named it in a
    // forwarded answer (`x-suanwang-leader`): a hop less per write
    let leader_is_a = health(&ua).await.is_some_and(|h| h["role"] == "leader");
    let (leader, follower) = if leader_is_a { (&ua, &ub) } else { (&ub, &ua) };
    let forwarded = |url: String| async move {
        let m = reqwest::get(format!("{url}/metrics")).await.expect("metrics").text().await.expect("text");
        m.lines()
            .find_map(|l| l.strip_prefix("suanwang_ha_forwarded_total").and_then(|r| r.rsplit(' ').next()))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no forwarded count on {url}: {m}"))
    };
    let before = forwarded(follower.clone()).await;
    let bench = Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["bench", "submit", "--jobs", "200", "--clients", "4", "--json"])
        .env("SUANWANG_SERVER", format!("{follower},{leader}"))
        .env("SUANWANG_TOKEN", &tenant)
        .env("RUST_LOG", "off")
        .output()
        .expect("bench runs");
    let out: Value = serde_json::from_slice(&bench.stdout).unwrap_or(Value::Null);
    assert_eq!(out["accepted"], 200, "{out} {}", String::from_utf8_lossy(&bench.stderr));
    let hops = forwarded(follower.clone()).await - before;
    assert!((1..=8).contains(&hops), "{hops} of 200 submissions went through the follower");
    let _ = a.kill();
    let _ = b.kill();
    let _ = agent.kill();
    let _ = a.wait();
    let _ = b.wait();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn client_get(url: &str, token: &str, path: &str) -> Value {
    let r = crate::http().get(format!("{url}{path}")).bearer_auth(token).send().await;
    match r {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The first `n` events of the server-sent stream at `url` (index, kind, data), and which
/// instance answered; panics after 30 s.
async fn sse(url: &str, token: &str, n: usize) -> (Option<String>, Vec<(u64, String, String)>) {
    let mut r = crate::http().get(url).bearer_auth(token).send().await.expect("stream");
    assert_eq!(r.status().as_u16(), 200, "{url}");
    let by = r.headers().get("x-suanwang-served-by").map(|v| v.to_str().expect("ascii").to_string());
    let (mut buf, mut out) = (String::new(), vec![]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, r.chunk()).await.unwrap_or_else(|_| panic!("{url}: {out:?}"));
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("chunk").expect("the stream ended")));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
            if let (Some(id), Some(kind), Some(data)) = (field("id:"), field("event:"), field("data:")) {
                out.push((id.trim().parse().expect("index"), kind.trim().to_string(), data));
            }
        }
    }
    out.truncate(n);
    (by, out)
}
