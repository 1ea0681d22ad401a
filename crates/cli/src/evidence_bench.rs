//! `suanwang bench evidence`: the evidence log's speed (issue 14 item 6).
//!
//! - Durable appends: realistic records (a job's commands, events and transfers; ledger
//!   transfers; other commands — a few hundred bytes of JSON each) staged by the control
//!   plane's own [`EvidenceLog`] (salted commitments, entries, leaf hashes, the tiles they
//!   fill) and written in batches of [`BATCH`], one group commit each, on SQLite in a fresh
//!   directory; a checkpoint signed and stored whenever one is due (at least once a second
//!   while entries arrive), as the control plane's actor does.
//! - Proofs at a large size: a tree of `proof_size` synthetic entries, every full tile written
//!   to SQLite, then random inclusion and consistency proofs made the way the server makes them
//!   (the right edge in memory, each tile the proof names read from the store, the proof made
//!   again), every one verified; and the same proofs again with their tiles already in memory.
//! - The audit: a replay of `audit` entries from their tiles, served from memory.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use suanwang_evidence::EvidenceError;
use suanwang_evidence::entry::{audit, commitment, entry};
use suanwang_evidence::merkle::{
    Hash, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
};
use suanwang_evidence::note::{Checkpoint, ED25519, Signer};
use suanwang_evidence::tile::{TileId, TilePath, Tiles, Tree, WIDTH, bundle, tile_bytes, tile_hashes};
use suanwang_server::evidence::{EvidenceLog, Record, UpperTiles};
use suanwang_store::{AnyStore, Batch, SqliteStore, Store, TileRow};

use crate::bench_cmd::{Rng, quantile as percentile};

/// Records a group commit carries when the control plane is busy.
pub const BATCH: usize = 1_000;
/// Proofs of each kind timed.
pub const PROOFS: usize = 2_000;
/// Tiles written a transaction when the proof tree is built.
const TILE_BATCH: usize = 4_096;
/// A checkpoint of the audited log every this many entries (the roots the audit checks).
const AUDIT_ROOT_EVERY: u64 = 65_536;
/// The instant the synthetic entries are dated from (2026-11-26T00:00:00Z).
const EPOCH_MS: i64 = 1_795_651_200_000;

#[derive(Debug)]
pub struct EvidenceArgs {
    /// Entries appended durably, through the store.
    pub appends: usize,
    /// Entries in the tree the proofs are made at.
    pub proof_size: u64,
    /// Entries audited.
    pub audit: u64,
    pub json: bool,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn phase(name: &str, started: Instant, what: &str) {
    eprintln!("bench evidence: {name}: {what} in {:.1} s", started.elapsed().as_secs_f64());
}

// ---- durable appends ----------------------------------------------------------------------

const SITES: &[(&str, &str)] = &[
    ("qingyang-1", "a800"),
    ("zhongwei-2", "h20"),
    ("guian-1", "910b"),
    ("wulanchabu-3", "a800"),
    ("shaoguan-1", "l40s"),
    ("wuhu-2", "h20"),
];
const KINDS: &[&str] = &["training", "fine_tuning", "inference", "batch", "rendering", "hpc"];

fn account(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next(), rng.next())
}

fn transfer(rng: &mut Rng, job: u64, at_ms: i64, code: u64, flags: u64) -> Value {
    json!({
        "id": account(rng),
        "debit": account(rng),
        "credit": account(rng),
        "amount": 100 + rng.below(2_000_000),
        "pending_id": "",
        "user_data": job,
        "code": code,
        "flags": flags,
        "ts": at_ms * 1_000 + rng.below(1_000) as i64,
        "at_ms": at_ms,
    })
}

/// One record as the control plane writes them (see `suanwang_server::evidence::records`): most
/// are a job's part of a group commit, the others a ledger transfer of no job or a command that
/// is not about a job.
fn record(rng: &mut Rng, jobs: &mut u64, at_ms: i64) -> (Record, Value) {
    // the record's text is written from its value in the timed part, as the server writes it
    let draft = |kind: &str, tenant: String, job_id: Option<u64>| Record {
        kind: kind.into(),
        tenant: Some(tenant),
        job_id,
        subject: None,
        body: String::new(),
    };
    let tenant = format!("tenant-{:02}", rng.below(97));
    let (site, pool) = SITES[rng.below(SITES.len() as u64) as usize];
    match rng.below(10) {
        // a job submitted and placed, its hold on the wallet
        0..=3 => {
            *jobs += 1;
            let j = *jobs;
            let start = at_ms + rng.below(3_600_000) as i64;
            let hours = 1 + rng.below(48) as i64;
            let body = json!({
                "job": j,
                "commands": [{
                    "kind": "submit", "actor": tenant, "at_ms": at_ms,
                    "body": {
                        "name": format!("run-{j}"), "tenant": tenant,
                        "kind": KINDS[rng.below(KINDS.len() as u64) as usize],
                        "origin": "beijing", "resources": {"gpus": 1u64 << rng.below(4), "gpu": pool},
                        "work": {"hours": hours}, "start_within": "2h",
                    },
                }],
                "events": [{"Placed": {
                    "id": j, "at": at_ms, "attempt": 1, "site": site, "pool": pool,
                    "start_at": start, "end_at": start + hours * 3_600_000,
                    "mode": "Network", "deferred_s": rng.below(7_200), "start_within_s": 7_200,
                }}],
                "transfers": [transfer(rng, j, at_ms, 3, 2)],
            });
            (draft("job", tenant, Some(j)), body)
        }
        // a job placed earlier starts or completes: its events, and on completion its charge
        4..=6 => {
            let j = 1 + rng.below((*jobs).max(1));
            let done = rng.below(2) == 0;
            let event = if done {
                json!({"Completed": {"id": j, "at": at_ms, "attempt": 1, "site": site, "gpu_hours": rng.below(400)}})
            } else {
                json!({"Started": {"id": j, "at": at_ms, "attempt": 1}})
            };
            let transfers =
                if done { vec![transfer(rng, j, at_ms, 4, 4), transfer(rng, j, at_ms, 5, 0)] } else { vec![] };
            let body = json!({"job": j, "commands": [], "events": [event], "transfers": transfers});
            (draft("job", tenant, Some(j)), body)
        }
        // a ledger transfer of no job (a top-up's money, a grant)
        7 | 8 => (draft("ledger", tenant, None), json!({"transfer": transfer(rng, 0, at_ms, 1, 0)})),
        // a command of no job: a top-up recorded
        _ => (
            draft("topup", tenant.clone(), None),
            json!({
                "kind": "topup", "actor": "operator", "at_ms": at_ms,
                "body": {"tenant": tenant, "amount_fen": 100 * (1 + rng.below(100_000)), "reference": account(rng)},
            }),
        ),
    }
}

struct Appended {
    rate: f64,
    seconds: f64,
    batch_p99_us: f64,
    checkpoints: usize,
    checkpoint_gap_max_ms: i64,
    record_bytes: f64,
}

async fn appends(dir: &Path, n: usize, rng: &mut Rng) -> Result<Appended> {
    let store = AnyStore::Sqlite(SqliteStore::open(dir).await?);
    store.migrate().await?;
    let signer = Signer::from_seed("suanwang.bench/log", ED25519, [14; 32])?;
    let verifier = signer.verifier();
    let mut log = EvidenceLog::load(&store, signer, vec![]).await?;
    let mut lat = Vec::with_capacity(n.div_ceil(BATCH));
    let mut busy = 0.0f64;
    let (mut checkpoints, mut last_note_ms, mut gap_max) = (0usize, None::<i64>, 0i64);
    let mut record_bytes = 0usize;
    let mut jobs = 0u64;
    let mut done = 0usize;
    let started = Instant::now();
    while done < n {
        let len = BATCH.min(n - done);
        let at = now_ms();
        // the records come from the batch's commands: made before the clock starts
        let drafts: Vec<(Record, Value)> = (0..len).map(|_| record(rng, &mut jobs, at)).collect();
        let t = Instant::now();
        // writing each record's text is the server's work per batch too: timed
        let records: Vec<Record> = drafts.into_iter().map(|(r, body)| Record { body: body.to_string(), ..r }).collect();
        let staged = log.stage(records, at);
        if staged.rows.len() != len {
            bail!("{} of {len} records were staged", staged.rows.len());
        }
        store.commit(&Batch { evidence: &staged.rows, tiles: &staged.tiles, ..Batch::default() }).await?;
        log.install(staged.tree, at);
        let last = done + len == n;
        if let Some(note) = log.sign_if_due(now_ms(), last) {
            store.put_note(&note).await?;
            checkpoints += 1;
            if let Some(prev) = last_note_ms {
                gap_max = gap_max.max(note.at_ms - prev);
            }
            last_note_ms = Some(note.at_ms);
        }
        let dt = t.elapsed().as_secs_f64();
        busy += dt;
        lat.push(dt * 1e6);
        record_bytes += staged.rows.iter().map(|r| r.record.len()).sum::<usize>();
        done += len;
    }
    let seconds = started.elapsed().as_secs_f64();
    // what was written is what was staged, and the newest checkpoint signs it
    let size = store.evidence_size().await?;
    if usize::try_from(size).ok() != Some(n) {
        bail!("the store holds {size} entries, {n} were appended");
    }
    let note = log.latest().context("no checkpoint was signed")?;
    let (c, _) = Checkpoint::open(&note.note, &verifier, &[], 0)?;
    if c.size != n as u64 || c.root != log.tree().root() {
        bail!("the newest checkpoint does not sign the {n} entries appended");
    }
    Ok(Appended {
        rate: n as f64 / busy.max(f64::EPSILON),
        seconds,
        batch_p99_us: percentile(lat, 0.99),
        checkpoints,
        checkpoint_gap_max_ms: gap_max,
        record_bytes: record_bytes as f64 / n.max(1) as f64,
    })
}

// ---- proofs at size ----------------------------------------------------------------------

/// Entry `i` of the synthetic log: a salted commitment to a small record, as the control
/// plane's entries are.
fn synthetic(i: u64) -> Result<Vec<u8>, EvidenceError> {
    const ENTRY_KINDS: [&str; 4] = ["job", "job", "ledger", "topup"];
    let c = commitment(&[0x5a; 32], &i.to_be_bytes());
    entry(ENTRY_KINDS[(i % 4) as usize], EPOCH_MS + (i / 1_000) as i64, &c)
}

fn synthetic_leaf(i: u64) -> Result<Hash, EvidenceError> {
    Ok(leaf_hash(&synthetic(i)?))
}

fn tile_row(id: TileId, hashes: &[Hash]) -> TileRow {
    TileRow { level: id.level as i32, idx: id.index as i64, hashes: tile_bytes(hashes) }
}

struct Built {
    tree: Tree,
    tiles: usize,
    hash_s: f64,
    write_s: f64,
}

/// The tree of `size` synthetic entries, every full tile written to `store`.
async fn build(store: &AnyStore, size: u64) -> Result<Built> {
    let mut tree = Tree::new();
    let mut full = Vec::new();
    let mut rows: Vec<TileRow> = Vec::with_capacity(TILE_BATCH + 8);
    let (mut tiles, mut write_s) = (0usize, 0.0f64);
    let started = Instant::now();
    for i in 0..size {
        tree.append(synthetic_leaf(i)?, &mut full);
        if full.is_empty() {
            continue;
        }
        rows.extend(full.drain(..).map(|(id, h)| tile_row(id, &h)));
        if rows.len() >= TILE_BATCH {
            let t = Instant::now();
            store.commit(&Batch { tiles: &rows, ..Batch::default() }).await?;
            write_s += t.elapsed().as_secs_f64();
            tiles += rows.len();
            rows.clear();
        }
    }
    let t = Instant::now();
    store.commit(&Batch { tiles: &rows, ..Batch::default() }).await?;
    write_s += t.elapsed().as_secs_f64();
    tiles += rows.len();
    let hash_s = started.elapsed().as_secs_f64() - write_s;
    Ok(Built { tree, tiles, hash_s, write_s })
}

/// Full tile `id` from the store.
async fn full_tile(store: &AnyStore, id: TileId) -> Result<Vec<Hash>> {
    let level = i32::try_from(id.level).context("tile level")?;
    let index = i64::try_from(id.index).context("tile index")?;
    let row = store
        .evidence_tiles(level, index, index + 1)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("tile {id:?} is missing from the store"))?;
    Ok(tile_hashes(&row.hashes)?)
}

/// Runs `f` over the tree's tiles as the server does (`suanwang_server::evidence::prove`: tiles
/// above the leaves' level kept in memory once read, the rest read from the store), and again
/// over the same tiles in memory. Returns the answer, the in-memory tiles, and the store reads.
async fn prove<T>(
    store: &AnyStore,
    upper: &UpperTiles,
    tree: &Tree,
    f: impl Fn(&Tiles<'_>) -> Result<T, EvidenceError>,
) -> Result<(T, u64)> {
    let (v, reads) = suanwang_server::evidence::prove(store, upper, tree, f).await?;
    Ok((v, reads))
}

/// The tiles a proof needs, all in memory (for the `_memory` figures): read outside the timing.
async fn in_memory<'a, T>(
    store: &AnyStore,
    tree: &'a Tree,
    f: impl Fn(&Tiles<'_>) -> Result<T, EvidenceError>,
) -> Result<Tiles<'a>> {
    let mut tiles = Tiles::new(tree);
    for _ in 0..64 {
        match f(&tiles) {
            Err(EvidenceError::MissingTile(id)) => tiles.add(id, full_tile(store, id).await?),
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(tiles),
        }
    }
    bail!("the proof needed more tiles than a tree has levels")
}

#[derive(Default)]
struct Timed {
    store_us: Vec<f64>,
    memory_us: Vec<f64>,
    reads: u64,
    failures: usize,
}

async fn inclusions(store: &AnyStore, upper: &UpperTiles, tree: &Tree, rng: &mut Rng) -> Result<Timed> {
    let (size, root) = (tree.size(), tree.root());
    let mut out = Timed::default();
    for _ in 0..PROOFS {
        let index = rng.below(size);
        let t = Instant::now();
        let (proof, reads) = prove(store, upper, tree, |s| inclusion_proof(s, index, size)).await?;
        out.store_us.push(t.elapsed().as_secs_f64() * 1e6);
        out.reads += reads;
        let tiles = in_memory(store, tree, |s| inclusion_proof(s, index, size)).await?;
        let t = Instant::now();
        let again = inclusion_proof(&tiles, index, size)?;
        out.memory_us.push(t.elapsed().as_secs_f64() * 1e6);
        let leaf = synthetic_leaf(index)?;
        if again != proof || verify_inclusion(&leaf, index, size, &proof, &root).is_err() {
            out.failures += 1;
        }
    }
    Ok(out)
}

async fn consistencies(store: &AnyStore, upper: &UpperTiles, tree: &Tree, rng: &mut Rng) -> Result<Timed> {
    let (size, root_new) = (tree.size(), tree.root());
    let mut out = Timed::default();
    for _ in 0..PROOFS {
        let old = 1 + rng.below(size - 1);
        // the old root, as a client has it from an older checkpoint (not timed)
        let root_old = in_memory(store, tree, |s| root(s, old)).await.and_then(|t| Ok(root(&t, old)?))?;
        let t = Instant::now();
        let (proof, reads) = prove(store, upper, tree, |s| consistency_proof(s, old, size)).await?;
        out.store_us.push(t.elapsed().as_secs_f64() * 1e6);
        out.reads += reads;
        let tiles = in_memory(store, tree, |s| consistency_proof(s, old, size)).await?;
        let t = Instant::now();
        let again = consistency_proof(&tiles, old, size)?;
        out.memory_us.push(t.elapsed().as_secs_f64() * 1e6);
        if again != proof || verify_consistency(old, size, &root_old, &root_new, &proof).is_err() {
            out.failures += 1;
        }
    }
    Ok(out)
}

struct Proved {
    built: Built,
    inclusion: Timed,
    consistency: Timed,
}

async fn proofs(dir: &Path, size: u64, rng: &mut Rng) -> Result<Proved> {
    let store = AnyStore::Sqlite(SqliteStore::open(dir).await?);
    store.migrate().await?;
    let t = Instant::now();
    let built = build(&store, size).await?;
    phase(
        "proof tree",
        t,
        &format!(
            "{size} leaves hashed ({:.1} s), {} full tiles written to SQLite ({:.1} s)",
            built.hash_s, built.tiles, built.write_s
        ),
    );
    let t = Instant::now();
    // as a server: upper tiles kept in memory once read (warm after the first proofs)
    let upper = UpperTiles::default();
    let inclusion = inclusions(&store, &upper, &built.tree, rng).await?;
    phase("inclusion proofs", t, &format!("{PROOFS} made from the store and verified"));
    let t = Instant::now();
    let consistency = consistencies(&store, &upper, &built.tree, rng).await?;
    phase("consistency proofs", t, &format!("{PROOFS} made from the store and verified"));
    Ok(Proved { built, inclusion, consistency })
}

// ---- audit -------------------------------------------------------------------------------

/// A log of `n` synthetic entries as static files (path → bytes), its tree and the roots of
/// its checkpoints.
type Files = (HashMap<String, Vec<u8>>, Tree, Vec<(u64, Hash)>);

fn audit_files(n: u64) -> Result<Files> {
    let mut files = HashMap::new();
    let mut tree = Tree::new();
    let mut full = Vec::new();
    let mut roots = Vec::new();
    let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(WIDTH as usize);
    for i in 0..n {
        let e = synthetic(i)?;
        tree.append(leaf_hash(&e), &mut full);
        chunk.push(e);
        if tree.size().is_multiple_of(AUDIT_ROOT_EVERY) {
            roots.push((tree.size(), tree.root()));
        }
        for (id, h) in full.drain(..) {
            let path = TilePath::Hashes { level: id.level, index: id.index, width: WIDTH };
            files.insert(path.to_path(), tile_bytes(&h));
        }
        if chunk.len() as u64 == WIDTH || i + 1 == n {
            let path = TilePath::Entries { index: i / WIDTH, width: chunk.len() as u64 };
            files.insert(path.to_path(), bundle(chunk.iter().map(Vec::as_slice))?);
            chunk.clear();
        }
    }
    // the right edge: every level's partial tile
    for (id, h) in tree.partial_tiles() {
        let path = TilePath::Hashes { level: id.level, index: id.index, width: h.len() as u64 };
        files.insert(path.to_path(), tile_bytes(h));
    }
    roots.push((tree.size(), tree.root()));
    Ok((files, tree, roots))
}

struct Audit {
    rate: f64,
    seconds: f64,
    tiles: u64,
    roots_checked: usize,
}

fn audit_run(n: u64) -> Result<Audit> {
    let t = Instant::now();
    let (files, tree, roots) = audit_files(n)?;
    phase("audit set-up", t, &format!("{n} entries as {} files in memory (not timed)", files.len()));
    let t = Instant::now();
    let done = audit(
        tree.size(),
        &tree.root(),
        &roots,
        |p| files.get(&p.to_path()).cloned().ok_or_else(|| EvidenceError::Proof(format!("{} is missing", p.to_path()))),
        |_| {},
    )?;
    let seconds = t.elapsed().as_secs_f64();
    phase("audit", t, &format!("{n} entries replayed, {} tiles compared", done.tiles));
    Ok(Audit {
        rate: n as f64 / seconds.max(f64::EPSILON),
        seconds,
        tiles: done.tiles,
        roots_checked: done.roots_checked,
    })
}

// ---- the bench ---------------------------------------------------------------------------

pub fn evidence(args: &EvidenceArgs) -> Result<()> {
    if args.appends == 0 {
        bail!("--appends: at least 1");
    }
    if args.proof_size < 2 {
        bail!("--proof-size: at least 2 (a consistency proof needs an older, smaller tree)");
    }
    if args.audit == 0 {
        bail!("--audit: at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let dir = std::env::temp_dir().join(format!("suanwang-bench-evidence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (append_dir, tile_dir) = (dir.join("appends"), dir.join("tiles"));
    for d in [&append_dir, &tile_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut rng = Rng(14);
    let stored = rt.block_on(async {
        let t = Instant::now();
        let a = appends(&append_dir, args.appends, &mut rng).await?;
        phase(
            "appends",
            t,
            &format!("{} entries durable on SQLite, batches of {BATCH}, {} checkpoints", args.appends, a.checkpoints),
        );
        let p = proofs(&tile_dir, args.proof_size, &mut rng).await?;
        anyhow::Ok((a, p))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (a, p) = stored?;
    let failures = p.inclusion.failures + p.consistency.failures;
    if failures > 0 {
        bail!(
            "{} inclusion and {} consistency proofs of {PROOFS} each did not verify",
            p.inclusion.failures,
            p.consistency.failures
        );
    }
    let au = audit_run(args.audit)?;
    let per_proof = |t: &Timed| t.reads as f64 / PROOFS as f64;
    let (incl_reads, cons_reads) = (per_proof(&p.inclusion), per_proof(&p.consistency));
    let incl_p50 = percentile(p.inclusion.store_us.clone(), 0.5).round();
    let incl_p99 = percentile(p.inclusion.store_us, 0.99).round();
    let incl_mem = percentile(p.inclusion.memory_us, 0.99).round();
    let cons_p50 = percentile(p.consistency.store_us.clone(), 0.5).round();
    let cons_p99 = percentile(p.consistency.store_us, 0.99).round();
    let cons_mem = percentile(p.consistency.memory_us, 0.99).round();
    let tenths = |s: f64| (s * 10.0).round() / 10.0;
    let out = json!({
        "store": "sqlite",
        "cores": cores,
        "batch": BATCH,
        "appends": args.appends,
        "appends_per_sec": a.rate.round(),
        "appends_seconds": tenths(a.seconds),
        // what the records of one group commit wait to be durable (and signed, when due)
        "append_batch_p99_us": a.batch_p99_us.round(),
        "record_bytes_avg": a.record_bytes.round(),
        "checkpoints": a.checkpoints,
        "checkpoint_gap_max_ms": a.checkpoint_gap_max_ms,
        "proof_size": args.proof_size,
        "proof_tiles_written": p.built.tiles,
        "proof_tree_hash_seconds": tenths(p.built.hash_s),
        "proof_tiles_write_seconds": tenths(p.built.write_s),
        "proofs": PROOFS,
        "proof_failures": failures,
        "inclusion_proof_us_p50": incl_p50,
        "inclusion_proof_us_p99": incl_p99,
        "inclusion_proof_us_p99_memory": incl_mem,
        "inclusion_tile_reads_avg": incl_reads,
        "consistency_proof_us_p50": cons_p50,
        "consistency_proof_us_p99": cons_p99,
        "consistency_proof_us_p99_memory": cons_mem,
        "consistency_tile_reads_avg": cons_reads,
        "audit": args.audit,
        "audit_entries_per_sec": au.rate.round(),
        "audit_seconds": (au.seconds * 100.0).round() / 100.0,
        "audit_tiles": au.tiles,
        "audit_roots_checked": au.roots_checked,
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "evidence: {:.0} durable appends/s on SQLite (batches of {BATCH}, p99 {:.0} µs a batch, {} checkpoints); \
             at {} entries, inclusion proof p99 {incl_p99} µs from the store ({incl_mem} µs in memory), \
             consistency proof p99 {cons_p99} µs ({cons_mem} µs in memory), {PROOFS} each, all verified; \
             audit {:.0} entries/s; {cores} cores",
            a.rate, a.batch_p99_us, a.checkpoints, args.proof_size, au.rate,
        );
    }
    Ok(())
}
