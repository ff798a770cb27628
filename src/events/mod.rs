//! Events: what users did and what became of jobs, as one durable stream.
//!
//! Events live in the job store's database and are written by its one
//! group-commit writer, so a job's `sent`/`failed` event commits in the same
//! transaction as the job's state, and inbound events share fsyncs with
//! everything else. Each event has an id derived from what happened; storing
//! an id twice keeps the first, so a replay after a crash repeats nothing.
//! Consumers read by cursor ([`EventStore::after`]) and wait for new ones
//! without polling ([`EventStore::wait_after`]).

pub mod bird;
pub mod dead_letter;
mod store;
mod tls;
pub mod webhook;

pub use store::{EventStore, MAX_BATCH, StoredEvent};

use crate::store::Conn;

use crate::queue::{Job, QueueError, Timestamp};

/// An event before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Derived from what happened, e.g. `telegram:BOT:CHAT:MESSAGE`.
    pub id: String,
    /// The Bot API chat it concerns (webhook deliveries keep each chat's
    /// order).
    pub chat: i64,
    pub body: serde_json::Value,
}

/// Stores `job`'s result inside the transaction that settles it. Called by
/// the queue when a job becomes `sent` or `failed`.
pub(crate) fn record_job_result(conn: &Conn, job: &Job) -> Result<(), QueueError> {
    if let Some(result) = bird::job_result(job) {
        store::insert_job_result(conn, &job.bot, &result, Timestamp::now())?;
    }
    Ok(())
}
