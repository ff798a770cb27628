//! Where a value sits in a request body, and the errors that say so.
//!
//! Every error a client gets names the field by its JSON path, as the seed
//! asks (`telegram_interactive_message.reply_markup.inline_keyboard[0][1].text`).
//! A path is a linked list of segments on the stack, each borrowing its parent:
//! walking a body builds paths for free, and they are only rendered when an
//! error is reported.

use std::borrow::Cow;
use std::fmt;

use super::json::Json;
use crate::error::ApiError;

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
    pub fn wrong_type(&self, expected: &str, got: Json<'_>) -> ApiError {
        if self.is_empty() {
            return ApiError::invalid(format!(
                "the request body must be a JSON {}, got {}",
                expected.trim_start_matches("an ").trim_start_matches("a "),
                got.type_name()
            ));
        }
        ApiError::invalid(format!(
            "`{self}` must be {expected}, got {}",
            got.type_name()
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

/// A client's string as an error message repeats it: cut after 64
/// characters, so a huge value cannot bloat the error.
pub fn echo(text: &str) -> Cow<'_, str> {
    const ECHO_CHARS: usize = 64;
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
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
    fn long_client_strings_are_cut() {
        let root = Path::root("m");
        let err = root.unknown_value(&"t".repeat(10_000), &["a"]);
        assert!(err.message.len() < 200, "{}", err.message);
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"é".repeat(65)), format!("{}…", "é".repeat(64)));
    }
}
