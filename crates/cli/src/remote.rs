//! Client commands against a running control plane: `submit`, `jobs`, `job ID`, `cancel ID`,
//! `plan FILE --server`, `sites`, `site approve`, `logs` and `bench submit`. Every answer is
//! read as its `suanwang_api` type.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use suanwang_api as api;

#[derive(Debug, Clone)]
pub struct Client {
    /// The first of `servers` (for messages).
    pub server: String,
    /// The control plane's instances (`--server URL1,URL2`; issue 17): any answers, a follower
    /// forwarding to the leader. A request that finds one down (or without a leader) moves on
    /// to the next.
    pub servers: Vec<String>,
    current: Arc<std::sync::atomic::AtomicUsize>,
    pub token: String,
    http: reqwest::Client,
}

/// How long a request keeps trying the instances while none answers: a takeover takes the
/// lease (3 s by default) and a second.
const FAILOVER_WINDOW: std::time::Duration = std::time::Duration::from_secs(15);

/// A server's answer: the success type, or the error body with its status.
enum Answer<T> {
    Ok(T),
    Err(u16, api::ErrorBody),
}

impl Client {
    pub fn new(server: Option<String>, token: Option<String>, tls: &crate::http::ClientTls) -> Result<Client> {
        let server = server.context("no server: pass --server URL or set SUANWANG_SERVER")?;
        let token =
            token.context("no token: pass --token T or set SUANWANG_TOKEN (see suanwang-data/credentials.json)")?;
        let http =
            crate::http::builder(tls)?.pool_max_idle_per_host(256).build().context("building the HTTP client")?;
        let servers: Vec<String> =
            server.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
        let Some(first) = servers.first().cloned() else { bail!("--server {server:?}: no URL") };
        Ok(Client { server: first, servers, current: Arc::default(), token, http })
    }

    /// The instance in use.
    pub fn base(&self) -> &str {
        &self.servers[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.servers.len()]
    }

    /// The HTTP client (for streams: `/v1/events`).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<(u16, Vec<u8>)> {
        let started = Instant::now();
        let several = self.servers.len() > 1;
        let mut attempt = 1u32;
        loop {
            let base = self.base().to_string();
            let mut req = self.http.request(method.clone(), format!("{base}{path}")).bearer_auth(&self.token);
            if let Some(b) = &body {
                req = req.header("content-type", "application/json").body(b.clone());
            }
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            // what may be sent again: nothing was received (no connection), a read, or a request
            // with an idempotency key. A 503 is not enough: a follower answers 503 when the leader
            // it forwarded to died, perhaps after applying the request.
            let idempotent = key.is_some() || method == reqwest::Method::GET;
            let why = match req.send().await {
                Ok(res) => {
                    self.follow_leader_hint(&res);
                    let status = res.status().as_u16();
                    let bytes = res.bytes().await.with_context(|| format!("reading the answer of {base}{path}"))?;
                    if status != 503 || !idempotent || !several || started.elapsed() > FAILOVER_WINDOW {
                        return Ok((status, bytes.to_vec()));
                    }
                    "answered 503 (no leader yet)".to_string()
                }
                Err(e) => {
                    let again = e.is_connect() || idempotent;
                    if !several || !again || started.elapsed() > FAILOVER_WINDOW {
                        return Err(e).with_context(|| format!("calling {base}{path}"));
                    }
                    format!("did not answer ({e})")
                }
            };
            self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            attempt += 1;
            eprintln!("note: {base} {why}; attempt {attempt} at {}", self.base());
            // once round all of them: give the takeover a moment
            if (attempt - 1).is_multiple_of(u32::try_from(self.servers.len()).unwrap_or(u32::MAX)) {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    }

    /// A follower that forwarded this answer names the leader: when it is one of the servers
    /// given, the next requests go there directly (a hop less); when it fails, on to the next.
    fn follow_leader_hint(&self, res: &reqwest::Response) {
        let Some(leader) = res.headers().get(suanwang_api::LEADER_HEADER).and_then(|v| v.to_str().ok()) else { return };
        let leader = leader.trim_end_matches('/');
        if let Some(i) = self.servers.iter().position(|s| s == leader) {
            self.current.store(i, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Calls the API and reads the answer as `T` (or as the error body).
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<Answer<T>> {
        let (status, bytes) = self.send(method, path, body, key).await?;
        Client::answer(status, &bytes, &self.server, path)
    }

    /// An answer's body: a `T` on success, else the error body.
    fn answer<T: DeserializeOwned>(status: u16, bytes: &[u8], server: &str, path: &str) -> Result<Answer<T>> {
        if status < 300 {
            let v = serde_json::from_slice(bytes).with_context(|| {
                format!(
                    "the answer of {server}{path} is not a {} ({} bytes: {})",
                    std::any::type_name::<T>().rsplit("::").next().unwrap_or("value"),
                    bytes.len(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )
            })?;
            return Ok(Answer::Ok(v));
        }
        let e = serde_json::from_slice(bytes).unwrap_or_else(|_| api::ErrorBody {
            code: format!("http_{status}"),
            message: String::from_utf8_lossy(bytes).trim().to_string(),
            detail: String::new(),
            hint: String::new(),
            field: None,
        });
        Ok(Answer::Err(status, e))
    }
}

/// A spec file (TOML or JSON) as the JSON body the API takes. TOML datetimes (`deadline =
/// 2027-01-31T00:00:00Z`, unquoted) become their RFC 3339 text.
pub fn spec_json(file: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        return Ok(text.into_bytes());
    }
    let value: toml::Value = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    Ok(serde_json::to_vec(&toml_to_json(value))?)
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

pub fn print_error(status: u16, e: &api::ErrorBody) -> ExitCode {
    eprintln!("error {status}: {}", if e.message.is_empty() { "request failed" } else { &e.message });
    for (key, s) in [("detail", &e.detail), ("hint", &e.hint)] {
        if !s.is_empty() {
            eprintln!("  {key}: {s}");
        }
    }
    if let Some(f) = e.field.as_deref().filter(|f| !f.is_empty()) {
        eprintln!("  field: {f}");
    }
    ExitCode::from(if status < 500 { 1 } else { 2 })
}

/// An instant (ms since the epoch) in RFC 3339, UTC, to the second.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| format!("{ms} ms"), |t| format!("{t:.0}"))
}

/// A duration in words: `45 s`, `12 min`, `3 h 15 min`, `2 d 4 h`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match (s % 86_400) / 3600 {
            0 => format!("{} d", s / 86_400),
            h => format!("{} d {h} h", s / 86_400),
        },
    }
}

/// Whether the scheduler may shift the job past its earliest start for a greener or cheaper
/// slot by default (`JobKind::may_wait`, the scheduler's own rule).
fn deferrable(j: &api::JobView) -> bool {
    let tier = j.spec.get("latency_tier").and_then(Value::as_str).filter(|t| *t != "none");
    suanwang_core::JobKind::parse(&j.kind).is_some_and(|k| k.may_wait(tier.is_some()))
}

/// What `submit` says: where the job goes, when it starts, and — when it waits for a better
/// slot — that it was deferred and how to ask for sooner.
pub fn submitted(j: &api::JobView) -> String {
    let mut out = format!("job {} {} (site {})", j.id, j.state, j.site.as_deref().unwrap_or("-"));
    match j.state {
        api::JobState::Refused | api::JobState::Failed => {
            if let Some(r) = &j.reason {
                let _ = write!(out, "\n  {r}");
            }
        }
        api::JobState::Placed | api::JobState::InTransfer | api::JobState::Running => {
            if let (Some(start), Some(end)) = (j.start_at, j.end_at) {
                let wait_s = (start - j.submitted_at) / 1000;
                let when = if wait_s > 0 { format!(", in {}", span(wait_s)) } else { String::new() };
                let _ = write!(out, "\n  starts {}{when}; ends {}", rfc3339(start), rfc3339(end));
                let moving = j.state == api::JobState::InTransfer;
                if moving {
                    let _ =
                        write!(out, "\n  its input data moves to {} first", j.pool.as_deref().unwrap_or("the site"));
                }
                // the spec's own bound, when it set one
                let within = j.spec.get("start_within").and_then(|v| match v {
                    serde_json::Value::String(s) => suanwang_core::time::parse_duration_s(s).ok(),
                    v => v.as_i64(),
                });
                if wait_s >= 3600 && deferrable(j) && within != Some(0) {
                    let sooner = if j.kind == "batch" || j.kind == "hpc" {
                        "set start_within = \"30m\" (or \"0s\"), or give it a latency tier (latency_tier = \
                         \"regional\") or a deadline (deadline = \"…\")"
                    } else {
                        "set start_within = \"1h\" (or \"0s\"), or give it an earlier deadline (deadline = \"…\"; it \
                         is never deferred past what the deadline allows)"
                    };
                    let bound = match within {
                        Some(s) => format!("its start_within of {}", suanwang_core::time::format_duration_s(s)),
                        None => format!("the operator's start_within for {} work (data/policy.toml)", j.kind),
                    };
                    // with data to move, the wait is partly (or wholly) the transfer: say only
                    // what is known
                    let what = if moving {
                        "it may also wait for greener or cheaper hours"
                    } else {
                        "deferred to greener or cheaper hours"
                    };
                    let _ = write!(
                        out,
                        "\n  {what}: the start may be deferred by up to {bound}.\n  To start sooner, {sooner}."
                    );
                }
            }
        }
        _ => {}
    }
    out
}

pub async fn submit(c: &Client, file: &Path, key: Option<&str>, json_out: bool) -> Result<ExitCode> {
    let spec = spec_json(file)?;
    // with several instances a submission may be sent twice: a key makes the second the same
    // job (bids take no key)
    let fresh;
    let key = match key {
        None if c.servers.len() > 1
            && !serde_json::from_slice::<Value>(&spec).is_ok_and(|v| v.get("max_price").is_some()) =>
        {
            let mut b = [0u8; 16];
            let _ = getrandom::fill(&mut b);
            fresh = format!("cli-{:032x}", u128::from_le_bytes(b));
            Some(fresh.as_str())
        }
        k => k,
    };
    let (status, bytes) = c.send(reqwest::Method::POST, "/v1/jobs", Some(spec), key).await?;
    if status == 202 {
        // a job with `max_price` became a bid (issue 16)
        let o: api::market::OrderView = serde_json::from_slice(&bytes)
            .with_context(|| format!("the answer of {}/v1/jobs is not the bid the job became", c.server))?;
        if json_out {
            println!("{}", serde_json::to_string(&o)?);
        } else {
            println!(
                "bid {} for {} units of {} at up to {} fen per unit·hour (¥{:.2} held)\n  \
                 the job runs on the contract the bid wins, once its window begins: suanwang market orders",
                o.id,
                o.units,
                o.product,
                o.price_fen,
                o.held_fen as f64 / 100.0
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let j: api::JobView = match Client::answer(status, &bytes, &c.server, "/v1/jobs")? {
        Answer::Ok(j) => j,
        Answer::Err(status, e) => return Ok(print_error(status, &e)),
    };
    if json_out {
        println!("{}", serde_json::to_string(&j)?);
    } else {
        println!("{}", submitted(&j));
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs as a table whose columns are as wide as their widest cell.
pub fn table(jobs: &[api::JobView]) -> String {
    let head = ["ID", "STATE", "TENANT", "NAME", "SITE", "START (UTC)", "REASON"];
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|j| {
            [
                j.id.to_string(),
                j.state.to_string(),
                j.tenant.clone(),
                j.name.clone(),
                j.site.clone().unwrap_or_else(|| "-".into()),
                j.start_at.map_or_else(|| "-".into(), rfc3339),
                j.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut width = head.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(cell.chars().count());
            if i == 0 {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else if i == cells.len() - 1 {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            if i + 1 < cells.len() {
                s.push_str("  ");
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(head);
    out.push('\n');
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]));
        out.push('\n');
    }
    out
}

pub async fn jobs(c: &Client, state: Option<&str>, json_out: bool) -> Result<ExitCode> {
    if let Some(s) = state
        && api::JobState::parse(s).is_none()
    {
        let all: Vec<&str> = api::JobState::ALL.iter().map(|x| x.as_str()).collect();
        bail!("--state {s:?}: not a job state; one of {}", all.join(", "));
    }
    let mut after = 0u64;
    let mut all: Vec<api::JobView> = vec![];
    loop {
        let path = match state {
            Some(s) => format!("/v1/jobs?limit=1000&after={after}&state={s}"),
            None => format!("/v1/jobs?limit=1000&after={after}"),
        };
        let page: api::JobList = match c.call(reqwest::Method::GET, &path, None, None).await? {
            Answer::Ok(p) => p,
            Answer::Err(status, e) => return Ok(print_error(status, &e)),
        };
        all.extend(page.jobs);
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    if json_out {
        println!("{}", json!({"jobs": all}));
    } else {
        print!("{}", table(&all));
    }
    Ok(ExitCode::SUCCESS)
}

/// A job as pretty JSON, with each instant also in RFC 3339 (`start_at_utc` next to
/// `start_at`; `started_at`/`ended_at` are when a run actually started and ended).
pub fn job_json(j: &api::JobView) -> Result<String> {
    let mut v = serde_json::to_value(j)?;
    if let Some(o) = v.as_object_mut() {
        for (key, at) in [
            ("submitted_at", Some(j.submitted_at)),
            ("start_at", j.start_at),
            ("end_at", j.end_at),
            ("started_at", j.started_at),
            ("ended_at", j.ended_at),
            ("updated_at", Some(j.updated_at)),
        ] {
            if let Some(ms) = at {
                o.insert(format!("{key}_utc"), Value::String(rfc3339(ms)));
            }
        }
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

pub async fn job(c: &Client, id: &str, cancel: bool) -> Result<ExitCode> {
    let (method, path) = if cancel {
        (reqwest::Method::POST, format!("/v1/jobs/{id}/cancel"))
    } else {
        (reqwest::Method::GET, format!("/v1/jobs/{id}"))
    };
    match c.call::<api::JobView>(method, &path, None, None).await? {
        Answer::Ok(j) => println!("{}", job_json(&j)?),
        Answer::Err(status, e) => return Ok(print_error(status, &e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `plan FILE` with `--server`: a dry run on the live load, shown like a local plan.
pub async fn plan(c: &Client, file: &Path, json_out: bool) -> Result<ExitCode> {
    let answer: api::PlanAnswer = match c.call(reqwest::Method::POST, "/v1/plan", Some(spec_json(file)?), None).await? {
        Answer::Ok(a) => a,
        Answer::Err(status, e) => return Ok(print_error(status, &e)),
    };
    crate::plan_cmd::print(&answer, json_out)
}

pub async fn sites(c: &Client, json_out: bool) -> Result<ExitCode> {
    let list: api::SiteList = match c.call(reqwest::Method::GET, "/v1/sites", None, None).await? {
        Answer::Ok(l) => l,
        Answer::Err(status, e) => return Ok(print_error(status, &e)),
    };
    if json_out {
        println!("{}", serde_json::to_string(&list)?);
    } else {
        for s in &list.sites {
            let owner = s.owner.as_deref().map(|o| format!("  owner {o}")).unwrap_or_default();
            println!(
                "{:<22} {:<14} pools {:>2}  pue {}  {}{owner}",
                s.site.id,
                s.site.region,
                s.site.pools.len(),
                s.site.pue,
                s.approval.as_str(),
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
    let path = format!("/v1/sites/{site}/approve{query}");
    let a: api::ApproveAnswer = match c.call(reqwest::Method::POST, &path, None, None).await? {
        Answer::Ok(a) => a,
        Answer::Err(status, e) => return Ok(print_error(status, &e)),
    };
    if json_out {
        println!("{}", serde_json::to_string(&a)?);
    } else {
        println!(
            "site {} approved (owner {} {}){}",
            a.site,
            a.owner_role,
            a.owner,
            if a.suspended { "; it stays suspended until resumed" } else { "" }
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
                match c.send(reqwest::Method::POST, "/v1/jobs", Some(spec.to_vec()), Some(&key)).await {
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
    let l: api::JobLogs = match c.call(reqwest::Method::GET, &format!("/v1/jobs/{id}/logs"), None, None).await? {
        Answer::Ok(l) => l,
        Answer::Err(status, e) => return Ok(print_error(status, &e)),
    };
    print!("{}", l.stdout);
    eprint!("{}", l.stderr);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_words() {
        for (s, want) in
            [(0, "0 s"), (59, "59 s"), (60, "1 min"), (3600, "1 h"), (11_700, "3 h 15 min"), (190_800, "2 d 5 h")]
        {
            assert_eq!(span(s), want);
        }
        assert_eq!(rfc3339(1_796_285_700_000), "2026-12-03T08:15:00Z");
    }

    fn view(kind: &str, wait_s: i64, spec: Value) -> api::JobView {
        let at = 1_796_285_700_000;
        api::JobView {
            id: 7,
            name: "x".into(),
            tenant: "acme-ai".into(),
            kind: kind.into(),
            state: api::JobState::Placed,
            site: Some("qinghai-xining".into()),
            pool: Some("qinghai-xining.cpu".into()),
            start_at: Some(at + wait_s * 1000),
            end_at: Some(at + wait_s * 1000 + 600_000),
            started_at: None,
            ended_at: None,
            submitted_at: at,
            submitted_by: "acme-ai".into(),
            updated_at: at,
            attempts: 1,
            reason: None,
            meter: None,
            usage: None,
            spec,
        }
    }

    #[test]
    fn submit_says_when_and_why_it_waits() {
        let soon = submitted(&view("batch", 300, json!({})));
        assert!(
            soon.starts_with("job 7 placed (site qinghai-xining)\n  starts 2026-12-03T08:20:00Z, in 5 min;"),
            "{soon}"
        );
        assert!(!soon.contains("deferred"), "{soon}");
        let later = submitted(&view("batch", 5 * 3600, json!({})));
        assert!(later.contains("deferred to greener or cheaper hours") && later.contains("latency_tier"), "{later}");
        assert!(
            later.contains("the operator's start_within for batch work") && later.contains("start_within = \"30m\""),
            "{later}"
        );
        let bounded = submitted(&view("training", 5 * 3600, json!({"start_within": "6h"})));
        assert!(bounded.contains("its start_within of 6h"), "{bounded}");
        let tier = submitted(&view("batch", 5 * 3600, json!({"latency_tier": "regional"})));
        assert!(!tier.contains("deferred"), "a batch job with a tier is never deferred: {tier}");
        let training = submitted(&view("training", 5 * 3600, json!({"latency_tier": "regional"})));
        assert!(training.contains("deferred") && training.contains("earlier deadline"), "{training}");
        let mut moving = view("training", 5 * 3600, json!({}));
        moving.state = api::JobState::InTransfer;
        let moving = submitted(&moving);
        assert!(moving.contains("input data moves") && moving.contains("may also wait"), "{moving}");
        assert!(!moving.contains("deferred to"), "a transfer's wait is not called a deferral: {moving}");
        let inference = submitted(&view("inference", 5 * 3600, json!({})));
        assert!(!inference.contains("deferred"), "inference is never deferred: {inference}");
    }
}
