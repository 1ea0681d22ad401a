//! Suanwang's economy (R4, R5, R7): the price book, bills in integer fen, a double-entry ledger
//! with TigerBeetle's semantics, the revenue split and vouchers (算力券, 运力券). Pure: no IO,
//! no clock — the control plane gives the time and makes the ledger durable in its store.
//!
//! The chart of accounts ([`AccountKind`]) and the transfer kinds ([`TransferKind`]) are the
//! contract with the store, the API and the statements; their codes never change meaning.

pub mod book;
pub mod carbon;
pub mod ledger;
pub mod market;
pub mod settle;
pub mod voucher;

pub use book::{Bill, FieldError, LineItem, Payee, PriceBook, Split, Usage};
pub use ledger::{
    Account, AccountError, AccountFlags, Applied, CNY, CO2E_G, Entry, History, Ledger, PendingState, Transfer,
    TransferError, TransferFlags,
};
pub use settle::{Leg, Settlement, settlement};
pub use voucher::{JobFacts, Programme, VoucherKind};

use serde::{Deserialize, Serialize};

/// What an account is (its `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A tenant's wallet: may not go below zero, or below its credit limit.
    Wallet = 1,
    /// What a compute provider is owed.
    Provider = 2,
    /// What a carrier (or the data-express operator) is owed.
    Carrier = 3,
    /// The platform's fee revenue (it also bears what a tenant could not pay).
    Platform = 4,
    /// A voucher funder (a city's or province's budget): public money enters here.
    Funder = 5,
    /// A programme's unallocated budget: may not go below zero.
    Programme = 6,
    /// One tenant's voucher under one programme: may not go below zero; non-transferable.
    Grant = 7,
    /// Where a job's money meets before it is split: nets to zero per settled job.
    Clearing = 8,
    /// Money from outside (top-ups by bank transfer): the only account that goes negative by
    /// design, by exactly what was paid in.
    Bank = 9,
    /// Carbon ledger (g CO2e): where verified carbon-sink credits come from — goes negative by
    /// exactly what was issued.
    CarbonIssuer = 10,
    /// Carbon ledger: a lot of credits its holder may sell; may not go below zero.
    CarbonLot = 11,
    /// Carbon ledger: credits retired against jobs' emissions, never to be used again.
    CarbonRetired = 12,
}

impl AccountKind {
    pub const ALL: [AccountKind; 12] = [
        AccountKind::Wallet,
        AccountKind::Provider,
        AccountKind::Carrier,
        AccountKind::Platform,
        AccountKind::Funder,
        AccountKind::Programme,
        AccountKind::Grant,
        AccountKind::Clearing,
        AccountKind::Bank,
        AccountKind::CarbonIssuer,
        AccountKind::CarbonLot,
        AccountKind::CarbonRetired,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::Provider => "provider",
            AccountKind::Carrier => "carrier",
            AccountKind::Platform => "platform",
            AccountKind::Funder => "funder",
            AccountKind::Programme => "programme",
            AccountKind::Grant => "grant",
            AccountKind::Clearing => "clearing",
            AccountKind::Bank => "bank",
            AccountKind::CarbonIssuer => "carbon_issuer",
            AccountKind::CarbonLot => "carbon_lot",
            AccountKind::CarbonRetired => "carbon_retired",
        }
    }

    /// The ledger (unit) of the kind's accounts: CNY fen, or grams of CO2e.
    pub fn ledger(self) -> u32 {
        match self {
            AccountKind::CarbonIssuer | AccountKind::CarbonLot | AccountKind::CarbonRetired => CO2E_G,
            _ => CNY,
        }
    }

    /// The balance constraint each kind carries.
    pub fn flags(self) -> AccountFlags {
        match self {
            AccountKind::Wallet
            | AccountKind::Programme
            | AccountKind::Grant
            | AccountKind::Clearing
            | AccountKind::CarbonLot => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            _ => AccountFlags::NONE,
        }
    }
}

/// What a transfer is (its `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// bank → wallet (or → funder): money paid in.
    Topup = 1,
    /// wallet → clearing, pending: the estimated price held at admission.
    Hold = 2,
    /// Posts the hold with what the tenant owes of the metered bill.
    Post = 3,
    /// Voids the hold (refused, or cancelled before running).
    Void = 4,
    /// wallet → clearing: what the bill exceeded the hold by.
    Charge = 5,
    /// platform → clearing: what the tenant could not pay (the platform bears it).
    WriteOff = 6,
    /// grant → clearing: what a voucher paid.
    Voucher = 7,
    /// clearing → provider.
    ProviderShare = 8,
    /// clearing → carrier.
    CarrierShare = 9,
    /// clearing → platform.
    PlatformFee = 10,
    /// funder → programme: a programme's budget.
    ProgrammeBudget = 11,
    /// programme → grant: vouchers granted to a tenant.
    Grant = 12,
    /// grant → programme: what a grant had left when the programme closed.
    Expiry = 13,
    /// programme → funder: what the programme had left when it closed.
    Return = 14,
    /// wallet → clearing, pending: a market bid's most it can cost (units × maximum × hours).
    MarketHold = 15,
    /// Posts a bid's hold with what its fills cost at the clearing price.
    MarketPost = 16,
    /// Voids a bid's hold (cancelled, or nothing filled).
    MarketVoid = 17,
    /// clearing → provider: a contract's payment to its seller, less the platform's fee.
    MarketPayment = 18,
    /// clearing → platform: the platform's fee on a contract.
    MarketFee = 19,
    /// Carbon ledger: issuer → lot, a lot of verified credits entering the ledger.
    CarbonIssue = 20,
    /// Carbon ledger: lot → retired, credits retired against a job's emissions.
    CarbonRetire = 21,
    /// wallet → provider: what a tenant paid the holder for the credits it retired.
    CarbonPurchase = 22,
    /// wallet → clearing: capacity bought at the reserved price for a window (包年包月), paid at
    /// once (then `MarketPayment` to the seller and `MarketFee`).
    ReservedPurchase = 23,
}

impl TransferKind {
    pub const ALL: [TransferKind; 23] = [
        TransferKind::Topup,
        TransferKind::Hold,
        TransferKind::Post,
        TransferKind::Void,
        TransferKind::Charge,
        TransferKind::WriteOff,
        TransferKind::Voucher,
        TransferKind::ProviderShare,
        TransferKind::CarrierShare,
        TransferKind::PlatformFee,
        TransferKind::ProgrammeBudget,
        TransferKind::Grant,
        TransferKind::Expiry,
        TransferKind::Return,
        TransferKind::MarketHold,
        TransferKind::MarketPost,
        TransferKind::MarketVoid,
        TransferKind::MarketPayment,
        TransferKind::MarketFee,
        TransferKind::CarbonIssue,
        TransferKind::CarbonRetire,
        TransferKind::CarbonPurchase,
        TransferKind::ReservedPurchase,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<TransferKind> {
        TransferKind::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Topup => "topup",
            TransferKind::Hold => "hold",
            TransferKind::Post => "post",
            TransferKind::Void => "void",
            TransferKind::Charge => "charge",
            TransferKind::WriteOff => "write_off",
            TransferKind::Voucher => "voucher",
            TransferKind::ProviderShare => "provider_share",
            TransferKind::CarrierShare => "carrier_share",
            TransferKind::PlatformFee => "platform_fee",
            TransferKind::ProgrammeBudget => "programme_budget",
            TransferKind::Grant => "grant",
            TransferKind::Expiry => "expiry",
            TransferKind::Return => "return",
            TransferKind::MarketHold => "market_hold",
            TransferKind::MarketPost => "market_post",
            TransferKind::MarketVoid => "market_void",
            TransferKind::MarketPayment => "market_payment",
            TransferKind::MarketFee => "market_fee",
            TransferKind::CarbonIssue => "carbon_issue",
            TransferKind::CarbonRetire => "carbon_retire",
            TransferKind::CarbonPurchase => "carbon_purchase",
            TransferKind::ReservedPurchase => "reserved_purchase",
        }
    }
}

/// The id of a transfer the control plane makes itself: the top bit set (clients' ids must
/// leave it clear, so they can never collide), then the kind, the subject (a job id, a
/// programme's or grant's number) and a leg number.
pub fn system_id(kind: TransferKind, subject: u64, leg: u16) -> u128 {
    (1u128 << 127) | (u128::from(kind.code()) << 96) | (u128::from(subject) << 16) | u128::from(leg)
}

/// Whether a client may choose `id` for a transfer: not 0, and the top bit clear.
pub fn client_id_ok(id: u128) -> bool {
    id != 0 && id >> 127 == 0
}
