//! What the worker did, for the page's side panel: its recent jobs and
//! events, read from its own socket API (`STATE_DIR/telegate.sock`) with the
//! same client the CLI uses.
//!
//! One feed per web server follows the event stream with long polls and
//! re-lists the recent jobs when something may have changed them (an event,
//! a change in the sandbox's world, or a couple of seconds passing: a job's
//! `queued`/`sending` steps have no event of their own). Every page watches
//! the one [`WorkerView`] it keeps; while no page is open, jobs are not
//! listed and events are read at most once a second, so a busy sandbox
//! nobody looks at pays next to nothing.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::client::{Client, ClientError};

/// How many recent jobs and events the panel shows.
pub(super) const RECENT: usize = 20;
/// Longest long poll on the event stream.
const EVENTS_WAIT_SECS: u64 = 20;
const EVENTS_BATCH: usize = 100;
/// How long after a failed connection the feed tries again.
const RETRY: Duration = Duration::from_secs(1);
/// Jobs are re-listed at least this often.
const JOBS_REFRESH: Duration = Duration::from_secs(2);

/// The side panel's data.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct WorkerView {
    /// Why the worker cannot be read, if it cannot.
    pub(super) trouble: Option<String>,
    /// The most recent jobs, oldest first (the socket API's job views).
    pub(super) jobs: Vec<Value>,
    /// The most recent events, oldest first, as `{cursor, event}`.
    pub(super) events: VecDeque<Value>,
}

pub(super) struct WorkerFeed {
    client: Client,
    world: watch::Receiver<u64>,
    view: watch::Sender<WorkerView>,
}

impl WorkerFeed {
    pub(super) fn new(
        socket: PathBuf,
        world: watch::Receiver<u64>,
    ) -> (Self, watch::Receiver<WorkerView>) {
        let (view, watching) = watch::channel(WorkerView::default());
        let feed = WorkerFeed {
            client: Client::new(socket),
            world,
            view,
        };
        (feed, watching)
    }

    /// Follows the worker until `stopped` turns true.
    pub(super) async fn run(self, mut stopped: watch::Receiver<bool>) {
        let WorkerFeed {
            client,
            mut world,
            view,
        } = self;
        let events = follow_events(client.clone(), &view);
        let jobs = async {
            let mut window = JobWindow::default();
            loop {
                if !watched(&view) {
                    tokio::time::sleep(JOBS_REFRESH).await;
                    continue;
                }
                match window.refresh(&client).await {
                    Ok(jobs) => view.send_if_modified(|v| replace(&mut v.jobs, jobs)),
                    Err(error) => {
                        view.send_if_modified(|v| replace(&mut v.trouble, Some(error.to_string())))
                    }
                };
                // An event or a change in the world may mean a job moved.
                let mut events_seen = view.subscribe();
                tokio::select! {
                    _ = world.changed() => {}
                    _ = events_seen.changed() => {}
                    () = tokio::time::sleep(JOBS_REFRESH) => {}
                }
            }
        };
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => {}
            () = events => {}
            () = jobs => {}
        }
    }
}

/// Sets `slot` to `value`; whether that changed it.
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

/// Long-polls `/api/v1/events` forever, keeping the last [`RECENT`].
async fn follow_events(client: Client, view: &watch::Sender<WorkerView>) {
    let mut cursor: u64 = 0;
    loop {
        let path =
            format!("/api/v1/events?after={cursor}&wait={EVENTS_WAIT_SECS}&limit={EVENTS_BATCH}");
        match read_events(&client, &path).await {
            Ok(batch) => {
                if let Some(last) = batch.last().and_then(|e| e["cursor"].as_u64()) {
                    cursor = last;
                }
                view.send_if_modified(|v| {
                    let mut changed = replace(&mut v.trouble, None);
                    for event in batch {
                        v.events.push_back(event);
                        changed = true;
                    }
                    while v.events.len() > RECENT {
                        v.events.pop_front();
                    }
                    changed
                });
            }
            Err(error) => {
                view.send_if_modified(|v| replace(&mut v.trouble, Some(error.to_string())));
                tokio::time::sleep(RETRY).await;
            }
        }
        if !watched(view) {
            // Nobody looks: keep up, but at a walk.
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Whether a page is open (the server itself holds one receiver).
fn watched(view: &watch::Sender<WorkerView>) -> bool {
    view.receiver_count() > 1
}

/// Why a read of the worker failed.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the worker answered {status} to {path}")]
    Status { status: u16, path: String },
    #[error("the worker's answer to {path} is not what the socket API documents")]
    Shape { path: String },
}

async fn get_ok(client: &Client, path: &str) -> Result<bytes::Bytes, FeedError> {
    let answer = client.get(path).await?;
    if !answer.status.is_success() {
        return Err(FeedError::Status {
            status: answer.status.as_u16(),
            path: path.to_owned(),
        });
    }
    Ok(answer.body)
}

/// One NDJSON page of events.
async fn read_events(client: &Client, path: &str) -> Result<Vec<Value>, FeedError> {
    let body = get_ok(client, path).await?;
    body.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            serde_json::from_slice(line).map_err(|_| FeedError::Shape {
                path: path.to_owned(),
            })
        })
        .collect()
}

/// The ids the recent jobs start after, so a refresh lists only them and
/// the new ones.
#[derive(Default)]
struct JobWindow {
    after: i64,
}

impl JobWindow {
    const PAGE: usize = 500;

    async fn refresh(&mut self, client: &Client) -> Result<Vec<Value>, FeedError> {
        let mut jobs: VecDeque<Value> = VecDeque::new();
        let mut after = self.after;
        loop {
            let path = format!("/api/v1/jobs?after={after}&limit={}", Self::PAGE);
            let body = get_ok(client, &path).await?;
            let page: Value = serde_json::from_slice(&body)
                .map_err(|_| FeedError::Shape { path: path.clone() })?;
            let listed = page["jobs"]
                .as_array()
                .ok_or(FeedError::Shape { path })?
                .clone();
            let full = listed.len() == Self::PAGE;
            for job in listed {
                after = job["job_id"].as_i64().unwrap_or(after).max(after);
                jobs.push_back(job);
                if jobs.len() > RECENT {
                    jobs.pop_front();
                }
            }
            if !full {
                break;
            }
        }
        if let Some(first) = jobs.front().and_then(|j| j["job_id"].as_i64()) {
            self.after = first - 1;
        }
        Ok(jobs.into())
    }
}
