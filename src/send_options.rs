//! What goes with a message besides its content, for interactive and
//! messages bodies alike: formatting (`parse_mode` or `entities`), the
//! message it replies to, delivery flags, the client's own correlation
//! (`reference`, `metadata`) and when to send it (`send_at`).
//!
//! Options sit at the top level of a body. They are checked at enqueue and
//! stored in the normal form: markup is parsed once into plain text and
//! `entities`, so a stored body has no `parse_mode` and reads back through
//! the same checks.

use grammers_tl_types as tl;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::formatting::{self, Entity, FormattedText, ParseMode};
use crate::interactive::{Object, Path, as_i64, utf16_len};
use crate::queue::Timestamp;

/// `reference`: at most this many characters.
pub const REFERENCE_MAX: usize = 128;
/// `metadata`: a JSON object of at most this many bytes.
pub const METADATA_MAX: usize = 4096;
/// `send_at`: at most this far ahead.
pub const SEND_AT_MAX_DAYS: i64 = 30;

/// The body fields this module reads.
pub const FIELDS: &[&str] = &[
    "parse_mode",
    "entities",
    "reply_to_message_id",
    "reply_to_channel_message_id",
    "quote",
    "disable_notification",
    "protect_content",
    "link_preview",
    "reference",
    "metadata",
    "send_at",
];

/// The message a message replies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTarget {
    /// A message telegate sent, by telegate's id (resolved to Telegram's
    /// when the reply goes out, so it may still be queued at enqueue).
    Telegate(i64),
    /// Telegram's id of any message of the chat (a user's, say).
    Channel(i32),
}

/// Everything but the content; deserializes from the stored normal form,
/// unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOptions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entities: Vec<Entity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to_message_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to_channel_message_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quote: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    disable_notification: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    protect_content: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    link_preview: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_at: Option<String>,
}

fn is_true(value: &bool) -> bool {
    *value
}

/// `link_preview` when a stored form leaves it out.
pub(crate) fn yes() -> bool {
    true
}

impl SendOptions {
    /// The `parse_mode` of `body`, if given.
    pub(crate) fn parse_mode(body: &Object<'_, '_>) -> Result<Option<ParseMode>, ApiError> {
        body.opt_str("parse_mode")?
            .map(|name| ParseMode::from_name(name, &body.path_of("parse_mode")))
            .transpose()
    }

    /// `raw` text as the body's `parse_mode` says: plain text and entities
    /// (none without a mode). Lengths are for the caller to check, on the
    /// result.
    pub(crate) fn format(
        mode: Option<ParseMode>,
        raw: &str,
        path: &Path<'_>,
    ) -> Result<FormattedText, ApiError> {
        match mode {
            Some(mode) => formatting::parse(mode, raw, path),
            None => Ok(FormattedText {
                text: raw.to_owned(),
                entities: Vec::new(),
            }),
        }
    }

    /// Reads the options of `body`, whose text (if any) is `text`, already
    /// formatted by [`SendOptions::format`].
    pub(crate) fn read(
        body: &Object<'_, '_>,
        text: Option<&FormattedText>,
    ) -> Result<Self, ApiError> {
        let mut entities = text.map(|t| t.entities.clone()).unwrap_or_default();
        if let Some(given) = body.get("entities") {
            let path = body.path_of("entities");
            if body.has("parse_mode") {
                return Err(path.broken("cannot be given with `parse_mode`: give one or the other"));
            }
            let Some(text) = text else {
                return Err(path.broken("needs a `text` to apply to"));
            };
            let array = crate::interactive::as_array(given, &path)?;
            entities = formatting::read_entities(array, &text.text, &path)?;
        }
        let reply_to_message_id = body
            .get("reply_to_message_id")
            .map(|value| {
                positive(
                    as_i64(value, &body.path_of("reply_to_message_id"))?,
                    &body.path_of("reply_to_message_id"),
                )
            })
            .transpose()?;
        let reply_to_channel_message_id = body
            .get("reply_to_channel_message_id")
            .map(|value| {
                let path = body.path_of("reply_to_channel_message_id");
                let id = positive(as_i64(value, &path)?, &path)?;
                i32::try_from(id).map_err(|_| path.broken("is not a Telegram message id"))
            })
            .transpose()?;
        if reply_to_message_id.is_some() && reply_to_channel_message_id.is_some() {
            return Err(body.path_of("reply_to_channel_message_id").broken(
                "cannot be given with `reply_to_message_id`: a message replies to one message",
            ));
        }
        let quote = body.opt_str("quote")?;
        if let Some(quote) = quote {
            let path = body.path_of("quote");
            if reply_to_message_id.is_none() && reply_to_channel_message_id.is_none() {
                return Err(
                    path.broken("needs `reply_to_message_id` or `reply_to_channel_message_id`")
                );
            }
            crate::interactive::not_blank(quote, &path)?;
            if utf16_len(quote) > 1024 {
                return Err(path.broken("must be at most 1024 UTF-16 code units"));
            }
        }
        let reference = body.opt_str("reference")?;
        if let Some(reference) = reference
            && (reference.is_empty() || reference.chars().count() > REFERENCE_MAX)
        {
            return Err(body
                .path_of("reference")
                .broken(format_args!("must be 1–{REFERENCE_MAX} characters")));
        }
        let metadata = body
            .get("metadata")
            .map(|value| metadata(value, &body.path_of("metadata")))
            .transpose()?;
        let send_at = body
            .opt_str("send_at")?
            .map(|at| send_at(at, &body.path_of("send_at")).map(|_| at.to_owned()))
            .transpose()?;
        Ok(SendOptions {
            entities,
            reply_to_message_id,
            reply_to_channel_message_id,
            quote: quote.map(str::to_owned),
            disable_notification: body.flag("disable_notification")?,
            protect_content: body.flag("protect_content")?,
            link_preview: match body.get("link_preview") {
                Some(value) => crate::interactive::as_bool(value, &body.path_of("link_preview"))?,
                None => true,
            },
            reference: reference.map(str::to_owned),
            metadata,
            send_at,
        })
    }

    /// The entities of the text.
    pub fn entities(&self) -> &[Entity] {
        &self.entities
    }

    /// The entities as MTProto sends them (`None` when there are none).
    pub fn tl_entities(&self) -> Option<Vec<tl::enums::MessageEntity>> {
        (!self.entities.is_empty()).then(|| self.entities.iter().map(Entity::to_tl).collect())
    }

    /// The message replied to, if any.
    pub fn reply_target(&self) -> Option<ReplyTarget> {
        self.reply_to_message_id
            .map(ReplyTarget::Telegate)
            .or(self.reply_to_channel_message_id.map(ReplyTarget::Channel))
    }

    /// `inputReplyToMessage` for Telegram's id of the replied message.
    pub fn reply_to(&self, channel_message_id: i32) -> tl::enums::InputReplyTo {
        tl::types::InputReplyToMessage {
            reply_to_msg_id: channel_message_id,
            top_msg_id: None,
            reply_to_peer_id: None,
            quote_text: self.quote.clone(),
            quote_entities: None,
            quote_offset: None,
            monoforum_peer_id: None,
            todo_item_id: None,
            poll_option: None,
        }
        .into()
    }

    /// `disable_notification`: sent `silent`.
    pub fn silent(&self) -> bool {
        self.disable_notification
    }

    /// `protect_content`: sent `noforwards`.
    pub fn noforwards(&self) -> bool {
        self.protect_content
    }

    /// `link_preview: false`: sent `no_webpage`.
    pub fn no_webpage(&self) -> bool {
        !self.link_preview
    }

    /// The client's own id for the job.
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }

    /// Sets the client's own id (already checked by the envelope that
    /// carried it).
    pub(crate) fn set_reference(&mut self, reference: Option<String>) {
        self.reference = reference;
    }

    /// The client's JSON object stored with the job.
    pub fn metadata(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.metadata.as_ref()
    }

    /// When the job may go out at the earliest (`None`: at once).
    pub fn send_at(&self) -> Option<Timestamp> {
        let at = self.send_at.as_deref()?;
        let at: jiff::Timestamp = at.parse().ok()?;
        Some(Timestamp::from_millis(at.as_millisecond()))
    }
}

/// The `reference` and `metadata` stored in a job's normalized payload
/// (both kinds keep them at the top level), for events about the job.
pub fn correlation(payload: &str) -> (Option<String>, Option<serde_json::Value>) {
    #[derive(serde::Deserialize)]
    struct Correlation {
        reference: Option<String>,
        metadata: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Correlation>(payload) {
        Ok(found) => (found.reference, found.metadata),
        Err(_) => (None, None),
    }
}

fn positive(id: i64, path: &Path<'_>) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(path.broken(format_args!("must be a positive message id, got {id}")))
    }
}

fn metadata(
    value: crate::interactive::Json<'_>,
    path: &Path<'_>,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let serde_json::Value::Object(object) = crate::interactive::to_value(value) else {
        return Err(path.wrong_type("a JSON object", value));
    };
    let size = serde_json::to_vec(&object).map_or(usize::MAX, |bytes| bytes.len());
    if size > METADATA_MAX {
        return Err(path.broken(format_args!(
            "must be at most {METADATA_MAX} bytes of JSON, got {size}"
        )));
    }
    Ok(object)
}

/// `send_at`: an RFC 3339 time at most [`SEND_AT_MAX_DAYS`] ahead (a past
/// time sends at once).
fn send_at(at: &str, path: &Path<'_>) -> Result<Timestamp, ApiError> {
    let parsed: jiff::Timestamp = at.parse().map_err(|_| {
        path.broken(format_args!(
            "must be an RFC 3339 time such as 2026-12-01T18:30:00Z, got `{}`",
            crate::interactive::echo(at)
        ))
    })?;
    let at = Timestamp::from_millis(parsed.as_millisecond());
    let limit = Timestamp::now().as_millis() + SEND_AT_MAX_DAYS * 24 * 3600 * 1000;
    if at.as_millis() > limit {
        return Err(path.broken(format_args!(
            "must be at most {SEND_AT_MAX_DAYS} days ahead"
        )));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorCode;
    use crate::interactive::Document;

    fn read(value: serde_json::Value, text: &str) -> Result<SendOptions, ApiError> {
        let document = Document::from_value(&value);
        let root = Path::root("");
        let body = Object::new(document.root(), &root, FIELDS)?;
        let mode = SendOptions::parse_mode(&body)?;
        let text = SendOptions::format(mode, text, &Path::root("text"))?;
        SendOptions::read(&body, Some(&text))
    }

    #[test]
    fn reads_every_option_and_stores_the_normal_form() {
        let options = read(
            json!({"parse_mode": "HTML", "reply_to_channel_message_id": 5, "quote": "hi",
                   "disable_notification": true, "protect_content": true, "link_preview": false,
                   "reference": "order-1", "metadata": {"crm": 7}, "send_at": "2020-01-01T00:00:00Z"}),
            "<b>x</b>",
        )
        .unwrap();
        assert!(options.silent() && options.noforwards() && options.no_webpage());
        assert_eq!(options.reply_target(), Some(ReplyTarget::Channel(5)));
        assert_eq!(options.reference(), Some("order-1"));
        assert_eq!(
            options.send_at(),
            Some(Timestamp::from_millis(1_577_836_800_000))
        );
        let stored = serde_json::to_value(&options).unwrap();
        assert_eq!(
            stored["entities"],
            json!([{"type": "bold", "offset": 0, "length": 1}])
        );
        assert!(stored.get("parse_mode").is_none());
        assert_eq!(stored["link_preview"], false);
        let plain = read(json!({}), "x").unwrap();
        assert_eq!(serde_json::to_value(&plain).unwrap(), json!({}));
        assert!(!plain.no_webpage());
    }

    #[test]
    fn refuses_broken_options_naming_the_field() {
        let cases = [
            (
                json!({"reference": "r".repeat(129)}),
                "`reference`",
                ErrorCode::Rejected,
            ),
            (json!({"metadata": [1]}), "`metadata`", ErrorCode::Invalid),
            (
                json!({"metadata": {"x": "y".repeat(4100)}}),
                "4096 bytes",
                ErrorCode::Rejected,
            ),
            (
                json!({"send_at": "tomorrow"}),
                "RFC 3339",
                ErrorCode::Rejected,
            ),
            (
                json!({"send_at": "2999-01-01T00:00:00Z"}),
                "30 days",
                ErrorCode::Rejected,
            ),
            (
                json!({"quote": "x"}),
                "needs `reply_to_message_id`",
                ErrorCode::Rejected,
            ),
            (
                json!({"reply_to_message_id": 0}),
                "positive",
                ErrorCode::Rejected,
            ),
            (
                json!({"parse_mode": "Markdown"}),
                "`parse_mode`",
                ErrorCode::Invalid,
            ),
            (
                json!({"parse_mode": "HTML", "entities": []}),
                "one or the other",
                ErrorCode::Rejected,
            ),
            (
                json!({"entities": [{"type": "bold", "offset": 0, "length": 3}]}),
                "past the end",
                ErrorCode::Rejected,
            ),
        ];
        for (body, needle, code) in cases {
            let err = read(body.clone(), "x").unwrap_err();
            assert!(err.message.contains(needle), "{body}: {}", err.message);
            assert_eq!(err.code, code, "{body}: {}", err.message);
        }
    }

    #[test]
    fn correlation_comes_back_out_of_a_payload() {
        let (reference, metadata) =
            correlation(r#"{"destination_user_id":"1","reference":"r-1","metadata":{"a":1}}"#);
        assert_eq!(reference.as_deref(), Some("r-1"));
        assert_eq!(metadata, Some(json!({"a": 1})));
        assert_eq!(correlation("{}"), (None, None));
    }

    #[test]
    fn both_bodies_read_back_from_their_stored_form_with_every_option() {
        let options = json!({
            "parse_mode": "MarkdownV2", "reply_to_message_id": 3, "quote": "q",
            "disable_notification": true, "protect_content": true, "link_preview": false,
            "reference": "r-1", "metadata": {"a": [1, 2]}, "send_at": "2020-01-01T00:00:00Z"
        });
        let mut interactive = json!({"destination_user_id": "42",
            "telegram_interactive_message": {"type": "reply_buttons", "text": "*Hi*",
                "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}}});
        let mut messages = json!({"destination_user_id": 42, "text": "_Hi_"});
        for body in [&mut interactive, &mut messages] {
            body.as_object_mut()
                .unwrap()
                .extend(options.as_object().unwrap().clone());
        }
        let request = crate::interactive::InteractiveRequest::from_value(&interactive).unwrap();
        let stored = serde_json::to_string(&request).unwrap();
        let back = crate::interactive::InteractiveRequest::from_json(stored.as_bytes()).unwrap();
        assert_eq!(back, request);
        let unchecked = crate::interactive::InteractiveRequest::from_stored(&stored).unwrap();
        assert_eq!(unchecked, request);
        assert_eq!(back.text(), "Hi");
        assert_eq!(back.options().entities().len(), 1);
        let request = crate::messages::MessagesRequest::from_value(&messages).unwrap();
        let stored = serde_json::to_string(&request).unwrap();
        let back = crate::messages::MessagesRequest::from_json(stored.as_bytes()).unwrap();
        assert_eq!(back, request);
        assert_eq!(back.options().reference(), Some("r-1"));
    }
}
