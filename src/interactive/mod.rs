//! Interactive messages: the seed's JSON request bodies, validated, and turned
//! into Telegram's reply-markup constructors.
//!
//! `POST /api/v1/telegram/interactive` takes the Octopods body
//! (`seeds/octopods-telegram-interactive.txt`): a `destination_user_id`, a
//! `telegram_interactive_message` — or a WhatsApp `waba_interactive_message`,
//! translated here by [`crate::whatsapp`] — and an optional
//! `intercom_teammate_id`. Everything downstream (queue, sender, callbacks)
//! sees one model, [`InteractiveRequest`], whose every value has passed
//! Telegram's limits with the seed's error codes:
//!
//! - `1` a required field is missing, named by its JSON path;
//! - `4` malformed JSON, a wrong JSON type, an unknown `type` or field;
//! - `5` a broken rule (length, count, URL, ...), naming field and rule.
//!
//! The model serializes to a normal form of the Telegram body, which is
//! itself a valid request: `from_json(to_vec(&request)) == Ok(request)`. The
//! queue stores that JSON, and reads it back with
//! [`InteractiveRequest::from_stored`]: as it was accepted, without checking
//! it again, so a rule a later release tightens never turns an accepted job
//! (its sends, stored answers and `on_click`) into a failure.

mod answer;
mod inline;
mod json;
mod keyboard;
mod markup;
mod on_click;
mod path;
mod rules;
mod summary;

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

pub use answer::CallbackAnswer;
pub use inline::{CopyText, InlineAction, InlineButton, InlineKeyboard};
pub(crate) use json::{Array, Document, Json, Object, as_array, as_bool, as_i64, as_str, to_value};
pub use keyboard::{ForceReply, Key, KeyRequest, Keyboard, PollType, RemoveKeyboard};
pub use markup::Markup;
pub use on_click::{ALREADY_ANSWERED, ON_CLICK_ONLY, OnClick};
pub(crate) use path::{Path, echo};
pub use rules::{
    ANSWER_TEXT_MAX, BUTTONS_MAX, CALLBACK_DATA_MAX, PLACEHOLDER_MAX, TEXT_MAX, utf16_len,
};
pub(crate) use rules::{
    DistinctData, button_count, callback_data, http_url, label, message_text, not_blank,
};
pub use summary::Summary;

use crate::chat::{ChatId, ChatIdError};
use crate::error::{ApiError, ErrorCode};
use crate::formatting::{FormattedText, ParseMode};
use crate::send_options::{self, SendOptions};

/// A validated `POST /api/v1/telegram/interactive` body, WhatsApp shapes
/// already translated into Telegram's.
///
/// Serializes to the normal form the queue stores — the Telegram body with
/// only meaningful fields — and deserializes from it as it is, unchecked
/// (requests are checked once, by [`InteractiveRequest::from_json`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractiveRequest {
    destination_user_id: ChatId,
    telegram_interactive_message: InteractiveMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    intercom_teammate_id: Option<String>,
    #[serde(flatten)]
    options: SendOptions,
}

/// The text of an interactive message and its markup; serializes as the
/// seed's `{"type", "text", "reply_markup"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractiveMessage {
    text: String,
    #[serde(flatten)]
    markup: Markup,
}

impl InteractiveRequest {
    const OWN_FIELDS: &[&str] = &[
        "destination_user_id",
        "telegram_interactive_message",
        "waba_interactive_message",
        "intercom_teammate_id",
    ];

    /// Parses and validates a request body (seed error codes 1, 4, 5).
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        Self::from_tree(Document::parse(body)?.root())
    }

    /// Validates a request body already parsed as a `serde_json::Value`
    /// (slower than [`InteractiveRequest::from_json`], and blind to repeated
    /// fields, which `Value` has already merged).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ApiError> {
        Self::from_tree(Document::from_value(value).root())
    }

    /// Reads a request as the queue stored it (its normal form, written
    /// when the request was accepted) without checking any rule again.
    pub fn from_stored(payload: &str) -> Result<Self, StoredFormError> {
        serde_json::from_str(payload).map_err(StoredFormError)
    }

    fn from_tree(value: Json<'_>) -> Result<Self, ApiError> {
        let root = Path::root("");
        let body = Object::any_fields(value, &root)?;
        body.deny_unknown(&[Self::OWN_FIELDS, send_options::FIELDS].concat())?;
        let destination_user_id = read_chat_id(&body, "destination_user_id")?;
        let mode = SendOptions::parse_mode(&body)?;
        let telegram_interactive_message = match (
            body.get("telegram_interactive_message"),
            body.get("waba_interactive_message"),
        ) {
            (Some(telegram), None) => InteractiveMessage::from_tree(
                telegram,
                &body.path_of("telegram_interactive_message"),
                mode,
            )?,
            (None, Some(whatsapp)) => {
                if mode.is_some() {
                    return Err(body.path_of("parse_mode").broken(
                        "applies to `telegram_interactive_message.text`; a WhatsApp body's text is composed by telegate",
                    ));
                }
                let message = crate::whatsapp::translate(
                    whatsapp,
                    &body.path_of("waba_interactive_message"),
                )?;
                (message, FormattedText::default())
            }
            (None, None) => {
                return Err(ApiError {
                    code: ErrorCode::Missing,
                    message: "missing required field: give `telegram_interactive_message` \
                              (or `waba_interactive_message`)"
                        .to_owned(),
                });
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::rejected(
                    "give exactly one of `telegram_interactive_message` and `waba_interactive_message`, not both",
                ));
            }
        };
        let (telegram_interactive_message, mut formatted) = telegram_interactive_message;
        formatted.text = telegram_interactive_message.text.clone();
        let options = SendOptions::read(&body, Some(&formatted))?;
        Ok(InteractiveRequest {
            destination_user_id,
            telegram_interactive_message,
            intercom_teammate_id: body.opt_str("intercom_teammate_id")?.map(str::to_owned),
            options,
        })
    }

    /// Formatting, reply, flags, correlation and schedule.
    pub fn options(&self) -> &SendOptions {
        &self.options
    }

    /// The chat the message goes to.
    pub fn destination(&self) -> ChatId {
        self.destination_user_id
    }

    /// The message: text and markup.
    pub fn message(&self) -> &InteractiveMessage {
        &self.telegram_interactive_message
    }

    /// The message text (1–4096 UTF-16 code units).
    pub fn text(&self) -> &str {
        self.telegram_interactive_message.text()
    }

    /// The validated markup.
    pub fn markup(&self) -> &Markup {
        self.telegram_interactive_message.markup()
    }

    /// The reply markup to send with the text.
    pub fn reply_markup(&self) -> tl::enums::ReplyMarkup {
        self.markup().to_tl()
    }

    /// The Intercom teammate the message is attributed to (metadata only).
    pub fn intercom_teammate_id(&self) -> Option<&str> {
        self.intercom_teammate_id.as_deref()
    }

    /// The `answer` of the callback button whose data is `data`.
    pub fn callback_answer(&self, data: &[u8]) -> Option<&CallbackAnswer> {
        self.markup().callback_answer(data)
    }

    /// The inline keyboard, if the message has one.
    pub fn inline_keyboard(&self) -> Option<&InlineKeyboard> {
        match self.markup() {
            Markup::ReplyButtons(keyboard) => Some(keyboard),
            _ => None,
        }
    }

    /// The `on_click` of the callback button whose data is `data`.
    pub fn on_click(&self, data: &[u8]) -> Option<&OnClick> {
        self.inline_keyboard()?.callback_button(data)?.on_click()
    }
}

impl InteractiveMessage {
    const FIELDS: &[&str] = &["type", "text", "reply_markup"];

    /// A message of checked text and markup.
    pub(crate) fn new(text: String, markup: Markup) -> Self {
        InteractiveMessage { text, markup }
    }

    /// Reads and checks `{"type", "text", "reply_markup"}` at `path`, the
    /// text written in `mode`; the message (with plain text) and the
    /// text's entities.
    fn from_tree(
        value: Json<'_>,
        path: &Path<'_>,
        mode: Option<ParseMode>,
    ) -> Result<(Self, FormattedText), ApiError> {
        let object = Object::new(value, path, Self::FIELDS)?;
        let text_path = object.path_of("text");
        let formatted = SendOptions::format(mode, object.str("text")?, &text_path)?;
        rules::message_text(&formatted.text, &text_path)?;
        let message = InteractiveMessage {
            text: formatted.text.clone(),
            markup: Markup::from_object(&object)?,
        };
        Ok((message, formatted))
    }

    /// The message text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The markup.
    pub fn markup(&self) -> &Markup {
        &self.markup
    }
}

/// Why a stored payload is not an interactive request's normal form (a
/// payload of another kind, or one no release of telegate wrote).
#[derive(Debug, thiserror::Error)]
#[error("stored payload is not an interactive request's normal form: {0}")]
pub struct StoredFormError(serde_json::Error);

/// `destination_user_id`: a Bot API chat id as a string of digits (leading
/// `-` for groups) or as a JSON integer.
pub(crate) fn read_chat_id(body: &Object<'_, '_>, key: &'static str) -> Result<ChatId, ApiError> {
    let path = body.path_of(key);
    match body.required(key)? {
        value if value.is_number() => {
            let id = json::as_i64(value, &path)?;
            ChatId::new(id).map_err(|err| not_a_chat_id(&path, err))
        }
        value => match value.as_str() {
            Some(id) => id.parse().map_err(|err| not_a_chat_id(&path, err)),
            None => Err(path.wrong_type("a string of digits or an integer", value)),
        },
    }
}

fn not_a_chat_id(path: &Path<'_>, err: ChatIdError) -> ApiError {
    path.broken(format_args!("is not a chat id: {err}"))
}
