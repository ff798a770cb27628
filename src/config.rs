//! Where telegate keeps its state and how it is configured.
//!
//! Every long-running command shares one state directory (socket, store,
//! sessions) and one TOML file, with `TELEGATE_*` environment variables
//! winning over the file so that secrets can stay out of it. Unknown keys are
//! an error naming the key: a typo must not silently fall back to a default.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod bots;

pub use bots::{BadBotName, BotConfig, BotName, LimitsOverride, TokenError};

/// File names inside the state directory.
const SOCKET_FILE: &str = "telegate.sock";
const DATABASE_FILE: &str = "telegate.db";
const SESSIONS_DIR: &str = "sessions";
/// The single bot's session file before bots had names; migrated to
/// `sessions/default.session` on start.
const LEGACY_SESSION_FILE: &str = "bot.session";
const CONFIG_FILE: &str = "telegate.toml";
const LOCK_FILE: &str = "telegate.lock";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot prepare state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("another telegate is running with state directory {0}")]
    Locked(PathBuf),
}

/// Exclusive use of a state directory; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

/// The directory holding the socket, the store and the bot sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
    /// The socket's path when it is not `DIR/telegate.sock` (`--socket`).
    socket: Option<PathBuf>,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir {
            root: root.into(),
            socket: None,
        }
    }

    /// The socket at `path` instead of `DIR/telegate.sock` (e.g. under
    /// systemd's `RuntimeDirectory`, which other services' group can reach
    /// while the state directory stays 0700).
    pub fn with_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    /// Creates the directory and its `sessions/` mode 0700; one that
    /// already exists with group or other permissions is tightened to 0700.
    pub fn prepare(&self) -> Result<(), StateError> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(&self.root)
            .and_then(|()| builder.create(self.sessions()))
            .and_then(|()| tighten(&self.root))
            .and_then(|()| tighten(&self.sessions()))
            .map_err(|source| StateError::Io {
                path: self.root.clone(),
                source,
            })
    }

    /// Takes the directory for this process: one telegate per state
    /// directory, held until the lock is dropped (or the process dies).
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StateError::Locked(self.root.clone())),
            Err(fs::TryLockError::Error(source)) => Err(StateError::Io { path, source }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DIR/telegate.sock` (or the `--socket` path): the local socket API.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.root.join(SOCKET_FILE))
    }

    /// `DIR/telegate.db`: the job store (with its `-wal` and `-shm` files).
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }

    /// `DIR/sessions/`: one MTProto session per bot.
    pub fn sessions(&self) -> PathBuf {
        self.root.join(SESSIONS_DIR)
    }

    /// `DIR/sessions/NAME.session`: bot `name`'s MTProto session.
    pub fn bot_session(&self, name: &BotName) -> PathBuf {
        self.sessions().join(format!("{name}.session"))
    }

    /// Moves the one-bot layout's `sessions/bot.session` to the `default`
    /// bot's `sessions/default.session` (once; a session already there
    /// wins and the old file is left alone).
    pub fn migrate_legacy_session(&self) -> Result<(), StateError> {
        let legacy = self.sessions().join(LEGACY_SESSION_FILE);
        let target = self.bot_session(&BotName::default_bot());
        if !legacy.exists() || target.exists() {
            return Ok(());
        }
        fs::rename(&legacy, &target).map_err(|source| StateError::Io {
            path: legacy.clone(),
            source,
        })?;
        tracing::info!(
            from = %legacy.display(),
            to = %target.display(),
            "bot session moved to its named file"
        );
        Ok(())
    }

    /// `DIR/telegate.toml`, the config file used when none is named.
    pub fn default_config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
}

/// Takes group and other permissions off directory `path`.
fn tighten(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "tightening to 0700");
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// A value that must never be printed: Debug and Display show `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The whole configuration, defaults filled in.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub telegram: TelegramConfig,
    pub limits: LimitsConfig,
    pub api: ApiConfig,
    pub callbacks: CallbacksConfig,
    pub events: EventsConfig,
    pub webhook: WebhookConfig,
    pub sender: SenderConfig,
    pub sandbox: SandboxConfig,
    /// `[[bots]]`; after [`Config::load`] it also holds the `default` bot
    /// of `[telegram] bot_token`, if set.
    pub bots: Vec<BotConfig>,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub connection: ConnectionConfig,
    pub store: StoreConfig,
}

/// `[store]`: where jobs, events and idempotency keys live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`: a PostgreSQL database
    /// (shared by every daemon pointed at it); unset: `DIR/telegate.db`.
    /// `TELEGATE_STORE_URL` wins. A secret: it may hold a password.
    pub url: Option<Secret>,
    /// On a shared store, how long a daemon's hold on a bot lasts without
    /// renewal: a dead daemon's bots are taken over within it.
    pub lease_ttl_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            lease_ttl_ms: 10_000,
        }
    }
}

impl StoreConfig {
    /// The shortest lease: renewals every fifth of it must fit a commit.
    pub const MIN_LEASE_TTL_MS: u64 = 1_000;

    /// The store: the URL's database, or the state dir's SQLite file.
    pub fn location(&self, state: &StateDir) -> Result<crate::store::Location, ConfigError> {
        match &self.url {
            None => Ok(crate::store::Location::Sqlite(state.database())),
            Some(url) => crate::store::Location::postgres(url.expose()).map_err(|error| {
                ConfigError::Invalid {
                    message: format!("[store] url: {error}"),
                }
            }),
        }
    }
}

/// `[connection]`: how a dead MTProto connection is found out (see
/// [`crate::telegram::Liveness`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Every call to Telegram that takes longer fails as transient.
    pub call_timeout_ms: u64,
    /// How often the home DC is pinged.
    pub ping_interval_ms: u64,
    /// A ping unanswered this long drops the connection.
    pub ping_timeout_ms: u64,
    /// How often an idle connection checks that Telegram has not signed
    /// its session out (`updates.getState`; a 401 signs in again).
    pub auth_check_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        let liveness = crate::telegram::Liveness::default();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ConnectionConfig {
            call_timeout_ms: ms(liveness.call_timeout),
            ping_interval_ms: ms(liveness.ping_interval),
            ping_timeout_ms: ms(liveness.ping_timeout),
            auth_check_ms: ms(liveness.auth_check_interval),
        }
    }
}

impl ConnectionConfig {
    pub fn liveness(&self) -> crate::telegram::Liveness {
        use std::time::Duration;
        // Zero would make every call fail at once.
        let ms = |v: u64| Duration::from_millis(v.max(1));
        crate::telegram::Liveness {
            call_timeout: ms(self.call_timeout_ms),
            ping_interval: ms(self.ping_interval_ms),
            ping_timeout: ms(self.ping_timeout_ms),
            auth_check_interval: ms(self.auth_check_ms),
        }
    }
}

/// `[sandbox]`: what `telegate sandbox` serves besides the DC.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Where the chat page listens (`host:port`), or `off`; unset:
    /// 127.0.0.1:8080.
    pub web: Option<String>,
    /// The token a public page (`--web-public`) asks for; also
    /// `TELEGATE_WEB_TOKEN`.
    pub web_token: Option<Secret>,
}

/// `[metrics]`: Prometheus scraping beyond the socket's `GET /metrics`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A loopback `host:port` serving `/metrics`, `/healthz` and `/readyz`
    /// over TCP (e.g. `127.0.0.1:9464`); unset: the socket only.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[log]`: how log lines look.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default) or `json`, one object per line;
    /// `TELEGATE_LOG_FORMAT` wins.
    pub format: LogFormat,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be `text` or `json`".into()),
        }
    }
}

/// `[telegram]`: the bot's credentials and, for the sandbox, the DC to use.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    pub api_id: Option<i32>,
    pub api_hash: Option<Secret>,
    pub bot_token: Option<Secret>,
    /// `host:port` of the data centre; the sandbox writes its own here.
    pub dc_addr: Option<String>,
}

/// `[limits]`: Telegram's sending limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub bot_per_second: u32,
    pub private_chat_per_second: u32,
    pub group_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            bot_per_second: 30,
            private_chat_per_second: 1,
            group_per_minute: 20,
        }
    }
}

/// `[sender]`: how jobs are delivered.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SenderConfig {
    /// A job still unsent this many seconds after it was enqueued fails
    /// (code 5); 0: jobs never expire.
    pub job_expiry_secs: u64,
}

impl SenderConfig {
    /// The configured expiry, `None` when jobs never expire.
    pub fn job_expiry(&self) -> Option<std::time::Duration> {
        (self.job_expiry_secs > 0).then(|| std::time::Duration::from_secs(self.job_expiry_secs))
    }
}

/// `[api]`: the local socket API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Request bodies larger than this are answered 413.
    pub max_body_bytes: usize,
    /// Operator keys: they see every bot (and may filter with `?bot=NAME`).
    pub admin_keys: Vec<Secret>,
    /// A connection that takes longer than this to send a request head, or
    /// sits idle this long between requests, is closed.
    pub header_timeout_ms: u64,
    /// A request body that pauses longer than this is answered 408.
    pub body_timeout_ms: u64,
    /// Connections beyond this many open at once are answered 503.
    pub max_connections: usize,
    /// When an enqueueing request without `?wait=` is answered.
    pub respond: Respond,
    /// With `respond = "sent"`: how long to wait for the job's outcome
    /// before answering 202 anyway (at most 60).
    pub respond_timeout_s: u64,
    /// Replaced by per-bot `api_keys` (a CM.com product token is a bot's
    /// API key); still read so that a file that sets it gets an error
    /// saying where the tokens go, not "unknown key".
    pub product_tokens: Vec<Secret>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 256 * 1024,
            admin_keys: Vec::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_connections: 256,
            respond: Respond::Queued,
            respond_timeout_s: 10,
            product_tokens: Vec::new(),
        }
    }
}

impl ApiConfig {
    /// The longest `respond_timeout_s` (the longest `?wait=` too).
    pub const MAX_RESPOND_TIMEOUT_S: u64 = 60;

    /// `respond_timeout_s` as a duration.
    pub fn respond_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.respond_timeout_s)
    }
}

/// `[api] respond`: answer an enqueue once the job is stored (`queued`,
/// 202) or once Telegram has it or refused it (`sent`, 201 or 400 as the
/// Octopods seed answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Respond {
    #[default]
    Queued,
    Sent,
}

/// `[callbacks]`: answering button clicks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbacksConfig {
    /// How long a consumer has to answer a click before telegate does.
    pub deadline_ms: u64,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        CallbacksConfig { deadline_ms: 1500 }
    }
}

/// `[events]`: the inbound event stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events older than this are deleted from the store.
    pub retention_hours: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_hours: 7 * 24,
        }
    }
}

/// `[webhook]`: where events are POSTed, if anywhere.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// An `http://` or `https://` URL; unset: no webhook.
    pub url: Option<String>,
    /// PEM file of the CA(s) to trust for an `https://` URL instead of the
    /// built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// The HMAC-SHA256 key of `X-Telegate-Signature` (required with `url`).
    pub secret: Option<Secret>,
    /// One delivery attempt may take this long.
    pub timeout_ms: u64,
    /// The longest wait between attempts.
    pub max_backoff_ms: u64,
    /// An event that failed this many times is a dead letter (0: no limit).
    pub dead_after_attempts: u32,
    /// An event still undelivered this long after its first attempt is a
    /// dead letter (0: no limit).
    pub dead_after_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: None,
            ca_file: None,
            secret: None,
            timeout_ms: 5000,
            max_backoff_ms: 60_000,
            dead_after_attempts: 0,
            dead_after_secs: 24 * 3600,
        }
    }
}

impl WebhookConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("`webhook.url` is not a URL ({e}): `{url}`"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "`webhook.url` must be an http:// or https:// URL with a host, got `{url}`"
            ));
        }
        if self.secret.as_ref().is_none_or(|s| s.expose().is_empty()) {
            return Err("`webhook.secret` is required when `webhook.url` is set".into());
        }
        Ok(())
    }
}

/// Whether a config key holds a secret (a token, a hash, a key), so that
/// no error message may echo its value.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.trim_matches(['"', '\'']).to_ascii_lowercase();
    ["token", "hash", "secret", "key", "password"]
        .iter()
        .any(|word| key.contains(word))
}

/// The variable choosing the log format (`text` or `json`).
pub const LOG_FORMAT_ENV: &str = "TELEGATE_LOG_FORMAT";

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {message}")]
    Invalid { message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
}

impl Config {
    /// Loads `file` (or `DIR/telegate.toml` when it exists), then applies the
    /// `TELEGATE_*` variables of the process environment.
    pub fn load(file: Option<&Path>, state: &StateDir) -> Result<Self, ConfigError> {
        Self::load_with_env(file, state, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the environment given as a lookup function.
    pub fn load_with_env(
        file: Option<&Path>,
        state: &StateDir,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let default_file = state.default_config();
        let path = match file {
            Some(path) => Some(path),
            None if default_file.exists() => Some(default_file.as_path()),
            None => None,
        };
        let mut config = match path {
            Some(path) => Self::read(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config
            .check()
            .map_err(|message| ConfigError::Invalid { message })?;
        config.adopt_default_bot();
        Ok(config)
    }

    /// The one-bot configuration, `[telegram] bot_token`, is the bot
    /// `default` (beside any `[[bots]]`; a `[[bots]]` table named `default`
    /// takes its place).
    fn adopt_default_bot(&mut self) {
        let Some(token) = self.telegram.bot_token.clone() else {
            return;
        };
        if self
            .bots
            .iter()
            .any(|bot| bot.name.as_str() == BotName::DEFAULT)
        {
            return;
        }
        self.bots
            .insert(0, BotConfig::new(BotName::default_bot(), Some(token)));
    }

    /// Whether any API key is configured: without one, requests need none.
    pub fn has_api_keys(&self) -> bool {
        !self.api.admin_keys.is_empty()
            || self
                .bots
                .iter()
                .any(|bot| !bot.api_keys.is_empty() || !bot.deprecated_api_keys.is_empty())
    }

    /// Rules a parsed file can still break; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            (
                "limits.bot_per_second",
                u64::from(self.limits.bot_per_second),
            ),
            (
                "limits.private_chat_per_second",
                u64::from(self.limits.private_chat_per_second),
            ),
            (
                "limits.group_per_minute",
                u64::from(self.limits.group_per_minute),
            ),
            ("api.max_body_bytes", self.api.max_body_bytes as u64),
            ("api.respond_timeout_s", self.api.respond_timeout_s),
            ("callbacks.deadline_ms", self.callbacks.deadline_ms),
            ("events.retention_hours", self.events.retention_hours),
            ("webhook.timeout_ms", self.webhook.timeout_ms),
            ("webhook.max_backoff_ms", self.webhook.max_backoff_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("`{key}` must be greater than 0"));
        }
        if self.api.respond_timeout_s > ApiConfig::MAX_RESPOND_TIMEOUT_S {
            return Err(format!(
                "`api.respond_timeout_s` must be at most {} seconds",
                ApiConfig::MAX_RESPOND_TIMEOUT_S
            ));
        }
        if let Some(addr) = self.metrics.listen
            && !addr.ip().is_loopback()
        {
            return Err(format!(
                "`metrics.listen` must be a loopback address (127.0.0.1 or ::1), got `{addr}`"
            ));
        }
        self.webhook.check()?;
        if self.store.lease_ttl_ms < StoreConfig::MIN_LEASE_TTL_MS {
            return Err(format!(
                "`store.lease_ttl_ms` must be at least {} (a daemon renews every fifth of it)",
                StoreConfig::MIN_LEASE_TTL_MS
            ));
        }
        if let Some(url) = &self.store.url {
            crate::store::Location::postgres(url.expose())
                .map_err(|error| format!("`store.url`: {error}"))?;
        }
        if !self.api.product_tokens.is_empty() {
            return Err(
                "`api.product_tokens` is replaced by per-bot API keys: a CM.com product token \
                 is a key of its bot, so move each token into that bot's `[[bots]] api_keys`"
                    .into(),
            );
        }
        let legacy_default = self.telegram.bot_token.is_some()
            && self
                .bots
                .iter()
                .any(|bot| bot.name.as_str() == BotName::DEFAULT);
        if legacy_default {
            return Err(
                "`telegram.bot_token` is the bot `default`, and a [[bots]] table is named \
                 `default` too: keep one"
                    .into(),
            );
        }
        bots::check_all(&self.bots, &self.api.admin_keys, &self.limits)
    }

    /// Parses one TOML file; an unknown key is an error that names it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text. An error on a secret-bearing key (see
    /// [`is_secret_key`]) names the key and the rule, never the value.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let Some(span) = e.span() else {
                return e.message().to_owned();
            };
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let line_text = text.lines().nth(line - 1).unwrap_or("");
            match line_text.split_once('=').map(|(key, _)| key.trim()) {
                Some(key) if is_secret_key(key) => format!(
                    "line {line}: `{key}` must be a string (its value is a secret and not shown)"
                ),
                _ => format!("line {line}: {}", e.message()),
            }
        })
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let telegram = &mut self.telegram;
        if let Some(value) = env("TELEGATE_API_ID") {
            let id = value.trim().parse().map_err(|_| ConfigError::Env {
                name: "TELEGATE_API_ID",
                message: "must be an integer".into(),
            })?;
            telegram.api_id = Some(id);
        }
        if let Some(value) = env("TELEGATE_API_HASH") {
            telegram.api_hash = Some(Secret::new(value));
        }
        if let Some(value) = env("TELEGATE_BOT_TOKEN") {
            telegram.bot_token = Some(Secret::new(value));
        }
        for bot in &mut self.bots {
            if let Some(value) = env(&bot.name.token_variable()) {
                bot.bot_token = Some(Secret::new(value));
                bot.bot_token_file = None;
            }
        }
        if let Some(value) = env("TELEGATE_DC_ADDR") {
            telegram.dc_addr = Some(value);
        }
        if let Some(value) = env("TELEGATE_WEB_TOKEN") {
            self.sandbox.web_token = Some(Secret::new(value));
        }
        if let Some(value) = env(LOG_FORMAT_ENV) {
            self.log.format = value.parse().map_err(|message| ConfigError::Env {
                name: LOG_FORMAT_ENV,
                message,
            })?;
        }
        if let Some(value) = env("TELEGATE_STORE_URL") {
            self.store.url = Some(Secret::new(value));
        }
        if let Some(value) = env("TELEGATE_JOB_EXPIRY_SECS") {
            self.sender.job_expiry_secs = value.trim().parse().map_err(|_| ConfigError::Env {
                name: "TELEGATE_JOB_EXPIRY_SECS",
                message: "must be a whole number of seconds (0: never)".into(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_store_url_must_be_postgres_and_a_lease_long_enough() {
        let config = |toml: &str| Config::parse(toml).unwrap().check();
        let error = config("[store]\nurl = \"mysql://me:hunter2@db/jobs\"\n").unwrap_err();
        assert!(
            error.contains("store.url") && error.contains("postgres://"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        let error = config("[store]\nlease_ttl_ms = 500\n").unwrap_err();
        assert!(error.contains("store.lease_ttl_ms"), "{error}");
        assert!(config("[store]\nurl = \"postgres://me:pw@127.0.0.1/jobs\"\n").is_ok());
    }

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load_with_env(None, &StateDir::new(dir.path()), no_env).unwrap();
        assert_eq!(config.limits.bot_per_second, 30);
        assert_eq!(config.limits.private_chat_per_second, 1);
        assert_eq!(config.limits.group_per_minute, 20);
        assert_eq!(config.api.max_body_bytes, 262_144);
        assert_eq!(config.callbacks.deadline_ms, 1500);
        assert_eq!(config.telegram.bot_token, None);
    }

    #[test]
    fn reads_the_default_file_of_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        fs::write(
            state.default_config(),
            "[telegram]\napi_id = 7\ndc_addr = \"127.0.0.1:4430\"\n[limits]\nbot_per_second = 5\n",
        )
        .unwrap();
        let config = Config::load_with_env(None, &state, no_env).unwrap();
        assert_eq!(config.telegram.api_id, Some(7));
        assert_eq!(config.telegram.dc_addr.as_deref(), Some("127.0.0.1:4430"));
        assert_eq!(config.limits.bot_per_second, 5);
        assert_eq!(config.limits.group_per_minute, 20);
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("other.toml");
        fs::write(
            &file,
            "[telegram]\napi_id = 1\nbot_token = \"file-token\"\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "TELEGATE_API_ID" => Some("42".to_owned()),
            "TELEGATE_BOT_TOKEN" => Some("env-token".to_owned()),
            _ => None,
        };
        let config = Config::load_with_env(Some(&file), &StateDir::new(dir.path()), env).unwrap();
        assert_eq!(config.telegram.api_id, Some(42));
        assert_eq!(
            config.telegram.bot_token.as_ref().map(Secret::expose),
            Some("env-token")
        );
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let env = |name: &str| (name == "TELEGATE_API_ID").then(|| "twelve".to_owned());
        let err = Config::load_with_env(None, &StateDir::new(dir.path()), env).unwrap_err();
        assert!(err.to_string().contains("TELEGATE_API_ID"), "{err}");
    }

    #[test]
    fn job_expiry_comes_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert_eq!(Config::default().sender.job_expiry(), None);
        fs::write(state.default_config(), "[sender]\njob_expiry_secs = 90\n").unwrap();
        let config = Config::load_with_env(None, &state, no_env).unwrap();
        assert_eq!(config.sender.job_expiry(), Some(Duration::from_secs(90)));
        let env = |name: &str| (name == "TELEGATE_JOB_EXPIRY_SECS").then(|| "0".to_owned());
        let config = Config::load_with_env(None, &state, env).unwrap();
        assert_eq!(config.sender.job_expiry(), None);
        let env = |name: &str| (name == "TELEGATE_JOB_EXPIRY_SECS").then(|| "soon".to_owned());
        let err = Config::load_with_env(None, &state, env).unwrap_err();
        assert!(
            err.to_string().contains("TELEGATE_JOB_EXPIRY_SECS"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[limits]\nbot_per_secnd = 3\n").unwrap_err();
        assert!(err.contains("bot_per_secnd"), "{err}");
        let err = Config::parse("[telegramm]\n").unwrap_err();
        assert!(err.contains("telegramm"), "{err}");
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        fs::write(state.default_config(), "[api]\nmax_body_bytes = 0\n").unwrap();
        let err = Config::load_with_env(None, &state, no_env).unwrap_err();
        assert!(err.to_string().contains("api.max_body_bytes"), "{err}");
    }

    #[test]
    fn the_response_mode_is_queued_unless_set_to_sent() {
        let config = Config::default();
        assert_eq!(config.api.respond, Respond::Queued);
        assert_eq!(config.api.respond_timeout(), Duration::from_secs(10));
        let config = Config::parse("[api]\nrespond = \"sent\"\nrespond_timeout_s = 3\n").unwrap();
        assert_eq!(config.api.respond, Respond::Sent);
        assert_eq!(config.api.respond_timeout_s, 3);
        config.check().unwrap();
        let err = Config::parse("[api]\nrespond = \"delivered\"\n").unwrap_err();
        assert!(err.contains("delivered") && err.contains("sent"), "{err}");
        for bad in ["0", "61"] {
            let config = Config::parse(&format!("[api]\nrespond_timeout_s = {bad}\n")).unwrap();
            let err = config.check().unwrap_err();
            assert!(err.contains("api.respond_timeout_s"), "{err}");
        }
    }

    #[test]
    fn a_bot_may_have_its_own_response_mode() {
        let config = Config::parse(
            "[[bots]]\nname = \"shop\"\nrespond = \"sent\"\n[[bots]]\nname = \"news\"\n",
        )
        .unwrap();
        config.check().unwrap();
        assert_eq!(config.bots[0].respond, Some(Respond::Sent));
        assert_eq!(config.bots[1].respond, None);
        let err = Config::parse("[[bots]]\nname = \"shop\"\nrespond = \"soon\"\n").unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }

    #[test]
    fn the_product_token_stand_in_is_refused_saying_where_tokens_go() {
        let config = Config::parse("[api]\nproduct_tokens = [\"t\"]\n").unwrap();
        let err = config.check().unwrap_err();
        assert!(
            err.contains("api.product_tokens") && err.contains("[[bots]] api_keys"),
            "{err}"
        );
        assert!(!err.contains("\"t\""), "{err}");
        let empty = Config::parse("[api]\nproduct_tokens = []\n").unwrap();
        empty.check().unwrap();
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_secret() {
        let check = |text: &str| Config::parse(text).unwrap().check();
        assert!(check("[webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"\n").is_ok());
        assert!(check("[webhook]\nurl = \"https://example.com/\"\nsecret = \"s\"\n").is_ok());
        let err = check("[webhook]\nurl = \"ftp://example.com/\"\nsecret = \"s\"\n").unwrap_err();
        assert!(err.contains("webhook.url"), "{err}");
        let err = check("[webhook]\nurl = \"not a url\"\nsecret = \"s\"\n").unwrap_err();
        assert!(err.contains("webhook.url"), "{err}");
        let err = check("[webhook]\nurl = \"http://127.0.0.1:9/\"\n").unwrap_err();
        assert!(err.contains("webhook.secret"), "{err}");
    }

    #[test]
    fn metrics_listen_only_on_loopback_and_log_format_by_name() {
        let check = |text: &str| Config::parse(text).unwrap().check();
        assert!(check("[metrics]\nlisten = \"127.0.0.1:9464\"\n").is_ok());
        let err = check("[metrics]\nlisten = \"0.0.0.0:9464\"\n").unwrap_err();
        assert!(err.contains("metrics.listen"), "{err}");
        let config = Config::parse("[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(Config::parse("[log]\nformat = \"xml\"\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let env = |name: &str| (name == LOG_FORMAT_ENV).then(|| "yaml".to_owned());
        let err = Config::load_with_env(None, &StateDir::new(dir.path()), env).unwrap_err();
        assert!(err.to_string().contains(LOG_FORMAT_ENV), "{err}");
    }

    #[test]
    fn a_missing_named_file_is_an_error_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("absent.toml");
        let err =
            Config::load_with_env(Some(&file), &StateDir::new(dir.path()), no_env).unwrap_err();
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let config = Config::parse(
            "[telegram]\napi_hash = \"hash-sekrit\"\nbot_token = \"123:token-sekrit\"\n",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("sekrit"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
        let token = config.telegram.bot_token.unwrap();
        assert_eq!(token.to_string(), "[redacted]");
        assert_eq!(token.expose(), "123:token-sekrit");
    }

    #[test]
    fn a_bad_secret_value_is_never_echoed() {
        for text in [
            "[telegram]\nbot_token = 12345\n",
            "[telegram]\napi_hash = 987654\n",
            "[webhook]\nsecret = 555555\n",
            "[telegram]\nbot_token = [\"123:abcdef\"]\n",
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(err.contains("line 2"), "{err}");
            assert!(err.contains("secret and not shown"), "{err}");
            for value in ["12345", "987654", "555555", "abcdef"] {
                assert!(!err.contains(value), "{err}");
            }
        }
        // Other keys still say what was wrong with the value.
        let err = Config::parse("[limits]\nbot_per_second = \"fast\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("string"), "{err}");
    }

    #[test]
    fn an_existing_open_state_dir_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        fs::create_dir_all(root.join("sessions")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("sessions"), fs::Permissions::from_mode(0o750)).unwrap();
        let state = StateDir::new(&root);
        state.prepare().unwrap();
        for path in [state.root().to_owned(), state.sessions()] {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", path.display());
        }
    }

    #[test]
    fn state_dir_lays_out_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.prepare().unwrap();
        assert!(state.sessions().is_dir());
        assert_eq!(state.socket(), dir.path().join("state/telegate.sock"));
        assert_eq!(state.database(), dir.path().join("state/telegate.db"));
        let mode = fs::metadata(state.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn one_process_holds_a_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let held = state.lock().unwrap();
        let err = state.lock().unwrap_err();
        assert!(matches!(err, StateError::Locked(_)), "{err}");
        drop(held);
        state.lock().unwrap();
    }

    fn load_text(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        fs::write(state.default_config(), text).unwrap();
        Config::load_with_env(None, &state, env)
    }

    #[test]
    fn bots_tables_take_names_keys_and_their_own_limits() {
        let config = load_text(
            "[limits]\nbot_per_second = 20\n\
             [[bots]]\nname = \"shop\"\nbot_token = \"1:a\"\napi_keys = [\"k1\", \"k2\"]\n\
             deprecated_api_keys = [\"old\"]\ninteractive = false\n\
             [bots.limits]\nprivate_chat_per_second = 2\n\
             [[bots]]\nname = \"news-2\"\nbot_token = \"2:b\"\nenabled = false\n",
            no_env,
        )
        .unwrap();
        let [shop, news] = &config.bots[..] else {
            panic!("two bots expected: {:?}", config.bots);
        };
        assert_eq!(shop.name.as_str(), "shop");
        assert_eq!(shop.api_keys.len(), 2);
        assert_eq!(shop.deprecated_api_keys.len(), 1);
        assert!(shop.enabled && !shop.interactive);
        let limits = shop.limits(&config.limits);
        assert_eq!(
            (
                limits.bot_per_second,
                limits.private_chat_per_second,
                limits.group_per_minute
            ),
            (20, 2, 20)
        );
        assert!(!news.enabled && news.interactive);
        assert!(config.has_api_keys());
    }

    #[test]
    fn the_telegram_token_is_the_default_bot() {
        let config = load_text("[telegram]\nbot_token = \"1:legacy\"\n", no_env).unwrap();
        assert_eq!(config.bots.len(), 1);
        assert_eq!(config.bots[0].name.as_str(), "default");
        assert_eq!(config.bots[0].token().unwrap().expose(), "1:legacy");
        assert!(!config.has_api_keys());
        let err = load_text(
            "[telegram]\nbot_token = \"1:x\"\n[[bots]]\nname = \"default\"\n",
            no_env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`default`"), "{err}");
    }

    #[test]
    fn a_bad_bot_name_is_named_with_the_rule() {
        for name in ["Shop", "", "a b", &"x".repeat(33)] {
            let err = load_text(&format!("[[bots]]\nname = \"{name}\"\n"), no_env).unwrap_err();
            assert!(err.to_string().contains("a-z, 0-9"), "{name}: {err}");
        }
        let err =
            load_text("[[bots]]\nname = \"a\"\n[[bots]]\nname = \"a\"\n", no_env).unwrap_err();
        assert!(
            err.to_string()
                .contains("two [[bots]] tables are named `a`"),
            "{err}"
        );
        let err = load_text(
            "[[bots]]\nname = \"a-b\"\n[[bots]]\nname = \"a_b\"\n",
            no_env,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("TELEGATE_BOTS__A_B__BOT_TOKEN"),
            "{err}"
        );
        let err = load_text("[[bots]]\nname = \"a\"\ntokn = \"x\"\n", no_env).unwrap_err();
        assert!(err.to_string().contains("tokn"), "{err}");
    }

    #[test]
    fn a_key_on_two_bots_names_both_bots_but_not_the_key() {
        let err = load_text(
            "[[bots]]\nname = \"a\"\napi_keys = [\"sekrit-key\"]\n\
             [[bots]]\nname = \"b\"\ndeprecated_api_keys = [\"sekrit-key\"]\n",
            no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bot `a`") && err.contains("bot `b`"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
        let err = load_text(
            "[api]\nadmin_keys = [\"sekrit-key\"]\n[[bots]]\nname = \"a\"\napi_keys = [\"sekrit-key\"]\n",
            no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bot `a`") && err.contains("admin_keys"),
            "{err}"
        );
        assert!(!err.contains("sekrit"), "{err}");
        let err = load_text("[[bots]]\nname = \"a\"\napi_keys = [\"\"]\n", no_env).unwrap_err();
        assert!(err.to_string().contains("empty API key"), "{err}");
    }

    #[test]
    fn a_bot_token_comes_from_the_file_the_token_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("shop.token");
        fs::write(&token_file, "7:from-file\n").unwrap();
        let text = format!(
            "[[bots]]\nname = \"shop\"\nbot_token_file = \"{}\"\n[[bots]]\nname = \"news\"\n",
            token_file.display()
        );
        let config = load_text(&text, no_env).unwrap();
        assert_eq!(config.bots[0].token().unwrap().expose(), "7:from-file");
        let err = config.bots[1].token().unwrap_err().to_string();
        assert!(err.contains("TELEGATE_BOTS__NEWS__BOT_TOKEN"), "{err}");
        let env =
            |name: &str| (name == "TELEGATE_BOTS__SHOP__BOT_TOKEN").then(|| "8:env".to_owned());
        let config = load_text(&text, env).unwrap();
        assert_eq!(config.bots[0].token().unwrap().expose(), "8:env");
        let missing = BotConfig {
            bot_token_file: Some(dir.path().join("absent")),
            ..BotConfig::new(BotName::new("x").unwrap(), None)
        };
        let err = missing.token().unwrap_err().to_string();
        assert!(err.contains("bot `x`") && err.contains("absent"), "{err}");
        let err = load_text(
            "[[bots]]\nname = \"a\"\nbot_token = \"1:x\"\nbot_token_file = \"/f\"\n",
            no_env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn a_bot_limit_of_zero_is_named_with_its_bot() {
        let err = load_text(
            "[[bots]]\nname = \"a\"\n[bots.limits]\nbot_per_second = 0\n",
            no_env,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("bot `a`: `limits.bot_per_second`"),
            "{err}"
        );
    }

    #[test]
    fn bot_keys_never_print() {
        let config = Config::parse(
            "[api]\nadmin_keys = [\"adm-sekrit\"]\n[[bots]]\nname = \"a\"\napi_keys = [\"key-sekrit\"]\n",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("sekrit"), "{debug}");
    }

    #[test]
    fn the_legacy_session_moves_to_the_default_bots_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.prepare().unwrap();
        let legacy = state.sessions().join("bot.session");
        fs::write(&legacy, "old").unwrap();
        state.migrate_legacy_session().unwrap();
        let target = state.bot_session(&BotName::default_bot());
        assert_eq!(target, dir.path().join("sessions/default.session"));
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert!(!legacy.exists());
        // A second run (or a session already in place) changes nothing.
        fs::write(&legacy, "stale").unwrap();
        state.migrate_legacy_session().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
    }
}
