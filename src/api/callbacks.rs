//! `POST /api/v1/callbacks/{query_id}/answer`: a consumer answers a click.
//!
//! The body is the answer, `{text?, alert?, url?, cache_time?}`, checked by
//! the same rules as a button's stored `answer`. It is taken only before the
//! answer deadline; after it telegate has answered by itself and says so
//! with a 409.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::ApiState;
use super::answer::{self, Failure};
use super::request_id::RequestId;
use crate::callbacks::AnswerRefused;
use crate::error::ApiError;
use crate::interactive::CallbackAnswer;

pub async fn post_answer(
    State(api): State<ApiState>,
    Extension(request_id): Extension<RequestId>,
    Path(query_id): Path<String>,
    body: Bytes,
) -> Response {
    match take(&api, &query_id, &body) {
        Ok(query_id) => answer::json(
            &request_id,
            StatusCode::OK,
            json!({"query_id": query_id.to_string(), "status": "accepted"}),
        ),
        Err(failure) => failure.answer(&request_id),
    }
}

fn take(api: &ApiState, query_id: &str, body: &[u8]) -> Result<i64, Failure> {
    let query_id: i64 = query_id.parse().map_err(|_| {
        ApiError::invalid(format!(
            "query id `{query_id}` in the path must be an integer"
        ))
    })?;
    if body.len() > api.max_body_bytes {
        return Err(Failure::TooLarge(api.max_body_bytes));
    }
    let answer = CallbackAnswer::from_json(body)?;
    let Some(callbacks) = &api.callbacks else {
        return Err(Failure::NotFound(format!(
            "no click with query id {query_id} is known (no Telegram connection)"
        )));
    };
    callbacks
        .answer(query_id, answer)
        .map_err(|refused| match refused {
            AnswerRefused::Unknown(_) => Failure::NotFound(refused.to_string()),
            AnswerRefused::Late { .. } | AnswerRefused::AlreadyAnswered(_) => {
                Failure::Conflict(refused.to_string())
            }
        })?;
    Ok(query_id)
}
