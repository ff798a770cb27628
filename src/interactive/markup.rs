//! The markup of one interactive message: its `type` and `reply_markup`.
//!
//! This is the part of a request that becomes Telegram's `ReplyMarkup`. It is
//! read on its own, under a caller-given JSON path, so that any endpoint whose
//! body carries "a reply markup of any interactive type" validates it exactly
//! as `POST /api/v1/telegram/interactive` does.

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

use super::answer::CallbackAnswer;
use super::inline::InlineKeyboard;
use super::json::{self, Document, Json, Object};
use super::keyboard::{ForceReply, Keyboard, RemoveKeyboard};
use super::path::Path;
use super::rules;
use crate::error::{ApiError, ErrorCode};

/// A validated reply markup, one variant per interactive `type`.
///
/// Serializes as `{"type": ..., "reply_markup": {...}}` in normal form: only
/// the fields that say something (no `false` flags, no `null`s), and
/// deserializes from that form unchecked (see [`crate::interactive`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "reply_markup", rename_all = "snake_case")]
pub enum Markup {
    /// An inline keyboard under the message (`replyInlineMarkup`).
    ReplyButtons(InlineKeyboard),
    /// A custom keyboard replacing the user's (`replyKeyboardMarkup`).
    ReplyKeyboard(Keyboard),
    /// Removes a custom keyboard (`replyKeyboardHide`).
    RemoveReplyKeyboard(RemoveKeyboard),
    /// Focuses the user's input on a reply (`replyKeyboardForceReply`).
    HighlightReply(ForceReply),
}

impl Markup {
    /// The allowed values of `type`.
    pub const TYPES: &[&str] = &[
        "reply_buttons",
        "reply_keyboard",
        "remove_reply_keyboard",
        "highlight_reply",
    ];

    /// Reads and checks `{"type": ..., "reply_markup": {...}}` at `path`
    /// (errors name fields as `{path}.reply_markup...`; `""` for a body).
    pub fn from_value(value: &serde_json::Value, path: &str) -> Result<Self, ApiError> {
        Self::from_tree(Document::from_value(value).root(), path)
    }

    /// [`Markup::from_value`] for a parsed tree.
    fn from_tree(value: Json<'_>, path: &str) -> Result<Self, ApiError> {
        let path = Path::root(path);
        let object = Object::new(value, &path, &["type", "reply_markup"])?;
        Self::from_object(&object)
    }

    /// Reads `type` and `reply_markup` of an object whose other fields the
    /// caller owns (an interactive message also has `text`).
    pub(crate) fn from_object(object: &Object<'_, '_>) -> Result<Self, ApiError> {
        let name = object.str("type")?;
        if !Self::TYPES.contains(&name) {
            return Err(object.path_of("type").unknown_value(name, Self::TYPES));
        }
        let reply_markup = object.required("reply_markup")?;
        Self::read(name, reply_markup, &object.path_of("reply_markup"))
    }

    /// Reads a Bot API-style `reply_markup` object at `path`, without a
    /// `type`: the type is told by the field only it has (`inline_keyboard`,
    /// `keyboard`, `remove_keyboard`, `force_reply`), and checked exactly as
    /// [`Markup::from_value`] checks it (errors name `{path}.inline_keyboard...`).
    pub fn from_reply_markup(value: &serde_json::Value, path: &str) -> Result<Self, ApiError> {
        let document = Document::from_value(value);
        Self::from_reply_markup_tree(document.root(), &Path::root(path))
    }

    /// [`Markup::from_reply_markup`] for a parsed tree, at `path`.
    pub(crate) fn from_reply_markup_tree(
        value: Json<'_>,
        path: &Path<'_>,
    ) -> Result<Self, ApiError> {
        /// The field that tells each type apart, and the type it tells.
        const TELLS: &[(&str, &str)] = &[
            ("inline_keyboard", "reply_buttons"),
            ("keyboard", "reply_keyboard"),
            ("remove_keyboard", "remove_reply_keyboard"),
            ("force_reply", "highlight_reply"),
        ];
        let object = Object::any_fields(value, path)?;
        let Some((_, name)) = TELLS.iter().find(|(field, _)| object.has(field)) else {
            return Err(ApiError {
                code: ErrorCode::Missing,
                message: format!(
                    "missing required field: `{path}` needs one of inline_keyboard, keyboard, \
                     remove_keyboard, force_reply"
                ),
            });
        };
        // A field of another type is then an unknown field of this one.
        Self::read(name, value, path)
    }

    /// The Bot API-style `reply_markup` object of this markup (what
    /// [`Markup::from_reply_markup`] reads back): the `reply_markup` half of
    /// its serialized form.
    pub fn to_reply_markup(&self) -> serde_json::Value {
        match self {
            Markup::ReplyButtons(keyboard) => serde_json::to_value(keyboard),
            Markup::ReplyKeyboard(keyboard) => serde_json::to_value(keyboard),
            Markup::RemoveReplyKeyboard(remove) => serde_json::to_value(remove),
            Markup::HighlightReply(force) => serde_json::to_value(force),
        }
        // Plain structs of strings, flags and vectors always serialize.
        .unwrap_or_default()
    }

    /// Reads the `reply_markup` of type `name` (one of [`Markup::TYPES`]).
    fn read(name: &str, reply_markup: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        match name {
            "reply_buttons" => {
                InlineKeyboard::from_value(reply_markup, path).map(Self::ReplyButtons)
            }
            "reply_keyboard" => Keyboard::from_value(reply_markup, path).map(Self::ReplyKeyboard),
            "remove_reply_keyboard" => {
                RemoveKeyboard::from_value(reply_markup, path).map(Self::RemoveReplyKeyboard)
            }
            _ => ForceReply::from_value(reply_markup, path).map(Self::HighlightReply),
        }
    }

    /// The interactive `type` this markup is.
    pub fn type_name(&self) -> &'static str {
        match self {
            Markup::ReplyButtons(_) => "reply_buttons",
            Markup::ReplyKeyboard(_) => "reply_keyboard",
            Markup::RemoveReplyKeyboard(_) => "remove_reply_keyboard",
            Markup::HighlightReply(_) => "highlight_reply",
        }
    }

    /// The `ReplyMarkup` constructor to send.
    pub fn to_tl(&self) -> tl::enums::ReplyMarkup {
        match self {
            Markup::ReplyButtons(keyboard) => keyboard.to_tl(),
            Markup::ReplyKeyboard(keyboard) => keyboard.to_tl(),
            Markup::RemoveReplyKeyboard(remove) => remove.to_tl(),
            Markup::HighlightReply(force) => force.to_tl(),
        }
    }

    /// The `answer` of the callback button whose data is `data`, if this
    /// markup has such a button and it carries an answer.
    pub fn callback_answer(&self, data: &[u8]) -> Option<&CallbackAnswer> {
        match self {
            Markup::ReplyButtons(keyboard) => keyboard.callback_answer(data),
            _ => None,
        }
    }
}

/// Reads a keyboard grid (`[[button, ...], ...]`) at `path`: every row a
/// non-empty array, 1–6 buttons in all, each read by `read`.
pub(super) fn read_grid<'v, T>(
    value: Json<'v>,
    path: &Path<'_>,
    mut read: impl FnMut(Json<'v>, &Path<'_>) -> Result<T, ApiError>,
) -> Result<Vec<Vec<T>>, ApiError> {
    let rows = json::as_array(value, path)?;
    let mut count = 0;
    for (index, row) in rows.iter().enumerate() {
        let row_path = path.index(index);
        let buttons = json::as_array(row, &row_path)?;
        rules::row_len(buttons.len(), &row_path)?;
        count += buttons.len();
    }
    rules::button_count(count, "buttons", path)?;
    rows.iter()
        .enumerate()
        .map(|(index, row)| {
            let row_path = path.index(index);
            let buttons = json::as_array(row, &row_path)?;
            buttons
                .iter()
                .enumerate()
                .map(|(column, button)| read(button, &row_path.index(column)))
                .collect()
        })
        .collect()
}
