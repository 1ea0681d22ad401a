//! `suanwang alerts [--watch]`, `alerts rules [--prometheus]`, `alerts indicators` (issue 15,
//! R7): the alerts of early warning, live from the server-sent events of `/v1/events`; the rules
//! as text or as a Prometheus rules file; the indicators they read.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use suanwang_alerts::rules::{duration_text, number};
use suanwang_api as api;

use crate::money_cmd::get;
use crate::remote::{Client, rfc3339};

/// The rules of `file`, or the shipped ones; errors name the file and the line.
pub fn load_rules(file: Option<&Path>) -> Result<(Vec<suanwang_alerts::Rule>, String)> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading --alert-rules {}", f.display()))?;
            let origin = f.display().to_string();
            let rules = suanwang_alerts::rules::parse(&text, Some(&origin)).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((rules, origin))
        }
        None => Ok((
            suanwang_alerts::default_rules().map_err(|e| anyhow::anyhow!("{e}"))?,
            "data/alerts/rules.toml (built in)".into(),
        )),
    }
}

/// `alerts rules`: the rules as text, or (`--prometheus`) as a Prometheus rules file.
pub fn rules(file: Option<&Path>, prometheus: bool, interval: &str) -> Result<ExitCode> {
    let (rules, origin) = load_rules(file)?;
    if prometheus {
        suanwang_alerts::rules::duration_ms(interval).map_err(|e| anyhow::anyhow!("--interval {interval:?}: {e}"))?;
        print!("{}", suanwang_alerts::prom::rules_file(&rules, interval, &origin));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} rules from {origin}", rules.len());
    for r in &rules {
        println!("{:<28} {:<8} {} for {}", r.name, r.severity.as_str(), r.expr(), duration_text(r.hold_ms));
        if !r.source.is_empty() {
            println!("{:<28} source: {}", "", r.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `alerts indicators`: what the rules can read.
pub fn indicators() -> ExitCode {
    for i in suanwang_alerts::INDICATORS {
        let labels = if i.labels.is_empty() { String::new() } else { format!("{{{}}}", i.labels.join(",")) };
        println!("{}{labels}\n    {}", i.name, i.help);
    }
    ExitCode::SUCCESS
}

fn line(a: &api::AlertView) -> String {
    let state = match a.state {
        api::AlertState::Firing => "FIRING",
        api::AlertState::Pending => "pending",
        api::AlertState::Resolved => "resolved",
    };
    let since = match a.state {
        api::AlertState::Resolved => a.resolved_at_ms,
        api::AlertState::Firing => a.fired_at_ms,
        api::AlertState::Pending => Some(a.active_at_ms),
    };
    format!(
        "{state:<8} {:<8} {:<26} {}  (since {})",
        a.severity,
        a.name,
        a.annotations.get("summary").map_or("", String::as_str),
        since.map_or_else(|| "?".into(), rfc3339)
    )
}

/// `alerts`: the alerts now; `--watch` then prints each transition as the server logs it.
pub async fn alerts(c: &Client, state: Option<&str>, watch: bool, json: bool) -> Result<ExitCode> {
    let path = match state {
        Some(s) => format!("/v1/alerts?state={s}"),
        None => "/v1/alerts".into(),
    };
    let list: api::AlertList = match get(c, &path).await? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    if json && !watch {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        if list.alerts.is_empty() {
            println!("no alerts ({} rules judged, last at {})", list.rules, rfc3339(list.evaluated_at_ms));
        }
        for a in &list.alerts {
            println!("{}", line(a));
        }
    }
    if !watch {
        return Ok(ExitCode::SUCCESS);
    }
    watch_events(c, json).await
}

/// Follows `/v1/events`, printing alert transitions; reconnects with `Last-Event-ID` when the
/// stream ends (a restart of the control plane, a network failure).
async fn watch_events(c: &Client, json: bool) -> Result<ExitCode> {
    let mut last: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let mut req = c.http().get(format!("{}/v1/events", c.server)).bearer_auth(&c.token);
        if let Some(id) = &last {
            req = req.header("last-event-id", id);
        }
        let res = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status().is_client_error() => {
                bail!("{}/v1/events answered {}: {}", c.server, r.status(), r.text().await.unwrap_or_default())
            }
            Ok(r) => {
                eprintln!("{}/v1/events answered {}; retrying", c.server, r.status());
                backoff(&mut failures).await;
                continue;
            }
            Err(e) => {
                eprintln!("{}/v1/events: {e}; retrying", c.server);
                backoff(&mut failures).await;
                continue;
            }
        };
        failures = 0;
        let mut res = res;
        let mut buf = String::new();
        let (mut id, mut kind, mut data) = (None::<String>, String::new(), String::new());
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(nl) = buf.find('\n') {
                let l = buf[..nl].trim_end_matches('\r').to_string();
                buf.drain(..=nl);
                if l.is_empty() {
                    if kind == "alert" {
                        print_transition(&data, json);
                    }
                    if id.is_some() {
                        last.clone_from(&id);
                    }
                    (id, kind, data) = (None, String::new(), String::new());
                } else if let Some(v) = l.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = l.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = l.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        }
        eprintln!("the event stream ended; resuming after {}", last.as_deref().unwrap_or("the start"));
        backoff(&mut failures).await;
    }
}

async fn backoff(failures: &mut u32) {
    *failures = failures.saturating_add(1);
    let secs = 1u64 << (*failures).min(5);
    tokio::time::sleep(std::time::Duration::from_secs(secs.min(30))).await;
}

fn print_transition(data: &str, json: bool) {
    if json {
        println!("{data}");
        return;
    }
    let Ok(ev) = serde_json::from_str::<api::StreamEvent>(data) else { return };
    let b = &ev.record["body"];
    let state = b["state"].as_str().unwrap_or("?");
    if state == "inactive" {
        return;
    }
    let value = b["value"].as_f64().map(number).unwrap_or_default();
    println!(
        "{} {:<8} {:<8} {:<26} {}  (value {value})",
        rfc3339(ev.at_ms),
        if state == "firing" { "FIRING" } else { state },
        b["severity"].as_str().unwrap_or(""),
        b["name"].as_str().unwrap_or(""),
        b["annotations"]["summary"].as_str().unwrap_or("")
    );
}
