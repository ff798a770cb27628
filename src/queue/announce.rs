//! Announcing committed job changes: one broadcast for every listener (API
//! waiters, the event store, chat actions, the web page) and one per bot
//! for that bot's sender. With many bots a change then wakes only the
//! sender it concerns, not every bot's (a change that names no bot reaches
//! them all, each sender looks for itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::JobEvent;

/// State-change notifications kept for a slow listener before it is told
/// it lagged (and looks at the store again).
const CAPACITY: usize = 4096;

/// [`CAPACITY`] for one bot's sender. A broadcast channel allocates and
/// fills every slot up front (64 bytes each), so 4096 would cost each bot
/// 256 KiB held for its lifetime; and a sender only needs to know that its
/// jobs changed: a lag wakes it like any event, and one look at the store
/// serves the whole burst it missed.
const BOT_CAPACITY: usize = 128;

pub(crate) struct Announcer {
    all: broadcast::Sender<JobEvent>,
    by_bot: Mutex<HashMap<Arc<str>, broadcast::Sender<JobEvent>>>,
}

impl Announcer {
    pub fn new() -> Self {
        Announcer {
            all: broadcast::channel(CAPACITY).0,
            by_bot: Mutex::default(),
        }
    }

    /// Tells every listener, and the listeners of the event's bot (of every
    /// bot, if it names none). A wake-up ([`JobEvent::wake`]) is no change
    /// of a job: only the bot's listeners hear it.
    pub fn announce(&self, event: JobEvent) {
        let by_bot = self.by_bot.lock().unwrap_or_else(PoisonError::into_inner);
        match &event.bot {
            Some(bot) => {
                if let Some(sender) = by_bot.get(bot) {
                    let _ = sender.send(event.clone());
                }
            }
            None => {
                for sender in by_bot.values() {
                    let _ = sender.send(event.clone());
                }
            }
        }
        drop(by_bot);
        if !event.is_wake() {
            let _ = self.all.send(event);
        }
    }

    /// Every change.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.all.subscribe()
    }

    /// The changes of `bot`'s jobs, and those that name no bot.
    pub fn subscribe_bot(&self, bot: &str) -> broadcast::Receiver<JobEvent> {
        let mut by_bot = self.by_bot.lock().unwrap_or_else(PoisonError::into_inner);
        by_bot
            .entry(Arc::from(bot))
            .or_insert_with(|| broadcast::channel(BOT_CAPACITY).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatId;
    use crate::queue::{JobId, JobState};

    fn event(id: i64, bot: Option<&str>) -> JobEvent {
        JobEvent {
            id: JobId::new(id),
            chat: ChatId::user(1),
            state: JobState::Queued,
            bot: bot.map(Arc::from),
        }
    }

    #[test]
    fn a_bots_listener_hears_its_bots_changes_and_those_naming_none() {
        let announcer = Announcer::new();
        let mut all = announcer.subscribe();
        let mut a = announcer.subscribe_bot("a");
        let mut b = announcer.subscribe_bot("b");
        announcer.announce(event(1, Some("a")));
        announcer.announce(event(2, None));
        announcer.announce(event(3, Some("c")));
        let ids = |rx: &mut broadcast::Receiver<JobEvent>| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&mut all), [JobId::new(1), JobId::new(2), JobId::new(3)]);
        assert_eq!(ids(&mut a), [JobId::new(1), JobId::new(2)]);
        assert_eq!(ids(&mut b), [JobId::new(2)]);
    }

    #[test]
    fn a_bots_listener_behind_by_more_than_its_capacity_is_told_it_lagged() {
        let announcer = Announcer::new();
        let mut all = announcer.subscribe();
        let mut a = announcer.subscribe_bot("a");
        let burst = i64::try_from(BOT_CAPACITY).unwrap() + 1;
        for id in 1..=burst {
            announcer.announce(event(id, Some("a")));
        }
        assert_eq!(
            a.try_recv().unwrap_err(),
            broadcast::error::TryRecvError::Lagged(1)
        );
        assert_eq!(a.try_recv().unwrap().id, JobId::new(2));
        // Every listener keeps its own, larger backlog.
        assert_eq!(all.try_recv().unwrap().id, JobId::new(1));
    }

    #[test]
    fn a_wake_up_reaches_its_bots_listeners_only() {
        let announcer = Announcer::new();
        let mut all = announcer.subscribe();
        let mut a = announcer.subscribe_bot("a");
        let mut b = announcer.subscribe_bot("b");
        announcer.announce(JobEvent::wake("a"));
        assert!(a.try_recv().unwrap().is_wake());
        assert!(b.try_recv().is_err(), "another bot's wake-up");
        assert!(all.try_recv().is_err(), "a wake-up is no job's change");
    }
}
