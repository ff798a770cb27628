//! Simulated users: what the control API does in a user's name — write to
//! a bot, press buttons — and a chat as that user's app would show it.

use grammers_tl_types as tl;
use serde_json::{Value, json};

use super::accounts::{AccountId, to_hex};
use super::boxes::BoxEvent;
use super::queries::ClickOutcome;
use super::sending::{Edit, Target, UserMessage};
use super::world::{Place, StoredMessage, World};
use super::{FakeTelegram, SandboxError, markup, render};

/// Where a location-request button reports the user to be, unless told.
const DEFAULT_LOCATION: (f64, f64) = (52.5200, 13.4050);

/// A button press by a simulated user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserClick {
    /// An inline callback button, by its data.
    Callback { message_id: i32, data: Vec<u8> },
    /// A reply-keyboard button, by its label.
    Keyboard {
        message_id: i32,
        text: String,
        location: Option<(f64, f64)>,
    },
}

/// What a press came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Pressed {
    /// A callback button: the bot's answer (or the timeout).
    Answered(ClickOutcome),
    /// A keyboard button: the message the user sent by pressing it.
    Sent { message_id: i32 },
}

impl FakeTelegram {
    /// `user` sends a message to `bot`, as a reply to `reply_to` if given
    /// — or to the bot's pending force-reply message, as the user's app
    /// does; returns its id.
    pub fn user_sends(
        &self,
        user: AccountId,
        bot: AccountId,
        message: UserMessage,
        reply_to: Option<i32>,
    ) -> Result<i32, SandboxError> {
        let reply_to = {
            let inner = self.lock();
            let record = inner
                .world
                .users
                .get(&user)
                .ok_or(SandboxError::UnknownUser(user))?;
            if !inner.world.is_bot(bot) {
                return Err(SandboxError::UnknownBot(bot));
            }
            let target = Target::Private { user, bot };
            match reply_to {
                Some(id) if inner.find(target, id).is_none() => {
                    return Err(SandboxError::UnknownMessage {
                        user_id: user,
                        message_id: id,
                    });
                }
                Some(id) => Some(id),
                None => record.chat(bot).force_reply,
            }
        };
        self.post_as_user(user, bot, message, reply_to)
    }

    fn post_as_user(
        &self,
        user: AccountId,
        bot: AccountId,
        message: UserMessage,
        reply_to: Option<i32>,
    ) -> Result<i32, SandboxError> {
        let mut inner = self.lock();
        if !inner.world.users.contains_key(&user) {
            return Err(SandboxError::UnknownUser(user));
        }
        let draft = message.into_draft(user, reply_to);
        let target = Target::Private { user, bot };
        let posted = inner.post_from_user(&self.0.outbox, user, target, draft, None)?;
        drop(inner);
        self.changed();
        Ok(posted.message.id)
    }

    /// `user` presses a button.
    pub async fn click(&self, user: AccountId, click: UserClick) -> Result<Pressed, SandboxError> {
        if !self.lock().world.users.contains_key(&user) {
            return Err(SandboxError::UnknownUser(user));
        }
        match click {
            UserClick::Callback { message_id, data } => {
                let outcome = self.press_callback(user, message_id, data).await?;
                Ok(Pressed::Answered(outcome))
            }
            UserClick::Keyboard {
                message_id,
                text,
                location,
            } => {
                let message = self.keyboard_press(user, message_id, &text, location)?;
                let (bot, keyboard) = self.shown_keyboard(user, message_id)?;
                let sent = self.post_as_user(user, bot, message, Some(message_id))?;
                if keyboard.single_use {
                    self.hide_keyboard(user, bot, message_id);
                }
                Ok(Pressed::Sent { message_id: sent })
            }
        }
    }

    /// The keyboard of `message_id` and the bot that sent it, if it is the
    /// one `user` sees now in its chat with that bot.
    fn shown_keyboard(
        &self,
        user: AccountId,
        message_id: i32,
    ) -> Result<(AccountId, tl::types::ReplyKeyboardMarkup), SandboxError> {
        let inner = self.lock();
        let world = &inner.world;
        let unknown = SandboxError::UnknownMessage {
            user_id: user,
            message_id,
        };
        let message = world
            .messages
            .get(&message_id)
            .filter(|m| m.visible_to(user))
            .ok_or(unknown)?;
        let Some(tl::enums::ReplyMarkup::ReplyKeyboardMarkup(keyboard)) = message
            .reply_markup
            .as_deref()
            .and_then(render::reply_markup)
        else {
            return Err(SandboxError::invalid(
                "message_id",
                format!("message {message_id} has no reply keyboard"),
            ));
        };
        let bot = message.peer_of(user);
        let shown = world
            .users
            .get(&user)
            .and_then(|u| u.chat(bot).reply_keyboard);
        if shown != Some(message_id) {
            return Err(SandboxError::invalid(
                "message_id",
                format!("the keyboard of message {message_id} is no longer shown"),
            ));
        }
        Ok((bot, keyboard))
    }

    /// What pressing the keyboard button labelled `text` sends.
    fn keyboard_press(
        &self,
        user: AccountId,
        message_id: i32,
        text: &str,
        location: Option<(f64, f64)>,
    ) -> Result<UserMessage, SandboxError> {
        let (_, keyboard) = self.shown_keyboard(user, message_id)?;
        let markup: tl::enums::ReplyMarkup = keyboard.into();
        let Some(kind) = markup::keyboard_button(&markup, text) else {
            return Err(SandboxError::invalid(
                "text",
                format!("no button labelled {text:?} on the keyboard of message {message_id}"),
            ));
        };
        match kind {
            tl::enums::ButtonType::Default => Ok(UserMessage::Text(text.to_string())),
            tl::enums::ButtonType::RequestPhone => {
                let inner = self.lock();
                let profile = inner
                    .world
                    .profile(user)
                    .ok_or(SandboxError::UnknownUser(user))?;
                Ok(UserMessage::Contact {
                    phone_number: profile.phone.clone().unwrap_or_default(),
                    first_name: profile.first_name.clone(),
                })
            }
            tl::enums::ButtonType::RequestGeoLocation => {
                let (latitude, longitude) = location.unwrap_or(DEFAULT_LOCATION);
                Ok(UserMessage::Location {
                    latitude,
                    longitude,
                })
            }
            other => Err(SandboxError::invalid(
                "text",
                format!(
                    "pressing a {} button is not simulated",
                    markup::tl_name(other)
                ),
            )),
        }
    }

    fn hide_keyboard(&self, user: AccountId, bot: AccountId, message_id: i32) {
        let mut inner = self.lock();
        if let Some(chat) = inner.world.users.get_mut(&user).map(|u| u.chat_mut(bot))
            && chat.reply_keyboard == Some(message_id)
        {
            chat.reply_keyboard = None;
        }
        drop(inner);
        self.changed();
    }

    /// The chat with `bot` as `user` sees it.
    pub fn chat(&self, user: AccountId, bot: AccountId) -> Result<Value, SandboxError> {
        let inner = self.lock();
        let world = &inner.world;
        let record = world
            .users
            .get(&user)
            .ok_or(SandboxError::UnknownUser(user))?;
        if !world.is_bot(bot) {
            return Err(SandboxError::UnknownBot(bot));
        }
        let chat = record.chat(bot);
        let markup_of = |id: i32| {
            world
                .messages
                .get(&id)
                .and_then(|m| m.reply_markup.as_deref())
                .and_then(render::reply_markup)
        };
        let messages: Vec<Value> = world
            .chat_messages(user, bot)
            .map(|m| message_json(m, world))
            .collect();
        let reply_keyboard = chat.reply_keyboard.and_then(|id| {
            markup_of(id)
                .map(|markup| json!({"message_id": id, "markup": markup::to_json(&markup)}))
        });
        let force_reply = chat.force_reply.and_then(|id| {
            let placeholder = match markup_of(id)? {
                tl::enums::ReplyMarkup::ReplyKeyboardForceReply(force) => force.placeholder,
                _ => None,
            };
            Some(json!({"message_id": id, "placeholder": placeholder}))
        });
        Ok(json!({
            "user_id": user,
            "bot_id": bot,
            "started": chat.started,
            "blocked": chat.blocked,
            "typing": inner.typing.get(&(bot, user)).copied(),
            "messages": messages,
            "reply_keyboard": reply_keyboard,
            "force_reply": force_reply,
        }))
    }
}

/// A stored message as the control API shows it.
pub(super) fn message_json(m: &StoredMessage, world: &World) -> Value {
    let markup = m.reply_markup.as_deref().and_then(render::reply_markup);
    let entities: Option<Vec<Value>> =
        render::entities(m).map(|list| list.iter().map(markup::entity_json).collect());
    json!({
        "id": m.id,
        "from": if world.is_bot(m.from) { "bot" } else { "user" },
        "sender_id": m.from,
        "date": m.date,
        "text": m.text,
        "media": m.media,
        "entities": entities,
        "service": m.action,
        "reply_markup": markup.as_ref().map(markup::to_json),
        "reply_markup_tl": m.reply_markup.as_deref().map(to_hex),
        "reply_to": m.reply_to,
        "edit_date": m.edit_date,
        "silent": m.silent,
        "noforwards": m.noforwards,
        "no_webpage": m.no_webpage,
    })
}

impl FakeTelegram {
    /// Sets the parts of `user`'s profile that [`super::NewUser`] leaves
    /// out: a last name, and whether the user has Telegram Premium.
    pub fn set_profile(
        &self,
        user: AccountId,
        last_name: Option<String>,
        premium: bool,
    ) -> Result<(), SandboxError> {
        if last_name
            .as_deref()
            .is_some_and(|name| name.chars().count() > 64)
        {
            return Err(SandboxError::invalid(
                "last_name",
                "must be at most 64 characters",
            ));
        }
        let mut inner = self.lock();
        let record = inner
            .world
            .users
            .get_mut(&user)
            .ok_or(SandboxError::UnknownUser(user))?;
        record.profile.last_name = last_name.filter(|name| !name.is_empty());
        record.profile.premium = premium;
        drop(inner);
        self.changed();
        Ok(())
    }

    /// `user` blocks (or unblocks) `bot`: the bot gets `updateBotStopped`
    /// in its qts box; while blocked, its sends get `USER_IS_BLOCKED`.
    pub fn set_blocked(
        &self,
        user: AccountId,
        bot: AccountId,
        blocked: bool,
    ) -> Result<(), SandboxError> {
        let mut inner = self.lock();
        if !inner.world.is_bot(bot) {
            return Err(SandboxError::UnknownBot(bot));
        }
        let record = inner
            .world
            .users
            .get_mut(&user)
            .ok_or(SandboxError::UnknownUser(user))?;
        let chat = record.chat_mut(bot);
        if chat.blocked == blocked {
            return Ok(());
        }
        chat.blocked = blocked;
        let event = BoxEvent::BotStopped {
            user_id: user,
            stopped: blocked,
            date: render::now(),
        };
        inner.tell_bot(&self.0.outbox, bot, event);
        drop(inner);
        self.changed();
        Ok(())
    }

    /// `user` reacts with `emoji` (none: takes its reaction back) to
    /// message `message_id` of its chat with `bot`, or of the group `group`
    /// (a Bot API id). The bot gets `updateBotMessageReaction` in its qts
    /// box: in a private chat, or in a group where it is admin (as Telegram
    /// tells bots).
    pub fn react(
        &self,
        user: AccountId,
        bot: AccountId,
        group: Option<i64>,
        message_id: i32,
        emoji: Option<String>,
    ) -> Result<(), SandboxError> {
        if emoji
            .as_deref()
            .is_some_and(|e| e.is_empty() || e.chars().count() > 8)
        {
            return Err(SandboxError::invalid("emoji", "must be 1-8 characters"));
        }
        let mut inner = self.lock();
        if !inner.world.is_bot(bot) {
            return Err(SandboxError::UnknownBot(bot));
        }
        let (target, bare_group, bot_told) = match group {
            None => (Target::Private { user, bot }, None, true),
            Some(api_id) => {
                let record = super::groups::by_api_id(&inner.world, api_id)?;
                let admin = record.role(bot).is_some_and(super::boxes::Role::is_admin);
                (Target::Group(record.id), Some(record.id), admin)
            }
        };
        if !inner.world.users.contains_key(&user) {
            return Err(SandboxError::UnknownUser(user));
        }
        let Some((place, _)) = inner.find(target, message_id) else {
            return Err(SandboxError::UnknownMessage {
                user_id: user,
                message_id,
            });
        };
        let new: Vec<String> = emoji.into_iter().collect();
        let Some(message) = inner.world.message_mut(place, message_id) else {
            return Ok(());
        };
        let old = if new.is_empty() {
            message.reactions.remove(&user)
        } else {
            message.reactions.insert(user, new.clone())
        }
        .unwrap_or_default();
        if old != new && bot_told {
            let event = BoxEvent::Reaction {
                group: bare_group,
                message_id,
                user_id: user,
                old,
                new,
                date: render::now(),
            };
            inner.tell_bot(&self.0.outbox, bot, event);
        }
        drop(inner);
        self.changed();
        Ok(())
    }

    /// `user` edits its message `message_id` in its chat with `bot`.
    pub fn user_edits(
        &self,
        user: AccountId,
        bot: AccountId,
        message_id: i32,
        text: String,
    ) -> Result<(), SandboxError> {
        let target = Target::Private { user, bot };
        self.user_changes(user, target, message_id, |inner, outbox| {
            let edit = Edit {
                text: Some(text),
                ..Edit::default()
            };
            inner
                .edit(outbox, user, target, message_id, edit, None)
                .map(|_| ())
        })
    }

    /// `user` deletes message `message_id` of its chat with `bot` (for
    /// both sides).
    pub fn user_deletes(
        &self,
        user: AccountId,
        bot: AccountId,
        message_id: i32,
    ) -> Result<(), SandboxError> {
        let target = Target::Private { user, bot };
        self.user_changes(user, target, message_id, |inner, outbox| {
            inner
                .delete(outbox, user, Place::Common, &[message_id], None)
                .map(|_| ())
        })
    }

    /// Runs a change by `user` to message `message_id` of `target`, after
    /// checking both exist.
    pub(super) fn user_changes(
        &self,
        user: AccountId,
        target: Target,
        message_id: i32,
        change: impl FnOnce(&mut super::Inner, &crate::sandbox::Outbox) -> Result<(), super::TgError>,
    ) -> Result<(), SandboxError> {
        let mut inner = self.lock();
        if !inner.world.users.contains_key(&user) {
            return Err(SandboxError::UnknownUser(user));
        }
        if inner.find(target, message_id).is_none() {
            return Err(match target {
                Target::Private { user: user_id, .. } => SandboxError::UnknownMessage {
                    user_id,
                    message_id,
                },
                Target::Group(group) => SandboxError::UnknownGroupMessage {
                    group_id: inner
                        .world
                        .groups
                        .get(&group)
                        .map_or(-group, |g| g.bot_api_id()),
                    message_id,
                },
            });
        }
        change(&mut inner, &self.0.outbox)?;
        drop(inner);
        self.changed();
        Ok(())
    }
}
