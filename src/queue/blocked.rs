//! Chats whose user blocked the bot.
//!
//! Telegram tells a bot that a user blocked (or unblocked) it with
//! `updateBotStopped`. The inbound path records that in the same commit as
//! the `blocked`/`unblocked` event, so the state is as durable as the event
//! and replays of the update change nothing. The sender reads the set at
//! start and again whenever it changes, and fails the user's jobs at once
//! (`USER_IS_BLOCKED`) instead of asking Telegram to refuse each of them.

use std::collections::HashSet;

use crate::store::Conn;
use rusqlite::params;

use super::{Queue, QueueError, Timestamp};
use crate::chat::ChatId;

/// Records that `chat`'s user blocked (`true`) or unblocked `bot`; runs
/// inside the caller's transaction.
pub(crate) fn record(
    conn: &Conn,
    bot: &str,
    chat: i64,
    blocked: bool,
    now: Timestamp,
) -> Result<(), QueueError> {
    if blocked {
        conn.prepare_cached(
            "INSERT INTO blocked_chats (bot, chat, blocked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (bot, chat) DO NOTHING",
        )?
        .execute(params![bot, chat, now.as_millis()])?;
    } else {
        conn.prepare_cached("DELETE FROM blocked_chats WHERE bot = ?1 AND chat = ?2")?
            .execute(params![bot, chat])?;
    }
    Ok(())
}

impl Queue {
    /// The chats whose user has `bot` blocked now.
    pub async fn blocked_chats(&self, bot: &str) -> Result<HashSet<ChatId>, QueueError> {
        let bot = bot.to_owned();
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT chat FROM blocked_chats WHERE bot = ?1")?;
            let chats = statement
                .query_map([&bot], |row| row.get::<_, i64>(0))?
                .filter_map(|chat| chat.map(|chat| ChatId::new(chat).ok()).transpose())
                .collect::<Result<_, _>>()?;
            Ok(chats)
        })
        .await
    }

    /// Wakes when a chat of any bot was blocked or unblocked (a generation
    /// counter; read [`Queue::blocked_chats`] again).
    pub fn watch_blocked(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.blocked.subscribe()
    }

    /// Announces a change recorded by [`record`] (after its commit).
    pub(crate) fn blocked_changed(&self) {
        self.inner.blocked.send_modify(|n| *n += 1);
    }
}
