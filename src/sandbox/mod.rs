//! The sandbox: a local Telegram data centre on loopback.
//!
//! Nothing here can reach Telegram, and a mock behind a trait would test
//! nothing of the MTProto path. So telegate carries its own DC: an MTProto 2.0
//! server (DCs 1–5 on their own ports) that the unmodified grammers client,
//! or any other MTProto client, connects to, with pre-provisioned auth keys
//! (grammers only does DH against Telegram's own RSA keys).
//!
//! Two halves, kept apart so that each can be read on its own:
//! - `dc`: the MTProto server — every transport, encryption, containers,
//!   acks, service messages, `rpc_result`/`rpc_error` framing, pushing
//!   updates, bounds on what a client can make it hold, and the [`Faults`]
//!   (`faults`). It knows nothing of Telegram's semantics: it hands every
//!   RPC to a [`Service`].
//! - `telegram`: the [`Service`] — users, chats, messages, pts/qts/seq, flood
//!   limits, callback queries — plus the control API for simulated users.

pub mod control;
pub mod dc;
mod faults;
pub mod server;
pub mod state_file;
pub mod telegram;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::mpsc;

pub use faults::{Faults, InjectedError, NatMapping};

/// Who is calling: the auth key the request was encrypted with, and the DC
/// it arrived at. The `telegram` half maps keys to accounts (the bot, or a
/// user client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    pub auth_key_id: i64,
    pub dc_id: i32,
}

/// The answer to one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcOutcome {
    /// The serialized (boxed) result object, sent back inside `rpc_result`.
    Ok(Vec<u8>),
    /// Sent back as `rpc_error` (e.g. `420 FLOOD_WAIT_3`, `400 PEER_ID_INVALID`).
    Err { code: i32, message: String },
}

pub type RpcFuture = Pin<Box<dyn Future<Output = RpcOutcome> + Send + 'static>>;

/// The Telegram side of the sandbox, as the `dc` half sees it.
pub trait Service: Send + Sync + 'static {
    /// Handles one RPC. `request` is the serialized function with
    /// `invokeWithLayer`, `initConnection` and `invokeWithoutUpdates` (and
    /// `gzip_packed`) already peeled off. The future may wait (a user's
    /// `getBotCallbackAnswer` waits for the bot); other requests on the same
    /// connection are not held up by it.
    fn call(&self, caller: Caller, request: Vec<u8>) -> RpcFuture;
}

/// An MTProto auth key as stored by both ends (2048 bits).
pub type AuthKeyBytes = [u8; 256];

/// The key lookup the `dc` half needs to decrypt a connection's first
/// message; the `telegram` half provisions keys (the bot's, each user
/// client's) and answers it. Auth keys are per DC, as in Telegram: a key
/// of DC 2 is unknown (`-404`) at DC 4.
pub trait KeyRing: Send + Sync + 'static {
    fn auth_key(&self, dc_id: i32, auth_key_id: i64) -> Option<AuthKeyBytes>;
}

/// Updates waiting for one connection's writer; a client that lets more
/// pile up (it does not read) loses the connection and catches up with
/// `updates.getDifference` after reconnecting, as with Telegram.
pub const PUSH_QUEUE_LEN: usize = 4096;

/// Live connections by auth key, so the `telegram` half can push updates
/// without knowing about sockets. The `dc` half registers each connection
/// once it knows its key, and drains the receiver into encrypted messages.
#[derive(Default)]
pub struct Outbox {
    connections: Mutex<HashMap<i64, Vec<mpsc::Sender<Vec<u8>>>>>,
}

impl Outbox {
    /// Registers a connection that uses `auth_key_id`; pushed `Updates`
    /// (serialized, boxed) arrive on the receiver until it is dropped. The
    /// receiver ends (yields `None`) if its queue overflowed.
    pub fn register(&self, auth_key_id: i64) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(PUSH_QUEUE_LEN);
        self.lock().entry(auth_key_id).or_default().push(tx);
        rx
    }

    /// Pushes a serialized `Updates` object to every live connection of
    /// `auth_key_id`; returns how many took it (0: the client is offline and
    /// will catch up with `updates.getDifference`). A connection whose
    /// queue is full is let go.
    pub fn push(&self, auth_key_id: i64, updates: &[u8]) -> usize {
        let mut connections = self.lock();
        let Some(senders) = connections.get_mut(&auth_key_id) else {
            return 0;
        };
        senders.retain(|tx| tx.try_send(updates.to_vec()).is_ok());
        senders.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<mpsc::Sender<Vec<u8>>>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
