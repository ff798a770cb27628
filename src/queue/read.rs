//! Reading jobs back out of the store.

use crate::store::{Conn, OptionalExtension, Row};
use rusqlite::params;
use rusqlite::types::Type;

use super::QueueError;
use super::job::{Job, JobError, JobId, JobKind, JobState, Part, Timestamp};
use crate::chat::ChatId;
use crate::error::ErrorCode;

/// Which jobs a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this bot's jobs (`None`: every bot's).
    pub bot: Option<String>,
    pub state: Option<JobState>,
    /// Only jobs with a larger id (for paging).
    pub after: Option<JobId>,
    /// At most this many (capped at [`JobFilter::MAX_LIMIT`]).
    pub limit: Option<usize>,
}

impl JobFilter {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    fn limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }
}

/// The columns [`job_from_row`] reads, as a literal for `concat!` (so
/// every statement is a `&'static str`, prepared once per connection).
macro_rules! job_columns {
    () => {
        "id, request_id, bot, chat, kind, payload, state, attempts, not_before, \
         error_code, error_text, error_name, idempotency_key, created_at, updated_at, wire"
    };
    (j) => {
        "j.id, j.request_id, j.bot, j.chat, j.kind, j.payload, j.state, j.attempts, \
         j.not_before, j.error_code, j.error_text, j.error_name, j.idempotency_key, \
         j.created_at, j.updated_at, j.wire"
    };
}

fn bad_column(index: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, message.into())
}

/// The chat id in column `index`.
pub(super) fn chat(row: &Row<'_>, index: usize) -> rusqlite::Result<ChatId> {
    ChatId::new(row.get(index)?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Integer, e.into()))
}

/// A `jobs` row (columns as [`JOB_COLUMNS`]), without its parts yet.
fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let kind: String = row.get(4)?;
    let error_code: Option<u8> = row.get(9)?;
    let error = match error_code {
        Some(code) => Some(JobError {
            code: ErrorCode::from_u8(code)
                .ok_or_else(|| bad_column(9, format!("unknown error code {code}")))?,
            message: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
            telegram: row.get(11)?,
        }),
        None => None,
    };
    Ok(Job {
        id: JobId::new(row.get(0)?),
        request_id: row.get(1)?,
        bot: row.get(2)?,
        chat: chat(row, 3)?,
        kind: JobKind::parse(&kind).ok_or_else(|| bad_column(4, format!("job kind `{kind}`")))?,
        payload: row.get(5)?,
        state: row.get(6)?,
        attempts: row.get(7)?,
        not_before: Timestamp::from_millis(row.get(8)?),
        parts: Vec::new(),
        error,
        idempotency_key: row.get(12)?,
        created_at: Timestamp::from_millis(row.get(13)?),
        updated_at: Timestamp::from_millis(row.get(14)?),
        wire: row.get(15)?,
    })
}

/// A `parts` row: `seq, random_id, message_id, channel_message_id`.
pub(super) fn part_from_row(row: &Row<'_>) -> rusqlite::Result<Part> {
    Ok(Part {
        seq: row.get(0)?,
        random_id: row.get(1)?,
        message_id: row.get(2)?,
        channel_message_id: row.get(3)?,
    })
}

fn with_parts(conn: &Conn, mut job: Job) -> Result<Job, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, random_id, message_id, channel_message_id FROM parts
         WHERE job_id = ?1 ORDER BY seq",
    )?;
    job.parts = stmt
        .query_map([job.id.get()], part_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(job)
}

/// Marks job `id` sent at `now` (its error cleared) and returns it as
/// stored then, without its parts.
pub(super) fn mark_sent(conn: &Conn, id: JobId, now: Timestamp) -> Result<Job, QueueError> {
    const SQL: &str = concat!(
        "UPDATE jobs SET state = 'sent', error_code = NULL, error_text = NULL,
                         error_name = NULL, updated_at = ?2
         WHERE id = ?1 RETURNING ",
        job_columns!()
    );
    let job = conn
        .prepare_cached(SQL)?
        .query_row(params![id.get(), now.as_millis()], job_from_row)
        .optional()?;
    job.ok_or(QueueError::NoSuchJob(id))
}

/// One job with its parts, if it exists.
pub fn job(conn: &Conn, id: JobId) -> Result<Option<Job>, QueueError> {
    const SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");
    let job = conn
        .prepare_cached(SQL)?
        .query_row([id.get()], job_from_row)
        .optional()?;
    job.map(|job| with_parts(conn, job)).transpose()
}

/// Jobs in id order, as `filter` says.
pub fn jobs(conn: &Conn, filter: &JobFilter) -> Result<Vec<Job>, QueueError> {
    const SQL: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1) AND id > ?2 AND (CAST(?4 AS TEXT) IS NULL OR bot = ?4)
          ORDER BY id LIMIT ?3"
    );
    let state = filter.state.map(JobState::as_str);
    let after = filter.after.map_or(0, JobId::get);
    let limit = i64::try_from(filter.limit()).unwrap_or(i64::MAX);
    let found: Vec<Job> = conn
        .prepare_cached(SQL)?
        .query_map(params![state, after, limit, filter.bot], job_from_row)?
        .collect::<Result<_, _>>()?;
    found.into_iter().map(|job| with_parts(conn, job)).collect()
}

/// `heads(id)`: the oldest active (`queued` or `sending`) job of every chat
/// of bot `?1`. A skip-scan over the partial index `jobs_active` (bot, chat,
/// id): one seek per chat, so the cost grows with the bot's chats, not with
/// waiting jobs or other bots.
macro_rules! line_heads {
    () => {
        concat!(
            "
    WITH RECURSIVE lines(chat) AS (
        SELECT min(chat) FROM jobs INDEXED BY jobs_active
        WHERE bot = ?1 AND state IN ('queued', 'sending')
        UNION ALL
        SELECT (SELECT min(chat) FROM jobs INDEXED BY jobs_active
                WHERE bot = ?1 AND state IN ('queued', 'sending') AND chat > lines.chat)
        FROM lines WHERE lines.chat IS NOT NULL
    ), heads(id) AS (
        SELECT (",
            line_head!("?1", "lines.chat"),
            ")
        FROM lines WHERE lines.chat IS NOT NULL
    )"
        )
    };
}

/// A job held by its `send_at` at `?2`: queued, never tried, due later than
/// it was enqueued and not yet. It is no part of its chat's line until then
/// (the chat's later jobs go ahead of it); a retry's or a flood wait's
/// hold, by contrast, keeps the line waiting. The partial index
/// `jobs_scheduled` holds exactly the jobs the first three terms select.
macro_rules! held_by_send_at {
    () => {
        "(state = 'queued' AND attempts = 0 AND not_before > created_at AND not_before > ?2)"
    };
}

/// The head of chat `$chat`'s line of bot `$bot`: its oldest active job
/// that no `send_at` holds (at `?2`). Walks the chat's active jobs in id
/// order and stops at the first.
macro_rules! line_head {
    ($bot:literal, $chat:literal) => {
        concat!(
            "SELECT id FROM jobs INDEXED BY jobs_active
             WHERE bot = ",
            $bot,
            " AND state IN ('queued', 'sending') AND chat = ",
            $chat,
            " AND NOT ",
            held_by_send_at!(),
            " ORDER BY id LIMIT 1"
        )
    };
}

/// The first queued job of every chat whose line is free (nothing of that
/// chat in `sending`) and that may go out at `now`, oldest first. (`CROSS
/// JOIN` keeps the heads the outer loop: left to itself, SQLite walks every
/// queued job in id order to spare the sort, and runs the heads for each.)
pub fn due(conn: &Conn, bot: &str, now: Timestamp, limit: usize) -> Result<Vec<Job>, QueueError> {
    const SQL: &str = concat!(
        line_heads!(),
        " SELECT ",
        job_columns!(j),
        " FROM heads CROSS JOIN jobs AS j ON j.id = heads.id
         LEFT JOIN holds AS c ON c.bot = j.bot AND c.chat = j.chat
         WHERE j.state = 'queued' AND j.not_before <= ?2
           AND coalesce(c.not_before, 0) <= ?2
           AND coalesce((SELECT not_before FROM holds WHERE bot = j.bot AND chat = 0), 0) <= ?2
         ORDER BY j.id LIMIT ?3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let found: Vec<Job> = conn
        .prepare_cached(SQL)?
        .query_map(params![bot, now.as_millis(), limit], job_from_row)?
        .collect::<Result<_, _>>()?;
    found.into_iter().map(|job| with_parts(conn, job)).collect()
}

/// A due line head: `j` is queued, may go at `?2`, no hold stops it, and
/// it is the oldest active job of its chat that no `send_at` holds. Completed by what picks `j`.
macro_rules! due_head_where {
    () => {
        concat!(
            " FROM jobs AS j
         LEFT JOIN holds AS c ON c.bot = j.bot AND c.chat = j.chat
         WHERE j.state = 'queued' AND j.not_before <= ?2
           AND coalesce(c.not_before, 0) <= ?2
           AND coalesce((SELECT not_before FROM holds WHERE bot = j.bot AND chat = 0), 0) <= ?2
           AND j.id = (",
            line_head!("j.bot", "j.chat"),
            ")"
        )
    };
}

/// [`due_head`]'s statement.
pub(super) const DUE_HEAD_SQL: &str = concat!(
    "SELECT ",
    job_columns!(j),
    due_head_where!(),
    " AND j.id = ?1"
);

/// Job `id` if it is the due head of its chat's line at `now`: queued, the
/// oldest active job of its chat, its own and any hold over. A few index
/// seeks, however many chats wait.
pub fn due_head(conn: &Conn, id: JobId, now: Timestamp) -> Result<Option<Job>, QueueError> {
    let job = conn
        .prepare_cached(DUE_HEAD_SQL)?
        .query_row(params![id.get(), now.as_millis()], job_from_row)
        .optional()?;
    job.map(|job| with_parts(conn, job)).transpose()
}

/// Queued jobs enqueued at or before `cutoff` (without their parts: an
/// expired job is failed, not sent), oldest first.
pub fn queued_since(conn: &Conn, bot: &str, cutoff: Timestamp) -> Result<Vec<Job>, QueueError> {
    const SQL: &str = concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs INDEXED BY jobs_by_state
         WHERE state = 'queued' AND created_at <= ?1 AND bot = ?2 ORDER BY id"
    );
    let found = conn
        .prepare_cached(SQL)?
        .query_map(params![cutoff.as_millis(), bot], job_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(found)
}

/// When `bot`'s oldest queued job was enqueued.
pub fn oldest_queued(conn: &Conn, bot: &str) -> Result<Option<Timestamp>, QueueError> {
    let at: Option<i64> = conn
        .prepare_cached(
            "SELECT min(created_at) FROM jobs INDEXED BY jobs_by_state
             WHERE state = 'queued' AND bot = ?1",
        )?
        .query_row([bot], |row| row.get(0))?;
    Ok(at.map(Timestamp::from_millis))
}

/// How many jobs of `bot` are `queued` or `sending`.
pub fn depth(conn: &Conn, bot: &str) -> Result<u64, QueueError> {
    let count: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM jobs INDEXED BY jobs_active
             WHERE bot = ?1 AND state IN ('queued', 'sending')",
        )?
        .query_row([bot], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The head of `chat`'s line if it is due at `now` (see [`due_head`]), in
/// one statement.
pub fn next_due_of_chat(
    conn: &Conn,
    bot: &str,
    chat: ChatId,
    now: Timestamp,
) -> Result<Option<Job>, QueueError> {
    const SQL: &str = concat!(
        "SELECT ",
        job_columns!(j),
        due_head_where!(),
        " AND j.id = (",
        line_head!("?3", "?1"),
        ")"
    );
    let job = conn
        .prepare_cached(SQL)?
        .query_row(params![chat.get(), now.as_millis(), bot], job_from_row)
        .optional()?;
    job.map(|job| with_parts(conn, job)).transpose()
}

/// When the next job may go out, seen at `now`, counting holds: the
/// earliest of the line heads (as a hold lets them) and of the jobs held by
/// their `send_at`; `None` when nothing waits (or every waiting chat has a
/// job in `sending`). SQLite's two-argument `max` is NULL when the
/// aggregate found no row, and `min` over the two ignores a NULL.
pub fn next_due_at(
    conn: &Conn,
    bot: &str,
    now: Timestamp,
) -> Result<Option<Timestamp>, QueueError> {
    const SQL: &str = concat!(
        line_heads!(),
        ", bot_hold(until) AS (
             SELECT coalesce((SELECT not_before FROM holds WHERE bot = ?1 AND chat = 0), 0)
         ), due(at) AS (
             SELECT max(min(max(j.not_before, coalesce(c.not_before, 0))),
                        (SELECT until FROM bot_hold))
             FROM heads JOIN jobs AS j ON j.id = heads.id
             LEFT JOIN holds AS c ON c.bot = j.bot AND c.chat = j.chat
             WHERE j.state = 'queued'
             UNION ALL
             SELECT max(min(not_before), (SELECT until FROM bot_hold))
             FROM jobs INDEXED BY jobs_scheduled
             WHERE bot = ?1 AND state = 'queued' AND attempts = 0 AND not_before > created_at
               AND not_before > ?2
         )
         SELECT min(at) FROM due"
    );
    let at: Option<i64> = conn
        .prepare_cached(SQL)?
        .query_row(params![bot, now.as_millis()], |row| row.get(0))?;
    Ok(at.map(Timestamp::from_millis))
}

/// The newest sent jobs looked at for [`recent_sends`]: more than a
/// minute's worth at Telegram's 30 messages a second.
const RECENT_SENDS_LOOKED_AT: i64 = 4096;

/// `bot`'s messages sent at `since` or later, oldest first: each job's
/// chat, when its sending was recorded, and how many messages it sent. Only
/// the newest sent jobs (by id) are looked at (an old job sent late after
/// a long retry may be missed).
pub fn recent_sends(
    conn: &Conn,
    bot: &str,
    since: Timestamp,
) -> Result<Vec<(ChatId, Timestamp, u16)>, QueueError> {
    let mut statement = conn.prepare_cached(
        "SELECT j.chat, j.updated_at, (SELECT count(*) FROM parts WHERE job_id = j.id)
         FROM (SELECT id FROM jobs INDEXED BY jobs_by_state
               WHERE state = 'sent' ORDER BY id DESC LIMIT ?3) AS newest
         JOIN jobs AS j ON j.id = newest.id
         WHERE j.bot = ?1 AND j.updated_at >= ?2
         ORDER BY j.updated_at, j.id",
    )?;
    let rows = statement.query_map(
        rusqlite::params![bot, since.as_millis(), RECENT_SENDS_LOOKED_AT],
        |row| {
            let parts: i64 = row.get(2)?;
            Ok((
                chat(row, 0)?,
                Timestamp::from_millis(row.get(1)?),
                u16::try_from(parts).unwrap_or(u16::MAX).max(1),
            ))
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A message telegate sent, found by Telegram's id for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub job_id: JobId,
    /// telegate's id of the message.
    pub message_id: i64,
    pub kind: JobKind,
    /// The job's normalized payload (where a button's stored `answer` is).
    pub payload: String,
}

/// The part of a job in `chat` that Telegram knows as `channel_message_id`.
pub(super) fn sent_message(
    conn: &Conn,
    bot: &str,
    chat: ChatId,
    channel_message_id: i64,
) -> Result<Option<SentMessage>, QueueError> {
    let found = conn
        .prepare_cached(
            "SELECT j.id, p.message_id, j.kind, j.payload
             FROM parts p JOIN jobs j ON j.id = p.job_id
             WHERE p.channel_message_id = ?1 AND j.chat = ?2 AND j.bot = ?3
             ORDER BY p.message_id DESC LIMIT 1",
        )?
        .query_row(params![channel_message_id, chat.get(), bot], |row| {
            let kind: String = row.get(2)?;
            Ok(SentMessage {
                job_id: JobId::new(row.get(0)?),
                message_id: row.get(1)?,
                kind: JobKind::parse(&kind)
                    .ok_or_else(|| bad_column(2, format!("job kind `{kind}`")))?,
                payload: row.get(3)?,
            })
        })
        .optional()?;
    Ok(found)
}

/// Telegram's ids of telegate's messages `message_ids` that were sent to
/// `chat` (others are left out).
pub(super) fn channel_message_ids(
    conn: &Conn,
    chat: ChatId,
    message_ids: &[i64],
) -> Result<std::collections::HashMap<i64, i64>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.channel_message_id FROM parts p JOIN jobs j ON j.id = p.job_id
         WHERE p.message_id = ?1 AND j.chat = ?2 AND p.channel_message_id IS NOT NULL",
    )?;
    let mut found = std::collections::HashMap::new();
    for &message_id in message_ids {
        if let Some(channel_id) = stmt
            .query_row(params![message_id, chat.get()], |row| row.get::<_, i64>(0))
            .optional()?
        {
            found.insert(message_id, channel_id);
        }
    }
    Ok(found)
}

/// The job telegate's message `message_id` belongs to: its id, bot, chat
/// and kind.
pub(super) fn message(conn: &Conn, message_id: i64) -> Result<Option<MessageOwner>, QueueError> {
    let found = conn
        .prepare_cached(
            "SELECT j.id, j.bot, j.chat, j.kind FROM parts p JOIN jobs j ON j.id = p.job_id
             WHERE p.message_id = ?1",
        )?
        .query_row([message_id], |row| {
            let kind: String = row.get(3)?;
            Ok(MessageOwner {
                job_id: JobId::new(row.get(0)?),
                bot: row.get(1)?,
                chat: chat(row, 2)?,
                kind: JobKind::parse(&kind)
                    .ok_or_else(|| bad_column(3, format!("job kind `{kind}`")))?,
            })
        })
        .optional()?;
    Ok(found)
}

/// The job a telegate message belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOwner {
    pub job_id: JobId,
    /// The bot that sent (or will send) it.
    pub bot: String,
    pub chat: ChatId,
    pub kind: JobKind,
}
