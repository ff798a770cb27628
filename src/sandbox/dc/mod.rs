//! The sandbox's MTProto server: the transport half of the local DC.
//!
//! It speaks exactly what the unmodified grammers client speaks — the "full"
//! TCP transport, MTProto 2.0 encryption with pre-provisioned auth keys,
//! containers, gzip, pings — and knows nothing of Telegram's semantics:
//! every API call goes to a [`Service`], every pushed update comes from the
//! [`Outbox`]. Split by layer: [`transport`] (framing), [`crypto`] (message
//! keys), [`codec`] (MTProto's TL service objects), [`session`] (numbering
//! and sealing what the server sends), [`connection`] (one client).

mod codec;
mod connection;
mod crypto;
mod session;
mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

pub use connection::ConnectionError;
pub use crypto::auth_key_id;

use super::{Faults, KeyRing, Outbox, Service};
use connection::Context;

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running DC. It serves until [`Dc::shutdown`] or until dropped; either
/// closes every connection.
pub struct Dc {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Dc {
    /// Listens on `addr` (`127.0.0.1:0` picks a free port) and serves every
    /// connection with `service`, accepting the auth keys `keys` knows.
    pub async fn bind(
        addr: SocketAddr,
        service: Arc<dyn Service>,
        keys: Arc<dyn KeyRing>,
        outbox: Arc<Outbox>,
        faults: Arc<Faults>,
    ) -> io::Result<Dc> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let context = Arc::new(Context {
            service,
            keys,
            outbox,
            faults,
        });
        let server = tokio::spawn(accept_loop(listener, context, stop));
        info!(%local_addr, "sandbox DC listening");
        Ok(Dc {
            local_addr,
            shutdown,
            server: Some(server),
        })
    }

    /// Where clients connect: put it in the session's `DcOption.ipv4`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and waits until they are
    /// gone. API calls already running finish in the background.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take()
            && let Err(error) = server.await
        {
            warn!(%error, "sandbox DC stopped abnormally");
        }
    }
}

impl Drop for Dc {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    context: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(%peer, "connection accepted");
                    // Subscribed before the task starts, so no drop is missed.
                    let drops = context.faults.drops();
                    connections.spawn(connection::serve(stream, Arc::clone(&context), drops, stop.clone()));
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    // Every connection watches `stop` too and is closing already.
    while connections.join_next().await.is_some() {}
    info!("sandbox DC stopped");
}
