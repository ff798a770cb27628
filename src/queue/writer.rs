//! Group commit: one thread owns the write connection and turns whatever
//! work is waiting into one transaction.
//!
//! With `synchronous=FULL` every commit costs an fsync. Callers send their
//! change as an [`Op`] over a channel; the thread takes all ops waiting (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one transaction,
//! commits once and only then answers every caller. So an answer always means
//! "durable", and concurrent callers share the fsync instead of queueing for
//! it.
//!
//! Right after a commit, callers that were answered send their next op a
//! moment later, while the writer would already be committing the first one
//! to arrive alone. So the writer gathers: while its batch is smaller than
//! the previous one, it waits for more ops, at most half as long as the last
//! commit took (the idea of PostgreSQL's `commit_delay`, sized by the disk
//! itself). A lone caller never waits: its previous batch was one op. The
//! thread sleeps in the channel while it waits (one wake-up per op that
//! arrives, none to poll), and callers never block: each awaits its own
//! answer, so the ops in the channel are bounded by the callers waiting.
//!
//! A full disk (or another storage error) fails the batch, not the thread:
//! the writer remembers why the store refuses writes, for `/healthz`, until
//! a batch that changed something commits again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::QueueError;
use super::announce::Announcer;
use super::job::JobEvent;
use super::job::JobState;
use super::persist::StorageRefusal;
use crate::store::{Conn, Dialect};

/// Ops committed together at most.
const MAX_BATCH: usize = 1024;
/// The longest the writer gathers ops for one batch.
const MAX_GATHER: Duration = Duration::from_millis(2);

/// Tells a caller how its op ended, once the batch's fate is known.
type Finish = Box<dyn FnOnce(Result<(), QueueError>) + Send>;
/// A change to make inside the batch transaction (`None`: the transaction
/// could not begin, so the change is skipped); returns its finisher, the
/// events it causes and, if the storage refused it, why.
type Op = Box<dyn FnOnce(Option<&Conn>) -> Done + Send>;

/// What an op left for the commit.
struct Done {
    finish: Finish,
    events: Vec<JobEvent>,
    refused: Option<String>,
}

/// Why the store refuses writes now (`None`: it takes them); shared
/// between the writer thread and its handle.
#[derive(Default)]
struct Refusal(Mutex<Option<String>>);

impl Refusal {
    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, why: Option<String>) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match (&*current, &why) {
            (None, Some(why)) => tracing::error!(error = %why, "the store refuses writes"),
            (Some(_), None) => tracing::info!("the store takes writes again"),
            _ => {}
        }
        *current = why;
    }
}

enum Message {
    Op(Op),
    Close,
}

/// The handle to the writer thread.
pub struct Writer {
    ops: mpsc::Sender<Message>,
    /// False once the thread stopped taking work.
    open: Arc<AtomicBool>,
    refusal: Arc<Refusal>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the thread; committed [`JobEvent`]s go to `events`.
    pub fn spawn(conn: Conn, events: Arc<Announcer>) -> std::io::Result<Self> {
        let (ops, rx) = mpsc::channel();
        let open = Arc::new(AtomicBool::new(true));
        let refusal = Arc::new(Refusal::default());
        let thread = thread::Builder::new()
            .name("telegate-store-writer".into())
            .spawn({
                let open = Arc::clone(&open);
                let store = Store {
                    conn,
                    events,
                    refusal: Arc::clone(&refusal),
                };
                move || {
                    run(&store, &rx);
                    open.store(false, Ordering::Release);
                    // Ops that raced with close find the channel closed;
                    // answer the ones already queued rather than leaving
                    // them waiting.
                    drop_pending(&store, rx);
                }
            })?;
        Ok(Writer {
            ops,
            open,
            refusal,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `change` in the next batch and returns its value once that batch
    /// is committed. `change` pushes the events it causes.
    pub async fn write<T, F>(&self, change: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Conn, &mut Vec<JobEvent>) -> Result<T, QueueError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let mut events = Vec::new();
            let outcome = match conn {
                Some(conn) => in_savepoint(conn, |conn| change(conn, &mut events)),
                None => Err(QueueError::Closed), // the finisher gets the cause
            };
            let refused = match &outcome {
                Err(error @ QueueError::Store(_)) if error.is_storage() => Some(error.to_string()),
                _ => None,
            };
            if outcome.is_err() {
                events.clear();
            }
            let finish: Finish = Box::new(move |committed| {
                let _ = reply.send(committed.and(outcome));
            });
            Done {
                finish,
                events,
                refused,
            }
        });
        if !self.is_open() {
            return Err(QueueError::Closed);
        }
        self.ops
            .send(Message::Op(op))
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Whether the thread still takes work.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Why the store refused the last batch that tried to change something
    /// (a full disk, say); `None` once one commits again.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.get()
    }

    /// Commits what was sent before, stops the thread and waits for it.
    pub async fn close(&self) {
        let _ = self.ops.send(Message::Close);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs `change` between `SAVEPOINT` and `RELEASE`, rolling back to the
/// savepoint when it fails so the rest of the batch is unaffected.
fn in_savepoint<T>(
    conn: &Conn,
    change: impl FnOnce(&Conn) -> Result<T, QueueError>,
) -> Result<T, QueueError> {
    conn.prepare_cached("SAVEPOINT op")?
        .execute(rusqlite::params![])?;
    match change(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE op")?
                .execute(rusqlite::params![])?;
            Ok(value)
        }
        Err(err) => {
            // Fails when SQLite already rolled the whole transaction back
            // (a full disk): the change's own error is then the one to tell.
            match conn.execute_batch("ROLLBACK TO op; RELEASE op") {
                Err(rollback) if !conn.is_autocommit() => Err(rollback.into()),
                _ => Err(err),
            }
        }
    }
}

/// What the writer thread writes to and tells.
struct Store {
    conn: Conn,
    events: Arc<Announcer>,
    refusal: Arc<Refusal>,
}

/// Commits batches until a close is asked for (or every handle is gone).
fn run(store: &Store, rx: &mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut previous = Batch {
        size: 1,
        took: Duration::ZERO,
    };
    let (mut commits, mut ops) = (0_u64, 0_u64);
    while let Ok(first) = rx.recv() {
        let closing = gather(rx, first, &mut batch, &previous);
        let started = Instant::now();
        previous.size = batch.len();
        (commits, ops) = (commits + 1, ops + batch.len() as u64);
        commit(store, batch.drain(..));
        previous.took = started.elapsed();
        if closing {
            break;
        }
    }
    tracing::debug!(commits, ops, "store writer closing");
}

/// After a close: commits each op already handed in, then drops the
/// channel, so later writes find it closed.
fn drop_pending(store: &Store, rx: mpsc::Receiver<Message>) {
    while let Ok(message) = rx.try_recv() {
        if let Message::Op(op) = message {
            commit(store, std::iter::once(op));
        }
    }
    drop(rx);
    tracing::debug!("store writer stopped");
}

/// The last committed batch: how many ops, how long the commit took.
struct Batch {
    size: usize,
    took: Duration,
}

/// Fills `batch` from `first` and what is waiting, then (while it is smaller
/// than the previous batch) what arrives within half the last commit's
/// time. Returns whether a close was asked for.
fn gather(
    rx: &mpsc::Receiver<Message>,
    first: Message,
    batch: &mut Vec<Op>,
    previous: &Batch,
) -> bool {
    let deadline = Instant::now() + (previous.took / 2).min(MAX_GATHER);
    let mut next = first;
    loop {
        match next {
            Message::Op(op) => batch.push(op),
            Message::Close => return true,
        }
        if batch.len() >= MAX_BATCH {
            return false;
        }
        next = match rx.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) if batch.len() < previous.size => {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                        return false;
                    }
                }
            }
            Err(_) => return false,
        };
    }
}

/// One transaction for `ops`; every finisher learns whether it committed.
///
/// SQLite may roll a whole transaction back by itself on a storage error
/// (`SQLITE_FULL`, `SQLITE_IOERR`); the ops after that are skipped rather
/// than run outside any transaction, and the batch fails.
fn commit(store: &Store, ops: impl Iterator<Item = Op>) {
    let conn = &store.conn;
    let changes_before = conn.total_changes();
    let mut began = conn.begin_write().map_err(|err| {
        tracing::error!(error = %err, "store cannot begin a transaction");
        err.to_string()
    });
    let mut finishers = Vec::new();
    let mut committed_events = Vec::new();
    let mut refused = began.as_ref().err().cloned();
    for op in ops {
        let done = op(began.as_ref().ok().map(|()| conn));
        finishers.push(done.finish);
        committed_events.extend(done.events);
        if let Some(why) = done.refused {
            refused.get_or_insert(why);
        }
        if began.is_ok() && conn.is_autocommit() {
            let why = refused
                .clone()
                .unwrap_or_else(|| "the store rolled the transaction back".into());
            tracing::error!(error = %why, "the store rolled a batch back");
            began = Err(why);
        }
    }
    if began.is_ok() && conn.dialect() == Dialect::Postgres {
        notify_other_daemons(conn, &committed_events);
    }
    let committed = began.and_then(|()| {
        conn.commit().map_err(|err| {
            tracing::error!(error = %err, "store commit failed");
            let _ = conn.rollback();
            err.to_string()
        })
    });
    match &committed {
        Ok(()) => {
            for event in committed_events {
                store.events.announce(event);
            }
            // Only a batch that wrote something shows the storage takes
            // writes (an empty transaction commits on a full disk).
            if conn.total_changes() > changes_before && refused.is_none() {
                store.refusal.set(None);
            }
        }
        Err(why) => {
            refused.get_or_insert_with(|| why.clone());
        }
    }
    if refused.is_some() {
        store.refusal.set(refused);
    }
    for finish in finishers {
        finish(committed.clone().map_err(QueueError::Commit));
    }
}

/// On a shared store, tells the other daemons (at the commit) which bots
/// this batch gave work: a queued or returned job, a freed line (what
/// wakes a sender; `sending` and `sent` are a sender's own doing).
fn notify_other_daemons(conn: &Conn, events: &[JobEvent]) {
    let mut bots: Vec<&str> = events
        .iter()
        .filter(|event| !matches!(event.state, JobState::Sending | JobState::Sent))
        .filter_map(|event| event.bot.as_deref())
        .collect();
    bots.sort_unstable();
    bots.dedup();
    for bot in bots {
        // A lost notification costs latency, not work: the sender looks
        // again at its own times.
        if let Err(error) = conn.execute(
            "SELECT pg_notify(?1, ?2)",
            rusqlite::params![super::listen::CHANNEL, bot],
        ) {
            tracing::warn!(error = %error, "cannot notify the other daemons");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Message {
        Message::Op(Box::new(|_| Done {
            finish: Box::new(|_| {}),
            events: Vec::new(),
            refused: None,
        }))
    }

    fn channel_with(messages: Vec<Message>) -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel();
        for message in messages {
            assert!(tx.send(message).is_ok());
        }
        (tx, rx)
    }

    #[test]
    fn gathers_what_waits_and_stops_at_close() {
        let (_tx, rx) = channel_with(vec![noop(), noop(), Message::Close, noop()]);
        let mut batch = Vec::new();
        let previous = Batch {
            size: 1,
            took: Duration::ZERO,
        };
        assert!(gather(&rx, noop(), &mut batch, &previous));
        assert_eq!(batch.len(), 3);
        assert!(
            matches!(rx.try_recv(), Ok(Message::Op(_))),
            "left after close"
        );
    }

    #[test]
    fn does_not_wait_past_its_deadline() {
        // The previous batch was bigger, but its commit took no time: no
        // gathering window, so what is there is what gets committed.
        let (_tx, rx) = channel_with(vec![noop()]);
        let mut batch = Vec::new();
        let previous = Batch {
            size: 50,
            took: Duration::ZERO,
        };
        assert!(!gather(&rx, noop(), &mut batch, &previous));
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn stops_at_the_batch_limit() {
        let (tx, rx) = mpsc::channel();
        for _ in 0..MAX_BATCH + 5 {
            assert!(tx.send(noop()).is_ok());
        }
        let mut batch = Vec::new();
        let previous = Batch {
            size: 1,
            took: Duration::ZERO,
        };
        assert!(!gather(&rx, noop(), &mut batch, &previous));
        assert_eq!(batch.len(), MAX_BATCH);
    }
}
