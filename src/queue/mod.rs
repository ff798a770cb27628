//! The durable job queue: every job a client was told about is on disk.
//!
//! Jobs live in SQLite (WAL, `synchronous=FULL`). Writes go through one
//! writer thread that commits concurrent work together (group commit, see
//! `writer.rs`); reads use their own connections. The API enqueues; the
//! worker drains through the consumer interface ([`Queue::claim_due`] and the
//! `mark_*` methods, see `consumer.rs`), which keeps each chat's jobs in order
//! and lets different chats proceed in parallel. Every durable state change
//! is announced (`announce.rs`: to every listener, and to the listeners of
//! the job's bot), so waiters and each bot's sender wake without polling.

mod announce;
pub(crate) mod blocked;
mod cancel;
mod consumer;
mod expiry;
pub mod job;
mod lease;
mod listen;
mod persist;
mod read;
mod recent;
mod retry;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use tokio::sync::broadcast;

use crate::chat::ChatId;

pub use expiry::Expiry;
pub use job::{
    DEFAULT_BOT, Enqueued, Job, JobError, JobEvent, JobId, JobKind, JobState, NewJob, Part,
    Timestamp,
};
pub(crate) use lease::still_held;
pub use lease::{Lease, LeaseTick};
pub use persist::{StorageRefusal, is_storage, is_storage_sqlite, until_stored};
pub use read::{JobFilter, MessageOwner, SentMessage};
pub use schema::VERSION as SCHEMA_VERSION;
#[cfg(test)]
pub(crate) use schema::migrate_to;

use crate::store::sqlite::{Readers, open_writer};
use crate::store::{Conn, Location, OptionalExtension, StoreError, off_runtime};
use recent::RecentSent;
use writer::Writer;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job store is closed")]
    Closed,
    #[error("job store: {0}")]
    Store(#[from] StoreError),
    #[error("job store commit failed: {0}")]
    Commit(String),
    #[error("the job store has schema version {found}; this telegate knows up to {known}")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("job {0} does not exist")]
    NoSuchJob(JobId),
    #[error("job {id} is {state}, not sending")]
    NotSending { id: JobId, state: JobState },
    #[error("job {id} is of bot {bot}, whose lease this daemon no longer holds")]
    NotHeld { id: JobId, bot: String },
    #[error("job {id} is {state}; only a failed job can be retried")]
    NotFailed { id: JobId, state: JobState },
    #[error("job {id} has {expected} part(s), {given} given")]
    PartCount {
        id: JobId,
        expected: usize,
        given: usize,
    },
    #[error("a job needs at least one part")]
    NoParts,
    #[error(
        "job {id} is {state}{}: only a queued job with nothing sent yet can be cancelled",
        if *sent_parts > 0 { format!(" with {sent_parts} part(s) sent") } else { String::new() }
    )]
    NotCancellable {
        id: JobId,
        state: JobState,
        sent_parts: i64,
    },
}

impl QueueError {
    /// Whether the store itself is unable to take work (as opposed to a
    /// request that does not fit the job it names).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            QueueError::Closed
                | QueueError::Store(_)
                | QueueError::Commit(_)
                | QueueError::SchemaTooNew { .. }
        )
    }
}

impl From<rusqlite::Error> for QueueError {
    fn from(error: rusqlite::Error) -> Self {
        QueueError::Store(StoreError::Sqlite(error))
    }
}

/// A handle to the store; clones share it.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    writer: Writer,
    /// Other daemons' wake-ups (a shared PostgreSQL store only).
    _listener: Option<listen::Listener>,
    /// The lease holder claims are fenced by (see [`Queue::fence`]).
    holder: std::sync::OnceLock<String>,
    readers: Readers,
    events: Arc<announce::Announcer>,
    /// Messages just sent, for clicks on them.
    recent: RecentSent,
    /// Bumped when a chat is blocked or unblocked.
    blocked: tokio::sync::watch::Sender<u64>,
}

impl Queue {
    /// Opens (or creates, mode 0600) the store at `path`, brings its schema
    /// up to date and puts jobs a crash left in `sending` back in line, with
    /// their `random_id`s unchanged.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        Self::open_at(&Location::Sqlite(path.to_owned()))
    }

    /// [`Queue::open`] for a store anywhere: a SQLite file or a PostgreSQL
    /// database (whose schema it creates or brings up to date).
    pub fn open_at(location: &Location) -> Result<Self, QueueError> {
        let (conn, recovered) = off_runtime(|| {
            let mut conn = open_writer(location)?;
            schema::migrate(&mut conn)?;
            // A shared store's `sending` jobs may be another daemon's, in
            // flight: each bot's come back when its lease is taken over.
            let recovered = match location {
                Location::Sqlite(_) => consumer::recover_sending(&conn, Timestamp::now())?,
                Location::Postgres(_) => 0,
            };
            Ok::<_, QueueError>((conn, recovered))
        })?;
        if recovered > 0 {
            tracing::warn!(jobs = recovered, "jobs left in sending are due again");
        }
        let events = Arc::new(announce::Announcer::new());
        let writer =
            Writer::spawn(conn, Arc::clone(&events)).map_err(|source| StoreError::Open {
                store: location.to_string(),
                source,
            })?;
        let listener = match location {
            Location::Sqlite(_) => None,
            Location::Postgres(url) => Some(
                listen::Listener::spawn((**url).clone(), Arc::clone(&events)).map_err(
                    |source| StoreError::Open {
                        store: location.to_string(),
                        source,
                    },
                )?,
            ),
        };
        Ok(Queue {
            inner: Arc::new(Inner {
                location: location.clone(),
                writer,
                _listener: listener,
                holder: std::sync::OnceLock::new(),
                readers: Readers::new(location),
                events,
                recent: RecentSent::default(),
                blocked: tokio::sync::watch::channel(0).0,
            }),
        })
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// Stores `job`, durably, and returns its id. With an idempotency key
    /// already used, returns the job stored first instead.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        if job.parts == 0 {
            return Err(QueueError::NoParts);
        }
        let now = Timestamp::now();
        self.inner
            .writer
            .write(move |conn, events| insert_job(conn, &job, now, events))
            .await
    }

    /// Stores every job of `jobs` in one commit: all of them durable, or
    /// none (a request naming several recipients is acknowledged whole).
    pub async fn enqueue_all(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, QueueError> {
        if jobs.iter().any(|job| job.parts == 0) {
            return Err(QueueError::NoParts);
        }
        let now = Timestamp::now();
        self.inner
            .writer
            .write(move |conn, events| {
                jobs.iter()
                    .map(|job| insert_job(conn, job, now, events))
                    .collect()
            })
            .await
    }

    /// One job, if it exists.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        self.read(move |conn| read::job(conn, id)).await
    }

    /// Jobs in id order.
    pub async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, QueueError> {
        self.read(move |conn| read::jobs(conn, &filter)).await
    }

    /// The message `bot` sent that Telegram knows as `channel_message_id` in
    /// `chat`, and the job it belongs to.
    pub async fn sent_message(
        &self,
        bot: &str,
        chat: ChatId,
        channel_message_id: i64,
    ) -> Result<Option<SentMessage>, QueueError> {
        if let Some(sent) = self.inner.recent.get(bot, chat, channel_message_id) {
            return Ok(Some(sent));
        }
        let bot = bot.to_owned();
        self.read(move |conn| read::sent_message(conn, &bot, chat, channel_message_id))
            .await
    }

    /// The job, bot, chat and kind of telegate's message `message_id`.
    pub async fn message(&self, message_id: i64) -> Result<Option<read::MessageOwner>, QueueError> {
        self.read(move |conn| read::message(conn, message_id)).await
    }

    /// Telegram's ids of telegate's messages `message_ids` sent to `chat`.
    pub async fn channel_message_ids(
        &self,
        chat: ChatId,
        message_ids: Vec<i64>,
    ) -> Result<std::collections::HashMap<i64, i64>, QueueError> {
        if message_ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        self.read(move |conn| read::channel_message_ids(conn, chat, &message_ids))
            .await
    }

    /// Waits up to `timeout` for job `id` to be `sent` or `failed`, and
    /// returns it as it is then (`None`: no such job).
    pub async fn settled(&self, id: JobId, timeout: Duration) -> Result<Option<Job>, QueueError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = self.subscribe();
        loop {
            let Some(job) = self.job(id).await? else {
                return Ok(None);
            };
            if job.state.is_final() {
                return Ok(Some(job));
            }
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Err(_elapsed) => return self.job(id).await,
                    Ok(Ok(event)) if event.id == id && event.state.is_final() => break,
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(Some(job)),
                }
            }
        }
    }

    /// Notifications of every durable state change (`queued` on enqueue).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// The changes of `bot`'s jobs (and those that name no bot): what its
    /// sender waits on, so that another bot's traffic does not wake it.
    pub fn subscribe_bot(&self, bot: &str) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe_bot(bot)
    }

    /// Whether the store takes work: the writer runs and a read succeeds.
    pub async fn check(&self) -> Result<(), QueueError> {
        if !self.inner.writer.is_open() {
            return Err(QueueError::Closed);
        }
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM jobs WHERE 1 = 0", params![], |_| {
                Ok(())
            })?;
            Ok(())
        })
        .await
    }

    /// Whether the store takes writes as well as reads: [`Queue::check`],
    /// then an (empty) transaction through the writer. While the store
    /// refuses writes (a full disk), the transaction writes (and removes) a
    /// row, so the probe sees when space is back.
    pub async fn probe(&self) -> Result<(), QueueError> {
        self.check().await?;
        if self.inner.writer.refusal().is_none() {
            return self.write(|_, _| Ok(())).await;
        }
        self.write(|conn, _| {
            // No bot is named "" and `i64::MIN` is no chat (0 is the
            // bot-wide hold): the row lives only inside this transaction.
            let (bot, chat) = ("", i64::MIN);
            conn.execute(
                "INSERT INTO holds (bot, chat, not_before) VALUES (?1, ?2, 0)",
                rusqlite::params![bot, chat],
            )?;
            conn.execute(
                "DELETE FROM holds WHERE bot = ?1 AND chat = ?2",
                rusqlite::params![bot, chat],
            )?;
            Ok(())
        })
        .await?;
        match self.inner.writer.refusal() {
            Some(why) => Err(QueueError::Commit(why)),
            None => Ok(()),
        }
    }

    /// Why the store refuses writes now (a full disk, say), if it does.
    pub fn refusal(&self) -> Option<String> {
        self.inner.writer.refusal()
    }

    /// Commits what was handed in and stops taking work; later calls fail
    /// with [`QueueError::Closed`].
    pub async fn close(&self) {
        self.inner.writer.close().await;
    }

    /// Runs `read` on a read connection of the store (for modules that keep
    /// their own tables in it, such as `events`).
    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> Result<T, QueueError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.readers.with(read))
            .await
            .map_err(|_| QueueError::Closed)?
    }

    /// Runs `change` in the next group commit of the one writer.
    pub(crate) async fn write<T, F>(&self, change: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Conn, &mut Vec<JobEvent>) -> Result<T, QueueError> + Send + 'static,
    {
        self.inner.writer.write(change).await
    }
}

/// Inserts `job` and its parts, or finds the job its idempotency key names
/// (in a commit under way: [`Queue::write`]).
pub(crate) fn insert_job(
    conn: &Conn,
    job: &NewJob,
    now: Timestamp,
    events: &mut Vec<JobEvent>,
) -> Result<Enqueued, QueueError> {
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO jobs (request_id, bot, chat, kind, payload, idempotency_key, state,
                               attempts, not_before, created_at, updated_at, wire)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', 0,
                     max(?9, coalesce((SELECT j.not_before FROM parts p JOIN jobs j ON j.id = p.job_id
                                       WHERE p.message_id = ?10 AND j.state = 'queued'
                                         AND j.attempts = 0 AND j.not_before > j.created_at), 0)),
                     ?7, ?7, ?8)
             ON CONFLICT (bot, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING id",
        )?
        .query_row(params![
            job.request_id,
            job.bot,
            job.chat.get(),
            job.kind.as_str(),
            job.payload,
            job.idempotency_key,
            now.as_millis(),
            job.wire,
            job.not_before.map_or(now, |at| at.max(now)).as_millis(),
            job.follows,
        ], |row| row.get(0))
        .optional()?;
    let Some(id) = inserted else {
        return first_with_key(conn, job);
    };
    let id = JobId::new(id);
    let mut part =
        conn.prepare_cached("INSERT INTO parts (job_id, seq, random_id) VALUES (?1, ?2, ?3)")?;
    for seq in 0..job.parts {
        part.execute(params![id.get(), seq, rand::random::<i64>()])?;
    }
    events.push(JobEvent {
        id,
        chat: job.chat,
        state: JobState::Queued,
        bot: Some(job.bot.as_str().into()),
    });
    Ok(Enqueued {
        id,
        state: JobState::Queued,
        duplicate: false,
    })
}

fn first_with_key(conn: &Conn, job: &NewJob) -> Result<Enqueued, QueueError> {
    let found = conn
        .prepare_cached("SELECT id, state FROM jobs WHERE bot = ?1 AND idempotency_key = ?2")?
        .query_row(params![job.bot, job.idempotency_key], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((id, state)) = found else {
        return Err(QueueError::Commit(
            "an insert was ignored without an idempotency key to explain it".into(),
        ));
    };
    Ok(Enqueued {
        id: JobId::new(id),
        state,
        duplicate: true,
    })
}
