//! Suanwang's storage (R7 durability): one `Store` trait, an SQLite implementation (the
//! embedded default, WAL) and a PostgreSQL one, with their migrations. One conformance suite
//! (`tests/store`) runs against both.
//!
//! What is stored is the command log: every accepted command (a job submitted, a job
//! cancelled, a site lost…) with its time, its actor and the events it produced, appended in
//! group commits — one transaction per batch of requests — before any of them is
//! acknowledged. The engine is pure, so replaying the log through a fresh engine rebuilds the
//! state exactly. Tokens are stored as SHA-256 hashes, never in clear.
//!
//! Beside the log, the store keeps the job projection (R7: history lives in the database, not in
//! the server's memory): one `jobs` row per job ever submitted, with its latest state, and one
//! `run_logs` row per job run by an agent (the tail of its output, as bytes). Both are written in
//! the same transaction as the commands that changed them ([`Store::commit`]), so the table is
//! never behind what was acknowledged; the server lists and reads finished jobs from here.
//!
//! Architecture invariant: the only crate that speaks SQL.

mod postgres;
mod sqlite;

use std::future::Future;

use serde::{Deserialize, Serialize};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// One entry of the command log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRow {
    /// Position in the log, assigned by the store (ignored on append).
    pub seq: i64,
    /// Epoch milliseconds, UTC.
    pub at_ms: i64,
    /// Name of the principal who issued it.
    pub actor: String,
    /// `submit`, `cancel`, `site_down`, …
    pub kind: String,
    pub job_id: Option<i64>,
    pub tenant: Option<String>,
    pub idempotency_key: Option<String>,
    /// The command's body (JSON).
    pub body: String,
    /// The events it produced (JSON array).
    pub events: String,
}

/// One job as the projection holds it: its latest state after the last group commit. Times are
/// epoch milliseconds (UTC); `meter`, `usage` and `spec` are JSON documents the server owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: i64,
    pub tenant: String,
    pub name: String,
    pub kind: String,
    /// `submitted`, `placed`, `running`, `completed`, …
    pub state: String,
    pub site: Option<String>,
    pub pool: Option<String>,
    pub submitted_at_ms: i64,
    pub submitted_by: String,
    pub updated_at_ms: i64,
    /// The planned start and end of the last placement.
    pub start_at_ms: Option<i64>,
    pub end_at_ms: Option<i64>,
    /// When its last attempt actually started and when the job ended.
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub attempts: i64,
    pub reason: Option<String>,
    pub meter: Option<String>,
    pub usage: Option<String>,
    /// The spec as submitted (written with the first row; later updates leave it).
    pub spec: String,
}

/// The output a job's last reported run left: the tail of each stream, as bytes (output need
/// not be UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLog {
    pub job_id: i64,
    pub attempt: i64,
    pub at_ms: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What one group commit writes, in one transaction: commands appended to the log, job rows
/// inserted or updated (the last row of a job wins), run logs replaced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch<'a> {
    pub commands: &'a [CommandRow],
    pub jobs: &'a [JobRow],
    pub logs: &'a [RunLog],
}

/// A page of `GET /v1/jobs`: jobs with `id > after`, in id order, filtered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    pub state: Option<String>,
    pub tenant: Option<String>,
    pub after: i64,
    pub limit: i64,
}

/// A stored credential: the token's hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRow {
    pub hash: String,
    pub role: String,
    pub name: String,
    pub created_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("idempotency key {key:?} of tenant {tenant:?} is already used")]
    DuplicateKey { tenant: String, key: String },
    #[error("{0}")]
    Config(String),
}

/// What every storage backend provides. All appends of one call are one transaction.
pub trait Store: Send + Sync {
    /// Creates or upgrades the schema; safe to call on every start.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes `batch` atomically: appends its commands in order (returning their sequence
    /// numbers), upserts its job rows (all but the spec on conflict) and replaces its run logs.
    fn commit(&self, batch: &Batch<'_>) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;
    /// Appends `rows` atomically, in order; returns their sequence numbers.
    fn append(&self, rows: &[CommandRow]) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send {
        async move { self.commit(&Batch { commands: rows, ..Batch::default() }).await }
    }
    /// Job `id`'s row.
    fn job(&self, id: i64) -> impl Future<Output = Result<Option<JobRow>, StoreError>> + Send;
    /// A page of jobs (see [`JobQuery`]).
    fn jobs(&self, q: &JobQuery) -> impl Future<Output = Result<Vec<JobRow>, StoreError>> + Send;
    /// Job `id`'s run log.
    fn run_log(&self, id: i64) -> impl Future<Output = Result<Option<RunLog>, StoreError>> + Send;
    /// The submission that used `key` for `tenant`: (job id, command body).
    fn submission(
        &self,
        tenant: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send;
    /// Up to `limit` rows with `seq > after`, in order.
    fn commands(&self, after: i64, limit: i64) -> impl Future<Output = Result<Vec<CommandRow>, StoreError>> + Send;
    fn put_token(&self, token: &TokenRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn token(&self, hash: &str) -> impl Future<Output = Result<Option<TokenRow>, StoreError>> + Send;
    /// Stores a snapshot of the state after command `seq` (older snapshots but the previous
    /// one are dropped).
    fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest snapshot: (seq, body).
    fn latest_snapshot(&self) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send {
        async move { Ok(self.snapshots().await?.into_iter().next()) }
    }
    /// The snapshots kept (at most two), newest first: (seq, body).
    fn snapshots(&self) -> impl Future<Output = Result<Vec<(i64, String)>, StoreError>> + Send;
    /// Keeps `cp` as its job's checkpoint, replacing the one before unless that one was taken
    /// by a later attempt (a late write from a superseded attempt changes nothing).
    fn put_checkpoint(&self, cp: &Checkpoint) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Job `job_id`'s newest checkpoint.
    fn checkpoint(&self, job_id: i64) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;
    /// The value of setting `key`, storing `value` first when it has none: the first writer
    /// wins, and every caller gets what is stored (the control plane's identity and secret).
    fn setting_or_insert(&self, key: &str, value: &str) -> impl Future<Output = Result<String, StoreError>> + Send;
}

/// A job's checkpoint: what its run left in its checkpoint directory (a gzipped tar), so a later
/// attempt on another site resumes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub job_id: i64,
    pub attempt: i64,
    pub at_ms: i64,
    pub data: Vec<u8>,
}

/// Either backend, chosen by URL: `sqlite://PATH` (or a directory) or `postgres://…`.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    pub async fn open(url: &str) -> Result<AnyStore, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyStore::Postgres(PgStore::connect(url).await?))
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            Ok(AnyStore::Sqlite(SqliteStore::open(std::path::Path::new(path)).await?))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

impl Store for AnyStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.migrate().await,
            AnyStore::Postgres(s) => s.migrate().await,
        }
    }

    async fn commit(&self, batch: &Batch<'_>) -> Result<Vec<i64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.commit(batch).await,
            AnyStore::Postgres(s) => s.commit(batch).await,
        }
    }

    async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.job(id).await,
            AnyStore::Postgres(s) => s.job(id).await,
        }
    }

    async fn jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.jobs(q).await,
            AnyStore::Postgres(s) => s.jobs(q).await,
        }
    }

    async fn run_log(&self, id: i64) -> Result<Option<RunLog>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.run_log(id).await,
            AnyStore::Postgres(s) => s.run_log(id).await,
        }
    }

    async fn submission(&self, tenant: &str, key: &str) -> Result<Option<(i64, String)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.submission(tenant, key).await,
            AnyStore::Postgres(s) => s.submission(tenant, key).await,
        }
    }

    async fn commands(&self, after: i64, limit: i64) -> Result<Vec<CommandRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.commands(after, limit).await,
            AnyStore::Postgres(s) => s.commands(after, limit).await,
        }
    }

    async fn put_token(&self, token: &TokenRow) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.put_token(token).await,
            AnyStore::Postgres(s) => s.put_token(token).await,
        }
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.token(hash).await,
            AnyStore::Postgres(s) => s.token(hash).await,
        }
    }

    async fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.put_snapshot(seq, at_ms, body).await,
            AnyStore::Postgres(s) => s.put_snapshot(seq, at_ms, body).await,
        }
    }

    async fn snapshots(&self) -> Result<Vec<(i64, String)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.snapshots().await,
            AnyStore::Postgres(s) => s.snapshots().await,
        }
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.put_checkpoint(cp).await,
            AnyStore::Postgres(s) => s.put_checkpoint(cp).await,
        }
    }

    async fn checkpoint(&self, job_id: i64) -> Result<Option<Checkpoint>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.checkpoint(job_id).await,
            AnyStore::Postgres(s) => s.checkpoint(job_id).await,
        }
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.setting_or_insert(key, value).await,
            AnyStore::Postgres(s) => s.setting_or_insert(key, value).await,
        }
    }
}

/// Runs one administrative statement (`CREATE DATABASE …`) on the PostgreSQL server at `url`:
/// for test set-up, where `psql` may not be installed.
pub async fn admin_execute(url: &str, sql: &str) -> Result<(), StoreError> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The columns of `jobs`, in the order the backends bind them.
const JOB_COLUMNS: &str = "id, tenant, name, kind, state, site, pool, submitted_at_ms, submitted_by, updated_at_ms, \
    start_at_ms, end_at_ms, started_at_ms, ended_at_ms, attempts, reason, meter, usage, spec";

/// What an upsert of a job row changes when the job exists: everything but what a submission fixed.
const JOB_UPDATE: &str = "state = excluded.state, site = excluded.site, pool = excluded.pool, \
    updated_at_ms = excluded.updated_at_ms, start_at_ms = excluded.start_at_ms, end_at_ms = excluded.end_at_ms, \
    started_at_ms = excluded.started_at_ms, ended_at_ms = excluded.ended_at_ms, attempts = excluded.attempts, \
    reason = excluded.reason, meter = excluded.meter, usage = excluded.usage";

/// Jobs of one batch in the order to write them: the last row of each job only.
fn last_row_per_job(jobs: &[JobRow]) -> Vec<&JobRow> {
    let mut seen = std::collections::HashSet::with_capacity(jobs.len());
    let mut out: Vec<&JobRow> = jobs.iter().rev().filter(|j| seen.insert(j.id)).collect();
    out.reverse();
    out
}

/// Splits `rows` into chunks for multi-row statements: as many chunks of `max` rows as fit, then
/// the rest in powers of two, largest first. Each chunk length is `max` or a power of two below
/// it, so a connection prepares at most `log2(max) + 1` shapes of a statement, whatever the batch
/// sizes: its statement cache (and the memory that holds the compiled programs) stays bounded.
fn statement_chunks<T>(rows: &[T], max: usize) -> Vec<&[T]> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = if rest.len() >= max { max } else { 1 << rest.len().ilog2() };
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// After a batch's insert failed on the idempotency index: the first of `rows` whose key is
/// already logged, or repeats an earlier row's, as [`StoreError::DuplicateKey`] (the rare path:
/// the server checks keys before it logs them). Keyed commands are submissions, which
/// [`Store::submission`] finds.
async fn duplicate_key<S: Store>(store: &S, rows: &[CommandRow]) -> StoreError {
    let mut seen = std::collections::HashSet::new();
    for r in rows {
        let (Some(tenant), Some(key)) = (&r.tenant, &r.idempotency_key) else { continue };
        let logged = match store.submission(tenant, key).await {
            Ok(found) => found.is_some(),
            Err(e) => return e,
        };
        if logged || !seen.insert((tenant, key)) {
            return StoreError::DuplicateKey { tenant: tenant.clone(), key: key.clone() };
        }
    }
    StoreError::Config("a unique constraint failed, but no command's idempotency key repeats".into())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::statement_chunks;

    #[test]
    fn statement_chunks_cover_every_row_in_order_with_few_shapes() {
        for n in 0..300usize {
            let rows: Vec<usize> = (0..n).collect();
            let chunks = statement_chunks(&rows, 64);
            let flat: Vec<usize> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(flat, rows, "n = {n}");
            for c in &chunks {
                assert!(c.len() == 64 || (c.len().is_power_of_two() && c.len() < 64), "n = {n}: {}", c.len());
            }
        }
        let rows = [0u8; 100];
        let shapes: Vec<usize> = statement_chunks(&rows, 64).iter().map(|c| c.len()).collect();
        assert_eq!(shapes, vec![64, 32, 4]);
    }
}
