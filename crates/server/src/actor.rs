//! The engine's owner: one task that takes requests in batches, applies them to the engine,
//! appends the batch's commands to the store in one transaction (group commit), and only then
//! updates the views and answers. Restart = replay of the command log through a fresh engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::wire::JobView;
use axum::http::StatusCode;
use serde_json::{Value, json};
use suanwang_core::job::{Job, Work};
use suanwang_core::network::AgentSite;
use suanwang_core::{Network, Ts};
use suanwang_engine::{Command, Engine, EngineConfig, EngineError, Event, Owner, RunOutcome};
use suanwang_sched::{Config, Placement, Policy, Refusal};
use suanwang_store::{AnyStore, Batch, CommandRow, JobRow, RunLog, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::Inner;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::views::{Views, fingerprint, fresh_view, job_row};

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// What a submission is answered: the status (201 new, 200 a retry of the same key), the job's
/// id, and its view when it is in memory (a retry of a key whose job left memory reads the store).
pub type Submitted = (StatusCode, u64, Option<JobView>);

/// A submission waiting for its batch to be durable: (reply, job id, status to answer).
type PendingSubmit = (Reply<Submitted>, u64, StatusCode);

/// The version of the snapshot format: a snapshot of another version is skipped (the log is
/// replayed instead). 2: only live jobs, with running totals.
pub const SNAPSHOT_VERSION: u32 = 2;

/// Commands read from the log per page on replay; the job rows a page changed are written
/// before the next is read, so replay memory does not grow with the log.
const REPLAY_PAGE: i64 = 10_000;

#[derive(Debug)]
pub enum Request {
    Submit {
        principal: Principal,
        job: Box<Job>,
        spec: Value,
        key: Option<String>,
        reply: Reply<Submitted>,
    },
    Cancel {
        principal: Principal,
        id: u64,
        reply: Reply<JobView>,
    },
    Plan {
        job: Box<Job>,
        reply: oneshot::Sender<Result<Placement, Refusal>>,
    },
    /// An agent connects its machine as a site; answers whether it is approved.
    Register {
        principal: Principal,
        site: AgentSite,
        reply: Reply<bool>,
    },
    /// The operator approves an agent's site (optionally for another owner, a provider).
    Approve {
        principal: Principal,
        site: String,
        owner: Option<String>,
        reply: Reply<suanwang_engine::SiteGrant>,
    },
    /// The operator suspends or resumes a site.
    Suspend {
        principal: Principal,
        site: String,
        suspended: bool,
        move_jobs: bool,
        reply: Reply<()>,
    },
    /// An agent reports how a run ended, with its output.
    Report {
        principal: Principal,
        report: Box<AgentReport>,
        reply: Reply<JobView>,
    },
    /// A change of money (R4): a top-up, a credit limit, a voucher programme or grant.
    Money {
        principal: Principal,
        op: MoneyOp,
        reply: Reply<MoneyDone>,
    },
    /// A dataset registered or changed (R6): its row, logged as `kind` (`register_dataset`,
    /// `replicate_dataset`) by `actor`, in the batch's commit with its evidence entry.
    Dataset {
        actor: String,
        kind: &'static str,
        row: suanwang_store::DatasetRow,
        reply: Reply<()>,
    },
    /// Tokens created beside the control plane (R6/R7: a token's creation is in the evidence
    /// log, never the token): logged as `token_created` by `server`, marked logged in the same
    /// commit (see [`crate::evidence::log_tokens`]).
    Tokens {
        rows: Vec<suanwang_store::TokenRow>,
        reply: Reply<()>,
    },
    /// Alerts changed state (R7): each transition logged as `alert` by `server`, so it is in
    /// the evidence log.
    Alerts {
        transitions: Vec<suanwang_alerts::Transition>,
        reply: Reply<()>,
    },
    /// A market order placed or cancelled, or a clearing (R4): the book, the ledger and the
    /// market's rows change in the batch's commit.
    Market {
        op: crate::market::MarketOp,
        reply: Reply<crate::market::MarketDone>,
    },
    /// Lets time pass: timers fire (jobs start, finish).
    Tick,
}

/// A change of money, as logged (`kind` of the log row: `topup`, `credit_limit`, `programme`,
/// `grant`). The ledger's tables hold its effect; the log row is its audit record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MoneyOp {
    /// Bank → a tenant's wallet (`to: wallet`) or a funder's budget (`to: funder`).
    Topup {
        to: String,
        name: String,
        amount_fen: i64,
        transfer_id: String,
    },
    CreditLimit {
        tenant: String,
        credit_limit_fen: i64,
    },
    Programme {
        programme: Box<suanwang_economy::Programme>,
    },
    Grant {
        programme: String,
        tenant: String,
        amount_fen: i64,
    },
}

impl MoneyOp {
    fn kind(&self) -> &'static str {
        match self {
            MoneyOp::Topup { .. } => "topup",
            MoneyOp::CreditLimit { .. } => "credit_limit",
            MoneyOp::Programme { .. } => "programme",
            MoneyOp::Grant { .. } => "grant",
        }
    }
}

/// What a change of money did: whether it was new (a retry is not), and the balance it left
/// (the wallet's, the funder's, the grant's) in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoneyDone {
    pub created: bool,
    pub balance_fen: i64,
}

/// What an agent sends when a run ends.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    pub id: u64,
    pub attempt: u32,
    pub succeeded: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub cpu_seconds: f64,
    #[serde(default)]
    pub peak_memory_mib: f64,
    #[serde(default)]
    pub wall_seconds: f64,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// The streams' raw bytes, when they are not UTF-8 (the agent's `*_base64`); kept in
    /// run_logs, never in the command log.
    #[serde(skip)]
    pub raw_stdout: Option<Vec<u8>>,
    #[serde(skip)]
    pub raw_stderr: Option<Vec<u8>>,
}

/// What run_logs keeps of a stream: the last `LOG_TAIL_BYTES` of its raw bytes when the agent
/// sent them, else of its text (cut on a character boundary).
fn stored_tail(raw: Option<&[u8]>, text: &str) -> Vec<u8> {
    use suanwang_api::agent::LOG_TAIL_BYTES;
    match raw {
        Some(b) => b[b.len().saturating_sub(LOG_TAIL_BYTES)..].to_vec(),
        None => tail(text, LOG_TAIL_BYTES).into_bytes(),
    }
}

/// The last `n` bytes of `s`, on a character boundary.
pub fn tail(s: &str, n: usize) -> String {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// The server's clock: the only place the wall clock is read for decisions.
pub fn wall_now() -> Ts {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Ts(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Jobs run for their declared time × `time_scale` on the simulated sites.
fn scaled(job: &Job, time_scale: f64) -> Job {
    let mut j = job.clone();
    if let Work::RunTime { run_time_s } = j.work {
        let s = (f64::from(run_time_s) * time_scale).round().clamp(1.0, f64::from(u32::MAX));
        j.work = Work::RunTime { run_time_s: s as u32 };
    }
    j
}

#[derive(Debug)]
pub struct Actor {
    pub inner: Arc<Inner>,
    pub engine: Engine,
    pub rx: mpsc::Receiver<Request>,
    pub time_scale: f64,
    pub policy: Policy,
    pub snapshot_every: u64,
    /// Sequence number of the last command in the log.
    pub last_seq: i64,
    pub since_snapshot: u64,
    /// Live jobs in the last snapshot taken: the next waits for at least as many commands.
    pub snapshot_live: u64,
    /// Set while a snapshot is being written.
    pub snapshot_running: Arc<std::sync::atomic::AtomicBool>,
    /// An agent silent this long loses its site.
    pub agent_timeout: std::time::Duration,
    /// What one provider's sites may declare in total.
    pub caps: crate::ProviderCaps,
    /// `false`: meter only — no holds, no settlements (`--no-billing`).
    pub billing: bool,
}

/// The owner a principal becomes of a site it registers.
pub fn owner_of(p: &Principal) -> Owner {
    Owner { role: p.role.as_str().to_string(), name: p.name.clone() }
}

/// The `register_site` log row's body: the site, who registered it, and whether it was
/// approved at once.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Registration {
    site: AgentSite,
    owner: Owner,
    approved: bool,
}

impl Registration {
    /// A `register_site` row: this shape, or the bare site logged before ownership was
    /// recorded — then the site stays in service (approved), owned by whoever registered it
    /// (a provider when the site carries its name, as that rule then required).
    fn from_row(body: &Value, actor: &str) -> Option<Registration> {
        if body.get("owner").is_some() {
            return serde_json::from_value(body.clone()).ok();
        }
        let site: AgentSite = serde_json::from_value(body.clone()).ok()?;
        let role = if site.id.starts_with(&format!("{actor}-")) { "provider" } else { "operator" };
        Some(Registration { site, owner: Owner { role: role.into(), name: actor.into() }, approved: true })
    }
}

/// What a snapshot holds: the engine and the live views after command `seq`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    version: u32,
    engine: suanwang_engine::EngineSnapshot,
    views: crate::views::LiveSnapshot,
}

/// Job rows and run logs a replay changed, written page by page.
#[derive(Debug, Default)]
struct Pending {
    jobs: HashMap<u64, JobRow>,
    logs: Vec<RunLog>,
}

impl Pending {
    async fn flush(&mut self, store: &AnyStore) -> Result<(), StoreError> {
        if self.jobs.is_empty() && self.logs.is_empty() {
            return Ok(());
        }
        let mut jobs: Vec<JobRow> = self.jobs.drain().map(|(_, r)| r).collect();
        jobs.sort_by_key(|r| r.id);
        store.commit(&Batch { commands: &[], jobs: &jobs, logs: &self.logs, ..Batch::default() }).await?;
        self.logs.clear();
        Ok(())
    }
}

/// The engine's configuration under `policy`, `time_scale` and the price `book`'s spot terms.
pub fn engine_config(policy: &Policy, time_scale: f64, book: &suanwang_economy::PriceBook) -> EngineConfig {
    EngineConfig { sched: Config::default(), policy: policy.clone(), time_scale, spot: book.spot.clone() }
}

/// The engine and the live views rebuilt from the store: the newest readable snapshot, then
/// every later command re-applied at its own time. A restart loads one, applies the whole log
/// after the snapshot and leads from it ([`Actor::replay`]); a follower (issue 17) loads one
/// at start and keeps it current by tailing the log the leader appends, so that taking the
/// lease costs only the commands since its last step ([`Actor::resume`]).
pub struct Replica {
    net: Arc<Network>,
    cfg: EngineConfig,
    engine: Option<Engine>,
    views: Views,
    /// The snapshot it started from, and the last command it applied.
    from: i64,
    after: i64,
    last_command_ms: Option<i64>,
    at_end: bool,
    pending: Pending,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("from", &self.from).field("after", &self.after).finish_non_exhaustive()
    }
}

impl Replica {
    /// From the newest snapshot that can be read and restored (none: from the log's start). A
    /// snapshot of another format version, or one that does not parse or restore, is skipped
    /// with a warning.
    pub async fn load(net: Arc<Network>, cfg: EngineConfig, store: &AnyStore) -> Result<Replica, StoreError> {
        let mut r = Replica {
            net,
            cfg,
            engine: None,
            views: Views::default(),
            from: 0,
            after: 0,
            last_command_ms: None,
            at_end: false,
            pending: Pending::default(),
        };
        for (seq, body) in store.snapshots().await? {
            let snap = match serde_json::from_str::<Snapshot>(&body) {
                Ok(s) if s.version == SNAPSHOT_VERSION => s,
                Ok(s) => {
                    tracing::warn!(
                        seq,
                        version = s.version,
                        want = SNAPSHOT_VERSION,
                        "snapshot of another version skipped"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(seq, error = %e, "unreadable snapshot skipped; the log is replayed instead");
                    continue;
                }
            };
            match Engine::restore(&r.net, r.cfg.clone(), snap.engine) {
                Ok(engine) => {
                    (r.engine, r.views, r.from, r.after) = (Some(engine), Views::restore(snap.views), seq, seq);
                    break;
                }
                Err(e) => tracing::warn!(seq, error = %e, "snapshot does not restore; skipped"),
            }
        }
        Ok(r)
    }

    /// The last command applied (0: none).
    pub fn last_seq(&self) -> i64 {
        self.after
    }

    /// Whether the last step read to the log's end (its last page was not full).
    pub fn at_end(&self) -> bool {
        self.at_end
    }

    /// The network with the agents' sites, as of the last command applied.
    pub fn network(&self) -> Arc<Network> {
        self.engine.as_ref().map_or_else(|| Arc::clone(&self.net), Engine::network)
    }

    /// The agents' sites' owners and approvals, as of the last command applied.
    pub fn grants(&self) -> std::collections::BTreeMap<String, suanwang_engine::SiteGrant> {
        self.engine.as_ref().map(|e| e.grants().clone()).unwrap_or_default()
    }

    /// The copy's engine and live views as a snapshot would store them (tests compare copies).
    pub fn state(&self) -> Value {
        json!({"engine": self.engine.as_ref().map(Engine::snapshot), "views": self.views.snapshot()})
    }

    /// Applies the commands after the last one applied, at most `pages` pages of them; returns
    /// how many. `write`: the job rows they change go back to the store after each page (a
    /// restart's replay); a follower's are dropped — the leader wrote them with the commands.
    pub async fn tail(&mut self, store: &AnyStore, write: bool, pages: usize) -> Result<usize, StoreError> {
        let mut applied = 0;
        for _ in 0..pages {
            let rows = store.commands(self.after, REPLAY_PAGE).await?;
            self.at_end = rows.len() < usize::try_from(REPLAY_PAGE).unwrap_or(usize::MAX);
            if rows.is_empty() {
                break;
            }
            for (i, row) in rows.iter().enumerate() {
                self.apply(row);
                // a page is up to 10,000 commands of CPU work: let the lease's renewer and the
                // requests run between pieces of it
                if i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
            }
            applied += rows.len();
            if write {
                self.pending.flush(store).await?;
            } else {
                self.pending.jobs.clear();
                self.pending.logs.clear();
            }
        }
        Ok(applied)
    }

    /// One command of the log, at its own time: the timers due before it, then the command.
    fn apply(&mut self, row: &CommandRow) {
        self.after = row.seq;
        self.last_command_ms = Some(row.at_ms);
        let at = Ts(row.at_ms);
        let (net, cfg) = (&self.net, &self.cfg);
        let e = self.engine.get_or_insert_with(|| Engine::new(Arc::clone(net), at, cfg.clone()));
        let (views, pending, time_scale) = (&mut self.views, &mut self.pending, self.cfg.time_scale);
        let _ = e.advance_to(at);
        let timer_events = e.take_events();
        stage_and_install(views, vec![], &timer_events, &e.network(), pending);
        let body: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
        let mut fresh = vec![];
        match row.kind.as_str() {
            "submit" => {
                let Some(id) = row.job_id.and_then(|i| u64::try_from(i).ok()) else { return };
                let spec = body.get("spec").cloned().unwrap_or(Value::Null);
                let scale = body.get("time_scale").and_then(Value::as_f64).unwrap_or(time_scale);
                let bytes = serde_json::to_vec(&spec).unwrap_or_default();
                let Ok(job) = suanwang_core::job::parse_json(&bytes, &e.network(), at) else { return };
                fresh.push(fresh_view(id, &job, spec, &row.actor, at));
                let _ = e.apply(Command::Submit { id, job: Box::new(scaled(&job, scale)) });
                // the ledger refused its hold: the same refusal again
                if let Some(u) = body.get("unfunded") {
                    let fen = |k: &str| u.get(k).and_then(Value::as_i64).unwrap_or(0);
                    let _ = e.apply(Command::Unfunded {
                        id,
                        price_fen: fen("price_fen"),
                        available_fen: fen("available_fen"),
                    });
                }
            }
            "cancel" => {
                if let Some(id) = row.job_id.and_then(|i| u64::try_from(i).ok()) {
                    let _ = e.apply(Command::Cancel { id });
                }
            }
            "register_site" => {
                if let Some(r) = Registration::from_row(&body, &row.actor) {
                    let _ = e.apply(Command::RegisterSite { site: r.site, owner: r.owner, approved: r.approved });
                }
            }
            "approve_site" => {
                if let Some(site) = body.get("site").and_then(Value::as_str) {
                    let owner = body.get("owner").and_then(|o| serde_json::from_value::<Owner>(o.clone()).ok());
                    let _ = e.apply(Command::ApproveSite { site: site.to_string(), owner });
                }
            }
            "suspend" => {
                if let (Some(site), Some(suspended)) =
                    (body.get("site").and_then(Value::as_str), body.get("suspended").and_then(Value::as_bool))
                {
                    let move_jobs = body.get("move").and_then(Value::as_bool).unwrap_or(false);
                    let _ = e.apply(Command::Suspend { site: site.to_string(), suspended, move_jobs });
                }
            }
            "site_down" => {
                if let Some(site) = body.get("site").and_then(Value::as_str) {
                    let _ = e.apply(Command::SiteDown { site: site.to_string() });
                }
            }
            "reserve" => {
                if let Some(cmd) = crate::market::reserve_command(&body) {
                    let _ = e.apply(cmd);
                }
            }
            "report" => {
                if let Ok(r) = serde_json::from_value::<AgentReport>(body.clone()) {
                    // reports logged before the run_logs table carried the output in the log
                    if !r.stdout.is_empty() || !r.stderr.is_empty() {
                        pending.logs.push(RunLog {
                            job_id: i64::try_from(r.id).unwrap_or(i64::MAX),
                            attempt: i64::from(r.attempt),
                            at_ms: at.0,
                            stdout: r.stdout.clone().into_bytes(),
                            stderr: r.stderr.clone().into_bytes(),
                        });
                    }
                    let _ = e.apply(Command::Report { id: r.id, attempt: r.attempt, outcome: outcome_of(&r) });
                }
            }
            _ => {}
        }
        let events = e.take_events();
        stage_and_install(views, fresh, &events, &e.network(), pending);
    }

    /// The engine to lead with, its views and the last command: the timers fired by the
    /// batches that were made durable fire again here, into the views only (their ledger and
    /// evidence rows are in the store). Those that fell due after the last durable batch —
    /// while no process served — are left to the first batch, which settles, logs and proves
    /// them like any others: once.
    async fn finish(mut self, store: &AnyStore) -> Result<(Engine, Views, i64), StoreError> {
        let now = wall_now();
        let mut engine =
            self.engine.take().unwrap_or_else(|| Engine::new(Arc::clone(&self.net), now, self.cfg.clone()));
        let durable_until = match store.evidence_size().await? {
            0 => None,
            size => store.evidence_entries(size - 1, size).await?.last().map(|r| r.at_ms),
        };
        let until = durable_until.max(self.last_command_ms).map_or(now, |ms| Ts(ms).min(now));
        let _ = engine.advance_to(until.max(engine.now()));
        let events = engine.take_events();
        stage_and_install(&mut self.views, vec![], &events, &engine.network(), &mut self.pending);
        self.pending.flush(store).await?;
        Ok((engine, self.views, self.after))
    }
}

impl Actor {
    pub fn new_engine(inner: &Inner, policy: &Policy, time_scale: f64, now: Ts) -> Engine {
        Engine::new(Arc::clone(&inner.base_net), now, Actor::engine_config(inner, policy, time_scale))
    }

    /// The engine's configuration: the policy, the time scale, and the price book's spot terms.
    fn engine_config(inner: &Inner, policy: &Policy, time_scale: f64) -> EngineConfig {
        match inner.books.lock() {
            Ok(b) => engine_config(policy, time_scale, &b.book),
            Err(_) => engine_config(policy, time_scale, &suanwang_economy::PriceBook::reference()),
        }
    }

    /// Rebuilds engine and live views: from the newest readable snapshot, then every later
    /// command re-applied at its own time ([`Replica`]). The job rows the replayed commands
    /// change are written back to the store (idempotent: the same rows the live server wrote),
    /// so the projection is whole even after a crash between a change and its write. Returns
    /// the engine and the last sequence number.
    pub async fn replay(
        inner: &Inner,
        store: &AnyStore,
        policy: &Policy,
        time_scale: f64,
    ) -> Result<(Engine, i64), StoreError> {
        let cfg = Actor::engine_config(inner, policy, time_scale);
        let replica = Replica::load(Arc::clone(&inner.base_net), cfg, store).await?;
        Actor::resume(inner, store, replica).await
    }

    /// Leads from `replica`: the commands it has not applied yet (their job rows written back,
    /// as [`Actor::replay`] does), then the timers of the durable batches; its views become the
    /// server's.
    pub async fn resume(inner: &Inner, store: &AnyStore, mut replica: Replica) -> Result<(Engine, i64), StoreError> {
        let started = std::time::Instant::now();
        let caught_up = replica.tail(store, true, usize::MAX).await?;
        let from = replica.from;
        let (engine, views, after) = replica.finish(store).await?;
        inner.metrics.placements.store(views.totals.placements, Ordering::Relaxed);
        inner.metrics.refusals.store(views.totals.refusals, Ordering::Relaxed);
        tracing::info!(
            from_seq = from,
            to_seq = after,
            caught_up,
            live_jobs = views.live.len(),
            jobs = views.totals.jobs,
            ms = started.elapsed().as_millis() as u64,
            "state rebuilt from the snapshot and the log after it"
        );
        if let Ok(mut v) = inner.views.write() {
            *v = views;
        }
        Ok((engine, after))
    }

    /// Stores a snapshot of the engine and the live views as of the last command. The state is
    /// copied here, in order; serialising and writing it happen on a blocking thread so the
    /// actor keeps serving. One snapshot at a time; a failed one is only logged — the log still
    /// has everything.
    fn snapshot(&mut self) {
        if self.snapshot_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let copying = std::time::Instant::now();
        let views = match self.inner.views.read() {
            Ok(v) => {
                self.snapshot_live = v.live.len() as u64;
                v.snapshot()
            }
            Err(_) => {
                self.snapshot_running.store(false, Ordering::Release);
                return;
            }
        };
        let snap = Snapshot { version: SNAPSHOT_VERSION, engine: self.engine.snapshot(), views };
        let pause = copying.elapsed();
        let (seq, at, store, running) =
            (self.last_seq, self.engine.now().0, self.inner.store.clone(), Arc::clone(&self.snapshot_running));
        let inner = Arc::clone(&self.inner);
        self.since_snapshot = 0;
        tokio::spawn(async move {
            let serialising = std::time::Instant::now();
            let body = tokio::task::spawn_blocking(move || serde_json::to_string(&snap)).await;
            let serialised = serialising.elapsed();
            match body {
                Ok(Ok(body)) => {
                    let writing = std::time::Instant::now();
                    match store.put_snapshot(seq, at, &body).await {
                        Ok(()) => {
                            let m = &inner.metrics;
                            m.snapshots.fetch_add(1, Ordering::Relaxed);
                            m.snapshot_pause_us.store(pause.as_micros() as u64, Ordering::Relaxed);
                            m.snapshot_bytes.store(body.len() as u64, Ordering::Relaxed);
                            tracing::info!(
                                seq,
                                bytes = body.len(),
                                pause_ms = pause.as_secs_f64() * 1e3,
                                serialise_ms = serialised.as_secs_f64() * 1e3,
                                write_ms = writing.elapsed().as_secs_f64() * 1e3,
                                "snapshot stored"
                            );
                        }
                        Err(e) => tracing::warn!(error = %e, "snapshot not stored; the log still has everything"),
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "snapshot could not be serialised"),
                Err(e) => tracing::error!(error = %e, "snapshot task failed"),
            }
            running.store(false, Ordering::Release);
        });
    }

    pub async fn run(mut self) {
        let mut batch: Vec<Request> = Vec::with_capacity(1024);
        while let Some(first) = self.rx.recv().await {
            batch.push(first);
            while batch.len() < 1024 {
                match self.rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.inner.metrics.queue_depth.store(self.rx.len() as u64, Ordering::Relaxed);
            self.process(&mut batch).await;
            self.checkpoint().await;
        }
    }

    /// Signs a checkpoint of the durable evidence log when one is due (entries arrived and
    /// 750 ms passed: with the 250 ms tick, one at least every second while entries arrive),
    /// and stores it.
    async fn checkpoint(&self) {
        let due = self.inner.evidence.lock().ok().and_then(|mut l| l.sign_if_due(wall_now().0, false));
        if let Some(note) = due
            && let Err(e) = self.inner.store.put_note(&note).await
        {
            tracing::error!(error = %e, "a checkpoint of the evidence log could not be stored");
        }
    }

    async fn process(&mut self, batch: &mut Vec<Request>) {
        let now = wall_now();
        let _ = self.engine.advance_to(now.max(self.engine.now()));
        let now = self.engine.now();
        let timer_events = self.engine.take_events();
        let mut rows: Vec<CommandRow> = vec![];
        // (reply, job id, status) to answer once the batch is durable
        let mut pending_submits: Vec<PendingSubmit> = vec![];
        let mut pending_cancels: Vec<(Reply<JobView>, u64)> = vec![];
        let mut new_views: Vec<JobView> = vec![];
        let mut new_keys: Vec<((String, String), (u64, u64))> = vec![];
        let mut events: Vec<Event> = vec![];
        let mut pending_registers: Vec<Reply<()>> = vec![];
        let mut pending_approvals: Vec<(Reply<bool>, bool)> = vec![];
        let mut pending_grants: Vec<(Reply<suanwang_engine::SiteGrant>, suanwang_engine::SiteGrant)> = vec![];
        let mut new_logs: Vec<RunLog> = vec![];
        let mut pending_money: Vec<(Reply<MoneyDone>, MoneyDone)> = vec![];
        let mut pending_market: Vec<(Reply<crate::market::MarketDone>, crate::market::MarketDone)> = vec![];
        let mut new_datasets: Vec<suanwang_store::DatasetRow> = vec![];
        let mut tokens_logged: Vec<String> = vec![];
        for site in self.agents_lost(now) {
            if self.engine.apply(Command::SiteDown { site: site.clone() }).is_ok() {
                tracing::warn!(site = %site, "agent silent: site lost, its jobs move");
                let evs = self.engine.take_events();
                rows.push(log_row(
                    now,
                    "server",
                    "site_down",
                    None,
                    json!({"site": site, "reason": "agent heartbeat lost"}).to_string(),
                    &evs,
                ));
                events.extend(evs);
            }
        }
        for req in batch.drain(..) {
            match req {
                Request::Tick => {}
                Request::Alerts { transitions, reply } => {
                    for t in &transitions {
                        rows.push(log_row(now, "server", "alert", None, crate::alerting::transition_body(t), &[]));
                    }
                    pending_registers.push(reply);
                }
                Request::Tokens { rows: tokens, reply } => {
                    for t in tokens {
                        rows.push(log_row(
                            now,
                            "server",
                            "token_created",
                            None,
                            crate::evidence::token_record(&t),
                            &[],
                        ));
                        tokens_logged.push(t.hash);
                    }
                    pending_registers.push(reply);
                }
                Request::Dataset { actor, kind, row, reply } => {
                    let record: Value = serde_json::from_str(&row.body).unwrap_or(Value::Null);
                    let body = json!({"dataset": row.id, "tenant": row.owner, "record": record});
                    rows.push(log_row(now, &actor, kind, None, body.to_string(), &[]));
                    new_datasets.push(row);
                    pending_registers.push(reply);
                }
                Request::Plan { job, reply } => {
                    let _ = reply.send(self.plan(&job));
                }
                Request::Register { principal, site, reply } => {
                    let owner = owner_of(&principal);
                    // an operator's machine is approved at once; a provider's waits for one
                    let approved = owner.is_operator();
                    if let Err(e) = self.within_caps(&owner, &site) {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    let reg = Registration { site, owner, approved };
                    let cmd = Command::RegisterSite { site: reg.site.clone(), owner: reg.owner.clone(), approved };
                    if let Err(e) = self.engine.apply(cmd) {
                        let _ = reply.send(Err(match e {
                            EngineError::NotOwner { .. } => ApiError::forbidden(&e.to_string())
                                .field("site.id")
                                .hint("a site belongs to the principal that first registered it"),
                            _ => ApiError::new(StatusCode::CONFLICT, "bad_site", e.to_string()).field("site"),
                        }));
                        continue;
                    }
                    let evs = self.engine.take_events();
                    rows.push(log_row(
                        now,
                        &principal.name,
                        "register_site",
                        None,
                        serde_json::to_string(&reg).unwrap_or_default(),
                        &evs,
                    ));
                    events.extend(evs);
                    if let Ok(mut a) = self.inner.agents.lock() {
                        a.insert(reg.site.id.clone(), now.0);
                    }
                    let approved = self.engine.grants().get(&reg.site.id).is_some_and(|g| g.approved);
                    pending_approvals.push((reply, approved));
                }
                Request::Approve { principal, site, owner, reply } => {
                    let owner = owner.map(|name| Owner { role: "provider".into(), name });
                    if let Err(e) = self.engine.apply(Command::ApproveSite { site: site.clone(), owner: owner.clone() })
                    {
                        let _ =
                            reply.send(Err(ApiError::not_found("agent site of that name").detail(e.to_string()).hint(
                                "an agent registers a site first (POST /v1/agents/register); GET /v1/sites lists them",
                            )));
                        continue;
                    }
                    let evs = self.engine.take_events();
                    rows.push(log_row(
                        now,
                        &principal.name,
                        "approve_site",
                        None,
                        json!({"site": site, "owner": owner}).to_string(),
                        &evs,
                    ));
                    events.extend(evs);
                    if let Some(g) = self.engine.grants().get(&site) {
                        pending_grants.push((reply, g.clone()));
                    }
                }
                Request::Suspend { principal, site, suspended, move_jobs, reply } => {
                    if let Err(e) = self.engine.apply(Command::Suspend { site: site.clone(), suspended, move_jobs }) {
                        let _ = reply.send(Err(match e {
                            EngineError::Pending(_) => {
                                ApiError::new(StatusCode::CONFLICT, "pending_approval", e.to_string())
                                    .hint(format!("POST /v1/sites/{site}/approve"))
                            }
                            _ => ApiError::not_found("such site").detail(e.to_string()),
                        }));
                        continue;
                    }
                    let evs = self.engine.take_events();
                    rows.push(log_row(
                        now,
                        &principal.name,
                        "suspend",
                        None,
                        json!({"site": site, "suspended": suspended, "move": move_jobs}).to_string(),
                        &evs,
                    ));
                    events.extend(evs);
                    pending_registers.push(reply);
                }
                Request::Report { principal, report, reply } => {
                    let r = *report;
                    if let Err(e) =
                        self.engine.apply(Command::Report { id: r.id, attempt: r.attempt, outcome: outcome_of(&r) })
                    {
                        if matches!(e, EngineError::Implausible { .. }) {
                            self.inner.metrics.reports_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(job = r.id, attempt = r.attempt, by = %principal.name, error = %e, "implausible report refused");
                        }
                        let _ = reply.send(Err(match e {
                            EngineError::Implausible { field, .. } => ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "implausible_report",
                                format!("the report is not plausible: {e}"),
                            )
                            .field(field)
                            .hint("report what the executor measured; nothing of this report was stored"),
                            _ => ApiError::new(StatusCode::CONFLICT, "stale_report", e.to_string())
                                .hint("the job was moved or cancelled; stop this run"),
                        }));
                        continue;
                    }
                    let evs = self.engine.take_events();
                    // the output goes to run_logs in the same transaction, not into the log
                    let logged = AgentReport {
                        stdout: String::new(),
                        stderr: String::new(),
                        raw_stdout: None,
                        raw_stderr: None,
                        ..r.clone()
                    };
                    rows.push(log_row(
                        now,
                        &principal.name,
                        "report",
                        Some(r.id),
                        serde_json::to_string(&logged).unwrap_or_default(),
                        &evs,
                    ));
                    events.extend(evs);
                    new_logs.push(RunLog {
                        job_id: i64::try_from(r.id).unwrap_or(i64::MAX),
                        attempt: i64::from(r.attempt),
                        at_ms: now.0,
                        stdout: stored_tail(r.raw_stdout.as_deref(), &r.stdout),
                        stderr: stored_tail(r.raw_stderr.as_deref(), &r.stderr),
                    });
                    pending_cancels.push((reply, r.id));
                }
                Request::Submit { principal, job, spec, key, reply } => {
                    let tenant = job.tenant.clone();
                    let print = fingerprint(&spec);
                    if let Some(k) = &key {
                        let seen = self
                            .inner
                            .views
                            .read()
                            .ok()
                            .and_then(|v| v.keys.get(&(tenant.clone(), k.clone())).copied());
                        let in_batch = new_keys.iter().find(|(kk, _)| kk.0 == tenant && &kk.1 == k).map(|(_, x)| *x);
                        if let Some((id, was)) = seen.or(in_batch) {
                            if was == print {
                                pending_submits.push((reply, id, StatusCode::OK));
                            } else {
                                let _ = reply.send(Err(key_reused(k, id)));
                            }
                            continue;
                        }
                    }
                    let id = {
                        let Ok(mut v) = self.inner.views.write() else { continue };
                        let id = v.next_id.max(1);
                        v.next_id = id + 1;
                        id
                    };
                    new_views.push(fresh_view(id, &job, spec.clone(), &principal.name, now));
                    if let Some(k) = &key {
                        new_keys.push(((tenant.clone(), k.clone()), (id, print)));
                    }
                    let _ = self.engine.apply(Command::Submit { id, job: Box::new(scaled(&job, self.time_scale)) });
                    let mut evs = self.engine.take_events();
                    // R4: its first placement's price is held in the tenant's wallet, or it is
                    // refused for balance
                    let mut body = json!({"spec": spec, "time_scale": self.time_scale});
                    if let Some(short) = self.hold(id, &tenant, job.contract.is_some(), &evs, now) {
                        let _ = self.engine.apply(Command::Unfunded {
                            id,
                            price_fen: short.price_fen,
                            available_fen: short.available_fen,
                        });
                        evs.extend(self.engine.take_events());
                        body["unfunded"] = json!({"price_fen": short.price_fen, "available_fen": short.available_fen});
                    }
                    rows.push(CommandRow {
                        tenant: Some(tenant),
                        idempotency_key: key,
                        ..log_row(now, &principal.name, "submit", Some(id), body.to_string(), &evs)
                    });
                    events.extend(evs);
                    pending_submits.push((reply, id, StatusCode::CREATED));
                }
                Request::Market { op, reply } => {
                    let done = match (self.inner.books.lock(), self.inner.market.lock()) {
                        (Ok(mut books), Ok(mut market)) => market.apply(&mut books, op, now.0),
                        _ => Err(ApiError::unavailable("the books are unavailable")),
                    };
                    match done {
                        Ok(d) => pending_market.push((reply, d)),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                    // each new contract holds its units in the scheduler for its buyer
                    let fresh = self.inner.market.lock().map(|mut m| std::mem::take(&mut m.fresh_contracts));
                    for c in fresh.unwrap_or_default() {
                        let Some(body) = crate::market::reserve_body(&self.inner, &c) else { continue };
                        let Some(cmd) = crate::market::reserve_command(&body) else { continue };
                        match self.engine.apply(cmd) {
                            Ok(()) => {
                                let evs = self.engine.take_events();
                                rows.push(log_row(now, "server", "reserve", None, body.to_string(), &evs));
                                events.extend(evs);
                            }
                            Err(e) => {
                                tracing::warn!(contract = c.id, error = %e, "contract not reserved in the scheduler");
                            }
                        }
                    }
                }
                Request::Money { principal, op, reply } => {
                    let done = match self.inner.books.lock() {
                        Ok(mut books) => money(&mut books, &op, now.0),
                        Err(_) => Err(ApiError::unavailable("the books are unavailable")),
                    };
                    match done {
                        Ok(d) => {
                            if d.created {
                                rows.push(log_row(
                                    now,
                                    &principal.name,
                                    op.kind(),
                                    None,
                                    serde_json::to_string(&op).unwrap_or_default(),
                                    &[],
                                ));
                            }
                            pending_money.push((reply, d));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Request::Cancel { principal, id, reply } => {
                    let state = self.engine.state(id);
                    if state.is_none() {
                        let _ = reply.send(Err(ApiError::new(
                            StatusCode::CONFLICT,
                            "not_cancellable",
                            format!("job {id} has already ended"),
                        )
                        .hint("only jobs still placed, moving data or running can be cancelled")));
                        continue;
                    }
                    let _ = self.engine.apply(Command::Cancel { id });
                    let evs = self.engine.take_events();
                    rows.push(log_row(now, &principal.name, "cancel", Some(id), "{}".into(), &evs));
                    events.extend(evs);
                    pending_cancels.push((reply, id));
                }
            }
        }
        // work this batch placed to start now starts now, not at the next tick: its agent gets
        // it at once (timers are not logged; a replay fires them the same way)
        let _ = self.engine.advance_to(now);
        events.extend(self.engine.take_events());
        let all_events: Vec<Event> = timer_events.into_iter().chain(events).collect();
        // the jobs this batch changed, as they will be once it is durable: their rows go into
        // the same transaction as its commands
        let staged = match self.inner.views.read() {
            Ok(v) => v.stage(new_views, &all_events),
            Err(_) => return,
        };
        let job_rows: Vec<JobRow> = staged.values().map(|(from, v)| job_row(v, from.is_none())).collect();
        // R4: jobs that ended are settled, holds of jobs that never ran voided, programmes past
        // their window closed; the ledger's changes go into the same transaction
        // R4: the market's rows of this batch, and its log rows (before the evidence is made)
        let market_rows = match self.inner.market.lock() {
            Ok(mut m) => {
                let (staged, logs) = m.take_staged();
                for (kind, actor, body) in logs {
                    rows.push(log_row(now, &actor, kind, None, body.to_string(), &[]));
                }
                staged
            }
            Err(_) => vec![],
        };
        let crate::billing::StagedBooks { accounts, transfers, programmes, owners } = match self.inner.books.lock() {
            Ok(mut books) => {
                if self.billing {
                    self.settle(&mut books, &all_events, &staged, now);
                }
                books.expire(now.0);
                books.take_staged()
            }
            Err(_) => crate::billing::StagedBooks::default(),
        };
        // R6/R7: the batch's records, proved by entries appended in the same transaction
        let proofs = {
            let records = crate::evidence::records(
                &rows,
                &all_events,
                &transfers,
                |j| {
                    staged.get(&j).map(|(_, v)| {
                        let dataset = v.spec["input"]["dataset"].as_str().map(|d| format!("dataset/{d}"));
                        (v.tenant.clone(), dataset)
                    })
                },
                |t| owners.get(&t.id).cloned(),
            );
            match self.inner.evidence.lock() {
                Ok(log) if !records.is_empty() => Some(log.stage(records, now.0)),
                _ => None,
            }
        };
        let (evidence_rows, tiles) = proofs.as_ref().map_or((&[][..], &[][..]), |p| (&p.rows[..], &p.tiles[..]));
        // R6: a job that read a dataset and completed at a site leaves a copy there
        let copies: Vec<(String, String, u64)> = all_events
            .iter()
            .filter_map(|ev| match ev {
                Event::Completed { id, outcome, .. } => staged.get(id).and_then(|(_, v)| {
                    v.spec["input"]["dataset"].as_str().map(|d| (d.to_string(), outcome.site.clone(), *id))
                }),
                _ => None,
            })
            .collect();
        let durable = if rows.is_empty()
            && job_rows.is_empty()
            && new_logs.is_empty()
            && accounts.is_empty()
            && transfers.is_empty()
            && programmes.is_empty()
            && market_rows.is_empty()
        {
            Ok(vec![])
        } else {
            self.inner
                .store
                .commit(&Batch {
                    commands: &rows,
                    jobs: &job_rows,
                    logs: &new_logs,
                    accounts: &accounts,
                    transfers: &transfers,
                    programmes: &programmes,
                    evidence: evidence_rows,
                    tiles,
                    datasets: &new_datasets,
                    tokens_logged: &tokens_logged,
                    market: &market_rows,
                })
                .await
        };
        match durable {
            Ok(seqs) => {
                if let Some(p) = proofs {
                    if let Ok(mut log) = self.inner.evidence.lock() {
                        log.install(p.tree, now.0);
                    }
                    // `/v1/events` streams what just became durable (no receiver: nothing to do)
                    if self.inner.events.receiver_count() > 0 {
                        for row in p.rows {
                            let _ = self.inner.events.send(Arc::new(row));
                        }
                    }
                }
                for (dataset, site, job) in copies {
                    let inner = Arc::clone(&self.inner);
                    tokio::spawn(async move {
                        let Ok(id) = suanwang_core::dataid::DataId::parse(&dataset) else { return };
                        let server = Principal { role: crate::auth::Role::Operator, name: "server".into() };
                        if let Err(e) =
                            crate::datasets::add_replica(&inner, &id, &server, &site, None, "transfer", Some(job)).await
                        {
                            tracing::warn!(dataset = %dataset, site = %site, job, error = %e.body.message, "no replica recorded");
                        }
                    });
                }
                if let Some(last) = seqs.last() {
                    self.last_seq = *last;
                    self.since_snapshot += seqs.len() as u64;
                }
                self.inner.metrics.batches.fetch_add(u64::from(!rows.is_empty()), Ordering::Relaxed);
                self.inner.metrics.batch_rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
                crate::alerting::observe(&self.inner, self.engine.scheduler(), &all_events, &staged);
                {
                    let Ok(mut v) = self.inner.views.write() else { return };
                    let net = self.engine.network();
                    v.install(staged, &all_events, &net);
                    for (k, x) in new_keys {
                        v.keys.insert(k, x);
                    }
                    self.inner.metrics.placements.store(v.totals.placements, Ordering::Relaxed);
                    self.inner.metrics.refusals.store(v.totals.refusals, Ordering::Relaxed);
                    for (reply, id, status) in pending_submits {
                        let _ = reply.send(Ok((status, id, v.job(id).cloned())));
                    }
                    for (reply, id) in pending_cancels {
                        let _ = reply.send(v.job(id).cloned().ok_or_else(|| ApiError::not_found("job")));
                    }
                }
                self.inner.views_changed.notify_waiters();
                self.inner.publish(&self.engine);
                for reply in pending_registers {
                    let _ = reply.send(Ok(()));
                }
                for (reply, approved) in pending_approvals {
                    let _ = reply.send(Ok(approved));
                }
                for (reply, grant) in pending_grants {
                    let _ = reply.send(Ok(grant));
                }
                for (reply, done) in pending_money {
                    let _ = reply.send(Ok(done));
                }
                for (reply, done) in pending_market {
                    let _ = reply.send(Ok(done));
                }
                // a snapshot costs in proportion to the live jobs it holds: waiting for as many
                // commands as the last one held jobs bounds that cost to a few jobs' worth per
                // command (the live set at most doubles meanwhile), and a restart replays no
                // more commands than the newest snapshot holds jobs
                if self.since_snapshot >= self.snapshot_every.max(self.snapshot_live) {
                    self.snapshot();
                }
            }
            Err(e) => {
                if matches!(e, suanwang_store::StoreError::Fenced { .. }) {
                    // another instance leads (issue 17): this one steps down and rejoins as a follower
                    tracing::error!(error = %e, "deposed: stepping down");
                    self.inner.restart.notify_one();
                }
                tracing::error!(error = %e, "group commit failed; rebuilding the engine from the log");
                let err = ApiError::unavailable("the command log could not be written").detail(e.to_string());
                for (reply, ..) in pending_submits {
                    let _ = reply.send(Err(err.clone()));
                }
                for (reply, _) in pending_cancels {
                    let _ = reply.send(Err(err.clone()));
                }
                for reply in pending_registers {
                    let _ = reply.send(Err(err.clone()));
                }
                for (reply, _) in pending_approvals {
                    let _ = reply.send(Err(err.clone()));
                }
                for (reply, _) in pending_grants {
                    let _ = reply.send(Err(err.clone()));
                }
                for (reply, _) in pending_money {
                    let _ = reply.send(Err(err.clone()));
                }
                for (reply, _) in pending_market {
                    let _ = reply.send(Err(err.clone()));
                }
                // the books go back to what the store holds
                let (book, credit) = match self.inner.books.lock() {
                    Ok(b) => (b.book.clone(), b.credit_limit),
                    Err(_) => return,
                };
                match crate::billing::Books::load(&self.inner.store, book, credit).await {
                    Ok(b) => {
                        if let Ok(mut books) = self.inner.books.lock() {
                            *books = b;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the books could not be reloaded from the store"),
                }
                let lots = self.inner.market.lock().map(|m| m.lots.clone()).unwrap_or_default();
                match crate::market::Market::load(&self.inner.store, lots, now.0).await {
                    Ok(m) => {
                        if let Ok(mut market) = self.inner.market.lock() {
                            *market = m;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "the market could not be reloaded from the store"),
                }
                // nothing of this batch is durable: go back to what the log says
                // boxed: the replay's future is large, and this path is rare
                if let Ok((engine, last)) =
                    Box::pin(Actor::replay(&self.inner, &self.inner.store, &self.policy, self.time_scale)).await
                {
                    self.engine = engine;
                    self.last_seq = last;
                    self.inner.publish(&self.engine);
                }
            }
        }
    }

    /// Holds the price of job `id`'s first placement (when `evs` placed it) in `tenant`'s
    /// wallet; `Some` when the wallet cannot hold it.
    fn hold(
        &self,
        id: u64,
        tenant: &str,
        on_contract: bool,
        evs: &[Event],
        now: Ts,
    ) -> Option<crate::billing::Shortfall> {
        if !self.billing || !evs.iter().any(|e| matches!(e, Event::Placed { id: p, .. } if *p == id)) {
            return None;
        }
        let meter = self.engine.planned_meter(id)?;
        let meter = if on_contract { crate::market::prepaid(meter) } else { *meter };
        let mut books = self.inner.books.lock().ok()?;
        let price = crate::billing::estimate(&books.book, &meter);
        books.hold(id, tenant, price, now.0).err()
    }

    /// Settles the jobs `events` ended (their views in `staged`), voids the holds of jobs that
    /// never ran.
    fn settle(&self, books: &mut crate::billing::Books, events: &[Event], staged: &crate::views::Staged, now: Ts) {
        let net = self.engine.network();
        let zero = |m: &suanwang_engine::Meter| m.money_fen == 0 && m.ucu_hours == 0.0;
        for e in events {
            let (id, meter, site) = match e {
                Event::Completed { id, outcome, .. } => (*id, &outcome.meter, Some(outcome.site.as_str())),
                Event::Failed { id, meter, .. } | Event::Cancelled { id, meter, .. } if !zero(meter) => {
                    (*id, meter, None)
                }
                Event::Failed { id, .. } | Event::Cancelled { id, .. } | Event::Refused { id, .. } => {
                    books.void(*id, now.0);
                    continue;
                }
                _ => continue,
            };
            let Some((_, view)) = staged.get(&id) else {
                books.void(id, now.0);
                continue;
            };
            let site = site.or(view.site.as_deref()).unwrap_or("");
            let s = net.sites.iter().position(|x| x.id == site);
            let hub = s.and_then(|i| net.sites[i].hub.as_deref()).unwrap_or("");
            let region = s.map_or("", |i| net.sites[i].region.as_str());
            let origin = view.spec.get("origin").and_then(Value::as_str).unwrap_or("");
            let location = view.spec.pointer("/input/location").and_then(Value::as_str);
            let provider = crate::billing::provider_of(&books.book, &net, self.engine.grants(), site);
            let parties = &books.book.parties;
            let carrier = match meter.transfer_mode {
                None => None,
                Some(suanwang_sched::TransferMode::Express) => Some(parties.express_carrier.clone()),
                Some(_) => {
                    let link = location.zip(s).and_then(|(l, si)| self.engine.scheduler().route_link(l, si));
                    Some(match link.map(|l| net.links[l].kind) {
                        Some(suanwang_core::network::LinkKind::Access) => parties.access_carrier.clone(),
                        _ => parties.backbone_carrier.clone(),
                    })
                }
            };
            // a job on a market contract has paid for its compute and energy at the auction
            let prepaid;
            let meter = if view.spec.get("contract").is_some_and(|c| !c.is_null()) {
                prepaid = crate::market::prepaid(meter);
                &prepaid
            } else {
                meter
            };
            let job = crate::billing::SettleJob {
                job: id,
                tenant: &view.tenant,
                origin,
                kind: &view.kind,
                places: [site, hub, region],
                provider: &provider,
                carrier: carrier.as_deref(),
                meter,
            };
            books.settle(&job, now.0);
        }
    }

    /// A dry run on the live load, with run times scaled as submissions are: nothing is
    /// reserved.
    /// Agents silent for longer than the timeout lose their sites: the engine moves their jobs.
    fn agents_lost(&mut self, now: Ts) -> Vec<String> {
        let timeout_ms = i64::try_from(self.agent_timeout.as_millis()).unwrap_or(i64::MAX);
        let Ok(seen) = self.inner.agents.lock() else { return vec![] };
        let net = self.engine.network();
        seen.iter()
            .filter(|(_, last)| now.0 - **last > timeout_ms)
            .filter_map(|(site, _)| {
                net.sites
                    .iter()
                    .position(|s| &s.id == site)
                    .filter(|i| self.engine.scheduler().site_available(*i))
                    .map(|_| site.clone())
            })
            .collect()
    }

    /// A provider's sites may declare at most its caps in total (a site it registers again
    /// counts once). Operators' machines are not capped.
    fn within_caps(&self, owner: &Owner, site: &AgentSite) -> Result<(), ApiError> {
        if owner.is_operator() || self.engine.grants().contains_key(&site.id) {
            return Ok(());
        }
        let net = self.engine.network();
        let over = |what: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "over_cap", what)
                .field("site.pools")
                .hint("the operator raises the caps with `serve`/`up` --max-…-per-provider")
        };
        let held = self
            .engine
            .owned_capacity(owner)
            .and_then(|h| h.checked_add(net.agent_capacity(site)?))
            .ok_or_else(|| over(format!("{owner}'s sites would declare more than a u64 can count")))?;
        let caps = self.caps;
        let memory_gib = held.memory_mib.div_ceil(1024);
        if held.cores > caps.max_cores {
            return Err(over(format!(
                "{owner}'s sites would declare {} cores; the cap is {} per provider (--max-cores-per-provider)",
                held.cores, caps.max_cores
            )));
        }
        if held.accelerators > caps.max_accelerators {
            return Err(over(format!(
                "{owner}'s sites would declare {} accelerator cards; the cap is {} per provider \
                 (--max-accelerators-per-provider)",
                held.accelerators, caps.max_accelerators
            )));
        }
        if memory_gib > caps.max_memory_gib {
            return Err(over(format!(
                "{owner}'s sites would declare {memory_gib} GiB of memory; the cap is {} GiB per provider \
                 (--max-memory-gib-per-provider)",
                caps.max_memory_gib
            )));
        }
        Ok(())
    }

    fn plan(&mut self, job: &Job) -> Result<Placement, Refusal> {
        self.engine.plan(&scaled(job, self.time_scale), &self.policy)
    }
}

/// Replay: the views `events` (and `fresh` jobs) give, installed at once; their rows are kept
/// for the page's write.
fn stage_and_install(views: &mut Views, fresh: Vec<JobView>, events: &[Event], net: &Network, pending: &mut Pending) {
    if fresh.is_empty() && events.is_empty() {
        return;
    }
    let staged = views.stage(fresh, events);
    for (id, (from, v)) in &staged {
        let row = job_row(v, from.is_none());
        match pending.jobs.entry(*id) {
            // the page's first row of a new job carries its spec: later rows keep it
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let spec = std::mem::take(&mut o.get_mut().spec);
                o.insert(row);
                if o.get().spec.is_empty() {
                    o.get_mut().spec = spec;
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(row);
            }
        }
    }
    views.install(staged, events, net);
}

/// The command-log row of a command applied at `now` by `actor`, with the events it caused.
fn log_row(now: Ts, actor: &str, kind: &str, job_id: Option<u64>, body: String, evs: &[Event]) -> CommandRow {
    CommandRow {
        seq: 0,
        at_ms: now.0,
        actor: actor.to_string(),
        kind: kind.to_string(),
        job_id: job_id.and_then(|id| i64::try_from(id).ok()),
        tenant: None,
        idempotency_key: None,
        body,
        events: serde_json::to_string(evs).unwrap_or_else(|_| "[]".into()),
    }
}

fn outcome_of(r: &AgentReport) -> RunOutcome {
    RunOutcome {
        succeeded: r.succeeded,
        reason: r.reason.clone(),
        cpu_seconds: r.cpu_seconds,
        peak_memory_mib: r.peak_memory_mib,
        wall_seconds: r.wall_seconds,
    }
}

pub use crate::views::terminal;

/// A key used before with another spec: retrying must send the same request.
pub fn key_reused(key: &str, id: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        format!("Idempotency-Key {key:?} was used for job {id} with a different spec"),
    )
    .field("Idempotency-Key")
    .hint("a retry sends the same body with the same key; a new job needs a new key")
}

/// Applies a change of money to the books (staged for the batch's commit).
fn money(books: &mut crate::billing::Books, op: &MoneyOp, now_ms: i64) -> Result<MoneyDone, ApiError> {
    use crate::billing::MoneyError;
    use suanwang_economy::{AccountKind, Applied};
    let bad = |e: MoneyError| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        let code = match e.status {
            404 => "not_found",
            409 => "conflict",
            _ => "invalid_money",
        };
        ApiError::new(status, code, e.reason).field(e.field)
    };
    let balance = |books: &crate::billing::Books, kind, name: &str| {
        books.find(kind, name).map_or(0, |a| i64::try_from(a.balance()).unwrap_or(i64::MAX))
    };
    match op {
        MoneyOp::Topup { to, name, amount_fen, transfer_id } => {
            let kind = match to.as_str() {
                "wallet" => AccountKind::Wallet,
                "funder" => AccountKind::Funder,
                _ => {
                    return Err(bad(MoneyError {
                        field: "to".into(),
                        reason: "must be wallet or funder".into(),
                        status: 422,
                    }));
                }
            };
            let id = crate::billing::parse_hex(transfer_id).ok_or_else(|| {
                bad(MoneyError { field: "transfer_id".into(), reason: "must be 32 hex digits".into(), status: 422 })
            })?;
            let r = books.topup(kind, name, *amount_fen, id, now_ms).map_err(bad)?;
            Ok(MoneyDone { created: r == Applied::Created, balance_fen: balance(books, kind, name) })
        }
        MoneyOp::CreditLimit { tenant, credit_limit_fen } => {
            books.set_credit_limit(tenant, *credit_limit_fen, now_ms).map_err(bad)?;
            Ok(MoneyDone { created: true, balance_fen: balance(books, AccountKind::Wallet, tenant) })
        }
        MoneyOp::Programme { programme } => {
            let r = books.create_programme((**programme).clone(), now_ms).map_err(bad)?;
            Ok(MoneyDone { created: r == Applied::Created, balance_fen: programme.budget_fen })
        }
        MoneyOp::Grant { programme, tenant, amount_fen } => {
            let left = books.grant(programme, tenant, *amount_fen, now_ms).map_err(bad)?;
            Ok(MoneyDone { created: true, balance_fen: left })
        }
    }
}
