//! The evidence log on the wire (R6/R7): checkpoints are C2SP signed notes (text), tiles are
//! bytes in the C2SP tlog-tiles layout under `/v1/evidence/`, and proofs are JSON with hashes
//! in standard base64 (as a checkpoint's root). Entries are public text that commits to a
//! record; the record and its salt (the *opening*) are shown only to those who may see it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /v1/evidence/key`: the log's origin and verifier key, and its witnesses' keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceKey {
    /// The checkpoint origin line (also the key's name).
    pub origin: String,
    /// The log's verifier key, `<name>+<key id>+<base64(0x01 ‖ Ed25519 public key)>`.
    pub key: String,
    /// Witnesses whose cosignatures the log accepts (type 0x04 keys).
    pub witnesses: Vec<String>,
    /// Entries in the log (durable).
    pub size: u64,
}

/// A signed checkpoint as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SignedCheckpoint {
    pub size: u64,
    /// When it was signed, epoch ms UTC.
    pub at_ms: i64,
    /// The C2SP signed note: origin, size, root, a blank line, signatures.
    pub note: String,
}

/// `GET /v1/evidence/checkpoints`: checkpoints in size order (the log's history of roots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointList {
    pub checkpoints: Vec<SignedCheckpoint>,
}

/// What an entry commits to, for those who may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Opening {
    /// 64 hex digits.
    pub salt: String,
    /// The record (JSON text): `SHA-256("suanwang/evidence/v1\n" ‖ salt ‖ record)` is the
    /// entry's commitment.
    pub record: String,
    pub tenant: Option<String>,
    pub job_id: Option<u64>,
    pub subject: Option<String>,
}

/// `GET /v1/evidence/entries/{index}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EntryAnswer {
    pub index: u64,
    pub kind: String,
    pub at_ms: i64,
    /// The entry's bytes (UTF-8 JSON text): what the tree hashes.
    pub entry: String,
    /// `SHA-256(0x00 ‖ entry)`, base64.
    pub leaf_hash: String,
    /// The record and salt, when the caller may see them (its own; operator and regulator all).
    pub opening: Option<Opening>,
}

/// `GET /v1/evidence/proof/inclusion`: RFC 9162 §2.1.3 audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub leaf_hash: String,
    /// Base64 hashes, leaf to root.
    pub hashes: Vec<String>,
}

/// `GET /v1/evidence/proof/consistency`: RFC 9162 §2.1.4 consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// `POST /v1/evidence/cosignatures`: a checkpoint the log signed, with a witness's
/// cosignature line(s) added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    pub note: String,
}

/// What a cosignature did: the checkpoint as now served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CosignAnswer {
    pub size: u64,
    /// Witnesses whose cosignatures the checkpoint now carries.
    pub cosigners: Vec<String>,
    pub note: String,
}

/// One entry with its inclusion proof against the bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProvedEntry {
    pub index: u64,
    pub kind: String,
    pub at_ms: i64,
    pub entry: String,
    pub opening: Option<Opening>,
    /// Base64 hashes of the inclusion proof in the tree of the checkpoint's size.
    pub proof: Vec<String>,
}

/// `GET /v1/jobs/{id}/evidence`: everything to check a job's records offline — the signed
/// checkpoint, the log's key, and each entry with its opening and inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceBundle {
    pub key: String,
    pub checkpoint: String,
    pub entries: Vec<ProvedEntry>,
}
