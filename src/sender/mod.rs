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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use crate::limits::{FloodScope, Limits};
use crate::queue::{
    Expiry, Job, JobId, JobState, Queue, QueueError, StorageRefusal, Timestamp, until_stored,
};
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

/// The longest the loop sleeps without a reason: a guard against the wall
/// clock (the store's) jumping while it waits on the monotonic one.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// The longest between two sweeps for expired jobs while expiry is on: a
/// job that leaves `sending` for a retry is failed at most this late.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How soon the loop looks again after the store refused a write.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// How a send task ended, as far as the loop cares.
enum Ended {
    Done,
    Halt,
}

/// The loop that drains the queue.
pub struct Sender {
    queue: Queue,
    telegram: Arc<Telegram>,
    settings: Settings,
    /// The limiter, shared with the send tasks (see [`Lane`]).
    lane: Lane,
    tasks: JoinSet<Ended>,
    /// The job each send task holds now.
    in_flight: HashMap<task::Id, Arc<AtomicI64>>,
    halted: bool,
    /// When to look for expired jobs next (with expiry on).
    next_sweep: Instant,
}

impl Sender {
    pub fn new(queue: Queue, telegram: Arc<Telegram>, limits: Limits, settings: Settings) -> Self {
        Sender {
            queue,
            telegram,
            lane: Lane {
                limits: Arc::new(Mutex::new(limits)),
                origin: Instant::now(),
                open: Arc::new(AtomicBool::new(true)),
                backoff: settings.backoff,
                expiry: settings.expiry,
            },
            settings,
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            halted: false,
            next_sweep: Instant::now(),
        }
    }

    /// Sends until `stop` turns true (or its sender is dropped), then lets
    /// in-flight sends finish for up to `drain_timeout` and puts the rest
    /// back in line. An error means the store failed.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), QueueError> {
        let mut events = self.queue.subscribe();
        let mut look = true;
        let mut wake = None;
        let mut refused = false;
        let result = loop {
            let looked = match self.sweep().await {
                Ok(()) if look && !self.halted => self.dispatch().await.map(|next| wake = next),
                other => other,
            };
            match looked {
                Ok(()) => refused = false,
                // A full disk: nothing is claimed meanwhile; look again soon.
                Err(error) if error.is_storage() => {
                    if !refused {
                        tracing::warn!(%error, "the store refuses writes; the sender waits");
                    }
                    refused = true;
                    wake = Some(Instant::now() + STORE_RETRY);
                }
                Err(error) => break Err(error),
            }
            let mut idle = Instant::now() + MAX_IDLE;
            if self.settings.expiry.is_some() {
                idle = idle.min(self.next_sweep);
            }
            let sleep_until = wake.map_or(idle, |at: Instant| at.min(idle));
            look = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break Ok(()),
                Some(done) = self.tasks.join_next_with_id() => {
                    self.finished(done).await;
                    true
                }
                event = events.recv() => wakes(event),
                () = tokio::time::sleep_until(sleep_until) => true,
            };
            // Take in everything else that happened meanwhile, so that one
            // look at the queue serves a burst of events and ended sends.
            while let Some(done) = self.tasks.try_join_next_with_id() {
                self.finished(done).await;
                look = true;
            }
            loop {
                match events.try_recv() {
                    Ok(event) => look |= wakes(Ok(event)),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => look = true,
                    Err(_) => break,
                }
            }
        };
        self.lane.open.store(false, Ordering::Relaxed);
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
        let origin = self.lane.origin;
        let mut wake = None;
        let bot_ready = self.lane.limits().bot_ready_at();
        if bot_ready > origin.elapsed() {
            return Ok(Some(origin + bot_ready));
        }
        let due = self.queue.due(now, room).await?;
        let plan = Plan::make(&mut self.lane.limits(), &due, origin.elapsed());
        if let Some(ready) = plan.next_slot {
            wake = Some(origin + ready);
        }
        if !plan.allowed.is_empty() {
            let ids = plan.allowed.iter().map(|(id, _)| *id).collect();
            let scopes: HashMap<JobId, FloodScope> = plan.allowed.into_iter().collect();
            let claimed = self.queue.claim(ids, now, self.settings.expiry).await?;
            for job in claimed {
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

    /// Fails the queued jobs that have expired, when it is time to look.
    async fn sweep(&mut self) -> Result<(), QueueError> {
        let Some(expiry) = self.settings.expiry else {
            return Ok(());
        };
        if Instant::now() < self.next_sweep {
            return Ok(());
        }
        let now = Timestamp::now();
        let (expired, next) = self.queue.expire(expiry, now).await?;
        if expired > 0 {
            tracing::info!(jobs = expired, "expired jobs failed");
        }
        self.next_sweep = Instant::now() + SWEEP_EVERY;
        if let Some(at) = next {
            self.next_sweep = self
                .next_sweep
                .min(Instant::now() + report::until(at, Timestamp::now()));
        }
        Ok(())
    }

    fn spawn(&mut self, job: Job, scope: FloodScope) {
        let holding = Arc::new(AtomicI64::new(job.id.get()));
        let telegram = Arc::clone(&self.telegram);
        let queue = self.queue.clone();
        let lane = self.lane.clone();
        let handle = self.tasks.spawn(deliver(
            telegram,
            queue,
            job,
            scope,
            lane,
            Arc::clone(&holding),
        ));
        self.in_flight.insert(handle.id(), holding);
    }

    /// A send task ended.
    async fn finished(&mut self, done: Result<(task::Id, Ended), JoinError>) {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(error) => error.id(),
        };
        let job = self
            .in_flight
            .remove(&task)
            .map(|holding| JobId::new(holding.load(Ordering::Relaxed)));
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
                self.lane.open.store(false, Ordering::Relaxed);
                self.telegram.set_state(crate::bot_state::BotState::Halted {
                    reason: "Telegram refused the session; fix the session or token and restart"
                        .into(),
                });
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

/// Which due jobs the limits let go now.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Jobs to claim, each with the limiter's guess (taken before its send
    /// counted) of which limit a flood wait for it would come from.
    allowed: Vec<(JobId, FloodScope)>,
    /// When the limits let the first refused job go.
    next_slot: Option<Duration>,
}

impl Plan {
    /// Takes a slot per message for each job of `due` the limits allow at
    /// `now` (in order: the oldest job first).
    fn make(limits: &mut Limits, due: &[Job], now: Duration) -> Plan {
        let mut plan = Plan {
            allowed: Vec::with_capacity(due.len()),
            next_slot: None,
        };
        for job in due {
            match admit(limits, job, now) {
                Ok(scope) => plan.allowed.push((job.id, scope)),
                Err(ready) => {
                    plan.next_slot = Some(plan.next_slot.map_or(ready, |at| at.min(ready)));
                }
            }
        }
        plan
    }
}

/// Takes the slots `job` needs at `now` (one per message), with the
/// limiter's guess of the scope of a flood wait for it; or says when the
/// limits let it go.
fn admit(limits: &mut Limits, job: &Job, now: Duration) -> Result<FloodScope, Duration> {
    let scope = limits.flood_scope(job.chat, now);
    limits.try_acquire(job.chat, now)?;
    // The job's other messages go out right behind it.
    for _ in 1..job.parts.len() {
        limits.record(job.chat, now);
    }
    Ok(scope)
}

/// What a send task needs to go on with its chat's next job by itself: when
/// a job is sent, the same commit takes the chat's next due job if the
/// limits allow, so a busy chat costs one commit per job and no look at the
/// whole queue.
#[derive(Clone)]
struct Lane {
    limits: Arc<Mutex<Limits>>,
    /// The limiter's clock origin.
    origin: Instant,
    /// False once the sender stops or halts: tasks take no further job.
    open: Arc<AtomicBool>,
    backoff: Backoff,
    expiry: Option<Expiry>,
}

impl Lane {
    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        // The limiter's state stays consistent whatever panicked holding it.
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `next` may follow at once (taking its slots if so): the
    /// sender still sends, `next` has not expired at `now`, the limits allow.
    fn admit(&self, next: &Job, now: Timestamp) -> Option<FloodScope> {
        if !self.open.load(Ordering::Relaxed) {
            return None;
        }
        if self
            .expiry
            .is_some_and(|expiry| expiry.has_expired(next.created_at, now))
        {
            return None; // the sender's claim fails it
        }
        admit(&mut self.limits(), next, self.origin.elapsed()).ok()
    }
}

/// Whether a queue event can make something due: a new or returned job, or
/// a chat whose line was freed by a failure (an expired job). `sending` is
/// the loop's own doing, and `sent` only comes from a send task, which then
/// either holds the chat's line with its next job or ends, and its end wakes
/// the loop: a burst of sends costs no look at the queue per job.
fn wakes(event: Result<crate::queue::JobEvent, broadcast::error::RecvError>) -> bool {
    match event {
        Ok(event) => !matches!(event.state, JobState::Sending | JobState::Sent),
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        // The queue is gone; the next look at it will say so.
        Err(broadcast::error::RecvError::Closed) => true,
    }
}

fn earliest(current: Option<Instant>, at: Instant) -> Option<Instant> {
    Some(current.map_or(at, |current| current.min(at)))
}

/// One chat's send task: an attempt at a job, then its report to the
/// store; after a sent job, the chat's next one if [`Lane::admit`] lets it
/// follow. `holding` tells the loop which job the task holds.
async fn deliver(
    telegram: Arc<Telegram>,
    queue: Queue,
    mut job: Job,
    mut scope: FloodScope,
    lane: Lane,
    holding: Arc<AtomicI64>,
) -> Ended {
    loop {
        let span =
            tracing::info_span!("job", job_id = job.id.get(), bot = %job.bot, chat = %job.chat);
        let attempt = match attempt::send(&telegram, &queue, &job)
            .instrument(span.clone())
            .await
        {
            Ok(attempt) => attempt,
            Err(error) => {
                // The store is closed (a full disk is waited out): left in
                // `sending`, the next start resends it (same random_id).
                tracing::error!(job = %job.id, %error, "cannot record a part as sent");
                return Ended::Done;
            }
        };
        let now = Timestamp::now();
        let report = Report::of(
            attempt,
            &job,
            scope,
            lane.backoff,
            lane.expiry,
            rand::random(),
            now,
        );
        report.count(&job, now);
        // Telegram has taken (or refused) the job: its outcome is recorded
        // however long the store refuses writes, so that the chat's line
        // moves on by itself once it takes them again.
        if let Report::Sent(ids) = report {
            let recorded = until_stored("the outcome of a send", || {
                let next_lane = lane.clone();
                let admit = move |next: &Job| next_lane.admit(next, now);
                queue.mark_sent_then_take(job.id, ids.clone(), now, admit)
            })
            .await;
            match recorded {
                Ok((_, next)) => {
                    span.in_scope(|| tracing::debug!(job = %job.id, chat = %job.chat, "sent"));
                    let Some((next, next_scope)) = next else {
                        return Ended::Done;
                    };
                    holding.store(next.id.get(), Ordering::Relaxed);
                    (job, scope) = (next, next_scope);
                    continue;
                }
                Err(error) => {
                    tracing::error!(job = %job.id, %error, "cannot record the outcome of a send");
                    return Ended::Done;
                }
            }
        }
        let ended = match report {
            Report::Halt { .. } => Ended::Halt,
            _ => Ended::Done,
        };
        let recorded = until_stored("the outcome of a send", || {
            report.clone().apply(&queue, &job, now)
        })
        .instrument(span.clone())
        .await;
        if let Err(error) = recorded {
            span.in_scope(
                || tracing::error!(job = %job.id, %error, "cannot record the outcome of a send"),
            );
        }
        return ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatId;
    use crate::limits::Rates;
    use crate::queue::{JobKind, Part};

    fn job(id: i64, chat: i64, parts: u16) -> Job {
        Job {
            id: JobId::new(id),
            request_id: format!("r{id}"),
            bot: "default".into(),
            chat: ChatId::user(chat),
            kind: JobKind::Interactive,
            payload: "{}".into(),
            state: JobState::Queued,
            attempts: 0,
            not_before: Timestamp::from_millis(0),
            parts: (0..parts)
                .map(|seq| Part {
                    seq,
                    random_id: id * 10 + i64::from(seq),
                    message_id: id,
                    channel_message_id: None,
                })
                .collect(),
            error: None,
            idempotency_key: None,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            wire: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_bot_wide_limit_lets_a_burst_through_then_names_the_next_slot() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        let due: Vec<Job> = (1..=5).map(|i| job(i, i, 1)).collect();
        let plan = Plan::make(&mut limits, &due, ms(0));
        // Burst 3 at 30/s: three go, the fourth may go one interval later.
        let ids: Vec<i64> = plan.allowed.iter().map(|(id, _)| id.get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(plan.next_slot, Some(Duration::from_micros(33_334)));
    }

    #[test]
    fn a_chat_that_just_sent_waits_for_its_own_slot_while_others_go() {
        let mut limits = Limits::new(Rates {
            bot_per_second: 1000.0,
            ..Rates::default()
        })
        .unwrap();
        let first = Plan::make(&mut limits, &[job(1, 7, 1)], ms(0));
        assert_eq!(first.allowed, [(JobId::new(1), FloodScope::Chat)]);
        let second = Plan::make(&mut limits, &[job(2, 7, 1), job(3, 8, 1)], ms(10));
        assert_eq!(second.allowed, [(JobId::new(3), FloodScope::Chat)]);
        assert_eq!(second.next_slot, Some(ms(1000)));
    }

    #[test]
    fn every_part_of_a_job_takes_a_slot() {
        let mut limits = Limits::new(Rates {
            bot_per_second: 1000.0,
            ..Rates::default()
        })
        .unwrap();
        let plan = Plan::make(&mut limits, &[job(1, 7, 3)], ms(0));
        assert_eq!(plan.allowed.len(), 1);
        // Three messages to the chat at 1/s: its next slot is 3 s away.
        let next = Plan::make(&mut limits, &[job(2, 7, 1)], ms(1));
        assert!(next.allowed.is_empty());
        assert_eq!(next.next_slot, Some(ms(3000)));
    }

    #[test]
    fn only_state_changes_that_can_free_a_line_wake_the_loop() {
        let event = |state| {
            Ok(crate::queue::JobEvent {
                id: JobId::new(1),
                chat: ChatId::user(1),
                state,
            })
        };
        assert!(!wakes(event(JobState::Sending)));
        assert!(!wakes(event(JobState::Sent)));
        for state in [JobState::Queued, JobState::Failed] {
            assert!(wakes(event(state)));
        }
        assert!(wakes(Err(broadcast::error::RecvError::Lagged(3))));
    }
}
