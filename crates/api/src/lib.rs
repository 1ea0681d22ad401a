//! Suanwang's wire format (R3, R7): the JSON bodies of the HTTP API under `/v1` and the
//! OpenAPI 3.1 document that describes them.
//!
//! Architecture invariant: the only crate that knows the JSON wire format of the API. Every
//! request and response body is a type here deriving `Serialize`, `Deserialize` and
//! `JsonSchema`; the server converts its engine's state to these types (`suanwang_server::wire`)
//! and the CLI reads them back. This crate depends on serde and schemars only — never on the
//! engine or the scheduler, so a change inside them cannot change the wire by accident.
//! The OpenAPI document (`openapi()`) is generated from these types and the route table.

pub mod agent;
pub mod alerts;
pub mod console;
pub mod dataset;
pub mod evidence;
pub mod job;
pub mod market;
pub mod money;
pub mod network;
mod openapi;
pub mod ops;
pub mod plan;
mod strict;

pub use alerts::{AlertList, AlertState, AlertView, StreamEvent};
pub use dataset::{DatasetList, DatasetRecord, DatasetSpec, Replica, ReplicaRequest, TypedValue};
pub use evidence::{
    CheckpointList, ConsistencyProof, CosignAnswer, CosignRequest, EntryAnswer, EvidenceBundle, EvidenceKey,
    InclusionProof, Opening, ProvedEntry, SignedCheckpoint,
};
pub use job::{JobList, JobLogs, JobSpec, JobState, JobView, Meter, TransferMode, Usage};
pub use money::{
    AccountView, BalanceAnswer, BillAnswer, BillLine, CreditLimitRequest, GrantRequest, GrantView, MoneyAnswer,
    ProgrammeSpec, ProgrammeView, Redemption, Statement, StatementAccount, StatementLine, TopupRequest, TransferView,
    VoucherList,
};
pub use network::{Approval, NetworkDocument, SiteList, SiteStatus};
pub use openapi::{AGENT_SCHEMAS, Body, ROUTES, Route, openapi};
pub use ops::{ApproveAnswer, EnclaveKpi, ErrorBody, Health, KpiTargets, Kpis, RestartAnswer, SuspendAnswer, WhoAmI};
pub use plan::{Placement, PlanAnswer, Refusal};
pub use strict::duplicate_key;

/// The header a control-plane instance puts on an answer it forwarded to the leader: the
/// leader's URL (its `--advertise`). A client given that URL too sends there from then on
/// (issue 17).
pub const LEADER_HEADER: &str = "x-suanwang-leader";

/// The header on an answer a follower gave itself from the database: the instance's name.
pub const SERVED_BY_HEADER: &str = "x-suanwang-served-by";
