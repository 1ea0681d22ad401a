//! The evidence routes (R6/R7): the log's key, checkpoints, tiles (C2SP tlog-tiles under
//! `/v1/evidence/`), entries with their openings, RFC 9162 proofs, witnesses' cosignatures, and a
//! job's records bundled with their proofs for offline verification.
//!
//! Proofs are made from the durable tree's right edge (in memory) and full tiles read from the
//! store: a proof that names a missing tile gets it fetched and is made again (at most one tile
//! per tree level above the leaves, so a handful of reads).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use suanwang_api as api;
use suanwang_evidence::EvidenceError;
use suanwang_evidence::merkle::{Hash, consistency_proof, inclusion_proof, leaf_hash};
use suanwang_evidence::note::{Checkpoint, Note};
use suanwang_evidence::tile::{TileId, TilePath, Tiles, Tree, WIDTH, bundle, tile_bytes};
use suanwang_store::{AnyStore, EvidenceRow, NoteRow, Store};

use crate::Inner;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::money_routes::parse_body;
use crate::routes::{authenticate, body_error, find_job, parse_id, require};

type S = State<Arc<Inner>>;

/// Most entries one job's bundle carries.
const MAX_BUNDLE: i64 = 10_000;

fn b64(h: &Hash) -> String {
    B64.encode(h)
}

fn log(inner: &Inner) -> Result<std::sync::MutexGuard<'_, crate::evidence::EvidenceLog>, ApiError> {
    inner.evidence.lock().map_err(|_| ApiError::unavailable("the evidence log is unavailable"))
}

fn store_error(e: &impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("store").detail(e.to_string())
}

fn bad(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_evidence_query", why.into()).field(field)
}

/// A query parameter as a count (a size or an index).
fn count(q: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .map(Some)
            .ok_or_else(|| bad(name, format!("{name}: {v:?} is not a whole number from 0 to 2^63-1"))),
    }
}

/// The newest checkpoint, signing one first when the log has none or entries arrived since.
async fn newest(inner: &Inner) -> Result<(NoteRow, Tree), ApiError> {
    let (note, tree, fresh) = {
        let mut l = log(inner)?;
        let fresh = if l.latest().is_none_or(|n| u64::try_from(n.size).unwrap_or(0) < l.size()) {
            l.sign_if_due(crate::actor::wall_now().0, true)
        } else {
            None
        };
        let note = l.latest().cloned().ok_or_else(|| ApiError::unavailable("no checkpoint yet"))?;
        (note, l.tree(), fresh)
    };
    if let Some(n) = fresh {
        inner.store.put_note(&n).await.map_err(|e| store_error(&e))?;
    }
    Ok((note, tree))
}

/// Runs `f` over the tree's tiles (`evidence::prove`: upper tiles from memory, the rest from
/// the store), the failures as API errors.
async fn prove<T>(
    inner: &Inner,
    tree: &Tree,
    f: impl Fn(&Tiles<'_>) -> Result<T, EvidenceError>,
) -> Result<T, ApiError> {
    match crate::evidence::prove(&inner.store, &inner.upper_tiles, tree, f).await {
        Ok((v, _)) => Ok(v),
        Err(crate::evidence::ProveError::Range(e)) => Err(bad("size", e.to_string())),
        Err(e) => Err(ApiError::unavailable("the proof could not be made").detail(e.to_string())),
    }
}

/// Whether `p` may see the record of `row`.
pub(crate) fn may_open(p: &Principal, row: &EvidenceRow) -> bool {
    match p.role {
        Role::Operator | Role::Regulator => true,
        _ => row.tenant.as_deref() == Some(p.name.as_str()),
    }
}

fn opening(row: &EvidenceRow) -> api::Opening {
    api::Opening {
        salt: row.salt.clone(),
        record: row.record.clone(),
        tenant: row.tenant.clone(),
        job_id: row.job_id.and_then(|j| u64::try_from(j).ok()),
        subject: row.subject.clone(),
    }
}

pub async fn key(State(inner): S, headers: HeaderMap) -> Result<Json<api::EvidenceKey>, ApiError> {
    authenticate(&inner, &headers).await?;
    let l = log(&inner)?;
    Ok(Json(api::EvidenceKey {
        origin: l.origin.clone(),
        key: l.verifier().encode(),
        witnesses: l.witnesses.iter().map(suanwang_evidence::note::Verifier::encode).collect(),
        size: l.size(),
    }))
}

pub async fn checkpoint(State(inner): S, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate(&inner, &headers).await?;
    let (note, _) = newest(&inner).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note.note).into_response())
}

pub async fn checkpoints(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<api::CheckpointList>, ApiError> {
    authenticate(&inner, &headers).await?;
    let (after, limit) = checkpoints_query(&q)?;
    newest(&inner).await?;
    checkpoint_list(&inner.store, after, limit).await.map(Json)
}

/// `after` and `limit` of a checkpoint listing.
fn checkpoints_query(q: &BTreeMap<String, String>) -> Result<(u64, u64), ApiError> {
    let after = count(q, "after")?.unwrap_or(0);
    let limit = count(q, "limit")?.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(bad("limit", "limit: 1 to 10000"));
    }
    Ok((after, limit))
}

/// The stored checkpoints of sizes above `after`, oldest first, at most `limit`.
async fn checkpoint_list(store: &AnyStore, after: u64, limit: u64) -> Result<api::CheckpointList, ApiError> {
    let rows = store
        .notes(i64::try_from(after).unwrap_or(i64::MAX), i64::try_from(limit).unwrap_or(10_000), false)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(api::CheckpointList {
        checkpoints: rows
            .into_iter()
            .map(|n| api::SignedCheckpoint { size: u64::try_from(n.size).unwrap_or(0), at_ms: n.at_ms, note: n.note })
            .collect(),
    })
}

// The evidence reads a follower answers from the store alone (issue 17): the newest stored
// checkpoint (the leader may sign a fresher one on demand; both are valid points of the log),
// the checkpoints, and entries with their openings — as the leader answers them.

/// `GET /v1/evidence/checkpoint` from the store: the newest stored one.
pub(crate) async fn checkpoint_stored(store: &AnyStore) -> Result<Response, ApiError> {
    let newest = store.notes(0, 1, true).await.map_err(|e| store_error(&e))?;
    let note = newest.into_iter().next().ok_or_else(|| ApiError::unavailable("no checkpoint yet"))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note.note).into_response())
}

/// `GET /v1/evidence/checkpoints` from the store.
pub(crate) async fn checkpoints_stored(store: &AnyStore, uri: &axum::http::Uri) -> Result<Response, ApiError> {
    let q = Query::<BTreeMap<String, String>>::try_from_uri(uri)
        .map_err(|e| bad("query", "invalid query").detail(e.body_text()))?;
    let (after, limit) = checkpoints_query(&q.0)?;
    Ok(Json(checkpoint_list(store, after, limit).await?).into_response())
}

/// `GET /v1/evidence/entries/{index}` from the store, its opening to whom may see it.
pub(crate) async fn entry_stored(store: &AnyStore, p: &Principal, index: &str) -> Result<Response, ApiError> {
    let index = entry_index(index)?;
    let size = store.evidence_size().await.map_err(|e| store_error(&e))?;
    Ok(Json(entry_answer(store, p, index, u64::try_from(size).unwrap_or(0)).await?).into_response())
}

pub async fn tile(State(inner): S, headers: HeaderMap, Path(rest): Path<String>) -> Result<Response, ApiError> {
    authenticate(&inner, &headers).await?;
    let path = TilePath::parse(&format!("tile/{rest}")).map_err(|e| bad("path", e.to_string()))?;
    let tree = log(&inner)?.tree();
    let beyond = || {
        ApiError::not_found("such tile")
            .detail(format!("the log holds {} entries", tree.size()))
            .hint("tiles cover the entries of the newest checkpoint (GET /v1/evidence/checkpoint)")
    };
    let bytes = match path {
        TilePath::Hashes { level, index, width } => {
            let (edge, partial) = tree.partial(level);
            let w = width as usize;
            if index < edge {
                let mut h = crate::evidence::full_tile(&inner.store, TileId { level, index }).await.map_err(|e| {
                    ApiError::unavailable("a tile of the evidence log could not be read").detail(e.to_string())
                })?;
                h.truncate(w);
                tile_bytes(&h)
            } else if index == edge && w <= partial.len() && width < WIDTH {
                tile_bytes(&partial[..w])
            } else {
                return Err(beyond());
            }
        }
        TilePath::Entries { index, width } => {
            let from = index.checked_mul(WIDTH).ok_or_else(beyond)?;
            let to = from + width;
            if to > tree.size() {
                return Err(beyond());
            }
            let rows = inner
                .store
                .evidence_entries(i64::try_from(from).unwrap_or(i64::MAX), i64::try_from(to).unwrap_or(i64::MAX))
                .await
                .map_err(|e| store_error(&e))?;
            if rows.len() as u64 != width {
                return Err(ApiError::unavailable("entries of the evidence log are missing from the store"));
            }
            bundle(rows.iter().map(|r| r.entry.as_bytes()))
                .map_err(|e| ApiError::unavailable("an entry is too large").detail(e.to_string()))?
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

pub async fn entry(
    State(inner): S,
    headers: HeaderMap,
    Path(index): Path<String>,
) -> Result<Json<api::EntryAnswer>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    let index = entry_index(&index)?;
    let size = log(&inner)?.size();
    entry_answer(&inner.store, &p, index, size).await.map(Json)
}

fn entry_index(index: &str) -> Result<u64, ApiError> {
    index
        .parse()
        .ok()
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| bad("index", format!("index: {index:?} is not a whole number from 0")))
}

/// Entry `index` of a log of `size` entries, with its opening when `p` may see it.
async fn entry_answer(store: &AnyStore, p: &Principal, index: u64, size: u64) -> Result<api::EntryAnswer, ApiError> {
    if index >= size {
        return Err(ApiError::not_found("such entry").detail(format!("the log holds {size} entries")));
    }
    let i = i64::try_from(index).unwrap_or(i64::MAX);
    let row = store
        .evidence_entries(i, i + 1)
        .await
        .map_err(|e| store_error(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::unavailable("an entry of the evidence log is missing from the store"))?;
    Ok(api::EntryAnswer {
        index,
        kind: row.kind.clone(),
        at_ms: row.at_ms,
        leaf_hash: b64(&leaf_hash(row.entry.as_bytes())),
        opening: may_open(p, &row).then(|| opening(&row)),
        entry: row.entry,
    })
}

pub async fn inclusion(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<api::InclusionProof>, ApiError> {
    authenticate(&inner, &headers).await?;
    let index = count(&q, "index")?.ok_or_else(|| bad("index", "index: required"))?;
    let (note, tree) = newest(&inner).await?;
    let size = count(&q, "size")?.unwrap_or(u64::try_from(note.size).unwrap_or(0));
    if size > tree.size() {
        return Err(bad("size", format!("size {size} is beyond the log's {} entries", tree.size())));
    }
    if index >= size {
        return Err(bad("index", format!("index {index} is out of range for a tree of {size} entries")));
    }
    let hashes = prove(&inner, &tree, |t| inclusion_proof(t, index, size)).await?;
    let i = i64::try_from(index).unwrap_or(i64::MAX);
    let row = inner.store.evidence_entries(i, i + 1).await.map_err(|e| store_error(&e))?;
    let leaf = row.first().map(|r| leaf_hash(r.entry.as_bytes())).ok_or_else(|| ApiError::not_found("such entry"))?;
    Ok(Json(api::InclusionProof { index, size, leaf_hash: b64(&leaf), hashes: hashes.iter().map(b64).collect() }))
}

pub async fn consistency(
    State(inner): S,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<api::ConsistencyProof>, ApiError> {
    authenticate(&inner, &headers).await?;
    let from = count(&q, "from")?.ok_or_else(|| bad("from", "from: required"))?;
    let (note, tree) = newest(&inner).await?;
    let to = count(&q, "to")?.unwrap_or(u64::try_from(note.size).unwrap_or(0));
    if to > tree.size() {
        return Err(bad("to", format!("to {to} is beyond the log's {} entries", tree.size())));
    }
    if from > to {
        return Err(bad("from", format!("from {from} is after to {to}")));
    }
    let hashes =
        if from == 0 || from == to { vec![] } else { prove(&inner, &tree, |t| consistency_proof(t, from, to)).await? };
    Ok(Json(api::ConsistencyProof { from, to, hashes: hashes.iter().map(b64).collect() }))
}

pub async fn cosign(
    State(inner): S,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<api::CosignAnswer>, ApiError> {
    authenticate(&inner, &headers).await?;
    let body = body.map_err(|e| body_error(&e))?;
    let r: api::CosignRequest =
        parse_body(&body, "invalid_cosignature", "{note: the checkpoint with the cosignature lines}")?;
    let invalid =
        |why: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_cosignature", why).field("note");
    let given = Note::parse(&r.note).map_err(|e| invalid(e.to_string()))?;
    let c = Checkpoint::parse(&given.text).map_err(|e| invalid(e.to_string()))?;
    let (verifier, witnesses) = {
        let l = log(&inner)?;
        (l.verifier(), l.witnesses.clone())
    };
    if witnesses.is_empty() {
        return Err(ApiError::new(StatusCode::CONFLICT, "no_witnesses", "this log accepts no witnesses")
            .hint("start the server with --witness KEY (the witness's verifier key)"));
    }
    let size = i64::try_from(c.size).map_err(|_| invalid("size out of range".into()))?;
    let stored = inner
        .store
        .notes(size.saturating_add(1), 1, true)
        .await
        .map_err(|e| store_error(&e))?
        .into_iter()
        .find(|n| n.size == size)
        .ok_or_else(|| {
            ApiError::not_found("checkpoint of that size").hint("cosign one from GET /v1/evidence/checkpoints")
        })?;
    let mut kept = Note::parse(&stored.note)
        .map_err(|e| ApiError::unavailable("a stored checkpoint is damaged").detail(e.to_string()))?;
    if kept.text != given.text {
        return Err(invalid("the checkpoint's text is not the one this log signed for that size".into()));
    }
    // each cosignature by a known witness must verify; others are ignored
    let mut added = 0usize;
    for w in &witnesses {
        let mine: Vec<_> = given.sigs.iter().filter(|s| w.claims(s)).cloned().collect();
        if mine.is_empty() {
            continue;
        }
        // the log's own signature and this witness's new one: both must verify
        let by_log = kept.sigs.iter().filter(|s| verifier.claims(s)).cloned();
        let with_log = Note { text: given.text.clone(), sigs: by_log.chain(mine.iter().cloned()).collect() };
        with_log.verify(&verifier, std::slice::from_ref(w), 1).map_err(|e| invalid(e.to_string()))?;
        kept.sigs.retain(|s| !w.claims(s));
        kept.sigs.extend(mine);
        added += 1;
    }
    if added == 0 {
        return Err(invalid("no cosignature by a witness this log accepts".into()));
    }
    let note = NoteRow { note: kept.encode(), ..stored };
    inner.store.put_note(&note).await.map_err(|e| store_error(&e))?;
    log(&inner)?.set_latest(note.clone());
    let cosigners = kept.verify(&verifier, &witnesses, 0).map_err(|e| invalid(e.to_string()))?;
    Ok(Json(api::CosignAnswer {
        size: c.size,
        cosigners: cosigners.into_iter().map(|(n, _)| n).collect(),
        note: note.note,
    }))
}

pub async fn job_evidence(
    State(inner): S,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<api::EvidenceBundle>, ApiError> {
    let p = authenticate(&inner, &headers).await?;
    require(&p, &[Role::Operator, Role::Regulator, Role::Tenant], "read a job's evidence")?;
    let id = parse_id(&id)?;
    find_job(&inner, id)
        .await?
        .filter(|j| p.role != Role::Tenant || j.tenant == p.name)
        .ok_or_else(|| ApiError::not_found("such job"))?;
    Ok(Json(bundle_about(&inner, &p, Some(id), None).await?))
}

/// The entries about a job or a subject (`dataset/…`), each with its opening when `p` may see
/// it and its inclusion proof against the newest checkpoint.
pub async fn bundle_about(
    inner: &Inner,
    p: &Principal,
    job: Option<u64>,
    subject: Option<&str>,
) -> Result<api::EvidenceBundle, ApiError> {
    let (note, tree) = newest(inner).await?;
    let size = u64::try_from(note.size).unwrap_or(0);
    let rows = inner
        .store
        .evidence_about(job.map(|j| i64::try_from(j).unwrap_or(i64::MAX)), subject, MAX_BUNDLE)
        .await
        .map_err(|e| store_error(&e))?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let index = u64::try_from(row.idx).unwrap_or(u64::MAX);
        if index >= size {
            continue;
        }
        let proof = prove(inner, &tree, |t| inclusion_proof(t, index, size)).await?;
        entries.push(api::ProvedEntry {
            index,
            kind: row.kind.clone(),
            at_ms: row.at_ms,
            opening: may_open(p, &row).then(|| opening(&row)),
            entry: row.entry,
            proof: proof.iter().map(b64).collect(),
        });
    }
    let key = log(inner)?.verifier().encode();
    Ok(api::EvidenceBundle { key, checkpoint: note.note, entries })
}
