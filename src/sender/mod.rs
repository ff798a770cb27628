//! The sender: drains the queue into Telegram within its limits.
//!
//! Jobs leave the queue one per chat at a time, in order, paced by
//! [`crate::limits`], and every attempt reuses the job's stored `random_id`
//! so a resend after a lost reply cannot post twice.
//!
//! The [`Sender`] is one loop that owns the limiter. It asks the queue for
//! the due head of every chat, asks the limiter about each, claims those
//! allowed and spawns one task per claimed job ([`attempt`] sends it,
//! [`report`] records the outcome). It sleeps until something can change
//! what is due — a queue event, a finished task, the limiter's next slot, the
//! next retry or hold expiring, or shutdown — and never sleeps holding a job:
//! a flood wait is a hold in the store, and the job goes back in line.

pub mod attempt;
pub mod report;
pub mod verdict;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;

use crate::limits::{FloodScope, Limits};
use crate::queue::{Job, JobId, JobState, Queue, QueueError, Timestamp};
use crate::telegram::Telegram;
use report::Report;

pub use verdict::{Backoff, Verdict, judge};

/// How the sender behaves, beyond the rates its [`Limits`] hold.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub backoff: Backoff,
    /// Jobs sent at once (across chats).
    pub max_in_flight: usize,
    /// How long in-flight sends may take to finish at shutdown before they
    /// are put back in line.
    pub drain_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backoff: Backoff::default(),
            max_in_flight: 128,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The longest the loop sleeps without a reason: a guard against the wall
/// clock (the store's) jumping while it waits on the monotonic one.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// How a send task ended, as far as the loop cares.
enum Ended {
    Done,
    Halt,
}

/// The loop that drains the queue.
pub struct Sender {
    queue: Queue,
    telegram: Arc<Telegram>,
    limits: Limits,
    settings: Settings,
    /// The limiter's clock origin.
    origin: Instant,
    tasks: JoinSet<Ended>,
    in_flight: HashMap<task::Id, JobId>,
    halted: bool,
}

impl Sender {
    pub fn new(queue: Queue, telegram: Arc<Telegram>, limits: Limits, settings: Settings) -> Self {
        Sender {
            queue,
            telegram,
            limits,
            settings,
            origin: Instant::now(),
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            halted: false,
        }
    }

    /// Sends until `stop` turns true (or its sender is dropped), then lets
    /// in-flight sends finish for up to `drain_timeout` and puts the rest
    /// back in line. An error means the store failed.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), QueueError> {
        let mut events = self.queue.subscribe();
        let result = loop {
            let wake = if self.halted {
                None
            } else {
                match self.dispatch().await {
                    Ok(wake) => wake,
                    Err(error) => break Err(error),
                }
            };
            let idle = Instant::now() + MAX_IDLE;
            let wake = wake.map_or(idle, |at| at.min(idle));
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break Ok(()),
                Some(done) = self.tasks.join_next_with_id() => self.finished(done).await,
                event = events.recv() => {
                    if !wakes(event) {
                        continue;
                    }
                    // Coalesce a burst of events into one look at the queue.
                    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) =
                        events.try_recv()
                    {}
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        };
        self.drain().await;
        result
    }

    /// Claims what is due and allowed; returns when to look again (`None`:
    /// only an event can change anything).
    async fn dispatch(&mut self) -> Result<Option<Instant>, QueueError> {
        let room = self.settings.max_in_flight.saturating_sub(self.tasks.len());
        if room == 0 {
            return Ok(None);
        }
        let now = Timestamp::now();
        let elapsed = self.origin.elapsed();
        let mut wake = None;
        let bot_ready = self.limits.bot_ready_at();
        if bot_ready > elapsed {
            return Ok(Some(self.origin + bot_ready));
        }
        let due = self.queue.due(now, room).await?;
        let mut allowed = Vec::with_capacity(due.len());
        for job in &due {
            let scope = self.limits.flood_scope(job.chat, elapsed);
            match self.limits.try_acquire(job.chat, elapsed) {
                Ok(()) => {
                    for _ in 1..job.parts.len() {
                        self.limits.record(job.chat, elapsed);
                    }
                    allowed.push((job.id, scope));
                }
                Err(ready) => wake = earliest(wake, self.origin + ready),
            }
        }
        if !allowed.is_empty() {
            let ids = allowed.iter().map(|(id, _)| *id).collect();
            let scopes: HashMap<JobId, FloodScope> = allowed.into_iter().collect();
            for job in self.queue.claim(ids, now).await? {
                let scope = scopes.get(&job.id).copied().unwrap_or(FloodScope::Chat);
                self.spawn(job, scope);
            }
        }
        if let Some(at) = self.queue.next_due_at().await? {
            let now = Timestamp::now();
            if at > now {
                wake = earliest(wake, Instant::now() + report::until(at, now));
            }
        }
        Ok(wake)
    }

    fn spawn(&mut self, job: Job, scope: FloodScope) {
        let id = job.id;
        let telegram = Arc::clone(&self.telegram);
        let queue = self.queue.clone();
        let backoff = self.settings.backoff;
        let handle = self
            .tasks
            .spawn(deliver(telegram, queue, job, scope, backoff));
        self.in_flight.insert(handle.id(), id);
    }

    /// A send task ended.
    async fn finished(&mut self, done: Result<(task::Id, Ended), JoinError>) {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(error) => error.id(),
        };
        let job = self.in_flight.remove(&task);
        match done {
            Ok((_, Ended::Done)) => {}
            Ok((_, Ended::Halt)) => {
                if !self.halted {
                    tracing::error!(
                        "sending is halted: Telegram refused the session. Jobs stay queued; \
                         fix the session or token and restart telegate"
                    );
                }
                self.halted = true;
            }
            Err(error) => {
                if error.is_panic() {
                    tracing::error!(job = ?job, "a send task panicked; its job goes back in line");
                }
                if let Some(job) = job {
                    self.release(job).await;
                }
            }
        }
    }

    /// Waits for in-flight sends, up to the drain timeout; puts the jobs of
    /// those still running back in line.
    async fn drain(&mut self) {
        if !self.tasks.is_empty() {
            tracing::info!(jobs = self.tasks.len(), "waiting for in-flight sends");
        }
        let deadline = Instant::now() + self.settings.drain_timeout;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.finished(done).await,
                Ok(None) => break,
                Err(_elapsed) => {
                    tracing::warn!(
                        jobs = self.tasks.len(),
                        "in-flight sends did not finish in time; they go back in line"
                    );
                    self.tasks.abort_all();
                }
            }
        }
    }

    async fn release(&self, job: JobId) {
        match self.queue.release(job, Timestamp::now()).await {
            Ok(()) | Err(QueueError::NotSending { .. }) => {}
            // Still `sending` in the store: the next start resends it.
            Err(error) => tracing::warn!(%job, %error, "cannot put a job back in line"),
        }
    }
}

/// Whether a queue event can make something due: a new or returned job, or
/// a chat whose line was freed. (`sending` is the loop's own doing.)
fn wakes(event: Result<crate::queue::JobEvent, broadcast::error::RecvError>) -> bool {
    match event {
        Ok(event) => event.state != JobState::Sending,
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        // The queue is gone; the next look at it will say so.
        Err(broadcast::error::RecvError::Closed) => true,
    }
}

fn earliest(current: Option<Instant>, at: Instant) -> Option<Instant> {
    Some(current.map_or(at, |current| current.min(at)))
}

/// One job's send task: an attempt, then its report to the store.
async fn deliver(
    telegram: Arc<Telegram>,
    queue: Queue,
    job: Job,
    scope: FloodScope,
    backoff: Backoff,
) -> Ended {
    let attempt = match attempt::send(&telegram, &queue, &job).await {
        Ok(attempt) => attempt,
        Err(error) => {
            // Left in `sending`: the next start resends it (same random_id).
            tracing::error!(job = %job.id, %error, "cannot record a part as sent");
            return Ended::Done;
        }
    };
    let now = Timestamp::now();
    let report = Report::of(attempt, &job, scope, backoff, rand::random(), now);
    let ended = match report {
        Report::Halt { .. } => Ended::Halt,
        _ => Ended::Done,
    };
    if let Err(error) = report.apply(&queue, &job, now).await {
        tracing::error!(job = %job.id, %error, "cannot record the outcome of a send");
    }
    ended
}
