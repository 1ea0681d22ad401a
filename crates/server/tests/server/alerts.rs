//! Early warning over real HTTP (issue 15, R7): an agent that stops polling raises AgentSilent
//! and SiteLost; each transition reaches `/v1/alerts`, the server-sent events of `/v1/events`
//! (resumable with `Last-Event-ID`) and a webhook that fails first and is retried, while a
//! webhook that never answers holds nothing up; the site's return resolves them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use suanwang_server::alerting::Delivery;
use suanwang_server::auth::Role;
use suanwang_server::{ServerConfig, create_token};

use crate::{call, http, spec, sqlite, start_with};

const RULES: &str = r#"
[[rule]]
name = "SiteLost"
indicator = "suanwang_site_up"
when = "< 1"
severity = "critical"
summary = "Site {site} is lost"

[[rule]]
name = "AgentSilent"
indicator = "suanwang_agent_silence_seconds"
when = "> 0.5"
for = "1s"
severity = "warning"
summary = "{site} silent for {value} s"
"#;

/// Posts a receiver got: when (ms since the epoch) and the body.
type Received = Arc<Mutex<Vec<(i64, Value)>>>;

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis())
        .expect("ms")
}

/// A webhook receiver that answers 500 to its first `fail_first` posts, then 200.
async fn receiver(fail_first: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let seen = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let seen = Arc::clone(&seen);
            async move {
                let mut g = seen.lock().expect("lock");
                g.push((now_ms(), v));
                if g.len() <= fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

/// A receiver that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((c, _)) = listener.accept().await {
            held.push(c);
        }
    });
    url
}

/// Events of `/v1/events` as they arrive: (arrival ms, id, event, data).
type Events = Arc<Mutex<Vec<(i64, u64, String, Value)>>>;

fn follow(url: &str, token: &str, last: Option<u64>) -> Events {
    let got: Events = Arc::default();
    let out = Arc::clone(&got);
    let mut req = http().get(format!("{url}/v1/events")).bearer_auth(token);
    if let Some(id) = last {
        req = req.header("last-event-id", id.to_string());
    }
    tokio::spawn(async move {
        let mut res = req.send().await.expect("stream");
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut buf = String::new();
        let (mut id, mut kind, mut data) = (0u64, String::new(), String::new());
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(nl) = buf.find('\n') {
                let line = buf[..nl].to_string();
                buf.drain(..=nl);
                if line.is_empty() {
                    if !kind.is_empty() {
                        let v: Value = serde_json::from_str(&data).expect("data is JSON");
                        out.lock().expect("lock").push((now_ms(), id, kind.clone(), v));
                    }
                    (kind, data) = (String::new(), String::new());
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().expect("numeric id");
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
        }
    });
    got
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(x) = f().await {
            return x;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alert_events(ev: &Events, name: &str, state: &str) -> Vec<(i64, u64, Value)> {
    ev.lock()
        .expect("lock")
        .iter()
        .filter(|(_, _, k, d)| {
            k == "alert" && d["record"]["body"]["name"] == name && d["record"]["body"]["state"] == state
        })
        .map(|(t, id, _, d)| (*t, *id, d.clone()))
        .collect()
}

#[tokio::test]
async fn a_silent_agent_raises_alerts_that_reach_the_api_the_event_stream_and_a_retried_webhook() {
    let store = sqlite("alerts").await;
    let (hook, received) = receiver(1).await;
    let cfg = ServerConfig {
        agent_timeout: Duration::from_secs(2),
        alert_rules: suanwang_alerts::rules::parse(RULES, None).expect("rules"),
        delivery: Delivery {
            webhooks: vec![hook, black_hole().await],
            alertmanager: None,
            external_url: "http://cp".into(),
        },
        ..ServerConfig::default()
    };
    let server = start_with(store.clone(), cfg).await;
    let url = server.url.clone();
    let op = create_token(&store, Role::Operator, "ops").await.expect("token");
    let acme = create_token(&store, Role::Tenant, "acme").await.expect("token");
    let events = follow(&url, &op, None);
    let site = json!({"site": {"id": "al-a", "city": "beijing", "pue": 1.2, "pools": [
        {"name": "cpu", "model": "generic-x86_64", "count": 2, "memory_gib_per_unit": 1, "power_w_per_unit": 10.0, "price_fen_per_unit_hour": 30}
    ]}, "detected": {"cores": 2, "memory_mib": 4096}});
    let register = async || {
        let (st, r) =
            call(&url, "POST", "/v1/agents/register", Some(&op), Some(serde_json::to_vec(&site).expect("json")), None)
                .await;
        assert_eq!(st, 200, "{r}");
    };
    register().await;
    let (st, _) = call(&url, "GET", "/v1/agents/al-a/assignments?wait_ms=0", Some(&op), None, None).await;
    assert_eq!(st, 200);
    // the agent falls silent: pending, then firing after 1 s; the site is lost after 2 s
    let lost = until("SiteLost firing in /v1/alerts", async || {
        let (_, l) = call(&url, "GET", "/v1/alerts?state=firing", Some(&op), None, None).await;
        l["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "SiteLost" && x["labels"]["site"] == "al-a").cloned())
    })
    .await;
    assert_eq!(lost["severity"], "critical");
    assert_eq!(lost["annotations"]["summary"], "Site al-a is lost");
    let fired_at = lost["fired_at_ms"].as_i64().expect("fired");
    let (_, all) = call(&url, "GET", "/v1/alerts", Some(&op), None, None).await;
    let silent = all["alerts"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == "AgentSilent")
        .cloned()
        .expect("AgentSilent");
    assert_eq!(silent["state"], "firing", "{silent}");
    assert!(
        silent["fired_at_ms"].as_i64() >= Some(silent["active_at_ms"].as_i64().expect("active") + 1_000),
        "held 1 s: {silent}"
    );
    // a tenant sees no alert of the operator's sites
    let (st, theirs) = call(&url, "GET", "/v1/alerts", Some(&acme), None, None).await;
    assert_eq!(st, 200);
    assert_eq!(theirs["alerts"], json!([]), "{theirs}");
    // the event stream carried the transition; the webhook got it after one retry
    let (sse_at, firing_id, _) =
        until("SiteLost in /v1/events", async || alert_events(&events, "SiteLost", "firing").first().cloned()).await;
    let hook_at = until("SiteLost at the webhook", async || {
        let g = received.lock().expect("lock");
        g.iter()
            .find(|(_, v)| {
                v["alerts"].as_array().is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == "SiteLost"))
            })
            .map(|(t, _)| *t)
    })
    .await;
    // the first post was answered 500 and is sent again after its backoff (0.5 s)
    let (first, second) = until("the failed post's retry", async || {
        let g = received.lock().expect("lock");
        (g.len() >= 2).then(|| (g[0].1.clone(), g[1].1.clone()))
    })
    .await;
    assert_eq!(first["version"], "4", "Alertmanager's webhook payload: {first}");
    assert_eq!(first["alerts"], second["alerts"], "the failed post was retried as it was");
    println!("alert latency after its hold: event stream {} ms, webhook {} ms", sse_at - fired_at, hook_at - fired_at);
    assert!(sse_at - fired_at <= 2_000, "the event stream got the alert {} ms after it fired", sse_at - fired_at);
    // a receiver that never answers holds nothing up: a submission is answered at once
    let asked = Instant::now();
    let (st, j) = call(&url, "POST", "/v1/jobs", Some(&acme), Some(spec("acme", "while-alerting")), None).await;
    assert_eq!(st, 201, "{j}");
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
    let metrics = http().get(format!("{url}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("suanwang_site_up{site=\"al-a\"} 0"), "the indicator is on /metrics");
    let retries: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("suanwang_alert_notification_retries_total "))
        .and_then(|v| v.parse().ok())
        .expect("retries counted");
    assert!(retries >= 1, "{retries}");

    // the agent comes back: SiteLost resolves, on the stream and at the webhook
    register().await;
    let (st, _) = call(&url, "GET", "/v1/agents/al-a/assignments?wait_ms=0", Some(&op), None, None).await;
    assert_eq!(st, 200);
    until("SiteLost resolved in /v1/events", async || alert_events(&events, "SiteLost", "resolved").first().cloned())
        .await;
    until("a resolved notification", async || {
        let g = received.lock().expect("lock");
        g.iter()
            .any(|(_, v)| v["status"] == "resolved" && v["alerts"][0]["labels"]["alertname"] == "SiteLost")
            .then_some(())
    })
    .await;
    let (_, resolved) = call(&url, "GET", "/v1/alerts?state=resolved", Some(&op), None, None).await;
    assert!(resolved["alerts"].as_array().expect("list").iter().any(|a| a["name"] == "SiteLost"), "{resolved}");

    // a client that resumes after the firing event gets what followed, in order, no earlier
    let resumed = follow(&url, &op, Some(firing_id));
    until("the resumed stream to reach the resolution", async || {
        alert_events(&resumed, "SiteLost", "resolved").first().cloned()
    })
    .await;
    let ids: Vec<u64> = resumed.lock().expect("lock").iter().map(|(_, id, _, _)| *id).collect();
    assert!(ids.first().is_some_and(|f| *f > firing_id), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, once each: {ids:?}");
    // a tenant's stream carries its own records only
    let mine = follow(&url, &acme, Some(0));
    until("the tenant's stream", async || (!mine.lock().expect("lock").is_empty()).then_some(())).await;
    for (_, _, kind, d) in mine.lock().expect("lock").iter() {
        assert_eq!(d["tenant"], "acme", "{kind}: {d}");
    }
    // bad resumption ids are refused naming the header
    let res =
        http().get(format!("{url}/v1/events")).bearer_auth(&op).header("last-event-id", "x").send().await.expect("get");
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.expect("json");
    assert_eq!(e["field"], "Last-Event-ID");
}

/// Alerts about money and links go to whom they concern (R7): a funder sees its programme's
/// budget alert and not another funder's; a carrier sees its links' alerts and not the other
/// carrier's; the regulator sees all; a tenant sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funders_and_carriers_see_the_alerts_about_what_they_fund_and_carry() {
    let store = sqlite("alerts-parties").await;
    let rules = r#"
[[rule]]
name = "VoucherBudgetNearlySpent"
indicator = "suanwang_voucher_budget_used_ratio"
when = "> 0.9"
severity = "warning"
summary = "{programme} used {value}"

[[rule]]
name = "LinkWatched"
indicator = "suanwang_link_transfer_bytes"
when = ">= 0"
severity = "info"
summary = "{link}"
"#;
    let cfg = ServerConfig {
        alert_rules: suanwang_alerts::rules::parse(rules, None).expect("rules"),
        ..ServerConfig::default()
    };
    let server = start_with(store.clone(), cfg).await;
    let url = server.url.clone();
    let token = async |role, name: &str| create_token(&store, role, name).await.expect("token");
    let (sichuan, beijing, reg, acme) = (
        token(Role::Funder, "sichuan").await,
        token(Role::Funder, "beijing").await,
        token(Role::Regulator, "reg").await,
        token(Role::Tenant, "acme").await,
    );
    let (backbone, access) =
        (token(Role::Carrier, "carrier-backbone").await, token(Role::Carrier, "carrier-access").await);
    let now = suanwang_server::actor::wall_now().0;
    for (funder, id, granted) in [(&sichuan, "sc-near", 950), (&beijing, "bj-far", 100)] {
        let p = json!({"id": id, "kind": "compute", "budget_fen": 1_000, "rate_bp": 3000,
            "cap_per_beneficiary_fen": 1_000, "valid_from_ms": now - 1000, "valid_to_ms": now + 86_400_000});
        let (st, e) = call(
            &url,
            "POST",
            "/v1/vouchers/programmes",
            Some(funder),
            Some(serde_json::to_vec(&p).expect("json")),
            None,
        )
        .await;
        assert_eq!(st, 201, "{e}");
        let g = json!({"programme": id, "tenant": "acme", "amount_fen": granted});
        let (st, e) =
            call(&url, "POST", "/v1/vouchers/grants", Some(funder), Some(serde_json::to_vec(&g).expect("json")), None)
                .await;
        assert_eq!(st, 201, "{e}");
    }
    let names = async |t: &str| -> Vec<(String, String)> {
        let (st, l) = call(&url, "GET", "/v1/alerts?state=firing", Some(t), None, None).await;
        assert_eq!(st, 200, "{l}");
        let key = |a: &Value| {
            let label = a["labels"]["programme"].as_str().or(a["labels"]["link"].as_str()).unwrap_or("").to_string();
            (a["name"].as_str().unwrap_or("").to_string(), label)
        };
        l["alerts"].as_array().expect("list").iter().map(key).collect()
    };
    let near = ("VoucherBudgetNearlySpent".to_string(), "sc-near".to_string());
    let all = until("the budget alert", async || {
        let all = names(&reg).await;
        all.contains(&near).then_some(all)
    })
    .await;
    assert!(!all.iter().any(|(_, p)| p == "bj-far"), "10 % used is not near: {all:?}");
    assert_eq!(names(&sichuan).await.iter().filter(|(n, _)| n.starts_with("Voucher")).collect::<Vec<_>>(), [&near]);
    assert_eq!(names(&beijing).await, [], "not its programme, not its links");
    assert_eq!(names(&acme).await, [], "a tenant sees no programme's or link's alert");
    // every link is watched: each carrier sees exactly its own links', together all of them
    let net = suanwang_core::network::Network::reference().expect("network");
    let carried = |kind_is_access: bool| -> Vec<(String, String)> {
        let mut v: Vec<_> = net
            .links
            .iter()
            .filter(|l| (l.kind == suanwang_core::network::LinkKind::Access) == kind_is_access)
            .map(|l| ("LinkWatched".to_string(), format!("{}~{}", l.a, l.b)))
            .collect();
        v.sort();
        v
    };
    let seen = async |t: &str| {
        let mut v: Vec<_> = names(t).await.into_iter().filter(|(n, _)| n == "LinkWatched").collect();
        v.sort();
        v
    };
    let (b, a) = (seen(&backbone).await, seen(&access).await);
    assert!(!b.is_empty() && !a.is_empty(), "both kinds of link exist");
    assert_eq!((b, a), (carried(false), carried(true)));
}
