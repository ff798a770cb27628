//! The sandbox's MTProto server: the transport half of a local DC.
//!
//! It speaks what Telegram's front end speaks — every TCP transport
//! (abridged, intermediate, padded, full, obfuscated2), MTProto 2.0
//! encryption with pre-provisioned auth keys, containers, gzip, quick acks
//! and the service messages — and knows nothing of Telegram's semantics:
//! every API call goes to a [`Service`], every pushed update comes from the
//! [`Outbox`]. Split by layer: [`transport`] (framing), [`crypto`] (message
//! keys), [`codec`] (MTProto's TL service objects), [`session`] (numbering
//! and sealing what the server sends), [`connection`] (one client),
//! [`admission`] (bounds), [`traffic`] (counters).

mod admission;
mod codec;
mod connection;
mod crypto;
mod session;
mod traffic;
pub mod transport;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

pub use admission::{DcAdmission, DcLimits};
pub use connection::ConnectionError;
pub use crypto::auth_key_id;
pub use traffic::{Traffic, TrafficCounts};

use super::{Faults, KeyRing, Outbox, Service};
use admission::Counts;
use connection::Context;

/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a DC serves with; several DCs of one sandbox share all but the id.
pub struct DcParts {
    /// The id clients know this DC by (Telegram's are 1–5).
    pub dc_id: i32,
    pub service: Arc<dyn Service>,
    pub keys: Arc<dyn KeyRing>,
    pub outbox: Arc<Outbox>,
    pub faults: Arc<Faults>,
    pub traffic: Arc<Traffic>,
    /// Bounds, shared with the other DCs given the same one.
    pub admission: DcAdmission,
}

/// A running DC. It serves until [`Dc::shutdown`] or until dropped; either
/// closes every connection.
pub struct Dc {
    dc_id: i32,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Dc {
    /// Listens on `addr` (`127.0.0.1:0` picks a free port) and serves every
    /// connection with `parts`.
    pub async fn bind(addr: SocketAddr, parts: DcParts) -> io::Result<Dc> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let dc_id = parts.dc_id;
        let context = Arc::new(Context {
            dc_id,
            service: parts.service,
            keys: parts.keys,
            outbox: parts.outbox,
            faults: parts.faults,
            traffic: parts.traffic,
            admission: parts.admission.0,
            sessions: Counts::default(),
        });
        let server = tokio::spawn(accept_loop(listener, context, stop));
        info!(%local_addr, dc_id, "sandbox DC listening");
        Ok(Dc {
            dc_id,
            local_addr,
            shutdown,
            server: Some(server),
        })
    }

    pub fn dc_id(&self) -> i32 {
        self.dc_id
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
                    context.traffic.accepted(context.dc_id);
                    // Subscribed before the task starts, so no drop is missed.
                    let drops = context.faults.drops();
                    connections.spawn(connection::serve(stream, peer, Arc::clone(&context), drops, stop.clone()));
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
