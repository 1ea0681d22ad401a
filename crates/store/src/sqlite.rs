//! SQLite backend: one file, WAL journal, `synchronous = FULL` (a commit is on disk when it
//! returns), one writer connection (SQLite serialises writers anyway).

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::{Checkpoint, CommandRow, Store, StoreError, TokenRow, is_unique_violation};

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        job_id INTEGER,
        tenant TEXT,
        idempotency_key TEXT,
        body TEXT NOT NULL,
        events TEXT NOT NULL
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS commands_idempotency ON commands (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS tokens (
        hash TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS snapshots (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS checkpoints (
        job_id INTEGER PRIMARY KEY,
        attempt INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        data BLOB NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
];

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating) the database file `path`, or `path/suanwang.db` when `path` is a directory.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let file = if path.is_dir() { path.join("suanwang.db") } else { path.to_path_buf() };
        // readable by its owner only: SQLite gives the -wal and -shm files the database's mode
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::Config(format!("creating {}: {e}", file.display()))),
            }
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
            .map_err(StoreError::Db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await?;
        Ok(SqliteStore { pool })
    }
}

fn row_to_command(r: &sqlx::sqlite::SqliteRow) -> Result<CommandRow, sqlx::Error> {
    Ok(CommandRow {
        seq: r.try_get("seq")?,
        at_ms: r.try_get("at_ms")?,
        actor: r.try_get("actor")?,
        kind: r.try_get("kind")?,
        job_id: r.try_get("job_id")?,
        tenant: r.try_get("tenant")?,
        idempotency_key: r.try_get("idempotency_key")?,
        body: r.try_get("body")?,
        events: r.try_get("events")?,
    })
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        for m in MIGRATIONS {
            sqlx::query(*m).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn append(&self, rows: &[CommandRow]) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let res = sqlx::query(
                "INSERT INTO commands (at_ms, actor, kind, job_id, tenant, idempotency_key, body, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.at_ms)
            .bind(&r.actor)
            .bind(&r.kind)
            .bind(r.job_id)
            .bind(&r.tenant)
            .bind(&r.idempotency_key)
            .bind(&r.body)
            .bind(&r.events)
            .execute(&mut *tx)
            .await;
            match res {
                Ok(done) => out.push(done.last_insert_rowid()),
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::DuplicateKey {
                        tenant: r.tenant.clone().unwrap_or_default(),
                        key: r.idempotency_key.clone().unwrap_or_default(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn commands(&self, after: i64, limit: i64) -> Result<Vec<CommandRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM commands WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row_to_command).collect::<Result<_, _>>()?)
    }

    async fn put_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (hash, role, name, created_at_ms) VALUES (?, ?, ?, ?)")
            .bind(&t.hash)
            .bind(&t.role)
            .bind(&t.name)
            .bind(t.created_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT hash, role, name, created_at_ms FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(TokenRow {
                hash: r.try_get("hash")?,
                role: r.try_get("role")?,
                name: r.try_get("name")?,
                created_at_ms: r.try_get("created_at_ms")?,
            }),
            None => None,
        })
    }

    async fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO snapshots (seq, at_ms, body) VALUES (?, ?, ?) ON CONFLICT (seq) DO NOTHING")
            .bind(seq)
            .bind(at_ms)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        // keep this snapshot and the one before it
        sqlx::query("DELETE FROM snapshots WHERE seq < (SELECT MIN(seq) FROM (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 2) AS newest)")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_snapshot(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row =
            sqlx::query("SELECT seq, body FROM snapshots ORDER BY seq DESC LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(match row {
            Some(r) => Some((r.try_get("seq")?, r.try_get("body")?)),
            None => None,
        })
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (job_id, attempt, at_ms, data) VALUES (?, ?, ?, ?)
             ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, at_ms = excluded.at_ms, data = excluded.data
             WHERE checkpoints.attempt <= excluded.attempt",
        )
        .bind(cp.job_id)
        .bind(cp.attempt)
        .bind(cp.at_ms)
        .bind(&cp.data)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoint(&self, job_id: i64) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT attempt, at_ms, data FROM checkpoints WHERE job_id = ?")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(Checkpoint {
                job_id,
                attempt: r.try_get("attempt")?,
                at_ms: r.try_get("at_ms")?,
                data: r.try_get("data")?,
            }),
            None => None,
        })
    }

    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = ?").bind(key).fetch_one(&self.pool).await?;
        Ok(row.try_get("value")?)
    }
}
