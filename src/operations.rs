//! Changes to a message telegate sent: edit its text or keyboard, delete
//! it. Each is a job of its own in the target message's chat, so it goes
//! through the durable queue in that chat's order: an edit queued after a
//! send goes out after it, and an edit of a message not yet sent waits for
//! it (the message's job is ahead of it in the same line).
//!
//! The bodies name the target by telegate's message id; the sender looks
//! Telegram's id up when the job goes out (see [`crate::outgoing`]).

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::formatting::{self, Entity};
use crate::interactive::{self, Document, InlineKeyboard, Json, Markup, Object, Path};
use crate::send_options::SendOptions;

/// A validated `POST /api/v1/telegram/messages/{message_id}/edit` body.
///
/// Serializes to the form the queue stores, and deserializes from it as it
/// is, unchecked: an accepted edit (or an `on_click`'s) is never refused at
/// send time by a rule tightened since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditRequest {
    /// telegate's id of the message to edit.
    message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entities: Vec<Entity>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "bot_api_markup",
        deserialize_with = "stored_inline_keyboard"
    )]
    reply_markup: Option<Markup>,
    /// `false`: no link preview (stored only then, as the body gives it).
    #[serde(default = "crate::send_options::yes", skip_serializing_if = "is_true")]
    link_preview: bool,
}

fn is_true(value: &bool) -> bool {
    *value
}

impl EditRequest {
    const FIELDS: &[&str] = &[
        "message_id",
        "text",
        "parse_mode",
        "entities",
        "reply_markup",
        "link_preview",
    ];

    /// Reads the edit of message `message_id` from `body`.
    pub fn from_json(message_id: i64, body: &[u8]) -> Result<Self, ApiError> {
        let document = Document::parse(body)?;
        Self::from_tree(Some(message_id), document.root())
    }

    fn from_tree(message_id: Option<i64>, value: Json<'_>) -> Result<Self, ApiError> {
        let root = Path::root("");
        let body = Object::new(value, &root, Self::FIELDS)?;
        // The stored form carries the id; a request names it in the path.
        let message_id = match (message_id, body.get("message_id")) {
            (Some(id), None) => id,
            (None, Some(id)) => interactive::as_i64(id, &body.path_of("message_id"))?,
            (Some(_), Some(_)) => {
                return Err(body
                    .path_of("message_id")
                    .broken("is given by the path, not the body"));
            }
            (None, None) => return Err(body.path_of("message_id").missing()),
        };
        let mode = SendOptions::parse_mode(&body)?;
        let formatted = body
            .opt_str("text")?
            .map(|text| {
                let path = body.path_of("text");
                let formatted = SendOptions::format(mode, text, &path)?;
                interactive::message_text(&formatted.text, &path)?;
                Ok::<_, ApiError>(formatted)
            })
            .transpose()?;
        let mut entities = formatted
            .as_ref()
            .map(|f| f.entities.clone())
            .unwrap_or_default();
        if let Some(given) = body.get("entities") {
            let path = body.path_of("entities");
            let Some(text) = &formatted else {
                return Err(path.broken("needs a `text` to apply to"));
            };
            if mode.is_some() {
                return Err(path.broken("cannot be given with `parse_mode`: give one or the other"));
            }
            entities =
                formatting::read_entities(interactive::as_array(given, &path)?, &text.text, &path)?;
        }
        let reply_markup = body
            .get("reply_markup")
            .map(|markup| {
                let path = body.path_of("reply_markup");
                let markup = Markup::from_reply_markup_tree(markup, &path)?;
                let Markup::ReplyButtons(keyboard) = &markup else {
                    return Err(path.broken(
                        "must be an `inline_keyboard`: Telegram edits only inline keyboards",
                    ));
                };
                keyboard.refuse_on_click(&path, interactive::ON_CLICK_ONLY)?;
                Ok(markup)
            })
            .transpose()?;
        if formatted.is_none() && reply_markup.is_none() {
            return Err(ApiError {
                code: ErrorCode::Missing,
                message: "missing required field: give `text` or `reply_markup` (or both)"
                    .to_owned(),
            });
        }
        let link_preview = match body.get("link_preview") {
            Some(value) => interactive::as_bool(value, &body.path_of("link_preview"))?,
            None => true,
        };
        Ok(EditRequest {
            message_id,
            text: formatted.map(|f| f.text),
            entities,
            reply_markup,
            link_preview,
        })
    }

    /// An edit of message `message_id` to `text` (with `entities`) and
    /// `keyboard` (`None`: the message is left without one, as Telegram
    /// does with an edit that gives no markup), all already checked.
    pub(crate) fn new(
        message_id: i64,
        text: String,
        entities: Vec<Entity>,
        keyboard: Option<Markup>,
    ) -> Self {
        EditRequest {
            message_id,
            text: Some(text),
            entities,
            reply_markup: keyboard,
            link_preview: true,
        }
    }

    /// telegate's id of the message to edit.
    pub fn message_id(&self) -> i64 {
        self.message_id
    }

    /// The new text, if any.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The new text's entities.
    pub fn entities(&self) -> &[Entity] {
        &self.entities
    }

    /// The new inline keyboard, if any.
    pub fn markup(&self) -> Option<&Markup> {
        self.reply_markup.as_ref()
    }

    /// Whether link previews are turned off.
    pub fn no_webpage(&self) -> bool {
        !self.link_preview
    }
}

/// A delete of message `message_id` (`DELETE
/// /api/v1/telegram/messages/{message_id}`); the body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub message_id: i64,
}

/// The stored `reply_markup` is the Bot API-style object a body gives.
fn bot_api_markup<S: serde::Serializer>(
    markup: &Option<Markup>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    markup
        .as_ref()
        .map(Markup::to_reply_markup)
        .serialize(serializer)
}

/// The stored `reply_markup`: an inline keyboard (the only markup an edit
/// takes), read back as stored.
fn stored_inline_keyboard<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Markup>, D::Error> {
    Option::<InlineKeyboard>::deserialize(deserializer)
        .map(|keyboard| keyboard.map(Markup::ReplyButtons))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_reads_back_from_its_stored_form() {
        let edit = EditRequest::from_json(
            7,
            br#"{"text":"<b>Done</b>","parse_mode":"HTML","link_preview":false,
                 "reply_markup":{"inline_keyboard":[[{"text":"Again","callback_data":"a"}]]}}"#,
        )
        .unwrap();
        assert_eq!(edit.text(), Some("Done"));
        assert_eq!(edit.entities().len(), 1);
        let stored = serde_json::to_string(&edit).unwrap();
        let back: EditRequest = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, edit);
        assert_eq!(back.message_id(), 7);
        assert!(back.no_webpage());
    }

    #[test]
    fn a_stored_edit_is_read_as_accepted_not_by_todays_rules() {
        let long = "x".repeat(interactive::ANSWER_TEXT_MAX + 1);
        let stored = serde_json::json!({"message_id": 7, "text": "Done", "retired": true,
            "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a",
                                                   "answer": {"text": long}}]]}})
        .to_string();
        let back: EditRequest = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.message_id(), 7);
        assert!(!back.no_webpage());
        let answer = back.markup().unwrap().callback_answer(b"a").unwrap();
        assert_eq!(answer.text(), Some(long.as_str()));
        // Today's rules refuse that body.
        let mut body = serde_json::to_value(&back).unwrap();
        body.as_object_mut().unwrap().remove("message_id");
        let err = EditRequest::from_json(7, body.to_string().as_bytes()).unwrap_err();
        assert!(err.message.contains("answer.text"), "{}", err.message);
    }

    #[test]
    fn an_edit_needs_text_or_an_inline_keyboard() {
        let err = EditRequest::from_json(7, b"{}").unwrap_err();
        assert_eq!(err.code, ErrorCode::Missing);
        let err =
            EditRequest::from_json(7, br#"{"reply_markup":{"remove_keyboard":true}}"#).unwrap_err();
        assert!(err.message.contains("inline_keyboard"), "{}", err.message);
        let err =
            EditRequest::from_json(7, br#"{"text":"a.b","parse_mode":"MarkdownV2"}"#).unwrap_err();
        assert!(err.message.contains("character 1"), "{}", err.message);
        let err = EditRequest::from_json(7, br#"{"message_id":8,"text":"x"}"#).unwrap_err();
        assert!(err.message.contains("path"), "{}", err.message);
    }
}
