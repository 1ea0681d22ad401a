//! Several control-plane instances over one PostgreSQL (issue 17, R7, R3).
//!
//! Exactly one instance leads: it holds the lease row of the database (`PgStore::try_acquire`)
//! at an epoch, and every write transaction it makes first extends that lease at that epoch
//! (`PgStore::set_fence`), so a leader that lost the lease — partitioned, stopped, slow — can
//! never append: its write fails with `StoreError::Fenced` and it steps down. The others follow:
//! they answer `/healthz` and `/metrics` themselves and forward every other request to the
//! leader the lease names, so clients and agents may use any instance. A follower takes the lease
//! once it has expired, loads the state from the store as a restart does, and serves.
//!
//! This module holds what every instance serves (`router`) and what it knows of the lease; the
//! process that runs the lease's loop is `suanwang serve --instance` (the CLI's `serve_cmd`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_service::Service as _;

use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// The answer's header naming the instance that answered a read itself.
pub const SERVED_BY: &str = suanwang_api::SERVED_BY_HEADER;

/// On an answer a follower forwarded: the leader's URL (`--advertise`), so that a client that
/// was given it too sends there directly from then on — one hop less for every write.
pub const LEADER_URL: &str = suanwang_api::LEADER_HEADER;

/// Pages of the log a read of the follower's copy applies at most before answering (beyond:
/// forwarded to the leader).
const CATCH_UP_PAGES: usize = 2;

/// The largest request body forwarded to the leader (a checkpoint is at most 64 MiB).
const MAX_FORWARDED: usize = 65 << 20;

/// The reads a follower answers from the store.
enum LocalRead<'a> {
    List,
    One(&'a str),
    Logs(&'a str),
    Bill(&'a str),
    /// `/v1/balance` and `/v1/statements`: not a job's, but stored whole as well.
    Balance,
    Statements,
    /// `/v1/events`: the evidence log, tailed ([`EventTail`]).
    Events,
    /// `/v1/evidence/checkpoint`, `/v1/evidence/checkpoints`, `/v1/evidence/entries/{index}`.
    Checkpoint,
    Checkpoints,
    Entry(&'a str),
    /// `/v1/sites`, `/v1/network`: from this follower's copy of the engine ([`Ha::replica`]),
    /// brought to the log's end first.
    Sites,
    Network,
}

impl LocalRead<'_> {
    /// The read `path` asks for, if the store holds its answer whole: jobs (`/v1/jobs`,
    /// `/v1/jobs/{id}`, its logs, and its bill when `bills` — the instance has the price book),
    /// balances, statements, the evidence log's entries and checkpoints, and its stream; or the
    /// log does, through this follower's copy of the engine: the sites and the network. The one
    /// list of what a follower answers itself; everything else goes to the leader.
    fn of(path: &str, bills: bool) -> Option<LocalRead<'_>> {
        Some(match path {
            "/v1/jobs" => LocalRead::List,
            "/v1/balance" => LocalRead::Balance,
            "/v1/statements" => LocalRead::Statements,
            "/v1/events" => LocalRead::Events,
            "/v1/evidence/checkpoint" => LocalRead::Checkpoint,
            "/v1/evidence/checkpoints" => LocalRead::Checkpoints,
            "/v1/sites" => LocalRead::Sites,
            "/v1/network" => LocalRead::Network,
            _ => {
                if let Some(i) = path.strip_prefix("/v1/evidence/entries/") {
                    return (!i.is_empty() && !i.contains('/')).then_some(LocalRead::Entry(i));
                }
                let rest = path.strip_prefix("/v1/jobs/").filter(|r| !r.is_empty())?;
                match rest.split_once('/') {
                    None => LocalRead::One(rest),
                    Some((id, "logs")) if !id.is_empty() => LocalRead::Logs(id),
                    Some((id, "bill")) if !id.is_empty() && bills => LocalRead::Bill(id),
                    Some(_) => return None,
                }
            }
        })
    }
}

/// Ledger account id → `kind:name` as the store has them, for a follower's bills. An account's
/// id and name never change, so the map only grows: it is read again from the store, whole, when
/// a transfer names an account it lacks.
#[derive(Debug, Default)]
pub struct AccountNames(RwLock<HashMap<String, String>>);

impl AccountNames {
    /// The names of `ids` (an id the store does not know either is left out).
    pub async fn of<'a>(
        &self,
        store: &suanwang_store::AnyStore,
        ids: impl Iterator<Item = &'a String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        use suanwang_store::Store as _;
        let ids: Vec<&String> = ids.collect();
        let known = self.0.read().is_ok_and(|m| ids.iter().all(|i| m.contains_key(*i)));
        if !known {
            let rows =
                store.ledger_accounts().await.map_err(|e| ApiError::unavailable("store").detail(e.to_string()))?;
            let fresh = rows.into_iter().map(|a| (a.id, format!("{}:{}", a.kind, a.name))).collect();
            if let Ok(mut m) = self.0.write() {
                *m = fresh;
            }
        }
        let m = self.0.read().map_err(|_| ApiError::unavailable("the account names are unavailable"))?;
        Ok(ids.into_iter().filter_map(|i| m.get(i).map(|n| (i.clone(), n.clone()))).collect())
    }
}

/// What this instance is and knows of the lease.
#[derive(Debug)]
pub struct Ha {
    /// `--instance`: unique among the instances of one database.
    pub instance: String,
    /// Where the others reach this instance (`--advertise`).
    pub advertise: String,
    pub lease: Duration,
    /// This instance's epoch while it leads; 0 while it follows.
    epoch: AtomicI64,
    /// The leader the lease names (its URL) and its epoch, as last read.
    leader: RwLock<(String, String)>,
    leader_epoch: AtomicI64,
    /// Times this process took the lease.
    pub takeovers: AtomicU64,
    /// The leader's routes, once this instance leads.
    routes: RwLock<Option<Router>>,
    client: reqwest::Client,
    /// The instances' shared secret: sent with each forwarded request, with the client's
    /// address and certificate ([`crate::listen::forwarded_peer`]).
    secret: String,
    /// The database, for the reads a follower answers itself ([`Ha::read_locally`]).
    store: Option<suanwang_store::AnyStore>,
    /// Token hash → principal and expiry, as the leader caches them.
    tokens: crate::routes::TokenCache,
    /// Reads this follower answered itself.
    pub local_reads: AtomicU64,
    /// Requests this follower forwarded to the leader (and had answered).
    pub forwarded: AtomicU64,
    /// The last command of the log this follower's copy of the engine has applied
    /// ([`crate::actor::Replica`]; 0: none yet).
    pub replica_seq: AtomicI64,
    /// The price book (the leader's: the same `--prices`), for the bills a follower answers.
    price_book: Option<suanwang_economy::PriceBook>,
    names: AccountNames,
    /// The evidence log as the store has it, tailed while a follower streams `/v1/events`.
    tail: tokio::sync::OnceCell<Arc<EventTail>>,
    /// This follower's copy of the engine, kept current from the command log by `suanwang
    /// serve --instance` and taken when it leads (issue 17); `None` until it is loaded.
    pub replica: tokio::sync::Mutex<Option<crate::actor::Replica>>,
}

/// A follower's tail of the store's evidence log (issue 17): every [`TAIL_EVERY`] it reads the
/// entries the leader made durable since, and passes each to the streams of `/v1/events` this
/// instance serves — the leader's own stream, from the database.
#[derive(Debug)]
struct EventTail {
    /// How far the log is durable, as last read.
    size: AtomicU64,
    tx: tokio::sync::broadcast::Sender<Arc<suanwang_store::EvidenceRow>>,
}

/// How often a follower's [`EventTail`] reads the store: an event reaches its streams this much
/// later than the leader's.
const TAIL_EVERY: Duration = Duration::from_millis(100);

impl EventTail {
    /// Starts at the log's durable size, and tails it for as long as the process lives.
    async fn start(store: suanwang_store::AnyStore) -> Result<Arc<EventTail>, ApiError> {
        use suanwang_store::Store as _;
        let unavailable = |e: suanwang_store::StoreError| ApiError::unavailable("store").detail(e.to_string());
        let size = store.evidence_size().await.map_err(unavailable)?;
        let tail = Arc::new(EventTail {
            size: AtomicU64::new(u64::try_from(size).unwrap_or(0)),
            tx: tokio::sync::broadcast::channel(8_192).0,
        });
        let t = Arc::clone(&tail);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TAIL_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = t.catch_up(&store).await {
                    tracing::warn!(error = %e, "tailing the evidence log: the store failed; trying again");
                }
            }
        });
        Ok(tail)
    }

    /// Passes on every entry made durable since the last look, in order, and then says how far.
    async fn catch_up(&self, store: &suanwang_store::AnyStore) -> Result<(), suanwang_store::StoreError> {
        use suanwang_store::Store as _;
        let durable = store.evidence_size().await?;
        let mut from = i64::try_from(self.size.load(Ordering::Acquire)).unwrap_or(i64::MAX);
        while from < durable {
            let rows = store.evidence_entries(from, durable.min(from.saturating_add(512))).await?;
            let Some(last) = rows.last().map(|r| r.idx) else { break };
            for r in rows {
                // no stream listening is no error
                let _ = self.tx.send(Arc::new(r));
            }
            from = last + 1;
            self.size.store(u64::try_from(from).unwrap_or(0), Ordering::Release);
        }
        Ok(())
    }
}

impl Ha {
    /// `store`: the database, so that a follower answers job reads itself; `None`: it
    /// forwards every request. `price_book`: the one the instances bill by, so that a follower
    /// answers bills too; `None`: it forwards them.
    pub fn new(
        instance: &str,
        advertise: &str,
        lease: Duration,
        secret: &str,
        store: Option<suanwang_store::AnyStore>,
        price_book: Option<suanwang_economy::PriceBook>,
    ) -> Arc<Ha> {
        // reqwest's TLS needs a process-wide provider (ring, as the listener's)
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(Ha {
            instance: instance.to_string(),
            advertise: advertise.trim_end_matches('/').to_string(),
            lease,
            epoch: AtomicI64::new(0),
            leader: RwLock::new((String::new(), String::new())),
            leader_epoch: AtomicI64::new(0),
            takeovers: AtomicU64::new(0),
            routes: RwLock::new(None),
            secret: secret.to_string(),
            store,
            tokens: RwLock::new(HashMap::new()),
            local_reads: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            replica_seq: AtomicI64::new(0),
            price_book,
            names: AccountNames::default(),
            tail: tokio::sync::OnceCell::new(),
            replica: tokio::sync::Mutex::new(None),
            // no redirects: a forwarded request is answered by the leader itself
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(2))
                // the leader closes keep-alive connections idle for its header timeout (10 s
                // by default): drop them here first rather than forward on a closing one
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        })
    }

    /// `leader` or `follower`.
    pub fn role(&self) -> &'static str {
        if self.epoch.load(Ordering::Relaxed) > 0 { "leader" } else { "follower" }
    }

    /// This instance's epoch while it leads, else the leader's as last read.
    pub fn epoch(&self) -> i64 {
        match self.epoch.load(Ordering::Relaxed) {
            0 => self.leader_epoch.load(Ordering::Relaxed),
            e => e,
        }
    }

    /// The leader's instance name and URL as last read (this instance's own while it leads).
    pub fn leader(&self) -> (String, String) {
        if self.epoch.load(Ordering::Relaxed) > 0 {
            return (self.instance.clone(), self.advertise.clone());
        }
        self.leader.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// What a follower read of the lease.
    pub fn saw_lease(&self, holder: &str, url: &str, epoch: i64) {
        if let Ok(mut l) = self.leader.write() {
            *l = (holder.to_string(), url.trim_end_matches('/').to_string());
        }
        self.leader_epoch.store(epoch, Ordering::Relaxed);
    }

    /// This instance took the lease at `epoch`: it serves `routes` from now on.
    pub fn lead(&self, epoch: i64, routes: Router) {
        if let Ok(mut r) = self.routes.write() {
            *r = Some(routes);
        }
        self.epoch.store(epoch, Ordering::Relaxed);
        self.leader_epoch.store(epoch, Ordering::Relaxed);
        self.takeovers.fetch_add(1, Ordering::Relaxed);
    }

    /// The lease's lines of `/metrics`.
    pub fn metrics(&self) -> String {
        let leader = u8::from(self.epoch.load(Ordering::Relaxed) > 0);
        format!(
            "# HELP suanwang_ha_leader Whether this instance holds the leader's lease (1) or follows (0).\n\
             # TYPE suanwang_ha_leader gauge\n\
             suanwang_ha_leader{{instance=\"{i}\"}} {leader}\n\
             # HELP suanwang_ha_epoch The lease's epoch (this instance's while it leads, else the leader's as last read).\n\
             # TYPE suanwang_ha_epoch gauge\n\
             suanwang_ha_epoch{{instance=\"{i}\"}} {e}\n\
             # HELP suanwang_ha_takeovers_total Times this process took the lease.\n\
             # TYPE suanwang_ha_takeovers_total counter\n\
             suanwang_ha_takeovers_total{{instance=\"{i}\"}} {t}\n\
             # HELP suanwang_ha_lease_seconds The lease's duration.\n\
             # TYPE suanwang_ha_lease_seconds gauge\n\
             suanwang_ha_lease_seconds {l}\n\
             # HELP suanwang_ha_follower_reads_total Reads (jobs, output, bills, balances, statements, evidence, event streams) this instance answered itself while following.\n\
             # TYPE suanwang_ha_follower_reads_total counter\n\
             suanwang_ha_follower_reads_total{{instance=\"{i}\"}} {r}\n\
             # HELP suanwang_ha_forwarded_total Requests this instance forwarded to the leader while following.\n\
             # TYPE suanwang_ha_forwarded_total counter\n\
             suanwang_ha_forwarded_total{{instance=\"{i}\"}} {f}\n\
             # HELP suanwang_ha_replica_seq The last command of the log this instance's copy of the engine applied while following (it leads from that copy).\n\
             # TYPE suanwang_ha_replica_seq gauge\n\
             suanwang_ha_replica_seq{{instance=\"{i}\"}} {c}\n",
            i = self.instance.replace(['\\', '"', '\n'], "_"),
            e = self.epoch(),
            t = self.takeovers.load(Ordering::Relaxed),
            l = self.lease.as_secs_f64(),
            r = self.local_reads.load(Ordering::Relaxed),
            c = self.replica_seq.load(Ordering::Relaxed),
            f = self.forwarded.load(Ordering::Relaxed),
        )
    }

    /// A follower's `/healthz`.
    fn health(&self) -> suanwang_api::Health {
        let (leader_name, leader_url) = self.leader();
        suanwang_api::Health {
            status: "ok".into(),
            store: "postgres".into(),
            jobs: 0,
            live_jobs: 0,
            cached_jobs: 0,
            pid: std::process::id(),
            started_at_ms: 0,
            role: self.role().into(),
            instance: Some(self.instance.clone()),
            epoch: u64::try_from(self.epoch()).unwrap_or(0),
            leader: (!leader_name.is_empty()).then_some(leader_name),
            leader_url: (!leader_url.is_empty()).then_some(leader_url),
        }
    }

    /// One request: the leader's routes once this instance leads; before, its own health and
    /// metrics, and everything else forwarded to the leader.
    async fn dispatch(&self, req: Request) -> Response {
        let leading = self.routes.read().ok().and_then(|r| r.clone());
        if let Some(mut routes) = leading {
            return match routes.call(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
        }
        match req.uri().path() {
            "/healthz" => axum::Json(self.health()).into_response(),
            "/metrics" => {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], format!("{}suanwang_up 1\n", self.metrics()))
                    .into_response()
            }
            path if self.store.is_some()
                && req.method() == axum::http::Method::GET
                && LocalRead::of(path, self.price_book.is_some()).is_some() =>
            {
                match self.read_locally(req.method().clone(), req.uri().clone(), req.headers().clone()).await {
                    Some(answer) => answer,
                    None => self.forward(req).await,
                }
            }
            _ => self.forward(req).await,
        }
    }

    /// A follower answers the reads of [`LocalRead::of`] itself from the database, whose job,
    /// output, account, transfer and evidence rows the leader writes in the same transaction as
    /// the commands and reports it acknowledges — so a read here is as current as the leader's
    /// own (which reads the same rows for every job not in its memory); only the newest
    /// checkpoint may be older (only a leader signs).
    /// `None` (forward it) for anything else, and for a token this instance cannot accept: the
    /// leader answers the 401 or 403 and counts it against the client.
    async fn read_locally(
        &self,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
    ) -> Option<Response> {
        let store = self.store.as_ref()?;
        if method != axum::http::Method::GET {
            return None;
        }
        let read = LocalRead::of(uri.path(), self.price_book.is_some())?;
        let p = self.principal(store, &headers).await?;
        // every role reads its own balance, statement and evidence; job reads are for these three
        let anyone = !matches!(read, LocalRead::List | LocalRead::One(_) | LocalRead::Logs(_) | LocalRead::Bill(_));
        if !anyone && !matches!(p.role, Role::Operator | Role::Regulator | Role::Tenant) {
            return None;
        }
        let answer = match read {
            LocalRead::Events => self.events(store, p, &uri, &headers).await,
            LocalRead::Checkpoint => crate::evidence_routes::checkpoint_stored(store).await,
            LocalRead::Checkpoints => crate::evidence_routes::checkpoints_stored(store, &uri).await,
            LocalRead::Entry(i) => crate::evidence_routes::entry_stored(store, &p, i).await,
            LocalRead::Balance => {
                crate::money_routes::balance_stored(store, &p, &uri).await.map(|b| axum::Json(b).into_response())
            }
            LocalRead::Statements => crate::money_routes::statements_stored(store, &p, &uri).await,
            LocalRead::One(id) => crate::routes::one_stored(store, &p, id).await.map(|j| axum::Json(j).into_response()),
            LocalRead::Logs(id) => crate::routes::logs_stored(store, &p, id, &uri).await,
            LocalRead::Bill(id) => match &self.price_book {
                Some(book) => crate::money_routes::bill_stored(store, book, &self.names, &p, id)
                    .await
                    .map(|b| axum::Json(b).into_response()),
                None => return None,
            },
            LocalRead::Sites => {
                let (net, grants) = self.current_copy(store).await?;
                Ok(axum::Json(crate::wire::sites(&net, &grants)).into_response())
            }
            LocalRead::Network => {
                let (net, _) = self.current_copy(store).await?;
                Ok(axum::Json(crate::wire::network(&net)).into_response())
            }
            LocalRead::List => match axum::extract::Query::<crate::routes::ListQuery>::try_from_uri(&uri) {
                Ok(axum::extract::Query(q)) => {
                    crate::routes::list_stored(store, &p, &q).await.map(|l| axum::Json(l).into_response())
                }
                Err(e) => Err(crate::routes::list_query_error(&e)),
            },
        };
        self.local_reads.fetch_add(1, Ordering::Relaxed);
        let mut res = answer.unwrap_or_else(IntoResponse::into_response);
        if let Ok(v) = axum::http::HeaderValue::from_str(&self.instance) {
            res.headers_mut().insert(SERVED_BY, v);
        }
        Some(res)
    }

    /// `/v1/events` from this follower's tail of the store's log: the same entries, ids and
    /// records as the leader's stream, each about [`TAIL_EVERY`] later.
    async fn events(
        &self,
        store: &suanwang_store::AnyStore,
        p: Principal,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
    ) -> Result<Response, ApiError> {
        let q = axum::extract::Query::<std::collections::BTreeMap<String, String>>::try_from_uri(uri)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", "invalid query").detail(e.body_text()))?;
        let last = crate::alert_routes::stream_start(headers, &q.0)?;
        let tail = self.tail.get_or_try_init(|| EventTail::start(store.clone())).await?;
        // subscribe before reading where the log stands: nothing lands between the two unseen
        let rx = tail.tx.subscribe();
        let next = match last {
            Some(i) => i + 1,
            None => tail.size.load(Ordering::Acquire),
        };
        let t = Arc::clone(tail);
        let size = Box::new(move || t.size.load(Ordering::Acquire));
        let feed = crate::alert_routes::Feed { store: store.clone(), size, rx };
        Ok(crate::alert_routes::stream(feed, p, next))
    }

    /// The network and the sites' grants as of the log's last command: this follower's copy of
    /// the engine, brought to the log's end first — what the leader acknowledged is in the log,
    /// so the answer is as current as the leader's. `None` (the read is forwarded): no copy yet,
    /// the store failed, or more than [`CATCH_UP_PAGES`] pages behind (a follower just started).
    async fn current_copy(
        &self,
        store: &suanwang_store::AnyStore,
    ) -> Option<(Arc<suanwang_core::Network>, std::collections::BTreeMap<String, suanwang_engine::SiteGrant>)> {
        let mut slot = self.replica.lock().await;
        let copy = slot.as_mut()?;
        if let Err(e) = copy.tail(store, false, CATCH_UP_PAGES).await {
            tracing::warn!(error = %e, "the follower's copy of the engine could not catch up; forwarding");
            return None;
        }
        copy.at_end().then(|| (copy.network(), copy.grants()))
    }

    /// The principal of the request's bearer token, if the token is known and unexpired.
    async fn principal(&self, store: &suanwang_store::AnyStore, headers: &axum::http::HeaderMap) -> Option<Principal> {
        let token = headers.get(header::AUTHORIZATION)?.to_str().ok().and_then(crate::auth::bearer_token)?;
        let hash = crate::auth::hash_token(token);
        let (p, expires_at_ms) = crate::routes::known_token(store, &self.tokens, hash).await.ok()?.ok()?;
        crate::routes::unexpired(expires_at_ms).then_some(p)
    }

    /// Forwards `req` to the leader and streams its answer back; 503 (retry soon) while no
    /// leader is known or it does not answer.
    async fn forward(&self, req: Request) -> Response {
        let (_, url) = self.leader();
        if url.is_empty() || url == self.advertise {
            return no_leader("no instance holds the leader's lease yet");
        }
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORWARDED).await else {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is too large to forward")
                .into_response();
        };
        let target = format!("{url}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        let mut out = self.client.request(parts.method, target).body(bytes);
        for (k, v) in &parts.headers {
            if !hop_by_hop(k) {
                out = out.header(k, v);
            }
        }
        out = out.header("x-suanwang-forwarded-by", self.instance.as_str());
        // the leader answers the client, not this instance: its address (the authentication
        // throttle, early warning) and its verified certificate (mutual TLS)
        if let Some(peer) = parts.extensions.get::<crate::listen::Peer>() {
            out = out.header(crate::listen::FORWARD_SECRET, self.secret.as_str());
            out = out.header(crate::listen::FORWARD_PEER, peer.addr.to_string());
            if let Some(cert) = &peer.client_cert {
                out = out.header(crate::listen::FORWARD_PEER_CERT, cert.as_str());
            }
        }
        let answer = match out.send().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(leader = %url, error = %e, "the leader did not answer a forwarded request");
                return no_leader(&format!("the leader at {url} did not answer"));
            }
        };
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let mut res = Response::builder().status(answer.status());
        for (k, v) in answer.headers() {
            if !hop_by_hop(k) && k != header::CONTENT_LENGTH {
                res = res.header(k, v);
            }
        }
        res = res.header(LEADER_URL, url.as_str());
        // streamed: `/v1/events` never ends
        let stream = futures_util::stream::unfold(answer, |mut a| async move {
            match a.chunk().await {
                Ok(Some(c)) => Some((Ok::<_, std::io::Error>(c), a)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), a)),
            }
        });
        res.body(Body::from_stream(stream)).unwrap_or_else(|_| no_leader("the leader's answer could not be relayed"))
    }
}

fn hop_by_hop(k: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(k)
        || k.as_str() == "keep-alive"
}

fn no_leader(why: &str) -> Response {
    let mut r = ApiError::unavailable(why)
        .hint("a follower takes over within the lease; retry (with the same Idempotency-Key) or try another instance")
        .into_response();
    r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    r
}

/// What every instance serves: see [`Ha::dispatch`].
pub fn router(ha: Arc<Ha>) -> Router {
    Router::new().fallback(move |req: Request| {
        let ha = Arc::clone(&ha);
        async move { ha.dispatch(req).await }
    })
}

#[cfg(test)]
mod tests {
    use super::LocalRead;

    /// What a follower answers itself and what it forwards: the paths of the reads it serves,
    /// and near misses that must go to the leader.
    #[test]
    fn a_follower_reads_exactly_these_paths_itself() {
        let kind = |path: &str, bills: bool| {
            LocalRead::of(path, bills).map(|r| match r {
                LocalRead::List => "list".to_string(),
                LocalRead::One(id) => format!("one {id}"),
                LocalRead::Logs(id) => format!("logs {id}"),
                LocalRead::Bill(id) => format!("bill {id}"),
                LocalRead::Balance => "balance".into(),
                LocalRead::Statements => "statements".into(),
                LocalRead::Events => "events".into(),
                LocalRead::Checkpoint => "checkpoint".into(),
                LocalRead::Checkpoints => "checkpoints".into(),
                LocalRead::Entry(i) => format!("entry {i}"),
                LocalRead::Sites => "sites".into(),
                LocalRead::Network => "network".into(),
            })
        };
        for (path, want) in [
            ("/v1/jobs", "list"),
            ("/v1/jobs/7", "one 7"),
            ("/v1/jobs/7/logs", "logs 7"),
            ("/v1/jobs/7/bill", "bill 7"),
            ("/v1/balance", "balance"),
            ("/v1/statements", "statements"),
            ("/v1/events", "events"),
            ("/v1/evidence/checkpoint", "checkpoint"),
            ("/v1/evidence/checkpoints", "checkpoints"),
            ("/v1/evidence/entries/3", "entry 3"),
            ("/v1/sites", "sites"),
            ("/v1/network", "network"),
        ] {
            assert_eq!(kind(path, true).as_deref(), Some(want), "{path}");
        }
        for path in [
            "/v1/jobs/",
            "/v1/jobsx",
            "/v1/jobs/7/evidence",
            "/v1/jobs/7/cancel",
            "/v1/jobs//logs",
            "/v1/evidence/entries/",
            "/v1/evidence/entries/3/x",
            "/v1/evidence/proof/inclusion",
            "/v1/sites/x",
            "/v1/kpis",
            "/v1/balances",
        ] {
            assert_eq!(kind(path, true), None, "{path} goes to the leader");
        }
        assert_eq!(kind("/v1/jobs/7/bill", false), None, "no price book: bills go to the leader");
    }
}
