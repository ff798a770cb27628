//! Telegram's send limits, as a deterministic state machine.
//!
//! Telegram answers a bot that sends too fast with `FLOOD_WAIT_X`, and every
//! flood wait costs seconds of silence. telegate therefore paces itself below
//! the published limits — about 30 messages a second for the whole bot, one a
//! second per private chat, twenty a minute per group — so that it never draws
//! one. The limiter owns no clock and no socket: the caller passes "now" (time
//! since any fixed origin), which makes every decision reproducible in tests.
//!
//! Each limit is a GCRA meter (the generic cell rate algorithm, a token
//! bucket kept as one "theoretical arrival time"): a send is allowed when the
//! meter is no more than `burst - 1` intervals ahead of now.

use std::collections::HashMap;
use std::time::Duration;

use crate::chat::ChatId;

/// Configured rates; [`Default`] is Telegram's published limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Messages per second for the whole bot.
    pub bot_per_second: f64,
    /// Messages per second to one private chat.
    pub private_chat_per_second: f64,
    /// Messages per minute to one group or channel.
    pub group_per_minute: f64,
    /// How many messages the bot-wide meter lets through back to back. A
    /// small burst absorbs timer lateness, so the long-run pace stays at the
    /// rate; Telegram tolerates bursts of about 30.
    pub bot_burst: u32,
}

impl Default for Rates {
    fn default() -> Self {
        Rates {
            bot_per_second: 30.0,
            private_chat_per_second: 1.0,
            group_per_minute: 20.0,
            bot_burst: 3,
        }
    }
}

/// The bot-wide burst, as time: a tenth of a second's messages (3 at
/// Telegram's 30/s). A fixed count would throttle a high configured rate to
/// a few messages per look at the queue.
const BURST_WINDOW_SECS: f64 = 0.1;

impl From<&crate::config::LimitsConfig> for Rates {
    fn from(config: &crate::config::LimitsConfig) -> Self {
        let bot_per_second = f64::from(config.bot_per_second);
        let burst = (bot_per_second * BURST_WINDOW_SECS).ceil() as u32;
        Rates {
            bot_per_second,
            private_chat_per_second: f64::from(config.private_chat_per_second),
            group_per_minute: f64::from(config.group_per_minute),
            bot_burst: burst.max(Rates::default().bot_burst),
        }
    }
}

/// Why a rate is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("limits.{field} must be a positive number, got {value}")]
pub struct RateError {
    pub field: &'static str,
    pub value: f64,
}

/// Which limit a `FLOOD_WAIT` most likely came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodScope {
    /// The chat's own limit: pause that chat.
    Chat,
    /// The bot-wide limit: pause everything.
    Bot,
}

/// One meter: at most one event per `interval`, `burst` back to back.
#[derive(Debug, Clone, Copy)]
struct Meter {
    /// Theoretical arrival time of the next conforming event.
    tat: Duration,
}

impl Meter {
    const IDLE: Meter = Meter {
        tat: Duration::ZERO,
    };

    /// The earliest time an event conforms.
    fn ready_at(self, interval: Duration, burst: u32) -> Duration {
        self.tat
            .saturating_sub(interval.saturating_mul(burst.saturating_sub(1)))
    }

    /// Records an event at `now` (which must conform).
    fn record(&mut self, now: Duration, interval: Duration) {
        self.tat = self.tat.max(now) + interval;
    }
}

/// The limiter: one bot-wide meter and one meter per chat.
#[derive(Debug, Clone)]
pub struct Limits {
    bot_interval: Duration,
    private_interval: Duration,
    group_interval: Duration,
    bot_burst: u32,
    bot: Meter,
    chats: HashMap<ChatId, Meter>,
    /// Meters are pruned once the map grows past this (then it doubles).
    prune_at: usize,
}

const MIN_PRUNE: usize = 1024;

impl Limits {
    pub fn new(rates: Rates) -> Result<Self, RateError> {
        Ok(Limits {
            bot_interval: interval("bot_per_second", rates.bot_per_second, 1.0)?,
            private_interval: interval(
                "private_chat_per_second",
                rates.private_chat_per_second,
                1.0,
            )?,
            group_interval: interval("group_per_minute", rates.group_per_minute, 60.0)?,
            bot_burst: rates.bot_burst.max(1),
            bot: Meter::IDLE,
            chats: HashMap::new(),
            prune_at: MIN_PRUNE,
        })
    }

    /// The earliest time a message to `chat` may go out (≤ `now`: at once).
    pub fn ready_at(&self, chat: ChatId) -> Duration {
        let chat_ready = self
            .chats
            .get(&chat)
            .map_or(Duration::ZERO, |m| m.ready_at(self.chat_interval(chat), 1));
        chat_ready.max(self.bot.ready_at(self.bot_interval, self.bot_burst))
    }

    /// The earliest time `chat`'s own meter lets a message out.
    pub fn chat_ready_at(&self, chat: ChatId) -> Duration {
        self.chats
            .get(&chat)
            .map_or(Duration::ZERO, |m| m.ready_at(self.chat_interval(chat), 1))
    }

    /// Takes a slot of `chat`'s own meter at `at` (perhaps later than now),
    /// leaving the bot-wide meter alone: for a message scheduled to go at
    /// `at`, charged to the bot meter with [`Limits::record_bot`] then.
    pub fn record_chat(&mut self, chat: ChatId, at: Duration) {
        let interval = self.chat_interval(chat);
        self.chats
            .entry(chat)
            .or_insert(Meter::IDLE)
            .record(at, interval);
    }

    /// Takes a slot of the bot-wide meter at `at` whatever it says.
    pub fn record_bot(&mut self, at: Duration) {
        self.bot.record(at, self.bot_interval);
    }

    /// The earliest time the bot-wide meter lets any message out.
    pub fn bot_ready_at(&self) -> Duration {
        self.bot.ready_at(self.bot_interval, self.bot_burst)
    }

    /// Takes a slot for one message to `chat` at `now`, or says when to come
    /// back. A refused call changes nothing.
    pub fn try_acquire(&mut self, chat: ChatId, now: Duration) -> Result<(), Duration> {
        let ready = self.ready_at(chat);
        if ready > now {
            return Err(ready);
        }
        self.record(chat, now);
        self.prune(now);
        Ok(())
    }

    /// Takes a slot for `chat` at `now` whatever the meters say: for a message
    /// that went out anyway (a resend after a lost reply).
    pub fn record(&mut self, chat: ChatId, now: Duration) {
        self.bot.record(now, self.bot_interval);
        let interval = self.chat_interval(chat);
        self.chats
            .entry(chat)
            .or_insert(Meter::IDLE)
            .record(now, interval);
    }

    /// Gives back one slot [`Limits::record`] took for `chat` (reserved for
    /// a message that did not go out), on both meters.
    pub fn refund(&mut self, chat: ChatId) {
        self.bot.tat = self.bot.tat.saturating_sub(self.bot_interval);
        let interval = self.chat_interval(chat);
        if let Some(meter) = self.chats.get_mut(&chat) {
            meter.tat = meter.tat.saturating_sub(interval);
        }
    }

    /// Guesses which limit a `FLOOD_WAIT` for `chat` at `now` came from,
    /// asked before the send: the bot-wide limit only if the chat had been
    /// quiet while the whole bot was sending at its full rate; otherwise the
    /// chat's own. Blaming the chat is the safe default: a wrong guess holds
    /// one chat, and a real bot-wide flood soon shows in other chats too,
    /// each of which then holds itself.
    pub fn flood_scope(&self, chat: ChatId, now: Duration) -> FloodScope {
        let interval = self.chat_interval(chat);
        // `tat` is one interval past the last send: the chat sent within
        // the last two intervals.
        let chat_busy = self
            .chats
            .get(&chat)
            .is_some_and(|meter| meter.tat + interval > now);
        // At full rate the bot meter runs ahead of now and its next slot
        // is within one interval.
        let bot_busy = self.bot.tat > now && self.bot_ready_at() + self.bot_interval > now;
        if bot_busy && !chat_busy {
            FloodScope::Bot
        } else {
            FloodScope::Chat
        }
    }

    /// Number of chats with a meter still running (for metrics and tests).
    pub fn tracked_chats(&self) -> usize {
        self.chats.len()
    }

    fn chat_interval(&self, chat: ChatId) -> Duration {
        if chat.is_private() {
            self.private_interval
        } else {
            self.group_interval
        }
    }

    /// Forgets meters that have run idle: they would allow a send anyway.
    fn prune(&mut self, now: Duration) {
        if self.chats.len() < self.prune_at {
            return;
        }
        self.chats.retain(|_, meter| meter.tat > now);
        self.prune_at = (self.chats.len() * 2).max(MIN_PRUNE);
    }
}

/// The time between two events at `count` per `period_secs`.
fn interval(field: &'static str, count: f64, period_secs: f64) -> Result<Duration, RateError> {
    if !(count.is_finite() && count > 0.0) {
        return Err(RateError {
            field,
            value: count,
        });
    }
    // Round up to the microsecond so the pace never exceeds the rate.
    let micros = (period_secs * 1e6 / count).ceil();
    Ok(Duration::from_micros(micros as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn user(n: i64) -> ChatId {
        ChatId::user(n)
    }

    fn group(n: i64) -> ChatId {
        ChatId::new(-n).unwrap()
    }

    /// Sends to `chat` whenever the limiter allows, stepping time by 1 ms;
    /// returns the times of the sends.
    fn drain(limits: &mut Limits, chats: &[ChatId], until: Duration) -> Vec<(ChatId, Duration)> {
        let mut sent = Vec::new();
        let mut now = Duration::ZERO;
        while now < until {
            for &chat in chats {
                if limits.try_acquire(chat, now).is_ok() {
                    sent.push((chat, now));
                }
            }
            now += ms(1);
        }
        sent
    }

    #[test]
    fn one_private_chat_gets_one_message_a_second() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        let sent = drain(&mut limits, &[user(1)], ms(10_000));
        assert_eq!(sent.len(), 10);
        for pair in sent.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= ms(1000), "{pair:?}");
        }
    }

    #[test]
    fn a_group_gets_twenty_a_minute() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        let sent = drain(&mut limits, &[group(5)], ms(60_000));
        assert_eq!(sent.len(), 20);
    }

    #[test]
    fn many_chats_share_thirty_a_second() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        let chats: Vec<_> = (1..=600).map(user).collect();
        let sent = drain(&mut limits, &chats, ms(10_000));
        // 30/s despite 1 ms lateness on every wake-up, and never more than
        // 30 plus the burst in any 1 s window.
        assert!((297..=302).contains(&sent.len()), "{}", sent.len());
        for (i, (_, at)) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|(_, t)| *t < *at + ms(1000));
            assert!(in_window.count() <= 32);
        }
    }

    #[test]
    fn refusal_says_when_to_come_back_and_changes_nothing() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        limits.try_acquire(user(1), ms(0)).unwrap();
        let back = limits.try_acquire(user(1), ms(10)).unwrap_err();
        assert_eq!(back, ms(1000));
        assert_eq!(limits.try_acquire(user(1), ms(999)), Err(ms(1000)));
        assert_eq!(limits.try_acquire(user(1), back), Ok(()));
    }

    #[test]
    fn bot_burst_lets_messages_through_back_to_back() {
        let rates = Rates {
            bot_burst: 5,
            ..Rates::default()
        };
        let mut limits = Limits::new(rates).unwrap();
        for n in 1..=5 {
            assert_eq!(limits.try_acquire(user(n), ms(0)), Ok(()));
        }
        assert!(limits.try_acquire(user(6), ms(0)).is_err());
        assert!(limits.try_acquire(user(6), ms(34)).is_ok());
    }

    #[test]
    fn flood_scope_blames_the_bot_only_when_it_ran_at_full_rate() {
        let mut limits = Limits::new(Rates::default()).unwrap();
        limits.try_acquire(user(1), ms(0)).unwrap();
        // A quiet bot: whatever the chat did, the chat is to blame.
        assert_eq!(
            Limits::new(Rates::default())
                .unwrap()
                .flood_scope(user(1), ms(0)),
            FloodScope::Chat
        );
        assert_eq!(limits.flood_scope(user(1), ms(500)), FloodScope::Chat);
        assert_eq!(limits.flood_scope(user(2), ms(500)), FloodScope::Chat);
        assert_eq!(limits.flood_scope(user(1), ms(5000)), FloodScope::Chat);
        // The bot sending 30/s to other chats: a quiet chat's flood wait can
        // only be the bot-wide limit; a busy chat's is still its own.
        let mut now = ms(5000);
        for chat in 100..160 {
            while limits.try_acquire(user(chat), now).is_err() {
                now += ms(1);
            }
        }
        assert_eq!(limits.flood_scope(user(2), now), FloodScope::Bot);
        limits.record(user(3), now);
        assert_eq!(limits.flood_scope(user(3), now), FloodScope::Chat);
    }

    #[test]
    fn configured_rates_keep_a_tenth_of_a_second_of_burst() {
        let config = |bot_per_second| crate::config::LimitsConfig {
            bot_per_second,
            ..Default::default()
        };
        assert_eq!(Rates::from(&config(30)), Rates::default());
        assert_eq!(Rates::from(&config(5)).bot_burst, 3);
        assert_eq!(Rates::from(&config(1_000_000)).bot_burst, 100_000);
    }

    #[test]
    fn idle_meters_are_forgotten() {
        let mut limits = Limits::new(Rates {
            bot_per_second: 1e6,
            ..Rates::default()
        })
        .unwrap();
        // A first wave of chats, then a second one 5 s later: by the time the
        // map has doubled, the first wave's meters have run idle.
        let wave = MIN_PRUNE as u64;
        for n in 0..2 * wave {
            let at = Duration::from_secs(5 * (n / wave)) + Duration::from_micros(n);
            limits.try_acquire(user(n as i64 + 1), at).unwrap();
        }
        assert_eq!(limits.tracked_chats(), MIN_PRUNE);
    }

    #[test]
    fn unusable_rates_are_refused_by_name() {
        let err = Limits::new(Rates {
            group_per_minute: 0.0,
            ..Rates::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "group_per_minute");
        assert!(
            Limits::new(Rates {
                bot_per_second: f64::NAN,
                ..Rates::default()
            })
            .is_err()
        );
    }
}
