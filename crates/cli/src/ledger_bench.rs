//! `suanwang bench ledger`: the ledger's speed (issue 13 item 7). In memory: random transfers
//! between funded wallets in batches of 8,190 (TigerBeetle's batch size), every transfer kept
//! (retries recognised). Durable: the same through the store's group commit on SQLite — each
//! batch applied to the ledger and written (transfers appended, touched accounts upserted) in
//! one transaction, as the control plane does.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use suanwang_economy::{Account, AccountKind, Applied, History, Ledger, Transfer, TransferKind};
use suanwang_server::billing::row_of;
use suanwang_store::{AccountRow, Batch, SqliteStore, Store};

/// TigerBeetle's largest batch of transfers.
pub const BATCH: usize = 8_190;

#[derive(Debug)]
pub struct LedgerArgs {
    /// Transfers in memory (rounded up to whole batches).
    pub transfers: usize,
    /// Transfers through the store.
    pub durable: usize,
    pub accounts: usize,
    pub json: bool,
}

use crate::bench_cmd::{Rng, quantile};

const BANK: u128 = 1;

/// A ledger with a bank and `n` wallets funded by it (ids 2..=n+1).
fn funded(n: usize, history: History) -> Result<Ledger> {
    let mut l = Ledger::new(history);
    l.create_account(Account::new(BANK, AccountKind::Bank.code(), AccountKind::Bank.flags()), 1)
        .map_err(|e| anyhow::anyhow!("bank: {e}"))?;
    let mut funding = Vec::with_capacity(n);
    for i in 0..n as u128 {
        let id = 2 + i;
        l.create_account(Account::new(id, AccountKind::Wallet.code(), AccountKind::Wallet.flags()), 1)
            .map_err(|e| anyhow::anyhow!("wallet: {e}"))?;
        funding.push(Transfer::new(u128::MAX - 1 - i, BANK, id, 1_000_000_000, TransferKind::Topup.code()));
    }
    for chunk in funding.chunks(BATCH) {
        if l.create_transfers(chunk, 2).iter().any(Result::is_err) {
            bail!("funding the wallets failed");
        }
    }
    Ok(l)
}

/// `count` random wallet-to-wallet transfers in batches, ids from `first`.
fn batches(count: usize, accounts: usize, first: u128, rng: &mut Rng) -> Vec<Vec<Transfer>> {
    let n = accounts as u64;
    let mut out = Vec::with_capacity(count.div_ceil(BATCH));
    let mut id = first;
    for b in 0..count.div_ceil(BATCH) {
        let len = BATCH.min(count - b * BATCH);
        let mut batch = Vec::with_capacity(len);
        for _ in 0..len {
            let d = 2 + u128::from(rng.next() % n);
            let mut c = 2 + u128::from(rng.next() % n);
            if c == d {
                c = 2 + (c - 1) % u128::from(n);
            }
            batch.push(Transfer::new(id, d, c, 1 + rng.next() % 100, TransferKind::ProviderShare.code()));
            id += 1;
        }
        out.push(batch);
    }
    out
}

pub fn ledger(args: &LedgerArgs) -> Result<()> {
    if args.accounts < 2 {
        bail!("--accounts: at least 2");
    }
    let mut rng = Rng(13);
    // in memory
    let mut l = funded(args.accounts, History::Keep)?;
    let work = batches(args.transfers, args.accounts, 1 << 40, &mut rng);
    let mut lat = Vec::with_capacity(work.len());
    let started = Instant::now();
    let mut created = 0usize;
    for (i, b) in work.iter().enumerate() {
        let t = Instant::now();
        let r = l.create_transfers(b, 10 + i as u64);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        created += r.iter().filter(|r| **r == Ok(Applied::Created)).count();
    }
    let mem_s = started.elapsed().as_secs_f64();
    let (dp, cp, dq, cq) = l.totals();
    if dp != cp || dq != cq {
        bail!("the ledger does not balance after the run");
    }
    let in_memory = created as f64 / mem_s;
    let mem_p99 = quantile(lat, 0.99);
    // durable: SQLite in a fresh directory
    let dir = std::env::temp_dir().join(format!("suanwang-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let durable = rt.block_on(async {
        let store = SqliteStore::open(&dir).await?;
        store.migrate().await?;
        let mut l = funded(args.accounts, History::Drop)?;
        // the accounts as the store holds them before the run
        let rows: Vec<AccountRow> = l.accounts().iter().map(account_row).collect();
        store.commit(&Batch { accounts: &rows, ..Batch::default() }).await?;
        let work = batches(args.durable, args.accounts, 1 << 60, &mut rng);
        let mut lat = Vec::with_capacity(work.len());
        let started = Instant::now();
        let mut done = 0usize;
        for (i, b) in work.iter().enumerate() {
            let t = Instant::now();
            let r = l.create_transfers(b, 1_000_000 + i as u64 * 10_000);
            let transfers: Vec<_> = l.created().iter().map(|x| row_of(x, 0)).collect();
            let mut touched: Vec<u128> =
                l.created().iter().flat_map(|x| [x.debit_account_id, x.credit_account_id]).collect();
            touched.sort_unstable();
            touched.dedup();
            let accounts: Vec<AccountRow> = touched.iter().filter_map(|id| l.account(*id)).map(account_row).collect();
            store.commit(&Batch { transfers: &transfers, accounts: &accounts, ..Batch::default() }).await?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            done += r.iter().filter(|r| r.is_ok()).count();
        }
        let s = started.elapsed().as_secs_f64();
        // SQLite indexes the transfers beside the commits, when they pause (ledger_index.rs):
        // what indexing the run's transfers takes after it, counted into a second rate
        let fold = Instant::now();
        store.fold_ledger().await?;
        let indexed = done as f64 / (s + fold.elapsed().as_secs_f64());
        anyhow::Ok((done as f64 / s, quantile(lat, 0.99), indexed))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (durable_rate, durable_p99, indexed_rate) = durable?;
    let out = json!({
        "batch": BATCH,
        "accounts": args.accounts,
        "transfers": created,
        "transfers_per_sec": in_memory.round(),
        "memory_batch_p99_us": mem_p99.round(),
        "durable_transfers": args.durable,
        "durable_transfers_per_sec": durable_rate.round(),
        // what a client waits for its batch to be durable (one group commit)
        "p99_us": durable_p99.round(),
        // durable and indexed for statements: the run and the fold of what it left unindexed
        "indexed_transfers_per_sec": indexed_rate.round(),
        "store": "sqlite",
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "ledger: {in_memory:.0} transfers/s in memory (batches of {BATCH}, p99 {mem_p99:.0} µs a batch); \
             {durable_rate:.0}/s durable on SQLite (p99 {durable_p99:.0} µs a batch), \
             {indexed_rate:.0}/s durable and indexed"
        );
    }
    Ok(())
}

fn account_row(a: &Account) -> AccountRow {
    let kind = AccountKind::from_code(a.code).unwrap_or(AccountKind::Wallet);
    suanwang_server::billing::account_row(a, kind, &format!("bench-{}", a.id))
}
