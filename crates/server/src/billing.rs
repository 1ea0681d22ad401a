//! The control plane's books (R4): the economy crate's ledger kept live in the engine's actor,
//! its changes staged and written in the same group commit as the commands and job rows that
//! caused them. Memory holds the accounts and the open holds only (`History::Drop`); every
//! transfer is in the store, which is the source of truth for statements and bills.
//!
//! A job's money: a hold (pending transfer wallet → clearing) of its planned price when it is
//! first placed — refused with `balance` when the wallet cannot hold it; at its end the hold is
//! posted with what the tenant owes of the metered bill (after vouchers) and the bill is split
//! to provider, carrier and platform in one linked chain; a job refused or cancelled before it
//! ran has its hold voided.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use suanwang_core::Network;
use suanwang_economy::voucher::{JobFacts, choose};
use suanwang_economy::{
    Account, AccountKind, Applied, Bill, History, Ledger, Payee, PriceBook, Programme, Transfer, TransferError,
    TransferFlags, TransferKind, VoucherKind, settlement, system_id,
};
use suanwang_engine::{Meter, SiteGrant};
use suanwang_store::{AccountRow, AnyStore, ProgrammeRow, Store, StoreError, TransferQuery, TransferRow};

/// The platform's own accounts' names.
const PLATFORM: &str = "platform";

/// A wallet's credit limit meaning "no limit": large, and still an i64 in the store.
pub const UNLIMITED: u64 = i64::MAX as u64 / 4;

/// A programme as the books keep it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgrammeState {
    pub programme: Programme,
    /// Closed at the end of its window: what was left went back to the funder.
    #[serde(default)]
    pub closed: bool,
}

/// A grant's tenant, what it was granted this year, and what it has left (fen).
pub type GrantBalance = (String, i64, i64);

/// One tenant's grant under one programme.
#[derive(Debug, Clone, Default)]
struct GrantState {
    account: u128,
    /// Granted per calendar year (UTC): the cap applies per year.
    granted: BTreeMap<i32, i64>,
}

/// Why a money request was refused: the field and the reason (a 4xx for the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct MoneyError {
    pub field: String,
    pub reason: String,
    /// 404 (an unknown programme), 409 (a transfer id reused with other fields) or 422.
    pub status: u16,
}

fn refuse(field: &str, reason: impl Into<String>) -> MoneyError {
    MoneyError { field: field.to_string(), reason: reason.into(), status: 422 }
}

/// A hold that could not be placed: the price against what the wallet has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub price_fen: i64,
    pub available_fen: i64,
}

/// What the books changed since the last group commit: its ledger rows, and whose wallet each
/// new transfer touched.
#[derive(Debug, Default)]
pub struct StagedBooks {
    pub accounts: Vec<AccountRow>,
    pub transfers: Vec<TransferRow>,
    pub programmes: Vec<ProgrammeRow>,
    /// Transfer id → the tenant whose wallet it debits or credits.
    pub owners: HashMap<String, String>,
}

#[derive(Debug)]
pub struct Books {
    pub book: PriceBook,
    ledger: Ledger,
    ids: HashMap<(AccountKind, String), u128>,
    names: HashMap<u128, (AccountKind, String)>,
    next_account: u128,
    programmes: BTreeMap<String, (ProgrammeState, u128)>,
    grants: BTreeMap<(String, String), GrantState>,
    /// The credit limit of a new wallet.
    pub credit_limit: u64,
    touched: BTreeSet<u128>,
    staged: Vec<TransferRow>,
    /// The tenant whose wallet each staged transfer touches (by transfer id): the evidence
    /// log's records of a tenant's money are opened to that tenant.
    staged_owners: HashMap<String, String>,
    staged_programmes: Vec<ProgrammeRow>,
    /// Client-chosen transfers this process applied: a retry is recognised here (older ones
    /// by the route, in the store) — the ledger keeps no resolved history in memory.
    client: HashMap<u128, Transfer>,
}

/// `id` as 32 lower-case hex digits, the ledger's ids on the wire and in the store (the store's
/// own formatter: one for both).
pub fn hex(id: u128) -> String {
    suanwang_store::hex32(id)
}

pub fn parse_hex(s: &str) -> Option<u128> {
    (s.len() == 32).then(|| u128::from_str_radix(s, 16).ok()).flatten()
}

fn i64_of(v: u128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The ledger's clock in µs from the wall clock's ms.
fn micros(now_ms: i64) -> u64 {
    u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_000)
}

impl Books {
    pub fn new(book: PriceBook, credit_limit: u64) -> Books {
        Books {
            book,
            ledger: Ledger::new(History::Drop),
            ids: HashMap::new(),
            names: HashMap::new(),
            next_account: 1,
            programmes: BTreeMap::new(),
            grants: BTreeMap::new(),
            credit_limit,
            touched: BTreeSet::new(),
            staged: Vec::new(),
            staged_owners: HashMap::new(),
            staged_programmes: Vec::new(),
            client: HashMap::new(),
        }
    }

    /// The books as the store has them: accounts, open holds, programmes and grants.
    pub async fn load(store: &AnyStore, book: PriceBook, credit_limit: u64) -> Result<Books, StoreError> {
        let mut b = Books::new(book, credit_limit);
        let rows = store.ledger_accounts().await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some((account, kind)) = account_of(r) else {
                return Err(StoreError::Config(format!("ledger account {} is unreadable", r.id)));
            };
            let id = account.id;
            accounts.push(account);
            b.ids.insert((kind, r.name.clone()), id);
            b.names.insert(id, (kind, r.name.clone()));
            b.next_account = b.next_account.max(id + 1);
        }
        let pending = store.open_pending().await?.iter().filter_map(transfer_of).collect();
        let clock = u64::try_from(store.ledger_clock().await?).unwrap_or(0);
        b.ledger = Ledger::restore(History::Drop, accounts, pending, clock);
        for p in store.programmes().await? {
            let Ok(state) = serde_json::from_str::<ProgrammeState>(&p.body) else {
                return Err(StoreError::Config(format!("voucher programme {} is unreadable", p.id)));
            };
            let account = b.ids.get(&(AccountKind::Programme, p.id.clone())).copied().unwrap_or(0);
            b.programmes.insert(p.id.clone(), (state, account));
        }
        // grants: what was granted per year, from the grant transfers
        let grant_accounts: Vec<(u128, String)> =
            b.ids.iter().filter(|((k, _), _)| *k == AccountKind::Grant).map(|((_, n), id)| (*id, n.clone())).collect();
        for (id, name) in grant_accounts {
            let Some((programme, tenant)) = name.split_once('/') else { continue };
            let q = TransferQuery { accounts: vec![hex(id)], limit: i64::MAX, ..TransferQuery::default() };
            let mut g = GrantState { account: id, granted: BTreeMap::new() };
            for t in store.ledger_transfers(&q).await? {
                if t.code == i32::from(TransferKind::Grant.code()) && t.credit == hex(id) {
                    *g.granted.entry(Programme::year_of(t.at_ms)).or_default() += t.amount;
                }
            }
            b.grants.insert((programme.to_string(), tenant.to_string()), g);
        }
        Ok(b)
    }

    /// What the next group commit writes: changed accounts, new transfers, changed programmes.
    pub fn take_staged(&mut self) -> StagedBooks {
        let accounts = std::mem::take(&mut self.touched)
            .into_iter()
            .filter_map(|id| {
                let a = self.ledger.account(id)?;
                let (kind, name) = self.names.get(&id)?;
                Some(account_row(a, *kind, name))
            })
            .collect();
        StagedBooks {
            accounts,
            transfers: std::mem::take(&mut self.staged),
            programmes: std::mem::take(&mut self.staged_programmes),
            owners: std::mem::take(&mut self.staged_owners),
        }
    }

    pub fn has_staged(&self) -> bool {
        !self.touched.is_empty() || !self.staged.is_empty() || !self.staged_programmes.is_empty()
    }

    /// The id of account `kind`/`name`, creating it (with its kind's constraint) if new.
    pub fn account(&mut self, kind: AccountKind, name: &str, now_ms: i64) -> u128 {
        if let Some(id) = self.ids.get(&(kind, name.to_string())) {
            return *id;
        }
        let id = self.next_account;
        self.next_account += 1;
        let mut a = Account::new(id, kind.code(), kind.flags());
        a.ledger = kind.ledger();
        if kind == AccountKind::Wallet {
            a.credit_limit = self.credit_limit;
        }
        // a fresh id with zero balances cannot be refused
        let _ = self.ledger.create_account(a, micros(now_ms));
        self.ids.insert((kind, name.to_string()), id);
        self.names.insert(id, (kind, name.to_string()));
        self.touched.insert(id);
        id
    }

    pub fn find(&self, kind: AccountKind, name: &str) -> Option<&Account> {
        self.ids.get(&(kind, name.to_string())).and_then(|id| self.ledger.account(*id))
    }

    pub fn name_of(&self, id: u128) -> Option<&(AccountKind, String)> {
        self.names.get(&id)
    }

    pub fn ids_of(&self, pred: impl Fn(AccountKind, &str) -> bool) -> Vec<(u128, AccountKind, String)> {
        let mut v: Vec<_> =
            self.ids.iter().filter(|((k, n), _)| pred(*k, n)).map(|((k, n), id)| (*id, *k, n.clone())).collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// Applies `chain` (all-or-none) and stages what it created.
    pub(crate) fn apply(&mut self, chain: &[Transfer], now_ms: i64) -> Result<Vec<Applied>, TransferError> {
        let results = self.ledger.create_transfers(chain, micros(now_ms));
        // a chain's failure names its own cause; the rest of the chain says `linked_event_failed`
        if let Some(e) =
            results.iter().find_map(|r| r.as_ref().err().filter(|e| **e != TransferError::LinkedEventFailed))
        {
            return Err(*e);
        }
        for stored in self.ledger.created() {
            let row = row_of(stored, now_ms);
            for side in [stored.debit_account_id, stored.credit_account_id] {
                self.touched.insert(side);
                if let Some((AccountKind::Wallet, name)) = self.names.get(&side) {
                    self.staged_owners.insert(row.id.clone(), name.clone());
                }
            }
            self.staged.push(row);
        }
        results.into_iter().collect()
    }

    fn hold_id(job: u64) -> u128 {
        system_id(TransferKind::Hold, job, 0)
    }

    /// Holds `price_fen` of `tenant`'s wallet for job `job`.
    pub fn hold(&mut self, job: u64, tenant: &str, price_fen: i64, now_ms: i64) -> Result<(), Shortfall> {
        let wallet = self.account(AccountKind::Wallet, tenant, now_ms);
        let clearing = self.account(AccountKind::Clearing, PLATFORM, now_ms);
        let price = u64::try_from(price_fen.max(1)).unwrap_or(u64::MAX);
        let hold = Transfer::new(Books::hold_id(job), wallet, clearing, price, TransferKind::Hold.code())
            .flags(TransferFlags::PENDING)
            .user_data(job);
        match self.apply(&[hold], now_ms) {
            Ok(_) => Ok(()),
            Err(_) => {
                let available = self.ledger.account(wallet).and_then(Account::available).map_or(0, i64_of);
                Err(Shortfall { price_fen, available_fen: available })
            }
        }
    }

    /// Voids job `job`'s hold, if one is open (refused or cancelled before it ran).
    pub fn void(&mut self, job: u64, now_ms: i64) {
        let hold = Books::hold_id(job);
        if self.ledger.pending(hold).is_none() {
            return;
        }
        let v = Transfer::void(system_id(TransferKind::Void, job, 0), hold, TransferKind::Void.code()).user_data(job);
        if let Err(e) = self.apply(&[v], now_ms) {
            tracing::error!(job, error = %e, "voiding a hold failed");
        }
    }

    /// Settles job `job` on its metered use: the bill, vouchers, the split, one linked chain.
    /// Returns the bill (with what vouchers paid).
    pub fn settle(&mut self, s: &SettleJob<'_>, now_ms: i64) -> Option<Bill> {
        let usage = s.meter.usage();
        let bill = match self.book.bill(&usage) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(job = s.job, error = %e, "the job's meter cannot be billed; its hold is voided");
                self.void(s.job, now_ms);
                return None;
            }
        };
        let facts = JobFacts { tenant: s.tenant, origin: s.origin, kind: s.kind, places: s.places, at_ms: now_ms };
        // the tenant's grants, with what each has left
        let held: Vec<(Programme, u128, i64)> = self
            .grants
            .iter()
            .filter(|((_, t), _)| t == s.tenant)
            .filter_map(|((p, _), g)| {
                let (state, _) = self.programmes.get(p)?;
                let left = self.ledger.account(g.account).map_or(0, |a| i64_of(a.balance().max(0) as u128));
                (!state.closed).then(|| (state.programme.clone(), g.account, left))
            })
            .collect();
        let refs: Vec<(&Programme, i64)> = held.iter().map(|(p, _, l)| (p, *l)).collect();
        let mut vouchers = vec![];
        let mut paid = vec![];
        for (kind, eligible) in
            [(VoucherKind::Compute, usage.compute_fen + usage.energy_fen), (VoucherKind::Transport, usage.transfer_fen)]
        {
            if let Some((p, fen)) = choose(&refs, kind, &facts, eligible) {
                let account = held.iter().find(|h| h.0.id == p.id).map_or(0, |h| h.1);
                vouchers.push((account, u64::try_from(fen).unwrap_or(0)));
                paid.push((p.id.clone(), fen));
            }
        }
        let bill = bill.with_vouchers(&paid).ok()?;
        let split = self.book.split(&bill, &usage, s.provider, s.carrier);
        let mut shares = vec![];
        for (payee, fen) in &split.shares {
            let (kind, name, tk) = match payee {
                Payee::Provider(n) => (AccountKind::Provider, n.as_str(), TransferKind::ProviderShare),
                Payee::Carrier(n) => (AccountKind::Carrier, n.as_str(), TransferKind::CarrierShare),
                Payee::Platform => (AccountKind::Platform, PLATFORM, TransferKind::PlatformFee),
            };
            shares.push((self.account(kind, name, now_ms), u64::try_from(*fen).unwrap_or(0), tk));
        }
        let wallet = self.account(AccountKind::Wallet, s.tenant, now_ms);
        let clearing = self.account(AccountKind::Clearing, PLATFORM, now_ms);
        let platform = self.account(AccountKind::Platform, PLATFORM, now_ms);
        let hold = self.ledger.pending(Books::hold_id(s.job)).map(|(t, _)| *t);
        let tenant_fen = u64::try_from(bill.tenant_fen).unwrap_or(0);
        let chain =
            settlement(&self.ledger, s.job, wallet, clearing, platform, hold.as_ref(), tenant_fen, &vouchers, &shares)?;
        if chain.transfers.is_empty() {
            return Some(bill);
        }
        match self.apply(&chain.transfers, now_ms) {
            Ok(_) => Some(bill),
            Err(e) => {
                tracing::error!(job = s.job, error = %e, "settlement refused by the ledger; the hold is voided");
                self.void(s.job, now_ms);
                None
            }
        }
    }

    /// Money paid in: bank → `kind`/`name` (a wallet, or a funder's budget), with the client's
    /// transfer id (retries apply once).
    pub fn topup(
        &mut self,
        kind: AccountKind,
        name: &str,
        amount_fen: i64,
        id: u128,
        now_ms: i64,
    ) -> Result<Applied, MoneyError> {
        let amount = u64::try_from(amount_fen)
            .ok()
            .filter(|a| *a > 0)
            .ok_or_else(|| refuse("amount_fen", "must be a positive number of fen"))?;
        if !suanwang_economy::client_id_ok(id) {
            return Err(refuse(
                "transfer_id",
                "must be 32 hex digits, not all zero, below 8000… (the top bit is the platform's)",
            ));
        }
        let bank = self.account(AccountKind::Bank, "bank", now_ms);
        let to = self.account(kind, name, now_ms);
        let t = Transfer::new(id, bank, to, amount, TransferKind::Topup.code());
        if let Some(old) = self.client.get(&id) {
            return if (old.debit_account_id, old.credit_account_id, old.amount) == (bank, to, amount) {
                Ok(Applied::Exists)
            } else {
                Err(MoneyError {
                    field: "transfer_id".into(),
                    reason: "this transfer id was used for another transfer".into(),
                    status: 409,
                })
            };
        }
        let applied = self.apply(&[t], now_ms);
        if applied.is_ok() {
            self.client.insert(id, t);
        }
        applied.map(|r| r[0]).map_err(|e| match e {
            TransferError::ExistsWithDifferentFields => MoneyError {
                field: "transfer_id".into(),
                reason: "this transfer id was used for another transfer".into(),
                status: 409,
            },
            TransferError::Overflow => refuse("amount_fen", "the balance would overflow"),
            e => refuse("amount_fen", e.to_string()),
        })
    }

    /// Whether a stored transfer is the top-up of `amount_fen` to `kind`/`name` (a retry).
    pub fn is_topup(&self, row: &TransferRow, kind: AccountKind, name: &str, amount_fen: i64) -> bool {
        let to = self.ids.get(&(kind, name.to_string())).copied().map(hex);
        row.code == i32::from(TransferKind::Topup.code())
            && Some(&row.credit) == to.as_ref()
            && row.amount == amount_fen
    }

    /// Sets `tenant`'s credit limit.
    pub fn set_credit_limit(&mut self, tenant: &str, limit_fen: i64, now_ms: i64) -> Result<(), MoneyError> {
        let limit = u64::try_from(limit_fen).map_err(|_| refuse("credit_limit_fen", "must not be negative"))?;
        let wallet = self.account(AccountKind::Wallet, tenant, now_ms);
        self.ledger.set_credit_limit(wallet, limit, micros(now_ms)).map_err(|_| {
            refuse("credit_limit_fen", "the wallet already owes more than this limit allows; top it up first")
        })?;
        self.touched.insert(wallet);
        Ok(())
    }

    pub fn programme(&self, id: &str) -> Option<&ProgrammeState> {
        self.programmes.get(id).map(|(s, _)| s)
    }

    pub fn programmes(&self) -> impl Iterator<Item = &ProgrammeState> {
        self.programmes.values().map(|(s, _)| s)
    }

    /// What `programme`'s budget has left, and what each grant has (tenant, granted this year,
    /// left).
    pub fn programme_balances(&self, id: &str, now_ms: i64) -> Option<(i64, Vec<GrantBalance>)> {
        let (_, account) = self.programmes.get(id)?;
        let budget_left = self.ledger.account(*account).map_or(0, |a| i64_of(a.balance().max(0) as u128));
        let year = Programme::year_of(now_ms);
        let grants = self
            .grants
            .iter()
            .filter(|((p, _), _)| p == id)
            .map(|((_, t), g)| {
                let left = self.ledger.account(g.account).map_or(0, |a| i64_of(a.balance().max(0) as u128));
                (t.clone(), g.granted.get(&year).copied().unwrap_or(0), left)
            })
            .collect();
        Some((budget_left, grants))
    }

    /// A funder files a programme: its budget moves from the funder to the programme.
    pub fn create_programme(&mut self, p: Programme, now_ms: i64) -> Result<Applied, MoneyError> {
        p.check().map_err(|e| refuse(&e.field, e.reason))?;
        if let Some((old, _)) = self.programmes.get(&p.id) {
            return if old.programme == p {
                Ok(Applied::Exists)
            } else {
                Err(MoneyError {
                    field: "id".into(),
                    reason: format!("programme {:?} exists with other terms", p.id),
                    status: 409,
                })
            };
        }
        if p.funder.is_empty() {
            return Err(refuse("funder", "must name the funder"));
        }
        let funder = self.account(AccountKind::Funder, &p.funder, now_ms);
        let account = self.account(AccountKind::Programme, &p.id, now_ms);
        let n = self.programmes.len() as u64 + 1;
        let budget = u64::try_from(p.budget_fen).unwrap_or(0);
        let t = Transfer::new(
            system_id(TransferKind::ProgrammeBudget, n, 0),
            funder,
            account,
            budget,
            TransferKind::ProgrammeBudget.code(),
        )
        .user_data(n);
        self.apply(&[t], now_ms).map_err(|e| refuse("budget_fen", e.to_string()))?;
        let state = ProgrammeState { programme: p, closed: false };
        self.stage_programme(&state, now_ms);
        self.programmes.insert(state.programme.id.clone(), (state, account));
        Ok(Applied::Created)
    }

    fn stage_programme(&mut self, state: &ProgrammeState, now_ms: i64) {
        self.staged_programmes.push(ProgrammeRow {
            id: state.programme.id.clone(),
            funder: state.programme.funder.clone(),
            body: serde_json::to_string(state).unwrap_or_default(),
            created_at_ms: now_ms,
        });
    }

    /// Grants `amount_fen` of `programme` to `tenant`, within the cap per year, the budget and
    /// the window.
    pub fn grant(&mut self, programme: &str, tenant: &str, amount_fen: i64, now_ms: i64) -> Result<i64, MoneyError> {
        let Some((state, account)) = self.programmes.get(programme).cloned() else {
            return Err(MoneyError {
                field: "programme".into(),
                reason: format!("no programme {programme:?}"),
                status: 404,
            });
        };
        let p = &state.programme;
        if amount_fen <= 0 {
            return Err(refuse("amount_fen", "must be a positive number of fen"));
        }
        if state.closed || now_ms >= p.valid_to_ms {
            return Err(refuse(
                "programme",
                format!("programme {programme:?} has closed (valid until {} ms)", p.valid_to_ms),
            ));
        }
        if !p.tenants.is_empty() && !p.tenants.iter().any(|t| t == tenant) {
            return Err(refuse("tenant", format!("{tenant:?} is not among the programme's eligible tenants")));
        }
        let year = Programme::year_of(now_ms);
        let key = (programme.to_string(), tenant.to_string());
        let already = self.grants.get(&key).and_then(|g| g.granted.get(&year)).copied().unwrap_or(0);
        if already.saturating_add(amount_fen) > p.cap_per_beneficiary_fen {
            return Err(refuse(
                "amount_fen",
                format!(
                    "{tenant:?} was granted {already} fen this year; the cap is {} fen per beneficiary per year",
                    p.cap_per_beneficiary_fen
                ),
            ));
        }
        let left = self.ledger.account(account).map_or(0, |a| i64_of(a.balance().max(0) as u128));
        if amount_fen > left {
            return Err(refuse("amount_fen", format!("the programme's budget has {left} fen left")));
        }
        let grant_account = self.account(AccountKind::Grant, &format!("{programme}/{tenant}"), now_ms);
        // the ledger's clock moves with every transfer: no two grants share it
        let id = system_id(TransferKind::Grant, self.ledger.clock(), 0);
        let t = Transfer::new(id, account, grant_account, amount_fen as u64, TransferKind::Grant.code());
        self.apply(&[t], now_ms).map_err(|e| refuse("amount_fen", e.to_string()))?;
        let g =
            self.grants.entry(key).or_insert_with(|| GrantState { account: grant_account, granted: BTreeMap::new() });
        *g.granted.entry(year).or_default() += amount_fen;
        Ok(self.ledger.account(grant_account).map_or(0, |a| i64_of(a.balance().max(0) as u128)))
    }

    /// Closes programmes whose window ended by `now_ms`: grants' rests go back to the
    /// programme, and the programme's rest to its funder (one linked chain per programme).
    pub fn expire(&mut self, now_ms: i64) {
        let due: Vec<String> = self
            .programmes
            .iter()
            .filter(|(_, (s, _))| !s.closed && s.programme.valid_to_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some((mut state, account)) = self.programmes.get(&id).cloned() else { continue };
            let funder = self.account(AccountKind::Funder, &state.programme.funder, now_ms);
            let seq = self.ledger.clock();
            let mut chain = vec![];
            let mut back = 0u64;
            for ((_, _), g) in self.grants.iter().filter(|((p, _), _)| *p == id) {
                let left = self.ledger.account(g.account).map_or(0, |a| a.balance().max(0) as u64);
                if left > 0 {
                    let leg = chain.len() as u16;
                    chain.push(
                        Transfer::new(
                            system_id(TransferKind::Expiry, seq, leg),
                            g.account,
                            account,
                            left,
                            TransferKind::Expiry.code(),
                        )
                        .flags(TransferFlags::LINKED),
                    );
                    back += left;
                }
            }
            let rest = self.ledger.account(account).map_or(0, |a| a.balance().max(0) as u64) + back;
            if rest > 0 {
                let leg = chain.len() as u16;
                chain.push(Transfer::new(
                    system_id(TransferKind::Return, seq, leg),
                    account,
                    funder,
                    rest,
                    TransferKind::Return.code(),
                ));
            } else if let Some(last) = chain.last_mut() {
                last.flags = last.flags.without(TransferFlags::LINKED);
            }
            if !chain.is_empty()
                && let Err(e) = self.apply(&chain, now_ms)
            {
                tracing::error!(programme = %id, error = %e, "closing a programme failed");
                continue;
            }
            state.closed = true;
            self.stage_programme(&state, now_ms);
            self.programmes.insert(id, (state, account));
        }
    }

    /// Σ debits = Σ credits (pending and posted) over all accounts: the books balance.
    pub fn balanced(&self) -> bool {
        let (dp, cp, dq, cq) = self.ledger.totals();
        dp == cp && dq == cq
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

/// What settling a job needs to know of it.
#[derive(Debug)]
pub struct SettleJob<'a> {
    pub job: u64,
    pub tenant: &'a str,
    pub origin: &'a str,
    pub kind: &'a str,
    /// Site, hub, region.
    pub places: [&'a str; 3],
    pub provider: &'a str,
    pub carrier: Option<&'a str>,
    pub meter: &'a Meter,
}

/// Who is paid for compute at `site`: its agent's owner, else the reference provider of its
/// cluster (or region).
pub fn provider_of(book: &PriceBook, net: &Network, grants: &BTreeMap<String, SiteGrant>, site: &str) -> String {
    if let Some(g) = grants.get(site) {
        return g.owner.name.clone();
    }
    let s = net.sites.iter().find(|s| s.id == site);
    let cluster =
        s.and_then(|s| s.cluster.clone()).or_else(|| s.map(|s| s.region.clone())).unwrap_or_else(|| site.to_string());
    book.reference_provider(&cluster)
}

/// The price a hold takes for a planned meter: the bill's total (with the platform fee).
pub fn estimate(book: &PriceBook, m: &Meter) -> i64 {
    book.total_fen(&m.usage()).unwrap_or(m.money_fen)
}

/// An account as the store keeps it.
pub fn account_row(a: &Account, kind: AccountKind, name: &str) -> AccountRow {
    AccountRow {
        id: hex(a.id),
        kind: kind.as_str().to_string(),
        name: name.to_string(),
        code: i32::from(a.code),
        flags: i32::from(a.flags.0),
        credit_limit: i64::try_from(a.credit_limit).unwrap_or(i64::MAX),
        debits_pending: i64_of(a.debits_pending),
        debits_posted: i64_of(a.debits_posted),
        credits_pending: i64_of(a.credits_pending),
        credits_posted: i64_of(a.credits_posted),
        ts: i64::try_from(a.timestamp).unwrap_or(i64::MAX),
    }
}

/// A stored account as the ledger holds it, with its kind (`None`: an id or code not ours).
pub fn account_of(r: &AccountRow) -> Option<(Account, AccountKind)> {
    let (id, kind) = (parse_hex(&r.id)?, AccountKind::from_code(u16::try_from(r.code).ok()?)?);
    let account = Account {
        id,
        ledger: kind.ledger(),
        code: kind.code(),
        flags: suanwang_economy::AccountFlags(u16::try_from(r.flags).ok()?),
        credit_limit: u64::try_from(r.credit_limit).unwrap_or(0),
        debits_pending: u128::try_from(r.debits_pending).unwrap_or(0),
        debits_posted: u128::try_from(r.debits_posted).unwrap_or(0),
        credits_pending: u128::try_from(r.credits_pending).unwrap_or(0),
        credits_posted: u128::try_from(r.credits_posted).unwrap_or(0),
        timestamp: u64::try_from(r.ts).unwrap_or(0),
    };
    Some((account, kind))
}

pub fn row_of(t: &Transfer, at_ms: i64) -> TransferRow {
    TransferRow {
        id: hex(t.id),
        debit: hex(t.debit_account_id),
        credit: hex(t.credit_account_id),
        amount: i64::try_from(t.amount).unwrap_or(i64::MAX),
        pending_id: if t.pending_id == 0 { String::new() } else { hex(t.pending_id) },
        user_data: i64::try_from(t.user_data).unwrap_or(i64::MAX),
        code: i32::from(t.code),
        flags: i32::from(t.flags.0),
        ts: i64::try_from(t.timestamp).unwrap_or(i64::MAX),
        at_ms,
    }
}

pub fn transfer_of(r: &TransferRow) -> Option<Transfer> {
    Some(Transfer {
        id: parse_hex(&r.id)?,
        debit_account_id: parse_hex(&r.debit)?,
        credit_account_id: parse_hex(&r.credit)?,
        amount: u64::try_from(r.amount).ok()?,
        pending_id: if r.pending_id.is_empty() { 0 } else { parse_hex(&r.pending_id)? },
        user_data: u64::try_from(r.user_data).ok()?,
        ledger: suanwang_economy::CNY,
        code: u16::try_from(r.code).ok()?,
        flags: TransferFlags(u16::try_from(r.flags).ok()?),
        timestamp: u64::try_from(r.ts).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_parse_back() {
        for id in
            [0, 1, 0xabc, u128::from(u64::MAX) << 7, 1 << 127, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210]
        {
            let h = hex(id);
            assert_eq!(h, format!("{id:032x}"));
            assert_eq!(parse_hex(&h), Some(id));
        }
    }

    fn programme(budget: i64, cap: i64, to_ms: i64) -> Programme {
        Programme {
            id: "p".into(),
            name: String::new(),
            funder: "city".into(),
            kind: VoucherKind::Compute,
            budget_fen: budget,
            rate_bp: 3_000,
            cap_per_beneficiary_fen: cap,
            tenants: vec![],
            cities: vec![],
            places: vec![],
            job_kinds: vec![],
            valid_from_ms: 0,
            valid_to_ms: to_ms,
        }
    }

    #[test]
    fn grants_stay_within_cap_and_budget_and_expiry_returns_the_rest_to_the_funder() {
        let mut b = Books::new(PriceBook::reference(), 0);
        b.create_programme(programme(1_000, 800, 10_000), 1).expect("programme");
        assert_eq!(b.grant("p", "a", 900, 2).map_err(|e| e.field), Err("amount_fen".to_string()), "beyond the cap");
        assert_eq!(b.grant("p", "a", 600, 3), Ok(600));
        assert_eq!(
            b.grant("p", "a", 300, 4).map_err(|e| e.field),
            Err("amount_fen".to_string()),
            "cap per year reached"
        );
        assert_eq!(
            b.grant("p", "b", 500, 5).map_err(|e| e.field),
            Err("amount_fen".to_string()),
            "beyond the 400 left"
        );
        assert_eq!(b.grant("p", "b", 400, 6), Ok(400));
        assert_eq!(b.grant("nope", "b", 1, 7).map_err(|e| e.status), Err(404));
        let funder = |b: &Books| b.find(AccountKind::Funder, "city").map(Account::balance);
        assert_eq!(funder(&b), Some(-1_000), "the budget left the funder");
        // a job pays 30 % of its compute from a's grant
        let meter = Meter { compute_fen: 1_000, money_fen: 1_000, ucu_hours: 1.0, ..Meter::default() };
        b.topup(AccountKind::Wallet, "a", 10_000, 42, 8).expect("topup");
        b.hold(1, "a", 1_100, 9).expect("hold");
        let job = SettleJob {
            job: 1,
            tenant: "a",
            origin: "beijing",
            kind: "batch",
            places: ["s", "", "r"],
            provider: "idc",
            carrier: None,
            meter: &meter,
        };
        let bill = b.settle(&job, 10).expect("settled");
        assert_eq!((bill.voucher_fen, bill.total_fen, bill.tenant_fen), (300, 1_030, 730));
        assert_eq!(b.find(AccountKind::Wallet, "a").map(Account::balance), Some(10_000 - 730));
        // the window closes: a's 300 and b's 400 left, and nothing of the budget, go back
        b.expire(10_000);
        assert!(b.programme("p").is_some_and(|s| s.closed));
        assert_eq!(funder(&b), Some(-300), "all but what vouchers paid returned");
        assert_eq!(b.find(AccountKind::Grant, "p/a").map(Account::balance), Some(0));
        assert_eq!(b.grant("p", "a", 1, 10_001).map_err(|e| e.field), Err("programme".to_string()), "closed");
        assert!(b.balanced());
        let StagedBooks { transfers, programmes, .. } = b.take_staged();
        assert!(transfers.iter().any(|t| t.code == i32::from(TransferKind::Return.code())));
        assert_eq!(programmes.last().map(|p| p.body.contains("\"closed\":true")), Some(true));
    }
}
