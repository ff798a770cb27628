//! What an operator's probes and scrapers ask: `GET /healthz` (liveness),
//! `GET /readyz` (readiness), `GET /metrics` (Prometheus), and what a person
//! asks with `telegate status` (`GET /api/v1/status`).
//!
//! Liveness is the process and its store: 200 while the store's writer
//! takes a transaction and a read succeeds, else 503 with the store's
//! reason — also while the store refuses writes (a full disk), until a
//! write goes through again; halted bots are listed with why (`status:
//! "degraded"`). Readiness is every bot connected and signed in; a 503 names
//! those that are not and why (see `bot_state`).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiState;
use super::answer::{self, Failure};
use super::request_id::RequestId;
use crate::bot_state::{BotState, readiness};
use crate::queue::SCHEMA_VERSION;

/// `GET /healthz`.
pub async fn health(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    // A halted bot is named with its reason, but liveness stays the
    // process and its store: restarting does not bring a revoked token
    // back (readiness fails meanwhile).
    let halted: Vec<Value> = api
        .bots
        .list()
        .iter()
        .filter_map(|bot| {
            let reason = bot.halted()?;
            Some(json!({ "bot": bot.name(), "reason": reason }))
        })
        .collect();
    let status = if halted.is_empty() { "ok" } else { "degraded" };
    match api.queue.probe().await {
        Ok(()) => answer::json(
            &request_id,
            StatusCode::OK,
            json!({ "status": status, "schema_version": SCHEMA_VERSION, "halted": halted }),
        ),
        Err(err) => Failure::from(err).answer(&request_id),
    }
}

/// `GET /readyz`.
pub async fn ready(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    let bots = api.bots.states().all();
    let listed: Vec<Value> = bots.iter().map(|(name, state)| bot(name, state)).collect();
    // Holding no bot's lease on a shared store is standing by: its socket
    // takes work for every bot, and it takes bots over when a holder dies.
    if bots.is_empty() && api.bots.states().is_shared() {
        return answer::json(
            &request_id,
            StatusCode::OK,
            json!({ "status": "standby", "bots": listed }),
        );
    }
    match readiness(&bots) {
        Ok(()) => answer::json(
            &request_id,
            StatusCode::OK,
            json!({ "status": "ready", "bots": listed }),
        ),
        Err(unready) => {
            let error = if bots.is_empty() {
                "no bot is running".to_owned()
            } else {
                let names: Vec<String> = unready
                    .iter()
                    .map(|(name, state)| format!("`{name}` is {}", describe(state)))
                    .collect();
                format!("not ready: {}", names.join("; "))
            };
            let not_ready: Vec<Value> = unready.iter().map(|(n, s)| bot(n, s)).collect();
            answer::json(
                &request_id,
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not_ready", "error": error, "bots": listed, "not_ready": not_ready }),
            )
        }
    }
}

fn bot(name: &str, state: &BotState) -> Value {
    let mut value = serde_json::to_value(state).unwrap_or_default();
    value["name"] = json!(name);
    value
}

/// A state in words, with its reason.
fn describe(state: &BotState) -> String {
    match state {
        BotState::Starting => "starting".into(),
        BotState::SigningIn {
            attempt,
            last_error,
        } => match last_error {
            Some(error) => format!("signing in (attempt {attempt}; last error: {error})"),
            None => format!("signing in (attempt {attempt})"),
        },
        BotState::Ready { .. } => "ready".into(),
        BotState::Disconnected { error } => format!("disconnected ({error})"),
        BotState::Halted { reason } => format!("halted ({reason})"),
        BotState::Stopped => "stopped".into(),
    }
}

/// `GET /metrics`.
pub async fn metrics(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    // Every bot's webhook backlog together.
    let backlog = api
        .bots
        .list()
        .iter()
        .filter_map(|bot| bot.webhook())
        .map(|webhook| webhook.status().pending)
        .reduce(|a, b| a + b);
    match crate::metrics::metrics().render(&api.queue, backlog).await {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        Err(err) => Failure::from(err).answer(&request_id),
    }
}

/// How many recent failures `/api/v1/status` lists.
const RECENT_ERRORS: i64 = 5;

/// `GET /api/v1/status`: one summary for a person.
pub async fn status(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    let now = crate::queue::Timestamp::now().as_millis();
    let read = api.queue.read(move |conn| {
        let (waiting, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT count(*), min(created_at) FROM jobs WHERE state IN ('queued', 'sending')",
            rusqlite::params![],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let sent_last_minute: i64 = conn.query_row(
            "SELECT count(*) FROM jobs WHERE state = 'sent' AND updated_at > ?1",
            [now - 60_000],
            |row| row.get(0),
        )?;
        let mut statement = conn.prepare_cached(
            "SELECT id, chat, error_name, error_text, updated_at FROM jobs
             WHERE state = 'failed' ORDER BY updated_at DESC LIMIT ?1",
        )?;
        let errors = statement
            .query_map([RECENT_ERRORS], |row| {
                Ok(json!({
                    "job_id": row.get::<_, i64>(0)?,
                    "chat": row.get::<_, i64>(1)?.to_string(),
                    "telegram": row.get::<_, Option<String>>(2)?,
                    "error": row.get::<_, Option<String>>(3)?,
                    "at": crate::queue::Timestamp::from_millis(row.get(4)?),
                }))
            })?
            .collect::<Result<Vec<Value>, _>>()?;
        Ok((waiting, oldest, sent_last_minute, errors))
    });
    let (waiting, oldest, sent, errors) = match read.await {
        Ok(read) => read,
        Err(err) => return Failure::from(err).answer(&request_id),
    };
    let bots = api.bots.states().all();
    let bots: Vec<Value> = bots.iter().map(|(name, state)| bot(name, state)).collect();
    let webhook = api.bots.list().iter().find_map(|entry| entry.webhook());
    let webhook = webhook.as_ref().map(|w| {
        let status = w.status();
        json!({"backlog": status.pending, "delivered": status.delivered,
               "failed_attempts": status.failed_attempts, "dead": status.dead,
               "last_error": status.last_error})
    });
    answer::json(
        &request_id,
        StatusCode::OK,
        json!({
            "bots": bots,
            "queue": {
                "waiting": waiting,
                "oldest_age_seconds": oldest.map(|at| (now - at).max(0) as f64 / 1000.0),
            },
            "sent_last_minute": sent,
            "webhook": webhook,
            "recent_errors": errors,
        }),
    )
}
