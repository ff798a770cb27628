//! Cancelling a queued job before any of it went out.
//!
//! A job may be cancelled while it is `queued` and no part of it has been
//! sent (a retry after a partly sent job has); the change, and its
//! `cancelled` result in the event stream, are one commit. A job being sent
//! cannot be cancelled: the request may already be on its way.

use crate::store::{Conn, OptionalExtension};

use super::consumer::settle;
use super::job::{Job, JobEvent, JobId, JobState, Timestamp};
use super::{Queue, QueueError, read};

impl Queue {
    /// Cancels job `id`; the job as stored, now `cancelled`.
    pub async fn cancel(&self, id: JobId, now: Timestamp) -> Result<Job, QueueError> {
        self.write(move |conn, events| cancel(conn, id, now, events))
            .await
    }
}

fn cancel(
    conn: &Conn,
    id: JobId,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<Job, QueueError> {
    let found = conn
        .prepare_cached(
            "SELECT chat, state,
                    (SELECT count(*) FROM parts
                     WHERE job_id = jobs.id AND channel_message_id IS NOT NULL)
             FROM jobs WHERE id = ?1",
        )?
        .query_row([id.get()], |row| {
            Ok((
                read::chat(row, 0)?,
                row.get::<_, JobState>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    let (chat, state, sent_parts) = found.ok_or(QueueError::NoSuchJob(id))?;
    if state != JobState::Queued || sent_parts > 0 {
        return Err(QueueError::NotCancellable {
            id,
            state,
            sent_parts,
        });
    }
    settle(conn, id, chat, JobState::Cancelled, None, now, events)?;
    let job = read::job(conn, id)?.ok_or(QueueError::NoSuchJob(id))?;
    crate::events::record_job_result(conn, &job)?;
    Ok(job)
}
