//! Principals, roles and tokens (R7). Tokens are 32 random bytes shown once, stored as their
//! SHA-256 hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the platform: sees and changes everything.
    Operator,
    /// Owns data centres (grid connection comes with agents).
    Provider,
    /// Owns links.
    Carrier,
    /// Submits work; sees and changes only its own jobs.
    Tenant,
    /// Reads everything, changes nothing.
    Regulator,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "provider" => Some(Role::Provider),
            "carrier" => Some(Role::Carrier),
            "tenant" => Some(Role::Tenant),
            "regulator" => Some(Role::Regulator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Provider => "provider",
            Role::Carrier => "carrier",
            Role::Tenant => "tenant",
            Role::Regulator => "regulator",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub role: Role,
    /// For tenants, the tenant id their jobs carry.
    pub name: String,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new random token: `sw_` + 64 hex digits.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("sw_{}", hex(&bytes)))
}
