//! The crate checked against an independent verifier, `tests/oracle/verify.py`, written from
//! RFC 9162, C2SP tlog-tiles, signed-note, tlog-checkpoint and tlog-cosignature rather than
//! from this crate's code.
//!
//! The test grows a log as a server does ([`Tree`], each full tile stored as it fills) and, at
//! many sizes — every size to 24, a few hundred up to 2000, and the sizes around the 256- and
//! 65 536-leaf tile boundaries — serves what a server serves: roots, inclusion and consistency
//! proofs computed from [`Tiles`] (fetching each tile the proof names missing), partial tiles,
//! entry bundles and signed checkpoints; then every full tile and bundle of the final log, tile
//! paths, leaf and node hashes and entry openings. Each claim is written with whether it holds,
//! with a deliberately broken copy of many (`"expect": false`). The crate's own verifiers must
//! agree with every `expect` before the fixture is written, and the oracle must agree with
//! every one and say how many it checked.
//!
//! Fixture: JSON; hashes in lowercase hex, byte strings (entries, tiles, bundles) in standard
//! base64; `"entries"` is the whole log, from which the oracle recomputes everything.
#![allow(clippy::unwrap_used)] // a test that unwraps fails, naming the line

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use suanwang_evidence::EvidenceError;
use suanwang_evidence::entry::{Entry, commitment, entry, hex};
use suanwang_evidence::merkle::{self, Hash, Subtrees as _, leaf_hash, node_hash};
use suanwang_evidence::note::{COSIGNATURE_V1, Checkpoint, ED25519, Note, Signer, Verifier};
use suanwang_evidence::tile::{TileId, TilePath, Tiles, Tree, WIDTH, bundle, tile_bytes, tile_hashes, unbundle};

/// Entries in the log: past the first full level-1 tile (65 536) and the next level-0 tile.
const SIZE: u64 = 65_900;
const ORIGIN: &str = "suanwang.example/log";
const WITNESS: &str = "witness.example/w1";

/// splitmix64: random-looking, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What a reader with the right to see a record gets: the salt and the record.
struct Opening {
    index: usize,
    kind: &'static str,
    at_ms: i64,
    salt: [u8; 32],
    record: Vec<u8>,
}

/// The log's entries (all distinct), their leaf hashes, and the openings of some.
struct Log {
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    openings: Vec<Opening>,
}

fn make_log(rng: &mut Rng) -> Log {
    const KINDS: [&str; 4] = ["submit", "job.placed", "audit-7", "quota_set"];
    let mut entries = Vec::with_capacity(SIZE as usize);
    let mut openings = Vec::new();
    for i in 0..SIZE {
        let e = if i == 0 {
            Vec::new() // the empty entry
        } else if i == 777 {
            // the largest entry a bundle can hold
            let mut e = (i as u32).to_be_bytes().to_vec();
            e.resize(usize::from(u16::MAX), 0xa5);
            e
        } else if i % 5 == 0 {
            let kind = KINDS[(i / 5 % 4) as usize];
            let at_ms = 1_764_950_400_000 + i as i64 * 1_000;
            let salt: [u8; 32] = rng.bytes(32).try_into().unwrap();
            let n = rng.below(24) as usize;
            let record = format!("record {i}: {}", hex(&rng.bytes(n))).into_bytes();
            let e = entry(kind, at_ms, &commitment(&salt, &record)).unwrap();
            if i < 1_000 {
                openings.push(Opening { index: i as usize, kind, at_ms, salt, record });
            }
            e
        } else {
            // the index first: no two entries alike
            let n = rng.below(45) as usize;
            let mut e = (i as u32).to_be_bytes().to_vec();
            e.extend(rng.bytes(n));
            e
        };
        entries.push(e);
    }
    let leaves = entries.iter().map(|e| leaf_hash(e)).collect();
    Log { entries, leaves, openings }
}

/// A server at the tree's current size: proofs from its tiles, each tile the proof names
/// missing fetched from the store of full tiles and added, as an IO layer would.
struct Server<'a> {
    tree: &'a Tree,
    tiles: Tiles<'a>,
    store: &'a HashMap<TileId, Vec<Hash>>,
    roots: HashMap<u64, Hash>,
}

impl<'a> Server<'a> {
    fn new(tree: &'a Tree, store: &'a HashMap<TileId, Vec<Hash>>) -> Server<'a> {
        Server { tree, tiles: Tiles::new(tree), store, roots: HashMap::new() }
    }

    fn ask<T>(&mut self, f: impl Fn(&Tiles<'a>) -> Result<T, EvidenceError>) -> T {
        for _ in 0..256 {
            match f(&self.tiles) {
                Ok(v) => return v,
                Err(EvidenceError::MissingTile(id)) => {
                    let t = self.store.get(&id).unwrap_or_else(|| panic!("tile {id:?} was never stored"));
                    self.tiles.add(id, t.clone());
                }
                Err(e) => panic!("the server failed: {e}"),
            }
        }
        panic!("a proof kept asking for tiles")
    }

    /// The root at `size`, if the tree has grown that far.
    fn root(&mut self, size: u64) -> Option<Hash> {
        if size > self.tree.size() {
            return None;
        }
        if let Some(r) = self.roots.get(&size) {
            return Some(*r);
        }
        let r = self.ask(|t| merkle::root(t, size));
        self.roots.insert(size, r);
        Some(r)
    }
}

/// The fixture's cases, as JSON.
struct Cases {
    json: String,
    count: usize,
    refused: usize,
    rng: Rng,
}

impl Cases {
    /// Adds a case; the crate's own verdict (`says`) must be the one expected.
    fn add(&mut self, kind: &str, name: &str, expect: bool, says: bool, fields: &str) {
        assert_eq!(says, expect, "the crate itself disagrees with case {name}");
        if self.count > 0 {
            self.json.push_str(",\n");
        }
        let _ = write!(self.json, r#"{{"type":"{kind}","name":{},"expect":{expect},{fields}}}"#, js(name));
        self.count += 1;
        self.refused += usize::from(!expect);
    }

    /// One of `n` choices (of a way to break a claim, say).
    fn pick(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }
}

/// A JSON string.
fn js(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn hashes(p: &[Hash]) -> String {
    let quoted: Vec<String> = p.iter().map(|h| format!("\"{}\"", hex(h))).collect();
    format!("[{}]", quoted.join(","))
}

fn flip(h: &mut Hash, rng: &mut Rng) {
    let bit = rng.below(256);
    h[(bit / 8) as usize] ^= 1 << (bit % 8);
}

// ------------------------------------------------------------------------------- proofs

#[derive(Clone)]
struct Inclusion {
    leaf: Hash,
    index: u64,
    size: u64,
    proof: Vec<Hash>,
    root: Hash,
}

fn inclusion_case(out: &mut Cases, srv: &mut Server, name: &str, expect: bool, c: &Inclusion) {
    let says = merkle::verify_inclusion(&c.leaf, c.index, c.size, &c.proof, &c.root).is_ok()
        && srv.root(c.size) == Some(c.root);
    let fields = format!(
        r#""leaf":"{}","index":{},"size":{},"proof":{},"root":"{}""#,
        hex(&c.leaf),
        c.index,
        c.size,
        hashes(&c.proof),
        hex(&c.root)
    );
    out.add("inclusion", name, expect, says, &fields);
}

/// The proof of `index` in the tree of `size`, and a broken copy.
fn inclusion(out: &mut Cases, log: &Log, srv: &mut Server, index: u64, size: u64) {
    let proof = srv.ask(|t| merkle::inclusion_proof(t, index, size));
    let root = srv.root(size).unwrap();
    let good = Inclusion { leaf: log.leaves[index as usize], index, size, proof, root };
    let name = format!("inclusion/{index}-of-{size}@{}", srv.tree.size());
    inclusion_case(out, srv, &name, true, &good);
    let mut bad = good.clone();
    let how = match out.pick(8) {
        0 if !bad.proof.is_empty() => {
            let at = out.rng.below(bad.proof.len() as u64) as usize;
            flip(&mut bad.proof[at], &mut out.rng);
            "a-flipped-bit"
        }
        1 if !bad.proof.is_empty() => {
            bad.proof.pop();
            "one-hash-short"
        }
        2 => {
            bad.proof.push(log.leaves[out.rng.below(SIZE) as usize]);
            "one-hash-long"
        }
        3 => {
            bad.index = if bad.index ^ 1 < bad.size { bad.index ^ 1 } else { bad.index + 1 };
            "another-index"
        }
        4 => {
            bad.size = if bad.size > bad.index + 1 { bad.size - 1 } else { bad.size + 1 };
            if let Some(r) = srv.root(bad.size) {
                bad.root = r;
            }
            "another-size"
        }
        5 => {
            bad.leaf = log.leaves[((bad.index + 1) % SIZE) as usize];
            "another-leaf"
        }
        6 => {
            flip(&mut bad.root, &mut out.rng);
            "another-root"
        }
        7 if bad.proof.len() >= 2 => {
            let last = bad.proof.len() - 1;
            bad.proof.swap(0, last);
            "hashes-swapped"
        }
        _ => {
            flip(&mut bad.leaf, &mut out.rng);
            "a-flipped-leaf"
        }
    };
    inclusion_case(out, srv, &format!("{name}/{how}"), false, &bad);
}

#[derive(Clone)]
struct Consistency {
    old: u64,
    new: u64,
    old_root: Hash,
    new_root: Hash,
    proof: Vec<Hash>,
}

fn consistency_case(out: &mut Cases, srv: &mut Server, name: &str, expect: bool, c: &Consistency) {
    let says = merkle::verify_consistency(c.old, c.new, &c.old_root, &c.new_root, &c.proof).is_ok()
        && srv.root(c.old) == Some(c.old_root)
        && srv.root(c.new) == Some(c.new_root);
    let fields = format!(
        r#""old":{},"new":{},"old_root":"{}","new_root":"{}","proof":{}"#,
        c.old,
        c.new,
        hex(&c.old_root),
        hex(&c.new_root),
        hashes(&c.proof)
    );
    out.add("consistency", name, expect, says, &fields);
}

/// The proof that the tree of `new` extends the tree of `old`, and a broken copy.
fn consistency(out: &mut Cases, srv: &mut Server, old: u64, new: u64) {
    let proof = srv.ask(|t| merkle::consistency_proof(t, old, new));
    let good = Consistency { old, new, old_root: srv.root(old).unwrap(), new_root: srv.root(new).unwrap(), proof };
    let name = format!("consistency/{old}-to-{new}@{}", srv.tree.size());
    consistency_case(out, srv, &name, true, &good);
    let mut bad = good.clone();
    let how = match out.pick(8) {
        0 if !bad.proof.is_empty() => {
            let at = out.rng.below(bad.proof.len() as u64) as usize;
            flip(&mut bad.proof[at], &mut out.rng);
            "a-flipped-bit"
        }
        1 if !bad.proof.is_empty() => {
            bad.proof.pop();
            "one-hash-short"
        }
        3 if bad.old < bad.new => {
            bad.old += 1;
            bad.old_root = srv.root(bad.old).unwrap_or(bad.old_root);
            "another-old-size"
        }
        4 => {
            bad.new = if bad.new > bad.old { bad.new - 1 } else { bad.new + 1 };
            bad.new_root = srv.root(bad.new).unwrap_or(bad.new_root);
            "another-new-size"
        }
        5 => {
            flip(&mut bad.old_root, &mut out.rng);
            "another-old-root"
        }
        6 => {
            let other = if bad.new > 1 { bad.new - 1 } else { bad.new + 1 };
            bad.new_root = srv.root(other).unwrap_or([7; 32]);
            "another-new-root"
        }
        7 if !bad.proof.is_empty() => {
            bad.proof.remove(0);
            "first-hash-dropped"
        }
        _ => {
            bad.proof.push(bad.new_root);
            "one-hash-long"
        }
    };
    consistency_case(out, srv, &format!("{name}/{how}"), false, &bad);
}

// -------------------------------------------------------------------- tiles and bundles

/// Whether a tile (or bundle) of `width` at `index` is served for a tree of `size`.
fn shape_ok(level: u32, index: u64, width: u64, size: u64) -> bool {
    let count = size.checked_shr(8 * level).unwrap_or(0);
    if width == WIDTH {
        index.checked_add(1).and_then(|n| n.checked_mul(WIDTH)).is_some_and(|end| end <= count)
    } else {
        index == count / WIDTH && width == count % WIDTH
    }
}

fn tile_case(out: &mut Cases, srv: &mut Server, name: &str, expect: bool, path: &str, size: u64, data: &[u8]) {
    let says = match TilePath::parse(path) {
        Ok(TilePath::Hashes { level, index, width })
            if size <= srv.tree.size() && shape_ok(level, index, width, size) =>
        {
            tile_hashes(data).is_ok_and(|hs| {
                hs.len() as u64 == width
                    && hs
                        .iter()
                        .enumerate()
                        .all(|(i, h)| *h == srv.ask(|t| t.subtree(level * 8, index * WIDTH + i as u64)))
            })
        }
        _ => false,
    };
    let fields = format!(r#""path":{},"size":{size},"data":"{}""#, js(path), B64.encode(data));
    out.add("tile", name, expect, says, &fields);
}

fn bundle_case(out: &mut Cases, log: &Log, name: &str, expect: bool, path: &str, size: u64, data: &[u8]) {
    let says = match TilePath::parse(path) {
        Ok(TilePath::Entries { index, width }) if size <= SIZE && shape_ok(0, index, width, size) => unbundle(data)
            .is_ok_and(|es| {
                es.len() as u64 == width
                    && es.iter().enumerate().all(|(i, e)| *e == log.entries[(index * WIDTH) as usize + i].as_slice())
            }),
        _ => false,
    };
    let fields = format!(r#""path":{},"size":{size},"data":"{}""#, js(path), B64.encode(data));
    out.add("bundle", name, expect, says, &fields);
}

/// The hash tile at `(level, index)` as served at `size`, and (when `corrupt`) a broken copy.
fn tile(out: &mut Cases, srv: &mut Server, level: u32, index: u64, hs: &[Hash], size: u64, corrupt: bool) {
    let path = TilePath::Hashes { level, index, width: hs.len() as u64 }.to_path();
    let data = tile_bytes(hs);
    tile_case(out, srv, &format!("tile/{path}@{size}"), true, &path, size, &data);
    if !corrupt {
        return;
    }
    let mut bad = data.clone();
    let mut bad_path = path.clone();
    let mut bad_size = size;
    let how = match out.pick(4) {
        0 => {
            let at = out.rng.below(bad.len() as u64) as usize;
            bad[at] ^= 0x20;
            "a-changed-byte"
        }
        1 => {
            bad.truncate(bad.len() - 32);
            "one-hash-short"
        }
        2 if level == 0 && hs.len() as u64 != WIDTH => {
            bad_size = size + 1;
            "served-for-another-size"
        }
        _ => {
            bad_path = TilePath::Hashes { level, index: index + 1, width: hs.len() as u64 }.to_path();
            "under-another-index"
        }
    };
    tile_case(out, srv, &format!("tile/{path}@{size}/{how}"), false, &bad_path, bad_size, &bad);
}

/// The entry bundle `index` of `width` entries, and (when `corrupt`) a broken copy.
fn entry_bundle(out: &mut Cases, log: &Log, index: u64, width: u64, size: u64, corrupt: bool) {
    let lo = (index * WIDTH) as usize;
    let entries: Vec<&[u8]> = log.entries[lo..lo + width as usize].iter().map(Vec::as_slice).collect();
    let path = TilePath::Entries { index, width }.to_path();
    let data = bundle(entries.iter().copied()).unwrap();
    bundle_case(out, log, &format!("bundle/{path}@{size}"), true, &path, size, &data);
    if !corrupt {
        return;
    }
    let mut bad = data.clone();
    let how = match out.pick(5) {
        0 => {
            bad.pop();
            "truncated"
        }
        1 if entries.len() >= 2 => {
            let mut swapped = entries.clone();
            swapped.swap(0, 1);
            bad = bundle(swapped).unwrap();
            "entries-swapped"
        }
        2 => {
            bad[1] = bad[1].wrapping_add(1);
            "a-length-changed"
        }
        4 if bad.len() > 2 => {
            let at = 2 + out.rng.below((bad.len() - 2) as u64) as usize;
            bad[at] ^= 0x01;
            "a-changed-byte"
        }
        _ => {
            bad.extend([0, 0]);
            "an-entry-too-many"
        }
    };
    bundle_case(out, log, &format!("bundle/{path}@{size}/{how}"), false, &path, size, &bad);
}

// ---------------------------------------------------------------------------- checkpoints

struct Keys {
    log: Signer,
    witness: Signer,
    impostor: Signer,
    log_v: Verifier,
    witness_v: Verifier,
    log_pub: [u8; 32],
    witness_pub: [u8; 32],
}

fn keys(rng: &mut Rng) -> Keys {
    let seed = |rng: &mut Rng| -> [u8; 32] { rng.bytes(32).try_into().unwrap() };
    let (ls, ws, is) = (seed(rng), seed(rng), seed(rng));
    let log = Signer::from_seed(ORIGIN, ED25519, ls).unwrap();
    let witness = Signer::from_seed(WITNESS, COSIGNATURE_V1, ws).unwrap();
    // the public keys straight from RFC 8032 (ed25519-dalek), not through the crate
    let public = |s: [u8; 32]| ed25519_dalek::SigningKey::from_bytes(&s).verifying_key().to_bytes();
    Keys {
        log_v: log.verifier(),
        witness_v: witness.verifier(),
        log,
        witness,
        impostor: Signer::from_seed(ORIGIN, ED25519, is).unwrap(),
        log_pub: public(ls),
        witness_pub: public(ws),
    }
}

#[derive(Clone)]
struct Signed {
    note: String,
    size: u64,
    root: Hash,
    witness_time: Option<u64>,
}

fn checkpoint_case(out: &mut Cases, srv: &mut Server, keys: &Keys, name: &str, expect: bool, c: &Signed) {
    let ws: Vec<Verifier> = c.witness_time.map(|_| keys.witness_v.clone()).into_iter().collect();
    let says = match Checkpoint::open(&c.note, &keys.log_v, &ws, ws.len()) {
        Ok((cp, note)) => {
            let times = note.verify(&keys.log_v, &ws, ws.len()).unwrap();
            cp.origin == ORIGIN
                && cp.size == c.size
                && cp.root == c.root
                && srv.root(c.size) == Some(c.root)
                && times.iter().all(|(_, t)| Some(*t) == c.witness_time)
        }
        Err(_) => false,
    };
    let witness = match c.witness_time {
        Some(t) => format!(
            r#"{{"name":{},"public":"{}","vkey":{},"time":{t}}}"#,
            js(WITNESS),
            hex(&keys.witness_pub),
            js(&keys.witness_v.encode())
        ),
        None => "null".to_string(),
    };
    let fields = format!(
        r#""note":{},"origin":{},"size":{},"root":"{}","log_key":{{"name":{},"public":"{}","vkey":{}}},"witness":{witness}"#,
        js(&c.note),
        js(ORIGIN),
        c.size,
        hex(&c.root),
        js(ORIGIN),
        hex(&keys.log_pub),
        js(&keys.log_v.encode())
    );
    out.add("checkpoint", name, expect, says, &fields);
}

/// The signed checkpoint at the tree's size (some cosigned, some with an extension line),
/// and a broken copy.
fn checkpoint(out: &mut Cases, srv: &mut Server, keys: &Keys) {
    let (size, root) = (srv.tree.size(), srv.tree.root());
    let extensions = if out.pick(7) == 0 { vec!["suanwang/region qingyang".to_string()] } else { vec![] };
    let cp = Checkpoint { origin: ORIGIN.into(), size, root, extensions };
    let mut note = cp.sign(&keys.log);
    let witness_time = (out.pick(5) == 0).then_some(1_764_950_400 + size);
    if let Some(wt) = witness_time {
        let mut n = Note::parse(&note).unwrap();
        n.add(&keys.witness.sign(&n.text, wt)).unwrap();
        note = n.encode();
    }
    let good = Signed { note, size, root, witness_time };
    let name = format!("checkpoint/{size}");
    checkpoint_case(out, srv, keys, &name, true, &good);
    let mut bad = good.clone();
    let how = match out.pick(8) {
        0 => {
            let mut n = Note::parse(&good.note).unwrap();
            let at = out.rng.below(n.sigs[0].bytes.len() as u64) as usize;
            n.sigs[0].bytes[at] ^= 0x04;
            bad.note = n.encode();
            "the-signature-changed"
        }
        1 => {
            // another size and its true root under the old signatures
            let n = Note::parse(&good.note).unwrap();
            bad.size = size - 1;
            bad.root = srv.root(size - 1).unwrap();
            let text = Checkpoint { size: bad.size, root: bad.root, ..cp.clone() }.body();
            bad.note = Note { text, sigs: n.sigs }.encode();
            "the-body-changed"
        }
        2 => {
            bad.note = cp.sign(&keys.impostor);
            bad.witness_time = None;
            "signed-by-another-key-of-the-same-name"
        }
        3 => {
            // the log's key, signing a root the log never had
            flip(&mut bad.root, &mut out.rng);
            bad.note = Checkpoint { root: bad.root, ..cp.clone() }.sign(&keys.log);
            bad.witness_time = None;
            "a-root-the-log-never-had"
        }
        4 => {
            bad.note = good.note.replace("\n\u{2014} ", "\n-- ");
            "no-em-dash"
        }
        5 => {
            bad.size = size + 1;
            "claimed-for-another-size"
        }
        6 => {
            match good.witness_time {
                Some(wt) => bad.witness_time = Some(wt + 1),
                None => {
                    let mut n = Note::parse(&good.note).unwrap();
                    n.add(&keys.witness.sign("another log\n1\nAAAA\n", 1)).unwrap();
                    bad.note = n.encode();
                    bad.witness_time = Some(1);
                }
            }
            "the-cosignature-does-not-fit"
        }
        _ => {
            bad.note = good.note.replacen(&format!("\u{2014} {ORIGIN} "), &format!("\u{2014} {ORIGIN} !"), 1);
            "not-base64"
        }
    };
    checkpoint_case(out, srv, keys, &format!("{name}/{how}"), false, &bad);
}

// ------------------------------------------------------------------------------ a snapshot

fn root_case(out: &mut Cases, srv: &mut Server, name: &str, expect: bool, size: u64, root: &Hash) {
    let says = srv.root(size) == Some(*root);
    out.add("root", name, expect, says, &format!(r#""size":{size},"root":"{}""#, hex(root)));
}

/// Everything a server at the tree's current size serves.
fn snapshot(out: &mut Cases, log: &Log, srv: &mut Server, keys: &Keys, previous: Option<u64>) {
    let tree = srv.tree;
    let s = tree.size();
    let root = tree.root();
    assert_eq!(srv.root(s), Some(root), "the tree's root and its tiles' differ at {s}");
    root_case(out, srv, &format!("root/{s}"), true, s, &root);
    let mut bad = root;
    if out.pick(2) == 0 && s > 1 {
        root_case(out, srv, &format!("root/{s}/claimed-for-{}", s - 1), false, s - 1, &bad);
    } else {
        flip(&mut bad, &mut out.rng);
        root_case(out, srv, &format!("root/{s}/a-flipped-bit"), false, s, &bad);
    }

    // inclusion: a random entry, the last, one at a tile boundary, and one in an older tree
    let mut picks = vec![out.rng.below(s), s - 1];
    let boundary = [0, 255, 256, 65_535, 65_536][out.pick(5) as usize];
    if boundary < s {
        picks.push(boundary);
    }
    for index in picks {
        inclusion(out, log, srv, index, s);
    }
    let older = 1 + out.rng.below(s);
    let index = out.rng.below(older);
    inclusion(out, log, srv, index, older);

    // consistency: from the last checkpoint, from a random size, from a power of two, between
    // two older trees, and now and then from the size itself
    let mut olds = vec![1 + out.rng.below(s), 1 << out.rng.below(u64::from(s.ilog2()) + 1)];
    olds.extend(previous);
    if out.pick(8) == 0 {
        olds.push(s);
    }
    for old in olds {
        consistency(out, srv, old, s);
    }
    let new = 1 + out.rng.below(s);
    let old = 1 + out.rng.below(new);
    consistency(out, srv, old, new);

    // the partial tiles of every level, and the partial entry bundle
    let corrupt = out.pick(3) == 0;
    let mut level = 0;
    loop {
        let (index, hs) = tree.partial(level);
        if index == 0 && hs.is_empty() {
            break;
        }
        if !hs.is_empty() {
            tile(out, srv, level, index, hs, s, corrupt && level == 0);
        }
        level += 1;
    }
    if !s.is_multiple_of(WIDTH) && out.pick(2) == 0 {
        entry_bundle(out, log, s / WIDTH, s % WIDTH, s, corrupt);
    }

    checkpoint(out, srv, keys);
}

/// Small trees, a few hundred up to 2000, and the sizes around tile boundaries.
fn sizes(rng: &mut Rng) -> BTreeSet<u64> {
    let mut s: BTreeSet<u64> = (1..=24).collect();
    for _ in 0..220 {
        s.insert(25 + rng.below(1_976));
    }
    for k in [1, 2, 3, 4, 7, 8, 16, 255, 256, 257] {
        s.extend([k * WIDTH - 1, k * WIDTH, k * WIDTH + 1]);
    }
    for _ in 0..40 {
        s.insert(2_001 + rng.below(SIZE - 2_001));
    }
    s.insert(SIZE);
    s
}

// ------------------------------------------------------------------ paths, hashes, entries

fn tile_path_case(out: &mut Cases, name: &str, expect: bool, path: &str, names: Option<TilePath>) {
    let says = TilePath::parse(path).ok() == names;
    let names = match names {
        None => "null".to_string(),
        Some(TilePath::Hashes { level, index, width }) => {
            format!(r#"{{"entries":false,"level":{level},"index":{index},"width":{width}}}"#)
        }
        Some(TilePath::Entries { index, width }) => {
            format!(r#"{{"entries":true,"level":null,"index":{index},"width":{width}}}"#)
        }
    };
    out.add("tile_path", name, expect, says, &format!(r#""path":{},"names":{names}"#, js(path)));
}

fn tile_paths(out: &mut Cases) {
    let indexes =
        [0, 1, 9, 10, 99, 999, 1_000, 1_001, 123_456, 1_234_067, 999_999_999, 1_000_000_000, u64::MAX / 2, u64::MAX];
    let mut named = Vec::new();
    for width in [1, 7, 255, WIDTH] {
        for index in indexes {
            for level in [0, 1, 2, 5, 63] {
                named.push(TilePath::Hashes { level, index, width });
            }
            named.push(TilePath::Entries { index, width });
        }
    }
    for (i, p) in named.iter().enumerate() {
        let path = p.to_path();
        tile_path_case(out, &format!("tile-path/{path}"), true, &path, Some(*p));
        if i % 4 == 0 {
            // the path claimed for another tile
            let other = match *p {
                TilePath::Hashes { level, index, width } if i % 8 == 0 => {
                    TilePath::Hashes { level: (level + 1) % 64, index, width }
                }
                TilePath::Hashes { level, index, width } => {
                    TilePath::Hashes { level, index, width: if width == WIDTH { 1 } else { width + 1 } }
                }
                TilePath::Entries { index, width } => TilePath::Entries { index: index ^ 1, width },
            };
            tile_path_case(out, &format!("tile-path/{path}/names-another"), false, &path, Some(other));
        }
    }
    let refused = [
        "tile/0/1234",
        "tile/0/x1/234",
        "tile/0/x001",
        "tile/0/001/002",
        "tile/0/x000/001",
        "tile/0/00",
        "tile/0/0000",
        "tile/0/",
        "tile/0",
        "tile//000",
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/007",
        "tile/0/000.p/",
        "tile/0/000.p/5/6",
        "tile/0/000/",
        "tile/entries/x000/000",
        "tile/entries/1",
        "tiles/0/000",
        "/tile/0/000",
        "tile/0/-01",
        "tile/0/0a0",
    ];
    for path in refused {
        tile_path_case(out, &format!("tile-path/{path}/refused"), true, path, None);
    }
    // a malformed path claimed for the tile it seems to name
    tile_path_case(
        out,
        "tile-path/tile/0/1234/claimed",
        false,
        "tile/0/1234",
        Some(TilePath::Hashes { level: 0, index: 1234, width: WIDTH }),
    );
    tile_path_case(
        out,
        "tile-path/tile/0/x000/001/claimed",
        false,
        "tile/0/x000/001",
        Some(TilePath::Hashes { level: 0, index: 1, width: WIDTH }),
    );
}

fn hash_cases(out: &mut Cases, log: &Log) {
    for i in [0usize, 1, 2, 3, 4, 5, 6, 7, 777] {
        let (e, h) = (&log.entries[i], log.leaves[i]);
        let fields = |h: &Hash| format!(r#""entry":"{}","hash":"{}""#, B64.encode(e), hex(h));
        out.add("leaf", &format!("leaf/{i}"), true, leaf_hash(e) == h, &fields(&h));
        let other = log.leaves[i + 1];
        out.add("leaf", &format!("leaf/{i}/another-entry's"), false, leaf_hash(e) == other, &fields(&other));
    }
    for i in [0usize, 2, 4, 776] {
        let (l, r) = (log.leaves[i], log.leaves[i + 1]);
        let fields = |h: &Hash| format!(r#""left":"{}","right":"{}","hash":"{}""#, hex(&l), hex(&r), hex(h));
        let h = node_hash(&l, &r);
        out.add("node", &format!("node/{i}"), true, true, &fields(&h));
        let swapped = node_hash(&r, &l);
        out.add("node", &format!("node/{i}/children-swapped"), false, swapped == h, &fields(&swapped));
    }
}

fn entry_case(out: &mut Cases, name: &str, expect: bool, o: &Opening, bytes: &[u8], salt: &[u8; 32], record: &[u8]) {
    let says =
        Entry::parse(bytes).is_ok_and(|e| e.kind == o.kind && e.at_ms == o.at_ms && e.opens(salt, record).is_ok());
    let fields = format!(
        r#""kind":{},"at_ms":{},"salt":"{}","record":"{}","entry":"{}""#,
        js(o.kind),
        o.at_ms,
        hex(salt),
        B64.encode(record),
        B64.encode(bytes)
    );
    out.add("entry", name, expect, says, &fields);
}

fn entry_cases(out: &mut Cases, log: &Log) {
    for (k, o) in log.openings.iter().enumerate() {
        let bytes = &log.entries[o.index];
        let name = format!("entry/{}", o.index);
        entry_case(out, &name, true, o, bytes, &o.salt, &o.record);
        if k % 2 == 1 {
            continue;
        }
        match k / 2 % 3 {
            0 => {
                let mut record = o.record.clone();
                record.push(b'!');
                entry_case(out, &format!("{name}/another-record"), false, o, bytes, &o.salt, &record);
            }
            1 => {
                let mut salt = o.salt;
                salt[31] ^= 1;
                entry_case(out, &format!("{name}/another-salt"), false, o, bytes, &salt, &o.record);
            }
            _ => {
                let spaced = String::from_utf8(bytes.clone()).unwrap().replace(':', ": ");
                entry_case(out, &format!("{name}/not-canonical"), false, o, spaced.as_bytes(), &o.salt, &o.record);
            }
        }
    }
}

// ----------------------------------------------------------------------------------- test

#[test]
fn the_independent_oracle_agrees_with_every_case() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("skipped: python3 is absent");
        return;
    }
    let started = Instant::now();
    let mut rng = Rng(0x5375_616e_7761_6e67); // "Suanwang"
    let log = make_log(&mut rng);
    let keys = keys(&mut rng);
    let snapshots = sizes(&mut rng);
    let mut out = Cases { json: String::new(), count: 0, refused: 0, rng };

    // grow the log as a server does, serving at each size of `snapshots`
    let mut tree = Tree::new();
    let mut store: HashMap<TileId, Vec<Hash>> = HashMap::new();
    let mut full = Vec::new();
    let mut previous = None;
    for leaf in &log.leaves {
        tree.append(*leaf, &mut full);
        store.extend(full.drain(..));
        if snapshots.contains(&tree.size()) {
            let mut srv = Server::new(&tree, &store);
            snapshot(&mut out, &log, &mut srv, &keys, previous);
            previous = Some(tree.size());
        }
    }

    // the final log: the empty tree's root, every full tile and every entry bundle
    let mut srv = Server::new(&tree, &store);
    let empty = merkle::empty_root();
    root_case(&mut out, &mut srv, "root/0", true, 0, &empty);
    let mut ids: Vec<TileId> = store.keys().copied().collect();
    ids.sort_unstable();
    for (i, id) in ids.iter().enumerate() {
        tile(&mut out, &mut srv, id.level, id.index, &store[id], SIZE, i % 16 == 3);
    }
    for b in 0..SIZE.div_ceil(WIDTH) {
        entry_bundle(&mut out, &log, b, WIDTH.min(SIZE - b * WIDTH), SIZE, b % 16 == 5);
    }
    tile_paths(&mut out);
    hash_cases(&mut out, &log);
    entry_cases(&mut out, &log);

    let mut fixture = String::with_capacity(out.json.len() + 8 * log.entries.len() * 8);
    fixture.push_str("{\"format\":\"suanwang-evidence-oracle/1\",\n\"entries\":[");
    for (i, e) in log.entries.iter().enumerate() {
        if i > 0 {
            fixture.push(',');
        }
        fixture.push('"');
        fixture.push_str(&B64.encode(e));
        fixture.push('"');
    }
    fixture.push_str("],\n\"cases\":[\n");
    fixture.push_str(&out.json);
    fixture.push_str("\n]}\n");
    let dir = std::env::temp_dir().join(format!("suanwang-evidence-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fixture.json");
    std::fs::write(&path, &fixture).unwrap();
    let built = started.elapsed();
    let checking = Instant::now();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/verify.py");
    let run = Command::new("python3").arg(&script).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!(
        "{} cases ({} expected to be refused), {} MB, built in {built:.1?}, checked in {:.1?}",
        out.count,
        out.refused,
        fixture.len() / 1_000_000,
        checking.elapsed()
    );
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(run.status.success(), "the oracle disagrees (fixture kept at {}): {stderr}", path.display());
    let checked: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("oracle: checked ")?.strip_suffix(" cases")?.parse().ok())
        .unwrap_or_else(|| panic!("the oracle did not say how many cases it checked: {stdout}"));
    assert_eq!(checked, out.count, "the oracle checked {checked} cases of the {} written", out.count);
    std::fs::remove_dir_all(&dir).unwrap();
}
