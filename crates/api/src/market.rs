//! The market on the wire (issue 16, R4): orders, contracts and clearing prices. Money is
//! integer fen; prices are fen per unit·hour; times are epoch milliseconds, UTC; a product is
//! `family/model/place/YYYY-MM-DDTHHZ/Nh` (e.g. `intelligent/h800/gansu/2026-12-07T00Z/24h`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderSide {
    /// A provider offers capacity at a floor price.
    Ask,
    /// A tenant bids for capacity up to a maximum price.
    Bid,
}

/// `POST /v1/market/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub side: OrderSide,
    /// `family/model/place/YYYY-MM-DDTHHZ/Nh`: family `general`, `intelligent` or `super` (HPC); model a
    /// device model of the catalogue or `any`; place a site, cluster, hub or green region; a window of
    /// whole UTC hours that has not begun before this hour.
    #[schemars(length(min = 1, max = 256))]
    pub product: String,
    /// Units (cores or cards), 1 to 1,000,000.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub units: u64,
    /// An ask's floor or a bid's maximum, fen per unit·hour, 1 to 10,000,000.
    #[schemars(range(min = 1, max = 10_000_000))]
    pub price_fen: u64,
    /// Whose order (the operator on a party's behalf); default: the caller.
    #[serde(default)]
    pub owner: Option<String>,
}

/// `POST /v1/contracts`: buy capacity at the reserved price for a whole window (包年包月), without
/// an auction: on-demand × (1 − the reserved discount) × units × hours, paid at once from the
/// wallet; the contract reserves its units in the scheduler like one won at auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// `family/model/place/YYYY-MM-DDTHHZ/Nh`, as an order's; the window at least the price book's
    /// `reserved.min_hours` (720 h) long.
    #[schemars(length(min = 1, max = 256))]
    pub product: String,
    /// Units (cores or cards), 1 to 1,000,000.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub units: u64,
    /// The provider to buy from; default: the only one with the product's capacity at its place.
    #[serde(default)]
    #[schemars(length(min = 1, max = 64))]
    pub seller: Option<String>,
    /// The tenant it is for (the operator on a tenant's behalf); default: the caller.
    #[serde(default)]
    #[schemars(length(min = 1, max = 64))]
    pub tenant: Option<String>,
}

/// An order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// In the book, waiting for the next clearing (partly filled ones too).
    Open,
    Filled,
    Cancelled,
    /// Its window began with units unfilled: they left the book, a bid's hold was released.
    Expired,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderView {
    pub id: u64,
    pub side: OrderSide,
    pub owner: String,
    pub product: String,
    pub units: u64,
    pub filled_units: u64,
    pub price_fen: u64,
    pub state: OrderState,
    /// What a bid holds of its wallet now (its unfilled units × price × hours), fen.
    pub held_fen: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// A bid a job became (`max_price`): the job's spec, submitted on the contract the bid wins
    /// as the contract's window begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<serde_json::Value>,
    /// The job the bid's spec became, once submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    /// Why the bid's job was not (or not yet) submitted, e.g. the bid expired unfilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_reason: Option<String>,
}

/// `GET /v1/market/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
    /// Pass as `after` for the next page.
    pub next: Option<u64>,
}

/// A contract: units of a product a clearing sold from one ask to one bid at its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContractView {
    pub id: u64,
    pub product: String,
    pub buyer: String,
    pub seller: String,
    pub units: u64,
    /// The clearing price, fen per unit·hour.
    pub price_fen: u64,
    /// units × price × hours: what the buyer paid.
    pub amount_fen: u64,
    /// The platform's fee, out of the amount; the seller got the rest.
    pub fee_fen: u64,
    pub bid: u64,
    pub ask: u64,
    pub cleared_at_ms: i64,
    /// The window, ms.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// `GET /v1/contracts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContractList {
    pub contracts: Vec<ContractView>,
    pub next: Option<u64>,
}

/// A product's clearing price at one clearing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PriceView {
    pub product: String,
    pub price_fen: u64,
    pub units: u64,
    pub cleared_at_ms: i64,
}

/// `GET /v1/market/prices`: the latest price of each product traded (or one product's history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PriceList {
    pub prices: Vec<PriceView>,
}

/// `POST /v1/market/clear` (operator): one clearing now, besides the periodic ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClearingAnswer {
    /// Products with orders in the book.
    pub products: u64,
    /// Products that traded.
    pub traded: u64,
    pub contracts: u64,
    pub units: u64,
    /// Orders whose window began: out of the book.
    pub expired: u64,
    pub cleared_at_ms: i64,
}

/// `POST /v1/carbon/offsets`: offset an ended job's market-based carbon with carbon-sink
/// credits (R5): money to the credits' holder, the credits retired against the job, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetRequest {
    #[schemars(range(min = 1))]
    pub job: u64,
    /// A lot of `GET /v1/carbon/credits`; default: the first with enough left.
    #[serde(default)]
    pub lot: Option<String>,
}

/// A job's carbon retired against a lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OffsetView {
    pub job: u64,
    pub tenant: String,
    pub lot: String,
    pub holder: String,
    pub issuer: String,
    pub vintage: u16,
    /// Grams of CO2e retired: the job's market-based carbon, rounded half up.
    pub grams: u64,
    /// What the tenant paid the holder, fen (rounded up).
    pub price_fen: u64,
    pub at_ms: i64,
}

/// A lot of carbon-sink credits and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LotView {
    pub id: String,
    pub holder: String,
    pub place: String,
    pub issuer: String,
    pub vintage: u16,
    pub tonnes: u64,
    pub price_fen_per_tonne: u64,
    pub remaining_grams: u64,
    pub retired_grams: u64,
    pub source: String,
}

/// `GET /v1/carbon/credits`: the lots (public), and the offsets the caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreditsAnswer {
    pub lots: Vec<LotView>,
    pub offsets: Vec<OffsetView>,
}

/// `POST /v1/quotas` (operator): the most units of a family a tenant may hold at once, in one
/// region (a hub or green region) or everywhere (R3: no tenant takes the network by volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    #[schemars(length(min = 1, max = 64))]
    pub tenant: String,
    /// `general`, `intelligent` or `super`.
    pub family: String,
    /// A hub or green region id; absent: everywhere.
    #[serde(default)]
    pub region: Option<String>,
    /// Units (cores, cards or nodes) of live jobs at once; 0 forbids the family (there).
    #[schemars(range(max = 1_000_000_000))]
    pub max_units: u64,
}

/// A quota and what the tenant's live jobs hold of it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaView {
    pub tenant: String,
    pub family: String,
    pub region: Option<String>,
    pub max_units: u64,
    pub used_units: u64,
}

/// `GET /v1/quotas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaList {
    pub quotas: Vec<QuotaView>,
}
