//! The ledger's invariants over random operations (issue 13): at least 1,000,000 operations in
//! all — single, pending, posting, voiding, balancing and linked transfers, retries, credit-limit
//! changes, and restarts (the journal replayed into a fresh ledger).
//! 1. total debits equal total credits, pending and posted;
//! 2. no account breaks its balance constraint;
//! 3. a retried transfer changes nothing;
//! 4. replaying the journal yields the same ledger, byte for byte;
//! 5. settlements: payees receive exactly what tenants and vouchers paid, clearing nets to zero,
//!    a voucher never pays beyond its rate, its grant or its validity.

use proptest::prelude::*;
use suanwang_economy::voucher::{JobFacts, choose};
use suanwang_economy::{
    Account, AccountFlags, AccountKind, Applied, History, Ledger, Programme, Transfer, TransferFlags, TransferKind,
    VoucherKind, settlement,
};

const ACCOUNTS: u128 = 8;

fn fresh() -> Ledger {
    let mut l = Ledger::new(History::Keep);
    for id in 1..=ACCOUNTS {
        let flags = match id % 4 {
            0 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            1 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            _ => AccountFlags::NONE,
        };
        let mut a = Account::new(id, 1, flags);
        a.credit_limit = if id == 4 { 50 } else { 0 };
        assert_eq!(l.create_account(a, 0), Ok(Applied::Created));
    }
    l
}

#[derive(Debug, Clone)]
enum Op {
    Batch(Vec<(u8, u128, u128, u64, u128, u8)>),
    Retry,
    Limit(u128, u64),
    Restart,
}

fn event() -> impl Strategy<Value = (u8, u128, u128, u64, u128, u8)> {
    // (shape, debit, credit, amount, id offset, pending pick)
    (
        0u8..10,
        0u128..=ACCOUNTS + 1,
        0u128..=ACCOUNTS + 1,
        prop_oneof![9 => 0u64..400, 1 => Just(u64::MAX)],
        0u128..4,
        any::<u8>(),
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        48 => prop::collection::vec(event(), 1..8).prop_map(Op::Batch),
        8 => Just(Op::Retry),
        4 => (1u128..=ACCOUNTS, 0u64..200).prop_map(|(a, l)| Op::Limit(a, l)),
        1 => Just(Op::Restart),
    ]
}

fn check(l: &Ledger) {
    let (dp, cp, dq, cq) = l.totals();
    assert_eq!(dp, cp, "pending debits = pending credits");
    assert_eq!(dq, cq, "posted debits = posted credits");
    for a in l.accounts() {
        if a.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) {
            assert!(a.debits_pending + a.debits_posted <= a.credits_posted + u128::from(a.credit_limit), "{a:?}");
        }
        if a.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) {
            assert!(a.credits_pending + a.credits_posted <= a.debits_posted, "{a:?}");
        }
    }
}

/// Runs `ops`; returns how many operations (events, retries, limits, restarts) it applied.
fn run(ops: &[Op]) -> usize {
    let mut l = fresh();
    let mut next_id: u128 = 100;
    let mut created: Vec<Transfer> = vec![];
    let mut pendings: Vec<u128> = vec![];
    let mut now = 1;
    let mut count = 0;
    for op in ops {
        now += 1;
        match op {
            Op::Batch(events) => {
                let mut batch = vec![];
                for (i, &(shape, d, c, amount, off, pick)) in events.iter().enumerate() {
                    // a few ids repeat on purpose (exists / exists with other fields)
                    let id = if off == 0 && next_id > 100 { next_id - 1 } else { next_id + off };
                    next_id += 1 + off;
                    let pending_id = if pendings.is_empty() { 7 } else { pendings[usize::from(pick) % pendings.len()] };
                    let mut t = match shape {
                        0..=3 => Transfer::new(id, d, c, amount, 1),
                        4 | 5 => Transfer::new(id, d, c, amount, 2).flags(TransferFlags::PENDING),
                        6 => Transfer::post(id, pending_id, amount.min(500), 3),
                        7 => Transfer::void(id, pending_id, 4),
                        _ => Transfer::new(id, d, c, amount, 5).flags(TransferFlags::BALANCING_DEBIT),
                    };
                    // about one event in three is linked to the next
                    if pick % 3 == 0 && i + 1 < events.len() {
                        t = t.flags(TransferFlags::LINKED);
                    }
                    batch.push(t);
                }
                let before = l.clock();
                let results = l.create_transfers(&batch, now);
                count += batch.len();
                assert_eq!(results.len(), batch.len());
                let mut changed = false;
                for (t, r) in batch.iter().zip(&results) {
                    if *r == Ok(Applied::Created) {
                        changed = true;
                        created.push(*t);
                        if t.flags.contains(TransferFlags::PENDING) {
                            pendings.push(t.id);
                        }
                    }
                }
                // a linked chain applies all-or-none
                let mut start = 0;
                for i in 0..batch.len() {
                    if !batch[i].flags.contains(TransferFlags::LINKED) || i + 1 == batch.len() {
                        let ok = results[start..=i].iter().filter(|r| r.is_ok()).count();
                        assert!(ok == 0 || ok == i + 1 - start, "chain {start}..={i}: {:?}", &results[start..=i]);
                        start = i + 1;
                    }
                }
                if !changed {
                    assert_eq!(l.clock(), before, "nothing applied, nothing changed");
                }
                check(&l);
            }
            Op::Retry => {
                // the last few created transfers again, unlinked: all exist, nothing changes
                let tail: Vec<Transfer> = created
                    .iter()
                    .rev()
                    .take(6)
                    .map(|t| Transfer { flags: t.flags.without(TransferFlags::LINKED), ..*t })
                    .collect();
                let (accounts, kept, clock) = (l.accounts().to_vec(), l.transfers().len(), l.clock());
                let results = l.create_transfers(&tail, now);
                count += tail.len().max(1);
                assert!(results.iter().all(|r| *r == Ok(Applied::Exists)), "{results:?}");
                assert_eq!(
                    (l.accounts(), l.transfers().len(), l.clock()),
                    (&accounts[..], kept, clock),
                    "a retry changes nothing"
                );
            }
            Op::Limit(a, limit) => {
                let _ = l.set_credit_limit(*a, *limit, now);
                count += 1;
                check(&l);
            }
            Op::Restart => {
                // the journal replayed into a fresh ledger is the same ledger, byte for byte
                let mut r = Ledger::new(History::Keep);
                r.replay(&l.journal()).expect("the journal replays");
                assert_eq!(r.to_bytes(), l.to_bytes(), "replay is byte-identical");
                l = r;
                count += 1;
            }
        }
    }
    let mut r = Ledger::new(History::Keep);
    r.replay(&l.journal()).expect("the journal replays");
    assert_eq!(r.to_bytes(), l.to_bytes(), "replay is byte-identical");
    count
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// 64 cases × up to 1,000 operations of up to 7 events: well over 1,000,000 events in all
    /// (the total is asserted by `one_million_operations` below, which runs them in one go).
    #[test]
    fn ledger_invariants_hold(ops in prop::collection::vec(op(), 1..1_000)) {
        run(&ops);
    }
}

#[test]
fn one_million_operations() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config::default());
    let strategy = prop::collection::vec(op(), 2_000..2_001);
    let mut total = 0;
    while total < 1_000_000 {
        let ops = strategy.new_tree(&mut runner).expect("ops").current();
        total += run(&ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Settlements of random jobs, with and without vouchers and holds, against wallets of
    /// random balance: payees get exactly what was paid, clearing nets to zero, vouchers pay
    /// within rate, grant and validity, and a grant never pays beyond what it holds.
    #[test]
    fn settlements_add_up(jobs in prop::collection::vec((0i64..5_000, 0i64..2_000, 0i64..800, 0u64..6_000, any::<bool>(), 0i64..2_000), 1..60), topup in 0u64..50_000, grant in 0u64..5_000) {
        let wallet = 1; let clearing = 2; let platform = 3; let provider = 4; let carrier = 5; let bank = 6; let grant_acct = 7; let programme_acct = 8;
        let mut l = Ledger::new(History::Keep);
        for (id, kind) in [(wallet, AccountKind::Wallet), (clearing, AccountKind::Clearing), (platform, AccountKind::Platform), (provider, AccountKind::Provider), (carrier, AccountKind::Carrier), (bank, AccountKind::Bank), (grant_acct, AccountKind::Grant), (programme_acct, AccountKind::Programme)] {
            l.create_account(Account::new(id, kind.code(), kind.flags()), 0).expect("account");
        }
        let book = suanwang_economy::PriceBook::reference();
        let programme = Programme { id: "p".into(), name: String::new(), funder: "f".into(), kind: VoucherKind::Compute, budget_fen: 1_000_000, rate_bp: 3_000, cap_per_beneficiary_fen: 1_000_000, tenants: vec![], cities: vec![], places: vec![], job_kinds: vec![], valid_from_ms: 0, valid_to_ms: 30 };
        let mut setup = vec![];
        if topup > 0 { setup.push(Transfer::new(1, bank, wallet, topup, TransferKind::Topup.code())); }
        if grant > 0 {
            setup.push(Transfer::new(2, bank, programme_acct, grant, TransferKind::ProgrammeBudget.code()));
            setup.push(Transfer::new(3, programme_acct, grant_acct, grant, TransferKind::Grant.code()));
        }
        prop_assert!(l.create_transfers(&setup, 1).iter().all(Result::is_ok));
        let (mut paid, mut vouchered, mut written_off) = (0u64, 0u64, 0u64);
        for (n, &(compute, energy, transfer, estimate, with_hold, at)) in jobs.iter().enumerate() {
            let job = n as u64 + 1;
            let u = suanwang_economy::Usage { compute_fen: compute, energy_fen: energy, transfer_fen: transfer, transfer_mode: (transfer > 0).then(|| "network".into()), ..Default::default() };
            let bill = book.bill(&u).expect("bill");
            let hold = if with_hold {
                let h = Transfer::new(suanwang_economy::system_id(TransferKind::Hold, job, 0), wallet, clearing, estimate.max(1), TransferKind::Hold.code()).flags(TransferFlags::PENDING);
                (l.create_transfers(&[h], 2)[0].is_ok()).then_some(h)
            } else { None };
            let left = i64::try_from(l.account(grant_acct).map_or(0, suanwang_economy::Account::balance)).unwrap_or(0);
            let facts = JobFacts { at_ms: at % 40, ..JobFacts::default() };
            let held = [(&programme, left)];
            let voucher = choose(&held, VoucherKind::Compute, &facts, compute + energy);
            if let Some((p, fen)) = voucher {
                prop_assert!(p.valid_at(facts.at_ms));
                prop_assert!(fen <= (compute + energy) * 3 / 10 && fen <= left);
            }
            // outside its window a voucher never pays; inside, with money left, it pays its rate
            if facts.at_ms >= 30 {
                prop_assert!(voucher.is_none());
            } else if left > 0 && (compute + energy) * 3 / 10 > 0 {
                prop_assert_eq!(voucher.map(|v| v.1), Some(((compute + energy) * 3 / 10).min(left)));
            }
            let vfen = voucher.map_or(0, |v| v.1);
            let bill = bill.with_vouchers(&voucher.map(|(p, f)| (p.id.clone(), f)).into_iter().collect::<Vec<_>>()).expect("vouchers");
            let split = book.split(&bill, &u, "idc", Some("c"));
            let shares: Vec<(u128, u64, TransferKind)> = split.shares.iter().map(|(p, f)| match p {
                suanwang_economy::Payee::Provider(_) => (provider, *f as u64, TransferKind::ProviderShare),
                suanwang_economy::Payee::Carrier(_) => (carrier, *f as u64, TransferKind::CarrierShare),
                suanwang_economy::Payee::Platform => (platform, *f as u64, TransferKind::PlatformFee),
            }).collect();
            let s = settlement(&l, job, wallet, clearing, platform, hold.as_ref(), bill.tenant_fen as u64, &[(grant_acct, vfen as u64)], &shares).expect("adds up");
            let results = l.create_transfers(&s.transfers, 3);
            prop_assert!(results.iter().all(Result::is_ok), "{results:?}");
            paid += s.tenant_fen; vouchered += vfen as u64; written_off += s.written_off_fen;
            prop_assert_eq!(s.tenant_fen + s.written_off_fen, bill.tenant_fen as u64);
            let clear = l.account(clearing).expect("clearing");
            prop_assert_eq!(clear.balance(), 0, "clearing nets to zero");
        }
        let received: i128 = [provider, carrier, platform].iter().map(|&a| l.account(a).map_or(0, suanwang_economy::Account::balance)).sum();
        prop_assert_eq!(received, i128::from(paid + vouchered), "payees receive what tenants and vouchers paid");
        prop_assert_eq!(l.account(wallet).map(suanwang_economy::Account::balance), Some(i128::from(topup) - i128::from(paid)));
        prop_assert!(l.account(grant_acct).map_or(0, suanwang_economy::Account::balance) >= 0);
        prop_assert!(written_off == 0 || topup < paid + written_off);
        let (dp, cp, dq, cq) = l.totals();
        prop_assert_eq!((dp, dq), (cp, cq));
    }
}
