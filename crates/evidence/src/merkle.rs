//! RFC 9162 §2.1 Merkle trees: hashing, roots, inclusion and consistency proofs, and their
//! verification, written from the RFC's definitions.
//!
//! A proof is built from the hashes of *complete* subtrees (`2^level` leaves starting at a
//! multiple of `2^level`), which never change once their last leaf is appended: a
//! [`Subtrees`] source answers them (from tiles, see [`crate::tile`]), and a source that lacks
//! one says which, so that an IO layer can fetch it and ask again.

use sha2::{Digest, Sha256};

use crate::EvidenceError;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// RFC 9162: the hash of a leaf, `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// RFC 9162: the hash of an interior node, `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly less than `n` (`n ≥ 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (n - 1).ilog2()
}

/// Where the hashes of complete subtrees come from.
pub trait Subtrees {
    /// The hash of the complete subtree of `2^level` leaves that starts at leaf
    /// `index · 2^level`; [`EvidenceError::MissingTile`] names what the caller must supply.
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, EvidenceError>;
}

/// The root of the leaves `[lo, hi)` as RFC 9162 defines it (`MTH(D[lo:hi])`); `lo` is aligned
/// the way the RFC's recursion aligns it (a multiple of the largest power of two below
/// `hi - lo`, or of `hi - lo` itself when that is one).
pub fn range_root(s: &impl Subtrees, lo: u64, hi: u64) -> Result<Hash, EvidenceError> {
    let n = hi - lo;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return s.subtree(n.trailing_zeros(), lo / n);
    }
    let k = split(n);
    Ok(node_hash(&range_root(s, lo, lo + k)?, &range_root(s, lo + k, hi)?))
}

/// The root of the tree of the first `size` leaves.
pub fn root(s: &impl Subtrees, size: u64) -> Result<Hash, EvidenceError> {
    range_root(s, 0, size)
}

/// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof(s: &impl Subtrees, index: u64, size: u64) -> Result<Vec<Hash>, EvidenceError> {
    if index >= size {
        return Err(EvidenceError::OutOfRange { what: "index", value: index, size });
    }
    let mut out = Vec::with_capacity(64);
    path(s, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(s: &impl Subtrees, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), EvidenceError> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path(s, m, lo, lo + k, out)?;
        out.push(range_root(s, lo + k, hi)?);
    } else {
        path(s, m, lo + k, hi, out)?;
        out.push(range_root(s, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.1: the consistency proof between the trees of `old` and `new` leaves
/// (`0 < old ≤ new`; between equal sizes it is empty).
pub fn consistency_proof(s: &impl Subtrees, old: u64, new: u64) -> Result<Vec<Hash>, EvidenceError> {
    if old == 0 || old > new {
        return Err(EvidenceError::OutOfRange { what: "from", value: old, size: new });
    }
    let mut out = Vec::with_capacity(64);
    subproof(s, old, 0, new, true, &mut out)?;
    Ok(out)
}

fn subproof(
    s: &impl Subtrees,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), EvidenceError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(range_root(s, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(s, m, lo, lo + k, whole, out)?;
        out.push(range_root(s, lo + k, hi)?);
    } else {
        subproof(s, m - k, lo + k, hi, false, out)?;
        out.push(range_root(s, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), EvidenceError> {
    if index >= size {
        return Err(EvidenceError::OutOfRange { what: "index", value: index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(EvidenceError::Proof("the inclusion proof is longer than the tree is deep".into()));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(EvidenceError::Proof("the inclusion proof is shorter than the tree is deep".into()));
    }
    if r != *root {
        return Err(EvidenceError::Proof(format!(
            "the inclusion proof of entry {index} leads to a root other than the tree of {size}'s"
        )));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `new` leaves with root `new_root` extends the
/// tree of `old` leaves with root `old_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), EvidenceError> {
    if old > new {
        return Err(EvidenceError::OutOfRange { what: "from", value: old, size: new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(EvidenceError::Proof("a consistency proof between equal sizes must be empty".into()));
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(EvidenceError::Proof(format!("two different roots for the same size {old}")))
        };
    }
    if old == 0 {
        // every tree extends the empty one, whose root is the hash of nothing
        return if !proof.is_empty() {
            Err(EvidenceError::Proof("a consistency proof from the empty tree must be empty".into()))
        } else if *old_root != empty_root() {
            Err(EvidenceError::Proof("the root of the empty tree is SHA-256 of nothing".into()))
        } else {
            Ok(())
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(EvidenceError::Proof("the consistency proof is empty".into()));
    };
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(EvidenceError::Proof("the consistency proof is too long".into()));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(EvidenceError::Proof("the consistency proof is too short".into()));
    }
    if fr != *old_root {
        return Err(EvidenceError::Proof(format!("the consistency proof does not lead to the old root of size {old}")));
    }
    if sr != *new_root {
        return Err(EvidenceError::Proof(format!("the consistency proof does not lead to the new root of size {new}")));
    }
    Ok(())
}

/// Every leaf hash in memory: the reference source for tests and small trees (computes each
/// subtree from its leaves).
#[derive(Debug, Default, Clone)]
pub struct Leaves(pub Vec<Hash>);

impl Subtrees for Leaves {
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, EvidenceError> {
        let width = 1u64 << level;
        let lo = index * width;
        let hi = lo + width;
        if hi > self.0.len() as u64 {
            return Err(EvidenceError::OutOfRange { what: "subtree", value: hi, size: self.0.len() as u64 });
        }
        Ok(mth(&self.0[lo as usize..hi as usize]))
    }
}

/// `MTH` of a slice of leaf hashes (or of any level's hashes: a complete or partial run).
pub fn mth(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => empty_root(),
        1 => hashes[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&hashes[..k]), &mth(&hashes[k..]))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps fails, naming the line
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Leaves {
        Leaves((0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect())
    }

    #[test]
    fn known_roots_from_rfc_definitions() {
        // the empty tree, one leaf, and a three-leaf tree by hand
        assert_eq!(root(&leaves(0), 0).ok(), Some(empty_root()));
        let l = leaves(3);
        assert_eq!(root(&l, 1).ok(), Some(l.0[0]));
        let want = node_hash(&node_hash(&l.0[0], &l.0[1]), &l.0[2]);
        assert_eq!(root(&l, 3).ok(), Some(want));
        // the SHA-256 of nothing
        assert_eq!(empty_root()[..4], [0xe3, 0xb0, 0xc4, 0x42], "SHA-256 of the empty string starts e3b0c442");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn every_inclusion_proof_verifies_and_a_wrong_one_fails(size in 1u64..600, pick in any::<u64>(), flip in any::<u64>()) {
            let l = leaves(size);
            let index = pick % size;
            let r = root(&l, size).unwrap();
            let p = inclusion_proof(&l, index, size).unwrap();
            prop_assert!(verify_inclusion(&l.0[index as usize], index, size, &p, &r).is_ok());
            // another leaf, another index, a flipped bit: all fail
            let other = (index + 1) % size;
            if other != index {
                prop_assert!(verify_inclusion(&l.0[other as usize], index, size, &p, &r).is_err());
                prop_assert!(verify_inclusion(&l.0[index as usize], other, size, &p, &r).is_err());
            }
            if !p.is_empty() {
                let mut bad = p.clone();
                let at = (flip as usize) % bad.len();
                bad[at][(flip >> 8) as usize % 32] ^= 1;
                prop_assert!(verify_inclusion(&l.0[index as usize], index, size, &bad, &r).is_err());
                let mut short = p.clone();
                short.pop();
                prop_assert!(verify_inclusion(&l.0[index as usize], index, size, &short, &r).is_err());
            }
        }

        #[test]
        fn every_consistency_proof_verifies_and_a_wrong_one_fails(new in 1u64..600, pick in any::<u64>(), flip in any::<u64>()) {
            let l = leaves(new);
            let old = 1 + pick % new;
            let (ro, rn) = (root(&l, old).unwrap(), root(&l, new).unwrap());
            let p = consistency_proof(&l, old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &ro, &rn, &p).is_ok());
            if !p.is_empty() {
                let mut bad = p.clone();
                let at = (flip as usize) % bad.len();
                bad[at][(flip >> 8) as usize % 32] ^= 1;
                prop_assert!(verify_consistency(old, new, &ro, &rn, &bad).is_err());
            }
            if old < new {
                // a root that is not the old tree's
                let mut forged = ro;
                forged[0] ^= 0x80;
                prop_assert!(verify_consistency(old, new, &forged, &rn, &p).is_err());
                prop_assert!(verify_consistency(old, new, &ro, &forged, &p).is_err());
            }
        }
    }
}
