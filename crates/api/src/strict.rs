//! Strict JSON: a request body with the same key twice in one object is refused (JSON parsers
//! disagree on which one wins, so a body that means two things to two readers is rejected).

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The path of the first key that appears twice in one object of `json` (`resources.count`,
/// `run.env.PATH`, `resources.variants[1].arch`), or
/// `None` when there is none — or when `json` is not valid JSON at all (its parser says why).
pub fn duplicate_key(json: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    // not JSON: no duplicate to name (the body's parser reports what is wrong)
    (Walk { path: String::new() }).deserialize(&mut de).ok().flatten()
}

struct Walk {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0usize;
        while let Some(dup) = seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path) })? {
            found = found.or(dup);
            i += 1;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            let again = !seen.insert(key);
            let inner = map.next_value_seed(Walk { path: path.clone() })?;
            if again {
                found = found.or(Some(path));
            }
            found = found.or(inner);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_key;

    #[test]
    fn finds_the_first_duplicate_at_any_depth() {
        let check =
            |json: &str, want: Option<&str>| assert_eq!(duplicate_key(json.as_bytes()).as_deref(), want, "{json}");
        check(r#"{"name": "a", "tenant": "t"}"#, None);
        check(r#"{"name": "a", "name": "b"}"#, Some("name"));
        check(r#"{"resources": {"count": 1, "family": "general", "count": 2}}"#, Some("resources.count"));
        check(r#"{"run": {"env": {"A": "1", "A": "2"}}}"#, Some("run.env.A"));
        check(r#"{"variants": [{"arch": "x"}, {"arch": "x", "arch": "y"}]}"#, Some("variants[1].arch"));
        check(r#"[{"a": 1}, {"a": 1}]"#, None);
        check(r#"{"a": {"b": 1}, "c": {"b": 1}}"#, None);
        check("{not json", None);
        check(r#""\ud800""#, None);
    }
}
