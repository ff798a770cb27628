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
pub mod web;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
/// once it knows its key, and drains the [`Pushes`] into encrypted messages.
///
/// A connection that falls too far behind (more than the backlog limit of
/// pushes it has not taken yet) gets one `updatesTooLong` instead of the
/// rest, as Telegram does, and nothing more until its client fetches a
/// difference ([`Outbox::caught_up`]).
pub struct Outbox {
    connections: Mutex<HashMap<i64, Vec<Line>>>,
    backlog_limit: AtomicUsize,
    too_long_pushed: AtomicU64,
}

/// One registered connection, as the outbox sees it.
struct Line {
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    too_long: bool,
}

/// The pushes waiting for one connection.
pub struct Pushes {
    rx: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

impl Pushes {
    /// The next push; `None` once the outbox dropped the connection.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let next = self.rx.recv().await;
        if next.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        next
    }

    pub fn try_recv(&mut self) -> Result<Vec<u8>, mpsc::error::TryRecvError> {
        let next = self.rx.try_recv();
        if next.is_ok() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        next
    }
}

/// How many unread pushes a connection may have by default. It is above
/// [`PUSH_QUEUE_LEN`], so by default a client that stops reading loses its
/// connection; a lower limit (the `push_backlog` fault) sends
/// `updatesTooLong` first.
pub const DEFAULT_PUSH_BACKLOG: usize = 10_000;

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            connections: Mutex::default(),
            backlog_limit: AtomicUsize::new(DEFAULT_PUSH_BACKLOG),
            too_long_pushed: AtomicU64::new(0),
        }
    }
}

impl Outbox {
    /// Registers a connection that uses `auth_key_id`; pushed `Updates`
    /// (serialized, boxed) arrive on the receiver until it is dropped. The
    /// receiver ends (yields `None`) if its queue overflowed.
    pub fn register(&self, auth_key_id: i64) -> Pushes {
        let (tx, rx) = mpsc::channel(PUSH_QUEUE_LEN);
        let queued = Arc::new(AtomicUsize::new(0));
        self.lock().entry(auth_key_id).or_default().push(Line {
            tx,
            queued: Arc::clone(&queued),
            too_long: false,
        });
        Pushes { rx, queued }
    }

    /// Pushes a serialized `Updates` object to every live connection of
    /// `auth_key_id`; returns how many took it (0: the client is offline, or
    /// was told `updatesTooLong`, and will catch up with
    /// `updates.getDifference`). A connection whose queue is full is let go.
    pub fn push(&self, auth_key_id: i64, updates: &[u8]) -> usize {
        let limit = self.backlog_limit();
        let mut connections = self.lock();
        let Some(lines) = connections.get_mut(&auth_key_id) else {
            return 0;
        };
        let mut taken = 0;
        lines.retain_mut(|line| {
            if line.too_long {
                return !line.tx.is_closed();
            }
            let over = line.queued.load(Ordering::Relaxed) >= limit;
            let payload = if over {
                too_long_bytes()
            } else {
                updates.to_vec()
            };
            if line.tx.try_send(payload).is_err() {
                return false;
            }
            line.queued.fetch_add(1, Ordering::Relaxed);
            if over {
                line.too_long = true;
                self.too_long_pushed.fetch_add(1, Ordering::Relaxed);
            } else {
                taken += 1;
            }
            true
        });
        taken
    }

    /// The client of `auth_key_id` fetched a difference: pushes resume.
    pub fn caught_up(&self, auth_key_id: i64) {
        if let Some(lines) = self.lock().get_mut(&auth_key_id) {
            for line in lines {
                line.too_long = false;
            }
        }
    }

    pub fn set_backlog_limit(&self, limit: usize) {
        self.backlog_limit.store(limit.max(1), Ordering::Relaxed);
    }

    pub fn backlog_limit(&self) -> usize {
        self.backlog_limit.load(Ordering::Relaxed)
    }

    /// How many `updatesTooLong` were pushed.
    pub fn too_long_pushed(&self) -> u64 {
        self.too_long_pushed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Line>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
/// `updatesTooLong#e317af7e`, boxed.
fn too_long_bytes() -> Vec<u8> {
    0xe317_af7e_u32.to_le_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_falls_behind_gets_one_updates_too_long_until_it_catches_up() {
        let outbox = Outbox::default();
        outbox.set_backlog_limit(3);
        let mut slow = outbox.register(7);
        for n in 0..3u8 {
            assert_eq!(outbox.push(7, &[n]), 1);
        }
        assert_eq!(outbox.push(7, &[3]), 0, "the fourth is over the limit");
        assert_eq!(outbox.push(7, &[4]), 0, "and nothing more is queued");
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| slow.try_recv().ok()).collect();
        assert_eq!(got, [vec![0], vec![1], vec![2], too_long_bytes()]);
        assert_eq!(outbox.too_long_pushed(), 1);
        // Still skipped while its client has not fetched the difference.
        assert_eq!(outbox.push(7, &[5]), 0);
        outbox.caught_up(7);
        assert_eq!(outbox.push(7, &[6]), 1);
        assert_eq!(slow.try_recv().ok(), Some(vec![6]));
        drop(slow);
        assert_eq!(outbox.push(7, &[7]), 0, "a closed connection is dropped");
    }
}
