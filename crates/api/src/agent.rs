//! The agent protocol's wire types (issue 11 items 4-5; R2, R7): what an agent sends to and
//! gets from `/v1/agents/…`. These are the API's own types, not the engine's: the server
//! converts between them and its state, and the agent (`suanwang-agent`) builds and parses
//! exactly these. Every JSON key is a contract: keys are added, never renamed or dropped.
//!
//! The limits stated as schema attributes are the ones the server enforces (it answers 422
//! naming the field otherwise); a few it can only check against its data (the city, the device
//! model, the price band of the model) are stated in the field's description.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most units a declared pool may have (`suanwang_core::network::MAX_AGENT_POOL_UNITS`).
pub const MAX_POOL_UNITS: u64 = 1 << 20;
/// The most memory per unit a pool may declare, GiB.
pub const MAX_GIB_PER_UNIT: u32 = 65_536;
/// How much of each output stream a report carries, and the server keeps: the last 64 KiB.
pub const LOG_TAIL_BYTES: usize = 64 * 1024;
/// The longest a long-poll for assignments waits, ms.
pub const MAX_WAIT_MS: u64 = 30_000;

/// `POST /v1/agents/register`: a machine connects as a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub site: SiteDeclaration,
    /// What the agent found on its machine: the declaration may not exceed it.
    pub detected: Detected,
}

/// A site as its agent declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteDeclaration {
    /// The site's id: lowercase ASCII `[a-z][a-z0-9_-]*`, at most 64 bytes, not the id of a
    /// place of the network; a provider's new site must be named `<provider>-…`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z][a-z0-9_-]*$"))]
    pub id: String,
    /// The demand city it stands in (a city id of the network).
    pub city: String,
    /// Power usage effectiveness, in [1, 3].
    #[schemars(range(min = 1.0, max = 3.0))]
    pub pue: f64,
    /// At least one pool; pool names are unique within the site.
    #[schemars(length(min = 1))]
    pub pools: Vec<PoolDeclaration>,
}

/// A pool an agent declares: units of a CPU or accelerator model of the device catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoolDeclaration {
    /// Its name within the site (`cpu`, `gpu-h800`).
    pub name: String,
    /// A CPU model (counted in cores) or an accelerator model (counted in cards) of the catalogue.
    pub model: String,
    /// Units: 1..=1,048,576.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub count: u64,
    /// Memory per unit, GiB: at most 65,536.
    #[schemars(range(max = 65_536))]
    pub memory_gib_per_unit: u32,
    /// Power per unit, W: in [0.1, 100000].
    #[schemars(range(min = 0.1, max = 100_000.0))]
    pub power_w_per_unit: f64,
    /// Price per unit-hour, fen: within the price band of its model (the reference network's
    /// prices for the model, ÷ and × 4, at least 1 fen).
    #[schemars(range(min = 1))]
    pub price_fen_per_unit_hour: i64,
}

/// What the agent detected on its machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detected {
    pub cores: u64,
    pub memory_mib: u64,
    /// Accelerator cards found (`nvidia-smi`); absent = none.
    #[serde(default)]
    pub gpus: u64,
}

/// Whether a site takes placements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    Approved,
    /// Registered, but takes no placements until the operator approves it.
    Pending,
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterAnswer {
    pub site: String,
    pub registered: bool,
    pub approval: Approval,
    /// The control plane's identity: an agent whose data directory served another one sets its
    /// runs aside instead of adopting them.
    pub control_plane: String,
    /// `"waiting"` while the site's probe job has not been judged (`--require-probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

/// `GET /v1/agents/{site}/assignments`: what the site should be running now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AssignmentsAnswer {
    pub site: String,
    pub assignments: Vec<Assignment>,
    /// A fingerprint of the assignments (which jobs, which attempts): pass it back as `known`
    /// and the long-poll answers as soon as they differ.
    pub version: String,
    pub control_plane: String,
}

/// One attempt of one job, assigned to a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Assignment {
    /// The job (0: the site's probe job).
    pub id: u64,
    /// The fencing token: a later attempt supersedes this one, whose reports are then refused.
    pub attempt: u32,
    pub site: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cores: u32,
    pub memory_mib: u64,
    /// Wall time after which the run is stopped.
    pub time_limit_s: u64,
    /// The job checkpoints every this many seconds (the agent keeps what the run leaves in its
    /// checkpoint directory with the control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_s: Option<u32>,
    /// Whose job it is (an agent may map tenants to users of its machine).
    #[serde(default)]
    pub tenant: String,
    /// The control plane's unguessable id of this attempt: a run is adopted after an agent
    /// restart only when its directory records the same id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
}

/// `POST /v1/agents/{site}/reports`: how a run ended. Usage must be finite, non-negative and
/// plausible (wall time at most the run's `time_limit_s` + 60 s; CPU seconds at most wall ×
/// cores + 5 % + 1 s; peak memory at most the run's `memory_mib` + 10 % + 256 MiB), else 422
/// naming the field. The whole body is at most 1 MiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub id: u64,
    pub attempt: u32,
    pub succeeded: bool,
    /// Why it failed.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub cpu_seconds: f64,
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub peak_memory_mib: f64,
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub wall_seconds: f64,
    /// The last 64 KiB of standard output, as UTF-8 (invalid bytes replaced by U+FFFD).
    #[serde(default)]
    pub stdout: String,
    /// The last 64 KiB of standard error, as UTF-8 (invalid bytes replaced by U+FFFD).
    #[serde(default)]
    pub stderr: String,
    /// The same tail of standard output as raw bytes (standard base64), present when they are
    /// not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_base64: Option<String>,
    /// The same tail of standard error as raw bytes (standard base64), present when they are
    /// not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_base64: Option<String>,
}

/// The answer to the report of a site's probe job (job 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeVerdict {
    pub site: String,
    /// `waiting`, `passed` or `failed`.
    pub probe: String,
    pub declared: Capacity,
    /// What the probe found, when it passed.
    pub found: Option<Capacity>,
    /// Why it failed.
    pub reason: Option<String>,
}

/// Cores, memory and accelerator cards of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    pub cores: u64,
    pub memory_mib: u64,
    pub gpus: u64,
}

/// `PUT /v1/agents/{site}/checkpoints/{id}?attempt=N` (a gzipped tar, at most 64 MiB): kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointAnswer {
    pub id: u64,
    pub attempt: u32,
    pub bytes: u64,
    pub at_ms: i64,
}

/// The most a checkpoint may be, bytes (gzipped tar).
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024 * 1024;

/// A stream's tail as a report carries it: the last `max` bytes, lossy UTF-8 for `stdout`/
/// `stderr` and, when the bytes are not valid UTF-8, the raw bytes for `*_base64`.
pub fn stream_tail(bytes: &[u8], max: usize) -> (String, Option<String>) {
    let mut tail = &bytes[bytes.len().saturating_sub(max)..];
    if bytes.len() > max {
        // the cut may fall inside a character of valid text: such a tail is text without it
        let partial = tail.iter().take(3).take_while(|b| (**b & 0xc0) == 0x80).count();
        if std::str::from_utf8(&tail[partial..]).is_ok() {
            tail = &tail[partial..];
        }
    }
    match std::str::from_utf8(tail) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (String::from_utf8_lossy(tail).into_owned(), Some(base64(tail))),
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` when it is not base64.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc_4648() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (b"\xff\xfe\x00\x80", "//4AgA=="),
        ] {
            assert_eq!(base64(raw), enc);
            assert_eq!(unbase64(enc).as_deref(), Some(raw));
        }
        assert_eq!(unbase64("Zm9v!"), None);
        assert_eq!(unbase64("Z"), None);
    }

    #[test]
    fn a_tail_keeps_text_as_text_and_other_bytes_as_base64() {
        assert_eq!(stream_tail(b"hello", 64), ("hello".to_string(), None));
        // a cut inside a character of valid text is still text, without the partial character
        let text = "é".repeat(10);
        let (s, raw) = stream_tail(text.as_bytes(), 5);
        assert_eq!((s.as_str(), raw), ("éé", None));
        // a binary header is kept: lossy for reading, raw bytes for whoever needs them
        let bin = b"\x89PNG\r\n\x1a\n\x00\x00";
        let (s, raw) = stream_tail(bin, 64);
        assert!(s.starts_with('\u{fffd}'), "{s:?}");
        assert_eq!(raw.and_then(|r| unbase64(&r)).as_deref(), Some(&bin[..]));
        // only the tail
        let mut long = vec![b'a'; 100];
        long.push(0xff);
        let (s, raw) = stream_tail(&long, 4);
        assert_eq!(s, "aaa\u{fffd}");
        assert_eq!(raw.and_then(|r| unbase64(&r)), Some(b"aaa\xff".to_vec()));
    }

    #[test]
    fn wire_keys_are_the_contract() {
        let a: Assignment = serde_json::from_str(
            r#"{"id":1,"attempt":2,"site":"local","command":"true","args":[],"env":{},"cores":1,
                "memory_mib":1024,"time_limit_s":60}"#,
        )
        .expect("an assignment of before run ids and tenants");
        assert_eq!((a.tenant.as_str(), a.run_id.as_str(), a.checkpoint_s), ("", "", None));
        let r: Report = serde_json::from_str(r#"{"id":1,"attempt":1,"succeeded":true}"#).expect("a minimal report");
        let v = serde_json::to_value(&r).expect("json");
        for key in [
            "id",
            "attempt",
            "succeeded",
            "reason",
            "cpu_seconds",
            "peak_memory_mib",
            "wall_seconds",
            "stdout",
            "stderr",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        assert!(v.get("stdout_base64").is_none(), "absent unless the output is not UTF-8: {v}");
        assert!(serde_json::from_str::<Report>(r#"{"id":1,"attempt":1,"succeeded":true,"bogus":1}"#).is_err());
        let answer: RegisterAnswer = serde_json::from_str(
            r#"{"site":"local","registered":true,"approval":"pending","control_plane":"cp1","probe":"waiting"}"#,
        )
        .expect("answer");
        assert_eq!(answer.approval, Approval::Pending);
    }

    #[test]
    fn the_schemas_state_the_limits() {
        let s = serde_json::to_value(schemars::schema_for!(RegisterRequest)).expect("schema");
        let text = s.to_string();
        for needle in
            ["\"maxLength\":64", "\"maximum\":1048576", "\"maximum\":65536", "\"minimum\":0.1", "^[a-z][a-z0-9_-]*$"]
        {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }
}
