//! Text and media messages: the body of `POST /api/v1/telegram/messages`,
//! validated, and the Telegram messages it becomes.
//!
//! The body is `destination_user_id`, an optional `text`, an optional
//! `media` list (the Telegram fact sheet's `{mediaName, mediaUri, mimeType}`
//! items, see [`crate::media`]), an optional `reply_markup` of any
//! interactive type (Bot API style: `{"inline_keyboard": ...}`,
//! `{"keyboard": ...}`, `{"remove_keyboard": true}`, `{"force_reply": true}`)
//! and an optional `intercom_teammate_id`; at least one of `text` and
//! `media`. It is walked with the interactive model's JSON reader, so errors
//! carry the same codes and JSON paths (`media[1].mimeType`).
//!
//! One request can make several Telegram messages — its *parts*, each with
//! its own stored `random_id` ([`MessagesRequest::parts`]):
//!
//! - text alone is one text message;
//! - text and media: the text is the first media's caption when it fits
//!   ([`CAPTION_MAX`]), else its own text message right after that media;
//! - every further media item is its own message, in the given order;
//! - the reply markup goes on the last part, so buttons sit under the end of
//!   what the job says, where a reader's eyes end up.
//!
//! Like [`crate::interactive::InteractiveRequest`], the request serializes to
//! a normal form that is itself a valid body, and reading it back checks
//! every rule again.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::chat::ChatId;
use crate::error::{ApiError, ErrorCode};
use crate::interactive::{self, Document, Json, Markup, Object, Path};
use crate::media::Media;
use crate::send_options::{self, SendOptions};

/// A caption (text under a media item): at most 1024 UTF-16 code units.
pub const CAPTION_MAX: usize = 1024;
/// Media items per request. Each is a message of its own, sent at the
/// chat's pace (about one a second), so one job cannot hold a chat for long.
pub const MEDIA_MAX: usize = 10;

/// A validated `POST /api/v1/telegram/messages` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagesRequest {
    destination_user_id: ChatId,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    media: Vec<Media>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "bot_api_markup"
    )]
    reply_markup: Option<Markup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    intercom_teammate_id: Option<String>,
    #[serde(flatten)]
    options: SendOptions,
}

/// A client reference: at most this many characters (CM.com's limit).
pub const REFERENCE_MAX: usize = 32;

/// One Telegram message of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPart<'a> {
    pub content: Content<'a>,
    /// Set on the last part only.
    pub reply_markup: Option<&'a Markup>,
}

/// What one part carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// A text message.
    Text(&'a str),
    /// A media message, with the request's text as its caption if it fits.
    Media {
        media: &'a Media,
        caption: Option<&'a str>,
    },
}

impl MessagesRequest {
    const OWN_FIELDS: &[&str] = &[
        "destination_user_id",
        "text",
        "media",
        "reply_markup",
        "intercom_teammate_id",
        "reference",
    ];

    /// Parses and validates a request body (seed error codes 1, 4, 5).
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        Self::from_tree(Document::parse(body)?.root())
    }

    /// Validates a body already parsed as a `serde_json::Value`.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ApiError> {
        Self::from_tree(Document::from_value(value).root())
    }

    fn from_tree(value: Json<'_>) -> Result<Self, ApiError> {
        let root = Path::root("");
        let body = Object::any_fields(value, &root)?;
        body.deny_unknown(&[Self::OWN_FIELDS, send_options::FIELDS].concat())?;
        let destination_user_id = interactive::read_chat_id(&body, "destination_user_id")?;
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
        if mode.is_some() && formatted.is_none() {
            return Err(body
                .path_of("parse_mode")
                .broken("needs a `text` to apply to"));
        }
        let options = SendOptions::read(&body, formatted.as_ref())?;
        let text = formatted.map(|formatted| formatted.text);
        let media = match body.get("media") {
            Some(media) => read_media(media, &body.path_of("media"))?,
            None => Vec::new(),
        };
        let reply_markup = body
            .get("reply_markup")
            .map(|markup| {
                let path = body.path_of("reply_markup");
                let markup = Markup::from_reply_markup_tree(markup, &path)?;
                if let Markup::ReplyButtons(keyboard) = &markup {
                    keyboard.refuse_on_click(&path, interactive::ON_CLICK_ONLY)?;
                }
                Ok::<_, ApiError>(markup)
            })
            .transpose()?;
        let mut request = Self::compose(destination_user_id, text, media, &["text", "media"])?;
        request.reply_markup = reply_markup;
        request.intercom_teammate_id = body.opt_str("intercom_teammate_id")?.map(str::to_owned);
        request.options = options;
        Ok(request)
    }

    /// Formatting, reply, flags, correlation and schedule.
    pub fn options(&self) -> &SendOptions {
        &self.options
    }

    /// A request of already checked `text` and `media` for `destination`,
    /// as another envelope (CM.com's, [`crate::cm`]) maps onto it: at least
    /// one of them, at most [`MEDIA_MAX`] media items. `names` are the two
    /// fields as the envelope calls them, for the error.
    pub(crate) fn compose(
        destination: ChatId,
        text: Option<String>,
        media: Vec<Media>,
        names: &[&str; 2],
    ) -> Result<Self, ApiError> {
        if text.is_none() && media.is_empty() {
            return Err(ApiError {
                code: ErrorCode::Missing,
                message: format!(
                    "missing required field: give `{}` or `{}` (or both)",
                    names[0], names[1]
                ),
            });
        }
        if media.len() > MEDIA_MAX {
            return Err(ApiError::rejected(format!(
                "`{}` must hold 1–{MEDIA_MAX} media items, got {}",
                names[1],
                media.len()
            )));
        }
        Ok(MessagesRequest {
            destination_user_id: destination,
            text,
            media,
            reply_markup: None,
            intercom_teammate_id: None,
            options: SendOptions::default(),
        })
    }

    /// The same request with the client's `reference` (checked by
    /// [`reference_rule`]).
    pub(crate) fn with_reference(mut self, reference: Option<String>) -> Self {
        self.options.set_reference(reference);
        self
    }

    /// The client's reference, if it gave one.
    pub fn reference(&self) -> Option<&str> {
        self.options.reference()
    }

    /// The chat the messages go to.
    pub fn destination(&self) -> ChatId {
        self.destination_user_id
    }

    /// The text (1–4096 UTF-16 code units), if any.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The media items, in the order they are sent.
    pub fn media(&self) -> &[Media] {
        &self.media
    }

    /// The reply markup of the last part, if any.
    pub fn markup(&self) -> Option<&Markup> {
        self.reply_markup.as_ref()
    }

    /// The Intercom teammate the messages are attributed to (metadata only).
    pub fn intercom_teammate_id(&self) -> Option<&str> {
        self.intercom_teammate_id.as_deref()
    }

    /// The Telegram messages this request becomes, in sending order.
    pub fn parts(&self) -> Vec<PlannedPart<'_>> {
        let mut contents = Vec::with_capacity(self.media.len() + 1);
        let mut media = self.media.iter();
        match (self.text(), media.next()) {
            (Some(text), Some(first)) if interactive::utf16_len(text) <= CAPTION_MAX => {
                contents.push(Content::Media {
                    media: first,
                    caption: Some(text),
                });
            }
            (text, first) => {
                if let Some(first) = first {
                    contents.push(Content::Media {
                        media: first,
                        caption: None,
                    });
                }
                if let Some(text) = text {
                    contents.push(Content::Text(text));
                }
            }
        }
        contents.extend(media.map(|media| Content::Media {
            media,
            caption: None,
        }));
        let last = contents.len().saturating_sub(1);
        contents
            .into_iter()
            .enumerate()
            .map(|(index, content)| PlannedPart {
                content,
                reply_markup: self.reply_markup.as_ref().filter(|_| index == last),
            })
            .collect()
    }

    /// How many Telegram messages the request becomes (1 to
    /// [`MEDIA_MAX`] + 1).
    pub fn part_count(&self) -> u16 {
        u16::try_from(self.parts().len()).unwrap_or(u16::MAX)
    }
}

/// A client reference: not blank, at most [`REFERENCE_MAX`] characters.
pub(crate) fn reference_rule(reference: &str, path: &Path<'_>) -> Result<String, ApiError> {
    interactive::not_blank(reference, path)?;
    let chars = reference.chars().count();
    if chars > REFERENCE_MAX {
        return Err(path.broken(format_args!(
            "is {chars} characters; a reference is at most {REFERENCE_MAX}"
        )));
    }
    Ok(reference.to_owned())
}

/// `media`: a list of 1–[`MEDIA_MAX`] media objects, or one media object
/// (as the fact sheet's `richContent.conversation[].media` writes it).
fn read_media(value: Json<'_>, path: &Path<'_>) -> Result<Vec<Media>, ApiError> {
    if let Ok(items) = interactive::as_array(value, path) {
        if !(1..=MEDIA_MAX).contains(&items.len()) {
            return Err(path.broken(format_args!(
                "must hold 1–{MEDIA_MAX} media items, got {}",
                items.len()
            )));
        }
        return items
            .iter()
            .enumerate()
            .map(|(index, item)| Media::from_tree(item, &path.index(index)))
            .collect();
    }
    if Object::any_fields(value, path).is_ok() {
        return Ok(vec![Media::from_tree(value, path)?]);
    }
    Err(path.wrong_type("an array of media objects (or one media object)", value))
}

/// The stored `reply_markup` is the Bot API-style object a body gives.
fn bot_api_markup<S: Serializer>(
    markup: &Option<Markup>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    markup
        .as_ref()
        .map(Markup::to_reply_markup)
        .serialize(serializer)
}

/// Deserializing checks every rule again: a stored request is as
/// trustworthy as a fresh one.
impl<'de> Deserialize<'de> for MessagesRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let document = Document::deserialize(deserializer)?;
        MessagesRequest::from_tree(document.root()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaKind;

    fn request(json: &str) -> Result<MessagesRequest, ApiError> {
        MessagesRequest::from_json(json.as_bytes())
    }

    fn media(count: usize) -> String {
        let items: Vec<String> = (0..count)
            .map(|i| {
                format!(
                    r#"{{"mediaName":"p{i}.jpg","mediaUri":"https://cdn.example.com/p{i}.jpg","mimeType":"image/jpeg"}}"#
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    fn shape(request: &MessagesRequest) -> Vec<String> {
        request
            .parts()
            .iter()
            .map(|part| {
                let markup = if part.reply_markup.is_some() {
                    "+markup"
                } else {
                    ""
                };
                match part.content {
                    Content::Text(text) => format!("text({}){markup}", text.len()),
                    Content::Media { media, caption } => {
                        format!("{}({}){markup}", media.name(), caption.map_or(0, str::len))
                    }
                }
            })
            .collect()
    }

    #[test]
    fn text_alone_is_one_text_message() {
        let r = request(r#"{"destination_user_id":"42","text":"Hi"}"#).unwrap();
        assert_eq!(shape(&r), ["text(2)"]);
        assert_eq!(r.part_count(), 1);
        assert_eq!(r.destination(), ChatId::user(42));
    }

    #[test]
    fn text_fitting_a_caption_goes_under_the_first_media() {
        let text = "a".repeat(CAPTION_MAX);
        let r = request(&format!(
            r#"{{"destination_user_id":42,"text":"{text}","media":{}}}"#,
            media(3)
        ))
        .unwrap();
        assert_eq!(shape(&r), ["p0.jpg(1024)", "p1.jpg(0)", "p2.jpg(0)"]);
        assert_eq!(r.part_count(), 3);
    }

    #[test]
    fn a_longer_text_follows_the_first_media_as_its_own_message() {
        // 513 astral characters: 1026 UTF-16 units, over the caption limit.
        let text = "😀".repeat(513);
        let r = request(&format!(
            r#"{{"destination_user_id":42,"text":"{text}","media":{}}}"#,
            media(2)
        ))
        .unwrap();
        assert_eq!(
            shape(&r),
            ["p0.jpg(0)", &format!("text({})", text.len()), "p1.jpg(0)"]
        );
        assert_eq!(r.part_count(), 3);
        let r = request(&format!(
            r#"{{"destination_user_id":42,"text":"{text}","media":{}}}"#,
            media(1)
        ))
        .unwrap();
        assert_eq!(r.part_count(), 2);
        assert_eq!(r.parts().len(), 2);
    }

    #[test]
    fn the_reply_markup_goes_on_the_last_part() {
        let r = request(&format!(
            r#"{{"destination_user_id":42,"text":"Pick","media":{},
                "reply_markup":{{"inline_keyboard":[[{{"text":"Yes","callback_data":"y"}}]]}}}}"#,
            media(2)
        ))
        .unwrap();
        assert_eq!(shape(&r), ["p0.jpg(4)", "p1.jpg(0)+markup"]);
        assert_eq!(r.markup().map(Markup::type_name), Some("reply_buttons"));
        let r =
            request(r#"{"destination_user_id":42,"text":"x","reply_markup":{"force_reply":true}}"#)
                .unwrap();
        assert_eq!(shape(&r), ["text(1)+markup"]);
    }

    #[test]
    fn media_alone_and_one_media_object() {
        let r = request(
            r#"{"destination_user_id":42,"media":{"mediaName":"c.mp4","mediaUri":"https://x.example/c","mimeType":"video/mp4"}}"#,
        )
        .unwrap();
        assert_eq!(shape(&r), ["c.mp4(0)"]);
        assert_eq!(r.media()[0].kind(), MediaKind::Video);
    }

    #[test]
    fn at_least_text_or_media() {
        let err = request(r#"{"destination_user_id":42}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Missing);
        assert!(
            err.message.contains("`text`") && err.message.contains("`media`"),
            "{}",
            err.message
        );
        let err = request(r#"{"destination_user_id":42,"text":null,"media":null}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::Missing);
        let err = request(r#"{"text":"x"}"#).unwrap_err();
        assert_eq!(err, ApiError::missing("destination_user_id"));
    }

    #[test]
    fn rules_name_their_field() {
        let cases: &[(&str, ErrorCode, &str)] = &[
            (
                r#"{"destination_user_id":42,"text":"x","colour":"red"}"#,
                ErrorCode::Invalid,
                "`colour`",
            ),
            (
                r#"{"destination_user_id":42,"text":7}"#,
                ErrorCode::Invalid,
                "`text`",
            ),
            (
                r#"{"destination_user_id":42,"text":"  "}"#,
                ErrorCode::Rejected,
                "`text`",
            ),
            (
                r#"{"destination_user_id":42,"media":[]}"#,
                ErrorCode::Rejected,
                "`media`",
            ),
            (
                r#"{"destination_user_id":42,"media":"a.jpg"}"#,
                ErrorCode::Invalid,
                "`media`",
            ),
            (
                r#"{"destination_user_id":42,"media":[{"mediaName":"a.jpg","mediaUri":"https://x.example/a","mimeType":"image/jpeg"},{"mediaName":"a.jpg","mediaUri":"https://x.example/a","mimeType":"image/png"}]}"#,
                ErrorCode::Rejected,
                "`media[1].mediaName`",
            ),
            (
                r#"{"destination_user_id":42,"text":"x","reply_markup":{"inline_keyboard":[[{"text":"A"}]]}}"#,
                ErrorCode::Rejected,
                "reply_markup.inline_keyboard[0][0]",
            ),
            (
                r#"{"destination_user_id":42,"text":"x","reply_markup":{}}"#,
                ErrorCode::Missing,
                "`reply_markup`",
            ),
            (
                r#"{"destination_user_id":"abc","text":"x"}"#,
                ErrorCode::Rejected,
                "`destination_user_id`",
            ),
        ];
        for (body, code, needle) in cases {
            let err = request(body).unwrap_err();
            assert_eq!(err.code, *code, "{body}: {}", err.message);
            assert!(err.message.contains(needle), "{body}: {}", err.message);
        }
        let too_many = request(&format!(
            r#"{{"destination_user_id":42,"media":{}}}"#,
            media(MEDIA_MAX + 1)
        ))
        .unwrap_err();
        assert_eq!(too_many.code, ErrorCode::Rejected);
        assert!(
            request(&format!(
                r#"{{"destination_user_id":42,"media":{}}}"#,
                media(MEDIA_MAX)
            ))
            .is_ok()
        );
        let long = request(&format!(
            r#"{{"destination_user_id":42,"text":"{}"}}"#,
            "a".repeat(4097)
        ))
        .unwrap_err();
        assert_eq!(long.code, ErrorCode::Rejected);
    }

    #[test]
    fn the_stored_form_is_a_valid_body_that_reads_back_the_same() {
        let r = request(&format!(
            r#"{{"destination_user_id":"42","text":"Pick","media":{},"intercom_teammate_id":"t1",
                "reply_markup":{{"keyboard":[[{{"text":"A"}}]],"resize_keyboard":true,"one_time_keyboard":false}}}}"#,
            media(2)
        ))
        .unwrap();
        let stored = serde_json::to_string(&r).unwrap();
        let value: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            value["reply_markup"],
            serde_json::json!({"keyboard":[[{"text":"A"}]],"resize_keyboard":true})
        );
        assert_eq!(value["media"][1]["kind"], "image");
        assert_eq!(serde_json::from_str::<MessagesRequest>(&stored).unwrap(), r);
        assert_eq!(MessagesRequest::from_value(&value).unwrap(), r);
    }

    mod plan {
        use proptest::prelude::*;
        use serde_json::json;

        use super::*;

        proptest! {
            /// Whatever the mix: every media item once and in order, the text
            /// once (as a caption or a message right after the first media),
            /// the markup on the last part only, and as many parts as counted.
            #[test]
            fn parts_keep_everything_once_in_order(
                text_len in proptest::option::of(1usize..3000),
                media_count in 0usize..=MEDIA_MAX,
                with_markup: bool,
            ) {
                prop_assume!(text_len.is_some() || media_count > 0);
                let mut body = json!({"destination_user_id": 42});
                if let Some(len) = text_len {
                    body["text"] = json!("t".repeat(len));
                }
                if media_count > 0 {
                    body["media"] = serde_json::from_str(&media(media_count)).unwrap();
                }
                if with_markup {
                    body["reply_markup"] = json!({"remove_keyboard": true});
                }
                let request = MessagesRequest::from_value(&body).unwrap();
                let parts = request.parts();
                prop_assert_eq!(parts.len(), usize::from(request.part_count()));
                let names: Vec<&str> = parts
                    .iter()
                    .filter_map(|part| match part.content {
                        Content::Media { media, .. } => Some(media.name()),
                        Content::Text(_) => None,
                    })
                    .collect();
                let expected: Vec<String> = (0..media_count).map(|i| format!("p{i}.jpg")).collect();
                prop_assert_eq!(names, expected);
                let texts: Vec<(usize, &str)> = parts
                    .iter()
                    .enumerate()
                    .filter_map(|(index, part)| match part.content {
                        Content::Text(text) => Some((index, text)),
                        Content::Media { caption, .. } => caption.map(|c| (index, c)),
                    })
                    .collect();
                match text_len {
                    None => prop_assert!(texts.is_empty()),
                    Some(len) => {
                        prop_assert_eq!(texts.len(), 1);
                        let (index, text) = texts[0];
                        prop_assert_eq!(text.len(), len);
                        let expected_index = usize::from(media_count > 0 && len > CAPTION_MAX);
                        prop_assert_eq!(index, expected_index);
                    }
                }
                for (index, part) in parts.iter().enumerate() {
                    prop_assert_eq!(part.reply_markup.is_some(), with_markup && index + 1 == parts.len());
                }
            }
        }
    }
}
