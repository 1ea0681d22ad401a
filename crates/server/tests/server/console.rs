//! The web console's page and assets (issue 15 item 3): served from the binary, with their
//! media types and security headers; `/v1/whoami` names the token's principal. (The browser
//! tests drive the pages themselves.)

use suanwang_server::auth::Role;
use suanwang_server::create_token;

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
}
