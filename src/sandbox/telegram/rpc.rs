//! RPC dispatch: one handler per Telegram method the sandbox serves.
//!
//! The `dc` half hands over each request with its wrappers peeled; this file
//! finds who is calling (by auth key), parses the function, runs it against
//! the world and serializes the result. A method it does not know is
//! answered `400 METHOD_NOT_SUPPORTED_IN_SANDBOX: <tl name>` — never a hang.

use grammers_tl_types as tl;
use grammers_tl_types::{Deserializable, Identifiable, RemoteCall, Serializable};
use tl::functions;

use super::accounts::AccountId;
use super::queries::BotAnswer;
use super::sending::{self, Draft, Edit, SendFlags, Target};
use super::world::{Place, StoredMessage};
use super::{FakeTelegram, TgError, markup, render, updates};
use crate::sandbox::{Caller, RpcOutcome};

/// Who an auth key is signed in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Bot(AccountId),
    User(AccountId),
}

impl Who {
    fn id(self) -> AccountId {
        match self {
            Who::Bot(id) | Who::User(id) => id,
        }
    }
}

type Reply = Result<Vec<u8>, TgError>;

fn parse<F: Deserializable>(body: &[u8]) -> Result<F, TgError> {
    F::from_bytes(body).map_err(|_| TgError::bad_request("INPUT_REQUEST_INVALID"))
}

/// Serializes a function's result (its boxed return type).
fn ok<F: RemoteCall>(_: &F, value: F::Return) -> Reply
where
    F::Return: Serializable,
{
    Ok(value.to_bytes())
}

impl FakeTelegram {
    pub(super) async fn dispatch(&self, caller: Caller, request: Vec<u8>) -> RpcOutcome {
        let id = request
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        let name = match tl::name_for_id(id) {
            "" => format!("#{id:08x}"),
            known => known.to_string(),
        };
        *self
            .lock()
            .stats
            .rpc_counts
            .entry(name.clone())
            .or_default() += 1;
        let body = request.get(4..).unwrap_or_default();
        match self.handle(caller, id, &name, body).await {
            Ok(bytes) => RpcOutcome::Ok(bytes),
            Err(error) => {
                // `FLOOD_WAIT_7` counts as `FLOOD_WAIT`.
                let kind = error.name.trim_end_matches(|c: char| c.is_ascii_digit());
                let kind = kind.strip_suffix('_').unwrap_or(kind).to_string();
                *self.lock().stats.rpc_errors.entry(kind).or_default() += 1;
                RpcOutcome::Err {
                    code: error.code,
                    message: error.name,
                }
            }
        }
    }

    fn who(&self, key: i64) -> Result<Who, TgError> {
        let inner = self.lock();
        let account = inner
            .world
            .key(key)
            .and_then(|k| k.account)
            .ok_or_else(|| TgError::new(401, "AUTH_KEY_UNREGISTERED"))?;
        Ok(if inner.world.is_bot(account) {
            Who::Bot(account)
        } else {
            Who::User(account)
        })
    }

    async fn handle(&self, caller: Caller, id: u32, name: &str, body: &[u8]) -> Reply {
        use functions::{
            auth, channels, contacts, help, messages as m, updates as u, upload, users,
        };
        let key = caller.auth_key_id;
        match id {
            help::GetConfig::CONSTRUCTOR_ID => {
                Ok(render::config(caller.dc_id, &self.dc_addresses()).to_bytes())
            }
            auth::ImportBotAuthorization::CONSTRUCTOR_ID => self.import_bot(key, parse(body)?),
            auth::ImportAuthorization::CONSTRUCTOR_ID => {
                self.import_authorization(caller, parse(body)?)
            }
            _ => {
                let who = self.who(key)?;
                match id {
                    auth::ExportAuthorization::CONSTRUCTOR_ID => {
                        self.export_authorization(who.id(), caller.dc_id, parse(body)?)
                    }
                    u::GetState::CONSTRUCTOR_ID => ok(
                        &u::GetState {},
                        updates::state(&self.lock().world, who.id()),
                    ),
                    u::GetDifference::CONSTRUCTOR_ID => self.get_difference(who, key, parse(body)?),
                    u::GetChannelDifference::CONSTRUCTOR_ID => {
                        self.get_channel_difference(who, parse(body)?)
                    }
                    users::GetUsers::CONSTRUCTOR_ID => self.get_users(who, parse(body)?),
                    m::SendMessage::CONSTRUCTOR_ID => self.send_message(who, key, parse(body)?),
                    m::SendMedia::CONSTRUCTOR_ID => self.send_media(who, key, parse(body)?),
                    m::EditMessage::CONSTRUCTOR_ID => self.edit_message(who, key, parse(body)?),
                    m::DeleteMessages::CONSTRUCTOR_ID => {
                        let request: m::DeleteMessages = parse(body)?;
                        let affected = self.delete(who, key, Place::Common, &request.id)?;
                        ok(&request, affected)
                    }
                    channels::DeleteMessages::CONSTRUCTOR_ID => {
                        let request: channels::DeleteMessages = parse(body)?;
                        let channel = self.channel(&request.channel)?;
                        let place = Place::Channel(channel);
                        let affected = self.delete(who, key, place, &request.id)?;
                        ok(&request, affected)
                    }
                    m::SetTyping::CONSTRUCTOR_ID => self.set_typing(who, parse(body)?),
                    m::SetBotCallbackAnswer::CONSTRUCTOR_ID => {
                        self.set_callback_answer(who, parse(body)?)
                    }
                    m::GetBotCallbackAnswer::CONSTRUCTOR_ID => {
                        self.get_callback_answer(who, parse(body)?).await
                    }
                    m::GetHistory::CONSTRUCTOR_ID => self.get_history(who, parse(body)?),
                    m::GetMessages::CONSTRUCTOR_ID => self.get_messages(who, parse(body)?),
                    m::GetChats::CONSTRUCTOR_ID => {
                        let request: m::GetChats = parse(body)?;
                        let inner = self.lock();
                        let chats = updates::chats(&inner.world, who.id(), request.id.clone());
                        ok(&request, tl::types::messages::Chats { chats }.into())
                    }
                    channels::GetChannels::CONSTRUCTOR_ID => {
                        let request: channels::GetChannels = parse(body)?;
                        let ids: Vec<i64> = request
                            .id
                            .iter()
                            .filter_map(|input| self.channel(input).ok())
                            .collect();
                        let inner = self.lock();
                        let chats = updates::chats(&inner.world, who.id(), ids);
                        ok(&request, tl::types::messages::Chats { chats }.into())
                    }
                    contacts::ResolveUsername::CONSTRUCTOR_ID => {
                        self.resolve_username(who, parse(body)?)
                    }
                    upload::GetFile::CONSTRUCTOR_ID => {
                        let request: upload::GetFile = parse(body)?;
                        let file = self.serve_file_chunk(caller.dc_id, &request)?;
                        ok(&request, file)
                    }
                    _ => Err(TgError::bad_request(format!(
                        "METHOD_NOT_SUPPORTED_IN_SANDBOX: {name}"
                    ))),
                }
            }
        }
    }

    fn import_bot(&self, key: i64, request: functions::auth::ImportBotAuthorization) -> Reply {
        if request.api_id <= 0 || request.api_hash.is_empty() {
            return Err(TgError::bad_request("API_ID_INVALID"));
        }
        let mut inner = self.lock();
        let world = &mut inner.world;
        let Some(bot) = world
            .bots
            .iter()
            .find(|b| b.token.matches(&request.bot_auth_token))
        else {
            return Err(TgError::bad_request("ACCESS_TOKEN_INVALID"));
        };
        let (bot, user) = (
            bot.profile.id,
            render::user(&bot.profile, true, bot.profile.id),
        );
        let Some(record) = world.keys.iter_mut().find(|k| k.key_id() == key) else {
            return Err(TgError::new(401, "AUTH_KEY_UNREGISTERED"));
        };
        match record.account {
            Some(account) if account != bot => {
                return Err(TgError::bad_request("USER_ALREADY_AUTHORIZED"));
            }
            _ => record.account = Some(bot),
        }
        drop(inner);
        self.changed();
        ok(
            &request,
            tl::types::auth::Authorization {
                setup_password_required: false,
                otherwise_relogin_days: None,
                tmp_sessions: None,
                future_auth_token: None,
                user,
            }
            .into(),
        )
    }

    fn count_served(inner: &mut super::Inner, served: updates::Served) {
        *inner
            .stats
            .differences
            .entry(served.name().to_owned())
            .or_default() += 1;
    }

    fn get_difference(
        &self,
        who: Who,
        key: i64,
        request: functions::updates::GetDifference,
    ) -> Reply {
        let mut inner = self.lock();
        let extra = match who {
            Who::Bot(bot) => inner.callbacks.take_undelivered(bot),
            Who::User(_) => Vec::new(),
        };
        let from = updates::Position {
            pts: request.pts,
            qts: request.qts,
        };
        let rules = inner.differences;
        let (difference, served) = updates::difference(&inner.world, who.id(), from, rules, extra);
        Self::count_served(&mut inner, served);
        drop(inner);
        self.0.outbox.caught_up(key);
        ok(&request, difference)
    }

    fn get_channel_difference(
        &self,
        who: Who,
        request: functions::updates::GetChannelDifference,
    ) -> Reply {
        let channel = self.channel(&request.channel)?;
        let mut inner = self.lock();
        let member = inner
            .world
            .groups
            .get(&channel)
            .is_some_and(|g| g.is_member(who.id()));
        if !member {
            return Err(TgError::bad_request("CHANNEL_PRIVATE"));
        }
        let limit = usize::try_from(request.limit).unwrap_or(0).max(1);
        let rules = inner.differences;
        let (difference, served) = updates::channel_difference(
            &mut inner.world,
            who.id(),
            channel,
            request.pts,
            limit,
            rules,
        );
        Self::count_served(&mut inner, served);
        drop(inner);
        self.changed();
        ok(&request, difference)
    }

    fn get_users(&self, who: Who, request: functions::users::GetUsers) -> Reply {
        let inner = self.lock();
        let ids = request.id.iter().filter_map(|input| match input {
            tl::enums::InputUser::UserSelf => Some(who.id()),
            tl::enums::InputUser::User(user) => Some(user.user_id),
            _ => None,
        });
        // Unknown ids are left out, as Telegram does.
        let found: Vec<tl::enums::User> = ids
            .filter_map(|id| inner.world.profile(id))
            .map(|p| render::user(p, inner.world.is_bot(p.id), who.id()))
            .collect();
        ok(&request, found)
    }

    /// The bare id of the channel `input` names (its access hash checked).
    fn channel(&self, input: &tl::enums::InputChannel) -> Result<i64, TgError> {
        let tl::enums::InputChannel::Channel(channel) = input else {
            return Err(TgError::bad_request("CHANNEL_INVALID"));
        };
        let inner = self.lock();
        inner
            .world
            .groups
            .get(&channel.channel_id)
            .filter(|g| g.kind.is_channel() && g.access_hash == channel.access_hash)
            .map(|g| g.id)
            .ok_or_else(|| TgError::bad_request("CHANNEL_INVALID"))
    }

    /// The chat `peer` names for `who`: for a bot, its private chat with a
    /// user or a group; for a user, its chat with a bot (user-to-user and
    /// bot-to-bot chats are not modelled) or a group.
    fn chat_peer(&self, who: Who, peer: &tl::enums::InputPeer) -> Result<Target, TgError> {
        let (id, hash) = match peer {
            tl::enums::InputPeer::User(user) => (user.user_id, user.access_hash),
            tl::enums::InputPeer::UserFromMessage(from) => (from.user_id, 0),
            tl::enums::InputPeer::Chat(chat) => {
                let inner = self.lock();
                return match inner.world.groups.get(&chat.chat_id) {
                    Some(group) if !group.kind.is_channel() => Ok(Target::Group(group.id)),
                    _ => Err(TgError::bad_request("PEER_ID_INVALID")),
                };
            }
            tl::enums::InputPeer::Channel(channel) => {
                let input: tl::enums::InputChannel = tl::types::InputChannel {
                    channel_id: channel.channel_id,
                    access_hash: channel.access_hash,
                }
                .into();
                return self.channel(&input).map(Target::Group);
            }
            _ => return Err(TgError::bad_request("PEER_ID_INVALID")),
        };
        let inner = self.lock();
        let world = &inner.world;
        let profile = world
            .profile(id)
            .filter(|p| hash == 0 || p.access_hash == hash)
            .ok_or_else(|| TgError::bad_request("PEER_ID_INVALID"))?;
        match who {
            Who::Bot(bot) if !world.is_bot(profile.id) => Ok(Target::Private {
                user: profile.id,
                bot,
            }),
            Who::User(user) if world.is_bot(profile.id) => Ok(Target::Private {
                user,
                bot: profile.id,
            }),
            _ => Err(TgError::bad_request("PEER_ID_INVALID")),
        }
    }

    /// Posts a draft as `who` to `target` and builds the sender's RPC
    /// result: `updateShortSentMessage` for a text in a private chat (as
    /// Telegram answers), else `updateMessageID` + the new message.
    fn post(&self, who: Who, key: i64, target: Target, draft: Draft, short: bool) -> Reply {
        let random_id = draft.random_id.unwrap_or_default();
        let mut inner = self.lock();
        let outbox = &self.0.outbox;
        let posted = match who {
            Who::Bot(bot) => inner.post_from_bot(outbox, bot, target, draft, Some(key))?,
            Who::User(user) => inner.post_from_user(outbox, user, target, draft, Some(key))?,
        };
        let message = &posted.message;
        let reply = if short && message.chat.is_none() {
            tl::types::UpdateShortSentMessage {
                out: true,
                id: message.id,
                pts: posted.sender_pts,
                pts_count: 1,
                date: message.date,
                media: None,
                entities: render::entities(message),
                ttl_period: None,
            }
            .into()
        } else {
            let mut batch = updates::Batch::new();
            batch.mention(message);
            batch.push(updates::message_id(message.id, random_id));
            batch.push(updates::new_message(message, who.id(), posted.sender_pts));
            batch.container(&inner.world, who.id(), 0)
        };
        let reply: tl::enums::Updates = reply;
        drop(inner);
        self.changed();
        Ok(reply.to_bytes())
    }

    /// A validated, serialized markup — only bots attach keyboards.
    fn bot_markup(
        who: Who,
        markup: Option<&tl::enums::ReplyMarkup>,
    ) -> Result<Option<Vec<u8>>, TgError> {
        match (who, markup) {
            (Who::Bot(_), Some(markup)) => {
                markup::validate(markup).map_err(TgError::bad_request)?;
                Ok(Some(markup.to_bytes()))
            }
            _ => Ok(None),
        }
    }

    fn send_message(&self, who: Who, key: i64, request: functions::messages::SendMessage) -> Reply {
        let target = self.chat_peer(who, &request.peer)?;
        let draft = Draft {
            text: request.message,
            reply_markup: Self::bot_markup(who, request.reply_markup.as_ref())?,
            entities: request.entities.as_ref().map(Serializable::to_bytes),
            reply_to: reply_to(request.reply_to.as_ref()),
            random_id: Some(request.random_id),
            flags: SendFlags {
                silent: request.silent,
                noforwards: request.noforwards,
                no_webpage: request.no_webpage,
            },
            ..Draft::default()
        };
        self.post(who, key, target, draft, true)
    }

    fn send_media(&self, who: Who, key: i64, request: functions::messages::SendMedia) -> Reply {
        let target = self.chat_peer(who, &request.peer)?;
        let draft = Draft {
            text: request.message,
            media: Some(sending::media_from_input(&request.media)?),
            reply_markup: Self::bot_markup(who, request.reply_markup.as_ref())?,
            entities: request.entities.as_ref().map(Serializable::to_bytes),
            reply_to: reply_to(request.reply_to.as_ref()),
            random_id: Some(request.random_id),
            flags: SendFlags {
                silent: request.silent,
                noforwards: request.noforwards,
                no_webpage: false,
            },
            ..Draft::default()
        };
        self.post(who, key, target, draft, false)
    }

    fn edit_message(&self, who: Who, key: i64, request: functions::messages::EditMessage) -> Reply {
        let Who::Bot(bot) = who else {
            return Err(TgError::new(403, "MESSAGE_AUTHOR_REQUIRED"));
        };
        let target = self.chat_peer(who, &request.peer)?;
        if let Some(media) = &request.media {
            return Err(TgError::bad_request(format!(
                "MEDIA_NOT_SUPPORTED_IN_SANDBOX: {}",
                markup::tl_name(media)
            )));
        }
        if let Some(markup) = &request.reply_markup
            && !matches!(markup, tl::enums::ReplyMarkup::ReplyInlineMarkup(_))
        {
            return Err(TgError::bad_request("REPLY_MARKUP_INVALID"));
        }
        let edit = Edit {
            text: request.message.clone(),
            markup: Self::bot_markup(who, request.reply_markup.as_ref())?,
            entities: request.entities.as_ref().map(Serializable::to_bytes),
        };
        let mut inner = self.lock();
        let (edited, pts) = inner.edit(&self.0.outbox, bot, target, request.id, edit, Some(key))?;
        let mut batch = updates::Batch::new();
        batch.mention(&edited);
        batch.push(updates::edit_message(&edited, bot, pts));
        let reply = batch.container(&inner.world, bot, 0);
        drop(inner);
        self.changed();
        Ok(reply.to_bytes())
    }

    fn delete(
        &self,
        who: Who,
        key: i64,
        place: Place,
        ids: &[i32],
    ) -> Result<tl::enums::messages::AffectedMessages, TgError> {
        if ids.is_empty() || ids.len() > 100 {
            return Err(TgError::bad_request("MESSAGE_ID_INVALID"));
        }
        let mut inner = self.lock();
        let (pts, pts_count) = inner.delete(&self.0.outbox, who.id(), place, ids, Some(key))?;
        drop(inner);
        self.changed();
        Ok(tl::types::messages::AffectedMessages { pts, pts_count }.into())
    }

    /// `messages.setTyping`: remembered for the control API's chat view, and
    /// pushed to the user of a private chat.
    fn set_typing(&self, who: Who, request: functions::messages::SetTyping) -> Reply {
        let target = self.chat_peer(who, &request.peer)?;
        let mut inner = self.lock();
        let typing = super::Typing {
            action: markup::tl_name(&request.action),
            date: render::now(),
        };
        let chat = match target {
            Target::Private { user, .. } => user,
            Target::Group(group) => -group,
        };
        inner.typing.insert((who.id(), chat), typing);
        if let (Who::Bot(bot), Target::Private { user, .. }) = (who, target) {
            let update: tl::enums::Updates = tl::types::UpdateShort {
                update: tl::types::UpdateUserTyping {
                    user_id: bot,
                    top_msg_id: None,
                    action: request.action.clone(),
                }
                .into(),
                date: typing.date,
            }
            .into();
            let bytes = update.to_bytes();
            for key in inner.world.key_ids_of(user) {
                self.0.outbox.push(key, &bytes);
            }
        }
        ok(&request, true)
    }

    fn set_callback_answer(
        &self,
        who: Who,
        request: functions::messages::SetBotCallbackAnswer,
    ) -> Reply {
        if !matches!(who, Who::Bot(_)) {
            return Err(TgError::bad_request("USER_BOT_REQUIRED"));
        }
        if request
            .message
            .as_deref()
            .is_some_and(|m| m.chars().count() > 200)
        {
            return Err(TgError::bad_request("MESSAGE_TOO_LONG"));
        }
        if let Some(url) = &request.url
            && !super::queries::starts_the_bot(url, super::BOT_USERNAME)
        {
            return Err(TgError::bad_request("URL_INVALID"));
        }
        let answer = BotAnswer {
            message: request.message.clone(),
            alert: request.alert,
            url: request.url.clone(),
            cache_time: request.cache_time,
        };
        self.lock().callbacks.answer(request.query_id, answer)?;
        ok(&request, true)
    }

    async fn get_callback_answer(
        &self,
        who: Who,
        request: functions::messages::GetBotCallbackAnswer,
    ) -> Reply {
        let Who::User(user) = who else {
            return Err(TgError::bad_request("BOT_INVALID"));
        };
        self.chat_peer(who, &request.peer)?;
        let Some(data) = request.data.clone() else {
            return Err(TgError::bad_request("DATA_INVALID"));
        };
        let outcome = self.press_callback(user, request.msg_id, data).await?;
        let answer = outcome.result?;
        ok(
            &request,
            tl::types::messages::BotCallbackAnswer {
                alert: answer.alert,
                has_url: answer.url.is_some(),
                native_ui: false,
                message: answer.message,
                url: answer.url,
                cache_time: answer.cache_time,
            }
            .into(),
        )
    }

    fn get_history(&self, who: Who, request: functions::messages::GetHistory) -> Reply {
        let Who::User(user) = who else {
            // Telegram does not let bots read history.
            return Err(TgError::bad_request("BOT_METHOD_INVALID"));
        };
        let Target::Private { bot, .. } = self.chat_peer(who, &request.peer)? else {
            return Err(TgError::bad_request(
                "METHOD_NOT_SUPPORTED_IN_SANDBOX: group history",
            ));
        };
        let inner = self.lock();
        let limit = usize::try_from(request.limit)
            .ok()
            .filter(|l| (1..=100).contains(l))
            .unwrap_or(100);
        let messages: Vec<tl::enums::Message> = inner
            .world
            .chat_messages(user, bot)
            .rev()
            .filter(|m| request.offset_id <= 0 || m.id < request.offset_id)
            .filter(|m| request.max_id <= 0 || m.id < request.max_id)
            .filter(|m| m.id > request.min_id)
            .take(limit)
            .map(|m| render::message(m, who.id()))
            .collect();
        let users = updates::users(&inner.world, who.id(), [who.id(), bot]);
        ok(
            &request,
            tl::types::messages::Messages {
                messages,
                topics: Vec::new(),
                chats: Vec::new(),
                users,
            }
            .into(),
        )
    }

    /// `messages.getMessages`: messages of the caller's private chats and
    /// basic groups by id; ids it cannot see come back as `messageEmpty`,
    /// as in Telegram.
    fn get_messages(&self, who: Who, request: functions::messages::GetMessages) -> Reply {
        let inner = self.lock();
        let world = &inner.world;
        let mut batch = updates::Batch::new();
        let sees = |m: &&StoredMessage| m.audience().contains(&who.id());
        let messages: Vec<tl::enums::Message> = request
            .id
            .iter()
            .map(|input| {
                let id = match input {
                    tl::enums::InputMessage::Id(m) => m.id,
                    tl::enums::InputMessage::ReplyTo(m) => world
                        .messages
                        .get(&m.id)
                        .filter(sees)
                        .and_then(|m| m.reply_to)
                        .unwrap_or(0),
                    tl::enums::InputMessage::CallbackQuery(m) => m.id,
                    tl::enums::InputMessage::Pinned => 0,
                };
                match world.messages.get(&id).filter(sees) {
                    Some(message) => {
                        batch.mention(message);
                        render::message(message, who.id())
                    }
                    None => tl::types::MessageEmpty { id, peer_id: None }.into(),
                }
            })
            .collect();
        batch.users.insert(who.id());
        ok(
            &request,
            tl::types::messages::Messages {
                messages,
                topics: Vec::new(),
                chats: updates::chats(world, who.id(), batch.chats.iter().copied()),
                users: updates::users(world, who.id(), batch.users.iter().copied()),
            }
            .into(),
        )
    }

    fn resolve_username(&self, who: Who, request: functions::contacts::ResolveUsername) -> Reply {
        let inner = self.lock();
        let world = &inner.world;
        let wanted = request.username.trim_start_matches('@');
        let found = world
            .profiles()
            .find(|p| {
                p.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(wanted))
            })
            .ok_or_else(|| TgError::bad_request("USERNAME_NOT_OCCUPIED"))?;
        ok(
            &request,
            tl::types::contacts::ResolvedPeer {
                peer: render::peer_user(found.id),
                chats: Vec::new(),
                users: updates::users(world, who.id(), [found.id]),
            }
            .into(),
        )
    }
}

fn reply_to(reply: Option<&tl::enums::InputReplyTo>) -> Option<i32> {
    match reply? {
        tl::enums::InputReplyTo::Message(to) => Some(to.reply_to_msg_id),
        _ => None,
    }
}
