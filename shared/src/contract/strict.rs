//! Strict JSON: the one way message bodies are parsed.
//!
//! `serde_json::from_str::<Value>` keeps the last of two equal keys (`{"runId":"a","runId":"b"}`
//! reads as `b`, while a peer's parser may read `a`) and accepts nesting up to 128 levels,
//! which is more than a stored history item can carry once the payload is wrapped in its event
//! and batch (the history then fails to read back: the run is bricked). Both are refused
//! here, with the key's path or the depth in the reason.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and objects accepted in a message body (the body itself is
/// level 1). Stored history wraps a payload in two or three more levels, well under
/// serde_json's read limit of 128, so whatever is accepted here can be read back.
pub const MAX_JSON_DEPTH: usize = 64;

/// Why a body was refused by the strict parser (beyond not being JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// The same key twice in one object, at `path`.
    DuplicateKey { path: String, key: String },
    /// Nesting deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
}

/// Parses `text` as JSON, refusing duplicate keys (at any level) and nesting deeper than
/// `max_depth`. `Err(Ok(_))` is a strictness refusal, `Err(Err(_))` is not JSON.
pub(crate) fn parse(text: &str, max_depth: usize) -> Result<Value, Result<Strictness, String>> {
    let problem = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Level {
        depth: 0,
        max_depth,
        path: &Path::Root,
        problem: &problem,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(value) => Ok(value),
        Err(e) => Err(problem.into_inner().ok_or_else(|| e.to_string())),
    }
}

/// The path of the value being parsed, built only when a duplicate is reported.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("."),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(Path::Root, i) => write!(f, "[{i}]"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

#[derive(Clone, Copy)]
struct Level<'a> {
    depth: usize,
    max_depth: usize,
    path: &'a Path<'a>,
    problem: &'a RefCell<Option<Strictness>>,
}

impl Level<'_> {
    fn refuse<E: de::Error>(&self, problem: Strictness) -> E {
        let message = match &problem {
            Strictness::DuplicateKey { key, .. } => format!("duplicate key `{key}`"),
            Strictness::TooDeep => format!("nested deeper than {} levels", self.max_depth),
        };
        *self.problem.borrow_mut() = Some(problem);
        E::custom(message)
    }

    fn nested<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.max_depth {
            return Err(self.refuse(Strictness::TooDeep));
        }
        Ok(depth)
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.nested()?;
        let mut items = Vec::new();
        loop {
            let path = Path::Index(self.path, items.len());
            let level = Level {
                depth,
                path: &path,
                ..self
            };
            match seq.next_element_seed(level)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.nested()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let path = self.path.to_string();
                return Err(self.refuse(Strictness::DuplicateKey { path, key }));
            }
            let path = Path::Key(self.path, &key);
            let value = map.next_value_seed(Level {
                depth,
                path: &path,
                ..self
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Nesting depth of a value: 0 for a scalar, 1 for a flat array or object.
pub fn json_depth(value: &Value) -> usize {
    // Iterative, so a value built in memory (not parsed) of any depth is measured safely.
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Nesting depth of JSON text, by one pass over its bytes (strings skipped), without parsing
/// it: how deep a parser would have to recurse.
pub fn json_text_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn parses_what_serde_json_parses() {
        let text = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#;
        assert_eq!(
            parse(text, MAX_JSON_DEPTH).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let refused = |text: &str| parse(text, MAX_JSON_DEPTH).unwrap_err().unwrap();
        assert_eq!(
            refused(r#"{"runId":"a","seq":1,"runId":"b"}"#),
            Strictness::DuplicateKey {
                path: ".".into(),
                key: "runId".into()
            }
        );
        assert_eq!(
            refused(r#"{"output":{"list":[{"k":1,"k":2}]}}"#),
            Strictness::DuplicateKey {
                path: "output.list[0]".into(),
                key: "k".into()
            }
        );
        // Escapes do not hide a duplicate.
        assert!(matches!(
            refused(r#"{"runId":"a","run\u0049d":"b"}"#),
            Strictness::DuplicateKey { .. }
        ));
    }

    #[test]
    fn depth_is_limited_and_measured() {
        assert!(parse(&nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH).is_ok());
        assert_eq!(
            parse(&nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH).unwrap_err(),
            Ok(Strictness::TooDeep)
        );
        // Past serde_json's own limit the reason is still ours, as the limit is lower.
        assert_eq!(
            parse(&nested(200), MAX_JSON_DEPTH).unwrap_err(),
            Ok(Strictness::TooDeep)
        );
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({"a": [[1], {}]})), 3);
        let value: Value = serde_json::from_str(&nested(100)).unwrap();
        assert_eq!(json_depth(&value), 100);
        assert_eq!(json_text_depth(nested(100).as_bytes()), 100);
        assert_eq!(json_text_depth(br#"{"a":"[[[\"[[","b":[{}]}"#), 3);
        assert_eq!(json_text_depth(b"17"), 0);
    }

    #[test]
    fn not_json_is_told_apart() {
        assert!(parse("{", MAX_JSON_DEPTH).unwrap_err().is_err());
        assert!(parse("{} x", MAX_JSON_DEPTH).unwrap_err().is_err());
    }
}
