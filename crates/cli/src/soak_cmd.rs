//! `suanwang bench soak`: submissions at a fixed rate for some minutes while lists and single
//! jobs are read, then a restart in place — the long-run figures of issue 11 (R7): accepted,
//! errors, latency, the server's resident memory before and after, and how long a restart takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::remote::Client;

/// One call: the status and the answer as JSON (or as a JSON string when it is not JSON).
async fn call(
    c: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
    key: Option<&str>,
) -> Result<(u16, Value)> {
    let (status, bytes) = c.send(method, path, body, key).await?;
    let v =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, v))
}

#[derive(Debug, Clone)]
pub struct SoakArgs {
    pub minutes: f64,
    /// Submissions per second.
    pub rate: u64,
    pub clients: usize,
    pub tenant: String,
    /// Skip the final restart.
    pub no_restart: bool,
    pub json: bool,
}

/// The server's resident memory in MiB, from its `/metrics`.
async fn rss_mib(c: &Client) -> Result<f64> {
    let (status, v) = call(c, reqwest::Method::GET, "/metrics", None, None).await?;
    let text = v.as_str().context("/metrics is not text")?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|x| x.trim().parse().ok())
        .context("/metrics has no process_resident_memory_bytes (a server on another OS, or too old)")?;
    Ok((bytes / 1_048_576.0 * 10.0).round() / 10.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let v = sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0);
    (v * 100.0).round() / 100.0
}

/// A job that starts at once (inference is not deferred) and runs for a second.
fn quick_spec(tenant: &str) -> Vec<u8> {
    json!({
        "name": "soak", "tenant": tenant, "kind": "inference", "origin": "beijing",
        "resources": {"family": "general", "count": 1}, "work": {"run_time_s": 1}
    })
    .to_string()
    .into_bytes()
}

pub async fn soak(c: Client, args: SoakArgs) -> Result<()> {
    if !(args.minutes.is_finite() && args.minutes > 0.0) {
        bail!("--minutes must be a positive number of minutes");
    }
    if args.rate == 0 || args.clients == 0 {
        bail!("--rate and --clients must be positive");
    }
    let rss_start = rss_mib(&c).await?;
    let c = Arc::new(c);
    let spec = Arc::new(quick_spec(&args.tenant));
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let issued = Arc::new(AtomicUsize::new(0));
    let last_id = Arc::new(AtomicU64::new(0));
    let progress = !args.json;
    // submitters: the i-th submission is due at start + i / rate
    let mut submitters = vec![];
    for _ in 0..args.clients {
        let (c, spec, issued, run, last_id) =
            (Arc::clone(&c), Arc::clone(&spec), Arc::clone(&issued), run.clone(), Arc::clone(&last_id));
        let rate = args.rate as f64;
        submitters.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (vec![], 0usize);
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                let due = Duration::from_secs_f64(i as f64 / rate);
                if due >= duration {
                    break;
                }
                tokio::time::sleep_until((started + due).into()).await;
                let t = Instant::now();
                let key = format!("soak-{run}-{i}");
                match call(&c, reqwest::Method::POST, "/v1/jobs", Some(spec.to_vec()), Some(&key)).await {
                    Ok((201 | 200, v)) => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        if let Some(id) = v["id"].as_u64() {
                            last_id.fetch_max(id, Ordering::Relaxed);
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    // readers: a page of completed jobs and one job, each about ten times a second
    let mut readers = vec![];
    for kind in ["list", "get"] {
        let (c, last_id) = (Arc::clone(&c), Arc::clone(&last_id));
        readers.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (vec![], 0usize);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n: u64 = 0;
            while started.elapsed() < duration {
                tick.tick().await;
                n += 1;
                let path = if kind == "list" {
                    "/v1/jobs?state=completed&limit=100".to_string()
                } else {
                    // spread over every job submitted so far, old and new
                    let top = last_id.load(Ordering::Relaxed).max(1);
                    format!("/v1/jobs/{}", 1 + n.wrapping_mul(2_654_435_761) % top)
                };
                let t = Instant::now();
                match call(&c, reqwest::Method::GET, &path, None, None).await {
                    Ok((200 | 404, _)) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
            }
            (kind, lat, errors)
        }));
    }
    if progress {
        let issued = Arc::clone(&issued);
        let rate = args.rate;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            every.tick().await;
            while started.elapsed() < duration {
                every.tick().await;
                eprintln!(
                    "soak: {:.0} s, about {} submissions issued (target {rate}/s)",
                    started.elapsed().as_secs_f64(),
                    issued.load(Ordering::Relaxed).min((started.elapsed().as_secs_f64() * rate as f64) as usize)
                );
            }
        });
    }
    let (mut submit_lat, mut errors) = (vec![], 0usize);
    for t in submitters {
        let (l, e) = t.await?;
        submit_lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let mut reads: Vec<(&str, Vec<f64>)> = vec![];
    for t in readers {
        let (kind, mut l, e) = t.await?;
        errors += e;
        l.sort_by(f64::total_cmp);
        reads.push((kind, l));
    }
    let accepted = submit_lat.len();
    let mut all: Vec<f64> =
        submit_lat.iter().copied().chain(reads.iter().flat_map(|(_, l)| l.iter().copied())).collect();
    all.sort_by(f64::total_cmp);
    submit_lat.sort_by(f64::total_cmp);
    let rss_end = rss_mib(&c).await?;
    let (_, health) = call(&c, reqwest::Method::GET, "/healthz", None, None).await?;
    let mut doc = json!({
        "server": c.server, "minutes": args.minutes, "rate": args.rate, "clients": args.clients,
        "accepted": accepted, "errors": errors, "wall_s": (wall * 100.0).round() / 100.0,
        "accepted_per_sec": (accepted as f64 / wall).round(),
        "p99_ms": pct(&all, 0.99), "submit_p99_ms": pct(&submit_lat, 0.99),
        "rss_mib_start": rss_start, "rss_mib_end": rss_end,
        "jobs": health["jobs"], "live_jobs": health["live_jobs"],
    });
    for (kind, l) in &reads {
        doc[format!("{kind}_p99_ms")] = json!(pct(l, 0.99));
        doc[format!("{kind}_reads")] = json!(l.len());
    }
    if args.no_restart {
        doc["restart_s"] = Value::Null;
    } else {
        let (restart_s, rss_after) = restart(&c, &health).await?;
        doc["restart_s"] = json!(restart_s);
        doc["rss_mib_after_restart"] = json!(rss_after);
    }
    if args.json {
        println!("{doc}");
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

/// Restarts the server in place and times it until it serves again with its state rebuilt:
/// (seconds, resident MiB after).
async fn restart(c: &Client, before: &Value) -> Result<(f64, f64)> {
    let old_start = before["started_at_ms"].as_u64();
    let t = Instant::now();
    match call(c, reqwest::Method::POST, "/v1/admin/restart", None, None).await {
        Ok((202, _)) => {}
        Ok((status, v)) => bail!("POST /v1/admin/restart answered {status}: {v} (it needs an operator token)"),
        // the connection may close as the process re-executes: /healthz tells
        Err(e) => tracing::debug!(error = %e, "restart call ended without an answer"),
    }
    let deadline = t + Duration::from_mins(5);
    loop {
        if Instant::now() > deadline {
            bail!("the server did not serve again within 300 s of its restart");
        }
        if let Ok((200, h)) = call(c, reqwest::Method::GET, "/healthz", None, None).await
            && h["started_at_ms"].as_u64() != old_start
        {
            let secs = (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
            return Ok((secs, rss_mib(c).await?));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
