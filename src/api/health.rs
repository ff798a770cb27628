//! What an operator's probes and scrapers ask: `GET /healthz` (liveness),
//! `GET /readyz` (readiness) and `GET /metrics` (Prometheus).
//!
//! Liveness is the process and its store: 200 while the store's writer
//! takes a transaction and a read succeeds, else 503 with the store's
//! reason — also while the store refuses writes (a full disk), until a
//! write goes through again. Readiness is every bot connected and signed in; a 503 names
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
    match api.queue.probe().await {
        Ok(()) => answer::json(
            &request_id,
            StatusCode::OK,
            json!({ "status": "ok", "schema_version": SCHEMA_VERSION }),
        ),
        Err(err) => Failure::from(err).answer(&request_id),
    }
}

/// `GET /readyz`.
pub async fn ready(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
) -> Response {
    let bots = api.bots.as_ref().map(|b| b.all()).unwrap_or_default();
    let listed: Vec<Value> = bots.iter().map(|(name, state)| bot(name, state)).collect();
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
    let backlog = api.webhook.as_ref().map(|w| w.status().pending);
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
