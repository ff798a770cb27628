//! The sandbox in a browser: a chat page where a person plays the user, like
//! a minimal Telegram Web.
//!
//! Reading JSON from curl is a poor way to see a bot's buttons work, so the
//! sandbox serves one page on loopback: the users on the left with the
//! chosen user's chats (one per bot, and the groups, supergroups and
//! channels), the chat as that user's app shows it in the middle (inline
//! keyboards under their messages, the reply keyboard in place of the input,
//! force replies, in a group each message labelled by its sender), and on
//! the right what telegate did (recent jobs, the event stream) with the
//! sandbox's counters and fault switches.
//!
//! The HTML is rendered here (`view`); a little hand-written JavaScript
//! (`assets/app.js`, embedded with `include_str!`) swaps in the fragments the
//! server pushes over server-sent events (`live`) and posts what the person
//! does to the control API, which is mounted unchanged under `/control`.
//! What the worker did comes from its own socket API (`worker`).
//!
//! The page is loopback only (`access`): a non-loopback address is refused
//! unless the server is started public, and a public page needs its token.

mod access;
mod live;
mod media;
mod view;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use access::{AccessError, check_bind, new_token};

use super::control::{self, Control};
use crate::config::Secret;
use worker::WorkerFeed;

/// The path under which the page reaches the control API.
const CONTROL_PREFIX: &str = "/control";

/// Where and how the page is served.
#[derive(Debug, Clone)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// Allows a non-loopback address (`--web-public`); needs `token`.
    pub public: bool,
    /// Every request must carry it (cookie, `?token=` or `Authorization:
    /// Bearer`); required when `public`.
    pub token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(
        "cannot listen on {addr} for the web page: {source} (choose another with --web ADDR, or --web off)"
    )]
    Bind { addr: SocketAddr, source: io::Error },
}

/// What the page's handlers share.
#[derive(Clone)]
struct Web {
    control: Control,
    worker: watch::Receiver<worker::WorkerView>,
    /// Ends the live streams when the server stops.
    stopped: watch::Receiver<bool>,
}

/// A running web page; it stops when `stopped` (given to [`start`]) turns
/// true, and [`RunningWeb::join`] waits for that.
pub struct RunningWeb {
    addr: SocketAddr,
    server: JoinHandle<io::Result<()>>,
    feed: JoinHandle<()>,
}

impl RunningWeb {
    /// The address it listens on (with the port chosen, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server and its worker feed have stopped.
    pub async fn join(self) -> io::Result<()> {
        let served = self.server.await.map_err(io::Error::other)?;
        self.feed.await.map_err(io::Error::other)?;
        served
    }
}

/// Binds the page and serves it until `stopped` turns true. `worker_socket`
/// is the worker's `telegate.sock` (it need not exist yet: the side panel
/// says so and keeps trying).
pub async fn start(
    options: WebOptions,
    control: Control,
    worker_socket: PathBuf,
    stopped: watch::Receiver<bool>,
) -> Result<RunningWeb, WebError> {
    check_bind(options.addr, options.public, options.token.as_ref())?;
    let listener = TcpListener::bind(options.addr)
        .await
        .map_err(|source| WebError::Bind {
            addr: options.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| WebError::Bind {
        addr: options.addr,
        source,
    })?;
    let (feed, worker) = WorkerFeed::new(worker_socket, control.telegram.watch_changes());
    let feed = tokio::spawn(feed.run(stopped.clone()));
    let web = Web {
        control: control.clone(),
        worker,
        stopped: stopped.clone(),
    };
    let policy = access::Policy::new(&options);
    let app =
        router(web, control).layer(axum::middleware::from_fn_with_state(policy, access::guard));
    let mut until = stopped;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = until.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(RunningWeb { addr, server, feed })
}

fn router(web: Web, control: Control) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/{name}", get(asset))
        .route("/live", get(live::stream))
        .route("/fragments/{name}", get(fragment))
        .route("/media/{message_id}", get(media::download))
        .with_state(web)
        .nest(CONTROL_PREFIX, control::router(control))
}

/// `?user=ID&bot=ID` or `?user=ID&group=ID`: who the person is, and which
/// chat of theirs to show (a bot's private chat, or a group).
#[derive(Debug, Clone, Copy, Deserialize)]
struct Viewer {
    user: Option<i64>,
    bot: Option<i64>,
    group: Option<i64>,
}

/// What a page shows: the user asked for if it exists, else the first;
/// the group asked for if it exists, else the bot asked for if it is one,
/// else the first bot.
fn viewer(web: &Web, asked: Viewer) -> view::Shown {
    let telegram = &web.control.telegram;
    let first_bot = telegram.bot_id();
    let users = telegram.users(first_bot);
    let exists = |id: i64| users.iter().any(|u| u["id"].as_i64() == Some(id));
    let user = asked
        .user
        .filter(|id| exists(*id))
        .or_else(|| users.first().and_then(|u| u["id"].as_i64()));
    let groups = telegram.groups(first_bot);
    let group = asked
        .group
        .filter(|id| groups.iter().any(|g| g["id"].as_i64() == Some(*id)));
    let chat = match group {
        Some(group) => view::ChatShown::Group(group),
        None => view::ChatShown::Bot(
            asked
                .bot
                .and_then(|id| telegram.check_bot(id).ok())
                .unwrap_or(first_bot),
        ),
    };
    view::Shown { user, chat }
}

async fn page(State(web): State<Web>, Query(query): Query<Viewer>) -> Response {
    let shown = viewer(&web, query);
    let fragments = view::Fragments::render(&web.control, shown, &web.worker.borrow());
    view::page(&web.control, shown, &fragments).into_response()
}

async fn fragment(
    State(web): State<Web>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<Viewer>,
) -> Response {
    let shown = viewer(&web, query);
    let fragments = view::Fragments::render(&web.control, shown, &web.worker.borrow());
    match fragments.get(&name) {
        Some(html) => html.clone().into_response(),
        None => (StatusCode::NOT_FOUND, format!("no fragment named {name:?}")).into_response(),
    }
}

async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
