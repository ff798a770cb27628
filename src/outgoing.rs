//! What a stored job becomes on the wire: one raw MTProto request per part.
//!
//! The queue keeps payloads as normalized JSON and never looks inside; the
//! sender only knows how to invoke requests and read their replies. This
//! module is the one place between them that knows, per job kind, which
//! Telegram requests a job turns into — each carrying the `random_id` the
//! store chose for that part, so every attempt is the same request.

use std::collections::HashMap;

use grammers_tl_types as tl;

use crate::chat::Peer;
use crate::error::ApiError;
use crate::interactive::InteractiveRequest;
use crate::messages::{Content, MessagesRequest};
use crate::operations::{DeleteRequest, EditRequest};
use crate::queue::{Job, JobKind};
use crate::send_options::{ReplyTarget, SendOptions};

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
}

/// Why a stored job cannot be turned into requests (a payload written by an
/// incompatible version, or a part count that does not match).
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
/// to Telegram's before [`requests`] (earlier jobs of the same chat have
/// gone out by then: a chat's jobs go in order).
pub fn references(job: &Job) -> Result<Vec<i64>, OutgoingError> {
    let options = match job.kind {
        JobKind::Interactive => payload::<InteractiveRequest>(job)?.options().clone(),
        JobKind::Messages => payload::<MessagesRequest>(job)?.options().clone(),
        JobKind::Edit => return Ok(vec![payload::<EditRequest>(job)?.message_id()]),
        JobKind::Delete => return Ok(vec![payload::<DeleteRequest>(job)?.message_id]),
    };
    Ok(match options.reply_target() {
        Some(ReplyTarget::Telegate(id)) => vec![id],
        _ => Vec::new(),
    })
}

/// The requests job `job` sends to `peer`, one per stored part, in order;
/// `resolved` has Telegram's ids of its [`references`].
pub fn requests(
    job: &Job,
    peer: tl::enums::InputPeer,
    resolved: &Resolved,
) -> Result<Vec<Outgoing>, OutgoingError> {
    let random_ids: Vec<i64> = job.parts.iter().map(|part| part.random_id).collect();
    let built = match job.kind {
        JobKind::Interactive => interactive(job, peer, &random_ids, resolved)?,
        JobKind::Messages => messages(job, peer, &random_ids, resolved)?,
        JobKind::Edit => vec![edit(job, peer, resolved)?],
        JobKind::Delete => vec![delete(job, peer, resolved)?],
    };
    if built.len() != random_ids.len() {
        return Err(OutgoingError::Parts {
            job: job.id.get(),
            stored: random_ids.len(),
            built: built.len(),
        });
    }
    Ok(built)
}

fn interactive(
    job: &Job,
    peer: tl::enums::InputPeer,
    random_ids: &[i64],
    resolved: &Resolved,
) -> Result<Vec<Outgoing>, OutgoingError> {
    let request: InteractiveRequest = payload(job)?;
    let Some(&random_id) = random_ids.first() else {
        return Ok(Vec::new());
    };
    let options = Options::of(request.options(), resolved)?;
    Ok(vec![Outgoing::Message(options.on_message(text_message(
        peer,
        request.text().to_owned(),
        Some(request.reply_markup()),
        random_id,
    )))])
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

/// `messages.editMessage` of the target's text and/or inline keyboard.
fn edit(
    job: &Job,
    peer: tl::enums::InputPeer,
    resolved: &Resolved,
) -> Result<Outgoing, OutgoingError> {
    let request: EditRequest = payload(job)?;
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
        peer,
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
    peer: tl::enums::InputPeer,
    resolved: &Resolved,
) -> Result<Outgoing, OutgoingError> {
    let request: DeleteRequest = payload(job)?;
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

/// Send options as one job's requests carry them.
struct Options<'a> {
    options: &'a SendOptions,
    reply_to: Option<tl::enums::InputReplyTo>,
}

impl<'a> Options<'a> {
    fn of(options: &'a SendOptions, resolved: &Resolved) -> Result<Self, OutgoingError> {
        let reply_to = match options.reply_target() {
            None => None,
            Some(ReplyTarget::Channel(id)) => Some(options.reply_to(id)),
            Some(ReplyTarget::Telegate(message_id)) => {
                Some(options.reply_to(resolve(resolved, message_id, "reply_to_message_id")?))
            }
        };
        Ok(Options { options, reply_to })
    }

    /// The first part replies; every part carries the flags; the text's
    /// entities go with the text.
    fn on_message(
        &self,
        mut request: tl::functions::messages::SendMessage,
    ) -> tl::functions::messages::SendMessage {
        request.silent = self.options.silent();
        request.noforwards = self.options.noforwards();
        request.no_webpage = self.options.no_webpage();
        request.reply_to = self.reply_to.clone();
        request.entities = self.options.tl_entities();
        request
    }

    fn on_media(
        &self,
        mut request: tl::functions::messages::SendMedia,
        captioned: bool,
    ) -> tl::functions::messages::SendMedia {
        request.silent = self.options.silent();
        request.noforwards = self.options.noforwards();
        request.reply_to = self.reply_to.clone();
        if captioned {
            request.entities = self.options.tl_entities();
        }
        request
    }
}

/// A text/media job: one message per planned part, in order, each with its
/// part's `random_id`.
fn messages(
    job: &Job,
    peer: tl::enums::InputPeer,
    random_ids: &[i64],
    resolved: &Resolved,
) -> Result<Vec<Outgoing>, OutgoingError> {
    let request: MessagesRequest = payload(job)?;
    let mut options = Options::of(request.options(), resolved)?;
    let parts = request.parts();
    if parts.len() != random_ids.len() {
        return Err(OutgoingError::Parts {
            job: job.id.get(),
            stored: random_ids.len(),
            built: parts.len(),
        });
    }
    let mut built = Vec::with_capacity(parts.len());
    for (part, &random_id) in parts.iter().zip(random_ids) {
        let reply_markup = part.reply_markup.map(|markup| markup.to_tl());
        built.push(match part.content {
            Content::Text(text) => Outgoing::Message(options.on_message(text_message(
                peer.clone(),
                text.to_owned(),
                reply_markup,
                random_id,
            ))),
            Content::Media { media, caption } => Outgoing::Media(options.on_media(
                media_message(
                    peer.clone(),
                    media.to_tl(),
                    caption.unwrap_or_default().to_owned(),
                    reply_markup,
                    random_id,
                ),
                caption.is_some(),
            )),
        });
        // Only the first part is the reply.
        options.reply_to = None;
    }
    Ok(built)
}

/// The stored payload of `job`, read back through every check.
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
