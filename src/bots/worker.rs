//! One bot's worker: its session file, connection, sign-in, update stream,
//! callback answerer, webhook and sender lane.
//!
//! Nothing here is shared with another bot's worker except the store, so a
//! bot whose token is revoked, whose sign-in waits out a `FLOOD_WAIT` or
//! whose connection is gone is halted or retrying on its own while the
//! others go on. The worker's tasks live in its own [`TaskTracker`] under
//! its own [`CancellationToken`] (a child of the daemon's): stopping a bot
//! is cancelling its token and waiting for its tracker.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::BotEntry;
use crate::bot_state::BotState;
use crate::callbacks::CallbackAnswerer;
use crate::config::{
    BotConfig, BotName, Config, LimitsConfig, Secret, StateDir, TokenError, WebhookConfig,
};
use crate::download::Downloads;
use crate::events::EventStore;
use crate::events::webhook::Webhook;
use crate::inbound::{self, Inbound};
use crate::limits::{Limits, Rates};
use crate::queue::{Expiry, Queue};
use crate::sender::{self, Backoff, Connection, Sender, Stopped, Verdict, judge};
use crate::session::SessionStore;
use crate::telegram::{Credentials, Liveness, Telegram, TelegramError};

/// What every bot's worker shares: the store and the global settings.
pub struct Shared {
    pub state: StateDir,
    pub queue: Queue,
    /// Unscoped; each worker scopes it to its bot.
    pub events: EventStore,
    pub api_id: i32,
    pub api_hash: Secret,
    /// `telegram.dc_addr`, for bots without their own.
    pub dc_addr: Option<SocketAddrV4>,
    pub callback_deadline: Duration,
    pub sender: sender::Settings,
    /// How each connection is judged alive (`[connection]`).
    pub liveness: Liveness,
}

impl Shared {
    /// The settings of `config` (credentials checked by the caller).
    pub fn new(
        config: &Config,
        state: StateDir,
        queue: Queue,
        events: EventStore,
        api_id: i32,
        api_hash: Secret,
        dc_addr: Option<SocketAddrV4>,
    ) -> Self {
        Shared {
            state,
            queue,
            events,
            api_id,
            api_hash,
            dc_addr,
            callback_deadline: Duration::from_millis(config.callbacks.deadline_ms),
            liveness: config.connection.liveness(),
            sender: sender::Settings {
                expiry: config.sender.job_expiry().and_then(Expiry::new),
                ..sender::Settings::default()
            },
        }
    }
}

/// What a bot's worker runs with; a reload restarts a bot only when this
/// changed (keys and `interactive` are the API's business).
#[derive(Debug, Clone, PartialEq)]
pub struct BotSpec {
    pub name: BotName,
    pub token: Secret,
    pub limits: LimitsConfig,
    pub webhook: WebhookConfig,
    /// The bot's own DC address (`None`: the global one).
    pub dc_addr: Option<SocketAddrV4>,
}

impl BotSpec {
    /// The spec of an enabled `bot` of `config` (its token resolved; the
    /// config checked, so its `dc_addr` parses).
    pub fn of(bot: &BotConfig, config: &Config) -> Result<Self, TokenError> {
        Ok(BotSpec {
            name: bot.name.clone(),
            token: bot.token()?,
            limits: bot.limits(&config.limits),
            webhook: bot.webhook(&config.webhook).clone(),
            dc_addr: bot.dc_addr.as_deref().and_then(|addr| addr.parse().ok()),
        })
    }
}

/// How one connection of the worker ended.
enum Ended {
    Cancelled,
    /// Not to be retried until the config changes.
    Halted(String),
    /// Retried after a pause.
    Retry(String),
    /// Halted for `wait` (a sign-in `FLOOD_WAIT`), then retried.
    Wait {
        reason: String,
        wait: Duration,
    },
}

/// The longest pause between two connections of a bot that failed.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Runs bot `spec` until `cancel`, retrying its connection with backoff;
/// its state is kept in `entry`. Its tasks go on `tracker`.
pub async fn run(
    shared: Arc<Shared>,
    spec: BotSpec,
    entry: Arc<BotEntry>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let backoff = Backoff {
        cap: MAX_RETRY,
        ..Backoff::default()
    };
    let mut last_error = None;
    for attempt in 1.. {
        entry.set_state(BotState::SigningIn {
            attempt,
            last_error: last_error.take(),
        });
        let ended = connect_and_work(&shared, &spec, &entry, &cancel, &tracker).await;
        entry.attach(None, None, None, None);
        let pause = match ended {
            Ended::Cancelled => return,
            Ended::Halted(reason) => {
                tracing::error!(bot = %spec.name, %reason, "bot halted until its config changes");
                entry.set_error(&reason);
                entry.set_state(BotState::Halted { reason });
                cancel.cancelled().await;
                return;
            }
            Ended::Retry(error) => {
                let pause = backoff.delay(attempt, rand::random());
                tracing::warn!(bot = %spec.name, %error, retry_in = ?pause, "bot connection failed");
                entry.set_error(&error);
                last_error = Some(error);
                pause
            }
            Ended::Wait { reason, wait } => {
                tracing::warn!(bot = %spec.name, %reason, "bot halted for a while");
                entry.set_error(&reason);
                entry.set_state(BotState::Halted { reason });
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One connection: sign in, then send and receive until it ends.
async fn connect_and_work(
    shared: &Shared,
    spec: &BotSpec,
    entry: &BotEntry,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Ended {
    let path = shared.state.bot_session(&spec.name);
    let session = match SessionStore::open(&path) {
        Ok(session) => Arc::new(session),
        Err(error) => return Ended::Halted(format!("session {}: {error}", path.display())),
    };
    if let Some(addr) = spec.dc_addr.or(shared.dc_addr)
        && let Err(error) = session.set_home_addr(addr)
    {
        return Ended::Halted(format!("session {}: {error}", path.display()));
    }
    let telegram = Arc::new(Telegram::start_with(
        Arc::clone(&session),
        shared.api_id,
        shared.liveness,
    ));
    telegram.report_to(entry.states().clone(), spec.name.as_str());
    let ended = tokio::select! {
        ended = work(shared, spec, entry, &telegram, session, cancel, tracker) => ended,
        () = cancel.cancelled() => Ended::Cancelled,
    };
    telegram.shutdown().await;
    ended
}

async fn work(
    shared: &Shared,
    spec: &BotSpec,
    entry: &BotEntry,
    telegram: &Arc<Telegram>,
    session: Arc<SessionStore>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Ended {
    let credentials = Credentials {
        api_id: shared.api_id,
        api_hash: shared.api_hash.expose().to_owned(),
        bot_token: spec.token.expose().to_owned(),
    };
    let me = match telegram.sign_in(&credentials).await {
        Ok(me) => me,
        Err(error) => return sign_in_failed(error),
    };
    entry.set_signed_in(me.id, me.username.clone());
    let (stream, live_clicks) = match telegram.updates_with_live_clicks().await {
        Some(Ok(taken)) => taken,
        Some(Err(error)) => return Ended::Retry(format!("cannot receive updates: {error}")),
        None => return Ended::Retry("the update stream was already taken".into()),
    };
    let bot = spec.name.as_str();
    let events = shared.events.scoped(Some(bot));
    let callbacks = CallbackAnswerer::for_bot(
        telegram.client().clone(),
        shared.queue.clone(),
        shared.callback_deadline,
        bot,
    );
    let webhook = match Webhook::from_config(&spec.webhook, events.clone(), shared.queue.clone()) {
        Ok(webhook) => webhook,
        Err(error) => return Ended::Halted(format!("webhook: {error}")),
    };
    // This connection's tasks stop with it (or with the bot).
    let connection = cancel.child_token();
    let _stop_tasks = connection.clone().drop_guard();
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let (chat_actions, showing) =
        crate::chat_action::ChatActions::new(Arc::clone(telegram), &shared.queue, stopping);
    {
        let stop = connection.clone();
        tracker.spawn(async move {
            stop.cancelled().await;
            let _ = stopping_tx.send(true);
        });
    }
    tracker.spawn(showing);
    entry.attach(
        Some(callbacks.clone()),
        Some(Downloads::new(telegram.client().clone())),
        webhook.as_ref().map(Webhook::monitor),
        Some(chat_actions),
    );
    if let Some(webhook) = webhook {
        let stop = connection.clone();
        let name = spec.name.clone();
        tracker.spawn(async move {
            if let Err(error) = webhook.run(stop).await {
                tracing::error!(bot = %name, %error, "the webhook stopped");
            }
        });
    }
    let (inbound_failed, mut failure) = tokio::sync::oneshot::channel();
    {
        let inbound = Inbound {
            bot_id: me.id,
            events,
            queue: shared.queue.clone(),
            session,
            callbacks,
        };
        let stop = connection.clone();
        let clicks = inbound.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = inbound::answer_live_clicks(live_clicks, clicks) => {}
                () = stop.cancelled() => {}
            }
        });
        let stop = connection.clone();
        tracker.spawn(async move {
            tokio::select! {
                ended = inbound::run(stream, inbound) => {
                    let _ = inbound_failed.send(match ended {
                        Ok(()) => "the inbound pipeline stopped".to_owned(),
                        Err(error) => error.to_string(),
                    });
                }
                () = stop.cancelled() => {}
            }
        });
    }
    let limits = match Limits::new(Rates::from(&spec.limits)) {
        Ok(limits) => limits,
        Err(error) => return Ended::Halted(error.to_string()),
    };
    tracing::info!(
        bot = %spec.name,
        bot_id = me.id,
        username = me.username.as_deref().unwrap_or(""),
        "ready: connected to Telegram and signed in"
    );
    entry.set_state(BotState::Ready {
        bot_id: me.id,
        username: me.username.clone(),
    });
    let connection_io = Arc::new(Connection {
        telegram: Arc::clone(telegram),
        queue: shared.queue.clone(),
    });
    let sender = Sender::new(
        shared.queue.clone(),
        bot,
        connection_io,
        limits,
        shared.sender,
    )
    .with_liveness(telegram.alive());
    let sending = connection.clone();
    tokio::select! {
        sent = sender.run(sending) => match sent {
            Ok(Stopped::Told) => Ended::Cancelled,
            Ok(Stopped::Halted(reason)) => Ended::Halted(reason),
            Err(error) => Ended::Retry(format!("the job store failed: {error}")),
        },
        failed = &mut failure => Ended::Retry(
            failed.unwrap_or_else(|_| "the inbound pipeline stopped".into())
        ),
    }
}

/// What a failed sign-in means for the bot.
fn sign_in_failed(error: TelegramError) -> Ended {
    match error {
        TelegramError::Invocation(invocation) => match judge(&invocation) {
            Verdict::Transient { reason } => {
                Ended::Retry(format!("cannot reach Telegram: {reason}"))
            }
            Verdict::FloodWait { wait, name } => Ended::Wait {
                reason: format!("{name} at sign-in, retrying in {} s", wait.as_secs()),
                wait,
            },
            Verdict::Permanent { name, .. } => Ended::Halted(format!("sign-in refused: {name}")),
            Verdict::Halt { reason } => Ended::Halted(format!("sign-in refused: {reason}")),
            Verdict::AlreadySent => Ended::Retry("sign-in: unexpected answer".into()),
        },
        other => Ended::Halted(other.to_string()),
    }
}
