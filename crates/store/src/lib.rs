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
    /// Appends `rows` atomically, in order; returns their sequence numbers.
    fn append(&self, rows: &[CommandRow]) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;
    /// Up to `limit` rows with `seq > after`, in order.
    fn commands(&self, after: i64, limit: i64) -> impl Future<Output = Result<Vec<CommandRow>, StoreError>> + Send;
    fn put_token(&self, token: &TokenRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn token(&self, hash: &str) -> impl Future<Output = Result<Option<TokenRow>, StoreError>> + Send;
    /// Stores a snapshot of the state after command `seq` (older snapshots but the previous
    /// one are dropped).
    fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest snapshot: (seq, body).
    fn latest_snapshot(&self) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send;
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

    async fn append(&self, rows: &[CommandRow]) -> Result<Vec<i64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.append(rows).await,
            AnyStore::Postgres(s) => s.append(rows).await,
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

    async fn latest_snapshot(&self) -> Result<Option<(i64, String)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.latest_snapshot().await,
            AnyStore::Postgres(s) => s.latest_snapshot().await,
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

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
