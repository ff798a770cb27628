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
use super::sending::{self, Draft};
use super::{FakeTelegram, TgError, files, markup, render, updates};
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
        Ok(if account == inner.world.bot.id {
            Who::Bot(account)
        } else {
            Who::User(account)
        })
    }

    async fn handle(&self, caller: Caller, id: u32, name: &str, body: &[u8]) -> Reply {
        use functions::{auth, contacts, help, messages as m, updates as u, upload, users};
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
                    u::GetDifference::CONSTRUCTOR_ID => self.get_difference(who, parse(body)?),
                    users::GetUsers::CONSTRUCTOR_ID => self.get_users(who, parse(body)?),
                    m::SendMessage::CONSTRUCTOR_ID => self.send_message(who, key, parse(body)?),
                    m::SendMedia::CONSTRUCTOR_ID => self.send_media(who, key, parse(body)?),
                    m::EditMessage::CONSTRUCTOR_ID => self.edit_message(who, key, parse(body)?),
                    m::SetBotCallbackAnswer::CONSTRUCTOR_ID => {
                        self.set_callback_answer(who, parse(body)?)
                    }
                    m::GetBotCallbackAnswer::CONSTRUCTOR_ID => {
                        self.get_callback_answer(who, parse(body)?).await
                    }
                    m::GetHistory::CONSTRUCTOR_ID => self.get_history(who, parse(body)?),
                    m::GetMessages::CONSTRUCTOR_ID => self.get_messages(who, parse(body)?),
                    contacts::ResolveUsername::CONSTRUCTOR_ID => {
                        self.resolve_username(who, parse(body)?)
                    }
                    upload::GetFile::CONSTRUCTOR_ID => {
                        let request: upload::GetFile = parse(body)?;
                        let file = files::get_file(&self.lock().world, caller.dc_id, &request)?;
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
        if !world.bot_token.matches(&request.bot_auth_token) {
            return Err(TgError::bad_request("ACCESS_TOKEN_INVALID"));
        }
        let bot = world.bot.id;
        let Some(record) = world.keys.iter_mut().find(|k| k.key_id() == key) else {
            return Err(TgError::new(401, "AUTH_KEY_UNREGISTERED"));
        };
        match record.account {
            Some(account) if account != bot => {
                return Err(TgError::bad_request("USER_ALREADY_AUTHORIZED"));
            }
            _ => record.account = Some(bot),
        }
        let user = render::user(&world.bot, true, bot);
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

    fn get_difference(&self, who: Who, request: functions::updates::GetDifference) -> Reply {
        let mut inner = self.lock();
        let extra = match who {
            Who::Bot(_) => inner.callbacks.take_undelivered(),
            Who::User(_) => Vec::new(),
        };
        let difference = updates::difference(&inner.world, who.id(), request.pts, extra);
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
            .map(|p| render::user(p, p.id == inner.world.bot.id, who.id()))
            .collect();
        ok(&request, found)
    }

    /// The other side of a private chat named by `peer`: for the bot, a user
    /// who exists; for a user, the bot (user-to-user chats are not modelled).
    fn chat_peer(&self, who: Who, peer: &tl::enums::InputPeer) -> Result<AccountId, TgError> {
        let inner = self.lock();
        let world = &inner.world;
        let (id, hash) = match peer {
            tl::enums::InputPeer::User(user) => (user.user_id, user.access_hash),
            tl::enums::InputPeer::UserFromMessage(from) => (from.user_id, 0),
            _ => return Err(TgError::bad_request("PEER_ID_INVALID")),
        };
        let profile = world
            .profile(id)
            .filter(|p| hash == 0 || p.access_hash == hash)
            .ok_or_else(|| TgError::bad_request("PEER_ID_INVALID"))?;
        match who {
            Who::Bot(bot) if profile.id != bot => Ok(profile.id),
            Who::User(_) if profile.id == world.bot.id => Ok(profile.id),
            _ => Err(TgError::bad_request("PEER_ID_INVALID")),
        }
    }

    /// Posts a draft as `who` to `peer` and builds the sender's RPC result:
    /// `updateMessageID` + `updateNewMessage`, with the users.
    fn post(&self, who: Who, key: i64, peer: AccountId, draft: Draft) -> Reply {
        let random_id = draft.random_id.unwrap_or_default();
        let mut inner = self.lock();
        let outbox = &self.0.outbox;
        let posted = match who {
            Who::Bot(_) => inner.post_from_bot(outbox, peer, draft, Some(key))?,
            Who::User(user) => inner.post_from_user(outbox, user, draft, Some(key))?,
        };
        let reply = updates::container(
            &inner.world,
            who.id(),
            vec![
                updates::message_id(posted.message.id, random_id),
                updates::new_message(&posted.message, who.id(), posted.sender_pts),
            ],
            [posted.message.from, posted.message.to],
        );
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
        let peer = self.chat_peer(who, &request.peer)?;
        let draft = Draft {
            text: request.message,
            media: None,
            reply_markup: Self::bot_markup(who, request.reply_markup.as_ref())?,
            reply_to: reply_to(request.reply_to.as_ref()),
            random_id: Some(request.random_id),
        };
        self.post(who, key, peer, draft)
    }

    fn send_media(&self, who: Who, key: i64, request: functions::messages::SendMedia) -> Reply {
        let peer = self.chat_peer(who, &request.peer)?;
        let draft = Draft {
            text: request.message,
            media: Some(sending::media_from_input(&request.media)?),
            reply_markup: Self::bot_markup(who, request.reply_markup.as_ref())?,
            reply_to: reply_to(request.reply_to.as_ref()),
            random_id: Some(request.random_id),
        };
        self.post(who, key, peer, draft)
    }

    fn edit_message(&self, who: Who, key: i64, request: functions::messages::EditMessage) -> Reply {
        let Who::Bot(bot) = who else {
            return Err(TgError::new(403, "MESSAGE_AUTHOR_REQUIRED"));
        };
        let peer = self.chat_peer(who, &request.peer)?;
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
        let markup = Self::bot_markup(who, request.reply_markup.as_ref())?;
        let mut inner = self.lock();
        let (edited, pts) = inner.edit_from_bot(
            &self.0.outbox,
            peer,
            request.id,
            request.message,
            markup,
            Some(key),
        )?;
        let reply = updates::container(
            &inner.world,
            bot,
            vec![updates::edit_message(&edited, bot, pts)],
            [bot, peer],
        );
        drop(inner);
        self.changed();
        Ok(reply.to_bytes())
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
        let peer = self.chat_peer(who, &request.peer)?;
        let inner = self.lock();
        let limit = usize::try_from(request.limit)
            .ok()
            .filter(|l| (1..=100).contains(l))
            .unwrap_or(100);
        let messages: Vec<tl::enums::Message> = inner
            .world
            .chat_messages(user)
            .rev()
            .filter(|m| request.offset_id <= 0 || m.id < request.offset_id)
            .filter(|m| request.max_id <= 0 || m.id < request.max_id)
            .filter(|m| m.id > request.min_id)
            .take(limit)
            .map(|m| render::message(m, who.id()))
            .collect();
        let users = updates::users(&inner.world, who.id(), [who.id(), peer]);
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

    /// `messages.getMessages`: messages of the caller's chats by id; ids it
    /// cannot see come back as `messageEmpty`, as in Telegram.
    fn get_messages(&self, who: Who, request: functions::messages::GetMessages) -> Reply {
        let inner = self.lock();
        let world = &inner.world;
        let mut peers = vec![who.id()];
        let messages: Vec<tl::enums::Message> = request
            .id
            .iter()
            .map(|input| {
                let id = match input {
                    tl::enums::InputMessage::Id(m) => m.id,
                    tl::enums::InputMessage::ReplyTo(m) => world
                        .messages
                        .get(&m.id)
                        .and_then(|m| m.reply_to)
                        .unwrap_or(0),
                    tl::enums::InputMessage::CallbackQuery(m) => m.id,
                    tl::enums::InputMessage::Pinned => 0,
                };
                match world.messages.get(&id).filter(|m| m.visible_to(who.id())) {
                    Some(message) => {
                        peers.push(message.peer_of(who.id()));
                        render::message(message, who.id())
                    }
                    None => tl::types::MessageEmpty { id, peer_id: None }.into(),
                }
            })
            .collect();
        ok(
            &request,
            tl::types::messages::Messages {
                messages,
                topics: Vec::new(),
                chats: Vec::new(),
                users: updates::users(world, who.id(), peers),
            }
            .into(),
        )
    }

    fn resolve_username(&self, who: Who, request: functions::contacts::ResolveUsername) -> Reply {
        let inner = self.lock();
        let world = &inner.world;
        let wanted = request.username.trim_start_matches('@');
        let found = std::iter::once(&world.bot)
            .chain(world.users.values().map(|u| &u.profile))
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
