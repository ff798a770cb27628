//! One attempt at one job: its parts sent in order, the replies read.
//!
//! Sending is the only part of the sender that talks to Telegram, so it is
//! kept apart from the decisions about what an outcome means
//! ([`super::report`]). Every part is sent with the `random_id` stored for
//! it; a part already recorded as sent is skipped, and any other part may be
//! sent again safely, since Telegram drops a repeated `random_id`.

use grammers_tl_types as tl;

use super::verdict::{Verdict, judge};
use crate::chat::Peer;
use crate::outgoing::{self, Outgoing, OutgoingError};
use crate::queue::{Job, Queue, QueueError, until_stored};
use crate::telegram::Telegram;

/// How one attempt at a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Every part went out: Telegram's message ids, in part order (`None`
    /// where the reply did not say, e.g. after `RANDOM_ID_DUPLICATE`).
    Sent(Vec<Option<i64>>),
    /// A part failed; the parts before it are recorded in the store.
    Failed(Verdict),
    /// The stored job cannot be turned into requests at all.
    Unbuildable(OutgoingError),
}

/// Sends `job`'s parts not yet recorded as sent, each not before its time
/// in `parts_at` (the limiter's schedule; none given: at once).
pub async fn send(
    telegram: &Telegram,
    queue: &Queue,
    job: &Job,
    parts_at: &[tokio::time::Instant],
) -> Result<Attempt, QueueError> {
    let access_hash = match job.chat.peer() {
        Peer::User(user_id) => telegram.user_access_hash(user_id).await,
        Peer::Group(_) | Peer::Channel(_) => 0,
    };
    let references = match outgoing::references(job) {
        Ok(references) => references,
        Err(error) => return Ok(Attempt::Unbuildable(error)),
    };
    let resolved = queue.channel_message_ids(job.chat, references).await?;
    let requests = match outgoing::requests(job, job.chat.input_peer(access_hash), &resolved) {
        Ok(requests) => requests,
        Err(error) => return Ok(Attempt::Unbuildable(error)),
    };
    let mut ids: Vec<Option<i64>> = job.parts.iter().map(|p| p.channel_message_id).collect();
    let last = job.parts.len().saturating_sub(1);
    for (index, (request, part)) in requests.iter().zip(&job.parts).enumerate() {
        if part.channel_message_id.is_some() {
            continue;
        }
        if let Some(at) = parts_at.get(index) {
            tokio::time::sleep_until(*at).await;
        }
        let sent = match invoke(telegram, request).await {
            Ok(sent) => sent.map(i64::from),
            Err(error) => match judge(&error) {
                Verdict::AlreadySent => {
                    tracing::info!(
                        job = %job.id, part = part.seq,
                        "Telegram already has this random_id: counted as sent, its message id is unknown"
                    );
                    None
                }
                verdict => return Ok(Attempt::Failed(verdict)),
            },
        };
        ids[index] = sent;
        // A later part may fail: remember this one so a retry skips it.
        if index < last
            && let Some(id) = sent
        {
            until_stored("a sent part", || queue.mark_part_sent(job.id, part.seq, id)).await?;
        }
    }
    Ok(Attempt::Sent(ids))
}

/// Sends one request; Telegram's id of the message it sent, if it sent
/// one and said which.
async fn invoke(
    telegram: &Telegram,
    request: &Outgoing,
) -> Result<Option<i32>, grammers_mtsender::InvocationError> {
    match request {
        Outgoing::Message(send) => telegram
            .invoke(send)
            .await
            .map(|updates| sent_message_id(&updates, send.random_id)),
        Outgoing::Media(send) => telegram
            .invoke(send)
            .await
            .map(|updates| sent_message_id(&updates, send.random_id)),
        // An edit that changes nothing (a repeat, say) has done its work.
        Outgoing::Edit(edit) => match telegram.invoke(edit).await {
            Err(error) if error.is("MESSAGE_NOT_MODIFIED") => Ok(None),
            done => done.map(|_| None),
        },
        Outgoing::Delete(delete) => telegram.invoke(delete).await.map(|_| None),
        Outgoing::DeleteInChannel(delete) => telegram.invoke(delete).await.map(|_| None),
    }
}

/// Telegram's id of the message sent with `random_id`, as the reply to
/// `messages.sendMessage`/`sendMedia` tells it: `updateShortSentMessage`, or
/// `updates` holding `updateMessageID` for our `random_id` (else the one new
/// message it carries).
pub fn sent_message_id(updates: &tl::enums::Updates, random_id: i64) -> Option<i32> {
    use tl::enums::{Update, Updates};
    let list = match updates {
        Updates::UpdateShortSentMessage(sent) => return Some(sent.id),
        Updates::Updates(u) => &u.updates,
        Updates::Combined(u) => &u.updates,
        Updates::UpdateShort(short) => std::slice::from_ref(&short.update),
        Updates::TooLong | Updates::UpdateShortMessage(_) | Updates::UpdateShortChatMessage(_) => {
            return None;
        }
    };
    let by_random_id = list.iter().find_map(|update| match update {
        Update::MessageId(u) if u.random_id == random_id => Some(u.id),
        _ => None,
    });
    by_random_id.or_else(|| {
        list.iter().find_map(|update| match update {
            Update::NewMessage(u) => Some(u.message.id()),
            Update::NewChannelMessage(u) => Some(u.message.id()),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i32) -> tl::enums::Message {
        tl::types::MessageEmpty { id, peer_id: None }.into()
    }

    fn updates(list: Vec<tl::enums::Update>) -> tl::enums::Updates {
        tl::types::Updates {
            updates: list,
            users: Vec::new(),
            chats: Vec::new(),
            date: 0,
            seq: 0,
        }
        .into()
    }

    #[test]
    fn the_message_id_update_for_our_random_id_wins() {
        let reply = updates(vec![
            tl::types::UpdateMessageId {
                id: 5,
                random_id: 111,
            }
            .into(),
            tl::types::UpdateMessageId {
                id: 9,
                random_id: 222,
            }
            .into(),
            tl::types::UpdateNewMessage {
                message: message(5),
                pts: 1,
                pts_count: 1,
            }
            .into(),
        ]);
        assert_eq!(sent_message_id(&reply, 222), Some(9));
        assert_eq!(sent_message_id(&reply, 111), Some(5));
    }

    #[test]
    fn without_a_message_id_update_the_new_message_tells() {
        let reply = updates(vec![
            tl::types::UpdateNewMessage {
                message: message(42),
                pts: 1,
                pts_count: 1,
            }
            .into(),
        ]);
        assert_eq!(sent_message_id(&reply, 7), Some(42));
        assert_eq!(sent_message_id(&updates(Vec::new()), 7), None);
        assert_eq!(sent_message_id(&tl::enums::Updates::TooLong, 7), None);
    }

    #[test]
    fn a_short_sent_message_carries_the_id() {
        let reply: tl::enums::Updates = tl::types::UpdateShortSentMessage {
            out: true,
            id: 77,
            pts: 3,
            pts_count: 1,
            date: 0,
            media: None,
            entities: None,
            ttl_period: None,
        }
        .into();
        assert_eq!(sent_message_id(&reply, 1), Some(77));
    }
}
