//! `POST /api/v1/callbacks/{query_id}/answer`: a consumer answers a click.
//!
//! The body is the answer, `{text?, alert?, url?, cache_time?}`, checked by
//! the same rules as a button's stored `answer`. It is taken only before the
//! answer deadline; after it telegate has answered by itself and says so
//! with a 409.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::ApiState;
use super::answer::{self, Failure};
use super::query::Query;
use super::request_id::RequestId;
use crate::bots::Caller;
use crate::callbacks::{AnswerRefused, CallbackAnswerer};
use crate::error::ApiError;
use crate::interactive::CallbackAnswer;

pub async fn post_answer(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Path(query_id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    match take(&api, &caller, raw.as_deref(), &query_id, &body) {
        Ok(query_id) => answer::json(
            &request_id,
            StatusCode::OK,
            json!({"query_id": query_id.to_string(), "status": "accepted"}),
        ),
        Err(failure) => failure.answer(&request_id),
    }
}

fn take(
    api: &ApiState,
    caller: &Caller,
    raw: Option<&str>,
    query_id: &str,
    body: &[u8],
) -> Result<i64, Failure> {
    // The bots whose clicks this request may answer.
    let answerers: Vec<CallbackAnswerer> =
        match caller.scope(&api.bots, &Query::parse(raw, &[])?)? {
            Some(name) => api
                .bots
                .get(&name)
                .and_then(|bot| bot.callbacks())
                .into_iter()
                .collect(),
            None => api
                .bots
                .list()
                .iter()
                .filter_map(|bot| bot.callbacks())
                .collect(),
        };
    let query_id: i64 = query_id.parse().map_err(|_| {
        ApiError::invalid(format!(
            "query id `{query_id}` in the path must be an integer"
        ))
    })?;
    if body.len() > api.max_body_bytes {
        return Err(Failure::TooLarge(api.max_body_bytes));
    }
    let answer = CallbackAnswer::from_json(body)?;
    // A query id is one bot's: the first answerer that knows it decides.
    let mut refused = AnswerRefused::Unknown(query_id);
    for callbacks in &answerers {
        match callbacks.answer(query_id, answer.clone()) {
            Ok(()) => return Ok(query_id),
            Err(AnswerRefused::Unknown(_)) => continue,
            Err(other) => {
                refused = other;
                break;
            }
        }
    }
    Err(refused).map_err(|refused| match refused {
        AnswerRefused::Unknown(_) => Failure::NotFound(refused.to_string()),
        AnswerRefused::Late { .. } | AnswerRefused::AlreadyAnswered(_) => {
            Failure::Conflict(refused.to_string())
        }
    })?;
    Ok(query_id)
}
