//! Formatted text: the Bot API's `parse_mode` markup and `entities`, turned
//! into MTProto message entities when a job is enqueued.
//!
//! MTProto carries formatting as plain text plus a list of entities
//! (offsets and lengths in UTF-16 code units). The Bot API lets a client
//! write that list directly (`entities`) or as markup (`parse_mode`:
//! `"HTML"` or `"MarkdownV2"`, core.telegram.org/bots/api#formatting-options).
//! telegate parses markup strictly by the Bot API's rules: anything the Bot
//! API would refuse is a code 5 error naming the offset and the rule, so a
//! job never fails later for its markup. A request stores the parsed form
//! (plain `text` and `entities`), so re-reading it needs no markup.
//!
//! grammers-client's own parsers are not used: its HTML parser is a lenient
//! html5ever tokenizer (unknown tags are dropped, `<details>` is a spoiler,
//! `tg-spoiler`, `tg-emoji`, `ins`, `strike` and entities like `&#x41;` are
//! not the Bot API's way, errors are never reported and a bad mention id
//! panics), and its "markdown" is CommonMark (pulldown-cmark), not
//! MarkdownV2's escaping rules.

mod entity;
mod html;
mod markdown;

pub use entity::{Entity, EntityKind};

use std::fmt;

use crate::error::ApiError;
use crate::interactive::{Array, Path, utf16_len};

/// Which markup a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    Html,
    MarkdownV2,
}

impl ParseMode {
    /// The Bot API's names (`"HTML"`, `"MarkdownV2"`).
    pub const NAMES: &[&str] = &["HTML", "MarkdownV2"];

    /// Reads `parse_mode` at `path`.
    pub(crate) fn from_name(name: &str, path: &Path<'_>) -> Result<Self, ApiError> {
        match name {
            "HTML" => Ok(ParseMode::Html),
            "MarkdownV2" => Ok(ParseMode::MarkdownV2),
            other => Err(path.unknown_value(other, Self::NAMES)),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParseMode::Html => "HTML",
            ParseMode::MarkdownV2 => "MarkdownV2",
        }
    }
}

/// Plain text and its entities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormattedText {
    pub text: String,
    pub entities: Vec<Entity>,
}

/// Where markup breaks a rule: offsets into the markup as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkupError {
    /// Characters (Unicode scalar values) before the offending spot.
    pub char_offset: usize,
    /// Bytes (UTF-8) before it.
    pub byte_offset: usize,
    pub rule: String,
}

impl fmt::Display for MarkupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at character {} (byte {}): {}",
            self.char_offset, self.byte_offset, self.rule
        )
    }
}

/// Parses `source` written in `mode`; a broken rule is code 5 at `path`.
pub(crate) fn parse(
    mode: ParseMode,
    source: &str,
    path: &Path<'_>,
) -> Result<FormattedText, ApiError> {
    let parsed = match mode {
        ParseMode::Html => html::parse(source),
        ParseMode::MarkdownV2 => markdown::parse(source),
    };
    parsed.map_err(|error| path.broken(format_args!("is not valid {} markup {error}", mode.name())))
}

/// Reads `entities` (Bot API `MessageEntity` objects) for `text`: each
/// within the text, in UTF-16 code units.
pub(crate) fn read_entities(
    array: Array<'_>,
    text: &str,
    path: &Path<'_>,
) -> Result<Vec<Entity>, ApiError> {
    let units = utf16_len(text);
    let mut entities = Vec::with_capacity(array.len());
    for (index, value) in array.iter().enumerate() {
        let at = path.index(index);
        let entity = Entity::from_tree(value, &at)?;
        if entity.end() > units {
            return Err(at.broken(format_args!(
                "ends at UTF-16 offset {}, past the end of the text ({units} units)",
                entity.end()
            )));
        }
        entities.push(entity);
    }
    Ok(entities)
}

/// The markup parsers' shared bookkeeping: the plain text built so far, its
/// length in UTF-16 units, and entities opened but not yet closed.
struct Builder {
    text: String,
    units: usize,
    entities: Vec<Entity>,
    /// Open entities: (index in `entities`, where its markup began).
    open: Vec<(usize, Spot)>,
}

/// A place in the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Spot {
    chars: usize,
    bytes: usize,
}

impl Spot {
    fn error(self, rule: impl Into<String>) -> MarkupError {
        MarkupError {
            char_offset: self.chars,
            byte_offset: self.bytes,
            rule: rule.into(),
        }
    }
}

impl Builder {
    fn new(capacity: usize) -> Self {
        Builder {
            text: String::with_capacity(capacity),
            units: 0,
            entities: Vec::new(),
            open: Vec::new(),
        }
    }

    fn push(&mut self, c: char) {
        self.text.push(c);
        self.units += c.len_utf16();
    }

    fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
        self.units += utf16_len(s);
    }

    /// The innermost open entity.
    fn innermost(&self) -> Option<&Entity> {
        self.open.last().map(|&(index, _)| &self.entities[index])
    }

    fn is_open(&self, kind: EntityKind) -> bool {
        self.open
            .iter()
            .any(|&(index, _)| self.entities[index].kind == kind)
    }

    /// Opens an entity of `kind` at the current end of the text, checking
    /// the Bot API's nesting rules.
    fn open(&mut self, mut entity: Entity, at: Spot) -> Result<(), MarkupError> {
        if let Some(outer) = self.open.iter().find_map(|&(index, _)| {
            let outer = &self.entities[index];
            (!outer.kind.may_contain(entity.kind)).then_some(outer.kind)
        }) {
            return Err(at.error(format!(
                "{} cannot be nested inside {}",
                entity.kind.as_str(),
                outer.as_str()
            )));
        }
        entity.offset = self.units;
        self.entities.push(entity);
        self.open.push((self.entities.len() - 1, at));
        Ok(())
    }

    /// Closes the innermost open entity, which must be of `kind`; its
    /// index in `entities`.
    fn close(&mut self, kind: EntityKind, at: Spot) -> Result<usize, MarkupError> {
        match self.open.last() {
            Some(&(index, _)) if self.entities[index].kind == kind => {
                self.open.pop();
                let units = self.units;
                let entity = &mut self.entities[index];
                entity.length = units - entity.offset;
                Ok(index)
            }
            Some(&(index, opened)) => Err(at.error(format!(
                "this closes {} while {} (opened at character {}) is still open",
                kind.as_str(),
                self.entities[index].kind.as_str(),
                opened.chars
            ))),
            None => Err(at.error(format!("this closes {} but none is open", kind.as_str()))),
        }
    }

    /// The text and its non-empty entities; an entity still open is an
    /// error.
    fn finish(self, describe: impl Fn(&Entity) -> String) -> Result<FormattedText, MarkupError> {
        if let Some(&(index, opened)) = self.open.first() {
            return Err(opened.error(format!(
                "{} is never closed",
                describe(&self.entities[index])
            )));
        }
        let mut entities = self.entities;
        // Telegram drops empty entities; so does the Bot API.
        entities.retain(|entity| entity.length > 0);
        Ok(FormattedText {
            text: self.text,
            entities,
        })
    }
}

/// A walk over markup, char by char, knowing where it is.
struct Cursor<'a> {
    source: &'a str,
    spot: Spot,
}

impl<'a> Cursor<'a> {
    fn new(source: &'a str) -> Self {
        Cursor {
            source,
            spot: Spot::default(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.source[self.spot.bytes..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn starts_with(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.spot.chars += 1;
        self.spot.bytes += c.len_utf8();
        Some(c)
    }

    /// Skips `s`, which the caller has checked is next (ASCII only).
    fn skip(&mut self, s: &str) {
        debug_assert!(self.starts_with(s) && s.is_ascii());
        self.spot.chars += s.len();
        self.spot.bytes += s.len();
    }

    fn at_line_start(&self) -> bool {
        self.spot.bytes == 0 || self.source[..self.spot.bytes].ends_with('\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parsers_agree_on_the_same_formatting() {
        let html =
            html::parse("<b>bold <i>both</i></b> and <a href=\"https://e.com\">x</a>").unwrap();
        let markdown = markdown::parse("*bold _both_* and [x](https://e.com)").unwrap();
        assert_eq!(html, markdown);
        assert_eq!(html.text, "bold both and x");
    }

    #[test]
    fn parse_names_the_mode_offset_and_rule() {
        let err = parse(ParseMode::Html, "a <b>b", &Path::root("text")).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::Rejected);
        assert!(err.message.contains("`text`"), "{}", err.message);
        assert!(err.message.contains("HTML"), "{}", err.message);
        assert!(
            err.message.contains("character 2 (byte 2)"),
            "{}",
            err.message
        );
        assert!(err.message.contains("never closed"), "{}", err.message);
    }
}
