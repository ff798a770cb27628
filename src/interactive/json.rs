//! A hand walk over `serde_json::Value` that always knows where it is.
//!
//! serde's derive errors say "unknown variant" or "invalid type" without
//! saying *where*, and an unknown field is silently dropped unless every
//! struct is `deny_unknown_fields`. Clients need the seed's codes and a JSON
//! path (`telegram_interactive_message.reply_markup.inline_keyboard[0][1].text`)
//! in every message, so request bodies are walked by hand: every accessor here
//! carries a [`Path`] and turns a failure into the right [`ApiError`].
//!
//! Paths are linked lists on the stack, so the happy path allocates nothing
//! for them; they are only rendered when an error is reported.

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

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
    pub fn wrong_type(&self, expected: &str, got: &Value) -> ApiError {
        ApiError::invalid(format!(
            "`{self}` must be {expected}, got {}",
            json_type(got)
        ))
    }

    /// Code 4: a value outside a closed set (an unknown `type`, say).
    pub fn unknown_value(&self, got: &str, allowed: &[&str]) -> ApiError {
        ApiError::invalid(format!(
            "`{self}` is `{got}`, which is not one of the allowed values: {}",
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

/// The JSON type of a value, as error messages name it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a request body into a JSON value; malformed JSON is code 4 with
/// serde_json's line and column.
pub fn parse(body: &[u8]) -> Result<Value, ApiError> {
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
    map: &'v Map<String, Value>,
    path: &'p Path<'p>,
}

impl<'v, 'p> Object<'v, 'p> {
    /// `value` as an object at `path` whose fields all are in `known`.
    /// An unknown field is code 4 and named by its path, so a typo never
    /// vanishes silently.
    pub fn new(value: &'v Value, path: &'p Path<'p>, known: &[&str]) -> Result<Self, ApiError> {
        let object = Self::any_fields(value, path)?;
        object.deny_unknown(known)?;
        Ok(object)
    }

    /// `value` as an object at `path`, leaving the check of its field names
    /// to the caller ([`Object::deny_unknown`]).
    pub fn any_fields(value: &'v Value, path: &'p Path<'p>) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Object { map, path }),
            other => Err(path.wrong_type("an object", other)),
        }
    }

    /// Code 4 for the first field not in `known`.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|key| !known.contains(&key.as_str())) {
            None => Ok(()),
            Some(key) => Err(ApiError::invalid(format!(
                "unknown field `{}`; expected one of: {}",
                self.path.key(key),
                known.join(", ")
            ))),
        }
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
    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// Field `key`, which must be given (code 1 otherwise).
    pub fn required(&self, key: &'p str) -> Result<&'v Value, ApiError> {
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
    pub fn array(&self, key: &'p str) -> Result<&'v [Value], ApiError> {
        let value = self.required(key)?;
        as_array(value, &self.path_of(key))
    }
}

/// `value` as a string at `path` (code 4 otherwise).
pub fn as_str<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| path.wrong_type("a string", value))
}

/// `value` as a boolean at `path` (code 4 otherwise).
pub fn as_bool(value: &Value, path: &Path<'_>) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| path.wrong_type("a boolean", value))
}

/// `value` as a whole number at `path`: another JSON type is code 4, a
/// fraction or a number beyond 64 bits code 5.
pub fn as_i64(value: &Value, path: &Path<'_>) -> Result<i64, ApiError> {
    match value {
        Value::Number(number) => number.as_i64().ok_or_else(|| {
            path.broken(format_args!(
                "must be a whole number in 64 bits, got {number}"
            ))
        }),
        other => Err(path.wrong_type("a number", other)),
    }
}

/// `value` as an array at `path` (code 4 otherwise).
pub fn as_array<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v [Value], ApiError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(path.wrong_type("an array", other)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn unknown_fields_are_named_by_path() {
        let root = Path::root("m");
        let value = json!({"text": "a", "txet": "b"});
        let err = Object::new(&value, &root, &["text"]).err().unwrap();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("`m.txet`"), "{}", err.message);
    }

    #[test]
    fn null_counts_as_absent() {
        let root = Path::root("m");
        let value = json!({"text": null});
        let object = Object::new(&value, &root, &["text"]).unwrap();
        assert_eq!(object.opt_str("text").unwrap(), None);
        let err = object.str("text").unwrap_err();
        assert_eq!(err, ApiError::missing("m.text"));
    }

    #[test]
    fn wrong_types_say_expected_and_got() {
        let root = Path::root("m");
        let value = json!({"text": 3});
        let object = Object::new(&value, &root, &["text"]).unwrap();
        let err = object.str("text").unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(err.message, "`m.text` must be a string, got a number");
    }
}
