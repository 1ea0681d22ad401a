//! `--require-probe`: a provider's new site is approved only after a probe job, run by its
//! agent like any job, found the cores, memory and accelerator cards it declared.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Up, get, provider_token, spawn, up};

async fn call(u: &Up, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = crate::http().request(method, format!("{}{path}", u.url)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn site(id: &str, cores: u64) -> Value {
    json!({"site": {"id": id, "city": "beijing", "pue": 1.3, "pools": [
        {"name": "cpu", "model": "generic-x86_64", "count": cores, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0,
         "price_fen_per_unit_hour": 30}
    ]}, "detected": {"cores": cores, "memory_mib": cores * 1024}})
}

fn approve(u: &Up, site: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["site", "approve", site])
        .env("SUANWANG_SERVER", &u.url)
        .env("SUANWANG_TOKEN", &u.operator)
        .output()
        .expect("suanwang runs")
}

/// Plays the agent of `site` by hand: takes its probe assignment, runs the probe's own command
/// on this machine, reports what it printed; the control plane's verdict.
async fn run_probe(u: &Up, token: &str, site: &str) -> Value {
    let (st, v) = call(u, token, reqwest::Method::GET, &format!("/v1/agents/{site}/assignments"), None).await;
    assert_eq!(st, 200, "{v}");
    let probe = v["assignments"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == 0))
        .cloned()
        .unwrap_or_else(|| panic!("a probe assignment: {v}"));
    let args: Vec<String> = serde_json::from_value(probe["args"].clone()).expect("args");
    let out = Command::new(probe["command"].as_str().expect("command")).args(&args).output().expect("the probe runs");
    let report = json!({"id": 0, "attempt": probe["attempt"], "succeeded": out.status.success(),
        "stdout": String::from_utf8_lossy(&out.stdout), "wall_seconds": 0.1});
    let (st, v) = call(u, token, reqwest::Method::POST, &format!("/v1/agents/{site}/reports"), Some(report)).await;
    assert_eq!(st, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_probe_a_site_is_approved_only_once_its_probe_found_what_it_declared() {
    let u = up("probe", &["--no-local-agent", "--require-probe"]).await;
    let provider = provider_token(&u);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);

    // an honest declaration: one core
    let (st, r) = call(&u, &provider, reqwest::Method::POST, "/v1/agents/register", Some(site("acme-honest", 1))).await;
    assert_eq!((st, r["approval"].as_str(), r["probe"].as_str()), (200, Some("pending"), Some("waiting")), "{r}");
    let out = approve(&u, "acme-honest");
    assert!(!out.status.success(), "approved before its probe ran");
    assert!(String::from_utf8_lossy(&out.stderr).contains("probe"), "{out:?}");
    let verdict = run_probe(&u, &provider, "acme-honest").await;
    assert_eq!(verdict["probe"], "passed", "{verdict}");
    assert!(approve(&u, "acme-honest").status.success());
    // the probe is gone from the site's assignments once judged
    let v = get(&u.url, &provider, "/v1/agents/acme-honest/assignments").await;
    assert!(v["assignments"].as_array().is_some_and(|a| a.iter().all(|x| x["id"] != 0)), "{v}");

    // a lying declaration (the agent's `detected` is its own word): the probe finds fewer cores
    let lie = cores + 62;
    let (st, r) = call(&u, &provider, reqwest::Method::POST, "/v1/agents/register", Some(site("acme-liar", lie))).await;
    assert_eq!(st, 200, "{r}");
    let verdict = run_probe(&u, &provider, "acme-liar").await;
    assert_eq!(verdict["probe"], "failed", "{verdict}");
    assert!(verdict["reason"].as_str().is_some_and(|r| r.contains(&format!("{lie} cores declared"))), "{verdict}");
    let out = approve(&u, "acme-liar");
    assert!(!out.status.success(), "a site whose probe failed was approved");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cores declared"), "{out:?}");
}

/// The real agent runs its probe (as the run user, in its sandbox) and the operator approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_runs_its_probe_and_its_site_can_then_be_approved() {
    let u = up("probe-agent", &["--no-local-agent", "--require-probe"]).await;
    let provider = provider_token(&u);
    let data = u.dir.join("agent-probe").display().to_string();
    let env = [("SUANWANG_SERVER", u.url.as_str()), ("SUANWANG_TOKEN", provider.as_str())];
    let _agent = spawn(&["agent", "--site", "acme-probed", "--data", &data], &env);
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let out = approve(&u, "acme-probed");
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "never approvable: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sites = get(&u.url, &u.operator, "/v1/sites").await;
    let s = sites["sites"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "acme-probed")).cloned();
    assert_eq!(s.map(|s| s["approval"].clone()), Some(json!("approved")), "{sites}");
}
