//! The one MTProto connection telegate holds: grammers, set up for a bot.
//!
//! grammers' defaults suit an interactive app, not a worker: it sleeps
//! through flood waits by itself, drops updates past a small buffer, and
//! picks its own `random_id` for sends. This module builds the client the
//! way telegate needs it — no automatic retries (the sender owns flood waits
//! and backoff), a large update buffer, the session in telegate's own file —
//! and signs the bot in once, reusing the session afterwards. The bot token
//! and api hash go to Telegram and nowhere else: no log line or error shows
//! them.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use grammers_client::Client;

use grammers_client::client::UpdateStream;
use grammers_mtsender::{
    ConnectionParams, InvocationError, NoRetries, SenderPool, SenderPoolHandle,
    UpdatesConfiguration,
};
use grammers_session::Session;
use grammers_session::types::{PeerId, PeerInfo};
use grammers_session::updates::UpdatesLike;
use grammers_tl_types as tl;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bot_state::{BotState, BotStates};
use crate::chat::{ChatId, Peer};
use crate::session::{SessionError, SessionStore};

/// Updates buffered between the network and the inbound pipeline before
/// grammers starts dropping them (a gap it then refetches).
const UPDATES_BUFFER: usize = 10_000;
/// Clicks copied off the wire and not yet taken, at most (beyond, a click
/// waits for the update stream).
const LIVE_CLICKS_BUFFER: usize = 1024;

/// The clicks seen on the wire, as they arrive: ahead of the update stream,
/// which holds live updates back while grammers fetches differences.
pub type LiveClicks = mpsc::Receiver<tl::types::UpdateBotCallbackQuery>;

/// What is needed to sign a bot in. Debug output hides the secrets.
#[derive(Clone)]
pub struct Credentials {
    pub api_id: i32,
    pub api_hash: String,
    pub bot_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_id", &self.api_id)
            .field("api_hash", &"[redacted]")
            .field("bot_token", &"[redacted]")
            .finish()
    }
}

/// The signed-in bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bot {
    pub id: i64,
    pub username: Option<String>,
}

/// Why telegate could not get a working session.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("session: {0}")]
    Session(#[from] SessionError),
    #[error("Telegram refused the bot token ({0}); check telegram.bot_token")]
    BadToken(String),
    #[error(
        "Telegram refused the app's credentials ({0}); check telegram.api_id and \
         telegram.api_hash (the bot token was not judged)"
    )]
    BadApp(String),
    #[error("cannot reach Telegram: {0}")]
    Invocation(#[from] InvocationError),
    #[error("the signed-in account is not a bot")]
    NotABot,
}

/// How telegate tells a live connection from a dead one.
///
/// grammers puts no deadline on a call and does not check that pings are
/// answered, so after a NAT or network change silently kills the TCP
/// connection every call waits for the kernel to notice (minutes). So every
/// call has `call_timeout` (a timed-out call is transient: the stored
/// `random_id` makes its retry safe), and a watchdog pings the home DC every
/// `ping_interval`: no pong within `ping_timeout` drops the connection, and
/// the next call (or ping) opens a fresh one. A session Telegram signed out
/// gets no more updates, so an idle bot would not notice: every
/// `auth_check_interval` the watchdog also asks `updates.getState`, and a
/// 401 says the session is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub call_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub auth_check_interval: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            call_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(3),
            ping_timeout: Duration::from_secs(3),
            auth_check_interval: Duration::from_secs(60),
        }
    }
}

/// Whether Telegram signed this connection's session out: a 401 answer to
/// a call made once [`Telegram::watch_sign_out`] armed it (a 401 during
/// sign-in is sign-in's business). Clones share it.
#[derive(Clone, Default)]
struct SignOut {
    armed: Arc<AtomicBool>,
    reason: Arc<OnceLock<String>>,
    seen: CancellationToken,
}

impl SignOut {
    fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    fn observe<T>(&self, outcome: &Result<T, InvocationError>) {
        if let Err(InvocationError::Rpc(rpc)) = outcome
            && rpc.code == 401
            && self.is_armed()
        {
            let _ = self.reason.set(rpc.name.clone());
            self.seen.cancel();
        }
    }
}

/// What a timed-out call fails with (judged transient, like a drop).
pub const CALL_TIMED_OUT: &str = "no answer within the call timeout";

/// A running grammers client for one bot session. Shared as
/// `Arc<Telegram>` by the sender and the inbound side: every method takes
/// `&self`.
pub struct Telegram {
    client: Client,
    session: Arc<SessionStore>,
    runner: Mutex<Option<JoinHandle<()>>>,
    /// The liveness watchdog and (once the update stream is taken) the
    /// click tap in front of it, ended with `stop` at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    /// Cancelled when the runner task ends, however it ends.
    runner_stopped: CancellationToken,
    sign_out: SignOut,
    liveness: Liveness,
    /// Whether the watchdog finds the home connection alive.
    alive: watch::Receiver<bool>,
    updates: Mutex<Option<mpsc::Receiver<UpdatesLike>>>,
    /// Where this connection reports its state, and under which bot name.
    reporting: OnceLock<(BotStates, String)>,
}

impl Telegram {
    /// Starts the connection machinery over `session`. Nothing is sent
    /// until the first request (grammers connects lazily).
    pub fn start(session: Arc<SessionStore>, api_id: i32) -> Self {
        Telegram::start_with(session, api_id, Liveness::default())
    }

    /// [`Telegram::start`] with the connection judged by `liveness`.
    pub fn start_with(session: Arc<SessionStore>, api_id: i32, liveness: Liveness) -> Self {
        let params = ConnectionParams {
            device_model: "telegate".into(),
            system_version: std::env::consts::OS.into(),
            app_version: env!("CARGO_PKG_VERSION").into(),
            retry_policy: Box::new(NoRetries),
            updates_channel_capacity: NonZeroUsize::new(UPDATES_BUFFER)
                .unwrap_or(NonZeroUsize::MIN),
            ..ConnectionParams::default()
        };
        let pool = SenderPool::with_configuration(Arc::clone(&session), api_id, params);
        let handle = pool.handle.thin.clone();
        let client = Client::new(pool.handle);
        let runner_stopped = CancellationToken::new();
        let ended = runner_stopped.clone().drop_guard();
        let runner = tokio::spawn(async move {
            // Dropped when the runner returns or unwinds from a panic.
            let _ended = ended;
            pool.runner.run().await;
        });
        let stop = CancellationToken::new();
        let sign_out = SignOut::default();
        let (alive_tx, alive) = watch::channel(true);
        let watchdog = tokio::spawn(watch_liveness(
            handle,
            Arc::clone(&session),
            liveness,
            sign_out.clone(),
            alive_tx,
            stop.clone(),
        ));
        Telegram {
            client,
            session,
            runner: Mutex::new(Some(runner)),
            tasks: Mutex::new(vec![watchdog]),
            stop,
            runner_stopped,
            sign_out,
            liveness,
            alive,
            updates: Mutex::new(Some(pool.updates)),
            reporting: OnceLock::new(),
        }
    }

    /// Whether the home connection is alive, as the liveness watchdog finds
    /// it: false from an unanswered ping until a ping is answered again.
    pub fn alive(&self) -> watch::Receiver<bool> {
        self.alive.clone()
    }

    /// Reports this connection's state to `states` as bot `name` from now
    /// on (the first call wins).
    pub fn report_to(&self, states: BotStates, name: &str) {
        let _ = self.reporting.set((states, name.to_owned()));
    }

    /// Sets the reported state, if reporting.
    pub fn set_state(&self, state: BotState) {
        if let Some((states, name)) = self.reporting.get() {
            states.set(name, state);
        }
    }

    /// Makes sure the session is signed in as the bot, signing in with the
    /// token only when it is not (the first start).
    pub async fn sign_in(&self, credentials: &Credentials) -> Result<Bot, TelegramError> {
        if self.session.is_signed_in().await? && self.client.is_authorized().await? {
            return self.me().await;
        }
        self.client
            .bot_sign_in(&credentials.bot_token, &credentials.api_hash)
            .await
            .map_err(sign_in_refusal)?;
        self.me().await
    }

    /// Resolves once grammers' connection runner has ended: it quit (at
    /// [`Telegram::shutdown`]) or it panicked. After that every call fails
    /// with `Dropped`, so a client whose runner died must be rebuilt.
    pub(crate) async fn runner_stopped(&self) {
        self.runner_stopped.cancelled().await;
    }

    /// From now on (the bot signed in), a 401 on any call of this
    /// connection, or on the watchdog's authorization check, means Telegram
    /// signed the session out: [`Telegram::signed_out`] resolves.
    pub(crate) fn watch_sign_out(&self) {
        self.sign_out.armed.store(true, Ordering::Relaxed);
    }

    /// Resolves with Telegram's error once the session was signed out
    /// (after [`Telegram::watch_sign_out`]).
    pub(crate) async fn signed_out(&self) -> String {
        self.sign_out.seen.cancelled().await;
        self.sign_out.reason.get().cloned().unwrap_or_default()
    }

    /// The bot this session is signed in as.
    pub async fn me(&self) -> Result<Bot, TelegramError> {
        let me = self.client.get_me().await?;
        if !me.is_bot() {
            return Err(TelegramError::NotABot);
        }
        Ok(Bot {
            id: me.id().bare_id_unchecked(),
            username: me.username().map(str::to_owned),
        })
    }

    /// Sends one raw request (telegate picks `random_id`s itself), timed
    /// in the `rpc_duration_seconds` metric.
    pub async fn invoke<R: tl::RemoteCall + tl::Identifiable>(
        &self,
        request: &R,
    ) -> Result<R::Return, InvocationError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.liveness.call_timeout, self.client.invoke(request))
            .await
            .unwrap_or(Err(InvocationError::Dropped(CALL_TIMED_OUT)));
        crate::metrics::rpc(tl::name_for_id(R::CONSTRUCTOR_ID), started.elapsed());
        if let Some((states, name)) = self.reporting.get() {
            states.observe(name, &outcome);
        }
        self.sign_out.observe(&outcome);
        outcome
    }

    /// The access hash cached for the peer of `chat`, or 0 when none is
    /// known (bots may address users so; a basic group needs none). A
    /// supergroup's or channel's hash comes with the first update that
    /// shows the bot the chat (grammers caches the peers of every update),
    /// and Telegram refuses a wrong one (`CHANNEL_INVALID`).
    async fn access_hash(&self, chat: ChatId) -> i64 {
        let peer = match chat.peer() {
            Peer::User(id) => PeerId::user(id),
            Peer::Channel(id) => PeerId::channel(id),
            Peer::Group(_) => return 0,
        };
        let Some(peer) = peer else {
            return 0;
        };
        match self.session.peer(peer).await {
            Ok(Some(info @ (PeerInfo::User { .. } | PeerInfo::Channel { .. }))) => {
                info.auth().map_or(0, |a| a.hash())
            }
            _ => 0,
        }
    }

    /// The `InputPeer` of `chat`, with its cached access hash.
    pub async fn input_peer(&self, chat: ChatId) -> tl::enums::InputPeer {
        chat.input_peer(self.access_hash(chat).await)
    }

    /// The update stream, catching up on what was missed while offline.
    /// Can be taken once.
    pub async fn updates(&self) -> Option<Result<UpdateStream, TelegramError>> {
        let taken = self.updates_with_live_clicks().await?;
        Some(taken.map(|(stream, _clicks)| stream))
    }

    /// [`Telegram::updates`], and a copy of each click as it arrives.
    ///
    /// grammers reads no live update while it fetches a difference (at
    /// start, one `updates.getChannelDifference` per supergroup the bot is
    /// in, one after another), so a click in the stream may wait longer
    /// than the user's app does. A tap between the network and grammers
    /// copies clicks out first; the stream still gets every update.
    pub async fn updates_with_live_clicks(
        &self,
    ) -> Option<Result<(UpdateStream, LiveClicks), TelegramError>> {
        let from_network = self
            .updates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let (to_stream, rx) = mpsc::channel(UPDATES_BUFFER);
        let (clicks_tx, clicks) = mpsc::channel(LIVE_CLICKS_BUFFER);
        let tap = tokio::spawn(tap_clicks(
            from_network,
            to_stream,
            clicks_tx,
            self.stop.clone(),
        ));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tap);
        let config = UpdatesConfiguration { catch_up: true };
        Some(
            self.client
                .stream_updates(rx, config)
                .await
                .map(|stream| (stream, clicks))
                .map_err(|e| TelegramError::Invocation(InvocationError::Session(e))),
        )
    }

    /// The grammers client, for the high-level calls telegate does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Closes the connection and waits for the I/O task to end (the first
    /// call does; later ones return at once).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
        self.client.disconnect();
        let runner = self
            .runner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(runner) = runner {
            // The runner ends once told to quit; a join error only means it
            // panicked, which there is nothing left to do about.
            let _ = runner.await;
        }
    }
}

/// What a refused `auth.importBotAuthorization` means: the token, or the
/// app's `api_id`/`api_hash` (`API_ID_INVALID`, `API_ID_PUBLISHED_FLOOD`),
/// which is not the token's fault. Anything else (a `FLOOD_WAIT`, a lost
/// connection, a 401 of the key) is left for the caller to judge.
fn sign_in_refusal(error: InvocationError) -> TelegramError {
    match error {
        InvocationError::Rpc(rpc) if rpc.name.starts_with("API_ID_") => {
            TelegramError::BadApp(rpc.name)
        }
        InvocationError::Rpc(rpc)
            if rpc.code == 400 && (rpc.name.contains("TOKEN") || rpc.name.contains("BOT")) =>
        {
            TelegramError::BadToken(rpc.name)
        }
        other => TelegramError::Invocation(other),
    }
}

/// Passes every update from the network on to the update stream, copying
/// the clicks among them to `clicks` first, until `stop` or either side
/// is gone. Neither send waits: a full stream buffer drops the update, as
/// grammers does when its own buffer is full (a gap it then fetches; a
/// click in it was copied already), and a full click buffer leaves the
/// click to the stream.
async fn tap_clicks(
    mut from_network: mpsc::Receiver<UpdatesLike>,
    to_stream: mpsc::Sender<UpdatesLike>,
    clicks: mpsc::Sender<tl::types::UpdateBotCallbackQuery>,
    stop: CancellationToken,
) {
    loop {
        let updates = tokio::select! {
            () = stop.cancelled() => return,
            next = from_network.recv() => match next {
                Some(updates) => updates,
                None => return,
            },
        };
        for click in clicks_in(&updates) {
            let _ = clicks.try_send(click);
        }
        match to_stream.try_send(updates) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("update buffer full: an update was dropped (a gap, fetched again)");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// The callback queries among pushed updates.
fn clicks_in(updates: &UpdatesLike) -> Vec<tl::types::UpdateBotCallbackQuery> {
    use tl::enums::{Update, Updates};
    let list: &[Update] = match updates {
        UpdatesLike::Updates(Updates::UpdateShort(short)) => std::slice::from_ref(&short.update),
        UpdatesLike::Updates(Updates::Updates(many)) => &many.updates,
        UpdatesLike::Updates(Updates::Combined(many)) => &many.updates,
        _ => &[],
    };
    list.iter()
        .filter_map(|update| match update {
            Update::BotCallbackQuery(query) => Some(query.clone()),
            _ => None,
        })
        .collect()
}

/// Pings the home DC every `ping_interval` until `stop`. A ping left
/// unanswered for `ping_timeout` marks the connection dead; it is replaced
/// once a probe on a fresh connection of its own gets a pong, so that the
/// next call reconnects. `alive` tells whether the connection answers.
///
/// Why probe first: grammers opens a connection inside its runner loop and
/// waits for `initConnection`'s answer with no deadline, so dropping the
/// connection while the DC still swallows everything would leave the runner
/// stuck in that wait for good, even once the network is back. The old
/// connection is left alone meanwhile: calls on it end at the call timeout.
async fn watch_liveness(
    pool: SenderPoolHandle,
    session: Arc<SessionStore>,
    liveness: Liveness,
    sign_out: SignOut,
    alive: watch::Sender<bool>,
    stop: CancellationToken,
) {
    use grammers_session::Session as _;
    let mut dead = false;
    let mut authorization_checked = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(liveness.ping_interval) => {}
        }
        let Ok(home) = session.home_dc_id() else {
            continue;
        };
        let ping = tl::functions::Ping {
            ping_id: rand::random(),
        };
        let answered = tokio::select! {
            () = stop.cancelled() => return,
            answered = tokio::time::timeout(liveness.ping_timeout, pool.invoke_in_dc(home, &ping)) => answered,
        };
        match answered {
            Ok(Ok(_)) => {
                if dead {
                    tracing::info!(dc = home, "the connection answers again");
                }
                dead = false;
                alive.send_if_modified(|alive| !std::mem::replace(alive, true));
                if sign_out.is_armed()
                    && authorization_checked.elapsed() >= liveness.auth_check_interval
                {
                    authorization_checked = tokio::time::Instant::now();
                    let state = tl::functions::updates::GetState {};
                    let checked = tokio::select! {
                        () = stop.cancelled() => return,
                        checked = tokio::time::timeout(liveness.call_timeout, pool.invoke_in_dc(home, &state)) => checked,
                    };
                    if let Ok(outcome) = checked {
                        sign_out.observe(&outcome);
                    }
                }
            }
            // A refused or dropped ping means grammers already knows the
            // connection is gone and reconnects on the next call.
            Ok(Err(error)) => tracing::debug!(dc = home, %error, "ping failed"),
            Err(_) => {
                if !dead {
                    tracing::warn!(
                        dc = home,
                        timeout_ms = liveness.ping_timeout.as_millis(),
                        "no pong in time: the connection is dead"
                    );
                }
                dead = true;
                alive.send_if_modified(|alive| std::mem::replace(alive, false));
                let fresh = tokio::select! {
                    () = stop.cancelled() => return,
                    fresh = probe(&session, home, liveness.ping_timeout) => fresh,
                };
                if fresh {
                    tracing::info!(
                        dc = home,
                        "a fresh connection answers: replacing the dead one"
                    );
                    pool.disconnect_from_dc(home);
                    // The next call opens a fresh connection, which works.
                    alive.send_if_modified(|alive| !std::mem::replace(alive, true));
                }
            }
        }
    }
}

/// Whether DC `dc` answers a ping on a new connection of its own (with the
/// session's key for it) within `timeout`.
async fn probe(session: &SessionStore, dc: i32, timeout: std::time::Duration) -> bool {
    use grammers_session::Session as _;
    let Ok(Some(option)) = session.dc_option(dc) else {
        return false;
    };
    let Some(key) = option.auth_key else {
        return false;
    };
    let address = std::net::SocketAddr::V4(option.ipv4);
    let attempt = async {
        let mut sender = grammers_mtsender::connect_with_auth(
            grammers_mtproto::transport::Full::new(),
            grammers_mtsender::ServerAddr::Tcp { address },
            key,
        )
        .await
        .ok()?;
        let ping = tl::functions::Ping {
            ping_id: rand::random(),
        };
        sender.invoke(&ping).await.ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(_)))
}

/// The TL constructor name of any boxed object (`messageMediaGeo`, ...), for
/// logs and for events about updates telegate does not model.
pub fn tl_name(object: &impl tl::Serializable) -> &'static str {
    let bytes = object.to_bytes();
    let id = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    tl::name_for_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secrets() {
        let credentials = Credentials {
            api_id: 1,
            api_hash: "0123456789abcdef".into(),
            bot_token: "42:SECRET-token".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("api_id: 1"), "{shown}");
    }

    fn rpc(code: i32, message: &str) -> InvocationError {
        InvocationError::Rpc(grammers_mtsender::RpcError::from(tl::types::RpcError {
            error_code: code,
            error_message: message.to_owned(),
        }))
    }

    #[test]
    fn a_refused_api_id_is_not_a_bad_token() {
        for name in ["API_ID_INVALID", "API_ID_PUBLISHED_FLOOD"] {
            let refused = sign_in_refusal(rpc(400, name));
            assert!(
                matches!(&refused, TelegramError::BadApp(n) if n == name),
                "{refused:?}"
            );
            let message = refused.to_string();
            assert!(message.contains("telegram.api_id"), "{message}");
            assert!(!message.contains("bot_token"), "{message}");
        }
        for name in [
            "ACCESS_TOKEN_INVALID",
            "ACCESS_TOKEN_EXPIRED",
            "BOT_INVALID",
        ] {
            assert!(matches!(
                sign_in_refusal(rpc(400, name)),
                TelegramError::BadToken(n) if n == name
            ));
        }
        for error in [rpc(420, "FLOOD_WAIT_30"), rpc(401, "AUTH_KEY_UNREGISTERED")] {
            assert!(matches!(
                sign_in_refusal(error),
                TelegramError::Invocation(_)
            ));
        }
    }

    #[test]
    fn clicks_are_found_in_every_kind_of_push() {
        let click = |query_id| tl::types::UpdateBotCallbackQuery {
            query_id,
            user_id: 7,
            peer: tl::types::PeerUser { user_id: 7 }.into(),
            msg_id: 3,
            chat_instance: 0,
            data: Some(b"yes".to_vec()),
            game_short_name: None,
        };
        let short = tl::types::UpdateShort {
            update: click(1).into(),
            date: 0,
        };
        let many = tl::types::Updates {
            updates: vec![tl::types::UpdateConfig {}.into(), click(2).into()],
            users: Vec::new(),
            chats: Vec::new(),
            date: 0,
            seq: 0,
        };
        let ids = |updates| {
            clicks_in(&UpdatesLike::Updates(updates))
                .iter()
                .map(|c| c.query_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(short.into()), [1]);
        assert_eq!(ids(many.into()), [2]);
        assert!(clicks_in(&UpdatesLike::ConnectionClosed).is_empty());
    }

    #[test]
    fn tl_name_reads_the_constructor_id() {
        let update: tl::enums::Update = tl::types::UpdateConfig {}.into();
        assert_eq!(tl_name(&update), "updateConfig");
    }
}
