//! `suanwang up` for real: credentials, and every acknowledged submission survives SIGKILL.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn up(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(["up", "--data", dir.to_str().expect("utf8"), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--credit-limit-fen", "unlimited"])
        .env_remove("SUANWANG_SERVER")
        .env_remove("SUANWANG_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("suanwang up starts")
}

async fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if crate::http().get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not become healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_submissions_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("suanwang-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = up(&dir, port);
    wait_healthy(&url).await;
    let creds_path = dir.join("credentials.json");
    let mode = std::fs::metadata(&creds_path).expect("credentials").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials.json is private");
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(&creds_path).expect("read")).expect("json");
    let (tenant, operator) = (
        creds["tenant"].as_str().expect("tenant").to_string(),
        creds["operator"].as_str().expect("operator").to_string(),
    );

    // 16 clients submit until the server dies; every 201/200 is remembered
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(vec![]));
    let client = crate::http();
    let mut tasks = vec![];
    for c in 0..16 {
        let (client, url, tenant, acked) = (client.clone(), url.clone(), tenant.clone(), Arc::clone(&acked));
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("c{c}-{i}");
                let body = json!({"name": key, "tenant": "acme-ai", "kind": "batch", "origin": "beijing",
                    "resources": {"family": "general", "count": 2}, "work": {"run_time_s": 60}});
                let res = client
                    .post(format!("{url}/v1/jobs"))
                    .bearer_auth(&tenant)
                    .header("idempotency-key", &key)
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(id) = v["id"].as_u64() {
                            acked.lock().expect("lock").push((key, id));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    while acked.lock().expect("lock").len() < 400 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 400);

    let mut child = up(&dir, port);
    wait_healthy(&url).await;
    let all = crate::failover::all_jobs(&url, &operator).await;
    let mut ids: Vec<u64> = all.iter().filter_map(|j| j["id"].as_u64()).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no job twice");
    for (key, id) in &acked {
        let job = all
            .iter()
            .find(|j| j["id"].as_u64() == Some(*id))
            .unwrap_or_else(|| panic!("acknowledged job {id} ({key}) lost"));
        assert_eq!(job["name"].as_str(), Some(key.as_str()));
    }
    // a client retrying an acknowledged submission gets the same job, not a new one
    let (key, id) = &acked[0];
    let r = client
        .post(format!("{url}/v1/jobs"))
        .bearer_auth(&tenant)
        .header("idempotency-key", key)
        .json(&json!({"name": key, "tenant": "acme-ai", "kind": "batch", "origin": "beijing", "resources": {"family": "general", "count": 2}, "work": {"run_time_s": 60}}))
        .send()
        .await
        .expect("retry");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["id"].as_u64(), Some(*id));
    child.kill().expect("stop");
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
