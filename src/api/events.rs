//! `GET /api/v1/events?after=CURSOR&wait=SECONDS&limit=N`: the event stream
//! as NDJSON, one `{"cursor":N,"event":{...}}` line per event.
//!
//! A long poll: with nothing after `after`, the answer waits up to `wait`
//! seconds for an event (woken by the store, not by polling) and is empty if
//! none comes. A consumer resumes from the last cursor it processed, so
//! delivery is at-least-once across restarts on either side. The
//! `X-Telegate-Cursor` header holds the cursor to ask after next.

use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::answer::{self, Failure};
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::events::StoredEvent;

const DEFAULT_LIMIT: usize = 100;
pub const CURSOR_HEADER: &str = "x-telegate-cursor";

pub async fn stream(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Response {
    match read(&api, &caller, raw.as_deref()).await {
        Ok(response) => response,
        Err(failure) => failure.answer(&request_id),
    }
}

async fn read(api: &ApiState, caller: &Caller, raw: Option<&str>) -> Result<Response, Failure> {
    let query = Query::parse(raw, &["after", "wait", "limit"])?;
    let events = api
        .events
        .scoped(caller.scope(&api.bots, &query)?.as_deref());
    let after = query.after()?;
    let wait = query.wait()?.unwrap_or(Duration::ZERO);
    let limit = query.limit(DEFAULT_LIMIT, crate::events::MAX_BATCH)?;
    let mut stopping = api.stopping.clone();
    let stopped = async move {
        // Dropping the sender (server gone) counts as stopping too.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let events = tokio::select! {
        events = events.wait_after(after, limit, wait) => events?,
        () = stopped => events.after(after, limit).await?,
    };
    Ok(ndjson(after, &events))
}

/// `GET /api/v1/webhook`: how the bot's deliveries go.
pub async fn webhook(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Response {
    let entry = Query::parse(raw.as_deref(), &[])
        .map_err(Failure::from)
        .and_then(|query| caller.bot(&api.bots, &query));
    let entry = match entry {
        Ok(entry) => entry,
        Err(failure) => return failure.answer(&request_id),
    };
    let body = match &entry.webhook() {
        Some(monitor) => {
            let mut body = serde_json::to_value(monitor.status()).unwrap_or_default();
            body["configured"] = serde_json::Value::Bool(true);
            body
        }
        None => serde_json::json!({"configured": false}),
    };
    answer::json(&request_id, StatusCode::OK, body)
}

/// `GET /api/v1/webhook/dead[?after=&limit=]`: the dead letters.
pub async fn dead(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Response {
    let listed = async {
        let query = Query::parse(raw.as_deref(), &["after", "limit", "bot"])?;
        let entry = caller.bot(&api.bots, &query)?;
        let (after, limit) = (
            query.after()?,
            query.limit(DEFAULT_LIMIT, crate::events::MAX_BATCH)?,
        );
        let monitor = webhook_of(&entry)?;
        Ok::<_, Failure>(monitor.dead(after, limit).await?)
    };
    match listed.await {
        Ok(dead) => answer::json(
            &request_id,
            StatusCode::OK,
            serde_json::json!({ "dead": dead }),
        ),
        Err(failure) => failure.answer(&request_id),
    }
}

/// The body of `POST /api/v1/webhook/replay`: an inclusive cursor range.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRange {
    from: i64,
    to: i64,
}

/// `POST /api/v1/webhook/replay` `{from, to}`: dead letters back to the webhook.
pub async fn replay(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let replayed = async {
        let entry = caller.bot(&api.bots, &Query::parse(raw.as_deref(), &["bot"])?)?;
        let range: ReplayRange = serde_json::from_slice(&body).map_err(|e| {
            crate::error::ApiError::invalid(format!(
                "the replay body must be {{\"from\": N, \"to\": M}}: {e}"
            ))
        })?;
        if range.from < 0 || range.from > range.to {
            return Err(crate::error::ApiError::rejected(
                "`from` must be 0 or more and not after `to`",
            )
            .into());
        }
        let monitor = webhook_of(&entry)?;
        Ok::<_, Failure>(monitor.replay(range.from, range.to).await?)
    };
    match replayed.await {
        Ok(ids) => answer::json(
            &request_id,
            StatusCode::OK,
            serde_json::json!({ "replayed": ids.len(), "event_ids": ids }),
        ),
        Err(failure) => failure.answer(&request_id),
    }
}

fn webhook_of(
    entry: &crate::bots::BotEntry,
) -> Result<crate::events::webhook::WebhookMonitor, Failure> {
    entry
        .webhook()
        .ok_or_else(|| Failure::NotFound("no webhook is configured".into()))
}

fn ndjson(after: i64, events: &[StoredEvent]) -> Response {
    let mut body = String::new();
    for event in events {
        body.push_str(&event.to_line());
        body.push('\n');
    }
    let next = events.last().map_or(after, |e| e.cursor);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(CURSOR_HEADER, HeaderValue::from(next));
    response
}
