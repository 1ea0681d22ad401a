//! The control plane over real HTTP, on SQLite and PostgreSQL: tenancy, bad input, idempotency,
//! the OpenAPI document, restart from the log; TLS and abuse limits in their modules.

mod alerts;
mod console;
mod evidence;
mod history;
mod limits;
mod market;
mod money;
mod tls;

use std::sync::Arc;

use serde_json::{Value, json};
use suanwang_core::Network;
use suanwang_server::auth::Role;
use suanwang_server::{ServerConfig, build, create_token};
use suanwang_store::AnyStore;

mod trust;

struct Server {
    url: String,
    store: AnyStore,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start(store: AnyStore) -> Server {
    start_with(store, ServerConfig::default()).await
}

async fn start_with(store: AnyStore, cfg: ServerConfig) -> Server {
    let net = Arc::new(Network::reference().expect("reference"));
    let (router, actor) = build(net, store.clone(), cfg).await.expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server { url, store, tasks: vec![serve, actor] }
}

/// A client for the tests: reqwest is built with rustls but without a default crypto provider
/// (the workspace uses ring alone), so the process installs ring before the first client.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // below the server's 10 s idle close: a pooled connection is never reused as it closes
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(5)).build().expect("client")
}

async fn sqlite(tag: &str) -> AnyStore {
    let dir = std::env::temp_dir().join(format!("suanwang-server-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    AnyStore::open(&dir.display().to_string()).await.expect("open")
}

async fn postgres(tag: &str) -> AnyStore {
    let admin =
        std::env::var("SUANWANG_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("suanwang_test_{tag}_{}", std::process::id());
    let _ = suanwang_store::admin_execute(&admin, &format!("DROP DATABASE IF EXISTS {db}")).await;
    suanwang_store::admin_execute(&admin, &format!("CREATE DATABASE {db}"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e}; run ./scripts/test.sh, which starts one"));
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_string();
    AnyStore::open(&format!("{base}/{db}")).await.expect("open postgres")
}

async fn call(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    key: Option<&str>,
) -> (u16, Value) {
    let c = http();
    let mut r = c.request(method.parse().expect("method"), format!("{url}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b);
    }
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    let res = r.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// (id, `field`, site) of every job in a `GET /v1/jobs` answer: what a restart must keep.
fn job_rows(list: &Value, field: &str) -> Vec<(Value, Value, Value)> {
    list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| (j["id"].clone(), j[field].clone(), j["site"].clone()))
        .collect()
}

fn spec(tenant: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "name": name, "tenant": tenant, "kind": "batch", "origin": "beijing",
        "resources": {"family": "general", "count": 8}, "work": {"run_time_s": 3600}
    }))
    .expect("json")
}

async fn tenancy_and_roles(s: &Server) {
    let op = create_token(&s.store, Role::Operator, "ops").await.expect("token");
    let a = create_token(&s.store, Role::Tenant, "acme").await.expect("token");
    let b = create_token(&s.store, Role::Tenant, "globex").await.expect("token");
    let reg = create_token(&s.store, Role::Regulator, "nda").await.expect("token");
    let prov = create_token(&s.store, Role::Provider, "dc-owner").await.expect("token");
    let (st, job) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "a1")), None).await;
    assert_eq!(st, 201, "{job}");
    assert!(job["id"].as_u64().is_some() && job["state"].is_string());
    let id = job["id"].as_u64().expect("id");
    let path = format!("/v1/jobs/{id}");
    let cancel = format!("/v1/jobs/{id}/cancel");
    // another tenant sees nothing of it
    assert_eq!(call(&s.url, "GET", &path, Some(&b), None, None).await.0, 404);
    assert_eq!(call(&s.url, "POST", &cancel, Some(&b), None, None).await.0, 404);
    let (_, list) = call(&s.url, "GET", "/v1/jobs", Some(&b), None, None).await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(0));
    assert_eq!(call(&s.url, "POST", "/v1/jobs", Some(&b), Some(spec("acme", "impostor")), None).await.0, 403);
    // the regulator reads, never writes
    assert_eq!(call(&s.url, "GET", &path, Some(&reg), None, None).await.0, 200);
    assert_eq!(call(&s.url, "GET", "/v1/kpis", Some(&reg), None, None).await.0, 200);
    assert_eq!(call(&s.url, "POST", "/v1/jobs", Some(&reg), Some(spec("acme", "r")), None).await.0, 403);
    assert_eq!(call(&s.url, "POST", &cancel, Some(&reg), None, None).await.0, 403);
    // a provider reads the network, not jobs
    assert_eq!(call(&s.url, "GET", "/v1/sites", Some(&prov), None, None).await.0, 200);
    assert_eq!(call(&s.url, "GET", &path, Some(&prov), None, None).await.0, 403);
    assert_eq!(call(&s.url, "GET", "/v1/kpis", Some(&a), None, None).await.0, 403);
    // no token, a bad token
    for t in [None, Some("sw_nope")] {
        let (st, e) = call(&s.url, "GET", &path, t, None, None).await;
        assert_eq!(st, 401);
        assert_eq!(e["code"], "unauthorized");
    }
    // the owner and the operator may cancel; the second cancel conflicts
    let (st, c) = call(&s.url, "POST", &cancel, Some(&a), None, None).await;
    assert_eq!((st, c["state"].as_str()), (200, Some("cancelled")), "{c}");
    assert_eq!(call(&s.url, "POST", &cancel, Some(&op), None, None).await.0, 409);
    assert_eq!(call(&s.url, "GET", &path, Some(&op), None, None).await.0, 200);
}

async fn bad_input_is_4xx_json(s: &Server) {
    let a = create_token(&s.store, Role::Tenant, "initech").await.expect("token");
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (b"{not json".to_vec(), 422, Some("$")),
        (br#"{"name": 5}"#.to_vec(), 422, Some("name")),
        (
            serde_json::to_vec(
                &json!({"name": "x", "tenant": "initech", "kind": "batch", "origin": "beijing", "colour": "red",
            "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 60}}),
            )
            .expect("json"),
            422,
            Some("colour"),
        ),
        (
            serde_json::to_vec(&json!({"name": "x", "tenant": "initech", "kind": "batch", "origin": "beijing",
            "resources": {"family": "general", "count": -3}, "work": {"run_time_s": 60}}))
            .expect("json"),
            422,
            Some("resources.count"),
        ),
        (vec![b' '; 2 * 1024 * 1024], 413, None),
        (vec![0xff, 0xfe], 422, Some("$")),
    ];
    for (body, status, field) in cases {
        let (st, e) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(body), None).await;
        assert_eq!(st, status, "{e}");
        for k in ["code", "message", "detail", "hint"] {
            assert!(e[k].is_string(), "{k} in {e}");
        }
        assert!(e.get("field").is_some(), "field key present: {e}");
        if let Some(f) = field {
            assert_eq!(e["field"], f, "{e}");
        }
    }
    let (st, e) =
        call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("initech", "k")), Some("bad key with spaces")).await;
    assert_eq!((st, e["field"].as_str()), (400, Some("Idempotency-Key")));
    assert_eq!(call(&s.url, "GET", "/v1/jobs/abc", Some(&a), None, None).await.0, 400);
    assert_eq!(call(&s.url, "GET", "/v1/jobs?limit=0", Some(&a), None, None).await.0, 400);
    assert_eq!(call(&s.url, "GET", "/v1/jobs?colour=1", Some(&a), None, None).await.0, 400);
    assert_eq!(call(&s.url, "GET", "/nowhere", Some(&a), None, None).await.0, 404);
    // nothing of it was written
    let (_, list) = call(&s.url, "GET", "/v1/jobs", Some(&a), None, None).await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(0));
}

async fn idempotency_and_pagination(s: &Server) {
    let a = create_token(&s.store, Role::Tenant, "umbrella").await.expect("token");
    let (s1, j1) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("umbrella", "once")), Some("key-1")).await;
    let (s2, j2) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("umbrella", "once")), Some("key-1")).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(j1["id"], j2["id"]);
    for i in 0..5 {
        assert_eq!(
            call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("umbrella", &format!("p{i}"))), None).await.0,
            201
        );
    }
    let (_, page) = call(&s.url, "GET", "/v1/jobs?limit=2", Some(&a), None, None).await;
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(2));
    let mut seen = 2;
    let mut after = page["next_after"].as_u64().expect("more pages");
    loop {
        let (_, p) = call(&s.url, "GET", &format!("/v1/jobs?limit=2&after={after}"), Some(&a), None, None).await;
        seen += p["jobs"].as_array().map_or(0, Vec::len);
        match p["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, 6);
    // past the largest id there is nothing (not the first page again); an unknown state is 400
    let (st, p) = call(&s.url, "GET", &format!("/v1/jobs?after={}", u64::MAX), Some(&a), None, None).await;
    assert_eq!((st, p["jobs"].as_array().map(Vec::len)), (200, Some(0)), "{p}");
    let (st, e) = call(&s.url, "GET", "/v1/jobs?state=bogus", Some(&a), None, None).await;
    assert_eq!((st, e["field"].as_str()), (400, Some("state")), "{e}");
    let (st, p) = call(&s.url, "GET", "/v1/jobs?state=placed", Some(&a), None, None).await;
    assert_eq!(st, 200, "{p}");
    // the scheme of the Authorization header is case-insensitive (RFC 9110)
    let lower = http().get(format!("{}/v1/jobs?limit=1", s.url)).header("authorization", format!("bearer {a}"));
    assert_eq!(lower.send().await.expect("request").status().as_u16(), 200);
}

#[tokio::test]
async fn the_api_on_sqlite() {
    let s = start(sqlite("api").await).await;
    tenancy_and_roles(&s).await;
    bad_input_is_4xx_json(&s).await;
    idempotency_and_pagination(&s).await;
}

#[tokio::test]
async fn the_api_on_postgres() {
    let s = start(postgres("api").await).await;
    tenancy_and_roles(&s).await;
    bad_input_is_4xx_json(&s).await;
    idempotency_and_pagination(&s).await;
}

#[tokio::test]
async fn a_restart_rebuilds_every_job_from_the_log() {
    for store in [sqlite("restart").await, postgres("restart").await] {
        let s = start(store.clone()).await;
        let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
        let mut ids = vec![];
        for i in 0..20 {
            let (_, j) = call(
                &s.url,
                "POST",
                "/v1/jobs",
                Some(&a),
                Some(spec("acme", &format!("r{i}"))),
                Some(&format!("r{i}")),
            )
            .await;
            ids.push(j["id"].as_u64().expect("id"));
        }
        let (_, before) = call(&s.url, "GET", "/v1/jobs?limit=1000", Some(&a), None, None).await;
        drop(s);
        let s = start(store.clone()).await;
        let (_, after) = call(&s.url, "GET", "/v1/jobs?limit=1000", Some(&a), None, None).await;
        assert_eq!(job_rows(&before, "name"), job_rows(&after, "name"), "{}", store.kind());
        // the idempotency keys survive too
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "r3")), Some("r3")).await;
        assert_eq!((st, j["id"].as_u64()), (200, Some(ids[3])));
    }
}

#[tokio::test]
async fn a_restart_loads_the_newest_snapshot_and_replays_only_what_follows() {
    use suanwang_store::Store;
    for store in [sqlite("snapshot").await, postgres("snapshot").await] {
        let cfg = ServerConfig { snapshot_every: 5, ..ServerConfig::default() };
        let s = start_with(store.clone(), cfg.clone()).await;
        let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
        // snapshots after 5 commands, then after as many as the last one held live jobs (seq 5, 10, 20)
        for i in 0..24 {
            let (st, _) = call(
                &s.url,
                "POST",
                "/v1/jobs",
                Some(&a),
                Some(spec("acme", &format!("s{i}"))),
                Some(&format!("s{i}")),
            )
            .await;
            assert_eq!(st, 201);
        }
        assert_eq!(call(&s.url, "POST", "/v1/jobs/3/cancel", Some(&a), None, None).await.0, 200);
        let (_, before) = call(&s.url, "GET", "/v1/jobs?limit=1000", Some(&a), None, None).await;
        // snapshots are written in the background: wait (bounded) until the second one lands
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seq = loop {
            match store.latest_snapshot().await.expect("read") {
                Some((seq, _)) if seq >= 10 => break seq,
                _ if std::time::Instant::now() > deadline => panic!("{}: no second snapshot", store.kind()),
                _ => tokio::task::yield_now().await,
            }
        };
        drop(s);
        assert!(seq >= 5, "{}: snapshot at {seq}", store.kind());
        let s = start_with(store.clone(), cfg).await;
        let (_, after) = call(&s.url, "GET", "/v1/jobs?limit=1000", Some(&a), None, None).await;
        assert_eq!(job_rows(&before, "state"), job_rows(&after, "state"), "{}", store.kind());
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "s1")), Some("s1")).await;
        assert_eq!((st, j["id"].as_u64()), (200, Some(2)), "keys from before the snapshot survive");
        let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "new")), Some("new")).await;
        assert_eq!((st, j["id"].as_u64()), (201, Some(25)), "ids continue after the snapshot");
    }
}

/// Issue 17: a follower's copy of the engine, loaded before the first snapshot and stepped a
/// page at a time while the leader writes and snapshots, is the state a fresh load from the
/// newest snapshot reaches — and a server led from it answers as the one that wrote the log.
#[tokio::test]
async fn a_followers_copy_stepped_along_the_log_is_what_a_restart_loads() {
    use suanwang_store::Store;
    let store = sqlite("replica").await;
    let cfg = ServerConfig { snapshot_every: 5, ..ServerConfig::default() };
    let net = Arc::new(Network::reference().expect("reference"));
    let s = start_with(store.clone(), cfg.clone()).await;
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let mut copy = suanwang_server::replica(Arc::clone(&net), &store, &cfg).await.expect("copy");
    assert_eq!(copy.last_seq(), 0, "an empty log");
    let mut steps = 0;
    for i in 0..24 {
        let (st, _) =
            call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", &format!("c{i}"))), Some(&format!("c{i}")))
                .await;
        assert_eq!(st, 201);
        if i % 7 == 3 {
            let was = copy.last_seq();
            steps += copy.tail(&store, false, 1).await.expect("step");
            assert!(copy.last_seq() > was, "a step applies what became durable since the last");
        }
    }
    assert_eq!(call(&s.url, "POST", "/v1/jobs/3/cancel", Some(&a), None, None).await.0, 200);
    let (_, before) = call(&s.url, "GET", "/v1/jobs?limit=1000", Some(&a), None, None).await;
    // snapshots are written in the background: wait (bounded) until one past the copy's start
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.latest_snapshot().await.expect("read") {
            Some((seq, _)) if seq >= 10 => break,
            _ if std::time::Instant::now() > deadline => panic!("no second snapshot"),
            _ => tokio::task::yield_now().await,
        }
    }
    drop(s);
    steps += copy.tail(&store, false, 1).await.expect("last step");
    let log = store.commands(0, 100_000).await.expect("log");
    let last = log.last().map_or(0, |c| c.seq);
    assert_eq!((steps, copy.last_seq()), (log.len(), last), "every command once");
    let mut fresh = suanwang_server::replica(Arc::clone(&net), &store, &cfg).await.expect("fresh");
    assert!(fresh.last_seq() >= 10, "a fresh load starts from the newest snapshot: {}", fresh.last_seq());
    fresh.tail(&store, false, usize::MAX).await.expect("tail");
    assert_eq!(fresh.last_seq(), last);
    // the fair-share usage is kept decayed to a base time that differs between two ways of
    // getting there: the same usage when brought to one time
    let (mut copied, mut loaded) = (copy.state(), fresh.state());
    let (cf, ff) = (copied["engine"]["fairshare"].take(), loaded["engine"]["fairshare"].take());
    assert_eq!(copied, loaded, "the copy and a fresh load differ");
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let decay = (-(num(&cf, "base_ms") - num(&ff, "base_ms")) / num(&cf, "half_life_ms")).exp2();
    for (tenant, usage) in ff["scaled"].as_object().expect("fair-share usage") {
        let (mine, theirs) = (num(&cf["scaled"], tenant), usage.as_f64().unwrap_or(f64::NAN));
        assert!((mine - theirs * decay).abs() <= 1e-9 * theirs.abs(), "{tenant}'s fair-share usage: {cf} against {ff}");
    }
    assert_eq!(cf["scaled"].as_object().map(serde_json::Map::len), ff["scaled"].as_object().map(serde_json::Map::len));
    // led from the copy: the jobs as they were
    let (router, actor) =
        suanwang_server::build_from(net, store.clone(), cfg, Some(copy)).await.expect("build from the copy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let s = Server { url, store, tasks: vec![serve, actor] };
    let (_, after) = call(&s.url, "GET", "/v1/jobs?limit=1000", Some(&a), None, None).await;
    assert_eq!(job_rows(&before, "state"), job_rows(&after, "state"));
    let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "c1")), Some("c1")).await;
    assert_eq!((st, j["id"].as_u64()), (200, Some(2)), "a retried key answers its job");
    let (st, j) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "new")), Some("new")).await;
    assert_eq!((st, j["id"].as_u64()), (201, Some(25)), "ids continue");
}

#[tokio::test]
async fn openapi_is_stable_and_lists_every_route() {
    let s = start(sqlite("openapi").await).await;
    let (st, doc) = call(&s.url, "GET", "/openapi.json", None, None, None).await;
    assert_eq!(st, 200);
    let text = serde_json::to_string_pretty(&doc).expect("json");
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/server/openapi.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, format!("{text}\n")).expect("write golden");
    }
    let want = std::fs::read_to_string(golden).expect("golden openapi.json (UPDATE_GOLDEN=1 to write)");
    assert_eq!(text, want.trim_end(), "the OpenAPI document changed: review and UPDATE_GOLDEN=1");
    // every `{name}` of every path is a declared path parameter (OpenAPI 3.1 requires it)
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let names: Vec<&str> = path.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n)).collect();
        for (method, op) in ops.as_object().expect("operations") {
            for n in &names {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == *n && p["in"] == "path" && p["required"] == true));
                assert!(declared, "{method} {path}: path parameter {n} is not declared");
            }
        }
    }
    let op = create_token(&s.store, Role::Operator, "ops").await.expect("token");
    for r in suanwang_api::ROUTES {
        let (method, path) = (r.method, r.path);
        let mut p = path.replace("{id}", "1");
        if p == "/v1/events" {
            p.push_str("?unknown=1"); // a 400 at once: the stream itself never ends
        }
        let (st, body) = call(&s.url, &method.to_uppercase(), &p, Some(&op), Some(b"{}".to_vec()), None).await;
        assert!(!(st == 404 && body["message"] == "no such route"), "{method} {path} is routed");
        assert!(st < 500, "{method} {path}: {st} {body}");
    }
    let (_, health) = call(&s.url, "GET", "/healthz", None, None, None).await;
    assert_eq!(health["status"], "ok");
    let res = http().get(format!("{}/metrics", s.url)).send().await.expect("metrics").text().await.expect("text");
    for m in [
        "suanwang_jobs",
        "suanwang_placements_total",
        "suanwang_queue_depth",
        "suanwang_hub_utilization",
        "suanwang_hub_green_share",
        "suanwang_http_request_duration_seconds_bucket",
    ] {
        assert!(res.contains(m), "{m} in /metrics");
    }
}

#[tokio::test]
async fn an_operator_suspends_a_site_and_it_stays_suspended_across_a_restart() {
    let store = sqlite("suspend").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let plan_site = |url: String, tok: String| async move {
        let (st, p) = call(&url, "POST", "/v1/plan", Some(&tok), Some(spec("acme", "p")), None).await;
        assert_eq!((st, p["placed"].as_bool()), (200, Some(true)), "{p}");
        p["placement"]["chosen"]["site"].as_str().expect("site").to_string()
    };
    let first = plan_site(s.url.clone(), a.clone()).await;
    let (st, job) = call(&s.url, "POST", "/v1/jobs", Some(&a), Some(spec("acme", "stays")), None).await;
    assert_eq!((st, job["site"].as_str()), (201, Some(first.as_str())), "{job}");
    let job_path = format!("/v1/jobs/{}", job["id"]);
    let suspend = format!("/v1/sites/{first}/suspend");
    let (st, err) = call(&s.url, "POST", &format!("{suspend}?move=maybe"), Some(&op), None, None).await;
    assert_eq!((st, err["field"].as_str()), (400, Some("move")), "{err}");
    // only the operator may, and only a site that exists
    assert_eq!(call(&s.url, "POST", &suspend, Some(&a), None, None).await.0, 403);
    assert_eq!(call(&s.url, "POST", "/v1/sites/atlantis/suspend", Some(&op), None, None).await.0, 404);
    let (st, r) = call(&s.url, "POST", &suspend, Some(&op), None, None).await;
    assert_eq!((st, r["suspended"].as_bool()), (200, Some(true)), "{r}");
    let elsewhere = plan_site(s.url.clone(), a.clone()).await;
    assert_ne!(elsewhere, first, "a suspended site takes no new placements");
    // what was placed there stays
    let (_, view) = call(&s.url, "GET", &job_path, Some(&a), None, None).await;
    assert_eq!((view["site"].as_str(), view["attempts"].as_u64()), (Some(first.as_str()), Some(1)), "{view}");
    // the suspension is in the log: a restart keeps it
    drop(s);
    let s = start(store.clone()).await;
    assert_ne!(plan_site(s.url.clone(), a.clone()).await, first);
    let (st, _) = call(&s.url, "POST", &format!("/v1/sites/{first}/resume"), Some(&op), None, None).await;
    assert_eq!(st, 200);
    assert_eq!(plan_site(s.url.clone(), a.clone()).await, first);
    // suspending with move=true sends its jobs elsewhere now
    let (st, r) = call(&s.url, "POST", &format!("{suspend}?move=true"), Some(&op), None, None).await;
    assert_eq!((st, r["moved_jobs"].as_bool()), (200, Some(true)), "{r}");
    let (_, view) = call(&s.url, "GET", &job_path, Some(&a), None, None).await;
    assert!(view["site"].as_str().is_some_and(|x| x != first) && view["attempts"] == 2, "{view}");
    assert!(view["reason"].as_str().is_some_and(|r| r.contains("suspended")), "{view}");
}

/// Checkpoints over HTTP: the current attempt at the job's site keeps one (bigger than the
/// 1 MiB request cap, up to 64 MiB), reads it back byte for byte; a stale attempt, another
/// site and an oversize body are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_attempt_keeps_its_checkpoint_and_others_are_refused() {
    let store = sqlite("checkpoint").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let a = create_token(&store, Role::Tenant, "acme").await.expect("token");
    for site in ["ck-a", "ck-b"] {
        let body = json!({"site": {"id": site, "city": "beijing", "pue": 1.3, "pools": [
            {"name": "cpu", "model": "generic-x86_64", "count": 2, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0, "price_fen_per_unit_hour": 30}
        ]}, "detected": {"cores": 2, "memory_mib": 4096}});
        let (st, r) = call(
            &s.url,
            "POST",
            "/v1/agents/register",
            Some(&op),
            Some(serde_json::to_vec(&body).expect("json")),
            None,
        )
        .await;
        assert_eq!(st, 200, "{r}");
    }
    let job = json!({
        "name": "ck", "tenant": "acme", "kind": "inference", "origin": "beijing", "allowed_sites": ["ck-a"],
        "resources": {"family": "general", "count": 1, "memory_gib": 1}, "work": {"run_time_s": 600},
        "checkpoint_s": 60, "run": {"command": "sleep", "args": ["600"]}
    });
    let (st, view) =
        call(&s.url, "POST", "/v1/jobs", Some(&a), Some(serde_json::to_vec(&job).expect("json")), None).await;
    assert_eq!(st, 201, "{view}");
    let id = view["id"].as_u64().expect("id");
    let (st, list) = call(&s.url, "GET", "/v1/agents/ck-a/assignments?wait=5", Some(&op), None, None).await;
    assert_eq!(st, 200);
    let mine = list["assignments"].as_array().and_then(|l| l.iter().find(|x| x["id"] == id).cloned());
    let mine = mine.unwrap_or_else(|| panic!("job {id} assigned to ck-a: {list}"));
    assert_eq!((mine["attempt"].as_u64(), mine["checkpoint_s"].as_u64()), (Some(1), Some(60)), "{mine}");
    // the long-poll waits for a change of what the agent already knows, not for any work: an
    // agent with a run in flight does not spin
    let version = list["version"].as_str().expect("version").to_string();
    let poll = format!("/v1/agents/ck-a/assignments?wait_ms=300&known={version}");
    let asked = std::time::Instant::now();
    let (st, same) = call(&s.url, "GET", &poll, Some(&op), None, None).await;
    assert_eq!((st, same["version"].as_str()), (200, Some(version.as_str())), "{same}");
    assert!(asked.elapsed() >= std::time::Duration::from_millis(300), "returned before the wait without a change");
    // a new assignment ends the wait at once (well before 20 s)
    let waiting = tokio::spawn({
        let (url, op) = (s.url.clone(), op.clone());
        let poll = format!("/v1/agents/ck-a/assignments?wait_ms=20000&known={version}");
        async move {
            let t = std::time::Instant::now();
            (call(&url, "GET", &poll, Some(&op), None, None).await, t.elapsed())
        }
    });
    let mut second = job.clone();
    second["name"] = json!("ck2");
    let (st, _) =
        call(&s.url, "POST", "/v1/jobs", Some(&a), Some(serde_json::to_vec(&second).expect("json")), None).await;
    assert_eq!(st, 201);
    let ((st, changed), took) = waiting.await.expect("poll");
    assert_eq!(st, 200);
    assert_ne!(changed["version"].as_str(), Some(version.as_str()), "{changed}");
    assert_eq!(changed["assignments"].as_array().map(Vec::len), Some(2), "{changed}");
    assert!(took < std::time::Duration::from_secs(20), "the change did not end the wait");

    let path = format!("/v1/agents/ck-a/checkpoints/{id}");
    let (st, _) = call(&s.url, "GET", &path, Some(&op), None, None).await;
    assert_eq!(st, 404, "none yet");
    let data: Vec<u8> = (0..3 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let (st, r) = call(&s.url, "PUT", &format!("{path}?attempt=1"), Some(&op), Some(data.clone()), None).await;
    assert_eq!((st, r["bytes"].as_u64()), (200, Some(data.len() as u64)), "{r}");
    let res = http().get(format!("{}{path}", s.url)).bearer_auth(&op).send().await.expect("get");
    assert_eq!(res.headers()["x-suanwang-checkpoint-attempt"], "1");
    assert_eq!(res.bytes().await.expect("body").to_vec(), data);
    // a stale attempt, a missing attempt, another site, a tenant, an oversize body
    let (st, r) = call(&s.url, "PUT", &format!("{path}?attempt=2"), Some(&op), Some(vec![1]), None).await;
    assert_eq!((st, r["code"].as_str()), (409, Some("stale_checkpoint")), "{r}");
    let (st, r) = call(&s.url, "PUT", &path, Some(&op), Some(vec![1]), None).await;
    assert_eq!((st, r["field"].as_str()), (400, Some("attempt")), "{r}");
    let (st, _) = call(&s.url, "GET", &format!("/v1/agents/ck-b/checkpoints/{id}"), Some(&op), None, None).await;
    assert_eq!(st, 409, "only the job's site reads its checkpoint");
    let (st, _) = call(&s.url, "GET", &path, Some(&a), None, None).await;
    assert_eq!(st, 403);
    // the server answers 413 as soon as the body passes the limit and closes the connection;
    // a client still sending then may see the reset before the answer (no `Expect:
    // 100-continue` in reqwest) — either way nothing is kept, which the read below checks
    let huge = vec![0u8; 65 * 1024 * 1024];
    match http().put(format!("{}{path}?attempt=1", s.url)).bearer_auth(&op).body(huge).send().await {
        Ok(res) => {
            let st = res.status().as_u16();
            let r: Value = res.json().await.unwrap_or(Value::Null);
            assert_eq!((st, r["code"].as_str()), (413, Some("too_large")), "{r}");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "refused mid-body, not another failure: {e:?}"),
    }
    // the refused writes left the kept checkpoint alone
    let res = http().get(format!("{}{path}", s.url)).bearer_auth(&op).send().await.expect("get");
    assert_eq!(res.bytes().await.expect("body").len(), data.len());
}

/// Errors the router makes itself are the documented JSON body too: a path that does not
/// percent-decode to UTF-8, a method the path does not take (with `Allow`), and a body with a
/// key twice in one object (refused naming it, nothing written).
#[tokio::test]
async fn router_errors_and_duplicate_keys_are_the_json_error_body() {
    let s = start(sqlite("errors").await).await;
    let a = create_token(&s.store, Role::Tenant, "acme").await.expect("token");
    let is_error_body = |e: &Value| ["code", "message", "detail", "hint"].iter().all(|k| e[k].is_string());
    for path in ["/v1/jobs/%ff", "/v1/jobs/%ff/logs", "/v1/sites/%c3%28/suspend"] {
        let res = http().get(format!("{}{path}", s.url)).bearer_auth(&a).send().await.expect("request");
        assert_eq!(res.status().as_u16(), 400, "{path}");
        assert!(res.headers()["content-type"].to_str().is_ok_and(|c| c.starts_with("application/json")), "{path}");
        let e: Value = res.json().await.expect("json");
        assert!(is_error_body(&e) && e["code"] == "bad_path", "{path}: {e}");
    }
    // a valid encoding of a character is no error of the path, just not a job id
    let (st, e) = call(&s.url, "GET", "/v1/jobs/%c3%a9", Some(&a), None, None).await;
    assert_eq!((st, e["code"].as_str(), e["field"].as_str()), (400, Some("bad_id"), Some("id")), "{e}");
    let res = http().delete(format!("{}/v1/jobs", s.url)).bearer_auth(&a).send().await.expect("request");
    assert_eq!(res.status().as_u16(), 405);
    let allow = res.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow:?}");
    let e: Value = res.json().await.expect("a JSON body");
    assert!(is_error_body(&e) && e["code"] == "method_not_allowed", "{e}");
    let dup_top = br#"{"name": "a", "tenant": "acme", "kind": "batch", "origin": "beijing", "name": "b",
        "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 60}}"#;
    let dup_inner = br#"{"name": "a", "tenant": "acme", "kind": "batch", "origin": "beijing",
        "resources": {"family": "general", "count": 1, "count": 1000000}, "work": {"run_time_s": 60}}"#;
    for route in ["/v1/jobs", "/v1/plan"] {
        for (body, field) in [(&dup_top[..], "name"), (&dup_inner[..], "resources.count")] {
            let (st, e) = call(&s.url, "POST", route, Some(&a), Some(body.to_vec()), None).await;
            assert_eq!((st, e["code"].as_str(), e["field"].as_str()), (422, Some("duplicate_key"), Some(field)), "{e}");
        }
    }
    let (_, list) = call(&s.url, "GET", "/v1/jobs", Some(&a), None, None).await;
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(0), "nothing was submitted: {list}");
}
