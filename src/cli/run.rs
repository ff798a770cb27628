//! `telegate run`: the daemon.
//!
//! Wires the pieces in one place, in the order they depend on each other:
//! config and credentials (a missing one is named before anything starts),
//! the store (putting jobs a crash left in `sending` back in line), the
//! socket API (enqueueing works while Telegram is still being reached), then
//! one worker per configured bot (`bots::worker`: its session in
//! `DIR/sessions/NAME.session`, its connection, sign-in, sender and inbound
//! pipeline). SIGHUP (or `telegate reload`, `POST /api/v1/reload`) re-reads
//! the config and applies the difference (`bots::fleet`). On SIGTERM or
//! SIGINT one cancellation token stops everything: the API stops accepting,
//! the senders stop claiming and let in-flight sends finish (bounded), the
//! store is closed and the connections shut. `telegate sandbox` runs the
//! same [`daemon`] beside its DC.

use std::future::Future;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{CliError, Global, Outcome, shutdown_signal};
use crate::api;
use crate::bots::fleet::{Applied, Fleet};
use crate::bots::lease::Leasing;
use crate::bots::worker::Shared;
use crate::bots::{Bots, ReloadRequest};
use crate::config::{Config, StateDir, StateLock, TelegramConfig, TokenError};
use crate::events::EventStore;
use crate::queue::Queue;
use crate::telegram::Credentials;

/// Why the worker could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("missing `telegram.{key}`: set it in the config file or in {env}")]
    MissingCredential {
        key: &'static str,
        env: &'static str,
    },
    #[error(
        "no bot is configured: set `telegram.bot_token` (or TELEGATE_BOT_TOKEN), \
         or add [[bots]] tables"
    )]
    NoBots,
    #[error("`telegram.dc_addr` must be IPv4 `host:port`, got `{0}`")]
    DcAddr(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub async fn run(global: &Global) -> Result<Outcome, CliError> {
    let state = global.state();
    state.prepare()?;
    let lock = state.lock()?;
    let shutdown = shutdown_signal().map_err(CliError::Signals)?;
    daemon(&state, &lock, global.config.as_deref(), shutdown).await
}

/// The daemon over `state` (prepared, and held by `_lock`) until `shutdown`
/// completes.
pub async fn daemon(
    state: &StateDir,
    _lock: &StateLock,
    config_file: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Outcome, CliError> {
    let config = Config::load(config_file, state)?;
    let (api_id, api_hash) = global_credentials(&config.telegram)?;
    let dc_addr = dc_addr(&config.telegram)?;
    if config.bots.is_empty() {
        return Err(RunError::NoBots.into());
    }
    state.migrate_legacy_session()?;

    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let location = config.store.location(state)?;
    let queue =
        Queue::open_at(&location).map_err(|err| CliError::Input(format!("{location}: {err}")))?;
    let events = EventStore::new(queue.clone());
    let retention = Duration::from_secs(config.events.retention_hours.saturating_mul(3600));
    tasks.spawn(stopped_by(
        stop.clone(),
        events.clone().keep_pruned(retention),
    ));

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let bots = Bots::from_config(&config).with_reload(reload_tx);
    let shared = Shared::new(
        &config,
        state.clone(),
        queue.clone(),
        events.clone(),
        api_id,
        api_hash,
        dc_addr,
    );
    let mut fleet = Fleet::new(shared, bots.clone(), stop.child_token());
    // On a shared store, bots run where their leases are held; the first
    // tick comes at once.
    let mut leasing = match location {
        crate::store::Location::Postgres(_) => {
            fleet
                .hold(Some(Default::default()), false)
                .await
                .map_err(RunError::from)?;
            Some(Leasing::new(
                Duration::from_millis(config.store.lease_ttl_ms),
                state.root(),
            ))
        }
        crate::store::Location::Sqlite(_) => None,
    };
    // Standing by is reported once the leases are renewed (a daemon that
    // cannot reach the store is not ready, nor a standby).
    let states = bots.states().clone();
    if let Some(leasing) = &leasing {
        queue.fence(leasing.holder());
    }
    let mut lease_timer = tokio::time::interval(
        leasing
            .as_ref()
            .map_or(Duration::from_secs(3600), Leasing::interval),
    );
    lease_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let applied = fleet.apply(&config).await.map_err(RunError::from)?;
    tracing::info!(bots = applied.started.len(), "bots starting");

    let (listener, socket) = api::socket::bind(&state.socket()).await?;
    tracing::info!(socket = %socket.path().display(), "serving the socket API");
    crate::systemd::ready();
    // systemd's watchdog pings while the store answers, until the stop.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tasks.spawn({
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            let _ = stopping_tx.send(true);
        }
    });
    tasks.spawn(crate::systemd::watchdog(queue.clone(), stopping));
    let services = api::Services {
        queue: queue.clone(),
        events: events.clone(),
        bots,
    };
    let scraping = match config.metrics.listen {
        Some(addr) => Some(
            api::serve_metrics(
                addr,
                services.clone(),
                &config.api,
                stop.clone().cancelled_owned(),
            )
            .await
            .map_err(|source| RunError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    let api_config = config.api.clone();
    let serving =
        tasks.spawn({
            let stop = stop.clone();
            async move {
                api::serve_services(listener, services, &api_config, stop.cancelled_owned()).await
            }
        });

    let mut hangup = signal(SignalKind::hangup()).map_err(CliError::Signals)?;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = lease_timer.tick(), if leasing.is_some() => {
                if let Some(leasing) = leasing.as_mut() {
                    let holding = leasing.tick(&queue, &fleet.configured()).await;
                    states.set_shared(leasing.is_renewed());
                    if let Err(error) = fleet.hold(Some(holding.bots), holding.lost).await {
                        tracing::error!(%error, "cannot start a leased bot");
                    }
                }
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = reload(&mut fleet, config_file, state).await;
            }
            Some(reply) = reload_rx.recv() => {
                let _ = reply.send(reload(&mut fleet, config_file, state).await);
            }
        }
    }
    crate::systemd::stopping();
    stop.cancel();
    fleet.stop().await;
    if let Some(leasing) = leasing.as_mut() {
        leasing.release_all(&queue).await;
    }
    tasks.close();
    let served = serving.await;
    if let Some(scraping) = scraping {
        let _ = scraping.await;
    }
    tasks.wait().await;
    // A store out of reach (a partition) may never answer: what was
    // acknowledged is committed, so the daemon may exit without it.
    if tokio::time::timeout(STORE_CLOSE, queue.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time; exiting without it");
    }
    drop(socket);
    match served {
        Ok(Err(error)) => return Err(CliError::Serve(error)),
        Err(error) => return Err(CliError::Serve(std::io::Error::other(error))),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(Outcome::Success)
}

/// How long the stop waits for the store to close.
const STORE_CLOSE: Duration = Duration::from_secs(5);

/// Re-reads the config and applies it; a config that does not load changes
/// nothing (the error says why, without secrets).
async fn reload(
    fleet: &mut Fleet,
    config_file: Option<&Path>,
    state: &StateDir,
) -> Result<Applied, String> {
    let applied = match Config::load(config_file, state) {
        Ok(config) => fleet.apply(&config).await.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match &applied {
        Ok(applied) => tracing::info!(
            started = ?applied.started,
            stopped = ?applied.stopped,
            restarted = ?applied.restarted,
            unchanged = applied.unchanged.len(),
            "config reloaded"
        ),
        Err(error) => tracing::error!(%error, "config not reloaded; nothing changed"),
    }
    applied
}

/// Runs `work` until `stop` is cancelled.
async fn stopped_by(stop: CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        () = work => {}
        () = stop.cancelled() => {}
    }
}

/// The app credentials every bot shares.
fn global_credentials(telegram: &TelegramConfig) -> Result<(i32, crate::config::Secret), RunError> {
    let missing = |key, env| RunError::MissingCredential { key, env };
    let api_id = telegram
        .api_id
        .ok_or_else(|| missing("api_id", "TELEGATE_API_ID"))?;
    let api_hash = telegram
        .api_hash
        .clone()
        .filter(|hash| !hash.expose().is_empty())
        .ok_or_else(|| missing("api_hash", "TELEGATE_API_HASH"))?;
    Ok((api_id, api_hash))
}

/// The credentials of the one-bot configuration (`[telegram]`, environment
/// variables already applied), for tools that drive a single bot.
pub fn credentials(telegram: &TelegramConfig) -> Result<Credentials, RunError> {
    let (api_id, api_hash) = global_credentials(telegram)?;
    let bot_token = telegram
        .bot_token
        .as_ref()
        .filter(|token| !token.expose().is_empty())
        .ok_or(RunError::MissingCredential {
            key: "bot_token",
            env: "TELEGATE_BOT_TOKEN",
        })?;
    Ok(Credentials {
        api_id,
        api_hash: api_hash.expose().to_owned(),
        bot_token: bot_token.expose().to_owned(),
    })
}

fn dc_addr(telegram: &TelegramConfig) -> Result<Option<SocketAddrV4>, RunError> {
    telegram
        .dc_addr
        .as_deref()
        .map(|text| text.parse().map_err(|_| RunError::DcAddr(text.to_owned())))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn complete() -> TelegramConfig {
        TelegramConfig {
            api_id: Some(5),
            api_hash: Some(Secret::new("hash-sekrit")),
            bot_token: Some(Secret::new("1:token-sekrit")),
            dc_addr: None,
        }
    }

    #[test]
    fn each_missing_credential_names_its_key_and_variable() {
        type Strip = fn(&mut TelegramConfig);
        let cases: [(Strip, &str, &str); 3] = [
            (|t| t.api_id = None, "telegram.api_id", "TELEGATE_API_ID"),
            (
                |t| t.api_hash = None,
                "telegram.api_hash",
                "TELEGATE_API_HASH",
            ),
            (
                |t| t.bot_token = Some(Secret::new("")),
                "telegram.bot_token",
                "TELEGATE_BOT_TOKEN",
            ),
        ];
        for (strip, key, env) in cases {
            let mut telegram = complete();
            strip(&mut telegram);
            let message = credentials(&telegram).unwrap_err().to_string();
            assert!(message.contains(key), "{message}");
            assert!(message.contains(env), "{message}");
        }
        let found = credentials(&complete()).unwrap();
        assert_eq!(found.api_id, 5);
        assert!(!format!("{found:?}").contains("sekrit"));
    }

    #[test]
    fn a_dc_address_must_be_ipv4_host_and_port() {
        let mut telegram = complete();
        assert_eq!(dc_addr(&telegram).unwrap(), None);
        telegram.dc_addr = Some("127.0.0.1:4430".into());
        assert_eq!(
            dc_addr(&telegram).unwrap(),
            Some("127.0.0.1:4430".parse().unwrap())
        );
        telegram.dc_addr = Some("localhost".into());
        let message = dc_addr(&telegram).unwrap_err().to_string();
        assert!(message.contains("telegram.dc_addr"), "{message}");
    }
}
