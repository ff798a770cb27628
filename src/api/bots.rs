//! `GET /api/v1/bots` (each bot's state, queue depth and last error; no
//! secrets) and `POST /api/v1/reload` (re-read the config, operators only).

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::ApiState;
use super::answer::{self, Failure};
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::Caller;

pub async fn list_bots(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Response {
    match list(&api, &caller, raw.as_deref()).await {
        Ok(bots) => answer::json(&request_id, StatusCode::OK, json!({ "bots": bots })),
        Err(failure) => failure.answer(&request_id),
    }
}

async fn list(api: &ApiState, caller: &Caller, raw: Option<&str>) -> Result<Vec<Value>, Failure> {
    let scope = caller.scope(&api.bots, &Query::parse(raw, &[])?)?;
    let mut views = Vec::new();
    for entry in api.bots.list() {
        if scope
            .as_deref()
            .is_some_and(|name| name != entry.name().as_str())
        {
            continue;
        }
        let mut view = serde_json::to_value(entry.status()).unwrap_or_default();
        view["queue_depth"] = json!(api.queue.depth(entry.name().as_str()).await?);
        views.push(view);
    }
    Ok(views)
}

pub async fn reload(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
) -> Response {
    if let Caller::Bot(entry) = caller {
        return Failure::Forbidden(format!(
            "bot `{}`'s key cannot reload the config: use an operator key",
            entry.name()
        ))
        .answer(&request_id);
    }
    match api.bots.reload().await {
        Some(Ok(applied)) => answer::json(
            &request_id,
            StatusCode::OK,
            serde_json::to_value(applied).unwrap_or_default(),
        ),
        Some(Err(error)) => {
            Failure::Conflict(format!("the config was not reloaded: {error}")).answer(&request_id)
        }
        None => Failure::Unavailable("no daemon takes reloads here".into()).answer(&request_id),
    }
}
