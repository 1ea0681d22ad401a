//! Money on the wire (R4): balances, top-ups, bills, statements and vouchers. Amounts are
//! integer fen (1/100 CNY); ledger ids are 32 hex digits; times are epoch milliseconds, UTC.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One ledger account: TigerBeetle's four balance fields, and what they mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountView {
    pub id: String,
    /// `wallet`, `provider`, `carrier`, `platform`, `funder`, `programme`, `grant`, `clearing`,
    /// `bank`.
    pub kind: String,
    pub name: String,
    /// Posted credits − posted debits.
    pub balance_fen: i64,
    pub debits_pending_fen: i64,
    pub debits_posted_fen: i64,
    pub credits_pending_fen: i64,
    pub credits_posted_fen: i64,
    /// How far debits may exceed credits (wallets).
    pub credit_limit_fen: i64,
    /// What a debit could still take now (accounts with a balance constraint).
    pub available_fen: Option<i64>,
}

/// `GET /v1/balance`: a party's accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BalanceAnswer {
    pub party: String,
    pub accounts: Vec<AccountView>,
}

/// `POST /v1/topups`: money paid in (operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopupRequest {
    /// The tenant (or funder) paid in for.
    pub party: String,
    /// `wallet` (a tenant, the default) or `funder` (a voucher funder's budget).
    #[serde(default)]
    pub to: Option<String>,
    /// Fen, positive.
    pub amount_fen: i64,
    /// The client's id for this transfer (32 hex digits, top bit clear): the same id again is
    /// applied once. Chosen by the server when absent.
    #[serde(default)]
    pub transfer_id: Option<String>,
}

/// What a top-up, grant or credit-limit change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MoneyAnswer {
    pub transfer_id: Option<String>,
    /// False when this was a retry of a transfer already applied.
    pub created: bool,
    /// The balance it left (the wallet's, the funder's, or the grant's), fen.
    pub balance_fen: i64,
}

/// `POST /v1/credit-limits`: a tenant's credit line (operator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditLimitRequest {
    pub tenant: String,
    pub credit_limit_fen: i64,
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BillLine {
    /// `compute`, `energy`, `transfer`, `platform_fee`, `voucher`.
    pub kind: String,
    pub description: String,
    pub quantity: f64,
    pub unit: String,
    pub amount_fen: i64,
}

/// One transfer of the ledger, as statements and bills show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransferView {
    pub id: String,
    /// `topup`, `hold`, `post`, `void`, `charge`, `write_off`, `voucher`, `provider_share`,
    /// `carrier_share`, `platform_fee`, `programme_budget`, `grant`, `expiry`, `return`.
    pub kind: String,
    pub debit: String,
    pub credit: String,
    /// The accounts as `kind:name` (`wallet:acme-ai`, `provider:idc-gansu`).
    pub debit_name: String,
    pub credit_name: String,
    pub amount_fen: i64,
    /// Held, not yet posted.
    pub pending: bool,
    /// The job it belongs to (0: none).
    pub job: u64,
    pub at_ms: i64,
}

/// `GET /v1/jobs/{id}/bill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BillAnswer {
    pub job: u64,
    pub tenant: String,
    /// `estimate` (not ended: what is held), `settled` or `void`.
    pub status: String,
    pub price_book: String,
    pub lines: Vec<BillLine>,
    pub subtotal_fen: i64,
    pub platform_fee_fen: i64,
    pub total_fen: i64,
    pub voucher_fen: i64,
    /// What the tenant pays (total − vouchers).
    pub tenant_fen: i64,
    /// Held in the wallet now (before the job ends).
    pub held_fen: i64,
    /// Who received what (`provider_share`, `carrier_share`, `platform_fee`), from the ledger.
    pub split: Vec<TransferView>,
    /// Every ledger transfer of the job.
    pub transfers: Vec<TransferView>,
}

/// A statement's per-account summary: opening + credits − debits = closing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementAccount {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub opening_fen: i64,
    pub debits_fen: i64,
    pub credits_fen: i64,
    pub closing_fen: i64,
}

/// One line of a statement: a posted transfer touching one of the party's accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementLine {
    pub at_ms: i64,
    pub transfer_id: String,
    pub kind: String,
    pub job: u64,
    /// The party's account it touched, and the other side's kind/name.
    pub account: String,
    pub counterparty: String,
    pub debit_fen: i64,
    pub credit_fen: i64,
}

/// `GET /v1/statements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Statement {
    pub party: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub accounts: Vec<StatementAccount>,
    pub lines: Vec<StatementLine>,
    /// Σ credits − Σ debits over the lines = Σ closing − Σ opening.
    pub net_fen: i64,
}

/// A voucher programme as a funder files it: 算力券 (`compute`) or 运力券 (`transport`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgrammeSpec {
    /// 1–64 lowercase letters, digits or `-`.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The funder it is paid from; a funder filing it may leave it out (it is the funder).
    #[serde(default)]
    pub funder: String,
    /// `compute` or `transport`.
    pub kind: String,
    pub budget_fen: i64,
    /// Share of the eligible cost paid, basis points (1–10,000).
    pub rate_bp: u32,
    /// Most one tenant may be granted per calendar year.
    pub cap_per_beneficiary_fen: i64,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub cities: Vec<String>,
    /// Sites, hubs or regions whose work it pays for.
    #[serde(default)]
    pub places: Vec<String>,
    #[serde(default)]
    pub job_kinds: Vec<String>,
    pub valid_from_ms: i64,
    pub valid_to_ms: i64,
}

/// `POST /v1/vouchers/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub programme: String,
    pub tenant: String,
    pub amount_fen: i64,
}

/// A tenant's voucher under a programme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantView {
    pub programme: String,
    pub tenant: String,
    pub granted_this_year_fen: i64,
    pub left_fen: i64,
}

/// A voucher paid part of a job (evidence: the job, whose meter is at `/v1/jobs/{job}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Redemption {
    pub programme: String,
    pub tenant: String,
    pub job: u64,
    pub amount_fen: i64,
    pub at_ms: i64,
    pub transfer_id: String,
}

/// A programme with what is left of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProgrammeView {
    pub programme: ProgrammeSpec,
    pub closed: bool,
    /// Budget not granted yet.
    pub budget_left_fen: i64,
    pub grants: Vec<GrantView>,
}

/// `GET /v1/vouchers`: the programmes and grants the caller may see, and their redemptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VoucherList {
    pub programmes: Vec<ProgrammeView>,
    pub redemptions: Vec<Redemption>,
}
