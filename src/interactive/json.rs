//! A hand walk over a JSON document that always knows where it is.
//!
//! serde's derive errors say "unknown variant" or "invalid type" without
//! saying *where*, and an unknown field is silently dropped unless every
//! struct is `deny_unknown_fields`. Clients need the seed's codes and a JSON
//! path (`telegram_interactive_message.reply_markup.inline_keyboard[0][1].text`)
//! in every message, so request bodies are walked by hand: every accessor here
//! carries a [`Path`] and turns a failure into the right [`ApiError`].
//!
//! The document is a [`Json`] tree rather than a `serde_json::Value`: it
//! borrows its strings from the body and keeps an object's fields in order in
//! a short vector, which makes parsing about twice as fast and lets a
//! duplicated field be refused instead of silently overwritten. Paths are
//! linked lists on the stack, so the happy path allocates nothing for them;
//! they are only rendered when an error is reported.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{ApiError, ErrorCode};

/// A parsed JSON document, borrowing its strings from the input where it can
/// (strings with escapes are owned).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// A whole number that fits `i64`.
    Int(i64),
    /// A whole number above `i64::MAX`.
    UInt(u64),
    Float(f64),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Fields in document order, duplicates kept (and refused by [`Object`]).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Borrows a `serde_json::Value` as a [`Json`] tree.
    pub fn from_value(value: &'a serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Json::Int(i),
                (None, Some(u), _) => Json::UInt(u),
                (None, None, f) => Json::Float(f.unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Json::String(Cow::Borrowed(s)),
            serde_json::Value::Array(items) => {
                Json::Array(items.iter().map(Json::from_value).collect())
            }
            serde_json::Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(key, value)| (Cow::Borrowed(key.as_str()), Json::from_value(value)))
                    .collect(),
            ),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Json<'de>, E> {
        Ok(i64::try_from(u).map_or(Json::UInt(u), Json::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(f))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(16));
        while let Some((Key(key), value)) = map.next_entry()? {
            fields.push((key, value));
        }
        Ok(Json::Object(fields))
    }
}

/// An object key, borrowed from the input when it has no escapes
/// (`Cow<str>`'s own `Deserialize` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Where a value sits in the request body, e.g. `a.b[0][1].text`.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    /// The caller's prefix (may be empty for the body itself).
    Root(&'a str),
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    /// The path of a value the caller names `prefix` (`""` for the body).
    pub fn root(prefix: &'a str) -> Self {
        Path {
            parent: None,
            segment: Segment::Root(prefix),
        }
    }

    /// The path of field `key` of this object.
    pub fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    /// The path of element `index` of this array.
    pub fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    /// Code 1: nothing is at this path, but something must be.
    pub fn missing(&self) -> ApiError {
        ApiError::missing(self)
    }

    /// Code 4: the value here has the wrong JSON type.
    pub fn wrong_type(&self, expected: &str, got: &Json<'_>) -> ApiError {
        ApiError::invalid(format!(
            "`{self}` must be {expected}, got {}",
            json_type(got)
        ))
    }

    /// Code 4: a value outside a closed set (an unknown `type`, say).
    pub fn unknown_value(&self, got: &str, allowed: &[&str]) -> ApiError {
        ApiError::invalid(format!(
            "`{self}` is `{}`, which is not one of the allowed values: {}",
            echo(got),
            allowed.join(", ")
        ))
    }

    /// Code 5: the value here breaks `rule`.
    pub fn broken(&self, rule: impl fmt::Display) -> ApiError {
        ApiError::rejected(format!("`{self}` {rule}"))
    }

    /// Whether this path renders as nothing (the body itself).
    fn is_empty(&self) -> bool {
        matches!(self.segment, Segment::Root("")) && self.parent.is_none()
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.segment {
            Segment::Root(prefix) => f.write_str(prefix),
            Segment::Key(key) if self.parent.is_some_and(|p| !p.is_empty()) => {
                write!(f, ".{key}")
            }
            Segment::Key(key) => f.write_str(key),
            Segment::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A client's string as an error message repeats it: cut after
/// [`ECHO_CHARS`] characters, so a huge value cannot bloat the error.
fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    const ECHO_CHARS: usize = 64;
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

/// The JSON type of a value, as error messages name it.
fn json_type(value: &Json<'_>) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Int(_) | Json::UInt(_) | Json::Float(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Parses a request body into a JSON tree; malformed JSON is code 4 with
/// serde_json's line and column.
pub fn parse(body: &[u8]) -> Result<Json<'_>, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError {
        code: ErrorCode::Invalid,
        message: format!("malformed JSON: {err}"),
    })
}

/// A JSON object whose fields have been checked against a known set, read
/// field by field with paths. `null` counts as absent everywhere: many
/// serializers write `null` for an unset optional field.
#[derive(Clone, Copy)]
pub struct Object<'v, 'p> {
    fields: &'v [(Cow<'v, str>, Json<'v>)],
    path: &'p Path<'p>,
}

impl<'v, 'p> Object<'v, 'p> {
    /// `value` as an object at `path` whose fields all are in `known`, each
    /// once. An unknown or repeated field is code 4 and named by its path, so
    /// a typo never vanishes silently.
    pub fn new(value: &'v Json<'v>, path: &'p Path<'p>, known: &[&str]) -> Result<Self, ApiError> {
        let object = Self::any_fields(value, path)?;
        object.deny_unknown(known)?;
        Ok(object)
    }

    /// `value` as an object at `path`, leaving the check of its field names
    /// to the caller ([`Object::deny_unknown`]).
    pub fn any_fields(value: &'v Json<'v>, path: &'p Path<'p>) -> Result<Self, ApiError> {
        match value {
            Json::Object(fields) => Ok(Object { fields, path }),
            other => Err(path.wrong_type("an object", other)),
        }
    }

    /// Code 4 for the first field not in `known`, or given twice.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ApiError> {
        for (index, (key, _)) in self.fields.iter().enumerate() {
            if !known.contains(&key.as_ref()) {
                return Err(ApiError::invalid(format!(
                    "unknown field `{}`; expected one of: {}",
                    self.path.key(&echo(key)),
                    known.join(", ")
                )));
            }
            if self.fields[..index]
                .iter()
                .any(|(earlier, _)| earlier == key)
            {
                return Err(ApiError::invalid(format!(
                    "field `{}` is given more than once",
                    self.path.key(key)
                )));
            }
        }
        Ok(())
    }

    /// The path of this object.
    pub fn path(&self) -> &'p Path<'p> {
        self.path
    }

    /// The path of field `key`.
    pub fn path_of(&self, key: &'p str) -> Path<'p> {
        self.path.key(key)
    }

    /// Whether field `key` is given (and not `null`).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Field `key`, if given and not `null`.
    pub fn get(&self, key: &str) -> Option<&'v Json<'v>> {
        self.fields
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// Field `key`, which must be given (code 1 otherwise).
    pub fn required(&self, key: &'p str) -> Result<&'v Json<'v>, ApiError> {
        self.get(key).ok_or_else(|| self.path_of(key).missing())
    }

    /// Required string field.
    pub fn str(&self, key: &'p str) -> Result<&'v str, ApiError> {
        let value = self.required(key)?;
        as_str(value, &self.path_of(key))
    }

    /// Optional string field.
    pub fn opt_str(&self, key: &'p str) -> Result<Option<&'v str>, ApiError> {
        self.get(key)
            .map(|value| as_str(value, &self.path_of(key)))
            .transpose()
    }

    /// Required boolean field.
    pub fn bool(&self, key: &'p str) -> Result<bool, ApiError> {
        let value = self.required(key)?;
        as_bool(value, &self.path_of(key))
    }

    /// Optional boolean field; absent is `false`.
    pub fn flag(&self, key: &'p str) -> Result<bool, ApiError> {
        self.get(key)
            .map_or(Ok(false), |value| as_bool(value, &self.path_of(key)))
    }

    /// Required array field.
    pub fn array(&self, key: &'p str) -> Result<&'v [Json<'v>], ApiError> {
        let value = self.required(key)?;
        as_array(value, &self.path_of(key))
    }
}

/// `value` as a string at `path` (code 4 otherwise).
pub fn as_str<'v>(value: &'v Json<'_>, path: &Path<'_>) -> Result<&'v str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| path.wrong_type("a string", value))
}

/// `value` as a boolean at `path` (code 4 otherwise).
pub fn as_bool(value: &Json<'_>, path: &Path<'_>) -> Result<bool, ApiError> {
    match value {
        Json::Bool(b) => Ok(*b),
        other => Err(path.wrong_type("a boolean", other)),
    }
}

/// `value` as a whole number at `path`: another JSON type is code 4, a
/// fraction or a number beyond 64 bits code 5.
pub fn as_i64(value: &Json<'_>, path: &Path<'_>) -> Result<i64, ApiError> {
    const RULE: &str = "must be a whole number in 64 bits";
    match value {
        Json::Int(i) => Ok(*i),
        Json::UInt(u) => Err(path.broken(format_args!("{RULE}, got {u}"))),
        Json::Float(f) => Err(path.broken(format_args!("{RULE}, got {f}"))),
        other => Err(path.wrong_type("a number", other)),
    }
}

/// `value` as an array at `path` (code 4 otherwise).
pub fn as_array<'v>(value: &'v Json<'v>, path: &Path<'_>) -> Result<&'v [Json<'v>], ApiError> {
    match value {
        Json::Array(items) => Ok(items),
        other => Err(path.wrong_type("an array", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Json<'_> {
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn paths_render_like_the_seed() {
        let root = Path::root("telegram_interactive_message");
        let markup = root.key("reply_markup");
        let keyboard = markup.key("inline_keyboard");
        let row = keyboard.index(0);
        let button = row.index(1);
        assert_eq!(
            button.key("text").to_string(),
            "telegram_interactive_message.reply_markup.inline_keyboard[0][1].text"
        );
        let body = Path::root("");
        assert_eq!(
            body.key("destination_user_id").to_string(),
            "destination_user_id"
        );
        assert_eq!(body.to_string(), "");
    }

    #[test]
    fn parses_borrowing_what_it_can() {
        let text = r#"{"a": "plain", "b\u0041": "esc\"aped", "n": [1, -2, 18446744073709551615, 1.5, true, null]}"#;
        let Json::Object(fields) = doc(text) else {
            panic!("not an object")
        };
        assert!(matches!(
            &fields[0],
            (Cow::Borrowed("a"), Json::String(Cow::Borrowed("plain")))
        ));
        assert_eq!(fields[1].0, "bA");
        assert_eq!(fields[1].1, Json::String("esc\"aped".into()));
        assert_eq!(
            fields[2].1,
            Json::Array(vec![
                Json::Int(1),
                Json::Int(-2),
                Json::UInt(u64::MAX),
                Json::Float(1.5),
                Json::Bool(true),
                Json::Null
            ])
        );
        // The same tree from a `serde_json::Value`.
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let Json::Object(mut from_value) = Json::from_value(&value) else {
            panic!("not an object")
        };
        from_value.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(from_value, fields);
    }

    #[test]
    fn unknown_and_repeated_fields_are_named_by_path() {
        let root = Path::root("m");
        let value = doc(r#"{"text": "a", "txet": "b"}"#);
        let err = Object::new(&value, &root, &["text"]).err().unwrap();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("`m.txet`"), "{}", err.message);

        let value = doc(r#"{"text": "a", "text": "b"}"#);
        let err = Object::new(&value, &root, &["text"]).err().unwrap();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(err.message, "field `m.text` is given more than once");
    }

    #[test]
    fn long_client_strings_are_cut_in_errors() {
        let root = Path::root("m");
        let text = format!(r#"{{"{}": 1}}"#, "k".repeat(10_000));
        let value = doc(&text);
        let err = Object::new(&value, &root, &["text"]).err().unwrap();
        assert!(err.message.len() < 200, "{}", err.message);
        assert!(err.message.contains(&format!("`m.{}…`", "k".repeat(64))));
        let err = root.unknown_value(&"t".repeat(10_000), &["a"]);
        assert!(err.message.len() < 200, "{}", err.message);
    }

    #[test]
    fn null_counts_as_absent() {
        let root = Path::root("m");
        let value = doc(r#"{"text": null}"#);
        let object = Object::new(&value, &root, &["text"]).unwrap();
        assert_eq!(object.opt_str("text").unwrap(), None);
        let err = object.str("text").unwrap_err();
        assert_eq!(err, ApiError::missing("m.text"));
    }

    #[test]
    fn wrong_types_say_expected_and_got() {
        let root = Path::root("m");
        let value = doc(r#"{"text": 3}"#);
        let object = Object::new(&value, &root, &["text"]).unwrap();
        let err = object.str("text").unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(err.message, "`m.text` must be a string, got a number");
    }

    #[test]
    fn numbers() {
        let path = Path::root("n");
        assert_eq!(as_i64(&doc("-7"), &path), Ok(-7));
        assert_eq!(
            as_i64(&doc("1.0"), &path).unwrap_err().code,
            ErrorCode::Rejected
        );
        assert_eq!(
            as_i64(&doc("18446744073709551615"), &path)
                .unwrap_err()
                .code,
            ErrorCode::Rejected
        );
        assert_eq!(
            as_i64(&doc("\"7\""), &path).unwrap_err().code,
            ErrorCode::Invalid
        );
    }
}
