//! Callback queries: a user presses an inline button, the bot gets
//! `updateBotCallbackQuery` and must answer with
//! `messages.setBotCallbackAnswer` before the user's app gives up.
//!
//! Each query waits on a one-shot channel for the bot's answer, at most the
//! callback timeout; then the user sees `BOT_RESPONSE_TIMEOUT` and the query
//! is forgotten, so a late answer — like a second one — gets
//! `QUERY_ID_INVALID`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use grammers_tl_types as tl;
use serde::Serialize;
use tokio::sync::oneshot;

use super::accounts::AccountId;
use super::{Inner, Telegram, TgError, markup, render, updates};

/// The bot's answer to a click, as the user's app shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub message: Option<String>,
    pub alert: bool,
    pub url: Option<String>,
    pub cache_time: i32,
}

/// What a click came to: the answer, or the error the user's app shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickOutcome {
    pub result: Result<Answer, TgError>,
    pub elapsed: Duration,
}

struct Pending {
    answer: oneshot::Sender<Answer>,
}

/// The queries waiting for the bot.
#[derive(Default)]
pub(super) struct Callbacks {
    pending: HashMap<i64, Pending>,
    /// Queries no bot connection took when they were pushed; the next
    /// `getDifference` hands them over.
    undelivered: Vec<(i64, tl::enums::Update)>,
}

impl Callbacks {
    fn open(&mut self) -> (i64, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        let mut query_id: i64 = rand::random();
        while query_id == 0 || self.pending.contains_key(&query_id) {
            query_id = rand::random();
        }
        self.pending.insert(query_id, Pending { answer: tx });
        (query_id, rx)
    }

    /// Takes the bot's answer; the query is then closed.
    pub fn answer(&mut self, query_id: i64, answer: Answer) -> Result<(), TgError> {
        let pending = self
            .pending
            .remove(&query_id)
            .ok_or_else(|| TgError::bad_request("QUERY_ID_INVALID"))?;
        self.undelivered.retain(|(id, _)| *id != query_id);
        // The clicker may have just timed out; the answer is then lost, as
        // in Telegram.
        let _ = pending.answer.send(answer);
        Ok(())
    }

    /// Closes a query nobody answered in time.
    fn expire(&mut self, query_id: i64) {
        self.pending.remove(&query_id);
        self.undelivered.retain(|(id, _)| *id != query_id);
    }

    /// The pushes no bot connection took, for `getDifference`.
    pub fn take_undelivered(&mut self) -> Vec<tl::enums::Update> {
        self.undelivered.drain(..).map(|(_, u)| u).collect()
    }
}

impl Inner {
    /// Opens a query for `user`'s click on `msg_id` and pushes it to the bot.
    fn open_query(
        &mut self,
        outbox: &crate::sandbox::Outbox,
        user: AccountId,
        msg_id: i32,
        data: Vec<u8>,
    ) -> (i64, oneshot::Receiver<Answer>) {
        let (query_id, rx) = self.callbacks.open();
        let bot = self.world.bot.id;
        let update: tl::enums::Update = tl::types::UpdateBotCallbackQuery {
            query_id,
            user_id: user,
            peer: render::peer_user(user),
            msg_id,
            chat_instance: user ^ self.world.bot.access_hash,
            data: Some(data),
            game_short_name: None,
        }
        .into();
        let push = updates::container(&self.world, bot, vec![update.clone()], [user, bot]);
        if updates::deliver(outbox, &self.world, bot, None, &push) == 0 {
            self.callbacks.undelivered.push((query_id, update));
        }
        self.stats.callback_queries += 1;
        (query_id, rx)
    }
}

impl Telegram {
    /// `user` presses the inline button with `data` under message `msg_id`:
    /// waits for the bot's answer or the callback timeout.
    pub(super) async fn press_callback(
        &self,
        user: AccountId,
        msg_id: i32,
        data: Vec<u8>,
    ) -> Result<ClickOutcome, TgError> {
        let started = Instant::now();
        let (query_id, mut rx, timeout) = {
            let mut inner = self.lock();
            let bot = inner.world.bot.id;
            let markup = inner
                .world
                .messages
                .get(&msg_id)
                .filter(|m| m.visible_to(user) && m.from == bot)
                .and_then(|m| m.reply_markup.as_deref())
                .and_then(render::reply_markup);
            let Some(markup) = markup else {
                return Err(TgError::bad_request("MESSAGE_ID_INVALID"));
            };
            if !markup::has_callback(&markup, &data) {
                return Err(TgError::bad_request("DATA_INVALID"));
            }
            let (query_id, rx) = inner.open_query(&self.0.outbox, user, msg_id, data);
            (query_id, rx, inner.callback_timeout)
        };
        let answer = match tokio::time::timeout(timeout, &mut rx).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(_)) | Err(_) => {
                let mut inner = self.lock();
                inner.callbacks.expire(query_id);
                // An answer may have slipped in just before the expiry.
                let late = rx.try_recv().ok();
                if late.is_none() {
                    inner.stats.callback_timeouts += 1;
                }
                late
            }
        };
        Ok(ClickOutcome {
            result: answer.ok_or_else(|| TgError::bad_request("BOT_RESPONSE_TIMEOUT")),
            elapsed: started.elapsed(),
        })
    }
}
