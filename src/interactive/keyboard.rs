//! Reply keyboards: a custom keyboard replacing the user's (`reply_keyboard`),
//! taking it away again (`remove_reply_keyboard`), and focusing the user's
//! input on a reply (`highlight_reply`).
//!
//! Pressing a key sends its label as a message, or shares the user's contact
//! or location, or starts a poll. Field names are the Bot API's; they become
//! `replyKeyboardMarkup`, `replyKeyboardHide` and `replyKeyboardForceReply`.

use std::ops::Not;

use grammers_tl_types as tl;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::json::{Json, Object};
use super::markup::read_grid;
use super::path::Path;
use super::rules;
use crate::error::ApiError;

/// The `reply_markup` of a `reply_keyboard` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyboard {
    keyboard: Vec<Vec<Key>>,
    /// Hide the keyboard after one use (`single_use`).
    #[serde(default, skip_serializing_if = "Not::not")]
    one_time_keyboard: bool,
    /// Fit the keyboard's height to its rows (`resize`).
    #[serde(default, skip_serializing_if = "Not::not")]
    resize_keyboard: bool,
    /// Keep the keyboard shown while the user's own one is hidden (`persistent`).
    #[serde(default, skip_serializing_if = "Not::not")]
    is_persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_field_placeholder: Option<String>,
    /// Show the keyboard only to mentioned users or the replied-to sender.
    #[serde(default, skip_serializing_if = "Not::not")]
    selective: bool,
}

/// One key: a label and what pressing it shares, if more than the label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    text: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    request: Option<KeyRequest>,
}

/// What a key asks the user to share instead of sending its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RequestFields")]
pub enum KeyRequest {
    /// `request_contact`: the user's phone number.
    Contact,
    /// `request_location`: the user's location.
    Location,
    /// `request_poll`: a poll the user creates, of any kind or the one given.
    Poll(Option<PollType>),
}

/// The kind of poll a `request_poll` key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollType {
    Quiz,
    Regular,
}

/// The `reply_markup` of a `remove_reply_keyboard` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveKeyboard {
    remove_keyboard: True,
    #[serde(default, skip_serializing_if = "Not::not")]
    selective: bool,
}

/// The `reply_markup` of a `highlight_reply` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceReply {
    force_reply: True,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_field_placeholder: Option<String>,
    #[serde(default, skip_serializing_if = "Not::not")]
    selective: bool,
}

/// A field that is only valid as `true`; serializes as `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct True;

impl Serialize for True {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(true)
    }
}

impl<'de> Deserialize<'de> for True {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match bool::deserialize(deserializer)? {
            true => Ok(True),
            false => Err(serde::de::Error::custom("expected `true`")),
        }
    }
}

/// Reads a field that must be given and `true`.
fn read_true(object: &Object<'_, '_>, key: &'static str) -> Result<True, ApiError> {
    let value = object.bool(key)?;
    rules::must_be_true(value, &object.path_of(key))?;
    Ok(True)
}

/// Reads an optional `input_field_placeholder` (≤64 UTF-16 code units).
fn read_placeholder(object: &Object<'_, '_>) -> Result<Option<String>, ApiError> {
    const KEY: &str = "input_field_placeholder";
    let placeholder = object.opt_str(KEY)?;
    if let Some(placeholder) = placeholder {
        rules::placeholder(placeholder, &object.path_of(KEY))?;
    }
    Ok(placeholder.map(str::to_owned))
}

impl Keyboard {
    const FIELDS: &[&str] = &[
        "keyboard",
        "one_time_keyboard",
        "resize_keyboard",
        "is_persistent",
        "input_field_placeholder",
        "selective",
    ];

    /// Reads and checks a `reply_keyboard` `reply_markup` at `path`.
    pub(crate) fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let grid = object.required("keyboard")?;
        let keyboard = read_grid(grid, &object.path_of("keyboard"), Key::from_value)?;
        Ok(Keyboard {
            keyboard,
            one_time_keyboard: object.flag("one_time_keyboard")?,
            resize_keyboard: object.flag("resize_keyboard")?,
            is_persistent: object.flag("is_persistent")?,
            input_field_placeholder: read_placeholder(&object)?,
            selective: object.flag("selective")?,
        })
    }

    /// The rows of keys, top to bottom.
    pub fn rows(&self) -> &[Vec<Key>] {
        &self.keyboard
    }

    /// `replyKeyboardMarkup`.
    pub fn to_tl(&self) -> tl::enums::ReplyMarkup {
        tl::types::ReplyKeyboardMarkup {
            resize: self.resize_keyboard,
            single_use: self.one_time_keyboard,
            selective: self.selective,
            persistent: self.is_persistent,
            force_reply: false,
            rows: self
                .keyboard
                .iter()
                .map(|row| {
                    tl::types::KeyboardButtonRow {
                        buttons: row.iter().map(Key::to_tl).collect(),
                    }
                    .into()
                })
                .collect(),
            placeholder: self.input_field_placeholder.clone(),
        }
        .into()
    }
}

impl Key {
    const FIELDS: &[&str] = &[
        "text",
        "request_contact",
        "request_location",
        "request_poll",
    ];

    fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let text = object.str("text")?;
        rules::label(text, &object.path_of("text"))?;
        Ok(Key {
            text: text.to_owned(),
            request: KeyRequest::from_object(&object)?,
        })
    }

    /// The label.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What pressing the key shares, if more than its label.
    pub fn request(&self) -> Option<KeyRequest> {
        self.request
    }

    fn to_tl(&self) -> tl::enums::KeyboardButton {
        let r#type = match self.request {
            None => tl::enums::ButtonType::Default,
            Some(KeyRequest::Contact) => tl::enums::ButtonType::RequestPhone,
            Some(KeyRequest::Location) => tl::enums::ButtonType::RequestGeoLocation,
            Some(KeyRequest::Poll(kind)) => tl::types::ButtonTypeRequestPoll {
                quiz: kind.map(|kind| kind == PollType::Quiz),
            }
            .into(),
        };
        tl::types::KeyboardButton {
            style: None,
            text: self.text.clone(),
            r#type,
        }
        .into()
    }
}

impl KeyRequest {
    /// At most one of `request_contact: true`, `request_location: true` and
    /// `request_poll`; `false` flags ask for nothing.
    fn from_object(object: &Object<'_, '_>) -> Result<Option<Self>, ApiError> {
        let contact = object.flag("request_contact")?;
        let location = object.flag("request_location")?;
        let poll = object
            .get("request_poll")
            .map(|value| PollType::from_request(value, &object.path_of("request_poll")))
            .transpose()?;
        match (contact, location, poll) {
            (false, false, None) => Ok(None),
            (true, false, None) => Ok(Some(KeyRequest::Contact)),
            (false, true, None) => Ok(Some(KeyRequest::Location)),
            (false, false, Some(kind)) => Ok(Some(KeyRequest::Poll(kind))),
            (true, true, _) => Err(object
                .path()
                .broken("cannot have both request_contact and request_location true")),
            _ => Err(object
                .path()
                .broken("cannot combine request_poll with request_contact or request_location")),
        }
    }
}

impl Serialize for KeyRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            KeyRequest::Contact => map.serialize_entry("request_contact", &true)?,
            KeyRequest::Location => map.serialize_entry("request_location", &true)?,
            KeyRequest::Poll(kind) => {
                map.serialize_entry("request_poll", &PollRequest { r#type: *kind })?
            }
        }
        map.end()
    }
}

/// The Bot API's `KeyboardButtonPollType`: `{}` or `{"type": "quiz"|"regular"}`.
#[derive(Serialize, Deserialize)]
struct PollRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<PollType>,
}

/// A key's request fields as [`KeyRequest`] serializes them (one of them),
/// read back from the stored form.
#[derive(Deserialize)]
struct RequestFields {
    #[serde(default)]
    request_contact: bool,
    #[serde(default)]
    request_location: bool,
    request_poll: Option<PollRequest>,
}

impl TryFrom<RequestFields> for KeyRequest {
    type Error = &'static str;

    fn try_from(fields: RequestFields) -> Result<Self, Self::Error> {
        match fields {
            RequestFields {
                request_contact: true,
                request_location: false,
                request_poll: None,
            } => Ok(KeyRequest::Contact),
            RequestFields {
                request_contact: false,
                request_location: true,
                request_poll: None,
            } => Ok(KeyRequest::Location),
            RequestFields {
                request_contact: false,
                request_location: false,
                request_poll: Some(poll),
            } => Ok(KeyRequest::Poll(poll.r#type)),
            _ => Err("a key requests exactly one of contact, location and poll"),
        }
    }
}

impl PollType {
    const NAMES: &[&str] = &["quiz", "regular"];

    /// Reads a `request_poll` object: the poll type, if one is required.
    fn from_request(value: Json<'_>, path: &Path<'_>) -> Result<Option<Self>, ApiError> {
        let object = Object::new(value, path, &["type"])?;
        let Some(name) = object.opt_str("type")? else {
            return Ok(None);
        };
        match name {
            "quiz" => Ok(Some(PollType::Quiz)),
            "regular" => Ok(Some(PollType::Regular)),
            other => Err(object.path_of("type").unknown_value(other, Self::NAMES)),
        }
    }
}

impl RemoveKeyboard {
    const FIELDS: &[&str] = &["remove_keyboard", "selective"];

    /// Reads and checks a `remove_reply_keyboard` `reply_markup` at `path`.
    pub(crate) fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        Ok(RemoveKeyboard {
            remove_keyboard: read_true(&object, "remove_keyboard")?,
            selective: object.flag("selective")?,
        })
    }

    /// `replyKeyboardHide`.
    pub fn to_tl(&self) -> tl::enums::ReplyMarkup {
        tl::types::ReplyKeyboardHide {
            selective: self.selective,
        }
        .into()
    }
}

impl ForceReply {
    const FIELDS: &[&str] = &["force_reply", "input_field_placeholder", "selective"];

    /// Reads and checks a `highlight_reply` `reply_markup` at `path`.
    pub(crate) fn from_value(value: Json<'_>, path: &Path<'_>) -> Result<Self, ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        Ok(ForceReply {
            force_reply: read_true(&object, "force_reply")?,
            input_field_placeholder: read_placeholder(&object)?,
            selective: object.flag("selective")?,
        })
    }

    /// `replyKeyboardForceReply`.
    pub fn to_tl(&self) -> tl::enums::ReplyMarkup {
        tl::types::ReplyKeyboardForceReply {
            single_use: false,
            selective: self.selective,
            placeholder: self.input_field_placeholder.clone(),
        }
        .into()
    }
}
