//! C2SP tlog-tiles: the log as static files. A tile at level `L`, index `N` holds up to 256
//! hashes of tree level `8·L` (level 0: the leaves' hashes), each the root of a complete
//! subtree of `256^L` leaves; an entry bundle holds up to 256 entries, each prefixed by its
//! length as a big-endian `u16`. Paths: `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`,
//! with `N` written in groups of three digits, all but the last prefixed with `x`
//! (`1234067` → `x001/x234/067`); `.p/<W>` names a partial tile of `W` (1–255) hashes.
//!
//! [`Tree`] is the log's right edge — the partial tile of every level — which is all a writer
//! keeps in memory: it appends leaves, hands back each tile as it fills, and gives the root
//! of the current size. [`Tiles`] answers complete subtrees from full tiles (fetched by the
//! caller) and the right edge, for proofs at any size up to the tree's.

use std::collections::HashMap;

use crate::EvidenceError;
use crate::merkle::{Hash, Subtrees, mth, range_root};

/// Tree levels per tile level.
pub const HEIGHT: u32 = 8;
/// Hashes (or entries) in a full tile.
pub const WIDTH: u64 = 1 << HEIGHT;
/// The largest entry a bundle can hold.
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// A tile: its level (tile levels, not tree levels) and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u32,
    pub index: u64,
}

/// What a tlog-tiles path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// A hash tile; `width` 256 when full.
    Hashes { level: u32, index: u64, width: u64 },
    /// An entry bundle; `width` 256 when full.
    Entries { index: u64, width: u64 },
}

/// `N` in groups of three digits: `1234067` → `x001/x234/067`.
pub fn encode_index(n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

impl TilePath {
    /// The path under the log's prefix (no leading slash).
    pub fn to_path(&self) -> String {
        let (head, index, width) = match *self {
            TilePath::Hashes { level, index, width } => (format!("tile/{level}"), index, width),
            TilePath::Entries { index, width } => ("tile/entries".to_string(), index, width),
        };
        if width >= WIDTH {
            format!("{head}/{}", encode_index(index))
        } else {
            format!("{head}/{}.p/{width}", encode_index(index))
        }
    }

    /// Parses a path under the log's prefix; a malformed one is refused, naming what is wrong.
    pub fn parse(path: &str) -> Result<TilePath, EvidenceError> {
        let bad = |why: &str| EvidenceError::Malformed { what: "tile path", why: format!("{path:?}: {why}") };
        let rest = path.strip_prefix("tile/").ok_or_else(|| bad("must start with tile/"))?;
        let (head, rest) = rest.split_once('/').ok_or_else(|| bad("no index"))?;
        let (digits, width) = match rest.split_once(".p/") {
            Some((d, w)) => {
                let w: u64 = parse_decimal(w).ok_or_else(|| bad("the partial width is not a number"))?;
                if w == 0 || w >= WIDTH {
                    return Err(bad("a partial width is 1 to 255"));
                }
                (d, w)
            }
            None => (rest, WIDTH),
        };
        let groups: Vec<&str> = digits.split('/').collect();
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let d = if last { Some(*g) } else { g.strip_prefix('x') };
            let d = d.ok_or_else(|| bad("every index group but the last starts with x"))?;
            if d.len() != 3 || !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("index groups are three digits"));
            }
            let v: u64 = d.parse().map_err(|_| bad("index groups are three digits"))?;
            index = index.checked_mul(1000).and_then(|x| x.checked_add(v)).ok_or_else(|| bad("index too large"))?;
        }
        if groups.len() > 1 && groups[0] == "x000" {
            return Err(bad("no leading zero groups"));
        }
        if head == "entries" {
            Ok(TilePath::Entries { index, width })
        } else {
            let level: u32 = parse_decimal(head).ok_or_else(|| bad("the level is not a number"))?;
            if level > 63 {
                return Err(bad("the level is at most 63"));
            }
            Ok(TilePath::Hashes { level, index, width })
        }
    }
}

fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// An entry bundle: each entry prefixed by its length as a big-endian `u16`.
pub fn bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, EvidenceError> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| EvidenceError::Malformed {
            what: "entry",
            why: format!("{} bytes: an entry is at most {MAX_ENTRY} bytes", e.len()),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// The entries of a bundle.
pub fn unbundle(b: &[u8]) -> Result<Vec<&[u8]>, EvidenceError> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let bad =
            || EvidenceError::Malformed { what: "entry bundle", why: format!("truncated after {} entries", out.len()) };
        if rest.len() < 2 {
            return Err(bad());
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + len {
            return Err(bad());
        }
        out.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    Ok(out)
}

/// A hash tile's bytes: its hashes one after the other.
pub fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.iter().copied()).collect()
}

/// The hashes of a tile's bytes.
pub fn tile_hashes(b: &[u8]) -> Result<Vec<Hash>, EvidenceError> {
    if !b.len().is_multiple_of(32) || b.len() as u64 > WIDTH * 32 {
        return Err(EvidenceError::Malformed {
            what: "tile",
            why: format!("{} bytes is not 1 to 256 hashes", b.len()),
        });
    }
    Ok(b.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect())
}

/// The log's right edge: for each tile level, the hashes of the tile being filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    size: u64,
    /// `partial[L]`: the level-`8L` hashes after the last full tile of level `L`.
    partial: Vec<Vec<Hash>>,
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; every tile that this fills is pushed onto `full`.
    pub fn append(&mut self, leaf: Hash, full: &mut Vec<(TileId, Vec<Hash>)>) {
        let mut carry = leaf;
        let mut level = 0usize;
        loop {
            if self.partial.len() <= level {
                self.partial.push(Vec::with_capacity(WIDTH as usize));
            }
            let p = &mut self.partial[level];
            p.push(carry);
            if p.len() as u64 != WIDTH {
                break;
            }
            let hashes = std::mem::replace(p, Vec::with_capacity(WIDTH as usize));
            carry = mth(&hashes);
            let index = (self.size >> (HEIGHT as usize * level)) / WIDTH;
            full.push((TileId { level: level as u32, index }, hashes));
            level += 1;
        }
        self.size += 1;
    }

    /// The index of the tile being filled at `level` and its hashes so far.
    pub fn partial(&self, level: u32) -> (u64, &[Hash]) {
        let count = self.count(level);
        let hashes = self.partial.get(level as usize).map_or(&[][..], Vec::as_slice);
        (count / WIDTH, hashes)
    }

    /// The right edge's partial tiles that hold hashes, lowest level first: what a server serves
    /// as `.p/<W>` tiles of the current size.
    pub fn partial_tiles(&self) -> impl Iterator<Item = (TileId, &[Hash])> {
        (0..self.partial.len() as u32).filter_map(|level| {
            let (index, hashes) = self.partial(level);
            (!hashes.is_empty()).then_some((TileId { level, index }, hashes))
        })
    }

    /// Complete level-`8·level` nodes of the tree.
    fn count(&self, level: u32) -> u64 {
        if u64::from(level) * u64::from(HEIGHT) >= 64 { 0 } else { self.size >> (HEIGHT * level) }
    }

    /// The root of the tree as it is.
    pub fn root(&self) -> Hash {
        // the size's decomposition lies in the partial tiles alone
        range_root(&Tiles::new(self), 0, self.size).unwrap_or_else(|_| crate::merkle::empty_root())
    }

    /// The full tiles [`Tree::restore`] needs to rebuild the right edge of a tree of `size`
    /// leaves (besides the leaf hashes of its last partial tile): for each level above 0, the
    /// full tiles below that the partial tile's hashes are the roots of.
    pub fn restore_needs(size: u64) -> Vec<TileId> {
        let mut out = Vec::new();
        let mut level = 1u32;
        while u64::from(level) * u64::from(HEIGHT) < 64 && size >> (HEIGHT * level) > 0 {
            let count = size >> (HEIGHT * level);
            let first = count / WIDTH * WIDTH;
            out.extend((first..count).map(|index| TileId { level: level - 1, index }));
            level += 1;
        }
        out
    }

    /// Rebuilds the right edge of a tree of `size` leaves from the leaf hashes of its last
    /// partial tile (`size % 256` of them) and the tiles [`Tree::restore_needs`] names.
    pub fn restore(
        size: u64,
        last_leaves: Vec<Hash>,
        tiles: &HashMap<TileId, Vec<Hash>>,
    ) -> Result<Tree, EvidenceError> {
        if last_leaves.len() as u64 != size % WIDTH {
            return Err(EvidenceError::Malformed {
                what: "log",
                why: format!("{} leaves after the last full tile, {} expected", last_leaves.len(), size % WIDTH),
            });
        }
        let mut partial = vec![last_leaves];
        let mut level = 1u32;
        while u64::from(level) * u64::from(HEIGHT) < 64 && size >> (HEIGHT * level) > 0 {
            let count = size >> (HEIGHT * level);
            let first = count / WIDTH * WIDTH;
            let mut hashes = Vec::with_capacity(WIDTH as usize);
            for index in first..count {
                let id = TileId { level: level - 1, index };
                let t = tiles.get(&id).ok_or(EvidenceError::MissingTile(id))?;
                if t.len() as u64 != WIDTH {
                    return Err(EvidenceError::Malformed { what: "tile", why: format!("{id:?} is not full") });
                }
                hashes.push(mth(t));
            }
            partial.push(hashes);
            level += 1;
        }
        Ok(Tree { size, partial })
    }
}

/// Complete subtrees from full tiles (added by the caller) and a tree's right edge.
#[derive(Debug)]
pub struct Tiles<'a> {
    tree: &'a Tree,
    full: HashMap<TileId, Vec<Hash>>,
}

impl<'a> Tiles<'a> {
    pub fn new(tree: &'a Tree) -> Tiles<'a> {
        Tiles { tree, full: HashMap::new() }
    }

    /// Adds a full tile (fetched because a proof named it missing).
    pub fn add(&mut self, id: TileId, hashes: Vec<Hash>) {
        self.full.insert(id, hashes);
    }
}

impl Subtrees for Tiles<'_> {
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, EvidenceError> {
        let (tl, k) = (level / HEIGHT, level % HEIGHT);
        let first = index << k;
        let (tile, off) = (first / WIDTH, (first % WIDTH) as usize);
        let n = 1usize << k;
        let (edge, hashes) = self.tree.partial(tl);
        if tile == edge && off + n <= hashes.len() {
            return Ok(mth(&hashes[off..off + n]));
        }
        if tile >= edge {
            return Err(EvidenceError::OutOfRange {
                what: "subtree",
                value: (index + 1) << level,
                size: self.tree.size,
            });
        }
        let id = TileId { level: tl, index: tile };
        let t = self.full.get(&id).ok_or(EvidenceError::MissingTile(id))?;
        t.get(off..off + n).map(mth).ok_or(EvidenceError::Malformed { what: "tile", why: format!("{id:?} is short") })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps fails, naming the line
mod tests {
    use super::*;
    use crate::merkle::{Leaves, consistency_proof, inclusion_proof, leaf_hash, root};
    use proptest::prelude::*;

    #[test]
    fn paths_follow_the_spec() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(1_234_067), "x001/x234/067");
        let p = TilePath::Hashes { level: 1, index: 1_234_067, width: WIDTH };
        assert_eq!(p.to_path(), "tile/1/x001/x234/067");
        assert_eq!(TilePath::parse("tile/1/x001/x234/067").ok(), Some(p));
        let e = TilePath::Entries { index: 5, width: 7 };
        assert_eq!(e.to_path(), "tile/entries/005.p/7");
        assert_eq!(TilePath::parse("tile/entries/005.p/7").ok(), Some(e));
        for bad in [
            "tile/1/1234",
            "tile/1/x1/234",
            "tile/1/001.p/256",
            "tile/1/001.p/0",
            "tile/01/001",
            "tiles/0/000",
            "tile/0/x000/001",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn bundles_round_trip_and_truncation_is_named() {
        let entries: Vec<&[u8]> = vec![b"a", b"", b"hello"];
        let b = bundle(entries.iter().copied()).unwrap();
        assert_eq!(unbundle(&b).unwrap(), entries);
        assert!(unbundle(&b[..b.len() - 1]).is_err());
    }

    /// Leaves appended to a tree, with the full tiles kept as a server would store them.
    fn grown(n: u64) -> (Tree, Leaves, HashMap<TileId, Vec<Hash>>) {
        let mut t = Tree::new();
        let mut all = Leaves::default();
        let mut full = Vec::new();
        for i in 0..n {
            let h = leaf_hash(&i.to_be_bytes());
            all.0.push(h);
            t.append(h, &mut full);
        }
        (t, all, full.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn tiles_answer_what_the_leaves_answer(n in 1u64..70_000, pick in any::<u64>()) {
            let (t, all, full) = grown(n);
            prop_assert_eq!(t.root(), root(&all, n).unwrap());
            let mut tiles = Tiles::new(&t);
            for (id, h) in &full {
                tiles.add(*id, h.clone());
            }
            let index = pick % n;
            let size = index + 1 + (pick >> 32) % (n - index);
            prop_assert_eq!(inclusion_proof(&tiles, index, size).unwrap(), inclusion_proof(&all, index, size).unwrap());
            prop_assert_eq!(consistency_proof(&tiles, index + 1, size).unwrap(), consistency_proof(&all, index + 1, size).unwrap());
            // the right edge comes back from the stored tiles and the last leaves
            let needs = Tree::restore_needs(n);
            let have: HashMap<TileId, Vec<Hash>> = needs.iter().map(|id| (*id, full[id].clone())).collect();
            let last = all.0[(n / WIDTH * WIDTH) as usize..].to_vec();
            prop_assert_eq!(Tree::restore(n, last, &have).unwrap(), t);
        }
    }

    #[test]
    fn a_missing_tile_is_named() {
        let (t, _, _) = grown(1000);
        let tiles = Tiles::new(&t);
        match inclusion_proof(&tiles, 3, 1000) {
            Err(EvidenceError::MissingTile(id)) => assert_eq!(id, TileId { level: 0, index: 0 }),
            other => panic!("expected a missing tile, got {other:?}"),
        }
    }
}
