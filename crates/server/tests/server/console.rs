//! The web console's page and assets (issue 15 item 3): served from the binary, with their
//! media types and security headers; `/v1/whoami` names the token's principal. (The browser
//! tests drive the pages themselves.)

use suanwang_server::auth::Role;
use suanwang_server::{create_token, create_token_expiring};

use crate::{call, http, sqlite, start};

#[tokio::test]
async fn the_console_is_served_from_the_binary_within_its_budget() {
    let store = sqlite("console").await;
    let s = start(store.clone()).await;
    let page = http().get(format!("{}/", s.url)).send().await.expect("get /");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers()["content-security-policy"].to_str().expect("csp").contains("default-src 'self'"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.expect("html");
    for (asset, want) in [
        ("/console/app.js", "text/javascript"),
        ("/console/style.css", "text/css"),
        ("/console/vendor/echarts.min.js", "text/javascript"),
    ] {
        assert!(html.contains(asset), "the page loads {asset}");
        let r = http().get(format!("{}{asset}", s.url)).send().await.expect("asset");
        assert_eq!(r.status(), 200, "{asset}");
        let media = r.headers()["content-type"].to_str().expect("type").to_string();
        assert!(media.starts_with(want), "{asset}: {media}");
        assert!(!r.bytes().await.expect("bytes").is_empty());
    }
    let (st, e) = call(&s.url, "GET", "/console/nope.js", None, None, None).await;
    assert_eq!(st, 404, "{e}");
    assert!(!html.contains("http://") && !html.contains("https://"), "no asset from elsewhere: it works offline");
    // ECharts is kept gzipped: served so (browsers unzip it), unzipped for the twin's report
    let r = http().get(format!("{}/console/vendor/echarts.min.js", s.url)).send().await.expect("echarts");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let script = suanwang_server::console::echarts().expect("unzips");
    assert!(script.len() > 1_000_000 && script.contains("echarts"), "{} bytes", script.len());
    let bytes = suanwang_server::console::embedded_bytes();
    println!("the console adds {bytes} bytes to the binary");
    assert!(bytes <= 5 * 1024 * 1024, "{bytes} bytes: over the 5 MB budget");
    // who a token is
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let (st, who) = call(&s.url, "GET", "/v1/whoami", Some(&acme), None, None).await;
    assert_eq!((st, who["name"].as_str(), who["role"].as_str()), (200, Some("acme"), Some("tenant")), "{who}");
    let (st, e) = call(&s.url, "GET", "/v1/whoami", Some("wrong"), None, None).await;
    assert_eq!(st, 401, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "the reason is given: {e}");
    // a token past its expiry: 401 saying when it expired; one not yet expired works
    let now = suanwang_server::actor::wall_now().0;
    let old = create_token_expiring(&store, Role::Tenant, "acme", Some(now - 1_000)).await.expect("token");
    let (st, e) = call(&s.url, "GET", "/v1/whoami", Some(&old), None, None).await;
    assert_eq!(st, 401, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("expired at")), "the reason is given: {e}");
    let fresh = create_token_expiring(&store, Role::Tenant, "acme", Some(now + 3_600_000)).await.expect("token");
    let (st, who) = call(&s.url, "GET", "/v1/whoami", Some(&fresh), None, None).await;
    assert_eq!((st, who["name"].as_str()), (200, Some("acme")), "{who}");
}

/// The Twin page's reports (`--twin-reports DIR`): listed newest first, unreadable ones named
/// with the reason, one read by its name only (never a path out of DIR), for the operator and
/// the regulator; without the flag a 404 that says so. The map has no borders unless given.
#[tokio::test]
async fn twin_reports_are_listed_and_read_by_name_only() {
    let store = sqlite("console-twin").await;
    let dir = std::env::temp_dir().join(format!("suanwang-twin-reports-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = |name: &str, body: &str| {
        std::fs::create_dir_all(dir.join(name)).expect("mkdir");
        std::fs::write(dir.join(name).join("twin.json"), body).expect("write");
    };
    let policy = serde_json::json!({"policy": "balanced", "jobs": 4, "cost_fen": 1234, "carbon_kg": 5.5, "mean_wait_s": 60.0,
        "p99_wait_s": 300.0, "green_share": 0.4, "hub_share": 0.7, "pareto_efficient": true, "extra": "ignored",
        "targets": [{"name": "hub green share", "value": 0.4, "limit": 0.8, "bound": "at_least", "met": false, "source": "seed"}],
        "daily_green_share": [0.3, 0.5], "daily_hub_utilization": {"jingjinji": [0.1, 0.2]}});
    report(
        "good",
        &serde_json::json!({"trace": "csv:jobs.csv", "capacity_scale": 0.5, "policies": [policy]}).to_string(),
    );
    report("broken", "{\"trace\": 1}");
    std::fs::write(dir.join("secret.json"), "{}").expect("write");
    let cfg =
        suanwang_server::ServerConfig { twin_reports: Some(dir.clone()), ..suanwang_server::ServerConfig::default() };
    let s = crate::start_with(store.clone(), cfg).await;
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let reg = create_token(&store, Role::Regulator, "reg").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let (st, list) = call(&s.url, "GET", "/v1/twin/reports", Some(&reg), None, None).await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["reports"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["reports"][0]["name"], "good");
    assert_eq!(list["reports"][0]["policies"], 1);
    assert_eq!(list["unreadable"][0]["name"], "broken", "{list}");
    assert!(list["unreadable"][0]["reason"].as_str().is_some_and(|r| r.contains("twin.json")), "{list}");
    let (st, one) = call(&s.url, "GET", "/v1/twin/reports/good", Some(&op), None, None).await;
    assert_eq!(st, 200, "{one}");
    assert_eq!((one["trace"].as_str(), one["policies"][0]["cost_fen"].as_i64()), (Some("csv:jobs.csv"), Some(1234)));
    assert_eq!(one["policies"][0]["daily_hub_utilization"]["jingjinji"][1], 0.2);
    assert!(one["policies"][0].get("extra").is_none(), "only the figures the charts draw: {one}");
    // (`..`, also percent-encoded, is resolved by the client before it is sent: no route)
    for dots in ["..", "%2E%2E"] {
        let (st, _) = call(&s.url, "GET", &format!("/v1/twin/reports/{dots}"), Some(&op), None, None).await;
        assert_eq!(st, 404);
    }
    for bad in ["..%2Fgood", "secret.json", "nope", "broken"] {
        let (st, e) = call(&s.url, "GET", &format!("/v1/twin/reports/{bad}"), Some(&op), None, None).await;
        assert_eq!((st, e["field"].as_str()), (404, Some("name")), "{bad}: {e}");
    }
    let (st, _) = call(&s.url, "GET", "/v1/twin/reports", Some(&acme), None, None).await;
    assert_eq!(st, 403, "tenants do not read the twin's reports");
    let (st, map) = call(&s.url, "GET", "/v1/map", Some(&acme), None, None).await;
    assert_eq!((st, map["lines"].as_array().map(Vec::len), &map["approval"]), (200, Some(0), &serde_json::Value::Null));
    // a server without the flag says how to get reports
    let bare = start(sqlite("console-twin-bare").await).await;
    let op2 = create_token(&bare.store, Role::Operator, "ops").await.expect("token");
    let (st, e) = call(&bare.url, "GET", "/v1/twin/reports", Some(&op2), None, None).await;
    assert_eq!(st, 404);
    assert!(e["message"].as_str().is_some_and(|m| m.contains("--twin-reports")), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
