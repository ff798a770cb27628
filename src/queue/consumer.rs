//! The worker's side of the queue.
//!
//! A chat's jobs form a line: only its oldest active job may be taken, and
//! only while nothing of that chat is in `sending` (a job held by its
//! `send_at` is out of the line until its time: see `read`). So one chat's messages go
//! out in enqueue order while different chats proceed in parallel. Taking a
//! job marks it `sending` (attempts + 1) in the same commit; the worker then
//! reports `sent`, `failed` or a retry time. Holds (`FLOOD_WAIT`) are kept in
//! the store so no task sleeps holding a job, and a restart keeps them. Time
//! is always passed in, so the rules are testable without a clock.

use crate::store::{Conn, Dialect, OptionalExtension};
use rusqlite::params;

use super::expiry::Expiry;
use super::job::{Job, JobError, JobEvent, JobId, JobState, Timestamp};
use super::{Queue, QueueError, read};
use crate::chat::ChatId;

/// The chat id under which a bot-wide hold is stored.
const WHOLE_BOT: i64 = 0;

impl Queue {
    /// The jobs that could be taken at `now` (at most one per chat, oldest
    /// first), without taking them.
    pub async fn due(
        &self,
        bot: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        let bot = bot.to_owned();
        self.read(move |conn| read::due(conn, &bot, now, limit))
            .await
    }

    /// [`Queue::due`] and [`Queue::next_due_at`] in one read: what a
    /// sender looks at, for one trip to a reader thread instead of two.
    pub async fn look(
        &self,
        bot: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Job>, Option<Timestamp>), QueueError> {
        let bot = bot.to_owned();
        self.read(move |conn| {
            let due = read::due(conn, &bot, now, limit)?;
            Ok((due, read::next_due_at(conn, &bot, now)?))
        })
        .await
    }

    /// Takes up to `limit` due jobs of `bot`, one per chat, marking them
    /// `sending`.
    pub async fn claim_due(
        &self,
        bot: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        let bot = bot.to_owned();
        let holder = self.holder();
        self.write(move |conn, events| {
            let due = read::due(conn, &bot, now, limit)?;
            take(conn, holder.as_deref(), due, now, events)
        })
        .await
    }

    /// Takes the named jobs (e.g. those of [`Queue::due`] the rate limits
    /// allow). A job that is no longer the due head of its line is skipped;
    /// one past its `expiry` fails instead (in the same commit).
    pub async fn claim(
        &self,
        ids: Vec<JobId>,
        now: Timestamp,
        expiry: Option<Expiry>,
    ) -> Result<Vec<Job>, QueueError> {
        let holder = self.holder();
        self.write(move |conn, events| {
            let mut wanted = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(job) = read::due_head(conn, id, now)? else {
                    continue;
                };
                match expiry {
                    Some(expiry) if expiry.has_expired(job.created_at, now) => {
                        fail_expired(conn, &job, expiry, now, events)?;
                    }
                    _ => wanted.push(job),
                }
            }
            take(conn, holder.as_deref(), wanted, now, events)
        })
        .await
    }

    /// Fails every queued job (waiting for its turn, a retry or the end of
    /// a hold) enqueued longer than `expiry` before `now`; a job in
    /// `sending` is left to its attempt. Returns the number failed and when
    /// the oldest job still queued expires.
    pub async fn expire(
        &self,
        bot: &str,
        expiry: Expiry,
        now: Timestamp,
    ) -> Result<(usize, Option<Timestamp>), QueueError> {
        let bot = bot.to_owned();
        self.write(move |conn, events| {
            let expired = read::queued_since(conn, &bot, expiry.cutoff(now))?;
            for job in &expired {
                fail_expired(conn, job, expiry, now, events)?;
            }
            let next = read::oldest_queued(conn, &bot)?.map(|at| expiry.deadline(at));
            Ok((expired.len(), next))
        })
        .await
    }

    /// Records that part `seq` of a multi-part job was sent, so a resumed job
    /// can skip it.
    pub async fn mark_part_sent(
        &self,
        id: JobId,
        seq: u16,
        channel_message_id: i64,
    ) -> Result<(), QueueError> {
        let holder = self.holder();
        self.write(move |conn, _| {
            expect_sending(conn, holder.as_deref(), id)?;
            conn.prepare_cached(
                "UPDATE parts SET channel_message_id = ?3 WHERE job_id = ?1 AND seq = ?2",
            )?
            .execute(params![id.get(), seq, channel_message_id])?;
            Ok(())
        })
        .await
    }

    /// The job was sent: `ids` are Telegram's ids of its
    /// parts, in order (`None` where Telegram did not say, e.g. after a
    /// `RANDOM_ID_DUPLICATE`). Returns the job as stored.
    pub async fn mark_sent(
        &self,
        id: JobId,
        ids: Vec<Option<i64>>,
        now: Timestamp,
    ) -> Result<Job, QueueError> {
        let holder = self.holder();
        let sent = self
            .write(move |conn, events| settle_sent(conn, holder.as_deref(), id, ids, now, events))
            .await?;
        self.inner.recent.remember(&sent);
        Ok(sent)
    }

    /// [`Queue::mark_sent`], then, in the same commit, takes the next due
    /// job of the same chat if `admit` (asked about it, e.g. the rate
    /// limits) says so. A busy chat so costs one commit per job instead of
    /// two, and its next job needs no look at the whole queue.
    pub async fn mark_sent_then_take<S, F>(
        &self,
        id: JobId,
        ids: Vec<Option<i64>>,
        now: Timestamp,
        admit: F,
    ) -> Result<(Job, Option<(Job, S)>), QueueError>
    where
        S: Send + 'static,
        F: FnOnce(&Job) -> Option<S> + Send + 'static,
    {
        let holder = self.holder();
        let taken = self
            .write(move |conn, events| {
                let sent = settle_sent(conn, holder.as_deref(), id, ids, now, events)?;
                let Some(next) = read::next_due_of_chat(conn, &sent.bot, sent.chat, now)? else {
                    return Ok((sent, None));
                };
                let Some(admitted) = admit(&next) else {
                    return Ok((sent, None));
                };
                let next = take(conn, holder.as_deref(), vec![next], now, events)?.pop();
                Ok((sent, next.map(|job| (job, admitted))))
            })
            .await?;
        self.inner.recent.remember(&taken.0);
        Ok(taken)
    }

    /// The job failed for good with `error`.
    pub async fn mark_failed(
        &self,
        id: JobId,
        error: JobError,
        now: Timestamp,
    ) -> Result<(), QueueError> {
        let holder = self.holder();
        self.write(move |conn, events| {
            let chat = expect_sending(conn, holder.as_deref(), id)?;
            fail(conn, id, chat, &error, now, events)
        })
        .await
    }

    /// The attempt failed with `error` but the job should be tried again,
    /// not before `when`. It stays at the head of its chat's line.
    pub async fn retry_at(
        &self,
        id: JobId,
        when: Timestamp,
        error: Option<JobError>,
        now: Timestamp,
    ) -> Result<(), QueueError> {
        let holder = self.holder();
        self.write(move |conn, events| {
            let chat = expect_sending(conn, holder.as_deref(), id)?;
            conn.prepare_cached("UPDATE jobs SET not_before = ?2 WHERE id = ?1")?
                .execute(params![id.get(), when.as_millis()])?;
            settle(
                conn,
                id,
                chat,
                JobState::Queued,
                error.as_ref(),
                now,
                events,
            )
        })
        .await
    }

    /// Makes `bot`'s jobs that wait out a failed attempt's backoff due at
    /// `now` (the connection they failed on is back); returns how many.
    /// Jobs that never failed keep their `not_before`.
    pub async fn retry_now(&self, bot: &str, now: Timestamp) -> Result<usize, QueueError> {
        let bot = bot.to_owned();
        self.write(move |conn, _| {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET not_before = ?2
                     WHERE bot = ?1 AND state = 'queued' AND attempts > 0
                       AND error_code IS NOT NULL AND not_before > ?2",
                )?
                .execute(params![bot, now.as_millis()])?;
            Ok(changed)
        })
        .await
    }

    /// Puts `bot`'s jobs left `sending` back in line, their `random_id`s
    /// unchanged: what an earlier sender of the bot left when it ended
    /// without its drain (attempts abandoned at the drain timeout, a lease
    /// lost, a dead connection), which would otherwise hold their chats'
    /// lines until the process restarts. A bot's sender calls it as it
    /// starts, when no other sender of the bot runs: one per bot in a
    /// daemon, and on a shared store only the lease holder's (checked in
    /// the statement). Returns how many.
    pub async fn return_sending(&self, bot: &str, now: Timestamp) -> Result<usize, QueueError> {
        let bot = bot.to_owned();
        let holder = self.holder();
        self.write(move |conn, events| return_sending(conn, &bot, holder.as_deref(), now, events))
            .await
    }

    /// Puts a job in `sending` back in line without counting the attempt:
    /// it was stopped by a flood wait or a shutdown, not by its own fault.
    /// Its parts (and `random_id`s) are untouched.
    pub async fn release(&self, id: JobId, now: Timestamp) -> Result<(), QueueError> {
        let holder = self.holder();
        self.write(move |conn, events| {
            let chat = expect_sending(conn, holder.as_deref(), id)?;
            conn.prepare_cached(
                "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0),
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

    /// Nothing of `bot` goes to `chat` before `until` (a per-chat
    /// `FLOOD_WAIT`).
    pub async fn defer_chat(
        &self,
        bot: &str,
        chat: ChatId,
        until: Timestamp,
    ) -> Result<(), QueueError> {
        let bot = bot.to_owned();
        self.write(move |conn, _| hold(conn, &bot, chat.get(), until))
            .await
    }

    /// Nothing of `bot` goes anywhere before `until` (a bot-wide
    /// `FLOOD_WAIT`).
    pub async fn defer_all(&self, bot: &str, until: Timestamp) -> Result<(), QueueError> {
        let bot = bot.to_owned();
        self.write(move |conn, _| hold(conn, &bot, WHOLE_BOT, until))
            .await
    }

    /// When `bot`'s next job may be taken, seen at `now` (for the worker to
    /// sleep until), or `None` when no chat of it has a job waiting that is
    /// free to go.
    pub async fn next_due_at(
        &self,
        bot: &str,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, QueueError> {
        let bot = bot.to_owned();
        self.read(move |conn| read::next_due_at(conn, &bot, now))
            .await
    }

    /// `bot`'s messages sent at `since` or later, oldest first (see
    /// [`read::recent_sends`]): what a restarted sender's meters start from.
    pub async fn recent_sends(
        &self,
        bot: &str,
        since: Timestamp,
    ) -> Result<Vec<(ChatId, Timestamp, u16)>, QueueError> {
        let bot = bot.to_owned();
        self.read(move |conn| read::recent_sends(conn, &bot, since))
            .await
    }

    /// Jobs of `bot` waiting to be sent (`queued` or `sending`).
    pub async fn depth(&self, bot: &str) -> Result<u64, QueueError> {
        let bot = bot.to_owned();
        self.read(move |conn| read::depth(conn, &bot)).await
    }
}

/// Marks job `id` (in `sending`) as sent with Telegram's ids of its parts;
/// its result joins the event stream in the same transaction.
fn settle_sent(
    conn: &Conn,
    holder: Option<&str>,
    id: JobId,
    channel_message_ids: Vec<Option<i64>>,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<Job, QueueError> {
    let chat = expect_sending(conn, holder, id)?;
    let expected: i64 = conn
        .prepare_cached("SELECT count(*) FROM parts WHERE job_id = ?1")?
        .query_row([id.get()], |row| row.get(0))?;
    let expected = usize::try_from(expected).unwrap_or(0);
    if expected != channel_message_ids.len() {
        return Err(QueueError::PartCount {
            id,
            expected,
            given: channel_message_ids.len(),
        });
    }
    // An unknown id keeps the one `mark_part_sent` may have recorded. The
    // statements hand the rows back as they leave them (RETURNING), so the
    // sent job costs no read after its writes.
    let mut part = conn.prepare_cached(
        "UPDATE parts SET channel_message_id = coalesce(?3, channel_message_id)
         WHERE job_id = ?1 AND seq = ?2
         RETURNING seq, random_id, message_id, channel_message_id",
    )?;
    let mut parts = Vec::with_capacity(channel_message_ids.len());
    for (seq, channel_id) in (0_i64..).zip(&channel_message_ids) {
        parts.push(part.query_row(params![id.get(), seq, channel_id], read::part_from_row)?);
    }
    let mut job = read::mark_sent(conn, id, now)?;
    job.parts = parts;
    events.push(JobEvent {
        id,
        chat,
        state: JobState::Sent,
        bot: Some(job.bot.as_str().into()),
    });
    // The result joins the event stream in this same transaction.
    crate::events::record_job_result(conn, &job)?;
    Ok(job)
}

/// Fails job `id` with `error`; its `failed` result joins the event stream
/// in the same transaction.
fn fail(
    conn: &Conn,
    id: JobId,
    chat: ChatId,
    error: &JobError,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<(), QueueError> {
    settle(conn, id, chat, JobState::Failed, Some(error), now, events)?;
    let job = read::job(conn, id)?.ok_or(QueueError::NoSuchJob(id))?;
    crate::events::record_job_result(conn, &job)
}

/// Fails the queued `job`, which has outlived `expiry`.
fn fail_expired(
    conn: &Conn,
    job: &Job,
    expiry: Expiry,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<(), QueueError> {
    let error = expiry.error_of(job);
    tracing::warn!(job = %job.id, chat = %job.chat, error = %error.message, "expired");
    fail(conn, job.id, job.chat, &error, now, events)
}

/// Marks `jobs` as `sending` and returns them as they are then. With a
/// `holder` (a daemon on a shared store), only the jobs of bots whose
/// lease it holds now, by the server's clock: a daemon that lost a lease
/// (and has not yet stopped the bot) takes none of its jobs — the fence
/// behind the holder's own stop.
fn take(
    conn: &Conn,
    holder: Option<&str>,
    mut jobs: Vec<Job>,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<Vec<Job>, QueueError> {
    // SQLite is one daemon's own: nothing to fence.
    if let Some(holder) = holder.filter(|_| conn.dialect() == Dialect::Postgres) {
        let mut bots: Vec<String> = jobs.iter().map(|job| job.bot.clone()).collect();
        bots.sort_unstable();
        bots.dedup();
        for bot in bots {
            if !super::lease::holds(conn, holder, &bot)? {
                tracing::warn!(
                    bot,
                    "not this daemon's bot (its lease is not held): its jobs are left alone"
                );
                jobs.retain(|job| job.bot != bot);
            }
        }
    }
    let mut mark = conn.prepare_cached(
        "UPDATE jobs SET state = 'sending', attempts = attempts + 1, updated_at = ?2
         WHERE id = ?1 AND state = 'queued'",
    )?;
    let mut taken = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        if mark.execute(params![job.id.get(), now.as_millis()])? == 1 {
            job.state = JobState::Sending;
            job.attempts += 1;
            job.updated_at = now;
            events.push(JobEvent {
                id: job.id,
                chat: job.chat,
                state: JobState::Sending,
                bot: Some(job.bot.as_str().into()),
            });
            taken.push(job);
        }
    }
    Ok(taken)
}

/// The chat of job `id`, which must be in `sending`. With a `holder` (a
/// daemon on a shared store), its bot's lease must be held by that holder
/// now, by the server's clock: the outcome of an attempt that reaches the
/// store after the lease lapsed (a daemon cut off from it, healed) is
/// refused and the job left to the bot's new holder, which has put it back
/// in line with its `random_id`s.
fn expect_sending(conn: &Conn, holder: Option<&str>, id: JobId) -> Result<ChatId, QueueError> {
    let holder = holder.filter(|_| conn.dialect() == Dialect::Postgres);
    let found: Option<(ChatId, JobState, String, bool)> = match holder {
        None => conn
            .prepare_cached("SELECT chat, state FROM jobs WHERE id = ?1")?
            .query_row([id.get()], |row| {
                Ok((read::chat(row, 0)?, row.get(1)?, String::new(), true))
            }),
        Some(holder) => conn
            .prepare_cached(concat!(
                "SELECT chat, state, bot, EXISTS (
                     SELECT 1 FROM bot_leases l WHERE l.bot = jobs.bot AND l.holder = ?2
                        AND l.expires_at >= ",
                super::lease::server_now_ms!(),
                ") FROM jobs WHERE id = ?1"
            ))?
            .query_row(params![id.get(), holder], |row| {
                Ok((read::chat(row, 0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            }),
    }
    .optional()?;
    let (chat, state, bot, held) = found.ok_or(QueueError::NoSuchJob(id))?;
    if !held {
        return Err(QueueError::NotHeld { id, bot });
    }
    if state != JobState::Sending {
        return Err(QueueError::NotSending { id, state });
    }
    Ok(chat)
}

pub(super) fn settle(
    conn: &Conn,
    id: JobId,
    chat: ChatId,
    state: JobState,
    error: Option<&JobError>,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<(), QueueError> {
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, error_code = ?3, error_text = ?4, error_name = ?5,
                         updated_at = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        id.get(),
        state.as_str(),
        error.map(|e| e.code.as_u8()),
        error.map(|e| e.message.as_str()),
        error.and_then(|e| e.telegram.as_deref()),
        now.as_millis(),
    ])?;
    events.push(JobEvent {
        id,
        chat,
        state,
        bot: None,
    });
    Ok(())
}

fn hold(conn: &Conn, bot: &str, chat: i64, until: Timestamp) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO holds (bot, chat, not_before) VALUES (?1, ?2, ?3)
         ON CONFLICT (bot, chat) DO UPDATE SET not_before = max(holds.not_before, excluded.not_before)",
    )?
    .execute(params![bot, chat, until.as_millis()])?;
    Ok(())
}

/// Puts `bot`'s jobs left `sending` back in line, their parts (and so their
/// `random_id`s) untouched, and wakes whoever sends for it. With `holder`
/// (a daemon on a shared store), only while it holds the bot's lease, by
/// the server's clock. Returns how many.
pub(super) fn return_sending(
    conn: &Conn,
    bot: &str,
    holder: Option<&str>,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<usize, QueueError> {
    let returned = match holder.filter(|_| conn.dialect() == Dialect::Postgres) {
        None => conn
            .prepare_cached(
                "UPDATE jobs SET state = 'queued', updated_at = ?2
                 WHERE bot = ?1 AND state = 'sending'",
            )?
            .execute(params![bot, now.as_millis()])?,
        Some(holder) => conn
            .prepare_cached(concat!(
                "UPDATE jobs SET state = 'queued', updated_at = ?2
                 WHERE bot = ?1 AND state = 'sending' AND EXISTS (
                     SELECT 1 FROM bot_leases l WHERE l.bot = ?1 AND l.holder = ?3
                        AND l.expires_at >= ",
                super::lease::server_now_ms!(),
                ")"
            ))?
            .execute(params![bot, now.as_millis(), holder])?,
    };
    if returned > 0 {
        tracing::warn!(
            bot,
            jobs = returned,
            "jobs of the bot left in sending are due again"
        );
        events.push(JobEvent::wake(bot));
    }
    Ok(returned)
}

/// Puts jobs a crash left in `sending` back in line (their parts, and so
/// their `random_id`s, are untouched). Returns how many.
pub(super) fn recover_sending(conn: &Conn, now: Timestamp) -> Result<usize, QueueError> {
    Ok(conn.execute(
        "UPDATE jobs SET state = 'queued', updated_at = ?1 WHERE state = 'sending'",
        [now.as_millis()],
    )?)
}
