//! The Telegram half of the sandbox: the [`Service`] that answers RPCs, and
//! the operations the control API uses to act as users.
//!
//! Everything lives in one [`World`] behind one lock: it is small, and a
//! single lock makes each RPC atomic, so pts are handed out and pushed in one
//! order. Nothing awaits while holding it. Files by concept: `accounts`
//! (keys, tokens), `world` (chats, groups, messages), `boxes` (pts/qts
//! arithmetic), `updates` (pushes and differences), `limits` (flood
//! limits), `markup` (keyboards), `sending` (sending rules), `queries`
//! (button clicks), `files` (media content), `users` (simulated users),
//! `groups` (groups, supergroups, channels), `render` (TL objects), `rpc`
//! (dispatch).

mod accounts;
mod boxes;
mod dcs;
mod files;
mod groups;
pub(crate) mod limits;
mod markup;
mod queries;
mod render;
mod rpc;
mod sending;
mod updates;
mod users;
mod world;

pub use render::config;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};

pub use accounts::{AccountId, BotToken, auth_key_from_hex, key_id, to_hex};
pub use boxes::{DifferenceRules, Role};
pub use dcs::DC_IDS;
pub use files::{FileChange, content as file_content};
pub use groups::{BotAction, NewGroup};
pub use limits::{ChatKind, FloodRules, Rate};
pub use queries::{BotAnswer, ClickOutcome};
pub use render::DC_ID;
pub use sending::UserMessage;
pub use users::{Pressed, UserClick};
pub use world::{BOT_ID, BOT_USERNAME, StoredMedia, World};
pub use world::{GroupKind, bare_group_id};

use crate::sandbox::{AuthKeyBytes, Caller, KeyRing, Outbox, RpcFuture, Service};
use accounts::{KeyRecord, Profile};
use queries::Callbacks;
use world::UserRecord;

/// How long a click waits for the bot's answer by default (Telegram's apps
/// give up after about 10 s).
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A Telegram RPC error: `code` and `name` as in `rpc_error`
/// (e.g. `400 PEER_ID_INVALID`, `420 FLOOD_WAIT_3`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code} {name}")]
pub struct TgError {
    pub code: i32,
    pub name: String,
}

impl TgError {
    pub fn new(code: i32, name: impl Into<String>) -> Self {
        TgError {
            code,
            name: name.into(),
        }
    }

    pub fn bad_request(name: impl Into<String>) -> Self {
        TgError::new(400, name)
    }

    pub fn flood_wait(seconds: u32) -> Self {
        TgError::new(420, format!("FLOOD_WAIT_{seconds}"))
    }

    /// The code Telegram uses for an error of this name.
    pub fn named(name: &str) -> Self {
        let code = if name.starts_with("FLOOD_WAIT_") {
            420
        } else if matches!(
            name,
            "CHAT_WRITE_FORBIDDEN"
                | "USER_BOT_INVALID"
                | "USER_RESTRICTED"
                | "CHAT_ADMIN_REQUIRED"
                | "MESSAGE_DELETE_FORBIDDEN"
                | "MESSAGE_AUTHOR_REQUIRED"
        ) {
            403
        } else if matches!(
            name,
            "INTERNAL" | "INTERNAL_SERVER_ERROR" | "RPC_CALL_FAIL" | "MSG_WAIT_FAILED"
        ) {
            500
        } else if name == "AUTH_KEY_UNREGISTERED" {
            401
        } else {
            400
        };
        TgError::new(code, name)
    }
}

/// An error injected by `POST /faults`: the bot's sends to one user (or to
/// anyone) fail with it (`remaining` times, or until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatFault {
    pub error: TgError,
    pub remaining: Option<u32>,
}

/// What `GET /stats` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// RPCs served, by TL name of the function.
    pub rpc_counts: BTreeMap<String, u64>,
    /// RPC errors answered, by error name (without a trailing number:
    /// `FLOOD_WAIT_7` counts as `FLOOD_WAIT`).
    pub rpc_errors: BTreeMap<String, u64>,
    /// `FLOOD_WAIT`s the flood limits issued (injected ones are only in
    /// `rpc_errors`).
    pub flood_waits: u64,
    pub duplicates_suppressed: u64,
    pub messages_from_bot: u64,
    pub messages_from_users: u64,
    pub callback_queries: u64,
    pub callback_timeouts: u64,
    /// Differences served, by kind (`difference`, `differenceSlice`,
    /// `channelDifferenceEmpty`, ...).
    pub differences: BTreeMap<String, u64>,
    /// Times every file reference handed out expired.
    pub file_references_expired: u64,
    /// Times every file moved to another DC.
    pub files_moved: u64,
    /// `updatesTooLong` pushed to clients whose backlog passed the limit.
    pub updates_too_long: u64,
}

/// The bot as signed in by [`FakeTelegram::sign_in_bot`]: its boxes were
/// at pts 1 and qts 1 at `created`.
#[derive(Debug, Clone, Copy)]
pub struct SignedInBot {
    pub id: AccountId,
    pub access_hash: i64,
    pub created: i32,
}

/// A new sandbox user, as `POST /users` describes it.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub id: Option<AccountId>,
    pub first_name: String,
    pub username: Option<String>,
    pub lang_code: Option<String>,
}

/// A created user and the auth key its MTProto client signs in with.
pub struct CreatedUser {
    pub id: AccountId,
    pub access_hash: i64,
    pub auth_key: AuthKeyBytes,
}

/// Errors of control operations (bad input from the control API's caller).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("no user with id {0}")]
    UnknownUser(AccountId),
    #[error("no bot with id {0}")]
    UnknownBot(AccountId),
    #[error("a user with id {0} already exists")]
    UserExists(AccountId),
    #[error("username @{0} is taken")]
    UsernameTaken(String),
    #[error("no message {message_id} in the chat of user {user_id}")]
    UnknownMessage { user_id: AccountId, message_id: i32 },
    #[error("no group with id {0}")]
    UnknownGroup(i64),
    #[error("no message {message_id} in group {group_id}")]
    UnknownGroupMessage { group_id: i64, message_id: i32 },
    #[error("invalid {field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    #[error("Telegram refused: {0}")]
    Telegram(#[from] TgError),
}

impl SandboxError {
    pub(crate) fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        SandboxError::Invalid {
            field,
            rule: rule.into(),
        }
    }
}

/// The last chat action someone set in a chat (`messages.setTyping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Typing {
    pub action: &'static str,
    pub date: i32,
}

struct Inner {
    world: World,
    /// By who set it and chat: a user's id (private chat) or a group's
    /// bare id, negated.
    typing: HashMap<(AccountId, i64), Typing>,
    flood: FloodRules,
    differences: DifferenceRules,
    callbacks: Callbacks,
    file_changes: files::FileChanges,
    /// Injected send errors by user (`None`: every chat).
    chat_faults: HashMap<Option<AccountId>, ChatFault>,
    stats: Stats,
    callback_timeout: Duration,
}

struct Shared {
    inner: Mutex<Inner>,
    outbox: Arc<Outbox>,
    /// Signalled after every change to the world (the state file listens).
    changed: Notify,
    /// Counts changes to the world, for any number of watchers (the web page).
    generation: watch::Sender<u64>,
    /// The sandbox's DCs, for `help.getConfig`.
    dc_addresses: Mutex<Vec<(i32, SocketAddrV4)>>,
    /// Authorizations exported for another DC, not imported yet.
    exports: Mutex<dcs::Exports>,
}

/// The sandbox's Telegram: cheap to clone, one per DC.
#[derive(Clone)]
pub struct FakeTelegram(Arc<Shared>);

impl FakeTelegram {
    pub fn new(world: World, outbox: Arc<Outbox>) -> Self {
        FakeTelegram(Arc::new(Shared {
            inner: Mutex::new(Inner {
                world,
                typing: HashMap::new(),
                flood: FloodRules::default(),
                differences: DifferenceRules::default(),
                callbacks: Callbacks::default(),
                file_changes: files::FileChanges::default(),
                chat_faults: HashMap::new(),
                stats: Stats::default(),
                callback_timeout: DEFAULT_CALLBACK_TIMEOUT,
            }),
            outbox,
            changed: Notify::new(),
            generation: watch::channel(0).0,
            dc_addresses: Mutex::default(),
            exports: Mutex::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Handlers never leave the world half-changed across a panic point.
        self.0.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.0.changed.notify_one();
        self.0.generation.send_modify(|generation| *generation += 1);
    }

    /// Marks itself changed after every change to the world; a chat view
    /// re-reads what it shows when it is.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.0.generation.subscribe()
    }

    /// Resolves after the world changed (for the state file's writer).
    pub async fn wait_changed(&self) {
        self.0.changed.notified().await;
    }

    /// A copy of the world, for saving.
    pub fn snapshot(&self) -> World {
        self.lock().world.clone()
    }

    /// The first bot's id (the one bot of a one-bot sandbox).
    pub fn bot_id(&self) -> AccountId {
        self.lock().world.first_bot().profile.id
    }

    /// Every bot's id, the first one first.
    pub fn bot_ids(&self) -> Vec<AccountId> {
        self.lock().world.bot_ids().collect()
    }

    /// Adds bots until there are `count`; returns every bot's id.
    pub fn ensure_bots(&self, count: usize) -> Vec<AccountId> {
        let mut inner = self.lock();
        let added = inner.world.bots.len() < count;
        while inner.world.bots.len() < count {
            inner.world.add_bot();
        }
        let ids = inner.world.bot_ids().collect();
        drop(inner);
        if added {
            self.changed();
        }
        ids
    }

    /// The bot `id`, or [`SandboxError::UnknownBot`].
    pub fn check_bot(&self, id: AccountId) -> Result<AccountId, SandboxError> {
        if self.lock().world.is_bot(id) {
            Ok(id)
        } else {
            Err(SandboxError::UnknownBot(id))
        }
    }

    pub fn bot_token(&self, bot: AccountId) -> Result<BotToken, SandboxError> {
        let inner = self.lock();
        let record = inner.world.bot(bot).ok_or(SandboxError::UnknownBot(bot))?;
        Ok(record.token.clone())
    }

    /// The bot's first auth key: the one written into the worker's session.
    /// (A world without one, e.g. an edited state file, gets a new one.)
    pub fn bot_auth_key(&self, bot: AccountId) -> Result<AuthKeyBytes, SandboxError> {
        self.bot_auth_key_on(bot, DC_ID)
    }

    /// The bot's auth key on DC `dc_id` (minted the first time). Only the
    /// home DC's is signed in by `auth.importBotAuthorization`; the others
    /// get the bot's authorization by `auth.importAuthorization`.
    pub fn bot_auth_key_on(
        &self,
        bot: AccountId,
        dc_id: i32,
    ) -> Result<AuthKeyBytes, SandboxError> {
        let mut inner = self.lock();
        let world = &mut inner.world;
        let record = world.bot(bot).ok_or(SandboxError::UnknownBot(bot))?;
        let existing = record
            .keys
            .get(&dc_id)
            .and_then(|id| world.key(*id))
            .map(|k| k.key);
        if let Some(key) = existing {
            return Ok(key);
        }
        let record = KeyRecord::mint_on(dc_id, None);
        let key = record.key;
        let key_id = record.key_id();
        world.keys.push(record);
        if let Some(bot) = world.bot_mut(bot) {
            bot.keys.insert(dc_id, key_id);
        }
        drop(inner);
        self.changed();
        Ok(key)
    }

    /// Signs the bot's first key in as the bot (what
    /// `auth.importBotAuthorization` does) and tells where its boxes stood
    /// when the sandbox made it: the state a session written for the bot
    /// starts from, so nothing sent to the bot since is lost.
    pub fn sign_in_bot(&self, bot: AccountId) -> Result<SignedInBot, SandboxError> {
        let key = self.bot_auth_key(bot)?;
        let mut inner = self.lock();
        let world = &mut inner.world;
        if let Some(record) = world.keys.iter_mut().find(|k| k.key == key) {
            record.account = Some(bot);
        }
        let record = world.bot(bot).ok_or(SandboxError::UnknownBot(bot))?;
        let signed_in = SignedInBot {
            id: bot,
            access_hash: record.profile.access_hash,
            created: record.created,
        };
        drop(inner);
        self.changed();
        Ok(signed_in)
    }

    /// The auth keys the bot signs in with (bound to it, or minted for it):
    /// what connection faults aimed at the bot hit.
    pub fn bot_key_ids(&self, bot: AccountId) -> Vec<i64> {
        let inner = self.lock();
        let minted: Vec<i64> = inner
            .world
            .bot(bot)
            .map(|b| b.keys.values().copied().collect())
            .unwrap_or_default();
        inner
            .world
            .keys
            .iter()
            .filter(|k| k.account == Some(bot) || minted.contains(&k.key_id()))
            .map(|k| k.key_id())
            .collect()
    }

    /// Fault `revoke_bot_session`: the bot's keys are signed out and answer
    /// `401 AUTH_KEY_UNREGISTERED` until `auth.importBotAuthorization`.
    pub fn revoke_bot_session(&self, bot: AccountId) {
        let mut inner = self.lock();
        for key in inner
            .world
            .keys
            .iter_mut()
            .filter(|k| k.account == Some(bot))
        {
            key.account = None;
        }
        drop(inner);
        self.changed();
    }

    /// Fault `revoke_bot_token`: the session is dropped and the token
    /// replaced, so signing in again fails with `ACCESS_TOKEN_INVALID`.
    pub fn revoke_bot_token(&self, bot: AccountId) {
        self.revoke_bot_session(bot);
        let mut inner = self.lock();
        if let Some(record) = inner.world.bot_mut(bot) {
            record.token = BotToken::mint(bot);
        }
        drop(inner);
        self.changed();
    }

    /// Where the sandbox's DCs listen, as `help.getConfig` lists them.
    pub fn set_dc_addresses(&self, dcs: Vec<(i32, SocketAddrV4)>) {
        *self
            .0
            .dc_addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = dcs;
    }

    fn dc_addresses(&self) -> Vec<(i32, SocketAddrV4)> {
        self.0
            .dc_addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_callback_timeout(&self, timeout: Duration) {
        self.lock().callback_timeout = timeout;
    }

    pub fn callback_timeout(&self) -> Duration {
        self.lock().callback_timeout
    }

    pub fn set_limits_enabled(&self, enabled: bool) {
        self.lock().flood.set_enabled(enabled);
    }

    pub fn limits_enabled(&self) -> bool {
        self.lock().flood.enabled()
    }

    /// Makes the bot's sends to `user` (`None`: to anyone) fail with
    /// `fault`, or clears that.
    pub fn set_chat_fault(
        &self,
        user: Option<AccountId>,
        fault: Option<ChatFault>,
    ) -> Result<(), SandboxError> {
        let mut inner = self.lock();
        if let Some(user) = user
            && !inner.world.users.contains_key(&user)
        {
            return Err(SandboxError::UnknownUser(user));
        }
        match fault {
            Some(fault) => inner.chat_faults.insert(user, fault),
            None => inner.chat_faults.remove(&user),
        };
        Ok(())
    }

    /// How differences are cut (slice size, too-long backlog).
    pub fn set_difference_rules(&self, rules: DifferenceRules) {
        self.lock().differences = rules;
    }

    pub fn difference_rules(&self) -> DifferenceRules {
        self.lock().differences
    }

    /// Pushes past this many unread by a connection become one
    /// `updatesTooLong` (the client then fetches a difference).
    pub fn set_push_backlog_limit(&self, limit: usize) {
        self.0.outbox.set_backlog_limit(limit);
    }

    pub fn push_backlog_limit(&self) -> usize {
        self.0.outbox.backlog_limit()
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.lock().stats.clone();
        stats.updates_too_long = self.0.outbox.too_long_pushed();
        stats
    }

    /// Creates a user, signed in on a fresh auth key of its own.
    pub fn create_user(&self, new: NewUser) -> Result<CreatedUser, SandboxError> {
        if new.first_name.trim().is_empty() {
            return Err(SandboxError::invalid("first_name", "must not be empty"));
        }
        if let Some(name) = &new.username {
            check_username(name)?;
        }
        if let Some(code) = &new.lang_code {
            let valid = (2..=10).contains(&code.len())
                && code.chars().all(|c| c.is_ascii_alphabetic() || c == '-');
            if !valid {
                return Err(SandboxError::invalid(
                    "lang_code",
                    "an IETF language tag such as en or pt-br (2-10 letters and -)",
                ));
            }
        }
        let mut inner = self.lock();
        let world = &mut inner.world;
        let id = match new.id {
            Some(id) if id <= 0 || id >= 1 << 52 => {
                return Err(SandboxError::invalid("id", "must be in 1..2^52"));
            }
            Some(id) if world.profile(id).is_some() => return Err(SandboxError::UserExists(id)),
            Some(id) => id,
            None => {
                while world.profile(world.next_user_id).is_some() {
                    world.next_user_id += 1;
                }
                world.next_user_id
            }
        };
        if let Some(name) = &new.username {
            let taken = world.profiles().any(|p| {
                p.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name))
            });
            if taken {
                return Err(SandboxError::UsernameTaken(name.clone()));
            }
        }
        world.next_user_id = world.next_user_id.max(id + 1);
        let profile = Profile {
            id,
            access_hash: rand::random(),
            first_name: new.first_name,
            username: new.username,
            phone: Some(format!("+1555{id:07}")),
            lang_code: new.lang_code,
            last_name: None,
            premium: false,
        };
        let access_hash = profile.access_hash;
        world.users.insert(id, UserRecord::new(profile));
        let key = KeyRecord::mint(Some(id));
        let auth_key = key.key;
        world.keys.push(key);
        drop(inner);
        self.changed();
        Ok(CreatedUser {
            id,
            access_hash,
            auth_key,
        })
    }

    /// The users, for `GET /users`: `started` and `blocked` of their chat
    /// with `bot`, and which bots each one has written to.
    pub fn users(&self, bot: AccountId) -> Vec<serde_json::Value> {
        self.lock()
            .world
            .users
            .values()
            .map(|u| {
                let chat = u.chat(bot);
                let started: Vec<AccountId> = u
                    .chats
                    .iter()
                    .filter(|(_, c)| c.started)
                    .map(|(bot, _)| *bot)
                    .collect();
                serde_json::json!({
                    "id": u.profile.id,
                    "first_name": u.profile.first_name,
                    "username": u.profile.username,
                    "lang_code": u.profile.lang_code,
                    "started": chat.started,
                    "blocked": chat.blocked,
                    "started_bots": started,
                })
            })
            .collect()
    }

    /// The bots, for `GET /bots`: the K-th is `botK` of `telegate sandbox
    /// --bots N`.
    pub fn bots(&self) -> Vec<serde_json::Value> {
        let inner = self.lock();
        (1..)
            .zip(&inner.world.bots)
            .map(|(number, b): (u32, _)| {
                serde_json::json!({
                    "name": format!("bot{number}"),
                    "id": b.profile.id,
                    "username": b.profile.username,
                    "first_name": b.profile.first_name,
                    "privacy": b.privacy,
                })
            })
            .collect()
    }
}

fn check_username(name: &str) -> Result<(), SandboxError> {
    let valid = (5..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(SandboxError::invalid(
            "username",
            "5-32 characters: letters, digits and _, starting with a letter",
        ))
    }
}

impl Service for FakeTelegram {
    fn call(&self, caller: Caller, request: Vec<u8>) -> RpcFuture {
        let telegram = self.clone();
        Box::pin(async move { telegram.dispatch(caller, request).await })
    }
}

impl KeyRing for FakeTelegram {
    fn auth_key(&self, dc_id: i32, auth_key_id: i64) -> Option<AuthKeyBytes> {
        let inner = self.lock();
        let record = inner.world.key(auth_key_id)?;
        (record.dc_id == dc_id).then_some(record.key)
    }
}
