//! Serving connections with bounds: timeouts on every read and a cap on how
//! many connections are open at once.
//!
//! A local socket is still an attack surface: any process of the socket's
//! group can open connections and drip a request head, hold a half-sent
//! body, or just sit idle. Without bounds each such connection holds a file
//! descriptor and a task forever, and enough of them starve the daemon
//! (`accept: Too many open files`) so that even `/healthz` times out. So:
//! - the request head (and the wait for it on an idle keep-alive
//!   connection) has `header_timeout` (hyper's header read timer, which
//!   starts whenever a connection waits for a head);
//! - a request body may pause at most `body_timeout` between two chunks,
//!   then the request is answered 408 and the connection closed;
//! - beyond `max_connections` open connections, a new one is answered a
//!   JSON 503 at once and closed, instead of being left unanswered;
//! - a failing `accept` (out of descriptors) backs off instead of spinning
//!   (axum's listeners do).
//!
//! A long-poll is a request being handled, not a read: it is bound only by
//! its own `wait`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tokio_util::task::TaskTracker;

use super::answer::Failure;
use super::protocol::GuardedIo;
use super::request_id::RequestId;

/// The bounds, from `[api]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// A request body paused longer than the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled: no data for {0:?}")]
pub struct BodyStalled(pub Duration);

/// How much of a refused connection's request head is read at most.
const REFUSED_HEAD_MAX: usize = 16 * 1024;

/// Serves `router` on `listener` until `stopping` turns true; then stops
/// accepting, asks every connection to finish its request and close, and
/// returns once they have (the caller bounds how long it waits).
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) where
    L: axum::serve::Listener,
    L::Io: Unpin,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        // axum's `accept` backs off by itself when accepting fails (out of
        // descriptors), instead of spinning.
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stopping) => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            connections.spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let router = router.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            serve_one(stream, router, limits, stopping).await;
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
}

/// One connection, HTTP/1.1 with keep-alive, until it closes or shutdown.
async fn serve_one<S>(
    stream: S,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        async move {
            let request = request.map(|body| Body::new(TimedBody::new(body, body_timeout)));
            Ok::<_, Infallible>(router.oneshot_call(request).await)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(GuardedIo::new(stream)), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        () = stopped(&mut stopping) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Completes once `stopping` turns true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Answers a connection over the cap with a JSON 503 and closes it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, cap: usize) {
    let request_id = RequestId::generate();
    let failure = Failure::Unavailable(format!(
        "too many open connections (the cap is {cap}); try again shortly"
    ));
    tracing::warn!(%request_id, cap, "refused a connection over the cap");
    let body = failure.to_bytes(&request_id);
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        StatusCode::SERVICE_UNAVAILABLE
            .canonical_reason()
            .unwrap_or_default(),
        body.len(),
    );
    let write = async {
        // The client writes its request before it reads: take the head
        // first (bounded), so the refusal is read rather than a broken pipe.
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while seen.len() < REFUSED_HEAD_MAX && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await? {
                0 => break,
                n => seen.extend_from_slice(&chunk[..n]),
            }
        }
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await
    };
    // A client that does not read its refusal does not hold the task.
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// Calling the router as a one-shot service.
trait OneshotCall {
    async fn oneshot_call(self, request: Request<Body>) -> axum::response::Response;
}

impl OneshotCall for Router {
    async fn oneshot_call(self, request: Request<Body>) -> axum::response::Response {
        use tower_service::Service;
        let mut router = self;
        match router.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// A request body that fails with [`BodyStalled`] when no frame comes for
/// `timeout`.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        TimedBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read error is a stall (answered 408, not 400).
pub(crate) fn is_stall(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyStalled>() {
            return true;
        }
        current = error.source();
    }
    false
}
