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

mod ledger_index;
mod postgres;
mod snapshot_file;
mod sqlite;

use std::future::Future;

use serde::{Deserialize, Serialize};

pub use ledger_index::hex32;
pub use postgres::{Fence, Lease, PgStore};
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
/// inserted or updated (the last row of a job wins), run logs replaced, and the ledger's
/// changes (R4): accounts upserted with their balances, transfers appended, voucher programmes
/// upserted, and the market's orders, contracts and prices upserted (issue 16). Money, the market
/// and jobs are never out of step: all are in the same transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch<'a> {
    pub commands: &'a [CommandRow],
    pub jobs: &'a [JobRow],
    pub logs: &'a [RunLog],
    pub accounts: &'a [AccountRow],
    pub transfers: &'a [TransferRow],
    pub programmes: &'a [ProgrammeRow],
    /// Evidence-log entries appended (R6/R7: the log proves the records of the same commit).
    pub evidence: &'a [EvidenceRow],
    /// Evidence-log hash tiles that this commit's entries filled.
    pub tiles: &'a [TileRow],
    /// Datasets registered or changed (R6): upserted, the last row of an id wins.
    pub datasets: &'a [DatasetRow],
    /// Hashes of tokens whose creation this commit logs (R6/R7): marked logged, so that each
    /// token's creation is logged once (see [`Store::unlogged_tokens`]).
    pub tokens_logged: &'a [String],
    /// Market rows (issue 16, R4: orders, contracts, clearing prices) placed or changed: upserted
    /// by (kind, id), the last row of a (kind, id) wins.
    pub market: &'a [MarketRow],
}

/// A dataset of the registry: its identifier, owner and record (JSON the server owns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub id: String,
    pub owner: String,
    pub body: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One entry of the evidence log, with its opening: `entry` is the public text (kind, time,
/// commitment), `salt` (64 hex digits) and `record` open the commitment, for those allowed to
/// see the record (its tenant; the operator and the regulator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRow {
    /// Position in the log, from 0.
    pub idx: i64,
    pub kind: String,
    pub at_ms: i64,
    pub entry: String,
    pub salt: String,
    pub record: String,
    /// The tenant whose record it is, if any.
    pub tenant: Option<String>,
    pub job_id: Option<i64>,
    /// What else it is about (`site/…`, `dataset/…`), for lineage.
    pub subject: Option<String>,
}

/// A full hash tile of the evidence log: 256 hashes of 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileRow {
    pub level: i32,
    pub idx: i64,
    pub hashes: Vec<u8>,
}

/// A signed checkpoint of the evidence log (a C2SP signed note), with its cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteRow {
    pub size: i64,
    pub at_ms: i64,
    pub note: String,
}

/// A ledger account as stored: ids as 32 hex digits, balances in fen (they fit an i64: the
/// server refuses a transfer that would make one not fit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    pub id: String,
    /// `wallet`, `provider`, `carrier`, …; with `name`, unique.
    pub kind: String,
    pub name: String,
    pub code: i32,
    pub flags: i32,
    pub credit_limit: i64,
    pub debits_pending: i64,
    pub debits_posted: i64,
    pub credits_pending: i64,
    pub credits_posted: i64,
    /// The ledger timestamp of its creation.
    pub ts: i64,
}

/// A ledger transfer as stored (immutable once written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRow {
    pub id: String,
    pub debit: String,
    pub credit: String,
    pub amount: i64,
    /// The pending transfer a post or void resolves, or `""`.
    pub pending_id: String,
    /// The job (or programme) it belongs to.
    pub user_data: i64,
    pub code: i32,
    pub flags: i32,
    /// The ledger timestamp (µs, strictly increasing).
    pub ts: i64,
    /// Wall time, epoch ms UTC.
    pub at_ms: i64,
}

/// The `pending` flag of a stored transfer (TigerBeetle's bit).
pub const TRANSFER_PENDING: i32 = 1 << 1;

/// A voucher programme as filed (its body is JSON the server owns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammeRow {
    pub id: String,
    pub funder: String,
    pub body: String,
    pub created_at_ms: i64,
}

/// A row of the market (issue 16, R4): an order, a contract or a published clearing price, its
/// body JSON the server owns. Upserted by (kind, id): a later row of the same kind and id replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketRow {
    /// `order`, `contract` or `price`.
    pub kind: String,
    /// Unique within its kind; rows are listed in id order (the server zero-pads numbers).
    pub id: String,
    pub owner: String,
    pub product: String,
    /// e.g. `open`, `filled`, `cancelled` for orders; free text for the store.
    pub state: String,
    pub body: String,
    pub at_ms: i64,
}

/// Which market rows to list: of `kind`, optionally only one owner's / one product's / in one
/// state, with `id > after`, at most `limit`, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketQuery {
    pub kind: String,
    pub owner: Option<String>,
    pub product: Option<String>,
    pub state: Option<String>,
    pub after: String,
    pub limit: i64,
}

/// A page of transfers, in timestamp order: those touching any of `accounts` (all when empty),
/// of job `user_data` when set, with `from_ms <= at_ms < to_ms`, after timestamp `after_ts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferQuery {
    pub accounts: Vec<String>,
    pub user_data: Option<i64>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub after_ts: i64,
    pub limit: i64,
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
    /// When it stops being accepted (UTC, ms); `None`: never.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("idempotency key {key:?} of tenant {tenant:?} is already used")]
    DuplicateKey { tenant: String, key: String },
    #[error("{0}")]
    Config(String),
    /// A snapshot must follow a command the log holds (the state it saves is that command's).
    #[error("a snapshot after command {seq}, which the log does not hold, was not stored")]
    SnapshotBeyondLog { seq: i64 },
    /// Another instance holds the leader's lease (issue 17): this one's write was refused.
    #[error("instance {instance:?} lost the leader's lease (its epoch {epoch} is over): the write was refused")]
    Fenced { instance: String, epoch: i64 },
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
    /// Tokens no commit has marked logged yet (`Batch::tokens_logged`), oldest first, at most
    /// `limit`: tokens are created beside the control plane (`suanwang token create` writes
    /// the store directly), which logs their creation when it next looks.
    fn unlogged_tokens(&self, limit: i64) -> impl Future<Output = Result<Vec<TokenRow>, StoreError>> + Send;
    /// Stores a snapshot of the state after command `seq`, which the log must hold
    /// ([`StoreError::SnapshotBeyondLog`] otherwise; older snapshots but the previous
    /// one are dropped).
    fn put_snapshot(&self, seq: i64, at_ms: i64, body: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The newest snapshot: (seq, body).
    fn latest_snapshot(&self) -> impl Future<Output = Result<Option<(i64, String)>, StoreError>> + Send {
        async move { Ok(self.snapshots().await?.into_iter().next()) }
    }
    /// The snapshots kept (at most two), newest first: (seq, body).
    fn snapshots(&self) -> impl Future<Output = Result<Vec<(i64, String)>, StoreError>> + Send;
    /// Every ledger account.
    fn ledger_accounts(&self) -> impl Future<Output = Result<Vec<AccountRow>, StoreError>> + Send;
    /// Pending transfers no transfer has posted or voided yet.
    fn open_pending(&self) -> impl Future<Output = Result<Vec<TransferRow>, StoreError>> + Send;
    fn ledger_transfer(&self, id: &str) -> impl Future<Output = Result<Option<TransferRow>, StoreError>> + Send;
    /// A page of transfers (see [`TransferQuery`]).
    fn ledger_transfers(&self, q: &TransferQuery) -> impl Future<Output = Result<Vec<TransferRow>, StoreError>> + Send;
    /// Posted (debits, credits) of `account` from transfers with `at_ms < before_ms`: an
    /// opening balance.
    fn posted_before(
        &self,
        account: &str,
        before_ms: i64,
    ) -> impl Future<Output = Result<(i64, i64), StoreError>> + Send;
    /// The last ledger timestamp given (0 for an empty ledger).
    fn ledger_clock(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Brings the transfers' indexes up to what is committed, now. Reads never need it (they
    /// see every committed transfer either way); it is for tests and tools that want the work
    /// done. SQLite indexes its transfers beside the group commit (`ledger_index.rs`);
    /// PostgreSQL indexes them in it and has nothing to do.
    fn fold_ledger(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
    fn programmes(&self) -> impl Future<Output = Result<Vec<ProgrammeRow>, StoreError>> + Send;
    /// Keeps `cp` as its job's checkpoint, replacing the one before unless that one was taken
    /// by a later attempt (a late write from a superseded attempt changes nothing).
    fn put_checkpoint(&self, cp: &Checkpoint) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Job `job_id`'s newest checkpoint.
    fn checkpoint(&self, job_id: i64) -> impl Future<Output = Result<Option<Checkpoint>, StoreError>> + Send;
    /// The value of setting `key`, storing `value` first when it has none: the first writer
    /// wins, and every caller gets what is stored (the control plane's identity and secret).
    fn setting_or_insert(&self, key: &str, value: &str) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// Entries of the evidence log: the size (entries appended).
    fn evidence_size(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Entries `[from, to)`, in order.
    fn evidence_entries(&self, from: i64, to: i64)
    -> impl Future<Output = Result<Vec<EvidenceRow>, StoreError>> + Send;
    /// Entries about job `job_id` or subject `subject`, in order (at most `limit`).
    fn evidence_about(
        &self,
        job_id: Option<i64>,
        subject: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<EvidenceRow>, StoreError>> + Send;
    /// Full hash tiles of `level` with indexes `[from, to)`, in order.
    fn evidence_tiles(
        &self,
        level: i32,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<TileRow>, StoreError>> + Send;
    /// Stores a signed checkpoint (or replaces it with a copy carrying more cosignatures).
    fn put_note(&self, note: &NoteRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Up to `limit` checkpoints with `size > after`, smallest first; `newest` reverses the order
    /// and takes those below `after` when it is positive.
    fn notes(
        &self,
        after: i64,
        limit: i64,
        newest: bool,
    ) -> impl Future<Output = Result<Vec<NoteRow>, StoreError>> + Send;
    fn dataset(&self, id: &str) -> impl Future<Output = Result<Option<DatasetRow>, StoreError>> + Send;
    /// Up to `limit` datasets with `id > after`, in id order, of `owner` when given.
    fn datasets(
        &self,
        owner: Option<&str>,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<DatasetRow>, StoreError>> + Send;
    /// A page of market rows (see [`MarketQuery`]): of its kind, filtered, `id > after`, in id
    /// order (byte order on both backends). The limit is clamped to 1 to 100,000 (the server
    /// refuses other limits before it asks).
    fn market(&self, q: &MarketQuery) -> impl Future<Output = Result<Vec<MarketRow>, StoreError>> + Send;
    /// The greatest id of the market's rows of `kind` (byte order), if any: where a restarted
    /// server numbers on from.
    fn market_last_id(&self, kind: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
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

    async fn unlogged_tokens(&self, limit: i64) -> Result<Vec<TokenRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.unlogged_tokens(limit).await,
            AnyStore::Postgres(s) => s.unlogged_tokens(limit).await,
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

    async fn ledger_accounts(&self) -> Result<Vec<AccountRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.ledger_accounts().await,
            AnyStore::Postgres(s) => s.ledger_accounts().await,
        }
    }

    async fn open_pending(&self) -> Result<Vec<TransferRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.open_pending().await,
            AnyStore::Postgres(s) => s.open_pending().await,
        }
    }

    async fn ledger_transfer(&self, id: &str) -> Result<Option<TransferRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.ledger_transfer(id).await,
            AnyStore::Postgres(s) => s.ledger_transfer(id).await,
        }
    }

    async fn ledger_transfers(&self, q: &TransferQuery) -> Result<Vec<TransferRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.ledger_transfers(q).await,
            AnyStore::Postgres(s) => s.ledger_transfers(q).await,
        }
    }

    async fn posted_before(&self, account: &str, before_ms: i64) -> Result<(i64, i64), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.posted_before(account, before_ms).await,
            AnyStore::Postgres(s) => s.posted_before(account, before_ms).await,
        }
    }

    async fn ledger_clock(&self) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.ledger_clock().await,
            AnyStore::Postgres(s) => s.ledger_clock().await,
        }
    }

    async fn fold_ledger(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.fold_ledger().await,
            AnyStore::Postgres(s) => s.fold_ledger().await,
        }
    }

    async fn programmes(&self) -> Result<Vec<ProgrammeRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.programmes().await,
            AnyStore::Postgres(s) => s.programmes().await,
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

    async fn evidence_size(&self) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.evidence_size().await,
            AnyStore::Postgres(s) => s.evidence_size().await,
        }
    }

    async fn evidence_entries(&self, from: i64, to: i64) -> Result<Vec<EvidenceRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.evidence_entries(from, to).await,
            AnyStore::Postgres(s) => s.evidence_entries(from, to).await,
        }
    }

    async fn evidence_about(
        &self,
        job_id: Option<i64>,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EvidenceRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.evidence_about(job_id, subject, limit).await,
            AnyStore::Postgres(s) => s.evidence_about(job_id, subject, limit).await,
        }
    }

    async fn evidence_tiles(&self, level: i32, from: i64, to: i64) -> Result<Vec<TileRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.evidence_tiles(level, from, to).await,
            AnyStore::Postgres(s) => s.evidence_tiles(level, from, to).await,
        }
    }

    async fn put_note(&self, note: &NoteRow) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.put_note(note).await,
            AnyStore::Postgres(s) => s.put_note(note).await,
        }
    }

    async fn notes(&self, after: i64, limit: i64, newest: bool) -> Result<Vec<NoteRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.notes(after, limit, newest).await,
            AnyStore::Postgres(s) => s.notes(after, limit, newest).await,
        }
    }

    async fn dataset(&self, id: &str) -> Result<Option<DatasetRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.dataset(id).await,
            AnyStore::Postgres(s) => s.dataset(id).await,
        }
    }

    async fn datasets(&self, owner: Option<&str>, after: &str, limit: i64) -> Result<Vec<DatasetRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.datasets(owner, after, limit).await,
            AnyStore::Postgres(s) => s.datasets(owner, after, limit).await,
        }
    }

    async fn market(&self, q: &MarketQuery) -> Result<Vec<MarketRow>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.market(q).await,
            AnyStore::Postgres(s) => s.market(q).await,
        }
    }

    async fn market_last_id(&self, kind: &str) -> Result<Option<String>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.market_last_id(kind).await,
            AnyStore::Postgres(s) => s.market_last_id(kind).await,
        }
    }
}

/// The registry's rows of a batch, the last row of each id (upserted once each).
fn last_row_per_dataset(rows: &[DatasetRow]) -> Vec<&DatasetRow> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<&DatasetRow> = rows.iter().rev().filter(|r| seen.insert(r.id.as_str())).collect();
    out.reverse();
    out
}

/// The market's rows of a batch, the last row of each (kind, id) (upserted once each: PostgreSQL
/// refuses to upsert one row twice in a statement).
fn last_row_per_market(rows: &[MarketRow]) -> Vec<&MarketRow> {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut out: Vec<&MarketRow> =
        rows.iter().rev().filter(|r| seen.insert((r.kind.as_str(), r.id.as_str()))).collect();
    out.reverse();
    out
}

/// The columns of `market_rows`, in the order the backends bind them.
const MARKET_COLUMNS: &str = "kind, id, owner, product, state, body, at_ms";

/// What an upsert of a market row changes when its (kind, id) exists: all of it.
const MARKET_UPDATE: &str = "owner = excluded.owner, product = excluded.product, state = excluded.state, \
    body = excluded.body, at_ms = excluded.at_ms";

/// The market's indexes (issue 16), the same SQL on both backends (the table differs: its id's
/// collation is each backend's own). With the primary key (kind, id), each listing of
/// [`Store::market`] (all of a kind, or by state, owner or product) reads one index range in id
/// order: no sort, however many rows.
const MARKET_MIGRATIONS: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS market_rows_state ON market_rows (kind, state, id)",
    "CREATE INDEX IF NOT EXISTS market_rows_owner ON market_rows (kind, owner, id)",
    "CREATE INDEX IF NOT EXISTS market_rows_product ON market_rows (kind, product, id)",
];

/// The largest page [`Store::market`] returns.
const MARKET_LIMIT_MAX: i64 = 100_000;

/// [`Store::market`]'s query, with `?` placeholders (the PostgreSQL backend numbers them): binds
/// in order: kind, owner, product and state when given, after, the limit ([`market_limit`]).
fn market_sql(q: &MarketQuery) -> String {
    let mut sql = format!("SELECT {MARKET_COLUMNS} FROM market_rows WHERE kind = ?");
    if q.owner.is_some() {
        sql.push_str(" AND owner = ?");
    }
    if q.product.is_some() {
        sql.push_str(" AND product = ?");
    }
    if q.state.is_some() {
        sql.push_str(" AND state = ?");
    }
    sql.push_str(" AND id > ? ORDER BY id LIMIT ?");
    sql
}

/// A [`MarketQuery`]'s limit, clamped to 1 to [`MARKET_LIMIT_MAX`] (the same on both backends:
/// their `LIMIT` differs on negative numbers).
fn market_limit(q: &MarketQuery) -> i64 {
    q.limit.clamp(1, MARKET_LIMIT_MAX)
}

/// The columns of `evidence_entries`, in the order the backends bind them.
const EVIDENCE_COLUMNS: &str = "idx, kind, at_ms, entry, salt, record, tenant, job_id, subject";

/// The evidence log's indexes and checkpoint table, the same SQL on both backends (the entry
/// and tile tables differ: their keys and byte types are each backend's own).
const EVIDENCE_MIGRATIONS: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS evidence_entries_job ON evidence_entries (job_id) WHERE job_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS evidence_entries_subject ON evidence_entries (subject) WHERE subject IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS datasets (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS datasets_owner ON datasets (owner, id)",
    "CREATE TABLE IF NOT EXISTS evidence_notes (
        size BIGINT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        note TEXT NOT NULL
    )",
    // tokens whose creation is in the evidence log (a table beside `tokens`, not a column of
    // it: stores made before it need no ALTER, and their tokens are logged at the next start)
    "CREATE TABLE IF NOT EXISTS tokens_logged (hash TEXT PRIMARY KEY)",
    // when a token stops being accepted (beside `tokens` for the same reason: no ALTER; a
    // token without a row here never expires)
    "CREATE TABLE IF NOT EXISTS token_expiry (hash TEXT PRIMARY KEY, expires_at_ms BIGINT NOT NULL)",
];

/// [`Store::unlogged_tokens`]'s query, with `?` for the limit.
const UNLOGGED_TOKENS: &str = "SELECT tokens.hash, role, name, created_at_ms, e.expires_at_ms FROM tokens \
     LEFT JOIN token_expiry e ON e.hash = tokens.hash \
     WHERE NOT EXISTS (SELECT 1 FROM tokens_logged l WHERE l.hash = tokens.hash) \
     ORDER BY created_at_ms, tokens.hash LIMIT ?";

/// [`Store::token`]'s query, with `?` for the hash.
const TOKEN: &str = "SELECT tokens.hash, role, name, created_at_ms, e.expires_at_ms FROM tokens \
     LEFT JOIN token_expiry e ON e.hash = tokens.hash WHERE tokens.hash = ?";

/// The WHERE clause and binds of [`Store::evidence_about`].
fn about_filter(job_id: Option<i64>, subject: Option<&str>) -> &'static str {
    match (job_id, subject) {
        (Some(_), Some(_)) => " WHERE job_id = ? OR subject = ?",
        (Some(_), None) => " WHERE job_id = ?",
        (None, Some(_)) => " WHERE subject = ?",
        (None, None) => " WHERE false",
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

/// The columns of `ledger_accounts` and `ledger_transfers`, in the order the backends bind them.
const ACCOUNT_COLUMNS: &str = "id, kind, name, code, flags, credit_limit, debits_pending, debits_posted, \
    credits_pending, credits_posted, ts";
const ACCOUNT_UPDATE: &str = "credit_limit = excluded.credit_limit, debits_pending = excluded.debits_pending, \
    debits_posted = excluded.debits_posted, credits_pending = excluded.credits_pending, \
    credits_posted = excluded.credits_posted";
const TRANSFER_COLUMNS: &str = "id, debit, credit, amount, pending_id, user_data, code, flags, ts, at_ms";

/// The ledger's tables, the same SQL on both backends.
const LEDGER_MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ledger_accounts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        code INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        credit_limit BIGINT NOT NULL,
        debits_pending BIGINT NOT NULL,
        debits_posted BIGINT NOT NULL,
        credits_pending BIGINT NOT NULL,
        credits_posted BIGINT NOT NULL,
        ts BIGINT NOT NULL,
        UNIQUE (kind, name)
    )",
    "CREATE TABLE IF NOT EXISTS ledger_transfers (
        id TEXT PRIMARY KEY,
        debit TEXT NOT NULL,
        credit TEXT NOT NULL,
        amount BIGINT NOT NULL,
        pending_id TEXT NOT NULL,
        user_data BIGINT NOT NULL,
        code INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        ts BIGINT NOT NULL,
        at_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS ledger_transfers_debit ON ledger_transfers (debit, at_ms)",
    "CREATE INDEX IF NOT EXISTS ledger_transfers_credit ON ledger_transfers (credit, at_ms)",
    "CREATE INDEX IF NOT EXISTS ledger_transfers_job ON ledger_transfers (user_data) WHERE user_data <> 0",
    "CREATE INDEX IF NOT EXISTS ledger_transfers_pending ON ledger_transfers (pending_id) WHERE pending_id <> ''",
    "CREATE TABLE IF NOT EXISTS voucher_programmes (
        id TEXT PRIMARY KEY,
        funder TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )",
];

/// The WHERE clause of a [`TransferQuery`], with `$n`-free `?` placeholders (the PostgreSQL
/// backend numbers them): binds in order: the accounts (twice), user_data, from, to, after_ts.
fn transfer_filter(q: &TransferQuery) -> String {
    let mut sql = String::from(" WHERE ts > ?");
    if !q.accounts.is_empty() {
        let list = vec!["?"; q.accounts.len()].join(", ");
        sql.push_str(" AND (debit IN (");
        sql.push_str(&list);
        sql.push_str(") OR credit IN (");
        sql.push_str(&list);
        sql.push_str("))");
    }
    if q.user_data.is_some() {
        sql.push_str(" AND user_data = ?");
    }
    if q.from_ms.is_some() {
        sql.push_str(" AND at_ms >= ?");
    }
    if q.to_ms.is_some() {
        sql.push_str(" AND at_ms < ?");
    }
    sql
}

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
