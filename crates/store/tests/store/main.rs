//! One conformance suite, run against SQLite (a temp file) and PostgreSQL (a fresh database on
//! the server named by SUANWANG_TEST_PG, default postgres://postgres@127.0.0.1:5432/postgres;
//! `scripts/test.sh` starts one when none runs).

use suanwang_store::{Checkpoint, CommandRow, PgStore, SqliteStore, Store, StoreError, TokenRow};

fn row(at_ms: i64, job: i64, key: Option<&str>) -> CommandRow {
    CommandRow {
        seq: 0,
        at_ms,
        actor: "tenant-a".into(),
        kind: "submit".into(),
        job_id: Some(job),
        tenant: Some("acme".into()),
        idempotency_key: key.map(str::to_string),
        body: format!("{{\"job\":{job}}}"),
        events: "[]".into(),
    }
}

async fn conformance<S: Store>(s: &S) {
    s.migrate().await.expect("migrate");
    s.migrate().await.expect("migrate twice is harmless");
    // settings: the first value stored wins
    assert_eq!(s.setting_or_insert("identity", "first").await.expect("setting"), "first");
    assert_eq!(s.setting_or_insert("identity", "second").await.expect("setting"), "first");
    let seqs = s.append(&[row(1, 1, Some("k1")), row(2, 2, None), row(3, 3, Some("k3"))]).await.expect("append");
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase: {seqs:?}");
    let back = s.commands(0, 100).await.expect("read");
    assert_eq!(back.len(), 3);
    for (got, want) in back.iter().zip([row(1, 1, Some("k1")), row(2, 2, None), row(3, 3, Some("k3"))]) {
        assert_eq!(CommandRow { seq: 0, ..got.clone() }, want);
    }
    assert_eq!(s.commands(seqs[1], 100).await.expect("read").len(), 1, "after a seq");
    assert_eq!(s.commands(0, 2).await.expect("read").len(), 2, "limit");
    // a batch with a repeated idempotency key is refused whole: nothing of it is written
    let err = s.append(&[row(4, 4, Some("k4")), row(5, 5, Some("k1"))]).await.expect_err("duplicate key");
    assert!(matches!(err, StoreError::DuplicateKey { ref key, .. } if key == "k1"), "{err}");
    assert_eq!(s.commands(0, 100).await.expect("read").len(), 3, "the failed batch left nothing");
    // the same key of another tenant is fine
    let mut other = row(6, 6, Some("k1"));
    other.tenant = Some("globex".into());
    s.append(&[other]).await.expect("another tenant's key");
    // tokens: hashes in, hashes out
    let t = TokenRow { hash: "ab".repeat(32), role: "tenant".into(), name: "acme".into(), created_at_ms: 7 };
    s.put_token(&t).await.expect("put token");
    assert_eq!(s.token(&t.hash).await.expect("get"), Some(t.clone()));
    assert_eq!(s.token("nope").await.expect("get"), None);
    assert!(s.put_token(&t).await.is_err(), "a hash is stored once");
    // snapshots: the newest wins, two are kept
    assert_eq!(s.latest_snapshot().await.expect("none yet"), None);
    for seq in [3, 10, 20] {
        s.put_snapshot(seq, seq * 100, &format!("{{\"at\":{seq}}}")).await.expect("snapshot");
    }
    assert_eq!(s.latest_snapshot().await.expect("latest"), Some((20, "{\"at\":20}".to_string())));
    // checkpoints: bytes in, the same bytes out; a newer one replaces the older
    assert_eq!(s.checkpoint(9).await.expect("none yet"), None);
    let cp = Checkpoint { job_id: 9, attempt: 1, at_ms: 100, data: (0..=255u8).cycle().take(70_000).collect() };
    s.put_checkpoint(&cp).await.expect("put");
    assert_eq!(s.checkpoint(9).await.expect("get"), Some(cp.clone()));
    let newer = Checkpoint { attempt: 2, at_ms: 200, data: vec![0, 1, 2], ..cp };
    s.put_checkpoint(&newer).await.expect("replace");
    assert_eq!(s.checkpoint(9).await.expect("get"), Some(newer.clone()));
    // a late write from the superseded attempt 1 does not replace attempt 2's
    let late = Checkpoint { attempt: 1, at_ms: 300, data: vec![9], ..newer.clone() };
    s.put_checkpoint(&late).await.expect("ignored");
    assert_eq!(s.checkpoint(9).await.expect("get"), Some(newer));
    assert_eq!(s.checkpoint(10).await.expect("another job"), None);
}

#[tokio::test]
async fn sqlite_conforms() {
    let dir = std::env::temp_dir().join(format!("suanwang-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let s = SqliteStore::open(&dir).await.expect("open");
    conformance(&s).await;
    drop(s);
    // reopening sees the same log
    let s = SqliteStore::open(&dir).await.expect("reopen");
    assert_eq!(s.commands(0, 100).await.expect("read").len(), 4);
    // the database and its WAL are its owner's alone (R7: tenants' jobs are in it)
    for f in ["suanwang.db", "suanwang.db-wal"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(f)).expect(f).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh database on the test server; dropped by the next run's cleanup, not on exit.
pub async fn fresh_pg(tag: &str) -> String {
    let admin =
        std::env::var("SUANWANG_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("suanwang_test_{tag}_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} is not reachable ({e}); run ./scripts/test.sh, which starts one")
    });
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&pool).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&pool).await.expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_string();
    format!("{base}/{db}")
}

#[tokio::test]
async fn postgres_conforms() {
    let url = fresh_pg("store").await;
    let s = PgStore::connect(&url).await.expect("connect");
    conformance(&s).await;
}
