//! The sandbox: a local Telegram data centre on loopback.
//!
//! Nothing here can reach Telegram, and a mock behind a trait would test
//! nothing of the MTProto path. So telegate carries its own DC: an MTProto 2.0
//! server that the unmodified grammers client connects to, with pre-provisioned
//! auth keys (grammers only does DH against Telegram's own RSA keys).
//!
//! Two halves, kept apart so that each can be read on its own:
//! - `dc`: the MTProto server — transport, encryption, containers, acks,
//!   pings, `rpc_result`/`rpc_error` framing, pushing updates, and transport
//!   faults (dropped connections, latency). It knows nothing of Telegram's
//!   semantics: it hands every RPC to a [`Service`].
//! - `telegram`: the [`Service`] — users, chats, messages, pts/qts/seq, flood
//!   limits, callback queries — plus the control API for simulated users.

use std::future::Future;
use std::pin::Pin;

/// Who is calling: the auth key the request was encrypted with. The
/// `telegram` half maps keys to accounts (the bot, or a user client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    pub auth_key_id: i64,
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
