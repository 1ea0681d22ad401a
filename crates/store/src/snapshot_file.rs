//! SQLite's snapshots, in their own file beside the database (`suanwang.db` →
//! `suanwang-snapshots.db`).
//!
//! A snapshot is the whole live state as JSON — megabytes once tens of thousands of jobs are in
//! flight. Written into the database itself it held SQLite's one write lock for as long as the
//! write took (the group commits, and every request behind them, waited) and went through the
//! database's WAL, whose checkpoint then fell on whichever group commit crossed the threshold.
//! Here it has its own lock and its own WAL: a snapshot never holds a commit up.
//!
//! A snapshot is derived data: lost, the state is rebuilt from the log (a longer start). So the
//! file is written with `synchronous = NORMAL`, and each snapshot names the log's command it was
//! taken after by sequence number *and* that command's clock (`log_at_ms`): one whose command is
//! not in the database's log with that clock belongs to another database (restored from an older
//! copy, or replaced, beside this file): dropped at `migrate` with a warning, and never read.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::StoreError;
use crate::sqlite::private_file;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS snapshots (
        seq INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        log_at_ms INTEGER NOT NULL,
        body TEXT NOT NULL
    )";

/// The file beside the main database `file` holding its snapshots, named like the ledger's index:
/// `suanwang.db` → `suanwang-snapshots.db`.
pub(crate) fn snapshot_path(file: &Path) -> PathBuf {
    crate::ledger_index::beside(file, "snapshots")
}

#[derive(Debug, Clone)]
pub(crate) struct SnapshotFile {
    write: SqlitePool,
    read: SqlitePool,
    /// The main database's readers: the log the snapshots are checked against.
    log: SqlitePool,
    path: PathBuf,
}

impl SnapshotFile {
    /// Opens (creating) the snapshots' file beside `main_file`; `log` reads the main database.
    pub(crate) async fn open(main_file: &Path, log: SqlitePool) -> Result<SnapshotFile, StoreError> {
        let path = snapshot_path(main_file);
        let opts = private_file(&path, SqliteSynchronous::Normal)?;
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone().page_size(16_384)).await?;
        sqlx::query(SCHEMA).execute(&write).await?;
        let read = SqlitePoolOptions::new().max_connections(2).connect_with(opts.read_only(true)).await?;
        Ok(SnapshotFile { write, read, log, path })
    }

    /// The clock of command `seq` in the log, if the log holds it.
    async fn log_at(&self, seq: i64) -> Result<Option<i64>, StoreError> {
        match sqlx::query_scalar::<_, i64>("SELECT at_ms FROM commands WHERE seq = ?")
            .bind(seq)
            .fetch_optional(&self.log)
            .await
        {
            Ok(at) => Ok(at),
            // a new database, not yet migrated
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the snapshot taken after command `seq` (which the log must hold), keeping it and
    /// the one before it.
    pub(crate) async fn put(&self, seq: i64, at_ms: i64, body: &str) -> Result<(), StoreError> {
        let Some(log_at) = self.log_at(seq).await? else {
            return Err(StoreError::SnapshotBeyondLog { seq });
        };
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO snapshots (seq, at_ms, log_at_ms, body) VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET at_ms = excluded.at_ms, log_at_ms = excluded.log_at_ms, body = excluded.body")
            .bind(seq)
            .bind(at_ms)
            .bind(log_at)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE seq < (SELECT MIN(seq) FROM (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 2))",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the snapshot after command `seq`, taken when that command's clock was `log_at`,
    /// is of this database's log; warns, naming what becomes of it, when not.
    async fn of_this_log(&self, seq: i64, log_at: i64, otherwise: &str) -> Result<bool, StoreError> {
        let ours = self.log_at(seq).await? == Some(log_at);
        if !ours {
            tracing::warn!(
                seq,
                file = %self.path.display(),
                "a snapshot beside the database is not of its log (a database restored from a copy?): {otherwise}"
            );
        }
        Ok(ours)
    }

    /// The snapshots kept (at most two) that belong to this database's log, newest first.
    pub(crate) async fn list(&self) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, log_at_ms, body FROM snapshots ORDER BY seq DESC LIMIT 2")
            .fetch_all(&self.read)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.try_get("seq")?;
            if self.of_this_log(seq, r.try_get("log_at_ms")?, "ignored").await? {
                out.push((seq, r.try_get("body")?));
            }
        }
        Ok(out)
    }

    /// Run at `migrate`, before the log grows: drops the snapshots that are not of this
    /// database's log (they would outrank its own, which the file keeps only the newest two of),
    /// then moves the snapshots a database from before this file kept in its own `snapshots`
    /// table here (those its log holds) and empties that table. `main` is the database's writer.
    pub(crate) async fn reconcile(&self, main: &SqlitePool) -> Result<(), StoreError> {
        let kept = sqlx::query("SELECT seq, log_at_ms FROM snapshots").fetch_all(&self.write).await?;
        for r in &kept {
            let seq: i64 = r.try_get("seq")?;
            if !self.of_this_log(seq, r.try_get("log_at_ms")?, "dropped").await? {
                sqlx::query("DELETE FROM snapshots WHERE seq = ?").bind(seq).execute(&self.write).await?;
            }
        }
        let old =
            sqlx::query("SELECT seq, at_ms, body FROM snapshots ORDER BY seq DESC LIMIT 2").fetch_all(main).await?;
        if old.is_empty() {
            return Ok(());
        }
        for r in old.iter().rev() {
            let (seq, at_ms, body): (i64, i64, String) = (r.try_get("seq")?, r.try_get("at_ms")?, r.try_get("body")?);
            if self.log_at(seq).await?.is_some() {
                self.put(seq, at_ms, &body).await?;
            }
        }
        sqlx::query("DELETE FROM snapshots").execute(main).await?;
        tracing::info!(moved = old.len(), file = %self.path.display(), "snapshots moved out of the database into their own file");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommandRow, SqliteStore, Store};

    fn command(at_ms: i64) -> CommandRow {
        CommandRow {
            seq: 0,
            at_ms,
            actor: "t".into(),
            kind: "submit".into(),
            job_id: None,
            tenant: None,
            idempotency_key: None,
            body: "{}".into(),
            events: "[]".into(),
        }
    }

    async fn open(dir: &Path) -> SqliteStore {
        let s = SqliteStore::open(dir).await.expect("open");
        s.migrate().await.expect("migrate");
        s
    }

    /// Snapshots live in their own file, private to the owner; those an earlier build kept in
    /// the database move there at `migrate`; those of another database's log are dropped.
    #[tokio::test]
    async fn snapshots_live_beside_the_database_and_belong_to_its_log() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("suanwang-snapfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let s = open(&dir).await;
        let seqs = s.append(&[command(10), command(20), command(30)]).await.expect("append");
        // an earlier build's snapshots, in the database's own table (one after a command the log
        // does not hold)
        let main = SqlitePool::connect(&format!("sqlite://{}", dir.join("suanwang.db").display())).await.expect("db");
        for (seq, body) in [(seqs[0], "{\"old\":0}"), (seqs[1], "{\"old\":1}"), (999, "{\"old\":9}")] {
            sqlx::query("INSERT INTO snapshots (seq, at_ms, body) VALUES (?, 0, ?)")
                .bind(seq)
                .bind(body)
                .execute(&main)
                .await
                .expect("old snapshot");
        }
        drop(s);
        let s = open(&dir).await;
        let kept = s.snapshots().await.expect("snapshots");
        assert_eq!(kept, [(seqs[1], "{\"old\":1}".to_string())], "the newest two of the table, those the log holds");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots").fetch_one(&main).await.expect("count");
        assert_eq!(left, 0, "the database's table is emptied");
        s.put_snapshot(seqs[2], 3, "{\"new\":2}").await.expect("put");
        let seqs_kept: Vec<i64> = s.snapshots().await.expect("snapshots").into_iter().map(|(q, _)| q).collect();
        assert_eq!(seqs_kept, [seqs[2], seqs[1]]);
        let mode = std::fs::metadata(dir.join("suanwang-snapshots.db")).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the snapshots hold tenants' jobs: the owner's alone");
        drop((s, main));
        // the database replaced beside the old file by a copy of another one whose log has
        // commands with the same numbers and other clocks: the old snapshots are dropped, not
        // loaded as this log's state
        let other_dir = dir.join("other");
        std::fs::create_dir_all(&other_dir).expect("mkdir");
        let other = open(&other_dir).await;
        let again = other.append(&[command(11), command(21), command(31)]).await.expect("append");
        assert_eq!(again, seqs, "the same sequence numbers");
        for f in ["suanwang.db", "suanwang.db-wal", "suanwang.db-shm"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        let copy =
            SqlitePool::connect(&format!("sqlite://{}", other_dir.join("suanwang.db").display())).await.expect("db");
        sqlx::query("VACUUM INTO ?")
            .bind(dir.join("suanwang.db").display().to_string())
            .execute(&copy)
            .await
            .expect("copy");
        drop((other, copy));
        let s = open(&dir).await;
        assert_eq!(s.snapshots().await.expect("snapshots"), [], "not this log's");
        s.put_snapshot(again[0], 1, "{\"mine\":0}").await.expect("put");
        assert_eq!(s.snapshots().await.expect("snapshots"), [(again[0], "{\"mine\":0}".to_string())]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
