//! SQLite backend: one file, WAL journal, `synchronous = FULL` (a commit is on disk when it
//! returns), one writer connection (SQLite serialises writers anyway) and a few readers (WAL
//! lets them read the last commit while the writer writes the next, so listing jobs never waits
//! behind a group commit).

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::sync::Arc;

use crate::ledger_index::{self, JOURNAL_MIGRATION, LedgerIndex};
use crate::snapshot_file::SnapshotFile;

use crate::{
    ACCOUNT_COLUMNS, AccountRow, Batch, Checkpoint, CommandRow, DatasetRow, EVIDENCE_COLUMNS, EVIDENCE_MIGRATIONS,
    EvidenceRow, JOB_COLUMNS, JOB_UPDATE, JobQuery, JobRow, LEDGER_MIGRATIONS, MARKET_COLUMNS, MARKET_MIGRATIONS,
    MARKET_UPDATE, MarketQuery, MarketRow, NoteRow, ProgrammeRow, RunLog, Store, StoreError, TOKEN, TRANSFER_COLUMNS,
    TRANSFER_PENDING, TileRow, TokenRow, TransferQuery, TransferRow, UNLOGGED_TOKENS, about_filter, duplicate_key,
    is_unique_violation, last_row_per_dataset, last_row_per_job, last_row_per_market, market_limit, market_sql,
    statement_chunks, transfer_filter,
};

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
    // where databases from before the snapshots' own file kept them: `SnapshotFile::reconcile` moves
    // them out at `migrate`
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
    "CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        site TEXT,
        pool TEXT,
        submitted_at_ms INTEGER NOT NULL,
        submitted_by TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        start_at_ms INTEGER,
        end_at_ms INTEGER,
        started_at_ms INTEGER,
        ended_at_ms INTEGER,
        attempts INTEGER NOT NULL,
        reason TEXT,
        meter TEXT,
        usage TEXT,
        spec TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id)",
    "CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, id)",
    "CREATE TABLE IF NOT EXISTS run_logs (
        job_id INTEGER PRIMARY KEY,
        attempt INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        stdout BLOB NOT NULL,
        stderr BLOB NOT NULL
    )",
];

/// Job rows per upsert statement (19 parameters each, well under SQLite's 32,766).
/// Rows per multi-row statement (a job row binds 19 values: 1,216 of SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 64;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writer.
    pool: SqlitePool,
    /// Readers of what is committed.
    read: SqlitePool,
    /// The transfers' index beside the database, folded from its journal (`ledger_index.rs`).
    ledger: Arc<LedgerIndex>,
    /// The snapshots, in their own file beside the database (`snapshot_file.rs`).
    snaps: SnapshotFile,
}

/// Connection options for the database file `file` in WAL mode, creating it readable by its
/// owner only first (SQLite gives the -wal and -shm files the database's mode).
pub(crate) fn private_file(file: &Path, sync: SqliteSynchronous) -> Result<SqliteConnectOptions, StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::Config(format!("creating {}: {e}", file.display()))),
    }
    Ok(SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
        .map_err(StoreError::Db)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(std::time::Duration::from_secs(10)))
}

impl SqliteStore {
    /// Opens (creating) the database file `path`, or `path/suanwang.db` when `path` is a directory.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let file = if path.is_dir() { path.join("suanwang.db") } else { path.to_path_buf() };
        let opts = private_file(&file, SqliteSynchronous::Full)?;
        // the writer's page cache: 64 MiB (SQLite's default is 2 MiB). The ledger's and jobs'
        // secondary indexes are inserted in key order that is not the table's: with the default
        // cache every batch reads their pages back from the OS; 16 KiB pages (new databases
        // only: an existing file keeps its size) halve the index depth. Measured on `bench
        // ledger`'s durable run: see ARCHITECTURE.md → store.
        let writer = opts.clone().page_size(16_384).pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(writer).await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(opts.read_only(true)).await?;
        let ledger = LedgerIndex::open(&file, read.clone()).await?;
        let snaps = SnapshotFile::open(&file, read.clone()).await?;
        Ok(SqliteStore { pool, read, ledger, snaps })
    }
}

/// Binds a `JobRow`'s fields to a query, in `JOB_COLUMNS` order.
fn bind_job<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    j: &'q JobRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    q.bind(j.id)
        .bind(&j.tenant)
        .bind(&j.name)
        .bind(&j.kind)
        .bind(&j.state)
        .bind(&j.site)
        .bind(&j.pool)
        .bind(j.submitted_at_ms)
        .bind(&j.submitted_by)
        .bind(j.updated_at_ms)
        .bind(j.start_at_ms)
        .bind(j.end_at_ms)
        .bind(j.started_at_ms)
        .bind(j.ended_at_ms)
        .bind(j.attempts)
        .bind(&j.reason)
        .bind(&j.meter)
        .bind(&j.usage)
        .bind(&j.spec)
}

fn row_to_job(r: &sqlx::sqlite::SqliteRow) -> Result<JobRow, sqlx::Error> {
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

/// Rows per multi-row `INSERT … VALUES (…), (…)` of the ledger: 10–11 bound values each, well
/// under SQLite's 32,766 variables; `statement_chunks` bounds the shapes prepared.
pub(crate) const LEDGER_CHUNK: usize = 512;

/// `head` then `(?, …)` for `rows` rows of `cols` values, then `tail`: a multi-row statement.
pub(crate) fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let one = format!("({})", vec!["?"; cols].join(","));
    format!("{head} VALUES {} {tail}", vec![one; rows].join(","))
}

/// Appends one row to the ledger's journal (`ledger_index.rs`): `transfers` and the new state of
/// `accounts`, with the ledger's clock after them (never behind the row before: a row of accounts
/// alone may carry only older timestamps).
async fn journal(
    tx: &mut sqlx::SqliteConnection,
    transfers: &[TransferRow],
    accounts: &[AccountRow],
) -> Result<(), StoreError> {
    if transfers.is_empty() && accounts.is_empty() {
        return Ok(());
    }
    // the clock after the row: its own newest stamp, never below the row before it (an
    // account-only row keeps it) — one statement, one trip to the database's thread
    sqlx::query(
        "INSERT INTO ledger_journal (last_ts, body)
         SELECT max(?, coalesce((SELECT last_ts FROM ledger_journal ORDER BY seq DESC LIMIT 1), 0)), ?",
    )
    .bind(ledger_index::Logged::last_ts(transfers, accounts))
    .bind(ledger_index::encode(transfers, accounts))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The ledger's part of a group commit: one journal row with its transfers and changed accounts
/// (indexed beside the commit, `ledger_index.rs`), and the programmes it filed or changed.
async fn write_ledger(tx: &mut sqlx::SqliteConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    journal(&mut *tx, batch.transfers, batch.accounts).await?;
    for p in batch.programmes {
        sqlx::query(
            "INSERT INTO voucher_programmes (id, funder, body, created_at_ms) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&p.id)
        .bind(&p.funder)
        .bind(&p.body)
        .bind(p.created_at_ms)
        .execute(&mut *tx)
        .await?;
    }
    let market = last_row_per_market(batch.market);
    for chunk in statement_chunks(&market, LEDGER_CHUNK) {
        let sql = values_sql(
            &format!("INSERT INTO market_rows ({MARKET_COLUMNS})"),
            7,
            chunk.len(),
            &format!("ON CONFLICT (kind, id) DO UPDATE SET {MARKET_UPDATE}"),
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for m in chunk {
            q = q.bind(&m.kind).bind(&m.id).bind(&m.owner).bind(&m.product).bind(&m.state).bind(&m.body).bind(m.at_ms);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The market's table (issue 16): keyed by (kind, id); ids compare as bytes (SQLite's `BINARY`
/// collation, as PostgreSQL's `"C"`), so both backends list them in the same order.
const SQLITE_MARKET: &[&str] = &["CREATE TABLE IF NOT EXISTS market_rows (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        owner TEXT NOT NULL,
        product TEXT NOT NULL,
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    )"];

/// The evidence log's entries and tiles: entries keyed by their index (the rowid: appended in
/// order, one B-tree), tiles by (level, index) without a rowid.
const SQLITE_EVIDENCE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS evidence_entries (
        idx INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        entry TEXT NOT NULL,
        salt TEXT NOT NULL,
        record TEXT NOT NULL,
        tenant TEXT,
        job_id INTEGER,
        subject TEXT
    )",
    "CREATE TABLE IF NOT EXISTS evidence_tiles (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hashes BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID",
];

/// The evidence log's part of a group commit: entries as multi-row `INSERT … VALUES` of bound
/// values (as the ledger's rows: through `json_each`, SQLite parsed each record — JSON escaped
/// inside JSON — once per column), tiles one statement each (one per 256 entries).
async fn write_evidence(tx: &mut sqlx::SqliteConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    for chunk in statement_chunks(batch.evidence, LEDGER_CHUNK) {
        let sql = values_sql(&format!("INSERT INTO evidence_entries ({EVIDENCE_COLUMNS})"), 9, chunk.len(), "");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(e.idx)
                .bind(&e.kind)
                .bind(e.at_ms)
                .bind(&e.entry)
                .bind(&e.salt)
                .bind(&e.record)
                .bind(&e.tenant)
                .bind(e.job_id)
                .bind(&e.subject);
        }
        q.execute(&mut *tx).await?;
    }
    for t in batch.tiles {
        sqlx::query("INSERT INTO evidence_tiles (level, idx, hashes) VALUES (?, ?, ?)")
            .bind(t.level)
            .bind(t.idx)
            .bind(&t.hashes)
            .execute(&mut *tx)
            .await?;
    }
    for d in last_row_per_dataset(batch.datasets) {
        sqlx::query(
            "INSERT INTO datasets (id, owner, body, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?)
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
        sqlx::query("INSERT INTO tokens_logged (hash) VALUES (?) ON CONFLICT (hash) DO NOTHING")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

fn row_to_token(r: &sqlx::sqlite::SqliteRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        hash: r.try_get("hash")?,
        role: r.try_get("role")?,
        name: r.try_get("name")?,
        created_at_ms: r.try_get("created_at_ms")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
    })
}

fn row_to_evidence(r: &sqlx::sqlite::SqliteRow) -> Result<EvidenceRow, sqlx::Error> {
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

fn row_to_dataset(r: &sqlx::sqlite::SqliteRow) -> Result<DatasetRow, sqlx::Error> {
    Ok(DatasetRow {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        body: r.try_get("body")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
    })
}

fn row_to_market(r: &sqlx::sqlite::SqliteRow) -> Result<MarketRow, sqlx::Error> {
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

fn row_to_note(r: &sqlx::sqlite::SqliteRow) -> Result<NoteRow, sqlx::Error> {
    Ok(NoteRow { size: r.try_get("size")?, at_ms: r.try_get("at_ms")?, note: r.try_get("note")? })
}

fn row_to_account(r: &sqlx::sqlite::SqliteRow) -> Result<AccountRow, sqlx::Error> {
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

fn row_to_transfer(r: &sqlx::sqlite::SqliteRow) -> Result<TransferRow, sqlx::Error> {
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

/// Moves the ledger of a database written before the journal (its `ledger_accounts` and
/// `ledger_transfers` tables in the main file) into journal rows — the transfers in ledger order,
/// then the accounts — and drops those tables, in one transaction; the fold then indexes them.
/// Nothing to do on a database that has neither.
async fn journal_old_ledger(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('ledger_transfers', 'ledger_accounts')",
    )
    .fetch_all(&mut *tx)
    .await?;
    if old.is_empty() {
        return Ok(());
    }
    let has = |t: &str| old.iter().any(|o| o == t);
    let mut transfers: Vec<TransferRow> = vec![];
    if has("ledger_transfers") {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM ledger_transfers ORDER BY rowid");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
        transfers = rows.iter().map(row_to_transfer).collect::<Result<_, _>>()?;
    }
    let mut accounts: Vec<AccountRow> = vec![];
    if has("ledger_accounts") {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts ORDER BY ts, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
        accounts = rows.iter().map(row_to_account).collect::<Result<_, _>>()?;
    }
    for chunk in transfers.chunks(4096) {
        journal(&mut tx, chunk, &[]).await?;
    }
    for chunk in accounts.chunks(4096) {
        journal(&mut tx, &[], chunk).await?;
    }
    for t in &old {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {t}"))).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(
        transfers = transfers.len(),
        accounts = accounts.len(),
        "moved the ledger's transfers and accounts into its journal"
    );
    Ok(())
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        // the transfers' table lives in the index file (`ledger_index.rs`); here, their journal
        let ledger = LEDGER_MIGRATIONS.iter().filter(|m| !ledger_index::is_index_migration(m));
        let all = MIGRATIONS.iter().chain(ledger).chain(&[JOURNAL_MIGRATION]);
        let all = all.chain(SQLITE_EVIDENCE).chain(EVIDENCE_MIGRATIONS);
        for m in all.chain(SQLITE_MARKET).chain(MARKET_MIGRATIONS) {
            sqlx::query(*m).execute(&self.pool).await?;
        }
        journal_old_ledger(&self.pool).await?;
        self.snaps.reconcile(&self.pool).await?;
        self.ledger.appended(0);
        Ok(())
    }

    async fn commit(&self, batch: &Batch<'_>) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // many rows per statement: each statement is a round trip to SQLite's worker thread
        let mut out = Vec::with_capacity(batch.commands.len());
        for chunk in statement_chunks(batch.commands, ROWS_PER_STATEMENT) {
            let insert = values_sql(
                "INSERT INTO commands (at_ms, actor, kind, job_id, tenant, idempotency_key, body, events)",
                8,
                chunk.len(),
                "RETURNING seq",
            );
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(insert));
            for r in chunk {
                q = q
                    .bind(r.at_ms)
                    .bind(&r.actor)
                    .bind(&r.kind)
                    .bind(r.job_id)
                    .bind(&r.tenant)
                    .bind(&r.idempotency_key)
                    .bind(&r.body)
                    .bind(&r.events);
            }
            match q.fetch_all(&mut *tx).await {
                // one writer, rowids handed out in row order: sorted, they follow the rows
                Ok(mut seqs) => {
                    seqs.sort_unstable();
                    out.extend(seqs);
                }
                Err(e) if is_unique_violation(&e) => {
                    drop(tx);
                    return Err(duplicate_key(self, batch.commands).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let rows = last_row_per_job(batch.jobs);
        for chunk in statement_chunks(&rows, ROWS_PER_STATEMENT) {
            let upsert = values_sql(
                &format!("INSERT INTO jobs ({JOB_COLUMNS})"),
                19,
                chunk.len(),
                &format!("ON CONFLICT (id) DO UPDATE SET {JOB_UPDATE}"),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(upsert));
            for j in chunk {
                q = bind_job(q, j);
            }
            q.execute(&mut *tx).await?;
        }
        for l in batch.logs {
            sqlx::query(
                "INSERT INTO run_logs (job_id, attempt, at_ms, stdout, stderr) VALUES (?, ?, ?, ?, ?)
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
        tx.commit().await?;
        if !batch.transfers.is_empty() || !batch.accounts.is_empty() {
            self.ledger.appended(batch.transfers.len());
        }
        Ok(out)
    }

    async fn ledger_accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        let (mut ix, folded) = self.ledger.snapshot().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts")))
            .fetch_all(&mut *ix)
            .await?;
        ix.commit().await?;
        // the index's accounts, each replaced by its last row in the tail
        let mut all: Vec<AccountRow> = rows.iter().map(row_to_account).collect::<Result<_, _>>()?;
        all.extend(self.ledger.tail(folded).await?.accounts);
        let mut accounts = ledger_index::last_per_account(all);
        accounts.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        Ok(accounts)
    }

    async fn open_pending(&self) -> Result<Vec<TransferRow>, StoreError> {
        let (mut ix, folded) = self.ledger.snapshot().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM ledger_transfers t WHERE (flags & {TRANSFER_PENDING}) <> 0
             AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id) ORDER BY ts"
        )))
        .fetch_all(&mut *ix)
        .await?;
        ix.commit().await?;
        let tail = self.ledger.tail(folded).await?.transfers;
        // the index's open holds and the tail's, less those the tail posts or voids
        let resolved: std::collections::HashSet<&str> =
            tail.iter().filter(|t| !t.pending_id.is_empty()).map(|t| t.pending_id.as_str()).collect();
        let mut open: Vec<TransferRow> = rows.iter().map(row_to_transfer).collect::<Result<_, _>>()?;
        open.extend(tail.iter().filter(|t| t.flags & TRANSFER_PENDING != 0).cloned());
        open.retain(|t| !resolved.contains(t.id.as_str()));
        Ok(open)
    }

    async fn ledger_transfer(&self, id: &str) -> Result<Option<TransferRow>, StoreError> {
        let (mut ix, folded) = self.ledger.snapshot().await?;
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ?")))
                .bind(id)
                .fetch_optional(&mut *ix)
                .await?;
        ix.commit().await?;
        if let Some(r) = row {
            return Ok(Some(row_to_transfer(&r)?));
        }
        Ok(self.ledger.tail(folded).await?.transfers.into_iter().find(|t| t.id == id))
    }

    async fn ledger_transfers(&self, q: &TransferQuery) -> Result<Vec<TransferRow>, StoreError> {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM ledger_transfers{} ORDER BY ts LIMIT ?", transfer_filter(q));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(q.after_ts);
        for _ in 0..2 {
            for a in &q.accounts {
                query = query.bind(a);
            }
        }
        for v in [q.user_data, q.from_ms, q.to_ms].into_iter().flatten() {
            query = query.bind(v);
        }
        let (mut ix, folded) = self.ledger.snapshot().await?;
        let rows = query.bind(q.limit).fetch_all(&mut *ix).await?;
        ix.commit().await?;
        let mut out: Vec<TransferRow> = rows.iter().map(row_to_transfer).collect::<Result<_, _>>()?;
        let room = usize::try_from(q.limit).unwrap_or(0).saturating_sub(out.len());
        if room > 0 {
            // the tail is later in the ledger than anything the index holds
            out.extend(
                self.ledger
                    .tail(folded)
                    .await?
                    .transfers
                    .into_iter()
                    .filter(|t| ledger_index::matches(q, t))
                    .take(room),
            );
        }
        Ok(out)
    }

    async fn posted_before(&self, account: &str, before_ms: i64) -> Result<(i64, i64), StoreError> {
        let (mut ix, folded) = self.ledger.snapshot().await?;
        let filter = format!(
            "FROM ledger_transfers WHERE (debit = ?1 OR credit = ?1) AND at_ms < ?2 AND (flags & {TRANSFER_PENDING}) = 0"
        );
        let sums = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(SUM(CASE WHEN debit = ?1 THEN amount ELSE 0 END), 0) AS d,
                    COALESCE(SUM(CASE WHEN credit = ?1 THEN amount ELSE 0 END), 0) AS c {filter}"
        )))
        .bind(account)
        .bind(before_ms)
        .fetch_one(&mut *ix)
        .await;
        let (mut d, mut c): (i64, i64) = match sums {
            Ok(row) => (row.try_get("d")?, row.try_get("c")?),
            // SQLite's SUM fails past i64: then the amounts are summed here, and sums past i64
            // stay at the bound, as the statements' own sums do
            Err(sqlx::Error::Database(e)) if e.message().contains("integer overflow") => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT debit = ?1 AS is_debit, credit = ?1 AS is_credit, amount {filter}"
                )))
                .bind(account)
                .bind(before_ms)
                .fetch_all(&mut *ix)
                .await?;
                let (mut d, mut c) = (0i64, 0i64);
                for r in &rows {
                    let amount: i64 = r.try_get("amount")?;
                    if r.try_get::<bool, _>("is_debit")? {
                        d = d.saturating_add(amount);
                    }
                    if r.try_get::<bool, _>("is_credit")? {
                        c = c.saturating_add(amount);
                    }
                }
                (d, c)
            }
            Err(e) => return Err(e.into()),
        };
        ix.commit().await?;
        for t in self.ledger.tail(folded).await?.transfers {
            if t.at_ms < before_ms && t.flags & TRANSFER_PENDING == 0 {
                if t.debit == account {
                    d = d.saturating_add(t.amount);
                }
                if t.credit == account {
                    c = c.saturating_add(t.amount);
                }
            }
        }
        Ok((d, c))
    }

    async fn ledger_clock(&self) -> Result<i64, StoreError> {
        // each journal row carries the ledger's clock after it
        let clock: Option<i64> = sqlx::query_scalar("SELECT last_ts FROM ledger_journal ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.read)
            .await?;
        Ok(clock.unwrap_or(0))
    }

    async fn fold_ledger(&self) -> Result<(), StoreError> {
        self.ledger.fold_all().await.map(|_| ())
    }

    async fn programmes(&self) -> Result<Vec<ProgrammeRow>, StoreError> {
        let rows = sqlx::query("SELECT id, funder, body, created_at_ms FROM voucher_programmes ORDER BY id")
            .fetch_all(&self.read)
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

    async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(row_to_job).transpose()?)
    }

    async fn jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, StoreError> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id > ?");
        if q.state.is_some() {
            sql.push_str(" AND state = ?");
        }
        if q.tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" ORDER BY id LIMIT ?");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(q.after);
        if let Some(s) = &q.state {
            query = query.bind(s);
        }
        if let Some(t) = &q.tenant {
            query = query.bind(t);
        }
        let rows = query.bind(q.limit).fetch_all(&self.read).await?;
        Ok(rows.iter().map(row_to_job).collect::<Result<_, _>>()?)
    }

    async fn run_log(&self, id: i64) -> Result<Option<RunLog>, StoreError> {
        let row = sqlx::query("SELECT attempt, at_ms, stdout, stderr FROM run_logs WHERE job_id = ?")
            .bind(id)
            .fetch_optional(&self.read)
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
            "SELECT job_id, body FROM commands WHERE tenant = ? AND idempotency_key = ? AND job_id IS NOT NULL",
        )
        .bind(tenant)
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("job_id")?, r.try_get("body")?)),
            None => None,
        })
    }

    async fn commands(&self, after: i64, limit: i64) -> Result<Vec<CommandRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM commands WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(row_to_command).collect::<Result<_, _>>()?)
    }

    async fn put_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tokens (hash, role, name, created_at_ms) VALUES (?, ?, ?, ?)")
            .bind(&t.hash)
            .bind(&t.role)
            .bind(&t.name)
            .bind(t.created_at_ms)
            .execute(&mut *tx)
            .await?;
        if let Some(at) = t.expires_at_ms {
            sqlx::query("INSERT INTO token_expiry (hash, expires_at_ms) VALUES (?, ?)")
                .bind(&t.hash)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(TOKEN).bind(hash).fetch_optional(&self.read).await?;
        Ok(row.as_ref().map(row_to_token).transpose()?)
    }

    async fn unlogged_tokens(&self, limit: i64) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(UNLOGGED_TOKENS).bind(limit).fetch_all(&self.read).await?;
        Ok(rows.iter().map(row_to_token).collect::<Result<_, _>>()?)
    }

    async fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> Result<(), StoreError> {
        self.snaps.put(seq, at_ms, body).await
    }

    async fn snapshots(&self) -> Result<Vec<(i64, String)>, StoreError> {
        self.snaps.list().await
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
            .fetch_optional(&self.read)
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

    async fn evidence_size(&self) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM evidence_entries").fetch_one(&self.read).await?;
        Ok(row.try_get("n")?)
    }

    async fn evidence_entries(&self, from: i64, to: i64) -> Result<Vec<EvidenceRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence_entries WHERE idx >= ? AND idx < ? ORDER BY idx"
        )))
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(row_to_evidence).collect::<Result<_, _>>()?)
    }

    async fn evidence_about(
        &self,
        job_id: Option<i64>,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EvidenceRow>, StoreError> {
        let sql = format!(
            "SELECT {EVIDENCE_COLUMNS} FROM evidence_entries{} ORDER BY idx LIMIT ?",
            about_filter(job_id, subject)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(j) = job_id {
            q = q.bind(j);
        }
        if let Some(s) = subject {
            q = q.bind(s);
        }
        let rows = q.bind(limit).fetch_all(&self.read).await?;
        Ok(rows.iter().map(row_to_evidence).collect::<Result<_, _>>()?)
    }

    async fn evidence_tiles(&self, level: i32, from: i64, to: i64) -> Result<Vec<TileRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT level, idx, hashes FROM evidence_tiles WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(level)
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok(TileRow { level: r.try_get("level")?, idx: r.try_get("idx")?, hashes: r.try_get("hashes")? }))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn put_note(&self, note: &NoteRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO evidence_notes (size, at_ms, note) VALUES (?, ?, ?)
             ON CONFLICT (size) DO UPDATE SET note = excluded.note",
        )
        .bind(note.size)
        .bind(note.at_ms)
        .bind(&note.note)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn notes(&self, after: i64, limit: i64, newest: bool) -> Result<Vec<NoteRow>, StoreError> {
        let sql = if newest {
            "SELECT size, at_ms, note FROM evidence_notes WHERE size < ? ORDER BY size DESC LIMIT ?"
        } else {
            "SELECT size, at_ms, note FROM evidence_notes WHERE size > ? ORDER BY size LIMIT ?"
        };
        let bound = if newest && after <= 0 { i64::MAX } else { after };
        let rows = sqlx::query(sql).bind(bound).bind(limit).fetch_all(&self.read).await?;
        Ok(rows.iter().map(row_to_note).collect::<Result<_, _>>()?)
    }

    async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, StoreError> {
        let rows = sqlx::query("SELECT id, owner, body, created_at_ms, updated_at_ms FROM datasets WHERE id = ?")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.first().map(row_to_dataset).transpose()?)
    }

    async fn datasets(&self, owner: Option<&str>, after: &str, limit: i64) -> Result<Vec<DatasetRow>, StoreError> {
        let rows = match owner {
            Some(o) => sqlx::query(
                "SELECT id, owner, body, created_at_ms, updated_at_ms FROM datasets WHERE owner = ? AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(o)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
            None => sqlx::query(
                "SELECT id, owner, body, created_at_ms, updated_at_ms FROM datasets WHERE id > ? ORDER BY id LIMIT ?",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?,
        };
        Ok(rows.iter().map(row_to_dataset).collect::<Result<_, _>>()?)
    }

    async fn market(&self, q: &MarketQuery) -> Result<Vec<MarketRow>, StoreError> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(market_sql(q))).bind(&q.kind);
        for v in [&q.owner, &q.product, &q.state].into_iter().flatten() {
            query = query.bind(v);
        }
        let rows = query.bind(&q.after).bind(market_limit(q)).fetch_all(&self.read).await?;
        Ok(rows.iter().map(row_to_market).collect::<Result<_, _>>()?)
    }

    async fn market_last_id(&self, kind: &str) -> Result<Option<String>, StoreError> {
        let row: (Option<String>,) =
            sqlx::query_as("SELECT MAX(id) FROM market_rows WHERE kind = ?").bind(kind).fetch_one(&self.read).await?;
        Ok(row.0)
    }
}
