//! The `events` table: append (de-duplicated by event id), read by cursor,
//! wait for more, prune by age.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Conn;
use rusqlite::params;
use tokio::sync::{broadcast, watch};

use super::NewEvent;
use super::bird::JobResult;
use crate::queue::{DEFAULT_BOT, JobEvent, Queue, QueueError, Timestamp, blocked};

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Events returned by one read at most.
pub const MAX_BATCH: usize = 1000;

/// A stored event: its place in the stream and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub cursor: i64,
    /// The bot it happened to.
    pub bot: String,
    pub id: String,
    pub chat: i64,
    /// The event JSON, as stored.
    pub body: String,
}

impl StoredEvent {
    /// The NDJSON line of the stream (without the newline):
    /// `{"cursor":N,"event":{...}}`.
    pub fn to_line(&self) -> String {
        format!("{{\"cursor\":{},\"event\":{}}}", self.cursor, self.body)
    }
}

/// A handle to the event stream; clones share it. A handle may be scoped to
/// one bot ([`EventStore::scoped`]): it then appends as that bot and reads
/// only that bot's events.
#[derive(Clone)]
pub struct EventStore {
    queue: Queue,
    /// Bumped after every append that stored something.
    appended: Arc<watch::Sender<u64>>,
    bot: Option<Arc<str>>,
}

impl EventStore {
    /// Events in `queue`'s database. Create one per process and share it:
    /// waiters are woken by appends made through the same handle (and by
    /// job results, which the queue announces).
    pub fn new(queue: Queue) -> Self {
        EventStore {
            queue,
            appended: Arc::new(watch::channel(0).0),
            bot: None,
        }
    }

    /// This store seen by `bot` alone (`None`: every bot), sharing its
    /// waiters.
    pub fn scoped(&self, bot: Option<&str>) -> EventStore {
        EventStore {
            bot: bot.map(Arc::from),
            ..self.clone()
        }
    }

    /// The bot this handle is scoped to.
    pub fn bot(&self) -> Option<&str> {
        self.bot.as_deref()
    }

    /// Stores `events` durably, in order, skipping ids already stored.
    /// Returns how many were new.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<usize, QueueError> {
        if events.is_empty() {
            return Ok(0);
        }
        let (stored, ()) = self.append_with(events, |_, _, _, _| Ok(())).await?;
        Ok(stored)
    }

    /// [`EventStore::append`], running `first` in the same commit before
    /// the events are stored (with the bot, the events, which it may
    /// change, and the commit's job notices): what an event brings about
    /// is stored with it or not at all. Returns how many events were new
    /// and what `first` returned.
    pub(crate) async fn append_with<T, F>(
        &self,
        mut events: Vec<NewEvent>,
        first: F,
    ) -> Result<(usize, T), QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Conn, &str, &mut [NewEvent], &mut Vec<JobEvent>) -> Result<T, QueueError>
            + Send
            + 'static,
    {
        let now = Timestamp::now();
        let bot = self.bot.clone();
        let (stored, blocks, done) = self
            .queue
            .write(move |conn, jobs| {
                let bot = bot.as_deref().unwrap_or(DEFAULT_BOT);
                let done = first(conn, bot, &mut events, jobs)?;
                let (mut stored, mut blocks) = (0, 0);
                for event in &events {
                    let new = insert(conn, bot, event, now)?;
                    // A block is recorded with its event, once.
                    if let Some(blocked) = super::bird::blocks(event).filter(|_| new > 0) {
                        blocked::record(conn, bot, event.chat, blocked, now)?;
                        blocks += 1;
                    }
                    stored += new;
                }
                Ok((stored, blocks, done))
            })
            .await?;
        // The sender hears of a block before any reader of the event.
        if blocks > 0 {
            self.queue.blocked_changed();
        }
        if stored > 0 {
            self.appended.send_modify(|n| *n += 1);
        }
        Ok((stored, done))
    }

    /// Up to `limit` (≤ [`MAX_BATCH`]) events after `cursor`, in order.
    pub async fn after(&self, cursor: i64, limit: usize) -> Result<Vec<StoredEvent>, QueueError> {
        let limit = limit.clamp(1, MAX_BATCH);
        let bot = self.bot.clone();
        self.queue
            .read(move |conn| read_after(conn, bot.as_deref(), cursor, limit))
            .await
    }

    /// Like [`EventStore::after`], but when there is nothing yet, waits up
    /// to `wait` for an event to be stored (woken by appends, not polling).
    pub async fn wait_after(
        &self,
        cursor: i64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut appended = self.appended.subscribe();
        let mut jobs = self.queue.subscribe();
        loop {
            appended.mark_unchanged();
            let events = self.after(cursor, limit).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            let woken = tokio::select! {
                changed = appended.changed() => changed.is_ok(),
                job = settled(&mut jobs) => job,
                () = tokio::time::sleep_until(deadline) => false,
            };
            if !woken {
                return self.after(cursor, limit).await;
            }
        }
    }

    /// The cursor of the newest event (0: none).
    pub async fn last_cursor(&self) -> Result<i64, QueueError> {
        self.queue
            .read(|conn| {
                Ok(conn
                    .prepare_cached("SELECT coalesce(max(cursor), 0) FROM events")?
                    .query_row(params![], |row| row.get(0))?)
            })
            .await
    }

    /// Deletes events stored before `before`; returns how many.
    pub async fn prune(&self, before: Timestamp) -> Result<usize, QueueError> {
        self.queue
            .write(move |conn, _| {
                Ok(conn
                    .prepare_cached("DELETE FROM events WHERE created_at < ?1")?
                    .execute([before.as_millis()])?)
            })
            .await
    }
}

impl EventStore {
    /// Deletes events older than `retention` now and every hour after;
    /// runs until dropped.
    pub async fn keep_pruned(self, retention: Duration) {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            every.tick().await;
            let now = Timestamp::now().as_millis();
            let horizon =
                now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            match self.prune(Timestamp::from_millis(horizon)).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "old events deleted"),
                Err(error) => tracing::warn!(%error, "cannot delete old events"),
            }
        }
    }
}

/// Completes when the queue settles a job (whose result is then an event);
/// `false` once the queue is gone.
async fn settled(jobs: &mut broadcast::Receiver<crate::queue::JobEvent>) -> bool {
    loop {
        match jobs.recv().await {
            Ok(event) if event.state.is_final() => return true,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return true,
            Err(broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Inserts one event unless its id is stored; returns 1 if it was new.
pub(super) fn insert(
    conn: &Conn,
    bot: &str,
    event: &NewEvent,
    now: Timestamp,
) -> Result<usize, QueueError> {
    let inserted = insert_body(
        conn,
        bot,
        &event.id,
        event.chat,
        &event.body.to_string(),
        now,
    )?;
    if inserted > 0 {
        count(event);
    }
    Ok(inserted)
}

/// [`insert`] for a job's result, whose body comes serialized.
pub(super) fn insert_job_result(
    conn: &Conn,
    bot: &str,
    result: &JobResult,
    now: Timestamp,
) -> Result<usize, QueueError> {
    let inserted = insert_body(conn, bot, &result.id, result.chat, &result.body, now)?;
    if inserted > 0 {
        count_written(format!("job.{}", result.status));
    }
    Ok(inserted)
}

fn insert_body(
    conn: &Conn,
    bot: &str,
    id: &str,
    chat: i64,
    body: &str,
    now: Timestamp,
) -> Result<usize, QueueError> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO events (bot, event_id, chat, body, created_at)
             VALUES (?5, ?1, ?2, ?3, ?4)
             ON CONFLICT (bot, event_id) DO NOTHING",
        )?
        .execute(params![id, chat, body, now.as_millis(), bot])?)
}

/// Counts a newly written event by its type (`text`, `clicked`, ...,
/// `job.sent`), and an `unsupported` one by its TL name too.
fn count(event: &NewEvent) {
    let metrics = crate::metrics::metrics();
    let body = &event.body["body"];
    let kind = match (
        body["type"].as_str(),
        event.body["results"][0]["type"].as_str(),
        event.body["status"].as_str(),
    ) {
        (Some(kind), _, _) | (None, Some(kind), _) => kind.to_owned(),
        (None, None, Some(status)) => format!("job.{status}"),
        (None, None, None) => "unknown".to_owned(),
    };
    if kind == "unsupported" {
        let name = body["unsupported"]["tl"].as_str().unwrap_or("unknown");
        metrics
            .unsupported_updates
            .get_or_create(&[("tl", name.to_owned())])
            .inc();
    }
    count_written(kind);
}

/// Counts one newly written event of type `kind`.
fn count_written(kind: String) {
    crate::metrics::metrics()
        .events_written
        .get_or_create(&[("type", kind)])
        .inc();
}

fn read_after(
    conn: &Conn,
    bot: Option<&str>,
    cursor: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, QueueError> {
    // Two statements, so each uses its own index.
    let sql = match bot {
        Some(_) => {
            "SELECT cursor, event_id, chat, body, bot FROM events INDEXED BY events_by_bot
             WHERE bot = ?3 AND cursor > ?1 ORDER BY cursor LIMIT ?2"
        }
        None => {
            "SELECT cursor, event_id, chat, body, bot FROM events
             WHERE cursor > ?1 AND CAST(?3 AS TEXT) IS NULL ORDER BY cursor LIMIT ?2"
        }
    };
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params![cursor, limit as i64, bot], |row| {
        Ok(StoredEvent {
            cursor: row.get(0)?,
            id: row.get(1)?,
            chat: row.get(2)?,
            body: row.get(3)?,
            bot: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str, chat: i64) -> NewEvent {
        NewEvent {
            id: id.into(),
            chat,
            body: json!({"id": id}),
        }
    }

    #[tokio::test]
    async fn appends_once_per_id_and_reads_by_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EventStore::new(Queue::open_at(&crate::store::test_location(dir.path())).unwrap());
        let stored = store
            .append(vec![event("a", 1), event("b", 2), event("a", 1)])
            .await
            .unwrap();
        assert_eq!(stored, 2);
        assert_eq!(store.append(vec![event("b", 2)]).await.unwrap(), 0);
        let all = store.after(0, 10).await.unwrap();
        let ids: Vec<_> = all.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let rest = store.after(all[0].cursor, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, "b");
        assert_eq!(
            rest[0].to_line(),
            format!(
                "{{\"cursor\":{},\"event\":{{\"id\":\"b\"}}}}",
                rest[0].cursor
            )
        );
        assert_eq!(store.last_cursor().await.unwrap(), rest[0].cursor);
    }

    #[tokio::test]
    async fn a_block_is_stored_with_its_event_once_and_an_unblock_lifts_it() {
        use crate::chat::ChatId;
        use crate::events::bird;
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&crate::store::test_location(dir.path())).unwrap();
        let store = EventStore::new(queue.clone()).scoped(Some("shop"));
        let mut changes = queue.watch_blocked();
        let at = Timestamp::from_millis(0);
        let (block, unblock) = (
            bird::blocked(1, 5, true, at, "qts2"),
            bird::blocked(1, 5, false, at, "qts3"),
        );
        store.append(vec![block.clone()]).await.unwrap();
        assert!(changes.has_changed().unwrap(), "the sender is told");
        changes.mark_unchanged();
        let blocked = queue.blocked_chats("shop").await.unwrap();
        assert_eq!(blocked, [ChatId::user(5)].into_iter().collect());
        assert!(queue.blocked_chats("other").await.unwrap().is_empty());

        store.append(vec![unblock.clone()]).await.unwrap();
        assert!(queue.blocked_chats("shop").await.unwrap().is_empty());
        // A replay of the block (a crash before the update state was
        // saved) is a stored event already: it changes nothing.
        changes.mark_unchanged();
        assert_eq!(store.append(vec![block]).await.unwrap(), 0);
        assert!(queue.blocked_chats("shop").await.unwrap().is_empty());
        assert!(!changes.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_append() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EventStore::new(Queue::open_at(&crate::store::test_location(dir.path())).unwrap());
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_after(0, 10, Duration::from_secs(60)).await })
        };
        tokio::task::yield_now().await;
        store.append(vec![event("x", 1)]).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .expect("the waiter was not woken")
            .unwrap()
            .unwrap();
        assert_eq!(got[0].id, "x");
    }

    #[tokio::test]
    async fn pruning_keeps_cursors_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EventStore::new(Queue::open_at(&crate::store::test_location(dir.path())).unwrap());
        store.append(vec![event("a", 1)]).await.unwrap();
        let first = store.last_cursor().await.unwrap();
        let pruned = store
            .prune(Timestamp::now().saturating_add(Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        store.append(vec![event("b", 1)]).await.unwrap();
        assert!(store.last_cursor().await.unwrap() > first);
    }
}
