//! The command line: one subcommand per job telegate can do.
//!
//! Commands return errors and exit codes; only `main` prints fatal errors and
//! exits.

mod bots;
mod events;
mod jobs;
pub mod run;
pub mod sandbox;
mod send;
mod status;
mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::api::client::Client;
use crate::config::{Config, LOG_FORMAT_ENV, LogFormat, Secret, StateDir};

/// A Telegram bot worker that speaks MTProto.
#[derive(Debug, Parser)]
#[command(name = "telegate", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every long-running command and every socket client shares.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory of `telegate.sock`, `telegate.db` and `sessions/`.
    #[arg(long, global = true, default_value = ".", env = "TELEGATE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// TOML config file [default: STATE_DIR/telegate.toml if present].
    #[arg(long, global = true, env = "TELEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The socket API's path [default: STATE_DIR/telegate.sock].
    #[arg(long, global = true, env = "TELEGATE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The API key socket clients send (a bot's, or an operator's), when
    /// keys are configured.
    #[arg(long, global = true, env = "TELEGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
}

impl Global {
    pub fn state(&self) -> StateDir {
        let state = StateDir::new(&self.state_dir);
        match &self.socket {
            Some(socket) => state.with_socket(socket),
            None => state,
        }
    }

    /// A client of the daemon's socket, sending the API key if one is set.
    pub fn client(&self) -> Client {
        Client::new(self.state().socket()).with_key(self.api_key.clone())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate one request body and show the MTProto reply markup it becomes.
    Validate {
        /// Print only the lowercase hex of the serialized boxed `ReplyMarkup`.
        #[arg(long)]
        tl_hex: bool,
        /// The request body (`-` or nothing: standard input).
        file: Option<PathBuf>,
    },
    /// Run the daemon: serve the socket API and send the queued jobs
    /// through the bot's session until SIGTERM or SIGINT.
    Run,
    /// Enqueue request bodies over the socket, one result line per body.
    Send(send::SendArgs),
    /// List jobs in the store.
    Jobs(jobs::JobsArgs),
    /// Print inbound events and job results as NDJSON
    /// (`{"cursor":N,"event":{...}}`), resuming after a cursor.
    Events(events::EventsArgs),
    /// Show one job.
    Job(jobs::JobArgs),
    /// One screen for a person: bots, queue, send rate, webhook, recent errors.
    Status,
    /// List the bots with their state, queue depth and last error.
    Bots,
    /// Make the running daemon re-read its config and apply the difference
    /// (like SIGHUP).
    Reload,
    /// Run the local Telegram sandbox (an MTProto DC and its control API)
    /// with a worker attached.
    Sandbox(sandbox::SandboxArgs),
}

/// How a command ended, for `main` to turn into an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    match cli.command {
        Command::Validate { tl_hex, file } => {
            validate::run(tl_hex, file.as_deref(), &mut std::io::stdout().lock())
        }
        Command::Run => run::run(&cli.global).await,
        Command::Send(args) => send::send(&cli.global, args).await,
        Command::Jobs(args) => jobs::list(&cli.global, args).await,
        Command::Events(args) => events::run(&cli.global, args).await,
        Command::Job(args) => jobs::show(&cli.global, args).await,
        Command::Status => status::run(&cli.global).await,
        Command::Bots => bots::list(&cli.global).await,
        Command::Reload => bots::reload(&cli.global).await,
        Command::Sandbox(args) => sandbox::run(&cli.global, args).await,
    }
}

/// Errors that end a command before it could do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxCliError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    State(#[from] crate::config::StateError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error(transparent)]
    Bind(#[from] crate::api::socket::BindError),
    #[error(transparent)]
    Client(#[from] crate::api::client::ClientError),
    #[error("{0}")]
    Input(String),
    #[error("socket server: {0}")]
    Serve(std::io::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

/// The variable holding the log filter (`info` when unset).
const LOG_ENV: &str = "TELEGATE_LOG";
const QUIET_POSTGRES: &str = "tokio_postgres=info";

/// Logs go to stderr, filtered by `TELEGATE_LOG` (e.g. `debug`,
/// `telegate=debug`); stdout is kept for command output. The format is
/// `TELEGATE_LOG_FORMAT`, else the config's `[log] format`, else text; a
/// config that does not load is reported by the command itself.
pub fn init_logging(global: &Global) {
    let format = match Config::load(global.config.as_deref(), &global.state()) {
        Ok(config) => config.log.format,
        Err(_) => std::env::var(LOG_FORMAT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default(),
    };
    let filter = EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The PostgreSQL client logs every statement's parameters at debug,
        // auth keys among them: never below info, whatever was asked.
        .add_directive(QUIET_POSTGRES.parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // One object per line: the event's fields at the top level, the
        // innermost span's fields (`request_id`, `job_id`, `bot`, `chat`)
        // under `span`, every open span's under `spans`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
