//! Group commit: one thread owns the write connection and turns whatever
//! work is waiting into one transaction.
//!
//! With `synchronous=FULL` every commit costs an fsync. Callers send their
//! change as an [`Op`] over a channel; the thread takes all ops waiting (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one transaction,
//! commits once and only then answers every caller. So an answer always means
//! "durable", and concurrent callers share the fsync instead of queueing for
//! it.

use std::thread::{self, JoinHandle};

use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::QueueError;
use super::job::JobEvent;

/// Ops committed together at most.
const MAX_BATCH: usize = 1024;
/// Ops that may wait for the writer before callers wait to hand theirs in.
const CHANNEL_DEPTH: usize = 8192;

/// Tells a caller how its op ended, once the batch's fate is known.
type Finish = Box<dyn FnOnce(Result<(), QueueError>) + Send>;
/// A change to make inside the batch transaction (`None`: the transaction
/// could not begin, so the change is skipped); returns its finisher and the
/// events it causes.
type Op = Box<dyn FnOnce(Option<&Connection>) -> (Finish, Vec<JobEvent>) + Send>;

enum Message {
    Op(Op),
    Close,
}

/// The handle to the writer thread.
pub struct Writer {
    ops: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the thread; committed [`JobEvent`]s go to `events`.
    pub fn spawn(conn: Connection, events: broadcast::Sender<JobEvent>) -> std::io::Result<Self> {
        let (ops, rx) = mpsc::channel(CHANNEL_DEPTH);
        let thread = thread::Builder::new()
            .name("telegate-store-writer".into())
            .spawn(move || run(conn, rx, events))?;
        Ok(Writer {
            ops,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `change` in the next batch and returns its value once that batch
    /// is committed. `change` pushes the events it causes.
    pub async fn write<T, F>(&self, change: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<JobEvent>) -> Result<T, QueueError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let mut events = Vec::new();
            let outcome = match conn {
                Some(conn) => in_savepoint(conn, |conn| change(conn, &mut events)),
                None => Err(QueueError::Closed), // the finisher gets the cause
            };
            if outcome.is_err() {
                events.clear();
            }
            let finish: Finish = Box::new(move |committed| {
                let _ = reply.send(committed.and(outcome));
            });
            (finish, events)
        });
        self.ops
            .send(Message::Op(op))
            .await
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)?
    }

    /// Whether the thread still takes work.
    pub fn is_open(&self) -> bool {
        !self.ops.is_closed()
    }

    /// Commits what was sent before, stops the thread and waits for it.
    pub async fn close(&self) {
        let _ = self.ops.send(Message::Close).await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Runs `change` between `SAVEPOINT` and `RELEASE`, rolling back to the
/// savepoint when it fails so the rest of the batch is unaffected.
fn in_savepoint<T>(
    conn: &Connection,
    change: impl FnOnce(&Connection) -> Result<T, QueueError>,
) -> Result<T, QueueError> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    match change(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(value)
        }
        Err(err) => {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(err)
        }
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Message>, events: broadcast::Sender<JobEvent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut closing = false;
        for message in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match message {
                Message::Op(op) => batch.push(op),
                Message::Close => {
                    closing = true;
                    break;
                }
            }
            if batch.len() == MAX_BATCH {
                break;
            }
        }
        commit(&conn, batch.drain(..), &events);
        if closing {
            break;
        }
    }
    rx.close();
    // Ops that raced with close find the channel closed; answer the ones
    // already queued rather than leaving them waiting.
    while let Ok(Message::Op(op)) = rx.try_recv() {
        commit(&conn, std::iter::once(op), &events);
    }
    tracing::debug!("store writer stopped");
}

/// One transaction for `ops`; every finisher learns whether it committed.
fn commit(conn: &Connection, ops: impl Iterator<Item = Op>, events: &broadcast::Sender<JobEvent>) {
    let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(|err| {
        tracing::error!(error = %err, "store cannot begin a transaction");
        err.to_string()
    });
    let mut finishers = Vec::new();
    let mut committed_events = Vec::new();
    for op in ops {
        let (finish, op_events) = op(began.as_ref().ok().map(|()| conn));
        finishers.push(finish);
        committed_events.extend(op_events);
    }
    let committed = began.and_then(|()| {
        conn.execute_batch("COMMIT").map_err(|err| {
            tracing::error!(error = %err, "store commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            err.to_string()
        })
    });
    if committed.is_ok() {
        for event in committed_events {
            let _ = events.send(event);
        }
    }
    for finish in finishers {
        finish(committed.clone().map_err(QueueError::Commit));
    }
}
