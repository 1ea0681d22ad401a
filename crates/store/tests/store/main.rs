//! One conformance suite, run against SQLite (a temp file) and PostgreSQL (a fresh database on
//! the server named by SUANWANG_TEST_PG, default postgres://postgres@127.0.0.1:5432/postgres;
//! `scripts/test.sh` starts one when none runs).

use suanwang_store::{
    AccountRow, Batch, Checkpoint, CommandRow, DatasetRow, EvidenceRow, JobQuery, JobRow, MarketQuery, MarketRow,
    NoteRow, PgStore, ProgrammeRow, RunLog, SqliteStore, Store, StoreError, TileRow, TokenRow, TransferQuery,
    TransferRow,
};

fn job(id: i64, tenant: &str, state: &str) -> JobRow {
    JobRow {
        id,
        tenant: tenant.into(),
        name: format!("job-{id}"),
        kind: "batch".into(),
        state: state.into(),
        site: None,
        pool: None,
        submitted_at_ms: 1000 + id,
        submitted_by: tenant.into(),
        updated_at_ms: 1000 + id,
        start_at_ms: None,
        end_at_ms: None,
        started_at_ms: None,
        ended_at_ms: None,
        attempts: 0,
        reason: None,
        meter: None,
        usage: None,
        spec: format!("{{\"name\":\"job-{id}\"}}"),
    }
}

/// The job projection and run logs: written with the commands in one transaction, listed by
/// state, tenant and id.
async fn projection<S: Store>(s: &S) {
    let submit = |id: i64, key: &str| CommandRow { tenant: Some("acme".into()), ..row(100 + id, id, Some(key)) };
    let cmds = [submit(101, "p101"), submit(102, "p102")];
    let jobs = [job(101, "acme", "placed"), job(102, "acme", "placed"), job(103, "globex", "placed")];
    let seqs = s.commit(&Batch { commands: &cmds, jobs: &jobs, logs: &[], ..Batch::default() }).await.expect("commit");
    assert_eq!(seqs.len(), 2);
    assert_eq!(s.job(101).await.expect("get"), Some(jobs[0].clone()));
    assert_eq!(s.job(999).await.expect("get"), None);
    // an update changes the state and what follows from it, never the spec or the submission
    let done = JobRow {
        state: "completed".into(),
        site: Some("gansu-qingyang-1".into()),
        pool: Some("cpu".into()),
        updated_at_ms: 5000,
        started_at_ms: Some(4000),
        ended_at_ms: Some(5000),
        attempts: 1,
        meter: Some("{\"ucu_hours\":1.5}".into()),
        usage: Some("{\"cpu_seconds\":2.0}".into()),
        spec: "ignored on update".into(),
        name: "ignored too".into(),
        ..jobs[0].clone()
    };
    // two rows of one job in a batch: the last wins
    let log = RunLog { job_id: 101, attempt: 1, at_ms: 5000, stdout: vec![0xff, 0xfe, b'h', b'i'], stderr: vec![] };
    let stale = JobRow { state: "running".into(), ..jobs[0].clone() };
    s.commit(&Batch {
        commands: &[],
        jobs: &[stale, done.clone()],
        logs: std::slice::from_ref(&log),
        ..Batch::default()
    })
    .await
    .expect("update");
    let back = s.job(101).await.expect("get").expect("row");
    assert_eq!(back, JobRow { spec: jobs[0].spec.clone(), name: jobs[0].name.clone(), ..done });
    // run logs keep bytes that are not UTF-8, and a later report replaces them
    assert_eq!(s.run_log(101).await.expect("log"), Some(log.clone()));
    assert_eq!(s.run_log(102).await.expect("log"), None);
    let log2 = RunLog { attempt: 2, stdout: b"second".to_vec(), ..log };
    s.commit(&Batch { logs: std::slice::from_ref(&log2), ..Batch::default() }).await.expect("log");
    assert_eq!(s.run_log(101).await.expect("log"), Some(log2));
    // listing: by id, after, limit, state, tenant
    let ids = |rows: Vec<JobRow>| rows.iter().map(|j| j.id).collect::<Vec<_>>();
    let all = JobQuery { limit: 100, ..JobQuery::default() };
    assert_eq!(ids(s.jobs(&all).await.expect("list")), [101, 102, 103]);
    assert_eq!(ids(s.jobs(&JobQuery { after: 101, ..all.clone() }).await.expect("list")), [102, 103]);
    assert_eq!(ids(s.jobs(&JobQuery { limit: 1, ..all.clone() }).await.expect("list")), [101]);
    assert_eq!(ids(s.jobs(&JobQuery { after: i64::MAX, ..all.clone() }).await.expect("list")), Vec::<i64>::new());
    let placed = JobQuery { state: Some("placed".into()), ..all.clone() };
    assert_eq!(ids(s.jobs(&placed).await.expect("list")), [102, 103]);
    let acme_placed = JobQuery { tenant: Some("acme".into()), ..placed };
    assert_eq!(ids(s.jobs(&acme_placed).await.expect("list")), [102]);
    let globex = JobQuery { tenant: Some("globex".into()), ..all.clone() };
    assert_eq!(ids(s.jobs(&globex).await.expect("list")), [103]);
    // a submission is found by its tenant's idempotency key
    let (id, body) = s.submission("acme", "p102").await.expect("lookup").expect("found");
    assert_eq!((id, body), (102, cmds[1].body.clone()));
    assert_eq!(s.submission("globex", "p102").await.expect("lookup"), None);
    // a batch that fails writes none of its job rows either
    let dup = [submit(104, "p101")];
    let fresh = job(104, "acme", "placed");
    assert!(
        s.commit(&Batch { commands: &dup, jobs: std::slice::from_ref(&fresh), logs: &[], ..Batch::default() })
            .await
            .is_err()
    );
    assert_eq!(s.job(104).await.expect("get"), None, "nothing of a failed batch is written");
}

/// Batches larger than one statement holds: rows in order, keys checked across statements.
async fn large_batches<S: Store>(s: &S) {
    // a large batch (written many rows per statement): every command in order, each job row
    let big: Vec<CommandRow> = (0..203).map(|i| row(1000 + i, 1000 + i, Some(&format!("big-{i}")))).collect();
    let big_jobs: Vec<JobRow> = (0..203).map(|i| job(1000 + i, "acme", "placed")).collect();
    let before = s.commands(0, 100_000).await.expect("read").len();
    let seqs =
        s.commit(&Batch { commands: &big, jobs: &big_jobs, logs: &[], ..Batch::default() }).await.expect("big batch");
    assert_eq!(seqs.len(), big.len());
    let back = s.commands(0, 100_000).await.expect("read");
    let back = &back[before..];
    assert_eq!(back.iter().map(|c| c.seq).collect::<Vec<_>>(), seqs, "seqs name the rows as written");
    for (got, want) in back.iter().zip(&big) {
        assert_eq!(&CommandRow { seq: 0, ..got.clone() }, want, "rows in order");
    }
    for i in [0, 63, 64, 202] {
        assert_eq!(s.job(1000 + i).await.expect("get"), Some(big_jobs[i as usize].clone()));
    }
    // a repeated key deep in a large batch is named, and nothing of the batch is written
    let mut dup: Vec<CommandRow> = (0..150).map(|i| row(2000 + i, 2000 + i, Some(&format!("dup-{i}")))).collect();
    dup[137].idempotency_key = Some("big-5".into());
    let err = s.append(&dup).await.expect_err("duplicate key");
    assert!(matches!(err, StoreError::DuplicateKey { ref key, .. } if key == "big-5"), "{err}");
    assert_eq!(s.commands(0, 100_000).await.expect("read").len(), before + big.len(), "nothing of it written");
}

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
    let t = TokenRow {
        hash: "ab".repeat(32),
        role: "tenant".into(),
        name: "acme".into(),
        created_at_ms: 7,
        expires_at_ms: None,
    };
    s.put_token(&t).await.expect("put token");
    assert_eq!(s.token(&t.hash).await.expect("get"), Some(t.clone()));
    assert_eq!(s.token("nope").await.expect("get"), None);
    assert!(s.put_token(&t).await.is_err(), "a hash is stored once");
    // token creations not yet logged: oldest first, limited; a commit marks them logged, once
    // … and one that expires keeps its expiry
    let older = TokenRow {
        hash: "cd".repeat(32),
        role: "operator".into(),
        name: "ops".into(),
        created_at_ms: 3,
        expires_at_ms: Some(86_400_003),
    };
    s.put_token(&older).await.expect("put token");
    assert_eq!(s.token(&older.hash).await.expect("get"), Some(older.clone()));
    assert_eq!(s.unlogged_tokens(10).await.expect("unlogged"), [older.clone(), t.clone()]);
    assert_eq!(s.unlogged_tokens(1).await.expect("unlogged"), std::slice::from_ref(&older), "limit");
    let logged = [older.hash.clone(), older.hash.clone()];
    s.commit(&Batch { tokens_logged: &logged, ..Batch::default() }).await.expect("mark logged (twice: no error)");
    assert_eq!(s.unlogged_tokens(10).await.expect("unlogged"), std::slice::from_ref(&t));
    s.commit(&Batch { tokens_logged: std::slice::from_ref(&older.hash), ..Batch::default() }).await.expect("again");
    assert_eq!(
        s.unlogged_tokens(10).await.expect("unlogged"),
        std::slice::from_ref(&t),
        "marking again changes nothing"
    );
    // snapshots: each after a command of the log; the newest wins, two are kept
    assert_eq!(s.latest_snapshot().await.expect("none yet"), None);
    let log: Vec<i64> = s.commands(0, 100).await.expect("log").iter().map(|c| c.seq).collect();
    let beyond = log.iter().max().expect("commands") + 1_000;
    let err = s.put_snapshot(beyond, 1, "{}").await.expect_err("a snapshot after a command the log does not hold");
    assert!(err.to_string().contains(&format!("command {beyond}")), "{err}");
    assert_eq!(s.latest_snapshot().await.expect("none stored"), None);
    for &seq in &log[..3] {
        s.put_snapshot(seq, seq * 100, &format!("{{\"at\":{seq}}}")).await.expect("snapshot");
    }
    let newest = log[2];
    assert_eq!(s.latest_snapshot().await.expect("latest"), Some((newest, format!("{{\"at\":{newest}}}"))));
    let kept: Vec<i64> = s.snapshots().await.expect("kept").into_iter().map(|(seq, _)| seq).collect();
    assert_eq!(kept, [log[2], log[1]], "the newest two, newest first");
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
    projection(s).await;
    large_batches(s).await;
    ledger(s).await;
    evidence(s).await;
    market(s).await;
}

fn account(id: &str, kind: &str, name: &str, dposted: i64, cposted: i64) -> AccountRow {
    AccountRow {
        id: id.into(),
        kind: kind.into(),
        name: name.into(),
        code: 1,
        flags: 2,
        credit_limit: 0,
        debits_pending: 0,
        debits_posted: dposted,
        credits_pending: 0,
        credits_posted: cposted,
        ts: 1,
    }
}

fn transfer(id: &str, debit: &str, credit: &str, amount: i64, flags: i32, pending: &str, ts: i64) -> TransferRow {
    TransferRow {
        id: id.into(),
        debit: debit.into(),
        credit: credit.into(),
        amount,
        pending_id: pending.into(),
        user_data: 42,
        code: 2,
        flags,
        ts,
        at_ms: ts * 10,
    }
}

/// The ledger's tables (R4): accounts, transfers and programmes written in the same transaction
/// as the commands; a batch that fails leaves none of them; open holds, statements' queries.
async fn ledger<S: Store>(s: &S) {
    assert_eq!(s.ledger_clock().await.expect("clock"), 0, "an empty ledger");
    let accounts = [account("a1", "wallet", "acme", 0, 500), account("a2", "clearing", "", 0, 0)];
    let transfers = [
        transfer("t1", "bank", "a1", 500, 0, "", 2),
        transfer("t2", "a1", "a2", 300, 2, "", 3),
        transfer("t3", "a1", "a2", 100, 2, "", 4),
        transfer("t4", "", "", 0, 8, "t3", 5),
    ];
    let programme =
        ProgrammeRow { id: "p".into(), funder: "qingyang".into(), body: "{\"rate_bp\":3000}".into(), created_at_ms: 9 };
    let cmds = [row(900, 900, None)];
    s.commit(&Batch {
        commands: &cmds,
        accounts: &accounts,
        transfers: &transfers,
        programmes: std::slice::from_ref(&programme),
        ..Batch::default()
    })
    .await
    .expect("ledger batch");
    assert_eq!(s.ledger_accounts().await.expect("accounts"), accounts.to_vec());
    // every read sees the committed transfers whether or not they are indexed yet (SQLite
    // indexes them beside the commit): before, after, and half-way
    ledger_reads(s, &transfers).await;
    s.fold_ledger().await.expect("fold");
    ledger_reads(s, &transfers).await;
    assert_eq!(s.ledger_accounts().await.expect("accounts"), accounts.to_vec(), "indexed");
    // a batch that fails writes none of its ledger rows: here its command repeats a key
    let moved = account("a1", "wallet", "acme", 300, 500);
    s.commit(&Batch { commands: &[row(899, 899, Some("ledger-key"))], ..Batch::default() }).await.expect("key");
    let t5 = transfer("t5", "a1", "a2", 1, 0, "", 6);
    let err = s
        .commit(&Batch {
            commands: &[row(901, 901, Some("ledger-key"))],
            accounts: std::slice::from_ref(&moved),
            transfers: std::slice::from_ref(&t5),
            ..Batch::default()
        })
        .await;
    assert!(err.is_err(), "an idempotency key is unique");
    assert_eq!(s.ledger_accounts().await.expect("accounts")[0], accounts[0], "the failed batch changed no balance");
    assert_eq!(s.ledger_transfer("t5").await.expect("get"), None, "nor wrote a transfer");
    assert_eq!(s.commands(0, 10_000).await.expect("log").iter().filter(|c| c.at_ms == 901).count(), 0);
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_transfer("t5").await.expect("get"), None, "nor will the index have it");
    assert_eq!(s.ledger_clock().await.expect("clock"), 5);
    // balances are upserted: the last state of an account is the account, indexed or not
    s.commit(&Batch { accounts: std::slice::from_ref(&moved), ..Batch::default() }).await.expect("upsert");
    assert_eq!(s.ledger_accounts().await.expect("accounts"), [moved.clone(), accounts[1].clone()]);
    assert_eq!(s.ledger_clock().await.expect("clock"), 5, "an account's change does not move the clock back");
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_accounts().await.expect("accounts"), [moved.clone(), accounts[1].clone()]);
    // a later batch, read before it is indexed, on top of indexed ones: t6 posts t2
    let t6 = transfer("t6", "", "", 300, 4, "t2", 7);
    s.commit(&Batch { transfers: std::slice::from_ref(&t6), ..Batch::default() }).await.expect("post");
    let all: Vec<TransferRow> = transfers.iter().cloned().chain([t6.clone()]).collect();
    assert_eq!(s.ledger_clock().await.expect("clock"), 7);
    assert!(s.open_pending().await.expect("open").is_empty(), "t6 posted the last open hold");
    let every = TransferQuery { limit: 100, ..TransferQuery::default() };
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), all);
    let two = TransferQuery { after_ts: 4, limit: 2, ..TransferQuery::default() };
    assert_eq!(s.ledger_transfers(&two).await.expect("page"), all[3..5].to_vec(), "a page across index and tail");
    assert_eq!(
        s.posted_before("a1", 1_000).await.expect("sums"),
        (0, 500),
        "a post names no account in this test's rows"
    );
    assert_eq!(s.ledger_transfer("t6").await.expect("get"), Some(t6));
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), all);
    let revised = ProgrammeRow { body: "{}".into(), ..programme };
    s.commit(&Batch { programmes: std::slice::from_ref(&revised), ..Batch::default() }).await.expect("programme");
    assert_eq!(s.programmes().await.expect("programmes"), [revised]);
}

/// The reads of the ledger test's first batch (`transfers`), wherever the store keeps them.
async fn ledger_reads<S: Store>(s: &S, transfers: &[TransferRow]) {
    assert_eq!(s.ledger_clock().await.expect("clock"), 5);
    let open = s.open_pending().await.expect("open");
    assert_eq!(open.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t2"], "t3 was voided by t4");
    assert_eq!(s.ledger_transfer("t4").await.expect("get"), Some(transfers[3].clone()));
    assert_eq!(s.ledger_transfer("nope").await.expect("get"), None);
    let q = |accounts: &[&str], from, to| TransferQuery {
        accounts: accounts.iter().map(|a| (*a).to_string()).collect(),
        from_ms: from,
        to_ms: to,
        limit: 100,
        ..TransferQuery::default()
    };
    let ids = |v: Vec<TransferRow>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.ledger_transfers(&q(&["a1"], None, None)).await.expect("q")), ["t1", "t2", "t3"]);
    assert_eq!(ids(s.ledger_transfers(&q(&["a1"], Some(30), Some(40))).await.expect("q")), ["t2"]);
    assert_eq!(s.ledger_transfers(&q(&[], None, None)).await.expect("q"), transfers.to_vec());
    let by_job = TransferQuery { user_data: Some(42), after_ts: 3, limit: 100, ..TransferQuery::default() };
    assert_eq!(ids(s.ledger_transfers(&by_job).await.expect("q")), ["t3", "t4"]);
    let first = TransferQuery { limit: 1, ..by_job };
    assert_eq!(ids(s.ledger_transfers(&first).await.expect("q")), ["t3"], "the limit holds");
    // pending transfers are not posted money
    assert_eq!(s.posted_before("a1", 1_000).await.expect("sums"), (0, 500));
    assert_eq!(s.posted_before("a1", 20).await.expect("sums"), (0, 0));
}

fn evidence_row(idx: i64, job_id: Option<i64>, subject: Option<&str>) -> EvidenceRow {
    EvidenceRow {
        idx,
        kind: "job".into(),
        at_ms: 5_000 + idx,
        entry: format!("{{\"kind\":\"job\",\"i\":{idx}}}"),
        salt: "ab".repeat(32),
        record: "{\"quote\":\"a \\\" and a \\\\ in a record\"}".into(),
        tenant: job_id.map(|_| "acme".to_string()),
        job_id,
        subject: subject.map(str::to_string),
    }
}

/// The evidence log (R6/R7): entries and tiles in the same transaction as the commands;
/// a failed batch leaves none; ranges, subjects and checkpoints read back.
async fn evidence<S: Store>(s: &S) {
    assert_eq!(s.evidence_size().await.expect("size"), 0);
    let rows: Vec<EvidenceRow> =
        (0..300).map(|i| evidence_row(i, (i % 3 == 0).then_some(i / 3), (i == 7).then_some("dataset/x"))).collect();
    let tile = TileRow { level: 0, idx: 0, hashes: vec![7; 256 * 32] };
    s.commit(&Batch {
        commands: &[row(7001, 7001, None)],
        evidence: &rows,
        tiles: std::slice::from_ref(&tile),
        ..Batch::default()
    })
    .await
    .expect("commit");
    assert_eq!(s.evidence_size().await.expect("size"), 300);
    assert_eq!(s.evidence_entries(10, 13).await.expect("range"), rows[10..13].to_vec());
    assert_eq!(s.evidence_entries(299, 400).await.expect("range"), rows[299..].to_vec());
    assert_eq!(s.evidence_about(Some(4), None, 10).await.expect("job"), vec![rows[12].clone()]);
    assert_eq!(s.evidence_about(None, Some("dataset/x"), 10).await.expect("subject"), vec![rows[7].clone()]);
    assert_eq!(s.evidence_tiles(0, 0, 10).await.expect("tiles"), vec![tile.clone()]);
    assert!(s.evidence_tiles(1, 0, 10).await.expect("tiles").is_empty());
    // an index written twice fails the whole batch: no command, no entry
    let again = [evidence_row(300, None, None), evidence_row(5, None, None)];
    let err = s.commit(&Batch { commands: &[row(7002, 7002, None)], evidence: &again, ..Batch::default() }).await;
    assert!(err.is_err(), "an entry's index is unique");
    assert_eq!(s.evidence_size().await.expect("size"), 300, "the failed batch appended no entry");
    assert_eq!(s.commands(0, 10_000).await.expect("log").iter().filter(|c| c.at_ms == 7002).count(), 0);
    // checkpoints: the newest first or the history in order; a cosigned copy replaces its size's
    for size in [100_i64, 200, 300] {
        s.put_note(&NoteRow { size, at_ms: size, note: format!("note {size}") }).await.expect("note");
    }
    s.put_note(&NoteRow { size: 300, at_ms: 300, note: "note 300 cosigned".into() }).await.expect("note");
    let newest = s.notes(0, 1, true).await.expect("newest");
    assert_eq!(newest.iter().map(|n| n.note.as_str()).collect::<Vec<_>>(), ["note 300 cosigned"]);
    assert_eq!(s.notes(300, 1, true).await.expect("before 300")[0].size, 200);
    assert_eq!(
        s.notes(100, 10, false).await.expect("after 100").iter().map(|n| n.size).collect::<Vec<_>>(),
        [200, 300]
    );
    // the dataset registry: upserted in the group commit, the last row of an id winning
    let ds = |id: &str, owner: &str, body: &str| DatasetRow {
        id: id.into(),
        owner: owner.into(),
        body: body.into(),
        created_at_ms: 1,
        updated_at_ms: 2,
    };
    let rows = [ds("88.1/AAA", "acme", "v1"), ds("88.1/BBB", "other", "b"), ds("88.1/AAA", "acme", "v2")];
    s.commit(&Batch { datasets: &rows, ..Batch::default() }).await.expect("datasets");
    assert_eq!(s.dataset("88.1/AAA").await.expect("get").map(|d| d.body), Some("v2".into()));
    assert_eq!(s.dataset("88.1/ZZZ").await.expect("get"), None);
    let mine = s.datasets(Some("acme"), "", 10).await.expect("list");
    assert_eq!(mine.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["88.1/AAA"]);
    assert_eq!(s.datasets(None, "88.1/AAA", 10).await.expect("page").len(), 1, "after the first id");
}

fn mrow(kind: &str, id: &str, owner: &str, product: &str, state: &str, body: &str, at_ms: i64) -> MarketRow {
    MarketRow {
        kind: kind.into(),
        id: id.into(),
        owner: owner.into(),
        product: product.into(),
        state: state.into(),
        body: body.into(),
        at_ms,
    }
}

/// The orders the market test leaves, in id order (checked again after reopening the store).
fn market_orders() -> Vec<MarketRow> {
    vec![
        mrow("order", "00000001", "acme", "gpu-h", "filled", "{\"qty\":10,\"filled\":10}", 30),
        mrow("order", "00000002", "globex", "gpu-h", "open", "{\"qty\":5}", 11),
        mrow("order", "00000003", "acme", "cpu-h", "open", "{\"qty\":7}", 12),
        mrow("order", "00000004", "acme", "gpu-h", "cancelled", "{\"qty\":2}", 13),
        mrow("order", "00000010", "globex", "cpu-h", "open", "{\"qty\":1,\"note\":\"a \\\" quote\"}", 14),
    ]
}

/// The contract the market test leaves, with the same id as an order.
fn market_contract() -> MarketRow {
    mrow("contract", "00000001", "acme", "gpu-h", "active", "{\"buy\":\"00000001\"}", 30)
}

/// The ids of a page.
fn market_ids(rows: &[MarketRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

/// The market (issue 16, R4): orders, contracts and prices upserted by (kind, id) in the group
/// commit, the last row of a (kind, id) in a batch winning; listed by kind in id order, filtered by
/// owner, product and state, paged by `after`; a batch that fails writes none of them.
async fn market<S: Store>(s: &S) {
    let orders = |limit: i64| MarketQuery { kind: "order".into(), limit, ..MarketQuery::default() };
    assert!(s.market(&orders(100)).await.expect("empty").is_empty());
    let want = market_orders();
    // the first batch: order 1 placed twice (the second row wins), the others as they stay, a
    // price; written with a command, in one transaction
    let placed = mrow("order", "00000001", "acme", "gpu-h", "open", "{\"qty\":10}", 10);
    let replaced = mrow("order", "00000001", "acme", "gpu-h", "open", "{\"qty\":10,\"v\":2}", 10);
    let price = mrow("price", "gpu-h/00000001", "", "gpu-h", "published", "{\"fen\":250}", 10);
    let first = [
        placed,
        want[1].clone(),
        want[2].clone(),
        want[4].clone(),
        mrow("order", "00000004", "acme", "gpu-h", "open", "{\"qty\":2}", 13),
        replaced.clone(),
        price.clone(),
    ];
    s.commit(&Batch { market: &first, ..Batch::default() }).await.expect("market batch");
    let all = s.market(&orders(100)).await.expect("list");
    assert_eq!(market_ids(&all), ["00000001", "00000002", "00000003", "00000004", "00000010"], "id order");
    assert_eq!(all[0], replaced, "the last row of a (kind, id) in a batch wins");
    assert_eq!(all[4], want[4], "bodies are kept as given, quotes and backslashes too");
    // kinds are separate namespaces: a contract with an order's id is another row
    let contract = market_contract();
    let fill = want[0].clone();
    let cancel = want[3].clone();
    s.commit(&Batch { market: &[fill.clone(), contract.clone(), cancel.clone()], ..Batch::default() })
        .await
        .expect("fill");
    // an upsert replaces the row: its state, body and time
    let all = s.market(&orders(100)).await.expect("list");
    assert_eq!(all, want, "order 1 filled, order 4 cancelled, no other changed");
    let contracts = MarketQuery { kind: "contract".into(), limit: 100, ..MarketQuery::default() };
    assert_eq!(s.market(&contracts).await.expect("contracts"), std::slice::from_ref(&contract));
    let prices = MarketQuery { kind: "price".into(), limit: 100, ..MarketQuery::default() };
    assert_eq!(s.market(&prices).await.expect("prices"), [price]);
    let none = MarketQuery { kind: "nothing".into(), limit: 100, ..MarketQuery::default() };
    assert!(s.market(&none).await.expect("no such kind").is_empty());
    // filters: by owner, product and state, alone and together, each in id order
    let by = |owner: Option<&str>, product: Option<&str>, state: Option<&str>| MarketQuery {
        owner: owner.map(str::to_string),
        product: product.map(str::to_string),
        state: state.map(str::to_string),
        ..orders(100)
    };
    let ids = |rows: Vec<MarketRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(s.market(&by(Some("acme"), None, None)).await.expect("q")), ["00000001", "00000003", "00000004"]);
    assert_eq!(ids(s.market(&by(Some("globex"), None, None)).await.expect("q")), ["00000002", "00000010"]);
    assert_eq!(ids(s.market(&by(None, Some("gpu-h"), None)).await.expect("q")), ["00000001", "00000002", "00000004"]);
    assert_eq!(ids(s.market(&by(None, None, Some("open"))).await.expect("q")), ["00000002", "00000003", "00000010"]);
    assert_eq!(ids(s.market(&by(None, None, Some("filled"))).await.expect("q")), ["00000001"]);
    assert_eq!(ids(s.market(&by(Some("acme"), None, Some("open"))).await.expect("q")), ["00000003"]);
    assert_eq!(ids(s.market(&by(Some("globex"), Some("cpu-h"), Some("open"))).await.expect("q")), ["00000010"]);
    assert_eq!(ids(s.market(&by(Some("acme"), Some("cpu-h"), Some("filled"))).await.expect("q")), Vec::<String>::new());
    assert_eq!(ids(s.market(&by(Some("nobody"), None, None)).await.expect("q")), Vec::<String>::new());
    let acme_contracts = MarketQuery { owner: Some("acme".into()), ..contracts.clone() };
    assert_eq!(s.market(&acme_contracts).await.expect("q"), [contract], "a filter keeps to its kind");
    // pages: `after` an id, in id order, `limit` rows each; paging through gives every row once
    let after = |after: &str, limit: i64| MarketQuery { after: after.into(), ..orders(limit) };
    assert_eq!(ids(s.market(&after("00000002", 100)).await.expect("q")), ["00000003", "00000004", "00000010"]);
    assert_eq!(ids(s.market(&after("00000002", 2)).await.expect("q")), ["00000003", "00000004"]);
    assert_eq!(ids(s.market(&after("00000010", 100)).await.expect("q")), Vec::<String>::new());
    assert_eq!(ids(s.market(&after("0000000", 1)).await.expect("q")), ["00000001"], "after a prefix");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = s.market(&after(&cursor, 2)).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor.clone_from(&last.id);
        paged.extend(page);
    }
    assert_eq!(paged, want, "pages of 2 give every order once, in order");
    let open_gpu = MarketQuery { after: "00000001".into(), ..by(None, Some("gpu-h"), None) };
    assert_eq!(ids(s.market(&open_gpu).await.expect("q")), ["00000002", "00000004"], "a filter and a page");
    // the limit is clamped to 1 to 100,000, the same on both backends
    assert_eq!(s.market(&orders(0)).await.expect("limit 0").len(), 1);
    assert_eq!(s.market(&orders(-5)).await.expect("negative limit").len(), 1);
    assert_eq!(s.market(&orders(i64::MAX)).await.expect("huge limit"), want);
    // ids compare as bytes on both backends (not by a locale's rules)
    let odd = [
        mrow("price", "b", "", "x", "published", "{}", 1),
        mrow("price", "B", "", "x", "published", "{}", 1),
        mrow("price", "a-2", "", "x", "published", "{}", 1),
        mrow("price", "a_1", "", "x", "published", "{}", 1),
        mrow("price", "a 3", "", "x", "published", "{}", 1),
    ];
    s.commit(&Batch { market: &odd, ..Batch::default() }).await.expect("odd ids");
    let xs = MarketQuery { product: Some("x".into()), ..prices.clone() };
    assert_eq!(ids(s.market(&xs).await.expect("q")), ["B", "a 3", "a-2", "a_1", "b"], "byte order");
    // a batch that fails (an evidence index written twice) writes none of its market rows
    let lost = mrow("order", "00000099", "acme", "gpu-h", "open", "{}", 99);
    let changed = mrow("order", "00000002", "globex", "gpu-h", "filled", "{}", 99);
    let err = s
        .commit(&Batch {
            commands: &[row(8001, 8001, None)],
            market: &[lost, changed],
            evidence: &[evidence_row(5, None, None)],
            ..Batch::default()
        })
        .await;
    assert!(err.is_err(), "an entry's index is unique");
    assert_eq!(s.market(&orders(100)).await.expect("list"), want, "the failed batch wrote no market row");
    assert_eq!(s.commands(0, 10_000).await.expect("log").iter().filter(|c| c.at_ms == 8001).count(), 0);
    // an empty batch of market rows is harmless
    s.commit(&Batch { market: &[], ..Batch::default() }).await.expect("empty");
    market_persisted(s).await;
}

/// What the market test left, as read from a store (also one reopened).
async fn market_persisted<S: Store>(s: &S) {
    let orders = MarketQuery { kind: "order".into(), limit: 100, ..MarketQuery::default() };
    assert_eq!(s.market(&orders).await.expect("orders"), market_orders());
    let contracts = MarketQuery { kind: "contract".into(), limit: 100, ..MarketQuery::default() };
    assert_eq!(s.market(&contracts).await.expect("contracts"), [market_contract()]);
    let filled = MarketQuery { state: Some("filled".into()), ..orders };
    assert_eq!(market_ids(&s.market(&filled).await.expect("filled")), ["00000001"]);
    let last = s.market_last_id("order").await.expect("last");
    assert_eq!(last.as_deref(), market_orders().iter().map(|r| r.id.as_str()).max());
    assert_eq!(s.market_last_id("nothing").await.expect("none"), None);
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
    assert_eq!(
        s.commands(0, 1000).await.expect("read").len(),
        212,
        "the four of the log test, two of the projection test, 203 of the large batch, two of the ledger test and one of the evidence test"
    );
    // and the same market rows
    market_persisted(&s).await;
    // the database and its WAL are its owner's alone (R7: tenants' jobs are in it)
    for f in ["suanwang.db", "suanwang.db-wal", "suanwang-ledger.db", "suanwang-ledger.db-wal"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(f)).expect(f).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SQLite logs transfers in the commit and indexes them beside it (`ledger_index.rs`): the
/// index file is derived — lost, it is rebuilt from the journal; a database written before the
/// journal has its transfers moved into it; a repeated transfer id (which the ledger refuses
/// before it gets here) does not stop the index, which keeps the first.
#[tokio::test]
async fn sqlites_transfer_index_is_derived_from_its_journal() {
    let dir = std::env::temp_dir().join(format!("suanwang-store-ix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let s = SqliteStore::open(&dir).await.expect("open");
    s.migrate().await.expect("migrate");
    let ts: Vec<TransferRow> = (1..=300).map(|i| transfer(&format!("t{i}"), "a", "b", i, 0, "", i)).collect();
    for chunk in ts.chunks(7) {
        s.commit(&Batch { transfers: chunk, ..Batch::default() }).await.expect("commit");
    }
    let every = TransferQuery { limit: 1_000, ..TransferQuery::default() };
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts);
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts);
    let sum: i64 = (1..=300).sum();
    assert_eq!(s.posted_before("a", i64::MAX).await.expect("sums"), (sum, 0));
    // a repeated id: both commits succeed; the index keeps the first
    let again = transfer("t1", "a", "b", 999, 0, "", 301);
    s.commit(&Batch { transfers: std::slice::from_ref(&again), ..Batch::default() }).await.expect("commit");
    s.fold_ledger().await.expect("a repeated id does not stop the fold");
    assert_eq!(s.ledger_transfer("t1").await.expect("get"), Some(ts[0].clone()));
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts, "the repeat is not indexed");
    assert_eq!(s.ledger_clock().await.expect("clock"), 301, "the journal has it");
    drop(s);
    // the index lost: rebuilt from the journal
    for f in ["suanwang-ledger.db", "suanwang-ledger.db-wal", "suanwang-ledger.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let s = SqliteStore::open(&dir).await.expect("reopen");
    s.migrate().await.expect("migrate");
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts, "rebuilt, the repeat again left out");
    drop(s);
    // the database replaced (restored from an older copy, say) beside the newer index: the index
    // is not this journal's — emptied and rebuilt, it answers for the new database's rows only
    for f in ["suanwang.db", "suanwang.db-wal", "suanwang.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let s = SqliteStore::open(&dir).await.expect("reopen beside an old index");
    s.migrate().await.expect("migrate");
    s.commit(&Batch { transfers: &ts[..2], ..Batch::default() }).await.expect("commit");
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts[..2].to_vec(), "before the fold");
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts[..2].to_vec(), "after it");
    drop(s);
    // a database from before the journal: its transfers table in the main file
    let old = dir.join("old.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&old).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.expect("old");
        sqlx::query(
            "CREATE TABLE ledger_transfers (id TEXT PRIMARY KEY, debit TEXT NOT NULL, credit TEXT NOT NULL,
             amount BIGINT NOT NULL, pending_id TEXT NOT NULL, user_data BIGINT NOT NULL, code INTEGER NOT NULL,
             flags INTEGER NOT NULL, ts BIGINT NOT NULL, at_ms BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .expect("old table");
        sqlx::query(
            "CREATE TABLE ledger_accounts (id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
             code INTEGER NOT NULL, flags INTEGER NOT NULL, credit_limit BIGINT NOT NULL,
             debits_pending BIGINT NOT NULL, debits_posted BIGINT NOT NULL, credits_pending BIGINT NOT NULL,
             credits_posted BIGINT NOT NULL, ts BIGINT NOT NULL, UNIQUE (kind, name))",
        )
        .execute(&pool)
        .await
        .expect("old accounts");
        sqlx::query("INSERT INTO ledger_accounts VALUES ('a', 'wallet', 'acme', 1, 2, 0, 0, 0, 0, 15, 1)")
            .execute(&pool)
            .await
            .expect("old account");
        for t in &ts[..5] {
            sqlx::query("INSERT INTO ledger_transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(&t.id)
                .bind(&t.debit)
                .bind(&t.credit)
                .bind(t.amount)
                .bind(&t.pending_id)
                .bind(t.user_data)
                .bind(t.code)
                .bind(t.flags)
                .bind(t.ts)
                .bind(t.at_ms)
                .execute(&pool)
                .await
                .expect("old row");
        }
        pool.close().await;
    }
    let s = SqliteStore::open(&old).await.expect("open old");
    s.migrate().await.expect("migrate old");
    assert_eq!(s.ledger_transfers(&every).await.expect("moved"), ts[..5].to_vec());
    let old_account = account("a", "wallet", "acme", 0, 15);
    assert_eq!(s.ledger_accounts().await.expect("accounts"), std::slice::from_ref(&old_account));
    assert_eq!(s.ledger_clock().await.expect("clock"), 5);
    s.migrate().await.expect("migrating again moves nothing twice");
    s.fold_ledger().await.expect("fold");
    assert_eq!(s.ledger_transfers(&every).await.expect("indexed"), ts[..5].to_vec());
    assert_eq!(s.ledger_accounts().await.expect("indexed"), [old_account]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fold takes whole journal rows up to 65,536 transfers a step: three rows of 40,000 are folded
/// in two steps (two rows, then the third), the second continuing where the first ended.
#[tokio::test]
async fn sqlites_fold_continues_where_its_last_step_ended() {
    let dir = std::env::temp_dir().join(format!("suanwang-store-steps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let s = SqliteStore::open(&dir).await.expect("open");
    s.migrate().await.expect("migrate");
    let ts: Vec<TransferRow> = (1..=120_000).map(|i| transfer(&format!("{i:032x}"), "a", "b", 1, 0, "", i)).collect();
    for chunk in ts.chunks(40_000) {
        s.commit(&Batch { transfers: chunk, ..Batch::default() }).await.expect("commit");
    }
    s.fold_ledger().await.expect("fold");
    let every = TransferQuery { limit: 200_000, ..TransferQuery::default() };
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), ts);
    assert_eq!(s.posted_before("a", i64::MAX).await.expect("sums"), (120_000, 0));
    let last = TransferQuery { after_ts: 119_999, limit: 10, ..TransferQuery::default() };
    assert_eq!(s.ledger_transfers(&last).await.expect("last"), [ts[119_999].clone()]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// PostgreSQL indexes transfers in the group commit: a batch repeating a transfer id fails whole.
#[tokio::test]
async fn a_repeated_transfer_id_fails_a_postgres_batch() {
    let url = fresh_pg("dupid").await;
    let s = PgStore::connect(&url).await.expect("connect");
    s.migrate().await.expect("migrate");
    let t1 = transfer("t1", "a", "b", 5, 0, "", 1);
    s.commit(&Batch { transfers: std::slice::from_ref(&t1), ..Batch::default() }).await.expect("first");
    let dup = [transfer("t2", "a", "b", 1, 0, "", 2), transfer("t1", "a", "b", 9, 0, "", 3)];
    assert!(s.commit(&Batch { transfers: &dup, ..Batch::default() }).await.is_err(), "a transfer id is unique");
    let every = TransferQuery { limit: 100, ..TransferQuery::default() };
    assert_eq!(s.ledger_transfers(&every).await.expect("all"), [t1], "nothing of the failed batch");
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
    drop(s);
    // a new connection (a restarted server) sees the same market rows
    let s = PgStore::connect(&url).await.expect("reconnect");
    s.migrate().await.expect("migrate an existing schema");
    market_persisted(&s).await;
}

/// The leader's lease (issue 17): one holder at a time, epochs that only grow, and a fenced
/// store whose lease another instance took can write nothing — not a command, not a snapshot.
#[tokio::test]
async fn the_leaders_lease_fences_a_deposed_leader() {
    use suanwang_store::Fence;
    let url = fresh_pg("lease").await;
    let a = PgStore::connect(&url).await.expect("connect");
    a.migrate().await.expect("migrate");
    let b = PgStore::connect(&url).await.expect("connect");
    let e1 = a.try_acquire("a", "http://a", 60_000).await.expect("acquire").expect("free at first");
    assert_eq!(b.try_acquire("b", "http://b", 60_000).await.expect("try"), None, "a holds it");
    let lease = b.lease().await.expect("lease");
    assert_eq!((lease.holder.as_str(), lease.url.as_str(), lease.epoch), ("a", "http://a", e1));
    assert!(lease.remaining_ms > 50_000, "{lease:?}");
    a.set_fence(Some(Fence { instance: "a".into(), epoch: e1, lease_ms: 200 }));
    let row = |n: i64| CommandRow {
        seq: 0,
        at_ms: n,
        actor: "t".into(),
        kind: "submit".into(),
        job_id: Some(n),
        tenant: None,
        idempotency_key: None,
        body: "{}".into(),
        events: "[]".into(),
    };
    a.append(&[row(1)]).await.expect("the leader writes");
    // the write set the lease to 200 ms: wait for the database's clock to pass it
    while b.lease().await.expect("lease").remaining_ms >= 0 {
        tokio::task::yield_now().await;
    }
    let e2 = b.try_acquire("b", "http://b", 60_000).await.expect("acquire").expect("expired");
    assert!(e2 > e1, "epochs grow: {e1} then {e2}");
    match a.append(&[row(2)]).await {
        Err(StoreError::Fenced { instance, epoch }) => assert_eq!((instance.as_str(), epoch), ("a", e1)),
        other => panic!("the deposed leader's write must be refused: {other:?}"),
    }
    assert!(matches!(a.put_snapshot(9, 9, "{}").await, Err(StoreError::Fenced { .. })));
    assert!(matches!(a.renew().await, Err(StoreError::Fenced { .. })));
    assert_eq!(a.commands(0, 100).await.expect("log").len(), 1, "only the leader's row");
    b.set_fence(Some(Fence { instance: "b".into(), epoch: e2, lease_ms: 60_000 }));
    b.append(&[row(3)]).await.expect("the new leader writes");
    // a second process of the same name is refused while the first is alive
    a.register_instance("one", "http://a", "tok-a", 60_000).await.expect("register");
    a.register_instance("one", "http://a", "tok-a", 60_000).await.expect("the same process again");
    let e = b.register_instance("one", "http://b", "tok-b", 60_000).await.expect_err("a second `one`");
    assert!(e.to_string().contains("already running"), "{e}");
    b.register_instance("one", "http://b", "tok-b", 0).await.expect("a stale one is replaced");
}

/// Upgrades beside a running leader (issue 17): a schema that matches the database's is left
/// alone; one that differs is refused while another instance leads (its tables would be locked
/// under it), with what to do; the leader's own restart, or no live leader, migrates — once,
/// when instances start together on a new database.
#[tokio::test]
async fn a_changed_schema_is_not_migrated_under_a_live_leader() {
    let url = fresh_pg("upgrade").await;
    let stores = connections(&url, 3).await;
    // three instances starting at once on a new database: one migrates, none fails
    let (r0, r1, r2) =
        tokio::join!(stores[0].migrate_beside(None), stores[1].migrate_beside(None), stores[2].migrate_beside(None));
    for r in [r0, r1, r2] {
        r.expect("concurrent first migrations");
    }
    let (a, b) = (&stores[0], &stores[1]);
    let digest = || async {
        sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = 'schema_digest'")
            .fetch_one(&sqlx::PgPool::connect(&url).await.expect("connect"))
            .await
            .expect("digest")
    };
    let want = digest().await;
    a.try_acquire("a", "http://a", 60_000).await.expect("acquire").expect("free at first");
    b.migrate_beside(Some("b")).await.expect("the same schema: nothing to do beside the leader");
    // the database ran another schema (an older binary's)
    let admin = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query("UPDATE settings SET value = 'older' WHERE key = 'schema_digest'").execute(&admin).await.expect("age");
    let e = b.migrate_beside(Some("b")).await.expect_err("not beside a live leader");
    let msg = e.to_string();
    assert!(msg.contains("\"a\" leads") && msg.contains("stop every instance") && msg.contains("older"), "{msg}");
    assert_eq!(digest().await, "older", "nothing changed");
    a.migrate_beside(Some("a")).await.expect("the leader's own restart migrates");
    assert_eq!(digest().await, want);
    sqlx::query("UPDATE settings SET value = 'older' WHERE key = 'schema_digest'").execute(&admin).await.expect("age");
    sqlx::query("UPDATE leader_lease SET expires_at = clock_timestamp() - interval '1 second'")
        .execute(&admin)
        .await
        .expect("the leader is gone");
    b.migrate_beside(Some("b")).await.expect("no live leader: migrates");
    assert_eq!(digest().await, want);
}

async fn connections(url: &str, n: usize) -> Vec<PgStore> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(PgStore::connect(url).await.expect("connect"));
    }
    out
}
