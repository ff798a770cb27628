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
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use grammers_client::Client;

use grammers_client::client::UpdateStream;
use grammers_mtsender::{
    ConnectionParams, InvocationError, NoRetries, SenderPool, UpdatesConfiguration,
};
use grammers_session::Session;
use grammers_session::types::{PeerId, PeerInfo};
use grammers_session::updates::UpdatesLike;
use grammers_tl_types as tl;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bot_state::{BotState, BotStates};
use crate::session::{SessionError, SessionStore};

/// Updates buffered between the network and the inbound pipeline before
/// grammers starts dropping them (a gap it then refetches).
const UPDATES_BUFFER: usize = 10_000;

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
    #[error("cannot reach Telegram: {0}")]
    Invocation(#[from] InvocationError),
    #[error("the signed-in account is not a bot")]
    NotABot,
}

/// A running grammers client for one bot session. Shared as
/// `Arc<Telegram>` by the sender and the inbound side: every method takes
/// `&self`.
pub struct Telegram {
    client: Client,
    session: Arc<SessionStore>,
    runner: Mutex<Option<JoinHandle<()>>>,
    updates: Mutex<Option<mpsc::Receiver<UpdatesLike>>>,
    /// Where this connection reports its state, and under which bot name.
    reporting: OnceLock<(BotStates, String)>,
}

impl Telegram {
    /// Starts the connection machinery over `session`. Nothing is sent
    /// until the first request (grammers connects lazily).
    pub fn start(session: Arc<SessionStore>, api_id: i32) -> Self {
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
        let client = Client::new(pool.handle);
        let runner = tokio::spawn(pool.runner.run());
        Telegram {
            client,
            session,
            runner: Mutex::new(Some(runner)),
            updates: Mutex::new(Some(pool.updates)),
            reporting: OnceLock::new(),
        }
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
        if self.session.is_signed_in()? && self.client.is_authorized().await? {
            return self.me().await;
        }
        self.client
            .bot_sign_in(&credentials.bot_token, &credentials.api_hash)
            .await
            .map_err(|e| match e {
                InvocationError::Rpc(rpc) if rpc.code == 400 || rpc.code == 401 => {
                    TelegramError::BadToken(rpc.name)
                }
                other => TelegramError::Invocation(other),
            })?;
        self.me().await
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
        let outcome = self.client.invoke(request).await;
        crate::metrics::rpc(tl::name_for_id(R::CONSTRUCTOR_ID), started.elapsed());
        if let Some((states, name)) = self.reporting.get() {
            states.observe(name, &outcome);
        }
        outcome
    }

    /// The access hash cached for a user, or 0 (which bots may use).
    pub async fn user_access_hash(&self, user_id: i64) -> i64 {
        let Some(peer) = PeerId::user(user_id) else {
            return 0;
        };
        match self.session.peer(peer).await {
            Ok(Some(info @ PeerInfo::User { .. })) => info.auth().map_or(0, |a| a.hash()),
            _ => 0,
        }
    }

    /// The update stream, catching up on what was missed while offline.
    /// Can be taken once.
    pub async fn updates(&self) -> Option<Result<UpdateStream, TelegramError>> {
        let rx = self
            .updates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        let config = UpdatesConfiguration { catch_up: true };
        Some(
            self.client
                .stream_updates(rx, config)
                .await
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

    #[test]
    fn tl_name_reads_the_constructor_id() {
        let update: tl::enums::Update = tl::types::UpdateConfig {}.into();
        assert_eq!(tl_name(&update), "updateConfig");
    }
}
