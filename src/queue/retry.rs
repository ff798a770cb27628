//! Putting a failed job back in line (`POST /api/v1/jobs/{id}/retry`).
//!
//! The job keeps its parts and their `random_id`s: a part recorded as sent
//! is skipped, and a part that reached Telegram without telegate learning
//! so is sent again with the same `random_id`, which Telegram answers with
//! `RANDOM_ID_DUPLICATE` instead of posting it twice. The error is cleared
//! and the expiry clock restarts (`created_at` becomes the retry's time), so
//! an expired job can be retried at all.

use crate::store::OptionalExtension;
use rusqlite::params;

use super::read;
use super::{JobEvent, JobId, JobState, Queue, QueueError, Timestamp};
use crate::chat::ChatId;

impl Queue {
    /// Moves failed job `id` back to `queued`, due at `now`.
    pub async fn retry_failed(&self, id: JobId, now: Timestamp) -> Result<(), QueueError> {
        self.write(move |conn, events| {
            let found: Option<(ChatId, JobState)> = conn
                .prepare_cached("SELECT chat, state FROM jobs WHERE id = ?1")?
                .query_row([id.get()], |row| Ok((read::chat(row, 0)?, row.get(1)?)))
                .optional()?;
            let (chat, state) = found.ok_or(QueueError::NoSuchJob(id))?;
            if state != JobState::Failed {
                return Err(QueueError::NotFailed { id, state });
            }
            conn.prepare_cached(
                "UPDATE jobs SET state = 'queued', error_code = NULL, error_text = NULL,
                                 error_name = NULL, not_before = ?2, created_at = ?2,
                                 updated_at = ?2
                 WHERE id = ?1",
            )?
            .execute(params![id.get(), now.as_millis()])?;
            events.push(JobEvent {
                id,
                chat,
                state: JobState::Queued,
                bot: None,
            });
            Ok(())
        })
        .await
    }
}
