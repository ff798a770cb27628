//! `[[bots]]`: the bots one daemon holds, each with its own token, API keys
//! and limits.
//!
//! A bot is known by its `name` (its handle in the API and in file names).
//! The one-bot configuration of before (`[telegram] bot_token`) is the bot
//! named `default`, so existing files keep working. Every check here names
//! the bot and the key; none shows a token or an API key.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{LimitsConfig, Secret, WebhookConfig};

/// The longest bot name.
pub const MAX_NAME: usize = 32;

/// A bot's name: 1 to 32 of `a-z`, `0-9`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct BotName(String);

/// Why a bot name is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bot name `{0}` must be 1 to 32 characters of a-z, 0-9, `_` and `-`")]
pub struct BadBotName(String);

impl BotName {
    /// The bot of the one-bot configuration (`[telegram] bot_token`).
    pub const DEFAULT: &str = "default";

    pub fn new(name: impl Into<String>) -> Result<Self, BadBotName> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(BotName(name))
        } else {
            // Cut what is shown: the "name" might be anything.
            Err(BadBotName(name.chars().take(40).collect()))
        }
    }

    /// `default`.
    pub fn default_bot() -> Self {
        BotName(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The environment variable overriding this bot's token:
    /// `TELEGATE_BOTS__NAME__BOT_TOKEN`, NAME upper-cased with `-` as `_`.
    pub fn token_variable(&self) -> String {
        format!(
            "TELEGATE_BOTS__{}__BOT_TOKEN",
            self.0.to_ascii_uppercase().replace('-', "_")
        )
    }
}

impl TryFrom<String> for BotName {
    type Error = BadBotName;
    fn try_from(name: String) -> Result<Self, BadBotName> {
        BotName::new(name)
    }
}

impl From<BotName> for String {
    fn from(name: BotName) -> String {
        name.0
    }
}

impl fmt::Display for BotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for BotName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// `[bots.limits]`: any of the global `[limits]`, for this bot only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsOverride {
    pub bot_per_second: Option<u32>,
    pub private_chat_per_second: Option<u32>,
    pub group_per_minute: Option<u32>,
}

impl LimitsOverride {
    /// The global limits with this bot's overrides applied.
    pub fn over(&self, global: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            bot_per_second: self.bot_per_second.unwrap_or(global.bot_per_second),
            private_chat_per_second: self
                .private_chat_per_second
                .unwrap_or(global.private_chat_per_second),
            group_per_minute: self.group_per_minute.unwrap_or(global.group_per_minute),
        }
    }
}

fn yes() -> bool {
    true
}

/// One `[[bots]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    pub name: BotName,
    #[serde(default)]
    pub bot_token: Option<Secret>,
    /// A file holding the token (its whole content, trimmed).
    #[serde(default)]
    pub bot_token_file: Option<PathBuf>,
    /// Keys that name this bot in API requests.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// Keys still recognised, answered 400 with `error_code` 6.
    #[serde(default)]
    pub deprecated_api_keys: Vec<Secret>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether `POST /api/v1/telegram/interactive` is open to this bot.
    #[serde(default = "yes")]
    pub interactive: bool,
    #[serde(default)]
    pub limits: LimitsOverride,
    /// This bot's webhook; unset: the global `[webhook]`.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// When this bot's enqueues are answered; unset: `[api] respond`.
    #[serde(default)]
    pub respond: Option<super::Respond>,
    /// `host:port` of this bot's data centre; unset: `telegram.dc_addr`
    /// (the sandbox with `--bots N` runs one DC per bot).
    #[serde(default)]
    pub dc_addr: Option<String>,
}

/// Why a bot's token cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "bot `{bot}` has no token: set `bot_token` or `bot_token_file` in its [[bots]] table, or {variable}"
    )]
    Missing { bot: BotName, variable: String },
    #[error("bot `{bot}`: cannot read `bot_token_file` {path}: {source}")]
    File {
        bot: BotName,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BotConfig {
    /// A bot with `name` and `token` and every default.
    pub fn new(name: BotName, token: Option<Secret>) -> Self {
        BotConfig {
            name,
            bot_token: token,
            bot_token_file: None,
            api_keys: Vec::new(),
            deprecated_api_keys: Vec::new(),
            enabled: true,
            interactive: true,
            limits: LimitsOverride::default(),
            webhook: None,
            respond: None,
            dc_addr: None,
        }
    }

    /// The token: `bot_token` (the environment variable already applied),
    /// else the content of `bot_token_file`.
    pub fn token(&self) -> Result<Secret, TokenError> {
        if let Some(token) = self.bot_token.as_ref().filter(|t| !t.expose().is_empty()) {
            return Ok(token.clone());
        }
        let missing = || TokenError::Missing {
            bot: self.name.clone(),
            variable: self.name.token_variable(),
        };
        let Some(path) = &self.bot_token_file else {
            return Err(missing());
        };
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::File {
            bot: self.name.clone(),
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(missing());
        }
        Ok(Secret::new(token))
    }

    /// The limits this bot sends within.
    pub fn limits(&self, global: &LimitsConfig) -> LimitsConfig {
        self.limits.over(global)
    }

    /// The webhook for this bot's events, if any.
    pub fn webhook<'a>(&'a self, global: &'a WebhookConfig) -> &'a WebhookConfig {
        self.webhook.as_ref().unwrap_or(global)
    }

    fn check(&self, global: &LimitsConfig) -> Result<(), String> {
        let name = &self.name;
        if self.bot_token.is_some() && self.bot_token_file.is_some() {
            return Err(format!(
                "bot `{name}`: set `bot_token` or `bot_token_file`, not both"
            ));
        }
        let limits = self.limits(global);
        for (key, value) in [
            ("bot_per_second", limits.bot_per_second),
            ("private_chat_per_second", limits.private_chat_per_second),
            ("group_per_minute", limits.group_per_minute),
        ] {
            if value == 0 {
                return Err(format!(
                    "bot `{name}`: `limits.{key}` must be greater than 0"
                ));
            }
        }
        if let Some(addr) = &self.dc_addr
            && addr.parse::<std::net::SocketAddrV4>().is_err()
        {
            return Err(format!(
                "bot `{name}`: `dc_addr` must be IPv4 `host:port`, got `{addr}`"
            ));
        }
        if let Some(webhook) = &self.webhook {
            webhook
                .check()
                .map_err(|message| format!("bot `{name}`: {message}"))?;
        }
        Ok(())
    }
}

/// Who a key belongs to, for the uniqueness check.
#[derive(Clone, Copy)]
enum Holder<'a> {
    Bot(&'a BotName),
    Admin,
}

impl fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Bot(name) => write!(f, "bot `{name}`"),
            Holder::Admin => f.write_str("`api.admin_keys`"),
        }
    }
}

/// The checks across bots: unique names (and token variables), every key
/// non-empty and naming one bot (or the operator) only.
pub(super) fn check_all(
    bots: &[BotConfig],
    admin_keys: &[Secret],
    global: &LimitsConfig,
) -> Result<(), String> {
    let mut names: HashMap<String, &BotName> = HashMap::new();
    for bot in bots {
        bot.check(global)?;
        if let Some(other) = names.insert(bot.name.token_variable(), &bot.name) {
            return Err(if *other == bot.name {
                format!("two [[bots]] tables are named `{}`", bot.name)
            } else {
                format!(
                    "bots `{other}` and `{}` share the environment variable {}: rename one",
                    bot.name,
                    bot.name.token_variable()
                )
            });
        }
    }
    let mut keys: HashMap<&str, Holder<'_>> = HashMap::new();
    let all = bots
        .iter()
        .flat_map(|bot| {
            bot.api_keys
                .iter()
                .chain(&bot.deprecated_api_keys)
                .map(move |key| (key, Holder::Bot(&bot.name)))
        })
        .chain(admin_keys.iter().map(|key| (key, Holder::Admin)));
    for (key, holder) in all {
        if key.expose().trim().is_empty() {
            return Err(format!("{holder} has an empty API key"));
        }
        if let Some(first) = keys.insert(key.expose(), holder) {
            return Err(match (first, holder) {
                (Holder::Bot(a), Holder::Bot(b)) if a == b => {
                    format!("bot `{a}` lists the same API key twice")
                }
                _ => format!("one API key is configured for both {first} and {holder}"),
            });
        }
    }
    Ok(())
}
