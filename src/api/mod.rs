//! The local socket API: HTTP/1.1 over a Unix socket, JSON in and out.
//!
//! Like the Docker Engine API, it is reached with
//! `curl --unix-socket DIR/telegate.sock http://localhost/...`. The paths
//! mirror the business API of the seed so existing clients port with a path
//! change. Every answer is JSON with a `request_id`, errors included (404 and
//! 405 too), and nothing is acknowledged that is not durable.
//!
//! | method, path | answer |
//! | --- | --- |
//! | `POST /api/v1/telegram/interactive[?wait=S]` | 202 `{job_id, status}`; with `wait`, 201 `{message_id, channel_message_id}` once sent, 400 once failed, 202 if `S` seconds (≤ 60) pass first |
//! | `POST /v1.0/message` | CM.com's Business Messaging envelope (see `cm`): one job per recipient, CM's answer |
//! | `POST /api/v1/telegram/messages[?wait=S]` | the same, for text and media; a job of several messages answers 201 with the first one's ids and all of them in `messages` |
//! | `GET /api/v1/jobs/{job_id}` | the job: state, attempts, parts (with `random_id`s), result or error, timestamps, normalized payload |
//! | `GET /api/v1/jobs[?state=&after=&limit=]` | `{jobs: [...]}` in id order (no payloads), at most 1000 |
//! | `POST /api/v1/jobs/{job_id}/retry[?wait=S]` | a failed job back in line with its `random_id`s: 202 (201 with `wait`), 409 unless failed |
//! | `GET /api/v1/webhook/dead[?after=&limit=]` | events the webhook gave up on |
//! | `POST /api/v1/webhook/replay` | `{from, to}`: the dead events of that cursor range delivered again |
//! | `GET /healthz` | 200 while the store takes reads and writes, else 503 with the reason |
//! | `GET /readyz` | 200 when every bot is connected and signed in, else 503 naming those that are not and why |
//! | `GET /metrics` | Prometheus (OpenMetrics) text |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 description of all of this (`openapi.json`, checked by `tests/openapi.rs`) |
//! | `GET /api/v1/events[?after=&wait=&limit=]` | NDJSON `{"cursor":N,"event":{...}}` lines after cursor `after`; with `wait`, waits up to `S` seconds (≤ 60) for the first |
//! | `GET /api/v1/media/{chat}:{message_id}` | the photo or document of an inbound message, streamed from Telegram |
//! | `GET /api/v1/webhook` | the webhook's progress: deliveries, failed attempts, chats retrying and why (`{"configured": false}` without one) |
//! | `POST /api/v1/callbacks/{query_id}/answer` | `{text?, alert?, url?, cache_time?}` → 200 if taken before the deadline; 409 after it; 404 unknown query |
//! | `GET /api/v1/bots` | `{bots: [...]}`: each bot's state, queue depth, last error |
//! | `POST /api/v1/reload` | re-reads the config and applies the difference (operators) |
//!
//! Every request but `/healthz` is for the bot its API key names (see
//! `auth`); what it reaches is that bot's alone.

mod answer;
pub mod auth;
mod bots;
mod callbacks;
mod chat_action;
pub mod client;
mod cm;
mod connections;
mod contract;
pub mod enqueue;
mod events;
mod health;
pub mod jobs;
mod media;
mod messages;
mod operations;
mod protocol;
mod query;
pub mod request_id;
pub mod socket;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router, middleware};
use tokio::net::UnixListener;
use tokio::sync::watch;

pub use answer::Failure;
pub use enqueue::Validated;
pub use request_id::RequestId;

use crate::bots::Bots;
use crate::config::{ApiConfig, Respond};
use crate::events::EventStore;
use crate::queue::Queue;

/// The daemon's parts the API reaches.
#[derive(Clone)]
pub struct Services {
    pub queue: Queue,
    /// Unscoped; share this one with whatever appends events, so waiters
    /// wake.
    pub events: EventStore,
    /// The bots, their keys and their workers' parts (click answerers,
    /// downloads, webhooks).
    pub bots: Bots,
}

impl Services {
    /// The store alone: one bot, `default`, without a Telegram connection
    /// and without keys.
    pub fn new(queue: Queue) -> Self {
        Services {
            events: EventStore::new(queue.clone()),
            queue,
            bots: Bots::single(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub queue: Queue,
    pub events: EventStore,
    pub bots: Bots,
    pub max_body_bytes: usize,
    /// When an enqueue without `?wait=` is answered, and how long `sent`
    /// waits at most.
    pub respond: Respond,
    pub respond_timeout: Duration,
    /// Turns true when the server is shutting down, so waiters answer early.
    stopping: watch::Receiver<bool>,
}

/// The routes, with request ids and JSON fallbacks. `stopping` ends
/// `?wait=` early when it turns true.
pub fn router(queue: Queue, config: &ApiConfig, stopping: watch::Receiver<bool>) -> Router {
    router_for(Services::new(queue), config, stopping)
}

/// [`router`] over all of the daemon's parts.
pub fn router_for(
    services: Services,
    config: &ApiConfig,
    stopping: watch::Receiver<bool>,
) -> Router {
    let state = api_state(services, config, stopping);
    served(Router::new())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(state, auth::authenticate))
        .layer(middleware::from_fn(request_id::assign))
}

/// Declares the routes once: the router serves exactly [`ROUTES`], which
/// the OpenAPI test holds against `openapi.json`. Add a route here.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every `(method, path)` the socket router serves.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn served(router: Router<ApiState>) -> Router<ApiState> {
            router$(.route($path, $method($handler)))*
        }
    };
}

routes! {
    post "/api/v1/telegram/interactive" => enqueue::post_interactive,
    post "/api/v1/telegram/messages" => messages::post_messages,
    post "/api/v1/telegram/messages/{message_id}/edit" => operations::post_edit,
    delete "/api/v1/telegram/messages/{message_id}" => operations::delete_message,
    post "/api/v1/telegram/chat_action" => chat_action::post_chat_action,
    post "/v1.0/message" => cm::post_message,
    get "/api/v1/jobs" => jobs::list_jobs,
    get "/api/v1/jobs/{job_id}" => jobs::get_job,
    delete "/api/v1/jobs/{job_id}" => jobs::cancel_job,
    post "/api/v1/jobs/{job_id}/retry" => jobs::retry_job,
    get "/api/v1/events" => events::stream,
    post "/api/v1/callbacks/{query_id}/answer" => callbacks::post_answer,
    get "/api/v1/webhook" => events::webhook,
    get "/api/v1/webhook/dead" => events::dead,
    post "/api/v1/webhook/replay" => events::replay,
    get "/api/v1/media/{media_id}" => media::get_media,
    get "/api/v1/openapi.json" => openapi,
    get "/healthz" => health::health,
    get "/readyz" => health::ready,
    get "/metrics" => health::metrics,
    get "/api/v1/bots" => bots::list_bots,
    post "/api/v1/reload" => bots::reload,
    get "/api/v1/status" => health::status,
}

/// The OpenAPI 3.1 description of this API, checked in beside the code.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

fn api_state(services: Services, config: &ApiConfig, stopping: watch::Receiver<bool>) -> ApiState {
    ApiState {
        queue: services.queue,
        events: services.events,
        bots: services.bots,
        max_body_bytes: config.max_body_bytes,
        respond: config.respond,
        respond_timeout: config.respond_timeout(),
        stopping,
    }
}

async fn not_found(
    Extension(id): Extension<RequestId>,
    request: Request,
) -> axum::response::Response {
    Failure::NotFound(format!("no such path `{}`", request.uri().path())).answer(&id)
}

async fn method_not_allowed(Extension(id): Extension<RequestId>) -> axum::response::Response {
    Failure::MethodNotAllowed.answer(&id)
}

/// Serves `/metrics`, `/healthz` and `/readyz` (nothing else) on TCP
/// `addr` until `shutdown` completes; the returned task ends then.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    services: Services,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<tokio::task::JoinHandle<io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics over TCP");
    let (stop, stopping) = watch::channel(false);
    let state = api_state(services, config, stopping.clone());
    let app = Router::new()
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(health::health))
        .route("/readyz", get(health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(request_id::assign));
    let limits = connection_limits(config);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    Ok(tokio::spawn(async move {
        connections::serve(listener, app, limits, stopping).await;
        Ok(())
    }))
}

fn connection_limits(config: &ApiConfig) -> connections::ConnectionLimits {
    connections::ConnectionLimits {
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        body_timeout: Duration::from_millis(config.body_timeout_ms),
        max_connections: config.max_connections,
    }
}

/// How long in-flight requests may take to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (waiters answer at once; at most
/// [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    listener: UnixListener,
    queue: Queue,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_services(listener, Services::new(queue), config, shutdown).await
}

/// [`serve`] over all of the daemon's parts.
pub async fn serve_services(
    listener: UnixListener,
    services: Services,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, mut stopping) = watch::channel(false);
    let app = router_for(services, config, stopping.clone());
    let limits = connection_limits(config);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let server = connections::serve(listener, app, limits, stopping.clone());
    let overdue = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => Ok(()),
        () = overdue => {
            tracing::warn!("in-flight requests did not finish in time; closing them");
            Ok(())
        }
    }
}
