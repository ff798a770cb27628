//! What the queue stores: jobs, their parts (one Telegram message each) and
//! the states a job moves through.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use serde::{Serialize, Serializer};

use crate::chat::ChatId;
use crate::error::{ApiError, ErrorCode};

/// The store's id of a job, as clients see it in `job_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(i64);

impl JobId {
    pub fn new(id: i64) -> Self {
        JobId(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Where a job is in its life: `queued → sending → sent | failed`, and back
/// to `queued` for a retry or after a crash; `queued → cancelled` when a
/// client cancels it before any part went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Sending,
        JobState::Sent,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Sending => "sending",
            JobState::Sent => "sent",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job is done for good (Telegram has no delivery receipts,
    /// so `sent` is as far as it goes).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Sent | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a job state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state `{0}` (expected queued, sending, sent, failed or cancelled)")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

impl FromSql for JobState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: UnknownState| FromSqlError::Other(e.into()))
    }
}

/// What a job's payload is; the queue itself never looks inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A normalized `InteractiveRequest`.
    Interactive,
    /// Text and media (`POST /api/v1/telegram/messages`).
    Messages,
    /// An edit of a sent message (`crate::operations::EditRequest`).
    Edit,
    /// A delete of a sent message (`crate::operations::DeleteRequest`).
    Delete,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Interactive => "interactive",
            JobKind::Messages => "messages",
            JobKind::Edit => "edit",
            JobKind::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            JobKind::Interactive,
            JobKind::Messages,
            JobKind::Edit,
            JobKind::Delete,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == s)
    }
}

/// A point in time, in milliseconds since the Unix epoch. Shown as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, by: Duration) -> Self {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(by))
    }
}

impl fmt::Display for Timestamp {
    /// `2026-11-21T12:00:00.000Z`, from the civil-from-days algorithm.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            day_secs / 3600,
            day_secs / 60 % 60,
            day_secs % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A job to store, before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The API request that created it.
    pub request_id: String,
    /// Which bot sends it (`"default"` while there is one).
    pub bot: String,
    pub chat: ChatId,
    pub kind: JobKind,
    /// The normalized payload JSON.
    pub payload: String,
    /// How many Telegram messages the job becomes; each gets its own
    /// `random_id`. At least 1.
    pub parts: u16,
    /// A repeat with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// The requests it sends, in `outgoing`'s stored form (see [`Job::wire`]).
    pub wire: Option<Vec<u8>>,
    /// Held until then (`send_at`); `None`: due at once.
    pub not_before: Option<Timestamp>,
    /// telegate's id of a message this job needs sent before it (the
    /// message it edits, deletes or replies to): while a `send_at` holds
    /// that message's job, this job is held as long.
    pub follows: Option<i64>,
}

impl NewJob {
    /// A one-message job for the default bot.
    pub fn new(
        request_id: impl Into<String>,
        chat: ChatId,
        kind: JobKind,
        payload: String,
    ) -> Self {
        NewJob {
            request_id: request_id.into(),
            bot: DEFAULT_BOT.to_owned(),
            chat,
            kind,
            payload,
            parts: 1,
            idempotency_key: None,
            wire: None,
            not_before: None,
            follows: None,
        }
    }
}

/// The bot label of jobs while telegate drives one bot.
pub const DEFAULT_BOT: &str = "default";

/// The answer to an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    pub state: JobState,
    /// True when the idempotency key named an earlier job, which this is.
    pub duplicate: bool,
}

/// One Telegram message of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// Position in the job, from 0.
    pub seq: u16,
    /// Chosen once at enqueue; every attempt sends with it, so Telegram
    /// drops a repeat. Shown as a string (it does not fit a JSON double).
    #[serde(serialize_with = "as_string")]
    pub random_id: i64,
    /// telegate's id of this message (allocated by the store).
    pub message_id: i64,
    /// Telegram's id of the message, once sent.
    #[serde(serialize_with = "optional_as_string")]
    pub channel_message_id: Option<i64>,
}

fn as_string<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn optional_as_string<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.collect_str(value),
        None => s.serialize_none(),
    }
}

/// Why a job failed (or, while it waits for a retry, why the last attempt
/// did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
    /// Telegram's error name, e.g. `USER_IS_BLOCKED`.
    pub telegram: Option<String>,
}

impl JobError {
    /// Telegram refused the message: code 5 with Telegram's name.
    pub fn telegram(name: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            code: ErrorCode::Rejected,
            message: message.into(),
            telegram: Some(name.into()),
        }
    }

    /// The error as clients see it.
    pub fn to_api_error(&self) -> ApiError {
        ApiError {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl Serialize for JobError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("JobError", 3)?;
        s.serialize_field("error_code", &self.code.as_u8())?;
        s.serialize_field("error", &self.message)?;
        s.serialize_field("telegram_error", &self.telegram)?;
        s.end()
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub request_id: String,
    pub bot: String,
    pub chat: ChatId,
    pub kind: JobKind,
    pub payload: String,
    pub state: JobState,
    /// How many times a send was started.
    pub attempts: u32,
    /// Not to be sent before this time.
    pub not_before: Timestamp,
    /// In order of `seq`; always at least one.
    pub parts: Vec<Part>,
    /// The failure, or the last attempt's error while a retry waits.
    pub error: Option<JobError>,
    pub idempotency_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The requests the job sends, built and checked at enqueue, in the
    /// versioned form of `outgoing` (`None`: a job stored before there was
    /// one, sent from its payload).
    pub wire: Option<Vec<u8>>,
}

/// A job's state changed (after the change is durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub id: JobId,
    pub chat: ChatId,
    pub state: JobState,
    /// The job's bot, where the change names it (an enqueue, a claim);
    /// `None`: any bot's (look at the job).
    pub bot: Option<std::sync::Arc<str>>,
}

impl JobEvent {
    /// "`bot` may have work": a change this process did not make (another
    /// daemon's enqueue, a lease taken over). It names no job (id 0).
    pub fn wake(bot: &str) -> JobEvent {
        JobEvent {
            id: JobId::new(0),
            chat: ChatId::new(1).expect("1 is a chat id"),
            state: JobState::Queued,
            bot: Some(bot.into()),
        }
    }

    /// Whether this is a [`JobEvent::wake`] rather than a job's change.
    pub fn is_wake(&self) -> bool {
        self.id.get() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(951_782_400_123).to_string(),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_795_255_199_999).to_string(),
            "2026-11-21T09:59:59.999Z"
        );
    }

    #[test]
    fn states_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        let err = "done".parse::<JobState>().unwrap_err();
        assert!(err.to_string().contains("`done`"));
    }
}
