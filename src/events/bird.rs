//! Events in the shapes of Bird's Channels API, so consumers written for it
//! read telegate's stream unchanged.
//!
//! Inbound messages are Bird message objects (`body.type` = `text`, `image`,
//! `file`, `location`, `contact`, `unsupported`), with what they answer in
//! `context`; everything else a user does to the bot or its messages is a
//! Bird interaction (`results[]`): the `clicked` postback, and `edited`,
//! `deleted`, `reacted`, `blocked`, `unblocked`, `bot-added`, `bot-removed`,
//! `bot-promoted`, `bot-demoted`. Job results are outgoing message objects
//! with `status` `sent` or `failed`. Every event carries a top-level `id`
//! derived from what happened, so a replay after a crash repeats the same id.

use serde_json::{Value, json};

use super::NewEvent;
use crate::queue::{Job, JobState, Timestamp};

/// Where a message came from and went to.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub bot_id: i64,
    /// The Bot API chat id (the conversation: a user, or a group).
    pub chat: i64,
    pub chat_type: ChatType,
    /// Who wrote it (the chat itself in a private chat, a member in a group).
    pub sender: i64,
    pub person: Person,
    pub message_id: i32,
    /// When Telegram says it was sent.
    pub date: Timestamp,
}

/// The kinds of Telegram chat, as the Bot API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatType {
    Private,
    Group,
    Supergroup,
    Channel,
}

impl ChatType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Private => "private",
            ChatType::Group => "group",
            ChatType::Supergroup => "supergroup",
            ChatType::Channel => "channel",
        }
    }
}

/// What the sender's profile says about them (`sender.contact.annotations`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Person {
    /// First and last name.
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    /// The language the user's app runs in.
    pub lang_code: Option<String>,
    /// Telegram Premium; `None` when the sender is not a user.
    pub premium: Option<bool>,
}

impl Person {
    fn annotations(&self) -> Value {
        let mut annotations = json!({"name": self.name});
        let fields = [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("username", &self.username),
            ("lang_code", &self.lang_code),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                annotations[key] = json!(value);
            }
        }
        if let Some(premium) = self.premium {
            annotations["is_premium"] = json!(premium);
        }
        annotations
    }
}

/// What a message answers: `context` of its event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageContext {
    pub reply_to: Option<ReplyTo>,
    /// The payload of a `/start PAYLOAD` deep link.
    pub start_payload: Option<String>,
}

/// The message a message replies to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTo {
    /// Telegram's id of it, in the same chat.
    pub message_id: i32,
    /// The job that sent it, when telegate did.
    pub sent: Option<SentBy>,
}

/// A message telegate sent: its job and what the client gave with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentBy {
    pub job_id: i64,
    /// telegate's id of the message.
    pub message_id: i64,
    pub reference: Option<String>,
    pub metadata: Option<Value>,
}

impl MessageContext {
    fn to_json(&self, bot_id: i64, chat: i64) -> Value {
        let mut context = json!({});
        if let Some(reply) = &self.reply_to {
            let reference = platform_reference(bot_id, chat, i64::from(reply.message_id));
            let mut replied = json!({"platformReference": reference});
            match &reply.sent {
                Some(sent) => {
                    replied["jobId"] = json!(sent.job_id.to_string());
                    replied["messageId"] = json!(sent.message_id.to_string());
                    replied["reference"] = json!(sent.reference);
                    replied["metadata"] = json!(sent.metadata);
                }
                // A user's message: its event has this id.
                None => replied["eventId"] = json!(reference),
            }
            context["replyTo"] = replied;
        }
        if let Some(payload) = &self.start_payload {
            context["startPayload"] = json!(payload);
        }
        context
    }
}

/// What a file is, as Telegram shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Document,
    Voice,
    Audio,
    Video,
    VideoNote,
    Animation,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::Document => "document",
            FileKind::Voice => "voice",
            FileKind::Audio => "audio",
            FileKind::Video => "video",
            FileKind::VideoNote => "video_note",
            FileKind::Animation => "animation",
        }
    }
}

impl Origin {
    /// `telegram:{bot_id}:{chat_id}:{message_id}`: also the event id.
    pub fn platform_reference(&self) -> String {
        platform_reference(self.bot_id, self.chat, i64::from(self.message_id))
    }
}

fn platform_reference(bot_id: i64, chat: i64, message_id: i64) -> String {
    format!("telegram:{bot_id}:{chat}:{message_id}")
}

/// The `body` of an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Text(String),
    Image {
        media_url: String,
        caption: Option<String>,
    },
    File {
        media_url: String,
        content_type: String,
        filename: Option<String>,
        caption: Option<String>,
        kind: FileKind,
        /// Seconds, for sound and video.
        duration: Option<f64>,
    },
    /// A sticker: an image (`contentType` image/webp, or a .tgs/.webm
    /// animation) with its emoji as `altText`.
    Sticker {
        media_url: String,
        content_type: String,
        emoji: String,
    },
    Location {
        latitude: f64,
        longitude: f64,
    },
    /// A place: a location with a title and address.
    Venue {
        latitude: f64,
        longitude: f64,
        title: String,
        address: String,
    },
    /// Bird has no inbound poll: a `text` (the question) with `text.poll`.
    Poll {
        question: String,
        options: Vec<String>,
    },
    /// A dice throw: a `text` (the emoji) with `text.dice`.
    Dice {
        emoji: String,
        value: i32,
    },
    Contact {
        phone_number: String,
        first_name: String,
        last_name: String,
        user_id: Option<i64>,
    },
    /// Something telegate does not turn into a message body, by TL name.
    Unsupported(&'static str),
}

impl Body {
    fn to_json(&self) -> Value {
        match self {
            Body::Text(text) => json!({"type": "text", "text": {"text": text}}),
            Body::Image { media_url, caption } => json!({
                "type": "image",
                "image": {"images": [with_caption(json!({"mediaUrl": media_url}), caption)]},
            }),
            Body::File {
                media_url,
                content_type,
                filename,
                caption,
                ..
            } => {
                let mut file = json!({"contentType": content_type, "mediaUrl": media_url});
                if let Some(name) = filename {
                    file["filename"] = json!(name);
                    file["altText"] = json!(name);
                }
                json!({"type": "file", "file": {"files": [with_caption(file, caption)]}})
            }
            Body::Sticker {
                media_url,
                content_type,
                emoji,
            } => json!({
                "type": "image",
                "image": {"images": [{
                    "mediaUrl": media_url, "contentType": content_type, "altText": emoji,
                }]},
            }),
            Body::Location {
                latitude,
                longitude,
            } => location(*latitude, *longitude, "", &label(*latitude, *longitude)),
            Body::Venue {
                latitude,
                longitude,
                title,
                address,
            } => location(*latitude, *longitude, address, title),
            Body::Poll { question, options } => json!({
                "type": "text",
                "text": {"text": question, "poll": {"question": question, "options": options}},
            }),
            Body::Dice { emoji, value } => json!({
                "type": "text",
                "text": {"text": emoji, "dice": {"emoji": emoji, "value": value}},
            }),
            Body::Contact {
                phone_number,
                first_name,
                last_name,
                user_id,
            } => json!({
                "type": "contact",
                "contact": {
                    "phoneNumber": phone_number,
                    "firstName": first_name,
                    "lastName": last_name,
                    "userId": user_id.map(|id| id.to_string()),
                },
            }),
            Body::Unsupported(name) => json!({"type": "unsupported", "unsupported": {"tl": name}}),
        }
    }

    /// What Telegram says beyond Bird's body, for
    /// `meta.extraInformation` (strings, as Bird keeps them).
    fn extra_information(&self) -> Vec<(&'static str, String)> {
        match self {
            Body::File { kind, duration, .. } => {
                let mut extra = vec![("MediaKind", kind.as_str().to_owned())];
                extra.extend(duration.map(|d| ("Duration", d.to_string())));
                extra
            }
            Body::Sticker { .. } => vec![("MediaKind", "sticker".to_owned())],
            Body::Image { .. } => vec![("MediaKind", "photo".to_owned())],
            Body::Venue { .. } => vec![("MediaKind", "venue".to_owned())],
            Body::Poll { .. } => vec![("MediaKind", "poll".to_owned())],
            Body::Dice { .. } => vec![("MediaKind", "dice".to_owned())],
            _ => Vec::new(),
        }
    }
}

fn location(latitude: f64, longitude: f64, address: &str, label: &str) -> Value {
    json!({
        "type": "location",
        "location": {
            "coordinates": {"latitude": latitude, "longitude": longitude},
            "location": {"address": address, "label": label},
        },
    })
}

impl Origin {
    /// `sender.contact`: the member who wrote, in the bot's namespace.
    fn contact(&self) -> Value {
        json!({
            "identifierKey": format!("telegram:{}", self.bot_id),
            "identifierValue": self.sender.to_string(),
            "annotations": self.person.annotations(),
        })
    }

    /// `meta`: the conversation (`ChatID`, the Bot API chat id), its type
    /// and what the body leaves out.
    fn meta(&self, body: &Body) -> Value {
        let mut extra = serde_json::Map::new();
        extra.insert("ChatID".into(), json!(self.chat.to_string()));
        extra.insert("ChatType".into(), json!(self.chat_type.as_str()));
        for (key, value) in body.extra_information() {
            extra.insert(key.into(), json!(value));
        }
        json!({"extraInformation": extra})
    }
}

fn with_caption(mut media: Value, caption: &Option<String>) -> Value {
    if let Some(caption) = caption.as_deref().filter(|c| !c.is_empty()) {
        media["caption"] = json!(caption);
    }
    media
}

/// `52° 22' 38.95" N, 4° 54' 3.69" E`, as the seed labels coordinates.
pub fn label(latitude: f64, longitude: f64) -> String {
    fn dms(value: f64, positive: char, negative: char) -> String {
        let hemisphere = if value < 0.0 { negative } else { positive };
        let value = value.abs();
        let degrees = value.trunc();
        let minutes_total = (value - degrees) * 60.0;
        let minutes = minutes_total.trunc();
        let seconds = (minutes_total - minutes) * 60.0;
        format!("{degrees}° {minutes}' {seconds:.2}\" {hemisphere}")
    }
    format!("{}, {}", dms(latitude, 'N', 'S'), dms(longitude, 'E', 'W'))
}

/// An inbound message event.
pub fn message(origin: &Origin, body: &Body, context: &MessageContext) -> NewEvent {
    let id = origin.platform_reference();
    let at = origin.date.to_string();
    let event = json!({
        "id": id,
        "channelId": format!("telegram:{}", origin.bot_id),
        "sender": {"contact": origin.contact()},
        "receiver": {"connector": {"identifierValue": origin.bot_id.to_string()}},
        "body": body.to_json(),
        "meta": origin.meta(body),
        "reference": "",
        "parts": [{"platformReference": id}],
        "status": "delivered",
        "reason": "",
        "direction": "incoming",
        "context": context.to_json(origin.bot_id, origin.chat),
        "chargeableUnits": 1,
        "lastStatusAt": at,
        "createdAt": at,
        "updatedAt": at,
        "batchId": null,
    });
    NewEvent {
        id,
        chat: origin.chat,
        body: event,
    }
}

/// A click on an inline button.
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    pub bot_id: i64,
    pub chat: i64,
    pub user_id: i64,
    pub query_id: i64,
    /// Telegram's id of the message the button is under.
    pub msg_id: i32,
    pub data: Vec<u8>,
    /// telegate's id of that message, when telegate sent it.
    pub message_id: Option<i64>,
    /// The `reference` and `metadata` of the job that sent it.
    pub reference: Option<String>,
    pub job_metadata: Option<Value>,
    pub at: Timestamp,
}

/// One Bird interaction (`results[0]`): what a user did to the bot or to a
/// message, rather than a message of their own.
struct Interaction {
    id: String,
    /// `clicked`, `edited`, `blocked`, ...
    kind: &'static str,
    bot_id: i64,
    /// The Bot API chat it happened in.
    chat: i64,
    /// Telegram's id of the message it concerns, if one.
    message: Option<i32>,
    at: Timestamp,
    details: String,
    /// `sender` of the result.
    sender: Value,
    /// The kind's own fields.
    fields: Value,
}

impl Interaction {
    fn into_event(self) -> NewEvent {
        let mut result = json!({
            "id": self.id,
            "type": self.kind,
            "createdAt": self.at.to_string(),
            "channelId": format!("telegram:{}", self.bot_id),
            "platformId": "telegram",
            "sender": self.sender,
            "receiver": {"contacts": [{
                "id": "00000000-0000-0000-0000-000000000000",
                "identifierKey": "",
                "identifierValue": self.bot_id.to_string(),
                "platformAddress": self.bot_id.to_string(),
            }]},
            "meta": {"extraInformation": {"ChatID": self.chat.to_string()}},
            "details": self.details,
        });
        if let Some(message) = self.message {
            result["messageReference"] = json!(platform_reference(
                self.bot_id,
                self.chat,
                i64::from(message)
            ));
            result["messagePartsCount"] = json!(1);
        }
        if let (Some(result), Value::Object(fields)) = (result.as_object_mut(), self.fields) {
            result.extend(fields);
        }
        NewEvent {
            id: self.id.clone(),
            chat: self.chat,
            body: json!({"id": self.id, "results": [result]}),
        }
    }
}

/// The sender of an interaction by `user` in `chat`.
fn actor(chat: i64, user: i64) -> Value {
    json!({"identifierValue": chat.to_string(), "platformAddress": user.to_string()})
}

/// The `clicked` postback of a click; its id is `callback:{query_id}`.
pub fn clicked(click: &Click) -> NewEvent {
    let payload = String::from_utf8_lossy(&click.data).into_owned();
    Interaction {
        id: format!("callback:{}", click.query_id),
        kind: "clicked",
        bot_id: click.bot_id,
        chat: click.chat,
        message: Some(click.msg_id),
        at: click.at,
        details: format!("{payload}_clicked"),
        sender: actor(click.chat, click.user_id),
        fields: json!({
            "messageId": click.message_id.map(|m| m.to_string()),
            "metadata": {"button": {"payload": payload}, "job": click.job_metadata},
            "reference": click.reference,
            "query_id": click.query_id.to_string(),
        }),
    }
    .into_event()
}

/// A user edited their message: `edited`, with the new content in `body`;
/// `eventId` is the original message's event. `place` is the update's
/// position in its box (each edit has its own).
pub fn edited(origin: &Origin, body: &Body, edited_at: Timestamp, place: &str) -> NewEvent {
    let original = origin.platform_reference();
    Interaction {
        id: format!("{original}:edited:{place}"),
        kind: "edited",
        bot_id: origin.bot_id,
        chat: origin.chat,
        message: Some(origin.message_id),
        at: edited_at,
        details: "message_edited".into(),
        sender: json!({"contact": origin.contact()}),
        fields: json!({
            "eventId": original,
            "body": body.to_json(),
            "meta": origin.meta(body),
        }),
    }
    .into_event()
}

/// Messages deleted in `chat` (`None`: Telegram did not say where, as in
/// `updateDeleteMessages`).
pub fn deleted(
    bot_id: i64,
    chat: Option<i64>,
    message_ids: &[i32],
    at: Timestamp,
    place: &str,
) -> NewEvent {
    let references: Vec<Value> = match chat {
        Some(chat) => message_ids
            .iter()
            .map(|id| json!(platform_reference(bot_id, chat, i64::from(*id))))
            .collect(),
        None => Vec::new(),
    };
    let scope = chat.map_or_else(String::new, |chat| format!("{chat}:"));
    Interaction {
        id: format!("telegram:{bot_id}:{scope}deleted:{place}"),
        kind: "deleted",
        bot_id,
        chat: chat.unwrap_or(0),
        message: None,
        at,
        details: "messages_deleted".into(),
        sender: json!({"identifierValue": chat.map(|c| c.to_string())}),
        fields: json!({
            "messageIds": message_ids.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
            "eventIds": references,
        }),
    }
    .into_event()
}

/// A user blocked (`blocked`) or unblocked (`unblocked`) the bot.
pub fn blocked(bot_id: i64, user: i64, blocked: bool, at: Timestamp, place: &str) -> NewEvent {
    let kind = if blocked { "blocked" } else { "unblocked" };
    Interaction {
        id: format!("telegram:{bot_id}:{user}:{kind}:{place}"),
        kind,
        bot_id,
        chat: user,
        message: None,
        at,
        details: format!("bot_{kind}"),
        sender: actor(user, user),
        fields: json!({}),
    }
    .into_event()
}

/// Whether `event` blocks (`Some(true)`) or unblocks its chat.
pub fn blocks(event: &NewEvent) -> Option<bool> {
    match event.body["results"][0]["type"].as_str()? {
        "blocked" => Some(true),
        "unblocked" => Some(false),
        _ => None,
    }
}

/// The bot's standing in a group, as a participant update tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Out,
    Member,
    Admin,
}

impl Standing {
    fn as_str(self) -> &'static str {
        match self {
            Standing::Out => "none",
            Standing::Member => "member",
            Standing::Admin => "admin",
        }
    }
}

/// A change of the bot's standing in a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub chat: i64,
    /// Who changed it.
    pub actor: i64,
    pub before: Standing,
    pub after: Standing,
    pub at: Timestamp,
}

/// The bot was added to, removed from, promoted or demoted in a group
/// (`None`: the update changed nothing telegate reports).
pub fn membership(bot_id: i64, change: &Membership, place: &str) -> Option<NewEvent> {
    let Membership {
        chat,
        actor: actor_id,
        before,
        after,
        at,
    } = *change;
    let kind = match (before, after) {
        (Standing::Out, Standing::Member | Standing::Admin) => "bot-added",
        (Standing::Member | Standing::Admin, Standing::Out) => "bot-removed",
        (Standing::Member, Standing::Admin) => "bot-promoted",
        (Standing::Admin, Standing::Member) => "bot-demoted",
        _ => return None,
    };
    Some(
        Interaction {
            id: format!("telegram:{bot_id}:{chat}:{kind}:{place}"),
            kind,
            bot_id,
            chat,
            message: None,
            at,
            details: kind.replace('-', "_"),
            sender: actor(chat, actor_id),
            fields: json!({"metadata": {"role": after.as_str(), "previousRole": before.as_str()}}),
        }
        .into_event(),
    )
}

/// A user's reactions to a message, changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReactionChange {
    pub chat: i64,
    pub message_id: i32,
    pub user: i64,
    /// The emoji now (empty: all taken back).
    pub now: Vec<String>,
    pub before: Vec<String>,
}

/// `reacted`: a user's reactions to a message changed.
pub fn reacted(bot_id: i64, reaction: &ReactionChange, at: Timestamp, place: &str) -> NewEvent {
    let (chat, message_id) = (reaction.chat, reaction.message_id);
    Interaction {
        id: format!("telegram:{bot_id}:{chat}:{message_id}:reacted:{place}"),
        kind: "reacted",
        bot_id,
        chat,
        message: Some(message_id),
        at,
        details: if reaction.now.is_empty() {
            "reaction_removed".into()
        } else {
            "reaction_added".into()
        },
        sender: actor(chat, reaction.user),
        fields: json!({"metadata": {"reactions": reaction.now, "previous": reaction.before}}),
    }
    .into_event()
}

/// Flags a click event as a repeat: a later click of a `once` button, which
/// changed nothing.
pub fn flag_repeat(event: &mut NewEvent) {
    if let Some(result) = event.body["results"].get_mut(0) {
        result["repeat"] = Value::Bool(true);
    }
}

/// A settled job's result event, its body already serialized.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    /// `job:{job_id}:{state}`.
    pub id: String,
    pub chat: i64,
    /// `sent`, `failed` or `cancelled`.
    pub status: &'static str,
    /// The event's JSON.
    pub body: String,
}

/// The result of an outbound job, `sent` or `failed`; its id is
/// `job:{job_id}:{state}`. `None` for a job that has not settled.
///
/// The body is serialized straight from borrowed fields (every job pays
/// for it inside its commit), its keys in the sorted order a
/// `serde_json::Value` map would give them, so the stored JSON reads the
/// same as when it was built as a `Value`.
pub fn job_result(job: &Job) -> Option<JobResult> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        created_at: String,
        direction: &'static str,
        error: Option<Value>,
        id: &'a str,
        job_id: String,
        last_status_at: &'a str,
        meta: Meta,
        metadata: Option<Value>,
        parts: Vec<PartIds>,
        reason: &'a str,
        receiver: Receiver,
        reference: &'a str,
        status: &'static str,
        updated_at: &'a str,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PartIds {
        channel_message_id: Option<String>,
        message_id: String,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        extra_information: ExtraInformation,
    }
    #[derive(serde::Serialize)]
    struct ExtraInformation {
        #[serde(rename = "ChatID")]
        chat_id: String,
    }
    #[derive(serde::Serialize)]
    struct Receiver {
        contacts: [Contact; 1],
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Contact {
        identifier_value: String,
    }

    let status = match job.state {
        JobState::Sent | JobState::Failed | JobState::Cancelled => job.state.as_str(),
        JobState::Queued | JobState::Sending => return None,
    };
    let id = format!("job:{}:{status}", job.id.get());
    let chat = job.chat.get();
    let at = job.updated_at.to_string();
    // The client's own `reference` if it gave one, else the enqueue's
    // request id.
    let (reference, metadata) = crate::send_options::correlation(&job.payload);
    let body = Body {
        created_at: job.created_at.to_string(),
        direction: "outgoing",
        // Through a `Value`, as before, so its keys keep their order.
        error: job.error.as_ref().map(|error| json!(error)),
        id: &id,
        job_id: job.id.get().to_string(),
        last_status_at: &at,
        meta: Meta {
            extra_information: ExtraInformation {
                chat_id: chat.to_string(),
            },
        },
        metadata,
        parts: job
            .parts
            .iter()
            .map(|part| PartIds {
                channel_message_id: part.channel_message_id.map(|id| id.to_string()),
                message_id: part.message_id.to_string(),
            })
            .collect(),
        reason: job.error.as_ref().map_or("", |e| e.message.as_str()),
        receiver: Receiver {
            contacts: [Contact {
                identifier_value: chat.to_string(),
            }],
        },
        reference: reference.as_deref().unwrap_or(&job.request_id),
        status,
        updated_at: &at,
    };
    let body = serde_json::to_string(&body).ok()?;
    Some(JobResult {
        id,
        chat,
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job as the store hands it back once settled.
    fn settled_job(state: JobState, payload: &str, error: Option<crate::queue::JobError>) -> Job {
        use crate::queue::{JobId, JobKind, Part};
        Job {
            id: JobId::new(12),
            request_id: "req-1".into(),
            bot: "default".into(),
            chat: crate::chat::ChatId::user(1033247360),
            kind: JobKind::Interactive,
            payload: payload.into(),
            state,
            attempts: 1,
            not_before: Timestamp::from_millis(0),
            parts: vec![
                Part {
                    seq: 0,
                    random_id: 5,
                    message_id: 40,
                    channel_message_id: Some(182),
                },
                Part {
                    seq: 1,
                    random_id: 6,
                    message_id: 41,
                    channel_message_id: None,
                },
            ],
            error,
            idempotency_key: None,
            created_at: Timestamp::from_millis(1_728_045_105_000),
            updated_at: Timestamp::from_millis(1_728_045_106_250),
            wire: None,
        }
    }

    #[test]
    fn a_job_result_reads_as_it_did_when_built_as_a_value() {
        let payload = r#"{"reference":"order-7","metadata":{"b":1,"a":[true]}}"#;
        let failed = crate::queue::JobError::telegram("USER_IS_BLOCKED", "blocked");
        for (job, reference, metadata) in [
            (
                settled_job(JobState::Sent, payload, None),
                "order-7",
                json!({"a": [true], "b": 1}),
            ),
            (
                settled_job(JobState::Failed, "{}", Some(failed)),
                "req-1",
                Value::Null,
            ),
        ] {
            let result = job_result(&job).unwrap();
            let status = job.state.as_str();
            let expected = json!({
                "id": format!("job:12:{status}"),
                "jobId": "12",
                "reference": reference,
                "metadata": metadata,
                "receiver": {"contacts": [{"identifierValue": "1033247360"}]},
                "meta": {"extraInformation": {"ChatID": "1033247360"}},
                "parts": [
                    {"messageId": "40", "channelMessageId": "182"},
                    {"messageId": "41", "channelMessageId": null},
                ],
                "status": status,
                "reason": job.error.as_ref().map_or("", |e| e.message.as_str()),
                "error": job.error,
                "direction": "outgoing",
                "createdAt": "2024-10-04T12:31:45.000Z",
                "lastStatusAt": "2024-10-04T12:31:46.250Z",
                "updatedAt": "2024-10-04T12:31:46.250Z",
            });
            assert_eq!(result.body, expected.to_string(), "byte for byte");
            assert_eq!(
                (result.id, result.chat, result.status),
                (format!("job:12:{status}"), 1033247360, status)
            );
        }
        let queued = settled_job(JobState::Queued, "{}", None);
        assert_eq!(job_result(&queued), None, "an unsettled job has no result");
    }

    fn origin() -> Origin {
        Origin {
            bot_id: 7933779519,
            chat: 1033247360,
            chat_type: ChatType::Private,
            sender: 1033247360,
            person: Person {
                name: Some("Test user".into()),
                ..Person::default()
            },
            message_id: 182,
            date: Timestamp::from_millis(1_728_045_105_000),
        }
    }

    #[test]
    fn a_text_message_has_the_seed_shape() {
        let event = message(
            &origin(),
            &Body::Text("Sample text message".into()),
            &MessageContext::default(),
        );
        assert_eq!(event.id, "telegram:7933779519:1033247360:182");
        assert_eq!(event.chat, 1033247360);
        let body = &event.body;
        assert_eq!(body["body"]["text"]["text"], "Sample text message");
        assert_eq!(body["sender"]["contact"]["identifierValue"], "1033247360");
        assert_eq!(
            body["sender"]["contact"]["annotations"]["name"],
            "Test user"
        );
        assert_eq!(
            body["receiver"]["connector"]["identifierValue"],
            "7933779519"
        );
        assert_eq!(
            body["parts"][0]["platformReference"],
            "telegram:7933779519:1033247360:182"
        );
        assert_eq!(body["direction"], "incoming");
        assert_eq!(body["createdAt"], "2024-10-04T12:31:45.000Z");
    }

    #[test]
    fn a_reply_and_a_deep_link_are_the_messages_context() {
        let context = MessageContext {
            reply_to: Some(ReplyTo {
                message_id: 180,
                sent: Some(SentBy {
                    job_id: 4,
                    message_id: 9,
                    reference: Some("case-1".into()),
                    metadata: Some(json!({"crm": 2})),
                }),
            }),
            start_payload: Some("promo".into()),
        };
        let event = message(&origin(), &Body::Text("/start promo".into()), &context);
        let context = &event.body["context"];
        assert_eq!(context["startPayload"], "promo");
        let replied = &context["replyTo"];
        assert_eq!(
            replied["platformReference"],
            "telegram:7933779519:1033247360:180"
        );
        assert_eq!(
            (&replied["jobId"], &replied["messageId"]),
            (&json!("4"), &json!("9"))
        );
        assert_eq!(replied["reference"], "case-1");
        assert_eq!(replied["metadata"], json!({"crm": 2}));
    }

    #[test]
    fn a_group_message_names_the_member_as_sender_and_the_group_as_chat() {
        let origin = Origin {
            chat: -1001234,
            chat_type: ChatType::Supergroup,
            sender: 42,
            ..origin()
        };
        let event = message(
            &origin,
            &Body::Text("hi".into()),
            &MessageContext::default(),
        );
        assert_eq!(event.chat, -1001234);
        assert_eq!(event.body["sender"]["contact"]["identifierValue"], "42");
        let extra = &event.body["meta"]["extraInformation"];
        assert_eq!(
            (&extra["ChatID"], &extra["ChatType"]),
            (&json!("-1001234"), &json!("supergroup"))
        );
    }

    #[test]
    fn blocks_are_told_apart_from_other_interactions() {
        let at = Timestamp::from_millis(0);
        assert_eq!(blocks(&blocked(1, 5, true, at, "qts2")), Some(true));
        assert_eq!(blocks(&blocked(1, 5, false, at, "qts3")), Some(false));
        let text = message(
            &origin(),
            &Body::Text("blocked".into()),
            &MessageContext::default(),
        );
        assert_eq!(blocks(&text), None);
        assert_eq!(
            blocked(1, 5, true, at, "qts2").id,
            "telegram:1:5:blocked:qts2"
        );
    }

    #[test]
    fn the_bots_standing_changes_name_their_kind() {
        let change = |before, after| Membership {
            chat: -7,
            actor: 3,
            before,
            after,
            at: Timestamp::from_millis(0),
        };
        let kind = |before, after| {
            membership(1, &change(before, after), "qts9").map(|event| {
                event.body["results"][0]["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        };
        use Standing::{Admin, Member, Out};
        assert_eq!(kind(Out, Member).as_deref(), Some("bot-added"));
        assert_eq!(kind(Out, Admin).as_deref(), Some("bot-added"));
        assert_eq!(kind(Admin, Out).as_deref(), Some("bot-removed"));
        assert_eq!(kind(Member, Admin).as_deref(), Some("bot-promoted"));
        assert_eq!(kind(Admin, Member).as_deref(), Some("bot-demoted"));
        assert_eq!(kind(Member, Member), None);
    }

    #[test]
    fn a_location_is_labelled_like_the_seed() {
        assert_eq!(
            label(52.377486, 4.901026),
            "52° 22' 38.95\" N, 4° 54' 3.69\" E"
        );
        assert_eq!(label(-33.5, -70.25), "33° 30' 0.00\" S, 70° 15' 0.00\" W");
    }

    #[test]
    fn a_click_is_a_clicked_postback_with_its_query_id() {
        let event = clicked(&Click {
            bot_id: 7933779519,
            chat: 1033247360,
            user_id: 1033247360,
            query_id: -42,
            msg_id: 174,
            data: b"postback-payload-2".to_vec(),
            message_id: Some(9),
            reference: Some("order-7".into()),
            job_metadata: Some(json!({"crm": 1})),
            at: Timestamp::from_millis(0),
        });
        assert_eq!(event.id, "callback:-42");
        let result = &event.body["results"][0];
        assert_eq!(result["type"], "clicked");
        assert_eq!(
            result["metadata"]["button"]["payload"],
            "postback-payload-2"
        );
        assert_eq!(
            result["messageReference"],
            "telegram:7933779519:1033247360:174"
        );
        assert_eq!(result["messageId"], "9");
        assert_eq!(result["query_id"], "-42");
        assert_eq!(result["reference"], "order-7");
        assert_eq!(result["metadata"]["job"], json!({"crm": 1}));
    }
}
