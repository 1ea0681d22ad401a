//! PostgreSQL backend: the same schema, `BIGSERIAL` sequence, one transaction per batch.

use std::sync::{Arc, RwLock};

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::{
    ACCOUNT_COLUMNS, ACCOUNT_UPDATE, AccountRow, Batch, Checkpoint, CommandRow, DatasetRow, EVIDENCE_COLUMNS,
    EVIDENCE_MIGRATIONS, EvidenceRow, JOB_COLUMNS, JOB_UPDATE, JobQuery, JobRow, LEDGER_MIGRATIONS, MARKET_COLUMNS,
    MARKET_MIGRATIONS, MARKET_UPDATE, MarketQuery, MarketRow, NoteRow, ProgrammeRow, RunLog, Store, StoreError, TOKEN,
    TRANSFER_COLUMNS, TRANSFER_PENDING, TileRow, TokenRow, TransferQuery, TransferRow, UNLOGGED_TOKENS, about_filter,
    duplicate_key, is_unique_violation, last_row_per_dataset, last_row_per_job, last_row_per_market, market_limit,
    market_sql, transfer_filter,
};

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
    "CREATE TABLE IF NOT EXISTS jobs (
        id BIGINT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        site TEXT,
        pool TEXT,
        submitted_at_ms BIGINT NOT NULL,
        submitted_by TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        start_at_ms BIGINT,
        end_at_ms BIGINT,
        started_at_ms BIGINT,
        ended_at_ms BIGINT,
        attempts BIGINT NOT NULL,
        reason TEXT,
        meter TEXT,
        usage TEXT,
        spec TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, id)",
    "CREATE TABLE IF NOT EXISTS run_logs (
        job_id BIGINT PRIMARY KEY,
        attempt BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        stdout BYTEA NOT NULL,
        stderr BYTEA NOT NULL
    )",
];

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The leader's fence (issue 17): once set, every write transaction first extends the
    /// lease of this instance at this epoch, and fails with `StoreError::Fenced` when another
    /// instance holds it — a deposed leader can never append.
    fence: Arc<RwLock<Option<Fence>>>,
}

/// Which instance writes, at which epoch, and how long each write extends its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub instance: String,
    pub epoch: i64,
    pub lease_ms: i64,
}

/// The leader's lease as the database holds it (times by the database's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Where the leader answers (its `--advertise` URL).
    pub url: String,
    pub epoch: i64,
    /// Until the lease expires (negative: expired that long ago), ms.
    pub remaining_ms: i64,
}

/// The lease's table: one row; `epoch` only grows. And the instances, to refuse a second one
/// of the same name while the first is alive.
const HA_MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS leader_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        url TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )",
    "INSERT INTO leader_lease (id, holder, url, epoch, expires_at) VALUES (1, '', '', 0, 'epoch')
     ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS instances (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        token TEXT NOT NULL,
        seen_at TIMESTAMPTZ NOT NULL
    )",
];

impl PgStore {
    /// Connects to `url`. A URL of several hosts (`postgres://u@h1:5432,h2:5432/db`, as libpq
    /// and a failover manager's connection string give) connects to the first that accepts and
    /// is not in recovery: the primary.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let candidates = host_urls(url);
        let mut last = None;
        for one in &candidates {
            match PgPoolOptions::new().max_connections(8).connect(one).await {
                Ok(pool) if candidates.len() == 1 => return Ok(PgStore { pool, fence: Arc::default() }),
                Ok(pool) => match sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&pool).await {
                    Ok(false) => return Ok(PgStore { pool, fence: Arc::default() }),
                    Ok(true) => last = Some(StoreError::Config(format!("{} is a standby", redact(one)))),
                    Err(e) => last = Some(e.into()),
                },
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Config("no host in the database URL".into())))
    }

    /// The lease now.
    pub async fn lease(&self) -> Result<Lease, StoreError> {
        let r = sqlx::query(
            "SELECT holder, url, epoch,
                    (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT AS remaining_ms
             FROM leader_lease WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Lease {
            holder: r.try_get("holder")?,
            url: r.try_get("url")?,
            epoch: r.try_get("epoch")?,
            remaining_ms: r.try_get("remaining_ms")?,
        })
    }

    /// Takes the lease when it has expired (or is this instance's own, from before a restart),
    /// at the next epoch; `None` while another instance holds it.
    pub async fn try_acquire(&self, instance: &str, url: &str, lease_ms: i64) -> Result<Option<i64>, StoreError> {
        let epoch = sqlx::query_scalar::<_, i64>(
            "UPDATE leader_lease SET holder = $1, url = $2, epoch = epoch + 1,
                    expires_at = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
             WHERE id = 1 AND (expires_at < clock_timestamp() OR holder = $1 OR holder = '')
             RETURNING epoch",
        )
        .bind(instance)
        .bind(url)
        .bind(lease_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(epoch)
    }

    /// From now on every write checks and extends `fence`'s lease (`None`: no fencing).
    pub fn set_fence(&self, fence: Option<Fence>) {
        if let Ok(mut f) = self.fence.write() {
            *f = fence;
        }
    }

    /// Extends the fenced lease beside the writes (when there are none); `Fenced` when another
    /// instance holds it.
    pub async fn renew(&self) -> Result<(), StoreError> {
        let Some(f) = self.current_fence() else { return Ok(()) };
        let mut c = self.pool.acquire().await?;
        check_fence(&mut c, &f).await
    }

    fn current_fence(&self) -> Option<Fence> {
        self.fence.read().ok().and_then(|f| f.clone())
    }

    /// Registers instance `name` (process `token`): refused while another process of that name
    /// was seen within `stale_ms`; afterwards, called again to say it is alive.
    pub async fn register_instance(&self, name: &str, url: &str, token: &str, stale_ms: i64) -> Result<(), StoreError> {
        let taken = sqlx::query_scalar::<_, String>(
            "INSERT INTO instances (name, url, token, seen_at) VALUES ($1, $2, $3, clock_timestamp())
             ON CONFLICT (name) DO UPDATE SET url = $2, token = $3, seen_at = clock_timestamp()
               WHERE instances.token = $3
                  OR instances.seen_at < clock_timestamp() - make_interval(secs => $4::double precision / 1000)
             RETURNING token",
        )
        .bind(name)
        .bind(url)
        .bind(token)
        .bind(stale_ms)
        .fetch_optional(&self.pool)
        .await?;
        if taken.is_none() {
            let other: Option<String> = sqlx::query_scalar("SELECT url FROM instances WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
            return Err(StoreError::Config(format!(
                "instance {name:?} is already running (at {}): give each instance its own --instance",
                other.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// One URL per host of a multi-host URL (`postgres://u:p@h1:1,h2:2/db?x=y` → `…@h1:1/db?x=y`, …).
fn host_urls(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return vec![url.to_string()] };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (format!("{a}@"), r),
        None => (String::new(), rest),
    };
    let (hosts, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !hosts.contains(',') {
        return vec![url.to_string()];
    }
    hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("{scheme}://{auth}{h}{tail}")).collect()
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_string(),
    }
}

/// Extends the lease of `f`'s instance at its epoch, in the caller's transaction: the write
/// that follows is the leader's, or nothing is written.
async fn check_fence(c: &mut sqlx::PgConnection, f: &Fence) -> Result<(), StoreError> {
    // the lease's row is locked until the transaction ends: a leader stopped before its commit
    // (SIGSTOP, a long pause) would hold every follower off. PostgreSQL ends a session idle in
    // its transaction for a lease, releasing the row; the stopped leader's commit then fails.
    let held = sqlx::query(
        "WITH idle AS (SELECT set_config('idle_in_transaction_session_timeout', $4, true) AS v)
         UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => $3::double precision / 1000)
         WHERE id = 1 AND holder = $1 AND epoch = $2 AND (SELECT v IS NOT NULL FROM idle)",
    )
    .bind(&f.instance)
    .bind(f.epoch)
    .bind(f.lease_ms)
    .bind(format!("{}ms", f.lease_ms.max(1)))
    .execute(&mut *c)
    .await?;
    if held.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Fenced { instance: f.instance.clone(), epoch: f.epoch })
    }
}

fn row_to_job(r: &sqlx::postgres::PgRow) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        state: r.try_get("state")?,
        site: r.try_get("site")?,
        pool: r.try_get("pool")?,
        submitted_at_ms: r.try_get("submitted_at_ms")?,
        submitted_by: r.try_get("submitted_by")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        start_at_ms: r.try_get("start_at_ms")?,
        end_at_ms: r.try_get("end_at_ms")?,
        started_at_ms: r.try_get("started_at_ms")?,
        ended_at_ms: r.try_get("ended_at_ms")?,
        attempts: r.try_get("attempts")?,
        reason: r.try_get("reason")?,
        meter: r.try_get("meter")?,
        usage: r.try_get("usage")?,
        spec: r.try_get("spec")?,
    })
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

/// The ledger's clock and time-ordered pages (SQLite reads them in rowid order instead).
const PG_LEDGER_TS: &str = "CREATE INDEX IF NOT EXISTS ledger_transfers_ts ON ledger_transfers (ts)";

/// FNV-1a (64 bits) of the schema's statements, in hex: changes whenever a statement does, so a
/// database whose digest matches has run exactly these.
fn schema_digest(statements: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in statements {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl PgStore {
    /// Brings the schema to this binary's, unless the database says it has run exactly these
    /// statements: an instance that starts beside a running leader (issue 17) must not take its
    /// tables' locks — `CREATE INDEX IF NOT EXISTS` takes a table's SHARE lock before it finds
    /// the index there, queueing the leader's writes (and the lease renewal in their
    /// transaction) behind it; one such restart under load delayed the leader's renewal past a
    /// 1 s lease and deposed it. So a schema that differs is changed only while no other
    /// instance holds a live lease (`me`: this instance's name, whose own lease from before a
    /// restart does not count); otherwise the error says how to upgrade. One transaction under
    /// an advisory lock: instances starting together on a new database migrate once, and a
    /// failed statement leaves nothing half-done (PostgreSQL's DDL is transactional).
    pub async fn migrate_beside(&self, me: Option<&str>) -> Result<(), StoreError> {
        let all = MIGRATIONS.iter().chain(LEDGER_MIGRATIONS).chain(PG_EVIDENCE).chain(EVIDENCE_MIGRATIONS);
        let all: Vec<&str> =
            all.chain(PG_MARKET).chain(MARKET_MIGRATIONS).chain(HA_MIGRATIONS).copied().chain([PG_LEDGER_TS]).collect();
        let want = schema_digest(&all);
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATE_LOCK).execute(&mut *tx).await?;
        let exists =
            |table: &'static str| sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL").bind(table);
        let ran: Option<String> = if exists("settings").fetch_one(&mut *tx).await? {
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'schema_digest'")
                .fetch_optional(&mut *tx)
                .await?
        } else {
            None // a new database
        };
        if ran.as_deref() == Some(want.as_str()) {
            tx.commit().await?;
            return Ok(());
        }
        if exists("leader_lease").fetch_one(&mut *tx).await? {
            let live: Option<String> = sqlx::query_scalar(
                "SELECT holder FROM leader_lease WHERE id = 1 AND holder <> '' AND expires_at > clock_timestamp()",
            )
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(holder) = live.filter(|h| Some(h.as_str()) != me) {
                return Err(StoreError::Config(format!(
                    "the database's schema differs from this binary's (database {}, this binary {want}) while \
                     instance {holder:?} leads it: changing it beside a running leader would lock the tables \
                     under it. To upgrade: stop every instance of this database, then start them with this \
                     binary (the first to start migrates); instances of one database run one binary",
                    ran.as_deref().unwrap_or("unrecorded")
                )));
            }
        }
        for m in &all {
            sqlx::query(*m).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('schema_digest', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(&want)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The advisory lock `migrate` holds (any number unique to this program: "suanwang" in ASCII).
const MIGRATE_LOCK: i64 = 0x7375_616e_7761_6e67;

impl Store for PgStore {
    /// [`PgStore::migrate_beside`], for a process that is no instance (`token create`, tests).
    async fn migrate(&self) -> Result<(), StoreError> {
        self.migrate_beside(None).await
    }

    async fn ledger_accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts ORDER BY ts, id")))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(row_to_account).collect::<Result<_, _>>()?)
    }

    async fn open_pending(&self) -> Result<Vec<TransferRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM ledger_transfers t WHERE (flags & {TRANSFER_PENDING}) <> 0
             AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id) ORDER BY ts"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_transfer).collect::<Result<_, _>>()?)
    }

    async fn ledger_transfer(&self, id: &str) -> Result<Option<TransferRow>, StoreError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(row_to_transfer).transpose()?)
    }

    async fn ledger_transfers(&self, q: &TransferQuery) -> Result<Vec<TransferRow>, StoreError> {
        let sql = numbered(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM ledger_transfers{} ORDER BY ts LIMIT ?",
            transfer_filter(q)
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(q.after_ts);
        for _ in 0..2 {
            for a in &q.accounts {
                query = query.bind(a);
            }
        }
        for v in [q.user_data, q.from_ms, q.to_ms].into_iter().flatten() {
            query = query.bind(v);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_transfer).collect::<Result<_, _>>()?)
    }

    async fn posted_before(&self, account: &str, before_ms: i64) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            // sums past i64 stay at the bound, as the statements' own sums do
            "SELECT LEAST(COALESCE(SUM(CASE WHEN debit = $1 THEN amount ELSE 0 END), 0), {max})::bigint AS d,
                    LEAST(COALESCE(SUM(CASE WHEN credit = $1 THEN amount ELSE 0 END), 0), {max})::bigint AS c
             FROM ledger_transfers WHERE (debit = $1 OR credit = $1) AND at_ms < $2 AND (flags & {TRANSFER_PENDING}) = 0",
            max = i64::MAX
        )))
        .bind(account)
        .bind(before_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("d")?, row.try_get("c")?))
    }

    async fn ledger_clock(&self) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT GREATEST(COALESCE((SELECT MAX(ts) FROM ledger_transfers), 0), COALESCE((SELECT MAX(ts) FROM ledger_accounts), 0))::bigint AS c",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("c")?)
    }

    async fn programmes(&self) -> Result<Vec<ProgrammeRow>, StoreError> {
        let rows = sqlx::query("SELECT id, funder, body, created_at_ms FROM voucher_programmes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(ProgrammeRow {
                    id: r.try_get("id")?,
                    funder: r.try_get("funder")?,
                    body: r.try_get("body")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn commit(&self, batch: &Batch<'_>) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // a leader stopped in the middle of this transaction (before its fence, which comes
        // last) would hold its rows' and tables' locks with no end — and a new leader's start
        // waits on them: from the first statement, the session ends after a lease idle
        if let Some(f) = self.current_fence() {
            sqlx::query("SELECT set_config('idle_in_transaction_session_timeout', $1, true)")
                .bind(format!("{}ms", f.lease_ms.max(1)))
                .execute(&mut *tx)
                .await?;
        }
        // one statement per table, the rows as arrays (`UNNEST`): a round trip per table, not per row
        let mut out = Vec::with_capacity(batch.commands.len());
        if !batch.commands.is_empty() {
            let c = batch.commands;
            let res = sqlx::query_scalar::<_, i64>(
                "INSERT INTO commands (at_ms, actor, kind, job_id, tenant, idempotency_key, body, events)
                 SELECT at_ms, actor, kind, job_id, tenant, idempotency_key, body, events
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
                      WITH ORDINALITY AS u(at_ms, actor, kind, job_id, tenant, idempotency_key, body, events, n)
                 ORDER BY n
                 RETURNING seq",
            )
            .bind(c.iter().map(|r| r.at_ms).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.actor.as_str()).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.job_id).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.tenant.as_deref()).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.idempotency_key.as_deref()).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
            .bind(c.iter().map(|r| r.events.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await;
            match res {
                // the sequence is drawn in row order (ORDER BY n): sorted, the numbers follow the rows
                Ok(mut seqs) => {
                    seqs.sort_unstable();
                    out = seqs;
                }
                Err(e) if is_unique_violation(&e) => {
                    drop(tx);
                    return Err(duplicate_key(self, c).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let rows = last_row_per_job(batch.jobs);
        if !rows.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO jobs ({JOB_COLUMNS})
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[],
                     $14::bigint[], $15::bigint[], $16::text[], $17::text[], $18::text[], $19::text[])
                 ON CONFLICT (id) DO UPDATE SET {JOB_UPDATE}"
            )))
            .bind(rows.iter().map(|j| j.id).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.tenant.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.name.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.state.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.site.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.pool.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.submitted_at_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.submitted_by.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.updated_at_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.start_at_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.end_at_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.started_at_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.ended_at_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.attempts).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.reason.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.meter.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.usage.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|j| j.spec.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        for l in batch.logs {
            sqlx::query(
                "INSERT INTO run_logs (job_id, attempt, at_ms, stdout, stderr) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, at_ms = excluded.at_ms,
                 stdout = excluded.stdout, stderr = excluded.stderr",
            )
            .bind(l.job_id)
            .bind(l.attempt)
            .bind(l.at_ms)
            .bind(&l.stdout)
            .bind(&l.stderr)
            .execute(&mut *tx)
            .await?;
        }
        write_ledger(&mut tx, batch).await?;
        write_evidence(&mut tx, batch).await?;
        // last: the lease's row stays locked only from here to the commit
        if let Some(f) = self.current_fence() {
            check_fence(&mut tx, &f).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(row_to_job).transpose()?)
    }

    async fn jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, StoreError> {
        // $1 after, then state and tenant when given, then the limit
        let (state, tenant, limit) = match (q.state.is_some(), q.tenant.is_some()) {
            (true, true) => (" AND state = $2", " AND tenant = $3", "$4"),
            (true, false) => (" AND state = $2", "", "$3"),
            (false, true) => ("", " AND tenant = $2", "$3"),
            (false, false) => ("", "", "$2"),
        };
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id > $1{state}{tenant} ORDER BY id LIMIT {limit}");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(q.after);
        if let Some(s) = &q.state {
            query = query.bind(s);
        }
        if let Some(t) = &q.tenant {
            query = query.bind(t);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_job).collect::<Result<_, _>>()?)
    }

    async fn run_log(&self, id: i64) -> Result<Option<RunLog>, StoreError> {
        let row = sqlx::query("SELECT attempt, at_ms, stdout, stderr FROM run_logs WHERE job_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(RunLog {
                job_id: id,
                attempt: r.try_get("attempt")?,
                at_ms: r.try_get("at_ms")?,
                stdout: r.try_get("stdout")?,
                stderr: r.try_get("stderr")?,
            }),
            None => None,
        })
    }

    async fn submission(&self, tenant: &str, key: &str) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT job_id, body FROM commands WHERE tenant = $1 AND idempotency_key = $2 AND job_id IS NOT NULL",
        )
        .bind(tenant)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("job_id")?, r.try_get("body")?)),
            None => None,
        })
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tokens (hash, role, name, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(&t.hash)
            .bind(&t.role)
            .bind(&t.name)
            .bind(t.created_at_ms)
            .execute(&mut *tx)
            .await?;
        if let Some(at) = t.expires_at_ms {
            sqlx::query("INSERT INTO token_expiry (hash, expires_at_ms) VALUES ($1, $2)")
                .bind(&t.hash)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(numbered(TOKEN))).bind(hash).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(row_to_token).transpose()?)
    }

    async fn unlogged_tokens(&self, limit: i64) -> Result<Vec<TokenRow>, StoreError> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(numbered(UNLOGGED_TOKENS))).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_token).collect::<Result<_, _>>()?)
    }

    async fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(f) = self.current_fence() {
            check_fence(&mut tx, &f).await?;
        }
        let held: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM commands WHERE seq = $1)")
            .bind(seq)
            .fetch_one(&mut *tx)
            .await?;
        if !held {
            return Err(StoreError::SnapshotBeyondLog { seq });
        }
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

    async fn snapshots(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, body FROM snapshots ORDER BY seq DESC LIMIT 2").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("body")?))).collect::<Result<_, sqlx::Error>>()?)
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

    async fn evidence_size(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0)::bigint AS n FROM evidence_entries")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    async fn evidence_entries(&self, from: i64, to: i64) -> Result<Vec<EvidenceRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        )))
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row_to_evidence).collect::<Result<_, _>>()?)
    }

    async fn evidence_about(
        &self,
        job_id: Option<i64>,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EvidenceRow>, StoreError> {
        let sql = numbered(&format!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence_entries{} ORDER BY idx LIMIT ?",
            about_filter(job_id, subject)
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(j) = job_id {
            q = q.bind(j);
        }
        if let Some(s) = subject {
            q = q.bind(s);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_evidence).collect::<Result<_, _>>()?)
    }

    async fn evidence_tiles(&self, level: i32, from: i64, to: i64) -> Result<Vec<TileRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT level, idx, hashes FROM evidence_tiles WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
        )
        .bind(level)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok(TileRow { level: r.try_get("level")?, idx: r.try_get("idx")?, hashes: r.try_get("hashes")? }))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn put_note(&self, note: &NoteRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(f) = self.current_fence() {
            check_fence(&mut tx, &f).await?;
        }
        sqlx::query(
            "INSERT INTO evidence_notes (size, at_ms, note) VALUES ($1, $2, $3)
             ON CONFLICT (size) DO UPDATE SET note = excluded.note",
        )
        .bind(note.size)
        .bind(note.at_ms)
        .bind(&note.note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn notes(&self, after: i64, limit: i64, newest: bool) -> Result<Vec<NoteRow>, StoreError> {
        let sql = if newest {
            "SELECT size, at_ms, note FROM evidence_notes WHERE size < $1 ORDER BY size DESC LIMIT $2"
        } else {
            "SELECT size, at_ms, note FROM evidence_notes WHERE size > $1 ORDER BY size LIMIT $2"
        };
        let bound = if newest && after <= 0 { i64::MAX } else { after };
        let rows = sqlx::query(sql).bind(bound).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_note).collect::<Result<_, _>>()?)
    }

    async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, StoreError> {
        let rows = sqlx::query("SELECT id, owner, body, created_at_ms, updated_at_ms FROM datasets WHERE id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.first().map(row_to_dataset).transpose()?)
    }

    async fn datasets(&self, owner: Option<&str>, after: &str, limit: i64) -> Result<Vec<DatasetRow>, StoreError> {
        let rows = match owner {
            Some(o) => sqlx::query(
                "SELECT id, owner, body, created_at_ms, updated_at_ms FROM datasets WHERE owner = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(o)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => sqlx::query(
                "SELECT id, owner, body, created_at_ms, updated_at_ms FROM datasets WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        };
        Ok(rows.iter().map(row_to_dataset).collect::<Result<_, _>>()?)
    }

    async fn market(&self, q: &MarketQuery) -> Result<Vec<MarketRow>, StoreError> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(numbered(&market_sql(q)))).bind(&q.kind);
        for v in [&q.owner, &q.product, &q.state].into_iter().flatten() {
            query = query.bind(v);
        }
        let rows = query.bind(&q.after).bind(market_limit(q)).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row_to_market).collect::<Result<_, _>>()?)
    }

    async fn market_last_id(&self, kind: &str) -> Result<Option<String>, StoreError> {
        let row: (Option<String>,) =
            sqlx::query_as("SELECT MAX(id) FROM market_rows WHERE kind = $1").bind(kind).fetch_one(&self.pool).await?;
        Ok(row.0)
    }
}

/// The market's table (issue 16): keyed by (kind, id). Ids compare as bytes (`COLLATE "C"`, as
/// SQLite's `BINARY`), whatever the database's locale: both backends list them in the same order,
/// and the `id > after` of a page never skips or repeats a row.
const PG_MARKET: &[&str] = &["CREATE TABLE IF NOT EXISTS market_rows (
        kind TEXT NOT NULL,
        id TEXT COLLATE \"C\" NOT NULL,
        owner TEXT NOT NULL,
        product TEXT NOT NULL,
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (kind, id)
    )"];

/// The evidence log's entries and tiles.
const PG_EVIDENCE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS evidence_entries (
        idx BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        entry TEXT NOT NULL,
        salt TEXT NOT NULL,
        record TEXT NOT NULL,
        tenant TEXT,
        job_id BIGINT,
        subject TEXT
    )",
    "CREATE TABLE IF NOT EXISTS evidence_tiles (
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hashes BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
    )",
];

/// The evidence log's part of a group commit: entries as arrays, tiles one statement each.
async fn write_evidence(tx: &mut sqlx::PgConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    let e = batch.evidence;
    if !e.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO evidence_entries ({EVIDENCE_COLUMNS})
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::bigint[], $9::text[])"
        )))
        .bind(e.iter().map(|r| r.idx).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.at_ms).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.entry.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.salt.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.record.as_str()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.tenant.as_deref()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.job_id).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.subject.as_deref()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    for t in batch.tiles {
        sqlx::query("INSERT INTO evidence_tiles (level, idx, hashes) VALUES ($1, $2, $3)")
            .bind(t.level)
            .bind(t.idx)
            .bind(&t.hashes)
            .execute(&mut *tx)
            .await?;
    }
    for d in last_row_per_dataset(batch.datasets) {
        sqlx::query(
            "INSERT INTO datasets (id, owner, body, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, body = excluded.body, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&d.id)
        .bind(&d.owner)
        .bind(&d.body)
        .bind(d.created_at_ms)
        .bind(d.updated_at_ms)
        .execute(&mut *tx)
        .await?;
    }
    for hash in batch.tokens_logged {
        sqlx::query("INSERT INTO tokens_logged (hash) VALUES ($1) ON CONFLICT (hash) DO NOTHING")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

fn row_to_token(r: &sqlx::postgres::PgRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        hash: r.try_get("hash")?,
        role: r.try_get("role")?,
        name: r.try_get("name")?,
        created_at_ms: r.try_get("created_at_ms")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
    })
}

fn row_to_evidence(r: &sqlx::postgres::PgRow) -> Result<EvidenceRow, sqlx::Error> {
    Ok(EvidenceRow {
        idx: r.try_get("idx")?,
        kind: r.try_get("kind")?,
        at_ms: r.try_get("at_ms")?,
        entry: r.try_get("entry")?,
        salt: r.try_get("salt")?,
        record: r.try_get("record")?,
        tenant: r.try_get("tenant")?,
        job_id: r.try_get("job_id")?,
        subject: r.try_get("subject")?,
    })
}

fn row_to_dataset(r: &sqlx::postgres::PgRow) -> Result<DatasetRow, sqlx::Error> {
    Ok(DatasetRow {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        body: r.try_get("body")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

fn row_to_market(r: &sqlx::postgres::PgRow) -> Result<MarketRow, sqlx::Error> {
    Ok(MarketRow {
        kind: r.try_get("kind")?,
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        product: r.try_get("product")?,
        state: r.try_get("state")?,
        body: r.try_get("body")?,
        at_ms: r.try_get("at_ms")?,
    })
}

fn row_to_note(r: &sqlx::postgres::PgRow) -> Result<NoteRow, sqlx::Error> {
    Ok(NoteRow { size: r.try_get("size")?, at_ms: r.try_get("at_ms")?, note: r.try_get("note")? })
}

/// `?` placeholders numbered `$1`, `$2`, … in order.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The ledger's part of a group commit: a statement per table, the rows as arrays.
async fn write_ledger(tx: &mut sqlx::PgConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    let a = batch.accounts;
    if !a.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::bigint[], $7::bigint[],
                 $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
             ON CONFLICT (id) DO UPDATE SET {ACCOUNT_UPDATE}"
        )))
        .bind(a.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.name.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.code).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.flags).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.credit_limit).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.debits_pending).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.debits_posted).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.credits_pending).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.credits_posted).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.ts).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    let t = batch.transfers;
    if !t.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO ledger_transfers ({TRANSFER_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                 $7::int[], $8::int[], $9::bigint[], $10::bigint[])"
        )))
        .bind(t.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.debit.as_str()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.credit.as_str()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.amount).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.pending_id.as_str()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.user_data).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.code).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.flags).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.ts).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.at_ms).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    for p in batch.programmes {
        sqlx::query(
            "INSERT INTO voucher_programmes (id, funder, body, created_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&p.id)
        .bind(&p.funder)
        .bind(&p.body)
        .bind(p.created_at_ms)
        .execute(&mut *tx)
        .await?;
    }
    let m = last_row_per_market(batch.market);
    if !m.is_empty() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO market_rows ({MARKET_COLUMNS})
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
             ON CONFLICT (kind, id) DO UPDATE SET {MARKET_UPDATE}"
        )))
        .bind(m.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.owner.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.product.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.at_ms).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn row_to_account(r: &sqlx::postgres::PgRow) -> Result<AccountRow, sqlx::Error> {
    Ok(AccountRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        code: r.try_get("code")?,
        flags: r.try_get("flags")?,
        credit_limit: r.try_get("credit_limit")?,
        debits_pending: r.try_get("debits_pending")?,
        debits_posted: r.try_get("debits_posted")?,
        credits_pending: r.try_get("credits_pending")?,
        credits_posted: r.try_get("credits_posted")?,
        ts: r.try_get("ts")?,
    })
}

fn row_to_transfer(r: &sqlx::postgres::PgRow) -> Result<TransferRow, sqlx::Error> {
    Ok(TransferRow {
        id: r.try_get("id")?,
        debit: r.try_get("debit")?,
        credit: r.try_get("credit")?,
        amount: r.try_get("amount")?,
        pending_id: r.try_get("pending_id")?,
        user_data: r.try_get("user_data")?,
        code: r.try_get("code")?,
        flags: r.try_get("flags")?,
        ts: r.try_get("ts")?,
        at_ms: r.try_get("at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{host_urls, redact};

    #[test]
    fn a_multi_host_url_is_one_url_per_host() {
        assert_eq!(host_urls("postgres://u@h:5432/db"), vec!["postgres://u@h:5432/db"]);
        assert_eq!(
            host_urls("postgres://u:p@a:5501,b:5502/db?sslmode=disable"),
            vec!["postgres://u:p@a:5501/db?sslmode=disable", "postgres://u:p@b:5502/db?sslmode=disable"]
        );
        assert_eq!(host_urls("postgresql://a,b"), vec!["postgresql://a", "postgresql://b"]);
        assert_eq!(redact("postgres://u:secret@a:1/db"), "postgres://…@a:1/db");
    }
}
