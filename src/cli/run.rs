//! `telegate run`: the daemon.
//!
//! Wires the pieces in one place, in the order they depend on each other:
//! config and credentials (a missing one is named before anything starts),
//! the store (putting jobs a crash left in `sending` back in line), the
//! socket API (enqueueing works while Telegram is still being reached), the
//! bot session in `DIR/sessions/bot.session` and its one connection, sign-in,
//! then the sender and, beside it, the inbound pipeline (updates → events,
//! clicks answered; see `inbound`). On SIGTERM or SIGINT the API stops accepting, the sender
//! stops claiming and lets in-flight sends finish (bounded), the store is
//! closed and the connection shut. `telegate sandbox` runs the same
//! [`daemon`] beside its DC.

use std::future::Future;
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{CliError, Global, Outcome, shutdown_signal};
use crate::api;
use crate::bot_state::{BotState, BotStates};
use crate::callbacks::CallbackAnswerer;
use crate::chat_action::ChatActions;
use crate::config::{Config, StateDir, StateLock, TelegramConfig};
use crate::download::Downloads;
use crate::events::EventStore;
use crate::events::webhook::{Webhook, WebhookError};
use crate::inbound::{self, Inbound, InboundError};
use crate::limits::{Limits, RateError, Rates};

use crate::queue::{DEFAULT_BOT, Expiry, Queue};
use crate::sender::{self, Backoff, Sender, Verdict, judge};
use crate::session::{SessionError, SessionStore};
use crate::telegram::{Bot, Credentials, Telegram, TelegramError};
use grammers_mtsender::InvocationError;

/// Why the worker could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("missing `telegram.{key}`: set it in the config file or in {env}")]
    MissingCredential {
        key: &'static str,
        env: &'static str,
    },
    #[error("`telegram.dc_addr` must be IPv4 `host:port`, got `{0}`")]
    DcAddr(String),
    #[error(transparent)]
    Rates(#[from] RateError),
    #[error("bot session: {0}")]
    Session(#[from] SessionError),
    #[error("cannot sign in: {0}")]
    SignIn(#[from] TelegramError),
    #[error("cannot receive updates: {0}")]
    Updates(TelegramError),
    #[error("the update stream was already taken")]
    UpdatesTaken,
    #[error(transparent)]
    Inbound(#[from] InboundError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
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
    let credentials = credentials(&config.telegram)?;
    let dc_addr = dc_addr(&config.telegram)?;
    let limits = Limits::new(Rates::from(&config.limits)).map_err(RunError::from)?;

    let (stop, stopping) = watch::channel(false);
    let stop = Arc::new(stop);
    tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            shutdown.await;
            crate::systemd::stopping();
            let _ = stop.send(true);
        }
    });

    let database = state.database();
    let queue = Queue::open(&database)
        .map_err(|err| CliError::Input(format!("{}: {err}", database.display())))?;
    let session = Arc::new(SessionStore::open(&state.bot_session()).map_err(RunError::from)?);
    if let Some(addr) = dc_addr {
        session.set_home_addr(addr).map_err(RunError::from)?;
    }
    let telegram = Arc::new(Telegram::start_with(
        Arc::clone(&session),
        credentials.api_id,
        config.connection.liveness(),
    ));
    let bots = BotStates::new();
    bots.set(DEFAULT_BOT, BotState::Starting);
    telegram.report_to(bots.clone(), DEFAULT_BOT);
    let events = EventStore::new(queue.clone());
    let callbacks = CallbackAnswerer::new(
        telegram.client().clone(),
        queue.clone(),
        Duration::from_millis(config.callbacks.deadline_ms),
    );
    let retention = Duration::from_secs(config.events.retention_hours.saturating_mul(3600));
    let pruning = tokio::spawn(events.clone().keep_pruned(retention));
    let webhook = Webhook::from_config(&config.webhook, events.clone(), queue.clone())
        .map_err(RunError::from)?;
    let monitor = webhook.as_ref().map(Webhook::monitor);
    let delivering = webhook.map(|webhook| {
        tokio::spawn(async move {
            if let Err(error) = webhook.run().await {
                tracing::error!(%error, "the webhook stopped");
            }
        })
    });

    let (chat_actions, showing) = ChatActions::new(Arc::clone(&telegram), &queue, stopping.clone());
    let showing = tokio::spawn(showing);

    let (listener, socket) = api::socket::bind(&state.socket()).await?;
    tracing::info!(socket = %socket.path().display(), "serving the socket API");
    crate::systemd::ready();
    let watchdog = tokio::spawn(crate::systemd::watchdog(queue.clone(), stopping.clone()));
    let services = api::Services {
        queue: queue.clone(),
        events: events.clone(),
        callbacks: Some(callbacks.clone()),
        webhook: monitor,
        downloads: Some(Downloads::new(telegram.client().clone())),
        chat_actions: Some(chat_actions),
        bots: Some(bots.clone()),
    };
    let scraping = match config.metrics.listen {
        Some(addr) => Some(
            api::serve_metrics(
                addr,
                services.clone(),
                &config.api,
                stopped(stopping.clone()),
            )
            .await
            .map_err(|source| RunError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    let serving = api::serve_services(listener, services, &config.api, stopped(stopping.clone()));

    let working = async {
        let inbound = Inbound {
            bot_id: 0, // set once signed in
            events,
            queue: queue.clone(),
            session: Arc::clone(&session),
            callbacks,
        };
        let worked = work(
            &telegram,
            &queue,
            limits,
            sender::Settings {
                expiry: config.sender.job_expiry().and_then(Expiry::new),
                ..sender::Settings::default()
            },
            &credentials,
            inbound,
            stopping.clone(),
        )
        .await;
        // The API has nothing to serve without a worker: stop it too.
        let _ = stop.send(true);
        worked
    };
    let (served, worked) = tokio::join!(serving, working);
    // The action loop ends once `stopping` is true (as it is now).
    let _ = showing.await;
    telegram.set_state(BotState::Stopped);
    let _ = watchdog.await;
    if let Some(scraping) = scraping {
        let _ = scraping.await;
    }
    pruning.abort();
    if let Some(delivering) = delivering {
        delivering.abort();
    }

    queue.close().await;
    drop(socket);
    telegram.shutdown().await;
    worked?;
    served.map_err(CliError::Serve)?;
    tracing::info!("stopped");
    Ok(Outcome::Success)
}

/// Signs in, then sends and receives until told to stop.
async fn work(
    telegram: &Arc<Telegram>,
    queue: &Queue,
    limits: Limits,
    settings: sender::Settings,
    credentials: &Credentials,
    mut inbound: Inbound,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let Some(bot) = sign_in(telegram, credentials, &mut stopping).await? else {
        return Ok(());
    };
    telegram.set_state(BotState::Ready {
        bot_id: bot.id,
        username: bot.username.clone(),
    });
    tracing::info!(
        bot_id = bot.id,
        username = bot.username.as_deref().unwrap_or(""),
        "ready: connected to Telegram and signed in"
    );
    // After sign-in, so that grammers starts from the session's update
    // state (and catches up with getDifference).
    let stream = telegram
        .updates()
        .await
        .ok_or(RunError::UpdatesTaken)?
        .map_err(RunError::Updates)?;
    inbound.bot_id = bot.id;
    let mut receiving = tokio::spawn(inbound::run(stream, inbound));
    let sender = Sender::new(queue.clone(), Arc::clone(telegram), limits, settings);
    let sent = tokio::select! {
        sent = sender.run(stopping) => sent.map_err(CliError::from),
        received = &mut receiving => Err(match received {
            Ok(Err(error)) => RunError::Inbound(error).into(),
            // The pipeline only ends with an error; a panic is one too.
            _ => RunError::Inbound(InboundError::Stopped).into(),
        }),
    };
    // What was recorded is durable; the rest is fetched again next time.
    receiving.abort();
    sent
}

/// Signs in, retrying with backoff while Telegram cannot be reached (the
/// API keeps taking jobs meanwhile). `None`: told to stop first.
async fn sign_in(
    telegram: &Telegram,
    credentials: &Credentials,
    stopping: &mut watch::Receiver<bool>,
) -> Result<Option<Bot>, RunError> {
    let backoff = Backoff::default();
    let mut last_error = None;
    for attempt in 1.. {
        telegram.set_state(BotState::SigningIn {
            attempt,
            last_error: last_error.take(),
        });
        let error = tokio::select! {
            signed = telegram.sign_in(credentials) => match signed {
                Ok(bot) => return Ok(Some(bot)),
                Err(TelegramError::Invocation(error)) if unreachable(&error) => error,
                Err(error) => return Err(error.into()),
            },
            _ = stopping.wait_for(|stop| *stop) => return Ok(None),
        };
        let delay = backoff.delay(attempt, rand::random());
        tracing::warn!(%error, retry_in = ?delay, "cannot reach Telegram to sign in");
        last_error = Some(error.to_string());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|stop| *stop) => return Ok(None),
        }
    }
    Ok(None)
}

/// Whether a failed sign-in may succeed later by itself.
fn unreachable(error: &InvocationError) -> bool {
    matches!(judge(error), Verdict::Transient { .. })
}

async fn stopped(mut stopping: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// The credentials from the config (environment variables already applied).
pub fn credentials(telegram: &TelegramConfig) -> Result<Credentials, RunError> {
    let missing = |key, env| RunError::MissingCredential { key, env };
    let api_id = telegram
        .api_id
        .ok_or_else(|| missing("api_id", "TELEGATE_API_ID"))?;
    let api_hash = telegram
        .api_hash
        .as_ref()
        .filter(|hash| !hash.expose().is_empty())
        .ok_or_else(|| missing("api_hash", "TELEGATE_API_HASH"))?;
    let bot_token = telegram
        .bot_token
        .as_ref()
        .filter(|token| !token.expose().is_empty())
        .ok_or_else(|| missing("bot_token", "TELEGATE_BOT_TOKEN"))?;
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
