//! The sender's decisions, as a deterministic state machine (in the style
//! of quinn-proto's connection).
//!
//! The [`Core`] owns no clock, socket or store. It is told what happened
//! ([`Event`]: the store has work, the store's answer to a look or a claim,
//! an attempt's outcome, a commit's result, a connection up or down) and
//! the time (`now`, one clock: time since the shell's origin), and it says
//! what to do next ([`Core::poll_action`]: look at the store, claim these
//! jobs, invoke that one for bot B, commit this outcome) and when to be woken
//! ([`Core::poll_timeout`]). The async shell (`sender::Sender`) does the
//! I/O. Its rules, for any number of bots at once:
//!
//! - a chat has at most one job in flight, so a chat's jobs go out in the
//!   order the store hands them (enqueue order);
//! - a job is invoked once per claim, and claimed again only after the store
//!   put it back (a retry, a flood wait, a release);
//! - every message takes a slot of its bot's [`Limits`] twice: once to be
//!   claimed (a slot reserved for a chat's next job is given back if there
//!   was none), and once more, on a second set of meters that is never
//!   given anything back, when it is invoked. Claims and commits take
//!   store time that varies (a writer busy with a burst of enqueues), so
//!   jobs claimed at an even pace can come back together, and a refund
//!   after the bot meter ran idle gives back a slot time had already
//!   absorbed; either lets a burst through that Telegram answers with
//!   `FLOOD_WAIT`. The second meters see the invokes themselves, so what
//!   goes on the wire keeps the pace whatever the store's timing. A job's
//!   later parts are scheduled at its chat's pace (one a second to a
//!   private chat) and charged to the bot meter when they go;
//! - a restarted worker first records the sends of the last minute it finds
//!   in the store ([`Core::record_sent`]), so its meters start where the
//!   last run's ended;
//! - a bot-wide `FLOOD_WAIT` holds that bot only; a halted or disconnected
//!   bot claims nothing, and other bots go on;
//! - when a bot's connection comes back after it was down, the jobs that
//!   failed meanwhile (waiting out their backoff) are due at once
//!   ([`Action::Resume`]): their failures were the connection's;
//! - a job for a user who blocked the bot is claimed and refused without a
//!   call to Telegram (and takes no slot), until the user unblocks it;
//! - once stopping, nothing new is claimed or followed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::chat::ChatId;
use crate::limits::{FloodScope, Limits};
use crate::queue::JobId;

/// A bot, by name.
pub type BotKey = String;

/// What the core needs to know of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub id: JobId,
    pub chat: ChatId,
    /// Telegram messages it sends (each takes a slot).
    pub parts: u16,
}

/// How an attempt ended, as far as scheduling cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Failed for good, or to be retried later: the store decides when.
    Settled,
    /// `FLOOD_WAIT`: the chat (or the bot) is held until `until`.
    FloodWait {
        scope: FloodScope,
        until: Duration,
    },
    /// The session is unusable: the bot stops sending.
    Halt(String),
    /// The attempt did not finish (its task failed): the job goes back.
    Dropped,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The bot's connection is up (signed in) or down.
    Connection { bot: BotKey, up: bool },
    /// Something in the store may have become due for the bot.
    Wake { bot: BotKey },
    /// The answer to [`Action::Look`]: the bot's due heads (oldest first,
    /// one per chat) and when the next job not yet due becomes due.
    Due {
        bot: BotKey,
        heads: Vec<Head>,
        next_due: Option<Duration>,
    },
    /// The answer to [`Action::Claim`] for `asked`: which of them the store
    /// took (marked `sending`); the others were no longer due.
    Claimed {
        bot: BotKey,
        asked: Vec<JobId>,
        taken: Vec<JobId>,
    },
    /// An invoked job's attempt ended.
    Attempted {
        bot: BotKey,
        job: JobId,
        outcome: Outcome,
    },
    /// The answer to [`Action::Commit`]: the chat's next job, taken in the
    /// same commit (only when `follow` was allowed).
    Committed {
        bot: BotKey,
        job: JobId,
        next: Option<Head>,
    },
    /// The chats of the bot whose user blocked it now (all of them: the
    /// set replaces the one known before).
    Blocked { bot: BotKey, chats: HashSet<ChatId> },
    /// Stop: claim and follow nothing more.
    Stop,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read up to `room` of the bot's due heads; answer [`Event::Due`].
    Look { bot: BotKey, room: usize },
    /// Take these jobs; answer [`Event::Claimed`].
    Claim { bot: BotKey, jobs: Vec<JobId> },
    /// Send this claimed job through the bot's connection; answer
    /// [`Event::Attempted`]. `scope` is the limiter's guess of which limit a
    /// flood wait would come from.
    Invoke {
        bot: BotKey,
        job: JobId,
        scope: FloodScope,
        /// When each of its messages may go out, in order (the first: now).
        /// A chat takes about one message a second, so a job of several
        /// parts is spread out rather than sent back to back.
        parts_at: Vec<Duration>,
    },
    /// Make the attempt's outcome durable; after a sent job, also take the
    /// chat's next due job if `follow` (its slot is reserved). Answer
    /// [`Event::Committed`].
    Commit {
        bot: BotKey,
        job: JobId,
        follow: Option<FloodScope>,
    },
    /// Fail this claimed job without sending it: its user blocked the bot
    /// (`USER_IS_BLOCKED`). Answer [`Event::Attempted`] (`Settled`).
    Refuse { bot: BotKey, job: JobId },
    /// Telegram refused the bot's session.
    Halted { bot: BotKey, reason: String },
    /// The bot's connection is back: make its jobs waiting out a transient
    /// failure due now; answer [`Event::Wake`].
    Resume { bot: BotKey },
}

/// How a claimed job goes out.
#[derive(Debug, Clone, Copy)]
enum Admission {
    /// Sent, once the wire meters let it.
    Send,
    /// Refused: its user blocked the bot.
    Refuse,
}

/// The longest the core waits without a reason before looking again: a
/// guard against the store's wall clock moving apart from `now`.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// One bot's part of the schedule.
struct Lane {
    limits: Limits,
    connected: bool,
    /// The connection was reported down since it was last up.
    was_down: bool,
    halted: bool,
    /// A bot-wide flood wait: nothing is claimed before this.
    held_until: Duration,
    /// A look is wanted (something may be due).
    look: bool,
    /// A look is outstanding.
    looking: bool,
    /// When to look again by itself (the next due job, the limiter's next
    /// slot, the idle guard).
    look_at: Option<Duration>,
    /// Jobs between claim and commit, with their chat.
    in_flight: HashMap<JobId, ChatId>,
    /// Chats with a job in flight or being claimed.
    busy: HashSet<ChatId>,
    /// Jobs named in a claim not yet answered, with their head.
    claiming: HashMap<JobId, (Head, Admission)>,
    /// Claimed jobs waiting for the wire meters, oldest first.
    ready: Vec<Head>,
    /// The limits again, taken as jobs are invoked (never refunded).
    wire: Limits,
    /// Later parts of invoked jobs, by when they go: charged to the wire's
    /// bot meter when their time comes (a slot reserved ahead there would
    /// hold every chat until then).
    scheduled: Vec<Duration>,
    /// Next jobs reserved a slot by a commit, by the job committed.
    following: HashMap<JobId, ChatId>,
    /// Chats whose user blocked the bot.
    blocked: HashSet<ChatId>,
}

impl Lane {
    fn new(limits: Limits) -> Self {
        Lane {
            wire: limits.clone(),
            ready: Vec::new(),
            scheduled: Vec::new(),
            limits,
            connected: false,
            was_down: false,
            halted: false,
            held_until: Duration::ZERO,
            look: true,
            looking: false,
            look_at: None,
            in_flight: HashMap::new(),
            busy: HashSet::new(),
            claiming: HashMap::new(),
            following: HashMap::new(),
            blocked: HashSet::new(),
        }
    }

    fn sends(&self, stopping: bool, now: Duration) -> bool {
        self.connected && !self.halted && !stopping && self.held_until <= now
    }

    fn room(&self, max_in_flight: usize) -> usize {
        max_in_flight.saturating_sub(self.in_flight.len() + self.claiming.len())
    }

    fn wake_at(&mut self, at: Duration) {
        self.look_at = Some(self.look_at.map_or(at, |current| current.min(at)));
    }

    /// Takes the slots `head` needs at `now` to be claimed, or says when it
    /// may be.
    fn admit(&mut self, head: &Head, now: Duration) -> Result<(), Duration> {
        self.limits.try_acquire(head.chat, now)?;
        for _ in 1..head.parts {
            self.limits.record(head.chat, now);
        }
        Ok(())
    }

    /// The ready job the wire meters let out at `now`, the scope a flood
    /// wait for it would have, and when each of its parts may go (each
    /// part's slot taken at the first time the meters allow it).
    fn next_on_wire(&mut self, now: Duration) -> Option<(Head, FloodScope, Vec<Duration>)> {
        let wire = &mut self.wire;
        self.scheduled.retain(|&at| {
            let due = at <= now;
            if due {
                wire.record_bot(at);
            }
            !due
        });
        let index = self
            .ready
            .iter()
            .position(|head| self.wire.ready_at(head.chat) <= now)?;
        let head = self.ready.remove(index);
        let scope = self.wire.flood_scope(head.chat, now);
        self.wire.record(head.chat, now);
        let mut parts_at = vec![now];
        for _ in 1..head.parts {
            let at = self.wire.chat_ready_at(head.chat).max(now);
            self.wire.record_chat(head.chat, at);
            self.scheduled.push(at);
            parts_at.push(at);
        }
        Some((head, scope, parts_at))
    }

    /// When the wire meters let the next ready job out.
    fn wire_ready_at(&self) -> Option<Duration> {
        self.ready
            .iter()
            .map(|head| self.wire.ready_at(head.chat))
            .min()
    }
}

/// The scheduler of every bot's sends.
pub struct Core {
    lanes: BTreeMap<BotKey, Lane>,
    /// Jobs in flight per bot at most.
    max_in_flight: usize,
    stopping: bool,
    actions: VecDeque<Action>,
}

impl Core {
    pub fn new(max_in_flight: usize) -> Self {
        Core {
            lanes: BTreeMap::new(),
            max_in_flight: max_in_flight.max(1),
            stopping: false,
            actions: VecDeque::new(),
        }
    }

    /// Adds `bot`, sending within `limits` (disconnected until told).
    pub fn add_bot(&mut self, bot: impl Into<BotKey>, limits: Limits) {
        self.lanes.insert(bot.into(), Lane::new(limits));
    }

    /// Jobs between claim and commit, for every bot.
    pub fn in_flight(&self) -> usize {
        self.lanes
            .values()
            .map(|lane| lane.in_flight.len() + lane.claiming.len())
            .sum()
    }

    /// Takes in that `bot` sent a message to `chat` at `at` (before this
    /// core started: a restarted worker's last minute, from the store), in
    /// time order.
    pub fn record_sent(&mut self, bot: &str, chat: ChatId, at: Duration) {
        if let Some(lane) = self.lanes.get_mut(bot) {
            lane.limits.record(chat, at);
            lane.wire.record(chat, at);
        }
    }

    /// Whether the bot was halted.
    pub fn is_halted(&self, bot: &str) -> bool {
        self.lanes.get(bot).is_some_and(|lane| lane.halted)
    }

    /// Takes in `event` at `now`.
    pub fn handle(&mut self, now: Duration, event: Event) {
        let stopping = self.stopping;
        match event {
            Event::Stop => {
                self.stopping = true;
                // Claimed but not invoked: back in line.
                for (bot, lane) in &mut self.lanes {
                    for head in lane.ready.drain(..) {
                        self.actions.push_back(Action::Commit {
                            bot: bot.clone(),
                            job: head.id,
                            follow: None,
                        });
                    }
                }
            }
            Event::Connection { bot, up } => {
                if let Some(lane) = self.lanes.get_mut(&bot) {
                    if up && lane.was_down && !lane.halted {
                        self.actions.push_back(Action::Resume { bot: bot.clone() });
                    }
                    lane.was_down = !up;
                    lane.connected = up;
                    lane.look |= up;
                }
            }
            Event::Wake { bot } => {
                if let Some(lane) = self.lanes.get_mut(&bot) {
                    lane.look = true;
                }
            }
            Event::Blocked { bot, chats } => {
                if let Some(lane) = self.lanes.get_mut(&bot) {
                    // An unblocked chat's jobs may go out now.
                    lane.look |= lane.blocked.iter().any(|chat| !chats.contains(chat));
                    lane.blocked = chats;
                }
            }
            Event::Due {
                bot,
                heads,
                next_due,
            } => {
                let Some(lane) = self.lanes.get_mut(&bot) else {
                    return;
                };
                lane.looking = false;
                if let Some(at) = next_due {
                    lane.wake_at(at.max(now));
                }
                if !lane.sends(stopping, now) {
                    return;
                }
                let mut jobs = Vec::new();
                for head in heads {
                    if lane.busy.contains(&head.chat) {
                        continue;
                    }
                    if lane.blocked.contains(&head.chat) {
                        lane.busy.insert(head.chat);
                        lane.claiming.insert(head.id, (head, Admission::Refuse));
                        jobs.push(head.id);
                        continue;
                    }
                    match lane.admit(&head, now) {
                        Ok(()) => {
                            lane.busy.insert(head.chat);
                            lane.claiming.insert(head.id, (head, Admission::Send));
                            jobs.push(head.id);
                        }
                        Err(ready) => lane.wake_at(ready),
                    }
                }
                if !jobs.is_empty() {
                    self.actions.push_back(Action::Claim { bot, jobs });
                }
            }
            Event::Claimed { bot, asked, taken } => {
                let Some(lane) = self.lanes.get_mut(&bot) else {
                    return;
                };
                let taken: HashSet<JobId> = taken.into_iter().collect();
                for id in asked {
                    let Some((head, admission)) = lane.claiming.remove(&id) else {
                        continue;
                    };
                    if taken.contains(&id) {
                        lane.in_flight.insert(id, head.chat);
                        match admission {
                            Admission::Refuse => self.actions.push_back(Action::Refuse {
                                bot: bot.clone(),
                                job: id,
                            }),
                            Admission::Send if stopping => self.actions.push_back(Action::Commit {
                                bot: bot.clone(),
                                job: id,
                                follow: None,
                            }),
                            Admission::Send => lane.ready.push(head),
                        }
                    } else {
                        // No longer due: its slots are given back.
                        if let Admission::Send = admission {
                            for _ in 0..head.parts {
                                lane.limits.refund(head.chat);
                            }
                        }
                        lane.busy.remove(&head.chat);
                        lane.look = true;
                    }
                }
            }
            Event::Attempted { bot, job, outcome } => {
                let Some(lane) = self.lanes.get_mut(&bot) else {
                    return;
                };
                let Some(&chat) = lane.in_flight.get(&job) else {
                    return;
                };
                let mut follow = None;
                match outcome {
                    Outcome::Sent if lane.sends(stopping, now) => {
                        let scope = lane.limits.flood_scope(chat, now);
                        if lane.limits.try_acquire(chat, now).is_ok() {
                            lane.following.insert(job, chat);
                            follow = Some(scope);
                        }
                    }
                    Outcome::FloodWait {
                        scope: FloodScope::Bot,
                        until,
                    } => {
                        lane.held_until = lane.held_until.max(until);
                        lane.look = true;
                    }
                    Outcome::Halt(reason) if !lane.halted => {
                        lane.halted = true;
                        self.actions.push_back(Action::Halted {
                            bot: bot.clone(),
                            reason,
                        });
                    }
                    _ => {}
                }
                self.actions.push_back(Action::Commit { bot, job, follow });
            }
            Event::Committed { bot, job, next } => {
                let Some(lane) = self.lanes.get_mut(&bot) else {
                    return;
                };
                let Some(chat) = lane.in_flight.remove(&job) else {
                    return;
                };
                let reserved = lane.following.remove(&job).is_some();
                match next {
                    Some(head) if reserved && head.chat == chat && lane.blocked.contains(&chat) => {
                        // Blocked since: the reserved slot goes back unused.
                        lane.limits.refund(chat);
                        lane.in_flight.insert(head.id, chat);
                        self.actions.push_back(Action::Refuse { bot, job: head.id });
                    }
                    Some(head) if reserved && head.chat == chat => {
                        // Its first slot was reserved; the others follow.
                        for _ in 1..head.parts {
                            lane.limits.record(chat, now);
                        }
                        lane.in_flight.insert(head.id, chat);
                        if stopping {
                            self.actions.push_back(Action::Commit {
                                bot,
                                job: head.id,
                                follow: None,
                            });
                        } else {
                            lane.ready.push(head);
                        }
                    }
                    _ => {
                        if reserved {
                            lane.limits.refund(chat);
                        }
                        lane.busy.remove(&chat);
                        lane.look = true;
                    }
                }
            }
        }
    }

    /// Takes in that the time `poll_timeout` named has come.
    pub fn handle_timeout(&mut self, now: Duration) {
        for lane in self.lanes.values_mut() {
            if lane.look_at.is_some_and(|at| at <= now) {
                lane.look_at = None;
                lane.look = true;
            }
        }
    }

    /// The next thing to do at `now`, if any.
    pub fn poll_action(&mut self, now: Duration) -> Option<Action> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        for (bot, lane) in &mut self.lanes {
            if lane.halted {
                // Claimed but not invoked: back in line.
                if let Some(head) = lane.ready.pop() {
                    return Some(Action::Commit {
                        bot: bot.clone(),
                        job: head.id,
                        follow: None,
                    });
                }
                continue;
            }
            if let Some((head, scope, parts_at)) = lane.next_on_wire(now) {
                return Some(Action::Invoke {
                    bot: bot.clone(),
                    job: head.id,
                    scope,
                    parts_at,
                });
            }
        }
        let stopping = self.stopping;
        let max_in_flight = self.max_in_flight;
        for (bot, lane) in &mut self.lanes {
            if !lane.look || lane.looking || !lane.sends(stopping, now) {
                continue;
            }
            let room = lane.room(max_in_flight);
            if room == 0 {
                continue;
            }
            let bot_ready = lane.limits.bot_ready_at();
            if bot_ready > now {
                lane.wake_at(bot_ready);
                continue;
            }
            lane.look = false;
            lane.looking = true;
            lane.look_at = Some(now + MAX_IDLE);
            return Some(Action::Look {
                bot: bot.clone(),
                room,
            });
        }
        None
    }

    /// When to call [`Core::handle_timeout`] next (`None`: only an event
    /// can change anything).
    pub fn poll_timeout(&self, now: Duration) -> Option<Duration> {
        let stopping = self.stopping;
        let looks = self
            .lanes
            .values()
            .filter(|lane| lane.connected && !lane.halted && !stopping)
            .filter_map(|lane| {
                let held = (lane.held_until > now).then_some(lane.held_until);
                match (lane.look_at, held) {
                    (Some(at), Some(held)) => Some(at.max(held)),
                    (at, held) => at.or(held),
                }
            });
        // Claimed jobs go out whatever else holds the bot.
        let invokes = self.lanes.values().filter_map(Lane::wire_ready_at);
        looks.chain(invokes).min()
    }
}

#[cfg(test)]
mod tests {
    //! The core against a model of the store, on the core's own clock: no
    //! sockets, no sleeps, many bots at once.

    use std::collections::BTreeMap;

    use super::*;
    use crate::limits::Rates;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum State {
        Queued,
        Sending,
        Sent,
        Failed,
    }

    #[derive(Debug, Clone)]
    struct StoredJob {
        head: Head,
        state: State,
        not_before: Duration,
    }

    /// The store's rules as the queue keeps them: a chat's line, holds,
    /// `sending` marks, the chained take of a chat's next job.
    #[derive(Default)]
    struct Store {
        jobs: BTreeMap<BotKey, Vec<StoredJob>>,
        chat_holds: HashMap<(BotKey, ChatId), Duration>,
        bot_holds: HashMap<BotKey, Duration>,
        next_id: i64,
        /// A failed attempt's backoff (1 s unless set).
        backoff: Option<Duration>,
        /// Jobs the core refused (their user blocked the bot), and when.
        refused: Vec<(Duration, JobId)>,
    }

    impl Store {
        fn enqueue(&mut self, bot: &str, chat: i64, parts: u16) -> JobId {
            self.next_id += 1;
            let id = JobId::new(self.next_id);
            self.jobs.entry(bot.into()).or_default().push(StoredJob {
                head: Head {
                    id,
                    chat: ChatId::user(chat),
                    parts,
                },
                state: State::Queued,
                not_before: Duration::ZERO,
            });
            id
        }

        /// The oldest unsent job of each chat of `bot`.
        fn heads(&self, bot: &str) -> Vec<&StoredJob> {
            let mut seen = HashSet::new();
            self.jobs
                .get(bot)
                .into_iter()
                .flatten()
                .filter(|job| !matches!(job.state, State::Sent | State::Failed))
                .filter(|job| seen.insert(job.head.chat))
                .collect()
        }

        fn free_at(&self, bot: &str, job: &StoredJob) -> Duration {
            let chat = self
                .chat_holds
                .get(&(bot.to_owned(), job.head.chat))
                .copied()
                .unwrap_or_default();
            let whole = self.bot_holds.get(bot).copied().unwrap_or_default();
            job.not_before.max(chat).max(whole)
        }

        fn due(&self, bot: &str, now: Duration, room: usize) -> (Vec<Head>, Option<Duration>) {
            let heads: Vec<&StoredJob> = self
                .heads(bot)
                .into_iter()
                .filter(|job| job.state == State::Queued)
                .collect();
            let due = heads
                .iter()
                .filter(|job| self.free_at(bot, job) <= now)
                .take(room)
                .map(|job| job.head)
                .collect();
            let next = heads
                .iter()
                .map(|job| self.free_at(bot, job))
                .filter(|at| *at > now)
                .min();
            (due, next)
        }

        fn job(&mut self, bot: &str, id: JobId) -> &mut StoredJob {
            let jobs = self.jobs.get_mut(bot).unwrap();
            jobs.iter_mut().find(|job| job.head.id == id).unwrap()
        }

        /// Makes `outcome` durable, as `Report::apply` and
        /// `mark_sent_then_take` do.
        fn commit(
            &mut self,
            bot: &str,
            id: JobId,
            outcome: &Outcome,
            follow: bool,
            now: Duration,
        ) -> Option<Head> {
            let chat = self.job(bot, id).head.chat;
            let backoff = self.backoff.unwrap_or(Duration::from_secs(1));
            let job = self.job(bot, id);
            if job.state == State::Failed {
                return None;
            }
            match outcome {
                Outcome::Sent => job.state = State::Sent,
                Outcome::Settled => {
                    // A retry after the backoff.
                    job.state = State::Queued;
                    job.not_before = now + backoff;
                }
                Outcome::FloodWait { scope, until } => {
                    job.state = State::Queued;
                    match scope {
                        FloodScope::Chat => {
                            self.chat_holds.insert((bot.to_owned(), chat), *until);
                        }
                        FloodScope::Bot => {
                            self.bot_holds.insert(bot.to_owned(), *until);
                        }
                    }
                }
                Outcome::Halt(_) | Outcome::Dropped => job.state = State::Queued,
            }
            if *outcome != Outcome::Sent || !follow {
                return None;
            }
            let next = self
                .heads(bot)
                .into_iter()
                .find(|job| job.head.chat == chat)
                .map(|job| job.head.id)?;
            self.take_if_due(bot, next, now)
                .then(|| self.job(bot, next).head)
        }

        /// Makes `bot`'s jobs waiting out a backoff due at `now`.
        fn retry_now(&mut self, bot: &str, now: Duration) {
            for job in self.jobs.get_mut(bot).into_iter().flatten() {
                if job.state == State::Queued && job.not_before > now {
                    job.not_before = now;
                }
            }
        }

        fn take_if_due(&mut self, bot: &str, id: JobId, now: Duration) -> bool {
            let (due, _) = self.due(bot, now, usize::MAX);
            if !due.iter().any(|head| head.id == id) {
                return false;
            }
            self.job(bot, id).state = State::Sending;
            true
        }
    }

    /// What one attempt comes to, by bot, job and how many attempts it had.
    type Telegram = dyn FnMut(&str, JobId, u32, Duration) -> Outcome;

    /// One invoke: when, by which bot, of which job and chat.
    #[derive(Debug, Clone)]
    struct Sent {
        at: Duration,
        bot: BotKey,
        job: JobId,
        chat: ChatId,
        /// When each of its messages went out.
        parts_at: Vec<Duration>,
    }

    /// Runs `core` against `store` until nothing is left to do or `until`;
    /// every I/O takes 2 ms. Returns every invoke and halt.
    fn drive(
        core: &mut Core,
        store: &mut Store,
        telegram: &mut Telegram,
        until: Duration,
    ) -> (Vec<Sent>, Vec<BotKey>) {
        let mut two_ms = |_: &Action| Duration::from_millis(2);
        drive_with(core, store, telegram, until, Duration::ZERO, &mut two_ms)
    }

    /// [`drive`] from `start`, each action's I/O taking `latency(action)`.
    fn drive_with(
        core: &mut Core,
        store: &mut Store,
        telegram: &mut Telegram,
        until: Duration,
        start: Duration,
        latency: &mut dyn FnMut(&Action) -> Duration,
    ) -> (Vec<Sent>, Vec<BotKey>) {
        let mut now = start;
        let mut pending: Vec<(Duration, Event)> = Vec::new();
        let mut invokes = Vec::new();
        let mut halted = Vec::new();
        let mut attempts: HashMap<JobId, u32> = HashMap::new();
        let mut outcomes: HashMap<JobId, Outcome> = HashMap::new();
        let mut in_flight_chats: HashSet<(BotKey, ChatId)> = HashSet::new();
        loop {
            while let Some(action) = core.poll_action(now) {
                let latency = latency(&action);
                let done = match action {
                    Action::Look { bot, room } => {
                        let (heads, next_due) = store.due(&bot, now, room);
                        Event::Due {
                            bot,
                            heads,
                            next_due,
                        }
                    }
                    Action::Claim { bot, jobs } => {
                        let taken = jobs
                            .iter()
                            .copied()
                            .filter(|id| store.take_if_due(&bot, *id, now))
                            .collect();
                        Event::Claimed {
                            bot,
                            asked: jobs,
                            taken,
                        }
                    }
                    Action::Invoke {
                        bot, job, parts_at, ..
                    } => {
                        let head = store.job(&bot, job).head;
                        assert_eq!(parts_at.len(), usize::from(head.parts));
                        assert_eq!(parts_at[0], now);
                        assert_eq!(
                            store.job(&bot, job).state,
                            State::Sending,
                            "invoked unclaimed"
                        );
                        assert!(
                            in_flight_chats.insert((bot.clone(), head.chat)),
                            "two jobs of chat {} in flight",
                            head.chat
                        );
                        let count = attempts.entry(job).or_default();
                        *count += 1;
                        // The attempt ends after its last part.
                        let done_at = *parts_at.last().unwrap_or(&now) + latency;
                        invokes.push(Sent {
                            at: now,
                            bot: bot.clone(),
                            job,
                            chat: head.chat,
                            parts_at,
                        });
                        let outcome = telegram(&bot, job, *count, now);
                        outcomes.insert(job, outcome.clone());
                        pending.push((done_at, Event::Attempted { bot, job, outcome }));
                        continue;
                    }
                    Action::Commit { bot, job, follow } => {
                        let chat = store.job(&bot, job).head.chat;
                        in_flight_chats.remove(&(bot.clone(), chat));
                        let outcome = outcomes.remove(&job).expect("a commit after an attempt");
                        let next = store.commit(&bot, job, &outcome, follow.is_some(), now);
                        Event::Committed { bot, job, next }
                    }
                    Action::Refuse { bot, job } => {
                        assert_eq!(store.job(&bot, job).state, State::Sending);
                        store.refused.push((now, job));
                        // Failed for good, as `Report::Failed` stores it.
                        store.job(&bot, job).state = State::Failed;
                        outcomes.insert(job, Outcome::Settled);
                        Event::Attempted {
                            bot,
                            job,
                            outcome: Outcome::Settled,
                        }
                    }
                    Action::Halted { bot, .. } => {
                        halted.push(bot);
                        continue;
                    }
                    Action::Resume { bot } => {
                        store.retry_now(&bot, now);
                        Event::Wake { bot }
                    }
                };
                pending.push((now + latency, done));
            }
            let next_event = pending.iter().map(|(at, _)| *at).min();
            let next = match (next_event, core.poll_timeout(now)) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(at) => at,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            now = next.max(now);
            let (ready, later): (Vec<_>, Vec<_>) =
                pending.into_iter().partition(|(at, _)| *at <= now);
            pending = later;
            for (_, event) in ready {
                core.handle(now, event);
            }
            core.handle_timeout(now);
        }
        (invokes, halted)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A core with bots `b0`..`b{n-1}`, all connected, at Telegram's
    /// default limits.
    fn core_with(bots: usize) -> Core {
        let mut core = Core::new(128);
        for bot in 0..bots {
            let name = format!("b{bot}");
            core.add_bot(name.clone(), Limits::new(Rates::default()).unwrap());
            core.handle(
                Duration::ZERO,
                Event::Connection {
                    bot: name,
                    up: true,
                },
            );
        }
        core
    }

    fn always_sent(_: &str, _: JobId, _: u32, _: Duration) -> Outcome {
        Outcome::Sent
    }

    /// At most `rate`·window + `burst` messages of `bot` in any window.
    fn assert_paced(invokes: &[Sent], bot: &str, window: Duration, most: usize) {
        let mut times: Vec<Duration> = invokes
            .iter()
            .filter(|sent| sent.bot == bot)
            .flat_map(|sent| sent.parts_at.iter().copied())
            .collect();
        times.sort();
        for (i, start) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .take_while(|at| **at < *start + window)
                .count();
            assert!(
                within <= most,
                "{bot}: {within} messages within {window:?} from {start:?}"
            );
        }
    }

    #[test]
    fn many_bots_send_every_job_once_in_order_within_their_limits() {
        let mut store = Store::default();
        let mut core = core_with(20);
        let mut expected: BTreeMap<(BotKey, ChatId), Vec<JobId>> = BTreeMap::new();
        for round in 0..4 {
            for bot in 0..20 {
                for chat in 0..12 {
                    let name = format!("b{bot}");
                    let parts = if (round + chat) % 5 == 0 { 2 } else { 1 };
                    let id = store.enqueue(&name, 100 + chat, parts);
                    expected
                        .entry((name, ChatId::user(100 + chat)))
                        .or_default()
                        .push(id);
                }
            }
        }
        let (invokes, halted) = drive(&mut core, &mut store, &mut always_sent, secs(60.0));
        assert!(halted.is_empty());
        // Exactly once each, in enqueue order per chat.
        let mut seen: BTreeMap<(BotKey, ChatId), Vec<JobId>> = BTreeMap::new();
        for sent in &invokes {
            seen.entry((sent.bot.clone(), sent.chat))
                .or_default()
                .push(sent.job);
        }
        assert_eq!(seen, expected);
        for bot in 0..20 {
            let name = format!("b{bot}");
            // 30/s with a burst of 3, per bot; 1/s per private chat.
            assert_paced(&invokes, &name, secs(1.0), 33);
            for chat in 0..12 {
                let chat = ChatId::user(100 + chat);
                let at: Vec<Duration> = invokes
                    .iter()
                    .filter(|sent| sent.bot == name && sent.chat == chat)
                    .map(|sent| sent.at)
                    .collect();
                for pair in at.windows(2) {
                    assert!(pair[1] - pair[0] >= secs(0.999), "{name} {chat}: {at:?}");
                }
            }
        }
        // The bots went side by side: 48 chat-seconds of 2-part jobs and
        // more at 1/s per chat take a few seconds, not 20 bots' worth.
        let last = invokes.iter().map(|sent| sent.at).max().unwrap();
        assert!(last < secs(12.0), "{last:?}");
        assert_eq!(core.in_flight(), 0);
    }

    /// Replays `invokes` against the sandbox's model of Telegram's flood
    /// limits (30/s with a burst of 30 per bot, 1/s with a burst of 3 per
    /// private chat): the `FLOOD_WAIT`s they would draw.
    fn flood_waits(invokes: &[Sent]) -> Vec<(Duration, ChatId)> {
        use crate::sandbox::telegram::limits::{ChatKind, FloodRules};
        let mut rules = FloodRules::default();
        let origin = std::time::Instant::now();
        let mut messages: Vec<(Duration, ChatId)> = invokes
            .iter()
            .flat_map(|sent| sent.parts_at.iter().map(|at| (*at, sent.chat)))
            .collect();
        messages.sort();
        let mut refused = Vec::new();
        for (at, chat) in messages {
            if rules
                .take(1, ChatKind::Private(chat.get()), origin + at)
                .is_err()
            {
                refused.push((at, chat));
            }
        }
        refused
    }

    /// A store whose claims and commits take anything from 1 ms to 1.2 s
    /// (a writer busy with a burst of enqueues), reproducibly.
    fn uneven_latency() -> impl FnMut(&Action) -> Duration {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        move |action| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            match action {
                Action::Claim { .. } | Action::Commit { .. } => {
                    Duration::from_millis(1 + seed % 1200)
                }
                _ => Duration::from_millis(2),
            }
        }
    }

    #[test]
    fn a_burst_to_many_chats_through_an_uneven_store_draws_no_flood_wait() {
        let mut store = Store::default();
        let mut core = core_with(1);
        // Mostly one job per chat (each sent job reserves a slot for a next
        // one that is not there), some of two parts, some chats with more.
        for chat in 0..1500 {
            store.enqueue("b0", 1000 + chat, if chat % 9 == 0 { 2 } else { 1 });
        }
        for chat in 0..30 {
            for _ in 0..4 {
                store.enqueue("b0", chat, 1);
            }
        }
        let mut latency = uneven_latency();
        let (invokes, _) = drive_with(
            &mut core,
            &mut store,
            &mut always_sent,
            secs(600.0),
            Duration::ZERO,
            &mut latency,
        );
        assert_eq!(invokes.len(), 1500 + 30 * 4);
        assert_eq!(flood_waits(&invokes), []);
        assert_paced(&invokes, "b0", secs(1.0), 33);
        // Near the pace: 1,667 messages at 30/s take 56 s, and the store's
        // slowness costs some more.
        let last = invokes.last().unwrap().at;
        assert!(last < secs(80.0), "{last:?}");
    }

    /// Every two messages to one private chat at least a second apart.
    fn assert_chats_paced(invokes: &[Sent]) {
        let mut messages: Vec<(ChatId, Duration)> = invokes
            .iter()
            .flat_map(|sent| sent.parts_at.iter().map(|at| (sent.chat, *at)))
            .collect();
        messages.sort();
        for pair in messages.windows(2) {
            let ((chat, before), (next_chat, at)) = (pair[0], pair[1]);
            if chat == next_chat {
                assert!(
                    at - before >= secs(0.999),
                    "chat {chat} at {before:?} and {at:?}"
                );
            }
        }
    }

    #[test]
    fn a_jobs_parts_to_one_chat_go_at_the_chats_pace() {
        let mut store = Store::default();
        let mut core = core_with(1);
        store.enqueue("b0", 1, 5);
        store.enqueue("b0", 1, 1);
        store.enqueue("b0", 2, 1);
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(60.0));
        assert_eq!(invokes.len(), 3);
        // Five messages back to back would overflow the chat's burst of 3.
        assert_eq!(flood_waits(&invokes), []);
        assert_chats_paced(&invokes);
        let first = &invokes[0];
        assert_eq!(first.parts_at.len(), 5);
        assert!(first.parts_at[4] >= secs(3.99), "{:?}", first.parts_at);
        // Another chat is not held behind them (its claim waits only for
        // the five bot-wide slots they were claimed with).
        let other = invokes.iter().find(|sent| sent.chat == ChatId::user(2));
        assert!(other.unwrap().at < secs(0.5), "{invokes:?}");
    }

    #[test]
    fn a_core_that_records_the_last_runs_sends_keeps_their_pace() {
        // The last run sent a job to each of 40 chats from 10 s on, at the
        // bot's full rate; the next one has jobs for them the other way
        // round (the chat sent to last comes first).
        let run = |core: &mut Core, from: Duration, chats: &mut dyn Iterator<Item = i64>| {
            let mut store = Store::default();
            for chat in chats {
                store.enqueue("b0", chat, 1);
            }
            let mut two_ms = |_: &Action| Duration::from_millis(2);
            let until = from + secs(10.0);
            drive_with(core, &mut store, &mut always_sent, until, from, &mut two_ms).0
        };
        let last_run = run(&mut core_with(1), secs(10.0), &mut (0..40));
        assert_eq!(last_run.len(), 40);
        let ended = last_run.last().unwrap().at;
        // A restart a moment later sends to the same chats again.
        let restart = |record: bool| {
            let mut core = core_with(1);
            if record {
                for sent in &last_run {
                    for at in &sent.parts_at {
                        core.record_sent("b0", sent.chat, *at);
                    }
                }
            }
            let mut all = last_run.clone();
            all.extend(run(&mut core, ended + secs(0.1), &mut (0..40).rev()));
            all
        };
        let remembered = restart(true);
        assert_paced(&remembered, "b0", secs(1.0), 33);
        assert_chats_paced(&remembered);
        assert_eq!(flood_waits(&remembered), []);
        // Forgetting them, it would send to the last chats again at once.
        let forgot = restart(false);
        let paced = std::panic::catch_unwind(|| assert_chats_paced(&forgot));
        assert!(paced.is_err(), "a forgetful restart kept the pace anyway");
    }

    #[test]
    fn a_blocked_users_jobs_are_refused_without_a_call_or_a_slot_until_unblocked() {
        let mut store = Store::default();
        let mut core = core_with(1);
        let (blocked, other) = (ChatId::user(1), ChatId::user(2));
        let refused: Vec<JobId> = (0..3).map(|_| store.enqueue("b0", 1, 1)).collect();
        // One: the bot's meter stays near empty for the second drive (which
        // starts its clock at zero again).
        let sent = vec![store.enqueue("b0", 2, 1)];
        let block = |chats: &[ChatId]| Event::Blocked {
            bot: "b0".into(),
            chats: chats.iter().copied().collect(),
        };
        core.handle(Duration::ZERO, block(&[blocked]));
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(30.0));
        let invoked: Vec<JobId> = invokes.iter().map(|sent| sent.job).collect();
        assert_eq!(invoked, sent, "only the other chat's jobs reach Telegram");
        let at: Vec<Duration> = store.refused.iter().map(|(at, _)| *at).collect();
        let ids: Vec<JobId> = store.refused.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids, refused, "each refused once, in order");
        // Refusals are not paced like sends (1/s per chat): no slot taken.
        assert!(at.iter().all(|at| *at < secs(0.1)), "{at:?}");
        assert!(invokes.iter().all(|sent| sent.chat == other));

        // Unblocked: the chat's next jobs go out, at once.
        core.handle(Duration::ZERO, block(&[]));
        let after = store.enqueue("b0", 1, 1);
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(30.0));
        let invoked: Vec<(JobId, ChatId)> = invokes.iter().map(|s| (s.job, s.chat)).collect();
        assert_eq!(invoked, [(after, blocked)]);
        assert!(invokes[0].at < secs(0.1), "{:?}", invokes[0].at);
        assert_eq!(store.refused.len(), 3);
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn a_halted_bot_stops_alone() {
        let mut store = Store::default();
        let mut core = core_with(3);
        for bot in ["b0", "b1", "b2"] {
            for chat in 0..5 {
                store.enqueue(bot, chat, 1);
            }
        }
        let mut telegram = |bot: &str, _: JobId, _: u32, _: Duration| match bot {
            "b1" => Outcome::Halt("AUTH_KEY_UNREGISTERED".into()),
            _ => Outcome::Sent,
        };
        let (invokes, halted) = drive(&mut core, &mut store, &mut telegram, secs(30.0));
        assert_eq!(halted, ["b1"]);
        assert!(core.is_halted("b1") && !core.is_halted("b0"));
        let count = |bot: &str| invokes.iter().filter(|sent| sent.bot == bot).count();
        assert_eq!((count("b0"), count("b2")), (5, 5));
        // b1's first claim went out before the halt came back; nothing after.
        let first_halt = invokes.iter().find(|sent| sent.bot == "b1").unwrap().at;
        assert!(
            invokes
                .iter()
                .all(|sent| sent.bot != "b1" || sent.at == first_halt)
        );
        let unsent = store.jobs["b1"]
            .iter()
            .filter(|job| job.state != State::Sent)
            .count();
        assert_eq!(unsent, 5);
    }

    #[test]
    fn a_bot_wide_flood_wait_holds_that_bot_only_and_a_retry_keeps_the_chats_order() {
        let mut store = Store::default();
        let mut core = core_with(2);
        let first = store.enqueue("b0", 1, 1);
        let second = store.enqueue("b0", 1, 1);
        let other = store.enqueue("b1", 1, 1);
        let retried = store.enqueue("b1", 2, 1);
        let after_retry = store.enqueue("b1", 2, 1);
        let mut telegram = move |_: &str, job: JobId, attempt: u32, now: Duration| {
            if job == first && attempt == 1 {
                return Outcome::FloodWait {
                    scope: FloodScope::Bot,
                    until: now + secs(5.0),
                };
            }
            if job == retried && attempt == 1 {
                return Outcome::Settled;
            }
            Outcome::Sent
        };
        let (invokes, _) = drive(&mut core, &mut store, &mut telegram, secs(30.0));
        let at = |job: JobId| -> Vec<Duration> {
            invokes
                .iter()
                .filter(|sent| sent.job == job)
                .map(|sent| sent.at)
                .collect()
        };
        let first_at = at(first);
        assert_eq!(first_at.len(), 2, "{first_at:?}");
        assert!(first_at[1] >= first_at[0] + secs(5.0), "{first_at:?}");
        assert!(at(second)[0] > first_at[1]);
        // b1 was not held: its first job went at once.
        assert!(at(other)[0] < secs(0.1), "{:?}", at(other));
        // The retried job went twice, and its chat's next job after it.
        let retried_at = at(retried);
        assert_eq!(retried_at.len(), 2);
        assert!(at(after_retry)[0] > retried_at[1]);
    }

    #[test]
    fn a_disconnected_bot_claims_nothing_until_it_is_up() {
        let mut store = Store::default();
        let mut core = core_with(2);
        core.handle(
            Duration::ZERO,
            Event::Connection {
                bot: "b1".into(),
                up: false,
            },
        );
        store.enqueue("b0", 1, 1);
        store.enqueue("b1", 1, 1);
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(10.0));
        assert_eq!(invokes.len(), 1);
        assert_eq!(invokes[0].bot, "b0");
        core.handle(
            secs(10.0),
            Event::Connection {
                bot: "b1".into(),
                up: true,
            },
        );
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(20.0));
        assert_eq!(invokes.len(), 1);
        assert_eq!(invokes[0].bot, "b1");
    }

    #[test]
    fn jobs_that_failed_while_the_connection_was_down_go_as_soon_as_it_is_back() {
        let mut store = Store {
            backoff: Some(secs(60.0)),
            ..Store::default()
        };
        let mut core = core_with(1);
        let failed = store.enqueue("b0", 1, 1);
        // The job's first attempt fails (the connection died under it): a
        // retry in 60 s.
        let fails_once = |failing: JobId| {
            let mut tried = false;
            move |_: &str, job: JobId, _: u32, _: Duration| {
                if job == failing && !std::mem::replace(&mut tried, true) {
                    return Outcome::Settled;
                }
                Outcome::Sent
            }
        };
        let mut telegram = fails_once(failed);
        let mut two_ms = |_: &Action| Duration::from_millis(2);
        let (first, _) = drive_with(
            &mut core,
            &mut store,
            &mut telegram,
            secs(1.0),
            Duration::ZERO,
            &mut two_ms,
        );
        assert_eq!(first.len(), 1);
        let connection = |up| Event::Connection {
            bot: "b0".into(),
            up,
        };
        core.handle(secs(1.0), connection(false));
        // While it is down, nothing goes, whatever is due.
        store.enqueue("b0", 2, 1);
        core.handle(secs(1.0), Event::Wake { bot: "b0".into() });
        let (down, _) = drive_with(
            &mut core,
            &mut store,
            &mut telegram,
            secs(5.0),
            secs(1.0),
            &mut two_ms,
        );
        assert!(down.is_empty(), "{down:?}");
        core.handle(secs(5.0), connection(true));
        let (back, _) = drive_with(
            &mut core,
            &mut store,
            &mut telegram,
            secs(100.0),
            secs(5.0),
            &mut two_ms,
        );
        assert_eq!(back.len(), 2, "{back:?}");
        let retried = back.iter().find(|sent| sent.job == failed).unwrap();
        assert!(retried.at < secs(5.1), "retried at {:?}", retried.at);
        assert!(back.iter().all(|sent| sent.at < secs(5.1)), "{back:?}");

        // A connection that was never down resumes nothing: a failed job
        // keeps its backoff.
        let mut store = Store {
            backoff: Some(secs(60.0)),
            ..Store::default()
        };
        let mut core = core_with(1);
        core.handle(secs(0.0), connection(true));
        let failed = store.enqueue("b0", 1, 1);
        let mut telegram = fails_once(failed);
        let (sent, _) = drive_with(
            &mut core,
            &mut store,
            &mut telegram,
            secs(100.0),
            Duration::ZERO,
            &mut two_ms,
        );
        assert_eq!(sent.len(), 2);
        assert!(sent[1].at >= secs(60.0), "{sent:?}");
    }

    #[test]
    fn a_slot_reserved_for_a_next_job_that_was_not_there_is_given_back() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        let chat = ChatId::user(1);
        limits.try_acquire(chat, Duration::ZERO).unwrap();
        // Reserved for a follower at 0.1 s, then not used.
        assert!(limits.try_acquire(chat, secs(0.1)).is_err());
        limits.try_acquire(chat, secs(1.0)).unwrap();
        limits.refund(chat);
        // As if the reservation had never been: the chat may send at 1 s.
        assert!(limits.ready_at(chat) <= secs(1.0));

        // Through the core: one job sent, then a new one a second later
        // goes at once, not a second after that.
        let mut store = Store::default();
        let mut core = core_with(1);
        store.enqueue("b0", 1, 1);
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(0.5));
        assert_eq!(invokes.len(), 1);
        store.enqueue("b0", 1, 1);
        core.handle(secs(1.0), Event::Wake { bot: "b0".into() });
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(5.0));
        assert_eq!(invokes.len(), 1);
        assert!(invokes[0].at <= secs(1.1), "{:?}", invokes[0].at);
    }

    #[test]
    fn once_stopping_nothing_new_is_claimed() {
        let mut store = Store::default();
        let mut core = core_with(1);
        core.handle(Duration::ZERO, Event::Stop);
        store.enqueue("b0", 1, 1);
        let (invokes, _) = drive(&mut core, &mut store, &mut always_sent, secs(10.0));
        assert!(invokes.is_empty());
    }
}
