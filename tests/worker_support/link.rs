//! A TCP link a test can cut: a proxy on loopback in front of a server
//! (the shared PostgreSQL store), for a daemon partitioned from it. Once
//! cut, nothing more crosses in either direction, and nothing is closed:
//! the sockets stay open and silent, as across a partition, so only the
//! daemon's own timeouts can tell.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The link; dropping it ends its listener (connections made stay).
pub struct Link {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    closed: CancellationToken,
}

impl Link {
    /// A link to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let closed = CancellationToken::new();
        tokio::spawn({
            let cut = Arc::clone(&cut);
            let closed = closed.clone();
            async move {
                while let Some(Ok((near, _))) = closed.run_until_cancelled(listener.accept()).await
                {
                    let cut = Arc::clone(&cut);
                    tokio::spawn(async move {
                        if cut.load(Ordering::Acquire) {
                            silence(near).await;
                            return;
                        }
                        let Ok(far) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (near_read, near_write) = near.into_split();
                        let (far_read, far_write) = far.into_split();
                        tokio::spawn(forward(near_read, far_write, Arc::clone(&cut)));
                        forward(far_read, near_write, cut).await;
                    });
                }
            }
        });
        Link { addr, cut, closed }
    }

    /// Cuts the link: from now on every byte is dropped.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
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

/// Copies `from` to `to` until the link is cut; then reads and drops.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, cut: Arc<AtomicBool>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            if !cut.load(Ordering::Acquire) {
                let _ = to.shutdown().await;
            }
            return;
        }
        if cut.load(Ordering::Acquire) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Reads and drops whatever `stream` sends, answering nothing.
async fn silence(mut stream: TcpStream) {
    let mut buffer = vec![0; 16 * 1024];
    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
}
