//! The webhook's dead letters: events given up on after a configured number
//! of attempts or time, so one broken consumer chat does not retry forever.
//!
//! A dead event leaves its chat's line (the chat's later events go on) and
//! is listed in `webhook_dead` with its last error; the event itself stays
//! in the event store until retention prunes it. `POST
//! /api/v1/webhook/replay` takes dead events of a cursor range off the list
//! and hands them to the webhook again.

use std::time::Duration;

use crate::store::Conn;
use rusqlite::params;
use serde::Serialize;

use super::StoredEvent;
use crate::queue::{QueueError, Timestamp};

/// When an event is given up on (`None`: no limit of that kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadLetterPolicy {
    pub max_attempts: Option<u32>,
    pub max_age: Option<Duration>,
}

impl DeadLetterPolicy {
    /// Whether an event that failed `attempts` times, the first `age` ago,
    /// is dead.
    pub fn is_dead(&self, attempts: u32, age: Duration) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max)
            || self.max_age.is_some_and(|max| age >= max)
    }
}

/// One dead event, as `GET /api/v1/webhook/dead` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadEvent {
    pub cursor: i64,
    pub event_id: String,
    pub chat: i64,
    pub attempts: u32,
    pub error: String,
    pub died_at: Timestamp,
}

pub(super) fn create_table(conn: &Conn) -> Result<(), QueueError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS webhook_dead (
             cursor   INTEGER PRIMARY KEY,
             event_id TEXT NOT NULL,
             chat     INTEGER NOT NULL,
             attempts INTEGER NOT NULL,
             error    TEXT NOT NULL,
             died_at  INTEGER NOT NULL
         )",
    )?;
    Ok(())
}

pub(super) fn insert(conn: &Conn, dead: &DeadEvent) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO webhook_dead (cursor, event_id, chat, attempts, error, died_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (cursor) DO UPDATE SET event_id = excluded.event_id,
             chat = excluded.chat, attempts = excluded.attempts, error = excluded.error,
             died_at = excluded.died_at",
    )?
    .execute(params![
        dead.cursor,
        dead.event_id,
        dead.chat,
        dead.attempts,
        dead.error,
        dead.died_at.as_millis()
    ])?;
    Ok(())
}

/// Dead events after `cursor`, at most `limit`, in cursor order (run by
/// the writer: the table may not exist yet).
pub(super) fn list(conn: &Conn, cursor: i64, limit: usize) -> Result<Vec<DeadEvent>, QueueError> {
    create_table(conn)?;
    let mut statement = conn.prepare_cached(
        "SELECT cursor, event_id, chat, attempts, error, died_at FROM webhook_dead
         WHERE cursor > ?1 ORDER BY cursor LIMIT ?2",
    )?;
    let rows = statement.query_map(params![cursor, limit as i64], |row| {
        Ok(DeadEvent {
            cursor: row.get(0)?,
            event_id: row.get(1)?,
            chat: row.get(2)?,
            attempts: row.get(3)?,
            error: row.get(4)?,
            died_at: Timestamp::from_millis(row.get(5)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Takes the dead events with cursors in `from..=to` off the list and
/// returns those still in the event store, to deliver again.
pub(super) fn take(conn: &Conn, from: i64, to: i64) -> Result<Vec<StoredEvent>, QueueError> {
    create_table(conn)?;
    let mut statement = conn.prepare_cached(
        "SELECT e.cursor, e.event_id, e.chat, e.body, e.bot FROM webhook_dead d
         JOIN events e ON e.cursor = d.cursor
         WHERE d.cursor BETWEEN ?1 AND ?2 ORDER BY d.cursor",
    )?;
    let events = statement
        .query_map(params![from, to], |row| {
            Ok(StoredEvent {
                cursor: row.get(0)?,
                id: row.get(1)?,
                chat: row.get(2)?,
                body: row.get(3)?,
                bot: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    conn.prepare_cached("DELETE FROM webhook_dead WHERE cursor BETWEEN ?1 AND ?2")?
        .execute(params![from, to])?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_dies_at_either_limit() {
        let policy = DeadLetterPolicy {
            max_attempts: Some(3),
            max_age: Some(Duration::from_secs(60)),
        };
        assert!(!policy.is_dead(2, Duration::from_secs(59)));
        assert!(policy.is_dead(3, Duration::ZERO));
        assert!(policy.is_dead(1, Duration::from_secs(60)));
        assert!(!DeadLetterPolicy::default().is_dead(u32::MAX, Duration::MAX));
    }
}
