//! Early warning in the control plane (R7): every second the indicators are measured from the
//! live state, the rules judged (`suanwang-alerts`), and each alert's transition logged through
//! the actor (a `alert` command, so it is in the evidence log) and handed to delivery — webhooks
//! and a user's Alertmanager — which runs on its own task with a bounded queue: a slow or
//! failing receiver never holds the engine or the evaluation.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use suanwang_alerts::ewma::Ewma;
use suanwang_alerts::{Alert, Evaluator, Sample, Samples, State, Transition};
use suanwang_engine::JobState;
use tokio::sync::mpsc;

use crate::Inner;
use crate::actor::Request;

/// How often the rules are judged.
pub const EVAL_EVERY: Duration = Duration::from_secs(1);
/// The window of the recent-failure counters.
const RECENT: Duration = Duration::from_mins(5);
/// The window of the link volumes.
const LINK_WINDOW_MS: i64 = 600_000;
/// The window of queue waits and latency-tier attainment.
const JOB_WINDOW_MS: i64 = 900_000;

/// Counts of events per key over the last [`RECENT`], in bounded memory: at most 4,096 keys
/// (a new key past that is not counted until old ones age out) and 10,000 instants per key
/// (beyond, the count saturates).
#[derive(Debug, Default)]
pub struct Recent {
    map: std::sync::Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Recent {
    pub fn add(&self, key: String) {
        let now = Instant::now();
        let Ok(mut m) = self.map.lock() else { return };
        if !m.contains_key(&key) && m.len() >= 4_096 {
            prune(&mut m, now);
            if m.len() >= 4_096 {
                return;
            }
        }
        let q = m.entry(key).or_default();
        if q.len() >= 10_000 {
            q.pop_front();
        }
        q.push_back(now);
    }

    /// Each key's count in the window (keys with none are forgotten).
    pub fn counts(&self) -> Vec<(String, u64)> {
        let now = Instant::now();
        let Ok(mut m) = self.map.lock() else { return vec![] };
        prune(&mut m, now);
        m.iter().map(|(k, q)| (k.clone(), q.len() as u64)).collect()
    }
}

fn prune(m: &mut HashMap<String, VecDeque<Instant>>, now: Instant) {
    for q in m.values_mut() {
        while q.front().is_some_and(|t| now.saturating_duration_since(*t) > RECENT) {
            q.pop_front();
        }
    }
    m.retain(|_, q| !q.is_empty());
}

/// GB placed to cross each link by network, recently (the actor adds, the evaluation reads).
#[derive(Debug, Default)]
pub struct LinkVolumes {
    moves: std::sync::Mutex<VecDeque<(i64, usize, f64)>>,
}

impl LinkVolumes {
    pub fn add(&self, at_ms: i64, link: usize, gb: f64) {
        if !(gb.is_finite() && gb > 0.0) {
            return;
        }
        if let Ok(mut q) = self.moves.lock() {
            if q.len() >= 1_000_000 {
                q.pop_front();
            }
            q.push_back((at_ms, link, gb));
        }
    }

    /// GB per link index over the window ending at `now_ms`.
    fn sums(&self, now_ms: i64) -> HashMap<usize, f64> {
        let mut out = HashMap::new();
        if let Ok(mut q) = self.moves.lock() {
            while q.front().is_some_and(|(at, _, _)| *at < now_ms - LINK_WINDOW_MS) {
                q.pop_front();
            }
            for (_, link, gb) in q.iter() {
                *out.entry(*link).or_insert(0.0) += gb;
            }
        }
        out
    }
}

/// Jobs' recent starts (their waits) and latency-tier decisions, as the actor commits them:
/// the evaluation reads windows, never scans every job.
#[derive(Debug, Default)]
pub struct JobWindows {
    inner: std::sync::Mutex<JobWindowsInner>,
}

#[derive(Debug, Default)]
struct JobWindowsInner {
    /// (started at, seconds waited since submission)
    waits: VecDeque<(i64, f64)>,
    /// (decided at, tier, whether a site within the tier took it)
    tiers: VecDeque<(i64, String, bool)>,
}

impl JobWindows {
    fn prune(w: &mut JobWindowsInner, now_ms: i64) {
        while w.waits.front().is_some_and(|(at, _)| *at < now_ms - JOB_WINDOW_MS) || w.waits.len() > 1_000_000 {
            w.waits.pop_front();
        }
        while w.tiers.front().is_some_and(|(at, _, _)| *at < now_ms - JOB_WINDOW_MS) || w.tiers.len() > 1_000_000 {
            w.tiers.pop_front();
        }
    }

    /// The p99 wait and, per tier, (taken, decided), over the window ending at `now_ms`.
    fn read(&self, now_ms: i64) -> (f64, BTreeMap<String, (u64, u64)>) {
        let Ok(mut w) = self.inner.lock() else { return (0.0, BTreeMap::new()) };
        Self::prune(&mut w, now_ms);
        let mut waits: Vec<f64> = w.waits.iter().map(|(_, s)| *s).collect();
        waits.sort_by(f64::total_cmp);
        let p99 = match waits.len() {
            0 => 0.0,
            n => waits[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1],
        };
        let mut tiers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (_, tier, ok) in &w.tiers {
            let e = tiers.entry(tier.clone()).or_default();
            e.0 += u64::from(*ok);
            e.1 += 1;
        }
        (p99, tiers)
    }
}

/// What the actor tells early warning of a committed batch: jobs' waits and tier decisions,
/// and the GB its placements move over each link.
pub fn observe(
    inner: &Inner,
    sched: &suanwang_sched::Scheduler,
    events: &[suanwang_engine::Event],
    staged: &crate::views::Staged,
) {
    use suanwang_engine::Event;
    use suanwang_sched::transfer::TransferMode;
    let net = sched.network();
    let Ok(mut w) = inner.job_windows.inner.lock() else { return };
    for ev in events {
        let Some(view) = crate::views::event_job(ev).and_then(|id| staged.get(&id)).map(|(_, v)| v) else { continue };
        let tier = view.spec.get("latency_tier").and_then(Value::as_str).filter(|t| *t != "none");
        match ev {
            Event::Started { at, .. } => w.waits.push_back((at.0, (at.0 - view.submitted_at.0).max(0) as f64 / 1000.0)),
            Event::Placed { at, attempt, site, mode, .. } => {
                if *attempt == 1
                    && let Some(t) = tier
                {
                    w.tiers.push_back((at.0, t.to_string(), true));
                }
                if matches!(mode, TransferMode::Network | TransferMode::Elastic | TransferMode::Bulk) {
                    let input = &view.spec["input"];
                    let gb = input.get("size_gb").and_then(Value::as_f64).unwrap_or(0.0);
                    let from = input.get("location").or_else(|| view.spec.get("origin")).and_then(Value::as_str);
                    if let (Some(from), Some(i)) = (from, net.sites.iter().position(|s| s.id == *site))
                        && let Some(link) = sched.route_link(from, i)
                    {
                        inner.link_volumes.add(at.0, link, gb);
                    }
                }
            }
            Event::Refused { at, .. } => {
                if let Some(t) = tier {
                    w.tiers.push_back((at.0, t.to_string(), false));
                }
            }
            _ => {}
        }
    }
}

/// What the handlers read: the alerts now and the samples of the last evaluation.
#[derive(Debug, Default)]
pub struct Board {
    pub alerts: Vec<Alert>,
    pub samples: Arc<Samples>,
    pub evaluated_at_ms: i64,
}

/// Where alerts go besides the log.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// URLs that receive Alertmanager's webhook payload (version 4) on every transition to
    /// firing or resolved.
    pub webhooks: Vec<String>,
    /// A user's Alertmanager (its base URL): firing and resolved alerts are posted to
    /// `/api/v2/alerts`, firing ones again every [`RESEND`] as Prometheus does.
    pub alertmanager: Option<String>,
    /// This control plane's URL, for links back (`generatorURL`, `externalURL`).
    pub external_url: String,
}

/// Firing alerts are re-sent to an Alertmanager this often (Prometheus's resend delay).
pub const RESEND: Duration = Duration::from_secs(30);

/// The series' histories the anomaly scores need.
#[derive(Default)]
struct History {
    sites: HashMap<String, Ewma>,
    links: HashMap<String, Ewma>,
}

/// Runs the evaluation every [`EVAL_EVERY`] until the actor stops.
pub async fn run(inner: Arc<Inner>, tx: mpsc::Sender<Request>, mut evaluator: Evaluator, delivery: Delivery) {
    let (out, rx) = mpsc::channel::<Vec<Alert>>(1_024);
    let has_delivery = !delivery.webhooks.is_empty() || delivery.alertmanager.is_some();
    if has_delivery {
        tokio::spawn(deliver(Arc::clone(&inner), rx, delivery));
    }
    let mut history = History::default();
    let mut every = tokio::time::interval(EVAL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now_ms = crate::actor::wall_now().0;
        let samples = measure(&inner, &mut history, now_ms);
        let transitions = evaluator.evaluate(now_ms, &samples);
        if let Ok(mut b) = inner.board.write() {
            b.alerts = evaluator.alerts();
            b.samples = Arc::new(samples);
            b.evaluated_at_ms = now_ms;
        }
        if transitions.is_empty() {
            continue;
        }
        for t in &transitions {
            tracing::info!(alert = %t.alert.name, state = t.alert.state.as_str(), labels = ?t.alert.labels, value = t.alert.value, "alert");
        }
        let notify: Vec<Alert> = transitions
            .iter()
            .filter(|t| matches!(t.alert.state, State::Firing | State::Resolved))
            .map(|t| t.alert.clone())
            .collect();
        if has_delivery && !notify.is_empty() && out.try_send(notify).is_err() {
            inner.metrics.alerts_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("alert delivery is behind: a batch of notifications was dropped");
        }
        // logged (and proved) through the actor; not awaited past the send, so a busy engine
        // delays the log entry, never the next evaluation
        let (reply, _answer) = tokio::sync::oneshot::channel();
        if tx.send(Request::Alerts { transitions, reply }).await.is_err() {
            return;
        }
    }
}

/// The log row body of a transition.
pub fn transition_body(t: &Transition) -> String {
    let tenant = t.alert.labels.get("tenant").cloned();
    let mut body = json!({
        "alert": t.alert.fingerprint,
        "name": t.alert.name,
        "from": t.from.map(State::as_str),
        "state": t.alert.state.as_str(),
        "severity": t.alert.severity,
        "labels": t.alert.labels,
        "annotations": t.alert.annotations,
        "value": finite(t.alert.value),
        "active_at_ms": t.alert.active_at_ms,
    });
    if let Some(tenant) = tenant {
        body["tenant"] = Value::String(tenant);
    }
    body.to_string()
}

fn finite(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn push(s: &mut Samples, name: &'static str, labels: &[(&str, &str)], value: f64) {
    s.entry(name).or_default().push(Sample::new(labels, value));
}

/// The indicators now.
fn site_capacity(site: &suanwang_core::network::Site) -> f64 {
    site.pools.iter().map(suanwang_core::network::Pool::capacity_ucu).sum()
}

fn measure(inner: &Inner, history: &mut History, now_ms: i64) -> Samples {
    let mut s = Samples::new();
    let net = inner.net();
    // sites: up, agent silence, utilisation (and its score), PUE
    let up = inner.site_up();
    let agents = inner.agents.lock().map(|a| a.clone()).unwrap_or_default();
    let mut running_ucu: HashMap<&str, f64> = HashMap::new();
    if let Ok(v) = inner.views.read() {
        for j in v.live.values().filter(|j| j.state == JobState::Running) {
            if let Some(site) = j.site.as_deref().and_then(|s| net.site(s)) {
                let pool = j.pool.as_deref().and_then(|p| site.pools.iter().find(|x| x.id == p));
                let units = j.spec.pointer("/resources/count").and_then(Value::as_f64).unwrap_or(0.0);
                *running_ucu.entry(site.id.as_str()).or_default() += units * pool.map_or(0.0, |p| p.ucu_per_unit);
            }
        }
    }
    let slot = now_ms.div_euclid(900_000);
    let hour = ((slot + 32).rem_euclid(96) / 4) as usize;
    let season = suanwang_sched::slots::season_of(slot);
    let mut hub_use: BTreeMap<&str, (f64, f64, f64, usize)> = BTreeMap::new();
    for (i, site) in net.sites.iter().enumerate() {
        let id = site.id.as_str();
        push(&mut s, "suanwang_site_up", &[("site", id)], if up.get(i).copied().unwrap_or(true) { 1.0 } else { 0.0 });
        if let Some(last) = agents.get(id) {
            push(&mut s, "suanwang_agent_silence_seconds", &[("site", id)], (now_ms - last).max(0) as f64 / 1000.0);
        }
        let cap = site_capacity(site);
        let used = running_ucu.get(id).copied().unwrap_or(0.0);
        let util = if cap > 0.0 { used / cap } else { 0.0 };
        let hub = site.hub.as_deref().unwrap_or("");
        push(&mut s, "suanwang_site_utilization", &[("site", id), ("hub", hub)], util);
        let z =
            history.sites.entry(site.id.clone()).or_insert_with(|| Ewma::new(1_800_000, 0.02, 30)).update(util, now_ms);
        push(&mut s, "suanwang_site_utilization_zscore", &[("site", id), ("hub", hub)], z);
        let side = site
            .hub
            .as_deref()
            .and_then(|h| net.hubs.iter().find(|x| x.id == h))
            .map_or("none", |h| if matches!(h.side, suanwang_core::network::Side::West) { "west" } else { "east" });
        push(&mut s, "suanwang_site_pue", &[("site", id), ("side", side)], site.pue);
        if let Some(h) = site.hub.as_deref() {
            let green = net.green_profile(&site.green_profile).map_or(0.0, |g| g.at(season, hour));
            let e = hub_use.entry(h).or_insert((0.0, 0.0, 0.0, 0));
            e.0 += used;
            e.1 += cap;
            e.2 += green;
            e.3 += 1;
        }
    }
    // the hubs against the national average (R2's "significantly above"): the ratio is absent
    // while nothing runs
    let (all_used, all_cap) = (running_ucu.values().sum::<f64>(), net.sites.iter().map(site_capacity).sum::<f64>());
    let (hubs_used, hubs_cap) = hub_use.values().fold((0.0, 0.0), |(u, c), h| (u + h.0, c + h.1));
    let national = if all_cap > 0.0 { all_used / all_cap } else { 0.0 };
    push(&mut s, "suanwang_network_utilization", &[], national);
    if national > 0.0 && hubs_cap > 0.0 {
        push(&mut s, "suanwang_hub_utilization_ratio", &[], hubs_used / hubs_cap / national);
    }
    for h in &net.hubs {
        let (used, cap, green, n) = hub_use.get(h.id.as_str()).copied().unwrap_or((0.0, 0.0, 0.0, 0));
        push(&mut s, "suanwang_hub_utilization", &[("hub", &h.id)], if cap > 0.0 { used / cap } else { 0.0 });
        push(&mut s, "suanwang_hub_green_share", &[("hub", &h.id)], if n > 0 { green / n as f64 } else { 0.0 });
    }
    // links: the volume placed on each, and its score
    let volumes = inner.link_volumes.sums(now_ms);
    for (i, l) in net.links.iter().enumerate() {
        let name = format!("{}~{}", l.a, l.b);
        let bytes = volumes.get(&i).copied().unwrap_or(0.0) * 1e9;
        // the score's floor: 1 GB (a link idle for hours scores a first small transfer as small)
        let z =
            history.links.entry(name.clone()).or_insert_with(|| Ewma::new(7_200_000, 1e9, 30)).update(bytes, now_ms);
        push(&mut s, "suanwang_link_transfer_bytes", &[("link", &name)], bytes);
        push(&mut s, "suanwang_link_transfer_zscore", &[("link", &name)], z);
    }
    // who failed to authenticate, who was refused
    for (source, n) in inner.recent_auth_failures.counts() {
        push(&mut s, "suanwang_auth_failures_recent", &[("source", &source)], n as f64);
    }
    for (principal, n) in inner.recent_forbidden.counts() {
        push(&mut s, "suanwang_forbidden_recent", &[("principal", &principal)], n as f64);
    }
    // jobs: waits, latency tiers
    let (p99, tiers) = inner.job_windows.read(now_ms);
    push(&mut s, "suanwang_queue_wait_p99_seconds", &[], p99);
    for tier in ["city", "regional", "cross-hub"] {
        let (ok, all) = tiers.get(tier).copied().unwrap_or((0, 0));
        push(
            &mut s,
            "suanwang_latency_tier_attainment",
            &[("tier", tier)],
            if all == 0 { 1.0 } else { ok as f64 / all as f64 },
        );
    }
    // money: programmes' budgets, tenants' credit, the ledger's balance
    if let Ok(books) = inner.books.lock() {
        for p in books.programmes().filter(|p| !p.closed) {
            let budget = p.programme.budget_fen;
            if budget > 0
                && let Some((left, _)) = books.programme_balances(&p.programme.id, now_ms)
            {
                push(
                    &mut s,
                    "suanwang_voucher_budget_used_ratio",
                    &[("programme", &p.programme.id)],
                    (budget - left).max(0) as f64 / budget as f64,
                );
            }
        }
        for (id, kind, name) in books.ids_of(|k, _| k == suanwang_economy::AccountKind::Wallet) {
            let _ = kind;
            if let Some(a) = books.ledger().account(id)
                && a.credit_limit > 0
                && a.credit_limit < crate::billing::UNLIMITED
            {
                let debits = a.debits_posted.saturating_add(a.debits_pending);
                let owed = debits.saturating_sub(a.credits_posted) as f64;
                push(&mut s, "suanwang_tenant_credit_used_ratio", &[("tenant", &name)], owed / a.credit_limit as f64);
            }
        }
        push(&mut s, "suanwang_ledger_balanced", &[], if books.balanced() { 1.0 } else { 0.0 });
    }
    if let Ok(log) = inner.evidence.lock() {
        push(&mut s, "suanwang_evidence_unsigned_seconds", &[], log.unsigned_for_ms(now_ms) as f64 / 1000.0);
    }
    s
}

/// Sends notifications as they come: each batch to every webhook (retried with backoff) and
/// to the Alertmanager; firing alerts are re-sent to the Alertmanager every [`RESEND`].
async fn deliver(inner: Arc<Inner>, mut rx: mpsc::Receiver<Vec<Alert>>, d: Delivery) {
    // reqwest is built without a default TLS provider (the workspace uses ring alone): make
    // sure one is installed before the client is (a no-op when the binary already did)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: alerts are not delivered");
            return;
        }
    };
    let mut resend = tokio::time::interval(RESEND);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resend.tick().await;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { return };
                for url in &d.webhooks {
                    let body = webhook_payload(&batch, &d.external_url);
                    tokio::spawn(post_with_retries(Arc::clone(&inner), client.clone(), url.clone(), body, "webhook"));
                }
                if let Some(am) = &d.alertmanager {
                    let body = alertmanager_payload(&batch, &d.external_url, crate::actor::wall_now().0);
                    tokio::spawn(post_with_retries(Arc::clone(&inner), client.clone(), am_url(am), body, "alertmanager"));
                }
            }
            _ = resend.tick() => {
                if let Some(am) = &d.alertmanager {
                    let firing: Vec<Alert> = inner.board.read().map(|b| b.alerts.iter().filter(|a| a.state == State::Firing).cloned().collect()).unwrap_or_default();
                    if !firing.is_empty() {
                        let body = alertmanager_payload(&firing, &d.external_url, crate::actor::wall_now().0);
                        tokio::spawn(post_with_retries(Arc::clone(&inner), client.clone(), am_url(am), body, "alertmanager"));
                    }
                }
            }
        }
    }
}

fn am_url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// Posts `body`, retrying a failure (no answer, a timeout, 5xx or 429) after 0.5, 1, 2, 4, 8
/// and 16 s; a 4xx other than 429 is not retried (the receiver refuses the payload).
async fn post_with_retries(inner: Arc<Inner>, client: reqwest::Client, url: String, body: Value, what: &'static str) {
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=7u32 {
        let res = client.post(&url).json(&body).send().await;
        match res {
            Ok(r) if r.status().is_success() => {
                inner.metrics.alerts_delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(%url, status = r.status().as_u16(), what, "alert receiver refused the notification");
                inner.metrics.alerts_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => {
                tracing::warn!(%url, status = r.status().as_u16(), attempt, what, "alert receiver failed; retrying");
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, attempt, what, "alert receiver unreachable; retrying");
            }
        }
        inner.metrics.alerts_retried.fetch_add(1, Ordering::Relaxed);
        if attempt < 7 {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    inner.metrics.alerts_failed.fetch_add(1, Ordering::Relaxed);
    tracing::error!(%url, what, "alert notification given up after 7 attempts");
}

pub(crate) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| "1970-01-01T00:00:00Z".into(), |t| t.to_string())
}

/// Alertmanager's API v2 `postableAlerts`: firing alerts end 4 resends from now unless
/// re-sent (as Prometheus sets them), resolved ones at their resolution.
pub fn alertmanager_payload(alerts: &[Alert], external_url: &str, now_ms: i64) -> Value {
    let ttl = i64::try_from(RESEND.as_millis()).unwrap_or(30_000) * 4;
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                let ends = a.resolved_at_ms.unwrap_or(now_ms + ttl);
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.fired_at_ms.unwrap_or(a.active_at_ms)),
                    "endsAt": rfc3339(ends),
                    "generatorURL": format!("{}/?alert={}", external_url.trim_end_matches('/'), a.fingerprint),
                })
            })
            .collect(),
    )
}

/// Alertmanager's webhook payload (version 4), so receivers written for it work unchanged.
pub fn webhook_payload(alerts: &[Alert], external_url: &str) -> Value {
    let firing = alerts.iter().any(|a| a.state == State::Firing);
    let common = |f: fn(&Alert) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let mut it = alerts.iter().map(f);
        let Some(first) = it.next() else { return BTreeMap::new() };
        let mut out = first.clone();
        for m in it {
            out.retain(|k, v| m.get(k) == Some(v));
        }
        out
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", alerts.first().map_or("", |a| a.name.as_str())),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "suanwang",
        "groupLabels": {},
        "commonLabels": common(|a| &a.labels),
        "commonAnnotations": common(|a| &a.annotations),
        "externalURL": external_url,
        "alerts": alerts.iter().map(|a| json!({
            "status": if a.state == State::Resolved { "resolved" } else { "firing" },
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.fired_at_ms.unwrap_or(a.active_at_ms)),
            "endsAt": a.resolved_at_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": format!("{}/?alert={}", external_url.trim_end_matches('/'), a.fingerprint),
            "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    })
}
