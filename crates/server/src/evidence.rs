//! The evidence log (R6 登记上链、存证、溯源; R7 every change audited): every group commit
//! appends, in the same transaction, one entry per record it carries — what happened to one job
//! in the batch (its commands, events and ledger transfers), or one other command (a site
//! registered, approved, suspended or lost; a top-up, a programme, a grant), or one ledger
//! transfer of no job. Entries commit to their records (salted SHA-256, see
//! [`suanwang_evidence::entry`]); the records and salts stay in the store, opened to whom may
//! see them.
//!
//! The log keeps in memory only its right edge ([`Tree`]: at most 256 hashes a level) and its
//! newest checkpoint; tiles and entries are read from the store. A checkpoint — origin, size,
//! root, signed by the operator's Ed25519 key as a C2SP signed note — is made at most once a
//! second while entries arrive, after the commit that made them durable.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Value, json};
use suanwang_engine::Event;
use suanwang_evidence::entry::{commitment, entry, hex};
use suanwang_evidence::merkle::{Hash, leaf_hash};
use suanwang_evidence::note::{Checkpoint, Note, Signer, Verifier};
use suanwang_evidence::tile::{TileId, Tree, WIDTH, tile_bytes, tile_hashes};
use suanwang_store::{AnyStore, CommandRow, EvidenceRow, NoteRow, Store, StoreError, TileRow, TransferRow};

/// One record to prove.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: String,
    pub tenant: Option<String>,
    pub job_id: Option<u64>,
    pub subject: Option<String>,
    /// The record as JSON text: what the entry commits to, byte for byte.
    pub body: String,
}

/// What a batch appends: the tree after it, its rows and the tiles it filled.
#[derive(Debug, Default)]
pub struct Staged {
    pub tree: Tree,
    pub rows: Vec<EvidenceRow>,
    pub tiles: Vec<TileRow>,
}

/// The log's state in the control plane.
#[derive(Debug)]
pub struct EvidenceLog {
    pub origin: String,
    signer: Signer,
    /// Keys whose cosignatures the log accepts and serves.
    pub witnesses: Vec<Verifier>,
    /// The tree as durable (after the last successful commit).
    tree: Tree,
    /// Salts are SHA-256(this key ‖ index): random per process, stored with each entry.
    salt_key: [u8; 32],
    /// The newest checkpoint signed.
    latest: Option<NoteRow>,
    /// When the newest checkpoint was signed (ms).
    signed_at_ms: i64,
    /// When the oldest entry no checkpoint covers became durable (ms).
    unsigned_since_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceLoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the evidence log in the store is damaged: {0}")]
    Damaged(String),
    #[error("no randomness: {0}")]
    Random(String),
}

impl EvidenceLog {
    /// Rebuilds the log's right edge from the store (the last partial tile's entries and the
    /// full tiles under each level's partial tile) and checks it against the newest checkpoint.
    pub async fn load(
        store: &AnyStore,
        signer: Signer,
        witnesses: Vec<Verifier>,
    ) -> Result<EvidenceLog, EvidenceLoadError> {
        let size = store.evidence_size().await?;
        let size_u = u64::try_from(size).unwrap_or(0);
        let first = size_u / WIDTH * WIDTH;
        let last: Vec<Hash> = store
            .evidence_entries(i64::try_from(first).unwrap_or(i64::MAX), size)
            .await?
            .iter()
            .map(|r| leaf_hash(r.entry.as_bytes()))
            .collect();
        let mut tiles = HashMap::new();
        let needs = Tree::restore_needs(size_u);
        let mut by_level: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for id in &needs {
            let e = by_level.entry(id.level).or_insert((id.index, id.index + 1));
            e.0 = e.0.min(id.index);
            e.1 = e.1.max(id.index + 1);
        }
        for (level, (from, to)) in by_level {
            for t in store.evidence_tiles(level as i32, from as i64, to as i64).await? {
                let h = tile_hashes(&t.hashes).map_err(|e| EvidenceLoadError::Damaged(e.to_string()))?;
                tiles.insert(TileId { level, index: t.idx as u64 }, h);
            }
        }
        let tree = Tree::restore(size_u, last, &tiles).map_err(|e| EvidenceLoadError::Damaged(e.to_string()))?;
        let mut latest = store.notes(0, 1, true).await?.into_iter().next();
        if let Some(n) = &latest {
            let note =
                Note::parse(&n.note).map_err(|e| EvidenceLoadError::Damaged(format!("the newest checkpoint: {e}")))?;
            let c = Checkpoint::parse(&note.text)
                .map_err(|e| EvidenceLoadError::Damaged(format!("the newest checkpoint: {e}")))?;
            if c.size > size_u {
                return Err(EvidenceLoadError::Damaged(format!(
                    "the newest checkpoint covers {} entries, the store holds {size_u}",
                    c.size
                )));
            }
            if c.size == size_u && c.root != tree.root() {
                return Err(EvidenceLoadError::Damaged(format!(
                    "the root of the {size_u} entries stored is not the newest checkpoint's"
                )));
            }
            // signed by a key since rotated: the next checkpoint is signed by the new one
            if note.verify(&signer.verifier(), &[], 0).is_err() {
                tracing::warn!(origin = %c.origin, "the newest checkpoint was signed by another key (rotated): signing anew");
                latest = None;
            }
        }
        let mut salt_key = [0u8; 32];
        getrandom::fill(&mut salt_key).map_err(|e| EvidenceLoadError::Random(e.to_string()))?;
        let origin = signer.name().to_string();
        Ok(EvidenceLog { origin, signer, witnesses, tree, salt_key, latest, signed_at_ms: 0, unsigned_since_ms: None })
    }

    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The durable tree (a copy: proofs are made outside the lock).
    pub fn tree(&self) -> Tree {
        self.tree.clone()
    }

    pub fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    pub fn latest(&self) -> Option<&NoteRow> {
        self.latest.as_ref()
    }

    fn salt(&self, index: u64) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.salt_key);
        h.update(index.to_be_bytes());
        h.finalize().into()
    }

    /// The entries of `records` appended after the durable tree (nothing changes until
    /// [`EvidenceLog::install`]).
    pub fn stage(&self, records: Vec<Record>, at_ms: i64) -> Staged {
        let mut tree = self.tree.clone();
        let mut full = Vec::new();
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            let index = tree.size();
            let salt = self.salt(index);
            // kinds are the server's own words
            let Ok(e) = entry(&r.kind, at_ms, &commitment(&salt, r.body.as_bytes())) else {
                tracing::error!(kind = %r.kind, "an evidence record of a kind that is not a word: not logged");
                continue;
            };
            tree.append(leaf_hash(&e), &mut full);
            rows.push(EvidenceRow {
                idx: i64::try_from(index).unwrap_or(i64::MAX),
                kind: r.kind,
                at_ms,
                entry: String::from_utf8_lossy(&e).into_owned(),
                salt: hex(&salt),
                record: r.body,
                tenant: r.tenant,
                job_id: r.job_id.and_then(|j| i64::try_from(j).ok()),
                subject: r.subject,
            });
        }
        let tiles = full
            .into_iter()
            .map(|(id, h)| TileRow { level: id.level as i32, idx: id.index as i64, hashes: tile_bytes(&h) })
            .collect();
        Staged { tree, rows, tiles }
    }

    /// The batch is durable: its tree is the log's.
    pub fn install(&mut self, tree: Tree, now_ms: i64) {
        if tree.size() > self.tree.size() && self.unsigned_since_ms.is_none() {
            self.unsigned_since_ms = Some(now_ms);
        }
        self.tree = tree;
    }

    /// How long durable entries have waited for a checkpoint (0: the newest covers the log).
    pub fn unsigned_for_ms(&self, now_ms: i64) -> i64 {
        self.unsigned_since_ms.map_or(0, |t| (now_ms - t).max(0))
    }

    /// A checkpoint of the durable tree when entries arrived since the last one and a second
    /// has passed (or `force`); the caller stores it.
    pub fn sign_if_due(&mut self, now_ms: i64, force: bool) -> Option<NoteRow> {
        let size = self.tree.size();
        let signed = self.latest.as_ref().map_or(0, |n| u64::try_from(n.size).unwrap_or(0));
        if size == signed && self.latest.is_some() {
            return None;
        }
        if !force && now_ms - self.signed_at_ms < 750 {
            return None;
        }
        let c = Checkpoint { origin: self.origin.clone(), size, root: self.tree.root(), extensions: vec![] };
        let note = NoteRow { size: i64::try_from(size).unwrap_or(i64::MAX), at_ms: now_ms, note: c.sign(&self.signer) };
        self.latest = Some(note.clone());
        self.signed_at_ms = now_ms;
        self.unsigned_since_ms = None;
        Some(note)
    }

    /// Replaces the newest checkpoint with a cosigned copy of it.
    pub fn set_latest(&mut self, note: NoteRow) {
        if self.latest.as_ref().is_none_or(|l| l.size <= note.size) {
            self.latest = Some(note);
        }
    }
}

type JobParts<'a> = (Vec<Value>, Vec<Value>, Vec<TransferJson<'a>>);

/// A ledger transfer as a record holds it. The fields are in alphabetical order, as a
/// `serde_json::Value`'s map would print them: records written before this type existed read
/// the same, and a transfer is serialised straight from its row — with billing on, most of a
/// job's record is its transfers, and building them as `Value`s first was most of what billing
/// added to the actor's loop (issue 13's p99 target).
#[derive(Serialize)]
struct TransferJson<'a> {
    amount: i64,
    at_ms: i64,
    code: i32,
    credit: &'a str,
    debit: &'a str,
    flags: i32,
    id: &'a str,
    pending_id: &'a str,
    ts: i64,
    user_data: i64,
}

impl<'a> From<&'a TransferRow> for TransferJson<'a> {
    fn from(t: &'a TransferRow) -> Self {
        TransferJson {
            amount: t.amount,
            at_ms: t.at_ms,
            code: t.code,
            credit: &t.credit,
            debit: &t.debit,
            flags: t.flags,
            id: &t.id,
            pending_id: &t.pending_id,
            ts: t.ts,
            user_data: t.user_data,
        }
    }
}

/// A job's record (fields in alphabetical order, as [`TransferJson`]'s).
#[derive(Serialize)]
struct JobJson<'a> {
    commands: Vec<Value>,
    events: Vec<Value>,
    job: u64,
    transfers: Vec<TransferJson<'a>>,
}

/// A record of one ledger transfer of no job.
#[derive(Serialize)]
struct LedgerJson<'a> {
    transfer: TransferJson<'a>,
}

fn text(body: &impl Serialize) -> String {
    // the bodies are plain data: serialising them cannot fail
    serde_json::to_string(body).unwrap_or_default()
}

/// The records of one group commit: each command that is not about a job; per job, its
/// commands, its events and its ledger transfers; each ledger transfer of no job.
pub fn records(
    commands: &[CommandRow],
    events: &[Event],
    transfers: &[TransferRow],
    tenant_of_job: impl Fn(u64) -> Option<(String, Option<String>)>,
    owner_of_transfer: impl Fn(&TransferRow) -> Option<String>,
) -> Vec<Record> {
    let mut out = Vec::new();
    // per job: its commands, events and transfers
    let mut jobs: BTreeMap<u64, JobParts> = BTreeMap::new();
    for c in commands {
        let body: Value = serde_json::from_str(&c.body).unwrap_or(Value::String(c.body.clone()));
        let cmd = json!({"kind": c.kind, "actor": c.actor, "at_ms": c.at_ms, "body": body});
        match c.job_id.and_then(|j| u64::try_from(j).ok()) {
            Some(j) => jobs.entry(j).or_default().0.push(cmd),
            None => {
                let body = &cmd["body"];
                let subject = match (body.get("dataset"), body.get("principal"), body.get("alert")) {
                    (Some(Value::String(d)), _, _) => Some(format!("dataset/{d}")),
                    (_, Some(Value::String(p)), _) => Some(format!("principal/{p}")),
                    (_, _, Some(Value::String(a))) => Some(format!("alert/{a}")),
                    _ => body
                        .get("site")
                        .and_then(|s| s.as_str().or_else(|| s.get("id").and_then(Value::as_str)))
                        .map(|s| format!("site/{s}")),
                };
                let tenant = body.get("tenant").and_then(Value::as_str).map(str::to_string);
                out.push(Record { kind: c.kind.clone(), tenant, job_id: None, subject, body: cmd.to_string() });
            }
        }
    }
    for ev in events {
        let v = serde_json::to_value(ev).unwrap_or(Value::Null);
        match crate::views::event_job(ev) {
            Some(j) => jobs.entry(j).or_default().1.push(v),
            None => {
                let subject = v.get("site").and_then(Value::as_str).map(|s| format!("site/{s}"));
                out.push(Record { kind: "event".into(), tenant: None, job_id: None, subject, body: v.to_string() });
            }
        }
    }
    for t in transfers {
        match u64::try_from(t.user_data).ok().filter(|j| *j != 0 && jobs.contains_key(j)) {
            Some(j) => jobs.entry(j).or_default().2.push(t.into()),
            None => out.push(Record {
                kind: "ledger".into(),
                tenant: owner_of_transfer(t),
                job_id: None,
                subject: None,
                body: text(&LedgerJson { transfer: t.into() }),
            }),
        }
    }
    for (j, (commands, events, transfers)) in jobs {
        let (tenant, subject) = tenant_of_job(j).map_or((None, None), |(t, s)| (Some(t), s));
        out.push(Record {
            kind: "job".into(),
            tenant,
            job_id: Some(j),
            subject,
            body: text(&JobJson { commands, events, job: j, transfers }),
        });
    }
    out
}

/// Most full tiles above the leaves' level kept in memory (8 KiB each): one exists per 65,536
/// entries, so 4,096 of them serve every proof of a log of 268 M entries from memory but for
/// its leaf tile.
pub const UPPER_TILES: usize = 4_096;

/// Full tiles above level 0, read once from the store and kept: every proof needs one per level
/// above the leaves', and few of them exist.
#[derive(Debug, Default)]
pub struct UpperTiles {
    map: std::sync::RwLock<HashMap<TileId, Vec<Hash>>>,
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The query asks beyond the tree (an index or size out of range).
    #[error(transparent)]
    Range(suanwang_evidence::EvidenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the evidence log in the store is damaged: {0}")]
    Damaged(String),
}

/// Full tile `id` from the store.
pub async fn full_tile(store: &AnyStore, id: TileId) -> Result<Vec<Hash>, ProveError> {
    let (level, index) = (i32::try_from(id.level).unwrap_or(i32::MAX), i64::try_from(id.index).unwrap_or(i64::MAX));
    let rows = store.evidence_tiles(level, index, index.saturating_add(1)).await?;
    let row = rows.into_iter().next().ok_or_else(|| ProveError::Damaged(format!("tile {id:?} is missing")))?;
    tile_hashes(&row.hashes).map_err(|e| ProveError::Damaged(e.to_string()))
}

/// Runs `f` (a proof or a root) over `tree`'s tiles: each tile it names comes from `upper`
/// (levels above 0) or the store, and `f` runs again. Returns the answer and the store reads.
pub async fn prove<T>(
    store: &AnyStore,
    upper: &UpperTiles,
    tree: &Tree,
    f: impl Fn(&suanwang_evidence::tile::Tiles<'_>) -> Result<T, suanwang_evidence::EvidenceError>,
) -> Result<(T, u64), ProveError> {
    use suanwang_evidence::EvidenceError;
    let mut tiles = suanwang_evidence::tile::Tiles::new(tree);
    let mut reads = 0u64;
    // a proof names at most one tile per level, and a tree has at most 8 tile levels
    for _ in 0..64 {
        match f(&tiles) {
            Ok(v) => return Ok((v, reads)),
            Err(EvidenceError::MissingTile(id)) => {
                let cached = if id.level > 0 { upper.map.read().ok().and_then(|m| m.get(&id).cloned()) } else { None };
                let h = match cached {
                    Some(h) => h,
                    None => {
                        let h = full_tile(store, id).await?;
                        reads += 1;
                        if id.level > 0
                            && let Ok(mut m) = upper.map.write()
                            && m.len() < UPPER_TILES
                        {
                            m.insert(id, h.clone());
                        }
                        h
                    }
                };
                tiles.add(id, h);
            }
            Err(e @ EvidenceError::OutOfRange { .. }) => return Err(ProveError::Range(e)),
            Err(e) => return Err(ProveError::Damaged(e.to_string())),
        }
    }
    Err(ProveError::Damaged("a proof needed more tiles than a tree has levels".into()))
}

/// How often the control plane looks for tokens whose creation is not logged yet.
const TOKEN_SCAN: std::time::Duration = std::time::Duration::from_secs(1);

/// The log record of a token's creation: its principal, role and time, and a fingerprint (the
/// first 16 hex digits of the stored hash, itself a SHA-256 of the token) to tell two tokens of
/// one principal apart — never the token, and nothing that could authenticate. A tenant's
/// token creation opens for that tenant.
pub fn token_record(t: &suanwang_store::TokenRow) -> String {
    let mut body = json!({
        "principal": t.name,
        "role": t.role,
        "created_at_ms": t.created_at_ms,
        "fingerprint": t.hash.get(..16).unwrap_or(&t.hash),
    });
    if t.role == "tenant" {
        body["tenant"] = Value::String(t.name.clone());
    }
    body.to_string()
}

/// Logs the creation of every token the store holds and the log does not (R6/R7), at start and
/// every [`TOKEN_SCAN`]: `suanwang token create` writes tokens straight into the store, with or
/// without a control plane running. Each scan waits for its commit, so a token is never logged
/// twice; a failed scan is retried at the next.
pub async fn log_tokens(inner: std::sync::Arc<crate::Inner>, tx: tokio::sync::mpsc::Sender<crate::actor::Request>) {
    let mut every = tokio::time::interval(TOKEN_SCAN);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        loop {
            let rows = match inner.store.unlogged_tokens(256).await {
                Ok(rows) if rows.is_empty() => break,
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the tokens to log");
                    break;
                }
            };
            let (reply, answer) = tokio::sync::oneshot::channel();
            if tx.send(crate::actor::Request::Tokens { rows, reply }).await.is_err() {
                return; // the actor stopped: the service is ending
            }
            match answer.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e.body.message, "token creations not logged; retrying");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suanwang_core::Ts;

    fn transfer(id: &str, job: i64) -> TransferRow {
        TransferRow {
            id: id.into(),
            debit: "0000000000000000000000000000000a".into(),
            credit: "0000000000000000000000000000000b".into(),
            amount: 1_234,
            pending_id: String::new(),
            user_data: job,
            code: 3,
            flags: 2,
            ts: 1_700_000_000_000_001,
            at_ms: 1_700_000_000_000,
        }
    }

    /// A record's text is what its entry commits to: written straight from the rows, it must
    /// read exactly as the `Value` it replaced (keys sorted), or records already in a store and
    /// new ones would differ in form.
    #[test]
    fn records_read_as_their_json_values_did() {
        let submit = CommandRow {
            seq: 0,
            at_ms: 1_700_000_000_000,
            actor: "acme".into(),
            kind: "submit".into(),
            job_id: Some(7),
            tenant: Some("acme".into()),
            idempotency_key: None,
            body: r#"{"name":"x","tenant":"acme"}"#.into(),
            events: String::new(),
        };
        let topup = CommandRow {
            job_id: None,
            kind: "topup".into(),
            body: r#"{"tenant":"acme","amount_fen":5}"#.into(),
            ..submit.clone()
        };
        let started = Event::Started { id: 7, at: Ts(1_700_000_000_000), attempt: 1 };
        let (t7, t0) =
            (transfer("00000000000000000000000000000001", 7), transfer("00000000000000000000000000000002", 0));
        let out = records(
            &[submit.clone(), topup.clone()],
            std::slice::from_ref(&started),
            &[t7.clone(), t0.clone()],
            |_| Some(("acme".into(), None)),
            |_| Some("acme".into()),
        );
        let cmd = |c: &CommandRow| {
            let body: Value = serde_json::from_str(&c.body).expect("body");
            json!({"kind": c.kind, "actor": c.actor, "at_ms": c.at_ms, "body": body})
        };
        let as_value = |t: &TransferRow| serde_json::to_value(t).expect("transfer");
        let want = [
            ("topup", cmd(&topup).to_string()),
            ("ledger", json!({"transfer": as_value(&t0)}).to_string()),
            (
                "job",
                json!({"job": 7, "commands": [cmd(&submit)], "events": [serde_json::to_value(&started).expect("event")],
                       "transfers": [as_value(&t7)]})
                .to_string(),
            ),
        ];
        let got: Vec<(&str, String)> = out.iter().map(|r| (r.kind.as_str(), r.body.clone())).collect();
        assert_eq!(got, want.iter().map(|(k, b)| (*k, b.clone())).collect::<Vec<_>>());
        assert_eq!(out[2].job_id, Some(7));
        assert_eq!(out[1].tenant.as_deref(), Some("acme"));
    }
}
