//! What a stored job becomes on the wire: one raw MTProto request per part.
//!
//! The sender only knows how to invoke requests and read their replies.
//! This module is the one place that knows, per job kind, which Telegram
//! requests a job turns into — each carrying the `random_id` the store
//! chose for that part, so every attempt is the same request.
//!
//! The requests of a send are built once, at enqueue, from the request the
//! API has just validated (send options included: entities, flags, reply),
//! and stored beside the job's payload in a versioned binary form
//! (`jobs.wire`, see [`encode`]): a byte [`WIRE_VERSION`], then each part's
//! request as Telegram's own TL serialization, with an empty peer and a
//! zero `random_id` that are filled in at send time. So a job accepted by
//! one release is sent as it was accepted, never re-parsed nor re-validated
//! by a later release's rules, and sending costs no JSON. A job stored
//! before there was a stored form (`wire` NULL), or whose form this build
//! cannot read (another version, a TL layer it does not know), is built
//! from its payload as before.
//!
//! Some requests name a message telegate sent by telegate's id, whose
//! Telegram id is only known once that message is out: a reply to it, an
//! edit or a delete of it. The sender looks those ids up ([`references`])
//! right before sending — the named message's job is ahead in the same
//! chat's line, so it is out by then — and [`requests`] fills them in.
//! Edits and deletes are always built at send time, from their payload,
//! read as it was accepted (unchecked), like an interactive job's.

use std::collections::HashMap;

use grammers_tl_types::{self as tl, Deserializable, Identifiable, Serializable};

use crate::chat::Peer;
use crate::error::ApiError;
use crate::interactive::InteractiveRequest;
use crate::messages::{Content, MessagesRequest};
use crate::operations::{DeleteRequest, EditRequest};
use crate::queue::{Job, JobKind};
use crate::send_options::{ReplyTarget, SendOptions};

/// The first byte of the stored form this build writes.
pub const WIRE_VERSION: u8 = 1;

/// Telegram's ids of the telegate messages a job refers to (see
/// [`references`]), as the store had them when the job went out.
pub type Resolved = HashMap<i64, i64>;

/// One Telegram request of a job: a message to send, or a change to one
/// sent before.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Message(tl::functions::messages::SendMessage),
    Media(tl::functions::messages::SendMedia),
    Edit(tl::functions::messages::EditMessage),
    /// In a private chat or basic group, for both sides (`revoke`).
    Delete(tl::functions::messages::DeleteMessages),
    /// In a supergroup or channel.
    DeleteInChannel(tl::functions::channels::DeleteMessages),
}

impl Outgoing {
    /// The `random_id` Telegram de-duplicates this message by (a change to
    /// a message has none: doing it twice changes nothing more).
    pub fn random_id(&self) -> Option<i64> {
        match self {
            Outgoing::Message(request) => Some(request.random_id),
            Outgoing::Media(request) => Some(request.random_id),
            Outgoing::Edit(_) | Outgoing::Delete(_) | Outgoing::DeleteInChannel(_) => None,
        }
    }

    /// Addresses the request to `peer` with the part's `random_id`.
    fn aim(&mut self, peer: tl::enums::InputPeer, random_id: i64) {
        match self {
            Outgoing::Message(request) => (request.peer, request.random_id) = (peer, random_id),
            Outgoing::Media(request) => (request.peer, request.random_id) = (peer, random_id),
            Outgoing::Edit(request) => request.peer = peer,
            Outgoing::Delete(_) | Outgoing::DeleteInChannel(_) => {}
        }
    }

    /// Points a reply at Telegram's message `id`.
    fn reply_to(&mut self, id: i32) {
        let reply_to = match self {
            Outgoing::Message(request) => request.reply_to.as_mut(),
            Outgoing::Media(request) => request.reply_to.as_mut(),
            _ => None,
        };
        if let Some(tl::enums::InputReplyTo::Message(reply)) = reply_to {
            reply.reply_to_msg_id = id;
        }
    }
}

/// Why a stored job cannot be turned into requests (a payload written by an
/// incompatible version, a part count that does not match, a message named
/// that was never sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutgoingError {
    #[error("stored payload of job {job} is unreadable: {reason}")]
    Payload { job: i64, reason: String },
    #[error("job {job} has {stored} stored parts but its payload makes {built}")]
    Parts {
        job: i64,
        stored: usize,
        built: usize,
    },
    #[error("message {message_id} was never sent to this chat by telegate (`{field}`)")]
    Unresolved {
        message_id: i64,
        field: &'static str,
    },
}

impl OutgoingError {
    /// The error as the job's client sees it.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::rejected(self.to_string())
    }
}

/// telegate's message ids job `job` refers to, which the sender resolves
/// to Telegram's before [`requests`]. A send is only read for them when its
/// payload mentions a reply by telegate id.
pub fn references(job: &Job) -> Result<Vec<i64>, OutgoingError> {
    let reply_target = |options: &SendOptions| match options.reply_target() {
        Some(ReplyTarget::Telegate(id)) => vec![id],
        _ => Vec::new(),
    };
    Ok(match job.kind {
        JobKind::Edit => vec![payload::<EditRequest>(job)?.message_id()],
        JobKind::Delete => vec![payload::<DeleteRequest>(job)?.message_id],
        _ if !job.payload.contains("\"reply_to_message_id\"") => Vec::new(),
        JobKind::Interactive => reply_target(payload::<InteractiveRequest>(job)?.options()),
        JobKind::Messages => reply_target(payload::<MessagesRequest>(job)?.options()),
    })
}

/// The requests job `job` sends to `peer`, one per stored part, in order:
/// from its stored form, else from its payload; `resolved` has Telegram's
/// ids of its [`references`].
pub fn requests(
    job: &Job,
    peer: tl::enums::InputPeer,
    resolved: &Resolved,
) -> Result<Vec<Outgoing>, OutgoingError> {
    let stored = job.wire.as_deref().and_then(|wire| match decode(wire) {
        Ok(requests) => Some(requests),
        Err(reason) => {
            tracing::warn!(job = %job.id, %reason, "stored requests unreadable; building them from the payload");
            None
        }
    });
    let mut built = match stored {
        Some(requests) => requests,
        None => from_payload(job, &peer, resolved)?,
    };
    if built.len() != job.parts.len() {
        return Err(OutgoingError::Parts {
            job: job.id.get(),
            stored: job.parts.len(),
            built: built.len(),
        });
    }
    for (request, part) in built.iter_mut().zip(&job.parts) {
        request.aim(peer.clone(), part.random_id);
    }
    if matches!(job.kind, JobKind::Interactive | JobKind::Messages)
        && let [message_id] = references(job)?.as_slice()
        && let Some(first) = built.first_mut()
    {
        first.reply_to(resolve(resolved, *message_id, "reply_to_message_id")?);
    }
    Ok(built)
}

/// The requests of a job stored without its requests, from its payload.
fn from_payload(
    job: &Job,
    peer: &tl::enums::InputPeer,
    resolved: &Resolved,
) -> Result<Vec<Outgoing>, OutgoingError> {
    Ok(match job.kind {
        JobKind::Interactive => interactive(&payload(job)?),
        JobKind::Messages => messages(&payload(job)?),
        JobKind::Edit => vec![edit(&payload(job)?, resolved)?],
        JobKind::Delete => vec![delete(job, &payload(job)?, peer, resolved)?],
    })
}

/// The one message of an interactive request (peer and `random_id` still
/// to be aimed, a reply by telegate id still to be resolved).
pub fn interactive(request: &InteractiveRequest) -> Vec<Outgoing> {
    let options = request.options();
    vec![Outgoing::Message(with_options(
        text_message(
            tl::enums::InputPeer::Empty,
            request.text().to_owned(),
            Some(request.reply_markup()),
            0,
        ),
        options,
        reply_to(options),
    ))]
}

/// A text/media request: one message per planned part, in order (peer and
/// `random_id`s still to be aimed). The first part is the reply; every part
/// carries the flags; the text's entities go with the text.
pub fn messages(request: &MessagesRequest) -> Vec<Outgoing> {
    let options = request.options();
    request
        .parts()
        .iter()
        .enumerate()
        .map(|(index, part)| {
            let reply_markup = part.reply_markup.map(|markup| markup.to_tl());
            let peer = tl::enums::InputPeer::Empty;
            let reply_to = reply_to(options).filter(|_| index == 0);
            match part.content {
                Content::Text(text) => Outgoing::Message(with_options(
                    text_message(peer, text.to_owned(), reply_markup, 0),
                    options,
                    reply_to,
                )),
                Content::Media { media, caption } => {
                    let mut send = media_message(
                        peer,
                        media.to_tl(),
                        caption.unwrap_or_default().to_owned(),
                        reply_markup,
                        0,
                    );
                    send.silent = options.silent();
                    send.noforwards = options.noforwards();
                    send.reply_to = reply_to;
                    if caption.is_some() {
                        send.entities = options.tl_entities();
                    }
                    Outgoing::Media(send)
                }
            }
        })
        .collect()
}

/// The reply a message carries: to Telegram's id as given, or (a telegate
/// id) to one filled in at send time.
fn reply_to(options: &SendOptions) -> Option<tl::enums::InputReplyTo> {
    match options.reply_target()? {
        ReplyTarget::Channel(id) => Some(options.reply_to(id)),
        ReplyTarget::Telegate(_) => Some(options.reply_to(0)),
    }
}

fn with_options(
    mut send: tl::functions::messages::SendMessage,
    options: &SendOptions,
    reply_to: Option<tl::enums::InputReplyTo>,
) -> tl::functions::messages::SendMessage {
    send.silent = options.silent();
    send.noforwards = options.noforwards();
    send.no_webpage = options.no_webpage();
    send.reply_to = reply_to;
    send.entities = options.tl_entities();
    send
}

/// Telegram's id of telegate's message `message_id`, as resolved.
fn resolve(
    resolved: &Resolved,
    message_id: i64,
    field: &'static str,
) -> Result<i32, OutgoingError> {
    resolved
        .get(&message_id)
        .and_then(|&id| i32::try_from(id).ok())
        .ok_or(OutgoingError::Unresolved { message_id, field })
}

/// `messages.editMessage` of the target's text and/or inline keyboard
/// (peer still to be aimed).
fn edit(request: &EditRequest, resolved: &Resolved) -> Result<Outgoing, OutgoingError> {
    let id = resolve(resolved, request.message_id(), "message_id")?;
    let entities = request.text().map(|_| {
        request
            .entities()
            .iter()
            .map(crate::formatting::Entity::to_tl)
            .collect()
    });
    Ok(Outgoing::Edit(tl::functions::messages::EditMessage {
        no_webpage: request.no_webpage(),
        invert_media: false,
        peer: tl::enums::InputPeer::Empty,
        id,
        message: request.text().map(str::to_owned),
        media: None,
        reply_markup: request.markup().map(|markup| markup.to_tl()),
        entities,
        schedule_date: None,
        schedule_repeat_period: None,
        quick_reply_shortcut_id: None,
        rich_message: None,
    }))
}

/// `messages.deleteMessages` (for both sides), or `channels.deleteMessages`
/// in a supergroup.
fn delete(
    job: &Job,
    request: &DeleteRequest,
    peer: &tl::enums::InputPeer,
    resolved: &Resolved,
) -> Result<Outgoing, OutgoingError> {
    let id = resolve(resolved, request.message_id, "message_id")?;
    Ok(match (job.chat.peer(), peer) {
        (Peer::Channel(_), tl::enums::InputPeer::Channel(channel)) => {
            Outgoing::DeleteInChannel(tl::functions::channels::DeleteMessages {
                channel: tl::types::InputChannel {
                    channel_id: channel.channel_id,
                    access_hash: channel.access_hash,
                }
                .into(),
                id: vec![id],
            })
        }
        _ => Outgoing::Delete(tl::functions::messages::DeleteMessages {
            revoke: true,
            id: vec![id],
        }),
    })
}

/// The stored form of `requests` ([`WIRE_VERSION`], then each request's TL
/// bytes). Only sends have one; edits and deletes are built at send time.
pub fn encode(requests: &[Outgoing]) -> Vec<u8> {
    let mut wire = vec![WIRE_VERSION];
    for request in requests {
        match request {
            Outgoing::Message(request) => request.serialize(&mut wire),
            Outgoing::Media(request) => request.serialize(&mut wire),
            Outgoing::Edit(request) => request.serialize(&mut wire),
            Outgoing::Delete(request) => request.serialize(&mut wire),
            Outgoing::DeleteInChannel(request) => request.serialize(&mut wire),
        }
    }
    wire
}

/// The requests in a stored form, or why it cannot be read.
fn decode(wire: &[u8]) -> Result<Vec<Outgoing>, String> {
    use tl::functions::messages::{SendMedia, SendMessage};
    let Some((&version, body)) = wire.split_first() else {
        return Err("empty".into());
    };
    if version != WIRE_VERSION {
        return Err(format!(
            "version {version}, this build reads {WIRE_VERSION}"
        ));
    }
    let mut cursor = tl::deserialize::Cursor::from_slice(body);
    let mut requests = Vec::new();
    while cursor.pos() < body.len() {
        let bad = |e: tl::deserialize::Error| format!("request {}: {e}", requests.len());
        let request = match u32::deserialize(&mut cursor).map_err(bad)? {
            SendMessage::CONSTRUCTOR_ID => {
                Outgoing::Message(SendMessage::deserialize(&mut cursor).map_err(bad)?)
            }
            SendMedia::CONSTRUCTOR_ID => {
                Outgoing::Media(SendMedia::deserialize(&mut cursor).map_err(bad)?)
            }
            other => return Err(format!("unknown request {other:#010x}")),
        };
        requests.push(request);
    }
    Ok(requests)
}

/// The stored payload of `job`: interactive requests and edits as they
/// were accepted (unchecked), a messages body through its checks.
fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, OutgoingError> {
    serde_json::from_str(&job.payload).map_err(|e| OutgoingError::Payload {
        job: job.id.get(),
        reason: e.to_string(),
    })
}

/// A plain `messages.sendMessage` with optional reply markup.
pub fn text_message(
    peer: tl::enums::InputPeer,
    text: String,
    reply_markup: Option<tl::enums::ReplyMarkup>,
    random_id: i64,
) -> tl::functions::messages::SendMessage {
    tl::functions::messages::SendMessage {
        no_webpage: false,
        silent: false,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer,
        reply_to: None,
        message: text,
        random_id,
        reply_markup,
        entities: None,
        schedule_date: None,
        schedule_repeat_period: None,
        send_as: None,
        quick_reply_shortcut: None,
        effect: None,
        allow_paid_stars: None,
        suggested_post: None,
        rich_message: None,
    }
}

/// A `messages.sendMedia`: `media` with `caption` (may be empty) and
/// optional reply markup.
pub fn media_message(
    peer: tl::enums::InputPeer,
    media: tl::enums::InputMedia,
    caption: String,
    reply_markup: Option<tl::enums::ReplyMarkup>,
    random_id: i64,
) -> tl::functions::messages::SendMedia {
    tl::functions::messages::SendMedia {
        silent: false,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer,
        reply_to: None,
        media,
        message: caption,
        random_id,
        reply_markup,
        entities: None,
        schedule_date: None,
        schedule_repeat_period: None,
        send_as: None,
        quick_reply_shortcut: None,
        effect: None,
        allow_paid_stars: None,
        suggested_post: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatId;
    use crate::queue::{JobId, JobState, Part, Timestamp};

    fn job(kind: JobKind, payload: &str, random_ids: &[i64]) -> Job {
        Job {
            id: JobId::new(7),
            request_id: "req_1".into(),
            bot: "default".into(),
            chat: ChatId::user(42),
            kind,
            payload: payload.into(),
            state: JobState::Sending,
            attempts: 1,
            not_before: Timestamp::from_millis(0),
            parts: random_ids
                .iter()
                .enumerate()
                .map(|(seq, &random_id)| Part {
                    seq: seq as u16,
                    random_id,
                    message_id: seq as i64 + 1,
                    channel_message_id: None,
                })
                .collect(),
            error: None,
            idempotency_key: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            wire: None,
        }
    }

    fn interactive_payload() -> String {
        let body = br#"{"destination_user_id":"42","telegram_interactive_message":{
            "type":"highlight_reply","text":"Rate us","reply_markup":{"force_reply":true}}}"#;
        serde_json::to_string(&InteractiveRequest::from_json(body).unwrap()).unwrap()
    }

    #[test]
    fn an_interactive_job_is_one_send_message_with_its_random_id() {
        let peer = ChatId::user(42).input_peer(0);
        let built = requests(
            &job(JobKind::Interactive, &interactive_payload(), &[99]),
            peer.clone(),
            &Resolved::new(),
        )
        .unwrap();
        let [Outgoing::Message(send)] = built.as_slice() else {
            panic!("{built:?}");
        };
        assert_eq!(send.random_id, 99);
        assert_eq!(send.peer, peer);
        assert_eq!(send.message, "Rate us");
        assert!(matches!(
            send.reply_markup,
            Some(tl::enums::ReplyMarkup::ReplyKeyboardForceReply(_))
        ));
    }

    #[test]
    fn a_job_is_sent_from_its_stored_form_without_reading_its_payload() {
        let request = InteractiveRequest::from_json(
            br#"{"destination_user_id":"42","telegram_interactive_message":{
            "type":"highlight_reply","text":"Rate us","reply_markup":{"force_reply":true}}}"#,
        )
        .unwrap();
        let wire = encode(&interactive(&request));
        assert_eq!(wire[0], WIRE_VERSION);
        let peer = ChatId::user(42).input_peer(0);
        let from_payload = requests(
            &job(JobKind::Interactive, &interactive_payload(), &[99]),
            peer.clone(),
            &Resolved::new(),
        )
        .unwrap();
        // A payload no rule of this build accepts: only the stored form is read.
        let mut stored = job(JobKind::Interactive, "not json", &[99]);
        stored.wire = Some(wire);
        assert_eq!(
            requests(&stored, peer, &Resolved::new()).unwrap(),
            from_payload
        );
    }

    #[test]
    fn every_part_of_a_messages_job_round_trips_through_the_stored_form() {
        let request = MessagesRequest::from_json(
            br#"{"destination_user_id":42,"text":"Look","media":[
                {"mediaName":"a.jpg","mediaUri":"https://x.example/a.jpg","mimeType":"image/jpeg"},
                {"mediaName":"b.pdf","mediaUri":"https://x.example/b.pdf","mimeType":"application/pdf"}],
                "reply_markup":{"inline_keyboard":[[{"text":"Ok","callback_data":"ok"}]]}}"#,
        )
        .unwrap();
        let built = messages(&request);
        assert_eq!(decode(&encode(&built)).unwrap(), built);
        let mut stored = job(JobKind::Messages, "not json", &[11, 22]);
        stored.wire = Some(encode(&built));
        let sent = requests(&stored, ChatId::user(42).input_peer(0), &Resolved::new()).unwrap();
        assert_eq!(
            sent.iter().map(Outgoing::random_id).collect::<Vec<_>>(),
            [Some(11), Some(22)]
        );
    }

    #[test]
    fn a_stored_form_this_build_cannot_read_falls_back_to_the_payload() {
        let peer = ChatId::user(42).input_peer(0);
        let expected = requests(
            &job(JobKind::Interactive, &interactive_payload(), &[5]),
            peer.clone(),
            &Resolved::new(),
        )
        .unwrap();
        let mut future = encode(&expected);
        future[0] = WIRE_VERSION + 1;
        for wire in [future, vec![WIRE_VERSION, 1, 2, 3], Vec::new()] {
            assert!(decode(&wire).is_err(), "{wire:?}");
            let mut stored = job(JobKind::Interactive, &interactive_payload(), &[5]);
            stored.wire = Some(wire);
            assert_eq!(
                requests(&stored, peer.clone(), &Resolved::new()).unwrap(),
                expected
            );
        }
    }

    /// A store written by the release before the stored form (schema 2: no
    /// `wire` column), opened by this one: the job is migrated, claimed
    /// and sent from its payload with its stored `random_id`.
    #[tokio::test]
    async fn a_row_in_the_previous_format_is_migrated_and_sent() {
        use crate::queue::{Queue, migrate_to};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telegate.db");
        {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            migrate_to(&mut conn, 2).unwrap();
            conn.execute(
                "INSERT INTO jobs (id, request_id, bot, chat, kind, payload, state, attempts,
                                   not_before, created_at, updated_at)
                 VALUES (1, 'req_old', 'default', 42, 'interactive', ?1, 'queued', 0, 0, 0, 0)",
                [interactive_payload()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO parts (job_id, seq, random_id) VALUES (1, 0, 4242)",
                [],
            )
            .unwrap();
        }
        let queue = Queue::open(&path).unwrap();
        let claimed = queue
            .claim_due(crate::queue::DEFAULT_BOT, Timestamp::now(), 10)
            .await
            .unwrap();
        let [old] = claimed.as_slice() else {
            panic!("{claimed:?}");
        };
        assert_eq!(old.wire, None);
        let peer = ChatId::user(42).input_peer(0);
        let built = requests(old, peer.clone(), &Resolved::new()).unwrap();
        let [Outgoing::Message(send)] = built.as_slice() else {
            panic!("one message");
        };
        assert_eq!((send.random_id, &send.peer), (4242, &peer));
        assert_eq!(send.message, "Rate us");
        queue.close().await;
    }

    #[test]
    fn unreadable_payloads_and_part_mismatches_are_errors() {
        let peer = ChatId::user(42).input_peer(0);
        assert!(matches!(
            requests(
                &job(JobKind::Interactive, "{", &[1]),
                peer.clone(),
                &Resolved::new()
            ),
            Err(OutgoingError::Payload { job: 7, .. })
        ));
        assert_eq!(
            requests(
                &job(JobKind::Interactive, &interactive_payload(), &[1, 2]),
                peer,
                &Resolved::new()
            ),
            Err(OutgoingError::Parts {
                job: 7,
                stored: 2,
                built: 1
            })
        );
    }

    fn messages_payload(body: &str) -> String {
        serde_json::to_string(&MessagesRequest::from_json(body.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn a_messages_job_is_one_request_per_part_in_order_with_its_random_id() {
        let peer = ChatId::user(42).input_peer(0);
        let payload = messages_payload(
            r#"{"destination_user_id":42,"text":"Look","media":[
                {"mediaName":"a.jpg","mediaUri":"https://x.example/a.jpg","mimeType":"image/jpeg"},
                {"mediaName":"b.pdf","mediaUri":"https://x.example/b.pdf","mimeType":"application/pdf"}],
                "reply_markup":{"inline_keyboard":[[{"text":"Ok","callback_data":"ok"}]]}}"#,
        );
        let built = requests(
            &job(JobKind::Messages, &payload, &[11, 22]),
            peer.clone(),
            &Resolved::new(),
        )
        .unwrap();
        let [Outgoing::Media(photo), Outgoing::Media(document)] = built.as_slice() else {
            panic!("{built:?}");
        };
        assert_eq!((photo.random_id, document.random_id), (11, 22));
        assert_eq!(photo.peer, peer);
        assert_eq!(photo.message, "Look");
        assert!(matches!(
            photo.media,
            tl::enums::InputMedia::PhotoExternal(_)
        ));
        assert!(photo.reply_markup.is_none());
        assert_eq!(document.message, "");
        assert!(matches!(
            document.media,
            tl::enums::InputMedia::DocumentExternal(_)
        ));
        assert!(matches!(
            document.reply_markup,
            Some(tl::enums::ReplyMarkup::ReplyInlineMarkup(_))
        ));
    }

    #[test]
    fn a_long_text_is_its_own_message_after_the_media() {
        let peer = ChatId::user(42).input_peer(0);
        let text = "t".repeat(2000);
        let payload = messages_payload(&format!(
            r#"{{"destination_user_id":42,"text":"{text}","media":
                {{"mediaName":"a.gif","mediaUri":"https://x.example/a.gif","mimeType":"image/gif"}}}}"#
        ));
        let built = requests(
            &job(JobKind::Messages, &payload, &[1, 2]),
            peer,
            &Resolved::new(),
        )
        .unwrap();
        let [Outgoing::Media(gif), Outgoing::Message(message)] = built.as_slice() else {
            panic!("{built:?}");
        };
        assert_eq!(gif.message, "");
        assert_eq!(message.message, text);
        assert_eq!((gif.random_id, message.random_id), (1, 2));
        assert!(matches!(
            requests(
                &job(JobKind::Messages, &payload, &[1]),
                ChatId::user(42).input_peer(0),
                &Resolved::new()
            ),
            Err(OutgoingError::Parts {
                stored: 1,
                built: 2,
                ..
            })
        ));
    }
}
