//! Suanwang's control plane (R3, R7, R8): the engine as a durable, authenticated HTTP/JSON
//! service under `/v1`, with `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Architecture invariant: the only crate that reads the wall clock for decisions (in the
//! engine actor); every state change is appended to the store in a group commit before it is
//! acknowledged, and a restart replays the log through a fresh engine.

pub mod actor;
pub mod alert_routes;
pub mod alerting;
pub mod auth;
pub mod billing;
pub mod console;
pub mod datasets;
pub mod error;
pub mod evidence;
pub mod evidence_routes;
pub mod geo;
pub mod ha;
pub mod listen;
pub mod market;
pub mod market_routes;
pub mod metrics;
pub mod money_routes;
pub mod probe;
pub mod routes;
pub mod throttle;
pub mod views;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use suanwang_core::Network;
use suanwang_sched::Policy;
use suanwang_store::{AnyStore, Store, StoreError, TokenRow};
use tokio::sync::mpsc;

use crate::actor::{Actor, Request};
use crate::auth::{Role, hash_token, new_token};
use crate::metrics::Metrics;
use crate::views::Views;

/// State shared by the HTTP handlers.
#[derive(Debug)]
pub struct Inner {
    /// The network as configured (reference data); agents' machines are added to `net`.
    pub base_net: Arc<Network>,
    /// The network as it is now, with the sites agents registered.
    pub net: RwLock<Arc<Network>>,
    pub store: AnyStore,
    pub tx: mpsc::Sender<Request>,
    pub views: RwLock<Views>,
    /// Token hash → principal and when the token expires, filled from the store on first use.
    pub tokens: routes::TokenCache,
    pub metrics: Metrics,
    /// Agent site → when its agent was last heard from (epoch ms).
    pub agents: std::sync::Mutex<HashMap<String, i64>>,
    /// Woken after every change of the views (agents' long-polls wait on it).
    pub views_changed: tokio::sync::Notify,
    /// This control plane's identity (kept in the store): agents refuse state from another.
    pub identity: String,
    /// The secret run ids are derived from (kept in the store, never served).
    pub run_secret: String,
    /// Owner and approval of every agent site (a copy of the engine's, after each commit).
    pub grants: RwLock<Arc<BTreeMap<String, suanwang_engine::SiteGrant>>>,
    /// Failed authentications per address and per principal.
    pub throttle: throttle::Throttle,
    /// A provider's pending site is approved only after its probe job passed.
    pub require_probe: bool,
    /// Probe jobs of pending sites (state, not commands: kept in memory).
    pub probes: std::sync::Mutex<HashMap<String, probe::Probe>>,
    /// One gate per tenant with quotas (R3): its submissions are checked against its quotas and
    /// handed to the engine one at a time, so two at once cannot both pass a quota that fits one.
    pub quota_gates: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// See [`ServerConfig::restart`].
    pub restart: Arc<tokio::sync::Notify>,
    /// See [`ServerConfig::ha`].
    pub ha: Option<Arc<ha::Ha>>,
    /// The books (R4): accounts and open holds, changed by the actor inside its batches.
    pub books: std::sync::Mutex<billing::Books>,
    /// The evidence log (R6/R7): its right edge and newest checkpoint.
    pub evidence: std::sync::Mutex<evidence::EvidenceLog>,
    /// Full tiles above the leaves' level, kept once read (proofs).
    pub upper_tiles: evidence::UpperTiles,
    /// The prefix the dataset registry issues identifiers under (R6).
    pub id_prefix: String,
    /// Serialises changes to datasets (read, change, commit).
    pub dataset_lock: tokio::sync::Mutex<()>,
    /// Held while bids' jobs are released to the engine (`market_routes::release_due_jobs`):
    /// a clearing's answer waits for a release the periodic task has under way, so the jobs
    /// whose windows have begun are submitted before it answers.
    pub release_lock: tokio::sync::Mutex<()>,
    /// Whether each site (in the network's order) takes placements (a copy of the
    /// scheduler's, after each commit).
    pub site_up: RwLock<Arc<Vec<bool>>>,
    /// Early warning: the alerts now and the indicators' last samples.
    pub board: RwLock<alerting::Board>,
    /// How many rules early warning judges.
    pub rules_count: usize,
    /// Failed authentications per address and per presented credential, recently.
    pub recent_auth_failures: alerting::Recent,
    /// Requests refused 403 per principal, recently.
    pub recent_forbidden: alerting::Recent,
    /// GB placed on each link, recently.
    pub link_volumes: alerting::LinkVolumes,
    /// Jobs' recent waits and latency-tier decisions.
    pub job_windows: alerting::JobWindows,
    /// The market's open orders (R4), changed by the actor inside its batches.
    pub market: std::sync::Mutex<market::Market>,
    /// See [`ServerConfig::map`] and [`ServerConfig::twin_reports`].
    pub map: Arc<suanwang_api::console::MapLayer>,
    pub twin_reports: Option<std::path::PathBuf>,
    /// The evidence-log entries of each commit, as it lands (`/v1/events` streams them).
    pub events: tokio::sync::broadcast::Sender<Arc<suanwang_store::EvidenceRow>>,
}

impl Inner {
    /// The run id of attempt `attempt` of job `id`: SHA-256 of the secret, the job and the
    /// attempt, 128 bits in hex. Unguessable without the secret, the same after a restart, and
    /// different for another control plane (or another database) with the same job numbers.
    pub fn run_id(&self, id: u64, attempt: u32) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.run_secret.as_bytes());
        h.update(b"/run/");
        h.update(id.to_le_bytes());
        h.update(attempt.to_le_bytes());
        h.finalize()[..16].iter().fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// What one provider's agent sites may declare in total (pending and approved alike); a
/// registration beyond it is refused. Operators' own machines are not capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderCaps {
    pub max_cores: u64,
    pub max_accelerators: u64,
    pub max_memory_gib: u64,
    /// A provider's new site may be approved only after a probe job on it found what it
    /// declared (`--require-probe`).
    pub require_probe: bool,
}

impl Default for ProviderCaps {
    fn default() -> Self {
        ProviderCaps { max_cores: 100_000, max_accelerators: 10_000, max_memory_gib: 1_048_576, require_probe: false }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Simulated sites run jobs for their declared time × this factor.
    pub time_scale: f64,
    /// The scheduling policy; `None`: `balanced` under the served network's operator policy.
    pub policy: Option<Policy>,
    /// A snapshot of engine and views is stored after this many commands, or after as many
    /// commands as the last snapshot held live jobs when that is more (a snapshot's cost grows
    /// with them); a restart loads the newest and replays only the commands after it.
    pub snapshot_every: u64,
    /// An agent silent for this long loses its site (its jobs are moved).
    pub agent_timeout: std::time::Duration,
    /// What one provider's sites may declare in total.
    pub provider_caps: ProviderCaps,
    /// Failed authentications a client may have before it gets 429.
    pub auth_limit: throttle::AuthLimit,
    /// Notified when an operator asks for a restart (`POST /v1/admin/restart`): the binary
    /// that serves re-executes itself, and the new process rebuilds from snapshot and log.
    pub restart: Arc<tokio::sync::Notify>,
    /// The price book's economy terms (`data/economy/prices.toml`).
    pub price_book: suanwang_economy::PriceBook,
    /// A new tenant wallet's credit limit, fen: 0 is prepaid (top up before submitting);
    /// [`billing::UNLIMITED`] never refuses for balance (the library's default, for tests).
    pub credit_limit_fen: u64,
    /// `false`: jobs are metered but nobody is charged — no holds, no settlements (a network
    /// that bills nobody, or the baseline `scripts/bench-billing.sh` measures billing against).
    pub billing: bool,
    /// The evidence log's signing key (`PRIVATE+KEY+…`, a C2SP signed-note key); its name is
    /// the log's origin. `None`: a key kept in the store, made on the first start.
    pub evidence_key: Option<String>,
    /// A file holding the signing key (`up`: `<data>/evidence.key`), created (mode 0600) with a
    /// fresh key named `suanwang/<control plane id>` when absent. Wins over `evidence_key`.
    pub evidence_key_file: Option<std::path::PathBuf>,
    /// Witnesses' verifier keys (`name+id+key`, type 0x04) whose cosignatures are accepted.
    pub witnesses: Vec<String>,
    /// The prefix the dataset registry issues identifiers under (`88.156.1`: an industrial-
    /// internet-style national prefix, `156` being China's ISO 3166 code; a province's node
    /// would add its own arc).
    pub id_prefix: String,
    /// The early-warning rules (`data/alerts/rules.toml` unless `--alert-rules FILE`).
    pub alert_rules: Vec<suanwang_alerts::Rule>,
    /// Where alerts go besides the log: webhooks, a user's Alertmanager.
    pub delivery: alerting::Delivery,
    /// Borders for the console's map from the operator's approved map (`geo::parse`); empty:
    /// a schematic.
    pub map: Arc<suanwang_api::console::MapLayer>,
    /// Where the twin's reports are (`suanwang twin --report DIR/NAME`), for the console.
    pub twin_reports: Option<std::path::PathBuf>,
    /// Carbon-sink credits on offer (`data/economy/carbon-credits.toml`).
    pub carbon_lots: Vec<suanwang_economy::carbon::CreditLot>,
    /// This instance of several (issue 17): its lease, for `/healthz` and `/metrics`.
    pub ha: Option<Arc<ha::Ha>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            time_scale: 1.0,
            policy: None,
            snapshot_every: 10_000,
            agent_timeout: std::time::Duration::from_secs(10),
            provider_caps: ProviderCaps::default(),
            auth_limit: throttle::AuthLimit::default(),
            restart: Arc::new(tokio::sync::Notify::new()),
            price_book: suanwang_economy::PriceBook::reference(),
            credit_limit_fen: billing::UNLIMITED,
            billing: true,
            evidence_key: None,
            evidence_key_file: None,
            witnesses: vec![],
            id_prefix: "88.156.1".into(),
            // the default rules are checked by the alerts crate's tests
            alert_rules: suanwang_alerts::default_rules().unwrap_or_default(),
            delivery: alerting::Delivery::default(),
            map: Arc::default(),
            twin_reports: None,
            carbon_lots: suanwang_economy::carbon::CreditLot::reference(),
            ha: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("random token: {0}")]
    Random(String),
    #[error("evidence log: {0}")]
    Evidence(String),
}

impl Inner {
    /// The network now (cheap: an `Arc`).
    pub fn net(&self) -> Arc<Network> {
        self.net.read().map_or_else(|p| Arc::clone(&p.into_inner()), |n| Arc::clone(&n))
    }

    pub fn set_net(&self, net: Arc<Network>) {
        if let Ok(mut n) = self.net.write() {
            *n = net;
        }
    }

    /// Owner and approval of every agent site now (cheap: an `Arc`).
    pub fn grants(&self) -> Arc<BTreeMap<String, suanwang_engine::SiteGrant>> {
        self.grants.read().map_or_else(|p| Arc::clone(&p.into_inner()), |g| Arc::clone(&g))
    }

    /// Whether each site (in the network's order) takes placements now.
    pub fn site_up(&self) -> Arc<Vec<bool>> {
        self.site_up.read().map_or_else(|p| Arc::clone(&p.into_inner()), |g| Arc::clone(&g))
    }

    /// Publishes what the handlers read of the engine: the network, the site grants, and
    /// which sites are up.
    pub fn publish(&self, engine: &suanwang_engine::Engine) {
        let net = engine.network();
        let up: Vec<bool> = (0..net.sites.len()).map(|i| engine.scheduler().site_available(i)).collect();
        if let Ok(mut u) = self.site_up.write()
            && **u != up
        {
            *u = Arc::new(up);
        }
        self.set_net(net);
        if let Ok(mut g) = self.grants.write()
            && **g != *engine.grants()
        {
            *g = Arc::new(engine.grants().clone());
        }
    }
}

/// Creates a token for `name` with `role`, stores its hash, returns the token (shown once).
pub async fn create_token(store: &AnyStore, role: Role, name: &str) -> Result<String, ServerError> {
    create_token_expiring(store, role, name, None).await
}

/// [`create_token`], accepted until `expires_at_ms` (UTC) when given.
pub async fn create_token_expiring(
    store: &AnyStore,
    role: Role,
    name: &str,
    expires_at_ms: Option<i64>,
) -> Result<String, ServerError> {
    let token = new_token().map_err(|e| ServerError::Random(e.to_string()))?;
    let row = TokenRow {
        hash: hash_token(&token),
        role: role.as_str().into(),
        name: name.into(),
        created_at_ms: actor::wall_now().0,
        expires_at_ms,
    };
    store.put_token(&row).await?;
    Ok(token)
}

/// Opens the store, migrates it, replays the log, and returns the router plus the actor's
/// task handle (the service runs until the listener stops).
pub async fn build(
    net: Arc<Network>,
    store: AnyStore,
    cfg: ServerConfig,
) -> Result<(axum::Router, tokio::task::JoinHandle<()>), ServerError> {
    build_from(net, store, cfg, None).await
}

/// The policy `cfg` names (the network's `balanced` by default).
fn policy_of(cfg: &ServerConfig, net: &Network) -> Policy {
    cfg.policy.clone().unwrap_or_else(|| Policy::named("balanced", &net.policy).unwrap_or(Policy::BALANCED))
}

/// The engine as the store has it, to keep current while this instance follows (issue 17):
/// [`actor::Replica::tail`] it, then lead from it with [`build_from`]. The same policy, time
/// scale and price book as `cfg` gives the server.
pub async fn replica(net: Arc<Network>, store: &AnyStore, cfg: &ServerConfig) -> Result<actor::Replica, ServerError> {
    let engine = actor::engine_config(&policy_of(cfg, &net), cfg.time_scale, &cfg.price_book);
    Ok(actor::Replica::load(net, engine, store).await?)
}

/// [`build`], from `replica` when given (a follower's, kept current: only the commands it has
/// not applied are replayed) instead of the snapshot and the whole log after it.
pub async fn build_from(
    net: Arc<Network>,
    store: AnyStore,
    cfg: ServerConfig,
    replica: Option<actor::Replica>,
) -> Result<(axum::Router, tokio::task::JoinHandle<()>), ServerError> {
    store.migrate().await?;
    // the first start of a database picks them; later starts read them back
    let fresh = || new_token().map_err(|e| ServerError::Random(e.to_string()));
    let identity = store.setting_or_insert("control_plane_id", &format!("cp_{}", &fresh()?[3..27])).await?;
    let run_secret = store.setting_or_insert("run_id_secret", &fresh()?).await?;
    suanwang_core::dataid::check_prefix(&cfg.id_prefix)
        .map_err(|why| ServerError::Evidence(format!("the dataset id prefix {:?}: {why}", cfg.id_prefix)))?;
    let evidence = load_evidence(&store, &cfg, &identity).await?;
    let (tx, rx) = mpsc::channel(65_536);
    let inner = Arc::new(Inner {
        base_net: Arc::clone(&net),
        net: RwLock::new(Arc::clone(&net)),
        store: store.clone(),
        tx: tx.clone(),
        views: RwLock::new(Views::default()),
        tokens: RwLock::new(HashMap::new()),
        metrics: Metrics::default(),
        agents: std::sync::Mutex::new(HashMap::new()),
        views_changed: tokio::sync::Notify::new(),
        identity,
        run_secret,
        grants: RwLock::new(Arc::default()),
        throttle: throttle::Throttle::new(cfg.auth_limit),
        require_probe: cfg.provider_caps.require_probe,
        probes: std::sync::Mutex::new(HashMap::new()),
        quota_gates: std::sync::Mutex::new(HashMap::new()),
        restart: Arc::clone(&cfg.restart),
        ha: cfg.ha.clone(),
        books: std::sync::Mutex::new(billing::Books::load(&store, cfg.price_book.clone(), cfg.credit_limit_fen).await?),
        evidence: std::sync::Mutex::new(evidence),
        upper_tiles: evidence::UpperTiles::default(),
        id_prefix: cfg.id_prefix.clone(),
        dataset_lock: tokio::sync::Mutex::new(()),
        release_lock: tokio::sync::Mutex::new(()),
        site_up: RwLock::new(Arc::default()),
        board: RwLock::new(alerting::Board::default()),
        rules_count: cfg.alert_rules.len(),
        market: std::sync::Mutex::new(
            market::Market::load(&store, cfg.carbon_lots.clone(), actor::wall_now().0).await?,
        ),
        map: Arc::clone(&cfg.map),
        twin_reports: cfg.twin_reports.clone(),
        recent_auth_failures: alerting::Recent::default(),
        recent_forbidden: alerting::Recent::default(),
        link_volumes: alerting::LinkVolumes::default(),
        job_windows: alerting::JobWindows::default(),
        events: tokio::sync::broadcast::channel(8_192).0,
    });
    inner
        .metrics
        .started_ms
        .store(u64::try_from(actor::wall_now().0).unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    let replay_started = std::time::Instant::now();
    let policy = policy_of(&cfg, &net);
    // boxed: rebuilding the engine is a large future, awaited once
    let (engine, last_seq) = match replica {
        Some(r) => Box::pin(Actor::resume(&inner, &store, r)).await?,
        None => Box::pin(Actor::replay(&inner, &store, &policy, cfg.time_scale)).await?,
    };
    inner.metrics.replay_ms.store(
        u64::try_from(replay_started.elapsed().as_millis()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
    inner.publish(&engine);
    let actor = Actor {
        inner: Arc::clone(&inner),
        engine,
        rx,
        time_scale: cfg.time_scale,
        policy,
        snapshot_every: cfg.snapshot_every.max(1),
        last_seq,
        since_snapshot: 0,
        snapshot_live: 0,
        snapshot_running: Arc::default(),
        agent_timeout: cfg.agent_timeout,
        caps: cfg.provider_caps,
        billing: cfg.billing,
    };
    let handle = tokio::spawn(actor.run());
    // time passes for the simulated sites even when nobody calls
    let ticker = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            every.tick().await;
            if ticker.send(Request::Tick).await.is_err() {
                break;
            }
        }
    });
    // the market's periodic clearing (the price book's `[market] clearing_period_s`)
    let clearer = tx.clone();
    let period = std::time::Duration::from_secs(u64::from(cfg.price_book.market.clearing_period_s.max(1)));
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let (reply, rx) = tokio::sync::oneshot::channel();
            if clearer.send(Request::Market { op: market::MarketOp::Clear, reply }).await.is_err() {
                break;
            }
            let _ = rx.await;
        }
    });
    // bids' jobs go to the engine as their contracts' windows begin (issue 16 item 1)
    let releaser = Arc::clone(&inner);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if releaser.tx.is_closed() {
                break;
            }
            market_routes::release_due_jobs(&releaser).await;
        }
    });
    // tokens created beside the control plane (`suanwang token create`, `up`) go into the
    // evidence log: now, and when they appear
    tokio::spawn(evidence::log_tokens(Arc::clone(&inner), tx.clone()));
    tokio::spawn(alerting::run(
        Arc::clone(&inner),
        tx.clone(),
        suanwang_alerts::Evaluator::new(cfg.alert_rules.clone()),
        cfg.delivery.clone(),
    ));
    Ok((routes::router(inner), handle))
}

/// The evidence log's key (given, or kept in the store from the first start, named after this
/// control plane), its witnesses, and its state rebuilt from the store.
async fn load_evidence(
    store: &AnyStore,
    cfg: &ServerConfig,
    identity: &str,
) -> Result<evidence::EvidenceLog, ServerError> {
    use suanwang_evidence::note::{ED25519, Signer, Verifier};
    let bad = |what: &str, e: &dyn std::fmt::Display| ServerError::Evidence(format!("{what}: {e}"));
    let fresh_key = || -> Result<Signer, ServerError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ServerError::Random(e.to_string()))?;
        Signer::from_seed(&format!("suanwang/{identity}"), ED25519, seed).map_err(|e| bad("key", &e))
    };
    let skey = match (&cfg.evidence_key_file, &cfg.evidence_key) {
        (Some(path), _) if path.is_file() => std::fs::read_to_string(path)?,
        (Some(path), _) => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let key = fresh_key()?.encode();
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            f.write_all(format!("{key}\n").as_bytes())?;
            f.sync_all()?;
            key
        }
        (None, Some(k)) => k.clone(),
        (None, None) => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| ServerError::Random(e.to_string()))?;
            let fresh =
                Signer::from_seed(&format!("suanwang/{identity}"), ED25519, seed).map_err(|e| bad("key", &e))?;
            store.setting_or_insert("evidence_key", &fresh.encode()).await?
        }
    };
    let signer = Signer::parse(&skey).map_err(|e| bad("the signing key", &e))?;
    let mut witnesses = Vec::new();
    for w in &cfg.witnesses {
        let v = Verifier::parse(w).map_err(|e| bad("a witness key", &e))?;
        if !v.is_witness() {
            return Err(ServerError::Evidence(format!(
                "witness key {} is not a cosignature key (type 0x04): make one with `suanwang evidence witness-key`",
                v.name()
            )));
        }
        witnesses.push(v);
    }
    evidence::EvidenceLog::load(store, signer, witnesses).await.map_err(|e| bad("loading", &e))
}

/// Serves `router` on `listener` over plain HTTP with the default limits until the process
/// ends; [`listen::serve_with`] takes TLS and other limits.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> Result<(), ServerError> {
    listen::serve_with(listener, router, listen::ListenOptions::default()).await
}
