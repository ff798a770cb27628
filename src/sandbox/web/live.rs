//! `GET /live?user=ID&bot=ID|group=ID`: the page's server-sent events.
//!
//! Each event is one fragment of the page (`users`, `chat`, `keyboard`,
//! `stats`, `worker`) as HTML, named after the element it fills, sent when
//! it differs from what this page last got. A stream re-renders when the
//! sandbox's world changes (a watch the Telegram model bumps), when the
//! worker panel's data changes, and every [`STATS_EVERY`] for the counters
//! that move without a change to the world (RPC counts). It ends when the
//! server stops, so a graceful shutdown is not held up by open pages.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream;
use tokio::sync::watch;

use super::view::Fragments;
use super::worker::WorkerView;
use super::{Viewer, Web, viewer};

/// How often the counters are looked at again.
const STATS_EVERY: Duration = Duration::from_secs(2);

pub(super) async fn stream(
    State(web): State<Web>,
    Query(query): Query<Viewer>,
) -> impl IntoResponse {
    let live = Live {
        world: web.control.telegram.watch_changes(),
        worker: web.worker.clone(),
        stopped: web.stopped.clone(),
        web,
        asked: query,
        sent: HashMap::new(),
        pending: VecDeque::new(),
        started: false,
    };
    let events = stream::unfold(live, Live::next);
    Sse::new(events).keep_alive(KeepAlive::default())
}

struct Live {
    web: Web,
    asked: Viewer,
    /// The HTML of each fragment this page has.
    sent: HashMap<&'static str, String>,
    pending: VecDeque<Event>,
    world: watch::Receiver<u64>,
    worker: watch::Receiver<WorkerView>,
    stopped: watch::Receiver<bool>,
    started: bool,
}

impl Live {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Live)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.started && !self.wait().await {
                return None;
            }
            self.started = true;
            self.render();
        }
    }

    /// Waits for something worth re-rendering; false once the server stops.
    async fn wait(&mut self) -> bool {
        if *self.stopped.borrow() {
            return false;
        }
        tokio::select! {
            _ = self.stopped.wait_for(|stop| *stop) => false,
            changed = self.world.changed() => changed.is_ok(),
            changed = self.worker.changed() => changed.is_ok(),
            () = tokio::time::sleep(STATS_EVERY) => true,
        }
    }

    fn render(&mut self) {
        let shown = viewer(&self.web, self.asked);
        let worker = self.worker.borrow_and_update().clone();
        self.world.mark_unchanged();
        let fragments = Fragments::render(&self.web.control, shown, &worker);
        for (name, markup) in fragments.into_parts() {
            let html = markup.into_string();
            if self.sent.get(name) != Some(&html) {
                self.pending
                    .push_back(Event::default().event(name).data(html.clone()));
                self.sent.insert(name, html);
            }
        }
    }
}
