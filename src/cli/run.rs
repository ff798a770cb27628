//! `telegate run`: the daemon.
//!
//! Opens the store (putting jobs a crash left in `sending` back in line),
//! serves the socket API, and on SIGTERM or SIGINT stops accepting, lets
//! in-flight requests finish, closes the store and removes its socket file.

use std::io::IsTerminal;

use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use super::{CliError, Global, Outcome};
use crate::api;
use crate::config::Config;
use crate::queue::Queue;

/// The variable holding the log filter (`info` when unset).
const LOG_ENV: &str = "TELEGATE_LOG";

pub async fn run(global: &Global) -> Result<Outcome, CliError> {
    init_logging();
    let state = global.state();
    state.prepare()?;
    let _lock = state.lock()?;
    let config = Config::load(global.config.as_deref(), &state)?;
    let shutdown = shutdown_signal()?;

    let database = state.database();
    let queue = Queue::open(&database)
        .map_err(|err| CliError::Input(format!("{}: {err}", database.display())))?;
    let (listener, socket) = api::socket::bind(&state.socket()).await?;
    tracing::info!(socket = %socket.path().display(), "serving the socket API");

    let served = api::serve(listener, queue.clone(), &config.api, shutdown).await;
    queue.close().await;
    drop(socket);
    served.map_err(CliError::Serve)?;
    tracing::info!("stopped");
    Ok(Outcome::Success)
}

fn init_logging() {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, CliError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(CliError::Serve)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Serve)?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
