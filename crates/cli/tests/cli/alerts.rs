//! Early warning against the real thing (issue 15 item 2): the exported rules pass `promtool
//! check rules` and `/metrics` passes `promtool check metrics`; Debian's Prometheus scrapes
//! `/metrics`, loads the exported rules and fires the same alerts as the control plane; Debian's
//! Alertmanager receives them through `--alertmanager`. A malformed rules file or receiver URL
//! is refused at start, naming the line or the flag.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agents::{Proc, free_port, up};
use crate::{http, suanwang};

/// Debian's binaries, or `None` (the test skips, unless the test script installed them and
/// set SUANWANG_REQUIRE_PROMETHEUS: then it fails).
fn tools() -> Option<()> {
    let found = ["prometheus", "promtool", "prometheus-alertmanager"].iter().all(|b| {
        Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    });
    if found {
        return Some(());
    }
    assert!(
        std::env::var_os("SUANWANG_REQUIRE_PROMETHEUS").is_none(),
        "SUANWANG_REQUIRE_PROMETHEUS is set but prometheus, promtool or prometheus-alertmanager is missing"
    );
    eprintln!(
        "skipped: Debian's prometheus and prometheus-alertmanager are not installed (scripts/test.sh installs them as root)"
    );
    None
}

fn start(cmd: &str, args: &[&str], log: &std::path::Path) -> Proc {
    let out = std::fs::File::create(log).expect("log");
    let err = out.try_clone().expect("log");
    Proc(Command::new(cmd).args(args).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("{cmd}: {e}")))
}

async fn until<T>(what: &str, log: &std::path::Path, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        if let Some(x) = f().await {
            return x;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; {}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn json(url: &str) -> Option<Value> {
    http().get(url).send().await.ok()?.json().await.ok()
}

/// (alertname, site) of the alerts in `list` whose state is `state` (Prometheus: `state`;
/// Alertmanager: `status.state` = active).
fn pairs(list: &[Value], name: &str) -> BTreeSet<String> {
    list.iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .filter_map(|a| a["labels"]["site"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_loads_the_exported_rules_and_alertmanager_receives_the_alerts() {
    if tools().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("suanwang-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    // the rules as a Prometheus rules file: promtool accepts it
    let rules = suanwang(&["alerts", "rules", "--prometheus", "--interval", "1s"]);
    assert!(rules.status.success(), "{}", String::from_utf8_lossy(&rules.stderr));
    let rules_file = dir.join("rules.yml");
    std::fs::write(&rules_file, &rules.stdout).expect("write");
    let check = Command::new("promtool").args(["check", "rules"]).arg(&rules_file).output().expect("promtool");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // an Alertmanager (Debian's 0.25) that routes everything to a receiver with no integration
    let am_port = free_port();
    let am_url = format!("http://127.0.0.1:{am_port}");
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: keep\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: keep\n",
    )
    .expect("write");
    let am_log = dir.join("am.log");
    let _am = start(
        "prometheus-alertmanager",
        &[
            &format!("--config.file={}", dir.join("am.yml").display()),
            &format!("--storage.path={}", dir.join("am-data").display()),
            &format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=",
        ],
        &am_log,
    );
    until("the Alertmanager to be ready", &am_log, async || {
        http().get(format!("{am_url}/-/ready")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    let u = up("prom", &["--no-local-agent", "--alertmanager", &am_url]).await;
    // a failed authentication: its counter per address is a series from now on
    let bad = http().get(format!("{}/v1/alerts", u.url)).bearer_auth("not-a-token").send().await.expect("get");
    assert_eq!(bad.status(), 401);
    // /metrics follows the exposition format's conventions
    let metrics = http().get(format!("{}/metrics", u.url)).send().await.expect("metrics").bytes().await.expect("body");
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), &metrics).expect("pipe");
    let lint = lint.wait_with_output().expect("promtool");
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    // a Prometheus (Debian's 2.42) that scrapes /metrics every second and evaluates the rules
    let p_port = free_port();
    let p_url = format!("http://127.0.0.1:{p_port}");
    let target = u.url.trim_start_matches("http://").to_string();
    std::fs::write(
        dir.join("prom.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\nscrape_configs:\n  - job_name: suanwang\n    static_configs:\n      - targets: ['{target}']\n",
            rules_file.display()
        ),
    )
    .expect("write");
    let p_log = dir.join("prom.log");
    let _prom = start(
        "prometheus",
        &[
            &format!("--config.file={}", dir.join("prom.yml").display()),
            &format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            &format!("--web.listen-address=127.0.0.1:{p_port}"),
        ],
        &p_log,
    );
    // the control plane's own judgement: the sites above their PUE target
    let ours: Value = crate::http()
        .get(format!("{}/v1/alerts?state=firing", u.url))
        .bearer_auth(&u.operator)
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let ours = pairs(ours["alerts"].as_array().expect("list"), "SitePueAboveTarget");
    assert!(!ours.is_empty(), "the reference network has sites above 1.3");
    // Prometheus loaded every rule and fires the same alerts
    let loaded = until("Prometheus to load the rules", &p_log, async || {
        let v = json(&format!("{p_url}/api/v1/rules")).await?;
        let rules = v["data"]["groups"][0]["rules"].as_array()?.clone();
        (!rules.is_empty()).then_some(rules)
    })
    .await;
    assert_eq!(loaded.len(), suanwang_alerts::default_rules().expect("rules").len());
    assert!(loaded.iter().all(|r| r["health"] != "err"), "{loaded:?}");
    let theirs = until("Prometheus to fire SitePueAboveTarget", &p_log, async || {
        let v = json(&format!("{p_url}/api/v1/alerts")).await?;
        let firing: Vec<Value> =
            v["data"]["alerts"].as_array()?.iter().filter(|a| a["state"] == "firing").cloned().collect();
        let p = pairs(&firing, "SitePueAboveTarget");
        (p.len() == ours.len()).then_some(p)
    })
    .await;
    assert_eq!(
        theirs, ours,
        "Prometheus, reading /metrics with the exported rules, fires what the control plane fires"
    );
    // every query of the Grafana dashboard (docs/grafana) is valid PromQL over series that exist
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::repo("docs/grafana/suanwang.json")).expect("dashboard"))
            .expect("dashboard JSON");
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            until(expr, &p_log, async || {
                let q = reqwest::Url::parse_with_params(&format!("{p_url}/api/v1/query"), [("query", expr)]).ok()?;
                let r = http().get(q).send().await.ok()?;
                let v: Value = r.json().await.ok()?;
                assert_eq!(v["status"], "success", "{}: {expr}: {v}", panel["title"]);
                // rates need two scrapes: wait until the query has data
                v["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|_| ())
            })
            .await;
        }
    }
    // the Alertmanager received the control plane's alerts through its API
    let received = until("the Alertmanager to hold the alerts", &am_log, async || {
        let v = json(&format!("{am_url}/api/v2/alerts")).await?;
        let p = pairs(v.as_array()?, "SitePueAboveTarget");
        (p.len() == ours.len()).then_some(p)
    })
    .await;
    assert_eq!(received, ours);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_rules_file_or_receiver_is_refused_at_start_naming_the_line_or_the_flag() {
    let dir = std::env::temp_dir().join(format!("suanwang-badrules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bad = dir.join("rules.toml");
    std::fs::write(&bad, "[[rule]]\nname = \"Hot\"\nindicator = \"suanwang_site_utilization\"\nwhen = \"above 0.9\"\nseverity = \"warning\"\nsummary = \"hot\"\n").expect("write");
    let db = dir.join("db").display().to_string();
    let bad_s = bad.display().to_string();
    for args in [
        vec!["serve", "--db", &db, "--listen", "127.0.0.1:0", "--alert-rules", &bad_s],
        vec!["alerts", "rules", "--file", &bad_s],
    ] {
        let out = suanwang(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("line 4") && err.contains("when \"above 0.9\""), "{args:?}: {err}");
    }
    for (flag, url) in [("--webhook", "ftp://example.com/hook"), ("--alertmanager", "not a url")] {
        let out = suanwang(&["serve", "--db", &db, "--listen", "127.0.0.1:0", flag, url]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{err}");
    }
    assert!(!dir.join("db").exists(), "nothing was created before the refusal");
    let _ = std::fs::remove_dir_all(&dir);
}
