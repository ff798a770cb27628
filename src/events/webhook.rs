//! The optional webhook: every event POSTed to one URL, signed, retried,
//! in order per chat.
//!
//! A dispatcher reads the stream by cursor and hands each event to its
//! chat's delivery task, so a chat whose deliveries fail waits alone while
//! other chats go on. A delivery is a `POST` of the event JSON with
//! `X-Telegate-Signature: sha256=<hex HMAC-SHA256 of the body>` and
//! `X-Telegate-Event-Id`; anything but a 2xx within the timeout is retried
//! with capped exponential backoff, forever (the event stays in the store
//! meanwhile). Progress is stored — the last cursor delivered per chat and
//! a cursor below which everything is delivered — so a restart resumes
//! where it stopped, repeating at most the deliveries in flight. HTTP only:
//! consumers are local services; a TLS proxy beside them covers the rest
//! without a TLS stack in telegate.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use super::{EventStore, StoredEvent};
use crate::config::{Secret, WebhookConfig};
use crate::queue::{Queue, QueueError, Timestamp, until_stored};
use crate::sender::Backoff;

pub const SIGNATURE_HEADER: &str = "x-telegate-signature";
pub const EVENT_ID_HEADER: &str = "x-telegate-event-id";
/// Events handed to chat tasks and not yet delivered, at most.
const MAX_IN_FLIGHT: usize = 10_000;
/// The first retry waits about this long.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// How long the dispatcher waits for new events per read.
const POLL: Duration = Duration::from_secs(30);

/// Why the webhook cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("`webhook.url` {0}")]
    Url(String),
    #[error("`webhook.secret` is required with `webhook.url`")]
    NoSecret,
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
}

impl Target {
    fn parse(url: &str) -> Result<Self, WebhookError> {
        let parsed = url::Url::parse(url).map_err(|e| WebhookError::Url(e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|_| parsed.scheme() == "http")
            .ok_or_else(|| WebhookError::Url(format!("must be http://HOST..., got `{url}`")))?;
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
}

struct Shared {
    target: Target,
    secret: Secret,
    timeout: Duration,
    backoff: Backoff,
    queue: Queue,
    status: Mutex<WebhookStatus>,
    /// Cursors handed to chat tasks and not yet delivered.
    in_flight: Mutex<BTreeSet<i64>>,
    /// Signalled when an in-flight event is delivered.
    delivered: Notify,
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
        let target = Target::parse(url)?;
        let secret = config.secret.clone().ok_or(WebhookError::NoSecret)?;
        let status = WebhookStatus {
            url: target.url.clone(),
            ..WebhookStatus::default()
        };
        Ok(Some(Webhook {
            shared: Arc::new(Shared {
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
            }),
            events,
        }))
    }

    pub fn monitor(&self) -> WebhookMonitor {
        WebhookMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Delivers until the store fails; stop it by dropping the future (the
    /// chat tasks end with it).
    pub async fn run(self) -> Result<(), QueueError> {
        let shared = &self.shared;
        let (mut scan, delivered) = shared.queue.read(load_progress).await?;
        tracing::info!(url = %shared.target.url, after = scan, "webhook delivering");
        let mut chats: HashMap<i64, ChatLine> = HashMap::new();
        loop {
            while shared.in_flight().len() >= MAX_IN_FLIGHT {
                shared.delivered.notified().await;
            }
            let batch = self
                .events
                .wait_after(scan, crate::events::MAX_BATCH, POLL)
                .await?;
            for event in batch {
                scan = event.cursor;
                if delivered
                    .get(&event.chat)
                    .is_some_and(|d| *d >= event.cursor)
                {
                    continue;
                }
                shared.in_flight().insert(event.cursor);
                let line = chats
                    .entry(event.chat)
                    .or_insert_with(|| ChatLine::start(Arc::clone(shared)));
                line.send(event);
            }
            if shared.in_flight().is_empty() {
                // Waits out a full disk rather than stopping deliveries.
                until_stored("webhook progress", || {
                    shared.queue.write(move |conn, _| save_mark(conn, scan))
                })
                .await?;
            }
        }
    }
}

/// One chat's deliveries, in order, in a task of its own.
struct ChatLine {
    tx: mpsc::UnboundedSender<StoredEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl ChatLine {
    fn start(shared: Arc<Shared>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<StoredEvent>();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                deliver_until_taken(&shared, &event).await;
                if let Err(error) = record_delivered(&shared, &event).await {
                    tracing::error!(%error, "cannot store webhook progress");
                }
            }
        });
        ChatLine { tx, task }
    }

    fn send(&self, event: StoredEvent) {
        // The task only ends when this line is dropped.
        let _ = self.tx.send(event);
    }
}

impl Drop for ChatLine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tries `event` until the webhook answers 2xx.
async fn deliver_until_taken(shared: &Shared, event: &StoredEvent) {
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

/// One attempt: `Err` says why it did not count as delivered.
async fn post(shared: &Shared, event: &StoredEvent) -> Result<(), String> {
    let body = Bytes::from(event.body.clone());
    let request = Request::post(shared.target.path.as_str())
        .header(HOST, shared.target.host.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(shared.secret.expose().as_bytes(), &body),
        )
        .header(EVENT_ID_HEADER, event.id.as_str())
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let attempt = async {
        let stream = TcpStream::connect(&shared.target.address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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
    };
    tokio::time::timeout(shared.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {} ms", shared.timeout.as_millis()))?
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
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
    let (chat, cursor) = (event.chat, event.cursor);
    shared
        .queue
        .write(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO webhook_chats (chat, delivered) VALUES (?1, ?2)
                 ON CONFLICT (chat) DO UPDATE SET delivered = max(delivered, excluded.delivered)",
            )?
            .execute(params![chat, cursor])?;
            save_mark(conn, mark)
        })
        .await
}

fn save_mark(conn: &Connection, mark: i64) -> Result<(), QueueError> {
    conn.prepare_cached(
        "INSERT INTO webhook_mark (id, delivered) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET delivered = max(delivered, excluded.delivered)",
    )?
    .execute([mark])?;
    Ok(())
}

/// Where to resume: the mark, and each chat's last delivered cursor.
fn load_progress(conn: &Connection) -> Result<(i64, HashMap<i64, i64>), QueueError> {
    let mark = conn
        .prepare_cached("SELECT delivered FROM webhook_mark WHERE id = 0")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let mut statement = conn.prepare_cached("SELECT chat, delivered FROM webhook_chats")?;
    let chats = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok((mark, chats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A webhook server on 127.0.0.1 that records the event ids it took.
    async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route(
            "/",
            axum::routing::post({
                let seen = Arc::clone(&seen);
                move |headers: axum::http::HeaderMap| async move {
                    let id = headers[EVENT_ID_HEADER].to_str().unwrap_or("").to_owned();
                    seen.lock().unwrap().push(id);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
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
        let queue = Queue::open(&dir.path().join("t.db")).unwrap();
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
        let running = tokio::spawn(first.run());
        let mut got = delivered(&seen, 3).await;
        got.sort();
        assert_eq!(got, ["a", "b", "c"]);
        // Progress is stored after each delivery; give the last one a moment
        // to commit before stopping, as a shutdown would.
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let (_, chats) = queue.read(load_progress).await.unwrap();
                if chats.get(&1) == Some(&3) && chats.get(&2) == Some(&2) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("progress stored");
        running.abort();

        // One new event per chat: a repeat of an old one would come before
        // it, in its chat's order.
        events
            .append(vec![event("d", 1), event("e", 2)])
            .await
            .unwrap();
        let second = Webhook::from_config(&config, events.clone(), queue.clone())
            .unwrap()
            .unwrap();
        let running = tokio::spawn(second.run());
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
        running.abort();
    }

    #[test]
    fn targets_are_http_only() {
        let target = Target::parse("http://127.0.0.1:8080/hooks/tg?x=1").unwrap();
        assert_eq!(target.address, "127.0.0.1:8080");
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.path, "/hooks/tg?x=1");
        assert_eq!(
            Target::parse("http://localhost").unwrap().address,
            "localhost:80"
        );
        assert!(Target::parse("https://example.com/").is_err());
        assert!(Target::parse("nope").is_err());
    }
}
