//! Client commands against a running control plane: `submit`, `jobs`, `job ID`, `cancel ID`,
//! `plan FILE --server`, `sites`, and `bench submit`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Client {
    pub server: String,
    pub token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: Option<String>, token: Option<String>, tls: &crate::http::ClientTls) -> Result<Client> {
        let server = server.context("no server: pass --server URL or set SUANWANG_SERVER")?;
        let token =
            token.context("no token: pass --token T or set SUANWANG_TOKEN (see suanwang-data/credentials.json)")?;
        let http =
            crate::http::builder(tls)?.pool_max_idle_per_host(256).build().context("building the HTTP client")?;
        Ok(Client { server: server.trim_end_matches('/').to_string(), token, http })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.server)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let res = req.send().await.with_context(|| format!("calling {}{path}", self.server))?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }
}

/// A spec file (TOML or JSON) as the JSON body the API takes.
pub fn spec_json(file: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        return Ok(text.into_bytes());
    }
    let value: toml::Value = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    Ok(serde_json::to_vec(&value)?)
}

fn print_error(status: u16, v: &Value) -> ExitCode {
    eprintln!("error {status}: {}", v["message"].as_str().unwrap_or("request failed"));
    for key in ["detail", "hint", "field"] {
        if let Some(s) = v[key].as_str().filter(|s| !s.is_empty()) {
            eprintln!("  {key}: {s}");
        }
    }
    ExitCode::from(if status < 500 { 1 } else { 2 })
}

fn line(j: &Value) -> String {
    format!(
        "{:>8}  {:<11} {:<14} {:<28} {:<22} {}",
        j["id"],
        j["state"].as_str().unwrap_or(""),
        j["tenant"].as_str().unwrap_or(""),
        j["name"].as_str().unwrap_or(""),
        j["site"].as_str().unwrap_or("-"),
        j["reason"].as_str().unwrap_or("")
    )
}

pub async fn submit(c: &Client, file: &Path, key: Option<&str>, json_out: bool) -> Result<ExitCode> {
    let (status, v) = c.call(reqwest::Method::POST, "/v1/jobs", Some(spec_json(file)?), key).await?;
    if status >= 300 {
        return Ok(print_error(status, &v));
    }
    if json_out {
        println!("{v}");
    } else {
        println!("job {} {} (site {})", v["id"], v["state"].as_str().unwrap_or(""), v["site"].as_str().unwrap_or("-"));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn jobs(c: &Client, state: Option<&str>, json_out: bool) -> Result<ExitCode> {
    let mut after = 0u64;
    let mut all = vec![];
    loop {
        let path = match state {
            Some(s) => format!("/v1/jobs?limit=1000&after={after}&state={s}"),
            None => format!("/v1/jobs?limit=1000&after={after}"),
        };
        let (status, v) = c.call(reqwest::Method::GET, &path, None, None).await?;
        if status >= 300 {
            return Ok(print_error(status, &v));
        }
        all.extend(v["jobs"].as_array().cloned().unwrap_or_default());
        match v["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    if json_out {
        println!("{}", json!({"jobs": all}));
    } else {
        println!("{:>8}  {:<11} {:<14} {:<28} {:<22} REASON", "ID", "STATE", "TENANT", "NAME", "SITE");
        for j in &all {
            println!("{}", line(j));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn job(c: &Client, id: &str, cancel: bool) -> Result<ExitCode> {
    let (method, path) = if cancel {
        (reqwest::Method::POST, format!("/v1/jobs/{id}/cancel"))
    } else {
        (reqwest::Method::GET, format!("/v1/jobs/{id}"))
    };
    let (status, v) = c.call(method, &path, None, None).await?;
    if status >= 300 {
        return Ok(print_error(status, &v));
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

pub async fn plan(c: &Client, file: &Path) -> Result<ExitCode> {
    let (status, v) = c.call(reqwest::Method::POST, "/v1/plan", Some(spec_json(file)?), None).await?;
    if status >= 300 {
        return Ok(print_error(status, &v));
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(if v["placed"] == true { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn sites(c: &Client, json_out: bool) -> Result<ExitCode> {
    let (status, v) = c.call(reqwest::Method::GET, "/v1/sites", None, None).await?;
    if status >= 300 {
        return Ok(print_error(status, &v));
    }
    if json_out {
        println!("{v}");
    } else {
        for s in v["sites"].as_array().cloned().unwrap_or_default() {
            let owner = s["owner"].as_str().map(|o| format!("  owner {o}")).unwrap_or_default();
            println!(
                "{:<22} {:<14} pools {:>2}  pue {}  {}{owner}",
                s["id"].as_str().unwrap_or(""),
                s["region"].as_str().unwrap_or(""),
                s["pools"].as_array().map_or(0, Vec::len),
                s["pue"],
                s["approval"].as_str().unwrap_or("approved"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `site approve SITE [--owner PROVIDER]` (operator token).
pub async fn approve_site(c: &Client, site: &str, owner: Option<&str>, json_out: bool) -> Result<ExitCode> {
    if suanwang_core::ident::id_problem(site).is_some() {
        bail!("{site:?} is not a site id");
    }
    if let Some(o) = owner
        && suanwang_core::ident::id_problem(o).is_some()
    {
        bail!("--owner: {o:?} is not a provider name");
    }
    let query = owner.map(|o| format!("?owner={o}")).unwrap_or_default();
    let (status, v) = c.call(reqwest::Method::POST, &format!("/v1/sites/{site}/approve{query}"), None, None).await?;
    if status >= 300 {
        return Ok(print_error(status, &v));
    }
    if json_out {
        println!("{v}");
    } else {
        println!(
            "site {} approved (owner {} {}){}",
            v["site"].as_str().unwrap_or(site),
            v["owner_role"].as_str().unwrap_or(""),
            v["owner"].as_str().unwrap_or(""),
            if v["suspended"] == true { "; it stays suspended until resumed" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `bench submit`: `clients` tasks submit `jobs` specs as fast as acknowledged, each with its
/// own idempotency key; reports acknowledged submissions per second and latency.
pub async fn bench_submit(c: Client, clients: usize, jobs: usize, tenant: &str, json_out: bool) -> Result<()> {
    if clients == 0 || jobs == 0 {
        bail!("--clients and --jobs must be positive");
    }
    let spec = serde_json::to_vec(&json!({
        "name": "bench", "tenant": tenant, "kind": "batch", "origin": "beijing",
        "resources": {"family": "general", "count": 4}, "work": {"run_time_s": 600}
    }))?;
    let c = Arc::new(c);
    let spec = Arc::new(spec);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run =
        format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    let started = Instant::now();
    let mut tasks = vec![];
    for _ in 0..clients {
        let (c, spec, next, run) = (Arc::clone(&c), Arc::clone(&spec), Arc::clone(&next), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                let t = Instant::now();
                let key = format!("bench-{run}-{i}");
                match c.call(reqwest::Method::POST, "/v1/jobs", Some(spec.to_vec()), Some(&key)).await {
                    Ok((201 | 200, _)) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = vec![];
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0);
    let doc = json!({
        "server": c.server, "clients": clients, "jobs": jobs, "accepted": lat.len(), "errors": errors, "wall_s": wall,
        "accepted_per_sec": (lat.len() as f64 / wall).round(), "p50_ms": (pct(0.5) * 100.0).round() / 100.0, "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
    });
    if json_out {
        println!("{doc}");
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

pub async fn logs(c: &Client, id: &str) -> Result<ExitCode> {
    let (status, v) = c.call(reqwest::Method::GET, &format!("/v1/jobs/{id}/logs"), None, None).await?;
    if status >= 300 {
        return Ok(print_error(status, &v));
    }
    print!("{}", v["stdout"].as_str().unwrap_or(""));
    eprint!("{}", v["stderr"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}
