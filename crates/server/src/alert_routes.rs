//! `GET /v1/alerts` and `GET /v1/events` (R7): the alerts of early warning, and a stream of
//! server-sent events — every evidence-log entry the caller may open, as it becomes durable.
//! The stream's event ids are entry indexes, so a client resumes with `Last-Event-ID` from the
//! store: after a reconnection, a restart of the control plane, or falling behind.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use suanwang_api as api;
use suanwang_store::{AnyStore, EvidenceRow, Store};
use tokio::sync::broadcast;

use crate::Inner;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::evidence_routes::may_open;
use crate::routes::authenticate;

type S = State<Arc<Inner>>;

/// Entries read from the store per page while a stream catches up.
const PAGE: u64 = 512;

fn bad(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", why.into()).field(field)
}

/// Whether `p` may see alert `a`: the operator and the regulator all; a tenant those about it
/// (`tenant` label); a provider those about its sites (`site` label); a funder those about its
/// programmes; a carrier those about its links.
fn may_see(inner: &Inner, p: &Principal, a: &suanwang_alerts::Alert) -> bool {
    match p.role {
        Role::Operator | Role::Regulator => true,
        Role::Tenant => a.labels.get("tenant") == Some(&p.name),
        Role::Provider => {
            a.labels.get("site").is_some_and(|s| inner.grants().get(s).is_some_and(|g| g.owner.name == p.name))
        }
        // a funder those about its programmes (`programme` label)
        Role::Funder => a.labels.get("programme").is_some_and(|id| {
            inner.books.lock().is_ok_and(|b| b.programme(id).is_some_and(|s| s.programme.funder == p.name))
        }),
        // a carrier those about the links it carries (`link` label `a~b`): the backbone carrier
        // the backbone's links, the access carrier the access links
        Role::Carrier => a.labels.get("link").and_then(|l| l.split_once('~')).is_some_and(|(x, y)| {
            let net = inner.net();
            let Some(link) = net.links.iter().find(|l| (l.a == x && l.b == y) || (l.a == y && l.b == x)) else {
                return false;
            };
            inner.books.lock().is_ok_and(|b| {
                let parties = &b.book.parties;
                let carrier = match link.kind {
                    suanwang_core::network::LinkKind::Access => &parties.access_carrier,
                    suanwang_core::network::LinkKind::Backbone => &parties.backbone_carrier,
                };
                *carrier == p.name
            })
        }),
    }
}

fn view(a: &suanwang_alerts::Alert) -> Option<api::AlertView> {
    let state = match a.state {
        suanwang_alerts::State::Pending => api::AlertState::Pending,
        suanwang_alerts::State::Firing => api::AlertState::Firing,
        suanwang_alerts::State::Resolved => api::AlertState::Resolved,
        suanwang_alerts::State::Inactive => return None,
    };
    Some(api::AlertView {
        fingerprint: a.fingerprint.clone(),
        name: a.name.clone(),
        state,
        severity: a.severity.clone(),
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        value: Some(a.value).filter(|v| v.is_finite()),
        active_at_ms: a.active_at_ms,
        fired_at_ms: a.fired_at_ms,
        resolved_at_ms: a.resolved_at_ms,
    })
}

pub async fn alerts(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<api::AlertList>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    let state = match q.get("state").map(String::as_str) {
        None => None,
        Some(s @ ("pending" | "firing" | "resolved")) => Some(s.to_string()),
        Some(other) => return Err(bad("state", format!("state {other:?}: one of pending, firing, resolved"))),
    };
    if let Some(k) = q.keys().find(|k| *k != "state") {
        return Err(bad(k, format!("{k} is no parameter of /v1/alerts")).hint("state=pending|firing|resolved"));
    }
    let (alerts, evaluated_at_ms) = inner
        .board
        .read()
        .map(|b| (b.alerts.clone(), b.evaluated_at_ms))
        .map_err(|_| ApiError::unavailable("alerts"))?;
    let rules = inner.rules_count;
    Ok(Json(api::AlertList {
        alerts: alerts
            .iter()
            .filter(|a| may_see(&inner, &p, a))
            .filter(|a| state.as_deref().is_none_or(|s| a.state.as_str() == s))
            .filter_map(view)
            .collect(),
        evaluated_at_ms,
        rules,
    }))
}

/// Where a stream stands.
struct Cursor {
    feed: Feed,
    principal: Principal,
    /// The index of the next entry to consider.
    next: u64,
    /// Entries read from the store, not yet considered.
    backlog: VecDeque<EvidenceRow>,
}

fn durable_size(inner: &Inner) -> u64 {
    inner.evidence.lock().map_or(0, |l| l.size())
}

fn event(row: &EvidenceRow) -> Event {
    let record: serde_json::Value = serde_json::from_str(&row.record).unwrap_or(serde_json::Value::Null);
    let data = api::StreamEvent {
        id: u64::try_from(row.idx).unwrap_or(0),
        kind: row.kind.clone(),
        at_ms: row.at_ms,
        job: row.job_id.and_then(|j| u64::try_from(j).ok()),
        tenant: row.tenant.clone(),
        subject: row.subject.clone(),
        record,
    };
    Event::default()
        .event(row.kind.clone())
        .id(row.idx.to_string())
        .data(serde_json::to_string(&data).unwrap_or_else(|_| "{}".into()))
}

impl Cursor {
    /// The next event the caller may see; `None` ends the stream (the service stops, or the
    /// store failed: the client reconnects with its last id).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(row) = self.backlog.pop_front() {
                let idx = u64::try_from(row.idx).unwrap_or(0);
                if idx < self.next {
                    continue;
                }
                self.next = idx + 1;
                if may_open(&self.principal, &row) {
                    return Some(event(&row));
                }
                continue;
            }
            // behind the durable log: read from the store
            let size = (self.feed.size)();
            if self.next < size {
                let to = size.min(self.next + PAGE);
                match self.feed.store.evidence_entries(i64::try_from(self.next).ok()?, i64::try_from(to).ok()?).await {
                    Ok(rows) if !rows.is_empty() => self.backlog.extend(rows),
                    Ok(_) => return None,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: the store failed; the client resumes");
                        return None;
                    }
                }
                continue;
            }
            match self.feed.rx.recv().await {
                Ok(row) => {
                    let idx = u64::try_from(row.idx).unwrap_or(0);
                    if idx == self.next {
                        self.backlog.push_back((*row).clone());
                    }
                    // an entry ahead of `next` means some were missed: the store has them
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

pub async fn events(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&inner, &headers).await?;
    let last = stream_start(&headers, &q)?;
    // subscribe before reading where the log stands: nothing lands between the two unseen
    let rx = inner.events.subscribe();
    let next = match last {
        Some(i) => i + 1,
        None => durable_size(&inner),
    };
    let source = Arc::clone(&inner);
    let feed = Feed { store: inner.store.clone(), size: Box::new(move || durable_size(&source)), rx };
    Ok(stream(feed, principal, next))
}

/// Where `/v1/events` starts: after `Last-Event-ID`, else after `after=`, else (`None`) now.
pub(crate) fn stream_start(headers: &HeaderMap, q: &BTreeMap<String, String>) -> Result<Option<u64>, ApiError> {
    if let Some(k) = q.keys().find(|k| *k != "after") {
        return Err(bad(k, format!("{k} is no parameter of /v1/events")).hint("after=INDEX or a Last-Event-ID header"));
    }
    let parse = |field: &str, v: &str| {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .ok_or_else(|| bad(field, format!("{field} {v:?} is not an entry index (a whole number from 0)")))
    };
    match headers.get("last-event-id") {
        Some(v) => Ok(Some(parse("Last-Event-ID", v.to_str().unwrap_or("?"))?)),
        None => q.get("after").map(|v| parse("after", v)).transpose(),
    }
}

/// What a stream reads: the store's entries, how far the log is durable, and each new entry
/// as it becomes durable — the leader's own log, or a follower's tail of the store's (issue 17).
pub(crate) struct Feed {
    pub store: AnyStore,
    pub size: Box<dyn Fn() -> u64 + Send>,
    pub rx: broadcast::Receiver<Arc<EvidenceRow>>,
}

/// The server-sent events of `feed` from entry `next` on that `principal` may see.
pub(crate) fn stream(feed: Feed, principal: Principal, next: u64) -> Response {
    let cursor = Cursor { feed, principal, next, backlog: VecDeque::new() };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        c.next_event().await.map(|e| (Ok::<Event, Infallible>(e), c))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
