//! What a stored job becomes on the wire: one raw MTProto request per part.
//!
//! The queue keeps payloads as normalized JSON and never looks inside; the
//! sender only knows how to invoke requests and read their replies. This
//! module is the one place between them that knows, per job kind, which
//! Telegram requests a job turns into — each carrying the `random_id` the
//! store chose for that part, so every attempt is the same request.

use grammers_tl_types as tl;

use crate::error::ApiError;
use crate::interactive::InteractiveRequest;
use crate::queue::{Job, JobKind};

/// One Telegram message to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Message(tl::functions::messages::SendMessage),
    Media(tl::functions::messages::SendMedia),
}

impl Outgoing {
    /// The `random_id` Telegram de-duplicates this message by.
    pub fn random_id(&self) -> i64 {
        match self {
            Outgoing::Message(request) => request.random_id,
            Outgoing::Media(request) => request.random_id,
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
}

impl OutgoingError {
    /// The error as the job's client sees it.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::rejected(self.to_string())
    }
}

/// The requests job `job` sends to `peer`, one per stored part, in order.
pub fn requests(job: &Job, peer: tl::enums::InputPeer) -> Result<Vec<Outgoing>, OutgoingError> {
    let random_ids: Vec<i64> = job.parts.iter().map(|part| part.random_id).collect();
    let built = match job.kind {
        JobKind::Interactive => interactive(job, peer, &random_ids)?,
        JobKind::Messages => {
            return Err(OutgoingError::Payload {
                job: job.id.get(),
                reason: "text and media jobs are not supported by this build".into(),
            });
        }
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
) -> Result<Vec<Outgoing>, OutgoingError> {
    let request: InteractiveRequest =
        serde_json::from_str(&job.payload).map_err(|e| OutgoingError::Payload {
            job: job.id.get(),
            reason: e.to_string(),
        })?;
    let Some(&random_id) = random_ids.first() else {
        return Ok(Vec::new());
    };
    Ok(vec![Outgoing::Message(text_message(
        peer,
        request.text().to_owned(),
        Some(request.reply_markup()),
        random_id,
    ))])
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
            requests(&job(JobKind::Interactive, "{", &[1]), peer.clone()),
            Err(OutgoingError::Payload { job: 7, .. })
        ));
        assert_eq!(
            requests(
                &job(JobKind::Interactive, &interactive_payload(), &[1, 2]),
                peer
            ),
            Err(OutgoingError::Parts {
                job: 7,
                stored: 2,
                built: 1
            })
        );
    }
}
