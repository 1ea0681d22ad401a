//! Unified data identifiers (R6 统一标识编码), Handle-style: `prefix/suffix`.
//!
//! ```text
//! identifier = prefix "/" suffix
//! prefix     = arc *( "." arc )            ; 1 to 8 arcs: the issuing authority, outermost first
//! arc        = "0" / ( %x31-39 *8DIGIT )   ; a decimal number, no leading zero, at most 9 digits
//! suffix     = 1*26 symbol check           ; opaque, issued by the registry, case-insensitive
//! symbol     = Crockford base32: 0-9 A-H J K M N P-T V-Z (I and L read as 1, O as 0)
//! check      = symbol / "*" / "~" / "$" / "=" / "U"   ; Crockford's check symbol
//! ```
//!
//! The prefix names who issued the identifier, hierarchically like the industrial internet's
//! `88.<industry>.<enterprise>` or an OID's arcs (e.g. `88.156.51` for a province's node under a
//! national one); the registry issues under its own prefix. The suffix is opaque (DOI Handbook:
//! nothing may be inferred from it), compared without case, and ends with Crockford's check
//! symbol — the suffix's value modulo 37 — so that a mistyped or transposed symbol is caught
//! before any lookup. Identifiers are never reused: the registry draws suffixes at random and
//! the store refuses a second record under one identifier.

use std::fmt;

/// Crockford's base32 digits, then the five extra check symbols (values 32–36).
const SYMBOLS: &[u8; 37] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U";

/// Most arcs in a prefix, symbols in a suffix (without its check symbol), digits in an arc.
pub const MAX_ARCS: usize = 8;
pub const MAX_SUFFIX: usize = 26;
const MAX_ARC_DIGITS: usize = 9;

/// A parsed identifier, normalised: upper-case suffix, `I`/`L` as `1`, `O` as `0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataId {
    prefix: String,
    suffix: String,
}

/// Why an identifier is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id:?} is not a data identifier: {why}")]
pub struct IdError {
    pub id: String,
    pub why: String,
}

/// The value of a base32 symbol (Crockford's decoding: case-insensitive, I/L = 1, O = 0).
fn value(b: u8) -> Option<u32> {
    let b = b.to_ascii_uppercase();
    let b = match b {
        b'I' | b'L' => b'1',
        b'O' => b'0',
        b'U' => return None,
        x => x,
    };
    SYMBOLS[..32].iter().position(|s| *s == b).map(|p| p as u32)
}

/// Crockford's check symbol of `body`: its value as a base32 number, modulo 37.
fn check_of(body: &[u8]) -> Option<u8> {
    let mut m = 0u32;
    for b in body {
        m = (m * 32 + value(*b)?) % 37;
    }
    Some(SYMBOLS[m as usize])
}

/// Checks a prefix: 1 to 8 decimal arcs without leading zeros.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let arcs: Vec<&str> = prefix.split('.').collect();
    if arcs.len() > MAX_ARCS {
        return Err(format!("the prefix has {} arcs; at most {MAX_ARCS}", arcs.len()));
    }
    for a in arcs {
        if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("prefix arc {a:?} is not a decimal number"));
        }
        if a.len() > 1 && a.starts_with('0') {
            return Err(format!("prefix arc {a:?} has a leading zero"));
        }
        if a.len() > MAX_ARC_DIGITS {
            return Err(format!("prefix arc {a:?} has more than {MAX_ARC_DIGITS} digits"));
        }
    }
    Ok(())
}

impl DataId {
    /// Parses and normalises an identifier; a wrong check symbol is an error naming it.
    pub fn parse(s: &str) -> Result<DataId, IdError> {
        let bad = |why: String| IdError { id: s.chars().take(80).collect(), why };
        let (prefix, suffix) = s.split_once('/').ok_or_else(|| bad("no '/' between prefix and suffix".into()))?;
        check_prefix(prefix).map_err(bad)?;
        let raw = suffix.as_bytes();
        if raw.len() < 2 {
            return Err(bad("the suffix is a symbol or more and a check symbol".into()));
        }
        if raw.len() > MAX_SUFFIX + 1 {
            return Err(bad(format!("the suffix is longer than {} symbols", MAX_SUFFIX + 1)));
        }
        let (body, check) = raw.split_at(raw.len() - 1);
        let mut norm = String::with_capacity(raw.len());
        for b in body {
            let v = value(*b).ok_or_else(|| bad(format!("{:?} is not a base32 symbol", *b as char)))?;
            norm.push(SYMBOLS[v as usize] as char);
        }
        let c = check[0].to_ascii_uppercase();
        let c = match c {
            b'I' | b'L' => b'1',
            b'O' => b'0',
            x => x,
        };
        if !SYMBOLS.contains(&c) {
            return Err(bad(format!("{:?} is not a check symbol", check[0] as char)));
        }
        let want = check_of(norm.as_bytes()).ok_or_else(|| bad("the suffix is not base32".into()))?;
        if c != want {
            return Err(bad(format!(
                "the check symbol is {:?}, {:?} expected: a symbol is mistyped",
                c as char, want as char
            )));
        }
        norm.push(c as char);
        Ok(DataId { prefix: prefix.to_string(), suffix: norm })
    }

    /// A fresh identifier under `prefix` from random bytes (13 symbols: 65 bits).
    pub fn issue(prefix: &str, random: [u8; 9]) -> Result<DataId, IdError> {
        check_prefix(prefix).map_err(|why| IdError { id: prefix.to_string(), why })?;
        let mut n = u128::from_be_bytes({
            let mut b = [0u8; 16];
            b[7..].copy_from_slice(&random);
            b
        });
        let mut body = [0u8; 13];
        for s in body.iter_mut().rev() {
            *s = SYMBOLS[(n % 32) as usize];
            n /= 32;
        }
        let check = check_of(&body).unwrap_or(b'0');
        let mut suffix = String::from_utf8_lossy(&body).into_owned();
        suffix.push(check as char);
        Ok(DataId { prefix: prefix.to_string(), suffix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn suffix(&self) -> &str {
        &self.suffix
    }
}

impl fmt::Display for DataId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.prefix, self.suffix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps fails, naming the line
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_grammar_accepts_and_refuses() {
        let id = DataId::issue("88.156.51", [7; 9]).unwrap();
        let text = id.to_string();
        assert!(text.starts_with("88.156.51/"));
        assert_eq!(DataId::parse(&text.to_lowercase()).unwrap(), id, "case-insensitive");
        for bad in ["88.156.51", "88..1/ABC", "088.1/ABC", "88.1/A", "a.1/ABCD", "1.2.3.4.5.6.7.8.9/AB", "88.1/AB!"] {
            assert!(DataId::parse(bad).is_err(), "{bad} must be refused");
        }
        // Crockford's readings: I and L are 1, O is 0
        let one = DataId::issue("1", [0; 9]).unwrap(); // 0000000000000 + check
        assert_eq!(DataId::parse(&one.to_string().replace('0', "o")).unwrap(), one);
    }

    proptest! {
        #[test]
        fn every_single_substitution_or_adjacent_swap_is_caught(random in any::<[u8; 9]>(), at in 0usize..13, to in 0u8..32) {
            let id = DataId::issue("88.156", random).unwrap();
            let s = id.to_string();
            let (head, suffix) = s.split_once('/').unwrap();
            let mut b = suffix.as_bytes().to_vec();
            let new = SYMBOLS[to as usize];
            if b[at] != new {
                b[at] = new;
                let changed = format!("{head}/{}", String::from_utf8(b.clone()).unwrap());
                prop_assert!(DataId::parse(&changed).is_err(), "{changed} passed for {s}");
            }
            let mut t = suffix.as_bytes().to_vec();
            if at + 1 < 13 && t[at] != t[at + 1] {
                t.swap(at, at + 1);
                let swapped = format!("{head}/{}", String::from_utf8(t).unwrap());
                prop_assert!(DataId::parse(&swapped).is_err(), "{swapped} passed for {s}");
            }
        }
    }
}
