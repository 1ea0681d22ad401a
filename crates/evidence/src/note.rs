//! C2SP signed-note (Ed25519, signature type `0x01`), C2SP tlog-checkpoint bodies, and C2SP
//! tlog-cosignature v1 (timestamped Ed25519 cosignatures, type `0x04`).
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one line per signature:
//! `— <key name> base64(key id ‖ signature)`. A key id is the first four bytes of
//! `SHA-256(name ‖ "\n" ‖ type ‖ public key)`. A verifier key is written
//! `<name>+<key id, 8 hex digits>+base64(type ‖ public key)`; a signer key
//! `PRIVATE+KEY+<name>+<key id>+base64(type ‖ seed)`.
//!
//! A checkpoint's body is the log's origin, its size in decimal and its root hash in base64,
//! one per line, then optional extension lines. A cosignature signs
//! `cosignature/v1\ntime <t>\n` followed by the checkpoint's body, and carries `t` (seconds
//! since the epoch, big-endian `u64`) before the 64-byte signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::EvidenceError;
use crate::merkle::Hash;

/// Signature type of a log's Ed25519 note signature.
pub const ED25519: u8 = 0x01;
/// Signature type of a timestamped Ed25519 cosignature (cosignature/v1).
pub const COSIGNATURE_V1: u8 = 0x04;

fn malformed(what: &'static str, why: impl Into<String>) -> EvidenceError {
    EvidenceError::Malformed { what, why: why.into() }
}

/// A key name: non-empty, no spaces, no `+`.
fn check_name(name: &str) -> Result<(), EvidenceError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(malformed("key name", format!("{name:?}: a key name is non-empty, without spaces or '+'")));
    }
    Ok(())
}

fn key_id(name: &str, alg: u8, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A private key that signs notes (the log's, type `0x01`) or cosigns them (a witness's,
/// type `0x04`).
pub struct Signer {
    name: String,
    alg: u8,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the seed
        f.debug_struct("Signer").field("name", &self.name).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from 32 random bytes.
    pub fn from_seed(name: &str, alg: u8, seed: [u8; 32]) -> Result<Signer, EvidenceError> {
        check_name(name)?;
        if alg != ED25519 && alg != COSIGNATURE_V1 {
            return Err(malformed("signer key", format!("signature type {alg:#04x}: 0x01 (log) or 0x04 (witness)")));
        }
        Ok(Signer { name: name.to_string(), alg, key: SigningKey::from_bytes(&seed) })
    }

    /// Parses `PRIVATE+KEY+<name>+<id>+<base64(type ‖ seed)>`.
    pub fn parse(skey: &str) -> Result<Signer, EvidenceError> {
        let skey = skey.trim();
        let rest =
            skey.strip_prefix("PRIVATE+KEY+").ok_or_else(|| malformed("signer key", "must start with PRIVATE+KEY+"))?;
        let (name, id, material) = split_key(rest, "signer key")?;
        let (alg, seed) = material.split_first().ok_or_else(|| malformed("signer key", "no key material"))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| malformed("signer key", "an Ed25519 seed is 32 bytes"))?;
        let s = Signer::from_seed(name, *alg, seed)?;
        if s.key_id() != id {
            return Err(malformed("signer key", "the key id does not match the key"));
        }
        Ok(s)
    }

    /// The key as `PRIVATE+KEY+…` (a secret: keep it in a file only its owner reads).
    pub fn encode(&self) -> String {
        let mut m = vec![self.alg];
        m.extend_from_slice(&self.key.to_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_id(), B64.encode(m))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        key_id(&self.name, self.alg, &self.key.verifying_key().to_bytes())
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), alg: self.alg, key: self.key.verifying_key(), id: self.key_id() }
    }

    /// The signature line of `text` (a log signature; or, for a witness key, a cosignature made
    /// at `time`, seconds since the epoch).
    pub fn sign(&self, text: &str, time: u64) -> String {
        let mut bytes = self.key_id().to_be_bytes().to_vec();
        if self.alg == COSIGNATURE_V1 {
            bytes.extend_from_slice(&time.to_be_bytes());
            bytes.extend_from_slice(&self.key.sign(cosigned(text, time).as_bytes()).to_bytes());
        } else {
            bytes.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        }
        format!("— {} {}\n", self.name, B64.encode(bytes))
    }
}

fn cosigned(text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

/// `<name>+<id>+<base64>` → the parts, the id checked to be 8 hex digits.
fn split_key<'a>(s: &'a str, what: &'static str) -> Result<(&'a str, u32, Vec<u8>), EvidenceError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(what, "expected <name>+<key id>+<base64 key>"));
    };
    check_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(what, "the key id is 8 hex digits"));
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| malformed(what, "the key id is 8 hex digits"))?;
    let material = B64.decode(material).map_err(|e| malformed(what, format!("the key is not base64: {e}")))?;
    Ok((name, id, material))
}

/// A public key that checks a log's signatures or a witness's cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    alg: u8,
    key: VerifyingKey,
    id: u32,
}

impl Verifier {
    /// Parses `<name>+<id>+<base64(type ‖ public key)>`.
    pub fn parse(vkey: &str) -> Result<Verifier, EvidenceError> {
        let (name, id, material) = split_key(vkey.trim(), "verifier key")?;
        let (alg, public) = material.split_first().ok_or_else(|| malformed("verifier key", "no key material"))?;
        if *alg != ED25519 && *alg != COSIGNATURE_V1 {
            return Err(malformed("verifier key", format!("signature type {alg:#04x} is not supported (0x01, 0x04)")));
        }
        let public: [u8; 32] =
            public.try_into().map_err(|_| malformed("verifier key", "an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| malformed("verifier key", "not an Ed25519 point"))?;
        if key_id(name, *alg, &public) != id {
            return Err(malformed("verifier key", "the key id does not match the key"));
        }
        Ok(Verifier { name: name.to_string(), alg: *alg, key, id })
    }

    pub fn encode(&self) -> String {
        let mut m = vec![self.alg];
        m.extend_from_slice(&self.key.to_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(m))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id a signature by this key carries.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// Whether `sig` claims to be by this key (name and key id; not yet checked).
    pub fn claims(&self, sig: &NoteSig) -> bool {
        sig.name == self.name && sig.id == self.id
    }

    /// Whether this is a witness's (cosignature) key.
    pub fn is_witness(&self) -> bool {
        self.alg == COSIGNATURE_V1
    }

    /// Checks one signature of `text`; a cosignature's time is returned.
    fn check(&self, text: &str, sig: &NoteSig) -> Result<Option<u64>, EvidenceError> {
        let bad = |why: &str| EvidenceError::Proof(format!("the signature of {} {why}", self.name));
        if self.alg == COSIGNATURE_V1 {
            if sig.bytes.len() != 8 + 64 {
                return Err(bad("is not a timestamp and an Ed25519 signature"));
            }
            let time = u64::from_be_bytes(sig.bytes[..8].try_into().unwrap_or([0; 8]));
            let s = Signature::from_slice(&sig.bytes[8..]).map_err(|_| bad("is malformed"))?;
            self.key.verify_strict(cosigned(text, time).as_bytes(), &s).map_err(|_| bad("does not verify"))?;
            Ok(Some(time))
        } else {
            let s = Signature::from_slice(&sig.bytes).map_err(|_| bad("is not an Ed25519 signature"))?;
            self.key.verify_strict(text.as_bytes(), &s).map_err(|_| bad("does not verify"))?;
            Ok(None)
        }
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSig {
    pub name: String,
    pub id: u32,
    pub bytes: Vec<u8>,
}

/// A signed note: its text and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub sigs: Vec<NoteSig>,
}

impl Note {
    /// Parses a note: text, a blank line, signature lines.
    pub fn parse(s: &str) -> Result<Note, EvidenceError> {
        if s.len() > 1 << 20 {
            return Err(malformed("note", "longer than 1 MiB"));
        }
        let split = s.rfind("\n\n").ok_or_else(|| malformed("note", "no blank line before the signatures"))?;
        let (text, sigs) = (&s[..=split], &s[split + 2..]);
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(malformed("note", "control characters in the text"));
        }
        if !sigs.ends_with('\n') {
            return Err(malformed("note", "the last signature line is not terminated"));
        }
        let mut out = Vec::new();
        for line in sigs.lines() {
            let rest = line
                .strip_prefix("— ")
                .ok_or_else(|| malformed("note", format!("{line:?} is not a signature line")))?;
            let (name, b64) =
                rest.split_once(' ').ok_or_else(|| malformed("note", format!("{line:?}: no signature")))?;
            check_name(name)?;
            let bytes =
                B64.decode(b64).map_err(|_| malformed("note", format!("{line:?}: the signature is not base64")))?;
            if bytes.len() < 5 {
                return Err(malformed("note", format!("{line:?}: too short")));
            }
            let id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            out.push(NoteSig { name: name.to_string(), id, bytes: bytes[4..].to_vec() });
        }
        if out.is_empty() {
            return Err(malformed("note", "no signatures"));
        }
        Ok(Note { text: text.to_string(), sigs: out })
    }

    /// The note as text.
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.sigs {
            let mut b = sig.id.to_be_bytes().to_vec();
            b.extend_from_slice(&sig.bytes);
            let _ = writeln!(s, "— {} {}", sig.name, B64.encode(b));
        }
        s
    }

    /// Adds a signature line made by [`Signer::sign`].
    pub fn add(&mut self, line: &str) -> Result<(), EvidenceError> {
        let n = Note::parse(&format!("{}\n{line}", self.text))?;
        self.sigs.extend(n.sigs);
        Ok(())
    }

    /// Checks the note: `log` must have signed it, and at least `quorum` of `witnesses` must
    /// have cosigned it; signatures by keys not named are ignored. Returns the witnesses that
    /// cosigned, with their times.
    pub fn verify(
        &self,
        log: &Verifier,
        witnesses: &[Verifier],
        quorum: usize,
    ) -> Result<Vec<(String, u64)>, EvidenceError> {
        let mine = |v: &Verifier| self.sigs.iter().filter(|s| s.name == v.name && s.id == v.id).collect::<Vec<_>>();
        let by_log = mine(log);
        if by_log.is_empty() {
            return Err(EvidenceError::Proof(format!("no signature by the log's key {}", log.name)));
        }
        for s in by_log {
            log.check(&self.text, s)?;
        }
        let mut cosigned = Vec::new();
        for w in witnesses {
            for s in mine(w) {
                if let Some(t) = w.check(&self.text, s)? {
                    cosigned.push((w.name.clone(), t));
                }
            }
        }
        if cosigned.len() < quorum {
            return Err(EvidenceError::Proof(format!(
                "{} of the {} witnesses named cosigned; {quorum} required",
                cosigned.len(),
                witnesses.len()
            )));
        }
        Ok(cosigned)
    }
}

/// A checkpoint: a log's origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint's text (a note's text, not checked here).
    pub fn parse(text: &str) -> Result<Checkpoint, EvidenceError> {
        let mut lines = text.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| malformed("checkpoint", "no origin line"))?;
        let size = lines.next().ok_or_else(|| malformed("checkpoint", "no size line"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(malformed("checkpoint", format!("size {size:?} is not a decimal number")));
        }
        let size: u64 = size.parse().map_err(|_| malformed("checkpoint", "size out of range"))?;
        let root = lines.next().ok_or_else(|| malformed("checkpoint", "no root line"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| malformed("checkpoint", "the root is not 32 bytes in base64"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("checkpoint", "an empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root, extensions })
    }

    /// The checkpoint signed by `signer` as a note.
    pub fn sign(&self, signer: &Signer) -> String {
        let body = self.body();
        format!("{body}\n{}", signer.sign(&body, 0))
    }

    /// Opens a signed checkpoint: the note verified (log signature, `quorum` cosignatures)
    /// and its body parsed, the origin checked against the log key's name.
    pub fn open(
        note: &str,
        log: &Verifier,
        witnesses: &[Verifier],
        quorum: usize,
    ) -> Result<(Checkpoint, Note), EvidenceError> {
        let n = Note::parse(note)?;
        n.verify(log, witnesses, quorum)?;
        let c = Checkpoint::parse(&n.text)?;
        if c.origin != log.name {
            return Err(EvidenceError::Proof(format!(
                "the checkpoint's origin {:?} is not the log key's name {:?}",
                c.origin, log.name
            )));
        }
        Ok((c, n))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps fails, naming the line
mod tests {
    use super::*;

    fn signer(name: &str, alg: u8, b: u8) -> Signer {
        Signer::from_seed(name, alg, [b; 32]).unwrap()
    }

    #[test]
    fn keys_round_trip_and_bad_keys_are_named() {
        let s = signer("example.com/log", ED25519, 7);
        let again = Signer::parse(&s.encode()).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        let v = Verifier::parse(&s.verifier().encode()).unwrap();
        assert_eq!(v, s.verifier());
        let enc = s.verifier().encode();
        // a wrong key id, a wrong name, garbage
        let parts: Vec<&str> = enc.splitn(3, '+').collect();
        let flipped = if parts[1] == "00000000" { "00000001" } else { "00000000" };
        assert!(Verifier::parse(&format!("{}+{flipped}+{}", parts[0], parts[2])).is_err());
        assert!(Verifier::parse(&enc.replace("example.com/log", "example.com/other")).is_err());
        assert!(Verifier::parse("nonsense").is_err());
        assert!(Signer::from_seed("with space", ED25519, [1; 32]).is_err());
    }

    #[test]
    fn a_checkpoint_signs_verifies_and_any_change_is_caught() {
        let log = signer("suanwang.example/log", ED25519, 1);
        let witness = signer("witness.example/w1", COSIGNATURE_V1, 2);
        let c =
            Checkpoint { origin: "suanwang.example/log".into(), size: 20_852_163, root: [9; 32], extensions: vec![] };
        let mut note = Note::parse(&c.sign(&log)).unwrap();
        let (got, _) = Checkpoint::open(&note.encode(), &log.verifier(), &[], 0).unwrap();
        assert_eq!(got, c);
        // a quorum of one witness is not met until it cosigns
        assert!(Checkpoint::open(&note.encode(), &log.verifier(), &[witness.verifier()], 1).is_err());
        note.add(&witness.sign(&note.text, 1_679_315_147)).unwrap();
        let (_, n) = Checkpoint::open(&note.encode(), &log.verifier(), &[witness.verifier()], 1).unwrap();
        assert_eq!(
            n.verify(&log.verifier(), &[witness.verifier()], 1).unwrap(),
            vec![("witness.example/w1".to_string(), 1_679_315_147)]
        );
        // every byte of the text, changed, is caught (or makes the note unparseable)
        let enc = note.encode();
        let text_len = note.text.len();
        for i in 0..text_len {
            let mut b = enc.clone().into_bytes();
            b[i] ^= 1;
            let Ok(s) = String::from_utf8(b) else { continue };
            assert!(
                Checkpoint::open(&s, &log.verifier(), &[witness.verifier()], 1).is_err(),
                "byte {i} changed went unnoticed"
            );
        }
        // a truncated note
        assert!(Checkpoint::open(&enc[..enc.len() - 10], &log.verifier(), &[], 0).is_err());
        // another key with the same name
        let impostor = signer("suanwang.example/log", ED25519, 3);
        assert!(Checkpoint::open(&c.sign(&impostor), &log.verifier(), &[], 0).is_err());
    }
}
