//! Suanwang's evidence log (R6 登记上链、存证、溯源; R7 every change audited).
pub mod entry;
pub mod merkle;
pub mod note;
pub mod tile;

/// What went wrong: a proof that does not verify, input that is malformed, or a tile the
/// caller must fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("{what} {value} is out of range for a tree of {size}")]
    OutOfRange { what: &'static str, value: u64, size: u64 },
    #[error("{0}")]
    Proof(String),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("tile {0:?} is needed")]
    MissingTile(tile::TileId),
}
