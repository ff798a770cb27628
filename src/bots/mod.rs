//! The bots one daemon holds, as the API and the operator see them.
//!
//! [`Bots`] is the registry: each bot's settings (enabled, interactive),
//! its session state (kept in `bot_state`'s [`BotStates`], which `/readyz`
//! and the metrics read too; shown as `connecting`, `ready`,
//! `halted: REASON` or `disabled`), its last error and the parts of its
//! worker the API reaches (its callback answerer, its downloads, its
//! webhook's progress), plus the keyring that
//! turns a request's API key into a [`Caller`]. The daemon's fleet
//! (`fleet`) runs one worker per bot (`worker`) and updates the registry
//! when the config is reloaded; an entry whose bot is unchanged is kept, so
//! its state and connection carry over.

pub mod fleet;
pub mod keys;
pub mod lease;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::bot_state::{BotState, BotStates};
use crate::callbacks::CallbackAnswerer;
use crate::config::{BotName, Config, Respond};
use crate::download::Downloads;
use crate::events::webhook::WebhookMonitor;
use keys::{Holder, KeyStatus, Keyring};

/// What the worker of a bot has made known.
#[derive(Default)]
struct Live {
    last_error: Option<String>,
    /// Telegram's id of the bot, once signed in.
    telegram_id: Option<i64>,
    username: Option<String>,
    callbacks: Option<CallbackAnswerer>,
    downloads: Option<Downloads>,
    webhook: Option<WebhookMonitor>,
    chat_actions: Option<crate::chat_action::ChatActions>,
}

/// One bot in the registry.
pub struct BotEntry {
    name: BotName,
    settings: Mutex<Settings>,
    live: Mutex<Live>,
    /// Where its session state is kept.
    states: BotStates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    enabled: bool,
    interactive: bool,
    /// `[[bots]] respond`, if it overrides `[api] respond`.
    respond: Option<Respond>,
}

/// A bot's state as `GET /api/v1/bots` shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BotStatus {
    pub name: BotName,
    /// `connecting`, `ready`, `halted: REASON` or `disabled`.
    pub state: String,
    pub enabled: bool,
    pub interactive: bool,
    pub last_error: Option<String>,
    pub telegram_id: Option<i64>,
    pub username: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: consistent whatever panicked holding it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BotEntry {
    fn new(name: BotName, settings: Settings, states: BotStates) -> Self {
        BotEntry {
            name,
            settings: Mutex::new(settings),
            live: Mutex::new(Live::default()),
            states,
        }
    }

    pub fn name(&self) -> &BotName {
        &self.name
    }

    pub fn is_enabled(&self) -> bool {
        lock(&self.settings).enabled
    }

    pub fn is_interactive(&self) -> bool {
        lock(&self.settings).interactive
    }

    /// The bot's own response mode (`None`: `[api] respond`).
    pub fn respond(&self) -> Option<Respond> {
        lock(&self.settings).respond
    }

    /// The session's state (`None`: not running).
    pub fn state(&self) -> Option<BotState> {
        self.states.get(self.name.as_str())
    }

    /// The state as the API shows it: `connecting`, `ready`,
    /// `halted: REASON` or `disabled`.
    pub fn state_text(&self) -> String {
        if !self.is_enabled() {
            return "disabled".into();
        }
        match self.state() {
            Some(BotState::Ready { .. }) => "ready".into(),
            Some(BotState::Halted { reason }) => format!("halted: {reason}"),
            Some(BotState::Stopped) => "stopped".into(),
            _ => "connecting".into(),
        }
    }

    /// Why the bot is halted (its token or app refused, its session file
    /// unusable), if it is: enqueues for it are refused meanwhile.
    pub(crate) fn halted(&self) -> Option<String> {
        match self.state() {
            Some(BotState::Halted { reason }) if self.is_enabled() => Some(reason),
            _ => None,
        }
    }

    /// The bot's worker moved to `state`.
    pub fn set_state(&self, state: BotState) {
        self.states.set(self.name.as_str(), state);
    }

    /// Where the session reports its state (for its connection).
    pub fn states(&self) -> &BotStates {
        &self.states
    }

    /// The worker's latest failure (kept after it recovers).
    pub fn set_error(&self, error: impl std::fmt::Display) {
        lock(&self.live).last_error = Some(error.to_string());
    }

    /// Signed in as Telegram's bot `id`.
    pub fn set_signed_in(&self, id: i64, username: Option<String>) {
        let mut live = lock(&self.live);
        live.telegram_id = Some(id);
        live.username = username;
    }

    /// The worker's parts the API reaches (`None`s while it has no
    /// connection).
    pub fn attach(
        &self,
        callbacks: Option<CallbackAnswerer>,
        downloads: Option<Downloads>,
        webhook: Option<WebhookMonitor>,
        chat_actions: Option<crate::chat_action::ChatActions>,
    ) {
        let mut live = lock(&self.live);
        live.callbacks = callbacks;
        live.downloads = downloads;
        live.webhook = webhook;
        live.chat_actions = chat_actions;
    }

    /// The bot's chat actions (typing…), while it is connected.
    pub fn chat_actions(&self) -> Option<crate::chat_action::ChatActions> {
        lock(&self.live).chat_actions.clone()
    }

    pub fn callbacks(&self) -> Option<CallbackAnswerer> {
        lock(&self.live).callbacks.clone()
    }

    pub fn downloads(&self) -> Option<Downloads> {
        lock(&self.live).downloads.clone()
    }

    pub fn webhook(&self) -> Option<WebhookMonitor> {
        lock(&self.live).webhook.clone()
    }

    pub fn status(&self) -> BotStatus {
        let settings = *lock(&self.settings);
        let state = self.state_text();
        let live = lock(&self.live);
        BotStatus {
            name: self.name.clone(),
            state,
            enabled: settings.enabled,
            interactive: settings.interactive,
            last_error: live.last_error.clone(),
            telegram_id: live.telegram_id,
            username: live.username.clone(),
        }
    }
}

/// Who made a request.
#[derive(Clone)]
pub enum Caller {
    /// A bot's key: everything is that bot's.
    Bot(Arc<BotEntry>),
    /// An operator key, or anyone while no key is configured: every bot.
    Operator,
}

/// Why a request's key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "an API key is required: send it as `X-Octopods-Auth: KEY` or `Authorization: Bearer KEY`"
    )]
    MissingKey,
    #[error("the API key is not valid")]
    UnknownKey,
    #[error("the API key is deprecated; nothing was done: use a current key of bot `{0}`")]
    Deprecated(BotName),
    #[error("bot `{0}` is disabled")]
    Disabled(BotName),
}

struct Registry {
    keyring: Keyring,
    bots: BTreeMap<BotName, Arc<BotEntry>>,
}

/// A request to re-read the config, answered with what changed.
pub type ReloadRequest = oneshot::Sender<Result<fleet::Applied, String>>;

/// The registry of bots; clones share it.
#[derive(Clone)]
pub struct Bots {
    registry: Arc<RwLock<Arc<Registry>>>,
    reload: Option<mpsc::Sender<ReloadRequest>>,
    states: BotStates,
}

impl Bots {
    /// One bot, `default`, and no keys: the socket works without a key
    /// (for a store and API without a daemon around them).
    pub fn single() -> Self {
        let name = BotName::default_bot();
        let states = BotStates::new();
        let mut bots = BTreeMap::new();
        let settings = Settings {
            enabled: true,
            interactive: true,
            respond: None,
        };
        let entry = BotEntry::new(name.clone(), settings, states.clone());
        bots.insert(name, Arc::new(entry));
        Bots {
            registry: Arc::new(RwLock::new(Arc::new(Registry {
                keyring: Keyring::default(),
                bots,
            }))),
            reload: None,
            states,
        }
    }

    /// The bots and keys of `config`.
    pub fn from_config(config: &Config) -> Self {
        let bots = Bots {
            registry: Arc::new(RwLock::new(Arc::new(Registry {
                keyring: Keyring::default(),
                bots: BTreeMap::new(),
            }))),
            reload: None,
            states: BotStates::new(),
        };
        bots.update(config);
        bots
    }

    /// Every running bot's session state (`/readyz`, the metrics).
    pub fn states(&self) -> &BotStates {
        &self.states
    }

    /// Lets `POST /api/v1/reload` ask for a reload on `requests`.
    pub fn with_reload(mut self, requests: mpsc::Sender<ReloadRequest>) -> Self {
        self.reload = Some(requests);
        self
    }

    fn current(&self) -> Arc<Registry> {
        Arc::clone(&self.registry.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes `config`'s bots and keys: entries of bots still configured are
    /// kept (with their live state), settings updated; others dropped.
    pub fn update(&self, config: &Config) {
        let old = self.current();
        let mut bots = BTreeMap::new();
        for bot in &config.bots {
            let settings = Settings {
                enabled: bot.enabled,
                interactive: bot.interactive,
                respond: bot.respond,
            };
            let entry = match old.bots.get(&bot.name) {
                Some(entry) => {
                    *lock(&entry.settings) = settings;
                    Arc::clone(entry)
                }
                None => Arc::new(BotEntry::new(
                    bot.name.clone(),
                    settings,
                    self.states.clone(),
                )),
            };
            if !bot.enabled {
                self.states.remove(bot.name.as_str());
            }
            bots.insert(bot.name.clone(), entry);
        }
        for gone in old.bots.keys().filter(|name| !bots.contains_key(*name)) {
            self.states.remove(gone.as_str());
        }
        let registry = Arc::new(Registry {
            keyring: Keyring::from_config(config),
            bots,
        });
        *self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner) = registry;
    }

    /// The bot named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<BotEntry>> {
        self.current().bots.get(name).cloned()
    }

    /// Every bot, by name.
    pub fn list(&self) -> Vec<Arc<BotEntry>> {
        self.current().bots.values().cloned().collect()
    }

    /// Who presents `key` (`None`: no key in the request).
    pub fn authenticate(&self, key: Option<&[u8]>) -> Result<Caller, Refusal> {
        let registry = self.current();
        if registry.keyring.is_empty() {
            return Ok(Caller::Operator);
        }
        let key = key.ok_or(Refusal::MissingKey)?;
        match registry.keyring.find(key).ok_or(Refusal::UnknownKey)? {
            (Holder::Operator, _) => Ok(Caller::Operator),
            (Holder::Bot(name), KeyStatus::Deprecated) => Err(Refusal::Deprecated(name.clone())),
            (Holder::Bot(name), KeyStatus::Current) => {
                // A key names a configured bot (the keyring is built from
                // the same config as the bots).
                let entry = registry.bots.get(name).ok_or(Refusal::UnknownKey)?;
                if !entry.is_enabled() {
                    return Err(Refusal::Disabled(name.clone()));
                }
                Ok(Caller::Bot(Arc::clone(entry)))
            }
        }
    }

    /// Asks the daemon to re-read its config; `None` when nothing takes
    /// such requests (no daemon).
    pub async fn reload(&self) -> Option<Result<fleet::Applied, String>> {
        let requests = self.reload.as_ref()?;
        let (tx, rx) = oneshot::channel();
        requests.send(tx).await.ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let config = Config::parse(text).unwrap();
        config.check().unwrap();
        config
    }

    #[test]
    fn a_key_names_its_bot_and_is_refused_as_the_config_says() {
        let bots = Bots::from_config(&config(
            "[[bots]]\nname = \"a\"\napi_keys = [\"ka\"]\ndeprecated_api_keys = [\"old\"]\n\
             [[bots]]\nname = \"b\"\napi_keys = [\"kb\"]\nenabled = false\n",
        ));
        match bots.authenticate(Some(b"ka")) {
            Ok(Caller::Bot(entry)) => assert_eq!(entry.name().as_str(), "a"),
            _ => panic!("key ka is bot a's"),
        }
        assert_eq!(bots.authenticate(None).err(), Some(Refusal::MissingKey));
        assert_eq!(
            bots.authenticate(Some(b"nope")).err(),
            Some(Refusal::UnknownKey)
        );
        assert!(matches!(
            bots.authenticate(Some(b"old")).err(),
            Some(Refusal::Deprecated(name)) if name.as_str() == "a"
        ));
        assert!(matches!(
            bots.authenticate(Some(b"kb")).err(),
            Some(Refusal::Disabled(name)) if name.as_str() == "b"
        ));
        assert_eq!(bots.get("b").unwrap().state_text(), "disabled");
        let message = Refusal::Deprecated(BotName::new("a").unwrap()).to_string();
        assert!(message.contains("deprecated"), "{message}");
    }

    #[test]
    fn without_keys_anyone_is_the_operator() {
        let bots = Bots::from_config(&config("[[bots]]\nname = \"a\"\n"));
        assert!(matches!(bots.authenticate(None), Ok(Caller::Operator)));
        assert!(matches!(
            Bots::single().authenticate(None),
            Ok(Caller::Operator)
        ));
    }

    #[test]
    fn an_update_keeps_the_entries_of_bots_still_configured() {
        let bots = Bots::from_config(&config(
            "[[bots]]\nname = \"a\"\napi_keys = [\"k1\"]\n[[bots]]\nname = \"b\"\n",
        ));
        let a = bots.get("a").unwrap();
        a.set_state(BotState::Ready {
            bot_id: 1,
            username: None,
        });
        bots.get("b").unwrap().set_state(BotState::Starting);
        bots.update(&config(
            "[[bots]]\nname = \"a\"\napi_keys = [\"k2\"]\ninteractive = false\n\
             [[bots]]\nname = \"c\"\n",
        ));
        let again = bots.get("a").unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(again.state_text(), "ready");
        assert!(!again.is_interactive());
        assert!(bots.get("b").is_none());
        // A removed bot is no part of readiness any more.
        let running: Vec<String> = bots.states().all().into_iter().map(|(n, _)| n).collect();
        assert_eq!(running, ["a"]);
        assert_eq!(bots.get("c").unwrap().state_text(), "connecting");
        // Re-keyed: the old key is gone, the new one names the bot.
        assert_eq!(
            bots.authenticate(Some(b"k1")).err(),
            Some(Refusal::UnknownKey)
        );
        assert!(matches!(bots.authenticate(Some(b"k2")), Ok(Caller::Bot(_))));
        let names: Vec<String> = bots.list().iter().map(|b| b.name().to_string()).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn states_read_as_the_api_shows_them() {
        let bots = Bots::single();
        let entry = bots.get("default").unwrap();
        assert_eq!(entry.state_text(), "connecting");
        entry.set_state(BotState::Halted {
            reason: "AUTH_KEY_UNREGISTERED".into(),
        });
        assert_eq!(entry.state_text(), "halted: AUTH_KEY_UNREGISTERED");
    }
}
