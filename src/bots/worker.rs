//! One bot's worker: its session file, connection, sign-in, update stream,
//! callback answerer, webhook and sender lane.
//!
//! Nothing here is shared with another bot's worker except the store, so a
//! bot whose token is revoked, whose sign-in waits out a `FLOOD_WAIT` or
//! whose connection is gone is halted or retrying on its own while the
//! others go on. The worker's tasks live in its own [`TaskTracker`] under
//! its own [`CancellationToken`] (a child of the daemon's): stopping a bot
//! is cancelling its token and waiting for its tracker.
//!
//! Each connection ends in an `Ended` that says what comes next: a 401
//! (the session signed out) signs in again at once; a refused token or app
//! halts the bot and signs in again with backoff; a dead grammers runner,
//! a lost connection or a failed inbound pipeline reconnect with a new
//! client. However it ends, a connection first stops intake and lets what
//! is in flight finish within the drain time: the sender's sends, the
//! click answers (waiting clicks are answered at once) and the inbound
//! recorder's last commit.

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
use crate::inbound::{self, Inbound, InboundError};
use crate::limits::{Limits, Rates};
use crate::queue::StorageRefusal;
use crate::queue::{Expiry, Lease, Queue, Timestamp};
use crate::sender::{self, Backoff, Connection, Sender, Stopped, Verdict, judge};
use crate::session::{SessionError, SessionStore, Sessions};
use crate::telegram::{Credentials, Liveness, Telegram, TelegramError};

/// What every bot's worker shares: the store and the global settings.
pub struct Shared {
    pub state: StateDir,
    /// Where the bots' sessions are kept (files, or the shared store).
    pub sessions: Sessions,
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
            sessions: Sessions::new(&state, queue.location()),
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
    /// The lease the bot runs under (on a shared store): a new fencing
    /// token is a new spec, so the bot restarts under it.
    pub lease: Option<Lease>,
}

impl BotSpec {
    /// The spec of an enabled `bot` of `config` (its token resolved; the
    /// config checked, so its `dc_addr` parses), run under `lease`.
    pub fn of(bot: &BotConfig, config: &Config, lease: Option<Lease>) -> Result<Self, TokenError> {
        Ok(BotSpec {
            name: bot.name.clone(),
            token: bot.token()?,
            limits: bot.limits(&config.limits),
            webhook: bot.webhook(&config.webhook).clone(),
            dc_addr: bot.dc_addr.as_deref().and_then(|addr| addr.parse().ok()),
            lease,
        })
    }
}

/// How one connection of the worker ended.
#[derive(Debug)]
enum Ended {
    Cancelled,
    /// Not to be retried until the config changes (a session file that
    /// cannot be opened, a webhook or limits that cannot be used).
    Halted(String),
    /// Telegram refused to sign the bot in (a revoked token, a refused
    /// `api_id`): the bot is halted, and sign-in is retried with backoff
    /// (a token can be reinstated, an operator may fix the app).
    Refused(String),
    /// Telegram signed the session out (a 401 such as
    /// `AUTH_KEY_UNREGISTERED` or `SESSION_REVOKED`): sign in again with
    /// the token, at once.
    SignedOut(String),
    /// Retried after a pause.
    Retry(String),
    /// A sign-in `FLOOD_WAIT`: sign in again once `wait` is over.
    Wait {
        reason: String,
        wait: Duration,
    },
}

/// The longest pause between two connections of a bot that failed.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The pauses after connections that failed (200 ms, doubling, to 60 s).
const RETRY_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(200),
    cap: MAX_RETRY,
};

/// The pauses between sign-ins Telegram refused (1 s, doubling, to 60 s).
const REFUSED_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: MAX_RETRY,
};

/// How long a bot waits before its next connection: a pure policy (the
/// jitter is given), so its rules are tested on their own.
#[derive(Debug, Default)]
struct Pauses {
    /// Connections that failed in a row (one that got ready ends the row).
    failures: u32,
    /// Sign-outs in a row: only the first is signed in again at once, so a
    /// session Telegram keeps refusing cannot spin.
    sign_outs: u32,
}

impl Pauses {
    /// The pause after a connection that ended as `ended` (`ready`: it got
    /// that far); `None` when there is no next connection.
    fn after(&mut self, ended: &Ended, ready: bool, jitter: f64) -> Option<Duration> {
        self.failures = if ready {
            1
        } else {
            self.failures.saturating_add(1)
        };
        self.sign_outs = match ended {
            Ended::SignedOut(_) => self.sign_outs.saturating_add(1),
            _ => 0,
        };
        match ended {
            Ended::Cancelled | Ended::Halted(_) => None,
            Ended::Refused(_) => Some(REFUSED_BACKOFF.delay(self.failures, jitter)),
            Ended::SignedOut(_) if self.sign_outs == 1 => Some(Duration::ZERO),
            Ended::SignedOut(_) => Some(RETRY_BACKOFF.delay(self.sign_outs, jitter)),
            Ended::Retry(_) => Some(RETRY_BACKOFF.delay(self.failures, jitter)),
            Ended::Wait { wait, .. } => Some(*wait),
        }
    }

    /// The number of the next sign-in attempt, as `/readyz` shows it.
    fn attempt(&self) -> u32 {
        self.failures.saturating_add(1)
    }
}

/// Runs bot `spec` until `cancel`, retrying its connection with backoff;
/// its state is kept in `entry`. Its tasks go on `tracker`.
///
/// `hurry` cut the drain short when the worker is stopped: the bot's lease
/// was lost, and its connection must close before another daemon may take
/// the bot; what was in flight is left to the next holder.
pub async fn run(
    shared: Arc<Shared>,
    spec: BotSpec,
    entry: Arc<BotEntry>,
    cancel: CancellationToken,
    hurry: CancellationToken,
    tracker: TaskTracker,
) {
    let mut pauses = Pauses::default();
    let mut last_error = None;
    // While halted the state stays halted through the retried sign-ins, so
    // enqueues keep being refused until one succeeds.
    let mut halted = false;
    loop {
        if !halted {
            entry.set_state(BotState::SigningIn {
                attempt: pauses.attempt(),
                last_error: last_error.take(),
            });
        }
        let mut ready = false;
        let ended = connect_and_work(
            &shared,
            &spec,
            &entry,
            (&cancel, &hurry),
            &tracker,
            &mut ready,
        )
        .await;
        entry.attach(None, None, None, None);
        let pause = pauses
            .after(&ended, ready, rand::random())
            .unwrap_or_default();
        halted = false;
        let name = &spec.name;
        match ended {
            Ended::Cancelled => return,
            Ended::Halted(reason) => {
                tracing::error!(bot = %name, %reason, "bot halted until its config changes");
                entry.set_error(&reason);
                entry.set_state(BotState::Halted { reason });
                cancel.cancelled().await;
                return;
            }
            Ended::Refused(refusal) => {
                let until = Timestamp::now().saturating_add(pause);
                let reason = format!("{refusal}; signing in again at {until}");
                tracing::error!(
                    bot = %name, %refusal, retry_at = %until,
                    "bot halted: Telegram refused to sign it in; its jobs stay queued"
                );
                entry.set_error(&reason);
                entry.set_state(BotState::Halted { reason });
                halted = true;
            }
            Ended::SignedOut(reason) => {
                tracing::warn!(
                    bot = %name, %reason, retry_in = ?pause,
                    "Telegram signed the session out: signing in again with the token"
                );
                entry.set_error(&reason);
                last_error = Some(reason);
            }
            Ended::Retry(error) => {
                tracing::warn!(bot = %name, %error, retry_in = ?pause, "bot connection failed");
                entry.set_error(&error);
                last_error = Some(error);
            }
            Ended::Wait { reason, wait } => {
                let until = Timestamp::now().saturating_add(wait);
                tracing::warn!(
                    bot = %name, %reason, wait_s = wait.as_secs(), until = %until,
                    "Telegram asked to wait before signing in again; waiting it out"
                );
                let reason = format!("{reason}: signing in again at {until}");
                entry.set_error(&reason);
                // The state says so while waiting, not only at the next try.
                entry.set_state(BotState::SigningIn {
                    attempt: pauses.attempt(),
                    last_error: Some(reason.clone()),
                });
                last_error = Some(reason);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One connection: sign in, then send and receive until it ends. `ready`
/// is set once it got that far.
async fn connect_and_work(
    shared: &Shared,
    spec: &BotSpec,
    entry: &BotEntry,
    (cancel, hurry): (&CancellationToken, &CancellationToken),
    tracker: &TaskTracker,
    ready: &mut bool,
) -> Ended {
    let opened = tokio::select! {
        opened = shared.sessions.open(&spec.name, spec.lease.as_ref()) => opened,
        () = cancel.cancelled() => return Ended::Cancelled,
    };
    let session = match opened {
        Ok(session) => Arc::new(session),
        Err(error) => return session_failed(&shared.sessions, &spec.name, &error),
    };
    if let Some(addr) = spec.dc_addr.or(shared.dc_addr)
        && let Err(error) = session.point_home_at(addr).await
    {
        return session_failed(&shared.sessions, &spec.name, &error);
    }
    let telegram = Arc::new(Telegram::start_with(
        Arc::clone(&session),
        shared.api_id,
        shared.liveness,
    ));
    telegram.report_to(entry.states().clone(), spec.name.as_str());
    // `work` ends by itself when `cancel` is: it stops intake and lets
    // what is in flight finish first.
    // Hurried (the lease lost), what `work` waits on (a store out of
    // reach) is given up, so that the connection closes now.
    let ended = tokio::select! {
        ended = work(
            shared,
            spec,
            entry,
            &telegram,
            session,
            (cancel, hurry),
            tracker,
            ready,
        ) => ended,
        () = hurry.cancelled() => Ended::Cancelled,
    };
    telegram.shutdown().await;
    ended
}

/// A session that cannot be opened halts the bot on a file of its own (a
/// person must look), and is retried on the shared store (which comes back).
fn session_failed(sessions: &Sessions, name: &BotName, error: &SessionError) -> Ended {
    let reason = format!("session of {name}: {error}");
    // Fenced: the lease moved on; the next lease tick stops the bot.
    if sessions.is_shared() && (error.is_storage() || matches!(error, SessionError::Fenced { .. }))
    {
        Ended::Retry(reason)
    } else {
        Ended::Halted(reason)
    }
}

/// What the runner's death is reported as.
const RUNNER_STOPPED: &str =
    "grammers' connection runner stopped (it panicked); rebuilding the client";

#[allow(clippy::too_many_arguments)]
async fn work(
    shared: &Shared,
    spec: &BotSpec,
    entry: &BotEntry,
    telegram: &Arc<Telegram>,
    session: Arc<SessionStore>,
    (cancel, hurry): (&CancellationToken, &CancellationToken),
    tracker: &TaskTracker,
    ready: &mut bool,
) -> Ended {
    let credentials = Credentials {
        api_id: shared.api_id,
        api_hash: shared.api_hash.expose().to_owned(),
        bot_token: spec.token.expose().to_owned(),
    };
    let signed_in = tokio::select! {
        signed_in = telegram.sign_in(&credentials) => signed_in,
        () = cancel.cancelled() => return Ended::Cancelled,
    };
    let me = match signed_in {
        Ok(me) => me,
        Err(error) => return sign_in_failed(error, &spec.name),
    };
    entry.set_signed_in(me.id, me.username.clone());
    let updates = tokio::select! {
        updates = telegram.updates_with_live_clicks() => updates,
        () = cancel.cancelled() => return Ended::Cancelled,
    };
    let (stream, live_clicks) = match updates {
        Some(Ok(taken)) => taken,
        Some(Err(error)) => return Ended::Retry(format!("cannot receive updates: {error}")),
        None => return Ended::Retry("the update stream was already taken".into()),
    };
    let bot = spec.name.as_str();
    let events = shared.events.scoped(Some(bot));
    // This connection's tasks stop with it (or with the bot).
    let connection = cancel.child_token();
    let _stop_tasks = connection.clone().drop_guard();
    let callbacks = CallbackAnswerer::for_bot(
        telegram.client().clone(),
        shared.queue.clone(),
        shared.callback_deadline,
        bot,
        connection.clone(),
    );
    let webhook = match Webhook::from_config(&spec.webhook, events.clone(), shared.queue.clone()) {
        Ok(webhook) => webhook,
        Err(error) => return Ended::Halted(format!("webhook: {error}")),
    };
    let limits = match Limits::new(Rates::from(&spec.limits)) {
        Ok(limits) => limits,
        Err(error) => return Ended::Halted(error.to_string()),
    };
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let (chat_actions, showing) = crate::chat_action::ChatActions::new(
        Arc::clone(telegram),
        &shared.queue,
        spec.name.as_str(),
        stopping,
    );
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
    // The inbound pipeline stops with the connection and flushes what it
    // holds; `abandon` ends it if that takes longer than the drain time.
    let abandon = CancellationToken::new();
    let (inbound_failed, mut failure) = tokio::sync::oneshot::channel();
    let inbound_task = {
        let inbound = Inbound {
            bot_id: me.id,
            events,
            queue: shared.queue.clone(),
            session,
            callbacks: callbacks.clone(),
        };
        let stop = connection.clone();
        let clicks = inbound.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = inbound::answer_live_clicks(live_clicks, clicks) => {}
                () = stop.cancelled() => {}
            }
        });
        let (stop, abandon) = (connection.clone(), abandon.clone());
        tracker.spawn(async move {
            tokio::select! {
                ended = inbound::run(stream, inbound, stop) => {
                    let ended = match ended {
                        Ok(()) => return,
                        Err(InboundError::SignedOut(name)) => Ended::SignedOut(format!(
                            "Telegram refused the session: {name}"
                        )),
                        Err(error) => Ended::Retry(error.to_string()),
                    };
                    let _ = inbound_failed.send(ended);
                }
                () = abandon.cancelled() => {}
            }
        })
    };
    tracing::info!(
        bot = %spec.name,
        bot_id = me.id,
        username = me.username.as_deref().unwrap_or(""),
        "ready: connected to Telegram and signed in"
    );
    *ready = true;
    telegram.watch_sign_out();
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
    .with_liveness(telegram.alive())
    .abandoned_with(hurry.child_token());
    // The sender always runs to its end: told to stop (the connection's
    // token), it claims nothing more and lets in-flight sends finish.
    let sending = sender.run(connection.clone());
    tokio::pin!(sending);
    let mut cause = None;
    let mut inbound_ended = false;
    let mut stopping_since = None;
    let sent = loop {
        tokio::select! {
            sent = &mut sending => break sent,
            failed = &mut failure, if !inbound_ended => {
                inbound_ended = true;
                // No message: the pipeline ended because it was told to.
                if let Ok(ended) = failed
                    && cause.is_none()
                {
                    cause = Some(ended);
                    connection.cancel();
                }
            }
            error = telegram.signed_out(), if cause.is_none() => {
                cause = Some(Ended::SignedOut(format!("Telegram refused the session: {error}")));
                connection.cancel();
            }
            () = telegram.runner_stopped(), if cause.is_none() => {
                cause = Some(Ended::Retry(RUNNER_STOPPED.into()));
                connection.cancel();
            }
            () = connection.cancelled(), if stopping_since.is_none() => {
                stopping_since = Some(tokio::time::Instant::now());
                let pending = callbacks.pending();
                if pending > 0 {
                    tracing::info!(
                        bot = %spec.name, clicks = pending,
                        "answering the clicks still pending at once"
                    );
                }
            }
        }
    };
    connection.cancel();
    // Clicks still waiting were answered when the connection closed; the
    // last answers and the inbound flush get what is left of the drain time.
    let deadline =
        stopping_since.unwrap_or_else(tokio::time::Instant::now) + shared.sender.drain_timeout;
    let drained = async {
        callbacks.answered_all().await;
        let _ = inbound_task.await;
    };
    let drained = tokio::select! {
        drained = tokio::time::timeout_at(deadline, drained) => drained.is_ok(),
        () = hurry.cancelled() => false,
    };
    if !drained {
        tracing::warn!(
            bot = %spec.name,
            "clicks or inbound events were not done within the drain time; left to the next start"
        );
        abandon.cancel();
    }
    if let Some(cause) = cause {
        return cause;
    }
    match sent {
        Ok(Stopped::Told) => Ended::Cancelled,
        // A 401 (or no usable home DC): sign in again; a refused token
        // halts the bot there.
        Ok(Stopped::Halted(reason)) => Ended::SignedOut(reason),
        Err(error) => Ended::Retry(format!("the job store failed: {error}")),
    }
}

/// What a failed sign-in means for the bot.
fn sign_in_failed(error: TelegramError, bot: &BotName) -> Ended {
    match error {
        TelegramError::BadToken(name) => Ended::Refused(format!(
            "Telegram refused the bot token ({name}): it was revoked or is wrong; \
             put the bot's current token in bots.{bot}.bot_token (or telegram.bot_token) and reload"
        )),
        error @ TelegramError::BadApp(_) => Ended::Refused(error.to_string()),
        TelegramError::Invocation(invocation) => match judge(&invocation) {
            Verdict::Transient { reason } => {
                Ended::Retry(format!("cannot reach Telegram: {reason}"))
            }
            Verdict::FloodWait { wait, name } => Ended::Wait {
                reason: format!("{name}_{} at sign-in", wait.as_secs()),
                wait,
            },
            Verdict::Permanent { name, .. } => Ended::Refused(format!("sign-in refused: {name}")),
            Verdict::Halt { reason } => Ended::Refused(format!("sign-in refused: {reason}")),
            Verdict::AlreadySent => Ended::Retry("sign-in: unexpected answer".into()),
        },
        TelegramError::NotABot => Ended::Halted(TelegramError::NotABot.to_string()),
        other => Ended::Retry(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use grammers_mtsender::{InvocationError, RpcError};
    use grammers_tl_types as tl;

    use super::*;

    fn rpc(code: i32, message: &str) -> TelegramError {
        TelegramError::Invocation(InvocationError::Rpc(RpcError::from(tl::types::RpcError {
            error_code: code,
            error_message: message.to_owned(),
        })))
    }

    fn judged(error: TelegramError) -> Ended {
        sign_in_failed(error, &BotName::new("shop").unwrap())
    }

    #[test]
    fn pauses_grow_while_connections_fail_and_a_first_sign_out_is_redone_at_once() {
        let mut pauses = Pauses::default();
        let retry = || Ended::Retry("gone".into());
        assert_eq!(pauses.attempt(), 1);
        assert_eq!(
            pauses.after(&retry(), false, 0.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            pauses.after(&retry(), false, 0.0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(pauses.attempt(), 3);
        // A connection that got ready ends the row.
        assert_eq!(
            pauses.after(&retry(), true, 0.0),
            Some(Duration::from_millis(100))
        );
        let signed_out = || Ended::SignedOut("AUTH_KEY_UNREGISTERED".into());
        assert_eq!(pauses.after(&signed_out(), true, 0.0), Some(Duration::ZERO));
        // Signed out again right after: no spinning.
        assert_eq!(
            pauses.after(&signed_out(), true, 0.0),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            pauses.after(&signed_out(), true, 0.0),
            Some(Duration::from_millis(400))
        );
        let refused = || Ended::Refused("ACCESS_TOKEN_INVALID".into());
        // Refused sign-ins: 1 s, doubling (half fixed, half jitter).
        assert_eq!(
            pauses.after(&refused(), false, 0.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            pauses.after(&refused(), false, 1.0),
            Some(Duration::from_secs(4))
        );
        for _ in 0..10 {
            pauses.after(&refused(), false, 1.0);
        }
        assert_eq!(pauses.after(&refused(), false, 1.0), Some(MAX_RETRY));
        let wait = Ended::Wait {
            reason: "FLOOD_WAIT_7 at sign-in".into(),
            wait: Duration::from_secs(7),
        };
        assert_eq!(
            pauses.after(&wait, false, 0.5),
            Some(Duration::from_secs(7))
        );
        assert_eq!(pauses.after(&Ended::Cancelled, true, 0.0), None);
        assert_eq!(pauses.after(&Ended::Halted("x".into()), false, 0.0), None);
    }

    #[test]
    fn a_flood_wait_at_sign_in_is_waited_out_not_a_halt() {
        match judged(rpc(420, "FLOOD_WAIT_42")) {
            Ended::Wait { reason, wait } => {
                assert_eq!(wait, Duration::from_secs(42));
                assert_eq!(reason, "FLOOD_WAIT_42 at sign-in");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_credentials_halt_with_the_key_to_fix_and_are_retried() {
        match judged(TelegramError::BadToken("ACCESS_TOKEN_INVALID".into())) {
            Ended::Refused(reason) => {
                assert!(reason.contains("ACCESS_TOKEN_INVALID"), "{reason}");
                assert!(reason.contains("bots.shop.bot_token"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match judged(TelegramError::BadApp("API_ID_INVALID".into())) {
            Ended::Refused(reason) => {
                assert!(reason.contains("telegram.api_id"), "{reason}");
                assert!(!reason.contains("bot_token"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lost_connection_at_sign_in_is_retried_and_a_user_account_halts() {
        assert!(matches!(
            judged(TelegramError::Invocation(InvocationError::Dropped("gone"))),
            Ended::Retry(_)
        ));
        assert!(matches!(judged(rpc(500, "INTERNAL")), Ended::Retry(_)));
        assert!(matches!(judged(TelegramError::NotABot), Ended::Halted(_)));
    }
}
