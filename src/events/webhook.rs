//! The optional webhook: every event POSTed to one URL, signed, retried,
//! in order per chat.
//!
//! A dispatcher reads the stream by cursor and hands each event to its
//! chat's delivery task, so a chat whose deliveries fail waits alone while
//! other chats go on. A delivery is a `POST` of the event JSON with
//! `X-Telegate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`
//! (Stripe's scheme: the timestamp is signed, so a consumer can refuse a
//! replayed delivery by its age) and `X-Telegate-Event-Id`; anything but a 2xx within the timeout is retried
//! with capped exponential backoff until it is delivered or, past
//! `webhook.dead_after_attempts` or `dead_after_secs`, a dead letter (see
//! `dead_letter`; the event stays in the store meanwhile). Progress is stored — the last cursor delivered per chat and
//! a cursor below which everything is delivered — so a restart resumes
//! where it stopped, repeating at most the deliveries in flight. `https://`
//! URLs are reached with rustls (see `tls`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::store::{Conn, OptionalExtension};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rusqlite::params;
use serde::Serialize;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dead_letter::{self, DeadEvent, DeadLetterPolicy};
use super::tls::TlsTarget;
use super::{EventStore, StoredEvent};
use crate::config::{Secret, WebhookConfig};
use crate::queue::{DEFAULT_BOT, Queue, QueueError, Timestamp, until_stored};
use crate::sender::Backoff;

pub const SIGNATURE_HEADER: &str = "x-telegate-signature";
pub const EVENT_ID_HEADER: &str = "x-telegate-event-id";
/// Events handed to chat tasks and not yet delivered, at most.
const MAX_IN_FLIGHT: usize = 10_000;
/// The first retry waits about this long.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// How long the dispatcher waits for new events per read.
const POLL: Duration = Duration::from_secs(30);
/// A chat's delivery task ends after this long with nothing to deliver (a
/// bot talks to many chats over time; each would keep a task for good).
const CHAT_IDLE: Duration = Duration::from_secs(60);

/// Why the webhook cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("`webhook.url` {0}")]
    Url(String),
    #[error("`webhook.secret` is required with `webhook.url`")]
    NoSecret,
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
}

/// Where deliveries go.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header.
    host: String,
    path: String,
    /// For `https://`.
    tls: Option<TlsTarget>,
}

impl Target {
    fn parse(url: &str, ca_file: Option<&std::path::Path>) -> Result<Self, WebhookError> {
        let parsed = url::Url::parse(url).map_err(|e| WebhookError::Url(e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|_| matches!(parsed.scheme(), "http" | "https"))
            .ok_or_else(|| WebhookError::Url(format!("must be http(s)://HOST..., got `{url}`")))?;
        let tls = match parsed.scheme() {
            "https" => Some(TlsTarget::new(host, ca_file)?),
            _ => None,
        };
        let port = parsed.port_or_known_default().unwrap_or(80);
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        Ok(Target {
            url: url.to_owned(),
            address: format!("{host}:{port}"),
            host: match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            },
            path,
            tls,
        })
    }
}

/// What `GET /api/v1/webhook` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookStatus {
    pub url: String,
    /// Deliveries that got a 2xx since start.
    pub delivered: u64,
    /// Attempts that failed since start.
    pub failed_attempts: u64,
    /// Events handed to chats and not yet delivered.
    pub pending: usize,
    /// Chats waiting to retry, with why.
    pub retrying: Vec<Retrying>,
    /// Events given up on since start (listed at `/api/v1/webhook/dead`).
    pub dead: u64,
    pub last_delivered_event: Option<String>,
    pub last_delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// A chat whose head event failed and waits for its next attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Retrying {
    pub chat: i64,
    pub event_id: String,
    pub attempts: u32,
    pub error: String,
}

/// A read-only view of a running webhook.
#[derive(Clone)]
pub struct WebhookMonitor {
    shared: Arc<Shared>,
}

impl WebhookMonitor {
    pub fn status(&self) -> WebhookStatus {
        let mut status = self.shared.status().clone();
        status.pending = self.shared.in_flight().len();
        status
    }

    /// Chats with a delivery task running now.
    pub fn chat_lines(&self) -> usize {
        self.shared.chat_lines.load(Ordering::Relaxed)
    }

    /// Dead events after cursor `after`, at most `limit`.
    pub async fn dead(&self, after: i64, limit: usize) -> Result<Vec<DeadEvent>, QueueError> {
        self.shared
            .queue
            .write(move |conn, _| dead_letter::list(conn, after, limit))
            .await
    }

    /// Hands the dead events with cursors in `from..=to` to the webhook
    /// again; returns their ids.
    pub async fn replay(&self, from: i64, to: i64) -> Result<Vec<String>, QueueError> {
        let events = self
            .shared
            .queue
            .write(move |conn, _| dead_letter::take(conn, from, to))
            .await?;
        let ids = events.iter().map(|e| e.id.clone()).collect();
        for event in events {
            // The receiver lives as long as the webhook runs.
            let _ = self.shared.replays.send(event);
        }
        Ok(ids)
    }
}

struct Shared {
    target: Target,
    dead_letter: DeadLetterPolicy,
    /// Dead events to deliver again.
    replays: mpsc::UnboundedSender<StoredEvent>,
    secret: Secret,
    timeout: Duration,
    backoff: Backoff,
    queue: Queue,
    status: Mutex<WebhookStatus>,
    /// Cursors handed to chat tasks and not yet delivered.
    in_flight: Mutex<BTreeSet<i64>>,
    /// Signalled when an in-flight event is delivered.
    delivered: Notify,
    /// How long a chat's task waits for more before it ends.
    idle_after: Duration,
    /// Chat tasks running.
    chat_lines: AtomicUsize,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, WebhookStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_flight(&self) -> MutexGuard<'_, BTreeSet<i64>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The webhook, ready to run.
pub struct Webhook {
    shared: Arc<Shared>,
    events: EventStore,
    replayed: mpsc::UnboundedReceiver<StoredEvent>,
}

impl Webhook {
    /// `None` when no URL is configured.
    pub fn from_config(
        config: &WebhookConfig,
        events: EventStore,
        queue: Queue,
    ) -> Result<Option<Webhook>, WebhookError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let target = Target::parse(url, config.ca_file.as_deref())?;
        let secret = config.secret.clone().ok_or(WebhookError::NoSecret)?;
        let status = WebhookStatus {
            url: target.url.clone(),
            ..WebhookStatus::default()
        };
        let (replays, replayed) = mpsc::unbounded_channel();
        let limit = |n: u64| (n > 0).then_some(n);
        Ok(Some(Webhook {
            replayed,
            shared: Arc::new(Shared {
                dead_letter: DeadLetterPolicy {
                    max_attempts: limit(u64::from(config.dead_after_attempts)).map(|n| n as u32),
                    max_age: limit(config.dead_after_secs).map(Duration::from_secs),
                },
                replays,
                target,
                secret,
                timeout: Duration::from_millis(config.timeout_ms),
                backoff: Backoff {
                    base: FIRST_RETRY,
                    cap: Duration::from_millis(config.max_backoff_ms),
                },
                queue,
                status: Mutex::new(status),
                in_flight: Mutex::new(BTreeSet::new()),
                delivered: Notify::new(),
                idle_after: CHAT_IDLE,
                chat_lines: AtomicUsize::new(0),
            }),
            events,
        }))
    }

    /// The bot whose events this webhook delivers (its event store's scope).
    fn bot(&self) -> String {
        self.events.bot().unwrap_or(DEFAULT_BOT).to_owned()
    }

    pub fn monitor(&self) -> WebhookMonitor {
        WebhookMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Delivers until `stop` is cancelled (then waits for the chat tasks,
    /// which end with it: an event cut off mid-delivery is delivered again
    /// on the next start) or the store fails.
    pub async fn run(self, stop: CancellationToken) -> Result<(), QueueError> {
        let tracker = TaskTracker::new();
        let lines = stop.child_token();
        let delivered = tokio::select! {
            delivered = self.deliver(&tracker, &lines) => delivered,
            () = stop.cancelled() => Ok(()),
        };
        lines.cancel();
        tracker.close();
        tracker.wait().await;
        delivered
    }

    /// Hands each event to its chat's line, starting lines as events come
    /// and ending those that report idle with nothing sent to them since.
    async fn deliver(
        mut self,
        tracker: &TaskTracker,
        stop: &CancellationToken,
    ) -> Result<(), QueueError> {
        let shared = &self.shared;
        shared
            .queue
            .write(|conn, _| dead_letter::create_table(conn))
            .await?;
        let bot = self.bot();
        let (mut scan, delivered) = {
            let bot = bot.clone();
            shared
                .queue
                .read(move |conn| load_progress(conn, &bot))
                .await?
        };
        tracing::info!(url = %shared.target.url, after = scan, "webhook delivering");
        let mut chats: HashMap<i64, ChatLine> = HashMap::new();
        let (idle_tx, mut idle) = mpsc::unbounded_channel::<(i64, u64)>();
        let start = |chat| ChatLine::start(Arc::clone(shared), chat, tracker, stop, &idle_tx);
        loop {
            while shared.in_flight().len() >= MAX_IN_FLIGHT {
                shared.delivered.notified().await;
            }
            let batch = tokio::select! {
                batch = self.events.wait_after(scan, crate::events::MAX_BATCH, POLL) => batch?,
                Some(event) = self.replayed.recv() => {
                    tracing::info!(event_id = %event.id, chat = event.chat, "webhook replaying a dead event");
                    shared.in_flight().insert(event.cursor);
                    chats
                        .entry(event.chat)
                        .or_insert_with(|| start(event.chat))
                        .send(event);
                    continue;
                }
                Some((chat, received)) = idle.recv() => {
                    // Dropping the line ends its task; only when nothing was
                    // sent to it since it went idle, so a chat never has
                    // two tasks (and its order holds).
                    if chats.get(&chat).is_some_and(|line| line.sent == received) {
                        chats.remove(&chat);
                    }
                    continue;
                }
            };
            for event in batch {
                scan = event.cursor;
                if delivered
                    .get(&event.chat)
                    .is_some_and(|d| *d >= event.cursor)
                {
                    continue;
                }
                shared.in_flight().insert(event.cursor);
                let line = chats.entry(event.chat).or_insert_with(|| start(event.chat));
                line.send(event);
            }
            if shared.in_flight().is_empty() {
                // Waits out a full disk rather than stopping deliveries.
                until_stored("webhook progress", || {
                    let bot = bot.clone();
                    shared
                        .queue
                        .write(move |conn, _| save_mark(conn, &bot, scan))
                })
                .await?;
            }
        }
    }
}

/// One chat's deliveries, in order, in a task of its own. The task ends
/// when the line is dropped (after delivering what it was sent) or `stop`
/// is cancelled; after [`Shared::idle_after`] with nothing to deliver it
/// reports idle with how many events it received, and the webhook drops the
/// line if it sent no more.
struct ChatLine {
    tx: mpsc::UnboundedSender<StoredEvent>,
    /// Events sent to the task.
    sent: u64,
}

impl ChatLine {
    fn start(
        shared: Arc<Shared>,
        chat: i64,
        tracker: &TaskTracker,
        stop: &CancellationToken,
        idle: &mpsc::UnboundedSender<(i64, u64)>,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<StoredEvent>();
        let (stop, idle) = (stop.clone(), idle.clone());
        shared.chat_lines.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(async move {
            let running = RunningLine(shared);
            let shared = &running.0;
            let mut received = 0u64;
            let mut reported = false;
            loop {
                let idle_for = async {
                    if reported {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(shared.idle_after).await;
                };
                let event = tokio::select! {
                    () = stop.cancelled() => return,
                    event = rx.recv() => match event {
                        Some(event) => event,
                        None => return,
                    },
                    () = idle_for => {
                        reported = true;
                        // The webhook is gone when this fails: end too.
                        if idle.send((chat, received)).is_err() {
                            return;
                        }
                        continue;
                    }
                };
                (received, reported) = (received + 1, false);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = deliver_until_taken(shared, &event) => {}
                }
                if let Err(error) = record_delivered(shared, &event).await {
                    tracing::error!(%error, "cannot store webhook progress");
                }
            }
        });
        ChatLine { tx, sent: 0 }
    }

    fn send(&mut self, event: StoredEvent) {
        self.sent += 1;
        // The task only ends when this line is dropped (or at shutdown).
        let _ = self.tx.send(event);
    }
}

/// Counts a chat task as running while it lives.
struct RunningLine(Arc<Shared>);

impl Drop for RunningLine {
    fn drop(&mut self) {
        self.0.chat_lines.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tries `event` until the webhook answers 2xx or the event is dead.
async fn deliver_until_taken(shared: &Shared, event: &StoredEvent) {
    let first = tokio::time::Instant::now();
    let mut attempts = 0u32;
    loop {
        match post(shared, event).await {
            Ok(()) => {
                crate::metrics::metrics().webhook_deliveries.inc();
                {
                    let mut status = shared.status();
                    status.delivered += 1;
                    status.last_delivered_event = Some(event.id.clone());
                    status.last_delivered_at = Some(Timestamp::now());
                    status.retrying.retain(|r| r.chat != event.chat);
                }
                tracing::info!(event_id = %event.id, chat = event.chat, retries = attempts, "webhook delivered");
                return;
            }
            Err(error) => {
                crate::metrics::metrics().webhook_failures.inc();
                attempts = attempts.saturating_add(1);
                if shared.dead_letter.is_dead(attempts, first.elapsed()) {
                    bury(shared, event, attempts, error).await;
                    return;
                }
                let delay = shared.backoff.delay(attempts, rand::random::<f64>());
                tracing::warn!(
                    event_id = %event.id,
                    chat = event.chat,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    %error,
                    "webhook delivery failed"
                );
                {
                    let mut status = shared.status();
                    status.failed_attempts += 1;
                    status.last_error = Some(format!("{}: {error}", event.id));
                    status.retrying.retain(|r| r.chat != event.chat);
                    status.retrying.push(Retrying {
                        chat: event.chat,
                        event_id: event.id.clone(),
                        attempts,
                        error,
                    });
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Gives `event` up: listed as dead, its chat's line goes on.
async fn bury(shared: &Shared, event: &StoredEvent, attempts: u32, error: String) {
    tracing::warn!(event_id = %event.id, chat = event.chat, attempts, %error, "webhook gave up: dead letter");
    crate::metrics::metrics().webhook_dead.inc();
    {
        let mut status = shared.status();
        status.dead += 1;
        status.failed_attempts += 1;
        status.last_error = Some(format!("{}: {error}", event.id));
        status.retrying.retain(|r| r.chat != event.chat);
    }
    let dead = DeadEvent {
        cursor: event.cursor,
        event_id: event.id.clone(),
        chat: event.chat,
        attempts,
        error,
        died_at: Timestamp::now(),
    };
    if let Err(error) = shared
        .queue
        .write(move |conn, _| dead_letter::insert(conn, &dead))
        .await
    {
        tracing::error!(%error, "cannot record a dead letter");
    }
}

/// One attempt: `Err` says why it did not count as delivered.
async fn post(shared: &Shared, event: &StoredEvent) -> Result<(), String> {
    let body = Bytes::from(event.body.clone());
    let request = Request::post(shared.target.path.as_str())
        .header(HOST, shared.target.host.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(
                shared.secret.expose().as_bytes(),
                Timestamp::now().as_millis() / 1000,
                &body,
            ),
        )
        .header(EVENT_ID_HEADER, event.id.as_str())
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let attempt = async {
        let stream = TcpStream::connect(&shared.target.address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        match &shared.target.tls {
            Some(tls) => {
                let stream = tls.connect(stream).await.map_err(|e| format!("TLS: {e}"))?;
                exchange(stream, request).await
            }
            None => exchange(stream, request).await,
        }
    };
    tokio::time::timeout(shared.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {} ms", shared.timeout.as_millis()))?
}

/// One request over `io`: `Ok` for a 2xx.
async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<(), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(format!("answered {status}")),
    }
}

/// `t=<unix_secs>,v1=<hex HMAC-SHA256 of "<unix_secs>.<body>">`.
pub fn signature(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    format!("t={unix_secs},v1={}", hmac_hex(secret, unix_secs, body))
}

fn hmac_hex(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What a consumer checks: `header` signs `body` with `secret`, and its
/// timestamp is at most `tolerance_secs` from `now_unix_secs`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix_secs: i64,
    tolerance_secs: i64,
) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v1)) => signatures.push(v1),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    let expected = hmac_hex(secret, t, body);
    // Not constant-time; telegate only verifies in tests, consumers use
    // their HMAC library's comparison.
    (now_unix_secs - t).abs() <= tolerance_secs && signatures.contains(&expected.as_str())
}

/// Marks `event` delivered: its chat's cursor, and the mark below which
/// everything is.
async fn record_delivered(shared: &Shared, event: &StoredEvent) -> Result<(), QueueError> {
    let mark = {
        let mut in_flight = shared.in_flight();
        in_flight.remove(&event.cursor);
        in_flight.first().map_or(event.cursor, |oldest| oldest - 1)
    };
    shared.delivered.notify_one();
    let (chat, cursor, bot) = (event.chat, event.cursor, event.bot.clone());
    shared
        .queue
        .write(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO webhook_chats (bot, chat, delivered) VALUES (?3, ?1, ?2)
                 ON CONFLICT (bot, chat)
                 DO UPDATE SET delivered = max(webhook_chats.delivered, excluded.delivered)",
            )?
            .execute(params![chat, cursor, bot])?;
            save_mark(conn, &bot, mark)
        })
        .await
}

fn save_mark(conn: &Conn, bot: &str, mark: i64) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO webhook_marks (bot, delivered) VALUES (?1, ?2)
         ON CONFLICT (bot) DO UPDATE SET delivered = max(webhook_marks.delivered, excluded.delivered)",
    )?
    .execute(params![bot, mark])?;
    Ok(())
}

/// Where to resume: the mark, and each chat's last delivered cursor.
fn load_progress(conn: &Conn, bot: &str) -> Result<(i64, HashMap<i64, i64>), QueueError> {
    let mark = conn
        .prepare_cached("SELECT delivered FROM webhook_marks WHERE bot = ?1")?
        .query_row([bot], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let mut statement =
        conn.prepare_cached("SELECT chat, delivered FROM webhook_chats WHERE bot = ?1")?;
    let chats = statement
        .query_map([bot], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok((mark, chats))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn the_signature_signs_the_timestamp_and_the_body() {
        // HMAC-SHA256("whsec", "1700000000.{}"), as Python's hmac computes it.
        let header = signature(b"whsec", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
        );
        assert!(verify(b"whsec", &header, b"{}", 1_700_000_100, 300));
        // Too old, another body, another secret, no timestamp.
        assert!(!verify(b"whsec", &header, b"{}", 1_700_000_301, 300));
        assert!(!verify(b"whsec", &header, b"{ }", 1_700_000_000, 300));
        assert!(!verify(b"other", &header, b"{}", 1_700_000_000, 300));
        let bare = header.split_once(',').unwrap().1;
        assert!(!verify(b"whsec", bare, b"{}", 1_700_000_000, 300));
    }

    /// A webhook server on 127.0.0.1 that records the event ids it took.
    async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
        let (url, seen, _) = refusing_receiver(true).await;
        (url, seen)
    }

    /// [`receiver`] that answers 500 (and records nothing) while its flag
    /// is false.
    async fn refusing_receiver(
        accepting: bool,
    ) -> (String, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepting = Arc::new(AtomicBool::new(accepting));
        let seen = serve_receiver_with(listener, Arc::clone(&accepting));
        (url, seen, accepting)
    }

    /// Serves the recording webhook on `listener`.
    fn serve_receiver<L: axum::serve::Listener>(listener: L) -> Arc<Mutex<Vec<String>>>
    where
        L::Addr: std::fmt::Debug,
    {
        serve_receiver_with(listener, Arc::new(AtomicBool::new(true)))
    }

    fn serve_receiver_with<L: axum::serve::Listener>(
        listener: L,
        accepting: Arc<AtomicBool>,
    ) -> Arc<Mutex<Vec<String>>>
    where
        L::Addr: std::fmt::Debug,
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route(
            "/",
            axum::routing::post({
                let seen = Arc::clone(&seen);
                move |headers: axum::http::HeaderMap| async move {
                    if !accepting.load(Ordering::Relaxed) {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let id = headers[EVENT_ID_HEADER].to_str().unwrap_or("").to_owned();
                    seen.lock().unwrap().push(id);
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        seen
    }

    /// TLS over a TCP listener, for a local https webhook.
    struct TlsListener {
        tcp: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    }

    impl axum::serve::Listener for TlsListener {
        type Io = tokio_rustls::server::TlsStream<TcpStream>;
        type Addr = std::net::SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let Ok((stream, addr)) = self.tcp.accept().await else {
                    continue;
                };
                // A client that refuses our certificate just goes away.
                if let Ok(tls) = self.acceptor.accept(stream).await {
                    return (tls, addr);
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.tcp.local_addr()
        }
    }

    /// An https webhook on 127.0.0.1 with a certificate from a fresh test
    /// CA; returns its URL, the CA's PEM and what it took.
    async fn tls_receiver() -> (String, String, Arc<Mutex<Vec<String>>>) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/", tcp.local_addr().unwrap());
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        (url, ca.pem(), serve_receiver(listener))
    }

    /// A webhook running in a task, stopped through its token.
    struct Running {
        stop: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), QueueError>>,
    }

    impl Running {
        fn start(webhook: Webhook) -> Running {
            let stop = CancellationToken::new();
            let task = tokio::spawn(webhook.run(stop.clone()));
            Running { stop, task }
        }

        async fn stop(self) {
            self.stop.cancel();
            self.task.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn idle_chat_tasks_end_and_a_chat_that_speaks_again_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&crate::store::test_location(dir.path())).unwrap();
        let events = EventStore::new(queue.clone());
        let (url, seen) = receiver().await;
        let config = WebhookConfig {
            url: Some(url),
            secret: Some(Secret::new("s")),
            ..WebhookConfig::default()
        };
        let event = |id: String, chat| super::super::NewEvent {
            id,
            chat,
            body: serde_json::json!({"id": "x"}),
        };
        let mut webhook = Webhook::from_config(&config, events.clone(), queue.clone())
            .unwrap()
            .unwrap();
        Arc::get_mut(&mut webhook.shared).unwrap().idle_after = Duration::from_millis(50);
        let monitor = webhook.monitor();
        let running = Running::start(webhook);
        let batch = (0..100)
            .map(|chat| event(format!("a{chat}"), chat))
            .collect();
        events.append(batch).await.unwrap();
        assert_eq!(delivered(&seen, 100).await.len(), 100);
        // Every chat went quiet: its task ends.
        let no_lines = || async {
            tokio::time::timeout(Duration::from_secs(30), async {
                while monitor.chat_lines() != 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{} chat tasks still run", monitor.chat_lines()))
        };
        no_lines().await;
        // A chat heard from again is delivered to (by a new task), in order.
        let again = (0..5).map(|n| event(format!("b{n}"), 7)).collect();
        events.append(again).await.unwrap();
        let got = delivered(&seen, 105).await;
        assert_eq!(got[100..], ["b0", "b1", "b2", "b3", "b4"]);
        no_lines().await;
        running.stop().await;
    }

    #[tokio::test]
    async fn a_dead_letter_frees_its_chat_and_replays_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&crate::store::test_location(dir.path())).unwrap();
        let events = EventStore::new(queue.clone());
        let (url, seen, accepting) = refusing_receiver(false).await;
        let config = WebhookConfig {
            url: Some(url),
            secret: Some(Secret::new("s")),
            max_backoff_ms: 5,
            dead_after_attempts: 2,
            ..WebhookConfig::default()
        };
        let event = |id: &str| super::super::NewEvent {
            id: id.into(),
            chat: 1,
            body: serde_json::json!({"id": id}),
        };
        events.append(vec![event("doomed")]).await.unwrap();
        let webhook = Webhook::from_config(&config, events.clone(), queue.clone())
            .unwrap()
            .unwrap();
        let monitor = webhook.monitor();
        let running = Running::start(webhook);
        let dead = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let dead = monitor.dead(0, 10).await.unwrap();
                if !dead.is_empty() {
                    return dead;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a dead letter");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].event_id.as_str(), dead[0].attempts), ("doomed", 2));
        assert!(dead[0].error.contains("500"), "{}", dead[0].error);
        assert_eq!(monitor.status().dead, 1);

        // The chat is not held: its next event goes through.
        accepting.store(true, Ordering::Relaxed);
        events.append(vec![event("next")]).await.unwrap();
        assert_eq!(delivered(&seen, 1).await, ["next"]);

        // A replay outside the range does nothing; over it, delivers.
        assert!(
            monitor
                .replay(dead[0].cursor + 1, dead[0].cursor + 5)
                .await
                .unwrap()
                .is_empty()
        );
        let replayed = monitor.replay(0, dead[0].cursor).await.unwrap();
        assert_eq!(replayed, ["doomed"]);
        assert_eq!(delivered(&seen, 2).await, ["next", "doomed"]);
        assert!(monitor.dead(0, 10).await.unwrap().is_empty());
        running.stop().await;
    }

    #[tokio::test]
    async fn https_deliveries_trust_the_configured_ca_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&crate::store::test_location(dir.path())).unwrap();
        let events = EventStore::new(queue.clone());
        let (url, ca_pem, seen) = tls_receiver().await;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        events
            .append(vec![super::super::NewEvent {
                id: "tls".into(),
                chat: 1,
                body: serde_json::json!({"id": "tls"}),
            }])
            .await
            .unwrap();

        // Without the CA (Mozilla's roots only) the certificate is refused.
        let untrusted = WebhookConfig {
            url: Some(url.clone()),
            secret: Some(Secret::new("s")),
            ..WebhookConfig::default()
        };
        let webhook = Webhook::from_config(&untrusted, events.clone(), queue.clone())
            .unwrap()
            .unwrap();
        let monitor = webhook.monitor();
        let running = Running::start(webhook);
        let error = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(error) = monitor.status().last_error {
                    return error;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a failed attempt");
        running.stop().await;
        assert!(
            error.contains("TLS") && error.contains("certificate"),
            "{error}"
        );
        assert!(seen.lock().unwrap().is_empty());

        let trusted = WebhookConfig {
            ca_file: Some(ca_file),
            ..untrusted
        };
        let webhook = Webhook::from_config(&trusted, events, queue)
            .unwrap()
            .unwrap();
        let running = Running::start(webhook);
        assert_eq!(delivered(&seen, 1).await, ["tls"]);
        running.stop().await;
    }

    async fn delivered(seen: &Mutex<Vec<String>>, count: usize) -> Vec<String> {
        // (Polling a test double is fine; nothing here asserts timing.)
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let got = seen.lock().unwrap().clone();
                if got.len() >= count {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("deliveries")
    }

    #[tokio::test]
    async fn a_restarted_webhook_resumes_after_what_it_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open_at(&crate::store::test_location(dir.path())).unwrap();
        let events = EventStore::new(queue.clone());
        let (url, seen) = receiver().await;
        let config = WebhookConfig {
            url: Some(url),
            secret: Some(Secret::new("s")),
            ..WebhookConfig::default()
        };
        let event = |id: &str, chat| super::super::NewEvent {
            id: id.into(),
            chat,
            body: serde_json::json!({"id": id}),
        };
        events
            .append(vec![event("a", 1), event("b", 2), event("c", 1)])
            .await
            .unwrap();
        let first = Webhook::from_config(&config, events.clone(), queue.clone())
            .unwrap()
            .unwrap();
        let running = Running::start(first);
        let mut got = delivered(&seen, 3).await;
        got.sort();
        assert_eq!(got, ["a", "b", "c"]);
        // Progress is stored after each delivery; give the last one a moment
        // to commit before stopping, as a shutdown would.
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (_, chats) = queue
                    .read(|conn| load_progress(conn, DEFAULT_BOT))
                    .await
                    .unwrap();
                if chats.get(&1) == Some(&3) && chats.get(&2) == Some(&2) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("progress stored");
        running.stop().await;

        // One new event per chat: a repeat of an old one would come before
        // it, in its chat's order.
        events
            .append(vec![event("d", 1), event("e", 2)])
            .await
            .unwrap();
        let second = Webhook::from_config(&config, events.clone(), queue.clone())
            .unwrap()
            .unwrap();
        let running = Running::start(second);
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let got = seen.lock().unwrap().clone();
                if got.contains(&"d".to_owned()) && got.contains(&"e".to_owned()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the new events");
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            ["a", "b", "c", "d", "e"],
            "old events were delivered again"
        );
        running.stop().await;
    }

    #[test]
    fn targets_are_http_or_https() {
        let target = Target::parse("http://127.0.0.1:8080/hooks/tg?x=1", None).unwrap();
        assert_eq!(target.address, "127.0.0.1:8080");
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.path, "/hooks/tg?x=1");
        assert_eq!(
            Target::parse("http://localhost", None).unwrap().address,
            "localhost:80"
        );
        let https = Target::parse("https://127.0.0.1/", None).unwrap();
        assert_eq!(https.address, "127.0.0.1:443");
        assert!(https.tls.is_some());
        assert!(Target::parse("ftp://example.com/", None).is_err());
        assert!(Target::parse("nope", None).is_err());
        let missing = Target::parse(
            "https://127.0.0.1/",
            Some(std::path::Path::new("/nonexistent.pem")),
        );
        assert!(matches!(missing, Err(WebhookError::Tls(_))));
    }
}
