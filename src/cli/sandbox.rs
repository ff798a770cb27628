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
//! and `dc_addr` (other tables are kept), and `sessions/bot.session` gets the
//! DC address and the bot's pre-provisioned auth key. Both are mode 0600.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tracing::info;

use super::{CliError, Global, Outcome, shutdown_signal};
use crate::private_file;
use crate::sandbox::server::{Sandbox, SandboxOptions, StartError};
use crate::sandbox::state_file::StateFileError;
use crate::sandbox::telegram::{
    AccountId, DC_ID, FakeTelegram, NewUser, SandboxError, UserMessage,
};
use crate::session::{SessionError, SessionStore};

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
    /// Start with Telegram's rate limits off (as `POST /faults
    /// {"limits": false}` would turn them, but before any client connects).
    #[arg(long)]
    pub no_limits: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxCliError {
    #[error("cannot create the demo user: {0}")]
    DemoUser(#[from] SandboxError),
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
    let shutdown = shutdown_signal().map_err(SandboxCliError::Signals)?;
    let sandbox = Sandbox::start(SandboxOptions {
        state_dir: Some(dir.clone()),
        port: args.port,
        callback_timeout: Duration::from_millis(args.callback_timeout_ms),
    })
    .await
    .map_err(SandboxCliError::from)?;
    if args.no_limits {
        sandbox.telegram().set_limits_enabled(false);
    }
    write_worker_files(&dir, &sandbox)?;
    info!(
        dc_addr = %sandbox.dc_addr(),
        control = %dir.join(crate::sandbox::control::SOCKET_NAME).display(),
        "sandbox ready"
    );
    let outcome = match &lock {
        None => {
            shutdown.await;
            Ok(Outcome::Success)
        }
        Some(lock) => {
            let demo = demo_user(sandbox.telegram())?;
            log_try_it(&dir, demo);
            super::run::daemon(&state, lock, global.config.as_deref(), shutdown).await
        }
    };
    info!("sandbox stopping");
    sandbox.shutdown().await.map_err(SandboxCliError::from)?;
    outcome
}

/// The user to try the sandbox with: on first start (no users yet) a new one
/// who has written to the bot, so the bot may write back.
fn demo_user(telegram: &FakeTelegram) -> Result<Option<AccountId>, SandboxCliError> {
    if !telegram.users().is_empty() {
        return Ok(None);
    }
    let user = telegram.create_user(NewUser {
        id: None,
        first_name: "Ada".into(),
        username: Some("ada_demo".into()),
    })?;
    telegram.user_sends(user.id, UserMessage::Text("/start".into()), None)?;
    Ok(Some(user.id))
}

/// Logs ready-to-paste commands that send the demo user a message and show
/// it arriving.
fn log_try_it(dir: &Path, demo: Option<AccountId>) {
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
         curl --unix-socket {dir}/telegate.sock -H 'content-type: application/json' \
         'http://localhost/api/v1/telegram/interactive?wait=10' -d '{body}'\n  \
         curl --unix-socket {dir}/sandbox.sock http://localhost/users/{user}/chat"
    );
}

/// Writes `DIR/telegate.toml` and `DIR/sessions/bot.session` for a worker.
pub fn write_worker_files(dir: &Path, sandbox: &Sandbox) -> Result<(), SandboxCliError> {
    let telegram = sandbox.telegram();
    let session = crate::config::StateDir::new(dir).bot_session();
    let store =
        SessionStore::provision(&session, DC_ID, sandbox.dc_addr(), telegram.bot_auth_key())?;
    // A key per DC, as grammers cannot make one against the sandbox.
    for (&dc_id, &addr) in sandbox.dc_addrs() {
        if dc_id != DC_ID {
            store.add_dc(dc_id, addr, telegram.bot_auth_key_on(dc_id))?;
        }
    }
    write_config(
        &dir.join("telegate.toml"),
        telegram.bot_token().expose(),
        &sandbox.dc_addr().to_string(),
    )
}

/// Sets the `[telegram]` table of the TOML config at `path`, keeping the rest.
fn write_config(path: &Path, bot_token: &str, dc_addr: &str) -> Result<(), SandboxCliError> {
    let config_error = |reason: String| SandboxCliError::Config {
        path: path.to_owned(),
        reason,
    };
    let mut document: toml::Table = match fs::read_to_string(path) {
        Ok(text) => text
            .parse()
            .map_err(|e| config_error(format!("it is not valid TOML: {e}")))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(config_error(e.to_string())),
    };
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
    let text = toml::to_string(&document).map_err(|e| config_error(e.to_string()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(private_file::MODE)
        .open(path)
        .map_err(|e| config_error(e.to_string()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| config_error(e.to_string()))?;
    private_file::create(path).map_err(|e| config_error(e.to_string()))
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
