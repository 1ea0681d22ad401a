//! `suanwang evidence …` and `suanwang job trace` (issue 14, R6/R7): the log's key and
//! checkpoint, offline verification of a job's records or of two checkpoints, a full audit of
//! the log from its tiles (over HTTP or from a directory of static files), a static mirror, a
//! witness that cosigns checkpoints it found consistent, and the keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use suanwang_api as api;
use suanwang_evidence::EvidenceError;
use suanwang_evidence::entry::{Entry, audit as replay, unhex};
use suanwang_evidence::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use suanwang_evidence::note::{COSIGNATURE_V1, Checkpoint, ED25519, Note, Signer, Verifier};
use suanwang_evidence::tile::TilePath;

use crate::money_cmd::{get, post};
use crate::remote::Client;

/// A key given on the command line: the key itself, or a file holding it.
pub fn read_key(s: &str) -> Result<Verifier> {
    let text = if Path::new(s).is_file() {
        std::fs::read_to_string(s).with_context(|| format!("reading the key file {s}"))?
    } else {
        s.to_string()
    };
    Verifier::parse(text.trim()).map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

fn hash(s: &str, what: &str) -> Result<Hash> {
    B64.decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .with_context(|| format!("{what}: {s:?} is not a base64 SHA-256 hash"))
}

fn hashes(v: &[String], what: &str) -> Result<Vec<Hash>> {
    v.iter().map(|h| hash(h, what)).collect()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not what was expected", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A signing key file: created (mode 0600) with a fresh key named `name` when absent. Returns
/// the key's text.
pub fn ensure_signing_key(path: &Path, name: &str, alg: u8) -> Result<String> {
    if path.is_file() {
        let text = read_text(path)?;
        Signer::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(text.trim().to_string());
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let s = Signer::from_seed(name, alg, seed).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_private(path, &format!("{}\n", s.encode()))?;
    Ok(s.encode())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}

/// `evidence key`: the log's verifier key (one line, for `--key`), or all of it as JSON.
pub async fn key(c: &Client, json: bool) -> Result<ExitCode> {
    let k: api::EvidenceKey = match get(c, "/v1/evidence/key").await? {
        Ok(k) => k,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&k)?);
    } else {
        println!("{}", k.key);
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch(c: &Client, path: &str) -> Result<Vec<u8>> {
    let (status, bytes) = c.send(reqwest::Method::GET, path, None, None).await?;
    if status != 200 {
        bail!("{}{path}: HTTP {status}: {}", c.server, String::from_utf8_lossy(&bytes).trim());
    }
    Ok(bytes)
}

/// `evidence checkpoint`: the newest signed checkpoint, as served.
pub async fn checkpoint(c: &Client) -> Result<ExitCode> {
    print!("{}", String::from_utf8_lossy(&fetch(c, "/v1/evidence/checkpoint").await?));
    Ok(ExitCode::SUCCESS)
}

/// What `evidence verify` checks.
#[derive(Debug)]
pub struct VerifyArgs {
    pub key: String,
    pub witnesses: Vec<String>,
    pub quorum: usize,
    /// A job's bundle (`job trace ID --json`, `GET /v1/jobs/{id}/evidence`).
    pub bundle: Option<PathBuf>,
    /// A signed checkpoint (with `--entry` and `--proof`: inclusion; with `--old`: consistency).
    pub checkpoint: Option<PathBuf>,
    pub entry: Option<PathBuf>,
    pub old: Option<PathBuf>,
    pub proof: Option<PathBuf>,
}

fn open(note: &str, key: &Verifier, witnesses: &[Verifier], quorum: usize, what: &str) -> Result<Checkpoint> {
    let (c, n) = Checkpoint::open(note, key, witnesses, quorum).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let cosigned = n.verify(key, witnesses, 0).map_or(0, |v| v.len());
    eprintln!(
        "ok: {what}: {} entries, root {}, signed by {}{}",
        c.size,
        B64.encode(c.root),
        key.name(),
        if cosigned > 0 { format!(", cosigned by {cosigned} witness(es)") } else { String::new() }
    );
    Ok(c)
}

/// Checks one entry: canonical, opened by its salt and record (when given), and in the tree of
/// the checkpoint by its proof.
fn check_entry(c: &Checkpoint, index: u64, entry: &str, opening: Option<&api::Opening>, proof: &[Hash]) -> Result<()> {
    let parsed = Entry::parse(entry.as_bytes()).map_err(|e| anyhow::anyhow!("entry {index}: {e}"))?;
    if let Some(o) = opening {
        let salt: [u8; 32] = unhex(&o.salt)
            .and_then(|v| v.try_into().ok())
            .with_context(|| format!("entry {index}: the salt is not 64 hex digits"))?;
        parsed.opens(&salt, o.record.as_bytes()).map_err(|e| anyhow::anyhow!("entry {index}: {e}"))?;
    }
    verify_inclusion(&leaf_hash(entry.as_bytes()), index, c.size, proof, &c.root)
        .map_err(|e| anyhow::anyhow!("entry {index}: {e}"))
}

/// `evidence verify`: offline, with nothing but files and the log's key.
pub fn verify(a: &VerifyArgs) -> Result<ExitCode> {
    let key = read_key(&a.key).context("--key")?;
    if key.is_witness() {
        bail!("--key: {} is a witness's key; give the log's key (`suanwang evidence key`)", key.name());
    }
    let witnesses: Vec<Verifier> =
        a.witnesses.iter().map(|w| read_key(w).context("--witness")).collect::<Result<_>>()?;
    if a.quorum > witnesses.len() {
        bail!("--quorum {}: only {} --witness key(s) given", a.quorum, witnesses.len());
    }
    let outcome = (|| -> Result<()> {
        if let Some(b) = &a.bundle {
            let bundle: api::EvidenceBundle = read_json(b)?;
            let c = open(&bundle.checkpoint, &key, &witnesses, a.quorum, "the bundle's checkpoint")?;
            if bundle.entries.is_empty() {
                bail!("the bundle holds no entries");
            }
            for e in &bundle.entries {
                check_entry(&c, e.index, &e.entry, e.opening.as_ref(), &hashes(&e.proof, "proof")?)?;
                let opened = if e.opening.is_some() { "opened, " } else { "" };
                eprintln!(
                    "ok: entry {} ({}, {}): {opened}included in the tree of {}",
                    e.index, e.kind, e.at_ms, c.size
                );
            }
            println!("verified: {} entries against the checkpoint of {} entries", bundle.entries.len(), c.size);
            return Ok(());
        }
        let cp = a
            .checkpoint
            .as_ref()
            .context("give a BUNDLE, or --checkpoint FILE with --entry and --proof, or with --old and --proof")?;
        let c = open(&read_text(cp)?, &key, &witnesses, a.quorum, "--checkpoint")?;
        let proof_file = a.proof.as_ref().context("--proof FILE is needed")?;
        match (&a.entry, &a.old) {
            (Some(e), None) => {
                let e: api::EntryAnswer = read_json(e)?;
                let p: api::InclusionProof = read_json(proof_file)?;
                if p.index != e.index || p.size != c.size {
                    bail!(
                        "the proof is of entry {} in a tree of {}, not of entry {} in the checkpoint's {}",
                        p.index,
                        p.size,
                        e.index,
                        c.size
                    );
                }
                check_entry(&c, e.index, &e.entry, e.opening.as_ref(), &hashes(&p.hashes, "proof")?)?;
                println!("verified: entry {} is in the tree of {} entries", e.index, c.size);
            }
            (None, Some(old)) => {
                let o = open(&read_text(old)?, &key, &[], 0, "--old")?;
                let p: api::ConsistencyProof = read_json(proof_file)?;
                if p.from != o.size || p.to != c.size {
                    bail!("the proof is from {} to {}, the checkpoints are of {} and {}", p.from, p.to, o.size, c.size);
                }
                verify_consistency(o.size, c.size, &o.root, &c.root, &hashes(&p.hashes, "proof")?)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("verified: the tree of {} entries extends the tree of {}", c.size, o.size);
            }
            _ => bail!("give --entry FILE (inclusion) or --old FILE (consistency), one of them"),
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("verification FAILED: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Where an audit reads the log: a server or a directory of static files.
enum Source<'a> {
    Http(&'a Client, tokio::runtime::Handle),
    Dir(PathBuf),
}

impl Source<'_> {
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        match self {
            Source::Http(c, rt) => {
                tokio::task::block_in_place(|| rt.block_on(fetch(c, &format!("/v1/evidence/{path}"))))
            }
            Source::Dir(d) => {
                std::fs::read(d.join(path)).with_context(|| format!("reading {}", d.join(path).display()))
            }
        }
    }
}

/// Every checkpoint the log kept (its history of roots).
async fn history(c: &Client) -> Result<Vec<api::SignedCheckpoint>> {
    let mut out: Vec<api::SignedCheckpoint> = vec![];
    loop {
        let after = out.last().map_or(0, |c| c.size);
        let page: api::CheckpointList =
            match get(c, &format!("/v1/evidence/checkpoints?after={after}&limit=10000")).await? {
                Ok(p) => p,
                Err(_) => bail!("the checkpoint history could not be read"),
            };
        if page.checkpoints.is_empty() {
            return Ok(out);
        }
        out.extend(page.checkpoints);
    }
}

/// `evidence audit URL|DIR`.
pub async fn audit(
    c: Option<&Client>,
    target: &str,
    key: Option<&str>,
    witnesses: &[String],
    quorum: usize,
    json: bool,
) -> Result<ExitCode> {
    let dir = Path::new(target);
    let (source, history, served_key) = if dir.is_dir() {
        let h: Vec<api::SignedCheckpoint> = if dir.join("checkpoints.json").is_file() {
            read_json::<api::CheckpointList>(&dir.join("checkpoints.json"))?.checkpoints
        } else {
            vec![]
        };
        let k = if dir.join("key").is_file() { Some(read_text(&dir.join("key"))?) } else { None };
        (Source::Dir(dir.to_path_buf()), h, k)
    } else {
        let c = c.context("auditing a server needs --server (or SUANWANG_SERVER) and a token; or give a directory")?;
        if c.server.trim_end_matches('/') != target.trim_end_matches('/') {
            bail!("{target} is neither a directory nor the --server URL ({})", c.server);
        }
        let k: api::EvidenceKey = match get(c, "/v1/evidence/key").await? {
            Ok(k) => k,
            Err(code) => return Ok(code),
        };
        (Source::Http(c, tokio::runtime::Handle::current()), history(c).await?, Some(k.key))
    };
    let key = match key {
        Some(k) => read_key(k).context("--key")?,
        None => {
            let k = served_key.context("--key: the log's key is needed (no key file in the directory)")?;
            eprintln!("note: trusting the key the log itself serves ({}); pin it with --key", k.trim());
            read_key(k.trim())?
        }
    };
    let witnesses: Vec<Verifier> = witnesses.iter().map(|w| read_key(w).context("--witness")).collect::<Result<_>>()?;
    let started = std::time::Instant::now();
    let outcome = (|| -> Result<(Checkpoint, suanwang_evidence::entry::Audited, usize)> {
        let note = String::from_utf8(source.read("checkpoint")?).context("the checkpoint is not text")?;
        let newest = open(&note, &key, &witnesses, quorum, "the newest checkpoint")?;
        // every checkpoint of the history: signed by the log, and its root checked on the way
        let mut roots = Vec::with_capacity(history.len());
        for h in &history {
            let (c, _) = Checkpoint::open(&h.note, &key, &[], 0)
                .map_err(|e| anyhow::anyhow!("the checkpoint of {} entries: {e}", h.size))?;
            if c.size != h.size {
                bail!("the checkpoint listed for {} entries says {}", h.size, c.size);
            }
            roots.push((c.size, c.root));
        }
        let mut last = std::time::Instant::now();
        let done = replay(
            newest.size,
            &newest.root,
            &roots,
            |p: TilePath| source.read(&p.to_path()).map_err(|e| EvidenceError::Proof(format!("{e:#}"))),
            |n| {
                if !json && last.elapsed().as_secs() >= 2 {
                    eprintln!("  {n} of {} entries replayed", newest.size);
                    last = std::time::Instant::now();
                }
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((newest, done, roots.len()))
    })();
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        Ok((c, done, checked)) => {
            let rate = (c.size as f64 / secs.max(1e-9)).round();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true, "size": c.size, "root": B64.encode(c.root), "tiles": done.tiles,
                        "checkpoints_checked": checked, "roots_checked": done.roots_checked,
                        "seconds": secs, "entries_per_sec": rate,
                    })
                );
            } else {
                println!(
                    "audit passed: {} entries replayed from {} tiles to the signed root; {checked} checkpoints' signatures \
                     and {} roots checked ({secs:.1} s, {rate} entries/s)",
                    c.size, done.tiles, done.roots_checked
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": format!("{e:#}")}));
            }
            eprintln!("audit FAILED: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `evidence mirror DIR`: the log as static files (checkpoint, tiles, the checkpoint history
/// and the key), which `evidence audit DIR` replays with no server.
pub async fn mirror(c: &Client, dir: &Path) -> Result<ExitCode> {
    let note = fetch(c, "/v1/evidence/checkpoint").await?;
    let text = String::from_utf8(note.clone()).context("the checkpoint is not text")?;
    let n = Note::parse(&text).map_err(|e| anyhow::anyhow!("the checkpoint: {e}"))?;
    let cp = Checkpoint::parse(&n.text).map_err(|e| anyhow::anyhow!("the checkpoint: {e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let k: api::EvidenceKey = match get(c, "/v1/evidence/key").await? {
        Ok(k) => k,
        Err(code) => return Ok(code),
    };
    let mut files = 0u64;
    let mut paths: Vec<TilePath> = vec![];
    // the same walk as an audit: entries bundles and every hash tile of the tree of cp.size
    let mut tree = suanwang_evidence::tile::Tree::new();
    let mut full = vec![];
    let width = suanwang_evidence::tile::WIDTH;
    for b in 0..cp.size.div_ceil(width) {
        let w = width.min(cp.size - b * width);
        paths.push(TilePath::Entries { index: b, width: w });
        for _ in 0..w {
            tree.append([0; 32], &mut full);
        }
        for (id, _) in full.drain(..) {
            paths.push(TilePath::Hashes { level: id.level, index: id.index, width });
        }
    }
    for (id, h) in tree.partial_tiles() {
        paths.push(TilePath::Hashes { level: id.level, index: id.index, width: h.len() as u64 });
    }
    for p in &paths {
        let path = p.to_path();
        let bytes = fetch(c, &format!("/v1/evidence/{path}")).await?;
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        files += 1;
    }
    let list =
        api::CheckpointList { checkpoints: history(c).await?.into_iter().filter(|h| h.size <= cp.size).collect() };
    std::fs::write(dir.join("checkpoints.json"), serde_json::to_vec_pretty(&list)?)?;
    std::fs::write(dir.join("key"), format!("{}\n", k.key))?;
    std::fs::write(dir.join("checkpoint"), note)?;
    println!(
        "mirrored {} entries ({files} tiles, {} checkpoints) into {}",
        cp.size,
        list.checkpoints.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `evidence witness-key NAME --out FILE`: a witness's signing key (type 0x04); prints its
/// verifier key, which the log's operator passes to `serve --witness`.
pub fn witness_key(name: &str, out: &Path) -> Result<ExitCode> {
    if out.exists() {
        bail!("{} exists: a key is never overwritten", out.display());
    }
    let text = ensure_signing_key(out, name, COSIGNATURE_V1)?;
    let s = Signer::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", s.verifier().encode());
    Ok(ExitCode::SUCCESS)
}

/// `evidence rotate-key FILE`: a new log key with the same name (origin); the old file is kept
/// beside it as `FILE.retired-<ms>`; the new key signs from the server's next start.
pub fn rotate_key(file: &Path) -> Result<ExitCode> {
    let old = Signer::parse(&read_text(file)?).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let retired = file.with_extension(format!("key.retired-{}", jiff::Timestamp::now().as_millisecond()));
    std::fs::rename(file, &retired).with_context(|| format!("moving {} aside", file.display()))?;
    let text = ensure_signing_key(file, old.name(), ED25519)?;
    let new = Signer::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("old key (verifies checkpoints signed before): {}", old.verifier().encode());
    println!("new key (signs from the next start):         {}", new.verifier().encode());
    println!("the old signing key is kept in {}", retired.display());
    Ok(ExitCode::SUCCESS)
}

/// `evidence witness`: cosigns the newest checkpoint when it is consistent with the last one
/// this witness cosigned (kept in `state`), and sends the cosignature to the log.
pub async fn witness(c: &Client, key_file: &Path, state: &Path, log_key: Option<&str>) -> Result<ExitCode> {
    let signer = Signer::parse(&read_text(key_file)?).map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?;
    if !signer.verifier().is_witness() {
        bail!("{} is not a witness key (make one with `suanwang evidence witness-key`)", key_file.display());
    }
    let key = match log_key {
        Some(k) => read_key(k)?,
        None => {
            let k: api::EvidenceKey = match get(c, "/v1/evidence/key").await? {
                Ok(k) => k,
                Err(code) => return Ok(code),
            };
            read_key(&k.key)?
        }
    };
    let text = String::from_utf8(fetch(c, "/v1/evidence/checkpoint").await?).context("the checkpoint is not text")?;
    let (new, note) =
        Checkpoint::open(&text, &key, &[], 0).map_err(|e| anyhow::anyhow!("the log's checkpoint: {e}"))?;
    if state.is_file() {
        let (old, _) = Checkpoint::open(&read_text(state)?, &key, &[], 0)
            .map_err(|e| anyhow::anyhow!("{}: {e}", state.display()))?;
        if new.size < old.size {
            bail!("the log went back: {} entries now, {} cosigned before — refusing to cosign", new.size, old.size);
        }
        let p: api::ConsistencyProof =
            match get(c, &format!("/v1/evidence/proof/consistency?from={}&to={}", old.size, new.size)).await? {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
        verify_consistency(old.size, new.size, &old.root, &new.root, &hashes(&p.hashes, "proof")?)
            .map_err(|e| anyhow::anyhow!("the log is not consistent with what this witness cosigned: {e}"))?;
        eprintln!("ok: the tree of {} entries extends the tree of {} cosigned before", new.size, old.size);
    }
    let mut n = note;
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    n.add(&signer.sign(&n.text, now)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let a: api::CosignAnswer =
        match post(c, "/v1/evidence/cosignatures", &api::CosignRequest { note: n.encode() }).await? {
            Ok(a) => a,
            Err(code) => return Ok(code),
        };
    let tmp = state.with_extension("tmp");
    std::fs::write(&tmp, &a.note).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, state)?;
    println!(
        "cosigned the checkpoint of {} entries as {} (cosigners now: {})",
        a.size,
        signer.name(),
        a.cosigners.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// `job trace ID`: a job's records in the log — what happened, when, at which index — each
/// checked against the signed checkpoint with the log's key; `--json` prints the bundle that
/// `evidence verify` takes.
pub async fn job_trace(c: &Client, id: &str, json: bool) -> Result<ExitCode> {
    let b: api::EvidenceBundle = match get(c, &format!("/v1/jobs/{id}/evidence")).await? {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_bundle(&format!("job {id}"), &b)
}

/// A bundle's records, one line each, each checked against the bundle's checkpoint with the key
/// it names (exit 1 when one does not verify).
pub fn print_bundle(what: &str, b: &api::EvidenceBundle) -> Result<ExitCode> {
    let key = read_key(&b.key)?;
    let (cp, _) = Checkpoint::open(&b.checkpoint, &key, &[], 0).map_err(|e| anyhow::anyhow!("the checkpoint: {e}"))?;
    println!(
        "{what}: {} records in the evidence log (checkpoint of {} entries, key {})",
        b.entries.len(),
        cp.size,
        key.name()
    );
    let mut failed = false;
    for e in &b.entries {
        let ok = check_entry(&cp, e.index, &e.entry, e.opening.as_ref(), &hashes(&e.proof, "proof")?);
        let line = e.opening.as_ref().map_or_else(|| "(record not shown)".to_string(), |o| summary(&o.record));
        println!(
            "  #{:<8} {}  {}  {}",
            e.index,
            crate::remote::rfc3339(e.at_ms),
            if ok.is_ok() { "proved" } else { "NOT PROVED" },
            line
        );
        if let Err(err) = ok {
            failed = true;
            eprintln!("    {err:#}");
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One line about a job record: its commands, events and transfers by name.
fn summary(record: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(record) else { return record.chars().take(80).collect() };
    let names = |k: &str, field: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(|x| x[field].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut parts = vec![];
    if let Some(kind) = v["kind"].as_str() {
        // a command that is not about a job (a dataset registered or copied, a site, money)
        let what = v["body"]["dataset"].as_str().or_else(|| v["body"]["site"].as_str()).unwrap_or_default();
        let copies = v["body"]["record"]["replicas"].as_array().map_or(0, Vec::len);
        let copies = if copies > 0 { format!(" ({copies} replicas)") } else { String::new() };
        return format!("{kind} {what} by {}{copies}", v["actor"].as_str().unwrap_or("?"));
    }
    let commands = names("commands", "kind");
    if !commands.is_empty() {
        parts.push(format!("commands: {}", commands.join(", ")));
    }
    let mut events = names("events", "event");
    for e in v["events"].as_array().into_iter().flatten() {
        if e["event"] == "placed"
            && let Some(s) = e["site"].as_str()
            && let Some(i) = events.iter().position(|x| x == "placed")
        {
            events[i] = format!("placed at {s} ({})", e["mode"].as_str().unwrap_or("?"));
        }
    }
    if !events.is_empty() {
        parts.push(format!("events: {}", events.join(", ")));
    }
    let transfers = v["transfers"].as_array().map_or(0, Vec::len);
    if transfers > 0 {
        let fen: i64 = v["transfers"].as_array().into_iter().flatten().filter_map(|t| t["amount"].as_i64()).sum();
        parts.push(format!("{transfers} ledger transfers ({fen} fen moved)"));
    }
    if parts.is_empty() { "—".into() } else { parts.join("; ") }
}

/// Serve flags' `--witness`: keys or files, as verifier-key text.
pub fn witness_keys(given: &[String]) -> Result<Vec<String>> {
    given.iter().map(|w| read_key(w).map(|v| v.encode()).context("--witness")).collect()
}
