//! The messages sent most recently, kept in memory so that a click on one
//! (the common case: users click soon after a message arrives) finds its
//! job without a store read. Filled after a "sent" commit returns, so it
//! only ever holds what the store holds; older messages are read from the
//! store as before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::job::Job;
use super::read::SentMessage;
use crate::chat::ChatId;

/// Messages remembered at most (oldest forgotten first).
const CAPACITY: usize = 16_384;

/// `(bot, chat, Telegram's message id)` → the sent message (message ids
/// are per bot: two bots' chats with one user number their messages apart).
#[derive(Default)]
pub struct RecentSent {
    inner: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_message: HashMap<(String, ChatId, i64), SentMessage>,
    order: VecDeque<(String, ChatId, i64)>,
}

impl RecentSent {
    /// Remembers the parts of `job`, just recorded as sent.
    pub fn remember(&self, job: &Job) {
        let mut recent = self.lock();
        for part in &job.parts {
            let Some(channel_message_id) = part.channel_message_id else {
                continue;
            };
            let key = (job.bot.clone(), job.chat, channel_message_id);
            let sent = SentMessage {
                job_id: job.id,
                message_id: part.message_id,
                kind: job.kind,
                payload: job.payload.clone(),
            };
            if recent.by_message.insert(key.clone(), sent).is_none() {
                recent.order.push_back(key);
            }
        }
        while recent.order.len() > CAPACITY {
            if let Some(old) = recent.order.pop_front() {
                recent.by_message.remove(&old);
            }
        }
    }

    /// The message, if it is one of the recent ones.
    pub fn get(&self, bot: &str, chat: ChatId, channel_message_id: i64) -> Option<SentMessage> {
        self.lock()
            .by_message
            .get(&(bot.to_owned(), chat, channel_message_id))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        // The map stays consistent if a holder panicked.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{JobId, JobKind, JobState, Part, Timestamp};

    fn job(id: i64, channel_ids: &[Option<i64>]) -> Job {
        Job {
            id: JobId::new(id),
            request_id: "r".into(),
            bot: "default".into(),
            chat: ChatId::user(5),
            kind: JobKind::Interactive,
            payload: format!("{{\"job\":{id}}}"),
            state: JobState::Sent,
            attempts: 1,
            not_before: Timestamp::from_millis(0),
            parts: channel_ids
                .iter()
                .enumerate()
                .map(|(seq, &channel_message_id)| Part {
                    seq: seq as u16,
                    random_id: 1,
                    message_id: id * 10 + seq as i64,
                    channel_message_id,
                })
                .collect(),
            error: None,
            idempotency_key: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            wire: None,
        }
    }

    #[test]
    fn remembers_sent_parts_and_forgets_the_oldest_beyond_capacity_first() {
        let recent = RecentSent::default();
        recent.remember(&job(1, &[Some(100), None]));
        let found = recent.get("default", ChatId::user(5), 100).unwrap();
        assert_eq!((found.job_id, found.message_id), (JobId::new(1), 10));
        assert!(recent.get("default", ChatId::user(6), 100).is_none());
        for n in 0..CAPACITY as i64 {
            recent.remember(&job(2 + n, &[Some(1000 + n)]));
        }
        assert!(recent.get("default", ChatId::user(5), 100).is_none());
        assert!(
            recent
                .get("default", ChatId::user(5), 1000 + CAPACITY as i64 - 1)
                .is_some()
        );
    }
}
