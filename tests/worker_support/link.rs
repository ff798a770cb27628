//! A TCP link a test can cut and heal: a proxy on loopback in front of a
//! server (the shared PostgreSQL store), for a daemon partitioned from it.
//! Once cut, nothing more crosses in either direction and nothing is
//! closed: the sockets stay open and silent, as across a partition, so only
//! the daemon's own timeouts can tell. What was on its way is held, not
//! lost (TCP retransmits across a partition), and crosses once the link is
//! healed: a request sent before the cut is answered late.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The link; dropping it ends its listener (connections made stay).
pub struct Link {
    pub addr: SocketAddr,
    /// Whether the link is cut now.
    cut: watch::Sender<bool>,
    closed: CancellationToken,
}

impl Link {
    /// A link to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = watch::Sender::new(false);
        let closed = CancellationToken::new();
        tokio::spawn({
            let cut = cut.clone();
            let closed = closed.clone();
            async move {
                while let Some(Ok((near, _))) = closed.run_until_cancelled(listener.accept()).await
                {
                    let mut open = cut.subscribe();
                    tokio::spawn(async move {
                        // A connection made across the cut waits for the heal.
                        if open.wait_for(|cut| !*cut).await.is_err() {
                            return;
                        }
                        let Ok(far) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (near_read, near_write) = near.into_split();
                        let (far_read, far_write) = far.into_split();
                        tokio::spawn(forward(near_read, far_write, open.clone()));
                        forward(far_read, near_write, open).await;
                    });
                }
            }
        });
        Link { addr, cut, closed }
    }

    /// Cuts the link: from now on nothing crosses until [`Link::heal`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals the link: what waited crosses, in order.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// `url` (`postgres://user@host:port/db`) through this link.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (user, rest) = rest.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{scheme}://{user}@{}/{path}", self.addr)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// The server's address in `url` (`postgres://user@host:port/db`).
pub fn server_of(url: &str) -> SocketAddr {
    let rest = url.split_once('@').unwrap().1;
    rest.split_once('/').unwrap().0.parse().unwrap()
}

/// Copies `from` to `to`, holding every byte while the link is cut.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut open: watch::Receiver<bool>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        if open.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        // Read just as the link was cut: held until it heals.
        if open.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
