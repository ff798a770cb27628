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
use super::world::StoredMessage;
use super::{FakeTelegram, Inner, TgError, markup, render, updates};

/// The bot's answer to a click, as the user's app shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BotAnswer {
    pub message: Option<String>,
    pub alert: bool,
    pub url: Option<String>,
    pub cache_time: i32,
}

/// What a click came to: the answer, or the error the user's app shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickOutcome {
    pub result: Result<BotAnswer, TgError>,
    pub elapsed: Duration,
}

/// Whether `url` is one Telegram opens from a callback answer:
/// `t.me/<the bot>?start=<parameter>` (game URLs need game buttons, which
/// the sandbox does not have).
pub(super) fn starts_the_bot(url: &str, bot_username: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let start = parsed.query_pairs().find(|(key, _)| key == "start");
    matches!(parsed.scheme(), "http" | "https")
        && matches!(
            parsed.host_str(),
            Some("t.me" | "telegram.me" | "telegram.dog")
        )
        && parsed
            .path()
            .strip_prefix('/')
            .is_some_and(|name| name.eq_ignore_ascii_case(bot_username))
        && start.is_some_and(|(_, value)| !value.is_empty())
}

/// The queries waiting for the bot.
#[derive(Default)]
pub(super) struct Callbacks {
    /// Where each open query's answer goes.
    pending: HashMap<i64, oneshot::Sender<BotAnswer>>,
    /// Queries no connection of their bot took when they were pushed (by
    /// bot); the bot's next `getDifference` hands them over.
    undelivered: Vec<(AccountId, i64, tl::enums::Update)>,
}

impl Callbacks {
    fn open(&mut self) -> (i64, oneshot::Receiver<BotAnswer>) {
        let (tx, rx) = oneshot::channel();
        let mut query_id: i64 = rand::random();
        while query_id == 0 || self.pending.contains_key(&query_id) {
            query_id = rand::random();
        }
        self.pending.insert(query_id, tx);
        (query_id, rx)
    }

    /// Takes the bot's answer; the query is then closed.
    pub fn answer(&mut self, query_id: i64, answer: BotAnswer) -> Result<(), TgError> {
        let pending = self
            .pending
            .remove(&query_id)
            .ok_or_else(|| TgError::bad_request("QUERY_ID_INVALID"))?;
        self.undelivered.retain(|(_, id, _)| *id != query_id);
        // The clicker may have just timed out; the answer is then lost, as
        // in Telegram.
        let _ = pending.send(answer);
        Ok(())
    }

    /// Closes a query nobody answered in time.
    fn expire(&mut self, query_id: i64) {
        self.pending.remove(&query_id);
        self.undelivered.retain(|(_, id, _)| *id != query_id);
    }

    /// The pushes no connection of `bot` took, for its `getDifference`.
    pub fn take_undelivered(&mut self, bot: AccountId) -> Vec<tl::enums::Update> {
        let (taken, kept) = std::mem::take(&mut self.undelivered)
            .into_iter()
            .partition(|(to, _, _)| *to == bot);
        self.undelivered = kept;
        taken.into_iter().map(|(_, _, u)| u).collect()
    }
}

impl Inner {
    /// Opens a query for `user`'s click on `bot`'s message `msg_id` and
    /// pushes it to that bot.
    fn open_query(
        &mut self,
        outbox: &crate::sandbox::Outbox,
        user: AccountId,
        message: &StoredMessage,
        data: Vec<u8>,
    ) -> (i64, oneshot::Receiver<BotAnswer>) {
        let (bot, msg_id) = (message.from, message.id);
        let (query_id, rx) = self.callbacks.open();
        let bot_hash = self.world.bot(bot).map_or(0, |b| b.profile.access_hash);
        let update: tl::enums::Update = tl::types::UpdateBotCallbackQuery {
            query_id,
            user_id: user,
            peer: render::message_peer(message, bot),
            msg_id,
            chat_instance: user ^ bot_hash,
            data: Some(data),
            game_short_name: None,
        }
        .into();
        let mut batch = updates::Batch::new();
        batch.mention(message);
        batch.users.insert(user);
        batch.push(update.clone());
        if updates::deliver(outbox, &mut self.world, bot, None, &batch) == 0 {
            self.callbacks.undelivered.push((bot, query_id, update));
        }
        self.stats.callback_queries += 1;
        (query_id, rx)
    }
}

impl FakeTelegram {
    /// `user` presses the inline button with `data` under message `msg_id`
    /// of a bot (in their private chat or a basic group both are in): waits
    /// for that bot's answer or the callback timeout.
    pub(super) async fn press_callback(
        &self,
        user: AccountId,
        msg_id: i32,
        data: Vec<u8>,
    ) -> Result<ClickOutcome, TgError> {
        let started = Instant::now();
        let (query_id, mut rx, timeout) = {
            let mut inner = self.lock();
            let world = &inner.world;
            let message = world
                .messages
                .get(&msg_id)
                .filter(|m| m.audience().contains(&user) && world.is_bot(m.from));
            let Some((message, markup)) = message.and_then(|m| {
                let markup = render::reply_markup(m.reply_markup.as_deref()?)?;
                Some((m.clone(), markup))
            }) else {
                return Err(TgError::bad_request("MESSAGE_ID_INVALID"));
            };
            if !markup::has_callback(&markup, &data) {
                return Err(TgError::bad_request("DATA_INVALID"));
            }
            let (query_id, rx) = inner.open_query(&self.0.outbox, user, &message, data);
            (query_id, rx, inner.callback_timeout)
        };
        // Closes the query however this ends, even if the clicker goes away.
        let _open = OpenQuery {
            telegram: self,
            query_id,
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

/// An open query of a waiting click; dropping it closes the query, so a
/// click abandoned mid-wait (its HTTP client gone) leaves nothing behind.
struct OpenQuery<'a> {
    telegram: &'a FakeTelegram,
    query_id: i64,
}

impl Drop for OpenQuery<'_> {
    fn drop(&mut self) {
        self.telegram.lock().callbacks.expire(self.query_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use grammers_tl_types::Serializable;

    use super::*;
    use crate::sandbox::Outbox;
    use crate::sandbox::telegram::NewUser;
    use crate::sandbox::telegram::world::World;

    /// A sandbox with one user and one bot message carrying a `go` button.
    fn with_button() -> (FakeTelegram, AccountId) {
        let telegram = FakeTelegram::new(World::new(), Arc::new(Outbox::default()));
        let user = telegram
            .create_user(NewUser {
                first_name: "Ann".into(),
                ..NewUser::default()
            })
            .unwrap()
            .id;
        let markup: tl::enums::ReplyMarkup = tl::types::ReplyInlineMarkup {
            force_reply: false,
            rows: vec![
                tl::types::KeyboardInlineButtonRow {
                    buttons: vec![
                        tl::types::KeyboardInlineButton {
                            style: None,
                            text: "Go".into(),
                            r#type: tl::types::InlineButtonTypeCallback {
                                requires_password: false,
                                data: b"go".to_vec(),
                            }
                            .into(),
                        }
                        .into(),
                    ],
                }
                .into(),
            ],
        }
        .into();
        let mut inner = telegram.lock();
        let bot = inner.world.first_bot().profile.id;
        inner.world.insert_message(StoredMessage {
            from: bot,
            to: user,
            date: 1,
            text: "Go?".into(),
            reply_markup: Some(markup.to_bytes()),
            ..StoredMessage::default()
        });
        drop(inner);
        (telegram, user)
    }

    #[tokio::test]
    async fn an_abandoned_click_closes_its_query() {
        let (telegram, user) = with_button();
        let bot = telegram.bot_id();
        let click = telegram.press_callback(user, 1, b"go".to_vec());
        // The clicker gives up long before the callback timeout.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), click)
                .await
                .is_err()
        );
        let mut inner = telegram.lock();
        assert!(inner.callbacks.pending.is_empty());
        assert!(inner.callbacks.take_undelivered(bot).is_empty());
    }

    #[tokio::test]
    async fn an_answer_reaches_the_click_and_a_second_is_refused() {
        let (telegram, user) = with_button();
        let clicking = {
            let telegram = telegram.clone();
            tokio::spawn(async move { telegram.press_callback(user, 1, b"go".to_vec()).await })
        };
        let query_id = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(id) = telegram.lock().callbacks.pending.keys().next() {
                    return *id;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let answer = BotAnswer {
            message: Some("ok".into()),
            ..BotAnswer::default()
        };
        let callbacks = |a: BotAnswer| telegram.lock().callbacks.answer(query_id, a);
        assert_eq!(callbacks(answer.clone()), Ok(()));
        assert_eq!(
            callbacks(answer.clone()),
            Err(TgError::bad_request("QUERY_ID_INVALID"))
        );
        let outcome = clicking.await.unwrap().unwrap();
        assert_eq!(outcome.result, Ok(answer));
        assert_eq!(
            telegram.press_callback(user, 1, b"nope".to_vec()).await,
            Err(TgError::bad_request("DATA_INVALID"))
        );
    }
}
