//! A double-entry ledger with TigerBeetle's semantics (R4), in memory and pure: the store makes
//! it durable by writing what [`Ledger::create_transfers`] accepted in the same transaction as
//! the commands that caused it.
//!
//! What is TigerBeetle's, kept exactly:
//! - accounts carry `debits_pending`, `debits_posted`, `credits_pending`, `credits_posted`; they
//!   are never deleted, and their balances change only through transfers;
//! - `debits_must_not_exceed_credits` / `credits_must_not_exceed_debits` are the balance
//!   constraints, checked against pending plus posted amounts;
//! - a transfer has exactly one debit and one credit account on the same ledger (currency), a
//!   client-chosen id that is never 0 nor `u128::MAX`, and is immutable: creating it again with
//!   the same fields is `exists` and changes nothing, with other fields an error;
//! - `linked` chains apply all-or-none (the failing event gets its own error, the others
//!   `linked_event_failed`; a chain left open at the end of a batch fails);
//! - two-phase transfers: `pending` reserves, `post_pending_transfer` posts all or part of it
//!   (the rest is released), `void_pending_transfer` releases it; a pending transfer resolves at
//!   most once;
//! - `balancing_debit`: the amount is cut to what the debit account can still pay;
//! - every event gets a strictly increasing timestamp.
//!
//! One extension: `credit_limit` on an account with `debits_must_not_exceed_credits` lets its
//! debits exceed its credits by that much (a tenant's credit line). TigerBeetle models a credit
//! line as a second account funding the first; one number is simpler to show and to audit.
//! Pending-transfer timeouts are left out: the control plane voids holds explicitly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The ledger number of Chinese yuan (ISO 4217 numeric code 156): amounts are fen.
pub const CNY: u32 = 156;
/// The carbon ledger's unit: grams of CO2e (carbon-sink credits, issue 16).
pub const CO2E_G: u32 = 2;

/// Account flags (TigerBeetle's bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountFlags(pub u16);

impl AccountFlags {
    pub const NONE: AccountFlags = AccountFlags(0);
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: AccountFlags = AccountFlags(1 << 1);
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: AccountFlags = AccountFlags(1 << 2);

    pub fn contains(self, f: AccountFlags) -> bool {
        self.0 & f.0 == f.0 && f.0 != 0
    }
}

/// Transfer flags (TigerBeetle's bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferFlags(pub u16);

impl TransferFlags {
    pub const NONE: TransferFlags = TransferFlags(0);
    pub const LINKED: TransferFlags = TransferFlags(1 << 0);
    pub const PENDING: TransferFlags = TransferFlags(1 << 1);
    pub const POST_PENDING_TRANSFER: TransferFlags = TransferFlags(1 << 2);
    pub const VOID_PENDING_TRANSFER: TransferFlags = TransferFlags(1 << 3);
    pub const BALANCING_DEBIT: TransferFlags = TransferFlags(1 << 4);

    pub fn contains(self, f: TransferFlags) -> bool {
        self.0 & f.0 == f.0 && f.0 != 0
    }

    #[must_use]
    pub fn with(self, f: TransferFlags) -> TransferFlags {
        TransferFlags(self.0 | f.0)
    }

    #[must_use]
    pub fn without(self, f: TransferFlags) -> TransferFlags {
        TransferFlags(self.0 & !f.0)
    }
}

/// An account. Balances are u128 (sums of u64 amounts cannot overflow them in practice; every
/// addition is checked anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(with = "hex128")]
    pub id: u128,
    pub ledger: u32,
    /// The account's kind (see [`crate::AccountKind`]).
    pub code: u16,
    pub flags: AccountFlags,
    /// How far debits may exceed credits (with `debits_must_not_exceed_credits`), fen.
    pub credit_limit: u64,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    /// Set by the ledger when the account is created.
    pub timestamp: u64,
}

impl Account {
    /// A new account with zero balances.
    pub fn new(id: u128, code: u16, flags: AccountFlags) -> Account {
        Account {
            id,
            ledger: CNY,
            code,
            flags,
            credit_limit: 0,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            timestamp: 0,
        }
    }

    /// Posted credits minus posted debits (may be negative).
    pub fn balance(&self) -> i128 {
        self.credits_posted as i128 - self.debits_posted as i128
    }

    /// What a debit could still take: posted credits + credit limit − debits pending and posted
    /// (`None`: the account has no debit constraint).
    pub fn available(&self) -> Option<u128> {
        self.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS).then(|| {
            (self.credits_posted + u128::from(self.credit_limit))
                .saturating_sub(self.debits_pending + self.debits_posted)
        })
    }
}

/// A transfer. `user_data` carries the job (or grant) it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    #[serde(with = "hex128")]
    pub id: u128,
    #[serde(with = "hex128")]
    pub debit_account_id: u128,
    #[serde(with = "hex128")]
    pub credit_account_id: u128,
    pub amount: u64,
    /// For posting or voiding: the pending transfer's id.
    #[serde(with = "hex128")]
    pub pending_id: u128,
    pub user_data: u64,
    pub ledger: u32,
    /// The transfer's kind (see [`crate::TransferKind`]).
    pub code: u16,
    pub flags: TransferFlags,
    /// Set by the ledger when the transfer is created.
    pub timestamp: u64,
}

impl Transfer {
    /// A single-phase transfer of `amount` fen.
    pub fn new(id: u128, debit: u128, credit: u128, amount: u64, code: u16) -> Transfer {
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            pending_id: 0,
            user_data: 0,
            ledger: CNY,
            code,
            flags: TransferFlags::NONE,
            timestamp: 0,
        }
    }

    #[must_use]
    pub fn flags(mut self, f: TransferFlags) -> Transfer {
        self.flags = self.flags.with(f);
        self
    }

    #[must_use]
    pub fn user_data(mut self, d: u64) -> Transfer {
        self.user_data = d;
        self
    }

    /// Posts `amount` of pending transfer `pending` (accounts taken from it).
    pub fn post(id: u128, pending: u128, amount: u64, code: u16) -> Transfer {
        Transfer { pending_id: pending, ..Transfer::new(id, 0, 0, amount, code) }
            .flags(TransferFlags::POST_PENDING_TRANSFER)
    }

    /// Voids pending transfer `pending`.
    pub fn void(id: u128, pending: u128, code: u16) -> Transfer {
        Transfer { pending_id: pending, ..Transfer::new(id, 0, 0, 0, code) }.flags(TransferFlags::VOID_PENDING_TRANSFER)
    }

    /// The same request, fields compared as TigerBeetle compares a retry (not the timestamp,
    /// and not the amount of a balancing transfer, which the ledger may have cut).
    fn same_request(&self, stored: &Transfer) -> bool {
        let amount_ok = self.flags.contains(TransferFlags::BALANCING_DEBIT) || self.amount == stored.amount;
        let resolving = self.pending_id != 0;
        let accounts_ok = (resolving && self.debit_account_id == 0 && self.credit_account_id == 0)
            || (self.debit_account_id == stored.debit_account_id && self.credit_account_id == stored.credit_account_id);
        amount_ok
            && accounts_ok
            && self.pending_id == stored.pending_id
            && self.user_data == stored.user_data
            && self.code == stored.code
            && self.flags.without(TransferFlags::LINKED) == stored.flags.without(TransferFlags::LINKED)
            && (self.ledger == stored.ledger || (resolving && self.ledger == 0))
    }
}

/// Why an account was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountError {
    #[error("id must not be 0 or 2^128-1")]
    IdInvalid,
    #[error("ledger must not be 0")]
    LedgerMustNotBeZero,
    #[error("code must not be 0")]
    CodeMustNotBeZero,
    #[error("debits_must_not_exceed_credits and credits_must_not_exceed_debits are mutually exclusive")]
    FlagsAreMutuallyExclusive,
    #[error("a new account's balances must be zero")]
    BalancesMustBeZero,
    #[error("an account with this id exists with other fields")]
    ExistsWithDifferentFields,
}

/// Why a transfer was not applied (TigerBeetle's result codes, the ones this model can give).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferError {
    #[error("another transfer of its linked chain failed")]
    LinkedEventFailed,
    #[error("the linked chain is not closed at the end of the batch")]
    LinkedEventChainOpen,
    #[error("id must not be 0 or 2^128-1")]
    IdInvalid,
    #[error("flags are mutually exclusive")]
    FlagsAreMutuallyExclusive,
    #[error("the debit account does not exist")]
    DebitAccountNotFound,
    #[error("the credit account does not exist")]
    CreditAccountNotFound,
    #[error("the debit and credit accounts must differ")]
    AccountsMustBeDifferent,
    #[error("pending_id must be 0 unless posting or voiding")]
    PendingIdMustBeZero,
    #[error("pending_id must not be 0 when posting or voiding")]
    PendingIdMustNotBeZero,
    #[error("pending_id must differ from the transfer's id")]
    PendingIdMustBeDifferent,
    #[error("the pending transfer does not exist")]
    PendingTransferNotFound,
    #[error("the referenced transfer is not pending")]
    PendingTransferNotPending,
    #[error("the pending transfer was already posted")]
    PendingTransferAlreadyPosted,
    #[error("the pending transfer was already voided")]
    PendingTransferAlreadyVoided,
    #[error("the accounts differ from the pending transfer's")]
    PendingTransferHasDifferentAccounts,
    #[error("the amount exceeds the pending transfer's")]
    ExceedsPendingTransferAmount,
    #[error("a void must carry the pending amount or 0")]
    PendingTransferHasDifferentAmount,
    #[error("the amount must not be zero")]
    AmountMustNotBeZero,
    #[error("the transfer's ledger must be the accounts'")]
    TransferMustHaveTheSameLedgerAsAccounts,
    #[error("the accounts must be on the same ledger")]
    AccountsMustHaveTheSameLedger,
    #[error("a transfer with this id exists with other fields")]
    ExistsWithDifferentFields,
    #[error("the debit account's debits would exceed its credits (and credit limit)")]
    ExceedsCredits,
    #[error("the credit account's credits would exceed its debits")]
    ExceedsDebits,
    #[error("a balance would overflow")]
    Overflow,
    #[error("a replayed entry's timestamp must be later than the one before")]
    TimestampMustNotRegress,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Created,
    /// The same transfer was created before: nothing changed (a retry).
    Exists,
}

/// What became of a pending transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    Pending,
    Posted,
    Voided,
}

/// Whether resolved history is kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum History {
    /// Every transfer is kept: retries of any of them are recognised (the model, the tests).
    Keep,
    /// Only pending transfers are kept; the caller keeps the rest durable and recognises retries
    /// of resolved transfers there (the control plane: the store's primary key).
    Drop,
}

/// The ledger: accounts, the transfers kept, and the state of pending transfers.
#[derive(Debug, Clone)]
pub struct Ledger {
    history: History,
    accounts: Vec<Account>,
    index: HashMap<u128, u32>,
    transfers: Vec<Transfer>,
    transfer_index: HashMap<u128, u32>,
    pending: BTreeMap<u128, (Transfer, PendingState)>,
    /// Credit-limit changes (account, limit, timestamp), and each changed account's limit at
    /// creation (`History::Keep`).
    limits: Vec<(u128, u64, u64)>,
    first_limits: HashMap<u128, u64>,
    clock: u64,
    /// What the last `create_transfers` created, as stored.
    created: Vec<Transfer>,
}

/// One entry of the ledger's journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    Account(Account),
    Transfer(Transfer),
    CreditLimit {
        #[serde(with = "hex128")]
        id: u128,
        limit: u64,
        timestamp: u64,
    },
}

impl Entry {
    pub fn timestamp(&self) -> u64 {
        match self {
            Entry::Account(a) => a.timestamp,
            Entry::Transfer(t) => t.timestamp,
            Entry::CreditLimit { timestamp, .. } => *timestamp,
        }
    }
}

/// Undo record of one applied event, for linked chains.
#[derive(Debug, Clone, Copy)]
struct Undo {
    accounts: [(u32, Account); 2],
    transfer: u128,
    kept: bool,
    /// The pending transfer whose state it changed (id, old state), or the pending it created.
    pending: Option<(u128, Option<(Transfer, PendingState)>)>,
    clock: u64,
}

/// What a replay found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index} of the journal does not apply: {error}")]
pub struct ReplayError {
    pub index: usize,
    pub error: TransferError,
}

impl Ledger {
    pub fn new(history: History) -> Ledger {
        Ledger {
            history,
            accounts: Vec::new(),
            index: HashMap::new(),
            transfers: Vec::new(),
            transfer_index: HashMap::new(),
            pending: BTreeMap::new(),
            limits: Vec::new(),
            first_limits: HashMap::new(),
            clock: 0,
            created: Vec::new(),
        }
    }

    /// The ledger as a store left it: accounts with their balances, the pending transfers
    /// still open, and the last timestamp given.
    pub fn restore(history: History, accounts: Vec<Account>, pending: Vec<Transfer>, clock: u64) -> Ledger {
        let mut l = Ledger::new(history);
        for a in accounts {
            l.index.insert(a.id, l.accounts.len() as u32);
            l.accounts.push(a);
        }
        for t in pending {
            l.pending.insert(t.id, (t, PendingState::Pending));
        }
        l.clock = clock;
        l
    }

    pub fn account(&self, id: u128) -> Option<&Account> {
        self.index.get(&id).map(|&i| &self.accounts[i as usize])
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The transfers kept, in the order they were created.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    pub fn transfer(&self, id: u128) -> Option<&Transfer> {
        self.transfer_index.get(&id).map(|&i| &self.transfers[i as usize])
    }

    /// A pending transfer and what became of it (with `History::Drop`, only open ones).
    pub fn pending(&self, id: u128) -> Option<&(Transfer, PendingState)> {
        self.pending.get(&id)
    }

    /// The pending transfers not yet resolved.
    pub fn open_pending(&self) -> impl Iterator<Item = &Transfer> {
        self.pending.values().filter(|(_, s)| *s == PendingState::Pending).map(|(t, _)| t)
    }

    pub fn clock(&self) -> u64 {
        self.clock
    }

    fn tick(&mut self, now: u64) -> u64 {
        self.clock = (self.clock + 1).max(now);
        self.clock
    }

    /// Creates an account (its balances must be zero); the same account again is `Exists`.
    pub fn create_account(&mut self, mut a: Account, now: u64) -> Result<Applied, AccountError> {
        if a.id == 0 || a.id == u128::MAX {
            return Err(AccountError::IdInvalid);
        }
        if let Some(old) = self.account(a.id) {
            let same = old.ledger == a.ledger
                && old.code == a.code
                && old.flags == a.flags
                && old.credit_limit == a.credit_limit;
            return if same { Ok(Applied::Exists) } else { Err(AccountError::ExistsWithDifferentFields) };
        }
        if a.ledger == 0 {
            return Err(AccountError::LedgerMustNotBeZero);
        }
        if a.code == 0 {
            return Err(AccountError::CodeMustNotBeZero);
        }
        if a.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && a.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return Err(AccountError::FlagsAreMutuallyExclusive);
        }
        if a.debits_pending != 0 || a.debits_posted != 0 || a.credits_pending != 0 || a.credits_posted != 0 {
            return Err(AccountError::BalancesMustBeZero);
        }
        a.timestamp = self.tick(now);
        self.index.insert(a.id, self.accounts.len() as u32);
        self.accounts.push(a);
        Ok(Applied::Created)
    }

    /// Sets an account's credit limit (an operator's decision, not a transfer): refused when
    /// the account's debits already exceed what the new limit allows.
    pub fn set_credit_limit(&mut self, id: u128, limit: u64, now: u64) -> Result<u64, TransferError> {
        let &i = self.index.get(&id).ok_or(TransferError::DebitAccountNotFound)?;
        let a = self.accounts[i as usize];
        if a.debits_pending + a.debits_posted > a.credits_posted + u128::from(limit) {
            return Err(TransferError::ExceedsCredits);
        }
        let ts = self.tick(now);
        self.accounts[i as usize].credit_limit = limit;
        if self.history == History::Keep {
            if !self.limits.iter().any(|l| l.0 == id) {
                self.first_limits.insert(id, a.credit_limit);
            }
            self.limits.push((id, limit, ts));
        }
        Ok(ts)
    }

    /// Creates a batch of transfers, in order, each with its own result; linked chains apply
    /// all-or-none. `now` is the caller's clock (timestamps never go backwards).
    pub fn create_transfers(&mut self, batch: &[Transfer], now: u64) -> Vec<Result<Applied, TransferError>> {
        let mut results = Vec::with_capacity(batch.len());
        self.created.clear();
        let mut chain_start: Option<usize> = None;
        let mut undo: Vec<Undo> = Vec::new();
        let mut chain_failed = false;
        for (i, t) in batch.iter().enumerate() {
            let linked = t.flags.contains(TransferFlags::LINKED);
            if linked && chain_start.is_none() {
                chain_start = Some(i);
                chain_failed = false;
                undo.clear();
            }
            let in_chain = chain_start.is_some();
            let r = if chain_failed {
                Err(TransferError::LinkedEventFailed)
            } else if linked && i + 1 == batch.len() {
                Err(TransferError::LinkedEventChainOpen)
            } else {
                self.apply(t, now, in_chain.then_some(&mut undo))
            };
            if r.is_err() && in_chain && !chain_failed {
                chain_failed = true;
                // undo what the chain applied, newest first
                while let Some(u) = undo.pop() {
                    self.rollback(&u);
                }
                for prior in &mut results[chain_start.unwrap_or(i)..i] {
                    *prior = Err(TransferError::LinkedEventFailed);
                }
            }
            results.push(r);
            if !linked {
                chain_start = None;
                undo.clear();
                chain_failed = false;
            }
        }
        results
    }

    /// The transfers the last [`Ledger::create_transfers`] created, in order, as stored: with
    /// their timestamps, a post's or void's accounts, a balancing debit's actual amount.
    pub fn created(&self) -> &[Transfer] {
        &self.created
    }

    fn rollback(&mut self, u: &Undo) {
        self.created.pop();
        for &(i, a) in u.accounts.iter().rev() {
            if i != u32::MAX {
                self.accounts[i as usize] = a;
            }
        }
        if u.kept {
            self.transfers.pop();
            self.transfer_index.remove(&u.transfer);
        }
        if let Some((id, old)) = u.pending {
            match old {
                Some(s) => {
                    self.pending.insert(id, s);
                }
                None => {
                    self.pending.remove(&id);
                }
            }
        }
        self.clock = u.clock;
    }

    /// Applies one event; with `undo`, records how to take it back.
    fn apply(&mut self, t: &Transfer, now: u64, undo: Option<&mut Vec<Undo>>) -> Result<Applied, TransferError> {
        if t.id == 0 || t.id == u128::MAX {
            return Err(TransferError::IdInvalid);
        }
        if let Some(stored) = self.transfer(t.id) {
            return if t.same_request(stored) {
                Ok(Applied::Exists)
            } else {
                Err(TransferError::ExistsWithDifferentFields)
            };
        }
        let flags = t.flags;
        let post = flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        let pending = flags.contains(TransferFlags::PENDING);
        let balancing = flags.contains(TransferFlags::BALANCING_DEBIT);
        if u8::from(post) + u8::from(void) + u8::from(pending) > 1 || (balancing && (post || void)) {
            return Err(TransferError::FlagsAreMutuallyExclusive);
        }
        if post || void {
            return self.resolve(t, now, post, undo);
        }
        if t.pending_id != 0 {
            return Err(TransferError::PendingIdMustBeZero);
        }
        if t.debit_account_id == t.credit_account_id {
            return Err(TransferError::AccountsMustBeDifferent);
        }
        let &di = self.index.get(&t.debit_account_id).ok_or(TransferError::DebitAccountNotFound)?;
        let &ci = self.index.get(&t.credit_account_id).ok_or(TransferError::CreditAccountNotFound)?;
        let (d, c) = (self.accounts[di as usize], self.accounts[ci as usize]);
        if d.ledger != c.ledger {
            return Err(TransferError::AccountsMustHaveTheSameLedger);
        }
        if t.ledger != d.ledger {
            return Err(TransferError::TransferMustHaveTheSameLedgerAsAccounts);
        }
        let mut amount = t.amount;
        if balancing {
            if let Some(avail) = d.available() {
                amount = amount.min(u64::try_from(avail).unwrap_or(u64::MAX));
            }
        } else if amount == 0 {
            return Err(TransferError::AmountMustNotBeZero);
        }
        let wide = u128::from(amount);
        let mut nd = d;
        let mut nc = c;
        if pending {
            nd.debits_pending = d.debits_pending.checked_add(wide).ok_or(TransferError::Overflow)?;
            nc.credits_pending = c.credits_pending.checked_add(wide).ok_or(TransferError::Overflow)?;
        } else {
            nd.debits_posted = d.debits_posted.checked_add(wide).ok_or(TransferError::Overflow)?;
            nc.credits_posted = c.credits_posted.checked_add(wide).ok_or(TransferError::Overflow)?;
        }
        check(&nd, &nc)?;
        let clock = self.clock;
        let ts = self.tick(now);
        let stored = Transfer { amount, timestamp: ts, ..*t };
        self.accounts[di as usize] = nd;
        self.accounts[ci as usize] = nc;
        let kept = self.keep(stored);
        self.created.push(stored);
        if pending {
            self.pending.insert(t.id, (stored, PendingState::Pending));
        }
        if let Some(u) = undo {
            u.push(Undo {
                accounts: [(di, d), (ci, c)],
                transfer: t.id,
                kept,
                pending: pending.then_some((t.id, None)),
                clock,
            });
        }
        Ok(Applied::Created)
    }

    fn keep(&mut self, t: Transfer) -> bool {
        if self.history == History::Keep {
            self.transfer_index.insert(t.id, self.transfers.len() as u32);
            self.transfers.push(t);
            true
        } else {
            false
        }
    }

    /// Posts or voids a pending transfer.
    fn resolve(
        &mut self,
        t: &Transfer,
        now: u64,
        post: bool,
        undo: Option<&mut Vec<Undo>>,
    ) -> Result<Applied, TransferError> {
        if t.pending_id == 0 {
            return Err(TransferError::PendingIdMustNotBeZero);
        }
        if t.pending_id == t.id {
            return Err(TransferError::PendingIdMustBeDifferent);
        }
        let Some(&(ph, state)) = self.pending.get(&t.pending_id) else {
            return Err(if self.transfer(t.pending_id).is_some() {
                TransferError::PendingTransferNotPending
            } else {
                TransferError::PendingTransferNotFound
            });
        };
        match state {
            PendingState::Posted => return Err(TransferError::PendingTransferAlreadyPosted),
            PendingState::Voided => return Err(TransferError::PendingTransferAlreadyVoided),
            PendingState::Pending => {}
        }
        if (t.debit_account_id != 0 && t.debit_account_id != ph.debit_account_id)
            || (t.credit_account_id != 0 && t.credit_account_id != ph.credit_account_id)
        {
            return Err(TransferError::PendingTransferHasDifferentAccounts);
        }
        if t.ledger != 0 && t.ledger != ph.ledger {
            return Err(TransferError::TransferMustHaveTheSameLedgerAsAccounts);
        }
        if post && t.amount > ph.amount {
            return Err(TransferError::ExceedsPendingTransferAmount);
        }
        if !post && t.amount != 0 && t.amount != ph.amount {
            return Err(TransferError::PendingTransferHasDifferentAmount);
        }
        let &di = self.index.get(&ph.debit_account_id).ok_or(TransferError::DebitAccountNotFound)?;
        let &ci = self.index.get(&ph.credit_account_id).ok_or(TransferError::CreditAccountNotFound)?;
        let (d, c) = (self.accounts[di as usize], self.accounts[ci as usize]);
        let held = u128::from(ph.amount);
        let amount = if post { t.amount } else { 0 };
        let mut nd = d;
        let mut nc = c;
        // a pending amount is always within the pending sums it was added to
        nd.debits_pending = d.debits_pending.saturating_sub(held);
        nc.credits_pending = c.credits_pending.saturating_sub(held);
        nd.debits_posted = nd.debits_posted.checked_add(u128::from(amount)).ok_or(TransferError::Overflow)?;
        nc.credits_posted = nc.credits_posted.checked_add(u128::from(amount)).ok_or(TransferError::Overflow)?;
        let clock = self.clock;
        let ts = self.tick(now);
        let stored = Transfer {
            debit_account_id: ph.debit_account_id,
            credit_account_id: ph.credit_account_id,
            ledger: ph.ledger,
            amount,
            timestamp: ts,
            ..*t
        };
        self.accounts[di as usize] = nd;
        self.accounts[ci as usize] = nc;
        let kept = self.keep(stored);
        self.created.push(stored);
        let old = self.pending.get(&t.pending_id).copied();
        if self.history == History::Keep {
            let s = if post { PendingState::Posted } else { PendingState::Voided };
            self.pending.insert(t.pending_id, (ph, s));
        } else {
            self.pending.remove(&t.pending_id);
        }
        if let Some(u) = undo {
            u.push(Undo {
                accounts: [(di, d), (ci, c)],
                transfer: t.id,
                kept,
                pending: Some((t.pending_id, old)),
                clock,
            });
        }
        Ok(Applied::Created)
    }

    /// Everything the ledger kept, in timestamp order (with `History::Keep`): what a log of
    /// it holds, and what [`Ledger::replay`] takes.
    pub fn journal(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .accounts
            .iter()
            .map(|a| {
                Entry::Account(Account {
                    debits_pending: 0,
                    debits_posted: 0,
                    credits_pending: 0,
                    credits_posted: 0,
                    credit_limit: self.first_limits.get(&a.id).copied().unwrap_or(a.credit_limit),
                    ..*a
                })
            })
            .chain(self.transfers.iter().map(|t| Entry::Transfer(*t)))
            .chain(self.limits.iter().map(|&(id, limit, timestamp)| Entry::CreditLimit { id, limit, timestamp }))
            .collect();
        out.sort_by_key(Entry::timestamp);
        out
    }

    /// Applies a journal (accounts, transfers and credit limits as they were recorded, with
    /// their timestamps) to this ledger: every entry must apply, in order, at its own time.
    pub fn replay(&mut self, log: &[Entry]) -> Result<(), ReplayError> {
        for (index, e) in log.iter().enumerate() {
            let ts = e.timestamp();
            if ts <= self.clock {
                return Err(ReplayError { index, error: TransferError::TimestampMustNotRegress });
            }
            self.clock = ts - 1;
            let r = match e {
                Entry::Account(a) => self
                    .create_account(Account { timestamp: 0, ..*a }, ts)
                    .map(|_| ())
                    .map_err(|_| TransferError::ExistsWithDifferentFields),
                Entry::Transfer(t) => {
                    match self.apply(&Transfer { flags: t.flags.without(TransferFlags::LINKED), ..*t }, ts, None) {
                        Ok(Applied::Created) => {
                            // the linked flag is part of the stored record
                            if let Some(&i) = self.transfer_index.get(&t.id) {
                                self.transfers[i as usize].flags = t.flags;
                            }
                            Ok(())
                        }
                        Ok(Applied::Exists) => Err(TransferError::ExistsWithDifferentFields),
                        Err(e) => Err(e),
                    }
                }
                Entry::CreditLimit { id, limit, .. } => self.set_credit_limit(*id, *limit, ts).map(|_| ()),
            };
            r.map_err(|error| ReplayError { index, error })?;
        }
        Ok(())
    }

    /// A canonical byte encoding of the whole ledger (accounts, transfers, pending states,
    /// clock): two ledgers are the same iff their bytes are.
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct View<'a> {
            accounts: &'a [Account],
            transfers: &'a [Transfer],
            pending: Vec<(String, PendingState)>,
            clock: u64,
        }
        let pending = self.pending.iter().map(|(id, (_, s))| (format!("{id:032x}"), *s)).collect();
        serde_json::to_vec(&View { accounts: &self.accounts, transfers: &self.transfers, pending, clock: self.clock })
            .unwrap_or_default()
    }

    /// Σ debits and Σ credits over all accounts, pending and posted: (debits_pending,
    /// credits_pending, debits_posted, credits_posted). Double entry means the pairs are equal.
    pub fn totals(&self) -> (u128, u128, u128, u128) {
        self.accounts.iter().fold((0, 0, 0, 0), |(dp, cp, dq, cq), a| {
            (dp + a.debits_pending, cp + a.credits_pending, dq + a.debits_posted, cq + a.credits_posted)
        })
    }
}

/// The balance constraints of the two accounts after a change.
fn check(d: &Account, c: &Account) -> Result<(), TransferError> {
    for a in [d, c] {
        if a.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && a.debits_pending + a.debits_posted > a.credits_posted + u128::from(a.credit_limit)
        {
            return Err(TransferError::ExceedsCredits);
        }
        if a.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && a.credits_pending + a.credits_posted > a.debits_posted
        {
            return Err(TransferError::ExceedsDebits);
        }
    }
    Ok(())
}

/// u128 ids as 32 hex digits in JSON (JavaScript numbers cannot hold them).
pub mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        u128::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: u128 = 1;
    const BANK: u128 = 2;
    const SHOP: u128 = 3;

    fn ledger() -> Ledger {
        let mut l = Ledger::new(History::Keep);
        l.create_account(Account::new(WALLET, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS), 0).expect("wallet");
        l.create_account(Account::new(BANK, 7, AccountFlags::NONE), 0).expect("bank");
        l.create_account(Account::new(SHOP, 2, AccountFlags::NONE), 0).expect("shop");
        l
    }

    #[test]
    fn a_wallet_cannot_go_below_zero_and_retries_apply_once() {
        let mut l = ledger();
        let top = Transfer::new(10, BANK, WALLET, 500, 1);
        assert_eq!(l.create_transfers(&[top, top], 5), vec![Ok(Applied::Created), Ok(Applied::Exists)]);
        assert_eq!(l.account(WALLET).map(Account::balance), Some(500));
        let over = Transfer::new(11, WALLET, SHOP, 501, 6);
        assert_eq!(l.create_transfers(&[over], 6), vec![Err(TransferError::ExceedsCredits)]);
        let changed = Transfer::new(10, BANK, WALLET, 600, 1);
        assert_eq!(l.create_transfers(&[changed], 7), vec![Err(TransferError::ExistsWithDifferentFields)]);
        l.set_credit_limit(WALLET, 1, 8).expect("limit");
        assert_eq!(l.create_transfers(&[over], 8), vec![Ok(Applied::Created)]);
        assert_eq!(l.account(WALLET).map(Account::balance), Some(-1));
    }

    #[test]
    fn linked_chains_apply_all_or_none() {
        let mut l = ledger();
        let chain = [
            Transfer::new(20, BANK, WALLET, 100, 1).flags(TransferFlags::LINKED),
            Transfer::new(21, WALLET, SHOP, 150, 6),
        ];
        let r = l.create_transfers(&chain, 1);
        assert_eq!(r, vec![Err(TransferError::LinkedEventFailed), Err(TransferError::ExceedsCredits)]);
        assert_eq!(l.account(WALLET).map(Account::balance), Some(0));
        assert!(l.transfers().is_empty());
        let open = [Transfer::new(22, BANK, WALLET, 1, 1).flags(TransferFlags::LINKED)];
        assert_eq!(l.create_transfers(&open, 2), vec![Err(TransferError::LinkedEventChainOpen)]);
        assert_eq!(l.totals(), (0, 0, 0, 0));
    }

    #[test]
    fn holds_post_part_and_release_the_rest_once() {
        let mut l = ledger();
        l.create_transfers(&[Transfer::new(1, BANK, WALLET, 1_000, 1)], 1);
        let hold = Transfer::new(2, WALLET, SHOP, 800, 2).flags(TransferFlags::PENDING);
        assert_eq!(l.create_transfers(&[hold], 2), vec![Ok(Applied::Created)]);
        assert_eq!(l.account(WALLET).and_then(Account::available), Some(200));
        assert_eq!(
            l.create_transfers(&[Transfer::post(3, 2, 900, 3)], 3),
            vec![Err(TransferError::ExceedsPendingTransferAmount)]
        );
        assert_eq!(l.create_transfers(&[Transfer::post(3, 2, 300, 3)], 3), vec![Ok(Applied::Created)]);
        assert_eq!(l.account(WALLET).and_then(Account::available), Some(700));
        assert_eq!(
            l.create_transfers(&[Transfer::void(4, 2, 4)], 4),
            vec![Err(TransferError::PendingTransferAlreadyPosted)]
        );
        let balancing = Transfer::new(5, WALLET, SHOP, 5_000, 5).flags(TransferFlags::BALANCING_DEBIT);
        assert_eq!(l.create_transfers(&[balancing], 5), vec![Ok(Applied::Created)]);
        assert_eq!(l.transfer(5).map(|t| t.amount), Some(700), "cut to what the wallet holds");
        let (dp, cp, dq, cq) = l.totals();
        assert_eq!((dp, dq), (cp, cq));
    }
}
