//! Trust boundaries of the agent protocol over real HTTP: who owns an agent's site (and keeps
//! it across a restart), approval before placements, absurd capacity and prices, and reports
//! that must be plausible before they change a job or a bill.

use serde_json::{Value, json};
use suanwang_server::auth::Role;
use suanwang_server::{ProviderCaps, ServerConfig, create_token};

use super::{call, sqlite, start, start_with};

fn cpu_site(id: &str, count: u64, price: i64) -> Value {
    json!({"site": {"id": id, "city": "beijing", "pue": 1.3, "pools": [
        {"name": "cpu", "model": "generic-x86_64", "count": count, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0,
         "price_fen_per_unit_hour": price}
    ]}, "detected": {"cores": count, "memory_mib": count.saturating_mul(1024)}})
}

fn body(v: &Value) -> Option<Vec<u8>> {
    serde_json::to_vec(v).ok()
}

async fn register(url: &str, token: &str, v: &Value) -> (u16, Value) {
    call(url, "POST", "/v1/agents/register", Some(token), body(v), None).await
}

/// A 60 s job of one core pinned to `site`, carrying a secret in its environment.
fn pinned(site: &str, name: &str) -> Value {
    json!({
        "name": name, "tenant": "acme-ai", "kind": "inference", "origin": "beijing", "allowed_sites": [site],
        "resources": {"family": "general", "count": 1, "memory_gib": 1}, "work": {"run_time_s": 60},
        "run": {"command": "sh", "args": ["-c", "echo hi"], "env": {"DB_PASSWORD": "s3cr3t"}}
    })
}

fn site_of<'a>(sites: &'a Value, id: &str) -> &'a Value {
    sites["sites"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("site {id} listed: {sites}"))
}

/// Provider `acme` once registered and polled `acme-cloud-dc1`, another provider's site (its
/// name starts with `acme-`), got a tenant's secret and completed the job with a forged
/// report. Now the site belongs to whoever registered it first, every agent route checks that,
/// and a restart keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_belongs_to_its_first_registrant_and_waits_for_approval_across_a_restart() {
    let store = sqlite("trust-owner").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let cloud = create_token(&store, Role::Provider, "acme-cloud").await.expect("token");
    let acme = create_token(&store, Role::Provider, "acme").await.expect("token");
    let tenant = create_token(&store, Role::Tenant, "acme-ai").await.expect("token");
    let dc1 = cpu_site("acme-cloud-dc1", 4, 30);

    let (st, r) = register(&s.url, &cloud, &dc1).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("pending")), "{r}");
    let (_, sites) = call(&s.url, "GET", "/v1/sites", Some(&tenant), None, None).await;
    let listed = site_of(&sites, "acme-cloud-dc1");
    assert_eq!((listed["approval"].as_str(), listed["owner"].as_str()), (Some("pending"), Some("acme-cloud")));
    assert_eq!(site_of(&sites, "yrd-qingpu")["approval"], "approved", "reference sites are approved");
    assert!(listed["pools"].is_array() && listed["pue"].is_number(), "existing keys stay: {listed}");

    // pending: no placements, and neither a resume nor the provider lifts that
    let (st, job) =
        call(&s.url, "POST", "/v1/jobs", Some(&tenant), body(&pinned("acme-cloud-dc1", "early")), None).await;
    assert_eq!((st, job["state"].as_str()), (201, Some("refused")), "{job}");
    let (st, r) = call(&s.url, "POST", "/v1/sites/acme-cloud-dc1/resume", Some(&op), None, None).await;
    assert_eq!((st, r["code"].as_str()), (409, Some("pending_approval")), "{r}");
    let (st, _) = call(&s.url, "POST", "/v1/sites/acme-cloud-dc1/approve", Some(&cloud), None, None).await;
    assert_eq!(st, 403, "only the operator approves");
    let (st, _) = call(&s.url, "POST", "/v1/sites/atlantis/approve", Some(&op), None, None).await;
    assert_eq!(st, 404);

    // another provider may not register it, even with a name that starts like its own
    let (st, r) = register(&s.url, &acme, &dc1).await;
    assert_eq!(st, 403, "{r}");
    let msg = r["message"].as_str().unwrap_or_default();
    assert!(msg.contains("belongs to provider acme-cloud") && msg.contains("only act for sites it owns"), "{r}");

    let (st, r) = call(&s.url, "POST", "/v1/sites/acme-cloud-dc1/approve", Some(&op), None, None).await;
    assert_eq!((st, r["approval"].as_str(), r["owner"].as_str()), (200, Some("approved"), Some("acme-cloud")), "{r}");
    let (st, job) =
        call(&s.url, "POST", "/v1/jobs", Some(&tenant), body(&pinned("acme-cloud-dc1", "later")), None).await;
    assert_eq!((st, job["site"].as_str()), (201, Some("acme-cloud-dc1")), "{job}");
    let id = job["id"].as_u64().expect("id");

    // every agent route refuses the other provider; its owner and the operator get through
    let poll = "/v1/agents/acme-cloud-dc1/assignments";
    let report = json!({"id": id, "attempt": 1, "succeeded": true, "wall_seconds": 1.0});
    let cp = format!("/v1/agents/acme-cloud-dc1/checkpoints/{id}");
    let thief = [
        call(&s.url, "GET", poll, Some(&acme), None, None).await,
        call(&s.url, "POST", "/v1/agents/acme-cloud-dc1/reports", Some(&acme), body(&report), None).await,
        call(&s.url, "GET", &cp, Some(&acme), None, None).await,
        call(&s.url, "PUT", &format!("{cp}?attempt=1"), Some(&acme), Some(vec![1, 2]), None).await,
    ];
    for (st, r) in &thief {
        assert_eq!(*st, 403, "{r}");
        assert!(r["message"].as_str().is_some_and(|m| m.contains("belongs to provider acme-cloud")), "{r}");
        assert!(!r.to_string().contains("s3cr3t"), "{r}");
    }
    let (st, mine) = call(&s.url, "GET", poll, Some(&cloud), None, None).await;
    assert_eq!(st, 200, "{mine}");
    assert_eq!(mine["assignments"][0]["env"]["DB_PASSWORD"], "s3cr3t", "the owner gets its work: {mine}");
    assert_eq!(call(&s.url, "GET", poll, Some(&op), None, None).await.0, 200, "the operator may act on any site");
    let (_, view) = call(&s.url, "GET", &format!("/v1/jobs/{id}"), Some(&tenant), None, None).await;
    assert_eq!(view["state"], "running", "the forged report changed nothing: {view}");

    // a provider names its new sites after itself, and owns what it registers
    let (st, r) = register(&s.url, &acme, &cpu_site("globex-1", 2, 30)).await;
    assert_eq!((st, r["field"].as_str()), (403, Some("site.id")), "{r}");
    let (st, r) = register(&s.url, &acme, &cpu_site("acme-x", 2, 30)).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("pending")), "{r}");

    // ownership and approval are in the command log: a restart keeps them
    drop(s);
    let s = start(store.clone()).await;
    let (_, sites) = call(&s.url, "GET", "/v1/sites", Some(&op), None, None).await;
    let dc1_now = site_of(&sites, "acme-cloud-dc1");
    assert_eq!((dc1_now["approval"].as_str(), dc1_now["owner"].as_str()), (Some("approved"), Some("acme-cloud")));
    let x = site_of(&sites, "acme-x");
    assert_eq!((x["approval"].as_str(), x["owner"].as_str()), (Some("pending"), Some("acme")));
    let (st, r) = register(&s.url, &acme, &dc1).await;
    assert_eq!(st, 403, "still not acme's after the restart: {r}");
    let (st, r) = register(&s.url, &cloud, &dc1).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("approved")), "its owner re-registers: {r}");
    assert_eq!(call(&s.url, "GET", poll, Some(&acme), None, None).await.0, 403);
    // re-registering with more capacity than was approved is refused
    let (st, r) = register(&s.url, &cloud, &cpu_site("acme-cloud-dc1", 8, 30)).await;
    assert_eq!((st, r["code"].as_str()), (409, Some("bad_site")), "{r}");
    // the operator may hand a site to a provider
    let (st, r) = call(&s.url, "POST", "/v1/sites/acme-x/approve?owner=acme-cloud", Some(&op), None, None).await;
    assert_eq!((st, r["owner"].as_str()), (200, Some("acme-cloud")), "{r}");
    assert_eq!(call(&s.url, "GET", "/v1/agents/acme-x/assignments", Some(&acme), None, None).await.0, 403);
}

/// Absurd declarations are refused at registration with the field and the reason — never a
/// panic, an overflow or a site that takes work for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_capacity_and_prices_are_refused_at_registration() {
    let store = sqlite("trust-absurd").await;
    let caps = ProviderCaps { max_cores: 8, ..ProviderCaps::default() };
    let s = start_with(store.clone(), ServerConfig { provider_caps: caps, ..ServerConfig::default() }).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Provider, "acme").await.expect("token");
    let gpus = |count: u64, price: i64| {
        json!({"site": {"id": "acme-gpu", "city": "shanghai", "pue": 1.25, "pools": [
            {"name": "gpu", "model": "h800", "count": count, "memory_gib_per_unit": 80, "power_w_per_unit": 700.0,
             "price_fen_per_unit_hour": price}
        ]}, "detected": {"cores": 2, "memory_mib": 4096, "gpus": count}})
    };
    let mut nan_power = cpu_site("acme-p", 2, 30);
    nan_power["site"]["pools"][0]["power_w_per_unit"] = json!(0.0);
    let raw_huge_power = br#"{"site": {"id": "acme-p", "city": "beijing", "pue": 1.3, "pools": [{"name": "cpu", "model": "generic-x86_64", "count": 2, "memory_gib_per_unit": 1, "power_w_per_unit": 1e400, "price_fen_per_unit_hour": 30}]}, "detected": {"cores": 2, "memory_mib": 2048}}"#;
    let mut max_memory = cpu_site("acme-m", 2, 30);
    max_memory["site"]["pools"][0]["memory_gib_per_unit"] = json!(u32::MAX);
    let mut wild_pue = cpu_site("acme-q", 2, 30);
    wild_pue["site"]["pue"] = json!(1e300);
    let cases: Vec<(Value, &str, &str)> = vec![
        (cpu_site("acme-a", 1_000_000_000_000, 30), "site.pools[0].count", "must be in 1..=1048576"),
        (cpu_site("acme-a", u64::MAX, 0), "site.pools[0].count", "18446744073709551615"),
        (cpu_site("acme-a", 4, 0), "site.pools[0].price_fen_per_unit_hour", "outside the price band"),
        (cpu_site("acme-a", 4, -5), "site.pools[0].price_fen_per_unit_hour", "outside the price band"),
        (cpu_site("acme-a", 4, 1_000_000), "site.pools[0].price_fen_per_unit_hour", "outside the price band"),
        (gpus(2, 0), "site.pools[0].price_fen_per_unit_hour", "for h800"),
        (nan_power, "site.pools[0].power_w_per_unit", "[0.1, 100000] W"),
        (max_memory, "site.pools[0].memory_gib_per_unit", "at most 65536 GiB"),
        (wild_pue, "site.pue", "[1, 3]"),
    ];
    for (reg, field, says) in cases {
        let (st, r) = register(&s.url, &acme, &reg).await;
        assert_eq!((st, r["field"].as_str()), (422, Some(field)), "{r}");
        assert!(r["message"].as_str().is_some_and(|m| m.contains(says)), "{says}: {r}");
    }
    let (st, r) = call(&s.url, "POST", "/v1/agents/register", Some(&acme), Some(raw_huge_power.to_vec()), None).await;
    assert_eq!((st, r["code"].as_str()), (422, Some("invalid_registration")), "{r}");
    // 100,000 H800 cards: within one pool's bound, beyond the provider's cap
    let (st, r) = register(&s.url, &acme, &gpus(100_000, 1500)).await;
    assert_eq!((st, r["code"].as_str(), r["field"].as_str()), (422, Some("over_cap"), Some("site.pools")), "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("100000 accelerator cards")), "{r}");
    // the cap counts all of a provider's sites, a site registered again once
    assert_eq!(register(&s.url, &acme, &cpu_site("acme-a", 6, 30)).await.0, 200);
    assert_eq!(register(&s.url, &acme, &cpu_site("acme-a", 6, 30)).await.0, 200);
    let (st, r) = register(&s.url, &acme, &cpu_site("acme-b", 4, 30)).await;
    assert_eq!((st, r["code"].as_str()), (422, Some("over_cap")), "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("10 cores") && m.contains("the cap is 8")), "{r}");
    // the operator's own machines are approved at once and not capped
    let (st, r) = register(&s.url, &op, &cpu_site("local", 64, 30)).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("approved")), "{r}");
    // nothing absurd reached the network
    let (_, sites) = call(&s.url, "GET", "/v1/sites", Some(&op), None, None).await;
    let ids: Vec<&str> = sites["sites"].as_array().expect("sites").iter().filter_map(|x| x["id"].as_str()).collect();
    assert!(!ids.contains(&"acme-gpu") && !ids.contains(&"acme-b") && !ids.contains(&"acme-p"), "{ids:?}");
}

/// Reports are refused (422, naming the field) unless finite, non-negative and plausible; a
/// refused report is not stored, and the KPIs stay finite across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_reports_are_refused_and_never_billed() {
    let store = sqlite("trust-report").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let tenant = create_token(&store, Role::Tenant, "acme-ai").await.expect("token");
    assert_eq!(register(&s.url, &op, &cpu_site("box", 4, 30)).await.0, 200);
    let (st, job) = call(&s.url, "POST", "/v1/jobs", Some(&tenant), body(&pinned("box", "metered")), None).await;
    assert_eq!((st, job["state"].as_str()), (201, Some("running")), "{job}");
    let id = job["id"].as_u64().expect("id");
    let (_, list) = call(&s.url, "GET", "/v1/agents/box/assignments", Some(&op), None, None).await;
    let limit = list["assignments"][0]["time_limit_s"].as_u64().expect("time limit");
    let reports = "/v1/agents/box/reports";
    let rep = |wall: f64, cpu: f64, mem: f64| {
        json!({"id": id, "attempt": 1, "succeeded": true, "wall_seconds": wall, "cpu_seconds": cpu,
               "peak_memory_mib": mem})
    };
    for (r, field, says) in [
        (rep(1e12, 0.0, 0.0), "wall_seconds", "time limit"),
        (rep(1e300, 0.0, 0.0), "wall_seconds", "grace"),
        (rep(-3.0, 0.0, 0.0), "wall_seconds", "negative"),
        (rep(10.0, -1.0, 0.0), "cpu_seconds", "negative"),
        (rep(10.0, 1e9, 0.0), "cpu_seconds", "× 1 cores"),
        (rep(10.0, 1.0, -64.0), "peak_memory_mib", "negative"),
        (rep(10.0, 1.0, 1e12), "peak_memory_mib", "memory limit of 1024 MiB"),
    ] {
        let (st, e) = call(&s.url, "POST", reports, Some(&op), body(&r), None).await;
        assert_eq!(
            (st, e["code"].as_str(), e["field"].as_str()),
            (422, Some("implausible_report"), Some(field)),
            "{e}"
        );
        assert!(e["message"].as_str().is_some_and(|m| m.contains(says)), "{says}: {e}");
    }
    let raw = format!(r#"{{"id": {id}, "attempt": 1, "succeeded": true, "wall_seconds": 1e400}}"#);
    let (st, e) = call(&s.url, "POST", reports, Some(&op), Some(raw.into_bytes()), None).await;
    assert_eq!((st, e["code"].as_str()), (422, Some("invalid_report")), "{e}");
    let (_, view) = call(&s.url, "GET", &format!("/v1/jobs/{id}"), Some(&tenant), None, None).await;
    assert_eq!((view["state"].as_str(), view["meter"].is_null()), (Some("running"), true), "not stored: {view}");
    let metrics =
        crate::http().get(format!("{}/metrics", s.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("\nsuanwang_reports_refused_total 7\n"), "{metrics}");

    // the longest plausible run is billed, and no more than its share of the time limit
    let wall = limit as f64 + suanwang_engine::WALL_GRACE_S;
    // unknown keys are still refused; the raw bytes of output that is not UTF-8 are taken
    let mut bogus = rep(1.0, 1.0, 1.0);
    bogus["stdout_bytes"] = json!("x");
    let (st, e) = call(&s.url, "POST", reports, Some(&op), body(&bogus), None).await;
    assert_eq!((st, e["code"].as_str()), (422, Some("invalid_report")), "{e}");
    let mut last = rep(wall, wall, 1024.0);
    last["stdout"] = json!("\u{fffd}PNG");
    last["stdout_base64"] = json!(suanwang_api::agent::base64(b"\x89PNG"));
    last["stderr_base64"] = Value::Null;
    let (st, done) = call(&s.url, "POST", reports, Some(&op), body(&last), None).await;
    assert_eq!((st, done["state"].as_str()), (200, Some("completed")), "{done}");
    // the output is kept as bytes: shown lossily, and offered raw
    let logs = format!("/v1/jobs/{id}/logs");
    let (st, shown) = call(&s.url, "GET", &logs, Some(&tenant), None, None).await;
    assert_eq!((st, shown["stdout"].as_str()), (200, Some("\u{fffd}PNG")), "{shown}");
    let raw =
        crate::http().get(format!("{}{logs}?raw=stdout", s.url)).bearer_auth(&tenant).send().await.expect("raw logs");
    assert_eq!(raw.status().as_u16(), 200);
    assert_eq!(raw.bytes().await.expect("bytes").as_ref(), b"\x89PNG", "the bytes as the run wrote them");
    let (st, e) = call(&s.url, "GET", &format!("{logs}?raw=both"), Some(&tenant), None, None).await;
    assert_eq!((st, e["field"].as_str()), (400, Some("raw")), "{e}");
    let mut bad = rep(1.0, 1.0, 1.0);
    bad["stdout_base64"] = json!("not base64!");
    let (st, e) = call(&s.url, "POST", reports, Some(&op), body(&bad), None).await;
    assert_eq!((st, e["field"].as_str()), (422, Some("stdout_base64")), "{e}");
    let money = done["meter"]["money_fen"].as_i64().expect("money");
    assert!(money > 0 && money < 10_000, "a core for three minutes at 30 fen an hour: {done}");
    let kpis = |url: String, tok: String| async move {
        let (st, k) = call(&url, "GET", "/v1/kpis", Some(&tok), None, None).await;
        assert_eq!(st, 200, "{k}");
        k
    };
    let before = kpis(s.url.clone(), op.clone()).await;
    assert_eq!(before["cost_fen"].as_i64(), Some(money), "{before}");
    assert!(before["carbon_kg"].as_f64().is_some_and(|c| c.is_finite() && c < 1.0), "{before}");
    drop(s);
    let s = start(store.clone()).await;
    let after = kpis(s.url.clone(), op.clone()).await;
    assert_eq!(
        (after["cost_fen"].clone(), after["carbon_kg"].clone()),
        (before["cost_fen"].clone(), before["carbon_kg"].clone())
    );
}

/// A `register_site` row logged before ownership was recorded (the bare site) still replays:
/// the site stays in service, owned by the principal that registered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_registered_before_ownership_was_logged_keeps_its_registrant() {
    use suanwang_store::Store;
    let store = sqlite("trust-legacy").await;
    let s = start(store.clone()).await;
    let acme = create_token(&store, Role::Provider, "acme").await.expect("token");
    let other = create_token(&store, Role::Provider, "acme-cloud").await.expect("token");
    drop(s);
    let legacy = cpu_site("acme-old", 2, 30)["site"].clone();
    let row = suanwang_store::CommandRow {
        seq: 0,
        at_ms: suanwang_server::actor::wall_now().0,
        actor: "acme".into(),
        kind: "register_site".into(),
        job_id: None,
        tenant: None,
        idempotency_key: None,
        body: legacy.to_string(),
        events: "[]".into(),
    };
    store.append(&[row]).await.expect("append");
    let s = start(store.clone()).await;
    let (_, sites) = call(&s.url, "GET", "/v1/sites", Some(&acme), None, None).await;
    let old = site_of(&sites, "acme-old");
    assert_eq!((old["approval"].as_str(), old["owner"].as_str()), (Some("approved"), Some("acme")), "{old}");
    assert_eq!(call(&s.url, "GET", "/v1/agents/acme-old/assignments", Some(&other), None, None).await.0, 403);
    let (st, r) = register(&s.url, &acme, &cpu_site("acme-old", 2, 30)).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("approved")), "{r}");
}

/// Registration checks who asks before what is asked (a tenant gets 403 whatever its body),
/// and a bad site id or city is bad input (422 naming the field), not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_the_role_first_and_names_a_bad_site_id() {
    let store = sqlite("trust-register-order").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Provider, "acme").await.expect("token");
    let tenant = create_token(&store, Role::Tenant, "acme-ai").await.expect("token");
    let regulator = create_token(&store, Role::Regulator, "nda").await.expect("token");
    for (token, raw) in [(&tenant, &b"not json"[..]), (&tenant, b"{}"), (&regulator, b"{\"site\": 1}")] {
        let (st, r) = call(&s.url, "POST", "/v1/agents/register", Some(token), Some(raw.to_vec()), None).await;
        assert_eq!((st, r["code"].as_str()), (403, Some("forbidden")), "{r}");
    }
    let (st, _) = register(&s.url, &tenant, &cpu_site("acme-ai-x", 2, 30)).await;
    assert_eq!(st, 403, "a valid body does not help a tenant");
    let mut unknown_city = cpu_site("acme-c", 2, 30);
    unknown_city["site"]["city"] = json!("atlantis");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("upper case", cpu_site("Acme-X", 2, 30), "site.id", "lowercase"),
        ("empty", cpu_site("", 2, 30), "site.id", "is empty"),
        ("too long", cpu_site(&format!("acme-{}", "x".repeat(80)), 2, 30), "site.id", "the limit is 64"),
        ("a slash", cpu_site("acme/x", 2, 30), "site.id", "'/'"),
        ("a place", cpu_site("beijing", 2, 30), "site.id", "already the id of a place"),
        ("unknown city", unknown_city, "site.city", "atlantis"),
    ];
    for (what, reg, field, says) in cases {
        for token in [&op, &acme] {
            let (st, r) = register(&s.url, token, &reg).await;
            assert_eq!((st, r["field"].as_str()), (422, Some(field)), "{what}: {r}");
            assert!(r["message"].as_str().is_some_and(|m| m.contains(says)), "{what}: {says} in {r}");
        }
    }
    // and a good one still registers, its answer typed as before
    let (st, r) = register(&s.url, &op, &cpu_site("ops-dc", 2, 30)).await;
    assert_eq!(st, 200, "{r}");
    for key in ["site", "registered", "approval", "control_plane"] {
        assert!(r.get(key).is_some(), "{key} in {r}");
    }
}

/// End to end: a job with a command submitted where no agent runs commands is refused (it was
/// once placed on a simulated site, marked completed and billed without running); with an
/// agent's site it goes there, and when it is moved away from that site it does not go to a simulated one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_command_goes_only_to_a_site_with_a_live_agent() {
    let store = sqlite("trust-run-needs-agent").await;
    let s = start(store.clone()).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let tenant = create_token(&store, Role::Tenant, "acme-ai").await.expect("token");
    let free = |name: &str| {
        json!({
            "name": name, "tenant": "acme-ai", "kind": "batch", "origin": "beijing",
            "resources": {"family": "general", "count": 1, "memory_gib": 1}, "work": {"run_time_s": 60},
            "run": {"command": "sh", "args": ["-c", "echo hi"]}
        })
    };
    let (st, job) = call(&s.url, "POST", "/v1/jobs", Some(&tenant), body(&free("nowhere")), None).await;
    assert_eq!((st, job["state"].as_str()), (201, Some("refused")), "{job}");
    assert!(job["reason"].as_str().is_some_and(|r| r.contains("by agent")), "{job}");
    assert_eq!(register(&s.url, &op, &cpu_site("box", 4, 30)).await.0, 200);
    let (st, job) = call(&s.url, "POST", "/v1/jobs", Some(&tenant), body(&free("boxed")), None).await;
    assert_eq!((st, job["site"].as_str()), (201, Some("box")), "{job}");
    let id = job["id"].as_u64().expect("id");
    // the operator suspends the site and moves its jobs: no agent site is left, so the job
    // fails instead of being simulated
    let (st, r) = call(&s.url, "POST", "/v1/sites/box/suspend?move=true", Some(&op), None, None).await;
    assert_eq!(st, 200, "{r}");
    let (_, view) = call(&s.url, "GET", &format!("/v1/jobs/{id}"), Some(&tenant), None, None).await;
    assert_eq!(view["state"].as_str(), Some("failed"), "{view}");
    assert!(view["meter"].is_null() || view["meter"]["money_fen"] == 0, "billed nothing: {view}");
}
