//! The sender: drains the queue into Telegram within its limits.
//!
//! Jobs leave the queue one per chat at a time, in order, paced by
//! [`crate::limits`], and every attempt reuses the job's stored `random_id`
//! so a resend after a lost reply cannot post twice.
//!
//! Every decision is the [`core::Core`]'s: a deterministic state machine
//! that takes events and `now` and returns actions (look at the store, claim
//! these jobs, invoke that one, commit this outcome) and when to wake it.
//! [`Sender`] is its async shell: it performs each action as a task (store
//! reads and commits through the [`Queue`], sends through an [`Invoke`]),
//! feeds each task's result back as an event, and sleeps until a task ends,
//! the queue announces work, or the core's timeout. It never sleeps holding
//! a job: a flood wait is a hold in the store, and the job goes back in line.
//! [`attempt`] sends one job, [`report`] says what an attempt means for it.

pub mod attempt;
pub mod core;
pub mod report;
pub mod verdict;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::limits::{FloodScope, Limits};
use crate::queue::{
    Expiry, Job, JobError, JobId, JobState, Queue, QueueError, StorageRefusal, Timestamp,
    until_stored,
};
use crate::telegram::Telegram;
use attempt::Attempt;
use core::{Action, Core, Event, Head, Outcome};
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
    /// Jobs still unsent this long after enqueue fail (`None`: never).
    pub expiry: Option<Expiry>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backoff: Backoff::default(),
            max_in_flight: 128,
            drain_timeout: Duration::from_secs(10),
            expiry: None,
        }
    }
}

/// The longest between two sweeps for expired jobs while expiry is on: a
/// job that leaves `sending` for a retry is failed at most this late.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How far back a starting sender looks for sends to charge its meters
/// with (a group's limit is per minute).
const METER_HISTORY: Duration = Duration::from_secs(60);

/// How soon the sender looks again after the store refused a write (a full
/// disk): nothing is claimed meanwhile.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// Why [`Sender::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It was told to.
    Told,
    /// Telegram refused the session (a 401: the key was signed out or
    /// revoked): sending cannot go on with it, the worker signs in again.
    /// Jobs stay queued. Telegram's reason.
    Halted(String),
}

/// Sends one job's parts through a bot's connection (the sender's only
/// I/O with Telegram).
pub trait Invoke: Send + Sync + 'static {
    /// Sends `job`'s parts, the part at index `i` not before `parts_at[i]`.
    fn attempt<'a>(
        &'a self,
        job: &'a Job,
        parts_at: &'a [Instant],
    ) -> Pin<Box<dyn Future<Output = Result<Attempt, QueueError>> + Send + 'a>>;
}

/// A bot's grammers connection, recording sent parts in the store.
pub struct Connection {
    pub telegram: Arc<Telegram>,
    pub queue: Queue,
}

impl Invoke for Connection {
    fn attempt<'a>(
        &'a self,
        job: &'a Job,
        parts_at: &'a [Instant],
    ) -> Pin<Box<dyn Future<Output = Result<Attempt, QueueError>> + Send + 'a>> {
        Box::pin(attempt::send(&self.telegram, &self.queue, job, parts_at))
    }
}

/// A task's result, for the core.
enum Done {
    Due(Result<(Vec<Job>, Option<Timestamp>), QueueError>),
    Claimed {
        asked: Vec<JobId>,
        taken: Result<Vec<Job>, QueueError>,
    },
    Attempted {
        job: Job,
        scope: FloodScope,
        attempt: Option<Attempt>,
    },
    Committed {
        job: JobId,
        next: Option<Job>,
    },
    Resumed,
}

/// The shell around the core for one bot: drains its queue.
pub struct Sender {
    queue: Queue,
    bot: String,
    invoke: Arc<dyn Invoke>,
    settings: Settings,
    core: Core,
    /// The one clock: the core's `now` is time since this.
    origin: Instant,
    tasks: JoinSet<Done>,
    /// Claimed jobs, until their commit.
    jobs: HashMap<JobId, Job>,
    /// Attempts' reports waiting for their commit.
    reports: HashMap<JobId, Report>,
    /// Ends the attempts still running when the drain time is up.
    abandon: CancellationToken,
    halted: Option<String>,
    /// When to look for expired jobs next (with expiry on).
    next_sweep: Instant,
    /// Whether the bot's connection is alive (the liveness watchdog's
    /// view); `None`: taken as always up.
    alive: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Sender {
    /// The sender of `bot`'s jobs through `invoke`, its connection.
    pub fn new(
        queue: Queue,
        bot: impl Into<String>,
        invoke: Arc<dyn Invoke>,
        limits: Limits,
        settings: Settings,
    ) -> Self {
        let bot = bot.into();
        let mut core = Core::new(settings.max_in_flight);
        core.add_bot(bot.clone(), limits);
        // The clock starts a minute back, so the last run's sends have a
        // time on it (see `remember_recent_sends`).
        let origin = Instant::now()
            .checked_sub(METER_HISTORY)
            .unwrap_or_else(Instant::now);
        Sender {
            queue,
            bot,
            invoke,
            settings,
            core,
            origin,
            tasks: JoinSet::new(),
            jobs: HashMap::new(),
            reports: HashMap::new(),
            abandon: CancellationToken::new(),
            halted: None,
            next_sweep: origin,
            alive: None,
        }
    }

    /// Follows `alive` (the connection's liveness watchdog): nothing is
    /// claimed while it says the connection is dead, and when it comes
    /// back the jobs that failed meanwhile go at once rather than after
    /// their backoff.
    pub fn with_liveness(mut self, alive: tokio::sync::watch::Receiver<bool>) -> Self {
        self.alive = Some(alive);
        self
    }

    /// Gives up what is in flight as soon as `abandon` is cancelled (as it
    /// is anyway once a stop's drain time is up): the attempts end, and
    /// what was not stored is found again by whoever sends next.
    pub fn abandoned_with(mut self, abandon: CancellationToken) -> Self {
        self.abandon = abandon;
        self
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The core's time of a store timestamp.
    fn at(&self, at: Timestamp) -> Duration {
        self.now() + report::until(at, Timestamp::now())
    }

    /// Sends until `stop` is cancelled or Telegram refuses the session, then
    /// lets in-flight sends finish for up to `drain_timeout` and puts the
    /// rest back in line. An error means the store failed.
    pub async fn run(mut self, stop: CancellationToken) -> Result<Stopped, QueueError> {
        let mut events = self.queue.subscribe_bot(&self.bot);
        let mut blocked = self.queue.watch_blocked();
        blocked.mark_unchanged();
        self.load_blocked().await?;
        // An earlier sender of this bot that ended without its drain left
        // its attempts' jobs `sending`: their chats' lines move again.
        self.queue
            .return_sending(&self.bot, Timestamp::now())
            .await?;
        self.remember_recent_sends().await;
        let up = Event::Connection {
            bot: self.bot.clone(),
            up: true,
        };
        self.core.handle(self.now(), up);
        let mut alive = self.alive.take();
        let result = loop {
            if let Err(error) = self.sweep().await {
                break Err(error);
            }
            self.perform_all();
            if let Some(reason) = &self.halted {
                break Ok(Stopped::Halted(reason.clone()));
            }
            let mut wake = self
                .core
                .poll_timeout(self.now())
                .map(|at| self.origin + at);
            if self.settings.expiry.is_some() {
                wake = Some(wake.map_or(self.next_sweep, |at| at.min(self.next_sweep)));
            }
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let connection = async {
                if let Some(alive) = alive.as_mut()
                    && alive.changed().await.is_ok()
                {
                    return Some(*alive.borrow_and_update());
                }
                // No watchdog, or it is gone (its connection shut down).
                std::future::pending().await
            };
            let done = tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(Stopped::Told),
                Some(up) = connection => {
                    if up {
                        tracing::info!(bot = %self.bot, "the connection is back: sending again");
                    } else {
                        tracing::warn!(bot = %self.bot, "the connection is dead: claiming nothing until it is back");
                    }
                    let event = Event::Connection { bot: self.bot.clone(), up };
                    self.core.handle(self.now(), event);
                    None
                }
                Some(done) = self.tasks.join_next() => Some(done),
                // Before new jobs: a job enqueued after a block was seen
                // is refused.
                Ok(()) = blocked.changed() => {
                    blocked.mark_unchanged();
                    if let Err(error) = self.load_blocked().await {
                        break Err(error);
                    }
                    None
                }
                event = events.recv() => {
                    self.wake_on(event);
                    None
                }
                () = sleep => {
                    self.core.handle_timeout(self.now());
                    None
                }
            };
            if let Some(done) = done
                && let Err(error) = self.completed(done)
            {
                break Err(error);
            }
            // Take in everything else that happened meanwhile, so that one
            // look at the queue serves a burst.
            let mut failed = None;
            while let Some(done) = self.tasks.try_join_next() {
                if let Err(error) = self.completed(done) {
                    failed = Some(error);
                    break;
                }
            }
            if let Some(error) = failed {
                break Err(error);
            }
            loop {
                match events.try_recv() {
                    Ok(event) => self.wake_on(Ok(event)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        self.wake_on(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(_) => break,
                }
            }
        };
        self.core.handle(self.now(), Event::Stop);
        self.drain().await;
        result
    }

    /// Charges the meters with the sends of the last minute the store holds
    /// (a restart right after a burst must not burst again).
    async fn remember_recent_sends(&mut self) {
        let now = Timestamp::now();
        let since = Timestamp::from_millis(
            now.as_millis()
                .saturating_sub(i64::try_from(METER_HISTORY.as_millis()).unwrap_or(i64::MAX)),
        );
        let sends = match self.queue.recent_sends(&self.bot, since).await {
            Ok(sends) => sends,
            Err(error) => {
                tracing::warn!(bot = %self.bot, %error, "cannot read the last sends; the meters start empty");
                return;
            }
        };
        if !sends.is_empty() {
            tracing::info!(bot = %self.bot, jobs = sends.len(), "meters charged with the last minute's sends");
        }
        let core_now = self.now();
        for (chat, at, parts) in sends {
            let age = report::until(now, at);
            for _ in 0..parts {
                self.core
                    .record_sent(&self.bot, chat, core_now.saturating_sub(age));
            }
        }
    }

    /// Tells the core which chats' users have blocked the bot now.
    async fn load_blocked(&mut self) -> Result<(), QueueError> {
        let chats = self.queue.blocked_chats(&self.bot).await?;
        let event = Event::Blocked {
            bot: self.bot.clone(),
            chats,
        };
        self.core.handle(self.now(), event);
        Ok(())
    }

    fn wake_on(&mut self, event: Result<crate::queue::JobEvent, broadcast::error::RecvError>) {
        if wakes(&self.bot, event) {
            let wake = Event::Wake {
                bot: self.bot.clone(),
            };
            self.core.handle(self.now(), wake);
        }
    }

    /// Performs every action the core has now.
    fn perform_all(&mut self) {
        while let Some(action) = self.core.poll_action(self.now()) {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        let queue = self.queue.clone();
        match action {
            Action::Look { room, .. } => {
                let bot = self.bot.clone();
                self.tasks.spawn(async move {
                    Done::Due(queue.look(&bot, Timestamp::now(), room).await)
                });
            }
            Action::Claim { jobs, .. } => {
                let expiry = self.settings.expiry;
                let abandon = self.abandon.clone();
                self.tasks.spawn(async move {
                    let claim = || queue.claim(jobs.clone(), Timestamp::now(), expiry);
                    // Through a full disk: nothing is claimed until the store
                    // takes the claim (at shutdown, nothing is).
                    let taken = until_stored_or(&abandon, "a claim", claim)
                        .await
                        .map(Option::unwrap_or_default);
                    Done::Claimed { asked: jobs, taken }
                });
            }
            Action::Invoke {
                job,
                scope,
                parts_at,
                ..
            } => {
                let Some(job) = self.jobs.get(&job).cloned() else {
                    return;
                };
                let parts_at: Vec<Instant> = parts_at.iter().map(|at| self.origin + *at).collect();
                let invoke = Arc::clone(&self.invoke);
                let abandon = self.abandon.clone();
                let span = job_span(&job);
                self.tasks.spawn(async move {
                    let attempt = tokio::select! {
                        attempt = invoke.attempt(&job, &parts_at).instrument(span) => match attempt {
                            Ok(attempt) => Some(attempt),
                            Err(error) => {
                                // Left in `sending`: the next start resends
                                // it (same random_id).
                                tracing::error!(job = %job.id, %error, "cannot record a part as sent");
                                None
                            }
                        },
                        () = abandon.cancelled() => None,
                    };
                    Done::Attempted { job, scope, attempt }
                });
            }
            Action::Commit { job, follow, .. } => self.commit(job, follow),
            Action::Resume { .. } => {
                let bot = self.bot.clone();
                self.tasks.spawn(async move {
                    match queue.retry_now(&bot, Timestamp::now()).await {
                        Ok(0) => {}
                        Ok(jobs) => tracing::info!(%bot, jobs, "failed jobs retried now that the connection is back"),
                        // They keep their backoff.
                        Err(error) => tracing::warn!(%bot, %error, "cannot retry failed jobs early"),
                    }
                    Done::Resumed
                });
            }
            Action::Refuse { job, .. } => self.refuse(job),
            Action::Halted { reason, .. } => {
                tracing::warn!(
                    bot = %self.bot, %reason,
                    "sending stopped: Telegram refused the session; jobs stay queued \
                     while the bot signs in again"
                );
                self.halted = Some(reason);
            }
        }
    }

    /// Fails a claimed job whose user blocked the bot, without sending it.
    fn refuse(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let now = Timestamp::now();
        let report = Report::Failed(JobError::telegram(
            "USER_IS_BLOCKED",
            "the user has blocked the bot (updateBotStopped): not sent; \
             the user's jobs go out again once they unblock it",
        ));
        report.count(job, now);
        self.reports.insert(id, report);
        let attempted = Event::Attempted {
            bot: self.bot.clone(),
            job: id,
            outcome: Outcome::Settled,
        };
        self.core.handle(self.now(), attempted);
    }

    /// Makes an attempt's report durable; after a sent job, takes the
    /// chat's next one too if the core reserved it a slot.
    fn commit(&mut self, id: JobId, follow: Option<FloodScope>) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let report = self.reports.remove(&id);
        let queue = self.queue.clone();
        let expiry = self.settings.expiry;
        let abandon = self.abandon.clone();
        let span = job_span(&job);
        // Telegram has taken (or refused) the job: its outcome is recorded
        // however long the store refuses writes, so that the chat's line
        // moves on by itself once it takes them again. (Abandoned at
        // shutdown, the job stays `sending`: the next start resends it with
        // the same random_id.)
        let committing = async move {
            let now = Timestamp::now();
            let outcome = "the outcome of a send";
            let next = match report {
                Some(Report::Sent(ids)) => {
                    let admit = move |next: &Job| {
                        let expired = expiry.is_some_and(|e| e.has_expired(next.created_at, now));
                        follow.filter(|_| !expired)
                    };
                    let mark = || queue.mark_sent_then_take(id, ids.clone(), now, admit);
                    match until_stored_or(&abandon, outcome, mark).await {
                        Ok(Some((sent, next))) => {
                            tracing::debug!(job = %id, chat = %sent.chat, "sent");
                            next.map(|(next, _)| next)
                        }
                        Ok(None) => None,
                        Err(error) => {
                            unrecorded(id, &error);
                            None
                        }
                    }
                }
                Some(report) => {
                    let apply = || report.clone().apply(&queue, &job, now);
                    if let Err(error) = until_stored_or(&abandon, outcome, apply).await {
                        unrecorded(id, &error);
                    }
                    None
                }
                // The attempt did not finish: back in line, not counted.
                None => {
                    let release = || queue.release(id, now);
                    match until_stored_or(&abandon, "a job back in line", release).await {
                        Ok(_) | Err(QueueError::NotSending { .. } | QueueError::NotHeld { .. }) => {
                        }
                        // Still `sending`: the next start resends it.
                        Err(error) => {
                            tracing::warn!(job = %id, %error, "cannot put a job back in line")
                        }
                    }
                    None
                }
            };
            Done::Committed { job: id, next }
        };
        self.tasks.spawn(committing.instrument(span));
    }

    /// Feeds a task's result to the core.
    fn completed(&mut self, done: Result<Done, tokio::task::JoinError>) -> Result<(), QueueError> {
        let bot = self.bot.clone();
        let done = match done {
            Ok(done) => done,
            Err(error) => {
                // A task panicked: its job is found again on the next look
                // (or, left in `sending`, at the next start).
                tracing::error!(%error, "a send task failed");
                return Ok(());
            }
        };
        let now = self.now();
        let event = match done {
            Done::Due(Err(error)) if error.is_storage() => {
                // Reads that fail on the storage: look again soon.
                tracing::warn!(bot = %bot, %error, "cannot look at the queue; looking again soon");
                Event::Due {
                    bot,
                    heads: Vec::new(),
                    next_due: Some(now + STORE_RETRY),
                }
            }
            Done::Due(due) => {
                let (jobs, next) = due?;
                let heads = jobs.iter().map(head).collect();
                Event::Due {
                    bot,
                    heads,
                    next_due: next.map(|at| self.at(at)),
                }
            }
            Done::Claimed { asked, taken } => {
                let taken = taken?;
                let ids = taken.iter().map(|job| job.id).collect();
                for job in taken {
                    self.jobs.insert(job.id, job);
                }
                Event::Claimed {
                    bot,
                    asked,
                    taken: ids,
                }
            }
            Done::Attempted {
                job,
                scope,
                attempt,
            } => {
                let outcome = match attempt {
                    None => Outcome::Dropped,
                    Some(attempt) => {
                        let now = Timestamp::now();
                        let report = Report::of(
                            attempt,
                            &job,
                            scope,
                            self.settings.backoff,
                            self.settings.expiry,
                            rand::random(),
                            now,
                        );
                        report.count(&job, now);
                        let outcome = outcome_of(&report, |at| self.at(at));
                        self.reports.insert(job.id, report);
                        outcome
                    }
                };
                let id = job.id;
                self.jobs.insert(id, job);
                Event::Attempted {
                    bot,
                    job: id,
                    outcome,
                }
            }
            Done::Resumed => Event::Wake { bot },
            Done::Committed { job, next } => {
                let head = next.as_ref().map(head);
                if let Some(next) = next {
                    self.jobs.insert(next.id, next);
                }
                Event::Committed {
                    bot,
                    job,
                    next: head,
                }
            }
        };
        self.core.handle(now, event);
        Ok(())
    }

    /// Fails the queued jobs that have expired, when it is time to look.
    async fn sweep(&mut self) -> Result<(), QueueError> {
        let Some(expiry) = self.settings.expiry else {
            return Ok(());
        };
        if Instant::now() < self.next_sweep {
            return Ok(());
        }
        let now = Timestamp::now();
        let (expired, next) = match self.queue.expire(&self.bot, expiry, now).await {
            Ok(swept) => swept,
            // A full disk: expiry waits for space like everything else.
            Err(error) if error.is_storage() => {
                tracing::warn!(bot = %self.bot, %error, "cannot expire jobs now");
                self.next_sweep = Instant::now() + STORE_RETRY;
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if expired > 0 {
            tracing::info!(bot = %self.bot, jobs = expired, "expired jobs failed");
        }
        self.next_sweep = Instant::now() + SWEEP_EVERY;
        if let Some(at) = next {
            self.next_sweep = self
                .next_sweep
                .min(Instant::now() + report::until(at, Timestamp::now()));
        }
        Ok(())
    }

    /// Lets in-flight attempts and commits finish, up to the drain timeout;
    /// then the attempts still running are abandoned and their jobs put
    /// back in line.
    async fn drain(&mut self) {
        // Claimed jobs not yet invoked go back in line.
        self.perform_all();
        if self.core.in_flight() > 0 {
            tracing::info!(jobs = self.core.in_flight(), "waiting for in-flight sends");
        }
        let deadline = Instant::now() + self.settings.drain_timeout;
        while !self.tasks.is_empty() {
            let done = tokio::select! {
                done = self.tasks.join_next() => done,
                () = tokio::time::sleep_until(deadline), if !self.abandon.is_cancelled() => {
                    tracing::warn!(
                        jobs = self.core.in_flight(),
                        "in-flight sends did not finish in time; they go back in line"
                    );
                    self.abandon.cancel();
                    continue;
                }
            };
            let Some(done) = done else { break };
            if let Err(error) = self.completed(done) {
                tracing::warn!(%error, "the store failed while stopping");
            }
            // Commits the core asks for while stopping (no new claims).
            self.perform_all();
        }
    }
}

/// [`until_stored`], given up (`None`) once `abandon` is cancelled: the
/// drain time is up, and what was not stored is found again at the next
/// start.
async fn until_stored_or<T, F, Fut>(
    abandon: &CancellationToken,
    what: &str,
    write: F,
) -> Result<Option<T>, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    tokio::select! {
        stored = until_stored(what, write) => stored.map(Some),
        () = abandon.cancelled() => Ok(None),
    }
}

/// The span of everything logged about one job.
fn job_span(job: &Job) -> tracing::Span {
    tracing::info_span!("job", job_id = job.id.get(), bot = %job.bot, chat = %job.chat)
}

/// The core's view of a job.
fn head(job: &Job) -> Head {
    Head {
        id: job.id,
        chat: job.chat,
        parts: u16::try_from(job.parts.len()).unwrap_or(u16::MAX).max(1),
    }
}

/// What a report means for scheduling; `at` turns a store time into the
/// core's.
fn outcome_of(report: &Report, at: impl Fn(Timestamp) -> Duration) -> Outcome {
    match report {
        Report::Sent(_) => Outcome::Sent,
        Report::Failed(_) | Report::Retry { .. } => Outcome::Settled,
        Report::Flood { until, scope, .. } => Outcome::FloodWait {
            scope: *scope,
            until: at(*until),
        },
        Report::Halt { reason } => Outcome::Halt(reason.clone()),
    }
}

/// Whether a queue event can make something of `bot` due: a new or
/// returned job, or a chat whose line was freed by a failure (an expired
/// job). `sending` is the sender's own doing, and `sent` only comes from its
/// commits, which then hold the chat's line with its next job or end (and
/// the core looks again): a burst of sends costs no look per job. An event
/// naming another bot is not this sender's business.
fn wakes(bot: &str, event: Result<crate::queue::JobEvent, broadcast::error::RecvError>) -> bool {
    match event {
        Ok(event) => {
            !matches!(event.state, JobState::Sending | JobState::Sent)
                && event.bot.as_deref().is_none_or(|of| of == bot)
        }
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        // The queue is gone; the next look at it will say so.
        Err(broadcast::error::RecvError::Closed) => true,
    }
}

/// Logs an attempt's outcome the store did not take. A bot whose lease
/// moved on (this daemon was cut off from a shared store) is the new
/// holder's: it resends the job with the same `random_id`s.
fn unrecorded(id: JobId, error: &QueueError) {
    if let QueueError::NotHeld { bot, .. } = error {
        tracing::warn!(job = %id, bot, "the outcome of a send came after the bot's lease moved on; its new holder resends the job");
    } else {
        tracing::error!(job = %id, %error, "cannot record the outcome of a send");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatId;
    use crate::limits::Rates;
    use crate::queue::{DEFAULT_BOT, JobKind, NewJob};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// A connection whose sends all succeed, or all hang.
    struct Fake {
        hangs: bool,
        attempts: AtomicUsize,
        started: Notify,
    }

    impl Fake {
        fn new(hangs: bool) -> Arc<Fake> {
            Arc::new(Fake {
                hangs,
                attempts: AtomicUsize::new(0),
                started: Notify::new(),
            })
        }
    }

    impl Invoke for Fake {
        fn attempt<'a>(
            &'a self,
            job: &'a Job,
            _: &'a [Instant],
        ) -> Pin<Box<dyn Future<Output = Result<Attempt, QueueError>> + Send + 'a>> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            self.started.notify_one();
            Box::pin(async move {
                if self.hangs {
                    std::future::pending::<()>().await;
                }
                Ok(Attempt::Sent(vec![Some(1); job.parts.len()]))
            })
        }
    }

    /// A sender whose attempt did not finish within the drain time may
    /// leave its job `sending` (its release may not reach the store before
    /// the sender ends; the send may have reached Telegram); the bot's next
    /// sender in the same process — after a reconnect, a lease held again —
    /// sends it, rather than the chat's line waiting for a restart.
    #[tokio::test]
    async fn jobs_an_ended_sender_left_sending_are_sent_by_the_bots_next_sender() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&crate::store::test_location(dir.path())).unwrap();
        let enqueue = |chat: i64| {
            let payload = format!(r#"{{"text":"{chat}"}}"#);
            let new = NewJob::new("req", ChatId::user(chat), JobKind::Interactive, payload);
            let queue = queue.clone();
            async move { queue.enqueue(new).await.unwrap().id }
        };
        let settings = Settings {
            drain_timeout: Duration::from_millis(20),
            ..Settings::default()
        };
        let sender = |invoke: &Arc<Fake>| {
            let limits = Limits::new(Rates::default()).unwrap();
            let invoke: Arc<dyn Invoke> = invoke.clone();
            Sender::new(queue.clone(), DEFAULT_BOT, invoke, limits, settings)
        };

        let abandoned = enqueue(1).await;
        let hanging = Fake::new(true);
        let stop = CancellationToken::new();
        let first = tokio::spawn(sender(&hanging).run(stop.clone()));
        hanging.started.notified().await;
        stop.cancel();
        assert!(matches!(first.await.unwrap(), Ok(Stopped::Told)));
        // Certainly left `sending`: a job claimed by no sender still running.
        let left = enqueue(2).await;
        let claimed = queue
            .claim_due(DEFAULT_BOT, Timestamp::now(), 10)
            .await
            .unwrap();
        assert!(claimed.iter().any(|job| job.id == left), "{claimed:?}");

        let working = Fake::new(false);
        let stop = CancellationToken::new();
        let second = tokio::spawn(sender(&working).run(stop.clone()));
        for id in [abandoned, left] {
            let job = queue.settled(id, Duration::from_secs(30)).await.unwrap();
            assert_eq!(job.map(|job| job.state), Some(JobState::Sent), "{id}");
        }
        stop.cancel();
        second.await.unwrap().unwrap();
        assert_eq!(working.attempts.load(Ordering::SeqCst), 2);
        queue.close().await;
    }

    #[test]
    fn only_state_changes_that_can_free_one_of_its_lines_wake_a_bots_sender() {
        let event = |state, bot: Option<&str>| {
            Ok(crate::queue::JobEvent {
                id: JobId::new(1),
                chat: ChatId::user(1),
                state,
                bot: bot.map(Arc::from),
            })
        };
        assert!(!wakes("a", event(JobState::Sending, None)));
        assert!(!wakes("a", event(JobState::Sent, None)));
        for state in [JobState::Queued, JobState::Failed] {
            assert!(wakes("a", event(state, None)));
            assert!(wakes("a", event(state, Some("a"))));
            assert!(!wakes("a", event(state, Some("b"))));
        }
        assert!(wakes("a", Err(broadcast::error::RecvError::Lagged(3))));
    }
}
