//! `telegate run`: the daemon.
//!
//! Opens the store (putting jobs a crash left in `sending` back in line),
//! serves the socket API, and on SIGTERM or SIGINT stops accepting, lets
//! in-flight requests finish, closes the store and removes its socket file.

use super::{CliError, Global, Outcome, shutdown_signal};
use crate::api;
use crate::config::Config;
use crate::queue::Queue;

pub async fn run(global: &Global) -> Result<Outcome, CliError> {
    let state = global.state();
    state.prepare()?;
    let _lock = state.lock()?;
    let config = Config::load(global.config.as_deref(), &state)?;
    let shutdown = shutdown_signal().map_err(CliError::Signals)?;

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
