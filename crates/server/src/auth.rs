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
    /// Funds voucher programmes (a city's or province's body): files programmes and grants
    /// vouchers from their budgets, sees its own programmes and their redemptions.
    Funder,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "provider" => Some(Role::Provider),
            "carrier" => Some(Role::Carrier),
            "tenant" => Some(Role::Tenant),
            "regulator" => Some(Role::Regulator),
            "funder" => Some(Role::Funder),
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
            Role::Funder => "funder",
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

/// The token of an `Authorization` header value `Bearer TOKEN` (RFC 9110: the scheme is
/// case-insensitive, so `bearer` and `BEARER` are the same).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer sw_1", "bearer sw_1", "BEARER  sw_1 "] {
            assert_eq!(bearer_token(v), Some("sw_1"), "{v}");
        }
        for v in ["Basic sw_1", "Bearer ", "Bearersw_1", ""] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }
}
