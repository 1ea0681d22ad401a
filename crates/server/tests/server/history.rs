//! History lives in the store (issue 11, R7): ended jobs leave memory, lists and reads of them
//! come from the job projection, counters survive a restart, an idempotency key reused with
//! another spec is refused, and an unreadable snapshot is skipped.

use serde_json::{Value, json};
use suanwang_server::auth::Role;
use suanwang_server::create_token;
use suanwang_server::views::RECENT_JOBS;
use suanwang_store::{AnyStore, Store};

use crate::{call, postgres, spec, sqlite, start};

/// A job that starts at once (inference is not delay-tolerant); the test cancels it while it runs.
fn quick(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "name": name, "tenant": "acme", "kind": "inference", "origin": "beijing",
        "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 3600}
    }))
    .expect("json")
}

/// Waits (bounded) until `GET path` satisfies `done`.
pub(crate) async fn until(url: &str, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let (_, v) = call(url, "GET", path, Some(token), None, None).await;
        if done(&v) {
            return v;
        }
        if std::time::Instant::now() > deadline {
            let (_, j) = call(url, "GET", "/v1/jobs/1", Some(token), None, None).await;
            panic!("{path}: still {v}; job 1: {j}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[allow(clippy::many_single_char_names)] // s, a, b, k, j: server, tenants, KPIs, a job
async fn ended_jobs_leave_memory(store: AnyStore) {
    let total = RECENT_JOBS + 300;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    for i in 0..total {
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(quick(&format!("q{i}"))), None).await;
        assert_eq!(st, 201, "{j}");
    }
    let n64 = total as u64;
    until(&s.url, &op, "/v1/kpis", |k| k["jobs_by_state"]["running"].as_u64() == Some(n64)).await;
    for id in 1..=total {
        let (st, j) = call(&s.url, "POST", &format!("/v1/jobs/{id}/cancel"), Some(&a), None, None).await;
        assert_eq!((st, j["state"].as_str()), (200, Some("cancelled")), "{j}");
    }
    let (_, k) = call(&s.url, "GET", "/v1/kpis", Some(&op), None, None).await;
    assert_eq!(k["jobs_by_state"], json!({"cancelled": n64}), "{k}");
    assert_eq!(k["placements"].as_u64(), Some(n64), "{k}");
    // memory holds no live job and at most the bounded cache of ended ones
    let (_, h) = call(&s.url, "GET", "/healthz", None, None, None).await;
    assert_eq!(h["jobs"].as_u64(), Some(n64), "{h}");
    assert_eq!(h["live_jobs"].as_u64(), Some(0), "{h}");
    assert!(h["cached_jobs"].as_u64().is_some_and(|c| c <= RECENT_JOBS as u64), "{h}");
    // the first job left memory long ago: it is read from the store, whole
    let (st, j1) = call(&s.url, "GET", "/v1/jobs/1", Some(&a), None, None).await;
    assert_eq!((st, j1["state"].as_str(), j1["name"].as_str()), (200, Some("cancelled"), Some("q0")), "{j1}");
    assert!(j1["meter"]["ucu_hours"].as_f64().is_some(), "{j1}");
    assert!(j1["started_at"].as_i64().is_some() && j1["ended_at"].as_i64().is_some(), "{j1}");
    assert_eq!(j1["spec"]["work"]["run_time_s"].as_u64(), Some(3600), "{j1}");
    // and listed from it, by state, in pages
    let (_, page) = call(&s.url, "GET", "/v1/jobs?state=cancelled&limit=1000", Some(&a), None, None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1000), "{}", store.kind());
    let after = page["next_after"].as_u64().expect("a second page");
    let (_, rest) =
        call(&s.url, "GET", &format!("/v1/jobs?state=cancelled&limit=1000&after={after}"), Some(&a), None, None).await;
    assert_eq!(rest["jobs"].as_array().map(Vec::len), Some(total - 1000));
    // another tenant sees none of them, even when it asks for acme's
    let b = create_token(&store, Role::Tenant, "globex").await.expect("token");
    let (_, none) = call(&s.url, "GET", "/v1/jobs?tenant=acme", Some(&b), None, None).await;
    assert_eq!(none["jobs"].as_array().map(Vec::len), Some(0), "{none}");
    assert_eq!(call(&s.url, "GET", "/v1/jobs/1", Some(&b), None, None).await.0, 404);
    // a job that ended cannot be cancelled, wherever it is read from
    let (st, e) = call(&s.url, "POST", "/v1/jobs/1/cancel", Some(&a), None, None).await;
    assert_eq!((st, e["code"].as_str()), (409, Some("not_cancellable")), "{e}");
    drop(s);
    // the counters survive a restart
    let s = start(store.clone()).await;
    let (_, k2) = call(&s.url, "GET", "/v1/kpis", Some(&op), None, None).await;
    for key in ["placements", "jobs_by_state", "cost_fen", "energy_kwh"] {
        assert_eq!(k2[key], k[key], "{}: {key} after a restart", store.kind());
    }
    let (_, again) = call(&s.url, "GET", "/v1/jobs/1", Some(&a), None, None).await;
    assert_eq!(again, j1);
}

#[tokio::test]
async fn ended_jobs_leave_memory_and_are_read_from_sqlite() {
    ended_jobs_leave_memory(sqlite("history").await).await;
}

#[tokio::test]
async fn ended_jobs_leave_memory_and_are_read_from_postgres() {
    ended_jobs_leave_memory(postgres("history").await).await;
}

#[tokio::test]
async fn a_key_reused_with_another_spec_is_refused_from_memory_and_from_the_store() {
    for store in [sqlite("reuse").await, postgres("reuse").await] {
        let s = start(store.clone()).await;
        let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "one")), Some("k")).await;
        assert_eq!(st, 201, "{j}");
        let (st, e) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "two")), Some("k")).await;
        assert_eq!(
            (st, e["code"].as_str(), e["field"].as_str()),
            (409, Some("idempotency_key_reused"), Some("Idempotency-Key"))
        );
        drop(s);
        // after a restart the key is no longer in memory: the log answers
        let s = start(store.clone()).await;
        let (st, e) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "two")), Some("k")).await;
        assert_eq!((st, e["code"].as_str()), (409, Some("idempotency_key_reused")), "{}", store.kind());
        let (st, same) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "one")), Some("k")).await;
        assert_eq!((st, same["id"].clone()), (200, j["id"].clone()), "{}", store.kind());
    }
}

#[tokio::test]
async fn an_unreadable_snapshot_is_skipped_and_the_log_replayed() {
    for store in [sqlite("badsnap").await, postgres("badsnap").await] {
        let s = start(store.clone()).await;
        let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
        for i in 0..5 {
            assert_eq!(
                call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", &format!("b{i}"))), None).await.0,
                201
            );
        }
        let (_, before) = call(&s.url, "GET", "/v1/jobs", Some(&a), None, None).await;
        drop(s);
        // an unreadable snapshot after the log's last command: the newest, so the one a start reads
        let last = store.commands(0, 100_000).await.expect("log").last().map(|c| c.seq).expect("commands");
        store.put_snapshot(last, 0, "{\"version\": 2, \"engine\": \"garbage\"}").await.expect("put");
        let s = start(store.clone()).await;
        let (_, after) = call(&s.url, "GET", "/v1/jobs", Some(&a), None, None).await;
        assert_eq!(before, after, "{}", store.kind());
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "next")), None).await;
        assert_eq!((st, j["id"].as_u64()), (201, Some(6)), "{}: ids continue", store.kind());
    }
}

/// At `--time-scale` a deferred start waits its planned wait × the scale, as run times are
/// scaled (a batch job used to wait real hours for a green slot at 0.001).
#[tokio::test]
async fn at_a_time_scale_a_deferred_start_is_scaled_too() {
    let store = sqlite("timescale").await;
    let cfg = suanwang_server::ServerConfig { time_scale: 1e-4, ..suanwang_server::ServerConfig::default() };
    let s = crate::start_with(store.clone(), cfg).await;
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    // delay-tolerant batch jobs: the balanced policy defers some to greener or cheaper hours
    let mut placed = vec![];
    for i in 0..8 {
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", &format!("t{i}"))), None).await;
        assert_eq!(st, 201, "{j}");
        placed.push(j);
    }
    for j in placed {
        let (id, submitted) = (j["id"].as_u64().expect("id"), j["submitted_at"].as_i64().expect("submitted"));
        let planned_wait_ms = j["start_at"].as_i64().expect("placed") - submitted;
        let v = until(&s.url, &a, &format!("/v1/jobs/{id}"), |v| v["started_at"].is_i64()).await;
        let waited_ms = v["started_at"].as_i64().expect("started") - submitted;
        // the scaled wait, plus the server's 250 ms tick and some slack for a loaded machine
        let bound = (planned_wait_ms as f64 * 1e-4) as i64 + 3_000;
        assert!(waited_ms <= bound, "job {id} planned to wait {planned_wait_ms} ms, waited {waited_ms} ms");
    }
}

/// `POST /v1/admin/restart` is the operator's alone; it answers 202 and notifies whoever serves
/// (the binary re-executes itself on that notice).
#[tokio::test]
async fn only_an_operator_may_restart_the_control_plane() {
    let store = sqlite("restart-route").await;
    let cfg = suanwang_server::ServerConfig::default();
    let restart = std::sync::Arc::clone(&cfg.restart);
    let s = crate::start_with(store.clone(), cfg).await;
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let (st, e) = call(&s.url, "POST", "/v1/admin/restart", Some(&a), None, None).await;
    assert_eq!((st, e["code"].as_str()), (403, Some("forbidden")), "{e}");
    let notified = restart.notified();
    let (st, r) = call(&s.url, "POST", "/v1/admin/restart", Some(&op), None, None).await;
    assert_eq!((st, r["restarting"].as_bool()), (202, Some(true)), "{r}");
    tokio::time::timeout(std::time::Duration::from_secs(5), notified).await.expect("the server was told to restart");
}

/// A job whose end falls due while no server runs is ended by the next one's first batch —
/// settled (its hold posted, not left open for ever) and in the evidence log, once (issue 17
/// item 3; the same path as a takeover).
#[tokio::test]
async fn a_job_that_ends_while_no_server_runs_is_settled_and_logged_once_after_the_restart() {
    let store = sqlite("due-across-restart").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let job = json!({"name": "short", "tenant": "acme", "kind": "inference", "origin": "beijing",
        "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 1}});
    let body = serde_json::to_vec(&job).expect("json");
    let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(body), None).await;
    assert_eq!((st, j["state"].as_str()), (201, Some("running")), "{j}");
    let id = j["id"].as_i64().expect("id");
    let ends_at = j["started_at"].as_i64().expect("started") + 1_000;
    drop(s);
    // its end falls due while nothing serves (waiting for the clock, not for another task)
    while suanwang_server::actor::wall_now().0 <= ends_at + 100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let q = suanwang_store::TransferQuery { user_data: Some(id), limit: 100, ..Default::default() };
    assert_eq!(store.ledger_transfers(&q).await.expect("ledger").len(), 1, "only its hold before the restart");
    let s = start(store.clone()).await;
    let path = format!("/v1/jobs/{id}/bill");
    let bill = until(&s.url, &op, &path, |b| b["status"] == "settled").await;
    assert_eq!(bill["held_fen"], 0, "{bill}");
    let ends = |e: &Value| {
        e["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["opening"]["record"].as_str())
            .map(|r| r.matches("\"event\":\"completed\"").count())
            .sum::<usize>()
    };
    let evidence = until(&s.url, &op, &format!("/v1/jobs/{id}/evidence"), |e| ends(e) >= 1).await;
    assert_eq!(ends(&evidence), 1, "{evidence}");
    let (_, j) = call(&s.url, "GET", &format!("/v1/jobs/{id}"), Some(&a), None, None).await;
    assert_eq!(j["state"], "completed", "{j}");
}
