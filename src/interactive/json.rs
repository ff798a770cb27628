//! A hand walk over a JSON document that always knows where it is.
//!
//! serde's derive errors say "unknown variant" or "invalid type" without
//! saying *where*, and an unknown field is silently dropped unless every
//! struct is `deny_unknown_fields`. Clients need the seed's codes and a JSON
//! path (`telegram_interactive_message.reply_markup.inline_keyboard[0][1].text`)
//! in every message, so request bodies are walked by hand: every accessor here
//! carries a [`Path`] and turns a failure into the right [`ApiError`].
//!
//! The document is a [`Document`] rather than a `serde_json::Value`: one
//! flat vector of nodes (a "tape", each container recording where it ends)
//! whose strings borrow from the body. That is one allocation per body instead
//! of one per string, key, object and array — parsing is about three times as
//! fast — and an object keeps its fields in order, so a repeated field can be
//! refused instead of silently overwritten.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::path::{Path, echo};
use crate::error::{ApiError, ErrorCode};

/// A parsed JSON document, borrowing its strings from the input where it can
/// (strings with escapes are owned).
#[derive(Debug, Clone, PartialEq)]
pub struct Document<'a> {
    tape: Vec<Node<'a>>,
}

/// One node of the tape. A container is followed by its contents (an
/// object's as `Key`, value, `Key`, value, ...); `end` is the index after them.
#[derive(Debug, Clone, PartialEq)]
enum Node<'a> {
    Null,
    Bool(bool),
    /// A whole number that fits `i64`.
    Int(i64),
    /// A whole number above `i64::MAX`.
    UInt(u64),
    Float(f64),
    String(Cow<'a, str>),
    Array {
        len: usize,
        end: usize,
    },
    Object {
        len: usize,
        end: usize,
    },
    Key(Cow<'a, str>),
}

/// A value in a [`Document`].
#[derive(Debug, Clone, Copy)]
pub struct Json<'t> {
    tape: &'t [Node<'t>],
    at: usize,
}

impl<'a> Document<'a> {
    /// Parses `body`; malformed JSON is code 4 with serde_json's line and
    /// column.
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        let malformed = |err: serde_json::Error| ApiError {
            code: ErrorCode::Invalid,
            message: format!("malformed JSON: {err}"),
        };
        // About one node per 8 bytes of JSON; growth handles the rest.
        let mut tape = Vec::with_capacity((body.len() / 8).clamp(8, 1024));
        let mut parser = serde_json::Deserializer::from_slice(body);
        Tape(&mut tape)
            .deserialize(&mut parser)
            .map_err(malformed)?;
        parser.end().map_err(malformed)?;
        Ok(Document { tape })
    }

    /// Borrows a `serde_json::Value` as a document.
    pub fn from_value(value: &'a serde_json::Value) -> Self {
        let mut tape = Vec::new();
        // Reading a `Value` cannot fail: every JSON value is accepted.
        let _ = Tape(&mut tape).deserialize(value);
        Document { tape }
    }

    /// The top-level value.
    pub fn root(&self) -> Json<'_> {
        Json {
            tape: &self.tape,
            at: 0,
        }
    }
}

impl<'de> Deserialize<'de> for Document<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut tape = Vec::new();
        Tape(&mut tape).deserialize(deserializer)?;
        Ok(Document { tape })
    }
}

impl<'t> Json<'t> {
    fn node(&self) -> &'t Node<'t> {
        // Handles are only made by `Document::root` and by walking containers,
        // whose contents lie before their `end`, so `at` is on the tape; were
        // it not (an empty tape), the value reads as `null` rather than panic.
        self.tape.get(self.at).unwrap_or(&Node::Null)
    }

    /// The index after this value and its contents.
    fn end(&self) -> usize {
        match self.node() {
            Node::Array { end, .. } | Node::Object { end, .. } => *end,
            _ => self.at + 1,
        }
    }

    fn at(&self, at: usize) -> Json<'t> {
        Json {
            tape: self.tape,
            at,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.node(), Node::Null)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&'t str> {
        match self.node() {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a number.
    pub fn is_number(&self) -> bool {
        matches!(self.node(), Node::Int(_) | Node::UInt(_) | Node::Float(_))
    }

    /// The JSON type of this value, as error messages name it.
    pub fn type_name(&self) -> &'static str {
        match self.node() {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::UInt(_) | Node::Float(_) => "a number",
            Node::String(_) | Node::Key(_) => "a string",
            Node::Array { .. } => "an array",
            Node::Object { .. } => "an object",
        }
    }
}

/// The elements of a JSON array.
#[derive(Debug, Clone, Copy)]
pub struct Array<'t> {
    array: Json<'t>,
    len: usize,
}

impl<'t> Array<'t> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = Json<'t>> + use<'t> {
        let array = self.array;
        let mut next = array.at + 1;
        (0..self.len).map(move |_| {
            let element = array.at(next);
            next = element.end();
            element
        })
    }
}

/// Fills a tape from any serde deserializer (serde_json's own depth limit
/// bounds the recursion).
struct Tape<'v, 'a>(&'v mut Vec<Node<'a>>);

impl<'de> DeserializeSeed<'de> for Tape<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Tape<'_, 'de> {
    fn push<E>(self, node: Node<'de>) -> Result<(), E> {
        self.0.push(node);
        Ok(())
    }

    /// Pushes a container placeholder, fills its contents with `fill`, then
    /// records its length and end.
    fn container<E>(
        self,
        make: fn(usize, usize) -> Node<'de>,
        fill: impl FnOnce(&mut Vec<Node<'de>>) -> Result<usize, E>,
    ) -> Result<(), E> {
        let at = self.0.len();
        self.0.push(make(0, 0));
        let len = fill(self.0)?;
        let end = self.0.len();
        self.0[at] = make(len, end);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Tape<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.push(Node::Null)
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.push(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.push(Node::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<(), E> {
        self.push(Node::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<(), E> {
        self.push(i64::try_from(u).map_or(Node::UInt(u), Node::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<(), E> {
        self.push(Node::Float(f))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<(), E> {
        self.push(Node::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.push(Node::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<(), E> {
        self.push(Node::String(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.container(
            |len, end| Node::Array { len, end },
            |tape| {
                let mut len = 0;
                while seq.next_element_seed(Tape(tape))?.is_some() {
                    len += 1;
                }
                Ok(len)
            },
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.container(
            |len, end| Node::Object { len, end },
            |tape| {
                let mut len = 0;
                while let Some(Key(key)) = map.next_key()? {
                    tape.push(Node::Key(key));
                    map.next_value_seed(Tape(tape))?;
                    len += 1;
                }
                Ok(len)
            },
        )
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

/// A JSON object whose fields have been checked against a known set, read
/// field by field with paths. `null` counts as absent everywhere: many
/// serializers write `null` for an unset optional field.
#[derive(Clone, Copy)]
pub struct Object<'v, 'p> {
    object: Json<'v>,
    len: usize,
    path: &'p Path<'p>,
}

impl<'v, 'p> Object<'v, 'p> {
    /// `value` as an object at `path` whose fields all are in `known`, each
    /// once. An unknown or repeated field is code 4 and named by its path, so
    /// a typo never vanishes silently.
    pub fn new(value: Json<'v>, path: &'p Path<'p>, known: &[&str]) -> Result<Self, ApiError> {
        let object = Self::any_fields(value, path)?;
        object.deny_unknown(known)?;
        Ok(object)
    }

    /// `value` as an object at `path`, leaving the check of its field names
    /// to the caller ([`Object::deny_unknown`]).
    pub fn any_fields(value: Json<'v>, path: &'p Path<'p>) -> Result<Self, ApiError> {
        match value.node() {
            Node::Object { len, .. } => Ok(Object {
                object: value,
                len: *len,
                path,
            }),
            _ => Err(path.wrong_type("an object", value)),
        }
    }

    /// The fields, in document order.
    fn fields(&self) -> impl Iterator<Item = (&'v str, Json<'v>)> + use<'v> {
        let object = self.object;
        let mut next = object.at + 1;
        (0..self.len).map(move |_| {
            let key = match object.at(next).node() {
                Node::Key(key) => key.as_ref(),
                // An object's contents are keys and values, in turn.
                _ => "",
            };
            let value = object.at(next + 1);
            next = value.end();
            (key, value)
        })
    }

    /// Code 4 for the first field not in `known`, or given twice.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), ApiError> {
        for (index, (key, _)) in self.fields().enumerate() {
            if !known.contains(&key) {
                return Err(ApiError::invalid(format!(
                    "unknown field `{}`; expected one of: {}",
                    self.path.key(&echo(key)),
                    known.join(", ")
                )));
            }
            if self.fields().take(index).any(|(earlier, _)| earlier == key) {
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
    pub fn get(&self, key: &str) -> Option<Json<'v>> {
        self.fields()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
            .filter(|value| !value.is_null())
    }

    /// Field `key`, which must be given (code 1 otherwise).
    pub fn required(&self, key: &'p str) -> Result<Json<'v>, ApiError> {
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
    pub fn array(&self, key: &'p str) -> Result<Array<'v>, ApiError> {
        let value = self.required(key)?;
        as_array(value, &self.path_of(key))
    }
}

/// `value` as a string at `path` (code 4 otherwise).
pub fn as_str<'v>(value: Json<'v>, path: &Path<'_>) -> Result<&'v str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| path.wrong_type("a string", value))
}

/// `value` as a boolean at `path` (code 4 otherwise).
pub fn as_bool(value: Json<'_>, path: &Path<'_>) -> Result<bool, ApiError> {
    match value.node() {
        Node::Bool(b) => Ok(*b),
        _ => Err(path.wrong_type("a boolean", value)),
    }
}

/// `value` as a whole number at `path`: another JSON type is code 4, a
/// fraction or a number beyond 64 bits code 5.
pub fn as_i64(value: Json<'_>, path: &Path<'_>) -> Result<i64, ApiError> {
    const RULE: &str = "must be a whole number in 64 bits";
    match value.node() {
        Node::Int(i) => Ok(*i),
        Node::UInt(u) => Err(path.broken(format_args!("{RULE}, got {u}"))),
        Node::Float(f) => Err(path.broken(format_args!("{RULE}, got {f}"))),
        _ => Err(path.wrong_type("a number", value)),
    }
}

/// `value` as a `serde_json::Value` (for free-form client data such as a
/// job's `metadata`).
pub fn to_value(value: Json<'_>) -> serde_json::Value {
    use serde_json::Value;
    match value.node() {
        Node::Null | Node::Key(_) => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::UInt(u) => Value::from(*u),
        Node::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Node::String(s) => Value::String(s.as_ref().to_owned()),
        Node::Array { len, .. } => Value::Array(
            Array {
                array: value,
                len: *len,
            }
            .iter()
            .map(to_value)
            .collect(),
        ),
        Node::Object { len, .. } => {
            let root = Path::root("");
            let object = Object {
                object: value,
                len: *len,
                path: &root,
            };
            Value::Object(
                object
                    .fields()
                    .map(|(key, value)| (key.to_owned(), to_value(value)))
                    .collect(),
            )
        }
    }
}

/// `value` as an array at `path` (code 4 otherwise).
pub fn as_array<'v>(value: Json<'v>, path: &Path<'_>) -> Result<Array<'v>, ApiError> {
    match value.node() {
        Node::Array { len, .. } => Ok(Array {
            array: value,
            len: *len,
        }),
        _ => Err(path.wrong_type("an array", value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document<'_> {
        Document::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_tape_records_containers_and_borrows_strings() {
        let text = r#"{"a": "plain", "b\u0041": ["esc\"aped", {}], "n": [1, -2, 18446744073709551615, 1.5, true, null]}"#;
        let document = doc(text);
        assert_eq!(
            document.tape,
            [
                Node::Object { len: 3, end: 15 },
                Node::Key("a".into()),
                Node::String("plain".into()),
                Node::Key("bA".into()),
                Node::Array { len: 2, end: 7 },
                Node::String("esc\"aped".into()),
                Node::Object { len: 0, end: 7 },
                Node::Key("n".into()),
                Node::Array { len: 6, end: 15 },
                Node::Int(1),
                Node::Int(-2),
                Node::UInt(u64::MAX),
                Node::Float(1.5),
                Node::Bool(true),
                Node::Null,
            ]
        );
        assert!(matches!(&document.tape[1], Node::Key(Cow::Borrowed("a"))));
        assert!(matches!(
            &document.tape[2],
            Node::String(Cow::Borrowed("plain"))
        ));
        assert!(matches!(&document.tape[3], Node::Key(Cow::Owned(_))));
        // Walking finds every value where the tape puts it.
        let root = Path::root("");
        let object = Object::any_fields(document.root(), &root).unwrap();
        let keys: Vec<&str> = object.fields().map(|(key, _)| key).collect();
        assert_eq!(keys, ["a", "bA", "n"]);
        let numbers = object.array("n").unwrap();
        assert_eq!(numbers.len(), 6);
        let nulls: Vec<bool> = numbers.iter().map(|n| n.is_null()).collect();
        assert_eq!(nulls, [false, false, false, false, false, true]);
        let nested = object.array("bA").unwrap();
        let kinds: Vec<&str> = nested.iter().map(|v| v.type_name()).collect();
        assert_eq!(kinds, ["a string", "an object"]);
        // The same document from a `serde_json::Value` (whose keys are sorted).
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(Document::from_value(&value), document);
    }

    #[test]
    fn an_empty_tape_reads_as_null() {
        let empty = Document { tape: Vec::new() };
        assert!(empty.root().is_null());
        let path = Path::root("x");
        assert_eq!(
            as_str(empty.root(), &path).unwrap_err().code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn unknown_and_repeated_fields_are_named_by_path() {
        let root = Path::root("m");
        let document = doc(r#"{"text": "a", "txet": "b"}"#);
        let err = Object::new(document.root(), &root, &["text"])
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("`m.txet`"), "{}", err.message);

        let document = doc(r#"{"text": "a", "text": "b"}"#);
        let err = Object::new(document.root(), &root, &["text"])
            .err()
            .unwrap();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(err.message, "field `m.text` is given more than once");
    }

    #[test]
    fn long_client_strings_are_cut_in_errors() {
        let root = Path::root("m");
        let text = format!(r#"{{"{}": 1}}"#, "k".repeat(10_000));
        let document = doc(&text);
        let err = Object::new(document.root(), &root, &["text"])
            .err()
            .unwrap();
        assert!(err.message.len() < 200, "{}", err.message);
        assert!(err.message.contains(&format!("`m.{}…`", "k".repeat(64))));
    }

    #[test]
    fn null_counts_as_absent() {
        let root = Path::root("m");
        let document = doc(r#"{"text": null}"#);
        let object = Object::new(document.root(), &root, &["text"]).unwrap();
        assert_eq!(object.opt_str("text").unwrap(), None);
        let err = object.str("text").unwrap_err();
        assert_eq!(err, ApiError::missing("m.text"));
    }

    #[test]
    fn wrong_types_say_expected_and_got() {
        let root = Path::root("m");
        let document = doc(r#"{"text": 3}"#);
        let object = Object::new(document.root(), &root, &["text"]).unwrap();
        let err = object.str("text").unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(err.message, "`m.text` must be a string, got a number");
        let body = Path::root("");
        let document = doc("[1]");
        let Err(err) = Object::new(document.root(), &body, &["text"]) else {
            panic!("an array taken for an object");
        };
        assert_eq!(err.code, ErrorCode::Invalid);
        assert_eq!(
            err.message,
            "the request body must be a JSON object, got an array"
        );
    }

    #[test]
    fn numbers() {
        let path = Path::root("n");
        assert_eq!(as_i64(doc("-7").root(), &path), Ok(-7));
        let code = |text| as_i64(doc(text).root(), &path).unwrap_err().code;
        assert_eq!(code("1.0"), ErrorCode::Rejected);
        assert_eq!(code("18446744073709551615"), ErrorCode::Rejected);
        assert_eq!(code("\"7\""), ErrorCode::Invalid);
    }

    #[test]
    fn malformed_json_is_code_4_with_the_position() {
        let err = Document::parse(b"{\"a\": [1, 2}").unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("line 1 column"), "{}", err.message);
        assert!(Document::parse(b"{} {}").is_err());
        assert!(Document::parse(b"").is_err());
    }
}
