//! `telegate sandbox`: runs the local Telegram DC and its control API, and
//! writes what a worker needs to reach it.
//!
//! Without a flag it also runs the worker in the same process — the very
//! daemon `telegate run` is ([`super::run::daemon`]) — so a fresh clone can
//! see a message travel with nothing else: on first start an empty sandbox
//! gets a demo user who has already written to the bot, and the log shows
//! the commands to send it a message and read its chat. With `--dc-only`
//! nothing else runs: start `telegate run --state-dir DIR` beside it. The worker's files in `DIR`: `telegate.toml` gets a
//! `[telegram]` table with the sandbox's `api_id`, `api_hash`, `bot_token`
//! and `dc_addr` (other tables are kept), and `sessions/default.session` gets
//! the DC address and the bot's pre-provisioned auth key. Both are mode 0600.
//!
//! With `--bots N` (N > 1) the one Telegram model holds N bots, `bot1`…
//! `botN`: each its own bot account with its own updates, boxes and flood
//! limits, and its own private chat with each user (a user may talk to all
//! of them; clicks reach the bot whose message it is). Each gets a
//! `[[bots]]` table with its token, `dc_addr` and a generated API key (kept
//! across restarts), and `sessions/botK.session`; the ready message lists
//! the keys.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tracing::info;

use super::{CliError, Global, Outcome, shutdown_signal};
use crate::config::{Config, SandboxConfig};
use crate::private_file;
use crate::sandbox::server::{Sandbox, SandboxOptions, StartError};
use crate::sandbox::state_file::StateFileError;
use crate::sandbox::telegram::{
    AccountId, DC_ID, FakeTelegram, NewUser, SandboxError, UserMessage,
};
use crate::sandbox::web::WebOptions;
use crate::session::{SessionError, SessionStore};
use grammers_session::types::{PeerAuth, PeerInfo, UpdatesState};

/// The api id and hash written for the worker; the sandbox accepts any
/// non-empty pair, these just make the config complete.
pub const SANDBOX_API_ID: i32 = 1;
pub const SANDBOX_API_HASH: &str = "telegate-sandbox";

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Run only the DC and its control API (no worker; start `telegate run`
    /// beside it).
    #[arg(long)]
    pub dc_only: bool,
    /// The home DC's (2) port on 127.0.0.1 (0: any free port); DCs 1, 3, 4
    /// and 5 take free ports.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How long a click waits for the bot's answer before the user gets
    /// BOT_RESPONSE_TIMEOUT.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub callback_timeout_ms: u64,
    /// Where the chat page listens, or `off` [default: `[sandbox] web` of
    /// the config, else 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR|off")]
    pub web: Option<String>,
    /// Allow the chat page on a non-loopback address; every request then
    /// needs the token (TELEGATE_WEB_TOKEN, `[sandbox] web_token`, or a new
    /// one written to STATE_DIR/web.token).
    #[arg(long)]
    pub web_public: bool,
    /// Start with Telegram's rate limits off (as `POST /faults
    /// {"limits": false}` would turn them, but before any client connects).
    #[arg(long)]
    pub no_limits: bool,
    /// How many bots (`bot1`…`botN`) the sandbox holds, each with a
    /// generated API key in `telegate.toml`; 1: the one `default` bot, no keys.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub bots: u16,
}

/// The chat page's address when nothing says otherwise.
pub const DEFAULT_WEB: &str = "127.0.0.1:8080";
/// Where a generated web token is written (mode 0600).
pub const WEB_TOKEN_FILE: &str = "web.token";

#[derive(Debug, thiserror::Error)]
pub enum SandboxCliError {
    #[error("cannot create the demo user: {0}")]
    DemoUser(#[from] SandboxError),
    #[error("cannot read the sandbox's bot: {0}")]
    Bot(SandboxError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("cannot write the bot session: {0}")]
    Session(#[from] SessionError),
    #[error("cannot write the worker config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("cannot wait for signals: {0}")]
    Signals(io::Error),
    #[error("{key} must be a socket address such as 127.0.0.1:8080, or off; got {value:?}")]
    WebAddr { key: &'static str, value: String },
    #[error("cannot write the web token to {path}: {source}")]
    WebToken { path: PathBuf, source: io::Error },
}

/// Runs the sandbox until SIGINT or SIGTERM.
pub async fn run(global: &Global, args: SandboxArgs) -> Result<Outcome, CliError> {
    let dir = global.state_dir.clone();
    let state = global.state();
    state.prepare()?;
    // With a worker, the state directory is the worker's: take it before
    // the sandbox rewrites its config and session.
    let lock = if args.dc_only {
        None
    } else {
        Some(state.lock()?)
    };
    let config = Config::load(global.config.as_deref(), &state)?;
    let web = web_options(&args, &config.sandbox, &dir)?;
    let shutdown = shutdown_signal().map_err(SandboxCliError::Signals)?;
    let sandbox = Sandbox::start(SandboxOptions {
        state_dir: Some(dir.clone()),
        port: args.port,
        callback_timeout: Duration::from_millis(args.callback_timeout_ms),
        web: web.clone(),
        bots: usize::from(args.bots),
    })
    .await
    .map_err(SandboxCliError::from)?;
    if args.no_limits {
        sandbox.telegram().set_limits_enabled(false);
    }
    let bots = sandbox.telegram().ensure_bots(usize::from(args.bots));
    let bots = &bots[..usize::from(args.bots)];
    let keys = match bots {
        [_] => {
            write_worker_files(&dir, &sandbox)?;
            Vec::new()
        }
        many => write_fleet_files(&dir, &sandbox, many)?,
    };
    let web = sandbox
        .web_addr()
        .map_or_else(|| "off".to_owned(), |addr| format!("http://{addr}/"));
    info!(
        bots = bots.len(),
        dc_addr = %sandbox.dc_addr(),
        control = %dir.join(crate::sandbox::control::SOCKET_NAME).display(),
        web = %web,
        "sandbox ready"
    );
    show_keys(&dir, &keys);
    let outcome = match &lock {
        None => {
            shutdown.await;
            Ok(Outcome::Success)
        }
        Some(lock) => {
            let demo = demo_user(sandbox.telegram(), bots)?;
            log_try_it(&dir, demo, !keys.is_empty());
            super::run::daemon(&state, lock, global.config.as_deref(), shutdown).await
        }
    };
    info!("sandbox stopping");
    sandbox.shutdown().await.map_err(SandboxCliError::from)?;
    outcome
}

/// The chat page's options: `--web`, else `[sandbox] web`, else
/// [`DEFAULT_WEB`]; `off` turns it off. A public page gets its token from
/// the environment or the config, else a new one in `DIR/web.token`.
fn web_options(
    args: &SandboxArgs,
    config: &SandboxConfig,
    dir: &Path,
) -> Result<Option<WebOptions>, SandboxCliError> {
    let (key, value) = match (&args.web, &config.web) {
        (Some(value), _) => ("--web", value.as_str()),
        (None, Some(value)) => ("sandbox.web", value.as_str()),
        (None, None) => ("--web", DEFAULT_WEB),
    };
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr = value.parse().map_err(|_| SandboxCliError::WebAddr {
        key,
        value: value.to_owned(),
    })?;
    let token = match (&config.web_token, args.web_public) {
        (Some(token), _) => Some(token.clone()),
        (None, true) => {
            let token = crate::sandbox::web::new_token();
            let path = dir.join(WEB_TOKEN_FILE);
            private_file::write(&path, token.expose().as_bytes()).map_err(|source| {
                SandboxCliError::WebToken {
                    path: path.clone(),
                    source,
                }
            })?;
            info!(file = %path.display(), "the web page's token is in this file");
            Some(token)
        }
        (None, false) => None,
    };
    Ok(Some(WebOptions {
        addr,
        public: args.web_public,
        token,
    }))
}

/// The ready message's keys: printed on standard output for the operator
/// at the terminal, never logged (they are in `DIR/telegate.toml`, 0600).
fn show_keys(dir: &Path, keys: &[(String, String)]) {
    if keys.is_empty() {
        return;
    }
    let mut out = format!(
        "sandbox ready with {} bots; send requests with `X-Octopods-Auth: KEY` \
         (the keys are also in {}):\n",
        keys.len(),
        dir.join("telegate.toml").display()
    );
    for (bot, key) in keys {
        out.push_str(&format!("  {bot}\t{key}\n"));
    }
    print!("{out}");
    let _ = io::stdout().flush();
}

/// A new API key: 32 random bytes in hex, after `tg_`.
fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut key = String::with_capacity(3 + 64);
    key.push_str("tg_");
    for byte in bytes {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// Writes a `[[bots]]` table per bot of the sandbox (`bot1`… for `bots`, in
/// order) with its token, DC and an API key (the one already in the file,
/// else a new one), and each bot's session; returns the bots' names and keys.
pub fn write_fleet_files(
    dir: &Path,
    sandbox: &Sandbox,
    bots: &[AccountId],
) -> Result<Vec<(String, String)>, SandboxCliError> {
    let path = dir.join("telegate.toml");
    let mut document = read_document(&path)?;
    let kept_keys: std::collections::HashMap<String, toml::Value> = match document.get("bots") {
        Some(toml::Value::Array(bots)) => bots
            .iter()
            .filter_map(|bot| {
                let name = bot.get("name")?.as_str()?.to_owned();
                Some((name, bot.get("api_keys")?.clone()))
            })
            .collect(),
        _ => std::collections::HashMap::new(),
    };
    let state = crate::config::StateDir::new(dir);
    let mut tables = Vec::with_capacity(bots.len());
    let mut keys = Vec::with_capacity(bots.len());
    let telegram = sandbox.telegram();
    for (number, &bot) in (1..).zip(bots) {
        let name = format!("bot{number}");
        let bot_name =
            crate::config::BotName::new(name.clone()).map_err(|e| SandboxCliError::Config {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        provision_session(&state.bot_session(&bot_name), sandbox, bot)?;
        let api_keys = kept_keys
            .get(&name)
            .cloned()
            .filter(|keys| keys.as_array().is_some_and(|keys| !keys.is_empty()))
            .unwrap_or_else(|| toml::Value::Array(vec![generate_key().into()]));
        if let Some(key) = api_keys
            .as_array()
            .and_then(|k| k.first())
            .and_then(|k| k.as_str())
        {
            keys.push((name.clone(), key.to_owned()));
        }
        let mut table = toml::Table::new();
        table.insert("name".into(), name.into());
        table.insert(
            "bot_token".into(),
            telegram
                .bot_token(bot)
                .map_err(SandboxCliError::Bot)?
                .expose()
                .into(),
        );
        table.insert("dc_addr".into(), sandbox.dc_addr().to_string().into());
        table.insert("api_keys".into(), api_keys);
        tables.push(toml::Value::Table(table));
    }
    document.insert("bots".into(), toml::Value::Array(tables));
    // The bots are all in [[bots]]: no `default` bot beside them.
    let mut telegram = match document.remove("telegram") {
        Some(toml::Value::Table(old)) => old,
        _ => toml::Table::new(),
    };
    telegram.remove("bot_token");
    telegram.remove("dc_addr");
    telegram.insert("api_id".into(), i64::from(SANDBOX_API_ID).into());
    telegram.insert("api_hash".into(), SANDBOX_API_HASH.into());
    document.insert("telegram".into(), telegram.into());
    write_document(&path, &document)?;
    Ok(keys)
}

/// The user to try the sandbox with: on first start (no users yet) a new one
/// who has written to every bot, so each may write back.
fn demo_user(
    telegram: &FakeTelegram,
    bots: &[AccountId],
) -> Result<Option<AccountId>, SandboxCliError> {
    if !telegram.users(telegram.bot_id()).is_empty() {
        return Ok(None);
    }
    let user = telegram.create_user(NewUser {
        id: None,
        first_name: "Ada".into(),
        username: Some("ada_demo".into()),
        lang_code: Some("en".into()),
    })?;
    for &bot in bots {
        telegram.user_sends(user.id, bot, UserMessage::Text("/start".into()), None)?;
    }
    Ok(Some(user.id))
}

/// Logs ready-to-paste commands that send the demo user a message and show
/// it arriving.
fn log_try_it(dir: &Path, demo: Option<AccountId>, keyed: bool) {
    // With several bots, a request names its bot by key (not logged).
    let auth = if keyed {
        " -H \"X-Octopods-Auth: $BOT1_KEY\""
    } else {
        ""
    };
    let Some(user) = demo else {
        info!(
            "sandbox users are listed by: curl --unix-socket {}/sandbox.sock http://localhost/users",
            dir.display()
        );
        return;
    };
    let dir = dir.display();
    let body = format!(
        r#"{{"destination_user_id":"{user}","telegram_interactive_message":{{"type":"reply_buttons","text":"Did your package arrive?","reply_markup":{{"inline_keyboard":[[{{"text":"Yes","callback_data":"yes"}},{{"text":"No","callback_data":"no"}}]]}}}}}}"#
    );
    info!(
        user_id = user,
        "demo user created; try:\n  \
         curl --unix-socket {dir}/telegate.sock{auth} -H 'content-type: application/json' \
         'http://localhost/api/v1/telegram/interactive?wait=10' -d '{body}'\n  \
         curl --unix-socket {dir}/sandbox.sock http://localhost/users/{user}/chat"
    );
}

/// Writes the bot session at `path` with the sandbox's bot key for every DC
/// (grammers cannot make a key against the sandbox). A new session is signed
/// in as the bot already, at the update state the sandbox made the bot at:
/// the worker's first start fetches everything sent to the bot since (the
/// demo user's `/start` included) instead of starting from "now".
fn provision_session(
    path: &Path,
    sandbox: &Sandbox,
    bot: AccountId,
) -> Result<(), SandboxCliError> {
    let telegram = sandbox.telegram();
    let store = SessionStore::provision(
        path,
        DC_ID,
        sandbox.dc_addr(),
        telegram.bot_auth_key(bot).map_err(SandboxCliError::Bot)?,
    )?;
    let bot = telegram.sign_in_bot(bot).map_err(SandboxCliError::Bot)?;
    store.record_sign_in(
        PeerInfo::User {
            id: bot.id,
            auth: Some(PeerAuth::from_hash(bot.access_hash)),
            bot: Some(true),
            is_self: Some(true),
        },
        UpdatesState {
            pts: 1,
            qts: 1,
            date: bot.created.max(1),
            seq: 0,
            channels: Vec::new(),
        },
    )?;
    for (&dc_id, &addr) in sandbox.dc_addrs() {
        if dc_id != DC_ID {
            store.add_dc(
                dc_id,
                addr,
                telegram
                    .bot_auth_key_on(bot.id, dc_id)
                    .map_err(SandboxCliError::Bot)?,
            )?;
        }
    }
    Ok(())
}

/// Writes `DIR/telegate.toml` and `DIR/sessions/default.session` for a worker.
pub fn write_worker_files(dir: &Path, sandbox: &Sandbox) -> Result<(), SandboxCliError> {
    let telegram = sandbox.telegram();
    let bot = telegram.bot_id();
    let session =
        crate::config::StateDir::new(dir).bot_session(&crate::config::BotName::default_bot());
    provision_session(&session, sandbox, bot)?;
    write_config(
        &dir.join("telegate.toml"),
        telegram
            .bot_token(bot)
            .map_err(SandboxCliError::Bot)?
            .expose(),
        &sandbox.dc_addr().to_string(),
    )
}

/// The TOML config at `path` (empty if there is none).
fn read_document(path: &Path) -> Result<toml::Table, SandboxCliError> {
    let config_error = |reason: String| SandboxCliError::Config {
        path: path.to_owned(),
        reason,
    };
    match fs::read_to_string(path) {
        Ok(text) => text
            .parse()
            .map_err(|e| config_error(format!("it is not valid TOML: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(config_error(e.to_string())),
    }
}

/// Writes `document` to `path`, mode 0600.
fn write_document(path: &Path, document: &toml::Table) -> Result<(), SandboxCliError> {
    let config_error = |reason: String| SandboxCliError::Config {
        path: path.to_owned(),
        reason,
    };
    let text = toml::to_string(document).map_err(|e| config_error(e.to_string()))?;
    private_file::write(path, text.as_bytes()).map_err(|e| config_error(e.to_string()))
}

/// Sets the `[telegram]` table of the TOML config at `path`, keeping the rest.
fn write_config(path: &Path, bot_token: &str, dc_addr: &str) -> Result<(), SandboxCliError> {
    let mut document = read_document(path)?;
    let mut telegram = toml::Table::new();
    telegram.insert("api_id".into(), i64::from(SANDBOX_API_ID).into());
    telegram.insert("api_hash".into(), SANDBOX_API_HASH.into());
    telegram.insert("bot_token".into(), bot_token.into());
    telegram.insert("dc_addr".into(), dc_addr.into());
    let merged = match document.remove("telegram") {
        Some(toml::Value::Table(mut old)) => {
            old.extend(telegram);
            old
        }
        _ => telegram,
    };
    document.insert("telegram".into(), merged.into());
    write_document(path, &document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gets_the_telegram_table_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telegate.toml");
        fs::write(
            &path,
            "[webhook]\nurl = \"http://127.0.0.1:9/x\"\n[telegram]\napi_id = 5\nextra = 1\n",
        )
        .unwrap();
        write_config(&path, "1:abc", "127.0.0.1:4444").unwrap();
        let table: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(
            table["webhook"]["url"].as_str(),
            Some("http://127.0.0.1:9/x")
        );
        assert_eq!(table["telegram"]["api_id"].as_integer(), Some(1));
        assert_eq!(table["telegram"]["extra"].as_integer(), Some(1));
        assert_eq!(table["telegram"]["bot_token"].as_str(), Some("1:abc"));
        assert_eq!(
            table["telegram"]["dc_addr"].as_str(),
            Some("127.0.0.1:4444")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    fn args(web: Option<&str>, public: bool) -> SandboxArgs {
        SandboxArgs {
            dc_only: true,
            port: 0,
            callback_timeout_ms: 10_000,
            web: web.map(str::to_owned),
            web_public: public,
            no_limits: false,
            bots: 1,
        }
    }

    #[test]
    fn the_web_page_is_on_by_default_and_the_flag_wins_over_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let none = SandboxConfig::default();
        let page = web_options(&args(None, false), &none, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(page.addr.to_string(), DEFAULT_WEB);
        assert!(!page.public && page.token.is_none());
        let config = SandboxConfig {
            web: Some("127.0.0.1:9999".into()),
            web_token: None,
        };
        let page = web_options(&args(None, false), &config, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(page.addr.port(), 9999);
        let page = web_options(&args(Some("127.0.0.1:7"), false), &config, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(page.addr.port(), 7);
        assert!(
            web_options(&args(Some("off"), false), &config, dir.path())
                .unwrap()
                .is_none()
        );
        let off = SandboxConfig {
            web: Some("OFF".into()),
            web_token: None,
        };
        assert!(
            web_options(&args(None, false), &off, dir.path())
                .unwrap()
                .is_none()
        );
        let bad = SandboxConfig {
            web: Some("localhost".into()),
            web_token: None,
        };
        let error = web_options(&args(None, false), &bad, dir.path()).unwrap_err();
        assert!(error.to_string().contains("sandbox.web"), "{error}");
    }

    #[test]
    fn a_public_page_gets_a_token_file_unless_one_is_configured() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let none = SandboxConfig::default();
        let page = web_options(&args(Some("0.0.0.0:0"), true), &none, dir.path())
            .unwrap()
            .unwrap();
        let file = dir.path().join(WEB_TOKEN_FILE);
        let written = fs::read_to_string(&file).unwrap();
        assert_eq!(
            page.token.as_ref().map(|t| t.expose()),
            Some(written.as_str())
        );
        assert_eq!(written.len(), 32);
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_file(&file).unwrap();
        let config = SandboxConfig {
            web: None,
            web_token: Some(crate::config::Secret::new("configured-token-123")),
        };
        let page = web_options(&args(Some("0.0.0.0:0"), true), &config, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(page.token.unwrap().expose(), "configured-token-123");
        assert!(!file.exists());
    }

    #[test]
    fn invalid_config_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telegate.toml");
        fs::write(&path, "[telegram\n").unwrap();
        let err = write_config(&path, "1:abc", "127.0.0.1:1").unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
        assert!(!err.to_string().contains("1:abc"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "[telegram\n");
    }
}
