//! Identifiers of network objects.
//!
//! Scheme: lowercase ASCII, starting with a letter, then letters, digits, `_` or `-`; at most
//! 64 bytes. Cities, clusters, green regions, hubs and sites share one namespace. Pool ids are
//! `<site>.<pool>` and live in their own namespace.

/// Why `s` is not a valid identifier, or `None` when it is.
pub fn id_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 64 {
        return Some(format!("is {} bytes long; the limit is 64", s.len()));
    }
    let mut chars = s.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase ASCII letter".into());
    }
    if let Some(bad) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')) {
        return Some(format!("contains {bad:?}; only lowercase ASCII letters, digits, '_' and '-' are allowed"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::id_problem;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["beijing", "chongqing_city", "yrd-qingpu", "a1"] {
            assert_eq!(id_problem(ok), None, "{ok}");
        }
        for bad in ["", "Beijing", "1abc", "北京", "a b", &"x".repeat(65)] {
            assert!(id_problem(bad).is_some(), "{bad}");
        }
    }
}
