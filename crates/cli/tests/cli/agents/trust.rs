//! `suanwang up` with per-provider caps, `suanwang sites` showing approval and owner, and
//! `suanwang site approve` (operator only): a provider's site takes work only once approved,
//! while the operator's own site `local` is approved at once.

use std::process::Command;

use serde_json::{Value, json};

use super::{Up, approve, get, provider_token, until_sites, up};

fn cli(u: &Up, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_suanwang"))
        .args(args)
        .env("SUANWANG_SERVER", &u.url)
        .env("SUANWANG_TOKEN", token)
        .output()
        .expect("suanwang runs")
}

fn site(id: &str, cores: u64) -> Value {
    json!({"site": {"id": id, "city": "beijing", "pue": 1.3, "pools": [
        {"name": "cpu", "model": "generic-x86_64", "count": cores, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0,
         "price_fen_per_unit_hour": 30}
    ]}, "detected": {"cores": cores, "memory_mib": cores * 1024}})
}

/// The filter that refused `site` in a plan, if any.
fn refusal(plan: &Value, site: &str) -> Option<Value> {
    plan["placement"]["rejections"].as_array()?.iter().find(|r| r["site"] == site).map(|r| r["filter"].clone())
}

async fn register(u: &Up, token: &str, body: &Value) -> (u16, Value) {
    let r = crate::http()
        .post(format!("{}/v1/agents/register", u.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("register");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_site_is_pending_until_the_operator_approves_it() {
    let u = up("approve", &["--max-cores-per-provider", "20002"]).await;
    until_sites(&u, &["local"]).await;
    let sites = get(&u.url, &u.operator, "/v1/sites").await;
    let local = sites["sites"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "local")).cloned();
    let local = local.unwrap_or_else(|| panic!("local listed: {sites}"));
    assert_eq!((local["approval"].as_str(), local["owner_role"].as_str()), (Some("approved"), Some("operator")));

    let provider = provider_token(&u);
    let (st, r) = register(&u, &provider, &site("acme-dc", 2)).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("pending")), "{r}");
    // the hostile tester's cheap site: 20,000 cores at the lowest price the band allows (price 0
    // is refused); pending, the unmodified rendering example does not go there
    let (lo, _) = suanwang_core::Network::reference().expect("reference").price_band("generic-x86_64").expect("band");
    let mut render = site("acme-render", 20_000);
    render["site"]["pools"][0]["price_fen_per_unit_hour"] = json!(lo);
    render["site"]["pools"][0]["memory_gib_per_unit"] = json!(4);
    render["detected"]["memory_mib"] = json!(20_000 * 4 * 1024);
    let (st, r) = register(&u, &provider, &render).await;
    assert_eq!((st, r["approval"].as_str()), (200, Some("pending")), "{r}");
    let rendering = crate::repo("examples/rendering.toml");
    let plan = |u: &Up| {
        let out = cli(u, &u.tenant, &["plan", &rendering, "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|_| panic!("plan: {out:?}"))
    };
    let before = plan(&u);
    assert_ne!(before["placement"]["chosen"]["site"], "acme-render", "{before}");
    assert_eq!(refusal(&before, "acme-render"), Some(json!("unavailable")), "{before}");
    // the cap flag of `up` holds: 2 + 20,000 + 1 cores is more than 20,002
    let (st, r) = register(&u, &provider, &site("acme-more", 1)).await;
    assert_eq!((st, r["code"].as_str()), (422, Some("over_cap")), "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("--max-cores-per-provider")), "{r}");

    let out = cli(&u, &u.tenant, &["sites"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("acme-dc ")).unwrap_or_else(|| panic!("acme-dc listed: {text}"));
    assert!(line.contains("pending") && line.contains("owner acme"), "{line}");

    let out = cli(&u, &u.tenant, &["site", "approve", "acme-dc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error 403") && err.contains("a tenant may not approve sites"), "{err}");
    let out = cli(&u, &u.operator, &["site", "approve", "acme-dc", "--owner", "Not An Id"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--owner"), "{out:?}");

    approve(&u, "acme-dc");
    let out = cli(&u, &u.operator, &["sites", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let dc = v["sites"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "acme-dc")).cloned();
    assert_eq!(dc.map(|d| (d["approval"].clone(), d["owner"].clone())), Some((json!("approved"), json!("acme"))));
    approve(&u, "acme-render");
    let after = plan(&u);
    assert_eq!(refusal(&after, "acme-render"), None, "approved, the site is considered: {after}");
}
