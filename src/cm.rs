//! CM.com's Business Messaging envelope (`POST /v1.0/message`), read as it
//! comes and mapped onto telegate's text and media model.
//!
//! A CM.com client sends `{"messages": {"authentication": {"producttoken"},
//! "msg": [...]}}` (the Telegram fact sheet, `seeds/cm-telegram-fact-sheet.txt`).
//! Each `msg` names its sender bot in `from`, its recipients in `to`
//! (`[{"number": CHAT_ID}]`, one job each), its text in `body` and, for
//! channels with rich content, a `richContent.conversation` of text and
//! media items. The conversation becomes a [`MessagesRequest`]: the texts
//! (joined by a blank line) and the media in order, so the caption and
//! one-message-per-medium rules of [`crate::messages`] apply unchanged; a
//! `msg` without rich content sends `body.content` as text.
//!
//! CM's gateway judges every `msg` (and every recipient) on its own: a bad
//! one is answered `Rejected` with CM's error code while the others go out,
//! and only a broken envelope or a bad token refuses the whole request. The
//! codes are CM's documented ones ([`CmCode`]); the `messageDetails` name the
//! field by its JSON path (`messages.msg[0].richContent.conversation[0].media.mimeType`)
//! and the rule, like every telegate error.
//!
//! The JSON is read as CM's own gateway reads it: a field given twice counts
//! once, the last one (the fact sheet's examples give `body` twice).

use serde_json::Value;

use crate::chat::ChatId;
use crate::error::{ApiError, ErrorCode};
use crate::interactive::{self, Document, Json, Object, Path};
use crate::media::Media;
use crate::messages::{self, MessagesRequest};

/// The `allowedChannels` entry of Telegram (the only channel telegate has).
pub const TELEGRAM_CHANNEL: &str = "Telegram Messenger";

/// The CM.com error codes telegate answers with (CM's "JSON POST error
/// codes", the same numbers as its SDKs' status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmCode {
    /// `0`: accepted.
    Ok,
    /// `101`: no account (here: no bot) for the product token.
    AuthenticationFailed,
    /// `103`: the product token is missing or not one.
    InvalidProductToken,
    /// `201`: some or all messages were rejected (see each one).
    NotAllSent,
    /// `202`: the request is not a CM envelope (malformed JSON, wrong shape).
    RequestMalformed,
    /// `203`: the `msg` array is missing, empty or not an array.
    MsgArrayIncorrect,
    /// `301`: `from` is missing or not the token's bot.
    FromInvalid,
    /// `302`: `to` is missing, empty or not an array of recipients.
    ToInvalid,
    /// `303`: a recipient's `number` is not a Telegram chat id.
    MsisdnInvalid,
    /// `304`: `body` or `richContent` breaks a rule.
    BodyInvalid,
    /// `305`: another field is invalid (`allowedChannels`, `reference`, an
    /// unknown field).
    FieldInvalid,
    /// `500`: the store cannot take work.
    InternalError,
}

impl CmCode {
    /// The number in `errorCode` / `messageErrorCode`.
    pub fn as_u16(self) -> u16 {
        match self {
            CmCode::Ok => 0,
            CmCode::AuthenticationFailed => 101,
            CmCode::InvalidProductToken => 103,
            CmCode::NotAllSent => 201,
            CmCode::RequestMalformed => 202,
            CmCode::MsgArrayIncorrect => 203,
            CmCode::FromInvalid => 301,
            CmCode::ToInvalid => 302,
            CmCode::MsisdnInvalid => 303,
            CmCode::BodyInvalid => 304,
            CmCode::FieldInvalid => 305,
            CmCode::InternalError => 500,
        }
    }
}

/// Why something was refused, in CM's terms: a code and `details` in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CM.com error {}: {details}", code.as_u16())]
pub struct Refused {
    pub code: CmCode,
    pub details: String,
}

impl Refused {
    pub fn new(code: CmCode, details: impl Into<String>) -> Self {
        Refused {
            code,
            details: details.into(),
        }
    }

    fn from_api(code: CmCode, err: ApiError) -> Self {
        Refused::new(code, err.message)
    }
}

/// A parsed envelope: the product token and every `msg`, each already
/// checked but for `from` (which needs the token's bot).
#[derive(Debug)]
pub struct Envelope {
    /// `messages.authentication.producttoken`, if given.
    pub product_token: Option<String>,
    pub messages: Vec<Msg>,
}

/// One `msg` of the envelope.
#[derive(Debug)]
pub struct Msg {
    /// `from`, or why it is unusable.
    from: Result<String, Refused>,
    reference: Option<String>,
    /// The recipients and the request each gets, or why the whole `msg` is
    /// rejected.
    checked: Result<Vec<Recipient>, Refused>,
}

/// One `to` entry of a valid `msg`.
#[derive(Debug)]
struct Recipient {
    /// `number` as the client wrote it.
    to: Option<String>,
    request: Result<MessagesRequest, Refused>,
}

/// What becomes of one recipient of one `msg`.
#[derive(Debug)]
pub struct Outcome {
    /// The recipient as given (`None` when there was none to name).
    pub to: Option<String>,
    pub reference: Option<String>,
    /// The job to store, or why this recipient is rejected.
    pub result: Result<Accepted, Refused>,
}

/// A recipient's job: the bot `from` named, and what it sends.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub bot: String,
    pub request: MessagesRequest,
}

impl Envelope {
    /// Fields of the top level, of `messages` and of `authentication`.
    const TOP: &[&str] = &["messages"];
    const MESSAGES: &[&str] = &["authentication", "msg"];
    const AUTHENTICATION: &[&str] = &["producttoken"];

    /// Reads an envelope. Only a body that is not one (code 202) or has no
    /// `msg` (203) is refused here; everything wrong inside a `msg` is that
    /// message's rejection.
    pub fn parse(body: &[u8]) -> Result<Self, Refused> {
        let value: Value = serde_json::from_slice(body).map_err(|err| {
            Refused::new(CmCode::RequestMalformed, format!("malformed JSON: {err}"))
        })?;
        let document = Document::from_value(&value);
        let malformed = |err: ApiError| Refused::from_api(CmCode::RequestMalformed, err);
        let root = Path::root("");
        let top = Object::new(document.root(), &root, Self::TOP).map_err(malformed)?;
        let messages_path = top.path_of("messages");
        let messages = Object::new(
            top.required("messages").map_err(malformed)?,
            &messages_path,
            Self::MESSAGES,
        )
        .map_err(malformed)?;
        let product_token = match messages.get("authentication") {
            Some(authentication) => {
                let path = messages.path_of("authentication");
                let authentication = Object::new(authentication, &path, Self::AUTHENTICATION)
                    .map_err(|err| Refused::from_api(CmCode::InvalidProductToken, err))?;
                authentication
                    .opt_str("producttoken")
                    .map_err(|err| Refused::from_api(CmCode::InvalidProductToken, err))?
                    .map(str::to_owned)
            }
            None => None,
        };
        let msg_path = messages.path_of("msg");
        let incorrect = |err: ApiError| Refused::from_api(CmCode::MsgArrayIncorrect, err);
        let msgs = messages.array("msg").map_err(incorrect)?;
        if msgs.is_empty() {
            return Err(Refused::new(
                CmCode::MsgArrayIncorrect,
                "`messages.msg` is empty: a messages node needs at least one msg",
            ));
        }
        let messages = msgs
            .iter()
            .enumerate()
            .map(|(index, msg)| Msg::read(msg, &msg_path.index(index)))
            .collect();
        Ok(Envelope {
            product_token,
            messages,
        })
    }
}

impl Msg {
    /// CM's `msg` fields. Those telegate has no use for on Telegram (custom
    /// groupings, SMS part counts and encoding, validity, the push app key)
    /// are accepted and ignored.
    const FIELDS: &[&str] = &[
        "from",
        "to",
        "body",
        "allowedChannels",
        "richContent",
        "reference",
        "customGrouping",
        "customGrouping2",
        "customGrouping3",
        "validity",
        "minimumNumberOfMessageParts",
        "maximumNumberOfMessageParts",
        "dcs",
        "appKey",
    ];

    fn read(value: Json<'_>, path: &Path<'_>) -> Msg {
        let object = match Object::new(value, path, Self::FIELDS) {
            Ok(object) => object,
            Err(err) => {
                let refused = Refused::from_api(CmCode::FieldInvalid, err);
                return Msg {
                    from: Err(refused.clone()),
                    reference: None,
                    checked: Err(refused),
                };
            }
        };
        let reference = object
            .opt_str("reference")
            .ok()
            .flatten()
            .map(str::to_owned);
        let from = object
            .str("from")
            .map(str::to_owned)
            .map_err(|err| Refused::from_api(CmCode::FromInvalid, err));
        Msg {
            from,
            reference,
            checked: Self::check(&object),
        }
    }

    /// Every rule of a `msg` but `from`, in the order CM reports them:
    /// fields, channels, body, recipients.
    fn check(msg: &Object<'_, '_>) -> Result<Vec<Recipient>, Refused> {
        if let Some(reference) = msg
            .opt_str("reference")
            .map_err(|err| Refused::from_api(CmCode::FieldInvalid, err))?
        {
            messages::reference_rule(reference, &msg.path_of("reference"))
                .map_err(|err| Refused::from_api(CmCode::FieldInvalid, err))?;
        }
        allowed_channels(msg)?;
        let (text, media) = content(msg)?;
        let to_path = msg.path_of("to");
        let to_invalid = |err: ApiError| Refused::from_api(CmCode::ToInvalid, err);
        let recipients = msg.array("to").map_err(to_invalid)?;
        if recipients.is_empty() {
            return Err(Refused::new(
                CmCode::ToInvalid,
                format!("`{to_path}` is empty: no recipients found, nothing will be sent"),
            ));
        }
        Ok(recipients
            .iter()
            .enumerate()
            .map(|(index, recipient)| {
                let path = to_path.index(index);
                recipient_of(recipient, &path, &text, &media)
            })
            .collect())
    }

    /// The outcome of each recipient, `from` judged by `sender`: the name
    /// of the bot it names, if the product token may send as that bot,
    /// else the details of why not.
    pub fn outcomes(&self, sender: impl Fn(&str) -> Result<String, String>) -> Vec<Outcome> {
        let reference = self.reference.clone();
        let bot = match &self.from {
            Err(refused) => Err(refused.clone()),
            Ok(from) => sender(from).map_err(|details| Refused::new(CmCode::FromInvalid, details)),
        };
        let (bot, refused) = match bot {
            Ok(bot) => (bot, None),
            Err(refused) => (String::new(), Some(refused)),
        };
        let rejected_all = |refused: Refused, to: Vec<Option<String>>| {
            to.into_iter()
                .map(|to| Outcome {
                    to,
                    reference: reference.clone(),
                    result: Err(refused.clone()),
                })
                .collect()
        };
        match (&self.checked, refused) {
            (Ok(recipients), Some(refused)) => {
                rejected_all(refused, recipients.iter().map(|r| r.to.clone()).collect())
            }
            (Err(_), Some(refused)) => rejected_all(refused, vec![None]),
            (Err(refused), None) => rejected_all(refused.clone(), vec![None]),
            (Ok(recipients), None) => recipients
                .iter()
                .map(|recipient| Outcome {
                    to: recipient.to.clone(),
                    reference: reference.clone(),
                    result: recipient.request.clone().map(|request| Accepted {
                        bot: bot.clone(),
                        request: request.with_reference(reference.clone()),
                    }),
                })
                .collect(),
        }
    }
}

/// `allowedChannels`: absent (every channel, as CM reads it) or a list
/// that holds [`TELEGRAM_CHANNEL`].
fn allowed_channels(msg: &Object<'_, '_>) -> Result<(), Refused> {
    let invalid = |err: ApiError| Refused::from_api(CmCode::FieldInvalid, err);
    let Some(channels) = msg.get("allowedChannels") else {
        return Ok(());
    };
    let path = msg.path_of("allowedChannels");
    let channels = interactive::as_array(channels, &path).map_err(invalid)?;
    let mut names = Vec::with_capacity(channels.len());
    for (index, channel) in channels.iter().enumerate() {
        names.push(interactive::as_str(channel, &path.index(index)).map_err(invalid)?);
    }
    if names.contains(&TELEGRAM_CHANNEL) {
        return Ok(());
    }
    let given = names
        .iter()
        .map(|name| format!("\"{}\"", interactive::echo(name)))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Refused::new(
        CmCode::FieldInvalid,
        format!(
            "`{path}` is [{given}], which does not allow \"{TELEGRAM_CHANNEL}\", the only channel \
             this gateway sends on: add it, or leave `allowedChannels` out"
        ),
    ))
}

/// `body.type`s CM documents; both send the text as it is on Telegram.
const BODY_TYPES: &[&str] = &["auto", "plain"];

/// The text and media a `msg` sends: its `richContent.conversation` if it
/// has one, else `body.content`. `body` itself is required either way (it
/// is what CM sends on channels without rich content).
fn content(msg: &Object<'_, '_>) -> Result<(Option<String>, Vec<Media>), Refused> {
    let body_invalid = |err: ApiError| Refused::from_api(CmCode::BodyInvalid, err);
    let body_path = msg.path_of("body");
    let body = msg.required("body").map_err(body_invalid)?;
    let body = Object::new(body, &body_path, &["type", "content"]).map_err(body_invalid)?;
    if let Some(kind) = body.opt_str("type").map_err(body_invalid)?
        && !BODY_TYPES.contains(&kind.to_ascii_lowercase().as_str())
    {
        return Err(body_invalid(
            body.path_of("type").unknown_value(kind, BODY_TYPES),
        ));
    }
    let content = body.opt_str("content").map_err(body_invalid)?;
    let Some(rich) = msg.get("richContent") else {
        let content = content
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| {
                Refused::new(
                    CmCode::BodyInvalid,
                    format!(
                        "a body without content was found: `{}` is empty and there is no \
                     `richContent`",
                        body.path_of("content")
                    ),
                )
            })?;
        interactive::message_text(content, &body.path_of("content")).map_err(body_invalid)?;
        return Ok((Some(content.to_owned()), Vec::new()));
    };
    conversation(rich, &msg.path_of("richContent")).map_err(body_invalid)
}

/// `richContent.conversation`: 1 or more items of `text` and/or `media`.
fn conversation(rich: Json<'_>, path: &Path<'_>) -> Result<(Option<String>, Vec<Media>), ApiError> {
    let rich = Object::new(rich, path, &["conversation"])?;
    let items_path = rich.path_of("conversation");
    let items = rich.array("conversation")?;
    if items.is_empty() {
        return Err(items_path.broken("is empty: give at least one item of `text` or `media`"));
    }
    let mut texts = Vec::new();
    let mut media = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = items_path.index(index);
        let item = Object::new(item, &item_path, &["text", "media"])?;
        let text = item.opt_str("text")?;
        if let Some(text) = text {
            interactive::message_text(text, &item.path_of("text"))?;
            texts.push(text);
        }
        match item.get("media") {
            Some(medium) => media.push(Media::from_tree(medium, &item.path_of("media"))?),
            None if text.is_none() => {
                return Err(ApiError {
                    code: ErrorCode::Missing,
                    message: format!("`{item_path}` has neither `text` nor `media`: give one"),
                });
            }
            None => {}
        }
    }
    let text = (!texts.is_empty()).then(|| texts.join("\n\n"));
    if let Some(text) = &text {
        interactive::message_text(text, &items_path)
            .map_err(|err| ApiError::rejected(format!("the texts joined: {}", err.message)))?;
    }
    if media.len() > messages::MEDIA_MAX {
        return Err(items_path.broken(format_args!(
            "holds {} media items; at most {} go in one message",
            media.len(),
            messages::MEDIA_MAX
        )));
    }
    Ok((text, media))
}

/// One `to` entry: `{"number": CHAT_ID}` (a string of digits, or an integer).
fn recipient_of(
    value: Json<'_>,
    path: &Path<'_>,
    text: &Option<String>,
    media: &[Media],
) -> Recipient {
    let object = match Object::new(value, path, &["number"]) {
        Ok(object) => object,
        Err(err) => {
            return Recipient {
                to: None,
                request: Err(Refused::from_api(CmCode::ToInvalid, err)),
            };
        }
    };
    let to = object
        .get("number")
        .and_then(|number| match number.as_str() {
            Some(text) => Some(text.to_owned()),
            None => interactive::as_i64(number, path)
                .ok()
                .map(|n| n.to_string()),
        });
    let request = interactive::read_chat_id(&object, "number")
        .map_err(|err| Refused::from_api(CmCode::MsisdnInvalid, err))
        .and_then(|chat: ChatId| {
            MessagesRequest::compose(
                chat,
                text.clone(),
                media.to_vec(),
                &[
                    "richContent.conversation[].text",
                    "richContent.conversation[].media",
                ],
            )
            .map_err(|err| Refused::from_api(CmCode::BodyInvalid, err))
        });
    Recipient { to, request }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(body: &str) -> Vec<Outcome> {
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        envelope
            .messages
            .iter()
            .flat_map(|msg| msg.outcomes(|from| Ok(from.to_owned())))
            .collect()
    }

    fn accepted(outcome: &Outcome) -> &MessagesRequest {
        &outcome.result.as_ref().unwrap().request
    }

    #[test]
    fn a_field_given_twice_counts_once_the_last_as_cms_gateway_reads_it() {
        let example =
            include_str!("../tests/fixtures/cm/text.json").replace("Recipients Identifier", "42");
        let envelope = Envelope::parse(example.as_bytes()).unwrap();
        assert_eq!(
            envelope.product_token.as_deref(),
            Some("Your product token")
        );
        let all: Vec<Outcome> = envelope.messages[0].outcomes(|from| {
            assert_eq!(from, "Your bot ID");
            Ok("shop".to_owned())
        });
        assert_eq!(all[0].result.as_ref().unwrap().bot, "shop");
        assert_eq!(all.len(), 1);
        let request = accepted(&all[0]);
        assert_eq!(request.text(), Some("CM.com - Be part of it."));
        assert_eq!(request.destination(), ChatId::user(42));
        assert_eq!(all[0].to.as_deref(), Some("42"));
    }

    #[test]
    fn a_conversation_is_its_texts_joined_and_its_media_in_order() {
        let media = |name: &str| {
            format!(
                r#"{{"mediaName":"{name}","mediaUri":"https://x.example/{name}","mimeType":"image/jpeg"}}"#
            )
        };
        let body = format!(
            r#"{{"messages":{{"msg":[{{"from":"b","to":[{{"number":42}}],"body":{{"content":""}},
               "richContent":{{"conversation":[{{"text":"one"}},{{"media":{}}},{{"text":"two","media":{}}}]}}}}]}}}}"#,
            media("a.jpg"),
            media("b.jpg")
        );
        let all = outcomes(&body);
        let request = accepted(&all[0]);
        assert_eq!(request.text(), Some("one\n\ntwo"));
        let names: Vec<&str> = request.media().iter().map(Media::name).collect();
        assert_eq!(names, ["a.jpg", "b.jpg"]);
        assert_eq!(request.part_count(), 2, "the caption rides on the first");
        assert_eq!(all[0].to.as_deref(), Some("42"), "an integer number");
    }

    #[test]
    fn no_allowed_channels_means_every_channel() {
        let all = outcomes(
            r#"{"messages":{"msg":[{"from":"b","to":[{"number":"7"}],"body":{"type":"AUTO","content":"hi"}}]}}"#,
        );
        assert_eq!(accepted(&all[0]).text(), Some("hi"));
    }

    #[test]
    fn a_from_refused_rejects_every_recipient_of_its_msg_and_only_those() {
        let envelope = Envelope::parse(
            br#"{"messages":{"msg":[
                {"from":"x","to":[{"number":"1"},{"number":"2"}],"body":{"content":"a"},"reference":"r1"},
                {"from":"b","to":[{"number":"3"}],"body":{"content":"b"}}]}}"#,
        )
        .unwrap();
        let all: Vec<Outcome> = envelope
            .messages
            .iter()
            .flat_map(|msg| {
                msg.outcomes(|from| match from {
                    "b" => Ok("b".to_owned()),
                    other => Err(format!("not {other}")),
                })
            })
            .collect();
        let seen: Vec<(Option<&str>, Option<u16>)> = all
            .iter()
            .map(|o| {
                (
                    o.to.as_deref(),
                    o.result.as_ref().err().map(|r| r.code.as_u16()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (Some("1"), Some(301)),
                (Some("2"), Some(301)),
                (Some("3"), None)
            ]
        );
        assert_eq!(all[0].reference.as_deref(), Some("r1"));
        assert_eq!(all[2].reference, None);
    }
}
