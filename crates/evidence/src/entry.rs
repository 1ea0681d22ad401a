//! The log's entries, and the audit that replays them.
//!
//! An entry says *what kind* of record and *when*, in the clear, and commits to the record
//! itself: `{"kind":"submit","at_ms":1764950400000,"commitment":"<64 hex>"}` where the
//! commitment is `SHA-256("suanwang/evidence/v1\n" ‖ salt ‖ record)` with a 32-byte random
//! salt per entry. The public log thus shows that records exist and were never rewritten,
//! not what they say; whoever may see a record (its tenant, the regulator) gets its *opening*
//! — the salt and the record — and checks it against the entry, and the entry against a
//! checkpoint. Without the salt a record cannot be guessed from its commitment, even when its
//! possible values are few.

use sha2::{Digest, Sha256};

use crate::EvidenceError;
use crate::merkle::{Hash, leaf_hash};
use crate::tile::{TileId, TilePath, Tree, WIDTH, tile_hashes, unbundle};

const DOMAIN: &[u8] = b"suanwang/evidence/v1\n";

/// The commitment to a record under a salt.
pub fn commitment(salt: &[u8; 32], record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(salt);
    h.update(record);
    h.finalize().into()
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Bytes of lower- or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// An entry's public bytes. `kind` is a word of `[a-z0-9._-]`.
pub fn entry(kind: &str, at_ms: i64, commitment: &Hash) -> Result<Vec<u8>, EvidenceError> {
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)) {
        return Err(EvidenceError::Malformed {
            what: "entry kind",
            why: format!("{kind:?} is not a word of [a-z0-9._-]"),
        });
    }
    Ok(format!(r#"{{"kind":"{kind}","at_ms":{at_ms},"commitment":"{}"}}"#, hex(commitment)).into_bytes())
}

/// The parts of an entry written by [`entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub at_ms: i64,
    pub commitment: Hash,
}

impl Entry {
    pub fn parse(b: &[u8]) -> Result<Entry, EvidenceError> {
        let bad = |why: &str| EvidenceError::Malformed { what: "entry", why: why.to_string() };
        let s = std::str::from_utf8(b).map_err(|_| bad("not UTF-8"))?;
        let rest = s.strip_prefix(r#"{"kind":""#).ok_or_else(|| bad("no kind"))?;
        let (kind, rest) = rest.split_once(r#"","at_ms":"#).ok_or_else(|| bad("no at_ms"))?;
        let (at, rest) = rest.split_once(r#","commitment":""#).ok_or_else(|| bad("no commitment"))?;
        let c = rest.strip_suffix(r#""}"#).ok_or_else(|| bad("not closed"))?;
        let at_ms: i64 = at.parse().map_err(|_| bad("at_ms is not an integer"))?;
        let commitment: Hash =
            unhex(c).and_then(|v| v.try_into().ok()).ok_or_else(|| bad("the commitment is not 32 bytes of hex"))?;
        let e = Entry { kind: kind.to_string(), at_ms, commitment };
        // exactly the bytes `entry` writes: one encoding per entry
        if entry(&e.kind, e.at_ms, &e.commitment)? != b {
            return Err(bad("not in canonical form"));
        }
        Ok(e)
    }

    /// Checks an opening: the salt and record this entry commits to.
    pub fn opens(&self, salt: &[u8; 32], record: &[u8]) -> Result<(), EvidenceError> {
        if commitment(salt, record) == self.commitment {
            Ok(())
        } else {
            Err(EvidenceError::Proof("the record and salt do not match the entry's commitment".into()))
        }
    }
}

/// What an audit found: the tree it rebuilt and the roots it checked on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    pub size: u64,
    pub root: Hash,
    pub tiles: u64,
    pub roots_checked: usize,
}

/// Replays a log of `size` entries from its tiles: every entry bundle is read, every leaf
/// hashed, every hash tile (full ones and the partial right edge) recomputed and compared with
/// the one served, and the root at each of `roots` (size → root, e.g. every checkpoint the
/// log issued) and at `size` compared with the one given. `fetch` reads a tile (from files or
/// a server). The first difference is returned, naming the tile or entry.
pub fn audit(
    size: u64,
    root: &Hash,
    roots: &[(u64, Hash)],
    mut fetch: impl FnMut(TilePath) -> Result<Vec<u8>, EvidenceError>,
    mut progress: impl FnMut(u64),
) -> Result<Audited, EvidenceError> {
    let mut tree = Tree::new();
    let mut full = Vec::new();
    let mut roots: Vec<(u64, Hash)> = roots.iter().copied().filter(|(s, _)| *s <= size).collect();
    roots.sort_unstable();
    roots.dedup();
    let mut next_root = 0usize;
    let mut tiles = 0u64;
    let check_root = |tree: &Tree, next: &mut usize, roots: &[(u64, Hash)]| -> Result<(), EvidenceError> {
        while let Some((s, r)) = roots.get(*next) {
            if *s > tree.size() {
                break;
            }
            if *s == tree.size() && tree.root() != *r {
                return Err(EvidenceError::Proof(format!(
                    "the root of the tree of {s} entries is not the checkpoint's"
                )));
            }
            *next += 1;
        }
        Ok(())
    };
    check_root(&tree, &mut next_root, &roots)?;
    for b in 0..size.div_ceil(WIDTH) {
        let width = WIDTH.min(size - b * WIDTH);
        let bytes = fetch(TilePath::Entries { index: b, width })?;
        let entries = unbundle(&bytes)?;
        if entries.len() as u64 != width {
            return Err(EvidenceError::Proof(format!(
                "entry bundle {b} holds {} entries, {width} expected",
                entries.len()
            )));
        }
        for e in entries {
            tree.append(leaf_hash(e), &mut full);
            check_root(&tree, &mut next_root, &roots)?;
        }
        for (id, hashes) in full.drain(..) {
            compare(id, &hashes, &mut fetch)?;
            tiles += 1;
        }
        progress(tree.size());
    }
    // the right edge: every level's partial tile
    for (id, hashes) in tree.partial_tiles() {
        compare(id, hashes, &mut fetch)?;
        tiles += 1;
    }
    if tree.root() != *root {
        return Err(EvidenceError::Proof(format!("the root of the {size} entries replayed is not the checkpoint's")));
    }
    Ok(Audited { size, root: *root, tiles, roots_checked: next_root })
}

fn compare(
    id: TileId,
    want: &[Hash],
    fetch: &mut impl FnMut(TilePath) -> Result<Vec<u8>, EvidenceError>,
) -> Result<(), EvidenceError> {
    let path = TilePath::Hashes { level: id.level, index: id.index, width: want.len() as u64 };
    let served = tile_hashes(&fetch(path)?)?;
    if served != want {
        return Err(EvidenceError::Proof(format!("tile {} differs from the entries it covers", path.to_path())));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps fails, naming the line
mod tests {
    use super::*;
    use crate::tile::{bundle, tile_bytes};
    use std::collections::HashMap;

    #[test]
    fn entries_are_canonical_and_commit_to_their_record() {
        let salt = [5u8; 32];
        let c = commitment(&salt, b"job 7 placed in qingyang");
        let e = entry("job.placed", 1_764_950_400_000, &c).unwrap();
        let parsed = Entry::parse(&e).unwrap();
        assert!(parsed.opens(&salt, b"job 7 placed in qingyang").is_ok());
        assert!(parsed.opens(&salt, b"job 8 placed in qingyang").is_err());
        assert!(parsed.opens(&[6; 32], b"job 7 placed in qingyang").is_err());
        assert!(entry("Bad Kind", 0, &c).is_err());
        let spaced = String::from_utf8(e).unwrap().replace(':', ": ");
        assert!(Entry::parse(spaced.as_bytes()).is_err());
    }

    /// A log of `n` entries as static files.
    type Files = (HashMap<String, Vec<u8>>, Tree, Vec<(u64, Hash)>);

    fn files(n: u64) -> Files {
        let mut tree = Tree::new();
        let mut out = HashMap::new();
        let mut full = Vec::new();
        let mut entries: Vec<Vec<u8>> = Vec::new();
        let mut roots = Vec::new();
        for i in 0..n {
            let e = entry("test", i as i64, &commitment(&[0; 32], &i.to_be_bytes())).unwrap();
            tree.append(leaf_hash(&e), &mut full);
            entries.push(e);
            if i % 97 == 0 {
                roots.push((tree.size(), tree.root()));
            }
        }
        for (id, h) in full {
            out.insert(TilePath::Hashes { level: id.level, index: id.index, width: WIDTH }.to_path(), tile_bytes(&h));
        }
        for (b, chunk) in entries.chunks(WIDTH as usize).enumerate() {
            let p = TilePath::Entries { index: b as u64, width: chunk.len() as u64 };
            out.insert(p.to_path(), bundle(chunk.iter().map(Vec::as_slice)).unwrap());
        }
        for (id, h) in tree.partial_tiles() {
            out.insert(
                TilePath::Hashes { level: id.level, index: id.index, width: h.len() as u64 }.to_path(),
                tile_bytes(h),
            );
        }
        (out, tree, roots)
    }

    fn run(f: &HashMap<String, Vec<u8>>, tree: &Tree, roots: &[(u64, Hash)]) -> Result<Audited, EvidenceError> {
        audit(
            tree.size(),
            &tree.root(),
            roots,
            |p| f.get(&p.to_path()).cloned().ok_or(EvidenceError::Proof(format!("{} is missing", p.to_path()))),
            |_| {},
        )
    }

    #[test]
    fn an_audit_passes_and_catches_every_change() {
        let (f, tree, roots) = files(70_000);
        let ok = run(&f, &tree, &roots).unwrap();
        assert_eq!(ok.roots_checked, roots.len());
        assert!(ok.tiles > 270);
        // a changed byte in any of a sample of files, a dropped file, two entries swapped
        for (k, v) in f.iter().step_by(37) {
            let mut g = f.clone();
            let mut b = v.clone();
            let at = b.len() / 2;
            b[at] ^= 1;
            g.insert(k.clone(), b);
            assert!(run(&g, &tree, &roots).is_err(), "a changed byte in {k} went unnoticed");
            let mut g = f.clone();
            g.remove(k);
            assert!(run(&g, &tree, &roots).is_err(), "dropping {k} went unnoticed");
        }
        let mut g = f.clone();
        let b = g.get("tile/entries/000").unwrap().clone();
        let e = unbundle(&b).unwrap();
        let mut swapped: Vec<&[u8]> = e.clone();
        swapped.swap(0, 1);
        g.insert("tile/entries/000".into(), bundle(swapped).unwrap());
        assert!(run(&g, &tree, &roots).is_err(), "reordered entries went unnoticed");
        // a checkpoint root that the log never had
        let mut bad = roots.clone();
        bad[3].1[0] ^= 1;
        assert!(run(&f, &tree, &bad).is_err());
    }

    #[test]
    fn every_file_changed_dropped_or_swapped_is_caught() {
        let (f, tree, roots) = files(5_000);
        assert!(run(&f, &tree, &roots).is_ok());
        let mut names: Vec<&String> = f.keys().collect();
        names.sort();
        for k in &names {
            let v = &f[*k];
            for at in [0, v.len() / 2, v.len() - 1] {
                let mut g = f.clone();
                let mut b = v.clone();
                b[at] ^= 0x20;
                g.insert((*k).clone(), b);
                assert!(run(&g, &tree, &roots).is_err(), "byte {at} of {k} changed went unnoticed");
            }
            let mut g = f.clone();
            g.remove(*k);
            assert!(run(&g, &tree, &roots).is_err(), "dropping {k} went unnoticed");
        }
        // two tiles of the same kind swapped
        let tiles: Vec<&&String> = names.iter().filter(|n| n.starts_with("tile/0/") && !n.contains(".p")).collect();
        let mut g = f.clone();
        g.insert((*tiles[0]).clone(), f[*tiles[1]].clone());
        g.insert((*tiles[1]).clone(), f[*tiles[0]].clone());
        assert!(run(&g, &tree, &roots).is_err(), "swapped tiles went unnoticed");
    }
}
