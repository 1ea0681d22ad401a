//! Suanwang's control plane (R3, R7, R8): the engine as a durable, authenticated HTTP/JSON
//! service under `/v1`, with `/healthz`, `/metrics` and `/openapi.json`.
//!
//! Architecture invariant: the only crate that reads the wall clock for decisions (in the
//! engine actor); every state change is appended to the store in a group commit before it is
//! acknowledged, and a restart replays the log through a fresh engine.

pub mod actor;
pub mod auth;
pub mod error;
pub mod listen;
pub mod metrics;
pub mod routes;
pub mod throttle;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use suanwang_core::Network;
use suanwang_sched::Policy;
use suanwang_store::{AnyStore, Store, StoreError, TokenRow};
use tokio::sync::mpsc;

use crate::actor::{Actor, Request};
use crate::auth::{Principal, Role, hash_token, new_token};
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
    /// Token hash → principal, filled from the store on first use.
    pub tokens: RwLock<HashMap<String, Principal>>,
    pub metrics: Metrics,
    /// Agent site → when its agent was last heard from (epoch ms).
    pub agents: std::sync::Mutex<HashMap<String, i64>>,
    /// Woken after every change of the views (agents' long-polls wait on it).
    pub views_changed: tokio::sync::Notify,
    /// Failed authentications per address and per principal.
    pub throttle: throttle::Throttle,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Simulated sites run jobs for their declared time × this factor.
    pub time_scale: f64,
    pub policy: Policy,
    /// A snapshot of engine and views is stored after this many commands; a restart loads the
    /// newest and replays only the commands after it.
    pub snapshot_every: u64,
    /// An agent silent for this long loses its site (its jobs are moved).
    pub agent_timeout: std::time::Duration,
    /// Failed authentications a client may have before it gets 429.
    pub auth_limit: throttle::AuthLimit,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            time_scale: 1.0,
            policy: Policy::named("balanced").unwrap_or(Policy::BALANCED),
            snapshot_every: 50_000,
            agent_timeout: std::time::Duration::from_secs(10),
            auth_limit: throttle::AuthLimit::default(),
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
}

/// Creates a token for `name` with `role`, stores its hash, returns the token (shown once).
pub async fn create_token(store: &AnyStore, role: Role, name: &str) -> Result<String, ServerError> {
    let token = new_token().map_err(|e| ServerError::Random(e.to_string()))?;
    let row = TokenRow {
        hash: hash_token(&token),
        role: role.as_str().into(),
        name: name.into(),
        created_at_ms: actor::wall_now().0,
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
    store.migrate().await?;
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
        throttle: throttle::Throttle::new(cfg.auth_limit),
    });
    inner
        .metrics
        .started_ms
        .store(u64::try_from(actor::wall_now().0).unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    let (engine, last_seq) = Actor::replay(&inner, &store, &cfg.policy, cfg.time_scale).await?;
    inner.set_net(engine.network());
    let actor = Actor {
        inner: Arc::clone(&inner),
        engine,
        rx,
        time_scale: cfg.time_scale,
        policy: cfg.policy,
        snapshot_every: cfg.snapshot_every.max(1),
        last_seq,
        since_snapshot: 0,
        snapshot_running: Arc::default(),
        agent_timeout: cfg.agent_timeout,
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
    Ok((routes::router(inner), handle))
}

/// Serves `router` on `listener` over plain HTTP with the default limits until the process
/// ends; [`listen::serve_with`] takes TLS and other limits.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> Result<(), ServerError> {
    listen::serve_with(listener, router, listen::ListenOptions::default()).await
}
