//! Telegram's flood limits, as token buckets.
//!
//! Telegram answers a bot that sends too fast with `420 FLOOD_WAIT_X`. The
//! sandbox models the documented limits — about 30 messages a second for the
//! whole bot, one a second per private chat (with a small burst) and 20 a
//! minute per group — so that the worker's own pacing is tested against
//! something that pushes back. Each bot of the sandbox has its own buckets:
//! one bot's sends never slow another's. The logic takes the time as an
//! argument, so it is deterministic and unit-tested without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

impl Rate {
    pub const BOT: Rate = Rate {
        burst: 30.0,
        per_second: 30.0,
    };
    pub const PRIVATE_CHAT: Rate = Rate {
        burst: 3.0,
        per_second: 1.0,
    };
    pub const GROUP: Rate = Rate {
        burst: 20.0,
        per_second: 20.0 / 60.0,
    };
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Bucket {
            tokens: rate.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// How long until one token is available (zero: now).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second)
        }
    }
}

/// Which per-chat limit a message counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatKind {
    Private(i64),
    Group(i64),
}

/// Each bot's bot-wide bucket plus its bucket per chat.
#[derive(Debug)]
pub struct FloodRules {
    enabled: bool,
    bot_rate: Rate,
    private_rate: Rate,
    group_rate: Rate,
    bots: HashMap<i64, Bucket>,
    chats: HashMap<(i64, ChatKind), Bucket>,
}

impl Default for FloodRules {
    fn default() -> Self {
        FloodRules::new(Rate::BOT, Rate::PRIVATE_CHAT, Rate::GROUP)
    }
}

impl FloodRules {
    pub fn new(bot_rate: Rate, private_rate: Rate, group_rate: Rate) -> Self {
        FloodRules {
            enabled: true,
            bot_rate,
            private_rate,
            group_rate,
            bots: HashMap::new(),
            chats: HashMap::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Turns the limits off (every send passes) or back on (with full buckets).
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        self.bots.clear();
        self.chats.clear();
    }

    fn chat_rate(&self, chat: ChatKind) -> Rate {
        match chat {
            ChatKind::Private(_) => self.private_rate,
            ChatKind::Group(_) => self.group_rate,
        }
    }

    /// Takes one token from bot `bot`'s bucket and from its bucket for
    /// `chat`, or — if either is empty — takes nothing and says how long to
    /// wait, in whole seconds (at least 1), as `FLOOD_WAIT_X` does.
    pub fn take(&mut self, bot: i64, chat: ChatKind, now: Instant) -> Result<(), u32> {
        if !self.enabled {
            return Ok(());
        }
        let (bot_rate, chat_rate) = (self.bot_rate, self.chat_rate(chat));
        let bucket = self
            .chats
            .entry((bot, chat))
            .or_insert_with(|| Bucket::full(chat_rate, now));
        bucket.refill(chat_rate, now);
        let bot = self
            .bots
            .entry(bot)
            .or_insert_with(|| Bucket::full(bot_rate, now));
        bot.refill(bot_rate, now);

        let wait = bucket.wait(chat_rate).max(bot.wait(bot_rate));
        if wait > Duration::ZERO {
            return Err(whole_seconds(wait));
        }
        bucket.tokens -= 1.0;
        bot.tokens -= 1.0;
        Ok(())
    }
}

fn whole_seconds(wait: Duration) -> u32 {
    let secs = wait.as_secs_f64().ceil();
    if secs >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        (secs as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn private_chat_allows_a_burst_of_three_then_one_a_second() {
        let start = Instant::now();
        let mut limits = FloodRules::default();
        let chat = ChatKind::Private(7);
        for _ in 0..3 {
            assert_eq!(limits.take(1, chat, start), Ok(()));
        }
        assert_eq!(limits.take(1, chat, start), Err(1));
        assert_eq!(limits.take(1, chat, at(start, 500)), Err(1));
        assert_eq!(limits.take(1, chat, at(start, 1000)), Ok(()));
        assert_eq!(limits.take(1, chat, at(start, 1000)), Err(1));
    }

    #[test]
    fn bot_wide_limit_spans_chats() {
        let start = Instant::now();
        let mut limits = FloodRules::default();
        for chat in 0..30 {
            assert_eq!(limits.take(1, ChatKind::Private(chat), start), Ok(()));
        }
        assert_eq!(limits.take(1, ChatKind::Private(99), start), Err(1));
        // 1/30 s later one token is back.
        assert_eq!(limits.take(1, ChatKind::Private(99), at(start, 34)), Ok(()));
    }

    #[test]
    fn group_allows_twenty_a_minute() {
        let start = Instant::now();
        let mut limits = FloodRules::default();
        let group = ChatKind::Group(-5);
        for i in 0..20 {
            // Spread over a second so the bot-wide bucket never empties.
            assert_eq!(limits.take(1, group, at(start, i * 50)), Ok(()));
        }
        assert_eq!(limits.take(1, group, at(start, 1000)), Err(2));
        assert_eq!(limits.take(1, group, at(start, 4000)), Ok(()));
    }

    #[test]
    fn a_refused_send_takes_no_token() {
        let start = Instant::now();
        let mut limits = FloodRules::default();
        let busy = ChatKind::Private(1);
        for _ in 0..3 {
            limits.take(1, busy, start).unwrap();
        }
        for _ in 0..100 {
            assert!(limits.take(1, busy, start).is_err());
        }
        // The bot-wide bucket still has its 27 tokens.
        for chat in 100..127 {
            assert_eq!(limits.take(1, ChatKind::Private(chat), start), Ok(()));
        }
        assert!(limits.take(1, ChatKind::Private(200), start).is_err());
    }

    #[test]
    fn long_waits_are_rounded_up_to_whole_seconds() {
        let start = Instant::now();
        let slow = Rate {
            burst: 1.0,
            per_second: 0.1,
        };
        let mut limits = FloodRules::new(Rate::BOT, slow, Rate::GROUP);
        let chat = ChatKind::Private(1);
        limits.take(1, chat, start).unwrap();
        assert_eq!(limits.take(1, chat, at(start, 1)), Err(10));
        assert_eq!(limits.take(1, chat, at(start, 9500)), Err(1));
    }

    #[test]
    fn each_bot_has_its_own_limits() {
        let start = Instant::now();
        let mut limits = FloodRules::default();
        for chat in 0..30 {
            assert_eq!(limits.take(1, ChatKind::Private(chat), start), Ok(()));
        }
        assert_eq!(limits.take(1, ChatKind::Private(99), start), Err(1));
        // Bot 2 has its 30, also in the chats bot 1 used up.
        for chat in 0..30 {
            assert_eq!(limits.take(2, ChatKind::Private(chat), start), Ok(()));
        }
        assert_eq!(limits.take(2, ChatKind::Private(99), start), Err(1));
    }

    #[test]
    fn disabled_limits_pass_everything_and_reenabling_starts_full() {
        let start = Instant::now();
        let mut limits = FloodRules::default();
        limits.set_enabled(false);
        for _ in 0..1000 {
            assert_eq!(limits.take(1, ChatKind::Private(1), start), Ok(()));
        }
        limits.set_enabled(true);
        assert!(limits.enabled());
        for _ in 0..3 {
            assert_eq!(limits.take(1, ChatKind::Private(1), start), Ok(()));
        }
        assert!(limits.take(1, ChatKind::Private(1), start).is_err());
    }
}
