//! PostgreSQL backend: the same schema, `BIGSERIAL` sequence, one transaction per batch.

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::{Checkpoint, CommandRow, Store, StoreError, TokenRow, is_unique_violation};

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS commands (
        seq BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        job_id BIGINT,
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
        created_at_ms BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS snapshots (
        seq BIGINT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS checkpoints (
        job_id BIGINT PRIMARY KEY,
        attempt BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        data BYTEA NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
];

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        Ok(PgStore { pool })
    }
}

fn row_to_command(r: &sqlx::postgres::PgRow) -> Result<CommandRow, sqlx::Error> {
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

impl Store for PgStore {
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
                "INSERT INTO commands (at_ms, actor, kind, job_id, tenant, idempotency_key, body, events) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            )
            .bind(r.at_ms)
            .bind(&r.actor)
            .bind(&r.kind)
            .bind(r.job_id)
            .bind(&r.tenant)
            .bind(&r.idempotency_key)
            .bind(&r.body)
            .bind(&r.events)
            .fetch_one(&mut *tx)
            .await;
            match res {
                Ok(row) => out.push(row.try_get::<i64, _>("seq")?),
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
        let rows = sqlx::query("SELECT * FROM commands WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(row_to_command).collect::<Result<_, _>>()?)
    }

    async fn put_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (hash, role, name, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&t.hash)
            .bind(&t.role)
            .bind(&t.name)
            .bind(t.created_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT hash, role, name, created_at_ms FROM tokens WHERE hash = $1")
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
        sqlx::query("INSERT INTO snapshots (seq, at_ms, body) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING")
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
            "INSERT INTO checkpoints (job_id, attempt, at_ms, data) VALUES ($1, $2, $3, $4)
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
        let row = sqlx::query("SELECT attempt, at_ms, data FROM checkpoints WHERE job_id = $1")
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
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(&self.pool).await?;
        Ok(row.try_get("value")?)
    }
}
