//! The dataset registry on the wire (R6): unified identifiers (`prefix/suffix`, see
//! `suanwang_core::dataid`), records resolvable to type/value pairs, replicas, lineage.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::Classification;

/// `POST /v1/datasets`: register a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Who owns it (operator only; default: the caller, a tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$"))]
    pub owner: Option<String>,
    /// GB, more than 0, at most 100 PB.
    #[schemars(range(min = 0.000_001, max = 100_000_000.0))]
    pub size_gb: f64,
    /// SHA-256 of the content, 64 hex digits.
    #[schemars(length(min = 64, max = 64), pattern(r"^[0-9a-fA-F]{64}$"))]
    pub sha256: String,
    /// `public`, `internal`, or `restricted` (may not leave the region of its first replica).
    pub classification: Classification,
    /// An SPDX licence id or a free text of at most 128 bytes.
    #[schemars(length(min = 1, max = 128))]
    pub licence: String,
    /// Where its first replica is: a city or site id.
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$"))]
    pub location: String,
}

/// A copy of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Replica {
    /// A city or site id.
    pub site: String,
    /// Since when (epoch ms UTC).
    pub since_ms: i64,
    /// Whether the copy's SHA-256 was found to be the dataset's (by whoever reported it).
    pub sha256_verified: bool,
    /// `registration`, `transfer` (a job's data moved there) or `report` (a replica reported).
    pub by: String,
    /// The job whose transfer made it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
}

/// One type/value pair of a record (as a Handle record's values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TypedValue {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// A dataset's record: `GET /v1/datasets/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetRecord {
    /// `prefix/suffix`.
    pub id: String,
    pub name: String,
    pub owner: String,
    pub size_gb: f64,
    pub sha256: String,
    pub classification: Classification,
    /// The region a restricted dataset may not leave.
    pub region: Option<String>,
    pub licence: String,
    pub replicas: Vec<Replica>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The record as type/value pairs (`URL`, `OWNER`, `SHA256`, `SIZE_GB`, `CLASSIFICATION`,
    /// `REGION`, `LICENCE`, `REPLICA`…), as a Handle resolves.
    pub values: Vec<TypedValue>,
}

/// `GET /v1/datasets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetRecord>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// `POST /v1/datasets/{id}/replicas`: a copy reported, with the SHA-256 found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaRequest {
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z][a-z0-9_-]*$"))]
    pub site: String,
    #[schemars(length(min = 64, max = 64), pattern(r"^[0-9a-fA-F]{64}$"))]
    pub sha256: String,
}
