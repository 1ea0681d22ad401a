//! SQLite's transfers (issue 13, R4): logged in the group commit, indexed beside it.
//!
//! A group commit appends its transfers to `ledger_journal` in the main database as **one row**:
//! a compact binary encoding, in the same transaction as the job events that caused them. That
//! row is the ledger's durable record. Written as rows of an indexed table instead, each commit
//! put every transfer into six B-trees (the table, its id index, four secondary indexes), and
//! billing added half again to `bench submit`'s p99 (ARCHITECTURE.md → store, the experiments).
//!
//! The index — `ledger_transfers` with its indexes by account and time, job and pending id — is
//! a second database file beside the main one (`suanwang-ledger.db`), *derived* from the journal:
//! a background task (the fold) inserts the journal rows it has not indexed yet, many commits'
//! worth a transaction, recording the last journal row it folded in the same transaction. It
//! folds when the commits pause ([`FOLD_QUIET`]), not while they come: on two cores a fold beside
//! a saturated control plane cost its p99 as much as indexing in the commit did. A tail longer
//! than [`FOLD_CAP`] is folded whatever the load. The file has its own write lock, so a fold never
//! holds a group commit up; losing it loses nothing — it is rebuilt from the journal at the next
//! start (hence `synchronous = NORMAL` there).
//!
//! Reads see every committed transfer once: the index's rows (a snapshot, with the journal row
//! it reached), then the journal rows after that one, decoded and filtered in memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};

use crate::sqlite::{LEDGER_CHUNK, private_file, values_sql};
use crate::{
    ACCOUNT_COLUMNS, ACCOUNT_UPDATE, AccountRow, LEDGER_MIGRATIONS, StoreError, TRANSFER_COLUMNS, TransferQuery,
    TransferRow, statement_chunks,
};

/// The journal's table (main database): one row per group commit that created transfers.
pub(crate) const JOURNAL_MIGRATION: &str = "CREATE TABLE IF NOT EXISTS ledger_journal (
    seq INTEGER PRIMARY KEY,
    last_ts BIGINT NOT NULL,
    body BLOB NOT NULL
)";

/// Whether a ledger migration belongs to the index file on SQLite (the accounts' and the
/// transfers' tables; the programmes' stay in the main database).
pub(crate) fn is_index_migration(sql: &str) -> bool {
    sql.contains("ledger_transfers") || sql.contains("ledger_accounts")
}

/// The version byte that opens every journal row's body: 3, [`encode`]'s compact form; rows of
/// version 2 (fixed-width integers, ids as text), written by builds before it, still read.
const FORMAT: u8 = 3;
const FORMAT_2: u8 = 2;

/// What one journal row holds: a group commit's new transfers and the accounts it changed (their
/// whole new state: the last one of an account in the journal is the account).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Logged {
    pub transfers: Vec<TransferRow>,
    pub accounts: Vec<AccountRow>,
}

impl Logged {
    /// The last ledger timestamp it holds (0 for none).
    pub(crate) fn last_ts(transfers: &[TransferRow], accounts: &[AccountRow]) -> i64 {
        transfers.iter().map(|t| t.ts).chain(accounts.iter().map(|a| a.ts)).max().unwrap_or(0)
    }
}

/// LEB128 of `v`.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A signed integer, zig-zagged so that small magnitudes of either sign take few bytes.
fn put_int(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The ledger's ids are 32 lower-case hex digits (`""` for none): 16 bytes, not 32 characters.
const ID_NONE: u8 = 0;
const ID_HEX: u8 = 1;
const ID_TEXT: u8 = 2;

fn put_id(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(ID_NONE);
        return;
    }
    let hex = s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match u128::from_str_radix(s, 16).ok().filter(|_| hex) {
        Some(v) => {
            out.push(ID_HEX);
            out.extend_from_slice(&v.to_be_bytes());
        }
        // any other text (the store's callers may use their own ids) is kept as it is
        None => {
            out.push(ID_TEXT);
            put_str(out, s);
        }
    }
}

/// `v` as the ledger writes its ids: 32 lower-case hex digits (by table: the server formats three
/// or four a transfer in its serial loop, where `format!` cost most of the row's time).
pub fn hex32(v: u128) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..32).rev().map(|i| char::from(DIGITS[((v >> (4 * i)) & 0xf) as usize])).collect()
}

/// An account's integers but its clock, in the order both versions write them.
fn account_ints(a: &AccountRow) -> [i64; 7] {
    [
        i64::from(a.code),
        i64::from(a.flags),
        a.credit_limit,
        a.debits_pending,
        a.debits_posted,
        a.credits_pending,
        a.credits_posted,
    ]
}

/// Encodes one journal body: [`FORMAT`]; the transfers' count, then per transfer its ids (id,
/// debit, credit, pending: a tag, then 16 bytes for a 32-digit hex id or the text of another)
/// and its integers (amount, user data, code, flags; its ledger and wall clocks as differences
/// from the transfer before it); the accounts' count, then per account its id, kind, name and
/// integers (its clock continuing the same differences). Integers are zig-zag LEB128; a
/// group commit's transfers share their wall clock and have consecutive ledger clocks, so a
/// transfer takes about 78 bytes (192 in version 2).
pub(crate) fn encode(transfers: &[TransferRow], accounts: &[AccountRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + transfers.len() * 80 + accounts.len() * 60);
    out.push(FORMAT);
    put_varint(&mut out, transfers.len() as u64);
    let (mut ts, mut at_ms) = (0i64, 0i64);
    for t in transfers {
        for id in [&t.id, &t.debit, &t.credit, &t.pending_id] {
            put_id(&mut out, id);
        }
        for v in [t.amount, t.user_data, i64::from(t.code), i64::from(t.flags)] {
            put_int(&mut out, v);
        }
        put_int(&mut out, t.ts.wrapping_sub(ts));
        put_int(&mut out, t.at_ms.wrapping_sub(at_ms));
        (ts, at_ms) = (t.ts, t.at_ms);
    }
    put_varint(&mut out, accounts.len() as u64);
    for a in accounts {
        put_id(&mut out, &a.id);
        put_str(&mut out, &a.kind);
        put_str(&mut out, &a.name);
        for v in account_ints(a) {
            put_int(&mut out, v);
        }
        put_int(&mut out, a.ts.wrapping_sub(ts));
        ts = a.ts;
    }
    out
}

/// A journal body being read; every read is checked (`None`: not a body [`encode`] wrote).
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            // the tenth byte may carry one bit; a longer or overflowing one is damage
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn int(&mut self) -> Option<i64> {
        let z = self.varint()?;
        Some(((z >> 1) as i64) ^ -((z & 1) as i64))
    }
    fn small(&mut self) -> Option<i32> {
        i32::try_from(self.int()?).ok()
    }
    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }
    fn string(&mut self) -> Option<String> {
        let n = self.count()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn id(&mut self) -> Option<String> {
        match self.byte()? {
            ID_NONE => Some(String::new()),
            ID_HEX => Some(hex32(u128::from_be_bytes(self.take(16)?.try_into().ok()?))),
            ID_TEXT => self.string().filter(|s| !s.is_empty()),
            _ => None,
        }
    }
    // version 2: u32 lengths, fixed i64s
    fn len_2(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()
    }
    fn string_2(&mut self) -> Option<String> {
        let n = self.len_2()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn int_2(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn small_2(&mut self) -> Option<i32> {
        i32::try_from(self.int_2()?).ok()
    }
}

/// Reads a journal body written by [`encode`] (or by version 2's encoder); `None` if it is not
/// one, to the last byte.
pub(crate) fn decode(body: &[u8]) -> Option<Logged> {
    let (&format, rest) = body.split_first()?;
    let mut r = Reader(rest);
    let out = match format {
        FORMAT => decode_3(&mut r)?,
        FORMAT_2 => decode_2(&mut r)?,
        _ => return None,
    };
    r.0.is_empty().then_some(out)
}

fn decode_3(r: &mut Reader<'_>) -> Option<Logged> {
    let mut out = Logged::default();
    let (mut ts, mut at_ms) = (0i64, 0i64);
    let n = r.count()?;
    // each transfer takes at least 10 bytes: a damaged count cannot reserve more than the body
    out.transfers.reserve(n.min(r.0.len() / 10));
    for _ in 0..n {
        let (id, debit, credit, pending_id) = (r.id()?, r.id()?, r.id()?, r.id()?);
        let (amount, user_data, code, flags) = (r.int()?, r.int()?, r.small()?, r.small()?);
        ts = ts.wrapping_add(r.int()?);
        at_ms = at_ms.wrapping_add(r.int()?);
        out.transfers.push(TransferRow { id, debit, credit, amount, pending_id, user_data, code, flags, ts, at_ms });
    }
    for _ in 0..r.count()? {
        let (id, kind, name) = (r.id()?, r.string()?, r.string()?);
        let (code, flags) = (r.small()?, r.small()?);
        let (credit_limit, debits_pending, debits_posted) = (r.int()?, r.int()?, r.int()?);
        let (credits_pending, credits_posted) = (r.int()?, r.int()?);
        ts = ts.wrapping_add(r.int()?);
        out.accounts.push(AccountRow {
            id,
            kind,
            name,
            code,
            flags,
            credit_limit,
            debits_pending,
            debits_posted,
            credits_pending,
            credits_posted,
            ts,
        });
    }
    Some(out)
}

fn decode_2(r: &mut Reader<'_>) -> Option<Logged> {
    let mut out = Logged::default();
    for _ in 0..r.len_2()? {
        out.transfers.push(TransferRow {
            id: r.string_2()?,
            debit: r.string_2()?,
            credit: r.string_2()?,
            pending_id: r.string_2()?,
            amount: r.int_2()?,
            user_data: r.int_2()?,
            code: r.small_2()?,
            flags: r.small_2()?,
            ts: r.int_2()?,
            at_ms: r.int_2()?,
        });
    }
    for _ in 0..r.len_2()? {
        out.accounts.push(AccountRow {
            id: r.string_2()?,
            kind: r.string_2()?,
            name: r.string_2()?,
            code: r.small_2()?,
            flags: r.small_2()?,
            credit_limit: r.int_2()?,
            debits_pending: r.int_2()?,
            debits_posted: r.int_2()?,
            credits_pending: r.int_2()?,
            credits_posted: r.int_2()?,
            ts: r.int_2()?,
        });
    }
    Some(out)
}

/// Whether `t` is one of the rows `q` asks for (the in-memory twin of `transfer_filter`).
pub(crate) fn matches(q: &TransferQuery, t: &TransferRow) -> bool {
    t.ts > q.after_ts
        && (q.accounts.is_empty() || q.accounts.iter().any(|a| *a == t.debit || *a == t.credit))
        && q.user_data.is_none_or(|u| u == t.user_data)
        && q.from_ms.is_none_or(|f| t.at_ms >= f)
        && q.to_ms.is_none_or(|to| t.at_ms < to)
}

/// The index file beside the main database `file`: `suanwang.db` → `suanwang-ledger.db`.
pub(crate) fn index_path(file: &Path) -> PathBuf {
    beside(file, "ledger")
}

/// A file beside the main database `file`, named for `what`: `suanwang.db` → `suanwang-{what}.db`.
pub(crate) fn beside(file: &Path, what: &str) -> PathBuf {
    let stem = file.file_stem().map_or_else(|| "suanwang".into(), |s| s.to_string_lossy().into_owned());
    let name = match file.extension() {
        Some(ext) => format!("{stem}-{what}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{what}"),
    };
    file.with_file_name(name)
}

/// Journal rows read per fold step (each holds one group commit's transfers and accounts)…
const FOLD_ROWS: i64 = 256;
/// …and the transfers a step takes at most (past this, it ends with the row that got there).
const FOLD_TRANSFERS: usize = 65_536;
/// The fold waits for the commits to pause this long: while the control plane is busy it does
/// not compete with it (two cores here: a fold running beside a saturated server cost as much
/// p99 as indexing in the commit did).
const FOLD_QUIET: Duration = Duration::from_millis(100);
/// Unless this many transfers wait to be indexed: then it folds down to half as many, busy or
/// not — reads decode the unindexed tail, and it must stay bounded.
const FOLD_CAP: u64 = 262_144;
/// And it looks at least this often (a commit by another process on the same files).
const FOLD_IDLE: Duration = Duration::from_secs(2);

/// The ledger's index file and what folds the journal into it.
#[derive(Debug)]
pub(crate) struct LedgerIndex {
    /// The index's one writer.
    write: SqlitePool,
    /// Its readers.
    read: SqlitePool,
    /// The main database's readers (the journal).
    journal: SqlitePool,
    /// One fold at a time in this process (another process is kept out by the recorded seq).
    folding: tokio::sync::Mutex<()>,
    wake: Arc<tokio::sync::Notify>,
    /// Commits that appended to the journal (the fold's measure of busy).
    commits: AtomicU64,
    /// Transfers appended and not yet indexed (as this process knows them).
    unfolded: AtomicU64,
}

/// Empties the index when it is not the index of this journal — the row it says it folded last is
/// not there with that clock (the database was restored from an older copy, or replaced, beside
/// a newer index): it would answer for transfers the journal does not hold, and skip rows it does.
/// The fold then rebuilds it from the journal.
async fn rebuild_if_foreign(index: &SqlitePool, journal: &SqlitePool) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT folded, folded_ts FROM ledger_index_state WHERE id = 1").fetch_one(index).await?;
    let (folded, folded_ts): (i64, i64) = (row.try_get("folded")?, row.try_get("folded_ts")?);
    if folded == 0 {
        return Ok(());
    }
    let at = match sqlx::query_scalar::<_, i64>("SELECT last_ts FROM ledger_journal WHERE seq = ?")
        .bind(folded)
        .fetch_optional(journal)
        .await
    {
        Ok(at) => at,
        // a new database (not yet migrated) beside an old index
        Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => None,
        Err(e) => return Err(e.into()),
    };
    if at == Some(folded_ts) {
        return Ok(());
    }
    tracing::warn!(
        folded,
        "the ledger's index does not match the database's journal (a database restored from a copy?): rebuilding it"
    );
    let mut tx = index.begin().await?;
    for sql in [
        "DELETE FROM ledger_transfers",
        "DELETE FROM ledger_accounts",
        "UPDATE ledger_index_state SET folded = 0, folded_ts = 0 WHERE id = 1",
    ] {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl LedgerIndex {
    /// Opens (creating) the index file beside `main_file`, with the main database's readers.
    pub(crate) async fn open(main_file: &Path, journal: SqlitePool) -> Result<Arc<LedgerIndex>, StoreError> {
        // derived from the journal: a crash that loses its last fold folds again
        let opts = private_file(&index_path(main_file), SqliteSynchronous::Normal)?;
        let writer = opts.clone().page_size(16_384).pragma("cache_size", "-32768");
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(writer).await?;
        for m in LEDGER_MIGRATIONS.iter().filter(|m| is_index_migration(m)) {
            sqlx::query(*m).execute(&write).await?;
        }
        // the last journal row folded, and its clock: the row it names must be in the journal
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS ledger_index_state (id INTEGER PRIMARY KEY CHECK (id = 1),
             folded BIGINT NOT NULL, folded_ts BIGINT NOT NULL)",
        )
        .execute(&write)
        .await?;
        sqlx::query(
            "INSERT INTO ledger_index_state (id, folded, folded_ts) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING",
        )
        .execute(&write)
        .await?;
        rebuild_if_foreign(&write, &journal).await?;
        let read = SqlitePoolOptions::new().max_connections(2).connect_with(opts.read_only(true)).await?;
        let ix = Arc::new(LedgerIndex {
            write,
            read,
            journal,
            folding: tokio::sync::Mutex::new(()),
            wake: Arc::new(tokio::sync::Notify::new()),
            commits: AtomicU64::new(0),
            unfolded: AtomicU64::new(0),
        });
        spawn_fold(Arc::downgrade(&ix), Arc::clone(&ix.wake));
        Ok(ix)
    }

    /// Tells the fold a commit appended `transfers` to the journal.
    pub(crate) fn appended(&self, transfers: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.unfolded.fetch_add(transfers as u64, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Folds journal rows into the index until none is left; returns the journal rows folded.
    pub(crate) async fn fold_all(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            match self.fold_step().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// The background fold's share: everything while no commit comes; once commits resume, it
    /// stops — unless the tail is over [`FOLD_CAP`], which it then folds to half that.
    async fn fold_while_quiet(&self) -> Result<(), StoreError> {
        loop {
            let commits = self.commits.load(Ordering::Relaxed);
            if self.fold_step().await? == 0 {
                return Ok(());
            }
            let busy = self.commits.load(Ordering::Relaxed) != commits;
            if busy && self.unfolded.load(Ordering::Relaxed) <= FOLD_CAP / 2 {
                return Ok(());
            }
        }
    }

    /// One fold: up to [`FOLD_ROWS`] journal rows after the last one indexed, in one transaction
    /// of the index with the new last row. Returns the journal rows folded.
    async fn fold_step(&self) -> Result<u64, StoreError> {
        let _one = self.folding.lock().await;
        let folded: i64 =
            sqlx::query_scalar("SELECT folded FROM ledger_index_state WHERE id = 1").fetch_one(&self.write).await?;
        let rows = match sqlx::query("SELECT seq, last_ts, body FROM ledger_journal WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(folded)
            .bind(FOLD_ROWS)
            .fetch_all(&self.journal)
            .await
        {
            Ok(rows) => rows,
            // a store opened but not yet migrated has no journal: nothing to fold
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        // whole journal rows, until FOLD_TRANSFERS (a migrated database's rows hold thousands)
        let (mut last, mut taken) = (None, 0u64);
        let mut transfers = Vec::new();
        let mut accounts: Vec<AccountRow> = Vec::new();
        for r in &rows {
            let logged = journal_row(r)?;
            transfers.extend(logged.transfers);
            accounts.extend(logged.accounts);
            last = Some((r.try_get::<i64, _>("seq")?, r.try_get::<i64, _>("last_ts")?));
            taken += 1;
            if transfers.len() >= FOLD_TRANSFERS {
                break;
            }
        }
        let Some((last, last_ts)) = last else { return Ok(0) };
        let accounts = last_per_account(accounts);
        let mut tx = self.write.begin().await?;
        for chunk in statement_chunks(&accounts, LEDGER_CHUNK) {
            let sql = values_sql(
                &format!("INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS})"),
                11,
                chunk.len(),
                &format!("ON CONFLICT (id) DO UPDATE SET {ACCOUNT_UPDATE}"),
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for a in chunk {
                q = q
                    .bind(&a.id)
                    .bind(&a.kind)
                    .bind(&a.name)
                    .bind(a.code)
                    .bind(a.flags)
                    .bind(a.credit_limit)
                    .bind(a.debits_pending)
                    .bind(a.debits_posted)
                    .bind(a.credits_pending)
                    .bind(a.credits_posted)
                    .bind(a.ts);
            }
            q.execute(&mut *tx).await?;
        }
        let mut inserted = 0u64;
        for chunk in statement_chunks(&transfers, LEDGER_CHUNK) {
            let head = format!("INSERT INTO ledger_transfers ({TRANSFER_COLUMNS})");
            let sql = values_sql(&head, 10, chunk.len(), "ON CONFLICT (id) DO NOTHING");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in chunk {
                q = q
                    .bind(&t.id)
                    .bind(&t.debit)
                    .bind(&t.credit)
                    .bind(t.amount)
                    .bind(&t.pending_id)
                    .bind(t.user_data)
                    .bind(t.code)
                    .bind(t.flags)
                    .bind(t.ts)
                    .bind(t.at_ms);
            }
            inserted += q.execute(&mut *tx).await?.rows_affected();
        }
        // another process's fold may have got here first: then this one changes nothing
        let moved = sqlx::query("UPDATE ledger_index_state SET folded = ?, folded_ts = ? WHERE id = 1 AND folded = ?")
            .bind(last)
            .bind(last_ts)
            .bind(folded)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Ok(0);
        }
        tx.commit().await?;
        let n = transfers.len() as u64;
        tracing::debug!(rows = taken, transfers = n, through = last, "folded the ledger's journal into its index");
        let _ = self.unfolded.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(n)));
        let repeated = n - inserted;
        if repeated > 0 {
            // the ledger refuses a repeated id before it gets here; if one did, the index keeps
            // the first (every read answers from the index then) and says so
            tracing::error!(
                repeated,
                through = last,
                "the ledger's journal repeats transfer ids: the index kept the first of each"
            );
        }
        Ok(taken)
    }

    /// A snapshot of the index to read from, and the last journal row it holds (for [`tail`]).
    ///
    /// [`tail`]: LedgerIndex::tail
    pub(crate) async fn snapshot(&self) -> Result<(sqlx::Transaction<'static, sqlx::Sqlite>, i64), StoreError> {
        let mut tx = self.read.begin().await?;
        let folded: i64 =
            sqlx::query_scalar("SELECT folded FROM ledger_index_state WHERE id = 1").fetch_one(&mut *tx).await?;
        Ok((tx, folded))
    }

    /// The transfers of the journal rows after `folded`, in ledger order, and the accounts they
    /// changed (in journal order: a later row of an account is newer). Read after the snapshot
    /// that gave `folded`: every row that snapshot folded is older than this read, so the two
    /// together hold each committed transfer once.
    pub(crate) async fn tail(&self, folded: i64) -> Result<Logged, StoreError> {
        let rows = sqlx::query("SELECT seq, body FROM ledger_journal WHERE seq > ? ORDER BY seq")
            .bind(folded)
            .fetch_all(&self.journal)
            .await?;
        let mut tail = Logged::default();
        for r in &rows {
            let logged = journal_row(r)?;
            tail.transfers.extend(logged.transfers);
            tail.accounts.extend(logged.accounts);
        }
        Ok(tail)
    }
}

/// The last row of each account in `accounts` (journal order), in the order of those last rows.
pub(crate) fn last_per_account(accounts: Vec<AccountRow>) -> Vec<AccountRow> {
    let mut seen = std::collections::HashSet::with_capacity(accounts.len());
    let mut out: Vec<AccountRow> = accounts.into_iter().rev().filter(|a| seen.insert(a.id.clone())).collect();
    out.reverse();
    out
}

/// One journal row's transfers and accounts.
fn journal_row(r: &sqlx::sqlite::SqliteRow) -> Result<Logged, StoreError> {
    let seq: i64 = r.try_get("seq")?;
    let body: Vec<u8> = r.try_get("body")?;
    decode(&body).ok_or_else(|| StoreError::Config(format!("ledger journal row {seq} is unreadable")))
}

/// The background fold: at start (an index behind its journal: a restart, a lost file), then
/// whenever the commits pause for [`FOLD_QUIET`] or the tail passes [`FOLD_CAP`]; it ends when
/// its store is dropped.
fn spawn_fold(ix: Weak<LedgerIndex>, wake: Arc<tokio::sync::Notify>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    rt.spawn(async move {
        // at start the tail's length is unknown (`unfolded` counts this process's commits): all of it
        let mut all = true;
        loop {
            let Some(index) = ix.upgrade() else { return };
            let folded = if std::mem::take(&mut all) {
                index.fold_all().await.map(|_| ())
            } else {
                index.fold_while_quiet().await
            };
            if let Err(e) = folded {
                tracing::warn!(error = %e, "folding the ledger's journal into its index failed; retrying");
            }
            drop(index);
            let _ = tokio::time::timeout(FOLD_IDLE, wake.notified()).await;
            // wait for a pause in the commits, or a tail too long to keep
            loop {
                let Some(index) = ix.upgrade() else { return };
                let before = index.commits.load(Ordering::Relaxed);
                drop(index);
                tokio::time::sleep(FOLD_QUIET).await;
                let Some(index) = ix.upgrade() else { return };
                if index.commits.load(Ordering::Relaxed) == before || index.unfolded.load(Ordering::Relaxed) > FOLD_CAP
                {
                    break;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, ts: i64) -> TransferRow {
        TransferRow {
            id: id.into(),
            debit: "d".into(),
            credit: "c-ü".into(),
            amount: i64::MAX,
            pending_id: String::new(),
            user_data: -7,
            code: 3,
            flags: i32::MIN,
            ts,
            at_ms: ts * 10,
        }
    }

    fn account(id: &str, ts: i64) -> AccountRow {
        AccountRow {
            id: id.into(),
            kind: "wallet".into(),
            name: "阿里".into(),
            code: 1,
            flags: 6,
            credit_limit: -1,
            debits_pending: i64::MIN,
            debits_posted: 2,
            credits_pending: 3,
            credits_posted: i64::MAX,
            ts,
        }
    }

    /// Version 2's encoder, as builds before version 3 wrote journal rows.
    fn encode_2(transfers: &[TransferRow], accounts: &[AccountRow]) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        let mut out = vec![FORMAT_2];
        out.extend_from_slice(&(transfers.len() as u32).to_le_bytes());
        for t in transfers {
            for s in [&t.id, &t.debit, &t.credit, &t.pending_id] {
                put(&mut out, s);
            }
            for v in [t.amount, t.user_data, i64::from(t.code), i64::from(t.flags), t.ts, t.at_ms] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&(accounts.len() as u32).to_le_bytes());
        for a in accounts {
            for s in [&a.id, &a.kind, &a.name] {
                put(&mut out, s);
            }
            for v in account_ints(a).into_iter().chain([a.ts]) {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Ids of every shape the encoder distinguishes: none, the ledger's 32 hex digits, and text
    /// that only looks like them (upper case, 31 or 33 digits, a sign) — kept as written.
    const IDS: [&str; 7] = [
        "",
        "0000000000000000000000000000002a",
        "ffffffffffffffffffffffffffffffff",
        "0000000000000000000000000000002A",
        "000000000000000000000000000002a",
        "+0000000000000000000000000000002a",
        "x-ü",
    ];

    fn sample(n: usize, m: usize) -> (Vec<TransferRow>, Vec<AccountRow>) {
        let transfers = (0..n)
            .map(|i| {
                let ts = [0, 1, i64::MAX, i64::MIN, -5, 1_765_000_000_000_123][i % 6];
                TransferRow {
                    id: IDS[(i + 1) % IDS.len()].into(),
                    debit: IDS[(i + 2) % IDS.len()].into(),
                    credit: IDS[(i + 3) % IDS.len()].into(),
                    pending_id: IDS[i % IDS.len()].into(),
                    amount: [i64::MAX, 0, -1, 300][i % 4],
                    user_data: i as i64 - 3,
                    code: [i32::MIN, 0, 3, i32::MAX][i % 4],
                    ts,
                    at_ms: ts.wrapping_mul(7),
                    ..t("", 0)
                }
            })
            .collect();
        let accounts = (0..m)
            .map(|i| AccountRow {
                id: IDS[(i + 1) % IDS.len()].into(),
                ts: [i64::MIN, 3, i64::MAX][i % 3],
                ..account("", 0)
            })
            .collect();
        (transfers, accounts)
    }

    #[test]
    fn a_journal_body_decodes_to_what_was_encoded() {
        for (n, m) in [(0, 0), (1, 0), (0, 2), (3, 2), (14, 7)] {
            let (transfers, accounts) = sample(n, m);
            let logged = Some(Logged { transfers: transfers.clone(), accounts: accounts.clone() });
            assert_eq!(decode(&encode(&transfers, &accounts)), logged, "{n} transfers, {m} accounts");
            assert_eq!(decode(&encode_2(&transfers, &accounts)), logged, "version 2: {n}, {m}");
        }
    }

    /// What version 3 is for: a settlement's transfer — four ledger ids, one commit's clocks —
    /// in well under half of version 2's bytes.
    #[test]
    fn a_ledger_transfer_takes_under_half_of_version_2s_bytes() {
        let row = |i: i64| TransferRow {
            id: format!("{:032x}", (1u128 << 127) | i as u128),
            debit: format!("{:032x}", 7),
            credit: format!("{:032x}", 9),
            pending_id: format!("{:032x}", (1u128 << 127) | 5),
            amount: 12_345,
            user_data: 40_000 + i,
            code: 4,
            flags: 1,
            ts: 1_765_000_000_000_000 + i,
            at_ms: 1_765_000_000_000,
        };
        let rows: Vec<TransferRow> = (0..100).map(row).collect();
        let (v3, v2) = (encode(&rows, &[]).len(), encode_2(&rows, &[]).len());
        assert!(v3 <= 80 * 100, "version 3: {v3} bytes for 100 transfers");
        assert!(v3 * 2 < v2, "version 3: {v3} bytes, version 2: {v2}");
    }

    #[test]
    fn a_damaged_body_is_refused_not_misread() {
        let (transfers, accounts) = sample(7, 3);
        for body in [encode(&transfers, &accounts), encode_2(&transfers, &accounts)] {
            for cut in 0..body.len() {
                assert_eq!(decode(&body[..cut]), None, "cut at {cut}");
            }
            let mut longer = body.clone();
            longer.push(0);
            assert_eq!(decode(&longer), None, "a byte beyond the last account");
            let mut other = body;
            other[0] = 1;
            assert_eq!(decode(&other), None, "another version");
        }
        // a varint longer than 64 bits, an unknown id tag, an empty text id: not bodies it wrote
        assert_eq!(decode(&[FORMAT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0]), None);
        assert_eq!(decode(&[FORMAT, 1, 9]), None);
        assert_eq!(decode(&[FORMAT, 1, ID_TEXT, 0]), None);
    }

    #[test]
    fn the_last_row_of_an_account_is_the_account() {
        let rows = vec![account("a", 1), account("b", 2), account("a", 3)];
        assert_eq!(last_per_account(rows), [account("b", 2), account("a", 3)]);
    }

    #[test]
    fn the_index_sits_beside_the_database() {
        assert_eq!(index_path(Path::new("/d/suanwang.db")), Path::new("/d/suanwang-ledger.db"));
        assert_eq!(index_path(Path::new("/d/x")), Path::new("/d/x-ledger"));
    }
}
