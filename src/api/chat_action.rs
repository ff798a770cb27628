//! `POST /api/v1/telegram/chat_action`: "typing…" (or another action) in a
//! chat for up to a minute. Ephemeral, so it skips the queue; see
//! [`crate::chat_action`] for how long and how often it is shown.

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::ApiState;
use super::answer::{self, Failure};
use super::request_id::RequestId;
use crate::chat_action::{ActionRefused, ChatAction, MAX_DURATION_S};
use crate::interactive::{self, Document, Object, Path};

/// The body: `{destination_user_id, action, duration_s?}` (default 5 s).
const FIELDS: &[&str] = &["destination_user_id", "action", "duration_s"];
const DEFAULT_DURATION_S: u64 = 5;

pub async fn post_chat_action(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<crate::bots::Caller>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let entry = super::query::Query::parse(raw.as_deref(), &["bot"])
        .map_err(Failure::from)
        .and_then(|query| caller.bot(&api.bots, &query));
    let entry = match entry {
        Ok(entry) => entry,
        Err(failure) => return failure.answer(&request_id),
    };
    match start(&api, &entry, &body).await {
        Ok(body) => answer::json(&request_id, StatusCode::OK, body),
        Err(failure) => failure.answer(&request_id),
    }
}

async fn start(
    api: &ApiState,
    entry: &crate::bots::BotEntry,
    body: &[u8],
) -> Result<serde_json::Value, Failure> {
    if body.len() > api.max_body_bytes {
        return Err(Failure::TooLarge(api.max_body_bytes));
    }
    let document = Document::parse(body)?;
    let root = Path::root("");
    let body = Object::new(document.root(), &root, FIELDS)?;
    let chat = interactive::read_chat_id(&body, "destination_user_id")?;
    let name = body.str("action")?;
    let action = ChatAction::from_name(name).ok_or_else(|| {
        body.path_of("action")
            .unknown_value(name, ChatAction::NAMES)
    })?;
    let duration_s = match body.get("duration_s") {
        None => DEFAULT_DURATION_S,
        Some(value) => {
            let path = body.path_of("duration_s");
            let seconds = interactive::as_i64(value, &path)?;
            u64::try_from(seconds)
                .ok()
                .filter(|s| (1..=MAX_DURATION_S).contains(s))
                .ok_or_else(|| {
                    path.broken(format_args!(
                        "must be 1–{MAX_DURATION_S} seconds, got {seconds}"
                    ))
                })?
        }
    };
    let Some(actions) = entry.chat_actions() else {
        return Err(Failure::Unavailable(ActionRefused::Unavailable.to_string()));
    };
    actions
        .start(chat, action, Duration::from_secs(duration_s))
        .await
        .map_err(|refused| match refused {
            ActionRefused::TooManyChats => Failure::Conflict(refused.to_string()),
            ActionRefused::Unavailable => Failure::Unavailable(refused.to_string()),
        })?;
    Ok(json!({"destination_user_id": chat, "action": name, "duration_s": duration_s}))
}
